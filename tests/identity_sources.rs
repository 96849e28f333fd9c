//! Every database credential source end to end: `pgmcp check` logs in to a real PostgreSQL whose role password
//! is the token the loopback Azure stand-in just issued, so only a fresh, correct token gets in. Each run's
//! output (stdout, stderr at debug level) is searched for every secret involved.

mod identity_support;

use identity_support::azure::{CLUSTER_ISSUER_KEY, IDENTITY_HEADER, TENANT};
use identity_support::{Principal, assert_no_secrets, create_role, fixture, pgmcp, stand_in};
use serde_json::json;

fn entra_args<'a>(url: &'a str, credential: &'a str, user: &'a str) -> Vec<&'a str> {
    vec![
        "check",
        "--database-url",
        url,
        "--db-auth",
        "entra",
        "--entra-credential",
        credential,
        "--db-user",
        user,
        "--token-host-allow",
        "127.0.0.1",
    ]
}

fn assert_accepted(run: &identity_support::Run, user: &str, source: &str, oid: &str) {
    assert!(run.success, "check failed:\n{}", run.output);
    assert!(
        run.output.contains(&format!("user:           {user}")),
        "{}",
        run.output
    );
    assert!(
        run.output
            .contains("entra login:    accepted by the server"),
        "{}",
        run.output
    );
    assert!(
        run.output.contains(source),
        "expected source {source:?}:\n{}",
        run.output
    );
    assert!(run.output.contains(&format!("oid={oid}")), "{}", run.output);
}

/// An IMDS address on loopback where nothing listens, so no test ever reaches the real one.
fn dead_imds() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("http://127.0.0.1:{port}/metadata/identity/oauth2/token")
}

#[tokio::test]
async fn managed_identity_app_service_endpoint() {
    let f = fixture();
    create_role("aca-mcp-server");
    let azure = stand_in().await;
    azure.with(|s| {
        s.managed.insert(
            Some("mi-client-1".into()),
            Principal {
                client_id: "mi-client-1".into(),
                oid: "mi-oid-1".into(),
                role: Some("aca-mcp-server".into()),
                ..Principal::default()
            },
        )
    });
    let url = f.url("ignored");
    let mut args = entra_args(&url, "managed_identity", "aca-mcp-server");
    args.extend(["--managed-identity-client-id", "mi-client-1"]);
    let env = [
        ("IDENTITY_ENDPOINT", format!("{}/msi/token", azure.url)),
        ("IDENTITY_HEADER", IDENTITY_HEADER.to_string()),
    ];
    let run = pgmcp(&args, &env).await;
    assert_accepted(
        &run,
        "aca-mcp-server",
        "managed identity (user-assigned, client id mi-client-1, App Service",
        "mi-oid-1",
    );
    assert_no_secrets(&run.output, &azure.secrets());
}

#[tokio::test]
async fn managed_identity_imds_system_assigned() {
    let f = fixture();
    create_role("vm-identity");
    let azure = stand_in().await;
    azure.with(|s| {
        s.managed.insert(
            None,
            Principal {
                client_id: "vm-client".into(),
                oid: "vm-oid".into(),
                role: Some("vm-identity".into()),
                ..Principal::default()
            },
        )
    });
    let url = f.url("vm-identity");
    let run = pgmcp(
        &entra_args(&url, "managed_identity", "vm-identity"),
        &[(
            "PGMCP_IMDS_ENDPOINT",
            format!("{}/metadata/identity/oauth2/token", azure.url),
        )],
    )
    .await;
    assert_accepted(
        &run,
        "vm-identity",
        "managed identity (system-assigned, IMDS)",
        "vm-oid",
    );
    assert_no_secrets(&run.output, &azure.secrets());
}

