//! sslmode end to end against throwaway clusters with TLS on and certificates from a test CA.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use pgmcp::config::{ConnSettings, Profile};
use pgmcp::db::connect::PgConnector;
use pgmcp::demo::cluster::{ClusterOptions, TempCluster};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

fn make_ca(name: &str) -> TestCa {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().unwrap();
    let pem = params.self_signed(&key).unwrap().pem();
    TestCa {
        issuer: Issuer::new(params, key),
        pem,
    }
}

/// A server certificate and key (PEM) for `names`, signed by `ca`.
fn server_cert(ca: &TestCa, names: &[&str]) -> (String, String) {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(names.clone()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, names[0].as_str());
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

struct Fixture {
    /// Trust everything; certificate for localhost and 127.0.0.1.
    open: TempCluster,
    /// hostssl-only; certificate for another name (db.invalid).
    ssl_only: TempCluster,
    /// hostnossl-only.
    no_ssl: TempCluster,
    dir: tempfile::TempDir,
}

impl Fixture {
    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }
    fn wrong_ca_file(&self) -> PathBuf {
        self.dir.path().join("wrong-ca.pem")
    }
    /// An empty HOME, so no ~/.postgresql/root.crt or ~/.pgpass interferes.
    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }
}

fn start(cert: &(String, String), hba: &str) -> TempCluster {
    TempCluster::start(&ClusterOptions {
        settings: vec![
            ("ssl".into(), "on".into()),
            ("ssl_cert_file".into(), "server.crt".into()),
            ("ssl_key_file".into(), "server.key".into()),
        ],
        hba: Some(hba.to_string()),
        files: vec![
            ("server.crt".into(), cert.0.clone().into_bytes()),
            ("server.key".into(), cert.1.clone().into_bytes()),
        ],
        superuser_password: None,
    })
    .expect("start a TLS test cluster")
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let ca = make_ca("pgmcp test CA");
        let wrong_ca = make_ca("some other CA");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), &ca.pem).unwrap();
        std::fs::write(dir.path().join("wrong-ca.pem"), &wrong_ca.pem).unwrap();
        std::fs::create_dir(dir.path().join("home")).unwrap();
        let local = server_cert(&ca, &["localhost", "127.0.0.1"]);
        let elsewhere = server_cert(&ca, &["db.invalid"]);
        Fixture {
            open: start(
                &local,
                "host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n",
            ),
            ssl_only: start(
                &elsewhere,
                "hostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n",
            ),
            no_ssl: start(
                &local,
                "hostnossl all all 127.0.0.1/32 trust\nhostnossl all all ::1/128 trust\n",
            ),
            dir,
        }
    })
}

fn connector(cluster: &TempCluster, host: &str, extra: &str) -> PgConnector {
    let fixture = fixture();
    let conn = format!(
        "host={host} port={} user=postgres dbname=postgres {extra}",
        cluster.port()
    );
    let profile = Profile::new("t", ConnSettings::parse(&conn).unwrap());
    let home = fixture.home();
    let env = move |name: &str| (name == "HOME").then(|| home.to_string_lossy().into_owned());
    PgConnector::with_env(&profile, &env).expect("connector")
}

/// Connects and reports whether the session is encrypted, or the connection error's text.
async fn ssl_in_use(cluster: &TempCluster, host: &str, extra: &str) -> Result<bool, String> {
    let client = connector(cluster, host, extra)
        .connect()
        .await
        .map_err(|e| match std::error::Error::source(&e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        })?;
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(row.get(0))
}

fn path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

#[tokio::test]
async fn disable_and_prefer() {
    let f = fixture();
    assert_eq!(
        ssl_in_use(&f.open, "127.0.0.1", "sslmode=disable").await,
        Ok(false)
    );
    assert_eq!(
        ssl_in_use(&f.open, "127.0.0.1", "sslmode=prefer").await,
        Ok(true)
    );
    assert_eq!(
        ssl_in_use(&f.open, "127.0.0.1", "").await,
        Ok(true),
        "prefer is the default"
    );
    assert_eq!(
        ssl_in_use(&f.open, "127.0.0.1", "sslmode=allow").await,
        Ok(false),
        "allow starts plain"
    );
}

