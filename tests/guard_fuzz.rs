//! A differential fuzzer of the SQL guard against a real PostgreSQL. It composes dangerous functions (signalling,
//! advisory locks, large objects, files, settings, sequences, dblink, notifications, writing functions, STABLE
//! functions that write, and calls hidden behind operators, domains, casts, views, defaults and aggregates) with
//! every call syntax and clause position, runs each statement through pgmcp's real execute_query path, and checks
//! the invariant after every call: **an accepted statement changed no data, no other session, no setting, and
//! left nothing on its connection.** Rejections are fine and counted.
//!
//! Cases come from proptest strategies driven by a fixed seed (`PGMCP_FUZZ_SEED` picks another), generated one at
//! a time and run in order on one async harness whose world must be restored after a violation; proptest's
//! runner (and its shrinking) would run each case in a closure that cannot await. A case is already reported by
//! its four dimensions, which is what shrinking would find.
//!
//! `cargo test --test guard_fuzz` runs about 1,800 cases; `cargo test --test guard_fuzz -- --ignored long` runs the
//! long form (`PGMCP_FUZZ_CASES`, default 20000); `-- --ignored finding_` the known findings, which fail until fixed.

mod common;
mod fuzz_support;

use fuzz_support::grammar::{self, Case};
use fuzz_support::{Harness, Role, SERIAL, Tally};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

#[path = "fuzz_support/findings.rs"]
mod findings;

/// Violations the guard's owners know about (see the `finding_` tests): still counted and printed, but they do
/// not fail the sampled run, so that it keeps guarding everything else.
fn known_finding(case: &Case) -> Option<&'static str> {
    findings::KNOWN
        .iter()
        .find(|known| (known.matches)(case))
        .map(|known| known.name)
}

fn runner(seed: u64) -> TestRunner {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &bytes),
    )
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `prober_cases` as the plain role and `superuser_cases` as a superuser, then fails on any violation that
/// is not a known finding.
async fn fuzz(prober_cases: u64, superuser_cases: u64) {
    let _turn = SERIAL.lock().await;
    let seed = env_number("PGMCP_FUZZ_SEED", 0x5eed_9a4d);
    let mut runner = runner(seed);
    let strategy = grammar::cases();
    let mut harness = Harness::start().await;
    let mut tally = Tally::default();
    let started = std::time::Instant::now();
    let mut covered = std::collections::BTreeSet::new();
    for index in 0..prober_cases + superuser_cases {
        let case = strategy
            .new_tree(&mut runner)
            .expect("the grammar generates a case")
            .current();
        let role = if index < prober_cases {
            Role::Prober
        } else {
            Role::Superuser
        };
        covered.insert(format!(
            "{} {:?} {:?}",
            case.danger.name, case.danger.shape, case.syntax
        ));
        let report = harness.run(&case, role).await;
        tally.add(&case, report);
    }
    let elapsed = started.elapsed();
    let summary = tally.summary();
    println!(
        "guard fuzz: seed {seed:#x}, {} cases in {:.1} s ({:.1} ms per case), {} danger×syntax pairs\n{summary}",
        prober_cases + superuser_cases,
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1000.0 / (prober_cases + superuser_cases) as f64,
        covered.len()
    );
    let unknown: Vec<String> = tally
        .findings
        .iter()
        .filter(|(case, _)| known_finding(case).is_none())
        .map(|(_, report)| {
            format!(
                "{:?}: {} => {}",
                report.role,
                report.sql,
                report.violations.join("; ")
            )
        })
        .collect();
    assert!(
        unknown.is_empty(),
        "accepted statements broke the invariant ({} new):\n{}",
        unknown.len(),
        unknown.join("\n")
    );
    let answered: usize = tally
        .outcomes
        .iter()
        .filter(|((_, outcome), _)| *outcome != fuzz_support::Outcome::RejectedByParseTree)
        .map(|(_, count)| count)
        .sum();
    assert!(
        answered > 0,
        "every case was refused by the parse tree: the fuzzer never reached PostgreSQL"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_statements_change_nothing_sampled() {
    fuzz(
        env_number("PGMCP_FUZZ_CI_CASES", 1500),
        env_number("PGMCP_FUZZ_CI_SUPERUSER_CASES", 300),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long run: cargo test --test guard_fuzz -- --ignored long (PGMCP_FUZZ_CASES, default 20000)"]
async fn accepted_statements_change_nothing_long() {
    let cases = env_number("PGMCP_FUZZ_CASES", 20_000);
    fuzz(cases - cases / 6, cases / 6).await;
}

#[path = "fuzz_support/regressions.rs"]
mod regressions;
