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
    /// [`Session::check_after_rollback`]), found; the call's connection is kept or closed on it when the call lets go.
    flight_check: Option<FlightCheck>,
    /// Whether [`Session::check_after_rollback`] prepares the SQL-level check, runs it, or no longer sends it.
    in_flight_check: InFlightCheck,
    /// The call holds a session advisory lock on purpose (hypopg's marker), which the check in a read's flight
    /// would release.
    keeps_advisory_locks: bool,
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

/// The SQL-level form of [`LEFTOVERS_SQL`] on one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InFlightCheck {
    Unprepared,
    Prepared,
    /// It was missing or already taken when run: behind a transaction-pooling proxy the statement lives on one
    /// of the proxy's servers, not on this connection. Calls end with a plain ROLLBACK and a check of their own.
    Off,
}

impl Session {
    /// Marks the connection as not to be reused: it is closed when the call lets go of it.
    pub fn mark_broken(&mut self) {
        self.broken = true;
    }

    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// The statements that check the session right behind a read's `ROLLBACK`, in the read's own flight: the
    /// session check as a statement `PREPARE`d on this connection, prepared by the first flight that sends it.
    /// Parsing and planning the check's catalog views afresh would cost the server several times what running the
    /// prepared plan does. Empty when the read must end with a plain `ROLLBACK` and a check of its own. The flight
    /// reports its answer with [`Session::flight_checked`].
    pub fn check_after_rollback(&self) -> &'static [&'static str] {
        if self.keeps_advisory_locks {
            return &[];
        }
        match self.in_flight_check {
            InFlightCheck::Unprepared => &[PREPARE_SESSION_CHECK, EXECUTE_SESSION_CHECK],
            InFlightCheck::Prepared => &[EXECUTE_SESSION_CHECK],
            InFlightCheck::Off => &[],
        }
    }

    /// Takes the answer of the statements [`Session::check_after_rollback`] gave: the check's row, or the error
    /// that stopped them. `None` when the flight ended before they ran (an error earlier in it), so no check was
    /// made.
    pub fn flight_checked(&mut self, answer: Option<Result<DataRowBody, tokio_postgres::Error>>) {
        self.flight_check = match answer {
            None => None,
            Some(Ok(row)) => {
                // The row came, so the statement exists now, whichever form was sent.
                self.in_flight_check = InFlightCheck::Prepared;
                Some(match after_rollback_leftovers(&row) {
                    None => FlightCheck::Clean,
                    Some(left) => FlightCheck::Left(left),
                })
            }
            // Behind a transaction-pooling proxy, or removed by a function the profile trusts: the call's own
            // check, sent when it lets go of the connection, stands in for it, and later reads stop sending it.
            Some(Err(error)) if statement_missing_or_taken(&error) => {
                self.in_flight_check = InFlightCheck::Off;
                None
            }
            Some(Err(error)) => Some(FlightCheck::Failed(error)),
        };
    }

    /// What the check in the call's last flight found, if it was made; taking it leaves none.
    pub fn take_flight_check(&mut self) -> Option<FlightCheck> {
        self.flight_check.take()
    }

    /// While set, reads on this session leave its advisory locks alone (see [`AFTER_ROLLBACK_SQL`]).
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
            in_flight_check: InFlightCheck::Unprepared,
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

/// The session check's SQL-level statement name, for the texts `concat!` builds with it.
macro_rules! session_check_name {
    () => {
        "pgmcp_session_check"
    };
}

/// Counts the session's SQL-level prepared statements, pgmcp's own check statement aside.
macro_rules! prepared_statements_left {
    () => {
        concat!(
            "(SELECT count(*) FROM pg_catalog.pg_prepared_statements \
              WHERE from_sql AND name <> '",
            session_check_name!(),
            "')::int4"
        )
    };
}

