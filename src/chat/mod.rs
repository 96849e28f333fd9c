//! Asking the database in plain language: a model (any OpenAI-compatible Chat Completions endpoint, or Azure
//! OpenAI) answers questions by calling pgmcp's own tools through pgmcp's MCP gate, so the guard, the policy, the
//! audit trail and the limits apply to every step. Two faces: `pgmcp chat` in the terminal ([`terminal`]) and
//! `POST /chat` behind the web client's Chat tab ([`web`]).

pub mod agent;
pub mod cap;
pub mod model;
pub mod settings;
pub mod terminal;
pub mod tools;
pub mod web;

use std::collections::HashMap;
use std::sync::Arc;

use crate::cli::LlmArgs;
use crate::config::chat::ChatFile;
use crate::identity::TokenCredential;

pub use settings::ChatSettings;

/// The chat settings from flags, the process environment and `[chat]`; Azure OpenAI without a key signs in with
/// pgmcp's Entra credential chain (`AZURE_*` variables, managed identity, workload identity, Azure CLI).
pub fn resolve_settings(args: &LlmArgs, file: &ChatFile) -> anyhow::Result<ChatSettings> {
    let env: HashMap<String, String> = std::env::vars().collect();
    let credential = || -> Result<Arc<dyn TokenCredential>, String> {
        let client = crate::identity::http::http_client().map_err(|e| e.message)?;
        let lookup = |name: &str| std::env::var(name).ok();
        crate::identity::chain::build_credential(
            &crate::identity::IdentitySettings::default(),
            &lookup,
            &client,
        )
        .map_err(|e| e.message)
    };
    Ok(settings::resolve(args, file, &env, &credential)?)
}
