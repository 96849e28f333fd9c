//! Certificate credentials: a PEM file with the certificate and its RSA private key; the client proves itself
//! with a JWT signed by the key and naming the certificate by its SHA-256 thumbprint (`x5t#S256`), as the
//! Microsoft identity platform's certificate credentials require.

use std::path::Path;

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use sha2::{Digest, Sha256};

use super::entra::{now_seconds, random_id};
use super::token::IdentityError;
use crate::config::Secret;

pub struct ClientCertificate {
    key: EncodingKey,
    thumbprint_sha256: String,
}

impl ClientCertificate {
    /// Reads `AZURE_CLIENT_CERTIFICATE_PATH`: PEM with a `CERTIFICATE` and a `PRIVATE KEY` (PKCS#8) or
    /// `RSA PRIVATE KEY` block. PKCS#12 files are not supported; convert them with `openssl pkcs12 -nodes`.
    pub fn load(path: &Path) -> Result<ClientCertificate, IdentityError> {
        let shown = path.display();
        let pem = std::fs::read(path).map_err(|error| {
            IdentityError::config(format!(
                "cannot read AZURE_CLIENT_CERTIFICATE_PATH {shown}: {error}"
            ))
        })?;
        let certificate = rustls_pemfile::certs(&mut pem.as_slice())
            .next()
            .and_then(Result::ok)
            .ok_or_else(|| {
                IdentityError::config(format!(
                    "AZURE_CLIENT_CERTIFICATE_PATH {shown} holds no PEM certificate (PKCS#12 files must be converted to PEM)"
                ))
            })?;
        let key_der = rustls_pemfile::private_key(&mut pem.as_slice())
            .ok()
            .flatten()
            .ok_or_else(|| {
                IdentityError::config(format!(
                    "AZURE_CLIENT_CERTIFICATE_PATH {shown} holds no private key next to the certificate"
                ))
            })?;
        let key = match &key_der {
            rustls::pki_types::PrivateKeyDer::Pkcs1(der) => Ok(EncodingKey::from_rsa_der(der.secret_pkcs1_der())),
            rustls::pki_types::PrivateKeyDer::Pkcs8(der) => {
                pkcs8_rsa_to_pkcs1(der.secret_pkcs8_der()).map(|pkcs1| EncodingKey::from_rsa_der(&pkcs1))
            }
            _ => Err(()),
        }
        .map_err(|_| {
            IdentityError::config(format!(
                "the private key in AZURE_CLIENT_CERTIFICATE_PATH {shown} is not an RSA key (Entra certificate credentials use RSA)"
            ))
        })?;
        let thumbprint_sha256 = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(Sha256::digest(certificate.as_ref()));
        Ok(ClientCertificate {
            key,
            thumbprint_sha256,
        })
    }

    /// A fresh client assertion for `audience` (the token endpoint), valid for ten minutes.
    pub fn assertion(&self, client_id: &str, audience: &str) -> Result<Secret, IdentityError> {
        let now = now_seconds();
        let claims = serde_json::json!({
            "aud": audience,
            "iss": client_id,
            "sub": client_id,
            "jti": random_id(),
            "iat": now,
            "nbf": now,
            "exp": now + 600,
        });
        let mut header = Header::new(Algorithm::PS256);
        header.typ = Some("JWT".to_string());
        header.x5t_s256 = Some(self.thumbprint_sha256.clone());
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map(Secret::new)
            .map_err(|error| {
                IdentityError::config(format!("cannot sign the client assertion: {error}"))
            })
    }
}

/// The PKCS#1 `RSAPrivateKey` inside a PKCS#8 `PrivateKeyInfo`, which jsonwebtoken's DER loader expects.
/// PrivateKeyInfo ::= SEQUENCE { version INTEGER, algorithm AlgorithmIdentifier, privateKey OCTET STRING }
fn pkcs8_rsa_to_pkcs1(der: &[u8]) -> Result<Vec<u8>, ()> {
    const RSA_OID: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    let (outer, _) = der_element(der, 0x30)?;
    let (_version, rest) = der_element(outer, 0x02)?;
    let (algorithm, rest) = der_element(rest, 0x30)?;
    let (oid, _) = der_element(algorithm, 0x06)?;
    if oid != RSA_OID {
        return Err(());
    }
    let (key, _) = der_element(rest, 0x04)?;
    Ok(key.to_vec())
}

/// One DER element with the expected tag: its contents and what follows it.
fn der_element(input: &[u8], tag: u8) -> Result<(&[u8], &[u8]), ()> {
    let (&found, rest) = input.split_first().ok_or(())?;
    if found != tag {
        return Err(());
    }
    let (&first, mut rest) = rest.split_first().ok_or(())?;
    let length = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return Err(());
        }
        let (bytes, after) = rest.split_at(count);
        rest = after;
        bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
    };
    if rest.len() < length {
        return Err(());
    }
    Ok(rest.split_at(length))
}
