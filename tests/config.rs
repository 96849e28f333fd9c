//! Connection strings, environment merging, pgpass, TOML profiles, resolution order and validation messages.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use pgmcp::config::file::parse_duration;
use pgmcp::config::pgpass::{find_password, lookup};
use pgmcp::config::url::redact_url;
use pgmcp::config::{
    AccessMode, ConfigError, ConfigSources, ConnSettings, ProfileOverrides, SslMode, resolve,
};

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| map.get(name).cloned()
}

fn password(settings: &ConnSettings) -> Option<&str> {
    settings.password.as_ref().map(|p| p.expose())
}

// ---- connection strings ----

#[test]
fn url_with_everything() {
    let s = ConnSettings::parse(
        "postgresql://app:s%40cret@db.example.com:6432/my%20db?sslmode=verify-full&sslrootcert=/ca.pem&application_name=x&connect_timeout=7&options=-c%20search_path%3Dapp",
    )
    .unwrap();
    assert_eq!(s.hosts, vec!["db.example.com"]);
    assert_eq!(s.ports, vec![6432]);
    assert_eq!(s.user.as_deref(), Some("app"));
    assert_eq!(password(&s), Some("s@cret"));
    assert_eq!(s.dbname.as_deref(), Some("my db"));
    assert_eq!(s.sslmode, Some(SslMode::VerifyFull));
    assert_eq!(s.sslrootcert.as_deref(), Some("/ca.pem"));
    assert_eq!(s.application_name.as_deref(), Some("x"));
    assert_eq!(s.connect_timeout, Some(Duration::from_secs(7)));
    assert_eq!(s.options.as_deref(), Some("-c search_path=app"));
}

#[test]
fn url_minimal_and_query_parameters_for_host_and_credentials() {
    let s = ConnSettings::parse("postgres://").unwrap();
    assert!(s.hosts.is_empty() && s.user.is_none() && s.dbname.is_none());
    let s = ConnSettings::parse("postgres:///db?host=h&port=1234&user=u&password=p&dbname=other")
        .unwrap();
    assert_eq!(s.hosts, vec!["h"]);
    assert_eq!(s.ports, vec![1234]);
    assert_eq!(s.user.as_deref(), Some("u"));
    assert_eq!(password(&s), Some("p"));
    assert_eq!(s.dbname.as_deref(), Some("other"));
}

#[test]
fn url_multiple_hosts_and_ipv6() {
    let s = ConnSettings::parse("postgresql://u@h1:5432,h2:5433/db").unwrap();
    assert_eq!(s.hosts, vec!["h1", "h2"]);
    assert_eq!(s.ports, vec![5432, 5433]);
    let s = ConnSettings::parse("postgresql://[::1]:6000,h2/db").unwrap();
    assert_eq!(s.hosts, vec!["::1", "h2"]);
    assert_eq!(s.ports, vec![6000, 5432]);
}

#[test]
fn azure_single_server_user_form() {
    let s = ConnSettings::parse(
        "postgresql://me%40myserver:pw@myserver.postgres.database.azure.com/db",
    )
    .unwrap();
    assert_eq!(s.user.as_deref(), Some("me@myserver"));
    let s =
        ConnSettings::parse("postgresql://me@myserver:pw@myserver.postgres.database.azure.com/db")
            .unwrap();
    assert_eq!(s.user.as_deref(), Some("me@myserver"));
    assert_eq!(s.hosts, vec!["myserver.postgres.database.azure.com"]);
    let s =
        ConnSettings::parse("host=myserver.postgres.database.azure.com user=me@myserver").unwrap();
    assert_eq!(s.user.as_deref(), Some("me@myserver"));
    assert_eq!(s.effective_sslmode(), SslMode::VerifyFull);
}

#[test]
fn keyword_value_quoting_and_escapes() {
    let s = ConnSettings::parse(
        r"host=localhost port = 5433 dbname='my db' password='it''s' user=a\ b application_name='x\'y\\z'",
    )
    .unwrap();
    assert_eq!(s.hosts, vec!["localhost"]);
    assert_eq!(s.ports, vec![5433]);
    assert_eq!(s.dbname.as_deref(), Some("my db"));
    assert_eq!(password(&s), Some("it's"));
    assert_eq!(s.user.as_deref(), Some("a b"));
    assert_eq!(s.application_name.as_deref(), Some(r"x'y\z"));
    let s = ConnSettings::parse("host=h1,h2 port=1,2").unwrap();
    assert_eq!(s.hosts, vec!["h1", "h2"]);
    assert_eq!(s.ports, vec![1, 2]);
    assert!(ConnSettings::parse("").unwrap().hosts.is_empty());
}

