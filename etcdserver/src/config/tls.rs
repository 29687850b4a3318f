//! etcd's TLS flags (`--cert-file` ... `--peer-*`, `--cipher-suites`, the 3.5 `--tls-*-version`
//! and `--self-signed-cert-validity`) and their YAML blocks (`client-transport-security:`,
//! `peer-transport-security:`), checked with etcd's messages. The listeners and the peer
//! dialer use the result.

use std::path::PathBuf;

use serde::Deserialize;

/// The TLS part of etcd's flag set.
#[derive(Debug, Default, clap::Args)]
pub(super) struct TlsFlags {
    /// Path to the client server TLS cert file.
    #[arg(long, value_name = "FILE", default_value = "")]
    cert_file: String,
    /// Path to the client server TLS key file.
    #[arg(long, value_name = "FILE", default_value = "")]
    key_file: String,
    /// Path to an explicit client cert file the server uses when it dials itself (3.5).
    #[arg(long, value_name = "FILE", default_value = "")]
    client_cert_file: String,
    /// Path to an explicit client key file (3.5).
    #[arg(long, value_name = "FILE", default_value = "")]
    client_key_file: String,
    /// Enable client cert authentication.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false")]
    client_cert_auth: bool,
    /// Path to the client certificate revocation list file.
    #[arg(long, value_name = "FILE", default_value = "")]
    client_crl_file: String,
    /// Allowed TLS hostname for client cert authentication.
    #[arg(long, value_name = "NAME", default_value = "")]
    client_cert_allowed_hostname: String,
    /// Path to the client server TLS trusted CA cert file.
    #[arg(long, value_name = "FILE", default_value = "")]
    trusted_ca_file: String,
    /// Client TLS using generated certificates.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false")]
    auto_tls: bool,
    /// Path to the peer server TLS cert file.
    #[arg(long, value_name = "FILE", default_value = "")]
    peer_cert_file: String,
    /// Path to the peer server TLS key file.
    #[arg(long, value_name = "FILE", default_value = "")]
    peer_key_file: String,
    /// Path to an explicit peer client cert file, presented when dialing peers (3.5).
    #[arg(long, value_name = "FILE", default_value = "")]
    peer_client_cert_file: String,
    /// Path to an explicit peer client key file (3.5).
    #[arg(long, value_name = "FILE", default_value = "")]
    peer_client_key_file: String,
    /// Enable peer client cert authentication.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false")]
    peer_client_cert_auth: bool,
    /// Path to the peer server TLS trusted CA file.
    #[arg(long, value_name = "FILE", default_value = "")]
    peer_trusted_ca_file: String,
    /// Peer TLS using self-generated certificates.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false")]
    peer_auto_tls: bool,
    /// Path to the peer certificate revocation list file.
    #[arg(long, value_name = "FILE", default_value = "")]
    peer_crl_file: String,
    /// Allowed CN for inter peer authentication (a comma list, as 3.5).
    #[arg(long, value_name = "CN", default_value = "")]
    peer_cert_allowed_cn: String,
    /// Allowed TLS hostname for inter peer authentication (a comma list, as 3.5).
    #[arg(long, value_name = "NAME", default_value = "")]
    peer_cert_allowed_hostname: String,
    /// Comma-separated list of supported TLS cipher suites between client/server and peers
    /// (empty will be auto-populated).
    #[arg(long, value_name = "SUITES", default_value = "")]
    cipher_suites: String,
    /// Minimum TLS version supported by etcd (TLS1.2 or TLS1.3).
    #[arg(long, value_name = "VERSION", default_value = "TLS1.2")]
    tls_min_version: String,
    /// Maximum TLS version supported by etcd (empty: no maximum).
    #[arg(long, value_name = "VERSION", default_value = "")]
    tls_max_version: String,
    /// The validity period, in years, of the client and peer certificates --auto-tls and
    /// --peer-auto-tls generate.
    #[arg(long, value_name = "YEARS", default_value_t = 1)]
    self_signed_cert_validity: u32,
    /// Skip the peer client certificate's SAN check against the remote address.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false")]
    experimental_peer_skip_client_san_verification: bool,
}

