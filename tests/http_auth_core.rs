//! `Authenticator::authenticate` against real tokens of a real OpenID provider on loopback (no HTTP server):
//! every accept/refuse rule, with the exact reason the log would show.

mod oidc_support;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::Jwk};
use oidc_support::authenticate::*;
use oidc_support::*;
use pgmcp::http::auth::{AuthMode, AuthSettings, Authenticator, ResourceInfo};
use serde_json::json;

/// The trusted provider and an untrusted one minting the same claims (trusted issuer strings) with its own keys.
fn providers() -> &'static (Provider, Provider) {
    static PROVIDERS: OnceLock<(Provider, Provider)> = OnceLock::new();
    PROVIDERS.get_or_init(|| {
        let trusted = Provider::start(entra_clients("{base}"));
        let untrusted = Provider::start(entra_clients(&trusted.base));
        (trusted, untrusted)
    })
}

async fn trusted_auth() -> Arc<Authenticator> {
    authenticator(&entra_settings(&providers().0.base)).await
}

#[tokio::test]
async fn valid_v2_app_token_fills_the_caller() {
    let (trusted, _) = providers();
    let auth = trusted_auth().await;
    let caller = check(&auth, &trusted.token("v2-app").await)
        .await
        .expect("valid v2 token");
    assert_eq!(
        caller.issuer.as_deref(),
        Some(format!("{}/{TENANT}/v2.0", trusted.base).as_str())
    );
    assert_eq!(caller.oid.as_deref(), Some(AGENT_OID));
    assert_eq!(caller.tid.as_deref(), Some(TENANT));
    assert_eq!(caller.client_app.as_deref(), Some(AGENT_APP));
    assert_eq!(caller.roles, vec![ROLE.to_string()]);
    assert!(caller.app_only && caller.scopes.is_empty());
    assert!(auth.keys_loaded());
}

#[tokio::test]
async fn valid_v1_token_and_both_audiences_and_algorithms() {
    let (trusted, _) = providers();
    let auth = trusted_auth().await;
    let caller = check(&auth, &trusted.token("v1-app").await)
        .await
        .expect("valid v1 token");
    assert_eq!(
        caller.issuer.as_deref(),
        Some(format!("{V1_ISSUER_HOST}/{TENANT}/").as_str())
    );
    assert_eq!(
        caller.client_app.as_deref(),
        Some(AGENT_APP),
        "v1 client comes from appid"
    );
    for client in [
        "v2-app-id-uri-aud",
        "v2-es256",
        "v2-ps256",
        "v2-expired-within-leeway",
    ] {
        check(&auth, &trusted.token(client).await)
            .await
            .unwrap_or_else(|e| panic!("{client} refused: {}", e.reason()));
    }
}

#[tokio::test]
async fn delegated_tokens_need_the_scope() {
    let (trusted, _) = providers();
    let auth = trusted_auth().await;
    let caller = check(&auth, &trusted.token("delegated-scope").await)
        .await
        .expect("delegated with scope");
    assert!(!caller.app_only);
    assert_eq!(caller.scopes, vec!["user_impersonation".to_string()]);
    assert_eq!(caller.name.as_deref(), Some("Ada Lovelace"));
    assert_eq!(
        caller.preferred_username.as_deref(),
        Some("ada@contoso.example")
    );
    let refused = check(&auth, &trusted.token("delegated-no-scope").await).await;
    let rejection = assert_refused(refused, StatusCode::FORBIDDEN, "missing_scope");
    assert!(
        rejection
            .www_authenticate()
            .contains("error=\"insufficient_scope\"")
    );
    assert!(
        rejection
            .www_authenticate()
            .contains(&format!("scope=\"{APP_ID_URI}/user_impersonation\""))
    );
}

