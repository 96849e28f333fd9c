//! Inbound authentication: `/mcp` as an OAuth 2.1 protected resource for Microsoft Entra ID or any OpenID
//! provider. Tokens come only from `Authorization: Bearer`, are verified with the issuer's published keys only,
//! and their claims are checked against the settings; the result is the request's [`crate::http::Caller`].

mod cache;
mod jwks;
mod kind;
mod layer;
mod reason;
pub(crate) mod rejection;
mod settings;
mod verify;

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use anyhow::bail;
use axum::http::{HeaderMap, Uri};

pub use layer::{IncomingToken, RequireBearer, RequireBearerLayer, admit, require_bearer};
pub use rejection::AuthRejection;
pub use settings::{AuthMode, AuthSettings, DEFAULT_ENTRA_AUTHORITY, DEFAULT_ENTRA_V1_ISSUER_HOST};

use crate::config::Secret;
use crate::http::Caller;
use cache::VerifiedTokens;
use jwks::{KeyLocation, KeySource, RefreshCounters};
use kind::EntraVersion;
use reason::{Failure, FailureCounters};
use verify::{Policy, TrustedIssuer};

/// What the protected resource is, as announced in its Protected Resource Metadata.
#[derive(Debug, Clone)]
pub struct ResourceInfo {
    /// The resource identifier (the public URL of `/mcp`).
    pub resource: String,
    /// Where the Protected Resource Metadata is served; named in every `WWW-Authenticate` challenge.
    pub metadata_url: String,
}

/// pgmcp as an issuer of access tokens for its own resource (`--oauth-server`).
pub struct OwnIssuer {
    /// pgmcp's public base URL.
    pub issuer: String,
    /// The resource its tokens are for (`{public URL}/mcp`).
    pub audience: String,
    pub keys: Arc<dyn OwnKeys>,
}

/// The keys pgmcp signs its own tokens with, as the authorization server holds them: they may change while it
/// runs (a signing key kept in Key Vault is rotated there).
pub trait OwnKeys: Send + Sync {
    /// Changes whenever the keys do, so a verifier knows when to rebuild what it derived from them.
    fn generation(&self) -> u64;
    /// Key ids and keys: the current signing key and every other one still trusted.
    fn verification_keys(&self) -> Vec<(String, jsonwebtoken::DecodingKey)>;
    /// Looks at the key source again (a token names a key id this replica has not loaded).
    fn reload(&self) -> futures_util::future::BoxFuture<'_, anyhow::Result<()>>;
}

/// Counters for `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthStats {
    /// Every failure reason with its count (zeros included).
    pub failures_by_reason: Vec<(String, u64)>,
    pub jwks_refreshes: u64,
    pub jwks_refresh_failures: u64,
}

/// Verifies the bearer tokens of incoming requests.
pub struct Authenticator {
    mode: AuthMode,
    issuers: Vec<TrustedIssuer>,
    policy: Policy,
    authorization_servers: Vec<String>,
    scopes: Vec<String>,
    resource: ResourceInfo,
    failures: FailureCounters,
    refresh_counters: Arc<RefreshCounters>,
    verified: VerifiedTokens,
}

impl Authenticator {
    /// Builds the authenticator and starts loading the issuers' keys in the background: start-up never waits for
    /// the identity provider, and a request that arrives before the keys fetches them itself.
    pub async fn new(
        settings: &AuthSettings,
        resource: ResourceInfo,
    ) -> anyhow::Result<Arc<Authenticator>> {
        Authenticator::with_own_issuer(settings, resource, None).await
    }

