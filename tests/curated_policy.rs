//! Curated tools under the authorization policy, with real tokens from the loopback OpenID provider: a grant can
//! name a curated tool (and nothing else), `*` covers curated tools that read but never one that writes, and the
//! audit line names the curated tool.

mod common;
mod oidc_support;

use oidc_support::pgmcp_http::PgmcpHttp;
use oidc_support::*;
use serde_json::{Value, json};

/// Agents like the provider's `v2-app`, each with its own roles.
fn agents(roles: &[(&str, &[&str])]) -> Vec<Value> {
    let mut clients = entra_clients("{base}");
    let app = clients
        .iter()
        .find(|c| c["client_id"] == "v2-app")
        .cloned()
        .expect("v2-app scenario");
    for (client_id, roles) in roles {
        let mut agent = app.clone();
        agent["client_id"] = json!(client_id);
        agent["claims"]["roles"] = json!(roles);
        clients.push(agent);
    }
    clients
}

async fn rpc(server: &PgmcpHttp, token: &str, method: &str, params: Value) -> Value {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let response = reqwest::Client::new()
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
    (reply["result"]["tools"].as_array())
        .unwrap_or_else(|| panic!("{reply}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn grants_name_curated_tools_and_star_covers_only_those_that_read() {
    let provider = Provider::start(agents(&[
        ("v2-curated", &[ROLE, "Curated.Only"]),
        ("v2-star", &[ROLE, "Everything"]),
    ]));
    let config = format!(
        "[auth]\nentra_authority = \"{b}\"\nentra_v1_issuer_host = \"{b}\"\n\
         [[policy.grants]]\nroles = [\"Curated.Only\"]\ntools = [\"author_books\"]\n\
         [[policy.grants]]\nroles = [\"Everything\"]\ntools = [\"*\"]\n\
         [[tools]]\nname = \"author_books\"\ndescription = \"Titles of one author.\"\n\
         sql = \"SELECT title FROM books WHERE author_id = $1 ORDER BY id LIMIT 2 -- curated-marker\"\n\
         parameters = [{{ name = \"author_id\", type = \"integer\" }}]\n\
         [[tools]]\nname = \"touch_canary\"\ndescription = \"Touches the canary.\"\n\
         sql = \"UPDATE canary SET note = note WHERE id = $1\"\n\
         parameters = [{{ name = \"id\", type = \"integer\" }}]\n",
        b = provider.base
    );
    let server = PgmcpHttp::start(
        &common::superuser_url(),
        &config,
        &[
            "--access-mode",
            "read_write",
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
    let curated = provider.token("v2-curated").await;
    let star = provider.token("v2-star").await;

    assert_eq!(tool_names(&server, &curated).await, vec!["author_books"]);
    let call = json!({"name": "author_books", "arguments": {"author_id": 1}});
    let answer = rpc(&server, &curated, "tools/call", call.clone()).await;
    assert_eq!(answer["result"]["isError"], false, "{answer}");
    let text = answer["result"]["content"][0]["text"].as_str().unwrap();
    let rows: Value = serde_json::from_str(text).unwrap();
    assert_eq!(rows["rows"], json!([["Book 2"], ["Book 4"]]));
    let refused = rpc(
        &server,
        &curated,
        "tools/call",
        json!({"name": "execute_query", "arguments": {"sql": "SELECT 1"}}),
    )
    .await;
    assert_eq!(
        refused["error"]["message"],
        "unknown tool `execute_query`; call tools/list to see the tools",
        "{refused}"
    );

    let star_tools = tool_names(&server, &star).await;
    assert!(
        star_tools.contains(&"author_books".to_string())
            && star_tools.contains(&"execute_query".to_string()),
        "{star_tools:?}"
    );
    assert!(
        !star_tools.contains(&"touch_canary".to_string())
            && !star_tools.contains(&"execute_write".to_string()),
        "`*` never grants a write: {star_tools:?}"
    );
    let write = json!({"name": "touch_canary", "arguments": {"id": 1}});
    let refused = rpc(&server, &star, "tools/call", write).await;
    assert_eq!(
        refused["error"]["message"],
        "unknown tool `touch_canary`; call tools/list to see the tools",
        "{refused}"
    );

    let lines: Vec<Value> = server
        .audit_lines_with("\"author_books\"")
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["tool"], "author_books");
    assert_eq!(lines[0]["outcome"], "ok");
    assert_eq!(lines[0]["rows"], 2);
    assert_eq!(lines[0]["arguments"], json!({"author_id": 1}));
}
