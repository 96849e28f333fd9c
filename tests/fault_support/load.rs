//! A steady, bounded load of mixed MCP calls, and what the callers saw. Each client calls in turn a point query, a
//! catalog tool, a 10,000-row read and a slow query, at a fixed pace, until the load is stopped (or its time cap
//! passes); every call is recorded with when it started, how long it took and what came back. The report then
//! answers the fault tests' questions: which calls failed and how, whether any call outlived its bound, and how
//! long after a fault ended the calls succeeded again.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::http_support::HttpClient;

/// What a call asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Point,
    Catalog,
    Rows10k,
    Slow,
}

impl Kind {
    pub const MIX: [Kind; 6] = [
        Kind::Point,
        Kind::Catalog,
        Kind::Point,
        Kind::Rows10k,
        Kind::Point,
        Kind::Slow,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Kind::Point => "point query",
            Kind::Catalog => "list_tables",
            Kind::Rows10k => "10k-row read",
            Kind::Slow => "slow query",
        }
    }

    /// The tool and its arguments; `n` varies the point query's key.
    pub fn call(self, n: usize) -> (&'static str, Value) {
        match self {
            Kind::Point => (
                "execute_query",
                json!({"sql": "SELECT id, note FROM public.canary WHERE id = $1", "params": [n % 10 + 1]}),
            ),
            Kind::Catalog => ("list_tables", json!({"schema": "public"})),
            Kind::Rows10k => (
                "execute_query",
                json!({"sql": "SELECT g, md5(g::text) FROM generate_series(1, 10000) g", "limit": 10000}),
            ),
            Kind::Slow => ("execute_query", json!({"sql": "SELECT public.nap(0.3)"})),
        }
    }

    /// Whether a successful answer is whole: the rows the call asked for, all of them.
    fn complete(self, answer: &Value) -> bool {
        match self {
            Kind::Point => answer["row_count"] == json!(1),
            Kind::Catalog => answer["tables"].as_array().is_some_and(|t| !t.is_empty()),
            Kind::Rows10k => {
                answer["row_count"] == json!(10000)
                    && answer["rows"].as_array().map(Vec::len) == Some(10000)
            }
            Kind::Slow => answer["rows"] == json!([[1]]),
        }
    }
}

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// `isError: true` with the structured error's kind and text.
    ToolError {
        kind: String,
        message: String,
    },
    /// An HTTP status other than 200, with the body.
    Http {
        status: u16,
        body: String,
    },
    /// A JSON-RPC error, or an answer that is not what the call asked for (cut, malformed).
    Protocol(String),
    /// No HTTP answer: refused, reset, or the client's own timeout.
    Transport {
        message: String,
        connect: bool,
        timeout: bool,
    },
}

