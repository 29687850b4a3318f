//! etcd's auth buckets (server/storage/schema/auth*.go).
use backend::Table;

/// Keys `authEnabled` (one byte) and `authRevision` (u64 big-endian).
pub const AUTH_TABLE: Table = Table::new("auth");
/// User name -> `authpb::User`.
pub const AUTH_USERS_TABLE: Table = Table::new("authUsers");
/// Role name -> `authpb::Role`.
pub const AUTH_ROLES_TABLE: Table = Table::new("authRoles");
