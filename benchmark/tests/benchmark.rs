//! The `benchmark` binary against a real etcd booted by the integration harness: each command
//! does the work it claims (checked through the server's own view: key counts, revisions,
//! leases) and prints etcd's report layout or parseable JSON.

use std::time::Duration;

use client::api::etcdserverpb::{LeaseLeasesRequest, RangeRequest};
use client::{Client, ClientOptions};
use integration::{Cli, Cluster, ClusterSpec, CmdOutput};
use serde_json::Value;

/// Bound on one benchmark run; the runs below take a second or two.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

fn start_cluster() -> Cluster {
    Cluster::start(ClusterSpec::new(1)).expect("start etcd")
}

fn benchmark(cluster: &Cluster) -> Cli {
    cluster
        .cli(env!("CARGO_BIN_EXE_benchmark"))
        .timeout(RUN_TIMEOUT)
}

fn run_ok(cli: Cli) -> CmdOutput {
    let out = cli.run().expect("run benchmark");
    assert!(
        out.success(),
        "benchmark failed: {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        out.stdout,
        out.stderr
    );
    // Nothing else goes to stderr, and the progress bar stays hidden off a terminal.
    assert_eq!(out.stderr, "", "stderr of a successful run");
    out
}

fn run_json(cli: Cli) -> Value {
    let out = run_ok(cli.args(["--output", "json"]));
    serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{}", out.stdout))
}

fn with_client<T>(cluster: &Cluster, f: impl AsyncFnOnce(Client) -> T) -> T {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let client = Client::connect(&cluster.client_urls(), ClientOptions::default())
            .await
            .expect("connect");
        f(client).await
    })
}

/// Number of keys in the store and its current revision.
fn keys_and_revision(cluster: &Cluster) -> (i64, i64) {
    with_client(cluster, async |client| {
        let response = client
            .range(RangeRequest {
                key: vec![0],
                range_end: vec![0],
                count_only: true,
                ..Default::default()
            })
            .await
            .expect("count keys");
        (response.count, response.header.expect("header").revision)
    })
}

fn lease_count(cluster: &Cluster) -> usize {
    with_client(cluster, async |client| {
        client
            .lease_leases(LeaseLeasesRequest {})
            .await
            .expect("list leases")
            .leases
            .len()
    })
}

/// The sections of etcd's report, in order.
fn assert_report_layout(text: &str) {
    let sections = [
        "\nSummary:\n",
        "\n  Total:\t",
        "\n  Slowest:\t",
        "\n  Fastest:\t",
        "\n  Average:\t",
        "\n  Stddev:\t",
        "\n  Requests/sec:\t",
        "\nResponse time histogram:\n",
        "\nLatency distribution:\n",
        "\n  10% in ",
        "\n  50% in ",
        "\n  99.9% in ",
    ];
    let mut rest = text;
    for section in sections {
        match rest.find(section) {
            // Keep the section's last newline: it starts the next one.
            Some(at) => rest = &rest[at + section.len() - 1..],
            None => panic!("report lacks {section:?} (in this order):\n{text}"),
        }
    }
    let histogram_rows = text
        .lines()
        .skip_while(|l| *l != "Response time histogram:")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect::<Vec<_>>();
    assert_eq!(histogram_rows.len(), 11, "histogram rows:\n{text}");
    assert!(histogram_rows
        .iter()
        .all(|row| row.contains(" [") && row.contains("]\t|")));
    assert!(
        !text.contains("Error distribution"),
        "unexpected errors:\n{text}"
    );
}

fn number(report: &Value, field: &str) -> f64 {
    report[field]
        .as_f64()
        .unwrap_or_else(|| panic!("{field} missing in {report}"))
}

