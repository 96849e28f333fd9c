//! Running one statement for a tool call: guard → transaction → prepare → bind a portal → fetch only as many rows
//! as the caller may see → JSON. Results are never fully buffered: the portal is executed with a row limit, so a
//! query that would return ten million rows costs the server and pgmcp only the rows that are returned.

use std::time::Duration;

use futures_util::{StreamExt, pin_mut};
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::{Client, Statement};
use tokio_util::sync::CancellationToken;

use crate::config::AccessMode;
use crate::db::params::TextParam;
use crate::db::quote_ident;
use crate::db::render;
use crate::db::tls::MakeRustlsConnect;
use crate::guard::{self, GuardPolicy, StatementClass, Verdict};
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

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ColumnInfo {
    pub name: String,
    /// PostgreSQL type name, e.g. `int4`, `numeric`, `text[]`, `timestamptz`.
    #[serde(rename = "type")]
    pub type_name: String,
}

/// A statement's result as the model sees it: column metadata once, then rows as arrays in column order.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct QueryOutput {
    pub columns: Vec<ColumnInfo>,
    /// One array per row, values in column order. NULL is null; numeric is an exact string; bytea is "\\x…" hex;
    /// timestamps are ISO 8601; types pgmcp does not decode natively are their PostgreSQL text form.
    pub rows: Vec<Vec<Value>>,
    pub row_count: usize,
    /// True when more rows exist than were returned.
    pub truncated: bool,
    /// Which ceiling cut the result: "max_rows" (the call's limit) or "max_result_bytes".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated_by: Option<String>,
    /// Rows inserted, updated or deleted (write statements only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows_affected: Option<u64>,
}

impl QueryOutput {
    /// The same JSON as `serde_json::to_value(&self)`, built by moving the rows instead of copying every value:
    /// for a 10,000-row answer the copy was most of the encoding time.
    pub fn into_value(self) -> Value {
        let mut map = serde_json::Map::new();
        self.insert_into(&mut map);
        Value::Object(map)
    }

    /// Adds this output's fields, in declaration order, to an object (read_table flattens it into its own).
    pub fn insert_into(self, map: &mut serde_json::Map<String, Value>) {
        let columns = self
            .columns
            .into_iter()
            .map(|c| {
                let mut column = serde_json::Map::new();
                column.insert("name".into(), Value::String(c.name));
                column.insert("type".into(), Value::String(c.type_name));
                Value::Object(column)
            })
            .collect();
        map.insert("columns".into(), Value::Array(columns));
        let rows = self.rows.into_iter().map(Value::Array).collect();
        map.insert("rows".into(), Value::Array(rows));
        map.insert("row_count".into(), Value::from(self.row_count));
        map.insert("truncated".into(), Value::Bool(self.truncated));
        if let Some(by) = self.truncated_by {
            map.insert("truncated_by".into(), Value::String(by));
        }
        if let Some(affected) = self.rows_affected {
            map.insert("rows_affected".into(), Value::from(affected));
        }
    }
}

/// Whether a call may change data. `ReadOnly` runs inside `START TRANSACTION READ ONLY` and always rolls back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    ReadOnly,
    Write,
}

/// What one call runs under: the profile's guard policy, the call's limits, the client's cancellation, and the
/// TLS connector used to send a cancel request to the server.
pub struct CallContext<'a> {
    pub policy: &'a GuardPolicy,
    pub limits: Limits,
    pub cancel: &'a CancellationToken,
    pub tls: MakeRustlsConnect,
}

/// Runs caller-supplied SQL after the guard has accepted it.
pub async fn run_user_sql(
    client: &mut Client,
    ctx: &CallContext<'_>,
    sql: &str,
    params: &[Value],
    intent: Intent,
) -> Result<QueryOutput, ToolError> {
    let mut effective = ctx.policy.clone();
    if intent == Intent::ReadOnly {
        effective.access_mode = AccessMode::ReadOnly;
    }
    let verdict = guard::check(sql, &effective).map_err(|e| ToolError::rejected(e.reason))?;
    if intent == Intent::Write
        && !matches!(verdict.class, StatementClass::Write | StatementClass::Ddl)
    {
        return Err(ToolError::invalid(
            "execute_write runs INSERT, UPDATE, DELETE and MERGE; use execute_query for reads",
        ));
    }
    let ctx = CallContext {
        policy: &effective,
        limits: ctx.limits,
        cancel: ctx.cancel,
        tls: ctx.tls.clone(),
    };
    run_checked(client, &ctx, Some(&verdict), sql, params, intent).await
}

