//! Watch guarantees: every revision once, in order, whole, from any start revision; slow
//! watchers never block writers and lose nothing; compaction and progress semantics.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use mvcc::*;

const WAIT: Duration = Duration::from_secs(20);

fn put(s: &Store, k: &str, v: &str) -> i64 {
    s.put(&PutRequest::new(k, v)).unwrap().revision
}

fn watch(stream: &mut WatchStream, key: &str, end: &[u8], start: i64) -> WatchId {
    stream
        .watch(&WatchRequest {
            key: key.as_bytes().to_vec(),
            range_end: end.to_vec(),
            start_revision: start,
            ..Default::default()
        })
        .unwrap()
}

/// Receives until an event at `last` (or later) arrived; returns every response.
fn collect_until(stream: &mut WatchStream, last: i64) -> Vec<WatchResponse> {
    let deadline = Instant::now() + WAIT;
    let mut out: Vec<WatchResponse> = Vec::new();
    while out
        .last()
        .and_then(|r| r.events.last())
        .map_or(0, |e| e.revision())
        < last
    {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "timed out waiting for revision {last}; got {out:?}"
        );
        if let Some(r) = stream.recv_timeout(left) {
            out.push(r);
        }
    }
    out
}

fn revisions(resps: &[WatchResponse]) -> Vec<i64> {
    resps
        .iter()
        .flat_map(|r| r.events.iter().map(Event::revision))
        .collect()
}

#[test]
fn events_of_one_revision_arrive_together_and_in_order() {
    let s = memory_store();
    let mut stream = s.watch_stream();
    let id = watch(&mut stream, "a", b"b", 0);
    assert_eq!(id, 0);
    let txn = TxnRequest {
        success: vec![
            RequestOp::Put(PutRequest::new("a1", "x")),
            RequestOp::Put(PutRequest::new("zz", "outside")),
            RequestOp::Put(PutRequest::new("a2", "y")),
            RequestOp::DeleteRange(DeleteRangeRequest::new("a1", "")),
        ],
        ..Default::default()
    };
    s.txn(&txn, &no_leases).unwrap();
    let r = stream.recv_timeout(WAIT).unwrap();
    assert_eq!((r.watch_id, r.revision, r.compact_revision), (0, 2, 0));
    let got: Vec<(bool, &[u8])> = r.events.iter().map(|e| (e.is_put(), e.key())).collect();
    assert_eq!(got, [(true, &b"a1"[..]), (true, b"a2"), (false, b"a1")]);
    let del = r.events[2].kv.as_ref().unwrap();
    assert_eq!(
        (del.mod_revision, del.create_revision, del.version),
        (2, 0, 0)
    );
    assert!(stream.try_recv().is_none());
}

#[test]
fn a_watcher_from_the_past_catches_up_in_batches_then_follows() {
    let s = memory_store();
    for i in 0..300 {
        put(&s, if i % 2 == 0 { "k" } else { "other" }, &i.to_string()); // 2..=301
    }
    let mut stream = s.watch_stream();
    watch(&mut stream, "k", b"", 10);
    let mut resps = collect_until(&mut stream, 300);
    put(&s, "k", "live"); // 302
    resps.extend(collect_until(&mut stream, 302));
    let revs = revisions(&resps);
    let want: Vec<i64> = (10..=302).filter(|r| r % 2 == 0).collect();
    assert_eq!(revs, want);
    assert!(resps.len() > 2, "caught up in several bounded rounds");
}

#[test]
fn a_compacted_start_revision_reports_the_compaction_and_closes() {
    let s = memory_store();
    for i in 0..10 {
        put(&s, "k", &i.to_string()); // 2..=11
    }
    s.compact(6).unwrap().run().unwrap();
    let mut stream = s.watch_stream();
    let id = watch(&mut stream, "k", b"", 3);
    let r = stream.recv_timeout(WAIT).unwrap();
    assert_eq!((r.watch_id, r.compact_revision), (id, 6));
    assert!(r.events.is_empty());
    put(&s, "k", "after");
    assert!(
        stream.recv_timeout(Duration::from_millis(100)).is_none(),
        "the watcher is gone"
    );
    // Starting exactly at the compaction revision is allowed.
    let id = watch(&mut stream, "k", b"", 6);
    let resps = collect_until(&mut stream, 12);
    assert!(resps
        .iter()
        .all(|r| r.watch_id == id && r.compact_revision == 0));
    assert_eq!(revisions(&resps), (6..=12).collect::<Vec<_>>());
}

