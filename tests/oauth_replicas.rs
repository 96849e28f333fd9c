//! Replicas of one pgmcp service (the same `--public-url` and `--oauth-signing-key`, no shared storage) serve
//! every step of a sign-in for each other: a client registered on one is known to the other, a sign-in started
//! on one completes on the other (the provider sends the browser to the public URL), and a token issued by one is
//! accepted by both.

mod common;
mod oauth_support;
mod oidc_support;

use oauth_support::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

const REDIRECT: &str = "http://127.0.0.1/callback";

async fn call(mcp_url: &str, token: &str, marker: &str) -> StatusCode {
    let body = json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": { "name": "execute_query", "arguments": { "sql": format!("SELECT '{marker}' AS marker") } }
    });
    http()
        .post(mcp_url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string())
        .send()
        .await
        .expect("call /mcp")
        .status()
}

async fn form(url: &str, pairs: &[(&str, &str)]) -> (StatusCode, Value) {
    let body = pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let response = http()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("POST");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn replicas_sharing_the_key_serve_each_others_clients_sign_ins_and_tokens() {
    let (port_a, port_b) = (free_port(), free_port());
    let public = format!("http://127.0.0.1:{port_a}");
    let resource = format!("{public}/mcp");
    let provider = upstream_provider(&public);
    let dir = tempfile::tempdir().unwrap();
    let (key_path, _) = signing_key(dir.path(), "shared.pem");
    let a = replica(port_a, Some(&public), &provider, &key_path, "", &[]);
    let b = replica(port_b, Some(&public), &provider, &key_path, "", &[]);
    let b_base = format!("http://127.0.0.1:{port_b}");

    let registered: Value = http()
        .post(format!("{b_base}/register"))
        .json(&json!({ "client_name": "replica test", "redirect_uris": [REDIRECT] }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let client = registered["client_id"].as_str().unwrap().to_string();

    // Started on B: B shows the consent page and sends the browser to the provider, which returns it to the
    // public URL, i.e. to A, which completes the sign-in B began.
    let authorize = format!(
        "{b_base}/authorize?response_type=code&client_id={}&redirect_uri={}&state=r&code_challenge={}&code_challenge_method=S256&resource={}",
        urlencode(&client),
        urlencode(REDIRECT),
        challenge(VERIFIER),
        urlencode(&resource)
    );
    let back = Browser::default().sign_in(&authorize, REDIRECT).await;
    assert_eq!(query(&back, "iss").as_deref(), Some(public.as_str()));
    let code = query(&back, "code").expect("a code");

    let (status, tokens) = form(
        &format!("{b_base}/token"),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("client_id", &client),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            ("resource", &resource),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(call(&a.mcp_url(), access, "on-a").await, StatusCode::OK);
    assert_eq!(call(&b.mcp_url(), access, "on-b").await, StatusCode::OK);
    assert_eq!(a.audit_lines_with("on-a").len(), 1);
    assert_eq!(b.audit_lines_with("on-b").len(), 1);

    // The refresh token from B is honoured by A.
    let (status, refreshed) = form(
        &format!("{public}/token"),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
            ("client_id", &client),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");
    assert_eq!(
        call(
            &b.mcp_url(),
            refreshed["access_token"].as_str().unwrap(),
            "refreshed-on-a"
        )
        .await,
        StatusCode::OK
    );
}
