//! Several profiles at once, read-write profiles, and the pool's session reset.

mod common;

use common::{Era, call_err, call_ok, cluster, rows, spawn};

use serde_json::{Value, json};

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
    // The default profile is read-only, so execute_write has no default to offer.
    assert_eq!(write.input_schema["required"], json!(["sql", "profile"]));
    assert_eq!(
        execute.input_schema["properties"]["profile"]["description"],
        json!("Database profile to use (see list_profiles). Default: library.")
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

/// The backend and search_path a call sees, and whether its backend still holds an advisory lock.
async fn session_probe(client: &common::Client) -> (i64, Value) {
    let probe = json!({"sql": "SELECT pg_backend_pid(), current_setting('search_path')"});
    let answer = call_ok(client, "execute_query", probe).await;
    (
        rows(&answer)[0][0].as_i64().unwrap(),
        rows(&answer)[0][1].clone(),
    )
}

/// `serve` with one profile of a single pooled connection, so consecutive calls share a backend unless a call's
/// connection is closed; `extra` adds lines to the profile.
async fn serve_on_one_connection(extra: &str) -> common::Client {
    let config = write_config(&format!(
        "[profiles.one]\nurl = \"{}\"\npool_max = 1\n{extra}",
        common::superuser_url()
    ));
    spawn(
        &["serve", "--config", config.path().to_str().unwrap()],
        &[],
        Era::Stateless,
    )
    .await
}

/// `serve` allowing writes, on a single pooled connection.
async fn serve_writes_on_one_connection() -> common::Client {
    let url = common::superuser_url();
    spawn(
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
    .await
}

/// `serve_on_one_connection` with a plpgsql function `name` (no arguments, returning int) the profile trusts to
/// run in reads; `body` is its statements.
async fn serve_trusting(name: &str, volatility: &str, body: &str) -> common::Client {
    let observer = common::observer().await;
    let definition = format!(
        "CREATE OR REPLACE FUNCTION {name}() RETURNS int LANGUAGE plpgsql {volatility} AS $$ BEGIN {body} END $$"
    );
    observer.batch_execute(&definition).await.unwrap();
    serve_on_one_connection(&format!("allow_volatile_functions = [\"public.{name}\"]\n")).await
}

/// Waits (bounded) until `backend` holds no advisory lock: a closed connection's backend exits soon after.
async fn advisory_locks_of(observer: &tokio_postgres::Client, backend: i64) -> i64 {
    let mut locks = -1;
    for _ in 0..50 {
        locks = observer
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = $1",
                &[&(backend as i32)],
            )
            .await
            .unwrap()
            .get(0);
        if locks == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    locks
}

/// A clean connection is reused as it is; a write that changed its session (through a function the guard does
/// not look into) leaves its connection checked, found dirty and closed, so the next call gets a fresh one.
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
    let client = serve_writes_on_one_connection().await;
    let (backend, _) = session_probe(&client).await;
    assert_eq!(
        session_probe(&client).await.0,
        backend,
        "a clean connection is reused"
    );
    call_ok(
        &client,
        "execute_write",
        json!({"sql": "INSERT INTO session_probe SELECT leave_session_state()"}),
    )
    .await;
    let (after, search_path) = session_probe(&client).await;
    assert_ne!(after, backend, "the dirty connection was replaced");
    assert_eq!(search_path, json!("\"$user\", public"));
    assert_eq!(
        advisory_locks_of(&observer, backend).await,
        0,
        "the write's advisory lock went with its connection"
    );
    client.cancel().await.ok();
}

/// The session check does not trust the guard: a STABLE function the profile trusts may still take a session
/// advisory lock inside a read-only call (a trusted function's body is taken as declared, and a lock is not a
/// write). The lock must not outlive the call on a pooled connection. The first call of a statement is checked
/// on its own: the check counts the lock and the connection is closed. Later ones run in one flight whose check
/// releases the session's advisory locks, so the lock is gone when the answer is.
#[tokio::test]
async fn a_lock_a_read_took_does_not_outlive_the_call() {
    let observer = common::observer().await;
    let client = serve_trusting(
        "quietly_lock",
        "STABLE",
        "PERFORM pg_advisory_lock(4343);
         RETURN 1;",
    )
    .await;
    let lock_call = json!({"sql": "SELECT quietly_lock()"});
    let (first, _) = session_probe(&client).await;
    let answer = call_ok(&client, "execute_query", lock_call.clone()).await;
    assert_eq!(rows(&answer)[0], json!([1]));
    assert_eq!(advisory_locks_of(&observer, first).await, 0);
    let (backend, _) = session_probe(&client).await;
    assert_ne!(
        backend, first,
        "the connection that held the lock was closed"
    );
    for _ in 0..3 {
        let answer = call_ok(&client, "execute_query", lock_call.clone()).await;
        assert_eq!(rows(&answer)[0], json!([1]));
        // The next call is served once the check has answered: by then the lock is gone and the connection kept.
        assert_eq!(session_probe(&client).await.0, backend);
        assert_eq!(locks_held_now(&observer, backend).await, 0);
    }
    client.cancel().await.ok();
}

/// Advisory locks `backend` holds at this moment, without waiting.
async fn locks_held_now(observer: &tokio_postgres::Client, backend: i64) -> i64 {
    observer
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = $1",
            &[&(backend as i32)],
        )
        .await
        .unwrap()
        .get(0)
}

