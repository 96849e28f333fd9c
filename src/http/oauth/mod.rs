//! pgmcp as the OAuth authorization server MCP clients see (`--oauth-server`), in front of Entra ID or the
//! configured OpenID provider. Interactive clients (VS Code, Claude, the MCP Inspector, the SDKs) register or
//! identify themselves here — which Entra cannot do for them — while people still sign in at their provider.
//! pgmcp then issues its own short-lived tokens for its resource, which its verifier accepts next to the provider's
//! (see [`crate::http::auth::OwnIssuer`]).
//!
//! Everything a replica hands out is sealed or signed with the one shared key (`--oauth-signing-key`, a file or a
//! Key Vault secret), so any replica serves any step and nothing is stored; see `token.rs` for what only one
//! replica can enforce.

mod authorize;
mod clients;
mod consent_page;
mod keys;
mod limits;
mod metadata_document;
mod seal;
pub mod settings;
mod token;
pub mod upstream;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::http::auth::{AuthSettings, Authenticator, OwnIssuer};
use crate::identity::keyvault::{KeyVault, SecretReference};
pub use keys::{KeyRing, SigningKey, SigningKeys};
pub use settings::{
    ConfiguredClient, OAuthFile, OAuthFlags, OAuthSettings, PemSource, SigningKeySource,
    UpstreamCredential,
};

pub const METADATA_PATH: &str = "/.well-known/oauth-authorization-server";
pub const JWKS_PATH: &str = "/oauth/jwks";
/// Form bodies here are a few kilobytes at most (a sealed code or refresh token).
const MAX_BODY_BYTES: usize = 64 * 1024;

pub struct OAuthServer {
    /// pgmcp's public base URL: the issuer of its tokens.
    issuer: String,
    /// The issuer's origin, for the consent form's Origin check.
    origin: String,
    resource: String,
    scopes: Vec<String>,
    settings: OAuthSettings,
    keys: Arc<SigningKeys>,
    clients: clients::Clients,
    upstream: upstream::Upstream,
    authenticator: Arc<Authenticator>,
    spent: token::Spent,
    limits: limits::Limits,
}

/// Start-up checks and the signing keys, or `None` without `--oauth-server`. The keys are needed before the
/// verifier is built, since the verifier must trust what they sign.
pub async fn prepare(
    settings: &crate::http::settings::HttpSettings,
    databases: &crate::mcp::Databases,
) -> anyhow::Result<Option<Arc<SigningKeys>>> {
    let Some(oauth) = &settings.oauth else {
        return Ok(None);
    };
    if let Some(db) = databases.all().iter().find(|db| db.per_caller()) {
        anyhow::bail!(
            "profile `{}` has db_identity = on_behalf_of, which exchanges the caller's Entra token, but with \
             `--oauth-server` callers present pgmcp's own tokens, which Entra cannot exchange: use \
             `--db-identity service` for that profile, or serve without `--oauth-server`",
            db.profile.name
        );
    }
    SigningKeys::load(&oauth.signing_key, oauth.key_vault_refresh, &|name| {
        std::env::var(name).ok()
    })
    .await
    .map(Some)
}

/// What the verifier needs to accept pgmcp's own tokens.
pub fn own_issuer(keys: &Arc<SigningKeys>, issuer: &str, resource: &str) -> OwnIssuer {
    OwnIssuer {
        issuer: issuer.to_string(),
        audience: resource.to_string(),
        keys: keys.clone(),
    }
}

