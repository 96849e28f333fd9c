//! PostgreSQL going away under load: restarted (fast and immediate shutdown), down when pgmcp starts, its sessions
//! terminated by an administrator, the network to it stalled or reset.

use std::time::Duration;

use pgmcp::demo::cluster::ShutdownMode;

use super::*;
use crate::fault_support::load::Kind;
use crate::fault_support::proxy::{Mode, Proxy};
use crate::fault_support::{
    backends, fresh_cluster, observer, shared_cluster, terminate_backends, wait_for,
};

/// What a caller may read when the database is away: each names PostgreSQL or the connection.
const DATABASE_AWAY: &[&str] = &[
    "postgresql",
    "connection",
    "did not answer",
    "shutting down",
    "starting up",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_restarts_mid_load_are_survived_without_restarting_pgmcp() {
    let cluster = tokio::task::spawn_blocking(fresh_cluster).await.unwrap();
    let mut rig = rig(&Settings::new(cluster.port(), "faults-restart")).await;
    let cluster = std::sync::Arc::new(cluster);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut windows = Vec::new();
    for mode in [ShutdownMode::Fast, ShutdownMode::Immediate] {
        let fault_start = rig.load.now();
        let stopping = cluster.clone();
        tokio::task::spawn_blocking(move || stopping.stop_with(mode))
            .await
            .unwrap()
            .expect("stop PostgreSQL");
        // Down for a second: calls now find nobody listening.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let starting = cluster.clone();
        tokio::task::spawn_blocking(move || starting.start_again())
            .await
            .unwrap()
            .expect("start PostgreSQL again");
        let fault_end = rig.load.now();
        tokio::time::sleep(Duration::from_secs(4)).await;
        windows.push((mode, fault_start, fault_end, rig.load.now()));
    }
    let load = std::mem::replace(&mut rig.load, Load::new(Duration::ZERO));
    let report = load.stop().await;
    eprintln!("{}", report.summary());
    report.assert_clean_before(windows[0].1);
    report.assert_bounded(CALL_BOUND);
    report.assert_failures_are_clear(&["unavailable"], DATABASE_AWAY);
    assert!(
        report.failures().count() > 0,
        "stopping PostgreSQL under load failed no call: the fault did not happen"
    );
    for (mode, _, fault_end, until) in &windows {
        let recovery = report.recovery_after(*fault_end, *until);
        for sample in report
            .failures()
            .filter(|s| s.started >= *fault_end && s.ended() < *until)
        {
            eprintln!(
                "after {mode:?}: {}",
                crate::fault_support::load::describe(sample)
            );
        }
        report_recovery(&format!("postgres restart ({mode:?})"), recovery);
        report.assert_each_client_succeeds_after(*fault_end + recovery, 2);
    }
    rig.assert_not_restarted().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_starts_while_postgres_is_down_and_recovers_when_it_comes_up() {
    let cluster = tokio::task::spawn_blocking(|| {
        let cluster = fresh_cluster();
        cluster.stop_with(ShutdownMode::Fast).expect("stop");
        cluster
    })
    .await
    .unwrap();
    let config = Settings::new(cluster.port(), "faults-down-at-start").write();
    let server = serve_http(&config, &[]);
    let stdio =
        http_support::spawn_stdio(&["serve", "--config", config.path()], &[], Era::Stateless).await;

    let (status, body) = readyz(&server).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body, "not ready\ndatabase: connection refused",
        "readyz says why"
    );
    // tools/list needs no database.
    let client = Load::http_client(&server.mcp_url(), None, CLIENT_TIMEOUT);
    let http = http_support::http();
    let listed = http_support::mcp_post(
        &http,
        &server.mcp_url(),
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(listed.status(), 200);
    // Calls fail at once, saying why, over HTTP and stdio.
    let stdio = Client::Stdio(std::sync::Arc::new(stdio));
    for client in [&client, &stdio] {
        let started = std::time::Instant::now();
        let outcome = crate::fault_support::load::call(client, Kind::Point, 1, CALL_BOUND).await;
        assert_eq!(outcome.label(), "unavailable", "{outcome:?}");
        assert!(outcome.text().contains("Connection refused"), "{outcome:?}");
        assert!(started.elapsed() < Duration::from_secs(3), "failed fast");
    }

    let starting = std::sync::Arc::new(cluster);
    let started_db = starting.clone();
    tokio::task::spawn_blocking(move || started_db.start_again())
        .await
        .unwrap()
        .expect("start PostgreSQL");
    let up = std::time::Instant::now();
    for client in [&client, &stdio] {
        wait_for(
            RECOVERY_BOUND,
            "a call succeeds once PostgreSQL is up",
            || async {
                crate::fault_support::load::call(client, Kind::Point, 2, CALL_BOUND)
                    .await
                    .is_ok()
            },
        )
        .await;
    }
    report_recovery("postgres down at start", up.elapsed());
    let (status, body) = readyz(&server).await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    fault_support::assert_no_panic(&server.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn terminated_backends_are_replaced() {
    let cluster = shared_cluster();
    let name = "faults-terminate";
    let mut rig = rig(&Settings::new(cluster.port(), name)).await;
    let observer = observer(cluster).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !backends(&observer, name).await.is_empty(),
        "pgmcp has sessions open"
    );
    let fault_at = rig.load.now();
    let terminated = terminate_backends(&observer, name).await;
    assert!(terminated > 0);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let until = rig.load.now();
    let load = std::mem::replace(&mut rig.load, Load::new(Duration::ZERO));
    let report = load.stop().await;
    eprintln!("{}", report.summary());
    report.assert_clean_before(fault_at);
    report.assert_bounded(CALL_BOUND);
    report.assert_failures_are_clear(&["unavailable"], DATABASE_AWAY);
    report_recovery(
        "pg_terminate_backend of every session",
        report.recovery_after(fault_at, until),
    );
    // Every client is served again after the fault (a second after it, so that its own call in flight is over).
    report.assert_each_client_succeeds_after(fault_at + Duration::from_secs(1), 2);
    // The pool replaced what was terminated: pgmcp has sessions again, none of the old ones.
    let now = backends(&observer, name).await;
    assert!(!now.is_empty());
    rig.assert_not_restarted().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_network_is_bounded_and_broken_connections_are_replaced() {
    let cluster = shared_cluster();
    let proxy = Proxy::start(([127, 0, 0, 1], cluster.port()).into()).await;
    let name = "faults-stall";
    let mut settings = Settings::new(proxy.port(), name);
    settings.statement_timeout = "1s";
    let mut rig = rig(&settings).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // A stall longer than any call's deadline (2 × statement_timeout + 2 s): calls must end on their own.
    let stall_start = rig.load.now();
    proxy.set_mode(Mode::Stall);
    tokio::time::sleep(Duration::from_secs(6)).await;
    proxy.set_mode(Mode::Forward);
    let stall_end = rig.load.now();
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Then every connection reset at once, as by a middlebox that lost its state.
    let reset_at = rig.load.now();
    proxy.reset_all();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let until = rig.load.now();

    let load = std::mem::replace(&mut rig.load, Load::new(Duration::ZERO));
    let report = load.stop().await;
    eprintln!("{}", report.summary());
    report.assert_clean_before(stall_start);
    report.assert_bounded(CALL_BOUND);
    report.assert_failures_are_clear(&["unavailable", "busy"], DATABASE_AWAY);
    let stalled: Vec<_> = report.started_in(stall_start, stall_end).collect();
    assert!(
        stalled
            .iter()
            .any(|s| s.outcome.text().contains("did not answer")),
        "calls during the stall said that PostgreSQL did not answer:\n{}",
        report.summary()
    );
    // Bounded by pgmcp (2 × statement_timeout + 2 s = 4 s), not by the stall's end (6 s).
    let longest = stalled.iter().map(|s| s.elapsed).max().unwrap_or_default();
    eprintln!(
        "RECOVERY network stall: the longest call during it took {} ms",
        longest.as_millis()
    );
    assert!(
        longest < Duration::from_millis(5000),
        "a call waited {longest:?} for a stalled network"
    );
    report_recovery(
        "network stall (6 s)",
        report.recovery_after(stall_end, reset_at),
    );
    report_recovery(
        "every connection reset",
        report.recovery_after(reset_at, until),
    );
    report.assert_each_client_succeeds_after(until - Duration::from_secs(1), 1);
    rig.assert_not_restarted().await;
    // What the stall left behind was closed: pgmcp holds no more connections than its two pools allow.
    let open = proxy.open_connections();
    assert!(
        open <= 8,
        "{open} connections through the proxy after the faults"
    );
}
