//! Curated statements against PostgreSQL: prepared (never run) in a read-only transaction that is rolled back,
//! and each placeholder's inferred type compared with its declared parameter. At start-up when the database
//! answers (a mismatch then fails the start); otherwise on the tool's first call, which is refused if they differ.

use std::time::Duration;

use anyhow::bail;
use tokio_postgres::types::Type;

use super::{CuratedTool, ParamType};
use crate::db::session::Session;
use crate::mcp::Databases;
use crate::tools::ToolError;

/// What preparing a curated statement told: it matches, why it does not, or that PostgreSQL could not be asked.
enum Outcome {
    Matches,
    Differs(String),
    Unreachable(ToolError),
}

async fn check(tool: &CuratedTool, conn: &mut Session) -> Outcome {
    let txn = match conn.build_transaction().read_only(true).start().await {
        Ok(txn) => txn,
        Err(error) => return Outcome::Unreachable(error.into()),
    };
    let statement = match txn.prepare(&tool.sql).await {
        Ok(statement) => statement,
        Err(error) if error.as_db_error().is_some() => {
            return Outcome::Differs(format!(
                "PostgreSQL cannot prepare the statement: {}",
                ToolError::from(error)
            ));
        }
        Err(error) => return Outcome::Unreachable(error.into()),
    };
    match compare(&tool.parameters, statement.params()) {
        Ok(()) => Outcome::Matches,
        Err(reason) => Outcome::Differs(reason),
    }
}

/// Each declared type against the type PostgreSQL inferred for its placeholder.
fn compare(parameters: &[super::Parameter], inferred: &[Type]) -> Result<(), String> {
    if inferred.len() != parameters.len() {
        return Err(format!(
            "the statement has {} placeholder(s) but {} parameter(s) are declared; declare one per placeholder",
            inferred.len(),
            parameters.len()
        ));
    }
    for (position, (parameter, ty)) in parameters.iter().zip(inferred).enumerate() {
        let position = position + 1;
        if !parameter.ty.accepts(ty) {
            let suggestion = declared_for(ty)
                .map(|name| format!("declare it as type = \"{name}\", or "))
                .unwrap_or_default();
            return Err(format!(
                "parameter `{}` is declared {}, but PostgreSQL expects {} for ${position}; {suggestion}cast the \
                 placeholder in the statement ({})",
                parameter.name,
                parameter.ty.name(),
                ty.name(),
                parameter.ty.cast(position),
            ));
        }
    }
    Ok(())
}

/// The declared type that matches a PostgreSQL type, if any does.
fn declared_for(ty: &Type) -> Option<String> {
    [
        "integer",
        "number",
        "string",
        "boolean",
        "date",
        "timestamp",
        "timestamptz",
        "uuid",
    ]
    .iter()
    .flat_map(|name| [name.to_string(), format!("{name}[]")])
    .find(|name| ParamType::parse(name).is_some_and(|declared| declared.accepts(ty)))
}

fn mismatch(tool: &CuratedTool, reason: &str) -> ToolError {
    ToolError::rejected(format!(
        "curated tool `{}` does not match its database: {reason}. It is not run until its [[tools]] entry is fixed",
        tool.name
    ))
}

/// Before a call runs: the tool's types, checked on this session if they have not been yet.
pub(super) async fn ensure_types(tool: &CuratedTool, conn: &mut Session) -> Result<(), ToolError> {
    if tool.types_checked.get().is_none() {
        match check(tool, conn).await {
            Outcome::Matches => {
                let _ = tool.types_checked.set(Ok(()));
            }
            Outcome::Differs(reason) => {
                tracing::error!(tool = %tool.name, %reason, "curated tool does not match its database");
                let _ = tool.types_checked.set(Err(reason));
            }
            Outcome::Unreachable(error) => return Err(error),
        }
    }
    match tool.types_checked.get() {
        Some(Err(reason)) => Err(mismatch(tool, reason)),
        _ => Ok(()),
    }
}

/// Checks every curated tool whose database answers now; a mismatch fails the start with the tool's name and
/// the fix. A database that does not answer within its connect timeout leaves its tools to their first call
/// (pgmcp starts without its database, as it always has). Per-caller profiles have no login of pgmcp's own, so
/// their tools are checked on first call too.
pub async fn verify_at_start(databases: &Databases) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    for tool in databases.curated().all() {
        let Ok(db) = databases.select(Some(&tool.profile)) else {
            continue;
        };
        if db.per_caller() {
            continue;
        }
        let wait = db.profile.connect_timeout + Duration::from_secs(1);
        let checked = tokio::time::timeout(wait, async {
            let mut conn = db.get().await.map_err(Outcome::Unreachable)?;
            Ok::<_, Outcome>(check(tool, &mut conn).await)
        })
        .await;
        let outcome = match checked {
            Ok(Ok(outcome)) | Ok(Err(outcome)) => outcome,
            Err(_) => Outcome::Unreachable(ToolError::Unavailable {
                message: format!("no connection within {} ms", wait.as_millis()),
            }),
        };
        match outcome {
            Outcome::Matches => {
                let _ = tool.types_checked.set(Ok(()));
            }
            Outcome::Differs(reason) => problems.push(format!(
                "curated tool `{}` (tools.{}.sql on profile `{}`): {reason}",
                tool.name, tool.name, tool.profile
            )),
            Outcome::Unreachable(error) => tracing::warn!(
                tool = %tool.name,
                profile = %tool.profile,
                %error,
                "could not check a curated tool against its database at start-up; it is checked on its first call"
            ),
        }
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("\n"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_types_are_suggested_from_postgresql_types() {
        assert_eq!(declared_for(&Type::INT8).as_deref(), Some("integer"));
        assert_eq!(declared_for(&Type::TEXT_ARRAY).as_deref(), Some("string[]"));
        assert_eq!(declared_for(&Type::JSONB), None);
    }
}
