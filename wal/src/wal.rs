use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use prost::Message;

use crate::error::{Error, IoContext};
use crate::frame::encode_record;
use crate::read::{replay, LoadedSegment};
use crate::record::{HardState, RecordType, SnapshotMarker, WalEntry};
use crate::segment::{self, SegmentName, TEMP_SUFFIX};

/// The largest encoded entry `save` accepts: its record (type, crc and length prefix add at most 20 bytes) must
/// stay under the decoder's 10 MiB record limit, as in etcd.
pub const MAX_ENTRY_BYTES: usize = crate::frame::MAX_RECORD_BYTES as usize - 64;

/// etcd's `SegmentSizeBytes`.
pub const DEFAULT_SEGMENT_SIZE: u64 = 64 * 1024 * 1024;

#[derive(Clone, Debug)]
pub struct WalOptions {
    /// A segment is closed and a new one started once a save leaves it this large; new segments are
    /// preallocated to this size.
    pub segment_size: u64,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_size: DEFAULT_SEGMENT_SIZE,
        }
    }
}

/// What [`Wal::open`] read: the metadata given at creation, the last HardState, and every entry after the
/// snapshot marker the WAL was opened at.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WalContents {
    pub metadata: Bytes,
    pub hard_state: HardState,
    pub entries: Vec<WalEntry>,
}

struct Segment {
    name: SegmentName,
    path: PathBuf,
    /// Holds the segment's flock for as long as the segment is kept.
    file: File,
}

/// An open, locked write-ahead log.
///
/// Invariant: every segment in `segments` is flocked by this handle; the last one is the tail, and its bytes
/// from `tail_offset` on are zeros (preallocated), so a reader stops exactly where the next save begins.
pub struct Wal {
    dir: PathBuf,
    segment_size: u64,
    segments: Vec<Segment>,
    tail_offset: u64,
    crc: u32,
    metadata: Bytes,
    state: HardState,
    last_index: u64,
    buf: Vec<u8>,
    /// Set after a failed write or sync: what reached the disk is unknown, so only a reopen may continue.
    poisoned: bool,
}

impl Wal {
    /// Creates a WAL in `dir` (which must not already hold segments) with the default options.
    pub fn create(dir: impl AsRef<Path>, metadata: &[u8]) -> Result<Wal, Error> {
        Wal::create_with_options(dir, metadata, &WalOptions::default())
    }

    /// Creates the first segment `0000000000000000-0000000000000000.wal` holding a crc record, the metadata and a
    /// zero snapshot marker. The directory is built under a temporary name and renamed, so a crash leaves either
    /// no WAL or a complete one.
    pub fn create_with_options(
        dir: impl AsRef<Path>,
        metadata: &[u8],
        options: &WalOptions,
    ) -> Result<Wal, Error> {
        let dir = dir.as_ref().to_path_buf();
        if dir.exists() && !segment::list_segments(&dir)?.is_empty() {
            return Err(Error::AlreadyExists(dir));
        }
        let parent = match dir.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent).at(&parent)?;
        let mut temp_dir = dir.clone().into_os_string();
        temp_dir.push(".tmp");
        let temp_dir = PathBuf::from(temp_dir);
        if temp_dir.exists() {
            std::fs::remove_dir_all(&temp_dir).at(&temp_dir)?;
        }
        std::fs::create_dir(&temp_dir).at(&temp_dir)?;

        let name = SegmentName {
            seq: 0,
            first_index: 0,
        };
        let temp_path = temp_dir.join(name.file_name());
        let file = segment::open_locked(&temp_path, true)?;
        segment::preallocate(&file, &temp_path, options.segment_size)?;
        let mut crc = 0;
        let mut buf = Vec::new();
        encode_record(&mut buf, RecordType::Crc, None, &mut crc);
        encode_record(&mut buf, RecordType::Metadata, Some(metadata), &mut crc);
        let zero_marker = SnapshotMarker::default().encode_to_vec();
        encode_record(&mut buf, RecordType::Snapshot, Some(&zero_marker), &mut crc);
        file.write_all_at(&buf, 0).at(&temp_path)?;
        file.sync_data().at(&temp_path)?;

