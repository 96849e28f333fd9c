//! The resolved-function check against a throwaway cluster holding the corpus fixtures: PostgreSQL resolves
//! each statement, and the check must see every function the resolution calls.

use std::sync::OnceLock;

use tokio_postgres::{Client, NoTls};

use super::corpus::parse_corpus;
use super::resolved::{
    CheckFailure, PRINT_TREES, PreparedQueries, check_functions, referenced_objects,
    stop_printing_trees,
};
use super::{GuardError, GuardPolicy, ToResolve, check, statement_that_runs};
use crate::db::session::{Notices, ResolvedTrees};
use crate::demo::cluster::TempCluster;

const ATTACKS: &str = include_str!("../../tests/corpus/attacks.sql");
const ALLOWED: &str = include_str!("../../tests/corpus/allowed.sql");

const FIXTURES: &str = "
CREATE TABLE public.canary (id int PRIMARY KEY, note text);
CREATE TABLE public.secrets (k text);
INSERT INTO public.canary VALUES (1, 'one'), (2, 'two');
INSERT INTO public.secrets VALUES ('one');
CREATE FUNCTION public.bump() RETURNS int LANGUAGE sql VOLATILE
    AS $$ INSERT INTO public.canary VALUES ((SELECT max(id) + 1 FROM public.canary), 'bumped') RETURNING id $$;
CREATE FUNCTION public.bump_row(canary) RETURNS int LANGUAGE sql VOLATILE AS 'SELECT public.bump()';
CREATE SCHEMA hidden;
CREATE FUNCTION hidden.sneaky() RETURNS int LANGUAGE sql VOLATILE AS 'SELECT 1';
CREATE FUNCTION hidden.calm() RETURNS int LANGUAGE sql STABLE AS 'SELECT 1';
CREATE FUNCTION public.noisy_eq(int, int) RETURNS bool LANGUAGE sql VOLATILE AS 'SELECT $1 = $2';
CREATE OPERATOR public.=== (LEFTARG = int, RIGHTARG = int, FUNCTION = public.noisy_eq);
CREATE FUNCTION public.int_to_canary(int) RETURNS text LANGUAGE sql VOLATILE AS 'SELECT public.bump()::text';
CREATE DOMAIN public.checked_int AS int CHECK (public.noisy_eq(VALUE, VALUE));
CREATE FUNCTION public.with_default(a int DEFAULT public.bump()) RETURNS int LANGUAGE sql STABLE AS 'SELECT $1';
CREATE VIEW public.bumping AS SELECT id, public.bump() AS bumped FROM public.canary;
CREATE VIEW public.calm_view AS SELECT id, hidden.calm() AS calm FROM public.canary;
CREATE TYPE public.ordered AS (n int);
CREATE FUNCTION public.ordered_cmp(public.ordered, public.ordered) RETURNS int LANGUAGE sql IMMUTABLE
    AS 'SELECT btint4cmp(($1).n, ($2).n)';
CREATE FUNCTION public.ordered_lt(public.ordered, public.ordered) RETURNS bool LANGUAGE sql IMMUTABLE
    AS 'SELECT ($1).n < ($2).n';
CREATE FUNCTION public.ordered_le(public.ordered, public.ordered) RETURNS bool LANGUAGE sql IMMUTABLE
    AS 'SELECT ($1).n <= ($2).n';
CREATE FUNCTION public.ordered_eq(public.ordered, public.ordered) RETURNS bool LANGUAGE sql IMMUTABLE
    AS 'SELECT ($1).n = ($2).n';
CREATE FUNCTION public.ordered_ge(public.ordered, public.ordered) RETURNS bool LANGUAGE sql IMMUTABLE
    AS 'SELECT ($1).n >= ($2).n';
CREATE FUNCTION public.ordered_gt(public.ordered, public.ordered) RETURNS bool LANGUAGE sql IMMUTABLE
    AS 'SELECT ($1).n > ($2).n';
