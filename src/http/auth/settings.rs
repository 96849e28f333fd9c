use serde::Deserialize;

use crate::config::ConfigError;
use crate::identity::http::is_loopback_url;

/// How `/mcp` authenticates callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// No authentication (loopback only unless explicitly allowed by the server).
    #[default]
    None,
    /// Microsoft Entra ID access tokens (v1 and v2) for the configured tenants.
    Entra,
    /// Any OpenID provider, found through OpenID discovery of `oidc_issuer`.
    Oidc,
}

impl AuthMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::None => "none",
            AuthMode::Entra => "entra",
            AuthMode::Oidc => "oidc",
        }
    }
}

pub const DEFAULT_ENTRA_AUTHORITY: &str = "https://login.microsoftonline.com";
pub const DEFAULT_ENTRA_V1_ISSUER_HOST: &str = "https://sts.windows.net";
const DEFAULT_LEEWAY_SECONDS: u64 = 60;
const DEFAULT_JWKS_REFRESH_SECONDS: u64 = 3600;
const DEFAULT_UNKNOWN_KID_COOLDOWN_SECONDS: u64 = 30;

/// The `[auth]` settings: who may call `/mcp`. Every list is "any of"; an empty list means "no requirement".
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    #[serde(default)]
    pub mode: AuthMode,
    /// Entra tenants whose tokens are accepted (`tid`); in `oidc` mode an optional `tid` allow-list.
    #[serde(default)]
    pub entra_tenant_ids: Vec<String>,
    /// The app registration's client id (an accepted audience, as in v2 tokens).
    #[serde(default)]
    pub entra_client_id: Option<String>,
    /// The app registration's App ID URI, e.g. `api://<client id>` (an accepted audience, as in v1 tokens).
    #[serde(default)]
    pub entra_app_id_uri: Option<String>,
    /// The issuer for `oidc` mode, exactly as it appears in `iss`.
    #[serde(default)]
    pub oidc_issuer: Option<String>,
    /// Further accepted audiences (`aud`); the only ones in `oidc` mode.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// App roles (`roles`), any of which admits an app-only token.
    #[serde(default)]
    pub required_roles: Vec<String>,
    /// Delegated scopes (`scp`), any of which admits a delegated token.
    #[serde(default)]
    pub required_scopes: Vec<String>,
    /// Client applications (`azp`, `appid` or `client_id`) that may call.
    #[serde(default)]
    pub allowed_client_apps: Vec<String>,
    /// Principals (`oid`, or `sub` when there is no `oid`) that may call.
    #[serde(default)]
    pub allowed_principals: Vec<String>,
    /// Entra authority; v2 issuers are `{authority}/{tenant}/v2.0` and keys come from
    /// `{authority}/{tenant}/discovery/v2.0/keys`. Default `https://login.microsoftonline.com`
    /// (sovereign clouds and tests point it elsewhere).
    #[serde(default)]
    pub entra_authority: Option<String>,
    /// Host of Entra v1 issuers, `{host}/{tenant}/`. Default `https://sts.windows.net`.
    #[serde(default)]
    pub entra_v1_issuer_host: Option<String>,
    /// Accept only tokens typed `at+jwt` (RFC 9068 JWT access tokens), for providers that issue them: an ID token
    /// of the same issuer is then refused by its type alone. Not for Entra, whose access tokens are typed `JWT`.
    #[serde(default)]
    pub require_at_jwt: bool,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds. Default 60.
    #[serde(default)]
    pub leeway_seconds: Option<u64>,
    /// How often signing keys are fetched again, in seconds. Default 3600.
    #[serde(default)]
    pub jwks_refresh_seconds: Option<u64>,
    /// Minimum time between two key fetches caused by tokens with an unknown `kid`, in seconds. Default 30.
    #[serde(default)]
    pub unknown_kid_cooldown_seconds: Option<u64>,
}

impl AuthSettings {
    pub fn leeway(&self) -> u64 {
        self.leeway_seconds.unwrap_or(DEFAULT_LEEWAY_SECONDS)
    }

    pub fn jwks_refresh(&self) -> std::time::Duration {
        std::time::Duration::from_secs(
            self.jwks_refresh_seconds
                .unwrap_or(DEFAULT_JWKS_REFRESH_SECONDS),
        )
    }

    pub fn unknown_kid_cooldown(&self) -> std::time::Duration {
        std::time::Duration::from_secs(
            self.unknown_kid_cooldown_seconds
                .unwrap_or(DEFAULT_UNKNOWN_KID_COOLDOWN_SECONDS),
        )
    }

