//! Signing in with pgmcp as the authorization server (`--oauth-server`): the official Python MCP SDK's
//! `OAuthClientProvider` finds pgmcp in the protected resource metadata, registers, sends the person through
//! pgmcp's consent page and the OpenID provider's sign-in, redeems the code and calls tools with pgmcp's own token.

mod common;
mod oauth_support;
mod oidc_support;

use std::path::PathBuf;

use oauth_support::*;
use oidc_support::*;
use serde_json::Value;

fn run_sdk(setup: &OAuthSetup, mode: &str, metadata_url: Option<&str>) -> Value {
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/oauth_signin_test.py");
    let output = std::process::Command::new(common::python())
        .arg(script)
        .args([&setup.server.mcp_url(), LOGIN, mode])
        .args(metadata_url)
        .output()
        .expect("run the Python sign-in");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{mode}:\n{stdout}\n{stderr}");
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|_| panic!("no result line: {stdout}"))
}

#[test]
fn python_sdk_signs_in_with_dynamic_registration() {
    let setup = start("");
    let result = run_sdk(&setup, "dcr", None);
    assert_eq!(
        result["pages"],
        serde_json::json!(["consent", "provider sign-in"]),
        "the person saw pgmcp's consent page, then the provider's sign-in"
    );
    // The client holds pgmcp's token, not the provider's: issued by pgmcp for its resource, carrying the person.
    let (header, claims, _) = split(result["access_token"].as_str().unwrap());
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(claims["iss"], setup.base);
    assert_eq!(claims["aud"], setup.resource);
    assert_eq!(claims["oid"], USER_OID);
    assert_eq!(claims["name"], "Ada Lovelace");
    assert_eq!(claims["client_id"], result["client_id"]);
    // The tool ran as that person: the audit line names them.
    let lines = setup.server.audit_lines_with("SELECT 41 + 1 AS signed_in");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains(USER_OID), "{}", lines[0]);
}
