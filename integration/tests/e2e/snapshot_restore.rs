//! `snapshot save | status | restore` through the binaries: a 3-member etcd-rs cluster saved
//! with our etcdctl and restored with our etcdctl and etcdutl boots with the same data and
//! revision and with the member ids Debian's etcdctl 3.4 restore gives for the same flags
//! (checked by booting that restore with Debian's etcd); etcdutl defrag and backup of a stopped
//! member; `--bump-revision --mark-compacted`; and bad input refused with etcd's errors and nothing
//! left behind.

use crate::common;

use std::path::{Path, PathBuf};

use common::*;
use integration::output::without_logs;
use integration::{bin_path, real_etcdctl, Cli, Cluster, CmdOutput, ServerBinary};
use testkit::eventually;

fn run(cli: Cli) -> CmdOutput {
    cli.run().unwrap_or_else(|e| panic!("{e}"))
}

fn ok(cli: Cli) -> String {
    let out = run(cli);
    assert_eq!(
        out.code(),
        Some(0),
        "stdout {:?} stderr {:?}",
        out.stdout,
        out.stderr
    );
    out.stdout
}

fn etcdutl() -> PathBuf {
    bin_path("etcdutl").unwrap_or_else(|e| panic!("{e}"))
}

fn ctl(bin: &Path, endpoints: &str) -> Cli {
    Cli::new(bin).arg(format!("--endpoints={endpoints}"))
}

/// The same writes on any server: puts, an overwrite, a delete and a leased key.
fn write_data(bin: &Path, endpoints: &str) {
    for i in 0..20 {
        ok(ctl(bin, endpoints).args(["put", &format!("key/{i:02}"), &format!("value-{i}")]));
    }
    ok(ctl(bin, endpoints).args(["put", "key/00", "again"]));
    ok(ctl(bin, endpoints).args(["del", "key/05"]));
    let grant = ok(ctl(bin, endpoints).args(["lease", "grant", "600"]));
    let lease = grant
        .split_whitespace()
        .nth(1)
        .expect("lease id")
        .to_string();
    ok(ctl(bin, endpoints).args(["put", "leased", "v", &format!("--lease={lease}")]));
}

/// `get --prefix -w json` reduced to what a restore keeps: the kvs and the revision.
fn content(bin: &Path, endpoints: &str) -> (serde_json::Value, i64) {
    let out = ok(ctl(bin, endpoints).args(["get", "", "--prefix", "-w", "json"]));
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    (
        v["kvs"].clone(),
        v["header"]["revision"].as_i64().expect("revision"),
    )
}

/// Member ids from `member list`, sorted.
fn member_ids(endpoints: &str) -> Vec<String> {
    let out = ok(ctl(&our_etcdctl(), endpoints).args(["member", "list"]));
    let mut ids: Vec<String> = out
        .lines()
        .map(|l| l.split(", ").next().unwrap_or_default().to_string())
        .collect();
    ids.sort();
    ids
}

fn initial_cluster(cluster: &Cluster) -> String {
    (0..cluster.size())
        .map(|i| format!("{}={}", cluster.name(i), cluster.peer_url(i)))
        .collect::<Vec<_>>()
        .join(",")
}

/// The `--initial-cluster-token` the harness started `cluster` with. A restore must use the
/// flags the members restart with: etcd ignores them on a restart, but our server refuses a
/// data dir whose member and cluster ids both differ from the ones its flags give.
fn harness_token(cluster: &Cluster) -> String {
    let args = &cluster.command(0).args;
    let at = args
        .iter()
        .position(|a| a == "--initial-cluster-token")
        .expect("the harness sets a token");
    args[at + 1].clone()
}

/// The restore flags of member `i` of a new cluster on `cluster`'s names, URLs and token.
fn restore_flags(cluster: &Cluster, i: usize) -> Vec<String> {
    vec![
        format!("--name={}", cluster.name(i)),
        format!("--initial-cluster={}", initial_cluster(cluster)),
        format!("--initial-cluster-token={}", harness_token(cluster)),
        format!("--initial-advertise-peer-urls={}", cluster.peer_url(i)),
        format!("--data-dir={}", cluster.data_dir(i).display()),
    ]
}

/// A bbolt snapshot of a real etcd 3.4 holding [`write_data`]'s writes.
fn real_etcd_snapshot(dir: &Path) -> PathBuf {
    let cluster = start(ServerBinary::real_etcd(), 1);
    write_data(&real_etcdctl(), &cluster.endpoints());
    let path = dir.join("etcd34.db");
    ok(ctl(&real_etcdctl(), &cluster.endpoints())
        .args(["snapshot", "save"])
        .arg(&path));
    path
}

