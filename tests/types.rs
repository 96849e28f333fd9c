//! Every rendering rule of `pgmcp::db::render`, checked against a real PostgreSQL through binary results.
//!
//! One throwaway cluster serves the whole file; each test runs inside a transaction it rolls back.

use std::sync::OnceLock;
use std::time::Instant;

use pgmcp::db::render::{RawCell, can_decode, row_to_json, type_display_name, value_to_json};
use pgmcp::demo::cluster::TempCluster;
use serde_json::{Value, json};
use tokio_postgres::{Client, NoTls};

fn cluster_url() -> &'static str {
    static URL: OnceLock<(TempCluster, String)> = OnceLock::new();
    let (_, url) = URL.get_or_init(|| {
        let cluster = TempCluster::start(&Default::default()).expect("start a throwaway cluster");
        let url = cluster.url("postgres");
        (cluster, url)
    });
    url
}

async fn connect() -> Client {
    let url = cluster_url();
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.expect("connect");
    tokio::spawn(connection);
    client
}

const SETUP: &str = "
    BEGIN;
    SET LOCAL timezone = 'Europe/Berlin';
    CREATE TYPE mood AS ENUM ('sad', 'happy');
    CREATE DOMAIN posint AS int4 CHECK (VALUE > 0);
    CREATE TYPE triple AS (id int4, label text, amount numeric, tags text[], feeling mood, size posint);
    CREATE TYPE nested AS (inner_value triple, at timestamptz);
    CREATE TYPE spot AS (name text, at point);
    CREATE TYPE floatrange AS RANGE (subtype = float8);
    CREATE SCHEMA billing;
    CREATE TYPE billing.currency AS ENUM ('EUR', 'USD');
";

