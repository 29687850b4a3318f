//! Opening a snapshot file: which format it is, where its database ends, and the SHA-256
//! trailer `snapshot save` appends (present iff `size % 512 == 32`, as etcd decides it).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The magic our own snapshot stream starts with (`backend::snapshot`).
const OUR_MAGIC: &[u8] = b"ETCDRSNAP1";
const SHA256_LEN: u64 = 32;

/// A file operation that failed, printed as Go prints an `*os.PathError`
/// (`open x.db: no such file or directory`), which is what etcd's tools show.
#[derive(Debug, thiserror::Error)]
#[error("{op} {}: {}", path.display(), go_errno(source))]
pub struct OpenError {
    pub op: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

impl OpenError {
    pub(crate) fn new(op: &'static str, path: &Path, source: std::io::Error) -> OpenError {
        OpenError {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Go's text for the common errnos; anything else as the OS describes it.
fn go_errno(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        std::io::ErrorKind::IsADirectory => "is a directory".into(),
        _ => {
            let text = e.to_string();
            match text.find(" (os error") {
                Some(end) => {
                    let mut t = text[..end].to_owned();
                    t[..1].make_ascii_lowercase();
                    t
                }
                None => text,
            }
        }
    }
}

/// What the file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// etcd-rs's logical snapshot stream.
    Ours,
    /// Anything else: a real etcd's bbolt file, or not a database at all.
    Other,
}

/// An opened snapshot file.
pub(crate) struct SnapshotFile {
    pub(crate) file: File,
    pub(crate) format: Format,
    /// Bytes of the database, without the SHA-256 trailer.
    pub(crate) db_len: u64,
    /// The trailer, when the size says there is one.
    pub(crate) sha256: Option<[u8; 32]>,
}

impl SnapshotFile {
    pub(crate) fn open(path: &Path, op: &'static str) -> Result<SnapshotFile, OpenError> {
        let err = |e| OpenError::new(op, path, e);
        let mut file = File::open(path).map_err(err)?;
        let len = file.metadata().map_err(err)?.len();
        let sha256 = if len % 512 == SHA256_LEN {
            let mut trailer = [0u8; 32];
            file.seek(SeekFrom::Start(len - SHA256_LEN)).map_err(err)?;
            file.read_exact(&mut trailer).map_err(err)?;
            Some(trailer)
        } else {
            None
        };
        let mut magic = [0u8; OUR_MAGIC.len()];
        file.seek(SeekFrom::Start(0)).map_err(err)?;
        let format = match file.read_exact(&mut magic) {
            Ok(()) if magic == OUR_MAGIC => Format::Ours,
            _ => Format::Other,
        };
        file.seek(SeekFrom::Start(0)).map_err(err)?;
        Ok(SnapshotFile {
            file,
            format,
            db_len: len - sha256.map_or(0, |_| SHA256_LEN),
            sha256,
        })
    }

    /// A reader of the database part that hashes what it reads.
    pub(crate) fn hashing_reader(&mut self) -> HashingReader<'_> {
        HashingReader {
            inner: (&mut self.file).take(self.db_len),
            hasher: Sha256::new(),
        }
    }
}

/// Reads the database part and hashes every byte read, so one pass both restores and checks.
pub(crate) struct HashingReader<'a> {
    inner: std::io::Take<&'a mut File>,
    hasher: Sha256,
}

impl HashingReader<'_> {
    /// The SHA-256 of the whole database part (reading what the parser left, e.g. padding).
    pub(crate) fn finish(mut self) -> std::io::Result<[u8; 32]> {
        std::io::copy(&mut self.inner, &mut HashSink(&mut self.hasher))?;
        Ok(self.hasher.finalize().into())
    }
}

impl Read for HashingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

struct HashSink<'a>(&'a mut Sha256);

impl std::io::Write for HashSink<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Go's `%v` of a byte slice: `[1 2 3]`.
pub(crate) fn go_bytes(bytes: &[u8]) -> String {
    let parts: Vec<String> = bytes.iter().map(u8::to_string).collect();
    format!("[{}]", parts.join(" "))
}
