//! Profiles: one database plus the limits pgmcp enforces on it, and how the sources (flags, environment,
//! config file) combine into the list of profiles a server exposes.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use super::AccessMode;
use super::conninfo::ConnSettings;
use super::error::{ConfigError, quoted};
use super::file::{ConfigFile, ProfileFile};
use super::secret::Secret;
use super::url::redact_url;

pub const DEFAULT_PROFILE_NAME: &str = "default";
pub const DEFAULT_APPLICATION_NAME: &str = "pgmcp";

#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    /// One line shown to the model by `list_profiles`.
    pub description: Option<String>,
    pub conn: ConnSettings,
    pub pool_min: usize,
    pub pool_max: usize,
    pub statement_timeout: Duration,
    pub connect_timeout: Duration,
    /// How long a call waits for a free connection when every one is in use, before it fails as busy.
    pub pool_wait_timeout: Duration,
    /// Rows returned per call when the caller does not ask for a number.
    pub max_rows: usize,
    /// The largest per-call `limit` a caller may ask for.
    pub max_rows_ceiling: usize,
    /// Result size ceiling in bytes; results are truncated like `max_rows`.
    pub max_result_bytes: usize,
    pub access_mode: AccessMode,
    pub allow_ddl: bool,
    /// Extensions `CREATE EXTENSION`, `ALTER EXTENSION … UPDATE` and `DROP EXTENSION` may name (with `allow_ddl`):
    /// an extension can install untrusted languages and superuser-owned functions, so none is allowed by default.
    pub allow_extensions: Vec<String>,
    /// Columns whose values never leave pgmcp unmasked.
    pub masks: Vec<crate::guard::masks::MaskRule>,
    /// Added to the guard's built-in deny-list.
    pub deny_functions: Vec<String>,
    /// Added to the guard's built-in list of volatile functions that are still allowed.
    pub allow_volatile_functions: Vec<String>,
    /// Foreign tables read-only calls may read (`schema.table`, `*` as a wildcard); none by default.
    pub allow_foreign_tables: Vec<String>,
    /// Prepared statements kept per connection for repeated SQL; `None` is automatic (see
    /// [`Profile::statement_cache_size`]).
    pub statement_cache: Option<usize>,
    /// Where the database password comes from (`db_auth`, Entra credential, Key Vault, on-behalf-of).
    pub identity: crate::identity::IdentitySettings,
}

impl Profile {
    /// A profile with pgmcp's default limits (read-only, 1000 rows, 30 s statements).
    pub fn new(name: impl Into<String>, conn: ConnSettings) -> Profile {
        Profile {
            name: name.into(),
            description: None,
            conn,
            pool_min: 1,
            pool_max: 10,
            statement_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            pool_wait_timeout: Duration::from_secs(15),
            max_rows: 1000,
            max_rows_ceiling: 10_000,
            max_result_bytes: 4 * 1024 * 1024,
            access_mode: AccessMode::ReadOnly,
            allow_ddl: false,
            allow_extensions: Vec::new(),
            masks: Vec::new(),
            deny_functions: Vec::new(),
            allow_volatile_functions: Vec::new(),
            allow_foreign_tables: Vec::new(),
            statement_cache: None,
            identity: crate::identity::IdentitySettings::default(),
        }
    }

    /// How many prepared statements each connection keeps for SQL it has run before. A transaction-pooling proxy
    /// (PgBouncer in transaction mode, as Azure's built-in PgBouncer on port 6432) may hand the next transaction
    /// to a server session that never saw the statement, so the automatic choice is none there and 64 elsewhere.
    pub fn statement_cache_size(&self) -> usize {
        const DEFAULT: usize = 64;
        const PGBOUNCER_PORT: u16 = 6432;
        self.statement_cache.unwrap_or_else(|| {
            let behind_pgbouncer =
                !self.conn.ports.is_empty() && self.conn.ports.iter().all(|p| *p == PGBOUNCER_PORT);
            if behind_pgbouncer { 0 } else { DEFAULT }
        })
    }
}

