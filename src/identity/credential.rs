//! The credential abstraction: something that returns a token for a scope.

use futures_util::future::BoxFuture;

use super::token::{AccessToken, IdentityError};

/// A source of Entra access tokens. Implementations do no caching of their own; [`super::cache::TokenCache`] does.
pub trait TokenCredential: Send + Sync {
    /// What this credential is, for `pgmcp check` and errors (e.g. "managed identity (App Service endpoint)").
    fn describe(&self) -> String;

    fn get_token<'a>(&'a self, scope: &'a str)
    -> BoxFuture<'a, Result<AccessToken, IdentityError>>;
}

/// `https://x/.default` → `https://x`: the managed-identity endpoints and the Azure CLI take a resource.
pub fn scope_to_resource(scope: &str) -> &str {
    scope.strip_suffix("/.default").unwrap_or(scope)
}