#[test]
fn filters_and_prev_kv() {
    let s = memory_store();
    put(&s, "k", "v1"); // 2
    let mut stream = s.watch_stream();
    let req = |no_put, no_delete, prev_kv| WatchRequest {
        key: b"k".to_vec(),
        start_revision: 2,
        no_put,
        no_delete,
        prev_kv,
        ..Default::default()
    };
    let puts_only = stream.watch(&req(false, true, false)).unwrap();
    let deletes_only = stream.watch(&req(true, false, false)).unwrap();
    let with_prev = stream.watch(&req(false, false, true)).unwrap();
    put(&s, "k", "v2"); // 3
    s.delete_range(&DeleteRangeRequest::new("k", "")).unwrap(); // 4
    let mut by_id: std::collections::HashMap<WatchId, Vec<Event>> = Default::default();
    let deadline = Instant::now() + WAIT;
    while by_id.values().map(Vec::len).sum::<usize>() < 2 + 1 + 3 {
        assert!(Instant::now() < deadline, "missing events: {by_id:?}");
        if let Some(r) = stream.recv_timeout(Duration::from_millis(50)) {
            by_id.entry(r.watch_id).or_default().extend(r.events);
        }
    }
    assert!(by_id[&puts_only].iter().all(Event::is_put));
    assert_eq!(by_id[&puts_only].len(), 2);
    assert_eq!(by_id[&deletes_only].len(), 1);
    let evs = &by_id[&with_prev];
    assert_eq!(evs[0].prev_kv, None, "a creation has no previous value");
    assert_eq!(evs[1].prev_kv.as_ref().unwrap().value, b"v1");
    assert_eq!(evs[2].prev_kv.as_ref().unwrap().value, b"v2");
}

#[test]
fn watch_ids_ranges_and_cancel() {
    let s = memory_store();
    let mut stream = s.watch_stream();
    assert_eq!(watch(&mut stream, "a", b"", 0), 0);
    assert_eq!(watch(&mut stream, "a", b"", 0), 1);
    let explicit = WatchRequest {
        key: b"a".to_vec(),
        watch_id: 7,
        ..Default::default()
    };
    assert_eq!(stream.watch(&explicit), Ok(7));
    assert_eq!(stream.watch(&explicit), Err(WatchError::DuplicateId));
    let empty = WatchRequest {
        key: b"b".to_vec(),
        range_end: b"a".to_vec(),
        ..Default::default()
    };
    assert_eq!(stream.watch(&empty), Err(WatchError::EmptyRange));
    assert!(stream.cancel(1));
    assert!(!stream.cancel(1));
    assert_eq!(
        watch(&mut stream, "a", b"", 0),
        1,
        "the smallest unused id again"
    );
    assert!(stream.cancel(1));
    put(&s, "a", "x");
    let mut ids = Vec::new();
    while let Some(r) = stream.recv_timeout(Duration::from_millis(100)) {
        ids.push(r.watch_id);
    }
    ids.sort();
    assert_eq!(ids, [0, 7]);
}

#[test]
fn a_slow_watcher_never_blocks_writes_and_loses_nothing() {
    let s = memory_store(); // stream capacity 16
    let mut slow = s.watch_stream();
    watch(&mut slow, "k", b"", 0);
    let mut fast = s.watch_stream();
    watch(&mut fast, "k", b"", 0);
    // Nobody reads `slow` while 500 revisions are written: writers must not wait for it.
    let mut fast_resps = Vec::new();
    for i in 0..500 {
        put(&s, "k", &i.to_string()); // 2..=501
        while let Some(r) = fast.try_recv() {
            fast_resps.push(r);
        }
    }
    if revisions(&fast_resps).last() != Some(&501) {
        fast_resps.extend(collect_until(&mut fast, 501));
    }
    assert_eq!(revisions(&fast_resps), (2..=501).collect::<Vec<_>>());
    let slow_resps = collect_until(&mut slow, 501);
    assert_eq!(revisions(&slow_resps), (2..=501).collect::<Vec<_>>());
}

