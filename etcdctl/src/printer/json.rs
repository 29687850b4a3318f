//! `-w json`: what Go's `encoding/json` prints for the structs etcdctl marshals.
//!
//! Protobuf messages are gogoproto structs: keys are the proto field names, zero values are
//! omitted (`omitempty`), 64-bit integers are plain numbers, bytes are base64 and enums are
//! numbers. etcdctl's own wrapper structs (lease responses, watch responses, endpoint results)
//! have Go field names and no `omitempty`; they are spelled out where they are built.

use std::fmt::Write as _;

use api::authpb::Permission;
use api::etcdserverpb::{
    response_op, AlarmMember, AlarmResponse, AuthRoleAddResponse, AuthRoleDeleteResponse,
    AuthRoleGetResponse, AuthRoleGrantPermissionResponse, AuthRoleListResponse,
    AuthRoleRevokePermissionResponse, AuthUserAddResponse, AuthUserChangePasswordResponse,
    AuthUserDeleteResponse, AuthUserGetResponse, AuthUserGrantRoleResponse, AuthUserListResponse,
    AuthUserRevokeRoleResponse, DeleteRangeResponse, HashKvResponse, LeaseRevokeResponse, Member,
    MemberAddResponse, MemberListResponse, MemberPromoteResponse, MemberRemoveResponse,
    MemberUpdateResponse, MoveLeaderResponse, PutResponse, RangeResponse, ResponseHeader,
    ResponseOp, StatusResponse, TxnResponse,
};
use api::mvccpb::{Event, KeyValue};
use base64::Engine as _;

use super::{Display, EndpointHashKv, EndpointHealth, EndpointStatus};
use crate::error::Result;

/// A JSON value with keys in the order Go prints struct fields.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Int(i128),
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(&'static str, Json)>),
}