/// One side's TLS settings, as given (empty text: not set).
#[derive(Debug, Default, Clone)]
pub(super) struct RawTlsInfo {
    cert_file: String,
    key_file: String,
    client_cert_file: String,
    client_key_file: String,
    client_cert_auth: bool,
    trusted_ca_file: String,
    crl_file: String,
    auto_tls: bool,
    allowed_cn: Vec<String>,
    allowed_hostname: Vec<String>,
}

/// The TLS values before the checks.
#[derive(Debug, Clone)]
pub(super) struct RawTls {
    client: RawTlsInfo,
    peer: RawTlsInfo,
    cipher_suites: Vec<String>,
    min_version: String,
    max_version: String,
    self_signed_cert_validity: u32,
    peer_skip_client_san_verification: bool,
}

impl Default for RawTls {
    fn default() -> Self {
        RawTls {
            client: RawTlsInfo::default(),
            peer: RawTlsInfo::default(),
            cipher_suites: Vec::new(),
            min_version: "TLS1.2".into(),
            max_version: String::new(),
            self_signed_cert_validity: 1,
            peer_skip_client_san_verification: false,
        }
    }
}

fn comma_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

impl From<TlsFlags> for RawTls {
    fn from(f: TlsFlags) -> Self {
        RawTls {
            client: RawTlsInfo {
                cert_file: f.cert_file,
                key_file: f.key_file,
                client_cert_file: f.client_cert_file,
                client_key_file: f.client_key_file,
                client_cert_auth: f.client_cert_auth,
                trusted_ca_file: f.trusted_ca_file,
                crl_file: f.client_crl_file,
                auto_tls: f.auto_tls,
                allowed_cn: Vec::new(),
                allowed_hostname: comma_list(&f.client_cert_allowed_hostname),
            },
            peer: RawTlsInfo {
                cert_file: f.peer_cert_file,
                key_file: f.peer_key_file,
                client_cert_file: f.peer_client_cert_file,
                client_key_file: f.peer_client_key_file,
                client_cert_auth: f.peer_client_cert_auth,
                trusted_ca_file: f.peer_trusted_ca_file,
                crl_file: f.peer_crl_file,
                auto_tls: f.peer_auto_tls,
                allowed_cn: comma_list(&f.peer_cert_allowed_cn),
                allowed_hostname: comma_list(&f.peer_cert_allowed_hostname),
            },
            cipher_suites: comma_list(&f.cipher_suites),
            min_version: f.tls_min_version,
            max_version: f.tls_max_version,
            self_signed_cert_validity: f.self_signed_cert_validity,
            peer_skip_client_san_verification: f.experimental_peer_skip_client_san_verification,
        }
    }
}

/// A YAML value that etcd 3.4 reads as one string and 3.5 as a list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_list(self) -> Vec<String> {
        match self {
            OneOrMany::One(text) => comma_list(&text),
            OneOrMany::Many(list) => list,
        }
    }
}

/// A `*-transport-security:` block of etcd's config file.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct FileSecurity {
    cert_file: Option<String>,
    key_file: Option<String>,
    client_cert_file: Option<String>,
    client_key_file: Option<String>,
    client_cert_auth: Option<bool>,
    trusted_ca_file: Option<String>,
    crl_file: Option<String>,
    auto_tls: Option<bool>,
    allowed_cn: Option<OneOrMany>,
    allowed_hostname: Option<OneOrMany>,
}

impl From<FileSecurity> for RawTlsInfo {
    fn from(f: FileSecurity) -> Self {
        RawTlsInfo {
            cert_file: f.cert_file.unwrap_or_default(),
            key_file: f.key_file.unwrap_or_default(),
            client_cert_file: f.client_cert_file.unwrap_or_default(),
            client_key_file: f.client_key_file.unwrap_or_default(),
            client_cert_auth: f.client_cert_auth.unwrap_or(false),
            trusted_ca_file: f.trusted_ca_file.unwrap_or_default(),
            crl_file: f.crl_file.unwrap_or_default(),
            auto_tls: f.auto_tls.unwrap_or(false),
            allowed_cn: f.allowed_cn.map(OneOrMany::into_list).unwrap_or_default(),
            allowed_hostname: f
                .allowed_hostname
                .map(OneOrMany::into_list)
                .unwrap_or_default(),
        }
    }
}

