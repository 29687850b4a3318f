//! Behaviour of the whole store against etcd's rules, through its public surface.

use std::time::{Duration, Instant};

use api::authpb::{self, permission::Type as PermType};
use api::etcdserverpb::{AuthUserAddRequest, AuthUserChangePasswordRequest};
use backend::{Backend, BackendConfig, Table};
use base64::Engine as _;
use prost::Message;

use crate::schema::{AUTH_ROLES_TABLE, AUTH_TABLE, AUTH_USERS_TABLE};
use crate::{AuthError, AuthInfo, AuthStore, TokenOptions};

static TABLES: &[Table] = &[AUTH_TABLE, AUTH_USERS_TABLE, AUTH_ROLES_TABLE];
const TTL: Duration = Duration::from_secs(300);

fn backend() -> Backend {
    Backend::in_memory(BackendConfig::default(), TABLES).unwrap()
}

fn store() -> AuthStore {
    AuthStore::new(TokenOptions::Simple { ttl: TTL }, 4)
}

fn add_user(store: &AuthStore, be: &Backend, name: &str, password: &str) -> Result<(), AuthError> {
    store.user_add(
        &mut be.batch_tx(),
        AuthUserAddRequest {
            name: name.into(),
            password: password.into(),
            ..Default::default()
        },
    )
}

fn perm(kind: PermType, key: &[u8], range_end: &[u8]) -> Option<authpb::Permission> {
    Some(authpb::Permission {
        perm_type: kind as i32,
        key: key.to_vec(),
        range_end: range_end.to_vec(),
    })
}

/// root (with role root) exists and auth is enabled.
fn enabled_store(be: &Backend) -> AuthStore {
    let s = store();
    add_user(&s, be, "root", "rootpw").unwrap();
    s.user_grant_role(&mut be.batch_tx(), "root", "root")
        .unwrap();
    s.auth_enable(&mut be.batch_tx()).unwrap();
    s
}

fn info(s: &AuthStore, user: &str) -> AuthInfo {
    AuthInfo {
        username: user.into(),
        revision: s.revision(),
    }
}

#[test]
fn revision_starts_at_one_and_moves_only_on_successful_changes() {
    let be = backend();
    let s = store();
    assert_eq!(s.revision(), 1);
    add_user(&s, &be, "alice", "pw").unwrap();
    assert_eq!(s.revision(), 2);
    assert_eq!(
        add_user(&s, &be, "alice", "pw"),
        Err(AuthError::UserAlreadyExist)
    );
    assert_eq!(add_user(&s, &be, "", "pw"), Err(AuthError::UserEmpty));
    assert_eq!(s.revision(), 2);
    s.role_add(&mut be.batch_tx(), "r").unwrap();
    assert_eq!(s.revision(), 3);
    s.user_grant_role(&mut be.batch_tx(), "alice", "r").unwrap();
    assert_eq!(s.revision(), 4);
    // Granting a held role is a no-op.
    s.user_grant_role(&mut be.batch_tx(), "alice", "r").unwrap();
    assert_eq!(s.revision(), 4);
    s.role_grant_permission(&mut be.batch_tx(), "r", perm(PermType::Read, b"k", b""))
        .unwrap();
    assert_eq!(s.revision(), 5);
    s.role_revoke_permission(&mut be.batch_tx(), "r", b"k", b"")
        .unwrap();
    assert_eq!(s.revision(), 6);
    s.user_revoke_role(&mut be.batch_tx(), "alice", "r")
        .unwrap();
    assert_eq!(s.revision(), 7);
    s.user_change_password(
        &mut be.batch_tx(),
        AuthUserChangePasswordRequest {
            name: "alice".into(),
            password: "new".into(),
            hashed_password: String::new(),
        },
    )
    .unwrap();
    assert_eq!(s.revision(), 8);
    s.role_delete(&mut be.batch_tx(), "r").unwrap();
    assert_eq!(s.revision(), 9);
    s.user_delete(&mut be.batch_tx(), "alice").unwrap();
    assert_eq!(s.revision(), 10);
    // Failures do not bump.
    assert_eq!(
        s.user_delete(&mut be.batch_tx(), "alice"),
        Err(AuthError::UserNotFound)
    );
    assert_eq!(
        s.role_delete(&mut be.batch_tx(), "r"),
        Err(AuthError::RoleNotFound)
    );
    assert_eq!(s.revision(), 10);
}

