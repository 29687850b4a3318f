//! Scenario tests: the Raft paper's rules and etcd's behaviours, each a short script over an in-memory cluster.

mod common;

use bytes::Bytes;
use common::{kinds, Network};
use raft::raftpb::{
    ConfChange, ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2, Entry,
    Message, MessageType,
};
use raft::{Config, Error, ProgressState, ReadOnlyOption, StateRole};

use MessageType::*;

fn three() -> Network {
    Network::new(&[1, 2, 3], &[], |_| {})
}

fn elected(mut net: Network, id: u64) -> Network {
    net.campaign(id);
    assert_eq!(net.leader(), Some(id));
    net
}

fn vote_req(from: u64, to: u64, term: u64, index: u64, log_term: u64) -> Message {
    Message {
        msg_type: MsgVote as i32,
        from,
        to,
        term,
        index,
        log_term,
        ..Default::default()
    }
}

// ---- elections ---------------------------------------------------------------------------------------------------

#[test]
fn a_candidate_with_a_majority_becomes_leader_and_commits_an_empty_entry() {
    let net = elected(three(), 1);
    for id in [1, 2, 3] {
        assert_eq!(net.node(id).term(), 2);
        assert_eq!(net.node(id).node.leader_id(), 1);
        assert_eq!(
            net.node(id).node.committed(),
            2,
            "the leader's empty entry commits"
        );
    }
}

#[test]
fn a_follower_grants_one_vote_per_term() {
    let mut net = three();
    net.raw(1).step(vote_req(2, 1, 2, 1, 1)).unwrap();
    net.raw(1).step(vote_req(3, 1, 2, 1, 1)).unwrap();
    let out = net.process_ready(1);
    let replies: Vec<_> = out.iter().map(|m| (m.to, m.kind(), m.reject)).collect();
    assert_eq!(
        replies,
        vec![(2, MsgVoteResp, false), (3, MsgVoteResp, true)]
    );
    assert_eq!(
        net.node(1).storage.hard_state().vote,
        2,
        "the vote is persisted"
    );
}

#[test]
fn a_vote_is_refused_to_a_candidate_whose_log_is_behind() {
    let mut net = Network::new(&[1, 2, 3], &[], |c| c.check_quorum = false);
    net.campaign(1);
    net.raw(1).propose(&b"x"[..]).unwrap();
    net.stabilize();
    // Node 3's last entry is (index 3, term 2): a candidate with (2, 2) or (9, 1) is behind; (3, 2) is not.
    for (term, index, log_term, granted) in [(5, 2, 2, false), (6, 9, 1, false), (7, 3, 2, true)] {
        net.raw(3)
            .step(vote_req(2, 3, term, index, log_term))
            .unwrap();
        let out = net.process_ready(3);
        assert_eq!(kinds(&out), vec![(MsgVoteResp, 3, 2)]);
        assert_eq!(
            out[0].reject, !granted,
            "candidate log ({index}, {log_term})"
        );
        assert_eq!(
            net.node(3).term(),
            term,
            "a higher term is adopted either way"
        );
    }
}

#[test]
fn election_timeout_is_randomized_in_one_to_two_election_ticks() {
    let mut seen = std::collections::BTreeSet::new();
    for seed in 1..200 {
        let mut net = Network::new(&[1, 2, 3], &[], |c| {
            c.seed = seed;
            c.pre_vote = false;
        });
        let mut ticks = 0;
        while net.node(1).state() == StateRole::Follower {
            net.raw(1).tick();
            ticks += 1;
            assert!(
                ticks < 20,
                "seed {seed}: no campaign within 2 * election_tick"
            );
        }
        assert!(ticks >= 10, "seed {seed}: campaigned after {ticks} ticks");
        seen.insert(ticks);
    }
    assert!(seen.len() >= 8, "timeouts are spread: {seen:?}");
}

#[test]
fn a_split_vote_is_resolved_by_the_next_randomized_timeout() {
    let mut net = Network::new(&[1, 2, 3, 4], &[], |_| {});
    net.cut(1, 3);
    net.cut(1, 4);
    net.cut(2, 3);
    net.cut(2, 4);
    net.raw(1).campaign().unwrap();
    net.raw(3).campaign().unwrap();
    net.stabilize();
    assert_eq!(net.leader(), None, "two pairs: no majority");
    net.heal();
    net.tick_all(40);
    assert!(net.leader().is_some());
}

// ---- pre-vote, check-quorum and the leader lease ---------------------------------------------------------------

#[test]
fn pre_vote_keeps_a_partitioned_node_from_disrupting_the_cluster_when_it_returns() {
    let mut net = elected(three(), 1);
    net.isolate(3);
    net.tick(3, 100);
    net.stabilize();
    assert_eq!(net.node(3).term(), 2, "pre-elections never bump the term");
    assert_eq!(net.node(3).state(), StateRole::PreCandidate);
    net.heal();
    net.tick_all(12);
    assert_eq!(net.leader(), Some(1));
    assert_eq!(net.node(1).term(), 2, "the leader was not deposed");
    assert_eq!(net.node(3).node.leader_id(), 1);
}

