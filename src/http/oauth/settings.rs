//! `--oauth-server` settings: the `[oauth]` table of the config file merged with the `--oauth-*` flags. Every bad
//! value fails at start-up naming the setting and the fix.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::clients::check_redirect_uri;
use crate::config::Secret;
use crate::http::auth::AuthMode;

const DEFAULT_ACCESS_TOKEN_MINUTES: u64 = 10;
const DEFAULT_REFRESH_TOKEN_HOURS: u64 = 12;
const DEFAULT_REGISTRATIONS_PER_MINUTE: u32 = 20;

/// A client known before it ever calls, e.g. VS Code with a fixed client id.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ConfiguredClient {
    pub client_id: String,
    /// Shown on the consent page.
    pub name: Option<String>,
    pub redirect_uris: Vec<String>,
    /// Skip the consent page: the operator has already approved this client for everyone.
    #[serde(default)]
    pub pre_approved: bool,
}

/// The `[oauth]` table as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthFile {
    pub enabled: Option<bool>,
    pub upstream_client_id: Option<String>,
    /// How pgmcp's app proves itself at the provider: `client_secret` (the default) or `managed_identity`.
    pub upstream_credential: Option<String>,
    /// The user-assigned managed identity (its client id) for `upstream_credential = "managed_identity"`; without
    /// it, the system-assigned one.
    pub upstream_managed_identity_client_id: Option<String>,
    /// PEM file with the RSA private key every replica signs pgmcp's tokens with.
    pub signing_key: Option<PathBuf>,
    /// Keys rotated out that still verify tokens and open registrations, codes and refresh tokens.
    #[serde(default)]
    pub previous_signing_keys: Vec<PathBuf>,
    /// Scopes pgmcp asks the upstream provider for (default: `openid` plus the resource's scopes).
    pub upstream_scopes: Option<Vec<String>>,
    pub access_token_minutes: Option<u64>,
    pub refresh_token_hours: Option<u64>,
    pub registrations_per_minute: Option<u32>,
    /// Development only: client ID metadata documents may be fetched from loopback addresses.
    pub allow_loopback_client_metadata: Option<bool>,
    #[serde(default)]
    pub clients: Vec<ConfiguredClient>,
}

/// How pgmcp's app authenticates at the provider's token endpoint when it redeems a sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamCredential {
    ClientSecret(Secret),
    /// Secretless: a token of this managed identity (none: the system-assigned one) for
    /// `api://AzureADTokenExchange`, which the app registration trusts as a federated identity credential.
    ManagedIdentity(Option<String>),
}

/// The settings in force when `--oauth-server` is on.
#[derive(Debug, Clone)]
pub struct OAuthSettings {
    pub upstream_client_id: String,
    pub upstream_credential: UpstreamCredential,
    pub signing_key: PathBuf,
    pub previous_signing_keys: Vec<PathBuf>,
    pub upstream_scopes: Option<Vec<String>>,
    pub access_token_lifetime: Duration,
    pub refresh_token_lifetime: Duration,
    pub registrations_per_minute: u32,
    pub allow_loopback_client_metadata: bool,
    pub clients: Vec<ConfiguredClient>,
}

/// What the command line says about the authorization server.
#[derive(Debug, Clone, Default)]
pub struct OAuthFlags {
    pub enabled: bool,
    pub upstream_client_id: Option<String>,
    pub upstream_client_secret: Option<String>,
    pub upstream_credential: Option<String>,
    pub signing_key: Option<PathBuf>,
}

fn missing(setting: &str, fix: &str) -> anyhow::Error {
    anyhow::anyhow!("`--oauth-server` needs {setting}: {fix}")
}

