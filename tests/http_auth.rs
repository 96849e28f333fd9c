//! The authentication matrix through the real binary: `pgmcp serve --http` in Entra mode against a real OpenID
//! provider on loopback. Every case sends a `tools/call` of `execute_query` whose SQL carries a marker unique to
//! the case, then asserts the HTTP status, the `WWW-Authenticate` challenge, the generic body, and — through the
//! audit log — whether the tool ran.

mod common;
mod oidc_support;

use std::sync::OnceLock;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use oidc_support::pgmcp_http::PgmcpHttp;
use oidc_support::*;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, COOKIE, HeaderMap, HeaderValue, WWW_AUTHENTICATE};
use serde_json::{Value, json};

/// The providers are shared (they exit when the test process does); each test has its own server, because a server
/// kept in a static would never be dropped and would outlive the test process.
struct Setup {
    trusted: Provider,
    untrusted: Provider,
}

fn setup() -> (&'static Setup, PgmcpHttp) {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    let setup = SETUP.get_or_init(|| {
        let trusted = Provider::start(entra_clients("{base}"));
        let untrusted = Provider::start(entra_clients(&trusted.base));
        Setup { trusted, untrusted }
    });
    let server = PgmcpHttp::start_entra(&common::reader_url(), &setup.trusted.base, &[]);
    (setup, server)
}

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .expect("client")
}

/// One request of the matrix.
struct Case {
    name: &'static str,
    headers: HeaderMap,
    query: Option<String>,
}

impl Case {
    fn new(name: &'static str) -> Case {
        Case {
            name,
            headers: HeaderMap::new(),
            query: None,
        }
    }

    fn bearer(name: &'static str, token: &str) -> Case {
        Case::new(name).header(AUTHORIZATION, &format!("Bearer {token}"))
    }

    fn header(mut self, name: reqwest::header::HeaderName, value: &str) -> Case {
        self.headers
            .append(name, HeaderValue::from_str(value).expect("header value"));
        self
    }

    fn query(mut self, query: String) -> Case {
        self.query = Some(query);
        self
    }
}

struct Answer {
    status: StatusCode,
    challenge: Option<String>,
    body: String,
}

/// Sends a `tools/call` that would leave a line with `marker-<case>` in the audit log.
async fn send(server: &PgmcpHttp, case: &Case) -> Answer {
    let marker = format!("marker-{}", case.name);
    let url = match &case.query {
        Some(query) => format!("{}?{query}", server.mcp_url()),
        None => server.mcp_url(),
    };
    let body = json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": { "name": "execute_query", "arguments": { "sql": format!("SELECT '{marker}' AS marker") } }
    });
    let response = http()
        .post(url)
        .headers(case.headers.clone())
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string())
        .send()
        .await
        .expect("request reaches pgmcp");
    let status = response.status();
    let challenge = response
        .headers()
        .get(WWW_AUTHENTICATE)
        .map(|v| v.to_str().expect("ascii challenge").to_string());
    let body = response.text().await.unwrap_or_default();
    Answer {
        status,
        challenge,
        body,
    }
}

/// The challenge pgmcp must send: resource metadata, the scope to ask for, and the RFC 6750 error if any.
fn challenge(server: &PgmcpHttp, error: Option<&str>) -> String {
    let mut expected = format!(
        "Bearer resource_metadata=\"{}\", scope=\"{APP_ID_URI}/user_impersonation\"",
        server.metadata_url()
    );
    if let Some(error) = error {
        expected.push_str(&format!(", error=\"{error}\""));
    }
    expected
}

async fn expect_refused(server: &PgmcpHttp, case: Case, status: StatusCode, error: Option<&str>) {
    let answer = send(server, &case).await;
    assert_eq!(answer.status, status, "{}: body {}", case.name, answer.body);
    assert_eq!(
        answer.challenge.as_deref(),
        Some(challenge(server, error).as_str()),
        "{}",
        case.name
    );
    // The body says as little as the challenge: never which check failed.
    let parsed: Value = serde_json::from_str(&answer.body).expect("JSON error body");
    let expected_code = error.unwrap_or("unauthorized");
    assert_eq!(parsed["error"], expected_code, "{}", case.name);
    for word in [
        "expired",
        "audience",
        "issuer",
        "signature",
        "tenant",
        "role",
        "kid",
        "algorithm",
        "client app",
    ] {
        assert!(
            !answer.body.to_lowercase().contains(word),
            "{}: body mentions {word}",
            case.name
        );
    }
    let ran = server.audit_lines_with(&format!("marker-{}", case.name));
    assert!(ran.is_empty(), "{}: a tool ran: {ran:?}", case.name);
}

