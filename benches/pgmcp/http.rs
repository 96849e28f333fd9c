//! `pgmcp serve --http` as a child process, and a minimal MCP client over Streamable HTTP in both protocol eras
//! (and over the older HTTP+SSE transport, for a peer that offers only that): one keep-alive connection per client
//! (reqwest), the JSON-RPC request as bytes out, the JSON answer read back without validation, so what the figures
//! measure is the server.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, bail};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use serde_json::{Value, json};

use crate::stdio::without_database_environment;

/// How a client speaks to `/mcp`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Era {
    /// `initialize` once, then plain requests with `MCP-Protocol-Version: 2025-11-25`; the server is stateless
    /// (pgmcp's default), so no session id comes back.
    Legacy,
    /// The same client against `--legacy-sessions`: `Mcp-Session-Id` on every request after `initialize`.
    LegacySessions,
    /// 2026-07-28: no handshake state; every request carries the protocol version and client capabilities in
    /// `_meta` and the `MCP-Protocol-Version`, `Mcp-Method` and `Mcp-Name` headers.
    Stateless,
    /// The 2025-11-25 client against a server that is not pgmcp: it keeps a session id if one comes back and sends
    /// it on every request, and goes without otherwise.
    AsServed,
    /// The HTTP+SSE transport (protocol 2024-11-05, still served by some peers): one long `GET` whose events carry
    /// every answer, the requests `POST`ed to the endpoint its first event names.
    Sse,
}

impl Era {
    pub fn label(self) -> &'static str {
        match self {
            Era::Legacy => "2025-11-25, stateless server",
            Era::LegacySessions => "2025-11-25, --legacy-sessions",
            Era::Stateless => "2026-07-28",
            Era::AsServed => "Streamable HTTP, 2025-11-25",
            Era::Sse => "HTTP+SSE",
        }
    }

    pub fn server_flags(self) -> &'static [&'static str] {
        match self {
            Era::LegacySessions => &["--legacy-sessions"],
            _ => &[],
        }
    }

    fn version(self) -> &'static str {
        match self {
            Era::Stateless => "2026-07-28",
            _ => "2025-11-25",
        }
    }
}

/// A running `pgmcp serve --http`; killed on drop.
pub struct HttpServer {
    child: Child,
    pub mcp_url: String,
    _config: tempfile::NamedTempFile,
}

impl HttpServer {
    /// Starts pgmcp on a free loopback port with `config` as its config file and waits for its address.
    pub fn start(
        binary: &str,
        url: &str,
        config: &str,
        extra: &[&str],
    ) -> anyhow::Result<HttpServer> {
        let mut file = tempfile::NamedTempFile::new()?;
        std::io::Write::write_all(&mut file, config.as_bytes())?;
        let mut command = Command::new(binary);
        command
            .args(["serve", "--http", "127.0.0.1:0", "--database-url", url])
            .arg("--config")
            .arg(file.path())
            .args(extra)
            .args(extra_serve_args())
            // Only the line announcing the address: per-call logging would be measured too.
            .env("PGMCP_LOG", "warn,pgmcp::http::server=info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        without_database_environment(&mut command);
        let mut child = command.spawn().context("spawning pgmcp serve --http")?;
        let stderr = child.stderr.take().context("child stderr")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent && let Some(rest) = line.split("listening on http://").nth(1) {
                    let _ = tx.send(Ok(rest.split_whitespace().next().unwrap_or("").to_string()));
                    sent = true;
                } else if !sent {
                    let _ = tx.send(Err(line));
                } else {
                    eprintln!("pgmcp: {line}");
                }
            }
        });
        let mut early = Vec::new();
        let address = loop {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(Ok(address)) => break address,
                Ok(Err(line)) => early.push(line),
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    bail!(
                        "pgmcp serve --http did not report its address within 30 s; it said:\n{}",
                        early.join("\n")
                    );
                }
            }
        };
        Ok(HttpServer {
            child,
            mcp_url: format!("http://{address}/mcp"),
            _config: file,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The HTTP client every MCP client of one load shares: keep-alive connections, no proxy, no timeouts beyond
/// a generous one per request.
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Ok(reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(60))
        .build()?)
}

/// One MCP client over Streamable HTTP.
pub struct McpHttp {
    client: reqwest::Client,
    url: String,
    era: Era,
    headers: HeaderMap,
    next_id: u64,
    /// The answers' stream of the HTTP+SSE transport.
    events: Option<EventStream>,
}