/// The settings, or `None` when the authorization server is off.
pub fn resolve(
    flags: &OAuthFlags,
    file: &OAuthFile,
    mode: AuthMode,
) -> anyhow::Result<Option<OAuthSettings>> {
    if !(flags.enabled || file.enabled.unwrap_or(false)) {
        return Ok(None);
    }
    if mode == AuthMode::None {
        anyhow::bail!(
            "`--oauth-server` signs people in at Entra ID or an OpenID provider, but `--auth-mode` is none: set `--auth-mode entra` (or oidc)"
        );
    }
    let upstream_client_id = flags
        .upstream_client_id
        .clone()
        .or(file.upstream_client_id.clone())
        .filter(|id| !id.trim().is_empty())
        .ok_or_else(|| {
            missing(
                "`--oauth-upstream-client-id` (or `oauth.upstream_client_id`)",
                "the client id pgmcp signs people in with at the provider (Entra: the app registration's Application (client) ID)",
            )
        })?;
    let upstream_credential = upstream_credential(flags, file)?;
    let signing_key = flags
        .signing_key
        .clone()
        .or(file.signing_key.clone())
        .ok_or_else(|| {
            missing(
                "`--oauth-signing-key` (or `oauth.signing_key`)",
                "a PEM file with an RSA private key shared by every replica, e.g. `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out oauth-signing.pem`",
            )
        })?;
    let access_minutes = file
        .access_token_minutes
        .unwrap_or(DEFAULT_ACCESS_TOKEN_MINUTES);
    if !(1..=60).contains(&access_minutes) {
        anyhow::bail!(
            "invalid `oauth.access_token_minutes` = {access_minutes}: use 1 to 60 (the default is {DEFAULT_ACCESS_TOKEN_MINUTES}); clients refresh short-lived tokens by themselves"
        );
    }
    let refresh_hours = file
        .refresh_token_hours
        .unwrap_or(DEFAULT_REFRESH_TOKEN_HOURS);
    if !(1..=24 * 30).contains(&refresh_hours) {
        anyhow::bail!(
            "invalid `oauth.refresh_token_hours` = {refresh_hours}: use 1 to 720 (the default is {DEFAULT_REFRESH_TOKEN_HOURS})"
        );
    }
    let registrations_per_minute = file
        .registrations_per_minute
        .unwrap_or(DEFAULT_REGISTRATIONS_PER_MINUTE);
    if registrations_per_minute == 0 {
        anyhow::bail!(
            "invalid `oauth.registrations_per_minute` = 0: use a positive number (the default is {DEFAULT_REGISTRATIONS_PER_MINUTE})"
        );
    }
    if let Some(scopes) = &file.upstream_scopes
        && scopes
            .iter()
            .any(|s| s.trim().is_empty() || s.contains(' '))
    {
        anyhow::bail!(
            "invalid `oauth.upstream_scopes`: each entry is one scope without spaces, e.g. [\"openid\", \"api://<client id>/user_impersonation\"]"
        );
    }
    check_clients(&file.clients)?;
    Ok(Some(OAuthSettings {
        upstream_client_id,
        upstream_credential,
        signing_key,
        previous_signing_keys: file.previous_signing_keys.clone(),
        upstream_scopes: file.upstream_scopes.clone(),
        access_token_lifetime: Duration::from_secs(access_minutes * 60),
        refresh_token_lifetime: Duration::from_secs(refresh_hours * 3600),
        registrations_per_minute,
        allow_loopback_client_metadata: file.allow_loopback_client_metadata.unwrap_or(false),
        clients: file.clients.clone(),
    }))
}

const CREDENTIAL_SETTING: &str = "`--oauth-upstream-credential` (or `oauth.upstream_credential`)";

fn upstream_credential(flags: &OAuthFlags, file: &OAuthFile) -> anyhow::Result<UpstreamCredential> {
    let secret = flags
        .upstream_client_secret
        .clone()
        .filter(|secret| !secret.is_empty())
        .map(Secret::new);
    let kind = flags
        .upstream_credential
        .as_deref()
        .or(file.upstream_credential.as_deref())
        .map(|text| text.trim().to_ascii_lowercase().replace('-', "_"));
    let mi_client_id = file
        .upstream_managed_identity_client_id
        .clone()
        .filter(|id| !id.trim().is_empty());
    match (kind.as_deref(), secret) {
        (None | Some("client_secret"), Some(secret)) => {
            if mi_client_id.is_some() {
                anyhow::bail!(
                    "`oauth.upstream_managed_identity_client_id` is set but pgmcp authenticates with the client secret: remove it, or set {CREDENTIAL_SETTING} to managed_identity and drop the secret"
                );
            }
            Ok(UpstreamCredential::ClientSecret(secret))
        }
        (None | Some("client_secret"), None) => Err(missing(
            "`--oauth-upstream-client-secret` (or the environment variable PGMCP_OAUTH_UPSTREAM_CLIENT_SECRET)",
            "a client secret of that app registration (prefer the environment variable, which no process listing shows), or secretless: `--oauth-upstream-credential managed_identity` with the managed identity as a federated credential of the app registration",
        )),
        (Some("managed_identity"), None) => Ok(UpstreamCredential::ManagedIdentity(mi_client_id)),
        (Some("managed_identity"), Some(_)) => anyhow::bail!(
            "{CREDENTIAL_SETTING} is managed_identity but a client secret is set too (`--oauth-upstream-client-secret` / PGMCP_OAUTH_UPSTREAM_CLIENT_SECRET): unset the secret, or drop managed_identity to use the secret"
        ),
        (Some(other), _) => anyhow::bail!(
            "invalid {CREDENTIAL_SETTING} = {other:?}: use client_secret or managed_identity"
        ),
    }
}

