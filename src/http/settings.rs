//! Remote serving settings, combined from flags, `PGMCP_*` variables (both via clap) and the config file's
//! `[http]`, `[auth]` and `[policy]` tables. Every bad value fails at start-up naming the setting and the fix.

use std::net::SocketAddr;
use std::time::Duration;

use crate::cli::HttpArgs;
use crate::config::file::{ConfigFile, DurationValue};
use crate::http::auth::{AuthMode, AuthSettings};
use crate::http::body::DEFAULT_MAX_BODY_BYTES;
use crate::http::policy::Policy;

pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub listen: SocketAddr,
    /// Normalized, without a trailing slash.
    pub public_url: Option<reqwest::Url>,
    pub allowed_origins: Vec<String>,
    pub allow_unauthenticated: bool,
    pub legacy_sessions: bool,
    pub max_body_bytes: usize,
    /// `None`: derived from the profiles' statement timeouts.
    pub request_timeout: Option<Duration>,
    pub shutdown_timeout: Duration,
    /// A client that takes longer to send a request's headers (or leaves a connection idle longer between
    /// requests) is disconnected: a trickling client holds no connection for ever.
    pub header_read_timeout: Duration,
    /// MCP requests one authenticated caller may have running at once; 0 is no limit.
    pub per_caller_concurrency: usize,
    /// Threads of the runtime that serves HTTP; one is a current-thread runtime.
    pub threads: usize,
    /// Where people read how to use this server (RFC 9728 `resource_documentation`); only announced when set, since
    /// pgmcp cannot know where a deployment documents itself.
    pub resource_documentation: Option<String>,
    pub resource_name: String,
    pub metrics: bool,
    /// Serve the browser console at `/`.
    pub ui: bool,
    pub auth: AuthSettings,
    pub policy: Policy,
    /// `--oauth-server`: pgmcp as the authorization server clients sign in with.
    pub oauth: Option<crate::http::oauth::OAuthSettings>,
}

