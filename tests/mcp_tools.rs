//! Every tool, called through the real binary by the official Rust MCP client, in both protocol eras.

mod common;

use common::{Era, call_err, call_ok, rows, serve_app};
use serde_json::json;

const TOOLS_IN_ORDER: [&str; 14] = [
    "server_info",
    "list_databases",
    "list_schemas",
    "list_tables",
    "describe_table",
    "search_tables",
    "get_table_stats",
    "read_table",
    "execute_query",
    "explain_query",
    "health_check",
    "top_queries",
    "activity",
    "index_advice",
];

#[tokio::test]
async fn tools_list_is_deterministic_with_schemas_and_read_only_annotations() {
    for era in [Era::Legacy, Era::Stateless] {
        let client = serve_app(era).await;
        let tools = client.list_all_tools().await.expect("tools/list");
        let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
        assert_eq!(names, TOOLS_IN_ORDER, "{era:?}");
        for tool in &tools {
            let annotations = tool.annotations.as_ref().expect("annotations");
            assert_eq!(annotations.read_only_hint, Some(true), "{}", tool.name);
            // Meaningful only for tools that write (MCP's ToolAnnotations), so not sent for these.
            assert_eq!(annotations.destructive_hint, None, "{}", tool.name);
            assert_eq!(annotations.open_world_hint, Some(false), "{}", tool.name);
            assert!(
                tool.description.as_ref().is_some_and(|d| d.len() > 80),
                "{} needs a real description",
                tool.name
            );
            assert_eq!(
                tool.input_schema.get("type"),
                Some(&json!("object")),
                "{}",
                tool.name
            );
            // Row answers are one text block, so only the other tools declare a structured output.
            assert_eq!(
                tool.output_schema.is_some(),
                !common::ROW_TOOLS.contains(&tool.name.as_ref()),
                "{} output schema",
                tool.name
            );
            // With a single profile there is nothing to choose, so the argument is not offered.
            let properties = tool
                .input_schema
                .get("properties")
                .and_then(|p| p.as_object());
            assert!(
                properties.is_none_or(|p| !p.contains_key("profile")),
                "{}",
                tool.name
            );
        }
        let execute = tools.iter().find(|t| t.name == "execute_query").unwrap();
        assert_eq!(execute.input_schema["required"], json!(["sql"]));
        assert_eq!(
            execute.input_schema["properties"]["limit"]["default"],
            json!(1000)
        );
        let limit = |tool: &str| {
            let tool = tools.iter().find(|t| t.name == tool).unwrap();
            tool.input_schema["properties"]["limit"].clone()
        };
        assert_eq!(limit("execute_query")["maximum"], json!(10000));
        assert_eq!(
            (
                limit("read_table")["default"].clone(),
                limit("read_table")["maximum"].clone()
            ),
            (json!(100), json!(10000))
        );
        // The catalog tools' limits are their own, not the profile's row ceiling.
        assert_eq!(limit("list_tables")["maximum"], json!(5000));
        assert_eq!(limit("search_tables")["maximum"], json!(1000));
        assert_eq!(limit("top_queries")["maximum"], json!(100));
        client.cancel().await.ok();
    }
}

/// The whole `tools/list` answer of the default server (one read-only profile, no curated tools), as bytes on the
/// wire. Every client downloads it and most hand the names, descriptions and input schemas to a model on every
/// turn: BENCHMARKS.md ("The tool list") measures it at about 15.4 KB and 2,300 model-facing tokens, down from 45.9
/// KB and 3,900. A new tool or a longer description that pushes it past 16 KB must take words out elsewhere.
const TOOLS_LIST_MAX_BYTES: usize = 16_000;

