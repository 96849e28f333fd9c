//! Choosing the Entra credential a profile asks for, and the `auto` chain: environment (client secret or
//! certificate), workload identity, managed identity, Azure CLI — the order the Azure SDKs' default credential
//! uses. The first credential that returns a token is kept; when all fail, every step's reason is reported.

use std::path::PathBuf;
use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::azcli::AzureCliCredential;
use super::certificate::ClientCertificate;
use super::credential::TokenCredential;
use super::entra::{ClientCredential, ClientProof, ConfidentialClient};
use super::managed::ManagedIdentityCredential;
use super::settings::{EntraCredentialKind, IdentitySettings, ManagedIdentityId};
use super::token::{AccessToken, IdentityError, IdentityErrorKind};
use crate::config::Secret;

pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

fn required(env: Env, name: &str, why: &str) -> Result<String, IdentityError> {
    env(name)
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| IdentityError::config(format!("{name} is not set ({why})")))
}

/// A service principal from `AZURE_TENANT_ID`, `AZURE_CLIENT_ID` and `AZURE_CLIENT_SECRET` (or, without a
/// secret, `AZURE_CLIENT_CERTIFICATE_PATH`).
pub fn service_principal(
    env: Env,
    client: &reqwest::Client,
) -> Result<ClientCredential, IdentityError> {
    let why = "a service principal needs AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET or AZURE_CLIENT_CERTIFICATE_PATH";
    let proof = if let Some(secret) = env("AZURE_CLIENT_SECRET").filter(|v| !v.is_empty()) {
        ClientProof::Secret(Secret::new(secret))
    } else if let Some(path) = env("AZURE_CLIENT_CERTIFICATE_PATH").filter(|v| !v.is_empty()) {
        ClientProof::Certificate(ClientCertificate::load(&PathBuf::from(path))?)
    } else {
        return Err(IdentityError::config(format!(
            "neither AZURE_CLIENT_SECRET nor AZURE_CLIENT_CERTIFICATE_PATH is set ({why})"
        )));
    };
    let tenant = required(env, "AZURE_TENANT_ID", why)?;
    let client_id = required(env, "AZURE_CLIENT_ID", why)?;
    let authority = env("AZURE_AUTHORITY_HOST");
    let inner = ConfidentialClient::new(
        client.clone(),
        authority.as_deref(),
        &tenant,
        &client_id,
        proof,
    )?;
    Ok(ClientCredential::new(inner, "service principal"))
}

/// Kubernetes workload identity: the federated token file the webhook mounts, exchanged at Entra.
pub fn workload_identity(
    env: Env,
    client: &reqwest::Client,
) -> Result<ClientCredential, IdentityError> {
    let why = "workload identity needs AZURE_FEDERATED_TOKEN_FILE, AZURE_TENANT_ID and AZURE_CLIENT_ID, which the AKS webhook sets";
    let file = required(env, "AZURE_FEDERATED_TOKEN_FILE", why)?;
    let tenant = required(env, "AZURE_TENANT_ID", why)?;
    let client_id = required(env, "AZURE_CLIENT_ID", why)?;
    let authority = env("AZURE_AUTHORITY_HOST");
    let proof = ClientProof::FederatedTokenFile(PathBuf::from(file));
    let inner = ConfidentialClient::new(
        client.clone(),
        authority.as_deref(),
        &tenant,
        &client_id,
        proof,
    )?;
    Ok(ClientCredential::new(inner, "workload identity"))
}

fn managed_identity(
    settings: &IdentitySettings,
    env: Env,
    client: &reqwest::Client,
    in_chain: bool,
) -> Result<ManagedIdentityCredential, IdentityError> {
    // As in the SDKs' default chain, AZURE_CLIENT_ID names the user-assigned identity when nothing else does.
    let id = settings.managed_identity.clone().or_else(|| {
        in_chain
            .then(|| env("AZURE_CLIENT_ID").filter(|v| !v.is_empty()))
            .flatten()
            .map(ManagedIdentityId::ClientId)
    });
    let credential = ManagedIdentityCredential::from_env(env, id, client.clone())?;
    Ok(if in_chain {
        credential.probing()
    } else {
        credential
    })
}

