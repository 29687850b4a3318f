//! The default `simple` format (etcdctl's printer_simple.go): raw keys and values, one per line.

use std::io::Write as _;

use api::authpb::permission::Type as PermissionType;
use api::etcdserverpb::{
    response_op, AlarmMember, DeleteRangeResponse, PutResponse, RangeResponse,
};
use api::mvccpb::{event::EventType, KeyValue};

use super::{table, Display};
use crate::format::hex_bytes;

struct Simple {
    out: Vec<u8>,
    hex: bool,
    value_only: bool,
}

pub(super) fn render(item: &Display, hex: bool, value_only: bool) -> Vec<u8> {
    let mut simple = Simple {
        out: Vec::new(),
        hex,
        value_only,
    };
    simple.display(item);
    simple.out
}

/// `%x` of a member id padded to 16 with spaces, as `%16x` does.
fn padded_id(id: u64) -> String {
    format!("{id:16x}")
}

impl Simple {
    fn line(&mut self, text: impl AsRef<[u8]>) {
        self.out.extend_from_slice(text.as_ref());
        self.out.push(b'\n');
    }

    fn kv(&mut self, kv: &KeyValue) {
        let (key, value) = if self.hex {
            (
                hex_bytes(&kv.key).into_bytes(),
                hex_bytes(&kv.value).into_bytes(),
            )
        } else {
            (kv.key.clone(), kv.value.clone())
        };
        if !self.value_only {
            self.line(key);
        }
        self.line(value);
    }

    fn get(&mut self, response: &RangeResponse) {
        for kv in &response.kvs {
            self.kv(kv);
        }
    }

    fn put(&mut self, response: &PutResponse) {
        self.line("OK");
        if let Some(prev) = &response.prev_kv {
            self.kv(prev);
        }
    }

    fn delete(&mut self, response: &DeleteRangeResponse) {
        self.line(response.deleted.to_string());
        for kv in &response.prev_kvs {
            self.kv(kv);
        }
    }

    fn rows(&mut self, rows: Vec<Vec<String>>) {
        for row in rows {
            self.line(row.join(", "));
        }
    }