#[tokio::test]
async fn tools_list_stays_small_and_every_tool_keeps_its_description_schema_and_annotations() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_pgmcp"))
        .args(["serve", "--database-url", &common::reader_url()])
        .env("PGMCP_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn pgmcp");
    let mut stdin = server.stdin.take().unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let requests = [
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "size-check", "version": "1"}}}),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
    ];
    for request in requests {
        stdin
            .write_all(format!("{request}\n").as_bytes())
            .await
            .unwrap();
    }
    stdin.flush().await.unwrap();
    let listed = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            let line = lines.next_line().await.unwrap().expect("pgmcp answers");
            if serde_json::from_str::<serde_json::Value>(&line).unwrap()["id"] == json!(2) {
                return line;
            }
        }
    })
    .await
    .expect("tools/list answered within 30 s");
    assert!(
        listed.len() <= TOOLS_LIST_MAX_BYTES,
        "tools/list is {} bytes, more than {TOOLS_LIST_MAX_BYTES}",
        listed.len()
    );
    let answer: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let tools = answer["result"]["tools"].as_array().expect("tools");
    assert_eq!(tools.len(), TOOLS_IN_ORDER.len());
    for tool in tools {
        let name = tool["name"].as_str().unwrap();
        let description = tool["description"].as_str().unwrap_or_default();
        assert!(description.len() > 80, "{name}: {description:?}");
        assert_eq!(tool["inputSchema"]["type"], json!("object"), "{name}");
        assert_eq!(tool["annotations"]["readOnlyHint"], json!(true), "{name}");
        assert!(tool["title"].is_string(), "{name}");
        // What the size pass removes: Rust's view of the schema, never a client's or a model's.
        let text = tool.to_string();
        for restatement in [
            "$schema",
            "\"format\":\"int",
            "\"format\":\"uint",
            "\"format\":\"double",
            "\"$defs\"",
        ] {
            assert!(
                !text.contains(restatement),
                "{name} still has {restatement}"
            );
        }
        // Every parameter is either self-explanatory by name and schema or described.
        for (parameter, schema) in tool["inputSchema"]["properties"].as_object().unwrap() {
            let described = schema.get("description").is_some();
            let plain =
                ["limit", "offset", "order_by", "include_idle"].contains(&parameter.as_str());
            assert!(described || plain, "{name}.{parameter} has no description");
        }
    }
    drop(stdin);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), server.wait()).await;
}

#[tokio::test]
async fn the_contract_check_catches_an_answer_that_breaks_its_output_schema() {
    let client = serve_app(Era::Legacy).await;
    let tools = client.list_all_tools().await.expect("tools/list");
    let schema = common::contract::output_schema(&tools, "describe_table").unwrap();
    let answer = call_ok(&client, "describe_table", json!({"table": "books"})).await;
    assert_eq!(common::contract::validate(&answer, &schema), Ok(()));
    let mut missing = answer.clone();
    missing.as_object_mut().unwrap().remove("columns");
    assert!(common::contract::validate(&missing, &schema).is_err());
    let mut mistyped = answer.clone();
    mistyped["columns"] = json!("id, title");
    assert!(common::contract::validate(&mistyped, &schema).is_err());
    let mut unknown_kind = answer;
    unknown_kind["kind"] = json!("index");
    assert!(common::contract::validate(&unknown_kind, &schema).is_err());
    client.cancel().await.ok();
}

#[tokio::test]
async fn execute_query_returns_typed_rows_in_both_eras() {
    for era in [Era::Legacy, Era::Stateless] {
        let client = serve_app(era).await;
        let result = call_ok(
            &client,
            "execute_query",
            json!({"sql": "SELECT id, title, price FROM books WHERE author_id = $1 ORDER BY id LIMIT 3", "params": [1]}),
        )
        .await;
        assert_eq!(
            result["columns"],
            json!([{"name": "id", "type": "int4"}, {"name": "title", "type": "text"}, {"name": "price", "type": "numeric"}])
        );
        assert_eq!(
            rows(&result),
            &vec![
                json!([2, "Book 2", "2.50"]),
                json!([4, "Book 4", "5.00"]),
                json!([6, "Book 6", "7.50"])
            ]
        );
        assert_eq!(result["truncated"], json!(false));
        assert_eq!(result["row_count"], json!(3));
        client.cancel().await.ok();
    }
}