    pub fn entra_authority(&self) -> String {
        trim_slash(
            self.entra_authority
                .as_deref()
                .unwrap_or(DEFAULT_ENTRA_AUTHORITY),
        )
    }

    pub fn entra_v1_issuer_host(&self) -> String {
        trim_slash(
            self.entra_v1_issuer_host
                .as_deref()
                .unwrap_or(DEFAULT_ENTRA_V1_ISSUER_HOST),
        )
    }

    /// Every audience a token may carry.
    pub fn accepted_audiences(&self) -> Vec<String> {
        let mut accepted = Vec::new();
        if self.mode == AuthMode::Entra {
            accepted.extend(self.entra_client_id.clone());
            accepted.extend(self.entra_app_id_uri.clone());
        }
        accepted.extend(self.audiences.iter().cloned());
        accepted.dedup();
        accepted
    }

    /// Checks that the settings describe a usable configuration; the error names the setting and the fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (setting, values) in [
            ("auth.audiences", &self.audiences),
            ("auth.required_roles", &self.required_roles),
            ("auth.required_scopes", &self.required_scopes),
            ("auth.allowed_client_apps", &self.allowed_client_apps),
            ("auth.allowed_principals", &self.allowed_principals),
            ("auth.entra_tenant_ids", &self.entra_tenant_ids),
        ] {
            if let Some(bad) = values
                .iter()
                .find(|v| v.trim().is_empty() || v.trim() != v.as_str())
            {
                return Err(ConfigError::invalid(
                    setting,
                    format!("{bad:?}"),
                    "entries must be non-empty and have no surrounding spaces",
                    "remove the empty entry or the spaces",
                ));
            }
        }
        if let Some(leeway) = self.leeway_seconds
            && leeway > 300
        {
            return Err(ConfigError::invalid(
                "auth.leeway_seconds",
                leeway.to_string(),
                "more than 5 minutes of clock skew accepts long-expired tokens",
                "use at most 300 (the default is 60)",
            ));
        }
        if self.jwks_refresh_seconds == Some(0) {
            return Err(ConfigError::invalid(
                "auth.jwks_refresh_seconds",
                "0",
                "keys would be fetched continuously",
                "use a positive number of seconds (the default is 3600)",
            ));
        }
        match self.mode {
            AuthMode::None => Ok(()),
            AuthMode::Entra => self.validate_entra(),
            AuthMode::Oidc => self.validate_oidc(),
        }
    }

    fn validate_entra(&self) -> Result<(), ConfigError> {
        if self.require_at_jwt {
            return Err(ConfigError::invalid(
                "auth.require_at_jwt",
                "true",
                "Entra types its access tokens `JWT`, never `at+jwt`, so every token would be refused",
                "remove require_at_jwt (pgmcp tells Entra ID tokens from access tokens by their claims)",
            ));
        }
        if self.entra_tenant_ids.is_empty() {
            return Err(ConfigError::invalid(
                "auth.entra_tenant_ids",
                "[]",
                "auth mode `entra` needs the tenant(s) whose tokens are accepted",
                "pass --entra-tenant-id <tenant GUID> (the Directory (tenant) ID of the app registration)",
            ));
        }
        if let Some(bad) = self.entra_tenant_ids.iter().find(|t| !is_guid(t)) {
            return Err(ConfigError::invalid(
                "auth.entra_tenant_ids",
                format!("{bad:?}"),
                "Entra issuers name the tenant by its GUID, not by a domain name",
                "use the Directory (tenant) ID shown on the app registration's overview page",
            ));
        }
        match &self.entra_client_id {
            None => {
                return Err(ConfigError::invalid(
                    "auth.entra_client_id",
                    "(unset)",
                    "auth mode `entra` needs the app registration's client id (the audience of v2 tokens)",
                    "pass --entra-client-id <Application (client) ID>",
                ));
            }
            Some(id) if !is_guid(id) => {
                return Err(ConfigError::invalid(
                    "auth.entra_client_id",
                    format!("{id:?}"),
                    "an Entra client id is a GUID",
                    "use the Application (client) ID shown on the app registration's overview page",
                ));
            }
            Some(_) => {}
        }
        if let Some(uri) = &self.entra_app_id_uri
            && !uri.contains(':')
        {
            return Err(ConfigError::invalid(
                "auth.entra_app_id_uri",
                format!("{uri:?}"),
                "an App ID URI is a URI such as api://<client id>",
                "copy the Application ID URI from the app registration's \"Expose an API\" page",
            ));
        }
        if self.required_roles.is_empty()
            && self.allowed_client_apps.is_empty()
            && self.allowed_principals.is_empty()
        {
            // Entra hands an app-only token for this API to any service principal of the tenant that asks (unless
            // the enterprise app requires assignment, which pgmcp cannot see), and such a token has no scope
            // to check: without one of these rules every application in the tenant could query the database.
            return Err(ConfigError::invalid(
                "auth.required_roles",
                "[]",
                "with no required app role, allowed client app or allowed principal, any application in the \
                 tenant can obtain a token for this API and call it",
                "pass --required-role MCP.Access and assign that app role to the callers (and to no one if only \
                 people call, who need --required-scope), or list the callers with --allowed-client-app / \
                 --allowed-principal",
            ));
        }
        check_endpoint("auth.entra_authority", &self.entra_authority())?;
        check_endpoint("auth.entra_v1_issuer_host", &self.entra_v1_issuer_host())
    }

    fn validate_oidc(&self) -> Result<(), ConfigError> {
        let Some(issuer) = &self.oidc_issuer else {
            return Err(ConfigError::invalid(
                "auth.oidc_issuer",
                "(unset)",
                "auth mode `oidc` needs the issuer whose tokens are accepted",
                "pass --oidc-issuer <issuer URL, exactly as in the tokens' iss claim>",
            ));
        };
        check_endpoint("auth.oidc_issuer", issuer)?;
        if self.audiences.is_empty() {
            return Err(ConfigError::invalid(
                "auth.audiences",
                "[]",
                "auth mode `oidc` needs the audience(s) tokens must be issued for, or any token of the issuer \
                 would be accepted",
                "pass --audience <this server's resource identifier>",
            ));
        }
        Ok(())
    }
}

