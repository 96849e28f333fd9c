//! The bearer token on the wire: where it may come from (only `Authorization: Bearer`), and the tower layer that
//! guards `/mcp` with it.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Request, Uri, header};
use axum::response::{IntoResponse, Response};

use super::Authenticator;
use super::reason::Failure;
use crate::config::Secret;

/// The caller's access token as received, for calls made on the caller's behalf (on-behalf-of). It is inserted
/// into the request extensions next to the [`crate::http::Caller`]; like every [`Secret`] it never prints.
#[derive(Debug, Clone)]
pub struct IncomingToken(pub Secret);

/// The bearer token of a request, or why the request is malformed. `Ok(None)` means no credentials at all.
pub(crate) fn extract_bearer(headers: &HeaderMap, uri: &Uri) -> Result<Option<Secret>, Failure> {
    // RFC 6750 §2.3 allows `access_token` in the query, and says not to: URLs end up in logs and browser history.
    // A client that sends one is told so with 400 rather than silently ignored.
    if uri.query().is_some_and(query_has_access_token) {
        return Err(Failure::TokenInQuery);
    }
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Failure::MultipleAuthorizationHeaders);
    }
    let value = value.to_str().map_err(|_| Failure::MalformedBearer)?;
    let (scheme, token) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Failure::NotBearerScheme);
    }
    let token = token.trim_start_matches(' ');
    if !is_b64token(token) {
        return Err(Failure::MalformedBearer);
    }
    Ok(Some(Secret::new(token)))
}

/// RFC 6750 §2.1: `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

fn query_has_access_token(query: &str) -> bool {
    query
        .split('&')
        .map(|pair| pair.split('=').next().unwrap_or_default())
        .any(|name| percent_decode(name).eq_ignore_ascii_case("access_token"))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Guards a route: every request must carry a valid bearer token, checked before the inner service sees it.
/// On success the [`crate::http::Caller`] and the [`IncomingToken`] are in the request extensions.
pub fn require_bearer(auth: Arc<Authenticator>) -> RequireBearerLayer {
    RequireBearerLayer { auth }
}

#[derive(Clone)]
pub struct RequireBearerLayer {
    auth: Arc<Authenticator>,
}

impl<S> tower::Layer<S> for RequireBearerLayer {
    type Service = RequireBearer<S>;

    fn layer(&self, inner: S) -> RequireBearer<S> {
        RequireBearer {
            inner,
            auth: self.auth.clone(),
        }
    }
}

#[derive(Clone)]
pub struct RequireBearer<S> {
    inner: S,
    auth: Arc<Authenticator>,
}

impl<S> tower::Service<Request<Body>> for RequireBearer<S>
where
    S: tower::Service<Request<Body>, Response = Response, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        // The clone that was driven to readiness is the one that must serve this request.
        let fresh = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, fresh);
        let auth = self.auth.clone();
        Box::pin(async move {
            match admit(&auth, request).await {
                Ok(request) => inner.call(request).await,
                Err(refusal) => Ok(refusal),
            }
        })
    }
}

/// The request with its validated [`crate::http::Caller`] and [`IncomingToken`] in its extensions, or the
/// response that refuses it.
pub async fn admit(
    auth: &Authenticator,
    mut request: Request<Body>,
) -> Result<Request<Body>, Response> {
    match auth
        .authenticate_with_token(request.headers(), request.uri())
        .await
    {
        Ok((caller, token)) => {
            request.extensions_mut().insert(caller);
            request.extensions_mut().insert(IncomingToken(token));
            Ok(request)
        }
        Err(rejection) => {
            let mut response = rejection.into_response();
            if carries_body(request.headers()) {
                // The body is refused unread, and hyper closes a connection whose body it cannot drain once the
                // answer is out. A client that sent its next request on it meanwhile (an OAuth client retrying
                // with the token the challenge sent it for) would see it drop unanswered; told up front, it opens
                // another.
                (response.headers_mut())
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Err(response)
        }
    }
}

fn carries_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || crate::http::body::declared_length(headers).is_some_and(|length| length > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn uri(text: &str) -> Uri {
        text.parse().unwrap()
    }

    #[test]
    fn only_one_bearer_header_is_accepted() {
        let ok = extract_bearer(&headers(&["Bearer abc.def.ghi"]), &uri("/mcp")).unwrap();
        assert_eq!(ok.unwrap().expose(), "abc.def.ghi");
        let ok = extract_bearer(&headers(&["bearer   abc.def-_~+/=="]), &uri("/mcp")).unwrap();
        assert_eq!(ok.unwrap().expose(), "abc.def-_~+/==");
        assert_eq!(extract_bearer(&headers(&[]), &uri("/mcp")).unwrap(), None);
        for (values, failure) in [
            (
                &["Bearer a", "Bearer b"][..],
                Failure::MultipleAuthorizationHeaders,
            ),
            (&["Basic dXNlcjpwYXNz"][..], Failure::NotBearerScheme),
            (&["garbage"][..], Failure::NotBearerScheme),
            (&["Bearer"][..], Failure::MalformedBearer),
            (&["Bearer "][..], Failure::MalformedBearer),
            (&["Bearer a b"][..], Failure::MalformedBearer),
            (&["Bearer a\"b"][..], Failure::MalformedBearer),
            (&["Bearer ="][..], Failure::MalformedBearer),
        ] {
            assert_eq!(
                extract_bearer(&headers(values), &uri("/mcp")),
                Err(failure),
                "{values:?}"
            );
        }
    }

    #[test]
    fn a_token_in_the_query_is_refused_even_beside_a_header() {
        for query in [
            "/mcp?access_token=x",
            "/mcp?a=1&access_token=",
            "/mcp?access%5Ftoken=x",
            "/mcp?ACCESS_TOKEN",
        ] {
            assert_eq!(
                extract_bearer(&headers(&["Bearer abc"]), &uri(query)),
                Err(Failure::TokenInQuery),
                "{query}"
            );
        }
        assert!(extract_bearer(&headers(&["Bearer abc"]), &uri("/mcp?token_type=x")).is_ok());
    }
}
