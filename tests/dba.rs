//! The DBA's tools against a real PostgreSQL with pg_stat_statements preloaded and hypopg installed (Debian's
//! postgresql-NN-hypopg, which ./scripts/test.sh installs): a healthy database reads healthy; a database built
//! with each health problem shows each one; index_advice finds the one missing index by its cost drop and
//! nothing for indexed statements; hypothetical indexes never outlive the call. Each tool runs as a role with
//! pg_monitor and as one without it.

use std::time::Duration;

use pgmcp::demo::cluster::{ClusterOptions, TempCluster};
use serde_json::{Value, json};

mod common;
use common::{Client, Era, call_err, call_ok, spawn};

const ROLES: &str = "
CREATE ROLE monitor LOGIN IN ROLE pg_monitor;
CREATE ROLE plain LOGIN;
";

const HEALTHY: &str = "
CREATE TABLE accounts (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, email text NOT NULL UNIQUE);
CREATE TABLE payments (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES accounts (id), amount numeric NOT NULL CHECK (amount > 0));
CREATE INDEX payments_account_idx ON payments (account_id);
INSERT INTO accounts (email) SELECT 'a' || g || '@example.com' FROM generate_series(1, 500) g;
INSERT INTO payments (account_id, amount) SELECT 1 + g % 500, g FROM generate_series(1, 5000) g;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO monitor, plain;
";

/// Each health problem of the issue, one object each. The invalid index and the blocking and idle sessions are
/// made by the test itself.
const PROBLEMS: &str = "
CREATE EXTENSION pg_stat_statements;
CREATE EXTENSION hypopg;
CREATE TABLE dup (id int PRIMARY KEY, a int);
CREATE INDEX dup_a_first ON dup (a);
CREATE INDEX dup_a_second ON dup (a);
CREATE TABLE inv (id int PRIMARY KEY, v int);
INSERT INTO inv VALUES (1, 1), (2, 1);
CREATE SEQUENCE nearly_done AS int MAXVALUE 100;
SELECT setval('nearly_done', 95);
CREATE TABLE unchecked (id int PRIMARY KEY, x int);
INSERT INTO unchecked VALUES (1, -1);
ALTER TABLE unchecked ADD CONSTRAINT x_positive CHECK (x > 0) NOT VALID;
CREATE TABLE dead (id int PRIMARY KEY, pad text) WITH (autovacuum_enabled = false);
INSERT INTO dead SELECT g, repeat('x', 50) FROM generate_series(1, 20000) g;
ANALYZE dead;
DELETE FROM dead WHERE id > 2000;
CREATE TABLE locked (id int PRIMARY KEY);
CREATE TABLE orders (id int PRIMARY KEY, customer_id int NOT NULL, status text NOT NULL, note text);
INSERT INTO orders SELECT g, g % 5000, CASE WHEN g % 10 = 0 THEN 'open' ELSE 'done' END, repeat('n', 40)
    FROM generate_series(1, 100000) g;
ANALYZE orders;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO monitor, plain;
GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO monitor, plain;
";

const SLOW: &str = "SELECT id, status FROM orders WHERE customer_id = 42";
const INDEXED: &str = "SELECT customer_id FROM orders WHERE id = 42";

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
}

fn role_url(cluster: &TempCluster, role: &str, db: &str) -> String {
    format!(
        "postgresql://{role}@{}:{}/{db}",
        cluster.host(),
        cluster.port()
    )
}

