//! scripts/deploy.sh and scripts/verify-remote.sh end to end against loopback stand-ins: a fake `az` on PATH that
//! answers in the real JSON shapes (tests/deploy_support/az), the managed-identity endpoints (IMDS, App Service)
//! handing out Entra-shaped tokens, and a real `pgmcp serve --http` in Entra mode on a real PostgreSQL.

mod common;
mod deploy_support;
mod http_support;

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

use deploy_support::{CLIENT_ID, IDENTITY_HEADER, Issuer, ROLE};
use http_support::HttpServer;

const SEED_KEYS: [&str; 13] = [
    "MCP_SERVER_URI",
    "ENTRA_APP_CLIENT_ID",
    "ENTRA_APP_OBJECT_ID",
    "ENTRA_APP_SP_OBJECT_ID",
    "ENTRA_APP_ROLE_VALUE",
    "ENTRA_APP_ROLE_ID_BY_VALUE",
    "ACA_MI_PRINCIPAL_ID",
    "ACA_MI_DISPLAY_NAME",
    "RESOURCE_GROUP",
    "SUBSCRIPTION_ID",
    "POSTGRES_SERVER_NAME",
    "POSTGRES_RESOURCE_GROUP",
    "LOCATION",
];
const POSTGRES_ID: &str = "/subscriptions/0b1f6471-1bf0-4dda-aec3-cb9272f09590/resourceGroups/pg-rg/providers/Microsoft.DBforPostgreSQL/flexibleServers/pgsrv";
const CALLER: &str = "11111111-2222-4333-8444-555555555555";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A working directory with the fake `az` in a bin/ that goes first on PATH.
struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    fn new() -> Workspace {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("bin")).unwrap();
        std::fs::copy(
            repo().join("tests/deploy_support/az"),
            dir.path().join("bin/az"),
        )
        .unwrap();
        Workspace { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn run(&self, script: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
        let path = format!(
            "{}:{}",
            self.path("bin").display(),
            std::env::var("PATH").unwrap()
        );
        let mut command = Command::new(repo().join(script));
        command
            .args(args)
            .current_dir(self.dir.path())
            .env("PATH", path)
            .env("FAKE_AZ_LOG", self.path("az.log"))
            .env_remove("IDENTITY_ENDPOINT")
            .env_remove("IDENTITY_HEADER")
            .env_remove("MCP_SERVER_URI")
            .env_remove("ENTRA_APP_CLIENT_ID")
            .env_remove("ACCESS_TOKEN");
        for (key, value) in env {
            command.env(key, value);
        }
        command.output().expect("run the script")
    }

    /// The fake az's calls, each as its argument list.
    fn az_calls(&self) -> Vec<Vec<String>> {
        std::fs::read_to_string(self.path("az.log"))
            .unwrap_or_default()
            .lines()
            .map(|line| line.split('\t').map(str::to_string).collect())
            .collect()
    }
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn parameter<'a>(call: &'a [String], name: &str) -> Option<&'a str> {
    call.iter()
        .find_map(|arg| arg.strip_prefix(&format!("{name}=")))
}

