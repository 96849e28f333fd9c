//! The two spans pgmcp makes. A request span (kind SERVER) per MCP request that passes the gate, named and
//! attributed after OpenTelemetry's MCP conventions; its parent is the caller's trace context from the request's
//! `_meta` (`traceparent`, `tracestate`), else from the HTTP `traceparent` header; when both are present and
//! differ, the header's context is linked. Under it, a tool span (kind CLIENT when the tool reaches a database)
//! per tools/call, with the database conventions' attributes.
//!
//! What a span may carry: names pgmcp chose (tools, profiles, outcomes), the caller's identifiers as the audit
//! line has them, the database's address and name, and the SQL text only when `query_text` is on. Never a token,
//! a password, a connection string or an error message (database messages can quote row values).

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{Link, Span as _, SpanKind, Status, TraceContextExt as _, Tracer as _};
use opentelemetry::{Array, Context, KeyValue, StringValue, Value};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use rmcp::ErrorData as McpError;
use rmcp::model::{JsonObject, RequestId};

use super::Otel;
use crate::db::Database;
use crate::telemetry::audit::{CallOutcome, CallerIdentity};

/// Longest SQL text put on a span; the rest is cut (at a character boundary).
const MAX_QUERY_TEXT_BYTES: usize = 4096;

/// What is known of a request when it arrives.
pub struct RequestSpan<'a> {
    /// `tools/call`, `resources/read`, …
    pub method: &'static str,
    /// The called tool's name when this server offers it: few such names exist, so it may name the span.
    pub offered_tool: Option<&'a str>,
    /// The tool as requested, offered or not.
    pub requested_tool: Option<&'a str>,
    pub uri: Option<&'a str>,
    pub request_id: &'a RequestId,
    /// W3C trace context from the request's `_meta`.
    pub traceparent: Option<&'a str>,
    pub tracestate: Option<&'a str>,
    /// The HTTP request that carried it; `None` on stdio.
    pub http: Option<&'a axum::http::request::Parts>,
    pub caller: &'a CallerIdentity,
}

/// A request span in flight.
pub struct RequestTrace {
    /// The caller's context with the request span in it: tool spans start from it.
    cx: Context,
}

/// What is known of a permitted tool call when it starts.
pub struct ToolSpan<'a> {
    pub tool: &'a str,
    /// The profile's database, for tools that reach one.
    pub database: Option<&'a Database>,
    /// The SQL that runs as the caller or the config wrote it, if the tool takes SQL.
    pub sql: Option<&'a str>,
    /// `db.operation.name`, when one command names what the tool does.
    pub operation: Option<&'static str>,
}

/// A tool span in flight.
pub struct ToolTrace {
    span: opentelemetry_sdk::trace::Span,
}

/// The `_meta` keys SEP-414 reserves, as a carrier the W3C propagator reads.
struct MetaCarrier<'a> {
    traceparent: Option<&'a str>,
    tracestate: Option<&'a str>,
}

impl Extractor for MetaCarrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            "traceparent" => self.traceparent,
            "tracestate" => self.tracestate,
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent", "tracestate"]
    }
}

/// The remote context a carrier holds, if it holds a valid one.
fn remote_context(carrier: &dyn Extractor) -> Option<Context> {
    let cx = TraceContextPropagator::new().extract_with_context(&Context::new(), carrier);
    cx.span().span_context().is_valid().then_some(cx)
}

