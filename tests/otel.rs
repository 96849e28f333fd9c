//! OpenTelemetry export through the real binary: pgmcp sends OTLP/HTTP to a loopback receiver in this test, which
//! decodes the protobuf messages with the OpenTelemetry project's own definitions (`opentelemetry-proto`). The
//! spans must continue the caller's trace (from `_meta.traceparent` on stdio and HTTP, from the `traceparent`
//! header on HTTP), carry the semantic-convention attributes and the caller's identity, nest tool calls under
//! requests, and hold no SQL unless asked to and never a token, password or connection string. Without an
//! endpoint nothing is set up at all.

mod common;
mod http_support;
mod oidc_support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::Uri;
use common::{Era, cluster};
use oidc_support::pgmcp_http::PgmcpHttp;
use oidc_support::{AGENT_APP, AGENT_OID, Provider, ROLE, TENANT, entra_clients};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{Span, span, status};
use prost::Message;
use rmcp::model::{CallToolRequestParams, RequestMetaObject};
use serde_json::json;

const PASSWORD: &str = "s3cret-otel-pw";
/// A value in a query's text: it is data, and must reach no span unless the SQL switch is on.
const LITERAL: &str = "otel-literal-7f3a";

/// Everything the receiver was sent, by path.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(String, Bytes)>>>);

/// A loopback OTLP/HTTP receiver: it answers every POST with 200 and keeps the body.
struct Receiver {
    base: String,
    received: Received,
}

