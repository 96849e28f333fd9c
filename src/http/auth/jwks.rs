//! Signing keys of the trusted issuers: fetched from their JWKS (never from a token), cached, refreshed
//! periodically and — rate-limited — when a token names a key id the cache does not know.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

fn own_key_set(own: &dyn super::OwnKeys) -> KeySet {
    KeySet {
        keys: own
            .verification_keys()
            .into_iter()
            .map(|(kid, key)| VerificationKey {
                kid: Some(kid),
                alg: Some(Algorithm::RS256),
                key,
            })
            .collect(),
    }
}

/// Discovery documents and key sets are small; anything bigger is not what we asked for.
const MAX_DOCUMENT_BYTES: usize = 512 * 1024;
/// A key set with more keys than this is refused: every token is checked against at most this many keys.
const MAX_KEYS: usize = 64;

/// Where an issuer's keys come from.
#[derive(Debug, Clone)]
pub enum KeyLocation {
    /// A JWKS URL known up front (Entra: `{authority}/{tenant}/discovery/v2.0/keys`).
    Jwks(String),
    /// An issuer whose `jwks_uri` is read from `{issuer}/.well-known/openid-configuration`.
    Discovery { issuer: String },
    /// pgmcp's own keys (`--oauth-server`): held by the authorization server, which may rotate them while running.
    Own(Arc<dyn super::OwnKeys>),
}

impl std::fmt::Debug for dyn super::OwnKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("pgmcp's own keys")
    }
}

/// One verification key from a JWKS.
pub struct VerificationKey {
    pub kid: Option<String>,
    /// The key's own `alg`, when the JWKS states one: a token must then use exactly that algorithm.
    pub alg: Option<Algorithm>,
    pub key: DecodingKey,
}

/// The keys of one issuer as last fetched.
pub struct KeySet {
    pub keys: Vec<VerificationKey>,
}

impl KeySet {
    pub fn find(&self, kid: Option<&str>) -> Vec<&VerificationKey> {
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .filter(|key| key.kid.as_deref() == Some(kid))
                .collect(),
            None => self.keys.iter().collect(),
        }
    }
}

/// Counters shared by all key sources, for `/metrics`.
#[derive(Default)]
pub struct RefreshCounters {
    pub refreshes: AtomicU64,
    pub failures: AtomicU64,
    /// Failed fetches since the last one that succeeded (any source), for `/readyz`.
    pub failing: AtomicU64,
}

/// The cached keys of one issuer.
pub struct KeySource {
    location: KeyLocation,
    client: reqwest::Client,
    counters: Arc<RefreshCounters>,
    keys: RwLock<Option<Arc<KeySet>>>,
    /// For discovery-based sources: the `jwks_uri` once discovery succeeded.
    jwks_uri: RwLock<Option<String>>,
    /// Serialises fetches, so concurrent requests with the same unknown `kid` cause one fetch, not many.
    fetching: tokio::sync::Mutex<()>,
    /// When a token last made us fetch out of schedule (unknown `kid`, or no keys yet).
    last_on_demand: Mutex<Option<Instant>>,
    on_demand_cooldown: Duration,
    /// For pgmcp's own keys: the generation the cached set was built from.
    own_generation: AtomicU64,
}

impl KeySource {
    pub fn new(
        location: KeyLocation,
        client: reqwest::Client,
        counters: Arc<RefreshCounters>,
        on_demand_cooldown: Duration,
    ) -> KeySource {
        KeySource {
            location,
            client,
            counters,
            keys: RwLock::new(None),
            jwks_uri: RwLock::new(None),
            fetching: tokio::sync::Mutex::new(()),
            last_on_demand: Mutex::new(None),
            on_demand_cooldown,
            own_generation: AtomicU64::new(0),
        }
    }

    pub fn describe(&self) -> String {
        match &self.location {
            KeyLocation::Jwks(url) => url.clone(),
            KeyLocation::Discovery { issuer } => format!("discovery of {issuer}"),
            KeyLocation::Own(_) => "pgmcp's own signing keys".to_string(),
        }
    }

