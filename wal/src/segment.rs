//! Segment files: names, listing, locking, preallocation and durable directory updates.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext};

pub(crate) const SEGMENT_SUFFIX: &str = ".wal";
pub(crate) const TEMP_SUFFIX: &str = ".wal.tmp";

/// `<seq>-<index>.wal`: `index` is the raft index of the first entry the segment may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct SegmentName {
    pub seq: u64,
    pub first_index: u64,
}

impl SegmentName {
    pub(crate) fn file_name(&self) -> String {
        format!(
            "{:016x}-{:016x}{SEGMENT_SUFFIX}",
            self.seq, self.first_index
        )
    }

    pub(crate) fn parse(name: &str) -> Option<SegmentName> {
        let stem = name.strip_suffix(SEGMENT_SUFFIX)?;
        let (seq, index) = stem.split_once('-')?;
        let hex = |s: &str| {
            (s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| u64::from_str_radix(s, 16).ok())
                .flatten()
        };
        Some(SegmentName {
            seq: hex(seq)?,
            first_index: hex(index)?,
        })
    }
}

/// The segments in `dir`, oldest first. Other files are ignored.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<SegmentName>, Error> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        if let Some(name) = entry.file_name().to_str().and_then(SegmentName::parse) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Opens `path` for reading and writing and takes an exclusive, non-blocking flock on it, as etcd does for
/// every segment it may write or still needs. flock belongs to the open file, so even a second open in the
/// same process is refused.
pub(crate) fn open_locked(path: &Path, create: bool) -> Result<File, Error> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(create)
        .open(path)
        .at(path)?;
    try_lock(&file, path)?;
    Ok(file)
}

pub(crate) fn try_lock(file: &File, path: &Path) -> Result<(), Error> {
    // SAFETY: flock only reads the descriptor, which `file` keeps open for the duration of the call.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Err(Error::Locked(path.to_path_buf()))
    } else {
        Err(err).at(path)
    }
}

/// Reserves `size` bytes of zeros so appends do not change the file size (and fdatasync need not write it).
pub(crate) fn preallocate(file: &File, path: &Path, size: u64) -> Result<(), Error> {
    let current = file.metadata().at(path)?.len();
    if current >= size {
        return Ok(());
    }
    let len = libc::off_t::try_from(size)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "segment size too large"))
        .at(path)?;
    // SAFETY: fallocate only reads the descriptor, which `file` keeps open for the duration of the call.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        // Filesystems without fallocate (tmpfs on old kernels, some FUSE): a sparse extension still keeps the
        // size fixed, which is what the decoder's zero-length-word rule relies on.
        Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => file.set_len(size).at(path),
        _ => Err(err).at(path),
    }
}

/// Makes a rename or unlink in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

pub(crate) fn remove_stale_temp_files(dir: &Path) -> Result<(), Error> {
    for entry in std::fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        if entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.ends_with(TEMP_SUFFIX))
        {
            let path: PathBuf = entry.path();
            std::fs::remove_file(&path).at(&path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_sixteen_hex_digits_each() {
        let name = SegmentName {
            seq: 1,
            first_index: 0xabc,
        };
        assert_eq!(name.file_name(), "0000000000000001-0000000000000abc.wal");
        assert_eq!(SegmentName::parse(&name.file_name()), Some(name));
        assert_eq!(SegmentName::parse("1-2.wal"), None);
        assert_eq!(
            SegmentName::parse("000000000000000g-0000000000000000.wal"),
            None
        );
        assert_eq!(
            SegmentName::parse("0000000000000000-0000000000000000.wal.tmp"),
            None
        );
    }
}
