//! The model client: one Chat Completions request, streamed or not, retried on 429 and 5xx (honouring
//! `Retry-After`), bounded by timeouts, and turned into errors that say what to fix. The key only ever travels in
//! a request header; no error or log line carries it.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use tokio_util::sync::CancellationToken;

use super::stream::{Assembler, SseReader};
use super::wire::{
    self, Chunk, Completion, Message, Request, StreamOptions, ToolCall, ToolSpec, Usage,
};
use crate::chat::settings::{ModelAuth, ModelSettings, Provider};
use crate::identity::cache::TokenCache;

/// The scope of Entra tokens for Azure OpenAI (Cognitive Services).
pub const AZURE_OPENAI_SCOPE: &str = "https://cognitiveservices.azure.com/.default";

/// The longest `Retry-After` pgmcp waits out; a server asking for more is reported instead.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(60);

/// What the model answered.
#[derive(Debug, Clone)]
pub struct Reply {
    pub text: String,
    pub tool_calls: Vec<ToolCall>,
    pub finish_reason: Option<String>,
    pub usage: Usage,
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("the model endpoint refused the credentials (401 Unauthorized): {0}")]
    Unauthorized(String),
    #[error("{0}")]
    NotFound(String),
    #[error(
        "the model `{model}` cannot call tools ({message}); pgmcp chat needs a model with tool (function) calling, \
         e.g. gpt-4o, llama3.1 or qwen2.5 — or, on vLLM, start it with --enable-auto-tool-choice --tool-call-parser"
    )]
    NoToolSupport { model: String, message: String },
    #[error("the model endpoint is still rate-limiting after {attempts} attempts (429): {message}")]
    RateLimited { attempts: u32, message: String },
    #[error("the model endpoint failed ({status}) after {attempts} attempts: {message}")]
    Server {
        status: u16,
        attempts: u32,
        message: String,
    },
    #[error("the model endpoint rejected the request ({status}): {message}")]
    Rejected { status: u16, message: String },
    #[error("no answer from the model endpoint within {0:?} (`chat.timeout` sets the limit)")]
    Timeout(Duration),
    #[error("cannot reach the model endpoint {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error("the model endpoint's answer is not Chat Completions: {0}")]
    BadAnswer(String),
    #[error("no Entra token for Azure OpenAI: {0}")]
    Credential(String),
    #[error("stopped")]
    Cancelled,
}

pub struct ModelClient {
    http: reqwest::Client,
    settings: ModelSettings,
    url: String,
    entra: Option<TokenCache>,
}

