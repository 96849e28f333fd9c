//! Signing in with pgmcp as the authorization server (`--oauth-server`): the official Python MCP SDK's
//! `OAuthClientProvider` finds pgmcp in the protected resource metadata, registers, sends the person through
//! pgmcp's consent page and the OpenID provider's sign-in, redeems the code and calls tools with pgmcp's own token.

mod common;
mod oauth_support;
mod oidc_support;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use oauth_support::*;
use oidc_support::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn run_sdk(setup: &OAuthSetup, mode: &str, metadata_url: Option<&str>) -> Value {
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/oauth_signin_test.py");
    let output = std::process::Command::new(common::python())
        .arg(script)
        .args([&setup.server.mcp_url(), LOGIN, mode])
        .args(metadata_url)
        .output()
        .expect("run the Python sign-in");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{mode}:\n{stdout}\n{stderr}");
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|_| panic!("no result line: {stdout}"))
}

#[test]
fn python_sdk_signs_in_with_dynamic_registration() {
    let setup = start("");
    let result = run_sdk(&setup, "dcr", None);
    assert_eq!(
        result["pages"],
        serde_json::json!(["consent", "provider sign-in"]),
        "the person saw pgmcp's consent page, then the provider's sign-in"
    );
    // The client holds pgmcp's token, not the provider's: issued by pgmcp for its resource, carrying the person.
    let (header, claims, _) = split(result["access_token"].as_str().unwrap());
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(claims["iss"], setup.base);
    assert_eq!(claims["aud"], setup.resource);
    assert_eq!(claims["oid"], USER_OID);
    assert_eq!(claims["name"], "Ada Lovelace");
    assert_eq!(claims["client_id"], result["client_id"]);
    // The tool ran as that person: the audit line names them.
    let lines = setup.server.audit_lines_with("SELECT 41 + 1 AS signed_in");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains(USER_OID), "{}", lines[0]);
}

/// A client ID metadata document on an https loopback server with a certificate from a test CA, which pgmcp
/// trusts through `SSL_CERT_FILE`. Returns the document's URL and how many times it was fetched.
fn serve_metadata_document(
    dir: &std::path::Path,
) -> (String, std::path::PathBuf, Arc<AtomicUsize>) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "pgmcp test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let ca_key = KeyPair::generate().unwrap();
    let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "https://127.0.0.1:{}/client.json",
        listener.local_addr().unwrap().port()
    );
    let document = serde_json::json!({
        "client_id": url, "client_name": "pgmcp metadata document test",
        "redirect_uris": ["http://127.0.0.1:8765/callback"],
        "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    })
    .to_string();
    let fetches = Arc::new(AtomicUsize::new(0));
    let counter = fetches.clone();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async move {
            listener.set_nonblocking(true).unwrap();
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    continue;
                };
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{document}",
                    document.len()
                );
                let _ = tls.write_all(response.as_bytes()).await;
                let _ = tls.shutdown().await;
            }
        });
    });
    (url, ca_file, fetches)
}

#[test]
fn python_sdk_signs_in_with_a_client_id_metadata_document() {
    let dir = tempfile::tempdir().unwrap();
    let (url, ca_file, fetches) = serve_metadata_document(dir.path());
    let setup = start_with_env(
        "allow_loopback_client_metadata = true\n",
        &[("SSL_CERT_FILE", ca_file.to_string_lossy().to_string())],
    );
    let result = run_sdk(&setup, "cimd", Some(&url));
    assert_eq!(result["client_id"], url.as_str());
    assert_eq!(
        result["pages"],
        serde_json::json!(["consent", "provider sign-in"])
    );
    let (_, claims, _) = split(result["access_token"].as_str().unwrap());
    assert_eq!(claims["client_id"], url.as_str());
    // Fetched once, when the authorization request named it.
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
    assert_eq!(
        setup
            .server
            .audit_lines_with("SELECT 41 + 1 AS signed_in")
            .len(),
        1
    );
}
