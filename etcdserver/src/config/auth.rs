//! `--auth-token`, `--auth-token-ttl` and `--bcrypt-cost`. As etcd, the token spec is only
//! kept here: it is parsed, and its key files read, when the member starts (a bad one stops
//! the start with `auth: invalid auth options` and the like).

use std::time::Duration;

pub(super) const DEFAULT_AUTH_TOKEN: &str = "simple";
pub(super) const DEFAULT_AUTH_TOKEN_TTL_SECS: u64 = 300;
pub(super) const DEFAULT_BCRYPT_COST: u64 = 10;

/// The auth store's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// `--auth-token`: `simple`, `jwt,pub-key=F,priv-key=F,sign-method=M[,ttl=D]` or empty.
    pub token: String,
    /// `--auth-token-ttl`: how long an unused simple token lives.
    pub token_ttl: Duration,
    /// `--bcrypt-cost` (the auth store turns a value outside 4..=31 into 10, with a warning).
    pub bcrypt_cost: u32,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            token: DEFAULT_AUTH_TOKEN.into(),
            token_ttl: Duration::from_secs(DEFAULT_AUTH_TOKEN_TTL_SECS),
            bcrypt_cost: DEFAULT_BCRYPT_COST as u32,
        }
    }
}

impl AuthConfig {
    /// From the raw values; a cost beyond `u32` is as out of range as any above 31.
    pub(super) fn from_raw(token: String, ttl_secs: u64, bcrypt_cost: u64) -> AuthConfig {
        AuthConfig {
            token,
            token_ttl: Duration::from_secs(ttl_secs),
            bcrypt_cost: u32::try_from(bcrypt_cost).unwrap_or(u32::MAX),
        }
    }

    /// The token provider this configuration names, its key files read.
    pub fn token_options(&self) -> Result<auth::TokenOptions, auth::AuthError> {
        auth::TokenOptions::parse(&self.token, self.token_ttl)
    }
}
