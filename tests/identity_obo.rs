//! On-behalf-of: two users with different grants and a row-level-security policy query through the same
//! pgmcp user pools; each call checks `current_user`, under concurrent load, so a session is never handed to
//! another principal. The confidential client proves itself with a secret or, secretless, with a managed
//! identity used as a federated credential. App-only tokens and missing consent get clear errors.

mod identity_support;

use std::collections::HashMap;
use std::sync::Arc;

use identity_support::azure::{IDENTITY_HEADER, TENANT};
use identity_support::{Principal, StandIn, assert_no_secrets, create_role, fixture, stand_in};
use pgmcp::config::{ConnSettings, Profile, Secret};
use pgmcp::http::Caller;
use pgmcp::identity::obo::{UserPools, UserSessionError};
use pgmcp::identity::{DbAuth, DbIdentity, IdentityErrorKind, ManagedIdentityId};
use serde_json::json;

const APP_AUDIENCE: &str = "api://pgmcp-app";

fn prepare_database() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(create_tables);
}

fn create_tables() {
    create_role("alice@contoso.com");
    create_role("bob@contoso.com");
    fixture().psql(
        "CREATE TABLE IF NOT EXISTS notes (owner text NOT NULL, body text NOT NULL);
         TRUNCATE notes;
         INSERT INTO notes VALUES ('alice@contoso.com', 'a1'), ('alice@contoso.com', 'a2'), ('bob@contoso.com', 'b1');
         ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
         DROP POLICY IF EXISTS own_notes ON notes;
         CREATE POLICY own_notes ON notes USING (owner = current_user);
         GRANT SELECT ON notes TO \"alice@contoso.com\", \"bob@contoso.com\";
         CREATE TABLE IF NOT EXISTS salaries (amount int);
         GRANT SELECT ON salaries TO \"alice@contoso.com\";",
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
    assert_eq!(pools.len().await, 2);

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
    assert_eq!(bounded.len().await, 1);
    assert_eq!(
        whoami_and_notes(&bounded, &alice.0, &alice.1).await.0,
        "alice@contoso.com"
    );

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
