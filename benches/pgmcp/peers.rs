//! Scenario 7: pgmcp and the peer MCP servers side by side on the same database, through two clients in the same
//! run — the official Python MCP SDK (7a–7d, `peers_sdk`) and the bench's own minimal clients over stdio and over
//! each server's own HTTP transport (7e, 7f, `peers_raw`) — so that what a client costs never hides what a server
//! costs. Peers are installed into bench/ by scripts/bench.sh; a peer that is not installed, cannot start, or
//! cannot answer a scenario is reported as such.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::Plan;
use crate::dataset::Dataset;
use crate::http::Era;
use crate::raw::POINT_SQL;
use crate::report::Section;
use crate::stdio_scenarios::{BigQuery, Pgmcp};
use crate::{peers_raw, peers_sdk};

pub fn bench_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("bench")
}

/// How a server takes the point query: its tool, and the id as a bind parameter or written into the SQL (the
/// peers have no bind parameters).
#[derive(Clone, Copy)]
pub struct PointCall {
    pub tool: &'static str,
    pub uses_params: bool,
}

impl PointCall {
    pub const PGMCP: PointCall = PointCall {
        tool: "execute_query",
        uses_params: true,
    };

    pub fn arguments(self, aid: u64) -> Value {
        if self.uses_params {
            json!({"sql": POINT_SQL, "params": [aid]})
        } else {
            json!({"sql": POINT_SQL.replace("$1", &aid.to_string())})
        }
    }
}

/// How a server's own HTTP transport is started without authentication: `{port}` in the arguments becomes a
/// free loopback port, and the MCP endpoint is `path` on it.
pub struct HttpLaunch {
    pub program: String,
    pub args: Vec<String>,
    pub path: &'static str,
    pub era: Era,
}

/// One server of scenario 7.
pub struct Server {
    pub name: String,
    pub version: String,
    pub program: String,
    pub stdio_args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub point: PointCall,
    /// The argument that bounds the rows of an answer, for the servers that have one.
    pub limit_arg: Option<&'static str>,
    /// Its HTTP transport, or why it is not measured.
    pub http: Result<HttpLaunch, String>,
}

impl Server {
    pub fn label(&self) -> String {
        format!("{} {}", self.name, self.version)
    }

    pub fn is_pgmcp(&self) -> bool {
        self.name == "pgmcp"
    }
}

/// How many point calls each client makes, shared by 7a and 7e so the two clients can be compared.
pub struct PeerPlan {
    pub reps: usize,
    pub warmup_calls: usize,
    pub point_calls: usize,
}

impl PeerPlan {
    pub fn of(plan: &Plan) -> PeerPlan {
        PeerPlan {
            reps: plan.reps.min(3),
            warmup_calls: plan.warmup_calls.min(50),
            point_calls: plan.point_calls.min(2000),
        }
    }
}

fn package_version(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("package.json")).ok()?;
    let value: Value = serde_json::from_str(&text).ok()?;
    value["version"].as_str().map(str::to_string)
}

