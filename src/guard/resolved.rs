//! The guard's last stage: every function a statement will call, as PostgreSQL itself resolved them.
//!
//! SQL has many ways to call a function without writing a call: field selection (`(x).f` is `f(x)`), attribute
//! notation (`t.f`), operators, casts, aggregates' support functions, views, row-level security policies, domain
//! constraints, default arguments, operator classes. Listing syntaxes always misses one. Instead, the statement is
//! parsed by the server with `debug_print_rewritten` on: PostgreSQL then sends the analysed and rewritten tree
//! (views expanded, policies applied, every call, operator and cast resolved to catalog OIDs) as a notice, before
//! anything is planned or run. Every function OID in it, and every function those operators, types and aggregates
//! stand for in the catalogs (what PostgreSQL looks up by type when it runs included, such as a type's comparison
//! or its cast to JSON), is checked against the deny-list and, in read-only mode, the volatility gate.
//!
//! What the tree cannot show is the body of a called function: a function declared STABLE or IMMUTABLE is
//! trusted as declared. PostgreSQL refuses data writes inside such functions, and the read-only transaction and
//! the session check after each call bound the rest (README, "Security model").

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Row, Statement};

use super::GuardError;
use super::policy::GuardPolicy;
use super::tree;
use crate::config::AccessMode;

/// Settings that make PostgreSQL print the rewritten tree of each statement it parses, to this client only.
/// `SET LOCAL`: they end with the transaction.
pub const PRINT_TREES: &str = "SET LOCAL client_min_messages = log; \
SET LOCAL debug_print_rewritten = on; SET LOCAL debug_pretty_print = off";
/// Back to normal once the statement is parsed: function bodies run later would print trees of their own. JIT
/// is off for the catalog lookups that follow: their recursive unions are estimated so large, with a few dozen
/// types involved, that the server compiled them, which took seconds on a busy host for a few milliseconds of
/// work. [`RESTORE_SETTINGS`] sets it back before the statement runs.
macro_rules! stop_printing_trees {
    () => {
        "SET LOCAL debug_print_rewritten = off; SET LOCAL client_min_messages TO DEFAULT; SET LOCAL jit = off"
    };
}

/// What stops the printing of trees, when the catalog lookups are sent as text ([`check_functions`] without
/// [`PreparedQueries`]), or bound to statements the connection prepared. Those are run with the plan they were
/// given once: in PostgreSQL's default mode they were planned again on each of their first five runs, and kept on
/// planning afresh after that, because the generic plan's estimate looked dearer than the custom ones', while
/// planning was most of what they cost.
pub fn stop_printing_trees(prepared: bool) -> &'static str {
    if prepared {
        concat!(
            stop_printing_trees!(),
            "; SET LOCAL plan_cache_mode = force_generic_plan"
        )
    } else {
        stop_printing_trees!()
    }
}
/// The session's own settings again, for the statement itself.
pub const RESTORE_SETTINGS: &str = "SET LOCAL jit TO DEFAULT; SET LOCAL plan_cache_mode TO DEFAULT";

/// Catalog objects a resolved tree refers to by OID.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Referenced {
    pub functions: BTreeSet<u32>,
    pub operators: BTreeSet<u32>,
    pub types: BTreeSet<u32>,
    /// Tables, views and other relations the statement reads or writes (range table entries).
    pub relations: BTreeSet<u32>,
}

impl Referenced {
    pub fn is_empty(&self) -> bool {
        self.functions.is_empty()
            && self.operators.is_empty()
            && self.types.is_empty()
            && self.relations.is_empty()
    }
}

/// Fields of PostgreSQL's node output that hold a pg_proc OID. Function calls (`FuncExpr`), the functions behind
/// operators (`OpExpr` and its kin, which also carry hash and negator support), aggregates, window functions,
/// window RANGE support, and TABLESAMPLE handlers.
const FUNCTION_FIELDS: &[&str] = &[
    "funcid",
    "opfuncid",
    "hashfuncid",
    "negfuncid",
    "aggfnoid",
    "winfnoid",
    "startInRangeFunc",
    "endInRangeFunc",
    "tsmhandler",
];
/// Fields that hold pg_operator OIDs (comparison and sort operators included: their functions run too).
const OPERATOR_FIELDS: &[&str] = &["opno", "sortop", "eqop", "opnos"];

/// Reads the OIDs of functions, operators and types out of trees printed by PostgreSQL's `nodeToString`
/// ([`super::tree`] reads them as PostgreSQL's own reader does). A field that should hold an OID but holds anything
/// else means the tree was not understood, and the statement is refused rather than guessed at.
pub fn referenced_objects(trees: &[tree::Value]) -> Result<Referenced, GuardError> {
    let mut referenced = Referenced::default();
    for tree in trees {
        let mut unreadable = None;
        tree.walk(&mut |node| {
            if node.name == "RANGETBLENTRY"
                && let Some(relid) = node.field("relid")
                && !collect_oids(relid, &mut referenced.relations)
            {
                unreadable.get_or_insert_with(|| "relid".to_string());
            }
            for (field, value) in &node.fields {
                let (target, strict) = if FUNCTION_FIELDS.contains(&field.as_str()) {
                    (&mut referenced.functions, true)
                } else if OPERATOR_FIELDS.contains(&field.as_str()) {
                    (&mut referenced.operators, true)
                } else if is_type_field(field) {
                    (&mut referenced.types, false)
                } else {
                    continue;
                };
                if !collect_oids(value, target) && strict {
                    unreadable.get_or_insert_with(|| field.clone());
                }
            }
        });
        if let Some(field) = unreadable {
            return Err(GuardError::new(format!(
                "could not read PostgreSQL's resolved form of the statement (field {field}); it was not run"
            )));
        }
    }
    referenced.functions.remove(&0);
    referenced.operators.remove(&0);
    referenced.types.remove(&0);
    referenced.relations.remove(&0);
    Ok(referenced)
}

/// Reads printed trees; one that cannot be read refuses the statement.
pub fn parse_trees(trees: &[String]) -> Result<Vec<tree::Value>, GuardError> {
    trees
        .iter()
        .map(|text| {
            tree::parse(text).map_err(|tree::Unreadable(why)| {
                GuardError::new(format!(
                    "could not read PostgreSQL's resolved form of the statement ({why}); it was not run"
                ))
            })
        })
        .collect()
}

