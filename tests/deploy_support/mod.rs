//! Loopback stand-ins for what a deployment talks to, speaking the real wire formats: Entra's signing keys at
//! `{authority}/{tenant}/discovery/v2.0/keys` with RS256 access tokens shaped like Entra v2 app tokens (so pgmcp
//! validates them exactly as in `--auth-mode entra`), and the managed-identity endpoints that hand such tokens to
//! a caller — IMDS (`Metadata: true`, api-version 2018-02-01, string-valued `expires_in`/`expires_on`) and the
//! App Service / Container Apps endpoint (`X-IDENTITY-HEADER`, api-version 2019-08-01).
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

pub const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
/// pgmcp's app registration.
pub const CLIENT_ID: &str = "3f1c5e2a-6b7d-4c8e-9f0a-1b2c3d4e5f60";
/// The calling agent's managed identity (client id and object id).
pub const AGENT_APP: &str = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d";
pub const AGENT_OID: &str = "0d9c8b7a-6f5e-4d3c-9b2a-1f0e9d8c7b6a";
pub const ROLE: &str = "MCP.Access";
pub const IDENTITY_HEADER: &str = "identity-header-7d2e";
const KID: &str = "deploy-test-key";

/// What the stand-in Entra knows about the agent: the app roles assigned to it on pgmcp's app.
#[derive(Clone)]
pub struct Assignments(Arc<Mutex<Vec<String>>>);

impl Assignments {
    pub fn set(&self, roles: &[&str]) {
        *self.0.lock().unwrap() = roles.iter().map(|r| r.to_string()).collect();
    }
}

#[derive(Clone)]
struct Shared {
    authority: String,
    key: Arc<EncodingKey>,
    roles: Assignments,
    requests: Arc<Mutex<Vec<String>>>,
}

pub struct Issuer {
    /// `http://127.0.0.1:PORT`: the Entra authority pgmcp is pointed at, and the IMDS / identity endpoint host.
    pub authority: String,
    pub roles: Assignments,
    shared: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl Issuer {
    pub async fn start() -> Issuer {
        let pem = include_bytes!("../identity_support/test-client-key.pem");
        let key = EncodingKey::from_rsa_pem(pem).expect("test RSA key");
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
        jwk.common.key_id = Some(KID.into());
        let jwks = JwkSet { keys: vec![jwk] };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority = format!("http://{}", listener.local_addr().unwrap());
        let roles = Assignments(Arc::new(Mutex::new(vec![ROLE.to_string()])));
        let shared = Shared {
            authority: authority.clone(),
            key: Arc::new(key),
            roles: roles.clone(),
            requests: Arc::default(),
        };
        let app = axum::Router::new()
            .route(
                &format!("/{TENANT}/discovery/v2.0/keys"),
                get(move || {
                    let jwks = jwks.clone();
                    async move { Json(jwks) }
                }),
            )
            .route("/metadata/identity/oauth2/token", get(imds))
            .route("/msi/token", get(app_service))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Issuer {
            authority,
            roles,
            shared,
            server,
        }
    }

    /// The `[auth]` table pointing pgmcp's Entra mode here (the endpoints have no flags or variables).
    pub fn config(&self) -> String {
        format!(
            "[auth]\nentra_authority = \"{0}\"\nentra_v1_issuer_host = \"{0}\"\n",
            self.authority
        )
    }

    /// The `PGMCP_*` variables that make pgmcp require what the agent's tokens carry.
    pub fn pgmcp_env() -> Vec<(&'static str, &'static str)> {
        vec![
            ("PGMCP_AUTH_MODE", "entra"),
            ("PGMCP_ENTRA_TENANT_ID", TENANT),
            ("PGMCP_ENTRA_CLIENT_ID", CLIENT_ID),
            ("PGMCP_REQUIRED_ROLE", ROLE),
            ("PGMCP_ALLOWED_CLIENT_APP", AGENT_APP),
        ]
    }

    /// An app-only v2 token of the agent for pgmcp, with these roles.
    pub fn token(&self, roles: &[&str]) -> String {
        token(&self.shared, roles)
    }

    /// The managed-identity requests seen, as `endpoint resource=...`.
    pub fn requests(&self) -> Vec<String> {
        self.shared.requests.lock().unwrap().clone()
    }
}

impl Drop for Issuer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn token(shared: &Shared, roles: &[&str]) -> String {
    let now = now();
    let claims = json!({
        "iss": format!("{}/{TENANT}/v2.0", shared.authority),
        "aud": CLIENT_ID,
        "tid": TENANT,
        "sub": AGENT_OID,
        "oid": AGENT_OID,
        "azp": AGENT_APP,
        "roles": roles,
        "ver": "2.0",
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
    });
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(KID.into());
    jsonwebtoken::encode(&header, &claims, &shared.key).unwrap()
}

/// Entra answers a token request for pgmcp's client id or App ID URI; anything else is an unknown resource.
fn issue(shared: &Shared, resource: Option<&String>, app_service: bool) -> Response {
    let Some(resource) = resource else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Required query variable 'resource' is missing",
        );
    };
    let known = resource.trim_end_matches("/.default");
    if known != CLIENT_ID && known != format!("api://{CLIENT_ID}") {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_resource",
            &format!(
                "AADSTS500011: The resource principal named {resource} was not found in the tenant."
            ),
        );
    }
    let roles = shared.roles.0.lock().unwrap().clone();
    let roles: Vec<&str> = roles.iter().map(String::as_str).collect();
    let access_token = token(shared, &roles);
    let expires_on = (now() + 3600).to_string();
    let body = if app_service {
        json!({"access_token": access_token, "expires_on": expires_on, "resource": resource,
               "token_type": "Bearer", "client_id": AGENT_APP})
    } else {
        json!({"access_token": access_token, "client_id": AGENT_APP, "expires_in": "3599",
               "expires_on": expires_on, "ext_expires_in": "3599", "not_before": now().to_string(),
               "resource": resource, "token_type": "Bearer"})
    };
    Json(body).into_response()
}

fn error(status: StatusCode, code: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": code, "error_description": description})),
    )
        .into_response()
}

async fn imds(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    shared.requests.lock().unwrap().push(format!(
        "imds resource={}",
        query.get("resource").cloned().unwrap_or_default()
    ));
    if headers.get("metadata").and_then(|v| v.to_str().ok()) != Some("true") {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Required metadata header not specified",
        );
    }
    if query.get("api-version").map(String::as_str) != Some("2018-02-01") {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Invalid or missing api-version",
        );
    }
    issue(&shared, query.get("resource"), false)
}

async fn app_service(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    shared.requests.lock().unwrap().push(format!(
        "app_service resource={}",
        query.get("resource").cloned().unwrap_or_default()
    ));
    if headers
        .get("x-identity-header")
        .and_then(|v| v.to_str().ok())
        != Some(IDENTITY_HEADER)
    {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "X-IDENTITY-HEADER is missing or wrong",
        );
    }
    if query.get("api-version").map(String::as_str) != Some("2019-08-01") {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Invalid or missing api-version",
        );
    }
    issue(&shared, query.get("resource"), true)
}

/// The JSON-RPC answer of a Streamable HTTP response (plain JSON, or the first SSE `data:` line).
pub fn json_rpc(body: &str) -> Value {
    let text = body
        .lines()
        .find_map(|line| line.strip_prefix("data:"))
        .unwrap_or(body);
    serde_json::from_str(text.trim()).unwrap_or_else(|_| panic!("not JSON-RPC: {body}"))
}
