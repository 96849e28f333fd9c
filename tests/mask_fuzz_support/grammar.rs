//! What the masking fuzzer composes: a masked column × where its value comes from (table, child, partition, view,
//! subquery, CTE, join, LATERAL, set operation, function…) × how the statement uses it (plain projection, count,
//! every clause position, casts and functions, deliberate errors, whole-row references, unmasked controls) × the
//! tool that runs it and the profile it runs on.

use proptest::prelude::*;
use serde_json::{Value, json};

/// The two masked tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    People,
    Cards,
}

/// How a masked column's values are shown (as configured in `MASKS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Partial,
    Hash,
    Redact,
    Null,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub table: Table,
    pub mode: Mode,
}

pub const COLUMNS: &[Column] = &[
    Column {
        name: "email",
        table: Table::People,
        mode: Mode::Partial,
    },
    Column {
        name: "phone",
        table: Table::People,
        mode: Mode::Partial,
    },
    Column {
        name: "salary",
        table: Table::People,
        mode: Mode::Hash,
    },
    Column {
        name: "born",
        table: Table::People,
        mode: Mode::Partial,
    },
    Column {
        name: "profile",
        table: Table::People,
        mode: Mode::Redact,
    },
    Column {
        name: "secret_code",
        table: Table::People,
        mode: Mode::Null,
    },
    Column {
        name: "token",
        table: Table::People,
        mode: Mode::Partial,
    },
    Column {
        name: "geo",
        table: Table::People,
        mode: Mode::Partial,
    },
    Column {
        name: "clearance",
        table: Table::People,
        mode: Mode::Redact,
    },
    Column {
        name: "alias",
        table: Table::People,
        mode: Mode::Partial,
    },
    Column {
        name: "postal",
        table: Table::People,
        mode: Mode::Redact,
    },
    Column {
        name: "card_number",
        table: Table::Cards,
        mode: Mode::Partial,
    },
];

/// Where the masked value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Table,
    Qualified,
    Only,
    Child,
    View,
    NestedView,
    Subquery,
    Cte,
    MaterializedCte,
    Join,
    OuterJoin,
    JoinAlias,
    UsingJoin,
    FullJoinUsing,
    Lateral,
    TableSample,
    /// UNION ALL of two masked outputs: refused, the branches' values are mixed.
    SetOperation,
    /// A set-returning function written in the database: refused, its body reads the table unseen.
    Function,
}

pub const SOURCES: &[Source] = &[
    Source::Table,
    Source::Qualified,
    Source::Only,
    Source::Child,
    Source::View,
    Source::NestedView,
    Source::Subquery,
    Source::Cte,
    Source::MaterializedCte,
    Source::Join,
    Source::OuterJoin,
    Source::JoinAlias,
    Source::UsingJoin,
    Source::FullJoinUsing,
    Source::Lateral,
    Source::TableSample,
    Source::SetOperation,
    Source::Function,
];

/// A source written out for one column: FROM item, CTEs it needs, and references to the masked value `m`, a key
/// `id`, an unmasked `label` and the whole row.
#[derive(Debug, Clone)]
pub struct From {
    pub ctes: Vec<String>,
    pub from: String,
    pub m: String,
    pub id: String,
    pub label: String,
    pub row: Option<String>,
    /// Whether plain projections through it are answered (masked).
    pub allowed: bool,
}

