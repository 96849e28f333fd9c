//! Column masking: a masked column's values never leave pgmcp unmasked.
//!
//! Decided on the statement as PostgreSQL resolved it (the rewritten tree of [`super::resolved`]), where every
//! column reference is a `Var` pointing at a range-table entry: a table (by OID), a subquery or view (whose output
//! column is itself a `Var` or an expression), a join, a CTE. A reference to a masked column may only travel as a
//! plain column, unchanged, to an output column of the statement, where pgmcp masks the value. Every other use —
//! in an expression, a cast, WHERE, JOIN ON, ORDER BY, GROUP BY, DISTINCT, a set operation, a subquery compared
//! with something, aggregates other than `count`, whole-row references, writes and RETURNING — could carry or
//! reveal the value (an error such as `invalid input syntax for type integer: "alice@example.com"` is a leak
//! too), so the statement is refused with a reason naming the column.

use std::cell::RefCell;
use std::collections::HashMap;

use super::GuardError;
use super::tree::{Node, Value};

/// How a masked column's values are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MaskMode {
    /// `"[masked]"`.
    Redact,
    /// `null`.
    Null,
    /// A keyed, stable hash (`"h:…"`): equal values hash equally, so results can still be joined by eye.
    Hash,
    /// The value's shape with most characters hidden: `a***@c***.com`, `***-***-**67`.
    Partial,
}

impl MaskMode {
    pub fn parse(text: &str) -> Option<MaskMode> {
        match text {
            "redact" => Some(MaskMode::Redact),
            "null" => Some(MaskMode::Null),
            "hash" => Some(MaskMode::Hash),
            "partial" => Some(MaskMode::Partial),
            _ => None,
        }
    }

    pub const NAMES: &'static str = "redact, null, hash, partial";
}

/// A profile's masks as configured: `schema.table`, its columns, the mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskRule {
    pub schema: String,
    pub table: String,
    pub columns: Vec<String>,
    pub mode: MaskMode,
}

/// The masked columns as the catalog knows them now: table OID → attribute number → mode and name. Inheritance
/// children and partitions carry their parent's masks.
#[derive(Debug, Default, Clone)]
pub struct MaskedColumns {
    pub by_table: HashMap<u32, HashMap<i64, (MaskMode, String)>>,
}

/// What an output column of the statement carries.
type Carried = Option<(MaskMode, String)>;

/// `RTE_RELATION`, `RTE_SUBQUERY`, `RTE_JOIN`, `RTE_CTE` in PostgreSQL's RTEKind.
const RTE_RELATION: i64 = 0;
const RTE_SUBQUERY: i64 = 1;
const RTE_JOIN: i64 = 2;
const RTE_CTE: i64 = 6;
/// `CMD_SELECT` in CmdType.
const CMD_SELECT: i64 = 1;
/// `EXISTS_SUBLINK`: reveals whether rows exist, not what they hold.
const EXISTS_SUBLINK: i64 = 0;
/// pg_catalog.count("any"): counting non-null values reveals no value.
const COUNT_ANY: i64 = 2147;

/// Checks every resolved statement in `trees` and returns, for the output columns of the statement, the mask each
/// carries. The statement's are those of the first tree, whose last query is the statement itself (earlier ones are
/// rule actions). Trees after the first are what tokio-postgres parsed while preparing the statement, to look up a
/// result type the connection had not met (an enum, an extension's type); taking the last tree's columns once
/// returned an enum column unmasked in place of the lookup's columns.
pub fn output_masks(
    trees: &[Value],
    masked: &MaskedColumns,
) -> Result<Vec<Option<MaskMode>>, GuardError> {
    Ok(carried_outputs(trees, masked)?
        .into_iter()
        .map(|carried| carried.map(|(mode, _)| mode))
        .collect())
}

/// Checks the query of CREATE TABLE AS, SELECT INTO or CREATE MATERIALIZED VIEW: its rows are stored, not
/// returned, so no output column may carry a masked column (pgmcp could not mask them when they are read back).
pub fn stored_outputs(trees: &[Value], masked: &MaskedColumns) -> Result<(), GuardError> {
    match carried_outputs(trees, masked)?.into_iter().flatten().next() {
        Some((_, column)) => Err(refused(
            &column,
            "a table or materialized view created from the query would store its values unmasked",
        )),
        None => Ok(()),
    }
}

