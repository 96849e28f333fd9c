//! The keys every replica shares (`--oauth-signing-key`): the current one signs pgmcp's access tokens (RS256,
//! published as a JWKS) and, through a key derived from it, seals everything pgmcp hands out and reads back later
//! (registered client ids, consent forms, upstream state, codes, refresh tokens). One secret to distribute, no
//! shared storage.
//!
//! The keys come from PEM files (the current one and `oauth.previous_signing_keys`, read at start) or from a Key
//! Vault secret, whose enabled versions are the keys: Key Vault is read again every `oauth.key_vault_refresh_seconds`
//! and when a token names a key this replica has not loaded. A new version is published and trusted at once but
//! signs only once it is one refresh interval old (or from its `nbf`, if later), so by the time any replica signs
//! with it, every replica has loaded it. Disabling or expiring a version retires it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::future::BoxFuture;
use jsonwebtoken::{DecodingKey, EncodingKey};
use ring::signature::{RsaKeyPair, RsaPublicKeyComponents};
use sha2::{Digest, Sha256};

use super::seal::{Sealer, now};
use super::settings::SigningKeySource;
use crate::http::auth::OwnKeys;
use crate::identity::keyvault::{KeyVault, SecretReference, SecretVersion};

/// Smaller RSA keys are refused: 2048 bits is the floor every current guideline sets.
const MIN_RSA_BITS: usize = 2048;
/// Versions of a Key Vault signing key trusted at once (the newest usable ones); a rotation needs two or three.
const MAX_VAULT_KEYS: usize = 8;

pub struct SigningKey {
    pub kid: String,
    pub encoding: EncodingKey,
    pub decoding: DecodingKey,
    /// The public key as a JWK (for `/oauth/jwks`).
    pub jwk: serde_json::Value,
    /// The AEAD key for sealed values, derived so that the PEM stays the only secret.
    pub seal_key: [u8; 32],
}

/// The keys in force at one moment: the current key, which signs and seals, and the others, which still verify and
/// open what they made (and, for a Key Vault key, the newest version until it starts signing).
pub struct KeyRing {
    pub current: Arc<SigningKey>,
    pub previous: Vec<Arc<SigningKey>>,
    pub sealer: Sealer,
}

impl KeyRing {
    pub fn new(current: Arc<SigningKey>, previous: Vec<Arc<SigningKey>>) -> KeyRing {
        let sealer = Sealer::new(
            std::iter::once(&current)
                .chain(&previous)
                .map(|key| &key.seal_key),
        );
        KeyRing {
            current,
            previous,
            sealer,
        }
    }

    pub fn load(
        current: &std::path::Path,
        previous: &[std::path::PathBuf],
    ) -> anyhow::Result<KeyRing> {
        Ok(KeyRing::new(
            Arc::new(SigningKey::load(current)?),
            previous
                .iter()
                .map(|path| SigningKey::load(path).map(Arc::new))
                .collect::<anyhow::Result<_>>()?,
        ))
    }

    /// Current first.
    pub fn all(&self) -> impl Iterator<Item = &Arc<SigningKey>> {
        std::iter::once(&self.current).chain(&self.previous)
    }
}

/// The key ring as the running server holds it: swapped as a whole when Key Vault has new versions.
pub struct SigningKeys {
    ring: RwLock<Arc<KeyRing>>,
    generation: AtomicU64,
    vault: Option<VaultKeys>,
}

struct VaultKeys {
    vault: KeyVault,
    reference: SecretReference,
    /// How long a new version waits before it signs: the refresh interval.
    activation_delay: Duration,
    /// Keys already read, by version: a refresh lists the versions and reads only new ones. Also serialises
    /// reloads.
    loaded: tokio::sync::Mutex<HashMap<String, Arc<SigningKey>>>,
}

