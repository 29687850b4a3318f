//! TLS settings of a cluster: what each member's listeners use, and what clients present to them.

use std::path::PathBuf;

/// A certificate and its private key, as PEM files (`--cert`/`--key`, `--cert-file`/`--key-file`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// TLS on one side (client or peer) of every member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTls {
    /// The member's certificate and key (every member shares it: all listen on 127.0.0.1).
    pub cert: CertFiles,
    /// The CA bundle that verifies the certificates presented to this listener.
    pub trusted_ca: Option<PathBuf>,
    /// Require a certificate from every connecting client (or peer).
    pub client_cert_auth: bool,
}

impl ListenerTls {
    /// The member flags for this side: `prefix` is `""` for the client port, `"peer-"` for the peer port.
    pub(crate) fn flags(&self, prefix: &str) -> Vec<String> {
        let mut flags = vec![
            format!("--{prefix}cert-file={}", self.cert.cert.display()),
            format!("--{prefix}key-file={}", self.cert.key.display()),
        ];
        if let Some(ca) = &self.trusted_ca {
            flags.push(format!("--{prefix}trusted-ca-file={}", ca.display()));
        }
        if self.client_cert_auth {
            flags.push(format!("--{prefix}client-cert-auth"));
        }
        flags
    }
}

/// What a client presents to a TLS member: the CA that verifies the member, and a certificate of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTls {
    pub ca: PathBuf,
    pub identity: Option<CertFiles>,
}

impl ClientTls {
    /// etcdctl's `--cacert`, `--cert` and `--key`.
    pub fn etcdctl_flags(&self) -> Vec<String> {
        let mut flags = vec![format!("--cacert={}", self.ca.display())];
        if let Some(identity) = &self.identity {
            flags.push(format!("--cert={}", identity.cert.display()));
            flags.push(format!("--key={}", identity.key.display()));
        }
        flags
    }

    /// The same for this workspace's client.
    pub fn options(&self) -> client::TlsOptions {
        client::TlsOptions {
            ca_file: Some(self.ca.clone()),
            cert_file: self.identity.as_ref().map(|i| i.cert.clone()),
            key_file: self.identity.as_ref().map(|i| i.key.clone()),
            insecure_skip_verify: false,
        }
    }
}
