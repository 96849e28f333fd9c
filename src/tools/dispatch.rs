//! Routing a tools/call to its handler: pick the profile, check out a connection, run, encode.

use rmcp::model::JsonObject;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::db::deadline::{SESSION_CHECK_BOUND, call_deadline, no_answer};
use crate::db::exec::QueryOutput;
use crate::db::session::{FlightCheck, Object, Session};
use crate::db::{Database, UserLogin};
use crate::mcp::{Databases, parse_args, to_json};
use crate::telemetry::audit::CallerIdentity;
use crate::tools::{ToolError, catalog, curated, dba, info, profiles, query, stats};

fn requested_profile(arguments: &JsonObject) -> Result<Option<String>, ToolError> {
    match arguments.get("profile") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(name)) => Ok(Some(name.clone())),
        Some(_) => Err(ToolError::invalid(
            "`profile` must be a string naming a profile",
        )),
    }
}

/// A tool's successful answer, as it goes to the client.
pub struct ToolAnswer {
    /// The one text block: the answer as compact JSON.
    pub text: String,
    /// The same value as `structuredContent`, for tools that declare an output schema. Row results have none:
    /// their rows are what the model reads, so they travel once, in `text`.
    pub structured: Option<Value>,
    /// Rows returned, or changed by a write, for the audit log and metrics.
    pub rows: Option<u64>,
}

impl ToolAnswer {
    /// A tool's typed value; none of these tools returns rows, so there is nothing to count.
    pub fn structured(value: Value) -> ToolAnswer {
        ToolAnswer {
            text: value.to_string(),
            rows: None,
            structured: Some(value),
        }
    }

    pub(crate) fn rows(text: String, rows: u64) -> ToolAnswer {
        ToolAnswer {
            text,
            structured: None,
            rows: Some(rows),
        }
    }

    fn of_query(output: QueryOutput) -> ToolAnswer {
        let rows = output.counted_rows();
        ToolAnswer::rows(output.into_json(), rows)
    }
}

/// A checked-out connection that goes back to the pool only once it is known to hold nothing of the call.
/// The check does not trust the guard's prediction of what a call can leave: it asks the server, after every
/// call. A read run in one flight carries its check in that flight, answered in the same round trip; other calls'
/// checks run off the answer's path. A connection that holds anything, or cannot be checked, is closed rather than
/// reset, so nothing a reset might miss (a dblink connection, a role) survives either. The one thing released
/// instead of found is a read's session advisory locks, by the check in its own flight
/// (`db::session::AFTER_ROLLBACK_SQL` says why). Running from `Drop` covers abandoned calls too.
struct CheckedSession {
    conn: Option<Object>,
    /// The call may have committed, so session-level settings may have changed.
    may_commit: bool,
    statement_cache: bool,
    tool: String,
    /// The tool's last work on the session is its one statement, so a check sent behind that statement's
    /// ROLLBACK (`Session::check_after_rollback`) saw everything the call did. Other tools get a check of their own.
    ends_with_its_statement: bool,
}

impl CheckedSession {
    fn conn(&mut self) -> &mut Session {
        self.conn.as_mut().expect("present until dropped")
    }

    /// The outcome of work that ran for at most `bound` on this session. Past it, the server or the network has
    /// stopped answering: the connection is marked broken, so it is closed instead of reused.
    fn bounded<T>(
        &mut self,
        bound: std::time::Duration,
        outcome: Result<Result<T, ToolError>, tokio::time::error::Elapsed>,
    ) -> Result<T, ToolError> {
        outcome.unwrap_or_else(|_| {
            self.conn().mark_broken();
            Err(no_answer(bound))
        })
    }
}

