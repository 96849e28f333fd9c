//! The metrics /metrics serves, as OpenTelemetry instruments: the same families, names in OpenTelemetry's dotted
//! style, the same labels. Counted families take only pgmcp's own `&'static str` labels, as in `metrics.rs`.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, MeterProvider as _};
use opentelemetry_sdk::metrics::SdkMeterProvider;

use super::SCOPE;
use crate::http::auth::Authenticator;
use crate::mcp::Databases;
use crate::telemetry::metrics::{PoolSnapshot, pool_snapshots};

pub struct Instruments {
    requests: Counter<u64>,
    calls: Counter<u64>,
    latency: Histogram<f64>,
}

/// The Prometheus histogram's buckets (1 ms doubling to about 65 s), so both views of latency agree.
fn latency_boundaries() -> Vec<f64> {
    (0..17).map(|power| 0.001 * 2f64.powi(power)).collect()
}

impl Instruments {
    pub fn new(provider: &SdkMeterProvider) -> Instruments {
        let meter = provider.meter(SCOPE);
        Instruments {
            requests: meter
                .u64_counter("pgmcp.mcp.requests")
                .with_description(
                    "MCP requests that reveal or do something (tools/list, tools/call, resources/...) by method \
                     and outcome",
                )
                .build(),
            calls: meter
                .u64_counter("pgmcp.tool.calls")
                .with_description("Tool calls by tool and outcome (ok or the error kind)")
                .build(),
            latency: meter
                .f64_histogram("pgmcp.tool.call.duration")
                .with_unit("s")
                .with_description("Tool call latency, from dispatch to result")
                .with_boundaries(latency_boundaries())
                .build(),
        }
    }

    pub fn record_request(&self, method: &'static str, outcome: &'static str) {
        self.requests.add(
            1,
            &[
                KeyValue::new("method", method),
                KeyValue::new("outcome", outcome),
            ],
        );
    }

    pub fn record_call(&self, tool: &'static str, outcome: &'static str, duration: Duration) {
        self.calls.add(
            1,
            &[
                KeyValue::new("tool", tool),
                KeyValue::new("outcome", outcome),
            ],
        );
        self.latency
            .record(duration.as_secs_f64(), &[KeyValue::new("tool", tool)]);
    }
}

/// A pool gauge: its name, description, and which figure of a snapshot it shows.
type PoolGauge = (&'static str, &'static str, fn(&PoolSnapshot) -> i64);

pub fn observe_pools(provider: &SdkMeterProvider, databases: Arc<Databases>) {
    let meter = provider.meter(SCOPE);
    let gauges: [PoolGauge; 4] = [
        (
            "pgmcp.pool.connections.in_use",
            "Connections checked out of the pool",
            |p| p.in_use,
        ),
        (
            "pgmcp.pool.connections.idle",
            "Open connections waiting in the pool",
            |p| p.idle,
        ),
        (
            "pgmcp.pool.waiting",
            "Calls waiting for a connection",
            |p| p.waiting,
        ),
        (
            "pgmcp.pool.max_connections",
            "The pool's connection limit",
            |p| p.max,
        ),
    ];
    for (name, description, pick) in gauges {
        let databases = databases.clone();
        meter
            .i64_observable_gauge(name)
            .with_description(description)
            .with_callback(move |observer| {
                for pool in pool_snapshots(&databases) {
                    observer.observe(pick(&pool), &[KeyValue::new("profile", pool.profile)]);
                }
            })
            .build();
    }
}

pub fn observe_auth(provider: &SdkMeterProvider, auth: Arc<Authenticator>) {
    let meter = provider.meter(SCOPE);
    let failures = auth.clone();
    meter
        .u64_observable_counter("pgmcp.auth.failures")
        .with_description("Rejected requests by reason")
        .with_callback(move |observer| {
            for (reason, count) in failures.stats().failures_by_reason {
                observer.observe(count, &[KeyValue::new("reason", reason)]);
            }
        })
        .build();
    let refreshes = auth.clone();
    meter
        .u64_observable_counter("pgmcp.jwks.refreshes")
        .with_description("Signing key set downloads that succeeded")
        .with_callback(move |observer| observer.observe(refreshes.stats().jwks_refreshes, &[]))
        .build();
    meter
        .u64_observable_counter("pgmcp.jwks.refresh_failures")
        .with_description("Signing key set downloads that failed")
        .with_callback(move |observer| observer.observe(auth.stats().jwks_refresh_failures, &[]))
        .build();
}
