//! Turning a caller's table reference ("orders", "sales.orders", `public."Mixed Case"`) into one catalog row.
//! Names are matched exactly against pg_namespace.nspname / pg_class.relname (never through to_regclass or
//! search_path), so nothing the caller sends is ever interpreted as SQL.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use crate::tools::ToolError;

/// SQL predicate, on a `pg_namespace n`, that hides PostgreSQL's own schemas (catalog, information schema, TOAST
/// and per-session temporary schemas).
pub(crate) const USER_SCHEMA_PREDICATE: &str = "(n.nspname NOT IN ('pg_catalog', 'information_schema') \
     AND n.nspname !~ '^pg_(toast|temp_)')";

/// The relkinds the catalog tools expose; indexes, sequences and composite types are not "tables".
pub(crate) const RELATION_KINDS_SQL: &str = "('r', 'v', 'm', 'f', 'p')";

/// What kind of relation a name refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RelationKind {
    Table,
    View,
    MaterializedView,
    ForeignTable,
    PartitionedTable,
}

impl RelationKind {
    pub(crate) fn from_relkind(relkind: &str) -> Option<Self> {
        match relkind {
            "r" => Some(RelationKind::Table),
            "v" => Some(RelationKind::View),
            "m" => Some(RelationKind::MaterializedView),
            "f" => Some(RelationKind::ForeignTable),
            "p" => Some(RelationKind::PartitionedTable),
            _ => None,
        }
    }

    pub(crate) fn relkind(self) -> &'static str {
        match self {
            RelationKind::Table => "r",
            RelationKind::View => "v",
            RelationKind::MaterializedView => "m",
            RelationKind::ForeignTable => "f",
            RelationKind::PartitionedTable => "p",
        }
    }

    /// Decodes a relkind read from the catalog; the queries only select the five kinds above, so anything else
    /// means the catalog changed under us and is reported rather than panicking.
    pub(crate) fn from_catalog(relkind: &str) -> Result<Self, ToolError> {
        Self::from_relkind(relkind).ok_or_else(|| ToolError::Unavailable {
            message: format!("unexpected relkind {relkind:?} in pg_class"),
        })
    }
}

/// A relation found in the catalog.
#[derive(Debug, Clone)]
pub(crate) struct ResolvedRelation {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    pub kind: RelationKind,
}

/// Splits `a.b` / `"a.b"."C"` at unquoted dots, removing quotes (`""` inside quotes is one `"`). Unquoted parts
/// are kept as written, not case-folded, because callers usually copy names verbatim from list_tables output.
/// Returns None when the quoting is malformed.
fn split_qualified(input: &str) -> Option<Vec<String>> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut chars = input.chars().peekable();
    let mut in_quotes = false;
    while let Some(ch) = chars.next() {
        match (ch, in_quotes) {
            ('"', false) => in_quotes = true,
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                current.push('"');
            }
            ('"', true) => in_quotes = false,
            ('.', false) => parts.push(std::mem::take(&mut current)),
            (other, _) => current.push(other),
        }
    }
    if in_quotes {
        return None;
    }
    parts.push(current);
    Some(parts)
}

/// The (schema, relation) pairs a reference could mean, most likely first. `schema_given` is the schema the
/// caller named, explicitly or by qualifying the table; None means "default schema" (public).
fn candidates(
    table: &str,
    schema: Option<&str>,
) -> (Vec<(String, String)>, Option<String>, String) {
    let parts = split_qualified(table);
    let mut out: Vec<(String, String)> = Vec::new();
    let mut push = |schema: &str, name: &str| {
        let pair = (schema.to_string(), name.to_string());
        if !out.contains(&pair) {
            out.push(pair);
        }
    };
    match schema {
        Some(schema) => {
            match parts.as_deref() {
                Some([name]) => push(schema, name),
                Some([qualifier, name]) if qualifier == schema => push(schema, name),
                _ => {}
            }
            push(schema, table);
            let name = out.first().map(|(_, n)| n.clone()).unwrap_or_default();
            (out, Some(schema.to_string()), name)
        }
        None => match parts.as_deref() {
            Some([qualifier, name]) => {
                push(qualifier, name);
                // A dot can also be part of a table name in public.
                push("public", table);
                (out, Some(qualifier.clone()), name.clone())
            }
            Some([name]) => {
                push("public", name);
                push("public", table);
                (out, None, name.clone())
            }
            _ => {
                push("public", table);
                (out, None, table.to_string())
            }
        },
    }
}

const RELATION_COLUMNS: &str = "c.oid, n.nspname::text, c.relname::text, c.relkind::text";

