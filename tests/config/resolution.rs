//! TOML profiles: resolution order and every validation message.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pgmcp::config::{AccessMode, ConfigError, ConfigSources, SslMode, resolve};

use super::{expect_error, sources_with};

const SAMPLE: &str = r#"
default_profile = "local"

[profiles.zeta]
description = "Listed first, not the default"
host = "zeta.example"
sslmode = "disable"

[profiles.local]
description = "Local development database"
url = "postgresql://app@localhost/app"
application_name = "mine"
pool_min = 2
pool_max = 5
statement_timeout = "5s"
connect_timeout = 2500
max_rows = 10
max_rows_ceiling = 20
max_result_bytes = 65536
statement_cache = 0
access_mode = "read_write"
allow_ddl = true
deny_functions = ["dblink"]
allow_volatile_functions = ["nextval"]
allow_foreign_tables = ["sales.*"]
"#;

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("pgmcp.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The message of resolving a config whose only profile `p` has the given body (`sslmode = "disable"` keeps
/// TLS root checks out of the way).
fn error_for_profile(body: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        &format!("[profiles.p]\nsslmode = \"disable\"\n{body}\n"),
    );
    expect_error(&sources_with(Some(&path), &[("HOME", "/nonexistent")])).to_string()
}

#[test]
fn file_profiles_resolve_with_default_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), SAMPLE);
    let profiles = resolve(&sources_with(
        Some(&path),
        &[("USER", "me"), ("PGPORT", "6000")],
    ))
    .unwrap();
    let names: Vec<&str> = profiles.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["local", "zeta"]);
    let local = &profiles[0];
    assert_eq!(
        local.description.as_deref(),
        Some("Local development database")
    );
    assert_eq!(local.conn.hosts, ["localhost"]);
    assert_eq!(
        local.conn.ports,
        [6000],
        "PG* fills what the profile leaves out"
    );
    assert_eq!(local.conn.user.as_deref(), Some("app"));
    assert_eq!(local.conn.application_name.as_deref(), Some("mine"));
    assert_eq!((local.pool_min, local.pool_max), (2, 5));
    assert_eq!(
        local.statement_cache_size(),
        0,
        "statement_cache = 0 turns the cache off"
    );
    let zeta = &profiles[1];
    assert_eq!(zeta.statement_cache_size(), 64, "the default elsewhere");
    assert_eq!(local.statement_timeout, Duration::from_secs(5));
    assert_eq!(local.connect_timeout, Duration::from_millis(2500));
    assert_eq!(
        (
            local.max_rows,
            local.max_rows_ceiling,
            local.max_result_bytes
        ),
        (10, 20, 65536)
    );
    assert_eq!(local.access_mode, AccessMode::ReadWrite);
    assert!(local.allow_ddl);
    assert_eq!(local.deny_functions, ["dblink"]);
    assert_eq!(local.allow_volatile_functions, ["nextval"]);
    assert_eq!(local.allow_foreign_tables, ["sales.*"]);
    let zeta = &profiles[1];
    assert_eq!(
        zeta.conn.dbname.as_deref(),
        Some("me"),
        "dbname defaults to the user"
    );
    assert_eq!(zeta.conn.application_name.as_deref(), Some("pgmcp"));
    assert_eq!(zeta.access_mode, AccessMode::ReadOnly);
}

#[test]
fn first_profile_is_default_without_default_profile() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        &SAMPLE.replace("default_profile = \"local\"", ""),
    );
    let profiles = resolve(&sources_with(Some(&path), &[])).unwrap();
    assert_eq!(profiles[0].name, "zeta");
}

#[test]
fn selection_by_flag_and_env() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), SAMPLE);
    let mut sources = sources_with(Some(&path), &[("PGMCP_PROFILE", "local")]);
    let names = |s: &ConfigSources| {
        resolve(s)
            .unwrap()
            .into_iter()
            .map(|p| p.name)
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&sources), ["local"]);
    sources.profiles = vec!["zeta".into(), "local".into()];
    assert_eq!(names(&sources), ["zeta", "local"]);
    sources.profiles = vec!["nope".into()];
    let err = expect_error(&sources);
    assert!(matches!(err, ConfigError::UnknownProfile { .. }));
    let message = err.to_string();
    assert!(
        message.contains("\"nope\"") && message.contains("zeta, local"),
        "{message}"
    );
}

#[test]
fn no_file_no_url_gives_default_profile_from_pg_env() {
    let profiles = resolve(&sources_with(
        None,
        &[("PGHOST", "envhost"), ("PGUSER", "u"), ("USER", "os")],
    ))
    .unwrap();
    assert_eq!(profiles.len(), 1);
    assert_eq!(profiles[0].name, "default");
    assert_eq!(profiles[0].conn.hosts, ["envhost"]);
    assert_eq!(profiles[0].conn.user.as_deref(), Some("u"));
    assert_eq!(profiles[0].conn.dbname.as_deref(), Some("u"));
    let err = expect_error(&ConfigSources {
        profiles: vec!["x".into()],
        ..ConfigSources::default()
    });
    assert!(err.to_string().contains("--config"), "{err}");
}

