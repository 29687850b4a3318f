//! The alarms in force (etcd's `v3alarm.AlarmStore`) and what they do to the applier.
//!
//! An alarm is a (member, kind) pair raised and cleared through raft, so every member holds the
//! same set. It lives in the backend table `alarm` as etcd stores it: the key is the marshalled
//! `AlarmMember`, the value is empty. While a NOSPACE alarm is in force the KV applier is
//! etcd's capped applier, while a CORRUPT one is, its corrupt applier (see `apply.rs`); the
//! applier reads which with one atomic load.

use std::sync::atomic::{AtomicU8, Ordering};

use api::etcdserverpb::alarm_request::AlarmAction;
use api::etcdserverpb::{AlarmMember, AlarmRequest, AlarmType, InternalRaftRequest};
use backend::{Backend, BatchTx};
use parking_lot::RwLock;
use prost::Message as _;

use super::schema::ALARM_TABLE;
use super::EtcdServer;
use crate::core::Applied;
use crate::error::ServerError;

/// Bit of [`AlarmStore::in_force`] set while a NOSPACE alarm is.
const NOSPACE: u8 = 1;
/// Bit of [`AlarmStore::in_force`] set while a CORRUPT alarm is.
const CORRUPT: u8 = 2;

/// Which applier the alarms in force call for (etcd's `applierV3` wrappers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ApplierMode {
    Normal,
    /// NOSPACE: writes that grow the database fail with NOSPACE.
    Capped,
    /// CORRUPT: every write, compaction and lease change fails with `corrupt cluster`.
    Corrupt,
}

/// The alarms in force (etcd's AlarmStore), loaded from the backend table `alarm` at start and
/// after a snapshot is applied; key = marshalled `AlarmMember{member_id, alarm}`, empty value.
pub(crate) struct AlarmStore {
    /// Sorted by (kind, member): `GET` lists them in this order.
    alarms: RwLock<Vec<AlarmMember>>,
    /// [`NOSPACE`] | [`CORRUPT`] bits of the kinds in force: the applier's only cost.
    in_force: AtomicU8,
}

impl AlarmStore {
    /// The alarms recorded in `backend`.
    pub(crate) fn load(backend: &Backend) -> Result<AlarmStore, backend::Error> {
        let store = AlarmStore {
            alarms: RwLock::new(Vec::new()),
            in_force: AtomicU8::new(0),
        };
        store.reload(backend)?;
        Ok(store)
    }

    /// Replaces the alarms with the ones recorded in `backend` (after a snapshot replaced it).
    pub(crate) fn reload(&self, backend: &Backend) -> Result<(), backend::Error> {
        let mut loaded = Vec::new();
        let mut undecodable = 0usize;
        backend.read().scan(ALARM_TABLE, &[], None, |k, _| {
            match AlarmMember::decode(k) {
                Ok(m) => loaded.push(m),
                Err(_) => undecodable += 1,
            }
            true
        })?;
        if undecodable > 0 {
            tracing::warn!(undecodable, "ignoring undecodable keys in the alarm table");
        }
        loaded.sort_by_key(|m| (m.alarm, m.member_id));
        loaded.dedup();
        let mut alarms = self.alarms.write();
        *alarms = loaded;
        self.in_force.store(bits(&alarms), Ordering::Release);
        Ok(())
    }

    /// The applier the alarms in force call for. CORRUPT wins over NOSPACE, as after etcd's
    /// `restoreAlarms`.
    pub(crate) fn mode(&self) -> ApplierMode {
        let bits = self.in_force.load(Ordering::Acquire);
        if bits & CORRUPT != 0 {
            ApplierMode::Corrupt
        } else if bits & NOSPACE != 0 {
            ApplierMode::Capped
        } else {
            ApplierMode::Normal
        }
    }

    /// Whether a NOSPACE alarm is in force.
    pub(crate) fn has_nospace(&self) -> bool {
        self.in_force.load(Ordering::Acquire) & NOSPACE != 0
    }

