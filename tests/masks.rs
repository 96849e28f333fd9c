//! Column masks end to end: a profile masks `crm.customers.email` (partial) and `phone` (redact); distinctive
//! values are seeded there, queries of many shapes go through the real binary, and no seeded value may appear in
//! any answer, error or audit line, while plain projections come back masked and unmasked columns stay usable.

mod common;

use common::{Era, call, cluster, observer, spawn};
use serde_json::{Value, json};

const SEEDED: &[&str] = &[
    "alice.wonder@example.com",
    "bob.builder@example.org",
    "+1 555 0100 77",
    "+44 20 7946 0958",
    "wonder",
    "builder",
];

const FIXTURE: &str = "
DROP SCHEMA IF EXISTS crm CASCADE;
CREATE SCHEMA crm;
CREATE TABLE crm.customers (id int PRIMARY KEY, name text NOT NULL, email text, phone text);
INSERT INTO crm.customers VALUES
  (1, 'Alice', 'alice.wonder@example.com', '+1 555 0100 77'),
  (2, 'Bob', 'bob.builder@example.org', '+44 20 7946 0958'),
  (3, 'Carol', NULL, NULL);
CREATE VIEW crm.customer_emails AS SELECT id, email FROM crm.customers;
CREATE VIEW crm.filtered AS SELECT id FROM crm.customers WHERE email LIKE '%.org';
";

fn config() -> tempfile::NamedTempFile {
    let file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    let contents = format!(
        "[profiles.crm]\nurl = \"{}\"\n\
         [[profiles.crm.masks]]\ntable = \"crm.customers\"\ncolumns = [\"email\"]\nmode = \"partial\"\n\
         [[profiles.crm.masks]]\ntable = \"crm.customers\"\ncolumns = [\"phone\"]\n",
        common::superuser_url()
    );
    std::fs::write(file.path(), contents).unwrap();
    file
}

/// The tool answer or error as text, whatever it is.
async fn answer(client: &common::Client, tool: &str, arguments: Value) -> (bool, String) {
    let result = call(client, tool, arguments).await;
    let text = serde_json::to_string(&result).unwrap();
    (result.is_error != Some(true), text)
}

fn rows_of(text: &str) -> Value {
    let result: Value = serde_json::from_str(text).unwrap();
    let inner = result["content"][0]["text"].as_str().unwrap();
    serde_json::from_str::<Value>(inner).unwrap()["rows"].clone()
}

fn assert_no_seeded_value(what: &str, text: &str) {
    for value in SEEDED {
        assert!(!text.contains(value), "{what} leaks {value}: {text}");
    }
}

