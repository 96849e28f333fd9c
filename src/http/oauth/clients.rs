//! Who may ask for a code, and where it may be sent: clients from the config file, clients registered dynamically
//! (RFC 7591) and clients identified by a metadata document URL. A registered client's id is its registration,
//! sealed: every replica reads it without shared storage, and it survives restarts for as long as the signing key.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::OAuthServer;
use super::metadata_document::MetadataDocuments;
use super::seal::{Kind, Sealer, now};
use super::settings::ConfiguredClient;
use std::sync::Arc;

/// Registered client ids start with this, so they are told apart from configured ids and metadata URLs.
pub const REGISTERED_PREFIX: &str = "pgmcp-client.";
/// Bounds what a registration may hold: its client id travels in every authorization URL.
const MAX_REDIRECT_URIS: usize = 8;
const MAX_URI_CHARS: usize = 512;
const MAX_NAME_CHARS: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub client_id: String,
    pub name: Option<String>,
    pub redirect_uris: Vec<String>,
    pub pre_approved: bool,
}

#[derive(Serialize, Deserialize)]
struct Registration {
    name: Option<String>,
    redirect_uris: Vec<String>,
    issued_at: u64,
}

#[derive(Debug, PartialEq, Eq)]
pub enum ClientError {
    Unknown,
    /// A metadata document that could not be used; the reason is safe to show.
    BadMetadata(String),
}

pub struct Clients {
    configured: HashMap<String, Client>,
    documents: MetadataDocuments,
}

impl Clients {
    pub fn new(configured: &[ConfiguredClient], documents: MetadataDocuments) -> Clients {
        Clients {
            configured: configured
                .iter()
                .map(|c| {
                    let client = Client {
                        client_id: c.client_id.clone(),
                        name: c.name.clone(),
                        redirect_uris: c.redirect_uris.clone(),
                        pre_approved: c.pre_approved,
                    };
                    (c.client_id.clone(), client)
                })
                .collect(),
            documents,
        }
    }

    pub async fn find(&self, sealer: &Sealer, client_id: &str) -> Result<Client, ClientError> {
        if let Some(client) = self.configured.get(client_id) {
            return Ok(client.clone());
        }
        if let Some(sealed) = client_id.strip_prefix(REGISTERED_PREFIX) {
            let registration: Registration = sealer
                .open(Kind::Client, sealed)
                .map_err(|_| ClientError::Unknown)?;
            return Ok(Client {
                client_id: client_id.to_string(),
                name: registration.name,
                redirect_uris: registration.redirect_uris,
                pre_approved: false,
            });
        }
        if client_id.starts_with("https://") {
            return self
                .documents
                .client(client_id)
                .await
                .map_err(ClientError::BadMetadata);
        }
        Err(ClientError::Unknown)
    }
}

/// Whether a redirect URI may be registered at all: https, plain http only to a loopback address (RFC 8252 §7.3),
/// or an app's private-use scheme (RFC 8252 §7.1); never a scheme that runs code or reads files.
pub fn check_redirect_uri(uri: &str) -> Result<reqwest::Url, &'static str> {
    if uri.len() > MAX_URI_CHARS {
        return Err("longer than 512 characters");
    }
    let url = reqwest::Url::parse(uri).map_err(|_| "not an absolute URI")?;
    if url.fragment().is_some() {
        return Err("a redirect URI must not have a fragment");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("a redirect URI must not carry user information");
    }
    match url.scheme() {
        "https" if url.host_str().is_some() => Ok(url),
        "http" if is_loopback_ip_host(&url) => Ok(url),
        "http" => Err("plain http is only allowed to a loopback address (127.0.0.1 or [::1])"),
        "javascript" | "data" | "file" | "vbscript" | "about" | "blob" | "ftp" | "ws" | "wss"
        | "https" => Err("this scheme cannot receive an authorization code"),
        _ => Ok(url),
    }
}

/// `localhost` is accepted too: RFC 8252 prefers the IP literal, but clients in the wild register it.
fn is_loopback_ip_host(url: &reqwest::Url) -> bool {
    crate::identity::http::is_loopback_url(url)
}

/// Exact match, except that a loopback redirect URI matches on any port (RFC 8252 §7.3): native apps pick a free
/// port at the time of the request.
pub fn redirect_matches(registered: &str, presented: &str) -> bool {
    if registered == presented {
        return true;
    }
    let (Ok(registered), Ok(presented)) = (
        reqwest::Url::parse(registered),
        reqwest::Url::parse(presented),
    ) else {
        return false;
    };
    registered.scheme() == "http"
        && presented.scheme() == "http"
        && is_loopback_ip_host(&registered)
        && registered.host_str() == presented.host_str()
        && registered.path() == presented.path()
        && registered.query() == presented.query()
        && presented.fragment().is_none()
        && presented.username().is_empty()
}

