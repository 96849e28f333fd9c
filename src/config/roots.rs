//! Which root certificates verify the server, by libpq's rules. Shared by start-up validation (so a missing
//! file is reported before anything connects) and by `db::tls` (which loads them).

use std::path::{Path, PathBuf};

use super::conninfo::{ConnSettings, SslMode};
use super::error::{ConfigError, quoted};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCerts {
    /// A PEM file of CA certificates (`sslrootcert=/path` or `~/.postgresql/root.crt`).
    File(PathBuf),
    /// The operating system's trust store (`sslrootcert=system`, or an Azure host with no root file).
    System,
}

/// libpq's default root file, `~/.postgresql/root.crt`.
pub fn default_root_file(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    env("HOME")
        .filter(|home| !home.is_empty())
        .map(|home| Path::new(&home).join(".postgresql").join("root.crt"))
}

/// The roots to verify against, or `None` when the certificate is not verified at all (possible only for
/// modes weaker than verify-ca without any root file). A root file that exists makes libpq verify the chain
/// even in `require`/`prefer`/`allow`, and so does pgmcp.
pub fn root_certs(
    conn: &ConnSettings,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<RootCerts>, ConfigError> {
    let mode = conn.effective_sslmode();
    match conn.sslrootcert.as_deref() {
        Some("system") => {
            // libpq 16 refuses this pairing: trusting every public CA only protects you if the host name is checked.
            if mode != SslMode::VerifyFull && mode != SslMode::Disable {
                return Err(ConfigError::invalid(
                    "sslmode",
                    quoted(mode.as_str()),
                    "too weak for sslrootcert=system, which trusts every public CA",
                    "use sslmode=verify-full (or leave sslmode unset), or point sslrootcert at your CA file",
                ));
            }
            Ok(Some(RootCerts::System))
        }
        Some(path) => {
            if Path::new(path).is_file() {
                Ok(Some(RootCerts::File(PathBuf::from(path))))
            } else {
                Err(ConfigError::invalid(
                    "sslrootcert",
                    quoted(path),
                    "no such file",
                    "point it at a PEM file of CA certificates, or write sslrootcert=system for the OS trust store",
                ))
            }
        }
        None => {
            if let Some(file) = default_root_file(env).filter(|file| file.is_file()) {
                return Ok(Some(RootCerts::File(file)));
            }
            if !mode.verifies_certificate() {
                return Ok(None);
            }
            if conn.all_hosts_azure() {
                return Ok(Some(RootCerts::System));
            }
            Err(ConfigError::invalid(
                "sslmode",
                quoted(mode.as_str()),
                "needs root certificates to verify the server, but sslrootcert is not set and ~/.postgresql/root.crt does not exist",
                "set sslrootcert to your CA's PEM file, or sslrootcert=system to trust the OS store, or use sslmode=require to encrypt without verifying",
            ))
        }
    }
}