/// Overrides from the command line or environment, applied to every resolved profile.
#[derive(Debug, Clone, Default)]
pub struct ProfileOverrides {
    pub access_mode: Option<AccessMode>,
    pub statement_timeout: Option<Duration>,
    pub max_rows: Option<usize>,
    pub max_result_bytes: Option<usize>,
    pub pool_max: Option<usize>,
    pub identity: crate::identity::IdentityOverrides,
}

/// Everything resolution reads, injected so tests need no real environment.
#[derive(Debug, Clone, Default)]
pub struct ConfigSources {
    /// `--database-url`
    pub database_url: Option<String>,
    /// `--config` (falls back to `PGMCP_CONFIG` in `env`)
    pub config_path: Option<PathBuf>,
    /// `--profile`, repeatable; the first is the default. Falls back to `PGMCP_PROFILE` (comma-separated).
    pub profiles: Vec<String>,
    pub overrides: ProfileOverrides,
    /// A snapshot of the process environment (DATABASE_URL, PG*, PGMCP_PROFILE, HOME, USER ...).
    pub env: HashMap<String, String>,
}

impl ConfigSources {
    fn var(&self, name: &str) -> Option<String> {
        self.env
            .get(name)
            .filter(|value| !value.is_empty())
            .cloned()
    }
}

/// The profiles to serve, the default first.
///
/// The database comes from `--database-url`, else `DATABASE_URL`, else the selected profile(s), else libpq's
/// `PG*` variables; `PG*` variables also fill whatever the chosen source leaves unspecified. A URL names one
/// database, so with a URL the result is one profile: the selected (or default) profile's limits with the
/// URL's connection. Without a URL, the selected profiles are served, or all of the file's profiles when none
/// is selected.
pub fn resolve(sources: &ConfigSources) -> Result<Vec<Profile>, ConfigError> {
    let env = |name: &str| sources.var(name);
    let pg_env = ConnSettings::from_env(&env)?;

    let config_path = sources
        .config_path
        .clone()
        .or_else(|| sources.var("PGMCP_CONFIG").map(PathBuf::from));
    let file = match &config_path {
        Some(path) => Some(ConfigFile::load(path)?),
        None => None,
    };
    let file_profiles = file
        .as_ref()
        .map(ConfigFile::profiles_in_order)
        .unwrap_or_default();
    let available: Vec<String> = file_profiles.iter().map(|(name, _)| name.clone()).collect();

    let mut selected = sources.profiles.clone();
    if selected.is_empty()
        && let Some(names) = sources.var("PGMCP_PROFILE")
    {
        selected = names
            .split(',')
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect();
    }
    for name in &selected {
        if !available.contains(name) {
            return Err(ConfigError::UnknownProfile {
                name: name.clone(),
                available: available.clone(),
            });
        }
    }
    let default_name = match file.as_ref().and_then(|f| f.default_profile.clone()) {
        Some(name) if !available.contains(&name) => {
            return Err(ConfigError::invalid(
                "default_profile",
                quoted(&name),
                "no profile of that name is defined",
                format!("use one of {}", available.join(", ")),
            ));
        }
        Some(name) => Some(name),
        None => available.first().cloned(),
    };

    let url = sources
        .database_url
        .clone()
        .or_else(|| sources.var("DATABASE_URL"));
    // Each profile with whether its file table set connect_timeout itself (else the connection's, e.g.
    // PGCONNECT_TIMEOUT or a URL parameter, applies once the sources are merged).
    let build = |name: &str| -> Result<(Profile, bool), ConfigError> {
        let raw = file_profiles
            .iter()
            .find(|(candidate, _)| candidate == name)
            .map(|(_, raw)| raw.clone())
            .unwrap_or_default();
        Ok((
            profile_from_file(name, &raw)?,
            raw.connect_timeout.is_some(),
        ))
    };

    let mut profiles = if let Some(url) = url {
        if selected.len() > 1 {
            return Err(ConfigError::invalid(
                "--profile",
                quoted(&selected.join(",")),
                "a database URL names one database, so only one profile can go with it",
                "pass a single --profile, or drop --database-url / DATABASE_URL to serve several profiles",
            ));
        }
        let base_name = selected.first().cloned().or(default_name);
        let mut profile = match &base_name {
            Some(name) => build(name)?,
            None => (
                Profile::new(DEFAULT_PROFILE_NAME, ConnSettings::default()),
                false,
            ),
        };
        profile.0.conn = ConnSettings::parse(&url).map_err(|error| {
            ConfigError::conn_string(format!("in database URL {}: {error}", redact_url(&url)))
        })?;
        vec![profile]
    } else if let Some(default_name) = default_name {
        let mut names = if selected.is_empty() {
            available.clone()
        } else {
            selected.clone()
        };
        if selected.is_empty() {
            names.retain(|name| *name != default_name);
            names.insert(0, default_name);
        }
        names
            .iter()
            .map(|name| build(name))
            .collect::<Result<Vec<_>, _>>()?
    } else {
        vec![(
            Profile::new(DEFAULT_PROFILE_NAME, ConnSettings::default()),
            false,
        )]
    };

    let mut resolved = Vec::with_capacity(profiles.len());
    for (mut profile, explicit_connect_timeout) in profiles.drain(..) {
        let conn = std::mem::take(&mut profile.conn).or(pg_env.clone());
        let explicit_user = conn.user.is_some();
        profile.conn = conn.with_defaults(&env);
        if !explicit_connect_timeout && let Some(timeout) = profile.conn.connect_timeout {
            profile.connect_timeout = timeout;
        }
        if profile.conn.application_name.is_none() {
            profile.conn.application_name = Some(DEFAULT_APPLICATION_NAME.to_string());
        }
        apply_overrides(&mut profile, &sources.overrides);
        super::identity::finish_identity(&mut profile, explicit_user)?;
        super::validate::validate(&profile, &sources.overrides, &env)?;
        resolved.push(profile);
    }
    Ok(resolved)
}

