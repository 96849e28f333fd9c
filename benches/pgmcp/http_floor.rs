//! Scenario 2's HTTP floor: the least an HTTP server that checks a bearer token and runs the point query can cost
//! on this machine with the bench's own clients. axum in a process of its own, as pgmcp is, on a runtime of 2
//! worker threads (more calls/s here than one); the token checked as a validator with a verdict cache does it (its
//! SHA-256 looked up among the tokens verified before, the RS256 signature and claims verified on a miss); the
//! JSON-RPC body parsed; the statement run from a per-connection prepared statement of a pool like the raw floor's;
//! an answer of pgmcp's shape. No MCP session handling, SQL guard, policy, transaction or row limit: what is left is HTTP, JSON and the
//! token, which every server in pgmcp's place pays. `FloorWork::PgmcpSequence` runs pgmcp's statement sequence
//! instead of the bare statement, so the floor does the database work pgmcp's safety layers ask for, and the gap
//! to pgmcp is its MCP layer alone.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::serve::ListenerExt;
use deadpool_postgres::Pool;
use futures_util::{StreamExt, pin_mut};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use pgmcp::db::render::data_row_to_json;
use postgres_protocol::message::backend::Message;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio_postgres::types::Type;
use tokio_postgres::{Row, Statement};

use crate::issuer::{self, Issuer};
use crate::raw;

/// The variable that makes the bench binary serve a floor (its value the floor's spec, as JSON) instead of running
/// the plan: the floor runs in a process of its own, as pgmcp does, so both pay the same process switches and
/// neither shares an address space with the clients.
pub const CHILD_ENV: &str = "PGMCP_BENCH_HTTP_FLOOR";

/// The name of the floor runtime's threads.
const THREAD_NAME: &str = "pgmcp-floor";

/// What the floor asks of PostgreSQL per call.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum FloorWork {
    /// The bare statement, prepared once per connection: the least any server could ask.
    Statement,
    /// pgmcp's read as `raw::Sequence::Current` sends it: the statement restated with its row limit, inside
    /// `START TRANSACTION READ ONLY` … `ROLLBACK`, with the session check, under one Sync.
    PgmcpSequence,
}

impl FloorWork {
    pub fn label(self) -> &'static str {
        match self {
            FloorWork::Statement => "HTTP floor: axum + JWT check + raw pool, no MCP",
            FloorWork::PgmcpSequence => {
                "HTTP floor with pgmcp's statement sequence: the same, no MCP"
            }
        }
    }
}

/// What the floor process needs to know: the database, its pool, the work, and the token issuer's public key.
#[derive(Serialize, Deserialize)]
struct FloorSpec {
    database_url: String,
    connections: usize,
    work: FloorWork,
    issuer: String,
    jwk: Jwk,
}

/// The floor server, on loopback in a child process of the bench; stopped on drop.
pub struct HttpFloor {
    child: Child,
    pub mcp_url: String,
}