/// Type OIDs: `vartype`, `consttype`, `funcresulttype`, `resulttype` (casts and domain coercions), `coltypes`
/// lists… Enumerations whose names also contain "type" (`commandType`, `jointype`) hold small numbers that are
/// no type's OID, so reading them as types only costs a lookup that finds nothing.
fn is_type_field(field: &str) -> bool {
    let lower = field.to_ascii_lowercase();
    (lower.contains("type") || lower.ends_with("typid")) && !lower.contains("typmod")
}

/// Adds the OID or OIDs a field holds: a number, `<>`, or a list `(o 1 2 3)`. False when the value is anything
/// else (for type-like enumerations and nodes that is expected; for function and operator fields it is not).
fn collect_oids(value: &tree::Value, target: &mut BTreeSet<u32>) -> bool {
    match value {
        tree::Value::Null => true,
        tree::Value::Token(token) => match token.parse::<u32>() {
            Ok(oid) => {
                target.insert(oid);
                true
            }
            Err(_) => false,
        },
        tree::Value::List(items) => {
            let mut numbers = items.iter().peekable();
            if matches!(numbers.peek(), Some(tree::Value::Token(kind)) if kind == "o" || kind == "i")
            {
                numbers.next();
            }
            let mut all = true;
            for item in numbers {
                match item {
                    tree::Value::Token(token) => match token.parse::<u32>() {
                        Ok(oid) => {
                            target.insert(oid);
                        }
                        Err(_) => all = false,
                    },
                    _ => all = false,
                }
            }
            all
        }
        tree::Value::Node(_) => false,
    }
}

/// Whether the function `p` is PostgreSQL's own or a member of an installed extension: the select-list column both
/// catalog queries end with.
macro_rules! shipped {
    () => {
        "
  p.pronamespace IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
    OR EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
               WHERE d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')"
    };
}

/// Every function the referenced objects stand for, with what the gates need to know:
///
/// - the functions behind operators, and their selectivity estimators, which the planner calls; and the same for
///   each operator's commutator and negator and the other members of its operator families, which the planner puts
///   in its place or beside it without any tree naming them (`NOT (a = b)` runs `<>`, an estimate of `3 < x` runs
///   `>` on the column's histogram, a merge join sorts with the family's `<`), until no new operator turns up (a
///   family's members from initdb, whose catalog rows have OIDs below 16384, are PostgreSQL's own operators and
///   are left out: following them costs milliseconds and finds only PostgreSQL's functions);
/// - the input, output and support functions of every type involved, and of the types behind them: a domain's base
///   type, an array's element type, a composite's column types (comparing, hashing or printing a row does the same
///   for each column), a range's subtype (and a multirange's range);
/// - the functions in domain constraints;
/// - what PostgreSQL runs through operator classes, which no tree names: the operators and support functions of
///   every type's default operator classes (`GREATEST`, array and row comparisons, hashing and sorting by type),
///   the support functions of every operator family an operator of the statement belongs to (sorts, hash joins,
///   index scans and partition pruning call them), and a range type's subtype class, canonical and difference
///   functions (range comparisons, and the planner's estimates for range operators);
/// - a type's cast to `json`, which the JSON functions (`to_json`, `to_jsonb`, `json_agg`…) look up by the type to
///   turn a value of a type the database defined into JSON;
/// - then the support functions of the aggregates among them (called with every argument, so their own defaults
///   never apply).
///
/// `nested` lists the functions in each one's default arguments, which PostgreSQL inserts into the call and which
/// [`check_functions`] follows in turn. No recursion over functions here: the planner estimates a recursive union so
/// large that it compiles the query with JIT, which costs a second. The types' and the operators' closures are
/// recursive and the functions a union of many, so each is gathered into an array first: their estimates of
/// thousands of rows made the rest of the query hash whole catalogs (`pg_proc` twice, `pg_type`, `pg_aggregate`),
/// which cost milliseconds a statement; an array's elements are estimated at ten, and the catalogs are then read
/// by index.
const FUNCTIONS_SQL: &str = concat!(
    "\
WITH
types(oid) AS (
    SELECT pg_catalog.unnest(ARRAY(
        WITH RECURSIVE reachable(oid) AS (
            SELECT t FROM unnest($3::oid[]) AS t
          UNION
            SELECT v.next FROM reachable JOIN pg_catalog.pg_type ty ON ty.oid = reachable.oid,
              LATERAL (
                  SELECT ty.typbasetype
                UNION ALL SELECT ty.typelem
                UNION ALL SELECT a.atttypid FROM pg_catalog.pg_attribute a
                  WHERE a.attrelid = ty.typrelid AND a.attnum > 0 AND NOT a.attisdropped
                UNION ALL SELECT r.rngsubtype FROM pg_catalog.pg_range r WHERE r.rngtypid = ty.oid
                UNION ALL SELECT r.rngtypid FROM pg_catalog.pg_range r WHERE r.rngmultitypid = ty.oid
              ) AS v(next)
            WHERE v.next <> 0
        )
        SELECT reachable.oid FROM reachable
    ))
),
default_families(family, type) AS (
    SELECT oc.opcfamily, oc.opcintype FROM types
      JOIN pg_catalog.pg_opclass oc ON oc.opcintype = types.oid AND oc.opcdefault
  UNION
    SELECT oc.opcfamily, oc.opcintype FROM types
      JOIN pg_catalog.pg_range r ON r.rngtypid = types.oid
      JOIN pg_catalog.pg_opclass oc ON oc.oid = r.rngsubopc
),
operators(oid) AS (
    SELECT pg_catalog.unnest(ARRAY(
        WITH RECURSIVE closure(oid) AS (
            SELECT o FROM unnest($2::oid[]) AS o
          UNION
            SELECT ao.amopopr FROM default_families d
              JOIN pg_catalog.pg_amop ao ON ao.amopfamily = d.family
                AND ao.amoplefttype = d.type AND ao.amoprighttype = d.type
          UNION
            SELECT v.next FROM closure JOIN pg_catalog.pg_operator o ON o.oid = closure.oid,
              LATERAL (
                  SELECT o.oprcom
                UNION ALL SELECT o.oprnegate
                UNION ALL SELECT member.amopopr FROM pg_catalog.pg_amop ao
                  JOIN pg_catalog.pg_amop member ON member.amopfamily = ao.amopfamily
                  WHERE ao.amopopr = o.oid AND member.oid >= 16384
              ) AS v(next)
            WHERE v.next <> 0
        )
        SELECT closure.oid FROM closure
    ))
),
direct(oid) AS (
    SELECT pg_catalog.unnest(ARRAY(
        SELECT f FROM unnest($1::oid[]) AS f
      UNION
        SELECT v.f FROM operators JOIN pg_catalog.pg_operator o ON o.oid = operators.oid,
          LATERAL (VALUES (o.oprcode::oid), (o.oprrest::oid), (o.oprjoin::oid)) AS v(f)
      UNION
        SELECT ap.amproc::oid FROM operators
          JOIN pg_catalog.pg_amop ao ON ao.amopopr = operators.oid
          JOIN pg_catalog.pg_amproc ap ON ap.amprocfamily = ao.amopfamily
            AND (ap.amproclefttype IN (ao.amoplefttype, ao.amoprighttype)
                 OR ap.amprocrighttype IN (ao.amoplefttype, ao.amoprighttype))
      UNION
        SELECT ap.amproc::oid FROM default_families d
          JOIN pg_catalog.pg_amproc ap ON ap.amprocfamily = d.family
            AND ap.amproclefttype = d.type AND ap.amprocrighttype = d.type
      UNION
        SELECT v.f FROM types JOIN pg_catalog.pg_range r ON r.rngtypid = types.oid,
          LATERAL (VALUES (r.rngcanonical::oid), (r.rngsubdiff::oid)) AS v(f)
      UNION
        SELECT c.castfunc::oid FROM types JOIN pg_catalog.pg_cast c
          ON c.castsource = types.oid AND c.casttarget = 'pg_catalog.json'::pg_catalog.regtype
      UNION
        SELECT v.f FROM types JOIN pg_catalog.pg_type ty ON ty.oid = types.oid,
          LATERAL (VALUES (ty.typinput::oid), (ty.typoutput::oid), (ty.typreceive::oid), (ty.typsend::oid),
                          (ty.typmodin::oid), (ty.typmodout::oid), (ty.typanalyze::oid), (ty.typsubscript::oid)) AS v(f)
      UNION
        SELECT m[1]::oid FROM types JOIN pg_catalog.pg_constraint c ON c.contypid = types.oid,
          LATERAL regexp_matches(c.conbin::text, ':(?:funcid|opfuncid|aggfnoid|winfnoid) (\\d+)', 'g') AS m
    ))
),
called(oid, nested) AS (
    SELECT p.oid, ARRAY(
          SELECT m[1]::oid
          FROM regexp_matches(COALESCE(p.proargdefaults::text, ''),
                              ':(?:funcid|opfuncid|aggfnoid|winfnoid) (\\d+)', 'g') AS m
      )
    FROM direct JOIN pg_catalog.pg_proc p ON p.oid = direct.oid
  UNION ALL
    SELECT support.oid, '{}'::oid[]
    FROM direct JOIN pg_catalog.pg_aggregate a ON a.aggfnoid = direct.oid,
    LATERAL (VALUES (a.aggtransfn::oid), (a.aggfinalfn::oid), (a.aggcombinefn::oid), (a.aggserialfn::oid),
                    (a.aggdeserialfn::oid), (a.aggmtransfn::oid), (a.aggminvtransfn::oid), (a.aggmfinalfn::oid))
      AS support(oid)
)
SELECT p.oid, n.nspname::text, p.proname::text, p.provolatile::text, c.nested,",
    shipped!(),
    "
FROM called c
JOIN pg_catalog.pg_proc p ON p.oid = c.oid
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace"
);