#[tokio::test]
async fn postgres_errors_carry_sqlstate_message_and_position() {
    let client = serve_app(Era::Legacy).await;
    let err = call_err(
        &client,
        "execute_query",
        json!({"sql": "SELECT nope FROM books"}),
    )
    .await;
    assert_eq!(err["error"], json!("database"));
    assert_eq!(err["sqlstate"], json!("42703"));
    assert_eq!(err["position"], json!(8));
    assert!(err["message"].as_str().unwrap().contains("nope"));

    let err = call_err(
        &client,
        "execute_query",
        json!({"sql": "SELECT * FROM secrets_missing"}),
    )
    .await;
    assert_eq!(err["sqlstate"], json!("42P01"));

    let err = call_err(
        &client,
        "execute_query",
        json!({"sql": "DELETE FROM books"}),
    )
    .await;
    assert_eq!(err["error"], json!("rejected"));
    assert!(
        err["reason"].as_str().unwrap().contains("only SELECT"),
        "{err}"
    );

    // The session is still usable after errors.
    let ok = call_ok(
        &client,
        "execute_query",
        json!({"sql": "SELECT count(*) FROM books"}),
    )
    .await;
    assert_eq!(rows(&ok)[0], json!([250]));
    client.cancel().await.ok();
}

#[tokio::test]
async fn limit_truncates_and_flags_it() {
    let client = serve_app(Era::Stateless).await;
    let result = call_ok(
        &client,
        "execute_query",
        json!({"sql": "SELECT id FROM books ORDER BY id", "limit": 5}),
    )
    .await;
    assert_eq!(result["row_count"], json!(5));
    assert_eq!(result["truncated"], json!(true));
    assert_eq!(result["truncated_by"], json!("max_rows"));
    let exact = call_ok(
        &client,
        "execute_query",
        json!({"sql": "SELECT id FROM books ORDER BY id LIMIT 5", "limit": 5}),
    )
    .await;
    assert_eq!(
        exact["truncated"],
        json!(false),
        "exactly `limit` rows is not truncation"
    );
    let err = call_err(
        &client,
        "execute_query",
        json!({"sql": "SELECT 1", "limit": 1_000_000}),
    )
    .await;
    assert!(
        err["message"].as_str().unwrap().contains("ceiling"),
        "{err}"
    );
    client.cancel().await.ok();
}

#[tokio::test]
async fn read_table_pages_in_primary_key_order_and_validates_names() {
    let client = serve_app(Era::Legacy).await;
    let first = call_ok(
        &client,
        "read_table",
        json!({"table": "books", "columns": ["id", "title"], "limit": 100}),
    )
    .await;
    assert_eq!(first["row_count"], json!(100));
    assert_eq!(first["truncated"], json!(true));
    assert_eq!(first["next_offset"], json!(100));
    assert_eq!(rows(&first)[0], json!([1, "Book 1"]));
    let last = call_ok(
        &client,
        "read_table",
        json!({"table": "public.books", "columns": ["id"], "limit": 100, "offset": 200}),
    )
    .await;
    assert_eq!(last["row_count"], json!(50));
    assert_eq!(last["truncated"], json!(false));
    assert_eq!(rows(&last)[49], json!([250]));
    let ordered = call_ok(
        &client,
        "read_table",
        json!({"table": "books", "columns": ["id"], "order_by": ["id desc"], "limit": 2}),
    )
    .await;
    assert_eq!(rows(&ordered), &vec![json!([250]), json!([249])]);
    let err = call_err(
        &client,
        "read_table",
        json!({"table": "books", "columns": ["id; DROP TABLE books"]}),
    )
    .await;
    assert!(
        err["message"].as_str().unwrap().contains("does not exist"),
        "{err}"
    );
    let err = call_err(&client, "read_table", json!({"table": "no_such_table"})).await;
    assert!(
        err["message"].as_str().unwrap().contains("list_tables"),
        "{err}"
    );
    client.cancel().await.ok();
}

#[tokio::test]
async fn explain_query_returns_json_plan_and_text_tree() {
    let client = serve_app(Era::Legacy).await;
    let plan = call_ok(
        &client,
        "explain_query",
        json!({"sql": "SELECT * FROM books WHERE author_id = $1", "params": [1]}),
    )
    .await;
    assert!(plan["plan"]["Plan"]["Node Type"].is_string(), "{plan}");
    assert!(plan["text"].as_str().unwrap().contains("cost="), "{plan}");
    assert_eq!(plan["analyzed"], json!(false));
    let analyzed = call_ok(
        &client,
        "explain_query",
        json!({"sql": "SELECT count(*) FROM books", "analyze": true}),
    )
    .await;
    assert!(analyzed["plan"]["Execution Time"].is_number(), "{analyzed}");
    assert!(analyzed["text"].as_str().unwrap().contains("actual time="));
    let err = call_err(
        &client,
        "explain_query",
        json!({"sql": "DELETE FROM canary", "analyze": true}),
    )
    .await;
    assert_eq!(err["error"], json!("rejected"));
    client.cancel().await.ok();
}

