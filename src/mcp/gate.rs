//! The one door every MCP method that reveals or does something passes through: who is calling, what they ask for
//! (an [`Action`]), whether the policy allows it, and one audit line and one metrics sample for how it ended.
//! Handlers reach tools and databases only through the [`Permit`] the gate issues (the gate owns them), so a method
//! added later cannot read a database without being decided here first.

use std::sync::Arc;
use std::time::Instant;

use rmcp::model::{JsonObject, RequestMetaObject, Tool};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer};
use serde_json::{Value, json};

use crate::db::Database;
use crate::http::policy::Policy;
use crate::mcp::Databases;
use crate::telemetry::audit::{AuditLog, CallOutcome, CallRecord, CallerIdentity};
use crate::telemetry::metrics::{Metrics, UNKNOWN_TOOL};
use crate::telemetry::otel::{Otel, RequestSpan, RequestTrace, ToolSpan, statement_of};
use crate::tools::registry::ALL_TOOL_NAMES;

/// Reading a table's description reveals what `describe_table` does, so it needs that tool on the table's profile.
pub const RESOURCE_TOOL: &str = "describe_table";

/// Tools that reach no profile: a grant naming them covers them whatever its `profiles`.
const PROFILELESS_TOOLS: &[&str] = &["list_profiles"];

/// The metrics label of every curated tool's calls.
const CURATED_TOOL_LABEL: &str = "curated";

pub const TABLE_URI_PREFIX: &str = "pgmcp://";

/// What a request asks for, as the policy sees it.
pub enum Action<'a> {
    ListTools,
    CallTool {
        tool: &'a str,
        arguments: &'a JsonObject,
        /// The request's own `_meta`, whose W3C trace context the audit line carries.
        meta: Option<&'a RequestMetaObject>,
    },
    ListResources,
    ListResourceTemplates,
    ReadResource {
        uri: &'a str,
    },
}

impl Action<'_> {
    fn method(&self) -> &'static str {
        match self {
            Action::ListTools => "tools/list",
            Action::CallTool { .. } => "tools/call",
            Action::ListResources => "resources/list",
            Action::ListResourceTemplates => "resources/templates/list",
            Action::ReadResource { .. } => "resources/read",
        }
    }

    /// Listing tools or the resource template answers from memory with only what the caller may use, so it is
    /// counted but not written to the audit trail; everything that reads the database is.
    fn audited(&self) -> bool {
        !matches!(self, Action::ListTools | Action::ListResourceTemplates)
    }
}

/// What the gate let one request reach. Only the gate makes one.
pub struct Permit<'g> {
    pub caller: CallerIdentity,
    databases: &'g Databases,
    tools: Vec<&'g Tool>,
    profiles: Vec<&'g Arc<Database>>,
    table: Option<(String, String)>,
}

impl<'g> Permit<'g> {
    /// tools/list: the tools the caller may use on some profile. tools/call: the one called.
    pub fn tools(&self) -> &[&'g Tool] {
        &self.tools
    }

    /// Resource lists: the profiles whose tables the caller may read. resources/read: the one read.
    pub fn profiles(&self) -> &[&'g Arc<Database>] {
        &self.profiles
    }

    /// The schema and table of a resources/read.
    pub fn table(&self) -> Option<(&str, &str)> {
        self.table.as_ref().map(|(s, t)| (s.as_str(), t.as_str()))
    }

    /// tools/call dispatches by name and picks the profile from the same arguments the gate authorized.
    pub fn databases(&self) -> &'g Databases {
        self.databases
    }
}

/// A request the gate refused, and how the refusal is recorded.
struct Refusal {
    outcome: CallOutcome,
    error: Box<McpError>,
}

/// What a permitted request's work produced: the answer and how it ended.
pub type Answer<T> = (Result<T, McpError>, CallOutcome);

