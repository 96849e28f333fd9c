//! Credentials over time, in process against the real cluster: short-lived tokens rotate while a load runs
//! (no call fails, old sessions keep working, new ones log in with the new token), a rotated Key Vault secret
//! is picked up after the server refuses the old one, and a token-service outage is retried and then reported
//! clearly without secrets.

mod identity_support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use identity_support::azure::TENANT;
use identity_support::{Principal, assert_no_secrets, create_role, fixture, stand_in};
use pgmcp::config::{ConnSettings, Profile};
use pgmcp::db::Database;
use pgmcp::identity::{DbAuth, EntraCredentialKind};

fn profile(user: &str, auth: DbAuth, credential: EntraCredentialKind) -> Profile {
    let mut profile = Profile::new("azure", ConnSettings::parse(&fixture().url(user)).unwrap());
    profile.identity.db_auth = auth;
    profile.identity.entra_credential = credential;
    profile.identity.token_host_allow = vec!["127.0.0.1".into()];
    profile.pool_max = 8;
    profile.connect_timeout = Duration::from_secs(10);
    profile
}

fn env_fn(vars: HashMap<&'static str, String>) -> impl Fn(&str) -> Option<String> {
    let home = fixture().home();
    move |name: &str| {
        if name == "HOME" {
            Some(home.clone())
        } else {
            vars.get(name).cloned()
        }
    }
}

