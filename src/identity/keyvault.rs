//! A database password kept as an Azure Key Vault secret. Key Vault names the token it wants in a challenge:
//! an unauthenticated request is answered 401 with `WWW-Authenticate: Bearer authorization="…",
//! resource="…"` (or `scope="…"`); pgmcp gets a token for that scope and reads the secret
//! (`GET {vault}/secrets/{name}?api-version=7.4`). The value is cached and read again when the database
//! refuses it, so a rotated secret is picked up without a restart.

use std::sync::Arc;

use reqwest::{StatusCode, Url};

use super::cache::TokenCache;
use super::credential::TokenCredential;
use super::http::{Reply, RetryPolicy, checked_endpoint, is_loopback_url, send};
use super::token::{IdentityError, TokenClaimsHolder};
use crate::config::Secret;

const API_VERSION: &str = "7.4";

pub struct KeyVaultSecret {
    client: reqwest::Client,
    secret_url: Url,
    vault_host: String,
    vault_is_loopback: bool,
    name: String,
    credential: Arc<dyn TokenCredential>,
    /// The token cache for the scope the vault asked for, once known.
    tokens: tokio::sync::Mutex<Option<Arc<TokenCache>>>,
    value: tokio::sync::Mutex<Option<Secret>>,
    retry: RetryPolicy,
    pub(crate) last_identity: TokenClaimsHolder,
}

