//! Statements the fuzzer found that break the invariant. Each stays here as a test, ignored until the guard is
//! fixed (`cargo test --test guard_fuzz -- --ignored finding_`), and as a matcher that keeps the sampled run
//! printing it without failing on it. Remove both once the guard rejects the statement.

use crate::fuzz_support::grammar::Case;
use crate::fuzz_support::{Harness, Role, SERIAL};

pub struct Known {
    pub name: &'static str,
    pub matches: fn(&Case) -> bool,
}

pub const KNOWN: &[Known] = &[
    Known {
        name: "a function declared STABLE is trusted as declared, and its body may signal other backends",
        matches: |case| case.danger.name == "stable_killer",
    },
    Known {
        name: "a function declared STABLE may write through dblink, which commits on its own (superuser)",
        matches: |case| case.danger.name == "stable_remote_writer",
    },
    Known {
        name: "a result column pgmcp cannot decode is re-run as `::text` without the resolved check, calling a \
               user-defined cast function",
        matches: |case| case.danger.name == "places_text",
    },
];

async fn assert_invariant_holds(role: Role, sql: &str) {
    let _turn = SERIAL.lock().await;
    let mut harness = Harness::start().await;
    let report = harness.run_sql(sql, &[], role).await;
    assert!(
        report.violations.is_empty(),
        "{sql} as {role:?} -> {:?} {}: {:?}",
        report.outcome,
        report.answer,
        report.violations
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "finding: a STABLE-declared function that calls pg_terminate_backend ends another session"]
async fn finding_stable_function_terminates_another_session() {
    assert_invariant_holds(Role::Prober, "SELECT public.stable_killer({pid})").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "finding: a STABLE-declared function writes through dblink (superuser profile)"]
async fn finding_stable_function_writes_through_dblink() {
    assert_invariant_holds(
        Role::Superuser,
        "SELECT public.stable_remote_writer('{conn}')",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "finding: the ::text re-run of an undecodable column calls a user-defined cast unchecked"]
async fn finding_text_rerun_calls_a_user_defined_cast() {
    assert_invariant_holds(Role::Prober, "SELECT pl FROM public.places pl").await;
}
