//! `--auth-token` parsing (etcd's `NewTokenProvider`/`decomposeOpts` in store.go and the JWT
//! options of options.go).

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use crate::jwt::{Jwt, KeyFile};
use crate::AuthError;

/// etcd's `--auth-token-ttl` default, used when the flag is 0.
const DEFAULT_SIMPLE_TTL: Duration = Duration::from_secs(300);
/// The JWT `ttl=` default.
const DEFAULT_JWT_TTL: Duration = Duration::from_secs(5 * 60);

const KNOWN_JWT_OPTIONS: [&str; 4] = ["sign-method", "pub-key", "priv-key", "ttl"];

/// `--auth-token` and `--auth-token-ttl`.
pub enum TokenOptions {
    Simple {
        ttl: Duration,
    },
    Jwt(JwtOptions),
    /// `--auth-token ""`: etcd's no-op provider; Authenticate always fails and no token is
    /// accepted.
    None,
}

/// The `jwt,...` form of `--auth-token`, its keys already read and checked.
pub struct JwtOptions {
    pub(crate) jwt: Box<Jwt>,
}

impl JwtOptions {
    /// True when only a public key was given: tokens are checked but none can be issued.
    pub fn is_verify_only(&self) -> bool {
        self.jwt.is_verify_only()
    }
}

impl std::fmt::Debug for TokenOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenOptions::Simple { ttl } => f.debug_struct("Simple").field("ttl", ttl).finish(),
            TokenOptions::Jwt(o) => f
                .debug_struct("Jwt")
                .field("verify_only", &o.is_verify_only())
                .finish_non_exhaustive(),
            TokenOptions::None => f.write_str("None"),
        }
    }
}

impl TokenOptions {
    /// Parses `--auth-token` ("simple", "jwt,pub-key=F,priv-key=F,sign-method=M[,ttl=D]", "") and
    /// reads the key files; `simple_ttl` is `--auth-token-ttl` (0 means 300 s).
    pub fn parse(flag: &str, simple_ttl: Duration) -> Result<TokenOptions, AuthError> {
        let (kind, options) = decompose(flag)?;
        match kind {
            "simple" => {
                tracing::warn!("simple token is not cryptographically signed");
                let ttl = if simple_ttl.is_zero() {
                    DEFAULT_SIMPLE_TTL
                } else {
                    simple_ttl
                };
                Ok(TokenOptions::Simple { ttl })
            }
            "jwt" => {
                parse_jwt(&options).map(|jwt| TokenOptions::Jwt(JwtOptions { jwt: Box::new(jwt) }))
            }
            "" => Ok(TokenOptions::None),
            other => {
                tracing::warn!(kind = other, "unknown token type");
                Err(AuthError::InvalidAuthOpts)
            }
        }
    }
}

/// `type,k=v,...`: every option needs exactly one `=`, and none may repeat.
fn decompose(flag: &str) -> Result<(&str, HashMap<&str, &str>), AuthError> {
    let mut parts = flag.split(',');
    let kind = parts.next().unwrap_or_default();
    let mut options = HashMap::new();
    for part in parts {
        let mut pair = part.split('=');
        let (Some(key), Some(value), None) = (pair.next(), pair.next(), pair.next()) else {
            tracing::error!(option = flag, "invalid token option");
            return Err(AuthError::InvalidAuthOpts);
        };
        if options.insert(key, value).is_some() {
            tracing::error!(option = flag, duplicate = key, "invalid token option");
            return Err(AuthError::InvalidAuthOpts);
        }
    }
    Ok((kind, options))
}

fn parse_jwt(options: &HashMap<&str, &str>) -> Result<Jwt, AuthError> {
    let non_empty = |name: &str| options.get(name).copied().filter(|v| !v.is_empty());
    let ttl = match non_empty("ttl") {
        None => DEFAULT_JWT_TTL,
        Some(text) => pkg::flags::parse_go_duration(text).map_err(|e| {
            tracing::error!(error = %e, "problem loading JWT options");
            AuthError::InvalidAuthOpts
        })?,
    };
    let public = non_empty("pub-key").map(read_key_file).transpose()?;
    let private = non_empty("priv-key").map(read_key_file).transpose()?;
    let unknown: Vec<&str> = options
        .keys()
        .copied()
        .filter(|k| !KNOWN_JWT_OPTIONS.contains(k))
        .collect();
    if !unknown.is_empty() {
        tracing::warn!(keys = ?unknown, "unknown JWT options");
    }
    let method = options.get("sign-method").copied().unwrap_or_default();
    Jwt::new(
        method,
        public.as_ref().map(|(path, pem)| KeyFile { path, pem }),
        private.as_ref().map(|(path, pem)| KeyFile { path, pem }),
        ttl,
    )
}

fn read_key_file(path: &str) -> Result<(&Path, Vec<u8>), AuthError> {
    let path = Path::new(path);
    std::fs::read(path)
        .map(|bytes| (path, bytes))
        .map_err(|e| AuthError::KeyFile {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
}
