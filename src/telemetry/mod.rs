//! Logging set-up, and what a server reports besides its log. Everything logged goes to stderr: on stdio transports stdout belongs to the MCP protocol.

pub mod audit;
pub mod metrics;
pub mod otel;

use std::sync::Arc;

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// Where a server reports what its callers did: the audit trail and OpenTelemetry, each when configured.
#[derive(Clone, Default)]
pub struct Observed {
    pub audit: Option<Arc<audit::AuditLog>>,
    pub otel: Option<Arc<otel::Otel>>,
}

pub fn init(filter: &str, format: LogFormat) {
    let filter =
        EnvFilter::try_new(with_quiet_sdk(filter)).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
}

/// rmcp logs three INFO lines for every session it serves, and a stateless HTTP request is a session of its own:
/// at a few thousand calls a second, formatting and writing them was a large share of the server's CPU. Its
/// warnings and errors still show; a filter that names `rmcp` itself is taken as written.
fn with_quiet_sdk(filter: &str) -> String {
    if filter.contains("rmcp") {
        filter.to_owned()
    } else {
        format!("{filter},rmcp=warn")
    }
}

#[cfg(test)]
mod tests {
    use super::with_quiet_sdk;

    #[test]
    fn the_sdk_is_quiet_unless_asked_for() {
        assert_eq!(with_quiet_sdk("info"), "info,rmcp=warn");
        assert_eq!(with_quiet_sdk("pgmcp=debug"), "pgmcp=debug,rmcp=warn");
        assert_eq!(with_quiet_sdk("info,rmcp=debug"), "info,rmcp=debug");
    }
}
