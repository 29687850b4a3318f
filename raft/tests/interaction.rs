//! Scenario scripts in the spirit of etcd-io/raft's interaction tests: `tests/testdata/*.txt` hold commands (lines
//! starting with `> `) followed by the output they must produce. The run fails on any difference and prints the
//! whole actual transcript; `RAFT_REWRITE=1` rewrites the files instead (review the diff before committing).
//!
//! Commands:
//! `add-nodes <voters> [learners=a,b] [pre-vote=false] [check-quorum=false] [read-only=lease]`,
//! `campaign <id>`, `tick <id> <n>`, `propose <id> <data>`, `propose-conf-change <id> [explicit|implicit] <ops>`
//! (ops `v4` add voter, `l4` add learner, `r4` remove), `process-ready <id>`, `deliver-msgs`, `stabilize`,
//! `isolate <id>`, `heal`, `compact <id>` (snapshot at the applied index, drop the log before it), `transfer-leader <leader> <to>`, `read-index <id> <ctx>`, `raft-state`, `applied <id>`.

mod common;

use std::fmt::Write as _;

use bytes::Bytes;
use common::Network;
use raft::raftpb::{
    ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2, Entry, EntryType,
    Message, MessageType,
};
use raft::{ReadOnlyOption, Ready};

fn fmt_entry(e: &Entry) -> String {
    match e.kind() {
        EntryType::EntryNormal => format!(
            "{}/{} {:?}",
            e.term,
            e.index,
            String::from_utf8_lossy(&e.data)
        ),
        _ => match raft::decode_conf_change(e) {
            Ok(cc) if cc.changes.is_empty() => format!("{}/{} leave-joint", e.term, e.index),
            Ok(cc) => format!("{}/{} conf-change {}", e.term, e.index, fmt_changes(&cc)),
            Err(_) => format!("{}/{} conf-change ?", e.term, e.index),
        },
    }
}

