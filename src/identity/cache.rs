//! One token per credential and scope, reused until it nears expiry. Near expiry it is refreshed in the background
//! while logins go on with the cached token, so a slow or failing token service never holds up a login that has a
//! valid token to present. A failing service is asked again with backoff, not by every new connection; once no
//! valid token is left, callers wait for one fetch at a time, and during a backoff get the last failure at once.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::credential::TokenCredential;
use super::token::{AccessToken, IdentityError};
use crate::config::Secret;

/// The first pause after a failed refresh; it doubles with each failure in a row.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest pause while the cached token is still valid: nobody waits for the refresh then.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// The longest pause once no valid token is left: logins fail until the service answers, so it is asked often.
const MAX_BACKOFF_WITHOUT_TOKEN: Duration = Duration::from_secs(5);

/// How the token's refreshes are going, for `/readyz`, `/metrics` and the logs. Never holds a token.
#[derive(Debug, Clone, Default)]
pub struct RefreshHealth {
    /// Tokens obtained.
    pub refreshes: u64,
    /// Failed attempts (each after the credential's own retries).
    pub failures: u64,
    /// Failed attempts since the last success.
    pub consecutive_failures: u32,
    /// Why the last attempt failed, while failures continue.
    pub last_error: Option<IdentityError>,
    /// When the cached token expires, if there is one.
    pub expires_at: Option<SystemTime>,
    /// No new attempt before this.
    retry_at: Option<Instant>,
}

impl RefreshHealth {
    /// How long the cached token stays valid (zero when none is cached or it expired).
    pub fn valid_for(&self) -> Duration {
        self.expires_at
            .and_then(|at| at.duration_since(SystemTime::now()).ok())
            .unwrap_or(Duration::ZERO)
    }

    fn backoff(failures: u32, token_left: bool) -> Duration {
        let most = if token_left {
            MAX_BACKOFF
        } else {
            MAX_BACKOFF_WITHOUT_TOKEN
        };
        FIRST_BACKOFF
            .saturating_mul(1 << failures.saturating_sub(1).min(10))
            .min(most)
    }

    /// The last failure, while its backoff lasts.
    fn backing_off(&self) -> Option<(Instant, IdentityError)> {
        match (self.retry_at, &self.last_error) {
            (Some(at), Some(error)) if at > Instant::now() => Some((at, error.clone())),
            _ => None,
        }
    }
}

struct Shared {
    credential: Arc<dyn TokenCredential>,
    scope: String,
    current: Mutex<Option<AccessToken>>,
    /// Held by whoever is fetching, so there is one fetch at a time.
    fetching: Arc<tokio::sync::Mutex<()>>,
    health: Mutex<RefreshHealth>,
}

pub struct TokenCache {
    shared: Arc<Shared>,
}

/// Plain data under the locks: a panic elsewhere cannot leave it half-written.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl TokenCache {
    pub fn new(credential: Arc<dyn TokenCredential>, scope: impl Into<String>) -> TokenCache {
        TokenCache {
            shared: Arc::new(Shared {
                credential,
                scope: scope.into(),
                current: Mutex::new(None),
                fetching: Arc::new(tokio::sync::Mutex::new(())),
                health: Mutex::new(RefreshHealth::default()),
            }),
        }
    }

    pub fn credential(&self) -> &Arc<dyn TokenCredential> {
        &self.shared.credential
    }

    pub fn health(&self) -> RefreshHealth {
        lock(&self.shared.health).clone()
    }

    /// A token that is still valid. Near its expiry the cached one is still handed out while a refresh runs in the
    /// background; only when no valid token is left do callers wait, for one fetch at a time.
    pub async fn token(&self) -> Result<AccessToken, IdentityError> {
        if let Some(token) = self.shared.usable() {
            if token.needs_refresh() && lock(&self.shared.health).backing_off().is_none() {
                // Whoever gets the fetch lock refreshes; if a fetch is already running, it will do.
                if let Ok(fetching) = self.shared.fetching.clone().try_lock_owned() {
                    let shared = self.shared.clone();
                    tokio::spawn(async move {
                        let _fetching = fetching;
                        let _ = shared.fetch().await;
                    });
                }
            }
            return Ok(token);
        }
        if let Some((retry_at, error)) = lock(&self.shared.health).backing_off() {
            return Err(error.context(&format!(
                "the last attempt failed; the next one is in {} ms",
                retry_at
                    .saturating_duration_since(Instant::now())
                    .as_millis()
            )));
        }
        let _fetching = self.shared.fetching.lock().await;
        // Someone else may have fetched while this caller waited.
        if let Some(token) = self.shared.usable() {
            return Ok(token);
        }
        self.shared.fetch().await
    }

    /// Forgets the cached token (the server refused it), so the next call fetches a new one.
    pub async fn invalidate(&self) {
        *lock(&self.shared.current) = None;
        self.shared.forgotten();
    }

    /// Forgets the cached token if it is `refused`: a login refused with a token already replaced by a newer
    /// one says nothing about the newer one.
    pub async fn invalidate_if_current(&self, refused: &Secret) {
        let mut current = lock(&self.shared.current);
        if current
            .as_ref()
            .is_some_and(|token| token.token.expose() == refused.expose())
        {
            *current = None;
            drop(current);
            self.shared.forgotten();
        }
    }
}