#[test]
fn enable_needs_root_with_root_role_and_does_not_bump_but_disable_does() {
    let be = backend();
    let s = store();
    assert_eq!(
        s.auth_enable(&mut be.batch_tx()),
        Err(AuthError::RootUserNotExist)
    );
    add_user(&s, &be, "root", "pw").unwrap();
    assert_eq!(
        s.auth_enable(&mut be.batch_tx()),
        Err(AuthError::RootRoleNotExist)
    );
    // Role root need not exist to be granted.
    s.user_grant_role(&mut be.batch_tx(), "root", "root")
        .unwrap();
    assert_eq!(s.role_list(), Vec::<String>::new());
    let before = s.revision();
    s.auth_enable(&mut be.batch_tx()).unwrap();
    assert!(s.is_enabled());
    assert_eq!(s.revision(), before);
    s.auth_enable(&mut be.batch_tx()).unwrap();
    assert_eq!(s.revision(), before);
    s.auth_disable(&mut be.batch_tx());
    assert!(!s.is_enabled());
    assert_eq!(s.revision(), before + 1);
    s.auth_disable(&mut be.batch_tx());
    assert_eq!(s.revision(), before + 1);
}

#[test]
fn root_is_protected_only_while_enabled() {
    let be = backend();
    let s = enabled_store(&be);
    s.role_add(&mut be.batch_tx(), "root").unwrap();
    let mut tx = be.batch_tx();
    assert_eq!(
        s.user_delete(&mut tx, "root"),
        Err(AuthError::InvalidAuthMgmt)
    );
    assert_eq!(
        s.user_revoke_role(&mut tx, "root", "root"),
        Err(AuthError::InvalidAuthMgmt)
    );
    assert_eq!(
        s.role_delete(&mut tx, "root"),
        Err(AuthError::InvalidAuthMgmt)
    );
    s.auth_disable(&mut tx);
    s.user_revoke_role(&mut tx, "root", "root").unwrap();
    s.role_delete(&mut tx, "root").unwrap();
    s.user_delete(&mut tx, "root").unwrap();
    assert!(s.user_list().is_empty());
}

#[test]
fn user_roles_stay_sorted_and_grant_revoke_errors() {
    let be = backend();
    let s = store();
    let mut tx = be.batch_tx();
    for role in ["b", "c", "a"] {
        s.role_add(&mut tx, role).unwrap();
    }
    drop(tx);
    add_user(&s, &be, "u", "pw").unwrap();
    let mut tx = be.batch_tx();
    for role in ["c", "a", "b"] {
        s.user_grant_role(&mut tx, "u", role).unwrap();
    }
    assert_eq!(s.user_get("u").unwrap(), ["a", "b", "c"]);
    assert_eq!(
        s.user_grant_role(&mut tx, "nobody", "a"),
        Err(AuthError::UserNotFound)
    );
    assert_eq!(
        s.user_grant_role(&mut tx, "u", "zzz"),
        Err(AuthError::RoleNotFound)
    );
    assert_eq!(
        s.user_revoke_role(&mut tx, "u", "zzz"),
        Err(AuthError::RoleNotGranted)
    );
    assert_eq!(
        s.user_revoke_role(&mut tx, "nobody", "a"),
        Err(AuthError::UserNotFound)
    );
    assert_eq!(s.user_get("nobody"), Err(AuthError::UserNotFound));
    assert!(s.has_role("u", "b"));
    assert!(!s.has_role("u", "zzz"));
    assert!(!s.has_role("nobody", "b"));
    s.user_revoke_role(&mut tx, "u", "b").unwrap();
    assert_eq!(s.user_get("u").unwrap(), ["a", "c"]);
}

