//! libpq-compatible connection settings: the keyword/value form, `PG*` environment variables, defaults.
//! The URL form lives in `url.rs`; both feed the same [`ConnSettings::apply`], so a keyword means the same
//! thing wherever it is written.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use super::error::{ConfigError, quoted};
use super::secret::Secret;

pub const DEFAULT_HOST: &str = "localhost";
pub const DEFAULT_PORT: u16 = 5432;

/// Azure Database for PostgreSQL host suffixes (public and sovereign clouds). Azure requires TLS and serves
/// certificates from public CAs, so these hosts default to `verify-full` against the system roots.
const AZURE_HOST_SUFFIXES: [&str; 3] = [
    ".postgres.database.azure.com",
    ".postgres.database.chinacloudapi.cn",
    ".postgres.database.usgovcloudapi.net",
];

/// The keywords pgmcp understands, in the order they are listed to someone who wrote an unknown one.
pub const KNOWN_KEYWORDS: [&str; 12] = [
    "host",
    "port",
    "dbname",
    "user",
    "password",
    "passfile",
    "sslmode",
    "sslrootcert",
    "application_name",
    "connect_timeout",
    "options",
    "ssl",
];

/// libpq's `sslmode`, with its exact meaning (see `db::tls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub const ALL: [SslMode; 6] = [
        SslMode::Disable,
        SslMode::Allow,
        SslMode::Prefer,
        SslMode::Require,
        SslMode::VerifyCa,
        SslMode::VerifyFull,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// Whether the server certificate must chain to a trusted root (the root is then mandatory).
    pub fn verifies_certificate(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SslMode {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<SslMode, ConfigError> {
        SslMode::ALL
            .into_iter()
            .find(|mode| mode.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = SslMode::ALL.iter().map(|m| m.as_str()).collect();
                ConfigError::invalid(
                    "sslmode",
                    quoted(s),
                    format!("expected one of {}", names.join(", ")),
                    "",
                )
            })
    }
}

/// Connection settings as libpq understands them. Every field is optional so that sources can be layered
/// ([`ConnSettings::or`]); defaults are filled last by [`ConnSettings::with_defaults`].
#[derive(Clone, Debug, Default)]
pub struct ConnSettings {
    pub hosts: Vec<String>,
    pub ports: Vec<u16>,
    pub dbname: Option<String>,
    pub user: Option<String>,
    pub password: Option<Secret>,
    pub passfile: Option<PathBuf>,
    pub sslmode: Option<SslMode>,
    pub sslrootcert: Option<String>,
    pub application_name: Option<String>,
    pub connect_timeout: Option<Duration>,
    pub options: Option<String>,
}

impl ConnSettings {
    /// Parses either form libpq accepts: a `postgres://` / `postgresql://` URL or `key=value` pairs.
    pub fn parse(conn: &str) -> Result<ConnSettings, ConfigError> {
        let trimmed = conn.trim();
        if super::url::is_url(trimmed) {
            super::url::parse_url(trimmed)
        } else {
            parse_keyword_value(trimmed)
        }
    }

