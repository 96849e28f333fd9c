//! Curated tools: reviewed, parameterized statements a team declares in `[[tools]]`, offered beside (or instead
//! of) free SQL. Each is checked at start-up (name, declarations, the guard, its placeholders) without a database,
//! and against PostgreSQL's inferred parameter types as soon as a connection opens (`verify`). A call's arguments
//! are checked against the declarations before anything reaches the database, then bound as parameters of the
//! same path `execute_query` takes: guard, read-only transaction, limits, output shape.

mod load;
pub mod params;
mod verify;

use std::sync::OnceLock;

use rmcp::model::JsonObject;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::db::Database;
use crate::db::exec::{self, Intent, QueryOutput};
use crate::db::session::Session;
use crate::tools::ToolError;
use crate::tools::query::{call_context, limits_for};

pub use load::load;
pub use params::{ParamType, Parameter};
pub use verify::verify_at_start;

/// One declared tool, checked.
#[derive(Debug)]
pub struct CuratedTool {
    pub name: String,
    pub description: String,
    /// The profile the statement runs on.
    pub profile: String,
    pub sql: String,
    pub parameters: Vec<Parameter>,
    /// The statement changes data (only on a read_write profile): the tool is marked destructive, runs in a
    /// committed transaction, and a policy's `*` does not grant it.
    pub writes: bool,
    /// Set once PostgreSQL has prepared the statement: `Ok` when its parameter types match the declarations,
    /// else why not. Unset while the database has not been reached.
    types_checked: OnceLock<Result<(), String>>,
}

impl CuratedTool {
    pub fn input_schema(&self) -> JsonObject {
        params::input_schema(&self.parameters)
    }

    /// The values for $1, $2, …, checked against the declarations; nothing here touches the database.
    pub fn bind_values(&self, arguments: &JsonObject) -> Result<Vec<Value>, ToolError> {
        params::bind_values(&self.parameters, arguments)
    }
}

/// Which tools a server offers (`--tools`, `tools_exposed`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Exposure {
    #[default]
    All,
    Builtin,
    Curated,
    Named(Vec<String>),
}

/// The curated tools of one server and which tools it exposes.
#[derive(Debug, Default)]
pub struct CuratedTools {
    tools: Vec<CuratedTool>,
    exposure: Exposure,
}

impl CuratedTools {
    pub fn all(&self) -> &[CuratedTool] {
        &self.tools
    }

    pub fn get(&self, name: &str) -> Option<&CuratedTool> {
        self.tools.iter().find(|tool| tool.name == name)
    }

    /// Whether the tool called `name` is offered: built-in tools under `builtin`, curated ones under `curated`.
    pub fn exposes(&self, name: &str) -> bool {
        let curated = self.get(name).is_some();
        match &self.exposure {
            Exposure::All => true,
            Exposure::Builtin => !curated,
            Exposure::Curated => curated,
            Exposure::Named(names) => names.iter().any(|n| n == name),
        }
    }

    /// The curated tools that only read, which a policy's `*` grants.
    pub fn read_only_names(&self) -> Vec<String> {
        (self.tools.iter())
            .filter(|tool| !tool.writes)
            .map(|tool| tool.name.clone())
            .collect()
    }
}

/// Runs a curated tool with its checked values on a session of its profile.
pub async fn run(
    db: &Database,
    conn: &mut Session,
    tool: &CuratedTool,
    values: &[Value],
    cancel: &CancellationToken,
) -> Result<QueryOutput, ToolError> {
    verify::ensure_types(tool, conn).await?;
    let ctx = call_context(db, limits_for(db, None)?, cancel);
    let intent = if tool.writes {
        Intent::Write
    } else {
        Intent::ReadOnly
    };
    exec::run_user_sql(conn, &ctx, &tool.sql, values, intent).await
}