/// Runs SQL that pgmcp built itself from catalog-validated identifiers (read_table, explain_query). It still goes
/// through a read-only transaction and the same limits.
pub async fn run_internal_read(
    client: &mut Client,
    ctx: &CallContext<'_>,
    sql: &str,
    params: &[Value],
) -> Result<QueryOutput, ToolError> {
    run_checked(client, ctx, None, sql, params, Intent::ReadOnly).await
}

async fn run_checked(
    client: &mut Client,
    ctx: &CallContext<'_>,
    verdict: Option<&Verdict>,
    sql: &str,
    params: &[Value],
    intent: Intent,
) -> Result<QueryOutput, ToolError> {
    let limits = ctx.limits;
    let cancel_token = client.cancel_token();
    // A margin over statement_timeout: the server normally cancels first and reports 57014 itself; this bound
    // only catches a server or network that stopped answering.
    let deadline = limits.timeout + Duration::from_secs(2);
    let work = execute(client, ctx.policy, verdict, sql, params, limits, intent);
    tokio::select! {
        result = tokio::time::timeout(deadline, work) => match result {
            Ok(outcome) => outcome.map_err(|e| classify_timeout(e, limits.timeout)),
            Err(_) => {
                let _ = cancel_token.cancel_query(ctx.tls.clone()).await;
                Err(ToolError::Timeout { timeout_ms: limits.timeout.as_millis() as u64 })
            }
        },
        _ = ctx.cancel.cancelled() => {
            // The client gave up on this call: stop the statement on the server rather than let it run on.
            let _ = cancel_token.cancel_query(ctx.tls.clone()).await;
            Err(ToolError::Unavailable { message: "the request was cancelled by the client".into() })
        }
    }
}

fn classify_timeout(err: ToolError, timeout: Duration) -> ToolError {
    match &err {
        ToolError::Database { sqlstate, .. } if sqlstate == QUERY_CANCELED => ToolError::Timeout {
            timeout_ms: timeout.as_millis() as u64,
        },
        _ => err,
    }
}