fn parse_listen(text: &str) -> anyhow::Result<SocketAddr> {
    let trimmed = text.trim();
    if let Ok(addr) = trimmed.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Some(port) = trimmed.strip_prefix("localhost:")
        && let Ok(port) = port.parse::<u16>()
    {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    anyhow::bail!(
        "invalid `--http` / `http.listen` = \"{text}\": not an address — use IP:PORT, e.g. 127.0.0.1:8080 (this machine only) or 0.0.0.0:8080 (all interfaces)"
    )
}

fn parse_public_url(text: &str) -> anyhow::Result<reqwest::Url> {
    let problem = |why: &str| {
        anyhow::anyhow!(
            "invalid `--public-url` / `http.public_url` = \"{text}\": {why} — give the base URL clients use, e.g. https://pgmcp.example.com"
        )
    };
    let url = reqwest::Url::parse(text.trim()).map_err(|_| problem("not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(problem("the scheme must be https (or http)"));
    }
    if url.host_str().is_none() {
        return Err(problem("the URL has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(problem("the URL must not have a query, fragment or user"));
    }
    let mut url = url;
    let path = url.path().trim_end_matches('/').to_string();
    url.set_path(&path);
    Ok(url)
}

fn parse_auth_mode(text: &str) -> anyhow::Result<AuthMode> {
    serde_json::from_value(serde_json::Value::String(text.trim().to_lowercase()))
        .map_err(|_| anyhow::anyhow!("invalid `--auth-mode` = \"{text}\": use none, entra or oidc"))
}

fn duration(value: &Option<DurationValue>, setting: &str) -> anyhow::Result<Option<Duration>> {
    match value {
        None => Ok(None),
        Some(value) => {
            let duration = value.to_duration(setting)?;
            if duration.is_zero() {
                anyhow::bail!("invalid `{setting}`: must be more than zero, e.g. \"30s\"");
            }
            Ok(Some(duration))
        }
    }
}

/// Threads serving HTTP when neither `--http-threads` nor `http.threads` says.
pub const DEFAULT_HTTP_THREADS: usize = 1;

/// The threads `serve --http` runs on, from `--http-threads` or `http.threads`.
pub fn threads(flag: Option<i64>, file: Option<i64>) -> anyhow::Result<usize> {
    const MOST: i64 = 1024;
    match flag.or(file) {
        None => Ok(DEFAULT_HTTP_THREADS),
        Some(n) if (1..=MOST).contains(&n) => Ok(n as usize),
        Some(n) => anyhow::bail!(
            "invalid `--http-threads` / `http.threads` = {n}: must be between 1 and {MOST} — set how many threads \
             serve HTTP, e.g. 1 (the default), or the number of cores pgmcp may use"
        ),
    }
}

fn per_caller_concurrency(value: Option<i64>) -> anyhow::Result<usize> {
    const MOST: i64 = 100_000;
    match value {
        None => Ok(crate::http::per_caller::DEFAULT_PER_CALLER_CONCURRENCY),
        Some(n) if (0..=MOST).contains(&n) => Ok(n as usize),
        Some(n) => anyhow::bail!(
            "invalid `--per-caller-concurrency` / `http.per_caller_concurrency` = {n}: must be between 0 and {MOST} — \
             set how many requests one caller may have running at once, e.g. 8, or 0 for no limit"
        ),
    }
}

/// Flag lists replace the file's list; an empty flag list keeps it.
fn list(flag: &[String], file: &[String]) -> Vec<String> {
    if flag.is_empty() {
        file.to_vec()
    } else {
        flag.to_vec()
    }
}

fn merge_auth(args: &HttpArgs, file: &AuthSettings) -> anyhow::Result<AuthSettings> {
    let mut auth = file.clone();
    if let Some(mode) = &args.auth_mode {
        auth.mode = parse_auth_mode(mode)?;
    }
    auth.entra_tenant_ids = list(&args.entra_tenant_ids, &file.entra_tenant_ids);
    auth.audiences = list(&args.audiences, &file.audiences);
    auth.required_roles = list(&args.required_roles, &file.required_roles);
    auth.required_scopes = list(&args.required_scopes, &file.required_scopes);
    auth.allowed_client_apps = list(&args.allowed_client_apps, &file.allowed_client_apps);
    if args.entra_client_id.is_some() {
        auth.entra_client_id = args.entra_client_id.clone();
    }
    if args.entra_app_id_uri.is_some() {
        auth.entra_app_id_uri = args.entra_app_id_uri.clone();
    }
    if args.oidc_issuer.is_some() {
        auth.oidc_issuer = args.oidc_issuer.clone();
    }
    Ok(auth)
}

/// The HTTP settings, or `None` when neither `--http` nor `http.listen` asks for HTTP (serve on stdio).
pub fn resolve(args: &HttpArgs, file: &ConfigFile) -> anyhow::Result<Option<HttpSettings>> {
    let Some(listen) = args.listen.as_ref().or(file.http.listen.as_ref()) else {
        return Ok(None);
    };
    let http = &file.http;
    let max_body_bytes = match http.max_body_bytes {
        None => DEFAULT_MAX_BODY_BYTES,
        Some(n) if n >= 1024 => usize::try_from(n).unwrap_or(usize::MAX),
        Some(n) => anyhow::bail!(
            "invalid `http.max_body_bytes` = {n}: too small — use at least 1024 (the default is {DEFAULT_MAX_BODY_BYTES})"
        ),
    };
    let public_url = args
        .public_url
        .as_ref()
        .or(http.public_url.as_ref())
        .map(|text| parse_public_url(text))
        .transpose()?;
    let write_role = args.write_role.as_deref();
    let auth = merge_auth(args, &file.auth)?;
    let oauth_flags = crate::http::oauth::OAuthFlags {
        enabled: args.oauth_server,
        upstream_client_id: args.oauth_upstream_client_id.clone(),
        upstream_client_secret: args.oauth_upstream_client_secret.clone(),
        upstream_credential: args.oauth_upstream_credential.clone(),
        upstream_certificate: args.oauth_upstream_certificate.clone(),
        signing_key: args.oauth_signing_key.clone(),
    };
    let oauth = crate::http::oauth::settings::resolve(&oauth_flags, &file.oauth, auth.mode)?;
    Ok(Some(HttpSettings {
        listen: parse_listen(listen)?,
        public_url,
        allowed_origins: list(&args.allowed_origins, &http.allowed_origins),
        allow_unauthenticated: args.allow_unauthenticated
            || http.allow_unauthenticated.unwrap_or(false),
        legacy_sessions: args.legacy_sessions || http.legacy_sessions.unwrap_or(false),
        max_body_bytes,
        request_timeout: duration(&http.request_timeout, "http.request_timeout")?,
        shutdown_timeout: duration(&http.shutdown_timeout, "http.shutdown_timeout")?
            .unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT),
        header_read_timeout: duration(&http.header_read_timeout, "http.header_read_timeout")?
            .unwrap_or(DEFAULT_HEADER_READ_TIMEOUT),
        per_caller_concurrency: per_caller_concurrency(
            args.per_caller_concurrency.or(http.per_caller_concurrency),
        )?,
        threads: threads(args.threads, http.threads)?,
        resource_documentation: http.resource_documentation.clone(),
        resource_name: http
            .resource_name
            .clone()
            .unwrap_or_else(|| "pgmcp (PostgreSQL for MCP)".to_string()),
        metrics: http.metrics.unwrap_or(true),
        ui: !args.no_ui && http.ui.unwrap_or(true),
        auth,
        policy: Policy::from_file(&file.policy, write_role, &file.curated_tool_names())?,
        oauth,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(listen: &str) -> HttpArgs {
        HttpArgs {
            listen: Some(listen.to_string()),
            ..HttpArgs::default()
        }
    }

    #[test]
    fn stdio_without_listen() {
        assert!(
            resolve(&HttpArgs::default(), &ConfigFile::default())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn flags_win_over_the_file() {
        let file = ConfigFile::parse(
            r#"
            [http]
            listen = "0.0.0.0:9000"
            public_url = "https://file.example.com/"
            allowed_origins = ["https://a.example.com"]
            per_caller_concurrency = 3
            header_read_timeout = "2s"
            threads = 2
            [auth]
            mode = "entra"
            audiences = ["api://file"]
            "#,
        )
        .unwrap();
        let mut flags = args("127.0.0.1:0");
        flags.audiences = vec!["api://flag".into()];
        flags.auth_mode = Some("oidc".into());
        let settings = resolve(&flags, &file).unwrap().unwrap();
        assert_eq!(settings.listen.to_string(), "127.0.0.1:0");
        assert_eq!(
            settings.public_url.unwrap().as_str(),
            "https://file.example.com/"
        );
        assert_eq!(settings.allowed_origins, vec!["https://a.example.com"]);
        assert_eq!(settings.auth.mode, AuthMode::Oidc);
        assert_eq!(settings.auth.audiences, vec!["api://flag"]);
        assert_eq!(settings.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        assert_eq!(settings.per_caller_concurrency, 3);
        assert_eq!(settings.header_read_timeout, Duration::from_secs(2));
        assert_eq!(settings.threads, 2);
        let defaults = resolve(&args("127.0.0.1:0"), &ConfigFile::default())
            .unwrap()
            .unwrap();
        assert_eq!(defaults.per_caller_concurrency, 8);
        assert_eq!(defaults.header_read_timeout, DEFAULT_HEADER_READ_TIMEOUT);
        assert_eq!(defaults.threads, 1);
    }

    #[test]
    fn bad_values_name_the_setting() {
        let file = ConfigFile::default();
        let mut no_threads = args("127.0.0.1:0");
        no_threads.threads = Some(0);
        let err = resolve(&no_threads, &file).unwrap_err().to_string();
        assert!(
            err.contains("--http-threads") && err.contains("http.threads"),
            "{err}"
        );
        let err = resolve(&args("nowhere"), &file).unwrap_err().to_string();
        assert!(
            err.contains("--http") && err.contains("127.0.0.1:8080"),
            "{err}"
        );
        let mut bad_url = args("127.0.0.1:0");
        bad_url.public_url = Some("ftp://x".into());
        let err = resolve(&bad_url, &file).unwrap_err().to_string();
        assert!(err.contains("--public-url"), "{err}");
        let mut bad_mode = args("127.0.0.1:0");
        bad_mode.auth_mode = Some("kerberos".into());
        let err = resolve(&bad_mode, &file).unwrap_err().to_string();
        assert!(
            err.contains("--auth-mode") && err.contains("entra"),
            "{err}"
        );
        let mut negative = args("127.0.0.1:0");
        negative.per_caller_concurrency = Some(-1);
        let err = resolve(&negative, &file).unwrap_err().to_string();
        assert!(
            err.contains("--per-caller-concurrency") && err.contains("0 for no limit"),
            "{err}"
        );
        let small =
            ConfigFile::parse("[http]\nlisten = \"127.0.0.1:0\"\nmax_body_bytes = 10\n").unwrap();
        let err = resolve(&HttpArgs::default(), &small)
            .unwrap_err()
            .to_string();
        assert!(err.contains("http.max_body_bytes"), "{err}");
    }

    #[test]
    fn the_web_client_is_on_unless_the_flag_or_the_file_turns_it_off() {
        let file = ConfigFile::default();
        assert!(resolve(&args("127.0.0.1:0"), &file).unwrap().unwrap().ui);
        let mut off = args("127.0.0.1:0");
        off.no_ui = true;
        assert!(!resolve(&off, &file).unwrap().unwrap().ui);
        let file_off = ConfigFile::parse("[http]\nui = false\n").unwrap();
        assert!(
            !resolve(&args("127.0.0.1:0"), &file_off)
                .unwrap()
                .unwrap()
                .ui
        );
    }

    #[test]
    fn public_url_path_is_kept_without_trailing_slash() {
        let url = parse_public_url("https://example.com/tools/pgmcp/").unwrap();
        assert_eq!(url.as_str(), "https://example.com/tools/pgmcp");
    }
}