/// The check sent in a read's own flight looks only for what outlives a rollback. This holds PostgreSQL to the
/// rest: a function the profile trusts declares a holdable cursor, listens on a channel and changes a setting for
/// the session inside a read, and once the read is rolled back the same backend (kept, since nothing is left)
/// shows none of them.
#[tokio::test]
async fn what_a_read_declared_ends_with_its_rollback() {
    let client = serve_trusting(
        "declare_for_later",
        "VOLATILE",
        "EXECUTE 'DECLARE kept_for_later CURSOR WITH HOLD FOR SELECT 1';
               EXECUTE 'LISTEN kept_for_later';
               PERFORM set_config('search_path', 'kept_for_later', false);
               RETURN (SELECT count(*) FROM pg_cursors WHERE is_holdable)::int;",
    )
    .await;
    let (backend, search_path) = session_probe(&client).await;
    // The call's own portal is a cursor too; the function's is the one by its name.
    let left = json!({"sql": "SELECT (SELECT count(*) FROM pg_cursors WHERE name = 'kept_for_later')::int, \
                               (SELECT count(*) FROM pg_listening_channels())::int"});
    // The first call checks the statement in a transaction of its own; the second runs in one flight.
    for _ in 0..2 {
        let answer = call_ok(
            &client,
            "execute_query",
            json!({"sql": "SELECT declare_for_later()"}),
        )
        .await;
        assert_eq!(rows(&answer)[0], json!([1]), "the cursor was declared");
        assert_eq!(session_probe(&client).await, (backend, search_path.clone()));
        let answer = call_ok(&client, "execute_query", left.clone()).await;
        assert_eq!(rows(&answer)[0], json!([0, 0]));
    }
    client.cancel().await.ok();
}

/// A SQL-level prepared statement outlives a rollback: the check in a read's flight finds one a trusted function
/// left, and the connection is closed rather than given to the next call.
#[tokio::test]
async fn a_read_that_left_a_prepared_statement_does_not_return_to_the_pool() {
    let client = serve_trusting(
        "prepare_for_later",
        "VOLATILE",
        "EXECUTE 'PREPARE left_for_later AS SELECT 1';
               RETURN 1;",
    )
    .await;
    for _ in 0..2 {
        let (backend, _) = session_probe(&client).await;
        let answer = call_ok(
            &client,
            "execute_query",
            json!({"sql": "SELECT prepare_for_later()"}),
        )
        .await;
        assert_eq!(rows(&answer)[0], json!([1]));
        // A statement of that name on the next call's backend would make its PREPARE fail.
        assert_ne!(session_probe(&client).await.0, backend);
    }
    client.cancel().await.ok();
}

