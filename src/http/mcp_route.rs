//! `/mcp` as one handler: the checks every MCP request meets, in the order it meets them, then rmcp.
//!
//! 1. The Host header (DNS rebinding), before anything reads the request.
//! 2. The bearer token, which names the caller.
//! 3. The caller's share of the server ([`CallerLimit`]), waited for outside the timeout, so a refused request
//!    costs nothing.
//! 4. The request timeout, around everything below.
//! 5. The JSON body: bounded, and answered in JSON-RPC's terms when it is not a JSON-RPC message.
//! 6. With `db_identity = on_behalf_of`, the caller's database login ([`LoginGate`]).
//! 7. The `Accept` negotiation, then rmcp.
//!
//! They were six tower layers (`from_fn` middleware and a timeout). As layers, each one cloned and boxed the rest of
//! the stack, and boxed its own future, on every request: a third of an HTTP call's allocations (BENCHMARKS.md,
//! issue 17's eighth step).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rmcp::transport::StreamableHttpService;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;

use crate::http::accept;
use crate::http::auth::{self, Authenticator};
use crate::http::body;
use crate::http::on_behalf::LoginGate;
use crate::http::per_caller::{self, CallerLimit};
use crate::mcp::PgMcpServer;

pub type McpService = StreamableHttpService<PgMcpServer, LocalSessionManager>;

pub struct McpRoute {
    /// Host names (no ports) accepted; empty accepts any.
    pub allowed_hosts: Vec<String>,
    pub auth: Option<Arc<Authenticator>>,
    /// Only with `auth`: without a token there is no caller to count.
    pub caller_limit: Option<CallerLimit>,
    pub timeout: Duration,
    pub max_body_bytes: usize,
    pub login: Option<LoginGate>,
    pub mcp: McpService,
}

impl McpRoute {
    pub async fn serve(self: Arc<Self>, request: Request) -> Response {
        if !body::host_allowed(&request, &self.allowed_hosts) {
            return body::host_refused();
        }
        let request = match &self.auth {
            Some(authenticator) => match auth::admit(authenticator, request).await {
                Ok(request) => request,
                Err(refusal) => return refusal,
            },
            None => request,
        };
        let slot = match &self.caller_limit {
            Some(limit) => match limit.admit(&request).await {
                Ok(slot) => slot,
                Err(refusal) => return refusal,
            },
            None => None,
        };
        let response = match tokio::time::timeout(self.timeout, self.within_timeout(request)).await
        {
            Ok(response) => response,
            Err(_) => StatusCode::REQUEST_TIMEOUT.into_response(),
        };
        per_caller::held_until_answered(response, slot)
    }

    async fn within_timeout(&self, request: Request) -> Response {
        let (request, json_body) = match body::read_json(request, self.max_body_bytes).await {
            Ok(read) => read,
            Err(refusal) => return refusal,
        };
        if let (Some(login), Some(bytes)) = (&self.login, &json_body)
            && let Some(challenge) = login.challenge(request.extensions(), bytes).await
        {
            return challenge;
        }
        let response = accept::negotiated(request, |request| async move {
            self.mcp.handle(request).await.map(Body::new)
        })
        .await;
        match json_body {
            Some(bytes) => body::in_jsonrpc_terms(response, &bytes),
            None => response,
        }
    }
}