fn from(source: Source, column: Column) -> Option<From> {
    let c = column.name;
    // The table, its unmasked label column, and a child holding masked values of its own (an inheritance child, a
    // partition).
    let (rel, label, child) = match column.table {
        Table::People => ("pii.people", "name", "pii.vip"),
        Table::Cards => ("pii.cards", "region", "pii.cards_eu"),
    };
    // The key other tables join on: a person's id, a card's holder.
    let key = match column.table {
        Table::People => "id",
        Table::Cards => "holder_id",
    };
    let alias = |a: &str, from: String| From {
        ctes: Vec::new(),
        from,
        m: format!("{a}.{c}"),
        id: format!("{a}.{key}"),
        label: format!("{a}.{label}"),
        row: Some(a.to_string()),
        allowed: true,
    };
    let inner = format!("SELECT {key}, {label}, {c} AS x FROM {rel}");
    let projected = |a: &str, from: String, ctes: Vec<String>| From {
        ctes,
        from,
        m: format!("{a}.x"),
        id: format!("{a}.{key}"),
        label: format!("{a}.{label}"),
        row: Some(a.to_string()),
        allowed: true,
    };
    Some(match source {
        Source::Table => alias("p", format!("{rel} AS p")),
        Source::Qualified => From {
            ctes: Vec::new(),
            from: rel.to_string(),
            m: format!("{rel}.{c}"),
            id: format!("{rel}.{key}"),
            label: format!("{rel}.{label}"),
            row: Some(rel.rsplit('.').next().unwrap_or(rel).to_string()),
            allowed: true,
        },
        Source::Only if column.table == Table::People => alias("p", format!("ONLY {rel} AS p")),
        Source::Child => alias("p", format!("{child} AS p")),
        Source::View if column.table == Table::People => {
            alias("v", "pii.people_everything AS v".into())
        }
        Source::NestedView if column.table == Table::People => {
            alias("v", "pii.people_nested AS v".into())
        }
        Source::Subquery => projected("s", format!("({inner}) AS s"), Vec::new()),
        Source::Cte => projected("c", "c".into(), vec![format!("c AS ({inner})")]),
        Source::MaterializedCte => projected(
            "c",
            "c".into(),
            vec![format!("c AS MATERIALIZED ({inner})")],
        ),
        Source::Join => alias(
            "p",
            format!("{rel} AS p JOIN pii.orders AS o ON o.person_id = p.{key}"),
        ),
        Source::OuterJoin => alias(
            "p",
            format!("pii.orders AS o LEFT JOIN {rel} AS p ON p.{key} = o.person_id"),
        ),
        // A join with an alias hides its members: its columns are the join's own (Vars of the join's entry).
        Source::JoinAlias => From {
            ctes: Vec::new(),
            from: format!("({rel} AS p JOIN pii.orders AS o ON o.person_id = p.{key}) AS j"),
            m: format!("j.{c}"),
            id: "j.person_id".into(),
            label: format!("j.{label}"),
            row: Some("j".into()),
            allowed: true,
        },
        Source::UsingJoin => From {
            label: format!("b.{label}"),
            id: key.to_string(),
            ..alias("a", format!("{rel} AS a JOIN {rel} AS b USING ({key})"))
        },
        Source::FullJoinUsing => From {
            label: format!("b.{label}"),
            ..alias(
                "a",
                format!("{rel} AS a FULL JOIN {rel} AS b USING ({key})"),
            )
        },
        Source::Lateral => projected(
            "l",
            format!(
                "pii.orders AS o CROSS JOIN LATERAL (SELECT t.{key}, t.{label}, t.{c} AS x FROM {rel} AS t \
                 WHERE t.{key} = o.person_id) AS l"
            ),
            Vec::new(),
        ),
        // The guard refuses TABLESAMPLE SYSTEM whatever the masks: its handler function is declared volatile.
        Source::TableSample => From {
            allowed: false,
            ..alias("p", format!("{rel} AS p TABLESAMPLE SYSTEM (100)"))
        },
        Source::SetOperation => From {
            allowed: false,
            ..projected(
                "u",
                format!("({inner} UNION ALL SELECT {key}, {label}, {c} FROM {child}) AS u"),
                Vec::new(),
            )
        },
        Source::Function if column.table == Table::People => From {
            allowed: false,
            ..alias("f", "pii.people_rows() AS f".into())
        },
        _ => return None,
    })
}

/// What a use of the masked value must lead to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Selected as it is: answered, the values masked (`masked_out` names the column when it can be checked).
    Plain,
    /// count(column): answered.
    Count,
    /// Either way, as long as nothing leaks.
    Neutral,
    /// Any other use: refused (or failing before it runs), never answered.
    Refused,
    /// Only unmasked columns of the same source: answered, with their real values.
    Control,
}

/// Uses of the masked value in the select list as an expression: refused. Several are deliberate errors that
/// would quote the value (`invalid input syntax for type integer: "…"`) if they ran.
pub const EXPRESSIONS: &[&str] = &[
    "{m}::text",
    "CAST({m} AS varchar(4))",
    "{m}::text::int",
    "{m}::text::numeric",
    "{m}::text::date",
    "{m}::text::json",
    "{m}::text::jsonb",
    "{m}::text::uuid",
    "{m}::text::boolean",
    "{m}::text::regclass",
    "{m}::text::regproc",
    "{m}::text::interval",
    "{m}::text::inet",
    "{m}::text::xml",
    "{m}::text::point",
    "{m}::text::int[]",
    "to_number({m}::text, '9999')",
    "to_date({m}::text, 'YYYY-MM-DD')",
    "make_date({m}::text::int, 1, 1)",
    "lower({m}::text)",
    "upper({m}::text)",
    "initcap({m}::text)",
    "length({m}::text)",
    "octet_length({m}::text)",
    "ascii({m}::text)",
    "md5({m}::text)",
    "sha256(convert_to({m}::text, 'UTF8'))",
    "hashtext({m}::text)",
    "reverse({m}::text)",
    "left({m}::text, 3)",
    "right({m}::text, 4)",
    "substr({m}::text, 2, 5)",
    "split_part({m}::text, '@', 2)",
    "replace({m}::text, '.', ' ')",
    "translate({m}::text, 'abc', 'xyz')",
    "overlay({m}::text placing '#' from 1)",
    "lpad({m}::text, 40, '*')",
    "concat({m})",
    "concat_ws(',', {m}, {m})",
    "format('%s', {m})",
    "format('%I', {m}::text)",
    "quote_literal({m})",
    "quote_ident({m}::text)",
    "{m}::text || ''",
    "'' || {m}::text",
    "to_json({m})",
    "to_jsonb({m})",
    "jsonb_build_object('k', {m})",
    "json_build_array({m})",
    "row_to_json(ROW({m}))",
    "jsonb_path_query_first(to_jsonb({m}), '$')",
    "array_to_string(ARRAY[{m}::text], ',')",
    "string_to_array({m}::text, '.')",
    "regexp_replace({m}::text, '[aeiou]', '-', 'g')",
    "regexp_match({m}::text, '(.)')",
    "position('@' in {m}::text)",
    "encode(convert_to({m}::text, 'UTF8'), 'base64')",
    "encode(convert_to({m}::text, 'UTF8'), 'hex')",
    "xmlelement(name x, {m}::text)",
    "xmlforest({m}::text AS x)",
    "to_tsvector('simple', {m}::text)",
    "pg_column_size({m})",
    "pg_typeof({m})",
    "num_nonnulls({m})",
    "{m} IS NULL",
    "{m} IS DISTINCT FROM NULL",
    "CASE WHEN {m} IS NULL THEN 0 ELSE 1 END",
    "CASE WHEN {id} > 0 THEN {m}::text::int END",
    "coalesce({m}, {m})",
    "nullif({m}, {m})",
    "greatest({m}::text, '')",
    "ROW({m}, 1)",
    "ARRAY[{m}]",
    "{m}::text = {m}::text",
    "{m}::text > 'm'",
    "{m}::text ~ '^[a-m]'",
    "{m}::text LIKE 'k%'",
    "(SELECT {m})",
    "(SELECT {m}::text)",
];

