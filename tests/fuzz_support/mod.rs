//! The guard fuzzer's world: one throwaway cluster with the fixture, two victim sessions of the role pgmcp logs in
//! as, an observer, pgmcp's own `Database` (the library path), and the invariant checked after every call.
#![allow(dead_code)]

pub mod grammar;
mod probe;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures_util::StreamExt;
use pgmcp::db::Database;
use pgmcp::demo::cluster::{ClusterOptions, TempCluster};
use pgmcp::mcp::Databases;
use pgmcp::telemetry::audit::CallerIdentity;
use pgmcp::tools::ToolError;
use serde_json::{Value, json};
use tokio_postgres::{AsyncMessage, Client, NoTls};
use tokio_util::sync::CancellationToken;

pub use grammar::Case;
pub use probe::Baseline;

pub const FIXTURE: &str = include_str!("fixture.sql");
/// The marker file's content: no accepted answer may contain it.
pub const MARKER: &str = "FUZZ-MARKER-5e1f0c-file-content";
const MARKER_FILE: &str = "fuzz_marker.txt";
/// Sessions per pgmcp pool: a few, so that the probe can hold all of them at once.
pub const POOL_MAX: usize = 2;
const APP: &str = "pgmcp-fuzz";

/// Tests of this binary share the cluster and its victims; they take turns.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub struct Shared {
    pub cluster: TempCluster,
    pub marker_path: String,
}

/// The cluster shared by the tests of this binary, with the fixture loaded into `fuzz`.
pub fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let options = ClusterOptions {
            files: vec![(MARKER_FILE.into(), MARKER.as_bytes().to_vec())],
            ..ClusterOptions::default()
        };
        let cluster = TempCluster::start(&options).expect("start a throwaway PostgreSQL");
        cluster
            .psql("postgres", "CREATE DATABASE fuzz")
            .expect("create the fuzz database");
        cluster
            .psql("fuzz", FIXTURE)
            .expect("load the fuzz fixture");
        let marker_path = cluster.data_dir().join(MARKER_FILE).display().to_string();
        Shared {
            cluster,
            marker_path,
        }
    })
}

/// Where dblink connects: the fuzz database as the superuser, over the cluster's TCP port.
fn dblink_target() -> String {
    let cluster = &shared().cluster;
    format!(
        "host={} port={} dbname=fuzz user={} application_name=fuzz-dblink",
        cluster.host(),
        cluster.port(),
        cluster.superuser()
    )
}

/// Who pgmcp logs in as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// A plain role, the victims' own: it may signal them.
    Prober,
    /// A superuser: it may also read files and use dblink.
    Superuser,
}

pub fn url(role: Role, application_name: &str) -> String {
    let cluster = &shared().cluster;
    let base = match role {
        Role::Prober => format!(
            "postgresql://prober@{}:{}/fuzz",
            cluster.host(),
            cluster.port()
        ),
        Role::Superuser => cluster.url("fuzz"),
    };
    format!("{base}?application_name={application_name}")
}

pub async fn connect(role: Role, application_name: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(&url(role, application_name), NoTls)
        .await
        .expect("connect to the fuzz database");
    tokio::spawn(connection);
    client
}

/// An idle session of the prober role that LISTENs: it must stay alive and receive nothing.
pub struct Victim {
    pub client: Client,
    pub pid: i32,
    pub notifications: Arc<AtomicUsize>,
}

impl Victim {
    pub async fn start() -> Victim {
        let (client, mut connection) =
            tokio_postgres::connect(&url(Role::Prober, "fuzz-victim"), NoTls)
                .await
                .expect("victim connects");
        let notifications = Arc::new(AtomicUsize::new(0));
        let counter = notifications.clone();
        tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(_)) => {
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        });
        client.batch_execute("LISTEN fuzz").await.expect("LISTEN");
        let pid = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .expect("victim pid")
            .get(0);
        Victim {
            client,
            pid,
            notifications,
        }
    }

    pub async fn responds(&self) -> bool {
        let ping = self.client.simple_query("SELECT 1");
        matches!(
            tokio::time::timeout(Duration::from_secs(2), ping).await,
            Ok(Ok(_))
        )
    }
}