impl KeyVaultSecret {
    pub fn new(
        client: reqwest::Client,
        vault_url: &str,
        name: &str,
        credential: Arc<dyn TokenCredential>,
    ) -> Result<KeyVaultSecret, IdentityError> {
        let vault = checked_endpoint(vault_url, "key_vault_url")?;
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(IdentityError::config(format!(
                "key_vault_secret = {name:?} is not a Key Vault secret name (letters, digits and -)"
            )));
        }
        let mut secret_url = vault.clone();
        secret_url.set_path(&format!("/secrets/{name}"));
        secret_url.set_query(Some(&format!("api-version={API_VERSION}")));
        Ok(KeyVaultSecret {
            client,
            vault_host: vault.host_str().unwrap_or_default().to_ascii_lowercase(),
            vault_is_loopback: is_loopback_url(&vault),
            secret_url,
            name: name.to_string(),
            credential,
            tokens: tokio::sync::Mutex::new(None),
            value: tokio::sync::Mutex::new(None),
            retry: RetryPolicy::default(),
            last_identity: TokenClaimsHolder::default(),
        })
    }

    pub fn describe(&self) -> String {
        format!(
            "Key Vault secret {} in {} (read with {})",
            self.name,
            self.vault_host,
            self.credential.describe()
        )
    }

    /// The secret's current value: cached, or read from the vault.
    pub async fn value(&self) -> Result<Secret, IdentityError> {
        let mut value = self.value.lock().await;
        if let Some(secret) = value.as_ref() {
            return Ok(secret.clone());
        }
        let secret = self.read().await?;
        *value = Some(secret.clone());
        Ok(secret)
    }

    /// Drops the cached value (the database refused it): the next login reads the vault again.
    pub async fn invalidate(&self) {
        *self.value.lock().await = None;
    }

    async fn read(&self) -> Result<Secret, IdentityError> {
        let what = "Key Vault";
        for _ in 0..2 {
            let tokens = self.tokens.lock().await.clone();
            let reply = match &tokens {
                Some(cache) => {
                    let token = cache.token().await?;
                    self.last_identity.set(&token.token);
                    let bearer = Secret::new(format!("Bearer {}", token.token.expose()));
                    let build = || {
                        self.client
                            .get(self.secret_url.clone())
                            .header(reqwest::header::AUTHORIZATION, bearer.expose())
                    };
                    send(&build, self.retry, what).await?
                }
                None => {
                    let build = || self.client.get(self.secret_url.clone());
                    send(&build, self.retry, what).await?
                }
            };
            match reply.status {
                StatusCode::OK => return self.parse_secret(&reply),
                StatusCode::UNAUTHORIZED => {
                    // First contact, or the token expired or is for the wrong resource: learn the scope again.
                    if let Some(cache) = &tokens {
                        cache.invalidate().await;
                    }
                    let scope = self.challenge_scope(&reply)?;
                    *self.tokens.lock().await =
                        Some(Arc::new(TokenCache::new(self.credential.clone(), scope)));
                }
                StatusCode::FORBIDDEN => {
                    return Err(IdentityError::rejected(format!(
                        "Key Vault refused to read secret {} (HTTP 403): grant the identity `get` on secrets \
                         (role \"Key Vault Secrets User\" or an access policy)",
                        self.name
                    )));
                }
                StatusCode::NOT_FOUND => {
                    return Err(IdentityError::config(format!(
                        "Key Vault has no secret named {} in {} (HTTP 404)",
                        self.name, self.vault_host
                    )));
                }
                status => {
                    return Err(IdentityError::rejected(format!(
                        "Key Vault answered HTTP {status} for secret {}",
                        self.name
                    )));
                }
            }
        }
        Err(IdentityError::rejected(format!(
            "Key Vault kept answering 401 for secret {} even with a fresh token",
            self.name
        )))
    }

    fn parse_secret(&self, reply: &Reply) -> Result<Secret, IdentityError> {
        let json: serde_json::Value = serde_json::from_slice(&reply.body).map_err(|_| {
            IdentityError::rejected("Key Vault answered with something that is not JSON")
        })?;
        let value = json.get("value").and_then(|v| v.as_str()).ok_or_else(|| {
            IdentityError::rejected(format!("Key Vault's answer for {} has no value", self.name))
        })?;
        if let Some(id) = json.get("id").and_then(|v| v.as_str()) {
            tracing::debug!(secret = %id, "read the database password from Key Vault");
        }
        Ok(Secret::new(value.trim_end_matches(['\r', '\n'])))
    }

    /// The scope from the 401 challenge. The resource must belong to the vault's own domain (as the Azure SDKs
    /// check), so a wrong vault URL cannot make pgmcp hand out a token for another service.
    fn challenge_scope(&self, reply: &Reply) -> Result<String, IdentityError> {
        let header = reply.www_authenticate.as_deref().ok_or_else(|| {
            IdentityError::rejected("Key Vault answered 401 without a WWW-Authenticate challenge")
        })?;
        let scope = challenge_parameter(header, "scope")
            .or_else(|| {
                challenge_parameter(header, "resource")
                    .map(|r| format!("{}/.default", r.trim_end_matches('/')))
            })
            .ok_or_else(|| {
                IdentityError::rejected("Key Vault's challenge names no resource or scope")
            })?;
        let resource_host = Url::parse(&scope)
            .ok()
            .and_then(|url| url.host_str().map(str::to_ascii_lowercase))
            .unwrap_or_default();
        // A loopback vault is a local stand-in (tests), which names the real Key Vault resource.
        if !self.vault_is_loopback && !resource_in_vault_domain(&self.vault_host, &resource_host) {
            return Err(IdentityError::rejected(format!(
                "Key Vault's challenge asks for a token for {resource_host:?}, which is not the vault's domain ({})",
                self.vault_host
            )));
        }
        Ok(scope)
    }
}

/// Whether a challenge's resource host is the vault's own domain: the vault host itself or a parent domain of it,
/// on a label boundary (`myvault.vault.azure.net` belongs to `vault.azure.net`; `evilvault.azure.net` does not),
/// as the Azure SDKs check. A single-label resource (`net`) is no service's domain.
fn resource_in_vault_domain(vault_host: &str, resource_host: &str) -> bool {
    let vault_host = vault_host.to_ascii_lowercase();
    let resource_host = resource_host.to_ascii_lowercase();
    resource_host.contains('.')
        && !resource_host.starts_with('.')
        && (vault_host == resource_host
            || vault_host
                .strip_suffix(&resource_host)
                .is_some_and(|label| label.ends_with('.')))
}