fn carried_outputs(trees: &[Value], masked: &MaskedColumns) -> Result<Vec<Carried>, GuardError> {
    let mut outputs = Vec::new();
    for (index, tree) in trees.iter().enumerate() {
        let queries: Vec<&Node> = match tree {
            Value::List(items) => items
                .iter()
                .filter_map(|item| match item {
                    Value::Node(node) if node.name == "QUERY" => Some(node),
                    _ => None,
                })
                .collect(),
            Value::Node(node) if node.name == "QUERY" => vec![node],
            _ => Vec::new(),
        };
        for query in queries {
            let analysis = Analysis {
                masked,
                checked: RefCell::new(HashMap::new()),
            };
            let carried = analysis.query(query, &[])?;
            if index > 0 {
                continue;
            }
            let is_select = query.number("commandType") == Some(CMD_SELECT);
            outputs = query
                .nodes("targetList")
                .iter()
                .zip(carried)
                .filter(|(entry, _)| is_select && !entry.is_true("resjunk"))
                .map(|(_, carried)| carried)
                .collect();
        }
    }
    Ok(outputs)
}

struct Analysis<'m> {
    masked: &'m MaskedColumns,
    /// What each query node's outputs carry, by the node's address: a query is checked once however often it
    /// is referenced (a node has one place in the tree, so one scope).
    checked: RefCell<HashMap<usize, Vec<Carried>>>,
}

fn refused(column: &str, how: &str) -> GuardError {
    GuardError::new(format!(
        "column {column} is masked: {how}; a masked column may only be selected as it is (its values come back \
         masked), or counted with count(column)"
    ))
}

