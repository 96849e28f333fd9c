//! The key every replica shares (`--oauth-signing-key`): it signs pgmcp's access tokens (RS256, published as a
//! JWKS) and, through a key derived from it, seals everything pgmcp hands out and reads back later (registered
//! client ids, consent forms, upstream state, codes, refresh tokens). One file to distribute, no shared storage.

use std::path::Path;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{DecodingKey, EncodingKey};
use ring::signature::{RsaKeyPair, RsaPublicKeyComponents};
use sha2::{Digest, Sha256};

/// Smaller RSA keys are refused: 2048 bits is the floor every current guideline sets.
const MIN_RSA_BITS: usize = 2048;

pub struct SigningKey {
    pub kid: String,
    pub encoding: EncodingKey,
    pub decoding: DecodingKey,
    /// The public key as a JWK (for `/oauth/jwks`).
    pub jwk: serde_json::Value,
    /// The AEAD key for sealed values, derived so that the PEM file stays the only secret.
    pub seal_key: [u8; 32],
}

/// The current key, which signs and seals, and the previous ones (`oauth.previous_signing_keys`), which still
/// verify and open what they made: a key is rotated by making the old one previous, then dropping it once its
/// tokens and registrations no longer matter.
pub struct KeyRing {
    pub current: SigningKey,
    pub previous: Vec<SigningKey>,
}

impl KeyRing {
    pub fn load(current: &Path, previous: &[std::path::PathBuf]) -> anyhow::Result<KeyRing> {
        Ok(KeyRing {
            current: SigningKey::load(current)?,
            previous: previous
                .iter()
                .map(|path| SigningKey::load(path))
                .collect::<anyhow::Result<_>>()?,
        })
    }

    /// Current first.
    pub fn all(&self) -> impl Iterator<Item = &SigningKey> {
        std::iter::once(&self.current).chain(&self.previous)
    }
}

fn problem(path: &Path, why: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "`--oauth-signing-key` {}: {why} — give a PEM file with an RSA private key of at least {MIN_RSA_BITS} bits, e.g. `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out oauth-signing.pem`",
        path.display()
    )
}

impl SigningKey {
    pub fn load(path: &Path) -> anyhow::Result<SigningKey> {
        let pem = std::fs::read(path)
            .with_context(|| format!("could not read `--oauth-signing-key` {}", path.display()))?;
        SigningKey::from_pem(&pem).map_err(|why| problem(path, &why))
    }

    pub fn from_pem(pem: &[u8]) -> Result<SigningKey, String> {
        let item = rustls_pemfile::read_one_from_slice(pem)
            .map_err(|_| "not a PEM file".to_string())?
            .map(|(item, _)| item);
        let (pair, der) = match item {
            Some(rustls_pemfile::Item::Pkcs8Key(key)) => (
                RsaKeyPair::from_pkcs8(key.secret_pkcs8_der()),
                key.secret_pkcs8_der().to_vec(),
            ),
            Some(rustls_pemfile::Item::Pkcs1Key(key)) => (
                RsaKeyPair::from_der(key.secret_pkcs1_der()),
                key.secret_pkcs1_der().to_vec(),
            ),
            _ => return Err("no RSA PRIVATE KEY or PRIVATE KEY block".into()),
        };
        let pair = pair.map_err(|why| format!("not a usable RSA private key ({why})"))?;
        if pair.public().modulus_len() * 8 < MIN_RSA_BITS {
            return Err(format!(
                "the key has {} bits",
                pair.public().modulus_len() * 8
            ));
        }
        let public = RsaPublicKeyComponents::<Vec<u8>>::from(pair.public());
        let n = URL_SAFE_NO_PAD.encode(&public.n);
        let e = URL_SAFE_NO_PAD.encode(&public.e);
        // The RFC 7638 thumbprint: replicas with the same file agree on the kid without configuration.
        let thumbprint = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(thumbprint.as_bytes()));
        let encoding = EncodingKey::from_rsa_pem(pem).map_err(|why| format!("{why}"))?;
        let decoding = DecodingKey::from_rsa_components(&n, &e).map_err(|why| format!("{why}"))?;
        let mut hasher = Sha256::new();
        hasher.update(b"pgmcp oauth seal v1\0");
        hasher.update(&der);
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
