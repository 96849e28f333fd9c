//! Prometheus metrics: MCP requests and tool calls by outcome and latency are counted as they happen; connection
//! pools and the authenticator's counters are read on each scrape, so a scrape always shows their current state.
//! A family keeps every label set it has seen for the life of the process, so labels of the counted families are
//! `&'static str`: names from pgmcp's own fixed lists, never request text.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::http::auth::AuthStats;

type Labels = Vec<(String, String)>;

/// Labels of the families counted per request: only pgmcp's own names, so their number is fixed. Arrays, so
/// counting a call allocates nothing.
type StaticLabels<const N: usize> = [(&'static str, &'static str); N];

/// The `tool` label of a call to a tool this server does not offer, whatever name was asked for.
pub const UNKNOWN_TOOL: &str = "unknown";

/// Latency buckets from 1 ms to about 65 s: catalog calls take milliseconds, analytical queries seconds.
fn latency_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.001, 2.0, 17,
    ))
}

pub struct Metrics {
    requests: Family<StaticLabels<2>, Counter>,
    calls: Family<StaticLabels<2>, Counter>,
    latency: Family<StaticLabels<1>, Histogram, fn() -> Histogram>,
    request_series: Series<2, Counter>,
    call_series: Series<2, (Counter, Histogram)>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Family::default(),
            calls: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            request_series: Series::default(),
            call_series: Series::default(),
        }
    }
}

/// Where each label value's text is: `(address, length)`.
type LabelKey<const N: usize> = [(usize, usize); N];

/// The series already counted, by where their labels' texts are. A family's `get_or_create` SipHashes the labels'
/// text on every call; the labels are `&'static str`, so a label's text is found at the same place each time, and
/// two addresses hash far faster. A handle shares its series' value with the family, which renders it. Two copies
/// of one text at different addresses are two keys for the same series.
struct Series<const N: usize, M>(RwLock<foldhash::HashMap<LabelKey<N>, M>>);

impl<const N: usize, M> Default for Series<N, M> {
    fn default() -> Self {
        Series(RwLock::new(foldhash::HashMap::default()))
    }
}

impl<const N: usize, M: Clone> Series<N, M> {
    /// The handle for `labels`, made by `create` (from the family) the first time they are seen.
    fn with(&self, labels: &StaticLabels<N>, create: impl FnOnce() -> M, count: impl FnOnce(&M)) {
        let key = labels.map(|(_, value)| (value.as_ptr() as usize, value.len()));
        // Handles only: a panic elsewhere cannot leave the map inconsistent.
        if let Some(handle) = self
            .0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return count(handle);
        }
        let handle = create();
        count(&handle);
        (self.0.write().unwrap_or_else(PoisonError::into_inner)).insert(key, handle);
    }
}

/// A pool's state at scrape time.
#[derive(Debug, Clone)]
pub struct PoolSnapshot {
    pub profile: String,
    pub in_use: i64,
    pub idle: i64,
    pub waiting: i64,
    pub max: i64,
}

impl PoolSnapshot {
    pub fn new(profile: &str, status: deadpool_postgres::Status) -> PoolSnapshot {
        let idle = status.available as i64;
        PoolSnapshot {
            profile: profile.to_string(),
            in_use: (status.size as i64 - idle).max(0),
            idle,
            waiting: status.waiting as i64,
            max: status.max_size as i64,
        }
    }
}

/// How refreshing a profile's database token goes, at scrape time (profiles with `db_auth = entra`).
#[derive(Debug, Clone)]
pub struct CredentialSnapshot {
    pub profile: String,
    pub refreshes: u64,
    pub failures: u64,
    pub valid_for_s: i64,
}

impl Metrics {
    /// One MCP request that passed the authorization gate, by method and outcome.
    pub fn record_request(&self, method: &'static str, outcome: &'static str) {
        let labels = [("method", method), ("outcome", outcome)];
        self.request_series.with(
            &labels,
            || self.requests.get_or_create(&labels).clone(),
            |requests| {
                requests.inc();
            },
        );
    }