#[tokio::test]
async fn claim_rules_refuse_with_the_right_status() {
    let (trusted, _) = providers();
    let auth = trusted_auth().await;
    for (client, status, reason) in [
        ("v2-no-role", StatusCode::FORBIDDEN, "missing_role"),
        ("v2-wrong-role", StatusCode::FORBIDDEN, "missing_role"),
        (
            "v2-other-app",
            StatusCode::FORBIDDEN,
            "client_app_not_allowed",
        ),
        ("v2-expired", StatusCode::UNAUTHORIZED, "expired"),
        (
            "v2-not-yet-valid",
            StatusCode::UNAUTHORIZED,
            "not_yet_valid",
        ),
        ("v2-wrong-aud", StatusCode::UNAUTHORIZED, "wrong_audience"),
        ("v2-other-tenant", StatusCode::UNAUTHORIZED, "wrong_issuer"),
        ("v2-tid-mismatch", StatusCode::UNAUTHORIZED, "wrong_tenant"),
        ("v2-no-tid", StatusCode::UNAUTHORIZED, "wrong_tenant"),
        ("v2-foreign-iss", StatusCode::UNAUTHORIZED, "wrong_issuer"),
    ] {
        let token = trusted.token(client).await;
        let rejection = check(&auth, &token).await.expect_err(client);
        assert_eq!(
            (rejection.status(), rejection.reason()),
            (status, reason),
            "{client}"
        );
        let expected_error = if status == StatusCode::FORBIDDEN {
            "insufficient_scope"
        } else {
            "invalid_token"
        };
        assert!(
            rejection
                .www_authenticate()
                .starts_with(&format!("Bearer resource_metadata=\"{METADATA_URL}\""))
                && rejection
                    .www_authenticate()
                    .ends_with(&format!("error=\"{expected_error}\"")),
            "{client}: {}",
            rejection.www_authenticate()
        );
    }
}

#[tokio::test]
async fn allowed_principals_limit_who_may_call() {
    let (trusted, _) = providers();
    let mut settings = entra_settings(&trusted.base);
    settings.allowed_principals = vec![AGENT_OID.to_uppercase()];
    let auth = authenticator(&settings).await;
    check(&auth, &trusted.token("v2-app").await)
        .await
        .expect("listed principal");
    let refused = check(&auth, &trusted.token("v2-other-oid").await).await;
    assert_refused(refused, StatusCode::FORBIDDEN, "principal_not_allowed");
}

#[tokio::test]
async fn keys_come_only_from_the_issuers_jwks() {
    let (trusted, untrusted) = providers();
    let auth = trusted_auth().await;
    // Same claims, trusted issuer string, the untrusted provider's key: its kid is unknown to us.
    let refused = check(&auth, &untrusted.token("v2-app").await).await;
    assert_refused(refused, StatusCode::UNAUTHORIZED, "unknown_key");
    // The header points at the untrusted provider's keys (jku, x5u): ignored.
    let refused = check(&auth, &untrusted.token("v2-jku").await).await;
    assert_refused(refused, StatusCode::UNAUTHORIZED, "unknown_key");
    // A trusted token with jku/x5u in its header is still verified with the issuer's keys.
    check(&auth, &trusted.token("v2-jku").await)
        .await
        .expect("trusted token with jku header");
    // The untrusted key presented under a trusted kid: the signature does not verify.
    let trusted_kid = trusted.kids().await[0].clone();
    let forger = Provider::start(vec![with_kid(&trusted.base, "forged-kid", &trusted_kid)]);
    let refused = check(&auth, &forger.token("forged-kid").await).await;
    assert_refused(refused, StatusCode::UNAUTHORIZED, "bad_signature");
    assert_eq!(
        untrusted.jwks_requests().await,
        0,
        "nobody may fetch keys named by a token header"
    );
    assert_eq!(forger.jwks_requests().await, 0);
}

