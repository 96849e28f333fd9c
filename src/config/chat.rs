//! The `[chat]` table: the model `pgmcp chat` and the web client's Chat tab talk to, and the turn budgets. Each
//! key mirrors a flag (`--llm-*`, `--azure-openai-*`); the flag wins. Validation lives in `crate::chat::settings`,
//! where the values are put to use.

use serde::Deserialize;

use super::file::DurationValue;

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatFile {
    /// `openai` (any OpenAI-compatible endpoint) or `azure_openai`.
    pub provider: Option<String>,
    pub base_url: Option<String>,
    pub model: Option<String>,
    /// The name of the environment variable holding the key (never the key itself).
    pub api_key_env: Option<String>,
    pub azure_openai_endpoint: Option<String>,
    pub azure_openai_deployment: Option<String>,
    pub azure_openai_api_version: Option<String>,
    /// Longest wait for the model's first byte, and between streamed bytes (default 120 s).
    pub timeout: Option<DurationValue>,
    /// Retries on 429 and 5xx (default 3).
    pub max_retries: Option<i64>,
    /// Stream answers (default true).
    pub stream: Option<bool>,
    /// Tool calls one question may make (default 10).
    pub max_tool_calls: Option<i64>,
    /// Tokens (prompt + completion, summed over the turn's requests) one question may use (default 100000).
    pub max_tokens_per_turn: Option<i64>,
    /// Rows of a tool result passed to the model (default 50).
    pub result_rows: Option<i64>,
    /// Bytes of a tool result passed to the model (default 16000).
    pub result_bytes: Option<i64>,
    /// Questions per minute one caller may ask through `POST /chat` (default 20).
    pub rate_limit_per_minute: Option<i64>,
}
