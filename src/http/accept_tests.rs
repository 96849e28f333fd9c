use super::*;

fn accepts(values: &[&str]) -> Accepts {
    let mut headers = HeaderMap::new();
    for value in values {
        headers.append(header::ACCEPT, HeaderValue::from_str(value).unwrap());
    }
    Accepts::of(&headers)
}

#[test]
fn no_accept_header_or_any_type_gets_json() {
    assert_eq!(accepts(&[]).wanted(), Some(Wanted::Json));
    assert_eq!(accepts(&["*/*"]).wanted(), Some(Wanted::Json));
    assert_eq!(accepts(&["application/json"]).wanted(), Some(Wanted::Json));
    assert_eq!(
        accepts(&["application/json, */*;q=0.5"]).wanted(),
        Some(Wanted::Json)
    );
    assert_eq!(accepts(&["application/*"]).wanted(), Some(Wanted::Json));
}

#[test]
fn a_streamable_http_client_gets_rmcp_answer_unchanged() {
    assert_eq!(
        accepts(&["application/json, text/event-stream"]).wanted(),
        None
    );
    assert_eq!(
        accepts(&["application/json", "text/event-stream"]).wanted(),
        None
    );
    assert_eq!(accepts(&["text/event-stream, */*"]).wanted(), None);
}

#[test]
fn a_client_taking_only_event_streams_gets_one() {
    assert_eq!(
        accepts(&["text/event-stream"]).wanted(),
        Some(Wanted::EventStream)
    );
    assert_eq!(
        accepts(&["text/event-stream, application/json;q=0"]).wanted(),
        Some(Wanted::EventStream)
    );
}

#[test]
fn refusing_both_is_neither() {
    for refusal in [
        &["text/html"][..],
        &["application/xml, text/plain"],
        &["application/json;q=0, text/event-stream;q=0.000"],
        &["*/*;q=0"],
    ] {
        let accepts = accepts(refusal);
        assert!(!accepts.json && !accepts.event_stream, "{refusal:?}");
    }
    // A weight that is not zero keeps the range.
    assert!(accepts(&["application/json;q=0.001"]).json);
    assert!(accepts(&["application/json; q=1"]).json);
}

#[test]
fn events_are_read_across_chunk_boundaries() {
    let mut reader = EventReader::default();
    assert!(
        reader
            .push(&Bytes::from_static(
                b"id: 0\nretry: 3000\ndata:\n\nevent: message\r\nda"
            ))
            .iter()
            .all(String::is_empty)
    );
    assert_eq!(
        reader.push(&Bytes::from_static(
            b"ta: {\"jsonrpc\":\"2.0\",\r\ndata: \"id\":1}\r\n\r\n: keep-alive\n\n"
        )),
        vec!["{\"jsonrpc\":\"2.0\",\n\"id\":1}".to_string()]
    );
}

#[test]
fn only_responses_and_errors_end_the_stream() {
    assert!(is_response(
        &json!({"jsonrpc": "2.0", "id": 1, "result": {}})
    ));
    assert!(is_response(
        &json!({"jsonrpc": "2.0", "id": 1, "error": {"code": 1, "message": "x"}})
    ));
    assert!(!is_response(
        &json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {}})
    ));
    assert!(!is_response(
        &json!({"jsonrpc": "2.0", "id": 7, "method": "sampling/createMessage", "params": {}})
    ));
}
