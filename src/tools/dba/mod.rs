//! The DBA's tools: health_check, top_queries, activity and index_advice. Each runs SQL that pgmcp wrote, inside
//! the read-only transaction the dispatcher opens; index_advice's statements go through the guard like
//! execute_query's, and its hypothetical indexes (hypopg) never outlive the call, see [`hypo`].

pub mod activity;
pub mod advice;
mod candidates;
pub mod health;
mod health_checks;
pub mod hypo;
pub mod reading;
pub mod top_queries;

use tokio_postgres::GenericClient;

/// The grant that lets a role see every session's state and query text and every statement's text.
pub const STATS_GRANT: &str = "GRANT pg_monitor TO <role> (or just pg_read_all_stats)";

/// Whether the connected role sees other roles' sessions and statements in full.
pub async fn sees_all_stats(client: &impl GenericClient) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT pg_catalog.pg_has_role(current_user, 'pg_read_all_stats', 'USAGE') \
                 OR (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user)",
            &[],
        )
        .await?;
    Ok(row.get::<_, Option<bool>>(0).unwrap_or(false))
}

/// The quoted schema an extension is installed in, in this database; `None` when it is not installed.
pub async fn extension_schema(
    client: &impl GenericClient,
    extension: &str,
) -> Result<Option<String>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT pg_catalog.quote_ident(n.nspname) FROM pg_catalog.pg_extension e \
             JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = $1",
            &[&extension],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}
