//! The chat's model client against a loopback stand-in speaking the Chat Completions wire format: URL shapes and
//! headers for OpenAI-compatible endpoints and Azure OpenAI, streaming and whole answers, retries that honour
//! `Retry-After`, and errors that say what to fix.

mod chat_support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use chat_support::{Reply, StandIn, call, step, text, tools};
use futures_util::future::BoxFuture;
use pgmcp::chat::model::client::{ModelClient, ModelError};
use pgmcp::chat::model::wire::{FunctionSpec, Message, ToolSpec};
use pgmcp::chat::settings::{self, ModelSettings};
use pgmcp::cli::LlmArgs;
use pgmcp::config::Secret;
use pgmcp::config::chat::ChatFile;
use pgmcp::identity::{AccessToken, IdentityError, TokenCredential};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const KEY: &str = "sk-test-key-never-printed";

fn openai(stand_in: &StandIn, file: ChatFile) -> ModelSettings {
    let args = LlmArgs {
        llm_base_url: Some(stand_in.base_url.clone()),
        llm_model: Some("stand-in-model".into()),
        ..LlmArgs::default()
    };
    let env = HashMap::from([("OPENAI_API_KEY".to_string(), KEY.to_string())]);
    settings::resolve(&args, &file, &env, &|| Err("none".into()))
        .unwrap()
        .model
}

fn a_tool() -> Vec<ToolSpec> {
    vec![ToolSpec {
        kind: "function",
        function: FunctionSpec {
            name: "list_tables".into(),
            description: "Lists tables".into(),
            parameters: json!({"type": "object", "properties": {}}),
        },
    }]
}

async fn ask(
    client: &ModelClient,
) -> (
    Result<pgmcp::chat::model::client::Reply, ModelError>,
    String,
) {
    let mut streamed = String::new();
    let reply = client
        .complete(
            &[Message::user("hello")],
            &a_tool(),
            &mut |t| streamed.push_str(t),
            &CancellationToken::new(),
        )
        .await;
    (reply, streamed)
}

#[tokio::test]
async fn streams_text_and_assembles_parallel_tool_calls_with_a_bearer_key() {
    let stand_in = StandIn::start(vec![
        step(|_| {
            tools(vec![
                call("call_1", "list_tables", json!({})),
                call(
                    "call_2",
                    "describe_table",
                    json!({"table": "reviews", "schema": "public"}),
                ),
            ])
        }),
        step(|_| text("There are 6 tables.")),
    ])
    .await;
    let client = ModelClient::new(openai(&stand_in, ChatFile::default())).unwrap();
    let (reply, streamed) = ask(&client).await;
    let reply = reply.unwrap();
    assert_eq!(reply.tool_calls.len(), 2);
    assert_eq!(reply.tool_calls[1].id, "call_2");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&reply.tool_calls[1].function.arguments).unwrap(),
        json!({"table": "reviews", "schema": "public"})
    );
    assert_eq!(reply.finish_reason.as_deref(), Some("tool_calls"));
    assert_eq!(reply.usage.total_tokens, 120);
    assert!(streamed.is_empty());

    let (reply, streamed) = ask(&client).await;
    assert_eq!(reply.unwrap().text, "There are 6 tables.");
    assert_eq!(streamed, "There are 6 tables.");

    let requests = stand_in.requests();
    assert_eq!(requests[0].path, "/v1/chat/completions");
    assert_eq!(
        requests[0].headers["authorization"],
        format!("Bearer {KEY}")
    );
    assert!(requests[0].headers.get("api-key").is_none());
    let body = &requests[0].body;
    assert_eq!(
        (body["model"].as_str(), body["stream"].as_bool()),
        (Some("stand-in-model"), Some(true))
    );
    assert_eq!(body["stream_options"]["include_usage"], true);
    assert_eq!(
        (
            body["tool_choice"].as_str(),
            body["tools"][0]["function"]["name"].as_str()
        ),
        (Some("auto"), Some("list_tables"))
    );
}