/// The expressions the planner reads with a relation, before it plans anything, of every relation given and of
/// every table that inherits from one or is a partition of one: its indexes' expressions and predicates, its
/// extended statistics' expressions, its partition key's expressions and its CHECK constraints. The planner
/// simplifies each, and simplifying calls an IMMUTABLE function whose arguments are constants and inlines a
/// function written in SQL; no tree of the statement shows any of it. `pg_statistic_ext.stxexprs` is read through
/// `to_jsonb` because PostgreSQL 13 has no such column. Each expression is returned once, with one relation that
/// holds it (for the refusal's wording), whether or not it names a function: constants of a type the database
/// defined are looked up by type (`GREATEST('(1)'::t, '(2)'::t) IS NOT NULL` compares them, and calls nothing by
/// name).
///
/// Rows of a second kind carry a function instead of an expression: the support functions and operators' functions
/// of a partitioned table's key operator classes, which PostgreSQL calls to sort the partitions' bounds when it
/// loads the table, whatever the statement compares (initdb's own, below 16384, left out). Rows of a third kind
/// name a foreign table (schema first, then name) and its server: reading it runs a query there.
const RELATION_EXPRESSIONS_SQL: &str = "\
WITH RECURSIVE relations(oid) AS (
    SELECT r FROM unnest($1::oid[]) AS r
  UNION
    SELECT i.inhrelid FROM relations JOIN pg_catalog.pg_inherits i ON i.inhparent = relations.oid
),
expressions(relation, expr) AS (
    SELECT r.oid::pg_catalog.regclass::text, e.expr
    FROM relations r, LATERAL (
        SELECT x.indexprs::text FROM pg_catalog.pg_index x WHERE x.indrelid = r.oid
      UNION ALL
        SELECT x.indpred::text FROM pg_catalog.pg_index x WHERE x.indrelid = r.oid
      UNION ALL
        SELECT pg_catalog.to_jsonb(s) ->> 'stxexprs' FROM pg_catalog.pg_statistic_ext s WHERE s.stxrelid = r.oid
      UNION ALL
        SELECT k.partexprs::text FROM pg_catalog.pg_partitioned_table k WHERE k.partrelid = r.oid
      UNION ALL
        SELECT c.conbin::text FROM pg_catalog.pg_constraint c WHERE c.conrelid = r.oid AND c.contype = 'c'
    ) AS e(expr)
),
foreign_tables(schema, name, server) AS (
    SELECT n.nspname::text, c.relname::text, s.srvname::text
    FROM relations r
      JOIN pg_catalog.pg_class c ON c.oid = r.oid AND c.relkind = 'f'
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_catalog.pg_foreign_table t ON t.ftrelid = c.oid
      JOIN pg_catalog.pg_foreign_server s ON s.oid = t.ftserver
),
key_support(relation, f) AS (
    SELECT r.oid::pg_catalog.regclass::text, f.oid
    FROM relations r
      JOIN pg_catalog.pg_partitioned_table k ON k.partrelid = r.oid
      CROSS JOIN LATERAL unnest(k.partclass::oid[]) AS key(opclass)
      JOIN pg_catalog.pg_opclass oc ON oc.oid = key.opclass,
      LATERAL (
          SELECT ap.amproc::oid FROM pg_catalog.pg_amproc ap WHERE ap.amprocfamily = oc.opcfamily
        UNION ALL
          SELECT o.oprcode::oid FROM pg_catalog.pg_amop ao
            JOIN pg_catalog.pg_operator o ON o.oid = ao.amopopr
          WHERE ao.amopfamily = oc.opcfamily
      ) AS f(oid)
)
SELECT min(relation), expr, NULL::oid, NULL::text, NULL::text
FROM expressions WHERE expr IS NOT NULL GROUP BY expr
UNION ALL
SELECT min(relation), NULL, f, NULL, NULL FROM key_support WHERE f >= 16384 GROUP BY f
UNION ALL
SELECT schema, NULL, NULL, name, server FROM foreign_tables";

