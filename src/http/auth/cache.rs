//! Verdicts on tokens already verified. An MCP client sends the same bearer token on every request for the token's
//! lifetime, and checking its RS256 signature costs about 150 µs of CPU — more than the rest of a point query. The
//! verdict for a token depends only on the token, the issuer's keys, the (immutable) policy and the clock, so it is
//! reused while the keys it was checked with are still the issuer's current set and `exp` (with the leeway) has not
//! passed: exactly the tokens a fresh verification would accept. Entries are keyed by the token's SHA-256, so no
//! token is kept, and the map is bounded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use super::jwks::{KeySet, KeySource};
use super::verify::Verified;
use crate::http::Caller;

/// Enough for every agent of a busy server; past it, expired entries go, then everything (the next request of each
/// caller verifies again).
const CAPACITY: usize = 4096;

pub type TokenDigest = [u8; 32];

pub fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

struct Entry {
    caller: Caller,
    /// `exp` plus the leeway: the last second a fresh verification would still accept the token.
    valid_until: u64,
    source: Arc<KeySource>,
    keys: Arc<KeySet>,
}

#[derive(Default)]
pub struct VerifiedTokens {
    entries: Mutex<HashMap<TokenDigest, Entry>>,
}

impl VerifiedTokens {
    /// The caller of a token verified before, if that verdict still stands.
    pub fn get(&self, digest: &TokenDigest) -> Option<Caller> {
        let mut entries = self.entries.lock().ok()?;
        let entry = entries.get(digest)?;
        let same_keys = entry
            .source
            .current()
            .is_some_and(|current| Arc::ptr_eq(&current, &entry.keys));
        if same_keys && jsonwebtoken::get_current_timestamp() <= entry.valid_until {
            return Some(entry.caller.clone());
        }
        entries.remove(digest);
        None
    }

    pub fn insert(&self, digest: TokenDigest, verified: &Verified, leeway: u64) {
        // jsonwebtoken requires an integer `exp`, so an accepted token always has one.
        let Some(expires) = verified.expires else {
            return;
        };
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= CAPACITY {
            let now = jsonwebtoken::get_current_timestamp();
            entries.retain(|_, entry| entry.valid_until >= now);
            if entries.len() >= CAPACITY {
                entries.clear();
            }
        }
        entries.insert(
            digest,
            Entry {
                caller: verified.caller.clone(),
                valid_until: expires.saturating_add(leeway),
                source: verified.source.clone(),
                keys: verified.keys.clone(),
            },
        );
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use jsonwebtoken::jwk::JwkSet;

    use super::*;
    use crate::http::auth::jwks::{KeyLocation, RefreshCounters, http_client, parse_key_set};

    fn key_set() -> KeySet {
        let set: JwkSet = serde_json::from_value(serde_json::json!({"keys": [
            {"kty": "EC", "crv": "P-256", "kid": "sig",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}
        ]}))
        .unwrap();
        parse_key_set(&set).unwrap()
    }

    fn source() -> Arc<KeySource> {
        let source = KeySource::new(
            KeyLocation::Jwks("http://127.0.0.1:9/keys".into()),
            http_client().unwrap(),
            Arc::new(RefreshCounters::default()),
            Duration::from_secs(30),
        );
        source.replace_keys(key_set());
        Arc::new(source)
    }

    fn verified(source: &Arc<KeySource>, expires: u64) -> Verified {
        Verified {
            caller: Caller {
                oid: Some("agent".into()),
                ..Caller::default()
            },
            expires: Some(expires),
            source: source.clone(),
            keys: source.current().unwrap(),
        }
    }

    #[test]
    fn a_verdict_stands_until_exp_plus_leeway_and_no_longer() {
        let cache = VerifiedTokens::default();
        let source = source();
        let now = jsonwebtoken::get_current_timestamp();
        cache.insert(digest("live"), &verified(&source, now + 3600), 60);
        assert_eq!(
            cache.get(&digest("live")).unwrap().oid.as_deref(),
            Some("agent")
        );
        // Expired 30 s ago: still inside the 60 s leeway, as jsonwebtoken would judge it.
        cache.insert(digest("leeway"), &verified(&source, now - 30), 60);
        assert!(cache.get(&digest("leeway")).is_some());
        cache.insert(digest("expired"), &verified(&source, now - 120), 60);
        assert!(cache.get(&digest("expired")).is_none());
        assert!(cache.get(&digest("never seen")).is_none());
    }

    #[test]
    fn new_keys_void_every_verdict_made_with_the_old_ones() {
        let cache = VerifiedTokens::default();
        let source = source();
        let now = jsonwebtoken::get_current_timestamp();
        cache.insert(digest("token"), &verified(&source, now + 3600), 60);
        source.replace_keys(key_set());
        assert!(cache.get(&digest("token")).is_none());
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn the_cache_stays_bounded() {
        let cache = VerifiedTokens::default();
        let source = source();
        let now = jsonwebtoken::get_current_timestamp();
        for n in 0..CAPACITY + 10 {
            cache.insert(digest(&n.to_string()), &verified(&source, now + 3600), 60);
        }
        assert!(cache.len() <= CAPACITY);
    }
}
