//! Scenario 7e and 7f: pgmcp and the peers through the bench's own minimal clients, in the same run as the SDK
//! tables — over stdio (`stdio.rs`, as scenario 1) and over each server's own HTTP transport without
//! authentication (`http.rs`, with scenario 2's load code) — so a slow client cannot hide a server's cost.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::Plan;
use crate::dataset::Dataset;
use crate::http_scenarios::{connect_all, load};
use crate::measure::{Latencies, Spread, XorShift, ms, tree_cpu_time};
use crate::peers::{HttpLaunch, PeerPlan, Server};
use crate::report::{Section, spread};
use crate::stdio::{StdioServer, without_database_environment};

/// One server's figures over the repetitions.
#[derive(Default)]
struct Figures {
    rate: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
    cpu: Vec<f64>,
}

impl Figures {
    fn add(
        &mut self,
        latencies: Vec<Duration>,
        wall: Duration,
        cpu: Duration,
    ) -> anyhow::Result<()> {
        let latencies = Latencies::new(latencies);
        anyhow::ensure!(latencies.len() > 0, "no call finished within the budget");
        self.rate.push(latencies.len() as f64 / wall.as_secs_f64());
        self.p50.push(ms(latencies.percentile(50.0)));
        self.p99.push(ms(latencies.percentile(99.0)));
        self.cpu.push(ms(cpu) / latencies.len() as f64);
        Ok(())
    }

    /// calls/s, p50, p99, CPU per call, then pgmcp's calls/s over this server's and this server's CPU per call
    /// over pgmcp's.
    fn cells(&self, pgmcp: Option<&Figures>) -> Vec<String> {
        let ratio = |a: f64, b: f64| {
            if a.is_finite() && b.is_finite() && b > 0.0 {
                format!("{:.2}", a / b)
            } else {
                "—".into()
            }
        };
        let (rate, cpu) = match pgmcp {
            Some(pgmcp) => (
                ratio(median(&pgmcp.rate), median(&self.rate)),
                ratio(median(&self.cpu), median(&pgmcp.cpu)),
            ),
            None => ("—".into(), "—".into()),
        };
        vec![
            spread(&self.rate, 0),
            spread(&self.p50, 3),
            spread(&self.p99, 3),
            spread(&self.cpu, 3),
            rate,
            cpu,
        ]
    }
}

fn median(values: &[f64]) -> f64 {
    Spread::of(values).map_or(f64::NAN, |s| s.median)
}

const RATIO_HEADER: [&str; 2] = ["pgmcp's calls/s ÷ this", "this CPU/call ÷ pgmcp's"];

/// 7e: the point query, sequential, through the bench's stdio client.
pub fn stdio(plan: &Plan, servers: &[Server], missing: &[String], data: &Dataset) -> Section {
    let mut section = Section::new(
        "7e. Peers: point query through the bench's stdio client (scenario 1's client)",
        &[
            "server",
            "calls/s",
            "p50 ms",
            "p99 ms",
            "server CPU/call ms",
            RATIO_HEADER[0],
            RATIO_HEADER[1],
        ],
    );
    let points = PeerPlan::of(plan);
    let mut measured = Vec::new();
    for server in servers {
        println!("  {}", server.label());
        match stdio_figures(plan, &points, server, data.accounts()) {
            Ok(figures) => measured.push((server, figures)),
            Err(err) => section.note(format!("{}: could not complete: {err:#}", server.label())),
        }
    }
    let pgmcp = measured
        .iter()
        .find(|(server, _)| server.is_pgmcp())
        .map(|(_, f)| f);
    for (server, figures) in &measured {
        let mut row = vec![server.label()];
        row.extend(figures.cells(pgmcp));
        section.row(row);
    }
    for why in missing.iter().filter(|m| m.starts_with("Not measured")) {
        section.note(why.clone());
    }
    section.note(format!(
        "The same servers, arguments and point query as 7a, driven by the bench's own stdio client \
         (`benches/pgmcp/stdio.rs`: one JSON-RPC line out, lines read back, no validation, `initialize` not \
         measured): {} calls per repetition after {} warm-up calls (at most {} s), {} repetitions, each on a \
         freshly spawned server; median (min–max). Server CPU is utime+stime of the spawned process and \
         everything below it (/proc), as in 7a. The ratios compare medians: above 1 means pgmcp is faster or \
         cheaper.",
        points.point_calls,
        points.warmup_calls,
        plan.budget.as_secs(),
        points.reps,
    ));
    section
}

