mod common;

use common::*;
use mvcc::*;

fn put(s: &Store, k: &str, v: &str) -> i64 {
    s.put(&PutRequest::new(k, v)).unwrap().revision
}

fn get(s: &Store, k: &str) -> Option<KeyValue> {
    s.range(&RangeRequest::key(k)).unwrap().kvs.pop()
}

fn keys(resp: &RangeResponse) -> Vec<String> {
    resp.kvs
        .iter()
        .map(|kv| String::from_utf8(kv.key.clone()).unwrap())
        .collect()
}

#[test]
fn revisions_start_at_one_and_each_change_bumps_once() {
    let s = memory_store();
    assert_eq!(s.current_revision(), 1);
    assert_eq!(put(&s, "a", "1"), 2);
    assert_eq!(put(&s, "a", "2"), 3);
    let kv = get(&s, "a").unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 3, 2));
    assert_eq!(kv.value, b"2");
    // Deleting nothing changes nothing.
    let d = s.delete_range(&DeleteRangeRequest::new("zzz", "")).unwrap();
    assert_eq!((d.deleted, d.revision), (0, 3));
    assert_eq!(s.current_revision(), 3);
    let d = s.delete_range(&DeleteRangeRequest::new("a", "")).unwrap();
    assert_eq!((d.deleted, d.revision), (1, 4));
    assert_eq!(get(&s, "a"), None);
    // Re-created: new generation, version restarts.
    put(&s, "a", "3");
    let kv = get(&s, "a").unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (5, 5, 1));
}

#[test]
fn put_prev_kv_ignore_value_and_ignore_lease() {
    let s = memory_store();
    let mut req = PutRequest::new("k", "v1");
    req.lease = 7;
    req.prev_kv = true;
    assert_eq!(s.put(&req).unwrap().prev_kv, None);
    let req = PutRequest {
        key: b"k".to_vec(),
        ignore_value: true,
        prev_kv: true,
        lease: 9,
        ..Default::default()
    };
    let prev = s.put(&req).unwrap().prev_kv.unwrap();
    assert_eq!((prev.value.as_slice(), prev.lease), (&b"v1"[..], 7));
    let kv = get(&s, "k").unwrap();
    assert_eq!(
        (kv.value.as_slice(), kv.lease, kv.version),
        (&b"v1"[..], 9, 2)
    );
    let req = PutRequest {
        key: b"k".to_vec(),
        value: b"v3".to_vec(),
        ignore_lease: true,
        ..Default::default()
    };
    s.put(&req).unwrap();
    let kv = get(&s, "k").unwrap();
    assert_eq!((kv.value.as_slice(), kv.lease), (&b"v3"[..], 9));
    let missing = PutRequest {
        key: b"nope".to_vec(),
        ignore_value: true,
        ..Default::default()
    };
    assert!(matches!(s.put(&missing), Err(Error::KeyNotFound)));
    assert_eq!(s.current_revision(), 4);
}

