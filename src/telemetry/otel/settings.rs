//! What OpenTelemetry export is configured to do, read from the standard `OTEL_*` variables, the `--otel-*` flags
//! and the config file's `[opentelemetry]` table (flag, then variable, then file). Export is off unless an
//! endpoint is set: the SDKs' default of `localhost:4318` would make every pgmcp try to send somewhere. Values
//! the SDK would silently replace with a default are refused here instead, naming the setting.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;

use crate::cli::OtelArgs;
use crate::config::error::{ConfigError, quoted};
use crate::config::file::DurationValue;

/// The `[opentelemetry]` table; each key mirrors a standard `OTEL_*` variable, which wins over it.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtelFile {
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`: the base URL; `/v1/traces` and `/v1/metrics` are appended.
    pub endpoint: Option<String>,
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`: the full URL for spans.
    pub traces_endpoint: Option<String>,
    /// `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`: the full URL for metrics.
    pub metrics_endpoint: Option<String>,
    /// `OTEL_EXPORTER_OTLP_PROTOCOL`: only `http/protobuf`.
    pub protocol: Option<String>,
    /// `OTEL_SERVICE_NAME` (default `pgmcp`).
    pub service_name: Option<String>,
    /// `OTEL_RESOURCE_ATTRIBUTES`, as a table; the variable's entries win key by key.
    #[serde(default)]
    pub resource_attributes: BTreeMap<String, String>,
    /// `OTEL_TRACES_SAMPLER` (default `parentbased_always_on`).
    pub traces_sampler: Option<String>,
    /// `OTEL_TRACES_SAMPLER_ARG`: the ratio of the `*traceidratio` samplers.
    pub traces_sampler_arg: Option<f64>,
    /// `OTEL_METRIC_EXPORT_INTERVAL` (default 60 s).
    pub metric_export_interval: Option<DurationValue>,
    /// `OTEL_EXPORTER_OTLP_TIMEOUT` (default 10 s).
    pub timeout: Option<DurationValue>,
    /// Put the SQL text on spans (`db.query.text`); off by default because SQL may hold data
    /// (`--otel-query-text`, `PGMCP_OTEL_QUERY_TEXT`).
    pub query_text: Option<bool>,
}

/// Which spans are kept, as `OTEL_TRACES_SAMPLER` names them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SamplerSetting {
    AlwaysOn,
    AlwaysOff,
    TraceIdRatio(f64),
    ParentBasedAlwaysOn,
    ParentBasedAlwaysOff,
    ParentBasedTraceIdRatio(f64),
}

