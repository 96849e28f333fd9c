//! Scenario 7a–7d: pgmcp and the peer MCP servers side by side, all driven by the official Python MCP SDK
//! (bench/driver/driver.py) on the same database.

use std::process::Command;

use anyhow::Context;
use serde_json::{Value, json};

use crate::Plan;
use crate::dataset::Dataset;
use crate::peers::{PeerPlan, Server, bench_dir};
use crate::raw::POINT_SQL;
use crate::report::{Section, bytes, spread};
use crate::stdio_scenarios::BigQuery;

/// The driver's description of a server: what it spawns and how it takes the point query.
fn server_json(server: &Server) -> Value {
    let mut value = json!({
        "name": server.name, "version": server.version,
        "command": server.program, "args": server.stdio_args,
        "env": server.env.iter().map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect::<serde_json::Map<String, Value>>(),
        "tool": server.point.tool, "point_sql": POINT_SQL, "uses_params": server.point.uses_params,
    });
    if let Some(limit) = server.limit_arg {
        value["limit_arg"] = limit.into();
    }
    if server.is_pgmcp() {
        value["env"]["PGMCP_LOG"] = "warn".into();
    }
    value
}

fn queries_json(queries: &[BigQuery]) -> Value {
    queries
        .iter()
        .map(|q| json!({"label": q.label, "sql": q.sql}))
        .collect()
}

pub fn run(
    plan: &Plan,
    servers: &[Server],
    missing: &[String],
    data: &Dataset,
    wide: &[BigQuery],
    huge: &[BigQuery],
) -> Vec<Section> {
    match drive(plan, servers, missing, data, wide, huge) {
        Ok(sections) => sections,
        Err(err) => {
            println!("  peers failed: {err:#}");
            let mut failed = Section::new("7. Peers (failed)", &["error"]);
            failed.row(vec![format!("{err:#}")]);
            vec![failed]
        }
    }
}

fn drive(
    plan: &Plan,
    servers: &[Server],
    missing: &[String],
    data: &Dataset,
    wide: &[BigQuery],
    huge: &[BigQuery],
) -> anyhow::Result<Vec<Section>> {
    let python = bench_dir().join("driver/.venv/bin/python");
    anyhow::ensure!(
        python.is_file(),
        "{} is missing: run ./scripts/bench.sh --peers",
        python.display()
    );
    let points = PeerPlan::of(plan);
    let spec = json!({
        "servers": servers.iter().map(server_json).collect::<Vec<_>>(),
        "plan": {
            "accounts": data.accounts(), "reps": points.reps, "warmup_calls": points.warmup_calls,
            "point_calls": points.point_calls, "wide_calls": plan.wide_calls.min(5),
            "cold_starts": plan.cold_starts.min(5), "budget_s": plan.budget.as_secs(),
            "huge_timeout_s": if plan.smoke { 30 } else { 120 },
            "wide": queries_json(wide), "huge": queries_json(huge),
        },
    });
    let spec_file =
        std::env::temp_dir().join(format!("pgmcp-bench-spec-{}.json", std::process::id()));
    std::fs::write(&spec_file, spec.to_string())?;
    let output = Command::new(&python)
        .arg(bench_dir().join("driver/driver.py"))
        .arg(&spec_file)
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running the SDK driver")?;
    let _ = std::fs::remove_file(&spec_file);
    anyhow::ensure!(
        output.status.success(),
        "the SDK driver failed ({})",
        output.status
    );
    let results: Vec<Value> =
        serde_json::from_slice(&output.stdout).context("the driver's output")?;
    Ok(sections(&results, missing, wide, huge))
}

fn figures(runs: &Value, key: &str) -> Vec<f64> {
    runs.as_array()
        .map(|runs| runs.iter().filter_map(|r| r[key].as_f64()).collect())
        .unwrap_or_default()
}