    /// The alarms of `kind` (`NONE`: all of them).
    pub(crate) fn get(&self, kind: i32) -> Vec<AlarmMember> {
        let alarms = self.alarms.read();
        if kind == AlarmType::None as i32 {
            return alarms.clone();
        }
        alarms.iter().filter(|m| m.alarm == kind).cloned().collect()
    }

    /// Applies a committed Alarm request (etcd's `applierV3backend.Alarm`): `GET` lists,
    /// `ACTIVATE` records (member, kind) unless recorded already and answers the entry,
    /// `DEACTIVATE` removes it and answers it (nothing when it was not there).
    pub(crate) fn apply(&self, tx: &mut BatchTx<'_>, req: &AlarmRequest) -> Vec<AlarmMember> {
        let member = AlarmMember {
            member_id: req.member_id,
            alarm: req.alarm,
        };
        match AlarmAction::try_from(req.action) {
            Ok(AlarmAction::Get) => self.get(req.alarm),
            Ok(AlarmAction::Activate) => {
                // As etcd 3.4.23, any kind is recorded, NONE too: it changes no applier but is
                // listed, and makes `/health` false.
                let mut alarms = self.alarms.write();
                if let Err(at) = alarms
                    .binary_search_by_key(&(member.alarm, member.member_id), |m| {
                        (m.alarm, m.member_id)
                    })
                {
                    tx.put(ALARM_TABLE, member.encode_to_vec(), Vec::new());
                    alarms.insert(at, member);
                    self.in_force.store(bits(&alarms), Ordering::Release);
                    tracing::warn!(
                        alarm = kind_name(member.alarm),
                        from = format!("{:x}", member.member_id),
                        "alarm raised"
                    );
                }
                vec![member]
            }
            Ok(AlarmAction::Deactivate) => {
                let mut alarms = self.alarms.write();
                let Ok(at) = alarms.binary_search_by_key(&(member.alarm, member.member_id), |m| {
                    (m.alarm, m.member_id)
                }) else {
                    return Vec::new();
                };
                tx.delete(ALARM_TABLE, member.encode_to_vec());
                alarms.remove(at);
                self.in_force.store(bits(&alarms), Ordering::Release);
                tracing::warn!(
                    alarm = kind_name(member.alarm),
                    from = format!("{:x}", member.member_id),
                    "alarm disarmed"
                );
                vec![member]
            }
            Err(_) => Vec::new(),
        }
    }
}

fn bits(alarms: &[AlarmMember]) -> u8 {
    alarms.iter().fold(0, |b, m| {
        b | match AlarmType::try_from(m.alarm) {
            Ok(AlarmType::Nospace) => NOSPACE,
            Ok(AlarmType::Corrupt) => CORRUPT,
            _ => 0,
        }
    })
}

/// etcd's name of an alarm kind (`NOSPACE`, `CORRUPT`...), for logs and `/health`.
pub(crate) fn kind_name(kind: i32) -> &'static str {
    AlarmType::try_from(kind).map_or("UNKNOWN", |k| k.as_str_name())
}

impl EtcdServer {
    /// Proposes `Alarm{ACTIVATE, member_id, kind}` through raft (etcd's raiseAlarm) and returns when applied.
    /// Idempotent: an existing (member, kind) is left as is.
    pub(crate) async fn raise_alarm(
        &self,
        member_id: u64,
        kind: AlarmType,
    ) -> Result<(), ServerError> {
        self.alarm_request(AlarmRequest {
            action: AlarmAction::Activate as i32,
            member_id,
            alarm: kind as i32,
        })
        .await
        .map(|_| ())
    }

    /// The alarms in force on this member as applied so far.
    pub(crate) fn active_alarms(&self) -> Vec<AlarmMember> {
        self.inner.alarms.get(AlarmType::None as i32)
    }

    /// Forgets the database size the quota cached (after a defragmentation).
    pub(crate) fn refresh_quota(&self) {
        self.inner.quota.refresh();
    }