impl Json {
    fn bytes(bytes: &[u8]) -> Json {
        Json::Str(base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    /// Whether Go's `omitempty` drops this value.
    fn is_empty(&self) -> bool {
        match self {
            Json::Null => true,
            Json::Bool(b) => !b,
            Json::Int(i) => *i == 0,
            Json::Str(s) => s.is_empty(),
            Json::Array(items) => items.is_empty(),
            Json::Object(_) => false,
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Json::Str(s) => write_go_string(out, s),
            Json::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Json::Object(fields) => {
                out.push('{');
                for (i, (key, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_go_string(out, key);
                    out.push(':');
                    value.write(out);
                }
                out.push('}');
            }
        }
    }
}

/// Go's encoding/json string escaping, HTML-safe as `json.Marshal` is.
fn write_go_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Builds a Go struct's JSON object field by field.
#[derive(Default)]
pub struct Object(Vec<(&'static str, Json)>);

impl Object {
    pub fn new() -> Self {
        Self::default()
    }

    /// A field without `omitempty`.
    pub fn field(mut self, key: &'static str, value: impl Into<Json>) -> Self {
        self.0.push((key, value.into()));
        self
    }

    /// A field tagged `omitempty`.
    pub fn omit_empty(mut self, key: &'static str, value: impl Into<Json>) -> Self {
        let value = value.into();
        if !value.is_empty() {
            self.0.push((key, value));
        }
        self
    }

    /// The fields of an embedded struct pointer (Go promotes them; nil adds nothing).
    pub fn embed(mut self, embedded: Option<Json>) -> Self {
        if let Some(Json::Object(fields)) = embedded {
            self.0.extend(fields);
        }
        self
    }

    pub fn build(self) -> Json {
        Json::Object(self.0)
    }
}

impl From<bool> for Json {
    fn from(b: bool) -> Json {
        Json::Bool(b)
    }
}
impl From<i64> for Json {
    fn from(i: i64) -> Json {
        Json::Int(i.into())
    }
}
impl From<u64> for Json {
    fn from(i: u64) -> Json {
        Json::Int(i.into())
    }
}
impl From<i32> for Json {
    fn from(i: i32) -> Json {
        Json::Int(i.into())
    }
}
impl From<u32> for Json {
    fn from(i: u32) -> Json {
        Json::Int(i.into())
    }
}
impl From<&str> for Json {
    fn from(s: &str) -> Json {
        Json::Str(s.to_string())
    }
}
impl From<&String> for Json {
    fn from(s: &String) -> Json {
        Json::Str(s.clone())
    }
}
impl<T: ToJson> From<&Option<T>> for Json {
    fn from(value: &Option<T>) -> Json {
        value.as_ref().map_or(Json::Null, ToJson::to_json)
    }
}
impl<T: ToJson> From<&Vec<T>> for Json {
    fn from(items: &Vec<T>) -> Json {
        Json::Array(items.iter().map(ToJson::to_json).collect())
    }
}

/// A `[]string` (nil when empty, as protobuf decoding leaves it).
fn strings(items: &[String]) -> Json {
    if items.is_empty() {
        Json::Null
    } else {
        Json::Array(items.iter().map(|s| Json::Str(s.clone())).collect())
    }
}

/// A `[]byte` field.
fn bytes(b: &[u8]) -> Json {
    Json::bytes(b)
}

/// A `[][]byte` (nil when empty).
pub fn byte_strings(items: &[Vec<u8>]) -> Json {
    if items.is_empty() {
        Json::Null
    } else {
        Json::Array(items.iter().map(|b| Json::bytes(b)).collect())
    }
}

/// The JSON of a generated message, as gogoproto's struct marshals.
pub trait ToJson {
    fn to_json(&self) -> Json;
}

impl ToJson for String {
    fn to_json(&self) -> Json {
        Json::Str(self.clone())
    }
}

impl ToJson for ResponseHeader {
    fn to_json(&self) -> Json {
        Object::new()
            .omit_empty("cluster_id", self.cluster_id)
            .omit_empty("member_id", self.member_id)
            .omit_empty("revision", self.revision)
            .omit_empty("raft_term", self.raft_term)
            .build()
    }
}

impl ToJson for KeyValue {
    fn to_json(&self) -> Json {
        Object::new()
            .omit_empty("key", bytes(&self.key))
            .omit_empty("create_revision", self.create_revision)
            .omit_empty("mod_revision", self.mod_revision)
            .omit_empty("version", self.version)
            .omit_empty("value", bytes(&self.value))
            .omit_empty("lease", self.lease)
            .build()
    }
}

impl ToJson for Event {
    fn to_json(&self) -> Json {
        Object::new()
            .omit_empty("type", self.r#type)
            .omit_empty("kv", &self.kv)
            .omit_empty("prev_kv", &self.prev_kv)
            .build()
    }
}

impl ToJson for RangeResponse {
    fn to_json(&self) -> Json {
        Object::new()
            .omit_empty("header", &self.header)
            .omit_empty("kvs", &self.kvs)
            .omit_empty("more", self.more)
            .omit_empty("count", self.count)
            .build()
    }
}

impl ToJson for PutResponse {
    fn to_json(&self) -> Json {
        Object::new()
            .omit_empty("header", &self.header)
            .omit_empty("prev_kv", &self.prev_kv)
            .build()
    }
}

impl ToJson for DeleteRangeResponse {
    fn to_json(&self) -> Json {
        Object::new()
            .omit_empty("header", &self.header)
            .omit_empty("deleted", self.deleted)
            .omit_empty("prev_kvs", &self.prev_kvs)
            .build()
    }
}

impl ToJson for ResponseOp {
    fn to_json(&self) -> Json {
        // The oneof is an interface field without a json tag, holding a wrapper struct
        // whose single field has none either: both print under their Go names.
        let inner = match &self.response {
            Some(response_op::Response::ResponseRange(r)) => {
                Object::new().field("ResponseRange", r.to_json()).build()
            }
            Some(response_op::Response::ResponsePut(r)) => {
                Object::new().field("ResponsePut", r.to_json()).build()
            }
            Some(response_op::Response::ResponseDeleteRange(r)) => Object::new()
                .field("ResponseDeleteRange", r.to_json())
                .build(),
            Some(response_op::Response::ResponseTxn(r)) => {
                Object::new().field("ResponseTxn", r.to_json()).build()
            }
            None => Json::Null,
        };
        Object::new().field("Response", inner).build()
    }
}

impl ToJson for TxnResponse {
    fn to_json(&self) -> Json {
        Object::new()
            .omit_empty("header", &self.header)
            .omit_empty("succeeded", self.succeeded)
            .omit_empty("responses", &self.responses)
            .build()
    }
}

impl ToJson for Member {
    fn to_json(&self) -> Json {
        Object::new()
            .omit_empty("ID", self.id)
            .omit_empty("name", &self.name)
            .omit_empty("peerURLs", strings(&self.peer_ur_ls))
            .omit_empty("clientURLs", strings(&self.client_ur_ls))
            .omit_empty("isLearner", self.is_learner)
            .build()
    }
}

impl ToJson for MemberAddResponse {
    fn to_json(&self) -> Json {
        Object::new()
            .omit_empty("header", &self.header)
            .omit_empty("member", &self.member)
            .omit_empty("members", &self.members)
            .build()
    }
}

/// Messages made of a header and a list of members.
macro_rules! header_and_members {
    ($($message:ty),*) => {$(
        impl ToJson for $message {
            fn to_json(&self) -> Json {
                Object::new()
                    .omit_empty("header", &self.header)
                    .omit_empty("members", &self.members)
                    .build()
            }
        }
    )*};
}
header_and_members!(
    MemberListResponse,
    MemberRemoveResponse,
    MemberUpdateResponse,
    MemberPromoteResponse
);

/// Messages that hold only a header.
macro_rules! header_only {
    ($($message:ty),*) => {$(
        impl ToJson for $message {
            fn to_json(&self) -> Json {
                Object::new().omit_empty("header", &self.header).build()
            }
        }
    )*};
}
header_only!(
    LeaseRevokeResponse,
    MoveLeaderResponse,
    AuthRoleAddResponse,
    AuthRoleDeleteResponse,
    AuthRoleGrantPermissionResponse,
    AuthRoleRevokePermissionResponse,
    AuthUserAddResponse,
    AuthUserChangePasswordResponse,
    AuthUserDeleteResponse,
    AuthUserGrantRoleResponse,
    AuthUserRevokeRoleResponse
);

/// Messages made of a header and one list of names.
macro_rules! header_and_names {
    ($($message:ty => $field:ident),*) => {$(
        impl ToJson for $message {
            fn to_json(&self) -> Json {
                Object::new()
                    .omit_empty("header", &self.header)
                    .omit_empty(stringify!($field), strings(&self.$field))
                    .build()
            }
        }
    )*};
}
header_and_names!(AuthUserGetResponse => roles, AuthUserListResponse => users, AuthRoleListResponse => roles);

impl ToJson for Permission {
    fn to_json(&self) -> Json {
        Object::new()
            .omit_empty("permType", self.perm_type)
            .omit_empty("key", bytes(&self.key))
            .omit_empty("range_end", bytes(&self.range_end))
            .build()
    }
}

impl ToJson for AuthRoleGetResponse {
    fn to_json(&self) -> Json {
        Object::new()
            .omit_empty("header", &self.header)
            .omit_empty("perm", &self.perm)
            .build()
    }
}

impl ToJson for AlarmMember {
    fn to_json(&self) -> Json {
        Object::new()
            .omit_empty("memberID", self.member_id)
            .omit_empty("alarm", self.alarm)
            .build()
    }
}

impl ToJson for AlarmResponse {
    fn to_json(&self) -> Json {
        Object::new()
            .omit_empty("header", &self.header)
            .omit_empty("alarms", &self.alarms)
            .build()
    }
}

impl ToJson for StatusResponse {
    fn to_json(&self) -> Json {
        Object::new()
            .omit_empty("header", &self.header)
            .omit_empty("version", &self.version)
            .omit_empty("dbSize", self.db_size)
            .omit_empty("leader", self.leader)
            .omit_empty("raftIndex", self.raft_index)
            .omit_empty("raftTerm", self.raft_term)
            .omit_empty("raftAppliedIndex", self.raft_applied_index)
            .omit_empty("errors", strings(&self.errors))
            .omit_empty("dbSizeInUse", self.db_size_in_use)
            .omit_empty("isLearner", self.is_learner)
            .build()
    }
}

// downgrade
impl ToJson for api::etcdserverpb::DowngradeResponse {
    fn to_json(&self) -> Json {
        Object::new()
            .omit_empty("header", &self.header)
            .omit_empty("version", &self.version)
            .build()
    }
}

impl ToJson for HashKvResponse {
    fn to_json(&self) -> Json {
        Object::new()
            .omit_empty("header", &self.header)
            .omit_empty("hash", self.hash)
            .omit_empty("compact_revision", self.compact_revision)
            .build()
    }
}

impl ToJson for EndpointHealth {
    fn to_json(&self) -> Json {
        Object::new()
            .field("endpoint", &self.endpoint)
            .field("health", self.healthy)
            .field("took", crate::format::go_duration(self.took).as_str())
            .omit_empty("error", &self.error)
            .build()
    }
}

impl ToJson for EndpointStatus {
    fn to_json(&self) -> Json {
        Object::new()
            .field("Endpoint", &self.endpoint)
            .field("Status", self.status.to_json())
            .build()
    }
}

impl ToJson for EndpointHashKv {
    fn to_json(&self) -> Json {
        Object::new()
            .field("Endpoint", &self.endpoint)
            .field("HashKV", self.hash.to_json())
            .build()
    }
}

fn header_fields(header: &Option<ResponseHeader>) -> Option<Json> {
    header.as_ref().map(ToJson::to_json)
}

/// The JSON of one result, or the error etcdctl gives for results it cannot marshal.
pub(super) fn render(item: &Display) -> Result<String> {
    let json = match item {
        Display::Get(r) => r.to_json(),
        Display::Put(r) => r.to_json(),
        Display::Delete(r) => r.to_json(),
        Display::Txn(r) => r.to_json(),
        // clientv3.WatchResponse: a struct with Go field names and no omitempty.
        Display::Watch(r) => Object::new()
            .field("Header", r.header.unwrap_or_default().to_json())
            .field(
                "Events",
                if r.events.is_empty() {
                    Json::Null
                } else {
                    (&r.events).into()
                },
            )
            .field("CompactRevision", r.compact_revision)
            .field("Canceled", r.canceled)
            .field("Created", r.created)
            .build(),
        // clientv3.LeaseGrantResponse{*ResponseHeader; ID; TTL; Error}.
        Display::LeaseGrant(r) => Object::new()
            .embed(header_fields(&r.header))
            .field("ID", r.id)
            .field("TTL", r.ttl)
            .field("Error", &r.error)
            .build(),
        Display::LeaseRevoke { response, .. } => response.to_json(),
        // clientv3.LeaseKeepAliveResponse{*ResponseHeader; ID; TTL}.
        Display::KeepAlive(r) => Object::new()
            .embed(header_fields(&r.header))
            .field("ID", r.id)
            .field("TTL", r.ttl)
            .build(),
        // clientv3.LeaseTimeToLiveResponse, with json tags id/ttl/granted-ttl/keys.
        Display::TimeToLive { response: r, .. } => Object::new()
            .embed(header_fields(&r.header))
            .field("id", r.id)
            .field("ttl", r.ttl)
            .field("granted-ttl", r.granted_ttl)
            .field("keys", byte_strings(&r.keys))
            .build(),
        // clientv3.LeaseLeasesResponse{*ResponseHeader; Leases []LeaseStatus `json:"leases"`}.
        Display::Leases(r) => Object::new()
            .embed(header_fields(&r.header))
            // Always a slice, never nil: clientv3 makes it with the response's length.
            .field(
                "leases",
                Json::Array(
                    r.leases
                        .iter()
                        .map(|l| Object::new().field("id", l.id).build())
                        .collect(),
                ),
            )
            .build(),
        Display::MemberAdd(r) => r.to_json(),
        Display::MemberRemove { response, .. } => response.to_json(),
        Display::MemberUpdate { response, .. } => response.to_json(),
        Display::MemberPromote { response, .. } => response.to_json(),
        Display::MemberList(r) => r.to_json(),
        Display::EndpointHealth(list) => Json::Array(list.iter().map(ToJson::to_json).collect()),
        Display::EndpointStatus(list) => Json::Array(list.iter().map(ToJson::to_json).collect()),
        Display::EndpointHashKv(list) => Json::Array(list.iter().map(ToJson::to_json).collect()),
        Display::Alarm(r) => r.to_json(),
        Display::MoveLeader { response, .. } => response.to_json(),
        Display::RoleAdd { response, .. } => response.to_json(),
        Display::RoleGet { response, .. } => response.to_json(),
        Display::RoleList(r) => r.to_json(),
        Display::RoleDelete { response, .. } => response.to_json(),
        Display::RoleGrantPermission { response, .. } => response.to_json(),
        Display::RoleRevokePermission { response, .. } => response.to_json(),
        Display::UserAdd { response, .. } => response.to_json(),
        Display::UserGet { response, .. } => response.to_json(),
        Display::UserList(r) => r.to_json(),
        Display::UserChangePassword(r) => r.to_json(),
        Display::UserGrantRole { response, .. } => response.to_json(),
        Display::UserRevokeRole { response, .. } => response.to_json(),
        Display::UserDelete { response, .. } => response.to_json(),
        Display::Downgrade { response, .. } => response.to_json(),
    };
    Ok(json.render())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_response_matches_etcdctl() {
        let response = RangeResponse {
            header: Some(ResponseHeader {
                cluster_id: 14841639068965178418,
                member_id: 10276657743932975437,
                revision: 2,
                raft_term: 2,
            }),
            kvs: vec![KeyValue {
                key: b"foo".to_vec(),
                create_revision: 2,
                mod_revision: 2,
                version: 1,
                value: b"bar".to_vec(),
                lease: 0,
            }],
            more: false,
            count: 1,
        };
        assert_eq!(
            response.to_json().render(),
            r#"{"header":{"cluster_id":14841639068965178418,"member_id":10276657743932975437,"revision":2,"raft_term":2},"kvs":[{"key":"Zm9v","create_revision":2,"mod_revision":2,"version":1,"value":"YmFy"}],"count":1}"#
        );
    }

    #[test]
    fn strings_escape_html_as_go_does() {
        assert_eq!(
            Json::from("<a&b>\"").render(),
            r#""\u003ca\u0026b\u003e\"""#
        );
    }
}