impl ModelClient {
    pub fn new(settings: ModelSettings) -> anyhow::Result<ModelClient> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("pgmcp/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let entra = match &settings.auth {
            ModelAuth::Entra(credential) => {
                Some(TokenCache::new(credential.clone(), AZURE_OPENAI_SCOPE))
            }
            _ => None,
        };
        Ok(ModelClient {
            url: settings.completions_url(),
            http,
            settings,
            entra,
        })
    }

    pub fn settings(&self) -> &ModelSettings {
        &self.settings
    }

    /// The model as people know it: the model name, or the Azure deployment.
    pub fn model_name(&self) -> &str {
        self.settings.display_model()
    }

    /// Sends the conversation; `on_text` sees the answer's text as it streams in.
    pub async fn complete(
        &self,
        messages: &[Message],
        tools: &[ToolSpec],
        on_text: &mut (dyn FnMut(&str) + Send),
        cancel: &CancellationToken,
    ) -> Result<Reply, ModelError> {
        let stream = self.settings.stream;
        let body = Request {
            model: match self.settings.provider {
                Provider::AzureOpenAi => None,
                Provider::OpenAi => Some(self.settings.model.as_deref().unwrap_or_default()),
            },
            messages,
            tools,
            tool_choice: (!tools.is_empty()).then_some("auto"),
            stream,
            stream_options: stream.then_some(StreamOptions {
                include_usage: true,
            }),
        };
        let body = serde_json::to_vec(&body).map_err(|e| ModelError::BadAnswer(e.to_string()))?;
        let response = tokio::select! {
            response = self.send_with_retries(body) => response?,
            _ = cancel.cancelled() => return Err(ModelError::Cancelled),
        };
        if stream {
            self.read_stream(response, on_text, cancel).await
        } else {
            let reply = self.read_whole(response).await?;
            if !reply.text.is_empty() {
                on_text(&reply.text);
            }
            Ok(reply)
        }
    }

    async fn send_with_retries(&self, body: Vec<u8>) -> Result<reqwest::Response, ModelError> {
        let attempts = self.settings.max_retries + 1;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let request = self.request(body.clone()).await?;
            let sent = tokio::time::timeout(self.settings.timeout, request.send()).await;
            let (status, response) = match sent {
                Err(_) => return Err(ModelError::Timeout(self.settings.timeout)),
                Ok(Err(error))
                    if attempt < attempts && (error.is_connect() || error.is_timeout()) =>
                {
                    tokio::time::sleep(backoff(attempt)).await;
                    continue;
                }
                Ok(Err(error)) => {
                    return Err(ModelError::Unreachable {
                        url: self.url.clone(),
                        message: without_url(&error),
                    });
                }
                Ok(Ok(response)) => (response.status(), response),
            };
            if status.is_success() {
                return Ok(response);
            }
            let retryable = status == StatusCode::TOO_MANY_REQUESTS
                || matches!(status.as_u16(), 500 | 502 | 503 | 504);
            let wait = retry_after(response.headers()).unwrap_or_else(|| backoff(attempt));
            if status == StatusCode::UNAUTHORIZED
                && let Some(cache) = &self.entra
            {
                // An expired or revoked token: the next request fetches a new one.
                cache.invalidate().await;
            }
            let message = wire::error_message(&response.text().await.unwrap_or_default());
            if retryable && attempt < attempts && wait <= MAX_RETRY_WAIT {
                tracing::info!(
                    status = status.as_u16(),
                    attempt,
                    wait_ms = wait.as_millis() as u64,
                    "model endpoint busy; retrying"
                );
                tokio::time::sleep(wait).await;
                continue;
            }
            return Err(self.classify(status, attempt, message));
        }
    }

    async fn request(&self, body: Vec<u8>) -> Result<reqwest::RequestBuilder, ModelError> {
        let request = self
            .http
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        Ok(match &self.settings.auth {
            ModelAuth::None => request,
            ModelAuth::Bearer(key) => request.bearer_auth(key.expose()),
            ModelAuth::ApiKey(key) => request.header("api-key", key.expose()),
            ModelAuth::Entra(_) => {
                let cache = self
                    .entra
                    .as_ref()
                    .expect("built with the Entra credential");
                let token = cache
                    .token()
                    .await
                    .map_err(|error| ModelError::Credential(error.message))?;
                request.bearer_auth(token.token.expose())
            }
        })
    }

    fn classify(&self, status: StatusCode, attempts: u32, message: String) -> ModelError {
        let s = &self.settings;
        match status.as_u16() {
            401 | 403 => ModelError::Unauthorized(format!(
                "{message} — {}",
                match (&s.auth, s.provider) {
                    (ModelAuth::Entra(_), _) => "the Entra identity needs the `Cognitive Services OpenAI User` role on the Azure OpenAI resource".to_string(),
                    (ModelAuth::None, _) => format!("no key was sent: set the environment variable {} (or --llm-api-key-env NAME)", s.api_key_env),
                    _ => format!("check the key in the environment variable {}", s.api_key_env),
                }
            )),
            404 => ModelError::NotFound(match s.provider {
                Provider::AzureOpenAi => format!(
                    "Azure OpenAI has no deployment `{}` at {} (404: {message}) — check --azure-openai-deployment and \
                     --azure-openai-endpoint, and that the api-version {} exists",
                    s.azure_deployment.as_deref().unwrap_or_default(),
                    s.azure_endpoint.as_deref().unwrap_or_default(),
                    s.azure_api_version
                ),
                Provider::OpenAi => format!(
                    "the model endpoint has no {} (404: {message}) — check --llm-base-url (it ends before \
                     /chat/completions, e.g. https://api.openai.com/v1) and --llm-model",
                    self.url
                ),
            }),
            429 => ModelError::RateLimited { attempts, message },
            400 | 422 if mentions_tools(&message) => ModelError::NoToolSupport {
                model: s.display_model().to_string(),
                message,
            },
            code @ 500..=599 => ModelError::Server {
                status: code,
                attempts,
                message,
            },
            code => ModelError::Rejected {
                status: code,
                message,
            },
        }
    }

    async fn read_whole(&self, response: reqwest::Response) -> Result<Reply, ModelError> {
        let body = tokio::time::timeout(self.settings.timeout, response.bytes())
            .await
            .map_err(|_| ModelError::Timeout(self.settings.timeout))?
            .map_err(|e| ModelError::BadAnswer(without_url(&e)))?;
        let completion: Completion =
            serde_json::from_slice(&body).map_err(|e| ModelError::BadAnswer(format!("{e}")))?;
        let Some(choice) = completion.choices.into_iter().next() else {
            return Err(ModelError::BadAnswer("no choices in the answer".into()));
        };
        Ok(Reply {
            text: choice.message.content.unwrap_or_default(),
            tool_calls: choice.message.tool_calls,
            finish_reason: choice.finish_reason,
            usage: completion.usage.unwrap_or_default(),
        })
    }

    async fn read_stream(
        &self,
        mut response: reqwest::Response,
        on_text: &mut (dyn FnMut(&str) + Send),
        cancel: &CancellationToken,
    ) -> Result<Reply, ModelError> {
        let mut reader = SseReader::default();
        let mut answer = Assembler::default();
        let mut done = false;
        while !done {
            // The limit is on silence, not on the whole answer: a long answer that keeps streaming is fine.
            let read = tokio::select! {
                read = tokio::time::timeout(self.settings.timeout, response.chunk()) => read,
                _ = cancel.cancelled() => return Err(ModelError::Cancelled),
            };
            let bytes = match read {
                Err(_) => return Err(ModelError::Timeout(self.settings.timeout)),
                Ok(Err(error)) => {
                    return Err(ModelError::BadAnswer(format!(
                        "the stream broke: {}",
                        without_url(&error)
                    )));
                }
                Ok(Ok(None)) => {
                    done = true;
                    reader.finish().into_iter().collect()
                }
                Ok(Ok(Some(bytes))) => reader.feed(&bytes),
            };
            for event in bytes {
                if event.trim() == "[DONE]" {
                    done = true;
                    break;
                }
                let chunk: Chunk = serde_json::from_str(&event).map_err(|e| {
                    let message = wire::error_message(&event);
                    ModelError::BadAnswer(format!("{e}: {message}"))
                })?;
                if let Some(text) = answer.add(chunk) {
                    on_text(&text);
                }
            }
        }
        Ok(Reply {
            tool_calls: answer.tool_calls(),
            text: std::mem::take(&mut answer.text),
            finish_reason: answer.finish_reason.take(),
            usage: answer.usage.unwrap_or_default(),
        })
    }
}

