//! JWT tokens (etcd's jwt.go and the key handling of options.go): claims `username`,
//! `revision` and `exp`, signed with the configured method; only a public key given makes the
//! provider verify-only.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::signature::KeyPair;
use serde::{Deserialize, Serialize};

use crate::AuthError;

/// A key file as read from disk.
pub(crate) struct KeyFile<'a> {
    pub(crate) path: &'a Path,
    pub(crate) pem: &'a [u8],
}

impl KeyFile<'_> {
    fn error(&self, reason: impl ToString) -> AuthError {
        AuthError::KeyFile {
            path: self.path.to_path_buf(),
            reason: reason.to_string(),
        }
    }

    /// The DER of the file's private key, with its PEM tag.
    fn private_der(&self) -> Result<(String, Vec<u8>), AuthError> {
        let parsed = pem::parse(self.pem).map_err(|e| self.error(e))?;
        Ok((parsed.tag().to_owned(), parsed.into_contents()))
    }
}

/// The claims etcd signs. golang-jwt encodes a map, so its keys come out sorted; the field
/// order here gives the same JSON.
#[derive(Serialize)]
struct IssuedClaims<'a> {
    exp: u64,
    revision: u64,
    username: &'a str,
}

#[derive(Deserialize)]
struct ReadClaims {
    username: String,
    revision: u64,
}

pub(crate) struct Jwt {
    algorithm: Algorithm,
    /// None: verify-only (only a public key was given).
    signing: Option<EncodingKey>,
    verifying: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

/// golang-jwt's method names that etcd accepts, as jsonwebtoken's algorithms.
fn algorithm_of(method: &str) -> Result<Algorithm, AuthError> {
    Ok(match method {
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        // golang-jwt knows these but etcd cannot use them ("none") or we cannot (ES512: ring,
        // under jsonwebtoken, has no P-521 signing).
        "ES512" | "none" => {
            tracing::error!(method, "unsupported JWT sign-method");
            return Err(AuthError::InvalidSignMethod);
        }
        // etcd reports an unknown method as bad options (its option parser fails first).
        _ => return Err(AuthError::InvalidAuthOpts),
    })
}

impl Jwt {
    pub(crate) fn new(
        method: &str,
        public: Option<KeyFile<'_>>,
        private: Option<KeyFile<'_>>,
        ttl: Duration,
    ) -> Result<Self, AuthError> {
        let algorithm = algorithm_of(method)?;
        let (signing, verifying) = match algorithm {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                // HMAC uses the private key file's bytes as the secret.
                let secret = private.ok_or(AuthError::MissingKey)?;
                (
                    Some(EncodingKey::from_secret(secret.pem)),
                    DecodingKey::from_secret(secret.pem),
                )
            }
            _ => asymmetric_keys(algorithm, public.as_ref(), private.as_ref())?,
        };
        let mut validation = Validation::new(algorithm);
        // golang-jwt checks `exp` to the second, with no leeway.
        validation.leeway = 0;
        let jwt = Self {
            algorithm,
            signing,
            verifying,
            validation,
            ttl,
        };
        if jwt.signing.is_some() {
            // A private key whose public half is not the given public key signs tokens that
            // no member can verify: refuse it at start-up.
            let probe = jwt.sign("key-check", 0)?;
            if jwt.verify(&probe).is_none() {
                return Err(AuthError::KeyMismatch);
            }
        }
        Ok(jwt)
    }

    pub(crate) fn is_verify_only(&self) -> bool {
        self.signing.is_none()
    }

    /// A token for `username` at `revision`, expiring after the TTL.
    pub(crate) fn sign(&self, username: &str, revision: u64) -> Result<String, AuthError> {
        let key = self
            .signing
            .as_ref()
            .ok_or(AuthError::SigningWithVerifyOnlyKey)?;
        let exp = (SystemTime::now() + self.ttl)
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let claims = IssuedClaims {
            exp,
            revision,
            username,
        };
        jsonwebtoken::encode(&Header::new(self.algorithm), &claims, key).map_err(|e| {
            tracing::error!(error = %e, user = username, "failed to sign a JWT");
            AuthError::AuthFailed
        })
    }

    /// The user and revision of a token signed with our key and method and not expired.
    pub(crate) fn verify(&self, token: &str) -> Option<(String, u64)> {
        match jsonwebtoken::decode::<ReadClaims>(token, &self.verifying, &self.validation) {
            Ok(data) => Some((data.claims.username, data.claims.revision)),
            Err(e) => {
                tracing::warn!(error = %e, "failed to parse a JWT token");
                None
            }
        }
    }
}

/// The signing key (when a private key is given) and the verifying key: the public key file's,
/// or else the private key's own public half.
fn asymmetric_keys(
    algorithm: Algorithm,
    public: Option<&KeyFile<'_>>,
    private: Option<&KeyFile<'_>>,
) -> Result<(Option<EncodingKey>, DecodingKey), AuthError> {
    let signing = private
        .map(|file| private_keys(algorithm, file))
        .transpose()?;
    match (public, signing) {
        (Some(file), signing) => {
            let key = match algorithm {
                Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(file.pem),
                Algorithm::EdDSA => DecodingKey::from_ed_pem(file.pem),
                _ => DecodingKey::from_rsa_pem(file.pem),
            }
            .map_err(|e| file.error(e))?;
            Ok((signing.map(|(encoding, _)| encoding), key))
        }
        (None, Some((encoding, derived))) => Ok((Some(encoding), derived)),
        (None, None) => Err(AuthError::MissingKey),
    }
}

/// The signing key of a private key file and the verifying key of its public half.
fn private_keys(
    algorithm: Algorithm,
    file: &KeyFile<'_>,
) -> Result<(EncodingKey, DecodingKey), AuthError> {
    use ring::signature::{
        EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
        ECDSA_P384_SHA384_FIXED_SIGNING,
    };
    let (tag, der) = file.private_der()?;
    match algorithm {
        Algorithm::ES256 | Algorithm::ES384 => {
            if tag != "PRIVATE KEY" {
                return Err(file.error(format!(
                    "want a PKCS#8 \"PRIVATE KEY\" PEM block, found {tag:?} \
                     (convert with: openssl pkcs8 -topk8 -nocrypt)"
                )));
            }
            let curve = if algorithm == Algorithm::ES256 {
                &ECDSA_P256_SHA256_FIXED_SIGNING
            } else {
                &ECDSA_P384_SHA384_FIXED_SIGNING
            };
            let pair = EcdsaKeyPair::from_pkcs8(curve, &der, &ring::rand::SystemRandom::new())
                .map_err(|e| file.error(e))?;
            Ok((
                EncodingKey::from_ec_der(&der),
                DecodingKey::from_ec_der(pair.public_key().as_ref()),
            ))
        }
        Algorithm::EdDSA => {
            let pair =
                Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).map_err(|e| file.error(e))?;
            Ok((
                EncodingKey::from_ed_der(&der),
                DecodingKey::from_ed_der(pair.public_key().as_ref()),
            ))
        }
        _ => {
            let pair = match tag.as_str() {
                "RSA PRIVATE KEY" => RsaKeyPair::from_der(&der),
                "PRIVATE KEY" => RsaKeyPair::from_pkcs8(&der),
                other => {
                    return Err(file.error(format!("not an RSA private key PEM block: {other:?}")))
                }
            }
            .map_err(|e| file.error(e))?;
            let encoding = EncodingKey::from_rsa_pem(file.pem).map_err(|e| file.error(e))?;
            Ok((encoding, DecodingKey::from_rsa_der(pair.public().as_ref())))
        }
    }
}

#[cfg(test)]
mod tests;
