//! pgmcp as OAuth authorization server (`--oauth-server`) in front of the test OpenID provider, and a small
//! browser that walks the sign-in as a person would: pgmcp's consent page, the provider's sign-in form, the
//! redirects — keeping each site's cookies, as a browser does.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub use crate::common::free_port;
use crate::oidc_support::pgmcp_http::PgmcpHttp;
use crate::oidc_support::*;

/// The person who signs in at the provider.
pub const LOGIN: &str = "ada";
pub const UPSTREAM_CLIENT: &str = "pgmcp-upstream";

pub struct OAuthSetup {
    pub server: PgmcpHttp,
    pub provider: Provider,
    /// `http://127.0.0.1:PORT`: pgmcp's issuer.
    pub base: String,
    /// `{base}/mcp`
    pub resource: String,
    /// The signing key's PEM, for tests that forge or re-sign tokens.
    pub key_pem: String,
    _dir: tempfile::TempDir,
}

/// An RSA key as `openssl genpkey` writes it, the way the docs tell operators to make one.
pub fn signing_key(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, String) {
    let path = dir.join(name);
    let status = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&path)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run openssl genpkey");
    assert!(status.success(), "openssl genpkey failed");
    let pem = std::fs::read_to_string(&path).expect("read the key");
    (path, pem)
}

/// The provider with pgmcp's upstream client and one person; pgmcp in OIDC mode with `--oauth-server`.
/// `oauth_config` is added to the `[oauth]` table.
pub fn start(oauth_config: &str) -> OAuthSetup {
    start_with_env(oauth_config, &[])
}

/// Like `start`, with extra environment variables for pgmcp (e.g. `SSL_CERT_FILE`).
pub fn start_with_env(oauth_config: &str, env: &[(&str, String)]) -> OAuthSetup {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let provider = upstream_provider(&base);
    let dir = tempfile::tempdir().expect("temp dir");
    let (key_path, key_pem) = signing_key(dir.path(), "oauth-signing.pem");
    let server = replica(port, None, &provider, &key_path, oauth_config, env);
    OAuthSetup {
        server,
        provider,
        resource: format!("{base}/mcp"),
        base,
        key_pem,
        _dir: dir,
    }
}

/// A self-signed certificate and its RSA key in one PEM file, as `openssl` makes them for an app registration's
/// certificate credential: the file and the certificate's PEM alone (what is uploaded to the provider).
pub fn certificate(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, String) {
    let key = dir.join(format!("{name}.key"));
    let cert = dir.join(format!("{name}.crt"));
    let status = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", &format!("/CN={name}")])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run openssl req");
    assert!(status.success(), "openssl req failed");
    let cert_pem = std::fs::read_to_string(&cert).expect("read the certificate");
    let key_pem = std::fs::read_to_string(&key).expect("read the key");
    let both = dir.join(format!("{name}.pem"));
    std::fs::write(&both, format!("{key_pem}{cert_pem}")).expect("write the PEM");
    (both, cert_pem)
}

/// The provider with pgmcp's upstream client (sending people back to `{base}/callback`) and one person.
pub fn upstream_provider(base: &str) -> Provider {
    upstream_provider_for(
        base,
        json!({ "client_secret": SECRET, "token_endpoint_auth_method": "client_secret_post" }),
    )
}

/// Like `upstream_provider`, with the upstream client authenticating by certificate (`private_key_jwt`, the
/// assertion naming one of `certificates` by `x5t#S256`) instead of a secret.
pub fn upstream_provider_with_certificates(base: &str, certificates: &[&str]) -> Provider {
    upstream_provider_for(base, json!({ "certificates": certificates }))
}

fn upstream_provider_for(base: &str, authentication: Value) -> Provider {
    let mut client = json!({
        "client_id": UPSTREAM_CLIENT, "scope": "openid mcp.access",
        "redirect_uris": [format!("{base}/callback")],
    });
    if let (Some(client), Some(extra)) = (client.as_object_mut(), authentication.as_object()) {
        client.extend(extra.clone());
    }
    Provider::start_config(json!({
        "scope": "mcp.access",
        "clients": [client],
        "accounts": { LOGIN: {
            "oid": USER_OID, "tid": TENANT, "name": "Ada Lovelace",
            "preferred_username": "ada@contoso.example", "scp": "mcp.access",
        }},
    }))
}

/// One pgmcp with `--oauth-server` on `port`; with `public_url`, several of them are replicas of one service.
pub fn replica(
    port: u16,
    public_url: Option<&str>,
    provider: &Provider,
    key_path: &std::path::Path,
    oauth_config: &str,
    env: &[(&str, String)],
) -> PgmcpHttp {
    replica_with(
        port,
        public_url,
        provider,
        &key_path.to_string_lossy(),
        &["--oauth-upstream-client-secret", SECRET],
        oauth_config,
        env,
    )
}

