//! On-behalf-of: two users with different grants and a row-level-security policy query through the same
//! pgmcp user pools; each call checks `current_user`, under concurrent load, so a session is never handed to
//! another principal. The confidential client proves itself with a secret or, secretless, with a managed
//! identity used as a federated credential. App-only tokens and missing consent get clear errors.

mod common;
mod identity_support;
mod oidc_support;

use std::collections::HashMap;
use std::sync::Arc;

use identity_support::azure::{IDENTITY_HEADER, TENANT};
use identity_support::{Principal, StandIn, assert_no_secrets, create_role, fixture, stand_in};
use pgmcp::config::{ConnSettings, Profile, Secret};
use pgmcp::http::Caller;
use pgmcp::identity::obo::{UserPools, UserSessionError};
use pgmcp::identity::{DbAuth, DbIdentity, IdentityErrorKind, ManagedIdentityId};
use serde_json::{Value, json};

const APP_AUDIENCE: &str = "api://pgmcp-app";

fn prepare_database() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(create_tables);
}

/// Two pairs of users with the same shape of rights (alice/erin may read salaries, bob/frank may not), one pair
/// per test that exchanges tokens for them.
fn create_tables() {
    for user in ["alice", "bob", "erin", "frank"] {
        create_role(&format!("{user}@contoso.com"));
    }
    fixture().psql(
        "CREATE TABLE IF NOT EXISTS notes (owner text NOT NULL, body text NOT NULL);
         TRUNCATE notes;
         INSERT INTO notes VALUES ('alice@contoso.com', 'a1'), ('alice@contoso.com', 'a2'), ('bob@contoso.com', 'b1'),
                                  ('erin@contoso.com', 'e1'), ('erin@contoso.com', 'e2'), ('frank@contoso.com', 'f1');
         ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
         DROP POLICY IF EXISTS own_notes ON notes;
         CREATE POLICY own_notes ON notes USING (owner = current_user);
         GRANT SELECT ON notes TO \"alice@contoso.com\", \"bob@contoso.com\", \"erin@contoso.com\", \"frank@contoso.com\";
         CREATE TABLE IF NOT EXISTS salaries (amount int);
         GRANT SELECT ON salaries TO \"alice@contoso.com\", \"erin@contoso.com\";",
    );
}

fn profile() -> Profile {
    let mut profile = Profile::new(
        "azure",
        ConnSettings::parse(&fixture().url("pgmcp")).unwrap(),
    );
    profile.identity.db_auth = DbAuth::Entra;
    profile.identity.db_identity = DbIdentity::OnBehalfOf;
    profile.identity.token_host_allow = vec!["127.0.0.1".into()];
    profile
}

fn user_token(azure: &StandIn, oid: &str, upn: &str, extra: serde_json::Value) -> (Caller, Secret) {
    let mut claims = json!({"oid": oid, "upn": upn, "scp": "access_as_user", "idtyp": "user"});
    if let (Some(target), Some(more)) = (claims.as_object_mut(), extra.as_object()) {
        target.extend(more.clone());
    }
    let (token, _) = azure.issue(APP_AUDIENCE, claims, None);
    let caller = Caller {
        oid: Some(oid.into()),
        tid: Some(TENANT.into()),
        preferred_username: Some(upn.into()),
        scopes: vec!["access_as_user".into()],
        ..Caller::default()
    };
    (caller, Secret::new(token))
}

