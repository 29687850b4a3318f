//! etcd's auth store (`server/auth`): users, roles and key-range permissions, the auth
//! revision, and the tokens that name a user, for the server to check every request against.
//!
//! The state lives in memory behind one lock and is written through the batch of the raft
//! entry being applied (the `auth`, `authUsers` and `authRoles` tables, etcd's bytes), so it
//! commits with the consistent index; [`AuthStore::recover`] reloads it. Errors are
//! [`AuthError`]s; the server maps them to etcd's gRPC errors.
//!
//! Modules and the etcd files they mirror:
//! - `store`: `store.go` (users, roles, enable/disable, revision, Authenticate's checks);
//! - `permission`: `store.go`'s `isOpPermitted`/`IsAdminPermitted`;
//! - `range_perm_cache`: `range_perm_cache.go` (merged per-user READ/WRITE intervals) and
//!   `adt`'s interval coverage;
//! - `schema`: `server/storage/schema/auth.go`, `auth_users.go`, `auth_roles.go`;
//! - `options`: `store.go`'s `NewTokenProvider`/`decomposeOpts` and `options.go`;
//! - `token`: the `TokenProvider` interface and `nop.go`;
//! - `simple_token`: `simple_token.go`;
//! - `jwt`: `jwt.go` and the key loading of `options.go`.
mod error;
mod jwt;
mod options;
mod permission;
mod range_perm_cache;
pub mod schema;
mod simple_token;
mod store;
mod token;

pub use error::AuthError;
pub use options::{JwtOptions, TokenOptions};
pub use store::{AuthInfo, AuthStore};

#[cfg(test)]
mod tests;
