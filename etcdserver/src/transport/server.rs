//! The TLS side of a listener (etcd's `TLSInfo.ServerConfig`): the certificate re-read at each
//! handshake, client certificates required and verified against the trusted CA (also re-read)
//! and the CRL when asked for, and the allowed CN/hostname checked on the verified leaf.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};

use super::files::{read_certs, read_crl, read_key, Watched};
use super::{leaf_names, TlsError, SYSTEM_ROOTS};
use crate::config::TlsInfo;

/// A certificate/key pair from files, re-read when they change.
pub(crate) struct ReloadingCert {
    pair: Watched<CertifiedKey>,
}

impl std::fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReloadingCert")
    }
}

fn parse_pair(paths: &[PathBuf]) -> Result<CertifiedKey, TlsError> {
    let (cert_path, key_path) = (&paths[0], &paths[1]);
    let certs = read_certs(cert_path)?;
    let key = read_key(key_path)?;
    let provider = rustls::crypto::ring::default_provider();
    CertifiedKey::from_der(certs, key, &provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
            cert: cert_path.clone(),
            key: key_path.clone(),
        },
        e => TlsError::parse(key_path, e),
    })
}

impl ReloadingCert {
    /// Reads the pair once, so a bad file is refused at start-up.
    pub(crate) fn open(cert: PathBuf, key: PathBuf) -> Result<ReloadingCert, TlsError> {
        let pair = Watched::new(vec![cert, key], parse_pair);
        pair.get()?;
        Ok(ReloadingCert { pair })
    }

    pub(crate) fn current(&self) -> Option<Arc<CertifiedKey>> {
        match self.pair.get() {
            Ok(pair) => Some(pair),
            Err(e) => {
                tracing::warn!(error = %e, "cannot load the TLS certificate; refusing the handshake");
                None
            }
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current()
    }
}

/// The CA bundle (and CRL) as a verifier of client certificates, rebuilt when the files change.
fn parse_client_verifier(paths: &[PathBuf]) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let ca = &paths[0];
    let mut roots = RootCertStore::empty();
    for cert in read_certs(ca)? {
        roots
            .add(cert)
            .map_err(|e| TlsError::parse(ca, format!("bad CA certificate: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    if let Some(crl) = paths.get(1) {
        // etcd compares the serial of every presented certificate with the list; a CRL names
        // only its own issuer's certificates, so others are not "unknown".
        builder = builder
            .with_crls(read_crl(crl)?)
            .allow_unknown_revocation_status();
    }
    builder
        .build()
        .map_err(|e| TlsError::parse(ca, format!("cannot build a verifier: {e}")))
}

/// Client certificates required and verified (etcd's `RequireAndVerifyClientCert`).
#[derive(Debug)]
pub(crate) struct ClientAuth {
    verifier: WatchedVerifier,
    allowed_cn: Vec<String>,
    allowed_hostname: Vec<String>,
    algorithms: WebPkiSupportedAlgorithms,
}

struct WatchedVerifier(Watched<Arc<dyn ClientCertVerifier>>);

impl std::fmt::Debug for WatchedVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WatchedVerifier")
    }
}

impl ClientAuth {
    pub(crate) fn open(info: &TlsInfo) -> Result<ClientAuth, TlsError> {
        let ca = info
            .trusted_ca_file
            .clone()
            .unwrap_or_else(|| PathBuf::from(SYSTEM_ROOTS));
        let mut paths = vec![ca];
        paths.extend(info.crl_file.clone());
        let verifier = Watched::new(paths, parse_client_verifier);
        verifier.get()?;
        Ok(ClientAuth {
            verifier: WatchedVerifier(verifier),
            allowed_cn: info.allowed_cn.clone(),
            allowed_hostname: info.allowed_hostname.clone(),
            algorithms: rustls::crypto::ring::default_provider().signature_verification_algorithms,
        })
    }

    /// etcd's `--*-allowed-cn`/`--*-allowed-hostname`: the leaf must carry one of the names.
    fn allowed(&self, leaf: &CertificateDer<'_>) -> bool {
        if self.allowed_cn.is_empty() && self.allowed_hostname.is_empty() {
            return true;
        }
        let Some(names) = leaf_names(leaf) else {
            return false;
        };
        if !self.allowed_cn.is_empty() {
            return names
                .common_name
                .as_deref()
                .is_some_and(|cn| self.allowed_cn.iter().any(|a| a == cn));
        }
        self.allowed_hostname
            .iter()
            .any(|host| names.matches_host(host))
    }
}

impl ClientCertVerifier for ClientAuth {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No hints: a client with one certificate offers it, as Go's and rustls's clients do.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verifier = self.verifier.0.get().map_err(|e| {
            tracing::warn!(error = %e, "cannot load the trusted CA; refusing the client");
            rustls::Error::General(e.to_string())
        })?;
        let verified = verifier.verify_client_cert(end_entity, intermediates, now)?;
        if !self.allowed(end_entity) {
            return Err(rustls::Error::General(
                "client certificate authentication failed".into(),
            ));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The rustls configuration of a https/unixs listener serving `cert`.
pub(crate) fn server_config(
    info: &TlsInfo,
    cert: ReloadingCert,
    provider: Arc<CryptoProvider>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let builder = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| TlsError::Setup(e.to_string()))?;
    let builder = if info.requires_client_cert() {
        builder.with_client_cert_verifier(Arc::new(ClientAuth::open(info)?))
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder.with_cert_resolver(Arc::new(cert));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