#[test]
fn range_follows_etcd_key_rules_limit_and_count() {
    let s = memory_store();
    for k in ["a", "b", "b/1", "b/2", "c", "\u{7f}"] {
        put(&s, k, k);
    }
    assert_eq!(keys(&s.range(&RangeRequest::key("b")).unwrap()), ["b"]);
    assert_eq!(
        keys(&s.range(&RangeRequest::range("b", "c")).unwrap()),
        ["b", "b/1", "b/2"]
    );
    let prefix = prefix_range_end(b"b/");
    assert_eq!(
        keys(&s.range(&RangeRequest::range("b/", prefix)).unwrap()),
        ["b/1", "b/2"]
    );
    assert_eq!(
        keys(&s.range(&RangeRequest::range("c", "\0")).unwrap()),
        ["c", "\u{7f}"]
    );
    assert_eq!(
        s.range(&RangeRequest::range("\0", "\0")).unwrap().kvs.len(),
        6
    );
    assert!(s
        .range(&RangeRequest::range("c", "a"))
        .unwrap()
        .kvs
        .is_empty());

    let mut req = RangeRequest::range("a", "\0");
    req.limit = 2;
    let resp = s.range(&req).unwrap();
    assert_eq!(
        (keys(&resp), resp.more, resp.count),
        (vec!["a".to_string(), "b".into()], true, 6)
    );
    req.limit = 6;
    let resp = s.range(&req).unwrap();
    assert_eq!((resp.kvs.len(), resp.more), (6, false));

    req.limit = 0;
    req.count_only = true;
    let resp = s.range(&req).unwrap();
    assert_eq!((resp.kvs.len(), resp.count, resp.more), (0, 6, false));
    req.count_only = false;
    req.keys_only = true;
    let resp = s.range(&req).unwrap();
    assert!(resp
        .kvs
        .iter()
        .all(|kv| kv.value.is_empty() && kv.version == 1));
    assert_eq!(resp.revision, 7);
}

#[test]
fn range_at_past_revisions_and_revision_errors() {
    let s = memory_store();
    put(&s, "k", "v1"); // 2
    put(&s, "k", "v2"); // 3
    s.delete_range(&DeleteRangeRequest::new("k", "")).unwrap(); // 4
    put(&s, "k", "v3"); // 5
    let at = |rev| {
        s.range(&RangeRequest::key("k").at_revision(rev))
            .unwrap()
            .kvs
            .pop()
            .map(|kv| String::from_utf8(kv.value).unwrap())
    };
    assert_eq!(at(1), None);
    assert_eq!(at(2).as_deref(), Some("v1"));
    assert_eq!(at(3).as_deref(), Some("v2"));
    assert_eq!(at(4), None);
    assert_eq!(at(5).as_deref(), Some("v3"));
    let resp = s.range(&RangeRequest::key("k").at_revision(3)).unwrap();
    assert_eq!(resp.revision, 5, "header revision is the current one");
    assert!(matches!(
        s.range(&RangeRequest::key("k").at_revision(6)),
        Err(Error::FutureRevision)
    ));
    s.compact(3).unwrap().run().unwrap();
    assert_eq!(s.compact_revision(), 3);
    assert!(matches!(
        s.range(&RangeRequest::key("k").at_revision(2)),
        Err(Error::Compacted)
    ));
    assert_eq!(
        at(3).as_deref(),
        Some("v2"),
        "the compaction revision itself stays readable"
    );
    assert!(matches!(s.compact(3), Err(Error::Compacted)));
    assert!(matches!(s.compact(9), Err(Error::FutureRevision)));
    assert_eq!(
        Error::Compacted.to_string(),
        "mvcc: required revision has been compacted"
    );
    assert_eq!(
        Error::FutureRevision.to_string(),
        "mvcc: required revision is a future revision"
    );
}