#[tokio::test]
async fn crafted_tokens_are_refused() {
    let (trusted, _) = providers();
    let auth = trusted_auth().await;
    let valid = trusted.token("v2-app").await;
    let (header, payload, signature) = split(&valid);

    let none = join(&json!({"alg": "none", "typ": "JWT"}), &payload, "");
    assert_refused(
        check(&auth, &none).await,
        StatusCode::UNAUTHORIZED,
        "disallowed_algorithm",
    );
    let none_upper = join(&json!({"alg": "None", "kid": header["kid"]}), &payload, "");
    assert_refused(
        check(&auth, &none_upper).await,
        StatusCode::UNAUTHORIZED,
        "disallowed_algorithm",
    );

    // The classic confusion attack: HMAC keyed with the provider's public key material.
    let jwks = trusted.jwks().await;
    let rsa = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kty"] == "RSA")
        .unwrap()
        .clone();
    for secret in [
        rsa.to_string().into_bytes(),
        rsa["n"].as_str().unwrap().as_bytes().to_vec(),
    ] {
        let mut hs_header = Header::new(Algorithm::HS256);
        hs_header.kid = rsa["kid"].as_str().map(str::to_string);
        let hs =
            jsonwebtoken::encode(&hs_header, &payload, &EncodingKey::from_secret(&secret)).unwrap();
        assert_refused(
            check(&auth, &hs).await,
            StatusCode::UNAUTHORIZED,
            "disallowed_algorithm",
        );
    }

    let mut elevated = payload.clone();
    elevated["roles"] = json!([ROLE, "MCP.Write"]);
    let tampered = join(&header, &elevated, &signature);
    assert_refused(
        check(&auth, &tampered).await,
        StatusCode::UNAUTHORIZED,
        "bad_signature",
    );
    let mut extended = payload.clone();
    extended["exp"] = json!(payload["exp"].as_i64().unwrap() + 86_400);
    assert_refused(
        check(&auth, &join(&header, &extended, &signature)).await,
        StatusCode::UNAUTHORIZED,
        "bad_signature",
    );

    // An attacker's own key embedded in the header (jwk, x5c) under the trusted EC key's kid.
    let attacker = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["attacker.example".into()])
        .unwrap()
        .self_signed(&attacker)
        .unwrap();
    let key = EncodingKey::from_ec_pem(attacker.serialize_pem().as_bytes()).unwrap();
    let ec_kid = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kty"] == "EC")
        .unwrap()["kid"]
        .clone();
    let mut embedded = Header::new(Algorithm::ES256);
    embedded.kid = ec_kid.as_str().map(str::to_string);
    embedded.jwk = Some(Jwk::from_encoding_key(&key, Algorithm::ES256).unwrap());
    embedded.x5c = Some(vec![
        base64::engine::general_purpose::STANDARD.encode(cert.der()),
    ]);
    let forged = jsonwebtoken::encode(&embedded, &payload, &key).unwrap();
    assert_refused(
        check(&auth, &forged).await,
        StatusCode::UNAUTHORIZED,
        "bad_signature",
    );
    embedded.kid = Some("attacker".into());
    let forged = jsonwebtoken::encode(&embedded, &payload, &key).unwrap();
    assert_refused(
        check(&auth, &forged).await,
        StatusCode::UNAUTHORIZED,
        "unknown_key",
    );

    for garbage in ["abc", "a.b.c", &format!("{valid}.x")] {
        assert_refused(
            check(&auth, garbage).await,
            StatusCode::UNAUTHORIZED,
            "malformed_token",
        );
    }
    assert_refused(
        check(&auth, "e30.e30.").await,
        StatusCode::UNAUTHORIZED,
        "disallowed_algorithm",
    );
}

