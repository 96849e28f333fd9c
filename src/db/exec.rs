//! Running one statement for a tool call: guard → transaction → prepare → bind a portal → fetch only as many rows
//! as the caller may see → JSON. Results are never fully buffered: the portal is executed with a row limit, so a
//! query that would return ten million rows costs the server and pgmcp only the rows that are returned.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{StatementCache, Transaction};
use futures_util::{FutureExt, StreamExt, pin_mut};
use postgres_protocol::IsNull;
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::error::SqlState;
use tokio_postgres::{PipelineResponses, Statement};
use tokio_util::sync::CancellationToken;

use crate::config::AccessMode;
use crate::db::deadline;
use crate::db::mask;
use crate::db::params::TextParam;
use crate::db::quote_ident;
use crate::db::render;
use crate::db::session::{
    CheckRows, FlightEnd, FlightPlan, Notices, OWN_STATEMENTS, ResolvedTrees, Session,
    statement_missing_or_taken,
};
use crate::db::tls::MakeRustlsConnect;
use crate::guard::masks::{self, MaskMode};
use crate::guard::resolved::{self, CheckFailure, PRINT_TREES, PreparedQueries, RESTORE_SETTINGS};
use crate::guard::{
    self, CACHEABLE_SQL_BYTES, CachedGuard, GuardPolicy, OutputMasks, StatementClass,
};
use crate::tools::ToolError;

/// Rows fetched per round trip. Small enough that a byte ceiling stops the fetch soon after it is reached, large
/// enough that a 10,000-row answer takes a handful of round trips.
const FETCH_CHUNK: usize = 2000;
/// SQLSTATE 57014 query_canceled: statement_timeout fired or the call was cancelled.
const QUERY_CANCELED: &str = "57014";

/// How much of a result a caller may receive and how long the statement may run.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_rows: usize,
    pub max_bytes: usize,
    pub timeout: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct ColumnInfo {
    pub name: String,
    /// PostgreSQL type name, e.g. `int4`, `numeric`, `text[]`, `timestamptz`.
    #[serde(rename = "type")]
    pub type_name: String,
}

/// Rows as one compact JSON array of arrays (values in column order), encoded once, while they were fetched: the
/// answer copies this text instead of building and re-encoding a tree of every value.
#[derive(Debug, Clone)]
pub struct RowsJson(String);

impl RowsJson {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    #[cfg(test)]
    pub(crate) fn from_values(rows: &[Vec<Value>]) -> RowsJson {
        RowsJson(serde_json::to_string(rows).expect("values encode"))
    }

    /// The rows as values, for the few callers that look inside (explain_query reads its one plan cell).
    pub fn to_values(&self) -> Result<Vec<Vec<Value>>, serde_json::Error> {
        serde_json::from_str(&self.0)
    }
}

/// A statement's result as the model sees it: column metadata once, then rows as arrays in column order.
/// NULL is null; numeric is an exact string; bytea is "\\x…" hex; timestamps are ISO 8601; types pgmcp does not
/// decode natively are their PostgreSQL text form.
#[derive(Debug, Clone)]
pub struct QueryOutput {
    pub columns: Vec<ColumnInfo>,
    pub rows: RowsJson,
    pub row_count: usize,
    /// Which ceiling cut the result, when more rows exist than were returned: "max_rows" (the call's limit) or
    /// "max_result_bytes".
    pub truncated_by: Option<&'static str>,
    /// Rows inserted, updated or deleted (write statements only).
    pub rows_affected: Option<u64>,
}

impl QueryOutput {
    /// True when more rows exist than were returned.
    pub fn truncated(&self) -> bool {
        self.truncated_by.is_some()
    }

    /// The rows an audit line reports: those a write changed, else those returned.
    pub fn counted_rows(&self) -> u64 {
        self.rows_affected.unwrap_or(self.row_count as u64)
    }

    /// The answer as one compact JSON object: `columns`, `rows`, `row_count`, `truncated`, then `truncated_by`
    /// and `rows_affected` when they apply.
    pub fn into_json(self) -> String {
        let mut object = JsonObjectText::with_capacity(self.rows.0.len() + 256);
        self.write_members(&mut object);
        object.finish()
    }

    /// Adds this output's members to an object (read_table puts its own around them).
    pub fn write_members(self, object: &mut JsonObjectText) {
        object.member("columns", &self.columns);
        object.raw_member("rows", &self.rows.0);
        object.member("row_count", &self.row_count);
        object.member("truncated", &self.truncated());
        if let Some(by) = self.truncated_by {
            object.member("truncated_by", by);
        }
        if let Some(affected) = self.rows_affected {
            object.member("rows_affected", &affected);
        }
    }
}

/// A JSON object written member by member, so that an already encoded member is copied rather than re-encoded.
pub struct JsonObjectText {
    text: String,
}

impl JsonObjectText {
    pub fn with_capacity(capacity: usize) -> JsonObjectText {
        let mut text = String::with_capacity(capacity);
        text.push('{');
        JsonObjectText { text }
    }

    /// `key` is one of pgmcp's own member names: plain ASCII that needs no escaping.
    pub fn member<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) {
        // Encoding pgmcp's own metadata (strings, numbers, column lists) cannot fail.
        let encoded = serde_json::to_string(value).unwrap_or_else(|_| "null".into());
        self.raw_member(key, &encoded);
    }

    /// `json` must be one complete JSON value.
    pub fn raw_member(&mut self, key: &str, json: &str) {
        if self.text.len() > 1 {
            self.text.push(',');
        }
        self.text.push('"');
        self.text.push_str(key);
        self.text.push_str("\":");
        self.text.push_str(json);
    }

    pub fn finish(mut self) -> String {
        self.text.push('}');
        self.text
    }
}

/// Whether a call may change data. `ReadOnly` runs inside `START TRANSACTION READ ONLY` and always rolls back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    ReadOnly,
    Write,
}

