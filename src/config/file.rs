//! The `pgmcp.toml` file as written: every key optional, unknown keys rejected. Numbers are read as signed
//! integers and durations as text-or-number so that a bad value gets pgmcp's own message (naming the setting
//! and the fix) from validation in `profile.rs` rather than a generic type error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::error::{ConfigError, quoted};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub default_profile: Option<String>,
    #[serde(default)]
    profiles: BTreeMap<String, toml::Spanned<ProfileFile>>,
    /// One JSON line per tool call to this file or `stderr` (`--audit-log`).
    pub audit_log: Option<String>,
    /// Remote serving (`pgmcp serve --http`).
    #[serde(default)]
    pub http: HttpFile,
    /// Inbound token validation; owned by `crate::http::auth`.
    #[serde(default)]
    pub auth: crate::http::auth::AuthSettings,
    /// What authenticated callers may do.
    #[serde(default)]
    pub policy: crate::http::policy::PolicyFile,
    /// pgmcp as OAuth authorization server (`--oauth-server`); owned by `crate::http::oauth`.
    #[serde(default)]
    pub oauth: crate::http::oauth::OAuthFile,
    /// The model behind `pgmcp chat` and the web client's Chat tab.
    #[serde(default)]
    pub chat: super::chat::ChatFile,
    /// Curated tools: reviewed, parameterized statements offered as tools of their own (`[[tools]]`).
    #[serde(default)]
    pub tools: Vec<CuratedToolFile>,
    /// Which tools `serve` offers: "all" (default), "builtin", "curated", or a list of tool names (`--tools`).
    pub tools_exposed: Option<ToolsExposedFile>,
    /// OpenTelemetry export; owned by `crate::telemetry::otel::settings`.
    #[serde(default)]
    pub opentelemetry: crate::telemetry::otel::settings::OtelFile,
}

/// One `[[tools]]` entry; checked by `crate::tools::curated` at start-up.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CuratedToolFile {
    pub name: String,
    pub description: String,
    /// The profile the statement runs on; the default profile when absent.
    pub profile: Option<String>,
    pub sql: String,
    #[serde(default)]
    pub parameters: Vec<ParameterFile>,
}

/// One entry of a curated tool's `parameters`, for the placeholder of the same position ($1 for the first).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParameterFile {
    pub name: String,
    /// `integer`, `number`, `string`, `boolean`, `date`, `timestamp`, `timestamptz`, `uuid`, or `<type>[]`.
    #[serde(rename = "type")]
    pub type_name: String,
    pub description: Option<String>,
    pub minimum: Option<serde_json::Number>,
    pub maximum: Option<serde_json::Number>,
    pub default: Option<serde_json::Value>,
    #[serde(rename = "enum")]
    pub allowed: Option<Vec<String>>,
    pub pattern: Option<String>,
    pub max_length: Option<i64>,
}

/// `tools_exposed = "curated"` or `tools_exposed = ["orders_for_customer", "list_tables"]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum ToolsExposedFile {
    Set(String),
    Names(Vec<String>),
}

/// The `[http]` table: each key mirrors a `serve` flag (`listen` is `--http`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpFile {
    pub listen: Option<String>,
    pub public_url: Option<String>,
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    pub allow_unauthenticated: Option<bool>,
    pub legacy_sessions: Option<bool>,
    /// Largest accepted request body in bytes (default 1 MiB).
    pub max_body_bytes: Option<i64>,
    /// Per-request time limit (default: the longest statement_timeout plus 15 s).
    pub request_timeout: Option<DurationValue>,
    /// How long a shutdown waits for in-flight calls (default 10 s).
    pub shutdown_timeout: Option<DurationValue>,
    /// How long a client may take to send a request's headers, and an open connection may stay idle between
    /// requests (default 30 s).
    pub header_read_timeout: Option<DurationValue>,
    /// Requests one authenticated caller may have running at once (default 8; 0: no limit).
    pub per_caller_concurrency: Option<i64>,
    /// Threads that serve HTTP (default 1).
    pub threads: Option<i64>,
    /// `resource_documentation` in the protected resource metadata.
    pub resource_documentation: Option<String>,
    /// `resource_name` in the protected resource metadata.
    pub resource_name: Option<String>,
    /// Serve /metrics (default true).
    pub metrics: Option<bool>,
    /// Serve the browser console at `/` (default true; `--no-ui`).
    pub ui: Option<bool>,
}