/// Of the functions found in a relation's expressions, those the planner may run: IMMUTABLE ones called with no
/// column as a direct argument (`$1`), which simplification calls when the other arguments fold to constants, and
/// any it may inline, wherever they stand (`$2`): SQL functions without SECURITY DEFINER or settings of their own,
/// whose bodies then fold like the rest. A call with a column as an argument is never evaluated by the planner.
/// And every function in `$3`, which PostgreSQL calls as it loads a relation.
const PLANNED_FUNCTIONS_SQL: &str = concat!(
    "\
SELECT p.oid, n.nspname::text, p.proname::text, p.provolatile::text, '{}'::oid[],",
    shipped!(),
    "
FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE p.oid = ANY($3::oid[])
   OR (p.oid = ANY($1::oid[]) AND p.provolatile = 'i')
   OR ((p.oid = ANY($1::oid[]) OR p.oid = ANY($2::oid[]))
       AND p.prolang = (SELECT l.oid FROM pg_catalog.pg_language l WHERE l.lanname = 'sql')
       AND NOT p.prosecdef AND p.proconfig IS NULL)"
);

/// OIDs below this are PostgreSQL's own objects, made by initdb (`FirstNormalObjectId`); anything created later,
/// extensions included, gets a larger one. The planner's calls among them need no catalog lookup.
const FIRST_NORMAL_OBJECT_ID: u32 = 16384;

/// How many times [`check_functions`] follows functions found in default arguments of functions found in
/// default arguments before refusing: real schemas need one or two.
const MAX_NESTING: usize = 8;

/// Why [`check_functions`] did not pass a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckFailure {
    /// Refused, or could not be checked; the reason is for the caller.
    Refused(GuardError),
    /// A catalog query the connection had prepared is gone: a function the profile trusts ran `DEALLOCATE`.
    /// Nothing was judged. The caller forgets the connection's queries ([`PreparedQueries::forget`]) and checks
    /// again.
    QueryGone,
}

impl From<GuardError> for CheckFailure {
    fn from(error: GuardError) -> CheckFailure {
        CheckFailure::Refused(error)
    }
}

/// The catalog queries of one connection, prepared by the first check that needs them and bound by the later
/// ones: parsing and planning them again was most of what they cost a statement's first call (BENCHMARKS.md,
/// issue 17's eighteenth step). The session holds them, and each call clones the handle, as it does the notices.
///
/// A function the profile trusts could `DEALLOCATE` one and `PREPARE` a statement of its own under its name,
/// which would then answer the checks on that connection. That `PREPARE` is SQL-level, so the session check finds
/// it and closes the connection, with the limits it has for pgmcp's other prepared statements (`db::session`); and
/// a function that runs whatever SQL it is given can already run what the check would refuse.
#[derive(Clone, Default)]
pub struct PreparedQueries(Arc<Mutex<Option<Arc<CatalogStatements>>>>);

impl std::fmt::Debug for PreparedQueries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PreparedQueries")
    }
}

struct CatalogStatements {
    functions: Statement,
    relations: Statement,
    planned: Statement,
}