/// What one call runs under: the profile's guard, the call's limits, the client's cancellation, the TLS
/// connector used to send a cancel request to the server, and how many prepared statements a connection keeps.
pub struct CallContext<'a> {
    pub guard: &'a CachedGuard,
    pub limits: Limits,
    pub cancel: &'a CancellationToken,
    pub tls: MakeRustlsConnect,
    pub statement_cache: usize,
    /// Whether a statement's resolved functions, once checked, hold for every connection of the profile. Not
    /// when each caller logs in as themself: `"$user"` in the search_path can resolve one text differently.
    pub shared_resolution: bool,
}

/// Runs caller-supplied SQL after the guard has accepted it.
pub async fn run_user_sql(
    client: &mut Session,
    ctx: &CallContext<'_>,
    sql: &str,
    params: &[Value],
    intent: Intent,
) -> Result<QueryOutput, ToolError> {
    let mode = match intent {
        Intent::ReadOnly => AccessMode::ReadOnly,
        Intent::Write => AccessMode::ReadWrite,
    };
    let verdict = ctx
        .guard
        .check(sql, mode)
        .map_err(|e| ToolError::rejected(e.reason))?;
    if intent == Intent::Write
        && !matches!(verdict.class, StatementClass::Write | StatementClass::Ddl)
    {
        return Err(ToolError::invalid(
            "execute_write runs INSERT, UPDATE, DELETE and MERGE; use execute_query for reads",
        ));
    }
    let resolve = guard::statement_that_runs(sql, verdict.class)
        .map_err(|e| ToolError::rejected(e.reason))?;
    let bounded = (intent == Intent::ReadOnly && verdict.class == StatementClass::Read)
        .then(|| BoundedRead::of(sql, verdict.span.clone(), ctx.limits))
        .flatten();
    let policy = ctx.guard.policy(mode);
    let ddl_names = if verdict.class == StatementClass::Ddl && !policy.masks.is_empty() {
        guard::named_relations(sql).map_err(|e| ToolError::rejected(e.reason))?
    } else {
        Vec::new()
    };
    let checked = Checked {
        resolve,
        policy,
        mode,
        writes: matches!(verdict.class, StatementClass::Write | StatementClass::Ddl),
        one_flight: bounded.is_some(),
        ddl_names,
    };
    match bounded {
        Some(bounded) => run_checked(client, ctx, &checked, &bounded.text, params, intent)
            .await
            .map_err(|error| bounded.position_in_original(error)),
        None => run_checked(client, ctx, &checked, sql, params, intent).await,
    }
    .map_err(|error| without_row_values(error, checked.policy))
}

/// A read whose whole answer fits in one fetch, restated with the row limit as its own `LIMIT`: then no portal
/// is needed, and the statement can run in the same flight as the transaction's BEGIN and ROLLBACK (see
/// [`execute_in_one_flight`]). The statement itself is untouched; PostgreSQL resolves and checks the restated
/// text as it would any other, so what runs is exactly what was checked.
struct BoundedRead {
    text: String,
    /// Characters before the statement in the caller's text.
    before_body: u32,
    /// The statement's own length in characters.
    body_chars: u32,
}

impl BoundedRead {
    /// Closes on a new line: the statement's span runs to the end of the text when a comment follows it.
    const BEFORE: &'static str = "SELECT * FROM (\n";

    fn of(sql: &str, span: std::ops::Range<usize>, limits: Limits) -> Option<BoundedRead> {
        let wanted = limits.max_rows.saturating_add(1);
        let body = sql.get(span.clone())?;
        if wanted > FETCH_CHUNK || body.is_empty() {
            return None;
        }
        Some(BoundedRead {
            text: format!("{}{body}\n) AS pgmcp_rows LIMIT {wanted}", Self::BEFORE),
            before_body: sql[..span.start].chars().count() as u32,
            body_chars: body.chars().count() as u32,
        })
    }

    /// PostgreSQL's error positions count characters of the restated text; the caller wrote the original. A
    /// position in pgmcp's own words is dropped.
    fn position_in_original(&self, error: ToolError) -> ToolError {
        let before = Self::BEFORE.len() as u32;
        match error {
            ToolError::Database {
                sqlstate,
                message,
                detail,
                hint,
                position,
            } => ToolError::Database {
                sqlstate,
                message,
                detail,
                hint,
                position: position
                    .filter(|p| *p > before && *p <= before + self.body_chars)
                    .map(|p| p - before + self.before_body),
            },
            other => other,
        }
    }
}

/// Runs SQL that pgmcp built itself from catalog-validated identifiers (read_table, an exact row count). It
/// goes through the same read-only transaction, limits and resolved-function check: a view's columns may call
/// anything.
pub async fn run_internal_read(
    client: &mut Session,
    ctx: &CallContext<'_>,
    sql: &str,
    params: &[Value],
) -> Result<QueryOutput, ToolError> {
    // pgmcp's own SQL is one plain SELECT with nothing around it.
    let bounded = BoundedRead::of(sql, 0..sql.len(), ctx.limits);
    let checked = Checked {
        resolve: guard::ToResolve::Itself,
        policy: ctx.guard.policy(AccessMode::ReadOnly),
        mode: AccessMode::ReadOnly,
        writes: false,
        one_flight: bounded.is_some(),
        ddl_names: Vec::new(),
    };
    let text = match bounded {
        Some(bounded) => std::borrow::Cow::Owned(bounded.text),
        None => std::borrow::Cow::Borrowed(sql),
    };
    run_checked(client, ctx, &checked, &text, params, Intent::ReadOnly)
        .await
        .map_err(|error| without_row_values(error, checked.policy))
}