fn apply_overrides(profile: &mut Profile, overrides: &ProfileOverrides) {
    if let Some(mode) = overrides.access_mode {
        profile.access_mode = mode;
    }
    if let Some(timeout) = overrides.statement_timeout {
        profile.statement_timeout = timeout;
    }
    if let Some(rows) = overrides.max_rows {
        profile.max_rows = rows;
        // Asking for more rows by default than the ceiling allows would fail validation for no good reason.
        profile.max_rows_ceiling = profile.max_rows_ceiling.max(rows);
    }
    if let Some(bytes) = overrides.max_result_bytes {
        profile.max_result_bytes = bytes;
    }
    if let Some(pool_max) = overrides.pool_max {
        profile.pool_max = pool_max;
        profile.pool_min = profile.pool_min.min(pool_max);
    }
    profile.identity.apply(&overrides.identity);
}

/// One `[profiles.NAME]` table turned into a profile (before `PG*` fallbacks, defaults and validation).
pub(crate) fn profile_from_file(name: &str, raw: &ProfileFile) -> Result<Profile, ConfigError> {
    let prefix = format!("profiles.{name}.");
    check_profile_name(name)?;
    let mut profile = Profile::new(name, connection_from_file(raw, &prefix)?);
    profile.description = raw.description.clone();

    let count = |key: &str,
                 value: Option<i64>,
                 min: i64,
                 max: i64,
                 fix: &str|
     -> Result<Option<usize>, ConfigError> {
        value
            .map(|v| super::validate::count_in_range(&format!("{prefix}{key}"), v, min, max, fix))
            .transpose()
    };
    if let Some(v) = count(
        "pool_min",
        raw.pool_min,
        0,
        1000,
        "set 0 or a small number of idle connections",
    )? {
        profile.pool_min = v;
    }
    if let Some(v) = count(
        "pool_max",
        raw.pool_max,
        1,
        1000,
        "set the most connections the pool may open",
    )? {
        profile.pool_max = v;
    }
    if let Some(v) = count(
        "max_rows",
        raw.max_rows,
        1,
        1_000_000,
        "set a positive number of rows",
    )? {
        profile.max_rows = v;
    }
    if let Some(v) = count(
        "max_rows_ceiling",
        raw.max_rows_ceiling,
        1,
        1_000_000,
        "set a positive number of rows",
    )? {
        profile.max_rows_ceiling = v;
    }
    let bytes_fix = "set a size in bytes, e.g. 4194304 for 4 MiB";
    if let Some(v) = count(
        "max_result_bytes",
        raw.max_result_bytes,
        1024,
        1 << 30,
        bytes_fix,
    )? {
        profile.max_result_bytes = v;
    }
    if let Some(v) = count(
        "statement_cache",
        raw.statement_cache,
        0,
        10_000,
        "set how many prepared statements a connection keeps, or 0 behind a transaction-pooling proxy",
    )? {
        profile.statement_cache = Some(v);
    }
    if let Some(value) = &raw.statement_timeout {
        profile.statement_timeout = value.to_duration(&format!("{prefix}statement_timeout"))?;
    }
    if let Some(value) = &raw.connect_timeout {
        profile.connect_timeout = value.to_duration(&format!("{prefix}connect_timeout"))?;
    }
    if let Some(value) = &raw.pool_wait_timeout {
        profile.pool_wait_timeout = value.to_duration(&format!("{prefix}pool_wait_timeout"))?;
    }
    if let Some(mode) = &raw.access_mode {
        profile.access_mode = match mode.as_str() {
            "read_only" => AccessMode::ReadOnly,
            "read_write" => AccessMode::ReadWrite,
            other => {
                return Err(ConfigError::invalid(
                    format!("{prefix}access_mode"),
                    quoted(other),
                    "expected one of read_only, read_write",
                    "",
                ));
            }
        };
    }
    profile.allow_ddl = raw.allow_ddl.unwrap_or(false);
    profile.allow_extensions = raw.allow_extensions.clone().unwrap_or_default();
    profile.masks = masks_from_file(raw.masks.as_deref().unwrap_or_default(), &prefix)?;
    profile.deny_functions = raw.deny_functions.clone().unwrap_or_default();
    profile.allow_volatile_functions = raw.allow_volatile_functions.clone().unwrap_or_default();
    profile.allow_foreign_tables = raw.allow_foreign_tables.clone().unwrap_or_default();
    profile.identity = super::identity::identity_from_file(raw, &prefix)?;
    Ok(profile)
}

