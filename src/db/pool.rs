//! One connection pool per profile (or, with `db_identity = on_behalf_of`, one per signed-in caller). Connections
//! come back clean: read-only calls cannot leave session state behind (a rolled-back transaction, and the guard),
//! and the calls that could are followed by a session reset before the connection is reused (see
//! `tools::dispatch`), so no caller leaves a `search_path`, role or setting behind for the next one.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Runtime;

use crate::config::{AccessMode, Profile, Secret};
use crate::db::connect::PgConnector;
use crate::db::session::{Connected, Object, Pool, PoolError, SessionConnect, SessionManager};
use crate::guard::{CachedGuard, GuardPolicy};
use crate::http::Caller;
use crate::identity::obo::{UserPools, UserSessionError};
use crate::identity::{DbIdentity, IdentityError, IdentityErrorKind};
use crate::tools::ToolError;

/// The signed-in caller of an HTTP request, with the access token they presented: what an on-behalf-of profile
/// logs in with. The token is only ever exchanged with Entra, never sent to PostgreSQL.
#[derive(Clone, Copy)]
pub struct UserLogin<'a> {
    pub caller: &'a Caller,
    pub token: &'a Secret,
}

/// How long the readiness probe's `SELECT 1` may take on an open connection.
const READINESS_QUERY_BOUND: Duration = Duration::from_secs(2);

/// Who logs in to PostgreSQL for a profile.
enum Logins {
    /// pgmcp's own identity, one pool for every caller.
    Service(Pool),
    /// Each caller as themself (`db_identity = on_behalf_of`), a pool per principal.
    PerCaller(Arc<UserPools>),
}

/// A profile's database: its pool(s), its guard policy and its limits.
pub struct Database {
    pub profile: Profile,
    /// The profile's guard policy, with a memory of the verdicts it gave.
    pub guard: CachedGuard,
    logins: Logins,
    connector: Arc<PgConnector>,
}

impl Database {
    /// Builds the pool without connecting: a server that is down at start-up must not stop pgmcp from answering
    /// `tools/list`; the first tool call reports the connection error instead.
    pub fn new(profile: Profile) -> anyhow::Result<Database> {
        Database::with_env(profile, &|name| std::env::var(name).ok())
    }

