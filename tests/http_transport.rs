//! `pgmcp serve --http` as a real process on loopback: the official rmcp client in both protocol eras, the
//! transport's refusals over raw HTTP, probes, metrics and graceful shutdown.

mod common;
mod http_support;

use std::time::{Duration, Instant};

use common::{Era, reader_url};
use http_support::{HttpServer, INITIALIZE, connect, http, mcp_post, run_to_exit};
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};

fn serve_app(extra: &[&str]) -> HttpServer {
    let url = reader_url();
    let mut args = vec!["serve", "--database-url", &url, "--http", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    HttpServer::start(&args, &[])
}

/// `serve_app` with `config` as its configuration file, written into `dir`.
fn serve_app_with_config(dir: &std::path::Path, config: &str, extra: &[&str]) -> HttpServer {
    let path = dir.join("pgmcp.toml");
    std::fs::write(&path, config).unwrap();
    let mut args = vec!["--config", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    serve_app(&args)
}

async fn query(client: &http_support::HttpClient, sql: &str) -> Value {
    let mut params = CallToolRequestParams::new("execute_query");
    params.arguments = json!({"sql": sql}).as_object().cloned();
    let result = client.call_tool(params).await.expect("tools/call answered");
    assert_ne!(result.is_error, Some(true), "{result:?}");
    common::answer_of("execute_query", &result)
}

async fn lists_tools_and_queries(era: Era, extra: &[&str]) {
    let server = serve_app(extra);
    let client = connect(&server.mcp_url(), era).await;
    let tools = client.list_all_tools().await.expect("tools/list");
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert!(names.contains(&"execute_query"), "{names:?}");
    assert!(
        !names.contains(&"execute_write"),
        "read-only profile: {names:?}"
    );
    let result = query(&client, "SELECT 40 + 2 AS answer").await;
    assert_eq!(result["rows"], json!([[42]]));
    // A second call on the same client: stateless serving keeps no state between them.
    let result = query(&client, "SELECT count(*) AS n FROM generate_series(1, 5)").await;
    assert_eq!(result["rows"], json!([[5]]));
    client.cancel().await.ok();
}

#[tokio::test]
async fn legacy_era_lists_tools_and_queries_statelessly() {
    lists_tools_and_queries(Era::Legacy, &[]).await;
}

#[tokio::test]
async fn stateless_era_lists_tools_and_queries() {
    lists_tools_and_queries(Era::Stateless, &[]).await;
}

#[tokio::test]
async fn legacy_sessions_are_opt_in() {
    let client = http();
    let stateless = serve_app(&[]);
    let response = mcp_post(&client, &stateless.mcp_url(), INITIALIZE)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("mcp-session-id").is_none());

    let sessions = serve_app(&["--legacy-sessions"]);
    let response = mcp_post(&client, &sessions.mcp_url(), INITIALIZE)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("mcp-session-id").is_some());
    // The 2026-07-28 era never uses sessions, even in legacy session mode.
    lists_tools_and_queries(Era::Stateless, &["--legacy-sessions"]).await;
    lists_tools_and_queries(Era::Legacy, &["--legacy-sessions"]).await;
}

#[tokio::test]
async fn refuses_foreign_hosts_origins_big_and_malformed_bodies() {
    let server = serve_app(&["--allowed-origin", "http://app.example:8080"]);
    let client = http();
    let url = server.mcp_url();

    let wrong_host = mcp_post(&client, &url, INITIALIZE)
        .header("host", "attacker.example")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_host.status(), 403);
    let wrong_host_bad_body = mcp_post(&client, &url, "{")
        .header("host", "attacker.example:80")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_host_bad_body.status(), 403);
    let localhost = mcp_post(&client, &url, INITIALIZE)
        .header("host", format!("localhost:{}", server.addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(localhost.status(), 200);

    let foreign_origin = mcp_post(&client, &url, INITIALIZE)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(foreign_origin.status(), 403);
    let listed_origin = mcp_post(&client, &url, INITIALIZE)
        .header("origin", "http://app.example:8080")
        .send()
        .await
        .unwrap();
    assert_eq!(listed_origin.status(), 200);

    let malformed = mcp_post(&client, &url, "{\"jsonrpc\": \"2.0\", \"id\": 1,")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    let body: Value = malformed.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32700);
    assert_eq!(body["id"], Value::Null);

    let not_jsonrpc = mcp_post(&client, &url, r#"{"id": 7, "hello": "world"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(not_jsonrpc.status(), 400);
    let body: Value = not_jsonrpc.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32600);
    assert_eq!(body["id"], 7);
}

