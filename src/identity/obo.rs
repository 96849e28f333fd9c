//! Per-user database identity: the caller's incoming token is exchanged with the OAuth 2.0 on-behalf-of grant
//! for a PostgreSQL token, and the caller's own pool logs in with it as the caller's role, so PostgreSQL's
//! grants and row-level security decide what each person sees. Pools are per principal (tenant + object id,
//! as verified by the HTTP authentication layer), bounded in number (least recently used evicted) and closed
//! when idle; a session is never shared between principals. The incoming token itself never reaches PostgreSQL.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::Runtime;

use super::cache::TokenCache;
use super::certificate::ClientCertificate;
use super::entra::{ClientProof, ConfidentialClient, TOKEN_EXCHANGE_SCOPE};
use super::http::http_client;
use super::managed::ManagedIdentityCredential;
use super::settings::DbAuth;
use super::token::{AccessToken, IdentityError, IdentityErrorKind, POSTGRES_SCOPE};
use crate::config::{Profile, Secret};
use crate::db::connect::{PgConnector, credential_failure, is_authentication_failure};
use crate::db::session::{Connected, Object, Pool, SessionConnect, SessionManager};
use crate::http::Caller;
use crate::tools::ToolError;

/// Why a caller got no session: their credential (answer 401 with the message) or the database.
#[derive(Debug)]
pub enum UserSessionError {
    Identity(IdentityError),
    Database(ToolError),
}

impl std::fmt::Display for UserSessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UserSessionError::Identity(error) => write!(f, "{error}"),
            UserSessionError::Database(error) => write!(f, "{error}"),
        }
    }
}

/// pgmcp as a confidential client of Entra, exchanging callers' tokens.
pub struct OnBehalfOf {
    client: ConfidentialClient,
}

impl OnBehalfOf {
    /// The app registration from `AZURE_TENANT_ID` / `AZURE_CLIENT_ID`, proven with `AZURE_CLIENT_SECRET`, else
    /// `AZURE_CLIENT_CERTIFICATE_PATH`, else (secretless) a managed identity trusted as a federated credential
    /// (`--managed-identity-client-id` names a user-assigned one).
    pub fn from_env(
        profile: &Profile,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<OnBehalfOf, IdentityError> {
        let http = http_client()?;
        let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let why = "on-behalf-of needs the app registration in AZURE_TENANT_ID and AZURE_CLIENT_ID";
        let tenant = var("AZURE_TENANT_ID")
            .ok_or_else(|| IdentityError::config(format!("AZURE_TENANT_ID is not set ({why})")))?;
        let client_id = var("AZURE_CLIENT_ID")
            .ok_or_else(|| IdentityError::config(format!("AZURE_CLIENT_ID is not set ({why})")))?;
        let proof = if let Some(secret) = var("AZURE_CLIENT_SECRET") {
            ClientProof::Secret(Secret::new(secret))
        } else if let Some(path) = var("AZURE_CLIENT_CERTIFICATE_PATH") {
            ClientProof::Certificate(ClientCertificate::load(&PathBuf::from(path))?)
        } else {
            let identity = ManagedIdentityCredential::from_env(
                env,
                profile.identity.managed_identity.clone(),
                http.clone(),
            )?;
            ClientProof::ManagedIdentity(Arc::new(TokenCache::new(
                Arc::new(identity),
                TOKEN_EXCHANGE_SCOPE,
            )))
        };
        let authority = var("AZURE_AUTHORITY_HOST");
        Ok(OnBehalfOf {
            client: ConfidentialClient::new(
                http,
                authority.as_deref(),
                &tenant,
                &client_id,
                proof,
            )?,
        })
    }

    pub fn describe(&self) -> String {
        format!(
            "on-behalf-of (client id {}, {})",
            self.client.client_id(),
            self.client.proof()
        )
    }

    /// A PostgreSQL token for the user behind `incoming`.
    pub async fn exchange(&self, incoming: &Secret) -> Result<AccessToken, IdentityError> {
        self.client.on_behalf_of(incoming, POSTGRES_SCOPE).await
    }
}

/// One principal's credential: the newest incoming token and the PostgreSQL token exchanged for it.
struct UserCredential {
    exchange: Arc<OnBehalfOf>,
    incoming: std::sync::Mutex<Secret>,
    token: tokio::sync::Mutex<Option<AccessToken>>,
}

impl UserCredential {
    async fn token(&self) -> Result<AccessToken, IdentityError> {
        let mut current = self.token.lock().await;
        if let Some(token) = current.as_ref()
            && !token.needs_refresh()
        {
            return Ok(token.clone());
        }
        let incoming = self.incoming.lock().map(|t| t.clone()).unwrap_or_default();
        let token = self.exchange.exchange(&incoming).await?;
        *current = Some(token.clone());
        Ok(token)
    }

