//! `POST /chat`: the web client's Chat tab. The browser sends the question (and the earlier questions and
//! answers, so nothing is kept per browser on the server) and reads the steps back as NDJSON, one [`Event`] per
//! line, as they happen. The model's key stays on the server. Tools run through the listener's own `/mcp` with
//! the caller's bearer token, so the caller's grants, on-behalf-of login and row-level security decide what the
//! model can see. Each question is audited and counted against the caller's per-minute allowance; closing the
//! response (the Stop button) stops the turn.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rmcp::model::{JsonObject, NumberOrString};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::agent::{Agent, Event};
use super::model::client::ModelClient;
use super::settings::ChatSettings;
use super::tools::OwnEndpoint;
use crate::http::Caller;
use crate::http::auth::IncomingToken;
use crate::mcp::Databases;
use crate::telemetry::audit::{AuditLog, CallOutcome, CallRecord, CallerIdentity};

pub const CHAT_PATH: &str = "/chat";

/// Earlier turns the browser may send back; older ones are dropped.
const MAX_HISTORY: usize = 20;

#[derive(Clone)]
pub struct ChatState {
    pub model: Arc<ModelClient>,
    pub settings: Arc<ChatSettings>,
    pub databases: Arc<Databases>,
    pub audit: Option<Arc<AuditLog>>,
    /// The listener's own `/mcp`, reached over loopback, and the Host header it accepts.
    pub mcp_url: String,
    pub mcp_host: String,
    /// Origins a browser may post from: the server's own and `--allowed-origin`.
    pub origins: Arc<Vec<String>>,
    pub http: reqwest::Client,
    limiter: Arc<RateLimiter>,
    next_id: Arc<AtomicI64>,
}

impl ChatState {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        settings: ChatSettings,
        databases: Arc<Databases>,
        audit: Option<Arc<AuditLog>>,
        mcp_url: String,
        mcp_host: String,
        origins: Vec<String>,
    ) -> anyhow::Result<ChatState> {
        let limiter = Arc::new(RateLimiter::new(settings.rate_limit_per_minute));
        Ok(ChatState {
            model: Arc::new(ModelClient::new(settings.model.clone())?),
            settings: Arc::new(settings),
            databases,
            audit,
            mcp_url,
            mcp_host,
            origins: Arc::new(origins),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
            limiter,
            next_id: Arc::new(AtomicI64::new(1)),
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChatRequest {
    question: String,
    #[serde(default)]
    history: Vec<Exchange>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Exchange {
    question: String,
    answer: String,
}

/// The handler. The authentication layer in front has already validated the caller's token.
pub async fn chat(State(state): State<ChatState>, request: Request) -> Response {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    if let Some(origin) = parts
        .headers
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        && !origin_allowed(origin, &state.origins)
    {
        return refuse(
            StatusCode::FORBIDDEN,
            "this origin may not use /chat; start pgmcp with --allowed-origin for it",
        );
    }
    let is_json = (parts.headers.get(header::CONTENT_TYPE))
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        // A cross-site form cannot send JSON without a preflight, which this endpoint never approves.
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the question as application/json",
        );
    }
    let caller = parts.extensions.get::<Caller>().cloned();
    let token = parts.extensions.get::<IncomingToken>().map(|t| t.0.clone());
    let identity = match &caller {
        Some(caller) => CallerIdentity::Token(Box::new(caller.clone())),
        None => CallerIdentity::Anonymous,
    };
    let key = caller
        .as_ref()
        .and_then(|c| c.oid.clone().or_else(|| c.subject.clone()))
        .unwrap_or_else(|| "anonymous".into());
    if let Err(wait) = state.limiter.admit(&key) {
        let mut response = refuse(
            StatusCode::TOO_MANY_REQUESTS,
            &format!(
                "too many questions: {} a minute per caller (`chat.rate_limit_per_minute`)",
                state.settings.rate_limit_per_minute
            ),
        );
        if let Ok(value) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }
    let bytes = match axum::body::to_bytes(body, 256 * 1024).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the conversation is larger than 256 KiB; start a new one",
            );
        }
    };
    let request: ChatRequest = match serde_json::from_slice(&bytes) {
        Ok(request) => request,
        Err(error) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                &format!(
                    "not a chat request: {error}; send {{\"question\": \"...\", \"history\": [{{\"question\", \"answer\"}}]}}"
                ),
            );
        }
    };
    let question = request.question.trim().to_string();
    if question.is_empty() {
        return refuse(StatusCode::BAD_REQUEST, "the question is empty");
    }
    let runner = Arc::new(OwnEndpoint::new(
        state.http.clone(),
        state.mcp_url.clone(),
        state.mcp_host.clone(),
        token,
    ));
    let description = state.databases.all()[0].profile.description.clone();
    // Writes need a confirmation round trip the browser does not offer yet, so the web chat never offers them.
    let agent = Agent::start(
        state.model.clone(),
        runner,
        state.settings.budgets,
        description,
        None,
    )
    .await;
    let mut agent = match agent {
        Ok(agent) => agent,
        Err(error) => return refuse(StatusCode::FORBIDDEN, &format!("{error:#}")),
    };
    let skip = request.history.len().saturating_sub(MAX_HISTORY);
    for exchange in request.history.into_iter().skip(skip) {
        agent.remember(&exchange.question, &exchange.answer);
    }

    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel::<String>();
    let cancel = CancellationToken::new();
    let stop = cancel.clone().drop_guard();
    let id = state.next_id.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(async move {
        let cancel_on_close = cancel.clone();
        let mut emit = |event: &Event| {
            let line = serde_json::to_string(event).unwrap_or_default() + "\n";
            if sender.send(line).is_err() {
                // The browser closed the response: the person pressed Stop or left.
                cancel_on_close.cancel();
            }
        };
        let turn = agent.ask(&question, &mut emit, &cancel).await;
        if let Some(audit) = &state.audit {
            let outcome = match (&turn.error, turn.stopped) {
                (Some(_), _) => CallOutcome::Failed {
                    kind: "chat_failed",
                    sqlstate: None,
                },
                (None, true) => CallOutcome::Failed {
                    kind: "stopped",
                    sqlstate: None,
                },
                (None, false) => CallOutcome::Ok {
                    rows: Some(turn.tool_calls.into()),
                    bytes: turn.answer.as_ref().map_or(0, String::len),
                },
            };
            let mut arguments = JsonObject::new();
            arguments.insert("question".into(), Value::String(question.clone()));
            arguments.insert("sql".into(), json!(turn.sql));
            arguments.insert("tool_calls".into(), json!(turn.tool_calls));
            arguments.insert("tokens".into(), json!(turn.usage.total_tokens));
            audit.write(&CallRecord {
                request_id: &NumberOrString::String(format!("chat-{id}").into()),
                caller: &identity,
                kind: "chat",
                tool: None,
                uri: Some(CHAT_PATH),
                arguments: Some(&arguments),
                outcome: &outcome,
                duration: started.elapsed(),
                traceparent: None,
            });
        }
    });
    let stream =
        futures_util::stream::unfold((receiver, stop), |(mut receiver, stop)| async move {
            receiver
                .recv()
                .await
                .map(|line| (Ok::<_, std::convert::Infallible>(line), (receiver, stop)))
        });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .header(header::CACHE_CONTROL, "no-store")
        .header("x-content-type-options", "nosniff")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn refuse(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}