#[tokio::test]
async fn catalog_tools_describe_the_fixture_schema() {
    let client = serve_app(Era::Stateless).await;
    let schemas = call_ok(&client, "list_schemas", json!({})).await;
    assert!(schemas.to_string().contains("\"public\""), "{schemas}");
    let tables = call_ok(&client, "list_tables", json!({"schema": "public"})).await;
    let text = tables.to_string();
    for name in ["authors", "books", "book_titles", "canary"] {
        assert!(
            text.contains(&format!("\"{name}\"")),
            "{name} missing from {text}"
        );
    }
    let books = call_ok(&client, "describe_table", json!({"table": "books"})).await;
    let text = books.to_string();
    assert!(text.contains("books_author_idx"), "{text}");
    assert!(text.contains("authors"), "foreign key target named: {text}");
    let authors = call_ok(&client, "describe_table", json!({"table": "authors"})).await;
    assert!(
        authors.to_string().contains("books"),
        "incoming foreign key listed: {authors}"
    );
    let found = call_ok(&client, "search_tables", json!({"term": "author"})).await;
    assert!(found.to_string().contains("author_id"), "{found}");
    let stats = call_ok(&client, "get_table_stats", json!({"table": "books"})).await;
    assert!(stats.to_string().contains("250"), "exact count in {stats}");
    let databases = call_ok(&client, "list_databases", json!({})).await;
    assert!(databases.to_string().contains("\"app\""), "{databases}");
    let info = call_ok(&client, "server_info", json!({})).await;
    let text = info.to_string();
    assert!(text.contains("\"reader\""), "current user in {text}");
    assert!(text.contains("read_only"), "access mode in {text}");
    // On stdio the caller is whoever started pgmcp.
    assert_eq!(info["caller"]["kind"], json!("local"), "{text}");
    client.cancel().await.ok();
}

#[tokio::test]
async fn table_schemas_are_resources() {
    let client = serve_app(Era::Legacy).await;
    let templates = client
        .list_resource_templates(None)
        .await
        .expect("templates");
    assert_eq!(
        templates.resource_templates[0].uri_template,
        "pgmcp://{profile}/tables/{schema}/{table}"
    );
    let resources = client.list_resources(None).await.expect("resources");
    let uri = resources
        .resources
        .iter()
        .map(|r| r.uri.clone())
        .find(|u| u.ends_with("/tables/public/books"))
        .expect("books is a resource");
    let read = client
        .read_resource(rmcp::model::ReadResourceRequestParams::new(uri))
        .await
        .expect("resources/read");
    let text = match &read.contents[0] {
        rmcp::model::ResourceContents::TextResourceContents { text, .. } => text.clone(),
        other => panic!("expected text, got {other:?}"),
    };
    assert!(text.contains("books_author_idx"), "{text}");
    client.cancel().await.ok();
}

/// Without a policy (stdio) every profile's tables are resources, not only the default profile's.
#[tokio::test]
async fn resources_cover_every_profile() {
    let c = common::cluster();
    let config = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(
        config.path(),
        format!(
            "default_profile = \"library\"\n\
             [profiles.library]\nurl = \"{}\"\n\
             [profiles.admin]\nurl = \"postgresql://writer@{}:{}/app\"\n",
            common::reader_url(),
            c.host(),
            c.port()
        ),
    )
    .unwrap();
    let client = common::spawn(
        &["serve", "--config", config.path().to_str().unwrap()],
        &[],
        Era::Stateless,
    )
    .await;
    let uris: Vec<String> = client
        .list_resources(None)
        .await
        .expect("resources/list")
        .resources
        .into_iter()
        .map(|r| r.uri)
        .collect();
    for profile in ["library", "admin"] {
        let books = format!("pgmcp://{profile}/tables/public/books");
        assert!(uris.contains(&books), "{books} in {uris:?}");
    }
    let read = client
        .read_resource(rmcp::model::ReadResourceRequestParams::new(
            "pgmcp://admin/tables/public/books",
        ))
        .await
        .expect("resources/read on the second profile");
    assert!(format!("{:?}", read.contents[0]).contains("books_author_idx"));
    client.cancel().await.ok();
}