impl Otel {
    /// Starts the span of one request; `None` when traces are not exported.
    pub fn start_request(&self, request: RequestSpan<'_>) -> Option<RequestTrace> {
        let tracer = self.tracer()?;
        let from_meta = request.traceparent.and_then(|traceparent| {
            remote_context(&MetaCarrier {
                traceparent: Some(traceparent),
                tracestate: request.tracestate,
            })
        });
        let from_header = request
            .http
            .and_then(|parts| remote_context(&opentelemetry_http::HeaderExtractor(&parts.headers)));
        let (parent, link) = match (from_meta, from_header) {
            (Some(meta), Some(header))
                if meta.span().span_context() != header.span().span_context() =>
            {
                let link = Link::with_context(header.span().span_context().clone());
                (meta, Some(link))
            }
            (Some(meta), _) => (meta, None),
            (None, Some(header)) => (header, None),
            (None, None) => (Context::new(), None),
        };
        let name = match request.offered_tool {
            Some(tool) => format!("{} {tool}", request.method),
            None => request.method.to_string(),
        };
        let mut attributes = vec![KeyValue::new("mcp.method.name", request.method)];
        if let Some(tool) = request.requested_tool {
            attributes.push(KeyValue::new("gen_ai.tool.name", tool.to_string()));
            attributes.push(KeyValue::new("gen_ai.operation.name", "execute_tool"));
        }
        if let Some(uri) = request.uri {
            attributes.push(KeyValue::new("mcp.resource.uri", uri.to_string()));
        }
        attributes.push(KeyValue::new(
            "jsonrpc.request.id",
            request.request_id.to_string(),
        ));
        match request.http {
            None => attributes.push(KeyValue::new("network.transport", "pipe")),
            Some(parts) => {
                attributes.push(KeyValue::new("network.transport", "tcp"));
                attributes.push(KeyValue::new("network.protocol.name", "http"));
                let header = |name: &str| {
                    (parts.headers.get(name))
                        .and_then(|value| value.to_str().ok())
                        .map(str::to_string)
                };
                if let Some(session) = header("mcp-session-id") {
                    attributes.push(KeyValue::new("mcp.session.id", session));
                }
                if let Some(version) = header("mcp-protocol-version") {
                    attributes.push(KeyValue::new("mcp.protocol.version", version));
                }
            }
        }
        caller_attributes(request.caller, &mut attributes);
        let builder = tracer
            .span_builder(name)
            .with_kind(SpanKind::Server)
            .with_attributes(attributes)
            .with_links(link.into_iter().collect());
        let span = tracer.build_with_context(builder, &parent);
        Some(RequestTrace {
            cx: parent.with_span(span),
        })
    }

    /// Starts the span of a permitted tool call, as a child of its request's span.
    pub fn start_tool(&self, request: &RequestTrace, call: ToolSpan<'_>) -> Option<ToolTrace> {
        let tracer = self.tracer()?;
        let mut attributes = vec![KeyValue::new("gen_ai.tool.name", call.tool.to_string())];
        let mut target = None;
        if let Some(db) = call.database {
            let conn = &db.profile.conn;
            attributes.push(KeyValue::new("db.system.name", "postgresql"));
            attributes.push(KeyValue::new("pgmcp.profile", db.profile.name.clone()));
            if let Some(dbname) = &conn.dbname {
                attributes.push(KeyValue::new("db.namespace", dbname.clone()));
                target = Some(dbname.clone());
            }
            if let Some(host) = conn.hosts.first() {
                attributes.push(KeyValue::new("server.address", host.clone()));
                let port = conn.ports.first().copied().unwrap_or(5432);
                attributes.push(KeyValue::new("server.port", i64::from(port)));
            }
            if let Some(operation) = call.operation {
                attributes.push(KeyValue::new("db.operation.name", operation));
            }
            if self.query_text
                && let Some(sql) = call.sql
            {
                attributes.push(KeyValue::new("db.query.text", clipped(sql).to_string()));
            }
        }
        // The database conventions' name: `{operation} {namespace}`, else either alone, else the tool.
        let name = match (call.operation, target) {
            (Some(operation), Some(target)) => format!("{operation} {target}"),
            (Some(operation), None) => operation.to_string(),
            (None, Some(target)) => target,
            (None, None) => call.tool.to_string(),
        };
        let kind = match call.database {
            Some(_) => SpanKind::Client,
            None => SpanKind::Internal,
        };
        let builder = tracer
            .span_builder(name)
            .with_kind(kind)
            .with_attributes(attributes);
        Some(ToolTrace {
            span: tracer.build_with_context(builder, &request.cx),
        })
    }
}

