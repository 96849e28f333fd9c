//! `pgmcp chat --ask` end to end: the sample restaurants database in a throwaway cluster, pgmcp's real tools and
//! guard, and a scripted stand-in for the model speaking the Chat Completions wire format.

mod chat_support;
mod common;

use std::process::Output;

use chat_support::{Reply, StandIn, Step, call, last_tool_result, step, text, tools};
use serde_json::{Value, json};
use tokio_postgres::NoTls;

const KEY: &str = "sk-chat-test-key-never-shown";

const BEST_CUISINE_SQL: &str = "SELECT c.name AS cuisine, round(avg(v.rating), 2) AS average_rating, count(*) AS reviews \
FROM reviews v JOIN restaurants r ON r.id = v.restaurant_id JOIN cuisines c ON c.id = r.cuisine_id \
GROUP BY c.name ORDER BY average_rating DESC, c.name LIMIT 3";

struct Demo {
    url: String,
}

/// The demo dataset in the shared test cluster, as the demo's least-privilege role.
async fn demo() -> Demo {
    static URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let url = tokio::task::spawn_blocking(|| {
        URL.get_or_init(|| {
            let cluster = common::cluster();
            pgmcp::demo::load_sample(cluster, pgmcp::demo::DEMO_DATABASE)
                .expect("load the demo data");
            pgmcp::demo::demo_url(cluster, pgmcp::demo::DEMO_DATABASE)
        })
        .clone()
    })
    .await
    .unwrap();
    Demo { url }
}

async fn sql(url: &str, query: &str) -> Vec<tokio_postgres::Row> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.expect("connect");
    tokio::spawn(connection);
    client.query(query, &[]).await.expect("query")
}

async fn chat(demo: &Demo, stand_in: &StandIn, extra: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_pgmcp"))
        .args([
            "chat",
            "--database-url",
            &demo.url,
            "--llm-base-url",
            &stand_in.base_url,
            "--llm-model",
            "stand-in",
        ])
        .args(extra)
        .env("OPENAI_API_KEY", KEY)
        .env("NO_COLOR", "1")
        .env_remove("PGMCP_CONFIG")
        .env_remove("PGMCP_LLM_MODEL")
        .kill_on_drop(true)
        .output()
        .await
        .expect("pgmcp chat runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn cell(value: &Value) -> String {
    value
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| value.to_string())
}

