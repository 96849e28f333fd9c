//! Azure Key Vault secrets, read over Key Vault's REST API (api-version 7.4). Key Vault names the token it wants in
//! a challenge: an unauthenticated request is answered 401 with `WWW-Authenticate: Bearer authorization="…",
//! resource="…"` (or `scope="…"`); pgmcp gets a token for that scope and reads the secret
//! (`GET {vault}/secrets/{name}[/{version}]`) or lists its versions (`GET {vault}/secrets/{name}/versions`).
//!
//! Two users: a database password ([`KeyVaultSecret`], cached and read again when the database refuses it, so a
//! rotated secret is picked up without a restart), and PEM files of the authorization server (its signing key
//! and its upstream certificate), which follow the secret's versions ([`KeyVault::secret_versions`]). A Key Vault
//! certificate keeps its private key in the secret of the same name, so a certificate is read the same way.

use std::sync::Arc;

use reqwest::{StatusCode, Url};
use serde::Deserialize;

use super::cache::TokenCache;
use super::credential::TokenCredential;
use super::http::{Reply, RetryPolicy, checked_endpoint, is_loopback_url, send};
use super::token::{IdentityError, TokenClaimsHolder};
use crate::config::Secret;

const API_VERSION: &str = "7.4";
/// Pages of a version listing followed at most; with 25 versions a page, more than any rotation keeps.
const MAX_VERSION_PAGES: usize = 8;
const VERSIONS_PER_PAGE: &str = "25";

/// `https://<vault>/secrets/<name>[/<version>]`: a Key Vault secret identifier as the portal and
/// `az keyvault secret show --query id` print it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretReference {
    /// `https://<vault host>`
    pub vault: String,
    pub name: String,
    /// Pinned to one version; without it, the secret's versions are followed.
    pub version: Option<String>,
}

impl SecretReference {
    /// Whether `text` is meant as a Key Vault reference rather than a file name.
    pub fn looks_like_one(text: &str) -> bool {
        let lower = text.trim().to_ascii_lowercase();
        lower.starts_with("https://") || lower.starts_with("http://")
    }

    pub fn parse(text: &str, setting: &str) -> Result<SecretReference, IdentityError> {
        let url = checked_endpoint(text, setting)?;
        let problem = |why: &str| {
            IdentityError::config(format!(
                "{setting} = {text:?} {why}: give a Key Vault secret identifier, https://<vault>.vault.azure.net/secrets/<name> (or …/<name>/<version> to pin one version)"
            ))
        };
        if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
            return Err(problem("has a query, fragment or user name"));
        }
        let segments: Vec<&str> = url
            .path()
            .trim_matches('/')
            .split('/')
            .filter(|segment| !segment.is_empty())
            .collect();
        match segments.as_slice() {
            ["secrets", name] => Ok(SecretReference {
                vault: url.origin().ascii_serialization(),
                name: check_name(name, setting)?,
                version: None,
            }),
            ["secrets", name, version] => {
                if !version.chars().all(|c| c.is_ascii_alphanumeric()) || version.len() > 64 {
                    return Err(problem("has a version that is not a Key Vault version id"));
                }
                Ok(SecretReference {
                    vault: url.origin().ascii_serialization(),
                    name: check_name(name, setting)?,
                    version: Some(version.to_string()),
                })
            }
            ["keys", ..] => Err(IdentityError::config(format!(
                "{setting} = {text:?} names a Key Vault key, whose private half never leaves the vault; pgmcp needs the \
                 PEM itself (it also derives its sealing key from it): store it as a secret \
                 (`az keyvault secret set --file key.pem`) or use a Key Vault certificate with content type \
                 application/x-pem-file, and give …/secrets/<name>"
            ))),
            ["certificates", name, ..] => Err(IdentityError::config(format!(
                "{setting} = {text:?} names a Key Vault certificate's public part; its private key is in the secret of \
                 the same name: use {}/secrets/{name}",
                url.origin().ascii_serialization()
            ))),
            _ => Err(problem("is not a secret identifier")),
        }
    }
}

impl std::fmt::Display for SecretReference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/secrets/{}", self.vault, self.name)?;
        if let Some(version) = &self.version {
            write!(f, "/{version}")?;
        }
        Ok(())
    }
}

fn check_name(name: &str, setting: &str) -> Result<String, IdentityError> {
    if name.is_empty()
        || name.len() > 127
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(IdentityError::config(format!(
            "{setting}: {name:?} is not a Key Vault secret name (letters, digits and -)"
        )));
    }
    Ok(name.to_string())
}