impl Analysis<'_> {
    /// Checks one query and returns what each of its target entries carries. `outer` holds the enclosing
    /// queries, innermost last, for references with `varlevelsup`.
    fn query(&self, query: &Node, outer: &[&Node]) -> Result<Vec<Carried>, GuardError> {
        let key = query as *const Node as usize;
        if let Some(carried) = self.checked.borrow().get(&key) {
            return Ok(carried.clone());
        }
        let carried = self.check_query(query, outer)?;
        self.checked.borrow_mut().insert(key, carried.clone());
        Ok(carried)
    }

    fn check_query(&self, query: &Node, outer: &[&Node]) -> Result<Vec<Carried>, GuardError> {
        let mut levels: Vec<&Node> = outer.to_vec();
        levels.push(query);
        let is_select = query.number("commandType") == Some(CMD_SELECT);
        // Nested queries first: what their outputs carry is what references to them carry.
        for cte in query.nodes("cteList") {
            if let Some(inner) = cte.node("ctequery") {
                self.query(inner, &levels)?;
            }
        }
        // Every subquery in FROM is checked, referenced or not; with a set operation, none may output a masked
        // column, since the branches' values are compared and mixed.
        let set_operation = query
            .field("setOperations")
            .is_some_and(|v| *v != Value::Null);
        for rte in query.nodes("rtable") {
            if let Some(inner) = rte.node("subquery") {
                let carried = self.query(inner, &levels)?;
                if set_operation && let Some((_, column)) = carried.into_iter().flatten().next() {
                    return Err(refused(
                        &column,
                        "UNION, INTERSECT and EXCEPT compare and mix values",
                    ));
                }
            }
        }
        let mut carried = Vec::new();
        for entry in query.nodes("targetList") {
            let plain_output = is_select
                && !entry.is_true("resjunk")
                && entry.number("ressortgroupref") == Some(0);
            match entry.node("expr") {
                Some(expr) if expr.name == "VAR" => {
                    let what = self.var(expr, &levels)?;
                    if let Some((_, column)) = &what
                        && !plain_output
                    {
                        let how = if entry.number("ressortgroupref").unwrap_or(0) != 0 {
                            "sorting, grouping or DISTINCT by it compares its values"
                        } else {
                            "it is used, not only selected"
                        };
                        return Err(refused(column, how));
                    }
                    carried.push(if plain_output { what } else { None });
                }
                Some(expr) => {
                    self.uses_node(expr, &levels)?;
                    carried.push(None);
                }
                None => carried.push(None),
            }
        }
        // Everything else a query holds is a use: quals, joins, HAVING, LIMIT, functions in FROM, RETURNING, ….
        for (field, value) in &query.fields {
            if matches!(field.as_str(), "targetList" | "cteList" | "rtable") {
                continue;
            }
            self.uses(value, &levels)?;
        }
        for rte in query.nodes("rtable") {
            for (field, value) in &rte.fields {
                // A join's alias list maps columns, a subquery was checked as a query, and row-level security
                // policies are the table owner's, not the caller's.
                if matches!(
                    field.as_str(),
                    "joinaliasvars" | "subquery" | "securityQuals"
                ) {
                    continue;
                }
                self.uses(value, &levels)?;
            }
        }
        Ok(carried)
    }

    /// Refuses any reference to a masked column inside `value`, except `count(column)`; nested queries are checked
    /// as queries, and what a sublink's query outputs may not be masked unless the sublink is EXISTS.
    fn uses(&self, value: &Value, levels: &[&Node]) -> Result<(), GuardError> {
        match value {
            Value::Node(node) => self.uses_node(node, levels),
            Value::List(items) => {
                for item in items {
                    self.uses(item, levels)?;
                }
                Ok(())
            }
            Value::Null | Value::Token(_) => Ok(()),
        }
    }

    fn uses_node(&self, node: &Node, levels: &[&Node]) -> Result<(), GuardError> {
        match node.name.as_str() {
            "VAR" => match self.var(node, levels)? {
                Some((_, column)) => Err(refused(&column, "it is used, not only selected")),
                None => Ok(()),
            },
            // A query anywhere else than FROM, WITH or a sublink belongs to a utility statement (CREATE TABLE AS,
            // DECLARE CURSOR, …): where its rows go, pgmcp does not mask them.
            "QUERY" => match self.query(node, levels)?.into_iter().flatten().next() {
                Some((_, column)) => Err(refused(
                    &column,
                    "the statement stores or hands on its values where pgmcp cannot mask them",
                )),
                None => Ok(()),
            },
            "SUBLINK" => {
                if let Some(inner) = node.node("subselect") {
                    let carried = self.query(inner, levels)?;
                    if node.number("subLinkType") != Some(EXISTS_SUBLINK)
                        && let Some((_, column)) = carried.into_iter().flatten().next()
                    {
                        return Err(refused(
                            &column,
                            "a subquery's value is compared or returned as an expression",
                        ));
                    }
                }
                for (field, value) in &node.fields {
                    if field != "subselect" {
                        self.uses(value, levels)?;
                    }
                }
                Ok(())
            }
            "AGGREF" if self.is_plain_count(node) => Ok(()),
            _ => {
                for (_, value) in &node.fields {
                    self.uses(value, levels)?;
                }
                Ok(())
            }
        }
    }

    /// `count(column)` without DISTINCT, ORDER BY or FILTER: it reveals how many values are not null.
    fn is_plain_count(&self, aggref: &Node) -> bool {
        let args = aggref.nodes("args");
        aggref.number("aggfnoid") == Some(COUNT_ANY)
            && args.len() == 1
            && args[0].node("expr").is_some_and(|expr| expr.name == "VAR")
            && ["aggorder", "aggdistinct", "aggfilter", "aggdirectargs"]
                .iter()
                .all(|field| matches!(aggref.field(field), None | Some(Value::Null)))
    }

    /// What a column reference carries: the mask of the table column it reaches, through subqueries, views,
    /// joins and CTEs, when it reaches one unchanged.
    fn var(&self, var: &Node, levels: &[&Node]) -> Result<Carried, GuardError> {
        let up = var.number("varlevelsup").unwrap_or(0) as usize;
        let Some(query) = levels.len().checked_sub(up + 1).map(|index| levels[index]) else {
            return Ok(None);
        };
        let scope = &levels[..levels.len() - up];
        let (Some(varno), Some(attno)) = (var.number("varno"), var.number("varattno")) else {
            return Ok(None);
        };
        let rtable = query.nodes("rtable");
        let Some(rte) = usize::try_from(varno - 1)
            .ok()
            .and_then(|index| rtable.get(index))
        else {
            return Ok(None);
        };
        self.rte_column(rte, attno, scope)
    }

    fn rte_column(&self, rte: &Node, attno: i64, scope: &[&Node]) -> Result<Carried, GuardError> {
        match rte.number("rtekind") {
            Some(RTE_RELATION) => {
                let Some(columns) = rte
                    .number("relid")
                    .and_then(|relid| u32::try_from(relid).ok())
                    .and_then(|relid| self.masked.by_table.get(&relid))
                else {
                    return Ok(None);
                };
                if attno == 0 {
                    let column = columns
                        .values()
                        .map(|(_, name)| name.clone())
                        .next()
                        .unwrap_or_default();
                    return Err(refused(
                        &column,
                        "a whole-row reference carries every column of its row",
                    ));
                }
                Ok(columns.get(&attno).cloned())
            }
            Some(RTE_SUBQUERY) => match rte.node("subquery") {
                Some(inner) => {
                    let carried = self.query(inner, scope)?;
                    output_column(&carried, inner, attno)
                }
                None => Ok(None),
            },
            Some(RTE_CTE) => {
                let name = match rte.field("ctename") {
                    Some(Value::Token(name)) => name.clone(),
                    _ => return Ok(None),
                };
                let up = rte.number("ctelevelsup").unwrap_or(0) as usize;
                let Some(owner) = scope.len().checked_sub(up + 1).map(|index| scope[index]) else {
                    return Ok(None);
                };
                let Some(cte) = owner.nodes("cteList").into_iter().find(
                    |cte| matches!(cte.field("ctename"), Some(Value::Token(n)) if *n == name),
                ) else {
                    return Ok(None);
                };
                match cte.node("ctequery") {
                    Some(inner) => {
                        let carried = self.query(inner, &scope[..scope.len() - up])?;
                        output_column(&carried, inner, attno)
                    }
                    None => Ok(None),
                }
            }
            Some(RTE_JOIN) => {
                let aliases = match rte.field("joinaliasvars") {
                    Some(Value::List(items)) => items,
                    _ => return Ok(None),
                };
                if attno == 0 {
                    for alias in aliases {
                        self.uses(alias, scope)?;
                    }
                    return Ok(None);
                }
                match usize::try_from(attno - 1)
                    .ok()
                    .and_then(|index| aliases.get(index))
                {
                    Some(Value::Node(alias)) if alias.name == "VAR" => self.var(alias, scope),
                    Some(other) => {
                        // A merged USING column of a FULL JOIN is COALESCE(left, right): not a plain reference.
                        self.uses(other, scope)?;
                        Ok(None)
                    }
                    None => Ok(None),
                }
            }
            _ => Ok(None),
        }
    }
}

