//! Scenario 2 (point queries over Streamable HTTP with a bearer token validated on every call, at several
//! concurrencies, in both protocol eras, beside the raw pool and the HTTP floor), the HTTP half of scenario 5 (idle
//! RSS, RSS under the heaviest load) and scenario 6's token validation cost.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::http::{HeaderMap, HeaderValue, Uri, header};
use pgmcp::http::auth::{AuthMode, AuthSettings, Authenticator, ResourceInfo};

use crate::Plan;
use crate::dataset::Dataset;
use crate::http::{Era, HttpServer, McpHttp, http_client};
use crate::http_floor::{FloorWork, HttpFloor};
use crate::issuer::{self, Issuer};
use crate::measure::{
    Latencies, XorShift, context_switches, cpu_time, machine_ipis, machine_ticks, ms,
    postmaster_pid, status_kib, threads_cpu_time, tree_cpu_time,
};
use crate::peers::PointCall;
use crate::raw;
use crate::report::{Section, spread};
use crate::stdio_scenarios::Pgmcp;

/// pgmcp's default pool size: the raw floor gets as many connections, so both sides use the same database.
const PGMCP_POOL_MAX: usize = 10;

/// The name of the bench runtime's worker threads, which run the clients: it tells their CPU apart from the bench's
/// other threads (its main thread, the memory sampler). At most 15 bytes, all the kernel keeps of a thread's name.
pub const CLIENT_THREAD: &str = "bench-clients";

/// The figures of one (server, era, concurrency) cell over the repetitions.
#[derive(Default)]
struct Cell {
    rate: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
    cpu: Vec<f64>,
    /// PostgreSQL's CPU per call (the postmaster and every backend), ms.
    database_cpu: Vec<f64>,
    /// The bench's clients' CPU per call (the bench runtime's worker threads), ms.
    client_cpu: Vec<f64>,
    /// Share of the machine's CPU time left idle while the repetition ran, %.
    idle: Vec<f64>,
    /// The server's threads' voluntary context switches per call (they ran out of work and slept).
    slept: Vec<f64>,
    /// The server's threads' involuntary context switches per call (taken off a core with work left).
    preempted: Vec<f64>,
    /// The machine's inter-processor interrupts per call (rescheduling and function-call ones).
    ipis: Vec<f64>,
    /// Largest VmRSS seen while the load ran, MiB.
    peak_rss: f64,
}

impl Cell {
    fn add(&mut self, latencies: Vec<Duration>, wall: Duration) -> anyhow::Result<()> {
        let latencies = Latencies::new(latencies);
        anyhow::ensure!(latencies.len() > 0, "no call finished within the budget");
        self.rate.push(latencies.len() as f64 / wall.as_secs_f64());
        self.p50.push(ms(latencies.percentile(50.0)));
        self.p99.push(ms(latencies.percentile(99.0)));
        Ok(())
    }

    /// A row of the table of where the CPU went (2b).
    fn split_row(&self, label: &str, auth: &str) -> Vec<String> {
        let per_call = median(&self.cpu) + median(&self.database_cpu) + median(&self.client_cpu);
        vec![
            label.into(),
            auth.into(),
            spread(&self.rate, 0),
            spread(&self.cpu, 3),
            spread(&self.database_cpu, 3),
            spread(&self.client_cpu, 3),
            format!("{per_call:.3}"),
            spread(&self.idle, 1),
            spread(&self.slept, 2),
            spread(&self.preempted, 2),
            spread(&self.ipis, 2),
        ]
    }

    /// A row of scenario 2's table; the CPU column is "—" where the server's CPU was not measured.
    fn row(
        &self,
        label: &str,
        auth: &str,
        concurrency: usize,
        vs_raw: &str,
        vs_sequence: &str,
    ) -> Vec<String> {
        vec![
            label.into(),
            auth.into(),
            concurrency.to_string(),
            spread(&self.rate, 0),
            spread(&self.p50, 3),
            spread(&self.p99, 3),
            format!("{:.1}", median(&self.p99) / median(&self.p50)),
            spread(&self.cpu, 3),
            vs_raw.into(),
            vs_sequence.into(),
        ]
    }
}

