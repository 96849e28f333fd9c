//! The identity keys of a profile (`db_auth`, `entra_credential`, …) read from the file and checked once the
//! profile is resolved.

use super::error::{ConfigError, quoted};
use super::file::ProfileFile;
use super::profile::Profile;
use crate::identity::hosts::check_token_hosts;
use crate::identity::{
    DbAuth, DbIdentity, EntraCredentialKind, IdentitySettings, ManagedIdentityId,
};

pub(crate) fn identity_from_file(
    raw: &ProfileFile,
    prefix: &str,
) -> Result<IdentitySettings, ConfigError> {
    let keyword = |key: &str, value: &Option<String>| -> Option<(String, String)> {
        value
            .as_ref()
            .map(|v| (format!("{prefix}{key}"), v.clone()))
    };
    let invalid = |setting: String, value: &str, problem: String| {
        ConfigError::invalid(setting, quoted(value), problem, "")
    };
    let mut settings = IdentitySettings::default();
    if let Some((setting, value)) = keyword("db_auth", &raw.db_auth) {
        settings.db_auth = DbAuth::parse(&value).map_err(|p| invalid(setting, &value, p))?;
    }
    if let Some((setting, value)) = keyword("entra_credential", &raw.entra_credential) {
        settings.entra_credential =
            EntraCredentialKind::parse(&value).map_err(|p| invalid(setting, &value, p))?;
    }
    if let Some((setting, value)) = keyword("db_identity", &raw.db_identity) {
        settings.db_identity =
            DbIdentity::parse(&value).map_err(|p| invalid(setting, &value, p))?;
    }
    let ids = [
        raw.managed_identity_client_id
            .clone()
            .map(ManagedIdentityId::ClientId),
        raw.managed_identity_object_id
            .clone()
            .map(ManagedIdentityId::ObjectId),
        raw.managed_identity_resource_id
            .clone()
            .map(ManagedIdentityId::ResourceId),
    ];
    let mut ids = ids.into_iter().flatten();
    settings.managed_identity = ids.next();
    if ids.next().is_some() {
        return Err(ConfigError::invalid(
            format!("{prefix}managed_identity_client_id"),
            "(several)",
            "more than one of managed_identity_client_id, managed_identity_object_id, managed_identity_resource_id is set",
            "name the user-assigned identity one way only",
        ));
    }
    settings.db_user = raw.db_user.clone();
    settings.token_host_allow = raw.token_host_allow.clone().unwrap_or_default();
    settings.key_vault_url = raw.key_vault_url.clone();
    settings.key_vault_secret = raw.key_vault_secret.clone();
    Ok(settings)
}