        if dir.exists() {
            std::fs::remove_dir(&dir).at(&dir)?;
        }
        std::fs::rename(&temp_dir, &dir).at(&dir)?;
        segment::sync_dir(&parent)?;
        tracing::info!(dir = %dir.display(), "created WAL");
        Ok(Wal {
            segments: vec![Segment {
                name,
                path: dir.join(name.file_name()),
                file,
            }],
            dir,
            segment_size: options.segment_size,
            tail_offset: buf.len() as u64,
            crc,
            metadata: Bytes::copy_from_slice(metadata),
            state: HardState::default(),
            last_index: 0,
            buf,
            poisoned: false,
        })
    }

    /// Opens the WAL in `dir` for writing with the default options; see [`Wal::open_with_options`].
    pub fn open(dir: impl AsRef<Path>, start: SnapshotMarker) -> Result<(Wal, WalContents), Error> {
        Wal::open_with_options(dir, start, &WalOptions::default())
    }

    /// Locks the segments from the one covering `start` to the newest, replays them and returns every entry
    /// after `start` (whose marker must be in the log, with the same term). A torn record at the very end is
    /// truncated; anything else unreadable is an [`Error::Corrupt`] naming the file and offset.
    pub fn open_with_options(
        dir: impl AsRef<Path>,
        start: SnapshotMarker,
        options: &WalOptions,
    ) -> Result<(Wal, WalContents), Error> {
        let dir = dir.as_ref().to_path_buf();
        let names = segment::list_segments(&dir)?;
        let first = names
            .iter()
            .rposition(|name| name.first_index <= start.index)
            .ok_or_else(|| Error::NoSegment(dir.clone()))?;
        let names = &names[first..];
        for pair in names.windows(2) {
            if pair[1].seq != pair[0].seq + 1 {
                return Err(Error::SequenceGap {
                    dir,
                    expected: pair[0].seq + 1,
                    found: pair[1].seq,
                });
            }
        }

        let mut segments = Vec::with_capacity(names.len());
        for &name in names {
            let path = dir.join(name.file_name());
            let file = segment::open_locked(&path, false)?;
            segments.push(Segment { name, path, file });
        }
        // Only now that the tail is ours can a half-made next segment be left over from a crash.
        segment::remove_stale_temp_files(&dir)?;

        let loaded = segments.iter().map(|segment| {
            let mut bytes = Vec::new();
            (&segment.file).read_to_end(&mut bytes).at(&segment.path)?;
            Ok(LoadedSegment {
                path: segment.path.clone(),
                bytes,
            })
        });
        let replayed = replay(loaded, start)?;
        let tail = segments
            .last()
            .expect("at least the segment covering start");
        if replayed.tail_needs_repair {
            tracing::warn!(
                file = %tail.path.display(),
                offset = replayed.tail_end,
                "clearing the WAL tail after the last valid record"
            );
            tail.file.set_len(replayed.tail_end).at(&tail.path)?;
        }
        segment::preallocate(&tail.file, &tail.path, options.segment_size)?;
        if replayed.tail_needs_repair {
            tail.file.sync_all().at(&tail.path)?;
        }

        let contents = replayed.contents;
        let wal = Wal {
            dir,
            segment_size: options.segment_size,
            segments,
            tail_offset: replayed.tail_end,
            crc: replayed.crc,
            metadata: contents.metadata.clone(),
            state: contents.hard_state,
            last_index: replayed.last_index,
            buf: Vec::new(),
            poisoned: false,
        };
        Ok((wal, contents))
    }

    /// The index of the last entry (or snapshot marker) written.
    pub fn last_index(&self) -> u64 {
        self.last_index
    }

    /// Appends `entries` and then `hard_state`, and makes them durable with one fdatasync before returning.
    ///
    /// As etcd's `raft.MustSync`, the sync is skipped when there are no entries and only `commit` changed: a lost
    /// commit index is relearnt from the leader. Nothing is written for an empty state without entries.
    /// `entries` must be consecutive and start at most one past [`Wal::last_index`]; starting lower overwrites.
    pub fn save(&mut self, hard_state: &HardState, entries: &[WalEntry]) -> Result<(), Error> {
        if self.poisoned {
            return Err(Error::Poisoned);
        }
        if hard_state.is_empty() && entries.is_empty() {
            return Ok(());
        }
        let mut max_expected = self.last_index + 1;
        for entry in entries {
            if entry.encoded().len() > MAX_ENTRY_BYTES {
                return Err(Error::EntryTooLarge {
                    index: entry.index(),
                    len: entry.encoded().len(),
                });
            }
            if entry.index() > max_expected || entry.index() == 0 {
                return Err(Error::NonContiguous {
                    found: entry.index(),
                    max_expected,
                });
            }
            max_expected = entry.index() + 1;
        }
        let must_sync = !entries.is_empty()
            || hard_state.term != self.state.term
            || hard_state.vote != self.state.vote;

        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let mut crc = self.crc;
        for entry in entries {
            encode_record(&mut buf, RecordType::Entry, Some(entry.encoded()), &mut crc);
        }
        if !hard_state.is_empty() {
            let encoded = hard_state.encode_to_vec();
            encode_record(&mut buf, RecordType::State, Some(&encoded), &mut crc);
        }
        let written = self.append(&buf);
        self.buf = buf;
        written?;
        self.crc = crc;
        if let Some(last) = entries.last() {
            self.last_index = last.index();
        }
        if !hard_state.is_empty() {
            self.state = *hard_state;
        }

        if self.tail_offset >= self.segment_size {
            self.cut()
        } else if must_sync {
            self.sync()
        } else {
            Ok(())
        }
    }

    /// Records that a raft snapshot up to `marker` is on disk, so the WAL can later be opened there; synced.
    pub fn save_snapshot(&mut self, marker: SnapshotMarker) -> Result<(), Error> {
        if self.poisoned {
            return Err(Error::Poisoned);
        }
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let mut crc = self.crc;
        encode_record(
            &mut buf,
            RecordType::Snapshot,
            Some(&marker.encode_to_vec()),
            &mut crc,
        );
        let written = self.append(&buf);
        self.buf = buf;
        written?;
        self.crc = crc;
        self.last_index = self.last_index.max(marker.index);
        self.sync()
    }

    /// Releases the locks of segments that only hold entries before `index` (etcd's `ReleaseLockTo`): every
    /// segment before the last one starting below `index` is let go, so [`purge_segments`] may delete it. The
    /// segment that may still hold `index - 1` and the tail are kept.
    pub fn release_lock_to(&mut self, index: u64) {
        let keep_from = match self
            .segments
            .iter()
            .position(|s| s.name.first_index >= index)
        {
            Some(position) => position.saturating_sub(1),
            None => self.segments.len() - 1,
        };
        if keep_from > 0 {
            for released in self.segments.drain(..keep_from) {
                tracing::debug!(file = %released.path.display(), "released WAL segment lock");
            }
        }
    }

    /// Syncs the tail and releases every lock.
    pub fn close(mut self) -> Result<(), Error> {
        if self.poisoned {
            return Err(Error::Poisoned);
        }
        self.sync()
    }

    fn tail(&self) -> &Segment {
        self.segments.last().expect("a WAL always has a tail")
    }

    fn append(&mut self, buf: &[u8]) -> Result<(), Error> {
        let tail = self.tail();
        let result = tail.file.write_all_at(buf, self.tail_offset).at(&tail.path);
        match result {
            Ok(()) => {
                self.tail_offset += buf.len() as u64;
                Ok(())
            }
            Err(err) => {
                self.poisoned = true;
                Err(err)
            }
        }
    }

    fn sync(&mut self) -> Result<(), Error> {
        let tail = self.tail();
        let result = tail.file.sync_data().at(&tail.path);
        if result.is_err() {
            // After a failed fsync the kernel may have dropped the dirty pages: nothing written can be trusted.
            self.poisoned = true;
        }
        result
    }

    /// Seals the tail at its used length and starts the next segment, named after the next entry index.
    fn cut(&mut self) -> Result<(), Error> {
        let result = self.try_cut();
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    fn try_cut(&mut self) -> Result<(), Error> {
        let tail = self.tail();
        tail.file.set_len(self.tail_offset).at(&tail.path)?;
        tail.file.sync_data().at(&tail.path)?;

        let name = SegmentName {
            seq: tail.name.seq + 1,
            first_index: self.last_index + 1,
        };
        let temp_path = self.dir.join(format!("{:016x}{TEMP_SUFFIX}", name.seq));
        let file = segment::open_locked(&temp_path, true)?;
        segment::preallocate(&file, &temp_path, self.segment_size)?;
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let mut crc = self.crc;
        encode_record(&mut buf, RecordType::Crc, None, &mut crc);
        encode_record(
            &mut buf,
            RecordType::Metadata,
            Some(&self.metadata),
            &mut crc,
        );
        if !self.state.is_empty() {
            let encoded = self.state.encode_to_vec();
            encode_record(&mut buf, RecordType::State, Some(&encoded), &mut crc);
        }
        let header_len = buf.len() as u64;
        let written = file
            .write_all_at(&buf, 0)
            .and_then(|()| file.sync_data())
            .at(&temp_path);
        self.buf = buf;
        written?;
        let path = self.dir.join(name.file_name());
        std::fs::rename(&temp_path, &path).at(&path)?;
        segment::sync_dir(&self.dir)?;
        tracing::debug!(file = %path.display(), "started WAL segment");
        self.segments.push(Segment { name, path, file });
        self.tail_offset = header_len;
        self.crc = crc;
        Ok(())
    }
}