/// On a profile with masks, PostgreSQL's error details are dropped: they can quote a row ("Failing row contains
/// (…)", "Key (email)=(…) already exists"), masked columns included.
fn without_row_values(error: ToolError, policy: &GuardPolicy) -> ToolError {
    match error {
        ToolError::Database {
            sqlstate,
            message,
            hint,
            position,
            detail: Some(_),
        } if !policy.masks.is_empty() => ToolError::Database {
            sqlstate,
            message,
            detail: None,
            hint,
            position,
        },
        other => other,
    }
}

/// What the guard decided about a statement, and what PostgreSQL must still show before it runs.
struct Checked<'a> {
    resolve: guard::ToResolve,
    policy: &'a GuardPolicy,
    mode: AccessMode,
    /// Whether the statement changes data, so that the rows it affected are reported.
    writes: bool,
    /// The text is a [`BoundedRead`]'s: once checked, it may run in one flight.
    one_flight: bool,
    /// The relations DDL names, when the profile has masks: none may have masked columns.
    ddl_names: Vec<(Option<String>, String)>,
}

async fn run_checked(
    client: &mut Session,
    ctx: &CallContext<'_>,
    checked: &Checked<'_>,
    sql: &str,
    params: &[Value],
    intent: Intent,
) -> Result<QueryOutput, ToolError> {
    let limits = ctx.limits;
    let cancel_token = client.cancel_token();
    // A margin over statement_timeout: the server normally cancels first and reports 57014 itself; this bound
    // only catches a server or network that stopped answering.
    let deadline = limits.timeout + Duration::from_secs(2);
    // Boxed: the statement's state (preparing, the flight, the rows) is kilobytes, and the timeout and the select
    // below would each move it whole.
    let work = Box::pin(async {
        let statements = Statements::new(client.statement_cache.clone(), ctx.statement_cache);
        match execute(client, ctx, &statements, checked, sql, params, intent).await {
            // PostgreSQL refused a cached statement before running anything, so preparing afresh and running again
            // is safe, for writes too.
            Err(Failure::Refused(_)) => {
                statements.forget_all();
                client.catalog_queries.forget();
                let again = execute(client, ctx, &statements, checked, sql, params, intent).await;
                if let Err(Failure::Refused(Refusal::StatementGone)) = again {
                    // A statement prepared a moment ago is gone as well: the Parse and the Bind reached different
                    // servers, or something on this session removes statements as they come. Not for reuse.
                    client.mark_broken();
                }
                again.map_err(Failure::into_tool_error)
            }
            other => other.map_err(Failure::into_tool_error),
        }
    });
    let mut stalled = false;
    let outcome = {
        let mut work = std::pin::pin!(tokio::time::timeout(deadline, work));
        let answered = tokio::select! {
            result = &mut work => Some(result),
            _ = ctx.cancel.cancelled() => None,
        };
        match answered {
            Some(Ok(outcome)) => outcome.map_err(|e| classify_timeout(e, limits.timeout)),
            Some(Err(_)) => {
                stalled = true;
                Err(deadline::no_answer(deadline))
            }
            None => {
                // The client gave up on this call: stop the statement on the server rather than let it run on.
                deadline::cancel_until_stopped(work, &cancel_token, ctx.tls.clone()).await;
                Err(ToolError::Unavailable {
                    message: "the request was cancelled by the client".into(),
                })
            }
        }
    };
    if stalled {
        // An answer may still arrive on this connection: it must never serve another call.
        client.mark_broken();
        deadline::cancel_in_background(cancel_token, ctx.tls.clone());
    }
    outcome
}

fn classify_timeout(err: ToolError, timeout: Duration) -> ToolError {
    match &err {
        ToolError::Database { sqlstate, .. } if sqlstate == QUERY_CANCELED => ToolError::Timeout {
            timeout_ms: timeout.as_millis() as u64,
        },
        _ => err,
    }
}

/// Why one attempt failed: a cached statement the server refused, or an answer for the caller.
enum Failure {
    Refused(Refusal),
    Tool(ToolError),
}

/// Why PostgreSQL refused a statement the connection's cache held, before running anything.
enum Refusal {
    /// A schema change since the statement was prepared: "cached plan must not change result type", in the
    /// server's language.
    StalePlan,
    /// The statement no longer exists on the session: a function the profile trusts ran `DEALLOCATE ALL`, which
    /// drops protocol-level statements with the SQL-level ones.
    StatementGone,
}

impl Failure {
    fn into_tool_error(self) -> ToolError {
        match self {
            Failure::Tool(error) => error,
            // Only reached when a freshly prepared statement was refused too.
            Failure::Refused(Refusal::StalePlan) => ToolError::Unavailable {
                message: "the table definitions changed while the statement ran; run it again"
                    .into(),
            },
            Failure::Refused(Refusal::StatementGone) => ToolError::Unavailable {
                message: "the database session lost the statement as soon as it was prepared; run it again"
                    .into(),
            },
        }
    }
}

impl From<ToolError> for Failure {
    fn from(error: ToolError) -> Failure {
        Failure::Tool(error)
    }
}

impl From<tokio_postgres::Error> for Failure {
    fn from(error: tokio_postgres::Error) -> Failure {
        let Some(db) = error.as_db_error() else {
            return Failure::Tool(error.into());
        };
        // With no context, like the vanished statement below: the Bind of the call's own cached statement, not
        // a statement some function ran, whose call must not be run again.
        if db.code() == &SqlState::FEATURE_NOT_SUPPORTED
            && db.where_().is_none()
            && plan_cache_refused(db)
        {
            return Failure::Refused(Refusal::StalePlan);
        }
        // The Bind of a statement the session does not have. It carries no context, which any error raised while
        // a statement runs (a function's EXECUTE or RAISE) would: nothing ran. Told by its code rather than its
        // words, which the server's lc_messages may translate. pgmcp's own statements missing from a flight are
        // told apart before this (`FlightEnd::own_statement_missing`).
        if db.code() == &SqlState::INVALID_SQL_STATEMENT_NAME && db.where_().is_none() {
            return Failure::Refused(Refusal::StatementGone);
        }
        Failure::Tool(error.into())
    }
}

