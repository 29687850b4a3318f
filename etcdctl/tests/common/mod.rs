//! Shared helpers: run our etcdctl and the reference one against the same cluster and compare.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

#[allow(unused_imports)]
pub use integration::{Background, Cli, Cluster, ClusterSpec, CmdOutput};

pub fn ours() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_etcdctl"))
}

pub fn reference() -> PathBuf {
    integration::real_etcdctl()
}

pub fn single() -> Cluster {
    Cluster::start(ClusterSpec::new(1)).expect("start a one-member etcd")
}

/// Our etcdctl with `--endpoints` of `cluster`.
pub fn ctl(cluster: &Cluster) -> Cli {
    cluster.cli(ours())
}

pub fn run(cli: Cli) -> CmdOutput {
    cli.run().expect("run etcdctl")
}

/// Runs our etcdctl and expects success; returns stdout.
pub fn ok(cluster: &Cluster, args: &[&str]) -> String {
    ctl(cluster)
        .args(args)
        .run_ok()
        .unwrap_or_else(|err| panic!("{err}"))
}

pub use integration::output::{masked, without_logs};
#[allow(unused_imports)]
pub use testkit::eventually;

/// What a run shows a user: exit code, stdout, stderr without log lines.
pub fn shown(out: &CmdOutput) -> (Option<i32>, String, String) {
    (out.code(), out.stdout.clone(), without_logs(&out.stderr))
}

/// Runs `args` with the reference etcdctl and with ours on the same cluster (reference first)
/// and asserts they print the same and exit alike. Returns our output.
pub fn same(cluster: &Cluster, args: &[&str]) -> CmdOutput {
    same_with(cluster, &[], args, None, |s| s.to_string())
}

/// As [`same`], with `--endpoints` set to the one `endpoint` (a client with several endpoints
/// asks any of them, and headers name the member that answered).
pub fn same_at(endpoint: &str, args: &[&str]) -> CmdOutput {
    let run_with = |bin: PathBuf| {
        run(Cli::new(bin)
            .arg(format!("--endpoints={endpoint}"))
            .args(args))
    };
    let theirs = run_with(reference());
    let ours = run_with(ours());
    assert_eq!(
        shown(&ours),
        shown(&theirs),
        "etcdctl {args:?}: ours (left) differs from the reference (right)"
    );
    ours
}

/// For commands that change the store: runs `setup` (with our etcdctl) before each of the
/// two runs so both start from the same data, and masks revisions and versions.
pub fn same_after(cluster: &Cluster, setup: &[&[&str]], args: &[&str]) -> CmdOutput {
    same_with(cluster, setup, args, None, masked)
}

/// As [`same_after`], with `stdin` given to both.
pub fn same_stdin(cluster: &Cluster, setup: &[&[&str]], args: &[&str], stdin: &str) -> CmdOutput {
    same_with(cluster, setup, args, Some(stdin), masked)
}

fn same_with(
    cluster: &Cluster,
    setup: &[&[&str]],
    args: &[&str],
    stdin: Option<&str>,
    normalize: impl Fn(&str) -> String,
) -> CmdOutput {
    let build = |bin: PathBuf| {
        for step in setup {
            ok(cluster, step);
        }
        let cli = cluster.cli(bin).args(args);
        match stdin {
            Some(input) => cli.stdin(input),
            None => cli,
        }
    };
    let theirs = run(build(reference()));
    let ours = run(build(ours()));
    let (their_code, their_out, their_err) = shown(&theirs);
    let (our_code, our_out, our_err) = shown(&ours);
    assert_eq!(
        (our_code, normalize(&our_out), normalize(&our_err)),
        (their_code, normalize(&their_out), normalize(&their_err)),
        "etcdctl {args:?}: ours (left) differs from the reference (right)"
    );
    ours
}

pub const LINE_TIMEOUT: Duration = Duration::from_secs(10);

/// The store's current revision.
pub fn current_revision(cluster: &Cluster) -> i64 {
    let json = ok(cluster, &["get", "x", "-w", "json"]);
    let at = json.find("\"revision\":").expect("header revision") + "\"revision\":".len();
    json[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a revision number")
}

/// Reads `count` stdout lines of a background command.
pub fn lines(child: &mut Background, count: usize) -> Vec<String> {
    (0..count)
        .map(|_| {
            child
                .next_line(LINE_TIMEOUT)
                .expect("a line in time")
                .expect("stdout still open")
        })
        .collect()
}