#[test]
fn unknown_keyword_is_named() {
    let err = ConnSettings::parse("host=x sslcompression=1")
        .unwrap_err()
        .to_string();
    assert!(err.contains("`sslcompression`"), "{err}");
    let err = ConnSettings::parse("postgresql://h/db?frobnicate=1")
        .unwrap_err()
        .to_string();
    assert!(err.contains("`frobnicate`"), "{err}");
}

#[test]
fn bad_values_are_explained() {
    let err = ConnSettings::parse("postgresql://h:99999/db")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`port`") && err.contains("99999") && err.contains("65535"),
        "{err}"
    );
    let err = ConnSettings::parse("port=abc").unwrap_err().to_string();
    assert!(err.contains("`port`") && err.contains("\"abc\""), "{err}");
    let err = ConnSettings::parse("sslmode=verify_full")
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "invalid `sslmode` = \"verify_full\": expected one of disable, allow, prefer, require, verify-ca, verify-full"
    );
    let err = ConnSettings::parse("host=a,b,c port=1,2")
        .unwrap_err()
        .to_string();
    assert!(err.contains("one port per host"), "{err}");
    assert!(ConnSettings::parse("host").is_err());
    assert!(ConnSettings::parse("host='open").is_err());
    assert!(ConnSettings::parse("postgresql://h/%zz").is_err());
}

#[test]
fn password_never_appears_in_errors() {
    let secret = "Tr0ub4dor-SECRET";
    let inputs = [
        format!("postgresql://u:{secret}@h:notaport/db"),
        format!("postgresql://u:{secret}@h/db?bogus=1"),
        format!("postgresql://u:{secret}%zz@h/db"),
        format!("password={secret} port=x"),
        format!("password='{secret}' wrong=1"),
        format!("password='{secret}"),
        format!("postgresql://u@h/db?password={secret}&sslmode=nope"),
    ];
    for input in inputs {
        let err = ConnSettings::parse(&input).unwrap_err();
        assert!(!err.to_string().contains(secret), "{err}");
        assert!(!format!("{err:?}").contains(secret), "{err:?}");
    }
    let s = ConnSettings::parse(&format!("postgresql://u:{secret}@h/db")).unwrap();
    assert!(!s.redacted().contains(secret));
    assert!(!format!("{s:?}").contains(secret));
    assert_eq!(s.redacted(), "host=h dbname=db user=u sslmode=prefer");
}

#[test]
fn url_redaction() {
    assert_eq!(
        redact_url("postgresql://user:pw@host/db"),
        "postgresql://user:****@host/db"
    );
    assert_eq!(
        redact_url("postgres://user@host/db?password=x&a=b"),
        "postgres://user@host/db?password=****&a=b"
    );
    assert_eq!(redact_url("host=x password=y"), "****");
}

#[test]
fn sslmode_defaults() {
    let mode = |conn: &str| ConnSettings::parse(conn).unwrap().effective_sslmode();
    assert_eq!(mode("host=localhost"), SslMode::Prefer);
    assert_eq!(
        mode("host=a.postgres.database.azure.com"),
        SslMode::VerifyFull
    );
    assert_eq!(
        mode("host=a.postgres.database.chinacloudapi.cn,b.postgres.database.usgovcloudapi.net"),
        SslMode::VerifyFull
    );
    assert_eq!(
        mode("host=a.postgres.database.azure.com,localhost"),
        SslMode::Prefer
    );
    assert_eq!(
        mode("host=a.postgres.database.azure.com sslmode=require"),
        SslMode::Require
    );
    assert_eq!(mode("sslrootcert=system"), SslMode::VerifyFull);
}

// ---- environment ----

