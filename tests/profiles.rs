//! Several profiles at once, read-write profiles, and the pool's session reset.

mod common;

use common::{Era, call_err, call_ok, cluster, rows, spawn};

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

/// Read-only calls reuse their connection as it is (they cannot leave session state behind); a write can, through
/// a function the guard does not look into, so its connection is reset before any call gets it again.
#[tokio::test]
async fn a_write_that_changed_its_session_leaves_nothing_for_the_next_call() {
    let observer = common::observer().await;
    observer
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS session_probe (x int);
             CREATE OR REPLACE FUNCTION leave_session_state() RETURNS int LANGUAGE plpgsql VOLATILE AS $$
             BEGIN
               PERFORM set_config('search_path', 'pg_catalog', false);
               PERFORM pg_advisory_lock(4242);
               RETURN 1;
             END $$;",
        )
        .await
        .unwrap();
    let url = common::superuser_url();
    let client = spawn(
        &[
            "serve",
            "--database-url",
            &url,
            "--access-mode",
            "read_write",
            "--pool-max",
            "1",
        ],
        &[],
        Era::Stateless,
    )
    .await;
    let probe = json!({"sql": "SELECT pg_backend_pid(), current_setting('search_path')"});
    let before = call_ok(&client, "execute_query", probe.clone()).await;
    let backend = rows(&before)[0][0].as_i64().unwrap();
    call_ok(
        &client,
        "execute_write",
        json!({"sql": "INSERT INTO session_probe SELECT leave_session_state()"}),
    )
    .await;
    let after = call_ok(&client, "execute_query", probe).await;
    assert_eq!(
        rows(&after)[0][0].as_i64().unwrap(),
        backend,
        "the pool (max 1) handed back the same connection"
    );
    assert_eq!(rows(&after)[0][1], json!("\"$user\", public"));
    let locks: i64 = observer
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = $1",
            &[&(backend as i32)],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(locks, 0, "the write's advisory lock was released");
    client.cancel().await.ok();
}

/// A repeated statement reuses its prepared form on the connection; when the table changes shape under it,
/// PostgreSQL refuses the old statement ("cached plan must not change result type") and pgmcp prepares it again,
/// so the caller sees the new columns instead of an error.
#[tokio::test]
async fn a_cached_statement_follows_a_table_that_changed_shape() {
    let observer = common::observer().await;
    observer
        .batch_execute(
            "DROP TABLE IF EXISTS reshaped; CREATE TABLE reshaped (id int); INSERT INTO reshaped VALUES (1);",
        )
        .await
        .unwrap();
    let url = common::superuser_url();
    let client = spawn(
        &["serve", "--database-url", &url, "--pool-max", "1"],
        &[],
        Era::Stateless,
    )
    .await;
    let query = json!({"sql": "SELECT * FROM reshaped"});
    for _ in 0..2 {
        let answer = call_ok(&client, "execute_query", query.clone()).await;
        assert_eq!(rows(&answer)[0], json!([1]));
    }
    observer
        .batch_execute("ALTER TABLE reshaped ADD COLUMN note text DEFAULT 'new'")
        .await
        .unwrap();
    let answer = call_ok(&client, "execute_query", query).await;
    assert_eq!(rows(&answer)[0], json!([1, "new"]));
    assert_eq!(answer["columns"][1]["name"], json!("note"));
    client.cancel().await.ok();
}
