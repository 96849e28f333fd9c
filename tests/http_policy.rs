//! The authorization policy with real tokens from the loopback OpenID provider: tools/list shows each caller only
//! its own tools, tools/call enforces the same, execute_write needs the write role on a read_write profile, and
//! the audit line names the token's caller. Resources obey the same grants (reading a table needs describe_table
//! on its profile) across every profile. Also the protected resource metadata, the auth metrics, and metrics that
//! do not grow with unknown tool names.

mod common;
mod oidc_support;

use oidc_support::pgmcp_http::PgmcpHttp;
use oidc_support::*;
use serde_json::{Value, json};

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .expect("client")
}

/// The provider's scenarios plus agents like `v2-app` holding `roles`, one per `(client id, roles)`.
fn clients_with(agents: &[(&str, &[&str])]) -> Vec<Value> {
    let mut clients = entra_clients("{base}");
    let app = clients
        .iter()
        .find(|c| c["client_id"] == "v2-app")
        .cloned()
        .expect("v2-app scenario");
    for (client_id, roles) in agents {
        let mut agent = app.clone();
        agent["client_id"] = json!(client_id);
        agent["claims"]["roles"] = json!(roles);
        clients.push(agent);
    }
    clients
}

/// The provider's scenarios plus an agent that also holds the write role.
fn clients() -> Vec<Value> {
    clients_with(&[("v2-writer", &[ROLE, "MCP.Write"])])
}

/// The `[auth]` table trusting the loopback provider as Entra.
fn entra_auth(provider: &Provider) -> String {
    format!(
        "[auth]\nentra_authority = \"{b}\"\nentra_v1_issuer_host = \"{b}\"\n",
        b = provider.base
    )
}

/// Entra flags for an app-only agent with the required role (no scope), so grants decide the rest.
const ENTRA_APP_ARGS: &[&str] = &[
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
];

/// A JSON-RPC error's code, `data.error` and message, asserting it is an error at all.
fn rpc_error(reply: &Value) -> (i64, Value, String) {
    let error = reply
        .get("error")
        .unwrap_or_else(|| panic!("expected a JSON-RPC error: {reply}"));
    (
        error["code"].as_i64().unwrap_or_default(),
        error
            .get("data")
            .map_or(Value::Null, |d| d["error"].clone()),
        error["message"].as_str().unwrap_or_default().to_string(),
    )
}

async fn scrape(server: &PgmcpHttp) -> String {
    http()
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text")
}

async fn rpc(server: &PgmcpHttp, token: &str, method: &str, params: Value) -> Value {
    rpc_on(&http(), server, token, method, params).await
}

/// `rpc` on a client that keeps its connection, for many requests in a row.
async fn rpc_on(
    client: &reqwest::Client,
    server: &PgmcpHttp,
    token: &str,
    method: &str,
    params: Value,
) -> Value {
    let response = client
        .post(server.mcp_url())
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .body(json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string())
        .send()
        .await
        .expect("POST /mcp");
    assert_eq!(response.status(), 200, "{method}");
    response.json().await.expect("JSON-RPC reply")
}