/// Accepted: 200, a JSON-RPC result, and exactly one audit line naming the caller.
async fn expect_accepted(server: &PgmcpHttp, case: Case) -> Value {
    let answer = send(server, &case).await;
    assert_eq!(
        answer.status,
        StatusCode::OK,
        "{}: body {}",
        case.name,
        answer.body
    );
    assert_eq!(answer.challenge, None);
    let reply: Value = serde_json::from_str(&answer.body).expect("JSON-RPC reply");
    assert_eq!(reply["result"]["isError"], false, "{}: {reply}", case.name);
    let lines = server.audit_lines_with(&format!("marker-{}", case.name));
    assert_eq!(lines.len(), 1, "{}: audit lines {lines:?}", case.name);
    serde_json::from_str(&lines[0]).expect("audit line is JSON")
}

const INVALID_TOKEN: Option<&str> = Some("invalid_token");
const INVALID_REQUEST: Option<&str> = Some("invalid_request");
const INSUFFICIENT: Option<&str> = Some("insufficient_scope");

#[tokio::test]
async fn malformed_and_missing_credentials() {
    let (Setup { trusted, .. }, server) = setup();
    let server = &server;
    let token = trusted.token("v2-app").await;
    use StatusCode as S;
    expect_refused(server, Case::new("no-token"), S::UNAUTHORIZED, None).await;
    expect_refused(
        server,
        Case::new("empty-bearer").header(AUTHORIZATION, "Bearer "),
        S::BAD_REQUEST,
        INVALID_REQUEST,
    )
    .await;
    expect_refused(
        server,
        Case::new("basic-scheme").header(AUTHORIZATION, "Basic dXNlcjpwYXNz"),
        S::BAD_REQUEST,
        INVALID_REQUEST,
    )
    .await;
    expect_refused(
        server,
        Case::new("garbage-scheme").header(AUTHORIZATION, "Garbage !!!"),
        S::BAD_REQUEST,
        INVALID_REQUEST,
    )
    .await;
    expect_refused(
        server,
        Case::new("bearer-bad-chars").header(AUTHORIZATION, "Bearer a\"b,c"),
        S::BAD_REQUEST,
        INVALID_REQUEST,
    )
    .await;
    let twice = Case::bearer("two-authorization-headers", &token)
        .header(AUTHORIZATION, &format!("Bearer {token}"));
    expect_refused(server, twice, S::BAD_REQUEST, INVALID_REQUEST).await;
    let query_and_header =
        Case::bearer("token-in-query-and-header", &token).query(format!("access_token={token}"));
    expect_refused(server, query_and_header, S::BAD_REQUEST, INVALID_REQUEST).await;
    expect_refused(
        server,
        Case::new("token-in-query").query(format!("access_token={token}")),
        S::BAD_REQUEST,
        INVALID_REQUEST,
    )
    .await;
    let cookie = Case::new("token-in-cookie").header(COOKIE, &format!("access_token={token}"));
    expect_refused(server, cookie, S::UNAUTHORIZED, None).await;
    expect_refused(
        server,
        Case::bearer("not-a-jwt", "not-a-jwt"),
        S::UNAUTHORIZED,
        INVALID_TOKEN,
    )
    .await;
    expect_refused(
        server,
        Case::bearer("four-parts", &format!("{token}.x")),
        S::UNAUTHORIZED,
        INVALID_TOKEN,
    )
    .await;
}