impl RequestTrace {
    /// Ends the span with how the request went: `refusal` is the JSON-RPC error the caller got, if any.
    pub fn end(self, outcome: &CallOutcome, refusal: Option<&McpError>) {
        let span = self.cx.span();
        span.set_attribute(KeyValue::new("pgmcp.outcome", outcome.label()));
        let error_type = match (refusal, outcome) {
            (Some(error), _) => {
                let code = error.code.0.to_string();
                span.set_attribute(KeyValue::new("rpc.response.status_code", code.clone()));
                Some(code)
            }
            // The call ran and its result says it failed (`isError`).
            (None, CallOutcome::Failed { .. }) => Some("tool_error".to_string()),
            (None, CallOutcome::Ok { .. }) => None,
        };
        if let Some(error_type) = error_type {
            span.set_attribute(KeyValue::new("error.type", error_type.clone()));
            span.set_status(Status::error(error_type));
        }
        span.end();
    }
}

impl ToolTrace {
    pub fn end(mut self, outcome: &CallOutcome) {
        match outcome {
            CallOutcome::Ok { rows, .. } => {
                if let Some(rows) = rows {
                    self.span.set_attribute(KeyValue::new(
                        "db.response.returned_rows",
                        i64::try_from(*rows).unwrap_or(i64::MAX),
                    ));
                }
            }
            CallOutcome::Failed { kind, sqlstate } => {
                self.span.set_attribute(KeyValue::new("error.type", *kind));
                if let Some(sqlstate) = sqlstate {
                    self.span
                        .set_attribute(KeyValue::new("db.response.status_code", sqlstate.clone()));
                }
                self.span.set_status(Status::error(*kind));
            }
        }
        self.span.end();
    }
}

/// The caller as the audit line identifies them: who (`local`, `anonymous` or a token's principal) and, for a
/// token, its object, tenant, client application, subject, roles and scopes. `enduser.id` is the principal's
/// object id (or subject), which Azure Monitor shows as the authenticated user. Display names and user names
/// are personal data that the ids already pin down, so they stay in the audit trail.
fn caller_attributes(caller: &CallerIdentity, attributes: &mut Vec<KeyValue>) {
    let token = match caller {
        CallerIdentity::Local => {
            attributes.push(KeyValue::new("pgmcp.caller", "local"));
            return;
        }
        CallerIdentity::Anonymous => {
            attributes.push(KeyValue::new("pgmcp.caller", "anonymous"));
            return;
        }
        CallerIdentity::Token(token) => token,
    };
    attributes.push(KeyValue::new("pgmcp.caller", "token"));
    if let Some(id) = token.oid.as_ref().or(token.subject.as_ref()) {
        attributes.push(KeyValue::new("enduser.id", id.clone()));
    }
    for (key, value) in [
        ("pgmcp.caller.oid", &token.oid),
        ("pgmcp.caller.tid", &token.tid),
        ("pgmcp.caller.azp", &token.client_app),
        ("pgmcp.caller.sub", &token.subject),
    ] {
        if let Some(value) = value {
            attributes.push(KeyValue::new(key, value.clone()));
        }
    }
    attributes.push(KeyValue::new("pgmcp.caller.app_only", token.app_only));
    let list = |items: &[String]| {
        Value::Array(Array::String(
            items
                .iter()
                .map(|item| StringValue::from(item.clone()))
                .collect(),
        ))
    };
    if !token.roles.is_empty() {
        attributes.push(KeyValue::new("pgmcp.caller.roles", list(&token.roles)));
    }
    if !token.scopes.is_empty() {
        attributes.push(KeyValue::new("pgmcp.caller.scopes", list(&token.scopes)));
    }
}

fn clipped(sql: &str) -> &str {
    if sql.len() <= MAX_QUERY_TEXT_BYTES {
        return sql;
    }
    let mut end = MAX_QUERY_TEXT_BYTES;
    while !sql.is_char_boundary(end) {
        end -= 1;
    }
    &sql[..end]
}