#[derive(Clone)]
pub struct Gate {
    databases: Arc<Databases>,
    tools: Vec<Tool>,
    /// Set when callers are authenticated. Without a policy (stdio, HTTP with `auth.mode = none`) everything the
    /// server offers is allowed.
    policy: Option<Arc<Policy>>,
    audit: Option<Arc<AuditLog>>,
    metrics: Option<Arc<Metrics>>,
    /// Set only while OpenTelemetry export is on.
    otel: Option<Arc<Otel>>,
}

impl Gate {
    pub fn new(databases: Arc<Databases>, tools: Vec<Tool>) -> Gate {
        Gate {
            databases,
            tools,
            policy: None,
            audit: None,
            metrics: None,
            otel: None,
        }
    }

    pub fn set_policy(&mut self, policy: Option<Arc<Policy>>) {
        self.policy = policy;
    }

    pub fn set_audit(&mut self, audit: Option<Arc<AuditLog>>) {
        self.audit = audit;
    }

    pub fn set_metrics(&mut self, metrics: Option<Arc<Metrics>>) {
        self.metrics = metrics;
    }

    pub fn set_otel(&mut self, otel: Option<Arc<Otel>>) {
        self.otel = otel;
    }

    pub fn tools(&self) -> &[Tool] {
        &self.tools
    }

    /// The one policy decision. `profile` is `None` for a tool that reaches no profile. An authenticated server
    /// without a validated caller (which the authentication layer never lets through) gets nothing.
    fn allows(&self, caller: &CallerIdentity, tool: &str, profile: Option<&str>) -> bool {
        match (&self.policy, caller) {
            (None, _) => true,
            (Some(policy), CallerIdentity::Token(caller)) => policy.may_use(caller, tool, profile),
            (Some(_), _) => false,
        }
    }

    fn allows_somewhere(&self, caller: &CallerIdentity, tool: &str) -> bool {
        if PROFILELESS_TOOLS.contains(&tool) {
            return self.allows(caller, tool, None);
        }
        self.databases
            .all()
            .iter()
            .any(|db| self.allows(caller, tool, Some(&db.profile.name)))
    }

    fn describable(&self, caller: &CallerIdentity) -> Vec<&Arc<Database>> {
        self.databases
            .all()
            .iter()
            .filter(|db| self.allows(caller, RESOURCE_TOOL, Some(&db.profile.name)))
            .collect()
    }