/// What a connection still holds after a call, beyond the call's own (rolled back or committed) transaction.
/// Read-only calls are rolled back, which undoes settings, temporary objects, LISTEN and the holdable cursors
/// the transaction declared; advisory locks and SQL-level prepared statements outlive a rollback, and a committed
/// write keeps everything. This is the check a call sends on its own, right behind its ROLLBACK or COMMIT; a read
/// whose ROLLBACK went in its own flight is checked with [`AFTER_ROLLBACK_SQL`] instead.
///
/// pgmcp's own SQL-level check statement is not a leftover. Replacing it with a fake one would take a `DEALLOCATE`
/// and a `PREPARE` run in the session, which would equally replace the protocol-level statement of the other form.
pub const LEFTOVERS_SQL: &str = concat!(
    "SELECT (SELECT count(*) FROM pg_catalog.pg_locks \
              WHERE locktype = 'advisory' AND pid = pg_catalog.pg_backend_pid())::int4, ",
    prepared_statements_left!(),
    ", (SELECT count(*) FROM pg_catalog.pg_cursors WHERE is_holdable)::int4, \
       (SELECT count(*) FROM pg_catalog.pg_listening_channels())::int4, \
       CASE WHEN pg_catalog.pg_my_temp_schema() = 0 THEN 0 \
            ELSE (SELECT count(*) FROM pg_catalog.pg_class \
                  WHERE relnamespace = pg_catalog.pg_my_temp_schema())::int4 END, \
       CASE WHEN $1 THEN (SELECT count(*) FROM pg_catalog.pg_settings WHERE source = 'session')::int4 \
            ELSE 0 END"
);
const LEFTOVER_KINDS: [&str; 6] = [
    "advisory locks",
    "prepared statements",
    "holdable cursors",
    "LISTEN channels",
    "temporary relations",
    "changed settings",
];

macro_rules! after_rollback_sql {
    () => {
        concat!(
            "SELECT ",
            prepared_statements_left!(),
            " FROM pg_catalog.pg_advisory_unlock_all() AS released"
        )
    };
}

/// The session check sent in a read's own flight, right behind the ROLLBACK of a transaction that began on a
/// session holding nothing (every call before it was checked): it deals only with what a rollback leaves standing.
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
/// - SQL-level prepared statements are counted: `DEALLOCATE ALL` would also drop the protocol-level statements
///   pgmcp keeps on the connection.
pub const AFTER_ROLLBACK_SQL: &str = after_rollback_sql!();
/// What [`AFTER_ROLLBACK_SQL`]'s columns count.
const AFTER_ROLLBACK_KINDS: [&str; 1] = ["prepared statements"];
/// The session check's SQL-level statement, as the first check on a connection prepares it.
pub const SESSION_CHECK_STATEMENT: &str = session_check_name!();
/// Runs [`SESSION_CHECK_STATEMENT`].
pub const EXECUTE_SESSION_CHECK: &str = concat!("EXECUTE ", session_check_name!());
macro_rules! prepare_session_check {
    () => {
        concat!(
            "PREPARE ",
            session_check_name!(),
            " AS ",
            after_rollback_sql!()
        )
    };
}
/// What prepares [`AFTER_ROLLBACK_SQL`] as [`SESSION_CHECK_STATEMENT`] on a connection.
pub const PREPARE_SESSION_CHECK: &str = prepare_session_check!();

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

/// What [`AFTER_ROLLBACK_SQL`]'s row, in text, counts; `None` when nothing is left.
fn after_rollback_leftovers(row: &DataRowBody) -> Option<String> {
    let mut found = [i32::MAX; AFTER_ROLLBACK_KINDS.len()];
    let buffer = row.buffer();
    let mut ranges = row.ranges();
    for count in found.iter_mut() {
        // Every column is a count: a missing or unreadable one is itself a reason not to reuse.
        if let Ok(Some(Some(range))) = ranges.next() {
            *count = std::str::from_utf8(&buffer[range])
                .ok()
                .and_then(|text| text.parse().ok())
                .unwrap_or(i32::MAX);
        }
    }
    describe(&AFTER_ROLLBACK_KINDS, &found)
}

/// `EXECUTE` of a statement the connection does not have (a transaction-pooling proxy's other server, or a
/// function the profile trusts removed it), or `PREPARE` of a name the connection already has.
fn statement_missing_or_taken(error: &tokio_postgres::Error) -> bool {
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