/// How metric points are accumulated between exports (`OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemporalitySetting {
    Cumulative,
    Delta,
    LowMemory,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OtelSettings {
    /// Where spans go; `None` exports no spans.
    pub traces_endpoint: Option<Url>,
    /// Where metrics go; `None` exports no metrics.
    pub metrics_endpoint: Option<Url>,
    pub traces_timeout: Duration,
    pub metrics_timeout: Duration,
    pub service_name: String,
    /// Resource attributes other than `service.name`, in the order given.
    pub resource_attributes: Vec<(String, String)>,
    pub sampler: SamplerSetting,
    pub metric_export_interval: Duration,
    pub temporality: TemporalitySetting,
    pub query_text: bool,
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_METRIC_INTERVAL: Duration = Duration::from_secs(60);

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// A variable's value, with an empty one taken as unset (as the specification asks).
fn var(env: Env, name: &str) -> Option<String> {
    env(name).filter(|value| !value.trim().is_empty())
}

/// The settings in effect, or `None` when nothing is to be exported.
pub fn resolve(
    flags: &OtelArgs,
    file: &OtelFile,
    env: Env,
) -> Result<Option<OtelSettings>, ConfigError> {
    if boolean(env, "OTEL_SDK_DISABLED")? == Some(true) {
        return Ok(None);
    }
    check_protocol(env, file)?;
    check_headers(env)?;
    let base = match (
        &flags.otel_endpoint,
        var(env, "OTEL_EXPORTER_OTLP_ENDPOINT"),
    ) {
        (Some(flag), _) => Some(("--otel-endpoint", flag.clone())),
        (None, Some(value)) => Some(("OTEL_EXPORTER_OTLP_ENDPOINT", value)),
        (None, None) => file
            .endpoint
            .clone()
            .map(|value| ("opentelemetry.endpoint", value)),
    };
    let base = base
        .map(|(setting, value)| endpoint_url(setting, &value))
        .transpose()?;
    let signal = |name: &str, file_value: &Option<String>, path: &str| {
        let exporter_var = format!("OTEL_{}_EXPORTER", name.to_uppercase());
        match var(env, &exporter_var).as_deref().map(str::trim) {
            None | Some("otlp") => {}
            Some("none") => return Ok(None),
            Some(other) => {
                return Err(ConfigError::invalid(
                    exporter_var,
                    quoted(other),
                    "pgmcp exports only over OTLP",
                    "use otlp, or none to export nothing of this signal",
                ));
            }
        }
        let specific = format!("OTEL_EXPORTER_OTLP_{}_ENDPOINT", name.to_uppercase());
        if let Some(value) = var(env, &specific) {
            return endpoint_url(&specific, &value).map(Some);
        }
        if let Some(value) = file_value {
            return endpoint_url(&format!("opentelemetry.{name}_endpoint"), value).map(Some);
        }
        Ok(base.as_ref().map(|url| with_signal_path(url, path)))
    };
    let traces_endpoint = signal("traces", &file.traces_endpoint, "v1/traces")?;
    let metrics_endpoint = signal("metrics", &file.metrics_endpoint, "v1/metrics")?;
    if traces_endpoint.is_none() && metrics_endpoint.is_none() {
        return Ok(None);
    }
    let timeout = match var(env, "OTEL_EXPORTER_OTLP_TIMEOUT") {
        Some(value) => millis(&value, "OTEL_EXPORTER_OTLP_TIMEOUT")?,
        None => file_duration(&file.timeout, "opentelemetry.timeout")?.unwrap_or(DEFAULT_TIMEOUT),
    };
    let signal_timeout = |name: &str| match var(env, name) {
        Some(value) => millis(&value, name),
        None => Ok(timeout),
    };
    let (mut service_name, resource_attributes) = resource(env, file)?;
    if let Some(name) = var(env, "OTEL_SERVICE_NAME") {
        service_name = Some(name);
    }
    Ok(Some(OtelSettings {
        traces_endpoint,
        metrics_endpoint,
        traces_timeout: signal_timeout("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")?,
        metrics_timeout: signal_timeout("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT")?,
        service_name: service_name.unwrap_or_else(|| "pgmcp".to_string()),
        resource_attributes,
        sampler: sampler(env, file)?,
        metric_export_interval: match var(env, "OTEL_METRIC_EXPORT_INTERVAL") {
            Some(value) => millis(&value, "OTEL_METRIC_EXPORT_INTERVAL")?,
            None => file_duration(
                &file.metric_export_interval,
                "opentelemetry.metric_export_interval",
            )?
            .unwrap_or(DEFAULT_METRIC_INTERVAL),
        },
        temporality: temporality(env)?,
        query_text: flags.otel_query_text
            || boolean(env, "PGMCP_OTEL_QUERY_TEXT")?
                .or(file.query_text)
                .unwrap_or(false),
    }))
}

fn boolean(env: Env, name: &str) -> Result<Option<bool>, ConfigError> {
    match var(env, name) {
        None => Ok(None),
        Some(value) => match value.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => Ok(Some(true)),
            "false" | "0" => Ok(Some(false)),
            _ => Err(ConfigError::invalid(
                name,
                quoted(&value),
                "not a boolean",
                "use true or false",
            )),
        },
    }
}

/// pgmcp sends protobuf over HTTP only; gRPC would bring a second HTTP stack for the same data.
fn check_protocol(env: Env, file: &OtelFile) -> Result<(), ConfigError> {
    let mut given: Vec<(String, String)> = [
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
    ]
    .into_iter()
    .filter_map(|name| var(env, name).map(|value| (name.to_string(), value)))
    .collect();
    if let Some(value) = &file.protocol {
        given.push(("opentelemetry.protocol".into(), value.clone()));
    }
    for (setting, value) in given {
        if value.trim() != "http/protobuf" {
            return Err(ConfigError::invalid(
                setting,
                quoted(&value),
                "pgmcp exports OTLP over HTTP with protobuf only",
                "use http/protobuf (an OpenTelemetry Collector receives it on port 4318)",
            ));
        }
    }
    Ok(())
}