/// The vault of `reference`, read with the default credential chain of the standard Azure variables (service
/// principal, workload identity, managed identity — `AZURE_CLIENT_ID` names a user-assigned one — Azure CLI).
pub(crate) fn key_vault(
    reference: &SecretReference,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<KeyVault> {
    let client =
        crate::identity::http::http_client().map_err(|error| anyhow::anyhow!("{error}"))?;
    let credential = crate::identity::chain::build_credential(
        &crate::identity::IdentitySettings::default(),
        env,
        &client,
    )
    .map_err(|error| anyhow::anyhow!("the credential that reads Key Vault: {error}"))?;
    KeyVault::new(client, &reference.vault, credential).map_err(|error| anyhow::anyhow!("{error}"))
}

impl OAuthServer {
    /// Also reads what the upstream credential needs from Key Vault, so a certificate that cannot be read fails
    /// start-up rather than the first sign-in.
    pub async fn new(
        settings: OAuthSettings,
        keys: Arc<SigningKeys>,
        auth_settings: &AuthSettings,
        authenticator: Arc<Authenticator>,
        issuer: &str,
        resource: &str,
    ) -> anyhow::Result<Arc<OAuthServer>> {
        let scopes = authenticator.scopes_supported();
        let upstream = upstream::Upstream::new(
            auth_settings,
            &scopes,
            &settings,
            format!("{issuer}/callback"),
            &|name| std::env::var(name).ok(),
        )?;
        upstream.check_credential().await?;
        let origin = reqwest::Url::parse(issuer)
            .map(|url| url.origin().ascii_serialization())
            .unwrap_or_default();
        Ok(Arc::new(OAuthServer {
            issuer: issuer.to_string(),
            origin,
            resource: resource.to_string(),
            scopes,
            clients: clients::Clients::new(
                &settings.clients,
                metadata_document::MetadataDocuments::new(settings.allow_loopback_client_metadata),
            ),
            limits: limits::Limits::new(settings.registrations_per_minute),
            settings,
            keys,
            upstream,
            authenticator,
            spent: token::Spent::default(),
        }))
    }

    /// The keys in force now; hold the ring for one request so signing and sealing use the same keys.
    fn ring(&self) -> Arc<KeyRing> {
        self.keys.ring()
    }

    /// The authorization server's routes; mounted only with `--oauth-server`.
    pub fn router(self: &Arc<Self>) -> Router {
        let api = Router::new()
            .route(METADATA_PATH, get(metadata))
            .route(JWKS_PATH, get(jwks))
            .route("/register", post(clients::register))
            .route("/token", post(token::token))
            .route("/revoke", post(token::revoke))
            // Browser-based clients (the Inspector) call these from their own origin; none of them reads a
            // cookie or an ambient credential, so any origin may.
            .layer(axum::middleware::from_fn(open_to_any_origin));
        let browser = Router::new()
            .route(
                "/authorize",
                get(authorize::authorize).post(authorize::decide),
            )
            .route("/callback", get(authorize::callback));
        api.merge(browser)
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .with_state(self.clone())
    }
}

async fn open_to_any_origin(request: Request, next: Next) -> Response {
    let preflight = request.method() == Method::OPTIONS;
    let mut response = if preflight {
        StatusCode::NO_CONTENT.into_response()
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    if preflight {
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, OPTIONS"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("content-type, authorization, mcp-protocol-version"),
        );
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
    }
    response
}

fn no_store() -> [(header::HeaderName, &'static str); 2] {
    [
        (header::CACHE_CONTROL, "no-store"),
        (header::PRAGMA, "no-cache"),
    ]
}

fn too_many_requests() -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, "10")],
        axum::Json(json!({ "error": "slow_down", "error_description": "too many requests; retry shortly" })),
    )
        .into_response()
}

/// RFC 8414 metadata.
async fn metadata(State(server): State<Arc<OAuthServer>>) -> Response {
    if !server.limits.metadata.allow() {
        return too_many_requests();
    }
    let issuer = &server.issuer;
    let body = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "registration_endpoint": format!("{issuer}/register"),
        "revocation_endpoint": format!("{issuer}/revoke"),
        "jwks_uri": format!("{issuer}{JWKS_PATH}"),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none"],
        "revocation_endpoint_auth_methods_supported": ["none"],
        "scopes_supported": server.scopes,
        "client_id_metadata_document_supported": true,
        "authorization_response_iss_parameter_supported": true,
        "resource_indicators_supported": true,
    });
    (
        [(header::CACHE_CONTROL, "public, max-age=3600")],
        axum::Json(body),
    )
        .into_response()
}

async fn jwks(State(server): State<Arc<OAuthServer>>) -> Response {
    if !server.limits.metadata.allow() {
        return too_many_requests();
    }
    (
        [(header::CACHE_CONTROL, "public, max-age=3600")],
        axum::Json(json!({ "keys": server.ring().all().map(|key| &key.jwk).collect::<Vec<_>>() })),
    )
        .into_response()
}
