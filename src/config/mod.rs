//! Configuration: libpq-style connection settings, TOML profiles, validation.

pub mod chat;
pub mod conninfo;
pub mod error;
pub mod file;
pub mod identity;
pub mod pgpass;
pub mod profile;
pub mod roots;
pub mod secret;
pub mod url;
pub mod validate;

pub use conninfo::{ConnSettings, SslMode};
pub use error::ConfigError;
pub use profile::{ConfigSources, Profile, ProfileOverrides, resolve};
pub use roots::RootCerts;
pub use secret::Secret;

/// What a profile lets SQL do. Read-only is the default and is enforced in depth (guard + read-only transaction).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessMode {
    #[default]
    ReadOnly,
    ReadWrite,
}

impl AccessMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessMode::ReadOnly => "read_only",
            AccessMode::ReadWrite => "read_write",
        }
    }
}
