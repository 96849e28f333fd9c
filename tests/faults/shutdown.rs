//! SIGTERM under load: calls in flight finish within the shutdown bound, new ones are refused before anything is
//! answered, and no answer is cut off.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::*;
use crate::fault_support::load::Outcome;
use crate::fault_support::{observer, running, shared_cluster, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_load_finishes_calls_in_flight_and_refuses_new_ones_cleanly() {
    let cluster = shared_cluster();
    let config = Settings::new(cluster.port(), "faults-sigterm").write();
    let mut server = serve_http(&config, &[]);
    let url = server.mcp_url();
    let mut load = Load::new(Duration::from_secs(30));
    for n in 0..2 {
        load.add(
            &format!("keep-alive{n}"),
            Load::http_client(&url, None, CLIENT_TIMEOUT),
            PACE,
            n * 3,
            CALL_BOUND,
        );
    }
    // A client that opens a new connection for every call.
    http_support::install_crypto();
    let fresh = reqwest::Client::builder()
        .timeout(CLIENT_TIMEOUT)
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    load.add(
        "new-connection",
        Client::Http {
            url: url.clone(),
            client: fresh,
            token: None,
        },
        PACE,
        5,
        CALL_BOUND,
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // A call of a second and a half is running when the signal comes.
    let long = {
        let (client, url) = (http_support::http(), url.clone());
        tokio::spawn(async move {
            execute(
                &client,
                &url,
                None,
                "SELECT public.nap(1.5) AS sigterm_in_flight",
            )
            .await
        })
    };
    let observer = observer(cluster).await;
    wait_for(Duration::from_secs(10), "the long call runs", || async {
        running(&observer, "sigterm_in_flight").await == 1
    })
    .await;
    let term_at = load.now();
    let signalled = Instant::now();
    server.terminate();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A new client is refused at the door.
    let refused = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)
        .send()
        .await
        .expect_err("a new connection after SIGTERM is refused");
    assert!(refused.is_connect(), "{refused:?}");
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let report = load.stop().await;
    eprintln!("{}", report.summary());

    let (status, answer, _, _) = long.await.unwrap();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(tool_error(&answer), Value::Null, "{answer}");
    let rows: Value =
        serde_json::from_str(answer["result"]["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(
        rows["rows"],
        json!([[1]]),
        "the call in flight finished whole"
    );

    let (status, log) = tokio::task::spawn_blocking(move || {
        let status = server.wait_exit(Duration::from_secs(10));
        (status, server.log())
    })
    .await
    .unwrap();
    let stopped = signalled.elapsed();
    let status = status.unwrap_or_else(|| panic!("pgmcp did not exit after SIGTERM:\n{log}"));
    assert!(status.success(), "{status:?}\n{log}");
    assert!(log.contains("in-flight calls finished"), "{log}");
    fault_support::assert_no_panic(&log);
    eprintln!(
        "RECOVERY sigterm (exit after the signal): {} ms",
        stopped.as_millis()
    );

    // Before the signal everything worked; after it, calls were refused without an answer — none was cut off,
    // malformed or answered with an error status.
    report.assert_clean_before(term_at);
    report.assert_bounded(CALL_BOUND);
    for sample in report.failures() {
        assert!(
            matches!(&sample.outcome, Outcome::Transport { timeout: false, .. }),
            "after SIGTERM a call must be refused before any answer:\n{}",
            crate::fault_support::load::describe(sample)
        );
    }
    assert!(
        report.failures().count() > 0,
        "the load went on after the signal and was refused"
    );
}