#[tokio::test]
async fn reads_whole_answers_when_streaming_is_off() {
    let stand_in = StandIn::start(vec![step(|_| Reply::Whole {
        text: String::new(),
        calls: vec![call("c9", "list_tables", json!({"schema": "public"}))],
    })])
    .await;
    let file = ChatFile {
        stream: Some(false),
        ..ChatFile::default()
    };
    let client = ModelClient::new(openai(&stand_in, file)).unwrap();
    let reply = ask(&client).await.0.unwrap();
    assert_eq!(
        (
            reply.tool_calls[0].id.as_str(),
            reply.tool_calls[0].function.arguments.as_str()
        ),
        ("c9", r#"{"schema":"public"}"#)
    );
    assert_eq!(stand_in.requests()[0].body["stream"], false);
    assert!(stand_in.requests()[0].body.get("stream_options").is_none());
}

#[tokio::test]
async fn waits_out_retry_after_on_429_and_retries_5xx() {
    let stand_in = StandIn::start(vec![
        step(|_| Reply::Status { code: 429, headers: vec![("retry-after", "1".into())], body: json!({"error": {"message": "Rate limit reached", "code": "rate_limit_exceeded"}}) }),
        step(|_| Reply::Status { code: 500, headers: vec![("retry-after-ms", "50".into())], body: json!({"error": {"message": "boom"}}) }),
        step(|_| text("ok")),
    ])
    .await;
    let client = ModelClient::new(openai(&stand_in, ChatFile::default())).unwrap();
    let started = Instant::now();
    let reply = ask(&client).await.0.unwrap();
    assert_eq!(reply.text, "ok");
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "Retry-After: 1 was not waited out: {:?}",
        started.elapsed()
    );
    assert_eq!(stand_in.requests().len(), 3);
}

#[tokio::test]
async fn gives_up_after_the_retries_and_says_why() {
    let busy = || {
        step(|_| Reply::Status {
            code: 503,
            headers: vec![("retry-after-ms", "10".into())],
            body: json!({"error": {"message": "overloaded"}}),
        })
    };
    let stand_in = StandIn::start(vec![busy(), busy(), busy()]).await;
    let file = ChatFile {
        max_retries: Some(2),
        ..ChatFile::default()
    };
    let client = ModelClient::new(openai(&stand_in, file)).unwrap();
    let error = ask(&client).await.0.unwrap_err();
    assert!(
        matches!(
            error,
            ModelError::Server {
                status: 503,
                attempts: 3,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("overloaded"));
    assert_eq!(stand_in.steps_left(), 0);
}

#[tokio::test]
async fn a_wrong_key_names_the_variable_and_never_the_key() {
    let stand_in = StandIn::start(vec![step(|_| Reply::Status { code: 401, headers: vec![], body: json!({"error": {"message": "Incorrect API key provided: sk-test-****nted.", "code": "invalid_api_key"}}) })]).await;
    let client = ModelClient::new(openai(&stand_in, ChatFile::default())).unwrap();
    let error = ask(&client).await.0.unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, ModelError::Unauthorized(_)));
    assert!(
        message.contains("401")
            && message.contains("OPENAI_API_KEY")
            && message.contains("Incorrect API key"),
        "{message}"
    );
    assert!(!message.contains(KEY));
    assert_eq!(stand_in.requests().len(), 1, "a 401 is not retried");
}

#[tokio::test]
async fn a_model_without_tool_calling_is_named() {
    let stand_in = StandIn::start(vec![step(|_| Reply::Status { code: 400, headers: vec![], body: json!({"error": {"message": "registry.ollama.ai/library/gemma:2b does not support tools"}}) })]).await;
    let client = ModelClient::new(openai(&stand_in, ChatFile::default())).unwrap();
    let error = ask(&client).await.0.unwrap_err();
    assert!(
        matches!(error, ModelError::NoToolSupport { .. }),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("`stand-in-model` cannot call tools"),
        "{error}"
    );
}