/// A raw load repeated `plan.reps` times.
fn raw_cell<F>(
    plan: &Plan,
    rt: &tokio::runtime::Runtime,
    load: impl Fn() -> F,
) -> anyhow::Result<Cell>
where
    F: std::future::Future<Output = anyhow::Result<(Vec<Duration>, Duration)>>,
{
    let mut cell = Cell::default();
    for _ in 0..plan.reps {
        let (latencies, wall) = rt.block_on(load())?;
        cell.add(latencies, wall)?;
    }
    Ok(cell)
}

/// Point-query load from `clients` in parallel until `calls` are done or `budget` is spent; the clients come back
/// for the next repetition.
pub async fn load(
    point: PointCall,
    clients: Vec<McpHttp>,
    calls: usize,
    budget: Duration,
    accounts: u64,
    seed: u64,
) -> anyhow::Result<(Vec<Duration>, Duration, Vec<McpHttp>)> {
    let started = Instant::now();
    let per_client = calls.div_ceil(clients.len().max(1));
    let mut tasks = Vec::new();
    for (n, mut client) in clients.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut ids = XorShift::new(seed + n as u64);
            let mut latencies = Vec::with_capacity(per_client);
            for _ in 0..per_client {
                if started.elapsed() > budget {
                    break;
                }
                let call = Instant::now();
                client
                    .call_tool(point.tool, point.arguments(ids.next_in(accounts)))
                    .await?;
                latencies.push(call.elapsed());
            }
            anyhow::Ok((latencies, client))
        }));
    }
    let mut all = Vec::new();
    let mut clients = Vec::new();
    for task in tasks {
        let (latencies, client) = task.await.context("client task panicked")??;
        all.extend(latencies);
        clients.push(client);
    }
    Ok((all, started.elapsed(), clients))
}

pub async fn connect_all(
    url: &str,
    era: Era,
    tokens: &[String],
    concurrency: usize,
) -> anyhow::Result<Vec<McpHttp>> {
    let client = http_client()?;
    let mut clients = Vec::with_capacity(concurrency);
    for n in 0..concurrency {
        let token = (!tokens.is_empty()).then(|| tokens[n % tokens.len()].as_str());
        clients.push(McpHttp::connect(client.clone(), url, era, token).await?);
    }
    Ok(clients)
}

/// Samples a process's VmRSS until dropped; the largest value is the RSS under load.
struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = 0;
            while !flag.load(Ordering::Relaxed) {
                peak = peak.max(status_kib(pid, "VmRSS").unwrap_or(0));
                std::thread::sleep(Duration::from_millis(20));
            }
            peak
        });
        RssSampler {
            stop,
            thread: Some(thread),
        }
    }

    fn peak_mib(mut self) -> f64 {
        self.stop.store(true, Ordering::Relaxed);
        let kib = self.thread.take().and_then(|t| t.join().ok()).unwrap_or(0);
        kib as f64 / 1024.0
    }
}

/// The server a cell's clients call: pgmcp's process, or the HTTP floor's.
#[derive(Clone, Copy)]
enum Target<'a> {
    Pgmcp(&'a HttpServer),
    Floor(&'a HttpFloor),
}

impl Target<'_> {
    fn url(&self) -> &str {
        match self {
            Target::Pgmcp(server) => &server.mcp_url,
            Target::Floor(floor) => &floor.mcp_url,
        }
    }

    fn cpu_time(&self) -> Option<Duration> {
        match self {
            Target::Pgmcp(server) => cpu_time(server.pid()),
            Target::Floor(floor) => cpu_time(floor.pid()),
        }
    }

    fn pid(&self) -> u32 {
        match self {
            Target::Pgmcp(server) => server.pid(),
            Target::Floor(floor) => floor.pid(),
        }
    }
}