impl PreparedQueries {
    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Arc<CatalogStatements>>> {
        // Only a handle is kept under the lock: a panic elsewhere cannot leave it half-written.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The connection's statements, prepared now (in one flight, one round trip) if it has none.
    async fn statements(&self, client: &Client) -> Result<Arc<CatalogStatements>, CheckFailure> {
        if let Some(statements) = self.slot().clone() {
            return Ok(statements);
        }
        let oids = [Type::OID_ARRAY, Type::OID_ARRAY, Type::OID_ARRAY];
        let (functions, relations, planned) = tokio::try_join!(
            client.prepare_typed(FUNCTIONS_SQL, &oids),
            client.prepare_typed(RELATION_EXPRESSIONS_SQL, &oids[..1]),
            client.prepare_typed(PLANNED_FUNCTIONS_SQL, &oids),
        )
        .map_err(catalog_error)?;
        let statements = Arc::new(CatalogStatements {
            functions,
            relations,
            planned,
        });
        *self.slot() = Some(statements.clone());
        Ok(statements)
    }

    /// Drops the statements; the next check prepares them again.
    pub fn forget(&self) {
        self.slot().take();
    }
}

/// How a check sends its catalog queries: as text, parsed and planned each time (behind a transaction-pooling
/// proxy, which may send a later Bind to a server that never saw the Parse), or bound to the connection's own.
#[derive(Clone, Copy)]
enum Catalog<'a> {
    Text,
    Prepared(&'a CatalogStatements),
}

impl Catalog<'_> {
    async fn query(
        self,
        client: &Client,
        choose: fn(&CatalogStatements) -> &Statement,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Vec<Row>, CheckFailure> {
        let rows = match self {
            Catalog::Text => client.query_typed(sql, params).await,
            Catalog::Prepared(statements) => {
                let values: Vec<&(dyn ToSql + Sync)> =
                    params.iter().map(|(value, _)| *value).collect();
                client.query(choose(statements), &values).await
            }
        };
        rows.map_err(catalog_error)
    }
}

/// Catalog round trips, usually one: rejects the statement when anything it calls, or anything the planner may
/// call for the relations it reads, is on the deny-list, or, in read-only mode, is VOLATILE and not on the
/// allow-list, or was written in the database and is not trusted. With `prepared`, the queries are bound to the
/// connection's statements, which the first check prepares; the transaction must then have run
/// [`stop_printing_trees`]`(true)`.
pub async fn check_functions(
    client: &Client,
    referenced: &Referenced,
    policy: &GuardPolicy,
    prepared: Option<&PreparedQueries>,
) -> Result<(), CheckFailure> {
    if referenced.is_empty() {
        return Ok(());
    }
    let statements = match prepared {
        Some(prepared) => Some(prepared.statements(client).await?),
        None => None,
    };
    let catalog = statements
        .as_deref()
        .map_or(Catalog::Text, Catalog::Prepared);
    // One flight: both questions go to the server before either answer is read.
    let (called, planned) = tokio::join!(
        check_called(
            client,
            catalog,
            [
                &referenced.functions,
                &referenced.operators,
                &referenced.types
            ],
            policy,
            &Reached::Resolved,
        ),
        planner_calls(client, catalog, &referenced.relations),
    );
    called?;
    check_planned(client, catalog, &planned?, policy).await
}

/// A catalog query that failed. A statement the connection had prepared and no longer has is told by its code
/// and by its lack of context: an error raised while a query runs carries one.
fn catalog_error(error: tokio_postgres::Error) -> CheckFailure {
    if let Some(db) = error.as_db_error()
        && db.code() == &SqlState::INVALID_SQL_STATEMENT_NAME
        && db.where_().is_none()
    {
        return CheckFailure::QueryGone;
    }
    CheckFailure::Refused(GuardError::new(format!(
        "could not check the statement's functions in the catalog: {}",
        error
            .as_db_error()
            .map_or_else(|| error.to_string(), |db| db.message().to_owned())
    )))
}

fn unexpected_row() -> GuardError {
    GuardError::new("could not check the statement's functions: unexpected catalog row")
}

fn oid_vec(set: &BTreeSet<u32>) -> Vec<u32> {
    set.iter().copied().collect()
}

/// A catalog query whose three parameters are OID arrays.
async fn query_oids(
    client: &Client,
    catalog: Catalog<'_>,
    choose: fn(&CatalogStatements) -> &Statement,
    sql: &str,
    [first, second, third]: [&[u32]; 3],
) -> Result<Vec<Row>, CheckFailure> {
    catalog
        .query(
            client,
            choose,
            sql,
            &[
                (&first, Type::OID_ARRAY),
                (&second, Type::OID_ARRAY),
                (&third, Type::OID_ARRAY),
            ],
        )
        .await
}

/// A function as both catalog queries describe it: OID, schema, name, volatility, the functions its default
/// arguments call, and whether PostgreSQL or an extension shipped it.
struct FunctionRow<'a> {
    oid: u32,
    schema: &'a str,
    name: &'a str,
    volatility: &'a str,
    nested: Vec<u32>,
    shipped: bool,
}

impl<'a> FunctionRow<'a> {
    fn read(row: &'a Row) -> Result<FunctionRow<'a>, GuardError> {
        let column = |_| unexpected_row();
        Ok(FunctionRow {
            oid: row.try_get(0).map_err(column)?,
            schema: row.try_get(1).map_err(column)?,
            name: row.try_get(2).map_err(column)?,
            volatility: row.try_get(3).map_err(column)?,
            nested: row.try_get(4).map_err(column)?,
            shipped: row.try_get(5).map_err(column)?,
        })
    }

    fn judge(&self, policy: &GuardPolicy, reached: &Reached<'_>) -> Result<(), GuardError> {
        judge(
            self.schema,
            self.name,
            self.volatility,
            self.shipped,
            policy,
            reached,
        )
    }
}

/// What the given functions, operators and types call, directly or through the catalogs (see [`FUNCTIONS_SQL`]).
async fn check_called(
    client: &Client,
    catalog: Catalog<'_>,
    [functions, operators, types]: [&BTreeSet<u32>; 3],
    policy: &GuardPolicy,
    reached: &Reached<'_>,
) -> Result<(), CheckFailure> {
    let (mut functions, mut operators, mut types) =
        (oid_vec(functions), oid_vec(operators), oid_vec(types));
    if functions.is_empty() && operators.is_empty() && types.is_empty() {
        return Ok(());
    }
    let mut seen = BTreeSet::new();
    for _ in 0..MAX_NESTING {
        let rows = query_oids(
            client,
            catalog,
            |statements| &statements.functions,
            FUNCTIONS_SQL,
            [&functions, &operators, &types],
        )
        .await?;
        let mut pending = BTreeSet::new();
        for row in &rows {
            let function = FunctionRow::read(row)?;
            function.judge(policy, reached)?;
            seen.insert(function.oid);
            pending.extend(function.nested);
        }
        pending.retain(|oid| !seen.contains(oid));
        if pending.is_empty() {
            return Ok(());
        }
        // The nested functions were judged already; what their own default arguments call is not.
        functions = pending.into_iter().collect();
        operators.clear();
        types.clear();
    }
    Err(GuardError::new(
        "the statement calls functions whose default arguments call functions nested too deeply to check",
    )
    .into())
}

/// A foreign table a statement reads.
#[derive(Debug, PartialEq, Eq)]
pub struct ForeignTable {
    pub schema: String,
    pub name: String,
    pub server: String,
}

/// What the planner does with the statement's relations that no tree shows: the functions found in the expressions
/// it reads with them (see [`RELATION_EXPRESSIONS_SQL`]), PostgreSQL's own left out, and the foreign tables among
/// them.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PlannerCalls {
    /// Called with no column as a direct argument: evaluated while planning when the rest fold to constants.
    pub unbound: BTreeSet<u32>,
    /// Called with a column as a direct argument: never evaluated while planning, but inlined when written in SQL.
    pub bound: BTreeSet<u32>,
    /// Called whatever they are: a partitioned table's key comparisons.
    pub always: BTreeSet<u32>,
    /// Types of constants and operators of calls not given a column: simplifying them may run what PostgreSQL
    /// looks up by type or operator (a comparison for `GREATEST` or an array comparison, a negator).
    pub types: BTreeSet<u32>,
    pub operators: BTreeSet<u32>,
    /// One relation whose expressions hold those types or operators.
    pub relation_of_lookups: Option<String>,
    /// One relation whose expressions call each function, for the refusal's wording.
    pub relation_of: std::collections::BTreeMap<u32, String>,
    /// Foreign tables read, directly or as a child or partition.
    pub foreign_tables: Vec<ForeignTable>,
}