#[tokio::test]
async fn masked_values_never_leave_pgmcp() {
    let _ = cluster();
    observer().await.batch_execute(FIXTURE).await.unwrap();
    let config = config();
    let audit = tempfile::NamedTempFile::new().unwrap();
    let client = spawn(
        &[
            "serve",
            "--config",
            config.path().to_str().unwrap(),
            "--audit-log",
            audit.path().to_str().unwrap(),
        ],
        &[],
        Era::Legacy,
    )
    .await;

    // Plain projections come back masked, through tables, views, subqueries, CTEs, joins and read_table.
    for (sql, expected) in [
        (
            "SELECT id, name, email, phone FROM crm.customers ORDER BY id",
            json!([
                [1, "Alice", "a***@e***.com", "[masked]"],
                [2, "Bob", "b***@e***.org", "[masked]"],
                [3, "Carol", null, null]
            ]),
        ),
        (
            "SELECT * FROM crm.customers WHERE id = 1",
            json!([[1, "Alice", "a***@e***.com", "[masked]"]]),
        ),
        (
            "SELECT email FROM crm.customer_emails WHERE id = 2",
            json!([["b***@e***.org"]]),
        ),
        (
            "WITH c AS (SELECT id, email FROM crm.customers) SELECT email FROM c WHERE id = 1",
            json!([["a***@e***.com"]]),
        ),
        (
            "SELECT s.e FROM (SELECT email AS e, id FROM crm.customers) s WHERE s.id = 2",
            json!([["b***@e***.org"]]),
        ),
        (
            "SELECT c.email, o.n FROM crm.customers c JOIN (VALUES (1, 'x')) o(id, n) ON o.id = c.id",
            json!([["a***@e***.com", "x"]]),
        ),
        (
            "SELECT x.email FROM crm.customers c, LATERAL (SELECT c.email) x WHERE c.id = 1",
            json!([["a***@e***.com"]]),
        ),
        (
            "SELECT count(email), count(*) FROM crm.customers",
            json!([[2, 3]]),
        ),
        (
            "SELECT name FROM crm.customers WHERE name LIKE 'A%' ORDER BY name",
            json!([["Alice"]]),
        ),
    ] {
        let (ok, text) = answer(&client, "execute_query", json!({"sql": sql})).await;
        assert!(ok, "{sql}: {text}");
        assert_eq!(rows_of(&text), expected, "{sql}");
        assert_no_seeded_value(sql, &text);
    }
    let (ok, text) = answer(
        &client,
        "read_table",
        json!({"table": "crm.customers", "order_by": ["id"]}),
    )
    .await;
    assert!(ok, "{text}");
    assert!(text.contains("a***@e***.com"), "{text}");
    assert_no_seeded_value("read_table", &text);

    // Every other use is refused, naming the column, before anything runs.
    for sql in [
        "SELECT id FROM crm.customers WHERE email LIKE 'a%'",
        "SELECT id FROM crm.customers ORDER BY email",
        "SELECT email FROM crm.customers ORDER BY 1",
        "SELECT email, count(*) FROM crm.customers GROUP BY email",
        "SELECT DISTINCT email FROM crm.customers",
        "SELECT DISTINCT ON (email) id FROM crm.customers",
        "SELECT lower(email) FROM crm.customers",
        "SELECT length(email) FROM crm.customers",
        "SELECT email::int FROM crm.customers",
        "SELECT CAST(phone AS bigint) FROM crm.customers",
        "SELECT email || '' FROM crm.customers",
        "SELECT coalesce(email, 'none') FROM crm.customers",
        "SELECT CASE WHEN email IS NULL THEN 1 END FROM crm.customers",
        "SELECT row_to_json(c) FROM crm.customers c",
        "SELECT c::text FROM crm.customers c",
        "SELECT c FROM crm.customers c",
        "SELECT to_jsonb(c.*) FROM crm.customers c",
        "SELECT string_agg(email, ',') FROM crm.customers",
        "SELECT max(phone) FROM crm.customers",
        "SELECT count(DISTINCT email) FROM crm.customers",
        "SELECT name FROM crm.customers UNION SELECT email FROM crm.customers",
        "SELECT email FROM crm.customers UNION ALL SELECT 'x'",
        "SELECT (SELECT email FROM crm.customers LIMIT 1)",
        "SELECT 1 WHERE 'x' IN (SELECT email FROM crm.customers)",
        "SELECT a.id FROM crm.customers a JOIN crm.customers b ON a.email = b.email",
        "SELECT a.id FROM crm.customers a JOIN crm.customers b USING (email)",
        "SELECT u FROM crm.customers c, unnest(ARRAY[c.email]) u",
        "SELECT v.x FROM crm.customers c, LATERAL (VALUES (c.phone)) v(x)",
        "SELECT id, rank() OVER (PARTITION BY email) FROM crm.customers",
        "SELECT id FROM crm.filtered",
        "SELECT email FROM crm.customers WHERE email IS NOT NULL",
        "EXPLAIN ANALYZE SELECT id FROM crm.customers WHERE email LIKE 'a%'",
        "SELECT id FROM crm.customer_emails WHERE email LIKE '%org'",
        "WITH c AS (SELECT email FROM crm.customers) SELECT upper(email) FROM c",
    ] {
        let (ok, text) = answer(&client, "execute_query", json!({"sql": sql})).await;
        assert!(!ok, "{sql} was answered: {text}");
        assert!(
            text.contains("column crm.customers.email is masked")
                || text.contains("column crm.customers.phone is masked"),
            "{sql}: {text}"
        );
        assert_no_seeded_value(sql, &text);
    }

    // get_table_stats, describe_table and search_tables reveal no values either.
    for (tool, arguments) in [
        ("get_table_stats", json!({"table": "crm.customers"})),
        ("describe_table", json!({"table": "crm.customers"})),
        ("search_tables", json!({"term": "email"})),
    ] {
        let (ok, text) = answer(&client, tool, arguments).await;
        assert!(ok, "{tool}: {text}");
        assert_no_seeded_value(tool, &text);
    }
    client.cancel().await.ok();
    let audit = std::fs::read_to_string(audit.path()).unwrap();
    assert!(audit.lines().count() > 40, "{audit}");
    assert_no_seeded_value("the audit log", &audit);

    // `pgmcp check --pii` finds the columns by name and by their values, prints the masks to add, and never a value.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_pgmcp"))
        .args(["check", "--pii", "--database-url", &common::superuser_url()])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for expected in [
        "crm.customers.email: email (name and values)",
        "crm.customers.phone: phone (name and values)",
        "table = \"crm.customers\"\ncolumns = [\"email\", \"phone\"]\nmode = \"partial\"",
    ] {
        assert!(
            report.contains(expected),
            "{expected} missing from:\n{report}"
        );
    }
    assert!(!report.contains("crm.customers.name"), "{report}");
    assert_no_seeded_value("check --pii", &report);
}

