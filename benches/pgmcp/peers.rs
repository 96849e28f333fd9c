//! Scenario 7: pgmcp and the peer MCP servers side by side, all driven by the official Python MCP SDK
//! (bench/driver/driver.py) on the same database. Peers are installed into bench/ by scripts/bench.sh; a peer
//! that is not installed, cannot start, or cannot answer a scenario is reported as such.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use serde_json::{Value, json};

use crate::Plan;
use crate::dataset::Dataset;
use crate::raw::POINT_SQL;
use crate::report::{Section, bytes, spread};
use crate::stdio_scenarios::{BigQuery, Pgmcp};

fn bench_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("bench")
}

fn package_version(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("package.json")).ok()?;
    let value: Value = serde_json::from_str(&text).ok()?;
    value["version"].as_str().map(str::to_string)
}

/// A server the driver runs, or why it cannot run here.
fn servers(pgmcp: &Pgmcp, data: &Dataset) -> (Vec<Value>, Vec<String>) {
    let modules = bench_dir().join("peers/node_modules");
    let url = data.url();
    let mut servers = vec![json!({
        "name": "pgmcp", "version": env!("CARGO_PKG_VERSION"),
        "command": pgmcp.binary, "args": ["serve", "--database-url", url], "env": {"PGMCP_LOG": "warn"},
        "tool": "execute_query", "point_sql": POINT_SQL, "uses_params": true, "limit_arg": "limit",
    })];
    let mut missing = Vec::new();
    let node = "node".to_string();
    let reference = modules.join("@modelcontextprotocol/server-postgres");
    match package_version(&reference) {
        Some(version) => servers.push(json!({
            "name": "@modelcontextprotocol/server-postgres", "version": version,
            "command": node, "args": [reference.join("dist/index.js"), url],
            "tool": "query", "point_sql": POINT_SQL, "uses_params": false,
        })),
        None => missing.push(
            "Not measured: @modelcontextprotocol/server-postgres (not installed in bench/peers)"
                .into(),
        ),
    }
    let toolbox = modules.join("@toolbox-sdk/server-linux-x64");
    match package_version(&toolbox) {
        Some(version) => servers.push(json!({
            "name": "MCP Toolbox (@toolbox-sdk/server-linux-x64)", "version": version,
            "command": toolbox.join("bin/toolbox"), "args": ["--prebuilt", "postgres", "--stdio"],
            "env": {
                "POSTGRES_HOST": data.cluster.host(), "POSTGRES_PORT": data.cluster.port().to_string(),
                "POSTGRES_DATABASE": crate::dataset::DATABASE, "POSTGRES_USER": data.cluster.superuser(),
                // Toolbox insists on a password; the throwaway cluster trusts loopback and ignores it.
                "POSTGRES_PASSWORD": "unused-trust-auth",
            },
            "tool": "execute_sql", "point_sql": POINT_SQL, "uses_params": false,
        })),
        None => missing.push("Not measured: MCP Toolbox (not installed in bench/peers)".into()),
    }
    let dbhub = modules.join("@bytebase/dbhub");
    match package_version(&dbhub) {
        Some(version) => servers.push(json!({
            "name": "DBHub (@bytebase/dbhub)", "version": version,
            "command": node,
            "args": [dbhub.join("dist/index.js"), "--transport", "stdio", "--dsn", format!("{url}?sslmode=disable")],
            "tool": "execute_sql", "point_sql": POINT_SQL, "uses_params": false,
        })),
        None => missing.push("Not measured: DBHub (not installed in bench/peers)".into()),
    }
    let pro = bench_dir().join("postgres-mcp/.venv/bin/postgres-mcp");
    if pro.is_file() {
        servers.push(json!({
            "name": "Postgres MCP Pro (postgres-mcp)", "version": pro_version().unwrap_or_default(),
            "command": pro, "args": ["--access-mode", "restricted", url],
            "tool": "execute_sql", "point_sql": POINT_SQL, "uses_params": false,
        }));
        if let Ok(note) = std::fs::read_to_string(bench_dir().join("postgres-mcp/INSTALL-NOTE.txt"))
        {
            missing.push(format!(
                "Postgres MCP Pro is measured; how it was installed: {}",
                note.trim().replace('\n', "; ")
            ));
        }
    } else {
        let why = std::fs::read_to_string(bench_dir().join("postgres-mcp/NOT-INSTALLED.txt"))
            .unwrap_or_else(|_| {
                "not installed (scripts/bench.sh --peers installs it when Python 3.12 is available)"
                    .into()
            });
        missing.push(format!(
            "Not measured: Postgres MCP Pro: {}",
            why.trim().replace('\n', " ")
        ));
    }
    (servers, missing)
}

fn pro_version() -> Option<String> {
    let python = bench_dir().join("postgres-mcp/.venv/bin/python");
    let output = Command::new(python)
        .args([
            "-c",
            "import importlib.metadata as m; print(m.version('postgres-mcp'))",
        ])
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

pub fn versions_line() -> String {
    let modules = bench_dir().join("peers/node_modules");
    let version =
        |path: &str| package_version(&modules.join(path)).unwrap_or_else(|| "not installed".into());
    let node = Command::new("node")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!(
        "- Peers: @modelcontextprotocol/server-postgres {}, @toolbox-sdk/server-linux-x64 {}, @bytebase/dbhub {}, \
         postgres-mcp {}; Node {node}; client: Python `mcp` 2.3.0 SDK (bench/driver)\n",
        version("@modelcontextprotocol/server-postgres"),
        version("@toolbox-sdk/server-linux-x64"),
        version("@bytebase/dbhub"),
        pro_version().unwrap_or_else(|| "not installed".into()),
    )
}

fn queries_json(queries: &[BigQuery]) -> Value {
    queries
        .iter()
        .map(|q| json!({"label": q.label, "sql": q.sql}))
        .collect()
}

pub fn run(
    plan: &Plan,
    pgmcp: &Pgmcp,
    data: &Dataset,
    wide: &[BigQuery],
    huge: &[BigQuery],
) -> Vec<Section> {
    match drive(plan, pgmcp, data, wide, huge) {
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
    pgmcp: &Pgmcp,
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
    let (servers, missing) = servers(pgmcp, data);
    let spec = json!({
        "servers": servers,
        "plan": {
            "accounts": data.accounts(), "reps": plan.reps.min(3), "warmup_calls": plan.warmup_calls.min(50),
            "point_calls": plan.point_calls.min(1000), "wide_calls": plan.wide_calls.min(5),
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
    Ok(sections(&results, &missing, wide, huge))
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
