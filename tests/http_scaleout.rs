//! Scale-out: three pgmcp instances behind a real nginx (round-robin) on loopback. Stateless serving means any
//! instance can answer any request, so a client's calls succeed across instances and keep succeeding when one
//! instance goes away.

mod common;
mod http_support;
mod nginx_support;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Era, reader_url};
use http_support::{HttpClient, HttpServer, connect, http};
use nginx_support::start_nginx;
use serde_json::json;

async fn wait_until_up(url: &str) {
    let client = http();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(r) = client.get(url).send().await
            && r.status() == 200
        {
            return;
        }
        assert!(Instant::now() < deadline, "nothing answers {url}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How many POSTs to /mcp each upstream answered with 200, from nginx's access log.
fn answered_by(dir: &Path, upstream: std::net::SocketAddr) -> usize {
    let log = std::fs::read_to_string(dir.join("access.log")).unwrap_or_default();
    log.lines()
        .filter(|l| l.starts_with("POST ") && l.contains(&format!(" {upstream} 200 ")))
        .count()
}

async fn calls_served(server: &HttpServer) -> u64 {
    let text = http()
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("pgmcp_tool_calls_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

async fn round(client: &HttpClient, n: i64) {
    let result = common::call_ok(
        client,
        "execute_query",
        json!({"sql": "SELECT $1::int * 2 AS doubled", "params": [n]}),
    )
    .await;
    assert_eq!(result["rows"], json!([[n * 2]]));
}

#[tokio::test]
async fn calls_succeed_across_instances_and_survive_losing_one() {
    let url = reader_url();
    let mut instances: Vec<HttpServer> = (0..3)
        .map(|_| {
            HttpServer::start(
                &["serve", "--database-url", &url, "--http", "127.0.0.1:0"],
                &[],
            )
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let addrs: Vec<_> = instances.iter().map(|s| s.addr).collect();
    let nginx = start_nginx(dir.path(), &addrs);
    let base = format!("http://127.0.0.1:{}", nginx.port);
    wait_until_up(&format!("{base}/healthz")).await;

    let mcp = format!("{base}/mcp");
    let stateless = connect(&mcp, Era::Stateless).await;
    let legacy = connect(&mcp, Era::Legacy).await;
    for n in 0..6 {
        round(&stateless, n).await;
        round(&legacy, n).await;
        let tools = legacy.list_all_tools().await.expect("tools/list");
        assert!(tools.iter().any(|t| t.name == "execute_query"));
    }
    for (i, instance) in instances.iter().enumerate() {
        assert!(
            answered_by(dir.path(), instance.addr) > 0,
            "round-robin should have reached instance {i}"
        );
    }

    // One instance dies mid-run; nginx skips it and the same clients carry on.
    instances[1].kill();
    for n in 10..20 {
        round(&stateless, n).await;
        round(&legacy, n).await;
    }
    let total: u64 = {
        let mut sum = 0;
        for i in [0, 2] {
            sum += calls_served(&instances[i]).await;
        }
        sum
    };
    assert!(
        total >= 20,
        "the surviving instances served the rest ({total})"
    );
    stateless.cancel().await.ok();
    legacy.cancel().await.ok();
    drop(nginx);
}
