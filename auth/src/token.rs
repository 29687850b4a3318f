//! The token provider behind `--auth-token` (etcd's `TokenProvider`: tokenSimple, tokenJWT,
//! tokenNop).

use std::time::Instant;

use crate::jwt::Jwt;
use crate::simple_token::{self, SimpleTokens};
use crate::{AuthError, TokenOptions};

pub(crate) enum TokenProvider {
    Simple(SimpleTokens),
    Jwt(Box<Jwt>),
    Nop,
}

impl TokenProvider {
    pub(crate) fn new(options: TokenOptions) -> Self {
        match options {
            TokenOptions::Simple { ttl } => TokenProvider::Simple(SimpleTokens::new(ttl)),
            TokenOptions::Jwt(options) => TokenProvider::Jwt(options.jwt),
            TokenOptions::None => TokenProvider::Nop,
        }
    }

    pub(crate) fn enable(&self) {
        if let TokenProvider::Simple(tokens) = self {
            tokens.enable();
        }
    }

    pub(crate) fn disable(&self) {
        if let TokenProvider::Simple(tokens) = self {
            tokens.disable();
        }
    }

    /// JWTs are not revoked: only the revision bump retires them.
    pub(crate) fn invalidate_user(&self, username: &str) {
        if let TokenProvider::Simple(tokens) = self {
            tokens.invalidate_user(username);
        }
    }

    /// Only simple tokens have a prefix; the others give "" as etcd's do.
    pub(crate) fn gen_prefix(&self) -> String {
        match self {
            TokenProvider::Simple(_) => simple_token::gen_prefix(),
            TokenProvider::Jwt(_) | TokenProvider::Nop => String::new(),
        }
    }

    pub(crate) fn assign(
        &self,
        username: &str,
        revision: u64,
        prefix: &str,
        index: u64,
    ) -> Result<String, AuthError> {
        match self {
            TokenProvider::Simple(tokens) => {
                Ok(tokens.assign(username, prefix, index, Instant::now()))
            }
            TokenProvider::Jwt(jwt) => jwt.sign(username, revision),
            TokenProvider::Nop => Err(AuthError::AuthFailed),
        }
    }

    /// The user of a token and the revision it stands at (simple tokens: `current_revision`).
    pub(crate) fn info(&self, token: &str, current_revision: u64) -> Option<(String, u64)> {
        match self {
            TokenProvider::Simple(tokens) => {
                simple_token::index_of(token)?;
                tokens
                    .user_of(token, Instant::now())
                    .map(|username| (username, current_revision))
            }
            TokenProvider::Jwt(jwt) => jwt.verify(token),
            TokenProvider::Nop => None,
        }
    }

    pub(crate) fn expire(&self, now: Instant) {
        if let TokenProvider::Simple(tokens) = self {
            tokens.expire(now);
        }
    }
}
