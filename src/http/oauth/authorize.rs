//! The browser's way through: `/authorize` checks the client and its redirect URI and shows the consent page, the
//! consent form (POST `/authorize`) sends the browser to the upstream provider with pgmcp's own PKCE and sealed
//! state, and `/callback` returns the browser to the client with pgmcp's code, which seals the provider's code:
//! pgmcp redeems that only when the client redeems its own (see `token.rs`).
//!
//! Until the client and the exact redirect URI are known to belong together, nothing redirects: an error page is
//! shown instead (RFC 6749 §4.1.2.1), so pgmcp is never an open redirector. The consent form is bound to the
//! browser that saw it (a cookie only a same-site POST carries), and the upstream state to the browser that
//! consented (a second cookie), so neither can be replayed from another browser.

use std::sync::Arc;

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::OAuthServer;
use super::clients::{Client, ClientError};
use super::consent_page::{consent_page, error_page};
use super::seal::Kind;

const CONSENT_COOKIE: &str = "pgmcp_consent";
const FLOW_COOKIE: &str = "pgmcp_flow";
/// How long a person may take on the consent page and at the provider's sign-in.
const FLOW_SECS: u64 = 600;
/// Authorization codes are redeemed by the client right away (RFC 6749 §4.1.2 recommends at most 10 minutes).
pub const CODE_SECS: u64 = 60;
/// Scopes clients commonly add that pgmcp grants implicitly.
const IGNORED_SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];

#[derive(Deserialize, Default)]
pub struct AuthorizeParams {
    response_type: Option<String>,
    client_id: Option<String>,
    redirect_uri: Option<String>,
    state: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    scope: Option<String>,
    resource: Option<String>,
}

/// An authorization request that passed every check: what the code will be bound to.
#[derive(Serialize, Deserialize, Clone)]
pub struct Grant {
    pub client_id: String,
    pub redirect_uri: String,
    pub state: Option<String>,
    pub code_challenge: String,
    pub scope: String,
    pub resource: String,
}

#[derive(Serialize, Deserialize)]
struct Consent {
    grant: Grant,
    /// SHA-256 of the consent cookie's value.
    browser: String,
}

#[derive(Serialize, Deserialize)]
struct UpstreamState {
    grant: Grant,
    verifier: String,
    browser: String,
}

/// The client's code, sealed: everything `/token` needs to check it, redeem the provider's code and issue tokens.
/// The provider's code is redeemed only then: the provider accepts its code once, whichever replica asks, so
/// pgmcp's code is single-use across replicas that share no state.
#[derive(Serialize, Deserialize)]
pub struct Code {
    pub id: String,
    pub grant: Grant,
    pub upstream_code: String,
    /// pgmcp's own PKCE verifier for the provider's code.
    pub upstream_verifier: String,
}

enum Refusal {
    /// Shown to the person; no redirect (unknown client, bad redirect URI).
    Page(StatusCode, String),
    /// Sent to the client's redirect URI (RFC 6749 §4.1.2.1).
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        error: &'static str,
        description: String,
    },
}

pub fn digest(value: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(value.as_bytes()))
}

fn refuse(server: &OAuthServer, refusal: Refusal) -> Response {
    match refusal {
        Refusal::Page(status, message) => error_page(status, &message),
        Refusal::Redirect {
            redirect_uri,
            state,
            error,
            description,
        } => back_to_client(
            server,
            &redirect_uri,
            &[("error", error), ("error_description", &description)],
            state.as_deref(),
        ),
    }
}

/// A redirect to the client with `state` and `iss` (RFC 9207) added to `params`.
fn back_to_client(
    server: &OAuthServer,
    redirect_uri: &str,
    params: &[(&str, &str)],
    state: Option<&str>,
) -> Response {
    let Ok(mut url) = reqwest::Url::parse(redirect_uri) else {
        return error_page(StatusCode::BAD_REQUEST, "The redirect URI is not a URL.");
    };
    {
        let mut query = url.query_pairs_mut();
        for (name, value) in params {
            query.append_pair(name, value);
        }
        if let Some(state) = state {
            query.append_pair("state", state);
        }
        query.append_pair("iss", &server.issuer);
    }
    Redirect::to(url.as_str()).into_response()
}