/// list_tables → describe_table → execute_query → an answer made from the rows pgmcp returned.
fn best_cuisine_script() -> Vec<Step> {
    vec![
        step(|_| tools(vec![call("call_list", "list_tables", json!({}))])),
        step(|_| {
            tools(vec![call(
                "call_describe",
                "describe_table",
                json!({"schema": "public", "table": "reviews"}),
            )])
        }),
        step(|_| {
            tools(vec![call(
                "call_query",
                "execute_query",
                json!({"sql": BEST_CUISINE_SQL}),
            )])
        }),
        step(|request| {
            let result = last_tool_result(request);
            let best = &result["rows"][0];
            text(&format!(
                "The best-rated cuisine is {} with an average rating of {} over {} reviews.\n\n```sql\n{BEST_CUISINE_SQL}\n```\n",
                cell(&best[0]),
                cell(&best[1]),
                cell(&best[2])
            ))
        }),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_which_cuisine_has_the_best_average_rating_with_the_sql_and_the_numbers() {
    let demo = demo().await;
    let expected = sql(
        &demo.url,
        &format!("SELECT cuisine, average_rating::text, reviews::text FROM ({BEST_CUISINE_SQL}) q"),
    )
    .await;
    let (cuisine, average, reviews): (String, String, String) =
        (expected[0].get(0), expected[0].get(1), expected[0].get(2));

    let stand_in = StandIn::start(best_cuisine_script()).await;
    let output = chat(
        &demo,
        &stand_in,
        &["--ask", "which cuisine has the best average rating?"],
    )
    .await;
    let out = stdout(&output);
    assert!(
        output.status.success(),
        "stdout:\n{out}\nstderr:\n{}",
        stderr(&output)
    );
    // Each step as it happened, in order, then the answer with the database's numbers and the SQL.
    let list = out.find("▸ list_tables").expect("list_tables step");
    let describe = out.find("▸ describe_table").expect("describe_table step");
    let query = out.find("▸ execute_query").expect("execute_query step");
    assert!(list < describe && describe < query, "{out}");
    assert!(out.contains("✓ 3 rows"), "{out}");
    assert!(out.contains(&format!("The best-rated cuisine is {cuisine} with an average rating of {average} over {reviews} reviews.")), "{out}");
    assert!(
        out.contains("SQL that produced the answer:") && out.contains(BEST_CUISINE_SQL),
        "{out}"
    );
    assert!(!out.contains(KEY) && !stderr(&output).contains(KEY));

    let requests = stand_in.requests();
    assert_eq!(requests.len(), 4);
    let system = requests[0].body["messages"][0]["content"].as_str().unwrap();
    assert!(
        system.contains("public.reviews (table") && system.contains("not instructions"),
        "{system}"
    );
    let offered: Vec<&str> = requests[0].body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        offered,
        [
            "list_tables",
            "describe_table",
            "search_tables",
            "execute_query",
            "explain_query"
        ]
    );
    // Each tool result answers its call by id; the model read the real rows.
    let messages = requests[3].body["messages"].as_array().unwrap();
    let answered: Vec<&str> = messages
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["tool_call_id"].as_str().unwrap())
        .collect();
    assert_eq!(answered, ["call_list", "call_describe", "call_query"]);
    assert_eq!(
        cell(&last_tool_result(&requests[3].body)["rows"][0][0]),
        cuisine
    );

    // --json: the same turn as a transcript.
    let stand_in = StandIn::start(best_cuisine_script()).await;
    let output = chat(
        &demo,
        &stand_in,
        &[
            "--ask",
            "which cuisine has the best average rating?",
            "--json",
        ],
    )
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    let transcript: Value = serde_json::from_str(&stdout(&output)).expect("one JSON transcript");
    let kinds: Vec<&str> = transcript["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "tool_call",
            "tool_result",
            "tool_call",
            "tool_result",
            "tool_call",
            "tool_result",
            "text",
            "answer"
        ]
    );
    assert_eq!(transcript["sql"], json!([BEST_CUISINE_SQL]));
    assert_eq!(transcript["tool_calls"], 3);
    assert!(transcript["answer"].as_str().unwrap().contains(&average));
}