#[test]
fn without_pre_vote_a_returning_partitioned_node_forces_a_new_term() {
    let mut net = Network::new(&[1, 2, 3], &[], |c| {
        c.pre_vote = false;
        c.check_quorum = false;
    });
    net.campaign(1);
    net.isolate(3);
    net.tick(3, 40);
    net.stabilize();
    let partitioned_term = net.node(3).term();
    assert!(partitioned_term > 2);
    net.heal();
    net.tick_all(40);
    assert!(
        net.node(1).term() >= partitioned_term,
        "the cluster had to move to the partitioned node's term"
    );
}

#[test]
fn check_quorum_makes_an_isolated_leader_step_down() {
    let mut net = elected(three(), 1);
    net.isolate(1);
    net.tick(1, 10);
    net.stabilize();
    assert_eq!(
        net.node(1).state(),
        StateRole::Leader,
        "the followers were active in the first period"
    );
    net.tick(1, 10); // a whole election timeout without responses
    net.stabilize();
    assert_eq!(net.node(1).state(), StateRole::Follower);
    assert_eq!(net.raw(1).propose(&b"x"[..]), Err(Error::ProposalDropped));
}

#[test]
fn the_leader_lease_makes_followers_ignore_vote_requests() {
    let mut net = elected(three(), 1);
    net.raw(2).step(vote_req(3, 2, 9, 100, 9)).unwrap();
    assert!(
        net.process_ready(2).is_empty(),
        "ignored within the lease: no response at all"
    );
    assert_eq!(net.node(2).term(), 2);
    // A vote caused by a leader transfer overrides the lease.
    let mut m = vote_req(3, 2, 9, 100, 9);
    m.context = Bytes::from_static(b"CampaignTransfer");
    net.raw(2).step(m).unwrap();
    assert_eq!(kinds(&net.process_ready(2)), vec![(MsgVoteResp, 2, 3)]);
    assert_eq!(net.node(2).term(), 9);
}

#[test]
fn a_stale_leader_learns_the_new_term_from_a_follower_and_steps_down() {
    let mut net = elected(three(), 1);
    net.isolate(1);
    net.tick_all(30);
    let new_leader = net.leader().filter(|l| *l != 1).expect("2 or 3 leads");
    assert!(net.node(new_leader).term() > 2);
    net.heal();
    net.tick_all(3);
    assert_eq!(net.node(1).node.leader_id(), new_leader);
    assert_eq!(net.node(1).state(), StateRole::Follower);
}

// ---- replication, log matching, commit rule ---------------------------------------------------------------------

#[test]
fn proposals_replicate_and_apply_in_order_everywhere() {
    let mut net = elected(three(), 1);
    for i in 0..5u8 {
        net.raw(1).propose(vec![i]).unwrap();
    }
    net.raw(2).propose(&b"via-follower"[..]).unwrap(); // forwarded to the leader
    net.stabilize();
    for id in [1, 2, 3] {
        let applied = net.applied(id);
        assert_eq!(applied.len(), 6, "node {id}");
        assert_eq!(applied[5], b"via-follower");
    }
}

#[test]
fn a_batch_of_proposals_goes_out_in_one_msgapp_per_follower() {
    let mut net = elected(three(), 1);
    net.raw(1)
        .propose_batch((0..64u8).map(|i| Bytes::from(vec![i])).collect())
        .unwrap();
    let out = net.process_ready(1);
    let apps: Vec<_> = out.iter().filter(|m| m.kind() == MsgApp).collect();
    assert_eq!(apps.len(), 2);
    assert!(apps.iter().all(|m| m.entries.len() == 64));
}

#[test]
fn a_follower_with_a_divergent_log_is_repaired_with_few_round_trips() {
    let mut net = Network::new(&[1, 2, 3], &[], |c| c.pre_vote = false);
    net.campaign(1);
    // Node 1 appends 50 entries of term 2 that nobody else gets.
    net.isolate(1);
    for i in 0..50u8 {
        net.raw(1).propose(vec![i]).unwrap();
    }
    net.stabilize();
    // Node 2 leads term 3 and commits 50 entries of its own.
    net.heal();
    net.isolate(1);
    net.tick_all(30);
    let leader = net.leader().filter(|l| *l != 1).unwrap();
    for i in 0..50u8 {
        net.raw(leader).propose(vec![100 + i]).unwrap();
    }
    net.stabilize();
    net.heal();
    net.delivered.clear();
    net.tick_all(3);
    let rejections = net
        .delivered
        .iter()
        .filter(|m| m.kind() == MsgAppResp && m.reject)
        .count();
    assert!(
        rejections <= 2,
        "a term's conflicting entries are skipped at once, got {rejections} rejections"
    );
    assert_eq!(
        net.applied(1),
        net.applied(leader),
        "the divergent uncommitted suffix was overwritten"
    );
    assert!(net.applied(1).iter().all(|d| d[0] >= 100));
}

