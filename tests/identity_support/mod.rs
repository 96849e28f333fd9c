//! Shared by the identity tests: a TLS PostgreSQL cluster (scram logins, certificate from a test CA) whose
//! roles' passwords the Azure stand-in sets to the tokens it issues, and helpers to run `pgmcp check`.
#![allow(dead_code)]

pub mod azure;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use base64::Engine;
use pgmcp::demo::cluster::{ClusterOptions, TempCluster};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use sha2::{Digest, Sha256};

pub use azure::{Principal, StandIn};

pub const SUPERUSER_PASSWORD: &str = "superuser-password-9d2e";
pub const CLIENT_KEY_PEM: &str = include_str!("test-client-key.pem");

pub struct Fixture {
    pub cluster: TempCluster,
    pub dir: tempfile::TempDir,
    /// The client certificate (with its key) for the certificate credential, and its SHA-256 thumbprint.
    pub client_certificate: PathBuf,
    pub client_thumbprint: String,
}

impl Fixture {
    pub fn ca_file(&self) -> String {
        self.dir
            .path()
            .join("ca.pem")
            .to_string_lossy()
            .into_owned()
    }

    /// A verify-full URL for `app` as `user` (no password: the credential source provides it).
    pub fn url(&self, user: &str) -> String {
        format!(
            "postgresql://{user}@127.0.0.1:{}/app?sslmode=verify-full&sslrootcert={}",
            self.cluster.port(),
            self.ca_file()
        )
    }

    pub fn home(&self) -> String {
        self.dir.path().join("home").to_string_lossy().into_owned()
    }

    pub fn psql(&self, sql: &str) -> String {
        self.cluster.psql("app", sql).expect("psql")
    }

    /// Makes `password` the role's password (what the token service's issuance means to PostgreSQL here).
    pub fn set_password(&self, role: &str, password: &str) {
        self.psql(&format!(
            "ALTER ROLE \"{role}\" PASSWORD '{}'",
            password.replace('\'', "''")
        ));
    }
}

fn make_ca() -> (Issuer<'static, KeyPair>, String) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "pgmcp identity test CA");
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().unwrap();
    let pem = params.self_signed(&key).unwrap().pem();
    (Issuer::new(params, key), pem)
}

/// One TLS cluster per test binary: `hostssl` + scram for everyone, database `app` with a few roles.
pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let (ca, ca_pem) = make_ca();
        let mut params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, "localhost");
        let key = KeyPair::generate().unwrap();
        let server = params.signed_by(&key, &ca).unwrap();
        let cluster = TempCluster::start(&ClusterOptions {
            settings: vec![
                ("ssl".into(), "on".into()),
                ("ssl_cert_file".into(), "server.crt".into()),
                ("ssl_key_file".into(), "server.key".into()),
                ("log_min_messages".into(), "fatal".into()),
            ],
            hba: Some("hostssl all all 127.0.0.1/32 scram-sha-256\nhostssl all all ::1/128 scram-sha-256\n".into()),
            files: vec![
                ("server.crt".into(), server.pem().into_bytes()),
                ("server.key".into(), key.serialize_pem().into_bytes()),
            ],
            superuser_password: Some(SUPERUSER_PASSWORD.into()),
        })
        .expect("start the identity test cluster");
        cluster.psql("postgres", "CREATE DATABASE app").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca_pem).unwrap();
        std::fs::create_dir(dir.path().join("home")).unwrap();

        // The client certificate for the service principal: the committed test RSA key, certified here.
        let client_key = KeyPair::from_pem(CLIENT_KEY_PEM).unwrap();
        let mut client_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        client_params.distinguished_name.push(DnType::CommonName, "pgmcp-test-sp");
        let client_cert = client_params.self_signed(&client_key).unwrap();
        let client_thumbprint =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(client_cert.der()));
        let client_certificate = dir.path().join("client.pem");
        std::fs::write(&client_certificate, format!("{}{CLIENT_KEY_PEM}", client_cert.pem())).unwrap();

        Fixture {
            cluster,
            dir,
            client_certificate,
            client_thumbprint,
        }
    })
}

