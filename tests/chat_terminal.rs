//! `pgmcp chat` as a person uses it: in a pseudo-terminal (util-linux `script`), with colors, follow-up questions,
//! and Ctrl-C stopping the current answer without leaving.

mod chat_support;
mod common;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chat_support::{Reply, StandIn, call, step, text, tools};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn demo_url() -> String {
    static URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    URL.get_or_init(|| {
        let cluster = common::cluster();
        pgmcp::demo::load_sample(cluster, pgmcp::demo::DEMO_DATABASE).expect("load the demo data");
        pgmcp::demo::demo_url(cluster, pgmcp::demo::DEMO_DATABASE)
    })
    .clone()
}

async fn wait_for(screen: &Arc<Mutex<String>>, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !screen.lock().unwrap().contains(needle) {
        assert!(
            Instant::now() < deadline,
            "`{needle}` never appeared; the terminal shows:\n{}",
            screen.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_stops_the_answer_and_the_conversation_goes_on_in_color() {
    let url = tokio::task::spawn_blocking(demo_url).await.unwrap();
    let stand_in = StandIn::start(vec![
        step(|_| Reply::Stall {
            text: "Let me think".into(),
            for_: Duration::from_secs(60),
        }),
        step(|_| {
            tools(vec![call(
                "call_1",
                "execute_query",
                json!({"sql": "SELECT count(*) AS cuisines FROM cuisines"}),
            )])
        }),
        step(|_| text("There are that many cuisines.")),
    ])
    .await;
    let command = format!(
        "exec {} chat --database-url '{url}' --llm-base-url {} --llm-model stand-in",
        env!("CARGO_BIN_EXE_pgmcp"),
        stand_in.base_url
    );
    let mut child = tokio::process::Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .env("OPENAI_API_KEY", "sk-terminal-test")
        .env("TERM", "xterm")
        .env_remove("NO_COLOR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("util-linux `script` runs pgmcp in a pseudo-terminal");
    let mut keyboard = child.stdin.take().unwrap();
    let mut output = child.stdout.take().unwrap();
    let screen = Arc::new(Mutex::new(String::new()));
    let sink = screen.clone();
    tokio::spawn(async move {
        let mut buffer = [0u8; 4096];
        while let Ok(n) = output.read(&mut buffer).await {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buffer[..n]));
        }
    });

    wait_for(&screen, "Ctrl-C stops an answer").await;
    keyboard
        .write_all(b"which cuisine is best?\r")
        .await
        .unwrap();
    wait_for(&screen, "Let me think").await;
    keyboard.write_all(b"\x03").await.unwrap();
    wait_for(&screen, "stopped").await;

    keyboard
        .write_all(b"how many cuisines are there?\r")
        .await
        .unwrap();
    wait_for(&screen, "There are that many cuisines.").await;
    let shown = screen.lock().unwrap().clone();
    assert!(
        shown.contains("\x1b[1;34mSELECT\x1b[0m"),
        "SQL is highlighted on a terminal:\n{shown}"
    );
    assert!(
        shown.contains("1 row") && shown.contains("cuisines"),
        "{shown}"
    );
    // The follow-up carried the stopped question, marked as unanswered.
    let messages = stand_in.requests()[1].body["messages"].clone();
    let said: Vec<String> = messages
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(said.iter().any(|s| s == "which cuisine is best?"));
    assert!(
        said.iter().any(|s| s.contains("stopped this question")),
        "{said:?}"
    );

    keyboard.write_all(b"\x04").await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("Ctrl-D leaves")
        .unwrap();
    assert!(status.success(), "{status:?}\n{}", screen.lock().unwrap());
}
