//! TLS to https endpoints with rustls (ring provider): the CA bundle, the client certificate and key, and
//! skipping verification, as etcd's `transport.TLSInfo` reads them, with its error texts.

use std::fmt;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

/// Where Go looks for the system's CA bundle on Linux when no CA file is given (crypto/x509's
/// root_linux.go); the first that exists is used.
const SYSTEM_CA_FILES: [&str; 6] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/tls/cacert.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// The TLS settings of a client: etcdctl's `--cacert`, `--cert`, `--key` and `--insecure-skip-tls-verify`.
/// They apply to `https://` endpoints only; `http://` ones stay plaintext.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM bundle of the CAs that may sign the server's certificate; the system's bundle when None.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) presented to servers that ask for one; needs `key_file`.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Accept any server certificate (the handshake's signatures are still checked).
    pub insecure_skip_verify: bool,
}

/// Why the TLS settings cannot be used; the texts are Go's, as etcdctl 3.4 prints them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    #[error("KeyFile and CertFile must both be present[key: {key}, cert: {cert}]")]
    IncompletePair { key: String, cert: String },
    #[error("open {}: {reason}", .path.display())]
    Read { path: PathBuf, reason: String },
    #[error("tls: failed to find any PEM data in certificate input")]
    NoCertificate,
    #[error("tls: failed to find any PEM data in key input")]
    NoKey,
    #[error("tls: private key does not match public key")]
    KeyMismatch,
    #[error("tls: {0}")]
    Invalid(String),
}

impl TlsOptions {
    /// Whether any setting was given (an https endpoint works without, with the system's CAs).
    pub fn is_empty(&self) -> bool {
        *self == TlsOptions::default()
    }

    /// The rustls configuration these settings describe, offering HTTP/2 (gRPC) through ALPN. Files are
    /// read now, in Go's order: the key pair first, then the CA bundle.
    pub fn client_config(&self) -> Result<ClientConfig, TlsError> {
        self.client_config_with_alpn(vec![b"h2".to_vec()])
    }

    /// Like [`TlsOptions::client_config`], offering `alpn` instead (empty for plain HTTP/1.1).
    pub fn client_config_with_alpn(&self, alpn: Vec<Vec<u8>>) -> Result<ClientConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let identity = self.identity()?;
        let verifier: Arc<dyn ServerCertVerifier> = if self.insecure_skip_verify {
            // The CA file is still read, as Go does, so a missing one is reported all the same.
            self.roots()?;
            Arc::new(SkipVerification(provider.clone()))
        } else {
            let roots = self.roots()?;
            if roots.is_empty() {
                // Go accepts a CA file without certificates and then trusts nobody.
                Arc::new(TrustNobody(provider.clone()))
            } else {
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| TlsError::Invalid(e.to_string()))?
            }
        };
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Invalid(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match identity {
            Some((certs, key)) => {
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(|e| match e {
                        rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch,
                        other => TlsError::Invalid(other.to_string()),
                    })?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn;
        Ok(config)
    }

    fn identity(
        &self,
    ) -> Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>, TlsError> {
        let (cert, key) = match (&self.cert_file, &self.key_file) {
            (None, None) => return Ok(None),
            (Some(cert), Some(key)) => (cert, key),
            (cert, key) => {
                let text = |p: &Option<PathBuf>| {
                    p.as_deref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default()
                };
                return Err(TlsError::IncompletePair {
                    key: text(key),
                    cert: text(cert),
                });
            }
        };
        let cert_pem = read(cert)?;
        let key_pem = read(key)?;
        let certs = certificates(&cert_pem);
        if certs.is_empty() {
            return Err(TlsError::NoCertificate);
        }
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::NoKey)?;
        Ok(Some((certs, key)))
    }

    fn roots(&self) -> Result<RootCertStore, TlsError> {
        let pem = match &self.ca_file {
            Some(path) => read(path)?,
            None => match SYSTEM_CA_FILES.iter().map(Path::new).find(|p| p.is_file()) {
                Some(path) => read(path)?,
                None => Vec::new(),
            },
        };
        let mut roots = RootCertStore::empty();
        // Like Go's AppendCertsFromPEM, certificates that do not parse are skipped.
        let _ = roots.add_parsable_certificates(certificates(&pem));
        Ok(roots)
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Read {
        path: path.to_path_buf(),
        reason: go_io_reason(&e),
    })
}

