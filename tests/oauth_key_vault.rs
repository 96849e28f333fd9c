//! The authorization server's secrets in Azure Key Vault — the loopback stand-in speaking Key Vault's REST API,
//! read by pgmcp with a service principal from the standard Azure variables:
//! - the signing key as a secret whose versions are its rotations: a new version is published (JWKS, trusted for
//!   verification) at once and signs only once it is a refresh interval old or past its `nbf`; a disabled version
//!   is retired, and what it signed is refused; a replica that has not loaded a key yet loads it when a token names
//!   it;
//! - the upstream certificate as a Key Vault certificate's PEM secret, followed as it is renewed;
//! - what cannot be read stops the start with the reason.
//!
//! The stand-in runs in the test's runtime while pgmcp processes call it, hence multi-threaded tests.

#[path = "identity_support/azure.rs"]
mod azure;
mod common;
mod oauth_support;
mod oidc_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use azure::{Principal, StandIn, TENANT, VaultAttributes, now};
use oauth_support::*;
use reqwest::StatusCode;
use serde_json::Value;

const REDIRECT: &str = "http://127.0.0.1/callback";
const SIGNING: &str = "pgmcp-signing";
const READER: &str = "pgmcp-vault-reader";
const READER_SECRET: &str = "vault-reader-secret-7731";

async fn vault_with_reader() -> StandIn {
    let azure = StandIn::start(Arc::new(|_: &str, _: &str| {})).await;
    azure.with(|s| {
        s.principals.push(Principal {
            client_id: READER.into(),
            oid: "vault-reader-oid".into(),
            secret: Some(READER_SECRET.into()),
            ..Principal::default()
        })
    });
    azure
}

/// The service principal that reads the vault, as the standard Azure variables name it.
fn reader_env(azure: &StandIn) -> Vec<(&'static str, String)> {
    vec![
        ("AZURE_TENANT_ID", TENANT.to_string()),
        ("AZURE_CLIENT_ID", READER.to_string()),
        ("AZURE_CLIENT_SECRET", READER_SECRET.to_string()),
        ("AZURE_AUTHORITY_HOST", azure.url.clone()),
    ]
}

