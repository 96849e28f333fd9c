//! The secret sources failing during a refresh: the managed identity endpoint that issues pgmcp's database token
//! (the loopback stand-in speaking the IMDS wire format), and the identity provider's signing keys (the real test
//! OpenID provider, reached through the loopback proxy so it can be cut off and brought back).

use std::time::{Duration, Instant};

use serde_json::Value;

use super::*;
use crate::fault_support::proxy::{Mode, Proxy};
use crate::fault_support::{shared_cluster, wait_for};
use crate::identity_support::{Principal, create_role, fixture, stand_in};
use crate::oidc_support::{Provider, entra_clients};

/// How long after the token service or the key endpoint is back the failure may still show: one backoff step.
const REFRESH_RECOVERY_BOUND: Duration = Duration::from_secs(8);

/// Terminates pgmcp's sessions, so that the next call logs in anew, and waits (in the same psql run) until they
/// are gone.
async fn terminate(application_name: &str) {
    let sql = format!(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = '{application_name}';
         DO $$ BEGIN
           FOR attempt IN 1..100 LOOP
             PERFORM pg_stat_clear_snapshot();
             EXIT WHEN NOT EXISTS (SELECT FROM pg_stat_activity WHERE application_name = '{application_name}');
             PERFORM pg_sleep(0.02);
           END LOOP;
         END $$;"
    );
    tokio::task::spawn_blocking(move || fixture().psql(&sql))
        .await
        .unwrap();
    // pgmcp's side of a terminated session learns of it from the server's last message, a moment later.
    tokio::time::sleep(Duration::from_millis(100)).await;
}

