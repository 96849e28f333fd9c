//! A pooled PostgreSQL session: tokio-postgres's client with deadpool's statement cache, plus the server's
//! notices on that connection, which the guard reads to see a statement as PostgreSQL resolved it.

use std::sync::{Arc, Mutex};

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use deadpool_postgres::ClientWrapper;
use futures_util::future::BoxFuture;
use postgres_protocol::message::backend::DataRowBody;
use tokio::task::JoinHandle;
use tokio_postgres::error::DbError;
use tokio_postgres::fallible_iterator::FallibleIterator;
use tokio_postgres::{Client, Config};

use crate::guard::resolved::PreparedQueries;

pub type Pool = managed::Pool<SessionManager>;
pub type Object = managed::Object<SessionManager>;
pub type PoolError = managed::PoolError<tokio_postgres::Error>;

/// The message PostgreSQL gives a `debug_print_rewritten` dump; its detail is the tree.
const REWRITTEN_TREE_MESSAGE: &str = "rewritten parse tree:";
/// A statement whose resolved tree is larger than this is not checked but refused: the tree of a query over many
/// nested views can be large, and holding an unbounded amount of it would let one call grow pgmcp's memory.
pub const MAX_TREE_BYTES: usize = 8 * 1024 * 1024;

/// What the connection task hands over from the server's notices while a call listens for resolved trees.
#[derive(Default, Debug)]
struct NoticeState {
    listening: bool,
    trees: Vec<String>,
    bytes: usize,
    overflowed: bool,
}

/// The resolved-tree notices of one connection. The connection task offers every notice; only the trees that
/// arrive while a call listens are kept, so notices nobody asked for cost nothing.
#[derive(Clone, Default, Debug)]
pub struct Notices(Arc<Mutex<NoticeState>>);

/// The trees PostgreSQL printed for the statements parsed while listening.
#[derive(Debug)]
pub enum ResolvedTrees {
    Trees(Vec<String>),
    /// More than [`MAX_TREE_BYTES`] arrived.
    TooLarge,
}

impl Notices {
    fn state(&self) -> std::sync::MutexGuard<'_, NoticeState> {
        // Only plain data is kept under the lock: a panic elsewhere cannot leave it half-written.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Called by the connection task, in the order the server sent its messages: a tree sent before a
    /// statement's ParseComplete is therefore here before the call sees the statement prepared.
    pub(crate) fn offer(&self, notice: &DbError) {
        if notice.message() != REWRITTEN_TREE_MESSAGE {
            return;
        }
        let mut state = self.state();
        if !state.listening {
            return;
        }
        let tree = notice.detail().unwrap_or_default();
        state.bytes += tree.len();
        if state.bytes > MAX_TREE_BYTES {
            state.overflowed = true;
            state.trees.clear();
        } else if !state.overflowed {
            state.trees.push(tree.to_owned());
        }
    }

    /// Starts keeping resolved trees, forgetting any kept before.
    pub fn listen(&self) {
        let mut state = self.state();
        *state = NoticeState {
            listening: true,
            ..NoticeState::default()
        };
    }

    /// Stops listening and hands over what arrived since [`Notices::listen`].
    pub fn take(&self) -> ResolvedTrees {
        let state = std::mem::take(&mut *self.state());
        if state.overflowed {
            ResolvedTrees::TooLarge
        } else {
            ResolvedTrees::Trees(state.trees)
        }
    }
}

/// One connection as the pool hands it out: the client (with its statement cache) and its notices.
#[derive(Debug)]
pub struct Session {
    client: ClientWrapper,
    pub notices: Notices,
    /// Set when a call gave up waiting for the server: the connection's protocol state is unknown (an answer may
    /// still arrive), so it is closed instead of being checked or reused.
    broken: bool,
    /// What the session check sent behind a read's ROLLBACK, in the read's own flight (see
    /// [`Session::flight_plan`]), found; the call's connection is kept or closed on it when the call lets go.
    flight_check: Option<FlightCheck>,
    /// Whether the connection has pgmcp's own statements ([`OWN_STATEMENTS`]) for a read's flight.
    own_statements: OwnStatements,
    /// The call holds a session advisory lock on purpose (hypopg's marker), which the check in a read's flight
    /// would release.
    keeps_advisory_locks: bool,
    /// The guard's catalog queries, as this connection prepared them.
    pub catalog_queries: PreparedQueries,
}

/// What the session check in a read's own flight found.
#[derive(Debug)]
pub enum FlightCheck {
    /// Nothing outlived the read's rollback.
    Clean,
    /// Something did, in words for the log.
    Left(String),
    /// The check itself failed, so nothing is known.
    Failed(tokio_postgres::Error),
}