#[test]
fn role_add_get_list_errors() {
    let be = backend();
    let s = store();
    let mut tx = be.batch_tx();
    assert_eq!(s.role_add(&mut tx, ""), Err(AuthError::RoleEmpty));
    s.role_add(&mut tx, "z").unwrap();
    s.role_add(&mut tx, "m").unwrap();
    assert_eq!(s.role_add(&mut tx, "z"), Err(AuthError::RoleAlreadyExist));
    assert_eq!(s.role_list(), ["m", "z"]);
    assert_eq!(s.role_get("m").unwrap(), vec![]);
    assert_eq!(s.role_get("x"), Err(AuthError::RoleNotFound));
}

#[test]
fn permissions_sorted_replaced_on_same_pair_revoked_by_exact_pair() {
    let be = backend();
    let s = store();
    let mut tx = be.batch_tx();
    s.role_add(&mut tx, "r").unwrap();
    s.role_grant_permission(&mut tx, "r", perm(PermType::Read, b"m", b""))
        .unwrap();
    s.role_grant_permission(&mut tx, "r", perm(PermType::Write, b"a", b"c"))
        .unwrap();
    s.role_grant_permission(&mut tx, "r", perm(PermType::Read, b"a", b"b"))
        .unwrap();
    s.role_grant_permission(&mut tx, "r", perm(PermType::Readwrite, b"m", b""))
        .unwrap();
    let got = s.role_get("r").unwrap();
    let keys: Vec<(&[u8], &[u8], PermType)> = got
        .iter()
        .map(|p| (&p.key[..], &p.range_end[..], p.perm_type()))
        .collect();
    assert_eq!(keys.len(), 3, "{keys:?}");
    assert_eq!(keys[0].0, b"a");
    assert_eq!(keys[1].0, b"a");
    assert_eq!(keys[2], (&b"m"[..], &b""[..], PermType::Readwrite));
    assert_eq!(
        s.role_revoke_permission(&mut tx, "r", b"m", b"n"),
        Err(AuthError::PermissionNotGranted)
    );
    assert_eq!(
        s.role_revoke_permission(&mut tx, "x", b"m", b""),
        Err(AuthError::RoleNotFound)
    );
    s.role_revoke_permission(&mut tx, "r", b"m", b"").unwrap();
    assert_eq!(s.role_get("r").unwrap().len(), 2);
}

#[test]
fn grant_permission_validation_of_etcd_3_5() {
    let be = backend();
    let s = store();
    let mut tx = be.batch_tx();
    s.role_add(&mut tx, "r").unwrap();
    let rev = s.revision();
    assert_eq!(
        s.role_grant_permission(&mut tx, "r", None),
        Err(AuthError::PermissionNotGiven)
    );
    assert_eq!(
        s.role_grant_permission(&mut tx, "r", perm(PermType::Read, b"", b"")),
        Err(AuthError::InvalidAuthMgmt)
    );
    assert_eq!(
        s.role_grant_permission(&mut tx, "r", perm(PermType::Read, b"b", b"a")),
        Err(AuthError::InvalidAuthMgmt)
    );
    assert_eq!(
        s.role_grant_permission(&mut tx, "r", perm(PermType::Read, b"b", b"b")),
        Err(AuthError::InvalidAuthMgmt)
    );
    assert_eq!(
        s.role_grant_permission(&mut tx, "nope", perm(PermType::Read, b"a", b"")),
        Err(AuthError::RoleNotFound)
    );
    assert_eq!(s.revision(), rev);
    s.role_grant_permission(&mut tx, "r", perm(PermType::Read, b"b", b"\x00"))
        .unwrap();
    s.role_grant_permission(&mut tx, "r", perm(PermType::Read, b"\x00", b"\x00"))
        .unwrap();
}

#[test]
fn role_delete_strips_the_role_from_every_user() {
    let be = backend();
    let s = store();
    add_user(&s, &be, "u1", "pw").unwrap();
    add_user(&s, &be, "u2", "pw").unwrap();
    let mut tx = be.batch_tx();
    s.role_add(&mut tx, "r").unwrap();
    s.role_add(&mut tx, "keep").unwrap();
    for u in ["u1", "u2"] {
        s.user_grant_role(&mut tx, u, "r").unwrap();
    }
    s.user_grant_role(&mut tx, "u2", "keep").unwrap();
    s.role_delete(&mut tx, "r").unwrap();
    drop(tx);
    assert!(s.user_get("u1").unwrap().is_empty());
    assert_eq!(s.user_get("u2").unwrap(), ["keep"]);
    let reloaded = store();
    reloaded.recover(&be).unwrap();
    assert_eq!(reloaded.user_get("u2").unwrap(), ["keep"]);
    assert!(reloaded.user_get("u1").unwrap().is_empty());
}

