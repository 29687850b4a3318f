//! TLS for the member, as etcd's `client/pkg/transport`: the rustls configurations of the
//! https/unixs listeners (client and peer) and of the peer dialer, built once at start-up from
//! the `--*cert*`/`--*key*`/`--*ca*` flags, with every file re-read when it changes
//! ([`files`]); auto TLS ([`selfsigned`]); accepting a connection ([`accept`]), which also
//! records the verified client certificate's common name for the gRPC handlers
//! ([`client_cert_common_name`]).

mod accept;
mod client;
mod files;
mod selfsigned;
mod server;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::CertificateDer;

use crate::config::{TlsConfig, TlsInfo, TlsVersion};

pub(crate) use accept::{Accepted, ConnInfo, ServerStream, TlsAcceptor};

/// The CA bundle used when a side needs one and no `--*trusted-ca-file` is given (Go uses
/// the system's roots).
pub(crate) const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Why the TLS setup or a handshake's file reading failed; every variant names its file.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TlsError {
    #[error("open {}: {reason}", path.display())]
    Read { path: PathBuf, reason: String },
    #[error("write {}: {reason}", path.display())]
    Write { path: PathBuf, reason: String },
    #[error("{}: {reason}", path.display())]
    Parse { path: PathBuf, reason: String },
    #[error("{}: no certificate found (expected PEM CERTIFICATE blocks)", .0.display())]
    NoCertificate(PathBuf),
    #[error("{}: no private key found (expected a PEM private key)", .0.display())]
    NoKey(PathBuf),
    #[error("tls: private key does not match public key (cert {}, key {})", cert.display(), key.display())]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("auto TLS: {0}")]
    SelfSigned(String),
    #[error("TLS setup: {0}")]
    Setup(String),
}

impl TlsError {
    pub(crate) fn read(path: &Path, e: &std::io::Error) -> TlsError {
        TlsError::Read {
            path: path.to_owned(),
            reason: io_reason(e),
        }
    }

    pub(crate) fn write(path: &Path, e: &std::io::Error) -> TlsError {
        TlsError::Write {
            path: path.to_owned(),
            reason: io_reason(e),
        }
    }

    pub(crate) fn parse(path: &Path, reason: impl std::fmt::Display) -> TlsError {
        TlsError::Parse {
            path: path.to_owned(),
            reason: reason.to_string(),
        }
    }
}

/// Go's words for the usual I/O errors ("no such file or directory", "permission denied").
fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// The names a leaf certificate carries.
#[derive(Debug, Default)]
pub(crate) struct LeafNames {
    pub common_name: Option<String>,
    dns: Vec<String>,
    ips: Vec<std::net::IpAddr>,
}

impl LeafNames {
    /// Go's `Certificate.VerifyHostname`: an IP against the IP SANs, a name against the DNS
    /// SANs (a leading `*.` matching one label).
    pub(crate) fn matches_host(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            return self.ips.contains(&ip);
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.dns.iter().any(|pattern| {
            let pattern = pattern.trim_end_matches('.').to_ascii_lowercase();
            match pattern.strip_prefix("*.") {
                Some(suffix) => host
                    .split_once('.')
                    .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
                None => pattern == host,
            }
        })
    }

    pub(crate) fn has_sans(&self) -> bool {
        !self.dns.is_empty() || !self.ips.is_empty()
    }

    pub(crate) fn dns(&self) -> &[String] {
        &self.dns
    }

    pub(crate) fn ips(&self) -> &[std::net::IpAddr] {
        &self.ips
    }
}

/// The common name and SANs of a DER certificate; None if it does not parse.
pub(crate) fn leaf_names(cert: &CertificateDer<'_>) -> Option<LeafNames> {
    use x509_parser::extensions::GeneralName;
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let mut names = LeafNames {
        common_name: parsed
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned),
        ..LeafNames::default()
    };
    if let Ok(Some(san)) = parsed.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => names.dns.push((*dns).to_owned()),
                GeneralName::IPAddress(bytes) => match bytes.len() {
                    4 => names.ips.push(<[u8; 4]>::try_from(*bytes).ok()?.into()),
                    16 => names.ips.push(<[u8; 16]>::try_from(*bytes).ok()?.into()),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    Some(names)
}

/// The common name of the verified client certificate of the connection `request` came on,
/// for etcd's CN authentication; None on a plain connection or without a client certificate.
pub(crate) fn client_cert_common_name<T>(request: &tonic::Request<T>) -> Option<String> {
    request
        .extensions()
        .get::<ConnInfo>()
        .and_then(|info| info.common_name.as_deref())
        .map(str::to_owned)
}