fn masks_from_file(
    masks: &[super::file::MaskFile],
    prefix: &str,
) -> Result<Vec<crate::guard::masks::MaskRule>, ConfigError> {
    use crate::guard::masks::{MaskMode, MaskRule};
    masks
        .iter()
        .enumerate()
        .map(|(index, mask)| {
            let key = |field: &str| format!("{prefix}masks[{index}].{field}");
            let (schema, table) = match mask.table.split_once('.') {
                Some((schema, table)) => (schema.to_string(), table.to_string()),
                None => ("public".to_string(), mask.table.clone()),
            };
            if schema.is_empty() || table.is_empty() || table.contains('.') {
                return Err(ConfigError::invalid(
                    key("table"),
                    quoted(&mask.table),
                    "not a table name",
                    "write \"schema.table\" (or \"table\" for one in public), as the catalog spells it",
                ));
            }
            if mask.columns.is_empty() || mask.columns.iter().any(|column| column.is_empty()) {
                return Err(ConfigError::invalid(
                    key("columns"),
                    format!("{:?}", mask.columns),
                    "a mask needs the names of the columns it hides",
                    "list them, e.g. columns = [\"email\", \"phone\"]",
                ));
            }
            let mode = match mask.mode.as_deref() {
                None => MaskMode::Redact,
                Some(text) => MaskMode::parse(text).ok_or_else(|| {
                    ConfigError::invalid(
                        key("mode"),
                        quoted(text),
                        format!("expected one of {}", MaskMode::NAMES),
                        "",
                    )
                })?,
            };
            Ok(MaskRule {
                schema,
                table,
                columns: mask.columns.clone(),
                mode,
            })
        })
        .collect()
}