fn stdio_figures(
    plan: &Plan,
    points: &PeerPlan,
    server: &Server,
    accounts: u64,
) -> anyhow::Result<Figures> {
    let mut figures = Figures::default();
    for rep in 0..points.reps {
        // A peer's stderr goes nowhere rather than into the bench's output: Postgres MCP Pro logs every call at
        // INFO there and has no option to stop it (it still formats every line, as in 7a).
        let stderr = if server.is_pgmcp() {
            Stdio::inherit()
        } else {
            Stdio::null()
        };
        let (mut process, _) =
            StdioServer::start_with_env(&server.program, &server.stdio_args, &server.env, stderr)?;
        let mut ids = XorShift::new(42 + rep as u64);
        for _ in 0..points.warmup_calls {
            process.call_tool(
                server.point.tool,
                server.point.arguments(ids.next_in(accounts)),
            )?;
        }
        let cpu_before = tree_cpu_time(process.pid()).unwrap_or_default();
        let started = Instant::now();
        let mut latencies = Vec::with_capacity(points.point_calls);
        while latencies.len() < points.point_calls && started.elapsed() < plan.budget {
            let call = Instant::now();
            process.call_tool(
                server.point.tool,
                server.point.arguments(ids.next_in(accounts)),
            )?;
            latencies.push(call.elapsed());
        }
        let wall = started.elapsed();
        let cpu = tree_cpu_time(process.pid())
            .unwrap_or_default()
            .saturating_sub(cpu_before);
        figures.add(latencies, wall, cpu)?;
    }
    Ok(figures)
}

/// A server's own HTTP transport as a child process on a free loopback port, its output in a file; killed on drop.
struct HttpProcess {
    child: Child,
    url: String,
    log: tempfile::NamedTempFile,
}