#[test]
fn deploy_builds_the_image_and_writes_the_seed_keys() {
    let workspace = Workspace::new();
    let output = workspace.run(
        "scripts/deploy.sh",
        &[
            "--postgres-resource-id",
            POSTGRES_ID,
            "--name",
            "pgmcp-dev",
            "--caller-principal-id",
            CALLER,
        ],
        &[],
    );
    assert!(output.status.success(), "{}", text(&output));

    let info: Value = serde_json::from_str(
        &std::fs::read_to_string(workspace.path("deployment-info.json")).unwrap(),
    )
    .unwrap();
    let keys: Vec<&str> = info
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, SEED_KEYS, "exactly the seed's keys, in its order");
    let expected = [
        (
            "MCP_SERVER_URI",
            "https://ca-pgmcp-dev.kindbay-1234abcd.eastus.azurecontainerapps.io/mcp",
        ),
        ("ENTRA_APP_CLIENT_ID", CLIENT_ID),
        (
            "ENTRA_APP_OBJECT_ID",
            "5d2c0b9e-8a7f-4e6d-9c5b-4a3f2e1d0c9b",
        ),
        (
            "ENTRA_APP_SP_OBJECT_ID",
            "6e3d1c0f-9b8a-4f7e-8d6c-5b4a3f2e1d0c",
        ),
        ("ENTRA_APP_ROLE_VALUE", ROLE),
        (
            "ENTRA_APP_ROLE_ID_BY_VALUE",
            "7f4e2d1a-0c9b-4a8f-9e7d-6c5b4a3f2e1d",
        ),
        (
            "ACA_MI_PRINCIPAL_ID",
            "8a5f3e2b-1d0c-4b9a-8f7e-6d5c4b3a2f1e",
        ),
        ("ACA_MI_DISPLAY_NAME", "id-pgmcp-pgmcp-dev"),
        ("RESOURCE_GROUP", "rg-pgmcp-dev"),
        ("SUBSCRIPTION_ID", "0b1f6471-1bf0-4dda-aec3-cb9272f09590"),
        ("POSTGRES_SERVER_NAME", "pgsrv"),
        ("POSTGRES_RESOURCE_GROUP", "pg-rg"),
        // az shows "East US"; deployments need the programmatic name.
        ("LOCATION", "eastus"),
    ];
    for (key, value) in expected {
        assert_eq!(info[key], value, "{key}");
    }

    // Infrastructure with a placeholder, the image built in the new registry from the Containerfile, then the
    // same template with that image.
    let calls = workspace.az_calls();
    let deployments: Vec<&Vec<String>> = calls
        .iter()
        .filter(|call| call[..3] == ["deployment", "sub", "create"])
        .collect();
    assert_eq!(deployments.len(), 2, "{calls:?}");
    for call in &deployments {
        assert_eq!(
            parameter(call, "postgresServerResourceId"),
            Some(POSTGRES_ID)
        );
        assert_eq!(parameter(call, "environmentName"), Some("pgmcp-dev"));
        assert_eq!(
            parameter(call, "callerPrincipalIds"),
            Some(format!("[\"{CALLER}\"]").as_str())
        );
        assert!(call.iter().any(|arg| arg.ends_with("infra/main.bicep")));
    }
    assert_eq!(parameter(deployments[0], "containerImage"), None);
    let build = calls
        .iter()
        .find(|call| call[..2] == ["acr", "build"])
        .expect("az acr build");
    assert!(build.contains(&"crpgmcpdev1234".to_string()), "{build:?}");
    assert!(build.iter().any(|arg| arg.ends_with("/Containerfile")));
    let image = parameter(deployments[1], "containerImage").expect("the built image");
    assert!(
        image.starts_with("crpgmcpdev1234.azurecr.io/pgmcp:"),
        "{image}"
    );

    // What is left to do, with this deployment's values.
    let printed = text(&output);
    assert!(
        printed.contains(
            "pgmcp azure grant --name 'id-pgmcp-pgmcp-dev' --object-id 8a5f3e2b-1d0c-4b9a-8f7e-6d5c4b3a2f1e"
        ),
        "{printed}"
    );
}

#[test]
fn deploy_refuses_a_server_without_entra_authentication() {
    let workspace = Workspace::new();
    let output = workspace.run(
        "scripts/deploy.sh",
        &["--postgres-resource-id", POSTGRES_ID, "--name", "pgmcp-dev"],
        &[("FAKE_AZ_ENTRA", "Disabled")],
    );
    assert!(!output.status.success());
    assert!(
        text(&output).contains("Microsoft Entra authentication is not enabled on pgsrv"),
        "{}",
        text(&output)
    );
    assert!(!workspace.path("deployment-info.json").exists());
    assert!(
        !workspace
            .az_calls()
            .iter()
            .any(|call| call[0] == "deployment"),
        "nothing deployed"
    );
}

/// pgmcp in Entra mode with its authority pointed at the stand-in, on the test cluster as `user`.
fn pgmcp(issuer: &Issuer, workspace: &Workspace, user: &str) -> HttpServer {
    let config = workspace.path(&format!("pgmcp-{user}.toml"));
    std::fs::write(&config, issuer.config()).unwrap();
    let cluster = common::cluster();
    let url = format!(
        "postgresql://{user}@{}:{}/app",
        cluster.host(),
        cluster.port()
    );
    let config = config.to_string_lossy().into_owned();
    let mut env = Issuer::pgmcp_env();
    env.push(("PGMCP_CONFIG", &config));
    env.push(("DATABASE_URL", &url));
    HttpServer::start(&["serve", "--http", "127.0.0.1:0"], &env)
}