/// Renders `SELECT <expression>` and returns the value with the column's display name.
async fn select(client: &Client, expression: &str) -> (Value, String) {
    let sql = format!("SELECT {expression}");
    let rows = client
        .query(sql.as_str(), &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let ty = rows[0].columns()[0].type_().clone();
    assert!(can_decode(&ty), "{expression}: {ty} should be decodable");
    let mut values = row_to_json(&rows[0]).unwrap_or_else(|e| panic!("{sql}: {e}"));
    (values.remove(0), type_display_name(&ty))
}

fn cases() -> Vec<(&'static str, Value)> {
    vec![
        ("NULL::int4", Value::Null),
        ("true", json!(true)),
        ("false", json!(false)),
        ("(-32768)::int2", json!(-32768)),
        ("2147483647::int4", json!(2_147_483_647)),
        (
            "9223372036854775807::int8",
            json!(9_223_372_036_854_775_807i64),
        ),
        ("(-9223372036854775808)::int8", json!(i64::MIN)),
        ("4294967295::oid", json!(4_294_967_295u32)),
        ("1.1::float4", json!(1.1)),
        ("3.4028235e38::float4", json!(3.4028235e38)),
        ("'NaN'::float4", json!("NaN")),
        ("1.1::float8", json!(1.1)),
        ("0.1::float8 + 0.2::float8", json!(0.30000000000000004)),
        ("'Infinity'::float8", json!("Infinity")),
        ("'-Infinity'::float8", json!("-Infinity")),
        ("1.50::numeric", json!("1.50")),
        ("'NaN'::numeric", json!("NaN")),
        ("'Infinity'::numeric", json!("Infinity")),
        ("'-Infinity'::numeric", json!("-Infinity")),
        ("'héllo ✓'::text", json!("héllo ✓")),
        ("'abc'::varchar(5)", json!("abc")),
        ("'ab'::char(4)", json!("ab  ")),
        ("'pg_class'::name", json!("pg_class")),
        ("'x'::\"char\"", json!("x")),
        ("'<a>b</a>'::xml", json!("<a>b</a>")),
        ("'literal'::unknown", json!("literal")),
        (
            r#"'{"a": [1, 2.5, null], "b": "x"}'::json"#,
            json!({"a": [1, 2.5, null], "b": "x"}),
        ),
        (
            r#"'{"b": 1, "a": {"c": true}}'::jsonb"#,
            json!({"a": {"c": true}, "b": 1}),
        ),
        ("'[1, \"two\"]'::jsonb", json!([1, "two"])),
        ("'\\x48656c6c6f'::bytea", json!("\\x48656c6c6f")),
        ("''::bytea", json!("\\x")),
        (
            "'550E8400-E29B-41D4-A716-446655440000'::uuid",
            json!("550e8400-e29b-41d4-a716-446655440000"),
        ),
        ("'2024-02-29'::date", json!("2024-02-29")),
        ("'0044-03-15 BC'::date", json!("-0043-03-15")),
        ("'infinity'::date", json!("infinity")),
        ("'-infinity'::date", json!("-infinity")),
        ("'13:45:06.5'::time", json!("13:45:06.5")),
        ("'13:45:06'::time", json!("13:45:06")),
        ("'24:00:00'::time", json!("24:00:00")),
        ("'13:45:06+02'::timetz", json!("13:45:06+02:00")),
        ("'13:45:06.25-05:30'::timetz", json!("13:45:06.25-05:30")),
        (
            "'2024-02-29 13:45:06.123456'::timestamp",
            json!("2024-02-29T13:45:06.123456"),
        ),
        (
            "'2024-02-29 13:45:06.120'::timestamp",
            json!("2024-02-29T13:45:06.12"),
        ),
        (
            "'1999-12-31 23:59:59'::timestamp",
            json!("1999-12-31T23:59:59"),
        ),
        ("'infinity'::timestamp", json!("infinity")),
        (
            "'2024-02-29 13:45:06.123456+02'::timestamptz",
            json!("2024-02-29T11:45:06.123456Z"),
        ),
        (
            "'2024-07-01 00:00:00'::timestamptz",
            json!("2024-06-30T22:00:00Z"),
        ),
        ("'-infinity'::timestamptz", json!("-infinity")),
        (
            "'0044-03-15 12:00 BC'::timestamp",
            json!("-0043-03-15T12:00:00"),
        ),
        (
            "'1 year 2 months 3 days 4 hours 5 minutes 6.5 seconds'::interval",
            json!("P1Y2M3DT4H5M6.5S"),
        ),
        ("'0'::interval", json!("PT0S")),
        ("'-1 day -2 hours'::interval", json!("P-1DT-2H")),
        (
            "'-14 months -0.25 seconds'::interval",
            json!("P-1Y-2MT-0.25S"),
        ),
        ("'192.168.0.1'::inet", json!("192.168.0.1")),
        ("'192.168.0.1/24'::inet", json!("192.168.0.1/24")),
        ("'10.0.0.0/8'::cidr", json!("10.0.0.0/8")),
        ("'10.1.2.3/32'::cidr", json!("10.1.2.3/32")),
        (
            "'2001:0db8:0000:0000:0000:0000:0000:0001'::inet",
            json!("2001:db8::1"),
        ),
        ("'2001:db8::/32'::cidr", json!("2001:db8::/32")),
        ("'08:00:2b:01:02:03'::macaddr", json!("08:00:2b:01:02:03")),
        (
            "'08:00:2b:01:02:03:04:05'::macaddr8",
            json!("08:00:2b:01:02:03:04:05"),
        ),
        ("B'0101'::bit(4)", json!("0101")),
        ("'101100111'::varbit", json!("101100111")),
        ("''::varbit", json!("")),
        ("'{{1,2},{3,4}}'::int4[]", json!([[1, 2], [3, 4]])),
        (
            "'{{{1},{2}},{{3},{4}}}'::int8[]",
            json!([[[1], [2]], [[3], [4]]]),
        ),
        ("'{}'::int4[]", json!([])),
        ("'{1,NULL,3}'::int4[]", json!([1, null, 3])),
        ("'[2:3]={7,8}'::int4[]", json!([7, 8])),
        ("ARRAY['a', NULL, 'c d']", json!(["a", null, "c d"])),
        ("'{1.50,NaN}'::numeric[]", json!(["1.50", "NaN"])),
        ("ARRAY['2024-02-29'::date]", json!(["2024-02-29"])),
        ("'happy'::mood", json!("happy")),
        ("'{sad,happy}'::mood[]", json!(["sad", "happy"])),
        ("'EUR'::billing.currency", json!("EUR")),
        ("5::posint", json!(5)),
        ("ARRAY[1, 2]::posint[]", json!([1, 2])),
        (
            "ROW(1, 'a', 2.50, ARRAY['x'], 'sad', 3)::triple",
            json!({"id": 1, "label": "a", "amount": "2.50", "tags": ["x"], "feeling": "sad", "size": 3}),
        ),
        (
            "ROW(NULL, NULL, NULL, NULL, NULL, NULL)::triple",
            json!({"id": null, "label": null, "amount": null, "tags": null, "feeling": null, "size": null}),
        ),
        (
            "ROW(ROW(2, 'b', NULL, '{}', 'happy', 1)::triple, '2024-01-01 01:00+01')::nested",
            json!({"inner_value": {"id": 2, "label": "b", "amount": null, "tags": [], "feeling": "happy", "size": 1},
                   "at": "2024-01-01T00:00:00Z"}),
        ),
        (
            "ARRAY[ROW(1, 'a', 1, NULL, NULL, NULL)::triple]",
            json!([{"id": 1, "label": "a", "amount": "1", "tags": null, "feeling": null, "size": null}]),
        ),
        (
            "int4range(1, 5)",
            json!({"lower": 1, "upper": 5, "lower_inclusive": true, "upper_inclusive": false}),
        ),
        (
            "'[1,)'::int4range",
            json!({"lower": 1, "upper": null, "lower_inclusive": true, "upper_inclusive": false}),
        ),
        (
            "'(,)'::int4range",
            json!({"lower": null, "upper": null, "lower_inclusive": false, "upper_inclusive": false}),
        ),
        ("'empty'::int4range", json!({"empty": true})),
        (
            "numrange(1.5, 2.50, '[]')",
            json!({"lower": "1.5", "upper": "2.50", "lower_inclusive": true, "upper_inclusive": true}),
        ),
        (
            "tstzrange('2024-01-01 00:00+00', NULL)",
            json!({"lower": "2024-01-01T00:00:00Z", "upper": null, "lower_inclusive": true, "upper_inclusive": false}),
        ),
        (
            "daterange('2024-01-01', '2024-02-01')",
            json!({"lower": "2024-01-01", "upper": "2024-02-01", "lower_inclusive": true, "upper_inclusive": false}),
        ),
        (
            "floatrange(1.5, 2)",
            json!({"lower": 1.5, "upper": 2.0, "lower_inclusive": true, "upper_inclusive": false}),
        ),
        (
            "'{[1,3), [5,7]}'::int4multirange",
            json!([{"lower": 1, "upper": 3, "lower_inclusive": true, "upper_inclusive": false},
                   {"lower": 5, "upper": 8, "lower_inclusive": true, "upper_inclusive": false}]),
        ),
        ("'{}'::int4multirange", json!([])),
        (
            "ARRAY[int4range(1, 2)]",
            json!([{"lower": 1, "upper": 2, "lower_inclusive": true, "upper_inclusive": false}]),
        ),
    ]
}

/// numeric must print exactly what PostgreSQL prints; the server's own text is the oracle.
const NUMERICS: &[&str] = &[
    "0",
    "0.0",
    "-0.000",
    "1",
    "-1",
    "1.50",
    "-1.50",
    "0.00001234",
    "-0.000000000005",
    "10000",
    "100000000",
    "9999.9999",
    "123456789012345678901234567890.123456789",
    "1e-20",
    "1.000e30",
    "12345.678900",
    "round(2::numeric / 3, 40)",
    "1e1000",
    "-1e-1000",
    "power(10::numeric, 131071)",
];

#[tokio::test(flavor = "current_thread")]
async fn every_rule_against_a_real_server() {
    let client = connect().await;
    client.batch_execute(SETUP).await.expect("setup");
    let mut failures = Vec::new();
    for (expression, expected) in cases() {
        let (actual, type_name) = select(&client, expression).await;
        if actual != expected {
            failures.push(format!(
                "{expression} ({type_name}): expected {expected}, got {actual}"
            ));
        }
    }
    for literal in NUMERICS {
        let sql = format!("SELECT ({literal})::numeric, (({literal})::numeric)::text");
        let rows = client.query(sql.as_str(), &[]).await.expect(literal);
        let values = row_to_json(&rows[0]).expect(literal);
        if values[0] != values[1] {
            failures.push(format!(
                "numeric {literal}: server {}, rendered {}",
                values[1], values[0]
            ));
        }
    }
    client.batch_execute("ROLLBACK").await.expect("rollback");
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "current_thread")]
async fn undecodable_types_are_left_to_the_server() {
    let client = connect().await;
    client.batch_execute(SETUP).await.expect("setup");
    let expressions = [
        "12.34::money",
        "point(1, 2)",
        "'pg_class'::regclass",
        "'a fat cat'::tsvector",
        "'fat & cat'::tsquery",
        "ROW(1, 'a')",
        "ARRAY[point(1, 2)]",
        "ROW('home', point(1, 2))::spot",
        "floatmultirange(floatrange(1, 2))",
        "'16/B374D848'::pg_lsn",
        "'1 2'::int2vector",
        "'1 2'::oidvector",
        "txid_current_snapshot()",
        "'((0,0),(1,1))'::box",
    ];
    for expression in expressions {
        let sql = format!("SELECT {expression}");
        let rows = client.query(sql.as_str(), &[]).await.expect(expression);
        let ty = rows[0].columns()[0].type_();
        assert!(!can_decode(ty), "{expression}: {ty} must be cast to text");
        assert!(
            row_to_json(&rows[0]).is_err(),
            "{expression}: rendering must refuse, not guess"
        );
        let text_sql = format!("SELECT ({expression})::text");
        let rows = client
            .query(text_sql.as_str(), &[])
            .await
            .expect(expression);
        let values = row_to_json(&rows[0]).expect(expression);
        assert!(values[0].is_string(), "{expression}: {}", values[0]);
    }
    let rows = client
        .query("SELECT 'pg_class'::regclass::text", &[])
        .await
        .expect("regclass");
    assert_eq!(
        row_to_json(&rows[0]).expect("text"),
        vec![json!("pg_class")]
    );
    client.batch_execute("ROLLBACK").await.expect("rollback");
}