    /// `tool` is an offered tool's name or [`UNKNOWN_TOOL`].
    pub fn record_call(&self, tool: &'static str, outcome: &'static str, duration: Duration) {
        let labels = [("tool", tool), ("outcome", outcome)];
        self.call_series.with(
            &labels,
            || {
                let calls = self.calls.get_or_create(&labels).clone();
                (calls, self.latency.get_or_create(&[("tool", tool)]).clone())
            },
            |(calls, latency)| {
                calls.inc();
                latency.observe(duration.as_secs_f64());
            },
        );
    }

    /// The metrics in the OpenMetrics text format (which Prometheus reads).
    pub fn render(
        &self,
        pools: Vec<PoolSnapshot>,
        credentials: Vec<CredentialSnapshot>,
        auth: Option<AuthStats>,
    ) -> String {
        let mut registry = Registry::with_prefix("pgmcp");
        registry.register(
            "mcp_requests",
            "MCP requests that reveal or do something (tools/list, tools/call, resources/...) by method and outcome",
            self.requests.clone(),
        );
        registry.register(
            "tool_calls",
            "Tool calls by tool and outcome (ok or the error kind)",
            self.calls.clone(),
        );
        registry.register(
            "tool_call_duration_seconds",
            "Tool call latency, from dispatch to result",
            self.latency.clone(),
        );
        registry.register_collector(Box::new(Snapshot {
            pools,
            credentials,
            auth,
        }));
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &registry).is_err() {
            return "# EOF\n".to_string();
        }
        text
    }
}

struct Snapshot {
    pools: Vec<PoolSnapshot>,
    credentials: Vec<CredentialSnapshot>,
    auth: Option<AuthStats>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Snapshot")
    }
}

fn gauge_family(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: &[(Labels, i64)],
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(
        name,
        help,
        None,
        prometheus_client::metrics::MetricType::Gauge,
    )?;
    for (labels, value) in values {
        ConstGauge::new(*value).encode(family.encode_family(labels)?)?;
    }
    Ok(())
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: &[(Labels, u64)],
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(
        name,
        help,
        None,
        prometheus_client::metrics::MetricType::Counter,
    )?;
    for (labels, value) in values {
        if labels.is_empty() {
            ConstCounter::new(*value).encode(family)?;
            break;
        }
        ConstCounter::new(*value).encode(family.encode_family(labels)?)?;
    }
    Ok(())
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let by_profile = |pick: fn(&PoolSnapshot) -> i64| -> Vec<(Labels, i64)> {
            self.pools
                .iter()
                .map(|p| (vec![("profile".to_string(), p.profile.clone())], pick(p)))
                .collect()
        };
        gauge_family(
            &mut encoder,
            "pool_connections_in_use",
            "Connections checked out of the pool",
            &by_profile(|p| p.in_use),
        )?;
        gauge_family(
            &mut encoder,
            "pool_connections_idle",
            "Open connections waiting in the pool",
            &by_profile(|p| p.idle),
        )?;
        gauge_family(
            &mut encoder,
            "pool_waiting",
            "Calls waiting for a connection",
            &by_profile(|p| p.waiting),
        )?;
        gauge_family(
            &mut encoder,
            "pool_max_connections",
            "The pool's connection limit",
            &by_profile(|p| p.max),
        )?;
        if !self.credentials.is_empty() {
            let per_profile = |pick: fn(&CredentialSnapshot) -> u64| -> Vec<(Labels, u64)> {
                self.credentials
                    .iter()
                    .map(|c| (vec![("profile".to_string(), c.profile.clone())], pick(c)))
                    .collect()
            };
            counter(
                &mut encoder,
                "db_credential_refreshes",
                "Database access tokens obtained",
                &per_profile(|c| c.refreshes),
            )?;
            counter(
                &mut encoder,
                "db_credential_refresh_failures",
                "Database access token requests that failed (after the token service's own retries)",
                &per_profile(|c| c.failures),
            )?;
            let valid: Vec<(Labels, i64)> = self
                .credentials
                .iter()
                .map(|c| {
                    (
                        vec![("profile".to_string(), c.profile.clone())],
                        c.valid_for_s,
                    )
                })
                .collect();
            gauge_family(
                &mut encoder,
                "db_credential_valid_seconds",
                "How long the cached database access token stays valid",
                &valid,
            )?;
        }
        if let Some(auth) = &self.auth {
            let failures: Vec<(Labels, u64)> = auth
                .failures_by_reason
                .iter()
                .map(|(reason, n)| (vec![("reason".to_string(), reason.clone())], *n))
                .collect();
            counter(
                &mut encoder,
                "auth_failures",
                "Rejected requests by reason",
                &failures,
            )?;
            counter(
                &mut encoder,
                "jwks_refreshes",
                "Signing key set downloads that succeeded",
                &[(Vec::new(), auth.jwks_refreshes)],
            )?;
            counter(
                &mut encoder,
                "jwks_refresh_failures",
                "Signing key set downloads that failed",
                &[(Vec::new(), auth.jwks_refresh_failures)],
            )?;
        }
        Ok(())
    }
}