#[tokio::test]
async fn invalid_tokens_get_401() {
    let (Setup { trusted, untrusted }, server) = setup();
    let server = &server;
    for (name, client) in [
        ("expired", "v2-expired"),
        ("not-yet-valid", "v2-not-yet-valid"),
        ("wrong-audience", "v2-wrong-aud"),
        ("wrong-issuer", "v2-foreign-iss"),
        ("wrong-tenant-issuer", "v2-other-tenant"),
        ("tid-not-issuer-tenant", "v2-tid-mismatch"),
        ("missing-tid", "v2-no-tid"),
        // ID tokens of the trusted tenant for pgmcp's client id, carrying the user's app role.
        ("v2-id-token", "v2-id-token"),
        ("v2-id-token-without-nonce", "v2-id-token-no-nonce"),
        ("v1-id-token", "v1-id-token"),
    ] {
        let token = trusted.token(client).await;
        expect_refused(
            server,
            Case::bearer(name, &token),
            StatusCode::UNAUTHORIZED,
            INVALID_TOKEN,
        )
        .await;
    }
    // Tokens with the trusted issuer's claims, signed by a provider pgmcp does not trust.
    let forged = untrusted.token("v2-app").await;
    expect_refused(
        server,
        Case::bearer("untrusted-signing-key", &forged),
        StatusCode::UNAUTHORIZED,
        INVALID_TOKEN,
    )
    .await;
    let jku = untrusted.token("v2-jku").await;
    expect_refused(
        server,
        Case::bearer("jku-to-untrusted-keys", &jku),
        StatusCode::UNAUTHORIZED,
        INVALID_TOKEN,
    )
    .await;
    let trusted_kid = trusted.kids().await[0].clone();
    let forger = Provider::start(vec![with_kid(&trusted.base, "forged", &trusted_kid)]);
    let same_kid = forger.token("forged").await;
    expect_refused(
        server,
        Case::bearer("untrusted-key-trusted-kid", &same_kid),
        StatusCode::UNAUTHORIZED,
        INVALID_TOKEN,
    )
    .await;
    assert_eq!(
        untrusted.jwks_requests().await,
        0,
        "keys named in a token header were fetched"
    );
}

#[tokio::test]
async fn crafted_tokens_get_401() {
    let (Setup { trusted, .. }, server) = setup();
    let server = &server;
    let valid = trusted.token("v2-app").await;
    let (header, payload, signature) = split(&valid);
    let refuse = |name, token: String| async move {
        expect_refused(
            server,
            Case::bearer(name, &token),
            StatusCode::UNAUTHORIZED,
            INVALID_TOKEN,
        )
        .await
    };
    refuse(
        "alg-none",
        join(&json!({"alg": "none", "typ": "JWT"}), &payload, ""),
    )
    .await;
    let jwks = trusted.jwks().await;
    let rsa = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kty"] == "RSA")
        .unwrap()
        .clone();
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = rsa["kid"].as_str().map(str::to_string);
    let hmac = jsonwebtoken::encode(
        &hs,
        &payload,
        &EncodingKey::from_secret(rsa.to_string().as_bytes()),
    )
    .unwrap();
    refuse("hmac-with-public-key", hmac).await;
    let mut unknown = header.clone();
    unknown["kid"] = json!("no-such-key");
    refuse("unknown-kid", join(&unknown, &payload, &signature)).await;
    let mut elevated = payload.clone();
    elevated["roles"] = json!([ROLE, "MCP.Write"]);
    refuse("tampered-payload", join(&header, &elevated, &signature)).await;
    let mut other_oid = payload.clone();
    other_oid["oid"] = json!(USER_OID);
    refuse("tampered-oid", join(&header, &other_oid, &signature)).await;
    let mut no_kid = header.clone();
    no_kid.as_object_mut().unwrap().remove("kid");
    refuse("tampered-no-kid", join(&no_kid, &elevated, &signature)).await;
}

#[tokio::test]
async fn valid_tokens_lacking_rights_get_403() {
    let (Setup { trusted, .. }, server) = setup();
    let server = &server;
    for (name, client) in [
        ("missing-role", "v2-no-role"),
        ("wrong-role", "v2-wrong-role"),
        ("disallowed-client-app", "v2-other-app"),
        ("delegated-without-scope", "delegated-no-scope"),
    ] {
        let token = trusted.token(client).await;
        expect_refused(
            server,
            Case::bearer(name, &token),
            StatusCode::FORBIDDEN,
            INSUFFICIENT,
        )
        .await;
    }
}

