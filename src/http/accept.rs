//! Content negotiation on `POST /mcp` for clients that do not list both media types Streamable HTTP asks for.
//!
//! rmcp answers 406 unless `Accept` names both `application/json` and `text/event-stream`. A plain HTTP client
//! (curl sends `*/*`, many send nothing, a gateway health check says `application/json`) can read one JSON
//! answer perfectly well, and seed 000's own smoke test is such a client. So this step, right in front of rmcp,
//! states the full `Accept` rmcp wants and then answers in a form the client said it takes: an event stream
//! becomes its one JSON-RPC response when the client did not ask for `text/event-stream`, and a JSON answer
//! becomes a one-event stream for a client that takes only event streams. Only a client that refuses both media
//! types still gets 406.

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::{Value, json};

const JSON: &str = "application/json";
const EVENT_STREAM: &str = "text/event-stream";

/// What the client can take, read from its `Accept` header (absent means anything, RFC 9110 §12.5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Accepts {
    json: bool,
    event_stream: bool,
    /// `text/event-stream` named as such: the client speaks Streamable HTTP and wants the stream as it is.
    names_event_stream: bool,
}

impl Accepts {
    /// Read on every request, so it allocates nothing: media types compare case-insensitively in place.
    fn of(headers: &HeaderMap) -> Accepts {
        let mut accepts = Accepts {
            json: false,
            event_stream: false,
            names_event_stream: false,
        };
        let mut stated = false;
        let values = headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .filter(|value| !value.trim().is_empty());
        for range in values.flat_map(|value| value.split(',')) {
            stated = true;
            let mut parts = range.split(';');
            let essence = parts.next().unwrap_or("").trim();
            let refused = parts.any(|parameter| {
                parameter.split_once('=').is_some_and(|(name, value)| {
                    name.trim().eq_ignore_ascii_case("q") && is_zero_weight(value.trim())
                })
            });
            if refused {
                continue;
            }
            let is = |media_type: &str| essence.eq_ignore_ascii_case(media_type);
            if is("*/*") {
                accepts.json = true;
                accepts.event_stream = true;
            } else if is("application/*") || is(JSON) {
                accepts.json = true;
            } else if is("text/*") {
                accepts.event_stream = true;
            } else if is(EVENT_STREAM) {
                accepts.event_stream = true;
                accepts.names_event_stream = true;
            }
        }
        if !stated {
            return Accepts {
                json: true,
                event_stream: true,
                names_event_stream: false,
            };
        }
        accepts
    }

    /// The form the answer must take, or `None` when rmcp's own answer already fits.
    fn wanted(self) -> Option<Wanted> {
        if self.json && !self.names_event_stream {
            Some(Wanted::Json)
        } else if self.event_stream && !self.json {
            Some(Wanted::EventStream)
        } else {
            None
        }
    }
}

/// `q=0` (or `0.0`, `0.000`) excludes a media range; any other weight keeps it.
fn is_zero_weight(weight: &str) -> bool {
    let (whole, fraction) = weight.split_once('.').unwrap_or((weight, ""));
    whole == "0" && fraction.len() <= 3 && fraction.bytes().all(|digit| digit == b'0')
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wanted {
    Json,
    EventStream,
}

/// `respond`'s answer to `request`, asked for in the form rmcp requires and given in the form the client takes.
pub async fn negotiated<Answer>(
    mut request: Request,
    respond: impl FnOnce(Request) -> Answer,
) -> Response
where
    Answer: Future<Output = Response>,
{
    if request.method() != Method::POST {
        return respond(request).await;
    }
    let accepts = Accepts::of(request.headers());
    if !accepts.json && !accepts.event_stream {
        // Refuses both: rmcp's 406 is the honest answer.
        return respond(request).await;
    }
    let wanted = accepts.wanted();
    request.headers_mut().insert(
        header::ACCEPT,
        HeaderValue::from_static("application/json, text/event-stream"),
    );
    let response = respond(request).await;
    match (wanted, content_type(&response)) {
        (Some(Wanted::Json), Some(EVENT_STREAM)) => first_response_as_json(response).await,
        (Some(Wanted::EventStream), Some(JSON)) if response.status() == StatusCode::OK => {
            json_as_event(response).await
        }
        _ => response,
    }
}

fn content_type(response: &Response) -> Option<&'static str> {
    let value = response
        .headers()
        .get(header::CONTENT_TYPE)?
        .to_str()
        .ok()?;
    let essence = value.split(';').next().unwrap_or("").trim();
    [JSON, EVENT_STREAM]
        .into_iter()
        .find(|known| essence.eq_ignore_ascii_case(known))
}

/// Reads the event stream up to the JSON-RPC response (or error) and answers with it alone. Notifications sent
/// before it (progress, logs) are dropped: a client that takes no event stream has no way to receive them.
async fn first_response_as_json(response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    let mut events = EventReader::default();
    let mut stream = body.into_data_stream();
    let answer = 'read: loop {
        let Some(chunk) = stream.next().await else {
            break 'read None;
        };
        let Ok(chunk) = chunk else {
            break 'read None;
        };
        for data in events.push(&chunk) {
            if let Ok(message) = serde_json::from_str::<Value>(&data)
                && is_response(&message)
            {
                break 'read Some(data);
            }
        }
    };
    let Some(answer) = answer else {
        tracing::warn!(
            "the MCP answer ended before its JSON-RPC response; nothing to return as JSON"
        );
        let body = json!({"jsonrpc": "2.0", "id": null,
            "error": {"code": -32603, "message": "Internal error: the answer ended without a response"}});
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, JSON)],
            body.to_string(),
        )
            .into_response();
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CACHE_CONTROL);
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
    Response::from_parts(parts, Body::from(answer))
}

fn is_response(message: &Value) -> bool {
    message.get("id").is_some()
        && (message.get("result").is_some() || message.get("error").is_some())
}

/// A JSON answer as a stream of one `message` event, for a client that takes only event streams.
async fn json_as_event(response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let mut event = String::from("event: message\n");
    for line in String::from_utf8_lossy(&bytes).lines() {
        event.push_str("data: ");
        event.push_str(line);
        event.push('\n');
    }
    event.push('\n');
    parts.headers.remove(header::CONTENT_LENGTH);
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(EVENT_STREAM));
    parts
        .headers
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Response::from_parts(parts, Body::from(event))
}

/// Splits a `text/event-stream` body into the data of its events, whatever the chunk boundaries.
#[derive(Default)]
struct EventReader {
    line: Vec<u8>,
    data: Option<String>,
}

impl EventReader {
    /// The data of every event completed by `chunk`.
    fn push(&mut self, chunk: &Bytes) -> Vec<String> {
        let mut complete = Vec::new();
        for &byte in chunk.iter() {
            if byte != b'\n' {
                self.line.push(byte);
                continue;
            }
            let line = String::from_utf8_lossy(&self.line)
                .trim_end_matches('\r')
                .to_string();
            self.line.clear();
            if line.is_empty() {
                complete.extend(self.data.take());
            } else if let Some(value) = line.strip_prefix("data:") {
                let value = value.strip_prefix(' ').unwrap_or(value);
                match &mut self.data {
                    Some(data) => {
                        data.push('\n');
                        data.push_str(value);
                    }
                    None => self.data = Some(value.to_string()),
                }
            }
        }
        complete
    }
}

#[cfg(test)]
#[path = "accept_tests.rs"]
mod tests;
