//! Every PostgreSQL type family reaches the client as faithful JSON, through execute_query.

mod common;

use common::{Era, call_ok, rows, serve_app};
use serde_json::{Value, json};

async fn one_value(client: &common::Client, expression: &str) -> (Value, String) {
    let result = call_ok(
        client,
        "execute_query",
        json!({"sql": format!("SELECT {expression} AS v")}),
    )
    .await;
    (
        rows(&result)[0][0].clone(),
        result["columns"][0]["type"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

#[tokio::test]
async fn values_render_faithfully() {
    let client = serve_app(Era::Legacy).await;
    let cases: Vec<(&str, Value)> = vec![
        ("NULL::int", json!(null)),
        ("true", json!(true)),
        ("32767::int2", json!(32767)),
        ("(-2147483648)::int4", json!(-2147483648i64)),
        ("9223372036854775807::int8", json!(9223372036854775807i64)),
        ("1.5::float8", json!(1.5)),
        ("1.1::float4", json!(1.1)),
        ("'NaN'::float8", json!("NaN")),
        ("'Infinity'::float8", json!("Infinity")),
        ("'-Infinity'::float4", json!("-Infinity")),
        (
            "12345678901234567890.123456789::numeric",
            json!("12345678901234567890.123456789"),
        ),
        ("1.50::numeric(5,2)", json!("1.50")),
        ("-0.000123::numeric", json!("-0.000123")),
        ("'NaN'::numeric", json!("NaN")),
        ("'héllo'::text", json!("héllo")),
        ("'ab'::char(4)", json!("ab  ")),
        (
            "'{\"a\": [1, 2.5, null]}'::json",
            json!({"a": [1, 2.5, null]}),
        ),
        ("'{\"b\": {\"c\": true}}'::jsonb", json!({"b": {"c": true}})),
        ("'\\x48656c6c6f'::bytea", json!("\\x48656c6c6f")),
        (
            "'550e8400-e29b-41d4-a716-446655440000'::uuid",
            json!("550e8400-e29b-41d4-a716-446655440000"),
        ),
        ("'2024-02-29'::date", json!("2024-02-29")),
        ("'infinity'::date", json!("infinity")),
        ("'13:45:06.5'::time", json!("13:45:06.5")),
        (
            "'2024-02-29 13:45:06.123456'::timestamp",
            json!("2024-02-29T13:45:06.123456"),
        ),
        (
            "'2024-02-29 13:45:06+02'::timestamptz",
            json!("2024-02-29T11:45:06Z"),
        ),
        ("'-infinity'::timestamptz", json!("-infinity")),
        (
            "'1 year 2 mons 3 days 04:05:06.5'::interval",
            json!("P1Y2M3DT4H5M6.5S"),
        ),
        ("'0'::interval", json!("PT0S")),
        ("'192.168.0.1'::inet", json!("192.168.0.1")),
        ("'10.0.0.0/8'::cidr", json!("10.0.0.0/8")),
        ("'2001:db8::1/64'::inet", json!("2001:db8::1/64")),
        ("'08:00:2b:01:02:03'::macaddr", json!("08:00:2b:01:02:03")),
        ("B'0101'::bit(4)", json!("0101")),
        ("ARRAY[1, NULL, 3]", json!([1, null, 3])),
        ("'{{1,2},{3,4}}'::int[]", json!([[1, 2], [3, 4]])),
        ("'{}'::text[]", json!([])),
        ("'happy'::mood", json!("happy")),
        ("5::positive_int", json!(5)),
        (
            "ROW('x', 2.5)::pair",
            json!({"label": "x", "amount": "2.5"}),
        ),
        (
            "'[1,10)'::int4range",
            json!({"lower": 1, "upper": 10, "lower_inclusive": true, "upper_inclusive": false}),
        ),
        ("'empty'::int4range", json!({"empty": true})),
        (
            "'(1.5,)'::numrange",
            json!({"lower": "1.5", "upper": null, "lower_inclusive": false, "upper_inclusive": false}),
        ),
        // Types pgmcp does not decode natively arrive in PostgreSQL's own text form.
        ("'(1,2)'::point", json!("(1,2)")),
        ("12.34::money", json!("$12.34")),
        ("'books'::regclass", json!("books")),
        ("'a fat cat'::tsvector", json!("'a' 'cat' 'fat'")),
        ("ARRAY['(1,2)'::point]", json!("{\"(1,2)\"}")),
    ];
    let mut failures = Vec::new();
    for (expression, expected) in &cases {
        let (got, type_name) = one_value(&client, expression).await;
        if &got != expected {
            failures.push(format!(
                "{expression} ({type_name}): expected {expected}, got {got}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    client.cancel().await.ok();
}

#[tokio::test]
async fn text_rendered_columns_keep_their_names_and_order() {
    let client = serve_app(Era::Stateless).await;
    let result = call_ok(
        &client,
        "execute_query",
        json!({"sql": "SELECT 1 AS a, '(1,2)'::point AS p, 'x' AS a; -- trailing comment"}),
    )
    .await;
    assert_eq!(
        result["columns"],
        json!([{"name": "a", "type": "int4"}, {"name": "p", "type": "point"}, {"name": "a", "type": "text"}])
    );
    assert_eq!(rows(&result)[0], json!([1, "(1,2)", "x"]));
    client.cancel().await.ok();
}