fn certificates(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem)
        .filter_map(|c| c.ok())
        .collect()
}

/// An I/O error as Go prints it: the C library's text in lower case, without Rust's "(os error N)".
pub(crate) fn go_io_reason(e: &io::Error) -> String {
    let text = e.to_string();
    let text = match text.rfind(" (os error ") {
        Some(at) => &text[..at],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The name the server's certificate must carry: the endpoint's host (an IP address or a DNS name).
pub(crate) fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string())
        .map_err(|e| TlsError::Invalid(format!("server name {host:?}: {e}")))
}

/// `insecure_skip_verify`: any certificate is accepted; the handshake still proves the server holds its key.
struct SkipVerification(Arc<CryptoProvider>);

/// The verifier for a CA bundle without certificates: every server is unknown.
struct TrustNobody(Arc<CryptoProvider>);

impl fmt::Debug for SkipVerification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SkipVerification")
    }
}

impl fmt::Debug for TrustNobody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TrustNobody")
    }
}

macro_rules! signature_checks {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    };
}

impl ServerCertVerifier for SkipVerification {
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

    signature_checks!();
}

impl ServerCertVerifier for TrustNobody {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Err(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        ))
    }

    signature_checks!();
}

/// Dials https endpoints for tonic: TCP, then the TLS handshake with the endpoint's host as server name.
/// tonic wraps it with the dial timeout.
#[derive(Clone)]
pub(crate) struct TlsConnector {
    connector: tokio_rustls::TlsConnector,
}

impl TlsConnector {
    pub(crate) fn new(config: Arc<ClientConfig>) -> TlsConnector {
        TlsConnector {
            connector: tokio_rustls::TlsConnector::from(config),
        }
    }
}

type TlsIo = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

impl tower::Service<http::Uri> for TlsConnector {
    type Response = TlsIo;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TlsIo>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let connector = self.connector.clone();
        Box::pin(async move {
            let invalid = |reason: String| io::Error::new(io::ErrorKind::InvalidInput, reason);
            let host = uri
                .host()
                .ok_or_else(|| invalid(format!("endpoint {uri} has no host")))?;
            let port = uri.port_u16().unwrap_or(443);
            let name = server_name(host).map_err(|e| invalid(e.to_string()))?;
            let tcp = tokio::net::TcpStream::connect((
                host.trim_start_matches('[').trim_end_matches(']'),
                port,
            ))
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("tcp connect error: {e}")))?;
            tcp.set_nodelay(true)?;
            let tls = connector
                .connect(name, tcp)
                .await
                .map_err(|e| io::Error::new(e.kind(), format!("tls handshake error: {e}")))?;
            Ok(hyper_util::rt::TokioIo::new(tls))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_a_key_pair_is_refused_as_go_does() {
        let options = TlsOptions {
            cert_file: Some("/c.pem".into()),
            ..TlsOptions::default()
        };
        assert_eq!(
            options.client_config().unwrap_err().to_string(),
            "KeyFile and CertFile must both be present[key: , cert: /c.pem]"
        );
    }

    #[test]
    fn missing_files_read_as_go_prints_them() {
        let options = TlsOptions {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..TlsOptions::default()
        };
        assert_eq!(
            options.client_config().unwrap_err().to_string(),
            "open /nonexistent/ca.pem: no such file or directory"
        );
    }

    #[test]
    fn files_without_pem_are_refused_or_trust_nobody() {
        let dir = std::env::temp_dir().join(format!("etcd-rs-tls-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let junk = dir.join("junk");
        std::fs::write(&junk, "not pem\n").unwrap();
        let pair = TlsOptions {
            cert_file: Some(junk.clone()),
            key_file: Some(junk.clone()),
            ..TlsOptions::default()
        };
        assert_eq!(pair.client_config().unwrap_err(), TlsError::NoCertificate);
        let ca = TlsOptions {
            ca_file: Some(junk),
            ..TlsOptions::default()
        };
        assert!(ca.client_config().is_ok());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn server_names_from_hosts() {
        assert!(matches!(
            server_name("127.0.0.1").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("[::1]").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("localhost").unwrap(),
            ServerName::DnsName(_)
        ));
    }
}
