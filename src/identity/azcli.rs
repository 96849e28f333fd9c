//! The Azure CLI's signed-in account, for developers on their own machine:
//! `az account get-access-token --resource … --output json`.

use std::time::Duration;

use futures_util::future::BoxFuture;

use super::credential::{TokenCredential, scope_to_resource};
use super::http::parse_token;
use super::token::{AccessToken, IdentityError};

pub struct AzureCliCredential {
    tenant: Option<String>,
    timeout: Duration,
}

impl AzureCliCredential {
    pub fn new(tenant: Option<String>) -> AzureCliCredential {
        AzureCliCredential {
            tenant,
            timeout: Duration::from_secs(30),
        }
    }

    async fn fetch(&self, scope: &str) -> Result<AccessToken, IdentityError> {
        let resource = scope_to_resource(scope);
        let mut command = tokio::process::Command::new("az");
        command.args([
            "account",
            "get-access-token",
            "--resource",
            resource,
            "--output",
            "json",
        ]);
        if let Some(tenant) = &self.tenant {
            command.args(["--tenant", tenant]);
        }
        command
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let child = command.spawn().map_err(|error| {
            if error.kind() == std::io::ErrorKind::NotFound {
                IdentityError::config("the Azure CLI (`az`) is not installed or not on PATH")
            } else {
                IdentityError::config(format!("cannot run the Azure CLI: {error}"))
            }
        })?;
        let output = tokio::time::timeout(self.timeout, child.wait_with_output())
            .await
            .map_err(|_| IdentityError::unavailable("the Azure CLI did not answer within 30 s"))?
            .map_err(|error| {
                IdentityError::unavailable(format!("the Azure CLI failed: {error}"))
            })?;
        if !output.status.success() {
            // az's stderr explains (not logged in, no subscription) and holds no token.
            let stderr = String::from_utf8_lossy(&output.stderr);
            let first = stderr
                .lines()
                .map(str::trim)
                .find(|line| !line.is_empty())
                .unwrap_or("no message");
            let hint = if stderr.contains("az login") {
                ""
            } else {
                " — run `az login`"
            };
            return Err(IdentityError::rejected(format!(
                "`az account get-access-token` failed ({}): {first}{hint}",
                output.status
            )));
        }
        parse_token(&output.stdout, "the Azure CLI")
    }
}

impl TokenCredential for AzureCliCredential {
    fn describe(&self) -> String {
        "Azure CLI (az account get-access-token)".to_string()
    }

    fn get_token<'a>(
        &'a self,
        scope: &'a str,
    ) -> BoxFuture<'a, Result<AccessToken, IdentityError>> {
        Box::pin(self.fetch(scope))
    }
}
