//! `--oauth-server` settings: the `[oauth]` table of the config file merged with the `--oauth-*` flags. Every bad
//! value fails at start-up naming the setting and the fix.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::clients::check_redirect_uri;
use crate::config::Secret;
use crate::http::auth::AuthMode;
use crate::identity::keyvault::SecretReference;

const DEFAULT_ACCESS_TOKEN_MINUTES: u64 = 10;
const DEFAULT_KEY_VAULT_REFRESH_SECONDS: u64 = 300;
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
    /// How pgmcp's app proves itself at the provider: `client_secret` (the default), `managed_identity` or
    /// `certificate`.
    pub upstream_credential: Option<String>,
    /// For `upstream_credential = "certificate"`: a PEM file with the certificate and its RSA key, or a Key Vault
    /// secret identifier (a Key Vault certificate's secret, content type `application/x-pem-file`).
    pub upstream_certificate: Option<String>,
    /// The user-assigned managed identity (its client id) for `upstream_credential = "managed_identity"`; without
    /// it, the system-assigned one.
    pub upstream_managed_identity_client_id: Option<String>,
    /// The RSA private key every replica signs pgmcp's tokens with: a PEM file, or a Key Vault secret identifier
    /// (`https://<vault>.vault.azure.net/secrets/<name>`) whose versions are the key's rotations.
    pub signing_key: Option<String>,
    /// Keys rotated out that still verify tokens and open registrations, codes and refresh tokens (files only;
    /// a Key Vault key's previous keys are its older enabled versions).
    #[serde(default)]
    pub previous_signing_keys: Vec<PathBuf>,
    /// How often Key Vault is read again for new versions of the signing key and the upstream certificate; a new
    /// signing key version starts signing once it is this old, so every replica has published it by then.
    pub key_vault_refresh_seconds: Option<u64>,
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
    /// A client assertion signed with the certificate's key (`private_key_jwt`; Entra's certificate credential).
    Certificate(PemSource),
}

/// Where a PEM file the authorization server needs comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PemSource {
    File(PathBuf),
    /// A Key Vault secret (or certificate's secret): the newest version, or the pinned one.
    KeyVault(SecretReference),
}

impl PemSource {
    fn parse(text: &str, setting: &str) -> anyhow::Result<PemSource> {
        let text = text.trim();
        if text.is_empty() {
            anyhow::bail!("{setting} is empty: give a PEM file or a Key Vault secret identifier");
        }
        if SecretReference::looks_like_one(text) {
            return SecretReference::parse(text, setting)
                .map(PemSource::KeyVault)
                .map_err(|error| anyhow::anyhow!("{error}"));
        }
        Ok(PemSource::File(PathBuf::from(text)))
    }
}

/// Where the signing keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigningKeySource {
    /// The current key's file and the files of rotated-out keys still trusted.
    Files {
        current: PathBuf,
        previous: Vec<PathBuf>,
    },
    /// A Key Vault secret whose enabled versions are the keys (or one pinned version).
    KeyVault(SecretReference),
}

/// The settings in force when `--oauth-server` is on.
#[derive(Debug, Clone)]
pub struct OAuthSettings {
    pub upstream_client_id: String,
    pub upstream_credential: UpstreamCredential,
    pub signing_key: SigningKeySource,
    /// How often Key Vault is read again (signing key versions, the upstream certificate).
    pub key_vault_refresh: Duration,
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
    pub upstream_certificate: Option<String>,
    pub signing_key: Option<String>,
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
    let signing_key = signing_key(flags, file)?;
    let refresh_seconds = file
        .key_vault_refresh_seconds
        .unwrap_or(DEFAULT_KEY_VAULT_REFRESH_SECONDS);
    if !(1..=24 * 3600).contains(&refresh_seconds) {
        anyhow::bail!(
            "invalid `oauth.key_vault_refresh_seconds` = {refresh_seconds}: use 1 to 86400 (the default is {DEFAULT_KEY_VAULT_REFRESH_SECONDS})"
        );
    }
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
        key_vault_refresh: Duration::from_secs(refresh_seconds),
        upstream_scopes: file.upstream_scopes.clone(),
        access_token_lifetime: Duration::from_secs(access_minutes * 60),
        refresh_token_lifetime: Duration::from_secs(refresh_hours * 3600),
        registrations_per_minute,
        allow_loopback_client_metadata: file.allow_loopback_client_metadata.unwrap_or(false),
        clients: file.clients.clone(),
    }))
}

