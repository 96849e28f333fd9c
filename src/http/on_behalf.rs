//! With `db_identity = on_behalf_of`, a request that needs the database first makes sure its caller can log in.
//! When Entra answers the exchange with "interaction required" (consent missing, MFA or another conditional-access
//! requirement), the client gets a 401 challenge it can act on — sign the user in again, passing on Entra's claims
//! challenge — instead of a tool error no client can resolve.

use std::sync::Arc;

use axum::http::{Extensions, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};

use crate::db::UserLogin;
use crate::http::Caller;
use crate::http::auth::rejection::escape;
use crate::http::auth::{Authenticator, IncomingToken};
use crate::identity::IdentityErrorKind;
use crate::mcp::Databases;

#[derive(Clone)]
pub struct LoginGate {
    pub databases: Arc<Databases>,
    pub auth: Arc<Authenticator>,
}

/// The profile a JSON-RPC request reads from (`Some(None)`: the default one), or `None` when it needs no database.
fn database_profile(message: &Value) -> Option<Option<String>> {
    let params = message.get("params");
    let named = |value: Option<&Value>| value.and_then(Value::as_str).map(str::to_string);
    match message.get("method").and_then(Value::as_str)? {
        "tools/call" => {
            let tool = params.and_then(|p| p.get("name")).and_then(Value::as_str);
            if tool == Some("list_profiles") {
                return None;
            }
            Some(named(
                params
                    .and_then(|p| p.get("arguments"))
                    .and_then(|a| a.get("profile")),
            ))
        }
        "resources/list" => Some(None),
        "resources/read" => {
            let uri = named(params.and_then(|p| p.get("uri")))?;
            let profile = uri.strip_prefix("pgmcp://")?.split('/').next()?;
            Some(Some(profile.to_string()))
        }
        _ => None,
    }
}

impl LoginGate {
    /// The 401 challenge for a JSON POST whose caller must sign in again before the database it reads lets them
    /// in; `None` lets the request through. `extensions` are the request's, where authentication put the caller;
    /// `body` is its JSON body, already read and bounded.
    pub async fn challenge(&self, extensions: &Extensions, body: &[u8]) -> Option<Response> {
        let caller = extensions.get::<Caller>()?;
        let token = extensions.get::<IncomingToken>()?;
        let profile = serde_json::from_slice::<Value>(body)
            .ok()
            .as_ref()
            .and_then(database_profile)?;
        let db = self.databases.select(profile.as_deref()).ok()?;
        if !db.per_caller() {
            return None;
        }
        let error = db
            .prepare_login(UserLogin {
                caller,
                token: &token.0,
            })
            .await
            .err()?;
        let IdentityErrorKind::InteractionRequired { claims } = &error.kind else {
            return None;
        };
        tracing::info!(
            oid = caller.oid.as_deref().unwrap_or(""),
            reason = %error.message,
            "on-behalf-of exchange needs the user: answering with a 401 challenge"
        );
        Some(interaction_required(&self.auth, claims.as_deref()))
    }
}

/// 401 with the challenge of Entra's claims-challenge format when Entra sent claims (the client passes them to
/// its next sign-in), else `invalid_token`: either way MCP clients sign the user in again, which is where consent
/// and multi-factor prompts happen.
fn interaction_required(auth: &Authenticator, claims: Option<&str>) -> Response {
    let mut challenge = format!(
        "Bearer resource_metadata=\"{}\"",
        escape(&auth.resource().metadata_url)
    );
    let scopes = auth.scopes_supported();
    if !scopes.is_empty() {
        challenge.push_str(&format!(", scope=\"{}\"", escape(&scopes.join(" "))));
    }
    let description = "the user must sign in again to consent or to meet a sign-in requirement before this server \
                       may log in to the database on their behalf";
    let error = match claims {
        Some(claims) => {
            let encoded = base64::engine::general_purpose::STANDARD.encode(claims);
            challenge.push_str(&format!(
                ", error=\"insufficient_claims\", claims=\"{encoded}\""
            ));
            "insufficient_claims"
        }
        None => {
            challenge.push_str(", error=\"invalid_token\"");
            "invalid_token"
        }
    };
    challenge.push_str(&format!(", error_description=\"{description}\""));
    let body = json!({"error": error, "error_description": description}).to_string();
    let mut response = (StatusCode::UNAUTHORIZED, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        headers.insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_database_requests_name_a_profile() {
        let call = |args: Value| json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"execute_query","arguments":args}});
        assert_eq!(
            database_profile(&call(json!({"sql": "SELECT 1"}))),
            Some(None)
        );
        assert_eq!(
            database_profile(&call(json!({"sql": "SELECT 1", "profile": "prod"}))),
            Some(Some("prod".into()))
        );
        let list_profiles =
            json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"list_profiles"}});
        assert_eq!(database_profile(&list_profiles), None);
        let read = json!({"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"pgmcp://dev/tables/public/t"}});
        assert_eq!(database_profile(&read), Some(Some("dev".into())));
        for method in [
            "initialize",
            "tools/list",
            "ping",
            "notifications/initialized",
        ] {
            assert_eq!(
                database_profile(&json!({"jsonrpc":"2.0","method":method})),
                None,
                "{method}"
            );
        }
    }
}
