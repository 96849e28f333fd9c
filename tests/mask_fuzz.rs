//! A randomized differential test of column masking. Distinctive values are seeded in masked columns of every
//! kind of type (text, varchar, numeric, date, jsonb, int, bytea, point; an enum and a composite the database
//! defined and an extension's citext, which a connection has to look up; a partitioned table; an inheritance
//! child); statements of many shapes reach them — through tables, views, subqueries, CTEs, joins, LATERAL, set
//! operations and functions, in every clause position, as expressions, casts and deliberate errors, as whole rows
//! — and run through every tool that can carry a value (execute_query, explain_query, index_advice, read_table,
//! curated tools, describe_table, get_table_stats and the catalog and DBA tools), as a reader and as a superuser.
//!
//! The invariant: **no seeded value, nor a recognisable piece of one, appears in any answer, error message, audit
//! line or log line.** Beside it, uses other than a plain projection or count(column) must not be answered, and
//! the positive controls must hold: plain projections are answered with every value masked, unmasked columns with
//! their real values. The detector's own control: on a profile without masks the same statements do show the
//! values (`the_detector_sees_what_an_unmasked_profile_hands_out`).
//!
//! Cases come from proptest strategies driven by a fixed seed (`PGMCP_MASK_FUZZ_SEED` picks another) and run one
//! at a time through pgmcp's tool dispatch (the library path: every stage of a real call but the transport); a
//! sample also runs through the real binary with its audit log and server log. `cargo test --test mask_fuzz` runs
//! the CI form (`PGMCP_MASK_FUZZ_CI_CASES`, default 1200 statements); `cargo test --test mask_fuzz -- --ignored`
//! the long form (`PGMCP_MASK_FUZZ_CASES`, default 20000).

mod common;
mod mask_fuzz_support;

use std::io::Write;

use mask_fuzz_support::grammar::{self, Case, Expect, Kind, Mode, ReadCase};
use mask_fuzz_support::{
    Detector, Reply, Tally, VISIBLE, call, library, masked_column_values, world,
};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::{Value, json};

fn runner(seed: u64) -> TestRunner {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &bytes),
    )
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn seed() -> u64 {
    env_number("PGMCP_MASK_FUZZ_SEED", 0x3a5c_0f1e)
}

fn excerpt(text: &str) -> String {
    text.chars().take(400).collect()
}

/// What is wrong with one generated statement's reply, if anything.
fn judge(detector: &Detector, case: &Case, expect: Expect, reply: &Reply) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(piece) = detector.find(reply.text()) {
        problems.push(format!("LEAK of {piece:?}"));
    }
    match (expect, reply) {
        (_, Reply::TimedOut) => problems.push("no answer within 30 s".into()),
        (Expect::NotAnswered, Reply::Answered(_)) => {
            problems.push("MISS: a use of a masked column was answered".into())
        }
        (Expect::Answered, Reply::Answered(answer)) => match case.kind {
            Kind::Plain if case.sql.contains("masked_out") => {
                match masked_column_values(answer, "masked_out") {
                    Ok(0) if case.column.mode != Mode::Null => problems
                        .push("CONTROL: a plain projection came back without any value".into()),
                    Ok(_) => {}
                    Err(why) => problems.push(format!("CONTROL: {why}")),
                }
            }
            Kind::Control if !VISIBLE.iter().any(|v| answer.to_lowercase().contains(v)) => {
                problems.push("CONTROL: unmasked values are missing".into())
            }
            _ => {}
        },
        (Expect::Answered, _) => problems.push("CONTROL: not answered".into()),
        _ => {}
    }
    problems
}

/// What is wrong with a read_table reply.
fn judge_read(detector: &Detector, case: &ReadCase, reply: &Reply) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(piece) = detector.find(reply.text()) {
        problems.push(format!("LEAK of {piece:?}"));
    }
    let must_refuse = !case.allowed || case.sorts_by_masked();
    match reply {
        Reply::Answered(_) if must_refuse => {
            problems.push("MISS: read_table answered a read that uses a masked column".into())
        }
        Reply::Answered(answer) => {
            for column in grammar::MASKED_NAMES {
                if let Err(why) = masked_column_values(answer, column)
                    && !why.starts_with("no column")
                {
                    problems.push(format!("CONTROL: {why}"));
                }
            }
        }
        Reply::TimedOut => problems.push("no answer within 30 s".into()),
        _ if !must_refuse => problems.push("CONTROL: read_table was not answered".into()),
        _ => {}
    }
    problems
}

