//! Shared by the fault-injection tests (tests/faults.rs) and the soak (tests/soak.rs): PostgreSQL clusters of their
//! own (restartable), the loopback proxy that breaks the network, pgmcp over HTTP and stdio configured with short
//! timeouts, a steady mixed load, and the analysis of what the callers saw.
#![allow(dead_code)]

pub mod load;
pub mod proxy;
pub mod raw;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use pgmcp::demo::cluster::{ClusterOptions, TempCluster};

/// The database every fault test queries: a small table, and `nap(seconds)`, a function that sleeps without using
/// the CPU (pg_sleep itself is on the guard's deny-list; the profiles trust `nap` by name).
const FIXTURE: &str = "
CREATE ROLE reader LOGIN;
GRANT CONNECT ON DATABASE app TO reader;
CREATE TABLE public.canary (id int PRIMARY KEY, note text NOT NULL);
INSERT INTO public.canary SELECT g, 'row ' || g FROM generate_series(1, 10) g;
CREATE FUNCTION public.nap(seconds float8) RETURNS int LANGUAGE plpgsql VOLATILE AS
  $$ BEGIN PERFORM pg_catalog.pg_sleep(seconds); RETURN 1; END $$;
GRANT USAGE ON SCHEMA public TO reader;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO reader;
";

/// A new cluster with the fixture, for a test that stops or restarts it.
pub fn fresh_cluster() -> TempCluster {
    let cluster = TempCluster::start(&ClusterOptions {
        // Quiet server log: the fault tests make it noisy with terminated sessions.
        settings: vec![("log_min_messages".into(), "fatal".into())],
        ..ClusterOptions::default()
    })
    .expect("start a throwaway PostgreSQL");
    cluster
        .psql("postgres", "CREATE DATABASE app")
        .expect("create app");
    cluster
        .psql("app", FIXTURE)
        .expect("load the fault fixture");
    cluster
}

/// The cluster shared by the tests that do not stop it.
pub fn shared_cluster() -> &'static TempCluster {
    static CLUSTER: OnceLock<TempCluster> = OnceLock::new();
    CLUSTER.get_or_init(fresh_cluster)
}

/// A superuser connection for looking at the server from outside pgmcp.
pub async fn observer(cluster: &TempCluster) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&cluster.url("app"), tokio_postgres::NoTls)
        .await
        .expect("observer connection");
    tokio::spawn(connection);
    client
}

/// The backends a pgmcp (told apart by its application_name) has open.
pub async fn backends(observer: &tokio_postgres::Client, application_name: &str) -> Vec<i32> {
    observer
        .query(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1",
            &[&application_name],
        )
        .await
        .expect("pg_stat_activity")
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// What an administrator does to sessions: `pg_terminate_backend` on every backend of that application.
pub async fn terminate_backends(
    observer: &tokio_postgres::Client,
    application_name: &str,
) -> usize {
    observer
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            &[&application_name],
        )
        .await
        .expect("pg_terminate_backend")
        .len()
}

/// Statements containing `marker` that are running now (other than the observer's own).
pub async fn running(observer: &tokio_postgres::Client, marker: &str) -> i64 {
    observer
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%' || $1 || '%' AND state = 'active' \
             AND pid <> pg_backend_pid()",
            &[&marker],
        )
        .await
        .expect("pg_stat_activity")
        .get(0)
}

/// Polls `check` every 20 ms until it holds or `limit` passes; returns how long it took.
pub async fn wait_for<F, Fut>(limit: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

/// A pgmcp configuration file with short timeouts, so a fault shows within seconds.
pub struct Config {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub application_name: String,
}

/// The knobs the tests turn; everything else is pgmcp's default.
#[derive(Clone)]
pub struct Settings {
    /// The profile's connection URL.
    pub url: String,
    pub application_name: String,
    pub statement_timeout: &'static str,
    pub connect_timeout: &'static str,
    pub pool_max: u32,
    pub pool_wait_timeout: &'static str,
    pub request_timeout: &'static str,
    /// Extra lines for the `[http]` table.
    pub http: String,
    /// Extra top-level tables (`[auth]`...).
    pub extra: String,
    /// Extra lines for the profile.
    pub profile: String,
}

impl Settings {
    pub fn new(port: u16, application_name: &str) -> Settings {
        Settings {
            url: format!("postgresql://reader@127.0.0.1:{port}/app"),
            application_name: application_name.to_string(),
            statement_timeout: "2s",
            connect_timeout: "1s",
            pool_max: 4,
            pool_wait_timeout: "2s",
            request_timeout: "8s",
            http: String::new(),
            extra: String::new(),
            profile: String::new(),
        }
    }

    /// The configuration file's text.
    pub fn text(&self) -> String {
        format!(
            "[profiles.main]\n\
             url = \"{url}\"\n\
             application_name = \"{app}\"\n\
             statement_timeout = \"{statement_timeout}\"\n\
             connect_timeout = \"{connect_timeout}\"\n\
             pool_max = {pool_max}\n\
             pool_wait_timeout = \"{pool_wait}\"\n\
             allow_volatile_functions = [\"public.nap\"]\n\
             {profile}\n\
             [http]\n\
             request_timeout = \"{request_timeout}\"\n\
             shutdown_timeout = \"5s\"\n\
             {http}\n\
             {extra}\n",
            url = self.url,
            app = self.application_name,
            statement_timeout = self.statement_timeout,
            connect_timeout = self.connect_timeout,
            pool_max = self.pool_max,
            pool_wait = self.pool_wait_timeout,
            request_timeout = self.request_timeout,
            profile = self.profile,
            http = self.http,
            extra = self.extra,
        )
    }

    pub fn write(&self) -> Config {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("pgmcp.toml");
        std::fs::write(&path, self.text()).expect("write the config");
        Config {
            dir,
            path,
            application_name: self.application_name.clone(),
        }
    }
}

impl Config {
    pub fn path(&self) -> &str {
        self.path.to_str().expect("UTF-8 path")
    }
}

/// No panic, and nothing the process printed looks like one.
pub fn assert_no_panic(log: &str) {
    assert!(!log.contains("panicked"), "pgmcp panicked:\n{log}");
}
