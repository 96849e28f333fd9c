//! Running `pgmcp serve --http` as a real process and talking to it: the official rmcp client over Streamable HTTP
//! and raw reqwest for the transport's refusals.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use rmcp::model::ProtocolVersion;
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientLifecycleMode, ClientServiceExt, RoleClient};

use crate::common::Era;

/// reqwest is built without a default TLS provider; tests use ring, like pgmcp itself.
pub fn install_crypto() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The pgmcp binary: cargo's, or `PGMCP_TEST_BIN` when a shared target directory means another build may replace
/// cargo's copy while tests run.
pub fn pgmcp_bin() -> String {
    std::env::var("PGMCP_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_pgmcp").to_string())
}

fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(pgmcp_bin());
    cmd.args(args);
    for (key, _) in std::env::vars() {
        if key.starts_with("PG") || key == "DATABASE_URL" {
            cmd.env_remove(key);
        }
    }
    cmd.env("PGMCP_LOG", "info");
    for (key, value) in env {
        cmd.env(key, value);
    }
    cmd
}

/// A running `pgmcp serve --http`; killed on drop.
pub struct HttpServer {
    child: Option<Child>,
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl HttpServer {
    /// Starts pgmcp with `args` (which include `--http 127.0.0.1:0`) and waits for its `listening on` line.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> HttpServer {
        let mut child = command(args, env)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn pgmcp");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or("").to_string();
                    let _ = tx.send(addr);
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => addr.parse().expect("bound address"),
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "pgmcp did not report its address; stderr:\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
        };
        HttpServer {
            child: Some(child),
            addr,
            log,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn mcp_url(&self) -> String {
        self.url("/mcp")
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        let child = self.child.as_mut()?;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs pgmcp expecting it to exit on its own (a refused start); returns the status and stderr.
pub fn run_to_exit(args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String) {
    let mut child = command(args, env)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pgmcp");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("pgmcp {args:?} kept running; it should have refused to start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().expect("collect output");
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

pub type HttpClient = RunningService<RoleClient, ()>;

/// The official rmcp client connected over Streamable HTTP in the given era.
pub async fn connect(url: &str, era: Era) -> HttpClient {
    install_crypto();
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url.to_string()),
    );
    let lifecycle = match era {
        Era::Legacy => ClientLifecycleMode::Initialize,
        Era::Stateless => ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        },
    };
    ().serve_with_lifecycle(transport, lifecycle)
        .await
        .expect("MCP handshake over HTTP")
}

pub fn http() -> reqwest::Client {
    install_crypto();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("reqwest client")
}

/// A raw JSON-RPC POST to /mcp with the headers Streamable HTTP requires.
pub fn mcp_post(
    client: &reqwest::Client,
    url: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::RequestBuilder {
    client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body)
}

pub const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#;

/// `pgmcp serve` on stdio with the official client, like `common::spawn` but from `pgmcp_bin()`.
pub async fn spawn_stdio(args: &[&str], env: &[(&str, &str)], era: Era) -> HttpClient {
    use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let command = tokio::process::Command::new(pgmcp_bin()).configure(|cmd| {
        cmd.args(&args);
        for (key, _) in std::env::vars() {
            if key.starts_with("PG") || key == "DATABASE_URL" {
                cmd.env_remove(key);
            }
        }
        cmd.env("PGMCP_LOG", "warn");
        for (key, value) in &env {
            cmd.env(key, value);
        }
    });
    let lifecycle = match era {
        Era::Legacy => ClientLifecycleMode::Initialize,
        Era::Stateless => ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        },
    };
    ().serve_with_lifecycle(
        TokioChildProcess::new(command).expect("spawn pgmcp"),
        lifecycle,
    )
    .await
    .expect("MCP handshake with pgmcp")
}
