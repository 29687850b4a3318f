//! etcd's auth buckets (server/storage/schema/auth*.go) and how auth state is laid out in them.
use std::collections::BTreeMap;

use api::authpb;
use backend::{Backend, BatchTx, Table};
use prost::Message;

use crate::AuthError;

/// Keys `authEnabled` (one byte) and `authRevision` (u64 big-endian).
pub const AUTH_TABLE: Table = Table::new("auth");
/// User name -> `authpb::User`.
pub const AUTH_USERS_TABLE: Table = Table::new("authUsers");
/// Role name -> `authpb::Role`.
pub const AUTH_ROLES_TABLE: Table = Table::new("authRoles");

const ENABLED_KEY: &[u8] = b"authEnabled";
const REVISION_KEY: &[u8] = b"authRevision";

pub(crate) fn put_enabled(tx: &mut BatchTx<'_>, enabled: bool) {
    tx.put(AUTH_TABLE, ENABLED_KEY.to_vec(), vec![u8::from(enabled)]);
}

pub(crate) fn put_revision(tx: &mut BatchTx<'_>, revision: u64) {
    tx.put(
        AUTH_TABLE,
        REVISION_KEY.to_vec(),
        revision.to_be_bytes().to_vec(),
    );
}

pub(crate) fn put_user(tx: &mut BatchTx<'_>, user: &authpb::User) {
    tx.put(AUTH_USERS_TABLE, user.name.clone(), user.encode_to_vec());
}

pub(crate) fn delete_user(tx: &mut BatchTx<'_>, name: &str) {
    tx.delete(AUTH_USERS_TABLE, name.as_bytes().to_vec());
}

pub(crate) fn put_role(tx: &mut BatchTx<'_>, role: &authpb::Role) {
    tx.put(AUTH_ROLES_TABLE, role.name.clone(), role.encode_to_vec());
}

pub(crate) fn delete_role(tx: &mut BatchTx<'_>, name: &str) {
    tx.delete(AUTH_ROLES_TABLE, name.as_bytes().to_vec());
}

/// Everything the auth tables hold.
pub(crate) struct Stored {
    pub(crate) enabled: bool,
    /// 0 when never written.
    pub(crate) revision: u64,
    pub(crate) users: BTreeMap<String, authpb::User>,
    pub(crate) roles: BTreeMap<String, authpb::Role>,
}

pub(crate) fn load(backend: &Backend) -> Result<Stored, AuthError> {
    let read = backend.read();
    // etcd compares the flag with the one byte 1; anything else is disabled.
    let enabled = read.get(AUTH_TABLE, ENABLED_KEY)?.as_deref() == Some(&[1u8][..]);
    let revision = match read.get(AUTH_TABLE, REVISION_KEY)? {
        None => 0,
        Some(bytes) => {
            let bytes: [u8; 8] = bytes.as_slice().try_into().map_err(|_| {
                AuthError::Backend(format!("authRevision holds {} bytes, want 8", bytes.len()))
            })?;
            u64::from_be_bytes(bytes)
        }
    };
    let users = load_table::<authpb::User>(&read, AUTH_USERS_TABLE)?;
    let roles = load_table::<authpb::Role>(&read, AUTH_ROLES_TABLE)?;
    Ok(Stored {
        enabled,
        revision,
        users,
        roles,
    })
}

fn load_table<M: Message + Default>(
    read: &backend::ReadTx<'_>,
    table: Table,
) -> Result<BTreeMap<String, M>, AuthError> {
    let mut entries = BTreeMap::new();
    let mut failure = None;
    read.scan(table, &[], None, |key, value| match M::decode(value) {
        Ok(message) => {
            // etcd looks records up by key, so the key is the name.
            entries.insert(String::from_utf8_lossy(key).into_owned(), message);
            true
        }
        Err(e) => {
            failure = Some(AuthError::Backend(format!(
                "cannot decode {} entry {:?}: {e}",
                table.name(),
                String::from_utf8_lossy(key)
            )));
            false
        }
    })?;
    match failure {
        Some(e) => Err(e),
        None => Ok(entries),
    }
}