/// The TLS keys of etcd's config file (flattened into the file's mapping).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) struct FileTls {
    client_transport_security: Option<FileSecurity>,
    peer_transport_security: Option<FileSecurity>,
    cipher_suites: Option<OneOrMany>,
    tls_min_version: Option<String>,
    tls_max_version: Option<String>,
    self_signed_cert_validity: Option<u32>,
    experimental_peer_skip_client_san_verification: Option<bool>,
}

/// The top-level keys [`FileTls`] reads.
pub(super) const FILE_KEYS: [&str; 7] = [
    "client-transport-security",
    "peer-transport-security",
    "cipher-suites",
    "tls-min-version",
    "tls-max-version",
    "self-signed-cert-validity",
    "experimental-peer-skip-client-san-verification",
];

impl From<FileTls> for RawTls {
    fn from(f: FileTls) -> Self {
        let defaults = RawTls::default();
        RawTls {
            client: f.client_transport_security.unwrap_or_default().into(),
            peer: f.peer_transport_security.unwrap_or_default().into(),
            cipher_suites: f
                .cipher_suites
                .map(OneOrMany::into_list)
                .unwrap_or_default(),
            min_version: f.tls_min_version.unwrap_or(defaults.min_version),
            max_version: f.tls_max_version.unwrap_or_default(),
            self_signed_cert_validity: f
                .self_signed_cert_validity
                .unwrap_or(defaults.self_signed_cert_validity),
            peer_skip_client_san_verification: f
                .experimental_peer_skip_client_san_verification
                .unwrap_or(false),
        }
    }
}

/// A TLS protocol version `--tls-min-version`/`--tls-max-version` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

impl TlsVersion {
    fn parse(text: &str) -> Result<TlsVersion, TlsConfigError> {
        match text {
            "TLS1.2" => Ok(TlsVersion::Tls12),
            "TLS1.3" => Ok(TlsVersion::Tls13),
            other => Err(TlsConfigError::Version(other.to_owned())),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            TlsVersion::Tls12 => "TLS1.2",
            TlsVersion::Tls13 => "TLS1.3",
        }
    }
}

/// One side's checked TLS settings (etcd's `transport.TLSInfo`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsInfo {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// The certificate presented when this member dials as a client (3.5's
    /// `--peer-client-cert-file`); `cert_file` when not given.
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    /// Ask clients for a certificate and verify it (also implied by `trusted_ca_file`).
    pub client_cert_auth: bool,
    pub trusted_ca_file: Option<PathBuf>,
    pub crl_file: Option<PathBuf>,
    /// `--auto-tls` with no cert/key given: the listener generates (or reuses) a self-signed
    /// certificate under `<data-dir>/fixtures/`.
    pub auto_tls: bool,
    pub allowed_cn: Vec<String>,
    pub allowed_hostname: Vec<String>,
}

impl TlsInfo {
    /// Neither cert nor key given (etcd's `TLSInfo.Empty`).
    pub fn is_empty(&self) -> bool {
        self.cert_file.is_none() && self.key_file.is_none()
    }

    /// Whether a https/unixs listener can serve: a cert/key pair, or auto TLS.
    pub fn can_serve(&self) -> bool {
        !self.is_empty() || self.auto_tls
    }

    /// Whether clients must present a certificate verified against the trusted CA: etcd asks
    /// for one when `--client-cert-auth` is on or a CA file is given.
    pub fn requires_client_cert(&self) -> bool {
        self.client_cert_auth || self.trusted_ca_file.is_some()
    }
}

/// The TLS configuration of the member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub client: TlsInfo,
    pub peer: TlsInfo,
    /// `--cipher-suites`, Go names, each one rustls implements; empty: rustls's defaults.
    pub cipher_suites: Vec<String>,
    pub min_version: TlsVersion,
    pub max_version: Option<TlsVersion>,
    /// Years `--auto-tls` certificates are valid.
    pub self_signed_cert_validity: u32,
    pub peer_skip_client_san_verification: bool,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            client: TlsInfo::default(),
            peer: TlsInfo::default(),
            cipher_suites: Vec::new(),
            min_version: TlsVersion::Tls12,
            max_version: None,
            self_signed_cert_validity: 1,
            peer_skip_client_san_verification: false,
        }
    }
}

