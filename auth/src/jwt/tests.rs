//! JWT providers built from key files generated at test time (rcgen for ECDSA/Ed25519,
//! `openssl` for RSA, which rcgen cannot generate with ring).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use backend::{Backend, BackendConfig, Table};
use base64::Engine as _;
use jsonwebtoken::{EncodingKey, Header};

use super::*;
use crate::schema::{AUTH_ROLES_TABLE, AUTH_TABLE, AUTH_USERS_TABLE};
use crate::{AuthInfo, AuthStore, TokenOptions};

const TTL: Duration = Duration::from_secs(300);

struct Keys {
    private: PathBuf,
    public: PathBuf,
}

fn write(dir: &Path, name: &str, contents: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

fn rcgen_keys(dir: &Path, name: &str, alg: &'static rcgen::SignatureAlgorithm) -> Keys {
    let pair = rcgen::KeyPair::generate_for(alg).unwrap();
    Keys {
        private: write(dir, &format!("{name}.key"), pair.serialize_pem().as_bytes()),
        public: write(
            dir,
            &format!("{name}.pub"),
            pair.public_key_pem().as_bytes(),
        ),
    }
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A PKCS#8 RSA key, its PKCS#1 ("RSA PRIVATE KEY") form and its public key.
fn rsa_keys(dir: &Path, name: &str) -> (Keys, PathBuf) {
    let private = dir.join(format!("{name}.key"));
    let pkcs1 = dir.join(format!("{name}.pkcs1.key"));
    let public = dir.join(format!("{name}.pub"));
    let p = |p: &PathBuf| p.to_str().unwrap().to_owned();
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        &p(&private),
    ]);
    openssl(&[
        "rsa",
        "-in",
        &p(&private),
        "-traditional",
        "-out",
        &p(&pkcs1),
    ]);
    openssl(&["rsa", "-in", &p(&private), "-pubout", "-out", &p(&public)]);
    (Keys { private, public }, pkcs1)
}

fn file(path: &Path) -> (PathBuf, Vec<u8>) {
    (path.to_path_buf(), std::fs::read(path).unwrap())
}

fn jwt(method: &str, public: Option<&Path>, private: Option<&Path>) -> Result<Jwt, AuthError> {
    let public = public.map(file);
    let private = private.map(file);
    Jwt::new(
        method,
        public.as_ref().map(|(path, pem)| KeyFile { path, pem }),
        private.as_ref().map(|(path, pem)| KeyFile { path, pem }),
        TTL,
    )
}

fn flag(method: &str, keys: &Keys) -> String {
    format!(
        "jwt,pub-key={},priv-key={},sign-method={method}",
        keys.public.display(),
        keys.private.display()
    )
}