    pub fn current(&self) -> Option<Arc<KeySet>> {
        if let KeyLocation::Own(own) = &self.location {
            // The authorization server swaps its keys as a whole; rebuild the set when they changed.
            let generation = own.generation();
            let cached = self.keys.read().ok().and_then(|keys| keys.clone());
            if cached.is_some() && self.own_generation.load(Ordering::Acquire) == generation {
                return cached;
            }
            let set = Arc::new(own_key_set(own.as_ref()));
            if let Ok(mut keys) = self.keys.write() {
                *keys = Some(set.clone());
            }
            self.own_generation.store(generation, Ordering::Release);
            return Some(set);
        }
        self.keys.read().ok().and_then(|keys| keys.clone())
    }

    pub fn is_loaded(&self) -> bool {
        self.current().is_some()
    }

    /// Installs a key set as if it had just been fetched.
    #[cfg(test)]
    pub fn replace_keys(&self, set: KeySet) {
        if let Ok(mut keys) = self.keys.write() {
            *keys = Some(Arc::new(set));
        }
    }

    /// Fetches the keys now; on failure the previously cached keys stay in use.
    pub async fn refresh(&self) -> anyhow::Result<()> {
        let _only_one = self.fetching.lock().await;
        self.refresh_locked(false).await
    }

    async fn refresh_locked(&self, on_demand: bool) -> anyhow::Result<()> {
        match self.fetch(on_demand).await {
            Ok(set) => {
                tracing::debug!(source = %self.describe(), keys = set.keys.len(), "signing keys refreshed");
                if let Ok(mut keys) = self.keys.write() {
                    *keys = Some(Arc::new(set));
                }
                self.counters.refreshes.fetch_add(1, Ordering::Relaxed);
                self.counters.failing.store(0, Ordering::Relaxed);
                Ok(())
            }
            Err(error) => {
                self.counters.failures.fetch_add(1, Ordering::Relaxed);
                self.counters.failing.fetch_add(1, Ordering::Relaxed);
                Err(error)
            }
        }
    }

    /// A fetch asked for by a token (its `kid` is unknown, or no keys are cached). At most one per cooldown
    /// period, so a stream of tokens with made-up key ids cannot make us hammer the provider. Returns the key set
    /// to use: fresh if a fetch happened (here or concurrently), otherwise the cached one.
    pub async fn refresh_on_demand(&self, seen: Option<&Arc<KeySet>>) -> Option<Arc<KeySet>> {
        let _only_one = self.fetching.lock().await;
        let current = self.current();
        // Someone else fetched while we waited for the lock: use their result.
        if let (Some(now), Some(seen)) = (&current, seen)
            && !Arc::ptr_eq(now, seen)
        {
            return current;
        }
        if current.is_some() && seen.is_none() {
            return current;
        }
        {
            let Ok(mut last) = self.last_on_demand.lock() else {
                return current;
            };
            if last.is_some_and(|at| at.elapsed() < self.on_demand_cooldown) {
                return current;
            }
            *last = Some(Instant::now());
        }
        if let Err(error) = self.refresh_locked(true).await {
            tracing::warn!(source = %self.describe(), error = %format!("{error:#}"), "fetching signing keys failed");
        }
        self.current()
    }

    async fn fetch(&self, on_demand: bool) -> anyhow::Result<KeySet> {
        let url = match &self.location {
            KeyLocation::Jwks(url) => url.clone(),
            KeyLocation::Discovery { issuer } => self.discover(issuer).await?,
            KeyLocation::Own(own) => {
                // A token names a key this replica has not loaded: another replica may already sign with it, so
                // look at the source again. The source re-reads itself on its own schedule otherwise.
                if on_demand {
                    own.reload().await?;
                }
                return Ok(own_key_set(own.as_ref()));
            }
        };
        let body = get_bounded(&self.client, &url).await?;
        let set: JwkSet = serde_json::from_slice(&body)
            .with_context(|| format!("{url} did not return a JSON Web Key Set"))?;
        parse_key_set(&set).with_context(|| format!("key set from {url}"))
    }