/// A type's default operator class names the comparison PostgreSQL runs whenever two values of the type are ordered
/// (`GREATEST`, `ORDER BY`), and no statement's tree names that function. Here one written in the database takes a
/// session advisory lock and prepares a statement. The guard finds it through the class and refuses the read; a
/// profile that trusts it gets the read, and what the function left does not outlive the call: the lock is
/// released and the connection holding the statement is not used again.
#[tokio::test]
async fn state_left_through_an_operator_class_does_not_outlive_the_read() {
    let observer = common::observer().await;
    observer
        .batch_execute(
            "DROP TYPE IF EXISTS ordered_probe CASCADE;
             CREATE TYPE ordered_probe AS (n int);
             CREATE FUNCTION ordered_probe_cmp(ordered_probe, ordered_probe) RETURNS int
               LANGUAGE plpgsql VOLATILE AS $$
             BEGIN
               PERFORM pg_advisory_lock(4347);
               IF NOT EXISTS (SELECT 1 FROM pg_prepared_statements WHERE name = 'left_by_a_comparison') THEN
                 EXECUTE 'PREPARE left_by_a_comparison AS SELECT 1';
               END IF;
               RETURN btint4cmp(($1).n, ($2).n);
             END $$;
             CREATE FUNCTION ordered_probe_lt(ordered_probe, ordered_probe) RETURNS bool
               LANGUAGE sql IMMUTABLE AS 'SELECT ($1).n < ($2).n';
             CREATE FUNCTION ordered_probe_le(ordered_probe, ordered_probe) RETURNS bool
               LANGUAGE sql IMMUTABLE AS 'SELECT ($1).n <= ($2).n';
             CREATE FUNCTION ordered_probe_eq(ordered_probe, ordered_probe) RETURNS bool
               LANGUAGE sql IMMUTABLE AS 'SELECT ($1).n = ($2).n';
             CREATE FUNCTION ordered_probe_ge(ordered_probe, ordered_probe) RETURNS bool
               LANGUAGE sql IMMUTABLE AS 'SELECT ($1).n >= ($2).n';
             CREATE FUNCTION ordered_probe_gt(ordered_probe, ordered_probe) RETURNS bool
               LANGUAGE sql IMMUTABLE AS 'SELECT ($1).n > ($2).n';
             CREATE OPERATOR < (LEFTARG = ordered_probe, RIGHTARG = ordered_probe, FUNCTION = ordered_probe_lt);
             CREATE OPERATOR <= (LEFTARG = ordered_probe, RIGHTARG = ordered_probe, FUNCTION = ordered_probe_le);
             CREATE OPERATOR = (LEFTARG = ordered_probe, RIGHTARG = ordered_probe, FUNCTION = ordered_probe_eq);
             CREATE OPERATOR >= (LEFTARG = ordered_probe, RIGHTARG = ordered_probe, FUNCTION = ordered_probe_ge);
             CREATE OPERATOR > (LEFTARG = ordered_probe, RIGHTARG = ordered_probe, FUNCTION = ordered_probe_gt);
             CREATE OPERATOR CLASS ordered_probe_ops DEFAULT FOR TYPE ordered_probe USING btree AS
               OPERATOR 1 <, OPERATOR 2 <=, OPERATOR 3 =, OPERATOR 4 >=, OPERATOR 5 >,
               FUNCTION 1 ordered_probe_cmp(ordered_probe, ordered_probe);",
        )
        .await
        .unwrap();
    let compare = json!({
        "sql": "SELECT (GREATEST(ROW($1::int)::ordered_probe, ROW($2::int)::ordered_probe)).n",
        "params": [1, 2],
    });
    let untrusting = serve_on_one_connection("").await;
    let (backend, _) = session_probe(&untrusting).await;
    let refused = call_err(&untrusting, "execute_query", compare.clone()).await;
    assert_eq!(refused["error"], json!("rejected"), "{refused}");
    assert!(
        refused["reason"]
            .as_str()
            .is_some_and(|why| why.contains("public.ordered_probe_")),
        "{refused}"
    );
    assert_eq!(locks_held_now(&observer, backend).await, 0);
    untrusting.cancel().await.ok();

    let client =
        serve_on_one_connection("allow_volatile_functions = [\"public.ordered_probe_*\"]\n").await;
    // The first run of a statement is checked on its own; the later ones in their read's flight.
    for _ in 0..3 {
        let (backend, _) = session_probe(&client).await;
        let answer = call_ok(&client, "execute_query", compare.clone()).await;
        assert_eq!(rows(&answer)[0], json!([2]));
        assert_eq!(
            advisory_locks_of(&observer, backend).await,
            0,
            "the comparison's lock outlived the read"
        );
        assert_ne!(
            session_probe(&client).await.0,
            backend,
            "the connection holding the comparison's prepared statement was used again"
        );
    }
    client.cancel().await.ok();
}