/// Statements around the masked value `{m}` (and `{e}`, an expression of it from [`EXPRESSIONS`]).
pub const USES: &[(&str, Kind, &str)] = &[
    // Plain projections.
    (
        "plain",
        Kind::Plain,
        "SELECT {id} AS id_out, {m} AS masked_out FROM {from}",
    ),
    (
        "plain sorted by key",
        Kind::Plain,
        "SELECT {m} AS masked_out FROM {from} ORDER BY {id}",
    ),
    (
        "plain filtered by unmasked",
        Kind::Plain,
        "SELECT {m} AS masked_out, {label} FROM {from} WHERE {id} > 0 AND {label} IS NOT NULL",
    ),
    (
        "plain paged",
        Kind::Plain,
        "SELECT {m} AS masked_out FROM {from} ORDER BY {id} LIMIT 3 OFFSET 0",
    ),
    (
        "plain through a subquery",
        Kind::Plain,
        "SELECT q.v AS masked_out FROM (SELECT {m} AS v FROM {from}) AS q",
    ),
    (
        "plain through a CTE",
        Kind::Plain,
        "WITH w AS (SELECT {m} AS v FROM {from}) SELECT v AS masked_out FROM w",
    ),
    (
        "plain with a semi-join",
        Kind::Plain,
        "SELECT {m} AS masked_out FROM {from} WHERE EXISTS (SELECT 1 FROM pii.orders AS o2 WHERE o2.person_id = {id})",
    ),
    (
        "plain twice",
        Kind::Plain,
        "SELECT {m} AS masked_out, {m} AS again FROM {from}",
    ),
    (
        "plain through LATERAL",
        Kind::Plain,
        "SELECT l2.v AS masked_out FROM {from} CROSS JOIN LATERAL (SELECT {m} AS v) AS l2",
    ),
    (
        "plain joined to VALUES",
        Kind::Plain,
        "SELECT {m} AS masked_out, x.n FROM {from} JOIN (VALUES (1, 'x'), (10, 'y')) AS x(k, n) ON x.k = {id}",
    ),
    ("star", Kind::Plain, "SELECT * FROM {from}"),
    ("count", Kind::Count, "SELECT count({m}) FROM {from}"),
    (
        "count by unmasked",
        Kind::Count,
        "SELECT {label}, count({m}) FROM {from} GROUP BY {label}",
    ),
    // Either way.
    (
        "exists",
        Kind::Neutral,
        "SELECT EXISTS (SELECT {m} FROM {from})",
    ),
    (
        "count with a filter",
        Kind::Neutral,
        "SELECT count({m}) FILTER (WHERE {id} > 1) FROM {from}",
    ),
    (
        "row expanded",
        Kind::Neutral,
        "SELECT ({row}).* FROM {from}",
    ),
    (
        "count of rows",
        Kind::Neutral,
        "SELECT count({row}) FROM {from}",
    ),
    (
        "plain explained",
        Kind::Neutral,
        "EXPLAIN (VERBOSE, COSTS OFF) SELECT {m} FROM {from}",
    ),
    (
        "plain explained and run",
        Kind::Neutral,
        "EXPLAIN (ANALYZE, VERBOSE, BUFFERS, COSTS OFF) SELECT {m} FROM {from}",
    ),
    (
        "plain for update",
        Kind::Neutral,
        "SELECT {m} FROM {from} FOR UPDATE",
    ),
    (
        "plain with a runtime error",
        Kind::Neutral,
        "SELECT {m}, 1 / ({id} - {id}) FROM {from}",
    ),
    // Every other use.
    ("expression", Kind::Refused, "SELECT {id}, {e} FROM {from}"),
    (
        "expression in WHERE",
        Kind::Refused,
        "SELECT {id} FROM {from} WHERE ({e}) IS NOT NULL",
    ),
    (
        "comparison in WHERE",
        Kind::Refused,
        "SELECT {id} FROM {from} WHERE {m}::text > 'm'",
    ),
    (
        "IS NULL in WHERE",
        Kind::Refused,
        "SELECT {id} FROM {from} WHERE {m} IS NULL",
    ),
    (
        "pattern in WHERE",
        Kind::Refused,
        "SELECT {id} FROM {from} WHERE {m}::text LIKE '%q%'",
    ),
    (
        "range in WHERE",
        Kind::Refused,
        "SELECT {id} FROM {from} WHERE {m}::text BETWEEN 'a' AND 'm'",
    ),
    (
        "NOT IN in WHERE",
        Kind::Refused,
        "SELECT {id} FROM {from} WHERE {m}::text NOT IN ('a', 'b')",
    ),
    (
        "row comparison in WHERE",
        Kind::Refused,
        "SELECT {id} FROM {from} WHERE ({m}::text, 1) = ({m}::text, 1)",
    ),
    (
        "CASE in WHERE",
        Kind::Refused,
        "SELECT {id} FROM {from} WHERE CASE WHEN {m}::text LIKE 'k%' THEN true ELSE false END",
    ),
    (
        "correlated EXISTS",
        Kind::Refused,
        "SELECT {id} FROM {from} WHERE EXISTS (SELECT 1 WHERE {m}::text LIKE '%q%')",
    ),
    (
        "cast error in WHERE",
        Kind::Refused,
        "SELECT {id} FROM {from} WHERE {m}::text::int > 0",
    ),
    (
        "JOIN ON",
        Kind::Refused,
        "SELECT {id} FROM {from} JOIN pii.orders AS oj ON oj.note = {m}::text",
    ),
    (
        "ORDER BY",
        Kind::Refused,
        "SELECT {id} FROM {from} ORDER BY {m}",
    ),
    (
        "ORDER BY an expression",
        Kind::Refused,
        "SELECT {id} FROM {from} ORDER BY ({e}) DESC",
    ),
    (
        "ORDER BY ordinal",
        Kind::Refused,
        "SELECT {m} FROM {from} ORDER BY 1",
    ),
    (
        "ORDER BY nullness",
        Kind::Refused,
        "SELECT {id} FROM {from} ORDER BY {m} IS NULL",
    ),
    (
        "GROUP BY",
        Kind::Refused,
        "SELECT count(*) FROM {from} GROUP BY {m}",
    ),
    (
        "GROUP BY ordinal",
        Kind::Refused,
        "SELECT {m}, count(*) FROM {from} GROUP BY 1",
    ),
    (
        "GROUP BY an expression",
        Kind::Refused,
        "SELECT count(*) FROM {from} GROUP BY ({e})",
    ),
    (
        "GROUPING SETS",
        Kind::Refused,
        "SELECT {id}, {m} FROM {from} GROUP BY GROUPING SETS (({id}, {m}))",
    ),
    (
        "HAVING",
        Kind::Refused,
        "SELECT count(*) FROM {from} HAVING max({m}::text) > ''",
    ),
    ("DISTINCT", Kind::Refused, "SELECT DISTINCT {m} FROM {from}"),
    (
        "DISTINCT ON",
        Kind::Refused,
        "SELECT DISTINCT ON ({m}) {id} FROM {from}",
    ),
    (
        "PARTITION BY",
        Kind::Refused,
        "SELECT {id}, rank() OVER (PARTITION BY {m}) FROM {from}",
    ),
    (
        "window ORDER BY",
        Kind::Refused,
        "SELECT {id}, row_number() OVER (ORDER BY {m}) FROM {from}",
    ),
    (
        "window function",
        Kind::Refused,
        "SELECT lag({m}) OVER (ORDER BY {id}) FROM {from}",
    ),
    (
        "window first_value",
        Kind::Refused,
        "SELECT first_value({m}) OVER () FROM {from}",
    ),
    (
        "window count",
        Kind::Refused,
        "SELECT count({m}) OVER () FROM {from}",
    ),
    (
        "string_agg",
        Kind::Refused,
        "SELECT string_agg({m}::text, ',') FROM {from}",
    ),
    ("max", Kind::Refused, "SELECT max({m}::text) FROM {from}"),
    ("min", Kind::Refused, "SELECT min({m}) FROM {from}"),
    (
        "array_agg",
        Kind::Refused,
        "SELECT array_agg({m}) FROM {from}",
    ),
    (
        "json_agg",
        Kind::Refused,
        "SELECT json_agg({m}) FROM {from}",
    ),
    (
        "jsonb_object_agg",
        Kind::Refused,
        "SELECT jsonb_object_agg({id}, {m}) FROM {from}",
    ),
    (
        "count DISTINCT",
        Kind::Refused,
        "SELECT count(DISTINCT {m}) FROM {from}",
    ),
    (
        "mode()",
        Kind::Refused,
        "SELECT mode() WITHIN GROUP (ORDER BY {m}) FROM {from}",
    ),
    (
        "aggregate ORDER BY",
        Kind::Refused,
        "SELECT string_agg({label}, ',' ORDER BY {m}) FROM {from}",
    ),
    (
        "aggregate FILTER",
        Kind::Refused,
        "SELECT count(*) FILTER (WHERE {m} IS NULL) FROM {from}",
    ),
    (
        "bool_or",
        Kind::Refused,
        "SELECT bool_or({m} IS NULL) FROM {from}",
    ),
    (
        "scalar subquery",
        Kind::Refused,
        "SELECT (SELECT {m} FROM {from} LIMIT 1)",
    ),
    (
        "scalar subquery of an expression",
        Kind::Refused,
        "SELECT (SELECT {e} FROM {from} LIMIT 1)",
    ),
    (
        "IN subquery",
        Kind::Refused,
        "SELECT 1 WHERE 'x' IN (SELECT {m}::text FROM {from})",
    ),
    (
        "IN subquery of the value",
        Kind::Refused,
        "SELECT 1 WHERE NULL IN (SELECT {m} FROM {from})",
    ),
    (
        "ANY subquery",
        Kind::Refused,
        "SELECT 1 WHERE 'x' = ANY (SELECT {m}::text FROM {from})",
    ),
    (
        "ARRAY subquery",
        Kind::Refused,
        "SELECT ARRAY(SELECT {m} FROM {from})",
    ),
    (
        "VALUES",
        Kind::Refused,
        "VALUES ((SELECT {m}::text FROM {from} LIMIT 1))",
    ),
    (
        "LIMIT",
        Kind::Refused,
        "SELECT 1 LIMIT (SELECT count(*) FROM {from} WHERE {m} IS NULL)",
    ),
    (
        "OFFSET",
        Kind::Refused,
        "SELECT 1 OFFSET (SELECT length(max({m}::text)) FROM {from})",
    ),
    (
        "UNION",
        Kind::Refused,
        "SELECT {m} FROM {from} UNION SELECT {m} FROM {from}",
    ),
    (
        "UNION ALL with a literal",
        Kind::Refused,
        "SELECT {m}::text FROM {from} UNION ALL SELECT 'x'",
    ),
    (
        "UNION ALL of plain values",
        Kind::Refused,
        "SELECT {m} FROM {from} UNION ALL SELECT {m} FROM {from}",
    ),
    (
        "INTERSECT",
        Kind::Refused,
        "SELECT {m} FROM {from} INTERSECT SELECT {m} FROM {from}",
    ),
    (
        "EXCEPT",
        Kind::Refused,
        "SELECT {m} FROM {from} EXCEPT SELECT NULL",
    ),
    (
        "LATERAL unnest",
        Kind::Refused,
        "SELECT u FROM {from} CROSS JOIN LATERAL unnest(ARRAY[{m}]) AS u",
    ),
    (
        "LATERAL VALUES",
        Kind::Refused,
        "SELECT v.x FROM {from} CROSS JOIN LATERAL (VALUES ({m})) AS v(x)",
    ),
    (
        "LATERAL generate_series",
        Kind::Refused,
        "SELECT count(*) FROM {from} CROSS JOIN LATERAL generate_series(1, length({m}::text)) AS g",
    ),
    (
        "LATERAL json",
        Kind::Refused,
        "SELECT j.* FROM {from} CROSS JOIN LATERAL jsonb_each_text(jsonb_build_object('k', {m})) AS j",
    ),
    (
        "recursive CTE",
        Kind::Refused,
        "WITH RECURSIVE r(n, v) AS (SELECT 1, {m}::text FROM {from} UNION ALL SELECT n + 1, v FROM r WHERE n < 2) SELECT v FROM r",
    ),
    (
        "EXPLAIN ANALYZE of a filter",
        Kind::Refused,
        "EXPLAIN (ANALYZE, COSTS OFF) SELECT {id} FROM {from} WHERE {m}::text LIKE 'k%'",
    ),
    (
        "EXPLAIN of an expression",
        Kind::Refused,
        "EXPLAIN (VERBOSE, COSTS OFF) SELECT lower({m}::text) FROM {from}",
    ),
    // Whole-row references.
    ("whole row", Kind::Refused, "SELECT {row} FROM {from}"),
    (
        "row_to_json",
        Kind::Refused,
        "SELECT row_to_json({row}) FROM {from}",
    ),
    (
        "to_jsonb",
        Kind::Refused,
        "SELECT to_jsonb({row}) FROM {from}",
    ),
    (
        "to_json of row.*",
        Kind::Refused,
        "SELECT to_json({row}.*) FROM {from}",
    ),
    (
        "row as text",
        Kind::Refused,
        "SELECT {row}::text FROM {from}",
    ),
    (
        "row formatted",
        Kind::Refused,
        "SELECT format('%s', {row}) FROM {from}",
    ),
    (
        "row in an array",
        Kind::Refused,
        "SELECT ARRAY[{row}] FROM {from}",
    ),
    (
        "row hashed",
        Kind::Refused,
        "SELECT hashtext({row}::text) FROM {from}",
    ),
    (
        "row in WHERE",
        Kind::Refused,
        "SELECT {id} FROM {from} WHERE {row}::text LIKE '%k%'",
    ),
    (
        "row ordered",
        Kind::Refused,
        "SELECT {id} FROM {from} ORDER BY {row}",
    ),
    (
        "row aggregated",
        Kind::Refused,
        "SELECT json_agg({row}) FROM {from}",
    ),
    (
        "rows counted distinct",
        Kind::Refused,
        "SELECT count(DISTINCT {row}) FROM {from}",
    ),
    (
        "row repopulated",
        Kind::Refused,
        "SELECT jsonb_populate_record(NULL::pii.people, to_jsonb({row})) FROM {from}",
    ),
    // Unmasked columns of the same sources.
    (
        "unmasked label",
        Kind::Control,
        "SELECT {label} FROM {from} WHERE {label} IS NOT NULL ORDER BY {label}",
    ),
    (
        "unmasked expression",
        Kind::Control,
        "SELECT {id}, upper({label}) FROM {from} WHERE {label} LIKE '%' ORDER BY 1",
    ),
    (
        "unmasked grouped",
        Kind::Control,
        "SELECT {label}, count(*) FROM {from} GROUP BY {label} ORDER BY 2 DESC, 1",
    ),
    (
        "unmasked aggregated",
        Kind::Control,
        "SELECT string_agg(DISTINCT {label}, ',') FROM {from}",
    ),
];

