//! Reading a streamed answer: server-sent events split at arbitrary byte boundaries, each `data:` a chunk whose
//! deltas add text or pieces of tool calls (several calls interleaved by `index` when the model calls in parallel).

use super::wire::{Chunk, FunctionCall, ToolCall, Usage};

/// Splits a byte stream into SSE `data:` payloads; a payload may arrive over several reads.
#[derive(Default)]
pub struct SseReader {
    pending: Vec<u8>,
    data: String,
}

impl SseReader {
    /// Feeds bytes, returning every event completed by them.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<String> {
        self.pending.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !self.data.is_empty() {
                    events.push(std::mem::take(&mut self.data));
                }
            } else if let Some(value) = line.strip_prefix("data:") {
                if !self.data.is_empty() {
                    self.data.push('\n');
                }
                self.data.push_str(value.strip_prefix(' ').unwrap_or(value));
            }
            // `event:`, `id:`, `retry:` and comments carry nothing Chat Completions uses.
        }
        events
    }

    /// The last event when the stream ends without a blank line after it.
    pub fn finish(&mut self) -> Option<String> {
        let rest = String::from_utf8_lossy(&std::mem::take(&mut self.pending)).into_owned();
        if let Some(value) = rest.trim_end().strip_prefix("data:") {
            if !self.data.is_empty() {
                self.data.push('\n');
            }
            self.data.push_str(value.trim_start());
        }
        (!self.data.is_empty()).then(|| std::mem::take(&mut self.data))
    }
}

/// Builds the whole answer from its chunks.
#[derive(Default)]
pub struct Assembler {
    pub text: String,
    calls: Vec<(usize, ToolCall)>,
    pub finish_reason: Option<String>,
    pub usage: Option<Usage>,
}

impl Assembler {
    /// Adds one chunk, returning the text it adds (to show as it arrives).
    pub fn add(&mut self, chunk: Chunk) -> Option<String> {
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage);
        }
        let mut added = String::new();
        for choice in chunk.choices {
            if let Some(text) = choice.delta.content {
                added.push_str(&text);
            }
            for piece in choice.delta.tool_calls {
                let position = match self
                    .calls
                    .iter()
                    .position(|(index, _)| *index == piece.index)
                {
                    Some(position) => position,
                    None => {
                        self.calls.push((
                            piece.index,
                            ToolCall {
                                id: String::new(),
                                kind: "function".into(),
                                function: FunctionCall {
                                    name: String::new(),
                                    arguments: String::new(),
                                },
                            },
                        ));
                        self.calls.len() - 1
                    }
                };
                let call = &mut self.calls[position].1;
                if let Some(id) = piece.id.filter(|id| !id.is_empty()) {
                    call.id = id;
                }
                if let Some(function) = piece.function {
                    if let Some(name) = function.name {
                        call.function.name.push_str(&name);
                    }
                    if let Some(arguments) = function.arguments {
                        call.function.arguments.push_str(&arguments);
                    }
                }
            }
            if choice.finish_reason.is_some() {
                self.finish_reason = choice.finish_reason;
            }
        }
        self.text.push_str(&added);
        (!added.is_empty()).then_some(added)
    }

    /// The tool calls in the order the model numbered them. A call streamed without an id (some local servers do
    /// that) gets one, since the answer to it must name it.
    pub fn tool_calls(&mut self) -> Vec<ToolCall> {
        let mut calls = std::mem::take(&mut self.calls);
        calls.sort_by_key(|(index, _)| *index);
        calls
            .into_iter()
            .map(|(index, mut call)| {
                if call.id.is_empty() {
                    call.id = format!("call_{index}");
                }
                call
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(json: &str) -> Chunk {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn events_split_across_reads_are_joined() {
        let mut reader = SseReader::default();
        assert!(reader.feed(b"data: {\"a\"").is_empty());
        assert_eq!(
            reader.feed(b":1}\r\n\r\ndata: [DONE]\n\n"),
            vec!["{\"a\":1}", "[DONE]"]
        );
        assert_eq!(reader.finish(), None);
        assert!(reader.feed(b": keep-alive\n\ndata: x").is_empty());
        assert_eq!(reader.finish().as_deref(), Some("x"));
    }

    #[test]
    fn parallel_tool_calls_are_assembled_by_index() {
        let mut answer = Assembler::default();
        answer.add(chunk(r#"{"choices":[{"index":0,"delta":{"role":"assistant","tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"list_tables","arguments":""}},{"index":1,"id":"call_b","type":"function","function":{"name":"describe_table","arguments":"{\"ta"}}]}}]}"#));
        answer.add(chunk(r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"ble\":\"x\"}"}},{"index":0,"function":{"arguments":"{}"}}]},"finish_reason":"tool_calls"}]}"#));
        answer.add(chunk(
            r#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}"#,
        ));
        let calls = answer.tool_calls();
        assert_eq!(calls.len(), 2);
        assert_eq!(
            (calls[0].id.as_str(), calls[0].function.arguments.as_str()),
            ("call_a", "{}")
        );
        assert_eq!(calls[1].function.name, "describe_table");
        assert_eq!(calls[1].function.arguments, r#"{"table":"x"}"#);
        assert_eq!(answer.finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(answer.usage.unwrap().total_tokens, 12);
    }
}