/// Reading a foreign table runs a query on its server, which nothing pgmcp checks can see: read-only calls are
/// refused until the profile trusts the table (`allow_foreign_tables`), and then read it.
#[tokio::test]
async fn a_foreign_table_is_read_once_the_profile_trusts_it() {
    let observer = common::observer().await;
    let here = observer
        .query_one(
            "SELECT inet_server_port()::text, current_database()::text, current_user::text",
            &[],
        )
        .await
        .unwrap();
    let (port, database, user): (String, String, String) = (here.get(0), here.get(1), here.get(2));
    observer
        .batch_execute(&format!(
            "CREATE EXTENSION IF NOT EXISTS postgres_fdw;
             DROP SERVER IF EXISTS loopback_probe CASCADE;
             CREATE SERVER loopback_probe FOREIGN DATA WRAPPER postgres_fdw
               OPTIONS (host '127.0.0.1', port '{port}', dbname '{database}');
             CREATE USER MAPPING FOR CURRENT_USER SERVER loopback_probe OPTIONS (user '{user}');
             CREATE FOREIGN TABLE remote_canary_probe (id int) SERVER loopback_probe
               OPTIONS (table_name 'canary');"
        ))
        .await
        .unwrap();
    let read = json!({"sql": "SELECT count(*) FROM remote_canary_probe"});
    let untrusting = serve_on_one_connection("").await;
    let refused = call_err(&untrusting, "execute_query", read.clone()).await;
    assert_eq!(refused["error"], json!("rejected"), "{refused}");
    assert!(
        refused["reason"].as_str().is_some_and(|why| {
            why.starts_with(
                "foreign table public.remote_canary_probe is not allowed in read-only mode",
            ) && why.contains("server loopback_probe")
                && why.contains("allow_foreign_tables")
        }),
        "{refused}"
    );
    untrusting.cancel().await.ok();

    let trusting = serve_on_one_connection("allow_foreign_tables = [\"public.remote_*\"]\n").await;
    let local: i64 = observer
        .query_one("SELECT count(*) FROM canary", &[])
        .await
        .unwrap()
        .get(0);
    let answer = call_ok(&trusting, "execute_query", read).await;
    assert_eq!(rows(&answer)[0], json!([local]));
    trusting.cancel().await.ok();
    observer
        .batch_execute("DROP SERVER loopback_probe CASCADE")
        .await
        .unwrap();
}

/// A read that leaves nothing gives its connection back: pgmcp's own prepared statements, created on the
/// connection by the first call's flight, are not mistaken for something a call left.
#[tokio::test]
async fn clean_reads_keep_their_connection() {
    let client = serve_on_one_connection("").await;
    let (backend, _) = session_probe(&client).await;
    for aid in 1..=4 {
        let answer = call_ok(
            &client,
            "execute_query",
            json!({"sql": "SELECT $1::int + 1", "params": [aid]}),
        )
        .await;
        assert_eq!(rows(&answer)[0], json!([aid + 1]));
        assert_eq!(session_probe(&client).await.0, backend);
    }
    client.cancel().await.ok();
}

/// A read that fails while it runs in its flight (after the BEGIN, so the server skips the rest of the flight
/// and leaves the transaction failed) gets the server's error, and the connection is rolled back and kept: the
/// next call on it runs normally, on the same backend.
#[tokio::test]
async fn a_read_that_fails_in_its_flight_leaves_a_usable_connection() {
    let client = serve_on_one_connection("").await;
    let (backend, _) = session_probe(&client).await;
    let divide = |by: i64| json!({"sql": "SELECT 10 / ($1::int - 1)", "params": [by]});
    // The first call checks the statement in a transaction of its own; the later ones run in one flight.
    for _ in 0..2 {
        assert_eq!(
            rows(&call_ok(&client, "execute_query", divide(3)).await)[0],
            json!([5])
        );
    }
    for _ in 0..2 {
        let refused = call_err(&client, "execute_query", divide(1)).await;
        assert_eq!(refused["sqlstate"], json!("22012"), "{refused}");
        assert_eq!(
            rows(&call_ok(&client, "execute_query", divide(6)).await)[0],
            json!([2])
        );
        assert_eq!(session_probe(&client).await.0, backend);
    }
    client.cancel().await.ok();
}

/// A read the client cancels while it runs in its flight is stopped on the server, which leaves the flight's
/// transaction failed and skips its ROLLBACK: pgmcp ends that transaction itself, so the connection passes its
/// check and serves the next call on the same backend.
#[tokio::test]
async fn a_read_cancelled_in_its_flight_leaves_a_usable_connection() {
    let (observer, client, backend) = one_connection_server().await;
    let sql = "SELECT count(*) FROM generate_series(1, $1::int8) AS cancel_in_flight";
    let count = |upto: i64| json!({"sql": sql, "params": [upto]});
    for _ in 0..2 {
        assert_eq!(
            rows(&call_ok(&client, "execute_query", count(10)).await)[0],
            json!([10])
        );
    }
    // Sent once the statement has run a while, as a user's would be; a cancel sent the moment the statement shows
    // is the next test's case.
    let pause = std::time::Duration::from_millis(300);
    cancel_once_running(
        &observer,
        &client,
        count(2_000_000_000),
        "cancel_in_flight",
        pause,
    )
    .await;
    still_serves_on(&client, backend, count(7)).await;
    client.cancel().await.ok();
}