    /// Like [`Database::new`] with the environment (HOME, PGPASSFILE, the Azure variables) supplied by `env`.
    pub fn with_env(
        profile: Profile,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Database> {
        let (logins, connector) = if profile.identity.db_identity == DbIdentity::OnBehalfOf {
            let pools = UserPools::new(&profile, env).map_err(|error| {
                anyhow::anyhow!("db_identity = on_behalf_of: {}", error.message)
            })?;
            let connector = pools.connector();
            let pools = Arc::new(pools);
            UserPools::sweep_idle(&pools);
            (Logins::PerCaller(pools), connector)
        } else {
            let connector = Arc::new(PgConnector::with_env(&profile, env)?);
            (
                Logins::Service(service_pool(&profile, connector.clone())?),
                connector,
            )
        };
        let mut policy = match profile.access_mode {
            AccessMode::ReadOnly => GuardPolicy::read_only(),
            AccessMode::ReadWrite => GuardPolicy::read_write(profile.allow_ddl),
        };
        policy
            .denied_functions
            .extend(profile.deny_functions.iter().map(|f| f.to_lowercase()));
        policy.allowed_extensions = profile.allow_extensions.clone();
        policy.masks = profile.masks.clone();
        policy.allowed_volatile_functions.extend(
            profile
                .allow_volatile_functions
                .iter()
                .map(|f| f.to_lowercase()),
        );
        policy.allowed_foreign_tables = profile
            .allow_foreign_tables
            .iter()
            .map(|t| t.to_lowercase())
            .collect();
        Ok(Database {
            guard: CachedGuard::new(&policy),
            profile,
            logins,
            connector,
        })
    }

    /// Whether each caller logs in as themself (`db_identity = on_behalf_of`).
    pub fn per_caller(&self) -> bool {
        matches!(self.logins, Logins::PerCaller(_))
    }

    /// Opens `pool_min` connections ahead of the first call, so the first agent request does not pay for TLS and
    /// authentication. Failures are only logged: the pool retries on demand.
    pub async fn warm_up(&self) {
        let Logins::Service(pool) = &self.logins else {
            return;
        };
        let mut held = Vec::new();
        for _ in 0..self.profile.pool_min {
            match pool.get().await {
                Ok(conn) => held.push(conn),
                Err(err) => {
                    tracing::warn!(profile = %self.profile.name, error = %err, "could not pre-open a connection");
                    break;
                }
            }
        }
    }

    /// A session with pgmcp's own identity.
    pub async fn get(&self) -> Result<Object, ToolError> {
        self.session(None).await
    }

    /// A session for one call: as `user` when this profile logs in per caller, else with pgmcp's own identity.
    pub async fn session(&self, user: Option<UserLogin<'_>>) -> Result<Object, ToolError> {
        match (&self.logins, user) {
            (Logins::Service(pool), _) => pool.get().await.map_err(|error| {
                // A credential that could not be obtained says why in its own words, not as a generic I/O error.
                if let PoolError::Backend(backend) = &error
                    && let Some(failure) = crate::db::connect::credential_failure_of(backend)
                {
                    return ToolError::Unavailable {
                        message: format!("database credential unavailable: {failure}"),
                    };
                }
                match ToolError::from(error) {
                    ToolError::Busy { .. } => ToolError::Busy {
                        message: format!(
                            "all {} connections of profile `{}` are in use and none came free within {} ms \
                             (pool_wait_timeout); retry shortly",
                            self.profile.pool_max,
                            self.profile.name,
                            self.profile.pool_wait_timeout.as_millis()
                        ),
                    },
                    other => other,
                }
            }),
            (Logins::PerCaller(pools), Some(user)) => pools
                .get(user.caller, user.token)
                .await
                .map_err(|error| match error {
                    UserSessionError::Identity(error) => caller_login_error(&error),
                    UserSessionError::Database(error) => error,
                }),
            (Logins::PerCaller(_), None) => Err(ToolError::CallerLogin {
                message: format!(
                    "profile `{}` logs in to PostgreSQL as each signed-in caller (db_identity = on_behalf_of), \
                     and this request carries no user's access token",
                    self.profile.name
                ),
            }),
        }
    }

    /// For per-caller profiles: makes sure `user` can log in (their token exchanged, or still cached), so that a
    /// consent or conditional-access failure can be answered with an HTTP challenge before the call runs.
    pub async fn prepare_login(&self, user: UserLogin<'_>) -> Result<(), IdentityError> {
        match &self.logins {
            Logins::Service(_) => Ok(()),
            Logins::PerCaller(pools) => match pools.prepare(user.caller, user.token).await {
                Ok(()) | Err(UserSessionError::Database(_)) => Ok(()),
                Err(UserSessionError::Identity(error)) => Err(error),
            },
        }
    }

    /// Whether the database answers, for `/readyz`, and if not why, in words that name no host, user or server
    /// message (the probe is anonymous). A pool whose every connection is busy counts as ready: those calls are
    /// being answered, and waiting for a free connection would fail the probe just when the server is busiest.
    pub async fn readiness(&self) -> Result<(), String> {
        match &self.logins {
            Logins::Service(pool) => {
                let status = pool.status();
                if status.available == 0 && status.size >= status.max_size {
                    return Ok(());
                }
                let conn = pool.get().await.map_err(|error| unready_pool(&error))?;
                match tokio::time::timeout(READINESS_QUERY_BOUND, conn.simple_query("SELECT 1"))
                    .await
                {
                    Ok(answered) => answered.map(drop).map_err(|error| unready(&error)),
                    Err(_) => {
                        // An answer may still come on this connection: it leaves the pool, closed.
                        drop(crate::db::session::Object::take(conn));
                        Err(format!(
                            "no answer within {} s",
                            READINESS_QUERY_BOUND.as_secs()
                        ))
                    }
                }
            }
            Logins::PerCaller(_) => match self.connector.server_accepts_connections().await {
                true => Ok(()),
                false => Err("the server does not accept connections".into()),
            },
        }
    }

    pub fn connector(&self) -> &PgConnector {
        &self.connector
    }

    pub fn status(&self) -> deadpool_postgres::Status {
        match &self.logins {
            Logins::Service(pool) => pool.status(),
            Logins::PerCaller(pools) => pools.status(),
        }
    }

    pub fn close(&self) {
        match &self.logins {
            Logins::Service(pool) => pool.close(),
            Logins::PerCaller(pools) => pools.close(),
        }
    }
}

fn service_pool(profile: &Profile, connector: Arc<PgConnector>) -> anyhow::Result<Pool> {
    let manager = SessionManager::new(connector.pg_config().clone(), SharedConnector(connector));
    Ok(Pool::builder(manager)
        .max_size(profile.pool_max)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(profile.pool_wait_timeout))
        .create_timeout(Some(profile.connect_timeout))
        .recycle_timeout(Some(Duration::from_secs(5)))
        .build()?)
}