async fn current_user(client: &reqwest::Client, url: &str) -> (Value, Duration) {
    let (status, answer, took, _) = execute(client, url, None, "SELECT current_user::text").await;
    assert_eq!(status, 200, "{answer}");
    (answer, took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_token_service_is_survived_on_the_cached_token_and_shows_everywhere() {
    let role = "faults-mi";
    let name = "faults-credential";
    tokio::task::spawn_blocking(|| create_role("faults-mi"))
        .await
        .unwrap();
    let azure = stand_in().await;
    azure.with(|s| {
        // Refreshed when 12 s are left and no longer used when 2 s are: the test sees both within seconds.
        s.token_lifetime_s = 24;
        s.managed.insert(
            None,
            Principal {
                client_id: "faults-client".into(),
                oid: "faults-oid".into(),
                role: Some(role.into()),
                ..Principal::default()
            },
        );
    });
    let mut settings = Settings::new(0, name);
    settings.url = fixture().url(role);
    settings.pool_max = 2;
    // A TLS and SCRAM login of a debug build on a busy machine can take a second.
    settings.connect_timeout = "5s";
    settings.profile = "db_auth = \"entra\"\nentra_credential = \"managed_identity\"\n\
                        token_host_allow = [\"127.0.0.1\"]\n"
        .into();
    let config = settings.write();
    let imds = format!("{}/metadata/identity/oauth2/token", azure.url);
    let home = fixture().home();
    let server = serve_http(&config, &[("PGMCP_IMDS_ENDPOINT", &imds), ("HOME", &home)]);
    let url = server.mcp_url();
    let client = http_support::http();
    let started = Instant::now();
    let (answer, _) = current_user(&client, &url).await;
    assert_eq!(tool_error(&answer), Value::Null, "{answer}");
    assert_eq!(azure.with(|s| s.issued.len()), 1);

    // The token service fails from now on. Past the refresh point, new sessions still log in with the cached token.
    azure.with(|s| s.fail_next = 100_000);
    tokio::time::sleep(Duration::from_secs(13).saturating_sub(started.elapsed())).await;
    terminate(name).await;
    let (answer, took) = current_user(&client, &url).await;
    assert_eq!(
        tool_error(&answer),
        Value::Null,
        "the cached token still logs in: {answer}"
    );
    // The login did not wait for the token service: the refresh runs beside it.
    assert!(took < Duration::from_secs(2), "the login waited {took:?}");
    wait_for(
        Duration::from_secs(8),
        "the failed refresh shows in readyz",
        || async { readyz(&server).await.1.contains("database credential") },
    )
    .await;
    let (status, body) = readyz(&server).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.starts_with("ok\ndatabase credential: the last 1 token refreshes failed; the cached token is valid for"),
        "{body}"
    );
    let scraped = metrics(&server).await;
    assert_eq!(
        sample(
            &scraped,
            "pgmcp_db_credential_refresh_failures_total{profile=\"main\"}"
        ),
        Some(1.0),
        "{scraped}"
    );
    assert!(
        server
            .log()
            .contains("could not refresh the access token; using the current one while it lasts"),
        "{}",
        server.log()
    );
    // Retried with backoff: three more logins in quick succession ask the service at most once more.
    let asked = azure.with(|s| s.requests.len());
    for _ in 0..3 {
        terminate(name).await;
        let (answer, _) = current_user(&client, &url).await;
        assert_eq!(tool_error(&answer), Value::Null, "{answer}");
    }
    let asked_again = azure.with(|s| s.requests.len()) - asked;
    assert!(
        asked_again <= 4,
        "three logins within the backoff asked the token service {asked_again} times"
    );

    // Once the cached token has expired, logins fail, saying why.
    let expired = Duration::from_secs(23);
    assert!(
        started.elapsed() < expired,
        "the machine is too slow for this test's timing"
    );
    tokio::time::sleep(expired.saturating_sub(started.elapsed())).await;
    terminate(name).await;
    let (answer, took) = current_user(&client, &url).await;
    let error = tool_error(&answer);
    assert_eq!(error["error"], "unavailable", "{answer}");
    assert!(
        error["message"].as_str().unwrap().starts_with(
            "database credential unavailable: cannot get an Entra token for PostgreSQL"
        ),
        "{error}"
    );
    assert!(took < CALL_BOUND);
    let (status, body) = readyz(&server).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.starts_with(
            "not ready\ndatabase: the database credential's token service is unavailable"
        ),
        "{body}"
    );

    // The service comes back: within one backoff step, logins work again and readyz is clean.
    azure.with(|s| s.fail_next = 0);
    let back = Instant::now();
    wait_for(REFRESH_RECOVERY_BOUND, "logins work again", || async {
        let (answer, _) = current_user(&client, &url).await;
        tool_error(&answer).is_null()
    })
    .await;
    eprintln!(
        "RECOVERY database token service outage (after the service is back): {} ms",
        back.elapsed().as_millis()
    );
    let (status, body) = readyz(&server).await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    crate::identity_support::assert_no_secrets(&server.log(), &azure.secrets());
    fault_support::assert_no_panic(&server.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_key_endpoint_is_survived_on_the_cached_keys_and_shows_everywhere() {
    let cluster = shared_cluster();
    // pgmcp reaches the provider only through the proxy; the tokens name the proxy's address as their issuer.
    let proxy = Proxy::start(([127, 0, 0, 1], 9).into()).await;
    let authority = format!("http://127.0.0.1:{}", proxy.port());
    let clients = entra_clients(&authority);
    let provider = tokio::task::spawn_blocking(move || Provider::start(clients))
        .await
        .unwrap();
    let provider_addr = provider
        .base
        .trim_start_matches("http://")
        .parse()
        .expect("provider address");
    proxy.set_upstream(provider_addr);
    let mut settings = Settings::new(cluster.port(), "faults-jwks");
    settings.extra =
        format!("[auth]\nentra_authority = \"{authority}\"\njwks_refresh_seconds = 1\n");
    let config = settings.write();
    let server = serve_http_with(&config, &entra_flags(), &[]);
    let url = server.mcp_url();
    let used = provider.token("v2-app").await;
    let fresh = provider.token("v2-other-oid").await;
    let client = http_support::http();
    let (status, answer, _, _) = execute(&client, &url, Some(&used), "SELECT 1").await;
    assert_eq!(
        (status, tool_error(&answer)),
        (200, Value::Null),
        "{answer}"
    );
    assert_eq!(readyz(&server).await, (200, "ok".to_string()));

    // The provider becomes unreachable.
    proxy.set_mode(Mode::Refuse);
    proxy.reset_all();
    wait_for(Duration::from_secs(5), "a key refresh fails", || async {
        sample(&metrics(&server).await, "pgmcp_jwks_refresh_failures_total").unwrap_or(0.0) >= 1.0
    })
    .await;
    let (status, body) = readyz(&server).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.starts_with("ok\nsigning keys: the last")
            && body.contains("the cached keys stay in use"),
        "{body}"
    );
    assert!(
        server.log().contains("fetching signing keys failed"),
        "{}",
        server.log()
    );
    // Tokens keep working: one seen before, one never seen (checked against the cached keys).
    for token in [&used, &fresh] {
        let (status, answer, _, _) = execute(&client, &url, Some(token), "SELECT 2").await;
        assert_eq!(
            (status, tool_error(&answer)),
            (200, Value::Null),
            "{answer}"
        );
    }

    // Back: the next retry (backing off from 5 s) loads the keys and readyz is clean again.
    proxy.set_mode(Mode::Forward);
    let back = Instant::now();
    wait_for(REFRESH_RECOVERY_BOUND, "readyz is clean again", || async {
        readyz(&server).await == (200, "ok".to_string())
    })
    .await;
    eprintln!(
        "RECOVERY signing key endpoint outage (after it is back): {} ms",
        back.elapsed().as_millis()
    );
    fault_support::assert_no_panic(&server.log());
}
