//! Every way the authorization server (`--oauth-server`) must say no, through the real binary and a real sign-in:
//! codes bound to their verifier, client and redirect URI and used once; no redirect to a place the client did not
//! register; a consent form that needs its token and its browser; pgmcp's tokens checked like any other; refresh
//! tokens that rotate; and a registration flood that is slowed down.

mod common;
mod oauth_support;
mod oidc_support;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use oauth_support::*;
use oidc_support::*;
use reqwest::StatusCode;
use reqwest::header::{LOCATION, WWW_AUTHENTICATE};
use serde_json::{Value, json};

const REDIRECT: &str = "http://127.0.0.1/callback";
/// The same loopback redirect URI on the port the native app picked (RFC 8252 §7.3).
const REDIRECT_ON_PORT: &str = "http://127.0.0.1:41234/callback";

fn error_of(answer: &(StatusCode, Value)) -> (StatusCode, String, String) {
    (
        answer.0,
        answer.1["error"].as_str().unwrap_or_default().to_string(),
        answer.1["error_description"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

#[tokio::test]
async fn codes_are_bound_to_their_verifier_client_and_redirect_and_used_once() {
    let setup = start("");
    let client = setup.register(REDIRECT).await;
    let code = setup.code(&client, REDIRECT_ON_PORT).await;

    let wrong_verifier = setup
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("client_id", &client),
            ("redirect_uri", REDIRECT_ON_PORT),
            (
                "code_verifier",
                "another-verifier-that-is-long-enough-0123456789",
            ),
        ])
        .await;
    let (status, error, why) = error_of(&wrong_verifier);
    assert_eq!(
        (status, error.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_grant")
    );
    assert!(why.contains("code_verifier"), "{why}");

    let other_redirect = setup.redeem(&client, REDIRECT, &code).await;
    assert!(
        error_of(&other_redirect).2.contains("redirect_uri"),
        "{other_redirect:?}"
    );
    let other_client = setup.register(REDIRECT).await;
    let stolen = setup.redeem(&other_client, REDIRECT_ON_PORT, &code).await;
    assert!(error_of(&stolen).2.contains("another client"), "{stolen:?}");
    let other_resource = setup
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("client_id", &client),
            ("redirect_uri", REDIRECT_ON_PORT),
            ("code_verifier", VERIFIER),
            ("resource", "http://127.0.0.1:1/mcp"),
        ])
        .await;
    assert_eq!(error_of(&other_resource).1, "invalid_target");

    // None of the refusals spent the code; the right request does, once.
    let first = setup.redeem(&client, REDIRECT_ON_PORT, &code).await;
    assert_eq!(first.0, StatusCode::OK, "{first:?}");
    let (status, _) = setup
        .call(first.1["access_token"].as_str().unwrap(), "first-use")
        .await;
    assert_eq!(status, StatusCode::OK);
    let again = setup.redeem(&client, REDIRECT_ON_PORT, &code).await;
    let (status, error, why) = error_of(&again);
    assert_eq!(
        (status, error.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_grant")
    );
    assert!(why.contains("already been used"), "{why}");
    // The replayed code revoked what it had been exchanged for.
    let refresh = refresh_at(
        &setup.base,
        &client,
        first.1["refresh_token"].as_str().unwrap(),
    )
    .await;
    assert_eq!(error_of(&refresh).1, "invalid_grant", "{refresh:?}");
}

#[tokio::test]
async fn authorize_never_redirects_where_the_client_did_not_register() {
    let setup = start("");
    let client = setup.register(REDIRECT).await;
    let browser = Browser::default();
    for (case, url) in [
        (
            "redirect URI mismatch",
            setup.authorize_url(&client, "http://127.0.0.1/elsewhere", "s"),
        ),
        (
            "another host",
            setup.authorize_url(&client, "https://evil.example/callback", "s"),
        ),
        (
            "unknown client",
            setup.authorize_url("no-such-client", REDIRECT, "s"),
        ),
        (
            "forged registration",
            setup.authorize_url(
                "pgmcp-client.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                REDIRECT,
                "s",
            ),
        ),
    ] {
        let response = browser.get(&url).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{case}");
        assert!(
            response.headers().get(LOCATION).is_none(),
            "{case}: no redirect"
        );
        let page = response.text().await.unwrap();
        assert!(page.contains("Sign-in stopped"), "{case}: {page}");
    }
    // With client and redirect URI known, a bad request goes back to the client, with the error and `iss`.
    let plain_pkce = setup
        .authorize_url(&client, REDIRECT, "s")
        .replace("code_challenge_method=S256", "code_challenge_method=plain");
    let response = browser.get(&plain_pkce).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let location = response.headers()[LOCATION].to_str().unwrap().to_string();
    assert!(
        location.starts_with(REDIRECT) && location.contains("error=invalid_request"),
        "{location}"
    );
}

#[tokio::test]
async fn the_consent_form_needs_its_token_and_the_browser_that_saw_it() {
    let setup = start("");
    let client = setup.register(REDIRECT).await;
    let browser = Browser::default();
    let page = browser
        .get(&setup.authorize_url(&client, REDIRECT, "s"))
        .await;
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    let consent = consent_token(&page.text().await.unwrap()).expect("a consent form");
    let action = format!("{}/authorize", setup.base);

    let no_token = browser.post_form(&action, &[("decision", "allow")]).await;
    assert_eq!(no_token.status(), StatusCode::FORBIDDEN);
    assert!(no_token.headers().get(LOCATION).is_none());
    assert!(no_token.text().await.unwrap().contains("no consent token"));

    let elsewhere = Browser::default();
    let other_browser = elsewhere
        .post_form(&action, &[("consent", &consent), ("decision", "allow")])
        .await;
    assert_eq!(other_browser.status(), StatusCode::FORBIDDEN);
    assert!(other_browser.headers().get(LOCATION).is_none());

    let denied = browser
        .post_form(&action, &[("consent", &consent), ("decision", "deny")])
        .await;
    let location = denied.headers()[LOCATION].to_str().unwrap().to_string();
    assert!(location.contains("error=access_denied"), "{location}");
}

fn sign(pem: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.typ = Some("at+jwt".into());
    let key = EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

#[tokio::test]
async fn pgmcp_tokens_are_verified_like_any_other() {
    let setup = start("");
    let client = setup.register(REDIRECT).await;
    let code = setup.code(&client, REDIRECT).await;
    let (status, tokens) = setup.redeem(&client, REDIRECT, &code).await;
    assert_eq!(status, StatusCode::OK);
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(setup.call(access, "own-token").await.0, StatusCode::OK);
    assert_eq!(setup.server.audit_lines_with("own-token").len(), 1);

    let (_, claims, signature) = split(access);
    let now = chrono::Utc::now().timestamp();
    let dir = tempfile::tempdir().unwrap();
    let (_, other_pem) = signing_key(dir.path(), "other.pem");
    let mut expired = claims.clone();
    expired["iat"] = json!(now - 4000);
    expired["nbf"] = json!(now - 4000);
    expired["exp"] = json!(now - 3000);
    let mut other_resource = claims.clone();
    other_resource["aud"] = json!("http://127.0.0.1:1/mcp");
    let mut altered = claims.clone();
    altered["oid"] = json!(AGENT_OID);
    let unsigned_header = json!({ "alg": "none", "typ": "at+jwt" });
    for (case, token) in [
        (
            "altered claims",
            join(&split(access).0, &altered, &signature),
        ),
        ("unsigned", join(&unsigned_header, &claims, "")),
        ("signed by another key", sign(&other_pem, &claims)),
        ("expired", sign(&setup.key_pem, &expired)),
        (
            "for another resource",
            sign(&setup.key_pem, &other_resource),
        ),
    ] {
        let marker = format!("refused-{}", case.replace(' ', "-"));
        let (status, _) = setup.call(&token, &marker).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}");
        assert!(
            setup.server.audit_lines_with(&marker).is_empty(),
            "{case}: the tool did not run"
        );
    }
    // A token signed with pgmcp's key and unchanged claims is accepted: the refusals above were the changes.
    assert_eq!(
        setup
            .call(&sign(&setup.key_pem, &claims), "re-signed")
            .await
            .0,
        StatusCode::OK
    );
    // Side by side: an agent's token from the provider itself (client credentials) is still accepted.
    let agent: Value = http()
        .post(format!("{}/token", setup.provider.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=client_credentials&client_id={UPSTREAM_CLIENT}&client_secret={SECRET}&scope=mcp.access&resource={}",
            urlencode(&setup.resource)
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let agent_token = agent["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{agent}"));
    assert_eq!(split(agent_token).1["iss"], setup.provider.base);
    assert_eq!(
        setup.call(agent_token, "provider-token").await.0,
        StatusCode::OK
    );
    let challenge = http()
        .post(&setup.resource)
        .send()
        .await
        .unwrap()
        .headers()
        .get(WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    assert!(challenge.contains("resource_metadata="), "{challenge}");
    let prm: Value = http()
        .get(format!(
            "{}/.well-known/oauth-protected-resource/mcp",
            setup.base
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(prm["authorization_servers"], json!([setup.base]));
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_spent_one_revokes_the_family() {
    let setup = start("");
    let client = setup.register(REDIRECT).await;
    let code = setup.code(&client, REDIRECT).await;
    let (_, first) = setup.redeem(&client, REDIRECT, &code).await;
    let refresh = |token: String| {
        let (base, client) = (setup.base.clone(), client.clone());
        async move { refresh_at(&base, &client, &token).await }
    };
    let old = first["refresh_token"].as_str().unwrap().to_string();
    let (status, second) = refresh(old.clone()).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    let new = second["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(new, old, "refresh tokens rotate");
    assert_eq!(
        setup
            .call(second["access_token"].as_str().unwrap(), "refreshed")
            .await
            .0,
        StatusCode::OK
    );

    let reuse = refresh(old).await;
    let (status, error, why) = error_of(&reuse);
    assert_eq!(
        (status, error.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_grant")
    );
    assert!(why.contains("already been used"), "{why}");
    let after = refresh(new).await;
    assert_eq!(
        error_of(&after).1,
        "invalid_grant",
        "the whole family is revoked"
    );
}

#[tokio::test]
async fn revoking_a_refresh_token_ends_it() {
    let setup = start("");
    let client = setup.register(REDIRECT).await;
    let code = setup.code(&client, REDIRECT).await;
    let (_, tokens) = setup.redeem(&client, REDIRECT, &code).await;
    let refresh_token = tokens["refresh_token"].as_str().unwrap();
    let response = http()
        .post(format!("{}/revoke", setup.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={}", urlencode(refresh_token)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let after = refresh_at(&setup.base, &client, refresh_token).await;
    assert_eq!(error_of(&after).1, "invalid_grant");
}

#[tokio::test]
async fn a_registration_flood_is_slowed_down() {
    let setup = start("registrations_per_minute = 3\n");
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let response = http()
            .post(format!("{}/register", setup.base))
            .json(&json!({ "client_name": "flood", "redirect_uris": [REDIRECT] }))
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, vec![201, 201, 201, 429, 429, 429]);
    // Registrations that got through still work: nothing was stored, so nothing was lost.
    let metadata = get_json(&format!(
        "{}/.well-known/oauth-authorization-server",
        setup.base
    ))
    .await;
    assert_eq!(metadata["issuer"], setup.base);
    assert_eq!(
        metadata["code_challenge_methods_supported"],
        json!(["S256"])
    );
    assert_eq!(
        metadata["client_id_metadata_document_supported"],
        json!(true)
    );
    assert_eq!(
        metadata["authorization_response_iss_parameter_supported"],
        json!(true)
    );
    assert_eq!(
        metadata["registration_endpoint"],
        format!("{}/register", setup.base)
    );
    // Browser-based clients (the Inspector) may call the token endpoint from their own origin.
    let preflight = http()
        .request(reqwest::Method::OPTIONS, format!("{}/token", setup.base))
        .header("origin", "http://localhost:6274")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), StatusCode::NO_CONTENT);
    assert_eq!(preflight.headers()["access-control-allow-origin"], "*");
}

/// A bad `--oauth-server` configuration stops the start, naming the setting and the fix.
#[test]
fn bad_configuration_fails_at_start_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_key = dir.path().join("not-a-key.pem");
    std::fs::write(&not_a_key, "hello").unwrap();
    let not_a_key = not_a_key.to_string_lossy().to_string();
    let url = common::reader_url();
    let base = [
        "serve",
        "--http",
        "127.0.0.1:0",
        "--database-url",
        url.as_str(),
        "--auth-mode",
        "oidc",
        "--oidc-issuer",
        "http://127.0.0.1:9",
        "--audience",
        "http://127.0.0.1:9/mcp",
        "--oauth-server",
    ];
    for (extra, expected) in [
        (
            vec![
                "--oauth-upstream-client-secret",
                "s",
                "--oauth-signing-key",
                &not_a_key,
            ],
            "--oauth-upstream-client-id",
        ),
        (
            vec![
                "--oauth-upstream-client-id",
                "app",
                "--oauth-signing-key",
                &not_a_key,
            ],
            "PGMCP_OAUTH_UPSTREAM_CLIENT_SECRET",
        ),
        (
            vec![
                "--oauth-upstream-client-id",
                "app",
                "--oauth-upstream-client-secret",
                "s",
                "--oauth-signing-key",
                &not_a_key,
            ],
            "openssl genpkey",
        ),
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_pgmcp"))
            .args(base)
            .args(&extra)
            .env_remove("PGMCP_OAUTH_UPSTREAM_CLIENT_SECRET")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run pgmcp");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{expected}: must not start");
        assert!(stderr.contains(expected), "{expected}: {stderr}");
        assert!(!stderr.contains("listening on"), "{stderr}");
    }
}

#[tokio::test]
async fn a_configured_client_signs_in_and_a_pre_approved_one_skips_the_consent_page() {
    let setup = start(
        "[[oauth.clients]]\nclient_id = \"console\"\nname = \"Console\"\nredirect_uris = [\"http://127.0.0.1/callback\"]\npre_approved = true\n\
         [[oauth.clients]]\nclient_id = \"tool\"\nredirect_uris = [\"http://127.0.0.1/callback\"]\n",
    );
    let first = Browser::default()
        .get(&setup.authorize_url("console", REDIRECT, "s"))
        .await;
    assert_eq!(first.status(), StatusCode::SEE_OTHER);
    let location = first.headers()[LOCATION].to_str().unwrap().to_string();
    assert!(location.starts_with(&setup.provider.base), "{location}");
    let consent = Browser::default()
        .get(&setup.authorize_url("tool", REDIRECT, "s"))
        .await;
    assert_eq!(
        consent.status(),
        StatusCode::OK,
        "not pre-approved: consent first"
    );

    let code = setup.code("console", REDIRECT).await;
    let (status, tokens) = setup.redeem("console", REDIRECT, &code).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(
        split(tokens["access_token"].as_str().unwrap()).1["client_id"],
        "console"
    );
}
