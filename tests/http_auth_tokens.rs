//! Which signed tokens count as access tokens. A trusted issuer signs ID tokens and other typed JWTs with the same
//! keys as access tokens; pgmcp must take only access tokens, and no JWS that relies on an extension it does not
//! implement (`crit`). Entra-shaped tokens come from the real OpenID provider on loopback; tokens with headers that
//! provider will not sign (`crit`, chosen `typ`) come from a local issuer whose RS256 key the test holds. Every
//! token is really signed and verified with keys fetched from the issuer.

mod oidc_support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey};
use oidc_support::authenticate::*;
use oidc_support::*;
use pgmcp::http::auth::{AuthMode, AuthSettings};
use serde_json::{Value, json};

fn provider() -> &'static Provider {
    static PROVIDER: OnceLock<Provider> = OnceLock::new();
    PROVIDER.get_or_init(|| Provider::start(entra_clients("{base}")))
}

#[tokio::test]
async fn entra_id_tokens_are_not_access_tokens() {
    let provider = provider();
    let auth = authenticator(&entra_settings(&provider.base)).await;
    // Each of these is signed by the trusted tenant, addressed to pgmcp's client id, unexpired, and carries the
    // user's app role `MCP.Access`: before, the ones without `scp` passed as app-only tokens.
    for client in [
        "v2-id-token",
        "v2-id-token-no-nonce",
        "v2-id-token-with-azp",
        "v1-id-token",
    ] {
        let token = provider.token(client).await;
        let (header, payload, _) = split(&token);
        assert_eq!(
            header["typ"], "JWT",
            "{client}: shaped like Entra's ID tokens"
        );
        assert_eq!(payload["roles"], json!([ROLE]), "{client}");
        let rejection = check(&auth, &token).await.expect_err(client);
        assert_eq!(
            (rejection.status(), rejection.reason()),
            (StatusCode::UNAUTHORIZED, "not_an_access_token"),
            "{client}"
        );
        assert!(
            rejection
                .www_authenticate()
                .ends_with("error=\"invalid_token\""),
            "{client}: {}",
            rejection.www_authenticate()
        );
    }
    let failures = auth.stats().failures_by_reason;
    assert!(
        failures.contains(&("not_an_access_token".to_string(), 4)),
        "{failures:?}"
    );
}

#[tokio::test]
async fn real_access_tokens_of_every_kind_still_pass() {
    let provider = provider();
    let auth = authenticator(&entra_settings(&provider.base)).await;
    for (client, app_only) in [
        ("v2-app", true),
        ("v1-app", true),
        ("v2-app-idtyp", true),
        ("delegated-scope", false),
        ("delegated-idtyp", false),
    ] {
        let caller = check(&auth, &provider.token(client).await)
            .await
            .unwrap_or_else(|e| panic!("{client} refused: {}", e.reason()));
        assert_eq!(caller.app_only, app_only, "{client}");
    }
}

#[tokio::test]
async fn tokens_of_another_or_contradictory_kind_are_refused() {
    let provider = provider();
    let auth = authenticator(&entra_settings(&provider.base)).await;
    for client in [
        "v2-app-nonce",
        "v2-app-at-hash",
        "v2-appid-not-azp",
        "v1-azp-not-appid",
        "v2-sub-not-oid",
        "v2-idtyp-user-no-scp",
        "v2-idtyp-app-with-scp",
        "v2-idtyp-device",
        "v2-logout-typ",
    ] {
        let refused = check(&auth, &provider.token(client).await).await;
        let rejection = refused.expect_err(client);
        assert_eq!(
            (rejection.status(), rejection.reason()),
            (StatusCode::UNAUTHORIZED, "not_an_access_token"),
            "{client}"
        );
    }
}

/// The stand-in's v1 tokens name Entra's v1 host, not the authority that serves the keys: a configuration (or a
/// code path) that builds the v1 issuer from the authority refuses them.
#[tokio::test]
async fn the_v1_issuer_is_not_the_authority() {
    let provider = provider();
    let v1 = provider.token("v1-app").await;
    assert_eq!(split(&v1).1["iss"], format!("{V1_ISSUER_HOST}/{TENANT}/"));
    assert_ne!(V1_ISSUER_HOST, provider.base);
    let mut same_host = entra_settings(&provider.base);
    same_host.entra_v1_issuer_host = Some(provider.base.clone());
    let auth = authenticator(&same_host).await;
    assert_refused(
        check(&auth, &v1).await,
        StatusCode::UNAUTHORIZED,
        "wrong_issuer",
    );
    check(&auth, &provider.token("v2-app").await)
        .await
        .expect("v2 tokens come from the authority");
}