    /// Like `new`, also accepting the tokens pgmcp issues itself as authorization server (`--oauth-server`),
    /// which clients are then sent to instead of the provider.
    pub async fn with_own_issuer(
        settings: &AuthSettings,
        resource: ResourceInfo,
        own: Option<OwnIssuer>,
    ) -> anyhow::Result<Arc<Authenticator>> {
        settings.validate()?;
        let client = jwks::http_client()?;
        let refresh_counters = Arc::new(RefreshCounters::default());
        let cooldown = settings.unknown_kid_cooldown();
        let source = |location| {
            Arc::new(KeySource::new(
                location,
                client.clone(),
                refresh_counters.clone(),
                cooldown,
            ))
        };

        let mut issuers = Vec::new();
        let mut authorization_servers = Vec::new();
        let mut tenants: HashSet<String> = settings
            .entra_tenant_ids
            .iter()
            .map(|t| t.to_ascii_lowercase())
            .collect();
        match settings.mode {
            AuthMode::None => {
                bail!("auth mode `none` has no authenticator; do not guard /mcp with one")
            }
            AuthMode::Entra => {
                let authority = settings.entra_authority();
                let v1_host = settings.entra_v1_issuer_host();
                for tenant in &tenants {
                    // v1 and v2 tokens of a tenant are signed with the same keys.
                    let keys = source(KeyLocation::Jwks(format!(
                        "{authority}/{tenant}/discovery/v2.0/keys"
                    )));
                    let v2 = format!("{authority}/{tenant}/v2.0");
                    authorization_servers.push(v2.clone());
                    for (issuer, version) in [
                        (v2, EntraVersion::V2),
                        (format!("{v1_host}/{tenant}/"), EntraVersion::V1),
                    ] {
                        issuers.push(TrustedIssuer {
                            issuer,
                            tenant: Some(tenant.clone()),
                            entra: Some(version),
                            keys: keys.clone(),
                            audiences: None,
                        });
                    }
                }
            }
            AuthMode::Oidc => {
                let issuer = settings.oidc_issuer.clone().unwrap_or_default();
                authorization_servers.push(issuer.clone());
                issuers.push(TrustedIssuer {
                    keys: source(KeyLocation::Discovery {
                        issuer: issuer.clone(),
                    }),
                    issuer,
                    tenant: None,
                    entra: None,
                    audiences: None,
                });
            }
        }
        authorization_servers.sort();
        if let Some(own) = own {
            issuers.push(TrustedIssuer {
                issuer: own.issuer.clone(),
                tenant: None,
                entra: None,
                keys: Arc::new(KeySource::new(
                    KeyLocation::Own(own.keys),
                    client.clone(),
                    refresh_counters.clone(),
                    cooldown,
                )),
                audiences: Some(vec![own.audience]),
            });
            authorization_servers = vec![own.issuer];
        }
        if settings.mode == AuthMode::Oidc && settings.entra_tenant_ids.is_empty() {
            tenants.clear();
        }

        let authenticator = Arc::new(Authenticator {
            mode: settings.mode,
            policy: Policy {
                audiences: settings.accepted_audiences(),
                leeway: settings.leeway(),
                tenants,
                required_roles: settings.required_roles.clone(),
                required_scopes: settings.required_scopes.clone(),
                allowed_client_apps: lowercase_set(&settings.allowed_client_apps),
                allowed_principals: lowercase_set(&settings.allowed_principals),
                require_at_jwt: settings.require_at_jwt,
            },
            issuers,
            authorization_servers,
            scopes: scopes_supported(settings),
            resource,
            failures: FailureCounters::default(),
            refresh_counters,
            verified: VerifiedTokens::default(),
        });
        spawn_key_refresher(Arc::downgrade(&authenticator), settings.jwks_refresh());
        Ok(authenticator)
    }

    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// Signing key downloads that failed since the last one that succeeded (for `/readyz`).
    pub fn failing_key_refreshes(&self) -> u64 {
        self.refresh_counters.failing.load(Ordering::Relaxed)
    }

    /// True once every trusted issuer's signing keys are cached (for `/readyz`).
    pub fn keys_loaded(&self) -> bool {
        self.issuers.iter().all(|issuer| issuer.keys.is_loaded())
    }

    /// The authorization servers for the Protected Resource Metadata (Entra: `{authority}/{tenant}/v2.0`).
    pub fn authorization_servers(&self) -> Vec<String> {
        self.authorization_servers.clone()
    }

    /// The scopes a client should ask for, for the PRM `scopes_supported` and the challenge's `scope`.
    pub fn scopes_supported(&self) -> Vec<String> {
        self.scopes.clone()
    }

    pub fn resource(&self) -> &ResourceInfo {
        &self.resource
    }

    pub fn stats(&self) -> AuthStats {
        AuthStats {
            failures_by_reason: self.failures.snapshot(),
            jwks_refreshes: self.refresh_counters.refreshes.load(Ordering::Relaxed),
            jwks_refresh_failures: self.refresh_counters.failures.load(Ordering::Relaxed),
        }
    }

