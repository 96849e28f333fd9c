//! The audit trail: one JSON line per tool call, resource read and resource list, on any transport, saying who
//! asked for what and how it went, refusals included. The MCP gate (`mcp::gate`) is its only writer.
//! It is opt-in (`--audit-log PATH|stderr`) because a busy agent makes many calls and the lines hold full SQL.
//! Lines are built from the call's arguments and result only; HTTP headers (and so tokens) never reach them.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use anyhow::Context;
use rmcp::model::{JsonObject, RequestId};
use serde::Serialize;

use crate::http::Caller;
use crate::tools::ToolError;
use crate::tools::dispatch::ToolAnswer;

/// Who made a call, as far as pgmcp knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallerIdentity {
    /// The user who started pgmcp on stdio.
    Local,
    /// HTTP without authentication (`auth.mode = none`).
    Anonymous,
    /// A caller identified by a validated access token.
    Token(Box<Caller>),
}

impl Serialize for CallerIdentity {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            CallerIdentity::Local => serializer.serialize_str("local"),
            CallerIdentity::Anonymous => serializer.serialize_str("anonymous"),
            CallerIdentity::Token(caller) => {
                TokenCaller::from(caller.as_ref()).serialize(serializer)
            }
        }
    }
}

/// The token claims an auditor needs to find the principal again; roles and scopes show why it was allowed.
#[derive(Serialize)]
struct TokenCaller<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    oid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tid: Option<&'a str>,
    /// `azp` (v2 tokens) or `appid` (v1 tokens): the client application.
    #[serde(skip_serializing_if = "Option::is_none")]
    azp: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    preferred_username: Option<&'a str>,
    app_only: bool,
    roles: &'a [String],
    scopes: &'a [String],
}

impl<'a> From<&'a Caller> for TokenCaller<'a> {
    fn from(caller: &'a Caller) -> Self {
        TokenCaller {
            oid: caller.oid.as_deref(),
            tid: caller.tid.as_deref(),
            azp: caller.client_app.as_deref(),
            sub: caller.subject.as_deref(),
            name: caller.name.as_deref(),
            preferred_username: caller.preferred_username.as_deref(),
            app_only: caller.app_only,
            roles: &caller.roles,
            scopes: &caller.scopes,
        }
    }
}

/// How a call ended, in the words used by both the audit line and the metrics' `outcome` label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOutcome {
    Ok {
        rows: Option<u64>,
        bytes: usize,
    },
    Failed {
        kind: &'static str,
        sqlstate: Option<String>,
    },
}

impl CallOutcome {
    /// `bytes` is the length of the answer's text block, which the client receives whatever else it gets.
    pub fn from_result(result: &Result<ToolAnswer, ToolError>) -> CallOutcome {
        match result {
            Ok(answer) => CallOutcome::Ok {
                rows: answer.rows,
                bytes: answer.text.len(),
            },
            Err(err) => CallOutcome::from_error(err),
        }
    }

    pub fn from_error(err: &ToolError) -> CallOutcome {
        CallOutcome::Failed {
            kind: error_kind(err),
            sqlstate: match err {
                ToolError::Database { sqlstate, .. } => Some(sqlstate.clone()),
                _ => None,
            },
        }
    }

    /// A call the authorization policy refused before it ran.
    pub fn denied() -> CallOutcome {
        CallOutcome::Failed {
            kind: "denied",
            sqlstate: None,
        }
    }

    pub fn unknown_tool() -> CallOutcome {
        CallOutcome::Failed {
            kind: "unknown_tool",
            sqlstate: None,
        }
    }

    /// A resource URI that names no table resource or no profile.
    pub fn not_found() -> CallOutcome {
        CallOutcome::Failed {
            kind: "not_found",
            sqlstate: None,
        }
    }

    /// A list answered with `count` items in `bytes` of JSON.
    pub fn listed(count: usize, bytes: usize) -> CallOutcome {
        CallOutcome::Ok {
            rows: Some(count as u64),
            bytes,
        }
    }

    /// `ok` or the error kind.
    pub fn label(&self) -> &'static str {
        match self {
            CallOutcome::Ok { .. } => "ok",
            CallOutcome::Failed { kind, .. } => kind,
        }
    }
}

fn error_kind(err: &ToolError) -> &'static str {
    match err {
        ToolError::Database { .. } => "database",
        ToolError::Rejected { .. } => "rejected",
        ToolError::InvalidArgument { .. } => "invalid_argument",
        ToolError::Timeout { .. } => "timeout",
        ToolError::Unavailable { .. } => "unavailable",
        ToolError::Busy { .. } => "busy",
        ToolError::CallerLogin { .. } => "caller_login",
    }
}

/// Everything one audit line says about a request.
pub struct CallRecord<'a> {
    pub request_id: &'a RequestId,
    pub caller: &'a CallerIdentity,
    /// `tool_call`, `resource_read` or `resource_list`.
    pub kind: &'static str,
    /// The tool asked for, as requested (also when no such tool exists).
    pub tool: Option<&'a str>,
    /// The resource asked for, as requested.
    pub uri: Option<&'a str>,
    pub arguments: Option<&'a JsonObject>,
    pub outcome: &'a CallOutcome,
    pub duration: std::time::Duration,
    /// W3C trace context from the request's `_meta`, so a line can be joined with the client's trace.
    pub traceparent: Option<&'a str>,
}

#[derive(Serialize)]
struct AuditLine<'a> {
    time: String,
    kind: &'static str,
    request_id: &'a RequestId,
    caller: &'a CallerIdentity,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uri: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    arguments: Option<&'a JsonObject>,
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sqlstate: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rows: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes: Option<usize>,
    duration_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    traceparent: Option<&'a str>,
}

