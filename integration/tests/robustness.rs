//! The short tier of fault-injection scenarios (issue 7), run in every CI run: each fault alone and
//! some combined, on proxied clusters of 3 and 5 members, against etcd 3.4 and our `etcd`. Every
//! history must pass every checker (linearizability, revisions, watch guarantees, leases, no lost
//! write) with zero violations. Each scenario prints its table row; set
//! `ETCD_RS_SCENARIO_TABLE=<file>` to collect them. The soak tier is `robustness_soak.rs`.

use std::time::Duration;

use integration::scenario::{self, Fault, Scenario, Target};
use integration::{server_tests, ServerBinary};

server_tests! {
    async fn kill_leader;
    async fn kill_follower;
    async fn pause_leader;
    async fn isolate_leader;
    async fn isolate_follower;
    async fn blackhole_leader_to_follower;
    async fn delay_peers;
    async fn drop_peer_connections;
    async fn replace_follower;
    async fn compact_and_defragment;
    async fn partition_5_members_leader_in_minority;
    async fn combined_kill_partition_delay_5_members;
}

async fn check(server: ServerBinary, scenario: Scenario) {
    let outcome = scenario::run(server, &scenario).await;
    println!(
        "{} ({} watch streams, {} rewound)",
        outcome.table_row(),
        outcome.watch_streams,
        outcome.rewound_streams
    );
    assert!(outcome.cycles > 0, "no fault was injected: {outcome}");
    assert_eq!(outcome.violation_count(), 0, "{outcome}");
}

async fn kill_leader(server: ServerBinary) {
    check(
        server,
        Scenario::short("kill-leader", 3, &[Fault::Kill(Target::Leader)]),
    )
    .await;
}

async fn kill_follower(server: ServerBinary) {
    check(
        server,
        Scenario::short("kill-follower", 3, &[Fault::Kill(Target::Follower)]),
    )
    .await;
}

async fn pause_leader(server: ServerBinary) {
    check(
        server,
        Scenario::short("pause-leader", 3, &[Fault::Pause(Target::Leader)]),
    )
    .await;
}

async fn isolate_leader(server: ServerBinary) {
    check(
        server,
        Scenario::short("isolate-leader", 3, &[Fault::Isolate(Target::Leader)]),
    )
    .await;
}

async fn isolate_follower(server: ServerBinary) {
    let faults = [Fault::Isolate(Target::Follower)];
    check(server, Scenario::short("isolate-follower", 3, &faults)).await;
}

async fn blackhole_leader_to_follower(server: ServerBinary) {
    let faults = [Fault::BlackholeLeaderToFollower];
    check(
        server,
        Scenario::short("blackhole-leader-to-follower", 3, &faults),
    )
    .await;
}

async fn delay_peers(server: ServerBinary) {
    let faults = [Fault::DelayPeers {
        latency: Duration::from_millis(40),
        jitter: Duration::from_millis(40),
    }];
    check(server, Scenario::short("delay-peers", 3, &faults)).await;
}

async fn drop_peer_connections(server: ServerBinary) {
    let faults = [Fault::DropPeerConnections(0.5)];
    check(server, Scenario::short("drop-peer-connections", 3, &faults)).await;
}

async fn replace_follower(server: ServerBinary) {
    let mut scenario = Scenario::short("replace-follower", 3, &[Fault::ReplaceFollower]);
    // A replaced member needs a few seconds to rejoin and catch up: fewer, longer cycles.
    scenario.hold = Duration::from_secs(4);
    check(server, scenario).await;
}

async fn compact_and_defragment(server: ServerBinary) {
    let faults = [Fault::CompactAndDefragment];
    check(
        server,
        Scenario::short("compact-and-defragment", 3, &faults),
    )
    .await;
}

async fn partition_5_members_leader_in_minority(server: ServerBinary) {
    let faults = [Fault::PartitionLeaderInMinority];
    check(
        server,
        Scenario::short("partition-leader-minority", 5, &faults),
    )
    .await;
}

async fn combined_kill_partition_delay_5_members(server: ServerBinary) {
    let faults = [
        Fault::DelayPeers {
            latency: Duration::from_millis(20),
            jitter: Duration::from_millis(20),
        },
        Fault::Kill(Target::Follower),
        Fault::PartitionLeaderInMinority,
    ];
    check(server, Scenario::short("kill+partition+delay", 5, &faults)).await;
}