/// The crypto provider with `--cipher-suites` applied. As Go, the list restricts the TLS 1.2
/// suites; TLS 1.3's are not configurable.
fn provider(config: &TlsConfig) -> Arc<rustls::crypto::CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    if !config.cipher_suites.is_empty() {
        let chosen: Vec<rustls::SupportedCipherSuite> = config
            .cipher_suites
            .iter()
            .filter_map(|name| crate::config::cipher_suite(name).ok().flatten())
            .collect();
        provider
            .cipher_suites
            .retain(|s| s.version() == &rustls::version::TLS13 || chosen.contains(s));
    }
    Arc::new(provider)
}

/// `--tls-min-version` .. `--tls-max-version`.
fn versions(config: &TlsConfig) -> Vec<&'static rustls::SupportedProtocolVersion> {
    let max = config.max_version.unwrap_or(TlsVersion::Tls13);
    let mut versions = Vec::new();
    if config.min_version <= TlsVersion::Tls12 && max >= TlsVersion::Tls12 {
        versions.push(&rustls::version::TLS12);
    }
    if max >= TlsVersion::Tls13 {
        versions.push(&rustls::version::TLS13);
    }
    versions
}

/// Everything TLS the member serves and dials with, built (and every file read once) at
/// start-up so that a bad file stops the member before anything is served.
pub(crate) struct Setup {
    /// For https/unixs client URLs; None when no client TLS is configured.
    pub client: Option<TlsAcceptor>,
    /// For https/unixs peer URLs.
    pub peer: Option<TlsAcceptor>,
    /// For dialing peers.
    pub dialer: rafthttp::Dialer,
}

/// The hosts of `urls`, for the SANs of a self-signed certificate.
fn url_hosts(urls: &[String]) -> Vec<String> {
    let mut hosts: Vec<String> = urls
        .iter()
        .filter_map(|u| rafthttp::PeerAddr::parse(u))
        .filter_map(|a| {
            let host = a
                .authority
                .rsplit_once(':')
                .map_or(a.authority.clone(), |(h, _)| h.to_owned());
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            (!host.is_empty()).then_some(host)
        })
        .collect();
    hosts.sort();
    hosts.dedup();
    hosts
}

/// The cert/key pair of a side: the files given, or the self-signed one of auto TLS.
fn side_pair(
    info: &TlsInfo,
    fixtures: &Path,
    hosts: &[String],
    validity: u32,
) -> Result<Option<(PathBuf, PathBuf)>, TlsError> {
    match (&info.cert_file, &info.key_file) {
        (Some(cert), Some(key)) => Ok(Some((cert.clone(), key.clone()))),
        _ if info.auto_tls => selfsigned::self_cert(fixtures, hosts, validity).map(Some),
        _ => Ok(None),
    }
}

/// Builds the acceptors and the dialer of `config` for a member whose data dir is `data_dir`
/// and whose listeners serve `client_urls` and `peer_urls`.
pub(crate) fn setup(
    config: &TlsConfig,
    data_dir: &Path,
    client_urls: &[String],
    peer_urls: &[String],
) -> Result<Setup, TlsError> {
    let provider = provider(config);
    let versions = versions(config);
    let fixtures = data_dir.join("fixtures");
    let validity = config.self_signed_cert_validity;

    let client_pair = side_pair(
        &config.client,
        &fixtures.join("client"),
        &url_hosts(client_urls),
        validity,
    )?;
    let client = match client_pair {
        Some((cert, key)) => Some(TlsAcceptor::new(
            server::server_config(
                &config.client,
                server::ReloadingCert::open(cert, key)?,
                provider.clone(),
                &versions,
            )?,
            None,
            config.client.client_cert_auth,
        )),
        None => None,
    };

    let peer_pair = side_pair(
        &config.peer,
        &fixtures.join("peer"),
        &url_hosts(peer_urls),
        validity,
    )?;
    let (peer, dialer) = match peer_pair {
        Some((cert, key)) => {
            let acceptor = TlsAcceptor::new(
                server::server_config(
                    &config.peer,
                    server::ReloadingCert::open(cert.clone(), key.clone())?,
                    provider.clone(),
                    &versions,
                )?,
                (config.peer.requires_client_cert() && !config.peer_skip_client_san_verification)
                    .then_some(accept::PeerSanCheck),
                false,
            );
            let presented = match (&config.peer.client_cert_file, &config.peer.client_key_file) {
                (Some(c), Some(k)) => (c.clone(), k.clone()),
                _ => (cert, key),
            };
            let dial = client::peer_client_config(
                &config.peer,
                Some(presented),
                config.peer.auto_tls,
                provider,
                &versions,
            )?;
            (Some(acceptor), rafthttp::Dialer::with_tls(dial))
        }
        None => (None, rafthttp::Dialer::plain()),
    };
    Ok(Setup {
        client,
        peer,
        dialer,
    })
}

#[cfg(test)]
mod tests;