fn sections(
    results: &[Value],
    missing: &[String],
    wide: &[BigQuery],
    huge: &[BigQuery],
) -> Vec<Section> {
    let mut point = Section::new(
        "7a. Peers: point query through the Python SDK (scenario 1)",
        &[
            "server",
            "calls/s",
            "p50 ms",
            "p99 ms",
            "server CPU/call ms",
        ],
    );
    let mut wide_section = Section::new(
        "7b. Peers: 10,000-row results (scenario 3)",
        &[
            "query",
            "server",
            "p50 ms",
            "response",
            "rows",
            "server CPU/call ms",
        ],
    );
    let mut huge_section = Section::new(
        "7c. Peers: unbounded queries (scenario 4)",
        &[
            "query",
            "server",
            "time to answer ms",
            "response",
            "rows",
            "peak RSS MiB",
        ],
    );
    let mut start = Section::new(
        "7d. Peers: start-up and idle memory (scenario 5)",
        &["server", "spawn → tools/list ms (SDK)", "idle RSS MiB"],
    );
    for result in results {
        let name = format!(
            "{} {}",
            result["name"].as_str().unwrap_or("?"),
            result["version"].as_str().unwrap_or("")
        );
        if let Some(error) = result["error"].as_str() {
            point.note(format!("{name}: could not complete: {error}"));
        }
        if result["point"].is_array() {
            point.row(vec![
                name.clone(),
                spread(&figures(&result["point"], "calls_per_s"), 0),
                spread(&figures(&result["point"], "p50_ms"), 2),
                spread(&figures(&result["point"], "p99_ms"), 2),
                spread(&figures(&result["point"], "cpu_ms_per_call"), 3),
            ]);
        }
        for query in wide {
            let runs = &result["wide"][query.label];
            if runs.is_array() {
                let first = &runs[0];
                wide_section.row(vec![
                    query.label.into(),
                    name.clone(),
                    spread(&figures(runs, "p50_ms"), 1),
                    bytes(first["bytes"].as_f64().unwrap_or(0.0)),
                    first["rows"].as_u64().map_or("?".into(), |r| r.to_string()),
                    spread(&figures(runs, "cpu_ms_per_call"), 2),
                ]);
            }
        }
        for query in huge {
            let run = &result["huge"][query.label];
            if let Some(error) = run["error"].as_str() {
                huge_section.row(vec![
                    query.label.into(),
                    name.clone(),
                    format!("failed: {error}"),
                    "—".into(),
                    "—".into(),
                    "—".into(),
                ]);
            } else if run.is_object() {
                huge_section.row(vec![
                    query.label.into(),
                    name.clone(),
                    format!("{:.0}", run["time_ms"].as_f64().unwrap_or(0.0)),
                    bytes(run["bytes"].as_f64().unwrap_or(0.0)),
                    run["rows"].as_u64().map_or("?".into(), |r| r.to_string()),
                    format!("{:.0}", run["peak_rss_mib"].as_f64().unwrap_or(0.0)),
                ]);
            }
        }
        if result["startup"].is_array() {
            start.row(vec![
                name.clone(),
                spread(&figures(&result["startup"], "cold_ms"), 0),
                spread(&figures(&result["startup"], "idle_rss_mib"), 1),
            ]);
        }
    }
    for why in missing {
        point.note(why.clone());
    }
    point.note(
        "Every server is driven by the same client: the official Python `mcp` 2.3.0 SDK, `Client(mode=\"legacy\", \
         cache=None)`, with per-call output-schema validation switched off. pgmcp gets `$1` with `params`; the peers \
         have no bind parameters, so the id is written into the SQL. Server CPU and RSS cover the spawned process tree.",
    );
    huge_section.note(
        "Peers have no row cap: they return every row in one message. pgmcp returns its default cap (1,000 rows, \
         `truncated: true`). Response size is the serialized CallToolResult as the SDK received it; an answer line \
         over 32 MiB is timed and measured on the pipe but not decoded (decoding a 190 MB answer took the Python \
         client to 19.7 GB and the OOM killer), so its rows show as `?`.",
    );
    vec![point, wide_section, huge_section, start]
}