/// The pool's one connection is still `backend`'s, and a count through it answers.
async fn still_serves_on(client: &common::Client, backend: i64, count_to_seven: Value) {
    assert_eq!(session_probe(client).await.0, backend);
    assert_eq!(
        rows(&call_ok(client, "execute_query", count_to_seven).await)[0],
        json!([7])
    );
}

/// pgmcp on a pool of one connection, an observer connection, and the pool connection's backend pid.
async fn one_connection_server() -> (tokio_postgres::Client, common::Client, i64) {
    let observer = common::observer().await;
    let url = common::superuser_url();
    let client = spawn(
        &["serve", "--database-url", &url, "--pool-max", "1"],
        &[],
        Era::Legacy,
    )
    .await;
    let (backend, _) = session_probe(&client).await;
    (observer, client, backend)
}

/// Sends an `execute_query` call whose statement is marked `marker`, cancels it `pause` after the statement shows
/// as active, and waits until the statement has stopped on the server.
async fn cancel_once_running(
    observer: &tokio_postgres::Client,
    client: &common::Client,
    arguments: Value,
    marker: &str,
    pause: std::time::Duration,
) {
    let handle = common::send_cancellable_call(client, "execute_query", arguments).await;
    until_active(observer, marker).await;
    if !pause.is_zero() {
        tokio::time::sleep(pause).await;
    }
    handle
        .cancel(Some("the user gave up".into()))
        .await
        .expect("cancel sent");
    until_gone(observer, marker).await;
}

/// Waits (at most 10 s) until a statement marked `marker` shows as active, polling without pause so that a
/// cancel can follow the moment it does.
async fn until_active(observer: &tokio_postgres::Client, marker: &str) {
    let started = std::time::Instant::now();
    while common::active_statements(observer, marker).await == 0 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "the statement never started"
        );
    }
}