async fn tool_names(server: &PgmcpHttp, token: &str) -> Vec<String> {
    let reply = rpc(server, token, "tools/list", json!({})).await;
    reply["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{reply}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn each_caller_sees_and_calls_only_its_tools() {
    let provider = Provider::start(clients());
    // A read_write profile, so execute_write exists at all; the policy decides who gets it.
    let server = PgmcpHttp::start_entra(
        &common::superuser_url(),
        &provider.base,
        &["--access-mode", "read_write"],
    );
    let reader = provider.token("v2-app").await;
    let writer = provider.token("v2-writer").await;
    let user = provider.token("delegated-scope").await;

    let reader_tools = tool_names(&server, &reader).await;
    assert!(reader_tools.contains(&"execute_query".to_string()));
    assert!(
        !reader_tools.contains(&"execute_write".to_string()),
        "{reader_tools:?}"
    );
    let user_tools = tool_names(&server, &user).await;
    assert_eq!(user_tools, reader_tools);
    let writer_tools = tool_names(&server, &writer).await;
    assert!(
        writer_tools.contains(&"execute_write".to_string()),
        "{writer_tools:?}"
    );

    let write = json!({"name": "execute_write", "arguments": {"sql": "DELETE FROM public.canary WHERE false -- policy-marker"}});
    let refused = rpc(&server, &reader, "tools/call", write.clone()).await;
    let (code, _, message) = rpc_error(&refused);
    assert_eq!(
        (code, message.as_str()),
        (
            -32602,
            "unknown tool `execute_write`; call tools/list to see the tools"
        ),
        "a tool the caller may not use looks like no tool: {refused}"
    );
    let allowed = rpc(&server, &writer, "tools/call", write).await;
    assert_eq!(allowed["result"]["isError"], false, "{allowed}");

    let lines: Vec<Value> = server
        .audit_lines_with("policy-marker")
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["error_kind"], "denied");
    assert_eq!(lines[0]["caller"]["oid"], AGENT_OID);
    assert_eq!(lines[0]["caller"]["tid"], TENANT);
    assert_eq!(lines[0]["caller"]["azp"], AGENT_APP);
    assert_eq!(lines[1]["outcome"], "ok");
    assert_eq!(lines[1]["rows"], 0);
    for line in &lines {
        let text = line.to_string();
        assert!(
            !text.contains(&reader) && !text.contains(&writer),
            "no token in audit lines"
        );
    }
}

