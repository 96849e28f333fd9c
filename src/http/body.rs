//! A JSON POST body in front of the MCP service: bodies over the limit get 413 without being buffered whole, and a
//! body that is not JSON-RPC gets the JSON-RPC error object with 400 (rmcp itself answers 415 with text, which
//! clients cannot tell apart from a wrong Content-Type). And the Host header, checked before anything else reads a
//! request, and by pgmcp only (rmcp's own list is left empty: it parsed every allowed name again on every request),
//! so a DNS-rebinding request is refused as such whatever its body; rmcp still refuses a request with no readable
//! Host.

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use rmcp::model::ClientJsonRpcMessage;
use serde_json::{Value, json};

pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// Host names (no ports) a route accepts; empty accepts any.
#[derive(Clone)]
pub struct AllowedHosts(pub std::sync::Arc<Vec<String>>);

pub fn host_allowed(request: &Request, allowed: &[String]) -> bool {
    if allowed.is_empty() {
        return true;
    }
    let host = match request.headers().get(header::HOST) {
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.parse::<axum::http::uri::Authority>().ok()),
        // HTTP/2 carries the host in the URI's authority.
        None => request.uri().authority().cloned(),
    };
    let Some(host) = host else {
        // An unreadable Host header, or none at all: rmcp refuses the request with 400.
        return true;
    };
    // A Host is a name and a port (RFC 9110 §7.2): one with user information (`evil@localhost`) names no host a
    // client of this server would send, whatever follows the `@`.
    if host.as_str().contains('@') {
        return false;
    }
    let name = host.host().trim_start_matches('[').trim_end_matches(']');
    allowed.iter().any(|a| a.eq_ignore_ascii_case(name))
}

fn is_json(request: &Request) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(|value| value.split(';').next().unwrap_or("").trim())
        .is_some_and(|essence| essence.eq_ignore_ascii_case("application/json"))
}

/// The body length a request's `Content-Length` declares, when it declares one that reads as a number.
pub fn declared_length(headers: &HeaderMap) -> Option<u64> {
    (headers.get(header::CONTENT_LENGTH))
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok())
}

fn jsonrpc_error(status: StatusCode, id: Value, code: i64, message: &str) -> Response {
    let body = json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}});
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

pub fn too_large(limit: usize) -> Response {
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body exceeds {limit} bytes"),
    )
        .into_response()
}

/// The body, or the response that refuses it.
async fn collect(body: Body, limit: usize) -> Result<Bytes, Response> {
    let mut collected = Vec::new();
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| {
            (
                StatusCode::BAD_REQUEST,
                "the request body could not be read",
            )
                .into_response()
        })?;
        if chunk.len() > limit.saturating_sub(collected.len()) {
            return Err(too_large(limit));
        }
        collected.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(collected))
}

/// Why `bytes` is not a message rmcp can handle, as a JSON-RPC error response.
fn reject_malformed(bytes: &[u8]) -> Option<Response> {
    if serde_json::from_slice::<ClientJsonRpcMessage>(bytes).is_ok() {
        return None;
    }
    Some(match serde_json::from_slice::<Value>(bytes) {
        Err(_) => jsonrpc_error(StatusCode::BAD_REQUEST, Value::Null, -32700, "Parse error"),
        Ok(value) => {
            let id = value.get("id").cloned().unwrap_or(Value::Null);
            jsonrpc_error(
                StatusCode::BAD_REQUEST,
                id,
                -32600,
                "Invalid Request: not a JSON-RPC 2.0 request, notification or response",
            )
        }
    })
}

pub fn host_refused() -> Response {
    tracing::warn!("rejected a request with a disallowed Host header (possible DNS rebinding)");
    (
        StatusCode::FORBIDDEN,
        "Forbidden: Host header is not allowed",
    )
        .into_response()
}

/// Outermost on a route (the chat's; /mcp checks in `McpRoute`): a request for another host name is refused before
/// authentication or parsing.
pub async fn check_host(
    State(hosts): State<AllowedHosts>,
    request: Request,
    next: Next,
) -> Response {
    if !host_allowed(&request, &hosts.0) {
        return host_refused();
    }
    next.run(request).await
}

/// A JSON POST's body, read whole up to `limit` and put back into the request, or the response that refuses it;
/// any other request passes unread (`None`).
pub async fn read_json(
    request: Request,
    limit: usize,
) -> Result<(Request, Option<Bytes>), Response> {
    if request.method() != axum::http::Method::POST || !is_json(&request) {
        return Ok((request, None));
    }
    if let Some(length) = declared_length(request.headers())
        && length > limit as u64
    {
        return Err(too_large(limit));
    }
    let (parts, body) = request.into_parts();
    let bytes = collect(body, limit).await?;
    Ok((
        Request::from_parts(parts, Body::from(bytes.clone())),
        Some(bytes),
    ))
}

/// rmcp's answer to a JSON body, with its refusal of a body that is not a JSON-RPC message (a 415 naming the body)
/// restated in JSON-RPC's terms: a parse error, or an invalid request. Whether the body is such a message rmcp
/// decides as it parses it, so a good request is parsed once, not twice.
pub fn in_jsonrpc_terms(response: Response, body: &[u8]) -> Response {
    if response.status() == StatusCode::UNSUPPORTED_MEDIA_TYPE
        && let Some(refusal) = reject_malformed(body)
    {
        return refusal;
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_messages_pass() {
        let initialize = br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
        assert!(reject_malformed(initialize).is_none());
        assert!(
            reject_malformed(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
                .is_none()
        );
    }

    #[test]
    fn the_host_is_read_from_the_header_or_else_from_the_uri() {
        let allowed = ["localhost".to_string(), "::1".to_string()];
        let with_host = |host: &str| {
            Request::builder()
                .uri("/mcp")
                .header(header::HOST, host)
                .body(Body::empty())
                .unwrap()
        };
        assert!(host_allowed(&with_host("localhost:8080"), &allowed));
        assert!(host_allowed(&with_host("LOCALHOST"), &allowed));
        assert!(host_allowed(&with_host("[::1]:8080"), &allowed));
        assert!(!host_allowed(&with_host("evil.example:8080"), &allowed));
        assert!(!host_allowed(&with_host("evil@localhost:8080"), &allowed));
        // HTTP/2 sends no Host header: the authority in the URI is checked instead (rmcp no longer checks it).
        let by_uri = |uri: &str| Request::builder().uri(uri).body(Body::empty()).unwrap();
        assert!(host_allowed(&by_uri("http://localhost:8080/mcp"), &allowed));
        assert!(!host_allowed(&by_uri("http://evil.example/mcp"), &allowed));
        assert!(!host_allowed(
            &by_uri("http://evil@localhost/mcp"),
            &allowed
        ));
    }

    #[test]
    fn broken_json_is_a_parse_error_and_other_json_an_invalid_request() {
        assert_eq!(
            reject_malformed(b"{not json").map(|r| r.status()),
            Some(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            reject_malformed(br#"{"hello":"world"}"#).map(|r| r.status()),
            Some(StatusCode::BAD_REQUEST)
        );
    }
}