/// The credential `settings.entra_credential` names, configured from `env` (the standard Azure variables).
pub fn build_credential(
    settings: &IdentitySettings,
    env: Env,
    client: &reqwest::Client,
) -> Result<Arc<dyn TokenCredential>, IdentityError> {
    let tenant = env("AZURE_TENANT_ID").filter(|v| !v.is_empty());
    Ok(match settings.entra_credential {
        EntraCredentialKind::ManagedIdentity => {
            Arc::new(managed_identity(settings, env, client, false)?)
        }
        EntraCredentialKind::WorkloadIdentity => Arc::new(workload_identity(env, client)?),
        EntraCredentialKind::ClientSecret => Arc::new(service_principal(env, client)?),
        EntraCredentialKind::AzureCli => Arc::new(AzureCliCredential::new(tenant)),
        EntraCredentialKind::Auto => {
            let mut steps: Vec<Step> = Vec::new();
            let mut add =
                |name: &'static str, built: Result<Arc<dyn TokenCredential>, IdentityError>| {
                    steps.push(match built {
                        Ok(credential) => Step::Ready(name, credential),
                        Err(error) => Step::Unconfigured(name, error.message),
                    });
                };
            add(
                "environment (service principal)",
                service_principal(env, client).map(|c| Arc::new(c) as _),
            );
            add(
                "workload identity",
                workload_identity(env, client).map(|c| Arc::new(c) as _),
            );
            add(
                "managed identity",
                managed_identity(settings, env, client, true).map(|c| Arc::new(c) as _),
            );
            add("Azure CLI", Ok(Arc::new(AzureCliCredential::new(tenant))));
            Arc::new(ChainCredential {
                steps,
                chosen: tokio::sync::Mutex::new(None),
            })
        }
    })
}

enum Step {
    Ready(&'static str, Arc<dyn TokenCredential>),
    Unconfigured(&'static str, String),
}

pub struct ChainCredential {
    steps: Vec<Step>,
    chosen: tokio::sync::Mutex<Option<Arc<dyn TokenCredential>>>,
}

impl ChainCredential {
    async fn fetch(&self, scope: &str) -> Result<AccessToken, IdentityError> {
        let mut chosen = self.chosen.lock().await;
        if let Some(credential) = chosen.as_ref() {
            return credential.get_token(scope).await;
        }
        let mut tried = Vec::new();
        for step in &self.steps {
            match step {
                Step::Unconfigured(name, why) => tried.push(format!("{name}: {why}")),
                Step::Ready(name, credential) => match credential.get_token(scope).await {
                    Ok(token) => {
                        tracing::info!(credential = %credential.describe(), "auto credential chain: using this credential");
                        *chosen = Some(credential.clone());
                        return Ok(token);
                    }
                    // A configured credential that the token service refused is a real problem, not a reason to
                    // quietly log in as someone else further down the chain.
                    Err(error)
                        if matches!(error.kind, IdentityErrorKind::Rejected)
                            && *name != "managed identity"
                            && *name != "Azure CLI" =>
                    {
                        return Err(error.context(name));
                    }
                    Err(error) => tried.push(format!("{name}: {}", error.message)),
                },
            }
        }
        Err(IdentityError::config(format!(
            "no Entra credential worked (entra_credential = auto tried, in order): {}",
            tried.join("; ")
        )))
    }
}

impl TokenCredential for ChainCredential {
    fn describe(&self) -> String {
        match self.chosen.try_lock() {
            Ok(chosen) => match chosen.as_ref() {
                Some(credential) => format!("auto: {}", credential.describe()),
                None => {
                    "auto (environment, workload identity, managed identity, Azure CLI)".to_string()
                }
            },
            Err(_) => "auto".to_string(),
        }
    }

    fn get_token<'a>(
        &'a self,
        scope: &'a str,
    ) -> BoxFuture<'a, Result<AccessToken, IdentityError>> {
        Box::pin(self.fetch(scope))
    }
}