/// The tool a case runs through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    ExecuteQuery,
    ExplainQuery { analyze: bool },
    IndexAdvice,
}

/// Which profile a case runs on: the masked ones (a reader and a superuser), or the detector's control.
pub const PROFILES: &[&str] = &["fuzz", "fuzz", "fuzz", "owner"];

#[derive(Debug, Clone)]
pub struct Case {
    pub column: Column,
    pub source: Source,
    pub use_name: &'static str,
    pub kind: Kind,
    pub tool: Tool,
    pub profile: &'static str,
    pub sql: String,
}

impl Case {
    /// The call's arguments for its tool.
    pub fn arguments(&self) -> (&'static str, Value) {
        match self.tool {
            Tool::ExecuteQuery => (
                "execute_query",
                json!({"sql": self.sql, "profile": self.profile}),
            ),
            Tool::ExplainQuery { analyze } => (
                "explain_query",
                json!({"sql": self.sql, "analyze": analyze, "profile": self.profile}),
            ),
            Tool::IndexAdvice => (
                "index_advice",
                json!({"statements": [self.sql], "profile": self.profile}),
            ),
        }
    }

    /// Whether the answer must be refused, must be answered, or may be either.
    pub fn expectation(&self, allowed: bool) -> Expect {
        match (self.tool, self.kind) {
            (Tool::IndexAdvice, _) => Expect::Either,
            (_, Kind::Refused) => Expect::NotAnswered,
            (_, _) if !allowed => Expect::NotAnswered,
            (_, Kind::Neutral) => Expect::Either,
            (Tool::ExecuteQuery, _) => Expect::Answered,
            (Tool::ExplainQuery { .. }, _) => Expect::Either,
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "[{} via {:?}, {} ({:?}), {:?} on {}] {}",
            self.column.name,
            self.source,
            self.use_name,
            self.kind,
            self.tool,
            self.profile,
            self.sql
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Answered,
    NotAnswered,
    Either,
}

/// Prefixes `ctes` to a statement, inside EXPLAIN when it is one.
fn with_ctes(ctes: &[String], body: String) -> String {
    if ctes.is_empty() {
        return body;
    }
    let list = ctes.join(", ");
    if let Some(rest) = body.strip_prefix("WITH RECURSIVE ") {
        format!("WITH RECURSIVE {list}, {rest}")
    } else if let Some(rest) = body.strip_prefix("WITH ") {
        format!("WITH {list}, {rest}")
    } else if body.starts_with("EXPLAIN") {
        body.replacen(" SELECT", &format!(" WITH {list} SELECT"), 1)
    } else if body.starts_with("VALUES") {
        // VALUES takes no WITH of its own here; the subquery inside it does.
        body.replacen("(SELECT", &format!("(WITH {list} SELECT"), 1)
    } else {
        format!("WITH {list} {body}")
    }
}

/// The statement for one choice of each dimension, or `None` when it cannot be written that way.
pub fn compose(
    column: Column,
    source: Source,
    use_index: usize,
    expression: &str,
    tool: Tool,
    profile: &'static str,
) -> Option<(Case, bool)> {
    let src = from(source, column)?;
    let (use_name, kind, template) = USES[use_index];
    if template.contains("{row}") && src.row.is_none() {
        return None;
    }
    // A cast of a text column to text is no cast at all: PostgreSQL keeps the plain column, which is answered
    // masked like any plain projection.
    if use_name == "expression"
        && expression == "{m}::text"
        && matches!(column.name, "email" | "card_number")
    {
        return None;
    }
    let e = expression.replace("{m}", &src.m).replace("{id}", &src.id);
    let body = template
        .replace("{e}", &e)
        .replace("{m}", &src.m)
        .replace("{id}", &src.id)
        .replace("{label}", &src.label)
        .replace("{row}", src.row.as_deref().unwrap_or(""))
        .replace("{from}", &src.from);
    let sql = with_ctes(&src.ctes, body);
    Some((
        Case {
            column,
            source,
            use_name,
            kind,
            tool,
            profile,
            sql,
        },
        src.allowed,
    ))
}

fn tool() -> impl Strategy<Value = Tool> {
    prop_oneof![
        7 => Just(Tool::ExecuteQuery),
        2 => Just(Tool::ExplainQuery { analyze: false }),
        1 => Just(Tool::ExplainQuery { analyze: true }),
        1 => Just(Tool::IndexAdvice),
    ]
}

/// Uniform over columns, sources, uses and expressions; combinations that cannot be written are drawn again.
pub fn cases(profiles: &'static [&'static str]) -> impl Strategy<Value = (Case, bool)> {
    (
        0..COLUMNS.len(),
        0..SOURCES.len(),
        0..USES.len(),
        0..EXPRESSIONS.len(),
        tool(),
        0..profiles.len(),
    )
        .prop_filter_map("not writable for this source", move |(c, s, u, e, t, p)| {
            compose(COLUMNS[c], SOURCES[s], u, EXPRESSIONS[e], t, profiles[p])
        })
}

/// The relations read_table and the catalog tools are asked about, with their columns and whether reading them is
/// allowed (the last two views filter on or compute from masked columns).
pub const RELATIONS: &[(&str, &[&str], bool)] = &[
    (
        "pii.people",
        &[
            "id",
            "name",
            "city",
            "email",
            "phone",
            "salary",
            "born",
            "profile",
            "secret_code",
            "token",
            "geo",
            "clearance",
            "alias",
            "postal",
        ],
        true,
    ),
    (
        "pii.vip",
        &["id", "name", "email", "phone", "salary", "tier"],
        true,
    ),
    (
        "pii.people_contacts",
        &["id", "name", "email", "phone"],
        true,
    ),
    (
        "pii.people_everything",
        &["id", "name", "email", "salary", "total"],
        true,
    ),
    (
        "pii.people_nested",
        &["id", "name", "born", "profile", "total"],
        true,
    ),
    (
        "pii.cards",
        &["id", "region", "holder_id", "card_number"],
        true,
    ),
    ("pii.cards_eu", &["id", "region", "card_number"], true),
    ("pii.people_filtered", &["id", "name"], false),
    (
        "pii.people_computed",
        &["id", "email_lower", "double_salary"],
        false,
    ),
];

/// Columns that are masked wherever they appear in [`RELATIONS`].
pub const MASKED_NAMES: &[&str] = &[
    "email",
    "phone",
    "salary",
    "born",
    "profile",
    "secret_code",
    "token",
    "geo",
    "clearance",
    "alias",
    "postal",
    "card_number",
];

/// A read_table call: which relation, the columns and sort keys asked for, and a page.
#[derive(Debug, Clone)]
pub struct ReadCase {
    pub relation: &'static str,
    pub allowed: bool,
    pub columns: Option<Vec<&'static str>>,
    pub order_by: Option<Vec<String>>,
    pub limit: u64,
    pub offset: u64,
    pub profile: &'static str,
}

impl ReadCase {
    pub fn arguments(&self) -> Value {
        let mut arguments = json!({
            "table": self.relation,
            "limit": self.limit,
            "offset": self.offset,
            "profile": self.profile,
        });
        if let Some(columns) = &self.columns {
            arguments["columns"] = json!(columns);
        }
        if let Some(order_by) = &self.order_by {
            arguments["order_by"] = json!(order_by);
        }
        arguments
    }