#[tokio::test]
async fn only_the_authorization_header_carries_the_token() {
    let (trusted, _) = providers();
    let auth = trusted_auth().await;
    let token = trusted.token("v2-app").await;

    let missing = assert_refused(
        auth.authenticate(&HeaderMap::new(), &mcp()).await,
        StatusCode::UNAUTHORIZED,
        "missing_token",
    );
    assert_eq!(
        missing.www_authenticate(),
        format!(
            "Bearer resource_metadata=\"{METADATA_URL}\", scope=\"{APP_ID_URI}/user_impersonation\""
        )
    );
    let query: Uri = format!("/mcp?access_token={token}").parse().unwrap();
    let in_query = assert_refused(
        auth.authenticate(&bearer(&token), &query).await,
        StatusCode::BAD_REQUEST,
        "token_in_query",
    );
    assert!(
        in_query
            .www_authenticate()
            .ends_with("error=\"invalid_request\"")
    );
    assert_refused(
        auth.authenticate(&HeaderMap::new(), &query).await,
        StatusCode::BAD_REQUEST,
        "token_in_query",
    );

    let mut cookie = HeaderMap::new();
    cookie.insert(
        header::COOKIE,
        HeaderValue::from_str(&format!("access_token={token}")).unwrap(),
    );
    assert_refused(
        auth.authenticate(&cookie, &mcp()).await,
        StatusCode::UNAUTHORIZED,
        "missing_token",
    );

    let mut twice = bearer(&token);
    twice.append(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    assert_refused(
        auth.authenticate(&twice, &mcp()).await,
        StatusCode::BAD_REQUEST,
        "multiple_authorization_headers",
    );
    let mut basic = HeaderMap::new();
    basic.insert(
        header::AUTHORIZATION,
        HeaderValue::from_static("Basic dXNlcjpwYXNz"),
    );
    assert_refused(
        auth.authenticate(&basic, &mcp()).await,
        StatusCode::BAD_REQUEST,
        "not_bearer_scheme",
    );

    let stats = auth.stats();
    let count = |reason: &str| {
        stats
            .failures_by_reason
            .iter()
            .find(|(r, _)| r == reason)
            .map(|(_, n)| *n)
    };
    assert_eq!(count("token_in_query"), Some(2));
    assert_eq!(count("missing_token"), Some(2));
    // None of these requests got as far as verifying a token: the only key fetch is the background load.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !auth.keys_loaded() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(auth.keys_loaded(), "the background load fetched the keys");
    let stats = auth.stats();
    assert_eq!((stats.jwks_refreshes, stats.jwks_refresh_failures), (1, 0));
    let verified: u64 = stats
        .failures_by_reason
        .iter()
        .filter(|(reason, _)| {
            !matches!(
                reason.as_str(),
                "token_in_query"
                    | "missing_token"
                    | "multiple_authorization_headers"
                    | "not_bearer_scheme"
            )
        })
        .map(|(_, n)| n)
        .sum();
    assert_eq!(verified, 0, "{:?}", stats.failures_by_reason);
}

#[tokio::test]
async fn rotation_is_picked_up_and_forged_kids_cannot_hammer_the_provider() {
    let provider = Provider::start(entra_clients("{base}"));
    let auth = authenticator(&entra_settings(&provider.base)).await;
    let before = provider.token("v2-app").await;
    check(&auth, &before).await.expect("token before rotation");
    let fetched = provider.jwks_requests().await;

    provider.rotate().await;
    let after = provider.token("v2-app").await;
    assert_ne!(split(&before).0["kid"], split(&after).0["kid"]);
    check(&auth, &after)
        .await
        .expect("token signed with the rotated key");
    check(&auth, &before)
        .await
        .expect("old key still published");
    assert_eq!(
        provider.jwks_requests().await,
        fetched + 1,
        "one fetch for the new kid"
    );

    // Within the cooldown, made-up kids cause no fetch at all.
    let (header, payload, signature) = split(&after);
    for n in 0..20 {
        let mut forged = header.clone();
        forged["kid"] = json!(format!("forged-{n}"));
        let refused = check(&auth, &join(&forged, &payload, &signature)).await;
        assert_refused(refused, StatusCode::UNAUTHORIZED, "unknown_key");
    }
    assert_eq!(
        provider.jwks_requests().await,
        fetched + 1,
        "forged kids were rate-limited"
    );
}

#[tokio::test]
async fn provider_outage_keeps_cached_keys_working() {
    let mut provider = Provider::start(entra_clients("{base}"));
    let auth = authenticator(&entra_settings(&provider.base)).await;
    let first = provider.token("v2-app").await;
    let second = provider.token("v1-app").await;
    check(&auth, &first).await.expect("provider up");
    provider.stop();
    check(&auth, &first)
        .await
        .expect("cached keys while the provider is down");
    check(&auth, &second)
        .await
        .expect("another token, cached keys");
    let (header, payload, signature) = split(&first);
    let mut unknown = header.clone();
    unknown["kid"] = json!("rotated-while-down");
    let refused = check(&auth, &join(&unknown, &payload, &signature)).await;
    assert_refused(refused, StatusCode::UNAUTHORIZED, "unknown_key");
    assert!(auth.keys_loaded());
}

#[tokio::test]
async fn startup_does_not_wait_for_an_unreachable_provider() {
    // A port nothing listens on: bind, note it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = Instant::now();
    let auth = authenticator(&entra_settings(&format!("http://127.0.0.1:{port}"))).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "new() must not block on the provider"
    );
    assert!(!auth.keys_loaded());
    let (trusted, _) = providers();
    let refused = check(&auth, &trusted.token("v2-app").await).await;
    // The trusted provider's issuer is not this authenticator's, so craft the issuer check out of the way:
    assert_refused(refused, StatusCode::UNAUTHORIZED, "wrong_issuer");
    let (_, mut payload, signature) = split(&trusted.token("v2-app").await);
    payload["iss"] = json!(format!("http://127.0.0.1:{port}/{TENANT}/v2.0"));
    let token = join(&json!({"alg": "RS256", "kid": "k"}), &payload, &signature);
    assert_refused(
        check(&auth, &token).await,
        StatusCode::UNAUTHORIZED,
        "keys_unavailable",
    );
    assert!(auth.stats().jwks_refresh_failures >= 1);
}

