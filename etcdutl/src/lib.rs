//! etcdutl: etcd 3.5's offline tool. It works on files only (a data dir, a snapshot file) and
//! never talks to a server; etcdctl's `snapshot status|restore` call into this library, as etcd
//! 3.5's etcdctl calls etcdutl's.

mod cli;
/// `defrag --data-dir`.
pub mod defrag;
/// Reading a real etcd's database (a bbolt file) into an etcd-rs backend.
pub mod migrate;
/// `-w` output of `snapshot status`.
pub mod printer;
/// `snapshot status` and `snapshot restore`.
pub mod snapshot;

pub use cli::RestoreFlags;

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
    cli::run(args)
}

/// Logs to stderr as etcd's tools do (info and up), for the binaries.
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
}
