//! What a profile says about database credentials: where the password comes from, which Entra credential
//! obtains tokens, and which hosts may receive them.

use std::fmt;

/// Where the database password comes from (`db_auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DbAuth {
    /// The connection's own password: URL, `PGPASSWORD`, `~/.pgpass` or `password_file`.
    #[default]
    Password,
    /// An Azure Key Vault secret, fetched with the Entra credential.
    KeyVault,
    /// A Microsoft Entra access token for Azure Database for PostgreSQL.
    Entra,
}

/// How pgmcp obtains Entra tokens (`entra_credential`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EntraCredentialKind {
    /// Environment (secret/certificate), workload identity, managed identity, Azure CLI — the first that works.
    #[default]
    Auto,
    ManagedIdentity,
    WorkloadIdentity,
    /// A service principal from `AZURE_CLIENT_SECRET`, or `AZURE_CLIENT_CERTIFICATE_PATH` when no secret is set.
    ClientSecret,
    AzureCli,
}

/// Whose identity logs in to PostgreSQL (`db_identity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DbIdentity {
    /// pgmcp's own credential.
    #[default]
    Service,
    /// The calling user's, through the OAuth 2.0 on-behalf-of exchange (needs HTTP authentication).
    OnBehalfOf,
}

/// A user-assigned managed identity; none means the system-assigned one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManagedIdentityId {
    ClientId(String),
    ObjectId(String),
    ResourceId(String),
}

/// The identity half of a profile. All of it is optional; the defaults keep password logins as they were.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentitySettings {
    pub db_auth: DbAuth,
    pub entra_credential: EntraCredentialKind,
    pub managed_identity: Option<ManagedIdentityId>,
    /// The PostgreSQL role for Entra logins (the principal's display name given to `pgaadauth_create_principal`).
    pub db_user: Option<String>,
    /// Hosts besides the Azure PostgreSQL suffixes that may receive an Entra token (exact names, or `.suffix`).
    pub token_host_allow: Vec<String>,
    pub key_vault_url: Option<String>,
    pub key_vault_secret: Option<String>,
    pub db_identity: DbIdentity,
}

/// Command-line / environment values for the identity settings; each set one replaces the profile's.
#[derive(Debug, Clone, Default)]
pub struct IdentityOverrides {
    pub db_auth: Option<DbAuth>,
    pub entra_credential: Option<EntraCredentialKind>,
    pub managed_identity_client_id: Option<String>,
    pub db_user: Option<String>,
    /// Added to the profile's list.
    pub token_host_allow: Vec<String>,
    pub key_vault_url: Option<String>,
    pub key_vault_secret: Option<String>,
    pub db_identity: Option<DbIdentity>,
}

impl IdentitySettings {
    pub fn apply(&mut self, overrides: &IdentityOverrides) {
        if let Some(auth) = overrides.db_auth {
            self.db_auth = auth;
        }
        if let Some(kind) = overrides.entra_credential {
            self.entra_credential = kind;
        }
        if let Some(id) = &overrides.managed_identity_client_id {
            self.managed_identity = Some(ManagedIdentityId::ClientId(id.clone()));
        }
        if let Some(user) = &overrides.db_user {
            self.db_user = Some(user.clone());
        }
        for host in &overrides.token_host_allow {
            if !self.token_host_allow.contains(host) {
                self.token_host_allow.push(host.clone());
            }
        }
        if let Some(url) = &overrides.key_vault_url {
            self.key_vault_url = Some(url.clone());
        }
        if let Some(name) = &overrides.key_vault_secret {
            self.key_vault_secret = Some(name.clone());
        }
        if let Some(identity) = overrides.db_identity {
            self.db_identity = identity;
        }
    }

    /// Whether logins need an Entra credential at all (tokens as passwords, or a vault read with one).
    pub fn uses_entra(&self) -> bool {
        self.db_auth != DbAuth::Password || self.db_identity == DbIdentity::OnBehalfOf
    }
}

macro_rules! keyword_enum {
    ($ty:ident, $setting:literal, [$(($variant:ident, $name:literal $(, $alias:literal)*)),+ $(,)?]) => {
        impl $ty {
            pub const NAMES: &'static [&'static str] = &[$($name),+];

            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $name),+ }
            }

            /// Parses the value as written in a flag, variable or the config file (`-` and `_` both accepted).
            pub fn parse(value: &str) -> Result<$ty, String> {
                let normalized = value.trim().to_ascii_lowercase().replace('-', "_");
                $(
                    if normalized == $name $(|| normalized == $alias)* {
                        return Ok($ty::$variant);
                    }
                )+
                Err(format!(
                    "`{value}` is not a valid {}: use one of {}",
                    $setting,
                    Self::NAMES.join(", ")
                ))
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

keyword_enum!(
    DbAuth,
    "db_auth",
    [
        (Password, "password"),
        (KeyVault, "key_vault", "keyvault"),
        (Entra, "entra")
    ]
);
keyword_enum!(
    EntraCredentialKind,
    "entra_credential",
    [
        (Auto, "auto"),
        (ManagedIdentity, "managed_identity"),
        (WorkloadIdentity, "workload_identity"),
        (
            ClientSecret,
            "client_secret",
            "client_certificate",
            "service_principal"
        ),
        (AzureCli, "azure_cli", "az"),
    ]
);
keyword_enum!(
    DbIdentity,
    "db_identity",
    [(Service, "service"), (OnBehalfOf, "on_behalf_of", "obo")]
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_parse_with_either_separator() {
        assert_eq!(DbAuth::parse("key-vault"), Ok(DbAuth::KeyVault));
        assert_eq!(
            EntraCredentialKind::parse("managed_identity"),
            Ok(EntraCredentialKind::ManagedIdentity)
        );
        assert_eq!(
            DbIdentity::parse("on-behalf-of"),
            Ok(DbIdentity::OnBehalfOf)
        );
        let error = DbAuth::parse("kerberos").unwrap_err();
        assert!(error.contains("password, key_vault, entra"), "{error}");
    }

    #[test]
    fn overrides_replace_and_extend() {
        let mut settings = IdentitySettings {
            token_host_allow: vec!["a.example".into()],
            ..IdentitySettings::default()
        };
        settings.apply(&IdentityOverrides {
            db_auth: Some(DbAuth::Entra),
            managed_identity_client_id: Some("cid".into()),
            token_host_allow: vec!["b.example".into(), "a.example".into()],
            ..IdentityOverrides::default()
        });
        assert_eq!(settings.db_auth, DbAuth::Entra);
        assert_eq!(
            settings.managed_identity,
            Some(ManagedIdentityId::ClientId("cid".into()))
        );
        assert_eq!(settings.token_host_allow, vec!["a.example", "b.example"]);
    }
}