fn strings<const N: usize>(items: [&str; N]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The servers that can run here, pgmcp first, and a line for each peer that cannot.
pub fn catalogue(pgmcp: &Pgmcp, data: &Dataset) -> (Vec<Server>, Vec<String>) {
    let modules = bench_dir().join("peers/node_modules");
    let url = data.url();
    let mut servers = vec![Server {
        name: "pgmcp".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        program: pgmcp.binary.clone(),
        stdio_args: strings(["serve", "--database-url", &url]),
        env: Vec::new(),
        point: PointCall::PGMCP,
        limit_arg: Some("limit"),
        http: Ok(HttpLaunch {
            program: pgmcp.binary.clone(),
            args: strings([
                "serve",
                "--http",
                "127.0.0.1:{port}",
                "--database-url",
                &url,
                "--auth-mode",
                "none",
            ]),
            path: "/mcp",
            era: Era::AsServed,
        }),
    }];
    let mut missing = Vec::new();
    let node = "node".to_string();
    let execute_sql = PointCall {
        tool: "execute_sql",
        uses_params: false,
    };

    let reference = modules.join("@modelcontextprotocol/server-postgres");
    match package_version(&reference) {
        Some(version) => servers.push(Server {
            name: "@modelcontextprotocol/server-postgres".into(),
            version,
            program: node.clone(),
            stdio_args: vec![
                reference.join("dist/index.js").display().to_string(),
                url.clone(),
            ],
            env: Vec::new(),
            point: PointCall {
                tool: "query",
                uses_params: false,
            },
            limit_arg: None,
            http: Err("it has no HTTP transport (stdio only)".into()),
        }),
        None => missing.push(
            "Not measured: @modelcontextprotocol/server-postgres (not installed in bench/peers)"
                .into(),
        ),
    }

    let toolbox = modules.join("@toolbox-sdk/server-linux-x64");
    match package_version(&toolbox) {
        Some(version) => {
            let program = toolbox.join("bin/toolbox").display().to_string();
            // The version check would reach for the internet at start-up; and at its default level Toolbox logs
            // every HTTP request, which pgmcp (at `warn`) does not: every server runs as quiet as its command line
            // lets it.
            let common = [
                "--prebuilt",
                "postgres",
                "--disable-version-check",
                "--log-level",
                "WARN",
            ];
            let mut stdio_args = strings(common);
            stdio_args.push("--stdio".into());
            let mut http_args = strings(common);
            http_args.extend(strings(["--address", "127.0.0.1", "--port", "{port}"]));
            servers.push(Server {
                name: "MCP Toolbox (@toolbox-sdk/server-linux-x64)".into(),
                version,
                program: program.clone(),
                stdio_args,
                env: vec![
                    ("POSTGRES_HOST".into(), data.cluster.host().to_string()),
                    ("POSTGRES_PORT".into(), data.cluster.port().to_string()),
                    ("POSTGRES_DATABASE".into(), crate::dataset::DATABASE.into()),
                    ("POSTGRES_USER".into(), data.cluster.superuser().to_string()),
                    // Toolbox insists on a password; the throwaway cluster trusts loopback and ignores it.
                    ("POSTGRES_PASSWORD".into(), "unused-trust-auth".into()),
                ],
                point: execute_sql,
                limit_arg: None,
                http: Ok(HttpLaunch {
                    program,
                    args: http_args,
                    path: "/mcp",
                    era: Era::AsServed,
                }),
            })
        }
        None => missing.push("Not measured: MCP Toolbox (not installed in bench/peers)".into()),
    }

    let dbhub = modules.join("@bytebase/dbhub");
    match package_version(&dbhub) {
        Some(version) => {
            let script = dbhub.join("dist/index.js").display().to_string();
            let dsn = format!("{url}?sslmode=disable");
            servers.push(Server {
                name: "DBHub (@bytebase/dbhub)".into(),
                version,
                program: node.clone(),
                stdio_args: strings([&script, "--transport", "stdio", "--dsn", &dsn]),
                env: Vec::new(),
                point: execute_sql,
                limit_arg: None,
                http: Ok(HttpLaunch {
                    program: node.clone(),
                    // DBHub listens on every interface; the preloaded shim keeps it on loopback.
                    args: strings([
                        "--require",
                        &bench_dir().join("peers/loopback.cjs").display().to_string(),
                        &script,
                        "--transport",
                        "http",
                        "--port",
                        "{port}",
                        "--dsn",
                        &dsn,
                    ]),
                    path: "/mcp",
                    era: Era::AsServed,
                }),
            })
        }
        None => missing.push("Not measured: DBHub (not installed in bench/peers)".into()),
    }

    let pro = bench_dir().join("postgres-mcp/.venv/bin/postgres-mcp");
    if pro.is_file() {
        let program = pro.display().to_string();
        servers.push(Server {
            name: "Postgres MCP Pro (postgres-mcp)".into(),
            version: pro_version().unwrap_or_default(),
            program: program.clone(),
            stdio_args: strings(["--access-mode", "restricted", &url]),
            env: Vec::new(),
            point: execute_sql,
            limit_arg: None,
            // 0.3.0 offers stdio and the older HTTP+SSE transport, not Streamable HTTP.
            http: Ok(HttpLaunch {
                program,
                args: strings([
                    "--access-mode",
                    "restricted",
                    "--transport",
                    "sse",
                    "--sse-host",
                    "127.0.0.1",
                    "--sse-port",
                    "{port}",
                    &url,
                ]),
                path: "/sse",
                era: Era::Sse,
            }),
        });
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
         postgres-mcp {}; Node {node}; clients: Python `mcp` 2.3.0 SDK (bench/driver, 7a–7d) and the bench's own \
         stdio and HTTP clients (7e, 7f)\n",
        version("@modelcontextprotocol/server-postgres"),
        version("@toolbox-sdk/server-linux-x64"),
        version("@bytebase/dbhub"),
        pro_version().unwrap_or_else(|| "not installed".into()),
    )
}

/// 7a–7f. The raw clients' tables go right after 7a, so the same point query through the two clients reads
/// side by side.
pub fn run(
    plan: &Plan,
    pgmcp: &Pgmcp,
    data: &Dataset,
    wide: &[BigQuery],
    huge: &[BigQuery],
    rt: &tokio::runtime::Runtime,
) -> Vec<Section> {
    let (servers, missing) = catalogue(pgmcp, data);
    let mut sections = peers_sdk::run(plan, &servers, &missing, data, wide, huge);
    println!("\n7e. peers through the bench's stdio client");
    let stdio = peers_raw::stdio(plan, &servers, &missing, data);
    println!("\n7f. peers over their own HTTP transports");
    let http = peers_raw::http(plan, &servers, data, rt);
    let at = sections
        .iter()
        .position(|s| s.title.starts_with("7a."))
        .map_or(sections.len(), |i| i + 1);
    sections.insert(at, http);
    sections.insert(at, stdio);
    sections
}
