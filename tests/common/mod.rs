//! Shared test harness: one throwaway PostgreSQL cluster per test binary, fixtures, and pgmcp driven over stdio by
//! the official Rust MCP client (rmcp).
#![allow(dead_code)]

pub mod contract;

use std::sync::OnceLock;

use pgmcp::demo::cluster::{ClusterOptions, TempCluster};
use rmcp::model::{CallToolRequestParams, CallToolResult, ProtocolVersion};
use rmcp::service::RunningService;
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use rmcp::{ClientLifecycleMode, ClientServiceExt, RoleClient};
use serde_json::{Map, Value};

pub const FIXTURES: &str = include_str!("fixtures.sql");

static CLUSTER: OnceLock<TempCluster> = OnceLock::new();

/// The cluster shared by every test in this binary, with the `app` database loaded from fixtures.sql.
pub fn cluster() -> &'static TempCluster {
    CLUSTER.get_or_init(|| {
        let cluster =
            TempCluster::start(&ClusterOptions::default()).expect("start a throwaway PostgreSQL");
        cluster
            .psql("postgres", "CREATE DATABASE app")
            .expect("create the app database");
        cluster.psql("app", FIXTURES).expect("load fixtures");
        cluster
    })
}

/// URL of the `app` database as the least-privilege role `reader` (SELECT only), as users are told to configure it.
pub fn reader_url() -> String {
    let c = cluster();
    format!("postgresql://reader@{}:{}/app", c.host(), c.port())
}

pub fn superuser_url() -> String {
    cluster().url("app")
}

pub type Client = RunningService<RoleClient, ()>;

#[derive(Clone, Copy, Debug)]
pub enum Era {
    /// `initialize` handshake, protocol 2025-11-25 sessions.
    Legacy,
    /// Stateless 2026-07-28: `server/discover` and per-request `_meta`.
    Stateless,
}

/// Spawns `pgmcp serve` with the given arguments and environment and connects an rmcp client in the given era.
pub async fn spawn(args: &[&str], env: &[(&str, &str)], era: Era) -> Client {
    spawn_with_pid(args, env, era).await.0
}

/// Like `spawn`, also returning the server's process id (to read its memory use from /proc).
pub async fn spawn_with_pid(args: &[&str], env: &[(&str, &str)], era: Era) -> (Client, u32) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let command = tokio::process::Command::new(env!("CARGO_BIN_EXE_pgmcp")).configure(|cmd| {
        cmd.args(&args);
        // A clean slate: the machine's own PG* variables must not leak into what a test configures.
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
    let transport = TokioChildProcess::new(command).expect("spawn pgmcp");
    let pid = transport.id().expect("child pid");
    let lifecycle = match era {
        Era::Legacy => ClientLifecycleMode::Initialize,
        Era::Stateless => ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        },
    };
    let client =
        ().serve_with_lifecycle(transport, lifecycle)
            .await
            .expect("MCP handshake with pgmcp");
    (client, pid)
}

/// A loopback port nothing listens on, for a server whose address must be known before it starts (an issuer, an
/// audience, a redirect URI). It is drawn outside the kernel's ephemeral range: `bind(…:0)` and every outgoing
/// connection take ports from that range, so a port found free there can be taken by another socket before the
/// server binds it (an OAuth test once lost its port to the provider it started in between, and pgmcp exited).
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| {
            let mut bounds = range
                .split_whitespace()
                .map(|bound| bound.parse::<u16>().ok());
            Some((bounds.next()??, bounds.next()??))
        })
        .unwrap_or((32_768, 60_999));
    // Below the range if there is room, else above it; a machine whose range leaves neither gets the kernel's pick.
    let outside = [
        (10_000, ephemeral.0),
        (ephemeral.1.saturating_add(1), u16::MAX),
    ]
    .into_iter()
    .find(|(low, high)| high.saturating_sub(*low) >= 2_000);
    let Some((low, high)) = outside else {
        return std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|address| address.port())
            .expect("a free loopback port");
    };
    for attempt in 0..500u64 {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(attempt ^ u64::from(std::process::id()));
        let port = low + (hasher.finish() % u64::from(high - low)) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port between {low} and {high}")
}

/// Peak resident memory of a process in KiB (VmHWM).
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// pgmcp serving the `app` database as `reader`.
pub async fn serve_app(era: Era) -> Client {
    let url = reader_url();
    spawn(&["serve", "--database-url", &url], &[], era).await
}

pub async fn call(client: &Client, tool: &str, arguments: Value) -> CallToolResult {
    let arguments: Map<String, Value> = match arguments {
        Value::Object(map) => map,
        Value::Null => Map::new(),
        other => panic!("arguments must be an object, got {other}"),
    };
    let mut params = CallToolRequestParams::new(tool.to_string());
    params.arguments = Some(arguments);
    client.call_tool(params).await.expect("tools/call answered")
}

/// The tools whose answer is rows: one JSON text block and no `structuredContent`, so the rows travel once.
pub const ROW_TOOLS: &[&str] = &["execute_query", "execute_write", "read_table"];