async fn planner_calls(
    client: &Client,
    catalog: Catalog<'_>,
    relations: &BTreeSet<u32>,
) -> Result<PlannerCalls, CheckFailure> {
    let mut calls = PlannerCalls::default();
    if relations.is_empty() {
        return Ok(calls);
    }
    let relations = oid_vec(relations);
    let rows = catalog
        .query(
            client,
            |statements| &statements.relations,
            RELATION_EXPRESSIONS_SQL,
            &[(&relations, Type::OID_ARRAY)],
        )
        .await?;
    for row in &rows {
        let relation: &str = row.try_get(0).map_err(|_| unexpected_row())?;
        let expression: Option<&str> = row.try_get(1).map_err(|_| unexpected_row())?;
        let support: Option<u32> = row.try_get(2).map_err(|_| unexpected_row())?;
        let foreign_name: Option<String> = row.try_get(3).map_err(|_| unexpected_row())?;
        let server: Option<String> = row.try_get(4).map_err(|_| unexpected_row())?;
        if let (Some(name), Some(server)) = (foreign_name, server) {
            calls.foreign_tables.push(ForeignTable {
                schema: relation.to_string(),
                name,
                server,
            });
            continue;
        }
        let Some(expression) = expression else {
            let oid = support.ok_or_else(unexpected_row)?;
            calls.always.insert(oid);
            calls
                .relation_of
                .entry(oid)
                .or_insert_with(|| relation.to_string());
            continue;
        };
        let tree = tree::parse(expression).map_err(|tree::Unreadable(why)| {
            GuardError::new(format!(
                "could not read the expressions the planner reads with {relation} ({why}); the statement was not run"
            ))
        })?;
        calls_in_expression(&tree, relation, &mut calls).map_err(|field| {
            GuardError::new(format!(
                "could not read the expressions the planner reads with {relation} (field {field}); the statement \
                 was not run"
            ))
        })?;
    }
    Ok(calls)
}

/// Sorts every function an expression tree calls into [`PlannerCalls`]; `Err` names a function field that holds
/// anything but an OID.
pub fn calls_in_expression(
    tree: &tree::Value,
    relation: &str,
    calls: &mut PlannerCalls,
) -> Result<(), String> {
    let mut unreadable = None;
    tree.walk(&mut |node| {
        let bound = node.nodes("args").into_iter().any(is_column);
        let mut looked_up = |target: &mut BTreeSet<u32>, oid: Option<i64>| {
            if let Some(oid) = oid.and_then(|oid| u32::try_from(oid).ok())
                && oid >= FIRST_NORMAL_OBJECT_ID
            {
                target.insert(oid);
                calls
                    .relation_of_lookups
                    .get_or_insert_with(|| relation.to_string());
            }
        };
        if node.name == "CONST" {
            looked_up(&mut calls.types, node.number("consttype"));
        }
        if !bound {
            looked_up(&mut calls.operators, node.number("opno"));
        }
        for (field, value) in &node.fields {
            if !FUNCTION_FIELDS.contains(&field.as_str()) {
                continue;
            }
            let mut found = BTreeSet::new();
            if !collect_oids(value, &mut found) {
                unreadable.get_or_insert_with(|| field.clone());
            }
            for oid in found {
                if oid < FIRST_NORMAL_OBJECT_ID {
                    continue;
                }
                if bound {
                    calls.bound.insert(oid);
                } else {
                    calls.unbound.insert(oid);
                }
                calls
                    .relation_of
                    .entry(oid)
                    .or_insert_with(|| relation.to_string());
            }
        }
    });
    unreadable.map_or(Ok(()), Err)
}

/// A column, possibly relabelled to a binary-compatible type or given a collation: simplification leaves it a
/// column, so a call with it as an argument never has only constants to be evaluated with.
fn is_column(node: &tree::Node) -> bool {
    match node.name.as_str() {
        "VAR" => true,
        "RELABELTYPE" | "COLLATEEXPR" => node.node("arg").is_some_and(is_column),
        _ => false,
    }
}

async fn check_planned(
    client: &Client,
    catalog: Catalog<'_>,
    calls: &PlannerCalls,
    policy: &GuardPolicy,
) -> Result<(), CheckFailure> {
    if policy.access_mode == AccessMode::ReadOnly {
        for ForeignTable {
            schema,
            name,
            server,
        } in &calls.foreign_tables
        {
            if !policy.foreign_table_allowed(schema, name) {
                let table = format!("{schema}.{name}");
                return Err(GuardError::new(format!(
                    "foreign table {table} is not allowed in read-only mode: reading it runs a query on server \
                     {server}, where a view or function may change state, and pgmcp cannot see what runs there — \
                     a profile may trust it with allow_foreign_tables = [\"{table}\"]"
                ))
                .into());
            }
        }
    }
    // One flight: check_called returns at once when there is nothing to look up.
    let no_functions = BTreeSet::new();
    let lookups = Reached::Planned {
        relation: calls.relation_of_lookups.as_deref().unwrap_or(""),
    };
    let (looked_up, called) = tokio::join!(
        check_called(
            client,
            catalog,
            [&no_functions, &calls.operators, &calls.types],
            policy,
            &lookups,
        ),
        check_planner_called(client, catalog, calls, policy),
    );
    looked_up?;
    called
}

