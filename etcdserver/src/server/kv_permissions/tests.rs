use std::sync::Arc;

use api::authpb::{permission::Type, Permission};
use api::etcdserverpb::{self as pb, AuthUserAddRequest, InternalRaftRequest};
use backend::{Backend, BackendConfig};

use super::*;
use crate::error::ServerError;
use crate::server::apply::KvApplier;
use crate::server::lease_store::TxnLeases;

/// An auth store with auth on and users `root` (role root), `ro` (READ on `/a/`), `wo` (WRITE
/// on `/a/`) and `rw` (both on `/a/`, READ on `/b/`).
struct Fixture {
    backend: Arc<Backend>,
    auth: Arc<AuthStore>,
}

fn fixture() -> Fixture {
    let backend = Arc::new(
        Backend::in_memory(BackendConfig::default(), &crate::server::schema::TABLES).unwrap(),
    );
    let auth = Arc::new(AuthStore::new(
        auth::TokenOptions::Simple {
            ttl: std::time::Duration::from_secs(300),
        },
        4,
    ));
    auth.recover(&backend).unwrap();
    {
        let mut tx = backend.batch_tx();
        for (user, roles) in [
            ("root", &["root"][..]),
            ("ro", &["r"]),
            ("wo", &["w"]),
            ("rw", &["r", "w", "rb"]),
        ] {
            auth.user_add(
                &mut tx,
                AuthUserAddRequest {
                    name: user.into(),
                    password: "pw".into(),
                    ..Default::default()
                },
            )
            .unwrap();
            for role in roles {
                if auth.role_get(role).is_err() {
                    auth.role_add(&mut tx, role).unwrap();
                }
                auth.user_grant_role(&mut tx, user, role).unwrap();
            }
        }
        for (role, kind, key, end) in [
            ("r", Type::Read, "/a/", "/a0"),
            ("w", Type::Write, "/a/", "/a0"),
            ("rb", Type::Read, "/b/", "/b0"),
        ] {
            let perm = Permission {
                perm_type: kind as i32,
                key: key.into(),
                range_end: end.into(),
            };
            auth.role_grant_permission(&mut tx, role, Some(perm))
                .unwrap();
        }
        auth.auth_enable(&mut tx).unwrap();
    }
    Fixture { backend, auth }
}

impl Fixture {
    fn user(&self, name: &str) -> AuthInfo {
        AuthInfo {
            username: name.into(),
            revision: self.auth.revision(),
        }
    }

    fn check(
        &self,
        who: &AuthInfo,
        lessor: Option<&Lessor>,
        f: impl FnOnce(&Permissions<'_>) -> Result<(), AuthError>,
    ) -> Result<(), AuthError> {
        f(&Permissions {
            auth: &self.auth,
            info: who,
            lessor,
        })
    }
}

fn put(key: &str, prev_kv: bool, lease: i64) -> pb::PutRequest {
    pb::PutRequest {
        key: key.into(),
        value: b"v".to_vec(),
        prev_kv,
        lease,
        ..Default::default()
    }
}

fn delete(key: &str, end: &str, prev_kv: bool) -> pb::DeleteRangeRequest {
    pb::DeleteRangeRequest {
        key: key.into(),
        range_end: end.into(),
        prev_kv,
    }
}

fn op(request: Request) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(request),
    }
}

#[test]
fn puts_need_write_and_read_for_the_previous_value() {
    let f = fixture();
    let check = |who: &str, r: pb::PutRequest| f.check(&f.user(who), None, |p| p.put(&r));
    assert_eq!(check("wo", put("/a/x", false, 0)), Ok(()));
    assert_eq!(check("root", put("/z", true, 0)), Ok(()));
    assert_eq!(
        check("ro", put("/a/x", false, 0)),
        Err(AuthError::PermissionDenied)
    );
    assert_eq!(
        check("wo", put("/b/x", false, 0)),
        Err(AuthError::PermissionDenied)
    );
    assert_eq!(
        check("wo", put("/a/x", true, 0)),
        Err(AuthError::PermissionDenied)
    );
    assert_eq!(check("rw", put("/a/x", true, 0)), Ok(()));
}

#[test]
fn deletes_need_write_on_the_whole_range_and_read_with_prev_kv() {
    let f = fixture();
    let check =
        |who: &str, r: pb::DeleteRangeRequest| f.check(&f.user(who), None, |p| p.delete_range(&r));
    assert_eq!(check("wo", delete("/a/", "/a0", false)), Ok(()));
    assert_eq!(
        check("wo", delete("/a/", "/b", false)),
        Err(AuthError::PermissionDenied)
    );
    assert_eq!(
        check("wo", delete("/a/x", "", true)),
        Err(AuthError::PermissionDenied)
    );
    assert_eq!(check("rw", delete("/a/x", "", true)), Ok(()));
    assert_eq!(
        f.check(&f.user("ro"), None, |p| p.range(&pb::RangeRequest {
            key: "/a/".into(),
            range_end: "/b".into(),
            ..Default::default()
        })),
        Err(AuthError::PermissionDenied)
    );
}

#[test]
fn no_user_and_a_stale_revision_are_refused_as_etcd_refuses_them() {
    let f = fixture();
    let r = put("/a/x", false, 0);
    assert_eq!(
        f.check(&AuthInfo::default(), None, |p| p.put(&r)),
        Err(AuthError::UserEmpty)
    );
    let stale = AuthInfo {
        username: "root".into(),
        revision: f.auth.revision() - 1,
    };
    assert_eq!(
        f.check(&stale, None, |p| p.put(&r)),
        Err(AuthError::AuthOldRevision)
    );
}

