//! top_queries: the statements that cost the most, from pg_stat_statements, with the setup steps when the
//! extension is missing.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use super::{STATS_GRANT, extension_schema, sees_all_stats};
use crate::tools::ToolError;

pub const TOP_QUERIES_DESCRIPTION: &str = "The most expensive statements in pg_stat_statements (normalized, $n for \
constants) with calls, times, rows and blocks, and since when the statistics run. Says how to set the extension \
up when it is missing.";

pub const PG_STAT_STATEMENTS_SETUP: &str = "pg_stat_statements is not available in this database. To enable it: \
1) add pg_stat_statements to shared_preload_libraries (postgresql.conf, or ALTER SYSTEM SET shared_preload_libraries = '…,pg_stat_statements') and restart the server; \
on Azure Database for PostgreSQL flexible server set the server parameter shared_preload_libraries to include pg_stat_statements (the server restarts) \
and add PG_STAT_STATEMENTS to the azure.extensions allow-list; \
2) run CREATE EXTENSION pg_stat_statements; in this database. \
3) grant pg_read_all_stats (or pg_monitor) to this role to see other roles' statements.";

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderBy {
    #[default]
    TotalTime,
    MeanTime,
    Calls,
    Rows,
    SharedBlksRead,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TopQueriesParams {
    #[serde(default)]
    pub order_by: OrderBy,
    #[serde(default)]
    #[schemars(range(min = 1, max = 100), extend("default" = 10))]
    pub limit: Option<i64>,
    /// Database profile to use (see list_profiles); default: the first profile.
    #[serde(default)]
    pub profile: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct TopQueries {
    pub available: bool,
    /// How to enable pg_stat_statements, when it is not available.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub setup: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_by: Option<OrderBy>,
    /// When the statistics were last reset (they cover the time since).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub queries: Vec<TopQuery>,
    /// Statements of other roles whose text this role may not see.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hidden_texts: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct TopQuery {
    pub queryid: Option<String>,
    pub calls: i64,
    pub total_ms: f64,
    pub mean_ms: f64,
    pub rows: i64,
    pub shared_blks_read: i64,
    pub shared_blks_hit: i64,
    /// Share of all statements' total time, in percent.
    pub time_percent: f64,
    pub query: Option<String>,
}

pub async fn top_queries(
    client: &Client,
    params: TopQueriesParams,
) -> Result<TopQueries, ToolError> {
    let limit = params.limit.unwrap_or(10);
    if !(1..=100).contains(&limit) {
        return Err(ToolError::invalid("`limit` must be between 1 and 100"));
    }
    let Some(schema) = extension_schema(client, "pg_stat_statements").await? else {
        return Ok(missing());
    };
    let version: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await?
        .get(0);
    // PostgreSQL 13 split planning and execution time; before it the columns were total_time and mean_time.
    let (total, mean) = if version >= 130000 {
        ("total_exec_time", "mean_exec_time")
    } else {
        ("total_time", "mean_time")
    };
    let order = match params.order_by {
        OrderBy::TotalTime => total,
        OrderBy::MeanTime => mean,
        OrderBy::Calls => "calls",
        OrderBy::Rows => "rows",
        OrderBy::SharedBlksRead => "shared_blks_read",
    };
    let sql = format!(
        "SELECT s.queryid::text, s.calls, s.{total}, s.{mean}, s.rows, s.shared_blks_read, s.shared_blks_hit, \
         round((100 * s.{total} / nullif(sum(s.{total}) OVER (), 0))::numeric, 2)::float8, left(s.query, 2000) \
         FROM {schema}.pg_stat_statements s \
         WHERE s.dbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()) \
         ORDER BY s.{order} DESC NULLS LAST LIMIT $1"
    );
    client.batch_execute("SAVEPOINT pgmcp_top").await?;
    let rows = match client.query(&sql, &[&limit]).await {
        Ok(rows) => rows,
        // Installed but not preloaded: "pg_stat_statements must be loaded via shared_preload_libraries".
        Err(error) if error.as_db_error().is_some() => {
            client
                .batch_execute("ROLLBACK TO SAVEPOINT pgmcp_top")
                .await?;
            let mut answer = missing();
            if let Some(db) = error.as_db_error() {
                answer.setup = Some(format!("{} ({})", PG_STAT_STATEMENTS_SETUP, db.message()));
            }
            return Ok(answer);
        }
        Err(error) => return Err(error.into()),
    };
    let queries = rows
        .iter()
        .map(|r| {
            Ok(TopQuery {
                queryid: r.try_get(0)?,
                calls: r.try_get(1)?,
                total_ms: round3(r.try_get(2)?),
                mean_ms: round3(r.try_get(3)?),
                rows: r.try_get(4)?,
                shared_blks_read: r.try_get(5)?,
                shared_blks_hit: r.try_get(6)?,
                time_percent: r.try_get::<_, Option<f64>>(7)?.unwrap_or(0.0),
                query: r.try_get(8)?,
            })
        })
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
    let since = if version >= 140000 {
        client
            .query_one(
                &format!("SELECT stats_reset::text FROM {schema}.pg_stat_statements_info"),
                &[],
            )
            .await?
            .try_get(0)?
    } else {
        None
    };
    let hidden = queries
        .iter()
        .filter(|q| q.query.as_deref() == Some("<insufficient privilege>"))
        .count();
    let hidden_texts = (hidden > 0 && !sees_all_stats(client).await?).then(|| {
        format!("{hidden} statement(s) of other roles are hidden; {STATS_GRANT} shows them")
    });
    Ok(TopQueries {
        available: true,
        setup: None,
        order_by: Some(params.order_by),
        since,
        queries,
        hidden_texts,
    })
}

fn missing() -> TopQueries {
    TopQueries {
        available: false,
        setup: Some(PG_STAT_STATEMENTS_SETUP.to_string()),
        order_by: None,
        since: None,
        queries: Vec::new(),
        hidden_texts: None,
    }
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}