fn relation_from_row(row: &tokio_postgres::Row) -> Result<ResolvedRelation, ToolError> {
    let relkind: String = row.try_get(3)?;
    Ok(ResolvedRelation {
        oid: row.try_get(0)?,
        schema: row.try_get(1)?,
        name: row.try_get(2)?,
        kind: RelationKind::from_catalog(&relkind)?,
    })
}

/// Finds the table, view, materialized view, foreign or partitioned table a caller means. Exact matches win;
/// failing that, a unique case-insensitive match (within the named schema, or across all non-system schemas
/// when none was named) is accepted, since the output always reports the real schema and name.
pub(crate) async fn resolve_relation(
    client: &Client,
    table: &str,
    schema: Option<&str>,
) -> Result<ResolvedRelation, ToolError> {
    let table = table.trim();
    if table.is_empty() {
        return Err(ToolError::invalid(
            "table must not be empty; call list_tables to see the tables",
        ));
    }
    let schema = schema.map(str::trim).filter(|s| !s.is_empty());
    let (pairs, named_schema, bare_name) = candidates(table, schema);
    let schemas: Vec<&str> = pairs.iter().map(|(s, _)| s.as_str()).collect();
    let names: Vec<&str> = pairs.iter().map(|(_, n)| n.as_str()).collect();

    let exact = format!(
        "SELECT {RELATION_COLUMNS}
         FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS wanted(schema_name, rel_name, preference)
         JOIN pg_namespace n ON n.nspname = wanted.schema_name
         JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = wanted.rel_name
         WHERE c.relkind IN {RELATION_KINDS_SQL}
         ORDER BY wanted.preference
         LIMIT 1"
    );
    if let Some(row) = client.query_opt(&exact, &[&schemas, &names]).await? {
        return relation_from_row(&row);
    }

    let loose = format!(
        "SELECT {RELATION_COLUMNS}
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN {RELATION_KINDS_SQL}
           AND lower(c.relname) = lower($2)
           AND CASE WHEN $1::text IS NULL THEN {USER_SCHEMA_PREDICATE}
                    ELSE lower(n.nspname) = lower($1) END
         ORDER BY n.nspname, c.relname
         LIMIT 6"
    );
    let rows = client.query(&loose, &[&named_schema, &bare_name]).await?;
    match rows.as_slice() {
        [only] => relation_from_row(only),
        [] => Err(ToolError::invalid(format!(
            "table {}.{} does not exist; call list_tables to see the tables",
            named_schema.as_deref().unwrap_or("public"),
            bare_name
        ))),
        several => {
            let found = several
                .iter()
                .map(relation_from_row)
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .map(|r| format!("{}.{}", r.schema, r.name))
                .collect::<Vec<_>>()
                .join(", ");
            Err(ToolError::invalid(format!(
                "table {bare_name} is ambiguous (matches {found}); pass the schema or a qualified name"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_quoted_and_unquoted_parts() {
        assert_eq!(
            split_qualified(r#"public."Mixed Case""#),
            Some(vec!["public".into(), "Mixed Case".into()])
        );
        assert_eq!(
            split_qualified(r#""a.b"."we""ird""#),
            Some(vec!["a.b".into(), r#"we"ird"#.into()])
        );
        assert_eq!(split_qualified("orders"), Some(vec!["orders".into()]));
        assert_eq!(split_qualified(r#""open"#), None);
    }

    #[test]
    fn qualified_reference_prefers_its_schema() {
        let (pairs, schema, name) = candidates("sales.orders", None);
        assert_eq!(pairs[0], ("sales".into(), "orders".into()));
        assert_eq!(pairs[1], ("public".into(), "sales.orders".into()));
        assert_eq!(schema.as_deref(), Some("sales"));
        assert_eq!(name, "orders");
    }

    #[test]
    fn explicit_schema_wins_over_default() {
        let (pairs, schema, name) = candidates("Mixed Case", Some("s"));
        assert_eq!(pairs, vec![("s".into(), "Mixed Case".into())]);
        assert_eq!(schema.as_deref(), Some("s"));
        assert_eq!(name, "Mixed Case");
    }

    #[test]
    fn relkind_round_trips() {
        for kind in [
            RelationKind::Table,
            RelationKind::View,
            RelationKind::MaterializedView,
            RelationKind::ForeignTable,
            RelationKind::PartitionedTable,
        ] {
            assert_eq!(RelationKind::from_relkind(kind.relkind()), Some(kind));
        }
        assert_eq!(RelationKind::from_relkind("i"), None);
    }
}
