//! A logical, engine-independent copy of every table.
//!
//! Format: the magic `ETCDRSNAP1`, then one record per entry
//! `[table: u8][key len: u32 BE][value len: u32 BE][key][value]`, then the trailer
//! `[0xFF][entries: u64 BE][crc32c of everything before the crc: u32 BE]`.

use std::io::{Read, Write};
use std::path::Path;

use crate::error::SnapshotCorruption;
use crate::{Backend, BackendConfig, Batch, EngineView, Error, Result, Table};

const MAGIC: &[u8] = b"ETCDRSNAP1";
const END: u8 = 0xFF;
/// Entries per engine commit while restoring.
const RESTORE_BATCH: usize = 10_000;

/// What a snapshot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub entries: u64,
    pub bytes: u64,
    pub crc: u32,
}

struct CrcWriter<'a> {
    out: &'a mut dyn Write,
    crc: u32,
    bytes: u64,
}

impl CrcWriter<'_> {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        self.out.write_all(data)?;
        self.crc = crc32c::crc32c_append(self.crc, data);
        self.bytes += data.len() as u64;
        Ok(())
    }
}

/// Writes `tables` of `view`; a record names its table by its position in `tables`.
pub(crate) fn write_snapshot(
    view: &dyn EngineView,
    tables: &[Table],
    out: &mut dyn Write,
) -> Result<SnapshotInfo> {
    let mut w = CrcWriter {
        out,
        crc: 0,
        bytes: 0,
    };
    w.write(MAGIC)?;
    let mut entries = 0u64;
    for (position, &table) in tables.iter().enumerate() {
        let tag = u8::try_from(position).expect("at most 255 tables");
        let mut failed = None;
        view.scan(table, &[], None, &mut |k, v| {
            let header = record_header(tag, k.len(), v.len());
            let written = w
                .write(&header)
                .and_then(|()| w.write(k))
                .and_then(|()| w.write(v));
            match written {
                Ok(()) => {
                    entries += 1;
                    true
                }
                Err(e) => {
                    failed = Some(e);
                    false
                }
            }
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
    }
    w.write(&[END])?;
    w.write(&entries.to_be_bytes())?;
    let crc = w.crc;
    w.out.write_all(&crc.to_be_bytes())?;
    w.out.flush()?;
    Ok(SnapshotInfo {
        entries,
        bytes: w.bytes + 4,
        crc,
    })
}

fn record_header(tag: u8, klen: usize, vlen: usize) -> [u8; 9] {
    let mut h = [0u8; 9];
    h[0] = tag;
    h[1..5].copy_from_slice(&(klen as u32).to_be_bytes());
    h[5..9].copy_from_slice(&(vlen as u32).to_be_bytes());
    h
}

struct CrcReader<'a> {
    input: &'a mut dyn Read,
    crc: u32,
}

impl CrcReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> Result<()> {
        self.input.read_exact(buf).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Error::CorruptSnapshot(SnapshotCorruption::Truncated)
            } else {
                Error::Io(e)
            }
        })?;
        self.crc = crc32c::crc32c_append(self.crc, buf);
        Ok(())
    }

    /// Reads `len` bytes into `buf`, reusing its allocation. A length the stream cannot hold
    /// fails as truncated instead of allocating it up front.
    fn read_into(&mut self, buf: &mut Vec<u8>, len: usize) -> Result<()> {
        buf.clear();
        let got = (&mut self.input).take(len as u64).read_to_end(buf)?;
        if got != len {
            return Err(Error::CorruptSnapshot(SnapshotCorruption::Truncated));
        }
        self.crc = crc32c::crc32c_append(self.crc, buf);
        Ok(())
    }
}

