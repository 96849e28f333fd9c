//! rmcp wiring: the ServerHandler that lists pgmcp's tools and resources and routes calls to them, each through
//! the authorization gate (`gate`). Both protocol eras (legacy `initialize` sessions and stateless 2026-07-28
//! `server/discover`) are handled by rmcp itself.

pub mod gate;
#[cfg(test)]
mod parse_tests;
mod resources;

use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    JsonObject, ListResourceTemplatesResult, ListResourcesResult, ListToolsResult,
    PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse, ServerCapabilities,
    ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tracing::Instrument;

use crate::db::Database;
use crate::http::policy::Policy;
use crate::telemetry::audit::{AuditLog, CallOutcome};
use crate::telemetry::metrics::Metrics;
use crate::tools::dispatch::ToolAnswer;
use crate::tools::{self, ToolError, registry};
use gate::{Action, Gate};

/// The databases one `serve` exposes; the first is the default profile.
pub struct Databases {
    list: Vec<Arc<Database>>,
    /// The curated tools, each bound to one of these profiles, and which tools are exposed.
    curated: tools::curated::CuratedTools,
}

impl Databases {
    pub fn new(list: Vec<Arc<Database>>) -> Databases {
        assert!(
            !list.is_empty(),
            "at least one profile is resolved before serving"
        );
        Databases {
            list,
            curated: Default::default(),
        }
    }

    pub fn with_curated(self, curated: tools::curated::CuratedTools) -> Databases {
        Databases { curated, ..self }
    }

    pub fn curated(&self) -> &tools::curated::CuratedTools {
        &self.curated
    }

    pub fn all(&self) -> &[Arc<Database>] {
        &self.list
    }

    pub fn select(&self, name: Option<&str>) -> Result<&Arc<Database>, ToolError> {
        match name {
            None => Ok(&self.list[0]),
            Some(name) => self
                .list
                .iter()
                .find(|db| db.profile.name == name)
                .ok_or_else(|| {
                    ToolError::invalid(format!(
                        "unknown profile `{name}`; available profiles: {}",
                        self.names().join(", ")
                    ))
                }),
        }
    }

    pub fn names(&self) -> Vec<String> {
        self.list.iter().map(|db| db.profile.name.clone()).collect()
    }
}

/// The MCP server. Every method that reveals or does something is decided, audited and counted by its one
/// [`Gate`]; the handlers below only say which [`Action`] a request is and do the permitted work.
#[derive(Clone)]
pub struct PgMcpServer {
    gate: Arc<Gate>,
}

impl PgMcpServer {
    pub fn new(databases: Arc<Databases>) -> PgMcpServer {
        let tools = registry::tool_list(&databases);
        PgMcpServer {
            gate: Arc::new(Gate::new(databases, tools)),
        }
    }

    fn configure(mut self, change: impl FnOnce(&mut Gate)) -> PgMcpServer {
        change(Arc::make_mut(&mut self.gate));
        self
    }

    /// Set when callers are authenticated: each sees and reaches only what the policy grants it. Without a
    /// policy (stdio, HTTP with `auth.mode = none`) everything the server offers is available.
    pub fn with_policy(self, policy: Option<Arc<Policy>>) -> PgMcpServer {
        self.configure(|gate| gate.set_policy(policy))
    }

    pub fn with_audit(self, audit: Option<Arc<AuditLog>>) -> PgMcpServer {
        self.configure(|gate| gate.set_audit(audit))
    }

    pub fn with_metrics(self, metrics: Option<Arc<Metrics>>) -> PgMcpServer {
        self.configure(|gate| gate.set_metrics(metrics))
    }

    /// Spans and OpenTelemetry metrics, while export is on.
    pub fn with_otel(self, otel: Option<Arc<crate::telemetry::otel::Otel>>) -> PgMcpServer {
        self.configure(|gate| gate.set_otel(otel))
    }

    pub fn tools(&self) -> &[Tool] {
        self.gate.tools()
    }
}

fn success_result(answer: ToolAnswer) -> CallToolResult {
    let mut result = CallToolResult::success(vec![ContentBlock::text(answer.text)]);
    result.structured_content = answer.structured;
    result
}

pub fn error_result(err: &ToolError) -> CallToolResult {
    let value = serde_json::to_value(err).unwrap_or_else(|_| Value::String(err.to_string()));
    let mut result = CallToolResult::error(vec![ContentBlock::text(err.to_string())]);
    result.structured_content = Some(value);
    result
}