#[test]
fn url_order_and_profile_limits_stay() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), SAMPLE);
    let env = [
        ("DATABASE_URL", "postgresql://envurl/envdb"),
        ("PGHOST", "pghost"),
        ("PGUSER", "pguser"),
    ];
    let mut sources = sources_with(Some(&path), &env);
    let profiles = resolve(&sources).unwrap();
    assert_eq!(profiles.len(), 1);
    let p = &profiles[0];
    assert_eq!(p.name, "local");
    assert_eq!(p.conn.hosts, ["envurl"], "DATABASE_URL beats the profile");
    assert_eq!(
        p.conn.user.as_deref(),
        Some("pguser"),
        "PG* fills what the URL leaves out"
    );
    assert_eq!(p.max_rows, 10, "the profile's limits stay");
    assert_eq!(
        p.conn.application_name.as_deref(),
        Some("pgmcp"),
        "the URL replaces all connection settings"
    );

    sources.database_url = Some("postgresql://flag/flagdb".into());
    assert_eq!(
        resolve(&sources).unwrap()[0].conn.hosts,
        ["flag"],
        "--database-url beats DATABASE_URL"
    );
    sources.profiles = vec!["zeta".into()];
    let p = &resolve(&sources).unwrap()[0];
    assert_eq!(
        (p.name.as_str(), p.conn.hosts[0].as_str()),
        ("zeta", "flag")
    );
    sources.profiles = vec!["zeta".into(), "local".into()];
    assert!(expect_error(&sources).to_string().contains("--profile"));

    let bad = sources_with(None, &[("DATABASE_URL", "postgresql://u:hunter2@h:bad/db")]);
    let message = expect_error(&bad).to_string();
    assert!(
        message.contains("u:****@h") && !message.contains("hunter2"),
        "{message}"
    );
}

#[test]
fn file_problems_are_reported_with_the_key() {
    let message = error_for_profile("max_rowz = 3");
    assert!(message.contains("max_rowz"), "{message}");
    let message = error_for_profile("allow_foreign_tables = [\"sales. orders\"]");
    assert!(
        message.contains("allow_foreign_tables") && message.contains("not a table name"),
        "{message}"
    );
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml");
    let message = expect_error(&sources_with(Some(&missing), &[])).to_string();
    assert!(message.contains("missing.toml"), "{message}");
    let path = write_config(dir.path(), "default_profile = \"x\"\n[profiles.a]\n");
    let message = expect_error(&sources_with(Some(&path), &[])).to_string();
    assert!(
        message.contains("`default_profile`") && message.contains("a"),
        "{message}"
    );
    let path = write_config(dir.path(), "[profiles.Prod]\n");
    let message = expect_error(&sources_with(Some(&path), &[])).to_string();
    assert!(
        message.contains("\"Prod\"") && message.contains("a-z"),
        "{message}"
    );
}

#[test]
fn password_in_file_is_allowed_but_never_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        "[profiles.p]\nsslmode=\"disable\"\npassword = \"s3cr3t-value\"\n",
    );
    let profiles = resolve(&sources_with(Some(&path), &[])).unwrap();
    assert_eq!(
        profiles[0].conn.password.as_ref().unwrap().expose(),
        "s3cr3t-value"
    );
    let message = error_for_profile("password = \"s3cr3t-value\"\nmax_rows = 0");
    assert!(!message.contains("s3cr3t-value"), "{message}");
    let message = error_for_profile("password = \"s3cr3t-value\"\npasword = 1");
    assert!(!message.contains("s3cr3t-value"), "{message}");
    let message = error_for_profile("url = \"postgresql://u:s3cr3t-value@h:x/db\"");
    assert!(
        !message.contains("s3cr3t-value") && message.contains("url"),
        "{message}"
    );
}

#[test]
fn password_file() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("pw");
    std::fs::write(&secret, "from-file\n").unwrap();
    let body = format!(
        "[profiles.p]\nsslmode=\"disable\"\npassword_file = {:?}\n",
        secret.to_str().unwrap()
    );
    let path = write_config(dir.path(), &body);
    let profiles = resolve(&sources_with(Some(&path), &[])).unwrap();
    assert_eq!(
        profiles[0].conn.password.as_ref().unwrap().expose(),
        "from-file"
    );
    let message = error_for_profile("password_file = \"/nonexistent/pw\"");
    assert!(
        message.contains("`profiles.p.password_file`") && message.contains("/nonexistent/pw"),
        "{message}"
    );
}

