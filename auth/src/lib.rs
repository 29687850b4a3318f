//! etcd's auth store (`server/auth`).
mod error;
mod options;
pub mod schema;
mod store;

pub use error::AuthError;
pub use options::{JwtOptions, TokenOptions};
pub use store::{AuthInfo, AuthStore};
