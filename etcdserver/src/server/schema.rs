//! The server's backend tables (etcd's `server/storage/schema`): the ones it owns without a
//! module of their own yet, and the list the backend is opened with (the auth tables are the
//! `auth` crate's).

use backend::Table;

use auth::schema::{AUTH_ROLES_TABLE, AUTH_TABLE, AUTH_USERS_TABLE};

use super::lease_store::LEASE_TABLE;
use super::membership::{MEMBERS_REMOVED_TABLE, MEMBERS_TABLE};

pub const CLUSTER_TABLE: Table = Table::new("cluster");
pub const ALARM_TABLE: Table = Table::new("alarm");

/// Every table of the server's backend. The order is part of the backend's hash and of the
/// snapshot stream peers exchange: add new tables at the end.
pub static TABLES: [Table; 10] = [
    mvcc::KEY_TABLE,
    mvcc::META_TABLE,
    LEASE_TABLE,
    AUTH_TABLE,
    AUTH_USERS_TABLE,
    AUTH_ROLES_TABLE,
    MEMBERS_TABLE,
    MEMBERS_REMOVED_TABLE,
    CLUSTER_TABLE,
    ALARM_TABLE,
];
