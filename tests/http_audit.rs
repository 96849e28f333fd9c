//! The audit trail through a real transport: one JSON line per tool call with caller, tool, SQL, outcome,
//! SQLSTATE, rows, bytes and duration, and never a password. Stdio here; HTTP callers with tokens are covered
//! once the authentication layer is merged.

mod common;
mod http_support;

use common::{Era, cluster};
use http_support::spawn_stdio as spawn;
use http_support::{HttpServer, connect};
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};

fn audit_lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).expect("each audit line is JSON"))
        .collect()
}

fn url_with_password() -> String {
    let c = cluster();
    // The test cluster trusts loopback, so the password is never checked; it must still never be written out.
    format!(
        "postgresql://reader:s3cret-pw@{}:{}/app",
        c.host(),
        c.port()
    )
}

#[tokio::test]
async fn stdio_calls_are_audited_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let url = url_with_password();
    let client = spawn(
        &["serve", "--audit-log", audit.to_str().unwrap()],
        &[("DATABASE_URL", &url)],
        Era::Legacy,
    )
    .await;
    let answer = common::call_ok(
        &client,
        "execute_query",
        json!({"sql": "SELECT 1 AS one UNION ALL SELECT 2"}),
    )
    .await;
    common::call_err(
        &client,
        "execute_query",
        json!({"sql": "SELECT * FROM no_such_table"}),
    )
    .await;
    common::call_err(
        &client,
        "execute_query",
        json!({"sql": "DELETE FROM orders"}),
    )
    .await;
    let mut params = CallToolRequestParams::new("execute_query");
    params.arguments = json!({"sql": "SELECT 3"}).as_object().cloned();
    let mut meta = rmcp::model::RequestMetaObject::new();
    meta.set_traceparent("00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01");
    params.meta = Some(meta);
    client.call_tool(params).await.expect("traced call");
    client.cancel().await.ok();

    let lines = audit_lines(&audit);
    assert_eq!(lines.len(), 4, "{lines:#?}");
    let ok = &lines[0];
    assert_eq!(ok["kind"], "tool_call");
    assert_eq!(ok["caller"], "local");
    assert_eq!(ok["tool"], "execute_query");
    assert_eq!(ok["arguments"]["sql"], "SELECT 1 AS one UNION ALL SELECT 2");
    assert_eq!(ok["outcome"], "ok");
    assert_eq!(ok["rows"], 2);
    // What the client received: the answer's one text block, byte for byte.
    assert_eq!(
        ok["bytes"].as_u64().unwrap(),
        answer.to_string().len() as u64
    );
    assert!(ok["duration_ms"].as_f64().is_some());
    assert!(ok["time"].as_str().unwrap().ends_with('Z'));
    assert!(ok.get("request_id").is_some());

    let missing = &lines[1];
    assert_eq!(missing["outcome"], "error");
    assert_eq!(missing["error_kind"], "database");
    assert_eq!(missing["sqlstate"], "42P01");

    let refused = &lines[2];
    assert_eq!(refused["error_kind"], "rejected");
    assert!(refused.get("sqlstate").is_none());

    assert_eq!(
        lines[3]["traceparent"],
        "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01"
    );

    let text = std::fs::read_to_string(&audit).unwrap();
    assert!(!text.contains("s3cret-pw"));
}

#[tokio::test]
async fn http_calls_are_audited_as_anonymous_without_auth() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let url = url_with_password();
    let server = HttpServer::start(
        &[
            "serve",
            "--http",
            "127.0.0.1:0",
            "--audit-log",
            audit.to_str().unwrap(),
        ],
        &[("DATABASE_URL", &url)],
    );
    let client = connect(&server.mcp_url(), Era::Stateless).await;
    common::call_ok(&client, "list_tables", json!({})).await;
    let mut params = CallToolRequestParams::new("no_such_tool");
    params.arguments = Some(Default::default());
    assert!(client.call_tool(params).await.is_err());
    client.cancel().await.ok();

    let lines = audit_lines(&audit);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert_eq!(lines[0]["caller"], "anonymous");
    assert_eq!(lines[0]["tool"], "list_tables");
    assert_eq!(lines[1]["error_kind"], "unknown_tool");
    assert!(
        !std::fs::read_to_string(&audit)
            .unwrap()
            .contains("s3cret-pw")
    );
    assert!(!server.log().contains("s3cret-pw"));
}

/// Resources pass the same gate as tools: listing and reading tables leave lines, the same on stdio as on HTTP,
/// and a URI that names no table says so in the line instead of leaving none.
#[tokio::test]
async fn resource_reads_and_lists_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let client = spawn(
        &["serve", "--audit-log", audit.to_str().unwrap()],
        &[("DATABASE_URL", &url_with_password())],
        Era::Legacy,
    )
    .await;
    let listed = client.list_resources(None).await.expect("resources/list");
    let books = "pgmcp://default/tables/public/books";
    assert!(
        listed.resources.iter().any(|r| r.uri == books),
        "{listed:?}"
    );
    client
        .read_resource(rmcp::model::ReadResourceRequestParams::new(books))
        .await
        .expect("resources/read");
    let missing = client
        .read_resource(rmcp::model::ReadResourceRequestParams::new(
            "pgmcp://default/views/x",
        ))
        .await
        .expect_err("not a table resource");
    assert!(
        missing.to_string().contains("unknown resource"),
        "{missing}"
    );
    client.cancel().await.ok();

    let lines = audit_lines(&audit);
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert_eq!(lines[0]["kind"], "resource_list");
    assert_eq!(lines[0]["caller"], "local");
    assert_eq!(lines[0]["rows"], listed.resources.len());
    assert_eq!(lines[1]["kind"], "resource_read");
    assert_eq!(lines[1]["uri"], books);
    assert_eq!(lines[1]["outcome"], "ok");
    assert!(lines[1]["bytes"].as_u64().unwrap() > 0);
    assert!(lines[1].get("tool").is_none());
    assert_eq!(lines[2]["error_kind"], "not_found");
    assert_eq!(lines[2]["uri"], "pgmcp://default/views/x");
}