#[tokio::test]
async fn a_silent_endpoint_times_out() {
    let stand_in = StandIn::start(vec![step(|_| Reply::Stall {
        text: "Thinking".into(),
        for_: Duration::from_secs(5),
    })])
    .await;
    let file = ChatFile {
        timeout: Some(pgmcp::config::file::DurationValue::Text("300ms".into())),
        ..ChatFile::default()
    };
    let client = ModelClient::new(openai(&stand_in, file)).unwrap();
    let (reply, streamed) = ask(&client).await;
    assert!(matches!(reply, Err(ModelError::Timeout(_))), "{reply:?}");
    assert_eq!(streamed, "Thinking");
}

fn azure(
    stand_in: &StandIn,
    env: HashMap<String, String>,
    credential: &dyn Fn() -> Result<Arc<dyn TokenCredential>, String>,
) -> ModelSettings {
    let args = LlmArgs {
        azure_openai_endpoint: Some(format!("{}/", stand_in.origin)),
        azure_openai_deployment: Some("gpt-4o-prod".into()),
        azure_openai_api_version: Some("2024-10-21".into()),
        ..LlmArgs::default()
    };
    settings::resolve(&args, &ChatFile::default(), &env, credential)
        .unwrap()
        .model
}

#[tokio::test]
async fn azure_openai_uses_the_deployment_url_and_the_api_key_header() {
    let stand_in = StandIn::start(vec![step(|_| text("hi")), step(|_| Reply::Status { code: 404, headers: vec![], body: json!({"error": {"code": "DeploymentNotFound", "message": "The API deployment for this resource does not exist."}}) })]).await;
    let env = HashMap::from([(
        "AZURE_OPENAI_API_KEY".to_string(),
        "azure-key-1".to_string(),
    )]);
    let client = ModelClient::new(azure(&stand_in, env, &|| Err("unused".into()))).unwrap();
    assert_eq!(ask(&client).await.0.unwrap().text, "hi");
    let request = &stand_in.requests()[0];
    assert_eq!(
        request.path,
        "/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21"
    );
    assert_eq!(request.headers["api-key"], "azure-key-1");
    assert!(request.headers.get("authorization").is_none());
    assert!(
        request.body.get("model").is_none(),
        "Azure names the model by the deployment"
    );

    let error = ask(&client).await.0.unwrap_err().to_string();
    assert!(
        error.contains("no deployment `gpt-4o-prod`")
            && error.contains("--azure-openai-deployment"),
        "{error}"
    );
}

struct FakeEntra;

impl TokenCredential for FakeEntra {
    fn describe(&self) -> String {
        "test credential".into()
    }

    fn get_token<'a>(
        &'a self,
        scope: &'a str,
    ) -> BoxFuture<'a, Result<AccessToken, IdentityError>> {
        Box::pin(async move {
            assert_eq!(scope, "https://cognitiveservices.azure.com/.default");
            Ok(AccessToken::new(
                Secret::new("entra-token-for-openai"),
                SystemTime::now() + Duration::from_secs(3600),
            ))
        })
    }
}

#[tokio::test]
async fn azure_openai_without_a_key_sends_an_entra_bearer_token() {
    let stand_in = StandIn::start(vec![step(|_| text("hi"))]).await;
    let client = ModelClient::new(azure(&stand_in, HashMap::new(), &|| {
        Ok(Arc::new(FakeEntra))
    }))
    .unwrap();
    assert_eq!(ask(&client).await.0.unwrap().text, "hi");
    let request = &stand_in.requests()[0];
    assert_eq!(
        request.headers["authorization"],
        "Bearer entra-token-for-openai"
    );
    assert!(request.headers.get("api-key").is_none());
}
