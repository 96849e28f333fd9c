//! Scenarios 1, 3, 4, 5 and 6 over stdio, each beside the raw floor.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::Plan;
use crate::dataset::Dataset;
use crate::measure::{Latencies, XorShift, cpu_time, ms, status_kib};
use crate::raw;
use crate::report::{Section, bytes, spread};
use crate::stdio::StdioServer;

pub struct Pgmcp {
    pub binary: String,
    pub url: String,
}

impl Pgmcp {
    pub fn start(&self) -> anyhow::Result<(StdioServer, Duration)> {
        self.start_with(&[])
    }

    pub fn start_with(&self, extra: &[&str]) -> anyhow::Result<(StdioServer, Duration)> {
        let mut args = vec![
            "serve".to_string(),
            "--database-url".into(),
            self.url.clone(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        StdioServer::start(&self.binary, &args)
    }
}

fn point_args(aid: u64) -> Value {
    json!({"sql": raw::POINT_SQL, "params": [aid]})
}

/// pgmcp's row of scenario 1: per repetition a fresh server, warmed up, then timed over the plan's point calls
/// (bounded by its budget), each call's arguments from the repetition's `args_of(rep)`.
fn pgmcp_point_row<A: FnMut() -> Value>(
    plan: &Plan,
    pgmcp: &Pgmcp,
    label: &str,
    mut args_of: impl FnMut(usize) -> A,
) -> anyhow::Result<Vec<String>> {
    let (mut rate, mut p50, mut p99, mut cpu) = (vec![], vec![], vec![], vec![]);
    for rep in 0..plan.reps {
        let mut next_args = args_of(rep);
        let (mut server, _) = pgmcp.start()?;
        for _ in 0..plan.warmup_calls {
            server.call_tool("execute_query", next_args())?;
        }
        let cpu_before = cpu_time(server.pid()).unwrap_or_default();
        let started = Instant::now();
        let mut latencies = Vec::with_capacity(plan.point_calls);
        while latencies.len() < plan.point_calls && started.elapsed() < plan.budget {
            let call = Instant::now();
            server.call_tool("execute_query", next_args())?;
            latencies.push(call.elapsed());
        }
        let wall = started.elapsed();
        let cpu_used = cpu_time(server.pid()).unwrap_or_default() - cpu_before;
        let latencies = Latencies::new(latencies);
        rate.push(latencies.len() as f64 / wall.as_secs_f64());
        p50.push(ms(latencies.percentile(50.0)));
        p99.push(ms(latencies.percentile(99.0)));
        cpu.push(ms(cpu_used) / latencies.len() as f64);
    }
    Ok(vec![
        label.into(),
        spread(&rate, 0),
        spread(&p50, 3),
        spread(&p99, 3),
        spread(&cpu, 3),
    ])
}

/// Scenario 1: sequential point queries.
pub fn point_query(
    plan: &Plan,
    pgmcp: &Pgmcp,
    data: &Dataset,
    rt: &tokio::runtime::Runtime,
) -> anyhow::Result<Section> {
    let mut section = Section::new(
        "1. Point query, sequential, stdio",
        &[
            "server",
            "calls/s",
            "p50 ms",
            "p99 ms",
            "server CPU/call ms",
        ],
    );
    let accounts = data.accounts();
    section.row(pgmcp_point_row(
        plan,
        pgmcp,
        "pgmcp (bench client)",
        |rep| {
            let mut ids = XorShift::new(42 + rep as u64);
            move || point_args(ids.next_in(accounts))
        },
    )?);
    // What an agent's calls mostly are: SQL it has not sent before, so every call is a statement's first, which
    // pgmcp has PostgreSQL resolve and checks in the catalogs before running it (no verdict or prepared statement
    // to reuse). The id is written into the text and never repeats.
    section.row(pgmcp_point_row(
        plan,
        pgmcp,
        "pgmcp (bench client), a new statement text on every call",
        |_| {
            let mut aid = 0u64;
            move || {
                aid += 1;
                json!({"sql": format!("SELECT * FROM pgbench_accounts WHERE aid = {aid}")})
            }
        },
    )?);

    let pool = raw::pool(&data.url(), 1)?;
    let (mut rate, mut p50, mut p99) = (vec![], vec![], vec![]);
    for _ in 0..plan.reps {
        rt.block_on(raw::point_queries(
            &pool,
            1,
            plan.warmup_calls,
            plan.budget,
            data.accounts(),
        ))?;
        let (latencies, wall) = rt.block_on(raw::point_queries(
            &pool,
            1,
            plan.point_calls,
            plan.budget,
            data.accounts(),
        ))?;
        let latencies = Latencies::new(latencies);
        rate.push(latencies.len() as f64 / wall.as_secs_f64());
        p50.push(ms(latencies.percentile(50.0)));
        p99.push(ms(latencies.percentile(99.0)));
    }
    section.row(vec![
        "raw tokio-postgres".into(),
        spread(&rate, 0),
        spread(&p50, 3),
        spread(&p99, 3),
        "—".into(),
    ]);
    for sequence in [
        raw::Sequence::Current,
        raw::Sequence::WithoutSessionCheck,
        raw::Sequence::PreviousPortal,
    ] {
        // The session check holds its connection a moment after the answer; pgmcp's pool then hands the next
        // call a second connection, and so does this one.
        let connections = if sequence == raw::Sequence::WithoutSessionCheck {
            1
        } else {
            2
        };
        let pool = sequence.pool(&data.url(), connections)?;
        let (mut rate, mut p50, mut p99) = (vec![], vec![], vec![]);
        for _ in 0..plan.reps {
            rt.block_on(raw::pgmcp_sequence(
                &pool,
                sequence,
                1,
                plan.warmup_calls,
                plan.budget,
                data.accounts(),
            ))?;
            let (latencies, wall) = rt.block_on(raw::pgmcp_sequence(
                &pool,
                sequence,
                1,
                plan.point_calls,
                plan.budget,
                data.accounts(),
            ))?;
            let latencies = Latencies::new(latencies);
            rate.push(latencies.len() as f64 / wall.as_secs_f64());
            p50.push(ms(latencies.percentile(50.0)));
            p99.push(ms(latencies.percentile(99.0)));
        }
        section.row(vec![
            sequence.label().into(),
            spread(&rate, 0),
            spread(&p50, 3),
            spread(&p99, 3),
            "—".into(),
        ]);
    }
    section.note(format!(
        "{} calls per repetition (at most {} s), {} repetitions, each on a fresh `pgmcp serve`; median (min–max). \
         CPU is utime+stime of the server process from /proc/<pid>/stat (10 ms ticks). \"{}\" is what pgmcp \
         asks of PostgreSQL per read-only call, without pgmcp: the statement restated with its row limit \
         (`SELECT * FROM (…) LIMIT 1001`) and prepared once per pool connection, then `START TRANSACTION READ \
         ONLY`, its Bind/Execute, `ROLLBACK` and the session check (what outlives a rollback: SQL-level \
         prepared statements listed, advisory locks released), the three prepared by name once per connection, \
         under one Sync, all in one flight and answered in one; no reset on checkout (deadpool's `Fast`); on a pool of \
         2 as pgmcp ends up using for one sequential client. \"{}\" leaves the check out: the difference is what the check costs. \"{}\" is \
         the sequence before this round: BEGIN awaited, then a portal with a row limit (Bind, then Execute), the \
         ROLLBACK queued, and the session check.",
        plan.point_calls,
        plan.budget.as_secs(),
        plan.reps,
        raw::Sequence::Current.label(),
        raw::Sequence::WithoutSessionCheck.label(),
        raw::Sequence::PreviousPortal.label(),
    ));
    Ok(section)
}

/// The wide results of scenario 3 and the huge ones of scenario 4.
pub struct BigQuery {
    pub label: &'static str,
    pub sql: String,
    pub limit: Option<u64>,
}

pub fn big_queries(plan: &Plan, data: &Dataset) -> (Vec<BigQuery>, Vec<BigQuery>) {
    let wide = vec![
        BigQuery {
            label: "pgbench_accounts, 10,000 rows",
            sql: "SELECT * FROM pgbench_accounts ORDER BY aid LIMIT 10000".into(),
            limit: Some(10_000),
        },
        BigQuery {
            label: "mixed types, 10,000 rows",
            sql: "SELECT * FROM mixed ORDER BY id LIMIT 10000".into(),
            limit: Some(10_000),
        },
    ];
    let huge = vec![
        BigQuery {
            label: Box::leak(
                format!("pgbench_accounts, all {} rows", data.accounts()).into_boxed_str(),
            ),
            sql: "SELECT * FROM pgbench_accounts".into(),
            limit: None,
        },
        BigQuery {
            label: Box::leak(
                format!("generate_series, {} rows", plan.series_rows).into_boxed_str(),
            ),
            sql: format!("SELECT * FROM generate_series(1, {})", plan.series_rows),
            limit: None,
        },
    ];
    (wide, huge)
}

fn query_args(query: &BigQuery) -> Value {
    match query.limit {
        Some(limit) => json!({"sql": query.sql, "limit": limit}),
        None => json!({"sql": query.sql}),
    }
}

/// Scenario 3: 10,000-row answers, one server, repeated calls.
pub fn wide_results(
    plan: &Plan,
    pgmcp: &Pgmcp,
    data: &Dataset,
    queries: &[BigQuery],
    rt: &tokio::runtime::Runtime,
) -> anyhow::Result<Section> {
    let mut section = Section::new(
        "3. 10,000-row results, stdio",
        &[
            "query",
            "server",
            "p50 ms",
            "p99 ms",
            "response",
            "server CPU/call ms",
            "rows",
        ],
    );
    let pool = raw::pool(&data.url(), 1)?;
    for query in queries {
        let (mut p50, mut p99, mut cpu, mut size, mut rows) = (vec![], vec![], vec![], 0, 0);
        for _ in 0..plan.reps {
            let (mut server, _) = pgmcp.start()?;
            server.call_tool("execute_query", query_args(query))?;
            let cpu_before = cpu_time(server.pid()).unwrap_or_default();
            let mut latencies = Vec::new();
            for _ in 0..plan.wide_calls {
                let call = Instant::now();
                let answer = server.call_tool("execute_query", query_args(query))?;
                latencies.push(call.elapsed());
                size = answer.bytes;
                rows = row_count(&answer.result);
            }
            let cpu_used = cpu_time(server.pid()).unwrap_or_default() - cpu_before;
            cpu.push(ms(cpu_used) / latencies.len() as f64);
            let latencies = Latencies::new(latencies);
            p50.push(ms(latencies.percentile(50.0)));
            p99.push(ms(latencies.percentile(99.0)));
        }
        section.row(vec![
            query.label.into(),
            "pgmcp".into(),
            spread(&p50, 2),
            spread(&p99, 2),
            bytes(size as f64),
            spread(&cpu, 2),
            rows.to_string(),
        ]);
        let mut raw_ms = Vec::new();
        let mut raw_rows = 0;
        for _ in 0..plan.reps * plan.wide_calls {
            let (elapsed, count) = rt.block_on(raw::fetch_all(&pool, &query.sql))?;
            raw_ms.push(ms(elapsed));
            raw_rows = count;
        }
        let raw_latencies = Latencies::new(
            raw_ms
                .iter()
                .map(|m| Duration::from_secs_f64(m / 1000.0))
                .collect(),
        );
        section.row(vec![
            query.label.into(),
            "raw tokio-postgres".into(),
            format!("{:.2}", ms(raw_latencies.percentile(50.0))),
            format!("{:.2}", ms(raw_latencies.percentile(99.0))),
            "(binary rows)".into(),
            "—".into(),
            raw_rows.to_string(),
        ]);
    }
    section.note(format!(
        "{} calls × {} repetitions after one warm-up call; `limit: 10000` is passed (the default cap is 1,000 rows). \
         Response = bytes of the JSON-RPC line on stdout.",
        plan.wide_calls, plan.reps
    ));
    Ok(section)
}

/// Scenario 4: queries that would return millions of rows; a fresh server per repetition so VmHWM is this call's.
pub fn huge_results(
    plan: &Plan,
    pgmcp: &Pgmcp,
    data: &Dataset,
    queries: &[BigQuery],
    rt: &tokio::runtime::Runtime,
) -> anyhow::Result<Section> {
    let mut section = Section::new(
        "4. Unbounded queries (truncated answer), stdio",
        &[
            "query",
            "server",
            "time to answer ms",
            "response",
            "rows returned",
            "peak RSS MiB",
        ],
    );
    let pool = raw::pool(&data.url(), 1)?;
    for query in queries {
        let (mut time, mut hwm, mut size, mut rows) = (vec![], vec![], 0, 0);
        for _ in 0..plan.reps {
            let (mut server, _) = pgmcp.start()?;
            // Connect the pool first, so the figure is the query and not the connection set-up.
            server.call_tool("execute_query", json!({"sql": "SELECT 1"}))?;
            let call = Instant::now();
            let answer = server.call_tool("execute_query", query_args(query))?;
            time.push(ms(call.elapsed()));
            size = answer.bytes;
            rows = row_count(&answer.result);
            hwm.push(status_kib(server.pid(), "VmHWM").unwrap_or(0) as f64 / 1024.0);
        }
        section.row(vec![
            query.label.into(),
            "pgmcp".into(),
            spread(&time, 1),
            bytes(size as f64),
            rows.to_string(),
            spread(&hwm, 1),
        ]);
        let mut raw_time = Vec::new();
        for _ in 0..plan.reps {
            raw_time.push(ms(rt.block_on(raw::fetch_first(&pool, &query.sql, 1001))?));
        }
        section.row(vec![
            query.label.into(),
            "raw: first 1,001 rows via a portal".into(),
            spread(&raw_time, 1),
            "—".into(),
            "1001".into(),
            "—".into(),
        ]);
    }
    section.note(
        "pgmcp's default cap (max_rows 1,000, max_result_bytes 4 MiB) applies; the answer says `truncated: true`. \
         A `generate_series` in FROM is materialized by PostgreSQL before its first row is returned, so its floor is \
         the server's own time (the raw row shows it).",
    );
    Ok(section)
}

/// Scenario 5 (stdio part): spawn to first tools/list answer, and idle memory.
pub fn startup(plan: &Plan, pgmcp: &Pgmcp) -> anyhow::Result<Section> {
    let mut section = Section::new(
        "5. Start-up and memory, stdio",
        &[
            "server",
            "spawn → tools/list ms",
            "idle RSS MiB",
            "RSS after 1 query MiB",
        ],
    );
    let (mut cold, mut idle, mut after) = (vec![], vec![], vec![]);
    for _ in 0..plan.cold_starts {
        let started = Instant::now();
        let (mut server, _) = pgmcp.start()?;
        server.request("tools/list", json!({}))?;
        cold.push(ms(started.elapsed()));
        std::thread::sleep(Duration::from_millis(300));
        idle.push(status_kib(server.pid(), "VmRSS").unwrap_or(0) as f64 / 1024.0);
        server.call_tool("execute_query", point_args(1))?;
        after.push(status_kib(server.pid(), "VmRSS").unwrap_or(0) as f64 / 1024.0);
    }
    section.row(vec![
        "pgmcp".into(),
        spread(&cold, 1),
        spread(&idle, 1),
        spread(&after, 1),
    ]);
    section.note(format!(
        "{} cold starts: process spawn, `initialize`, `notifications/initialized`, `tools/list`. Idle RSS is VmRSS \
         300 ms later (the pool has pre-opened its first connection by then).",
        plan.cold_starts
    ));
    Ok(section)
}

/// Scenario 6 (stdio part): the catalog tools on a schema with many tables.
pub fn catalog(plan: &Plan, pgmcp: &Pgmcp, data: &Dataset) -> anyhow::Result<Section> {
    let mut section = Section::new(
        format!("6. Catalog tools on {} tables, stdio", data.catalog_tables),
        &["tool", "p50 ms", "p99 ms", "response", "server CPU/call ms"],
    );
    let middle = format!("many.t{:04}", data.catalog_tables / 2);
    let cases = [
        ("list_tables", json!({"schema": "many", "limit": 1000})),
        ("describe_table", json!({"table": middle})),
        ("search_tables", json!({"term": "t05"})),
    ];
    let (mut server, _) = pgmcp.start()?;
    for (tool, arguments) in cases {
        server.call_tool(tool, arguments.clone())?;
        let cpu_before = cpu_time(server.pid()).unwrap_or_default();
        let mut latencies = Vec::new();
        let mut size = 0;
        for _ in 0..plan.catalog_calls {
            let call = Instant::now();
            size = server.call_tool(tool, arguments.clone())?.bytes;
            latencies.push(call.elapsed());
        }
        let cpu_used = cpu_time(server.pid()).unwrap_or_default() - cpu_before;
        let latencies = Latencies::new(latencies);
        section.row(vec![
            format!("{tool} {arguments}"),
            format!("{:.2}", ms(latencies.percentile(50.0))),
            format!("{:.2}", ms(latencies.percentile(99.0))),
            bytes(size as f64),
            format!("{:.3}", ms(cpu_used) / latencies.len() as f64),
        ]);
    }
    section.note(format!("{} calls each on one server.", plan.catalog_calls));
    Ok(section)
}

/// `row_count` of an execute_query answer, read from its one text block as a client would (outside the timing).
fn row_count(result: &Value) -> u64 {
    result["content"][0]["text"]
        .as_str()
        .and_then(|text| serde_json::from_str::<Value>(text).ok())
        .and_then(|answer| answer["row_count"].as_u64())
        .unwrap_or(0)
}
