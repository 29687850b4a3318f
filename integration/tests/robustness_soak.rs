//! The soak tier of fault-injection scenarios (issue 7): every fault alone and combined, on 3 and 5
//! members, a minute of traffic each, against etcd 3.4 and our `etcd`. Not run by CI (18 minutes
//! on 2 cores); run it with the README's command:
//!
//! ```text
//! ETCD_RS_SCENARIO_TABLE=soak.md cargo test --release -p integration --test robustness_soak -- --ignored
//! ```
//!
//! `ETCD_RS_SEED=<n>` replays one plan with another seed.

use std::time::Duration;

use integration::scenario::{self, Fault, Scenario, Target};
use integration::server_tests::{block_on, etcd_rs_or_panic};
use integration::ServerBinary;

/// For each `name(members, faults)`, a module with `etcd34` and `etcd_rs` tests, both ignored.
macro_rules! soak {
    ($($name:ident($members:expr, $faults:expr);)*) => {$(
        mod $name {
            use super::*;

            #[test]
            #[ignore = "soak tier: run with --ignored"]
            fn etcd34() {
                block_on(soak(ServerBinary::real_etcd(), stringify!($name), $members, &$faults));
            }

            #[test]
            #[ignore = "soak tier: run with --ignored"]
            fn etcd_rs() {
                block_on(soak(etcd_rs_or_panic(), stringify!($name), $members, &$faults));
            }
        }
    )*};
}

const DELAY: Fault = Fault::DelayPeers {
    latency: Duration::from_millis(50),
    jitter: Duration::from_millis(50),
};

soak! {
    kill_leader_3(3, [Fault::Kill(Target::Leader)]);
    kill_leader_5(5, [Fault::Kill(Target::Leader)]);
    kill_follower_5(5, [Fault::Kill(Target::Follower)]);
    pause_leader_3(3, [Fault::Pause(Target::Leader)]);
    pause_follower_5(5, [Fault::Pause(Target::Follower)]);
    isolate_leader_5(5, [Fault::Isolate(Target::Leader)]);
    isolate_follower_3(3, [Fault::Isolate(Target::Follower)]);
    partition_leader_minority_3(3, [Fault::PartitionLeaderInMinority]);
    partition_leader_minority_5(5, [Fault::PartitionLeaderInMinority]);
    blackhole_leader_to_follower_5(5, [Fault::BlackholeLeaderToFollower]);
    delay_peers_5(5, [DELAY]);
    drop_peer_connections_5(5, [Fault::DropPeerConnections(0.5)]);
    replace_follower_5(5, [Fault::ReplaceFollower]);
    compact_and_defragment_5(5, [Fault::CompactAndDefragment, Fault::Kill(Target::Follower)]);
    kill_and_isolate_5(5, [Fault::Kill(Target::Follower), Fault::Isolate(Target::Leader)]);
    pause_delay_drop_3(3, [Fault::Pause(Target::Follower), DELAY, Fault::DropPeerConnections(0.3)]);
    everything_5(5, [
        DELAY,
        Fault::DropPeerConnections(0.2),
        Fault::Kill(Target::Follower),
        Fault::PartitionLeaderInMinority,
        Fault::CompactAndDefragment,
    ]);
}

async fn soak(server: ServerBinary, name: &str, members: usize, faults: &[Fault]) {
    let outcome = scenario::run(server, &Scenario::soak(name, members, faults)).await;
    println!("{}", outcome.table_row());
    assert!(outcome.cycles > 0, "no fault was injected: {outcome}");
    assert_eq!(outcome.violation_count(), 0, "{outcome}");
}
