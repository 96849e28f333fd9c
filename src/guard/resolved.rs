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

use tokio_postgres::types::Type;

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
/// work. [`RESTORE_JIT`] sets it back before the statement runs.
pub const STOP_PRINTING_TREES: &str = "SET LOCAL debug_print_rewritten = off; SET LOCAL client_min_messages TO DEFAULT; SET LOCAL jit = off";
/// The session's own JIT setting again, for the statement itself.
pub const RESTORE_JIT: &str = "SET LOCAL jit TO DEFAULT";

/// Catalog objects a resolved tree refers to by OID.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Referenced {
    pub functions: BTreeSet<u32>,
    pub operators: BTreeSet<u32>,
    pub types: BTreeSet<u32>,
}

impl Referenced {
    pub fn is_empty(&self) -> bool {
        self.functions.is_empty() && self.operators.is_empty() && self.types.is_empty()
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

/// Every function the referenced objects stand for, with what the gates need to know:
///
/// - the functions behind operators, and their selectivity estimators, which the planner calls;
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
/// large that it compiles the query with JIT, which costs a second.
const FUNCTIONS_SQL: &str = "\
WITH RECURSIVE
types(oid) AS (
    SELECT t FROM unnest($3::oid[]) AS t
  UNION
    SELECT v.next FROM types JOIN pg_catalog.pg_type ty ON ty.oid = types.oid,
      LATERAL (
          SELECT ty.typbasetype
        UNION ALL SELECT ty.typelem
        UNION ALL SELECT a.atttypid FROM pg_catalog.pg_attribute a
          WHERE a.attrelid = ty.typrelid AND a.attnum > 0 AND NOT a.attisdropped
        UNION ALL SELECT r.rngsubtype FROM pg_catalog.pg_range r WHERE r.rngtypid = ty.oid
        UNION ALL SELECT r.rngtypid FROM pg_catalog.pg_range r WHERE r.rngmultitypid = ty.oid
      ) AS v(next)
    WHERE v.next <> 0
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
    SELECT o FROM unnest($2::oid[]) AS o
  UNION
    SELECT ao.amopopr FROM default_families d
      JOIN pg_catalog.pg_amop ao ON ao.amopfamily = d.family
        AND ao.amoplefttype = d.type AND ao.amoprighttype = d.type
),
direct(oid) AS (
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
SELECT p.oid, n.nspname::text, p.proname::text, p.provolatile::text, c.nested,
  p.pronamespace IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
    OR EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
               WHERE d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
FROM called c
JOIN pg_catalog.pg_proc p ON p.oid = c.oid
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace";

/// How many times [`check_functions`] follows functions found in default arguments of functions found in
/// default arguments before refusing: real schemas need one or two.
const MAX_NESTING: usize = 8;

/// Catalog round trips, usually one: rejects the statement when anything it calls is on the deny-list, or, in
/// read-only mode, is VOLATILE and not on the allow-list.
pub async fn check_functions(
    client: &tokio_postgres::Client,
    referenced: &Referenced,
    policy: &GuardPolicy,
) -> Result<(), GuardError> {
    if referenced.is_empty() {
        return Ok(());
    }
    let as_vec = |set: &BTreeSet<u32>| set.iter().copied().collect::<Vec<u32>>();
    let (mut functions, mut operators, mut types) = (
        as_vec(&referenced.functions),
        as_vec(&referenced.operators),
        as_vec(&referenced.types),
    );
    let mut seen = BTreeSet::new();
    for _ in 0..MAX_NESTING {
        let rows = client
            .query_typed(
                FUNCTIONS_SQL,
                &[
                    (&functions, Type::OID_ARRAY),
                    (&operators, Type::OID_ARRAY),
                    (&types, Type::OID_ARRAY),
                ],
            )
            .await
            .map_err(|error| {
                GuardError::new(format!(
                    "could not check the statement's functions in the catalog: {}",
                    error
                        .as_db_error()
                        .map_or_else(|| error.to_string(), |db| db.message().to_owned())
                ))
            })?;
        let mut pending = BTreeSet::new();
        for row in &rows {
            let unexpected = || {
                GuardError::new("could not check the statement's functions: unexpected catalog row")
            };
            let oid: u32 = row.try_get(0).map_err(|_| unexpected())?;
            let schema: &str = row.try_get(1).map_err(|_| unexpected())?;
            let name: &str = row.try_get(2).map_err(|_| unexpected())?;
            let volatility: &str = row.try_get(3).map_err(|_| unexpected())?;
            let nested: Vec<u32> = row.try_get(4).map_err(|_| unexpected())?;
            let shipped: bool = row.try_get(5).map_err(|_| unexpected())?;
            judge(schema, name, volatility, shipped, policy)?;
            seen.insert(oid);
            pending.extend(nested);
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
    ))
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
) -> Result<(), GuardError> {
    if policy.denied_entry(Some(schema), name).is_some() {
        return Err(GuardError::new(format!(
            "function {schema}.{name} is not allowed: it can change server or session state, or reach outside \
             the database (PostgreSQL resolves the statement to a call of it)"
        )));
    }
    if !shipped && !policy.masks.is_empty() {
        return Err(GuardError::new(format!(
            "function {schema}.{name} is not allowed on a profile with masked columns: it was written in this \
             database, and pgmcp cannot see what its body reads, so it could hand a masked column's values out \
             unmasked (allow_volatile_functions does not lift this; only PostgreSQL's and installed extensions' \
             functions may be called here) (PostgreSQL resolves the statement to a call of it)"
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
             allow_volatile_functions = [\"{schema}.{name}\"] (PostgreSQL resolves the statement to a call of it)"
        )));
    }
    if policy.access_mode == AccessMode::ReadOnly
        && volatility == "v"
        && !policy.volatile_allowed(schema, name)
    {
        return Err(GuardError::new(format!(
            "function {schema}.{name} is VOLATILE and not allowed in read-only mode: it may change data or state; \
             only stable and immutable functions and allow-listed volatile ones may be called (PostgreSQL \
             resolves the statement to a call of it)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(judge("pg_catalog", "pg_terminate_backend", "v", true, &policy).is_err());
        assert!(judge("pg_catalog", "lower", "i", true, &policy).is_ok());
        assert!(judge("pg_catalog", "random", "v", true, &policy).is_ok());
        let volatile = judge("public", "bump", "v", false, &policy).expect_err("volatile");
        assert!(
            volatile.reason.contains("public.bump is VOLATILE"),
            "{}",
            volatile.reason
        );
        let written = judge("public", "calm", "s", false, &policy).expect_err("user-defined");
        assert!(
            written.reason.contains("written in this database"),
            "{}",
            written.reason
        );
        assert!(judge("extensions", "similarity", "i", true, &policy).is_ok());
        let trusting = GuardPolicy {
            allowed_volatile_functions: vec!["public.calm".into()],
            ..GuardPolicy::read_only()
        };
        assert!(judge("public", "calm", "s", false, &trusting).is_ok());
        let write = GuardPolicy::read_write(false);
        assert!(judge("public", "bump", "v", false, &write).is_ok());
        assert!(judge("pg_catalog", "set_config", "v", true, &write).is_err());
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
                judge("public", "email_of", "s", false, &policy).expect_err("written here");
            assert!(
                refused.reason.contains("profile with masked columns"),
                "{}",
                refused.reason
            );
            assert!(judge("pg_catalog", "lower", "i", true, &policy).is_ok());
            assert!(judge("extensions", "similarity", "i", true, &policy).is_ok());
        }
    }
}