/// Calls that need no generation: every relation through the catalog tools and read_table, the DBA tools, and
/// the side channels on both masked profiles. (label, tool, arguments, whether it must be answered)
fn fixed_calls() -> Vec<(String, &'static str, Value, bool)> {
    let mut calls = Vec::new();
    for profile in ["fuzz", "owner"] {
        for (relation, _, allowed) in grammar::RELATIONS {
            for (tool, arguments) in [
                (
                    "describe_table",
                    json!({"table": relation, "profile": profile}),
                ),
                (
                    "get_table_stats",
                    json!({"table": relation, "profile": profile}),
                ),
                ("read_table", json!({"table": relation, "profile": profile})),
            ] {
                let must = tool != "read_table" || *allowed;
                calls.push((
                    format!("{tool} {relation} on {profile}"),
                    tool,
                    arguments,
                    must,
                ));
            }
        }
        for (tool, arguments) in [
            (
                "search_tables",
                json!({"term": "email", "profile": profile}),
            ),
            (
                "search_tables",
                json!({"term": "people", "profile": profile}),
            ),
            ("list_tables", json!({"schema": "pii", "profile": profile})),
            ("health_check", json!({"profile": profile})),
            ("activity", json!({"profile": profile})),
            ("top_queries", json!({"profile": profile})),
            ("server_info", json!({"profile": profile})),
        ] {
            calls.push((format!("{tool} on {profile}"), tool, arguments, false));
        }
        for sql in grammar::SIDE_CHANNELS {
            let must = sql.starts_with("TABLE ")
                || sql.contains("people_contacts")
                || sql.starts_with("EXPLAIN");
            calls.push((
                format!("side channel on {profile}: {sql}"),
                "execute_query",
                json!({"sql": sql, "profile": profile}),
                must,
            ));
            calls.push((
                format!("side channel explained on {profile}: {sql}"),
                "explain_query",
                json!({"sql": sql, "profile": profile}),
                false,
            ));
        }
    }
    calls.push(("list_profiles".into(), "list_profiles", json!({}), true));
    calls
}