impl Shared {
    fn usable(&self) -> Option<AccessToken> {
        lock(&self.current)
            .as_ref()
            .filter(|token| token.usable())
            .cloned()
    }

    fn forgotten(&self) {
        let mut health = lock(&self.health);
        health.expires_at = None;
        // A refused token is not the token service's failure: the next login may ask at once.
        health.retry_at = None;
    }

    /// Asks the token service once (the credential retries transient failures itself) and records the outcome.
    async fn fetch(&self) -> Result<AccessToken, IdentityError> {
        let outcome = self.credential.get_token(&self.scope).await;
        let usable = self.usable();
        match outcome {
            Ok(token) => {
                let failed_before = {
                    let mut health = lock(&self.health);
                    let failed_before = health.consecutive_failures;
                    health.refreshes += 1;
                    health.consecutive_failures = 0;
                    health.last_error = None;
                    health.retry_at = None;
                    health.expires_at = Some(token.expires_at);
                    failed_before
                };
                if failed_before > 0 {
                    tracing::info!(
                        credential = %self.credential.describe(),
                        failed_attempts = failed_before,
                        valid_for_s = token.remaining().as_secs(),
                        "obtained a new access token after failed attempts"
                    );
                } else {
                    tracing::debug!(
                        credential = %self.credential.describe(),
                        valid_for_s = token.remaining().as_secs(),
                        "obtained a new access token"
                    );
                }
                *lock(&self.current) = Some(token.clone());
                Ok(token)
            }
            Err(error) => {
                let pause = {
                    let mut health = lock(&self.health);
                    health.failures += 1;
                    health.consecutive_failures += 1;
                    health.last_error = Some(error.clone());
                    let pause =
                        RefreshHealth::backoff(health.consecutive_failures, usable.is_some());
                    health.retry_at = Some(Instant::now() + pause);
                    pause
                };
                match &usable {
                    Some(token) => tracing::warn!(
                        credential = %self.credential.describe(),
                        %error,
                        valid_for_s = token.remaining().as_secs(),
                        retry_in_ms = pause.as_millis() as u64,
                        "could not refresh the access token; using the current one while it lasts"
                    ),
                    None => tracing::warn!(
                        credential = %self.credential.describe(),
                        %error,
                        retry_in_ms = pause.as_millis() as u64,
                        "could not obtain an access token"
                    ),
                }
                Err(error)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_a_second_up_to_a_minute_while_a_token_is_left() {
        let pauses: Vec<u64> = (1..=9)
            .map(|n| RefreshHealth::backoff(n, true).as_secs())
            .collect();
        assert_eq!(pauses, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(RefreshHealth::backoff(u32::MAX, true), MAX_BACKOFF);
        let without: Vec<u64> = (1..=5)
            .map(|n| RefreshHealth::backoff(n, false).as_secs())
            .collect();
        assert_eq!(
            without,
            [1, 2, 4, 5, 5],
            "logins wait for the service: it is asked often"
        );
    }
}
