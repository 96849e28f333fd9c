//! A loopback TCP proxy between pgmcp and a server it depends on (PostgreSQL, an identity provider), so a test can
//! break the network between them the way networks break:
//! - **forward**: bytes flow both ways;
//! - **stall**: nothing moves, but every socket stays open and new connections are accepted and held — a hung
//!   server, a frozen middlebox, a partition that the kernel does not report;
//! - **refuse**: new connections are reset as soon as they arrive (the server is gone);
//! - **reset all**: every open connection is torn down with a TCP reset, on both sides.
//!
//! Every connection is two bounded copy loops on the test's runtime; they end when either side closes.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Forward,
    Stall,
    Refuse,
}

struct Shared {
    upstream: Mutex<SocketAddr>,
    mode: watch::Sender<Mode>,
    /// Bumped by [`Proxy::reset_all`]; each connection resets itself when it sees a newer value.
    resets: watch::Sender<u64>,
    open: AtomicUsize,
    accepted: AtomicU64,
}

/// A running proxy; stops accepting when dropped (open connections end with their peers).
pub struct Proxy {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared {
            upstream: Mutex::new(upstream),
            mode: watch::channel(Mode::Forward).0,
            resets: watch::channel(0).0,
            open: AtomicUsize::new(0),
            accepted: AtomicU64::new(0),
        });
        let accepting = shared.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                accepting.accepted.fetch_add(1, Ordering::Relaxed);
                if *accepting.mode.borrow() == Mode::Refuse {
                    reset(&client);
                    continue;
                }
                tokio::spawn(relay(client, accepting.clone()));
            }
        });
        Proxy {
            addr,
            shared,
            accept,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn set_mode(&self, mode: Mode) {
        self.shared.mode.send_replace(mode);
    }

    pub fn mode(&self) -> Mode {
        *self.shared.mode.borrow()
    }

    /// Points new connections elsewhere (a server restarted on another port).
    pub fn set_upstream(&self, upstream: SocketAddr) {
        *self.shared.upstream.lock().unwrap() = upstream;
    }

    /// Tears down every open connection with a TCP reset on both sides.
    pub fn reset_all(&self) {
        self.shared
            .resets
            .send_modify(|generation| *generation += 1);
    }

    /// Connections currently relayed.
    pub fn open_connections(&self) -> usize {
        self.shared.open.load(Ordering::Relaxed)
    }

    /// Connections accepted since the start.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.reset_all();
    }
}

/// Closes with RST instead of FIN: the peer sees "connection reset", as after a crash or a middlebox timeout.
fn reset(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}

struct OpenGuard(Arc<Shared>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn relay(client: TcpStream, shared: Arc<Shared>) {
    shared.open.fetch_add(1, Ordering::Relaxed);
    let _guard = OpenGuard(shared.clone());
    let mut resets = shared.resets.subscribe();
    resets.mark_unchanged();
    let mut mode = shared.mode.subscribe();
    // A connection that arrives during a stall is held, unconnected, until the stall ends.
    let connect = async {
        wait_forward(&mut mode).await?;
        let upstream = *shared.upstream.lock().unwrap();
        TcpStream::connect(upstream).await.ok()
    };
    let server = tokio::select! {
        server = connect => server,
        _ = resets.changed() => None,
    };
    let Some(server) = server else {
        reset(&client);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let upstream = pump(client_read, server_write, &shared);
    let downstream = pump(server_read, client_write, &shared);
    let ((client_read, server_write, reset_up), (server_read, client_write, reset_down)) =
        tokio::join!(upstream, downstream);
    if reset_up || reset_down {
        for stream in [
            client_read.reunite(client_write),
            server_read.reunite(server_write),
        ]
        .into_iter()
        .flatten()
        {
            reset(&stream);
        }
    }
}

/// Waits until the proxy forwards; `None` when the proxy is gone.
async fn wait_forward(mode: &mut watch::Receiver<Mode>) -> Option<()> {
    loop {
        match *mode.borrow_and_update() {
            Mode::Forward => return Some(()),
            Mode::Stall | Mode::Refuse => {}
        }
        mode.changed().await.ok()?;
    }
}

/// Copies one direction until either side closes or the proxy resets its connections (then `true`). Nothing
/// moves while the proxy stalls: bytes already read wait until it forwards again, and nothing more is read, so the
/// sender's kernel buffers fill as behind a hung peer.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    shared: &Shared,
) -> (OwnedReadHalf, OwnedWriteHalf, bool) {
    let mut resets = shared.resets.subscribe();
    resets.mark_unchanged();
    let mut mode = shared.mode.subscribe();
    let copy = async {
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            wait_forward(&mut mode).await?;
            let read = match from.read(&mut buffer).await {
                Ok(0) | Err(_) => {
                    let _ = to.shutdown().await;
                    return None::<()>;
                }
                Ok(n) => n,
            };
            wait_forward(&mut mode).await?;
            to.write_all(&buffer[..read]).await.ok()?;
        }
    };
    let was_reset = tokio::select! {
        _ = copy => false,
        _ = resets.changed() => true,
    };
    (from, to, was_reset)
}
