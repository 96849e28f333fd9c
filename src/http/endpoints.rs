//! The anonymous endpoints next to /mcp: container probes, Prometheus metrics and the protected resource
//! metadata. None of them says anything about the configuration beyond what RFC 9728 requires.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::http::auth::Authenticator;
use crate::mcp::Databases;
use crate::telemetry::metrics::{Metrics, pool_snapshots};

/// How long /readyz waits for the database: probes run every few seconds and must not pile up.
const READINESS_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Clone)]
pub struct EndpointState {
    pub databases: Arc<Databases>,
    pub auth: Option<Arc<Authenticator>>,
    pub metrics: Arc<Metrics>,
    /// `{public_url}/mcp`
    pub resource: String,
    pub resource_name: String,
    pub resource_documentation: Option<String>,
}

pub async fn healthz() -> &'static str {
    "ok"
}

async fn database_reachable(databases: &Databases) -> bool {
    let db = &databases.all()[0];
    matches!(
        tokio::time::timeout(READINESS_TIMEOUT, db.reachable()).await,
        Ok(true)
    )
}

pub async fn readyz(State(state): State<EndpointState>) -> Response {
    let keys_ready = state.auth.as_ref().is_none_or(|auth| auth.keys_loaded());
    if keys_ready && database_reachable(&state.databases).await {
        (StatusCode::OK, "ok").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
    }
}

pub async fn metrics(State(state): State<EndpointState>) -> Response {
    let text = state.metrics.render(
        pool_snapshots(&state.databases),
        state.auth.as_ref().map(|auth| auth.stats()),
    );
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// RFC 9728 metadata, served at both the root and the `/mcp`-suffixed well-known path. Only mounted when
/// authentication is on: without it there is no protected resource to describe.
pub async fn protected_resource_metadata(State(state): State<EndpointState>) -> Response {
    let Some(auth) = &state.auth else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let mut body = json!({
        "resource": state.resource,
        "authorization_servers": auth.authorization_servers(),
        "scopes_supported": auth.scopes_supported(),
        "bearer_methods_supported": ["header"],
        "resource_name": state.resource_name,
    });
    if let Some(documentation) = &state.resource_documentation {
        body["resource_documentation"] = json!(documentation);
    }
    (
        [(header::CACHE_CONTROL, "public, max-age=3600")],
        axum::Json(body),
    )
        .into_response()
}