#[tokio::test]
async fn bodies_over_the_limit_get_413() {
    // A small configured limit keeps the whole request in socket buffers, so the client always reads the 413
    // (with 1 MiB bodies the server may answer and close before the client has finished sending).
    let dir = tempfile::tempdir().unwrap();
    let server = serve_app_with_config(dir.path(), "[http]\nmax_body_bytes = 4096\n", &[]);
    let client = http();
    let body = |pad: usize| {
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"pad":"{}"}}}}"#,
            "x".repeat(pad)
        )
    };
    let too_large = mcp_post(&client, &server.mcp_url(), body(8 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(too_large.status(), 413);
    let fits = mcp_post(&client, &server.mcp_url(), body(1024))
        .send()
        .await
        .unwrap();
    assert_eq!(fits.status(), 200);
}

#[tokio::test]
async fn probes_metrics_and_no_metadata_without_auth() {
    let server = serve_app(&[]);
    let client = http();
    let health = client.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "ok");
    let ready = client.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(ready.text().await.unwrap(), "ok");
    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
    ] {
        let prm = client.get(server.url(path)).send().await.unwrap();
        assert_eq!(prm.status(), 404, "{path}");
    }

    let mcp = connect(&server.mcp_url(), Era::Stateless).await;
    query(&mcp, "SELECT 1").await;
    mcp.cancel().await.ok();
    let metrics = client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"pgmcp_tool_calls_total{tool="execute_query",outcome="ok"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"pgmcp_tool_call_duration_seconds_count{tool="execute_query"} 1"#));
    assert!(metrics.contains(r#"pgmcp_pool_connections_idle{profile="default"}"#));
    assert!(
        !metrics.contains("reader@"),
        "no connection details in metrics"
    );
}

/// `[http] metrics = false` takes `/metrics` away (and with it the counting, which nothing would read); `/mcp`
/// serves as before.
#[tokio::test]
async fn metrics_off_removes_the_endpoint_and_mcp_still_serves() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_app_with_config(dir.path(), "[http]\nmetrics = false\n", &[]);
    let mcp = connect(&server.mcp_url(), Era::Stateless).await;
    query(&mcp, "SELECT 1").await;
    mcp.cancel().await.ok();
    let metrics = http().get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 404);
}