    /// Sorting by a masked column compares its values: refused.
    pub fn sorts_by_masked(&self) -> bool {
        self.order_by
            .iter()
            .flatten()
            .any(|key| MASKED_NAMES.contains(&key.split_whitespace().next().unwrap_or("")))
    }
}

pub fn read_cases(profiles: &'static [&'static str]) -> impl Strategy<Value = ReadCase> {
    (
        0..RELATIONS.len(),
        proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
        proptest::collection::vec((any::<prop::sample::Index>(), any::<bool>()), 0..3),
        1u64..5,
        0u64..3,
        0..profiles.len(),
        any::<bool>(),
    )
        .prop_map(move |(r, picks, sorts, limit, offset, p, all)| {
            let (relation, names, allowed) = RELATIONS[r];
            let columns = if all || picks.is_empty() {
                None
            } else {
                let mut chosen: Vec<&str> =
                    picks.iter().map(|i| names[i.index(names.len())]).collect();
                chosen.dedup();
                Some(chosen)
            };
            let order_by = if sorts.is_empty() {
                None
            } else {
                Some(
                    sorts
                        .iter()
                        .map(|(i, desc)| {
                            let name = names[i.index(names.len())];
                            if *desc {
                                format!("{name} desc")
                            } else {
                                name.to_string()
                            }
                        })
                        .collect(),
                )
            };
            ReadCase {
                relation,
                allowed,
                columns,
                order_by,
                limit,
                offset,
                profile: profiles[p],
            }
        })
}