/// PostgreSQL's plan cache refusing a statement whose result columns changed since it was prepared. Told by the
/// function that raises it, which the server names untranslated: the message is in the server's `lc_messages`
/// ("gecachter Plan darf den Ergebnistyp nicht ändern"). The English words stand in only for a server or proxy that
/// leaves the function's name out.
fn plan_cache_refused(db: &tokio_postgres::error::DbError) -> bool {
    match db.routine() {
        Some(routine) => routine == "RevalidateCachedQuery",
        None => db
            .message()
            .starts_with("cached plan must not change result type"),
    }
}

/// Where a call's statements come from: the connection's cache of prepared statements when the profile keeps
/// one (a repeated statement then costs no Parse round trip), else a statement prepared for this call only.
struct Statements {
    cache: Arc<StatementCache>,
    capacity: usize,
}

impl Statements {
    fn new(cache: Arc<StatementCache>, capacity: usize) -> Statements {
        Statements { cache, capacity }
    }

    async fn prepare(&self, txn: &Transaction<'_>, sql: &str) -> Result<Statement, Failure> {
        // Long texts are prepared per call, as the guard checks them per call: the cache's memory stays small.
        if self.capacity == 0 || sql.len() > CACHEABLE_SQL_BYTES {
            return Ok(txn.prepare(sql).await?);
        }
        if self.cache.size() >= self.capacity {
            // Emptied rather than aged, like the guard's verdicts: the server closes the dropped statements.
            self.cache.clear();
        }
        Ok(txn.prepare_cached(sql).await?)
    }

    /// Through the connection's cache, outside any transaction block (only with a cache: without one, a
    /// transaction-pooling proxy may send the Parse and the Bind to different servers).
    async fn prepare_in_session(&self, client: &Session, sql: &str) -> Result<Statement, Failure> {
        if self.cache.size() >= self.capacity {
            self.cache.clear();
        }
        Ok(client.prepare_cached(sql).await?)
    }

    fn forget_all(&self) {
        self.cache.clear();
    }
}

async fn execute(
    client: &mut Session,
    ctx: &CallContext<'_>,
    statements: &Statements,
    checked: &Checked<'_>,
    sql: &str,
    params: &[Value],
    intent: Intent,
) -> Result<QueryOutput, Failure> {
    // Anything sent from here on would come after a check made earlier, which then says nothing about it.
    client.discard_flight_check();
    if checked.one_flight
        && ctx.shared_resolution
        && statements.capacity > 0
        && let Some(masks) = ctx.guard.confirmed(sql, checked.mode)
    {
        let done =
            execute_in_one_flight(client, ctx, statements, checked.mode, sql, params, &masks)
                .await?;
        if let Some(output) = done {
            return Ok(output);
        }
    }
    let limits = ctx.limits;
    let notices = client.notices.clone();
    // Kept across transactions only where the connection keeps statements at all.
    let catalog = (statements.capacity > 0).then(|| client.catalog_queries.clone());
    let resolver = Resolver {
        notices: &notices,
        catalog: catalog.as_ref(),
    };
    let txn = client
        .build_transaction()
        .read_only(intent == Intent::ReadOnly)
        .start()
        .await?;
    if !checked.ddl_names.is_empty() {
        masks::refuse_ddl_on_masked(txn.client(), &checked.ddl_names, &checked.policy.masks)
            .await
            .map_err(|e| ToolError::rejected(e.reason))?;
    }
    let remembered = if ctx.shared_resolution {
        ctx.guard.confirmed(sql, checked.mode)
    } else {
        None
    };
    let (resolved_here, output_masks) = match (&checked.resolve, remembered) {
        (_, Some(masks)) => (None, masks),
        (guard::ToResolve::Nothing, None) => (None, OutputMasks::default()),
        (guard::ToResolve::Itself, None) => {
            let (statement, masks) =
                prepare_resolved(&txn, &resolver, sql, checked.policy, Outputs::Returned).await?;
            let masks = Arc::new(masks);
            if ctx.shared_resolution {
                ctx.guard.confirm(sql, checked.mode, masks.clone());
            }
            (Some(statement), masks)
        }
        (guard::ToResolve::Inner(inner), None) => {
            // EXPLAIN's output holds no column values; its statement is still held to the masks' rules. The query
            // of CREATE TABLE AS (a write) stores its rows, which may then hold no masked column at all.
            let outputs = if checked.writes {
                Outputs::Stored
            } else {
                Outputs::Returned
            };
            prepare_resolved(&txn, &resolver, inner, checked.policy, outputs).await?;
            if ctx.shared_resolution {
                ctx.guard.confirm(sql, checked.mode, OutputMasks::default());
            }
            (None, OutputMasks::default())
        }
    };
    let mut statement = match resolved_here {
        Some(statement) => statement,
        None => statements.prepare(&txn, sql).await?,
    };
    if statement.params().len() != params.len() {
        return Err(ToolError::invalid(format!(
            "the statement has {} parameter placeholder(s) ($1, $2, …) but {} value(s) were given in `params`",
            statement.params().len(),
            params.len()
        ))
        .into());
    }
    // Column metadata comes from the statement as written, so a column the server renders as text still reports
    // its real type (point, money, geometry…).
    let columns = column_infos(&statement);
    if !statement
        .columns()
        .iter()
        .all(|c| render::can_decode(c.type_()))
    {
        let wrapped = wrap_with_text_casts(sql, &statement, intent)?;
        // The casts to text are calls too: a user-defined cast runs a function of its own. The wrapped text is
        // resolved like any statement; its output columns are the checked statement's, masks included.
        let remembered =
            ctx.shared_resolution && ctx.guard.confirmed(&wrapped, checked.mode).is_some();
        statement = if remembered || matches!(checked.resolve, guard::ToResolve::Nothing) {
            statements.prepare(&txn, &wrapped).await?
        } else {
            let (statement, _) = prepare_resolved(
                &txn,
                &resolver,
                &wrapped,
                checked.policy,
                Outputs::Unchecked,
            )
            .await?;
            if ctx.shared_resolution {
                ctx.guard
                    .confirm(&wrapped, checked.mode, OutputMasks::default());
            }
            statement
        };
    }
    let bind_params: Vec<TextParam> = params
        .iter()
        .zip(statement.params())
        .map(|(value, ty)| TextParam::from_json(value, ty))
        .collect();
    let portal = txn.bind_raw(&statement, bind_params.iter()).await?;

    let mut rows = RowsText::new(limits, &output_masks);
    // One row more than the limit tells "exactly max_rows" apart from "more exist".
    let wanted = limits.max_rows.saturating_add(1);
    let rows_affected = loop {
        let chunk = (wanted - rows.received).min(FETCH_CHUNK);
        let stream = txn.query_portal_raw(&portal, chunk as i32).await?;
        let fetched = rows.take(stream).await?;
        if fetched.full || fetched.received < chunk {
            break fetched.rows_affected;
        }
    };
    if intent == Intent::Write {
        txn.commit().await?;
    } else {
        // Read-only work is never committed: even if something slipped past every check, nothing persists.
        // Dropping the transaction queues its ROLLBACK without waiting for the answer, so the caller gets its
        // result one round trip sooner; the connection processes the ROLLBACK before anything sent after it.
        drop(txn);
    }
    Ok(rows.finish(columns, if checked.writes { rows_affected } else { None }))
}