#[test]
fn sort_and_revision_filters_as_the_apply_layer_does() {
    let s = memory_store();
    put(&s, "c", "1"); // 2
    put(&s, "a", "3"); // 3
    put(&s, "b", "2"); // 4
    put(&s, "a", "4"); // 5
    let base = RangeRequest::range("a", "\0");
    let run = |f: &dyn Fn(&mut RangeRequest)| {
        let mut r = base.clone();
        f(&mut r);
        keys(&s.range(&r).unwrap())
    };
    assert_eq!(run(&|r| r.sort_order = SortOrder::Descend), ["c", "b", "a"]);
    assert_eq!(
        run(&|r| r.sort_target = SortTarget::Create),
        ["c", "a", "b"],
        "NONE + CREATE ascends"
    );
    assert_eq!(
        run(&|r| {
            r.sort_target = SortTarget::Mod;
            r.sort_order = SortOrder::Descend;
        }),
        ["a", "b", "c"]
    );
    assert_eq!(run(&|r| r.sort_target = SortTarget::Value), ["c", "b", "a"]);
    assert_eq!(
        run(&|r| {
            r.sort_target = SortTarget::Version;
            r.sort_order = SortOrder::Descend;
        }),
        ["a", "b", "c"],
        "equal versions keep key order"
    );
    assert_eq!(run(&|r| r.min_mod_revision = 4), ["a", "b"]);
    assert_eq!(run(&|r| r.max_mod_revision = 4), ["b", "c"]);
    assert_eq!(run(&|r| r.min_create_revision = 3), ["a", "b"]);
    assert_eq!(run(&|r| r.max_create_revision = 3), ["a", "c"]);
    // The lock recipe: oldest creator first, one result.
    let mut r = base.clone();
    r.sort_target = SortTarget::Create;
    r.sort_order = SortOrder::Ascend;
    r.limit = 1;
    r.max_create_revision = 4;
    let resp = s.range(&r).unwrap();
    assert_eq!(
        (keys(&resp), resp.more, resp.count),
        (vec!["c".to_string()], true, 3)
    );
}

fn cmp(key: &str, result: CompareResult, target: CompareTarget) -> Compare {
    Compare::new(key, result, target)
}

#[test]
fn txn_compares_follow_etcd_semantics() {
    let s = memory_store();
    let mut req = PutRequest::new("k", "v");
    req.lease = 5;
    s.put(&req).unwrap(); // 2
    put(&s, "r/1", "x"); // 3
    put(&s, "r/2", "y"); // 4
    use CompareResult::*;
    use CompareTarget::*;
    let check = |c: Compare| {
        let t = TxnRequest {
            compare: vec![c],
            ..Default::default()
        };
        s.txn(&t, &no_leases).unwrap().succeeded
    };
    assert!(check(cmp("k", Equal, Value(b"v".to_vec()))));
    assert!(check(cmp("k", Greater, Value(b"u".to_vec()))));
    assert!(check(cmp("k", Equal, Version(1))));
    assert!(check(cmp("k", Equal, Create(2))));
    assert!(check(cmp("k", Equal, Mod(2))));
    assert!(check(cmp("k", Equal, Lease(5))));
    assert!(check(cmp("k", NotEqual, Lease(6))));
    assert!(check(cmp("k", Less, Mod(3))));
    // A missing key is a zero KeyValue, but a value compare on it always fails.
    assert!(check(cmp("missing", Equal, Version(0))));
    assert!(check(cmp("missing", Equal, Create(0))));
    assert!(!check(cmp("missing", Equal, Value(Vec::new()))));
    assert!(!check(cmp("missing", NotEqual, Value(b"x".to_vec()))));
    // With range_end every key must satisfy the compare.
    let mut c = cmp("r/", Greater, Mod(2));
    c.range_end = prefix_range_end(b"r/");
    assert!(check(c.clone()));
    c.target = Mod(3);
    assert!(!check(c.clone()));
    c.key = b"zz/".to_vec();
    c.range_end = prefix_range_end(b"zz/");
    c.target = Version(0);
    c.result = Equal;
    assert!(check(c), "an empty range compares as a zero KeyValue");
    assert_eq!(
        s.current_revision(),
        4,
        "read-only txns do not bump the revision"
    );
}

