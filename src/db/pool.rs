//! One connection pool per profile. Connections come back clean: the pool resets session state on recycle, so no
//! caller can leave a `search_path`, role or setting behind for the next one.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};

use crate::config::{AccessMode, Profile};
use crate::db::connect::PgConnector;
use crate::guard::GuardPolicy;
use crate::tools::ToolError;

/// A profile's database: its pool, its guard policy and its limits.
pub struct Database {
    pub profile: Profile,
    pub policy: GuardPolicy,
    pool: Pool,
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
        let connector = Arc::new(PgConnector::with_env(&profile, env)?);
        let manager = Manager::from_connect(
            connector.pg_config().clone(),
            SharedConnector(connector.clone()),
            ManagerConfig {
                // `Clean` is DISCARD ALL without DEALLOCATE ALL (session authorization, settings, temp tables,
                // LISTEN, advisory locks, cursors, sequences' state). Prepared statements stay because tokio-postgres
                // caches its own type-lookup statements per connection; callers cannot create any (the guard refuses
                // PREPARE, and pgmcp's own statements are closed when dropped).
                recycling_method: RecyclingMethod::Clean,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(profile.pool_max)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(profile.connect_timeout + Duration::from_secs(5)))
            .create_timeout(Some(profile.connect_timeout))
            .recycle_timeout(Some(Duration::from_secs(5)))
            .build()?;
        let mut policy = match profile.access_mode {
            AccessMode::ReadOnly => GuardPolicy::read_only(),
            AccessMode::ReadWrite => GuardPolicy::read_write(profile.allow_ddl),
        };
        policy
            .denied_functions
            .extend(profile.deny_functions.iter().map(|f| f.to_lowercase()));
        policy.allowed_volatile_functions.extend(
            profile
                .allow_volatile_functions
                .iter()
                .map(|f| f.to_lowercase()),
        );
        Ok(Database {
            profile,
            policy,
            pool,
            connector,
        })
    }

    /// Opens `pool_min` connections ahead of the first call, so the first agent request does not pay for TLS and
    /// authentication. Failures are only logged: the pool retries on demand.
    pub async fn warm_up(&self) {
        let mut held = Vec::new();
        for _ in 0..self.profile.pool_min {
            match self.pool.get().await {
                Ok(conn) => held.push(conn),
                Err(err) => {
                    tracing::warn!(profile = %self.profile.name, error = %err, "could not pre-open a connection");
                    break;
                }
            }
        }
    }

    pub async fn get(&self) -> Result<Object, ToolError> {
        self.pool.get().await.map_err(|error| {
            // A credential that could not be obtained says why in its own words, not as a generic I/O error.
            if let deadpool_postgres::PoolError::Backend(backend) = &error
                && let Some(failure) = crate::db::connect::credential_failure_of(backend)
            {
                return ToolError::Unavailable {
                    message: format!("database credential unavailable: {failure}"),
                };
            }
            ToolError::from(error)
        })
    }

    pub fn connector(&self) -> &PgConnector {
        &self.connector
    }

    pub fn status(&self) -> deadpool_postgres::Status {
        self.pool.status()
    }

    pub fn close(&self) {
        self.pool.close();
    }
}

struct SharedConnector(Arc<PgConnector>);

impl deadpool_postgres::Connect for SharedConnector {
    fn connect(
        &self,
        pg_config: &tokio_postgres::Config,
    ) -> futures_util::future::BoxFuture<
        '_,
        Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), tokio_postgres::Error>,
    > {
        deadpool_postgres::Connect::connect(self.0.as_ref(), pg_config)
    }
}
