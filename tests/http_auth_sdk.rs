//! The official Python MCP SDK as an OAuth client of pgmcp: from a bare 401 it reads pgmcp's
//! `WWW-Authenticate` challenge and Protected Resource Metadata, discovers the OpenID provider, gets a token by
//! client credentials for pgmcp's resource (RFC 8707) and calls tools — in both protocol eras.

mod common;
mod oidc_support;

use std::path::PathBuf;

use oidc_support::pgmcp_http::PgmcpHttp;
use oidc_support::*;
use serde_json::json;

fn sdk_oauth_flow(mode: &str) {
    let provider = Provider::start(vec![
        json!({ "client_id": "sdk-agent", "client_secret": SECRET }),
    ]);
    // The audience is pgmcp's resource URL, so the port is chosen before pgmcp starts.
    let port = common::free_port();
    let resource = format!("http://127.0.0.1:{port}/mcp");
    let server = PgmcpHttp::start_listening(
        &format!("127.0.0.1:{port}"),
        &common::reader_url(),
        "",
        &[
            "--auth-mode",
            "oidc",
            "--oidc-issuer",
            &provider.base,
            "--audience",
            &resource,
        ],
    );
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/oauth_client_test.py");
    let output = std::process::Command::new(common::python())
        .arg(script)
        .args([&server.mcp_url(), &provider.base, "sdk-agent", SECRET, mode])
        .output()
        .expect("run the Python OAuth client");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "mode {mode}:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("python sdk oauth ok ({mode})")),
        "{stdout}"
    );
    let audit = std::fs::read_to_string(&server.audit).unwrap_or_default();
    assert!(
        audit.contains("SELECT 41 + 1") && audit.contains("sdk-agent"),
        "audit: {audit}"
    );
}

#[test]
fn python_sdk_oauth_client_credentials_legacy() {
    sdk_oauth_flow("legacy");
}

#[test]
fn python_sdk_oauth_client_credentials_2026_07_28() {
    sdk_oauth_flow("2026-07-28");
}