#[test]
fn txn_writes_share_one_revision_and_nested_paths_use_the_initial_state() {
    let s = memory_store();
    put(&s, "flag", "off"); // 2
    put(&s, "gone", "x"); // 3
    use CompareResult::*;
    use CompareTarget::*;
    let nested = TxnRequest {
        // Evaluated before the outer put below changes "flag".
        compare: vec![cmp("flag", Equal, Value(b"off".to_vec()))],
        success: vec![RequestOp::Put(PutRequest::new("nested", "ok"))],
        failure: vec![RequestOp::Put(PutRequest::new("nested", "wrong"))],
    };
    let txn = TxnRequest {
        compare: vec![cmp("flag", Equal, Version(1))],
        success: vec![
            RequestOp::Put(PutRequest::new("flag", "on")),
            RequestOp::DeleteRange(DeleteRangeRequest {
                key: b"gone".to_vec(),
                range_end: Vec::new(),
                prev_kv: true,
            }),
            RequestOp::Range(RangeRequest::key("flag")),
            RequestOp::Txn(nested),
        ],
        failure: vec![],
    };
    let resp = s.txn(&txn, &no_leases).unwrap();
    assert!(resp.succeeded);
    assert_eq!(resp.revision, 4);
    assert_eq!(s.current_revision(), 4);
    let ResponseOp::Range(r) = &resp.responses[2] else {
        panic!("not a range")
    };
    assert_eq!(r.kvs[0].value, b"on", "ranges see the txn's own writes");
    let ResponseOp::DeleteRange(d) = &resp.responses[1] else {
        panic!("not a delete")
    };
    assert_eq!((d.deleted, d.prev_kvs[0].value.as_slice()), (1, &b"x"[..]));
    let ResponseOp::Txn(n) = &resp.responses[3] else {
        panic!("not a txn")
    };
    assert!(n.succeeded);
    assert_eq!(get(&s, "nested").unwrap().value, b"ok");
    // All writes of the txn at revision 4, with increasing sub-revisions in the backend.
    let mut subs = Vec::new();
    s.backend()
        .read()
        .scan(
            KEY_TABLE,
            &Revision::new(4, 0).to_bytes(),
            Some(&Revision::new(5, 0).to_bytes()),
            |k, _| {
                subs.push((Revision::from_bytes(k).unwrap().sub, is_tombstone(k)));
                true
            },
        )
        .unwrap();
    assert_eq!(subs, [(0, false), (1, true), (2, false)]);
    for k in ["flag", "nested"] {
        assert_eq!(get(&s, k).unwrap().mod_revision, 4);
    }
}

#[test]
fn a_failed_txn_check_changes_nothing() {
    let s = memory_store();
    put(&s, "a", "1");
    let bad_lease = TxnRequest {
        success: vec![
            RequestOp::Put(PutRequest::new("b", "2")),
            RequestOp::Put(PutRequest {
                key: b"c".to_vec(),
                lease: 42,
                ..Default::default()
            }),
        ],
        ..Default::default()
    };
    assert!(matches!(
        s.txn(&bad_lease, &no_leases),
        Err(Error::LeaseNotFound(42))
    ));
    let ignore_missing = TxnRequest {
        success: vec![
            RequestOp::Put(PutRequest::new("b", "2")),
            RequestOp::Put(PutRequest {
                key: b"missing".to_vec(),
                ignore_value: true,
                ..Default::default()
            }),
        ],
        ..Default::default()
    };
    assert!(matches!(
        s.txn(&ignore_missing, &no_leases),
        Err(Error::KeyNotFound)
    ));
    assert_eq!(s.current_revision(), 2);
    assert_eq!(get(&s, "b"), None);
    // The check follows the path: a key deleted earlier in the txn is missing for ignore_value.
    let deleted_first = TxnRequest {
        success: vec![
            RequestOp::DeleteRange(DeleteRangeRequest::new("a", "b")),
            RequestOp::Put(PutRequest {
                key: b"a".to_vec(),
                ignore_value: true,
                ..Default::default()
            }),
        ],
        ..Default::default()
    };
    assert!(matches!(
        s.txn(&deleted_first, &no_leases),
        Err(Error::KeyNotFound)
    ));
    assert_eq!(get(&s, "a").unwrap().value, b"1");
    assert_eq!(s.current_revision(), 2);
    // ... and a key put earlier in the txn exists for it.
    let put_first = TxnRequest {
        success: vec![
            RequestOp::Put(PutRequest::new("new", "v")),
            RequestOp::Put(PutRequest {
                key: b"new".to_vec(),
                ignore_value: true,
                lease: 3,
                ..Default::default()
            }),
        ],
        ..Default::default()
    };
    let rev = s.txn(&put_first, &any_lease).unwrap().revision;
    let kv = get(&s, "new").unwrap();
    assert_eq!(
        (kv.value.as_slice(), kv.lease, kv.version, kv.mod_revision),
        (&b"v"[..], 3, 2, rev)
    );
    // The lease is only checked on the chosen branch.
    let other_branch = TxnRequest {
        compare: vec![cmp(
            "a",
            CompareResult::Equal,
            CompareTarget::Value(b"1".to_vec()),
        )],
        success: vec![RequestOp::Put(PutRequest::new("b", "2"))],
        failure: bad_lease.success.clone(),
    };
    assert!(s.txn(&other_branch, &no_leases).unwrap().succeeded);
    assert!(s.txn(&bad_lease, &any_lease).is_ok());
}

