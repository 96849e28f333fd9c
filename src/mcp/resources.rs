//! Table schemas as MCP resources, `pgmcp://{profile}/tables/{schema}/{table}`: the work behind resources/list,
//! resources/templates/list and resources/read, on the profiles the gate's permit names.

use rmcp::ErrorData as McpError;
use rmcp::model::{
    ListResourceTemplatesResult, ListResourcesResult, ReadResourceResponse, ReadResourceResult,
    Resource, ResourceContents, ResourceTemplate,
};

use crate::db::UserLogin;
use crate::mcp::gate::{Answer, Permit, TABLE_URI_PREFIX};
use crate::telemetry::audit::CallOutcome;
use crate::tools;

/// At most this many tables are listed across all profiles, so a caller seeing thousands of tables still gets a
/// quick, bounded answer (resources/read and list_tables reach the rest).
pub const MAX_LISTED_TABLES: usize = 1000;

/// The template, when the caller may read tables of some profile; an empty list otherwise.
pub fn templates(permit: &Permit<'_>) -> Answer<ListResourceTemplatesResult> {
    if permit.profiles().is_empty() {
        return (
            Ok(ListResourceTemplatesResult::with_all_items(Vec::new())),
            CallOutcome::listed(0, 0),
        );
    }
    let template = ResourceTemplate::new(
        format!("{TABLE_URI_PREFIX}{{profile}}/tables/{{schema}}/{{table}}"),
        "table",
    )
    .with_title("Table schema")
    .with_description(
        "The structure of one table or view (columns, keys, indexes, triggers) as JSON, the same as describe_table. \
         profile is one of the configured profiles (see list_profiles); the first is the default.",
    )
    .with_mime_type("application/json");
    (
        Ok(ListResourceTemplatesResult::with_all_items(vec![template])),
        CallOutcome::listed(1, 0),
    )
}

/// Tables of every profile the caller may read, profile by profile in configuration order. A profile that cannot
/// be listed (its database is down) is left out with a warning rather than hiding the others; the list fails only
/// when every permitted profile does.
pub async fn list(permit: &Permit<'_>, user: Option<UserLogin<'_>>) -> Answer<ListResourcesResult> {
    let mut resources = Vec::new();
    let mut failure = None;
    for db in permit.profiles() {
        let room = MAX_LISTED_TABLES.saturating_sub(resources.len());
        if room == 0 {
            break;
        }
        let tables = match tools::dispatch::table_names(db, user, room as i64).await {
            Ok(tables) => tables,
            Err(err) => {
                tracing::warn!(profile = %db.profile.name, error = %err, "could not list tables for resources/list");
                failure = Some(err);
                continue;
            }
        };
        resources.extend(tables.into_iter().map(|(schema, table)| {
            Resource::new(
                format!(
                    "{TABLE_URI_PREFIX}{}/tables/{schema}/{table}",
                    db.profile.name
                ),
                format!("{schema}.{table}"),
            )
            .with_mime_type("application/json")
        }));
    }
    if resources.is_empty()
        && let Some(err) = failure
    {
        return (
            Err(McpError::internal_error(err.to_string(), None)),
            CallOutcome::from_error(&err),
        );
    }
    let outcome = CallOutcome::listed(resources.len(), 0);
    (Ok(ListResourcesResult::with_all_items(resources)), outcome)
}

pub async fn read(
    permit: &Permit<'_>,
    uri: &str,
    user: Option<UserLogin<'_>>,
) -> Answer<ReadResourceResponse> {
    let (Some(db), Some((schema, table))) = (permit.profiles().first(), permit.table()) else {
        // The gate issues a read permit only with both; refusing keeps a wrong permit from reading anything.
        return (
            Err(McpError::internal_error(
                "resource read without a permit",
                None,
            )),
            CallOutcome::denied(),
        );
    };
    match tools::dispatch::describe_for_resource(db, schema, table, user).await {
        Ok(value) => {
            let text = value.to_string();
            let outcome = CallOutcome::listed(1, text.len());
            let contents = ResourceContents::TextResourceContents {
                uri: uri.to_string(),
                mime_type: Some("application/json".into()),
                text,
                meta: None,
            };
            (Ok(ReadResourceResult::new(vec![contents]).into()), outcome)
        }
        Err(err) => (
            Err(McpError::resource_not_found(err.to_string(), None)),
            CallOutcome::from_error(&err),
        ),
    }
}