/// pgmcp's own statements for a read's flight on one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OwnStatements {
    Unprepared,
    Prepared,
    /// One was missing or its name already taken when a flight used it: a function the profile trusts removed it,
    /// or a proxy sent the flight to a server that never saw it. Flights then send their BEGIN and ROLLBACK as
    /// text, and calls end with a check of their own.
    Unusable,
}

/// How a read's flight sends pgmcp's own statements: the BEGIN, the ROLLBACK and the session check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlightPlan {
    /// Prepared under their names ([`OWN_STATEMENTS`]) at the start of the flight, then run by name: the
    /// connection's first flight.
    Prepare { check: bool },
    /// Run by name, as an earlier flight prepared them.
    Named { check: bool },
    /// The BEGIN and the ROLLBACK as text, parsed afresh, and no check: the call ends with a check of its own.
    Text,
}

impl FlightPlan {
    /// Whether the session check runs behind the ROLLBACK.
    pub fn checks(self) -> bool {
        match self {
            FlightPlan::Prepare { check } | FlightPlan::Named { check } => check,
            FlightPlan::Text => false,
        }
    }
}

/// What a read's flight told about pgmcp's own statements and the session.
#[derive(Debug)]
pub struct FlightEnd {
    /// The flight's BEGIN completed, so the statements it prepared exist.
    pub began: bool,
    /// The flight stopped before its BEGIN ran because one of pgmcp's own statements was missing or its name taken.
    pub own_statement_missing: bool,
    /// The session check's answer (its rows: how many, and how many name a leftover), or the error that stopped
    /// the ROLLBACK or the check; `None` when the check was not sent or the flight ended before it.
    pub check: Option<Result<CheckRows, tokio_postgres::Error>>,
}

/// The rows of [`AFTER_ROLLBACK_SQL`]'s answer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CheckRows {
    pub rows: usize,
    /// Rows that name a prepared statement.
    pub leftovers: usize,
}

impl CheckRows {
    /// Counts one row of the check's answer.
    pub fn count(&mut self, row: &DataRowBody) {
        self.rows += 1;
        // The column is NULL on the one row of a session that holds nothing; anything else counts as a leftover,
        // an unreadable row included.
        if !matches!(row.ranges().next(), Ok(Some(None))) {
            self.leftovers += 1;
        }
    }

    /// In words for the log; `None` when nothing is left.
    fn found(self) -> Option<String> {
        match self {
            CheckRows { rows: 0, .. } => Some("the session check returned no row".into()),
            CheckRows { leftovers: 0, .. } => None,
            CheckRows { leftovers, .. } => Some(format!("prepared statements: {leftovers}")),
        }
    }
}

impl Session {
    /// Marks the connection as not to be reused: it is closed when the call lets go of it.
    pub fn mark_broken(&mut self) {
        self.broken = true;
    }

    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// How the next read's flight sends pgmcp's own statements ([`OWN_STATEMENTS`]): prepared under their names by
    /// the first flight that sends them, then only bound and run. Parsing them afresh would cost the server more
    /// than running them does, the check's catalog functions most. The flight reports back with
    /// [`Session::flight_ended`].
    pub fn flight_plan(&self) -> FlightPlan {
        let check = !self.keeps_advisory_locks;
        match self.own_statements {
            OwnStatements::Unprepared => FlightPlan::Prepare { check },
            OwnStatements::Prepared => FlightPlan::Named { check },
            OwnStatements::Unusable => FlightPlan::Text,
        }
    }

    /// Takes what a flight sent as `plan` told: whether pgmcp's own statements now exist, and what the session
    /// check found.
    pub fn flight_ended(&mut self, plan: FlightPlan, end: FlightEnd) {
        if end.own_statement_missing {
            self.own_statements = OwnStatements::Unusable;
        } else if end.began && matches!(plan, FlightPlan::Prepare { .. }) {
            self.own_statements = OwnStatements::Prepared;
        }
        self.flight_check = match end.check {
            None => None,
            Some(Ok(rows)) => Some(match rows.found() {
                None => FlightCheck::Clean,
                Some(left) => FlightCheck::Left(left),
            }),
            // Removed by a function the profile trusts, or behind a proxy: the call's own check, sent when it lets
            // go of the connection, stands in for it, and later flights stop sending it.
            Some(Err(error)) if statement_missing_or_taken(&error) => {
                self.own_statements = OwnStatements::Unusable;
                None
            }
            Some(Err(error)) => Some(FlightCheck::Failed(error)),
        };
    }