/// What the TLS settings refuse; the text is etcd's where etcd has one.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TlsConfigError {
    #[error("unexpected TLS cipher suite {0:?}")]
    UnknownCipherSuite(String),
    #[error(
        "TLS cipher suite {0:?} is not supported by etcd-rs (rustls implements only the \
         ECDHE suites with AES-GCM or ChaCha20-Poly1305)"
    )]
    UnsupportedCipherSuite(String),
    #[error("unexpected TLS version {0:?} (must be one of: TLS1.2, TLS1.3)")]
    Version(String),
    #[error("min version ({min}) is greater than max version ({max})")]
    MinAboveMax {
        min: &'static str,
        max: &'static str,
    },
    #[error("cipher suites cannot be configured when only TLS1.3 is enabled")]
    CipherSuitesWithTls13,
    #[error("--self-signed-cert-validity must be greater than 0")]
    ZeroValidity,
    #[error(
        "TLS key/cert (--cert-file, --key-file) must be provided for client url {0} with HTTPS \
         scheme"
    )]
    ClientUrlWithoutCert(String),
    #[error("cannot listen on TLS for {0}: KeyFile and CertFile are not presented")]
    PeerUrlWithoutCert(String),
    #[error("KeyFile and CertFile must both be present[key: {key}, cert: {cert}]")]
    HalfPair { key: String, cert: String },
    #[error("--{0}-allowed-cn and --{0}-allowed-hostname are mutually exclusive")]
    CnAndHostname(&'static str),
}

/// The Go cipher-suite names etcd accepts and the rustls suites we serve for them; `None`: a
/// suite Go has and rustls does not.
pub fn cipher_suite(name: &str) -> Result<Option<rustls::SupportedCipherSuite>, TlsConfigError> {
    use rustls::crypto::ring::cipher_suite as cs;
    Ok(Some(match name {
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305"
        | "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256" => {
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        }
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" | "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" => {
            cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        }
        "TLS_AES_128_GCM_SHA256" => cs::TLS13_AES_128_GCM_SHA256,
        "TLS_AES_256_GCM_SHA384" => cs::TLS13_AES_256_GCM_SHA384,
        "TLS_CHACHA20_POLY1305_SHA256" => cs::TLS13_CHACHA20_POLY1305_SHA256,
        "TLS_RSA_WITH_RC4_128_SHA"
        | "TLS_RSA_WITH_3DES_EDE_CBC_SHA"
        | "TLS_RSA_WITH_AES_128_CBC_SHA"
        | "TLS_RSA_WITH_AES_256_CBC_SHA"
        | "TLS_RSA_WITH_AES_128_CBC_SHA256"
        | "TLS_RSA_WITH_AES_128_GCM_SHA256"
        | "TLS_RSA_WITH_AES_256_GCM_SHA384"
        | "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA"
        | "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA"
        | "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA"
        | "TLS_ECDHE_RSA_WITH_RC4_128_SHA"
        | "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA"
        | "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"
        | "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA"
        | "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256"
        | "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256" => return Ok(None),
        other => return Err(TlsConfigError::UnknownCipherSuite(other.to_owned())),
    }))
}

fn path(text: String) -> Option<PathBuf> {
    (!text.is_empty()).then(|| PathBuf::from(text))
}