#[test]
fn progress_notification_revision_is_safe_to_resume_from() {
    let s = memory_store();
    let mut stream = s.watch_stream();
    let id = watch(&mut stream, "k", b"", 0);
    put(&s, "k", "1"); // 2
    put(&s, "other", "x"); // 3
    assert!(stream.request_progress(id));
    let r = stream.recv_timeout(WAIT).unwrap();
    assert_eq!(r.revision, 2);
    let p = stream.recv_timeout(WAIT).unwrap();
    assert!(p.events.is_empty());
    assert_eq!((p.watch_id, p.revision), (id, 3));
    assert!(stream.request_progress_all());
    assert_eq!(stream.recv_timeout(WAIT).unwrap().watch_id, -1);
    // A watcher still catching up gets none.
    let mut behind = s.watch_stream();
    for i in 0..200 {
        put(&s, "k", &i.to_string());
    }
    let w = watch(&mut behind, "k", b"", 2);
    let first = behind.recv_timeout(WAIT).unwrap();
    assert!(!first.events.is_empty());
    let resumed_at = p.revision + 1;
    let mut again = s.watch_stream();
    watch(&mut again, "k", b"", resumed_at);
    let resps = collect_until(&mut again, s.current_revision());
    assert_eq!(
        revisions(&resps)[0],
        4,
        "nothing at or before the progress revision repeats"
    );
    let _ = w;
}

#[test]
fn async_consumers_can_await_responses() {
    let s = Arc::new(memory_store());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let mut stream = s.watch_stream();
    watch(&mut stream, "k", b"", 0);
    let writer = {
        let s = s.clone();
        std::thread::spawn(move || {
            for i in 0..20 {
                put(&s, "k", &i.to_string());
            }
        })
    };
    let got = rt.block_on(async {
        let mut revs = Vec::new();
        while revs.last() != Some(&21) {
            let r = tokio::time::timeout(WAIT, stream.recv())
                .await
                .unwrap()
                .unwrap();
            revs.extend(r.events.iter().map(Event::revision));
        }
        revs
    });
    writer.join().unwrap();
    assert_eq!(got, (2..=21).collect::<Vec<_>>());
}

/// Revision r (r >= 2) of the writer below puts 3 keys under `w/{r % 7}/`, and every 5th one
/// also (from 10 on, when that key surely exists) deletes `w/{(r + 3) % 7}/a`.
fn expected_events(r: i64, prefix: &str) -> usize {
    let mut n = 0;
    if format!("w/{}/", r % 7).starts_with(prefix) {
        n += 3;
    }
    if r % 5 == 0
        && r >= 10
        && format!("w/{}/a", (r + 3) % 7).starts_with(prefix)
        && (r + 3) % 7 != r % 7
    {
        n += 1;
    }
    n
}