/// Whether `dir` holds a WAL (any segment file), as etcd's `wal.Exist`: the server's choice between
/// [`Wal::create`] and [`Wal::open`].
pub fn exists(dir: impl AsRef<Path>) -> bool {
    segment::list_segments(dir.as_ref()).is_ok_and(|names| !names.is_empty())
}

/// Deletes the oldest segments of the WAL in `dir` until at most `keep` remain, stopping at the first one still
/// locked (by a [`Wal`] in this or another process), as etcd's purge does. Returns the deleted paths.
pub fn purge_segments(dir: impl AsRef<Path>, keep: usize) -> Result<Vec<PathBuf>, Error> {
    let dir = dir.as_ref();
    let names = segment::list_segments(dir)?;
    let excess = names.len().saturating_sub(keep);
    let mut removed = Vec::new();
    for name in &names[..excess] {
        let path = dir.join(name.file_name());
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .at(&path)?;
        match segment::try_lock(&file, &path) {
            Ok(()) => {}
            Err(Error::Locked(_)) => break,
            Err(err) => return Err(err),
        }
        std::fs::remove_file(&path).at(&path)?;
        tracing::info!(file = %path.display(), "purged WAL segment");
        removed.push(path);
    }
    if !removed.is_empty() {
        segment::sync_dir(dir)?;
    }
    Ok(removed)
}

/// The snapshot markers recorded in the WAL in `dir` (etcd's `ValidSnapshotEntries`), oldest first,
/// read without locking; the server picks the newest snapshot file that has one.
pub fn snapshot_markers(dir: impl AsRef<Path>) -> Result<Vec<SnapshotMarker>, Error> {
    let dir = dir.as_ref();
    let names = segment::list_segments(dir)?;
    let loaded = names.into_iter().map(|name| {
        let path = dir.join(name.file_name());
        let bytes = std::fs::read(&path).at(&path)?;
        Ok(crate::read::LoadedSegment { path, bytes })
    });
    crate::read::snapshot_markers(loaded)
}