#[test]
fn entries_of_an_earlier_term_are_not_committed_by_counting_replicas() {
    // Raft paper figure 8: a leader must not commit an earlier term's entry just because a majority holds it.
    let mut net = Network::new(&[1, 2, 3, 4, 5], &[], |c| {
        c.pre_vote = false;
        c.check_quorum = false;
    });
    net.campaign(1); // term 2, index 2
    for id in [3, 4, 5] {
        net.cut(1, id);
    }
    net.raw(1).propose(&b"old"[..]).unwrap();
    net.stabilize(); // index 3 (term 2) is on nodes 1 and 2 only
    net.heal();
    net.dropped_types.insert(MsgApp);
    net.campaign(2); // term 3; its own empty entry is index 4
    assert_eq!((net.leader(), net.node(2).term()), (Some(2), 3));
    let ack = |from: u64, index: u64| Message {
        msg_type: MsgAppResp as i32,
        from,
        to: 2,
        term: 3,
        index,
        ..Default::default()
    };
    net.raw(2).step(ack(3, 3)).unwrap();
    net.raw(2).step(ack(4, 3)).unwrap();
    assert_eq!(
        net.node(2).node.committed(),
        2,
        "index 3 is on 2, 3, 4 but is of term 2"
    );
    net.raw(2).step(ack(3, 4)).unwrap();
    net.raw(2).step(ack(4, 4)).unwrap();
    assert_eq!(
        net.node(2).node.committed(),
        4,
        "the term-3 entry commits, and index 3 with it"
    );
}

#[test]
fn flow_control_bounds_msgapps_in_flight_to_a_silent_follower() {
    let mut net = Network::new(&[1, 2], &[], |c| {
        c.max_inflight_msgs = 3;
        c.max_size_per_msg = 1;
    });
    net.campaign(1);
    net.cut(1, 2);
    net.raw(1).propose(&b"a"[..]).unwrap();
    assert_eq!(
        net.raw(1).status().progress[1].1.state,
        ProgressState::Replicate
    );
    let mut apps = 0;
    for i in 0..10u8 {
        net.raw(1).propose(vec![i]).unwrap();
        apps += net
            .process_ready(1)
            .iter()
            .filter(|m| m.kind() == MsgApp && m.to == 2)
            .count();
    }
    assert_eq!(apps, 3, "the window of 3 is full; later proposals wait");
    assert_eq!(net.raw(1).status().progress[1].1.inflight, 3);
}

#[test]
fn max_size_per_msg_splits_a_large_batch() {
    let mut net = Network::new(&[1, 2], &[], |c| c.max_size_per_msg = 1000);
    net.campaign(1);
    net.raw(1)
        .propose_batch((0..10).map(|_| Bytes::from(vec![7u8; 300])).collect())
        .unwrap();
    let out = net.process_ready(1);
    let sizes: Vec<usize> = out
        .iter()
        .filter(|m| m.kind() == MsgApp)
        .map(|m| m.entries.len())
        .collect();
    assert_eq!(
        sizes,
        vec![3],
        "about 1000 bytes per message; the rest follows the acknowledgement"
    );
    net.delivered.clear();
    net.send(out);
    net.stabilize();
    let sizes: Vec<usize> = net
        .delivered
        .iter()
        .filter(|m| m.kind() == MsgApp && !m.entries.is_empty())
        .map(|m| m.entries.len())
        .collect();
    assert_eq!(sizes, vec![3, 3, 3, 1]);
    assert_eq!(net.applied(2).len(), 10);
}

// ---- the Ready contract -----------------------------------------------------------------------------------------

#[test]
fn acknowledgements_and_votes_wait_for_persistence_but_leader_appends_do_not() {
    let mut net = three();
    net.raw(1).campaign().unwrap();
    let rd = net.raw(1).ready();
    assert!(
        rd.messages.is_empty(),
        "MsgPreVote/MsgVote may not outrun the persisted vote"
    );
    assert_eq!(
        kinds(&rd.persisted_messages),
        vec![(MsgPreVote, 1, 2), (MsgPreVote, 1, 3)]
    );
    net.raw(1).advance();
    let mut net = elected(three(), 1);
    net.raw(1).propose(&b"x"[..]).unwrap();
    let rd = net.raw(1).ready();
    assert_eq!(kinds(&rd.messages), vec![(MsgApp, 1, 2), (MsgApp, 1, 3)]);
    assert!(
        rd.committed_entries.is_empty(),
        "the leader has not persisted its own entry yet"
    );
    let msgs = rd.messages.clone();
    net.raw(1).advance();
    net.raw(2).step(msgs[0].clone()).unwrap();
    let rd = net.raw(2).ready();
    assert!(rd.messages.is_empty());
    assert_eq!(kinds(&rd.persisted_messages), vec![(MsgAppResp, 2, 1)]);
    assert_eq!(rd.entries.len(), 1);
    assert!(rd.must_sync);
}