/// What output column `attno` of a checked subquery carries; the whole row (0) carries all of them.
fn output_column(carried: &[Carried], inner: &Node, attno: i64) -> Result<Carried, GuardError> {
    let entries = inner.nodes("targetList");
    if attno == 0 {
        if let Some((_, column)) = carried.iter().flatten().next() {
            return Err(refused(
                column,
                "a whole-row reference carries every column of its row",
            ));
        }
        return Ok(None);
    }
    Ok(entries
        .iter()
        .zip(carried)
        .find(|(entry, _)| entry.number("resno") == Some(attno))
        .and_then(|(_, carried)| carried.clone()))
}

/// The configured masks' columns as the catalog knows them, one round trip: each rule's table, its inheritance
/// children and partitions (which hold the same data), and the columns by name. Then the planner's statistics
/// (rule -1): ANALYZE keeps sample values of every column — most common values, histogram bounds, for masked
/// columns too — in pg_statistic (read through pg_stats) and pg_statistic_ext_data (pg_stats_ext), so their value
/// columns are masked as well.
const MASKED_COLUMNS_SQL: &str = "\
WITH RECURSIVE
rules(rule, schema_name, table_name, column_name) AS (
    SELECT * FROM unnest($1::int4[], $2::text[], $3::text[], $4::text[])
),
tables(rule, column_name, oid) AS (
    SELECT r.rule, r.column_name, c.oid
    FROM rules r
    JOIN pg_catalog.pg_namespace n ON n.nspname = r.schema_name
    JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = r.table_name
  UNION
    SELECT t.rule, t.column_name, h.inhrelid
    FROM tables t JOIN pg_catalog.pg_inherits h ON h.inhparent = t.oid
)
SELECT t.rule, t.oid, a.attnum::int8, NULL::text
FROM tables t
JOIN pg_catalog.pg_attribute a ON a.attrelid = t.oid AND a.attname = t.column_name AND NOT a.attisdropped
UNION ALL
SELECT -1, a.attrelid, a.attnum::int8, 'pg_catalog.' || c.relname || '.' || a.attname
FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
WHERE c.relnamespace = 'pg_catalog'::regnamespace
  AND ((c.relname = 'pg_statistic' AND a.attname LIKE 'stavalues%')
       OR (c.relname = 'pg_statistic_ext_data' AND a.attname IN ('stxdmcv', 'stxdexpr')))";

/// How the statistics' value columns read in a refusal: they hold other tables' values, not their own.
const STATISTICS_NOTE: &str = "(the planner's sample values of every column, masked ones too)";