#[test]
fn txns_check_compares_every_op_and_nested_txns() {
    let f = fixture();
    let compare = |key: &str| pb::Compare {
        key: key.into(),
        ..Default::default()
    };
    let txn = |compare: Vec<pb::Compare>, success: Vec<pb::RequestOp>| pb::TxnRequest {
        compare,
        success,
        failure: vec![op(Request::RequestRange(pb::RangeRequest {
            key: "/a/x".into(),
            ..Default::default()
        }))],
    };
    let check = |who: &str, t: pb::TxnRequest| f.check(&f.user(who), None, |p| p.txn(&t));
    assert_eq!(check("ro", txn(vec![compare("/a/x")], vec![])), Ok(()));
    assert_eq!(
        check("ro", txn(vec![compare("/z")], vec![])),
        Err(AuthError::PermissionDenied)
    );
    let put_a = op(Request::RequestPut(put("/a/y", false, 0)));
    assert_eq!(check("rw", txn(vec![], vec![put_a.clone()])), Ok(()));
    // The failure branch reads, so a write-only user may not run it.
    assert_eq!(
        check("wo", txn(vec![], vec![put_a])),
        Err(AuthError::PermissionDenied)
    );
    let nested = |ops| {
        op(Request::RequestTxn(pb::TxnRequest {
            success: ops,
            ..Default::default()
        }))
    };
    let outside = op(Request::RequestPut(put("/b/y", false, 0)));
    assert_eq!(
        check("rw", txn(vec![], vec![nested(vec![outside])])),
        Err(AuthError::PermissionDenied)
    );
    let prev = op(Request::RequestPut(put("/b/y", true, 0)));
    assert_eq!(
        check("root", txn(vec![], vec![nested(vec![prev.clone()])])),
        Ok(())
    );
    let delete_prev = op(Request::RequestDeleteRange(delete("/a/x", "", true)));
    assert_eq!(check("rw", txn(vec![], vec![delete_prev])), Ok(()));
}

/// A lessor with lease 7 holding `/b/held`, and lease 8 holding `/a/mine`.
fn lessor(f: &Fixture) -> Arc<Lessor> {
    let store =
        Arc::new(mvcc::Store::open(f.backend.clone(), mvcc::StoreConfig::default()).unwrap());
    let lessor = Arc::new(Lessor::new(1, None));
    store.apply(1, 1, |txn| {
        lessor.grant(&mut TxnLeases(txn), 7, 60).unwrap();
        lessor.grant(&mut TxnLeases(txn), 8, 60).unwrap();
    });
    lessor.attach(b"/b/held", 7);
    lessor.attach(b"/a/mine", 8);
    lessor
}

#[test]
fn a_lease_s_keys_must_all_be_writable_to_attach_to_or_revoke_it() {
    let f = fixture();
    let lessor = lessor(&f);
    let check = |who: &str, g: &dyn Fn(&Permissions<'_>) -> Result<(), AuthError>| {
        f.check(&f.user(who), Some(&lessor), g)
    };
    assert_eq!(
        check("wo", &|p| p.put(&put("/a/x", false, 7))),
        Err(AuthError::PermissionDenied)
    );
    assert_eq!(
        check("wo", &|p| p.lease_revoke(7)),
        Err(AuthError::PermissionDenied)
    );
    assert_eq!(check("wo", &|p| p.put(&put("/a/x", false, 8))), Ok(()));
    assert_eq!(check("wo", &|p| p.lease_revoke(8)), Ok(()));
    // An unknown lease has no keys to protect.
    assert_eq!(check("wo", &|p| p.lease_revoke(9)), Ok(()));
    assert_eq!(check("root", &|p| p.lease_revoke(7)), Ok(()));
}

#[test]
fn the_applier_refuses_a_denied_request_without_writing_and_moves_on() {
    let f = fixture();
    let store =
        Arc::new(mvcc::Store::open(f.backend.clone(), mvcc::StoreConfig::default()).unwrap());
    let applier = KvApplier::with_lessor(store.clone(), Arc::new(Lessor::new(1, None)))
        .with_auth(f.auth.clone());
    let from = |who: &str, r: pb::PutRequest| InternalRaftRequest {
        header: Some(pb::RequestHeader {
            id: 1,
            username: who.into(),
            auth_revision: f.auth.revision(),
        }),
        put: Some(r),
        ..Default::default()
    };
    let refused = applier
        .apply(1, 1, from("ro", put("/a/x", false, 0)))
        .unwrap();
    assert_eq!(
        ServerError::from(refused.unwrap_err()),
        ServerError::Auth(AuthError::PermissionDenied)
    );
    assert_eq!(store.current_revision(), 1);
    assert_eq!(store.consistent_index().0, 1);
    applier
        .apply(2, 1, from("wo", put("/a/x", false, 0)))
        .unwrap()
        .unwrap();
    assert_eq!(store.current_revision(), 2);
    let anonymous = InternalRaftRequest {
        put: Some(put("/a/x", false, 0)),
        ..Default::default()
    };
    assert_eq!(
        ServerError::from(applier.apply(3, 1, anonymous).unwrap().unwrap_err()),
        ServerError::Auth(AuthError::UserEmpty)
    );
    assert_eq!(store.current_revision(), 2);
}