#[test]
fn nothing_is_applied_before_it_is_persisted_on_this_node() {
    let mut net = Network::new(&[1], &[], |_| {});
    net.raw(1).campaign().unwrap();
    let rd = net.raw(1).ready();
    assert!(rd.committed_entries.is_empty());
    net.nodes
        .get_mut(&1)
        .unwrap()
        .storage
        .append(rd.entries)
        .unwrap();
    net.raw(1).advance();
    net.raw(1).propose(&b"x"[..]).unwrap();
    net.stabilize();
    assert_eq!(
        net.applied(1),
        vec![&b"x"[..]],
        "a single voter commits once its own disk has it"
    );
}

#[test]
fn a_restarted_node_recovers_term_vote_and_log_from_storage() {
    let mut net = elected(three(), 1);
    net.raw(1).propose(&b"x"[..]).unwrap();
    net.stabilize();
    let storage = net.node(2).storage.clone();
    let restarted = Network::start(common::config(2), storage);
    let r = &restarted.node;
    assert_eq!(
        (r.term(), r.vote(), r.committed(), r.last_index()),
        (2, 1, 3, 3)
    );
    assert_eq!(r.role(), StateRole::Follower);
}

#[test]
fn proposals_are_dropped_without_a_leader() {
    let mut net = three();
    assert_eq!(net.raw(2).propose(&b"x"[..]), Err(Error::ProposalDropped));
    let mut no_forward = Network::new(&[1, 2, 3], &[], |c| c.disable_proposal_forwarding = true);
    no_forward.campaign(1);
    assert_eq!(
        no_forward.raw(2).propose(&b"x"[..]),
        Err(Error::ProposalDropped)
    );
}

#[test]
fn local_messages_and_responses_from_strangers_are_refused() {
    let mut net = elected(three(), 1);
    assert_eq!(
        net.raw(1).step(Message::new(MsgHup)),
        Err(Error::StepLocalMsg)
    );
    let mut m = Message::new(MsgAppResp);
    m.from = 42;
    m.term = 2;
    assert_eq!(net.raw(1).step(m), Err(Error::StepPeerNotFound));
}

// ---- leader transfer ---------------------------------------------------------------------------------------------

#[test]
fn leadership_transfers_to_an_up_to_date_follower() {
    let mut net = elected(three(), 1);
    net.raw(1).transfer_leader(3);
    net.stabilize();
    assert_eq!(net.leader(), Some(3));
    assert_eq!(net.node(3).term(), 3);
}

#[test]
fn a_transfer_to_a_lagging_follower_catches_it_up_first_and_proposals_are_dropped_meanwhile() {
    let mut net = elected(three(), 1);
    net.isolate(3);
    net.raw(1).propose(&b"x"[..]).unwrap();
    net.stabilize();
    net.heal();
    net.raw(1).transfer_leader(3);
    assert_eq!(net.raw(1).propose(&b"y"[..]), Err(Error::ProposalDropped));
    let out = net.process_ready(1);
    assert_eq!(
        kinds(&out),
        vec![(MsgApp, 1, 3)],
        "first catch the transferee up"
    );
    net.send(out);
    net.stabilize();
    assert_eq!(net.leader(), Some(3));
    assert_eq!(net.applied(3), vec![&b"x"[..]]);
}

#[test]
fn a_transfer_that_does_not_finish_within_an_election_timeout_is_aborted() {
    let mut net = elected(three(), 1);
    net.isolate(3);
    net.raw(1).transfer_leader(3);
    net.stabilize();
    assert_eq!(net.raw(1).status().lead_transferee, Some(3));
    net.tick(1, 10);
    net.stabilize();
    assert_eq!(net.raw(1).status().lead_transferee, None);
    assert_eq!(net.leader(), Some(1));
    net.raw(1).propose(&b"x"[..]).unwrap();
}

#[test]
fn a_follower_forwards_a_transfer_request_to_the_leader() {
    let mut net = elected(three(), 1);
    net.raw(2).transfer_leader(2);
    net.stabilize();
    assert_eq!(net.leader(), Some(2));
}

// ---- membership ------------------------------------------------------------------------------------------------

fn cc(t: ConfChangeType, id: u64) -> ConfChange {
    ConfChange {
        change_type: t as i32,
        node_id: id,
        ..Default::default()
    }
}

#[test]
fn a_learner_receives_the_log_but_neither_votes_nor_counts_for_commit() {
    let mut net = Network::new(&[1, 2], &[3], |_| {});
    net.campaign(1);
    net.raw(1).propose(&b"x"[..]).unwrap();
    net.stabilize();
    assert_eq!(net.applied(3), vec![&b"x"[..]]);
    net.tick(3, 100);
    net.stabilize();
    assert_eq!(net.leader(), Some(1), "a learner never campaigns");
    net.isolate(2);
    net.raw(1).propose(&b"y"[..]).unwrap();
    net.stabilize();
    assert_eq!(
        net.applied(1).len(),
        1,
        "1 and learner 3 are not a quorum of {{1, 2}}"
    );
}

