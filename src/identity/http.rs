//! HTTP plumbing shared by the token services and Key Vault: one client, form bodies, endpoint checks,
//! retries with backoff, and reading token responses and Entra error bodies without ever quoting a secret.

use std::time::{Duration, SystemTime};

use reqwest::{RequestBuilder, StatusCode, Url};
use serde_json::Value;

use super::token::{AccessToken, IdentityError, IdentityErrorKind, epoch_seconds};
use crate::config::Secret;

/// How often and how patiently a token service is asked again after a transient failure.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            attempts: 4,
            first_delay: Duration::from_millis(300),
            max_delay: Duration::from_secs(4),
        }
    }
}

/// The client for Azure endpoints: no redirects (a credential must never follow one elsewhere), bounded waits.
pub fn http_client() -> Result<reqwest::Client, IdentityError> {
    // reqwest is built without a crypto provider; rustls then uses the process default, which must be set once.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(20))
        .user_agent(concat!("pgmcp/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|error| IdentityError::config(format!("cannot set up HTTPS: {error}")))
}

/// `application/x-www-form-urlencoded` for a request body.
pub fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(key, value)| format!("{}={}", form_escape(key), form_escape(value)))
        .collect::<Vec<_>>()
        .join("&")
}

fn form_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(byte as char)
            }
            b' ' => out.push('+'),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// An endpoint a credential may be sent to: HTTPS, or plain HTTP only on the loopback interface (where the App
/// Service identity endpoint and local stand-ins live).
pub fn checked_endpoint(text: &str, setting: &str) -> Result<Url, IdentityError> {
    let url = Url::parse(text.trim()).map_err(|error| {
        IdentityError::config(format!("{setting} = {text:?} is not a URL: {error}"))
    })?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback_url(&url) => Ok(url),
        _ => Err(IdentityError::config(format!(
            "{setting} = {text:?} must use https:// (plain http is only allowed on the loopback interface)"
        ))),
    }
}

/// Whether the URL's host — as parsed, never by prefix (`http://127.evil.example` and `http://localhost:@evil.example`
/// name other machines) — is this machine: `localhost`, 127.0.0.0/8 or `::1`. Plain HTTP is acceptable only there.
pub fn is_loopback_url(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A response that arrived: status, `WWW-Authenticate`, body.
pub struct Reply {
    pub status: StatusCode,
    pub www_authenticate: Option<String>,
    pub body: Vec<u8>,
}

fn retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::GONE
        || status.is_server_error()
}

/// Sends the request built by `build`, again after network errors and 408/410/429/5xx answers, waiting longer
/// each time (or as long as `Retry-After` asks, within the policy's maximum). `what` names the service in errors.
pub async fn send(
    build: &(dyn Fn() -> RequestBuilder + Sync),
    policy: RetryPolicy,
    what: &str,
) -> Result<Reply, IdentityError> {
    let mut delay = policy.first_delay;
    let mut last_problem = String::new();
    for attempt in 1..=policy.attempts.max(1) {
        if attempt > 1 {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(policy.max_delay);
        }
        match build().send().await {
            Ok(response) => {
                let status = response.status();
                let www_authenticate = response
                    .headers()
                    .get(reqwest::header::WWW_AUTHENTICATE)
                    .and_then(|value| value.to_str().ok())
                    .map(str::to_string);
                let retry_after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let body = response
                    .bytes()
                    .await
                    .map(|bytes| bytes.to_vec())
                    .unwrap_or_default();
                if retryable(status) {
                    last_problem = format!("HTTP {status}");
                    if attempt == policy.attempts.max(1) {
                        break;
                    }
                    if let Some(wait) = retry_after {
                        delay = wait.min(policy.max_delay);
                    }
                    tracing::debug!(service = what, %status, attempt, "token service busy or failing; retrying");
                    continue;
                }
                return Ok(Reply {
                    status,
                    www_authenticate,
                    body,
                });
            }
            Err(error) => {
                // reqwest's message names the URL; none of ours carries a secret in it.
                last_problem = describe_send_error(&error);
                tracing::debug!(service = what, problem = %last_problem, attempt, "token service unreachable; retrying");
            }
        }
    }
    Err(IdentityError::unavailable(format!(
        "{what} is unavailable after {} attempts: {last_problem}",
        policy.attempts.max(1)
    )))
}