async fn check_request(
    server: &OAuthServer,
    params: &AuthorizeParams,
) -> Result<(Client, Grant), Refusal> {
    let Some(client_id) = params.client_id.as_deref().filter(|id| !id.is_empty()) else {
        return Err(Refusal::Page(
            StatusCode::BAD_REQUEST,
            "The request names no client (client_id).".into(),
        ));
    };
    let client = match server.clients.find(&server.ring().sealer, client_id).await {
        Ok(client) => client,
        Err(ClientError::Unknown) => {
            return Err(Refusal::Page(
                StatusCode::BAD_REQUEST,
                "This application is not registered with pgmcp (unknown client_id).".into(),
            ));
        }
        Err(ClientError::BadMetadata(why)) => {
            return Err(Refusal::Page(
                StatusCode::BAD_REQUEST,
                format!("The application's client metadata document cannot be used: {why}."),
            ));
        }
    };
    let Some(redirect_uri) = client.redirect_uri(params.redirect_uri.as_deref()) else {
        return Err(Refusal::Page(
            StatusCode::BAD_REQUEST,
            "The redirect URI is not one this application registered, so pgmcp will not send you there."
                .into(),
        ));
    };
    let redirect = |error: &'static str, description: &str| Refusal::Redirect {
        redirect_uri: redirect_uri.clone(),
        state: params.state.clone(),
        error,
        description: description.to_string(),
    };
    if params.response_type.as_deref() != Some("code") {
        return Err(redirect(
            "unsupported_response_type",
            "only response_type=code is supported",
        ));
    }
    let challenge = params.code_challenge.clone().unwrap_or_default();
    if params.code_challenge_method.as_deref() != Some("S256")
        || challenge.len() != 43
        || URL_SAFE_NO_PAD.decode(&challenge).is_err()
    {
        return Err(redirect(
            "invalid_request",
            "PKCE is required: code_challenge with code_challenge_method=S256",
        ));
    }
    let resource = params
        .resource
        .clone()
        .unwrap_or_else(|| server.resource.clone());
    if resource != server.resource {
        return Err(redirect(
            "invalid_target",
            "pgmcp issues tokens only for its own resource",
        ));
    }
    let requested: Vec<&str> = params
        .scope
        .as_deref()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    if let Some(unknown) = requested
        .iter()
        .find(|s| !IGNORED_SCOPES.contains(s) && !server.scopes.iter().any(|known| known == *s))
    {
        return Err(redirect(
            "invalid_scope",
            &format!("scope {unknown} is not offered"),
        ));
    }
    let grant = Grant {
        client_id: client.client_id.clone(),
        redirect_uri,
        state: params.state.clone(),
        code_challenge: challenge,
        scope: requested.join(" "),
        resource,
    };
    Ok((client, grant))
}

fn cookie(
    server: &OAuthServer,
    name: &str,
    value: &str,
    path: &str,
    same_site: &str,
) -> HeaderValue {
    let secure = if server.issuer.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    // Under the public URL's path: behind a proxy that serves pgmcp at /tools/pgmcp, the browser sees
    // /tools/pgmcp/authorize.
    let prefix = reqwest::Url::parse(&server.issuer)
        .map(|url| url.path().trim_end_matches('/').to_string())
        .unwrap_or_default();
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={prefix}{path}; Max-Age={FLOW_SECS}; HttpOnly; SameSite={same_site}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// `GET /authorize`: the consent page, or straight to the provider for a pre-approved client.
pub async fn authorize(
    State(server): State<Arc<OAuthServer>>,
    Query(params): Query<AuthorizeParams>,
) -> Response {
    if !server.limits.browser.allow() {
        return super::too_many_requests();
    }
    let (client, grant) = match check_request(&server, &params).await {
        Ok(checked) => checked,
        Err(refusal) => return refuse(&server, refusal),
    };
    if client.pre_approved {
        return to_upstream(&server, grant).await;
    }
    let browser = server.ring().sealer.random_id();
    let consent = server.ring().sealer.seal(
        Kind::Consent,
        Some(FLOW_SECS),
        &Consent {
            grant: grant.clone(),
            browser: digest(&browser),
        },
    );
    let mut response = consent_page(&client, &grant, &consent, &server.resource);
    response.headers_mut().append(
        header::SET_COOKIE,
        cookie(&server, CONSENT_COOKIE, &browser, "/authorize", "Strict"),
    );
    response
}

#[derive(Deserialize)]
pub struct ConsentForm {
    consent: Option<String>,
    decision: Option<String>,
}

/// `POST /authorize`: the person's answer on the consent page.
pub async fn decide(
    State(server): State<Arc<OAuthServer>>,
    headers: HeaderMap,
    Form(form): Form<ConsentForm>,
) -> Response {
    if !server.limits.browser.allow() {
        return super::too_many_requests();
    }
    let forbidden = |why: &str| error_page(StatusCode::FORBIDDEN, why);
    // `null` is what browsers send for a form on a page with `Referrer-Policy: no-referrer` (the consent page's);
    // the consent cookie, which a cross-site POST never carries, is what stops a forged form.
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok())
        && origin != server.origin
        && origin != "null"
    {
        return forbidden("This form was sent from another site.");
    }
    let Some(consent) = form.consent.as_deref() else {
        return forbidden(
            "The consent form is incomplete (no consent token); start the sign-in again.",
        );
    };
    let Ok(consent) = server.ring().sealer.open::<Consent>(Kind::Consent, consent) else {
        return forbidden("The consent form is invalid or has expired; start the sign-in again.");
    };
    let Some(browser) = cookie_value(&headers, CONSENT_COOKIE) else {
        return forbidden(
            "The consent form did not come from the page pgmcp showed this browser (no consent cookie).",
        );
    };
    if digest(browser) != consent.browser {
        return forbidden("The consent form belongs to another browser.");
    }
    if form.decision.as_deref() != Some("allow") {
        return back_to_client(
            &server,
            &consent.grant.redirect_uri,
            &[
                ("error", "access_denied"),
                ("error_description", "the person declined"),
            ],
            consent.grant.state.as_deref(),
        );
    }
    to_upstream(&server, consent.grant).await
}

