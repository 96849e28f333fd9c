//! Curated tools as a team declares them in `[[tools]]`: the schema clients see, every parameter type bound and
//! checked against PostgreSQL, arguments refused before the database, statements and declarations that fail the
//! start with the tool's name and the fix, and `--tools curated` leaving agents no SQL of their own.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use common::{Client, Era, call_err, call_ok, cluster, reader_url, rows, spawn};
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};

/// A config file: one profile `main` on `url` (with `extra` profile keys), then `tools`.
fn config(url: &str, extra: &str, tools: &str) -> tempfile::NamedTempFile {
    config_with("", url, extra, tools)
}

/// Like `config`, with top-level keys (which TOML wants before the first table).
fn config_with(top: &str, url: &str, extra: &str, tools: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new()
        .suffix(".toml")
        .tempfile()
        .expect("temp config");
    write!(
        file,
        "{top}\n[profiles.main]\nurl = \"{url}\"\nconnect_timeout = \"2s\"\n{extra}\n{tools}"
    )
    .expect("write config");
    file
}

fn path(file: &tempfile::NamedTempFile) -> &str {
    file.path().to_str().expect("utf-8 path")
}

const BOOKS_BY_AUTHOR: &str = r#"
[[tools]]
name = "books_by_author"
description = "Books of one author, cheapest first."
sql = "SELECT id, title, price FROM books WHERE author_id = $1 AND price <= $2 ORDER BY price, id LIMIT $3"
parameters = [
  { name = "author_id", type = "integer", description = "The author's id", minimum = 1 },
  { name = "max_price", type = "number", description = "Highest price", default = 1000 },
  { name = "limit", type = "integer", description = "How many books", default = 3, minimum = 1, maximum = 50 },
]
"#;

async fn serve(config: &tempfile::NamedTempFile, extra_args: &[&str]) -> Client {
    let mut args = vec!["serve", "--config", path(config)];
    args.extend_from_slice(extra_args);
    spawn(&args, &[], Era::Legacy).await
}

/// A curated tool's answer: execute_query's, one text block of rows and no structured copy.
async fn curated_ok(client: &Client, tool: &str, arguments: Value) -> Value {
    let result = common::call(client, tool, arguments.clone()).await;
    assert_ne!(
        result.is_error,
        Some(true),
        "{tool} {arguments}: {result:?}"
    );
    common::answer_of("execute_query", &result)
}

async fn tool_names(client: &Client) -> Vec<String> {
    let tools = client.list_all_tools().await.expect("tools/list");
    tools.into_iter().map(|t| t.name.to_string()).collect()
}

#[tokio::test]
async fn a_curated_tool_is_listed_with_its_generated_schema_and_answers_like_execute_query() {
    let file = config(&reader_url(), "", BOOKS_BY_AUTHOR);
    let client = serve(&file, &[]).await;
    let tools = client.list_all_tools().await.expect("tools/list");
    let tool = tools
        .iter()
        .find(|t| t.name == "books_by_author")
        .expect("the curated tool is listed");
    assert!(
        tools.iter().any(|t| t.name == "execute_query"),
        "built-in tools stay by default"
    );
    assert_eq!(
        tool.description.as_deref(),
        Some("Books of one author, cheapest first.")
    );
    assert_eq!(
        Value::Object(tool.input_schema.as_ref().clone()),
        json!({
            "type": "object",
            "properties": {
                "author_id": {"type": "integer", "minimum": 1, "description": "The author's id"},
                "max_price": {"type": "number", "description": "Highest price", "default": 1000},
                "limit": {"type": "integer", "minimum": 1, "maximum": 50, "description": "How many books", "default": 3},
            },
            "required": ["author_id"],
            "additionalProperties": false,
        })
    );
    let annotations = tool.annotations.as_ref().expect("annotations");
    assert_eq!(annotations.read_only_hint, Some(true));
    assert_eq!(
        annotations.destructive_hint, None,
        "meaningful only for writes"
    );
    assert!(tool.output_schema.is_none(), "rows travel once, as text");

    let answer = call_ok(&client, "execute_query", json!({"sql": "SELECT 1"})).await;
    assert_eq!(rows(&answer), &vec![json!([1])]);
    let answer = curated_ok(
        &client,
        "books_by_author",
        json!({"author_id": 2, "limit": 2}),
    )
    .await;
    assert_eq!(
        answer,
        json!({
            "columns": [{"name": "id", "type": "int4"}, {"name": "title", "type": "text"}, {"name": "price", "type": "numeric"}],
            "rows": [[1, "Book 1", "1.25"], [3, "Book 3", "3.75"]],
            "row_count": 2,
            "truncated": false,
        })
    );
    client.cancel().await.expect("close");
}

