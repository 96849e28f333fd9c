//! The Entra token endpoint (`{authority}/{tenant}/oauth2/v2.0/token`) for a confidential client: the
//! client-credentials grant (service principal, workload identity) and the on-behalf-of grant. The client
//! proves itself with a secret, a certificate-signed assertion, a federated token file, or a managed identity
//! token used as a federated credential.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use futures_util::future::BoxFuture;
use reqwest::Url;

use super::cache::TokenCache;
use super::certificate::{ClientCertificate, VaultCertificate};
use super::credential::TokenCredential;
use super::http::{RetryPolicy, checked_endpoint, entra_error, form, parse_token, send};
use super::token::{AccessToken, IdentityError};
use crate::config::Secret;

pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The audience of tokens a managed identity presents as a federated credential.
pub const TOKEN_EXCHANGE_SCOPE: &str = "api://AzureADTokenExchange/.default";

/// How the confidential client proves who it is.
pub enum ClientProof {
    Secret(Secret),
    Certificate(ClientCertificate),
    /// A certificate kept in Key Vault, followed as it is renewed.
    VaultCertificate(Arc<VaultCertificate>),
    /// A federated token file (Kubernetes workload identity); re-read on every exchange because it rotates.
    FederatedTokenFile(PathBuf),
    /// A managed identity's token for `api://AzureADTokenExchange`, trusted by the app registration.
    ManagedIdentity(Arc<TokenCache>),
}

impl ClientProof {
    fn describe(&self) -> &'static str {
        match self {
            ClientProof::Secret(_) => "client secret",
            ClientProof::Certificate(_) => "client certificate",
            ClientProof::VaultCertificate(_) => "client certificate from Key Vault",
            ClientProof::FederatedTokenFile(_) => "federated token file",
            ClientProof::ManagedIdentity(_) => "managed identity as federated credential",
        }
    }

    /// The client-authentication fields of a token request to `token_url` by `client_id`: `client_secret`, or a
    /// `client_assertion` of type jwt-bearer.
    pub async fn fields(
        &self,
        client_id: &str,
        token_url: &str,
    ) -> Result<Vec<(&'static str, Secret)>, IdentityError> {
        let assertion = match self {
            ClientProof::Secret(secret) => return Ok(vec![("client_secret", secret.clone())]),
            ClientProof::Certificate(certificate) => certificate.assertion(client_id, token_url)?,
            ClientProof::VaultCertificate(vault) => vault
                .certificate()
                .await
                .map_err(|error| error.context("the client certificate"))?
                .assertion(client_id, token_url)?,
            ClientProof::FederatedTokenFile(path) => {
                let text = tokio::fs::read_to_string(path).await.map_err(|error| {
                    IdentityError::config(format!(
                        "cannot read AZURE_FEDERATED_TOKEN_FILE {}: {error}",
                        path.display()
                    ))
                })?;
                let token = text.trim();
                if token.is_empty() {
                    return Err(IdentityError::config(format!(
                        "AZURE_FEDERATED_TOKEN_FILE {} is empty",
                        path.display()
                    )));
                }
                Secret::new(token)
            }
            ClientProof::ManagedIdentity(cache) => {
                cache
                    .token()
                    .await
                    .map_err(|error| {
                        error.context("managed identity for the federated credential")
                    })?
                    .token
            }
        };
        Ok(vec![
            ("client_assertion_type", Secret::new(ASSERTION_TYPE)),
            ("client_assertion", assertion),
        ])
    }
}

pub struct ConfidentialClient {
    client: reqwest::Client,
    token_url: Url,
    client_id: String,
    proof: ClientProof,
    retry: RetryPolicy,
}

impl ConfidentialClient {
    /// `authority` is `AZURE_AUTHORITY_HOST` (default the public cloud's).
    pub fn new(
        client: reqwest::Client,
        authority: Option<&str>,
        tenant: &str,
        client_id: &str,
        proof: ClientProof,
    ) -> Result<ConfidentialClient, IdentityError> {
        if tenant.is_empty()
            || !tenant
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            return Err(IdentityError::config(format!(
                "AZURE_TENANT_ID = {tenant:?} is not a tenant id or domain"
            )));
        }
        if client_id.is_empty() {
            return Err(IdentityError::config("AZURE_CLIENT_ID is empty"));
        }
        let authority = authority.unwrap_or(DEFAULT_AUTHORITY).trim_end_matches('/');
        let token_url = checked_endpoint(
            &format!("{authority}/{tenant}/oauth2/v2.0/token"),
            "AZURE_AUTHORITY_HOST",
        )?;
        Ok(ConfidentialClient {
            client,
            token_url,
            client_id: client_id.to_string(),
            proof,
            retry: RetryPolicy::default(),
        })
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    pub fn proof(&self) -> &str {
        self.proof.describe()
    }

    async fn request(
        &self,
        grant: &[(&str, &str)],
        what: &str,
    ) -> Result<AccessToken, IdentityError> {
        let proof = self
            .proof
            .fields(&self.client_id, self.token_url.as_str())
            .await?;
        let mut fields: Vec<(&str, &str)> = grant.to_vec();
        fields.push(("client_id", &self.client_id));
        fields.extend(proof.iter().map(|(key, value)| (*key, value.expose())));
        let body = Secret::new(form(&fields));
        let build = || {
            self.client
                .post(self.token_url.clone())
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .header(reqwest::header::ACCEPT, "application/json")
                .body(body.expose().to_string())
        };
        let reply = send(&build, self.retry, what).await?;
        if !reply.status.is_success() {
            return Err(entra_error(&reply, what));
        }
        parse_token(&reply.body, what)
    }

    /// A token for the application itself (client-credentials grant).
    pub async fn client_credentials(&self, scope: &str) -> Result<AccessToken, IdentityError> {
        self.request(
            &[("grant_type", "client_credentials"), ("scope", scope)],
            "the Entra token endpoint",
        )
        .await
    }

    /// A token for `scope` on behalf of the user whose token `user_token` is (OAuth 2.0 on-behalf-of).
    pub async fn on_behalf_of(
        &self,
        user_token: &Secret,
        scope: &str,
    ) -> Result<AccessToken, IdentityError> {
        self.request(
            &[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", user_token.expose()),
                ("requested_token_use", "on_behalf_of"),
                ("scope", scope),
            ],
            "the Entra token endpoint (on-behalf-of)",
        )
        .await
    }
}

/// A service principal or workload identity: the client-credentials grant.
pub struct ClientCredential {
    inner: ConfidentialClient,
    kind: &'static str,
}

impl ClientCredential {
    pub fn new(inner: ConfidentialClient, kind: &'static str) -> ClientCredential {
        ClientCredential { inner, kind }
    }
}

impl TokenCredential for ClientCredential {
    fn describe(&self) -> String {
        format!(
            "{} (client id {}, {})",
            self.kind,
            self.inner.client_id(),
            self.inner.proof()
        )
    }

    fn get_token<'a>(
        &'a self,
        scope: &'a str,
    ) -> BoxFuture<'a, Result<AccessToken, IdentityError>> {
        Box::pin(self.inner.client_credentials(scope))
    }
}

/// Seconds since the epoch, for assertion claims.
pub(crate) fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A random identifier for `jti`.
pub(crate) fn random_id() -> String {
    let mut bytes = [0u8; 16];
    let provider = rustls::crypto::ring::default_provider();
    if provider.secure_random.fill(&mut bytes).is_err() {
        // The time keeps ids distinct even if the system's random source failed.
        bytes[..8].copy_from_slice(&now_seconds().to_le_bytes());
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