/// A curated tool call with arguments good and bad.
pub fn curated_cases() -> impl Strategy<Value = (&'static str, Value)> {
    let ids = prop_oneof![
        Just(json!(1)),
        Just(json!(2)),
        Just(json!(3)),
        Just(json!(4)),
        Just(json!(10)),
        Just(json!(99)),
        Just(json!(-1)),
        Just(json!("1")),
        Just(json!("x")),
        Just(json!(1.5)),
        Just(json!(null)),
    ];
    let cities = prop_oneof![
        Just(json!("Lisbon")),
        Just(json!("Oslo")),
        Just(json!("Rome")),
        Just(json!("x' OR '1'='1")),
        Just(json!("")),
        Just(json!(7)),
    ];
    let tiers = prop_oneof![
        Just(json!("gold")),
        Just(json!("platinum")),
        Just(json!("diamond")),
    ];
    prop_oneof![
        ids.clone()
            .prop_map(|id| ("person_card", json!({"id": id}))),
        (cities, 0i64..60)
            .prop_map(|(city, limit)| ("people_in_city", json!({"city": city, "limit": limit}))),
        ids.prop_map(|id| ("cards_of", json!({"holder_id": id}))),
        tiers.prop_map(|tier| ("vip_contacts", json!({"tier": tier}))),
    ]
}

