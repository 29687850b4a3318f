//! Moving a real etcd's data into etcd-rs (issue 14 item 5), against Debian's etcd 3.4: the
//! `bbolt` reader and `etcdutl::migrate` on a snapshot that etcd 3.4 writes at test time, with
//! keys over several revisions (updates, deletes, a compaction), overflow pages, leases with
//! keys, users, roles and auth enabled. No binary fixture is committed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::common;

use client::api::authpb::{permission::Type as PermType, Permission};
use client::api::etcdserverpb::{
    AuthEnableRequest, AuthRoleAddRequest, AuthRoleGrantPermissionRequest, AuthUserAddRequest,
    AuthUserGrantRoleRequest, CompactionRequest, DeleteRangeRequest, LeaseGrantRequest, PutRequest,
    RangeRequest,
};
use client::api::mvccpb::KeyValue;
use common::{connect_to, real_etcdctl_ok};
use integration::{real_etcdctl, Cli, Cluster, ClusterSpec, ServerBinary};
use prost::Message;

const ROOT_PASSWORD: &str = "root-pw";

/// An etcd 3.4 whose data covers every bucket the import copies, and a `snapshot save` of it.
struct Source {
    cluster: Cluster,
    snapshot: PathBuf,
    _dir: tempfile::TempDir,
}