/// Calls a tool that must succeed and returns its answer: the JSON of its one text block, which for every tool
/// but the row tools is also its `structuredContent`, valid under the output schema the server lists for the tool.
pub async fn call_ok(client: &Client, tool: &str, arguments: Value) -> Value {
    let result = call(client, tool, arguments.clone()).await;
    assert_ne!(
        result.is_error,
        Some(true),
        "{tool} {arguments} failed: {result:?}"
    );
    let answer = answer_of(tool, &result);
    if !ROW_TOOLS.contains(&tool)
        && let Some(schema) = declared_output_schema(client, tool).await
        && let Err(why) = contract::validate(&answer, &schema)
    {
        panic!("{tool} {arguments}: the answer breaks the declared output schema: {why}\n{answer}");
    }
    answer
}

/// The output schema the server lists for `tool`, asked once per test binary: a tool's output schema is the same
/// whatever the server's configuration (only input schemas follow the profiles), and asking once keeps the extra
/// request out of the tests that count requests.
async fn declared_output_schema(client: &Client, tool: &str) -> Option<Value> {
    static SCHEMAS: std::sync::Mutex<Option<std::collections::HashMap<String, Option<Value>>>> =
        std::sync::Mutex::new(None);
    if let Some(known) = SCHEMAS.lock().unwrap().as_ref().and_then(|s| s.get(tool)) {
        return known.clone();
    }
    let tools = client.list_all_tools().await.expect("tools/list");
    let schema = contract::output_schema(&tools, tool);
    SCHEMAS
        .lock()
        .unwrap()
        .get_or_insert_with(Default::default)
        .insert(tool.to_string(), schema.clone());
    schema
}

/// The answer of a successful tools/call result, checked against the contract: one text block of compact JSON,
/// repeated as `structuredContent` except by the row tools.
pub fn answer_of(tool: &str, result: &rmcp::model::CallToolResult) -> Value {
    assert_eq!(result.content.len(), 1, "one content block: {result:?}");
    let text = result
        .content
        .first()
        .and_then(|c| c.as_text())
        .map(|t| t.text.clone())
        .expect("text content");
    let value: Value = serde_json::from_str(&text).expect("text is JSON");
    assert_eq!(value.to_string(), text, "the text block is compact JSON");
    if ROW_TOOLS.contains(&tool) {
        assert!(
            result.structured_content.is_none(),
            "{tool} repeats its rows in structuredContent"
        );
    } else {
        assert_eq!(result.structured_content.as_ref(), Some(&value));
    }
    value
}

/// Calls a tool that must fail with `isError: true` and returns the structured error.
pub async fn call_err(client: &Client, tool: &str, arguments: Value) -> Value {
    let result = call(client, tool, arguments.clone()).await;
    assert_eq!(
        result.is_error,
        Some(true),
        "{tool} {arguments} should have failed: {result:?}"
    );
    result.structured_content.expect("structured error")
}

/// Sends a tool call the test can cancel later (`notifications/cancelled`) instead of waiting for its answer.
#[allow(dead_code)]
pub async fn send_cancellable_call(
    client: &Client,
    tool: &'static str,
    arguments: Value,
) -> rmcp::service::RequestHandle<rmcp::RoleClient> {
    use rmcp::model::{CallToolRequest, CallToolRequestParams, ClientRequest};
    let mut params = CallToolRequestParams::new(tool);
    params.arguments = arguments.as_object().cloned();
    client
        .peer()
        .send_cancellable_request(
            ClientRequest::CallToolRequest(CallToolRequest::new(params)),
            rmcp::service::PeerRequestOptions::no_options(),
        )
        .await
        .expect("request sent")
}

/// Rows of an execute_query result.
pub fn rows(result: &Value) -> &Vec<Value> {
    result["rows"].as_array().expect("rows array")
}

/// A superuser connection for looking at the server from outside pgmcp (pg_stat_activity, fingerprints).
pub async fn observer() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&superuser_url(), tokio_postgres::NoTls)
        .await
        .expect("observer connection");
    tokio::spawn(connection);
    client
}

/// How many other sessions are running a statement whose text contains `marker`.
pub async fn active_statements(observer: &tokio_postgres::Client, marker: &str) -> i64 {
    observer
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%' || $1 || '%' AND state = 'active' \
             AND pid <> pg_backend_pid()",
            &[&marker],
        )
        .await
        .expect("pg_stat_activity")
        .get(0)
}

/// The Python interpreter of the venv that holds the official MCP SDK (made by ./scripts/test.sh).
pub fn python() -> std::path::PathBuf {
    if let Ok(path) = std::env::var("PGMCP_TEST_PYTHON") {
        return std::path::PathBuf::from(path);
    }
    let venv =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/.venv/bin/python");
    assert!(
        venv.exists(),
        "the Python MCP SDK is not installed: run ./scripts/test.sh (it creates tests/python/.venv)"
    );
    venv
}
