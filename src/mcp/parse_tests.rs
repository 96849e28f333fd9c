//! The vendored rmcp parses a client message by its `method` first (`ClientJsonRpcMessage::from_json_slice`, see
//! vendor/README.md). Every message a client can send must come out exactly as rmcp's derived parse makes it, or
//! fail with the same error: a request routed to another type, or a malformed message let through, would change
//! what the server does.

use proptest::prelude::*;
use rmcp::model::ClientJsonRpcMessage;

/// What a parse gave, comparable: the message's debug form and its JSON (the `_meta` lives in extensions, which
/// only serialization shows), or the error's text.
fn outcome(parsed: serde_json::Result<ClientJsonRpcMessage>) -> Result<(String, String), String> {
    parsed
        .map(|message| {
            let json = serde_json::to_string(&message).expect("a parsed message serializes");
            (format!("{message:?}"), json)
        })
        .map_err(|err| err.to_string())
}

fn assert_same(text: &str) {
    let derived = outcome(serde_json::from_slice(text.as_bytes()));
    let by_method = outcome(ClientJsonRpcMessage::from_json_slice(text.as_bytes()));
    assert_eq!(by_method, derived, "the two parses differ for {text}");
}

#[test]
fn the_requests_a_client_sends_parse_as_before() {
    for text in [
        r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"execute_query","arguments":{"sql":"SELECT 1","params":[1]}}}"#,
        r#"{"jsonrpc":"2.0","id":"a-1","method":"tools/call","params":{"name":"x","_meta":{"progressToken":3,"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}}"#,
        r#"{"method":"tools/call","params":{"name":"x"},"id":8,"jsonrpc":"2.0","extra":{"a":[1,2]}}"#,
        r#"{"jsonrpc":"2.0","id":9,"method":"tools/list"}"#,
        r#"{"jsonrpc":"2.0","id":9,"method":"tools/list","params":{"cursor":"c"}}"#,
        r#"{"jsonrpc":"2.0","id":10,"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":11,"method":"resources/read","params":{"uri":"pgmcp://x"}}"#,
        r#"{"jsonrpc":"2.0","id":12,"method":"resources/list","params":{}}"#,
        r#"{"jsonrpc":"2.0","id":13,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"c","version":"1"}}}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        r#"{"jsonrpc":"2.0","id":14,"result":{}}"#,
        // Malformed: each must be refused, or taken as another type, exactly as the derived parse does.
        r#"{"jsonrpc":"2.0","id":15,"method":"tools/call","params":{"name":"x"},"result":null}"#,
        r#"{"jsonrpc":"2.0","id":16,"method":"tools/call","params":{"name":"x"},"error":{"code":1,"message":"m"}}"#,
        r#"{"jsonrpc":"2.0","id":17,"method":"tools/call"}"#,
        r#"{"jsonrpc":"2.0","id":18,"method":"tools/call","params":{"name":5}}"#,
        r#"{"jsonrpc":"2.0","id":19,"method":"tools/call","params":{"name":"x"},"params":{"name":"y"}}"#,
        r#"{"jsonrpc":"2.0","id":20,"method":"tools/call","method":"ping","params":{"name":"x"}}"#,
        r#"{"jsonrpc":"1.0","id":21,"method":"tools/call","params":{"name":"x"}}"#,
        r#"{"id":22,"method":"tools/call","params":{"name":"x"}}"#,
        r#"{"jsonrpc":"2.0","id":1.5,"method":"tools/call","params":{"name":"x"}}"#,
        r#"{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{"name":"x"}}"#,
        r#"{"jsonrpc":"2.0","id":23,"method":"tools\/call","params":{"name":"x"}}"#,
        r#"{"jsonrpc":"2.0","id":24,"method":"ping","params":{"_meta":{"progressToken":"p"}}}"#,
        r#"{"jsonrpc":"2.0","id":25,"method":"vendor/custom","params":{"a":1}}"#,
        r#"[{"jsonrpc":"2.0","id":26,"method":"ping"}]"#,
        r#"{"jsonrpc":"2.0","id":27,"method":"tools/call","params":{"name":"x"}"#,
        // A tools/call's params are read directly, not through a flattened struct: only an object may pass, and
        // `_meta` must end up where the derived parse puts it.
        r#"{"jsonrpc":"2.0","id":28,"method":"tools/call","params":[null,"x"]}"#,
        r#"{"jsonrpc":"2.0","id":29,"method":"tools/call","params":[null,"x",null,null,null]}"#,
        r#"{"jsonrpc":"2.0","id":30,"method":"tools/call","params":"x"}"#,
        r#"{"jsonrpc":"2.0","id":31,"method":"tools/call","params":{"name":"x","_meta":null}}"#,
        r#"{"jsonrpc":"2.0","id":32,"method":"tools/call","params":{"name":"x","_meta":5}}"#,
        r#"{"jsonrpc":"2.0","id":33,"method":"tools/call","params":{"name":"x","_meta":{},"_meta":{}}}"#,
        r#"{"jsonrpc":"2.0","id":34,"method":"tools/call","params":{"_meta":{"progressToken":"t","x":[1.5,-2,18446744073709551616]},"name":"x","arguments":{"a":1,"a":2,"b":{"c":null}},"other":true}}"#,
        r#"{"jsonrpc":"2.0","id":35,"method":"tools/call","params":{"name":"x","arguments":null,"requestState":"s","inputResponses":{}}}"#,
        r#"{"jsonrpc":"2.0","id":36,"method":"tools/call","params":{"name":"x","arguments":[1]}}"#,
        r#"{"jsonrpc":"2.0","id":37,"method":"tools/call","params":{"name":"x","name":"y"}}"#,
        r#"{"jsonrpc":"2.0","id":38,"method":"tools/call","params":{"name":"x\u0041\"q"}}"#,
    ] {
        assert_same(text);
    }
}