fn check_profile_name(name: &str) -> Result<(), ConfigError> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if valid {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            "profiles",
            quoted(name),
            "a profile name may only contain a-z, 0-9, _ and -",
            "rename the [profiles.NAME] table, e.g. [profiles.prod-eu]",
        ))
    }
}

/// The connection half of a profile: `url`, and/or the separate keys. A key may fill what the URL leaves out
/// but not contradict it — two values for one setting in one profile is a mistake worth stopping for.
fn connection_from_file(raw: &ProfileFile, prefix: &str) -> Result<ConnSettings, ConfigError> {
    let from_url = match &raw.url {
        Some(url) => ConnSettings::parse(url).map_err(|error| {
            ConfigError::conn_string(format!(
                "in `{prefix}url` = {}: {error}",
                quoted(&redact_url(url))
            ))
        })?,
        None => ConnSettings::default(),
    };

    let mut keys = ConnSettings::default();
    let mut set =
        |keyword: &str, value: &str| keys.apply(keyword, value, &format!("{prefix}{keyword}"));
    if let Some(host) = &raw.host {
        set("host", host)?;
    }
    if let Some(port) = raw.port {
        let port = super::validate::count_in_range(
            &format!("{prefix}port"),
            port,
            1,
            65535,
            "use e.g. 5432",
        )?;
        set("port", &port.to_string())?;
    }
    for (keyword, value) in [
        ("dbname", &raw.dbname),
        ("user", &raw.user),
        ("sslmode", &raw.sslmode),
        ("sslrootcert", &raw.sslrootcert),
        ("application_name", &raw.application_name),
    ] {
        if let Some(value) = value {
            set(keyword, value)?;
        }
    }
    if let Some(password) = &raw.password {
        tracing::warn!(
            setting = %format!("{prefix}password"),
            "a password is written in the config file; prefer password_file, PGPASSWORD or ~/.pgpass"
        );
        if raw.password_file.is_some() {
            return Err(ConfigError::invalid(
                format!("{prefix}password"),
                "\"****\"",
                "both password and password_file are set",
                "keep only password_file",
            ));
        }
        keys.password = Some(Secret::new(password));
    }
    if let Some(path) = &raw.password_file {
        keys.password = Some(read_password_file(path, prefix)?);
    }

    let mut conflicts = Vec::new();
    let both = |a: bool, b: bool, name: &'static str, out: &mut Vec<&'static str>| {
        if a && b {
            out.push(name);
        }
    };
    both(
        !keys.hosts.is_empty(),
        !from_url.hosts.is_empty(),
        "host",
        &mut conflicts,
    );
    both(
        !keys.ports.is_empty(),
        !from_url.ports.is_empty(),
        "port",
        &mut conflicts,
    );
    both(
        keys.dbname.is_some(),
        from_url.dbname.is_some(),
        "dbname",
        &mut conflicts,
    );
    both(
        keys.user.is_some(),
        from_url.user.is_some(),
        "user",
        &mut conflicts,
    );
    both(
        keys.password.is_some(),
        from_url.password.is_some(),
        "password",
        &mut conflicts,
    );
    both(
        keys.sslmode.is_some(),
        from_url.sslmode.is_some(),
        "sslmode",
        &mut conflicts,
    );
    both(
        keys.sslrootcert.is_some(),
        from_url.sslrootcert.is_some(),
        "sslrootcert",
        &mut conflicts,
    );
    if let Some(name) = conflicts.first() {
        return Err(ConfigError::invalid(
            format!("{prefix}{name}"),
            "(set twice)",
            format!("`{name}` is given both in `url` and as its own key"),
            "keep one of the two",
        ));
    }
    Ok(keys.or(from_url))
}

fn read_password_file(path: &std::path::Path, prefix: &str) -> Result<Secret, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        ConfigError::invalid(
            format!("{prefix}password_file"),
            quoted(&path.display().to_string()),
            format!("cannot read it: {error}"),
            "point it at a file readable by pgmcp that holds only the password",
        )
    })?;
    Ok(Secret::new(text.trim_end_matches(['\n', '\r'])))
}
