use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::reason::{Failure, Outcome};

/// A refused request: the status, the `WWW-Authenticate` challenge (RFC 6750 / RFC 9728) and a generic body.
/// Which check failed is only logged; the client learns no more than the RFC 6750 error code.
#[derive(Debug, Clone)]
pub struct AuthRejection {
    status: StatusCode,
    challenge: String,
    body: &'static str,
    failure: Failure,
}

impl AuthRejection {
    pub(crate) fn new(failure: Failure, metadata_url: &str, scopes: &[String]) -> AuthRejection {
        let mut challenge = format!("Bearer resource_metadata=\"{}\"", escape(metadata_url));
        if !scopes.is_empty() {
            challenge.push_str(&format!(", scope=\"{}\"", escape(&scopes.join(" "))));
        }
        let (status, error, body) = match failure.outcome() {
            Outcome::InvalidRequest => (
                StatusCode::BAD_REQUEST,
                Some("invalid_request"),
                r#"{"error":"invalid_request","error_description":"the request is malformed; send the access token only in one Authorization: Bearer header"}"#,
            ),
            Outcome::Unauthorized { token_given: false } => (
                StatusCode::UNAUTHORIZED,
                None,
                r#"{"error":"unauthorized","error_description":"an access token is required"}"#,
            ),
            Outcome::Unauthorized { token_given: true } => (
                StatusCode::UNAUTHORIZED,
                Some("invalid_token"),
                r#"{"error":"invalid_token","error_description":"the access token is not valid for this server"}"#,
            ),
            Outcome::InsufficientScope => (
                StatusCode::FORBIDDEN,
                Some("insufficient_scope"),
                r#"{"error":"insufficient_scope","error_description":"the access token does not grant access to this server"}"#,
            ),
        };
        if let Some(error) = error {
            challenge.push_str(&format!(", error=\"{error}\""));
        }
        AuthRejection {
            status,
            challenge,
            body,
            failure,
        }
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The `WWW-Authenticate` header value.
    pub fn www_authenticate(&self) -> &str {
        &self.challenge
    }

    /// The generic JSON body.
    pub fn body(&self) -> &'static str {
        self.body
    }

    /// The precise reason, for logs, metrics and tests — never sent to the client.
    pub fn reason(&self) -> &'static str {
        self.failure.as_str()
    }
}

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Ok(value) = HeaderValue::from_str(&self.challenge) {
            headers.insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}

/// Quoted-string content (RFC 9110 §5.6.4): backslash and double quote are escaped, control characters dropped
/// (they cannot appear in a header value).
pub(crate) fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const META: &str = "https://pgmcp.example/.well-known/oauth-protected-resource/mcp";

    #[test]
    fn challenges_follow_rfc_6750_and_9728() {
        let scopes = vec!["api://x/.default".to_string()];
        let missing = AuthRejection::new(Failure::MissingToken, META, &scopes);
        assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            missing.www_authenticate(),
            format!("Bearer resource_metadata=\"{META}\", scope=\"api://x/.default\"")
        );
        let expired = AuthRejection::new(Failure::Expired, META, &scopes);
        assert!(
            expired
                .www_authenticate()
                .ends_with(", error=\"invalid_token\"")
        );
        let forbidden = AuthRejection::new(Failure::MissingRole, META, &[]);
        assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            forbidden.www_authenticate(),
            format!("Bearer resource_metadata=\"{META}\", error=\"insufficient_scope\"")
        );
        let bad = AuthRejection::new(Failure::TokenInQuery, META, &[]);
        assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
        assert!(bad.www_authenticate().contains("error=\"invalid_request\""));
    }

    #[test]
    fn bodies_do_not_name_the_failed_check() {
        for failure in Failure::ALL {
            let body = AuthRejection::new(failure, META, &[]).body();
            assert!(!body.contains(failure.as_str()), "{failure:?}");
            for word in [
                "expired",
                "audience",
                "issuer",
                "signature",
                "tenant",
                "role",
                "kid",
            ] {
                assert!(!body.contains(word), "{failure:?} body mentions {word}");
            }
        }
    }

    #[test]
    fn quotes_in_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\n"), "a\\\"b\\\\c");
    }
}