/// A bounded read whose restated text PostgreSQL resolved and pgmcp checked within the confirmation time, run in
/// one round trip: `START TRANSACTION READ ONLY`, the statement's Bind/Execute, `ROLLBACK` and the session check
/// (`Session::flight_plan`) leave in one write under one Sync, and come back in one flush. It is the same
/// transaction [`execute`] opens; one Sync instead of one per statement spares the server two flushes and pgmcp two
/// wake-ups. A statement this connection has not prepared yet costs one Parse first. `None` when a column needs
/// the cast to text that has not been checked yet, or when one of pgmcp's own statements was missing (nothing ran):
/// the caller then takes the general path.
async fn execute_in_one_flight(
    client: &mut Session,
    ctx: &CallContext<'_>,
    statements: &Statements,
    mode: AccessMode,
    sql: &str,
    params: &[Value],
    output_masks: &OutputMasks,
) -> Result<Option<QueryOutput>, Failure> {
    // Parsed outside a transaction block: the session's default_transaction_read_only makes that implicit
    // transaction read-only, and the text is the one PostgreSQL resolved for the checks.
    let described = statements.prepare_in_session(client, sql).await?;
    if described.params().len() != params.len() {
        return Ok(None);
    }
    let columns = column_infos(&described);
    let statement = if described
        .columns()
        .iter()
        .all(|c| render::can_decode(c.type_()))
    {
        described
    } else {
        let wrapped = wrap_with_text_casts(sql, &described, Intent::ReadOnly)?;
        if ctx.guard.confirmed(&wrapped, mode).is_none() {
            return Ok(None);
        }
        statements.prepare_in_session(client, &wrapped).await?
    };
    let bind_params: Vec<TextParam> = params
        .iter()
        .zip(statement.params())
        .map(|(value, ty)| TextParam::from_json(value, ty))
        .collect();
    let plan = client.flight_plan();
    let request = encode_flight(&statement, &bind_params, plan)?;
    let answer = client.send_pipeline(request)?;
    let mut ended = EndOfFlight {
        client,
        needs_rollback: true,
    };
    let read = read_flight(answer, &statement, RowsText::new(ctx.limits, output_masks)).await;
    ended.needs_rollback = read.status != Some(IDLE);
    drop(ended);
    // The check ran only if the server got past the statement; what it found holds even when a row it sent could
    // not be rendered.
    let own_statement_missing = read.end.own_statement_missing;
    client.flight_ended(plan, read.end);
    if own_statement_missing {
        return Ok(None);
    }
    match read.failure {
        Some(error) => Err(error),
        None => Ok(Some(read.rows.finish(columns, None))),
    }
}

/// Ends a flight's transaction when its answer did not: the statement failed inside the transaction block (the
/// server then skips to the Sync and leaves the block open and failed), or the call stopped reading it (cancelled
/// by the client). The `ROLLBACK` is queued as a dropped transaction's is: its answer is discarded, and the
/// connection runs it before anything sent later. Behind a flight that did end its transaction it would only draw
/// a warning, which is why a flight read to its idle end sends none.
struct EndOfFlight<'a> {
    client: &'a Session,
    needs_rollback: bool,
}

impl Drop for EndOfFlight<'_> {
    fn drop(&mut self) {
        if self.needs_rollback {
            // The request is sent on the first poll, which completes: nothing in it waits.
            drop(self.client.simple_query_raw("ROLLBACK").now_or_never());
        }
    }
}

/// `ReadyForQuery`'s status outside any transaction block.
const IDLE: u8 = b'I';
/// Results in binary, for every column: [`render`] decodes that form.
const BINARY: i16 = 1;

