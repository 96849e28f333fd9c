//! The tool list clients see: names, descriptions, input and output schemas, annotations. Deterministic order,
//! most general first, so an agent reading top-down learns the database before it queries it.

use std::sync::Arc;

use rmcp::handler::server::common::{schema_for_output, schema_for_type};
use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use schemars::JsonSchema;
use serde_json::{Value, json};

use crate::config::AccessMode;
use crate::mcp::Databases;
use crate::tools::dba::{activity, advice, health, top_queries};
use crate::tools::schema::{compact_input, compact_output};
use crate::tools::{catalog, curated, info, profiles, query, stats};

/// Every tool pgmcp can offer (which ones a server lists depends on its profiles). Policies name tools from here.
pub const ALL_TOOL_NAMES: &[&str] = &[
    "list_profiles",
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
    "execute_write",
];

/// The tools that change data: a policy grants them only by name, never through `*`.
pub const WRITE_TOOL_NAMES: &[&str] = &["execute_write"];

/// Whether a tool only reads. Writes are marked destructive so clients can ask before running them.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Effect {
    Reads,
    Writes,
}

fn tool<P: JsonSchema + 'static, O: JsonSchema + 'static>(
    name: &'static str,
    title: &str,
    description: &'static str,
    effect: Effect,
) -> Tool {
    let mut tool = rows_tool::<P>(name, title, description, effect);
    tool.output_schema = Some(Arc::new(compact_output(&schema_for_output::<O>())));
    tool
}

/// A tool whose answer is rows: one compact JSON text block and no output schema, so no `structuredContent`
/// repeats the rows beside the text the model reads (the shape is fixed, and stated in the description).
fn rows_tool<P: JsonSchema + 'static>(
    name: &'static str,
    title: &str,
    description: &'static str,
    effect: Effect,
) -> Tool {
    // The title is the tool's own; `annotations.title` would repeat it for clients older than 2025-06-18, which
    // show the name instead.
    let annotations = effect.annotate(ToolAnnotations::new());
    let input_schema = Arc::new(compact_input(&schema_for_type::<P>()));
    let mut tool = Tool::new(name, description, input_schema).annotate(annotations);
    tool.title = Some(title.to_string());
    tool
}

impl Effect {
    fn annotate(self, annotations: ToolAnnotations) -> ToolAnnotations {
        // The tools reach one configured database, not the open internet.
        let annotations = annotations.open_world(false);
        match self {
            // destructiveHint and idempotentHint mean something only when readOnlyHint is false (MCP's
            // ToolAnnotations), so a tool that only reads says just that.
            Effect::Reads => annotations.read_only(true),
            Effect::Writes => annotations
                .read_only(false)
                .destructive(true)
                .idempotent(false),
        }
    }
}

/// A curated tool as clients see it: its own description, the schema generated from its parameters, and the
/// same annotations as the built-in tool that reads or writes alike. Its answer is execute_query's rows.
fn curated_tool(tool: &curated::CuratedTool) -> Tool {
    let effect = if tool.writes {
        Effect::Writes
    } else {
        Effect::Reads
    };
    Tool::new(
        tool.name.clone(),
        tool.description.clone(),
        tool.input_schema(),
    )
    .annotate(effect.annotate(ToolAnnotations::new()))
}