#[test]
fn a_learner_is_promoted_to_voter() {
    let mut net = Network::new(&[1, 2], &[3], |_| {});
    net.campaign(1);
    net.raw(1)
        .propose_conf_change(&cc(ConfChangeType::ConfChangeAddNode, 3))
        .unwrap();
    net.stabilize();
    for id in [1, 2, 3] {
        assert_eq!(net.node(id).conf_state.voters, vec![1, 2, 3]);
        assert!(net.node(id).conf_state.learners.is_empty());
    }
    net.isolate(1);
    net.tick_all(30);
    assert!(
        matches!(net.leader(), Some(2) | Some(3)),
        "3 can now vote and be elected"
    );
}

#[test]
fn a_new_member_joins_from_an_empty_log_through_a_snapshot() {
    let mut net = elected(three(), 1);
    net.add_empty_node(4, |_| {});
    net.raw(1)
        .propose_conf_change(&cc(ConfChangeType::ConfChangeAddLearnerNode, 4))
        .unwrap();
    net.raw(1).propose(&b"x"[..]).unwrap();
    net.stabilize();
    // The bootstrap snapshot (index 1) predates node 4; take a fresh one that includes it.
    let leader = net.nodes.get_mut(&1).unwrap();
    let applied = leader.node.applied();
    leader
        .storage
        .create_snapshot(
            applied,
            Some(leader.conf_state.clone()),
            Bytes::from_static(b"sm"),
        )
        .unwrap();
    leader.storage.compact(applied).unwrap();
    net.tick_all(3);
    assert_eq!(net.node(4).storage.current_snapshot().index(), applied);
    assert_eq!(net.node(4).conf_state.learners, vec![4]);
    net.raw(1).propose(&b"y"[..]).unwrap();
    net.stabilize();
    assert_eq!(
        net.applied(4),
        vec![&b"y"[..]],
        "entries after the snapshot replicate normally"
    );
}

#[test]
fn a_second_conf_change_is_refused_while_one_is_pending() {
    let mut net = elected(three(), 1);
    net.raw(1)
        .propose_conf_change(&cc(ConfChangeType::ConfChangeAddLearnerNode, 4))
        .unwrap();
    net.raw(1)
        .propose_conf_change(&cc(ConfChangeType::ConfChangeAddLearnerNode, 5))
        .unwrap();
    net.stabilize();
    assert_eq!(
        net.node(1).conf_state.learners,
        vec![4],
        "the second became an empty entry"
    );
    net.raw(1)
        .propose_conf_change(&cc(ConfChangeType::ConfChangeAddLearnerNode, 5))
        .unwrap();
    net.stabilize();
    assert_eq!(
        net.node(2).conf_state.learners,
        vec![4, 5],
        "accepted once the first was applied"
    );
}

#[test]
fn joint_consensus_replaces_voters_and_leaves_automatically() {
    let mut net = elected(three(), 1);
    for id in [4, 5] {
        net.add_empty_node(id, |_| {});
    }
    let v2 = ConfChangeV2 {
        changes: vec![
            ConfChangeSingle::new(ConfChangeType::ConfChangeAddNode, 4),
            ConfChangeSingle::new(ConfChangeType::ConfChangeAddNode, 5),
            ConfChangeSingle::new(ConfChangeType::ConfChangeRemoveNode, 2),
        ],
        ..Default::default()
    };
    net.raw(1).propose_conf_change_v2(&v2).unwrap();
    // Apply the joint config only: hold back the auto-leave by stopping after the first application.
    for _ in 0..6 {
        let msgs = net.collect_messages();
        net.send(msgs);
        net.deliver();
        if !net.node(1).conf_state.voters_outgoing.is_empty() {
            break;
        }
    }
    let cs = &net.node(1).conf_state;
    assert_eq!(
        (cs.voters.clone(), cs.voters_outgoing.clone(), cs.auto_leave),
        (vec![1, 3, 4, 5], vec![1, 2, 3], true)
    );
    snapshot_and_compact(&mut net, 1); // lets the empty nodes 4 and 5 join
    net.tick_all(3);
    let cs = &net.node(1).conf_state;
    assert_eq!(
        (cs.voters.clone(), cs.voters_outgoing.is_empty()),
        (vec![1, 3, 4, 5], true),
        "left automatically"
    );
    assert!(net.node(3).conf_state.voters_outgoing.is_empty());
}

