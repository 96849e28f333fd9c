//! A minimal MCP client over a child's stdio: one JSON-RPC line out, lines read back until the answer. It does as
//! little as a client can (no schema validation, no typed decoding), so what it measures is the server.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

pub struct StdioServer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    next_id: u64,
    line: String,
}

/// One answer: its raw size on the wire and the parsed `result` (or an error).
pub struct Answer {
    pub bytes: usize,
    pub result: Value,
}

impl StdioServer {
    /// Spawns `program args`, performs the legacy `initialize` handshake, and returns the time it took.
    pub fn start(program: &str, args: &[String]) -> anyhow::Result<(StdioServer, Duration)> {
        StdioServer::start_with_env(program, args, &[], Stdio::inherit())
    }

    /// The same with variables of the server's own on top of the bench's environment (without the bench's PG*
    /// and DATABASE_URL): a peer that is configured through its environment gets exactly what it is given. A peer
    /// that logs every call gets somewhere other than the bench's output for it.
    pub fn start_with_env(
        program: &str,
        args: &[String],
        env: &[(String, String)],
        stderr: Stdio,
    ) -> anyhow::Result<(StdioServer, Duration)> {
        let started = Instant::now();
        let mut command = Command::new(program);
        command
            .args(args)
            .env("PGMCP_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr);
        without_database_environment(&mut command);
        command.envs(env.iter().map(|(k, v)| (k, v)));
        let mut child = command
            .spawn()
            .with_context(|| format!("spawning {program}"))?;
        let stdin = child.stdin.take().context("child stdin")?;
        let stdout =
            BufReader::with_capacity(1 << 16, child.stdout.take().context("child stdout")?);
        let mut server = StdioServer {
            child,
            stdin,
            stdout,
            next_id: 1,
            line: String::new(),
        };
        server.request(
            "initialize",
            json!({
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "pgmcp-bench", "version": "1"}
            }),
        )?;
        server.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))?;
        Ok((server, started.elapsed()))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn send(&mut self, message: &Value) -> anyhow::Result<()> {
        let mut text = message.to_string();
        text.push('\n');
        self.stdin
            .write_all(text.as_bytes())
            .context("writing to the server")?;
        self.stdin.flush().context("flushing to the server")
    }

    /// Sends one request and reads lines until its answer; notifications in between are skipped.
    pub fn request(&mut self, method: &str, params: Value) -> anyhow::Result<Answer> {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))?;
        loop {
            self.line.clear();
            let read = self
                .stdout
                .read_line(&mut self.line)
                .context("reading from the server")?;
            if read == 0 {
                bail!("the server closed stdout while {method} was pending");
            }
            let message: Value = serde_json::from_str(&self.line).with_context(|| {
                format!(
                    "the server wrote a line that is not JSON: {:.200}",
                    self.line
                )
            })?;
            if message.get("id").and_then(Value::as_u64) != Some(id) {
                continue;
            }
            if let Some(error) = message.get("error") {
                bail!("{method} failed: {error}");
            }
            return Ok(Answer {
                bytes: read,
                result: message.get("result").cloned().unwrap_or(Value::Null),
            });
        }
    }

    pub fn call_tool(&mut self, name: &str, arguments: Value) -> anyhow::Result<Answer> {
        let answer = self.request("tools/call", json!({"name": name, "arguments": arguments}))?;
        if answer.result.get("isError").and_then(Value::as_bool) == Some(true) {
            bail!(
                "{name} {arguments} returned an error: {:.400}",
                answer.result.to_string()
            );
        }
        Ok(answer)
    }
}

/// Removes the bench's own PG* variables and DATABASE_URL from a server's environment: the server must use only
/// what the bench passes it.
pub fn without_database_environment(command: &mut Command) {
    for (key, _) in std::env::vars() {
        if key.starts_with("PG") && key != "PGMCP_LOG" || key == "DATABASE_URL" {
            command.env_remove(key);
        }
    }
}

impl Drop for StdioServer {
    fn drop(&mut self) {
        // The figures are taken by now; a quick kill keeps one repetition's server from overlapping the next.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