impl Receiver {
    async fn start() -> Receiver {
        let received = Received::default();
        let sink = received.clone();
        let app = axum::Router::new().fallback(move |uri: Uri, body: Bytes| {
            let sink = sink.clone();
            async move {
                sink.0.lock().unwrap().push((uri.path().to_string(), body));
                // An empty ExportTraceServiceResponse / ExportMetricsServiceResponse.
                ([("content-type", "application/x-protobuf")], Bytes::new())
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { base, received }
    }

    fn bodies(&self, path: &str) -> Vec<Bytes> {
        (self.received.0.lock().unwrap().iter())
            .filter(|(at, _)| at == path)
            .map(|(_, body)| body.clone())
            .collect()
    }

    fn requests(&self) -> usize {
        self.received.0.lock().unwrap().len()
    }

    fn traces(&self) -> Vec<ExportTraceServiceRequest> {
        (self.bodies("/v1/traces").iter())
            .map(|body| {
                ExportTraceServiceRequest::decode(body.as_ref()).expect("OTLP trace protobuf")
            })
            .collect()
    }

    fn spans(&self) -> Vec<Span> {
        (self.traces().into_iter())
            .flat_map(|request| request.resource_spans)
            .flat_map(|resource| resource.scope_spans)
            .flat_map(|scope| scope.spans)
            .collect()
    }

    fn metric_names(&self) -> Vec<String> {
        (self.bodies("/v1/metrics").iter())
            .map(|body| {
                ExportMetricsServiceRequest::decode(body.as_ref()).expect("OTLP metrics protobuf")
            })
            .flat_map(|request| request.resource_metrics)
            .flat_map(|resource| resource.scope_metrics)
            .flat_map(|scope| scope.metrics)
            .map(|metric| metric.name)
            .collect()
    }

    /// Waits (at most 20 s) until `ready` holds for the spans received so far.
    async fn wait_for_spans(&self, ready: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let spans = self.spans();
            if ready(&spans) {
                return spans;
            }
            assert!(
                Instant::now() < deadline,
                "the spans did not arrive within 20 s; received: {:#?}",
                spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every byte received, for scanning: protobuf keeps strings as plain UTF-8.
    fn raw(&self) -> String {
        (self.received.0.lock().unwrap().iter())
            .map(|(_, body)| String::from_utf8_lossy(body).into_owned())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn value_text(value: &AnyValue) -> String {
    match &value.value {
        Some(any_value::Value::StringValue(text)) => text.clone(),
        Some(any_value::Value::IntValue(n)) => n.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::ArrayValue(array)) => (array.values.iter())
            .map(value_text)
            .collect::<Vec<_>>()
            .join(","),
        other => format!("{other:?}"),
    }
}

fn attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    (attributes.iter())
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .map(value_text)
}

fn attr(span: &Span, key: &str) -> Option<String> {
    attribute(&span.attributes, key)
}

fn named<'a>(spans: &'a [Span], name: &str) -> Vec<&'a Span> {
    spans.iter().filter(|s| s.name == name).collect()
}

fn child_of<'a>(spans: &'a [Span], parent: &Span) -> Vec<&'a Span> {
    (spans.iter())
        .filter(|s| s.parent_span_id == parent.span_id && s.trace_id == parent.trace_id)
        .collect()
}

fn url_with_password() -> String {
    let c = cluster();
    format!(
        "postgresql://reader:{PASSWORD}@{}:{}/app",
        c.host(),
        c.port()
    )
}

fn call_params(
    tool: &str,
    arguments: serde_json::Value,
    traceparent: Option<&str>,
) -> CallToolRequestParams {
    let mut params = CallToolRequestParams::new(tool.to_string());
    params.arguments = arguments.as_object().cloned();
    if let Some(traceparent) = traceparent {
        let mut meta = RequestMetaObject::new();
        meta.set_traceparent(traceparent);
        meta.set_tracestate("vendor=opaque");
        params.meta = Some(meta);
    }
    params
}

/// The variables that could point pgmcp at a collector, emptied (empty means unset), so a machine's own
/// settings cannot leak into a test.
const NO_INHERITED_ENDPOINT: [(&str, &str); 3] = [
    ("OTEL_EXPORTER_OTLP_ENDPOINT", ""),
    ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", ""),
    ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", ""),
];

const META_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const META_PARENT: &str = "00f067aa0ba902b7";

#[tokio::test]
async fn stdio_spans_continue_the_meta_trace_and_flush_on_shutdown() {
    let receiver = Receiver::start().await;
    let url = url_with_password();
    let mut env = NO_INHERITED_ENDPOINT.to_vec();
    env.extend([
        ("DATABASE_URL", url.as_str()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.base.as_str()),
        ("OTEL_SERVICE_NAME", "pgmcp-under-test"),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment.name=test%20bench",
        ),
        // Timers that never fire during the test: whatever arrives was sent by the shutdown flush.
        ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "600000"),
    ]);
    let (client, _pid) = common::spawn_with_pid(&["serve"], &env, Era::Legacy).await;
    let traceparent = format!("00-{META_TRACE}-{META_PARENT}-01");
    let sql = format!("SELECT '{LITERAL}' AS marker UNION ALL SELECT 'two'");
    client
        .call_tool(call_params(
            "execute_query",
            json!({ "sql": sql }),
            Some(&traceparent),
        ))
        .await
        .expect("traced call");
    common::call_err(
        &client,
        "execute_query",
        json!({"sql": "SELECT * FROM no_such_table"}),
    )
    .await;
    common::call_ok(&client, "list_tables", json!({})).await;
    // Closing stdin ends the server, which must deliver what is queued before it exits.
    client.cancel().await.ok();
    let spans = receiver.wait_for_spans(|spans| spans.len() >= 6).await;

    let traced = named(&spans, "tools/call execute_query");
    assert_eq!(traced.len(), 2, "{spans:#?}");
    let request = (traced.iter())
        .find(|s| hex(&s.trace_id) == META_TRACE)
        .expect("the _meta call continues the caller's trace");
    assert_eq!(hex(&request.parent_span_id), META_PARENT);
    assert_eq!(request.kind, span::SpanKind::Server as i32);
    assert_eq!(
        attr(request, "mcp.method.name").as_deref(),
        Some("tools/call")
    );
    assert_eq!(
        attr(request, "gen_ai.tool.name").as_deref(),
        Some("execute_query")
    );
    assert_eq!(
        attr(request, "gen_ai.operation.name").as_deref(),
        Some("execute_tool")
    );
    assert_eq!(attr(request, "network.transport").as_deref(), Some("pipe"));
    assert_eq!(attr(request, "pgmcp.caller").as_deref(), Some("local"));
    assert_eq!(attr(request, "pgmcp.outcome").as_deref(), Some("ok"));
    assert!(attr(request, "jsonrpc.request.id").is_some());
    assert_eq!(request.trace_state, "vendor=opaque");

    let tool = child_of(&spans, request);
    assert_eq!(tool.len(), 1, "one tool span under the request: {spans:#?}");
    let tool = tool[0];
    assert_eq!(tool.name, "SELECT app");
    assert_eq!(tool.kind, span::SpanKind::Client as i32);
    assert_eq!(attr(tool, "db.system.name").as_deref(), Some("postgresql"));
    assert_eq!(attr(tool, "db.namespace").as_deref(), Some("app"));
    assert_eq!(attr(tool, "db.operation.name").as_deref(), Some("SELECT"));
    assert_eq!(
        attr(tool, "server.address"),
        Some(cluster().host().to_string())
    );
    assert_eq!(
        attr(tool, "server.port"),
        Some(cluster().port().to_string())
    );
    assert_eq!(
        attr(tool, "db.response.returned_rows").as_deref(),
        Some("2")
    );
    assert_eq!(
        attr(tool, "db.query.text"),
        None,
        "SQL text is off by default"
    );

    // The failed call: a root of its own, the tool's error on the tool span, `tool_error` on the request.
    let failed = (traced.iter())
        .find(|s| hex(&s.trace_id) != META_TRACE)
        .expect("the second execute_query");
    assert!(
        failed.parent_span_id.is_empty(),
        "no traceparent, no parent"
    );
    assert_eq!(attr(failed, "error.type").as_deref(), Some("tool_error"));
    assert_eq!(
        failed.status.as_ref().map(|s| s.code),
        Some(status::StatusCode::Error as i32)
    );
    let failed_tool = child_of(&spans, failed);
    assert_eq!(failed_tool.len(), 1);
    assert_eq!(
        attr(failed_tool[0], "error.type").as_deref(),
        Some("database")
    );
    assert_eq!(
        attr(failed_tool[0], "db.response.status_code").as_deref(),
        Some("42P01")
    );

    // A catalog tool: no single command names it, so the span is named after the database.
    let catalog = named(&spans, "tools/call list_tables");
    assert_eq!(catalog.len(), 1);
    let catalog_tool = child_of(&spans, catalog[0]);
    assert_eq!(catalog_tool.len(), 1);
    assert_eq!(catalog_tool[0].name, "app");
    assert_eq!(attr(catalog_tool[0], "db.operation.name"), None);

    let resource = (receiver.traces().into_iter())
        .flat_map(|r| r.resource_spans)
        .find_map(|r| r.resource)
        .expect("a resource");
    assert_eq!(
        attribute(&resource.attributes, "service.name").as_deref(),
        Some("pgmcp-under-test")
    );
    assert_eq!(
        attribute(&resource.attributes, "deployment.environment.name").as_deref(),
        Some("test bench")
    );

    // The metrics were flushed on shutdown too.
    let metrics = receiver.metric_names();
    for name in [
        "pgmcp.mcp.requests",
        "pgmcp.tool.calls",
        "pgmcp.tool.call.duration",
        "pgmcp.pool.connections.idle",
    ] {
        assert!(
            metrics.iter().any(|m| m == name),
            "{name} missing from {metrics:?}"
        );
    }

    let raw = receiver.raw();
    for secret in [PASSWORD, LITERAL, "postgresql://", "no_such_table"] {
        assert!(!raw.contains(secret), "`{secret}` was exported");
    }
}