#[tokio::test(flavor = "current_thread")]
async fn display_names_and_errors_name_the_column() {
    let client = connect().await;
    client.batch_execute(SETUP).await.expect("setup");
    let rows = client
        .query(
            "SELECT 1::int4 AS a, 1::numeric, ARRAY['x'] AS t, now() AS ts, 'EUR'::billing.currency AS c, \
             ARRAY['sad'::mood] AS m, point(1, 2) AS p",
            &[],
        )
        .await
        .expect("query");
    let names: Vec<String> = rows[0]
        .columns()
        .iter()
        .map(|c| type_display_name(c.type_()))
        .collect();
    assert_eq!(
        names,
        [
            "int4",
            "numeric",
            "text[]",
            "timestamptz",
            "billing.currency",
            "mood[]",
            "point"
        ]
    );
    let err = row_to_json(&rows[0]).expect_err("point is not decoded");
    assert_eq!(err.column(), Some("p"));
    assert_eq!(err.type_name(), "point");
    assert!(
        value_to_json(rows[0].columns()[6].type_(), None)
            .expect("null")
            .is_null()
    );
    client.batch_execute("ROLLBACK").await.expect("rollback");
}

#[tokio::test(flavor = "current_thread")]
async fn ten_thousand_rows_render_quickly() {
    let client = connect().await;
    let rows = client
        .query(
            "SELECT g AS id, g * 1.5::numeric(12,2) AS price, 'name ' || g AS name, g % 2 = 0 AS even, \
             now() + g * interval '1 minute' AS at, ARRAY[g, g + 1] AS pair, random() AS score, \
             '2024-01-01'::date + g AS day, ('{\"k\": ' || g || '}')::jsonb AS doc \
             FROM generate_series(1, 10000) g",
            &[],
        )
        .await
        .expect("query");
    let started = Instant::now();
    let mut cells = 0;
    for row in &rows {
        cells += row_to_json(row).expect("render").len();
    }
    let elapsed = started.elapsed();
    assert_eq!(cells, 90_000);
    eprintln!("rendered 10,000 rows × 9 columns in {elapsed:?}");
    for (index, column) in rows[0].columns().iter().enumerate() {
        let started = Instant::now();
        for row in &rows {
            let raw = row.try_get::<_, RawCell>(index).expect("raw");
            value_to_json(column.type_(), raw.0).expect("render");
        }
        eprintln!(
            "  {:>6} {:<12} {:?}",
            column.name(),
            type_display_name(column.type_()),
            started.elapsed()
        );
    }
    // Generous so that unoptimised debug builds on a busy machine pass; release builds take a few ms.
    assert!(elapsed.as_millis() < 2_000, "{elapsed:?}");
}