/// One version of a secret, from its listing (no value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretVersion {
    pub version: String,
    pub enabled: bool,
    /// Seconds since the epoch.
    pub created: u64,
    pub not_before: Option<u64>,
    pub expires: Option<u64>,
}

impl SecretVersion {
    /// Enabled and inside its validity window at `now`.
    pub fn usable_at(&self, now: u64) -> bool {
        self.enabled && self.expires.is_none_or(|expires| expires > now)
    }
}

/// A secret's value and what Key Vault says it holds.
pub struct SecretValue {
    pub value: Secret,
    /// `contentType`: e.g. `application/x-pem-file` or `application/x-pkcs12` for a certificate's secret.
    pub content_type: Option<String>,
    pub version: String,
}

impl SecretValue {
    /// The value as PEM text. A Key Vault certificate stored as PKCS#12 (the portal's default) is refused with the
    /// fix, since pgmcp reads PEM only.
    pub fn pem(&self, what: &str) -> Result<&[u8], IdentityError> {
        let content_type = self.content_type.as_deref().unwrap_or_default();
        if content_type.to_ascii_lowercase().contains("pkcs12") {
            return Err(IdentityError::config(format!(
                "{what} is stored as PKCS#12 (content type {content_type}); pgmcp reads PEM: create the certificate \
                 with content type application/x-pem-file (policy secretProperties.contentType), or store the PEM \
                 as a secret (`az keyvault secret set --file key.pem`)"
            )));
        }
        let text = self.value.expose();
        if !text.contains("-----BEGIN ") {
            return Err(IdentityError::config(format!(
                "{what} holds no PEM (no -----BEGIN line)"
            )));
        }
        Ok(text.as_bytes())
    }
}

#[derive(Deserialize)]
struct Attributes {
    #[serde(default = "enabled_by_default")]
    enabled: bool,
    #[serde(default)]
    created: Option<u64>,
    #[serde(default)]
    nbf: Option<u64>,
    #[serde(default)]
    exp: Option<u64>,
}

fn enabled_by_default() -> bool {
    true
}

#[derive(Deserialize)]
struct ListedVersion {
    id: String,
    attributes: Option<Attributes>,
}

#[derive(Deserialize)]
struct VersionPage {
    #[serde(default)]
    value: Vec<ListedVersion>,
    #[serde(rename = "nextLink")]
    next_link: Option<String>,
}

/// One vault, read with one credential: the challenge flow and the token for the scope the vault names.
pub struct KeyVault {
    client: reqwest::Client,
    vault: Url,
    vault_host: String,
    vault_is_loopback: bool,
    credential: Arc<dyn TokenCredential>,
    /// The token cache for the scope the vault asked for, once known.
    tokens: tokio::sync::Mutex<Option<Arc<TokenCache>>>,
    retry: RetryPolicy,
    last_identity: TokenClaimsHolder,
}

impl KeyVault {
    pub fn new(
        client: reqwest::Client,
        vault_url: &str,
        credential: Arc<dyn TokenCredential>,
    ) -> Result<KeyVault, IdentityError> {
        let vault = checked_endpoint(vault_url, "key_vault_url")?;
        Ok(KeyVault {
            client,
            vault_host: vault.host_str().unwrap_or_default().to_ascii_lowercase(),
            vault_is_loopback: is_loopback_url(&vault),
            vault,
            credential,
            tokens: tokio::sync::Mutex::new(None),
            retry: RetryPolicy::default(),
            last_identity: TokenClaimsHolder::default(),
        })
    }

    pub fn host(&self) -> &str {
        &self.vault_host
    }

    pub fn credential(&self) -> &Arc<dyn TokenCredential> {
        &self.credential
    }

    /// The identity behind the last token sent to the vault.
    pub fn identity(&self) -> Option<super::claims::TokenClaims> {
        self.last_identity.get()
    }

    fn url(&self, path: &str, query: &[(&str, &str)]) -> Url {
        let mut url = self.vault.clone();
        url.set_path(path);
        url.set_query(None);
        {
            let mut pairs = url.query_pairs_mut();
            pairs.append_pair("api-version", API_VERSION);
            for (key, value) in query {
                pairs.append_pair(key, value);
            }
        }
        url
    }