fn check_clients(clients: &[ConfiguredClient]) -> anyhow::Result<()> {
    let mut seen = std::collections::HashSet::new();
    for client in clients {
        let id = &client.client_id;
        if id.trim().is_empty() || id.len() > 200 || id.contains(char::is_whitespace) {
            anyhow::bail!(
                "invalid `oauth.clients` client_id {id:?}: use a short id without spaces, e.g. \"vscode\""
            );
        }
        if id.starts_with(super::clients::REGISTERED_PREFIX) || id.starts_with("https://") {
            anyhow::bail!(
                "invalid `oauth.clients` client_id {id:?}: ids starting with `{}` or `https://` are reserved for registered clients and client ID metadata documents — choose another id",
                super::clients::REGISTERED_PREFIX
            );
        }
        if !seen.insert(id.clone()) {
            anyhow::bail!("`oauth.clients` lists client_id {id:?} twice: keep one entry");
        }
        if client.redirect_uris.is_empty() {
            anyhow::bail!(
                "`oauth.clients` client {id:?} has no redirect_uris: list where it receives the code, e.g. [\"http://127.0.0.1/callback\"]"
            );
        }
        for uri in &client.redirect_uris {
            if let Err(why) = check_redirect_uri(uri) {
                anyhow::bail!(
                    "`oauth.clients` client {id:?} redirect URI {uri:?}: {why} — use https://…, http://127.0.0.1[:port]/… (loopback) or an app's private scheme"
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags() -> OAuthFlags {
        OAuthFlags {
            enabled: true,
            upstream_client_id: Some("app".into()),
            upstream_client_secret: Some("s3cret".into()),
            upstream_credential: None,
            signing_key: Some("key.pem".into()),
        }
    }

    #[test]
    fn off_unless_asked() {
        let off = OAuthFlags::default();
        assert!(
            resolve(&off, &OAuthFile::default(), AuthMode::Entra)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn each_missing_setting_is_named() {
        let file = OAuthFile::default();
        let err = resolve(&flags(), &file, AuthMode::None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--auth-mode entra"), "{err}");
        for (strip, expected) in [
            (0, "--oauth-upstream-client-id"),
            (1, "PGMCP_OAUTH_UPSTREAM_CLIENT_SECRET"),
            (2, "--oauth-signing-key"),
        ] {
            let mut f = flags();
            match strip {
                0 => f.upstream_client_id = None,
                1 => f.upstream_client_secret = None,
                _ => f.signing_key = None,
            }
            let err = resolve(&f, &file, AuthMode::Oidc).unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
        }
    }

    #[test]
    fn the_upstream_credential_is_a_secret_or_the_managed_identity_never_both() {
        let file = OAuthFile::default();
        let resolved = resolve(&flags(), &file, AuthMode::Entra).unwrap().unwrap();
        assert_eq!(
            resolved.upstream_credential,
            UpstreamCredential::ClientSecret(Secret::new("s3cret"))
        );

        let mut managed = flags();
        managed.upstream_client_secret = None;
        managed.upstream_credential = Some("managed-identity".into());
        let resolved = resolve(&managed, &file, AuthMode::Entra).unwrap().unwrap();
        assert_eq!(
            resolved.upstream_credential,
            UpstreamCredential::ManagedIdentity(None)
        );
        let user_assigned = OAuthFile {
            upstream_credential: Some("managed_identity".into()),
            upstream_managed_identity_client_id: Some("mi-client".into()),
            ..OAuthFile::default()
        };
        let mut no_flag = managed.clone();
        no_flag.upstream_credential = None;
        let resolved = resolve(&no_flag, &user_assigned, AuthMode::Entra)
            .unwrap()
            .unwrap();
        assert_eq!(
            resolved.upstream_credential,
            UpstreamCredential::ManagedIdentity(Some("mi-client".into()))
        );

        let mut both = flags();
        both.upstream_credential = Some("managed_identity".into());
        let err = resolve(&both, &file, AuthMode::Entra)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--oauth-upstream-credential") && err.contains("unset the secret"),
            "{err}"
        );

        let mut neither = flags();
        neither.upstream_client_secret = None;
        let err = resolve(&neither, &file, AuthMode::Entra)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("PGMCP_OAUTH_UPSTREAM_CLIENT_SECRET")
                && err.contains("--oauth-upstream-credential managed_identity"),
            "{err}"
        );

        let mut unknown = flags();
        unknown.upstream_credential = Some("certificate".into());
        let err = resolve(&unknown, &file, AuthMode::Entra)
            .unwrap_err()
            .to_string();
        assert!(err.contains("client_secret or managed_identity"), "{err}");

        let err = resolve(&flags(), &user_assigned, AuthMode::Entra)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unset the secret"), "{err}");
    }

    #[test]
    fn configured_clients_are_checked() {
        let bad = |clients: Vec<ConfiguredClient>| {
            let file = OAuthFile {
                clients,
                ..OAuthFile::default()
            };
            resolve(&flags(), &file, AuthMode::Oidc)
                .unwrap_err()
                .to_string()
        };
        let client = |id: &str, uri: &str| ConfiguredClient {
            client_id: id.into(),
            name: None,
            redirect_uris: vec![uri.into()],
            pre_approved: false,
        };
        assert!(bad(vec![client("a", "http://evil.example/cb")]).contains("redirect URI"));
        assert!(bad(vec![client("a", "javascript:alert(1)")]).contains("redirect URI"));
        assert!(bad(vec![client("https://x", "https://x/cb")]).contains("reserved"));
        let twice = vec![client("a", "https://x/cb"), client("a", "https://y/cb")];
        assert!(bad(twice).contains("twice"));
        let file = OAuthFile {
            clients: vec![client("vscode", "http://127.0.0.1/")],
            ..OAuthFile::default()
        };
        assert!(resolve(&flags(), &file, AuthMode::Oidc).unwrap().is_some());
    }
}