    /// The settings libpq takes from its environment variables; unset or empty variables leave a field empty.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<ConnSettings, ConfigError> {
        const VARIABLES: [(&str, &str); 11] = [
            ("PGHOST", "host"),
            ("PGPORT", "port"),
            ("PGDATABASE", "dbname"),
            ("PGUSER", "user"),
            ("PGPASSWORD", "password"),
            ("PGPASSFILE", "passfile"),
            ("PGSSLMODE", "sslmode"),
            ("PGSSLROOTCERT", "sslrootcert"),
            ("PGAPPNAME", "application_name"),
            ("PGCONNECT_TIMEOUT", "connect_timeout"),
            ("PGOPTIONS", "options"),
        ];
        let mut settings = ConnSettings::default();
        for (variable, keyword) in VARIABLES {
            if let Some(value) = env(variable).filter(|v| !v.is_empty()) {
                settings.apply(keyword, &value, variable)?;
            }
        }
        Ok(settings)
    }

    /// Fields missing in `self` taken from `fallback` — how libpq treats environment variables as defaults.
    pub fn or(self, fallback: ConnSettings) -> ConnSettings {
        ConnSettings {
            hosts: if self.hosts.is_empty() {
                fallback.hosts
            } else {
                self.hosts
            },
            ports: if self.ports.is_empty() {
                fallback.ports
            } else {
                self.ports
            },
            dbname: self.dbname.or(fallback.dbname),
            user: self.user.or(fallback.user),
            password: self.password.or(fallback.password),
            passfile: self.passfile.or(fallback.passfile),
            sslmode: self.sslmode.or(fallback.sslmode),
            sslrootcert: self.sslrootcert.or(fallback.sslrootcert),
            application_name: self.application_name.or(fallback.application_name),
            connect_timeout: self.connect_timeout.or(fallback.connect_timeout),
            options: self.options.or(fallback.options),
        }
    }

    /// libpq's defaults for whatever is still unset: TCP to localhost:5432, the OS user, a database named like
    /// the user. (libpq would use a Unix socket; pgmcp keeps to TCP so TLS settings always mean something.)
    pub fn with_defaults(mut self, env: &dyn Fn(&str) -> Option<String>) -> ConnSettings {
        if self.hosts.is_empty() {
            self.hosts.push(DEFAULT_HOST.to_string());
        }
        if self.ports.is_empty() {
            self.ports.push(DEFAULT_PORT);
        }
        if self.user.is_none() {
            self.user = Some(os_user(env));
        }
        if self.dbname.is_none() {
            self.dbname = self.user.clone();
        }
        self
    }

    /// The sslmode in force: the one written, else `verify-full` where the roots are the system's
    /// (`sslrootcert=system`, as libpq 16 does, or an Azure host), else libpq's `prefer`.
    pub fn effective_sslmode(&self) -> SslMode {
        if let Some(mode) = self.sslmode {
            return mode;
        }
        if self.sslrootcert.as_deref() == Some("system") || self.all_hosts_azure() {
            return SslMode::VerifyFull;
        }
        SslMode::Prefer
    }

    /// Whether every host is an Azure Database for PostgreSQL server (false with no hosts at all).
    pub fn all_hosts_azure(&self) -> bool {
        !self.hosts.is_empty() && self.hosts.iter().all(|host| is_azure_host(host))
    }

    /// A one-line description safe for logs and `list_profiles`: everything that says where, never the password.
    pub fn redacted(&self) -> String {
        let mut parts = Vec::new();
        if !self.hosts.is_empty() {
            parts.push(format!("host={}", self.hosts.join(",")));
        }
        if !self.ports.is_empty() {
            let ports: Vec<String> = self.ports.iter().map(u16::to_string).collect();
            parts.push(format!("port={}", ports.join(",")));
        }
        if let Some(dbname) = &self.dbname {
            parts.push(format!("dbname={dbname}"));
        }
        if let Some(user) = &self.user {
            parts.push(format!("user={user}"));
        }
        parts.push(format!("sslmode={}", self.effective_sslmode()));
        parts.join(" ")
    }

    /// The password to send: the one given explicitly, else the first matching `~/.pgpass` line (see `pgpass`).
    pub fn resolve_password(&self, env: &dyn Fn(&str) -> Option<String>) -> Option<Secret> {
        if let Some(password) = &self.password {
            return Some(password.clone());
        }
        let path = super::pgpass::passfile_path(self.passfile.as_deref(), env)?;
        let user = self.user.clone().unwrap_or_else(|| os_user(env));
        let dbname = self.dbname.clone().unwrap_or_else(|| user.clone());
        let host = self
            .hosts
            .first()
            .map(String::as_str)
            .unwrap_or(DEFAULT_HOST);
        let port = self.ports.first().copied().unwrap_or(DEFAULT_PORT);
        super::pgpass::lookup(&path, host, port, &dbname, &user)
    }

    /// Sets one libpq keyword. `origin` is how the setting was named where it was written (`port`, `PGPORT`)
    /// so the error points there.
    pub(crate) fn apply(
        &mut self,
        keyword: &str,
        value: &str,
        origin: &str,
    ) -> Result<(), ConfigError> {
        match keyword {
            "host" => self.hosts = value.split(',').map(str::to_string).collect(),
            "port" => self.ports = parse_ports(value, origin)?,
            "dbname" => self.dbname = Some(value.to_string()),
            "user" => self.user = Some(value.to_string()),
            "password" => self.password = Some(Secret::new(value)),
            "passfile" => self.passfile = Some(PathBuf::from(value)),
            "sslmode" => {
                self.sslmode = Some(value.parse().map_err(|e: ConfigError| rename(e, origin))?);
            }
            // JDBC's `ssl=true`, which many hosted-database dashboards hand out; libpq accepts it too.
            "ssl" => match value {
                "true" | "1" => self.sslmode = Some(SslMode::Require),
                "false" | "0" => self.sslmode = Some(SslMode::Disable),
                _ => {
                    return Err(ConfigError::invalid(
                        origin,
                        quoted(value),
                        "expected true or false",
                        "or use sslmode= instead",
                    ));
                }
            },
            "sslrootcert" => self.sslrootcert = Some(value.to_string()),
            "application_name" => self.application_name = Some(value.to_string()),
            "connect_timeout" => self.connect_timeout = parse_connect_timeout(value, origin)?,
            "options" => self.options = Some(value.to_string()),
            unknown => {
                return Err(ConfigError::conn_string(format!(
                    "unknown keyword `{unknown}` — supported keywords are {}",
                    KNOWN_KEYWORDS.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// libpq's rule for several hosts: one port for all, or exactly one port per host.
    pub(crate) fn check_host_port_counts(&self) -> Result<(), ConfigError> {
        if self.ports.len() > 1 && self.ports.len() != self.hosts.len().max(1) {
            let ports: Vec<String> = self.ports.iter().map(u16::to_string).collect();
            return Err(ConfigError::invalid(
                "port",
                quoted(&ports.join(",")),
                format!(
                    "{} ports for {} hosts",
                    self.ports.len(),
                    self.hosts.len().max(1)
                ),
                "give one port for all hosts or one port per host",
            ));
        }
        Ok(())
    }
}

pub fn is_azure_host(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    AZURE_HOST_SUFFIXES
        .iter()
        .any(|suffix| host.ends_with(suffix))
}

/// The OS user name libpq would use as the default role.
pub(crate) fn os_user(env: &dyn Fn(&str) -> Option<String>) -> String {
    env("USER")
        .or_else(|| env("LOGNAME"))
        .or_else(|| env("USERNAME"))
        .filter(|user| !user.is_empty())
        .unwrap_or_else(|| "postgres".to_string())
}

fn rename(error: ConfigError, origin: &str) -> ConfigError {
    match error {
        ConfigError::Invalid {
            value,
            problem,
            fix,
            ..
        } => ConfigError::Invalid {
            setting: origin.to_string(),
            value,
            problem,
            fix,
        },
        other => other,
    }
}

fn parse_ports(value: &str, origin: &str) -> Result<Vec<u16>, ConfigError> {
    value
        .split(',')
        .map(|port| {
            let port = port.trim();
            if port.is_empty() {
                return Ok(DEFAULT_PORT);
            }
            match port.parse::<u16>() {
                Ok(number) if number > 0 => Ok(number),
                _ => Err(ConfigError::invalid(
                    origin,
                    quoted(port),
                    "not a TCP port number",
                    "use a number between 1 and 65535, e.g. 5432",
                )),
            }
        })
        .collect()
}

/// libpq's `connect_timeout`: whole seconds, where zero or less means wait forever.
fn parse_connect_timeout(value: &str, origin: &str) -> Result<Option<Duration>, ConfigError> {
    match value.trim().parse::<i64>() {
        Ok(seconds) if seconds <= 0 => Ok(None),
        Ok(seconds) => Ok(Some(Duration::from_secs(seconds.unsigned_abs()))),
        Err(_) => Err(ConfigError::invalid(
            origin,
            quoted(value),
            "not a whole number of seconds",
            "write e.g. 10",
        )),
    }
}

/// libpq's keyword/value form: `key = value` pairs separated by whitespace; a value is either bare (ends at
/// whitespace) or single-quoted. Backslash escapes the next character in both; inside quotes `''` is accepted
/// as an escaped quote too, as SQL users expect (libpq itself would reject it, so nothing valid changes meaning).
fn parse_keyword_value(input: &str) -> Result<ConnSettings, ConfigError> {
    let mut settings = ConnSettings::default();
    let mut chars = input.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let mut keyword = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            keyword.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(ConfigError::conn_string(format!(
                "missing \"=\" after `{keyword}` — write key=value pairs separated by spaces, or a postgresql:// URL"
            )));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => {
                        return Err(ConfigError::conn_string(format!(
                            "unterminated quoted value for `{keyword}` — close it with '"
                        )));
                    }
                    Some('\\') => value.extend(chars.next()),
                    Some('\'') if chars.next_if_eq(&'\'').is_some() => value.push('\''),
                    Some('\'') => break,
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        settings.apply(&keyword, &value, &keyword)?;
    }
    settings.check_host_port_counts()?;
    Ok(settings)
}
