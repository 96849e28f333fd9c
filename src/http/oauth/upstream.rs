//! The provider people actually sign in at (Entra ID or the OpenID provider of `auth.oidc_issuer`): its endpoints
//! from OpenID discovery, the authorization URL pgmcp sends the browser to, and the code exchange with pgmcp's own
//! client credentials and PKCE. pgmcp's app proves itself with a client secret, with a certificate (a client
//! assertion signed with its key, `x5t#S256` naming it: Entra's certificate credential, `private_key_jwt`
//! elsewhere), or, secretless, with its managed identity's token for `api://AzureADTokenExchange` as a federated
//! credential (a jwt-bearer client assertion).

use std::sync::{Arc, RwLock};

use anyhow::{Context, bail};
use serde::Deserialize;

use super::settings::{PemSource, UpstreamCredential};
use crate::config::Secret;
use crate::http::auth::{AuthMode, AuthSettings};
use crate::identity::ManagedIdentityId;
use crate::identity::cache::TokenCache;
use crate::identity::certificate::{ClientCertificate, VaultCertificate};
use crate::identity::entra::{ClientProof, TOKEN_EXCHANGE_SCOPE};
use crate::identity::managed::ManagedIdentityCredential;

#[derive(Clone, Deserialize)]
struct Endpoints {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
}

pub struct Upstream {
    issuer: String,
    client_id: String,
    proof: ClientProof,
    scopes: String,
    /// RFC 8707 `resource` for providers that take one (OpenID providers; Entra v2 takes scopes only).
    resource: Option<String>,
    /// pgmcp's `/callback`.
    redirect_uri: String,
    http: reqwest::Client,
    endpoints: RwLock<Option<Endpoints>>,
}

