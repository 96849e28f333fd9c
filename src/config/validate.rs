//! Start-up validation of a resolved profile: every problem is found before anything connects, and each
//! message names the setting, what is wrong with the value, and the fix.

use std::time::Duration;

use super::AccessMode;
use super::error::{ConfigError, quoted};
use super::profile::{Profile, ProfileOverrides};

/// The longest `statement_timeout` PostgreSQL accepts (its GUC is an int of milliseconds).
const MAX_STATEMENT_TIMEOUT: Duration = Duration::from_millis(i32::MAX as u64);
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(3600);
const MAX_POOL_WAIT_TIMEOUT: Duration = Duration::from_secs(600);

/// `value` as a count, provided it lies in `min..=max`.
pub(crate) fn count_in_range(
    setting: &str,
    value: i64,
    min: i64,
    max: i64,
    fix: &str,
) -> Result<usize, ConfigError> {
    if (min..=max).contains(&value)
        && let Ok(count) = usize::try_from(value)
    {
        return Ok(count);
    }
    Err(ConfigError::invalid(
        setting,
        value.to_string(),
        format!("must be between {min} and {max}"),
        fix,
    ))
}

pub(crate) fn validate(
    profile: &Profile,
    overrides: &ProfileOverrides,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    let prefix = format!("profiles.{}.", profile.name);
    // An overridden value came from a flag or variable, not the file: name it plainly.
    let name = |key: &str, overridden: bool| {
        if overridden {
            key.to_string()
        } else {
            format!("{prefix}{key}")
        }
    };
    let count = |key: &str, overridden: bool, value: usize, min: i64, max: i64, fix: &str| {
        count_in_range(
            &name(key, overridden),
            i64::try_from(value).unwrap_or(i64::MAX),
            min,
            max,
            fix,
        )
    };

    count(
        "pool_max",
        overrides.pool_max.is_some(),
        profile.pool_max,
        1,
        1000,
        "set the most connections the pool may open",
    )?;
    if profile.pool_min > profile.pool_max {
        return Err(ConfigError::invalid(
            name("pool_min", false),
            profile.pool_min.to_string(),
            format!("larger than pool_max ({})", profile.pool_max),
            "lower pool_min or raise pool_max",
        ));
    }
    count(
        "max_rows",
        overrides.max_rows.is_some(),
        profile.max_rows,
        1,
        1_000_000,
        "set a positive number of rows",
    )?;
    count(
        "max_rows_ceiling",
        false,
        profile.max_rows_ceiling,
        1,
        1_000_000,
        "set a positive number of rows",
    )?;
    if profile.max_rows > profile.max_rows_ceiling {
        return Err(ConfigError::invalid(
            name("max_rows", overrides.max_rows.is_some()),
            profile.max_rows.to_string(),
            format!(
                "larger than max_rows_ceiling ({})",
                profile.max_rows_ceiling
            ),
            "lower max_rows or raise max_rows_ceiling",
        ));
    }
    count(
        "max_result_bytes",
        overrides.max_result_bytes.is_some(),
        profile.max_result_bytes,
        1024,
        1 << 30,
        "set a size in bytes, e.g. 4194304 for 4 MiB",
    )?;
    check_timeout(
        &name("statement_timeout", overrides.statement_timeout.is_some()),
        profile.statement_timeout,
        MAX_STATEMENT_TIMEOUT,
    )?;
    check_timeout(
        &name("connect_timeout", false),
        profile.connect_timeout,
        MAX_CONNECT_TIMEOUT,
    )?;
    check_timeout(
        &name("pool_wait_timeout", false),
        profile.pool_wait_timeout,
        MAX_POOL_WAIT_TIMEOUT,
    )?;

    if profile.allow_ddl && profile.access_mode == AccessMode::ReadOnly {
        return Err(ConfigError::invalid(
            name("allow_ddl", false),
            "true",
            "DDL cannot run in a read-only profile",
            "set access_mode = \"read_write\" as well, or drop allow_ddl",
        ));
    }
    if !profile.allow_extensions.is_empty() && !profile.allow_ddl {
        return Err(ConfigError::invalid(
            name("allow_extensions", false),
            format!("{:?}", profile.allow_extensions),
            "CREATE EXTENSION is DDL, which this profile does not allow",
            "set access_mode = \"read_write\" and allow_ddl = true as well, or drop allow_extensions",
        ));
    }
    for (key, functions) in [
        ("deny_functions", &profile.deny_functions),
        (
            "allow_volatile_functions",
            &profile.allow_volatile_functions,
        ),
    ] {
        if let Some(bad) = functions
            .iter()
            .find(|f| f.trim().is_empty() || f.chars().any(char::is_whitespace))
        {
            return Err(ConfigError::invalid(
                name(key, false),
                quoted(bad),
                "not a function name",
                "list plain names such as \"pg_sleep\" or schema-qualified ones such as \"public.f\"",
            ));
        }
    }
    if let Some(bad) = profile
        .allow_foreign_tables
        .iter()
        .find(|t| t.trim().is_empty() || t.chars().any(char::is_whitespace))
    {
        return Err(ConfigError::invalid(
            name("allow_foreign_tables", false),
            quoted(bad),
            "not a table name",
            "list schema-qualified names such as \"sales.remote_orders\", or \"sales.*\" for a schema's",
        ));
    }
    if let Some(application_name) = &profile.conn.application_name
        && application_name.len() >= 64
    {
        return Err(ConfigError::invalid(
            name("application_name", false),
            quoted(application_name),
            "longer than PostgreSQL's 63-byte limit",
            "use a shorter name",
        ));
    }

    super::roots::root_certs(&profile.conn, env).map_err(|error| error.within(&prefix))?;
    Ok(())
}

fn check_timeout(setting: &str, value: Duration, max: Duration) -> Result<(), ConfigError> {
    let fix = "write e.g. \"500ms\", \"30s\" or \"2m\"";
    if value.is_zero() {
        return Err(ConfigError::invalid(
            setting,
            "0",
            "must be greater than zero",
            fix,
        ));
    }
    if value > max {
        return Err(ConfigError::invalid(
            setting,
            format!("{}ms", value.as_millis()),
            format!("longer than the maximum of {}ms", max.as_millis()),
            fix,
        ));
    }
    Ok(())
}
