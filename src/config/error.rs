use std::fmt;
use std::path::PathBuf;

/// Why the configuration cannot be used. Every message names the setting, what is wrong with its value and,
/// where one exists, the fix — the person reading it is starting pgmcp and has nothing else to go on.
/// No variant ever carries a password: values that may hold one are redacted before they get here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// A setting has a value pgmcp cannot use.
    Invalid {
        setting: String,
        /// The offending value as written (strings quoted), already redacted.
        value: String,
        problem: String,
        fix: Option<String>,
    },
    /// A connection string (URL or keyword/value) cannot be parsed.
    ConnString { problem: String },
    /// The config file cannot be read or is not valid TOML for pgmcp.
    File { path: PathBuf, problem: String },
    /// `--profile` / `PGMCP_PROFILE` names a profile that the config does not define.
    UnknownProfile {
        name: String,
        available: Vec<String>,
    },
    /// A TLS setting cannot be put into effect (root certificates unreadable, no roots for verify-*).
    Tls {
        problem: String,
        fix: Option<String>,
    },
}

impl ConfigError {
    pub fn invalid(
        setting: impl Into<String>,
        value: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> ConfigError {
        let fix = fix.into();
        ConfigError::Invalid {
            setting: setting.into(),
            value: value.into(),
            problem: problem.into(),
            fix: (!fix.is_empty()).then_some(fix),
        }
    }

    pub fn conn_string(problem: impl Into<String>) -> ConfigError {
        ConfigError::ConnString {
            problem: problem.into(),
        }
    }

    /// The same error with its setting name placed under `prefix` (e.g. `profiles.local.`), so a problem found
    /// while reading one profile names where in the file it sits.
    pub fn within(self, prefix: &str) -> ConfigError {
        match self {
            ConfigError::Invalid {
                setting,
                value,
                problem,
                fix,
            } => ConfigError::Invalid {
                setting: format!("{prefix}{setting}"),
                value,
                problem,
                fix,
            },
            ConfigError::ConnString { problem } => ConfigError::ConnString {
                problem: format!("in `{}`: {problem}", prefix.trim_end_matches('.')),
            },
            other => other,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Invalid {
                setting,
                value,
                problem,
                fix,
            } => {
                write!(f, "invalid `{setting}` = {value}: {problem}")?;
                if let Some(fix) = fix {
                    write!(f, " — {fix}")?;
                }
                Ok(())
            }
            ConfigError::ConnString { problem } => {
                write!(f, "invalid connection string: {problem}")
            }
            ConfigError::File { path, problem } => {
                write!(f, "cannot use config file {}: {problem}", path.display())
            }
            ConfigError::UnknownProfile { name, available } => {
                write!(f, "unknown profile {name:?}: ")?;
                if available.is_empty() {
                    write!(
                        f,
                        "no profiles are defined — pass --config with a file that has [profiles.{name}]"
                    )
                } else {
                    write!(
                        f,
                        "available profiles are {} — pick one of them with --profile",
                        available.join(", ")
                    )
                }
            }
            ConfigError::Tls { problem, fix } => {
                write!(f, "TLS setup failed: {problem}")?;
                if let Some(fix) = fix {
                    write!(f, " — {fix}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// A string value as it appears in an error: quoted, like it would be written in TOML.
pub(crate) fn quoted(value: &str) -> String {
    format!("{value:?}")
}