fn assert_consistent_json(report: &Value, requests: u64) {
    assert_eq!(report["requests"], requests, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    let (fastest, average, slowest) = (
        number(report, "fastest_secs"),
        number(report, "average_secs"),
        number(report, "slowest_secs"),
    );
    assert!(
        0.0 < fastest && fastest <= average && average <= slowest,
        "{report}"
    );
    assert!(number(report, "requests_per_sec") > 0.0, "{report}");
    assert!(number(report, "total_secs") > 0.0, "{report}");
    let percentiles: Vec<f64> = report["percentiles"]
        .as_array()
        .expect("percentiles")
        .iter()
        .map(|p| number(p, "latency_secs"))
        .collect();
    assert_eq!(percentiles.len(), 8, "{report}");
    assert!(percentiles.windows(2).all(|w| w[0] <= w[1]), "{report}");
    let histogram_total: u64 = report["histogram"]
        .as_array()
        .expect("histogram")
        .iter()
        .map(|b| b["count"].as_u64().expect("count"))
        .sum();
    assert_eq!(histogram_total, requests, "{report}");
}

#[test]
fn put_writes_exactly_total_requests() {
    let cluster = start_cluster();
    let (_, start_revision) = keys_and_revision(&cluster);

    let out = run_ok(benchmark(&cluster).args([
        "put",
        "--clients=4",
        "--conns=2",
        "--total=40",
        "--key-space-size=40",
        "--sequential-keys",
    ]));
    assert_report_layout(&out.stdout);
    assert_eq!(keys_and_revision(&cluster), (40, start_revision + 40));

    // Random keys from a space of one: 25 more revisions of the same (first) key.
    run_ok(benchmark(&cluster).args(["put", "--clients=3", "--total=25"]));
    assert_eq!(keys_and_revision(&cluster), (40, start_revision + 65));
}

#[test]
fn put_json_summary_parses() {
    let cluster = start_cluster();
    let report = run_json(benchmark(&cluster).args([
        "put",
        "--clients=3",
        "--total=30",
        "--key-space-size=100",
        "--val-size=64",
        "--rate=0",
    ]));
    assert_eq!(report["name"], "put");
    assert_consistent_json(&report, 30);
    assert_eq!(report["error_distribution"], serde_json::json!({}));
}

#[test]
fn range_runs_linearizable_and_serializable() {
    let cluster = start_cluster();
    run_ok(benchmark(&cluster).args([
        "put",
        "--total=10",
        "--key-space-size=10",
        "--sequential-keys",
    ]));

    let out = run_ok(benchmark(&cluster).args(["range", "a", "--total=20", "--clients=2"]));
    assert!(
        out.stdout.starts_with("bench with linearizable range\n"),
        "{}",
        out.stdout
    );
    assert_report_layout(&out.stdout);

    let out = run_ok(benchmark(&cluster).args([
        "range",
        "\u{1}",
        "\u{7f}",
        "--consistency=s",
        "--total=20",
        "--clients=2",
    ]));
    assert!(
        out.stdout.starts_with("bench with serializable range\n"),
        "{}",
        out.stdout
    );
    assert_report_layout(&out.stdout);

    let report = run_json(benchmark(&cluster).args(["range", "a", "--total=15", "--clients=3"]));
    assert_eq!(report["name"], "range");
    assert_consistent_json(&report, 15);
}

#[test]
fn txn_put_commits_one_revision_per_txn() {
    let cluster = start_cluster();
    let (_, start_revision) = keys_and_revision(&cluster);
    let out = run_ok(benchmark(&cluster).args([
        "txn-put",
        "--txn-ops=3",
        "--key-space-size=6",
        "--total=10",
        "--clients=2",
    ]));
    assert_report_layout(&out.stdout);
    assert_eq!(keys_and_revision(&cluster), (6, start_revision + 10));

    let report = run_json(benchmark(&cluster).args(["txn-put", "--total=5"]));
    assert_consistent_json(&report, 5);
}

#[test]
fn watch_delivers_every_event_to_every_watcher() {
    let cluster = start_cluster();
    let watch_args = [
        "watch",
        "--streams=2",
        "--watch-per-stream=5",
        "--watched-key-total=2",
        "--key-space-size=2",
        "--sequential-keys",
        "--put-total=20",
        "--clients=2",
    ];
    // 10 watches alternate over 2 keys: 5 watchers per key; each of 20 puts reaches 5 of them.
    let report = run_json(benchmark(&cluster).args(watch_args));
    assert_consistent_json(&report["creation"], 10);
    assert_consistent_json(&report["events"], 100);

    let out = run_ok(benchmark(&cluster).args(watch_args));
    let events_at = out
        .stdout
        .find("Watch events received summary:")
        .unwrap_or_else(|| panic!("no events summary:\n{}", out.stdout));
    let (creation, events) = out.stdout.split_at(events_at);
    assert!(
        creation.starts_with("Watch creation summary:\n"),
        "{}",
        out.stdout
    );
    assert_report_layout(creation);
    assert_report_layout(events);
}

#[test]
fn lease_keepalive_renews_and_revokes_its_leases() {
    let cluster = start_cluster();
    let out = run_ok(benchmark(&cluster).args([
        "lease-keepalive",
        "--total=30",
        "--clients=3",
        "--conns=2",
    ]));
    assert_report_layout(&out.stdout);

    let report =
        run_json(benchmark(&cluster).args(["lease-keepalive", "--total=12", "--clients=2"]));
    assert_eq!(report["name"], "lease-keepalive");
    assert_consistent_json(&report, 12);
    assert_eq!(
        lease_count(&cluster),
        0,
        "the benchmark leaves no lease behind"
    );
}

#[test]
fn unreachable_server_counts_errors() {
    let mut cluster = start_cluster();
    cluster.kill(0).expect("kill the only member");
    let args = ["put", "--total=4", "--clients=2", "--command-timeout=300ms"];

    let report = run_json(benchmark(&cluster).args(args));
    assert_eq!(report["requests"], 0, "{report}");
    assert_eq!(report["errors"], 4, "{report}");
    let distribution = report["error_distribution"].as_object().expect("errors");
    assert_eq!(
        distribution
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum::<u64>(),
        4
    );

    let out = run_ok(benchmark(&cluster).args(args));
    assert!(
        out.stdout.starts_with("\nError distribution:\n  ["),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("Summary:"), "{}", out.stdout);
}

#[test]
fn invalid_flags_are_rejected_before_any_request() {
    let bin = env!("CARGO_BIN_EXE_benchmark");
    let rejected = |args: &[&str], expected: &str| {
        let out = Cli::new(bin)
            .args(["--endpoints=127.0.0.1:1"])
            .args(args)
            .timeout(RUN_TIMEOUT)
            .run()
            .expect("run benchmark");
        assert!(!out.success(), "{args:?} was accepted:\n{}", out.stdout);
        assert!(out.stderr.contains(expected), "{args:?}: {}", out.stderr);
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    };
    rejected(&["put", "--key-space-size=0"], "key-space-size");
    rejected(
        &["put", "--key-size=1", "--key-space-size=1000"],
        "--key-size 1",
    );
    rejected(&["put", "--clients=0"], "--clients");
    rejected(
        &["txn-put", "--txn-ops=5", "--key-space-size=2"],
        "--txn-ops",
    );
    rejected(&["range", "k", "--consistency=x"], "consistency");
    rejected(&["range"], "<KEY>");
    rejected(&["watch", "--streams=0"], "--streams");
    rejected(&["put", "--user=nopassword"], "--user");
    rejected(&["put", "--command-timeout=5"], "duration");
}