struct Fixture {
    _dir: tempfile::TempDir,
    rsa: Keys,
    rsa_pkcs1: PathBuf,
    other_rsa: Keys,
    p256: Keys,
    other_p256: Keys,
    p384: Keys,
    ed: Keys,
    other_ed: Keys,
    secret: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (rsa, rsa_pkcs1) = rsa_keys(dir.path(), "rsa");
    let (other_rsa, _) = rsa_keys(dir.path(), "other-rsa");
    Fixture {
        rsa,
        rsa_pkcs1,
        other_rsa,
        p256: rcgen_keys(dir.path(), "p256", &rcgen::PKCS_ECDSA_P256_SHA256),
        other_p256: rcgen_keys(dir.path(), "other-p256", &rcgen::PKCS_ECDSA_P256_SHA256),
        p384: rcgen_keys(dir.path(), "p384", &rcgen::PKCS_ECDSA_P384_SHA384),
        ed: rcgen_keys(dir.path(), "ed", &rcgen::PKCS_ED25519),
        other_ed: rcgen_keys(dir.path(), "other-ed", &rcgen::PKCS_ED25519),
        secret: write(dir.path(), "hmac.key", b"a shared secret"),
        _dir: dir,
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn payload(token: &str) -> serde_json::Value {
    let part = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[test]
fn every_method_signs_and_verifies_with_and_without_a_public_key_file() {
    let f = fixture();
    let cases: Vec<(&str, &Keys)> = vec![
        ("RS256", &f.rsa),
        ("RS384", &f.rsa),
        ("RS512", &f.rsa),
        ("PS256", &f.rsa),
        ("PS384", &f.rsa),
        ("PS512", &f.rsa),
        ("ES256", &f.p256),
        ("ES384", &f.p384),
        ("EdDSA", &f.ed),
    ];
    for (method, keys) in cases {
        for public in [Some(keys.public.as_path()), None] {
            let j = jwt(method, public, Some(&keys.private))
                .unwrap_or_else(|e| panic!("{method}: {e}"));
            assert!(!j.is_verify_only());
            let token = j.sign("alice", 7).unwrap();
            assert_eq!(j.verify(&token), Some(("alice".to_owned(), 7)), "{method}");
        }
    }
    for method in ["HS256", "HS384", "HS512"] {
        let j = jwt(method, None, Some(&f.secret)).unwrap();
        let token = j.sign("bob", 3).unwrap();
        assert_eq!(j.verify(&token), Some(("bob".to_owned(), 3)), "{method}");
    }
    // A PKCS#1 RSA private key works too.
    let j = jwt("RS256", Some(&f.rsa.public), Some(&f.rsa_pkcs1)).unwrap();
    assert!(j.verify(&j.sign("c", 1).unwrap()).is_some());
}

#[test]
fn claims_are_etcds() {
    let f = fixture();
    let j = jwt("ES256", None, Some(&f.p256.private)).unwrap();
    let before = now_secs();
    let claims = payload(&j.sign("alice", 12).unwrap());
    let object = claims.as_object().unwrap();
    assert_eq!(object.len(), 3, "{claims}");
    assert_eq!(claims["username"], "alice");
    assert_eq!(claims["revision"], 12);
    let exp = claims["exp"].as_u64().unwrap();
    assert!(
        exp >= before + TTL.as_secs() && exp <= now_secs() + TTL.as_secs(),
        "{exp}"
    );
}

#[test]
fn forged_other_key_other_alg_and_expired_tokens_are_refused() {
    let f = fixture();
    let j = jwt("RS256", Some(&f.rsa.public), Some(&f.rsa.private)).unwrap();
    let token = j.sign("alice", 1).unwrap();
    assert!(j.verify(&token).is_some());

    // Signature bytes changed.
    let mut forged = token.clone().into_bytes();
    let last = forged.len() - 5;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    assert_eq!(j.verify(std::str::from_utf8(&forged).unwrap()), None);
    // Payload swapped for another user's, signature kept.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(
        r#"{{"exp":{},"revision":1,"username":"root"}}"#,
        now_secs() + 100
    ));
    assert_eq!(j.verify(&parts.join(".")), None);
    // Another key of the same method.
    let other = jwt("RS256", None, Some(&f.other_rsa.private)).unwrap();
    assert_eq!(j.verify(&other.sign("alice", 1).unwrap()), None);
    // Same key, another method: the header's alg must match.
    let rs384 = jwt("RS384", None, Some(&f.rsa.private)).unwrap();
    assert_eq!(j.verify(&rs384.sign("alice", 1).unwrap()), None);
    let hs = jwt("HS256", None, Some(&f.secret)).unwrap();
    assert_eq!(j.verify(&hs.sign("alice", 1).unwrap()), None);

    // Expired, signed with the right key; the same token unexpired passes.
    let key = EncodingKey::from_rsa_pem(&std::fs::read(&f.rsa.private).unwrap()).unwrap();
    let signed = |exp: u64| {
        let claims = IssuedClaims {
            exp,
            revision: 1,
            username: "alice",
        };
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &key).unwrap()
    };
    assert_eq!(j.verify(&signed(now_secs() - 2)), None);
    assert_eq!(
        j.verify(&signed(now_secs() + 60)),
        Some(("alice".to_owned(), 1))
    );
}

#[test]
fn public_key_only_is_verify_only() {
    let f = fixture();
    for (method, keys) in [("RS256", &f.rsa), ("ES256", &f.p256), ("EdDSA", &f.ed)] {
        let full = jwt(method, None, Some(&keys.private)).unwrap();
        let verify_only = jwt(method, Some(&keys.public), None).unwrap();
        assert!(verify_only.is_verify_only());
        assert_eq!(
            verify_only.sign("a", 1),
            Err(AuthError::SigningWithVerifyOnlyKey)
        );
        assert_eq!(
            verify_only.verify(&full.sign("a", 4).unwrap()),
            Some(("a".to_owned(), 4))
        );
    }
}

