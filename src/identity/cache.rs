//! One token per credential and scope, reused until it nears expiry, fetched by one caller at a time.

use std::sync::Arc;

use super::credential::TokenCredential;
use super::token::{AccessToken, IdentityError};

pub struct TokenCache {
    credential: Arc<dyn TokenCredential>,
    scope: String,
    current: tokio::sync::Mutex<Option<AccessToken>>,
}

impl TokenCache {
    pub fn new(credential: Arc<dyn TokenCredential>, scope: impl Into<String>) -> TokenCache {
        TokenCache {
            credential,
            scope: scope.into(),
            current: tokio::sync::Mutex::new(None),
        }
    }

    pub fn credential(&self) -> &Arc<dyn TokenCredential> {
        &self.credential
    }

    /// A token that is still valid: the cached one until its refresh point, else a new one. Concurrent callers
    /// wait for one fetch instead of each asking the token service. When the refresh fails while the old token
    /// is still usable, the old token is returned (and the next caller tries again).
    pub async fn token(&self) -> Result<AccessToken, IdentityError> {
        let mut current = self.current.lock().await;
        if let Some(token) = current.as_ref()
            && !token.needs_refresh()
        {
            return Ok(token.clone());
        }
        match self.credential.get_token(&self.scope).await {
            Ok(token) => {
                tracing::debug!(
                    credential = %self.credential.describe(),
                    valid_for_s = token.remaining().as_secs(),
                    "obtained a new access token"
                );
                *current = Some(token.clone());
                Ok(token)
            }
            Err(error) => match current.as_ref() {
                Some(token) if token.usable() => {
                    tracing::warn!(
                        credential = %self.credential.describe(),
                        %error,
                        valid_for_s = token.remaining().as_secs(),
                        "could not refresh the access token; using the current one while it lasts"
                    );
                    Ok(token.clone())
                }
                _ => Err(error),
            },
        }
    }

    /// Forgets the cached token (the server refused it), so the next call fetches a new one.
    pub async fn invalidate(&self) {
        *self.current.lock().await = None;
    }
}
