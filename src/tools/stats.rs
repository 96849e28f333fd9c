//! get_table_stats: exact and estimated row counts, sizes, column type mix and the activity counters of one table.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;
use tokio_util::sync::CancellationToken;

use crate::db::exec::{self, Limits};
use crate::db::session::Session;
use crate::db::{Database, quote_ident};
use crate::tools::ToolError;
use crate::tools::catalog::RelationKind;
use crate::tools::catalog::resolve::resolve_relation;
use crate::tools::query::call_context;

pub const GET_TABLE_STATS_DESCRIPTION: &str = "Size and use of one table or view: exact row count (count(*) under the \
timeout; on failure null, with `exact_count_error`), planner estimate, sizes of heap, indexes, TOAST and total \
(null for views), columns per type, and pg_stat_all_tables counters (scans, live and dead rows, writes, last \
vacuum and analyze). Use it to size a table before querying it, or to check index use and stale statistics.";

fn default_exact_count() -> bool {
    true
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct GetTableStatsParams {
    /// Table or view: "orders", "sales.orders" or quoted (public."Mixed Case").
    pub table: String,
    /// Schema of an unqualified `table`. Default: public.
    #[serde(default)]
    pub schema: Option<String>,
    /// Count the rows exactly; it scans the whole table, so pass false for very large ones.
    #[serde(default = "default_exact_count")]
    pub exact_count: bool,
    /// Database profile to use (see list_profiles); default: the first profile.
    #[serde(default)]
    pub profile: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct SizeInfo {
    pub bytes: i64,
    /// bytes in human units, e.g. "1.2 GB".
    pub pretty: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct TableSizes {
    /// Main table data including free space and visibility maps, excluding TOAST and indexes.
    pub table: SizeInfo,
    /// All indexes of the table.
    pub indexes: SizeInfo,
    /// Out-of-line storage for large values (TOAST table and its index).
    pub toast: SizeInfo,
    /// table + indexes + toast.
    pub total: SizeInfo,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct TypeCount {
    /// Type without modifiers, e.g. "character varying", "numeric".
    pub data_type: String,
    pub columns: i64,
}

/// Counters from pg_stat_all_tables, cumulative since the statistics were last reset.
#[derive(Debug, Serialize, JsonSchema)]
pub struct TableActivity {
    /// Sequential scans started on the table.
    pub seq_scan: i64,
    /// Index scans started on the table's indexes; null when the table has no indexes.
    pub idx_scan: Option<i64>,
    /// Estimated live rows.
    pub n_live_tup: i64,
    /// Estimated dead rows awaiting VACUUM.
    pub n_dead_tup: i64,
    pub inserted_rows: i64,
    pub updated_rows: i64,
    pub deleted_rows: i64,
    /// ISO 8601 UTC timestamp of the last manual VACUUM; null if never.
    pub last_vacuum: Option<String>,
    pub last_autovacuum: Option<String>,
    pub last_analyze: Option<String>,
    pub last_autoanalyze: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct TableStats {
    pub schema: String,
    pub name: String,
    pub kind: RelationKind,
    /// Result of SELECT count(*); null when exact_count was false or the count failed.
    pub exact_row_count: Option<i64>,
    /// Why the exact count is missing although it was requested, e.g. "canceling statement due to statement
    /// timeout" or "permission denied for table orders"; null otherwise.
    pub exact_count_error: Option<String>,
    /// Planner estimate (pg_class.reltuples, summed over partitions); null when never analyzed.
    pub estimated_rows: Option<i64>,
    /// Null for views and foreign tables, which store nothing locally.
    pub sizes: Option<TableSizes>,
    /// Number of columns per data type, most frequent first.
    pub column_types: Vec<TypeCount>,
    /// Null when the server has no statistics row for the relation (views, or statistics not yet collected).
    pub activity: Option<TableActivity>,
}

// A partitioned table stores nothing itself; its partitions do. pg_partition_tree lists the whole tree for a
// partitioned table and nothing for a plain one, hence the UNION with the relation itself.
const SIZES_SQL: &str = "WITH tree AS (
    SELECT c.oid, c.relkind, c.reltuples, c.reltoastrelid
    FROM (SELECT relid FROM pg_partition_tree($1::oid::regclass) UNION SELECT $1::oid::regclass) AS t
    JOIN pg_class c ON c.oid = t.relid
), sums AS (
    SELECT sum(pg_total_relation_size(oid))::bigint AS total,
           sum(pg_indexes_size(oid))::bigint AS indexes,
           sum(CASE WHEN reltoastrelid <> 0 THEN pg_total_relation_size(reltoastrelid) ELSE 0 END)::bigint AS toast,
           sum(reltuples) FILTER (WHERE reltuples >= 0 AND relkind <> 'p')::bigint AS estimated_rows
    FROM tree
)
SELECT estimated_rows, total - indexes - toast, indexes, toast, total,
       pg_size_pretty(total - indexes - toast), pg_size_pretty(indexes), pg_size_pretty(toast),
       pg_size_pretty(total)
FROM sums";

const COLUMN_TYPES_SQL: &str = "SELECT format_type(a.atttypid, NULL), count(*)
FROM pg_attribute a
WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
GROUP BY 1
ORDER BY 2 DESC, 1";

/// Renders a timestamptz column as ISO 8601 in UTC, independent of the session's TimeZone.
macro_rules! iso_utc {
    ($column:literal) => {
        concat!(
            "to_char(s.",
            $column,
            " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
        )
    };
}

const ACTIVITY_SQL: &str = concat!(
    "SELECT s.seq_scan, s.idx_scan, s.n_live_tup, s.n_dead_tup, s.n_tup_ins, s.n_tup_upd, s.n_tup_del, ",
    iso_utc!("last_vacuum"),
    ", ",
    iso_utc!("last_autovacuum"),
    ", ",
    iso_utc!("last_analyze"),
    ", ",
    iso_utc!("last_autoanalyze"),
    " FROM pg_stat_all_tables s WHERE s.relid = $1"
);

/// Count failures that still leave the rest of the statistics worth returning: the statement timeout fired, or
/// the role may read the catalog but not the table.
const COUNT_FAILURES_TO_REPORT: &[SqlState] =
    &[SqlState::QUERY_CANCELED, SqlState::INSUFFICIENT_PRIVILEGE];

pub async fn get_table_stats(
    db: &Database,
    session: &mut Session,
    params: GetTableStatsParams,
    cancel: &CancellationToken,
) -> Result<TableStats, ToolError> {
    let (rel, sizes, column_types, activity) = {
        let txn = session.build_transaction().read_only(true).start().await?;
        let client = txn.client();
        let rel = resolve_relation(client, &params.table, params.schema.as_deref()).await?;
        let oid: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&rel.oid];
        let (sizes, column_types, activity) = tokio::try_join!(
            client.query_one(SIZES_SQL, &oid),
            client.query(COLUMN_TYPES_SQL, &oid),
            client.query_opt(ACTIVITY_SQL, &oid),
        )?;
        (rel, sizes, column_types, activity)
    };
    let (exact_row_count, exact_count_error) = if params.exact_count {
        exact_count(db, session, &rel.schema, &rel.name, cancel).await?
    } else {
        (None, None)
    };

    let has_storage = !matches!(rel.kind, RelationKind::View | RelationKind::ForeignTable);
    Ok(TableStats {
        estimated_rows: sizes.try_get(0)?,
        sizes: if has_storage {
            Some(sizes_from_row(&sizes)?)
        } else {
            None
        },
        column_types: column_types
            .iter()
            .map(|row| {
                Ok(TypeCount {
                    data_type: row.try_get(0)?,
                    columns: row.try_get(1)?,
                })
            })
            .collect::<Result<_, ToolError>>()?,
        activity: activity.as_ref().map(activity_from_row).transpose()?,
        exact_row_count,
        exact_count_error,
        schema: rel.schema,
        name: rel.name,
        kind: rel.kind,
    })
}

/// `SELECT count(*)` as any caller's query runs: read-only, rolled back, under the statement timeout, and only
/// when every function it would call passes the guard (a view's columns, a table's row-level security policy).
/// A count that may not or did not run leaves the estimate to answer, and says why.
async fn exact_count(
    db: &Database,
    session: &mut Session,
    schema: &str,
    name: &str,
    cancel: &CancellationToken,
) -> Result<(Option<i64>, Option<String>), ToolError> {
    let sql = format!(
        "SELECT count(*) FROM {}.{}",
        quote_ident(schema),
        quote_ident(name)
    );
    let limits = Limits {
        max_rows: 1,
        max_bytes: usize::MAX,
        timeout: db.profile.statement_timeout,
    };
    let ctx = call_context(db, limits, cancel);
    match exec::run_internal_read(session, &ctx, &sql, &[]).await {
        Ok(output) => {
            let count = output
                .rows
                .to_values()
                .ok()
                .and_then(|rows| rows.first()?.first()?.as_i64())
                .ok_or_else(|| ToolError::invalid("count(*) returned no number"))?;
            Ok((Some(count), None))
        }
        Err(ToolError::Rejected { reason }) => Ok((
            None,
            Some(format!(
                "not counted, so as not to run what the guard refuses: {reason}; estimated_rows is the \
                 planner's estimate"
            )),
        )),
        Err(error @ ToolError::Timeout { .. }) => Ok((None, Some(error.to_string()))),
        Err(ToolError::Database {
            sqlstate, message, ..
        }) if COUNT_FAILURES_TO_REPORT
            .iter()
            .any(|state| state.code() == sqlstate) =>
        {
            Ok((None, Some(message)))
        }
        Err(other) => Err(other),
    }
}

fn sizes_from_row(row: &Row) -> Result<TableSizes, ToolError> {
    let size = |bytes: usize, pretty: usize| -> Result<SizeInfo, ToolError> {
        Ok(SizeInfo {
            bytes: row.try_get(bytes)?,
            pretty: row.try_get(pretty)?,
        })
    };
    Ok(TableSizes {
        table: size(1, 5)?,
        indexes: size(2, 6)?,
        toast: size(3, 7)?,
        total: size(4, 8)?,
    })
}

fn activity_from_row(row: &Row) -> Result<TableActivity, ToolError> {
    Ok(TableActivity {
        seq_scan: row.try_get(0)?,
        idx_scan: row.try_get(1)?,
        n_live_tup: row.try_get(2)?,
        n_dead_tup: row.try_get(3)?,
        inserted_rows: row.try_get(4)?,
        updated_rows: row.try_get(5)?,
        deleted_rows: row.try_get(6)?,
        last_vacuum: row.try_get(7)?,
        last_autovacuum: row.try_get(8)?,
        last_analyze: row.try_get(9)?,
        last_autoanalyze: row.try_get(10)?,
    })
}