fn describe_send_error(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        "timed out".to_string()
    } else if error.is_connect() {
        "cannot connect".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// A token from a JSON answer in any of the shapes Azure uses: Entra's `expires_in` (number or string), the
/// managed-identity endpoints' `expires_on` (epoch seconds as a string), the Azure CLI's `accessToken` and
/// `expires_on`.
pub fn parse_token(body: &[u8], what: &str) -> Result<AccessToken, IdentityError> {
    let json: Value = serde_json::from_slice(body).map_err(|_| {
        IdentityError::rejected(format!("{what} answered with something that is not JSON"))
    })?;
    let token = json
        .get("access_token")
        .or_else(|| json.get("accessToken"))
        .and_then(Value::as_str)
        .filter(|token| !token.is_empty())
        .ok_or_else(|| {
            IdentityError::rejected(format!("{what} answered without an access token"))
        })?;
    let number = |key: &str| match json.get(key) {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    let expires_at = if let Some(on) = number("expires_on") {
        epoch_seconds(on)
    } else if let Some(seconds) = number("expires_in") {
        SystemTime::now() + Duration::from_secs(seconds)
    } else if let Some(local) = json.get("expiresOn").and_then(Value::as_str) {
        parse_cli_local_time(local).ok_or_else(|| {
            IdentityError::rejected(format!(
                "{what} gave an expiry pgmcp cannot read: {local:?}"
            ))
        })?
    } else {
        return Err(IdentityError::rejected(format!(
            "{what} answered without an expiry (expires_in / expires_on)"
        )));
    };
    Ok(AccessToken::new(Secret::new(token), expires_at))
}

/// Older Azure CLI versions give only `expiresOn` in local time, e.g. `2023-10-31 21:59:10.000000`.
fn parse_cli_local_time(text: &str) -> Option<SystemTime> {
    use chrono::TimeZone;
    let naive = chrono::NaiveDateTime::parse_from_str(text.trim(), "%Y-%m-%d %H:%M:%S%.f").ok()?;
    let local = chrono::Local.from_local_datetime(&naive).earliest()?;
    Some(SystemTime::from(local))
}

/// The error an Entra token endpoint returned, as a pgmcp error: `error`, `error_description` and the AADSTS
/// codes, which name the problem and never contain the credential.
pub fn entra_error(reply: &Reply, what: &str) -> IdentityError {
    let json: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
    let code = json.get("error").and_then(Value::as_str).unwrap_or("");
    let description = json
        .get("error_description")
        .and_then(Value::as_str)
        .unwrap_or("")
        .lines()
        .next()
        .unwrap_or("");
    let codes: Vec<u64> = json
        .get("error_codes")
        .and_then(Value::as_array)
        .map(|codes| codes.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    let suberror = json.get("suberror").and_then(Value::as_str).unwrap_or("");
    let needs_user = code == "interaction_required"
        || code == "consent_required"
        || suberror == "consent_required"
        || codes
            .iter()
            .any(|c| *c == 65001 || *c == 50076 || *c == 50079)
        || description.contains("AADSTS65001")
        || description.contains("AADSTS50076");
    let mut message = format!("{what} refused the request (HTTP {})", reply.status);
    if !code.is_empty() {
        message.push_str(&format!(": {code}"));
    }
    if !description.is_empty() {
        message.push_str(&format!(": {description}"));
    }
    let kind = if needs_user {
        IdentityErrorKind::InteractionRequired {
            claims: json
                .get("claims")
                .and_then(Value::as_str)
                .map(str::to_string),
        }
    } else if reply.status.is_server_error() || reply.status == StatusCode::TOO_MANY_REQUESTS {
        IdentityErrorKind::Unavailable
    } else {
        IdentityErrorKind::Rejected
    };
    IdentityError::new(kind, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding_escapes_reserved_characters() {
        assert_eq!(
            form(&[("scope", "https://x/.default"), ("a", "b c&d")]),
            "scope=https%3A%2F%2Fx%2F.default&a=b+c%26d"
        );
    }

    #[test]
    fn plain_http_only_on_loopback() {
        assert!(checked_endpoint("http://127.0.0.1:8080/t", "x").is_ok());
        assert!(checked_endpoint("http://localhost/t", "x").is_ok());
        assert!(checked_endpoint("https://login.microsoftonline.com", "x").is_ok());
        assert!(checked_endpoint("http://login.microsoftonline.com", "x").is_err());
        assert!(checked_endpoint("http://169.254.169.254/metadata", "x").is_err());
    }

    #[test]
    fn token_shapes() {
        let mi = parse_token(br#"{"access_token":"a.b.c","expires_on":"4102444800","resource":"r","token_type":"Bearer"}"#, "t").unwrap();
        assert_eq!(mi.expires_at, epoch_seconds(4_102_444_800));
        let entra = parse_token(
            br#"{"token_type":"Bearer","expires_in":3599,"access_token":"x"}"#,
            "t",
        )
        .unwrap();
        assert!(entra.remaining() > Duration::from_secs(3500));
        let cli = parse_token(
            br#"{"accessToken":"x","expiresOn":"2099-01-01 00:00:00.000000","tokenType":"Bearer"}"#,
            "t",
        )
        .unwrap();
        assert!(cli.remaining() > Duration::from_secs(3600));
        let error = parse_token(br#"{"expires_in":1}"#, "the endpoint").unwrap_err();
        assert!(error.message.contains("without an access token"));
    }

    #[test]
    fn consent_errors_ask_for_interaction() {
        let reply = Reply {
            status: StatusCode::BAD_REQUEST,
            www_authenticate: None,
            body: br#"{"error":"invalid_grant","error_description":"AADSTS65001: The user or administrator has not consented.","error_codes":[65001],"suberror":"consent_required"}"#.to_vec(),
        };
        let error = entra_error(&reply, "Entra");
        assert!(matches!(
            error.kind,
            IdentityErrorKind::InteractionRequired { .. }
        ));
        assert!(error.message.contains("AADSTS65001"));
    }
}
