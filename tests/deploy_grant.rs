//! `pgmcp azure grant` prints SQL that works: the script runs through psql against a real PostgreSQL (with
//! pgaadauth_create_principal_with_oid stubbed by a function of the same signature that creates the role, as
//! Azure's does), and `pgmcp check` as the new role then confirms exactly the privileges of its access mode.

mod common;

use std::process::Command;

const OBJECT_ID: &str = "8a5f3e2b-1d0c-4b9a-8f7e-6d5c4b3a2f1e";

/// Azure's function creates a login role for the principal; the stub does that much (and records its arguments).
const STUB: &str = "
CREATE TABLE IF NOT EXISTS public.created_principals (role text, object_id text, object_type text, is_admin bool, is_mfa bool);
CREATE OR REPLACE FUNCTION public.pgaadauth_create_principal_with_oid(
    roleName text, objectId text, objectType text, isAdmin boolean, isMfa boolean) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format('CREATE ROLE %I LOGIN', roleName);
  INSERT INTO public.created_principals VALUES (roleName, objectId, objectType, isAdmin, isMfa);
  RETURN format('Created role for %s', roleName);
END $$;";

fn pgmcp(args: &[&str]) -> (bool, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pgmcp"));
    command.args(args).env("PGMCP_LOG", "warn");
    for (key, _) in std::env::vars() {
        if key.starts_with("PG") || key == "DATABASE_URL" {
            command.env_remove(key);
        }
    }
    let output = command.output().expect("run pgmcp");
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

/// Prints the script for `name`, runs it as the administrator (the superuser here), and returns the script.
fn grant(name: &str, extra: &[&str]) -> String {
    let cluster = common::cluster();
    // Once: concurrent CREATE OR REPLACE FUNCTION of the same function fails ("tuple concurrently updated").
    static STUBBED: std::sync::Once = std::sync::Once::new();
    STUBBED.call_once(|| {
        cluster.psql("postgres", STUB).expect("stub pgaadauth");
    });
    let mut args = vec![
        "azure",
        "grant",
        "--name",
        name,
        "--object-id",
        OBJECT_ID,
        "--database",
        "app",
    ];
    args.extend(extra);
    let (ok, script) = pgmcp(&args);
    assert!(ok, "{script}");
    // One script at a time: two concurrent ALTER DEFAULT PRIVILEGES for the same grantor and schema race to
    // insert the same pg_default_acl row and one fails with a duplicate key, as two administrators would.
    static ONE_SCRIPT_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_SCRIPT_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    cluster
        .psql("postgres", &script)
        .expect("the printed script runs");
    script
}

fn check(name: &str, access_mode: &str) -> String {
    let cluster = common::cluster();
    let url = format!(
        "postgresql://{name}@{}:{}/app",
        cluster.host(),
        cluster.port()
    );
    let (ok, output) = pgmcp(&[
        "check",
        "--database-url",
        &url,
        "--access-mode",
        access_mode,
    ]);
    assert!(ok, "{output}");
    output
}

fn as_role(name: &str, sql: &str) -> anyhow::Result<String> {
    common::cluster().psql("app", &format!("SET ROLE \"{name}\";\n{sql}"))
}

#[test]
fn read_only_principal_reads_and_cannot_write() {
    let script = grant("aca-pgmcp-ro", &[]);
    assert!(script.contains("pgaadauth_create_principal_with_oid('aca-pgmcp-ro', '8a5f3e2b-1d0c-4b9a-8f7e-6d5c4b3a2f1e', 'service', false, false)"));
    let created = common::cluster()
        .psql(
            "postgres",
            "SELECT object_id, object_type, is_admin FROM public.created_principals WHERE role = 'aca-pgmcp-ro'",
        )
        .unwrap();
    assert_eq!(created.trim(), format!("{OBJECT_ID}|service|f"));

    let report = check("aca-pgmcp-ro", "read_only");
    assert!(report.contains("privileges:     ok"), "{report}");
    assert!(!report.contains("warning:"), "{report}");
    assert_eq!(
        as_role("aca-pgmcp-ro", "SELECT count(*) FROM canary")
            .unwrap()
            .trim(),
        "10"
    );
    let refused = as_role("aca-pgmcp-ro", "INSERT INTO canary VALUES (1000, 'x')").unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("permission denied for table canary"),
        "{refused}"
    );
    // Tables created later by the administrator are readable too (default privileges).
    common::cluster()
        .psql(
            "app",
            "CREATE TABLE public.later_ro (id int); INSERT INTO public.later_ro VALUES (7);",
        )
        .unwrap();
    assert_eq!(
        as_role("aca-pgmcp-ro", "SELECT id FROM later_ro")
            .unwrap()
            .trim(),
        "7"
    );
}

#[test]
fn read_write_principal_writes_and_check_confirms_it() {
    let script = grant("aca-pgmcp-rw", &["--access-mode", "read_write"]);
    assert!(
        script.contains("--access-mode read_write"),
        "the check command matches: {script}"
    );
    let report = check("aca-pgmcp-rw", "read_write");
    assert!(report.contains("privileges:     ok"), "{report}");
    // The same role behind a read-only pgmcp holds more than it needs, and check says so.
    let report = check("aca-pgmcp-rw", "read_only");
    assert!(report.contains("the role can write to"), "{report}");

    as_role(
        "aca-pgmcp-rw",
        "INSERT INTO authors(name) VALUES ('Octavia E. Butler')",
    )
    .expect("the role inserts");
    let refused = as_role("aca-pgmcp-rw", "TRUNCATE canary").unwrap_err();
    assert!(
        refused.to_string().contains("permission denied"),
        "{refused}"
    );
    let refused = as_role("aca-pgmcp-rw", "CREATE TABLE public.mine (id int)").unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("permission denied for schema public"),
        "{refused}"
    );
}

#[test]
fn a_bad_object_id_prints_no_sql() {
    let (ok, output) = pgmcp(&[
        "azure",
        "grant",
        "--name",
        "x",
        "--object-id",
        "x'); DROP ROLE postgres; --",
    ]);
    assert!(!ok);
    assert!(output.contains("not a UUID"), "{output}");
    assert!(!output.contains("pgaadauth"), "{output}");
}
