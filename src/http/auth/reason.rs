use std::sync::atomic::{AtomicU64, Ordering};

/// Why a request was refused. The reason goes to the log and the metrics, never to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    // 400: the request itself is wrong.
    MultipleAuthorizationHeaders,
    NotBearerScheme,
    MalformedBearer,
    TokenInQuery,
    // 401: no token, or a token that is not valid here.
    MissingToken,
    MalformedToken,
    /// A JOSE `crit` header: the token relies on an extension pgmcp does not implement.
    UnsupportedCriticalHeader,
    DisallowedAlgorithm,
    /// Signed by a trusted issuer, but an ID token (or another typed JWT), not an access token.
    NotAnAccessToken,
    WrongIssuer,
    UnknownKey,
    KeysUnavailable,
    BadSignature,
    Expired,
    NotYetValid,
    WrongAudience,
    MissingClaim,
    WrongTenant,
    // 403: a valid token that may not call.
    MissingRole,
    MissingScope,
    ClientAppNotAllowed,
    PrincipalNotAllowed,
}

/// The three answers a client can get, by RFC 6750's error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    InvalidRequest,
    /// 401; `token_given` adds `error="invalid_token"`.
    Unauthorized {
        token_given: bool,
    },
    InsufficientScope,
}

impl Failure {
    pub const ALL: [Failure; 22] = [
        Failure::MultipleAuthorizationHeaders,
        Failure::NotBearerScheme,
        Failure::MalformedBearer,
        Failure::TokenInQuery,
        Failure::MissingToken,
        Failure::MalformedToken,
        Failure::UnsupportedCriticalHeader,
        Failure::DisallowedAlgorithm,
        Failure::NotAnAccessToken,
        Failure::WrongIssuer,
        Failure::UnknownKey,
        Failure::KeysUnavailable,
        Failure::BadSignature,
        Failure::Expired,
        Failure::NotYetValid,
        Failure::WrongAudience,
        Failure::MissingClaim,
        Failure::WrongTenant,
        Failure::MissingRole,
        Failure::MissingScope,
        Failure::ClientAppNotAllowed,
        Failure::PrincipalNotAllowed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Failure::MultipleAuthorizationHeaders => "multiple_authorization_headers",
            Failure::NotBearerScheme => "not_bearer_scheme",
            Failure::MalformedBearer => "malformed_bearer",
            Failure::TokenInQuery => "token_in_query",
            Failure::MissingToken => "missing_token",
            Failure::MalformedToken => "malformed_token",
            Failure::UnsupportedCriticalHeader => "unsupported_critical_header",
            Failure::DisallowedAlgorithm => "disallowed_algorithm",
            Failure::NotAnAccessToken => "not_an_access_token",
            Failure::WrongIssuer => "wrong_issuer",
            Failure::UnknownKey => "unknown_key",
            Failure::KeysUnavailable => "keys_unavailable",
            Failure::BadSignature => "bad_signature",
            Failure::Expired => "expired",
            Failure::NotYetValid => "not_yet_valid",
            Failure::WrongAudience => "wrong_audience",
            Failure::MissingClaim => "missing_claim",
            Failure::WrongTenant => "wrong_tenant",
            Failure::MissingRole => "missing_role",
            Failure::MissingScope => "missing_scope",
            Failure::ClientAppNotAllowed => "client_app_not_allowed",
            Failure::PrincipalNotAllowed => "principal_not_allowed",
        }
    }

    pub fn outcome(self) -> Outcome {
        match self {
            Failure::MultipleAuthorizationHeaders
            | Failure::NotBearerScheme
            | Failure::MalformedBearer
            | Failure::TokenInQuery => Outcome::InvalidRequest,
            Failure::MissingToken => Outcome::Unauthorized { token_given: false },
            Failure::MissingRole
            | Failure::MissingScope
            | Failure::ClientAppNotAllowed
            | Failure::PrincipalNotAllowed => Outcome::InsufficientScope,
            _ => Outcome::Unauthorized { token_given: true },
        }
    }

    fn index(self) -> usize {
        Failure::ALL.iter().position(|f| *f == self).unwrap_or(0)
    }
}

/// Failure counts by reason, lock-free.
pub struct FailureCounters {
    counts: [AtomicU64; Failure::ALL.len()],
}

impl Default for FailureCounters {
    fn default() -> Self {
        FailureCounters {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl FailureCounters {
    pub fn record(&self, failure: Failure) {
        self.counts[failure.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Every reason with its count, zeros included, so a metrics series exists before the first failure.
    pub fn snapshot(&self) -> Vec<(String, u64)> {
        Failure::ALL
            .iter()
            .map(|failure| {
                (
                    failure.as_str().to_string(),
                    self.counts[failure.index()].load(Ordering::Relaxed),
                )
            })
            .collect()
    }
}
