//! The TLS side of this member dialing its peers (etcd's `TLSInfo.ClientConfig` for the peer
//! transport): `--peer-client-cert-file` or `--peer-cert-file` presented, re-read when it
//! changes; the peer's certificate verified against `--peer-trusted-ca-file` (re-read too), or
//! not at all when the certificates are self-signed (`--peer-auto-tls`), as etcd skips it.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::files::{read_certs, Watched};
use super::server::ReloadingCert;
use super::{TlsError, SYSTEM_ROOTS};
use crate::config::TlsInfo;

impl ResolvesClientCert for ReloadingCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.current()
    }

    fn has_certs(&self) -> bool {
        true
    }
}

fn parse_server_verifier(paths: &[PathBuf]) -> Result<Arc<WebPkiServerVerifier>, TlsError> {
    let ca = &paths[0];
    let mut roots = RootCertStore::empty();
    for cert in read_certs(ca)? {
        roots
            .add(cert)
            .map_err(|e| TlsError::parse(ca, format!("bad CA certificate: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| TlsError::parse(ca, format!("cannot build a verifier: {e}")))
}

/// How a peer's certificate is checked.
enum PeerTrust {
    /// Against the CA bundle as it is at each handshake.
    Ca(Watched<Arc<WebPkiServerVerifier>>),
    /// Self-signed peers (auto TLS): any certificate, as etcd's `InsecureSkipVerify`.
    Any,
}

struct PeerVerifier {
    trust: PeerTrust,
    algorithms: WebPkiSupportedAlgorithms,
}

impl std::fmt::Debug for PeerVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerVerifier")
    }
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.trust {
            PeerTrust::Any => Ok(ServerCertVerified::assertion()),
            PeerTrust::Ca(verifier) => {
                let verifier = verifier.get().map_err(|e| {
                    tracing::warn!(error = %e, "cannot load the peer trusted CA");
                    rustls::Error::General(e.to_string())
                })?;
                verifier.verify_server_cert(
                    end_entity,
                    intermediates,
                    server_name,
                    ocsp_response,
                    now,
                )
            }
        }
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

/// The rustls configuration for dialing peers. `self_signed` is auto TLS: the certificate at
/// `cert` (the generated one) is presented and the peers' are not verified.
pub(crate) fn peer_client_config(
    info: &TlsInfo,
    cert: Option<(PathBuf, PathBuf)>,
    self_signed: bool,
    provider: Arc<CryptoProvider>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let trust = if self_signed {
        PeerTrust::Any
    } else {
        let ca = info
            .trusted_ca_file
            .clone()
            .unwrap_or_else(|| PathBuf::from(SYSTEM_ROOTS));
        let verifier = Watched::new(vec![ca], parse_server_verifier);
        verifier.get()?;
        PeerTrust::Ca(verifier)
    };
    let verifier = PeerVerifier {
        trust,
        algorithms: provider.signature_verification_algorithms,
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let config = match cert {
        Some((cert, key)) => {
            builder.with_client_cert_resolver(Arc::new(ReloadingCert::open(cert, key)?))
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}