/// Restores `snapshot` on `cluster`'s stopped members with Debian's etcdctl 3.4, boots the
/// result with Debian's etcd on the same command lines, and returns its member ids.
fn ids_of_etcd34_restore(cluster: &mut Cluster, snapshot: &Path) -> Vec<String> {
    for i in 0..cluster.size() {
        cluster.wipe(i).unwrap();
        ok(Cli::new(real_etcdctl())
            .args(["snapshot", "restore"])
            .arg(snapshot)
            .args(restore_flags(cluster, i)));
    }
    let _members: Vec<_> = (0..cluster.size())
        .map(|i| {
            Cli::new(ServerBinary::real_etcd().path())
                .args(&cluster.command(i).args)
                .spawn()
                .unwrap_or_else(|e| panic!("{e}"))
        })
        .collect();
    let endpoints = cluster.endpoints();
    let mut ids = Vec::new();
    eventually(WAIT, "the etcd 3.4 restore serves member list", || {
        let out = run(ctl(&real_etcdctl(), &endpoints).args(["member", "list"]));
        if out.code() != Some(0) || out.stdout.lines().count() != 3 {
            return false;
        }
        ids = member_ids(&endpoints);
        true
    });
    ids
}

#[test]
fn a_restored_three_member_cluster_has_the_data_revision_and_etcds_member_ids() {
    let ours = our_etcdctl();
    let scratch = tempfile::tempdir().unwrap();
    let etcd34_snapshot = real_etcd_snapshot(scratch.path());

    let mut cluster = start(ServerBinary::etcd_rs().unwrap(), 3);
    let endpoints = cluster.endpoints();
    write_data(&ours, &endpoints);
    let before = content(&ours, &endpoints);
    let snapshot = scratch.path().join("ours.db");
    let saved = ok(ctl(&ours, cluster.client_url(0))
        .args(["snapshot", "save"])
        .arg(&snapshot));
    assert_eq!(saved, format!("Snapshot saved at {}\n", snapshot.display()));

    // Status: etcdctl 3.4's layout and fields in every format, our content.
    for format in ["simple", "table", "json", "fields"] {
        let theirs = ok(Cli::new(real_etcdctl())
            .args(["snapshot", "status", "-w", format])
            .arg(&etcd34_snapshot));
        let mine = ok(Cli::new(&ours)
            .args(["snapshot", "status", "-w", format])
            .arg(&snapshot));
        let util = ok(Cli::new(etcdutl())
            .args(["snapshot", "status", "-w", format])
            .arg(&snapshot));
        assert_eq!(mine, util, "etcdctl and etcdutl agree ({format})");
        // Values differ; the layout and field names must not.
        let shape = |s: &str| s.replace(|c: char| "0123456789abcdef. -".contains(c), "");
        assert_eq!(shape(&mine), shape(&theirs), "{format}: {mine} vs {theirs}");
    }
    let json = ok(Cli::new(&ours)
        .args(["snapshot", "status", "-w", "json"])
        .arg(&snapshot));
    let status: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(status["revision"].as_i64(), Some(before.1), "{json}");

    for i in 0..3 {
        cluster.stop(i).unwrap();
    }
    let etcd34_ids = ids_of_etcd34_restore(&mut cluster, &etcd34_snapshot);

    // Ours: members 0 and 1 with our etcdctl, member 2 with etcdutl.
    for i in 0..3 {
        cluster.wipe(i).unwrap();
        let tool = if i < 2 {
            Cli::new(&ours)
        } else {
            Cli::new(etcdutl())
        };
        ok(tool
            .args(["snapshot", "restore"])
            .arg(&snapshot)
            .args(restore_flags(&cluster, i)));
    }
    for i in 0..3 {
        cluster.restart(i).unwrap();
    }
    cluster.wait_all_healthy(WAIT).unwrap();
    assert_eq!(content(&ours, &endpoints), before);
    assert_eq!(member_ids(&endpoints), etcd34_ids);
    ok(ctl(&ours, &endpoints).args(["put", "after", "restore"]));
    assert_eq!(content(&ours, &endpoints).1, before.1 + 1);

    // etcdutl defrag on a stopped member's dir; the member boots and catches up.
    cluster.stop(2).unwrap();
    ok(ctl(&ours, cluster.client_url(0)).args(["put", "while", "stopped"]));
    let defrag = run(Cli::new(etcdutl())
        .args(["defrag", "--data-dir"])
        .arg(cluster.data_dir(2)));
    assert_eq!(defrag.code(), Some(0), "{}", defrag.stderr);
    cluster.restart(2).unwrap();
    cluster.wait_healthy(2, WAIT).unwrap();
    let member2 = cluster.client_url(2).to_string();
    eventually(WAIT, "the defragmented member catches up", || {
        content(&ours, &member2) == content(&ours, &endpoints)
    });
}

