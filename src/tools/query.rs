//! The query family: execute_query, execute_write, explain_query, read_table.

use std::collections::HashMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::config::AccessMode;
use crate::db::Database;
use crate::db::exec::{self, CallContext, Intent, JsonObjectText, Limits, QueryOutput};
use crate::db::quote_ident;
use crate::db::session::Session;
use crate::guard::StatementClass;
use crate::tools::ToolError;
use crate::tools::dba::hypo::{self, Hypo, HypotheticalIndex};
use crate::tools::dba::reading::{self, PlanNote, read_plan};

pub const EXECUTE_QUERY_DESCRIPTION: &str = "Run one read-only SQL statement (SELECT, WITH, VALUES, TABLE, SHOW, \
EXPLAIN) in a read-only transaction with a timeout; writes, DDL, SET and state-changing functions are refused with the reason. \
Pass values as $1, $2, … with `params`, never inside the SQL. Answer: `columns` (name, type), `rows` (arrays in \
column order), `row_count`, and `truncated: true` when rows were cut at `limit` or the size cap (aggregate, filter \
or page in SQL). numeric is an exact string, timestamps ISO 8601, bytea \"\\\\x…\" hex.";

pub const EXECUTE_WRITE_DESCRIPTION: &str = "Run one INSERT, UPDATE, DELETE or MERGE (DDL only where the profile \
allows it) and commit it; only on read_write profiles. Pass values as $1, $2, … with `params`; RETURNING shows the \
changed rows. Answer as execute_query's, plus `rows_affected`. Use execute_query for reads.";

pub const EXPLAIN_QUERY_DESCRIPTION: &str = "PostgreSQL's plan for one read-only statement: the JSON plan, an \
indented text tree with costs and row estimates, and `reading`, per-node notes on large sequential scans, \
misestimates over 10x, sorts and hashes spilling to disk, costly nested loops and joins without an index.";

pub const READ_TABLE_DESCRIPTION: &str = "Read one table or view a page at a time without SQL, in primary-key \
order unless `order_by` says otherwise, so pages are stable. Answer: `schema`, `table`, then execute_query's \
`columns`, `rows`, `row_count`, `truncated`, and `offset`, `next_offset` when another page exists.";