/// One `[[profiles.NAME.masks]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskFile {
    /// `schema.table`, or `table` in `public`.
    pub table: String,
    pub columns: Vec<String>,
    /// redact (default), null, hash or partial.
    pub mode: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileFile {
    pub description: Option<String>,
    pub url: Option<String>,
    pub host: Option<String>,
    pub port: Option<i64>,
    pub dbname: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
    pub sslmode: Option<String>,
    pub sslrootcert: Option<String>,
    pub application_name: Option<String>,
    pub pool_min: Option<i64>,
    pub pool_max: Option<i64>,
    pub statement_timeout: Option<DurationValue>,
    pub connect_timeout: Option<DurationValue>,
    pub pool_wait_timeout: Option<DurationValue>,
    pub max_rows: Option<i64>,
    pub max_rows_ceiling: Option<i64>,
    pub max_result_bytes: Option<i64>,
    pub statement_cache: Option<i64>,
    pub access_mode: Option<String>,
    pub allow_ddl: Option<bool>,
    pub allow_extensions: Option<Vec<String>>,
    /// Column masks: `[[profiles.NAME.masks]]` with `table`, `columns` and `mode`.
    pub masks: Option<Vec<MaskFile>>,
    pub deny_functions: Option<Vec<String>>,
    pub allow_volatile_functions: Option<Vec<String>>,
    pub allow_foreign_tables: Option<Vec<String>>,
    pub db_auth: Option<String>,
    pub entra_credential: Option<String>,
    pub managed_identity_client_id: Option<String>,
    pub managed_identity_object_id: Option<String>,
    pub managed_identity_resource_id: Option<String>,
    pub db_user: Option<String>,
    pub token_host_allow: Option<Vec<String>>,
    pub key_vault_url: Option<String>,
    pub key_vault_secret: Option<String>,
    pub db_identity: Option<String>,
}

/// A duration as written: `"500ms"`, `"30s"`, `"2m"`, `"1h"`, or a bare integer of milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum DurationValue {
    Millis(i64),
    Text(String),
}

impl DurationValue {
    /// The duration, or an error naming `setting`. Zero and negative values are rejected by the caller's
    /// range check, which knows what the setting is for.
    pub fn to_duration(&self, setting: &str) -> Result<Duration, ConfigError> {
        match self {
            DurationValue::Millis(ms) => u64::try_from(*ms)
                .map(Duration::from_millis)
                .map_err(|_| ConfigError::invalid(setting, ms.to_string(), "must not be negative", "")),
            DurationValue::Text(text) => parse_duration(text).ok_or_else(|| {
                ConfigError::invalid(
                    setting,
                    quoted(text),
                    "not a duration",
                    "write a number with a unit, e.g. \"500ms\", \"30s\", \"2m\", or an integer of milliseconds",
                )
            }),
        }
    }
}

/// `<number><unit>` with unit ms, s, m, h (also spelled out), or a bare number of milliseconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let millis_per_unit: u64 = match unit.trim() {
        "" | "ms" | "msec" | "millisecond" | "milliseconds" => 1,
        "s" | "sec" | "secs" | "second" | "seconds" => 1_000,
        "m" | "min" | "mins" | "minute" | "minutes" => 60_000,
        "h" | "hr" | "hour" | "hours" => 3_600_000,
        _ => return None,
    };
    number
        .checked_mul(millis_per_unit)
        .map(Duration::from_millis)
}

impl ConfigFile {
    pub fn load(path: &Path) -> Result<ConfigFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::File {
            path: path.to_path_buf(),
            problem: format!("{error} — check the --config path or PGMCP_CONFIG"),
        })?;
        ConfigFile::parse(&text).map_err(|problem| ConfigError::File {
            path: path.to_path_buf(),
            problem,
        })
    }

    /// Parses the file's text. The error is toml's message (which names an unknown key) and the line; not
    /// toml's full report, because that quotes the offending line, which may hold a password.
    pub fn parse(text: &str) -> Result<ConfigFile, String> {
        toml::from_str(text).map_err(|error| {
            let message = error.message().trim_end().to_string();
            match error.span() {
                Some(span) => {
                    let line = text
                        .get(..span.start)
                        .map_or(0, |head| head.matches('\n').count())
                        + 1;
                    format!("line {line}: {message}")
                }
                None => message,
            }
        })
    }

    /// The names of the `[[tools]]`, which policy grants may name.
    pub fn curated_tool_names(&self) -> Vec<String> {
        self.tools.iter().map(|tool| tool.name.clone()).collect()
    }

    /// The profiles in the order they appear in the file (the first one is the default when
    /// `default_profile` is not set).
    pub fn profiles_in_order(&self) -> Vec<(String, ProfileFile)> {
        let mut profiles: Vec<(usize, String, ProfileFile)> = self
            .profiles
            .iter()
            .map(|(name, spanned)| {
                (
                    spanned.span().start,
                    name.clone(),
                    spanned.get_ref().clone(),
                )
            })
            .collect();
        profiles.sort_by_key(|(start, _, _)| *start);
        profiles
            .into_iter()
            .map(|(_, name, profile)| (name, profile))
            .collect()
    }
}