#[tokio::test(flavor = "multi_thread")]
async fn guard_rejections_budgets_plain_answers_and_a_wrong_key() {
    let demo = demo().await;
    let count =
        || async { sql(&demo.url, "SELECT count(*) FROM reviews").await[0].get::<_, i64>(0) };
    let reviews_before = count().await;

    // A write the guard refuses goes back to the model as the tool's error; the model corrects itself.
    let stand_in = StandIn::start(vec![
        step(|_| {
            tools(vec![call(
                "call_bad",
                "execute_query",
                json!({"sql": "DELETE FROM reviews WHERE rating < 3"}),
            )])
        }),
        step(|_| {
            tools(vec![call(
                "call_good",
                "execute_query",
                json!({"sql": "SELECT count(*) AS low FROM reviews WHERE rating < 3"}),
            )])
        }),
        step(|request| {
            text(&format!(
                "There are {} low ratings.",
                cell(&last_tool_result(request)["rows"][0][0])
            ))
        }),
    ])
    .await;
    let output = chat(&demo, &stand_in, &["--ask", "delete the bad reviews"]).await;
    let out = stdout(&output);
    assert!(output.status.success(), "{out}\n{}", stderr(&output));
    let refusal = last_tool_result(&stand_in.requests()[1].body);
    let reason = refusal.to_string();
    assert!(
        reason.contains("DELETE") || reason.contains("read-only") || reason.contains("read only"),
        "{reason}"
    );
    assert!(out.contains("✗"), "{out}");
    let low = sql(
        &demo.url,
        "SELECT count(*)::text FROM reviews WHERE rating < 3",
    )
    .await[0]
        .get::<_, String>(0);
    assert!(
        out.contains(&format!("There are {low} low ratings.")),
        "{out}"
    );
    assert_eq!(count().await, reviews_before, "nothing was deleted");
    assert!(
        !out.contains("DELETE FROM reviews WHERE rating < 3\n\n"),
        "a refused statement is not shown as the answer's SQL"
    );

    // The tool-call budget: the third call is not run, and the model is asked to answer without tools.
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config.path(), "[chat]\nmax_tool_calls = 2\n").unwrap();
    let lister = || step(|_| tools(vec![call("c", "list_tables", json!({}))]));
    let stand_in = StandIn::start(vec![
        lister(),
        lister(),
        lister(),
        step(|_| text("Here is what I found.")),
    ])
    .await;
    let output = chat(
        &demo,
        &stand_in,
        &[
            "--ask",
            "list everything",
            "--config",
            config.path().to_str().unwrap(),
        ],
    )
    .await;
    let out = stdout(&output);
    assert!(output.status.success(), "{out}\n{}", stderr(&output));
    assert!(out.contains("budget: 2 tool calls used of 2"), "{out}");
    assert_eq!(out.matches("▸ list_tables").count(), 2, "{out}");
    let last = &stand_in.requests()[3].body;
    assert!(
        last.get("tools").is_none(),
        "no tools offered once the budget is spent"
    );
    assert!(
        last_tool_result(last)
            .as_str()
            .unwrap()
            .contains("not run: the budget of 2 tool calls")
    );

    // The token budget stops the turn without another request.
    std::fs::write(config.path(), "[chat]\nmax_tokens_per_turn = 200\n").unwrap();
    let stand_in = StandIn::start(vec![lister(), lister(), lister()]).await;
    let output = chat(
        &demo,
        &stand_in,
        &[
            "--ask",
            "list everything",
            "--config",
            config.path().to_str().unwrap(),
        ],
    )
    .await;
    let out = stdout(&output);
    assert!(
        out.contains("budget: 240 tokens used of 200") && out.contains("over the budget of 200"),
        "{out}"
    );
    assert_eq!(stand_in.requests().len(), 2);

    // Parallel tool calls in one answer: both run, in order, and each result answers its own call id.
    let stand_in = StandIn::start(vec![
        step(|_| {
            tools(vec![
                call("p1", "list_tables", json!({})),
                call("p2", "describe_table", json!({"table": "cuisines"})),
            ])
        }),
        step(|_| text("Both looked up.")),
    ])
    .await;
    let output = chat(&demo, &stand_in, &["--ask", "what is in cuisines?"]).await;
    let out = stdout(&output);
    assert!(output.status.success(), "{out}");
    assert!(
        out.find("▸ list_tables").unwrap() < out.find("▸ describe_table").unwrap(),
        "{out}"
    );
    let messages = stand_in.requests()[1].body["messages"].clone();
    let answered: Vec<&str> = messages
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["tool_call_id"].as_str().unwrap())
        .collect();
    assert_eq!(answered, ["p1", "p2"]);

    // A model that answers without tools.
    let stand_in =
        StandIn::start(vec![step(|_| text("Hello! Ask me about the restaurants."))]).await;
    let output = chat(&demo, &stand_in, &["--ask", "hi"]).await;
    let out = stdout(&output);
    assert!(output.status.success());
    assert!(
        out.contains("Hello! Ask me about the restaurants.")
            && out.contains("(0 tool calls")
            && !out.contains('▸'),
        "{out}"
    );

    // A wrong key: a clear error naming the variable, never the key, and a failing exit status.
    let stand_in = StandIn::start(vec![step(|_| Reply::Status { code: 401, headers: vec![], body: json!({"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}}) })]).await;
    let output = chat(&demo, &stand_in, &["--ask", "hi"]).await;
    let err = stderr(&output);
    assert!(!output.status.success());
    assert!(
        err.contains("401") && err.contains("OPENAI_API_KEY"),
        "{err}"
    );
    assert!(!err.contains(KEY) && !stdout(&output).contains(KEY));
}