#[tokio::test]
async fn workload_identity_reads_the_rotating_file() {
    let f = fixture();
    create_role("aks-workload");
    let azure = stand_in().await;
    let file = f.dir.path().join("azure-identity-token");
    azure.with(|s| {
        s.principals.push(Principal {
            client_id: "wl-client".into(),
            oid: "wl-oid".into(),
            federated_file: Some(file.clone()),
            role: Some("aks-workload".into()),
            ..Principal::default()
        })
    });
    let url = f.url("aks-workload");
    let env = [
        (
            "AZURE_FEDERATED_TOKEN_FILE",
            file.to_string_lossy().into_owned(),
        ),
        ("AZURE_CLIENT_ID", "wl-client".to_string()),
        ("AZURE_TENANT_ID", TENANT.to_string()),
        ("AZURE_AUTHORITY_HOST", azure.url.clone()),
    ];
    let mut federated = Vec::new();
    for round in 0..2 {
        // The kubelet rewrites the projected token; each exchange must present the current one.
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &json!({"iss": "https://oidc.aks.example", "sub": "system:serviceaccount:mcp:pgmcp", "aud": "api://AzureADTokenExchange", "exp": identity_support::azure::now() + 3600, "round": round}),
            &jsonwebtoken::EncodingKey::from_secret(CLUSTER_ISSUER_KEY),
        )
        .unwrap();
        std::fs::write(&file, &token).unwrap();
        federated.push(token);
        let run = pgmcp(&entra_args(&url, "workload_identity", "aks-workload"), &env).await;
        assert_accepted(
            &run,
            "aks-workload",
            "workload identity (client id wl-client, federated token file)",
            "wl-oid",
        );
        let mut secrets = azure.secrets();
        secrets.extend(federated.clone());
        assert_no_secrets(&run.output, &secrets);
    }
}

#[tokio::test]
async fn service_principal_with_secret_and_with_certificate() {
    let f = fixture();
    create_role("sp-reader");
    let azure = stand_in().await;
    azure.with(|s| {
        s.principals.push(Principal {
            client_id: "sp-secret".into(),
            oid: "sp-oid".into(),
            secret: Some("client-secret-value-7781".into()),
            role: Some("sp-reader".into()),
            ..Principal::default()
        });
        s.principals.push(Principal {
            client_id: "sp-cert".into(),
            oid: "sp-cert-oid".into(),
            certificate_thumbprint: Some(f.client_thumbprint.clone()),
            role: Some("sp-reader".into()),
            ..Principal::default()
        });
    });
    let url = f.url("sp-reader");
    let common = [
        ("AZURE_TENANT_ID", TENANT.to_string()),
        ("AZURE_AUTHORITY_HOST", azure.url.clone()),
    ];

    let mut env = common.to_vec();
    env.extend([
        ("AZURE_CLIENT_ID", "sp-secret".to_string()),
        (
            "AZURE_CLIENT_SECRET",
            "client-secret-value-7781".to_string(),
        ),
    ]);
    let run = pgmcp(&entra_args(&url, "client_secret", "sp-reader"), &env).await;
    assert_accepted(
        &run,
        "sp-reader",
        "service principal (client id sp-secret, client secret)",
        "sp-oid",
    );
    assert_no_secrets(&run.output, &azure.secrets());

    let mut env = common.to_vec();
    env.extend([
        ("AZURE_CLIENT_ID", "sp-cert".to_string()),
        (
            "AZURE_CLIENT_CERTIFICATE_PATH",
            f.client_certificate.to_string_lossy().into_owned(),
        ),
    ]);
    let run = pgmcp(&entra_args(&url, "client_secret", "sp-reader"), &env).await;
    assert_accepted(
        &run,
        "sp-reader",
        "service principal (client id sp-cert, client certificate)",
        "sp-cert-oid",
    );
    assert_no_secrets(&run.output, &azure.secrets());

    // A wrong secret: Entra's reason is shown, the secret is not.
    let mut env = common.to_vec();
    env.extend([
        ("AZURE_CLIENT_ID", "sp-secret".to_string()),
        ("AZURE_CLIENT_SECRET", "wrong-secret-value-1234".to_string()),
    ]);
    let run = pgmcp(&entra_args(&url, "client_secret", "sp-reader"), &env).await;
    assert!(!run.success);
    assert!(run.output.contains("AADSTS7000215"), "{}", run.output);
    assert!(
        run.output.contains("entra login:    not attempted"),
        "{}",
        run.output
    );
    assert_no_secrets(&run.output, &["wrong-secret-value-1234".to_string()]);
}