/// Each placeholder is typed by PostgreSQL from where it stands (a column compared with it) or by its cast.
const EVERY_TYPE: &str = r#"
[[tools]]
name = "echo_types"
description = "Echoes one value of each parameter type as PostgreSQL received it."
sql = """
SELECT $1::int4 AS integer,
       (SELECT count(*) FROM books WHERE id::int8 = $2) AS by_int8,
       $3::numeric + 0.5 AS number,
       $4::float8 * 2 AS float8,
       upper($5::text) AS string,
       (SELECT count(*) FROM books WHERE title::varchar = $6) AS by_varchar,
       NOT $7::boolean AS boolean,
       (SELECT count(*) FROM books WHERE published = $8) AS by_date,
       $9::timestamp + interval '1 hour' AS timestamp,
       $10::timestamptz AS timestamptz,
       $11::uuid AS uuid,
       (SELECT count(*) FROM books WHERE id = ANY($12)) AS by_int_array,
       $13::text[] AS text_array
"""
parameters = [
  { name = "i4", type = "integer" },
  { name = "i8", type = "integer" },
  { name = "n", type = "number" },
  { name = "f8", type = "number" },
  { name = "s", type = "string", max_length = 10 },
  { name = "vc", type = "string" },
  { name = "b", type = "boolean" },
  { name = "d", type = "date" },
  { name = "ts", type = "timestamp" },
  { name = "tz", type = "timestamptz" },
  { name = "u", type = "uuid" },
  { name = "ids", type = "integer[]" },
  { name = "texts", type = "string[]" },
]
"#;

