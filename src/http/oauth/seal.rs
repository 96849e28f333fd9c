//! Sealed values: what pgmcp hands out and reads back later (a registered client, a consent form, the upstream
//! state, an authorization code, a refresh token) is encrypted and authenticated with AES-256-GCM under the key
//! derived from the shared signing key. Any replica can open what another sealed, nothing is stored, and the
//! holder can neither read nor alter it. Each kind is bound as associated data, so a code never opens as a refresh
//! token, and each carries its expiry inside the seal.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Sealed values travel in URLs and forms; anything longer was not made here.
const MAX_SEALED_CHARS: usize = 8 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Client,
    Consent,
    UpstreamState,
    Code,
    RefreshToken,
}

impl Kind {
    fn label(self) -> &'static [u8] {
        match self {
            Kind::Client => b"client",
            Kind::Consent => b"consent",
            Kind::UpstreamState => b"upstream-state",
            Kind::Code => b"code",
            Kind::RefreshToken => b"refresh-token",
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Unsealed {
    /// Not made by a holder of the signing key, altered, or of another kind.
    Invalid,
    Expired,
}

#[derive(Serialize, serde::Deserialize)]
struct Envelope<T> {
    /// Seconds since the epoch; `None` never expires (registered clients).
    exp: Option<u64>,
    v: T,
}

pub struct Sealer {
    /// The first seals; every one opens (key rotation).
    keys: Vec<LessSafeKey>,
    rng: SystemRandom,
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Sealer {
    /// `keys`: the current key first, then previous ones that still open what they sealed.
    pub fn new<'a>(keys: impl IntoIterator<Item = &'a [u8; 32]>) -> Sealer {
        Sealer {
            keys: keys
                .into_iter()
                // A 32-byte key is exactly what AES-256-GCM takes, so this never drops one.
                .filter_map(|key| UnboundKey::new(&AES_256_GCM, key).ok())
                .map(LessSafeKey::new)
                .collect(),
            rng: SystemRandom::new(),
        }
    }

    /// `lifetime_secs`: `None` for values that never expire.
    pub fn seal<T: Serialize>(&self, kind: Kind, lifetime_secs: Option<u64>, value: &T) -> String {
        let envelope = Envelope {
            exp: lifetime_secs.map(|secs| now() + secs),
            v: value,
        };
        let mut data = serde_json::to_vec(&envelope).unwrap_or_default();
        let mut nonce = [0u8; NONCE_LEN];
        self.fill(&mut nonce);
        let Some(key) = self.keys.first() else {
            return String::new();
        };
        // Sealing only fails for inputs beyond AES-GCM's size limit (gigabytes), never for these values.
        let _ = key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(kind.label()),
            &mut data,
        );
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        URL_SAFE_NO_PAD.encode(out)
    }

    pub fn open<T: DeserializeOwned>(&self, kind: Kind, text: &str) -> Result<T, Unsealed> {
        if text.len() > MAX_SEALED_CHARS {
            return Err(Unsealed::Invalid);
        }
        let mut bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| Unsealed::Invalid)?;
        if bytes.len() < NONCE_LEN {
            return Err(Unsealed::Invalid);
        }
        let sealed = bytes.split_off(NONCE_LEN);
        let plain = self
            .keys
            .iter()
            .find_map(|key| {
                let nonce = Nonce::try_assume_unique_for_key(&bytes).ok()?;
                let mut data = sealed.clone();
                let len = key
                    .open_in_place(nonce, Aad::from(kind.label()), &mut data)
                    .ok()?
                    .len();
                data.truncate(len);
                Some(data)
            })
            .ok_or(Unsealed::Invalid)?;
        let envelope: Envelope<T> =
            serde_json::from_slice(&plain).map_err(|_| Unsealed::Invalid)?;
        if envelope.exp.is_some_and(|exp| exp < now()) {
            return Err(Unsealed::Expired);
        }
        Ok(envelope.v)
    }

    pub fn fill(&self, bytes: &mut [u8]) {
        // The system's random source does not fail on Linux once booted; a failure would leave zeros, which the
        // nonce uniqueness would not survive, so it is treated as fatal for this value only.
        if self.rng.fill(bytes).is_err() {
            tracing::error!("the system random source failed");
        }
    }

    /// A random identifier (128 bits, base64url).
    pub fn random_id(&self) -> String {
        let mut bytes = [0u8; 16];
        self.fill(&mut bytes);
        URL_SAFE_NO_PAD.encode(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_as_its_kind_and_unaltered() {
        let sealer = Sealer::new([&[7u8; 32]]);
        let sealed = sealer.seal(Kind::Code, Some(60), &"hello".to_string());
        assert_eq!(
            sealer.open::<String>(Kind::Code, &sealed),
            Ok("hello".into())
        );
        assert_eq!(
            sealer.open::<String>(Kind::RefreshToken, &sealed),
            Err(Unsealed::Invalid)
        );
        let mut altered = sealed.into_bytes();
        let last = altered.len() - 5;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).unwrap();
        assert_eq!(
            sealer.open::<String>(Kind::Code, &altered),
            Err(Unsealed::Invalid)
        );
        let other = Sealer::new([&[8u8; 32]]);
        let sealed = sealer.seal(Kind::Code, None, &1u32);
        assert_eq!(
            other.open::<u32>(Kind::Code, &sealed),
            Err(Unsealed::Invalid)
        );
        let rotated = Sealer::new([&[8u8; 32], &[7u8; 32]]);
        assert_eq!(rotated.open::<u32>(Kind::Code, &sealed), Ok(1));
    }

    #[test]
    fn an_expired_value_is_refused() {
        let sealer = Sealer::new([&[7u8; 32]]);
        let envelope = Envelope {
            exp: Some(now() - 1),
            v: 1u32,
        };
        let mut data = serde_json::to_vec(&envelope).unwrap();
        let nonce = [1u8; NONCE_LEN];
        sealer.keys[0]
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(Kind::Code.label()),
                &mut data,
            )
            .unwrap();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        let sealed = URL_SAFE_NO_PAD.encode(out);
        assert_eq!(
            sealer.open::<u32>(Kind::Code, &sealed),
            Err(Unsealed::Expired)
        );
    }
}
