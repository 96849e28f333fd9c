//! Statements the fuzzer found that broke the invariant. A new finding stays here as a test, ignored until the
//! guard is fixed (`cargo test --test guard_fuzz -- --ignored finding_`), and as a matcher that keeps the sampled
//! run printing it without failing on it; once fixed, the test runs as a regression (`fixed_…`) and the matcher
//! goes.

use crate::fuzz_support::grammar::Case;
use crate::fuzz_support::{Harness, Role, SERIAL};

pub struct Known {
    pub name: &'static str,
    pub matches: fn(&Case) -> bool,
}

/// Nothing known today: every finding so far is fixed and kept below as a regression test.
pub const KNOWN: &[Known] = &[];

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
async fn fixed_stable_function_terminates_another_session() {
    assert_invariant_holds(Role::Prober, "SELECT public.stable_killer({pid})").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_stable_function_writes_through_dblink() {
    assert_invariant_holds(
        Role::Superuser,
        "SELECT public.stable_remote_writer('{conn}')",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_text_rerun_calls_a_user_defined_cast() {
    assert_invariant_holds(Role::Prober, "SELECT pl FROM public.places pl").await;
}
