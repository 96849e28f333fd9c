//! Masking values on their way out: the guard decided which output columns carry a masked table column
//! (`guard::masks`), and their values are replaced here before anything is encoded for the caller.

use std::sync::OnceLock;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::guard::masks::MaskMode;

/// What a redacted value reads as.
pub const REDACTED: &str = "[masked]";

/// The key of `hash` masks: `PGMCP_MASK_KEY` when set, so hashes stay the same across restarts and replicas;
/// otherwise a random key for this process's lifetime.
fn hash_key() -> &'static [u8] {
    static KEY: OnceLock<Vec<u8>> = OnceLock::new();
    KEY.get_or_init(|| match std::env::var("PGMCP_MASK_KEY") {
        Ok(key) if !key.is_empty() => key.into_bytes(),
        _ => {
            let mut key = vec![0u8; 32];
            // Time, address and process id are not secret enough for a password, but the key only keeps the
            // hashes of one process from being recomputed by someone who knows the values already.
            let seed = format!(
                "{:?}{:p}{}",
                std::time::SystemTime::now(),
                &key,
                std::process::id()
            );
            key.copy_from_slice(&Sha256::digest(seed.as_bytes()));
            key
        }
    })
}

/// Replaces the values of masked columns in one row, in place. `masks` is indexed like the row.
pub fn mask_row(values: &mut [Value], masks: &[Option<MaskMode>]) {
    for (value, mask) in values.iter_mut().zip(masks) {
        if let Some(mode) = mask
            && !value.is_null()
        {
            *value = masked(value, *mode);
        }
    }
}

fn masked(value: &Value, mode: MaskMode) -> Value {
    match mode {
        MaskMode::Null => Value::Null,
        MaskMode::Redact => Value::String(REDACTED.into()),
        MaskMode::Hash => {
            let mut hasher = Sha256::new();
            let key = hash_key();
            hasher.update((key.len() as u64).to_be_bytes());
            hasher.update(key);
            hasher.update(value.to_string().as_bytes());
            let digest = hasher.finalize();
            let hex: String = digest[..8]
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect();
            Value::String(format!("h:{hex}"))
        }
        MaskMode::Partial => match value {
            Value::String(text) => Value::String(partial(text)),
            _ => Value::String(REDACTED.into()),
        },
    }
}

/// Keeps a value's shape and little else: an email keeps the first character of its local part and of its domain
/// and the top-level domain (`a***@c***.com`); anything else keeps its separators and its last two characters
/// when it is longer than six (`***-***-**67`), every other letter or digit becomes `*`.
fn partial(text: &str) -> String {
    if let Some((local, domain)) = text.rsplit_once('@')
        && !local.is_empty()
        && !domain.is_empty()
    {
        let first = |part: &str| part.chars().next().map(String::from).unwrap_or_default();
        let top = domain.rsplit_once('.').map(|(_, top)| top).unwrap_or("");
        let top = if top.is_empty() {
            String::new()
        } else {
            format!(".{top}")
        };
        return format!("{}***@{}***{top}", first(local), first(domain));
    }
    let count = text.chars().count();
    let keep = if count > 6 { 2 } else { 0 };
    text.chars()
        .enumerate()
        .map(|(index, character)| {
            if index >= count - keep || !character.is_alphanumeric() {
                character
            } else {
                '*'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_mode_hides_the_value() {
        let mut row = vec![
            json!("alice@example.com"),
            json!("+1 555-123-4567"),
            json!(42),
            json!("alice@example.com"),
            json!("secret"),
            json!(null),
            json!("x"),
        ];
        let masks = [
            Some(MaskMode::Partial),
            Some(MaskMode::Partial),
            Some(MaskMode::Partial),
            Some(MaskMode::Hash),
            Some(MaskMode::Null),
            Some(MaskMode::Redact),
            None,
        ];
        mask_row(&mut row, &masks);
        assert_eq!(row[0], json!("a***@e***.com"));
        assert_eq!(row[1], json!("+* ***-***-**67"));
        assert_eq!(row[2], json!(REDACTED));
        let hashed = row[3].as_str().unwrap();
        assert!(hashed.starts_with("h:") && hashed.len() == 18, "{hashed}");
        assert_eq!(row[4], json!(null));
        assert_eq!(row[5], json!(null), "null stays null");
        assert_eq!(row[6], json!("x"), "unmasked columns are untouched");
        let mut again = vec![json!("alice@example.com")];
        mask_row(&mut again, &[Some(MaskMode::Hash)]);
        assert_eq!(again[0], row[3], "hashes are stable");
    }
}