/// An issuer on loopback whose RS256 key the test holds, so it can sign any header. It serves OpenID discovery
/// (naming `jwks_uri` as the test says), `/jwks`, and the keys at Entra's path `/{tenant}/discovery/v2.0/keys`.
struct LocalIssuer {
    base: String,
    key: EncodingKey,
    key_fetches: Arc<AtomicU64>,
}

const KID: &str = "local-rs256";

impl LocalIssuer {
    /// `jwks_uri(base)` is what the discovery document names.
    async fn start(jwks_uri: impl Fn(&str) -> String) -> LocalIssuer {
        let pem = include_str!("identity_support/test-client-key.pem");
        let key = EncodingKey::from_rsa_pem(pem.as_bytes()).expect("test RSA key");
        let mut jwk =
            serde_json::to_value(Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap()).unwrap();
        jwk["kid"] = json!(KID);
        jwk["use"] = json!("sig");
        let jwks = json!({ "keys": [jwk] });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let discovery = json!({ "issuer": base, "jwks_uri": jwks_uri(&base) });
        let key_fetches = Arc::new(AtomicU64::new(0));
        let keys = {
            let fetches = key_fetches.clone();
            move || {
                fetches.fetch_add(1, Ordering::Relaxed);
                let jwks = jwks.clone();
                async move { axum::Json(jwks) }
            }
        };
        let app = Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(move || async move { axum::Json(discovery) }),
            )
            .route("/jwks", get(keys.clone()))
            .route("/{tenant}/discovery/v2.0/keys", get(keys));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        LocalIssuer {
            base,
            key,
            key_fetches,
        }
    }

    /// A compact JWS of `header` (plus `alg` and `kid`) and `claims` (plus `iat`/`exp`), really signed.
    fn sign(&self, header: Value, claims: Value) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut full_header = json!({ "alg": "RS256", "kid": KID });
        let mut full_claims = json!({ "iat": now, "exp": now + 600 });
        for (target, extra) in [(&mut full_header, header), (&mut full_claims, claims)] {
            if let (Some(target), Value::Object(extra)) = (target.as_object_mut(), extra) {
                target.extend(extra);
            }
        }
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(full_header.to_string()),
            URL_SAFE_NO_PAD.encode(full_claims.to_string())
        );
        let signature =
            jsonwebtoken::crypto::sign(input.as_bytes(), &self.key, Algorithm::RS256).unwrap();
        format!("{input}.{signature}")
    }

    fn oidc_settings(&self) -> AuthSettings {
        AuthSettings {
            mode: AuthMode::Oidc,
            oidc_issuer: Some(self.base.clone()),
            audiences: vec!["api://pgmcp-local".into()],
            ..AuthSettings::default()
        }
    }

    fn oidc_claims(&self) -> Value {
        json!({ "iss": self.base, "aud": "api://pgmcp-local", "sub": "svc-1", "client_id": "svc-1" })
    }

    fn entra_claims(&self) -> Value {
        json!({
            "iss": format!("{}/{TENANT}/v2.0", self.base), "aud": CLIENT_ID, "tid": TENANT, "ver": "2.0",
            "oid": AGENT_OID, "sub": AGENT_OID, "azp": AGENT_APP, "roles": [ROLE],
        })
    }
}

fn local_jwks(base: &str) -> String {
    format!("{base}/jwks")
}

#[tokio::test]
async fn unknown_critical_extensions_are_refused() {
    let issuer = LocalIssuer::start(local_jwks).await;
    let oidc = authenticator(&issuer.oidc_settings()).await;
    let entra = authenticator(&entra_settings(&issuer.base)).await;
    let claims = [
        (&oidc, issuer.oidc_claims()),
        (&entra, issuer.entra_claims()),
    ];
    for (auth, claims) in claims {
        // The same header without `crit` is accepted: only the extension makes the difference.
        check(auth, &issuer.sign(json!({ "typ": "JWT" }), claims.clone()))
            .await
            .unwrap_or_else(|e| panic!("plain token refused: {}", e.reason()));
        for crit in [
            json!({ "crit": ["urn:example:token-binding"], "urn:example:token-binding": "tb-1" }),
            json!({ "crit": ["exp"], "exp": 1 }),
            json!({ "crit": ["b64"], "b64": false }),
            json!({ "crit": [] }),
            json!({ "crit": "urn:example:token-binding" }),
        ] {
            let token = issuer.sign(crit.clone(), claims.clone());
            assert_refused(
                check(auth, &token).await,
                StatusCode::UNAUTHORIZED,
                "unsupported_critical_header",
            );
        }
    }
}

