//! Snapshot files (etcd's `etcdutl/snapshot`): `status` reads one, `restore` turns one into a
//! new member's data dir. Both take our own format (`backend::snapshot`, padded to 512 bytes
//! plus the SHA-256 trailer a `snapshot save` appends) and a real etcd's bbolt file.

mod file;
mod restore;
mod status;

pub use file::OpenError;
pub use restore::{restore, RestoreConfig, RestoreError};
pub use status::{status, StatusError};