fn register_users(azure: &StandIn) {
    azure.with(|s| {
        s.users
            .insert("alice-oid".into(), "alice@contoso.com".into());
        s.users.insert("bob-oid".into(), "bob@contoso.com".into());
    });
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

async fn whoami_and_notes(pools: &UserPools, caller: &Caller, token: &Secret) -> (String, String) {
    let session = pools
        .get(caller, token)
        .await
        .unwrap_or_else(|e| panic!("session: {e}"));
    let row = session
        .query_one("SELECT current_user::text, coalesce((SELECT string_agg(body, ',' ORDER BY body) FROM notes), '')", &[])
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn users_see_their_own_rows_through_one_server() {
    prepare_database();
    let azure = stand_in().await;
    register_users(&azure);
    azure.with(|s| {
        s.principals.push(Principal {
            client_id: "pgmcp-app".into(),
            oid: "app-oid".into(),
            secret: Some("obo-app-secret-8812".into()),
            ..Principal::default()
        })
    });
    let env = env_fn(HashMap::from([
        ("AZURE_TENANT_ID", TENANT.to_string()),
        ("AZURE_CLIENT_ID", "pgmcp-app".to_string()),
        ("AZURE_CLIENT_SECRET", "obo-app-secret-8812".to_string()),
        ("AZURE_AUTHORITY_HOST", azure.url.clone()),
    ]));
    let pools = Arc::new(UserPools::new(&profile(), &env).unwrap());
    let alice = user_token(&azure, "alice-oid", "alice@contoso.com", json!({}));
    let bob = user_token(&azure, "bob-oid", "bob@contoso.com", json!({}));

    // One exchange per user before the load: the stand-in sets the role's password to the token it issued last,
    // so simultaneous first exchanges for one user would race each other in the stand-in, not in pgmcp.
    for (caller, token) in [&alice, &bob] {
        whoami_and_notes(&pools, caller, token).await;
    }
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let pools = pools.clone();
        let (caller, token, expected_user, expected_notes) = if worker % 2 == 0 {
            (
                alice.0.clone(),
                alice.1.clone(),
                "alice@contoso.com",
                "a1,a2",
            )
        } else {
            (bob.0.clone(), bob.1.clone(), "bob@contoso.com", "b1")
        };
        tasks.push(tokio::spawn(async move {
            for _ in 0..15 {
                let (user, notes) = whoami_and_notes(&pools, &caller, &token).await;
                assert_eq!(
                    user, expected_user,
                    "a session was handed to another principal"
                );
                assert_eq!(notes, expected_notes);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(pools.len(), 2);

    // Different grants: alice may read salaries, bob may not.
    let session = pools.get(&alice.0, &alice.1).await.unwrap();
    session.query("SELECT * FROM salaries", &[]).await.unwrap();
    let session = pools.get(&bob.0, &bob.1).await.unwrap();
    let denied = session
        .query("SELECT * FROM salaries", &[])
        .await
        .unwrap_err();
    assert_eq!(denied.as_db_error().unwrap().code().code(), "42501");

    // The pool count is bounded: with room for one principal, the least recently used one is evicted.
    let mut bounded = UserPools::new(&profile(), &env).unwrap();
    bounded.max_users = 1;
    assert_eq!(
        whoami_and_notes(&bounded, &alice.0, &alice.1).await.0,
        "alice@contoso.com"
    );
    assert_eq!(
        whoami_and_notes(&bounded, &bob.0, &bob.1).await.0,
        "bob@contoso.com"
    );
    assert_eq!(bounded.len(), 1);
    assert_eq!(
        whoami_and_notes(&bounded, &alice.0, &alice.1).await.0,
        "alice@contoso.com"
    );

    // A principal that stops calling has its pool closed in the background, without waiting for other callers.
    let mut idle = UserPools::new(&profile(), &env).unwrap();
    idle.idle_timeout = std::time::Duration::from_secs(2);
    let idle = Arc::new(idle);
    UserPools::sweep_idle(&idle);
    let called = std::time::Instant::now();
    whoami_and_notes(&idle, &alice.0, &alice.1).await;
    // The idle time counts from the session's checkout: on a host so busy that the call itself took longer, the
    // pool may rightly be gone already.
    if called.elapsed() < idle.idle_timeout / 2 {
        assert_eq!(idle.len(), 1, "the principal's pool is kept while in use");
    }
    for _ in 0..100 {
        if idle.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(idle.is_empty(), "an idle principal's pool stayed open");

    // An application's token has no user to act for.
    let app_only = Caller {
        oid: Some("app-oid".into()),
        app_only: true,
        ..Caller::default()
    };
    match pools.get(&app_only, &Secret::new("x")).await {
        Err(UserSessionError::Identity(error)) => {
            assert_eq!(error.kind, IdentityErrorKind::AppOnly)
        }
        other => panic!("expected an app-only error, got {:?}", other.map(|_| ())),
    }

    // Missing consent comes back as "interaction required", with Entra's reason and without any token.
    let carol = user_token(
        &azure,
        "carol-oid",
        "carol@contoso.com",
        json!({"consent": "missing"}),
    );
    match pools.get(&carol.0, &carol.1).await {
        Err(UserSessionError::Identity(error)) => {
            assert!(
                matches!(error.kind, IdentityErrorKind::InteractionRequired { .. }),
                "{error:?}"
            );
            assert!(error.message.contains("AADSTS65001"), "{}", error.message);
            assert_no_secrets(&error.message, &azure.secrets());
        }
        other => panic!("expected interaction required, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn secretless_exchange_with_a_managed_identity_as_federated_credential() {
    prepare_database();
    let azure = stand_in().await;
    register_users(&azure);
    azure.with(|s| {
        s.managed.insert(
            Some("fic-mi".into()),
            Principal {
                client_id: "fic-mi".into(),
                oid: "fic-mi-oid".into(),
                ..Principal::default()
            },
        );
        s.principals.push(Principal {
            client_id: "pgmcp-secretless".into(),
            oid: "app2-oid".into(),
            federated_mi_oid: Some("fic-mi-oid".into()),
            ..Principal::default()
        });
    });
    let env = env_fn(HashMap::from([
        ("AZURE_TENANT_ID", TENANT.to_string()),
        ("AZURE_CLIENT_ID", "pgmcp-secretless".to_string()),
        ("AZURE_AUTHORITY_HOST", azure.url.clone()),
        ("IDENTITY_ENDPOINT", format!("{}/msi/token", azure.url)),
        ("IDENTITY_HEADER", IDENTITY_HEADER.to_string()),
    ]));
    let mut profile = profile();
    profile.identity.managed_identity = Some(ManagedIdentityId::ClientId("fic-mi".into()));
    let pools = UserPools::new(&profile, &env).unwrap();
    assert!(
        pools
            .describe()
            .contains("managed identity as federated credential")
    );
    let alice = user_token(&azure, "alice-oid", "alice@contoso.com", json!({}));
    assert_eq!(
        whoami_and_notes(&pools, &alice.0, &alice.1).await,
        ("alice@contoso.com".to_string(), "a1,a2".to_string())
    );
    // The managed identity was asked (for its token-exchange token) before Entra exchanged alice's token.
    let requests = azure.with(|s| s.requests.clone());
    assert_eq!(
        requests.first().map(String::as_str),
        Some("app_service"),
        "{requests:?}"
    );
}

/// The user tokens of the HTTP test, minted by the real OpenID provider in Entra's v2 delegated shape.
fn signed_in_users() -> Vec<serde_json::Value> {
    let user = |client_id: &str, oid: &str, upn: &str, extra: serde_json::Value| {
        let mut claims = json!({
            "iss": format!("{{base}}/{}/v2.0", oidc_support::TENANT), "aud": oidc_support::CLIENT_ID,
            "tid": oidc_support::TENANT, "oid": oid, "azp": oidc_support::AGENT_APP, "ver": "2.0",
            "scp": "user_impersonation", "preferred_username": upn, "name": upn,
            "roles": null, "client_id": null, "scope": null,
        });
        if let (Some(target), Some(more)) = (claims.as_object_mut(), extra.as_object()) {
            target.extend(more.clone());
        }
        json!({"client_id": client_id, "client_secret": oidc_support::SECRET, "claims": claims})
    };
    let mut clients = vec![
        user("erin", "erin-oid", "erin@contoso.com", json!({})),
        user("frank", "frank-oid", "frank@contoso.com", json!({})),
        user(
            "carol",
            "carol-oid",
            "carol@contoso.com",
            json!({"consent": "missing"}),
        ),
        user(
            "dave",
            "dave-oid",
            "dave@contoso.com",
            json!({"mfa": "required"}),
        ),
    ];
    clients.extend(
        oidc_support::entra_clients("{base}")
            .into_iter()
            .filter(|c| c["client_id"] == "v2-app"),
    );
    clients
}

struct HttpAnswer {
    status: u16,
    challenge: Option<String>,
    body: serde_json::Value,
}

/// `execute_query` of `sql` as the bearer of `token`, by raw Streamable HTTP.
async fn http_query(
    server: &oidc_support::pgmcp_http::PgmcpHttp,
    token: &str,
    sql: &str,
) -> HttpAnswer {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap();
    let response = client
        .post(server.mcp_url())
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                   "params": {"name": "execute_query", "arguments": {"sql": sql}}})
            .to_string(),
        )
        .send()
        .await
        .expect("pgmcp answers");
    HttpAnswer {
        status: response.status().as_u16(),
        challenge: response
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_string()),
        body: response.json().await.unwrap_or(serde_json::Value::Null),
    }
}

/// pgmcp logging in to the fixture (a loopback host, hence the allow-list entry) as each caller.
const OBO_ARGS: [&str; 6] = [
    "--db-auth",
    "entra",
    "--db-identity",
    "on_behalf_of",
    "--token-host-allow",
    "127.0.0.1",
];

const WHOAMI: &str = "SELECT current_user::text, coalesce((SELECT string_agg(body, ',' ORDER BY body) FROM notes), '')";

/// Through `serve --http`: the caller's Entra-shaped token is validated, exchanged on behalf of the user, and the
/// tool runs as that user, so row-level security and grants apply per person.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http_callers_query_as_themselves() {
    use base64::Engine;

    prepare_database();
    // Erin and Frank are this test's own users: other tests' exchanges reset their users' passwords.
    let azure = stand_in().await;
    azure.with(|s| {
        for user in ["erin", "frank", "dave"] {
            s.users
                .insert(format!("{user}-oid"), format!("{user}@contoso.com"));
        }
        s.principals.push(Principal {
            client_id: "pgmcp-app".into(),
            oid: "app-oid".into(),
            secret: Some("obo-http-secret-5521".into()),
            ..Principal::default()
        })
    });
    let provider = oidc_support::Provider::start(signed_in_users());
    let env = [
        ("AZURE_TENANT_ID", TENANT.to_string()),
        ("AZURE_CLIENT_ID", "pgmcp-app".to_string()),
        ("AZURE_CLIENT_SECRET", "obo-http-secret-5521".to_string()),
        ("AZURE_AUTHORITY_HOST", azure.url.clone()),
    ];
    let server = oidc_support::pgmcp_http::PgmcpHttp::start_entra_with_env(
        &fixture().url("pgmcp"),
        &provider.base,
        &OBO_ARGS,
        &env,
    );
    let erin = provider.token("erin").await;
    let frank = provider.token("frank").await;

    // Each user's first call does the exchange; afterwards many calls run at once from both users, and every one
    // must run as its own caller and see only that caller's rows.
    for (token, user) in [(&erin, "erin@contoso.com"), (&frank, "frank@contoso.com")] {
        let answer = http_query(&server, token, WHOAMI).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer_rows(&answer.body)[0][0], user, "{}", answer.body);
    }
    let server = Arc::new(server);
    let mut calls = Vec::new();
    for call in 0..40 {
        let (token, user, notes) = if call % 2 == 0 {
            (erin.clone(), "erin@contoso.com", "e1,e2")
        } else {
            (frank.clone(), "frank@contoso.com", "f1")
        };
        let server = server.clone();
        calls.push(tokio::spawn(async move {
            let answer = http_query(&server, &token, WHOAMI).await;
            let row = &answer_rows(&answer.body)[0];
            assert_eq!(
                row,
                &json!([user, notes]),
                "a call ran as someone else: {}",
                answer.body
            );
        }));
    }
    for call in calls {
        call.await.unwrap();
    }

    // Grants are the user's own: erin may read salaries, frank is refused by PostgreSQL itself.
    let allowed = http_query(&server, &erin, "SELECT count(*) FROM salaries").await;
    assert_eq!(allowed.body["result"]["isError"], false, "{}", allowed.body);
    let refused = http_query(&server, &frank, "SELECT count(*) FROM salaries").await;
    assert_eq!(refused.body["result"]["isError"], true, "{}", refused.body);
    assert_eq!(
        refused.body["result"]["structuredContent"]["sqlstate"], "42501",
        "{}",
        refused.body
    );

    // An application's token has no user to act for: a tool error that says so.
    let app = provider.token("v2-app").await;
    let app_only = http_query(&server, &app, "SELECT 1").await;
    assert_eq!(app_only.status, 200);
    assert_eq!(
        app_only.body["result"]["isError"], true,
        "{}",
        app_only.body
    );
    assert_eq!(
        app_only.body["result"]["structuredContent"]["error"],
        "caller_login"
    );
    let text = app_only.body["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(text.contains("application's (no user)"), "{text}");

    // Missing consent: a 401 challenge, so the client signs the user in again (where Entra asks for consent).
    let carol = provider.token("carol").await;
    let consent = http_query(&server, &carol, "SELECT 'marker-carol'").await;
    assert_eq!(consent.status, 401, "{}", consent.body);
    let challenge = consent.challenge.unwrap_or_default();
    assert!(
        challenge.starts_with(&format!(
            "Bearer resource_metadata=\"{}\"",
            server.metadata_url()
        )),
        "{challenge}"
    );
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    assert!(
        server.audit_lines_with("marker-carol").is_empty(),
        "the call ran"
    );

    // Conditional access asks for multi-factor sign-in: Entra's claims challenge is passed on, base64-encoded.
    let dave = provider.token("dave").await;
    let mfa = http_query(&server, &dave, "SELECT 1").await;
    assert_eq!(mfa.status, 401, "{}", mfa.body);
    let challenge = mfa.challenge.unwrap_or_default();
    let encoded = base64::engine::general_purpose::STANDARD
        .encode(identity_support::azure::MFA_CLAIMS_CHALLENGE);
    assert!(
        challenge.contains("error=\"insufficient_claims\""),
        "{challenge}"
    );
    assert!(
        challenge.contains(&format!("claims=\"{encoded}\"")),
        "{challenge}"
    );

    // Calls that need no database do not exchange anything: carol can still list the tools.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listed = reqwest::Client::new()
        .post(server.mcp_url())
        .bearer_auth(&carol)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);

    // Ready without a login of its own: the database accepts connections and the signing keys are loaded.
    let ready = reqwest::Client::new()
        .get(format!("{}/readyz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);

    // No user token and no client secret ever reaches the audit log.
    let audit = std::fs::read_to_string(&server.audit).unwrap_or_default();
    let mut secrets = azure.secrets();
    secrets.extend([
        erin.clone(),
        frank.clone(),
        carol.clone(),
        "obo-http-secret-5521".to_string(),
    ]);
    assert_no_secrets(&audit, &secrets);
    assert!(!audit.contains("eyJ"), "a token reached the audit log");
}

/// On-behalf-of needs signed-in callers: without them pgmcp refuses to start and says what to change; `check`
/// reports the exchange's client (never its secret) and its own login.
#[tokio::test]
async fn on_behalf_of_needs_http_with_authentication() {
    prepare_database();
    let azure = stand_in().await;
    let url = fixture().url("pgmcp");
    let db_args = [&["--database-url", url.as_str()][..], &OBO_ARGS].concat();
    let env = [
        ("AZURE_TENANT_ID", TENANT.to_string()),
        ("AZURE_CLIENT_ID", "pgmcp-app".to_string()),
        ("AZURE_CLIENT_SECRET", "obo-check-secret-7731".to_string()),
        ("AZURE_AUTHORITY_HOST", azure.url.clone()),
    ];
    let stdio = identity_support::pgmcp(&[&["serve"][..], &db_args].concat(), &env).await;
    assert!(!stdio.success);
    assert!(
        stdio
            .output
            .contains("over stdio there is no signed-in caller"),
        "{}",
        stdio.output
    );
    let anonymous = identity_support::pgmcp(
        &[&["serve", "--http", "127.0.0.1:0"][..], &db_args].concat(),
        &env,
    )
    .await;
    assert!(!anonymous.success);
    assert!(
        anonymous.output.contains("`--auth-mode` is none"),
        "{}",
        anonymous.output
    );
    let check = identity_support::pgmcp(&[&["check"][..], &db_args].concat(), &env).await;
    assert!(
        check.output.contains(
            "db identity:    each signed-in HTTP caller, by on-behalf-of (client id pgmcp-app"
        ),
        "{}",
        check.output
    );
    let unconfigured = identity_support::pgmcp(&[&["check"][..], &db_args].concat(), &[]).await;
    assert!(!unconfigured.success);
    assert!(
        unconfigured.output.contains("AZURE_TENANT_ID is not set"),
        "{}",
        unconfigured.output
    );
    for run in [&stdio, &anonymous, &check, &unconfigured] {
        assert_no_secrets(&run.output, &["obo-check-secret-7731".to_string()]);
    }
}

/// The rows of an execute_query answer in a raw JSON-RPC response, checked against the answer contract.
fn answer_rows(body: &Value) -> Value {
    let result: rmcp::model::CallToolResult =
        serde_json::from_value(body["result"].clone()).expect("a tools/call result");
    common::answer_of("execute_query", &result)["rows"].clone()
}
