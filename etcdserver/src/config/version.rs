//! The version this server reports, as etcd's `version` package.

use std::sync::LazyLock;

/// The etcd version this server reports (`/version`, Maintenance.Status, `--version`): clients
/// and tools gate features on it, so it is etcd's, not this crate's.
pub const SERVER_VERSION: &str = "3.5.17";

/// `--version`'s text after `etcd `: etcd's block, with Go's names for the platform since tools
/// parse it.
pub(super) static LONG_VERSION: LazyLock<String> = LazyLock::new(|| {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    format!(
        "Version: {SERVER_VERSION}\n\
         Git SHA: Not provided (etcd-rs {})\n\
         Go Version: none (etcd-rs is written in Rust)\n\
         Go OS/Arch: {}/{arch}",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS
    )
});
