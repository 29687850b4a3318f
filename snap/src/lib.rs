//! Raft snapshot files and received backend database files, laid out as etcd's
//! `server/etcdserver/api/snap` keeps them in `member/snap/`:
//!
//! - `<term>-<index>.snap` (16 hex digits each): etcd's `snappb.Snapshot { crc, data }`, where `data` is the
//!   encoded raft `Snapshot` (opaque here: the server encodes and decodes it with `raftpb`) and `crc` is its
//!   CRC32C. Unlike etcd, which writes the file in place, a snapshot is written to a temporary file and renamed,
//!   so a crash never leaves a half-written `.snap`; one damaged later is still detected, renamed `.broken` and
//!   skipped in favour of the next newest.
//! - `<index>.snap.db` (16 hex digits): a backend database received from the leader, saved atomically (temporary
//!   file, fsync, rename, fsync of the directory).

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use prost::Message;

const SNAP_SUFFIX: &str = ".snap";
const DB_SUFFIX: &str = ".snap.db";
const BROKEN_SUFFIX: &str = ".broken";
/// etcd's prefix for temporary files in the snapshot directory, removed when a `Snapshotter` starts.
const TEMP_PREFIX: &str = "tmp";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("I/O error on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("snapshot file {0} is empty")]
    Empty(PathBuf),
    #[error("snapshot file {0} is not a valid snappb.Snapshot")]
    Malformed(PathBuf),
    #[error("snapshot file {0} fails its CRC check")]
    CrcMismatch(PathBuf),
    #[error("no database snapshot for index {0}")]
    NoDbSnapshot(u64),
}

trait IoContext<T> {
    fn at(self, path: &Path) -> Result<T, Error>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &Path) -> Result<T, Error> {
        self.map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// etcd's `snappb.Snapshot`. The crc is `uint32` on the wire, read as 64 bits so damage to the varint's high
/// bits is not silently dropped.
#[derive(Clone, PartialEq, Message)]
struct SnapshotFile {
    #[prost(uint64, required, tag = "1")]
    crc: u64,
    #[prost(bytes = "vec", optional, tag = "2")]
    data: Option<Vec<u8>>,
}

/// A raft snapshot read back from disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub term: u64,
    pub index: u64,
    /// The encoded raft `Snapshot`, as given to [`Snapshotter::save_snap`].
    pub data: Bytes,
}

/// Reads and writes the snapshot directory.
#[derive(Clone, Debug)]
pub struct Snapshotter {
    dir: PathBuf,
}