fn measure_cell(
    plan: &Plan,
    rt: &tokio::runtime::Runtime,
    target: Target,
    era: Era,
    tokens: &[String],
    concurrency: usize,
    data: &Dataset,
) -> anyhow::Result<Cell> {
    let accounts = data.accounts();
    let postmaster = postmaster_pid(data.cluster.data_dir());
    let mut cell = Cell::default();
    // The clients stay connected across the repetitions, as agents do; legacy sessions are closed at the end.
    let clients = rt.block_on(connect_all(target.url(), era, tokens, concurrency))?;
    let (_, _, mut clients) = rt.block_on(load(
        PointCall::PGMCP,
        clients,
        plan.warmup_calls,
        plan.budget,
        accounts,
        7,
    ))?;
    for rep in 0..plan.reps {
        let sampler = RssSampler::start(target.pid());
        let cpu_before = target.cpu_time().unwrap_or_default();
        let database_before = postmaster.and_then(tree_cpu_time).unwrap_or_default();
        let clients_before = threads_cpu_time(CLIENT_THREAD).unwrap_or_default();
        let ticks_before = machine_ticks().unwrap_or_default();
        let switches_before = context_switches(target.pid()).unwrap_or_default();
        let ipis_before = machine_ipis().unwrap_or_default();
        let (latencies, wall, back) = rt.block_on(load(
            PointCall::PGMCP,
            clients,
            plan.http_calls,
            plan.budget,
            accounts,
            1000 * rep as u64 + 1,
        ))?;
        clients = back;
        let cpu_used = target.cpu_time().unwrap_or_default() - cpu_before;
        // Saturating: a backend or a thread that ended during the repetition takes its CPU time with it.
        let database_used = (postmaster.and_then(tree_cpu_time).unwrap_or_default())
            .saturating_sub(database_before);
        let clients_used =
            (threads_cpu_time(CLIENT_THREAD).unwrap_or_default()).saturating_sub(clients_before);
        let ticks_after = machine_ticks().unwrap_or_default();
        let switches_after = context_switches(target.pid()).unwrap_or_default();
        let ipis_after = machine_ipis().unwrap_or_default();
        let idle_ticks = ticks_after.0.saturating_sub(ticks_before.0) as f64;
        let all_ticks = ticks_after.1.saturating_sub(ticks_before.1).max(1) as f64;
        cell.peak_rss = cell.peak_rss.max(sampler.peak_mib());
        let calls = latencies.len().max(1) as f64;
        cell.cpu.push(ms(cpu_used) / calls);
        cell.database_cpu.push(ms(database_used) / calls);
        cell.client_cpu.push(ms(clients_used) / calls);
        cell.idle.push(100.0 * idle_ticks / all_ticks);
        let per_call = |before: u64, after: u64| after.saturating_sub(before) as f64 / calls;
        cell.slept
            .push(per_call(switches_before.0, switches_after.0));
        cell.preempted
            .push(per_call(switches_before.1, switches_after.1));
        cell.ipis.push(per_call(ipis_before, ipis_after));
        cell.add(latencies, wall)?;
    }
    rt.block_on(async {
        for client in clients {
            client.close().await?;
        }
        anyhow::Ok(())
    })?;
    Ok(cell)
}

fn median(values: &[f64]) -> f64 {
    crate::measure::Spread::of(values).map_or(f64::NAN, |s| s.median)
}

/// What the HTTP scenarios produce: scenario 2's table, the HTTP memory table (scenario 5), and the CPU per
/// call with and without token validation for scenario 6.
pub struct HttpResults {
    pub transport: Section,
    /// Where each call's CPU went at the heaviest concurrency (2b).
    pub split: Section,
    pub memory: Section,
    /// (concurrency, CPU/call with Entra tokens, CPU/call without authentication), 2026-07-28 era.
    pub auth_cost: Vec<(usize, f64, f64)>,
}