#[test]
fn compaction_removes_unreachable_rows_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let s = open_redb(&path);
        for i in 0..20 {
            put(&s, "k", &i.to_string()); // 2..=21
        }
        put(&s, "dead", "x"); // 22
        s.delete_range(&DeleteRangeRequest::new("dead", ""))
            .unwrap(); // 23
        put(&s, "other", "y"); // 24
        let rows = |s: &Store| {
            let mut n = 0;
            s.backend()
                .read()
                .scan(KEY_TABLE, &[], None, |_, _| {
                    n += 1;
                    true
                })
                .unwrap();
            n
        };
        assert_eq!(rows(&s), 23);
        let job = s.compact(23).unwrap();
        // Rows scheduled for removal are already left out of the hash.
        let before = s.hash_kv(24).unwrap();
        job.run().unwrap();
        // k@21 and other@24 stay; the deletion at 23 stays until a later compaction passes it.
        assert_eq!(rows(&s), 3);
        let after = s.hash_kv(24).unwrap();
        assert_eq!(
            after.hash, before.hash,
            "removing the rows does not change the hash"
        );
        assert_eq!(after.compact_revision, 23);
        assert_eq!(get(&s, "k").unwrap().value, b"19");
        s.compact(24).unwrap().run().unwrap();
        assert_eq!(rows(&s), 2);
        s.commit().unwrap();
    }
    let s = open_redb(&path);
    assert_eq!(s.compact_revision(), 24);
    assert_eq!(s.current_revision(), 24);
    assert_eq!(get(&s, "k").unwrap().version, 20);
    assert_eq!(get(&s, "k").unwrap().create_revision, 2);
    assert_eq!(get(&s, "dead"), None);
    assert!(matches!(
        s.range(&RangeRequest::key("k").at_revision(23)),
        Err(Error::Compacted)
    ));
    assert_eq!(put(&s, "k", "next"), 25);
}

#[test]
fn an_interrupted_compaction_is_finished_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let s = open_redb(&path);
        for i in 0..10 {
            put(&s, "k", &i.to_string()); // 2..=11
        }
        // Scheduled and durable, but the job never runs (as if the process died).
        let job = s.compact(8).unwrap();
        drop(job);
    }
    let s = open_redb(&path);
    assert_eq!(s.compact_revision(), 8);
    let mut rows = 0;
    s.backend()
        .read()
        .scan(KEY_TABLE, &[], None, |_, _| {
            rows += 1;
            true
        })
        .unwrap();
    assert_eq!(rows, 4, "rows 8..=11 remain");
    assert_eq!(get(&s, "k").unwrap().value, b"9");
}