#[test]
fn bump_revision_with_mark_compacted_moves_the_revision_and_compacts_the_past() {
    let ours = our_etcdctl();
    let scratch = tempfile::tempdir().unwrap();
    let mut cluster = start(ServerBinary::etcd_rs().unwrap(), 1);
    let endpoints = cluster.endpoints();
    write_data(&ours, &endpoints);
    let (kvs, revision) = content(&ours, &endpoints);
    let snapshot = scratch.path().join("ours.db");
    ok(ctl(&ours, &endpoints)
        .args(["snapshot", "save"])
        .arg(&snapshot));
    cluster.stop(0).unwrap();
    cluster.wipe(0).unwrap();

    let flags = restore_flags(&cluster, 0);
    for (extra, message) in [
        (
            &["--bump-revision=10"][..],
            "--mark-compacted required if --revision-bump > 0",
        ),
        (
            &["--mark-compacted"][..],
            "--mark-compacted required if --revision-bump > 0",
        ),
    ] {
        let out = run(Cli::new(etcdutl())
            .args(["snapshot", "restore"])
            .arg(&snapshot)
            .args(&flags)
            .args(extra));
        assert_eq!(out.code(), Some(128), "{}", out.stderr);
        assert_eq!(
            without_logs(&out.stderr).trim(),
            format!("Error: {message}")
        );
        assert!(!cluster.data_dir(0).exists());
    }
    ok(Cli::new(etcdutl())
        .args(["snapshot", "restore"])
        .arg(&snapshot)
        .args(&flags)
        .args(["--bump-revision=1000", "--mark-compacted"]));
    cluster.restart(0).unwrap();
    cluster.wait_healthy(0, WAIT).unwrap();
    let (after, rev_after) = content(&ours, &endpoints);
    assert_eq!(after, kvs);
    assert_eq!(rev_after, revision + 1000);
    let old = run(ctl(&ours, &endpoints).args(["get", "key/01", &format!("--rev={revision}")]));
    assert_eq!(old.code(), Some(1), "{}", old.stdout);
    assert!(
        old.stderr
            .contains("mvcc: required revision has been compacted"),
        "{}",
        old.stderr
    );
    ok(ctl(&ours, &endpoints).args(["put", "k", "v"]));
    let current = content(&ours, &endpoints);
    assert_eq!(current.1, revision + 1001);

    // etcdutl backup of the stopped member: a data dir of its own; the member still boots.
    cluster.stop(0).unwrap();
    let backup = scratch.path().join("backup");
    ok(Cli::new(etcdutl())
        .args(["backup", "--data-dir"])
        .arg(cluster.data_dir(0))
        .arg("--backup-dir")
        .arg(&backup));
    assert!(backup.join("member/snap/db").is_file());
    assert!(backup.join("member/wal").is_dir());
    cluster.restart(0).unwrap();
    cluster.wait_healthy(0, WAIT).unwrap();
    assert_eq!(content(&ours, &endpoints), current);
    let missing = run(Cli::new(etcdutl())
        .args(["backup", "--backup-dir"])
        .arg(scratch.path().join("b2"))
        .arg("--data-dir")
        .arg(scratch.path().join("nothing")));
    assert_eq!(missing.code(), Some(1), "{}", missing.stderr);
}

/// The `Error:` line and exit code of a failed command.
fn failure(out: &CmdOutput) -> (Option<i32>, String) {
    let line = without_logs(&out.stderr)
        .lines()
        .find(|l| l.starts_with("Error:"))
        .unwrap_or_default()
        .to_string();
    (out.code(), line)
}

/// Nothing but `keep` left in `dir` (no half-made data dir, no staging dir).
fn only(dir: &Path, keep: &[&str]) {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, keep, "files left in {}", dir.display());
}

