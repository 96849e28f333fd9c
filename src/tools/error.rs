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
    /// Every connection of the profile's pool stayed in use for as long as a call may wait for one: retry later.
    #[error("busy: {message}")]
    Busy { message: String },
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
            if ends_the_session(db.code()) {
                // Not about the statement: the server is going away or will not take the session. The client can
                // act on that (retry later) as it would on any other unreachable database.
                return ToolError::Unavailable {
                    message: format!(
                        "PostgreSQL ended the session: {} (SQLSTATE {})",
                        db.message(),
                        db.code().code()
                    ),
                };
            }
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
            message: connection_failure(&err),
        }
    }
}

/// What went wrong with the connection, with the cause tokio-postgres keeps behind its one-line summary
/// ("error connecting to server" alone does not say that the connection was refused).
fn connection_failure(err: &tokio_postgres::Error) -> String {
    if err.is_closed() {
        return "the connection to PostgreSQL was closed: the server restarted or ended the session, or the \
                network broke it"
            .into();
    }
    let message = crate::db::connect::describe_error(err);
    let about_the_connection = [
        "error connecting",
        "error communicating",
        "timeout waiting",
        "error performing TLS",
    ]
    .iter()
    .any(|prefix| message.starts_with(prefix));
    if about_the_connection {
        format!("PostgreSQL connection failed: {message}")
    } else {
        message
    }
}

/// Errors that say the session is over whatever the statement was: an administrator or a shutdown terminated it
/// (57P01 admin_shutdown, 57P02 crash_shutdown), the server is starting or stopping (57P03 cannot_connect_now),
/// or the connection failed (class 08).
fn ends_the_session(code: &tokio_postgres::error::SqlState) -> bool {
    matches!(code.code(), "57P01" | "57P02" | "57P03") || code.code().starts_with("08")
}

impl From<deadpool_postgres::PoolError> for ToolError {
    fn from(err: deadpool_postgres::PoolError) -> Self {
        use deadpool_postgres::{PoolError, TimeoutType};
        match err {
            PoolError::Backend(e) => e.into(),
            PoolError::Timeout(TimeoutType::Wait) => ToolError::Busy {
                message:
                    "every database connection is in use and none came free in time; retry shortly"
                        .into(),
            },
            PoolError::Timeout(TimeoutType::Create) => ToolError::Unavailable {
                message: "could not open a connection to PostgreSQL within connect_timeout".into(),
            },
            PoolError::Timeout(TimeoutType::Recycle) => ToolError::Unavailable {
                message: "a pooled connection to PostgreSQL did not answer its check in time"
                    .into(),
            },
            PoolError::Closed => ToolError::Unavailable {
                message: "pgmcp is shutting down".into(),
            },
            other => ToolError::Unavailable {
                message: other.to_string(),
            },
        }
    }
}
