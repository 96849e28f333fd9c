//! TLS for tokio-postgres with rustls, verifying the server the way libpq's `sslmode` says.
//!
//! | sslmode      | certificate check                                                      |
//! |--------------|------------------------------------------------------------------------|
//! | disable      | no TLS                                                                 |
//! | allow/prefer | none, or the chain when a root file exists (libpq does the same)       |
//! | require      | none, or the chain when a root file exists (then it is verify-ca)      |
//! | verify-ca    | the chain against the roots; the host name is not checked              |
//! | verify-full  | the chain and the host name                                            |
//!
//! Which roots apply is decided in `config::roots`; when TLS is attempted and when plain TCP is attempted is
//! decided in `db::connect`.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

use crate::config::{ConfigError, ConnSettings, RootCerts, SslMode};

/// How much of the server certificate is checked once TLS is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateCheck {
    /// Encryption only: any certificate is accepted (the handshake signature is still checked).
    None,
    /// The chain must lead to a trusted root; the name in the certificate may be anything (verify-ca).
    Chain,
    /// The chain and the host name (verify-full).
    ChainAndHostName,
}

/// The check libpq performs for `mode` given whether root certificates are available.
pub fn certificate_check(mode: SslMode, has_roots: bool) -> CertificateCheck {
    match (mode, has_roots) {
        (SslMode::VerifyFull, _) => CertificateCheck::ChainAndHostName,
        (SslMode::VerifyCa, _) | (_, true) => CertificateCheck::Chain,
        (_, false) => CertificateCheck::None,
    }
}

/// A rustls client configuration for these connection settings. `env` supplies `HOME` for libpq's default
/// root file.
pub fn client_config(
    conn: &ConnSettings,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ClientConfig, ConfigError> {
    let roots = crate::config::roots::root_certs(conn, env)?;
    let check = certificate_check(conn.effective_sslmode(), roots.is_some());
    let store = match &roots {
        Some(roots) => Some(load_roots(roots)?),
        None => None,
    };
    build_client_config(check, store)
}

/// A rustls client configuration with the given check; `roots` is required unless `check` is `None`.
pub fn build_client_config(
    check: CertificateCheck,
    roots: Option<RootCertStore>,
) -> Result<ClientConfig, ConfigError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = match (check, roots) {
        (CertificateCheck::None, _) => Arc::new(AcceptAnyCertificate {
            provider: provider.clone(),
        }),
        (check, Some(roots)) => {
            let webpki =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|error| {
                        tls_error(format!("cannot use the root certificates: {error}"), None)
                    })?;
            if check == CertificateCheck::Chain {
                Arc::new(ChainOnlyVerifier { inner: webpki })
            } else {
                webpki
            }
        }
        (_, None) => {
            return Err(tls_error(
                "certificate verification was requested without root certificates",
                Some("set sslrootcert"),
            ));
        }
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| tls_error(format!("TLS protocol setup: {error}"), None))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    // PostgreSQL 17+ checks ALPN when a client offers it; older servers ignore it.
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(config)
}

/// Reads the trusted roots: a PEM file, or the operating system's store.
pub fn load_roots(roots: &RootCerts) -> Result<RootCertStore, ConfigError> {
    let mut store = RootCertStore::empty();
    match roots {
        RootCerts::File(path) => {
            let shown = path.display().to_string();
            let pem = std::fs::read(path).map_err(|error| {
                tls_error(format!("cannot read sslrootcert {shown:?}: {error}"), None)
            })?;
            let certificates: Vec<CertificateDer<'static>> =
                rustls_pemfile::certs(&mut pem.as_slice())
                    .collect::<Result<_, _>>()
                    .map_err(|error| {
                        tls_error(
                            format!("sslrootcert {shown:?} is not valid PEM: {error}"),
                            None,
                        )
                    })?;
            let (added, _ignored) = store.add_parsable_certificates(certificates);
            if added == 0 {
                return Err(tls_error(
                    format!("sslrootcert {shown:?} holds no usable CA certificate"),
                    Some("point sslrootcert at a PEM file with -----BEGIN CERTIFICATE----- blocks"),
                ));
            }
        }
        RootCerts::System => {
            let found = rustls_native_certs::load_native_certs();
            for error in &found.errors {
                tracing::warn!(%error, "problem reading the system's root certificates");
            }
            let (added, _ignored) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(tls_error(
                    "the system trust store has no usable root certificates",
                    Some("install the ca-certificates package, or set sslrootcert to a CA file"),
                ));
            }
        }
    }
    Ok(store)
}

fn tls_error(problem: impl Into<String>, fix: Option<&str>) -> ConfigError {
    ConfigError::Tls {
        problem: problem.into(),
        fix: fix.map(str::to_string),
    }
}

/// verify-ca: the chain is checked against the roots, a name mismatch is not an error. rustls checks the
/// name only after the chain succeeded, so a name error means the chain was fine.
#[derive(Debug)]
struct ChainOnlyVerifier {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnlyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// sslmode=require (and allow/prefer) without a root file: encrypted, but any certificate is accepted, as
/// libpq does. The handshake signature is still verified so the session keys belong to that certificate.
#[derive(Debug)]
struct AcceptAnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// tokio-postgres' TLS hook backed by rustls. Cheap to clone (the configuration is shared).
#[derive(Clone)]
pub struct MakeRustlsConnect {
    config: Arc<ClientConfig>,
}

impl MakeRustlsConnect {
    pub fn new(config: ClientConfig) -> MakeRustlsConnect {
        MakeRustlsConnect {
            config: Arc::new(config),
        }
    }
}

impl fmt::Debug for MakeRustlsConnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MakeRustlsConnect").finish_non_exhaustive()
    }
}

impl<S> MakeTlsConnect<S> for MakeRustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, host: &str) -> Result<RustlsConnect, io::Error> {
        // An IPv6 literal may arrive in URL brackets; the certificate names the bare address.
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let server_name = ServerName::try_from(host.to_string()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{host:?} is not a valid TLS server name"),
            )
        })?;
        Ok(RustlsConnect {
            config: self.config.clone(),
            server_name,
        })
    }
}

/// One pending TLS handshake to a named server.
pub struct RustlsConnect {
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<RustlsStream<S>, io::Error>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        let connector = tokio_rustls::TlsConnector::from(self.config);
        Box::pin(async move {
            let tls = connector.connect(self.server_name, stream).await?;
            Ok(RustlsStream(Box::new(tls)))
        })
    }
}

/// An established TLS session carrying the PostgreSQL protocol.
pub struct RustlsStream<S>(Box<tokio_rustls::client::TlsStream<S>>);

impl<S> RustlsStream<S> {
    /// The negotiated TLS version, for diagnostics.
    pub fn protocol_version(&self) -> Option<rustls::ProtocolVersion> {
        self.0.get_ref().1.protocol_version()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    /// No `tls-server-end-point` binding: computing it needs the certificate's signature hash algorithm,
    /// which means parsing X.509. Without it SCRAM runs without channel binding, as libpq does with
    /// `channel_binding=prefer` when none is offered; the connection is still encrypted and verified per sslmode.
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}
