//! health_check: the checks a DBA runs first, each judged ok / warning / critical with its evidence and the fix
//! to run (as text: pgmcp never runs it). The checks read only catalogs and statistics views, so a monitoring
//! role (`pg_monitor`) runs all of them; what a role cannot see is said, with the grant that shows it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio_postgres::Client;
use tokio_postgres::types::ToSql;

use super::health_checks::{CHECKS, CheckSql};
use super::{STATS_GRANT, sees_all_stats};
use crate::tools::ToolError;

pub const HEALTH_CHECK_DESCRIPTION: &str = "DBA health checks, each ok, warning or critical with evidence and a fix \
(SQL or a setting, never run): invalid_indexes, duplicate_indexes, unused_indexes, bloat, vacuum, wraparound, \
sequences, connections, idle_in_transaction, long_running, lock_waits, replication, cache_hit_ratio, \
unvalidated_constraints, missing_primary_keys. `limited` says what this role could not see and the grant that \
shows it.";

const DEFAULT_THRESHOLD_SECONDS: f64 = 60.0;

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckParams {
    /// Checks to run, by name. Default: all.
    #[serde(default)]
    pub checks: Option<Vec<String>>,
    /// Report sessions idle in a transaction, running or waiting on a lock longer than this (10x: critical).
    #[serde(default)]
    #[schemars(extend("default" = DEFAULT_THRESHOLD_SECONDS))]
    pub min_duration_seconds: Option<f64>,
    /// Database profile to use (see list_profiles); default: the first profile.
    #[serde(default)]
    pub profile: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Warning,
    Critical,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct HealthReport {
    /// The worst status of all checks.
    pub status: Status,
    pub checks: Vec<CheckReport>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct CheckReport {
    pub check: String,
    pub status: Status,
    /// What ok means, or how many findings there are.
    pub summary: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<Finding>,
    /// What this role could not see, and the grant that would show it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limited: Option<String>,
    /// Why the check could not run at all (PostgreSQL's error).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_run: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Finding {
    pub object: String,
    pub status: Status,
    pub evidence: String,
    /// SQL or a setting for a person to apply; pgmcp never runs it.
    pub fix: String,
}

fn status_of(text: &str) -> Status {
    match text {
        "critical" => Status::Critical,
        "warning" => Status::Warning,
        _ => Status::Ok,
    }
}

/// Runs the chosen checks inside the caller's read-only transaction. Each check runs under a savepoint, so one
/// that fails (a view this server lacks, a privilege) is reported and the others still run.
pub async fn health_check(
    client: &Client,
    params: HealthCheckParams,
) -> Result<HealthReport, ToolError> {
    let chosen: Vec<&CheckSql> = match &params.checks {
        None => CHECKS.iter().collect(),
        Some(names) if names.is_empty() => CHECKS.iter().collect(),
        Some(names) => names
            .iter()
            .map(|name| {
                CHECKS.iter().find(|c| c.name == name).ok_or_else(|| {
                    ToolError::invalid(format!(
                        "unknown check `{name}`; the checks are: {}",
                        CHECKS.iter().map(|c| c.name).collect::<Vec<_>>().join(", ")
                    ))
                })
            })
            .collect::<Result<_, _>>()?,
    };
    let threshold = params
        .min_duration_seconds
        .unwrap_or(DEFAULT_THRESHOLD_SECONDS);
    if !threshold.is_finite() || threshold < 0.0 {
        return Err(ToolError::invalid(
            "`min_duration_seconds` must be a number of seconds, 0 or more",
        ));
    }
    let sees_all = sees_all_stats(client).await?;
    let mut checks = Vec::with_capacity(chosen.len());
    for check in chosen {
        checks.push(run_check(client, check, threshold, sees_all).await?);
    }
    let status = checks.iter().map(|c| c.status).max().unwrap_or(Status::Ok);
    Ok(HealthReport { status, checks })
}

async fn run_check(
    client: &Client,
    check: &CheckSql,
    threshold: f64,
    sees_all: bool,
) -> Result<CheckReport, ToolError> {
    let mut report = CheckReport {
        check: check.name.to_string(),
        status: Status::Ok,
        summary: check.ok.to_string(),
        findings: Vec::new(),
        limited: None,
        not_run: None,
    };
    client.batch_execute("SAVEPOINT pgmcp_check").await?;
    let bind: Vec<&(dyn ToSql + Sync)> = if check.timed {
        vec![&threshold]
    } else {
        Vec::new()
    };
    let rows = match client.query(check.sql, &bind).await {
        Ok(rows) => rows,
        Err(error) => {
            client
                .batch_execute("ROLLBACK TO SAVEPOINT pgmcp_check")
                .await?;
            report.not_run = Some(match error.as_db_error() {
                Some(db) => db.message().to_string(),
                None => return Err(error.into()),
            });
            return Ok(report);
        }
    };
    for row in &rows {
        let finding = Finding {
            object: row.try_get(0)?,
            status: status_of(row.try_get(1)?),
            evidence: row.try_get::<_, Option<String>>(2)?.unwrap_or_default(),
            fix: row.try_get::<_, Option<String>>(3)?.unwrap_or_default(),
        };
        if finding.status == Status::Ok {
            // A check that always answers (connections, cache) states its measurement as the summary.
            report.summary = finding.evidence;
        } else {
            report.status = report.status.max(finding.status);
            report.findings.push(finding);
        }
    }
    if !report.findings.is_empty() {
        report.summary = format!("{} finding(s)", report.findings.len());
    }
    if check.needs_stats && !sees_all {
        report.limited = Some(format!(
            "sees the state and query of this role's own sessions only; {STATS_GRANT} shows all"
        ));
    }
    if let Some((sql, what)) = check.unseen_sql {
        let unseen: i64 = client.query_one(sql, &[]).await?.try_get(0)?;
        if unseen > 0 {
            report.limited = Some(format!("{unseen} {what}"));
        }
    }
    client
        .batch_execute("RELEASE SAVEPOINT pgmcp_check")
        .await?;
    Ok(report)
}
