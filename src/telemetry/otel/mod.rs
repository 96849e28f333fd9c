//! OpenTelemetry: a span for every MCP request that passes the gate and one for every tool call under it, and
//! pgmcp's metrics, exported over OTLP/HTTP while an endpoint is configured ([`settings`]). When export is off no
//! [`Otel`] exists: the gate holds `None` and skips every step, so the hot path pays one branch.

mod export;
mod instruments;
pub mod settings;
mod spans;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};

use crate::http::auth::Authenticator;
use crate::mcp::Databases;
use export::RuntimeHttpClient;
use settings::{OtelSettings, SamplerSetting, TemporalitySetting};

pub use spans::{RequestSpan, RequestTrace, ToolSpan, ToolTrace, statement_of};

/// The instrumentation scope's name on every span and metric.
const SCOPE: &str = "pgmcp";

/// How long shutdown waits for the last batch to be delivered.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Otel {
    traces: Option<(SdkTracerProvider, SdkTracer)>,
    metrics: Option<(SdkMeterProvider, instruments::Instruments)>,
    query_text: bool,
}

impl Otel {
    /// Builds the exporters (no connection is made until there is something to send). Must run inside the
    /// tokio runtime that will carry the requests.
    pub fn start(settings: &OtelSettings) -> anyhow::Result<Otel> {
        let resource = resource(settings);
        let traces = match &settings.traces_endpoint {
            None => None,
            Some(endpoint) => {
                let client = RuntimeHttpClient::new(
                    "traces",
                    settings::redact_url(endpoint),
                    settings.traces_timeout,
                )?;
                let exporter = opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_protocol(Protocol::HttpBinary)
                    .with_endpoint(endpoint.as_str())
                    .with_timeout(settings.traces_timeout)
                    .with_http_client(client)
                    .build()
                    .context("cannot set up the OpenTelemetry trace exporter")?;
                let provider = SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_sampler(sampler(settings.sampler))
                    .with_resource(resource.clone())
                    .build();
                let tracer = provider.tracer(SCOPE);
                Some((provider, tracer))
            }
        };
        let metrics = match &settings.metrics_endpoint {
            None => None,
            Some(endpoint) => {
                let client = RuntimeHttpClient::new(
                    "metrics",
                    settings::redact_url(endpoint),
                    settings.metrics_timeout,
                )?;
                let exporter = opentelemetry_otlp::MetricExporter::builder()
                    .with_http()
                    .with_protocol(Protocol::HttpBinary)
                    .with_endpoint(endpoint.as_str())
                    .with_timeout(settings.metrics_timeout)
                    .with_http_client(client)
                    .with_temporality(match settings.temporality {
                        TemporalitySetting::Cumulative => Temporality::Cumulative,
                        TemporalitySetting::Delta => Temporality::Delta,
                        TemporalitySetting::LowMemory => Temporality::LowMemory,
                    })
                    .build()
                    .context("cannot set up the OpenTelemetry metric exporter")?;
                let reader = PeriodicReader::builder(exporter)
                    .with_interval(settings.metric_export_interval)
                    .build();
                let provider = SdkMeterProvider::builder()
                    .with_reader(reader)
                    .with_resource(resource)
                    .build();
                let instruments = instruments::Instruments::new(&provider);
                Some((provider, instruments))
            }
        };
        let shown = |url: &Option<reqwest::Url>| {
            url.as_ref()
                .map_or_else(|| "off".to_string(), settings::redact_url)
        };
        tracing::info!(
            traces = %shown(&settings.traces_endpoint),
            metrics = %shown(&settings.metrics_endpoint),
            service_name = %settings.service_name,
            query_text = settings.query_text,
            "exporting OpenTelemetry over OTLP/HTTP"
        );
        Ok(Otel {
            traces,
            metrics,
            query_text: settings.query_text,
        })
    }

    fn tracer(&self) -> Option<&SdkTracer> {
        self.traces.as_ref().map(|(_, tracer)| tracer)
    }

    /// Whether spans carry the SQL text (`db.query.text`).
    pub fn query_text(&self) -> bool {
        self.query_text
    }

    /// Pool gauges, read at each export like /metrics reads them at each scrape.
    pub fn observe_pools(&self, databases: Arc<Databases>) {
        if let Some((provider, _)) = &self.metrics {
            instruments::observe_pools(provider, databases);
        }
    }

    /// The authenticator's counters, read at each export.
    pub fn observe_auth(&self, auth: Arc<Authenticator>) {
        if let Some((provider, _)) = &self.metrics {
            instruments::observe_auth(provider, auth);
        }
    }

    /// One MCP request that passed the gate, as `Metrics::record_request` counts it.
    pub fn record_request(&self, method: &'static str, outcome: &'static str) {
        if let Some((_, instruments)) = &self.metrics {
            instruments.record_request(method, outcome);
        }
    }

    /// One tool call, as `Metrics::record_call` counts it.
    pub fn record_call(&self, tool: &'static str, outcome: &'static str, duration: Duration) {
        if let Some((_, instruments)) = &self.metrics {
            instruments.record_call(tool, outcome, duration);
        }
    }

    /// Delivers what is still queued and stops the exporters. The SDK blocks its caller until its threads have
    /// sent, and they need the runtime to send: the wait happens on a blocking thread.
    pub async fn shutdown(&self) {
        let tracer_provider = self.traces.as_ref().map(|(provider, _)| provider.clone());
        let meter_provider = self.metrics.as_ref().map(|(provider, _)| provider.clone());
        let outcome = tokio::task::spawn_blocking(move || {
            let mut failures = Vec::new();
            if let Some(provider) = tracer_provider
                && let Err(err) = provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT)
            {
                failures.push(format!("traces: {err}"));
            }
            if let Some(provider) = meter_provider
                && let Err(err) = provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT)
            {
                failures.push(format!("metrics: {err}"));
            }
            failures
        })
        .await;
        match outcome {
            Ok(failures) if failures.is_empty() => {
                tracing::debug!("OpenTelemetry export flushed and stopped")
            }
            Ok(failures) => tracing::warn!(
                "OpenTelemetry export did not flush cleanly: {}",
                failures.join("; ")
            ),
            Err(err) => tracing::warn!("OpenTelemetry shutdown failed: {err}"),
        }
    }
}

fn resource(settings: &OtelSettings) -> Resource {
    Resource::builder_empty()
        .with_service_name(settings.service_name.clone())
        .with_attributes([
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("telemetry.sdk.language", "rust"),
            KeyValue::new("telemetry.sdk.name", "opentelemetry"),
        ])
        .with_attributes(
            (settings.resource_attributes.iter())
                .map(|(key, value)| KeyValue::new(key.clone(), value.clone())),
        )
        .build()
}

fn sampler(setting: SamplerSetting) -> Sampler {
    match setting {
        SamplerSetting::AlwaysOn => Sampler::AlwaysOn,
        SamplerSetting::AlwaysOff => Sampler::AlwaysOff,
        SamplerSetting::TraceIdRatio(ratio) => Sampler::TraceIdRatioBased(ratio),
        SamplerSetting::ParentBasedAlwaysOn => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        SamplerSetting::ParentBasedAlwaysOff => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        SamplerSetting::ParentBasedTraceIdRatio(ratio) => {
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio)))
        }
    }
}