/// `serve` on one pooled connection: a call's own session check runs after its answer, so with more connections
/// the next call could take another one, and "the same backend" would no longer tell a reset from a close.
async fn serve(cluster: &TempCluster, role: &str, db: &str) -> Client {
    let url = role_url(cluster, role, db);
    spawn(
        &["serve", "--database-url", &url, "--pool-max", "1"],
        &[],
        Era::Legacy,
    )
    .await
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["check"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {report}"))
}

fn findings(report: &Value, name: &str) -> Vec<Value> {
    check(report, name)["findings"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn finding<'a>(found: &'a [Value], object: &str) -> &'a Value {
    found
        .iter()
        .find(|f| f["object"] == object)
        .unwrap_or_else(|| panic!("no finding for {object} in {found:?}"))
}

#[tokio::test]
async fn dba_tools_on_a_healthy_and_a_troubled_database() {
    let cluster = tokio::task::spawn_blocking(|| {
        TempCluster::start(&ClusterOptions {
            settings: vec![(
                "shared_preload_libraries".into(),
                "pg_stat_statements".into(),
            )],
            ..Default::default()
        })
    })
    .await
    .unwrap()
    .expect("start a cluster with pg_stat_statements preloaded");
    let admin = connect(&cluster.url("postgres")).await;
    admin.batch_execute(ROLES).await.unwrap();
    admin
        .batch_execute("CREATE DATABASE healthy")
        .await
        .unwrap();
    admin
        .batch_execute("CREATE DATABASE troubled")
        .await
        .unwrap();
    let healthy = connect(&cluster.url("healthy")).await;
    healthy.batch_execute(HEALTHY).await.unwrap();
    healthy.batch_execute("VACUUM ANALYZE").await.unwrap();

    // A healthy database: every check ok, as both roles; top_queries explains its own setup.
    for role in ["monitor", "plain"] {
        let pgmcp = serve(&cluster, role, "healthy").await;
        let report = call_ok(&pgmcp, "health_check", json!({})).await;
        assert_eq!(report["status"], "ok", "{role}: {report:#}");
        assert_eq!(report["checks"].as_array().unwrap().len(), 15);
        for c in report["checks"].as_array().unwrap() {
            assert!(
                c.get("findings").is_none() && c.get("not_run").is_none(),
                "{role}: {c}"
            );
        }
        let limited = check(&report, "idle_in_transaction")
            .get("limited")
            .cloned();
        match role {
            "monitor" => assert!(limited.is_none(), "{limited:?}"),
            _ => assert!(
                limited
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .contains("GRANT pg_monitor"),
                "the plain role is told which grant shows other sessions"
            ),
        }
        let top = call_ok(&pgmcp, "top_queries", json!({})).await;
        assert_eq!(top["available"], false);
        let setup = top["setup"].as_str().unwrap();
        for step in [
            "shared_preload_libraries",
            "azure.extensions",
            "CREATE EXTENSION pg_stat_statements",
        ] {
            assert!(setup.contains(step), "{setup}");
        }
        let advice = call_ok(
            &pgmcp,
            "index_advice",
            json!({"statements": ["SELECT * FROM payments WHERE amount = 1"]}),
        )
        .await;
        let setup = advice["setup"]
            .as_str()
            .expect("hypopg missing: setup steps");
        assert!(
            setup.contains("CREATE EXTENSION hypopg") && setup.contains("azure.extensions"),
            "{setup}"
        );
        pgmcp.cancel().await.unwrap();
    }

    let troubled_url = cluster.url("troubled");
    let troubled = connect(&troubled_url).await;
    troubled.batch_execute(PROBLEMS).await.unwrap();
    let failed = troubled
        .batch_execute("CREATE UNIQUE INDEX CONCURRENTLY inv_v ON inv (v)")
        .await
        .expect_err("duplicate values fail the concurrent build");
    assert_eq!(failed.code().unwrap().code(), "23505");
    // The blocker holds a lock, idle in its transaction; the waiter queues behind it; a third idles in one.
    let blocker = connect(&troubled_url).await;
    blocker
        .batch_execute("BEGIN; LOCK TABLE locked IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let blocker_pid: i32 = blocker
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let waiter = connect(&troubled_url).await;
    let waiter_pid: i32 = waiter
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let waiting = tokio::spawn(async move {
        waiter
            .query("SELECT count(*) FROM locked", &[])
            .await
            .map(|_| ())
    });
    let idler = connect(&troubled_url).await;
    idler.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let idler_pid: i32 = idler
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    for _ in 0..3 {
        troubled.batch_execute(SLOW).await.unwrap();
    }
    // Statistics reach the shared view at most once a second per backend unless a flush is asked for.
    troubled
        .batch_execute("SELECT pg_stat_force_next_flush()")
        .await
        .unwrap();
    troubled.batch_execute("SELECT 1").await.unwrap();
    // Past the 1 s threshold, and the statistics of the deletes flushed.
    tokio::time::sleep(Duration::from_millis(1800)).await;

    let pgmcp = serve(&cluster, "monitor", "troubled").await;
    let report = call_ok(&pgmcp, "health_check", json!({"min_duration_seconds": 1})).await;
    assert_eq!(report["status"], "critical", "{report:#}");
    let invalid = findings(&report, "invalid_indexes");
    assert_eq!(finding(&invalid, "public.inv_v")["status"], "critical");
    assert!(
        finding(&invalid, "public.inv_v")["fix"]
            .as_str()
            .unwrap()
            .starts_with("REINDEX INDEX CONCURRENTLY public.inv_v")
    );
    let dups = findings(&report, "duplicate_indexes");
    assert_eq!(dups.len(), 1, "{dups:?}");
    assert_eq!(dups[0]["object"], "public.dup_a_second");
    assert_eq!(
        dups[0]["fix"],
        "DROP INDEX CONCURRENTLY public.dup_a_second;"
    );
    let sequences = findings(&report, "sequences");
    assert_eq!(
        finding(&sequences, "public.nearly_done")["status"],
        "critical"
    );
    assert!(
        finding(&sequences, "public.nearly_done")["fix"]
            .as_str()
            .unwrap()
            .contains("AS bigint")
    );
    let unchecked = findings(&report, "unvalidated_constraints");
    assert_eq!(
        unchecked[0]["fix"],
        "ALTER TABLE unchecked VALIDATE CONSTRAINT x_positive;"
    );
    let vacuum = findings(&report, "vacuum");
    let dead = finding(&vacuum, "public.dead");
    assert_eq!(dead["status"], "critical", "{dead}");
    assert!(
        dead["evidence"].as_str().unwrap().contains("18000 dead"),
        "{dead}"
    );
    assert!(
        dead["fix"]
            .as_str()
            .unwrap()
            .contains("RESET (autovacuum_enabled)"),
        "{dead}"
    );
    let waits = findings(&report, "lock_waits");
    let wait = finding(&waits, &format!("pid {waiter_pid}"));
    assert!(
        wait["evidence"]
            .as_str()
            .unwrap()
            .contains(&format!("blocked by pid {blocker_pid}")),
        "{wait}"
    );
    let idle = findings(&report, "idle_in_transaction");
    finding(&idle, &format!("pid {blocker_pid}"));
    finding(&idle, &format!("pid {idler_pid}"));
    assert!(findings(&report, "missing_primary_keys").is_empty());

    let activity = call_ok(&pgmcp, "activity", json!({})).await;
    let sessions = activity["sessions"].as_array().unwrap();
    let waiter_row = sessions
        .iter()
        .find(|s| s["pid"] == waiter_pid)
        .expect("the waiter is listed");
    assert_eq!(waiter_row["blocked_by"], json!([blocker_pid]));
    assert_eq!(waiter_row["wait_event"], "Lock/relation");
    assert!(activity.get("hidden_sessions").is_none());

    let top = call_ok(
        &pgmcp,
        "top_queries",
        json!({"order_by": "calls", "limit": 50}),
    )
    .await;
    assert_eq!(top["available"], true);
    assert!(top["since"].is_string());
    let slow = top["queries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| {
            q["query"]
                .as_str()
                .unwrap()
                .contains("FROM orders WHERE customer_id = $1")
        })
        .expect("the workload's normalized text");
    assert!(slow["calls"].as_i64().unwrap() >= 3);

    // The role without pg_monitor: the same problems it can see, told what it cannot.
    let plain = serve(&cluster, "plain", "troubled").await;
    let report = call_ok(&plain, "health_check", json!({"min_duration_seconds": 1})).await;
    finding(&findings(&report, "invalid_indexes"), "public.inv_v");
    assert!(
        findings(&report, "idle_in_transaction").is_empty(),
        "other roles' sessions are not visible"
    );
    assert!(
        check(&report, "lock_waits")["limited"]
            .as_str()
            .unwrap()
            .contains("pg_monitor")
    );
    let activity = call_ok(&plain, "activity", json!({})).await;
    assert!(
        activity["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["pid"] != waiter_pid)
    );
    assert!(
        activity["hidden_sessions"].as_i64().unwrap() >= 3,
        "{activity}"
    );
    assert!(activity["hint"].as_str().unwrap().contains("pg_monitor"));
    let top = call_ok(&plain, "top_queries", json!({})).await;
    assert_eq!(top["available"], true);
    assert!(
        top["hidden_texts"].as_str().unwrap().contains("pg_monitor"),
        "{top}"
    );

    blocker.batch_execute("ROLLBACK").await.unwrap();
    waiting.await.unwrap().unwrap();
    idler.batch_execute("ROLLBACK").await.unwrap();

    for (role, client) in [("monitor", &pgmcp), ("plain", &plain)] {
        index_advice_measures_the_missing_index(role, client, &admin).await;
    }
    pgmcp.cancel().await.unwrap();
    plain.cancel().await.unwrap();
}

async fn index_advice_measures_the_missing_index(
    role: &str,
    pgmcp: &Client,
    admin: &tokio_postgres::Client,
) {
    let pid = |v: Value| v["rows"][0][0].as_i64().unwrap();
    let before = pid(call_ok(
        pgmcp,
        "execute_query",
        json!({"sql": "SELECT pg_backend_pid()"}),
    )
    .await);

    let advice = call_ok(
        pgmcp,
        "index_advice",
        json!({"statements": [SLOW, INDEXED]}),
    )
    .await;
    let recommendations = advice["recommendations"].as_array().unwrap();
    assert_eq!(recommendations.len(), 1, "{role}: {advice:#}");
    let only = &recommendations[0];
    assert_eq!(
        only["sql"],
        "CREATE INDEX CONCURRENTLY ON public.orders (\"customer_id\");"
    );
    assert_eq!(only["helps"], json!([1]));
    assert!(
        only["estimated_size_bytes"].as_i64().unwrap() > 100_000,
        "{only}"
    );
    let (cost_before, cost_after) = (
        only["workload_cost_before"].as_f64().unwrap(),
        only["workload_cost_after"].as_f64().unwrap(),
    );
    assert!(cost_after < cost_before / 10.0, "{only}");
    let statements = advice["statements"].as_array().unwrap();
    assert!(statements[0]["cost_after"].as_f64() < statements[0]["cost_before"].as_f64());
    assert_eq!(
        statements[1]["cost_after"], statements[1]["cost_before"],
        "the indexed query gains nothing"
    );

    let indexed_only = call_ok(pgmcp, "index_advice", json!({"statements": [INDEXED]})).await;
    assert_eq!(indexed_only["recommendations"], json!([]), "{indexed_only}");

    // Nothing outlived the call: the same connection plans the slow query without any hypothetical index.
    let plain_plan = call_ok(pgmcp, "explain_query", json!({"sql": SLOW})).await;
    assert!(
        plain_plan["text"]
            .as_str()
            .unwrap()
            .starts_with("Seq Scan on orders"),
        "{plain_plan}"
    );
    let reading = plain_plan["reading"].as_array().unwrap();
    assert_eq!(reading[0]["node"], 1);
    assert!(
        reading[0]["note"]
            .as_str()
            .unwrap()
            .contains("reads all ~100000 rows of orders"),
        "{reading:?}"
    );
    let after = pid(call_ok(
        pgmcp,
        "execute_query",
        json!({"sql": "SELECT pg_backend_pid()"}),
    )
    .await);
    assert_eq!(before, after, "{role}: the session was reset, not closed");
    let marks: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(marks, 0);

    let hypothetical = call_ok(
        pgmcp,
        "explain_query",
        json!({"sql": SLOW,
        "hypothetical_indexes": [{"table": "orders", "columns": ["customer_id"]}]}),
    )
    .await;
    assert_eq!(
        hypothetical["hypothetical_indexes"][0]["used"], true,
        "{hypothetical}"
    );
    assert!(
        hypothetical["text"]
            .as_str()
            .unwrap()
            .contains("btree_orders_customer_id"),
        "{hypothetical}"
    );
    let again = call_ok(pgmcp, "explain_query", json!({"sql": SLOW})).await;
    assert!(
        again["text"]
            .as_str()
            .unwrap()
            .starts_with("Seq Scan on orders"),
        "{again}"
    );

    let refused = call_err(
        pgmcp,
        "explain_query",
        json!({"sql": SLOW, "analyze": true,
        "hypothetical_indexes": [{"table": "orders", "columns": ["customer_id"]}]}),
    )
    .await;
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("without `analyze`"),
        "{refused}"
    );
    let unknown = call_err(
        pgmcp,
        "explain_query",
        json!({"sql": SLOW,
        "hypothetical_indexes": [{"table": "orders", "columns": ["nope"]}]}),
    )
    .await;
    assert!(
        unknown["message"]
            .as_str()
            .unwrap()
            .contains("column `nope` does not exist"),
        "{unknown}"
    );

    // hypopg is pgmcp's to call, never the caller's.
    let direct = call_err(
        pgmcp,
        "execute_query",
        json!({"sql": "SELECT * FROM hypopg_create_index('CREATE INDEX ON orders (status)')"}),
    )
    .await;
    assert_eq!(direct["error"], "rejected", "{direct}");
    assert!(
        direct["reason"]
            .as_str()
            .unwrap()
            .contains("hypopg_create_index"),
        "{direct}"
    );
}

/// The "done when": on the demo database, the seeded slow query gets the right index, shown by the cost
/// drop, as the demo's read-only role.
#[tokio::test]
async fn index_advice_finds_the_demo_slow_querys_index() {
    let cluster = tokio::task::spawn_blocking(|| {
        let cluster = TempCluster::start(&ClusterOptions::default())?;
        pgmcp::demo::load_sample(&cluster, "restaurants")?;
        anyhow::Ok(cluster)
    })
    .await
    .unwrap()
    .expect("the demo database");
    let url = pgmcp::demo::demo_url(&cluster, "restaurants");
    let pgmcp = spawn(&["serve", "--database-url", &url], &[], Era::Legacy).await;
    let plan = call_ok(
        &pgmcp,
        "explain_query",
        json!({"sql": pgmcp::demo::SLOW_QUERY}),
    )
    .await;
    assert!(
        plan["reading"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["at"] == "Seq Scan on reviews v"),
        "{plan:#}"
    );
    let advice = call_ok(
        &pgmcp,
        "index_advice",
        json!({"statements": [pgmcp::demo::SLOW_QUERY]}),
    )
    .await;
    let recommendations = advice["recommendations"].as_array().unwrap();
    assert_eq!(recommendations.len(), 1, "{advice:#}");
    assert_eq!(
        recommendations[0]["sql"],
        "CREATE INDEX CONCURRENTLY ON public.reviews (\"visited_on\");"
    );
    let cost = &advice["statements"][0];
    assert!(
        cost["cost_after"].as_f64().unwrap() * 10.0 < cost["cost_before"].as_f64().unwrap(),
        "{cost}"
    );
    pgmcp.cancel().await.unwrap();
}
