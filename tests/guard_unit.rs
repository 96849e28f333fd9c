//! The guard's parse-only stage: corpus replay and classification per access mode. No database needed.

use pgmcp::config::AccessMode;
use pgmcp::guard::corpus::parse_corpus;
use pgmcp::guard::{FunctionRef, GuardPolicy, StatementClass, check};

const ATTACKS: &str = include_str!("corpus/attacks.sql");
const ALLOWED: &str = include_str!("corpus/allowed.sql");

fn read_only() -> GuardPolicy {
    GuardPolicy::read_only()
}

fn reason(sql: &str, policy: &GuardPolicy) -> String {
    match check(sql, policy) {
        Ok(verdict) => panic!("expected rejection of {sql:?}, got {verdict:?}"),
        Err(error) => error.reason,
    }
}

fn class(sql: &str, policy: &GuardPolicy) -> StatementClass {
    match check(sql, policy) {
        Ok(verdict) => verdict.class,
        Err(error) => panic!("expected {sql:?} to pass, got: {}", error.reason),
    }
}

#[test]
fn corpus_attacks_are_rejected_without_a_database() {
    let entries = parse_corpus(ATTACKS);
    assert!(entries.len() >= 70, "only {} attacks", entries.len());
    let policy = read_only();
    let mut failures = Vec::new();
    for entry in &entries {
        let outcome = check(&entry.sql, &policy);
        match (entry.needs_db, outcome) {
            (false, Ok(verdict)) => failures.push(format!(
                "line {} ({}) passed check: {:?} → {verdict:?}",
                entry.line, entry.why, entry.sql
            )),
            // `-- needs-db` must be honest: check lets it through and leaves the call for check_volatility.
            (true, Ok(verdict)) if verdict.functions.is_empty() => failures.push(format!(
                "line {} ({}) is marked needs-db but calls no function",
                entry.line, entry.why
            )),
            (true, Err(error)) => failures.push(format!(
                "line {} ({}) is marked needs-db but check rejects it: {error}",
                entry.line, entry.why
            )),
            _ => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn corpus_allowed_statements_pass() {
    let entries = parse_corpus(ALLOWED);
    assert!(entries.len() >= 30);
    let policy = read_only();
    let failures: Vec<String> = entries
        .iter()
        .filter_map(|entry| {
            check(&entry.sql, &policy).err().map(|error| {
                format!(
                    "line {} ({}): {:?} → {error}",
                    entry.line, entry.why, entry.sql
                )
            })
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn read_only_classes() {
    let policy = read_only();
    assert_eq!(class("SELECT 1", &policy), StatementClass::Read);
    assert_eq!(class("VALUES (1)", &policy), StatementClass::Read);
    assert_eq!(class("TABLE canary", &policy), StatementClass::Read);
    assert_eq!(
        class("WITH x AS (SELECT 1) SELECT * FROM x", &policy),
        StatementClass::Read
    );
    assert_eq!(class("SHOW work_mem", &policy), StatementClass::Show);
    assert_eq!(
        class("EXPLAIN SELECT 1", &policy),
        StatementClass::Explain { analyze: false }
    );
    assert_eq!(
        class("EXPLAIN ANALYZE SELECT 1", &policy),
        StatementClass::Explain { analyze: true }
    );
    assert_eq!(
        class("EXPLAIN (ANALYZE off) SELECT 1", &policy),
        StatementClass::Explain { analyze: false }
    );
    assert_eq!(
        class("EXPLAIN (ANALYZE 1, BUFFERS) SELECT 1", &policy),
        StatementClass::Explain { analyze: true }
    );
}

#[test]
fn read_only_rejections_say_what_was_found_and_what_is_allowed() {
    let policy = read_only();
    assert_eq!(
        reason("UPDATE canary SET note = 'x'", &policy),
        "UPDATE is not allowed in read-only mode: only SELECT, VALUES, TABLE, WITH (read-only), SHOW and EXPLAIN are allowed"
    );
    assert!(reason("COMMIT", &policy).starts_with("COMMIT is not allowed in read-only mode"));
    assert!(reason("SET ROLE postgres", &policy).starts_with("SET ROLE is not allowed"));
    assert!(reason("RESET ALL", &policy).starts_with("RESET ALL is not allowed"));
    assert!(reason("SELECT 1 INTO t", &policy).starts_with("SELECT INTO is not allowed"));
    assert!(reason("VACUUM", &policy).starts_with("VACUUM is not allowed"));
    assert!(reason("ANALYZE", &policy).starts_with("ANALYZE is not allowed"));
    assert!(reason("MOVE c", &policy).starts_with("MOVE is not allowed"));
    assert!(reason("CREATE SEQUENCE s", &policy).starts_with("CREATE SEQUENCE is not allowed"));
    assert!(
        reason("DROP FOREIGN TABLE f", &policy).starts_with("DROP FOREIGN TABLE is not allowed")
    );
    assert!(
        reason("EXPLAIN ANALYZE DELETE FROM t", &policy).starts_with(
            "EXPLAIN ANALYZE of DELETE is not allowed in read-only mode: ANALYZE executes"
        )
    );
    assert!(
        reason("CREATE PUBLICATION p FOR ALL TABLES", &policy)
            .starts_with("CREATE PUBLICATION is not allowed")
    );
    assert!(
        reason("WITH d AS (DELETE FROM t RETURNING 1) SELECT 1", &policy)
            .starts_with("a data-modifying WITH (DELETE inside WITH) is not allowed")
    );
    assert!(reason("SELECT * FROM t FOR UPDATE", &policy).contains("row locking"));
    assert!(reason("EXPLAIN DELETE FROM t", &policy).contains("even without ANALYZE"));
}

#[test]
fn parse_errors_carry_postgres_message() {
    let text = reason("SELEC 1", &read_only());
    assert!(text.contains("syntax error at or near \"SELEC\""), "{text}");
}

#[test]
fn empty_input_and_multiple_statements_are_rejected() {
    let policy = read_only();
    assert!(reason("", &policy).starts_with("empty statement"));
    assert!(reason("  -- just a comment", &policy).starts_with("empty statement"));
    assert!(reason(";;", &policy).starts_with("empty statement"));
    assert_eq!(
        reason("SELECT 1; SELECT 2; SELECT 3", &policy),
        "exactly one statement per call: found 3"
    );
    assert!(reason("SELECT '\0'", &policy).contains("NUL"));
}

#[test]
fn denied_function_reason() {
    assert_eq!(
        reason(
            "SELECT pg_catalog.set_config('a.b', 'c', false)",
            &read_only()
        ),
        "function pg_catalog.set_config is not allowed: it can change server or session state, or reach outside the database"
    );
}

#[test]
fn functions_are_collected_once_from_everywhere() {
    let sql = "WITH c AS (SELECT lower(note) AS l FROM canary) \
               SELECT upper(l), lower(l), public.bump(), \"MixedCase\"() \
               FROM c, LATERAL generate_series(1, 2) g \
               WHERE length(l) > (SELECT max(id) FROM canary) \
               ORDER BY abs(g)";
    let verdict = check(sql, &read_only()).expect("allowed");
    let mut names: Vec<String> = verdict.functions.iter().map(ToString::to_string).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "MixedCase",
            "abs",
            "generate_series",
            "length",
            "lower",
            "max",
            "public.bump",
            "upper"
        ]
    );
    assert!(verdict.functions.contains(&FunctionRef {
        schema: Some("public".into()),
        name: "bump".into()
    }));
}

#[test]
fn three_part_names_keep_the_schema() {
    let verdict = check("SELECT db.pg_catalog.lower('A')", &read_only()).expect("allowed");
    assert_eq!(verdict.functions[0].schema.as_deref(), Some("pg_catalog"));
    assert!(
        check(
            "SELECT db.pg_catalog.set_config('a', 'b', false)",
            &read_only()
        )
        .is_err()
    );
}

#[test]
fn custom_deny_list_entries() {
    let policy = GuardPolicy {
        denied_functions: vec!["public.bump".into(), "my_*".into()],
        ..GuardPolicy::read_only()
    };
    assert!(reason("SELECT bump()", &policy).starts_with("function bump is not allowed"));
    assert!(
        reason("SELECT public.bump()", &policy).starts_with("function public.bump is not allowed")
    );
    assert!(check("SELECT other.bump()", &policy).is_ok());
    assert!(reason("SELECT my_thing(1)", &policy).starts_with("function my_thing is not allowed"));
    // Field selection and attribute notation name the function too.
    assert!(reason("SELECT (1).my_thing", &policy).starts_with("function my_thing is not allowed"));
    assert!(
        reason("SELECT t.my_thing FROM t", &policy).starts_with("function my_thing is not allowed")
    );
    assert!(
        reason("SELECT (x)[1].my_thing FROM t", &policy)
            .starts_with("function my_thing is not allowed")
    );
    // The first part of a column reference is a table or column, never a call; a string in a subscript is data.
    assert!(check("SELECT my_table.id FROM my_table", &policy).is_ok());
    assert!(check("SELECT (x)['my_key'] FROM t", &policy).is_ok());
    // The replaced list no longer has set_config: the deny-list is the policy's, not hard-coded.
    assert!(check("SELECT set_config('a.b', 'c', false)", &policy).is_ok());
}

#[test]
fn read_write_allows_dml_but_not_session_or_transaction_control() {
    let policy = GuardPolicy::read_write(false);
    for sql in [
        "INSERT INTO canary VALUES (1, 'x')",
        "UPDATE canary SET note = 'y' WHERE id = 1",
        "DELETE FROM canary WHERE id = 1",
        "MERGE INTO canary c USING (VALUES (1)) v(id) ON c.id = v.id WHEN MATCHED THEN DELETE",
        "WITH d AS (DELETE FROM canary RETURNING *) SELECT * FROM d",
        "WITH x AS (SELECT 1) INSERT INTO canary SELECT 2, 'z' FROM x",
        "SELECT * FROM canary FOR UPDATE",
        "INSERT INTO canary VALUES (nextval('s'), 'seq')",
    ] {
        assert_eq!(class(sql, &policy), StatementClass::Write, "{sql}");
    }
    assert_eq!(class("SELECT 1", &policy), StatementClass::Read);
    assert_eq!(
        class("EXPLAIN DELETE FROM canary", &policy),
        StatementClass::Explain { analyze: false }
    );
    assert!(reason("EXPLAIN ANALYZE DELETE FROM canary", &policy).contains("ANALYZE executes"));
    for (sql, expected) in [
        ("COMMIT", "COMMIT is not allowed"),
        ("BEGIN", "BEGIN is not allowed"),
        ("SET search_path = x", "SET SEARCH_PATH is not allowed"),
        ("SET ROLE postgres", "SET ROLE is not allowed"),
        ("COPY canary FROM STDIN", "COPY is not allowed"),
        ("DO $$ BEGIN END $$", "DO is not allowed"),
        ("CALL p()", "CALL is not allowed"),
        ("LISTEN x", "LISTEN is not allowed"),
        ("PREPARE p AS SELECT 1", "PREPARE is not allowed"),
        ("VACUUM", "VACUUM is not allowed"),
        ("GRANT SELECT ON canary TO PUBLIC", "GRANT is not allowed"),
        (
            "ALTER SYSTEM SET work_mem = '1MB'",
            "ALTER SYSTEM is not allowed",
        ),
        ("CREATE ROLE r", "CREATE ROLE is not allowed"),
        (
            "SELECT 1; DELETE FROM canary",
            "exactly one statement per call",
        ),
        (
            "INSERT INTO canary SELECT 1, set_config('a.b', 'c', false)",
            "function set_config is not allowed",
        ),
        (
            "INSERT INTO canary SELECT 1, (12345).pg_terminate_backend",
            "function pg_terminate_backend is not allowed",
        ),
    ] {
        let why = reason(sql, &policy);
        assert!(why.starts_with(expected), "{sql}: {why}");
    }
    let ddl = reason("CREATE TABLE t (id int)", &policy);
    assert!(ddl.contains("allow_ddl is off"), "{ddl}");
    assert!(reason("SELECT 1 INTO t", &policy).contains("allow_ddl is off"));
}

#[test]
fn read_write_with_ddl() {
    let policy = GuardPolicy::read_write(true);
    for sql in [
        "CREATE TABLE t (id int)",
        "ALTER TABLE t ADD COLUMN x int",
        "DROP TABLE t",
        "TRUNCATE t",
        "COMMENT ON TABLE t IS 'x'",
        "CREATE INDEX ON t (id)",
        "CREATE TABLE t2 AS SELECT 1",
        "SELECT 1 INTO t3",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "REFRESH MATERIALIZED VIEW mv",
    ] {
        assert_eq!(class(sql, &policy), StatementClass::Ddl, "{sql}");
    }
    for (sql, expected) in [
        ("CREATE ROLE r", "CREATE ROLE is not allowed"),
        ("DROP ROLE r", "DROP ROLE is not allowed"),
        ("DROP SERVER s", "DROP FOREIGN SERVER is not allowed"),
        ("DROP DATABASE d", "DROP DATABASE is not allowed"),
        (
            "ALTER DATABASE d RENAME TO e",
            "ALTER ... RENAME is not allowed",
        ),
        (
            "ALTER SERVER s OWNER TO r",
            "ALTER ... OWNER TO is not allowed",
        ),
        ("COMMENT ON ROLE r IS 'x'", "COMMENT ON is not allowed"),
        ("DROP PUBLICATION p", "DROP PUBLICATION is not allowed"),
        ("GRANT ALL ON t TO PUBLIC", "GRANT is not allowed"),
        ("CREATE DATABASE d", "CREATE DATABASE is not allowed"),
        (
            "ALTER SYSTEM SET work_mem = '1MB'",
            "ALTER SYSTEM is not allowed",
        ),
        (
            "CREATE TABLE t4 AS SELECT set_config('a.b', 'c', false)",
            "function set_config is not allowed",
        ),
        (
            "CREATE VIEW v AS SELECT (1).pg_terminate_backend",
            "function pg_terminate_backend is not allowed",
        ),
        (
            "EXPLAIN ANALYZE CREATE TABLE t5 AS SELECT 1",
            "EXPLAIN ANALYZE of CREATE TABLE AS is not allowed",
        ),
        ("BEGIN", "BEGIN is not allowed"),
        (
            "CREATE SCHEMA s CREATE TABLE t (id int) GRANT SELECT ON t TO PUBLIC",
            "GRANT inside CREATE SCHEMA is not allowed",
        ),
        (
            "CREATE RULE r AS ON INSERT TO t DO ALSO NOTIFY ch",
            "NOTIFY inside CREATE RULE is not allowed",
        ),
        (
            "CREATE EXTENSION plperlu",
            "CREATE EXTENSION of extension plperlu is not allowed: this profile allows no extensions",
        ),
        (
            "ALTER EXTENSION pg_trgm UPDATE",
            "ALTER EXTENSION of extension pg_trgm is not allowed",
        ),
        (
            "DROP EXTENSION pg_trgm",
            "DROP EXTENSION of extension pg_trgm is not allowed",
        ),
        (
            "ALTER EXTENSION pg_trgm ADD FUNCTION f()",
            "ALTER EXTENSION ... ADD/DROP is not allowed",
        ),
    ] {
        let why = reason(sql, &policy);
        assert!(why.starts_with(expected), "{sql}: {why}");
    }
    for sql in [
        "CREATE SCHEMA s CREATE TABLE t (id int) CREATE VIEW v AS SELECT id FROM t",
        "CREATE RULE r AS ON INSERT TO t DO ALSO INSERT INTO log VALUES (new.id)",
        "CREATE FUNCTION g() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END",
    ] {
        assert_eq!(class(sql, &policy), StatementClass::Ddl, "{sql}");
    }
    let with_trigram = GuardPolicy {
        allowed_extensions: vec!["pg_trgm".into()],
        ..GuardPolicy::read_write(true)
    };
    for sql in [
        "CREATE EXTENSION pg_trgm",
        "ALTER EXTENSION pg_trgm UPDATE",
        "DROP EXTENSION pg_trgm",
    ] {
        assert_eq!(class(sql, &with_trigram), StatementClass::Ddl, "{sql}");
    }
    let why = reason("CREATE EXTENSION IF NOT EXISTS plperlu", &with_trigram);
    assert!(
        why.ends_with("this profile allows pg_trgm (allow_extensions)"),
        "{why}"
    );
    // allow_ddl means nothing without read-write.
    let read_only_with_ddl = GuardPolicy {
        allow_ddl: true,
        access_mode: AccessMode::ReadOnly,
        ..GuardPolicy::read_only()
    };
    let why = reason("CREATE TABLE t (id int)", &read_only_with_ddl);
    assert!(
        why.starts_with("CREATE TABLE is not allowed in read-only mode"),
        "{why}"
    );
}

#[test]
fn deeply_nested_input_is_rejected_not_crashed() {
    let nested = |depth: usize| format!("SELECT {}1{}", "abs(".repeat(depth), ")".repeat(depth));
    assert!(check(&nested(10), &read_only()).is_ok());
    for depth in [100, 1_000, 100_000] {
        check(&nested(depth), &read_only()).expect_err("too deep");
    }
    let chained = format!("SELECT 'a'{}", " || 'b'".repeat(200));
    let error = check(&chained, &read_only()).expect_err("too deep to decode");
    assert!(error.reason.contains("nested too deeply"), "{error}");
}

/// SELECT INTO creates a table from a query, like CREATE TABLE AS: its query is what PostgreSQL must resolve (and
/// what the masks check), not nothing.
#[test]
fn select_into_resolves_its_query_and_ddl_names_its_relations() {
    use pgmcp::guard::{ToResolve, named_relations, statement_that_runs};
    let ddl = GuardPolicy::read_write(true);
    for (sql, inner) in [
        (
            "SELECT email INTO copy FROM customers WHERE id > 1",
            "SELECT email FROM customers WHERE id > 1",
        ),
        (
            "CREATE TABLE copy AS SELECT email FROM customers",
            "SELECT email FROM customers",
        ),
    ] {
        let verdict = check(sql, &ddl).expect("allowed with DDL");
        assert_eq!(verdict.class, StatementClass::Ddl, "{sql}");
        assert_eq!(
            statement_that_runs(sql, verdict.class).expect("resolvable"),
            ToResolve::Inner(inner.to_string()),
            "{sql}"
        );
    }
    assert_eq!(
        named_relations("CREATE INDEX ON crm.customers ((email::int))").unwrap(),
        vec![(Some("crm".to_string()), "customers".to_string())]
    );
    assert_eq!(
        named_relations("ALTER TABLE customers ALTER COLUMN email TYPE int USING email::int")
            .unwrap(),
        vec![(None, "customers".to_string())]
    );
}