/// Looks the configured masks up in the catalog. A masked table that does not exist masks nothing until it does.
pub async fn masked_columns(
    client: &tokio_postgres::Client,
    rules: &[MaskRule],
) -> Result<MaskedColumns, GuardError> {
    let mut masked = MaskedColumns::default();
    if rules.is_empty() {
        return Ok(masked);
    }
    let mut flat: Vec<(i32, &str, &str, &str, MaskMode)> = Vec::new();
    for rule in rules {
        for column in &rule.columns {
            flat.push((
                flat.len() as i32,
                &rule.schema,
                &rule.table,
                column,
                rule.mode,
            ));
        }
    }
    let index: Vec<i32> = flat.iter().map(|entry| entry.0).collect();
    let schemas: Vec<&str> = flat.iter().map(|entry| entry.1).collect();
    let tables: Vec<&str> = flat.iter().map(|entry| entry.2).collect();
    let columns: Vec<&str> = flat.iter().map(|entry| entry.3).collect();
    let rows = client
        .query_typed(
            MASKED_COLUMNS_SQL,
            &[
                (&index, tokio_postgres::types::Type::INT4_ARRAY),
                (&schemas, tokio_postgres::types::Type::TEXT_ARRAY),
                (&tables, tokio_postgres::types::Type::TEXT_ARRAY),
                (&columns, tokio_postgres::types::Type::TEXT_ARRAY),
            ],
        )
        .await
        .map_err(|error| {
            GuardError::new(format!(
                "could not look up the masked columns in the catalog: {}",
                error
                    .as_db_error()
                    .map_or_else(|| error.to_string(), |db| db.message().to_owned())
            ))
        })?;
    for row in rows {
        let unexpected =
            || GuardError::new("could not look up the masked columns: unexpected catalog row");
        let rule: i32 = row.try_get(0).map_err(|_| unexpected())?;
        let oid: u32 = row.try_get(1).map_err(|_| unexpected())?;
        let attnum: i64 = row.try_get(2).map_err(|_| unexpected())?;
        let statistics: Option<String> = row.try_get(3).map_err(|_| unexpected())?;
        let entry = match (
            statistics,
            usize::try_from(rule).ok().and_then(|i| flat.get(i)),
        ) {
            (Some(column), _) => (MaskMode::Redact, format!("{column} {STATISTICS_NOTE}")),
            (None, Some(&(_, schema, table, column, mode))) => {
                (mode, format!("{schema}.{table}.{column}"))
            }
            (None, None) => return Err(unexpected()),
        };
        masked
            .by_table
            .entry(oid)
            .or_default()
            .insert(attnum, entry);
    }
    Ok(masked)
}

/// The relations `names` stands for (schema or the search path, name), as the catalog resolves them now.
const NAMED_RELATIONS_SQL: &str = "\
SELECT DISTINCT to_regclass(CASE WHEN r.schema_name IS NULL THEN format('%I', r.rel_name)
                                 ELSE format('%I.%I', r.schema_name, r.rel_name) END)::oid
FROM unnest($1::text[], $2::text[]) AS r(schema_name, rel_name)";

/// Refuses DDL that names a table with masked columns (or an inheritance child or partition of one): building an
/// index, changing a column's type or validating a constraint evaluates expressions over every stored value, and
/// their errors quote the value (`invalid input syntax for type integer: "…"`). The resolved tree cannot help
/// here: PostgreSQL analyses DDL only as it runs.
pub async fn refuse_ddl_on_masked(
    client: &tokio_postgres::Client,
    names: &[(Option<String>, String)],
    rules: &[MaskRule],
) -> Result<(), GuardError> {
    if names.is_empty() || rules.is_empty() {
        return Ok(());
    }
    let masked = masked_columns(client, rules).await?;
    let schemas: Vec<Option<&str>> = names.iter().map(|(schema, _)| schema.as_deref()).collect();
    let relations: Vec<&str> = names.iter().map(|(_, name)| name.as_str()).collect();
    let rows = client
        .query_typed(
            NAMED_RELATIONS_SQL,
            &[
                (&schemas, tokio_postgres::types::Type::TEXT_ARRAY),
                (&relations, tokio_postgres::types::Type::TEXT_ARRAY),
            ],
        )
        .await
        .map_err(|error| {
            GuardError::new(format!(
                "could not look up the tables the statement names: {}",
                error
                    .as_db_error()
                    .map_or_else(|| error.to_string(), |db| db.message().to_owned())
            ))
        })?;
    for row in rows {
        let oid: Option<u32> = row.try_get(0).map_err(|_| {
            GuardError::new("could not look up the tables the statement names: unexpected row")
        })?;
        if let Some(columns) = oid.and_then(|oid| masked.by_table.get(&oid))
            && let Some((_, column)) = columns.values().next()
        {
            return Err(refused(
                column,
                "DDL on its table evaluates expressions over its stored values (indexes, column types, \
                 constraints), and their errors can quote them, so it is not run on a profile with masks",
            ));
        }
    }
    Ok(())
}
