//! The soak, run by `scripts/soak.sh --minutes N` (this test is ignored otherwise): a fixed-rate mixed load over
//! HTTP with bearer tokens from the real test OpenID provider, one fault a minute from the fault suite's list,
//! pgmcp's memory, descriptors and pool sampled over time, then a report with a flatness verdict. It fails when a
//! call errs outside a fault's minute, outlives its bound, pgmcp panics or restarts, or (in runs of five minutes
//! or more) memory or descriptors grow after the warm-up.
//!
//! Environment: PGMCP_SOAK_MINUTES (default 10), PGMCP_SOAK_RATE (calls per second, default 20),
//! PGMCP_SOAK_REPORT (a file for the Markdown report), PGMCP_TEST_BIN (the pgmcp to soak; soak.sh passes the
//! release build).

mod common;
mod fault_support;
mod http_support;
mod oidc_support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fault_support::load::{Load, Report, SharedToken, percentile};
use fault_support::proxy::{Mode, Proxy};
use fault_support::raw;
use fault_support::{Settings, fresh_cluster, running, terminate_backends};
use http_support::HttpServer;
use oidc_support::{AGENT_APP, APP_ID_URI, CLIENT_ID, Provider, ROLE, TENANT, entra_clients};
use pgmcp::demo::cluster::{ShutdownMode, TempCluster};

const APPLICATION_NAME: &str = "pgmcp-soak";
/// The request timeout of the soaked server (20 s) and a margin.
const CALL_BOUND: Duration = Duration::from_secs(22);
const FIRST_FAULT: Duration = Duration::from_secs(20);
const FAULT_EVERY: Duration = Duration::from_secs(60);
/// After a fault ends, calls may fail this much longer before it counts as a failure to recover.
const RECOVERY_GRACE: Duration = Duration::from_secs(20);
const SAMPLE_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy)]
enum Fault {
    RestartFast,
    RestartImmediate,
    TerminateBackends,
    NetworkStall,
    ResetConnections,
    IdentityProviderDown,
    PoolBurst,
    VanishingClients,
    SlowClients,
}

const FAULTS: [Fault; 9] = [
    Fault::RestartFast,
    Fault::NetworkStall,
    Fault::PoolBurst,
    Fault::TerminateBackends,
    Fault::VanishingClients,
    Fault::RestartImmediate,
    Fault::SlowClients,
    Fault::ResetConnections,
    Fault::IdentityProviderDown,
];

impl Fault {
    fn label(self) -> &'static str {
        match self {
            Fault::RestartFast => "PostgreSQL restart (fast)",
            Fault::RestartImmediate => "PostgreSQL restart (immediate)",
            Fault::TerminateBackends => "pg_terminate_backend of pgmcp's sessions",
            Fault::NetworkStall => "network stall to PostgreSQL, 8 s",
            Fault::ResetConnections => "every PostgreSQL connection reset",
            Fault::IdentityProviderDown => "identity provider unreachable, 20 s",
            Fault::PoolBurst => "one caller's burst of 24 slow calls",
            Fault::VanishingClients => "4 clients vanish mid-call",
            Fault::SlowClients => "35 slow or silent HTTP clients",
        }
    }
}

/// Everything a fault acts on.
struct Rig {
    cluster: Arc<TempCluster>,
    db_proxy: Proxy,
    idp_proxy: Proxy,
    server: HttpServer,
    tokens: [SharedToken; 2],
}

/// What happened during one fault.
struct Injected {
    fault: Fault,
    start: Duration,
    end: Duration,
    /// A figure of the fault itself (how soon vanished calls were cancelled, how long slow clients were held).
    note: String,
}

#[derive(Clone, Copy)]
struct Sample {
    at: Duration,
    rss_kib: u64,
    fds: u64,
    pool_open: u64,
    pool_waiting: u64,
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
#[ignore = "long: run by scripts/soak.sh"]
fn soak() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    let minutes = env_number("PGMCP_SOAK_MINUTES", 10).max(1);
    let rate = env_number("PGMCP_SOAK_RATE", 20).max(1);
    let length = Duration::from_secs(60 * minutes);
    let load_before = load_average();