/// The functions of [`PlannerCalls`] the planner may run, judged.
async fn check_planner_called(
    client: &Client,
    catalog: Catalog<'_>,
    calls: &PlannerCalls,
    policy: &GuardPolicy,
) -> Result<(), CheckFailure> {
    if calls.unbound.is_empty() && calls.bound.is_empty() && calls.always.is_empty() {
        return Ok(());
    }
    let (unbound, bound, always) = (
        oid_vec(&calls.unbound),
        oid_vec(&calls.bound),
        oid_vec(&calls.always),
    );
    let rows = query_oids(
        client,
        catalog,
        |statements| &statements.planned,
        PLANNED_FUNCTIONS_SQL,
        [&unbound, &bound, &always],
    )
    .await?;
    for row in &rows {
        let function = FunctionRow::read(row)?;
        let relation = calls
            .relation_of
            .get(&function.oid)
            .map_or("", String::as_str);
        function.judge(policy, &Reached::Planned { relation })?;
    }
    Ok(())
}

/// How a judged function comes to run, for the refusal's last words.
enum Reached<'a> {
    /// The statement's resolved tree calls it, or a catalog object the tree names does.
    Resolved,
    /// The planner may call it while it plans a read of `relation`.
    Planned { relation: &'a str },
}

impl std::fmt::Display for Reached<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reached::Resolved => f.write_str("PostgreSQL resolves the statement to a call of it"),
            Reached::Planned { relation } => write!(
                f,
                "the planner may call it while it plans the statement: an index, extended statistics, partition \
                 key or CHECK constraint of {relation} calls it, or {relation}'s partitions are sorted with it"
            ),
        }
    }
}