/// Scenario 2 and the HTTP memory figures.
pub fn transport(
    plan: &Plan,
    pgmcp: &Pgmcp,
    data: &Dataset,
    rt: &tokio::runtime::Runtime,
    issuer: &Issuer,
) -> anyhow::Result<HttpResults> {
    let mut transport = Section::new(
        "2. Point query over Streamable HTTP, bearer token on every call",
        &[
            "protocol era",
            "auth",
            "clients",
            "calls/s",
            "p50 ms",
            "p99 ms",
            "p99/p50",
            "server CPU/call ms",
            "× raw pool calls/s",
            "× raw sequence calls/s",
        ],
    );
    let heaviest = plan.http_concurrency.iter().copied().max().unwrap_or(1);
    let mut split = Section::new(
        format!("2b. Where a call's CPU goes over HTTP at {heaviest} clients"),
        &[
            "server",
            "auth",
            "calls/s",
            "server CPU/call ms",
            "PostgreSQL CPU/call ms",
            "clients' CPU/call ms",
            "sum ms",
            "idle CPU %",
            "server slept/call",
            "server preempted/call",
            "IPIs/call",
        ],
    );
    let mut memory = Section::new(
        "5b. Memory of `serve --http`",
        &[
            "protocol era",
            "idle RSS MiB",
            "RSS under the heaviest load MiB",
            "VmHWM after the run MiB",
        ],
    );
    let accounts = data.accounts();
    let started = Instant::now();
    let tokens = (0..plan.http_tokens)
        .map(|n| issuer.token(n))
        .collect::<anyhow::Result<Vec<_>>>()?;
    println!(
        "  signed {} tokens in {:.1} s",
        tokens.len(),
        started.elapsed().as_secs_f64()
    );

    // The raw floors first, at each concurrency: the same statement through a pool of pgmcp's size, and what the
    // database side of a pgmcp call costs without pgmcp (see scenario 1).
    let mut raw_rate = Vec::new();
    let mut sequence_rate = Vec::new();
    for &concurrency in &plan.http_concurrency {
        let connections = concurrency.min(PGMCP_POOL_MAX);
        let pool = raw::pool(&data.url(), connections)?;
        let load =
            || raw::point_queries(&pool, concurrency, plan.http_calls, plan.budget, accounts);
        rt.block_on(raw::point_queries(
            &pool,
            concurrency,
            plan.warmup_calls,
            plan.budget,
            accounts,
        ))?;
        let cell = raw_cell(plan, rt, load)?;
        raw_rate.push(median(&cell.rate));
        transport.row(cell.row("raw tokio-postgres pool", "—", concurrency, "1.00", "—"));

        let sequence = raw::Sequence::Current;
        let pool = sequence.pool(&data.url(), connections)?;
        let load = || {
            raw::pgmcp_sequence(
                &pool,
                sequence,
                concurrency,
                plan.http_calls,
                plan.budget,
                accounts,
            )
        };
        let cell = raw_cell(plan, rt, load)?;
        sequence_rate.push(median(&cell.rate));
        let vs_raw = format!("{:.2}", median(&cell.rate) / raw_rate[raw_rate.len() - 1]);
        transport.row(cell.row(sequence.label(), "—", concurrency, &vs_raw, "1.00"));
    }

    // The HTTP floors at each concurrency, driven by the same clients as pgmcp (2025-11-25 era, the one with the
    // least per-call protocol), one floor server per concurrency so its pool has the raw pool's size: the bare
    // statement, then pgmcp's statement sequence.
    for work in [FloorWork::Statement, FloorWork::PgmcpSequence] {
        for (i, &concurrency) in plan.http_concurrency.iter().enumerate() {
            let floor =
                HttpFloor::start(issuer, &data.url(), concurrency.min(PGMCP_POOL_MAX), work)?;
            let cell = measure_cell(
                plan,
                rt,
                Target::Floor(&floor),
                Era::Legacy,
                &tokens,
                concurrency,
                data,
            )
            .with_context(|| format!("{} at {concurrency} clients", work.label()))?;
            drop(floor);
            if concurrency == heaviest {
                split.row(cell.split_row(work.label(), "Entra JWT (RS256)"));
            }
            transport.row(cell.row(
                work.label(),
                "Entra JWT (RS256)",
                concurrency,
                &format!("{:.2}", median(&cell.rate) / raw_rate[i]),
                &format!("{:.2}", median(&cell.rate) / sequence_rate[i]),
            ));
        }
    }

    let mut auth_cost = Vec::new();
    let variants: [(Era, bool); 4] = [
        (Era::Legacy, true),
        (Era::LegacySessions, true),
        (Era::Stateless, true),
        (Era::Stateless, false),
    ];
    for (era, with_auth) in variants {
        let mut flags: Vec<&str> = era.server_flags().to_vec();
        let config = if with_auth {
            flags.extend(Issuer::flags());
            issuer.config()
        } else {
            String::new()
        };
        let server = HttpServer::start(&pgmcp.binary, &data.url(), &config, &flags)?;
        std::thread::sleep(Duration::from_millis(300));
        let idle = status_kib(server.pid(), "VmRSS").unwrap_or(0) as f64 / 1024.0;
        let mut heaviest_rss = f64::NAN;
        for (i, &concurrency) in plan.http_concurrency.iter().enumerate() {
            let cell = measure_cell(
                plan,
                rt,
                Target::Pgmcp(&server),
                era,
                if with_auth { &tokens } else { &[] },
                concurrency,
                data,
            )
            .with_context(|| format!("{} at {concurrency} clients", era.label()))?;
            if concurrency == heaviest {
                heaviest_rss = cell.peak_rss;
                split.row(cell.split_row(
                    &format!("pgmcp, {}", era.label()),
                    if with_auth {
                        "Entra JWT (RS256)"
                    } else {
                        "none"
                    },
                ));
            }
            if era == Era::Stateless {
                let cpu = median(&cell.cpu);
                match auth_cost.iter_mut().find(|(c, _, _)| *c == concurrency) {
                    Some(entry) => entry.2 = cpu,
                    None => auth_cost.push((concurrency, cpu, f64::NAN)),
                }
            }
            transport.row(cell.row(
                era.label(),
                if with_auth {
                    "Entra JWT (RS256)"
                } else {
                    "none"
                },
                concurrency,
                &format!("{:.2}", median(&cell.rate) / raw_rate[i]),
                &format!("{:.2}", median(&cell.rate) / sequence_rate[i]),
            ));
        }
        if with_auth {
            memory.row(vec![
                era.label().into(),
                format!("{idle:.1}"),
                format!("{heaviest_rss:.1}"),
                format!(
                    "{:.1}",
                    status_kib(server.pid(), "VmHWM").unwrap_or(0) as f64 / 1024.0
                ),
            ]);
        }
    }
    transport.note(format!(
        "Each client has its own keep-alive connection (reqwest) and its own token (RS256, validated by pgmcp on \
         every request against the cached JWKS of a loopback issuer in the bench process, `--auth-mode entra` with \
         tenant, audience, role and client-app checks). {} calls per repetition shared by the clients (at most {} \
         s), {} repetitions after a warm-up, one server per era; median (min–max). The raw pool has min(clients, \
         {pool}) connections, pgmcp's default pool size; \"{sequence}\" is what pgmcp asks of PostgreSQL per \
         read-only call, without pgmcp (the statement restated with its row limit and prepared once per pool \
         connection; BEGIN READ ONLY, the statement, and the ROLLBACK with the session check in one flight; no reset on checkout; the \
         session check after). \"{floor}\" is the most any \
         HTTP server with a token check could reach on this machine with this client: a minimal axum server in a \
         process of its own (the bench binary started again), on a runtime of 2 worker threads (faster here than \
         one), that checks the bearer \
         token as a verdict cache does (its SHA-256 looked up among the tokens verified before; RS256 signature, \
         `exp`, audience, issuer, tenant, role and calling app on a miss), parses the JSON-RPC body, runs the \
         statement from a per-connection prepared statement of a pool of the raw pool's size and answers in \
         pgmcp's shape (one compact JSON text block) — no MCP layer, SQL guard, transaction or row limit. It is \
         driven by the same 2025-11-25 clients as pgmcp, which share the 2 cores with it and PostgreSQL, so the gap \
         between the raw pool and the floor is what HTTP, JSON and the token check cost here before any MCP server \
         does its own work; its server CPU is that of its process, as pgmcp's is. \"{floor_sequence}\" \
         is the same server running pgmcp's statement sequence instead of the bare statement (rows rendered by \
         pgmcp's renderer from the binary answer): the database work pgmcp's safety layers ask for, so the gap \
         between it and pgmcp is pgmcp's MCP layer, guard and policy alone. Clients \
         connect once per row and stay connected across its repetitions (legacy sessions end with `DELETE` after \
         the last one). Legacy clients `initialize` once (not measured); 2026-07-28 clients send `server/discover` \
         once and the protocol version in `_meta` and headers on every call.",
        plan.http_calls,
        plan.budget.as_secs(),
        plan.reps,
        pool = PGMCP_POOL_MAX,
        sequence = raw::Sequence::Current.label(),
        floor = FloorWork::Statement.label(),
        floor_sequence = FloorWork::PgmcpSequence.label(),
    ));
    split.note(
        "Per repetition, around the calls only: the server's CPU as in section 2; PostgreSQL's, the postmaster's \
         process tree (every backend); the clients', the bench runtime's worker threads, which run the load; the \
         machine's idle time from /proc/stat (idle and I/O wait, against all CPU time, both cores). Median \
         (min–max) over the repetitions. With every core busy, calls/s is about 2 cores over the sum; idle time is \
         work the chain of client, server and database left undone. CPU is counted in 10 ms ticks, so a figure \
         per call over a repetition of a few thousand calls is good to about 0.005 ms. The server's context \
         switches per call, from its threads' /proc status: voluntary ones (a thread ran out of work and slept) \
         and involuntary ones (a thread was taken off its core with work left: preempted, or its slice ended). The \
         machine's inter-processor interrupts per call, from /proc/interrupts (rescheduling and function-call ones, \
         both cores, every process): what waking a task on the other core costs, an exit to the hypervisor for \
         sender and receiver on this virtual machine."
            .to_string(),
    );
    memory.note(format!(
        "Idle RSS is VmRSS 300 ms after start (the pool's first connection is open by then); under load it is the \
         largest VmRSS sampled every 20 ms during the {heaviest}-client runs."
    ));
    Ok(HttpResults {
        transport,
        split,
        memory,
        auth_cost,
    })
}