impl Upstream {
    /// `env` is the process environment; it says where the managed identity endpoint is.
    pub fn new(
        auth: &AuthSettings,
        resource_scopes: &[String],
        settings: &super::OAuthSettings,
        redirect_uri: String,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Upstream> {
        let http =
            crate::identity::http::http_client().map_err(|error| anyhow::anyhow!("{error}"))?;
        let proof = match &settings.upstream_credential {
            UpstreamCredential::ClientSecret(secret) => ClientProof::Secret(secret.clone()),
            UpstreamCredential::ManagedIdentity(client_id) => {
                let identity = ManagedIdentityCredential::from_env(
                    env,
                    client_id.clone().map(ManagedIdentityId::ClientId),
                    http.clone(),
                )
                .map_err(|error| {
                    anyhow::anyhow!("`--oauth-upstream-credential managed_identity`: {error}")
                })?;
                ClientProof::ManagedIdentity(Arc::new(TokenCache::new(
                    Arc::new(identity),
                    TOKEN_EXCHANGE_SCOPE,
                )))
            }
            UpstreamCredential::Certificate(PemSource::File(path)) => ClientProof::Certificate(
                ClientCertificate::load_for(path, "`--oauth-upstream-certificate`")
                    .map_err(|error| anyhow::anyhow!("{error}"))?,
            ),
            UpstreamCredential::Certificate(PemSource::KeyVault(reference)) => {
                let vault = super::key_vault(reference, env)
                    .with_context(|| format!("`--oauth-upstream-certificate` {reference}"))?;
                ClientProof::VaultCertificate(Arc::new(VaultCertificate::new(
                    vault,
                    reference.clone(),
                    settings.key_vault_refresh,
                )))
            }
        };
        let issuer = match auth.mode {
            AuthMode::Entra => format!(
                "{}/{}/v2.0",
                auth.entra_authority(),
                auth.entra_tenant_ids.first().cloned().unwrap_or_default()
            ),
            _ => auth.oidc_issuer.clone().unwrap_or_default(),
        };
        let scopes = match &settings.upstream_scopes {
            Some(scopes) => scopes.clone(),
            None => {
                let mut scopes = vec!["openid".to_string(), "profile".to_string()];
                scopes.extend(resource_scopes.iter().cloned());
                scopes
            }
        };
        let resource = match auth.mode {
            AuthMode::Entra => None,
            _ => auth.audiences.first().cloned(),
        };
        Ok(Upstream {
            issuer,
            client_id: settings.upstream_client_id.clone(),
            proof,
            scopes: scopes.join(" "),
            resource,
            redirect_uri,
            http,
            endpoints: RwLock::new(None),
        })
    }

    /// Reads a credential that lives elsewhere (a Key Vault certificate) now, so that start-up reports it.
    pub async fn check_credential(&self) -> anyhow::Result<()> {
        if let ClientProof::VaultCertificate(certificate) = &self.proof {
            certificate
                .certificate()
                .await
                .map_err(|error| anyhow::anyhow!("`--oauth-upstream-certificate`: {error}"))?;
        }
        Ok(())
    }

    async fn endpoints(&self) -> anyhow::Result<Endpoints> {
        if let Some(endpoints) = self.endpoints.read().ok().and_then(|e| e.clone()) {
            return Ok(endpoints);
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        );
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        if !response.status().is_success() {
            bail!("GET {url}: HTTP {}", response.status());
        }
        let endpoints: Endpoints = response
            .json()
            .await
            .with_context(|| format!("{url} is not an OpenID configuration"))?;
        if endpoints.issuer != self.issuer {
            bail!(
                "{url} names issuer {:?}, not {:?}",
                endpoints.issuer,
                self.issuer
            );
        }
        for endpoint in [&endpoints.authorization_endpoint, &endpoints.token_endpoint] {
            crate::identity::http::checked_endpoint(endpoint, "the provider's endpoint")
                .map_err(|error| anyhow::anyhow!("{error}"))?;
        }
        if let Ok(mut slot) = self.endpoints.write() {
            *slot = Some(endpoints.clone());
        }
        Ok(endpoints)
    }

    /// Where the browser signs in; `state` carries pgmcp's sealed flow, `challenge` pgmcp's own PKCE challenge.
    pub async fn authorization_url(&self, state: &str, challenge: &str) -> anyhow::Result<String> {
        let endpoints = self.endpoints().await?;
        let mut url = reqwest::Url::parse(&endpoints.authorization_endpoint)
            .context("the provider's authorization_endpoint")?;
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("response_type", "code")
                .append_pair("client_id", &self.client_id)
                .append_pair("redirect_uri", &self.redirect_uri)
                .append_pair("scope", &self.scopes)
                .append_pair("state", state)
                .append_pair("code_challenge", challenge)
                .append_pair("code_challenge_method", "S256");
            if let Some(resource) = &self.resource {
                query.append_pair("resource", resource);
            }
        }
        Ok(url.to_string())
    }

    /// Redeems the provider's code for an access token to pgmcp's own API. The token never leaves pgmcp.
    pub async fn exchange(&self, code: &str, verifier: &str) -> anyhow::Result<Secret> {
        let endpoints = self.endpoints().await?;
        let proof = self
            .proof
            .fields(&self.client_id, &endpoints.token_endpoint)
            .await
            .map_err(|error| anyhow::anyhow!("{error}"))?;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.redirect_uri.as_str()),
            ("client_id", self.client_id.as_str()),
            ("code_verifier", verifier),
        ];
        form.extend(proof.iter().map(|(key, value)| (*key, value.expose())));
        if let Some(resource) = &self.resource {
            form.push(("resource", resource));
        }
        let response = self
            .http
            .post(&endpoints.token_endpoint)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(crate::identity::http::form(&form))
            .send()
            .await
            .context("the provider's token endpoint")?;
        let status = response.status();
        #[derive(Deserialize)]
        struct Reply {
            access_token: Option<String>,
            error: Option<String>,
            error_description: Option<String>,
        }
        let reply: Reply = response
            .json()
            .await
            .context("the provider's token response is not JSON")?;
        match reply.access_token {
            Some(token) if status.is_success() => Ok(Secret::new(token)),
            _ => bail!(
                "the provider refused the code (HTTP {status}): {} {}",
                reply.error.unwrap_or_default(),
                reply.error_description.unwrap_or_default()
            ),
        }
    }
}
