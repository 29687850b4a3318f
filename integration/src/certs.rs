//! A test PKI made at test time with rcgen (no key is ever committed): a CA, server certificates for
//! 127.0.0.1/localhost (usable by peers too), client certificates with a chosen common name or none, an
//! expired certificate and certificates from a second, untrusted CA. Everything is written as PEM files
//! into a temporary directory that lives as long as the [`TestPki`].
//!
//! ```no_run
//! use integration::certs::TestPki;
//! use integration::{Cluster, ClusterSpec};
//!
//! let pki = TestPki::new()?;
//! let cluster = Cluster::start(pki.client_tls_spec(ClusterSpec::new(1), true)?)?;
//! // `cluster.cli(..)` passes https endpoints and --cacert/--cert/--key by itself.
//! # Ok::<(), integration::Error>(())
//! ```

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use crate::cluster::ClusterSpec;
use crate::error::{io_err, Error, Result};
use crate::tls::{CertFiles, ClientTls, ListenerTls};

/// The subject alternative names of every server certificate: members listen on 127.0.0.1 and tests may
/// dial `localhost`.
pub const SERVER_SANS: [&str; 2] = ["127.0.0.1", "localhost"];

/// One certificate authority: its certificate's file and what signs leaves with it.
struct Authority {
    file: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

/// What a leaf certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Usage {
    /// Server and client authentication: a member's listener, and the same certificate when it dials its
    /// peers or its own gRPC gateway.
    Server,
    Client,
}

/// How long a leaf is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Validity {
    Current,
    /// Expired a day ago.
    Expired,
}

/// A test CA, a second CA nobody trusts, and the leaves made from them, in one temporary directory.
pub struct TestPki {
    dir: tempfile::TempDir,
    ca: Authority,
    other_ca: Authority,
}

impl std::fmt::Debug for TestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPki")
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

impl TestPki {
    /// Makes the two CAs (`ca.pem`, `other-ca.pem`) in a fresh temporary directory.
    pub fn new() -> Result<TestPki> {
        let dir = tempfile::Builder::new()
            .prefix("etcd-rs-pki-")
            .tempdir()
            .map_err(io_err("create the test PKI's directory"))?;
        let ca = authority(dir.path(), "ca", "etcd-rs test CA")?;
        let other_ca = authority(dir.path(), "other-ca", "etcd-rs untrusted test CA")?;
        Ok(TestPki { dir, ca, other_ca })
    }

    /// The directory holding every file of this PKI; deleted when the `TestPki` is dropped.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The CA certificate that signed every leaf but the `untrusted_*` ones (`--cacert`, `--trusted-ca-file`).
    pub fn ca_file(&self) -> &Path {
        &self.ca.file
    }

    /// The certificate of a second CA that signed only the `untrusted_*` leaves: a wrong `--cacert`.
    pub fn other_ca_file(&self) -> &Path {
        &self.other_ca.file
    }

    /// A server certificate (CN `name`, SANs 127.0.0.1 and localhost, server and client authentication)
    /// as `<name>.pem`/`<name>-key.pem`; the same kind serves a member's peer listener.
    pub fn server_cert(&self, name: &str) -> Result<CertFiles> {
        self.leaf(&self.ca, name, Some(name), Usage::Server, Validity::Current)
    }

    /// A client certificate with common name `cn` (etcd takes it as the user name under
    /// `--client-cert-auth`), or with an empty subject when `cn` is None.
    pub fn client_cert(&self, name: &str, cn: Option<&str>) -> Result<CertFiles> {
        self.leaf(&self.ca, name, cn, Usage::Client, Validity::Current)
    }

    /// A server certificate like [`TestPki::server_cert`] that expired yesterday.
    pub fn expired_server_cert(&self, name: &str) -> Result<CertFiles> {
        self.leaf(&self.ca, name, Some(name), Usage::Server, Validity::Expired)
    }

    /// A client certificate like [`TestPki::client_cert`] that expired yesterday.
    pub fn expired_client_cert(&self, name: &str, cn: Option<&str>) -> Result<CertFiles> {
        self.leaf(&self.ca, name, cn, Usage::Client, Validity::Expired)
    }

    /// A server certificate signed by the other CA, which [`TestPki::ca_file`] does not trust.
    pub fn untrusted_server_cert(&self, name: &str) -> Result<CertFiles> {
        self.leaf(
            &self.other_ca,
            name,
            Some(name),
            Usage::Server,
            Validity::Current,
        )
    }

    /// A client certificate signed by the other CA, which [`TestPki::ca_file`] does not trust.
    pub fn untrusted_client_cert(&self, name: &str, cn: Option<&str>) -> Result<CertFiles> {
        self.leaf(&self.other_ca, name, cn, Usage::Client, Validity::Current)
    }

    /// TLS for a member's listener: the server certificate `server` (made once, shared by every member:
    /// they all listen on 127.0.0.1), and with `client_cert_auth` this CA as `--trusted-ca-file` and
    /// `--client-cert-auth` (etcd 3.4 demands client certificates whenever it has a trusted CA file).
    pub fn listener(&self, client_cert_auth: bool) -> Result<ListenerTls> {
        let cert = self.shared_server_cert()?;
        Ok(ListenerTls {
            cert,
            trusted_ca: client_cert_auth.then(|| self.ca_file().to_path_buf()),
            client_cert_auth,
        })
    }

