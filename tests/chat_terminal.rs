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
    wait_for_count(screen, needle, 1).await;
}

async fn wait_for_count(screen: &Arc<Mutex<String>>, needle: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while screen.lock().unwrap().matches(needle).count() < count {
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
    let (mut child, mut keyboard, screen) = in_terminal(&url, &stand_in, "");

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

type Terminal = (
    tokio::process::Child,
    tokio::process::ChildStdin,
    Arc<Mutex<String>>,
);

/// `pgmcp chat` in a pseudo-terminal: what is typed goes to the keyboard, what it shows collects on the screen.
fn in_terminal(url: &str, stand_in: &StandIn, extra: &str) -> Terminal {
    let command = format!(
        "exec {} chat --database-url '{url}' --llm-base-url {} --llm-model stand-in {extra}",
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
    let keyboard = child.stdin.take().unwrap();
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
    (child, keyboard, screen)
}

fn insert(note: &'static str) -> chat_support::Step {
    step(move |_| {
        tools(vec![call(
            note,
            "execute_write",
            json!({"sql": format!("INSERT INTO chat_notes VALUES ('{note}')")}),
        )])
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_runs_only_after_the_person_says_yes() {
    let url = tokio::task::spawn_blocking(|| {
        common::cluster()
            .psql("app", "CREATE TABLE chat_notes (note text)")
            .expect("create a table to write to");
        common::superuser_url()
    })
    .await
    .unwrap();
    let stand_in = StandIn::start(vec![
        insert("first"),
        step(|_| text("Not written, as you wish.")),
        insert("second"),
        step(|_| text("Written.")),
    ])
    .await;
    let (mut child, mut keyboard, screen) =
        in_terminal(&url, &stand_in, "--access-mode read_write");
    wait_for(&screen, "Ctrl-C stops an answer").await;
    keyboard.write_all(b"note first\r").await.unwrap();
    wait_for(&screen, "Run this write? [y/N]").await;
    keyboard.write_all(b"n\r").await.unwrap();
    wait_for(&screen, "Not written, as you wish.").await;
    let declined = serde_json::to_string(&stand_in.requests()[1].body["messages"]).unwrap();
    assert!(
        declined.contains("the person declined this write"),
        "{declined}"
    );
    let offered = serde_json::to_string(&stand_in.requests()[0].body["tools"]).unwrap();
    assert!(
        offered.contains("execute_write"),
        "a read-write profile with a person to confirm offers writes"
    );

    keyboard.write_all(b"note second\r").await.unwrap();
    wait_for_count(&screen, "Run this write? [y/N]", 2).await;
    keyboard.write_all(b"y\r").await.unwrap();
    wait_for(&screen, "Written.").await;
    keyboard.write_all(b"\x04").await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(20), child.wait()).await;

    let notes = tokio::task::spawn_blocking(|| {
        common::cluster()
            .psql("app", "SELECT string_agg(note, ',') FROM chat_notes")
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        notes.contains("second") && !notes.contains("first"),
        "only the confirmed write ran: {notes}"
    );

    // Without a person at a terminal (--ask), the write tool is not even offered.
    let stand_in = StandIn::start(vec![step(|_| text("ok"))]).await;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_pgmcp"))
        .args([
            "chat",
            "--database-url",
            &url,
            "--access-mode",
            "read_write",
            "--llm-base-url",
            &stand_in.base_url,
            "--llm-model",
            "stand-in",
            "--ask",
            "hi",
        ])
        .env("OPENAI_API_KEY", "sk-terminal-test")
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let offered = serde_json::to_string(&stand_in.requests()[0].body["tools"]).unwrap();
    assert!(!offered.contains("execute_write"), "{offered}");
}