fn default_params() -> Vec<Value> {
    Vec::new()
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecuteQueryParams {
    /// One SQL statement.
    pub sql: String,
    /// Values for $1, $2, …: strings, numbers, booleans, null, arrays, objects (json). PostgreSQL reads each as
    /// the type the statement expects.
    #[serde(default = "default_params")]
    pub params: Vec<Value>,
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub limit: Option<u64>,
    /// Database profile to use (see list_profiles); default: the first profile.
    #[serde(default)]
    pub profile: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExplainQueryParams {
    /// The statement, without EXPLAIN.
    pub sql: String,
    /// Also run it (rolled back) for actual times, rows and buffers.
    #[serde(default)]
    pub analyze: bool,
    /// Values for $1, $2, …, as in execute_query.
    #[serde(default = "default_params")]
    pub params: Vec<Value>,
    /// Plan as if these indexes existed (hypopg; not with `analyze`); nothing is built.
    #[serde(default)]
    pub hypothetical_indexes: Vec<HypotheticalIndex>,
    /// Database profile to use (see list_profiles); default: the first profile.
    #[serde(default)]
    pub profile: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct HypotheticalUse {
    /// The index as planned (CREATE INDEX text).
    pub definition: String,
    /// Its name in the plan.
    pub name: String,
    /// Whether the plan uses it.
    pub used: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ExplainOutput {
    /// The plan as PostgreSQL's EXPLAIN (FORMAT JSON) returns it: the top-level object with "Plan" and timings.
    pub plan: Value,
    /// The same plan as an indented tree, one node per line with cost, rows and (with analyze) actual time.
    pub text: String,
    pub analyzed: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hypothetical_indexes: Vec<HypotheticalUse>,
    /// What the plan shows in plain words: large sequential scans, misestimates, spills, costly nested loops.
    pub reading: Vec<PlanNote>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadTableParams {
    /// Table or view: name or schema.name.
    pub table: String,
    /// Schema of an unqualified `table`. Default: public.
    #[serde(default)]
    pub schema: Option<String>,
    /// Columns to return, in order. Default: all.
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    /// Column names, each optionally followed by " desc", e.g. ["created_at desc", "id"].
    #[serde(default)]
    pub order_by: Option<Vec<String>>,
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub limit: Option<u64>,
    #[serde(default)]
    pub offset: u64,
    /// Database profile to use (see list_profiles); default: the first profile.
    #[serde(default)]
    pub profile: Option<String>,
}

/// A page of a table: which table, the rows as execute_query shows them, and where the next page starts.
#[derive(Debug)]
pub struct ReadTableOutput {
    pub schema: String,
    pub table: String,
    pub result: QueryOutput,
    pub offset: u64,
    /// Offset of the next page when `truncated` is true.
    pub next_offset: Option<u64>,
}

impl ReadTableOutput {
    /// One compact JSON object: `schema`, `table`, the query result's members, `offset`, then `next_offset`.
    pub fn into_json(self) -> String {
        let mut object = JsonObjectText::with_capacity(self.result.rows.as_str().len() + 256);
        object.member("schema", &self.schema);
        object.member("table", &self.table);
        self.result.write_members(&mut object);
        object.member("offset", &self.offset);
        if let Some(next) = self.next_offset {
            object.member("next_offset", &next);
        }
        object.finish()
    }
}

pub(crate) const READ_TABLE_DEFAULT_LIMIT: u64 = 100;

pub(crate) fn call_context<'a>(
    db: &'a Database,
    limits: Limits,
    cancel: &'a CancellationToken,
) -> CallContext<'a> {
    CallContext {
        guard: &db.guard,
        limits,
        cancel,
        tls: db.connector().tls(),
        statement_cache: db.profile.statement_cache_size(),
        shared_resolution: !db.per_caller(),
    }
}

/// The limits for one call: the caller's `limit`, bounded by the profile's ceiling.
pub fn limits_for(db: &Database, requested: Option<u64>) -> Result<Limits, ToolError> {
    let profile = &db.profile;
    let max_rows = match requested {
        None => profile.max_rows,
        Some(0) => return Err(ToolError::invalid("`limit` must be at least 1")),
        Some(n) if n as usize > profile.max_rows_ceiling => {
            return Err(ToolError::invalid(format!(
                "`limit` {n} is above this profile's ceiling of {} rows; ask for fewer rows or aggregate in SQL",
                profile.max_rows_ceiling
            )));
        }
        Some(n) => n as usize,
    };
    Ok(Limits {
        max_rows,
        max_bytes: profile.max_result_bytes,
        timeout: profile.statement_timeout,
    })
}

pub async fn execute_query(
    db: &Database,
    client: &mut Session,
    params: ExecuteQueryParams,
    cancel: &CancellationToken,
) -> Result<QueryOutput, ToolError> {
    let ctx = call_context(db, limits_for(db, params.limit)?, cancel);
    exec::run_user_sql(client, &ctx, &params.sql, &params.params, Intent::ReadOnly).await
}

pub async fn execute_write(
    db: &Database,
    client: &mut Session,
    params: ExecuteQueryParams,
    cancel: &CancellationToken,
) -> Result<QueryOutput, ToolError> {
    if db.profile.access_mode != AccessMode::ReadWrite {
        return Err(ToolError::invalid(format!(
            "profile `{}` is read-only; writes need a profile with access_mode = \"read_write\"",
            db.profile.name
        )));
    }
    let ctx = call_context(db, limits_for(db, params.limit)?, cancel);
    exec::run_user_sql(client, &ctx, &params.sql, &params.params, Intent::Write).await
}

pub async fn explain_query(
    db: &Database,
    client: &mut Session,
    params: ExplainQueryParams,
    cancel: &CancellationToken,
) -> Result<ExplainOutput, ToolError> {
    let options = if params.analyze {
        "ANALYZE, BUFFERS, FORMAT JSON"
    } else {
        "FORMAT JSON"
    };
    let mut hypothetical = Vec::new();
    let plan = if params.hypothetical_indexes.is_empty() {
        explain_plan(db, client, &params.sql, options, &params.params, cancel).await?
    } else {
        if params.analyze {
            return Err(ToolError::invalid(
                "hypothetical indexes exist only for the planner; call without `analyze` to plan with them",
            ));
        }
        let mut defs = Vec::with_capacity(params.hypothetical_indexes.len());
        for index in &params.hypothetical_indexes {
            defs.push(hypo::resolve(client, index).await?);
        }
        let Some(session_hypo) = Hypo::open(client).await? else {
            return Err(ToolError::invalid(hypo::HYPOPG_SETUP));
        };
        let planned = async {
            let mut names = Vec::with_capacity(defs.len());
            for def in &defs {
                names.push((
                    def.create_sql(),
                    session_hypo.create(client, def).await?.name,
                ));
            }
            let plan =
                explain_plan(db, client, &params.sql, options, &params.params, cancel).await?;
            Ok::<_, ToolError>((names, plan))
        }
        .await;
        let (names, plan) = hypo::finish(session_hypo, client, planned).await?;
        hypothetical = names
            .into_iter()
            .map(|(definition, name)| HypotheticalUse {
                used: plan_uses_index(&plan, &name),
                definition,
                name,
            })
            .collect();
        plan
    };
    let text = plan_text(&plan);
    let reading = read_plan(&plan, &table_rows(client, &plan).await?);
    Ok(ExplainOutput {
        plan,
        text,
        analyzed: params.analyze,
        hypothetical_indexes: hypothetical,
        reading,
    })
}

/// EXPLAIN's JSON (the top-level object) for one read-only statement, checked and run like execute_query's.
pub async fn explain_plan(
    db: &Database,
    client: &mut Session,
    sql: &str,
    options: &str,
    params: &[Value],
    cancel: &CancellationToken,
) -> Result<Value, ToolError> {
    let verdict = db
        .guard
        .check(sql, AccessMode::ReadOnly)
        .map_err(|e| ToolError::rejected(e.reason))?;
    if matches!(verdict.class, StatementClass::Explain { .. }) {
        return Err(ToolError::invalid(
            "pass the statement without the EXPLAIN keyword",
        ));
    }
    let explain_sql = format!("EXPLAIN ({options}) {sql}");
    let limits = Limits {
        max_rows: 1,
        max_bytes: usize::MAX,
        timeout: db.profile.statement_timeout,
    };
    let ctx = call_context(db, limits, cancel);
    // The composed text goes through the guard again, so no suffix in `sql` can change what EXPLAIN wraps.
    let output = exec::run_user_sql(client, &ctx, &explain_sql, params, Intent::ReadOnly).await?;
    output
        .rows
        .to_values()
        .map_err(|e| ToolError::invalid(format!("could not read the plan: {e}")))?
        .into_iter()
        .next()
        .and_then(|row| row.into_iter().next())
        .and_then(|cell| match cell {
            Value::Array(mut items) if !items.is_empty() => Some(items.swap_remove(0)),
            _ => None,
        })
        .ok_or_else(|| ToolError::invalid("PostgreSQL returned no plan"))
}

/// The plan's estimated total cost (the top node's).
pub fn plan_total_cost(plan: &Value) -> f64 {
    plan.pointer("/Plan/Total Cost")
        .and_then(Value::as_f64)
        .unwrap_or(0.0)
}

/// Whether any node of the plan uses the named index.
pub fn plan_uses_index(plan: &Value, index: &str) -> bool {
    fn walk(node: &Value, index: &str) -> bool {
        node.get("Index Name").and_then(Value::as_str) == Some(index)
            || node
                .get("Plans")
                .and_then(Value::as_array)
                .is_some_and(|children| children.iter().any(|c| walk(c, index)))
    }
    plan.get("Plan").is_some_and(|root| walk(root, index))
}

/// The estimated row counts of the tables a plan scans, by name, for the reading's "large table" test.
async fn table_rows(client: &mut Session, plan: &Value) -> Result<HashMap<String, f64>, ToolError> {
    let names = reading::scanned_relations(plan);
    if names.is_empty() {
        return Ok(HashMap::new());
    }
    let txn = client.build_transaction().read_only(true).start().await?;
    let rows = txn
        .query(
            "SELECT c.relname::text, max(c.reltuples)::float8 FROM pg_catalog.pg_class c \
             WHERE c.relname = ANY ($1) AND c.relkind IN ('r', 'm', 'p') GROUP BY 1",
            &[&names],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Renders EXPLAIN's JSON as the familiar indented tree, so the model can read the plan at a glance.
pub fn plan_text(plan: &Value) -> String {
    let mut out = String::new();
    if let Some(root) = plan.get("Plan") {
        write_plan_node(root, 0, &mut out);
    }
    for (key, label) in [
        ("Planning Time", "Planning Time"),
        ("Execution Time", "Execution Time"),
    ] {
        if let Some(ms) = plan.get(key).and_then(Value::as_f64) {
            out.push_str(&format!("{label}: {ms:.3} ms\n"));
        }
    }
    out
}

fn write_plan_node(node: &Value, depth: usize, out: &mut String) {
    let num = |key: &str| node.get(key).and_then(Value::as_f64);
    let indent = "  ".repeat(depth);
    let arrow = if depth > 0 { "-> " } else { "" };
    let mut line = format!("{indent}{arrow}{}", reading::node_label(node));
    if let (Some(start), Some(total), Some(rows)) =
        (num("Startup Cost"), num("Total Cost"), num("Plan Rows"))
    {
        line.push_str(&format!(" (cost={start:.2}..{total:.2} rows={rows})"));
    }
    if let (Some(start), Some(total), Some(rows), Some(loops)) = (
        num("Actual Startup Time"),
        num("Actual Total Time"),
        num("Actual Rows"),
        num("Actual Loops"),
    ) {
        line.push_str(&format!(
            " (actual time={start:.3}..{total:.3} rows={rows} loops={loops})"
        ));
    }
    out.push_str(&line);
    out.push('\n');
    for key in [
        "Index Cond",
        "Hash Cond",
        "Merge Cond",
        "Join Filter",
        "Filter",
        "Sort Key",
    ] {
        if let Some(value) = node.get(key) {
            let rendered = match value {
                Value::String(s) => s.clone(),
                Value::Array(items) => items
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
                other => other.to_string(),
            };
            out.push_str(&format!("{indent}     {key}: {rendered}\n"));
        }
    }
    if let Some(children) = node.get("Plans").and_then(Value::as_array) {
        for child in children {
            write_plan_node(child, depth + 1, out);
        }
    }
}

pub async fn read_table(
    db: &Database,
    client: &mut Session,
    params: ReadTableParams,
    cancel: &CancellationToken,
) -> Result<ReadTableOutput, ToolError> {
    let (schema, table) = match (&params.schema, params.table.split_once('.')) {
        (Some(schema), _) => (schema.clone(), params.table.clone()),
        (None, Some((schema, table))) => (schema.to_string(), table.to_string()),
        (None, None) => ("public".to_string(), params.table.clone()),
    };
    let catalog = client
        .query(
            "SELECT a.attname::text, \
                    coalesce(array_position(pk.indkey::int2[], a.attnum), 0) AS pk_position \
             FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
             LEFT JOIN pg_index pk ON pk.indrelid = c.oid AND pk.indisprimary \
             WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r','v','m','f','p') \
             ORDER BY a.attnum",
            &[&schema, &table],
        )
        .await?;
    if catalog.is_empty() {
        return Err(ToolError::invalid(format!(
            "table {schema}.{table} does not exist or is not visible; call list_tables to see the tables"
        )));
    }
    let known: Vec<String> = catalog.iter().map(|r| r.get::<_, String>(0)).collect();
    let check_column = |name: &str| -> Result<String, ToolError> {
        if known.iter().any(|k| k == name) {
            Ok(quote_ident(name))
        } else {
            Err(ToolError::invalid(format!(
                "column `{name}` does not exist in {schema}.{table}; its columns are: {}",
                known.join(", ")
            )))
        }
    };
    let select_list = match &params.columns {
        Some(columns) if !columns.is_empty() => columns
            .iter()
            .map(|c| check_column(c))
            .collect::<Result<Vec<_>, _>>()?
            .join(", "),
        _ => "*".to_string(),
    };
    let order_keys: Vec<String> = match &params.order_by {
        Some(keys) if !keys.is_empty() => keys
            .iter()
            .map(|key| {
                let trimmed = key.trim();
                let (name, direction) = match trimmed.rsplit_once(' ') {
                    Some((name, dir)) if dir.eq_ignore_ascii_case("desc") => (name.trim(), " DESC"),
                    Some((name, dir)) if dir.eq_ignore_ascii_case("asc") => (name.trim(), " ASC"),
                    _ => (trimmed, ""),
                };
                Ok(format!("{}{direction}", check_column(name)?))
            })
            .collect::<Result<Vec<_>, ToolError>>()?,
        _ => {
            let mut pk: Vec<(i32, String)> = catalog
                .iter()
                .filter_map(|r| {
                    let position: i32 = r.get(1);
                    (position > 0).then(|| (position, quote_ident(&r.get::<_, String>(0))))
                })
                .collect();
            pk.sort();
            pk.into_iter().map(|(_, name)| name).collect()
        }
    };
    let order_clause = if order_keys.is_empty() {
        String::new()
    } else {
        format!(" ORDER BY {}", order_keys.join(", "))
    };
    let limit = params
        .limit
        .unwrap_or(READ_TABLE_DEFAULT_LIMIT.min(db.profile.max_rows as u64));
    let limits = limits_for(db, Some(limit))?;
    let sql = format!(
        "SELECT {select_list} FROM {}.{}{order_clause} LIMIT $1 OFFSET $2",
        quote_ident(&schema),
        quote_ident(&table)
    );
    // One row beyond the page tells whether another page exists.
    let bind = [Value::from(limit + 1), Value::from(params.offset)];
    let result =
        exec::run_internal_read(client, &call_context(db, limits, cancel), &sql, &bind).await?;
    let next_offset = result
        .truncated()
        .then(|| params.offset + result.row_count as u64);
    Ok(ReadTableOutput {
        schema,
        table,
        result,
        offset: params.offset,
        next_offset,
    })
}

#[cfg(test)]
mod tests {
    use super::{ReadTableOutput, plan_text};
    use crate::db::exec::{ColumnInfo, QueryOutput, RowsJson};
    use serde_json::json;

    #[test]
    fn a_page_wraps_the_query_result_with_its_table_and_offsets() {
        for next_offset in [None, Some(5)] {
            let output = ReadTableOutput {
                schema: "public".into(),
                table: "books".into(),
                result: QueryOutput {
                    columns: vec![ColumnInfo {
                        name: "title".into(),
                        type_name: "text".into(),
                    }],
                    rows: RowsJson::from_values(&[vec![json!("a")]]),
                    row_count: 1,
                    truncated_by: next_offset.map(|_| "max_rows"),
                    rows_affected: None,
                },
                offset: 4,
                next_offset,
            };
            let mut expected = json!({"schema": "public", "table": "books",
                "columns": [{"name": "title", "type": "text"}], "rows": [["a"]], "row_count": 1,
                "truncated": next_offset.is_some(), "offset": 4});
            if let Some(next) = next_offset {
                expected["truncated_by"] = json!("max_rows");
                expected["next_offset"] = json!(next);
            }
            let text = output.into_json();
            let parsed: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
            assert_eq!(parsed, expected, "{text}");
            assert!(
                text.starts_with(r#"{"schema":"public","table":"books","columns":"#),
                "{text}"
            );
        }
    }

    #[test]
    fn plan_text_shows_nodes_costs_and_conditions() {
        let plan = json!({"Plan": {"Node Type": "Hash Join", "Startup Cost": 1.0, "Total Cost": 20.5, "Plan Rows": 10,
            "Hash Cond": "(a.id = b.a_id)",
            "Plans": [{"Node Type": "Seq Scan", "Relation Name": "a", "Alias": "a", "Startup Cost": 0.0, "Total Cost": 5.0, "Plan Rows": 100}]},
            "Planning Time": 0.25});
        let text = plan_text(&plan);
        assert!(
            text.starts_with("Hash Join (cost=1.00..20.50 rows=10)\n"),
            "{text}"
        );
        assert!(text.contains("Hash Cond: (a.id = b.a_id)"));
        assert!(text.contains("  -> Seq Scan on a (cost=0.00..5.00 rows=100)"));
        assert!(text.contains("Planning Time: 0.250 ms"));
    }
}