impl SigningKeys {
    /// The keys `source` names, read now: start-up fails when they cannot be read.
    pub async fn load(
        source: &SigningKeySource,
        refresh: Duration,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Arc<SigningKeys>> {
        match source {
            SigningKeySource::Files { current, previous } => Ok(Arc::new(SigningKeys::fixed(
                KeyRing::load(current, previous)?,
            ))),
            SigningKeySource::KeyVault(reference) => {
                let vault = super::key_vault(reference, env)
                    .with_context(|| format!("`--oauth-signing-key` {reference}"))?;
                let vault = VaultKeys {
                    vault,
                    reference: reference.clone(),
                    activation_delay: refresh,
                    loaded: tokio::sync::Mutex::new(HashMap::new()),
                };
                let ring = vault
                    .ring()
                    .await
                    .with_context(|| format!("`--oauth-signing-key` {reference}"))?;
                let keys = Arc::new(SigningKeys {
                    ring: RwLock::new(Arc::new(ring)),
                    generation: AtomicU64::new(1),
                    vault: Some(vault),
                });
                spawn_refresher(Arc::downgrade(&keys), refresh);
                Ok(keys)
            }
        }
    }

    /// Keys that never change while running.
    pub fn fixed(ring: KeyRing) -> SigningKeys {
        SigningKeys {
            ring: RwLock::new(Arc::new(ring)),
            generation: AtomicU64::new(1),
            vault: None,
        }
    }

    pub fn ring(&self) -> Arc<KeyRing> {
        match self.ring.read() {
            Ok(ring) => ring.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reads Key Vault again and swaps in the new ring if its keys changed; on failure the ring in use stays.
    pub async fn reload(&self) -> anyhow::Result<()> {
        let Some(vault) = &self.vault else {
            return Ok(());
        };
        let ring = vault
            .ring()
            .await
            .with_context(|| vault.reference.to_string())?;
        let before = self.ring();
        let kids = |ring: &KeyRing| ring.all().map(|key| key.kid.clone()).collect::<Vec<_>>();
        if kids(&before) == kids(&ring) {
            return Ok(());
        }
        tracing::info!(
            current = %ring.current.kid,
            others = ring.previous.len(),
            "signing keys from Key Vault changed"
        );
        match self.ring.write() {
            Ok(mut slot) => *slot = Arc::new(ring),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(ring),
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }
}

impl OwnKeys for SigningKeys {
    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn verification_keys(&self) -> Vec<(String, DecodingKey)> {
        self.ring()
            .all()
            .map(|key| (key.kid.clone(), key.decoding.clone()))
            .collect()
    }

    fn reload(&self) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(SigningKeys::reload(self))
    }
}

/// Reads Key Vault every `every` until the keys are dropped.
fn spawn_refresher(keys: Weak<SigningKeys>, every: Duration) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let Some(keys) = keys.upgrade() else {
                return;
            };
            if let Err(error) = keys.reload().await {
                tracing::warn!(error = %format!("{error:#}"), "reading the signing key from Key Vault failed; the keys in use stay");
            }
        }
    });
}

/// Which versions are in the ring, and which one signs: the newest usable version that is active (older than the
/// activation delay and past its `nbf`), or, when none is, the oldest usable one — the one every replica has had
/// longest. The others follow, newest first. `versions` is newest first.
fn choose_versions(
    versions: &[SecretVersion],
    now: u64,
    activation_delay: Duration,
) -> Option<(SecretVersion, Vec<SecretVersion>)> {
    let usable: Vec<&SecretVersion> = versions
        .iter()
        .filter(|version| version.usable_at(now))
        .take(MAX_VAULT_KEYS)
        .collect();
    let active = |version: &SecretVersion| {
        let from =
            (version.created + activation_delay.as_secs()).max(version.not_before.unwrap_or(0));
        from <= now
    };
    let current = usable
        .iter()
        .find(|version| active(version))
        .or(usable.last())?;
    let others = usable
        .iter()
        .filter(|version| version.version != current.version)
        .map(|version| (*version).clone())
        .collect();
    Some(((*current).clone(), others))
}

impl VaultKeys {
    async fn ring(&self) -> anyhow::Result<KeyRing> {
        let mut loaded = self.loaded.lock().await;
        let reference = &self.reference;
        let (current, others) = match &reference.version {
            // Pinned: that version only, no rotation.
            Some(version) => (
                SecretVersion {
                    version: version.clone(),
                    enabled: true,
                    created: 0,
                    not_before: None,
                    expires: None,
                },
                Vec::new(),
            ),
            None => {
                let versions = self
                    .vault
                    .secret_versions(&reference.name)
                    .await
                    .map_err(|error| anyhow::anyhow!("listing its versions: {error}"))?;
                choose_versions(&versions, now(), self.activation_delay).ok_or_else(|| {
                    anyhow::anyhow!(
                        "the secret has no enabled, unexpired version: add one (`az keyvault secret set --file key.pem`) or enable one"
                    )
                })?
            }
        };
        let mut keys = Vec::new();
        for version in std::iter::once(&current).chain(&others) {
            let key = match loaded.get(&version.version) {
                Some(key) => key.clone(),
                None => {
                    let what = format!("version {}", version.version);
                    let value = self
                        .vault
                        .secret(&reference.name, Some(&version.version))
                        .await
                        .map_err(|error| anyhow::anyhow!("reading {what}: {error}"))?;
                    let pem = value
                        .pem(&what)
                        .map_err(|error| anyhow::anyhow!("{error}"))?;
                    let key = Arc::new(
                        SigningKey::from_pem(pem).map_err(|why| {
                            anyhow::anyhow!(
                                "{what}: {why} — store a PEM with an RSA private key of at least {MIN_RSA_BITS} bits"
                            )
                        })?,
                    );
                    loaded.insert(version.version.clone(), key.clone());
                    key
                }
            };
            keys.push(key);
        }
        // Versions that left the ring are forgotten: re-enabling one reads it again.
        let kept: Vec<&String> = std::iter::once(&current.version)
            .chain(others.iter().map(|v| &v.version))
            .collect();
        loaded.retain(|version, _| kept.contains(&version));
        let current_key = keys.remove(0);
        Ok(KeyRing::new(current_key, keys))
    }
}

fn problem(source: &str, why: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "`--oauth-signing-key` {source}: {why} — give a PEM with an RSA private key of at least {MIN_RSA_BITS} bits, e.g. `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out oauth-signing.pem`"
    )
}

