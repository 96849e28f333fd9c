//! The authorization policy with real tokens from the loopback OpenID provider: tools/list shows each caller only
//! its own tools, tools/call enforces the same, execute_write needs the write role on a read_write profile, and
//! the audit line names the token's caller. Also the protected resource metadata and the auth metrics.

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

/// The provider's scenarios plus an agent that also holds the write role.
fn clients() -> Vec<Value> {
    let mut clients = entra_clients("{base}");
    let mut writer = clients
        .iter()
        .find(|c| c["client_id"] == "v2-app")
        .cloned()
        .expect("v2-app scenario");
    writer["client_id"] = json!("v2-writer");
    writer["claims"]["roles"] = json!([ROLE, "MCP.Write"]);
    clients.push(writer);
    clients
}

async fn rpc(server: &PgmcpHttp, token: &str, method: &str, params: Value) -> Value {
    let response = http()
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
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("unknown tool"),
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
        "[http]\nresource_documentation = \"https://wiki.contoso.example/pgmcp\"\n\
         [auth]\nentra_authority = \"{b}\"\nentra_v1_issuer_host = \"{b}\"\n\
         [[policy.grants]]\nroles = [\"{ROLE}\"]\ntools = [\"list_tables\", \"describe_table\"]\n",
        b = provider.base
    );
    let server = PgmcpHttp::start(
        &common::reader_url(),
        &config,
        &[
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
        ],
    );
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
    assert!(refused.get("error").is_some(), "{refused}");

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
    let metrics = client
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
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
