//! Certificate credentials: a PEM file with the certificate and its RSA private key; the client proves itself
//! with a JWT signed by the key and naming the certificate by its SHA-256 thumbprint (`x5t#S256`), as the
//! Microsoft identity platform's certificate credentials require. The PEM comes from a file or from Key Vault
//! ([`VaultCertificate`], followed as the certificate is renewed).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use sha2::{Digest, Sha256};

use super::entra::{now_seconds, random_id};
use super::keyvault::{KeyVault, SecretReference};
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
        ClientCertificate::load_for(path, "AZURE_CLIENT_CERTIFICATE_PATH")
    }

    /// Reads a PEM file named by `setting`.
    pub fn load_for(path: &Path, setting: &str) -> Result<ClientCertificate, IdentityError> {
        let shown = path.display();
        let pem = std::fs::read(path).map_err(|error| {
            IdentityError::config(format!("cannot read {setting} {shown}: {error}"))
        })?;
        ClientCertificate::from_pem(&pem, &format!("{setting} {shown}"))
    }

    /// The certificate and key in `pem`; `source` says where it came from, for errors.
    pub fn from_pem(pem: &[u8], source: &str) -> Result<ClientCertificate, IdentityError> {
        let certificate = rustls_pemfile::certs(&mut &pem[..])
            .next()
            .and_then(Result::ok)
            .ok_or_else(|| {
                IdentityError::config(format!(
                    "{source} holds no PEM certificate (PKCS#12 files must be converted to PEM)"
                ))
            })?;
        let key_der = rustls_pemfile::private_key(&mut &pem[..])
            .ok()
            .flatten()
            .ok_or_else(|| {
                IdentityError::config(format!(
                    "{source} holds no private key next to the certificate"
                ))
            })?;
        let key = rsa_pkcs1_der(&key_der)
            .map(|pkcs1| EncodingKey::from_rsa_der(&pkcs1))
            .map_err(|_| {
                IdentityError::config(format!(
                    "the private key in {source} is not an RSA key (Entra certificate credentials use RSA)"
                ))
            })?;
        let thumbprint_sha256 = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(Sha256::digest(certificate.as_ref()));
        Ok(ClientCertificate {
            key,
            thumbprint_sha256,
        })
    }

    /// The certificate's SHA-256 thumbprint, base64url: the `x5t#S256` of its assertions.
    pub fn thumbprint_sha256(&self) -> &str {
        &self.thumbprint_sha256
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

/// An RSA private key as PKCS#1 DER, which jsonwebtoken's DER loader expects; `Err` for other key types.
pub(crate) fn rsa_pkcs1_der(key: &rustls::pki_types::PrivateKeyDer<'_>) -> Result<Vec<u8>, ()> {
    match key {
        rustls::pki_types::PrivateKeyDer::Pkcs1(der) => Ok(der.secret_pkcs1_der().to_vec()),
        rustls::pki_types::PrivateKeyDer::Pkcs8(der) => pkcs8_rsa_to_pkcs1(der.secret_pkcs8_der()),
        _ => Err(()),
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

/// A certificate credential kept in Key Vault: a Key Vault certificate with content type
/// `application/x-pem-file` (its private key is in the secret of the same name) or a secret holding the PEM. The
/// current version is read again once `refresh` has passed, so a renewed certificate is used without a restart;
/// if the vault cannot be read then, the certificate in hand stays in use.
pub struct VaultCertificate {
    vault: KeyVault,
    reference: SecretReference,
    refresh: Duration,
    current: tokio::sync::Mutex<Option<(Arc<ClientCertificate>, Instant)>>,
}

impl VaultCertificate {
    pub fn new(vault: KeyVault, reference: SecretReference, refresh: Duration) -> VaultCertificate {
        VaultCertificate {
            vault,
            reference,
            refresh,
            current: tokio::sync::Mutex::new(None),
        }
    }

    pub fn describe(&self) -> String {
        format!("Key Vault certificate {}", self.reference)
    }

    async fn read(&self) -> Result<ClientCertificate, IdentityError> {
        let source = self.describe();
        let value = self
            .vault
            .secret(&self.reference.name, self.reference.version.as_deref())
            .await?;
        ClientCertificate::from_pem(value.pem(&source)?, &source)
    }

    /// The certificate in use: read now if none is held or the held one is due for a look at the vault.
    pub async fn certificate(&self) -> Result<Arc<ClientCertificate>, IdentityError> {
        let mut current = self.current.lock().await;
        if let Some((certificate, read_at)) = current.as_ref()
            && read_at.elapsed() < self.refresh
        {
            return Ok(certificate.clone());
        }
        match self.read().await {
            Ok(certificate) => {
                let certificate = Arc::new(certificate);
                *current = Some((certificate.clone(), Instant::now()));
                Ok(certificate)
            }
            Err(error) => match current.as_mut() {
                Some((certificate, read_at)) => {
                    tracing::warn!(source = %self.describe(), error = %error, "reading the certificate again failed; the one in hand stays in use");
                    *read_at = Instant::now();
                    Ok(certificate.clone())
                }
                None => Err(error),
            },
        }
    }
}