async fn execute(
    client: &mut Client,
    policy: &GuardPolicy,
    verdict: Option<&Verdict>,
    sql: &str,
    params: &[Value],
    limits: Limits,
    intent: Intent,
) -> Result<QueryOutput, ToolError> {
    let txn = client
        .build_transaction()
        .read_only(intent == Intent::ReadOnly)
        .start()
        .await?;
    if let Some(verdict) = verdict {
        guard::check_volatility(txn.client(), verdict, policy)
            .await
            .map_err(|e| ToolError::rejected(e.reason))?;
    }
    let mut statement = txn.prepare(sql).await?;
    if statement.params().len() != params.len() {
        return Err(ToolError::invalid(format!(
            "the statement has {} parameter placeholder(s) ($1, $2, …) but {} value(s) were given in `params`",
            statement.params().len(),
            params.len()
        )));
    }
    // Column metadata comes from the statement as written, so a column the server renders as text still reports
    // its real type (point, money, geometry…).
    let columns: Vec<ColumnInfo> = statement
        .columns()
        .iter()
        .map(|c| ColumnInfo {
            name: c.name().to_string(),
            type_name: render::type_display_name(c.type_()),
        })
        .collect();
    if !statement
        .columns()
        .iter()
        .all(|c| render::can_decode(c.type_()))
    {
        let wrapped = wrap_with_text_casts(sql, &statement, intent)?;
        statement = txn.prepare(&wrapped).await?;
    }
    let bind_params: Vec<TextParam> = params
        .iter()
        .zip(statement.params())
        .map(|(value, ty)| TextParam::from_json(value, ty))
        .collect();
    let portal = txn.bind_raw(&statement, bind_params.iter()).await?;

    let mut rows = Vec::new();
    let mut bytes = 0usize;
    let mut truncated_by = None;
    let mut rows_affected = None;
    // One row more than the limit tells "exactly max_rows" apart from "more exist".
    let wanted = limits.max_rows.saturating_add(1);
    'fetch: loop {
        let chunk = (wanted - rows.len()).min(FETCH_CHUNK);
        let stream = txn.query_portal_raw(&portal, chunk as i32).await?;
        pin_mut!(stream);
        let mut received = 0usize;
        while let Some(row) = stream.next().await {
            let row = row?;
            received += 1;
            if rows.len() == limits.max_rows {
                truncated_by = Some("max_rows");
                break 'fetch;
            }
            let values = render::row_to_json(&row)
                .map_err(|e| ToolError::invalid(format!("could not render a value: {e}")))?;
            let size = json_size(&values);
            if bytes + size > limits.max_bytes {
                truncated_by = Some("max_result_bytes");
                break 'fetch;
            }
            bytes += size;
            rows.push(values);
        }
        rows_affected = stream.rows_affected();
        if received < chunk {
            break;
        }
    }
    if intent == Intent::Write {
        txn.commit().await?;
    } else {
        // Read-only work is never committed: even if something slipped past every check, nothing persists.
        // Dropping the transaction queues its ROLLBACK without waiting for the answer, so the caller gets its
        // result one round trip sooner; the connection processes the ROLLBACK before anything sent after it.
        drop(txn);
    }
    let is_write =
        verdict.is_some_and(|v| matches!(v.class, StatementClass::Write | StatementClass::Ddl));
    Ok(QueryOutput {
        row_count: rows.len(),
        rows,
        columns,
        truncated: truncated_by.is_some(),
        truncated_by: truncated_by.map(str::to_string),
        rows_affected: if is_write { rows_affected } else { None },
    })
}

/// Serialized size of a row, to enforce max_result_bytes on what the client will actually receive.
fn json_size(values: &[Value]) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    let _ = serde_json::to_writer(&mut counter, values);
    counter.0 + 1
}

/// Rewrites a statement so that every column pgmcp cannot decode in binary is cast to text by the server: the
/// value then arrives in the type's own text form (PostGIS geometry, money, tsvector, regclass, …).
fn wrap_with_text_casts(
    sql: &str,
    statement: &Statement,
    intent: Intent,
) -> Result<String, ToolError> {
    let body = statement_text(sql)?;
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

/// The statement's own text, without a trailing semicolon or comment, as PostgreSQL's parser delimits it.
fn statement_text(sql: &str) -> Result<&str, ToolError> {
    let parsed = pg_query::parse(sql, pg_query::ParserOptions::DEFAULT)
        .map_err(|e| ToolError::rejected(e.to_string()))?;
    let raw = parsed
        .protobuf
        .stmts
        .first()
        .ok_or_else(|| ToolError::rejected("empty statement"))?;
    let start = raw.stmt_location.max(0) as usize;
    let end = if raw.stmt_len == 0 {
        sql.len()
    } else {
        start + raw.stmt_len as usize
    };
    sql.get(start..end)
        .map(|s| s.trim_end().trim_end_matches(';'))
        .ok_or_else(|| ToolError::rejected("could not delimit the statement"))
}

#[cfg(test)]
mod tests {
    use super::{ColumnInfo, QueryOutput};
    use serde_json::json;

    fn sample(truncated_by: Option<&str>, rows_affected: Option<u64>) -> QueryOutput {
        QueryOutput {
            columns: vec![ColumnInfo {
                name: "id".into(),
                type_name: "int4".into(),
            }],
            rows: vec![vec![json!(1)], vec![json!(null)]],
            row_count: 2,
            truncated: truncated_by.is_some(),
            truncated_by: truncated_by.map(str::to_string),
            rows_affected,
        }
    }

    #[test]
    fn into_value_is_the_serde_encoding_with_the_same_key_order() {
        for output in [sample(None, None), sample(Some("max_rows"), Some(3))] {
            let expected = serde_json::to_value(&output).expect("encode");
            let moved = output.into_value();
            assert_eq!(moved, expected);
            assert_eq!(moved.to_string(), expected.to_string());
        }
    }
}