    async fn invalidate(&self) {
        *self.token.lock().await = None;
    }
}

/// deadpool's connector for one principal's pool.
struct UserConnect {
    connector: Arc<PgConnector>,
    credential: Arc<UserCredential>,
}

impl SessionConnect for UserConnect {
    fn connect_session<'a>(
        &'a self,
        config: &'a tokio_postgres::Config,
    ) -> futures_util::future::BoxFuture<'a, Result<Connected, tokio_postgres::Error>> {
        Box::pin(async move {
            let token = match self.credential.token().await {
                Ok(token) => token,
                Err(error) => return Err(credential_failure(error).await),
            };
            match self
                .connector
                .connect_with_password(config, &token.token)
                .await
            {
                Err(error) if is_authentication_failure(&error) => {
                    self.credential.invalidate().await;
                    let token = match self.credential.token().await {
                        Ok(token) => token,
                        Err(error) => return Err(credential_failure(error).await),
                    };
                    self.connector
                        .connect_with_password(config, &token.token)
                        .await
                }
                other => other,
            }
        })
    }
}

struct UserPool {
    pool: Pool,
    credential: Arc<UserCredential>,
    role: String,
    last_used: Instant,
}

/// The per-principal pools of one profile.
pub struct UserPools {
    profile: Profile,
    connector: Arc<PgConnector>,
    exchange: Arc<OnBehalfOf>,
    pools: std::sync::Mutex<HashMap<String, UserPool>>,
    pub max_users: usize,
    pub idle_timeout: Duration,
    pub per_user_connections: usize,
}