#[test]
fn an_explicit_joint_configuration_waits_for_the_empty_leave_change() {
    let mut net = elected(three(), 1);
    net.add_empty_node(4, |_| {});
    let v2 = ConfChangeV2 {
        transition: ConfChangeTransition::ConfChangeTransitionJointExplicit as i32,
        changes: vec![
            ConfChangeSingle::new(ConfChangeType::ConfChangeAddNode, 4),
            ConfChangeSingle::new(ConfChangeType::ConfChangeRemoveNode, 3),
        ],
        ..Default::default()
    };
    net.raw(1).propose_conf_change_v2(&v2).unwrap();
    net.stabilize();
    snapshot_and_compact(&mut net, 1);
    net.tick_all(3);
    assert_eq!(
        net.node(4).conf_state.voters_outgoing,
        vec![1, 2, 3],
        "joint, and no automatic leave"
    );
    assert_eq!(net.node(4).conf_state.voters, vec![1, 2, 4]);
    // While joint, only the leave request is accepted.
    net.raw(1)
        .propose_conf_change(&cc(ConfChangeType::ConfChangeAddLearnerNode, 9))
        .unwrap();
    net.stabilize();
    assert!(net.node(1).conf_state.learners.is_empty());
    // Joint quorum: 1 and 4 are a majority of the incoming {1, 2, 4} but not of the outgoing {1, 2, 3}.
    net.isolate(2);
    net.isolate(3);
    net.raw(1).propose(&b"x"[..]).unwrap();
    net.stabilize();
    assert!(net.applied(1).is_empty());
    net.heal();
    net.raw(1)
        .propose_conf_change_v2(&ConfChangeV2::default())
        .unwrap();
    net.stabilize();
    assert_eq!(net.applied(1), vec![&b"x"[..]]);
    assert_eq!(net.node(4).conf_state.voters, vec![1, 2, 4]);
    assert!(net.node(4).conf_state.voters_outgoing.is_empty());
}

/// Takes a snapshot of `id` at its applied index and compacts its log, as a server does periodically.
fn snapshot_and_compact(net: &mut Network, id: u64) -> u64 {
    let n = net.nodes.get_mut(&id).unwrap();
    let applied = n.node.applied();
    n.storage
        .create_snapshot(
            applied,
            Some(n.conf_state.clone()),
            Bytes::from_static(b"state"),
        )
        .unwrap();
    n.storage.compact(applied).unwrap();
    applied
}

#[test]
fn a_removed_leader_keeps_replicating_until_stopped_then_the_rest_elect_a_new_one() {
    let mut net = elected(three(), 1);
    net.raw(1)
        .propose_conf_change(&cc(ConfChangeType::ConfChangeRemoveNode, 1))
        .unwrap();
    net.stabilize();
    for id in [2, 3] {
        assert_eq!(net.node(id).conf_state.voters, vec![2, 3]);
    }
    assert_eq!(
        net.raw(1).propose(&b"x"[..]),
        Err(Error::ProposalDropped),
        "a removed leader takes no proposals"
    );
    net.nodes.remove(&1); // the server stops a removed member
    net.tick_all(30);
    let leader = net.leader().unwrap();
    net.raw(leader).propose(&b"y"[..]).unwrap();
    net.stabilize();
    assert_eq!(net.applied(2), vec![&b"y"[..]]);
}

// ---- ReadIndex ----------------------------------------------------------------------------------------------------

#[test]
fn a_safe_read_index_needs_a_heartbeat_round_and_echoes_the_context() {
    let mut net = elected(three(), 1);
    net.raw(1).read_index(&b"ctx-1"[..]);
    let out = net.process_ready(1);
    assert_eq!(
        kinds(&out),
        vec![(MsgHeartbeat, 1, 2), (MsgHeartbeat, 1, 3)]
    );
    assert!(out.iter().all(|m| &m.context[..] == b"ctx-1"));
    net.send(out);
    net.stabilize();
    let rs = &net.node(1).read_states;
    assert_eq!(rs.len(), 1);
    assert_eq!((rs[0].index, &rs[0].request_ctx[..]), (2, &b"ctx-1"[..]));
}

#[test]
fn a_safe_read_index_is_not_answered_by_a_leader_cut_off_from_its_quorum() {
    let mut net = elected(three(), 1);
    net.isolate(1);
    net.raw(1).read_index(&b"r"[..]);
    net.stabilize();
    assert!(net.node(1).read_states.is_empty());
    assert_eq!(net.raw(1).pending_read_count(), 1);
}

#[test]
fn a_lease_based_read_index_is_answered_without_messages() {
    let mut net = Network::new(&[1, 2, 3], &[], |c| {
        c.read_only_option = ReadOnlyOption::LeaseBased
    });
    net.campaign(1);
    net.raw(1).read_index(&b"lease"[..]);
    let out = net.process_ready(1);
    assert!(out.is_empty());
    assert_eq!(&net.node(1).read_states[0].request_ctx[..], b"lease");
}

#[test]
fn a_follower_read_index_is_forwarded_and_answered_with_the_leader_commit() {
    let mut net = elected(three(), 1);
    net.raw(1).propose(&b"x"[..]).unwrap();
    net.stabilize();
    net.raw(3).read_index(&b"f"[..]);
    net.stabilize();
    let rs = &net.node(3).read_states;
    assert_eq!(
        (rs.len(), rs[0].index, &rs[0].request_ctx[..]),
        (1, 3, &b"f"[..])
    );
}