#[tokio::test]
async fn oidc_mode_discovers_the_keys() {
    let provider = Provider::start(vec![
        json!({ "client_id": "plain", "client_secret": SECRET }),
    ]);
    let settings = AuthSettings {
        mode: AuthMode::Oidc,
        oidc_issuer: Some(provider.base.clone()),
        audiences: vec!["api://pgmcp-test".into()],
        ..AuthSettings::default()
    };
    let auth = authenticator(&settings).await;
    assert_eq!(auth.authorization_servers(), vec![provider.base.clone()]);
    let caller = check(&auth, &provider.token("plain").await)
        .await
        .expect("oidc token");
    assert_eq!(
        caller.client_app.as_deref(),
        Some("plain"),
        "client from RFC 9068 client_id"
    );
    assert_eq!(caller.subject.as_deref(), Some("plain"));

    let mut wrong_aud = settings.clone();
    wrong_aud.audiences = vec!["api://another".into()];
    let refused = check(
        &*authenticator(&wrong_aud).await,
        &provider.token("plain").await,
    )
    .await;
    assert_refused(refused, StatusCode::UNAUTHORIZED, "wrong_audience");

    // Discovery must name exactly the configured issuer; a trailing slash is a different issuer.
    let mut slash = settings.clone();
    slash.oidc_issuer = Some(format!("{}/", provider.base));
    let refused = check(
        &*authenticator(&slash).await,
        &provider.token("plain").await,
    )
    .await;
    assert_refused(refused, StatusCode::UNAUTHORIZED, "wrong_issuer");
}

#[tokio::test]
async fn metadata_for_the_prm() {
    let auth = trusted_auth().await;
    let base = &providers().0.base;
    assert_eq!(
        auth.authorization_servers(),
        vec![format!("{base}/{TENANT}/v2.0")]
    );
    assert_eq!(
        auth.scopes_supported(),
        vec![format!("{APP_ID_URI}/user_impersonation")]
    );
    let mut app_only = entra_settings(base);
    app_only.required_scopes.clear();
    assert_eq!(
        authenticator(&app_only).await.scopes_supported(),
        vec![format!("{APP_ID_URI}/.default")]
    );
    let none = AuthSettings::default();
    let resource = ResourceInfo {
        resource: "r".into(),
        metadata_url: "m".into(),
    };
    assert!(Authenticator::new(&none, resource).await.is_err());
}