    /// An Alarm request through raft (etcd's `EtcdServer.Alarm`): what applying it answered.
    pub(crate) async fn alarm_request(
        &self,
        req: AlarmRequest,
    ) -> Result<Vec<AlarmMember>, ServerError> {
        let applied = self
            .inner
            .proposer
            .propose(InternalRaftRequest {
                alarm: Some(req),
                ..Default::default()
            })
            .await?;
        match applied {
            Applied::Alarms(alarms) => Ok(alarms),
            other => Err(ServerError::Internal(format!(
                "an alarm request applied as {other:?}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backend::BackendConfig;

    fn backend() -> Backend {
        Backend::in_memory(BackendConfig::default(), &super::super::schema::TABLES).unwrap()
    }

    fn req(action: AlarmAction, member_id: u64, kind: AlarmType) -> AlarmRequest {
        AlarmRequest {
            action: action as i32,
            member_id,
            alarm: kind as i32,
        }
    }

    #[test]
    fn activate_is_idempotent_persisted_and_sets_the_mode() {
        let be = backend();
        let store = AlarmStore::load(&be).unwrap();
        assert_eq!(store.mode(), ApplierMode::Normal);
        let raised = store.apply(
            &mut be.batch_tx(),
            &req(AlarmAction::Activate, 7, AlarmType::Nospace),
        );
        assert_eq!(raised.len(), 1);
        let again = store.apply(
            &mut be.batch_tx(),
            &req(AlarmAction::Activate, 7, AlarmType::Nospace),
        );
        assert_eq!(again, raised);
        assert_eq!(store.mode(), ApplierMode::Capped);
        store.apply(
            &mut be.batch_tx(),
            &req(AlarmAction::Activate, 0, AlarmType::Corrupt),
        );
        assert_eq!(store.mode(), ApplierMode::Corrupt);
        store.apply(
            &mut be.batch_tx(),
            &req(AlarmAction::Activate, 5, AlarmType::None),
        );
        assert_eq!(store.mode(), ApplierMode::Corrupt);

        let reloaded = AlarmStore::load(&be).unwrap();
        assert_eq!(reloaded.get(AlarmType::None as i32).len(), 3);
        assert_eq!(reloaded.get(AlarmType::Corrupt as i32)[0].member_id, 0);
        assert_eq!(reloaded.mode(), ApplierMode::Corrupt);
        // etcd's key: the marshalled AlarmMember (memberID 7, alarm NOSPACE).
        assert_eq!(
            be.read().get(ALARM_TABLE, &[0x08, 7, 0x10, 1]).unwrap(),
            Some(Vec::new())
        );
    }

    #[test]
    fn deactivate_removes_once_and_get_filters_by_kind() {
        let be = backend();
        let store = AlarmStore::load(&be).unwrap();
        store.apply(
            &mut be.batch_tx(),
            &req(AlarmAction::Activate, 2, AlarmType::Nospace),
        );
        store.apply(
            &mut be.batch_tx(),
            &req(AlarmAction::Activate, 1, AlarmType::Nospace),
        );
        let listed = store.apply(
            &mut be.batch_tx(),
            &req(AlarmAction::Get, 99, AlarmType::Nospace),
        );
        assert_eq!(
            listed.iter().map(|m| m.member_id).collect::<Vec<_>>(),
            [1, 2]
        );
        assert!(store.get(AlarmType::Corrupt as i32).is_empty());
        let gone = store.apply(
            &mut be.batch_tx(),
            &req(AlarmAction::Deactivate, 1, AlarmType::Nospace),
        );
        assert_eq!(gone.len(), 1);
        assert!(store
            .apply(
                &mut be.batch_tx(),
                &req(AlarmAction::Deactivate, 1, AlarmType::Nospace)
            )
            .is_empty());
        assert_eq!(store.mode(), ApplierMode::Capped);
        store.apply(
            &mut be.batch_tx(),
            &req(AlarmAction::Deactivate, 2, AlarmType::Nospace),
        );
        assert_eq!(store.mode(), ApplierMode::Normal);
        assert!(AlarmStore::load(&be).unwrap().get(0).is_empty());
    }
}