/// The messages of one read's flight: `START TRANSACTION READ ONLY`, `statement` bound to `params` with binary
/// results, `ROLLBACK`, the session check, each on the unnamed portal, and one Sync at the end; pgmcp's own
/// statements as `plan` says. Public for the benchmark that replays pgmcp's statements without pgmcp.
pub fn encode_flight(
    statement: &Statement,
    params: &[TextParam],
    plan: FlightPlan,
) -> Result<bytes::Bytes, ToolError> {
    let too_large = |_| ToolError::invalid("the statement's parameters are too large to send");
    let mut buf = bytes::BytesMut::with_capacity(256);
    let [begin, rollback, (check, _)] = OWN_STATEMENTS;
    // The BEGIN and the ROLLBACK: by name, or as text when the connection's own statements are unusable.
    let own = |(name, sql): (&str, &str), buf: &mut bytes::BytesMut| match plan {
        FlightPlan::Text => encode_simple(sql, buf),
        FlightPlan::Prepare { .. } | FlightPlan::Named { .. } => encode_named(name, buf),
    };
    if let FlightPlan::Prepare { .. } = plan {
        encode_own_statements(&mut buf).map_err(too_large)?;
    }
    own(begin, &mut buf).map_err(too_large)?;
    frontend::bind(
        "",
        statement.name(),
        // No format codes: every parameter is in text format.
        std::iter::empty(),
        params,
        |param, buf| {
            Ok(match param.as_text() {
                Some(text) => {
                    buf.extend_from_slice(text);
                    IsNull::No
                }
                None => IsNull::Yes,
            })
        },
        [BINARY],
        &mut buf,
    )
    .map_err(|_| too_large(()))?;
    frontend::execute("", 0, &mut buf).map_err(|_| too_large(()))?;
    own(rollback, &mut buf).map_err(too_large)?;
    if plan.checks() {
        encode_named(check, &mut buf).map_err(too_large)?;
    }
    frontend::sync(&mut buf);
    Ok(buf.freeze())
}

/// The Parse of each of pgmcp's own statements ([`OWN_STATEMENTS`]) under its name.
fn encode_own_statements(buf: &mut bytes::BytesMut) -> Result<(), ()> {
    for (name, sql) in OWN_STATEMENTS {
        frontend::parse(name, sql, std::iter::empty(), buf).map_err(drop)?;
    }
    Ok(())
}

/// What prepares pgmcp's own statements on a connection, under one Sync, as a connection's first flight does.
/// Public for the benchmark that replays pgmcp's statements without pgmcp.
pub fn prepare_own_statements() -> bytes::Bytes {
    let mut buf = bytes::BytesMut::new();
    encode_own_statements(&mut buf).expect("pgmcp's own statements are small");
    frontend::sync(&mut buf);
    buf.freeze()
}

/// One of pgmcp's own statements, without parameters, its results in text.
fn encode_simple(sql: &str, buf: &mut bytes::BytesMut) -> Result<(), ()> {
    frontend::parse("", sql, std::iter::empty(), buf).map_err(drop)?;
    encode_named("", buf)
}

/// A statement the connection has prepared, without parameters, run on the unnamed portal, its results in text.
fn encode_named(name: &str, buf: &mut bytes::BytesMut) -> Result<(), ()> {
    frontend::bind(
        "",
        name,
        std::iter::empty(),
        std::iter::empty::<()>(),
        |(), _| Ok(IsNull::No),
        std::iter::empty(),
        buf,
    )
    .map_err(drop)?;
    frontend::execute("", 0, buf).map_err(drop)
}

/// What came back from a read's flight.
struct FlightRead<'a> {
    rows: RowsText<'a>,
    /// Why the read failed: the server's error, or a row that could not be rendered.
    failure: Option<Failure>,
    /// What the flight told about pgmcp's own statements and the session check.
    end: FlightEnd,
    /// The final `ReadyForQuery`'s status; `None` when the connection closed before it.
    status: Option<u8>,
}

/// Reads a flight's whole answer, down to its `ReadyForQuery`: past a ceiling or an error the rows are still read,
/// unrendered, as the session check's answer comes after them.
async fn read_flight<'a>(
    mut answer: PipelineResponses,
    statement: &Statement,
    rows: RowsText<'a>,
) -> FlightRead<'a> {
    let mut read = FlightRead {
        rows,
        failure: None,
        end: FlightEnd {
            began: false,
            own_statement_missing: false,
            check: None,
        },
        status: None,
    };
    let mut check = CheckRows::default();
    // Statements completed so far: the BEGIN, then the read, then the ROLLBACK and the check's.
    let mut completed = 0usize;
    while let Some(message) = answer.next().await {
        match message {
            Ok(Message::DataRow(row)) if completed == 1 => {
                if read.failure.is_none() && read.rows.truncated_by.is_none() {
                    let taken = read
                        .rows
                        .take_row(|| render::data_row_to_json(statement.columns(), &row));
                    if let Err(failure) = taken {
                        read.failure = Some(failure);
                    }
                }
            }
            Ok(Message::DataRow(row)) => check.count(&row),
            Ok(Message::CommandComplete(_)) => {
                completed += 1;
                if completed == 4 {
                    read.end.check = Some(Ok(check));
                }
            }
            Ok(Message::ReadyForQuery(body)) => read.status = Some(body.status()),
            // Parse, Bind and the like say only that a step went through.
            Ok(_) => {}
            Err(error) if completed == 0 && statement_missing_or_taken(&error) => {
                read.end.own_statement_missing = true;
                read.failure.get_or_insert(error.into());
            }
            Err(error) if completed < 2 || error.is_closed() => {
                read.failure.get_or_insert(error.into());
            }
            Err(error) => read.end.check = Some(Err(error)),
        }
    }
    read.end.began = completed > 0;
    if read.status.is_none() && read.failure.is_none() {
        read.failure = Some(
            ToolError::Unavailable {
                message: "the database connection closed during the call".into(),
            }
            .into(),
        );
    }
    read
}

fn column_infos(statement: &Statement) -> Vec<ColumnInfo> {
    statement
        .columns()
        .iter()
        .map(|c| ColumnInfo {
            name: c.name().to_string(),
            type_name: render::type_display_name(c.type_()),
        })
        .collect()
}

