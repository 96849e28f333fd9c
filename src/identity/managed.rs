//! Managed identity: the App Service / Container Apps / Functions endpoint (`IDENTITY_ENDPOINT` with the
//! `X-IDENTITY-HEADER` secret, api-version 2019-08-01) or the Instance Metadata Service (VMs, AKS nodes,
//! api-version 2018-02-01).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::future::BoxFuture;
use reqwest::Url;

use super::credential::{TokenCredential, scope_to_resource};
use super::http::{RetryPolicy, checked_endpoint, parse_token, send};
use super::settings::ManagedIdentityId;
use super::token::{AccessToken, IdentityError};
use crate::config::Secret;

pub const IMDS_TOKEN_URL: &str = "http://169.254.169.254/metadata/identity/oauth2/token";
/// Replaces IMDS's address; for tests and special networks only (an IMDS proxy, a sidecar).
pub const IMDS_OVERRIDE_VARIABLE: &str = "PGMCP_IMDS_ENDPOINT";

enum Endpoint {
    AppService { url: Url, header: Secret },
    Imds { url: Url },
}

pub struct ManagedIdentityCredential {
    client: reqwest::Client,
    endpoint: Endpoint,
    id: Option<ManagedIdentityId>,
    retry: RetryPolicy,
    /// In the `auto` chain, IMDS is first probed briefly: off Azure its address does not answer at all, and the
    /// chain must move on quickly. After one answer it gets the full retry policy.
    probe_imds: bool,
    imds_answered: AtomicBool,
}

impl ManagedIdentityCredential {
    /// The endpoint the environment offers: `IDENTITY_ENDPOINT` + `IDENTITY_HEADER`, else IMDS.
    pub fn from_env(
        env: &dyn Fn(&str) -> Option<String>,
        id: Option<ManagedIdentityId>,
        client: reqwest::Client,
    ) -> Result<ManagedIdentityCredential, IdentityError> {
        let endpoint = match (env("IDENTITY_ENDPOINT"), env("IDENTITY_HEADER")) {
            (Some(url), Some(header)) => Endpoint::AppService {
                url: checked_endpoint(&url, "IDENTITY_ENDPOINT")?,
                header: Secret::new(header),
            },
            (Some(_), None) => {
                return Err(IdentityError::config(
                    "IDENTITY_ENDPOINT is set but IDENTITY_HEADER is not; both come from the hosting platform \
                     (App Service, Container Apps, Functions) — do not set only one of them",
                ));
            }
            _ => {
                let url = env(IMDS_OVERRIDE_VARIABLE).unwrap_or_else(|| IMDS_TOKEN_URL.to_string());
                let parsed = Url::parse(&url).map_err(|error| {
                    IdentityError::config(format!(
                        "{IMDS_OVERRIDE_VARIABLE} = {url:?} is not a URL: {error}"
                    ))
                })?;
                Endpoint::Imds { url: parsed }
            }
        };
        Ok(ManagedIdentityCredential {
            client,
            endpoint,
            id,
            retry: RetryPolicy::default(),
            probe_imds: false,
            imds_answered: AtomicBool::new(false),
        })
    }

    /// Probe IMDS with one short request first (for the `auto` chain).
    pub fn probing(mut self) -> ManagedIdentityCredential {
        self.probe_imds = true;
        self
    }

    async fn fetch(&self, scope: &str) -> Result<AccessToken, IdentityError> {
        let resource = scope_to_resource(scope);
        let (url, what) = match &self.endpoint {
            Endpoint::AppService { url, .. } => {
                (url, "the managed identity endpoint (IDENTITY_ENDPOINT)")
            }
            Endpoint::Imds { url } => (url, "the Azure Instance Metadata Service"),
        };
        let mut url = url.clone();
        {
            let mut query = url.query_pairs_mut();
            let app_service = matches!(self.endpoint, Endpoint::AppService { .. });
            query.append_pair(
                "api-version",
                if app_service {
                    "2019-08-01"
                } else {
                    "2018-02-01"
                },
            );
            query.append_pair("resource", resource);
            match &self.id {
                None => {}
                Some(ManagedIdentityId::ClientId(id)) => {
                    query.append_pair("client_id", id);
                }
                Some(ManagedIdentityId::ObjectId(id)) => {
                    query.append_pair("object_id", id);
                }
                Some(ManagedIdentityId::ResourceId(id)) => {
                    query.append_pair(
                        if app_service {
                            "mi_res_id"
                        } else {
                            "msi_res_id"
                        },
                        id,
                    );
                }
            }
        }
        let probing = self.probe_imds
            && matches!(self.endpoint, Endpoint::Imds { .. })
            && !self.imds_answered.load(Ordering::Relaxed);
        let build = || {
            let request = self.client.get(url.clone());
            let request = match &self.endpoint {
                Endpoint::AppService { header, .. } => {
                    request.header("X-IDENTITY-HEADER", header.expose())
                }
                Endpoint::Imds { .. } => request.header("Metadata", "true"),
            };
            if probing {
                request.timeout(Duration::from_secs(1))
            } else {
                request
            }
        };
        let policy = if probing {
            RetryPolicy {
                attempts: 1,
                ..self.retry
            }
        } else {
            self.retry
        };
        let reply = send(&build, policy, what).await?;
        if matches!(self.endpoint, Endpoint::Imds { .. }) {
            self.imds_answered.store(true, Ordering::Relaxed);
        }
        if !reply.status.is_success() {
            let detail = match reply.status.as_u16() {
                400 if self.id.is_some() => {
                    "the requested user-assigned identity is not assigned to this resource"
                        .to_string()
                }
                400 => "no managed identity is assigned to this resource".to_string(),
                _ => serde_json::from_slice::<serde_json::Value>(&reply.body)
                    .ok()
                    .and_then(|json| {
                        json.get("error_description")
                            .or_else(|| json.get("message"))
                            .and_then(|v| v.as_str())
                            .map(str::to_string)
                    })
                    .unwrap_or_default(),
            };
            let error =
                IdentityError::rejected(format!("{what} answered HTTP {}: {detail}", reply.status));
            return Err(if reply.status.is_server_error() {
                IdentityError::unavailable(error.message)
            } else {
                error
            });
        }
        parse_token(&reply.body, what)
    }
}

impl TokenCredential for ManagedIdentityCredential {
    fn describe(&self) -> String {
        let source = match self.endpoint {
            Endpoint::AppService { .. } => "App Service / Container Apps endpoint",
            Endpoint::Imds { .. } => "IMDS",
        };
        let which = match &self.id {
            None => "system-assigned".to_string(),
            Some(ManagedIdentityId::ClientId(id)) => format!("user-assigned, client id {id}"),
            Some(ManagedIdentityId::ObjectId(id)) => format!("user-assigned, object id {id}"),
            Some(ManagedIdentityId::ResourceId(id)) => format!("user-assigned, resource {id}"),
        };
        format!("managed identity ({which}, {source})")
    }

    fn get_token<'a>(
        &'a self,
        scope: &'a str,
    ) -> BoxFuture<'a, Result<AccessToken, IdentityError>> {
        Box::pin(self.fetch(scope))
    }
}