async fn kids(base: &str) -> Vec<String> {
    get_json(&format!("{base}/oauth/jwks")).await["keys"]
        .as_array()
        .map(|keys| {
            keys.iter()
                .filter_map(|key| key["kid"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn kid_of(token: &str) -> String {
    oidc_support::split(token).0["kid"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Polls `check` until it is true, for at most 20 s.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Signs a new registered client in at `base`: its id and tokens.
async fn signed_in(base: &str) -> (String, Value) {
    let resource = format!("{base}/mcp");
    let client = register_at(base, REDIRECT).await;
    let back = Browser::default()
        .sign_in(
            &authorize_url_at(base, &resource, &client, REDIRECT, "kv"),
            REDIRECT,
        )
        .await;
    let code = query(&back, "code").unwrap_or_else(|| panic!("no code in {back}"));
    let (status, tokens) = redeem_at(base, &resource, &client, REDIRECT, &code).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    (client, tokens)
}

fn attributes(enabled: bool, created: u64, nbf: Option<u64>) -> VaultAttributes {
    VaultAttributes {
        enabled,
        created,
        nbf,
        exp: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_vault_signing_key_is_published_before_it_signs_and_retired_when_disabled() {
    let azure = vault_with_reader().await;
    let dir = tempfile::tempdir().unwrap();
    let (_, first_pem) = signing_key(dir.path(), "first.pem");
    let (_, second_pem) = signing_key(dir.path(), "second.pem");
    azure.with(|s| {
        s.vault.insert(SIGNING.into(), vec![first_pem]);
        // One version a page: finding the second one means following Key Vault's nextLink.
        s.vault_page_size = 1;
    });
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let provider = upstream_provider(&base);
    let server = replica_with(
        port,
        None,
        &provider,
        &format!("{}/secrets/{SIGNING}", azure.url),
        &["--oauth-upstream-client-secret", oidc_support::SECRET],
        "key_vault_refresh_seconds = 1\n",
        &reader_env(&azure),
    );

    let first_kids = kids(&base).await;
    assert_eq!(first_kids.len(), 1, "{first_kids:?}");
    let (client, tokens) = signed_in(&base).await;
    let first_access = tokens["access_token"].as_str().unwrap().to_string();
    assert_eq!(kid_of(&first_access), first_kids[0]);
    let mut refresh = tokens["refresh_token"].as_str().unwrap().to_string();

    // A new version that may not sign for an hour: published and trusted, but the first key still signs.
    azure.with(|s| {
        s.vault.get_mut(SIGNING).unwrap().push(second_pem);
        s.vault_attributes.insert(
            (SIGNING.into(), 2),
            attributes(true, now(), Some(now() + 3600)),
        );
    });
    eventually("publishing the new version", || async {
        kids(&base).await.len() == 2
    })
    .await;
    let second_kid = kids(&base)
        .await
        .into_iter()
        .find(|kid| *kid != first_kids[0])
        .unwrap();
    let (status, refreshed) = refresh_at(&base, &client, &refresh).await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");
    assert_eq!(
        kid_of(refreshed["access_token"].as_str().unwrap()),
        first_kids[0],
        "a version signs only once it is active"
    );
    refresh = refreshed["refresh_token"].as_str().unwrap().to_string();

    // Active (an hour old, no nbf): within a refresh interval it signs; the first key still verifies.
    azure.with(|s| {
        s.vault_attributes
            .insert((SIGNING.into(), 2), attributes(true, now() - 3600, None));
    });
    let mut second_access = first_access.clone();
    let deadline = Instant::now() + Duration::from_secs(20);
    while kid_of(&second_access) != second_kid {
        assert!(
            Instant::now() < deadline,
            "the new version did not start signing"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (status, refreshed) = refresh_at(&base, &client, &refresh).await;
        assert_eq!(status, StatusCode::OK, "{refreshed}");
        refresh = refreshed["refresh_token"].as_str().unwrap().to_string();
        second_access = refreshed["access_token"].as_str().unwrap().to_string();
    }
    assert_eq!(
        call_at(&server.mcp_url(), &first_access, "first-key")
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        call_at(&server.mcp_url(), &second_access, "second-key")
            .await
            .0,
        StatusCode::OK
    );

    // The first version disabled: it leaves the JWKS, and its token is refused (also the cached verdict).
    azure.with(|s| {
        s.vault_attributes
            .insert((SIGNING.into(), 1), attributes(false, 1, None));
    });
    eventually("retiring the disabled version", || async {
        kids(&base).await == vec![second_kid.clone()]
    })
    .await;
    assert_eq!(
        call_at(&server.mcp_url(), &first_access, "retired-key")
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call_at(&server.mcp_url(), &second_access, "current-key")
            .await
            .0,
        StatusCode::OK
    );
    // The refresh token sealed by the second key still works; the client registered under the first is gone.
    let (status, refreshed) = refresh_at(&base, &client, &refresh).await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");
    let resource = format!("{base}/mcp");
    let page = Browser::default()
        .get(&authorize_url_at(&base, &resource, &client, REDIRECT, "kv"))
        .await;
    assert_eq!(page.status(), StatusCode::BAD_REQUEST);
    assert!(
        azure.with(|s| s
            .requests
            .iter()
            .filter(|r| *r == "key_vault_versions")
            .count())
            >= 4,
        "the versions were listed again and again, page by page"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_loads_a_key_it_has_not_seen_when_a_token_names_it() {
    let azure = vault_with_reader().await;
    let dir = tempfile::tempdir().unwrap();
    let (_, first_pem) = signing_key(dir.path(), "first.pem");
    let (_, second_pem) = signing_key(dir.path(), "second.pem");
    azure.with(|s| {
        s.vault.insert(SIGNING.into(), vec![first_pem]);
    });
    let (port_a, port_b) = (free_port(), free_port());
    let public = format!("http://127.0.0.1:{port_a}");
    let provider = upstream_provider(&public);
    let key = format!("{}/secrets/{SIGNING}", azure.url);
    // An hour between reads: only a token naming an unknown key makes B look at the vault again.
    let config = "key_vault_refresh_seconds = 3600\n";
    let credential = ["--oauth-upstream-client-secret", oidc_support::SECRET];
    let b = replica_with(
        port_b,
        Some(&public),
        &provider,
        &key,
        &credential,
        config,
        &reader_env(&azure),
    );
    let b_base = format!("http://127.0.0.1:{port_b}");
    assert_eq!(kids(&b_base).await.len(), 1);

    // Rotated in the vault (already active), then A starts: it signs with the new version, B has never seen it.
    azure.with(|s| {
        s.vault.get_mut(SIGNING).unwrap().push(second_pem);
        s.vault_attributes
            .insert((SIGNING.into(), 2), attributes(true, now() - 7200, None));
    });
    let _a = replica_with(
        port_a,
        Some(&public),
        &provider,
        &key,
        &credential,
        config,
        &reader_env(&azure),
    );
    let (client, tokens) = signed_in(&public).await;
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(kids(&b_base).await.len(), 1, "B has not read the vault yet");
    assert!(!kids(&b_base).await.contains(&kid_of(access)));

    assert_eq!(
        call_at(&b.mcp_url(), access, "unknown-to-b").await.0,
        StatusCode::OK
    );
    assert_eq!(kids(&b_base).await.len(), 2);
    // B now also opens what A sealed with the new key.
    let (status, refreshed) =
        refresh_at(&b_base, &client, tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_certificate_in_key_vault_is_followed_as_it_is_renewed() {
    let azure = vault_with_reader().await;
    let dir = tempfile::tempdir().unwrap();
    let (key_path, _) = signing_key(dir.path(), "signing.pem");
    let (first_path, first_certificate) = certificate(dir.path(), "first");
    let (renewed_path, renewed_certificate) = certificate(dir.path(), "renewed");
    let (stranger_path, _) = certificate(dir.path(), "stranger");
    let pem = |path: &std::path::Path| std::fs::read_to_string(path).unwrap();
    azure.with(|s| {
        s.vault
            .insert("pgmcp-upstream".into(), vec![pem(&first_path)]);
        s.vault_content_types
            .insert("pgmcp-upstream".into(), "application/x-pem-file".into());
    });
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let resource = format!("{base}/mcp");
    // The app registration knows the first and the renewed certificate, not the stranger.
    let provider =
        upstream_provider_with_certificates(&base, &[&first_certificate, &renewed_certificate]);
    let certificate_url = format!("{}/secrets/pgmcp-upstream", azure.url);
    let _server = replica_with(
        port,
        None,
        &provider,
        &key_path.to_string_lossy(),
        &["--oauth-upstream-certificate", &certificate_url],
        "key_vault_refresh_seconds = 1\n",
        &reader_env(&azure),
    );
    let client = register_at(&base, REDIRECT).await;
    // Whether a sign-in ends with tokens: pgmcp redeems the provider's code, proving itself with the certificate.
    let outcome = || async {
        let back = Browser::default()
            .sign_in(
                &authorize_url_at(&base, &resource, &client, REDIRECT, "kv"),
                REDIRECT,
            )
            .await;
        let code = query(&back, "code").expect("a code");
        redeem_at(&base, &resource, &client, REDIRECT, &code)
            .await
            .0
            == StatusCode::OK
    };
    assert!(outcome().await, "signed in with the first certificate");

    // A certificate the registration does not know: once pgmcp has read it, sign-ins fail.
    azure.with(|s| {
        s.vault
            .get_mut("pgmcp-upstream")
            .unwrap()
            .push(pem(&stranger_path))
    });
    eventually("using the stranger certificate", || async {
        !outcome().await
    })
    .await;
    // Renewed with a registered one: sign-ins work again, without a restart.
    azure.with(|s| {
        s.vault
            .get_mut("pgmcp-upstream")
            .unwrap()
            .push(pem(&renewed_path))
    });
    eventually("using the renewed certificate", outcome).await;
}

/// What pgmcp cannot read from Key Vault at start stops it, naming the setting and the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_cannot_be_read_from_key_vault_stops_the_start() {
    let azure = vault_with_reader().await;
    let dir = tempfile::tempdir().unwrap();
    let (key_path, key_pem) = signing_key(dir.path(), "signing.pem");
    azure.with(|s| {
        s.vault.insert("not-a-key".into(), vec!["hello".into()]);
        s.vault.insert("pfx".into(), vec!["MIIK...".into()]);
        s.vault_content_types
            .insert("pfx".into(), "application/x-pkcs12".into());
        s.vault.insert("disabled".into(), vec![key_pem]);
        s.vault_attributes
            .insert(("disabled".into(), 1), attributes(false, 1, None));
    });
    let url = common::reader_url();
    let key_arg = key_path.to_string_lossy().to_string();
    let vault = |name: &str| format!("{}/secrets/{name}", azure.url);
    let run = |args: Vec<String>, env: Vec<(&'static str, String)>| {
        let url = url.clone();
        async move {
            let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_pgmcp"))
                .args([
                    "serve",
                    "--http",
                    "127.0.0.1:0",
                    "--database-url",
                    &url,
                    "--auth-mode",
                    "oidc",
                    "--oidc-issuer",
                    "http://127.0.0.1:9",
                    "--audience",
                    "http://127.0.0.1:9/mcp",
                    "--oauth-server",
                    "--oauth-upstream-client-id",
                    "app",
                ])
                .args(&args)
                .envs(env)
                .env_remove("PGMCP_OAUTH_UPSTREAM_CLIENT_SECRET")
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true)
                .output();
            let output = tokio::time::timeout(Duration::from_secs(60), output)
                .await
                .expect("pgmcp stops within 60 s")
                .expect("run pgmcp");
            assert!(!output.status.success(), "{args:?}: must not start");
            String::from_utf8_lossy(&output.stderr).to_string()
        }
    };
    let secret_args = |key: String| {
        vec![
            "--oauth-upstream-client-secret".to_string(),
            "s".to_string(),
            "--oauth-signing-key".to_string(),
            key,
        ]
    };
    for (name, expected) in [
        ("missing", "Key Vault has no secret missing"),
        ("not-a-key", "holds no PEM"),
        ("pfx", "application/x-pem-file"),
        ("disabled", "no enabled, unexpired version"),
    ] {
        let stderr = run(secret_args(vault(name)), reader_env(&azure)).await;
        assert!(stderr.contains(expected), "{name}: {stderr}");
        assert!(stderr.contains("oauth-signing-key"), "{name}: {stderr}");
        assert!(!stderr.contains(READER_SECRET), "{stderr}");
    }

    // The upstream certificate as PKCS#12, and a reader the vault's token service does not know.
    let stderr = run(
        vec![
            "--oauth-signing-key".into(),
            key_arg.clone(),
            "--oauth-upstream-certificate".into(),
            vault("pfx"),
        ],
        reader_env(&azure),
    )
    .await;
    assert!(
        stderr.contains("--oauth-upstream-certificate") && stderr.contains("PKCS#12"),
        "{stderr}"
    );
    let mut stranger = reader_env(&azure);
    stranger[2].1 = "wrong-secret".into();
    let stderr = run(secret_args(vault("not-a-key")), stranger).await;
    assert!(stderr.contains("AADSTS7000215"), "{stderr}");
    assert!(!stderr.contains("wrong-secret"), "{stderr}");
}
