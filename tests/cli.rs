//! The command line as a user meets it: `check`, `demo`, configuration errors, and secrets that never show.

mod common;

use std::process::{Command, Output};

use common::{Era, call_ok, cluster, reader_url, rows, spawn};
use pgmcp::demo::cluster::{ClusterOptions, TempCluster};
use serde_json::json;

fn pgmcp(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pgmcp"));
    command.args(args);
    for (key, _) in std::env::vars() {
        if key.starts_with("PG") || key == "DATABASE_URL" {
            command.env_remove(key);
        }
    }
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run pgmcp")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn check_reports_the_session_and_warns_about_a_superuser() {
    let superuser = cluster().url("app");
    let output = pgmcp(&["check", "--database-url", &superuser], &[]);
    let report = text(&output);
    assert!(output.status.success(), "{report}");
    assert!(report.contains("status:         connected"), "{report}");
    assert!(report.contains("PostgreSQL 1"), "{report}");
    assert!(report.contains("user:           postgres"), "{report}");
    assert!(report.contains("database:       app"), "{report}");
    assert!(
        report.contains("SUPERUSER"),
        "a superuser is called out: {report}"
    );
    assert!(report.contains("ssl:            no"), "{report}");
}

#[test]
fn check_is_quiet_for_a_least_privilege_role() {
    let output = pgmcp(&["check", "--database-url", &reader_url()], &[]);
    let report = text(&output);
    assert!(output.status.success(), "{report}");
    assert!(report.contains("privileges:     ok"), "{report}");
    assert!(!report.contains("warning:"), "{report}");
}

#[test]
fn check_warns_about_write_privileges_and_ownership() {
    let output = pgmcp(
        &[
            "check",
            "--database-url",
            &format!("postgresql://writer@127.0.0.1:{}/app", cluster().port()),
        ],
        &[],
    );
    let report = text(&output);
    assert!(output.status.success(), "{report}");
    assert!(report.contains("can write to 2 table(s)"), "{report}");
}

#[test]
fn check_fails_with_the_reason_when_the_server_is_unreachable() {
    let closed_port = common::free_port();
    let output = pgmcp(
        &[
            "check",
            "--database-url",
            &format!(
                "postgresql://nobody:hunter2secret@127.0.0.1:{closed_port}/db?connect_timeout=2"
            ),
        ],
        &[],
    );
    let report = text(&output);
    assert!(!output.status.success());
    assert!(report.contains("FAILED"), "{report}");
    assert!(report.to_lowercase().contains("connect"), "{report}");
    assert!(
        !report.contains("hunter2secret"),
        "the password leaked: {report}"
    );
}

#[test]
fn passwords_never_appear_in_errors_or_logs() {
    let password = "S3cret-Pa55word-xyz";
    let cluster = TempCluster::start(&ClusterOptions {
        superuser_password: Some(password.to_string()),
        hba: Some("local all all scram-sha-256\nhost all all 127.0.0.1/32 scram-sha-256\n".into()),
        ..Default::default()
    })
    .expect("password cluster");
    let wrong = format!(
        "postgresql://postgres:{password}-wrong@127.0.0.1:{}/postgres",
        cluster.port()
    );
    let output = pgmcp(&["check", "--database-url", &wrong, "--log", "debug"], &[]);
    let report = text(&output);
    assert!(!output.status.success());
    assert!(
        report.contains("password authentication failed"),
        "{report}"
    );
    assert!(!report.contains(password), "the password leaked: {report}");

    let right = format!(
        "postgresql://postgres:{password}@127.0.0.1:{}/postgres",
        cluster.port()
    );
    let output = pgmcp(&["check", "--database-url", &right, "--log", "debug"], &[]);
    let report = text(&output);
    assert!(output.status.success(), "{report}");
    assert!(!report.contains(password), "the password leaked: {report}");

    // PGPASSWORD is honoured and stays secret too.
    let url = format!(
        "postgresql://postgres@127.0.0.1:{}/postgres",
        cluster.port()
    );
    let output = pgmcp(
        &["check", "--database-url", &url],
        &[("PGPASSWORD", password)],
    );
    assert!(output.status.success(), "{}", text(&output));
    assert!(!text(&output).contains(password));
}

