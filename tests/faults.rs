//! Fault injection against real parts: real PostgreSQL clusters (stopped, restarted, their sessions terminated, the
//! network to them stalled or reset through a loopback proxy), the real `pgmcp` binary over HTTP and stdio, real
//! HTTP clients. Each case runs a steady mixed load, injects one fault, and checks what the callers saw during it
//! (a clear error naming the cause, or an HTTP status a client can act on; never a hang past the call's bound, never
//! a panic), how long recovery took after it ended, and that pgmcp was not restarted. The recovery times printed as
//! `RECOVERY` lines are the figures in the README's *Operations: faults* section.

mod common;
mod fault_support;
mod http_support;
mod identity_support;
mod oidc_support;

#[path = "faults/clients.rs"]
mod clients;
#[path = "faults/credentials.rs"]
mod credentials;
#[path = "faults/database.rs"]
mod database;
#[path = "faults/pool.rs"]
mod pool;
#[path = "faults/shutdown.rs"]
mod shutdown;

use std::sync::Arc;
use std::time::Duration;

use common::Era;
use fault_support::load::{Client, Load};
use fault_support::raw::{execute, tool_error};
use fault_support::{Config, Settings};
use http_support::HttpServer;

/// How often each load client calls (less the call's own time).
const PACE: Duration = Duration::from_millis(100);
/// No call may take longer: the request timeout (8 s in the test configuration) and a margin. The HTTP clients'
/// own timeout is a little longer, so that a call pgmcp did not bound shows as such.
const CALL_BOUND: Duration = Duration::from_secs(9);
const CLIENT_TIMEOUT: Duration = Duration::from_secs(12);
/// The longest recovery any fault may take before the test fails; the measured figures are far below it.
const RECOVERY_BOUND: Duration = Duration::from_secs(6);

/// `pgmcp serve --http` with a configuration.
fn serve_http(config: &Config, env: &[(&str, &str)]) -> HttpServer {
    serve_http_with(config, &[], env)
}

/// `pgmcp serve --http` with a configuration and more flags.
fn serve_http_with(config: &Config, args: &[&str], env: &[(&str, &str)]) -> HttpServer {
    let mut all = vec!["serve", "--config", config.path(), "--http", "127.0.0.1:0"];
    all.extend_from_slice(args);
    HttpServer::start(&all, env)
}

/// The flags that make pgmcp accept the test OpenID provider's Entra-shaped app tokens (its authority is in the
/// configuration's `[auth]` table).
fn entra_flags() -> Vec<&'static str> {
    use oidc_support::{AGENT_APP, APP_ID_URI, CLIENT_ID, ROLE, TENANT};
    vec![
        "--auth-mode",
        "entra",
        "--entra-tenant-id",
        TENANT,
        "--entra-client-id",
        CLIENT_ID,
        "--entra-app-id-uri",
        APP_ID_URI,
        "--required-role",
        ROLE,
        "--allowed-client-app",
        AGENT_APP,
    ]
}

/// pgmcp over HTTP and over stdio on the same database, three HTTP clients and one stdio client calling the mix.
struct Rig {
    server: HttpServer,
    pid: u32,
    load: Load,
    _config: Config,
}

async fn rig(settings: &Settings) -> Rig {
    let config = settings.write();
    let server = serve_http(&config, &[]);
    let pid = server.pid();
    let stdio =
        http_support::spawn_stdio(&["serve", "--config", config.path()], &[], Era::Stateless).await;
    let mut load = Load::new(Duration::from_secs(90));
    for n in 0..3 {
        load.add(
            &format!("http{n}"),
            Load::http_client(&server.mcp_url(), None, CLIENT_TIMEOUT),
            PACE,
            n * 2,
            CALL_BOUND,
        );
    }
    load.add("stdio", Client::Stdio(Arc::new(stdio)), PACE, 1, CALL_BOUND);
    Rig {
        server,
        pid,
        load,
        _config: config,
    }
}

impl Rig {
    /// pgmcp is the same process it was, still running, and answers.
    async fn assert_not_restarted(&mut self) {
        assert_eq!(self.server.pid(), self.pid);
        let health = http_support::http()
            .get(self.server.url("/healthz"))
            .send()
            .await
            .expect("healthz");
        assert_eq!(health.status(), 200);
        fault_support::assert_no_panic(&self.server.log());
    }
}

/// Prints a recovery figure in a form the README's table is made from.
fn report_recovery(fault: &str, recovery: Duration) {
    eprintln!("RECOVERY {fault}: {} ms", recovery.as_millis());
    assert!(
        recovery <= RECOVERY_BOUND,
        "{fault}: recovery took {recovery:?}"
    );
}

/// /readyz: its status and body.
async fn readyz(server: &HttpServer) -> (u16, String) {
    let response = http_support::http()
        .get(server.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    (
        response.status().as_u16(),
        response.text().await.expect("readyz body"),
    )
}

/// The metrics a scrape shows, as text.
async fn metrics(server: &HttpServer) -> String {
    http_support::http()
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text")
}

/// The value of a Prometheus sample line that starts with `prefix`.
fn sample(metrics: &str, prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|line| line.starts_with(prefix))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}