#[tokio::test]
async fn explicit_grants_and_metadata_and_metrics() {
    let provider = Provider::start(clients());
    let config = format!(
        "[http]\nresource_documentation = \"https://wiki.contoso.example/pgmcp\"\n{auth}\
         [[policy.grants]]\nroles = [\"{ROLE}\"]\ntools = [\"list_tables\", \"describe_table\"]\n",
        auth = entra_auth(&provider)
    );
    let server = PgmcpHttp::start(&common::reader_url(), &config, ENTRA_APP_ARGS);
    let token = provider.token("v2-app").await;
    assert_eq!(
        tool_names(&server, &token).await,
        vec!["list_tables", "describe_table"]
    );
    let refused = rpc(
        &server,
        &token,
        "tools/call",
        json!({"name": "execute_query", "arguments": {"sql": "SELECT 1"}}),
    )
    .await;
    assert_eq!(
        rpc_error(&refused),
        (
            -32602,
            Value::Null,
            "unknown tool `execute_query`; call tools/list to see the tools".to_string()
        ),
        "{refused}"
    );

    let client = http();
    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
    ] {
        let prm: Value = client
            .get(format!("{}{path}", server.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(prm["resource"], format!("{}/mcp", server.base), "{prm}");
        assert_eq!(prm["bearer_methods_supported"], json!(["header"]));
        assert!(
            prm["authorization_servers"]
                .as_array()
                .is_some_and(|a| !a.is_empty()),
            "{prm}"
        );
        assert_eq!(
            prm["resource_documentation"], "https://wiki.contoso.example/pgmcp",
            "{prm}"
        );
        assert!(prm["resource_name"].is_string());
    }

    let anonymous = client.post(server.mcp_url()).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let metrics = scrape(&server).await;
    assert!(
        metrics.contains("pgmcp_auth_failures_total{reason="),
        "{metrics}"
    );
    assert!(metrics.contains("pgmcp_jwks_refreshes_total"), "{metrics}");
    assert!(
        metrics.contains(r#"pgmcp_tool_calls_total{tool="execute_query",outcome="denied"} 1"#),
        "{metrics}"
    );
    let ready = client
        .get(format!("{}/readyz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200, "keys loaded and database reachable");
}

/// Two profiles on the test database, the second read_write, and a grant per kind of caller: write-only, every
/// read tool on `main` only, and describe_table everywhere. `MCP.Access` alone (required to get in) grants nothing.
fn two_profile_config(provider: &Provider) -> String {
    let c = common::cluster();
    format!(
        "default_profile = \"main\"\n\
         [profiles.main]\nurl = \"{main}\"\n\
         [profiles.other]\nurl = \"postgresql://writer@{host}:{port}/app\"\naccess_mode = \"read_write\"\n\
         {auth}\
         [[policy.grants]]\nroles = [\"Res.Write\"]\ntools = [\"execute_write\"]\n\
         [[policy.grants]]\nroles = [\"Res.Main\"]\ntools = [\"*\"]\nprofiles = [\"main\"]\n\
         [[policy.grants]]\nroles = [\"Res.All\"]\ntools = [\"describe_table\"]\n",
        main = common::reader_url(),
        host = c.host(),
        port = c.port(),
        auth = entra_auth(provider),
    )
}

async fn resource_uris(server: &PgmcpHttp, token: &str) -> Vec<String> {
    let reply = rpc(server, token, "resources/list", json!({})).await;
    reply["result"]["resources"]
        .as_array()
        .unwrap_or_else(|| panic!("{reply}"))
        .iter()
        .map(|r| r["uri"].as_str().unwrap().to_string())
        .collect()
}

async fn template_uris(server: &PgmcpHttp, token: &str) -> Vec<Value> {
    let reply = rpc(server, token, "resources/templates/list", json!({})).await;
    reply["result"]["resourceTemplates"]
        .as_array()
        .unwrap_or_else(|| panic!("{reply}"))
        .iter()
        .map(|t| t["uriTemplate"].clone())
        .collect()
}

fn books(profile: &str) -> String {
    format!("pgmcp://{profile}/tables/public/books")
}

/// The table's description, which only describe_table on the profile may reveal.
async fn read_books(server: &PgmcpHttp, token: &str, profile: &str) -> Value {
    rpc(
        server,
        token,
        "resources/read",
        json!({"uri": books(profile)}),
    )
    .await
}

fn assert_read_denied(reply: &Value, profile: &str) {
    let (code, kind, message) = rpc_error(reply);
    assert_eq!((code, kind), (-32602, json!("denied")), "{reply}");
    assert!(
        message.contains(&format!("profile `{profile}` is not granted"))
            && message.contains("describe_table"),
        "{message}"
    );
    assert!(reply.get("result").is_none(), "{reply}");
    assert!(!reply.to_string().contains("books_author_idx"), "{reply}");
}

fn assert_read_allowed(reply: &Value) {
    let text = reply["result"]["contents"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("{reply}"));
    assert!(text.contains("books_author_idx"), "{text}");
}

#[tokio::test]
async fn resources_obey_the_grants_on_every_profile() {
    let provider = Provider::start(clients_with(&[
        ("no-grant", &[ROLE]),
        ("write-only", &[ROLE, "Res.Write"]),
        ("main-only", &[ROLE, "Res.Main"]),
        ("describer", &[ROLE, "Res.All"]),
    ]));
    let server = PgmcpHttp::start("", &two_profile_config(&provider), ENTRA_APP_ARGS);

    // Callers who may describe nothing see no tables and no template, and reading one is refused on every profile.
    for (client, tools) in [("no-grant", vec![]), ("write-only", vec!["execute_write"])] {
        let token = provider.token(client).await;
        assert_eq!(tool_names(&server, &token).await, tools, "{client}");
        assert!(resource_uris(&server, &token).await.is_empty(), "{client}");
        assert!(template_uris(&server, &token).await.is_empty(), "{client}");
        for profile in ["main", "other"] {
            assert_read_denied(&read_books(&server, &token, profile).await, profile);
        }
    }

    // Granted on `main` only: its tables, none of `other`'s, in the list and in reads and in describe_table.
    let main_only = provider.token("main-only").await;
    let uris = resource_uris(&server, &main_only).await;
    assert!(uris.contains(&books("main")), "{uris:?}");
    assert!(
        uris.iter().all(|uri| uri.starts_with("pgmcp://main/")),
        "{uris:?}"
    );
    assert_eq!(
        template_uris(&server, &main_only).await,
        vec![json!("pgmcp://{profile}/tables/{schema}/{table}")]
    );
    assert_read_allowed(&read_books(&server, &main_only, "main").await);
    assert_read_denied(&read_books(&server, &main_only, "other").await, "other");
    let describe = |profile: &str| json!({"name": "describe_table", "arguments": {"table": "books", "profile": profile}});
    let refused = rpc(&server, &main_only, "tools/call", describe("other")).await;
    let (code, kind, message) = rpc_error(&refused);
    assert_eq!((code, kind), (-32602, json!("denied")), "{refused}");
    assert!(
        message.contains("`describe_table` is not granted to this caller on profile `other`"),
        "{message}"
    );
    let described = rpc(&server, &main_only, "tools/call", describe("main")).await;
    assert_eq!(described["result"]["isError"], false, "{described}");
    let unknown = rpc(
        &server,
        &main_only,
        "resources/read",
        json!({"uri": "pgmcp://nope/tables/public/books"}),
    )
    .await;
    let (code, _, message) = rpc_error(&unknown);
    assert_eq!(code, -32002, "{unknown}");
    assert!(message.contains("unknown profile `nope`"), "{message}");

    // describe_table everywhere: every profile's tables, listed and readable.
    let describer = provider.token("describer").await;
    let uris = resource_uris(&server, &describer).await;
    assert!(
        uris.contains(&books("main")) && uris.contains(&books("other")),
        "{uris:?}"
    );
    assert_read_allowed(&read_books(&server, &describer, "other").await);

    // Every read is audited with its caller and URI; the five refusals say so and carry no answer.
    let reads: Vec<Value> = server
        .audit_lines_with("\"kind\":\"resource_read\"")
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let denied: Vec<&Value> = reads
        .iter()
        .filter(|l| l["error_kind"] == "denied")
        .collect();
    assert_eq!(denied.len(), 5, "{reads:#?}");
    for line in &denied {
        assert_eq!(line["outcome"], "error");
        assert_eq!(line["caller"]["oid"], AGENT_OID);
        assert!(
            line["uri"]
                .as_str()
                .unwrap()
                .ends_with("/tables/public/books")
        );
        assert!(line.get("bytes").is_none(), "{line}");
    }
    assert_eq!(denied[4]["uri"], books("other"));
    assert_eq!(
        reads.iter().filter(|l| l["outcome"] == "ok").count(),
        2,
        "{reads:#?}"
    );
    assert_eq!(
        reads
            .iter()
            .filter(|l| l["error_kind"] == "not_found")
            .count(),
        1
    );
    assert_eq!(
        server.audit_lines_with("\"kind\":\"resource_list\"").len(),
        4
    );
    let metrics = scrape(&server).await;
    assert!(
        metrics.contains(r#"pgmcp_mcp_requests_total{method="resources/read",outcome="denied"} 5"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn unknown_tool_names_share_one_metrics_series() {
    let provider = Provider::start(clients());
    let server = PgmcpHttp::start_entra(&common::reader_url(), &provider.base, &[]);
    let token = provider.token("v2-app").await;
    let client = http();
    for i in 0..1000 {
        let name = format!("no_such_tool_{i}");
        let reply = rpc_on(
            &client,
            &server,
            &token,
            "tools/call",
            json!({"name": name, "arguments": {}}),
        )
        .await;
        let (code, _, message) = rpc_error(&reply);
        assert_eq!(code, -32602, "{reply}");
        assert!(
            message.contains(&format!("unknown tool `{name}`")),
            "{message}"
        );
    }
    let metrics = scrape(&server).await;
    let series = |prefix: &str| -> Vec<String> {
        metrics
            .lines()
            .filter(|line| line.starts_with(prefix))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        series("pgmcp_tool_calls_total{"),
        vec![r#"pgmcp_tool_calls_total{tool="unknown",outcome="unknown_tool"} 1000"#]
    );
    assert_eq!(
        series("pgmcp_tool_call_duration_seconds_count{"),
        vec![r#"pgmcp_tool_call_duration_seconds_count{tool="unknown"} 1000"#]
    );
    assert!(
        !metrics.contains("no_such_tool"),
        "a requested name became a label"
    );
    // The audit trail still names what was asked for: it is a log, not memory the server keeps.
    assert_eq!(server.audit_lines_with("no_such_tool_999\"").len(), 1);
}