/// A session of the prober role that is always running a long sleep: a cancel or terminate ends its statement,
/// which it counts before starting another.
pub struct Busy {
    pub pid: Arc<AtomicI32>,
    pub interrupted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Busy {
    pub async fn start() -> Busy {
        let pid = Arc::new(AtomicI32::new(0));
        let interrupted = Arc::new(AtomicUsize::new(0));
        let (pid_out, count) = (pid.clone(), interrupted.clone());
        let task = tokio::spawn(async move {
            loop {
                let client = connect(Role::Prober, "fuzz-busy").await;
                let own: i32 = client
                    .query_one("SELECT pg_backend_pid()", &[])
                    .await
                    .expect("busy pid")
                    .get(0);
                pid_out.store(own, Ordering::SeqCst);
                loop {
                    if client.simple_query("SELECT pg_sleep(3600)").await.is_err() {
                        count.fetch_add(1, Ordering::SeqCst);
                        break;
                    }
                }
            }
        });
        Busy {
            pid,
            interrupted,
            task,
        }
    }

    /// Until the current session is inside its sleep (bounded).
    pub async fn wait_running(&self, observer: &Client) {
        for _ in 0..200 {
            let pid = self.pid.load(Ordering::SeqCst);
            let sleeping: i64 = observer
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND state = 'active' \
                     AND query LIKE '%pg_sleep(3600)%'",
                    &[&pid],
                )
                .await
                .expect("pg_stat_activity")
                .get(0);
            if pid != 0 && sleeping == 1 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the busy victim did not start sleeping within 2 s");
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// pgmcp's log lines, for the warning the session check writes when it closes a connection.
fn captured_log() -> &'static Mutex<String> {
    static LOG: OnceLock<Mutex<String>> = OnceLock::new();
    LOG.get_or_init(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(|| LogWriter)
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        Mutex::new(String::new())
    })
}

struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut log = captured_log().lock().unwrap_or_else(|e| e.into_inner());
        log.push_str(&String::from_utf8_lossy(bytes));
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Takes what pgmcp logged since the last call: how many connections its session check closed.
fn sessions_closed_by_check() -> usize {
    let mut log = captured_log().lock().unwrap_or_else(|e| e.into_inner());
    let closed = log.matches("closing the connection").count();
    log.clear();
    closed
}

/// What became of one statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Refused by the syntactic stage.
    RejectedByParseTree,
    /// Refused once PostgreSQL showed what the statement resolves to.
    RejectedAsResolved,
    /// Accepted and answered.
    Answered,
    /// Accepted; the read-only transaction refused a write (stage 3 stopped it).
    StoppedByReadOnlyTransaction,
    /// Accepted; PostgreSQL refused for lack of privilege.
    PermissionDenied,
    /// Accepted; any other PostgreSQL error (type mismatches of odd compositions, mostly).
    OtherDatabaseError,
    TimedOut,
    Unavailable,
    InvalidArgument,
}

/// One call's result and whether the invariant held.
#[derive(Debug, Clone)]
pub struct Report {
    pub sql: String,
    pub params: Vec<Value>,
    pub role: Role,
    pub outcome: Outcome,
    /// The answer or the error, as the caller saw it.
    pub answer: String,
    /// Connections pgmcp's session check closed after the call (the guard let something through that left state).
    pub closed_by_check: usize,
    pub violations: Vec<String>,
}

/// Counts by outcome, and every case that broke the invariant.
#[derive(Default)]
pub struct Tally {
    pub outcomes: BTreeMap<(Role, Outcome), usize>,
    /// Accepted calls after which the session check had to close the connection: contained, but a guard miss.
    pub contained_by_session_check: Vec<(Case, Report)>,
    pub findings: Vec<(Case, Report)>,
}