impl Outcome {
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Ok)
    }

    /// A short name for counting: `ok`, the tool error's kind, `http 503`, `protocol`, `refused`, `timeout`.
    pub fn label(&self) -> String {
        match self {
            Outcome::Ok => "ok".into(),
            Outcome::ToolError { kind, .. } => kind.clone(),
            Outcome::Http { status, .. } => format!("http {status}"),
            Outcome::Protocol(_) => "protocol".into(),
            Outcome::Transport { timeout: true, .. } => "client timeout".into(),
            Outcome::Transport { connect: true, .. } => "refused".into(),
            Outcome::Transport { .. } => "transport".into(),
        }
    }

    pub fn text(&self) -> String {
        match self {
            Outcome::Ok => String::new(),
            Outcome::ToolError { message, .. } => message.clone(),
            Outcome::Http { body, .. } => body.clone(),
            Outcome::Protocol(message) | Outcome::Transport { message, .. } => message.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Sample {
    pub client: String,
    pub kind: Kind,
    /// Since the load started.
    pub started: Duration,
    pub elapsed: Duration,
    pub outcome: Outcome,
}

impl Sample {
    pub fn ended(&self) -> Duration {
        self.started + self.elapsed
    }
}

/// A running load; [`Load::stop`] ends it and hands over the report.
pub struct Load {
    started: Instant,
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// No loop runs longer than this, whatever the test does.
    cap: Duration,
}

/// A bearer token that can be replaced while clients use it (the soak renews its tokens before they expire).
#[derive(Clone)]
pub struct SharedToken(Arc<Mutex<String>>);

impl SharedToken {
    pub fn new(token: impl Into<String>) -> SharedToken {
        SharedToken(Arc::new(Mutex::new(token.into())))
    }

    pub fn set(&self, token: impl Into<String>) {
        *self.0.lock().unwrap() = token.into();
    }

    pub fn get(&self) -> String {
        self.0.lock().unwrap().clone()
    }
}

/// How one client reaches pgmcp.
#[derive(Clone)]
pub enum Client {
    Http {
        url: String,
        client: reqwest::Client,
        token: Option<SharedToken>,
    },
    Stdio(Arc<HttpClient>),
}

impl Load {
    pub fn new(cap: Duration) -> Load {
        Load {
            started: Instant::now(),
            samples: Arc::default(),
            stop: CancellationToken::new(),
            tasks: Vec::new(),
            cap,
        }
    }

    /// Time since the load started: where a test marks a fault's start and end.
    pub fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// A raw HTTP client of `/mcp` (a new JSON-RPC POST per call, no session), each call bounded by `timeout`.
    pub fn http_client(url: &str, token: Option<SharedToken>, timeout: Duration) -> Client {
        crate::http_support::install_crypto();
        Client::Http {
            url: url.to_string(),
            client: reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .expect("reqwest client"),
            token,
        }
    }

    /// Adds a client calling every `pace` (less the call's own time) through the mix, starting at `offset` in
    /// it. `bound` caps each stdio call (HTTP calls are capped by their client's timeout).
    pub fn add(
        &mut self,
        name: &str,
        client: Client,
        pace: Duration,
        offset: usize,
        bound: Duration,
    ) {
        let (samples, stop, started, cap) = (
            self.samples.clone(),
            self.stop.clone(),
            self.started,
            self.cap,
        );
        let name = name.to_string();
        self.tasks.push(tokio::spawn(async move {
            let mut n = offset;
            while !stop.is_cancelled() && started.elapsed() < cap {
                let kind = Kind::MIX[n % Kind::MIX.len()];
                let at = Instant::now();
                let outcome = call(&client, kind, n, bound).await;
                let elapsed = at.elapsed();
                samples.lock().unwrap().push(Sample {
                    client: name.clone(),
                    kind,
                    started: at - started,
                    elapsed,
                    outcome,
                });
                n += 1;
                let rest = pace.saturating_sub(elapsed);
                tokio::select! {
                    _ = tokio::time::sleep(rest) => {}
                    _ = stop.cancelled() => {}
                }
            }
        }));
    }

    /// Stops every client after its current call and returns what they saw.
    pub async fn stop(self) -> Report {
        self.stop.cancel();
        for task in self.tasks {
            task.await.expect("load client task");
        }
        let mut samples = std::mem::take(&mut *self.samples.lock().unwrap());
        samples.sort_by_key(|s| s.started);
        Report { samples }
    }
}

/// One call over HTTP or stdio, classified.
pub async fn call(client: &Client, kind: Kind, n: usize, bound: Duration) -> Outcome {
    let (tool, arguments) = kind.call(n);
    match client {
        Client::Http { url, client, token } => {
            let token = token.as_ref().map(SharedToken::get);
            http_call(client, url, token.as_deref(), kind, tool, arguments, n).await
        }
        Client::Stdio(client) => {
            let mut params = CallToolRequestParams::new(tool);
            params.arguments = arguments.as_object().cloned();
            match tokio::time::timeout(bound, client.call_tool(params)).await {
                Err(_) => Outcome::Transport {
                    message: format!("no answer within {bound:?}"),
                    connect: false,
                    timeout: true,
                },
                Ok(Err(error)) => Outcome::Protocol(error.to_string()),
                Ok(Ok(result)) => {
                    let text = match (&result.structured_content, result.is_error) {
                        (Some(error), Some(true)) => error.to_string(),
                        _ => result
                            .content
                            .first()
                            .and_then(|c| c.as_text())
                            .map(|t| t.text.clone())
                            .unwrap_or_default(),
                    };
                    classify_result(kind, result.is_error == Some(true), &text)
                }
            }
        }
    }
}

async fn http_call(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    kind: Kind,
    tool: &str,
    arguments: Value,
    id: usize,
) -> Outcome {
    let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                      "params": {"name": tool, "arguments": arguments}});
    let mut request = client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = match request.send().await {
        Ok(response) => response,
        Err(error) => return transport(&error),
    };
    let status = response.status().as_u16();
    let text = match response.text().await {
        Ok(text) => text,
        Err(error) => {
            // Headers came, the body did not: an answer cut off.
            return Outcome::Protocol(format!("the body of a {status} answer broke off: {error}"));
        }
    };
    if status != 200 {
        return Outcome::Http { status, body: text };
    }
    let Ok(message) = serde_json::from_str::<Value>(&text) else {
        return Outcome::Protocol(format!("not JSON: {}", truncate(&text)));
    };
    if let Some(error) = message.get("error") {
        return Outcome::Protocol(error.to_string());
    }
    let result = &message["result"];
    if result["isError"] == json!(true) {
        // The error's text block is for people; its structured content says what kind it is.
        return classify_result(kind, true, &result["structuredContent"].to_string());
    }
    let block = result["content"][0]["text"].as_str().unwrap_or_default();
    classify_result(kind, false, block)
}

fn transport(error: &reqwest::Error) -> Outcome {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    Outcome::Transport {
        message,
        connect: error.is_connect(),
        timeout: error.is_timeout(),
    }
}

fn classify_result(kind: Kind, is_error: bool, text: &str) -> Outcome {
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        return Outcome::Protocol(format!("the text block is not JSON: {}", truncate(text)));
    };
    if is_error {
        return Outcome::ToolError {
            kind: value["error"].as_str().unwrap_or("?").to_string(),
            message: value.to_string(),
        };
    }
    if kind.complete(&value) {
        Outcome::Ok
    } else {
        Outcome::Protocol(format!(
            "an incomplete {} answer: {}",
            kind.label(),
            truncate(text)
        ))
    }
}