#[tokio::test]
async fn require_does_not_verify_without_a_root_file() {
    let f = fixture();
    // The server's CA is unknown to us, and the name (db.invalid) is wrong: require still connects.
    assert_eq!(
        ssl_in_use(&f.ssl_only, "localhost", "sslmode=require").await,
        Ok(true)
    );
}

#[tokio::test]
async fn require_with_a_root_file_verifies_the_chain() {
    let f = fixture();
    let right = format!("sslmode=require sslrootcert={}", path(&f.ca_file()));
    assert_eq!(ssl_in_use(&f.open, "127.0.0.1", &right).await, Ok(true));
    let wrong = format!("sslmode=require sslrootcert={}", path(&f.wrong_ca_file()));
    let error = ssl_in_use(&f.open, "127.0.0.1", &wrong).await.unwrap_err();
    assert!(
        error.contains("UnknownIssuer"),
        "libpq treats require + root file as verify-ca: {error}"
    );
}

#[tokio::test]
async fn verify_ca_checks_the_chain_not_the_name() {
    let f = fixture();
    let right = format!("sslmode=verify-ca sslrootcert={}", path(&f.ca_file()));
    assert_eq!(ssl_in_use(&f.open, "127.0.0.1", &right).await, Ok(true));
    assert_eq!(
        ssl_in_use(&f.ssl_only, "localhost", &right).await,
        Ok(true),
        "name db.invalid is not checked"
    );
    let wrong = format!("sslmode=verify-ca sslrootcert={}", path(&f.wrong_ca_file()));
    let error = ssl_in_use(&f.open, "127.0.0.1", &wrong).await.unwrap_err();
    assert!(error.contains("UnknownIssuer"), "{error}");
}

#[tokio::test]
async fn verify_full_checks_the_name() {
    let f = fixture();
    let right = format!("sslmode=verify-full sslrootcert={}", path(&f.ca_file()));
    assert_eq!(ssl_in_use(&f.open, "localhost", &right).await, Ok(true));
    assert_eq!(
        ssl_in_use(&f.open, "127.0.0.1", &right).await,
        Ok(true),
        "IP SAN matches"
    );
    let error = ssl_in_use(&f.ssl_only, "localhost", &right)
        .await
        .unwrap_err();
    assert!(error.contains("not valid for name"), "{error}");
    let wrong = format!(
        "sslmode=verify-full sslrootcert={}",
        path(&f.wrong_ca_file())
    );
    let error = ssl_in_use(&f.open, "localhost", &wrong).await.unwrap_err();
    assert!(error.contains("UnknownIssuer"), "{error}");
}

#[tokio::test]
async fn hostssl_only_server() {
    let f = fixture();
    let error = ssl_in_use(&f.ssl_only, "127.0.0.1", "sslmode=disable")
        .await
        .unwrap_err();
    assert!(
        error.contains("no pg_hba.conf entry") && error.contains("no encryption"),
        "{error}"
    );
    assert_eq!(
        ssl_in_use(&f.ssl_only, "127.0.0.1", "sslmode=allow").await,
        Ok(true),
        "allow retries with TLS"
    );
}

#[tokio::test]
async fn hostnossl_only_server() {
    let f = fixture();
    let error = ssl_in_use(&f.no_ssl, "127.0.0.1", "sslmode=require")
        .await
        .unwrap_err();
    assert!(
        error.contains("no pg_hba.conf entry") && error.contains("SSL encryption"),
        "{error}"
    );
    assert_eq!(
        ssl_in_use(&f.no_ssl, "127.0.0.1", "sslmode=prefer").await,
        Ok(false),
        "prefer retries in plain text"
    );
}