async fn to_upstream(server: &OAuthServer, grant: Grant) -> Response {
    let mut verifier_bytes = [0u8; 32];
    server.ring().sealer.fill(&mut verifier_bytes);
    let verifier = URL_SAFE_NO_PAD.encode(verifier_bytes);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let browser = server.ring().sealer.random_id();
    let state = server.ring().sealer.seal(
        Kind::UpstreamState,
        Some(FLOW_SECS),
        &UpstreamState {
            grant,
            verifier,
            browser: digest(&browser),
        },
    );
    match server.upstream.authorization_url(&state, &challenge).await {
        Ok(url) => {
            let mut response = Redirect::to(&url).into_response();
            response.headers_mut().append(
                header::SET_COOKIE,
                cookie(server, FLOW_COOKIE, &browser, "/callback", "Lax"),
            );
            response
        }
        Err(error) => {
            tracing::warn!(error = %format!("{error:#}"), "the sign-in provider is unavailable");
            error_page(
                StatusCode::BAD_GATEWAY,
                "The sign-in provider cannot be reached right now; try again shortly.",
            )
        }
    }
}

#[derive(Deserialize)]
pub struct CallbackParams {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// `GET /callback`: the provider sends the browser back here after sign-in.
pub async fn callback(
    State(server): State<Arc<OAuthServer>>,
    headers: HeaderMap,
    Query(params): Query<CallbackParams>,
) -> Response {
    if !server.limits.browser.allow() {
        return super::too_many_requests();
    }
    let Some(Ok(flow)) = params.state.as_deref().map(|state| {
        server
            .ring()
            .sealer
            .open::<UpstreamState>(Kind::UpstreamState, state)
    }) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "This sign-in is invalid or has expired; start it again from your application.",
        );
    };
    if cookie_value(&headers, FLOW_COOKIE).map(digest) != Some(flow.browser.clone()) {
        return error_page(
            StatusCode::FORBIDDEN,
            "This sign-in was started in another browser; start it again from your application.",
        );
    }
    let grant = flow.grant;
    let denied = |description: &str| {
        back_to_client(
            &server,
            &grant.redirect_uri,
            &[
                ("error", "access_denied"),
                ("error_description", description),
            ],
            grant.state.as_deref(),
        )
    };
    if let Some(error) = &params.error {
        tracing::info!(error = %error, "the sign-in provider refused the sign-in");
        return denied("the sign-in was not completed");
    }
    let Some(upstream_code) = params.code else {
        return denied("the sign-in provider returned no code");
    };
    let code = Code {
        id: server.ring().sealer.random_id(),
        grant: grant.clone(),
        upstream_code,
        upstream_verifier: flow.verifier,
    };
    tracing::info!(client_id = %grant.client_id, "signed in at the provider; code issued");
    let sealed = server
        .ring()
        .sealer
        .seal(Kind::Code, Some(CODE_SECS), &code);
    back_to_client(
        &server,
        &grant.redirect_uri,
        &[("code", &sealed)],
        grant.state.as_deref(),
    )
}
