//! `-w fields`: one `"Name" : value` line per field (etcdctl's printer_fields.go), for
//! scripts that grep. Results the format does not cover give `None`.

use std::fmt::Write as _;

use api::etcdserverpb::{
    response_op, DeleteRangeResponse, PutResponse, RangeResponse, ResponseHeader,
};
use api::mvccpb::KeyValue;

use super::simple::event_type_name;
use super::Display;
use crate::format::go_quote;

#[derive(Default)]
struct Fields(String);

impl Fields {
    fn line(&mut self, name: &str, value: impl std::fmt::Display) {
        let _ = writeln!(self.0, "\"{name}\" : {value}");
    }

    fn quoted(&mut self, name: &str, value: &[u8]) {
        self.line(name, go_quote(value));
    }

    fn header(&mut self, header: &Option<ResponseHeader>) {
        // etcdctl dereferences the header; a missing one reads as zeros here instead of a crash.
        let header = header.unwrap_or_default();
        self.line("ClusterID", header.cluster_id);
        self.line("MemberID", header.member_id);
        self.line("Revision", header.revision);
        self.line("RaftTerm", header.raft_term);
    }

    fn kv(&mut self, prefix: &str, kv: &KeyValue) {
        self.quoted(&format!("{prefix}Key"), &kv.key);
        self.line(&format!("{prefix}CreateRevision"), kv.create_revision);
        self.line(&format!("{prefix}ModRevision"), kv.mod_revision);
        self.line(&format!("{prefix}Version"), kv.version);
        self.quoted(&format!("{prefix}Value"), &kv.value);
        self.line(&format!("{prefix}Lease"), kv.lease);
    }

    fn get(&mut self, r: &RangeResponse) {
        self.header(&r.header);
        for kv in &r.kvs {
            self.kv("", kv);
        }
        self.line("More", r.more);
        self.line("Count", r.count);
    }

    fn put(&mut self, r: &PutResponse) {
        self.header(&r.header);
        if let Some(prev) = &r.prev_kv {
            self.kv("Prev", prev);
        }
    }

    fn delete(&mut self, r: &DeleteRangeResponse) {
        self.header(&r.header);
        self.line("Deleted", r.deleted);
        for kv in &r.prev_kvs {
            self.kv("Prev", kv);
        }
    }

    fn blank(&mut self) {
        self.0.push('\n');
    }
}

