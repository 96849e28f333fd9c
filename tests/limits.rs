//! Ceilings and timeouts: big results stream and stop early in bounded memory; slow statements are cancelled on
//! the server and the connection stays healthy.

mod common;

use std::time::{Duration, Instant};

use common::{
    Era, active_statements, call_err, call_ok, observer, peak_rss_kib, reader_url, rows, spawn,
    spawn_with_pid,
};
use serde_json::json;

#[tokio::test]
async fn ten_million_rows_return_promptly_in_flat_memory() {
    let url = reader_url();
    let (client, pid) = spawn_with_pid(&["serve", "--database-url", &url], &[], Era::Legacy).await;
    let small = call_ok(
        &client,
        "execute_query",
        json!({"sql": "SELECT g, repeat('x', 64) FROM generate_series(1, 1000) g"}),
    )
    .await;
    assert_eq!(small["row_count"], json!(1000));
    let baseline = peak_rss_kib(pid);
    let started = Instant::now();
    let big = call_ok(
        &client,
        "execute_query",
        json!({"sql": "SELECT generate_series(1, 10000000) AS g, repeat('x', 64) AS pad"}),
    )
    .await;
    let elapsed = started.elapsed();
    assert_eq!(big["row_count"], json!(1000));
    assert_eq!(big["truncated"], json!(true));
    assert_eq!(rows(&big)[999][0], json!(1000));
    let peak = peak_rss_kib(pid);
    assert!(
        peak < baseline + 16 * 1024,
        "peak RSS grew from {baseline} KiB to {peak} KiB for a 10M-row query"
    );
    // Generous bound: the point is that pgmcp does not wait for ten million rows.
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    client.cancel().await.ok();
}

#[tokio::test]
async fn byte_ceiling_truncates_like_the_row_ceiling() {
    let url = reader_url();
    let client = spawn(
        &[
            "serve",
            "--database-url",
            &url,
            "--max-result-bytes",
            "2000",
        ],
        &[],
        Era::Stateless,
    )
    .await;
    let result = call_ok(
        &client,
        "execute_query",
        json!({"sql": "SELECT repeat('x', 100) FROM generate_series(1, 1000)"}),
    )
    .await;
    assert_eq!(result["truncated"], json!(true));
    assert_eq!(result["truncated_by"], json!("max_result_bytes"));
    let count = result["row_count"].as_u64().unwrap();
    assert!(
        (10..20).contains(&count),
        "{count} rows of ~107 bytes fit in 2000 bytes"
    );
    assert!(serde_json::to_string(&result["rows"]).unwrap().len() <= 2000);
    client.cancel().await.ok();
}

#[tokio::test]
async fn slow_statement_is_cancelled_on_the_server_and_the_session_recovers() {
    let url = reader_url();
    let client = spawn(
        &[
            "serve",
            "--database-url",
            &url,
            "--statement-timeout",
            "300ms",
            "--pool-max",
            "1",
        ],
        &[],
        Era::Legacy,
    )
    .await;
    let started = Instant::now();
    let err = call_err(
        &client,
        "execute_query",
        json!({"sql": "SELECT count(*) FROM generate_series(1, 500000000)"}),
    )
    .await;
    assert_eq!(err["error"], json!("timeout"), "{err}");
    assert_eq!(err["timeout_ms"], json!(300));
    assert!(started.elapsed() < Duration::from_secs(5));
    // The same (only) pooled connection answers the next call.
    let ok = call_ok(&client, "execute_query", json!({"sql": "SELECT 42"})).await;
    assert_eq!(rows(&ok)[0], json!([42]));
    // Nothing is left running on the server.
    assert_eq!(active_statements(&observer().await, "500000000").await, 0);
    client.cancel().await.ok();
}

#[tokio::test]
async fn a_cancelled_request_stops_its_statement_on_the_server() {
    let url = reader_url();
    let client = spawn(
        &[
            "serve",
            "--database-url",
            &url,
            "--statement-timeout",
            "60s",
        ],
        &[],
        Era::Legacy,
    )
    .await;
    let handle = common::send_cancellable_call(
        &client,
        "execute_query",
        json!({"sql": "SELECT count(*) FROM generate_series(1, 2000000000) AS cancel_me"}),
    )
    .await;
    let observer = observer().await;
    let started = Instant::now();
    while active_statements(&observer, "cancel_me").await == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the statement never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    handle
        .cancel(Some("the user gave up".into()))
        .await
        .expect("cancel sent");
    let cancelled_at = Instant::now();
    while active_statements(&observer, "cancel_me").await > 0 {
        assert!(
            cancelled_at.elapsed() < Duration::from_secs(5),
            "the statement kept running after the cancel"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The server still answers.
    let ok = call_ok(&client, "execute_query", json!({"sql": "SELECT 1"})).await;
    assert_eq!(rows(&ok)[0], json!([1]));
    client.cancel().await.ok();
}
