//! `POST /chat` with authentication on: the same bearer check as /mcp (no token or a bad one is refused before the
//! model hears anything), and the model's tool calls run as the signed-in caller, so the policy decides what they
//! may do and the audit log names that caller. Real tokens from the loopback OpenID provider (tests/oidc), a
//! scripted Chat Completions stand-in for the model.

mod chat_support;
mod common;
mod oidc_support;

use chat_support::{StandIn, Step, call, last_tool_result, step, text, tools};
use oidc_support::pgmcp_http::PgmcpHttp;
use oidc_support::*;
use serde_json::{Value, json};

/// The querying caller's and the elsewhere-only caller's object ids; distinct, so audit lines tell them apart.
const QUERIER_OID: &str = "b1b1b1b1-0000-4000-8000-000000000001";
const ELSEWHERE_OID: &str = "b1b1b1b1-0000-4000-8000-000000000002";

const SQL: &str = "SELECT 40 + 2 AS answer -- chat-auth-marker";

/// `v2-app` agents with their own object id and roles.
fn clients() -> Vec<Value> {
    let mut clients = entra_clients("{base}");
    let app = clients
        .iter()
        .find(|c| c["client_id"] == "v2-app")
        .cloned()
        .expect("v2-app scenario");
    for (client_id, oid, roles) in [
        ("v2-querier", QUERIER_OID, vec![ROLE, "Chat.Query"]),
        ("v2-elsewhere", ELSEWHERE_OID, vec![ROLE, "Chat.Other"]),
    ] {
        let mut agent = app.clone();
        agent["client_id"] = json!(client_id);
        agent["claims"]["roles"] = json!(roles);
        agent["claims"]["oid"] = json!(oid);
        agent["claims"]["sub"] = json!(oid);
        clients.push(agent);
    }
    clients
}

/// Two profiles; the chat works on the default one (`main`). Everyone admitted may list and describe; execute_query
/// is granted on every profile to `Chat.Query`, on `other` only to `Chat.Other`, and to `MCP.Access` alone nowhere.
fn config(provider: &Provider) -> String {
    format!(
        "default_profile = \"main\"\n\
         [profiles.main]\nurl = \"{url}\"\n\
         [profiles.other]\nurl = \"{url}\"\n\
         [auth]\nentra_authority = \"{b}\"\nentra_v1_issuer_host = \"{b}\"\n\
         [[policy.grants]]\nroles = [\"{ROLE}\"]\ntools = [\"list_tables\", \"describe_table\"]\n\
         [[policy.grants]]\nroles = [\"Chat.Query\"]\ntools = [\"execute_query\"]\n\
         [[policy.grants]]\nroles = [\"Chat.Other\"]\ntools = [\"execute_query\"]\nprofiles = [\"other\"]\n",
        url = common::reader_url(),
        b = provider.base,
    )
}

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

/// Each question: the model runs SQL, then answers with what the tool gave back (a result or a refusal).
fn script() -> Vec<Step> {
    let ask = || {
        step(|_| {
            tools(vec![call(
                "call_query",
                "execute_query",
                json!({"sql": SQL}),
            )])
        })
    };
    let tell = || {
        step(|request| {
            let result = last_tool_result(request);
            match result["error"].as_str() {
                Some(error) => text(&format!("The query was refused: {error}")),
                None => text(&format!("The answer is {}.", result["rows"][0][0])),
            }
        })
    };
    vec![ask(), tell(), ask(), tell()]
}

async fn post_chat(
    server: &PgmcpHttp,
    token: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut request = reqwest::Client::new()
        .post(format!("{}/chat", server.base))
        .json(&json!({"question": "what is forty plus two?"}));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("POST /chat");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.text().await.expect("body"))
}

fn events(body: &str) -> Vec<Value> {
    body.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not NDJSON: {body}")))
        .collect()
}