CREATE OPERATOR public.< (LEFTARG = public.ordered, RIGHTARG = public.ordered, FUNCTION = public.ordered_lt);
CREATE OPERATOR public.<= (LEFTARG = public.ordered, RIGHTARG = public.ordered, FUNCTION = public.ordered_le);
CREATE OPERATOR public.= (LEFTARG = public.ordered, RIGHTARG = public.ordered, FUNCTION = public.ordered_eq);
CREATE OPERATOR public.>= (LEFTARG = public.ordered, RIGHTARG = public.ordered, FUNCTION = public.ordered_ge);
CREATE OPERATOR public.> (LEFTARG = public.ordered, RIGHTARG = public.ordered, FUNCTION = public.ordered_gt);
CREATE OPERATOR CLASS public.ordered_ops DEFAULT FOR TYPE public.ordered USING btree AS
    OPERATOR 1 public.<, OPERATOR 2 public.<=, OPERATOR 3 public.=, OPERATOR 4 public.>=, OPERATOR 5 public.>,
    FUNCTION 1 public.ordered_cmp(public.ordered, public.ordered);
CREATE TYPE public.holder AS (o public.ordered);
CREATE FUNCTION public.noisy_diff(float8, float8) RETURNS float8 LANGUAGE sql IMMUTABLE AS 'SELECT $1 - $2';
CREATE TYPE public.noisy_range AS RANGE (subtype = float8, subtype_diff = public.noisy_diff);
CREATE TYPE public.mood AS ENUM ('calm', 'noisy');
CREATE FUNCTION public.mood_json(public.mood) RETURNS json LANGUAGE sql IMMUTABLE AS 'SELECT to_json($1::text)';
CREATE CAST (public.mood AS json) WITH FUNCTION public.mood_json(public.mood);
CREATE FUNCTION public.noisy_ne(int, int) RETURNS bool LANGUAGE sql IMMUTABLE AS 'SELECT $1 <> $2';
CREATE OPERATOR public.!== (LEFTARG = int, RIGHTARG = int, FUNCTION = public.noisy_ne);
CREATE OPERATOR public.==== (LEFTARG = int, RIGHTARG = int, FUNCTION = pg_catalog.int4eq,
    NEGATOR = OPERATOR(public.!==), RESTRICT = eqsel);
CREATE FUNCTION public.noisy_gt(int, int) RETURNS bool LANGUAGE sql IMMUTABLE AS 'SELECT $1 > $2';
CREATE OPERATOR public.>>>> (LEFTARG = int, RIGHTARG = int, FUNCTION = public.noisy_gt);
CREATE OPERATOR public.<<<< (LEFTARG = int, RIGHTARG = int, FUNCTION = pg_catalog.int4lt,
    COMMUTATOR = OPERATOR(public.>>>>), RESTRICT = scalarltsel);
