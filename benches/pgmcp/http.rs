//! `pgmcp serve --http` as a child process, and a minimal MCP client over Streamable HTTP in both protocol eras:
//! one keep-alive connection per client (reqwest), the JSON-RPC request as bytes out, the JSON answer read back
//! without validation, so what the figures measure is the server.

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
}

impl Era {
    pub fn label(self) -> &'static str {
        match self {
            Era::Legacy => "2025-11-25, stateless server",
            Era::LegacySessions => "2025-11-25, --legacy-sessions",
            Era::Stateless => "2026-07-28",
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
        };
        if era == Era::Stateless {
            mcp.request("server/discover", None, json!({})).await?;
        } else {
            let response = mcp
                .post(
                    None,
                    &json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                        "protocolVersion": era.version(), "capabilities": {},
                        "clientInfo": {"name": "pgmcp-bench", "version": "1"}}}),
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
                (Era::LegacySessions, Some(id)) => {
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
            let response = mcp
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
        }
        Ok(mcp)
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
