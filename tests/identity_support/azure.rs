//! A loopback stand-in for the Azure endpoints that cannot run here, speaking their wire formats:
//! - the App Service / Container Apps managed-identity endpoint (`X-IDENTITY-HEADER`, api-version 2019-08-01,
//!   `expires_on` as a string of epoch seconds);
//! - IMDS (`Metadata: true`, api-version 2018-02-01, string-valued `expires_in` / `expires_on`);
//! - the Entra v2 token endpoint: client credentials with a secret, with a certificate assertion (PS256,
//!   `x5t#S256`, verified against the test key), with a federated token (the current content of the workload
//!   identity file, HS256-signed by the "cluster issuer"), or with a managed identity token for
//!   `api://AzureADTokenExchange`; and the on-behalf-of grant;
//! - Key Vault's challenge flow (`WWW-Authenticate: Bearer authorization=…, resource=…`), secret reads (current
//!   or by version; a disabled version is refused with 403 as Key Vault does) and version listings (paged with
//!   `nextLink`, with each version's `enabled`, `created`, `nbf`, `exp` and the secret's `contentType`).
//!
//! Every PostgreSQL-scope token it issues is first made the password of the principal's role, so PostgreSQL
//! accepts exactly the latest token.
#![allow(dead_code)]
// Handlers return axum responses as their error values, as axum handlers do; their size does not matter here.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Value, json};

pub const PG_RESOURCE: &str = "https://ossrdbms-aad.database.windows.net";
pub const VAULT_RESOURCE: &str = "https://vault.azure.net";
pub const EXCHANGE_RESOURCE: &str = "api://AzureADTokenExchange";
pub const TENANT: &str = "72f988bf-0000-4000-8000-000000000001";
/// The `claims` Entra returns with AADSTS50076 (conditional access asks for multi-factor sign-in).
pub const MFA_CLAIMS_CHALLENGE: &str = r#"{"access_token":{"capolids":{"essential":true,"values":["c1b5e5f6-0000-4000-8000-00000000cafe"]}}}"#;
pub const ISSUER_KEY: &[u8] = b"stand-in token signing key";
pub const CLUSTER_ISSUER_KEY: &[u8] = b"kubernetes service account issuer key";
pub const IDENTITY_HEADER: &str = "identity-header-secret-4f1d";
pub const PUBLIC_KEY_PEM: &str = include_str!("test-client-key.pub.pem");

/// Sets a role's password (role, password).
pub type SetPassword = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// A principal the stand-in knows: how it authenticates and which PostgreSQL role its tokens unlock.
#[derive(Clone, Debug, Default)]
pub struct Principal {
    pub client_id: String,
    pub oid: String,
    pub secret: Option<String>,
    pub certificate_thumbprint: Option<String>,
    /// Workload identity: the assertion must equal this file's current content.
    pub federated_file: Option<std::path::PathBuf>,
    /// Accepts a managed identity's exchange token whose `oid` is this.
    pub federated_mi_oid: Option<String>,
    pub role: Option<String>,
}

#[derive(Default)]
pub struct StandInState {
    pub principals: Vec<Principal>,
    /// Managed identities by client id (`None` key = system-assigned).
    pub managed: HashMap<Option<String>, Principal>,
    /// Users for on-behalf-of: `oid` → role.
    pub users: HashMap<String, String>,
    pub token_lifetime_s: u64,
    /// Key Vault secrets: name → versions (last is current); version ids are `v1`, `v2`, ….
    pub vault: HashMap<String, Vec<String>>,
    /// Attributes of a version, by (name, 1-based version number); absent: enabled, created at its number (long
    /// ago), no `nbf` or `exp`.
    pub vault_attributes: HashMap<(String, usize), VaultAttributes>,
    /// `contentType` of a secret (all its versions).
    pub vault_content_types: HashMap<String, String>,
    /// Versions per page of a listing, at most (0: as many as asked for).
    pub vault_page_size: usize,
    /// Answers the next N requests with 503.
    pub fail_next: u32,
    /// Everything issued, for the "never printed" checks.
    pub issued: Vec<String>,
    pub requests: Vec<String>,
    pub secret_reads: u32,
}

#[derive(Clone, Debug)]
pub struct VaultAttributes {
    pub enabled: bool,
    pub created: u64,
    pub nbf: Option<u64>,
    pub exp: Option<u64>,
}

