//! A read-only reader of go.etcd.io/bbolt database files, the format of a real etcd's backend
//! and of the snapshots `etcdctl snapshot save` writes, so etcd-rs can import them.
//!
//! It reads the current meta page (the valid one with the higher transaction id), walks
//! branch and leaf pages with their overflow, inline and nested buckets, and runs the checks
//! of bbolt's `tx.Check()`. It never writes; the freelist is read only by [`Db::check`].

mod bucket;
mod check;
mod db;
mod error;
mod page;

pub use bucket::{Bucket, Value};
pub use db::Db;
pub use error::{Error, Result};

/// Whether `head` (a file's first bytes) starts with a bbolt meta page: its magic number
/// where bbolt writes it. A file damaged past its first meta page still counts, so that
/// opening it reports what is wrong rather than "not a database".
pub fn has_magic(head: &[u8]) -> bool {
    head.len() >= page::HEADER_SIZE + 4 && page::u32_at(head, page::HEADER_SIZE) == page::MAGIC
}

#[cfg(test)]
mod tests;