    /// Authenticates one request from its headers and URI: the token only from `Authorization: Bearer`.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        uri: &Uri,
    ) -> Result<Caller, AuthRejection> {
        self.authenticate_with_token(headers, uri)
            .await
            .map(|(caller, _)| caller)
    }

    pub(crate) async fn authenticate_with_token(
        &self,
        headers: &HeaderMap,
        uri: &Uri,
    ) -> Result<(Caller, Secret), AuthRejection> {
        let token = match layer::extract_bearer(headers, uri) {
            Ok(Some(token)) => token,
            Ok(None) => {
                return Err(self.reject(Failure::MissingToken, "no Authorization header".into()));
            }
            Err(failure) => return Err(self.reject(failure, "malformed request".into())),
        };
        let digest = cache::digest(token.expose());
        let caller = match self.verified.get(&digest) {
            Some(caller) => caller,
            None => match verify::verify(token.expose(), &self.issuers, &self.policy).await {
                Ok(verified) => {
                    self.verified.insert(digest, &verified, self.policy.leeway);
                    verified.caller
                }
                Err((failure, detail)) => return Err(self.reject(failure, detail)),
            },
        };
        tracing::debug!(oid = ?caller.oid, client_app = ?caller.client_app, "caller authenticated");
        Ok((caller, token))
    }

    /// Verifies a token obtained by other means than a request (the provider's token at the end of a sign-in),
    /// with the same rules as a bearer token.
    pub async fn verify_token(&self, token: &str) -> Result<Caller, AuthRejection> {
        match verify::verify(token, &self.issuers, &self.policy).await {
            Ok(verified) => Ok(verified.caller),
            Err((failure, detail)) => Err(self.reject(failure, detail)),
        }
    }

    fn reject(&self, failure: Failure, detail: String) -> AuthRejection {
        self.failures.record(failure);
        if failure != Failure::MissingToken {
            tracing::warn!(reason = failure.as_str(), detail = %detail, "request refused by authentication");
        }
        AuthRejection::new(failure, &self.resource.metadata_url, &self.scopes)
    }

    async fn refresh_all(&self) -> bool {
        let mut all_ok = true;
        let mut seen: Vec<&Arc<KeySource>> = Vec::new();
        for issuer in &self.issuers {
            // Entra's v1 and v2 issuers of a tenant share one key source.
            if seen.iter().any(|done| Arc::ptr_eq(done, &issuer.keys)) {
                continue;
            }
            seen.push(&issuer.keys);
            if let Err(error) = issuer.keys.refresh().await {
                all_ok = false;
                tracing::warn!(
                    source = %issuer.keys.describe(),
                    error = %format!("{error:#}"),
                    cached = issuer.keys.is_loaded(),
                    "fetching signing keys failed (cached keys, if any, stay in use)"
                );
            }
        }
        all_ok
    }
}

/// Loads keys now and then every `interval`; after a failure it retries sooner (backing off from 5 s), so a
/// provider that was down at start-up is picked up quickly. Stops when the authenticator is dropped.
fn spawn_key_refresher(authenticator: Weak<Authenticator>, interval: Duration) {
    tokio::spawn(async move {
        let mut retry = Duration::from_secs(5);
        loop {
            let Some(auth) = authenticator.upgrade() else {
                return;
            };
            let ok = auth.refresh_all().await;
            drop(auth);
            let pause = if ok {
                retry = Duration::from_secs(5);
                interval
            } else {
                let pause = retry.min(interval);
                retry = (retry * 2).min(Duration::from_secs(300));
                pause
            };
            tokio::time::sleep(pause).await;
        }
    });
}

fn lowercase_set(values: &[String]) -> HashSet<String> {
    values.iter().map(|v| v.to_ascii_lowercase()).collect()
}

/// Entra clients ask for fully qualified scopes (`api://…/user_impersonation`, or `…/.default` for app-only
/// tokens); a short configured scope is qualified with the App ID URI.
fn scopes_supported(settings: &AuthSettings) -> Vec<String> {
    if settings.mode != AuthMode::Entra {
        return settings.required_scopes.clone();
    }
    let resource = settings
        .entra_app_id_uri
        .clone()
        .or_else(|| {
            settings
                .entra_client_id
                .as_ref()
                .map(|id| format!("api://{id}"))
        })
        .unwrap_or_default();
    let resource = resource.trim_end_matches('/');
    if settings.required_scopes.is_empty() {
        return vec![format!("{resource}/.default")];
    }
    settings
        .required_scopes
        .iter()
        .map(|scope| {
            if scope.contains('/') {
                scope.clone()
            } else {
                format!("{resource}/{scope}")
            }
        })
        .collect()
}