const CREDENTIAL_SETTING: &str = "`--oauth-upstream-credential` (or `oauth.upstream_credential`)";
const CERTIFICATE_SETTING: &str =
    "`--oauth-upstream-certificate` (or `oauth.upstream_certificate`)";
const SIGNING_KEY_SETTING: &str = "`--oauth-signing-key` (or `oauth.signing_key`)";

fn signing_key(flags: &OAuthFlags, file: &OAuthFile) -> anyhow::Result<SigningKeySource> {
    let text = flags
        .signing_key
        .clone()
        .or(file.signing_key.clone())
        .ok_or_else(|| {
            missing(
                SIGNING_KEY_SETTING,
                "a PEM file with an RSA private key shared by every replica, e.g. `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out oauth-signing.pem`, or a Key Vault secret holding it, https://<vault>.vault.azure.net/secrets/<name>",
            )
        })?;
    match PemSource::parse(&text, SIGNING_KEY_SETTING)? {
        PemSource::File(current) => Ok(SigningKeySource::Files {
            current,
            previous: file.previous_signing_keys.clone(),
        }),
        PemSource::KeyVault(reference) => {
            if !file.previous_signing_keys.is_empty() {
                anyhow::bail!(
                    "`oauth.previous_signing_keys` lists files, but the signing key is in Key Vault ({reference}), where \
                     the previous keys are the secret's older enabled versions: remove `oauth.previous_signing_keys`"
                );
            }
            Ok(SigningKeySource::KeyVault(reference))
        }
    }
}

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
    let certificate = flags
        .upstream_certificate
        .clone()
        .or(file.upstream_certificate.clone())
        .filter(|text| !text.trim().is_empty());
    // A certificate given without naming the kind means the certificate, unless a secret is given too.
    let kind = kind
        .or_else(|| (certificate.is_some() && secret.is_none()).then(|| "certificate".to_string()));
    if certificate.is_some() && kind.as_deref() != Some("certificate") {
        anyhow::bail!(
            "{CERTIFICATE_SETTING} is set but pgmcp authenticates with {}: remove the certificate, or set {CREDENTIAL_SETTING} to certificate{}",
            kind.as_deref().unwrap_or("the client secret"),
            if secret.is_some() {
                " and unset the client secret"
            } else {
                ""
            }
        );
    }
    if mi_client_id.is_some() && kind.as_deref() == Some("certificate") {
        anyhow::bail!(
            "`oauth.upstream_managed_identity_client_id` is set but pgmcp authenticates with a certificate: remove it, or set {CREDENTIAL_SETTING} to managed_identity"
        );
    }
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
        (Some(kind @ ("managed_identity" | "certificate")), Some(_)) => anyhow::bail!(
            "{CREDENTIAL_SETTING} is {kind} but a client secret is set too (`--oauth-upstream-client-secret` / PGMCP_OAUTH_UPSTREAM_CLIENT_SECRET): unset the secret, or drop {kind} to use the secret"
        ),
        (Some("certificate"), None) => {
            let text = certificate.ok_or_else(|| {
                missing(
                    CERTIFICATE_SETTING,
                    "a PEM file with the certificate registered on the app registration and its RSA private key, or a Key Vault certificate (content type application/x-pem-file) as https://<vault>.vault.azure.net/secrets/<name>",
                )
            })?;
            PemSource::parse(&text, CERTIFICATE_SETTING).map(UpstreamCredential::Certificate)
        }
        (Some(other), _) => anyhow::bail!(
            "invalid {CREDENTIAL_SETTING} = {other:?}: use client_secret, managed_identity or certificate"
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
            upstream_certificate: None,
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
        unknown.upstream_credential = Some("password".into());
        let err = resolve(&unknown, &file, AuthMode::Entra)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("client_secret, managed_identity or certificate"),
            "{err}"
        );

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

    #[test]
    fn the_upstream_certificate_is_a_file_or_a_key_vault_secret() {
        let file = OAuthFile::default();
        let mut certificate = flags();
        certificate.upstream_client_secret = None;
        certificate.upstream_certificate = Some("/secrets/upstream.pem".into());
        let resolved = resolve(&certificate, &file, AuthMode::Entra)
            .unwrap()
            .unwrap();
        assert_eq!(
            resolved.upstream_credential,
            UpstreamCredential::Certificate(PemSource::File("/secrets/upstream.pem".into()))
        );

        let in_vault = OAuthFile {
            upstream_credential: Some("certificate".into()),
            upstream_certificate: Some(
                "https://contoso.vault.azure.net/secrets/pgmcp-upstream".into(),
            ),
            ..OAuthFile::default()
        };
        let mut no_secret = flags();
        no_secret.upstream_client_secret = None;
        let resolved = resolve(&no_secret, &in_vault, AuthMode::Entra)
            .unwrap()
            .unwrap();
        let UpstreamCredential::Certificate(PemSource::KeyVault(reference)) =
            resolved.upstream_credential
        else {
            panic!("{:?}", resolved.upstream_credential);
        };
        assert_eq!(reference.name, "pgmcp-upstream");

        let mut without_file = no_secret.clone();
        without_file.upstream_credential = Some("certificate".into());
        let err = resolve(&without_file, &file, AuthMode::Entra)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--oauth-upstream-certificate"), "{err}");

        let mut with_secret = flags();
        with_secret.upstream_certificate = Some("/secrets/upstream.pem".into());
        let err = resolve(&with_secret, &file, AuthMode::Entra)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unset the client secret"), "{err}");

        let mut managed = no_secret.clone();
        managed.upstream_credential = Some("managed_identity".into());
        managed.upstream_certificate = Some("/secrets/upstream.pem".into());
        let err = resolve(&managed, &file, AuthMode::Entra)
            .unwrap_err()
            .to_string();
        assert!(err.contains("remove the certificate"), "{err}");

        let mut keys_api = no_secret.clone();
        keys_api.upstream_certificate =
            Some("https://contoso.vault.azure.net/keys/pgmcp-upstream".into());
        let err = resolve(&keys_api, &file, AuthMode::Entra)
            .unwrap_err()
            .to_string();
        assert!(err.contains("never leaves the vault"), "{err}");
    }

    #[test]
    fn the_signing_key_is_files_or_a_key_vault_secret_not_both() {
        let mut vault = flags();
        vault.signing_key = Some("https://contoso.vault.azure.net/secrets/pgmcp-signing".into());
        let resolved = resolve(&vault, &OAuthFile::default(), AuthMode::Entra)
            .unwrap()
            .unwrap();
        let SigningKeySource::KeyVault(reference) = &resolved.signing_key else {
            panic!("{:?}", resolved.signing_key);
        };
        assert_eq!(reference.vault, "https://contoso.vault.azure.net");
        assert_eq!(resolved.key_vault_refresh, Duration::from_secs(300));

        let with_previous = OAuthFile {
            previous_signing_keys: vec!["old.pem".into()],
            ..OAuthFile::default()
        };
        let err = resolve(&vault, &with_previous, AuthMode::Entra)
            .unwrap_err()
            .to_string();
        assert!(err.contains("older enabled versions"), "{err}");
        let resolved = resolve(&flags(), &with_previous, AuthMode::Entra)
            .unwrap()
            .unwrap();
        assert_eq!(
            resolved.signing_key,
            SigningKeySource::Files {
                current: "key.pem".into(),
                previous: vec!["old.pem".into()]
            }
        );

        let mut plain_http = flags();
        plain_http.signing_key = Some("http://contoso.vault.azure.net/secrets/k".into());
        let err = resolve(&plain_http, &OAuthFile::default(), AuthMode::Entra)
            .unwrap_err()
            .to_string();
        assert!(err.contains("https://"), "{err}");

        let slow = OAuthFile {
            key_vault_refresh_seconds: Some(0),
            ..OAuthFile::default()
        };
        let err = resolve(&vault, &slow, AuthMode::Entra)
            .unwrap_err()
            .to_string();
        assert!(err.contains("key_vault_refresh_seconds"), "{err}");
    }
}
