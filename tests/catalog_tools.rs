//! The catalog tools against a real PostgreSQL cluster with a fixture that exercises every catalog feature they
//! report. One cluster serves all checks, which run in sequence in one test to keep the suite fast.

use pgmcp::config::AccessMode;
use pgmcp::telemetry::audit::CallerIdentity;
use pgmcp::tools::ToolError;
use pgmcp::tools::catalog::{
    self, DescribeTableParams, ForeignKeyAction, IdentityKind, ListDatabasesParams,
    ListSchemasParams, ListTablesParams, MatchedOn, RelationKind, SearchTablesParams,
};
use pgmcp::tools::info::server_info;
use pgmcp::tools::stats::{GetTableStatsParams, get_table_stats};
use tokio_postgres::Client;

mod catalog_support;
use catalog_support::Database;

#[path = "common/contract.rs"]
#[allow(dead_code)]
mod contract;

/// The answer as a client receives it is valid under the output schema pgmcp lists for the tool.
fn assert_fits_declared_schema<T: serde::Serialize + schemars::JsonSchema + 'static>(answer: &T) {
    let declared = rmcp::handler::server::common::schema_for_output::<T>();
    let schema = serde_json::Value::Object(pgmcp::tools::schema::compact_output(&declared));
    let answer = serde_json::to_value(answer).unwrap();
    if let Err(why) = contract::validate(&answer, &schema) {
        panic!("the answer breaks its declared output schema: {why}\n{answer}");
    }
}

#[tokio::test]
async fn catalog_tools_describe_the_fixture() {
    let db = Database::start("catalog_fixture").await;
    let client = db.connect().await;

    check_list_schemas(&client).await;
    check_list_tables(&client).await;
    check_describe_orders(&client).await;
    check_describe_other_kinds(&client).await;
    check_name_resolution(&client).await;
    check_search_tables(&client).await;
    check_list_databases(&client).await;
    check_table_stats(&client, &db.url()).await;
    check_server_info(&client).await;
}

fn invalid_message(err: ToolError) -> String {
    match err {
        ToolError::InvalidArgument { message } => message,
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}

async fn check_list_schemas(client: &Client) {
    let list = catalog::list_schemas(client, ListSchemasParams::default())
        .await
        .unwrap();
    assert_fits_declared_schema(&list);
    let names: Vec<&str> = list.schemas.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["public", "shop"]);
    let shop = &list.schemas[1];
    assert_eq!(shop.comment.as_deref(), Some("Shop data"));
    assert_eq!(shop.owner, "postgres");
    // customers, orders, order_notes, big_orders, order_totals, events, events_2024
    assert_eq!(shop.table_count, 7);
    assert_eq!(list.schemas[0].table_count, 1);

    let all = catalog::list_schemas(
        client,
        ListSchemasParams {
            include_system: true,
            profile: None,
        },
    )
    .await
    .unwrap();
    let names: Vec<&str> = all.schemas.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"pg_catalog") && names.contains(&"information_schema"));
}