#[test]
fn env_variables_fill_missing_fields() {
    let env = env_of(&[
        ("PGHOST", "envhost"),
        ("PGPORT", "6543"),
        ("PGDATABASE", "envdb"),
        ("PGUSER", "envuser"),
        ("PGPASSWORD", "envpw"),
        ("PGSSLMODE", "require"),
        ("PGAPPNAME", "envapp"),
        ("PGCONNECT_TIMEOUT", "3"),
        ("PGOPTIONS", "-c x=y"),
        ("PGSSLROOTCERT", "/r.pem"),
        ("PGPASSFILE", "/pf"),
    ]);
    let from_env = ConnSettings::from_env(&env).unwrap();
    let merged = ConnSettings::parse("postgresql://urluser@urlhost/urldb")
        .unwrap()
        .or(from_env);
    assert_eq!(merged.hosts, vec!["urlhost"]);
    assert_eq!(merged.ports, vec![6543]);
    assert_eq!(merged.user.as_deref(), Some("urluser"));
    assert_eq!(merged.dbname.as_deref(), Some("urldb"));
    assert_eq!(password(&merged), Some("envpw"));
    assert_eq!(merged.sslmode, Some(SslMode::Require));
    assert_eq!(merged.application_name.as_deref(), Some("envapp"));
    assert_eq!(merged.connect_timeout, Some(Duration::from_secs(3)));
    assert_eq!(merged.options.as_deref(), Some("-c x=y"));
    assert_eq!(merged.sslrootcert.as_deref(), Some("/r.pem"));
    assert_eq!(merged.passfile.as_deref(), Some(Path::new("/pf")));

    let err = ConnSettings::from_env(&env_of(&[("PGPORT", "x")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("`PGPORT`"), "{err}");
}

#[test]
fn defaults_follow_libpq() {
    let s = ConnSettings::default().with_defaults(&env_of(&[("USER", "alice")]));
    assert_eq!(s.hosts, vec!["localhost"]);
    assert_eq!(s.ports, vec![5432]);
    assert_eq!(s.user.as_deref(), Some("alice"));
    assert_eq!(s.dbname.as_deref(), Some("alice"));
}

// ---- pgpass ----

#[test]
fn pgpass_matching_rules() {
    let file = "# comment\n\
                other:5432:db:u:wrong\n\
                h:5432:*:u:first\n\
                *:*:*:*:fallback\n";
    assert_eq!(
        find_password(file, "h", 5432, "any", "u").unwrap().expose(),
        "first"
    );
    assert_eq!(
        find_password(file, "x", 1, "d", "v").unwrap().expose(),
        "fallback"
    );
    let escaped = r"db\:host:5432:d\\b:u:pa\:ss\\word:tail";
    assert_eq!(
        find_password(escaped, "db:host", 5432, r"d\b", "u")
            .unwrap()
            .expose(),
        r"pa:ss\word:tail"
    );
    assert!(find_password("h:5432:d:u", "h", 5432, "d", "u").is_none());
}

#[cfg(unix)]
#[test]
fn pgpass_file_permissions_and_resolution() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".pgpass");
    std::fs::write(&path, "localhost:5432:app:app:from-file\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(
        lookup(&path, "localhost", 5432, "app", "app").is_none(),
        "world-readable file must be ignored"
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(
        lookup(&path, "localhost", 5432, "app", "app")
            .unwrap()
            .expose(),
        "from-file"
    );

    let home = dir.path().to_str().unwrap();
    let env = env_of(&[("HOME", home)]);
    let conn = ConnSettings::parse("host=localhost user=app dbname=app").unwrap();
    assert_eq!(conn.resolve_password(&env).unwrap().expose(), "from-file");
    let explicit =
        ConnSettings::parse("host=localhost user=app dbname=app password=given").unwrap();
    assert_eq!(explicit.resolve_password(&env).unwrap().expose(), "given");
    let other = dir.path().join("other");
    std::fs::write(&other, "*:*:*:*:via-pgpassfile\n").unwrap();
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o600)).unwrap();
    let env = env_of(&[("HOME", home), ("PGPASSFILE", other.to_str().unwrap())]);
    assert_eq!(
        conn.resolve_password(&env).unwrap().expose(),
        "via-pgpassfile"
    );
}

// ---- durations ----

#[test]
fn durations() {
    assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
    assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
    assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
    assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
    assert_eq!(parse_duration("250"), Some(Duration::from_millis(250)));
    assert_eq!(parse_duration("2 weeks"), None);
    assert_eq!(parse_duration("-1s"), None);
}

#[path = "config/resolution.rs"]
mod resolution;

pub(crate) fn sources_with(file: Option<&Path>, env: &[(&str, &str)]) -> ConfigSources {
    ConfigSources {
        config_path: file.map(Path::to_path_buf),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..ConfigSources::default()
    }
}

pub(crate) fn expect_error(sources: &ConfigSources) -> ConfigError {
    match resolve(sources) {
        Ok(profiles) => panic!("expected an error, got {} profiles", profiles.len()),
        Err(error) => error,
    }
}

#[test]
fn overrides_are_plain_values() {
    let sources = ConfigSources {
        overrides: ProfileOverrides {
            access_mode: Some(AccessMode::ReadWrite),
            max_rows: Some(50_000),
            ..ProfileOverrides::default()
        },
        env: [("USER".to_string(), "me".to_string())].into(),
        ..ConfigSources::default()
    };
    let profiles = resolve(&sources).unwrap();
    assert_eq!(profiles[0].access_mode, AccessMode::ReadWrite);
    assert_eq!(profiles[0].max_rows, 50_000);
    assert!(profiles[0].max_rows_ceiling >= 50_000);
}