fn fmt_changes(cc: &ConfChangeV2) -> String {
    cc.changes
        .iter()
        .map(|c| match c.kind() {
            ConfChangeType::ConfChangeAddNode => format!("v{}", c.node_id),
            ConfChangeType::ConfChangeAddLearnerNode => format!("l{}", c.node_id),
            ConfChangeType::ConfChangeRemoveNode => format!("r{}", c.node_id),
            ConfChangeType::ConfChangeUpdateNode => format!("u{}", c.node_id),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn fmt_msg(m: &Message) -> String {
    let mut s = format!("{}->{} {:?} Term:{}", m.from, m.to, m.kind(), m.term);
    match m.kind() {
        MessageType::MsgApp => {
            let _ = write!(s, " Log:{}/{} Commit:{}", m.log_term, m.index, m.commit);
            if !m.entries.is_empty() {
                let ents: Vec<String> = m.entries.iter().map(fmt_entry).collect();
                let _ = write!(s, " Entries:[{}]", ents.join(", "));
            }
        }
        MessageType::MsgAppResp => {
            let _ = write!(s, " Index:{}", m.index);
            if m.reject {
                let _ = write!(s, " Rejected (Hint: {}/{})", m.log_term, m.reject_hint);
            }
        }
        MessageType::MsgVote | MessageType::MsgPreVote => {
            let _ = write!(s, " Log:{}/{}", m.log_term, m.index);
            if !m.context.is_empty() {
                let _ = write!(s, " Context:{}", String::from_utf8_lossy(&m.context));
            }
        }
        MessageType::MsgVoteResp | MessageType::MsgPreVoteResp if m.reject => {
            s.push_str(" Rejected")
        }
        MessageType::MsgHeartbeat | MessageType::MsgHeartbeatResp => {
            if m.kind() == MessageType::MsgHeartbeat {
                let _ = write!(s, " Commit:{}", m.commit);
            }
            if !m.context.is_empty() {
                let _ = write!(s, " Context:{}", String::from_utf8_lossy(&m.context));
            }
        }
        MessageType::MsgSnap => {
            let snap = m.snapshot.clone().unwrap_or_default();
            let _ = write!(
                s,
                " Snapshot:{}/{} Voters:{:?}",
                snap.term(),
                snap.index(),
                snap.conf_state().voters
            );
        }
        MessageType::MsgReadIndex | MessageType::MsgReadIndexResp => {
            let _ = write!(s, " Index:{}", m.index);
        }
        _ => {}
    }
    s
}

fn fmt_ready(id: u64, rd: &Ready, out: &mut String) {
    let _ = writeln!(out, "Ready {id}:");
    if let Some(ss) = rd.soft_state {
        let _ = writeln!(out, "  Lead:{} State:{:?}", ss.leader_id, ss.raft_state);
    }
    if let Some(hs) = rd.hard_state {
        let _ = writeln!(
            out,
            "  HardState Term:{} Vote:{} Commit:{}",
            hs.term, hs.vote, hs.commit
        );
    }
    if !rd.entries.is_empty() {
        let ents: Vec<String> = rd.entries.iter().map(fmt_entry).collect();
        let _ = writeln!(out, "  Entries: {}", ents.join(", "));
    }
    if let Some(s) = &rd.snapshot {
        let _ = writeln!(out, "  Snapshot: {}/{}", s.term(), s.index());
    }
    if !rd.committed_entries.is_empty() {
        let ents: Vec<String> = rd.committed_entries.iter().map(fmt_entry).collect();
        let _ = writeln!(out, "  Committed: {}", ents.join(", "));
    }
    for m in &rd.messages {
        let _ = writeln!(out, "  send now: {}", fmt_msg(m));
    }
    for m in &rd.persisted_messages {
        let _ = writeln!(out, "  send after persist: {}", fmt_msg(m));
    }
    for rs in &rd.read_states {
        let _ = writeln!(
            out,
            "  ReadState Index:{} Ctx:{}",
            rs.index,
            String::from_utf8_lossy(&rs.request_ctx)
        );
    }
}

struct Runner {
    net: Option<Network>,
}

impl Runner {
    fn net(&mut self) -> &mut Network {
        self.net.as_mut().expect("add-nodes first")
    }

    fn process_ready(&mut self, id: u64, out: &mut String) {
        let msgs = self
            .net()
            .process_ready_observed(id, |rd| fmt_ready(id, rd, out));
        self.net().send(msgs);
    }

    fn ready_ids(&mut self) -> Vec<u64> {
        let net = self.net();
        net.nodes
            .iter()
            .filter(|(_, n)| n.node.has_ready())
            .map(|(id, _)| *id)
            .collect()
    }

    fn deliver(&mut self, out: &mut String) -> usize {
        let net = self.net();
        for m in &net.in_flight {
            let _ = writeln!(out, "deliver: {}", fmt_msg(m));
        }
        net.deliver()
    }

    fn run(&mut self, cmd: &str, out: &mut String) {
        let args: Vec<&str> = cmd.split_whitespace().collect();
        let id = |i: usize| -> u64 { args[i].parse().expect("node id") };
        match args[0] {
            "add-nodes" => {
                let n: u64 = args[1].parse().unwrap();
                let voters: Vec<u64> = (1..=n).collect();
                let mut learners = Vec::new();
                let (mut pre_vote, mut check_quorum, mut lease) = (true, true, false);
                for opt in &args[2..] {
                    match opt.split_once('=') {
                        Some(("learners", v)) => {
                            learners = v.split(',').map(|x| x.parse().unwrap()).collect()
                        }
                        Some(("pre-vote", v)) => pre_vote = v == "true",
                        Some(("check-quorum", v)) => check_quorum = v == "true",
                        Some(("read-only", v)) => lease = v == "lease",
                        _ => panic!("unknown option {opt}"),
                    }
                }
                self.net = Some(Network::new(&voters, &learners, |c| {
                    c.pre_vote = pre_vote;
                    c.check_quorum = check_quorum;
                    if lease {
                        c.read_only_option = ReadOnlyOption::LeaseBased;
                    }
                }));
                out.push_str("ok\n");
            }
            "campaign" => {
                let r = self.net().raw(id(1)).campaign();
                let _ = writeln!(out, "{r:?}");
            }
            "tick" => {
                let n: usize = args[2].parse().unwrap();
                self.net().tick(id(1), n);
                out.push_str("ok\n");
            }
            "propose" => {
                let r = self
                    .net()
                    .raw(id(1))
                    .propose(Bytes::from(args[2].to_string()));
                let _ = writeln!(out, "{r:?}");
            }
            "propose-conf-change" => {
                let mut transition = ConfChangeTransition::ConfChangeTransitionAuto;
                let mut changes = Vec::new();
                for op in &args[2..] {
                    match *op {
                        "explicit" => {
                            transition = ConfChangeTransition::ConfChangeTransitionJointExplicit
                        }
                        "implicit" => {
                            transition = ConfChangeTransition::ConfChangeTransitionJointImplicit
                        }
                        _ => {
                            let t = match &op[..1] {
                                "v" => ConfChangeType::ConfChangeAddNode,
                                "l" => ConfChangeType::ConfChangeAddLearnerNode,
                                "r" => ConfChangeType::ConfChangeRemoveNode,
                                other => panic!("unknown op {other}"),
                            };
                            changes.push(ConfChangeSingle::new(t, op[1..].parse().unwrap()));
                        }
                    }
                }
                let cc = ConfChangeV2 {
                    transition: transition as i32,
                    changes,
                    context: Bytes::new(),
                };
                let r = self.net().raw(id(1)).propose_conf_change_v2(&cc);
                let _ = writeln!(out, "{r:?}");
            }
            "process-ready" => self.process_ready(id(1), out),
            "deliver-msgs" => {
                self.deliver(out);
            }
            "stabilize" => loop {
                let ids = self.ready_ids();
                for i in &ids {
                    self.process_ready(*i, out);
                }
                if self.net().in_flight.is_empty() && ids.is_empty() {
                    break;
                }
                self.deliver(out);
            },
            "isolate" => {
                self.net().isolate(id(1));
                out.push_str("ok\n");
            }
            "heal" => {
                self.net().heal();
                out.push_str("ok\n");
            }
            "transfer-leader" => {
                let to = id(2);
                self.net().raw(id(1)).transfer_leader(to);
                out.push_str("ok\n");
            }
            "read-index" => {
                let ctx = Bytes::from(args[2].to_string());
                self.net().raw(id(1)).read_index(ctx);
                out.push_str("ok\n");
            }
            "raft-state" => {
                let net = self.net();
                for (i, n) in &net.nodes {
                    let r = &n.node;
                    let _ = writeln!(
                        out,
                        "{i}: {:?} Term:{} Lead:{} Commit:{} Applied:{} Voters:{:?} Learners:{:?} Outgoing:{:?}",
                        r.role(),
                        r.term(),
                        r.leader_id(),
                        r.committed(),
                        r.applied(),
                        n.conf_state.voters,
                        n.conf_state.learners,
                        n.conf_state.voters_outgoing
                    );
                }
            }
            "compact" => {
                let n = self.net().nodes.get_mut(&id(1)).unwrap();
                let applied = n.node.applied();
                let cs = n.conf_state.clone();
                n.storage
                    .create_snapshot(applied, Some(cs), Bytes::from_static(b"sm"))
                    .unwrap();
                n.storage.compact(applied).unwrap();
                let _ = writeln!(out, "snapshot and compact at {applied}");
            }
            "applied" => {
                let applied: Vec<String> = self
                    .net()
                    .node(id(1))
                    .applied
                    .iter()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .collect();
                let _ = writeln!(out, "{}", applied.join(" "));
            }
            other => panic!("unknown command {other}"),
        }
    }
}

/// Runs one script; returns the transcript it should have.
fn transcript(script: &str) -> String {
    let mut runner = Runner { net: None };
    let mut out = String::new();
    for line in script.lines() {
        if let Some(cmd) = line.strip_prefix("> ") {
            out.push_str(line);
            out.push('\n');
            runner.run(cmd, &mut out);
        } else if line.starts_with('#') || line.is_empty() {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[test]
fn scenario_scripts_produce_their_recorded_output() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let rewrite = std::env::var("RAFT_REWRITE").is_ok_and(|v| v == "1");
    let mut failed = Vec::new();
    for path in files {
        let script = std::fs::read_to_string(&path).unwrap();
        let actual = transcript(&script);
        if actual != script {
            if rewrite {
                std::fs::write(&path, &actual).unwrap();
            } else {
                println!(
                    "==== {} differs; actual transcript:\n{actual}",
                    path.display()
                );
                failed.push(path.display().to_string());
            }
        }
    }
    assert!(failed.is_empty(), "scenario scripts differ: {failed:?}");
}
