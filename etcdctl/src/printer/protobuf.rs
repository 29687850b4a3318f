//! `-w protobuf`: the response re-encoded as protobuf bytes (watch: each event), for the
//! results that have a protobuf form in etcdctl.

use prost::Message;

use super::Display;
use crate::error::{CommandError, Result};

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
        Display::Downgrade { response, .. } => response.encode_to_vec(),
        Display::MoveLeader { response, .. } => response.encode_to_vec(),
        // etcdctl's lease results are client-side structs that embed the header, whose
        // Marshal method is what gets called: only the header is printed.
        Display::LeaseGrant(r) => r.header.unwrap_or_default().encode_to_vec(),
        Display::KeepAlive(r) => r.header.unwrap_or_default().encode_to_vec(),
        Display::TimeToLive { response, .. } => response.header.unwrap_or_default().encode_to_vec(),
        Display::Leases(r) => r.header.unwrap_or_default().encode_to_vec(),
        Display::EndpointHealth(_) | Display::EndpointStatus(_) | Display::EndpointHashKv(_) => {
            return Err(CommandError::unsupported_format("protobuf"));
        }
    };
    Ok(bytes)
}
