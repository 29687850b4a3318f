//! A tiny deterministic in-memory cluster for scenario tests and benches: every node persists its Ready into a
//! `MemoryStorage`, applies committed entries and conf changes, and messages travel through one queue.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use raft::raftpb::{
    ConfState, Entry, EntryType, HardState, Message, MessageType, Snapshot, SnapshotMetadata,
};
use raft::{
    decode_conf_change, Config, MemoryStorage, RawNode, ReadState, SnapshotStatus, StateRole,
};

pub struct TestNode {
    pub node: RawNode<MemoryStorage>,
    pub storage: MemoryStorage,
    /// Data of the normal, non-empty entries applied, in order.
    pub applied: Vec<Bytes>,
    pub read_states: Vec<ReadState>,
    pub conf_state: ConfState,
    /// Whether `applied` records entries (benches turn it off).
    pub keep_applied: bool,
}

impl TestNode {
    pub fn state(&self) -> StateRole {
        self.node.role()
    }

    pub fn term(&self) -> u64 {
        self.node.term()
    }
}

/// A storage bootstrapped as etcd does for a new cluster: the initial membership is committed at index 1, term 1.
pub fn bootstrap_storage(voters: &[u64], learners: &[u64]) -> MemoryStorage {
    let storage = MemoryStorage::new();
    let cs = ConfState {
        voters: voters.to_vec(),
        learners: learners.to_vec(),
        ..Default::default()
    };
    storage
        .apply_snapshot(Snapshot {
            data: Bytes::new(),
            metadata: Some(SnapshotMetadata {
                conf_state: Some(cs),
                index: 1,
                term: 1,
            }),
        })
        .unwrap();
    storage.set_hard_state(HardState {
        term: 1,
        vote: 0,
        commit: 1,
    });
    storage
}

pub fn config(id: u64) -> Config {
    Config {
        id,
        election_tick: 10,
        heartbeat_tick: 1,
        seed: id,
        ..Config::default()
    }
}

pub struct Network {
    pub nodes: BTreeMap<u64, TestNode>,
    pub in_flight: Vec<Message>,
    cut: BTreeSet<(u64, u64)>,
    pub dropped_types: BTreeSet<MessageType>,
    /// Every message delivered, for assertions on traffic (when `record` is set).
    pub delivered: Vec<Message>,
    pub record: bool,
}

impl Network {
    pub fn new(voters: &[u64], learners: &[u64], tweak: impl Fn(&mut Config)) -> Network {
        let mut nodes = BTreeMap::new();
        for &id in voters.iter().chain(learners) {
            let storage = bootstrap_storage(voters, learners);
            let mut cfg = config(id);
            tweak(&mut cfg);
            nodes.insert(id, Self::start(cfg, storage));
        }
        Network {
            nodes,
            in_flight: Vec::new(),
            cut: BTreeSet::new(),
            dropped_types: BTreeSet::new(),
            delivered: Vec::new(),
            record: true,
        }
    }

    pub fn start(cfg: Config, storage: MemoryStorage) -> TestNode {
        let conf_state = storage.current_snapshot().conf_state();
        let node = RawNode::new(&cfg, storage.clone()).unwrap();
        TestNode {
            node,
            storage,
            applied: Vec::new(),
            read_states: Vec::new(),
            conf_state,
            keep_applied: true,
        }
    }

    /// Adds a node with an empty log, as a member joining an existing cluster.
    pub fn add_empty_node(&mut self, id: u64, tweak: impl Fn(&mut Config)) {
        let mut cfg = config(id);
        tweak(&mut cfg);
        self.nodes
            .insert(id, Self::start(cfg, MemoryStorage::new()));
    }

    pub fn node(&self, id: u64) -> &TestNode {
        &self.nodes[&id]
    }

    pub fn raw(&mut self, id: u64) -> &mut RawNode<MemoryStorage> {
        &mut self.nodes.get_mut(&id).unwrap().node
    }

    /// Handles one Ready of `id` completely and returns its outgoing messages (both kinds, in send order).
    pub fn process_ready(&mut self, id: u64) -> Vec<Message> {
        self.process_ready_observed(id, |_| {})
    }

