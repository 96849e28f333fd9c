//! Routing a tools/call to its handler: pick the profile, check out a connection, run, encode.

use rmcp::model::JsonObject;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

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

pub async fn call_tool(
    databases: &Databases,
    name: &str,
    arguments: JsonObject,
    cancel: &CancellationToken,
    user: Option<UserLogin<'_>>,
    caller: &CallerIdentity,
) -> Result<Value, ToolError> {
    if name == "list_profiles" {
        let _: profiles::ListProfilesParams = parse_args(arguments)?;
        return to_json(&profiles::list_profiles(databases));
    }
    let db = databases.select(requested_profile(&arguments)?.as_deref())?;
    let mut conn = db.session(user).await?;
    let client: &mut tokio_postgres::Client = &mut conn;
    match name {
        "server_info" => {
            let _: info::ServerInfoParams = parse_args(arguments)?;
            to_json(
                &info::server_info(client, db.profile.access_mode, &db.profile.name, caller)
                    .await?,
            )
        }
        "list_databases" => {
            to_json(&catalog::list_databases(client, parse_args(arguments)?).await?)
        }
        "list_schemas" => to_json(&catalog::list_schemas(client, parse_args(arguments)?).await?),
        "list_tables" => to_json(&catalog::list_tables(client, parse_args(arguments)?).await?),
        "describe_table" => {
            to_json(&catalog::describe_table(client, parse_args(arguments)?).await?)
        }
        "search_tables" => to_json(&catalog::search_tables(client, parse_args(arguments)?).await?),
        "get_table_stats" => {
            to_json(&stats::get_table_stats(client, parse_args(arguments)?).await?)
        }
        "read_table" => Ok(
            query::read_table(db, client, parse_args(arguments)?, cancel)
                .await?
                .into_value(),
        ),
        "execute_query" => Ok(
            query::execute_query(db, client, parse_args(arguments)?, cancel)
                .await?
                .into_value(),
        ),
        "execute_write" => Ok(
            query::execute_write(db, client, parse_args(arguments)?, cancel)
                .await?
                .into_value(),
        ),
        "explain_query" => {
            to_json(&query::explain_query(db, client, parse_args(arguments)?, cancel).await?)
        }
        other => Err(ToolError::invalid(format!("unknown tool `{other}`"))),
    }
}

/// Tables of a profile for resources/list, bounded so a schema with thousands of tables stays a quick answer.
pub async fn table_names(
    db: &Database,
    user: Option<UserLogin<'_>>,
) -> Result<Vec<(String, String)>, ToolError> {
    let conn = db.session(user).await?;
    let rows = conn
        .query(
            "SELECT n.nspname::text, c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r','v','m','f','p') AND n.nspname NOT IN ('pg_catalog','information_schema') \
             AND n.nspname !~ '^pg_(toast|temp_)' ORDER BY 1, 2 LIMIT 1000",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

pub async fn describe_for_resource(
    databases: &Databases,
    profile: &str,
    schema: &str,
    table: &str,
    user: Option<UserLogin<'_>>,
) -> Result<Value, ToolError> {
    let db = databases.select(Some(profile))?;
    let conn = db.session(user).await?;
    let mut arguments = JsonObject::new();
    arguments.insert("schema".into(), Value::String(schema.to_string()));
    arguments.insert("table".into(), Value::String(table.to_string()));
    to_json(&catalog::describe_table(&conn, parse_args(arguments)?).await?)
}