#[tokio::test]
async fn the_jose_type_must_be_an_access_token_type() {
    let issuer = LocalIssuer::start(local_jwks).await;
    let lenient = authenticator(&issuer.oidc_settings()).await;
    let mut strict_settings = issuer.oidc_settings();
    strict_settings.require_at_jwt = true;
    let strict = authenticator(&strict_settings).await;
    let claims = issuer.oidc_claims();
    for (typ, lenient_accepts, strict_accepts) in [
        (Some("at+jwt"), true, true),
        (Some("application/at+jwt"), true, true),
        (Some("AT+JWT"), true, true),
        (Some("JWT"), true, false),
        (None, true, false),
        (Some("logout+jwt"), false, false),
        (Some("secevent+jwt"), false, false),
        (Some("dpop+jwt"), false, false),
    ] {
        let header = typ.map_or(json!({}), |typ| json!({ "typ": typ }));
        let token = issuer.sign(header, claims.clone());
        for (auth, accepts, which) in [
            (&lenient, lenient_accepts, "lenient"),
            (&strict, strict_accepts, "strict"),
        ] {
            match check(auth, &token).await {
                Ok(_) => assert!(accepts, "{which} accepted typ {typ:?}"),
                Err(rejection) => {
                    assert!(
                        !accepts,
                        "{which} refused typ {typ:?}: {}",
                        rejection.reason()
                    );
                    assert_eq!(rejection.reason(), "not_an_access_token", "{which} {typ:?}");
                }
            }
        }
    }
    // An OpenID Connect ID token of the same issuer for a client whose id is the audience: refused by its type
    // under RFC 9068, and by its `nonce` either way.
    let mut id_token_claims = claims.clone();
    id_token_claims["nonce"] = json!("n-0S6_WzA2Mj");
    id_token_claims["auth_time"] = json!(1);
    let id_token = issuer.sign(json!({ "typ": "JWT" }), id_token_claims);
    for auth in [&lenient, &strict] {
        assert_refused(
            check(auth, &id_token).await,
            StatusCode::UNAUTHORIZED,
            "not_an_access_token",
        );
    }
}

#[tokio::test]
async fn a_real_rfc9068_provider_passes_the_strict_type_check() {
    let provider = Provider::start(vec![
        json!({ "client_id": "plain", "client_secret": SECRET }),
    ]);
    let token = provider.token("plain").await;
    assert_eq!(
        split(&token).0["typ"],
        "at+jwt",
        "oidc-provider issues RFC 9068 tokens"
    );
    let settings = AuthSettings {
        mode: AuthMode::Oidc,
        oidc_issuer: Some(provider.base.clone()),
        audiences: vec!["api://pgmcp-test".into()],
        require_at_jwt: true,
        ..AuthSettings::default()
    };
    check(&*authenticator(&settings).await, &token)
        .await
        .unwrap_or_else(|e| panic!("refused: {}", e.reason()));
}

/// Discovery may send pgmcp to fetch keys over plain HTTP only from this machine, judged by the parsed host: a
/// `jwks_uri` that merely starts like a loopback URL is refused before anything is fetched.
#[tokio::test]
async fn the_jwks_uri_is_judged_by_its_parsed_host() {
    let honest = LocalIssuer::start(local_jwks).await;
    check(
        &*authenticator(&honest.oidc_settings()).await,
        &honest.sign(json!({}), honest.oidc_claims()),
    )
    .await
    .expect("keys from a loopback jwks_uri");
    assert_eq!(honest.key_fetches.load(Ordering::Relaxed), 1);

    // `localhost` here is the user name; the host is the one after `@` (the same loopback server, so the old
    // prefix check would have fetched the keys and accepted the token).
    let disguised = LocalIssuer::start(|base| {
        format!(
            "http://localhost:@{}/jwks",
            base.trim_start_matches("http://")
        )
    })
    .await;
    let auth = authenticator(&disguised.oidc_settings()).await;
    assert_refused(
        check(&auth, &disguised.sign(json!({}), disguised.oidc_claims())).await,
        StatusCode::UNAUTHORIZED,
        "keys_unavailable",
    );
    assert_eq!(disguised.key_fetches.load(Ordering::Relaxed), 0);
    assert!(auth.stats().jwks_refresh_failures >= 1);
}
