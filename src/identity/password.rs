//! The password a new database session logs in with, when it is not a fixed one: a fresh Entra token or the
//! Key Vault secret. `db::connect` asks for it on every connection attempt and reports refusals back.

use std::sync::Arc;

use super::cache::TokenCache;
use super::chain::build_credential;
use super::claims::TokenClaims;
use super::hosts::check_token_hosts;
use super::http::http_client;
use super::keyvault::KeyVaultSecret;
use super::settings::DbAuth;
use super::token::{IdentityError, POSTGRES_SCOPE, TokenClaimsHolder};
use crate::config::{Profile, Secret};

enum Login {
    Entra(Arc<TokenCache>),
    KeyVault(Arc<KeyVaultSecret>),
}

/// Per-connection credentials of a profile whose `db_auth` is `entra` or `key_vault`.
pub struct DbCredentials {
    login: Login,
    last_identity: TokenClaimsHolder,
}

impl std::fmt::Debug for DbCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbCredentials")
            .field("source", &self.source())
            .finish_non_exhaustive()
    }
}

impl DbCredentials {
    /// The credentials the profile asks for; `None` for `db_auth = "password"` (the connection's own password).
    /// `env` supplies the standard Azure variables.
    pub fn for_profile(
        profile: &Profile,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<DbCredentials>, IdentityError> {
        let settings = &profile.identity;
        let login = match settings.db_auth {
            DbAuth::Password => return Ok(None),
            DbAuth::Entra => {
                check_token_hosts(&profile.conn, &settings.token_host_allow)
                    .map_err(IdentityError::config)?;
                let client = http_client()?;
                let credential = build_credential(settings, env, &client)?;
                Login::Entra(Arc::new(TokenCache::new(credential, POSTGRES_SCOPE)))
            }
            DbAuth::KeyVault => {
                let (Some(url), Some(name)) = (&settings.key_vault_url, &settings.key_vault_secret)
                else {
                    return Err(IdentityError::config(
                        "db_auth = key_vault needs --key-vault-url and --key-vault-secret",
                    ));
                };
                let client = http_client()?;
                let credential = build_credential(settings, env, &client)?;
                Login::KeyVault(Arc::new(KeyVaultSecret::new(
                    client, url, name, credential,
                )?))
            }
        };
        Ok(Some(DbCredentials {
            login,
            last_identity: TokenClaimsHolder::default(),
        }))
    }

    /// The password for the next login attempt.
    pub async fn password(&self) -> Result<Secret, IdentityError> {
        match &self.login {
            Login::Entra(cache) => {
                let token = cache
                    .token()
                    .await
                    .map_err(|error| error.context("cannot get an Entra token for PostgreSQL"))?;
                self.last_identity.set(&token.token);
                Ok(token.token)
            }
            Login::KeyVault(secret) => secret
                .value()
                .await
                .map_err(|error| error.context("cannot read the database password from Key Vault")),
        }
    }

    /// The server refused `presented` (SQLSTATE 28P01 / 28000): forget it so the next attempt gets a new one
    /// (unless a newer one replaced it meanwhile).
    pub async fn refused(&self, presented: &Secret) {
        match &self.login {
            Login::Entra(cache) => cache.invalidate_if_current(presented).await,
            Login::KeyVault(secret) => secret.invalidate().await,
        }
    }

    /// Where the password comes from, for `pgmcp check` and logs.
    pub fn source(&self) -> String {
        match &self.login {
            Login::Entra(cache) => format!("Entra token from {}", cache.credential().describe()),
            Login::KeyVault(secret) => secret.describe(),
        }
    }

    /// How refreshing the Entra token goes (Key Vault secrets are read again only when a login is refused).
    pub fn refresh_health(&self) -> Option<super::cache::RefreshHealth> {
        match &self.login {
            Login::Entra(cache) => Some(cache.health()),
            Login::KeyVault(_) => None,
        }
    }

    pub fn is_entra(&self) -> bool {
        matches!(self.login, Login::Entra(_))
    }

    /// The identity behind the last token used (the database token, or the one that read Key Vault).
    pub fn identity(&self) -> Option<TokenClaims> {
        match &self.login {
            Login::Entra(_) => self.last_identity.get(),
            Login::KeyVault(secret) => secret.identity(),
        }
    }
}