#[test]
fn compaction_of_an_all_deleted_store_keeps_the_revision() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let s = open_redb(&path);
        put(&s, "a", "1");
        s.delete_range(&DeleteRangeRequest::new("a", "")).unwrap(); // 3
        put(&s, "b", "1"); // 4
        s.delete_range(&DeleteRangeRequest::new("b", "")).unwrap(); // 5
        s.compact(5).unwrap().run().unwrap();
        s.compact(5).err().unwrap();
    }
    let s = open_redb(&path);
    assert_eq!(s.current_revision(), 5);
    assert_eq!(put(&s, "c", "1"), 6);
}

#[test]
fn hash_kv_matches_etcds_definition() {
    use prost::Message;
    let s = memory_store();
    put(&s, "foo", "bar"); // 2
    let kv = KeyValue {
        key: b"foo".to_vec(),
        create_revision: 2,
        mod_revision: 2,
        version: 1,
        value: b"bar".to_vec(),
        lease: 0,
    };
    let mut expected = crc32c::crc32c(b"key");
    expected = crc32c::crc32c_append(expected, &Revision::new(2, 0).to_bytes());
    expected = crc32c::crc32c_append(expected, &kv.encode_to_vec());
    let h = s.hash_kv(0).unwrap();
    assert_eq!((h.hash, h.revision, h.compact_revision), (expected, 2, -1));
    put(&s, "foo", "baz"); // 3
    assert_eq!(
        s.hash_kv(2).unwrap().hash,
        expected,
        "later revisions are not hashed"
    );
    assert_ne!(s.hash_kv(3).unwrap().hash, expected);
    assert!(matches!(s.hash_kv(4), Err(Error::FutureRevision)));
    s.compact(2).unwrap().run().unwrap();
    assert!(matches!(s.hash_kv(2), Err(Error::Compacted)));
}

#[test]
fn apply_records_the_consistent_index_and_skips_reapplied_entries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let s = open_redb(&path);
        assert_eq!(s.consistent_index(), (0, 0));
        let r = s.apply(5, 2, |t| t.put(PutRequest::new("a", "1")).unwrap().revision);
        assert_eq!(r, Some(2));
        assert_eq!(
            s.apply(5, 2, |t| t.put(PutRequest::new("a", "2")).unwrap()),
            None
        );
        assert_eq!(
            s.apply(4, 2, |t| t.put(PutRequest::new("a", "2")).unwrap()),
            None
        );
        assert_eq!(get(&s, "a").unwrap().value, b"1");
        // An entry that writes nothing still advances the index.
        assert_eq!(s.apply(6, 3, |_| ()), Some(()));
        assert_eq!(s.consistent_index(), (6, 3));
        assert_eq!(s.current_revision(), 2);
    }
    let s = open_redb(&path);
    assert_eq!(s.consistent_index(), (6, 3));
    assert_eq!(
        s.apply(6, 3, |t| t.put(PutRequest::new("a", "x")).unwrap()),
        None
    );
}

#[test]
fn leased_keys_lists_live_keys_with_leases() {
    let s = memory_store();
    for (k, lease) in [("a", 1), ("b", 0), ("c", 2)] {
        let mut req = PutRequest::new(k, "v");
        req.lease = lease;
        s.put(&req).unwrap();
    }
    s.delete_range(&DeleteRangeRequest::new("c", "")).unwrap();
    assert_eq!(s.leased_keys().unwrap(), vec![(b"a".to_vec(), 1)]);
}