fn check_info(
    side: &'static str,
    raw: RawTlsInfo,
    warnings: &mut Vec<String>,
) -> Result<TlsInfo, TlsConfigError> {
    if !raw.allowed_cn.is_empty() && !raw.allowed_hostname.is_empty() {
        return Err(TlsConfigError::CnAndHostname(side));
    }
    if raw.cert_file.is_empty() != raw.key_file.is_empty() {
        return Err(TlsConfigError::HalfPair {
            key: raw.key_file,
            cert: raw.cert_file,
        });
    }
    if raw.client_cert_file.is_empty() != raw.client_key_file.is_empty() {
        return Err(TlsConfigError::HalfPair {
            key: raw.client_key_file,
            cert: raw.client_cert_file,
        });
    }
    let has_pair = !raw.cert_file.is_empty();
    if raw.auto_tls && has_pair {
        let flag = if side == "peer" {
            "--peer-auto-tls"
        } else {
            "--auto-tls"
        };
        warnings.push(format!("ignoring {flag} since certs given"));
    }
    Ok(TlsInfo {
        cert_file: path(raw.cert_file),
        key_file: path(raw.key_file),
        client_cert_file: path(raw.client_cert_file),
        client_key_file: path(raw.client_key_file),
        client_cert_auth: raw.client_cert_auth,
        trusted_ca_file: path(raw.trusted_ca_file),
        crl_file: path(raw.crl_file),
        auto_tls: raw.auto_tls && !has_pair,
        allowed_cn: raw.allowed_cn,
        allowed_hostname: raw.allowed_hostname,
    })
}

/// etcd's checks of the TLS settings against the URLs they serve: a https/unixs listener needs
/// a cert/key pair or auto TLS; TLS settings on plain URLs are only warned about.
pub(super) fn check(
    raw: RawTls,
    listen_client_urls: &[String],
    listen_peer_urls: &[String],
    warnings: &mut Vec<String>,
) -> Result<TlsConfig, TlsConfigError> {
    let min_version = TlsVersion::parse(&raw.min_version)?;
    let max_version = match raw.max_version.as_str() {
        "" => None,
        text => Some(TlsVersion::parse(text)?),
    };
    if let Some(max) = max_version {
        if min_version > max {
            return Err(TlsConfigError::MinAboveMax {
                min: min_version.as_str(),
                max: max.as_str(),
            });
        }
    }
    for name in &raw.cipher_suites {
        if cipher_suite(name)?.is_none() {
            return Err(TlsConfigError::UnsupportedCipherSuite(name.clone()));
        }
    }
    if !raw.cipher_suites.is_empty() && min_version == TlsVersion::Tls13 {
        return Err(TlsConfigError::CipherSuitesWithTls13);
    }
    let client = check_info("client-cert", raw.client, warnings)?;
    let peer = check_info("peer-cert", raw.peer, warnings)?;
    if (client.auto_tls || peer.auto_tls) && raw.self_signed_cert_validity == 0 {
        return Err(TlsConfigError::ZeroValidity);
    }
    for url in listen_client_urls {
        let secure = url.starts_with("https://") || url.starts_with("unixs://");
        if secure && !client.can_serve() {
            return Err(TlsConfigError::ClientUrlWithoutCert(url.clone()));
        }
        if !secure && !client.is_empty() {
            warnings.push(format!(
                "scheme is HTTP while key and cert files are present; ignoring key and cert \
                 files (client-url {url})"
            ));
        }
        if !secure && client.client_cert_auth {
            warnings.push(format!(
                "scheme is HTTP while --client-cert-auth is enabled; ignoring client cert auth \
                 for this URL (client-url {url})"
            ));
        }
    }
    for url in listen_peer_urls {
        let secure = url.starts_with("https://") || url.starts_with("unixs://");
        if secure && !peer.can_serve() {
            let host = url.split_once("://").map_or(url.as_str(), |(_, h)| h);
            return Err(TlsConfigError::PeerUrlWithoutCert(host.to_owned()));
        }
        if !secure && !peer.is_empty() {
            warnings.push(format!(
                "scheme is HTTP while key and cert files are present; ignoring key and cert \
                 files (peer-url {url})"
            ));
        }
        if !secure && peer.client_cert_auth {
            warnings.push(format!(
                "scheme is HTTP while --peer-client-cert-auth is enabled; ignoring client cert \
                 auth for this URL (peer-url {url})"
            ));
        }
    }
    Ok(TlsConfig {
        client,
        peer,
        cipher_suites: raw.cipher_suites,
        min_version,
        max_version,
        self_signed_cert_validity: raw.self_signed_cert_validity,
        peer_skip_client_san_verification: raw.peer_skip_client_san_verification,
    })
}
