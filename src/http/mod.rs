//! Remote pgmcp: Streamable HTTP at `/mcp`, secured as an OAuth 2.1 protected resource.

pub mod accept;
pub mod auth;
pub mod body;
pub mod caller;
pub mod endpoints;
pub mod listener;
pub mod mcp_route;
pub mod oauth;
pub mod on_behalf;
pub mod per_caller;
pub mod policy;
pub mod server;
pub mod settings;

pub use caller::Caller;

use crate::telemetry::audit::CallerIdentity;

/// Who sent an MCP request: rmcp puts the HTTP request's parts into the request's extensions, and the
/// authentication layer put the validated `Caller` into those parts. No parts means stdio.
pub fn request_identity(extensions: &rmcp::model::Extensions) -> CallerIdentity {
    match extensions.get::<axum::http::request::Parts>() {
        None => CallerIdentity::Local,
        Some(parts) => match parts.extensions.get::<Caller>() {
            Some(caller) => CallerIdentity::Token(Box::new(caller.clone())),
            None => CallerIdentity::Anonymous,
        },
    }
}

/// The signed-in caller and the token they presented, for profiles that log in as each caller. None on stdio and
/// on HTTP without authentication.
pub fn request_user(extensions: &rmcp::model::Extensions) -> Option<crate::db::UserLogin<'_>> {
    let parts = extensions.get::<axum::http::request::Parts>()?;
    Some(crate::db::UserLogin {
        caller: parts.extensions.get::<Caller>()?,
        token: &parts.extensions.get::<auth::IncomingToken>()?.0,
    })
}