#[test]
fn a_new_leader_defers_reads_until_it_commits_an_entry_of_its_term() {
    let mut net = three();
    net.raw(1).campaign().unwrap();
    // Run the election but hold back the leader's first append.
    net.dropped_types.insert(MsgApp);
    net.stabilize();
    assert_eq!(net.leader(), Some(1));
    net.raw(1).read_index(&b"early"[..]);
    net.stabilize();
    assert!(net.node(1).read_states.is_empty());
    net.heal();
    net.tick_all(2);
    assert_eq!(net.node(1).read_states.len(), 1);
    assert_eq!(
        net.node(1).read_states[0].index,
        2,
        "the index of the new leader's first entry"
    );
}

// ---- snapshots ------------------------------------------------------------------------------------------------------

#[test]
fn a_follower_behind_the_compacted_log_catches_up_with_a_snapshot() {
    let mut net = elected(three(), 1);
    net.isolate(3);
    for i in 0..20u8 {
        net.raw(1).propose(vec![i]).unwrap();
    }
    net.stabilize();
    let l = net.nodes.get_mut(&1).unwrap();
    let applied = l.node.applied();
    l.storage
        .create_snapshot(
            applied,
            Some(l.conf_state.clone()),
            Bytes::from_static(b"state"),
        )
        .unwrap();
    l.storage.compact(applied).unwrap();
    net.heal();
    net.delivered.clear();
    net.tick_all(3);
    assert!(net
        .delivered
        .iter()
        .any(|m| m.kind() == MsgSnap && m.to == 3));
    let n3 = net.node(3);
    assert_eq!(n3.storage.current_snapshot().index(), applied);
    assert_eq!(&n3.storage.current_snapshot().data[..], b"state");
    net.raw(1).propose(&b"after"[..]).unwrap();
    net.stabilize();
    assert_eq!(net.applied(3), vec![&b"after"[..]]);
    let status = net.raw(1).status();
    assert_eq!(
        status
            .progress
            .iter()
            .find(|(id, _)| *id == 3)
            .unwrap()
            .1
            .matched,
        applied + 1
    );
}

#[test]
fn a_failed_snapshot_and_an_unreachable_peer_fall_back_to_probing() {
    let mut net = elected(three(), 1);
    net.raw(1).propose(&b"x"[..]).unwrap();
    net.stabilize();
    net.raw(1).report_unreachable(2);
    let st = net.raw(1).status();
    assert_eq!(st.progress[1].1.state, ProgressState::Probe);
    // Force snapshot state by compacting past node 3 while it is away.
    net.isolate(3);
    for i in 0..3u8 {
        net.raw(1).propose(vec![i]).unwrap();
    }
    net.stabilize();
    let l = net.nodes.get_mut(&1).unwrap();
    let applied = l.node.applied();
    l.storage
        .create_snapshot(applied, Some(l.conf_state.clone()), Bytes::new())
        .unwrap();
    l.storage.compact(applied).unwrap();
    net.raw(1).report_unreachable(3);
    net.tick_all(1); // heartbeat response is cut: no progress
    net.heal();
    net.dropped_types.insert(MsgSnap);
    net.tick_all(2);
    assert_eq!(
        net.raw(1).status().progress[2].1.state,
        ProgressState::Snapshot
    );
    net.raw(1).report_snapshot(3, raft::SnapshotStatus::Failure);
    assert_eq!(
        net.raw(1).status().progress[2].1.state,
        ProgressState::Probe
    );
    net.heal();
    net.tick_all(3);
    assert_eq!(
        net.applied(3),
        vec![&b"x"[..]],
        "entries 0..3 came in the snapshot, not as entries"
    );
    assert_eq!(net.node(3).node.committed(), net.node(1).node.committed());
}

// ---- misc ---------------------------------------------------------------------------------------------------------

