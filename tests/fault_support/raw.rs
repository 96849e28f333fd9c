//! HTTP at the level of single requests and sockets: one tools/call POST with its status and headers, and the
//! clients that misbehave — trickling their headers or body, connecting and saying nothing, or vanishing with a
//! call in flight.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One raw tools/call POST of `execute_query`: the HTTP status, the parsed body (or its text), how long it took
/// and the Retry-After header.
pub async fn execute(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    sql: &str,
) -> (u16, Value, Duration, Option<String>) {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                      "params": {"name": "execute_query", "arguments": {"sql": sql}}});
    let mut request = crate::http_support::mcp_post(client, url, body.to_string());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let started = Instant::now();
    let response = request.send().await.expect("an HTTP answer");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = response.text().await.expect("body");
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value, started.elapsed(), retry_after)
}

/// The structured error of a tool result, or null for a success.
pub fn tool_error(answer: &Value) -> Value {
    if answer["result"]["isError"] == json!(true) {
        answer["result"]["structuredContent"].clone()
    } else {
        Value::Null
    }
}

/// The request line and headers of a POST to /mcp, with a body of `length` bytes to follow.
fn post_head(length: usize, token: Option<&str>) -> String {
    let authorization = token
        .map(|token| format!("Authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\n{authorization}Content-Length: {length}\r\n\r\n"
    )
}

/// Writes `bytes` one at a time, `gap` apart, until the server answers or closes; returns how long that took and
/// what it sent, or `None` if it still listened after `limit`.
async fn trickle(
    stream: &mut TcpStream,
    bytes: &[u8],
    gap: Duration,
    limit: Duration,
    started: Instant,
) -> Option<(Duration, String)> {
    let mut answer = Vec::new();
    for byte in bytes.iter().cycle() {
        if started.elapsed() > limit {
            return None;
        }
        if stream.write_all(&[*byte]).await.is_err() {
            break;
        }
        let mut buffer = [0u8; 1024];
        match tokio::time::timeout(gap, stream.read(&mut buffer)).await {
            Err(_) => continue,
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                answer.extend_from_slice(&buffer[..n]);
                break;
            }
        }
    }
    Some((
        started.elapsed(),
        String::from_utf8_lossy(&answer).into_owned(),
    ))
}

/// A client that sends its request headers one byte at a time and never finishes them.
pub async fn trickle_headers(server: SocketAddr, limit: Duration) -> Option<(Duration, String)> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(server).await.ok()?;
    let head = b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    trickle(
        &mut stream,
        head,
        Duration::from_millis(200),
        limit,
        started,
    )
    .await
}

/// A client that sends whole headers, then its body one byte at a time.
pub async fn trickle_body(
    server: SocketAddr,
    token: Option<&str>,
    limit: Duration,
) -> Option<(Duration, String)> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(server).await.ok()?;
    stream
        .write_all(post_head(4000, token).as_bytes())
        .await
        .ok()?;
    trickle(
        &mut stream,
        &[b' '; 4000],
        Duration::from_millis(200),
        limit,
        started,
    )
    .await
}

/// A client that connects and sends nothing.
pub async fn silent(server: SocketAddr, limit: Duration) -> Option<(Duration, String)> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(server).await.ok()?;
    let mut buffer = [0u8; 64];
    match tokio::time::timeout(limit, stream.read(&mut buffer)).await {
        Ok(_) => Some((started.elapsed(), String::new())),
        Err(_) => None,
    }
}

/// Sends a tools/call of `execute_query` with `sql` and returns the open connection without reading the answer:
/// dropping it is a client vanishing mid-call.
pub async fn call_and_hold(server: SocketAddr, token: Option<&str>, sql: &str) -> TcpStream {
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                      "params": {"name": "execute_query", "arguments": {"sql": sql}}})
    .to_string();
    let mut connection = TcpStream::connect(server).await.expect("connect");
    connection
        .write_all(format!("{}{body}", post_head(body.len(), token)).as_bytes())
        .await
        .expect("send the call");
    connection
}