    let cluster = Arc::new(tokio::task::spawn_blocking(fresh_cluster).await.unwrap());
    let db_proxy = Proxy::start(([127, 0, 0, 1], cluster.port()).into()).await;
    let idp_proxy = Proxy::start(([127, 0, 0, 1], 9).into()).await;
    let authority = format!("http://127.0.0.1:{}", idp_proxy.port());
    let clients = entra_clients(&authority);
    let provider = tokio::task::spawn_blocking(move || Provider::start(clients))
        .await
        .unwrap();
    idp_proxy.set_upstream(provider.base.trim_start_matches("http://").parse().unwrap());

    let mut settings = Settings::new(db_proxy.port(), APPLICATION_NAME);
    settings.statement_timeout = "5s";
    settings.pool_max = 10;
    settings.pool_wait_timeout = "5s";
    settings.request_timeout = "20s";
    settings.http = "header_read_timeout = \"5s\"".into();
    settings.extra =
        format!("[auth]\nentra_authority = \"{authority}\"\njwks_refresh_seconds = 30\n");
    let config = settings.write();
    let server = HttpServer::start(
        &[
            "serve",
            "--config",
            config.path(),
            "--http",
            "127.0.0.1:0",
            "--auth-mode",
            "entra",
            "--entra-tenant-id",
            TENANT,
            "--entra-client-id",
            CLIENT_ID,
            "--entra-app-id-uri",
            APP_ID_URI,
            "--required-role",
            ROLE,
            "--allowed-client-app",
            AGENT_APP,
        ],
        &[],
    );
    let pid = server.pid();
    // Two principals, two clients each.
    let tokens = [
        SharedToken::new(provider.token("v2-app").await),
        SharedToken::new(provider.token("v2-other-oid").await),
    ];
    let rig = Rig {
        cluster,
        db_proxy,
        idp_proxy,
        server,
        tokens,
    };