pub fn parse_args<P: DeserializeOwned>(arguments: JsonObject) -> Result<P, ToolError> {
    serde_json::from_value(Value::Object(arguments))
        .map_err(|e| ToolError::invalid(format!("invalid arguments: {e}")))
}

pub fn to_json<T: Serialize>(value: &T) -> Result<Value, ToolError> {
    serde_json::to_value(value)
        .map_err(|e| ToolError::invalid(format!("could not encode the result: {e}")))
}

const INSTRUCTIONS: &str = "pgmcp gives read access to PostgreSQL. Start with list_tables (or search_tables for a term), \
then describe_table for columns, keys and indexes, then execute_query with bind parameters. Results are capped \
(`truncated: true` says more rows exist): aggregate or filter in SQL rather than reading whole tables. \
explain_query shows plans. Everything runs in read-only transactions unless a profile is configured read_write.";

impl ServerHandler for PgMcpServer {
    // Logging is deprecated for 2026-07-28 (SEP-2577) but legacy clients still call logging/setLevel.
    #[allow(deprecated)]
    fn get_info(&self) -> ServerConfig {
        let mut implementation = Implementation::new("pgmcp", env!("CARGO_PKG_VERSION"));
        implementation.title = Some("pgmcp — PostgreSQL for MCP".into());
        implementation.description = Some(env!("CARGO_PKG_DESCRIPTION").into());
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .enable_logging()
                .build(),
        )
        .with_server_info(implementation)
        .with_instructions(INSTRUCTIONS)
    }

    #[allow(deprecated)]
    /// Clients commonly set a log level right after connecting. pgmcp reports problems in tool results, not
    /// log notifications, so any level is accepted and nothing is sent below it (or above it).
    async fn set_level(
        &self,
        _request: rmcp::model::SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        Ok(())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        (self.gate)
            .pass(Action::ListTools, &context, |permit| async move {
                let tools: Vec<Tool> = permit.tools().iter().map(|t| (*t).clone()).collect();
                let outcome = CallOutcome::listed(tools.len(), 0);
                (Ok(ListToolsResult::with_all_items(tools)), outcome)
            })
            .await
    }

    /// The schema of any offered tool, whoever asks: the HTTP transport uses it to validate `Mcp-Param-*` headers
    /// against the body before the request reaches the gate.
    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.gate.tools().iter().find(|t| t.name == name).cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let arguments = request.arguments.unwrap_or_default();
        let action = Action::CallTool {
            tool: &request.name,
            arguments: &arguments,
            meta: request.meta.as_ref(),
        };
        let traceparent = (request.meta.as_ref())
            .and_then(|meta| meta.get_traceparent())
            .or_else(|| context.meta.get_traceparent());
        let (name, arguments, context) = (&request.name, &arguments, &context);
        (self.gate)
            .pass(action, context, |permit| async move {
                // Debug, not info: at the default level no line is written during a call, and an info span had the
                // log formatter render its fields on every call for nothing (5 % of a call's instructions over HTTP).
                let span = tracing::debug_span!(
                    "tool_call",
                    tool = %name,
                    request_id = %context.id,
                    traceparent = traceparent.unwrap_or(""),
                );
                // Boxed: the call's future is large, and rmcp moves each request's future whole as it spawns and
                // runs it; behind a pointer, those moves copy a few words instead of the call's every state.
                let result = Box::pin(tools::dispatch::call_tool(
                    permit.databases(),
                    name,
                    arguments.clone(),
                    &context.ct,
                    crate::http::request_user(&context.extensions),
                    &permit.caller,
                ))
                .instrument(span)
                .await;
                let outcome = CallOutcome::from_result(&result);
                let response = match result {
                    Ok(answer) => success_result(answer),
                    Err(err) => error_result(&err),
                };
                (Ok(response.into()), outcome)
            })
            .await
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        (self.gate)
            .pass(
                Action::ListResourceTemplates,
                &context,
                |permit| async move { resources::templates(&permit) },
            )
            .await
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        let user = crate::http::request_user(&context.extensions);
        (self.gate)
            .pass(Action::ListResources, &context, |permit| async move {
                // Boxed, as a tool's call: its state would otherwise make every request's future kilobytes.
                Box::pin(resources::list(&permit, user)).await
            })
            .await
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let user = crate::http::request_user(&context.extensions);
        let uri = &request.uri;
        (self.gate)
            .pass(
                Action::ReadResource { uri },
                &context,
                |permit| async move { Box::pin(resources::read(&permit, uri, user)).await },
            )
            .await
    }
}