/// The exporter reads the header variables itself and silently skips entries it cannot parse, which would
/// drop an authorization header without a word. Values may be credentials: no error shows one.
fn check_headers(env: Env) -> Result<(), ConfigError> {
    for name in [
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
    ] {
        let Some(value) = var(env, name) else {
            continue;
        };
        for (index, entry) in value.split(',').enumerate() {
            let entry = entry.trim();
            if entry.is_empty() {
                continue;
            }
            let key = entry.split_once('=').map(|(key, _)| key.trim());
            let valid = key.is_some_and(|key| {
                !key.is_empty() && axum::http::HeaderName::from_bytes(key.as_bytes()).is_ok()
            });
            if !valid {
                return Err(ConfigError::invalid(
                    name,
                    "(not shown: it may hold credentials)",
                    format!(
                        "entry {} is not `name=value` with a valid header name",
                        index + 1
                    ),
                    "write comma-separated name=value pairs, e.g. api-key=...,x-tenant=...",
                ));
            }
        }
    }
    Ok(())
}

fn endpoint_url(setting: &str, value: &str) -> Result<Url, ConfigError> {
    let invalid = |problem: &str| {
        ConfigError::invalid(
            setting,
            quoted(&redact_url_text(value)),
            problem.to_string(),
            "give an http:// or https:// URL, e.g. http://localhost:4318",
        )
    };
    let url = Url::parse(value.trim()).map_err(|_| invalid("not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid("not an http(s) URL with a host"));
    }
    Ok(url)
}

/// The base endpoint with the signal's path appended to its own path, as the OTLP specification asks
/// (`http://collector:4318/otlp` sends traces to `http://collector:4318/otlp/v1/traces`).
fn with_signal_path(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    url.set_path(&format!("{}/{path}", base.path().trim_end_matches('/')));
    url
}

/// An endpoint as it may be shown: scheme, host, port and path, never a user, password or query.
pub fn redact_url(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

fn redact_url_text(value: &str) -> String {
    match Url::parse(value.trim()) {
        Ok(url) => redact_url(&url),
        // Not a URL, so which part is a credential cannot be told: one that could hold one is not shown.
        Err(_) if value.contains(['@', '?']) => "(not shown: it may hold credentials)".to_string(),
        Err(_) => value.to_string(),
    }
}

fn millis(value: &str, setting: &str) -> Result<Duration, ConfigError> {
    match value.trim().parse::<u64>() {
        Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
        _ => Err(ConfigError::invalid(
            setting,
            quoted(value),
            "not a positive number of milliseconds",
            "write an integer, e.g. 10000 for ten seconds",
        )),
    }
}

fn file_duration(
    value: &Option<DurationValue>,
    setting: &str,
) -> Result<Option<Duration>, ConfigError> {
    match value {
        None => Ok(None),
        Some(value) => match value.to_duration(setting)? {
            zero if zero.is_zero() => {
                Err(ConfigError::invalid(setting, "0", "must be positive", ""))
            }
            duration => Ok(Some(duration)),
        },
    }
}

/// A service name, if one was given, and the other resource attributes.
type ResourceSettings = (Option<String>, Vec<(String, String)>);

/// `service.name` (if given among the attributes) and the other resource attributes: the file's table, then
/// `OTEL_RESOURCE_ATTRIBUTES` (`key=value,…`, values percent-encoded) overriding it key by key.
fn resource(env: Env, file: &OtelFile) -> Result<ResourceSettings, ConfigError> {
    let mut attributes: Vec<(String, String)> = file
        .resource_attributes
        .iter()
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    let mut service_name = file.service_name.clone();
    if let Some(text) = var(env, "OTEL_RESOURCE_ATTRIBUTES") {
        for (index, entry) in text.split(',').enumerate() {
            if entry.trim().is_empty() {
                continue;
            }
            let parsed = entry.split_once('=').and_then(|(key, value)| {
                let key = key.trim();
                let value = percent_decode(value.trim())?;
                (!key.is_empty()).then(|| (key.to_string(), value))
            });
            let Some((key, value)) = parsed else {
                return Err(ConfigError::invalid(
                    "OTEL_RESOURCE_ATTRIBUTES",
                    quoted(&text),
                    format!(
                        "entry {} is not `key=value` (values percent-encoded)",
                        index + 1
                    ),
                    "write comma-separated pairs, e.g. deployment.environment.name=prod,service.namespace=data",
                ));
            };
            attributes.retain(|(existing, _)| *existing != key);
            attributes.push((key, value));
        }
    }
    if let Some(at) = attributes.iter().position(|(key, _)| key == "service.name") {
        let (_, name) = attributes.remove(at);
        if var(env, "OTEL_RESOURCE_ATTRIBUTES").is_some() || service_name.is_none() {
            service_name = Some(name);
        }
    }
    Ok((service_name, attributes))
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let hex = text.get(at + 1..at + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            at += 3;
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn sampler(env: Env, file: &OtelFile) -> Result<SamplerSetting, ConfigError> {
    let (setting, name) = match var(env, "OTEL_TRACES_SAMPLER") {
        Some(name) => ("OTEL_TRACES_SAMPLER", name),
        None => match &file.traces_sampler {
            Some(name) => ("opentelemetry.traces_sampler", name.clone()),
            None => ("OTEL_TRACES_SAMPLER", "parentbased_always_on".to_string()),
        },
    };
    let ratio = || -> Result<f64, ConfigError> {
        let (arg_setting, ratio) = match var(env, "OTEL_TRACES_SAMPLER_ARG") {
            Some(text) => (
                "OTEL_TRACES_SAMPLER_ARG",
                text.trim().parse::<f64>().map_err(|_| {
                    ConfigError::invalid(
                        "OTEL_TRACES_SAMPLER_ARG",
                        quoted(&text),
                        "not a number",
                        "give the share of traces to keep, from 0 to 1, e.g. 0.25",
                    )
                })?,
            ),
            None => (
                "opentelemetry.traces_sampler_arg",
                file.traces_sampler_arg.unwrap_or(1.0),
            ),
        };
        if !(0.0..=1.0).contains(&ratio) {
            return Err(ConfigError::invalid(
                arg_setting,
                ratio.to_string(),
                "out of range",
                "give the share of traces to keep, from 0 to 1, e.g. 0.25",
            ));
        }
        Ok(ratio)
    };
    Ok(match name.trim() {
        "always_on" => SamplerSetting::AlwaysOn,
        "always_off" => SamplerSetting::AlwaysOff,
        "traceidratio" => SamplerSetting::TraceIdRatio(ratio()?),
        "parentbased_always_on" => SamplerSetting::ParentBasedAlwaysOn,
        "parentbased_always_off" => SamplerSetting::ParentBasedAlwaysOff,
        "parentbased_traceidratio" => SamplerSetting::ParentBasedTraceIdRatio(ratio()?),
        other => {
            return Err(ConfigError::invalid(
                setting,
                quoted(other),
                "not a sampler pgmcp offers",
                "use always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or \
                 parentbased_traceidratio",
            ));
        }
    })
}

fn temporality(env: Env) -> Result<TemporalitySetting, ConfigError> {
    const NAME: &str = "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE";
    match var(env, NAME) {
        None => Ok(TemporalitySetting::Cumulative),
        Some(value) => match value.trim().to_ascii_lowercase().as_str() {
            "cumulative" => Ok(TemporalitySetting::Cumulative),
            "delta" => Ok(TemporalitySetting::Delta),
            "lowmemory" => Ok(TemporalitySetting::LowMemory),
            _ => Err(ConfigError::invalid(
                NAME,
                quoted(&value),
                "not a temporality",
                "use cumulative, delta or lowmemory",
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve_with(
        flags: &OtelArgs,
        file: &OtelFile,
        vars: &[(&str, &str)],
    ) -> Result<Option<OtelSettings>, ConfigError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let env = move |name: &str| {
            vars.iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        };
        resolve(flags, file, &env)
    }

    fn with_env(vars: &[(&str, &str)]) -> Result<Option<OtelSettings>, ConfigError> {
        resolve_with(&OtelArgs::default(), &OtelFile::default(), vars)
    }

    fn error(vars: &[(&str, &str)]) -> String {
        with_env(vars).unwrap_err().to_string()
    }

    const BASE: (&str, &str) = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318");

    #[test]
    fn off_without_an_endpoint_whatever_else_is_set() {
        let set = [
            ("OTEL_SERVICE_NAME", "svc"),
            ("OTEL_TRACES_SAMPLER", "always_on"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", ""),
        ];
        assert_eq!(with_env(&set).unwrap(), None);
        assert_eq!(
            with_env(&[BASE, ("OTEL_SDK_DISABLED", "TRUE")]).unwrap(),
            None
        );
        let both_none = [
            BASE,
            ("OTEL_TRACES_EXPORTER", "none"),
            ("OTEL_METRICS_EXPORTER", "none"),
        ];
        assert_eq!(with_env(&both_none).unwrap(), None);
    }

    #[test]
    fn signal_paths_are_appended_to_the_base_and_specific_endpoints_kept() {
        let settings = with_env(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "https://collector:4318/otlp/",
        )])
        .unwrap()
        .unwrap();
        assert_eq!(
            settings.traces_endpoint.unwrap().as_str(),
            "https://collector:4318/otlp/v1/traces"
        );
        assert_eq!(
            settings.metrics_endpoint.unwrap().as_str(),
            "https://collector:4318/otlp/v1/metrics"
        );
        let settings = with_env(&[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:1/custom"),
            ("OTEL_METRICS_EXPORTER", "none"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            settings.traces_endpoint.unwrap().as_str(),
            "http://t:1/custom"
        );
        assert_eq!(settings.metrics_endpoint, None);
    }

    #[test]
    fn the_flag_wins_over_the_variable_which_wins_over_the_file() {
        let file = OtelFile {
            endpoint: Some("http://file:4318".into()),
            service_name: Some("from-file".into()),
            query_text: Some(true),
            ..OtelFile::default()
        };
        let flags = OtelArgs {
            otel_endpoint: Some("http://flag:4318".into()),
            otel_query_text: false,
        };
        let settings = resolve_with(&flags, &file, &[BASE]).unwrap().unwrap();
        assert_eq!(settings.traces_endpoint.unwrap().host_str(), Some("flag"));
        assert_eq!(settings.service_name, "from-file");
        assert!(settings.query_text);
        let settings = resolve_with(&OtelArgs::default(), &file, &[BASE])
            .unwrap()
            .unwrap();
        assert_eq!(
            settings.traces_endpoint.unwrap().host_str(),
            Some("127.0.0.1")
        );
        let settings = resolve_with(
            &OtelArgs::default(),
            &file,
            &[("PGMCP_OTEL_QUERY_TEXT", "false")],
        )
        .unwrap()
        .unwrap();
        assert!(!settings.query_text);
    }

    #[test]
    fn defaults_are_pgmcp_parent_based_sampling_and_no_sql() {
        let settings = with_env(&[BASE]).unwrap().unwrap();
        assert_eq!(settings.service_name, "pgmcp");
        assert_eq!(settings.sampler, SamplerSetting::ParentBasedAlwaysOn);
        assert!(!settings.query_text);
        assert_eq!(settings.traces_timeout, DEFAULT_TIMEOUT);
        assert_eq!(settings.metric_export_interval, DEFAULT_METRIC_INTERVAL);
    }

    #[test]
    fn resource_attributes_are_decoded_and_the_service_name_variable_wins() {
        let settings = with_env(&[
            BASE,
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.name=attr-name,deployment.environment.name=prod%20eu, service.namespace=data",
            ),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(settings.service_name, "attr-name");
        assert_eq!(
            settings.resource_attributes,
            vec![
                ("deployment.environment.name".into(), "prod eu".into()),
                ("service.namespace".into(), "data".into())
            ]
        );
        let settings = with_env(&[
            BASE,
            ("OTEL_RESOURCE_ATTRIBUTES", "service.name=attr-name"),
            ("OTEL_SERVICE_NAME", "named"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(settings.service_name, "named");
    }

    #[test]
    fn samplers_and_their_ratio() {
        let settings = with_env(&[
            BASE,
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            settings.sampler,
            SamplerSetting::ParentBasedTraceIdRatio(0.25)
        );
        let message = error(&[
            BASE,
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "1.5"),
        ]);
        assert!(message.contains("`OTEL_TRACES_SAMPLER_ARG`"), "{message}");
        let message = error(&[BASE, ("OTEL_TRACES_SAMPLER", "jaeger_remote")]);
        assert!(message.contains("`OTEL_TRACES_SAMPLER`"), "{message}");
    }

    #[test]
    fn bad_values_name_their_setting() {
        for (vars, setting) in [
            (
                vec![BASE, ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")],
                "OTEL_EXPORTER_OTLP_PROTOCOL",
            ),
            (
                vec![BASE, ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json")],
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            ),
            (
                vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")],
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            ),
            (
                vec![("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "ftp://x/")],
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
            ),
            (
                vec![BASE, ("OTEL_SDK_DISABLED", "yes")],
                "OTEL_SDK_DISABLED",
            ),
            (
                vec![BASE, ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s")],
                "OTEL_EXPORTER_OTLP_TIMEOUT",
            ),
            (
                vec![BASE, ("OTEL_METRIC_EXPORT_INTERVAL", "0")],
                "OTEL_METRIC_EXPORT_INTERVAL",
            ),
            (
                vec![BASE, ("OTEL_TRACES_EXPORTER", "console")],
                "OTEL_TRACES_EXPORTER",
            ),
            (
                vec![BASE, ("OTEL_RESOURCE_ATTRIBUTES", "a=1,broken")],
                "OTEL_RESOURCE_ATTRIBUTES",
            ),
            (
                vec![BASE, ("PGMCP_OTEL_QUERY_TEXT", "maybe")],
                "PGMCP_OTEL_QUERY_TEXT",
            ),
            (
                vec![
                    BASE,
                    (
                        "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
                        "weekly",
                    ),
                ],
                "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
            ),
        ] {
            let message = error(&vars);
            assert!(
                message.contains(&format!("`{setting}`")),
                "{setting}: {message}"
            );
        }
    }

    #[test]
    fn the_config_table_as_the_readme_writes_it() {
        let file: crate::config::file::ConfigFile = toml::from_str(
            r#"
            [opentelemetry]
            endpoint = "http://127.0.0.1:4318"
            service_name = "pgmcp-sales"
            resource_attributes = { "deployment.environment.name" = "prod" }
            traces_sampler = "parentbased_traceidratio"
            traces_sampler_arg = 0.25
            query_text = false
            "#,
        )
        .unwrap();
        let settings = resolve_with(&OtelArgs::default(), &file.opentelemetry, &[])
            .unwrap()
            .unwrap();
        assert_eq!(
            settings.metrics_endpoint.unwrap().as_str(),
            "http://127.0.0.1:4318/v1/metrics"
        );
        assert_eq!(settings.service_name, "pgmcp-sales");
        assert_eq!(
            settings.sampler,
            SamplerSetting::ParentBasedTraceIdRatio(0.25)
        );
        assert_eq!(
            settings.resource_attributes,
            vec![("deployment.environment.name".into(), "prod".into())]
        );
        let unknown: Result<crate::config::file::ConfigFile, _> =
            toml::from_str("[opentelemetry]\nendpiont = \"http://x\"\n");
        assert!(unknown.is_err(), "a misspelt key is refused");
    }

    #[test]
    fn header_errors_never_show_the_value() {
        let message = error(&[
            BASE,
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "authorization=Bearer sekrit-token,no equals sign",
            ),
        ]);
        assert!(
            message.contains("`OTEL_EXPORTER_OTLP_HEADERS`") && message.contains("entry 2"),
            "{message}"
        );
        assert!(!message.contains("sekrit"), "{message}");
        assert!(with_env(&[BASE, ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=abc%3D,x-a=b")]).is_ok());
    }

    #[test]
    fn endpoint_errors_and_logs_never_show_credentials() {
        let url = Url::parse("https://user:pw@collector:4318/v1/traces?code=sekrit").unwrap();
        let shown = redact_url(&url);
        assert_eq!(shown, "https://collector:4318/v1/traces");
        let message = error(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "https://user:pw@collector:99999/?code=sekrit",
        )]);
        assert!(
            !message.contains("pw") && !message.contains("sekrit"),
            "{message}"
        );
    }
}