    /// Like [`Network::process_ready`], showing the Ready to `observe` before handling it.
    pub fn process_ready_observed(
        &mut self,
        id: u64,
        observe: impl FnOnce(&raft::Ready),
    ) -> Vec<Message> {
        let n = self.nodes.get_mut(&id).unwrap();
        if !n.node.has_ready() {
            return Vec::new();
        }
        let mut rd = n.node.ready();
        observe(&rd);
        let mut out = std::mem::take(&mut rd.messages);
        if let Some(s) = &rd.snapshot {
            n.storage.apply_snapshot(s.clone()).unwrap();
            n.conf_state = s.conf_state();
        }
        n.storage.append(std::mem::take(&mut rd.entries)).unwrap();
        if let Some(hs) = rd.hard_state {
            n.storage.set_hard_state(hs);
        }
        out.append(&mut rd.persisted_messages);
        for e in &rd.committed_entries {
            apply_entry(n, e);
        }
        n.read_states.append(&mut rd.read_states);
        n.node.advance();
        out
    }

    /// Processes every Ready of every node once; returns the messages (not yet delivered).
    pub fn collect_messages(&mut self) -> Vec<Message> {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        let mut out = Vec::new();
        for id in ids {
            while self.nodes[&id].node.has_ready() {
                out.extend(self.process_ready(id));
            }
        }
        out
    }

    pub fn send(&mut self, msgs: Vec<Message>) {
        for m in msgs {
            if self.cut.contains(&(m.from, m.to)) || self.dropped_types.contains(&m.kind()) {
                continue;
            }
            self.in_flight.push(m);
        }
    }

    /// Delivers everything in flight once.
    pub fn deliver(&mut self) -> usize {
        let msgs = std::mem::take(&mut self.in_flight);
        let n = msgs.len();
        for m in msgs {
            let (from, to, kind) = (m.from, m.to, m.kind());
            if self.record {
                self.delivered.push(m.clone());
            }
            if let Some(node) = self.nodes.get_mut(&to) {
                let _ = node.node.step(m);
                if kind == MessageType::MsgSnap {
                    if let Some(sender) = self.nodes.get_mut(&from) {
                        sender.node.report_snapshot(to, SnapshotStatus::Finish);
                    }
                }
            }
        }
        n
    }

    /// Runs Readies and deliveries until the cluster is quiet.
    pub fn stabilize(&mut self) {
        for _ in 0..10_000 {
            let msgs = self.collect_messages();
            self.send(msgs);
            if self.deliver() == 0 && !self.nodes.values().any(|n| n.node.has_ready()) {
                return;
            }
        }
        panic!("cluster did not stabilize");
    }

    pub fn tick(&mut self, id: u64, times: usize) {
        for _ in 0..times {
            self.raw(id).tick();
        }
    }

    /// Ticks every node once and stabilizes, `times` times.
    pub fn tick_all(&mut self, times: usize) {
        for _ in 0..times {
            let ids: Vec<u64> = self.nodes.keys().copied().collect();
            for id in ids {
                self.raw(id).tick();
            }
            self.stabilize();
        }
    }

    pub fn campaign(&mut self, id: u64) {
        self.raw(id).campaign().unwrap();
        self.stabilize();
    }

    pub fn isolate(&mut self, id: u64) {
        let ids: Vec<u64> = self.nodes.keys().copied().filter(|o| *o != id).collect();
        for o in ids {
            self.cut.insert((id, o));
            self.cut.insert((o, id));
        }
    }

    pub fn cut(&mut self, a: u64, b: u64) {
        self.cut.insert((a, b));
        self.cut.insert((b, a));
    }

    pub fn heal(&mut self) {
        self.cut.clear();
        self.dropped_types.clear();
    }

    pub fn leader(&self) -> Option<u64> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.state() == StateRole::Leader)
            .max_by_key(|(_, n)| n.term())
            .map(|(id, _)| *id)
    }

    pub fn applied(&self, id: u64) -> Vec<&[u8]> {
        self.nodes[&id].applied.iter().map(|b| &b[..]).collect()
    }
}

pub fn apply_entry(n: &mut TestNode, e: &Entry) {
    match e.kind() {
        EntryType::EntryNormal => {
            if !e.data.is_empty() && n.keep_applied {
                n.applied.push(e.data.clone());
            }
        }
        EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
            let cc = decode_conf_change(e).unwrap();
            n.conf_state = n.node.apply_conf_change(&cc).unwrap();
        }
    }
}

pub fn kinds(msgs: &[Message]) -> Vec<(MessageType, u64, u64)> {
    msgs.iter().map(|m| (m.kind(), m.from, m.to)).collect()
}
