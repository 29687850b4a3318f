//! Certificate, key, CA and CRL files, re-read when they change. A listener asks for them at
//! every handshake, as etcd re-reads its cert/key per handshake; the files are only stat'ed
//! then, and parsed again only when one's size, modification time or inode moved, so rotating
//! a certificate (or, unlike etcd, the CA bundle) needs no restart.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

use super::TlsError;

/// What identifies one version of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> Result<Stamp, TlsError> {
    let meta = std::fs::metadata(path).map_err(|e| TlsError::read(path, &e))?;
    Ok(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode: meta.ino(),
    })
}

/// A value parsed from a set of files, kept until one of them changes.
pub(crate) struct Watched<T> {
    paths: Vec<PathBuf>,
    parse: fn(&[PathBuf]) -> Result<T, TlsError>,
    current: Mutex<Option<(Vec<Stamp>, Arc<T>)>>,
}

impl<T> Watched<T> {
    pub(crate) fn new(paths: Vec<PathBuf>, parse: fn(&[PathBuf]) -> Result<T, TlsError>) -> Self {
        Watched {
            paths,
            parse,
            current: Mutex::new(None),
        }
    }

    /// The value of the files as they are now.
    pub(crate) fn get(&self) -> Result<Arc<T>, TlsError> {
        let stamps = self
            .paths
            .iter()
            .map(|p| stamp(p))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some((seen, value)) = &*self.current.lock() {
            if *seen == stamps {
                return Ok(value.clone());
            }
        }
        // Parsed outside the lock: a handshake never waits on another's file I/O.
        let value = Arc::new((self.parse)(&self.paths)?);
        *self.current.lock() = Some((stamps, value.clone()));
        Ok(value)
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::read(path, &e))
}

/// The PEM certificates of `path`, leaf first.
pub(crate) fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::parse(path, e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.to_owned()));
    }
    Ok(certs)
}

/// The PEM private key of `path` (PKCS#8, PKCS#1 or SEC1).
pub(crate) fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey(path.to_owned()),
        e => TlsError::parse(path, e),
    })
}

/// A certificate revocation list, PEM or DER (etcd takes both).
pub(crate) fn read_crl(
    path: &Path,
) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let bytes = read(path)?;
    if bytes.starts_with(b"-----") {
        let crls = CertificateRevocationListDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::parse(path, e))?;
        if crls.is_empty() {
            return Err(TlsError::parse(path, "no X509 CRL block"));
        }
        Ok(crls)
    } else {
        Ok(vec![CertificateRevocationListDer::from(bytes)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(paths: &[PathBuf]) -> Result<usize, TlsError> {
        Ok(std::fs::read(&paths[0])
            .map_err(|e| TlsError::read(&paths[0], &e))?
            .len())
    }

    #[test]
    fn a_changed_file_is_parsed_again_and_an_unchanged_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"one").unwrap();
        let watched = Watched::new(vec![path.clone()], count);
        let first = watched.get().unwrap();
        assert_eq!(*first, 3);
        assert!(Arc::ptr_eq(&first, &watched.get().unwrap()), "cached");
        // A replacement by rename (a new inode), as tools rotate certificates.
        let next = dir.path().join("f.new");
        std::fs::write(&next, b"three").unwrap();
        std::fs::rename(&next, &path).unwrap();
        assert_eq!(*watched.get().unwrap(), 5);
        std::fs::remove_file(&path).unwrap();
        let err = watched.get().unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
    }
}
