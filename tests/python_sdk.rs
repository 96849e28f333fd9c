//! The official Python MCP SDK drives pgmcp over stdio in both protocol eras (legacy initialize, 2026-07-28, and
//! the SDK's own auto-negotiation), so pgmcp is tested against a client that is not built on rmcp.

mod common;

use std::path::PathBuf;

fn run_client(mode: &str) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/client_test.py");
    let output = std::process::Command::new(common::python())
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_pgmcp"))
        .arg(common::reader_url())
        .arg(mode)
        .output()
        .expect("run the Python client");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "mode {mode}:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("python sdk ok ({mode})")),
        "{stdout}"
    );
}

#[test]
fn python_sdk_legacy_initialize() {
    run_client("legacy");
}

#[test]
fn python_sdk_stateless_2026_07_28() {
    run_client("2026-07-28");
}

#[test]
fn python_sdk_auto_negotiation() {
    run_client("auto");
}