pub fn tool_list(databases: &Databases) -> Vec<Tool> {
    let several = databases.all().len() > 1;
    let any_writable = databases
        .all()
        .iter()
        .any(|db| db.profile.access_mode == AccessMode::ReadWrite);
    let mut tools = Vec::new();
    if several {
        tools.push(tool::<
            profiles::ListProfilesParams,
            profiles::ListProfilesOutput,
        >(
            "list_profiles",
            "List database profiles",
            profiles::LIST_PROFILES_DESCRIPTION,
            Effect::Reads,
        ));
    }
    tools.extend([
        tool::<info::ServerInfoParams, info::ServerInfo>(
            "server_info",
            "Server information",
            info::SERVER_INFO_DESCRIPTION,
            Effect::Reads,
        ),
        tool::<catalog::ListDatabasesParams, catalog::DatabaseList>(
            "list_databases",
            "List databases",
            catalog::LIST_DATABASES_DESCRIPTION,
            Effect::Reads,
        ),
        tool::<catalog::ListSchemasParams, catalog::SchemaList>(
            "list_schemas",
            "List schemas",
            catalog::LIST_SCHEMAS_DESCRIPTION,
            Effect::Reads,
        ),
        tool::<catalog::ListTablesParams, catalog::TableList>(
            "list_tables",
            "List tables",
            catalog::LIST_TABLES_DESCRIPTION,
            Effect::Reads,
        ),
        tool::<catalog::DescribeTableParams, catalog::TableDescription>(
            "describe_table",
            "Describe a table",
            catalog::DESCRIBE_TABLE_DESCRIPTION,
            Effect::Reads,
        ),
        tool::<catalog::SearchTablesParams, catalog::SearchResults>(
            "search_tables",
            "Search tables and columns",
            catalog::SEARCH_TABLES_DESCRIPTION,
            Effect::Reads,
        ),
        tool::<stats::GetTableStatsParams, stats::TableStats>(
            "get_table_stats",
            "Table statistics",
            stats::GET_TABLE_STATS_DESCRIPTION,
            Effect::Reads,
        ),
        rows_tool::<query::ReadTableParams>(
            "read_table",
            "Read table rows",
            query::READ_TABLE_DESCRIPTION,
            Effect::Reads,
        ),
        rows_tool::<query::ExecuteQueryParams>(
            "execute_query",
            "Run a read-only query",
            query::EXECUTE_QUERY_DESCRIPTION,
            Effect::Reads,
        ),
        tool::<query::ExplainQueryParams, query::ExplainOutput>(
            "explain_query",
            "Explain a query plan",
            query::EXPLAIN_QUERY_DESCRIPTION,
            Effect::Reads,
        ),
        tool::<health::HealthCheckParams, health::HealthReport>(
            "health_check",
            "Database health checks",
            health::HEALTH_CHECK_DESCRIPTION,
            Effect::Reads,
        ),
        tool::<top_queries::TopQueriesParams, top_queries::TopQueries>(
            "top_queries",
            "Most expensive statements",
            top_queries::TOP_QUERIES_DESCRIPTION,
            Effect::Reads,
        ),
        tool::<activity::ActivityParams, activity::Activity>(
            "activity",
            "Current sessions and waits",
            activity::ACTIVITY_DESCRIPTION,
            Effect::Reads,
        ),
        tool::<advice::IndexAdviceParams, advice::IndexAdvice>(
            "index_advice",
            "Index advice",
            advice::INDEX_ADVICE_DESCRIPTION,
            Effect::Reads,
        ),
    ]);
    if any_writable {
        tools.push(rows_tool::<query::ExecuteQueryParams>(
            "execute_write",
            "Run a data-modifying statement",
            query::EXECUTE_WRITE_DESCRIPTION,
            Effect::Writes,
        ));
    }
    for tool in &mut tools {
        tool.input_schema = Arc::new(adapt_schema(
            &tool.name,
            tool.input_schema.as_ref().clone(),
            databases,
        ));
    }
    // Curated tools come last: their schemas are the team's own, with no `profile` or `limit` to adapt.
    let curated = databases.curated();
    tools.extend(curated.all().iter().map(curated_tool));
    tools.retain(|tool| curated.exposes(&tool.name));
    tools
}

/// Tailors generic schemas to this server: the `profile` argument lists the real profile names (or disappears when
/// there is only one), and `limit` states the real default and ceiling.
fn adapt_schema(tool_name: &str, mut schema: JsonObject, databases: &Databases) -> JsonObject {
    let Some(Value::Object(properties)) = schema.get_mut("properties") else {
        return schema;
    };
    let mut profile_required = false;
    if databases.all().len() > 1 {
        let names: Vec<String> = if tool_name == "execute_write" {
            databases
                .all()
                .iter()
                .filter(|db| db.profile.access_mode == AccessMode::ReadWrite)
                .map(|db| db.profile.name.clone())
                .collect()
        } else {
            databases.names()
        };
        // Without `profile` a call goes to the first profile; when this tool may not use it (execute_write on a
        // read-only default), there is no default to state and the argument must be given.
        let default = &databases.names()[0];
        let description = if names.contains(default) {
            format!("Database profile to use (see list_profiles). Default: {default}.")
        } else {
            profile_required = true;
            "Database profile to use (see list_profiles).".to_string()
        };
        properties.insert(
            "profile".into(),
            json!({"type": "string", "enum": names, "description": description}),
        );
    } else {
        properties.remove("profile");
    }
    // The row tools' `limit` is bounded by the profile; the other tools' limits are their own, declared with them.
    let default_db = &databases.all()[0].profile;
    let row_default = match tool_name {
        "execute_query" | "execute_write" => Some(default_db.max_rows),
        "read_table" => {
            Some(query::READ_TABLE_DEFAULT_LIMIT.min(default_db.max_rows as u64) as usize)
        }
        _ => None,
    };
    if let (Some(default), Some(Value::Object(limit))) = (row_default, properties.get_mut("limit"))
    {
        limit.insert("maximum".into(), json!(default_db.max_rows_ceiling));
        limit.insert("default".into(), json!(default));
    }
    if profile_required {
        let required = schema.entry("required").or_insert_with(|| json!([]));
        if let Value::Array(required) = required {
            required.push(json!("profile"));
        }
    }
    schema
}