/// Builds a redb database at `dest` from a snapshot written by [`Backend::snapshot_to`] of a
/// backend with the same `tables`.
///
/// The data goes to `<dest>.restoring` first and is renamed to `dest` only once the whole
/// stream has been read and its checksum verified, so a broken stream never replaces `dest`.
pub fn restore_snapshot(
    input: &mut dyn Read,
    dest: &Path,
    tables: &'static [Table],
) -> Result<SnapshotInfo> {
    let mut tmp = dest.as_os_str().to_owned();
    tmp.push(".restoring");
    let tmp = std::path::PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let info = {
        let backend = Backend::open(&tmp, BackendConfig::default(), tables)?;
        let restored = restore_into(input, &backend);
        match restored {
            Ok(info) => {
                backend.close()?;
                info
            }
            Err(e) => {
                drop(backend);
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        }
    };
    std::fs::rename(&tmp, dest)?;
    if let Some(dir) = dest.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(info)
}

fn restore_into(input: &mut dyn Read, backend: &Backend) -> Result<SnapshotInfo> {
    let tables = backend.tables();
    let mut batch = Batch::default();
    let info = read_snapshot(input, tables.len(), &mut |tag, key, value| {
        batch.put(tables[usize::from(tag)], key.to_vec(), value.to_vec());
        if batch.writes() >= RESTORE_BATCH {
            flush(backend, std::mem::take(&mut batch));
        }
    })?;
    flush(backend, batch);
    backend.force_commit()?;
    Ok(info)
}

/// Reads a whole snapshot stream of a backend with `table_count` tables and hands each entry
/// to `visit` as (table position, key, value), in the stream's order: tables in order, keys
/// sorted within a table. Fails on anything but a complete stream whose count and checksum
/// match; bytes after the trailer are not read.
pub fn read_snapshot(
    input: &mut dyn Read,
    table_count: usize,
    visit: &mut dyn FnMut(u8, &[u8], &[u8]),
) -> Result<SnapshotInfo> {
    let mut r = CrcReader { input, crc: 0 };
    let mut magic = [0u8; MAGIC.len()];
    r.read(&mut magic)?;
    if magic != MAGIC {
        return Err(Error::CorruptSnapshot(SnapshotCorruption::BadMagic));
    }
    let mut entries = 0u64;
    let mut bytes = MAGIC.len() as u64;
    let mut key = Vec::new();
    let mut value = Vec::new();
    loop {
        let mut tag = [0u8; 1];
        r.read(&mut tag)?;
        bytes += 1;
        if tag[0] == END {
            break;
        }
        if usize::from(tag[0]) >= table_count {
            return Err(Error::CorruptSnapshot(SnapshotCorruption::UnknownTable(
                tag[0],
            )));
        }
        let mut lens = [0u8; 8];
        r.read(&mut lens)?;
        let klen = u32::from_be_bytes([lens[0], lens[1], lens[2], lens[3]]) as usize;
        let vlen = u32::from_be_bytes([lens[4], lens[5], lens[6], lens[7]]) as usize;
        r.read_into(&mut key, klen)?;
        r.read_into(&mut value, vlen)?;
        bytes += 8 + (klen + vlen) as u64;
        visit(tag[0], &key, &value);
        entries += 1;
    }
    let mut count = [0u8; 8];
    r.read(&mut count)?;
    let expected_crc = r.crc;
    let mut crc = [0u8; 4];
    r.read(&mut crc)?;
    bytes += 12;
    if u64::from_be_bytes(count) != entries {
        return Err(Error::CorruptSnapshot(SnapshotCorruption::EntryCount));
    }
    if u32::from_be_bytes(crc) != expected_crc {
        return Err(Error::CorruptSnapshot(SnapshotCorruption::Checksum));
    }
    Ok(SnapshotInfo {
        entries,
        bytes,
        crc: expected_crc,
    })
}

fn flush(backend: &Backend, batch: Batch) {
    let mut tx = backend.batch_tx();
    for (table, changes) in batch.into_tables() {
        for (k, v) in changes {
            if let Some(v) = v {
                tx.put(table, k, v);
            }
        }
    }
}