/// `http://localhost:*` style entries match any port, as `--allowed-origin` documents.
fn origin_allowed(origin: &str, allowed: &[String]) -> bool {
    allowed.iter().any(|entry| match entry.strip_suffix(":*") {
        Some(prefix) => {
            origin == prefix
                || origin
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with(':'))
        }
        None => entry == origin,
    })
}

/// A sliding one-minute window of questions per caller.
struct RateLimiter {
    per_minute: usize,
    seen: std::sync::Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl RateLimiter {
    fn new(per_minute: u32) -> RateLimiter {
        RateLimiter {
            per_minute: per_minute as usize,
            seen: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Admits one question, or says how long until the next one would be admitted.
    fn admit(&self, key: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let window = Duration::from_secs(60);
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        // Forget callers idle for a minute, so the map does not grow with every caller ever seen.
        seen.retain(|_, times| {
            times
                .back()
                .is_some_and(|t| now.duration_since(*t) < window)
        });
        let times = seen.entry(key.to_string()).or_default();
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            times.pop_front();
        }
        if times.len() >= self.per_minute {
            let oldest = times.front().copied().unwrap_or(now);
            return Err(window.saturating_sub(now.duration_since(oldest)));
        }
        times.push_back(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limiter_counts_per_caller() {
        let limiter = RateLimiter::new(2);
        assert!(limiter.admit("a").is_ok() && limiter.admit("a").is_ok());
        let wait = limiter.admit("a").unwrap_err();
        assert!(wait > Duration::from_secs(50) && wait <= Duration::from_secs(60));
        assert!(limiter.admit("b").is_ok());
    }

    #[test]
    fn origins_match_exactly_or_by_port_wildcard() {
        let allowed = vec![
            "http://127.0.0.1:8808".to_string(),
            "http://localhost:*".to_string(),
        ];
        assert!(origin_allowed("http://127.0.0.1:8808", &allowed));
        assert!(origin_allowed("http://localhost:5173", &allowed));
        assert!(!origin_allowed("http://localhost.evil.example", &allowed));
        assert!(!origin_allowed("https://evil.example", &allowed));
    }
}