/// A masked column of a type the connection has not met yet (an enum, and an array of it): preparing the
/// statement makes tokio-postgres parse its own type lookups while PostgreSQL still prints trees, and the masks must
/// be read from the statement's tree, not from theirs. Each call is a fresh server's first, and is repeated while its
/// verdict is remembered.
#[tokio::test]
async fn a_masked_column_of_a_type_new_to_the_connection_comes_back_masked() {
    let _ = cluster();
    observer()
        .await
        .batch_execute(
            "DROP SCHEMA IF EXISTS loyalty CASCADE;
             CREATE SCHEMA loyalty;
             CREATE TYPE loyalty.tier AS ENUM ('tier_platinum_hidden', 'tier_gold_hidden');
             CREATE TABLE loyalty.members (id int PRIMARY KEY, tier loyalty.tier, past loyalty.tier[]);
             INSERT INTO loyalty.members VALUES (1, 'tier_platinum_hidden', '{tier_gold_hidden}');",
        )
        .await
        .unwrap();
    let config = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(
        config.path(),
        format!(
            "[profiles.loyalty]\nurl = \"{}\"\n[[profiles.loyalty.masks]]\ntable = \"loyalty.members\"\n\
             columns = [\"tier\", \"past\"]\n",
            common::superuser_url()
        ),
    )
    .unwrap();
    for sql in [
        "SELECT tier, past, id FROM loyalty.members",
        "SELECT id, past FROM loyalty.members",
        "SELECT * FROM loyalty.members WHERE id = 1",
    ] {
        let client = spawn(
            &["serve", "--config", config.path().to_str().unwrap()],
            &[],
            Era::Legacy,
        )
        .await;
        for _ in 0..2 {
            let (ok, text) = answer(&client, "execute_query", json!({"sql": sql})).await;
            assert!(ok, "{sql}: {text}");
            assert!(
                !text.contains("_hidden"),
                "{sql} leaks a masked value: {text}"
            );
            assert!(text.contains("[masked]"), "{sql}: {text}");
        }
        client.cancel().await.ok();
    }
}

#[tokio::test]
async fn a_bad_mask_fails_start_up_naming_the_setting() {
    let file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(
        file.path(),
        format!(
            "[profiles.crm]\nurl = \"{}\"\n[[profiles.crm.masks]]\ntable = \"crm.customers\"\ncolumns = [\"email\"]\nmode = \"blur\"\n",
            common::superuser_url()
        ),
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_pgmcp"))
        .args(["check", "--config", file.path().to_str().unwrap()])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("profiles.crm.masks[0].mode")
            && stderr.contains("redact, null, hash, partial"),
        "{stderr}"
    );
}