#[tokio::test]
async fn readyz_fails_when_the_database_is_down() {
    // Port 1 on loopback: nothing listens there, so connecting is refused at once.
    let server = HttpServer::start(
        &[
            "serve",
            "--database-url",
            "postgresql://reader:s3cret-pw@127.0.0.1:1/app?connect_timeout=2",
            "--http",
            "127.0.0.1:0",
        ],
        &[],
    );
    let client = http();
    let started = Instant::now();
    let ready = client.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    // Why, in words that name no host, user or password.
    assert_eq!(
        ready.text().await.unwrap(),
        "not ready\ndatabase: connection refused"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let health = client.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(!server.log().contains("s3cret-pw"));
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_query_finish_and_exits_zero() {
    let mut server = serve_app(&[]);
    let client = connect(&server.mcp_url(), Era::Stateless).await;
    // Seconds of work on any machine (pg_sleep is refused by the guard); the marker finds it in pg_stat_activity.
    let slow = tokio::spawn(async move {
        query(
            &client,
            "SELECT count(*) AS n FROM generate_series(1, 6000) a, generate_series(1, 6000) b \
             WHERE 'sigterm-in-flight' <> ''",
        )
        .await
    });
    let observer = common::observer().await;
    let mut running = false;
    for _ in 0..500 {
        if common::active_statements(&observer, "sigterm-in-flight").await > 0 {
            running = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(running, "the slow query never showed up as running");
    server.terminate();
    let result = tokio::time::timeout(Duration::from_secs(20), slow)
        .await
        .expect("the slow call finishes within the shutdown bound")
        .expect("call task");
    assert_eq!(result["rows"], json!([[36_000_000]]));
    let status = tokio::task::spawn_blocking(move || {
        let status = server.wait_exit(Duration::from_secs(15));
        (status, server.log())
    })
    .await
    .unwrap();
    let (status, log) = status;
    let status = status.unwrap_or_else(|| panic!("pgmcp did not exit after SIGTERM:\n{log}"));
    assert!(status.success(), "exit status {status:?}\n{log}");
    assert!(log.contains("termination signal received"), "{log}");
}

#[tokio::test]
async fn new_connections_are_refused_after_sigterm() {
    let mut server = serve_app(&[]);
    let url = server.url("/healthz");
    server.terminate();
    let status = tokio::task::spawn_blocking(move || server.wait_exit(Duration::from_secs(15)))
        .await
        .unwrap()
        .expect("exited");
    assert!(status.success());
    assert!(http().get(url).send().await.is_err());
}

#[test]
fn unauthenticated_non_loopback_bind_is_refused() {
    let url = reader_url();
    let (status, stderr) = run_to_exit(
        &["serve", "--database-url", &url, "--http", "0.0.0.0:0"],
        &[],
    );
    assert!(!status.success());
    assert!(stderr.contains("--allow-unauthenticated"), "{stderr}");
    assert!(stderr.contains("--auth-mode"), "{stderr}");

    // Even when allowed, listening on every interface needs the public URL for Host checks.
    let (status, stderr) = run_to_exit(
        &[
            "serve",
            "--database-url",
            &url,
            "--http",
            "0.0.0.0:0",
            "--allow-unauthenticated",
        ],
        &[],
    );
    assert!(!status.success());
    assert!(stderr.contains("--public-url"), "{stderr}");
}

#[test]
fn bad_settings_fail_at_start_up_naming_the_setting() {
    let url = reader_url();
    let cases: [(&[&str], &str); 4] = [
        (&["--http", "somewhere"], "--http"),
        (
            &["--http", "127.0.0.1:0", "--auth-mode", "basic"],
            "--auth-mode",
        ),
        (
            &["--http", "127.0.0.1:0", "--public-url", "not a url"],
            "--public-url",
        ),
        (
            &["--http", "127.0.0.1:0", "--allowed-origin", "app.example"],
            "--allowed-origin",
        ),
    ];
    for (extra, setting) in cases {
        let mut args = vec!["serve", "--database-url", &url];
        args.extend_from_slice(extra);
        let (status, stderr) = run_to_exit(&args, &[]);
        assert!(!status.success(), "{extra:?}");
        assert!(stderr.contains(setting), "{extra:?}: {stderr}");
    }
    // The environment variable is read like the flag.
    let (status, stderr) = run_to_exit(
        &["serve", "--database-url", &url],
        &[("PGMCP_HTTP", "0.0.0.0:0")],
    );
    assert!(!status.success());
    assert!(stderr.contains("--allow-unauthenticated"), "{stderr}");
}

/// A body without `Content-Length` (chunked) is counted while it streams in: over the limit it gets 413 and never
/// reaches a tool — the audit log, which records every tool call, stays empty — while the same call within the
/// limit runs.
#[tokio::test]
async fn chunked_bodies_over_the_limit_get_413_and_run_nothing() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let server = serve_app_with_config(
        dir.path(),
        "[http]\nmax_body_bytes = 4096\n",
        &["--audit-log", audit.to_str().unwrap()],
    );
    let call = |pad: usize| {
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
            "name": "execute_query", "arguments": {"sql": format!("SELECT 'chunked' /* {} */", "x".repeat(pad))}
        }})
        .to_string()
    };
    // Raw HTTP/1.1, because only a hand-written request is sure to carry no Content-Length.
    let send_chunked = |body: String| async move {
        let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let head = format!(
            "POST /mcp HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2025-06-18\r\n\
             Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
            server.addr
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        for chunk in body.as_bytes().chunks(1000) {
            let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), chunk, b"\r\n"].concat();
            // The server may answer and stop reading as soon as the limit is passed.
            if stream.write_all(&framed).await.is_err() {
                break;
            }
        }
        let _ = stream.write_all(b"0\r\n\r\n").await;
        let mut answer = Vec::new();
        let _ =
            tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
        String::from_utf8_lossy(&answer).into_owned()
    };
    let audited = || std::fs::read_to_string(&audit).unwrap_or_default();

    let refused = send_chunked(call(16 * 1024)).await;
    assert!(refused.starts_with("HTTP/1.1 413"), "{refused}");
    assert_eq!(audited(), "", "the refused call reached a tool");

    let fits = send_chunked(call(1024)).await;
    assert!(fits.starts_with("HTTP/1.1 200"), "{fits}");
    assert!(fits.contains("chunked"), "{fits}");
    let lines = audited();
    assert_eq!(lines.lines().count(), 1, "{lines}");
    assert!(lines.contains("execute_query"), "{lines}");
}