/// A fake `az` on PATH that prints what `az account get-access-token --output json` prints.
fn fake_az(dir: &std::path::Path, token: &str, expires_on: u64) -> String {
    let bin = dir.join("az-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let json = json!({
        "accessToken": token,
        "expiresOn": "2099-01-01 00:00:00.000000",
        "expires_on": expires_on,
        "subscription": "00000000-0000-0000-0000-000000000000",
        "tenant": TENANT,
        "tokenType": "Bearer"
    });
    std::fs::write(bin.join("token.json"), json.to_string()).unwrap();
    let script = format!(
        "#!/bin/sh\necho \"$@\" >> '{log}'\n[ \"$1 $2\" = 'account get-access-token' ] || exit 2\ncat '{json}'\n",
        log = bin.join("calls.log").display(),
        json = bin.join("token.json").display()
    );
    let path = bin.join("az");
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[tokio::test]
async fn azure_cli_and_the_auto_chain() {
    let f = fixture();
    create_role("dev@contoso.com");
    let azure = stand_in().await;
    let (token, expires_on) = azure.issue(
        identity_support::azure::PG_RESOURCE,
        json!({"oid": "dev-oid", "upn": "dev@contoso.com", "idtyp": "user", "scp": "user_impersonation"}),
        Some("dev@contoso.com"),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = fake_az(dir.path(), &token, expires_on);
    let url = f.url("dev@contoso.com");
    let env = [("PATH", path.clone()), ("PGMCP_IMDS_ENDPOINT", dead_imds())];
    let run = pgmcp(&entra_args(&url, "azure_cli", "dev@contoso.com"), &env).await;
    assert_accepted(&run, "dev@contoso.com", "Azure CLI", "dev-oid");
    assert!(run.output.contains("upn=dev@contoso.com"), "{}", run.output);
    let calls = std::fs::read_to_string(dir.path().join("az-bin/calls.log")).unwrap();
    assert!(calls.contains("account get-access-token --resource https://ossrdbms-aad.database.windows.net --output json"), "{calls}");
    assert_no_secrets(&run.output, &azure.secrets());

    // auto: nothing in the environment, no managed identity answering, so the chain ends at the Azure CLI.
    let run = pgmcp(&entra_args(&url, "auto", "dev@contoso.com"), &env).await;
    assert_accepted(&run, "dev@contoso.com", "auto: Azure CLI", "dev-oid");
    assert_no_secrets(&run.output, &azure.secrets());

    // auto with every step failing reports each of them.
    let empty = tempfile::tempdir().unwrap();
    let env = [
        ("PATH", empty.path().display().to_string()),
        ("PGMCP_IMDS_ENDPOINT", dead_imds()),
    ];
    let run = pgmcp(&entra_args(&url, "auto", "dev@contoso.com"), &env).await;
    assert!(!run.success);
    for step in [
        "environment (service principal): neither AZURE_CLIENT_SECRET",
        "workload identity: AZURE_FEDERATED_TOKEN_FILE is not set",
        "managed identity: the Azure Instance Metadata Service",
        "Azure CLI: the Azure CLI (`az`) is not installed",
    ] {
        assert!(
            run.output.contains(step),
            "missing {step:?} in:\n{}",
            run.output
        );
    }
}

#[tokio::test]
async fn key_vault_password_read_with_a_service_principal() {
    let f = fixture();
    create_role("kv-reader");
    let azure = stand_in().await;
    let password = "kv-database-password-5521";
    f.set_password("kv-reader", password);
    azure.with(|s| {
        s.vault.insert("pg-password".into(), vec![password.into()]);
        s.principals.push(Principal {
            client_id: "kv-app".into(),
            oid: "kv-app-oid".into(),
            secret: Some("kv-app-secret-0912".into()),
            ..Principal::default()
        });
    });
    let url = f.url("kv-reader");
    let env = [
        ("AZURE_TENANT_ID", TENANT.to_string()),
        ("AZURE_CLIENT_ID", "kv-app".to_string()),
        ("AZURE_CLIENT_SECRET", "kv-app-secret-0912".to_string()),
        ("AZURE_AUTHORITY_HOST", azure.url.clone()),
    ];
    let run = pgmcp(
        &[
            "check",
            "--database-url",
            &url,
            "--db-auth",
            "key_vault",
            "--entra-credential",
            "client_secret",
            "--key-vault-url",
            &azure.url,
            "--key-vault-secret",
            "pg-password",
        ],
        &env,
    )
    .await;
    assert!(run.success, "{}", run.output);
    assert!(
        run.output
            .contains("credential:     Key Vault secret pg-password"),
        "{}",
        run.output
    );
    assert!(run.output.contains("oid=kv-app-oid"), "{}", run.output);
    assert_no_secrets(&run.output, &azure.secrets());
}

#[tokio::test]
async fn refusals_and_configuration_errors_are_clear() {
    let f = fixture();
    create_role("mi-role");
    let azure = stand_in().await;
    azure.with(|s| {
        s.managed.insert(
            None,
            Principal {
                client_id: "c".into(),
                oid: "o".into(),
                role: Some("mi-role".into()),
                ..Principal::default()
            },
        )
    });
    let imds = [(
        "PGMCP_IMDS_ENDPOINT",
        format!("{}/metadata/identity/oauth2/token", azure.url),
    )];

    // The token is valid but belongs to another role: the server refuses it.
    create_role("other-role");
    let url = f.url("other-role");
    let run = pgmcp(&entra_args(&url, "managed_identity", "other-role"), &imds).await;
    assert!(!run.success);
    assert!(
        run.output
            .contains("entra login:    REJECTED by the server"),
        "{}",
        run.output
    );
    assert!(run.output.contains("28P01"), "{}", run.output);
    assert_no_secrets(&run.output, &azure.secrets());

    // No database user for an Entra login.
    let bare = format!(
        "postgresql://127.0.0.1:{}/app?sslmode=verify-full&sslrootcert={}",
        f.cluster.port(),
        f.ca_file()
    );
    let run = pgmcp(
        &[
            "check",
            "--database-url",
            &bare,
            "--db-auth",
            "entra",
            "--token-host-allow",
            "127.0.0.1",
        ],
        &imds,
    )
    .await;
    assert!(!run.success);
    assert!(
        run.output.contains("invalid `db_user`")
            && run.output.contains("pgaadauth_create_principal"),
        "{}",
        run.output
    );

    // A host outside the Azure suffixes without an allow-list entry never gets a token.
    let run = pgmcp(
        &[
            "check",
            "--database-url",
            &url,
            "--db-auth",
            "entra",
            "--db-user",
            "mi-role",
        ],
        &imds,
    )
    .await;
    assert!(!run.success);
    assert!(
        run.output.contains("--token-host-allow 127.0.0.1"),
        "{}",
        run.output
    );
    let weak = format!(
        "postgresql://mi-role@127.0.0.1:{}/app?sslmode=require",
        f.cluster.port()
    );
    let run = pgmcp(
        &[
            "check",
            "--database-url",
            &weak,
            "--db-auth",
            "entra",
            "--token-host-allow",
            "127.0.0.1",
        ],
        &imds,
    )
    .await;
    assert!(!run.success);
    assert!(run.output.contains("verify-full"), "{}", run.output);
    // Only the refused login obtained tokens: its first and, after the refusal, one fresh one.
    assert_eq!(azure.with(|s| s.issued.len()), 2);
}