/// The SQL a tool runs and the command that names it, from the call's arguments (or a curated tool's
/// statement): execute_query and execute_write run the caller's SQL, explain_query explains it, read_table
/// selects. Catalog and DBA tools run several statements of pgmcp's own, so no single command names them.
pub fn statement_of<'a>(
    tool: &str,
    arguments: &'a JsonObject,
    curated_sql: Option<&'a str>,
) -> (Option<&'a str>, Option<&'static str>) {
    if let Some(sql) = curated_sql {
        return (Some(sql), first_command(sql));
    }
    let sql = arguments.get("sql").and_then(|value| value.as_str());
    match tool {
        "execute_query" | "execute_write" => (sql, sql.and_then(first_command)),
        "explain_query" => (sql, Some("EXPLAIN")),
        "read_table" => (None, Some("SELECT")),
        _ => (None, None),
    }
}

/// Commands a statement can open with, as `db.operation.name` writes them. `WITH` is left out: what follows it
/// may be a SELECT or a data-modifying statement, and the conventions ask for no name rather than a wrong one.
const COMMANDS: &[&str] = &[
    "SELECT", "INSERT", "UPDATE", "DELETE", "MERGE", "VALUES", "TABLE", "SHOW", "EXPLAIN",
    "CREATE", "ALTER", "DROP", "TRUNCATE", "COMMENT", "GRANT", "REVOKE", "CALL", "COPY", "REFRESH",
    "ANALYZE", "VACUUM", "REINDEX", "CLUSTER",
];

/// The statement's first keyword, after leading blanks, comments and opening parentheses.
fn first_command(sql: &str) -> Option<&'static str> {
    let mut rest = sql;
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == '(');
        if let Some(comment) = rest.strip_prefix("--") {
            rest = comment.split_once('\n').map_or("", |(_, after)| after);
        } else if let Some(comment) = rest.strip_prefix("/*") {
            rest = skip_block_comment(comment)?;
        } else {
            break;
        }
    }
    let word_end = rest
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(rest.len());
    let word = &rest[..word_end];
    COMMANDS
        .iter()
        .find(|command| command.eq_ignore_ascii_case(word))
        .copied()
}

/// What follows a block comment (PostgreSQL's nest), given the text after its opening `/*`.
fn skip_block_comment(mut text: &str) -> Option<&str> {
    let mut depth = 1;
    while depth > 0 {
        let close = text.find("*/")?;
        match text.find("/*") {
            Some(open) if open < close => {
                depth += 1;
                text = &text[open + 2..];
            }
            _ => {
                depth -= 1;
                text = &text[close + 2..];
            }
        }
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_first_command_names_the_operation() {
        assert_eq!(first_command("select 1"), Some("SELECT"));
        assert_eq!(
            first_command("  -- why\n /* a /* nested */ note */ (SELECT 1) UNION SELECT 2"),
            Some("SELECT")
        );
        assert_eq!(first_command("Insert into t values (1)"), Some("INSERT"));
        assert_eq!(first_command("WITH x AS (DELETE FROM t) SELECT 1"), None);
        assert_eq!(first_command("/* unterminated"), None);
        assert_eq!(first_command(""), None);
    }

    #[test]
    fn statements_come_from_the_tools_that_take_sql() {
        let arguments = json!({"sql": "SELECT 1", "schema": "public"})
            .as_object()
            .cloned()
            .unwrap();
        assert_eq!(
            statement_of("execute_query", &arguments, None),
            (Some("SELECT 1"), Some("SELECT"))
        );
        assert_eq!(
            statement_of("explain_query", &arguments, None),
            (Some("SELECT 1"), Some("EXPLAIN"))
        );
        assert_eq!(
            statement_of("read_table", &arguments, None),
            (None, Some("SELECT"))
        );
        assert_eq!(statement_of("list_tables", &arguments, None), (None, None));
        assert_eq!(
            statement_of("orders_by_customer", &arguments, Some("DELETE FROM t")),
            (Some("DELETE FROM t"), Some("DELETE"))
        );
    }

    #[test]
    fn query_text_is_clipped_at_a_character_boundary() {
        let long = "é".repeat(MAX_QUERY_TEXT_BYTES);
        let clipped = clipped(&long);
        assert!(clipped.len() <= MAX_QUERY_TEXT_BYTES && clipped.len() >= MAX_QUERY_TEXT_BYTES - 1);
        assert_eq!(super::clipped("SELECT 1"), "SELECT 1");
    }
}