impl Tally {
    pub fn add(&mut self, case: &Case, report: Report) {
        *self
            .outcomes
            .entry((report.role, report.outcome))
            .or_default() += 1;
        if !report.violations.is_empty() {
            self.findings.push((case.clone(), report));
        } else if report.closed_by_check > 0 {
            self.contained_by_session_check.push((case.clone(), report));
        }
    }

    pub fn summary(&self) -> String {
        let mut text = String::from("outcomes:\n");
        for ((role, outcome), count) in &self.outcomes {
            text.push_str(&format!("  {role:?} {outcome:?}: {count}\n"));
        }
        text.push_str(&format!(
            "accepted calls whose connection the session check closed: {}\n",
            self.contained_by_session_check.len()
        ));
        let mut by_function = BTreeMap::<&str, usize>::new();
        for (case, _) in &self.contained_by_session_check {
            *by_function.entry(case.danger.name).or_default() += 1;
        }
        for (name, count) in by_function {
            text.push_str(&format!("  contained, through {name}: {count}\n"));
        }
        text.push_str(&format!("invariant violations: {}\n", self.findings.len()));
        for (case, report) in &self.findings {
            text.push_str(&format!(
                "  FINDING [{}.{} {:?} {:?} {:?}] as {:?}: {} params {:?} -> {:?} {} => {}\n",
                case.danger.schema,
                case.danger.name,
                case.syntax,
                case.arg,
                case.position,
                report.role,
                report.sql,
                report.params,
                report.outcome,
                report.answer.chars().take(160).collect::<String>(),
                report.violations.join("; ")
            ));
        }
        text
    }
}

/// pgmcp (library path) plus everything the invariant looks at.
pub struct Harness {
    prober: Databases,
    superuser: Databases,
    pub observer: Client,
    pub victim: Victim,
    pub busy: Busy,
    baseline: Baseline,
}

fn database(role: Role) -> Databases {
    let mut settings = pgmcp::config::ConnSettings::parse(&url(role, APP)).expect("URL");
    settings.application_name = Some(APP.into());
    let mut profile = pgmcp::config::Profile::new("fuzz", settings);
    profile.pool_max = POOL_MAX;
    profile.statement_timeout = Duration::from_secs(5);
    let db = Database::new(profile).expect("pgmcp database");
    Databases::new(vec![Arc::new(db)])
}

impl Harness {
    pub async fn start() -> Harness {
        captured_log();
        let observer = connect(Role::Superuser, "fuzz-observer").await;
        let victim = Victim::start().await;
        let busy = Busy::start().await;
        let mut harness = Harness {
            prober: database(Role::Prober),
            superuser: database(Role::Superuser),
            observer,
            victim,
            busy,
            baseline: Baseline::default(),
        };
        harness.restore().await;
        harness
    }

    fn databases(&self, role: Role) -> &Databases {
        match role {
            Role::Prober => &self.prober,
            Role::Superuser => &self.superuser,
        }
    }

    /// Fills in the victims' pids and the marker file's path.
    pub fn render(&self, text: &str) -> String {
        text.replace("{pid}", &self.victim.pid.to_string())
            .replace("{busy}", &self.busy.pid.load(Ordering::SeqCst).to_string())
            .replace("{file}", &shared().marker_path)
            .replace("{conn}", &dblink_target())
    }

