//! URLs as etcd's `types.NewURLs` takes them (`http`, `https`, `unix`, `unixs`), and the
//! lists the `--*-urls` flags hold.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

/// A `--listen-*-urls` entry: the URL as given, whether it is served over TLS, and the address
/// to bind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenUrl {
    pub url: String,
    /// `https` or `unixs`.
    pub secure: bool,
    pub addr: ListenAddr,
}

/// Where a listener binds: a TCP address, or (`unix`, `unixs`) a socket file named by the URL's
/// `host:port`, as etcd names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl ListenAddr {
    pub fn tcp(&self) -> Option<SocketAddr> {
        match self {
            ListenAddr::Tcp(addr) => Some(*addr),
            ListenAddr::Unix(_) => None,
        }
    }
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddr::Tcp(addr) => addr.fmt(f),
            ListenAddr::Unix(path) => path.display().fmt(f),
        }
    }
}

/// Why one URL was refused; the text is etcd's where etcd refuses it too.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("URL scheme must be http, https, unix, or unixs: {0}")]
    Scheme(String),
    #[error("URL must not contain a path: {0}")]
    Path(String),
    #[error("URL address does not have the form \"host:port\": {0}")]
    NotHostPort(String),
    #[error("invalid port {port:?} in URL {url}")]
    Port { port: String, url: String },
}

/// Why a `--*-urls` list was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlListError {
    #[error("invalid value {url:?} for --{flag}: {source}")]
    Invalid {
        flag: &'static str,
        url: String,
        source: UrlError,
    },
    /// A listen URL must name something to bind, as etcd's `checkBindURLs`.
    #[error("expected IP in URL for binding ({0})")]
    NotAnIp(String),
}

/// The host of a URL: an IP, or a name (resolved by whoever dials it, never here).
#[derive(Debug)]
enum Host {
    Ip(IpAddr),
    Name(String),
}

/// A URL that passed [`parse_url`]: the text as given, its scheme, host and port.
#[derive(Debug)]
pub(super) struct ParsedUrl {
    pub(super) url: String,
    scheme: Scheme,
    /// The `host:port` text, which names a unix socket's file.
    host_port: String,
    host: Host,
    port: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Http,
    Https,
    Unix,
    Unixs,
}

/// Whether `raw` is a URL a member may advertise (a runtime membership change checks it).
pub(crate) fn is_valid_member_url(raw: &str) -> bool {
    parse_url(raw).is_ok()
}

/// One URL as etcd's `types.NewURLs` accepts it: `scheme://host:port`, no path.
pub(super) fn parse_url(raw: &str) -> Result<ParsedUrl, UrlError> {
    let not_host_port = || UrlError::NotHostPort(raw.to_owned());
    let (scheme, host_port) = raw.split_once("://").unwrap_or(("", raw));
    let scheme = match scheme {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        "unix" => Scheme::Unix,
        "unixs" => Scheme::Unixs,
        _ => return Err(UrlError::Scheme(raw.to_owned())),
    };
    if host_port.contains(['/', '?', '#']) {
        return Err(UrlError::Path(raw.to_owned()));
    }
    let (host, port) = match host_port.strip_prefix('[') {
        Some(bracketed) => {
            let (v6, port) = bracketed.split_once("]:").ok_or_else(not_host_port)?;
            let ip = v6.parse::<Ipv6Addr>().map_err(|_| not_host_port())?;
            (Host::Ip(IpAddr::V6(ip)), port)
        }
        None => {
            let (host, port) = host_port.rsplit_once(':').ok_or_else(not_host_port)?;
            if host.contains(':') {
                // An IPv6 address needs brackets, as in Go's net.SplitHostPort.
                return Err(not_host_port());
            }
            let host = match host.parse::<IpAddr>() {
                Ok(ip) => Host::Ip(ip),
                Err(_) if is_host_name(host) => Host::Name(host.to_owned()),
                Err(_) => return Err(not_host_port()),
            };
            (host, port)
        }
    };
    let port = port.parse::<u16>().map_err(|_| UrlError::Port {
        port: port.to_owned(),
        url: raw.to_owned(),
    })?;
    Ok(ParsedUrl {
        url: raw.to_owned(),
        scheme,
        host_port: host_port.to_owned(),
        host,
        port,
    })
}

/// Letters, digits, `-` and `.`, as DNS names are.
fn is_host_name(host: &str) -> bool {
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// A comma-separated URL list, sorted and deduplicated as etcd's `UniqueURLsFromFlag`.
fn url_list(flag: &'static str, list: &str) -> Result<Vec<ParsedUrl>, UrlListError> {
    let mut seen = BTreeSet::new();
    let mut urls = Vec::new();
    for raw in list.split(',').map(str::trim) {
        let parsed = parse_url(raw).map_err(|source| UrlListError::Invalid {
            flag,
            url: raw.to_owned(),
            source,
        })?;
        if seen.insert(parsed.url.clone()) {
            urls.push(parsed);
        }
    }
    urls.sort_by(|a, b| a.url.cmp(&b.url));
    Ok(urls)
}

/// An advertised URL list (`--advertise-client-urls`, `--initial-advertise-peer-urls`).
pub(super) fn advertise_urls(flag: &'static str, list: &str) -> Result<Vec<String>, UrlListError> {
    Ok(url_list(flag, list)?
        .into_iter()
        .map(|parsed| parsed.url)
        .collect())
}

/// A listen URL list: each TCP URL must name an IP (or `localhost`) to bind, as etcd's
/// `checkBindURLs`; a unix URL names its socket file.
pub(super) fn listen_urls(flag: &'static str, list: &str) -> Result<Vec<ListenUrl>, UrlListError> {
    url_list(flag, list)?
        .into_iter()
        .map(|parsed| {
            let ParsedUrl {
                url,
                scheme,
                host_port,
                host,
                port,
            } = parsed;
            let secure = matches!(scheme, Scheme::Https | Scheme::Unixs);
            if matches!(scheme, Scheme::Unix | Scheme::Unixs) {
                return Ok(ListenUrl {
                    url,
                    secure,
                    addr: ListenAddr::Unix(PathBuf::from(host_port)),
                });
            }
            let ip = match host {
                Host::Ip(ip) => ip,
                Host::Name(name) if name.eq_ignore_ascii_case("localhost") => {
                    IpAddr::V4(Ipv4Addr::LOCALHOST)
                }
                Host::Name(_) => return Err(UrlListError::NotAnIp(url)),
            };
            Ok(ListenUrl {
                url,
                secure,
                addr: ListenAddr::Tcp(SocketAddr::new(ip, port)),
            })
        })
        .collect()
}