/// One pgmcp with `--oauth-server` on `port`, its signing key `signing_key` (a file or a Key Vault secret) and
/// `upstream_credential` the flags that say how it authenticates at the provider.
pub fn replica_with(
    port: u16,
    public_url: Option<&str>,
    provider: &Provider,
    signing_key: &str,
    upstream_credential: &[&str],
    oauth_config: &str,
    env: &[(&str, String)],
) -> PgmcpHttp {
    let base = public_url
        .map(str::to_string)
        .unwrap_or_else(|| format!("http://127.0.0.1:{port}"));
    let resource = format!("{base}/mcp");
    let config =
        format!("[oauth]\nupstream_scopes = [\"openid\", \"mcp.access\"]\n{oauth_config}\n");
    let mut args = vec![
        "--auth-mode",
        "oidc",
        "--oidc-issuer",
        &provider.base,
        "--audience",
        &resource,
        "--oauth-server",
        "--oauth-upstream-client-id",
        UPSTREAM_CLIENT,
        "--oauth-signing-key",
        signing_key,
    ];
    args.extend(upstream_credential);
    if let Some(url) = public_url {
        args.extend(["--public-url", url]);
    }
    PgmcpHttp::start_listening_with_env(
        &format!("127.0.0.1:{port}"),
        &crate::common::reader_url(),
        &config,
        &args,
        env,
    )
}

pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .expect("client")
}

pub fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

pub const VERIFIER: &str = "a-client-verifier-that-is-long-enough-0123456789";

/// A browser: follows nothing by itself, keeps cookies per host.
#[derive(Default)]
pub struct Browser {
    cookies: Mutex<HashMap<String, HashMap<String, String>>>,
}

/// Browsers keep cookies per host, whatever the port.
fn site(url: &str) -> String {
    let url = reqwest::Url::parse(url).expect("URL");
    url.host_str().unwrap_or_default().to_string()
}

impl Browser {
    fn cookie_header(&self, url: &str) -> Option<String> {
        let cookies = self.cookies.lock().unwrap();
        let jar = cookies.get(&site(url))?;
        Some(
            jar.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; "),
        )
    }

    fn keep(&self, url: &str, response: &reqwest::Response) {
        let mut cookies = self.cookies.lock().unwrap();
        let jar = cookies.entry(site(url)).or_default();
        for value in response.headers().get_all(SET_COOKIE) {
            let text = value.to_str().unwrap_or_default();
            if let Some((name, rest)) = text.split(';').next().unwrap_or_default().split_once('=') {
                jar.insert(name.trim().to_string(), rest.trim().to_string());
            }
        }
    }

    pub fn forget_cookies(&self) {
        self.cookies.lock().unwrap().clear();
    }

    pub async fn get(&self, url: &str) -> reqwest::Response {
        let mut request = http().get(url);
        if let Some(cookie) = self.cookie_header(url) {
            request = request.header(COOKIE, cookie);
        }
        let response = request.send().await.expect("GET");
        self.keep(url, &response);
        response
    }

