//! Sending OTLP/HTTP: the SDK's batch span processor and periodic metric reader run on threads of their own and
//! block on each export, while pgmcp's reqwest client needs the tokio runtime. Each request is therefore handed
//! to the runtime and awaited from the SDK's thread. The runtime stays free meanwhile, so this works on the
//! single-threaded runtime of stdio serving too.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};

/// How often a failing export is logged: once at the first failure, then at most once a minute.
const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct RuntimeHttpClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
    /// `traces` or `metrics`, for the log line.
    signal: &'static str,
    /// The endpoint as it may be logged (no credentials).
    shown_endpoint: String,
    last_failure_logged: AtomicU64,
}

impl RuntimeHttpClient {
    /// Must be called inside the runtime that will carry the requests.
    pub fn new(
        signal: &'static str,
        shown_endpoint: String,
        timeout: Duration,
    ) -> anyhow::Result<RuntimeHttpClient> {
        // reqwest is built without a crypto provider; whoever comes first installs ring, the rest is a no-op.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            // A redirect could carry the exporter's headers (which may hold an API key) to another host.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .timeout(timeout)
            .user_agent(concat!("pgmcp/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| anyhow::anyhow!("cannot set up the OTLP {signal} client: {err}"))?;
        Ok(RuntimeHttpClient {
            client,
            runtime: tokio::runtime::Handle::current(),
            signal,
            shown_endpoint,
            last_failure_logged: AtomicU64::new(0),
        })
    }

    /// Telemetry that cannot be delivered must not fill the log: the first failure and then one a minute say so.
    fn report_failure(&self, why: &str) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let last = self.last_failure_logged.load(Ordering::Relaxed);
        if (last == 0 || now.saturating_sub(last) >= FAILURE_LOG_INTERVAL.as_secs())
            && self
                .last_failure_logged
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                signal = self.signal,
                endpoint = %self.shown_endpoint,
                "OpenTelemetry export failed: {why} (repeats are logged at most once a minute)"
            );
        }
    }
}

#[async_trait]
impl HttpClient for RuntimeHttpClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let sent = self
            .runtime
            .spawn(async move { HttpClient::send_bytes(&client, request).await })
            .await;
        match sent {
            Ok(Ok(response)) => {
                if !response.status().is_success() {
                    self.report_failure(&format!("the receiver answered {}", response.status()));
                }
                Ok(response)
            }
            Ok(Err(err)) => {
                // Only the kind is logged: reqwest's message names the URL, whose query string may hold a key.
                let why = match err.downcast_ref::<reqwest::Error>() {
                    Some(err) => {
                        let kind = if err.is_timeout() {
                            "timed out"
                        } else if err.is_connect() {
                            "could not connect"
                        } else {
                            "request failed"
                        };
                        kind.to_string()
                    }
                    None => "request failed".to_string(),
                };
                self.report_failure(&why);
                Err(err)
            }
            Err(join) => {
                self.report_failure("the runtime is shutting down");
                Err(Box::new(join))
            }
        }
    }
}
