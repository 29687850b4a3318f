//! Cluster membership (etcd's `membership.RaftCluster`): the members, their ids, and how they
//! are stored in the backend so that a restart or a snapshot brings them back.
//!
//! Member ids and the cluster id are computed as etcd computes them (SHA-1 of the peer URLs
//! and the cluster token; SHA-1 of the sorted member ids), so the same flags give the same ids.

use std::collections::{BTreeMap, BTreeSet};

use backend::{Backend, BatchTx, Table};
use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};

/// One member as etcd stores it in the `members` bucket (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Member {
    pub id: u64,
    #[serde(rename = "peerURLs")]
    pub peer_urls: Vec<String>,
    /// Empty until the member has started and published its attributes.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(rename = "clientURLs", default, skip_serializing_if = "Vec::is_empty")]
    pub client_urls: Vec<String>,
    #[serde(
        rename = "isLearner",
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub is_learner: bool,
}

impl Member {
    /// etcd's `NewMember`: the id is the first 8 bytes of SHA-1(sorted peer URLs ‖ token
    /// [‖ unix seconds, for members added at runtime]).
    pub fn new(name: &str, peer_urls: &[String], token: &str, now_unix: Option<i64>) -> Member {
        let mut urls = peer_urls.to_vec();
        urls.sort();
        let mut h = Sha1::new();
        h.update(urls.join("").as_bytes());
        h.update(token.as_bytes());
        if let Some(now) = now_unix {
            h.update(now.to_string().as_bytes());
        }
        let digest = h.finalize();
        let id = u64::from_be_bytes(digest[..8].try_into().expect("sha1 has 20 bytes"));
        Member {
            id,
            peer_urls: urls,
            name: name.to_owned(),
            client_urls: Vec::new(),
            is_learner: false,
        }
    }

    pub fn to_api(&self) -> api::etcdserverpb::Member {
        api::etcdserverpb::Member {
            id: self.id,
            name: self.name.clone(),
            peer_ur_ls: self.peer_urls.clone(),
            client_ur_ls: self.client_urls.clone(),
            is_learner: self.is_learner,
        }
    }
}

/// etcd's `genID` for a new cluster: SHA-1 over the sorted member ids, big-endian.
pub fn cluster_id(member_ids: &[u64]) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let mut h = Sha1::new();
    for id in ids {
        h.update(id.to_be_bytes());
    }
    let digest = h.finalize();
    u64::from_be_bytes(digest[..8].try_into().expect("sha1 has 20 bytes"))
}

/// Why the membership could not be read from the backend.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    #[error("{0}")]
    Backend(#[from] backend::Error),
    #[error("corrupt member record: {0}")]
    Corrupt(#[from] serde_json::Error),
}

/// Members and removed members of the cluster, as applied so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Membership {
    pub members: BTreeMap<u64, Member>,
    pub removed: BTreeSet<u64>,
}

/// The members, by hex id, as JSON (etcd's `members` bucket).
pub const MEMBERS_TABLE: Table = Table::new("members");
/// The ids of removed members (etcd's `members_removed` bucket).
pub const MEMBERS_REMOVED_TABLE: Table = Table::new("members_removed");

fn member_key(id: u64) -> Vec<u8> {
    format!("{id:x}").into_bytes()
}

impl Membership {
    /// Reads the `members` and `members_removed` tables.
    pub fn load(backend: &Backend) -> Result<Membership, MembershipError> {
        let read = backend.read();
        let mut members = BTreeMap::new();
        let mut bad = None;
        read.scan(MEMBERS_TABLE, &[], None, |_: &[u8], v: &[u8]| {
            match serde_json::from_slice::<Member>(v) {
                Ok(m) => {
                    members.insert(m.id, m);
                }
                Err(e) => bad = Some(e),
            }
            true
        })?;
        if let Some(e) = bad {
            return Err(e.into());
        }
        let mut removed = BTreeSet::new();
        read.scan(MEMBERS_REMOVED_TABLE, &[], None, |k: &[u8], _: &[u8]| {
            if let Some(id) = std::str::from_utf8(k)
                .ok()
                .and_then(|s| u64::from_str_radix(s, 16).ok())
            {
                removed.insert(id);
            }
            true
        })?;
        Ok(Membership { members, removed })
    }

    pub fn save_member(tx: &mut BatchTx<'_>, m: &Member) {
        let json = serde_json::to_vec(m).expect("a member always serializes");
        tx.put(MEMBERS_TABLE, member_key(m.id), json);
    }

    pub fn save_removed(tx: &mut BatchTx<'_>, id: u64) {
        tx.delete(MEMBERS_TABLE, member_key(id));
        tx.put(MEMBERS_REMOVED_TABLE, member_key(id), b"removed".to_vec());
    }

    /// Members sorted by id, as etcd lists them.
    pub fn list(&self) -> Vec<Member> {
        self.members.values().cloned().collect()
    }

    pub fn voter_count(&self) -> usize {
        self.members.values().filter(|m| !m.is_learner).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_etcds() {
        // etcd 3.4 started with `--name default` and defaults reports member id 8e9e05c52164694d
        // and cluster id cdf818194e3a8c32 (peer URL http://localhost:2380, token etcd-cluster).
        let m = Member::new(
            "default",
            &["http://localhost:2380".into()],
            "etcd-cluster",
            None,
        );
        assert_eq!(format!("{:x}", m.id), "8e9e05c52164694d");
        assert_eq!(format!("{:x}", cluster_id(&[m.id])), "cdf818194e3a8c32");
    }

    #[test]
    fn member_json_round_trips_in_etcds_shape() {
        let m = Member {
            id: 1,
            peer_urls: vec!["http://a:2380".into()],
            name: "n".into(),
            client_urls: vec!["http://a:2379".into()],
            is_learner: false,
        };
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(
            json,
            r#"{"id":1,"peerURLs":["http://a:2380"],"name":"n","clientURLs":["http://a:2379"]}"#
        );
        assert_eq!(serde_json::from_str::<Member>(&json).unwrap(), m);
    }
}