impl CallRecord<'_> {
    pub fn to_json_line(&self) -> String {
        let (outcome, error_kind, sqlstate, rows, bytes) = match self.outcome {
            CallOutcome::Ok { rows, bytes } => ("ok", None, None, *rows, Some(*bytes)),
            CallOutcome::Failed { kind, sqlstate } => {
                ("error", Some(*kind), sqlstate.as_deref(), None, None)
            }
        };
        let line = AuditLine {
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            kind: self.kind,
            request_id: self.request_id,
            caller: self.caller,
            tool: self.tool,
            uri: self.uri,
            arguments: self.arguments,
            outcome,
            error_kind,
            sqlstate,
            rows,
            bytes,
            duration_ms: (self.duration.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0,
            traceparent: self.traceparent,
        };
        serde_json::to_string(&line).unwrap_or_else(|_| format!("{{\"kind\":\"{}\"}}", self.kind))
    }
}

enum Sink {
    Stderr,
    File(std::fs::File),
}

/// Where audit lines go. Each line is written with one call so concurrent calls never interleave.
pub struct AuditLog {
    sink: Mutex<Sink>,
}

impl AuditLog {
    /// `stderr`, or a file path opened for appending (created if missing).
    pub fn open(target: &str) -> anyhow::Result<AuditLog> {
        let sink = if target == "stderr" || target == "-" {
            Sink::Stderr
        } else {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(Path::new(target))
                .with_context(|| {
                    format!("invalid `--audit-log` = \"{target}\": cannot open the file for appending — give a writable path or `stderr`")
                })?;
            Sink::File(file)
        };
        Ok(AuditLog {
            sink: Mutex::new(sink),
        })
    }

    pub fn write(&self, record: &CallRecord<'_>) {
        let mut line = record.to_json_line();
        line.push('\n');
        let mut sink = match self.sink.lock() {
            Ok(sink) => sink,
            Err(poisoned) => poisoned.into_inner(),
        };
        let written = match &mut *sink {
            Sink::Stderr => std::io::stderr().lock().write_all(line.as_bytes()),
            Sink::File(file) => file.write_all(line.as_bytes()),
        };
        if let Err(err) = written {
            tracing::warn!(error = %err, "could not write an audit line");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn line(caller: CallerIdentity, outcome: CallOutcome) -> Value {
        let arguments = json!({"sql": "SELECT 1"}).as_object().cloned().unwrap();
        let record = CallRecord {
            request_id: &RequestId::Number(7),
            caller: &caller,
            kind: "tool_call",
            tool: Some("execute_query"),
            uri: None,
            arguments: Some(&arguments),
            outcome: &outcome,
            duration: std::time::Duration::from_micros(1500),
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01"),
        };
        serde_json::from_str(&record.to_json_line()).unwrap()
    }

    #[test]
    fn successful_call_line_has_rows_bytes_and_trace() {
        let value = json!({"columns": [], "rows": [[1]], "row_count": 1, "truncated": false});
        let outcome = CallOutcome::from_result(&Ok(ToolAnswer::rows(value.to_string(), 1)));
        let line = line(CallerIdentity::Local, outcome);
        assert_eq!(line["caller"], "local");
        assert_eq!(line["outcome"], "ok");
        assert_eq!(line["rows"], 1);
        assert_eq!(line["bytes"], value.to_string().len());
        assert_eq!(line["request_id"], 7);
        assert_eq!(line["duration_ms"], 1.5);
        assert_eq!(line["arguments"]["sql"], "SELECT 1");
        assert!(line["traceparent"].as_str().unwrap().starts_with("00-"));
    }

    #[test]
    fn failed_call_line_has_kind_and_sqlstate() {
        let err = ToolError::Database {
            sqlstate: "42P01".into(),
            message: "relation does not exist".into(),
            detail: None,
            hint: None,
            position: None,
        };
        let caller = Caller {
            oid: Some("o-1".into()),
            tid: Some("t-1".into()),
            client_app: Some("app-1".into()),
            roles: vec!["MCP.Access".into()],
            app_only: true,
            ..Caller::default()
        };
        let line = line(
            CallerIdentity::Token(Box::new(caller)),
            CallOutcome::from_result(&Err(err)),
        );
        assert_eq!(line["outcome"], "error");
        assert_eq!(line["error_kind"], "database");
        assert_eq!(line["sqlstate"], "42P01");
        assert_eq!(line["caller"]["oid"], "o-1");
        assert_eq!(line["caller"]["azp"], "app-1");
        assert!(line.get("rows").is_none());
    }

    #[test]
    fn denied_resource_read_line_names_the_uri_and_nothing_read() {
        let record = CallRecord {
            request_id: &RequestId::Number(9),
            caller: &CallerIdentity::Anonymous,
            kind: "resource_read",
            tool: None,
            uri: Some("pgmcp://hr/tables/public/salaries"),
            arguments: None,
            outcome: &CallOutcome::denied(),
            duration: std::time::Duration::from_micros(20),
            traceparent: None,
        };
        let line: Value = serde_json::from_str(&record.to_json_line()).unwrap();
        assert_eq!(line["kind"], "resource_read");
        assert_eq!(line["uri"], "pgmcp://hr/tables/public/salaries");
        assert_eq!(line["outcome"], "error");
        assert_eq!(line["error_kind"], "denied");
        for absent in ["tool", "arguments", "rows", "bytes", "traceparent"] {
            assert!(line.get(absent).is_none(), "{absent}: {line}");
        }
    }
}