    async fn discover(&self, issuer: &str) -> anyhow::Result<String> {
        if let Some(uri) = self.jwks_uri.read().ok().and_then(|uri| uri.clone()) {
            return Ok(uri);
        }
        #[derive(Deserialize)]
        struct Discovery {
            issuer: String,
            jwks_uri: String,
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let body = get_bounded(&self.client, &url).await?;
        let document: Discovery = serde_json::from_slice(&body)
            .with_context(|| format!("{url} is not an OpenID configuration"))?;
        // OpenID Connect Discovery 1.0 §4.3: the document must name the issuer it was fetched for, or it could
        // hand us someone else's keys.
        if document.issuer != issuer {
            bail!(
                "{url} names issuer {:?}, not the configured {issuer:?}; set auth.oidc_issuer to the exact issuer",
                document.issuer
            );
        }
        let jwks_uri = document.jwks_uri;
        // The same rule as for configured endpoints: the discovery document must not send us to fetch keys over
        // plain HTTP from another machine.
        if let Some(problem) = super::settings::endpoint_problem(&jwks_uri) {
            bail!("{url} names the jwks_uri {jwks_uri:?}, which pgmcp will not use: {problem}");
        }
        if let Ok(mut slot) = self.jwks_uri.write() {
            *slot = Some(jwks_uri.clone());
        }
        Ok(jwks_uri)
    }
}

async fn get_bounded(client: &reqwest::Client, url: &str) -> anyhow::Result<Vec<u8>> {
    let mut response = client
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    if !response.status().is_success() {
        bail!("GET {url}: HTTP {}", response.status());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .with_context(|| format!("reading {url}"))?
    {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            bail!("GET {url}: response larger than {MAX_DOCUMENT_BYTES} bytes");
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Keeps the asymmetric signature keys of a JWKS. Symmetric (`oct`) keys and encryption keys are dropped: a
/// public key set never legitimately holds a shared secret, and accepting one would let HMAC tokens in.
pub fn parse_key_set(set: &JwkSet) -> anyhow::Result<KeySet> {
    let mut keys = Vec::new();
    for jwk in &set.keys {
        if keys.len() == MAX_KEYS {
            bail!("more than {MAX_KEYS} keys");
        }
        if let Some(key) = verification_key(jwk) {
            keys.push(key);
        }
    }
    if keys.is_empty() {
        return Err(anyhow!("no usable RSA or EC signature keys"));
    }
    Ok(KeySet { keys })
}

fn verification_key(jwk: &Jwk) -> Option<VerificationKey> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    match &jwk.algorithm {
        AlgorithmParameters::RSA(_) | AlgorithmParameters::EllipticCurve(_) => {}
        _ => return None,
    }
    let alg = match jwk.common.key_algorithm {
        None => None,
        Some(alg) => match Algorithm::try_from(alg) {
            Ok(alg) if super::verify::ALLOWED_ALGORITHMS.contains(&alg) => Some(alg),
            // A key pinned to an algorithm we never accept (or an encryption algorithm) is of no use.
            _ => return None,
        },
    };
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(VerificationKey {
        kid: jwk.common.key_id.clone(),
        alg,
        key,
    })
}

/// The HTTP client for discovery and keys: short timeouts, no redirects (a JWKS URL that redirects elsewhere
/// would let the redirect target choose our keys), TLS through rustls with the system's roots.
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    // reqwest is built without a default crypto provider; whoever comes first installs ring, the rest is a no-op.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .user_agent(concat!("pgmcp/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building the HTTP client for signing keys")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric_and_encryption_keys_are_dropped() {
        let set: JwkSet = serde_json::from_value(serde_json::json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            {"kty": "EC", "crv": "P-256", "kid": "enc", "use": "enc",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "EC", "crv": "P-256", "kid": "sig",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}
        ]}))
        .unwrap();
        let parsed = parse_key_set(&set).unwrap();
        let kids: Vec<_> = parsed.keys.iter().map(|k| k.kid.clone().unwrap()).collect();
        assert_eq!(kids, vec!["sig".to_string()]);
    }

    #[test]
    fn a_set_of_only_secrets_is_unusable() {
        let set: JwkSet =
            serde_json::from_value(serde_json::json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}))
                .unwrap();
        assert!(parse_key_set(&set).is_err());
    }
}