#[tokio::test]
async fn session_settings_and_pool() {
    let f = fixture();
    let mut profile = Profile::new(
        "t",
        ConnSettings::parse(&format!(
            "host=127.0.0.1 port={} user=postgres",
            f.open.port()
        ))
        .unwrap(),
    );
    profile.conn.options = Some("-c search_path=pg_catalog".into());
    profile.statement_timeout = std::time::Duration::from_millis(1234);
    let home = f.home();
    let env = move |name: &str| (name == "HOME").then(|| home.to_string_lossy().into_owned());
    let connector = PgConnector::with_env(&profile, &env).unwrap();
    let manager = pgmcp::db::session::SessionManager::new(connector.pg_config().clone(), connector);
    let pool = pgmcp::db::session::Pool::builder(manager)
        .max_size(2)
        .build()
        .unwrap();
    let client = pool.get().await.unwrap();
    client
        .batch_execute("SET statement_timeout = '5s'; RESET ALL")
        .await
        .unwrap();
    let row = client
        .query_one(
            "SELECT current_setting('statement_timeout'), current_setting('application_name'), current_setting('search_path')",
            &[],
        )
        .await
        .unwrap();
    let (timeout, app, search_path): (String, String, String) =
        (row.get(0), row.get(1), row.get(2));
    assert_eq!(timeout, "1234ms");
    assert_eq!(app, "pgmcp");
    assert_eq!(search_path, "pg_catalog");
}

#[test]
fn verify_full_without_roots_explains_the_options() {
    let profile = Profile::new(
        "t",
        ConnSettings::parse("host=db.example.com sslmode=verify-full").unwrap(),
    );
    let env = |name: &str| (name == "HOME").then(|| "/nonexistent-home".to_string());
    let error = PgConnector::with_env(&profile, &env)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("sslrootcert") && error.contains("sslmode=require"),
        "{error}"
    );
    // Azure hosts use the system roots instead.
    let azure = Profile::new(
        "t",
        ConnSettings::parse("host=x.postgres.database.azure.com").unwrap(),
    );
    let result = PgConnector::with_env(&azure, &env);
    if let Err(error) = &result {
        // Only acceptable failure: this machine has no system CA store at all.
        assert!(error.to_string().contains("system trust store"), "{error}");
    }
}

#[cfg(unix)]
#[tokio::test]
async fn passwords_explicit_from_pgpass_and_never_in_errors() {
    use std::os::unix::fs::PermissionsExt;
    let cluster = tokio::task::spawn_blocking(|| {
        TempCluster::start(&ClusterOptions {
            superuser_password: Some("right-Pa55".into()),
            ..ClusterOptions::default()
        })
    })
    .await
    .unwrap()
    .expect("start a password cluster");
    let home = tempfile::tempdir().unwrap();
    let home_path = home.path().to_string_lossy().into_owned();
    let env = move |name: &str| (name == "HOME").then(|| home_path.clone());
    let profile = |password: &str| {
        let conn = format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres sslmode=disable {password}",
            cluster.port()
        );
        Profile::new("t", ConnSettings::parse(&conn).unwrap())
    };

    let client = PgConnector::with_env(&profile("password=right-Pa55"), &env)
        .unwrap()
        .connect()
        .await
        .unwrap();
    client.simple_query("SELECT 1").await.unwrap();

    let error = PgConnector::with_env(&profile("password=wrong-Secret-77"), &env)
        .unwrap()
        .connect()
        .await
        .unwrap_err();
    let shown = format!("{error} {error:?} {:?}", std::error::Error::source(&error));
    assert!(shown.contains("password authentication failed"), "{shown}");
    assert!(!shown.contains("wrong-Secret-77"), "{shown}");

    let pgpass = home.path().join(".pgpass");
    std::fs::write(
        &pgpass,
        format!("127.0.0.1:{}:*:postgres:right-Pa55\n", cluster.port()),
    )
    .unwrap();
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();
    let connector = PgConnector::with_env(&profile(""), &env).unwrap();
    assert!(!format!("{connector:?}").contains("right-Pa55"));
    connector
        .connect()
        .await
        .unwrap()
        .simple_query("SELECT 1")
        .await
        .unwrap();
}
