//! Several profiles at once, read-write profiles, and the pool's session reset.

mod common;

use std::time::Duration;

use common::{Era, call_err, call_ok, cluster, rows, spawn};
use pgmcp::config::{ConfigSources, resolve};
use pgmcp::db::Database;
use serde_json::json;

fn write_config(contents: &str) -> tempfile::NamedTempFile {
    let file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(file.path(), contents).unwrap();
    file
}

fn two_profiles() -> String {
    let port = cluster().port();
    format!(
        "default_profile = \"library\"\n\
         [profiles.library]\ndescription = \"The book catalogue (read-only)\"\nurl = \"postgresql://reader@127.0.0.1:{port}/app\"\n\
         [profiles.admin]\ndescription = \"Same database, writes allowed\"\nurl = \"postgresql://writer@127.0.0.1:{port}/app\"\n\
         access_mode = \"read_write\"\nmax_rows = 50\n"
    )
}

#[tokio::test]
async fn several_profiles_are_listed_and_selectable() {
    let config = write_config(&two_profiles());
    let client = spawn(
        &["serve", "--config", config.path().to_str().unwrap()],
        &[],
        Era::Legacy,
    )
    .await;
    let tools = client.list_all_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(names.first(), Some(&"list_profiles"));
    assert_eq!(names.last(), Some(&"execute_write"));
    let execute = tools.iter().find(|t| t.name == "execute_query").unwrap();
    assert_eq!(
        execute.input_schema["properties"]["profile"]["enum"],
        json!(["library", "admin"])
    );
    let write = tools.iter().find(|t| t.name == "execute_write").unwrap();
    assert_eq!(
        write.input_schema["properties"]["profile"]["enum"],
        json!(["admin"])
    );
    assert_eq!(
        write.annotations.as_ref().unwrap().destructive_hint,
        Some(true)
    );
    assert_eq!(
        write.annotations.as_ref().unwrap().read_only_hint,
        Some(false)
    );

    let profiles = call_ok(&client, "list_profiles", json!({})).await;
    assert_eq!(profiles["profiles"][0]["name"], json!("library"));
    assert_eq!(profiles["profiles"][0]["default"], json!(true));
    assert_eq!(profiles["profiles"][1]["access_mode"], json!("read_write"));
    assert!(
        !profiles.to_string().contains("postgresql://"),
        "no connection strings in {profiles}"
    );

    let who = call_ok(
        &client,
        "execute_query",
        json!({"sql": "SELECT current_user"}),
    )
    .await;
    assert_eq!(rows(&who)[0], json!(["reader"]));
    let who = call_ok(
        &client,
        "execute_query",
        json!({"sql": "SELECT current_user", "profile": "admin"}),
    )
    .await;
    assert_eq!(rows(&who)[0], json!(["writer"]));
    let err = call_err(
        &client,
        "execute_query",
        json!({"sql": "SELECT 1", "profile": "prod"}),
    )
    .await;
    assert!(
        err["message"].as_str().unwrap().contains("library, admin"),
        "{err}"
    );
    client.cancel().await.ok();
}

#[tokio::test]
async fn read_write_profiles_commit_single_statement_dml_only() {
    let config = write_config(&two_profiles());
    let client = spawn(
        &[
            "serve",
            "--config",
            config.path().to_str().unwrap(),
            "--profile",
            "admin",
        ],
        &[],
        Era::Stateless,
    )
    .await;
    let inserted = call_ok(
        &client,
        "execute_write",
        json!({"sql": "INSERT INTO canary VALUES ($1, $2) RETURNING id, note", "params": [1001, "written"]}),
    )
    .await;
    assert_eq!(rows(&inserted)[0], json!([1001, "written"]));
    assert_eq!(inserted["rows_affected"], json!(1));
    let read_back = call_ok(
        &client,
        "execute_query",
        json!({"sql": "SELECT note FROM canary WHERE id = 1001"}),
    )
    .await;
    assert_eq!(
        rows(&read_back)[0],
        json!(["written"]),
        "the write was committed"
    );
    let deleted = call_ok(
        &client,
        "execute_write",
        json!({"sql": "DELETE FROM canary WHERE id = 1001"}),
    )
    .await;
    assert_eq!(deleted["rows_affected"], json!(1));

    // execute_query stays read-only even on a read-write profile.
    let err = call_err(
        &client,
        "execute_query",
        json!({"sql": "DELETE FROM canary"}),
    )
    .await;
    assert_eq!(err["error"], json!("rejected"));
    // DDL needs allow_ddl; transaction control and SET are never allowed.
    for sql in [
        "CREATE TABLE t (x int)",
        "COMMIT",
        "SET search_path = x",
        "INSERT INTO canary VALUES (1, 'a'); DELETE FROM canary",
    ] {
        let err = call_err(&client, "execute_write", json!({"sql": sql})).await;
        assert_eq!(err["error"], json!("rejected"), "{sql}: {err}");
    }
    let err = call_err(&client, "execute_write", json!({"sql": "SELECT 1"})).await;
    assert!(
        err["message"].as_str().unwrap().contains("execute_query"),
        "{err}"
    );
    let count = call_ok(
        &client,
        "execute_query",
        json!({"sql": "SELECT count(*) FROM canary"}),
    )
    .await;
    assert_eq!(rows(&count)[0], json!([10]));
    client.cancel().await.ok();
}

#[tokio::test]
async fn a_returned_connection_carries_no_session_state() {
    let sources = ConfigSources {
        database_url: Some(format!(
            "postgresql://reader@127.0.0.1:{}/app",
            cluster().port()
        )),
        overrides: pgmcp::config::ProfileOverrides {
            pool_max: Some(1),
            ..Default::default()
        },
        ..Default::default()
    };
    let profile = resolve(&sources).unwrap().remove(0);
    let db = Database::new(profile).unwrap();
    let backend_pid = {
        let conn = db.get().await.unwrap();
        // Simulate a caller that changed session state by any means.
        conn.batch_execute(
            "SET search_path = pg_catalog; SET statement_timeout = '1h'; SET SESSION AUTHORIZATION DEFAULT; \
             CREATE TEMP TABLE leftover (x int); LISTEN channel; SELECT pg_advisory_lock(42)",
        )
        .await
        .unwrap();
        conn.query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get::<_, i32>(0)
    };
    let conn = db.get().await.unwrap();
    let row = conn
        .query_one(
            "SELECT pg_backend_pid(), current_setting('search_path'), current_setting('statement_timeout'), \
             (SELECT count(*) FROM pg_class WHERE relname = 'leftover') + (SELECT count(*) FROM pg_listening_channels()) \
               + (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid())",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, i32>(0),
        backend_pid,
        "the pool (max 1) handed back the same connection"
    );
    assert_eq!(row.get::<_, String>(1), "\"$user\", public");
    assert_eq!(
        row.get::<_, String>(2),
        "30s",
        "statement_timeout is back to the profile's value"
    );
    assert_eq!(row.get::<_, i64>(3), 0);
    drop(conn);
    tokio::time::sleep(Duration::from_millis(10)).await;
}