/// alice: READ on [a, c) via one role and [c, e) via another, WRITE on key "w", READWRITE on
/// prefix "p/", READ from "z" on.
fn permission_fixture() -> (Backend, AuthStore) {
    let be = backend();
    let s = enabled_store(&be);
    add_user(&s, &be, "alice", "pw").unwrap();
    let mut tx = be.batch_tx();
    for (role, p) in [
        ("r1", perm(PermType::Read, b"a", b"c")),
        ("r2", perm(PermType::Read, b"c", b"e")),
        ("w", perm(PermType::Write, b"w", b"")),
        ("p", perm(PermType::Readwrite, b"p/", b"p0")),
        ("z", perm(PermType::Read, b"z", b"\x00")),
    ] {
        s.role_add(&mut tx, role).unwrap();
        s.role_grant_permission(&mut tx, role, p).unwrap();
        s.user_grant_role(&mut tx, "alice", role).unwrap();
    }
    drop(tx);
    (be, s)
}

#[test]
fn key_checks_follow_the_union_and_coverage_rules() {
    let (_be, s) = permission_fixture();
    let alice = info(&s, "alice");
    assert_eq!(s.is_range_permitted(&alice, b"b", b""), Ok(()));
    assert_eq!(
        s.is_range_permitted(&alice, b"a", b"e"),
        Ok(()),
        "two roles join"
    );
    assert_eq!(
        s.is_range_permitted(&alice, b"a", b"f"),
        Err(AuthError::PermissionDenied)
    );
    assert_eq!(
        s.is_range_permitted(&alice, b"e", b""),
        Err(AuthError::PermissionDenied)
    );
    assert_eq!(
        s.is_put_permitted(&alice, b"b"),
        Err(AuthError::PermissionDenied)
    );
    assert_eq!(s.is_put_permitted(&alice, b"w"), Ok(()));
    assert_eq!(
        s.is_range_permitted(&alice, b"w", b""),
        Err(AuthError::PermissionDenied)
    );
    assert_eq!(
        s.is_put_permitted(&alice, b"w0"),
        Err(AuthError::PermissionDenied)
    );
    assert_eq!(s.is_put_permitted(&alice, b"p/x"), Ok(()));
    assert_eq!(s.is_range_permitted(&alice, b"p/", b"p0"), Ok(()));
    assert_eq!(s.is_delete_range_permitted(&alice, b"p/", b"p0"), Ok(()));
    assert_eq!(
        s.is_delete_range_permitted(&alice, b"p/", b"p1"),
        Err(AuthError::PermissionDenied)
    );
    assert_eq!(s.is_range_permitted(&alice, b"z", b"\x00"), Ok(()));
    assert_eq!(s.is_range_permitted(&alice, b"zz", b"\x00"), Ok(()));
    assert_eq!(
        s.is_range_permitted(&alice, b"y", b"\x00"),
        Err(AuthError::PermissionDenied)
    );
    assert_eq!(
        s.is_range_permitted(&alice, b"\x00", b"\x00"),
        Err(AuthError::PermissionDenied)
    );
    // root bypasses key checks.
    let root = info(&s, "root");
    assert_eq!(s.is_range_permitted(&root, b"\x00", b"\x00"), Ok(()));
    assert_eq!(s.is_put_permitted(&root, b"anything"), Ok(()));
    // Unknown user.
    assert_eq!(
        s.is_put_permitted(&info(&s, "mallory"), b"w"),
        Err(AuthError::PermissionDenied)
    );
}

