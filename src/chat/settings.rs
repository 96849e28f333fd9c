//! Which model to talk to and how much one question may spend: flags over environment over `[chat]`, checked at
//! start-up so a bad setting fails before any question is asked, naming the setting and the fix.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::cli::LlmArgs;
use crate::config::chat::ChatFile;
use crate::config::{ConfigError, Secret};
use crate::identity::TokenCredential;

pub const DEFAULT_OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
pub const DEFAULT_AZURE_API_VERSION: &str = "2024-10-21";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    OpenAi,
    AzureOpenAi,
}

/// How requests prove who sends them. The key stays a [`Secret`], which prints as `****`.
#[derive(Clone)]
pub enum ModelAuth {
    /// A local server (Ollama, LM Studio, vLLM on loopback) that needs no key.
    None,
    Bearer(Secret),
    /// Azure OpenAI's `api-key` header.
    ApiKey(Secret),
    /// Azure OpenAI without a key: an Entra token from pgmcp's credential chain.
    Entra(Arc<dyn TokenCredential>),
}

impl std::fmt::Debug for ModelAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ModelAuth::None => "none",
            ModelAuth::Bearer(_) => "bearer ****",
            ModelAuth::ApiKey(_) => "api-key ****",
            ModelAuth::Entra(_) => "entra",
        })
    }
}

#[derive(Debug, Clone)]
pub struct ModelSettings {
    pub provider: Provider,
    pub base_url: String,
    pub model: Option<String>,
    pub api_key_env: String,
    pub azure_endpoint: Option<String>,
    pub azure_deployment: Option<String>,
    pub azure_api_version: String,
    pub auth: ModelAuth,
    pub timeout: Duration,
    pub max_retries: u32,
    pub stream: bool,
}

impl ModelSettings {
    pub fn completions_url(&self) -> String {
        match self.provider {
            Provider::OpenAi => format!("{}/chat/completions", self.base_url.trim_end_matches('/')),
            Provider::AzureOpenAi => format!(
                "{}/openai/deployments/{}/chat/completions?api-version={}",
                self.azure_endpoint
                    .as_deref()
                    .unwrap_or_default()
                    .trim_end_matches('/'),
                self.azure_deployment.as_deref().unwrap_or_default(),
                self.azure_api_version
            ),
        }
    }

    pub fn display_model(&self) -> &str {
        match self.provider {
            Provider::OpenAi => self.model.as_deref().unwrap_or_default(),
            Provider::AzureOpenAi => self.azure_deployment.as_deref().unwrap_or_default(),
        }
    }
}

/// What one question may spend, and how much of a tool's result the model reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budgets {
    pub max_tool_calls: u32,
    pub max_tokens_per_turn: u64,
    pub result_rows: usize,
    pub result_bytes: usize,
}