    /// What the check in the call's last flight found, if it was made; taking it leaves none.
    pub fn take_flight_check(&mut self) -> Option<FlightCheck> {
        self.flight_check.take()
    }

    /// While set, reads on this session leave its advisory locks alone (see [`AFTER_ROLLBACK_SQL`]): their flights
    /// send no check.
    pub fn keep_advisory_locks(&mut self, keep: bool) {
        self.keeps_advisory_locks = keep;
    }

    /// Forgets what a flight's check found: work sent after it makes that stale.
    pub fn discard_flight_check(&mut self) {
        self.flight_check = None;
    }
}

impl std::ops::Deref for Session {
    type Target = ClientWrapper;

    fn deref(&self) -> &ClientWrapper {
        &self.client
    }
}

impl std::ops::DerefMut for Session {
    fn deref_mut(&mut self) -> &mut ClientWrapper {
        &mut self.client
    }
}

/// A new connection: the client, the task driving the connection, and where that task puts notices.
pub struct Connected {
    pub client: Client,
    pub task: JoinHandle<()>,
    pub notices: Notices,
}

/// How a pool logs in: the profile's own identity, or one signed-in caller's.
pub trait SessionConnect: Send + Sync {
    fn connect_session<'a>(
        &'a self,
        config: &'a Config,
    ) -> BoxFuture<'a, Result<Connected, tokio_postgres::Error>>;
}

/// deadpool's manager for [`Session`]s. Checkout only checks that the connection is alive: a call that may have
/// left state behind is checked (and its connection closed) when it ends, see `tools::dispatch`.
pub struct SessionManager {
    config: Config,
    connect: Box<dyn SessionConnect>,
}

impl std::fmt::Debug for SessionManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The configuration may hold a password.
        f.debug_struct("SessionManager").finish_non_exhaustive()
    }
}

impl SessionManager {
    pub fn new(config: Config, connect: impl SessionConnect + 'static) -> SessionManager {
        SessionManager {
            config,
            connect: Box::new(connect),
        }
    }
}

impl managed::Manager for SessionManager {
    type Type = Session;
    type Error = tokio_postgres::Error;

    async fn create(&self) -> Result<Session, tokio_postgres::Error> {
        let connected = self.connect.connect_session(&self.config).await?;
        Ok(Session {
            client: ClientWrapper::new(connected.client, connected.task),
            notices: connected.notices,
            broken: false,
            flight_check: None,
            keeps_advisory_locks: false,
            own_statements: OwnStatements::Unprepared,
            catalog_queries: PreparedQueries::default(),
        })
    }

    async fn recycle(
        &self,
        session: &mut Session,
        _: &Metrics,
    ) -> RecycleResult<tokio_postgres::Error> {
        if session.is_closed() {
            return Err(RecycleError::message("connection closed"));
        }
        if session.broken {
            return Err(RecycleError::message(
                "a call gave up waiting for this connection",
            ));
        }
        Ok(())
    }
}

/// What a connection still holds after a call, beyond the call's own (rolled back or committed) transaction.
/// Read-only calls are rolled back, which undoes settings, temporary objects, LISTEN and the holdable cursors
/// the transaction declared; advisory locks and SQL-level prepared statements outlive a rollback, and a committed
/// write keeps everything. This is the check a call sends on its own, right behind its ROLLBACK or COMMIT; a read
/// whose ROLLBACK went in its own flight is checked with [`AFTER_ROLLBACK_SQL`] instead.
///
/// pgmcp prepares its own statements at the protocol level (Parse), never with `PREPARE`, so every SQL-level
/// statement is something a call left.
pub const LEFTOVERS_SQL: &str = "\
SELECT (SELECT count(*) FROM pg_catalog.pg_locks \
          WHERE locktype = 'advisory' AND pid = pg_catalog.pg_backend_pid())::int4, \
       (SELECT count(*) FROM pg_catalog.pg_prepared_statements WHERE from_sql)::int4, \
       (SELECT count(*) FROM pg_catalog.pg_cursors WHERE is_holdable)::int4, \
       (SELECT count(*) FROM pg_catalog.pg_listening_channels())::int4, \
       CASE WHEN pg_catalog.pg_my_temp_schema() = 0 THEN 0 \
            ELSE (SELECT count(*) FROM pg_catalog.pg_class \
                  WHERE relnamespace = pg_catalog.pg_my_temp_schema())::int4 END, \
       CASE WHEN $1 THEN (SELECT count(*) FROM pg_catalog.pg_settings WHERE source = 'session')::int4 \
            ELSE 0 END";