impl Client {
    /// The redirect URI to use: the presented one if it matches a registered one; without one, the only registered.
    pub fn redirect_uri(&self, presented: Option<&str>) -> Option<String> {
        match presented {
            Some(presented) => self
                .redirect_uris
                .iter()
                .any(|registered| redirect_matches(registered, presented))
                .then(|| presented.to_string()),
            None if self.redirect_uris.len() == 1 => Some(self.redirect_uris[0].clone()),
            None => None,
        }
    }
}

#[derive(Deserialize)]
pub struct RegistrationRequest {
    #[serde(default)]
    redirect_uris: Vec<String>,
    client_name: Option<String>,
    token_endpoint_auth_method: Option<String>,
    grant_types: Option<Vec<String>>,
    response_types: Option<Vec<String>>,
}

fn registration_error(error: &str, description: impl Into<String>) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": error, "error_description": description.into() })),
    )
        .into_response()
}

/// `POST /register` (RFC 7591). Clients are public (PKCE, no secret): the response says
/// `token_endpoint_auth_method: none` whatever was asked, as RFC 7591 §3.2.1 allows.
pub async fn register(
    State(server): State<Arc<OAuthServer>>,
    body: Result<Json<RegistrationRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if !server.limits.registration.allow() {
        return super::too_many_requests();
    }
    let Ok(Json(request)) = body else {
        return registration_error(
            "invalid_client_metadata",
            "the body must be a JSON client metadata document",
        );
    };
    if request.redirect_uris.is_empty() || request.redirect_uris.len() > MAX_REDIRECT_URIS {
        return registration_error(
            "invalid_redirect_uri",
            format!("give 1 to {MAX_REDIRECT_URIS} redirect_uris"),
        );
    }
    for uri in &request.redirect_uris {
        if let Err(why) = check_redirect_uri(uri) {
            return registration_error("invalid_redirect_uri", format!("{uri}: {why}"));
        }
    }
    if let Some(method) = &request.token_endpoint_auth_method
        && !matches!(
            method.as_str(),
            "none" | "client_secret_basic" | "client_secret_post"
        )
    {
        return registration_error(
            "invalid_client_metadata",
            format!("token_endpoint_auth_method {method:?} is not supported; use none (PKCE)"),
        );
    }
    if let Some(grants) = &request.grant_types
        && !grants.iter().any(|g| g == "authorization_code")
    {
        return registration_error(
            "invalid_client_metadata",
            "grant_types must include authorization_code",
        );
    }
    if let Some(types) = &request.response_types
        && !types.iter().all(|t| t == "code")
    {
        return registration_error(
            "invalid_client_metadata",
            "response_types must be [\"code\"]",
        );
    }
    let name = request
        .client_name
        .map(|name| name.chars().take(MAX_NAME_CHARS).collect::<String>());
    let issued_at = now();
    let registration = Registration {
        name: name.clone(),
        redirect_uris: request.redirect_uris.clone(),
        issued_at,
    };
    let client_id = format!(
        "{REGISTERED_PREFIX}{}",
        server.ring().sealer.seal(Kind::Client, None, &registration)
    );
    tracing::info!(client_name = ?name, redirect_uris = ?request.redirect_uris, "OAuth client registered");
    let mut body = json!({
        "client_id": client_id,
        "client_id_issued_at": issued_at,
        "redirect_uris": request.redirect_uris,
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    });
    if let Some(name) = name {
        body["client_name"] = json!(name);
    }
    (StatusCode::CREATED, super::no_store(), Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris_that_can_be_registered() {
        assert!(check_redirect_uri("https://vscode.dev/redirect").is_ok());
        assert!(check_redirect_uri("http://127.0.0.1:33418/").is_ok());
        assert!(check_redirect_uri("http://[::1]/cb").is_ok());
        assert!(check_redirect_uri("cursor://anysphere.cursor/oauth").is_ok());
        assert!(check_redirect_uri("http://evil.example/cb").is_err());
        assert!(check_redirect_uri("http://127.0.0.1.evil.example/cb").is_err());
        assert!(check_redirect_uri("javascript:alert(1)").is_err());
        assert!(check_redirect_uri("https://x.example/cb#frag").is_err());
        assert!(check_redirect_uri("https://user@x.example/cb").is_err());
    }

    #[test]
    fn loopback_redirects_match_on_any_port_and_nothing_else_varies() {
        let registered = "http://127.0.0.1/callback";
        assert!(redirect_matches(
            registered,
            "http://127.0.0.1:51234/callback"
        ));
        assert!(!redirect_matches(
            registered,
            "http://127.0.0.1:51234/other"
        ));
        assert!(!redirect_matches(
            registered,
            "http://localhost:51234/callback"
        ));
        assert!(!redirect_matches(
            "https://app.example/cb",
            "https://app.example:8443/cb"
        ));
        assert!(!redirect_matches(
            "https://app.example/cb",
            "https://app.example/cb?x=1"
        ));
        assert!(redirect_matches(
            "https://app.example/cb",
            "https://app.example/cb"
        ));
    }
}