async fn current_user(client: &tokio_postgres::Client) -> Result<String, tokio_postgres::Error> {
    Ok(client
        .query_one("SELECT current_user::text", &[])
        .await?
        .get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn short_lived_tokens_rotate_under_load() {
    create_role("rotating-mi");
    let azure = stand_in().await;
    azure.with(|s| {
        s.token_lifetime_s = 6;
        s.managed.insert(
            None,
            Principal {
                client_id: "c".into(),
                oid: "rot-oid".into(),
                role: Some("rotating-mi".into()),
                ..Principal::default()
            },
        );
    });
    let env = env_fn(HashMap::from([(
        "PGMCP_IMDS_ENDPOINT",
        format!("{}/metadata/identity/oauth2/token", azure.url),
    )]));
    let db = Arc::new(
        Database::with_env(
            profile(
                "rotating-mi",
                DbAuth::Entra,
                EntraCredentialKind::ManagedIdentity,
            ),
            &env,
        )
        .unwrap(),
    );

    // Sessions opened with the first token, used throughout.
    let old = [db.get().await.unwrap(), db.get().await.unwrap()];
    let first_token_count = azure.with(|s| s.issued.len());
    assert_eq!(first_token_count, 1);

    let failures = Arc::new(AtomicUsize::new(0));
    let calls = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut tasks = Vec::new();
    for worker in 0..4 {
        let (db, failures, calls) = (db.clone(), failures.clone(), calls.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                // Half the workers open brand-new sessions (each a fresh login); half use the pool.
                let outcome = if worker % 2 == 0 {
                    match db.connector().connect().await {
                        Ok(client) => current_user(&client).await.map_err(|e| e.to_string()),
                        Err(error) => Err(error.to_string()),
                    }
                } else {
                    match db.get().await {
                        Ok(client) => current_user(&client).await.map_err(|e| e.to_string()),
                        Err(error) => Err(error.to_string()),
                    }
                };
                calls.fetch_add(1, Ordering::Relaxed);
                match outcome {
                    Ok(user) => assert_eq!(user, "rotating-mi"),
                    Err(error) => {
                        eprintln!("call failed: {error}");
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
    }
    while Instant::now() < deadline {
        for session in &old {
            assert_eq!(
                current_user(session).await.unwrap(),
                "rotating-mi",
                "an old session stopped working"
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for task in tasks {
        task.await.unwrap();
    }
    let tokens = azure.with(|s| s.issued.len());
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "calls failed during rotation"
    );
    let calls = calls.load(Ordering::Relaxed);
    eprintln!("{calls} calls, {} tokens", azure.with(|s| s.issued.len()));
    assert!(calls > 20, "the load ran ({calls} calls)");
    assert!(
        tokens >= 3,
        "tokens were refreshed ahead of expiry ({tokens} issued in 10 s with a 6 s lifetime)"
    );
    // Every token PostgreSQL accepted was the latest one: a new session now logs in with the current token.
    let fresh = db.connector().connect().await.unwrap();
    assert_eq!(current_user(&fresh).await.unwrap(), "rotating-mi");
}

#[tokio::test]
async fn rotated_key_vault_secret_is_read_again_after_a_refusal() {
    let f = fixture();
    create_role("kv-rotating");
    f.set_password("kv-rotating", "first-password-1111");
    let azure = stand_in().await;
    azure.with(|s| {
        s.vault
            .insert("db".into(), vec!["first-password-1111".into()]);
        s.principals.push(Principal {
            client_id: "kv-app".into(),
            oid: "kv-oid".into(),
            secret: Some("kv-secret-2222".into()),
            ..Principal::default()
        });
    });
    let env = env_fn(HashMap::from([
        ("AZURE_TENANT_ID", TENANT.to_string()),
        ("AZURE_CLIENT_ID", "kv-app".to_string()),
        ("AZURE_CLIENT_SECRET", "kv-secret-2222".to_string()),
        ("AZURE_AUTHORITY_HOST", azure.url.clone()),
    ]));
    let mut profile = profile(
        "kv-rotating",
        DbAuth::KeyVault,
        EntraCredentialKind::ClientSecret,
    );
    profile.identity.key_vault_url = Some(azure.url.clone());
    profile.identity.key_vault_secret = Some("db".into());
    let db = Database::with_env(profile, &env).unwrap();

    let held = db.get().await.unwrap();
    assert_eq!(current_user(&held).await.unwrap(), "kv-rotating");
    let _second = db.connector().connect().await.unwrap();
    assert_eq!(azure.with(|s| s.secret_reads), 1, "the secret is cached");

    // Rotation: the database and the vault move to a new password.
    f.set_password("kv-rotating", "second-password-3333");
    azure.with(|s| {
        s.vault
            .get_mut("db")
            .unwrap()
            .push("second-password-3333".into())
    });
    let fresh = db
        .connector()
        .connect()
        .await
        .expect("the new secret is picked up without a restart");
    assert_eq!(current_user(&fresh).await.unwrap(), "kv-rotating");
    assert_eq!(
        current_user(&held).await.unwrap(),
        "kv-rotating",
        "the open session is unaffected"
    );
    assert_eq!(azure.with(|s| s.secret_reads), 2);
}

#[tokio::test]
async fn token_service_outage_is_retried_then_reported() {
    create_role("outage-mi");
    let azure = stand_in().await;
    azure.with(|s| {
        s.managed.insert(
            None,
            Principal {
                client_id: "c".into(),
                oid: "o".into(),
                role: Some("outage-mi".into()),
                ..Principal::default()
            },
        );
        s.fail_next = 2;
    });
    let env = env_fn(HashMap::from([(
        "PGMCP_IMDS_ENDPOINT",
        format!("{}/metadata/identity/oauth2/token", azure.url),
    )]));
    let db = Database::with_env(
        profile(
            "outage-mi",
            DbAuth::Entra,
            EntraCredentialKind::ManagedIdentity,
        ),
        &env,
    )
    .unwrap();
    let client = db.get().await.expect("two 503s are retried");
    assert_eq!(current_user(&client).await.unwrap(), "outage-mi");
    assert_eq!(azure.with(|s| s.requests.len()), 3);

    azure.with(|s| s.fail_next = 1000);
    let down = Database::with_env(
        profile(
            "outage-mi",
            DbAuth::Entra,
            EntraCredentialKind::ManagedIdentity,
        ),
        &env,
    )
    .unwrap();
    let started = Instant::now();
    let error = down.get().await.unwrap_err().to_string();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the retries are bounded"
    );
    assert!(error.contains("database credential unavailable"), "{error}");
    assert!(
        error.contains("Instance Metadata Service is unavailable after 4 attempts: HTTP 503"),
        "{error}"
    );
    let raw = down.connector().connect().await.unwrap_err();
    assert!(pgmcp::db::connect::credential_failure_of(&raw).is_some());
    assert_no_secrets(&error, &azure.secrets());
}