#[tokio::test]
async fn valid_tokens_run_the_tool_as_the_caller() {
    let (Setup { trusted, .. }, server) = setup();
    let server = &server;
    let v2 = expect_accepted(
        server,
        Case::bearer("valid-v2", &trusted.token("v2-app").await),
    )
    .await;
    assert_eq!(v2["caller"]["oid"], AGENT_OID, "{v2}");
    assert_eq!(v2["caller"]["tid"], TENANT, "{v2}");
    let v1 = expect_accepted(
        server,
        Case::bearer("valid-v1", &trusted.token("v1-app").await),
    )
    .await;
    assert_eq!(v1["caller"]["oid"], AGENT_OID, "{v1}");
    let user = expect_accepted(
        server,
        Case::bearer(
            "delegated-with-scope",
            &trusted.token("delegated-scope").await,
        ),
    )
    .await;
    assert_eq!(user["caller"]["oid"], USER_OID, "{user}");
    for (name, client) in [
        ("valid-es256", "v2-es256"),
        ("valid-ps256", "v2-ps256"),
        ("app-id-uri-audience", "v2-app-id-uri-aud"),
        ("expired-within-leeway", "v2-expired-within-leeway"),
        ("jku-header-ignored", "v2-jku"),
    ] {
        expect_accepted(server, Case::bearer(name, &trusted.token(client).await)).await;
    }
    let audit = std::fs::read_to_string(&server.audit).unwrap_or_default();
    assert!(!audit.contains("eyJ"), "a token reached the audit log");
}

#[tokio::test]
async fn metadata_and_probes_are_anonymous() {
    let (Setup { trusted, .. }, server) = setup();
    let server = &server;
    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
    ] {
        let response = http()
            .get(format!("{}{path}", server.base))
            .send()
            .await
            .expect("PRM");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let prm: Value = response.json().await.expect("PRM JSON");
        assert_eq!(prm["resource"], server.mcp_url());
        assert_eq!(
            prm["authorization_servers"],
            json!([format!("{}/{TENANT}/v2.0", trusted.base)])
        );
        assert_eq!(
            prm["scopes_supported"],
            json!([format!("{APP_ID_URI}/user_impersonation")])
        );
        assert_eq!(prm["bearer_methods_supported"], json!(["header"]));
        // Unless configured, pgmcp does not invent a documentation page for the deployment.
        assert!(prm.get("resource_documentation").is_none(), "{prm}");
    }
    let health = http()
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), StatusCode::OK);
}

#[tokio::test]
async fn rotation_and_provider_outage_through_the_server() {
    let mut provider = Provider::start(entra_clients("{base}"));
    let server = PgmcpHttp::start_entra(&common::reader_url(), &provider.base, &[]);
    expect_accepted(
        &server,
        Case::bearer("before-rotation", &provider.token("v2-app").await),
    )
    .await;
    provider.rotate().await;
    let rotated = provider.token("v2-app").await;
    expect_accepted(&server, Case::bearer("after-rotation", &rotated)).await;

    let (header, payload, signature) = split(&rotated);
    provider.stop();
    expect_accepted(&server, Case::bearer("provider-down-cached-keys", &rotated)).await;
    let mut unknown = header.clone();
    unknown["kid"] = json!("appeared-while-down");
    let case = Case::bearer(
        "provider-down-unknown-kid",
        &join(&unknown, &payload, &signature),
    );
    expect_refused(&server, case, StatusCode::UNAUTHORIZED, INVALID_TOKEN).await;
    let ready = http()
        .get(format!("{}/readyz", server.base))
        .send()
        .await
        .expect("readyz");
    assert_eq!(
        ready.status(),
        StatusCode::OK,
        "keys stay loaded while the provider is down"
    );
}

/// A refused request whose body the server did not read ends its connection, and says so: a client that reused
/// it for its next request (an OAuth client retrying with a fresh token) would otherwise see that request dropped
/// unanswered. Here the body is still unsent when the answer comes.
#[tokio::test]
async fn a_refused_request_with_an_unread_body_closes_its_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_, server) = setup();
    let address = server.mcp_url();
    let address = address
        .trim_start_matches("http://")
        .trim_end_matches("/mcp");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nContent-Length: 64\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read_all = async {
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), read_all)
        .await
        .expect("the server closed the connection after refusing the request");
    let answer = String::from_utf8_lossy(&answer).to_lowercase();
    assert!(answer.starts_with("http/1.1 401"), "{answer}");
    assert!(answer.contains("\r\nconnection: close\r\n"), "{answer}");
}