#[test]
fn configuration_errors_name_the_setting_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[profiles.local]\nmax_rows = 0\n",
            "profiles.local.max_rows",
        ),
        ("[profiles.local]\nsslmode = \"verify_full\"\n", "sslmode"),
        ("[profiles.local]\nmax_rowz = 10\n", "max_rowz"),
        ("[profiles.local]\npool_min = 5\npool_max = 2\n", "pool_min"),
        (
            "[profiles.local]\nstatement_timeout = \"soon\"\n",
            "statement_timeout",
        ),
    ];
    for (index, (contents, setting)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad{index}.toml"));
        std::fs::write(&path, contents).unwrap();
        let output = pgmcp(&["serve", "--config", path.to_str().unwrap()], &[]);
        let message = text(&output);
        assert!(!output.status.success(), "{contents} was accepted");
        assert!(
            message.contains(setting),
            "message for {contents:?} does not name {setting}: {message}"
        );
    }
    let good = dir.path().join("good.toml");
    std::fs::write(&good, "[profiles.local]\ndescription = \"x\"\n").unwrap();
    let output = pgmcp(
        &[
            "serve",
            "--config",
            good.to_str().unwrap(),
            "--profile",
            "prod",
        ],
        &[],
    );
    let message = text(&output);
    assert!(!output.status.success());
    assert!(
        message.contains("prod") && message.contains("local"),
        "unknown profile lists the available ones: {message}"
    );

    let output = pgmcp(
        &[
            "serve",
            "--database-url",
            "postgresql://u:pw-in-url@h/db",
            "--statement-timeout",
            "fast",
        ],
        &[],
    );
    let message = text(&output);
    assert!(!output.status.success());
    assert!(message.contains("--statement-timeout"), "{message}");
    assert!(!message.contains("pw-in-url"));

    let output = pgmcp(
        &[
            "serve",
            "--database-url",
            "postgresql://u:pw-in-url@h/db?sslmode=sometimes",
        ],
        &[],
    );
    let message = text(&output);
    assert!(!output.status.success());
    assert!(
        message.contains("sslmode") && message.contains("verify-full"),
        "{message}"
    );
    assert!(!message.contains("pw-in-url"), "{message}");

    // A log filter that means nothing used to fall back to `info` without a word.
    let output = pgmcp(&["check"], &[("PGMCP_LOG", "info,pgmcp=loud")]);
    let message = text(&output);
    assert!(!output.status.success());
    assert!(
        message.contains("PGMCP_LOG") && message.contains("info,pgmcp=debug"),
        "{message}"
    );
}

#[test]
fn version_and_help_describe_the_product() {
    let output = pgmcp(&["--version"], &[]);
    assert!(text(&output).contains(env!("CARGO_PKG_VERSION")));
    let output = pgmcp(&["--help"], &[]);
    let help = text(&output);
    for word in ["serve", "check", "demo", "DATABASE_URL", "PGHOST"] {
        assert!(help.contains(word), "--help mentions {word}: {help}");
    }
    let output = pgmcp(&["serve", "--help"], &[]);
    let help = text(&output);
    for flag in [
        "--database-url",
        "--config",
        "--profile",
        "--access-mode",
        "--statement-timeout",
        "--max-rows",
    ] {
        assert!(help.contains(flag), "serve --help mentions {flag}");
    }
}

#[test]
fn demo_prints_client_configuration() {
    let output = pgmcp(&["demo", "--print-config"], &[]);
    let config = text(&output);
    assert!(output.status.success());
    assert!(
        config.contains("mcpServers") && config.contains("\"servers\""),
        "{config}"
    );
    assert!(config.contains(env!("CARGO_BIN_EXE_pgmcp")), "{config}");
}

#[tokio::test]
async fn demo_serves_the_sample_database_and_cleans_up() {
    let client = spawn(&["demo"], &[], Era::Stateless).await;
    let tables = call_ok(&client, "list_tables", json!({})).await;
    for table in [
        "restaurants",
        "reviews",
        "customers",
        "menu_items",
        "cuisines",
        "restaurant_ratings",
    ] {
        assert!(
            tables.to_string().contains(&format!("\"{table}\"")),
            "{table} in {tables}"
        );
    }
    let reviews = call_ok(
        &client,
        "execute_query",
        json!({"sql": "SELECT count(*) FROM reviews"}),
    )
    .await;
    assert!(rows(&reviews)[0][0].as_i64().unwrap() >= 100_000);
    let info = call_ok(&client, "server_info", json!({})).await;
    assert_eq!(info["current_user"], json!("pgmcp_demo"));
    client.cancel().await.ok();
}

/// Desktop MCP clients (Claude Desktop, VS Code) start servers with a small environment: `PATH=/usr/bin:/bin`,
/// without /usr/sbin, where `runuser` lives (used when the demo runs as root) and without PostgreSQL's bin
/// directory. The demo must still start its cluster and serve.
#[tokio::test]
async fn demo_starts_for_a_desktop_client_with_a_minimal_environment() {
    use rmcp::ServiceExt;
    use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};

    let home = tempfile::tempdir().unwrap();
    let command = tokio::process::Command::new(env!("CARGO_BIN_EXE_pgmcp")).configure(|cmd| {
        cmd.arg("demo")
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", home.path());
    });
    let transport = TokioChildProcess::builder(command)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn pgmcp demo");
    let (transport, stderr) = transport;
    let mut stderr = stderr.expect("stderr");
    let client = match ().serve(transport).await {
        Ok(client) => client,
        Err(err) => {
            let mut log = String::new();
            let _ = tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut log).await;
            panic!("the demo did not start with PATH=/usr/bin:/bin: {err}\n{log}");
        }
    };
    let tools = client.list_all_tools().await.expect("tools/list");
    let names: Vec<&str> = tools.iter().map(|tool| tool.name.as_ref()).collect();
    for tool in [
        "list_tables",
        "describe_table",
        "execute_query",
        "server_info",
    ] {
        assert!(names.contains(&tool), "{tool} in {names:?}");
    }
    let info = call_ok(&client, "server_info", json!({})).await;
    assert_eq!(info["current_user"], json!("pgmcp_demo"));
    client.cancel().await.ok();
}