#[tokio::test]
async fn every_parameter_type_is_bound_as_the_type_postgresql_infers() {
    let file = config(&reader_url(), "", EVERY_TYPE);
    let client = serve(&file, &[]).await;
    let result = common::call(
        &client,
        "echo_types",
        json!({
            "i4": 7, "i8": 3, "n": 1.25, "f8": 2.5, "s": "abc", "vc": "Book 5", "b": false,
            "d": "1960-01-03", "ts": "2024-02-28T23:30:00", "tz": "2024-02-28T12:00:00+02:00",
            "u": "0f8fad5b-d9cb-469f-a165-70867728950e", "ids": [1, 2, 999], "texts": ["a \"q\"", "b,c"],
        }),
    )
    .await;
    assert_ne!(result.is_error, Some(true), "{result:?}");
    let answer = common::answer_of("execute_query", &result);
    let columns: Vec<(&str, &str)> = answer["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["type"].as_str().unwrap()))
        .collect();
    assert_eq!(
        columns,
        vec![
            ("integer", "int4"),
            ("by_int8", "int8"),
            ("number", "numeric"),
            ("float8", "float8"),
            ("string", "text"),
            ("by_varchar", "int8"),
            ("boolean", "bool"),
            ("by_date", "int8"),
            ("timestamp", "timestamp"),
            ("timestamptz", "timestamptz"),
            ("uuid", "uuid"),
            ("by_int_array", "int8"),
            ("text_array", "text[]"),
        ]
    );
    assert_eq!(
        rows(&answer)[0],
        json!([
            7,
            1,
            "1.75",
            5.0,
            "ABC",
            1,
            true,
            1,
            "2024-02-29T00:30:00",
            "2024-02-28T10:00:00Z",
            "0f8fad5b-d9cb-469f-a165-70867728950e",
            2,
            ["a \"q\"", "b,c"]
        ])
    );
    client.cancel().await.expect("close");
}

#[tokio::test]
async fn arguments_are_refused_by_their_declaration_without_reaching_the_database() {
    // Nothing listens on this port: an argument error that reached for the database would say it is unavailable.
    let closed = common::free_port();
    let url = format!("postgresql://reader@127.0.0.1:{closed}/app");
    let tools = format!(
        "{BOOKS_BY_AUTHOR}\n{}",
        r#"
[[tools]]
name = "by_status"
description = "Rows of one status."
sql = "SELECT $1::text AS status, $2::text AS code, $3::date AS day, $4::int[] AS ids"
parameters = [
  { name = "status", type = "string", enum = ["open", "closed"] },
  { name = "code", type = "string", pattern = "^[A-Z]{3}$", max_length = 3, default = "ABC" },
  { name = "day", type = "date", default = "2024-01-01" },
  { name = "ids", type = "integer[]", minimum = 1, default = [1] },
]
"#
    );
    let file = config(&url, "", &tools);
    let client = serve(&file, &[]).await;
    let cases = [
        (
            "books_by_author",
            json!({}),
            "missing required argument `author_id`",
        ),
        (
            "books_by_author",
            json!({"author_id": 0}),
            "`author_id` must be at least 1, got 0",
        ),
        (
            "books_by_author",
            json!({"author_id": 1, "limit": 51}),
            "`limit` must be at most 50, got 51",
        ),
        (
            "books_by_author",
            json!({"author_id": "1"}),
            "`author_id` must be an integer, got a string",
        ),
        (
            "books_by_author",
            json!({"author_id": 1.5}),
            "`author_id` must be an integer, got a number",
        ),
        (
            "books_by_author",
            json!({"author_id": 1, "max_price": true}),
            "`max_price` must be a number, got a boolean",
        ),
        (
            "books_by_author",
            json!({"author_id": 1, "sql": "SELECT 1"}),
            "unknown argument `sql`; this tool takes: author_id, max_price, limit",
        ),
        (
            "by_status",
            json!({"status": "pending"}),
            "`status` must be one of open, closed, got \"pending\"",
        ),
        (
            "by_status",
            json!({"status": "open", "code": "ab1"}),
            "`code` must match the pattern \"^[A-Z]{3}$\", got \"ab1\"",
        ),
        (
            "by_status",
            json!({"status": "open", "code": "ABCD"}),
            "`code` must be at most 3 characters long, got 4",
        ),
        (
            "by_status",
            json!({"status": "open", "day": "2024-13-01"}),
            "`day` must be a date written YYYY-MM-DD, got \"2024-13-01\"",
        ),
        (
            "by_status",
            json!({"status": "open", "ids": [1, 0]}),
            "`ids` element 1 must be at least 1, got 0",
        ),
        (
            "by_status",
            json!({"status": "open", "ids": 1}),
            "`ids` must be an array of integers, got an integer",
        ),
        (
            "by_status",
            json!({"status": null}),
            "`status` must be a string, got null",
        ),
    ];
    for (tool, arguments, message) in cases {
        let error = call_err(&client, tool, arguments.clone()).await;
        assert_eq!(
            error,
            json!({"error": "invalid_argument", "message": message}),
            "{tool} {arguments}"
        );
    }
    // Valid arguments do reach for the database, which is down: the refusals above were decided before it.
    let error = call_err(&client, "books_by_author", json!({"author_id": 1})).await;
    assert_eq!(error["error"], "unavailable", "{error}");
    client.cancel().await.expect("close");
}

#[tokio::test]
async fn tools_curated_leaves_only_the_curated_tools() {
    let file = config(&reader_url(), "", BOOKS_BY_AUTHOR);
    let client = serve(&file, &["--tools", "curated"]).await;
    assert_eq!(tool_names(&client).await, vec!["books_by_author"]);
    for (tool, arguments) in [
        ("execute_query", json!({"sql": "SELECT * FROM secrets"})),
        ("read_table", json!({"table": "secrets"})),
        ("list_tables", json!({})),
    ] {
        let mut params = CallToolRequestParams::new(tool);
        params.arguments = arguments.as_object().cloned();
        let error = client
            .call_tool(params)
            .await
            .expect_err("a tool not exposed is unknown");
        assert!(
            error
                .to_string()
                .contains(&format!("unknown tool `{tool}`")),
            "{error}"
        );
    }
    let answer = curated_ok(
        &client,
        "books_by_author",
        json!({"author_id": 1, "limit": 1}),
    )
    .await;
    assert_eq!(rows(&answer), &vec![json!([2, "Book 2", "2.50"])]);
    client.cancel().await.expect("close");

    // A list names exactly what is offered, curated and built-in alike.
    let listed = config_with(
        "tools_exposed = [\"list_tables\", \"books_by_author\"]",
        &reader_url(),
        "",
        BOOKS_BY_AUTHOR,
    );
    let client = serve(&listed, &[]).await;
    assert_eq!(
        tool_names(&client).await,
        vec!["list_tables", "books_by_author"]
    );
    client.cancel().await.expect("close");
    // The flag wins over the file.
    let client = serve(&listed, &["--tools", "builtin"]).await;
    let names = tool_names(&client).await;
    assert!(
        names.contains(&"execute_query".to_string())
            && !names.contains(&"books_by_author".to_string()),
        "{names:?}"
    );
    client.cancel().await.expect("close");
}

/// Runs `pgmcp serve` with the config on a closed stdin and returns how it ended.
fn start(config: &tempfile::NamedTempFile, extra_args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pgmcp"));
    command
        .args(["serve", "--config", path(config)])
        .args(extra_args)
        .env("PGMCP_LOG", "warn")
        .stdin(Stdio::null());
    for (key, _) in std::env::vars() {
        if key.starts_with("PG") || key == "DATABASE_URL" {
            command.env_remove(key);
        }
    }
    command.output().expect("run pgmcp")
}

fn assert_fails_to_start(output: &Output, expected: &[&str]) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(1),
        "exit status; stderr: {stderr}"
    );
    for part in expected {
        assert!(stderr.contains(part), "stderr lacks {part:?}: {stderr}");
    }
}

