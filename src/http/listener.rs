//! Accepting HTTP connections. `axum::serve` gives hyper no timer, so hyper's header read timeout never runs and a
//! client that trickles its request headers (or opens connections and sends nothing) holds each one for ever. Here
//! hyper's HTTP/1 server runs with a timer and `http.header_read_timeout`; everything after the headers is bounded
//! by the request timeout layer. Stopping is graceful: the listener closes at once (new connections are refused),
//! idle connections close, and requests in flight finish.

use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

/// Serves `app` on `listener` until `stop` resolves, then lets in-flight requests finish; returns when the last
/// connection closed (the caller bounds that wait).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    header_read_timeout: Duration,
    stop: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let mut stop = std::pin::pin!(stop);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    pause_after(&error).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        // Without TCP_NODELAY an answer written in several pieces (the event streams of legacy sessions) waits for
        // the client's delayed ACK: 40 ms per call.
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let watched = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = watched.await {
                tracing::debug!(%error, "HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// A failed accept: a connection the client already gave up is nothing; running out of descriptors or memory is
/// waited out briefly rather than spun on.
async fn pause_after(error: &std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::ConnectionRefused
    ) {
        return;
    }
    tracing::warn!(%error, "accepting a connection failed; pausing");
    tokio::time::sleep(Duration::from_millis(100)).await;
}