#[test]
fn every_validation_names_setting_and_fix() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "max_rows = 0",
            "`profiles.p.max_rows` = 0",
            "must be between 1 and 1000000 — set a positive number of rows",
        ),
        (
            "pool_max = 0",
            "`profiles.p.pool_max` = 0",
            "between 1 and 1000",
        ),
        (
            "pool_max = 5000",
            "`profiles.p.pool_max` = 5000",
            "between 1 and 1000",
        ),
        (
            "pool_min = 4\npool_max = 2",
            "`profiles.p.pool_min` = 4",
            "lower pool_min or raise pool_max",
        ),
        (
            "statement_timeout = \"0s\"",
            "`profiles.p.statement_timeout` = 0",
            "greater than zero",
        ),
        (
            "statement_timeout = \"soon\"",
            "`profiles.p.statement_timeout` = \"soon\"",
            "\"30s\"",
        ),
        (
            "connect_timeout = 0",
            "`profiles.p.connect_timeout` = 0",
            "greater than zero",
        ),
        (
            "max_rows = 50\nmax_rows_ceiling = 20",
            "`profiles.p.max_rows` = 50",
            "raise max_rows_ceiling",
        ),
        (
            "statement_cache = -1",
            "`profiles.p.statement_cache` = -1",
            "transaction-pooling proxy",
        ),
        (
            "max_result_bytes = 10",
            "`profiles.p.max_result_bytes` = 10",
            "bytes",
        ),
        (
            "access_mode = \"rw\"",
            "`profiles.p.access_mode` = \"rw\"",
            "read_only, read_write",
        ),
        (
            "allow_ddl = true",
            "`profiles.p.allow_ddl` = true",
            "access_mode = \"read_write\"",
        ),
        ("port = 70000", "`profiles.p.port` = 70000", "5432"),
        (
            "deny_functions = [\"\"]",
            "`profiles.p.deny_functions`",
            "function name",
        ),
        (
            "url = \"postgresql://h/db\"\nhost = \"other\"",
            "`profiles.p.host`",
            "keep one",
        ),
    ];
    for (body, setting, fix) in cases {
        let message = error_for_profile(body);
        assert!(
            message.contains(setting) && message.contains(fix),
            "{body}: {message}"
        );
    }
}

#[test]
fn sslmode_and_root_certificate_checks() {
    let dir = tempfile::tempdir().unwrap();
    let resolve_body = |body: &str, home: &Path| {
        let path = write_config(dir.path(), &format!("[profiles.p]\n{body}\n"));
        resolve(&sources_with(
            Some(&path),
            &[("HOME", home.to_str().unwrap())],
        ))
    };
    let home = tempfile::tempdir().unwrap();
    let message = resolve_body("sslmode = \"verify_full\"", home.path())
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("`profiles.p.sslmode` = \"verify_full\": expected one of disable"),
        "{message}"
    );
    let message = resolve_body("sslmode = \"verify-full\"", home.path())
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("`profiles.p.sslmode`") && message.contains("sslrootcert=system"),
        "{message}"
    );
    let message = resolve_body("sslrootcert = \"/no/ca.pem\"", home.path())
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("`profiles.p.sslrootcert` = \"/no/ca.pem\": no such file"),
        "{message}"
    );
    let message = resolve_body(
        "sslrootcert = \"system\"\nsslmode = \"require\"",
        home.path(),
    )
    .unwrap_err()
    .to_string();
    assert!(message.contains("verify-full"), "{message}");
    // Azure hosts default to verify-full against the system roots.
    let azure = resolve_body("host = \"x.postgres.database.azure.com\"", home.path()).unwrap();
    assert_eq!(azure[0].conn.effective_sslmode(), SslMode::VerifyFull);
    // ~/.postgresql/root.crt counts as a root file for verify-ca.
    std::fs::create_dir_all(home.path().join(".postgresql")).unwrap();
    std::fs::write(home.path().join(".postgresql/root.crt"), "").unwrap();
    assert!(resolve_body("sslmode = \"verify-ca\"", home.path()).is_ok());
}

#[test]
fn statement_cache_is_off_by_default_behind_azure_pgbouncer_port() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        "[profiles.bouncer]\nhost = \"db.example\"\nport = 6432\nsslmode = \"disable\"\n\n\
         [profiles.bouncer_cached]\nhost = \"db.example\"\nport = 6432\nsslmode = \"disable\"\nstatement_cache = 16\n\n\
         [profiles.direct]\nhost = \"db.example\"\nport = 5432\nsslmode = \"disable\"\n",
    );
    let profiles = resolve(&sources_with(Some(&path), &[("USER", "me")])).unwrap();
    let size = |name: &str| {
        profiles
            .iter()
            .find(|p| p.name == name)
            .unwrap()
            .statement_cache_size()
    };
    // PgBouncer in transaction mode may run the next transaction on a session that never saw the statement.
    assert_eq!(size("bouncer"), 0);
    assert_eq!(size("bouncer_cached"), 16, "an explicit size wins");
    assert_eq!(size("direct"), 64);
}
