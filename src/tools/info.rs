//! server_info: who and where this session is: server version, roles, database, TLS, access mode, extensions.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use crate::config::AccessMode;
use crate::http::Caller;
use crate::telemetry::audit::CallerIdentity;
use crate::tools::ToolError;

pub const SERVER_INFO_DESCRIPTION: &str = "The connection behind a profile: PostgreSQL version (also as \
`server_version_num`, e.g. 150008), users, database, address, TLS, superuser, the access mode pgmcp enforces, time \
zone, `in_recovery` (a replica: reads only), extensions with versions (postgis, pgvector… unlock SQL) and who is \
calling. Call it once first to learn what SQL the server supports.";

#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct ServerInfoParams {
    /// Database profile to use (see list_profiles); default: the first profile.
    #[serde(default)]
    pub profile: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ExtensionInfo {
    pub name: String,
    pub version: String,
    /// Schema holding the extension's objects.
    pub schema: String,
}

/// Who is calling pgmcp, as pgmcp established it (never the token itself).
#[derive(Debug, Serialize, JsonSchema)]
pub struct CallerInfo {
    /// "local" (stdio: whoever started pgmcp), "anonymous" (HTTP without authentication) or "token" (HTTP with a
    /// validated access token).
    pub kind: String,
    /// The validated token's claims (empty unless `kind` is "token").
    #[serde(flatten)]
    pub caller: Caller,
}

impl From<&CallerIdentity> for CallerInfo {
    fn from(identity: &CallerIdentity) -> CallerInfo {
        let (kind, caller) = match identity {
            CallerIdentity::Local => ("local", Caller::default()),
            CallerIdentity::Anonymous => ("anonymous", Caller::default()),
            CallerIdentity::Token(caller) => ("token", caller.as_ref().clone()),
        };
        CallerInfo {
            kind: kind.into(),
            caller,
        }
    }
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ServerInfo {
    /// Full version() string, e.g. "PostgreSQL 15.8 on x86_64-pc-linux-gnu, compiled by gcc ...".
    pub version: String,
    /// The server_version setting, e.g. "15.8 (Debian 15.8-1)".
    pub server_version: String,
    /// Version as an integer for comparisons: major * 10000 + minor, e.g. 150008.
    pub server_version_num: i32,
    /// Role whose privileges apply now (differs from session_user after SET ROLE).
    pub current_user: String,
    /// Role that logged in.
    pub session_user: String,
    pub current_database: String,
    /// Server address of this connection (inet_server_addr); null over a Unix socket.
    pub server_address: Option<String>,
    /// Server port of this connection (inet_server_port); null over a Unix socket.
    pub server_port: Option<i32>,
    /// True when this session is encrypted with SSL/TLS.
    pub ssl: bool,
    /// TLS protocol version, e.g. "TLSv1.3"; null without SSL.
    pub ssl_version: Option<String>,
    /// TLS cipher suite; null without SSL.
    pub ssl_cipher: Option<String>,
    /// Access mode pgmcp enforces for this profile: "read_only" or "read_write".
    #[schemars(with = "String")]
    pub access_mode: AccessMode,
    /// Name of the profile this connection belongs to.
    pub profile: String,
    /// True when the current role is a superuser.
    pub is_superuser: bool,
    /// Session TimeZone setting; timestamptz values are shown in it.
    pub time_zone: String,
    /// True on a standby (read replica) still in recovery: it accepts only reads.
    pub in_recovery: bool,
    /// Extensions installed in the current database, by name.
    pub extensions: Vec<ExtensionInfo>,
    /// Who is calling pgmcp.
    pub caller: CallerInfo,
}

const SESSION_SQL: &str = "SELECT version(), current_setting('server_version'),
       current_setting('server_version_num')::int4, current_user::text, session_user::text,
       current_database()::text, host(inet_server_addr()), inet_server_port(),
       coalesce(ssl.ssl, false), ssl.version, ssl.cipher,
       coalesce((SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = current_user), false),
       current_setting('TimeZone'), pg_is_in_recovery()
FROM (SELECT 1) AS one
LEFT JOIN pg_stat_ssl ssl ON ssl.pid = pg_backend_pid()";

const EXTENSIONS_SQL: &str = "SELECT e.extname::text, e.extversion, n.nspname::text
FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
ORDER BY e.extname";

pub async fn server_info(
    client: &Client,
    access_mode: AccessMode,
    profile_name: &str,
    caller: &CallerIdentity,
) -> Result<ServerInfo, ToolError> {
    let (session, extensions) = tokio::try_join!(
        client.query_one(SESSION_SQL, &[]),
        client.query(EXTENSIONS_SQL, &[]),
    )?;
    let extensions = extensions
        .iter()
        .map(|row| {
            Ok(ExtensionInfo {
                name: row.try_get(0)?,
                version: row.try_get(1)?,
                schema: row.try_get(2)?,
            })
        })
        .collect::<Result<_, ToolError>>()?;
    Ok(ServerInfo {
        version: session.try_get(0)?,
        server_version: session.try_get(1)?,
        server_version_num: session.try_get(2)?,
        current_user: session.try_get(3)?,
        session_user: session.try_get(4)?,
        current_database: session.try_get(5)?,
        server_address: session.try_get(6)?,
        server_port: session.try_get(7)?,
        ssl: session.try_get(8)?,
        ssl_version: session.try_get(9)?,
        ssl_cipher: session.try_get(10)?,
        access_mode,
        profile: profile_name.to_string(),
        is_superuser: session.try_get(11)?,
        time_zone: session.try_get(12)?,
        in_recovery: session.try_get(13)?,
        extensions,
        caller: CallerInfo::from(caller),
    })
}
