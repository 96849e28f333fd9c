//! pgmcp's benchmark harness (`./scripts/bench.sh`, or `cargo bench --bench pgmcp -- [--smoke] [--peers]`).
//!
//! Starts a throwaway PostgreSQL, loads the dataset, runs every scenario against the release `pgmcp` and the raw
//! floor, optionally drives the peer servers through one official SDK client, prints the tables and writes them
//! into BENCHMARKS.md. Every loop is bounded in count and time.

mod dataset;
mod http;
mod http_floor;
mod http_scenarios;
mod issuer;
mod measure;
mod peers;
mod peers_raw;
mod peers_sdk;
mod raw;
mod report;
mod stdio;
mod stdio_scenarios;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;

use report::Section;
use stdio_scenarios::Pgmcp;

/// How much to run: the full plan for BENCHMARKS.md, or a smoke plan that finishes in well under a minute.
pub struct Plan {
    pub smoke: bool,
    pub scale: u32,
    pub mixed_rows: u32,
    pub catalog_tables: u32,
    pub series_rows: u64,
    pub reps: usize,
    pub warmup_calls: usize,
    pub point_calls: usize,
    pub wide_calls: usize,
    pub catalog_calls: usize,
    pub cold_starts: usize,
    /// Point calls per repetition of one HTTP cell, shared by its clients.
    pub http_calls: usize,
    pub http_concurrency: Vec<usize>,
    /// Distinct tokens (one per client up to this many).
    pub http_tokens: usize,
    /// In-process token validations per repetition.
    pub validations: usize,
    /// Upper bound on the wall time of one measured loop.
    pub budget: Duration,
}

impl Plan {
    fn full() -> Plan {
        Plan {
            smoke: false,
            scale: 10,
            mixed_rows: 100_000,
            catalog_tables: 1000,
            series_rows: 10_000_000,
            reps: 5,
            warmup_calls: 200,
            point_calls: 3000,
            wide_calls: 10,
            catalog_calls: 50,
            cold_starts: 10,
            http_calls: 4000,
            http_concurrency: vec![1, 8, 64],
            http_tokens: 64,
            validations: 500,
            budget: Duration::from_secs(20),
        }
    }

    fn smoke() -> Plan {
        Plan {
            smoke: true,
            scale: 1,
            mixed_rows: 10_000,
            catalog_tables: 100,
            series_rows: 1_000_000,
            reps: 2,
            warmup_calls: 20,
            point_calls: 200,
            wide_calls: 2,
            catalog_calls: 5,
            cold_starts: 2,
            http_calls: 200,
            http_concurrency: vec![1, 8, 64],
            http_tokens: 4,
            validations: 20,
            budget: Duration::from_secs(5),
        }
    }
}

struct Options {
    smoke: bool,
    peers: bool,
    output: Option<PathBuf>,
    /// Scenario numbers to run (`--only 1,2`); all when empty. Partial runs never write BENCHMARKS.md's table, only
    /// another file given with --output.
    only: Vec<String>,
}

impl Options {
    fn wants(&self, scenario: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == scenario)
    }
}

fn parse_options() -> anyhow::Result<Options> {
    let mut options = Options {
        smoke: std::env::var("PGMCP_BENCH_SMOKE").is_ok_and(|v| v == "1"),
        peers: false,
        output: None,
        only: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--smoke" => options.smoke = true,
            "--peers" => options.peers = true,
            "--output" => {
                options.output = Some(args.next().context("--output needs a path")?.into())
            }
            "--only" => {
                let list = args
                    .next()
                    .context("--only needs scenario numbers, e.g. 1,2")?;
                options.only = list.split(',').map(|s| s.trim().to_string()).collect();
            }
            // `cargo bench` passes --bench to every bench target.
            "--bench" => {}
            other => {
                anyhow::bail!(
                    "unknown argument `{other}` (known: --smoke, --peers, --output FILE, --only 1,2,...)"
                )
            }
        }
    }
    Ok(options)
}

