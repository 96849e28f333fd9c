//! Plain HTTP clients on `/mcp`: the README's curl recipe, run as written with the real `curl` against a real pgmcp
//! and PostgreSQL (with and without authentication), and what a client gets for each `Accept` it may send.

mod common;
mod http_support;
mod oidc_support;

use std::process::Command;

use http_support::HttpServer;
use oidc_support::Provider;
use oidc_support::pgmcp_http::PgmcpHttp;
use serde_json::{Value, json};

/// The curl commands of the README's "Calling /mcp with curl" block, continuation lines joined, in order.
fn readme_curl_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("read README.md");
    let section = readme
        .split("### Calling /mcp with curl")
        .nth(1)
        .expect("the README has a curl section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("a sh block in the curl section");
    block
        .replace("\\\n", " ")
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("curl "))
        .map(str::to_string)
        .collect()
}

/// Runs one README command through bash, with the README's address replaced by the test server's and `$TOKEN` set.
fn run_recipe(command: &str, readme_base: &str, base: &str, token: &str) -> Value {
    assert!(command.contains(readme_base), "{command}");
    let command = command.replace(readme_base, base);
    let output = Command::new("bash")
        .args(["-c", &command])
        .env("TOKEN", token)
        .output()
        .expect("run curl (install the curl package)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{command}\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&stdout)
        .unwrap_or_else(|_| panic!("{command} answered non-JSON: {stdout}"))
}

fn assert_recipe_answers(answers: &[Value]) {
    let [list, call] = answers else {
        panic!("two answers expected: {answers:?}")
    };
    let tools: Vec<&str> = list["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("tools/list: {list}"))
        .iter()
        .filter_map(|tool| tool["name"].as_str())
        .collect();
    assert!(tools.contains(&"execute_query"), "{tools:?}");
    assert_eq!(call["result"]["isError"], json!(false), "{call}");
    let text = call["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text content: {call}"));
    let answer: Value = serde_json::from_str(text).expect("the tool's answer is JSON text");
    assert_eq!(answer["rows"], json!([[42]]), "{answer}");
    assert_eq!(answer["truncated"], json!(false), "{answer}");
}

#[test]
fn the_readme_curl_recipe_lists_tools_and_queries_without_auth() {
    let commands = readme_curl_commands();
    assert_eq!(commands.len(), 4, "{commands:?}");
    let url = common::reader_url();
    let server = HttpServer::start(
        &["serve", "--database-url", &url, "--http", "127.0.0.1:0"],
        &[],
    );
    let base = server.url("");
    let answers: Vec<Value> = commands[..2]
        .iter()
        .map(|command| run_recipe(command, "http://127.0.0.1:8080", &base, ""))
        .collect();
    assert_recipe_answers(&answers);
}

#[tokio::test]
async fn the_readme_curl_recipe_works_with_a_bearer_token() {
    let commands = readme_curl_commands();
    let provider = Provider::start(oidc_support::entra_clients("{base}"));
    let server = PgmcpHttp::start_entra(&common::reader_url(), &provider.base, &[]);
    let token = provider.token("v2-app").await;
    let answers: Vec<Value> = commands[2..]
        .iter()
        .map(|command| run_recipe(command, "https://pgmcp.contoso.com", &server.base, &token))
        .collect();
    assert_recipe_answers(&answers);

    // The same command without a token is challenged, not answered.
    let output = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
        .arg(server.mcp_url())
        .args(["-H", "Content-Type: application/json"])
        .args(["-d", r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#])
        .output()
        .expect("run curl");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "401");
}

/// `curl -i` of a tools/list POST with the given extra arguments: the status, the headers (lower-cased) and the body.
fn curl_tools_list(server: &HttpServer, extra: &[&str]) -> (u16, String, String) {
    let output = Command::new("curl")
        .args(["-sS", "-i", "-X", "POST"])
        .arg(server.mcp_url())
        .args(["-H", "Content-Type: application/json"])
        .args(extra)
        .args(["-d", r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#])
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&output.stdout).replace("\r\n", "\n");
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text}"));
    (status, head.to_ascii_lowercase(), body.to_string())
}

fn tool_count(body: &str) -> usize {
    let answer: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    answer["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{answer}"))
        .len()
}

#[test]
fn each_accept_gets_an_answer_it_can_read_and_refusing_both_gets_406() {
    let url = common::reader_url();
    let server = HttpServer::start(
        &["serve", "--database-url", &url, "--http", "127.0.0.1:0"],
        &[],
    );
    for accept in [
        "Accept:",
        "Accept: */*",
        "Accept: application/json",
        "Accept: application/json, text/event-stream",
    ] {
        let (status, head, body) = curl_tools_list(&server, &["-H", accept]);
        assert_eq!(status, 200, "{accept}: {head}\n{body}");
        assert!(
            head.contains("content-type: application/json"),
            "{accept}: {head}"
        );
        assert!(tool_count(&body) > 3, "{accept}: {body}");
    }

    // A client that takes only event streams gets one, carrying the same answer.
    let (status, head, body) = curl_tools_list(&server, &["-H", "Accept: text/event-stream"]);
    assert_eq!(status, 200, "{head}\n{body}");
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    let data = body
        .lines()
        .find_map(|line| line.strip_prefix("data: "))
        .unwrap_or_else(|| panic!("no data line: {body}"));
    assert!(tool_count(data) > 3, "{data}");

    for refusal in [
        "Accept: text/html",
        "Accept: application/json;q=0, text/plain",
    ] {
        let (status, head, body) = curl_tools_list(&server, &["-H", refusal]);
        assert_eq!(status, 406, "{refusal}: {head}\n{body}");
        assert!(!body.contains("execute_query"), "{body}");
    }
}

#[test]
fn legacy_sessions_answer_json_to_a_client_without_event_streams() {
    let url = common::reader_url();
    let server = HttpServer::start(
        &[
            "serve",
            "--database-url",
            &url,
            "--http",
            "127.0.0.1:0",
            "--legacy-sessions",
        ],
        &[],
    );
    let post = |session: Option<&str>, body: &str| {
        let mut command = Command::new("curl");
        command
            .args(["-sS", "-i", "-X", "POST"])
            .arg(server.mcp_url())
            .args(["-H", "Content-Type: application/json", "-H", "Accept:"]);
        if let Some(session) = session {
            command.args(["-H", &format!("Mcp-Session-Id: {session}")]);
            command.args(["-H", "MCP-Protocol-Version: 2025-06-18"]);
        }
        let output = command.args(["-d", body]).output().expect("run curl");
        String::from_utf8_lossy(&output.stdout).replace("\r\n", "\n")
    };
    let initialized = post(None, http_support::INITIALIZE);
    let (head, body) = initialized.split_once("\n\n").expect("a response");
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{initialized}");
    assert!(head.contains("content-type: application/json"), "{head}");
    let session = head
        .lines()
        .find_map(|line| line.strip_prefix("mcp-session-id: "))
        .unwrap_or_else(|| panic!("no session id: {head}"))
        .trim()
        .to_string();
    let answer: Value = serde_json::from_str(body).expect("initialize answered JSON");
    assert_eq!(
        answer["result"]["serverInfo"]["name"],
        json!("pgmcp"),
        "{answer}"
    );

    let notified = post(
        Some(&session),
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    );
    assert!(notified.starts_with("HTTP/1.1 202"), "{notified}");
    let listed = post(
        Some(&session),
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
    );
    let (head, body) = listed.split_once("\n\n").expect("a response");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{listed}"
    );
    assert!(tool_count(body) > 3, "{body}");
}