fn one_tool(name: &str, sql: &str, parameters: &str) -> String {
    format!(
        "[[tools]]\nname = \"{name}\"\ndescription = \"A tool.\"\nsql = \"{sql}\"\nparameters = [{parameters}]\n"
    )
}

#[test]
fn a_statement_the_guard_rejects_fails_the_start() {
    let _ = cluster();
    let delete = config(
        &reader_url(),
        "",
        &one_tool(
            "purge",
            "DELETE FROM books WHERE id = $1",
            "{ name = \"id\", type = \"integer\" }",
        ),
    );
    assert_fails_to_start(
        &start(&delete, &[]),
        &[
            "invalid `tools.purge.sql`",
            "rejected by the SQL guard of profile `main`",
            "access_mode = \"read_write\" if it must write",
        ],
    );
    let terminate = config(
        &reader_url(),
        "",
        &one_tool("stop", "SELECT (1).pg_terminate_backend", ""),
    );
    assert_fails_to_start(
        &start(&terminate, &[]),
        &["`tools.stop.sql`", "pg_terminate_backend"],
    );
}

#[test]
fn a_type_postgresql_does_not_infer_fails_the_start() {
    let _ = cluster();
    let mismatch = config(
        &reader_url(),
        "",
        &one_tool(
            "by_title",
            "SELECT id FROM books WHERE title = $1",
            "{ name = \"title\", type = \"integer\" }",
        ),
    );
    assert_fails_to_start(
        &start(&mismatch, &[]),
        &[
            "curated tool `by_title`",
            "parameter `title` is declared integer, but PostgreSQL expects text for $1",
            "declare it as type = \"string\"",
        ],
    );
    let unknown_column = config(
        &reader_url(),
        "",
        &one_tool(
            "by_isbn",
            "SELECT id FROM books WHERE isbn = $1",
            "{ name = \"isbn\", type = \"string\" }",
        ),
    );
    assert_fails_to_start(
        &start(&unknown_column, &[]),
        &[
            "curated tool `by_isbn`",
            "PostgreSQL cannot prepare the statement",
            "isbn",
        ],
    );
}

