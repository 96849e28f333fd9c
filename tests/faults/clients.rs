//! Clients that misbehave: vanish in the middle of a call (stdio pipes closed, HTTP connection dropped), or send
//! their request so slowly that they would hold a connection for ever.

use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::*;
use crate::fault_support::load::Kind;
use crate::fault_support::{observer, raw, running, shared_cluster, wait_for};

/// How soon the server must stop a statement whose caller went away.
const CANCEL_BOUND: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_stdio_client_gets_its_query_cancelled_on_the_server() {
    let cluster = shared_cluster();
    let mut settings = Settings::new(cluster.port(), "faults-stdio-gone");
    settings.statement_timeout = "60s";
    let config = settings.write();
    let mut child = tokio::process::Command::new(http_support::pgmcp_bin())
        .args(["serve", "--config", config.path()])
        .env("PGMCP_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn pgmcp");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let send = |message: serde_json::Value| format!("{message}\n");
    stdin
        .write_all(
            send(
                json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "vanishing", "version": "1"}}}),
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(20), stdout.next_line())
        .await
        .expect("initialize answered")
        .unwrap()
        .expect("a line");
    assert!(answer.contains("\"id\":1"), "{answer}");
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "execute_query",
        "arguments": {"sql": "SELECT public.nap(30) AS stdio_client_vanished"}}});
    stdin
        .write_all(
            (send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})) + &send(call))
                .as_bytes(),
        )
        .await
        .unwrap();
    let observer = observer(cluster).await;
    wait_for(
        Duration::from_secs(10),
        "the slow statement runs",
        || async { running(&observer, "stdio_client_vanished").await == 1 },
    )
    .await;

    // The client goes away: both pipes close.
    drop(stdin);
    drop(stdout);
    let gone = wait_for(Duration::from_secs(10), "the statement stops", || async {
        running(&observer, "stdio_client_vanished").await == 0
    })
    .await;
    eprintln!(
        "RECOVERY stdio client vanished (statement cancelled after): {} ms",
        gone.as_millis()
    );
    assert!(gone <= CANCEL_BOUND, "the statement ran on for {gone:?}");
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("pgmcp exits once its client is gone")
        .unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_http_connection_gets_its_query_cancelled_on_the_server() {
    let cluster = shared_cluster();
    let mut settings = Settings::new(cluster.port(), "faults-http-gone");
    settings.statement_timeout = "60s";
    let config = settings.write();
    let server = serve_http(&config, &[]);
    let connection = raw::call_and_hold(
        server.addr,
        None,
        "SELECT public.nap(30) AS http_client_vanished",
    )
    .await;
    let observer = observer(cluster).await;
    wait_for(
        Duration::from_secs(10),
        "the slow statement runs",
        || async { running(&observer, "http_client_vanished").await == 1 },
    )
    .await;

    drop(connection);
    let gone = wait_for(Duration::from_secs(10), "the statement stops", || async {
        running(&observer, "http_client_vanished").await == 0
    })
    .await;
    eprintln!(
        "RECOVERY http client vanished (statement cancelled after): {} ms",
        gone.as_millis()
    );
    assert!(gone <= CANCEL_BOUND, "the statement ran on for {gone:?}");
    // The server serves on, with the connection back in its pool.
    let client = Load::http_client(&server.mcp_url(), None, CLIENT_TIMEOUT);
    let outcome = crate::fault_support::load::call(&client, Kind::Point, 0, CALL_BOUND).await;
    assert!(outcome.is_ok(), "{outcome:?}");
    fault_support::assert_no_panic(&server.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_http_clients_are_cut_off_and_others_are_unaffected() {
    let cluster = shared_cluster();
    let mut settings = Settings::new(cluster.port(), "faults-slow-clients");
    settings.request_timeout = "3s";
    settings.http = "header_read_timeout = \"1s\"".into();
    let config = settings.write();
    let server = serve_http(&config, &[]);

    let mut load = Load::new(Duration::from_secs(30));
    for n in 0..2 {
        load.add(
            &format!("http{n}"),
            Load::http_client(&server.mcp_url(), None, CLIENT_TIMEOUT),
            PACE,
            n,
            CALL_BOUND,
        );
    }
    let addr = server.addr;
    let limit = Duration::from_secs(10);
    let mut slow = Vec::new();
    // Twenty clients trickle their headers, ten send nothing at all, five trickle their body.
    for _ in 0..20 {
        slow.push(("headers", tokio::spawn(raw::trickle_headers(addr, limit))));
    }
    for _ in 0..10 {
        slow.push(("silent", tokio::spawn(raw::silent(addr, limit))));
    }
    for _ in 0..5 {
        slow.push(("body", tokio::spawn(raw::trickle_body(addr, None, limit))));
    }
    let mut cut = Vec::new();
    for (kind, task) in slow {
        let outcome = task.await.unwrap();
        let (took, answer) = outcome.unwrap_or_else(|| panic!("a {kind} client was never cut off"));
        match kind {
            // Headers: the header read timeout (1 s) closes the connection.
            "headers" | "silent" => assert!(
                took < Duration::from_millis(2500),
                "a {kind} client held its connection for {took:?}"
            ),
            // A body: the request timeout (3 s) answers 408.
            _ => {
                assert!(
                    took < Duration::from_millis(4500),
                    "a body trickler held its connection for {took:?}"
                );
                assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
            }
        }
        cut.push((kind, took));
    }
    let report = load.stop().await;
    eprintln!("{}", report.summary());
    for kind in ["headers", "silent", "body"] {
        let longest = cut
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, t)| *t)
            .max()
            .unwrap();
        eprintln!(
            "RECOVERY slow client ({kind}) cut off after at most: {} ms",
            longest.as_millis()
        );
    }
    // The well-behaved clients never noticed.
    assert_eq!(report.failures().count(), 0, "{}", report.summary());
    report.assert_bounded(Duration::from_secs(3));
    fault_support::assert_no_panic(&server.log());
}