    /// Runs `sql` through pgmcp's execute_query as `role`, then checks the invariant.
    pub async fn run_sql(&mut self, sql: &str, params: &[Value], role: Role) -> Report {
        let sql = self.render(sql);
        let params: Vec<Value> = params
            .iter()
            .map(|p| match p {
                Value::String(s) => Value::String(self.render(s)),
                other => other.clone(),
            })
            .collect();
        let arguments = json!({ "sql": sql, "params": params });
        let Value::Object(arguments) = arguments else {
            unreachable!("an object")
        };
        let cancel = CancellationToken::new();
        let call = pgmcp::tools::dispatch::call_tool(
            self.databases(role),
            "execute_query",
            arguments,
            &cancel,
            None,
            &CallerIdentity::Local,
        );
        let (outcome, answer) = match tokio::time::timeout(Duration::from_secs(30), call).await {
            Err(_) => (Outcome::TimedOut, "no answer within 30 s".to_string()),
            Ok(Ok(answer)) => (Outcome::Answered, answer.text),
            Ok(Err(error)) => (classify(&error), error.to_string()),
        };
        let mut violations = self.check_invariant(role).await;
        if answer.contains(MARKER) {
            violations.push("the answer contains the marker file's content".into());
        }
        let closed_by_check = sessions_closed_by_check();
        if !violations.is_empty() {
            self.restore().await;
        }
        Report {
            sql,
            params,
            role,
            outcome,
            answer,
            closed_by_check,
            violations,
        }
    }

    /// Runs the case; an answered case runs a second time, because a statement PostgreSQL resolved and pgmcp
    /// checked is remembered for a while and then runs from the connection's prepared statements in one flight
    /// (BEGIN, the statement and ROLLBACK sent together): the path most calls take must hold the invariant too.
    pub async fn run(&mut self, case: &Case, role: Role) -> Report {
        let first = self.run_sql(&case.sql, &case.params, role).await;
        if first.outcome != Outcome::Answered || !first.violations.is_empty() {
            return first;
        }
        let mut again = self.run_sql(&case.sql, &case.params, role).await;
        for violation in &mut again.violations {
            *violation = format!("when run again (one flight): {violation}");
        }
        again
    }

    /// Every pooled pgmcp session, held at once: only once each is back from its session check.
    async fn pooled_sessions(&self, role: Role) -> Option<Vec<pgmcp::db::session::Object>> {
        let db = self.databases(role).select(None).expect("the fuzz profile");
        let all = futures_util::future::try_join_all((0..POOL_MAX).map(|_| db.get()));
        match tokio::time::timeout(Duration::from_secs(10), all).await {
            Ok(Ok(sessions)) => Some(sessions),
            _ => None,
        }
    }

    /// Puts the world back after a violation: new victims, fresh baseline.
    pub async fn restore(&mut self) {
        if !self.victim.responds().await {
            self.victim = Victim::start().await;
        }
        self.busy.wait_running(&self.observer).await;
        self.observer
            .execute("UPDATE public.targets SET pid = $1", &[&self.victim.pid])
            .await
            .expect("point targets at the victim");
        self.observer
            .batch_execute(
                "SELECT pg_advisory_unlock_all(); \
                 SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() \
                   AND coalesce(application_name, '') NOT IN ('fuzz-victim', 'fuzz-busy', 'fuzz-observer', 'pgmcp-fuzz')",
            )
            .await
            .expect("clean up");
        self.baseline = probe::baseline(self).await;
    }
}

fn classify(error: &ToolError) -> Outcome {
    match error {
        ToolError::Rejected { reason } if reason.contains("resolves the statement") => {
            Outcome::RejectedAsResolved
        }
        ToolError::Rejected { .. } => Outcome::RejectedByParseTree,
        ToolError::Database { sqlstate, .. } if sqlstate == "25006" => {
            Outcome::StoppedByReadOnlyTransaction
        }
        ToolError::Database { sqlstate, .. } if sqlstate == "42501" => Outcome::PermissionDenied,
        ToolError::Database { .. } => Outcome::OtherDatabaseError,
        ToolError::Timeout { .. } => Outcome::TimedOut,
        ToolError::InvalidArgument { .. } => Outcome::InvalidArgument,
        ToolError::Unavailable { .. } | ToolError::Busy { .. } | ToolError::CallerLogin { .. } => {
            Outcome::Unavailable
        }
    }
}