CREATE FUNCTION public.index_const() RETURNS int LANGUAGE plpgsql IMMUTABLE AS 'BEGIN RETURN 1; END';
CREATE FUNCTION public.predicate_const() RETURNS int LANGUAGE plpgsql IMMUTABLE AS 'BEGIN RETURN 1; END';
CREATE FUNCTION public.statistics_const() RETURNS int LANGUAGE plpgsql IMMUTABLE AS 'BEGIN RETURN 1; END';
CREATE FUNCTION public.partition_const() RETURNS int LANGUAGE plpgsql IMMUTABLE AS 'BEGIN RETURN 1; END';
CREATE FUNCTION public.check_const() RETURNS int LANGUAGE plpgsql IMMUTABLE AS 'BEGIN RETURN 1; END';
CREATE FUNCTION public.child_const() RETURNS int LANGUAGE plpgsql IMMUTABLE AS 'BEGIN RETURN 1; END';
CREATE FUNCTION public.inlined_sum(int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT $1 + 0';
CREATE FUNCTION public.column_norm(int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS 'BEGIN RETURN $1; END';
CREATE TABLE public.indexed (a int, b int);
CREATE INDEX ON public.indexed ((a + public.index_const()));
CREATE TABLE public.partial (a int);
CREATE INDEX ON public.partial (a) WHERE a > public.predicate_const();
CREATE TABLE public.estimated (a int, b int);
CREATE STATISTICS public.estimated_stats ON (a * public.statistics_const()), b FROM public.estimated;
CREATE TABLE public.parted (a int) PARTITION BY RANGE ((a + public.partition_const()));
CREATE TABLE public.parted_low PARTITION OF public.parted FOR VALUES FROM (0) TO (100);
CREATE TABLE public.checked (a int CHECK (a + public.check_const() > 0));
CREATE TABLE public.inlining (a int CHECK (public.inlined_sum(a) > 0));
CREATE TABLE public.parent (a int);
CREATE TABLE public.child (CHECK (a > public.child_const())) INHERITS (public.parent);
CREATE TABLE public.normalised (a int CHECK (public.column_norm(a) > 0));
CREATE INDEX ON public.normalised (public.column_norm(a));
CREATE TYPE public.keyed AS (n int);
CREATE FUNCTION public.keyed_cmp(public.keyed, public.keyed) RETURNS int LANGUAGE sql IMMUTABLE
    AS 'SELECT btint4cmp(($1).n, ($2).n)';
CREATE FUNCTION public.keyed_eq(public.keyed, public.keyed) RETURNS bool LANGUAGE sql IMMUTABLE
    AS 'SELECT ($1).n = ($2).n';
CREATE OPERATOR public.= (LEFTARG = public.keyed, RIGHTARG = public.keyed, FUNCTION = public.keyed_eq);
CREATE OPERATOR CLASS public.keyed_ops FOR TYPE public.keyed USING btree AS
    OPERATOR 3 public.=, FUNCTION 1 public.keyed_cmp(public.keyed, public.keyed);
CREATE TABLE public.listed (k public.keyed) PARTITION BY LIST (k public.keyed_ops);
CREATE TABLE public.listed_odd PARTITION OF public.listed FOR VALUES IN ('(1)', '(3)');
CREATE TABLE public.listed_even PARTITION OF public.listed FOR VALUES IN ('(2)', '(4)');
CREATE TABLE public.greatest_indexed (a int);
CREATE INDEX ON public.greatest_indexed (a) WHERE (GREATEST('(1)'::public.ordered, '(2)'::public.ordered)).n > 0;
CREATE TABLE public.greatest_only (a int);
CREATE INDEX ON public.greatest_only (a) WHERE GREATEST('(1)'::public.ordered, '(2)'::public.ordered) IS NOT NULL;
CREATE EXTENSION postgres_fdw;
CREATE SERVER elsewhere FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host '127.0.0.1', dbname 'postgres');
CREATE USER MAPPING FOR CURRENT_USER SERVER elsewhere;
CREATE FOREIGN TABLE public.remote_items (id int) SERVER elsewhere OPTIONS (table_name 'canary');
CREATE TABLE public.mixed (id int) PARTITION BY LIST (id);
CREATE TABLE public.mixed_local PARTITION OF public.mixed FOR VALUES IN (2);
CREATE FOREIGN TABLE public.mixed_remote PARTITION OF public.mixed FOR VALUES IN (1)
    SERVER elsewhere OPTIONS (table_name 'canary');
";

/// One cluster for every test here; the demo module's reaper removes it when the test binary exits.
fn cluster() -> &'static TempCluster {
    static CLUSTER: OnceLock<TempCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let cluster = TempCluster::start(&Default::default()).expect("start throwaway cluster");
        cluster.psql("postgres", FIXTURES).expect("create fixtures");
        cluster
    })
}

/// A connection as a pool hands it out: the client, its notices and its prepared catalog queries, which the checks
/// use when `queries_prepared` says so (as pgmcp does unless the profile keeps no prepared statements).
struct Connection {
    client: Client,
    notices: Notices,
    queries: PreparedQueries,
    queries_prepared: bool,
}

