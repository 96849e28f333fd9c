//! Routing a tools/call to its handler: pick the profile, check out a connection, run, encode.

use deadpool_postgres::{ClientWrapper, Object, RecyclingMethod};
use rmcp::model::JsonObject;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::db::exec::QueryOutput;
use crate::db::{Database, UserLogin};
use crate::mcp::{Databases, parse_args, to_json};
use crate::telemetry::audit::CallerIdentity;
use crate::tools::{ToolError, catalog, info, profiles, query, stats};

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

/// Session state a call may leave on its connection. Read-only calls run in a transaction that is always rolled
/// back, and the guard refuses SET, LISTEN, PREPARE, advisory locks and volatile functions in them, so what they
/// leave is nothing; a write commits, and a profile's own allowed volatile functions are outside what the guard
/// knows. Those connections are reset before the pool hands them out again.
fn may_leave_session_state(tool: &str, db: &Database) -> bool {
    tool == "execute_write"
        || (!db.profile.allow_volatile_functions.is_empty()
            && matches!(tool, "execute_query" | "explain_query"))
}

/// A checked-out connection that is reset before the pool hands it out again, when the call may have left session
/// state on it. The reset runs when the guard is dropped, so a call abandoned half-way (a cancelled request) is
/// covered too; it runs off the answer's path, and a connection that cannot be reset is closed instead.
struct ResettingSession {
    conn: Option<Object>,
    reset: bool,
}

impl ResettingSession {
    fn conn(&mut self) -> &mut ClientWrapper {
        self.conn.as_mut().expect("present until dropped")
    }
}

impl Drop for ResettingSession {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        if !self.reset {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // Shutting down: nobody will use the connection again, and it must not go back dirty.
            drop(Object::take(conn));
            return;
        };
        runtime.spawn(async move {
            let reset = RecyclingMethod::Clean.query().unwrap_or_default();
            if let Err(error) = conn.batch_execute(reset).await {
                tracing::warn!(%error, "could not reset a connection after a call; closing it");
                drop(Object::take(conn));
            }
        });
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
    let db = databases.select(requested_profile(&arguments)?.as_deref())?;
    let mut session = ResettingSession {
        conn: Some(db.session(user).await?),
        reset: may_leave_session_state(name, db),
    };
    run_tool(db, session.conn(), name, arguments, cancel, caller).await
}

fn structured<T: serde::Serialize>(value: &T) -> Result<ToolAnswer, ToolError> {
    to_json(value).map(ToolAnswer::structured)
}

async fn run_tool(
    db: &Database,
    conn: &mut ClientWrapper,
    name: &str,
    arguments: JsonObject,
    cancel: &CancellationToken,
    caller: &CallerIdentity,
) -> Result<ToolAnswer, ToolError> {
    let client: &tokio_postgres::Client = conn;
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
            structured(&catalog::describe_table(client, parse_args(arguments)?).await?)
        }
        "search_tables" => {
            structured(&catalog::search_tables(client, parse_args(arguments)?).await?)
        }
        "get_table_stats" => {
            structured(&stats::get_table_stats(client, parse_args(arguments)?).await?)
        }
        "read_table" => {
            let page = query::read_table(db, conn, parse_args(arguments)?, cancel).await?;
            let rows = page.result.counted_rows();
            Ok(ToolAnswer::rows(page.into_json(), rows))
        }
        "execute_query" => Ok(ToolAnswer::of_query(
            query::execute_query(db, conn, parse_args(arguments)?, cancel).await?,
        )),
        "execute_write" => Ok(ToolAnswer::of_query(
            query::execute_write(db, conn, parse_args(arguments)?, cancel).await?,
        )),
        "explain_query" => {
            structured(&query::explain_query(db, conn, parse_args(arguments)?, cancel).await?)
        }
        other => Err(ToolError::invalid(format!("unknown tool `{other}`"))),
    }
}

/// Up to `limit` tables of a profile for resources/list, in name order.
pub async fn table_names(
    db: &Database,
    user: Option<UserLogin<'_>>,
    limit: i64,
) -> Result<Vec<(String, String)>, ToolError> {
    let conn = db.session(user).await?;
    let rows = conn
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
    let conn = db.session(user).await?;
    let mut arguments = JsonObject::new();
    arguments.insert("schema".into(), Value::String(schema.to_string()));
    arguments.insert("table".into(), Value::String(table.to_string()));
    to_json(&catalog::describe_table(&conn, parse_args(arguments)?).await?)
}
