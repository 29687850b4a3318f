//! Real handshakes against a listener's acceptor: who gets in, with which CN; the CRL and the
//! allowed hostname; a plaintext client closed without a reply; the peer dialer.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SerialNumber,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::config::TlsInfo;

struct Pki {
    dir: tempfile::TempDir,
    issuer: Issuer<'static, KeyPair>,
    ca: PathBuf,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, cert.pem()).unwrap();
        Pki {
            dir,
            issuer: Issuer::new(params, key),
            ca,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A leaf named `name` (files `<name>.pem`, `<name>-key.pem`) with `sans` and `serial`.
    fn leaf(&self, name: &str, cn: &str, sans: &[&str], serial: u8) -> (PathBuf, PathBuf) {
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.serial_number = Some(SerialNumber::from_slice(&[serial]));
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (c, k) = (
            self.path(&format!("{name}.pem")),
            self.path(&format!("{name}-key.pem")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    fn crl(&self, revoked: u8) -> PathBuf {
        let now = time::OffsetDateTime::now_utc();
        let crl = CertificateRevocationListParams {
            this_update: now - time::Duration::hours(1),
            next_update: now + time::Duration::days(1),
            crl_number: SerialNumber::from_slice(&[1]),
            issuing_distribution_point: None,
            revoked_certs: vec![RevokedCertParams {
                serial_number: SerialNumber::from_slice(&[revoked]),
                revocation_time: now - time::Duration::hours(1),
                reason_code: None,
                invalidity_date: None,
            }],
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&self.issuer)
        .unwrap();
        let path = self.path("crl.pem");
        std::fs::write(&path, crl.pem().unwrap()).unwrap();
        path
    }
}

fn client_side(info: TlsInfo) -> TlsConfig {
    TlsConfig {
        client: info,
        ..TlsConfig::default()
    }
}

/// Serves one connection with the client acceptor of `config` and dials it with `client`;
/// what the acceptor made of it.
async fn handshake(
    config: &TlsConfig,
    data_dir: &Path,
    client: Arc<rustls::ClientConfig>,
) -> Option<ConnInfo> {
    let setup = setup(config, data_dir, &["https://127.0.0.1:0".into()], &[]).unwrap();
    let acceptor = setup.client.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let dial = tokio::spawn(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        if let Ok(mut tls) = tokio_rustls::TlsConnector::from(client)
            .connect(name, tcp)
            .await
        {
            // TLS 1.3 clients finish before the server has checked their certificate: read
            // until the server answers or closes.
            let _ = tls.write_all(b"x").await;
            let mut buf = [0u8; 1];
            let _ = tls.read(&mut buf).await;
        }
    });
    let (tcp, remote) = listener.accept().await.unwrap();
    let accepted = acceptor
        .accept(rafthttp::PlainStream::Tcp(tcp), Some(remote))
        .await;
    let info = accepted.map(|a| a.info);
    dial.abort();
    info
}

fn client_config(ca: &Path, identity: Option<(PathBuf, PathBuf)>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in files::read_certs(ca).unwrap() {
        roots.add(cert).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    Arc::new(match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                files::read_certs(&cert).unwrap(),
                files::read_key(&key).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    })
}

#[tokio::test]
async fn verified_clients_get_in_with_their_common_name_and_revoked_ones_do_not() {
    let pki = Pki::new();
    let (cert, key) = pki.leaf("server", "server", &["127.0.0.1"], 1);
    let alice = pki.leaf("alice", "alice", &["alice.example"], 2);
    let mallory = pki.leaf("mallory", "mallory", &[], 3);
    let info = TlsInfo {
        cert_file: Some(cert),
        key_file: Some(key),
        trusted_ca_file: Some(pki.ca.clone()),
        client_cert_auth: true,
        crl_file: Some(pki.crl(3)),
        ..TlsInfo::default()
    };
    let config = client_side(info.clone());
    let dir = pki.dir.path();
    let got = handshake(&config, dir, client_config(&pki.ca, Some(alice.clone()))).await;
    assert_eq!(got.unwrap().common_name.as_deref(), Some("alice"));
    assert!(
        handshake(&config, dir, client_config(&pki.ca, Some(mallory)))
            .await
            .is_none()
    );
    assert!(handshake(&config, dir, client_config(&pki.ca, None))
        .await
        .is_none());

    let only_bob = client_side(TlsInfo {
        allowed_hostname: vec!["bob.example".into()],
        ..info.clone()
    });
    assert!(
        handshake(&only_bob, dir, client_config(&pki.ca, Some(alice.clone())))
            .await
            .is_none()
    );
    let only_alice = client_side(TlsInfo {
        allowed_hostname: vec!["alice.example".into()],
        ..info
    });
    assert!(
        handshake(&only_alice, dir, client_config(&pki.ca, Some(alice)))
            .await
            .is_some()
    );
}

#[tokio::test]
async fn a_plaintext_client_is_closed_without_a_reply() {
    let pki = Pki::new();
    let (cert, key) = pki.leaf("server", "server", &["127.0.0.1"], 1);
    let config = client_side(TlsInfo {
        cert_file: Some(cert),
        key_file: Some(key),
        ..TlsInfo::default()
    });
    let setup = setup(&config, pki.dir.path(), &[], &[]).unwrap();
    let acceptor = setup.client.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = tokio::spawn(async move {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut reply = Vec::new();
        let _ = tcp.read_to_end(&mut reply).await;
        reply
    });
    let (tcp, remote) = listener.accept().await.unwrap();
    assert!(acceptor
        .accept(rafthttp::PlainStream::Tcp(tcp), Some(remote))
        .await
        .is_none());
    assert_eq!(client.await.unwrap(), b"", "no reply at all");
}

#[tokio::test]
async fn client_auto_tls_generates_a_certificate_under_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let config = client_side(TlsInfo {
        auto_tls: true,
        ..TlsInfo::default()
    });
    let setup = setup(&config, dir.path(), &["https://127.0.0.1:2379".into()], &[]).unwrap();
    assert!(setup.client.is_some());
    assert!(setup.peer.is_none());
    let cert = dir.path().join("fixtures/client/cert.pem");
    let names = leaf_names(&files::read_certs(&cert).unwrap()[0]).unwrap();
    assert!(names.matches_host("127.0.0.1"));
}

#[test]
fn bad_files_are_refused_at_setup_naming_them() {
    let pki = Pki::new();
    let (cert, key) = pki.leaf("server", "server", &["127.0.0.1"], 1);
    let (_, other_key) = pki.leaf("other", "other", &["127.0.0.1"], 2);
    let err = |cert: &Path, key: &Path| {
        let config = client_side(TlsInfo {
            cert_file: Some(cert.to_owned()),
            key_file: Some(key.to_owned()),
            ..TlsInfo::default()
        });
        setup(&config, pki.dir.path(), &[], &[])
            .err()
            .unwrap()
            .to_string()
    };
    let missing = pki.path("missing.pem");
    assert_eq!(
        err(&missing, &key),
        format!("open {}: no such file or directory", missing.display())
    );
    assert!(err(&cert, &other_key).contains("private key does not match public key"));
    assert!(err(&cert, &other_key).contains(&other_key.display().to_string()));
    assert!(err(&key, &key).contains("no certificate found"));
}

#[test]
fn the_common_name_reaches_the_handlers_through_the_request() {
    let mut request = tonic::Request::new(());
    assert_eq!(client_cert_common_name(&request), None);
    request.extensions_mut().insert(ConnInfo {
        common_name: Some(Arc::from("alice")),
    });
    assert_eq!(client_cert_common_name(&request).as_deref(), Some("alice"));
}

#[test]
fn host_names_match_as_go_verifies_them() {
    let names = LeafNames {
        common_name: None,
        dns: vec!["*.example.com".into(), "node1".into()],
        ips: vec!["10.0.0.1".parse().unwrap()],
    };
    assert!(names.matches_host("a.example.com"));
    assert!(!names.matches_host("a.b.example.com"));
    assert!(!names.matches_host("example.com"));
    assert!(names.matches_host("NODE1"));
    assert!(names.matches_host("10.0.0.1"));
    assert!(!names.matches_host("10.0.0.2"));
}

#[test]
fn cipher_suites_restrict_tls12_and_versions_follow_the_flags() {
    let config = TlsConfig {
        cipher_suites: vec!["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".into()],
        ..TlsConfig::default()
    };
    let suites = &provider(&config).cipher_suites;
    let tls12: Vec<_> = suites
        .iter()
        .filter(|s| s.version() == &rustls::version::TLS12)
        .collect();
    assert_eq!(tls12.len(), 1);
    assert!(suites
        .iter()
        .any(|s| s.version() == &rustls::version::TLS13));
    let only13 = TlsConfig {
        min_version: TlsVersion::Tls13,
        ..TlsConfig::default()
    };
    assert_eq!(versions(&only13), vec![&rustls::version::TLS13]);
    let only12 = TlsConfig {
        max_version: Some(TlsVersion::Tls12),
        ..TlsConfig::default()
    };
    assert_eq!(versions(&only12), vec![&rustls::version::TLS12]);
}