fn main() -> anyhow::Result<()> {
    if let Ok(spec) = std::env::var(http_floor::CHILD_ENV) {
        return http_floor::serve(&spec);
    }
    let options = parse_options()?;
    let plan = if options.smoke {
        Plan::smoke()
    } else {
        Plan::full()
    };
    let started = Instant::now();
    let load = measure::LoadSampler::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .thread_name(http_scenarios::CLIENT_THREAD)
        .enable_all()
        .build()?;
    println!(
        "pgmcp bench ({}): loading pgbench scale {}, {} mixed rows, {} catalog tables",
        if plan.smoke { "smoke" } else { "full" },
        plan.scale,
        plan.mixed_rows,
        plan.catalog_tables
    );
    let data = dataset::load(plan.scale, plan.mixed_rows, plan.catalog_tables)?;
    println!("dataset ready in {:.1} s", started.elapsed().as_secs_f64());
    let pgmcp = Pgmcp {
        binary: env!("CARGO_BIN_EXE_pgmcp").to_string(),
        url: data.url(),
    };
    let (wide, huge) = stdio_scenarios::big_queries(&plan, &data);

    let mut sections: Vec<Section> = Vec::new();
    let mut run = |name: &str, result: anyhow::Result<Section>| match result {
        Ok(section) => sections.push(section),
        Err(err) => {
            println!("  {name} failed: {err:#}");
            let mut failed = Section::new(format!("{name} (failed)"), &["error"]);
            failed.row(vec![format!("{err:#}")]);
            sections.push(failed);
        }
    };
    if options.wants("1") {
        println!("\n1. point query over stdio");
        run(
            "1. Point query",
            stdio_scenarios::point_query(&plan, &pgmcp, &data, &rt),
        );
    }
    let mut auth_cost = Vec::new();
    let mut memory = None;
    let issuer = issuer::Issuer::start(&rt);
    if options.wants("2") {
        println!("\n2. point query over Streamable HTTP with bearer tokens");
        let http = issuer
            .as_ref()
            .map_err(|e| anyhow::anyhow!("{e:#}"))
            .and_then(|issuer| http_scenarios::transport(&plan, &pgmcp, &data, &rt, issuer));
        match http {
            Ok(results) => {
                auth_cost = results.auth_cost;
                memory = Some(results.memory);
                run("2. Streamable HTTP", Ok(results.transport));
                run("2b. Where a call's CPU goes over HTTP", Ok(results.split));
            }
            Err(err) => run("2. Streamable HTTP", Err(err)),
        }
    }
    if options.wants("3") {
        println!("\n3. 10,000-row results");
        run(
            "3. 10,000-row results",
            stdio_scenarios::wide_results(&plan, &pgmcp, &data, &wide, &rt),
        );
    }
    if options.wants("4") {
        println!("\n4. unbounded queries");
        run(
            "4. Unbounded queries",
            stdio_scenarios::huge_results(&plan, &pgmcp, &data, &huge, &rt),
        );
    }
    if options.wants("5") {
        println!("\n5. start-up and memory");
        run("5. Start-up", stdio_scenarios::startup(&plan, &pgmcp));
    }
    if let Some(memory) = memory {
        run("5b. HTTP memory", Ok(memory));
    }
    if options.wants("6") {
        println!("\n6. catalog tools and token validation");
        run(
            "6. Catalog tools",
            stdio_scenarios::catalog(&plan, &pgmcp, &data),
        );
        run(
            "6a. Token validation",
            issuer
                .as_ref()
                .map_err(|e| anyhow::anyhow!("{e:#}"))
                .and_then(|issuer| {
                    http_scenarios::token_validation(&plan, &rt, issuer, &auth_cost)
                }),
        );
    }
    if options.peers && options.wants("7") {
        println!("\n7. peers through the Python MCP SDK and the bench's own clients");
        for section in peers::run(&plan, &pgmcp, &data, &wide, &huge, &rt) {
            sections.push(section);
        }
    }

    let mut body = environment(&plan, &data, &options, &load.finish())?;
    for section in &sections {
        body.push_str(&section.markdown());
    }
    let failures = sections
        .iter()
        .filter(|s| s.title.ends_with("(failed)"))
        .count();
    if let Some(path) = &options.output {
        if options.only.is_empty() || !path.ends_with("BENCHMARKS.md") {
            report::write_into(path, &body)?;
            println!("\nwrote {}", path.display());
        } else {
            println!("\n--only: {} left as it was", path.display());
        }
    }
    println!("bench finished in {:.1} s", started.elapsed().as_secs_f64());
    drop(data);
    anyhow::ensure!(failures == 0, "{failures} scenario(s) failed");
    Ok(())
}

/// The machine and versions the figures belong to.
fn environment(
    plan: &Plan,
    data: &dataset::Dataset,
    options: &Options,
    load_during_run: &str,
) -> anyhow::Result<String> {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|r| r.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mut out = format!(
        "## Results ({} run)\n\n- Machine: {cores} cores ({cpu}), {load_during_run} (other builds share \
         this machine: server CPU per call is the robust figure)\n- PostgreSQL: {}\n\
         - Dataset: `pgbench -i -s {}` ({} accounts), `mixed` with {} rows of 13 types, schema `many` with {} tables\n\
         - pgmcp {} (release build), driven over stdio by the bench's own minimal JSON-RPC client unless noted\n",
        if plan.smoke { "smoke" } else { "full" },
        data.server_version,
        plan.scale,
        data.accounts(),
        data.mixed_rows,
        data.catalog_tables,
        env!("CARGO_PKG_VERSION"),
    );
    if options.peers {
        out.push_str(&peers::versions_line());
    }
    out.push('\n');
    Ok(out)
}