/// How the servers say a model has no tool calling: Ollama "does not support tools", vLLM "tool choice requires
/// --enable-auto-tool-choice", OpenAI-compatible proxies "tools is not supported".
fn mentions_tools(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    lower.contains("tool")
        && (lower.contains("support") || lower.contains("requires") || lower.contains("enable"))
}

/// 0.5 s, 1 s, 2 s, … up to 8 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(500u64 << attempt.saturating_sub(1).min(4)).min(Duration::from_secs(8))
}

/// `retry-after-ms` (OpenAI, Azure) or `Retry-After` in seconds.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let number = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
    };
    number("retry-after-ms")
        .map(|ms| Duration::from_secs_f64(ms / 1000.0))
        .or_else(|| number("retry-after").map(Duration::from_secs_f64))
}

/// reqwest's errors repeat the URL; the URL is already said once, and the message stays short.
fn without_url(error: &reqwest::Error) -> String {
    let mut source: Option<&dyn std::error::Error> = Some(error);
    let mut message = String::new();
    while let Some(current) = source {
        let text = current.to_string();
        if !message.contains(&text) {
            if !message.is_empty() {
                message.push_str(": ");
            }
            message.push_str(&text);
        }
        source = current.source();
    }
    message
}

pub type SharedModel = Arc<ModelClient>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_prefers_milliseconds_and_reads_seconds() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", "2".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        headers.insert("retry-after-ms", "150".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_millis(150)));
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(9), Duration::from_secs(8));
    }

    #[test]
    fn recognizes_the_servers_words_for_no_tool_support() {
        assert!(mentions_tools(
            "registry.ollama.ai/library/gemma:2b does not support tools"
        ));
        assert!(mentions_tools(
            "\"auto\" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set"
        ));
        assert!(!mentions_tools("messages must not be empty"));
    }
}
