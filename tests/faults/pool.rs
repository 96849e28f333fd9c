//! More work than connections: calls wait for a connection at most `pool_wait_timeout`, then fail as `busy`; and
//! one caller's burst is refused with 429 before it can take the connections every other caller needs.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::*;
use crate::fault_support::load::{Kind, SharedToken};
use crate::fault_support::shared_cluster;
use crate::oidc_support::{Provider, entra_clients};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pool_exhaustion_fails_busy_after_the_wait_and_the_pool_recovers() {
    let cluster = shared_cluster();
    let mut settings = Settings::new(cluster.port(), "faults-exhaustion");
    settings.pool_max = 2;
    settings.pool_wait_timeout = "1s";
    settings.statement_timeout = "5s";
    let config = settings.write();
    let server = serve_http(&config, &[]);
    let url = server.mcp_url();
    let client = http_support::http();

    // Six slow calls at once against two connections: two run, four wait a second and are told the server is busy.
    let started = Instant::now();
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                execute(&client, &url, None, "SELECT public.nap(2.5) AS exhaustion").await
            })
        })
        .collect();
    let mut ok = 0;
    let mut busy = Vec::new();
    for call in calls {
        let (status, answer, took, _) = call.await.unwrap();
        assert_eq!(status, 200, "{answer}");
        let error = tool_error(&answer);
        if error.is_null() {
            ok += 1;
        } else {
            assert_eq!(error["error"], "busy", "{answer}");
            let message = error["message"].as_str().unwrap();
            assert!(
                message.contains("all 2 connections") && message.contains("pool_wait_timeout"),
                "{message}"
            );
            busy.push(took);
        }
    }
    assert_eq!((ok, busy.len()), (2, 4), "two ran, four were busy");
    for took in &busy {
        // The wait is bounded by pool_wait_timeout (1 s), not by the slow calls (2.5 s).
        assert!(
            *took >= Duration::from_millis(900) && *took < Duration::from_millis(2200),
            "a busy call took {took:?}"
        );
    }
    // Right after, the pool serves again at once.
    let freed = started.elapsed();
    let (status, answer, took, _) = execute(&client, &url, None, "SELECT 1").await;
    assert_eq!(
        (status, tool_error(&answer)),
        (200, Value::Null),
        "{answer}"
    );
    report_recovery("pool exhaustion", took);
    assert!(freed < Duration::from_secs(6));
    let metrics = metrics(&server).await;
    assert_eq!(
        sample(&metrics, "pgmcp_pool_waiting{"),
        Some(0.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "pgmcp_tool_calls_total{tool=\"execute_query\",outcome=\"busy\"}"
        ),
        Some(4.0),
        "{metrics}"
    );
    fault_support::assert_no_panic(&server.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_caller_cannot_starve_the_others() {
    let cluster = shared_cluster();
    let provider = tokio::task::spawn_blocking(|| Provider::start(entra_clients("{base}")))
        .await
        .unwrap();
    let mut settings = Settings::new(cluster.port(), "faults-starve");
    settings.pool_max = 4;
    settings.pool_wait_timeout = "1s";
    settings.statement_timeout = "5s";
    settings.extra = format!("[auth]\nentra_authority = \"{}\"\n", provider.base);
    let config = settings.write();
    let mut args = entra_flags();
    args.extend(["--per-caller-concurrency", "2"]);
    let server = serve_http_with(&config, &args, &[]);
    let url = server.mcp_url();
    let greedy = provider.token("v2-app").await;
    let other = provider.token("v2-other-oid").await;
    let client = http_support::http();
    // Both callers are admitted at all.
    for token in [&greedy, &other] {
        let (status, answer, _, _) = execute(&client, &url, Some(token), "SELECT 1").await;
        assert_eq!(
            (status, tool_error(&answer)),
            (200, Value::Null),
            "{answer}"
        );
    }

    // The greedy caller fires six three-second calls at once: two run, two wait for its own slots and run next,
    // two are still waiting after five seconds and are refused with 429. Its calls never hold more than two
    // connections.
    let burst: Vec<_> = (0..6)
        .map(|_| {
            let (client, url, token) = (client.clone(), url.clone(), greedy.clone());
            tokio::spawn(async move {
                execute(
                    &client,
                    &url,
                    Some(&token),
                    "SELECT public.nap(3) AS greedy_caller",
                )
                .await
            })
        })
        .collect();
    let observer = crate::fault_support::observer(cluster).await;
    let sampling = tokio::spawn(async move {
        let mut most = 0;
        for _ in 0..150 {
            most = most.max(crate::fault_support::running(&observer, "greedy_caller").await);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        most
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Meanwhile the other caller's calls go through promptly: the connections were not all taken.
    for n in 0..5 {
        let started = Instant::now();
        let outcome = crate::fault_support::load::call(
            &Client::Http {
                url: url.clone(),
                client: client.clone(),
                token: Some(SharedToken::new(other.clone())),
            },
            Kind::Point,
            n,
            CALL_BOUND,
        )
        .await;
        assert!(
            outcome.is_ok(),
            "the other caller's call failed: {outcome:?}"
        );
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(900),
            "the other caller waited {took:?}: the greedy caller took the connections"
        );
    }
    let mut refused = 0;
    let mut ran = 0;
    for call in burst {
        let (status, answer, took, retry_after) = call.await.unwrap();
        match status {
            429 => {
                refused += 1;
                assert_eq!(retry_after.as_deref(), Some("1"));
                assert!(
                    took >= Duration::from_millis(4800) && took < Duration::from_millis(5800),
                    "refused after the five-second wait, took {took:?}"
                );
                let message = answer["error"]["message"].as_str().unwrap_or_default();
                assert!(message.contains("at most 2 run at once"), "{answer}");
            }
            200 => {
                assert_eq!(tool_error(&answer), Value::Null, "{answer}");
                ran += 1;
            }
            other => panic!("unexpected status {other}: {answer}"),
        }
    }
    assert_eq!((ran, refused), (4, 2));
    assert_eq!(
        sampling.await.unwrap(),
        2,
        "the greedy caller ran two statements at a time"
    );
    // Once the greedy caller's calls ended, it is admitted again.
    let (status, _, _, _) = execute(&client, &url, Some(&greedy), "SELECT 1").await;
    assert_eq!(status, 200);
}
