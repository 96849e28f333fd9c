//! How the model's tool calls reach pgmcp: as MCP `tools/call` requests to pgmcp's own MCP server, so each passes
//! the same gate as any client's (policy, audit, metrics) and then the same dispatch (guard, read-only
//! transaction, limits, session check). The terminal talks to an in-process server over a pipe, as stdio clients
//! do; `POST /chat` calls the listener's own `/mcp` with the signed-in caller's token, so authentication,
//! on-behalf-of logins and row-level security apply exactly as to that caller's own MCP requests.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, CallToolResult, JsonObject, Tool};
use rmcp::service::RunningService;
use serde_json::{Value, json};

use crate::config::Secret;
use crate::mcp::PgMcpServer;

/// The tools the model may be offered, in the order they are listed to it.
pub const READ_TOOLS: &[&str] = &[
    "list_tables",
    "describe_table",
    "search_tables",
    "execute_query",
    "explain_query",
];

/// The one write tool; offered only on a read-write profile and with a person to confirm each call.
pub const WRITE_TOOL: &str = "execute_write";

/// What a tool call came back with: the answer's text (JSON for pgmcp's tools) and whether it is an error.
#[derive(Debug, Clone)]
pub struct ToolOutcome {
    pub is_error: bool,
    pub value: Value,
}

pub trait ToolRunner: Send + Sync {
    /// The tools the caller may use (tools/list through the gate).
    fn list(&self) -> BoxFuture<'_, Result<Vec<Tool>, String>>;
    fn call<'a>(
        &'a self,
        name: &'a str,
        arguments: JsonObject,
    ) -> BoxFuture<'a, Result<ToolOutcome, String>>;
}

fn outcome(result: CallToolResult) -> ToolOutcome {
    let text = result
        .content
        .iter()
        .find_map(|block| block.as_text().map(|t| t.text.clone()));
    let value = match (result.structured_content, text) {
        (Some(value), _) if result.is_error != Some(true) => value,
        (_, Some(text)) => serde_json::from_str(&text).unwrap_or(Value::String(text)),
        (Some(value), None) => value,
        (None, None) => Value::Null,
    };
    ToolOutcome {
        is_error: result.is_error == Some(true),
        value,
    }
}

/// An MCP client connected to an in-process pgmcp server over a pipe: the caller is local, as on stdio.
pub struct InProcess {
    client: RunningService<rmcp::RoleClient, ()>,
}

impl InProcess {
    pub async fn start(server: PgMcpServer) -> anyhow::Result<InProcess> {
        let (client_side, server_side) = tokio::io::duplex(1 << 20);
        let (server_read, server_write) = tokio::io::split(server_side);
        tokio::spawn(async move {
            if let Ok(running) = server.serve((server_read, server_write)).await {
                let _ = running.waiting().await;
            }
        });
        let (client_read, client_write) = tokio::io::split(client_side);
        let client = ().serve((client_read, client_write)).await?;
        Ok(InProcess { client })
    }
}

impl ToolRunner for InProcess {
    fn list(&self) -> BoxFuture<'_, Result<Vec<Tool>, String>> {
        Box::pin(async move {
            self.client
                .list_all_tools()
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn call<'a>(
        &'a self,
        name: &'a str,
        arguments: JsonObject,
    ) -> BoxFuture<'a, Result<ToolOutcome, String>> {
        Box::pin(async move {
            let mut params = CallToolRequestParams::new(name.to_string());
            params.arguments = Some(arguments);
            self.client
                .call_tool(params)
                .await
                .map(outcome)
                .map_err(|e| e.to_string())
        })
    }
}

/// The listener's own `/mcp`, called with the signed-in caller's bearer token.
pub struct OwnEndpoint {
    http: reqwest::Client,
    url: String,
    host: String,
    token: Option<Secret>,
    session: tokio::sync::Mutex<Handshake>,
}