async fn connect() -> Connection {
    let (client, connection) = tokio_postgres::connect(&cluster().url("postgres"), NoTls)
        .await
        .expect("connect");
    let connected = crate::db::connect::drive(client, connection, "test".into());
    Connection {
        client: connected.client,
        notices: connected.notices,
        queries: PreparedQueries::default(),
        queries_prepared: true,
    }
}

/// The resolved check as pgmcp runs it, in a read-only transaction that is rolled back. `Ok(Err(_))` is a
/// refusal by the check; `Err(_)` is PostgreSQL refusing to parse.
async fn resolve(
    connection: &Connection,
    sql: &str,
    policy: &GuardPolicy,
) -> Result<Result<(), GuardError>, tokio_postgres::Error> {
    Ok(resolve_once(connection, sql, policy)
        .await?
        .map_err(|failure| match failure {
            CheckFailure::Refused(error) => error,
            CheckFailure::QueryGone => panic!("{sql}: a catalog query went missing"),
        }))
}

async fn resolve_once(
    connection: &Connection,
    sql: &str,
    policy: &GuardPolicy,
) -> Result<Result<(), CheckFailure>, tokio_postgres::Error> {
    let Connection {
        client,
        notices,
        queries,
        queries_prepared,
    } = connection;
    // What pgmcp resolves: the statement itself, or the statement inside EXPLAIN.
    let target = match check(sql, policy).map(|verdict| statement_that_runs(sql, verdict.class)) {
        Ok(Ok(ToResolve::Inner(inner))) => inner,
        _ => sql.to_string(),
    };
    client.batch_execute("BEGIN READ ONLY").await?;
    client.batch_execute(PRINT_TREES).await?;
    notices.listen();
    let prepared = client.prepare(&target).await;
    let trees = notices.take();
    let outcome = match prepared {
        Ok(_) => {
            let ResolvedTrees::Trees(trees) = trees else {
                panic!("tree too large: {sql}")
            };
            assert!(!trees.is_empty(), "no tree printed for {sql}");
            match super::resolved::parse_trees(&trees).and_then(|trees| referenced_objects(&trees))
            {
                Ok(referenced) => {
                    client
                        .batch_execute(stop_printing_trees(*queries_prepared))
                        .await?;
                    let queries = queries_prepared.then_some(queries);
                    Ok(check_functions(client, &referenced, policy, queries).await)
                }
                Err(error) => Ok(Err(error.into())),
            }
        }
        Err(error) => Err(error),
    };
    client.batch_execute("ROLLBACK").await?;
    outcome
}

/// The read-only defaults, also trusting one function written in the database.
fn trusting(function: &str) -> GuardPolicy {
    let mut policy = GuardPolicy::read_only();
    policy.allowed_volatile_functions.push(function.into());
    policy
}

async fn refusal(sql: &str, policy: &GuardPolicy) -> String {
    resolve(&connect().await, sql, policy)
        .await
        .unwrap_or_else(|error| panic!("{sql} does not parse: {error}"))
        .expect_err(sql)
        .reason
}

async fn passes(sql: &str, policy: &GuardPolicy) {
    if let Err(error) = resolve(&connect().await, sql, policy)
        .await
        .unwrap_or_else(|error| panic!("{sql} does not parse: {error}"))
    {
        panic!("{sql} refused: {error}");
    }
}

/// `sql` is refused in read-only mode for calling a function written in the database whose `schema.name` matches
/// `function` (a name, or a beginning followed by `*`), and passes once the profile trusts `function`.
async fn refused_until_trusted(sql: &str, function: &str) {
    let reason = refusal(sql, &GuardPolicy::read_only()).await;
    let named = reason
        .strip_prefix("function ")
        .and_then(|rest| {
            rest.split_once(" is not allowed in read-only mode: it was written in this database")
        })
        .map(|(name, _)| name);
    let matches = |name: &str| match function.strip_suffix('*') {
        Some(start) => name.starts_with(start),
        None => name == function,
    };
    assert!(named.is_some_and(matches), "{sql}: {reason}");
    passes(sql, &trusting(function)).await;
}