#[test]
fn declarations_that_cannot_work_fail_the_start_with_the_fix() {
    let _ = cluster();
    let url = reader_url();
    let param = "{ name = \"id\", type = \"integer\" }";
    let cases = [
        (
            one_tool("execute_query", "SELECT $1::int", param),
            vec![
                "`tools.execute_query.name`",
                "a built-in tool has this name",
            ],
        ),
        (
            format!(
                "{}{}",
                one_tool("twice", "SELECT $1::int", param),
                one_tool("twice", "SELECT $1::int", param)
            ),
            vec!["`tools.twice.name`", "two [[tools]] have this name"],
        ),
        (
            one_tool("short", "SELECT $1::int, $2::int", param),
            vec![
                "`tools.short.parameters`",
                "uses $2, which has no declared parameter",
            ],
        ),
        (
            one_tool("unused", "SELECT 1", param),
            vec!["`tools.unused.parameters`", "the statement has no $1"],
        ),
        (
            one_tool(
                "bad_type",
                "SELECT $1::int",
                "{ name = \"id\", type = \"int\" }",
            ),
            vec![
                "`tools.bad_type.parameters[0].type`",
                "not a parameter type",
                "integer, number, string",
            ],
        ),
        (
            one_tool(
                "bad_default",
                "SELECT $1::int",
                "{ name = \"id\", type = \"integer\", maximum = 5, default = 9 }",
            ),
            vec![
                "`tools.bad_default.parameters[0].default`",
                "must be at most 5",
            ],
        ),
        (
            one_tool(
                "bad_pattern",
                "SELECT $1::text",
                "{ name = \"s\", type = \"string\", pattern = \"(\" }",
            ),
            vec![
                "`tools.bad_pattern.parameters[0].pattern`",
                "not a regular expression",
            ],
        ),
        (
            one_tool(
                "misplaced",
                "SELECT $1::int",
                "{ name = \"id\", type = \"integer\", max_length = 3 }",
            ),
            vec![
                "`tools.misplaced.parameters[0].max_length`",
                "applies to string parameters",
            ],
        ),
    ];
    for (tools, expected) in cases {
        let file = config(&url, "", &tools);
        assert_fails_to_start(&start(&file, &[]), &expected);
    }
    let nothing = config_with("tools_exposed = \"curated\"", &url, "", "");
    assert_fails_to_start(
        &start(&nothing, &[]),
        &["`tools_exposed`", "no curated tools are configured"],
    );
    let file = config(&url, "", &one_tool("fine", "SELECT $1::int", param));
    assert_fails_to_start(
        &start(&file, &["--tools", "fine,nope"]),
        &["`--tools`", "\"nope\"", "no tool has this name"],
    );
}

#[tokio::test]
async fn a_curated_write_runs_only_on_a_read_write_profile_and_is_marked_destructive() {
    let c = cluster();
    let writer = format!("postgresql://writer@{}:{}/app", c.host(), c.port());
    let tools = one_tool(
        "rename_canary",
        "UPDATE canary SET note = $2 WHERE id = $1 RETURNING id, note",
        "{ name = \"id\", type = \"integer\", minimum = 1000 }, { name = \"note\", type = \"string\" }",
    );
    let file = config(&writer, "access_mode = \"read_write\"", &tools);
    let client = serve(&file, &[]).await;
    let tools = client.list_all_tools().await.expect("tools/list");
    let tool = tools
        .iter()
        .find(|t| t.name == "rename_canary")
        .expect("listed");
    let annotations = tool.annotations.as_ref().expect("annotations");
    assert_eq!(
        (annotations.read_only_hint, annotations.destructive_hint),
        (Some(false), Some(true))
    );
    let observer = common::observer().await;
    observer
        .execute("INSERT INTO canary VALUES (1001, 'before') ON CONFLICT (id) DO UPDATE SET note = 'before'", &[])
        .await
        .unwrap();
    let answer = curated_ok(
        &client,
        "rename_canary",
        json!({"id": 1001, "note": "after"}),
    )
    .await;
    assert_eq!(rows(&answer), &vec![json!([1001, "after"])]);
    assert_eq!(answer["rows_affected"], 1);
    let note: String = observer
        .query_one("SELECT note FROM canary WHERE id = 1001", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(note, "after", "the write was committed");
    observer
        .execute("DELETE FROM canary WHERE id = 1001", &[])
        .await
        .unwrap();
    client.cancel().await.expect("close");
}

#[tokio::test]
async fn the_readme_example_serves_the_demo_sample() {
    let readme = include_str!("../README.md");
    let section = &readme[readme.find("### Curated tools").expect("README section")..];
    let start = section.find("```toml\n").expect("toml block") + "```toml\n".len();
    let example = &section[start..start + section[start..].find("```").expect("block end")];
    let demo = pgmcp::demo::cluster::TempCluster::start(&Default::default()).expect("a cluster");
    pgmcp::demo::load_sample(&demo, "restaurants").expect("the sample");
    let url = pgmcp::demo::demo_url(&demo, "restaurants");
    let example: String = example
        .lines()
        .map(|line| {
            if line.starts_with("url = ") {
                format!("url = \"{url}\"")
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    file.write_all(example.as_bytes()).unwrap();
    let client = serve(&file, &[]).await;
    assert_eq!(tool_names(&client).await, vec!["reviews_by_customer"]);
    let answer = curated_ok(
        &client,
        "reviews_by_customer",
        json!({"customer_id": 1, "limit": 2}),
    )
    .await;
    let names: Vec<&str> = (answer["columns"].as_array().unwrap().iter())
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["created_at", "rating", "title", "restaurant"]);
    assert!(answer["row_count"].as_u64().unwrap() <= 2, "{answer}");
    client.cancel().await.expect("close");
}