/// Creates a login role (if missing) that can read `app`.
pub fn create_role(role: &str) {
    // Concurrent GRANTs on one database fail with "tuple concurrently updated": tests create roles one at a time.
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    fixture().psql(&format!(
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN \
           CREATE ROLE \"{role}\" LOGIN; END IF; END $$; GRANT CONNECT ON DATABASE app TO \"{role}\";"
    ));
}

/// A stand-in whose PostgreSQL tokens become role passwords in the fixture cluster.
pub async fn stand_in() -> StandIn {
    let set: azure::SetPassword = Arc::new(|role, token| fixture().set_password(role, token));
    StandIn::start(set).await
}

/// The output of one `pgmcp` run.
pub struct Run {
    pub success: bool,
    pub output: String,
}

/// Runs `pgmcp ARGS` with a clean environment plus `env`, debug logging on, and returns stdout + stderr.
pub async fn pgmcp(args: &[&str], env: &[(&str, String)]) -> Run {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_pgmcp"));
    command.args(args).env_clear();
    command.env("PATH", std::env::var("PATH").unwrap_or_default());
    command.env("HOME", fixture().home());
    command.env("PGMCP_LOG", "debug");
    for (key, value) in env {
        command.env(key, value);
    }
    let output = tokio::time::timeout(std::time::Duration::from_secs(60), command.output())
        .await
        .expect("pgmcp finished within 60 s")
        .expect("run pgmcp");
    Run {
        success: output.status.success(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

/// Fails when any secret value, or a recognisable piece of one, appears in `text`. A JWT also leaks when only a
/// segment is printed — the signature (what makes it usable), the payload, or the header — so each segment of a
/// JWT-shaped secret is looked for on its own.
pub fn assert_no_secrets(text: &str, secrets: &[String]) {
    for secret in secrets {
        for piece in secret_pieces(secret) {
            assert!(
                !text.contains(piece),
                "a secret value (or a segment of one) leaked into the output:\n{text}"
            );
        }
    }
}

/// The secret itself (when long enough to be recognisable) and, for a compact JWS, each of its segments.
fn secret_pieces(secret: &str) -> Vec<&str> {
    const MIN: usize = 8;
    let mut pieces = Vec::new();
    if secret.len() >= MIN {
        pieces.push(secret);
    }
    let segments: Vec<&str> = secret.split('.').collect();
    let base64url = |part: &str| {
        part.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if segments.len() == 3 && segments.iter().all(|part| base64url(part)) {
        pieces.extend(segments.into_iter().filter(|part| part.len() >= MIN));
    }
    pieces
}

#[test]
fn a_jwt_leaks_by_any_of_its_segments() {
    let token = "eyJhbGciOiJIUzI1NiJ9.eyJvaWQiOiJvLTEifQ.c2lnbmF0dXJlLWJ5dGVzLWhlcmU";
    let secrets = [token.to_string()];
    for leak in [
        format!("token {token}"),
        "signature c2lnbmF0dXJlLWJ5dGVzLWhlcmU in the log".to_string(),
        "payload eyJvaWQiOiJvLTEifQ".to_string(),
    ] {
        let caught = std::panic::catch_unwind(|| assert_no_secrets(&leak, &secrets));
        assert!(caught.is_err(), "not caught: {leak}");
    }
    assert_no_secrets("oid o-1, upn ann@contoso.com", &secrets);
    // Ordinary secrets are looked for whole; short ones would match by accident.
    assert_eq!(
        secret_pieces("p@ssw0rd.with.dots!"),
        vec!["p@ssw0rd.with.dots!"]
    );
    assert!(secret_pieces("abc").is_empty());
}
