//! `check_volatility` against a throwaway cluster holding the corpus fixtures.

use std::sync::OnceLock;

use tokio_postgres::{Client, NoTls};

use super::corpus::parse_corpus;
use super::{GuardPolicy, Verdict, check, check_volatility};
use crate::demo::cluster::TempCluster;

const ATTACKS: &str = include_str!("../../tests/corpus/attacks.sql");
const ALLOWED: &str = include_str!("../../tests/corpus/allowed.sql");

const FIXTURES: &str = "
CREATE TABLE public.canary (id int PRIMARY KEY, note text);
CREATE TABLE public.secrets (k text);
INSERT INTO public.canary VALUES (1, 'one'), (2, 'two');
INSERT INTO public.secrets VALUES ('one');
CREATE FUNCTION public.bump() RETURNS int LANGUAGE sql VOLATILE
    AS $$ INSERT INTO public.canary VALUES ((SELECT max(id) + 1 FROM public.canary), 'bumped') RETURNING id $$;
CREATE SCHEMA hidden;
CREATE FUNCTION hidden.sneaky() RETURNS int LANGUAGE sql VOLATILE AS 'SELECT 1';
CREATE FUNCTION hidden.calm() RETURNS int LANGUAGE sql STABLE AS 'SELECT 1';
";

/// One cluster for every test here; the demo module's reaper removes it when the test binary exits.
fn cluster() -> &'static TempCluster {
    static CLUSTER: OnceLock<TempCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let cluster = TempCluster::start(&Default::default()).expect("start throwaway cluster");
        cluster.psql("postgres", FIXTURES).expect("create fixtures");
        cluster
    })
}

async fn connect() -> Client {
    let (client, connection) = tokio_postgres::connect(&cluster().url("postgres"), NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
}

fn verdict(sql: &str) -> Verdict {
    check(sql, &GuardPolicy::read_only()).unwrap_or_else(|error| panic!("{sql}: {error}"))
}

#[tokio::test]
async fn needs_db_attacks_are_rejected_and_allowed_statements_pass() {
    let client = connect().await;
    let policy = GuardPolicy::read_only();
    let mut failures = Vec::new();
    for entry in parse_corpus(ATTACKS).iter().filter(|entry| entry.needs_db) {
        let verdict = verdict(&entry.sql);
        if check_volatility(&client, &verdict, &policy).await.is_ok() {
            failures.push(format!(
                "attack at line {} passed: {}",
                entry.line, entry.sql
            ));
        }
    }
    for entry in parse_corpus(ALLOWED) {
        let verdict = verdict(&entry.sql);
        if let Err(error) = check_volatility(&client, &verdict, &policy).await {
            failures.push(format!("allowed at line {} rejected: {error}", entry.line));
            continue;
        }
        // The corpus must also be runnable SQL, in the read-only transaction pgmcp will use.
        client
            .batch_execute("BEGIN READ ONLY")
            .await
            .expect("begin");
        if let Err(error) = client.simple_query(&entry.sql).await {
            failures.push(format!(
                "allowed at line {} fails in PostgreSQL: {error}",
                entry.line
            ));
        }
        client.batch_execute("ROLLBACK").await.expect("rollback");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn rejection_names_the_resolved_function() {
    let client = connect().await;
    let error = check_volatility(
        &client,
        &verdict("SELECT bump()"),
        &GuardPolicy::read_only(),
    )
    .await
    .expect_err("bump is volatile");
    assert!(
        error
            .reason
            .starts_with("function public.bump is VOLATILE and not allowed in read-only mode"),
        "{error}"
    );
}

#[tokio::test]
async fn unqualified_names_resolve_through_the_search_path() {
    let client = connect().await;
    let policy = GuardPolicy::read_only();
    let sneaky = verdict("SELECT sneaky()");
    // Not on the search_path: unknown here, so PostgreSQL will report it, not the guard.
    check_volatility(&client, &sneaky, &policy)
        .await
        .expect("unknown function passes");
    client
        .batch_execute("SET search_path = public, hidden")
        .await
        .expect("set search_path");
    check_volatility(&client, &sneaky, &policy)
        .await
        .expect_err("found through search_path");
    check_volatility(&client, &verdict("SELECT calm(), lower('A')"), &policy)
        .await
        .expect("stable and immutable pass");
    check_volatility(&client, &verdict("SELECT hidden.sneaky()"), &policy)
        .await
        .expect_err("qualified volatile");
}

#[tokio::test]
async fn allow_list_and_read_write_mode() {
    let client = connect().await;
    let allowing = GuardPolicy {
        allowed_volatile_functions: vec!["public.bump".into(), "hidden.*".into()],
        ..GuardPolicy::read_only()
    };
    check_volatility(
        &client,
        &verdict("SELECT bump(), hidden.sneaky()"),
        &allowing,
    )
    .await
    .expect("allow-listed");
    // The replaced allow-list no longer names random.
    check_volatility(&client, &verdict("SELECT random()"), &allowing)
        .await
        .expect_err("random not allowed any more");
    check_volatility(
        &client,
        &verdict("SELECT bump()"),
        &GuardPolicy::read_write(false),
    )
    .await
    .expect("read-write mode does not restrict volatility");
}

#[tokio::test]
async fn no_functions_means_no_query() {
    let client = connect().await;
    let verdict = verdict("SELECT 1 FROM canary");
    assert!(verdict.functions.is_empty());
    // A closed connection would fail any query, so passing proves none was sent.
    let (closed, connection) = tokio_postgres::connect(&cluster().url("postgres"), NoTls)
        .await
        .expect("connect");
    drop(connection);
    check_volatility(&closed, &verdict, &GuardPolicy::read_only())
        .await
        .expect("no round trip");
    check_volatility(
        &closed,
        &self::verdict("SELECT lower('a')"),
        &GuardPolicy::read_only(),
    )
    .await
    .expect_err("a query on a closed connection fails");
    drop(client);
}