/// The answer's rows as they are fetched: rendered, masked and encoded one by one, until a ceiling is reached.
struct RowsText<'a> {
    text: String,
    limits: Limits,
    masks: &'a OutputMasks,
    /// Rows read from the server, the one past the limit included.
    received: usize,
    row_count: usize,
    truncated_by: Option<&'static str>,
}

/// What one fetch gave.
struct Fetched {
    received: usize,
    /// A ceiling was reached: nothing more is read.
    full: bool,
    rows_affected: Option<u64>,
}

impl<'a> RowsText<'a> {
    fn new(limits: Limits, masks: &'a OutputMasks) -> RowsText<'a> {
        RowsText {
            text: String::from("["),
            limits,
            masks,
            received: 0,
            row_count: 0,
            truncated_by: None,
        }
    }

    async fn take(&mut self, stream: tokio_postgres::RowStream) -> Result<Fetched, Failure> {
        pin_mut!(stream);
        let mut received = 0usize;
        while let Some(row) = stream.next().await {
            let row = row?;
            received += 1;
            if !self.take_row(|| render::row_to_json(&row))? {
                break;
            }
        }
        Ok(Fetched {
            received,
            full: self.truncated_by.is_some(),
            rows_affected: stream.rows_affected(),
        })
    }

    /// Takes one row the server sent; `false` once a ceiling is reached, when no more rows are wanted.
    fn take_row(
        &mut self,
        render: impl FnOnce() -> Result<Vec<Value>, render::RenderError>,
    ) -> Result<bool, Failure> {
        self.received += 1;
        if self.row_count == self.limits.max_rows {
            self.truncated_by = Some("max_rows");
            return Ok(false);
        }
        let mut values =
            render().map_err(|e| ToolError::invalid(format!("could not render a value: {e}")))?;
        if !self.masks.is_empty() {
            mask::mask_row(&mut values, self.masks);
        }
        let encoded = serde_json::to_string(&values)
            .map_err(|e| ToolError::invalid(format!("could not encode a row: {e}")))?;
        // The separator counts too: the ceiling is on what the client receives.
        if self.text.len() + encoded.len() + 1 > self.limits.max_bytes {
            self.truncated_by = Some("max_result_bytes");
            return Ok(false);
        }
        if self.row_count > 0 {
            self.text.push(',');
        }
        self.text.push_str(&encoded);
        self.row_count += 1;
        Ok(true)
    }

    fn finish(mut self, columns: Vec<ColumnInfo>, rows_affected: Option<u64>) -> QueryOutput {
        self.text.push(']');
        QueryOutput {
            row_count: self.row_count,
            rows: RowsJson(self.text),
            columns,
            truncated_by: self.truncated_by,
            rows_affected,
        }
    }
}

/// Where a resolved statement's output columns go, which decides what the masks allow of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outputs {
    /// To the caller: a plain masked column is returned masked.
    Returned,
    /// Into a table (CREATE TABLE AS and its kin): no output may carry a masked column.
    Stored,
    /// pgmcp's own wrapping of a statement checked already: its outputs are the checked statement's.
    Unchecked,
}

/// What a call resolves statements with: the connection's notices, where PostgreSQL prints the trees, and its
/// prepared catalog queries (none behind a transaction-pooling proxy).
struct Resolver<'a> {
    notices: &'a Notices,
    catalog: Option<&'a PreparedQueries>,
}

/// Has PostgreSQL parse `sql` and print how it resolved it, then checks every function that resolution calls and
/// every use of a masked column. Nothing has run yet: the tree is printed while parsing, before planning. The
/// statement comes back prepared (not cached: the next call on another connection prepares its own), with the
/// mask each output column carries when they are returned.
async fn prepare_resolved(
    txn: &Transaction<'_>,
    resolver: &Resolver<'_>,
    sql: &str,
    policy: &GuardPolicy,
    outputs: Outputs,
) -> Result<(Statement, Vec<Option<MaskMode>>), Failure> {
    txn.batch_execute(PRINT_TREES).await?;
    resolver.notices.listen();
    let prepared = txn.prepare(sql).await;
    let trees = resolver.notices.take();
    let statement = prepared?;
    let trees = match trees {
        ResolvedTrees::Trees(trees) if !trees.is_empty() => trees,
        ResolvedTrees::Trees(_) => {
            return Err(ToolError::rejected(
                "PostgreSQL did not show how it resolved the statement, so its functions could not be checked; \
                 it was not run",
            )
            .into());
        }
        ResolvedTrees::TooLarge => {
            return Err(ToolError::rejected(format!(
                "the statement's resolved form is larger than {} MiB (views nested very deeply?), too large to \
                 check; it was not run",
                crate::db::session::MAX_TREE_BYTES / (1024 * 1024)
            ))
            .into());
        }
    };
    let rejected = |e: guard::GuardError| {
        // A check that could not read the catalog because the connection broke refused nothing: the caller must
        // hear that the database went away, not that the statement was refused.
        if txn.client().is_closed() {
            return Failure::from(ToolError::Unavailable {
                message: format!(
                    "the connection to PostgreSQL broke while the statement was checked ({})",
                    e.reason
                ),
            });
        }
        Failure::from(ToolError::rejected(e.reason))
    };
    let trees = resolved::parse_trees(&trees).map_err(rejected)?;
    let referenced = resolved::referenced_objects(&trees).map_err(rejected)?;
    // One flight: printing stops before anything runs, and the catalog answers both questions at the same time.
    // The statements' Parse, on a connection's first check, goes after printing stopped.
    let (stopped, judged, masked) = tokio::join!(
        txn.batch_execute(resolved::stop_printing_trees(resolver.catalog.is_some())),
        resolved::check_functions(txn.client(), &referenced, policy, resolver.catalog),
        masks::masked_columns(txn.client(), &policy.masks),
    );
    stopped?;
    judged.map_err(|failure| match failure {
        CheckFailure::Refused(error) => rejected(error),
        // Nothing was judged and nothing ran: the call starts again with the queries prepared afresh.
        CheckFailure::QueryGone => Failure::Refused(Refusal::StatementGone),
    })?;
    let masked = masked.map_err(rejected)?;
    // Sent now, answered later: it runs before anything the call sends next, and cannot fail on its own.
    drop(txn.client().simple_query_raw(RESTORE_SETTINGS).await);
    let output = match outputs {
        _ if policy.masks.is_empty() => Vec::new(),
        Outputs::Unchecked => Vec::new(),
        Outputs::Returned => masks::output_masks(&trees, &masked).map_err(rejected)?,
        Outputs::Stored => {
            masks::stored_outputs(&trees, &masked).map_err(rejected)?;
            Vec::new()
        }
    };
    Ok((statement, output))
}

