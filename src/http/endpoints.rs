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
use crate::telemetry::metrics::{Metrics, credential_snapshots, pool_snapshots};

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

/// Ready when the default profile's database answers and the signing keys are loaded. The body's first line is
/// `ok` or `not ready`; the lines after it say why, or what is degraded while still ready (a token or key
/// refresh failing while the cached one lasts). They name no host, user or key: the probe is anonymous.
pub async fn readyz(State(state): State<EndpointState>) -> Response {
    let mut blocking = Vec::new();
    let mut degraded = Vec::new();
    let db = &state.databases.all()[0];
    match tokio::time::timeout(READINESS_TIMEOUT, db.readiness()).await {
        Ok(Ok(())) => {}
        Ok(Err(why)) => blocking.push(format!("database: {why}")),
        Err(_) => blocking.push(format!(
            "database: no answer within {} s",
            READINESS_TIMEOUT.as_secs()
        )),
    }
    for db in state.databases.all() {
        let Some(health) = db
            .connector()
            .credentials()
            .and_then(|c| c.refresh_health())
        else {
            continue;
        };
        if health.consecutive_failures > 0 {
            degraded.push(format!(
                "database credential: the last {} token refreshes failed; the cached token is valid for {} s more",
                health.consecutive_failures,
                health.valid_for().as_secs()
            ));
        }
    }
    if let Some(auth) = &state.auth {
        if !auth.keys_loaded() {
            blocking.push("signing keys: not loaded yet from the identity provider".into());
        } else if auth.failing_key_refreshes() > 0 {
            degraded.push(format!(
                "signing keys: the last {} refreshes failed; the cached keys stay in use",
                auth.failing_key_refreshes()
            ));
        }
    }
    let (status, first) = match blocking.is_empty() {
        true => (StatusCode::OK, "ok"),
        false => (StatusCode::SERVICE_UNAVAILABLE, "not ready"),
    };
    let mut body = String::from(first);
    for line in blocking.iter().chain(&degraded) {
        body.push('\n');
        body.push_str(line);
    }
    (status, [(header::CACHE_CONTROL, "no-store")], body).into_response()
}

pub async fn metrics(State(state): State<EndpointState>) -> Response {
    let text = state.metrics.render(
        pool_snapshots(&state.databases),
        credential_snapshots(&state.databases),
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
