//! pgmcp's app proving itself to the provider with a certificate when `/callback` redeems a sign-in: a PS256
//! client assertion naming the certificate by `x5t#S256`, as Entra's certificate credentials require. The provider
//! is the repository's real OpenID provider (oidc-provider), which accepts the assertion only if it verifies with
//! a registered certificate's key and names that certificate (`private_key_jwt`).

mod common;
mod oauth_support;
mod oidc_support;

use oauth_support::*;
use reqwest::StatusCode;

const REDIRECT: &str = "http://127.0.0.1/callback";

async fn sign_in(base: &str, resource: &str, client: &str) -> reqwest::Url {
    Browser::default()
        .sign_in(
            &authorize_url_at(base, resource, client, REDIRECT, "cert"),
            REDIRECT,
        )
        .await
}

#[tokio::test]
async fn a_certificate_from_a_file_signs_people_in_end_to_end() {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let resource = format!("{base}/mcp");
    let dir = tempfile::tempdir().unwrap();
    let (key_path, _) = signing_key(dir.path(), "signing.pem");
    let (pem_path, certificate_pem) = certificate(dir.path(), "pgmcp-upstream");
    let provider = upstream_provider_with_certificates(&base, &[&certificate_pem]);
    let pem_arg = pem_path.to_string_lossy().to_string();
    // No --oauth-upstream-credential: a certificate alone means the certificate.
    let server = replica_with(
        port,
        None,
        &provider,
        &key_path.to_string_lossy(),
        &["--oauth-upstream-certificate", &pem_arg],
        "",
        &[],
    );

    let client = register_at(&base, REDIRECT).await;
    let back = sign_in(&base, &resource, &client).await;
    assert_eq!(query(&back, "error"), None, "{back}");
    let code = query(&back, "code").expect("a code");
    let (status, tokens) = redeem_at(&base, &resource, &client, REDIRECT, &code).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let (status, body) = call_at(
        &server.mcp_url(),
        tokens["access_token"].as_str().unwrap(),
        "signed-in-with-a-certificate",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("signed-in-with-a-certificate"), "{body}");
    assert_eq!(
        server
            .audit_lines_with("signed-in-with-a-certificate")
            .len(),
        1
    );
}

#[tokio::test]
async fn a_certificate_the_provider_does_not_know_gets_no_tokens() {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let resource = format!("{base}/mcp");
    let dir = tempfile::tempdir().unwrap();
    let (key_path, _) = signing_key(dir.path(), "signing.pem");
    let (_, registered) = certificate(dir.path(), "registered");
    let (other_path, _) = certificate(dir.path(), "not-registered");
    let provider = upstream_provider_with_certificates(&base, &[&registered]);
    let other = other_path.to_string_lossy().to_string();
    let _server = replica_with(
        port,
        None,
        &provider,
        &key_path.to_string_lossy(),
        &[
            "--oauth-upstream-credential",
            "certificate",
            "--oauth-upstream-certificate",
            &other,
        ],
        "",
        &[],
    );

    let client = register_at(&base, REDIRECT).await;
    let back = sign_in(&base, &resource, &client).await;
    let code = query(&back, "code").expect("a code");
    // pgmcp redeems the provider's code when the client redeems its own: the provider refuses the assertion.
    let (status, refused) = redeem_at(&base, &resource, &client, REDIRECT, &code).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert_eq!(refused["error"], "invalid_grant", "{refused}");
    assert!(refused.get("access_token").is_none());
}

/// A bad certificate setting stops the start, naming the setting.
#[test]
fn a_bad_certificate_fails_at_start_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let (key_path, key_pem) = signing_key(dir.path(), "signing.pem");
    let key_only = dir.path().join("key-only.pem");
    std::fs::write(&key_only, key_pem).unwrap();
    let url = common::reader_url();
    let key_arg = key_path.to_string_lossy().to_string();
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
        "--oauth-upstream-client-id",
        "app",
        "--oauth-signing-key",
        &key_arg,
    ];
    let missing = dir.path().join("missing.pem").to_string_lossy().to_string();
    let key_only = key_only.to_string_lossy().to_string();
    for (extra, expected) in [
        (
            vec!["--oauth-upstream-certificate", &missing],
            "cannot read `--oauth-upstream-certificate`",
        ),
        (
            vec!["--oauth-upstream-certificate", &key_only],
            "holds no PEM certificate",
        ),
        (
            vec!["--oauth-upstream-credential", "certificate"],
            "`--oauth-upstream-certificate` (or `oauth.upstream_certificate`)",
        ),
        (
            vec![
                "--oauth-upstream-certificate",
                "https://contoso.vault.azure.net/keys/upstream",
            ],
            "never leaves the vault",
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
    }
}