const LEFTOVER_KINDS: [&str; 6] = [
    "advisory locks",
    "prepared statements",
    "holdable cursors",
    "LISTEN channels",
    "temporary relations",
    "changed settings",
];

/// The session check sent in a read's own flight, right behind the ROLLBACK of a transaction that began on a
/// session holding nothing (every call before it was checked): it deals only with what a rollback leaves standing.
/// Its answer is one row whose column is NULL when nothing is left, else one row per SQL-level prepared statement.
///
/// - Holdable cursors declared, channels listened to, temporary relations created and settings changed in a
///   transaction that rolls back end with it (`tests/profiles.rs` holds PostgreSQL to that), so they are not
///   looked for again.
/// - Session advisory locks are released, not counted. `pg_locks` snapshots the whole server's lock tables, so
///   its cost grows with `max_connections`: 0.04 ms of the server's time per call at 100 connections, 0.3 ms at
///   2,000 (Azure's larger tiers allow 5,000), against a few microseconds for the release, which walks only the
///   session's own locks. A lock a read took is gone when the read ends either way, and other sessions waiting
///   on it go on. The check a call sends on its own ([`LEFTOVERS_SQL`]: a statement's first run, other tools,
///   writes) still counts locks, and closes a connection that holds any.
/// - SQL-level prepared statements are listed: `DEALLOCATE ALL` would also drop the protocol-level statements
///   pgmcp keeps on the connection.
/// - The release is the outer side of a left join, so it runs even when no statement is listed; and the rows come
///   straight from the function behind `pg_prepared_statements`, with no aggregate or subquery, which cost the
///   server several times what the scan does (BENCHMARKS.md, issue 17's tenth step).
///
/// A function the profile trusts could still replace the check itself with a `DEALLOCATE` and a `PREPARE` of its
/// own under the check's name, and make it answer "nothing left"; no statement run by name can prove it is the
/// one pgmcp prepared. The replacement is SQL-level, so the check a call sends on its own counts it.
pub const AFTER_ROLLBACK_SQL: &str = "\
SELECT left_behind.name FROM pg_catalog.pg_advisory_unlock_all() AS released \
  LEFT JOIN (SELECT listed.name FROM pg_catalog.pg_prepared_statement() AS listed WHERE listed.from_sql) \
    AS left_behind ON true";

/// pgmcp's own statements in a read's flight, as each connection's first flight prepares them (name, text): the
/// BEGIN, the ROLLBACK and the session check, in the order a flight runs them. The names cannot clash with
/// tokio-postgres's own (`s` and a number).
pub const OWN_STATEMENTS: [(&str, &str); 3] = [
    ("pgmcp_begin_read_only", "START TRANSACTION READ ONLY"),
    ("pgmcp_rollback", "ROLLBACK"),
    ("pgmcp_session_check", AFTER_ROLLBACK_SQL),
];

/// What the session check found, in words for the log; `None` when the connection holds nothing.
pub async fn leftovers(
    session: &mut Session,
    committed: bool,
    cached: bool,
) -> Result<Option<String>, tokio_postgres::Error> {
    let rows = if cached {
        let statement = session.prepare_cached(LEFTOVERS_SQL).await?;
        session.query(&statement, &[&committed]).await?
    } else {
        // A transaction-pooling proxy (statement_cache = 0) gets no prepared statement left on its servers.
        session
            .query_typed(
                LEFTOVERS_SQL,
                &[(&committed, tokio_postgres::types::Type::BOOL)],
            )
            .await?
    };
    let Some(row) = rows.first() else {
        return Ok(Some("the session check returned no row".into()));
    };
    let mut counts = [0i32; LEFTOVER_KINDS.len()];
    for (index, count) in counts.iter_mut().enumerate() {
        *count = row.try_get(index)?;
    }
    Ok(describe(&LEFTOVER_KINDS, &counts))
}

/// A Bind of a statement the connection does not have (a proxy's other server, or a function the profile trusts
/// removed it), or a Parse of a name the connection already has.
pub fn statement_missing_or_taken(error: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    error.code().is_some_and(|code| {
        *code == SqlState::INVALID_SQL_STATEMENT_NAME || *code == SqlState::DUPLICATE_PSTATEMENT
    })
}

fn describe(kinds: &[&str], counts: &[i32]) -> Option<String> {
    let found: Vec<String> = (kinds.iter().zip(counts))
        .filter(|(_, count)| **count > 0)
        .map(|(kind, count)| format!("{kind}: {count}"))
        .collect();
    (!found.is_empty()).then(|| found.join(", "))
}
