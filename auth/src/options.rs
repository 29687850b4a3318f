use std::time::Duration;

use crate::AuthError;

/// `--auth-token` and `--auth-token-ttl`.
pub enum TokenOptions {
    Simple { ttl: Duration },
    Jwt(JwtOptions),
    None,
}

/// The parsed `jwt,...` form of `--auth-token`, key files already read.
pub struct JwtOptions {}

impl TokenOptions {
    /// Parses `--auth-token` ("simple", "jwt,pub-key=F,priv-key=F,sign-method=M[,ttl=D]", "") and
    /// reads the key files; `simple_ttl` is `--auth-token-ttl` (<= 0 s means 300 s).
    pub fn parse(flag: &str, simple_ttl: Duration) -> Result<TokenOptions, AuthError> {
        let _ = (flag, simple_ttl);
        todo!()
    }
}