impl HttpFloor {
    /// Starts the bench binary again as a floor serving `POST /mcp` on a free loopback port, with a pool of
    /// `connections` to `database_url`, and waits for its address.
    pub fn start(
        issuer: &Issuer,
        database_url: &str,
        connections: usize,
        work: FloorWork,
    ) -> anyhow::Result<HttpFloor> {
        let spec = FloorSpec {
            database_url: database_url.to_string(),
            connections,
            work,
            issuer: issuer.issuer(),
            jwk: issuer.public_jwk().clone(),
        };
        let mut child = Command::new(std::env::current_exe()?)
            .env(CHILD_ENV, serde_json::to_string(&spec)?)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the HTTP floor's process")?;
        // The child's first line is its address; it ends when its stdin closes (on drop, or with the bench).
        let mut line = String::new();
        let read = child
            .stdout
            .take()
            .map(|stdout| BufReader::new(stdout).read_line(&mut line));
        let mcp_url = line.trim().to_string();
        if !matches!(read, Some(Ok(n)) if n > 0) || !mcp_url.starts_with("http://") {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!(
                "the HTTP floor's process did not report its address (it printed {mcp_url:?})"
            );
        }
        Ok(HttpFloor { child, mcp_url })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for HttpFloor {
    fn drop(&mut self) {
        // Closing its stdin ends the floor; it is given a moment and then killed, so a stuck one cannot hang the bench.
        drop(self.child.stdin.take());
        for _ in 0..50 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The floor process's body (`CHILD_ENV` set): serves until its stdin closes.
pub fn serve(spec: &str) -> anyhow::Result<()> {
    let spec: FloorSpec = serde_json::from_str(spec).context("reading the HTTP floor's spec")?;
    // Two worker threads: on this 2-core host the floor reaches more calls/s with two than with one.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(THREAD_NAME)
        .enable_all()
        .build()?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[issuer::CLIENT_ID]);
    validation.set_issuer(&[&spec.issuer]);
    let pool = match spec.work {
        FloorWork::Statement => raw::pool(&spec.database_url, spec.connections)?,
        FloorWork::PgmcpSequence => {
            raw::Sequence::Current.pool(&spec.database_url, spec.connections)?
        }
    };
    let floor = Arc::new(Floor {
        pool,
        work: spec.work,
        bounded_sql: raw::bounded_point_sql(),
        key: DecodingKey::from_jwk(&spec.jwk)?,
        validation,
        verified: Mutex::new(HashMap::new()),
    });
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let address = listener.local_addr()?;
    let app = axum::Router::new()
        .route("/mcp", post(mcp))
        .with_state(floor);
    // TCP_NODELAY as pgmcp sets it, so both answer without waiting for the client's delayed ACK.
    runtime.spawn(async move {
        let _ = axum::serve(listener.tap_io(|tcp| drop(tcp.set_nodelay(true))), app).await;
    });
    let mut stdout = std::io::stdout();
    writeln!(stdout, "http://{address}/mcp")?;
    stdout.flush()?;
    std::io::copy(&mut std::io::stdin(), &mut std::io::sink())?;
    // Not waiting: the tasks (server, pool connections) are dropped, which closes their sockets.
    runtime.shutdown_background();
    Ok(())
}

struct Floor {
    pool: Pool,
    work: FloorWork,
    /// The point query as pgmcp restates a bounded read (`FloorWork::PgmcpSequence`).
    bounded_sql: String,
    key: DecodingKey,
    validation: Validation,
    /// SHA-256 of every token verified so far, with its `exp`.
    verified: Mutex<HashMap<[u8; 32], u64>>,
}

/// The claims the floor checks besides what `Validation` does (signature, `exp`, `aud`, `iss`).
#[derive(Deserialize)]
struct Claims {
    exp: u64,
    tid: String,
    azp: String,
    roles: Vec<String>,
}

impl Floor {
    fn authenticate(&self, headers: &HeaderMap) -> Result<(), String> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .ok_or("no bearer token")?;
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = jsonwebtoken::get_current_timestamp();
        let known = self
            .verified
            .lock()
            .map_err(|_| "poisoned cache")?
            .get(&digest)
            .is_some_and(|&exp| now <= exp.saturating_add(self.validation.leeway));
        if known {
            return Ok(());
        }
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| format!("invalid token: {e}"))?
            .claims;
        if claims.tid != issuer::TENANT
            || claims.azp != issuer::AGENT_APP
            || !claims.roles.iter().any(|role| role == issuer::ROLE)
        {
            return Err("the token's tenant, calling app or roles are not allowed".into());
        }
        self.verified
            .lock()
            .map_err(|_| "poisoned cache")?
            .insert(digest, claims.exp);
        Ok(())
    }

    /// The point query of `tools/call` as compact JSON text: columns and rows, as pgmcp renders them.
    async fn point_query(&self, request: &Value) -> anyhow::Result<String> {
        let aid = request["params"]["arguments"]["params"][0]
            .as_i64()
            .context("params.arguments.params[0] is not an integer")?;
        if self.work == FloorWork::PgmcpSequence {
            return self.point_query_in_sequence(aid).await;
        }
        let client = self.pool.get().await?;
        let statement = client.prepare_cached(raw::POINT_SQL).await?;
        let rows = client.query(&statement, &[&i32::try_from(aid)?]).await?;
        let rendered = rows
            .iter()
            .map(row_values)
            .collect::<anyhow::Result<Vec<_>>>()?;
        answer_text(&statement, rendered)
    }

    /// The point query inside pgmcp's flight; the rows are the statement's (between the BEGIN's and the
    /// statement's CommandComplete), rendered by pgmcp's own renderer from the binary answer.
    async fn point_query_in_sequence(&self, aid: i64) -> anyhow::Result<String> {
        let client = self.pool.get().await?;
        let (statement, answer) = raw::send_flight(&client, &self.bounded_sql, aid, true).await?;
        pin_mut!(answer);
        let mut completed = 0;
        let mut rendered = Vec::new();
        while let Some(message) = answer.next().await {
            match message? {
                Message::DataRow(row) if completed == 1 => {
                    rendered.push(Value::Array(data_row_to_json(statement.columns(), &row)?));
                }
                Message::CommandComplete(_) => completed += 1,
                _ => {}
            }
        }
        answer_text(&statement, rendered)
    }
}

/// The answer's text in pgmcp's shape: the statement's columns, then the rendered rows.
fn answer_text(statement: &Statement, rows: Vec<Value>) -> anyhow::Result<String> {
    let columns: Vec<Value> = statement
        .columns()
        .iter()
        .map(|c| json!({"name": c.name(), "type": c.type_().name()}))
        .collect();
    let row_count = rows.len();
    Ok(serde_json::to_string(&json!({
        "columns": columns,
        "rows": rows,
        "row_count": row_count,
        "truncated": false,
    }))?)
}

/// One row as a JSON array; only the types of `pgbench_accounts` are needed.
fn row_values(row: &Row) -> anyhow::Result<Value> {
    let mut values = Vec::with_capacity(row.len());
    for (i, column) in row.columns().iter().enumerate() {
        values.push(match *column.type_() {
            Type::INT4 => json!(row.try_get::<_, Option<i32>>(i)?),
            Type::INT8 => json!(row.try_get::<_, Option<i64>>(i)?),
            Type::BPCHAR | Type::TEXT | Type::VARCHAR => {
                json!(row.try_get::<_, Option<String>>(i)?)
            }
            ref other => anyhow::bail!("the HTTP floor does not render {other}"),
        });
    }
    Ok(Value::Array(values))
}

/// `POST /mcp`: the token, then the JSON-RPC request. `tools/call` runs the point query; `initialize` gets a
/// minimal answer and notifications a 202, so the bench's legacy-era client connects as it does to pgmcp.
async fn mcp(State(floor): State<Arc<Floor>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(reason) = floor.authenticate(&headers) {
        return (StatusCode::UNAUTHORIZED, reason).into_response();
    }
    let request: Value = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(err) => return (StatusCode::BAD_REQUEST, err.to_string()).into_response(),
    };
    let Some(id) = request.get("id").cloned() else {
        return StatusCode::ACCEPTED.into_response();
    };
    let result = match request["method"].as_str() {
        Some("tools/call") => match floor.point_query(&request).await {
            Ok(text) => json!({"content": [{"type": "text", "text": text}]}),
            Err(err) => {
                return (StatusCode::INTERNAL_SERVER_ERROR, format!("{err:#}")).into_response();
            }
        },
        Some("initialize") => json!({
            "protocolVersion": request["params"]["protocolVersion"],
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "pgmcp-bench-http-floor", "version": "1"},
        }),
        _ => json!({}),
    };
    Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response()
}