/// 2026-07-28 requests name their method and tool in headers (SEP-2243) for intermediaries that route without
/// reading the body; a header that disagrees with the body must be refused, or the two could be routed apart.
#[tokio::test]
async fn stateless_era_headers_must_agree_with_the_body() {
    let server = serve_app(&[]);
    let client = http();
    let url = server.mcp_url();
    let call = |sql: &str| {
        json!({
            "jsonrpc": "2.0", "id": 3, "method": "tools/call",
            "params": {
                "name": "execute_query",
                "arguments": {"sql": sql},
                "_meta": {
                    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                    "io.modelcontextprotocol/clientCapabilities": {},
                    "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
                },
            },
        })
        .to_string()
    };
    let send = |headers: &[(&str, &str)]| {
        let mut request = mcp_post(&client, &url, call("SELECT 40 + 2 AS answer"))
            .header("mcp-protocol-version", "2026-07-28");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let mismatch = rmcp::model::ErrorCode::HEADER_MISMATCH.0;

    let (status, agreed) =
        send(&[("mcp-method", "tools/call"), ("mcp-name", "execute_query")]).await;
    assert_eq!(status, 200, "{agreed}");
    let text = agreed["result"]["content"][0]["text"].as_str().unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(text).unwrap()["rows"],
        json!([[42]])
    );
    // A name may come Base64-wrapped (`=?base64?…?=`), and then means what it decodes to.
    let (status, wrapped) = send(&[
        ("mcp-method", "tools/call"),
        ("mcp-name", "=?base64?ZXhlY3V0ZV9xdWVyeQ==?="),
    ])
    .await;
    assert_eq!(status, 200, "{wrapped}");
    assert!(
        wrapped["result"]["content"][0]["text"].is_string(),
        "{wrapped}"
    );

    let refusals: [&[(&str, &str)]; 5] = [
        &[("mcp-name", "execute_query")],
        &[("mcp-method", "tools/list"), ("mcp-name", "execute_query")],
        &[("mcp-method", "tools/call")],
        &[("mcp-method", "tools/call"), ("mcp-name", "list_schemas")],
        &[
            ("mcp-method", "tools/call"),
            ("mcp-name", "execute_query"),
            ("mcp-name", "execute_query"),
        ],
    ];
    for headers in refusals {
        let (status, refused) = send(headers).await;
        assert_eq!(status, 400, "{headers:?}: {refused}");
        assert_eq!(refused["error"]["code"], mismatch, "{headers:?}: {refused}");
        assert_eq!(refused["id"], 3, "{headers:?}: {refused}");
        assert!(refused.get("result").is_none(), "{headers:?}: {refused}");
    }
}