impl McpHttp {
    /// Connects as the given era would: `initialize` + `notifications/initialized` (keeping a session id if one
    /// comes back) for the legacy era, `server/discover` for 2026-07-28.
    pub async fn connect(
        client: reqwest::Client,
        url: &str,
        era: Era,
        token: Option<&str>,
    ) -> anyhow::Result<McpHttp> {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        if let Some(token) = token {
            headers.insert(AUTHORIZATION, format!("Bearer {token}").parse()?);
        }
        let mut mcp = McpHttp {
            client,
            url: url.to_string(),
            era,
            headers,
            next_id: 1,
            events: None,
        };
        if era == Era::Sse {
            mcp.open_event_stream().await?;
            mcp.request("initialize", None, initialize_params(era))
                .await?;
            mcp.initialized().await?;
        } else if era == Era::Stateless {
            mcp.request("server/discover", None, json!({})).await?;
        } else {
            let response = mcp
                .post(
                    None,
                    &json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
                        "params": initialize_params(era)}),
                )
                .await?;
            let session = response.headers().get("mcp-session-id").cloned();
            let status = response.status();
            let body = response.text().await?;
            anyhow::ensure!(
                status.is_success(),
                "initialize: HTTP {status}: {body:.300}"
            );
            match (era, session) {
                (Era::LegacySessions | Era::AsServed, Some(id)) => {
                    mcp.headers.insert("mcp-session-id", id);
                }
                (Era::LegacySessions, None) => bail!("--legacy-sessions gave no Mcp-Session-Id"),
                (_, Some(_)) => bail!("a stateless server handed out a session id"),
                _ => {}
            }
            mcp.headers.insert(
                "mcp-protocol-version",
                HeaderValue::from_static(era.version()),
            );
            mcp.initialized().await?;
        }
        Ok(mcp)
    }

    /// The `notifications/initialized` that ends a session's handshake.
    async fn initialized(&mut self) -> anyhow::Result<()> {
        let response = self
            .post(
                None,
                &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
            )
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "notifications/initialized: HTTP {}",
            response.status()
        );
        Ok(())
    }

    /// Opens the HTTP+SSE transport's event stream at `self.url` and moves `self.url` to the endpoint the server
    /// names in its first event, where the requests go from now on.
    async fn open_event_stream(&mut self) -> anyhow::Result<()> {
        let response = self
            .client
            .get(&self.url)
            .header(ACCEPT, "text/event-stream")
            // The stream lives as long as the client; each read below has its own time limit.
            .timeout(Duration::from_secs(30 * 60))
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "GET {}: HTTP {}",
            self.url,
            response.status()
        );
        let mut events = EventStream {
            response,
            buffer: Vec::new(),
        };
        let (kind, data) = events.next().await?;
        anyhow::ensure!(
            kind == "endpoint",
            "the event stream began with `{kind}`, not `endpoint`"
        );
        self.url = reqwest::Url::parse(&self.url)?.join(&data)?.to_string();
        self.events = Some(events);
        Ok(())
    }

    async fn post(
        &self,
        name: Option<(&str, &str)>,
        body: &Value,
    ) -> anyhow::Result<reqwest::Response> {
        let mut request = self
            .client
            .post(&self.url)
            .headers(self.headers.clone())
            .body(serde_json::to_vec(body)?);
        if self.era == Era::Stateless {
            request = request.header("mcp-protocol-version", self.era.version());
            if let Some((method, name)) = name {
                request = request.header("mcp-method", method);
                if !name.is_empty() {
                    request = request.header("mcp-name", name);
                }
            }
        }
        Ok(request.send().await?)
    }

    /// Sends one request and returns the size of the answer and its `result`.
    pub async fn request(
        &mut self,
        method: &str,
        name: Option<&str>,
        mut params: Value,
    ) -> anyhow::Result<(usize, Value)> {
        let id = self.next_id;
        self.next_id += 1;
        if self.era == Era::Stateless {
            params["_meta"] = json!({
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
                "io.modelcontextprotocol/clientInfo": {"name": "pgmcp-bench", "version": "1"},
            });
        }
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let response = self.post(Some((method, name.unwrap_or(""))), &body).await?;
        let status = response.status();
        let bytes = response.bytes().await?;
        if let Some(events) = &mut self.events {
            anyhow::ensure!(
                status.is_success(),
                "{method}: HTTP {status}: {:.300}",
                String::from_utf8_lossy(&bytes)
            );
            return events.answer(method, id).await;
        }
        if !status.is_success() {
            bail!(
                "{method}: HTTP {status}: {:.300}",
                String::from_utf8_lossy(&bytes)
            );
        }
        let mut message = parse_answer(&bytes).with_context(|| {
            format!(
                "{method}: the answer is neither JSON nor an event stream with it: {:.300}",
                String::from_utf8_lossy(&bytes)
            )
        })?;
        if let Some(error) = message.get("error") {
            bail!("{method} failed: {error}");
        }
        Ok((bytes.len(), message["result"].take()))
    }

    /// Ends a legacy session (`DELETE` with its id), as a client does when it is done; nothing to end otherwise.
    pub async fn close(self) -> anyhow::Result<()> {
        if !self.headers.contains_key("mcp-session-id") {
            return Ok(());
        }
        let response = self
            .client
            .delete(&self.url)
            .headers(self.headers)
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "closing the session: HTTP {}",
            response.status()
        );
        Ok(())
    }

    pub async fn call_tool(
        &mut self,
        name: &str,
        arguments: Value,
    ) -> anyhow::Result<(usize, Value)> {
        let (bytes, result) = self
            .request(
                "tools/call",
                Some(name),
                json!({"name": name, "arguments": arguments}),
            )
            .await?;
        if result.get("isError").and_then(Value::as_bool) == Some(true) {
            bail!(
                "{name} {arguments} returned an error: {:.400}",
                result.to_string()
            );
        }
        Ok((bytes, result))
    }
}

