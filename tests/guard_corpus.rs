//! The SQL guard against a corpus of attacks, end to end: each statement is sent through the real binary, connected
//! as a SUPERUSER (the worst case: only the guard and the read-only transaction stand between the model and the
//! data), and must be rejected with the database left exactly as it was.

mod common;

use common::{Era, call, call_ok, observer, rows, spawn, superuser_url};
use serde_json::json;

/// (why, sql) pairs of a corpus file, parsed the way the guard's own unit tests parse it.
fn corpus(text: &str) -> Vec<(String, String)> {
    pgmcp::guard::corpus::parse_corpus(text)
        .into_iter()
        .map(|entry| (entry.why, entry.sql))
        .collect()
}

async fn fingerprint(client: &tokio_postgres::Client) -> String {
    let row = client
        .query_one(
            "SELECT concat_ws(' | ', \
               (SELECT string_agg(id || ':' || note, ',' ORDER BY id) FROM public.canary), \
               (SELECT string_agg(k, ',' ORDER BY k) FROM public.secrets), \
               (SELECT count(*) FROM pg_class), (SELECT count(*) FROM pg_proc), (SELECT count(*) FROM pg_roles), \
               (SELECT count(*) FROM pg_namespace), (SELECT count(*) FROM pg_database), \
               (SELECT string_agg(rolname || rolsuper::text || rolcanlogin::text, ',' ORDER BY rolname) FROM pg_roles), \
               (SELECT string_agg(name || '=' || setting, ',' ORDER BY name) FROM pg_settings WHERE source = 'configuration file'), \
               (SELECT count(*) FROM pg_largeobject_metadata), \
               (SELECT string_agg(d.setconfig::text, ',') FROM pg_db_role_setting d))",
            &[],
        )
        .await
        .expect("fingerprint");
    row.get(0)
}

#[tokio::test]
async fn every_attack_is_rejected_and_changes_nothing() {
    let attacks = corpus(include_str!("corpus/attacks.sql"));
    assert!(
        attacks.len() >= 60,
        "the corpus holds {} attacks",
        attacks.len()
    );
    let url = superuser_url();
    let observer = observer().await;
    let before = fingerprint(&observer).await;
    let client = spawn(&["serve", "--database-url", &url], &[], Era::Legacy).await;
    for (why, sql) in &attacks {
        let result = call(&client, "execute_query", json!({"sql": sql})).await;
        assert_eq!(result.is_error, Some(true), "not rejected ({why}): {sql}");
        let error = result.structured_content.clone().unwrap_or_default();
        assert_eq!(
            error["error"],
            json!("rejected"),
            "({why}) {sql} failed for another reason: {error}"
        );
        assert_eq!(
            fingerprint(&observer).await,
            before,
            "the database changed after ({why}): {sql}"
        );
    }
    // The pooled session is unharmed: still read-only, default search_path, no role switched.
    let state = call_ok(
        &client,
        "execute_query",
        json!({"sql": "SELECT current_setting('transaction_read_only'), current_setting('search_path'), current_user = session_user"}),
    )
    .await;
    assert_eq!(rows(&state)[0], json!(["on", "\"$user\", public", true]));
    client.cancel().await.ok();
}

#[tokio::test]
async fn allowed_statements_run() {
    let allowed = corpus(include_str!("corpus/allowed.sql"));
    assert!(allowed.len() >= 10);
    let url = superuser_url();
    let client = spawn(&["serve", "--database-url", &url], &[], Era::Stateless).await;
    for (why, sql) in &allowed {
        let result = call(&client, "execute_query", json!({"sql": sql})).await;
        assert_ne!(
            result.is_error,
            Some(true),
            "({why}) {sql} was refused: {result:?}"
        );
    }
    client.cancel().await.ok();
}