#[test]
fn bad_snapshots_and_flags_are_refused_with_etcds_errors_and_nothing_written() {
    let ours = our_etcdctl();
    let dir = tempfile::tempdir().unwrap();
    let cluster = start(ServerBinary::etcd_rs().unwrap(), 1);
    write_data(&ours, &cluster.endpoints());
    let good = dir.path().join("good.db");
    ok(ctl(&ours, &cluster.endpoints())
        .args(["snapshot", "save"])
        .arg(&good));
    drop(cluster);
    let bytes = std::fs::read(&good).unwrap();
    assert_eq!(bytes.len() % 512, 32);
    let corrupt = dir.path().join("corrupt.db");
    let mut damaged = bytes.clone();
    damaged[100] ^= 0xff;
    std::fs::write(&corrupt, &damaged).unwrap();
    let truncated = dir.path().join("truncated.db");
    std::fs::write(&truncated, &bytes[..bytes.len() - 32 - 512]).unwrap();
    let files = ["corrupt.db", "good.db", "truncated.db"];
    let restore = |bin: &Path, args: &[&str]| {
        run(Cli::new(bin)
            .args(["snapshot", "restore"])
            .args(args)
            .arg(format!("--data-dir={}", dir.path().join("out").display())))
    };
    let path = |name: &str| dir.path().join(name).display().to_string();

    // Flag errors: the same line and code from etcdctl 3.4 and ours.
    for args in [
        vec![path("good.db"), "--name=x".into()],
        vec![
            path("good.db"),
            "--initial-advertise-peer-urls=http://localhost:2381".into(),
        ],
        vec![
            path("good.db"),
            "--name=a".into(),
            "--initial-cluster=a=http://127.0.0.1:1,b=http://127.0.0.1:1".into(),
            "--initial-advertise-peer-urls=http://127.0.0.1:1".into(),
        ],
        vec![path("good.db"), "--initial-advertise-peer-urls=foo".into()],
        vec![path("missing.db")],
        vec![],
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let theirs = failure(&restore(&real_etcdctl(), &args));
        only(dir.path(), &files);
        let mine = failure(&restore(&ours, &args));
        only(dir.path(), &files);
        assert_eq!(mine, theirs, "{args:?}");
    }

    // Damaged files: the hash mismatch as etcd prints it, a missing hash, a truncated stream.
    let out = restore(&ours, &[&path("corrupt.db")]);
    let (code, line) = failure(&out);
    assert_eq!(code, Some(1));
    assert!(line.starts_with("Error: expected sha256 ["), "{line}");
    assert!(line.contains("], got ["), "{line}");
    only(dir.path(), &files);
    for bin in [ours.clone(), etcdutl()] {
        let out = restore(&bin, &[&path("truncated.db")]);
        assert_eq!(
            failure(&out),
            (
                Some(1),
                "Error: snapshot missing hash but --skip-hash-check=false".into()
            )
        );
        only(dir.path(), &files);
        let out = restore(&bin, &[&path("truncated.db"), "--skip-hash-check"]);
        let (code, line) = failure(&out);
        assert_eq!(code, Some(1));
        assert!(line.starts_with("Error: invalid database"), "{line}");
        only(dir.path(), &files);
    }
    let status = run(Cli::new(&ours).args(["snapshot", "status"]).arg(&truncated));
    let (code, line) = failure(&status);
    assert_eq!(code, Some(1));
    assert_eq!(
        line,
        "Error: snapshot file integrity check failed. 1 errors found."
    );
    let missing = failure(&run(Cli::new(&ours).args([
        "snapshot",
        "status",
        &path("missing.db"),
    ])));
    let theirs = failure(&run(Cli::new(real_etcdctl()).args([
        "snapshot",
        "status",
        &path("missing.db"),
    ])));
    assert_eq!(missing, theirs);

    // An existing data dir: etcdctl 3.4 refuses any, etcdutl 3.5 a non-empty one.
    std::fs::create_dir(dir.path().join("out")).unwrap();
    let theirs = failure(&restore(&real_etcdctl(), &[&path("good.db")]));
    let mine = failure(&restore(&ours, &[&path("good.db")]));
    assert_eq!(mine, theirs);
    std::fs::write(dir.path().join("out").join("x"), b"").unwrap();
    let util = failure(&restore(&etcdutl(), &[&path("good.db")]));
    assert_eq!(
        util,
        (
            Some(1),
            format!(
                "Error: data-dir {:?} not empty or could not be read",
                path("out")
            )
        )
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("out")).unwrap().count(),
        1
    );
    std::fs::remove_file(dir.path().join("out").join("x")).unwrap();
    ok(Cli::new(etcdutl())
        .args(["snapshot", "restore", &path("good.db")])
        .arg(format!("--data-dir={}", path("out"))));
    assert!(dir.path().join("out/member/snap/db").is_file());
}
