//! `-w protobuf`: the response re-encoded as protobuf bytes (watch: each event), for the
//! results that are protobuf messages in etcdctl.

use prost::Message;

use super::Display;
use crate::error::{CommandError, ExitCode, Result};

pub(super) fn render(item: &Display) -> Result<Vec<u8>> {
    let bytes = match item {
        Display::Get(r) => r.encode_to_vec(),
        Display::Put(r) => r.encode_to_vec(),
        Display::Delete(r) => r.encode_to_vec(),
        Display::Txn(r) => r.encode_to_vec(),
        Display::Watch(r) => r.events.iter().flat_map(|e| e.encode_to_vec()).collect(),
        Display::LeaseRevoke { response, .. } => response.encode_to_vec(),
        Display::MemberAdd(r) => r.encode_to_vec(),
        Display::MemberRemove { response, .. } => response.encode_to_vec(),
        Display::MemberUpdate { response, .. } => response.encode_to_vec(),
        Display::MemberPromote { response, .. } => response.encode_to_vec(),
        Display::MemberList(r) => r.encode_to_vec(),
        Display::Alarm(r) => r.encode_to_vec(),
        Display::RoleAdd { response, .. } => response.encode_to_vec(),
        Display::RoleGet { response, .. } => response.encode_to_vec(),
        Display::RoleList(r) => r.encode_to_vec(),
        Display::RoleDelete { response, .. } => response.encode_to_vec(),
        Display::RoleGrantPermission { response, .. } => response.encode_to_vec(),
        Display::RoleRevokePermission { response, .. } => response.encode_to_vec(),
        Display::UserAdd { response, .. } => response.encode_to_vec(),
        Display::UserGet { response, .. } => response.encode_to_vec(),
        Display::UserList(r) => r.encode_to_vec(),
        Display::UserChangePassword(r) => r.encode_to_vec(),
        Display::UserGrantRole { response, .. } => response.encode_to_vec(),
        Display::UserRevokeRole { response, .. } => response.encode_to_vec(),
        Display::UserDelete { response, .. } => response.encode_to_vec(),
        // etcdctl passes its own client-side structs here, which have no protobuf form.
        Display::LeaseGrant(_)
        | Display::KeepAlive(_)
        | Display::TimeToLive { .. }
        | Display::Leases(_)
        | Display::MoveLeader { .. } => {
            return Err(CommandError::unsupported_format("protobuf"));
        }
        Display::EndpointHealth(_) | Display::EndpointStatus(_) | Display::EndpointHashKv(_) => {
            return Err(CommandError::new(
                ExitCode::BadFeature,
                "only support simple or json as output format",
            ));
        }
    };
    Ok(bytes)
}