impl UserPools {
    pub fn new(
        profile: &Profile,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<UserPools, IdentityError> {
        // The shared connector carries TLS and session settings only; each pool brings its principal's token.
        let mut base = profile.clone();
        base.identity.db_auth = DbAuth::Password;
        super::hosts::check_token_hosts(&base.conn, &profile.identity.token_host_allow)
            .map_err(IdentityError::config)?;
        let connector = PgConnector::with_env(&base, env)
            .map_err(|error| IdentityError::config(error.to_string()))?;
        Ok(UserPools {
            exchange: Arc::new(OnBehalfOf::from_env(profile, env)?),
            profile: base,
            connector: Arc::new(connector),
            pools: std::sync::Mutex::new(HashMap::new()),
            max_users: 100,
            idle_timeout: Duration::from_secs(600),
            per_user_connections: profile.pool_max.clamp(1, 4),
        })
    }

    pub fn describe(&self) -> String {
        self.exchange.describe()
    }

    /// How many principals have a pool now.
    pub fn len(&self) -> usize {
        self.principals().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pools, even after a panic elsewhere poisoned the lock: the map itself is always consistent.
    fn principals(&self) -> std::sync::MutexGuard<'_, HashMap<String, UserPool>> {
        self.pools
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A session as `caller`, who presented `incoming` (already validated by the HTTP authentication layer).
    pub async fn get(
        &self,
        caller: &Caller,
        incoming: &Secret,
    ) -> Result<Object, UserSessionError> {
        let (pool, _) = self.entry(caller, incoming)?;
        pool.get().await.map_err(|error| {
            if let deadpool_postgres::PoolError::Backend(backend) = &error
                && let Some(failure) = crate::db::connect::credential_failure_of(backend)
            {
                return UserSessionError::Identity(failure.clone());
            }
            UserSessionError::Database(ToolError::from(error))
        })
    }

    /// Makes sure `caller` has a PostgreSQL token (exchanged now, or still cached) without opening a session, so
    /// the HTTP layer can answer a consent or conditional-access failure with a 401 challenge before the call runs.
    pub async fn prepare(
        &self,
        caller: &Caller,
        incoming: &Secret,
    ) -> Result<(), UserSessionError> {
        let (_, credential) = self.entry(caller, incoming)?;
        credential
            .token()
            .await
            .map(|_| ())
            .map_err(UserSessionError::Identity)
    }

    /// The principal's pool (created on first use) after recording `incoming` as its newest token.
    fn entry(
        &self,
        caller: &Caller,
        incoming: &Secret,
    ) -> Result<(Pool, Arc<UserCredential>), UserSessionError> {
        if caller.app_only {
            return Err(UserSessionError::Identity(IdentityError::new(
                IdentityErrorKind::AppOnly,
                "this server logs in to PostgreSQL on behalf of the signed-in user, but the access token is an \
                 application's (no user): sign in as a user, or use a server whose db_identity is service",
            )));
        }
        let (Some(oid), Some(role)) = (caller.oid.as_deref(), caller.preferred_username.as_deref())
        else {
            return Err(UserSessionError::Identity(IdentityError::rejected(
                "the access token has no oid or user name (upn / preferred_username), so it names no PostgreSQL role",
            )));
        };
        let key = format!("{}/{oid}", caller.tid.as_deref().unwrap_or(""));
        let mut pools = self.principals();
        self.evict(&mut pools);
        let entry = match pools.get_mut(&key) {
            Some(entry) => entry,
            None => {
                let entry = self.new_pool(role, incoming)?;
                pools.entry(key.clone()).or_insert(entry)
            }
        };
        if entry.role != role {
            // The same principal under a new name: its old sessions belong to the old role.
            entry.pool.close();
            *entry = self.new_pool(role, incoming)?;
        }
        if let Ok(mut latest) = entry.credential.incoming.lock() {
            *latest = incoming.clone();
        }
        entry.last_used = Instant::now();
        Ok((entry.pool.clone(), entry.credential.clone()))
    }

    /// Closes idle principals' pools in the background, so their connections do not stay open until the next
    /// caller happens to arrive. Stops when the pools are dropped.
    pub fn sweep_idle(pools: &Arc<UserPools>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak = Arc::downgrade(pools);
        let period = (pools.idle_timeout / 4).max(Duration::from_secs(1));
        runtime.spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let Some(pools) = weak.upgrade() else { break };
                let mut principals = pools.principals();
                pools.evict_idle(&mut principals);
            }
        });
    }

    /// The pools' sizes added up, for `/metrics`.
    pub fn status(&self) -> deadpool_postgres::Status {
        let pools = self.principals();
        let mut total = deadpool_postgres::Status {
            max_size: self.per_user_connections * self.max_users,
            size: 0,
            available: 0,
            waiting: 0,
        };
        for entry in pools.values() {
            let status = entry.pool.status();
            total.size += status.size;
            total.available += status.available;
            total.waiting += status.waiting;
        }
        total
    }

    /// Closes every principal's pool (shutdown).
    pub fn close(&self) {
        for (_, entry) in self.principals().drain() {
            entry.pool.close();
        }
    }

    /// The connector the pools share (TLS and session settings, no credential): cancel requests use it.
    pub fn connector(&self) -> Arc<PgConnector> {
        self.connector.clone()
    }

    fn evict_idle(&self, pools: &mut HashMap<String, UserPool>) {
        let now = Instant::now();
        pools.retain(|_, entry| {
            let keep = now.duration_since(entry.last_used) < self.idle_timeout;
            if !keep {
                entry.pool.close();
            }
            keep
        });
    }

    fn evict(&self, pools: &mut HashMap<String, UserPool>) {
        self.evict_idle(pools);
        while pools.len() >= self.max_users.max(1) {
            let Some(oldest) = pools
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(entry) = pools.remove(&oldest) {
                entry.pool.close();
            }
        }
    }

    fn new_pool(&self, role: &str, incoming: &Secret) -> Result<UserPool, UserSessionError> {
        let credential = Arc::new(UserCredential {
            exchange: self.exchange.clone(),
            incoming: std::sync::Mutex::new(incoming.clone()),
            token: tokio::sync::Mutex::new(None),
        });
        let mut config = self.connector.pg_config().clone();
        config.user(role);
        let manager = SessionManager::new(
            config,
            UserConnect {
                connector: self.connector.clone(),
                credential: credential.clone(),
            },
        );
        let pool = Pool::builder(manager)
            .max_size(self.per_user_connections)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(self.profile.pool_wait_timeout))
            .create_timeout(Some(self.profile.connect_timeout))
            .recycle_timeout(Some(Duration::from_secs(5)))
            .build()
            .map_err(|error| {
                UserSessionError::Database(ToolError::Unavailable {
                    message: error.to_string(),
                })
            })?;
        Ok(UserPool {
            pool,
            credential,
            role: role.to_string(),
            last_used: Instant::now(),
        })
    }
}