#[tokio::test]
async fn sql_text_is_exported_only_when_switched_on() {
    let receiver = Receiver::start().await;
    let url = common::reader_url();
    let mut env = NO_INHERITED_ENDPOINT.to_vec();
    env.push(("OTEL_METRICS_EXPORTER", "none"));
    let traces = format!("{}/v1/traces", receiver.base);
    env.push(("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", traces.as_str()));
    let client = common::spawn(
        &["serve", "--database-url", &url, "--otel-query-text"],
        &env,
        Era::Stateless,
    )
    .await;
    let sql = format!("SELECT '{LITERAL}' AS marker");
    common::call_ok(&client, "execute_query", json!({ "sql": sql })).await;
    client.cancel().await.ok();
    let spans = receiver.wait_for_spans(|spans| spans.len() >= 2).await;
    let tool = spans
        .iter()
        .find(|s| s.name == "SELECT app")
        .expect("the tool span");
    assert_eq!(attr(tool, "db.query.text"), Some(sql));
    assert!(
        receiver.bodies("/v1/metrics").is_empty(),
        "OTEL_METRICS_EXPORTER=none exports no metrics"
    );
}

#[tokio::test]
async fn http_spans_continue_the_header_trace_carry_the_caller_and_no_token() {
    let provider = Provider::start(entra_clients("{base}"));
    let receiver = Receiver::start().await;
    let env: Vec<(&str, String)> = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.base.clone()),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", String::new()),
        ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", String::new()),
        // Short timers: this server is killed, not stopped, when the test ends.
        ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "300".into()),
    ];
    let url = url_with_password();
    let server = PgmcpHttp::start_entra_with_env(&url, &provider.base, &[], &env);
    let token = provider.token("v2-app").await;
    let client = http_support::http();
    let call = |id: u32, header: Option<&str>, meta: Option<&str>| {
        let mut params =
            json!({"name": "execute_query", "arguments": {"sql": format!("SELECT '{LITERAL}'")}});
        if let Some(meta) = meta {
            params["_meta"] = json!({"traceparent": meta});
        }
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params});
        let mut request = http_support::mcp_post(&client, &server.mcp_url(), body.to_string())
            .bearer_auth(&token);
        if let Some(header) = header {
            request = request.header("traceparent", header);
        }
        request.send()
    };
    let header_trace = "0af7651916cd43dd8448eb211c80319c";
    let header_parent = "b7ad6b7169203331";
    let header = format!("00-{header_trace}-{header_parent}-01");
    let answer = call(1, Some(&header), None).await.expect("first call");
    assert!(
        answer.status().is_success(),
        "{}",
        answer.text().await.unwrap_or_default()
    );
    let meta = format!("00-{META_TRACE}-{META_PARENT}-01");
    let answer = call(2, Some(&header), Some(&meta))
        .await
        .expect("second call");
    assert!(answer.status().is_success());
    let denied = http_support::mcp_post(&client, &server.mcp_url(), "{}")
        .bearer_auth("not-a-token")
        .send()
        .await
        .expect("refused call");
    assert_eq!(denied.status(), 401);

    let spans = receiver
        .wait_for_spans(|spans| named(spans, "tools/call execute_query").len() >= 2)
        .await;
    let requests = named(&spans, "tools/call execute_query");
    let from_header = (requests.iter())
        .find(|s| hex(&s.trace_id) == header_trace)
        .expect("the header's trace is continued");
    assert_eq!(hex(&from_header.parent_span_id), header_parent);
    assert_eq!(
        attr(from_header, "network.transport").as_deref(),
        Some("tcp")
    );
    assert_eq!(
        attr(from_header, "network.protocol.name").as_deref(),
        Some("http")
    );
    assert_eq!(attr(from_header, "pgmcp.caller").as_deref(), Some("token"));
    assert_eq!(attr(from_header, "enduser.id").as_deref(), Some(AGENT_OID));
    assert_eq!(
        attr(from_header, "pgmcp.caller.oid").as_deref(),
        Some(AGENT_OID)
    );
    assert_eq!(
        attr(from_header, "pgmcp.caller.tid").as_deref(),
        Some(TENANT)
    );
    assert_eq!(
        attr(from_header, "pgmcp.caller.azp").as_deref(),
        Some(AGENT_APP)
    );
    assert_eq!(
        attr(from_header, "pgmcp.caller.app_only").as_deref(),
        Some("true")
    );
    assert_eq!(
        attr(from_header, "pgmcp.caller.roles").as_deref(),
        Some(ROLE)
    );
    let tool = child_of(&spans, from_header);
    assert_eq!(tool.len(), 1, "the tool span is the request span's child");
    assert_eq!(
        attr(tool[0], "db.system.name").as_deref(),
        Some("postgresql")
    );

    // `_meta` wins over the header, which stays reachable as a link.
    let from_meta = (requests.iter())
        .find(|s| hex(&s.trace_id) == META_TRACE)
        .expect("the _meta trace is continued");
    assert_eq!(hex(&from_meta.parent_span_id), META_PARENT);
    assert_eq!(from_meta.links.len(), 1);
    assert_eq!(hex(&from_meta.links[0].trace_id), header_trace);
    assert_eq!(hex(&from_meta.links[0].span_id), header_parent);

    let deadline = Instant::now() + Duration::from_secs(20);
    while !receiver
        .metric_names()
        .iter()
        .any(|m| m == "pgmcp.auth.failures")
    {
        assert!(
            Instant::now() < deadline,
            "no auth metrics: {:?}",
            receiver.metric_names()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let raw = receiver.raw();
    let signature = token.rsplit('.').next().unwrap();
    for secret in [
        token.as_str(),
        signature,
        "Bearer",
        "not-a-token",
        PASSWORD,
        LITERAL,
        "postgresql://",
    ] {
        assert!(!raw.contains(secret), "`{secret}` was exported");
    }
    drop(server);
}

/// Threads the SDK starts for exporting: their presence means export was set up.
fn export_threads(pid: u32) -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_string())
        .filter(|name| name.starts_with("OpenTelemetry"))
        .collect()
}