impl Default for Budgets {
    fn default() -> Budgets {
        Budgets {
            max_tool_calls: 10,
            max_tokens_per_turn: 100_000,
            result_rows: 50,
            result_bytes: 16_000,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ChatSettings {
    pub model: ModelSettings,
    pub budgets: Budgets,
    /// Questions per minute per caller on `POST /chat`.
    pub rate_limit_per_minute: u32,
}

/// Whether a model is configured: `serve --http` answers /chat only then. `AZURE_OPENAI_ENDPOINT` alone (often set
/// for other tools) does not count; with a deployment, or any pgmcp-specific setting, it does.
pub fn configured(args: &LlmArgs, file: &ChatFile) -> bool {
    let azure = (args.azure_openai_endpoint.is_some() || file.azure_openai_endpoint.is_some())
        && (args.azure_openai_deployment.is_some() || file.azure_openai_deployment.is_some());
    azure
        || args.llm_provider.is_some()
        || args.llm_model.is_some()
        || args.llm_base_url.is_some()
        || file.provider.is_some()
        || file.model.is_some()
        || file.base_url.is_some()
}

/// Resolves the settings. `credential` builds the Entra credential for Azure OpenAI without a key (injected so
/// tests need no Azure).
pub fn resolve(
    args: &LlmArgs,
    file: &ChatFile,
    env: &HashMap<String, String>,
    credential: &dyn Fn() -> Result<Arc<dyn TokenCredential>, String>,
) -> Result<ChatSettings, ConfigError> {
    let azure_endpoint = pick(&args.azure_openai_endpoint, &file.azure_openai_endpoint);
    let provider = match pick(&args.llm_provider, &file.provider).as_deref() {
        None if azure_endpoint.is_some() => Provider::AzureOpenAi,
        None => Provider::OpenAi,
        Some("openai") => Provider::OpenAi,
        Some("azure_openai" | "azure-openai" | "azure") => Provider::AzureOpenAi,
        Some(other) => {
            return Err(ConfigError::invalid(
                "--llm-provider / chat.provider",
                format!("{other:?}"),
                "not a provider",
                "use openai (OpenAI, vLLM, Ollama, LM Studio) or azure_openai",
            ));
        }
    };
    let api_key_env = pick(&args.llm_api_key_env, &file.api_key_env).unwrap_or_else(|| {
        match provider {
            Provider::OpenAi => "OPENAI_API_KEY",
            Provider::AzureOpenAi => "AZURE_OPENAI_API_KEY",
        }
        .to_string()
    });
    let key = env
        .get(&api_key_env)
        .filter(|k| !k.trim().is_empty())
        .map(|k| Secret::new(k.trim()));
    let base_url =
        pick(&args.llm_base_url, &file.base_url).unwrap_or_else(|| DEFAULT_OPENAI_BASE_URL.into());
    let model = pick(&args.llm_model, &file.model);
    let azure_deployment = pick(&args.azure_openai_deployment, &file.azure_openai_deployment);
    let azure_api_version = pick(
        &args.azure_openai_api_version,
        &file.azure_openai_api_version,
    )
    .unwrap_or_else(|| DEFAULT_AZURE_API_VERSION.into());
    let auth = match provider {
        Provider::OpenAi => {
            let url = checked_url(
                &base_url,
                "--llm-base-url / chat.base_url",
                "e.g. https://api.openai.com/v1 or http://127.0.0.1:11434/v1",
            )?;
            if model.is_none() {
                return Err(ConfigError::invalid(
                    "--llm-model / chat.model",
                    "(not set)",
                    "pgmcp chat needs to know which model to ask",
                    "name one with tool calling, e.g. --llm-model gpt-4o (OpenAI) or llama3.1 (Ollama)",
                ));
            }
            match key {
                Some(key) => ModelAuth::Bearer(key),
                None if crate::identity::http::is_loopback_url(&url) => ModelAuth::None,
                None => {
                    return Err(ConfigError::invalid(
                        "--llm-api-key-env / chat.api_key_env",
                        format!("{api_key_env:?}"),
                        format!(
                            "the environment variable {api_key_env} is not set, and {base_url} is not a local server"
                        ),
                        format!(
                            "export {api_key_env}=<your key>, or name the variable that holds it with --llm-api-key-env"
                        ),
                    ));
                }
            }
        }
        Provider::AzureOpenAi => {
            let Some(endpoint) = &azure_endpoint else {
                return Err(ConfigError::invalid(
                    "--azure-openai-endpoint / chat.azure_openai_endpoint",
                    "(not set)",
                    "Azure OpenAI needs the resource's endpoint",
                    "e.g. --azure-openai-endpoint https://myresource.openai.azure.com",
                ));
            };
            checked_url(
                endpoint,
                "--azure-openai-endpoint / chat.azure_openai_endpoint",
                "e.g. https://myresource.openai.azure.com",
            )?;
            if azure_deployment.as_deref().is_none_or(str::is_empty) {
                return Err(ConfigError::invalid(
                    "--azure-openai-deployment / chat.azure_openai_deployment",
                    "(not set)",
                    "Azure OpenAI names the model by its deployment",
                    "pass the deployment name shown in Azure AI Foundry, e.g. --azure-openai-deployment gpt-4o",
                ));
            }
            match key {
                Some(key) => ModelAuth::ApiKey(key),
                None => ModelAuth::Entra(credential().map_err(|problem| {
                    ConfigError::invalid(
                        "--llm-api-key-env / chat.api_key_env",
                        format!("{api_key_env:?}"),
                        format!("no key in {api_key_env}, and no Entra credential for a passwordless sign-in: {problem}"),
                        format!("export {api_key_env}=<key>, or sign in with `az login` / run with a managed or workload identity"),
                    )
                })?),
            }
        }
    };
    let defaults = Budgets::default();
    let timeout = match &file.timeout {
        None => Duration::from_secs(120),
        Some(value) => positive_duration(value.to_duration("chat.timeout")?, "chat.timeout")?,
    };
    Ok(ChatSettings {
        model: ModelSettings {
            provider,
            base_url,
            model,
            api_key_env,
            azure_endpoint,
            azure_deployment,
            azure_api_version,
            auth,
            timeout,
            max_retries: count(file.max_retries, "chat.max_retries", 3, 0, 10)? as u32,
            stream: file.stream.unwrap_or(true),
        },
        budgets: Budgets {
            max_tool_calls: count(
                file.max_tool_calls,
                "chat.max_tool_calls",
                defaults.max_tool_calls.into(),
                1,
                100,
            )? as u32,
            max_tokens_per_turn: count(
                file.max_tokens_per_turn,
                "chat.max_tokens_per_turn",
                defaults.max_tokens_per_turn as i64,
                100,
                10_000_000,
            )? as u64,
            result_rows: count(
                file.result_rows,
                "chat.result_rows",
                defaults.result_rows as i64,
                1,
                10_000,
            )? as usize,
            result_bytes: count(
                file.result_bytes,
                "chat.result_bytes",
                defaults.result_bytes as i64,
                256,
                10_000_000,
            )? as usize,
        },
        rate_limit_per_minute: count(
            file.rate_limit_per_minute,
            "chat.rate_limit_per_minute",
            20,
            1,
            10_000,
        )? as u32,
    })
}

fn pick(flag: &Option<String>, file: &Option<String>) -> Option<String> {
    flag.clone()
        .or_else(|| file.clone())
        .filter(|v| !v.trim().is_empty())
}

fn checked_url(text: &str, setting: &str, example: &str) -> Result<reqwest::Url, ConfigError> {
    let url = reqwest::Url::parse(text)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
    url.ok_or_else(|| {
        ConfigError::invalid(setting, format!("{text:?}"), "not an http(s) URL", example)
    })
}

fn count(
    value: Option<i64>,
    setting: &str,
    default: i64,
    min: i64,
    max: i64,
) -> Result<i64, ConfigError> {
    match value {
        None => Ok(default),
        Some(n) if (min..=max).contains(&n) => Ok(n),
        Some(n) => Err(ConfigError::invalid(
            setting,
            n.to_string(),
            format!("must be between {min} and {max}"),
            format!("the default is {default}"),
        )),
    }
}

fn positive_duration(value: Duration, setting: &str) -> Result<Duration, ConfigError> {
    if value.is_zero() {
        return Err(ConfigError::invalid(
            setting,
            "0",
            "must be longer than zero",
            "e.g. \"120s\"",
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_credential() -> Result<Arc<dyn TokenCredential>, String> {
        Err("no identity here".into())
    }

    #[test]
    fn a_remote_openai_endpoint_without_its_key_names_the_variable() {
        let args = LlmArgs {
            llm_model: Some("gpt-4o".into()),
            ..LlmArgs::default()
        };
        let error = resolve(&args, &ChatFile::default(), &HashMap::new(), &no_credential)
            .unwrap_err()
            .to_string();
        assert!(error.contains("OPENAI_API_KEY is not set"), "{error}");
        let env = HashMap::from([("OPENAI_API_KEY".to_string(), "sk-secret-value".to_string())]);
        let settings = resolve(&args, &ChatFile::default(), &env, &no_credential).unwrap();
        assert_eq!(
            settings.model.completions_url(),
            "https://api.openai.com/v1/chat/completions"
        );
        assert!(!format!("{settings:?}").contains("sk-secret-value"));
    }

    #[test]
    fn azure_needs_a_deployment_and_builds_the_deployment_url() {
        let file = ChatFile {
            azure_openai_endpoint: Some("https://res.openai.azure.com/".into()),
            ..ChatFile::default()
        };
        let error = resolve(&LlmArgs::default(), &file, &HashMap::new(), &no_credential)
            .unwrap_err()
            .to_string();
        assert!(error.contains("azure_openai_deployment"), "{error}");
        let file = ChatFile {
            azure_openai_deployment: Some("gpt4o".into()),
            ..file
        };
        let error = resolve(&LlmArgs::default(), &file, &HashMap::new(), &no_credential)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("AZURE_OPENAI_API_KEY") && error.contains("no identity here"),
            "{error}"
        );
        let env = HashMap::from([("AZURE_OPENAI_API_KEY".to_string(), "k".to_string())]);
        let settings = resolve(&LlmArgs::default(), &file, &env, &no_credential).unwrap();
        assert_eq!(
            settings.model.completions_url(),
            "https://res.openai.azure.com/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21"
        );
    }

    #[test]
    fn budgets_out_of_range_name_the_setting() {
        let args = LlmArgs {
            llm_model: Some("m".into()),
            llm_base_url: Some("http://127.0.0.1:11434/v1".into()),
            ..LlmArgs::default()
        };
        let file = ChatFile {
            max_tool_calls: Some(0),
            ..ChatFile::default()
        };
        let error = resolve(&args, &file, &HashMap::new(), &no_credential)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("chat.max_tool_calls") && error.contains("between 1 and 100"),
            "{error}"
        );
    }
}