    fn authorize(
        &self,
        caller: CallerIdentity,
        action: &Action<'_>,
    ) -> Result<Permit<'_>, Refusal> {
        let mut permit = Permit {
            databases: &self.databases,
            tools: Vec::new(),
            profiles: Vec::new(),
            table: None,
            caller,
        };
        match action {
            Action::ListTools => {
                permit.tools = (self.tools.iter())
                    .filter(|tool| self.allows_somewhere(&permit.caller, &tool.name))
                    .collect();
            }
            Action::CallTool {
                tool, arguments, ..
            } => {
                let Some(offered) = self.tools.iter().find(|t| t.name == *tool) else {
                    return Err(unknown_tool(tool, CallOutcome::unknown_tool()));
                };
                let profile = self.called_profile(tool, arguments);
                if !self.allows(&permit.caller, tool, profile) {
                    // A tool the caller may use nowhere looks exactly like one that does not exist, so tools/call
                    // cannot probe what other callers can do; one granted elsewhere says which profile is refused.
                    return Err(match profile {
                        Some(profile) if self.allows_somewhere(&permit.caller, tool) => {
                            denied(format!(
                                "`{tool}` is not granted to this caller on profile `{profile}`"
                            ))
                        }
                        _ => unknown_tool(tool, CallOutcome::denied()),
                    });
                }
                permit.tools.push(offered);
            }
            Action::ListResources | Action::ListResourceTemplates => {
                permit.profiles = self.describable(&permit.caller);
            }
            Action::ReadResource { uri } => {
                let (profile, schema, table) = parse_table_uri(uri)?;
                let db = self.databases.select(Some(profile)).map_err(|e| Refusal {
                    outcome: CallOutcome::not_found(),
                    error: Box::new(McpError::resource_not_found(e.to_string(), None)),
                })?;
                if !self.allows(&permit.caller, RESOURCE_TOOL, Some(profile)) {
                    return Err(denied(format!(
                        "reading tables of profile `{profile}` is not granted to this caller (it needs \
                         {RESOURCE_TOOL} on that profile)"
                    )));
                }
                permit.profiles.push(db);
                permit.table = Some((schema.to_string(), table.to_string()));
            }
        }
        Ok(permit)
    }

    /// The profile a tools/call reaches, as dispatch will pick it: the `profile` argument, or the default. A
    /// `profile` that is not a string is authorized as no profile name at all, so only a grant covering every
    /// profile lets it through to the argument error.
    fn called_profile<'a>(&'a self, tool: &str, arguments: &'a JsonObject) -> Option<&'a str> {
        if PROFILELESS_TOOLS.contains(&tool) {
            return None;
        }
        // A curated tool runs on its configured profile whatever the arguments say.
        if let Some(curated) = self.databases.curated().get(tool) {
            return Some(&curated.profile);
        }
        Some(match arguments.get("profile") {
            None | Some(Value::Null) => &self.databases.all()[0].profile.name,
            Some(Value::String(name)) => name,
            Some(_) => "",
        })
    }

    /// Decides `action` for the request's caller, runs `work` with the permit when allowed, and accounts for the
    /// outcome (audit line and metrics) either way.
    pub async fn pass<'g, T, Fut>(
        &'g self,
        action: Action<'_>,
        context: &RequestContext<RoleServer>,
        work: impl FnOnce(Permit<'g>) -> Fut,
    ) -> Result<T, McpError>
    where
        Fut: Future<Output = Answer<T>>,
    {
        let started = Instant::now();
        let caller = crate::http::request_identity(&context.extensions);
        let trace = (self.otel.as_deref())
            .and_then(|otel| otel.start_request(self.request_span(&action, context, &caller)));
        let (result, outcome, caller) = match self.authorize(caller.clone(), &action) {
            Err(refusal) => (Err(*refusal.error), refusal.outcome, caller),
            Ok(permit) => {
                let tool_trace = trace
                    .as_ref()
                    .and_then(|trace| self.start_tool(trace, &action));
                let (result, outcome) = work(permit).await;
                if let Some(tool_trace) = tool_trace {
                    tool_trace.end(&outcome);
                }
                (result, outcome, caller)
            }
        };
        if let Some(trace) = trace {
            trace.end(&outcome, result.as_ref().err());
        }
        self.account(&action, context, &caller, &outcome, started);
        result
    }

    /// What the request span says about a request; built only while traces are exported.
    fn request_span<'a>(
        &'a self,
        action: &'a Action<'_>,
        context: &'a RequestContext<RoleServer>,
        caller: &'a CallerIdentity,
    ) -> RequestSpan<'a> {
        let (requested_tool, uri, meta) = match action {
            Action::CallTool { tool, meta, .. } => (Some(*tool), None, *meta),
            Action::ReadResource { uri } => (None, Some(*uri), None),
            _ => (None, None, None),
        };
        let meta_value = |pick: fn(&RequestMetaObject) -> Option<&str>| {
            meta.and_then(pick).or_else(|| pick(&context.meta))
        };
        RequestSpan {
            method: action.method(),
            offered_tool: requested_tool
                .and_then(|tool| self.tools.iter().find(|t| t.name == tool))
                .map(|tool| tool.name.as_ref()),
            requested_tool,
            uri,
            request_id: &context.id,
            traceparent: meta_value(|meta| meta.get_traceparent()),
            tracestate: meta_value(|meta| meta.get_tracestate()),
            http: context.extensions.get::<axum::http::request::Parts>(),
            caller,
        }
    }

    /// The span of a permitted tools/call, under its request's span.
    fn start_tool(
        &self,
        request: &RequestTrace,
        action: &Action<'_>,
    ) -> Option<crate::telemetry::otel::ToolTrace> {
        let Action::CallTool {
            tool, arguments, ..
        } = action
        else {
            return None;
        };
        let curated = self.databases.curated().get(tool);
        let database = (self.called_profile(tool, arguments))
            .and_then(|profile| self.databases.select(Some(profile)).ok());
        let (sql, operation) = statement_of(tool, arguments, curated.map(|c| c.sql.as_str()));
        self.otel.as_deref()?.start_tool(
            request,
            ToolSpan {
                tool,
                database: database.map(|db| db.as_ref()),
                sql,
                operation,
            },
        )
    }

    fn account(
        &self,
        action: &Action<'_>,
        context: &RequestContext<RoleServer>,
        caller: &CallerIdentity,
        outcome: &CallOutcome,
        started: Instant,
    ) {
        let duration = started.elapsed();
        if let Some(metrics) = &self.metrics {
            metrics.record_request(action.method(), outcome.label());
            if let Action::CallTool { tool, .. } = action {
                metrics.record_call(self.tool_label(tool), outcome.label(), duration);
            }
        }
        if let Some(otel) = &self.otel {
            otel.record_request(action.method(), outcome.label());
            if let Action::CallTool { tool, .. } = action {
                otel.record_call(self.tool_label(tool), outcome.label(), duration);
            }
        }
        let Some(audit) = &self.audit else {
            return;
        };
        if !action.audited() {
            return;
        }
        let (kind, tool, uri, arguments, meta) = match action {
            Action::CallTool {
                tool,
                arguments,
                meta,
            } => ("tool_call", Some(*tool), None, Some(*arguments), *meta),
            Action::ReadResource { uri } => ("resource_read", None, Some(*uri), None, None),
            _ => ("resource_list", None, None, None, None),
        };
        let traceparent = meta
            .and_then(|meta| meta.get_traceparent())
            .or_else(|| context.meta.get_traceparent());
        audit.write(&CallRecord {
            request_id: &context.id,
            caller,
            kind,
            tool,
            uri,
            arguments,
            outcome,
            duration,
            traceparent,
        });
    }

    /// Metrics keep one series per label value forever, so only tools this server offers get their own; any
    /// other requested name (unbounded input) counts as `unknown`.
    fn tool_label(&self, requested: &str) -> &'static str {
        if self.databases.curated().get(requested).is_some()
            && self.tools.iter().any(|t| t.name == requested)
        {
            // Curated names come from the config file; one series for all of them keeps the set fixed.
            return CURATED_TOOL_LABEL;
        }
        ALL_TOOL_NAMES
            .iter()
            .find(|name| **name == requested && self.tools.iter().any(|t| t.name == requested))
            .copied()
            .unwrap_or(UNKNOWN_TOOL)
    }
}