/// Scenario 6: what validating one token costs pgmcp, measured in-process on pgmcp's own `Authenticator` with
/// the keys cached, and as the difference in server CPU per HTTP call with and without authentication.
pub fn token_validation(
    plan: &Plan,
    rt: &tokio::runtime::Runtime,
    issuer: &Issuer,
    auth_cost: &[(usize, f64, f64)],
) -> anyhow::Result<Section> {
    let mut section = Section::new(
        "6a. Token validation (cached keys)",
        &["measurement", "per request µs"],
    );
    let settings = AuthSettings {
        mode: AuthMode::Entra,
        entra_tenant_ids: vec![issuer::TENANT.into()],
        entra_client_id: Some(issuer::CLIENT_ID.into()),
        required_roles: vec![issuer::ROLE.into()],
        allowed_client_apps: vec![issuer::AGENT_APP.into()],
        entra_authority: Some(issuer.authority.clone()),
        entra_v1_issuer_host: Some(issuer.authority.clone()),
        ..AuthSettings::default()
    };
    let resource = ResourceInfo {
        resource: "http://127.0.0.1/mcp".into(),
        metadata_url: "http://127.0.0.1/.well-known/oauth-protected-resource/mcp".into(),
    };
    // Distinct tokens for the first-request cost (pgmcp remembers verdicts per token), one for the repeated case.
    let tokens = (0..plan.validations)
        .map(|n| {
            let token = issuer.token(n)?;
            let mut headers = HeaderMap::new();
            headers.insert(
                header::AUTHORIZATION,
                HeaderValue::from_str(&format!("Bearer {token}"))?,
            );
            anyhow::Ok(headers)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let uri: Uri = "/mcp".parse()?;
    let (first, repeated) = rt.block_on(async {
        let auth = Authenticator::new(&settings, resource).await?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !auth.keys_loaded() {
            anyhow::ensure!(Instant::now() < deadline, "the issuer's keys did not load");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let refused = |_| anyhow::anyhow!("the bench token was refused");
        let started = Instant::now();
        for headers in &tokens {
            auth.authenticate(headers, &uri).await.map_err(refused)?;
        }
        let first = started.elapsed().as_secs_f64() * 1e6 / tokens.len() as f64;
        let mut repeated = Vec::new();
        for _ in 0..plan.reps {
            let started = Instant::now();
            for _ in 0..plan.validations {
                auth.authenticate(&tokens[0], &uri).await.map_err(refused)?;
            }
            repeated.push(started.elapsed().as_secs_f64() * 1e6 / plan.validations as f64);
        }
        anyhow::Ok((first, repeated))
    })?;
    section.row(vec![
        "`Authenticator::authenticate`, first request with a token: header, RS256 signature, claims, policy (in-process)".into(),
        format!("{first:.1}"),
    ]);
    section.row(vec![
        "`Authenticator::authenticate`, every later request with the same token (verdict remembered until `exp`)".into(),
        spread(&repeated, 2),
    ]);
    for (concurrency, with, without) in auth_cost {
        section.row(vec![
            format!(
                "server CPU per HTTP call, Entra JWT minus no authentication, 2026-07-28, {concurrency} clients"
            ),
            format!("{:.0}", (with - without) * 1000.0),
        ]);
    }
    section.note(format!(
        "2048-bit RS256 tokens: {} distinct ones once each, then one of them {} times × {} repetitions; median \
         (min–max).",
        plan.validations, plan.validations, plan.reps
    ));
    Ok(section)
}