    let mut load = Load::new(length + Duration::from_secs(30));
    let pace = Duration::from_millis(4000 / rate);
    for n in 0..4 {
        load.add(
            &format!("caller{}-{n}", n / 2),
            Load::http_client(
                &rig.server.mcp_url(),
                Some(rig.tokens[n / 2].clone()),
                CALL_BOUND + Duration::from_secs(3),
            ),
            pace,
            n,
            CALL_BOUND,
        );
    }
    let started = Instant::now();
    let sampler = {
        let url = rig.server.url("/metrics");
        tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while started.elapsed() < length {
                tick.tick().await;
                samples.push(sample(&url, pid, started.elapsed()).await);
            }
            samples
        })
    };
    let mut injected = Vec::new();
    let mut next_fault = FIRST_FAULT;
    let mut next_token = Duration::from_secs(240);
    let mut faults = FAULTS.iter().cycle();
    // One loop, bounded by the run's length: token renewals and faults, each when due.
    while started.elapsed() < length {
        let now = started.elapsed();
        if now >= next_token {
            rig.tokens[0].set(provider.token("v2-app").await);
            rig.tokens[1].set(provider.token("v2-other-oid").await);
            next_token += Duration::from_secs(240);
        } else if now >= next_fault && now + Duration::from_secs(30) < length {
            let fault = *faults.next().unwrap();
            let start = load.now();
            eprintln!("soak: {:>4} s  {}", start.as_secs(), fault.label());
            let note = inject(&rig, fault).await;
            injected.push(Injected {
                fault,
                start,
                end: load.now(),
                note,
            });
            next_fault += FAULT_EVERY;
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let report = load.stop().await;
    let mut samples = sampler.await.unwrap();
    samples.push(sample(&rig.server.url("/metrics"), pid, started.elapsed()).await);
    let log = rig.server.log();
    let same_process = rig.server.pid() == pid;
    let text = write_report(
        minutes,
        rate,
        &report,
        &injected,
        &samples,
        (load_before, load_average()),
    );
    println!("{}", text.markdown);
    if let Ok(path) = std::env::var("PGMCP_SOAK_REPORT") {
        std::fs::write(&path, &text.markdown).expect("write the soak report");
    }
    fault_support::assert_no_panic(&log);
    assert!(same_process, "pgmcp was restarted");
    report.assert_bounded(CALL_BOUND);
    assert!(
        text.problems.is_empty(),
        "the soak found problems:\n{}",
        text.problems.join("\n")
    );
}

async fn inject(rig: &Rig, fault: Fault) -> String {
    let url = rig.server.mcp_url();
    match fault {
        Fault::RestartFast | Fault::RestartImmediate => {
            let mode = match fault {
                Fault::RestartFast => ShutdownMode::Fast,
                _ => ShutdownMode::Immediate,
            };
            let cluster = rig.cluster.clone();
            tokio::task::spawn_blocking(move || {
                cluster.stop_with(mode).expect("stop PostgreSQL");
                std::thread::sleep(Duration::from_secs(2));
                cluster.start_again().expect("start PostgreSQL");
            })
            .await
            .unwrap();
            "down for 2 s".into()
        }
        Fault::TerminateBackends => {
            let observer = fault_support::observer(&rig.cluster).await;
            let n = terminate_backends(&observer, APPLICATION_NAME).await;
            format!("{n} sessions terminated")
        }
        Fault::NetworkStall => {
            rig.db_proxy.set_mode(Mode::Stall);
            tokio::time::sleep(Duration::from_secs(8)).await;
            rig.db_proxy.set_mode(Mode::Forward);
            String::new()
        }
        Fault::ResetConnections => {
            let open = rig.db_proxy.open_connections();
            rig.db_proxy.reset_all();
            format!("{open} connections reset")
        }
        Fault::IdentityProviderDown => {
            rig.idp_proxy.set_mode(Mode::Refuse);
            rig.idp_proxy.reset_all();
            tokio::time::sleep(Duration::from_secs(20)).await;
            rig.idp_proxy.set_mode(Mode::Forward);
            String::new()
        }
        Fault::PoolBurst => {
            let client = http_support::http();
            let token = rig.tokens[0].get();
            let burst: Vec<_> = (0..24)
                .map(|_| {
                    let (client, url, token) = (client.clone(), url.clone(), token.clone());
                    tokio::spawn(async move {
                        raw::execute(
                            &client,
                            &url,
                            Some(&token),
                            "SELECT public.nap(2) AS soak_burst",
                        )
                        .await
                    })
                })
                .collect();
            let mut statuses = BTreeMap::new();
            for call in burst {
                let (status, answer, _, _) = call.await.unwrap();
                let label = match (status, raw::tool_error(&answer)["error"].as_str()) {
                    (200, None) => "ok".to_string(),
                    (200, Some(kind)) => kind.to_string(),
                    (status, _) => format!("http {status}"),
                };
                *statuses.entry(label).or_insert(0) += 1;
            }
            format!("burst answered {statuses:?}")
        }
        Fault::VanishingClients => {
            let token = rig.tokens[1].get();
            let mut held = Vec::new();
            for _ in 0..4 {
                held.push(
                    raw::call_and_hold(
                        rig.server.addr,
                        Some(&token),
                        "SELECT public.nap(4) AS soak_vanishing",
                    )
                    .await,
                );
            }
            let observer = fault_support::observer(&rig.cluster).await;
            let mut seen = 0;
            for _ in 0..100 {
                seen = running(&observer, "soak_vanishing").await;
                if seen == 4 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            drop(held);
            let dropped = Instant::now();
            let mut left = seen;
            while left > 0 && dropped.elapsed() < Duration::from_secs(5) {
                tokio::time::sleep(Duration::from_millis(20)).await;
                left = running(&observer, "soak_vanishing").await;
            }
            format!(
                "{seen} statements running, {left} left {} ms after the clients vanished",
                dropped.elapsed().as_millis()
            )
        }
        Fault::SlowClients => {
            let addr = rig.server.addr;
            let token = rig.tokens[1].get();
            let limit = Duration::from_secs(30);
            let mut tasks = Vec::new();
            for _ in 0..20 {
                tasks.push(tokio::spawn(raw::trickle_headers(addr, limit)));
            }
            for _ in 0..10 {
                tasks.push(tokio::spawn(raw::silent(addr, limit)));
            }
            for _ in 0..5 {
                let token = token.clone();
                tasks.push(tokio::spawn(async move {
                    raw::trickle_body(addr, Some(&token), limit).await
                }));
            }
            let mut longest = Duration::ZERO;
            let mut never = 0;
            for task in tasks {
                match task.await.unwrap() {
                    Some((took, _)) => longest = longest.max(took),
                    None => never += 1,
                }
            }
            format!(
                "cut off after at most {} ms; {never} never cut off",
                longest.as_millis()
            )
        }
    }
}

async fn sample(metrics_url: &str, pid: u32, at: Duration) -> Sample {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| entries.count() as u64)
        .unwrap_or(0);
    let metrics = match http_support::http().get(metrics_url).send().await {
        Ok(response) => response.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    let gauge = |name: &str| -> u64 {
        metrics
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse::<f64>().ok())
            .unwrap_or(0.0) as u64
    };
    Sample {
        at,
        rss_kib,
        fds,
        pool_open: gauge("pgmcp_pool_connections_in_use{") + gauge("pgmcp_pool_connections_idle{"),
        pool_waiting: gauge("pgmcp_pool_waiting{"),
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// Least-squares slope of `values` over `times`, per second.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let (mean_t, mean_v) = (
        points.iter().map(|p| p.0).sum::<f64>() / n,
        points.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let covariance: f64 = points.iter().map(|p| (p.0 - mean_t) * (p.1 - mean_v)).sum();
    let variance: f64 = points.iter().map(|p| (p.0 - mean_t).powi(2)).sum();
    if variance == 0.0 {
        0.0
    } else {
        covariance / variance
    }
}

struct Written {
    markdown: String,
    problems: Vec<String>,
}

fn write_report(
    minutes: u64,
    rate: u64,
    report: &Report,
    injected: &[Injected],
    samples: &[Sample],
    load_average: (String, String),
) -> Written {
    let mut problems = Vec::new();
    let mut md = String::new();
    let counts = report.counts();
    let total = report.samples.len();
    let errors = report.failures().count();
    let _ = writeln!(
        md,
        "{minutes} minute(s), {rate} calls/s over Streamable HTTP from 4 clients of 2 principals with bearer tokens \
         (Entra-shaped, from the test OpenID provider), one fault a minute from the 20th second. pgmcp's pool: 10 \
         connections, statement_timeout 5 s, pool_wait_timeout 5 s. Machine load average (1/5/15 min) at the start \
         {}, at the end {}.\n",
        load_average.0, load_average.1
    );
    let _ = writeln!(
        md,
        "**{total} calls, {errors} errors** ({:.2} %): {counts:?}\n",
        100.0 * errors as f64 / total.max(1) as f64
    );

    // Errors by fault window: from a fault's start to the next one's.
    let _ = writeln!(
        md,
        "| from | fault | calls | errors by kind | recovered after the fault ended | note |\n|---|---|---|---|---|---|"
    );
    // A call belongs to the window in which it ended: one that started just before a fault and failed because of it
    // is that fault's.
    let warm: Vec<_> = report
        .failures()
        .filter(|s| s.ended() < FIRST_FAULT)
        .collect();
    if !warm.is_empty() {
        problems.push(format!(
            "{} calls failed before the first fault",
            warm.len()
        ));
    }
    for (i, fault) in injected.iter().enumerate() {
        let until = injected
            .get(i + 1)
            .map(|next| next.start)
            .unwrap_or(Duration::MAX);
        let calls: Vec<_> = report
            .samples
            .iter()
            .filter(|s| s.ended() >= fault.start && s.ended() < until)
            .collect();
        let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
        for call in calls.iter().filter(|c| !c.outcome.is_ok()) {
            *kinds.entry(call.outcome.label()).or_insert(0) += 1;
            if call.started > fault.end + RECOVERY_GRACE {
                problems.push(format!(
                    "after \"{}\": a call failed {:.0} s after the fault ended: {}",
                    fault.fault.label(),
                    (call.started - fault.end).as_secs_f64(),
                    fault_support::load::describe(call)
                ));
            }
        }
        let recovery = report.recovery_after(fault.end, until);
        let _ = writeln!(
            md,
            "| {} s | {} | {} | {} | {} ms | {} |",
            fault.start.as_secs(),
            fault.fault.label(),
            calls.len(),
            if kinds.is_empty() {
                "none".to_string()
            } else {
                format!("{kinds:?}")
            },
            recovery.as_millis(),
            fault.note
        );
    }

    // Latency per tool.
    let _ = writeln!(
        md,
        "\n| call | successful | p50 ms | p99 ms |\n|---|---|---|---|"
    );
    let mut by_kind: BTreeMap<&'static str, Vec<Duration>> = BTreeMap::new();
    for sample in report.samples.iter().filter(|s| s.outcome.is_ok()) {
        by_kind
            .entry(sample.kind.label())
            .or_default()
            .push(sample.elapsed);
    }
    for (kind, mut times) in by_kind {
        times.sort();
        let _ = writeln!(
            md,
            "| {kind} | {} | {:.1} | {:.1} |",
            times.len(),
            percentile(&times, 0.5).as_secs_f64() * 1000.0,
            percentile(&times, 0.99).as_secs_f64() * 1000.0
        );
    }

    // Resources over time: one row a minute (the sample just before each fault, when the last one has settled).
    let _ = writeln!(
        md,
        "\n| t | RSS MiB | open fds | pool connections | waiting |\n|---|---|---|---|---|"
    );
    let quiet: Vec<Sample> = samples
        .iter()
        .filter(|s| {
            let into_minute = (s.at + FAULT_EVERY - FIRST_FAULT).as_secs() % FAULT_EVERY.as_secs();
            into_minute >= FAULT_EVERY.as_secs() - SAMPLE_EVERY.as_secs() || s.at < FIRST_FAULT
        })
        .chain(samples.last())
        .copied()
        .collect();
    for s in &quiet {
        let _ = writeln!(
            md,
            "| {} s | {:.1} | {} | {} | {} |",
            s.at.as_secs(),
            s.rss_kib as f64 / 1024.0,
            s.fds,
            s.pool_open,
            s.pool_waiting
        );
    }
    let peak = samples.iter().map(|s| s.rss_kib).max().unwrap_or(0);
    let _ = writeln!(
        md,
        "\nEvery 5 s sample: RSS {:.1}–{:.1} MiB, open fds {}–{}, pool connections {}–{}.",
        samples.iter().map(|s| s.rss_kib).min().unwrap_or(0) as f64 / 1024.0,
        peak as f64 / 1024.0,
        samples.iter().map(|s| s.fds).min().unwrap_or(0),
        samples.iter().map(|s| s.fds).max().unwrap_or(0),
        samples.iter().map(|s| s.pool_open).min().unwrap_or(0),
        samples.iter().map(|s| s.pool_open).max().unwrap_or(0),
    );

    // Flatness after the warm-up: the trend of the once-a-minute samples.
    let warm_up = Duration::from_secs((minutes * 60 / 4).clamp(20, 120));
    let settled: Vec<&Sample> = quiet.iter().filter(|s| s.at >= warm_up).collect();
    if minutes < 5 || settled.len() < 3 {
        let _ = writeln!(
            md,
            "\nFlatness: not judged (a run of {minutes} minute(s) is too short; five or more are needed)."
        );
    } else {
        let span = (settled.last().unwrap().at - settled[0].at).as_secs_f64();
        let rss: Vec<(f64, f64)> = settled
            .iter()
            .map(|s| (s.at.as_secs_f64(), s.rss_kib as f64 / 1024.0))
            .collect();
        let fds: Vec<(f64, f64)> = settled
            .iter()
            .map(|s| (s.at.as_secs_f64(), s.fds as f64 - s.pool_open as f64))
            .collect();
        let rss_growth = slope(&rss) * span;
        let fd_growth = slope(&fds) * span;
        let baseline = settled[0].rss_kib as f64 / 1024.0;
        let rss_flat = rss_growth < (baseline * 0.10).max(8.0);
        let fds_flat = fd_growth < 3.0;
        let _ = writeln!(
            md,
            "\nFlatness after a {} s warm-up ({} samples, {:.0} s): RSS trend {:+.2} MiB over the span \
             ({:+.1} MiB/hour) — **{}**; open fds less pool connections trend {:+.2} — **{}**.",
            warm_up.as_secs(),
            settled.len(),
            span,
            rss_growth,
            slope(&rss) * 3600.0,
            if rss_flat { "flat" } else { "GROWING" },
            fd_growth,
            if fds_flat { "flat" } else { "GROWING" },
        );
        if !rss_flat {
            problems.push(format!("memory grew {rss_growth:.1} MiB after the warm-up"));
        }
        if !fds_flat {
            problems.push(format!(
                "descriptors grew by {fd_growth:.1} after the warm-up"
            ));
        }
    }
    if !problems.is_empty() {
        let _ = writeln!(md, "\nProblems:\n");
        for problem in &problems {
            let _ = writeln!(md, "- {problem}");
        }
    }
    Written {
        markdown: md,
        problems,
    }
}
