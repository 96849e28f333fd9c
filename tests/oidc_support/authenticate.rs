//! `Authenticator::authenticate` called directly (no HTTP server), with the exact reason the log would show.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use pgmcp::http::Caller;
use pgmcp::http::auth::{AuthMode, AuthRejection, AuthSettings, Authenticator, ResourceInfo};

use super::*;

pub const METADATA_URL: &str = "http://127.0.0.1:9/.well-known/oauth-protected-resource/mcp";

/// Entra mode for the stand-in at `base`: the tenant, pgmcp's client id and App ID URI, the role, the scope and
/// the agent's client app.
pub fn entra_settings(base: &str) -> AuthSettings {
    AuthSettings {
        mode: AuthMode::Entra,
        entra_tenant_ids: vec![TENANT.into()],
        entra_client_id: Some(CLIENT_ID.into()),
        entra_app_id_uri: Some(APP_ID_URI.into()),
        required_roles: vec![ROLE.into()],
        required_scopes: vec!["user_impersonation".into()],
        allowed_client_apps: vec![AGENT_APP.into()],
        entra_authority: Some(base.into()),
        // v1 issuers keep Entra's own host (the default), distinct from the authority, as in real Entra.
        ..AuthSettings::default()
    }
}

pub async fn authenticator(settings: &AuthSettings) -> Arc<Authenticator> {
    let resource = ResourceInfo {
        resource: "http://127.0.0.1:9/mcp".into(),
        metadata_url: METADATA_URL.into(),
    };
    Authenticator::new(settings, resource)
        .await
        .expect("authenticator")
}

pub fn bearer(token: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    headers
}

pub fn mcp() -> Uri {
    Uri::from_static("/mcp")
}

pub async fn check(auth: &Authenticator, token: &str) -> Result<Caller, AuthRejection> {
    auth.authenticate(&bearer(token), &mcp()).await
}

#[track_caller]
pub fn assert_refused(
    result: Result<Caller, AuthRejection>,
    status: StatusCode,
    reason: &str,
) -> AuthRejection {
    let rejection = result.expect_err("the request must be refused");
    assert_eq!((rejection.status(), rejection.reason()), (status, reason));
    rejection
}