/// Waits (at most 5 s, far below the statement's own run time) until no statement marked `marker` is active.
async fn until_gone(observer: &tokio_postgres::Client, marker: &str) {
    let cancelled_at = std::time::Instant::now();
    while common::active_statements(observer, marker).await > 0 {
        assert!(
            cancelled_at.elapsed() < std::time::Duration::from_secs(5),
            "the statement kept running after the cancel"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// PostgreSQL shows a statement active from its Bind on, but discards a cancel that reaches the backend before it
/// has read the Execute (between two messages of a pipeline it counts as idle). A cancel sent the moment the
/// statement shows must still stop it: pgmcp cancels again while the call has not ended.
#[tokio::test]
async fn a_cancel_sent_as_the_statement_starts_still_stops_it() {
    let (observer, client, backend) = one_connection_server().await;
    let sql = "SELECT count(*) FROM generate_series(1, $1::int8) AS cancel_at_start";
    let count = |upto: i64| json!({"sql": sql, "params": [upto]});
    for _ in 0..8 {
        let at_once = std::time::Duration::ZERO;
        cancel_once_running(
            &observer,
            &client,
            count(2_000_000_000),
            "cancel_at_start",
            at_once,
        )
        .await;
    }
    still_serves_on(&client, backend, count(7)).await;
    client.cancel().await.ok();
}

/// A flight's answer holds the session check behind the rows; a result cut by a ceiling still has its remaining
/// rows read past, so the check's answer is found. Each read here takes a session advisory lock through a function
/// the profile trusts: only the check in the flight releases it, so the connection is kept only if that check's
/// answer was read (without it, the call's own check counts the lock and closes the connection).
#[tokio::test]
async fn a_truncated_read_in_its_flight_still_reads_its_session_check() {
    let observer = common::observer().await;
    observer
        .batch_execute(
            "CREATE OR REPLACE FUNCTION lock_per_row(int) RETURNS int LANGUAGE plpgsql STABLE AS \
             $$ BEGIN PERFORM pg_advisory_lock(4345); RETURN $1; END $$",
        )
        .await
        .unwrap();
    let client = serve_on_one_connection(
        "allow_volatile_functions = [\"public.lock_per_row\"]\nmax_rows = 5\nmax_result_bytes = 1024\n",
    )
    .await;
    let many = json!({"sql": "SELECT lock_per_row(g) FROM generate_series(1, 50) AS g"});
    let wide =
        json!({"sql": "SELECT repeat('x', 300 + lock_per_row(g)) FROM generate_series(1, 5) AS g"});
    for (call, ceiling) in [(many, "max_rows"), (wide, "max_result_bytes")] {
        // The first run is checked on its own, which finds the lock and closes that connection.
        let first = call_ok(&client, "execute_query", call.clone()).await;
        assert_eq!(first["truncated_by"], json!(ceiling), "{first}");
        let (backend, _) = session_probe(&client).await;
        for _ in 0..2 {
            let answer = call_ok(&client, "execute_query", call.clone()).await;
            assert_eq!(answer["truncated_by"], json!(ceiling), "{answer}");
            assert!(!rows(&answer).is_empty() && rows(&answer).len() <= 5);
            assert_eq!(session_probe(&client).await.0, backend);
            assert_eq!(locks_held_now(&observer, backend).await, 0);
        }
    }
    client.cancel().await.ok();
}

/// pgmcp's own statements in a read's flight (its BEGIN, ROLLBACK and session check, prepared by name on the
/// connection) can go missing: a function the profile trusts may remove one, or a proxy may send a flight to a
/// server that never saw them. Whichever goes, the call still gets its answer, the connection is checked the long
/// way instead of being closed for it, and later reads on it send their BEGIN and ROLLBACK as text.
#[tokio::test]
async fn a_connection_whose_own_statement_went_missing_is_checked_the_long_way() {
    for (name, _) in pgmcp::db::session::OWN_STATEMENTS {
        let forget = format!("forget_{name}");
        let client = serve_trusting(
            &forget,
            "VOLATILE",
            &format!("EXECUTE 'DEALLOCATE {name}';\n               RETURN 1;"),
        )
        .await;
        // The probe's first call checks it; the second runs in one flight and prepares pgmcp's statements; the
        // third runs them by name.
        let (backend, _) = session_probe(&client).await;
        for _ in 0..2 {
            assert_eq!(session_probe(&client).await.0, backend, "{name}");
        }
        let answer = call_ok(
            &client,
            "execute_query",
            json!({"sql": format!("SELECT {forget}()")}),
        )
        .await;
        assert_eq!(rows(&answer)[0], json!([1]), "{name}");
        // The next flight finds the statement gone (a missing BEGIN stops it before anything ran, and the call
        // takes the general path); the ones after that no longer send it.
        for aid in 1..=3 {
            let answer = call_ok(
                &client,
                "execute_query",
                json!({"sql": "SELECT $1::int + 1, pg_backend_pid()", "params": [aid]}),
            )
            .await;
            assert_eq!(rows(&answer)[0], json!([aid + 1, backend]), "{name}");
        }
        client.cancel().await.ok();
    }
}

/// `DEALLOCATE ALL` in a function the profile trusts drops every statement the connection has prepared, pgmcp's
/// own and the ones it keeps for repeated calls alike. The calls after it still get their answers: a cached
/// statement the server no longer has is prepared again, as one whose plan went stale is. The order matters: on
/// a connection that has run only flights, the long check the missing ROLLBACK calls for is prepared afresh, finds
/// the session clean and keeps the connection, so the next repeated call meets its vanished statement.
#[tokio::test]
async fn calls_after_a_deallocate_all_still_get_their_answers() {
    let client = serve_trusting(
        "forget_every_statement",
        "VOLATILE",
        "EXECUTE 'DEALLOCATE ALL';\n               RETURN 1;",
    )
    .await;
    let forget = json!({"sql": "SELECT forget_every_statement()"});
    for round in 0..3 {
        // The probe's statement is cached on the connection by now (and pgmcp's own statements prepared).
        for _ in 0..2 {
            session_probe(&client).await;
        }
        let answer = call_ok(&client, "execute_query", forget.clone()).await;
        assert_eq!(rows(&answer)[0], json!([1]), "round {round}");
        let (backend, _) = session_probe(&client).await;
        for aid in 1..=2 {
            assert_eq!(session_probe(&client).await.0, backend, "round {round}");
            let answer = call_ok(
                &client,
                "execute_query",
                json!({"sql": "SELECT $1::int + 1", "params": [aid]}),
            )
            .await;
            assert_eq!(rows(&answer)[0], json!([aid + 1]), "round {round}");
        }
    }
    client.cancel().await.ok();
}

/// The guard's catalog queries, prepared once per connection, can be removed by a function the profile trusts
/// while the connection stays clean enough to keep. The next statement checked meets a query that is gone: nothing
/// was judged, so the queries are prepared again and the statement checked again, on the same connection, and a
/// statement the check must refuse is still refused.
#[tokio::test]
async fn a_check_whose_catalog_queries_were_removed_prepares_them_again() {
    let observer = common::observer().await;
    observer
        .batch_execute(
            "CREATE OR REPLACE FUNCTION forget_catalog_queries() RETURNS int LANGUAGE plpgsql VOLATILE AS $$
             DECLARE cached record;
             BEGIN
               FOR cached IN SELECT name FROM pg_prepared_statements
                             WHERE statement LIKE '%pg_catalog.pg_amop%'
                                OR statement LIKE '%pg_catalog.pg_partitioned_table%'
                                OR statement LIKE '%pg_catalog.pg_language%' LOOP
                 EXECUTE format('DEALLOCATE %I', cached.name);
               END LOOP;
               RETURN 1;
             END $$;
             CREATE OR REPLACE FUNCTION untrusted_bump() RETURNS int LANGUAGE sql VOLATILE AS 'SELECT 1';",
        )
        .await
        .unwrap();
    let client =
        serve_on_one_connection("allow_volatile_functions = [\"public.forget_catalog_queries\"]\n")
            .await;
    let (backend, _) = session_probe(&client).await;
    for round in 0..2 {
        // A text of its own each round: a statement's first call is the one that is checked.
        let forget = json!({"sql": format!("SELECT forget_catalog_queries() AS round_{round}")});
        assert_eq!(
            rows(&call_ok(&client, "execute_query", forget).await)[0],
            json!([1])
        );
        let left: i64 = observer
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1",
                &[&(backend as i32)],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(left, 1, "round {round}: the connection was kept");
        // Only the catalog tells that this function was written in the database and is VOLATILE.
        let refused = call_err(
            &client,
            "execute_query",
            json!({"sql": format!("SELECT untrusted_bump() AS round_{round}")}),
        )
        .await;
        assert_eq!(
            refused["error"],
            json!("rejected"),
            "round {round}: {refused}"
        );
        let fresh = call_ok(
            &client,
            "execute_query",
            json!({"sql": format!("SELECT {round} + 1, pg_backend_pid()")}),
        )
        .await;
        assert_eq!(
            rows(&fresh)[0],
            json!([round + 1, backend]),
            "round {round}"
        );
    }
    client.cancel().await.ok();
}

/// A write whose cached statement a function removed is refused at its Bind, before anything ran, so it is
/// prepared again and run once: the row goes in exactly once, on the same connection.
#[tokio::test]
async fn a_write_whose_cached_statement_was_removed_runs_once() {
    let observer = common::observer().await;
    observer
        .batch_execute(
            "DROP TABLE IF EXISTS deallocated_writes; CREATE TABLE deallocated_writes (x int);
             CREATE OR REPLACE FUNCTION forget_cached_statements() RETURNS int LANGUAGE plpgsql VOLATILE AS $$
             DECLARE cached record;
             BEGIN
               -- Every statement but the session check and the one running this function.
               FOR cached IN SELECT name FROM pg_prepared_statements
                             WHERE statement NOT LIKE '%pg_locks%' AND statement NOT LIKE '%forget_cached%' LOOP
                 EXECUTE format('DEALLOCATE %I', cached.name);
               END LOOP;
               RETURN 1;
             END $$;",
        )
        .await
        .unwrap();
    let client = serve_writes_on_one_connection().await;
    let insert =
        |x: i32| json!({"sql": "INSERT INTO deallocated_writes VALUES ($1)", "params": [x]});
    let (backend, _) = session_probe(&client).await;
    for x in [1, 2] {
        call_ok(&client, "execute_write", insert(x)).await;
    }
    let forget =
        json!({"sql": "INSERT INTO deallocated_writes SELECT -forget_cached_statements()"});
    call_ok(&client, "execute_write", forget).await;
    let answer = call_ok(&client, "execute_write", insert(3)).await;
    assert_eq!(answer["rows_affected"], json!(1), "{answer}");
    let written: Vec<i32> = observer
        .query("SELECT x FROM deallocated_writes ORDER BY x", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(written, [-1, 1, 2, 3]);
    assert_eq!(session_probe(&client).await.0, backend);
    client.cancel().await.ok();
}

/// A stale plan met inside a function (its `EXECUTE` of a statement `PREPARE`d before the table changed) is the
/// function's error, raised while the call ran: the call is answered with it, not run a second time.
#[tokio::test]
async fn a_stale_plan_inside_a_function_is_not_run_again() {
    let observer = common::observer().await;
    observer
        .batch_execute(
            "DROP TABLE IF EXISTS stale_inside_t; CREATE TABLE stale_inside_t (id int);
             DROP TABLE IF EXISTS stale_inside_log; CREATE TABLE stale_inside_log (x int);
             DROP SEQUENCE IF EXISTS stale_inside_runs; CREATE SEQUENCE stale_inside_runs;
             CREATE OR REPLACE FUNCTION stale_inside() RETURNS int LANGUAGE plpgsql VOLATILE AS $$
             BEGIN
               -- Sequences are not rolled back: it counts the runs.
               PERFORM nextval('stale_inside_runs');
               EXECUTE 'PREPARE stale_inside_p AS SELECT * FROM stale_inside_t';
               ALTER TABLE stale_inside_t ADD COLUMN note text;
               EXECUTE 'EXECUTE stale_inside_p';
               RETURN 1;
             END $$;",
        )
        .await
        .unwrap();
    let client = serve_writes_on_one_connection().await;
    let error = call_err(
        &client,
        "execute_write",
        json!({"sql": "INSERT INTO stale_inside_log SELECT stale_inside()"}),
    )
    .await;
    assert_eq!(error["sqlstate"], json!("0A000"), "{error}");
    let runs: i64 = observer
        .query_one("SELECT last_value FROM stale_inside_runs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(runs, 1);
    client.cancel().await.ok();
}

/// A repeated statement reuses its prepared form on the connection; when the table changes shape under it,
/// PostgreSQL refuses the old statement ("cached plan must not change result type") and pgmcp prepares it again,
/// so the caller sees the new columns instead of an error.
#[tokio::test]
async fn a_cached_statement_follows_a_table_that_changed_shape() {
    let client =
        cached_statement_follows_reshaped_table("reshaped", &common::superuser_url()).await;
    client.cancel().await.ok();
}

/// The same when the server speaks German (`lc_messages`): the refusal reads "gecachter Plan darf den
/// Ergebnistyp nicht ändern", so it has to be told by what the server does not translate. scripts/test.sh
/// generates the de_DE.UTF-8 locale the server needs for it.
#[tokio::test]
async fn a_cached_statement_follows_a_reshaped_table_when_the_server_speaks_german() {
    let url = format!(
        "{}?options=-c%20lc_messages%3Dde_DE.UTF-8",
        common::superuser_url()
    );
    let client = cached_statement_follows_reshaped_table("reshaped_de", &url).await;
    // Without a German catalog and locale the server would answer in English and the test above prove nothing.
    let error = call_err(&client, "execute_query", json!({"sql": "SELECT 1/0"})).await;
    assert_eq!(error["message"], json!("Division durch Null"), "{error}");
    // The guard's view of the statement as PostgreSQL resolved it arrives under a message the server does not
    // translate, so a view's hidden call is still found.
    common::observer()
        .await
        .batch_execute(
            "CREATE OR REPLACE VIEW german_locks AS SELECT pg_catalog.pg_try_advisory_lock(42) AS locked",
        )
        .await
        .unwrap();
    let refused = call_err(
        &client,
        "execute_query",
        json!({"sql": "SELECT * FROM german_locks"}),
    )
    .await;
    assert_eq!(refused["error"], json!("rejected"), "{refused}");
    assert!(
        refused["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("pg_try_advisory_lock")),
        "{refused}"
    );
    client.cancel().await.ok();
}

async fn cached_statement_follows_reshaped_table(table: &str, url: &str) -> common::Client {
    let observer = common::observer().await;
    observer
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (id int); INSERT INTO {table} VALUES (1);"
        ))
        .await
        .unwrap();
    let client = spawn(
        &["serve", "--database-url", url, "--pool-max", "1"],
        &[],
        Era::Stateless,
    )
    .await;
    let query = json!({"sql": format!("SELECT * FROM {table}")});
    for _ in 0..2 {
        let answer = call_ok(&client, "execute_query", query.clone()).await;
        assert_eq!(rows(&answer)[0], json!([1]));
    }
    observer
        .batch_execute(&format!(
            "ALTER TABLE {table} ADD COLUMN note text DEFAULT 'new'"
        ))
        .await
        .unwrap();
    let answer = call_ok(&client, "execute_query", query).await;
    assert_eq!(rows(&answer)[0], json!([1, "new"]));
    assert_eq!(answer["columns"][1]["name"], json!("note"));
    client
}