/// Rewrites a statement so that every column pgmcp cannot decode in binary is cast to text by the server: the
/// value then arrives in the type's own text form (PostGIS geometry, money, tsvector, regclass, …).
fn wrap_with_text_casts(
    sql: &str,
    statement: &Statement,
    intent: Intent,
) -> Result<String, ToolError> {
    let body = guard::statement_text(sql).map_err(|e| ToolError::rejected(e.reason))?;
    let names: Vec<String> = (1..=statement.columns().len())
        .map(|i| format!("c{i}"))
        .collect();
    let select_list: Vec<String> = statement
        .columns()
        .iter()
        .zip(&names)
        .map(|(column, alias)| {
            let ident = quote_ident(alias);
            if render::can_decode(column.type_()) {
                format!("q.{ident} AS {}", quote_ident(column.name()))
            } else {
                format!("q.{ident}::text AS {}", quote_ident(column.name()))
            }
        })
        .collect();
    let alias_list = names
        .iter()
        .map(|n| quote_ident(n))
        .collect::<Vec<_>>()
        .join(", ");
    // A data-modifying statement cannot be a subquery, but it can be a CTE; reads use a plain subquery.
    Ok(if intent == Intent::Write {
        format!(
            "WITH q({alias_list}) AS (\n{body}\n) SELECT {} FROM q",
            select_list.join(", ")
        )
    } else {
        format!(
            "SELECT {} FROM (\n{body}\n) AS q({alias_list})",
            select_list.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::{BoundedRead, ColumnInfo, Limits, QueryOutput, RowsJson};
    use crate::guard::{GuardPolicy, check};
    use crate::tools::ToolError;
    use serde_json::json;

    fn limits(max_rows: usize) -> Limits {
        Limits {
            max_rows,
            max_bytes: 1 << 20,
            timeout: std::time::Duration::from_secs(1),
        }
    }

    fn bounded(sql: &str, max_rows: usize) -> Option<BoundedRead> {
        let verdict = check(sql, &GuardPolicy::read_only()).expect("accepted");
        BoundedRead::of(sql, verdict.span, limits(max_rows))
    }

    #[test]
    fn a_bounded_read_restates_the_statement_alone_with_the_row_limit_plus_one() {
        let read =
            bounded("  /* lead */ SELECT id FROM t ORDER BY id ; -- tail", 1000).expect("bounded");
        assert_eq!(
            read.text,
            "SELECT * FROM (\nSELECT id FROM t ORDER BY id\n) AS pgmcp_rows LIMIT 1001"
        );
        // A trailing line comment cannot swallow the closing parenthesis.
        let read = bounded("SELECT 1 -- no semicolon", 5).expect("bounded");
        assert!(
            read.text
                .ends_with("-- no semicolon\n) AS pgmcp_rows LIMIT 6"),
            "{}",
            read.text
        );
        // More rows than one fetch: the portal path keeps its chunked fetch and byte ceiling.
        assert!(bounded("SELECT 1", 5000).is_none());
    }

    #[test]
    fn error_positions_point_into_the_callers_text() {
        let sql = "/* a comment longer than the wrapper */ SELECT nope FROM t";
        let read = bounded(sql, 10).expect("bounded");
        let at_nope_in_wrapper = read.text.find("nope").unwrap() as u32 + 1;
        let error = |position| ToolError::Database {
            sqlstate: "42703".into(),
            message: "column \"nope\" does not exist".into(),
            detail: None,
            hint: None,
            position,
        };
        let ToolError::Database { position, .. } =
            read.position_in_original(error(Some(at_nope_in_wrapper)))
        else {
            unreachable!()
        };
        assert_eq!(position, Some(sql.find("nope").unwrap() as u32 + 1));
        let ToolError::Database { position, .. } = read.position_in_original(error(Some(3))) else {
            unreachable!()
        };
        assert_eq!(position, None, "a position in pgmcp's own words is dropped");
    }

    fn sample(truncated_by: Option<&'static str>, rows_affected: Option<u64>) -> QueryOutput {
        QueryOutput {
            columns: vec![ColumnInfo {
                name: "id \"quoted\"".into(),
                type_name: "int4".into(),
            }],
            rows: RowsJson("[[1],[null]]".into()),
            row_count: 2,
            truncated_by,
            rows_affected,
        }
    }

    #[test]
    fn the_answer_is_one_compact_object_in_a_fixed_member_order() {
        assert_eq!(
            sample(None, None).into_json(),
            r#"{"columns":[{"name":"id \"quoted\"","type":"int4"}],"rows":[[1],[null]],"row_count":2,"truncated":false}"#
        );
        let cut: serde_json::Value =
            serde_json::from_str(&sample(Some("max_rows"), Some(3)).into_json())
                .expect("valid JSON");
        assert_eq!(
            cut,
            json!({"columns": [{"name": "id \"quoted\"", "type": "int4"}], "rows": [[1], [null]], "row_count": 2,
                   "truncated": true, "truncated_by": "max_rows", "rows_affected": 3})
        );
    }
}