/// Why the pool could not hand out a connection, for `/readyz`.
fn unready_pool(error: &PoolError) -> String {
    match error {
        PoolError::Backend(error) => unready(error),
        PoolError::Timeout(deadpool_postgres::TimeoutType::Create) => {
            "no connection could be opened within connect_timeout".into()
        }
        PoolError::Timeout(_) => "no connection came free in time".into(),
        PoolError::Closed => "shutting down".into(),
        _ => "the connection pool failed".into(),
    }
}

/// Why a connection failed, for `/readyz`: the kind of failure, never the server's own text (it names users and
/// databases) or an address.
fn unready(error: &tokio_postgres::Error) -> String {
    use crate::identity::IdentityErrorKind;
    if let Some(failure) = crate::db::connect::credential_failure_of(error) {
        return match failure.kind {
            IdentityErrorKind::Unavailable => {
                "the database credential's token service is unavailable"
            }
            IdentityErrorKind::Config => "the database credential is misconfigured",
            _ => "the database credential was refused by its token service",
        }
        .into();
    }
    if let Some(db) = error.as_db_error() {
        let what = match db.code().code() {
            "28P01" | "28000" => "the server refused the login",
            "57P03" => "the server is starting up or shutting down",
            "57P01" | "57P02" => "the server ended the session",
            "3D000" => "the database does not exist",
            "53300" => "the server has no connection slots left",
            _ => "the server refused the session",
        };
        return format!("{what} (SQLSTATE {})", db.code().code());
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused",
                std::io::ErrorKind::TimedOut => "no answer within connect_timeout",
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted => {
                    "the connection was reset"
                }
                _ => "the connection failed",
            }
            .into();
        }
        source = cause.source();
    }
    if error.is_closed() {
        "the connection was closed".into()
    } else {
        "the connection failed".into()
    }
}

/// A caller's failed login, worded for the caller: what was wrong with their sign-in, never a token.
fn caller_login_error(error: &IdentityError) -> ToolError {
    let message = match &error.kind {
        IdentityErrorKind::InteractionRequired { .. } => format!(
            "sign in again: Entra needs the user to consent or complete a sign-in requirement before pgmcp may \
             log in to PostgreSQL on their behalf ({})",
            error.message
        ),
        _ => error.message.clone(),
    };
    ToolError::CallerLogin { message }
}

struct SharedConnector(Arc<PgConnector>);

impl SessionConnect for SharedConnector {
    fn connect_session<'a>(
        &'a self,
        config: &'a tokio_postgres::Config,
    ) -> futures_util::future::BoxFuture<'a, Result<Connected, tokio_postgres::Error>> {
        self.0.connect_session(config)
    }
}