#[test]
fn checks_see_changes_at_once() {
    let (be, s) = permission_fixture();
    s.role_revoke_permission(&mut be.batch_tx(), "w", b"w", b"")
        .unwrap();
    assert_eq!(
        s.is_put_permitted(&info(&s, "alice"), b"w"),
        Err(AuthError::PermissionDenied)
    );
    s.role_delete(&mut be.batch_tx(), "r2").unwrap();
    assert_eq!(
        s.is_range_permitted(&info(&s, "alice"), b"a", b"e"),
        Err(AuthError::PermissionDenied)
    );
    assert_eq!(s.is_range_permitted(&info(&s, "alice"), b"a", b"c"), Ok(()));
    s.user_grant_role(&mut be.batch_tx(), "alice", "root")
        .unwrap();
    assert_eq!(s.is_put_permitted(&info(&s, "alice"), b"anything"), Ok(()));
}

#[test]
fn identity_and_revision_rules_of_checks() {
    let (be, s) = permission_fixture();
    let current = s.revision();
    let no_user = AuthInfo::default();
    assert_eq!(
        s.is_put_permitted(&no_user, b"w"),
        Err(AuthError::UserEmpty)
    );
    let zero_rev = AuthInfo {
        username: "alice".into(),
        revision: 0,
    };
    assert_eq!(
        s.is_put_permitted(&zero_rev, b"w"),
        Err(AuthError::UserEmpty)
    );
    let old = AuthInfo {
        username: "alice".into(),
        revision: current - 1,
    };
    assert_eq!(
        s.is_put_permitted(&old, b"w"),
        Err(AuthError::AuthOldRevision)
    );
    let newer = AuthInfo {
        username: "alice".into(),
        revision: current + 1,
    };
    assert_eq!(s.is_put_permitted(&newer, b"w"), Ok(()));
    // Admin.
    assert_eq!(s.is_admin_permitted(&no_user), Err(AuthError::UserEmpty));
    assert_eq!(
        s.is_admin_permitted(&info(&s, "mallory")),
        Err(AuthError::UserNotFound)
    );
    assert_eq!(
        s.is_admin_permitted(&info(&s, "alice")),
        Err(AuthError::PermissionDenied)
    );
    assert_eq!(s.is_admin_permitted(&info(&s, "root")), Ok(()));
    // Auth off: everything goes.
    s.auth_disable(&mut be.batch_tx());
    assert_eq!(s.is_put_permitted(&no_user, b"anything"), Ok(()));
    assert_eq!(s.is_range_permitted(&old, b"\x00", b"\x00"), Ok(()));
    assert_eq!(s.is_admin_permitted(&no_user), Ok(()));
}

#[test]
fn check_password_rules() {
    let be = backend();
    let s = store();
    add_user(&s, &be, "root", "rootpw").unwrap();
    assert_eq!(
        s.check_password("root", "rootpw"),
        Err(AuthError::AuthNotEnabled)
    );
    s.user_grant_role(&mut be.batch_tx(), "root", "root")
        .unwrap();
    s.user_add(
        &mut be.batch_tx(),
        AuthUserAddRequest {
            name: "nopw".into(),
            password: "ignored".into(),
            options: Some(authpb::UserAddOptions { no_password: true }),
            hashed_password: String::new(),
        },
    )
    .unwrap();
    s.auth_enable(&mut be.batch_tx()).unwrap();
    assert_eq!(s.check_password("root", "rootpw"), Ok(s.revision()));
    assert_eq!(
        s.check_password("root", "wrong"),
        Err(AuthError::AuthFailed)
    );
    assert_eq!(s.check_password("nobody", "x"), Err(AuthError::AuthFailed));
    assert_eq!(
        s.check_password("nopw", "ignored"),
        Err(AuthError::NoPasswordUser)
    );
    assert_eq!(s.check_password("nopw", ""), Err(AuthError::NoPasswordUser));
}