#[test]
fn start_up_errors() {
    let f = fixture();
    for (method, private, public) in [
        ("RS256", &f.rsa.private, &f.other_rsa.public),
        ("ES256", &f.p256.private, &f.other_p256.public),
        ("EdDSA", &f.ed.private, &f.other_ed.public),
    ] {
        assert_eq!(
            jwt(method, Some(public), Some(private)).err(),
            Some(AuthError::KeyMismatch),
            "{method}"
        );
    }
    assert_eq!(jwt("RS256", None, None).err(), Some(AuthError::MissingKey));
    assert_eq!(
        jwt("HS256", Some(&f.secret), None).err(),
        Some(AuthError::MissingKey)
    );
    assert_eq!(
        jwt("ES512", None, Some(&f.p256.private)).err(),
        Some(AuthError::InvalidSignMethod)
    );
    assert_eq!(
        jwt("none", None, Some(&f.secret)).err(),
        Some(AuthError::InvalidSignMethod)
    );
    assert_eq!(
        jwt("XX256", None, Some(&f.secret)).err(),
        Some(AuthError::InvalidAuthOpts)
    );
    assert_eq!(
        jwt("", None, Some(&f.secret)).err(),
        Some(AuthError::InvalidAuthOpts)
    );
    // Keys of the wrong kind or not PEM name the file.
    for (method, private) in [
        ("RS256", &f.p256.private),
        ("ES256", &f.rsa.private),
        ("ES384", &f.p256.private),
        ("RS256", &f.secret),
    ] {
        match jwt(method, None, Some(private)) {
            Err(AuthError::KeyFile { path, .. }) => assert_eq!(&path, private),
            other => panic!("{method} with {}: {:?}", private.display(), other.err()),
        }
    }
    match jwt("RS256", Some(&f.secret), None) {
        Err(AuthError::KeyFile { path, .. }) => assert_eq!(path, f.secret),
        other => panic!("{:?}", other.err()),
    }
    // SEC1 EC keys are refused with a hint.
    let sec1 = f._dir.path().join("sec1.key");
    openssl(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        sec1.to_str().unwrap(),
    ]);
    match jwt("ES256", None, Some(&sec1)) {
        Err(AuthError::KeyFile { reason, .. }) => assert!(reason.contains("PKCS#8"), "{reason}"),
        other => panic!("{:?}", other.err()),
    }
}

#[test]
fn flag_ttl_and_files() {
    let f = fixture();
    let parsed = TokenOptions::parse(&format!("{},ttl=10m", flag("ES256", &f.p256)), TTL).unwrap();
    let TokenOptions::Jwt(options) = parsed else {
        panic!("not jwt")
    };
    let exp = payload(&options.jwt.sign("a", 1).unwrap())["exp"]
        .as_u64()
        .unwrap();
    assert!(exp >= now_secs() + 590 && exp <= now_secs() + 600, "{exp}");
    assert_eq!(
        TokenOptions::parse(&format!("{},ttl=ten", flag("ES256", &f.p256)), TTL).err(),
        Some(AuthError::InvalidAuthOpts)
    );
    // Unknown options are only warned about.
    assert!(TokenOptions::parse(&format!("{},color=blue", flag("ES256", &f.p256)), TTL).is_ok());
    let verify_only = TokenOptions::parse(
        &format!("jwt,pub-key={},sign-method=RS256", f.rsa.public.display()),
        TTL,
    )
    .unwrap();
    assert!(matches!(verify_only, TokenOptions::Jwt(ref o) if o.is_verify_only()));
}

static TABLES: &[Table] = &[AUTH_TABLE, AUTH_USERS_TABLE, AUTH_ROLES_TABLE];

#[test]
fn jwt_in_the_store_carries_its_revision_and_survives_user_delete() {
    let f = fixture();
    let be = Backend::in_memory(BackendConfig::default(), TABLES).unwrap();
    let s = AuthStore::new(TokenOptions::parse(&flag("EdDSA", &f.ed), TTL).unwrap(), 4);
    let mut tx = be.batch_tx();
    for name in ["root", "alice"] {
        s.user_add(
            &mut tx,
            api::etcdserverpb::AuthUserAddRequest {
                name: name.into(),
                password: "pw".into(),
                ..Default::default()
            },
        )
        .unwrap();
    }
    s.user_grant_role(&mut tx, "root", "root").unwrap();
    s.auth_enable(&mut tx).unwrap();
    drop(tx);
    assert_eq!(s.gen_simple_token_prefix(), "");
    assert_eq!(AuthStore::simple_token_index("a.b.c"), None);
    let issued_at = s.revision();
    let token = s.assign_token("alice", "", 99).unwrap();
    let alice = s.auth_info_from_token(&token).unwrap();
    assert_eq!(
        alice,
        AuthInfo {
            username: "alice".into(),
            revision: issued_at
        }
    );
    s.role_add(&mut be.batch_tx(), "bump").unwrap();
    let stale = s.auth_info_from_token(&token).unwrap();
    assert_eq!(stale.revision, issued_at);
    assert_eq!(
        s.is_put_permitted(&stale, b"k"),
        Err(AuthError::AuthOldRevision)
    );
    // No revocation on delete: the token still parses, only the revision retires it.
    s.user_delete(&mut be.batch_tx(), "alice").unwrap();
    assert_eq!(s.auth_info_from_token(&token).unwrap().username, "alice");
    assert_eq!(
        s.auth_info_from_token("not.a.jwt"),
        Err(AuthError::InvalidAuthToken)
    );

    let verify_only = AuthStore::new(
        TokenOptions::parse(
            &format!("jwt,pub-key={},sign-method=EdDSA", f.ed.public.display()),
            TTL,
        )
        .unwrap(),
        4,
    );
    verify_only.recover(&be).unwrap();
    assert_eq!(
        verify_only.assign_token("root", "", 1),
        Err(AuthError::SigningWithVerifyOnlyKey)
    );
    assert_eq!(
        verify_only.auth_info_from_token(&token).unwrap().username,
        "alice"
    );
}