#[test]
fn compaction_reads_and_writes_run_concurrently() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let s = Arc::new(memory_store()); // compaction batches of 7 rows
    let done = Arc::new(AtomicBool::new(false));
    let compactions = Arc::new(AtomicUsize::new(0));
    let reads = Arc::new(AtomicUsize::new(0));
    let compactor = {
        let (s, done, compactions) = (s.clone(), done.clone(), compactions.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Acquire) {
                let target = s.current_revision() - 20;
                if target > s.compact_revision() {
                    s.compact(target).unwrap().run().unwrap();
                    compactions.fetch_add(1, Ordering::Release);
                }
                std::thread::yield_now();
            }
        })
    };
    let reader = {
        let (s, done, reads) = (s.clone(), done.clone(), reads.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Acquire) {
                let rev = (s.current_revision() - 30).max(1);
                match s.range(&RangeRequest::range("k", "\0").at_revision(rev)) {
                    Ok(resp) => {
                        // Each key's value is the revision it was written at.
                        for kv in &resp.kvs {
                            assert_eq!(kv.value, kv.mod_revision.to_string().into_bytes());
                            assert!(kv.mod_revision <= rev);
                        }
                        reads.fetch_add(1, Ordering::Release);
                    }
                    Err(Error::Compacted) => {}
                    Err(e) => panic!("read at {rev}: {e}"),
                }
            }
        })
    };
    // Write until both other threads have done a fair amount of work alongside.
    let mut i = 0u64;
    while (compactions.load(Ordering::Acquire) < 20 || reads.load(Ordering::Acquire) < 20)
        && i < 1_000_000
    {
        let rev = s.current_revision() + 1;
        let key = format!("k{}", i % 50);
        assert_eq!(
            s.put(&PutRequest::new(key, rev.to_string()))
                .unwrap()
                .revision,
            rev
        );
        i += 1;
    }
    done.store(true, Ordering::Release);
    compactor.join().unwrap();
    reader.join().unwrap();
    assert!(compactions.load(Ordering::Acquire) >= 20 && reads.load(Ordering::Acquire) >= 20);
    let all = s.range(&RangeRequest::range("k", "\0")).unwrap();
    assert_eq!(all.count, 50.min(i as i64));
    let latest = s.current_revision();
    assert!(all.kvs.iter().all(|kv| kv.mod_revision > latest - 50));
}

#[test]
fn restore_installs_a_snapshot_and_keeps_watchers() {
    let dir = tempfile::tempdir().unwrap();
    let entry = |s: &Store, i: u64| {
        s.apply(100 + i, 3, |t| {
            t.put(PutRequest::new(format!("k{}", i % 5), i.to_string()))
                .unwrap();
        })
    };
    // The leader applies 30 entries (revisions 2..=31), compacts, streams a snapshot.
    let leader = open_redb(&dir.path().join("leader"));
    for i in 0..30 {
        entry(&leader, i);
    }
    leader.compact(10).unwrap().run().unwrap();
    let mut stream = Vec::new();
    leader.backend().snapshot_to(&mut stream).unwrap();
    let received = dir.path().join("received.snap.db");
    backend::restore_snapshot(&mut stream.as_slice(), &received, TEST_TABLES).unwrap();
    let source =
        backend::Backend::open(&received, backend::BackendConfig::default(), TEST_TABLES).unwrap();

    // A follower that applied only the first 14 entries (revision 15), with a watcher.
    let follower = open_redb(&dir.path().join("follower"));
    for i in 0..14 {
        entry(&follower, i);
    }
    follower
        .backend()
        .batch_tx()
        .put(OTHER_TABLE, b"only-here".to_vec(), b"x".to_vec());
    let mut watches = follower.watch_stream();
    let live = watches
        .watch(&WatchRequest {
            key: b"k".to_vec(),
            range_end: b"l".to_vec(),
            ..Default::default()
        })
        .unwrap();
    follower
        .restore(source.committed_view().unwrap().as_ref())
        .unwrap();

    assert_eq!(follower.current_revision(), 31);
    assert_eq!(follower.compact_revision(), 10);
    assert_eq!(follower.consistent_index(), (129, 3));
    let alarm = follower
        .backend()
        .read()
        .get(OTHER_TABLE, b"only-here")
        .unwrap();
    assert_eq!(alarm, None);
    let all = RangeRequest::range("\0", "\0");
    assert_eq!(follower.range(&all).unwrap(), leader.range(&all).unwrap());
    assert_eq!(follower.hash_kv(0).unwrap(), leader.hash_kv(0).unwrap());
    // Entries the snapshot covers are not applied again.
    assert_eq!(entry(&follower, 29), None);

    // The watcher gets the revisions it missed from the snapshot's history, then new ones;
    // a watcher from before the snapshot's compaction learns about it.
    let old = watches
        .watch(&WatchRequest {
            key: b"k0".to_vec(),
            start_revision: 5,
            ..Default::default()
        })
        .unwrap();
    let next = put(&follower, "k9", "new");
    assert_eq!(next, 32);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let (mut compacted, mut live_revs) = (None, Vec::new());
    while compacted.is_none() || live_revs.last() != Some(&next) {
        assert!(
            std::time::Instant::now() < deadline,
            "{compacted:?} {live_revs:?}"
        );
        let Some(r) = watches.recv_timeout(std::time::Duration::from_millis(50)) else {
            continue;
        };
        if r.watch_id == old {
            compacted = Some(r.compact_revision);
        } else if r.watch_id == live {
            live_revs.extend(r.events.iter().map(Event::revision));
        }
    }
    assert_eq!(compacted, Some(10));
    assert_eq!(live_revs, (16..=32).collect::<Vec<_>>());
    drop(source);
    // Durable: a reopen sees the installed contents.
    drop(watches);
    drop(follower);
    let reopened = open_redb(&dir.path().join("follower"));
    // The snapshot's 129, then the put of "k9" above, applied as entry 130.
    assert_eq!(reopened.consistent_index(), (130, 3));
    assert_eq!(get(&reopened, "k9").unwrap().value, b"new");
}

