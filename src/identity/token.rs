//! Access tokens and the errors of obtaining them. Neither ever prints a token or a client secret.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::Secret;

/// The scope of Azure Database for PostgreSQL (and of Azure Cosmos DB for PostgreSQL) tokens.
pub const POSTGRES_SCOPE: &str = "https://ossrdbms-aad.database.windows.net/.default";

/// A bearer token and when it stops being valid.
#[derive(Clone, Debug)]
pub struct AccessToken {
    pub token: Secret,
    pub expires_at: SystemTime,
    /// When it was obtained, to place the refresh point relative to its lifetime.
    pub obtained_at: SystemTime,
}

impl AccessToken {
    pub fn new(token: Secret, expires_at: SystemTime) -> AccessToken {
        AccessToken {
            token,
            expires_at,
            obtained_at: SystemTime::now(),
        }
    }

    /// Time left before expiry (zero once expired).
    pub fn remaining(&self) -> Duration {
        self.expires_at
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO)
    }

    /// Whether the token should be replaced now: within five minutes of expiry, or past half of its lifetime
    /// for short-lived tokens, so a login never starts with a token about to lapse.
    pub fn needs_refresh(&self) -> bool {
        let lifetime = self
            .expires_at
            .duration_since(self.obtained_at)
            .unwrap_or(Duration::ZERO);
        let margin = (lifetime / 2).min(Duration::from_secs(300));
        self.remaining() <= margin
    }

    /// Whether it may still be presented (a small safety margin for clock skew and the login round trip).
    pub fn usable(&self) -> bool {
        self.remaining() > Duration::from_secs(2)
    }
}

pub(crate) fn epoch_seconds(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds)
}

/// What went wrong; decides whether to retry and how the HTTP layer answers on-behalf-of failures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityErrorKind {
    /// A setting is missing or wrong; retrying cannot help.
    Config,
    /// The token service could not be reached or failed (network, 5xx, 429); retried with backoff.
    Unavailable,
    /// The token service refused the credential (4xx).
    Rejected,
    /// The user must sign in again or consent (`interaction_required`, `consent_required`, AADSTS65001/50076).
    /// `claims` is the challenge Entra asked to pass back to the client, when it sent one.
    InteractionRequired { claims: Option<String> },
    /// An app-only token arrived where a user's token is needed (on-behalf-of).
    AppOnly,
}

/// A credential failure, worded for the person running pgmcp. Never holds a token or secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityError {
    pub kind: IdentityErrorKind,
    pub message: String,
}

impl IdentityError {
    pub fn new(kind: IdentityErrorKind, message: impl Into<String>) -> IdentityError {
        IdentityError {
            kind,
            message: message.into(),
        }
    }

    pub fn config(message: impl Into<String>) -> IdentityError {
        IdentityError::new(IdentityErrorKind::Config, message)
    }

    pub fn unavailable(message: impl Into<String>) -> IdentityError {
        IdentityError::new(IdentityErrorKind::Unavailable, message)
    }

    pub fn rejected(message: impl Into<String>) -> IdentityError {
        IdentityError::new(IdentityErrorKind::Rejected, message)
    }

    pub fn is_transient(&self) -> bool {
        self.kind == IdentityErrorKind::Unavailable
    }

    /// The same error with what was being done in front.
    pub fn context(self, what: &str) -> IdentityError {
        IdentityError {
            kind: self.kind,
            message: format!("{what}: {}", self.message),
        }
    }
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for IdentityError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_point_follows_lifetime() {
        let now = SystemTime::now();
        let long = AccessToken {
            token: Secret::new("t"),
            expires_at: now + Duration::from_secs(3600),
            obtained_at: now,
        };
        assert!(!long.needs_refresh());
        let short = AccessToken {
            token: Secret::new("t"),
            expires_at: now + Duration::from_secs(4),
            obtained_at: now - Duration::from_secs(6),
        };
        assert!(short.needs_refresh());
        assert!(short.usable());
        let expired = AccessToken {
            token: Secret::new("t"),
            expires_at: now - Duration::from_secs(1),
            obtained_at: now - Duration::from_secs(60),
        };
        assert!(!expired.usable());
    }
}

/// The identity behind the last token used, kept for `pgmcp check` (only the claims, never the token).
#[derive(Default)]
pub struct TokenClaimsHolder(std::sync::Mutex<Option<super::claims::TokenClaims>>);

impl TokenClaimsHolder {
    pub fn set(&self, token: &Secret) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = super::claims::TokenClaims::read(token.expose());
        }
    }

    pub fn get(&self) -> Option<super::claims::TokenClaims> {
        self.0.lock().ok().and_then(|slot| slot.clone())
    }
}
