//! A loopback stand-in for a Chat Completions endpoint, scripted per test: each request takes the next step of the
//! script, which sees the request body (the conversation so far) and answers exactly as OpenAI's wire format does —
//! streamed `chat.completion.chunk` events with `tool_calls` deltas, whole `chat.completion` bodies, or an HTTP
//! error with headers.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub struct Call {
    pub id: String,
    pub name: String,
    pub arguments: Value,
}

pub fn call(id: &str, name: &str, arguments: Value) -> Call {
    Call {
        id: id.into(),
        name: name.into(),
        arguments,
    }
}

pub enum Reply {
    /// A streamed answer: text (sent in pieces) and tool calls (ids and names first, arguments in two pieces).
    Stream { text: String, calls: Vec<Call> },
    /// A stream that sends this text and then stays silent for the given time.
    Stall { text: String, for_: Duration },
    /// A non-streaming answer.
    Whole { text: String, calls: Vec<Call> },
    Status {
        code: u16,
        headers: Vec<(&'static str, String)>,
        body: Value,
    },
}

pub fn text(text: &str) -> Reply {
    Reply::Stream {
        text: text.into(),
        calls: Vec::new(),
    }
}

pub fn tools(calls: Vec<Call>) -> Reply {
    Reply::Stream {
        text: String::new(),
        calls,
    }
}

pub type Step = Box<dyn Fn(&Value) -> Reply + Send + Sync>;

pub fn step(reply: impl Fn(&Value) -> Reply + Send + Sync + 'static) -> Step {
    Box::new(reply)
}

#[derive(Clone, Debug)]
pub struct Recorded {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
}

#[derive(Clone)]
struct State {
    script: Arc<Mutex<VecDeque<Step>>>,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

pub struct StandIn {
    /// The base URL, ending in /v1 as OpenAI's does.
    pub base_url: String,
    /// scheme://host:port, for Azure-style endpoints.
    pub origin: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
    script: Arc<Mutex<VecDeque<Step>>>,
}

impl StandIn {
    pub async fn start(script: Vec<Step>) -> StandIn {
        let state = State {
            script: Arc::new(Mutex::new(script.into())),
            requests: Arc::new(Mutex::new(Vec::new())),
        };
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        StandIn {
            base_url: format!("http://{addr}/v1"),
            origin: format!("http://{addr}"),
            requests: state.requests,
            script: state.script,
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    pub fn steps_left(&self) -> usize {
        self.script.lock().unwrap().len()
    }
}

async fn handle(
    axum::extract::State(state): axum::extract::State<State>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    state.requests.lock().unwrap().push(Recorded {
        path: uri.to_string(),
        headers,
        body: body.clone(),
    });
    let next = state.script.lock().unwrap().pop_front();
    let Some(step) = next else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the stand-in's script is exhausted",
        )
            .into_response();
    };
    let stream = body.get("stream") == Some(&Value::Bool(true));
    match step(&body) {
        Reply::Status {
            code,
            headers,
            body,
        } => {
            let mut response =
                (StatusCode::from_u16(code).unwrap(), axum::Json(body)).into_response();
            for (name, value) in headers {
                response.headers_mut().insert(name, value.parse().unwrap());
            }
            response
        }
        Reply::Whole { text, calls } | Reply::Stream { text, calls } if !stream => {
            axum::Json(whole(&text, &calls)).into_response()
        }
        Reply::Stream { text, calls } => sse(chunks(&text, &calls), None),
        Reply::Whole { .. } => unreachable!("answered above"),
        Reply::Stall { text, for_ } => sse(
            vec![delta(json!({"role": "assistant", "content": text}), None)],
            Some(for_),
        ),
    }
}

fn sse(events: Vec<Value>, stall: Option<Duration>) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(64);
    tokio::spawn(async move {
        for event in events {
            if tx.send(Ok(format!("data: {event}\n\n"))).await.is_err() {
                return;
            }
        }
        if let Some(wait) = stall {
            tokio::time::sleep(wait).await;
        }
        let _ = tx.send(Ok("data: [DONE]\n\n".into())).await;
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap()
}

fn delta(delta: Value, finish: Option<&str>) -> Value {
    json!({"id": "chatcmpl-standin", "object": "chat.completion.chunk", "created": 0, "model": "stand-in",
           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
}

fn usage() -> Value {
    json!({"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120})
}

fn chunks(text: &str, calls: &[Call]) -> Vec<Value> {
    let mut events = vec![delta(json!({"role": "assistant", "content": ""}), None)];
    let characters: Vec<char> = text.chars().collect();
    for piece in characters.chunks(7) {
        events.push(delta(
            json!({"content": piece.iter().collect::<String>()}),
            None,
        ));
    }
    // Every call's head first, then each call's arguments in two pieces, interleaved: what a parallel call looks
    // like on the wire.
    let heads: Vec<Value> = calls
        .iter()
        .enumerate()
        .map(|(index, c)| json!({"index": index, "id": c.id, "type": "function", "function": {"name": c.name, "arguments": ""}}))
        .collect();
    if !heads.is_empty() {
        events.push(delta(json!({"tool_calls": heads}), None));
    }
    for half in 0..2 {
        for (index, c) in calls.iter().enumerate() {
            let arguments = c.arguments.to_string();
            let middle = arguments.len() / 2;
            let middle = (middle..arguments.len())
                .find(|i| arguments.is_char_boundary(*i))
                .unwrap_or(arguments.len());
            let piece = if half == 0 {
                &arguments[..middle]
            } else {
                &arguments[middle..]
            };
            events.push(delta(
                json!({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}),
                None,
            ));
        }
    }
    let finish = if calls.is_empty() {
        "stop"
    } else {
        "tool_calls"
    };
    events.push(delta(json!({}), Some(finish)));
    events.push(json!({"id": "chatcmpl-standin", "object": "chat.completion.chunk", "choices": [], "usage": usage()}));
    events
}

fn whole(text: &str, calls: &[Call]) -> Value {
    let tool_calls: Vec<Value> = calls
        .iter()
        .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments.to_string()}}))
        .collect();
    let mut message = json!({"role": "assistant", "content": if text.is_empty() { Value::Null } else { json!(text) }});
    if !tool_calls.is_empty() {
        message["tool_calls"] = json!(tool_calls);
    }
    json!({"id": "chatcmpl-standin", "object": "chat.completion", "created": 0, "model": "stand-in",
           "choices": [{"index": 0, "message": message, "finish_reason": if calls.is_empty() { "stop" } else { "tool_calls" }}],
           "usage": usage()})
}

/// The content of the last `tool` message in a request: what pgmcp passed back to the model.
pub fn last_tool_result(request: &Value) -> Value {
    let content = request["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "tool"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or("null")
        .to_string();
    serde_json::from_str(&content).unwrap_or(Value::String(content))
}
