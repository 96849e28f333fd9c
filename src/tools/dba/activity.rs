//! activity: what runs now, from pg_stat_activity, with wait events, durations and who blocks whom. Sessions
//! whose state the role may not see are counted, not listed.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use super::{STATS_GRANT, sees_all_stats};
use crate::tools::ToolError;

pub const ACTIVITY_DESCRIPTION: &str = "Sessions now (pg_stat_activity), longest-running first, at most 200: \
state, wait event, query and transaction durations, the pids blocking each, query text. Idle ones only with \
`include_idle`.";

/// Enough to see a busy server; the answer says when more exist.
const MAX_SESSIONS: i64 = 200;
const QUERY_CHARS: i32 = 1000;

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivityParams {
    #[serde(default)]
    pub include_idle: bool,
    /// Database profile to use (see list_profiles); default: the first profile.
    #[serde(default)]
    pub profile: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Activity {
    pub sessions: Vec<SessionActivity>,
    /// More sessions matched than the 200 listed.
    pub truncated: bool,
    /// Client sessions of other roles whose state and query this role may not see.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hidden_sessions: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct SessionActivity {
    pub pid: i32,
    pub user: Option<String>,
    pub database: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub application: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_addr: Option<String>,
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_event: Option<String>,
    /// Seconds since the current (or last) query started.
    pub query_seconds: Option<f64>,
    /// Seconds since the transaction started; absent outside a transaction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction_seconds: Option<f64>,
    /// Seconds in the current state.
    pub state_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub blocked_by: Vec<i32>,
    pub query: Option<String>,
}

pub async fn activity(client: &Client, params: ActivityParams) -> Result<Activity, ToolError> {
    let rows = client
        .query(
            "SELECT a.pid, a.usename::text, a.datname::text, nullif(a.application_name, ''), host(a.client_addr), a.state, \
             a.wait_event_type || '/' || a.wait_event, \
             extract(epoch FROM now() - a.query_start)::float8, extract(epoch FROM now() - a.xact_start)::float8, \
             extract(epoch FROM now() - a.state_change)::float8, pg_catalog.pg_blocking_pids(a.pid), left(a.query, $1) \
             FROM pg_catalog.pg_stat_activity a \
             WHERE a.backend_type = 'client backend' AND a.pid <> pg_catalog.pg_backend_pid() AND a.state IS NOT NULL \
             AND ($2 OR a.state <> 'idle') \
             ORDER BY a.query_start NULLS LAST LIMIT $3",
            &[&QUERY_CHARS, &params.include_idle, &(MAX_SESSIONS + 1)],
        )
        .await?;
    let truncated = rows.len() as i64 > MAX_SESSIONS;
    let sessions = rows
        .iter()
        .take(MAX_SESSIONS as usize)
        .map(|r| {
            Ok(SessionActivity {
                pid: r.try_get(0)?,
                user: r.try_get(1)?,
                database: r.try_get(2)?,
                application: r.try_get(3)?,
                client_addr: r.try_get(4)?,
                state: r.try_get(5)?,
                wait_event: r.try_get(6)?,
                query_seconds: r.try_get::<_, Option<f64>>(7)?.map(round_ms),
                transaction_seconds: r.try_get::<_, Option<f64>>(8)?.map(round_ms),
                state_seconds: r.try_get::<_, Option<f64>>(9)?.map(round_ms),
                blocked_by: r.try_get(10)?,
                query: r.try_get(11)?,
            })
        })
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
    let (hidden_sessions, hint) = if sees_all_stats(client).await? {
        (None, None)
    } else {
        let hidden: i64 = client
            .query_one(
                // Without the privilege even backend_type is hidden; a user name marks a client session.
                "SELECT count(*) FROM pg_catalog.pg_stat_activity \
                 WHERE backend_type IS NULL AND usesysid IS NOT NULL",
                &[],
            )
            .await?
            .try_get(0)?;
        (
            Some(hidden),
            (hidden > 0).then(|| format!("{STATS_GRANT} shows the other roles' sessions")),
        )
    };
    Ok(Activity {
        sessions,
        truncated,
        hidden_sessions,
        hint,
    })
}

fn round_ms(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}