#[test]
fn each_compaction_records_the_hash_of_what_it_compacted_newest_first() {
    let s = memory_store();
    for i in 0..40 {
        put(&s, &format!("k{}", i % 6), &i.to_string());
    }
    assert!(s.compaction_hashes().is_empty());
    // What HashByRev(rev) answers just before the compaction at rev (batches of 7 rows).
    let before_10 = s.hash_kv(10).unwrap();
    s.compact(10).unwrap().run().unwrap();
    let before_20 = s.hash_kv(20).unwrap();
    assert_eq!(before_20.compact_revision, 10);
    s.compact(20).unwrap().run().unwrap();
    let recorded = s.compaction_hashes();
    let summary = |h: &KvHash| (h.hash, h.compact_revision, h.revision);
    assert_eq!(
        recorded.iter().map(summary).collect::<Vec<_>>(),
        vec![summary(&before_20), summary(&before_10)]
    );
    assert_eq!(s.compaction_hash(20).map(|h| h.hash), Some(before_20.hash));
    assert_eq!(s.compaction_hash(20).unwrap().current_revision, 41);
    assert_eq!(s.compaction_hash(15), None);
    for rev in 21..35 {
        s.compact(rev).unwrap().run().unwrap();
    }
    let kept: Vec<i64> = s.compaction_hashes().iter().map(|h| h.revision).collect();
    assert_eq!(kept, (25..35).rev().collect::<Vec<_>>());
}

#[test]
fn a_damaged_value_changes_the_hash_at_its_revision_and_later() {
    let s = memory_store();
    for i in 0..5 {
        put(&s, "k", &i.to_string());
    }
    let (h3, h6) = (s.hash_kv(3).unwrap(), s.hash_kv(6).unwrap());
    let rev = Revision::new(4, 0).to_bytes();
    let mut kv = s
        .range(&RangeRequest::key("k").at_revision(4))
        .unwrap()
        .kvs
        .pop()
        .unwrap();
    kv.value = b"damaged".to_vec();
    {
        use prost::Message;
        let mut tx = s.backend().batch_tx();
        tx.put(KEY_TABLE, rev.to_vec(), kv.encode_to_vec());
    }
    assert_eq!(s.hash_kv(3).unwrap().hash, h3.hash);
    assert_ne!(s.hash_kv(6).unwrap().hash, h6.hash);
}