#[test]
fn hashed_password_is_stored_as_etcd_3_5_sends_it() {
    let be = backend();
    let s = enabled_store(&be);
    let hash = s.hash_password("");
    assert!(hash.starts_with("$2a$04$"), "{hash}");
    let b64 = base64::engine::general_purpose::STANDARD.encode(&hash);
    s.user_add(
        &mut be.batch_tx(),
        AuthUserAddRequest {
            name: "empty".into(),
            hashed_password: b64,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(s.check_password("empty", ""), Ok(s.revision()));
    assert_eq!(s.check_password("empty", "x"), Err(AuthError::AuthFailed));
    let stored = be.read().get(AUTH_USERS_TABLE, b"empty").unwrap().unwrap();
    assert_eq!(
        authpb::User::decode(&stored[..]).unwrap().password,
        hash.as_bytes()
    );
    // Not base64: etcd answers with ErrNoPasswordUser.
    assert_eq!(
        s.user_add(
            &mut be.batch_tx(),
            AuthUserAddRequest {
                name: "bad".into(),
                hashed_password: "$$$".into(),
                ..Default::default()
            },
        ),
        Err(AuthError::NoPasswordUser)
    );
}

#[test]
fn change_password_drops_that_users_tokens_only() {
    let be = backend();
    let s = enabled_store(&be);
    add_user(&s, &be, "alice", "old").unwrap();
    let alice = s
        .assign_token("alice", &s.gen_simple_token_prefix(), 10)
        .unwrap();
    let root = s
        .assign_token("root", &s.gen_simple_token_prefix(), 11)
        .unwrap();
    s.user_change_password(
        &mut be.batch_tx(),
        AuthUserChangePasswordRequest {
            name: "alice".into(),
            password: "new".into(),
            hashed_password: String::new(),
        },
    )
    .unwrap();
    assert_eq!(
        s.auth_info_from_token(&alice),
        Err(AuthError::InvalidAuthToken)
    );
    assert_eq!(s.auth_info_from_token(&root).unwrap().username, "root");
    assert_eq!(s.check_password("alice", "old"), Err(AuthError::AuthFailed));
    assert!(s.check_password("alice", "new").is_ok());
    assert_eq!(
        s.user_change_password(
            &mut be.batch_tx(),
            AuthUserChangePasswordRequest {
                name: "nobody".into(),
                ..Default::default()
            },
        ),
        Err(AuthError::UserNotFound)
    );
}

#[test]
fn simple_tokens_lifecycle() {
    let be = backend();
    let s = store();
    assert_eq!(
        s.assign_token("root", "x", 1),
        Err(AuthError::AuthNotEnabled)
    );
    // With auth off a token names nobody.
    assert_eq!(s.auth_info_from_token("x.1"), Ok(AuthInfo::default()));
    add_user(&s, &be, "root", "pw").unwrap();
    s.user_grant_role(&mut be.batch_tx(), "root", "root")
        .unwrap();
    add_user(&s, &be, "alice", "pw").unwrap();
    s.user_add(
        &mut be.batch_tx(),
        AuthUserAddRequest {
            name: "nopw".into(),
            options: Some(authpb::UserAddOptions { no_password: true }),
            ..Default::default()
        },
    )
    .unwrap();
    s.auth_enable(&mut be.batch_tx()).unwrap();
    assert_eq!(s.assign_token("nobody", "x", 1), Err(AuthError::AuthFailed));
    assert_eq!(s.assign_token("nopw", "x", 1), Err(AuthError::AuthFailed));

    let prefix = s.gen_simple_token_prefix();
    assert_eq!(prefix.len(), 16);
    let token = s.assign_token("alice", &prefix, 42).unwrap();
    assert_eq!(token, format!("{prefix}.42"));
    assert_eq!(AuthStore::simple_token_index(&token), Some(42));
    assert_eq!(AuthStore::simple_token_index("a.b.c"), None);
    assert_eq!(
        s.auth_info_from_token(&token),
        Ok(AuthInfo {
            username: "alice".into(),
            revision: s.revision()
        })
    );
    // A simple token reports the current revision.
    s.role_add(&mut be.batch_tx(), "bump").unwrap();
    assert_eq!(
        s.auth_info_from_token(&token).unwrap().revision,
        s.revision()
    );
    assert_eq!(
        s.auth_info_from_token("nope.42"),
        Err(AuthError::InvalidAuthToken)
    );
    assert_eq!(
        s.auth_info_from_token("malformed"),
        Err(AuthError::InvalidAuthToken)
    );

    // Expiry: untouched tokens go after the TTL.
    s.expire_tokens();
    assert!(s.auth_info_from_token(&token).is_ok());
    s.expire_tokens_at(Instant::now() + TTL + Duration::from_secs(1));
    assert_eq!(
        s.auth_info_from_token(&token),
        Err(AuthError::InvalidAuthToken)
    );

    // User delete drops that user's tokens; auth disable drops all.
    let alice = s
        .assign_token("alice", &s.gen_simple_token_prefix(), 50)
        .unwrap();
    let root = s
        .assign_token("root", &s.gen_simple_token_prefix(), 51)
        .unwrap();
    s.user_delete(&mut be.batch_tx(), "alice").unwrap();
    assert_eq!(
        s.auth_info_from_token(&alice),
        Err(AuthError::InvalidAuthToken)
    );
    assert!(s.auth_info_from_token(&root).is_ok());
    s.auth_disable(&mut be.batch_tx());
    s.auth_enable(&mut be.batch_tx()).unwrap();
    assert_eq!(
        s.auth_info_from_token(&root),
        Err(AuthError::InvalidAuthToken)
    );
}

#[test]
fn no_op_token_provider_issues_and_accepts_nothing() {
    let be = backend();
    let s = AuthStore::new(TokenOptions::parse("", Duration::ZERO).unwrap(), 4);
    add_user(&s, &be, "root", "pw").unwrap();
    s.user_grant_role(&mut be.batch_tx(), "root", "root")
        .unwrap();
    s.auth_enable(&mut be.batch_tx()).unwrap();
    assert_eq!(s.gen_simple_token_prefix(), "");
    assert_eq!(s.assign_token("root", "", 3), Err(AuthError::AuthFailed));
    assert_eq!(
        s.auth_info_from_token("abc.3"),
        Err(AuthError::InvalidAuthToken)
    );
    // The password check itself still works.
    assert!(s.check_password("root", "pw").is_ok());
}

#[test]
fn bcrypt_cost_out_of_range_falls_back_to_ten() {
    let s = AuthStore::new(TokenOptions::Simple { ttl: TTL }, 3);
    assert!(s.hash_password("x").starts_with("$2a$10$"));
    let s = AuthStore::new(TokenOptions::Simple { ttl: TTL }, 32);
    assert!(s.hash_password("x").starts_with("$2a$10$"));
    let s = AuthStore::new(TokenOptions::Simple { ttl: TTL }, 5);
    assert!(s.hash_password("x").starts_with("$2a$05$"));
}

#[test]
fn state_round_trips_through_the_backend_in_etcds_bytes() {
    let (be, s) = permission_fixture();
    s.user_add(
        &mut be.batch_tx(),
        AuthUserAddRequest {
            name: "nopw".into(),
            options: Some(authpb::UserAddOptions { no_password: true }),
            ..Default::default()
        },
    )
    .unwrap();
    be.force_commit().unwrap();

    let read = be.read();
    assert_eq!(read.get(AUTH_TABLE, b"authEnabled").unwrap(), Some(vec![1]));
    assert_eq!(
        read.get(AUTH_TABLE, b"authRevision").unwrap(),
        Some(s.revision().to_be_bytes().to_vec())
    );
    let alice =
        authpb::User::decode(&read.get(AUTH_USERS_TABLE, b"alice").unwrap().unwrap()[..]).unwrap();
    assert_eq!(alice.name, b"alice");
    assert_eq!(alice.roles, ["p", "r1", "r2", "w", "z"]);
    assert!(alice.password.starts_with(b"$2a$04$"));
    let role =
        authpb::Role::decode(&read.get(AUTH_ROLES_TABLE, b"p").unwrap().unwrap()[..]).unwrap();
    assert_eq!(role.key_permission.len(), 1);
    assert_eq!(role.key_permission[0].range_end, b"p0");
    drop(read);

    let reloaded = store();
    reloaded.recover(&be).unwrap();
    assert!(reloaded.is_enabled());
    assert_eq!(reloaded.revision(), s.revision());
    assert_eq!(reloaded.user_list(), s.user_list());
    assert_eq!(reloaded.role_list(), s.role_list());
    for role in s.role_list() {
        assert_eq!(reloaded.role_get(&role), s.role_get(&role));
    }
    let alice = info(&reloaded, "alice");
    assert_eq!(reloaded.is_range_permitted(&alice, b"a", b"e"), Ok(()));
    assert_eq!(
        reloaded.is_put_permitted(&alice, b"b"),
        Err(AuthError::PermissionDenied)
    );
    assert!(reloaded.check_password("alice", "pw").is_ok());
    assert_eq!(
        reloaded.check_password("nopw", ""),
        Err(AuthError::NoPasswordUser)
    );
    // Tokens issued after recovery work (the provider was enabled).
    let token = reloaded.assign_token("alice", "abc", 9).unwrap();
    assert_eq!(
        reloaded.auth_info_from_token(&token).unwrap().username,
        "alice"
    );

    // Disable persists too, and recovering into a disabled state drops the tokens.
    s.auth_disable(&mut be.batch_tx());
    assert_eq!(
        be.read().get(AUTH_TABLE, b"authEnabled").unwrap(),
        Some(vec![0])
    );
    reloaded.recover(&be).unwrap();
    assert!(!reloaded.is_enabled());
    assert_eq!(reloaded.revision(), s.revision());
    s.auth_enable(&mut be.batch_tx()).unwrap();
    reloaded.recover(&be).unwrap();
    assert_eq!(
        reloaded.auth_info_from_token(&token),
        Err(AuthError::InvalidAuthToken)
    );
}

#[test]
fn recover_of_an_empty_backend_is_revision_one_and_disabled() {
    let be = backend();
    let s = enabled_store(&be);
    let empty = backend();
    s.recover(&empty).unwrap();
    assert_eq!(s.revision(), 1);
    assert!(!s.is_enabled());
    assert!(s.user_list().is_empty());
}

#[test]
fn recover_reports_a_corrupt_record() {
    let be = backend();
    be.batch_tx()
        .put(AUTH_USERS_TABLE, b"bad".to_vec(), vec![0xff, 0xff, 0xff]);
    let s = store();
    match s.recover(&be) {
        Err(AuthError::Backend(text)) => assert!(text.contains("authUsers"), "{text}"),
        other => panic!("want a backend error, got {other:?}"),
    }
    let be = backend();
    be.batch_tx()
        .put(AUTH_TABLE, b"authRevision".to_vec(), vec![1, 2]);
    assert!(matches!(s.recover(&be), Err(AuthError::Backend(_))));
}

#[test]
fn token_options_parse_like_etcd() {
    let simple = TokenOptions::parse("simple", Duration::ZERO).unwrap();
    assert!(matches!(simple, TokenOptions::Simple { ttl } if ttl == Duration::from_secs(300)));
    let simple = TokenOptions::parse("simple", Duration::from_secs(7)).unwrap();
    assert!(matches!(simple, TokenOptions::Simple { ttl } if ttl == Duration::from_secs(7)));
    assert!(matches!(
        TokenOptions::parse("", TTL),
        Ok(TokenOptions::None)
    ));
    for bad in [
        "bogus",
        "jwt,sign-method",
        "jwt,a=b=c",
        "jwt,ttl=1s,ttl=2s",
        "simple,x",
    ] {
        assert_eq!(
            TokenOptions::parse(bad, TTL).err(),
            Some(AuthError::InvalidAuthOpts),
            "{bad}"
        );
    }
    assert_eq!(
        TokenOptions::parse("jwt,sign-method=RS256", TTL).err(),
        Some(AuthError::MissingKey)
    );
    assert_eq!(
        TokenOptions::parse("jwt,sign-method=HS256", TTL).err(),
        Some(AuthError::MissingKey)
    );
    match TokenOptions::parse("jwt,sign-method=RS256,priv-key=/nonexistent/key.pem", TTL) {
        Err(AuthError::KeyFile { path, .. }) => {
            assert_eq!(path, std::path::Path::new("/nonexistent/key.pem"))
        }
        other => panic!("want KeyFile, got {other:?}"),
    }
}

#[test]
fn the_store_can_be_shared_across_threads() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<AuthStore>();
    let be = backend();
    let s = std::sync::Arc::new(enabled_store(&be));
    let checker = {
        let s = s.clone();
        std::thread::spawn(move || {
            let root = info(&s, "root");
            (0..1000).all(|_| s.is_admin_permitted(&root).is_ok())
        })
    };
    for i in 0..50 {
        s.role_add(&mut be.batch_tx(), &format!("r{i}")).unwrap();
    }
    assert!(checker.join().unwrap());
    assert_eq!(s.role_list().len(), 50);
}