    fn display(&mut self, item: &Display) {
        match item {
            Display::Get(r) => self.get(r),
            Display::Put(r) => self.put(r),
            Display::Delete(r) => self.delete(r),
            Display::Txn(r) => {
                self.line(if r.succeeded { "SUCCESS" } else { "FAILURE" });
                for op in &r.responses {
                    self.line("");
                    match &op.response {
                        Some(response_op::Response::ResponseRange(r)) => self.get(r),
                        Some(response_op::Response::ResponsePut(r)) => self.put(r),
                        Some(response_op::Response::ResponseDeleteRange(r)) => self.delete(r),
                        other => self.line(format!("unexpected response {other:?}")),
                    }
                }
            }
            Display::Watch(r) => {
                for event in &r.events {
                    self.line(event_type_name(event.r#type));
                    if let Some(prev) = &event.prev_kv {
                        self.kv(prev);
                    }
                    self.kv(&event.kv.clone().unwrap_or_default());
                }
            }
            Display::LeaseGrant(r) => {
                self.line(format!("lease {:016x} granted with TTL({}s)", r.id, r.ttl))
            }
            Display::LeaseRevoke { id, .. } => self.line(format!("lease {id:016x} revoked")),
            Display::KeepAlive(r) => self.line(format!(
                "lease {:016x} keepalived with TTL({})",
                r.id, r.ttl
            )),
            Display::TimeToLive { response: r, keys } => {
                if r.granted_ttl == 0 && r.ttl == -1 {
                    self.line(format!("lease {:016x} already expired", r.id));
                    return;
                }
                let mut text = format!(
                    "lease {:016x} granted with TTL({}s), remaining({}s)",
                    r.id, r.granted_ttl, r.ttl
                )
                .into_bytes();
                if *keys {
                    text.extend_from_slice(b", attached keys([");
                    text.extend_from_slice(&r.keys.join(&b' '));
                    text.extend_from_slice(b"])");
                }
                self.line(text);
            }
            Display::Leases(r) => {
                self.line(format!("found {} leases", r.leases.len()));
                for lease in &r.leases {
                    self.line(format!("{:016x}", lease.id));
                }
            }
            Display::MemberAdd(r) => {
                let id = r.member.as_ref().map_or(0, |m| m.id);
                let cluster = r.header.as_ref().map_or(0, |h| h.cluster_id);
                self.line(format!(
                    "Member {} added to cluster {}",
                    padded_id(id),
                    padded_id(cluster)
                ));
            }
            Display::MemberRemove { id, response } => self.line(format!(
                "Member {} removed from cluster {}",
                padded_id(*id),
                padded_id(response.header.as_ref().map_or(0, |h| h.cluster_id))
            )),
            Display::MemberUpdate { id, response } => self.line(format!(
                "Member {} updated in cluster {}",
                padded_id(*id),
                padded_id(response.header.as_ref().map_or(0, |h| h.cluster_id))
            )),
            Display::MemberPromote { id, response } => self.line(format!(
                "Member {} promoted in cluster {}",
                padded_id(*id),
                padded_id(response.header.as_ref().map_or(0, |h| h.cluster_id))
            )),
            Display::MemberList(r) => self.rows(table::member_rows(r)),
            Display::EndpointHealth(list) => {
                for health in list.iter() {
                    if health.error.is_empty() {
                        self.line(format!(
                            "{} is healthy: successfully committed proposal: took = {}",
                            health.endpoint,
                            crate::format::go_duration(health.took)
                        ));
                    } else {
                        self.line(format!(
                            "{} is unhealthy: failed to commit proposal: {}",
                            health.endpoint, health.error
                        ));
                    }
                }
            }
            Display::EndpointStatus(list) => self.rows(table::status_rows(list)),
            Display::EndpointHashKv(list) => self.rows(table::hash_rows(list)),
            Display::Alarm(r) => {
                for alarm in &r.alarms {
                    self.line(alarm_text(alarm));
                }
            }
            Display::MoveLeader { leader, target, .. } => self.line(format!(
                "Leadership transferred from {leader:x} to {target:x}"
            )),
            Display::RoleAdd { role, .. } => self.line(format!("Role {role} created")),
            Display::RoleGet { role, response } => {
                self.line(format!("Role {role}"));
                self.line("KV Read:");
                let readable = [PermissionType::Read, PermissionType::Readwrite];
                let writable = [PermissionType::Write, PermissionType::Readwrite];
                for perm in response
                    .perm
                    .iter()
                    .filter(|p| readable.contains(&p.perm_type()))
                {
                    self.permission(&perm.key, &perm.range_end);
                }
                self.line("KV Write:");
                for perm in response
                    .perm
                    .iter()
                    .filter(|p| writable.contains(&p.perm_type()))
                {
                    self.permission(&perm.key, &perm.range_end);
                }
            }
            Display::RoleList(r) => {
                for role in &r.roles {
                    self.line(role);
                }
            }
            Display::RoleDelete { role, .. } => self.line(format!("Role {role} deleted")),
            Display::RoleGrantPermission { role, .. } => self.line(format!("Role {role} updated")),
            Display::RoleRevokePermission {
                role,
                key,
                range_end,
                ..
            } => {
                let mut text = Vec::new();
                if range_end.is_empty() {
                    let _ = write!(text, "Permission of key ");
                    text.extend_from_slice(key);
                } else {
                    let _ = write!(text, "Permission of range [");
                    text.extend_from_slice(key);
                    if *range_end != b"\0" {
                        text.extend_from_slice(b", ");
                        text.extend_from_slice(range_end);
                        text.push(b')');
                    } else {
                        text.extend_from_slice(b", <open ended>");
                    }
                }
                let _ = write!(text, " is revoked from role {role}");
                self.line(text);
            }
            Display::UserAdd { user, .. } => self.line(format!("User {user} created")),
            Display::UserGet { user, response } => {
                self.line(format!("User: {user}"));
                let mut roles = String::from("Roles:");
                for role in &response.roles {
                    roles.push(' ');
                    roles.push_str(role);
                }
                self.line(roles);
            }
            Display::UserList(r) => {
                for user in &r.users {
                    self.line(user);
                }
            }
            Display::UserChangePassword(_) => self.line("Password updated"),
            Display::UserGrantRole { user, role, .. } => {
                self.line(format!("Role {role} is granted to user {user}"))
            }
            Display::UserRevokeRole { user, role, .. } => {
                self.line(format!("Role {role} is revoked from user {user}"))
            }
            Display::UserDelete { user, .. } => self.line(format!("User {user} deleted")),
            Display::Downgrade { action, response } => self.line(format!(
                "Downgrade {action} success, cluster version {}",
                response.version
            )),
        }
    }

    /// One permission line of `role get`: a key, a range, an open range or a prefix.
    fn permission(&mut self, key: &[u8], range_end: &[u8]) {
        let mut text = b"\t".to_vec();
        if range_end.is_empty() {
            text.extend_from_slice(key);
        } else {
            text.push(b'[');
            text.extend_from_slice(key);
            if range_end != b"\0" {
                text.extend_from_slice(b", ");
                text.extend_from_slice(range_end);
                text.push(b')');
            } else {
                text.extend_from_slice(b", <open ended>");
            }
            if client::prefix_range_end(key) == range_end {
                text.extend_from_slice(b" (prefix ");
                text.extend_from_slice(key);
                text.push(b')');
            }
        }
        self.line(text);
    }
}

pub(crate) fn event_type_name(event_type: i32) -> &'static str {
    match EventType::try_from(event_type) {
        Ok(EventType::Delete) => "DELETE",
        _ => "PUT",
    }
}

/// gogoproto's compact text form of an alarm, which `%+v` prints.
fn alarm_text(alarm: &AlarmMember) -> String {
    let mut text = String::new();
    if alarm.member_id != 0 {
        text.push_str(&format!("memberID:{} ", alarm.member_id));
    }
    if alarm.alarm != 0 {
        text.push_str(&format!("alarm:{} ", alarm.alarm().as_str_name()));
    }
    text
}