/// Statements that reach masked values without naming a masked column: the planner's statistics, functions
/// written in the database, functions that run SQL text, views that filter, copies, cursors. None may leak.
pub const SIDE_CHANNELS: &[&str] = &[
    "SELECT * FROM pg_stats WHERE schemaname = 'pii'",
    "SELECT attname, most_common_vals::text, histogram_bounds::text FROM pg_stats WHERE schemaname = 'pii'",
    "SELECT most_common_vals FROM pg_stats WHERE schemaname = 'pii' AND attname = 'phone'",
    "SELECT histogram_bounds FROM pg_catalog.pg_stats WHERE tablename = 'people'",
    "SELECT s.* FROM pg_stats s JOIN pg_namespace n ON n.nspname = s.schemaname WHERE n.nspname = 'pii'",
    "SELECT * FROM pg_stats_ext",
    "SELECT most_common_vals::text FROM pg_stats_ext",
    "SELECT * FROM pg_stats_ext_exprs",
    "SELECT * FROM pg_statistic",
    "SELECT stavalues1, stavalues2, stavalues3 FROM pg_statistic",
    "SELECT stavalues1::text FROM pg_statistic",
    "SELECT array_to_string(stavalues1, ',') FROM pg_statistic",
    "SELECT m.* FROM pg_statistic_ext_data d, pg_mcv_list_items(d.stxdmcv) AS m",
    "SELECT stxdmcv::text FROM pg_statistic_ext_data",
    "SELECT stxdmcv FROM pg_statistic_ext_data",
    "SELECT pii.email_of(1)",
    "SELECT pii.email_of(id) FROM pii.people",
    "SELECT * FROM pii.people_rows()",
    "SELECT (pii.people_rows()).email",
    "SELECT * FROM ROWS FROM (pii.people_rows()) AS r",
    "SELECT name FROM pii.people_rows()",
    "SELECT * FROM pii.people_filtered",
    "SELECT id FROM pii.people_filtered WHERE id > 0",
    "SELECT * FROM pii.people_computed",
    "SELECT id FROM pii.people_computed",
    "TABLE pii.people",
    "TABLE pii.vip",
    "SELECT * FROM pii.people_contacts",
    "SELECT * FROM pii.people NATURAL JOIN pii.vip",
    "SELECT id FROM pii.people JOIN pii.vip USING (email)",
    "SELECT email FROM pii.people UNION ALL SELECT email FROM pii.vip",
    "SELECT (SELECT p FROM pii.people p LIMIT 1)",
    "SELECT * FROM pii.people_everything WHERE total > 0",
    "SELECT query_to_xml('SELECT email FROM pii.people', true, false, '')",
    "SELECT table_to_xml('pii.people', true, false, '')",
    "SELECT ts_stat('SELECT to_tsvector(email) FROM pii.people')",
    "SELECT xmlagg(xmlelement(name e, email)) FROM pii.people",
    "COPY (SELECT email FROM pii.people) TO STDOUT",
    "COPY pii.people TO STDOUT",
    "DECLARE c CURSOR FOR SELECT email FROM pii.people",
    "PREPARE p AS SELECT email FROM pii.people",
    "CREATE TEMP TABLE t AS SELECT email FROM pii.people",
    "SELECT email INTO TEMP t FROM pii.people",
    "SELECT * FROM pg_stat_activity",
    "SELECT * FROM pg_prepared_statements",
    "SELECT pg_get_viewdef('pii.people_filtered')",
    "SELECT current_query()",
    "EXPLAIN (ANALYZE, VERBOSE, BUFFERS, FORMAT JSON) SELECT * FROM pii.people",
    "EXPLAIN (VERBOSE) SELECT * FROM pii.people WHERE id = 1",
];