impl Drop for CheckedSession {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // Shutting down: nobody will use the connection again, and it must not go back unchecked.
            drop(Object::take(conn));
            return;
        };
        if conn.is_broken() {
            drop(Object::take(conn));
            return;
        }
        let mut conn = conn;
        let flight_check = conn.take_flight_check();
        let tool = std::mem::take(&mut self.tool);
        if self.ends_with_its_statement && !self.may_commit {
            // The read's own flight checked the session already: no task, no timer, no round trip.
            match flight_check {
                Some(FlightCheck::Clean) => return,
                Some(FlightCheck::Left(left)) => {
                    tracing::warn!(%tool, %left, "a call left state on its database session; closing the connection");
                    drop(Object::take(conn));
                    return;
                }
                Some(FlightCheck::Failed(error)) => {
                    tracing::warn!(%tool, error = %crate::db::connect::describe_error(&error), "could not check a database session after a call; closing the connection");
                    drop(Object::take(conn));
                    return;
                }
                None => {}
            }
        }
        let (committed, cached) = (self.may_commit, self.statement_cache);
        // Boxed: spawning and running a task moves its future whole several times, and this one is kilobytes.
        runtime.spawn(Box::pin(async move {
            let check = crate::db::session::leftovers(&mut conn, committed, cached);
            match tokio::time::timeout(SESSION_CHECK_BOUND, check).await {
                Ok(Ok(None)) => {}
                Ok(Ok(Some(left))) => {
                    tracing::warn!(%tool, %left, "a call left state on its database session; closing the connection");
                    drop(Object::take(conn));
                }
                Ok(Err(error)) => {
                    tracing::warn!(%tool, error = %crate::db::connect::describe_error(&error), "could not check a database session after a call; closing the connection");
                    drop(Object::take(conn));
                }
                Err(_) => {
                    tracing::warn!(%tool, "the session check after a call got no answer in time; closing the connection");
                    drop(Object::take(conn));
                }
            }
        }));
    }
}

pub async fn call_tool(
    databases: &Databases,
    name: &str,
    arguments: JsonObject,
    cancel: &CancellationToken,
    user: Option<UserLogin<'_>>,
    caller: &CallerIdentity,
) -> Result<ToolAnswer, ToolError> {
    if name == "list_profiles" {
        let _: profiles::ListProfilesParams = parse_args(arguments)?;
        return structured(&profiles::list_profiles(databases));
    }
    if let Some(tool) = databases.curated().get(name) {
        // Checked against the declarations before a connection is taken: a bad argument costs no database work.
        let values = tool.bind_values(&arguments)?;
        let db = databases.select(Some(&tool.profile))?;
        let mut session = CheckedSession {
            conn: Some(db.session(user).await?),
            may_commit: tool.writes,
            statement_cache: db.profile.statement_cache_size() > 0,
            tool: name.to_owned(),
            ends_with_its_statement: true,
        };
        let bound = call_deadline(db.profile.statement_timeout);
        // Boxed: a call's state is kilobytes, and wrapping it in the timeout and awaiting that would move it whole
        // twice per call; behind a pointer those moves copy a word.
        let work = Box::pin(curated::run(db, session.conn(), tool, &values, cancel));
        let outcome = tokio::time::timeout(bound, work).await;
        let output = session.bounded(bound, outcome)?;
        return Ok(ToolAnswer::of_query(output));
    }
    let db = databases.select(requested_profile(&arguments)?.as_deref())?;
    let mut session = CheckedSession {
        conn: Some(db.session(user).await?),
        may_commit: name == "execute_write",
        statement_cache: db.profile.statement_cache_size() > 0,
        tool: name.to_owned(),
        ends_with_its_statement: matches!(name, "execute_query" | "read_table"),
    };
    let bound = call_deadline(db.profile.statement_timeout);
    // Boxed, as a curated tool's call above.
    let work = Box::pin(run_tool(
        db,
        session.conn(),
        name,
        arguments,
        cancel,
        caller,
    ));
    let outcome = tokio::time::timeout(bound, work).await;
    session.bounded(bound, outcome)
}

fn structured<T: serde::Serialize>(value: &T) -> Result<ToolAnswer, ToolError> {
    to_json(value).map(ToolAnswer::structured)
}

async fn run_tool(
    db: &Database,
    conn: &mut Session,
    name: &str,
    arguments: JsonObject,
    cancel: &CancellationToken,
    caller: &CallerIdentity,
) -> Result<ToolAnswer, ToolError> {
    match name {
        "execute_query" => Ok(ToolAnswer::of_query(
            query::execute_query(db, conn, parse_args(arguments)?, cancel).await?,
        )),
        "read_table" => {
            let page = query::read_table(db, conn, parse_args(arguments)?, cancel).await?;
            let rows = page.result.counted_rows();
            Ok(ToolAnswer::rows(page.into_json(), rows))
        }
        // Behind a pointer: a future is as large as its largest state, and this one is moved whole into the box
        // the call's timeout polls. With index_advice's or a catalog tool's state inline it was 8 KB, copied on
        // every execute_query (memmove fell from 7 % to 6 % of a stdio call's samples without it).
        _ => Box::pin(other_tool(db, conn, name, arguments, cancel, caller)).await,
    }
}

