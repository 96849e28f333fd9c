//! Catalog tools: what schemas, tables, columns and databases exist. Each tool is one catalog query (describe_table
//! pipelines a few on the same connection), so they stay fast on schemas with thousands of relations.

mod describe;
pub(crate) mod resolve;

pub use describe::{
    CheckConstraint, ColumnInfo, DESCRIBE_TABLE_DESCRIPTION, DescribeTableParams, ForeignKey,
    ForeignKeyAction, IdentityKind, IncomingForeignKey, IndexInfo, KeyConstraint, TableDescription,
    TriggerInfo, describe_table, hide_masked,
};
pub use resolve::RelationKind;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use crate::tools::ToolError;
use resolve::{RELATION_KINDS_SQL, USER_SCHEMA_PREDICATE};

// ---------------------------------------------------------------------------------------------------------------
// list_schemas

pub const LIST_SCHEMAS_DESCRIPTION: &str = "Schemas of the current database with owner, comment and how many tables, \
views and other relations each holds; system schemas only with `include_system`. Start here in an unfamiliar \
database.";

#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct ListSchemasParams {
    /// Also list pg_catalog, information_schema, pg_toast* and pg_temp*.
    #[serde(default)]
    pub include_system: bool,
    /// Database profile to use (see list_profiles); default: the first profile.
    #[serde(default)]
    pub profile: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct SchemaInfo {
    /// Schema name, exactly as stored (pass it verbatim as `schema` to other tools).
    pub name: String,
    /// Role that owns the schema.
    pub owner: String,
    /// COMMENT ON SCHEMA text, if any.
    pub comment: Option<String>,
    /// Number of tables, views, materialized views, foreign and partitioned tables (partitions included).
    pub table_count: i64,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct SchemaList {
    pub schemas: Vec<SchemaInfo>,
}

pub async fn list_schemas(
    client: &Client,
    params: ListSchemasParams,
) -> Result<SchemaList, ToolError> {
    let sql = format!(
        "SELECT n.nspname::text, pg_get_userbyid(n.nspowner)::text, obj_description(n.oid, 'pg_namespace'),
                (SELECT count(*) FROM pg_class c
                  WHERE c.relnamespace = n.oid AND c.relkind IN {RELATION_KINDS_SQL})
         FROM pg_namespace n
         WHERE $1 OR {USER_SCHEMA_PREDICATE}
         ORDER BY n.nspname"
    );
    let rows = client.query(&sql, &[&params.include_system]).await?;
    let schemas = rows
        .iter()
        .map(|row| {
            Ok(SchemaInfo {
                name: row.try_get(0)?,
                owner: row.try_get(1)?,
                comment: row.try_get(2)?,
                table_count: row.try_get(3)?,
            })
        })
        .collect::<Result<_, ToolError>>()?;
    Ok(SchemaList { schemas })
}

// ---------------------------------------------------------------------------------------------------------------
// list_tables

pub const LIST_TABLES_DESCRIPTION: &str = "Tables, views, materialized views, foreign and partitioned tables, by \
schema and name: kind, estimated rows (null if never analyzed), bytes on disk with indexes and TOAST (null for views), \
comment; `truncated: true` when more matched than `limit`.";

fn default_list_tables_limit() -> u32 {
    500
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListTablesParams {
    /// Only this schema. Default: all but system schemas.
    #[serde(default)]
    pub schema: Option<String>,
    /// Case-insensitive LIKE pattern on the name, e.g. "%order%".
    #[serde(default)]
    pub name_pattern: Option<String>,
    /// Only these kinds. Default: all.
    #[serde(default)]
    pub kinds: Option<Vec<RelationKind>>,
    #[serde(default = "default_list_tables_limit")]
    #[schemars(range(min = 1, max = 5000))]
    pub limit: u32,
    /// Database profile to use (see list_profiles); default: the first profile.
    #[serde(default)]
    pub profile: Option<String>,
}

impl Default for ListTablesParams {
    fn default() -> Self {
        ListTablesParams {
            schema: None,
            name_pattern: None,
            kinds: None,
            limit: default_list_tables_limit(),
            profile: None,
        }
    }
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct TableSummary {
    pub schema: String,
    pub name: String,
    pub kind: RelationKind,
    /// Planner estimate of the number of rows (pg_class.reltuples); null when the table was never analyzed.
    pub row_estimate: Option<i64>,
    /// Bytes on disk including indexes and TOAST; for partitioned tables the sum over all partitions; null for
    /// views and foreign tables, which store nothing locally.
    pub total_bytes: Option<i64>,
    /// total_bytes in human units, e.g. "12 MB".
    pub total_size: Option<String>,
    /// COMMENT ON TABLE / VIEW text, if any.
    pub comment: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct TableList {
    pub tables: Vec<TableSummary>,
    /// True when more relations matched than `limit`; narrow the filter or raise the limit.
    pub truncated: bool,
}

/// Byte size of a relation as list_tables reports it, as SQL over `pg_class c`.
const RELATION_TOTAL_BYTES_SQL: &str = "CASE
    WHEN c.relkind IN ('v', 'f') THEN NULL
    WHEN c.relkind = 'p' THEN (SELECT coalesce(sum(pg_total_relation_size(tree.relid)), 0)::bigint
                               FROM pg_partition_tree(c.oid) AS tree)
    ELSE pg_total_relation_size(c.oid) END";

pub async fn list_tables(
    client: &Client,
    params: ListTablesParams,
) -> Result<TableList, ToolError> {
    if !(1..=5000).contains(&params.limit) {
        return Err(ToolError::invalid(format!(
            "limit must be between 1 and 5000, got {}",
            params.limit
        )));
    }
    let kinds: Vec<&str> = match &params.kinds {
        Some(kinds) if !kinds.is_empty() => kinds.iter().map(|k| k.relkind()).collect(),
        _ => vec!["r", "v", "m", "f", "p"],
    };
    let name_pattern = params.name_pattern.as_deref().filter(|p| !p.is_empty());
    // One row past the limit tells us whether the list was cut.
    let fetch = i64::from(params.limit) + 1;
    // Sizes are computed in the outer query so only the rows that survive the LIMIT touch the file system.
    let sql = format!(
        "SELECT picked.nspname, picked.relname, picked.relkind, picked.row_estimate, sized.total_bytes,
                pg_size_pretty(sized.total_bytes), picked.comment
         FROM (SELECT c.oid, n.nspname::text, c.relname::text, c.relkind::text,
                      CASE WHEN c.reltuples < 0 THEN NULL ELSE c.reltuples::bigint END AS row_estimate,
                      obj_description(c.oid, 'pg_class') AS comment
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE c.relkind::text = ANY($3::text[])
                 AND CASE WHEN $1::text IS NULL THEN {USER_SCHEMA_PREDICATE} ELSE n.nspname = $1 END
                 AND ($2::text IS NULL OR c.relname ILIKE $2)
               ORDER BY n.nspname, c.relname
               LIMIT $4) AS picked
         JOIN pg_class c ON c.oid = picked.oid
         CROSS JOIN LATERAL (SELECT {RELATION_TOTAL_BYTES_SQL} AS total_bytes) AS sized
         ORDER BY picked.nspname COLLATE \"C\", picked.relname COLLATE \"C\""
    );
    let rows = client
        .query(&sql, &[&params.schema, &name_pattern, &kinds, &fetch])
        .await?;
    let truncated = rows.len() > params.limit as usize;
    let tables = rows
        .iter()
        .take(params.limit as usize)
        .map(|row| {
            let relkind: String = row.try_get(2)?;
            Ok(TableSummary {
                schema: row.try_get(0)?,
                name: row.try_get(1)?,
                kind: RelationKind::from_catalog(&relkind)?,
                row_estimate: row.try_get(3)?,
                total_bytes: row.try_get(4)?,
                total_size: row.try_get(5)?,
                comment: row.try_get(6)?,
            })
        })
        .collect::<Result<Vec<_>, ToolError>>()?;
    if tables.is_empty()
        && let Some(schema) = &params.schema
    {
        ensure_schema_exists(client, schema).await?;
    }
    Ok(TableList { tables, truncated })
}

/// An empty result for a misspelled schema should say so instead of looking like an empty schema.
async fn ensure_schema_exists(client: &Client, schema: &str) -> Result<(), ToolError> {
    let found = client
        .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&schema])
        .await?;
    match found {
        Some(_) => Ok(()),
        None => Err(ToolError::invalid(format!(
            "schema {schema} does not exist; call list_schemas to see the schemas"
        ))),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// search_tables

pub const SEARCH_TABLES_DESCRIPTION: &str = "Find tables and columns whose name contains `term`, case-insensitively \
and literally (`%` and `_` are not wildcards). Each match gives schema, table, kind, whether the table or a column \
matched, and the column with its type; table matches first. Use it when you know a concept (\"email\") but not \
where it lives.";

fn default_search_limit() -> u32 {
    100
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct SearchTablesParams {
    /// Part of a table or column name.
    #[schemars(length(min = 1, max = 200))]
    pub term: String,
    /// Only this schema. Default: all but system schemas.
    #[serde(default)]
    pub schema: Option<String>,
    #[serde(default = "default_search_limit")]
    #[schemars(range(min = 1, max = 1000))]
    pub limit: u32,
    /// Database profile to use (see list_profiles); default: the first profile.
    #[serde(default)]
    pub profile: Option<String>,
}

/// Which name contained the search term.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MatchedOn {
    TableName,
    ColumnName,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct SearchMatch {
    pub schema: String,
    pub table: String,
    pub kind: RelationKind,
    pub matched_on: MatchedOn,
    /// The matching column (null for table-name matches).
    pub column: Option<String>,
    /// The matching column's type, e.g. "character varying(200)" (null for table-name matches).
    pub data_type: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct SearchResults {
    pub matches: Vec<SearchMatch>,
    /// True when more matches exist than `limit`.
    pub truncated: bool,
}

/// A LIKE pattern matching names that contain `term` literally: `\`, `%` and `_` are escaped with the default
/// LIKE escape character `\`.
pub(crate) fn contains_pattern(term: &str) -> String {
    let mut pattern = String::with_capacity(term.len() + 2);
    pattern.push('%');
    for ch in term.chars() {
        if matches!(ch, '\\' | '%' | '_') {
            pattern.push('\\');
        }
        pattern.push(ch);
    }
    pattern.push('%');
    pattern
}

pub async fn search_tables(
    client: &Client,
    params: SearchTablesParams,
) -> Result<SearchResults, ToolError> {
    if params.term.trim().is_empty() {
        return Err(ToolError::invalid("term must not be empty"));
    }
    if params.term.chars().count() > 200 {
        return Err(ToolError::invalid("term must be at most 200 characters"));
    }
    if !(1..=1000).contains(&params.limit) {
        return Err(ToolError::invalid(format!(
            "limit must be between 1 and 1000, got {}",
            params.limit
        )));
    }
    let pattern = contains_pattern(&params.term);
    let fetch = i64::from(params.limit) + 1;
    let sql = format!(
        "WITH rels AS (
             SELECT c.oid, n.nspname::text AS schema_name, c.relname::text AS rel_name, c.relkind::text AS relkind
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN {RELATION_KINDS_SQL}
               AND CASE WHEN $2::text IS NULL THEN {USER_SCHEMA_PREDICATE} ELSE n.nspname = $2 END)
         SELECT schema_name, rel_name, relkind, is_column, column_name, data_type
         FROM (SELECT r.schema_name, r.rel_name, r.relkind, false AS is_column, NULL::text AS column_name,
                      NULL::text AS data_type, 0::int2 AS position
               FROM rels r WHERE r.rel_name ILIKE $1
               UNION ALL
               SELECT r.schema_name, r.rel_name, r.relkind, true, a.attname::text,
                      format_type(a.atttypid, a.atttypmod), a.attnum
               FROM rels r JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
               WHERE a.attname ILIKE $1) AS found
         ORDER BY is_column, schema_name COLLATE \"C\", rel_name COLLATE \"C\", position
         LIMIT $3"
    );
    let rows = client
        .query(&sql, &[&pattern, &params.schema, &fetch])
        .await?;
    let truncated = rows.len() > params.limit as usize;
    let matches = rows
        .iter()
        .take(params.limit as usize)
        .map(|row| {
            let relkind: String = row.try_get(2)?;
            let is_column: bool = row.try_get(3)?;
            Ok(SearchMatch {
                schema: row.try_get(0)?,
                table: row.try_get(1)?,
                kind: RelationKind::from_catalog(&relkind)?,
                matched_on: if is_column {
                    MatchedOn::ColumnName
                } else {
                    MatchedOn::TableName
                },
                column: row.try_get(4)?,
                data_type: row.try_get(5)?,
            })
        })
        .collect::<Result<Vec<_>, ToolError>>()?;
    if matches.is_empty()
        && let Some(schema) = &params.schema
    {
        ensure_schema_exists(client, schema).await?;
    }
    Ok(SearchResults { matches, truncated })
}

// ---------------------------------------------------------------------------------------------------------------
// list_databases

pub const LIST_DATABASES_DESCRIPTION: &str = "Databases on this server (not templates): owner, encoding, size (null \
without CONNECT on it), comment, and `is_current`. The other tools see only the current database; another one \
needs a profile that connects to it (list_profiles).";

#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct ListDatabasesParams {
    /// Database profile to use (see list_profiles); default: the first profile.
    #[serde(default)]
    pub profile: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct DatabaseInfo {
    pub name: String,
    pub owner: String,
    /// Server-side character encoding, e.g. "UTF8".
    pub encoding: String,
    /// Size on disk in bytes; null when the current role lacks CONNECT privilege on the database.
    pub size_bytes: Option<i64>,
    /// size_bytes in human units, e.g. "8 MB".
    pub size: Option<String>,
    /// COMMENT ON DATABASE text, if any.
    pub comment: Option<String>,
    /// True for the database this session is connected to.
    pub is_current: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct DatabaseList {
    pub databases: Vec<DatabaseInfo>,
}

pub async fn list_databases(
    client: &Client,
    _params: ListDatabasesParams,
) -> Result<DatabaseList, ToolError> {
    // pg_database_size raises an error unless the role has CONNECT or pg_read_all_stats, so the CASE keeps one
    // database from failing the whole listing.
    let sql = "SELECT d.datname::text, pg_get_userbyid(d.datdba)::text, pg_encoding_to_char(d.encoding)::text,
                      sized.size_bytes, pg_size_pretty(sized.size_bytes),
                      shobj_description(d.oid, 'pg_database'), d.datname = current_database()
               FROM pg_database d
               CROSS JOIN LATERAL (SELECT CASE WHEN has_database_privilege(d.oid, 'CONNECT')
                                                 OR pg_has_role('pg_read_all_stats', 'USAGE')
                                               THEN pg_database_size(d.oid) END AS size_bytes) AS sized
               WHERE NOT d.datistemplate
               ORDER BY d.datname";
    let rows = client.query(sql, &[]).await?;
    let databases = rows
        .iter()
        .map(|row| {
            Ok(DatabaseInfo {
                name: row.try_get(0)?,
                owner: row.try_get(1)?,
                encoding: row.try_get(2)?,
                size_bytes: row.try_get(3)?,
                size: row.try_get(4)?,
                comment: row.try_get(5)?,
                is_current: row.try_get(6)?,
            })
        })
        .collect::<Result<_, ToolError>>()?;
    Ok(DatabaseList { databases })
}

#[cfg(test)]
mod tests {
    use super::contains_pattern;

    #[test]
    fn like_wildcards_in_terms_are_literal() {
        assert_eq!(contains_pattern("order"), "%order%");
        assert_eq!(contains_pattern("50%_off"), r"%50\%\_off%");
        assert_eq!(contains_pattern(r"a\b"), r"%a\\b%");
    }
}

#[cfg(test)]
mod schema_tests {
    use super::*;

    #[test]
    fn params_schemas_carry_defaults_and_bounds() {
        let schema = serde_json::to_value(schemars::schema_for!(ListTablesParams)).unwrap();
        let limit = &schema["properties"]["limit"];
        assert_eq!(limit["default"], 500);
        assert_eq!(limit["minimum"], 1);
        assert_eq!(limit["maximum"], 5000);
        assert!(
            schema["properties"]["profile"]["description"]
                .as_str()
                .unwrap()
                .starts_with("Database profile to use")
        );
        assert_eq!(schema["required"], serde_json::json!(null));

        let schema = serde_json::to_value(schemars::schema_for!(SearchTablesParams)).unwrap();
        assert_eq!(schema["required"], serde_json::json!(["term"]));
        assert_eq!(schema["properties"]["term"]["maxLength"], 200);
    }

    #[test]
    fn params_accept_minimal_json() {
        let params: ListTablesParams = serde_json::from_str("{}").unwrap();
        assert_eq!(params.limit, 500);
        let params: DescribeTableParams = serde_json::from_str(r#"{"table":"orders"}"#).unwrap();
        assert_eq!(params.schema, None);
        let params: crate::tools::stats::GetTableStatsParams =
            serde_json::from_str(r#"{"table":"orders"}"#).unwrap();
        assert!(params.exact_count);
        assert!(serde_json::from_str::<ListTablesParams>(r#"{"kinds":["index"]}"#).is_err());
    }
}