/// Keys `k/000`.. over several leaf pages, then updates, deletes and a physical compaction in the
/// middle of that history, a value spanning overflow pages, leases with and without keys, and
/// users and roles with permissions, auth enabled last.
async fn populate(cluster: &Cluster) {
    let client = connect_to(cluster, 0).await;
    for n in 0..400 {
        let value = format!("value-{n}-{}", "x".repeat(n % 97));
        client.put_kv(format!("k/{n:03}"), value).await.unwrap();
    }
    for n in 0..50 {
        client
            .put_kv(format!("k/{n:03}"), format!("updated-{n}"))
            .await
            .unwrap();
    }
    let compact_at = client.put_kv("k/marker", "m").await.unwrap();
    let compact_at = compact_at.header.unwrap().revision;
    for n in 50..60 {
        client
            .delete_range(DeleteRangeRequest {
                key: format!("k/{n:03}").into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    client
        .compact(CompactionRequest {
            revision: compact_at,
            physical: true,
        })
        .await
        .unwrap();
    for n in 0..5 {
        client
            .put_kv(format!("k/{n:03}"), format!("after-compaction-{n}"))
            .await
            .unwrap();
    }
    client.put_kv("big", vec![b'b'; 20_000]).await.unwrap();
    let leased = client
        .lease_grant(LeaseGrantRequest { ttl: 3000, id: 0 })
        .await
        .unwrap()
        .id;
    for key in ["lease/a", "lease/b"] {
        client
            .put(PutRequest {
                key: key.into(),
                value: b"leased".to_vec(),
                lease: leased,
                ..Default::default()
            })
            .await
            .unwrap();
    }
    client
        .lease_grant(LeaseGrantRequest {
            ttl: 2000,
            id: 0x1234,
        })
        .await
        .unwrap();

    for (user, password) in [("root", ROOT_PASSWORD), ("alice", "alice-pw")] {
        client
            .user_add(AuthUserAddRequest {
                name: user.into(),
                password: password.into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    for role in ["root", "reader"] {
        client
            .role_add(AuthRoleAddRequest { name: role.into() })
            .await
            .unwrap();
    }
    for (key, range_end, perm_type) in [
        ("k/", "k0", PermType::Read),
        ("lease/a", "", PermType::Readwrite),
    ] {
        client
            .role_grant_permission(AuthRoleGrantPermissionRequest {
                name: "reader".into(),
                perm: Some(Permission {
                    perm_type: perm_type as i32,
                    key: key.into(),
                    range_end: range_end.into(),
                }),
            })
            .await
            .unwrap();
    }
    for (user, role) in [("root", "root"), ("alice", "reader")] {
        client
            .user_grant_role(AuthUserGrantRoleRequest {
                user: user.into(),
                role: role.into(),
            })
            .await
            .unwrap();
    }
    client.auth_enable(AuthEnableRequest {}).await.unwrap();
}

fn source() -> Source {
    let cluster = Cluster::start(ClusterSpec::new(1)).expect("start etcd 3.4");
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(populate(&cluster));
    let dir = tempfile::tempdir().unwrap();
    let snapshot = dir.path().join("etcd34.db");
    real_etcdctl_ok(
        &cluster,
        &[
            "--user",
            &format!("root:{ROOT_PASSWORD}"),
            "snapshot",
            "save",
            snapshot.to_str().unwrap(),
        ],
    );
    Source {
        cluster,
        snapshot,
        _dir: dir,
    }
}

fn root_etcdctl_ok(cluster: &Cluster, args: &[&str]) -> String {
    let user = format!("root:{ROOT_PASSWORD}");
    let mut all = vec!["--user", &user];
    all.extend_from_slice(args);
    real_etcdctl_ok(cluster, &all)
}

/// A bucket's or table's entries, in key order.
type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Every bucket's entries (nested buckets, which etcd never writes, as `None`).
fn buckets(path: &Path) -> BTreeMap<String, Entries> {
    let db = bbolt::Db::open(path).unwrap();
    let mut out = BTreeMap::new();
    db.root()
        .for_each(|name, value| {
            let bbolt::Value::Bucket(bucket) = value else {
                panic!("top-level key {name:?} is not a bucket");
            };
            let mut entries = Vec::new();
            bucket.for_each(|k, v| {
                match v {
                    bbolt::Value::Data(v) => entries.push((k.to_vec(), v.to_vec())),
                    bbolt::Value::Bucket(_) => panic!("nested bucket in {name:?}"),
                }
                Ok::<_, bbolt::Error>(())
            })?;
            out.insert(String::from_utf8_lossy(name).into_owned(), entries);
            Ok::<_, bbolt::Error>(())
        })
        .unwrap();
    out
}

/// The live keys of a `key` bucket, replayed in revision order.
fn live_keys(rows: &[(Vec<u8>, Vec<u8>)]) -> BTreeMap<Vec<u8>, KeyValue> {
    let mut live = BTreeMap::new();
    for (rev, value) in rows {
        let kv = KeyValue::decode(&value[..]).unwrap();
        if mvcc::is_tombstone(rev) {
            live.remove(&kv.key);
        } else {
            live.insert(kv.key.clone(), kv);
        }
    }
    live
}

#[test]
fn bbolt_reads_what_etcd34_wrote() {
    let source = source();
    let db = bbolt::Db::open(&source.snapshot).unwrap();
    assert_eq!(db.check(), Vec::<String>::new());
    assert_eq!(db.page_size(), 4096);
    // The snapshot's SHA-256 trailer lies past the last page.
    let len = std::fs::metadata(&source.snapshot).unwrap().len();
    assert_eq!(len, db.size() + 32);

    let all = buckets(&source.snapshot);
    for name in [
        "key",
        "meta",
        "lease",
        "auth",
        "authUsers",
        "authRoles",
        "members",
        "cluster",
    ] {
        assert!(all.contains_key(name), "bucket {name} in {:?}", all.keys());
    }
    let rows = &all["key"];
    assert!(rows.windows(2).all(|w| w[0].0 < w[1].0), "key order");
    let from_file = live_keys(rows);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let live = runtime.block_on(async {
        let options = client::ClientOptions {
            credentials: Some(("root".into(), ROOT_PASSWORD.into())),
            ..client::ClientOptions::default()
        };
        let client = client::Client::connect(&[source.cluster.client_url(0)], options)
            .await
            .unwrap();
        client
            .range(RangeRequest {
                key: vec![0],
                range_end: vec![0],
                ..Default::default()
            })
            .await
            .unwrap()
            .kvs
    });
    let live: BTreeMap<Vec<u8>, KeyValue> =
        live.into_iter().map(|kv| (kv.key.clone(), kv)).collect();
    assert_eq!(from_file.len(), live.len());
    assert_eq!(from_file, live);
    assert_eq!(from_file[&b"big"[..]].value.len(), 20_000);
}

#[test]
fn snapshot_status_is_etcd34s() {
    let source = source();
    let status = etcdutl::migrate::bbolt_status(&source.snapshot).unwrap();
    let json = root_etcdctl_ok(
        &source.cluster,
        &[
            "snapshot",
            "status",
            "-w",
            "json",
            source.snapshot.to_str().unwrap(),
        ],
    );
    let want = format!(
        "{{\"hash\":{},\"revision\":{},\"totalKey\":{},\"totalSize\":{}}}\n",
        status.hash, status.revision, status.total_key, status.total_size
    );
    assert_eq!(json, want);
    assert!(etcdutl::migrate::is_bbolt(&source.snapshot).unwrap());
}

#[test]
fn import_copies_the_buckets_etcd_restores() {
    static TABLES: [backend::Table; 10] = [
        mvcc::KEY_TABLE,
        mvcc::META_TABLE,
        backend::Table::new("lease"),
        backend::Table::new("auth"),
        backend::Table::new("authUsers"),
        backend::Table::new("authRoles"),
        backend::Table::new("members"),
        backend::Table::new("members_removed"),
        backend::Table::new("cluster"),
        backend::Table::new("alarm"),
    ];
    let source = source();
    let dst = backend::Backend::in_memory(backend::BackendConfig::default(), &TABLES).unwrap();
    let summary = etcdutl::migrate::import_bbolt(&source.snapshot, &dst).unwrap();
    let all = buckets(&source.snapshot);
    let table = |name: &str| {
        let table = *TABLES.iter().find(|t| t.name() == name).unwrap();
        let mut rows = Vec::new();
        dst.read()
            .scan(table, &[], None, |k, v| {
                rows.push((k.to_vec(), v.to_vec()));
                true
            })
            .unwrap();
        rows
    };
    for name in ["key", "lease", "auth", "authUsers", "authRoles"] {
        assert_eq!(table(name), all[name], "table {name}");
    }
    for name in ["members", "members_removed", "cluster"] {
        assert_eq!(table(name), Vec::new(), "table {name} is the new cluster's");
    }
    // Only the compaction points of meta: the consistent index is the restored cluster's.
    let meta: Vec<Vec<u8>> = table("meta").into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        meta,
        [
            b"finishedCompactRev".to_vec(),
            b"scheduledCompactRev".to_vec()
        ]
    );
    assert_eq!(summary.keys, all["key"].len() as u64);
    assert_eq!(summary.leases, 2);
    assert_eq!((summary.users, summary.roles), (2, 2));
    let status = etcdutl::migrate::bbolt_status(&source.snapshot).unwrap();
    assert_eq!(summary.revision, status.revision);
}

#[test]
fn damaged_files_are_refused_with_a_reason() {
    let source = source();
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(&source.snapshot).unwrap();
    let damaged = |name: &str, edit: &dyn Fn(&mut Vec<u8>)| {
        let mut b = bytes.clone();
        edit(&mut b);
        let path = dir.path().join(name);
        std::fs::write(&path, b).unwrap();
        path
    };
    // Both meta pages' checksums broken.
    let metas = damaged("metas", &|b| {
        b[16 + 60] ^= 1;
        b[4096 + 16 + 60] ^= 1;
    });
    let err = etcdutl::migrate::bbolt_status(&metas).unwrap_err();
    assert_eq!(err.to_string(), "checksum error");
    // Truncated to its first page.
    let short = damaged("short", &|b| b.truncate(4096));
    assert!(etcdutl::migrate::is_bbolt(&short).unwrap());
    assert_eq!(
        etcdutl::migrate::bbolt_status(&short)
            .unwrap_err()
            .to_string(),
        "file size too small"
    );
    // Truncated in the middle: pages the tree needs are missing.
    let half = damaged("half", &|b| b.truncate(b.len() / 2 / 4096 * 4096));
    let err = etcdutl::migrate::bbolt_status(&half)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("snapshot file integrity check failed."),
        "{err}"
    );
    let backend = backend::Backend::in_memory(Default::default(), &mvcc::TABLES).unwrap();
    assert!(etcdutl::migrate::import_bbolt(&half, &backend).is_err());
    // Our own snapshot format and other files are not bbolt.
    let other = damaged("other", &|b| b[16..20].copy_from_slice(b"ETCD"));
    assert!(!etcdutl::migrate::is_bbolt(&other).unwrap());
}

/// A one-member cluster of `server` booted on `snapshot` restored by `etcdctl` (its `snapshot
/// restore` with the member's name and peer URL): the same member the harness started, new data.
fn restored(server: ServerBinary, etcdctl: PathBuf, snapshot: &Path) -> Cluster {
    let mut cluster = Cluster::start(ClusterSpec {
        server,
        ..ClusterSpec::new(1)
    })
    .expect("start the cluster to restore into");
    cluster.stop(0).unwrap();
    cluster.wipe(0).unwrap();
    let name = cluster.name(0).to_string();
    let peer = cluster.peer_url(0).to_string();
    let data_dir = cluster.data_dir(0).to_str().unwrap().to_string();
    // The member's token too: etcd-rs refuses a data dir whose ids its flags do not describe.
    let args = &cluster.command(0).args;
    let token_at = args
        .iter()
        .position(|a| a == "--initial-cluster-token")
        .unwrap();
    let token = args[token_at + 1].clone();
    Cli::new(etcdctl)
        .args([
            "snapshot",
            "restore",
            snapshot.to_str().unwrap(),
            "--data-dir",
            &data_dir,
            "--name",
            &name,
            "--initial-cluster",
            &format!("{name}={peer}"),
            "--initial-advertise-peer-urls",
            &peer,
            "--initial-cluster-token",
            &token,
        ])
        .run_ok()
        .unwrap_or_else(|e| panic!("snapshot restore: {e}"));
    cluster.restart(0).unwrap();
    cluster
        .wait_healthy(0, common::WAIT)
        .unwrap_or_else(|e| panic!("the restored member: {e}\n{}", cluster.log_tail(0)));
    cluster
}

/// etcdctl 3.4's output for `args` (stdout, or the last stderr line on failure).
fn answer(cluster: &Cluster, user: Option<&str>, args: &[&str]) -> String {
    let mut cli = cluster.cli(real_etcdctl());
    if let Some(user) = user {
        cli = cli.args(["--user", user]);
    }
    let out = cli.args(args).run().unwrap();
    if out.success() {
        out.stdout
    } else {
        let stderr = integration::output::without_logs(&out.stderr);
        stderr.lines().last().unwrap_or_default().to_string()
    }
}

/// The member's and cluster's ids and the raft term replaced by `N`: a restored member is a new
/// cluster; everything else in a response must be the original's.
fn ids_masked(text: &str) -> String {
    let mut out = text.to_string();
    for key in ["\"cluster_id\":", "\"member_id\":", "\"raft_term\":"] {
        let mut from = 0;
        while let Some(at) = out[from..].find(key) {
            let start = from + at + key.len();
            let end = out[start..]
                .find(|c: char| !c.is_ascii_digit())
                .map_or(out.len(), |e| start + e);
            out.replace_range(start..end, "N");
            from = start;
        }
    }
    out
}

/// `"ttl":<n>` in a `lease timetolive -w json` answer, then the answer with it masked.
fn ttl_split(text: &str) -> (i64, String) {
    let key = "\"ttl\":";
    let at = text.find(key).unwrap_or_else(|| panic!("no ttl in {text}")) + key.len();
    let end = text[at..]
        .find(|c: char| !c.is_ascii_digit() && c != '-')
        .unwrap()
        + at;
    let ttl = text[at..end].parse().unwrap();
    (
        ttl,
        keys_sorted(&format!("{}N{}", &text[..at], &text[end..])),
    )
}

/// The `"keys":[...]` list sorted: etcd lists a lease's keys in its map's order.
fn keys_sorted(text: &str) -> String {
    let key = "\"keys\":[";
    let Some(at) = text.find(key).map(|a| a + key.len()) else {
        return text.to_string();
    };
    let end = text[at..].find(']').unwrap() + at;
    let mut keys: Vec<&str> = text[at..end].split(',').collect();
    keys.sort_unstable();
    format!("{}{}{}", &text[..at], keys.join(","), &text[end..])
}

fn lease_ids(cluster: &Cluster, root: &str) -> Vec<String> {
    let listed = answer(cluster, Some(root), &["lease", "list"]);
    let mut ids: Vec<String> = listed.lines().skip(1).map(str::to_owned).collect();
    ids.sort();
    ids
}

/// What a client of `restored` sees is what it saw on `original`: keys with their revisions,
/// versions and leases, the compaction point, leases with their keys, users and roles, and auth.
fn assert_same_data(original: &Cluster, restored: &Cluster) {
    let root_user = format!("root:{ROOT_PASSWORD}");
    let root = Some(root_user.as_str());
    let both = |user: Option<&str>, args: &[&str]| {
        let want = ids_masked(&answer(original, user, args));
        let got = ids_masked(&answer(restored, user, args));
        assert_eq!(got, want, "etcdctl {args:?}");
        got
    };
    let all = both(root, &["get", "", "--prefix", "-w", "json"]);
    assert!(all.contains("\"count\":"), "{all}");
    both(
        root,
        &["get", "k/", "--prefix", "--keys-only", "--limit", "7"],
    );
    both(root, &["get", "k/000", "--rev", "2"]);
    both(root, &["get", "big", "-w", "json"]);
    for args in [
        &["user", "list"][..],
        &["role", "list"],
        &["user", "get", "alice"],
        &["user", "get", "root"],
        &["role", "get", "reader"],
        &["role", "get", "root"],
    ] {
        both(root, args);
    }
    // Auth is on: no user, a user without the permission, one with it.
    let denied = both(None, &["get", "k/001"]);
    assert_eq!(denied, "Error: etcdserver: user name is empty");
    both(Some("alice:alice-pw"), &["put", "k/001", "x"]);
    both(Some("alice:alice-pw"), &["get", "k/001"]);
    both(Some("alice:wrong"), &["get", "k/001"]);

    let ids = lease_ids(original, &root_user);
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert_eq!(lease_ids(restored, &root_user), ids);
    for id in &ids {
        let args = ["lease", "timetolive", id.as_str(), "--keys", "-w", "json"];
        let (want_ttl, want) = ttl_split(&ids_masked(&answer(original, root, &args)));
        let (got_ttl, got) = ttl_split(&ids_masked(&answer(restored, root, &args)));
        assert_eq!(got, want, "etcdctl {args:?}");
        assert!(got_ttl > 0 && want_ttl > 0, "{got_ttl} {want_ttl}");
    }
}

fn restore_and_compare(server: ServerBinary) {
    let source = source();
    let etcdctl = if server == ServerBinary::real_etcd() {
        real_etcdctl()
    } else {
        common::our_etcdctl()
    };
    let restored = restored(server, etcdctl, &source.snapshot);
    assert_same_data(&source.cluster, &restored);
}

integration::server_tests! {
    fn restore_and_compare;
}

/// `snapshot status` of etcd 3.4's snapshot in every output format, and of damaged copies:
/// our etcdctl prints what etcdctl 3.4 prints.
#[test]
fn our_etcdctl_snapshot_status_is_etcdctl34s() {
    let source = source();
    let dir = tempfile::tempdir().unwrap();
    let truncated = dir.path().join("truncated.db");
    let bytes = std::fs::read(&source.snapshot).unwrap();
    std::fs::write(&truncated, &bytes[..5000]).unwrap();
    let missing = dir.path().join("missing.db");
    let files = [&source.snapshot, &truncated, &missing];
    for file in files {
        for format in ["simple", "json", "table", "fields", "protobuf"] {
            let args = ["snapshot", "status", file.to_str().unwrap(), "-w", format];
            let want = Cli::new(real_etcdctl()).args(args).run().unwrap();
            let got = Cli::new(common::our_etcdctl()).args(args).run().unwrap();
            assert_eq!(got.stdout, want.stdout, "{args:?}");
            assert_eq!(
                integration::output::without_logs(&got.stderr),
                integration::output::without_logs(&want.stderr),
                "{args:?}"
            );
            assert_eq!(got.code(), want.code(), "{args:?}");
        }
    }
}