#[derive(Clone)]
pub struct StandIn {
    pub url: String,
    pub state: Arc<Mutex<StandInState>>,
    set_password: SetPassword,
}

impl StandIn {
    /// Starts on 127.0.0.1:0. `set_password(role, token)` runs before a PostgreSQL token is handed out.
    pub async fn start(set_password: SetPassword) -> StandIn {
        let state = Arc::new(Mutex::new(StandInState {
            token_lifetime_s: 3600,
            ..StandInState::default()
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stand_in = StandIn {
            url,
            state,
            set_password,
        };
        let app = Router::new()
            .route("/msi/token", get(app_service))
            .route("/metadata/identity/oauth2/token", get(imds))
            .route("/{tenant}/oauth2/v2.0/token", post(token_endpoint))
            .route("/secrets/{name}", get(key_vault))
            .route("/secrets/{name}/versions", get(key_vault_versions))
            .route("/secrets/{name}/{version}", get(key_vault_version))
            .with_state(stand_in.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        stand_in
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut StandInState) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    /// Every value that must never show up in pgmcp's output.
    pub fn secrets(&self) -> Vec<String> {
        self.with(|s| {
            let mut all = s.issued.clone();
            all.extend(s.principals.iter().filter_map(|p| p.secret.clone()));
            all.extend(s.vault.values().flatten().cloned());
            all.push(IDENTITY_HEADER.to_string());
            all
        })
    }

    /// Issues a token as Entra would; PostgreSQL tokens become the role's password first.
    pub fn issue(&self, audience: &str, claims: Value, role: Option<&str>) -> (String, u64) {
        let lifetime = self.with(|s| s.token_lifetime_s);
        let now = now();
        let mut body = json!({
            "aud": audience,
            "iss": format!("https://sts.windows.net/{TENANT}/"),
            "tid": TENANT,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "uti": random_text(),
        });
        if let (Some(target), Some(extra)) = (body.as_object_mut(), claims.as_object()) {
            target.extend(extra.clone());
        }
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &body,
            &EncodingKey::from_secret(ISSUER_KEY),
        )
        .unwrap();
        if audience == PG_RESOURCE
            && let Some(role) = role
        {
            (self.set_password)(role, &token);
        }
        self.with(|s| s.issued.push(token.clone()));
        (token, now + lifetime)
    }

    fn take_failure(&self, what: &str) -> bool {
        self.with(|s| {
            s.requests.push(what.to_string());
            if s.fail_next > 0 {
                s.fail_next -= 1;
                true
            } else {
                false
            }
        })
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn random_text() -> String {
    format!(
        "{:x}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

fn resource_of(scope_or_resource: &str) -> String {
    scope_or_resource.trim_end_matches("/.default").to_string()
}

fn busy() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "temporarily unavailable").into_response()
}

fn managed_token(stand_in: &StandIn, query: &HashMap<String, String>) -> Result<Value, Response> {
    let client_id = query.get("client_id").cloned();
    let principal = stand_in
        .with(|s| s.managed.get(&client_id).cloned())
        .ok_or_else(|| {
            (
                StatusCode::BAD_REQUEST,
                Json(json!({"error":"invalid_request","error_description":"Identity not found"})),
            )
                .into_response()
        })?;
    let resource = query.get("resource").cloned().unwrap_or_default();
    let (token, expires_on) = stand_in.issue(
        &resource,
        json!({"oid": principal.oid, "appid": principal.client_id, "idtyp": "app"}),
        principal.role.as_deref(),
    );
    Ok(
        json!({"access_token": token, "expires_on": expires_on.to_string(), "resource": resource,
              "token_type": "Bearer", "client_id": principal.client_id}),
    )
}

use axum::Json;

async fn app_service(
    State(stand_in): State<StandIn>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if stand_in.take_failure("app_service") {
        return busy();
    }
    if headers
        .get("x-identity-header")
        .and_then(|v| v.to_str().ok())
        != Some(IDENTITY_HEADER)
        || query.get("api-version").map(String::as_str) != Some("2019-08-01")
    {
        return (
            StatusCode::UNAUTHORIZED,
            "missing or wrong X-IDENTITY-HEADER / api-version",
        )
            .into_response();
    }
    match managed_token(&stand_in, &query) {
        Ok(body) => Json(body).into_response(),
        Err(response) => response,
    }
}

async fn imds(
    State(stand_in): State<StandIn>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if stand_in.take_failure("imds") {
        return busy();
    }
    if headers.get("metadata").and_then(|v| v.to_str().ok()) != Some("true")
        || query.get("api-version").map(String::as_str) != Some("2018-02-01")
    {
        return (StatusCode::BAD_REQUEST, Json(json!({"error":"invalid_request","error_description":"Required metadata header not specified"}))).into_response();
    }
    match managed_token(&stand_in, &query) {
        Ok(mut body) => {
            let lifetime = stand_in.with(|s| s.token_lifetime_s);
            body["expires_in"] = json!(lifetime.to_string());
            Json(body).into_response()
        }
        Err(response) => response,
    }
}

fn form_decode(body: &[u8]) -> HashMap<String, String> {
    let text = String::from_utf8_lossy(body);
    let decode = |s: &str| {
        let bytes = s.replace('+', " ").into_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%'
                && i + 2 < bytes.len()
                && let Ok(byte) =
                    u8::from_str_radix(&String::from_utf8_lossy(&bytes[i + 1..i + 3]), 16)
            {
                out.push(byte);
                i += 3;
                continue;
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    text.split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn entra_error(code: &str, description: &str, codes: &[u32]) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(
            json!({"error": code, "error_description": description, "error_codes": codes,
                    "timestamp": "2025-01-01 00:00:00Z", "trace_id": "t", "correlation_id": "c"}),
        ),
    )
        .into_response()
}

/// Checks the client's proof; returns the principal.
fn authenticate_client(
    stand_in: &StandIn,
    form: &HashMap<String, String>,
    token_url: &str,
) -> Result<Principal, Response> {
    let client_id = form.get("client_id").cloned().unwrap_or_default();
    let principal = stand_in
        .with(|s| {
            s.principals
                .iter()
                .find(|p| p.client_id == client_id)
                .cloned()
        })
        .ok_or_else(|| {
            entra_error(
                "unauthorized_client",
                "AADSTS700016: Application not found in the directory.",
                &[700016],
            )
        })?;
    let invalid = || {
        entra_error(
            "invalid_client",
            "AADSTS7000215: Invalid client secret provided.",
            &[7000215],
        )
    };
    if let Some(secret) = form.get("client_secret") {
        return if principal.secret.as_deref() == Some(secret.as_str()) {
            Ok(principal)
        } else {
            Err(invalid())
        };
    }
    if form.get("client_assertion_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
    {
        return Err(invalid());
    }
    let assertion = form.get("client_assertion").cloned().unwrap_or_default();
    if let Some(thumbprint) = &principal.certificate_thumbprint {
        let header = jsonwebtoken::decode_header(&assertion).map_err(|_| invalid())?;
        let mut validation = Validation::new(Algorithm::PS256);
        validation.set_audience(&[token_url]);
        validation.set_issuer(&[&principal.client_id]);
        validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
        let key = DecodingKey::from_rsa_pem(PUBLIC_KEY_PEM.as_bytes()).unwrap();
        let data =
            jsonwebtoken::decode::<Value>(&assertion, &key, &validation).map_err(|_| invalid())?;
        let ok = header.x5t_s256.as_deref() == Some(thumbprint.as_str())
            && data.claims["sub"] == json!(principal.client_id)
            && data.claims["jti"].is_string();
        return if ok { Ok(principal) } else { Err(invalid()) };
    }
    if let Some(file) = &principal.federated_file {
        let current = std::fs::read_to_string(file).unwrap_or_default();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_aud = false;
        let signed = jsonwebtoken::decode::<Value>(
            &assertion,
            &DecodingKey::from_secret(CLUSTER_ISSUER_KEY),
            &validation,
        )
        .is_ok();
        return if signed && assertion == current.trim() {
            Ok(principal)
        } else {
            Err(entra_error(
                "invalid_client",
                "AADSTS700024: Client assertion is not within its valid time range.",
                &[700024],
            ))
        };
    }
    if let Some(mi_oid) = &principal.federated_mi_oid {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[EXCHANGE_RESOURCE]);
        let data = jsonwebtoken::decode::<Value>(
            &assertion,
            &DecodingKey::from_secret(ISSUER_KEY),
            &validation,
        )
        .map_err(|_| invalid())?;
        return if data.claims["oid"] == json!(mi_oid) {
            Ok(principal)
        } else {
            Err(invalid())
        };
    }
    Err(invalid())
}

async fn token_endpoint(
    State(stand_in): State<StandIn>,
    Path(tenant): Path<String>,
    body: Bytes,
) -> Response {
    if stand_in.take_failure("token") {
        return busy();
    }
    if tenant != TENANT {
        return entra_error(
            "invalid_request",
            "AADSTS90002: Tenant not found.",
            &[90002],
        );
    }
    let form = form_decode(&body);
    let token_url = format!("{}/{tenant}/oauth2/v2.0/token", stand_in.url);
    let principal = match authenticate_client(&stand_in, &form, &token_url) {
        Ok(principal) => principal,
        Err(response) => return response,
    };
    let scope = form.get("scope").cloned().unwrap_or_default();
    let resource = resource_of(&scope);
    let token = match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {
            let claims =
                json!({"oid": principal.oid, "appid": principal.client_id, "idtyp": "app"});
            stand_in
                .issue(&resource, claims, principal.role.as_deref())
                .0
        }
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer") => {
            if form.get("requested_token_use").map(String::as_str) != Some("on_behalf_of") {
                return entra_error(
                    "invalid_request",
                    "AADSTS50027: requested_token_use must be on_behalf_of",
                    &[50027],
                );
            }
            let incoming = form.get("assertion").cloned().unwrap_or_default();
            let Ok(user) = jsonwebtoken::dangerous::insecure_decode::<Value>(&incoming) else {
                return entra_error(
                    "invalid_grant",
                    "AADSTS50013: Assertion failed signature validation.",
                    &[50013],
                );
            };
            let oid = user.claims["oid"].as_str().unwrap_or_default().to_string();
            if user.claims["consent"] == json!("missing") {
                return entra_error(
                    "invalid_grant",
                    "AADSTS65001: The user or administrator has not consented to use the application.",
                    &[65001],
                );
            }
            if user.claims["mfa"] == json!("required") {
                // Entra's answer when conditional access wants multi-factor sign-in: a claims challenge that the
                // middle tier must hand back to the client.
                return (
                    StatusCode::BAD_REQUEST,
                    Json(json!({
                        "error": "invalid_grant",
                        "error_description": "AADSTS50076: Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access 'ossrdbms-aad'.",
                        "error_codes": [50076], "suberror": "basic_action",
                        "claims": MFA_CLAIMS_CHALLENGE,
                        "timestamp": "2025-01-01 00:00:00Z", "trace_id": "t", "correlation_id": "c",
                    })),
                )
                    .into_response();
            }
            let Some(role) = stand_in.with(|s| s.users.get(&oid).cloned()) else {
                return entra_error(
                    "invalid_grant",
                    "AADSTS50034: The user account does not exist in this directory.",
                    &[50034],
                );
            };
            let claims = json!({"oid": oid, "upn": user.claims["upn"], "appid": principal.client_id, "scp": "user_impersonation", "idtyp": "user"});
            stand_in.issue(&resource, claims, Some(&role)).0
        }
        _ => {
            return entra_error(
                "unsupported_grant_type",
                "AADSTS70003: unsupported grant type",
                &[70003],
            );
        }
    };
    let lifetime = stand_in.with(|s| s.token_lifetime_s);
    Json(json!({"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime, "access_token": token})).into_response()
}

/// Key Vault's answer to a request without a valid token for the vault (the challenge), or `None` when the
/// request may go on.
fn key_vault_refusal(
    stand_in: &StandIn,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
) -> Option<Response> {
    if stand_in.take_failure("key_vault") {
        return Some(busy());
    }
    if query.get("api-version").map(String::as_str) != Some("7.4") {
        return Some((StatusCode::BAD_REQUEST, "api-version 7.4 expected").into_response());
    }
    let challenge = || {
        let mut response = (StatusCode::UNAUTHORIZED, Json(json!({"error":{"code":"Unauthorized","message":"AKV10000: Request is missing a Bearer or PoP token."}}))).into_response();
        let value = format!(
            "Bearer authorization=\"{}/{TENANT}\", resource=\"{VAULT_RESOURCE}\"",
            stand_in.url
        );
        response
            .headers_mut()
            .insert("www-authenticate", value.parse().unwrap());
        response
    };
    let Some(bearer) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return Some(challenge());
    };
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_audience(&[VAULT_RESOURCE]);
    if jsonwebtoken::decode::<Value>(bearer, &DecodingKey::from_secret(ISSUER_KEY), &validation)
        .is_err()
    {
        return Some(challenge());
    }
    None
}

fn vault_attributes(state: &StandInState, name: &str, number: usize) -> VaultAttributes {
    state
        .vault_attributes
        .get(&(name.to_string(), number))
        .cloned()
        .unwrap_or(VaultAttributes {
            enabled: true,
            created: number as u64,
            nbf: None,
            exp: None,
        })
}

fn attributes_json(attributes: &VaultAttributes) -> Value {
    let mut json = json!({
        "enabled": attributes.enabled, "created": attributes.created, "updated": attributes.created,
        "recoveryLevel": "Recoverable+Purgeable",
    });
    if let Some(nbf) = attributes.nbf {
        json["nbf"] = json!(nbf);
    }
    if let Some(exp) = attributes.exp {
        json["exp"] = json!(exp);
    }
    json
}

fn secret_not_found() -> Response {
    (StatusCode::NOT_FOUND, Json(json!({"error":{"code":"SecretNotFound","message":"A secret with (name/id) was not found in this key vault."}}))).into_response()
}

/// One version's value as Key Vault returns it, or its refusal.
fn secret_answer(stand_in: &StandIn, name: &str, number: Option<usize>) -> Response {
    let found = stand_in.with(|s| {
        s.secret_reads += 1;
        let versions = s.vault.get(name)?;
        let number = number.unwrap_or(versions.len());
        let value = versions.get(number.checked_sub(1)?)?.clone();
        Some((
            number,
            value,
            vault_attributes(s, name, number),
            s.vault_content_types.get(name).cloned(),
        ))
    });
    let Some((number, value, attributes, content_type)) = found else {
        return secret_not_found();
    };
    if !attributes.enabled {
        return (StatusCode::FORBIDDEN, Json(json!({"error":{"code":"Forbidden","message":"Operation get is not allowed on a disabled secret.","innererror":{"code":"SecretDisabled"}}}))).into_response();
    }
    let mut body = json!({
        "value": value,
        "id": format!("{}/secrets/{name}/v{number}", stand_in.url),
        "attributes": attributes_json(&attributes),
    });
    if let Some(content_type) = content_type {
        body["contentType"] = json!(content_type);
    }
    Json(body).into_response()
}

async fn key_vault(
    State(stand_in): State<StandIn>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Some(refusal) = key_vault_refusal(&stand_in, &headers, &query) {
        return refusal;
    }
    secret_answer(&stand_in, &name, None)
}

async fn key_vault_version(
    State(stand_in): State<StandIn>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Some(refusal) = key_vault_refusal(&stand_in, &headers, &query) {
        return refusal;
    }
    match version
        .strip_prefix('v')
        .and_then(|n| n.parse::<usize>().ok())
    {
        Some(number) if number > 0 => secret_answer(&stand_in, &name, Some(number)),
        _ => secret_not_found(),
    }
}

async fn key_vault_versions(
    State(stand_in): State<StandIn>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Some(refusal) = key_vault_refusal(&stand_in, &headers, &query) {
        return refusal;
    }
    let asked: usize = query
        .get("maxresults")
        .and_then(|n| n.parse().ok())
        .unwrap_or(25);
    let skip: usize = query
        .get("$skiptoken")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let listed = stand_in.with(|s| {
        s.requests.push("key_vault_versions".into());
        let count = s.vault.get(&name)?.len();
        let page = match s.vault_page_size {
            0 => asked,
            size => size.min(asked),
        };
        let content_type = s.vault_content_types.get(&name).cloned();
        let items: Vec<Value> = (1..=count)
            .skip(skip)
            .take(page)
            .map(|number| {
                let mut item = json!({
                    "id": format!("{}/secrets/{name}/v{number}", stand_in.url),
                    "attributes": attributes_json(&vault_attributes(s, &name, number)),
                });
                if let Some(content_type) = &content_type {
                    item["contentType"] = json!(content_type);
                }
                item
            })
            .collect();
        let next = (skip + page < count).then(|| {
            format!(
                "{}/secrets/{name}/versions?api-version=7.4&$skiptoken={}&maxresults={asked}",
                stand_in.url,
                skip + page
            )
        });
        Some((items, next))
    });
    match listed {
        Some((items, next)) => Json(json!({"value": items, "nextLink": next})).into_response(),
        None => secret_not_found(),
    }
}