/// Go's `%v` of a `[]string`.
fn go_string_slice(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

pub(super) fn render(item: &Display) -> Option<String> {
    let mut f = Fields::default();
    match item {
        Display::Get(r) => f.get(r),
        Display::Put(r) => f.put(r),
        Display::Delete(r) => f.delete(r),
        Display::Txn(r) => {
            f.header(&r.header);
            f.line("Succeeded", r.succeeded);
            for op in &r.responses {
                match &op.response {
                    Some(response_op::Response::ResponseRange(r)) => f.get(r),
                    Some(response_op::Response::ResponsePut(r)) => f.put(r),
                    Some(response_op::Response::ResponseDeleteRange(r)) => f.delete(r),
                    other => f.line("Unknown", go_quote(format!("{other:?}").as_bytes())),
                }
            }
        }
        Display::Watch(r) => {
            f.header(&r.header);
            for event in &r.events {
                f.line("Type", event_type_name(event.r#type));
                if let Some(prev) = &event.prev_kv {
                    f.kv("Prev", prev);
                }
                f.kv("", &event.kv.clone().unwrap_or_default());
            }
        }
        Display::LeaseGrant(r) => {
            f.header(&r.header);
            f.line("ID", r.id);
            f.line("TTL", r.ttl);
        }
        Display::LeaseRevoke { response, .. } => f.header(&response.header),
        Display::KeepAlive(r) => {
            f.header(&r.header);
            f.line("ID", r.id);
            f.line("TTL", r.ttl);
        }
        Display::TimeToLive { response: r, .. } => {
            f.header(&r.header);
            f.line("ID", r.id);
            f.line("TTL", r.ttl);
            f.line("GrantedTTL", r.granted_ttl);
            for key in &r.keys {
                f.quoted("Key", key);
            }
        }
        Display::Leases(r) => {
            f.header(&r.header);
            for lease in &r.leases {
                f.line("ID", lease.id);
            }
        }
        Display::MemberList(r) => {
            f.header(&r.header);
            for member in &r.members {
                f.line("ID", member.id);
                f.quoted("Name", member.name.as_bytes());
                for url in &member.peer_ur_ls {
                    f.quoted("PeerURL", url.as_bytes());
                }
                for url in &member.client_ur_ls {
                    f.quoted("ClientURL", url.as_bytes());
                }
                f.line("IsLearner", member.is_learner);
                f.blank();
            }
        }
        Display::EndpointHealth(list) => {
            for health in list.iter() {
                f.quoted("Endpoint", health.endpoint.as_bytes());
                f.line("Health", health.healthy);
                f.line("Took", crate::format::go_duration(health.took));
                f.line("Error", &health.error);
                f.blank();
            }
        }
        Display::EndpointStatus(list) => {
            for ep in list.iter() {
                let s = &ep.status;
                f.header(&s.header);
                f.quoted("Version", s.version.as_bytes());
                f.line("DBSize", s.db_size);
                f.line("Leader", s.leader);
                f.line("IsLearner", s.is_learner);
                f.line("RaftIndex", s.raft_index);
                f.line("RaftTerm", s.raft_term);
                f.line("RaftAppliedIndex", s.raft_applied_index);
                f.line("Errors", go_string_slice(&s.errors));
                f.quoted("Endpoint", ep.endpoint.as_bytes());
                f.blank();
            }
        }
        Display::EndpointHashKv(list) => {
            for ep in list.iter() {
                f.header(&ep.hash.header);
                f.quoted("Endpoint", ep.endpoint.as_bytes());
                f.line("Hash", ep.hash.hash);
                f.blank();
            }
        }
        Display::Alarm(r) => {
            f.header(&r.header);
            for alarm in &r.alarms {
                f.line("MemberID", alarm.member_id);
                f.line("AlarmType", alarm.alarm().as_str_name());
                f.blank();
            }
        }
        Display::RoleGet { response, .. } => {
            f.header(&response.header);
            for perm in &response.perm {
                // etcdctl's format string has a stray space here.
                f.line("PermType", format!(" {}", perm.perm_type().as_str_name()));
                f.quoted("Key", &perm.key);
                f.quoted("RangeEnd", &perm.range_end);
            }
        }
        Display::RoleList(r) => {
            f.header(&r.header);
            let mut roles = String::from("\"Roles\" :");
            for role in &r.roles {
                roles.push(' ');
                roles.push_str(&go_quote(role.as_bytes()));
            }
            f.0.push_str(&roles);
            f.blank();
        }
        Display::RoleAdd { response, .. } => f.header(&response.header),
        Display::RoleDelete { response, .. } => f.header(&response.header),
        Display::RoleGrantPermission { response, .. } => f.header(&response.header),
        Display::RoleRevokePermission { response, .. } => f.header(&response.header),
        Display::UserAdd { response, .. } => f.header(&response.header),
        Display::UserChangePassword(response) => f.header(&response.header),
        Display::UserGrantRole { response, .. } => f.header(&response.header),
        Display::UserRevokeRole { response, .. } => f.header(&response.header),
        Display::UserDelete { response, .. } => f.header(&response.header),
        Display::MemberAdd(_)
        | Display::MemberRemove { .. }
        | Display::MemberUpdate { .. }
        | Display::MemberPromote { .. }
        | Display::MoveLeader { .. }
        | Display::UserGet { .. }
        | Display::UserList(_)
        | Display::Downgrade { .. } => return None,
    }
    Some(f.0)
}