impl SigningKey {
    pub fn load(path: &std::path::Path) -> anyhow::Result<SigningKey> {
        let pem = std::fs::read(path)
            .with_context(|| format!("could not read `--oauth-signing-key` {}", path.display()))?;
        SigningKey::from_pem(&pem).map_err(|why| problem(&path.display().to_string(), &why))
    }

    /// The first RSA private key in `pem`; other blocks (a Key Vault certificate's certificate) are skipped.
    pub fn from_pem(pem: &[u8]) -> Result<SigningKey, String> {
        let key = rustls_pemfile::read_all(&mut &pem[..])
            .filter_map(Result::ok)
            .find_map(|item| match item {
                rustls_pemfile::Item::Pkcs8Key(key) => {
                    Some(rustls::pki_types::PrivateKeyDer::Pkcs8(key))
                }
                rustls_pemfile::Item::Pkcs1Key(key) => {
                    Some(rustls::pki_types::PrivateKeyDer::Pkcs1(key))
                }
                _ => None,
            })
            .ok_or_else(|| "no RSA PRIVATE KEY or PRIVATE KEY block".to_string())?;
        let pkcs1 = crate::identity::certificate::rsa_pkcs1_der(&key)
            .map_err(|_| "the private key is not an RSA key".to_string())?;
        let pair = RsaKeyPair::from_der(&pkcs1)
            .map_err(|why| format!("not a usable RSA private key ({why})"))?;
        if pair.public().modulus_len() * 8 < MIN_RSA_BITS {
            return Err(format!(
                "the key has {} bits",
                pair.public().modulus_len() * 8
            ));
        }
        let public = RsaPublicKeyComponents::<Vec<u8>>::from(pair.public());
        let n = URL_SAFE_NO_PAD.encode(&public.n);
        let e = URL_SAFE_NO_PAD.encode(&public.e);
        // The RFC 7638 thumbprint: replicas with the same key agree on the kid without configuration.
        let thumbprint = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(thumbprint.as_bytes()));
        let encoding = EncodingKey::from_rsa_der(&pkcs1);
        let decoding = DecodingKey::from_rsa_components(&n, &e).map_err(|why| format!("{why}"))?;
        let mut hasher = Sha256::new();
        hasher.update(b"pgmcp oauth seal v1\0");
        hasher.update(key.secret_der());
        Ok(SigningKey {
            jwk: serde_json::json!({
                "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": n, "e": e,
            }),
            kid,
            encoding,
            decoding,
            seal_key: hasher.finalize().into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(name: &str, created: u64) -> SecretVersion {
        SecretVersion {
            version: name.into(),
            enabled: true,
            created,
            not_before: None,
            expires: None,
        }
    }

    fn names(chosen: Option<(SecretVersion, Vec<SecretVersion>)>) -> (String, Vec<String>) {
        let (current, others) = chosen.expect("a current version");
        (
            current.version,
            others.into_iter().map(|v| v.version).collect(),
        )
    }

    #[test]
    fn a_new_version_is_trusted_at_once_and_signs_after_the_delay() {
        let delay = Duration::from_secs(300);
        let versions = [version("new", 1_000), version("old", 100)];
        // Just added: the old one still signs, the new one is published.
        assert_eq!(
            names(choose_versions(&versions, 1_010, delay)),
            ("old".into(), vec!["new".into()])
        );
        // A refresh interval later every replica has it: it signs.
        assert_eq!(
            names(choose_versions(&versions, 1_300, delay)),
            ("new".into(), vec!["old".into()])
        );
    }

    #[test]
    fn disabled_expired_and_not_yet_valid_versions() {
        let delay = Duration::from_secs(300);
        let mut disabled = version("disabled", 2_000);
        disabled.enabled = false;
        let mut expired = version("expired", 50);
        expired.expires = Some(1_000);
        let mut later = version("later", 1_500);
        later.not_before = Some(10_000);
        let versions = [disabled, later, version("kept", 100), expired];
        assert_eq!(
            names(choose_versions(&versions, 5_000, delay)),
            ("kept".into(), vec!["later".into()])
        );
        assert_eq!(
            names(choose_versions(&versions, 10_000, delay)),
            ("later".into(), vec!["kept".into()])
        );
        // A first deployment with only fresh versions: the oldest signs.
        let fresh = [version("b", 1_000), version("a", 990)];
        assert_eq!(
            names(choose_versions(&fresh, 1_001, delay)),
            ("a".into(), vec!["b".into()])
        );
        let mut only_disabled = version("x", 1);
        only_disabled.enabled = false;
        assert!(choose_versions(&[only_disabled], 5_000, delay).is_none());
    }

    #[test]
    fn at_most_a_bounded_number_of_versions_is_trusted() {
        let versions: Vec<SecretVersion> = (0..20)
            .map(|i| version(&format!("v{i}"), 10_000 - i * 10))
            .collect();
        let (current, others) = names(choose_versions(&versions, 100_000, Duration::from_secs(1)));
        assert_eq!(current, "v0");
        assert_eq!(others.len(), MAX_VAULT_KEYS - 1);
    }
}
