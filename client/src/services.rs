//! The unary RPCs of the Lease, Cluster, Maintenance and Auth services, and the server-side
//! Lock and Election services, each with clientv3's retry policy.

use api::etcdserverpb::auth_client::AuthClient;
use api::etcdserverpb::cluster_client::ClusterClient;
use api::etcdserverpb::lease_client::LeaseClient;
use api::etcdserverpb::maintenance_client::MaintenanceClient;
use api::etcdserverpb::*;
use api::v3electionpb::election_client::ElectionClient;
use api::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderRequest, LeaderResponse, ProclaimRequest,
    ProclaimResponse, ResignRequest, ResignResponse,
};
use api::v3lockpb::lock_client::LockClient;
use api::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};

use crate::client::{Client, Retry};

impl Client {
    unary_rpc!(lease_grant: LeaseClient::lease_grant(LeaseGrantRequest) -> LeaseGrantResponse, Retry::Safe);
    unary_rpc!(lease_revoke: LeaseClient::lease_revoke(LeaseRevokeRequest) -> LeaseRevokeResponse, Retry::Safe);
    unary_rpc!(lease_time_to_live: LeaseClient::lease_time_to_live(LeaseTimeToLiveRequest) -> LeaseTimeToLiveResponse, Retry::Safe);
    unary_rpc!(lease_leases: LeaseClient::lease_leases(LeaseLeasesRequest) -> LeaseLeasesResponse, Retry::Safe);

    unary_rpc!(member_add: ClusterClient::member_add(MemberAddRequest) -> MemberAddResponse, Retry::Unsafe);
    unary_rpc!(member_remove: ClusterClient::member_remove(MemberRemoveRequest) -> MemberRemoveResponse, Retry::Unsafe);
    unary_rpc!(member_update: ClusterClient::member_update(MemberUpdateRequest) -> MemberUpdateResponse, Retry::Unsafe);
    unary_rpc!(member_list: ClusterClient::member_list(MemberListRequest) -> MemberListResponse, Retry::Safe);
    unary_rpc!(member_promote: ClusterClient::member_promote(MemberPromoteRequest) -> MemberPromoteResponse, Retry::Unsafe);

    unary_rpc!(alarm: MaintenanceClient::alarm(AlarmRequest) -> AlarmResponse, Retry::Safe);
    unary_rpc!(status: MaintenanceClient::status(StatusRequest) -> StatusResponse, Retry::Safe);
    unary_rpc!(defragment: MaintenanceClient::defragment(DefragmentRequest) -> DefragmentResponse, Retry::Unsafe);
    unary_rpc!(hash: MaintenanceClient::hash(HashRequest) -> HashResponse, Retry::Safe);
    unary_rpc!(hash_kv: MaintenanceClient::hash_kv(HashKvRequest) -> HashKvResponse, Retry::Safe);
    unary_rpc!(move_leader: MaintenanceClient::move_leader(MoveLeaderRequest) -> MoveLeaderResponse, Retry::Safe);
    unary_rpc!(downgrade: MaintenanceClient::downgrade(DowngradeRequest) -> DowngradeResponse, Retry::Unsafe);

    unary_rpc!(auth_enable: AuthClient::auth_enable(AuthEnableRequest) -> AuthEnableResponse, Retry::Unsafe);
    unary_rpc!(auth_disable: AuthClient::auth_disable(AuthDisableRequest) -> AuthDisableResponse, Retry::Unsafe);
    unary_rpc!(auth_status: AuthClient::auth_status(AuthStatusRequest) -> AuthStatusResponse, Retry::Safe);
    unary_rpc!(user_add: AuthClient::user_add(AuthUserAddRequest) -> AuthUserAddResponse, Retry::Unsafe);
    unary_rpc!(user_get: AuthClient::user_get(AuthUserGetRequest) -> AuthUserGetResponse, Retry::Safe);
    unary_rpc!(user_list: AuthClient::user_list(AuthUserListRequest) -> AuthUserListResponse, Retry::Safe);
    unary_rpc!(user_delete: AuthClient::user_delete(AuthUserDeleteRequest) -> AuthUserDeleteResponse, Retry::Unsafe);
    unary_rpc!(user_change_password: AuthClient::user_change_password(AuthUserChangePasswordRequest) -> AuthUserChangePasswordResponse, Retry::Unsafe);
    unary_rpc!(user_grant_role: AuthClient::user_grant_role(AuthUserGrantRoleRequest) -> AuthUserGrantRoleResponse, Retry::Unsafe);
    unary_rpc!(user_revoke_role: AuthClient::user_revoke_role(AuthUserRevokeRoleRequest) -> AuthUserRevokeRoleResponse, Retry::Unsafe);
    unary_rpc!(role_add: AuthClient::role_add(AuthRoleAddRequest) -> AuthRoleAddResponse, Retry::Unsafe);
    unary_rpc!(role_get: AuthClient::role_get(AuthRoleGetRequest) -> AuthRoleGetResponse, Retry::Safe);
    unary_rpc!(role_list: AuthClient::role_list(AuthRoleListRequest) -> AuthRoleListResponse, Retry::Safe);
    unary_rpc!(role_delete: AuthClient::role_delete(AuthRoleDeleteRequest) -> AuthRoleDeleteResponse, Retry::Unsafe);
    unary_rpc!(role_grant_permission: AuthClient::role_grant_permission(AuthRoleGrantPermissionRequest) -> AuthRoleGrantPermissionResponse, Retry::Unsafe);
    unary_rpc!(role_revoke_permission: AuthClient::role_revoke_permission(AuthRoleRevokePermissionRequest) -> AuthRoleRevokePermissionResponse, Retry::Unsafe);

    unary_rpc!(
        /// Blocks until the lock is held (the server's v3lock service; etcdctl uses the client-side
        /// recipe in [`crate::concurrency`] instead).
        lock: LockClient::lock(LockRequest) -> LockResponse, Retry::Unsafe);
    unary_rpc!(unlock: LockClient::unlock(UnlockRequest) -> UnlockResponse, Retry::Unsafe);

    unary_rpc!(campaign: ElectionClient::campaign(CampaignRequest) -> CampaignResponse, Retry::Unsafe);
    unary_rpc!(proclaim: ElectionClient::proclaim(ProclaimRequest) -> ProclaimResponse, Retry::Unsafe);
    unary_rpc!(leader: ElectionClient::leader(LeaderRequest) -> LeaderResponse, Retry::Safe);
    unary_rpc!(resign: ElectionClient::resign(ResignRequest) -> ResignResponse, Retry::Unsafe);
}
