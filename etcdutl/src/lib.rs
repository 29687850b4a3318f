//! etcdutl: etcd 3.5's offline tool. It works on files only (a data dir, a snapshot file) and
//! never talks to a server; etcdctl's `snapshot status|restore` call into this library, as etcd
//! 3.5's etcdctl calls etcdutl's.

/// Reading a real etcd's database (a bbolt file) into an etcd-rs backend.
pub mod migrate;

/// What `snapshot status` reports of a snapshot file (etcd's `snapshot.Status`): the same four
/// fields for our own snapshot format and for a real etcd's bbolt file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotStatus {
    pub hash: u32,
    pub revision: i64,
    pub total_key: u64,
    pub total_size: u64,
}

/// Runs etcdutl with `args` (the program name first) and returns the process exit code.
pub fn run<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let _ = args.into_iter().count();
    eprintln!("etcdutl: no commands yet");
    1
}