#[tokio::test]
async fn needs_db_attacks_are_rejected_and_allowed_statements_pass() {
    let policy = GuardPolicy::read_only();
    let mut failures = Vec::new();
    // Both ways pgmcp sends its catalog queries: bound to the connection's prepared statements (run with a
    // generic plan), and as text behind a transaction-pooling proxy.
    for prepared in [true, false] {
        let connection = Connection {
            queries_prepared: prepared,
            ..connect().await
        };
        let how = if prepared { "prepared" } else { "as text" };
        for entry in parse_corpus(ATTACKS).iter().filter(|entry| entry.needs_db) {
            check(&entry.sql, &policy).unwrap_or_else(|error| panic!("{}: {error}", entry.sql));
            match resolve(&connection, &entry.sql, &policy).await {
                Ok(Err(_)) => {}
                Ok(Ok(())) => failures.push(format!(
                    "attack at line {} passed ({how}): {}",
                    entry.line, entry.sql
                )),
                Err(error) => failures.push(format!(
                    "attack at line {} does not parse: {error}",
                    entry.line
                )),
            }
        }
        for entry in parse_corpus(ALLOWED) {
            check(&entry.sql, &policy).unwrap_or_else(|error| panic!("{}: {error}", entry.sql));
            match resolve(&connection, &entry.sql, &policy).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => failures.push(format!(
                    "allowed at line {} rejected ({how}): {error}",
                    entry.line
                )),
                Err(error) => failures.push(format!(
                    "allowed at line {} fails in PostgreSQL: {error}",
                    entry.line
                )),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A catalog query the connection prepared can be removed (`DEALLOCATE ALL` in a function the profile trusts).
/// The check then says so instead of refusing, nothing having been judged, and checks again once its queries are
/// forgotten and prepared afresh.
#[tokio::test]
async fn a_catalog_query_gone_is_reported_and_prepared_again() {
    let connection = connect().await;
    let policy = GuardPolicy::read_only();
    let field_selection = "SELECT (-1).pg_terminate_backend";
    let refused = |outcome: Result<Result<(), CheckFailure>, _>| {
        matches!(outcome, Ok(Err(CheckFailure::Refused(_))))
    };
    assert!(refused(
        resolve_once(&connection, field_selection, &policy).await
    ));
    connection
        .client
        .batch_execute("DEALLOCATE ALL")
        .await
        .expect("deallocate");
    assert_eq!(
        resolve_once(&connection, field_selection, &policy)
            .await
            .expect("parses"),
        Err(CheckFailure::QueryGone)
    );
    connection.queries.forget();
    assert!(refused(
        resolve_once(&connection, field_selection, &policy).await
    ));
    resolve(&connection, "SELECT lower('A') = 'a'", &policy)
        .await
        .expect("parses")
        .expect("PostgreSQL's own functions pass");
}

#[tokio::test]
async fn every_call_syntax_resolves_to_the_function_it_calls() {
    let policy = GuardPolicy::read_only();
    for sql in [
        "SELECT (12345).pg_terminate_backend",
        "SELECT (ARRAY[12345])[1].pg_cancel_backend",
        "SELECT (v.p).pg_terminate_backend FROM (VALUES (12345)) v(p)",
        "SELECT (1::bigint).pg_advisory_lock",
        "SELECT CASE WHEN true THEN (7::bigint).pg_advisory_lock END",
        "SELECT (SELECT 7::bigint).pg_advisory_lock",
        "SELECT (ROW(7::bigint)).f1.pg_advisory_lock",
        "SELECT 1 WHERE (7::bigint).pg_try_advisory_lock",
        "SELECT ('/etc/passwd'::text).pg_read_file",
    ] {
        let reason = refusal(sql, &policy).await;
        assert!(reason.contains("is not allowed"), "{sql}: {reason}");
        assert!(
            reason.contains("pg_catalog.pg_"),
            "{sql} names the function: {reason}"
        );
    }
    for (sql, function) in [
        ("SELECT c.bump_row FROM canary c", "public.bump_row"),
        ("SELECT 1 === 1", "public.noisy_eq"),
        ("SELECT 1 FROM canary WHERE id === 1", "public.noisy_eq"),
        ("SELECT 1::public.checked_int", "public.noisy_eq"),
        ("SELECT public.with_default()", "public.with_default"),
        ("SELECT * FROM bumping", "public.bump"),
        (
            "SELECT count(*) FROM (SELECT bumped FROM bumping) s",
            "public.bump",
        ),
    ] {
        let reason = refusal(sql, &policy).await;
        assert!(
            reason.starts_with(&format!("function {function} is VOLATILE"))
                || reason.starts_with(&format!(
                    "function {function} is not allowed in read-only mode: it was written in this database"
                )),
            "{sql}: {reason}"
        );
    }
    // Trusting the function itself does not trust what its default argument calls.
    let reason = refusal(
        "SELECT public.with_default()",
        &trusting("public.with_default"),
    )
    .await;
    assert!(
        reason.starts_with("function public.bump is VOLATILE"),
        "{reason}"
    );
}

#[tokio::test]
async fn stable_views_operators_and_casts_pass() {
    // A function written in the database is trusted only when the profile says so.
    let reason = refusal("SELECT * FROM calm_view", &GuardPolicy::read_only()).await;
    assert!(
        reason.starts_with(
            "function hidden.calm is not allowed in read-only mode: it was written in this database"
        ),
        "{reason}"
    );
    let policy = trusting("hidden.calm");
    for sql in [
        "SELECT * FROM calm_view",
        "SELECT id FROM canary WHERE id = 1 ORDER BY note",
        "SELECT count(*), string_agg(note, ',') FROM canary",
        "SELECT '2024-01-01'::date + 1, 'canary'::regclass::text",
        "SELECT random(), now()",
    ] {
        passes(sql, &policy).await;
    }
}

#[tokio::test]
async fn unqualified_names_resolve_through_the_search_path() {
    let policy = trusting("hidden.calm");
    let connection = connect().await;
    // Not on the search_path: PostgreSQL reports it as unknown before anything runs.
    assert!(
        resolve(&connection, "SELECT sneaky()", &policy)
            .await
            .is_err()
    );
    connection
        .client
        .batch_execute("SET search_path = public, hidden")
        .await
        .expect("set search_path");
    let refused = resolve(&connection, "SELECT sneaky()", &policy)
        .await
        .expect("parses")
        .expect_err("volatile through the search_path");
    assert!(
        refused
            .reason
            .starts_with("function hidden.sneaky is VOLATILE"),
        "{refused}"
    );
    resolve(&connection, "SELECT calm(), lower('A')", &policy)
        .await
        .expect("parses")
        .expect("stable and immutable pass");
}

#[tokio::test]
async fn allow_list_and_read_write_mode() {
    let allowing = GuardPolicy {
        allowed_volatile_functions: vec!["public.bump".into(), "hidden.*".into()],
        ..GuardPolicy::read_only()
    };
    passes("SELECT bump(), hidden.sneaky()", &allowing).await;
    // The replaced allow-list no longer names random.
    let reason = refusal("SELECT random()", &allowing).await;
    assert!(
        reason.starts_with("function pg_catalog.random is VOLATILE"),
        "{reason}"
    );
    // Read-write mode does not restrict volatility, but the deny-list still holds whatever the syntax.
    let write = GuardPolicy::read_write(false);
    passes("SELECT bump()", &write).await;
    let reason = refusal("SELECT (1).pg_terminate_backend", &write).await;
    assert!(
        reason.starts_with("function pg_catalog.pg_terminate_backend is not allowed"),
        "{reason}"
    );
    let reason = refusal(
        "UPDATE pg_settings SET setting = 'x' WHERE name = 'work_mem'",
        &write,
    )
    .await;
    assert!(
        reason.starts_with("function pg_catalog.set_config is not allowed"),
        "{reason}"
    );
}

/// A type's operator class is a way to call functions that no tree names: PostgreSQL looks up the comparison,
/// equality and hashing of a type by the type when it computes `GREATEST`, compares arrays or rows holding it, or
/// searches an array, and a range's difference function when it estimates a range operator. Functions written in
/// the database and reached that way meet the same gates as any other.
#[tokio::test]
async fn functions_an_operator_class_runs_are_checked() {
    for sql in [
        "SELECT GREATEST(ROW(1)::ordered, ROW(2)::ordered)",
        "SELECT LEAST(ROW(1)::ordered, ROW(2)::ordered)",
        "SELECT ARRAY[ROW(1)::ordered] < ARRAY[ROW(2)::ordered]",
        "SELECT array_position(ARRAY[ROW(1)::ordered], ROW(1)::ordered)",
        "SELECT ROW(ROW(1)::ordered)::holder = ROW(ROW(2)::ordered)::holder",
        "SELECT count(DISTINCT ARRAY[x]) FROM (VALUES (ROW(1)::ordered), (ROW(2)::ordered)) AS v(x)",
        "SELECT r FROM (VALUES (ROW(ROW(1)::ordered)::holder)) AS v(r) ORDER BY r",
    ] {
        refused_until_trusted(sql, "public.ordered_*").await;
    }
    refused_until_trusted(
        "SELECT numrange(1, 2), '[1,2]'::noisy_range && '[2,3]'::noisy_range",
        "public.noisy_diff",
    )
    .await;
    // PostgreSQL's own types reach only PostgreSQL's own classes.
    passes(
        "SELECT GREATEST(1, 2), ARRAY[note] < ARRAY['x'], array_position(ARRAY[id], 1), \
         ROW(id, note) = ROW(1, 'one'), '[1,2]'::int4range && '[2,3]'::int4range \
         FROM canary ORDER BY note",
        &GuardPolicy::read_only(),
    )
    .await;
}

/// PostgreSQL's JSON functions turn a value of a type of the database's own into JSON through that type's cast to
/// `json` when it has one, found by the type: `to_json`, `to_jsonb`, `json_build_object`, `row_to_json` and the
/// JSON aggregates call it, and no tree names it. It meets the same gates as any other function.
#[tokio::test]
async fn a_types_cast_to_json_is_checked() {
    for sql in [
        "SELECT to_json('calm'::mood)",
        "SELECT to_jsonb('calm'::mood)",
        "SELECT json_build_object('m', 'calm'::mood)",
        "SELECT row_to_json(ROW('calm'::mood))",
        "SELECT json_agg(m) FROM (VALUES ('calm'::mood)) AS v(m)",
    ] {
        refused_until_trusted(sql, "public.mood_json").await;
    }
    passes(
        "SELECT to_json(note), to_jsonb(id), json_agg(c) FROM canary AS c GROUP BY note, id",
        &GuardPolicy::read_only(),
    )
    .await;
}

/// The planner puts an operator's negator in its place (`NOT (a ==== b)` runs `!==`), and estimates `3 <<<< x` with
/// the commutator `>>>>` on the column's histogram: functions no tree names, behind an operator whose own function
/// is PostgreSQL's.
#[tokio::test]
async fn an_operators_commutator_and_negator_are_checked() {
    refused_until_trusted(
        "SELECT count(*) FROM canary WHERE NOT (id ==== 1)",
        "public.noisy_ne",
    )
    .await;
    refused_until_trusted(
        "SELECT count(*) FROM canary WHERE 3 <<<< id",
        "public.noisy_gt",
    )
    .await;
    // The same forms with PostgreSQL's own operators.
    passes(
        "SELECT count(*) FROM canary WHERE NOT (id = 1) AND 3 < id",
        &GuardPolicy::read_only(),
    )
    .await;
}

/// The planner reads a table's index expressions and predicates, extended statistics expressions, partition key
/// and CHECK constraints (those of the tables inheriting from it too) and simplifies them, which calls an
/// IMMUTABLE function whose arguments are constants and inlines a function written in SQL, and sorts its
/// partitions' bounds with its key's operator class: `SELECT * FROM t` can run a function written in the database
/// that no tree of the statement shows.
#[tokio::test]
async fn functions_the_planner_runs_for_a_table_are_checked() {
    for (sql, function) in [
        ("SELECT * FROM indexed", "public.index_const"),
        ("SELECT * FROM partial", "public.predicate_const"),
        ("SELECT * FROM estimated", "public.statistics_const"),
        ("SELECT * FROM parted", "public.partition_const"),
        // A CHECK constraint is simplified for constraint exclusion: a UNION ALL member's, a child's, or any
        // table's when the database sets `constraint_exclusion = on`.
        (
            "SELECT * FROM (SELECT * FROM checked UNION ALL SELECT * FROM checked) AS u WHERE a = 1",
            "public.check_const",
        ),
        ("SELECT * FROM inlining", "public.inlined_sum"),
        ("SELECT * FROM parent WHERE a = 1", "public.child_const"),
        // PostgreSQL sorts a partitioned table's bounds with its key's operator class when it loads the table.
        ("SELECT * FROM listed", "public.keyed_*"),
        // Simplifying `GREATEST` of two constants compares them with their type's operator class.
        ("SELECT * FROM greatest_indexed", "public.ordered_*"),
        // The same with no call of a function anywhere in the predicate.
        ("SELECT * FROM greatest_only", "public.ordered_*"),
        (
            "SELECT count(*) FROM canary JOIN (SELECT * FROM indexed) AS i ON i.a = canary.id",
            "public.index_const",
        ),
    ] {
        refused_until_trusted(sql, function).await;
    }
    let reason = refusal("SELECT * FROM parent", &GuardPolicy::read_only()).await;
    assert!(
        reason.contains("planner may call it") && reason.contains("CHECK constraint of child"),
        "{reason}"
    );
    // A function written in the database that the planner never calls: it is given a column.
    passes(
        "SELECT a FROM normalised WHERE a = 1",
        &GuardPolicy::read_only(),
    )
    .await;
}

/// Reading a foreign table runs a query on its server, where a view or function may take a lock, signal a session
/// or write, and nothing pgmcp checks can see it: read-only mode refuses foreign tables, partitions included, until
/// the profile trusts them by name.
#[tokio::test]
async fn foreign_tables_are_refused_in_read_only_mode_until_trusted() {
    let cases = [
        ("SELECT * FROM remote_items", "public.remote_items"),
        (
            "SELECT count(*) FROM canary WHERE id IN (SELECT id FROM remote_items)",
            "public.remote_items",
        ),
        ("SELECT * FROM mixed", "public.mixed_remote"),
    ];
    for (sql, table) in cases {
        let reason = refusal(sql, &GuardPolicy::read_only()).await;
        assert!(
            reason.starts_with(&format!(
                "foreign table {table} is not allowed in read-only mode: reading it runs a query on server elsewhere"
            )),
            "{sql}: {reason}"
        );
    }
    let trusting = GuardPolicy {
        allowed_foreign_tables: vec!["public.remote_items".into(), "public.mixed_*".into()],
        ..GuardPolicy::read_only()
    };
    for (sql, _) in cases {
        passes(sql, &trusting).await;
    }
    // Trusting one foreign table trusts no other.
    let one = GuardPolicy {
        allowed_foreign_tables: vec!["public.remote_items".into()],
        ..GuardPolicy::read_only()
    };
    let reason = refusal("SELECT * FROM mixed", &one).await;
    assert!(reason.contains("public.mixed_remote"), "{reason}");
    // A profile that may write reaches its foreign tables as it reaches its own.
    passes("SELECT * FROM mixed", &GuardPolicy::read_write(false)).await;
    // A local partition on its own is a local table.
    passes("SELECT * FROM mixed_local", &GuardPolicy::read_only()).await;
}