/// The gates for one resolved function. `shipped`: PostgreSQL's own (pg_catalog, information_schema) or a member
/// of an installed extension, whose declared volatility is trusted; a function someone wrote in the database is
/// not, in read-only mode: its body may do what its declaration does not say (a STABLE function can still signal
/// another session, take a lock or write through dblink), and pgmcp does not read bodies. The profile can trust
/// such a function by name (`allow_volatile_functions`). On a profile with masks it is refused whatever the
/// allow-list says: its body may read a masked column and return the value, which the resolved tree cannot show.
fn judge(
    schema: &str,
    name: &str,
    volatility: &str,
    shipped: bool,
    policy: &GuardPolicy,
    reached: &Reached<'_>,
) -> Result<(), GuardError> {
    if policy.denied_entry(Some(schema), name).is_some() {
        return Err(GuardError::new(format!(
            "function {schema}.{name} is not allowed: it can change server or session state, or reach outside \
             the database ({reached})"
        )));
    }
    if !shipped && !policy.masks.is_empty() {
        return Err(GuardError::new(format!(
            "function {schema}.{name} is not allowed on a profile with masked columns: it was written in this \
             database, and pgmcp cannot see what its body reads, so it could hand a masked column's values out \
             unmasked (allow_volatile_functions does not lift this; only PostgreSQL's and installed extensions' \
             functions may be called here) ({reached})"
        )));
    }
    if policy.access_mode == AccessMode::ReadOnly
        && !shipped
        && volatility != "v"
        && !policy.volatile_allowed(schema, name)
    {
        return Err(GuardError::new(format!(
            "function {schema}.{name} is not allowed in read-only mode: it was written in this database, and its \
             body may change state whatever its declared volatility says; only PostgreSQL's and installed \
             extensions' functions are trusted as declared — a profile may trust it with \
             allow_volatile_functions = [\"{schema}.{name}\"] ({reached})"
        )));
    }
    if policy.access_mode == AccessMode::ReadOnly
        && volatility == "v"
        && !policy.volatile_allowed(schema, name)
    {
        return Err(GuardError::new(format!(
            "function {schema}.{name} is VOLATILE and not allowed in read-only mode: it may change data or state; \
             only stable and immutable functions and allow-listed volatile ones may be called ({reached})"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The gates for a function the statement's tree calls.
    fn judged(
        schema: &str,
        name: &str,
        volatility: &str,
        shipped: bool,
        policy: &GuardPolicy,
    ) -> Result<(), GuardError> {
        judge(
            schema,
            name,
            volatility,
            shipped,
            policy,
            &Reached::Resolved,
        )
    }

    fn referenced(tree: &str) -> Referenced {
        read(tree).expect("readable")
    }

    fn read(tree: &str) -> Result<Referenced, GuardError> {
        referenced_objects(&parse_trees(&[tree.to_string()])?)
    }

    #[test]
    fn reads_functions_operators_and_types_from_a_tree() {
        let tree = "({QUERY :commandType 1 :targetList ({TARGETENTRY :expr {FUNCEXPR :funcid 2096 \
            :funcresulttype 16 :args ({CONST :consttype 23 :constlen 4 :constvalue 4 [ 57 48 0 0 0 0 0 0 ]})}} \
            {TARGETENTRY :expr {OPEXPR :opno 551 :opfuncid 177 :opresulttype 23}}) \
            :rtable ({RTE :coltypes (o 23 25) :colcollids (o 0 100)}) \
            :sortClause ({SORTGROUPCLAUSE :eqop 96 :sortop 97 :nulls_first false})})";
        let found = referenced(tree);
        assert_eq!(found.functions, BTreeSet::from([2096, 177]));
        assert_eq!(found.operators, BTreeSet::from([551, 96, 97]));
        assert_eq!(
            found.types,
            BTreeSet::from([1, 16, 23, 25]),
            "commandType is read too, harmlessly"
        );
    }

    #[test]
    fn text_a_caller_wrote_cannot_forge_or_hide_a_field() {
        // An alias that spells a field: PostgreSQL escapes its spaces, so it stays one ordinary token.
        let tree = r#"({QUERY :targetList ({TARGETENTRY :resname \ :funcid\ 1 :expr {FUNCEXPR :funcid 2096}})})"#;
        assert_eq!(referenced(tree).functions, BTreeSet::from([2096]));
        // An alias that is exactly a field name is the value of its field, as PostgreSQL's reader takes it.
        let alias =
            r#"({QUERY :eref {ALIAS :aliasname :funcid :colnames <>} :x {FUNCEXPR :funcid 870}})"#;
        assert_eq!(referenced(alias).functions, BTreeSet::from([870]));
        // A function field holding anything but an OID is not understood: refused.
        let odd = r#"({QUERY :x {FUNCEXPR :funcid {CONST}}})"#;
        assert!(
            read(odd)
                .expect_err("unreadable")
                .reason
                .contains("field funcid")
        );
    }

    #[test]
    fn relations_are_read_from_range_table_entries() {
        let tree = "({QUERY :rtable ({RANGETBLENTRY :rtekind 0 :relid 16400 :relkind r} \
            {RANGETBLENTRY :rtekind 5 :relid 0}) :x {OTHER :relid 99}})";
        assert_eq!(referenced(tree).relations, BTreeSet::from([16400]));
        let odd = "({QUERY :rtable ({RANGETBLENTRY :relid {CONST}})})";
        assert!(
            read(odd)
                .expect_err("unreadable")
                .reason
                .contains("field relid")
        );
    }

    #[test]
    fn a_call_given_a_column_is_bound_and_the_rest_are_not() {
        let planned = |expression: &str| {
            let mut calls = PlannerCalls::default();
            let tree = tree::parse(expression).expect("readable");
            calls_in_expression(&tree, "t", &mut calls).map(|()| calls)
        };
        // `a + index_const()`, `column_norm(a::varchar::text)`, `f(a, g(1))`, and PostgreSQL's own `int4pl`.
        let calls = planned(
            "({OPEXPR :opfuncid 177 :args ({VAR :varno 1} {FUNCEXPR :funcid 16403 :args <>})} \
             {FUNCEXPR :funcid 16404 :args ({RELABELTYPE :arg {VAR :varno 1}})} \
             {FUNCEXPR :funcid 16405 :args ({VAR :varno 1} {FUNCEXPR :funcid 16406 :args ({CONST})})} \
             {FUNCEXPR :funcid 16407 :args ({FUNCEXPR :funcid 870 :args ({VAR :varno 1})})})",
        )
        .expect("readable");
        assert_eq!(calls.unbound, BTreeSet::from([16403, 16406, 16407]));
        assert_eq!(calls.bound, BTreeSet::from([16404, 16405]));
        assert_eq!(calls.relation_of.get(&16403).map(String::as_str), Some("t"));
        // A constant of a type the database defined, and an operator of a call not given a column, are looked up;
        // an operator given a column is not.
        let calls = planned(
            "({MINMAXEXPR :minmaxtype 16500 :args ({CONST :consttype 16500} {CONST :consttype 23})} \
             {OPEXPR :opno 16600 :opfuncid 65 :args ({CONST :consttype 23} {CONST :consttype 23})} \
             {OPEXPR :opno 16700 :opfuncid 65 :args ({VAR :varno 1} {CONST :consttype 23})})",
        )
        .expect("readable");
        assert_eq!(calls.types, BTreeSet::from([16500]));
        assert_eq!(calls.operators, BTreeSet::from([16600]));
        assert_eq!(calls.relation_of_lookups.as_deref(), Some("t"));
        assert_eq!(
            planned("({FUNCEXPR :funcid (o 1 2) :args <>})"),
            Ok(PlannerCalls::default())
        );
        assert_eq!(
            planned("({FUNCEXPR :funcid {CONST} :args <>})").expect_err("unreadable"),
            "funcid"
        );
    }

    #[test]
    fn type_like_enumerations_are_skipped_without_refusing() {
        let found =
            referenced("({QUERY :commandType 1 :jointype 0 :nulltesttype 0 :resulttype 1043})");
        assert_eq!(found.types, BTreeSet::from([1, 1043]));
        let found = referenced("({X :row_format 0 :funcformat 2 :funcid 870})");
        assert_eq!(found.functions, BTreeSet::from([870]));
    }

    #[test]
    fn deny_list_and_volatility_judge_resolved_names() {
        let policy = GuardPolicy::read_only();
        assert!(judged("pg_catalog", "pg_terminate_backend", "v", true, &policy).is_err());
        assert!(judged("pg_catalog", "lower", "i", true, &policy).is_ok());
        assert!(judged("pg_catalog", "random", "v", true, &policy).is_ok());
        let volatile = judged("public", "bump", "v", false, &policy).expect_err("volatile");
        assert!(
            volatile.reason.contains("public.bump is VOLATILE"),
            "{}",
            volatile.reason
        );
        let written = judged("public", "calm", "s", false, &policy).expect_err("user-defined");
        assert!(
            written.reason.contains("written in this database"),
            "{}",
            written.reason
        );
        assert!(judged("extensions", "similarity", "i", true, &policy).is_ok());
        let trusting = GuardPolicy {
            allowed_volatile_functions: vec!["public.calm".into()],
            ..GuardPolicy::read_only()
        };
        assert!(judged("public", "calm", "s", false, &trusting).is_ok());
        let write = GuardPolicy::read_write(false);
        assert!(judged("public", "bump", "v", false, &write).is_ok());
        assert!(judged("pg_catalog", "set_config", "v", true, &write).is_err());
    }

    #[test]
    fn masks_refuse_functions_written_in_the_database_whatever_the_allow_list() {
        let rule = crate::guard::masks::MaskRule {
            schema: "public".into(),
            table: "customers".into(),
            columns: vec!["email".into()],
            mode: crate::guard::masks::MaskMode::Partial,
        };
        let masked = |policy: GuardPolicy| GuardPolicy {
            masks: vec![rule.clone()],
            allowed_volatile_functions: vec!["public.email_of".into()],
            ..policy
        };
        for policy in [
            masked(GuardPolicy::read_only()),
            masked(GuardPolicy::read_write(true)),
        ] {
            let refused =
                judged("public", "email_of", "s", false, &policy).expect_err("written here");
            assert!(
                refused.reason.contains("profile with masked columns"),
                "{}",
                refused.reason
            );
            assert!(judged("pg_catalog", "lower", "i", true, &policy).is_ok());
            assert!(judged("extensions", "similarity", "i", true, &policy).is_ok());
        }
    }
}
