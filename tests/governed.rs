//! The "done when", on the demo: `pgmcp demo --config examples/governed.toml` serves the sample database
//! with customers' emails and phone numbers masked and the curated `orders_for_customer` tool, and no tool call
//! — plain reads, every other use of the columns, the planner's statistics, catalog and DBA tools, curated tools —
//! gets a customer's email or phone number out, neither in an answer nor in an error, the audit log or the log.

mod common;

use std::collections::HashSet;
use std::path::PathBuf;

use common::Client;
use rmcp::model::CallToolResult;
use serde_json::{Value, json};

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/governed.toml")
}

/// Every customer's email and phone number, read straight from the demo database: what must never come out.
struct Secrets {
    emails: HashSet<String>,
    local_parts: HashSet<String>,
    phones: HashSet<String>,
}

impl Secrets {
    async fn read(url: &str) -> Secrets {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .expect("connect to the demo database");
        tokio::spawn(connection);
        let rows = client
            .query("SELECT email, phone FROM customers", &[])
            .await
            .expect("read the contacts");
        let mut secrets = Secrets {
            emails: HashSet::new(),
            local_parts: HashSet::new(),
            phones: HashSet::new(),
        };
        for row in rows {
            let email: String = row.get(0);
            if let Some((local, _)) = email.split_once('@') {
                secrets.local_parts.insert(local.to_string());
            }
            secrets.emails.insert(email);
            if let Some(phone) = row.get::<_, Option<String>>(1) {
                secrets.phones.insert(phone);
            }
        }
        assert_eq!(secrets.emails.len(), 20_000);
        assert!(secrets.phones.len() > 15_000);
        secrets
    }

    /// The first email, email local part or phone number of a customer in `text`.
    fn find(&self, text: &str) -> Option<String> {
        for token in text.split(|c: char| !(c.is_ascii_alphanumeric() || "._@-".contains(c))) {
            let token = token.trim_matches('.');
            if self.emails.contains(token) || self.local_parts.contains(token) {
                return Some(token.to_string());
            }
            if let Some((local, _)) = token.split_once('@')
                && self.local_parts.contains(local)
            {
                return Some(token.to_string());
            }
        }
        // Phone numbers hold spaces: every `+` may open one.
        for (start, _) in text.match_indices('+') {
            for end in start + 12..=(start + 17).min(text.len()) {
                if let Some(candidate) = text.get(start..end)
                    && self.phones.contains(candidate)
                {
                    return Some(candidate.to_string());
                }
            }
        }
        None
    }
}

/// The call's answer text, or the whole error result.
fn text_of(result: &CallToolResult) -> String {
    if result.is_error == Some(true) {
        return serde_json::to_string(result).unwrap_or_default();
    }
    result
        .content
        .first()
        .and_then(|content| content.as_text())
        .map(|text| text.text.clone())
        .unwrap_or_default()
}

async fn call(client: &Client, tool: &str, arguments: Value) -> (bool, String) {
    let result = common::call(client, tool, arguments).await;
    (result.is_error != Some(true), text_of(&result))
}

fn rows(text: &str) -> Vec<Value> {
    let answer: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
    answer["rows"].as_array().cloned().unwrap_or_default()
}