fn initialize_params(era: Era) -> Value {
    json!({
        "protocolVersion": era.version(), "capabilities": {},
        "clientInfo": {"name": "pgmcp-bench", "version": "1"}
    })
}

/// The server-to-client half of the HTTP+SSE transport: the events of one long response, read as they arrive.
struct EventStream {
    response: reqwest::Response,
    buffer: Vec<u8>,
}

impl EventStream {
    /// The next event's type and data; comments (keep-alive pings) are skipped.
    async fn next(&mut self) -> anyhow::Result<(String, String)> {
        loop {
            while let Some((end, separator)) = event_end(&self.buffer) {
                let event: Vec<u8> = self.buffer.drain(..end + separator).collect();
                let mut kind = "message".to_string();
                let mut data = String::new();
                for line in std::str::from_utf8(&event[..end])?.lines() {
                    if let Some(value) = line.strip_prefix("event:") {
                        kind = value.trim().to_string();
                    } else if let Some(value) = line.strip_prefix("data:") {
                        if !data.is_empty() {
                            data.push('\n');
                        }
                        data.push_str(value.strip_prefix(' ').unwrap_or(value));
                    }
                }
                if !data.is_empty() {
                    return Ok((kind, data));
                }
            }
            let chunk = tokio::time::timeout(Duration::from_secs(60), self.response.chunk())
                .await
                .context("no event within 60 s")??
                .context("the server ended the event stream")?;
            self.buffer.extend_from_slice(&chunk);
        }
    }

    /// Reads events until the answer to request `id`, and returns its size and `result`.
    async fn answer(&mut self, method: &str, id: u64) -> anyhow::Result<(usize, Value)> {
        loop {
            let (kind, data) = self.next().await?;
            if kind != "message" {
                continue;
            }
            let mut message: Value = serde_json::from_str(&data)
                .with_context(|| format!("{method}: an event that is not JSON: {data:.300}"))?;
            if message.get("id").and_then(Value::as_u64) != Some(id) {
                continue;
            }
            if let Some(error) = message.get("error") {
                bail!("{method} failed: {error}");
            }
            return Ok((data.len(), message["result"].take()));
        }
    }
}

/// Where the first event of `buffer` ends and how long its blank-line separator is (servers write LF or CRLF).
fn event_end(buffer: &[u8]) -> Option<(usize, usize)> {
    let crlf = buffer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| (at, 4));
    let lf = buffer
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|at| (at, 2));
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 < b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// The JSON-RPC answer of a response body: plain JSON (pgmcp's stateless serving), or the last `data:` event that
/// holds a JSON object (legacy sessions answer with a short event stream).
fn parse_answer(bytes: &[u8]) -> anyhow::Result<Value> {
    if bytes.first() == Some(&b'{') {
        return Ok(serde_json::from_slice(bytes)?);
    }
    let text = std::str::from_utf8(bytes)?;
    text.lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(str::trim_start)
        .rfind(|data| data.starts_with('{'))
        .context("no data event")
        .and_then(|data| Ok(serde_json::from_str(data)?))
}

/// The variable whose words are added to every `pgmcp serve --http` the bench starts, for trying a setting (e.g.
/// `--http-threads 2`): the servers' environment is stripped of `PG*` variables, `PGMCP_*` included, so that the
/// shell the bench runs in cannot change what it measures unnoticed.
pub const EXTRA_SERVE_ARGS: &str = "PGMCP_BENCH_SERVE_ARGS";

fn extra_serve_args() -> Vec<String> {
    std::env::var(EXTRA_SERVE_ARGS)
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}