fn write_info(workspace: &Workspace, server: &HttpServer, client_id: &str) {
    let info = serde_json::json!({
        "MCP_SERVER_URI": server.mcp_url(),
        "ENTRA_APP_CLIENT_ID": client_id,
        "ENTRA_APP_ROLE_VALUE": ROLE,
    });
    std::fs::write(workspace.path("deployment-info.json"), info.to_string()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_remote_lists_tools_and_queries_with_a_managed_identity_token() {
    let issuer = Issuer::start().await;
    let workspace = Workspace::new();
    let server = pgmcp(&issuer, &workspace, "reader");
    write_info(&workspace, &server, CLIENT_ID);
    let imds = format!("{}/metadata/identity/oauth2/token", issuer.authority);
    let verify = |env: Vec<(&str, String)>| {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        workspace.run("scripts/verify-remote.sh", &[], &env)
    };

    // IMDS (a VM, Container Instances).
    let output =
        tokio::task::block_in_place(|| verify(vec![("PGMCP_IMDS_ENDPOINT", imds.clone())]));
    let printed = text(&output);
    assert!(output.status.success(), "{printed}");
    assert!(printed.contains("token: from imds"), "{printed}");
    assert!(
        printed.contains("execute_query") && printed.contains("list_tables"),
        "{printed}"
    );
    assert!(
        printed.contains("\"reader\",\"app\""),
        "the query ran as pgmcp's role: {printed}"
    );
    assert!(printed.contains("OK: "), "{printed}");
    // One token request for pgmcp's app (after the script's resource-less probe of IMDS).
    let requests = issuer.requests();
    let token_requests: Vec<&String> = requests
        .iter()
        .filter(|r| !r.ends_with("resource="))
        .collect();
    assert_eq!(
        token_requests,
        [&format!("imds resource={CLIENT_ID}")],
        "{requests:?}"
    );

    // The App Service / Container Apps endpoint.
    let output = tokio::task::block_in_place(|| {
        verify(vec![
            (
                "IDENTITY_ENDPOINT",
                format!("{}/msi/token", issuer.authority),
            ),
            ("IDENTITY_HEADER", IDENTITY_HEADER.to_string()),
        ])
    });
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("token: from identity-endpoint"));

    // The Azure CLI.
    let token = issuer.token(&[ROLE]);
    let output = tokio::task::block_in_place(|| {
        verify(vec![
            ("FAKE_AZ_TOKEN", token.clone()),
            ("PGMCP_IMDS_ENDPOINT", "http://127.0.0.1:9/none".into()),
        ])
    });
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("token: from az"));
    assert!(
        workspace
            .az_calls()
            .iter()
            .any(|call| call[..4] == ["account", "get-access-token", "--resource", CLIENT_ID])
    );
    // The token itself is never printed.
    assert!(!text(&output).contains(&token));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_remote_says_why_a_call_failed() {
    let issuer = Issuer::start().await;
    let workspace = Workspace::new();
    let server = pgmcp(&issuer, &workspace, "reader");
    let imds = format!("{}/metadata/identity/oauth2/token", issuer.authority);
    let verify = |args: &[&str]| {
        tokio::task::block_in_place(|| {
            workspace.run(
                "scripts/verify-remote.sh",
                args,
                &[("PGMCP_IMDS_ENDPOINT", &imds)],
            )
        })
    };

    // 403: the managed identity has no app role assignment.
    write_info(&workspace, &server, CLIENT_ID);
    issuer.roles.set(&[]);
    let output = verify(&[]);
    let printed = text(&output);
    assert!(!output.status.success());
    assert!(printed.contains("403 Forbidden"), "{printed}");
    assert!(
        printed.contains("token roles: []; pgmcp requires the app role MCP.Access"),
        "{printed}"
    );
    assert!(
        printed.contains("insufficient_scope"),
        "the challenge is shown: {printed}"
    );
    issuer.roles.set(&[ROLE]);

    // 401: a token pgmcp does not accept, with the challenge pointing at the resource metadata.
    let output = verify(&["--token", "not-a-jwt"]);
    let printed = text(&output);
    assert!(!output.status.success());
    assert!(printed.contains("401 Unauthorized"), "{printed}");
    assert!(printed.contains("resource_metadata="), "{printed}");

    // The managed identity endpoint refuses a resource that is not pgmcp's app.
    write_info(&workspace, &server, "00000000-0000-4000-8000-000000000000");
    let output = verify(&[]);
    let printed = text(&output);
    assert!(!output.status.success());
    assert!(
        printed.contains("answered 400: invalid_resource: AADSTS500011"),
        "{printed}"
    );

    // The database refuses pgmcp's login: the role was never created.
    let unknown = pgmcp(&issuer, &workspace, "no_such_role");
    write_info(&workspace, &unknown, CLIENT_ID);
    let output = verify(&[]);
    let printed = text(&output);
    assert!(!output.status.success());
    assert!(printed.contains("FAILED: execute_query"), "{printed}");
    assert!(printed.contains("no_such_role"), "{printed}");
    assert!(printed.contains("pgmcp azure grant"), "{printed}");
}
