//! Second stage: a VOLATILE function may write or change state no matter what its name says, so in read-only
//! mode every called function is resolved in pg_proc and volatile ones must be on the allow-list.

use tokio_postgres::types::Type;

use super::policy::GuardPolicy;
use super::{GuardError, Verdict};
use crate::config::AccessMode;

/// Every VOLATILE pg_proc entry a call could resolve to. Unqualified names are looked up in every schema of the
/// effective search_path (`current_schemas(true)` adds pg_catalog and the temp schema), because overload
/// resolution happens later and any of them might be picked. Qualified names look only in their schema;
/// `pg_temp` means this session's temp schema. Names that match nothing return nothing: PostgreSQL reports
/// unknown functions itself.
const VOLATILE_CANDIDATES_SQL: &str = "\
SELECT DISTINCT n.nspname::text, p.proname::text
FROM unnest($1::text[], $2::text[]) AS called(schema_name, function_name)
JOIN pg_catalog.pg_proc p ON p.proname = called.function_name
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE p.provolatile = 'v'
  AND CASE
        WHEN called.schema_name IS NULL THEN n.nspname = ANY (pg_catalog.current_schemas(true))
        WHEN called.schema_name = 'pg_temp' THEN n.oid = pg_catalog.pg_my_temp_schema()
        ELSE n.nspname = called.schema_name
      END
ORDER BY 1, 2";

/// Rejects the statement when, in read-only mode, any function it calls may resolve to a VOLATILE function
/// that the allow-list does not name. One round trip; none when nothing is called or in read-write mode
/// (where writing is allowed, so volatility is no reason to refuse).
pub async fn check_volatility(
    client: &tokio_postgres::Client,
    verdict: &Verdict,
    policy: &GuardPolicy,
) -> Result<(), GuardError> {
    if verdict.functions.is_empty() || policy.access_mode == AccessMode::ReadWrite {
        return Ok(());
    }
    let schemas: Vec<Option<&str>> = verdict
        .functions
        .iter()
        .map(|function| function.schema.as_deref())
        .collect();
    let names: Vec<&str> = verdict
        .functions
        .iter()
        .map(|function| function.name.as_str())
        .collect();
    // query_typed sends parse, bind and execute together: one round trip, and no prepared statement left
    // behind on the connection (or on a transaction-pooling proxy).
    let rows = client
        .query_typed(
            VOLATILE_CANDIDATES_SQL,
            &[(&schemas, Type::TEXT_ARRAY), (&names, Type::TEXT_ARRAY)],
        )
        .await
        .map_err(|error| {
            GuardError::new(format!(
                "could not check function volatility in the catalog: {error}"
            ))
        })?;
    for row in rows {
        let (schema, name): (String, String) = match (row.try_get(0), row.try_get(1)) {
            (Ok(schema), Ok(name)) => (schema, name),
            _ => {
                return Err(GuardError::new(
                    "could not check function volatility: unexpected catalog row",
                ));
            }
        };
        if !policy.volatile_allowed(&schema, &name) {
            return Err(GuardError::new(format!(
                "function {schema}.{name} is VOLATILE and not allowed in read-only mode: it may change data or state; \
                 only stable and immutable functions and allow-listed volatile ones may be called"
            )));
        }
    }
    Ok(())
}