fn trim_slash(url: &str) -> String {
    url.trim_end_matches('/').to_string()
}

/// Keys and discovery are fetched from here, so only HTTPS is acceptable — except plain HTTP on loopback, which
/// never leaves the machine (local providers and tests).
fn check_endpoint(setting: &str, url: &str) -> Result<(), ConfigError> {
    endpoint_problem(url).map_or(Ok(()), |problem| {
        Err(ConfigError::invalid(
            setting,
            format!("{url:?}"),
            problem,
            "use an https:// URL (plain http:// is accepted only for 127.0.0.1, [::1] and localhost)",
        ))
    })
}

/// Why pgmcp will not fetch keys or discovery documents from `url`, or `None` when it may. The URL is parsed, so
/// the host compared is the one a client would connect to.
pub(super) fn endpoint_problem(url: &str) -> Option<&'static str> {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return Some("not a URL");
    };
    if parsed.host_str().is_none_or(str::is_empty)
        || !parsed.username().is_empty()
        || parsed.password().is_some()
    {
        return Some("the URL needs a host and no user info");
    }
    match parsed.scheme() {
        "https" => None,
        "http" if is_loopback_url(&parsed) => None,
        _ => Some("keys and discovery documents must not travel unprotected"),
    }
}

fn is_guid(value: &str) -> bool {
    let groups: Vec<&str> = value.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(group, len)| group.len() == len && group.chars().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    const CLIENT: &str = "11111111-2222-3333-4444-555555555555";

    fn entra() -> AuthSettings {
        AuthSettings {
            mode: AuthMode::Entra,
            entra_tenant_ids: vec![TENANT.into()],
            entra_client_id: Some(CLIENT.into()),
            entra_app_id_uri: Some(format!("api://{CLIENT}")),
            required_roles: vec!["MCP.Access".into()],
            ..AuthSettings::default()
        }
    }

    #[test]
    fn entra_refuses_to_accept_every_application_of_the_tenant() {
        let mut open = entra();
        open.required_roles.clear();
        open.required_scopes = vec!["user_impersonation".into()];
        assert_eq!(
            setting_of(open.validate().unwrap_err()),
            "auth.required_roles"
        );
        for restrict in [
            |s: &mut AuthSettings| s.required_roles = vec!["MCP.Access".into()],
            |s: &mut AuthSettings| s.allowed_client_apps = vec![CLIENT.into()],
            |s: &mut AuthSettings| s.allowed_principals = vec![CLIENT.into()],
        ] {
            let mut settings = open.clone();
            restrict(&mut settings);
            assert!(settings.validate().is_ok());
        }
    }

    fn setting_of(error: ConfigError) -> String {
        match error {
            ConfigError::Invalid { setting, .. } => setting,
            other => panic!("unexpected error {other:?}"),
        }
    }

    #[test]
    fn entra_needs_tenant_and_client_as_guids() {
        assert!(entra().validate().is_ok());
        let mut settings = entra();
        settings.entra_tenant_ids.clear();
        assert_eq!(
            setting_of(settings.validate().unwrap_err()),
            "auth.entra_tenant_ids"
        );
        settings.entra_tenant_ids = vec!["contoso.onmicrosoft.com".into()];
        assert_eq!(
            setting_of(settings.validate().unwrap_err()),
            "auth.entra_tenant_ids"
        );
        let mut settings = entra();
        settings.entra_client_id = None;
        assert_eq!(
            setting_of(settings.validate().unwrap_err()),
            "auth.entra_client_id"
        );
        settings.entra_client_id = Some("my-app".into());
        assert_eq!(
            setting_of(settings.validate().unwrap_err()),
            "auth.entra_client_id"
        );
    }

    #[test]
    fn endpoints_must_be_https_unless_loopback() {
        let mut settings = entra();
        settings.entra_authority = Some("http://login.example.com".into());
        assert_eq!(
            setting_of(settings.validate().unwrap_err()),
            "auth.entra_authority"
        );
        for ok in [
            "http://127.0.0.1:8080",
            "http://[::1]:9",
            "http://localhost",
            "https://login.example.com",
        ] {
            settings.entra_authority = Some(ok.into());
            assert!(settings.validate().is_ok(), "{ok}");
        }
        settings.entra_authority = Some("https://user@evil.example".into());
        assert!(settings.validate().is_err());
    }

    #[test]
    fn loopback_is_judged_by_the_parsed_host() {
        for ok in [
            "https://login.microsoftonline.com/common/discovery/v2.0/keys",
            "http://127.0.0.1:8080/jwks",
            "http://127.8.9.10/jwks",
            "http://[::1]:9/jwks",
            "http://localhost/jwks",
            "http://LOCALHOST:80/jwks",
        ] {
            assert_eq!(endpoint_problem(ok), None, "{ok}");
        }
        for attack in [
            "http://127.evil.example/jwks",
            "http://127.0.0.1.evil.example/jwks",
            "http://localhost.evil.example/jwks",
            "http://localhost:@evil.example/jwks",
            "http://localhost:80@evil.example/jwks",
            "http://127.0.0.1@evil.example/jwks",
            "http://[::1].evil.example/jwks",
            "http://evil.example/localhost/jwks",
            "https://user@login.example.com/jwks",
            "ftp://127.0.0.1/jwks",
            "not a url",
        ] {
            assert!(endpoint_problem(attack).is_some(), "{attack}");
        }
    }

    #[test]
    fn at_jwt_cannot_be_required_of_entra() {
        let mut settings = entra();
        settings.require_at_jwt = true;
        assert_eq!(
            setting_of(settings.validate().unwrap_err()),
            "auth.require_at_jwt"
        );
    }

    #[test]
    fn oidc_needs_issuer_and_audience() {
        let mut settings = AuthSettings {
            mode: AuthMode::Oidc,
            ..AuthSettings::default()
        };
        assert_eq!(
            setting_of(settings.validate().unwrap_err()),
            "auth.oidc_issuer"
        );
        settings.oidc_issuer = Some("https://issuer.example".into());
        assert_eq!(
            setting_of(settings.validate().unwrap_err()),
            "auth.audiences"
        );
        settings.audiences = vec!["api://pgmcp".into()];
        assert!(settings.validate().is_ok());
        settings.required_roles = vec![" MCP.Access".into()];
        assert_eq!(
            setting_of(settings.validate().unwrap_err()),
            "auth.required_roles"
        );
    }

    #[test]
    fn audiences_in_entra_mode_include_client_id_and_app_id_uri() {
        let mut settings = entra();
        settings.audiences = vec!["https://pgmcp.example/mcp".into()];
        assert_eq!(
            settings.accepted_audiences(),
            vec![
                CLIENT.to_string(),
                format!("api://{CLIENT}"),
                "https://pgmcp.example/mcp".into()
            ]
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let parsed: Result<AuthSettings, _> =
            toml::from_str("mode = \"entra\"\nrequired_role = [\"x\"]\n");
        assert!(parsed.is_err());
        let parsed: AuthSettings = toml::from_str("mode = \"oidc\"\nleeway_seconds = 5\n").unwrap();
        assert_eq!(parsed.mode, AuthMode::Oidc);
        assert_eq!(parsed.leeway(), 5);
    }
}