fn audit(server: &PgmcpHttp) -> Vec<Value> {
    std::fs::read_to_string(&server.audit)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn chat_runs_as_the_signed_in_caller_under_the_mcp_policy() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let provider = Provider::start(clients());
    let stand_in = StandIn::start(script()).await;
    let mut args = ENTRA_APP_ARGS.to_vec();
    args.extend([
        "--llm-base-url",
        &stand_in.base_url,
        "--llm-model",
        "stand-in",
    ]);
    let server = tokio::task::block_in_place(|| {
        PgmcpHttp::start_listening_with_env(
            "127.0.0.1:0",
            "",
            &config(&provider),
            &args,
            &[("OPENAI_API_KEY", "sk-chat-auth-key".to_string())],
        )
    });

    // No token: the challenge /mcp gives, and the model is never asked.
    let (status, headers, _) = post_chat(&server, None).await;
    assert_eq!(status, 401);
    let challenge = headers
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .expect("a WWW-Authenticate challenge");
    assert!(
        challenge.starts_with("Bearer resource_metadata=\"") && !challenge.contains("error="),
        "{challenge}"
    );

    // A token for another audience, and a signed token altered after signing: both invalid.
    let foreign = provider.token("v2-wrong-aud").await;
    let (header, mut payload, signature) = split(&provider.token("v2-querier").await);
    payload["roles"] = json!([ROLE, "Chat.Query", "MCP.Write"]);
    for bad in [foreign, join(&header, &payload, &signature)] {
        let (status, headers, _) = post_chat(&server, Some(&bad)).await;
        assert_eq!(status, 401);
        let challenge = headers["www-authenticate"].to_str().unwrap();
        assert!(
            challenge.ends_with("error=\"invalid_token\""),
            "{challenge}"
        );
    }

    // Admitted, but granted execute_query nowhere: the chat cannot answer with data and says so before any model
    // call.
    let plain = provider.token("v2-app").await;
    let (status, _, body) = post_chat(&server, Some(&plain)).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("may not use execute_query"), "{body}");
    assert!(
        stand_in.requests().is_empty(),
        "no model call before sign-in and grants"
    );
    assert!(
        !audit(&server)
            .iter()
            .any(|r| r["tool"] == "execute_query" || r["kind"] == "chat"),
        "nothing ran"
    );

    // Granted execute_query only on `other`: the model's call on the chat's profile comes back as a refusal the
    // model reads, and the gate's audit line names this caller.
    let elsewhere = provider.token("v2-elsewhere").await;
    let (status, _, body) = post_chat(&server, Some(&elsewhere)).await;
    assert_eq!(status, 200, "{body}");
    let steps = events(&body);
    let result = steps
        .iter()
        .find(|e| e["type"] == "tool_result")
        .unwrap_or_else(|| panic!("{body}"));
    assert_eq!(result["is_error"], true, "{body}");
    let refusal = "`execute_query` is not granted to this caller on profile `main`";
    assert_eq!(result["result"]["error"], refusal, "{body}");
    let seen = last_tool_result(&stand_in.requests()[1].body);
    assert_eq!(seen["error"], refusal, "the model reads the refusal");
    let answer = steps.last().unwrap();
    assert_eq!(answer["type"], "answer", "{body}");
    assert_eq!(answer["sql"], json!([]), "no SQL ran: {body}");
    let records = audit(&server);
    let denied: Vec<&Value> = records
        .iter()
        .filter(|r| r["tool"] == "execute_query")
        .collect();
    assert_eq!(denied.len(), 1, "{records:?}");
    assert_eq!(denied[0]["error_kind"], "denied", "{records:?}");
    assert_eq!(denied[0]["caller"]["oid"], ELSEWHERE_OID);
    let chat = records
        .iter()
        .find(|r| r["kind"] == "chat")
        .expect("chat line");
    assert_eq!(chat["caller"]["oid"], ELSEWHERE_OID);

    // Granted everywhere: the question is answered from the database, and every line names this caller.
    let querier = provider.token("v2-querier").await;
    let (status, _, body) = post_chat(&server, Some(&querier)).await;
    assert_eq!(status, 200, "{body}");
    let steps = events(&body);
    let answer = steps.last().unwrap();
    assert_eq!(answer["type"], "answer", "{body}");
    assert_eq!(answer["text"], "The answer is 42.", "{body}");
    assert_eq!(answer["sql"], json!([SQL]), "{body}");
    assert_eq!(stand_in.steps_left(), 0);
    let records = audit(&server);
    let mine: Vec<&Value> = records
        .iter()
        .filter(|r| r["caller"]["oid"] == QUERIER_OID)
        .collect();
    let ran = mine
        .iter()
        .find(|r| r["tool"] == "execute_query")
        .unwrap_or_else(|| panic!("{records:?}"));
    assert_eq!(ran["outcome"], "ok", "{records:?}");
    assert_eq!(ran["caller"]["azp"], AGENT_APP);
    assert!(
        mine.iter().any(|r| r["tool"] == "list_tables"),
        "{records:?}"
    );
    let chat = mine
        .iter()
        .find(|r| r["kind"] == "chat")
        .unwrap_or_else(|| panic!("{records:?}"));
    assert_eq!(chat["arguments"]["sql"], json!([SQL]));
    let log = std::fs::read_to_string(&server.audit).unwrap();
    for secret in [&plain, &elsewhere, &querier, "sk-chat-auth-key"] {
        assert!(!log.contains(secret), "no token or key in the audit log");
    }
}