#[derive(Default)]
struct Handshake {
    protocol: Option<String>,
    session_id: Option<String>,
    next_id: u64,
}

const PROTOCOL_VERSION: &str = "2025-11-25";

impl OwnEndpoint {
    /// `url` is the bound loopback address's `/mcp`; `host` the Host header the listener accepts.
    pub fn new(
        http: reqwest::Client,
        url: String,
        host: String,
        token: Option<Secret>,
    ) -> OwnEndpoint {
        OwnEndpoint {
            http,
            url,
            host,
            token,
            session: tokio::sync::Mutex::new(Handshake::default()),
        }
    }

    async fn post(
        &self,
        handshake: &mut Handshake,
        method: &str,
        params: Value,
        notify: bool,
    ) -> Result<Value, String> {
        let mut message = json!({"jsonrpc": "2.0", "method": method, "params": params});
        let id = handshake.next_id;
        if !notify {
            handshake.next_id += 1;
            message["id"] = json!(id);
        }
        let mut request = (self.http.post(&self.url))
            .header(reqwest::header::HOST, &self.host)
            .header(
                reqwest::header::ACCEPT,
                "application/json, text/event-stream",
            )
            .json(&message);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.expose());
        }
        if let Some(protocol) = &handshake.protocol {
            request = request.header("MCP-Protocol-Version", protocol);
        }
        if let Some(session) = &handshake.session_id {
            request = request.header("Mcp-Session-Id", session);
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("pgmcp's /mcp did not answer: {e}"))?;
        if let Some(session) = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
        {
            handshake.session_id = Some(session.to_string());
        }
        let status = response.status();
        let text = response.text().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!(
                "pgmcp's /mcp refused {method} ({status}): {}",
                text.chars().take(200).collect::<String>()
            ));
        }
        if notify {
            return Ok(Value::Null);
        }
        let answer = text
            .lines()
            .filter_map(|line| line.strip_prefix("data:").map(str::trim).or(Some(line)))
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|m| m.get("id") == Some(&json!(id)))
            .ok_or_else(|| format!("pgmcp's /mcp sent no answer to {method}"))?;
        if let Some(error) = answer.get("error") {
            return Err(error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("error")
                .to_string());
        }
        Ok(answer.get("result").cloned().unwrap_or(Value::Null))
    }

    async fn request(&self, method: &str, params: Value) -> Result<Value, String> {
        let mut handshake = self.session.lock().await;
        if handshake.protocol.is_none() {
            let init = json!({
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "pgmcp-chat", "version": env!("CARGO_PKG_VERSION")},
            });
            let result = self.post(&mut handshake, "initialize", init, false).await?;
            handshake.protocol = Some(
                result
                    .get("protocolVersion")
                    .and_then(Value::as_str)
                    .unwrap_or(PROTOCOL_VERSION)
                    .to_string(),
            );
            self.post(&mut handshake, "notifications/initialized", json!({}), true)
                .await?;
        }
        self.post(&mut handshake, method, params, false).await
    }
}

impl ToolRunner for OwnEndpoint {
    fn list(&self) -> BoxFuture<'_, Result<Vec<Tool>, String>> {
        Box::pin(async move {
            let result = self.request("tools/list", json!({})).await?;
            serde_json::from_value(result.get("tools").cloned().unwrap_or(json!([])))
                .map_err(|e| e.to_string())
        })
    }

    fn call<'a>(
        &'a self,
        name: &'a str,
        arguments: JsonObject,
    ) -> BoxFuture<'a, Result<ToolOutcome, String>> {
        Box::pin(async move {
            let result = self
                .request("tools/call", json!({"name": name, "arguments": arguments}))
                .await?;
            let result: CallToolResult =
                serde_json::from_value(result).map_err(|e| e.to_string())?;
            Ok(outcome(result))
        })
    }
}

pub type SharedRunner = Arc<dyn ToolRunner>;