    pub async fn post_form(&self, url: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let body = form
            .iter()
            .map(|(k, v)| format!("{k}={}", urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let mut request = http()
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(cookie) = self.cookie_header(url) {
            request = request.header(COOKIE, cookie);
        }
        let response = request.send().await.expect("POST");
        self.keep(url, &response);
        response
    }

    /// Walks from `url` until a redirect to `redirect_prefix` (returned) or a page it cannot handle (panics).
    pub async fn sign_in(&self, url: &str, redirect_prefix: &str) -> reqwest::Url {
        let mut current = url.to_string();
        let mut response = self.get(&current).await;
        for _ in 0..20 {
            if response.status().is_redirection() {
                let location = response.headers()[LOCATION].to_str().unwrap().to_string();
                let next = reqwest::Url::parse(&current)
                    .unwrap()
                    .join(&location)
                    .unwrap();
                if next.as_str().starts_with(redirect_prefix) {
                    return next;
                }
                current = next.to_string();
                response = self.get(&current).await;
                continue;
            }
            assert_eq!(response.status(), StatusCode::OK, "{current}");
            let page = response.text().await.unwrap();
            if let Some(consent) = consent_token(&page) {
                let action = reqwest::Url::parse(&current)
                    .unwrap()
                    .join("authorize")
                    .unwrap();
                current = action.to_string();
                response = self
                    .post_form(&current, &[("consent", &consent), ("decision", "allow")])
                    .await;
                continue;
            }
            let action = page
                .split("action=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or_else(|| panic!("unexpected page at {current}: {page}"));
            current = reqwest::Url::parse(&current)
                .unwrap()
                .join(action)
                .unwrap()
                .to_string();
            response = self.post_form(&current, &[("login", LOGIN)]).await;
        }
        panic!("more than 20 steps through the sign-in");
    }
}

pub fn consent_token(page: &str) -> Option<String> {
    page.split("name=consent value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .map(str::to_string)
}

pub fn urlencode(value: &str) -> String {
    let mut out = String::new();
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(byte as char)
            }
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

pub fn query(url: &reqwest::Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.to_string())
}

/// Registers a client at the replica or service at `base`: its client id.
pub async fn register_at(base: &str, redirect_uri: &str) -> String {
    let response = http()
        .post(format!("{base}/register"))
        .json(&json!({ "client_name": "oauth tests", "redirect_uris": [redirect_uri] }))
        .send()
        .await
        .expect("register");
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    body["client_id"].as_str().unwrap().to_string()
}

/// An authorization request at `base` for `resource`, with the PKCE challenge of [`VERIFIER`].
pub fn authorize_url_at(
    base: &str,
    resource: &str,
    client_id: &str,
    redirect_uri: &str,
    state: &str,
) -> String {
    format!(
        "{base}/authorize?response_type=code&client_id={}&redirect_uri={}&state={state}&code_challenge={}&code_challenge_method=S256&resource={}",
        urlencode(client_id),
        urlencode(redirect_uri),
        challenge(VERIFIER),
        urlencode(resource)
    )
}

/// Redeems `code` (issued for [`VERIFIER`]) at `{base}/token`.
pub async fn redeem_at(
    base: &str,
    resource: &str,
    client_id: &str,
    redirect_uri: &str,
    code: &str,
) -> (StatusCode, Value) {
    token_at(
        base,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("client_id", client_id),
            ("redirect_uri", redirect_uri),
            ("code_verifier", VERIFIER),
            ("resource", resource),
        ],
    )
    .await
}

/// Redeems a refresh token at `{base}/token`.
pub async fn refresh_at(base: &str, client_id: &str, refresh_token: &str) -> (StatusCode, Value) {
    token_at(
        base,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", client_id),
        ],
    )
    .await
}

/// A GET whose answer is JSON.
pub async fn get_json(url: &str) -> Value {
    http()
        .get(url)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("a JSON answer")
}

/// A form POST to `{base}/token`: the status and the JSON answer.
pub async fn token_at(base: &str, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let body = form
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let response = http()
        .post(format!("{base}/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("token request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A `tools/call` of execute_query with `token` at `mcp_url`: the HTTP status and body.
pub async fn call_at(mcp_url: &str, token: &str, marker: &str) -> (StatusCode, String) {
    let body = json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": { "name": "execute_query", "arguments": { "sql": format!("SELECT '{marker}' AS marker") } }
    });
    let response = http()
        .post(mcp_url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string())
        .send()
        .await
        .expect("call /mcp");
    let status = response.status();
    (status, response.text().await.unwrap_or_default())
}

impl OAuthSetup {
    pub async fn register(&self, redirect_uri: &str) -> String {
        register_at(&self.base, redirect_uri).await
    }

    pub fn authorize_url(&self, client_id: &str, redirect_uri: &str, state: &str) -> String {
        authorize_url_at(&self.base, &self.resource, client_id, redirect_uri, state)
    }

    /// A full sign-in for a newly registered client: its code.
    pub async fn code(&self, client_id: &str, redirect_uri: &str) -> String {
        let back = Browser::default()
            .sign_in(
                &self.authorize_url(client_id, redirect_uri, "st"),
                redirect_uri,
            )
            .await;
        assert_eq!(query(&back, "state").as_deref(), Some("st"));
        assert_eq!(query(&back, "iss").as_deref(), Some(self.base.as_str()));
        query(&back, "code").unwrap_or_else(|| panic!("no code in {back}"))
    }

    pub async fn token(&self, form: &[(&str, &str)]) -> (StatusCode, Value) {
        token_at(&self.base, form).await
    }

    pub async fn redeem(
        &self,
        client_id: &str,
        redirect_uri: &str,
        code: &str,
    ) -> (StatusCode, Value) {
        redeem_at(&self.base, &self.resource, client_id, redirect_uri, code).await
    }

    /// A `tools/call` of execute_query with `token`: the HTTP status and body.
    pub async fn call(&self, token: &str, marker: &str) -> (StatusCode, String) {
        call_at(&self.resource, token, marker).await
    }
}