/// `pgmcp://<profile>/tables/<schema>/<table>`, or a not-found refusal saying what a table resource looks like.
fn parse_table_uri(uri: &str) -> Result<(&str, &str, &str), Refusal> {
    let parts: Vec<&str> = uri
        .strip_prefix(TABLE_URI_PREFIX)
        .map(|rest| rest.split('/').collect())
        .unwrap_or_default();
    match parts.as_slice() {
        [profile, "tables", schema, table] => Ok((profile, schema, table)),
        _ => Err(Refusal {
            outcome: CallOutcome::not_found(),
            error: Box::new(McpError::resource_not_found(
                format!(
                    "unknown resource `{uri}`; table resources look like {TABLE_URI_PREFIX}<profile>/tables/<schema>/<table>"
                ),
                None,
            )),
        }),
    }
}

fn unknown_tool(tool: &str, outcome: CallOutcome) -> Refusal {
    Refusal {
        outcome,
        error: Box::new(McpError::invalid_params(
            format!("unknown tool `{tool}`; call tools/list to see the tools"),
            None,
        )),
    }
}

/// A refusal that names what was refused (never anything behind it), with `data.error = "denied"` for clients.
fn denied(message: String) -> Refusal {
    Refusal {
        outcome: CallOutcome::denied(),
        error: Box::new(McpError::invalid_params(
            message,
            Some(json!({"error": "denied"})),
        )),
    }
}