#[test]
fn status_reports_every_peer_on_the_leader() {
    let mut net = elected(three(), 1);
    let st = net.raw(1).status();
    assert_eq!(
        st.progress.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert!(st.progress.iter().all(|(_, p)| p.matched == 2));
    assert_eq!(st.soft_state.raft_state, StateRole::Leader);
    assert!(net.raw(2).status().progress.is_empty());
}

#[test]
fn invalid_configs_and_malformed_conf_changes_are_errors_not_panics() {
    let storage = common::bootstrap_storage(&[1], &[]);
    let bad = Config {
        id: 0,
        ..common::config(1)
    };
    assert!(matches!(
        raft::RawNode::new(&bad, storage.clone()),
        Err(Error::ConfigInvalid(_))
    ));
    let lease_without_quorum = Config {
        read_only_option: ReadOnlyOption::LeaseBased,
        check_quorum: false,
        ..common::config(1)
    };
    assert!(raft::RawNode::new(&lease_without_quorum, storage).is_err());
    let mut net = Network::new(&[1], &[], |_| {});
    net.campaign(1);
    let entry = Entry {
        entry_type: raft::raftpb::EntryType::EntryConfChangeV2 as i32,
        data: Bytes::from_static(&[0xff, 0xff]),
        ..Default::default()
    };
    let mut m = Message::new(MsgProp);
    m.from = 1;
    m.entries = vec![entry];
    assert!(matches!(net.raw(1).step(m), Err(Error::Decode { .. })));
}

#[test]
fn leadership_is_never_transferred_to_a_learner() {
    let mut net = Network::new(&[1, 2], &[3], |_| {});
    net.campaign(1);
    net.raw(1).transfer_leader(3);
    net.stabilize();
    assert_eq!(net.raw(1).status().lead_transferee, None);
    assert_eq!(net.leader(), Some(1));
}

#[test]
fn proposals_beyond_the_uncommitted_size_limit_are_dropped() {
    let mut net = Network::new(&[1, 2, 3], &[], |c| c.max_uncommitted_entries_size = 1000);
    net.campaign(1);
    net.isolate(1); // nothing commits, so the uncommitted tail only grows
    net.raw(1).propose(vec![0u8; 600]).unwrap();
    net.raw(1).propose(vec![0u8; 300]).unwrap();
    assert_eq!(
        net.raw(1).propose(vec![0u8; 200]),
        Err(Error::ProposalDropped)
    );
    net.heal();
    net.tick_all(2);
    net.raw(1).propose(vec![0u8; 200]).unwrap();
    net.stabilize();
    assert_eq!(
        net.applied(2).len(),
        3,
        "the limit frees up once entries commit"
    );
}

#[test]
fn a_removed_follower_stops_receiving_entries() {
    let mut net = elected(three(), 1);
    net.raw(1)
        .propose_conf_change(&cc(ConfChangeType::ConfChangeRemoveNode, 3))
        .unwrap();
    net.stabilize();
    assert_eq!(net.node(1).conf_state.voters, vec![1, 2]);
    net.raw(1).propose(&b"x"[..]).unwrap();
    net.stabilize();
    assert_eq!(net.applied(2), vec![&b"x"[..]]);
    assert!(net.applied(3).is_empty());
    assert!(net.raw(1).status().progress.iter().all(|(id, _)| *id != 3));
}

#[test]
fn an_etcd_style_bootstrap_commits_the_membership_as_conf_change_entries() {
    use raft::{MemoryStorage, Peer, RawNode};
    let peers: Vec<Peer> = (1..=3)
        .map(|id| Peer {
            id,
            context: Bytes::from(format!("member-{id}")),
        })
        .collect();
    let mut net = Network::new(&[], &[], |_| {});
    for id in 1..=3 {
        let storage = MemoryStorage::new();
        let mut node = RawNode::new(&common::config(id), storage.clone()).unwrap();
        node.bootstrap(&peers).unwrap();
        assert!(
            node.bootstrap(&peers).is_err(),
            "only an empty log can be bootstrapped"
        );
        let conf_state = Default::default();
        net.nodes.insert(
            id,
            common::TestNode {
                node,
                storage,
                applied: Vec::new(),
                read_states: Vec::new(),
                conf_state,
                keep_applied: true,
            },
        );
    }
    net.stabilize(); // persist and apply the bootstrap entries
    assert_eq!(net.node(2).conf_state.voters, vec![1, 2, 3]);
    assert_eq!(net.node(2).storage.hard_state().commit, 3);
    net.campaign(1);
    assert_eq!(net.leader(), Some(1));
    // A member added later learns the whole membership from the log: no snapshot needed.
    net.add_empty_node(4, |_| {});
    net.raw(1)
        .propose_conf_change(&cc(ConfChangeType::ConfChangeAddLearnerNode, 4))
        .unwrap();
    net.raw(1).propose(&b"x"[..]).unwrap();
    net.stabilize();
    net.tick_all(2);
    assert_eq!(net.node(4).conf_state.voters, vec![1, 2, 3]);
    assert_eq!(net.node(4).conf_state.learners, vec![4]);
    assert_eq!(net.applied(4), vec![&b"x"[..]]);
}

#[test]
fn a_learner_with_a_higher_term_is_not_left_behind_without_pre_vote_or_check_quorum() {
    // Found by the simulator: a learner cannot campaign, so if it alone holds a higher term (from before it was
    // demoted), the leader must learn that term from its answer to a stale MsgApp, or the learner never catches up.
    let mut net = Network::new(&[1, 2], &[3], |c| {
        c.pre_vote = false;
        c.check_quorum = false;
    });
    net.campaign(1);
    net.raw(3).step(vote_req(2, 3, 9, 1, 1)).unwrap();
    net.process_ready(3); // the vote answer is lost
    assert_eq!(net.node(3).term(), 9);
    net.tick_all(30);
    let leader = net.leader().unwrap();
    assert!(
        net.node(leader).term() > 9,
        "the leader stepped down and a new term began"
    );
    net.raw(leader).propose(&b"x"[..]).unwrap();
    net.stabilize();
    assert_eq!(net.applied(3), vec![&b"x"[..]]);
}
