//! `--auto-tls`/`--peer-auto-tls`: a self-signed certificate in `<data-dir>/fixtures/{client,peer}/`,
//! reused when already there, as etcd's `transport.SelfCert`. etcd signs with ECDSA P-521, which
//! rustls cannot use; ours is ECDSA **P-256**. As etcd: random 128-bit serial, subject `O=etcd`,
//! valid from now for `--self-signed-cert-validity` years, ServerAuth, one SAN per listen host.

use std::path::{Path, PathBuf};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair,
    KeyUsagePurpose, SerialNumber,
};

use super::TlsError;

/// The cert and key files under `dir`, generated for `hosts` unless both exist.
pub(crate) fn self_cert(
    dir: &Path,
    hosts: &[String],
    validity_years: u32,
) -> Result<(PathBuf, PathBuf), TlsError> {
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    if cert_path.exists() && key_path.exists() {
        return Ok((cert_path, key_path));
    }
    let failed = |what: &str, e: rcgen::Error| TlsError::SelfSigned(format!("{what}: {e}"));
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| failed("cannot generate a key", e))?;
    let mut params =
        CertificateParams::new(hosts.to_vec()).map_err(|e| failed("bad host name", e))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "etcd");
    params.distinguished_name = dn;
    params.serial_number = Some(SerialNumber::from_slice(&rand::random::<[u8; 16]>()));
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now;
    params.not_after = now + time::Duration::days(365 * i64::from(validity_years));
    params.key_usages = vec![
        KeyUsagePurpose::KeyEncipherment,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params
        .self_signed(&key)
        .map_err(|e| failed("cannot sign", e))?;

    std::fs::create_dir_all(dir).map_err(|e| TlsError::write(dir, &e))?;
    write_private(&key_path, key.serialize_pem().as_bytes())?;
    std::fs::write(&cert_path, cert.pem()).map_err(|e| TlsError::write(&cert_path, &e))?;
    tracing::info!(cert = %cert_path.display(), "generated a self-signed certificate (ECDSA P-256)");
    Ok((cert_path, key_path))
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| TlsError::write(path, &e))?;
    file.write_all(bytes).map_err(|e| TlsError::write(path, &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_certificate_is_kept_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let fixtures = dir.path().join("fixtures/client");
        let hosts = vec!["127.0.0.1".to_string(), "localhost".to_string()];
        let (cert, key) = self_cert(&fixtures, &hosts, 1).unwrap();
        let pem = std::fs::read(&cert).unwrap();
        let names =
            super::super::leaf_names(&super::super::files::read_certs(&cert).unwrap()[0]).unwrap();
        assert!(names.matches_host("127.0.0.1") && names.matches_host("localhost"));
        assert!(!names.matches_host("example.com"));
        super::super::server::ReloadingCert::open(cert.clone(), key.clone()).unwrap();
        let again = self_cert(&fixtures, &hosts, 1).unwrap();
        assert_eq!(again, (cert.clone(), key));
        assert_eq!(
            std::fs::read(&cert).unwrap(),
            pem,
            "reused, not regenerated"
        );
    }
}