fn truncate(text: &str) -> String {
    text.chars().take(300).collect()
}

/// Every call of a load, in start order.
pub struct Report {
    pub samples: Vec<Sample>,
}

impl Report {
    /// Calls that started in `[from, to)`.
    pub fn started_in(&self, from: Duration, to: Duration) -> impl Iterator<Item = &Sample> {
        self.samples
            .iter()
            .filter(move |s| s.started >= from && s.started < to)
    }

    pub fn failures(&self) -> impl Iterator<Item = &Sample> {
        self.samples.iter().filter(|s| !s.outcome.is_ok())
    }

    /// Counts by outcome label, e.g. `{"ok": 120, "unavailable": 7}`.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for sample in &self.samples {
            *counts.entry(sample.outcome.label()).or_insert(0) += 1;
        }
        counts
    }

    /// How long after `fault_end` the calls succeeded again: from `fault_end` to the start of the last call that
    /// failed (zero when none failed after it), among the calls that ended before `until` (the next fault). The
    /// calls after that one all succeeded.
    pub fn recovery_after(&self, fault_end: Duration, until: Duration) -> Duration {
        self.failures()
            .filter(|s| s.ended() < until)
            .map(|s| s.started)
            .filter(|started| *started >= fault_end)
            .max()
            .map(|last| last - fault_end)
            .unwrap_or(Duration::ZERO)
    }

    /// No call failed that ended before `at` (the warm-up before a fault).
    pub fn assert_clean_before(&self, at: Duration) {
        let failed: Vec<_> = self
            .failures()
            .filter(|s| s.ended() < at)
            .map(describe)
            .collect();
        assert!(
            failed.is_empty(),
            "calls failed before the fault:\n{}",
            failed.join("\n")
        );
    }

    /// Every call ended within `bound`: none hung past its timeout.
    pub fn assert_bounded(&self, bound: Duration) {
        let slow: Vec<_> = self
            .samples
            .iter()
            .filter(|s| {
                s.elapsed > bound || matches!(s.outcome, Outcome::Transport { timeout: true, .. })
            })
            .map(describe)
            .collect();
        assert!(
            slow.is_empty(),
            "calls outlived their bound of {bound:?}:\n{}",
            slow.join("\n")
        );
    }

    /// Every failure is one of the expected kinds (tool error kinds or outcome labels) and its text says why
    /// with one of `words`; no answer was ever cut or malformed.
    pub fn assert_failures_are_clear(&self, kinds: &[&str], words: &[&str]) {
        let unclear: Vec<_> = self
            .failures()
            .filter(|s| {
                let label = s.outcome.label();
                let text = s.outcome.text().to_lowercase();
                !kinds.contains(&label.as_str()) || !words.iter().any(|w| text.contains(w))
            })
            .map(describe)
            .collect();
        assert!(
            unclear.is_empty(),
            "failures that are not one of {kinds:?} naming one of {words:?}:\n{}",
            unclear.join("\n")
        );
    }

    /// Every client succeeded at least `n` times after `at`.
    pub fn assert_each_client_succeeds_after(&self, at: Duration, n: usize) {
        let mut clients: BTreeMap<&str, usize> = BTreeMap::new();
        for sample in &self.samples {
            let count = clients.entry(&sample.client).or_insert(0);
            if sample.started >= at && sample.outcome.is_ok() {
                *count += 1;
            }
        }
        for (client, ok) in clients {
            assert!(
                ok >= n,
                "client {client} succeeded {ok} times after {at:?}, expected at least {n}\n{}",
                self.summary()
            );
        }
    }

    /// Per-kind call counts and latency percentiles of the successful calls, and the outcome counts.
    pub fn summary(&self) -> String {
        let mut text = format!("{} calls: {:?}\n", self.samples.len(), self.counts());
        let mut by_kind: BTreeMap<Kind, Vec<Duration>> = BTreeMap::new();
        for sample in self.samples.iter().filter(|s| s.outcome.is_ok()) {
            by_kind.entry(sample.kind).or_default().push(sample.elapsed);
        }
        for (kind, mut times) in by_kind {
            times.sort();
            text.push_str(&format!(
                "  {:<13} n={:<5} p50={:>6.1} ms p99={:>7.1} ms\n",
                kind.label(),
                times.len(),
                percentile(&times, 0.50).as_secs_f64() * 1000.0,
                percentile(&times, 0.99).as_secs_f64() * 1000.0
            ));
        }
        text
    }
}

pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

pub fn describe(sample: &Sample) -> String {
    format!(
        "  {} {} at {:.2}s took {:.2}s: {} {}",
        sample.client,
        sample.kind.label(),
        sample.started.as_secs_f64(),
        sample.elapsed.as_secs_f64(),
        sample.outcome.label(),
        truncate(&sample.outcome.text())
    )
}