    /// What the harness presents to a TLS client port: this CA and a client certificate with an empty
    /// subject, so that under `--client-cert-auth` it stands for no user (as a request without a token).
    pub fn harness_client(&self) -> Result<ClientTls> {
        let identity = match existing(self.dir(), "harness-client") {
            Some(files) => files,
            None => self.client_cert("harness-client", None)?,
        };
        Ok(ClientTls {
            ca: self.ca_file().to_path_buf(),
            identity: Some(identity),
        })
    }

    /// `spec` with https client URLs ([`TestPki::listener`]) and the harness's client identity.
    pub fn client_tls_spec(
        &self,
        spec: ClusterSpec,
        client_cert_auth: bool,
    ) -> Result<ClusterSpec> {
        Ok(ClusterSpec {
            client_tls: Some(self.listener(client_cert_auth)?),
            harness_tls: Some(self.harness_client()?),
            ..spec
        })
    }

    /// `spec` with https peer URLs, members authenticating each other with certificates of this CA.
    pub fn peer_tls_spec(&self, spec: ClusterSpec) -> Result<ClusterSpec> {
        Ok(ClusterSpec {
            peer_tls: Some(self.listener(true)?),
            ..spec
        })
    }

    fn shared_server_cert(&self) -> Result<CertFiles> {
        match existing(self.dir(), "server") {
            Some(files) => Ok(files),
            None => self.server_cert("server"),
        }
    }

    fn leaf(
        &self,
        authority: &Authority,
        name: &str,
        cn: Option<&str>,
        usage: Usage,
        validity: Validity,
    ) -> Result<CertFiles> {
        let invalid = |e: rcgen::Error| Error::InvalidSpec(format!("certificate {name}: {e}"));
        let sans: Vec<String> = match usage {
            Usage::Server => SERVER_SANS.map(String::from).into(),
            Usage::Client => Vec::new(),
        };
        let mut params = CertificateParams::new(sans).map_err(invalid)?;
        params.distinguished_name = DistinguishedName::new();
        if let Some(cn) = cn {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = match usage {
            Usage::Server => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        };
        params.use_authority_key_identifier_extension = true;
        let now = time_now();
        match validity {
            Validity::Current => {
                params.not_before = now - DAY;
                params.not_after = now + 365 * DAY;
            }
            Validity::Expired => {
                params.not_before = now - 30 * DAY;
                params.not_after = now - DAY;
            }
        }
        let key = KeyPair::generate().map_err(invalid)?;
        let cert = params.signed_by(&key, &authority.issuer).map_err(invalid)?;
        let files = files_of(self.dir(), name);
        write(&files.cert, &cert.pem())?;
        write(&files.key, &key.serialize_pem())?;
        Ok(files)
    }
}

const DAY: Duration = Duration::from_secs(24 * 3600);

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

fn authority(dir: &Path, name: &str, cn: &str) -> Result<Authority> {
    let invalid =
        |e: rcgen::Error| Error::InvalidSpec(format!("certificate authority {name}: {e}"));
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(invalid)?;
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = time_now();
    params.not_before = now - DAY;
    params.not_after = now + 3650 * DAY;
    let key = KeyPair::generate().map_err(invalid)?;
    let cert = params.self_signed(&key).map_err(invalid)?;
    let file = dir.join(format!("{name}.pem"));
    write(&file, &cert.pem())?;
    Ok(Authority {
        file,
        issuer: Issuer::new(params, key),
    })
}

fn files_of(dir: &Path, name: &str) -> CertFiles {
    CertFiles {
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}-key.pem")),
    }
}

/// The files of a leaf made before, if both are there.
fn existing(dir: &Path, name: &str) -> Option<CertFiles> {
    let files = files_of(dir, name);
    (files.cert.is_file() && files.key.is_file()).then_some(files)
}

fn write(path: &Path, pem: &str) -> Result<()> {
    fs::write(path, pem).map_err(io_err(format!("write {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem_blocks(path: &Path) -> Vec<String> {
        fs::read_to_string(path)
            .unwrap()
            .lines()
            .filter(|l| l.starts_with("-----BEGIN "))
            .map(String::from)
            .collect()
    }

    #[test]
    fn files_are_pem_and_live_with_the_pki() {
        let pki = TestPki::new().unwrap();
        let server = pki.server_cert("s").unwrap();
        let client = pki.client_cert("c", Some("alice")).unwrap();
        assert_eq!(pem_blocks(pki.ca_file()), ["-----BEGIN CERTIFICATE-----"]);
        assert_eq!(pem_blocks(&server.cert), ["-----BEGIN CERTIFICATE-----"]);
        assert_eq!(pem_blocks(&client.key), ["-----BEGIN PRIVATE KEY-----"]);
        assert!(server.cert.starts_with(pki.dir()));
        let dir = pki.dir().to_path_buf();
        drop(pki);
        assert!(!dir.exists());
    }

    #[test]
    fn shared_certificates_are_made_once() {
        let pki = TestPki::new().unwrap();
        let first = pki.listener(true).unwrap();
        let pem = fs::read(&first.cert.cert).unwrap();
        let second = pki.listener(false).unwrap();
        assert_eq!(first.cert, second.cert);
        assert_eq!(fs::read(&second.cert.cert).unwrap(), pem);
        assert!(!second.client_cert_auth);
    }
}
