//! How pgmcp's app authenticates when `/callback` redeems a sign-in at the provider: secretless, with its managed
//! identity's token for `api://AzureADTokenExchange` as a jwt-bearer client assertion (the identity is a federated
//! credential of the app registration), or with the client secret. The managed identity is the loopback IMDS
//! stand-in; the provider is a loopback token endpoint that records what it was sent.

#[path = "identity_support/azure.rs"]
mod azure;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use azure::{EXCHANGE_RESOURCE, Principal, StandIn};
use pgmcp::config::Secret;
use pgmcp::http::auth::{AuthMode, AuthSettings};
use pgmcp::http::oauth::upstream::Upstream;
use pgmcp::http::oauth::{OAuthSettings, SigningKeySource, UpstreamCredential};
use serde_json::{Value, json};

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

type Recorded = Arc<Mutex<Vec<HashMap<String, String>>>>;

/// An OpenID provider with discovery and a token endpoint that keeps every form it receives.
async fn provider() -> (String, Recorded) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let recorded: Recorded = Arc::default();
    let discovery = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
    });
    let app = Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(move || async move { axum::Json(discovery) }),
        )
        .route(
            "/token",
            post(
                |State(recorded): State<Recorded>, body: String| async move {
                    let form: HashMap<String, String> =
                        reqwest::Url::parse(&format!("http://form/?{body}"))
                            .unwrap()
                            .query_pairs()
                            .into_owned()
                            .collect();
                    recorded.lock().unwrap().push(form);
                    axum::Json(
                        json!({"access_token": "upstream-access-token", "token_type": "Bearer"}),
                    )
                },
            ),
        )
        .with_state(recorded.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (issuer, recorded)
}

fn settings(credential: UpstreamCredential) -> OAuthSettings {
    OAuthSettings {
        upstream_client_id: "pgmcp-app".into(),
        upstream_credential: credential,
        signing_key: SigningKeySource::Files {
            current: "unused.pem".into(),
            previous: Vec::new(),
        },
        key_vault_refresh: Duration::from_secs(300),
        upstream_scopes: None,
        access_token_lifetime: Duration::from_secs(600),
        refresh_token_lifetime: Duration::from_secs(3600),
        registrations_per_minute: 20,
        allow_loopback_client_metadata: false,
        clients: Vec::new(),
    }
}

fn upstream(issuer: &str, credential: UpstreamCredential, imds: &str) -> Upstream {
    let auth = AuthSettings {
        mode: AuthMode::Oidc,
        oidc_issuer: Some(issuer.to_string()),
        audiences: vec!["https://pgmcp.example/mcp".into()],
        ..AuthSettings::default()
    };
    let imds = format!("{imds}/metadata/identity/oauth2/token");
    let env = move |name: &str| (name == "PGMCP_IMDS_ENDPOINT").then(|| imds.clone());
    Upstream::new(
        &auth,
        &[],
        &settings(credential),
        "https://pgmcp.example/callback".into(),
        &env,
    )
    .unwrap()
}

fn claims(jwt: &str) -> Value {
    use base64::Engine;
    let payload = jwt.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn the_managed_identity_token_is_the_client_assertion_and_no_secret_is_sent() {
    let azure = StandIn::start(Arc::new(|_: &str, _: &str| {})).await;
    azure.with(|s| {
        s.managed.insert(
            Some("fic-mi".into()),
            Principal {
                client_id: "fic-mi".into(),
                oid: "fic-mi-oid".into(),
                ..Principal::default()
            },
        );
    });
    let (issuer, recorded) = provider().await;
    let upstream = upstream(
        &issuer,
        UpstreamCredential::ManagedIdentity(Some("fic-mi".into())),
        &azure.url,
    );

    for code in ["code-1", "code-2"] {
        let token = upstream.exchange(code, "verifier").await.unwrap();
        assert_eq!(token.expose(), "upstream-access-token");
    }

    let forms = recorded.lock().unwrap().clone();
    assert_eq!(forms.len(), 2);
    let issued = azure.with(|s| s.issued.clone());
    assert_eq!(
        issued.len(),
        1,
        "the managed identity token is cached between sign-ins"
    );
    for form in &forms {
        assert_eq!(form["client_id"], "pgmcp-app");
        assert_eq!(form["client_assertion_type"], ASSERTION_TYPE);
        assert_eq!(form["client_assertion"], issued[0]);
        assert!(!form.contains_key("client_secret"), "{form:?}");
        assert_eq!(form["code_verifier"], "verifier");
        assert_eq!(form["grant_type"], "authorization_code");
    }
    let assertion = claims(&forms[0]["client_assertion"]);
    assert_eq!(assertion["aud"], EXCHANGE_RESOURCE);
    assert_eq!(assertion["oid"], "fic-mi-oid");
    assert!(
        azure.with(|s| s.requests.iter().any(|r| r == "imds")),
        "the token came from IMDS"
    );
}

#[tokio::test]
async fn a_missing_managed_identity_fails_the_exchange_and_sends_nothing_upstream() {
    let azure = StandIn::start(Arc::new(|_: &str, _: &str| {})).await;
    let (issuer, recorded) = provider().await;
    let upstream = upstream(
        &issuer,
        UpstreamCredential::ManagedIdentity(Some("not-assigned".into())),
        &azure.url,
    );
    let error = upstream.exchange("code", "verifier").await.unwrap_err();
    let text = format!("{error:#}");
    assert!(
        text.contains("managed identity for the federated credential")
            && text.contains("not assigned"),
        "{text}"
    );
    assert!(recorded.lock().unwrap().is_empty());
}

#[tokio::test]
async fn the_client_secret_is_sent_as_before() {
    let (issuer, recorded) = provider().await;
    let upstream = upstream(
        &issuer,
        UpstreamCredential::ClientSecret(Secret::new("app-secret-1")),
        "http://127.0.0.1:9",
    );
    upstream.exchange("code", "verifier").await.unwrap();
    let forms = recorded.lock().unwrap().clone();
    assert_eq!(forms.len(), 1);
    assert_eq!(forms[0]["client_secret"], "app-secret-1");
    assert!(!forms[0].contains_key("client_assertion"), "{:?}", forms[0]);
    assert!(!forms[0].contains_key("client_assertion_type"));
}