    /// A GET at the vault, authenticated as the vault's challenge asks; `what` names the object in errors.
    async fn get(&self, url: &Url, what: &str) -> Result<Reply, IdentityError> {
        for _ in 0..2 {
            let tokens = self.tokens.lock().await.clone();
            let reply = match &tokens {
                Some(cache) => {
                    let token = cache.token().await?;
                    self.last_identity.set(&token.token);
                    let bearer = Secret::new(format!("Bearer {}", token.token.expose()));
                    let build = || {
                        self.client
                            .get(url.clone())
                            .header(reqwest::header::AUTHORIZATION, bearer.expose())
                    };
                    send(&build, self.retry, "Key Vault").await?
                }
                None => {
                    let build = || self.client.get(url.clone());
                    send(&build, self.retry, "Key Vault").await?
                }
            };
            match reply.status {
                StatusCode::OK => return Ok(reply),
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
                        "Key Vault refused to read {what} (HTTP 403): grant the identity `get` and `list` on secrets \
                         (role \"Key Vault Secrets User\" or an access policy); a disabled version cannot be read"
                    )));
                }
                StatusCode::NOT_FOUND => {
                    return Err(IdentityError::config(format!(
                        "Key Vault has no {what} in {} (HTTP 404)",
                        self.vault_host
                    )));
                }
                status => {
                    return Err(IdentityError::rejected(format!(
                        "Key Vault answered HTTP {status} for {what}"
                    )));
                }
            }
        }
        Err(IdentityError::rejected(format!(
            "Key Vault kept answering 401 for {what} even with a fresh token"
        )))
    }

    /// A secret's value: the current version, or the one named.
    pub async fn secret(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<SecretValue, IdentityError> {
        let path = match version {
            Some(version) => format!("/secrets/{name}/{version}"),
            None => format!("/secrets/{name}"),
        };
        let what = match version {
            Some(version) => format!("secret {name} version {version}"),
            None => format!("secret {name}"),
        };
        let reply = self.get(&self.url(&path, &[]), &what).await?;
        let json: serde_json::Value = serde_json::from_slice(&reply.body).map_err(|_| {
            IdentityError::rejected("Key Vault answered with something that is not JSON")
        })?;
        let value = json.get("value").and_then(|v| v.as_str()).ok_or_else(|| {
            IdentityError::rejected(format!("Key Vault's answer for {what} has no value"))
        })?;
        let id = json.get("id").and_then(|v| v.as_str()).unwrap_or_default();
        tracing::debug!(secret = %id, "read a secret from Key Vault");
        Ok(SecretValue {
            value: Secret::new(value.trim_end_matches(['\r', '\n'])),
            content_type: json
                .get("contentType")
                .and_then(|v| v.as_str())
                .map(str::to_string),
            version: id
                .rsplit('/')
                .next()
                .filter(|last| !last.is_empty() && *last != name)
                .or(version)
                .unwrap_or_default()
                .to_string(),
        })
    }

    /// The versions of a secret (no values), newest first by creation time. Follows `nextLink` only within this
    /// vault and for a bounded number of pages.
    pub async fn secret_versions(&self, name: &str) -> Result<Vec<SecretVersion>, IdentityError> {
        let what = format!("secret {name}");
        let mut url = self.url(
            &format!("/secrets/{name}/versions"),
            &[("maxresults", VERSIONS_PER_PAGE)],
        );
        let mut versions = Vec::new();
        for _ in 0..MAX_VERSION_PAGES {
            let reply = self.get(&url, &what).await?;
            let page: VersionPage = serde_json::from_slice(&reply.body).map_err(|_| {
                IdentityError::rejected(format!(
                    "Key Vault's version list of {what} is not what Key Vault sends"
                ))
            })?;
            for listed in page.value {
                let Some(version) = listed.id.rsplit('/').next().filter(|v| !v.is_empty()) else {
                    continue;
                };
                let attributes = listed.attributes.unwrap_or(Attributes {
                    enabled: true,
                    created: None,
                    nbf: None,
                    exp: None,
                });
                versions.push(SecretVersion {
                    version: version.to_string(),
                    enabled: attributes.enabled,
                    created: attributes.created.unwrap_or(0),
                    not_before: attributes.nbf,
                    expires: attributes.exp,
                });
            }
            let Some(next) = page.next_link.filter(|link| !link.is_empty()) else {
                break;
            };
            // The link carries Key Vault's continuation token; it must stay on this vault.
            let next = Url::parse(&next).map_err(|_| {
                IdentityError::rejected("Key Vault's nextLink is not a URL".to_string())
            })?;
            if next.origin() != self.vault.origin() {
                return Err(IdentityError::rejected(format!(
                    "Key Vault's nextLink for {what} points outside the vault"
                )));
            }
            url = next;
        }
        versions.sort_by(|a, b| {
            b.created
                .cmp(&a.created)
                .then_with(|| b.version.cmp(&a.version))
        });
        Ok(versions)
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

/// A database password kept as a Key Vault secret: the current version, cached until the database refuses it.
pub struct KeyVaultSecret {
    vault: KeyVault,
    name: String,
    value: tokio::sync::Mutex<Option<Secret>>,
}

impl KeyVaultSecret {
    pub fn new(
        client: reqwest::Client,
        vault_url: &str,
        name: &str,
        credential: Arc<dyn TokenCredential>,
    ) -> Result<KeyVaultSecret, IdentityError> {
        let vault = KeyVault::new(client, vault_url, credential)?;
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(IdentityError::config(format!(
                "key_vault_secret = {name:?} is not a Key Vault secret name (letters, digits and -)"
            )));
        }
        Ok(KeyVaultSecret {
            vault,
            name: name.to_string(),
            value: tokio::sync::Mutex::new(None),
        })
    }

    pub fn describe(&self) -> String {
        format!(
            "Key Vault secret {} in {} (read with {})",
            self.name,
            self.vault.host(),
            self.vault.credential().describe()
        )
    }

    /// The identity behind the last token that read the vault.
    pub fn identity(&self) -> Option<super::claims::TokenClaims> {
        self.vault.identity()
    }

    /// The secret's current value: cached, or read from the vault.
    pub async fn value(&self) -> Result<Secret, IdentityError> {
        let mut value = self.value.lock().await;
        if let Some(secret) = value.as_ref() {
            return Ok(secret.clone());
        }
        let secret = self.vault.secret(&self.name, None).await?.value;
        *value = Some(secret.clone());
        Ok(secret)
    }

    /// Drops the cached value (the database refused it): the next login reads the vault again.
    pub async fn invalidate(&self) {
        *self.value.lock().await = None;
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
        let vault = KeyVault::new(
            super::super::http::http_client().unwrap(),
            vault_url,
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

    #[test]
    fn secret_references_are_secret_identifiers() {
        let setting = "--oauth-signing-key";
        let reference = SecretReference::parse(
            "https://contoso.vault.azure.net/secrets/pgmcp-signing",
            setting,
        )
        .unwrap();
        assert_eq!(reference.vault, "https://contoso.vault.azure.net");
        assert_eq!(reference.name, "pgmcp-signing");
        assert_eq!(reference.version, None);
        let pinned = SecretReference::parse(
            "https://contoso.vault.azure.net/secrets/pgmcp-signing/0f1e2d3c4b5a69788796a5b4c3d2e1f0/",
            setting,
        )
        .unwrap();
        assert_eq!(
            pinned.version.as_deref(),
            Some("0f1e2d3c4b5a69788796a5b4c3d2e1f0")
        );
        assert_eq!(
            pinned.to_string(),
            "https://contoso.vault.azure.net/secrets/pgmcp-signing/0f1e2d3c4b5a69788796a5b4c3d2e1f0"
        );
        for (text, expected) in [
            ("http://contoso.vault.azure.net/secrets/a", "https://"),
            (
                "https://contoso.vault.azure.net/keys/a",
                "never leaves the vault",
            ),
            (
                "https://contoso.vault.azure.net/certificates/a",
                "https://contoso.vault.azure.net/secrets/a",
            ),
            (
                "https://contoso.vault.azure.net/secrets/a_b",
                "not a Key Vault secret name",
            ),
            ("https://contoso.vault.azure.net/secrets/a?x=1", "query"),
            (
                "https://contoso.vault.azure.net/",
                "not a secret identifier",
            ),
            (
                "https://contoso.vault.azure.net/secrets/a/b/c",
                "not a secret identifier",
            ),
            ("https://contoso.vault.azure.net/secrets/a/v-1", "version"),
        ] {
            let error = SecretReference::parse(text, setting)
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{text}: {error}");
        }
        assert!(SecretReference::looks_like_one("https://x/secrets/y"));
        assert!(!SecretReference::looks_like_one("/etc/pgmcp/key.pem"));
    }

    #[test]
    fn usable_versions_are_enabled_and_unexpired() {
        let version = |enabled, expires| SecretVersion {
            version: "v".into(),
            enabled,
            created: 10,
            not_before: None,
            expires,
        };
        assert!(version(true, None).usable_at(100));
        assert!(version(true, Some(101)).usable_at(100));
        assert!(!version(true, Some(100)).usable_at(100));
        assert!(!version(false, None).usable_at(100));
    }
}