impl HttpProcess {
    /// Starts the server and waits until its port accepts connections (some peers take seconds to start).
    fn start(launch: &HttpLaunch, env: &[(String, String)]) -> anyhow::Result<HttpProcess> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log = tempfile::NamedTempFile::new()?;
        let mut command = Command::new(&launch.program);
        command
            .args(
                launch
                    .args
                    .iter()
                    .map(|a| a.replace("{port}", &port.to_string())),
            )
            .env("PGMCP_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(append(&log)?)
            .stderr(append(&log)?);
        without_database_environment(&mut command);
        command.envs(env.iter().map(|(k, v)| (k, v)));
        let child = command
            .spawn()
            .with_context(|| format!("spawning {}", launch.program))?;
        let mut process = HttpProcess {
            child,
            url: format!("http://127.0.0.1:{port}{}", launch.path),
            log,
        };
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = process.child.try_wait()? {
                bail!(
                    "it exited ({status}) before listening: {}",
                    process.output()
                );
            }
            if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                return Ok(process);
            }
            if Instant::now() > deadline {
                bail!(
                    "it did not listen on port {port} within 60 s: {}",
                    process.output()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The end of what the server wrote, for an error message.
    fn output(&self) -> String {
        let mut text = String::new();
        let _ = self
            .log
            .reopen()
            .and_then(|mut f| f.read_to_string(&mut text));
        let tail: Vec<&str> = text.lines().rev().take(5).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
    }
}

/// A handle that appends to `file`: the server's stdout and stderr share it without overwriting each other.
fn append(file: &tempfile::NamedTempFile) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new().append(true).open(file.path())
}

impl Drop for HttpProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// 7f: the point query over each server's own HTTP transport, with scenario 2's load at each concurrency.
pub fn http(
    plan: &Plan,
    servers: &[Server],
    data: &Dataset,
    rt: &tokio::runtime::Runtime,
) -> Section {
    let mut section = Section::new(
        "7f. Peers: point query over their own HTTP transports, no authentication (scenario 2's client)",
        &[
            "server",
            "transport",
            "clients",
            "calls/s",
            "p50 ms",
            "p99 ms",
            "server CPU/call ms",
            RATIO_HEADER[0],
            RATIO_HEADER[1],
        ],
    );
    let reps = plan.reps.min(3);
    let mut pgmcp: Vec<Option<Figures>> = Vec::new();
    for server in servers {
        let launch = match &server.http {
            Ok(launch) => launch,
            Err(why) => {
                section.note(format!("{}: not measured: {why}.", server.label()));
                continue;
            }
        };
        println!("  {}", server.label());
        for (i, &clients) in plan.http_concurrency.iter().enumerate() {
            match http_figures(plan, reps, server, launch, clients, data.accounts(), rt) {
                Ok(figures) => {
                    let mut row = vec![
                        server.label(),
                        launch.era.label().into(),
                        clients.to_string(),
                    ];
                    let against = if server.is_pgmcp() {
                        Some(&figures)
                    } else {
                        pgmcp.get(i).and_then(Option::as_ref)
                    };
                    row.extend(figures.cells(against));
                    section.row(row);
                    if server.is_pgmcp() {
                        pgmcp.push(Some(figures));
                    }
                }
                Err(err) => {
                    section.note(format!(
                        "{} at {clients} clients: could not complete: {err:#}",
                        server.label()
                    ));
                    if server.is_pgmcp() {
                        pgmcp.push(None);
                    }
                }
            }
        }
    }
    section.note(format!(
        "Each server serves its own HTTP transport on a free loopback port without authentication: pgmcp `serve \
         --http --auth-mode none` (stateless, no session id), MCP Toolbox `--address 127.0.0.1 --port N --log-level WARN` \
         at `/mcp`, DBHub `--transport http --port N` at `/mcp` (stateless: a new MCP server per request; it listens \
         on every interface, so a preloaded shim, bench/peers/loopback.cjs, moves it to 127.0.0.1), Postgres MCP \
         Pro `--transport sse` (0.3.0 offers no Streamable HTTP; its HTTP+SSE transport: one `GET /sse` per \
         client whose events carry the answers, the requests `POST`ed to the endpoint it names; uvicorn logs \
         every request and postgres-mcp has no option to stop it). All are driven by scenario 2's load code: each \
         client its own keep-alive connection (reqwest), `initialize` and `notifications/initialized` once (not \
         measured), the session id kept when a server hands one out; {} calls per repetition shared by the \
         clients after {} warm-up calls (at most {} s), {} repetitions, one server process per row; median \
         (min–max). Server CPU is that of the server's process tree (/proc). The clients share the 2 cores with \
         the server and PostgreSQL. Ratios are against pgmcp at the same number of clients.",
        plan.http_calls,
        plan.warmup_calls,
        plan.budget.as_secs(),
        reps,
    ));
    section
}

fn http_figures(
    plan: &Plan,
    reps: usize,
    server: &Server,
    launch: &HttpLaunch,
    clients: usize,
    accounts: u64,
    rt: &tokio::runtime::Runtime,
) -> anyhow::Result<Figures> {
    let process = HttpProcess::start(launch, &server.env)?;
    let mut figures = Figures::default();
    let connected = rt.block_on(connect_all(&process.url, launch.era, &[], clients));
    let connected = connected.with_context(|| format!("connecting: {}", process.output()))?;
    let (_, _, mut connected) = rt.block_on(load(
        server.point,
        connected,
        plan.warmup_calls,
        plan.budget,
        accounts,
        7,
    ))?;
    for rep in 0..reps {
        let cpu_before = tree_cpu_time(process.child.id()).unwrap_or_default();
        let (latencies, wall, back) = rt.block_on(load(
            server.point,
            connected,
            plan.http_calls,
            plan.budget,
            accounts,
            1000 * rep as u64 + 1,
        ))?;
        connected = back;
        let cpu = tree_cpu_time(process.child.id())
            .unwrap_or_default()
            .saturating_sub(cpu_before);
        figures.add(latencies, wall, cpu)?;
    }
    rt.block_on(async {
        for client in connected {
            client.close().await?;
        }
        anyhow::Ok(())
    })?;
    Ok(figures)
}