/// Puts `db_user` in place and checks that the identity settings fit together. `explicit_user` says whether
/// the connection named a user itself (before libpq's OS-user default was filled in).
pub(crate) fn finish_identity(
    profile: &mut Profile,
    explicit_user: bool,
) -> Result<(), ConfigError> {
    let prefix = format!("profiles.{}.", profile.name);
    let identity = profile.identity.clone();
    if let Some(user) = identity.db_user.as_deref() {
        if user.trim().is_empty() {
            return Err(ConfigError::invalid(
                "db_user",
                "\"\"",
                "is empty",
                "set the PostgreSQL role name",
            ));
        }
        profile.conn.user = Some(user.to_string());
    }
    match identity.db_auth {
        DbAuth::Password => {}
        DbAuth::Entra => {
            if identity.db_user.is_none()
                && !explicit_user
                && identity.db_identity == DbIdentity::Service
            {
                return Err(ConfigError::invalid(
                    "db_user",
                    "(not set)",
                    "Entra logins need the PostgreSQL role of the identity",
                    "set --db-user (or db_user in the profile, or the URL's user) to the name given to \
                     pgaadauth_create_principal, e.g. the managed identity's display name",
                ));
            }
            check_token_hosts(&profile.conn, &identity.token_host_allow).map_err(|problem| {
                ConfigError::invalid(
                    format!("{prefix}host"),
                    quoted(&profile.conn.hosts.join(",")),
                    problem,
                    "",
                )
            })?;
        }
        DbAuth::KeyVault => {
            for (key, value) in [
                ("key_vault_url", &identity.key_vault_url),
                ("key_vault_secret", &identity.key_vault_secret),
            ] {
                if value.as_deref().is_none_or(|v| v.trim().is_empty()) {
                    return Err(ConfigError::invalid(
                        key,
                        "(not set)",
                        "db_auth = key_vault reads the password from a Key Vault secret",
                        format!("set --{} (or {key} in the profile)", key.replace('_', "-")),
                    ));
                }
            }
            if let Some(url) = &identity.key_vault_url {
                crate::identity::http::checked_endpoint(url, "key_vault_url").map_err(|error| {
                    ConfigError::invalid(
                        "key_vault_url",
                        quoted(url),
                        error.message,
                        "use https://NAME.vault.azure.net",
                    )
                })?;
            }
        }
    }
    if identity.db_identity == DbIdentity::OnBehalfOf && identity.db_auth != DbAuth::Entra {
        return Err(ConfigError::invalid(
            "db_identity",
            "\"on_behalf_of\"",
            "on-behalf-of logins use Entra tokens",
            "set db_auth = \"entra\" as well",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::file::ConfigFile;

    #[test]
    fn profile_keys_are_read_and_checked() {
        let file = ConfigFile::parse(
            r#"
            [profiles.azure]
            host = "srv.postgres.database.azure.com"
            db_auth = "entra"
            entra_credential = "managed_identity"
            managed_identity_client_id = "11111111-2222-3333-4444-555555555555"
            db_user = "aca-mcp-server"
            token_host_allow = [".corp.example"]
            db_identity = "on_behalf_of"
            "#,
        )
        .unwrap();
        let (_, raw) = file.profiles_in_order().remove(0);
        let settings = identity_from_file(&raw, "profiles.azure.").unwrap();
        assert_eq!(settings.db_auth, DbAuth::Entra);
        assert_eq!(
            settings.entra_credential,
            EntraCredentialKind::ManagedIdentity
        );
        assert_eq!(
            settings.managed_identity,
            Some(ManagedIdentityId::ClientId(
                "11111111-2222-3333-4444-555555555555".into()
            ))
        );
        assert_eq!(settings.db_user.as_deref(), Some("aca-mcp-server"));
        assert_eq!(settings.db_identity, DbIdentity::OnBehalfOf);

        let bad = ConfigFile::parse("[profiles.x]\ndb_auth = \"kerberos\"\n").unwrap();
        let (_, raw) = bad.profiles_in_order().remove(0);
        let error = identity_from_file(&raw, "profiles.x.")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("profiles.x.db_auth") && error.contains("password, key_vault, entra"),
            "{error}"
        );
    }

    #[test]
    fn entra_profiles_need_a_user_and_a_trusted_host() {
        let mut profile = Profile::new(
            "p",
            crate::config::ConnSettings::parse("host=srv.postgres.database.azure.com").unwrap(),
        );
        profile.identity.db_auth = DbAuth::Entra;
        let error = finish_identity(&mut profile.clone(), false)
            .unwrap_err()
            .to_string();
        assert!(error.contains("db_user"), "{error}");
        profile.identity.db_user = Some("mi".into());
        finish_identity(&mut profile, false).unwrap();
        assert_eq!(profile.conn.user.as_deref(), Some("mi"));

        let mut vault = Profile::new("v", crate::config::ConnSettings::default());
        vault.identity.db_auth = DbAuth::KeyVault;
        vault.identity.key_vault_url = Some("http://vault.example".into());
        vault.identity.key_vault_secret = Some("pw".into());
        let error = finish_identity(&mut vault, true).unwrap_err().to_string();
        assert!(error.contains("https"), "{error}");
    }
}
