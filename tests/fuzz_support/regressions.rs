//! The attacks observed in issue 10 and found since, through the real binary over stdio: each is rejected with a
//! reason that names the function, and the victim survives.

use serde_json::json;

use crate::common::{self, Era};
use crate::fuzz_support::{Harness, MARKER, Role, SERIAL, url};

/// (statement, function the reason must name)
const OBSERVED: &[(&str, &str)] = &[
    (
        "SELECT ({pid}).pg_terminate_backend",
        "pg_terminate_backend",
    ),
    (
        "SELECT (ARRAY[{pid}])[1].pg_terminate_backend",
        "pg_terminate_backend",
    ),
    (
        "SELECT (v.p).pg_terminate_backend FROM (VALUES ({pid})) v(p)",
        "pg_terminate_backend",
    ),
    (
        "SELECT (SELECT pg_cancel_backend({busy}))",
        "pg_cancel_backend",
    ),
    (
        "SELECT (SELECT ({busy}).pg_cancel_backend)",
        "pg_cancel_backend",
    ),
    ("SELECT (1::bigint).pg_advisory_lock", "pg_advisory_lock"),
    (
        "SELECT CASE WHEN true THEN (4242::bigint).pg_advisory_lock END",
        "pg_advisory_lock",
    ),
    (
        "SELECT (SELECT 4242::bigint).pg_advisory_lock",
        "pg_advisory_lock",
    ),
    (
        "SELECT (ROW(4242::bigint)).f1.pg_advisory_lock",
        "pg_advisory_lock",
    ),
    (
        "SELECT 1 WHERE (4242::bigint).pg_try_advisory_lock",
        "pg_try_advisory_lock",
    ),
    ("SELECT t.kill_target FROM public.targets t", "kill_target"),
    ("SELECT t.lock_target FROM public.targets t", "lock_target"),
    // Found in issue 17's sixteenth step: a type's operator class runs its comparison, and no tree names it.
    (
        "SELECT GREATEST(ROW(4242::bigint)::public.ordered_key, ROW(1::bigint)::public.ordered_key)",
        "public.ordered_key_",
    ),
    (
        "SELECT ARRAY[ROW(4242::bigint)::public.ordered_key] < ARRAY[ROW(1::bigint)::public.ordered_key]",
        "public.ordered_key_",
    ),
    // tablefunc's crosstab runs the query it is given, which the guard never sees.
    (
        "SELECT * FROM crosstab2('SELECT pg_catalog.pg_terminate_backend({pid})::text, ''a''::text, ''b''::text')",
        "crosstab2",
    ),
    // xml2's xpath_table pastes its criteria into the query it runs.
    (
        "SELECT * FROM xpath_table('1', '''<a/>''', '(SELECT 1) s', '/a', \
         'pg_catalog.pg_terminate_backend({pid})') AS t(k int, a text)",
        "xpath_table",
    ),
    // And the JSON functions run a type's cast to json, found by the type.
    (
        "SELECT to_json('4242'::public.json_key)",
        "public.json_key_json",
    ),
    // The planner runs an operator's negator and commutator, which no tree names.
    (
        "SELECT NOT (4242::bigint #=# 1::bigint)",
        "public.negator_ne",
    ),
    (
        "SELECT count(*) FROM public.spread AS sp WHERE 4242::bigint #<# sp.v",
        "public.commutator_gt",
    ),
    // And the expressions it reads with a table: a child's CHECK constraint, an index expression; and the key
    // comparison it sorts a partitioned table's bounds with.
    (
        "SELECT count(*) FROM public.planned_parent WHERE v = 4242",
        "public.planner_key",
    ),
    ("SELECT * FROM public.planned_indexed", "public.planner_key"),
    ("SELECT * FROM public.planned_listed", "public.ordered_key_"),
];

async fn assert_rejected(
    harness: &mut Harness,
    client: &common::Client,
    role: Role,
    template: &str,
    function: &str,
) {
    let sql = harness.render(template);
    let result = common::call(client, "execute_query", json!({ "sql": sql })).await;
    let text = format!("{result:?}");
    assert!(!text.contains(MARKER), "{sql} returned the file's content");
    assert_eq!(result.is_error, Some(true), "{sql} was accepted: {text}");
    let error = result.structured_content.expect("structured error");
    assert_eq!(error["error"], "rejected", "{sql}: {error}");
    let reason = error["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(function),
        "{sql}: the reason does not name {function}: {reason}"
    );
    let violations = harness.check_invariant(role).await;
    assert!(violations.is_empty(), "{sql}: {violations:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observed_attacks_are_rejected_through_the_binary() {
    let _turn = SERIAL.lock().await;
    let mut harness = Harness::start().await;
    let prober = common::spawn(
        &["serve", "--database-url", &url(Role::Prober, "pgmcp")],
        &[],
        Era::Legacy,
    )
    .await;
    for (template, function) in OBSERVED {
        assert_rejected(&mut harness, &prober, Role::Prober, template, function).await;
    }
    let _ = prober.cancel().await;

    let superuser = common::spawn(
        &["serve", "--database-url", &url(Role::Superuser, "pgmcp")],
        &[],
        Era::Legacy,
    )
    .await;
    for (template, function) in [
        ("SELECT ('{file}').pg_read_file", "pg_read_file"),
        ("SELECT (('{file}'::text)).pg_read_file", "pg_read_file"),
        (
            "SELECT (t.f).pg_read_file FROM (VALUES ('{file}')) t(f)",
            "pg_read_file",
        ),
        (
            "SELECT ({pid}).pg_terminate_backend",
            "pg_terminate_backend",
        ),
    ] {
        assert_rejected(
            &mut harness,
            &superuser,
            Role::Superuser,
            template,
            function,
        )
        .await;
    }
    let _ = superuser.cancel().await;
}
