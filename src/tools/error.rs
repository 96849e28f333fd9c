use serde::Serialize;

/// Why a tool call failed. It becomes a tool result with `isError: true` whose structured content is this value,
/// so the model sees PostgreSQL's own diagnostics (SQLSTATE, detail, hint, position) or the guard's reason.
#[derive(Debug, Clone, Serialize, thiserror::Error)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum ToolError {
    /// PostgreSQL rejected or aborted the statement.
    #[error("PostgreSQL error {sqlstate}: {message}")]
    Database {
        sqlstate: String,
        message: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        hint: Option<String>,
        /// 1-based character position in the submitted SQL, when PostgreSQL reported one.
        #[serde(skip_serializing_if = "Option::is_none")]
        position: Option<u32>,
    },
    /// The SQL guard refused the statement before it reached the database.
    #[error("rejected by the SQL guard: {reason}")]
    Rejected { reason: String },
    /// An argument is wrong (unknown table, bad column, out-of-range limit, unknown profile).
    #[error("invalid argument: {message}")]
    InvalidArgument { message: String },
    /// The statement ran longer than the profile's statement_timeout and was cancelled on the server.
    #[error("statement cancelled after {timeout_ms} ms (statement_timeout)")]
    Timeout { timeout_ms: u64 },
    /// The database could not be reached or the connection broke; nothing secret is included.
    #[error("database unavailable: {message}")]
    Unavailable { message: String },
    /// The caller could not be logged in to PostgreSQL as themself (on-behalf-of): an application's token where a
    /// user's is needed, a user unknown to the directory, consent or a sign-in requirement missing.
    #[error("cannot log in to PostgreSQL as the caller: {message}")]
    CallerLogin { message: String },
}

impl ToolError {
    pub fn invalid(message: impl Into<String>) -> Self {
        ToolError::InvalidArgument {
            message: message.into(),
        }
    }

    pub fn rejected(reason: impl Into<String>) -> Self {
        ToolError::Rejected {
            reason: reason.into(),
        }
    }
}

impl From<tokio_postgres::Error> for ToolError {
    fn from(err: tokio_postgres::Error) -> Self {
        if let Some(db) = err.as_db_error() {
            let position = match db.position() {
                Some(tokio_postgres::error::ErrorPosition::Original(p)) => Some(*p),
                _ => None,
            };
            return ToolError::Database {
                sqlstate: db.code().code().to_string(),
                message: db.message().to_string(),
                detail: db.detail().map(str::to_string),
                hint: db.hint().map(str::to_string),
                position,
            };
        }
        // Non-database errors (I/O, closed connection) carry no SQL text or credentials in their Display.
        ToolError::Unavailable {
            message: err.to_string(),
        }
    }
}

impl From<deadpool_postgres::PoolError> for ToolError {
    fn from(err: deadpool_postgres::PoolError) -> Self {
        match err {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            other => ToolError::Unavailable {
                message: other.to_string(),
            },
        }
    }
}
