//! A token issuer on loopback, in the bench process: a fresh 2048-bit RSA key (made by `openssl genpkey`, so the
//! debug build of the smoke run does not spend seconds generating primes), its JWKS served over HTTP at Entra's
//! path (`{authority}/{tenant}/discovery/v2.0/keys`), and RS256 access tokens shaped like Entra v2 app tokens.
//! pgmcp runs in `--auth-mode entra` with its authority pointed here, fetches the keys once and validates every
//! token against the cached set, as it would against login.microsoftonline.com.

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use axum::Json;
use axum::routing::get;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

pub const TENANT: &str = "8c0a5f2e-3b1d-4e6f-9a7b-1c2d3e4f5a6b";
/// pgmcp's app registration: the audience of the tokens.
pub const CLIENT_ID: &str = "5b7e2a91-0c3d-4f8e-a1b2-c3d4e5f6a7b8";
/// The calling agent's application, on pgmcp's allow-list.
pub const AGENT_APP: &str = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0";
pub const ROLE: &str = "MCP.Access";
const KID: &str = "bench-key-1";

pub struct Issuer {
    /// `http://127.0.0.1:PORT`, the Entra authority pgmcp is configured with.
    pub authority: String,
    key: EncodingKey,
    /// The public half, for the HTTP floor's own token check.
    jwk: Jwk,
    server: tokio::task::JoinHandle<()>,
}

impl Issuer {
    /// Generates the key and serves its JWKS on a free loopback port of the given runtime.
    pub fn start(rt: &tokio::runtime::Runtime) -> anyhow::Result<Issuer> {
        let output = Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ])
            .output()
            .context(
                "running `openssl genpkey` (the bench's token issuer needs the openssl CLI)",
            )?;
        if !output.status.success() {
            bail!(
                "openssl genpkey failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        let key = EncodingKey::from_rsa_pem(&output.stdout).context("reading the RSA key")?;
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256)?;
        jwk.common.key_id = Some(KID.into());
        let jwks = JwkSet {
            keys: vec![jwk.clone()],
        };
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let authority = format!("http://{}", listener.local_addr()?);
        let app = axum::Router::new().route(
            &format!("/{TENANT}/discovery/v2.0/keys"),
            get(move || {
                let jwks = jwks.clone();
                async move { Json(jwks) }
            }),
        );
        let server = rt.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Issuer {
            authority,
            key,
            jwk,
            server,
        })
    }

    /// The `[auth]` table that points pgmcp's Entra mode at this issuer (the endpoints have no flags).
    pub fn config(&self) -> String {
        format!(
            "[auth]\nentra_authority = \"{0}\"\nentra_v1_issuer_host = \"{0}\"\n",
            self.authority
        )
    }

    /// The flags that make pgmcp require what the tokens carry: tenant, audience, role and calling app.
    pub fn flags() -> Vec<&'static str> {
        vec![
            "--auth-mode",
            "entra",
            "--entra-tenant-id",
            TENANT,
            "--entra-client-id",
            CLIENT_ID,
            "--required-role",
            ROLE,
            "--allowed-client-app",
            AGENT_APP,
        ]
    }

    /// The `iss` of the tokens: Entra's v2 issuer for the tenant.
    pub fn issuer(&self) -> String {
        format!("{}/{TENANT}/v2.0", self.authority)
    }

    /// The public key that verifies the tokens' signatures.
    pub fn public_jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// An app-only v2 access token for agent number `agent`, valid for an hour.
    pub fn token(&self, agent: usize) -> anyhow::Result<String> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        // In Entra's app-only tokens `sub` and `oid` both name the calling service principal (pgmcp checks it).
        let principal = format!("a1a1a1a1-b2b2-4c3c-8d4d-{agent:012x}");
        let claims: Value = json!({
            "iss": self.issuer(),
            "aud": CLIENT_ID,
            "tid": TENANT,
            "sub": principal,
            "oid": principal,
            "azp": AGENT_APP,
            "roles": [ROLE],
            "ver": "2.0",
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
        });
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(KID.into());
        Ok(jsonwebtoken::encode(&header, &claims, &self.key)?)
    }
}

impl Drop for Issuer {
    fn drop(&mut self) {
        self.server.abort();
    }
}
