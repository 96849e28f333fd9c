//! rmcp wiring: the ServerHandler that lists pgmcp's tools and resources and routes calls to them. Both protocol
//! eras (legacy `initialize` sessions and stateless 2026-07-28 `server/discover`) are handled by rmcp itself.

use std::sync::Arc;
use std::time::Instant;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    JsonObject, ListResourceTemplatesResult, ListResourcesResult, ListToolsResult,
    PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult,
    Resource, ResourceContents, ResourceTemplate, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tracing::Instrument;

use crate::db::Database;
use crate::http::policy::Policy;
use crate::telemetry::audit::{AuditLog, CallOutcome, CallRecord, CallerIdentity};
use crate::telemetry::metrics::Metrics;
use crate::tools::dispatch::ToolAnswer;
use crate::tools::{self, ToolError, registry};

/// The databases one `serve` exposes; the first is the default profile.
pub struct Databases {
    list: Vec<Arc<Database>>,
}

impl Databases {
    pub fn new(list: Vec<Arc<Database>>) -> Databases {
        assert!(
            !list.is_empty(),
            "at least one profile is resolved before serving"
        );
        Databases { list }
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

#[derive(Clone)]
pub struct PgMcpServer {
    databases: Arc<Databases>,
    tools: Arc<Vec<Tool>>,
    /// Set when callers are authenticated: each sees and calls only the tools the policy grants it. Without a
    /// policy (stdio, HTTP with `auth.mode = none`) every configured tool is available.
    policy: Option<Arc<Policy>>,
    audit: Option<Arc<AuditLog>>,
    metrics: Option<Arc<Metrics>>,
}

impl PgMcpServer {
    pub fn new(databases: Arc<Databases>) -> PgMcpServer {
        let tools = Arc::new(registry::tool_list(&databases));
        PgMcpServer {
            databases,
            tools,
            policy: None,
            audit: None,
            metrics: None,
        }
    }

    pub fn with_policy(mut self, policy: Option<Arc<Policy>>) -> PgMcpServer {
        self.policy = policy;
        self
    }

    pub fn with_audit(mut self, audit: Option<Arc<AuditLog>>) -> PgMcpServer {
        self.audit = audit;
        self
    }

    pub fn with_metrics(mut self, metrics: Option<Arc<Metrics>>) -> PgMcpServer {
        self.metrics = metrics;
        self
    }

    pub fn tools(&self) -> &[Tool] {
        &self.tools
    }

    /// Whether this caller may see and call `tool`. An authenticated server without a validated caller (which the
    /// authentication layer never lets through) gets nothing rather than everything.
    fn permits(&self, identity: &CallerIdentity, tool: &str) -> bool {
        match (&self.policy, identity) {
            (None, _) => true,
            (Some(policy), CallerIdentity::Token(caller)) => policy.may_use(caller, tool),
            (Some(_), _) => false,
        }
    }

    fn account(&self, record: &CallRecord<'_>) {
        if let Some(metrics) = &self.metrics {
            metrics.record_call(record.tool, record.outcome.label(), record.duration);
        }
        if let Some(audit) = &self.audit {
            audit.write(record);
        }
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

const TABLE_URI_PREFIX: &str = "pgmcp://";

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
        let identity = crate::http::request_identity(&context.extensions);
        let visible = self
            .tools
            .iter()
            .filter(|tool| self.permits(&identity, &tool.name))
            .cloned()
            .collect();
        Ok(ListToolsResult::with_all_items(visible))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.tools.iter().find(|t| t.name == name).cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let started = Instant::now();
        let identity = crate::http::request_identity(&context.extensions);
        let traceparent = request
            .meta
            .as_ref()
            .and_then(|meta| meta.get_traceparent())
            .or_else(|| context.meta.get_traceparent())
            .map(str::to_string);
        let arguments = request.arguments.unwrap_or_default();
        let known = self.tools.iter().any(|t| t.name == request.name);
        // A tool the caller may not use looks exactly like one that does not exist, so tools/call cannot be used
        // to probe what other callers can do.
        let refusal = if !known {
            Some(CallOutcome::unknown_tool())
        } else if !self.permits(&identity, &request.name) {
            Some(CallOutcome::denied())
        } else {
            None
        };
        let audited_arguments = self.audit.as_ref().map(|_| arguments.clone());
        let outcome_and_result = match refusal {
            Some(outcome) => (outcome, None),
            None => {
                let span = tracing::info_span!(
                    "tool_call",
                    tool = %request.name,
                    request_id = %context.id,
                    traceparent = traceparent.as_deref().unwrap_or(""),
                );
                let result = tools::dispatch::call_tool(
                    &self.databases,
                    &request.name,
                    arguments,
                    &context.ct,
                    crate::http::request_user(&context.extensions),
                    &identity,
                )
                .instrument(span)
                .await;
                (CallOutcome::from_result(&result), Some(result))
            }
        };
        let (outcome, result) = outcome_and_result;
        self.account(&CallRecord {
            request_id: &context.id,
            caller: &identity,
            tool: &request.name,
            arguments: audited_arguments.as_ref().unwrap_or(&JsonObject::new()),
            outcome: &outcome,
            duration: started.elapsed(),
            traceparent: traceparent.as_deref(),
        });
        match result {
            Some(Ok(answer)) => Ok(success_result(answer).into()),
            Some(Err(err)) => Ok(error_result(&err).into()),
            None => Err(McpError::invalid_params(
                format!(
                    "unknown tool `{}`; call tools/list to see the tools",
                    request.name
                ),
                None,
            )),
        }
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        let template = ResourceTemplate::new(
            format!("{TABLE_URI_PREFIX}{{profile}}/tables/{{schema}}/{{table}}"),
            "table",
        )
        .with_title("Table schema")
        .with_description(
            "The structure of one table or view (columns, keys, indexes, triggers) as JSON, the same as describe_table. \
             profile is one of the configured profiles (see list_profiles); the first is the default.",
        )
        .with_mime_type("application/json");
        Ok(ListResourceTemplatesResult::with_all_items(vec![template]))
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        let db = &self.databases.all()[0];
        let tables =
            tools::dispatch::table_names(db, crate::http::request_user(&context.extensions))
                .await
                .map_err(|e| McpError::internal_error(e.to_string(), None))?;
        let resources = tables
            .into_iter()
            .map(|(schema, table)| {
                Resource::new(
                    format!(
                        "{TABLE_URI_PREFIX}{}/tables/{schema}/{table}",
                        db.profile.name
                    ),
                    format!("{schema}.{table}"),
                )
                .with_mime_type("application/json")
            })
            .collect();
        Ok(ListResourcesResult::with_all_items(resources))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let uri = request.uri.clone();
        let parts: Vec<&str> = uri
            .strip_prefix(TABLE_URI_PREFIX)
            .map(|rest| rest.split('/').collect())
            .unwrap_or_default();
        let [profile, "tables", schema, table] = parts.as_slice() else {
            return Err(McpError::resource_not_found(
                format!(
                    "unknown resource `{uri}`; table resources look like {TABLE_URI_PREFIX}<profile>/tables/<schema>/<table>"
                ),
                None,
            ));
        };
        let user = crate::http::request_user(&context.extensions);
        let value =
            tools::dispatch::describe_for_resource(&self.databases, profile, schema, table, user)
                .await
                .map_err(|e| McpError::resource_not_found(e.to_string(), None))?;
        let contents = ResourceContents::TextResourceContents {
            uri: uri.clone(),
            mime_type: Some("application/json".into()),
            text: value.to_string(),
            meta: None,
        };
        Ok(ReadResourceResult::new(vec![contents]).into())
    }
}