impl Snapshotter {
    /// Uses `dir` (created if missing) and removes temporary files a crash may have left there.
    pub fn new(dir: impl AsRef<Path>) -> Result<Snapshotter, Error> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).at(&dir)?;
        for name in file_names(&dir)? {
            if name.starts_with(TEMP_PREFIX) {
                let path = dir.join(&name);
                tracing::info!(file = %path.display(), "removing leftover temporary snapshot file");
                std::fs::remove_file(&path).at(&path)?;
            }
        }
        Ok(Snapshotter { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `<term>-<index>.snap` durably and returns its path. Empty `data` is refused: it could never be
    /// loaded back (etcd treats an empty snapshot file as broken).
    pub fn save_snap(&self, term: u64, index: u64, data: &[u8]) -> Result<PathBuf, Error> {
        let name = format!("{term:016x}-{index:016x}{SNAP_SUFFIX}");
        let path = self.dir.join(&name);
        if data.is_empty() {
            return Err(Error::Empty(path));
        }
        let file = SnapshotFile {
            crc: u64::from(crc32c::crc32c(data)),
            data: Some(data.to_vec()),
        };
        self.write_atomically(&name, &mut file.encode_to_vec().as_slice())?;
        tracing::debug!(file = %path.display(), "saved snapshot");
        Ok(path)
    }

    /// The newest snapshot that reads back intact, or `None` when there is none. Broken files on the way are
    /// renamed `<name>.broken` so they are not tried again.
    pub fn load_newest(&self) -> Result<Option<Snapshot>, Error> {
        self.load_newest_matching(|_, _| true)
    }

    /// As [`Snapshotter::load_newest`], among the snapshots for which `accept(term, index)` holds: etcd's
    /// `LoadNewestAvailable`, which only takes snapshots that also have a marker in the WAL.
    pub fn load_newest_matching(
        &self,
        accept: impl Fn(u64, u64) -> bool,
    ) -> Result<Option<Snapshot>, Error> {
        let mut names: Vec<(u64, u64, String)> = file_names(&self.dir)?
            .into_iter()
            .filter_map(|name| parse_snap_name(&name).map(|(t, i)| (t, i, name)))
            .filter(|(term, index, _)| accept(*term, *index))
            .collect();
        names.sort();
        for (term, index, name) in names.into_iter().rev() {
            let path = self.dir.join(&name);
            match read_snap_file(&path) {
                Ok(data) => return Ok(Some(Snapshot { term, index, data })),
                // A failing disk is not a broken snapshot: report it rather than renaming good files.
                Err(err @ Error::Io { .. }) => return Err(err),
                Err(err) => {
                    let broken = self.dir.join(format!("{name}{BROKEN_SUFFIX}"));
                    tracing::warn!(file = %path.display(), error = %err, "skipping broken snapshot");
                    std::fs::rename(&path, &broken).at(&broken)?;
                    sync_dir(&self.dir)?;
                }
            }
        }
        Ok(None)
    }

    /// Deletes all but the `keep` newest `.snap` files; returns the deleted paths.
    pub fn purge(&self, keep: usize) -> Result<Vec<PathBuf>, Error> {
        let mut names: Vec<(u64, u64, String)> = file_names(&self.dir)?
            .into_iter()
            .filter_map(|name| parse_snap_name(&name).map(|(t, i)| (t, i, name)))
            .collect();
        names.sort();
        let excess = names.len().saturating_sub(keep);
        self.remove(names.into_iter().take(excess).map(|(_, _, name)| name))
    }

    /// Saves a database received from the leader as `<index>.snap.db`: copied to a temporary file, fsynced,
    /// renamed, and the directory fsynced. An existing file for `index` is kept (as etcd does). Returns the
    /// path and the number of bytes received.
    pub fn save_db(&self, index: u64, reader: &mut impl Read) -> Result<(PathBuf, u64), Error> {
        let name = db_name(index);
        let path = self.dir.join(&name);
        if path.exists() {
            // Still drain the stream so the sender sees it consumed; the copy on disk already holds it.
            let received = io::copy(reader, &mut io::sink()).at(&path)?;
            return Ok((path, received));
        }
        let received = self.write_atomically(&name, reader)?;
        tracing::info!(file = %path.display(), bytes = received, "saved database snapshot");
        Ok((path, received))
    }

    /// The path of the database saved for `index`.
    pub fn db_path(&self, index: u64) -> Result<PathBuf, Error> {
        let path = self.dir.join(db_name(index));
        if path.exists() {
            Ok(path)
        } else {
            Err(Error::NoDbSnapshot(index))
        }
    }

    /// Deletes database files older than `index` (etcd's `ReleaseSnapDBs`); returns the deleted paths.
    pub fn release_dbs_before(&self, index: u64) -> Result<Vec<PathBuf>, Error> {
        let old = file_names(&self.dir)?.into_iter().filter(|name| {
            name.strip_suffix(DB_SUFFIX)
                .and_then(parse_hex16)
                .is_some_and(|db_index| db_index < index)
        });
        self.remove(old)
    }

    fn remove(&self, names: impl Iterator<Item = String>) -> Result<Vec<PathBuf>, Error> {
        let mut removed = Vec::new();
        for name in names {
            let path = self.dir.join(name);
            std::fs::remove_file(&path).at(&path)?;
            tracing::info!(file = %path.display(), "purged snapshot file");
            removed.push(path);
        }
        if !removed.is_empty() {
            sync_dir(&self.dir)?;
        }
        Ok(removed)
    }

    /// Copies `reader` into `name` so that the name only ever refers to complete, durable contents.
    fn write_atomically(&self, name: &str, reader: &mut impl Read) -> Result<u64, Error> {
        let temp = self.dir.join(format!("{TEMP_PREFIX}.{name}"));
        let written = (|| {
            let mut file = File::create(&temp)?;
            let written = io::copy(reader, &mut file)?;
            file.flush()?;
            file.sync_all()?;
            Ok(written)
        })()
        .at(&temp);
        let written = match written {
            Ok(written) => written,
            Err(err) => {
                let _ = std::fs::remove_file(&temp);
                return Err(err);
            }
        };
        let path = self.dir.join(name);
        std::fs::rename(&temp, &path).at(&path)?;
        sync_dir(&self.dir)?;
        Ok(written)
    }
}

/// Reads and checks one `.snap` file: damage is reported as [`Error::Empty`], [`Error::Malformed`] or
/// [`Error::CrcMismatch`], and only a failing read as [`Error::Io`].
fn read_snap_file(path: &Path) -> Result<Bytes, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if bytes.is_empty() {
        return Err(Error::Empty(path.to_path_buf()));
    }
    let file =
        SnapshotFile::decode(bytes.as_slice()).map_err(|_| Error::Malformed(path.to_path_buf()))?;
    let data = file.data.unwrap_or_default();
    if data.is_empty() || file.crc == 0 {
        return Err(Error::Empty(path.to_path_buf()));
    }
    if u64::from(crc32c::crc32c(&data)) != file.crc {
        return Err(Error::CrcMismatch(path.to_path_buf()));
    }
    Ok(Bytes::from(data))
}

fn parse_hex16(text: &str) -> Option<u64> {
    (text.len() == 16 && text.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u64::from_str_radix(text, 16).ok())
        .flatten()
}

fn parse_snap_name(name: &str) -> Option<(u64, u64)> {
    let (term, index) = name.strip_suffix(SNAP_SUFFIX)?.split_once('-')?;
    Some((parse_hex16(term)?, parse_hex16(index)?))
}

fn db_name(index: u64) -> String {
    format!("{index:016x}{DB_SUFFIX}")
}

fn file_names(dir: &Path) -> Result<Vec<String>, Error> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        if let Ok(name) = entry.file_name().into_string() {
            names.push(name);
        }
    }
    Ok(names)
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_layout_matches_snappb() {
        let file = SnapshotFile {
            crc: u64::from(crc32c::crc32c(b"abc")),
            data: Some(b"abc".to_vec()),
        };
        let mut expected = vec![0x08];
        prost::encoding::encode_varint(0x364b_3fb7, &mut expected);
        expected.extend_from_slice(&[0x12, 3, b'a', b'b', b'c']);
        assert_eq!(file.encode_to_vec(), expected);
    }

    #[test]
    fn names_are_sixteen_hex_digits() {
        assert_eq!(
            parse_snap_name("0000000000000002-00000000000000ff.snap"),
            Some((2, 255))
        );
        assert_eq!(parse_snap_name("2-ff.snap"), None);
        assert_eq!(
            parse_snap_name("0000000000000002-00000000000000ff.snap.broken"),
            None
        );
        assert_eq!(db_name(255), "00000000000000ff.snap.db");
    }
}