async fn check_list_tables(client: &Client) {
    let all = catalog::list_tables(client, ListTablesParams::default())
        .await
        .unwrap();
    assert_fits_declared_schema(&all);
    let names: Vec<(&str, &str)> = all
        .tables
        .iter()
        .map(|t| (t.schema.as_str(), t.name.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("public", "Mixed Case"),
            ("shop", "big_orders"),
            ("shop", "customers"),
            ("shop", "events"),
            ("shop", "events_2024"),
            ("shop", "order_notes"),
            ("shop", "order_totals"),
            ("shop", "orders"),
        ]
    );
    assert!(!all.truncated);
    let by_name = |name: &str| all.tables.iter().find(|t| t.name == name).unwrap();
    let orders = by_name("orders");
    assert_eq!(orders.kind, RelationKind::Table);
    assert_eq!(orders.row_estimate, Some(3));
    assert!(orders.total_bytes.unwrap() > 0);
    assert!(orders.total_size.as_deref().unwrap().ends_with("kB"));
    assert_eq!(orders.comment.as_deref(), Some("One row per order"));
    let view = by_name("big_orders");
    assert_eq!(view.kind, RelationKind::View);
    assert_eq!((view.total_bytes, view.row_estimate), (None, None));
    assert_eq!(by_name("order_totals").kind, RelationKind::MaterializedView);
    let events = by_name("events");
    assert_eq!(events.kind, RelationKind::PartitionedTable);
    // A partitioned table stores nothing itself; its size is that of its partitions.
    assert_eq!(events.total_bytes, by_name("events_2024").total_bytes);
    assert!(events.total_bytes.unwrap() > 0);

    let json = serde_json::to_value(by_name("order_totals")).unwrap();
    assert_eq!(json["kind"], "materialized_view");

    let limited = catalog::list_tables(
        client,
        ListTablesParams {
            limit: 2,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(limited.tables.len(), 2);
    assert!(limited.truncated);

    let pattern = catalog::list_tables(
        client,
        ListTablesParams {
            schema: Some("shop".into()),
            name_pattern: Some("%ORDER%".into()),
            kinds: Some(vec![RelationKind::Table, RelationKind::View]),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let names: Vec<&str> = pattern.tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["big_orders", "order_notes", "orders"]);

    let err = catalog::list_tables(
        client,
        ListTablesParams {
            schema: Some("nope".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(invalid_message(err).contains("schema nope does not exist"));

    let err = catalog::list_tables(
        client,
        ListTablesParams {
            limit: 0,
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(invalid_message(err).contains("limit"));
}

fn describe(table: &str, schema: Option<&str>) -> DescribeTableParams {
    DescribeTableParams {
        table: table.into(),
        schema: schema.map(str::to_string),
        profile: None,
    }
}

async fn check_describe_orders(client: &Client) {
    let orders = catalog::describe_table(client, describe("shop.orders", None))
        .await
        .unwrap();
    assert_fits_declared_schema(&orders);
    assert_eq!(
        (orders.schema.as_str(), orders.name.as_str()),
        ("shop", "orders")
    );
    assert_eq!(orders.kind, RelationKind::Table);
    assert_eq!(orders.owner, "postgres");
    assert_eq!(orders.comment.as_deref(), Some("One row per order"));
    assert_eq!(orders.row_estimate, Some(3));
    assert_eq!(orders.view_definition, None);

    let columns: Vec<(&str, &str, bool)> = orders
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.data_type.as_str(), c.nullable))
        .collect();
    assert_eq!(
        columns,
        [
            ("id", "integer", false),
            ("customer_id", "bigint", false),
            ("order_code", "text", false),
            ("quantity", "integer", false),
            ("unit_price", "numeric(10,2)", false),
            ("total", "numeric(12,2)", true),
            ("created_at", "timestamp with time zone", false),
            ("discount_%", "numeric", true),
        ]
    );
    let column = |name: &str| orders.columns.iter().find(|c| c.name == name).unwrap();
    assert_eq!(column("id").identity, Some(IdentityKind::ByDefault));
    assert_eq!(column("id").default, None);
    assert_eq!(column("quantity").default.as_deref(), Some("1"));
    assert_eq!(column("created_at").default.as_deref(), Some("now()"));
    assert_eq!(
        column("total").generated.as_deref(),
        Some("(quantity::numeric * unit_price)")
    );
    assert_eq!(column("total").default, None);
    assert_eq!(
        column("total").comment.as_deref(),
        Some("quantity times unit price")
    );
    assert_eq!(column("total").position, 6);

    let pk = orders.primary_key.as_ref().unwrap();
    assert_eq!(
        (pk.name.as_str(), pk.columns.as_slice()),
        ("orders_pkey", &["id".to_string()][..])
    );
    assert_eq!(orders.unique_constraints.len(), 1);
    assert_eq!(orders.unique_constraints[0].name, "orders_code_key");
    assert_eq!(
        orders.unique_constraints[0].columns,
        ["customer_id", "order_code"]
    );
    let checks: Vec<(&str, &str)> = orders
        .check_constraints
        .iter()
        .map(|c| (c.name.as_str(), c.definition.as_str()))
        .collect();
    assert_eq!(
        checks,
        [
            ("orders_price_positive", "CHECK (unit_price >= 0::numeric)"),
            ("orders_quantity_check", "CHECK (quantity > 0)"),
        ]
    );

    assert_eq!(orders.foreign_keys.len(), 1);
    let fk = &orders.foreign_keys[0];
    assert_eq!(fk.columns, ["customer_id"]);
    assert_eq!(
        (fk.referenced_schema.as_str(), fk.referenced_table.as_str()),
        ("shop", "customers")
    );
    assert_eq!(fk.referenced_columns, ["id"]);
    assert_eq!(fk.on_delete, ForeignKeyAction::Cascade);
    assert_eq!(fk.on_update, ForeignKeyAction::NoAction);
    assert!(
        fk.definition
            .starts_with("FOREIGN KEY (customer_id) REFERENCES shop.customers(id)")
    );

    assert_eq!(orders.referenced_by.len(), 1);
    let incoming = &orders.referenced_by[0];
    assert_eq!(
        (incoming.schema.as_str(), incoming.table.as_str()),
        ("shop", "order_notes")
    );
    assert_eq!(incoming.columns, ["order_id"]);
    assert_eq!(incoming.referenced_columns, ["id"]);
    assert_eq!(incoming.on_update, ForeignKeyAction::Restrict);
    assert_eq!(incoming.on_delete, ForeignKeyAction::NoAction);

    let indexes: Vec<(&str, bool, bool, &str)> = orders
        .indexes
        .iter()
        .map(|i| (i.name.as_str(), i.unique, i.primary, i.method.as_str()))
        .collect();
    assert_eq!(
        indexes,
        [
            ("orders_code_key", true, false, "btree"),
            ("orders_created_idx", false, false, "btree"),
            ("orders_pkey", true, true, "btree"),
        ]
    );
    assert_eq!(
        orders.indexes[1].definition,
        "CREATE INDEX orders_created_idx ON shop.orders USING btree (created_at DESC)"
    );
    assert!(orders.indexes.iter().all(|i| i.valid && i.size_bytes > 0));

    assert_eq!(orders.triggers.len(), 1);
    let trigger = &orders.triggers[0];
    assert_eq!(trigger.name, "orders_touch");
    assert_eq!(trigger.timing, "before");
    assert_eq!(trigger.events, ["insert", "update"]);
    assert_eq!(trigger.level, "row");
    assert_eq!(trigger.function, "shop.touch");
    assert_eq!(trigger.enabled, "enabled");
    assert!(
        trigger
            .definition
            .starts_with("CREATE TRIGGER orders_touch BEFORE INSERT OR UPDATE")
    );

    let customers = catalog::describe_table(client, describe("customers", Some("shop")))
        .await
        .unwrap();
    assert_eq!(customers.columns[0].identity, Some(IdentityKind::Always));
    assert_eq!(customers.referenced_by[0].table, "orders");
    assert_eq!(
        customers.referenced_by[0].on_delete,
        ForeignKeyAction::Cascade
    );
}

async fn check_describe_other_kinds(client: &Client) {
    let view = catalog::describe_table(client, describe("big_orders", Some("shop")))
        .await
        .unwrap();
    assert_fits_declared_schema(&view);
    assert_eq!(view.kind, RelationKind::View);
    assert!(
        view.view_definition
            .as_deref()
            .unwrap()
            .contains("total > 100")
    );
    assert_eq!(view.columns.len(), 2);
    assert!(view.indexes.is_empty() && view.primary_key.is_none());

    let matview = catalog::describe_table(client, describe("shop.order_totals", None))
        .await
        .unwrap();
    assert_fits_declared_schema(&matview);
    assert_eq!(matview.kind, RelationKind::MaterializedView);
    assert!(
        matview
            .view_definition
            .as_deref()
            .unwrap()
            .contains("sum(orders.total) AS total")
    );

    let events = catalog::describe_table(client, describe("shop.events", None))
        .await
        .unwrap();
    assert_fits_declared_schema(&events);
    assert_eq!(events.kind, RelationKind::PartitionedTable);
    assert_eq!(events.partition_key.as_deref(), Some("RANGE (happened_at)"));
    assert_eq!(events.partitions, ["shop.events_2024"]);
    assert_eq!(events.partition_of, None);

    let partition = catalog::describe_table(client, describe(&events.partitions[0], None))
        .await
        .unwrap();
    assert_fits_declared_schema(&partition);
    assert_eq!(partition.kind, RelationKind::Table);
    assert_eq!(partition.partition_of.as_deref(), Some("shop.events"));
    assert_eq!(
        partition.partition_bound.as_deref(),
        Some("FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')")
    );
}

async fn check_name_resolution(client: &Client) {
    for reference in [
        r#"Mixed Case"#,
        r#""Mixed Case""#,
        r#"public."Mixed Case""#,
        "mixed case",
    ] {
        let mixed = catalog::describe_table(client, describe(reference, None))
            .await
            .unwrap_or_else(|e| panic!("{reference}: {e}"));
        assert_eq!(
            (mixed.schema.as_str(), mixed.name.as_str()),
            ("public", "Mixed Case")
        );
        assert_eq!(mixed.columns[1].name, "50%_off");
    }
    // Unqualified and not in public, but unique across user schemas.
    let orders = catalog::describe_table(client, describe("orders", None))
        .await
        .unwrap();
    assert_eq!(orders.schema, "shop");

    let err = catalog::describe_table(client, describe("foo", None))
        .await
        .unwrap_err();
    assert_eq!(
        invalid_message(err),
        "table public.foo does not exist; call list_tables to see the tables"
    );
    let err = catalog::describe_table(client, describe("shop.customer", None))
        .await
        .unwrap_err();
    assert_eq!(
        invalid_message(err),
        "table shop.customer does not exist; call list_tables to see the tables"
    );
    // Quotes in a name never reach SQL text.
    let err = catalog::describe_table(client, describe(r#"x"; DROP TABLE shop.orders; --"#, None))
        .await
        .unwrap_err();
    assert!(invalid_message(err).contains("does not exist"));
}

fn search(term: &str) -> SearchTablesParams {
    SearchTablesParams {
        term: term.into(),
        schema: None,
        limit: 100,
        profile: None,
    }
}

async fn check_search_tables(client: &Client) {
    let found = catalog::search_tables(client, search("ORDER"))
        .await
        .unwrap();
    assert_fits_declared_schema(&found);
    let hits: Vec<(MatchedOn, &str, Option<&str>)> = found
        .matches
        .iter()
        .map(|m| (m.matched_on, m.table.as_str(), m.column.as_deref()))
        .collect();
    assert_eq!(
        hits,
        [
            (MatchedOn::TableName, "big_orders", None),
            (MatchedOn::TableName, "order_notes", None),
            (MatchedOn::TableName, "order_totals", None),
            (MatchedOn::TableName, "orders", None),
            (MatchedOn::ColumnName, "order_notes", Some("order_id")),
            (MatchedOn::ColumnName, "orders", Some("order_code")),
        ]
    );
    assert_eq!(found.matches[5].data_type.as_deref(), Some("text"));
    assert!(!found.truncated);

    // `_` and `%` are literal: as wildcards "_%" would match every table and column.
    let literal = catalog::search_tables(client, search("_%")).await.unwrap();
    let hits: Vec<(&str, Option<&str>)> = literal
        .matches
        .iter()
        .map(|m| (m.table.as_str(), m.column.as_deref()))
        .collect();
    assert_eq!(hits, [("orders", Some("discount_%"))]);
    let err = catalog::search_tables(
        client,
        SearchTablesParams {
            schema: Some("nope".into()),
            ..search("order")
        },
    )
    .await
    .unwrap_err();
    assert!(invalid_message(err).contains("schema nope does not exist"));
    let literal = catalog::search_tables(client, search("50%")).await.unwrap();
    assert_eq!(literal.matches.len(), 1);
    assert_eq!(literal.matches[0].column.as_deref(), Some("50%_off"));

    let limited = catalog::search_tables(
        client,
        SearchTablesParams {
            limit: 2,
            schema: Some("shop".into()),
            ..search("order")
        },
    )
    .await
    .unwrap();
    assert_eq!(limited.matches.len(), 2);
    assert!(limited.truncated);

    for bad in ["", "   ", &"x".repeat(201)] {
        let err = catalog::search_tables(client, search(bad))
            .await
            .unwrap_err();
        assert!(invalid_message(err).starts_with("term must"));
    }
}

async fn check_list_databases(client: &Client) {
    let list = catalog::list_databases(client, ListDatabasesParams::default())
        .await
        .unwrap();
    assert_fits_declared_schema(&list);
    let names: Vec<&str> = list.databases.iter().map(|d| d.name.as_str()).collect();
    assert!(!names.contains(&"template0") && !names.contains(&"template1"));
    let current: Vec<&str> = list
        .databases
        .iter()
        .filter(|d| d.is_current)
        .map(|d| d.name.as_str())
        .collect();
    assert_eq!(current, [client_database(client).await.as_str()]);
    assert!(list.databases.iter().all(|d| d.size_bytes.unwrap() > 0));
    assert!(
        list.databases
            .iter()
            .all(|d| d.encoding == "UTF8" || !d.encoding.is_empty())
    );

    // Without CONNECT privilege the size is unknowable, not an error.
    client
        .batch_execute("SET ROLE limited_reader")
        .await
        .unwrap();
    let list = catalog::list_databases(client, ListDatabasesParams::default()).await;
    client.batch_execute("RESET ROLE").await.unwrap();
    let list = list.unwrap();
    let restricted = list
        .databases
        .iter()
        .find(|d| d.name == "restricted_db")
        .unwrap();
    assert_eq!(
        (restricted.size_bytes, restricted.size.as_deref()),
        (None, None)
    );
}

async fn client_database(client: &Client) -> String {
    client
        .query_one("SELECT current_database()::text", &[])
        .await
        .unwrap()
        .get(0)
}

fn stats(table: &str, exact_count: bool) -> GetTableStatsParams {
    GetTableStatsParams {
        table: table.into(),
        schema: None,
        exact_count,
        profile: None,
    }
}

async fn check_table_stats(client: &Client, url: &str) {
    let db = pgmcp::db::Database::new(pgmcp::config::Profile::new(
        "t",
        pgmcp::config::ConnSettings::parse(url).unwrap(),
    ))
    .unwrap();
    let mut session = db.get().await.unwrap();
    let cancel = tokio_util::sync::CancellationToken::new();
    let mut get_table_stats =
        async |params| get_table_stats(&db, &mut session, params, &cancel).await;
    let orders = get_table_stats(stats("shop.orders", true)).await.unwrap();
    assert_fits_declared_schema(&orders);
    assert_eq!(orders.kind, RelationKind::Table);
    assert_eq!(orders.exact_row_count, Some(3));
    assert_eq!(orders.exact_count_error, None);
    assert_eq!(orders.estimated_rows, Some(3));
    let sizes = orders.sizes.as_ref().unwrap();
    assert_eq!(
        sizes.total.bytes,
        sizes.table.bytes + sizes.indexes.bytes + sizes.toast.bytes
    );
    assert!(sizes.table.bytes > 0 && sizes.indexes.bytes > 0);
    assert!(sizes.total.pretty.ends_with("kB"));
    let types: Vec<(&str, i64)> = orders
        .column_types
        .iter()
        .map(|t| (t.data_type.as_str(), t.columns))
        .collect();
    assert_eq!(
        types,
        [
            ("numeric", 3),
            ("integer", 2),
            ("bigint", 1),
            ("text", 1),
            ("timestamp with time zone", 1),
        ]
    );
    let activity = orders.activity.as_ref().unwrap();
    let analyzed = activity.last_analyze.as_deref().unwrap();
    assert!(
        analyzed.ends_with('Z') && analyzed.contains('T'),
        "{analyzed}"
    );
    assert_eq!(activity.last_vacuum, None);

    let estimated_only = get_table_stats(stats("shop.orders", false)).await.unwrap();
    assert_eq!(estimated_only.exact_row_count, None);

    let view = get_table_stats(stats("shop.big_orders", true))
        .await
        .unwrap();
    assert_fits_declared_schema(&view);
    assert_eq!(view.exact_row_count, Some(1));
    assert!(view.sizes.is_none() && view.activity.is_none());

    let events = get_table_stats(stats("shop.events", true)).await.unwrap();
    assert_fits_declared_schema(&events);
    assert_eq!(events.exact_row_count, Some(100));
    assert_eq!(events.estimated_rows, Some(100));
    assert!(events.sizes.as_ref().unwrap().total.bytes > 0);

    // The quoted name reaches count(*) intact.
    let mixed = get_table_stats(stats(r#"public."Mixed Case""#, true))
        .await
        .unwrap();
    assert_eq!(mixed.exact_row_count, Some(0));

    let err = get_table_stats(stats("nope", true)).await.unwrap_err();
    assert_eq!(
        invalid_message(err),
        "table public.nope does not exist; call list_tables to see the tables"
    );

    // A view whose column writes: its exact count would run the writing function, so it is not counted, and
    // nothing is written.
    client
        .batch_execute(
            "CREATE TABLE shop.reads_log (id serial PRIMARY KEY); \
             CREATE FUNCTION shop.log_read() RETURNS int LANGUAGE sql VOLATILE \
                 AS 'INSERT INTO shop.reads_log DEFAULT VALUES RETURNING id'; \
             CREATE VIEW shop.logged_orders AS SELECT id, shop.log_read() AS logged FROM shop.orders",
        )
        .await
        .unwrap();
    let logged = get_table_stats(stats("shop.logged_orders", true))
        .await
        .unwrap();
    assert_eq!(logged.exact_row_count, None);
    let why = logged.exact_count_error.unwrap();
    assert!(
        why.contains("function shop.log_read is VOLATILE") && why.contains("estimated_rows"),
        "{why}"
    );
    let written: i64 = client
        .query_one("SELECT count(*) FROM shop.reads_log", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(written, 0, "the view's function never ran");
    client
        .batch_execute("DROP VIEW shop.logged_orders; DROP FUNCTION shop.log_read(); DROP TABLE shop.reads_log")
        .await
        .unwrap();
}

async fn check_server_info(client: &Client) {
    let info = server_info(
        client,
        AccessMode::ReadOnly,
        "local",
        &CallerIdentity::Local,
    )
    .await
    .unwrap();
    assert_fits_declared_schema(&info);
    assert!(info.server_version_num >= 150000);
    assert!(info.version.starts_with("PostgreSQL "));
    assert_eq!(info.current_user, "postgres");
    assert_eq!(info.session_user, "postgres");
    assert_eq!(info.caller.kind, "local");
    assert_eq!(info.current_database, client_database(client).await);
    assert_eq!(info.server_address.as_deref(), Some("127.0.0.1"));
    assert!(info.server_port.is_some());
    assert!(!info.ssl && info.ssl_version.is_none());
    assert!(info.is_superuser);
    assert!(!info.in_recovery);
    assert!(info.extensions.iter().any(|e| e.name == "plpgsql"));
    let json = serde_json::to_value(&info).unwrap();
    assert_eq!(json["access_mode"], "read_only");
    assert_eq!(json["profile"], "local");
}