#[tokio::test]
async fn without_an_endpoint_nothing_is_set_up_or_sent() {
    let receiver = Receiver::start().await;
    let url = common::reader_url();
    // Everything but an endpoint: export stays off and no exporter thread exists.
    let mut env = NO_INHERITED_ENDPOINT.to_vec();
    env.extend([
        ("OTEL_SERVICE_NAME", "pgmcp-off"),
        ("OTEL_TRACES_SAMPLER", "always_on"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=unused"),
    ]);
    let (client, pid) =
        common::spawn_with_pid(&["serve", "--database-url", &url], &env, Era::Legacy).await;
    common::call_ok(&client, "execute_query", json!({"sql": "SELECT 1"})).await;
    assert_eq!(export_threads(pid), Vec::<String>::new());
    client.cancel().await.ok();

    // An endpoint with the SDK disabled: nothing reaches it.
    let mut env = NO_INHERITED_ENDPOINT.to_vec();
    env.extend([
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.base.as_str()),
        ("OTEL_SDK_DISABLED", "true"),
    ]);
    let (client, pid) =
        common::spawn_with_pid(&["serve", "--database-url", &url], &env, Era::Legacy).await;
    common::call_ok(&client, "execute_query", json!({"sql": "SELECT 1"})).await;
    assert_eq!(export_threads(pid), Vec::<String>::new());
    client.cancel().await.ok();

    assert_eq!(
        receiver.requests(),
        0,
        "nothing was sent while export was off"
    );

    // The same with export on shows the check can fail: the threads exist and the receiver hears from pgmcp.
    let mut env = NO_INHERITED_ENDPOINT.to_vec();
    env.push(("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.base.as_str()));
    let (client, pid) =
        common::spawn_with_pid(&["serve", "--database-url", &url], &env, Era::Legacy).await;
    common::call_ok(&client, "execute_query", json!({"sql": "SELECT 1"})).await;
    assert!(!export_threads(pid).is_empty());
    client.cancel().await.ok();
    receiver.wait_for_spans(|spans| !spans.is_empty()).await;
}

#[test]
fn a_bad_setting_stops_the_start_and_is_named() {
    let url = common::reader_url();
    for (name, value) in [
        ("OTEL_TRACES_SAMPLER", "sometimes"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "authorization"),
    ] {
        let (status, stderr) = http_support::run_to_exit(
            &["serve", "--database-url", &url],
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9"),
                (name, value),
            ],
        );
        assert!(!status.success());
        assert!(stderr.contains(&format!("`{name}`")), "{name}: {stderr}");
    }
}