/// `name="value"` from a `Bearer a="…", b="…"` challenge.
fn challenge_parameter(header: &str, name: &str) -> Option<String> {
    let body = header.trim().strip_prefix("Bearer").unwrap_or(header);
    body.split(',').find_map(|part| {
        let (key, value) = part.trim().split_once('=')?;
        (key.trim().eq_ignore_ascii_case(name)).then(|| value.trim().trim_matches('"').to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_challenge_parameters() {
        let header = r#"Bearer authorization="https://login.microsoftonline.com/t", resource="https://vault.azure.net""#;
        assert_eq!(
            challenge_parameter(header, "resource").as_deref(),
            Some("https://vault.azure.net")
        );
        assert_eq!(challenge_parameter(header, "scope"), None);
    }

    #[test]
    fn challenge_resource_must_be_the_vaults_domain_on_a_label_boundary() {
        for (vault, resource) in [
            ("myvault.vault.azure.net", "vault.azure.net"),
            ("MyVault.Vault.Azure.Net", "vault.azure.net"),
            ("myvault.vault.azure.cn", "vault.azure.cn"),
            ("myvault.vault.usgovcloudapi.net", "vault.usgovcloudapi.net"),
            ("myhsm.managedhsm.azure.net", "managedhsm.azure.net"),
            ("vault.azure.net", "vault.azure.net"),
        ] {
            assert!(
                resource_in_vault_domain(vault, resource),
                "{vault} {resource}"
            );
        }
        for (vault, resource) in [
            ("evilvault.azure.net", "vault.azure.net"),
            ("myvault.evilvault.azure.net", "vault.azure.net"),
            ("myvault.vault.azure.net.evil.example", "vault.azure.net"),
            ("myvault.vault.azure.net", "management.azure.com"),
            ("myvault.vault.azure.net", "database.windows.net"),
            ("myvault.vault.azure.net", "evil.vault.azure.net"),
            ("myvault.vault.azure.net", "net"),
            ("myvault.vault.azure.net", ".vault.azure.net"),
            ("myvault.vault.azure.net", ""),
        ] {
            assert!(
                !resource_in_vault_domain(vault, resource),
                "{vault} {resource}"
            );
        }
    }

    struct NoTokens;

    impl TokenCredential for NoTokens {
        fn describe(&self) -> String {
            "none".into()
        }

        fn get_token<'a>(
            &'a self,
            _scope: &'a str,
        ) -> futures_util::future::BoxFuture<
            'a,
            Result<super::super::token::AccessToken, IdentityError>,
        > {
            Box::pin(async { Err(IdentityError::config("no tokens in this test")) })
        }
    }

    /// The scope pgmcp would ask Entra for after `vault_url` answered 401 with this challenge resource.
    fn scope_after_challenge(vault_url: &str, resource: &str) -> Result<String, String> {
        let vault = KeyVaultSecret::new(
            super::super::http::http_client().unwrap(),
            vault_url,
            "db-password",
            Arc::new(NoTokens),
        )
        .unwrap();
        let reply = Reply {
            status: StatusCode::UNAUTHORIZED,
            www_authenticate: Some(format!(
                r#"Bearer authorization="https://login.microsoftonline.com/t", resource="{resource}""#
            )),
            body: Vec::new(),
        };
        vault.challenge_scope(&reply).map_err(|e| e.to_string())
    }

    #[test]
    fn a_vault_url_outside_the_resource_domain_gets_no_token() {
        assert_eq!(
            scope_after_challenge(
                "https://contoso-db.vault.azure.net",
                "https://vault.azure.net"
            ),
            Ok("https://vault.azure.net/.default".to_string())
        );
        let refused =
            scope_after_challenge("https://evilvault.azure.net", "https://vault.azure.net")
                .unwrap_err();
        assert!(refused.contains("not the vault's domain"), "{refused}");
        let refused = scope_after_challenge(
            "https://contoso-db.vault.azure.net",
            "https://management.azure.com",
        )
        .unwrap_err();
        assert!(refused.contains("not the vault's domain"), "{refused}");
    }
}
