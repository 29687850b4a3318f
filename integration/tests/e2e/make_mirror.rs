//! `etcdctl make-mirror` (issue 14 item 5): a live cluster mirrored into another, etcd 3.4 into
//! etcd-rs and etcd-rs into etcd 3.4, by our etcdctl and by etcdctl 3.4 side by side. The
//! destination gets the prefix's keys under the destination prefix, then follows puts and
//! deletes, and the mirror prints its count every 30 seconds.

use std::time::Duration;

use crate::common;

use client::api::etcdserverpb::{DeleteRangeRequest, PutRequest, TxnRequest};
use client::{txn, Client};
use common::{connect_to, dump, our_etcdctl, start, WAIT};
use integration::{real_etcdctl, Background, Cluster, ServerBinary};
use testkit::eventually_async;

/// The first count line comes 30 s after the start.
const COUNT_WAIT: Duration = Duration::from_secs(45);

fn mirror(
    etcdctl: std::path::PathBuf,
    source: &Cluster,
    dest: &Cluster,
    flags: &[&str],
) -> Background {
    source
        .cli(etcdctl)
        .arg("make-mirror")
        .args(flags)
        .arg(dest.client_url(0))
        .spawn()
        .expect("start make-mirror")
}

/// Waits until `dest_prefix` on `dest` holds `want` (keys with `src_prefix` renamed).
async fn mirrored(dest: &Client, dest_prefix: &str, src_prefix: &str, want: &[(String, String)]) {
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(k, v)| (k.replacen(src_prefix, dest_prefix, 1), v.clone()))
        .collect();
    let what = format!("{dest_prefix} to mirror {src_prefix}");
    eventually_async(WAIT, &what, || async {
        dump(dest, dest_prefix).await == want
    })
    .await;
}

async fn follows(from: ServerBinary, to: ServerBinary) {
    let source = start(from, 1);
    let dest = start(to, 1);
    let src = connect_to(&source, 0).await;
    let dst = connect_to(&dest, 0).await;
    for n in 0..1500 {
        src.put_kv(format!("src/{n:04}"), format!("v{n}"))
            .await
            .unwrap();
    }
    src.put_kv("src/0001", "updated").await.unwrap();
    src.put_kv("other/x", "not mirrored").await.unwrap();

    let mut ours = mirror(
        our_etcdctl(),
        &source,
        &dest,
        &[
            "--prefix",
            "src/",
            "--dest-prefix",
            "ours/",
            "--max-txn-ops",
            "2",
        ],
    );
    let mut theirs = mirror(
        real_etcdctl(),
        &source,
        &dest,
        &["--prefix", "src/", "--dest-prefix", "theirs/"],
    );
    let want = dump(&src, "src/").await;
    mirrored(&dst, "ours/", "src/", &want).await;
    mirrored(&dst, "theirs/", "src/", &want).await;

    // Puts, deletes, and a transaction of several of each at one revision.
    src.put_kv("src/new", "n").await.unwrap();
    src.delete_range(DeleteRangeRequest {
        key: b"src/0003".to_vec(),
        ..Default::default()
    })
    .await
    .unwrap();
    let ops = (10..15)
        .map(|n| {
            txn::put(PutRequest {
                key: format!("src/{n:04}").into(),
                value: b"in a txn".to_vec(),
                ..Default::default()
            })
        })
        .chain((20..25).map(|n| {
            txn::delete(DeleteRangeRequest {
                key: format!("src/{n:04}").into(),
                ..Default::default()
            })
        }))
        .collect();
    src.txn(TxnRequest {
        success: ops,
        ..Default::default()
    })
    .await
    .unwrap();
    src.put_kv("other/y", "not mirrored").await.unwrap();
    let want = dump(&src, "src/").await;
    mirrored(&dst, "ours/", "src/", &want).await;
    mirrored(&dst, "theirs/", "src/", &want).await;
    assert!(dump(&dst, "other/").await.is_empty());

    // 1500 keys copied, then 1 put, 1 delete and 10 operations of the txn.
    let counts =
        common::blocking(|| [&mut ours, &mut theirs].map(|m| m.next_line(COUNT_WAIT).unwrap()));
    assert_eq!(counts, [Some("1512".to_string()), Some("1512".to_string())]);
    for m in [ours, theirs] {
        let out = m.kill().unwrap();
        assert_eq!(
            integration::output::without_logs(&out.stderr),
            "",
            "{}",
            out.stderr
        );
    }
}

integration::server_tests! {
    async fn follows_etcd34_into;
}

/// etcd 3.4 as the source, mirrored into `server`.
async fn follows_etcd34_into(server: ServerBinary) {
    follows(ServerBinary::real_etcd(), server).await
}

/// etcd-rs as the source, both etcdctls mirroring it into etcd 3.4 and into etcd-rs.
#[tokio::test(flavor = "multi_thread")]
async fn follows_etcd_rs_into_etcd34() {
    follows(ServerBinary::etcd_rs().unwrap(), ServerBinary::real_etcd()).await
}

/// `--no-dest-prefix` puts the keys at the destination's root; without a prefix everything is
/// mirrored under `--dest-prefix`.
#[tokio::test(flavor = "multi_thread")]
async fn prefix_rewriting() {
    let source = start(ServerBinary::real_etcd(), 1);
    let dest = start(ServerBinary::etcd_rs().unwrap(), 1);
    let src = connect_to(&source, 0).await;
    let dst = connect_to(&dest, 0).await;
    for key in ["app/a", "app/b", "zz"] {
        src.put_kv(key, format!("value of {key}")).await.unwrap();
    }
    let _root = mirror(
        our_etcdctl(),
        &source,
        &dest,
        &["--prefix", "app/", "--no-dest-prefix"],
    );
    let _all = mirror(our_etcdctl(), &source, &dest, &["--dest-prefix", "copy/"]);
    let at_root = vec![
        ("a".to_string(), "value of app/a".to_string()),
        ("b".to_string(), "value of app/b".to_string()),
    ];
    eventually_async(WAIT, "app/ at the root", || async {
        let a = dump(&dst, "a").await;
        let b = dump(&dst, "b").await;
        [a, b].concat() == at_root
    })
    .await;
    src.put_kv("app/c", "c").await.unwrap();
    let want = [dump(&src, "app/").await, dump(&src, "zz").await].concat();
    mirrored(&dst, "copy/", "", &want).await;
    eventually_async(WAIT, "app/c at the root", || async {
        // Exactly `c`: `copy/...` shares its first letter.
        let at_c: Vec<_> = dump(&dst, "c")
            .await
            .into_iter()
            .filter(|(k, _)| k == "c")
            .collect();
        at_c == [("c".to_string(), "c".to_string())]
    })
    .await;
}

/// Bad arguments: both etcdctls answer the same.
#[test]
fn bad_arguments_as_etcdctl34() {
    let source = start(ServerBinary::real_etcd(), 1);
    let dest_url = source.client_url(0).to_string();
    for args in [
        vec!["make-mirror"],
        vec!["make-mirror", "a", "b"],
        vec![
            "make-mirror",
            "--dest-prefix",
            "x/",
            "--no-dest-prefix",
            &dest_url,
        ],
    ] {
        let want = source.cli(real_etcdctl()).args(&args).run().unwrap();
        let got = source.cli(our_etcdctl()).args(&args).run().unwrap();
        assert_eq!(got.code(), want.code(), "{args:?}");
        assert_eq!(
            integration::output::without_logs(&got.stderr),
            integration::output::without_logs(&want.stderr),
            "{args:?}"
        );
    }
}