#[test]
fn concurrent_writes_reach_every_watcher_ordered_gapless_and_whole() {
    const LAST: i64 = 1501;
    const PAUSE_AT: i64 = 500;
    let s = Arc::new(memory_store());
    // The writer pauses at PAUSE_AT until every watcher exists, so "from now" means 501.
    let barrier = Arc::new(std::sync::Barrier::new(5));
    let writer = {
        let s = s.clone();
        let barrier = barrier.clone();
        std::thread::spawn(move || {
            for r in 2..=LAST {
                if r == PAUSE_AT + 1 {
                    barrier.wait();
                }
                let g = r % 7;
                let mut ops: Vec<RequestOp> = ["a", "b", "c"]
                    .iter()
                    .map(|k| RequestOp::Put(PutRequest::new(format!("w/{g}/{k}"), r.to_string())))
                    .collect();
                if r % 5 == 0 && r >= 10 && (r + 3) % 7 != g {
                    ops.push(RequestOp::DeleteRange(DeleteRangeRequest::new(
                        format!("w/{}/a", (r + 3) % 7),
                        "",
                    )));
                }
                let resp = s
                    .txn(
                        &TxnRequest {
                            success: ops,
                            ..Default::default()
                        },
                        &no_leases,
                    )
                    .unwrap();
                assert_eq!(resp.revision, r);
            }
        })
    };
    // Watchers from now and from the past, on several ranges, reading while the writer goes on.
    let specs: Vec<(&str, Vec<u8>, bool)> = vec![
        ("w/", prefix_range_end(b"w/"), false),
        ("w/3/", prefix_range_end(b"w/3/"), false),
        ("w/", prefix_range_end(b"w/"), true),
        ("w/5/", prefix_range_end(b"w/5/"), true),
    ];
    let readers: Vec<_> = specs
        .into_iter()
        .enumerate()
        .map(|(i, (prefix, end, from_past))| {
            let s = s.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                testkit::eventually(WAIT, "the writer to reach the pause", || {
                    s.current_revision() >= PAUSE_AT
                });
                let mut stream = s.watch_stream();
                let start = if from_past { 2 } else { 0 };
                let req = WatchRequest {
                    key: prefix.as_bytes().to_vec(),
                    range_end: end,
                    start_revision: start,
                    ..Default::default()
                };
                stream.watch(&req).unwrap();
                barrier.wait();
                let first = if from_past { 2 } else { PAUSE_AT + 1 };
                let deadline = Instant::now() + WAIT;
                let mut resps = Vec::new();
                let last = (2..=LAST)
                    .rev()
                    .find(|&r| expected_events(r, prefix) > 0)
                    .unwrap();
                let mut seen_last = 0;
                while seen_last < last {
                    assert!(
                        Instant::now() < deadline,
                        "watcher {i} stuck at {seen_last}"
                    );
                    if let Some(r) = stream.recv_timeout(Duration::from_millis(20)) {
                        // A reader that is slow on purpose, to become a victim now and then.
                        if i == 2 && resps.len() % 50 == 0 {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        seen_last = r.events.last().map_or(seen_last, Event::revision);
                        resps.push(r);
                    }
                }
                (prefix, first, resps)
            })
        })
        .collect();
    writer.join().unwrap();
    for reader in readers {
        let (prefix, first, resps) = reader.join().unwrap();
        let mut per_rev: Vec<(i64, usize)> = Vec::new();
        for resp in &resps {
            assert_eq!(resp.compact_revision, 0);
            let mut in_resp: Vec<(i64, usize)> = Vec::new();
            for ev in &resp.events {
                assert!(ev.key().starts_with(prefix.as_bytes()));
                match in_resp.last_mut() {
                    Some((r, n)) if *r == ev.revision() => *n += 1,
                    _ => in_resp.push((ev.revision(), 1)),
                }
            }
            // Whole revisions only: never split across responses.
            if let (Some(a), Some(b)) = (per_rev.last(), in_resp.first()) {
                assert!(a.0 < b.0, "{prefix}: revision {} split or repeated", b.0);
            }
            per_rev.extend(in_resp);
        }
        // From the start revision on, nothing is missing, repeated or split.
        let want: Vec<(i64, usize)> = (first..=LAST)
            .map(|r| (r, expected_events(r, prefix)))
            .filter(|(_, n)| *n > 0)
            .collect();
        if let Some(i) = (0..per_rev.len().max(want.len())).find(|&i| per_rev.get(i) != want.get(i))
        {
            panic!(
                "{prefix}: at #{i} got {:?}, want {:?}",
                per_rev.get(i),
                want.get(i)
            );
        }
    }
}

#[test]
fn a_victim_whose_next_events_are_compacted_gets_the_compaction() {
    let s = memory_store(); // stream capacity 16
    let mut stream = s.watch_stream();
    let id = watch(&mut stream, "k", b"", 0);
    for i in 0..100 {
        put(&s, "k", &i.to_string()); // 2..=101
    }
    s.compact(90).unwrap().run().unwrap();
    let deadline = Instant::now() + WAIT;
    let mut revs = Vec::new();
    let compacted = loop {
        assert!(
            Instant::now() < deadline,
            "no compaction notice after {revs:?}"
        );
        let Some(r) = stream.recv_timeout(Duration::from_millis(50)) else {
            continue;
        };
        assert_eq!(r.watch_id, id);
        if r.compact_revision != 0 {
            break r.compact_revision;
        }
        revs.extend(r.events.iter().map(Event::revision));
    };
    assert_eq!(compacted, 90);
    // What was buffered before arrives in order without gaps, then the watcher is closed.
    let want: Vec<i64> = (2..2 + revs.len() as i64).collect();
    assert_eq!(revs, want);
    assert!(revs.len() >= 16 && revs.len() < 89);
    put(&s, "k", "after");
    assert!(stream.recv_timeout(Duration::from_millis(100)).is_none());
}