/// Pool snapshots for every profile.
pub fn pool_snapshots(databases: &crate::mcp::Databases) -> Vec<PoolSnapshot> {
    databases
        .all()
        .iter()
        .map(|db| PoolSnapshot::new(&db.profile.name, db.status()))
        .collect()
}

/// Token refresh figures of every profile that logs in with an Entra token.
pub fn credential_snapshots(databases: &crate::mcp::Databases) -> Vec<CredentialSnapshot> {
    databases
        .all()
        .iter()
        .filter_map(|db| {
            let health = db.connector().credentials()?.refresh_health()?;
            Some(CredentialSnapshot {
                profile: db.profile.name.clone(),
                refreshes: health.refreshes,
                failures: health.failures,
                valid_for_s: health.valid_for().as_secs() as i64,
            })
        })
        .collect()
}

pub type SharedMetrics = Arc<Metrics>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_calls_latency_pools_and_auth() {
        let metrics = Metrics::default();
        metrics.record_call("execute_query", "ok", Duration::from_millis(3));
        metrics.record_call("execute_query", "database", Duration::from_millis(5));
        metrics.record_request("resources/read", "denied");
        metrics.record_request("resources/read", "denied");
        // The same label text at another address is the same series.
        let copied: &'static str = String::from("execute_query").leak();
        metrics.record_call(copied, "ok", Duration::from_millis(4));
        let text = metrics.render(
            vec![PoolSnapshot {
                profile: "main".into(),
                in_use: 1,
                idle: 2,
                waiting: 0,
                max: 10,
            }],
            vec![CredentialSnapshot {
                profile: "main".into(),
                refreshes: 3,
                failures: 2,
                valid_for_s: 1200,
            }],
            Some(AuthStats {
                failures_by_reason: vec![("expired".into(), 4)],
                jwks_refreshes: 2,
                jwks_refresh_failures: 1,
            }),
        );
        assert!(
            text.contains(r#"pgmcp_tool_calls_total{tool="execute_query",outcome="ok"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"pgmcp_tool_calls_total{tool="execute_query",outcome="database"} 1"#)
        );
        assert!(text.contains(r#"pgmcp_tool_call_duration_seconds_count{tool="execute_query"} 3"#));
        assert!(
            text.contains(
                r#"pgmcp_mcp_requests_total{method="resources/read",outcome="denied"} 2"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"pgmcp_pool_connections_idle{profile="main"} 2"#));
        assert!(
            text.contains(r#"pgmcp_db_credential_refresh_failures_total{profile="main"} 2"#),
            "{text}"
        );
        assert!(text.contains(r#"pgmcp_db_credential_valid_seconds{profile="main"} 1200"#));
        assert!(text.contains(r#"pgmcp_auth_failures_total{reason="expired"} 4"#));
        assert!(text.contains("pgmcp_jwks_refreshes_total 2"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }
}
