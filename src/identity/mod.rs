//! Passwordless database logins: Microsoft Entra tokens (managed identity, workload identity, service
//! principal, Azure CLI, the `auto` chain) and Azure Key Vault secrets, cached and refreshed ahead of expiry.
//!
//! The Azure wire protocols are spoken directly over reqwest; docs/identity.md says why the Azure SDK crates are
//! not used. Nothing here ever logs or returns a token or secret: they live in
//! [`crate::config::Secret`], which prints as `****`.

pub mod azcli;
pub mod cache;
pub mod certificate;
pub mod chain;
pub mod claims;
pub mod credential;
pub mod entra;
pub mod hosts;
pub mod http;
pub mod keyvault;
pub mod managed;
pub mod obo;
pub mod password;
pub mod settings;
pub mod token;

pub use claims::TokenClaims;
pub use credential::TokenCredential;
pub use password::DbCredentials;
pub use settings::{
    DbAuth, DbIdentity, EntraCredentialKind, IdentityOverrides, IdentitySettings, ManagedIdentityId,
};
pub use token::{AccessToken, IdentityError, IdentityErrorKind, POSTGRES_SCOPE};