/// Runs `cases` generated statements, `reads` read_table calls, `curated` curated tool calls and the fixed
/// calls, and fails on any problem.
async fn fuzz(cases: u64, reads: u64, curated: u64) {
    let started = std::time::Instant::now();
    let detector = Detector::new();
    let databases = library().await;
    let mut runner = runner(seed());
    let mut tally = Tally::default();
    let mut problems: Vec<String> = Vec::new();
    let mut report = |what: String, reply: &Reply, found: Vec<String>| {
        for problem in found {
            problems.push(format!(
                "{problem}\n    {what}\n    -> {}: {}",
                reply.kind(),
                excerpt(reply.text())
            ));
        }
    };

    let statements = grammar::cases(grammar::PROFILES);
    let mut shapes = std::collections::BTreeSet::new();
    for _ in 0..cases {
        let (case, allowed) = statements.new_tree(&mut runner).expect("a case").current();
        let (tool, arguments) = case.arguments();
        let reply = call(&databases, tool, arguments).await;
        let expect = case.expectation(allowed);
        tally.add(format!(
            "{:?} expected {:?}: {}",
            case.kind,
            expect,
            reply.kind()
        ));
        shapes.insert((
            case.column.name,
            format!("{:?}", case.source),
            case.use_name,
        ));
        report(
            case.describe(),
            &reply,
            judge(&detector, &case, expect, &reply),
        );
    }

    let read_strategy = grammar::read_cases(grammar::PROFILES);
    for _ in 0..reads {
        let case = read_strategy
            .new_tree(&mut runner)
            .expect("a read")
            .current();
        let reply = call(&databases, "read_table", case.arguments()).await;
        tally.add(format!("read_table: {}", reply.kind()));
        report(
            format!("read_table {}", case.arguments()),
            &reply,
            judge_read(&detector, &case, &reply),
        );
    }

    let curated_strategy = grammar::curated_cases();
    for _ in 0..curated {
        let (tool, arguments) = curated_strategy
            .new_tree(&mut runner)
            .expect("a curated call")
            .current();
        let reply = call(&databases, tool, arguments.clone()).await;
        tally.add(format!("curated: {}", reply.kind()));
        let mut found = Vec::new();
        if let Some(piece) = detector.find(reply.text()) {
            found.push(format!("LEAK of {piece:?}"));
        }
        if let Reply::Answered(answer) = &reply {
            for column in grammar::MASKED_NAMES {
                if let Err(why) = masked_column_values(answer, column)
                    && !why.starts_with("no column")
                {
                    found.push(format!("CONTROL: {why}"));
                }
            }
        }
        report(format!("{tool} {arguments}"), &reply, found);
    }

    for (label, tool, arguments, must_answer) in fixed_calls() {
        let reply = call(&databases, tool, arguments).await;
        tally.add(format!("fixed: {}", reply.kind()));
        let mut found = Vec::new();
        if let Some(piece) = detector.find(reply.text()) {
            found.push(format!("LEAK of {piece:?}"));
        }
        if must_answer && !reply.answered() {
            found.push("CONTROL: not answered".into());
        }
        report(label, &reply, found);
    }

    let elapsed = started.elapsed();
    println!(
        "mask fuzz: seed {:#x}, {cases} statements ({} column×source×use shapes), {reads} read_table and {curated} \
         curated calls and the fixed calls in {:.1} s; {} fragments watched\n{}",
        seed(),
        shapes.len(),
        elapsed.as_secs_f64(),
        detector.len(),
        tally.summary()
    );
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
    // The positive controls ran: plain projections and unmasked controls were answered, uses were refused.
    for label in [
        "Plain expected Answered: answered",
        "Control expected Answered: answered",
        "Refused expected NotAnswered: refused (masked column)",
        "read_table: answered",
        "curated: answered",
    ] {
        assert!(tally.get(label) > 0, "no case reached `{label}`");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masked_values_never_leave_pgmcp_sampled() {
    fuzz(
        env_number("PGMCP_MASK_FUZZ_CI_CASES", 1200),
        env_number("PGMCP_MASK_FUZZ_CI_READS", 120),
        env_number("PGMCP_MASK_FUZZ_CI_CURATED", 60),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long run: cargo test --test mask_fuzz -- --ignored (PGMCP_MASK_FUZZ_CASES, default 20000)"]
async fn masked_values_never_leave_pgmcp_long() {
    let cases = env_number("PGMCP_MASK_FUZZ_CASES", 20_000);
    fuzz(cases, cases / 10, cases / 20).await;
}

/// The detector's control: on the profile without masks, the same world hands the seeded values out — in plain
/// projections, in the error a deliberate cast provokes, in the planner's statistics — and the detector sees
/// them. Without this, a detector that finds nothing would pass every run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_detector_sees_what_an_unmasked_profile_hands_out() {
    let detector = Detector::new();
    let databases = library().await;
    let mut runner = runner(seed() ^ 0xc1ea);
    let statements = grammar::cases(&["clear"]);
    let (mut plain_answered, mut plain_seen, mut seen) = (0, 0, 0);
    for _ in 0..200 {
        let (case, allowed) = statements.new_tree(&mut runner).expect("a case").current();
        if case.tool != grammar::Tool::ExecuteQuery {
            continue;
        }
        let (tool, arguments) = case.arguments();
        let reply = call(&databases, tool, arguments).await;
        let found = detector.find(reply.text()).is_some();
        seen += usize::from(found);
        if case.kind == Kind::Plain && allowed && reply.answered() {
            plain_answered += 1;
            plain_seen += usize::from(found);
            assert!(
                found,
                "a plain projection on the unmasked profile showed no seeded value: {}\n{}",
                case.describe(),
                excerpt(reply.text())
            );
        }
    }
    assert!(
        plain_answered > 5 && plain_seen == plain_answered,
        "{plain_seen} of {plain_answered}"
    );
    assert!(seen > 20, "only {seen} leaks seen on the unmasked profile");
    for sql in [
        "SELECT email::int FROM pii.people WHERE id = 1",
        "SELECT phone::text::date FROM pii.people WHERE id = 2",
        "SELECT (profile->>'note')::uuid FROM pii.people WHERE id = 1",
        "SELECT card_number::numeric FROM pii.cards",
        "SELECT histogram_bounds::text FROM pg_stats WHERE schemaname = 'pii' AND attname = 'email'",
        "SELECT pii.email_of(10)",
    ] {
        let reply = call(
            &databases,
            "execute_query",
            json!({"sql": sql, "profile": "clear"}),
        )
        .await;
        assert!(
            detector.find(reply.text()).is_some(),
            "{sql} on the unmasked profile: the detector saw nothing in {}",
            excerpt(reply.text())
        );
    }
    // And the fixture holds every seeded value where the detector looks for it.
    let observer = common::cluster();
    let dump = observer
        .psql(
            mask_fuzz_support::DATABASE,
            "SELECT row_to_json(p)::text FROM pii.people p UNION ALL SELECT row_to_json(k)::text FROM pii.cards k \
             UNION ALL SELECT convert_from(token, 'UTF8') FROM pii.people WHERE token IS NOT NULL",
        )
        .expect("dump the fixture");
    for value in mask_fuzz_support::SEEDED {
        assert!(
            dump.contains(value) || dump.contains(&value.replace('"', "\\\"")),
            "{value} is not in the fixture"
        );
    }
}

/// A sample through the real binary over stdio: the same judgements on what the MCP client receives, and no
/// seeded value in the audit log or the server's own log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sample_through_the_binary_leaks_nothing_in_answers_audit_or_log() {
    use rmcp::ServiceExt;
    use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};

    let world = world();
    let detector = Detector::new();
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let log = dir.path().join("server.log");
    let command = tokio::process::Command::new(env!("CARGO_BIN_EXE_pgmcp")).configure(|cmd| {
        cmd.args(["serve", "--config"])
            .arg(&world.config_path)
            .arg("--audit-log")
            .arg(&audit)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("PGMCP_LOG", "debug");
    });
    let (transport, _) = TokioChildProcess::builder(command)
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn pgmcp");
    let client = ().serve(transport).await.expect("MCP handshake");
    let mut runner = runner(seed() ^ 0xb1a2);
    let mut problems = Vec::new();
    let mut calls = 0usize;
    let mut run = async |tool: &str, arguments: Value| {
        calls += 1;
        let result = common::call(&client, tool, arguments).await;
        reply_of(&result)
    };

    let statements = grammar::cases(grammar::PROFILES);
    for _ in 0..120 {
        let (case, allowed) = statements.new_tree(&mut runner).expect("a case").current();
        let (tool, arguments) = case.arguments();
        let reply = run(tool, arguments).await;
        for problem in judge(&detector, &case, case.expectation(allowed), &reply) {
            problems.push(format!(
                "{problem}: {} -> {}",
                case.describe(),
                excerpt(reply.text())
            ));
        }
    }
    let reads = grammar::read_cases(grammar::PROFILES);
    for _ in 0..20 {
        let case = reads.new_tree(&mut runner).expect("a read").current();
        let reply = run("read_table", case.arguments()).await;
        for problem in judge_read(&detector, &case, &reply) {
            problems.push(format!(
                "{problem}: read_table {} -> {}",
                case.arguments(),
                excerpt(reply.text())
            ));
        }
    }
    let curated = grammar::curated_cases();
    for _ in 0..20 {
        let (tool, arguments) = curated
            .new_tree(&mut runner)
            .expect("a curated call")
            .current();
        let reply = run(tool, arguments.clone()).await;
        if let Some(piece) = detector.find(reply.text()) {
            problems.push(format!(
                "LEAK of {piece:?}: {tool} {arguments} -> {}",
                excerpt(reply.text())
            ));
        }
    }
    for (label, tool, arguments, must_answer) in fixed_calls() {
        let reply = run(tool, arguments).await;
        if let Some(piece) = detector.find(reply.text()) {
            problems.push(format!(
                "LEAK of {piece:?}: {label} -> {}",
                excerpt(reply.text())
            ));
        }
        if must_answer && !reply.answered() {
            problems.push(format!(
                "CONTROL: not answered: {label} -> {}",
                excerpt(reply.text())
            ));
        }
    }
    client.cancel().await.ok();
    let audit = std::fs::read_to_string(&audit).unwrap();
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(
        audit.lines().count() + 5 >= calls,
        "{} audit lines for {calls} calls",
        audit.lines().count()
    );
    for (name, text) in [("audit log", &audit), ("server log", &log)] {
        for line in text.lines() {
            if let Some(piece) = detector.find(line) {
                problems.push(format!(
                    "LEAK of {piece:?} in the {name}: {}",
                    excerpt(line)
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
    std::io::stdout().flush().ok();
}

/// A tool result as a [`Reply`]: the answer's text, or the error as the client received it.
fn reply_of(result: &rmcp::model::CallToolResult) -> Reply {
    let whole = serde_json::to_string(result).unwrap_or_default();
    if result.is_error != Some(true) {
        let text = result
            .content
            .first()
            .and_then(|content| content.as_text())
            .map(|text| text.text.clone())
            .unwrap_or_default();
        return Reply::Answered(text);
    }
    if whole.contains("rejected") {
        Reply::Refused {
            masked: whole.contains("is masked"),
            text: whole,
        }
    } else {
        Reply::Failed(whole)
    }
}

#[path = "mask_fuzz_support/regressions.rs"]
mod regressions;