/// A message's parts, each present or absent, valid or not, in any order and possibly twice.
fn message() -> impl Strategy<Value = String> {
    let jsonrpc = prop::sample::select(vec![r#""2.0""#, r#""1.0""#, "2", "null"]);
    let id = prop::sample::select(vec![
        "1",
        "-5",
        r#""abc""#,
        "1.5",
        "null",
        "18446744073709551615",
        "{}",
    ]);
    let method = prop::sample::select(vec![
        r#""tools/call""#,
        r#""tools/list""#,
        r#""ping""#,
        r#""resources/read""#,
        r#""resources/list""#,
        r#""initialize""#,
        r#""notifications/cancelled""#,
        r#""notifications/initialized""#,
        r#""x/custom""#,
        r#""tools\/call""#,
        "3",
        "null",
    ]);
    let params = prop::sample::select(vec![
        r#"{"name":"execute_query","arguments":{"sql":"SELECT 1"}}"#,
        r#"{"name":"q","_meta":{"progressToken":1}}"#,
        r#"{"_meta":{"traceparent":"t"},"arguments":{"sql":"SELECT 2","params":[1.25]},"name":"q"}"#,
        r#"{"name":"q","_meta":null,"arguments":null}"#,
        r#"{"name":"q","_meta":[]}"#,
        r#"[null,"q",{"a":1},null,null]"#,
        r#"{"name":7}"#,
        r#"{"uri":"pgmcp://db"}"#,
        r#"{"cursor":"next"}"#,
        r#"{"requestId":3,"reason":"r"}"#,
        r#"{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}"#,
        "{}",
        "null",
        "[1]",
    ]);
    let result = prop::sample::select(vec!["null", "{}", r#"{"content":[]}"#]);
    let error = prop::sample::select(vec!["null", r#"{"code":-32600,"message":"m"}"#]);
    let fields = (
        prop::option::weighted(0.9, jsonrpc),
        prop::option::weighted(0.8, id),
        prop::option::weighted(0.9, method),
        prop::option::weighted(0.7, params),
        prop::option::weighted(0.15, result),
        prop::option::weighted(0.1, error),
        prop::option::weighted(0.2, prop::sample::select(vec!["params", "method", "id"])),
    );
    (fields, any::<prop::sample::Index>()).prop_map(
        |((jsonrpc, id, method, params, result, error, repeated), shuffle)| {
            let mut entries: Vec<String> = [
                ("jsonrpc", jsonrpc),
                ("id", id),
                ("method", method),
                ("params", params),
                ("result", result),
                ("error", error),
            ]
            .into_iter()
            .filter_map(|(key, value)| value.map(|value| format!(r#""{key}":{value}"#)))
            .collect();
            if let Some(key) = repeated {
                entries.push(format!(r#""{key}":{{}}"#));
            }
            if !entries.is_empty() {
                let len = entries.len();
                entries.rotate_left(shuffle.index(len));
            }
            format!("{{{}}}", entries.join(","))
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]
    #[test]
    fn any_message_parses_by_method_as_the_derived_parse_does(text in message()) {
        assert_same(&text);
    }
}