/// The tools other than the two hot reads.
async fn other_tool(
    db: &Database,
    conn: &mut Session,
    name: &str,
    arguments: JsonObject,
    cancel: &CancellationToken,
    caller: &CallerIdentity,
) -> Result<ToolAnswer, ToolError> {
    match name {
        "get_table_stats" => {
            structured(&stats::get_table_stats(db, conn, parse_args(arguments)?, cancel).await?)
        }
        "execute_write" => Ok(ToolAnswer::of_query(
            query::execute_write(db, conn, parse_args(arguments)?, cancel).await?,
        )),
        "explain_query" => {
            structured(&query::explain_query(db, conn, parse_args(arguments)?, cancel).await?)
        }
        "index_advice" => {
            structured(&dba::advice::index_advice(db, conn, parse_args(arguments)?, cancel).await?)
        }
        _ => {
            // Catalog tools read like any caller's query: in a read-only transaction that is rolled back.
            let txn = conn.build_transaction().read_only(true).start().await?;
            catalog_tool(db, txn.client(), name, arguments, caller).await
        }
    }
}

/// The profile's column masks (the same for both access modes).
fn masks_of(db: &Database) -> &[crate::guard::masks::MaskRule] {
    &db.guard.policy(crate::config::AccessMode::ReadOnly).masks
}

async fn catalog_tool(
    db: &Database,
    client: &tokio_postgres::Client,
    name: &str,
    arguments: JsonObject,
    caller: &CallerIdentity,
) -> Result<ToolAnswer, ToolError> {
    match name {
        "server_info" => {
            let _: info::ServerInfoParams = parse_args(arguments)?;
            structured(
                &info::server_info(client, db.profile.access_mode, &db.profile.name, caller)
                    .await?,
            )
        }
        "list_databases" => {
            structured(&catalog::list_databases(client, parse_args(arguments)?).await?)
        }
        "list_schemas" => structured(&catalog::list_schemas(client, parse_args(arguments)?).await?),
        "list_tables" => structured(&catalog::list_tables(client, parse_args(arguments)?).await?),
        "describe_table" => {
            let mut description = catalog::describe_table(client, parse_args(arguments)?).await?;
            catalog::hide_masked(&mut description, masks_of(db));
            structured(&description)
        }
        "search_tables" => {
            structured(&catalog::search_tables(client, parse_args(arguments)?).await?)
        }
        "health_check" => {
            structured(&dba::health::health_check(client, parse_args(arguments)?).await?)
        }
        "top_queries" => {
            structured(&dba::top_queries::top_queries(client, parse_args(arguments)?).await?)
        }
        "activity" => structured(&dba::activity::activity(client, parse_args(arguments)?).await?),
        other => Err(ToolError::invalid(format!("unknown tool `{other}`"))),
    }
}

/// Up to `limit` tables of a profile for resources/list, in name order.
pub async fn table_names(
    db: &Database,
    user: Option<UserLogin<'_>>,
    limit: i64,
) -> Result<Vec<(String, String)>, ToolError> {
    let mut conn = db.session(user).await?;
    let txn = conn.build_transaction().read_only(true).start().await?;
    let rows = txn
        .query(
            "SELECT n.nspname::text, c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r','v','m','f','p') AND n.nspname NOT IN ('pg_catalog','information_schema') \
             AND n.nspname !~ '^pg_(toast|temp_)' ORDER BY 1, 2 LIMIT $1",
            &[&limit],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// What resources/read answers for one table: describe_table's value. The caller's permission for the profile
/// was decided by the MCP gate before this runs.
pub async fn describe_for_resource(
    db: &Database,
    schema: &str,
    table: &str,
    user: Option<UserLogin<'_>>,
) -> Result<Value, ToolError> {
    let mut conn = db.session(user).await?;
    let mut arguments = JsonObject::new();
    arguments.insert("schema".into(), Value::String(schema.to_string()));
    arguments.insert("table".into(), Value::String(table.to_string()));
    // Read like describe_table the tool: in a read-only transaction that is rolled back.
    let txn = conn.build_transaction().read_only(true).start().await?;
    let mut description = catalog::describe_table(txn.client(), parse_args(arguments)?).await?;
    catalog::hide_masked(&mut description, masks_of(db));
    to_json(&description)
}