/// Attempts to get an email or phone number out through execute_query; each must be refused (or fail before
/// running) — they compare, transform, aggregate, sort or reveal the values.
const ATTEMPTS: &[&str] = &[
    "SELECT lower(email) FROM customers WHERE id = 1",
    "SELECT email::int FROM customers WHERE id = 1",
    "SELECT CAST(phone AS bigint) FROM customers WHERE id = 1",
    "SELECT split_part(email, '@', 1) FROM customers WHERE id = 1",
    "SELECT substring(email FROM 1 FOR 5) FROM customers WHERE id = 1",
    "SELECT email || '' FROM customers WHERE id = 1",
    "SELECT md5(email) FROM customers WHERE id = 1",
    "SELECT length(email), position('.' in email) FROM customers WHERE id = 1",
    "SELECT id FROM customers WHERE email LIKE 'mia%'",
    "SELECT count(*) FROM customers WHERE email = 'someone@example.com'",
    "SELECT id FROM customers WHERE phone > '+44'",
    "SELECT id FROM customers ORDER BY email LIMIT 1",
    "SELECT email, count(*) FROM customers GROUP BY email LIMIT 1",
    "SELECT DISTINCT phone FROM customers LIMIT 3",
    "SELECT string_agg(email, ',') FROM customers",
    "SELECT max(email), min(phone) FROM customers",
    "SELECT array_agg(phone) FROM customers WHERE id < 3",
    "SELECT row_to_json(c) FROM customers c WHERE id = 1",
    "SELECT c::text FROM customers c WHERE id = 1",
    "SELECT to_jsonb(c) FROM customers c WHERE id = 1",
    "SELECT json_agg(c) FROM customers c WHERE id < 3",
    "SELECT (SELECT email FROM customers WHERE id = 1)",
    "SELECT 'x' WHERE 'someone@example.com' IN (SELECT email FROM customers)",
    "SELECT first_name FROM customers UNION SELECT email FROM customers",
    "SELECT email FROM customers UNION ALL SELECT phone FROM customers",
    "WITH x AS (SELECT email FROM customers) SELECT upper(email) FROM x",
    "SELECT v.e FROM customers c, LATERAL (VALUES (c.email)) v(e) WHERE c.id = 1",
    "SELECT lag(email) OVER (ORDER BY id) FROM customers LIMIT 2",
    "SELECT o.id FROM orders o JOIN customers c ON c.email = c.email AND c.id = o.customer_id LIMIT 1",
    "SELECT histogram_bounds FROM pg_stats WHERE tablename = 'customers'",
    "SELECT most_common_vals::text FROM pg_stats WHERE tablename = 'customers' AND attname = 'phone'",
    "SELECT attname, histogram_bounds::text FROM pg_stats WHERE schemaname = 'public'",
    "SELECT query_to_xml('SELECT email FROM customers', true, false, '')",
    "SELECT table_to_xml('customers', true, false, '')",
    "COPY customers TO STDOUT",
    "COPY (SELECT email FROM customers) TO STDOUT",
    "EXPLAIN ANALYZE SELECT id FROM customers WHERE email LIKE 'a%'",
    "SELECT email::int FROM customers",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_governed_demo_masks_contacts_and_no_tool_call_gets_an_email_out() {
    use rmcp::ServiceExt;
    use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};

    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let log = dir.path().join("demo.log");
    let command = tokio::process::Command::new(env!("CARGO_BIN_EXE_pgmcp")).configure(|cmd| {
        cmd.arg("demo")
            .arg("--config")
            .arg(example())
            .arg("--audit-log")
            .arg(&audit)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("PGMCP_LOG", "debug");
    });
    let (transport, _) = TokioChildProcess::builder(command)
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start pgmcp demo");
    let client = ().serve(transport).await.unwrap_or_else(|error| {
        panic!(
            "pgmcp demo --config examples/governed.toml did not start: {error}\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    });
    let started = std::fs::read_to_string(&log).unwrap();
    let url = started
        .split_whitespace()
        .find(|word| word.starts_with("postgresql://pgmcp_demo@"))
        .unwrap_or_else(|| panic!("the demo names its database URL: {started}"));
    let secrets = Secrets::read(url).await;
    let mut replies: Vec<(String, String)> = Vec::new();

    // The curated tools are listed with the built-in ones, and orders_for_customer answers.
    let tools = client.list_all_tools().await.expect("tools/list");
    let names: Vec<&str> = tools.iter().map(|tool| tool.name.as_ref()).collect();
    for tool in [
        "orders_for_customer",
        "customer_card",
        "execute_query",
        "read_table",
    ] {
        assert!(names.contains(&tool), "{tool} in {names:?}");
    }
    let (ok, orders) = call(
        &client,
        "orders_for_customer",
        json!({"customer_id": 1, "limit": 2}),
    )
    .await;
    assert!(ok, "{orders}");
    let order_rows = rows(&orders);
    assert_eq!(order_rows.len(), 2, "{orders}");
    assert!(
        order_rows[0][1].as_str() > order_rows[1][1].as_str(),
        "newest first: {orders}"
    );
    let (ok, refused) = call(&client, "orders_for_customer", json!({"customer_id": 0})).await;
    assert!(!ok && refused.contains("customer_id"), "{refused}");
    replies.push(("orders_for_customer".into(), orders));

    // Plain reads return the contact columns masked: the email's shape, the phone number's keyed hash.
    let masked_row = |row: &Value, email: usize, phone: usize| {
        let email = row[email].as_str().unwrap_or_default().to_string();
        let phone = &row[phone];
        assert!(
            email.contains("***@e***.com") && email.len() == "m***@e***.com".len(),
            "email {email}"
        );
        assert!(
            phone.is_null()
                || phone
                    .as_str()
                    .is_some_and(|p| p.starts_with("h:") && p.len() == 18),
            "phone {phone}"
        );
    };
    let (ok, card) = call(&client, "customer_card", json!({"customer_id": 1})).await;
    assert!(ok, "{card}");
    let card_rows = rows(&card);
    masked_row(&card_rows[0], 4, 5);
    assert_eq!(
        card_rows[0][1],
        json!("Mia"),
        "unmasked columns stay: {card}"
    );
    replies.push(("customer_card".into(), card));
    let (ok, read) = call(
        &client,
        "read_table",
        json!({"table": "customers", "limit": 20}),
    )
    .await;
    assert!(ok, "{read}");
    let read_rows = rows(&read);
    assert_eq!(read_rows.len(), 20);
    for row in &read_rows {
        masked_row(row, 3, 4);
    }
    replies.push(("read_table".into(), read));
    for sql in [
        "SELECT id, first_name, email, phone FROM customers ORDER BY id LIMIT 10",
        "SELECT c.id, c.last_name, c.email, c.phone, o.total FROM customers c JOIN orders o ON o.customer_id = c.id \
         WHERE c.id < 5 ORDER BY o.id",
        "WITH recent AS (SELECT customer_id FROM orders WHERE placed_at > '2024-01-01') \
         SELECT c.id, c.city, c.email, c.phone FROM customers c WHERE c.id IN (SELECT customer_id FROM recent) LIMIT 5",
    ] {
        let (ok, answer) = call(&client, "execute_query", json!({"sql": sql})).await;
        assert!(ok, "{sql}: {answer}");
        let answer_rows = rows(&answer);
        assert!(!answer_rows.is_empty(), "{sql}: {answer}");
        for row in &answer_rows {
            masked_row(row, 2, 3);
        }
        replies.push((sql.to_string(), answer));
    }
    // Counting non-null values reveals no value, and is allowed.
    let (ok, counted) = call(
        &client,
        "execute_query",
        json!({"sql": "SELECT count(email), count(phone) FROM customers"}),
    )
    .await;
    assert!(ok && rows(&counted)[0][0] == json!(20_000), "{counted}");

    // Every other use is refused before it runs, naming the column or the reason.
    for sql in ATTEMPTS {
        let (ok, answer) = call(&client, "execute_query", json!({"sql": sql})).await;
        assert!(!ok, "{sql} was answered: {answer}");
        replies.push((sql.to_string(), answer));
    }
    for (tool, arguments) in [
        (
            "explain_query",
            json!({"sql": "SELECT id FROM customers WHERE email = 'x'"}),
        ),
        (
            "explain_query",
            json!({"sql": "SELECT id FROM customers ORDER BY phone", "analyze": true}),
        ),
        (
            "index_advice",
            json!({"statements": ["SELECT id FROM customers WHERE lower(email) = 'x'"]}),
        ),
        (
            "read_table",
            json!({"table": "customers", "order_by": ["email"]}),
        ),
    ] {
        let (ok, answer) = call(&client, tool, arguments.clone()).await;
        if tool != "index_advice" {
            assert!(!ok, "{tool} {arguments} was answered: {answer}");
        }
        replies.push((format!("{tool} {arguments}"), answer));
    }
    // The other tools answer, with nothing of the contacts in them.
    for (tool, arguments) in [
        (
            "explain_query",
            json!({"sql": "SELECT email, phone FROM customers WHERE id = 1", "analyze": true}),
        ),
        ("describe_table", json!({"table": "customers"})),
        ("get_table_stats", json!({"table": "customers"})),
        ("search_tables", json!({"term": "email"})),
        ("list_tables", json!({})),
        ("health_check", json!({})),
        ("activity", json!({})),
        ("top_queries", json!({})),
        ("server_info", json!({})),
    ] {
        let (ok, answer) = call(&client, tool, arguments.clone()).await;
        assert!(ok, "{tool}: {answer}");
        replies.push((format!("{tool} {arguments}"), answer));
    }
    client.cancel().await.ok();

    for (what, text) in &replies {
        if let Some(secret) = secrets.find(text) {
            panic!("{what} hands out {secret}: {text}");
        }
    }
    let audit = std::fs::read_to_string(&audit).unwrap();
    assert!(audit.lines().count() >= replies.len(), "{audit}");
    let log = std::fs::read_to_string(&log).unwrap();
    for (name, text) in [("the audit log", &audit), ("the demo's log", &log)] {
        for line in text.lines() {
            if let Some(secret) = secrets.find(line) {
                panic!("{name} holds {secret}: {line}");
            }
        }
    }
}
