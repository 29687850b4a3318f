//! The Cluster service (etcd's `v3rpc/member.go`): member list, add, remove, update and
//! promote; the checks and the conf changes are the member's (`server::reconfig`).

use api::etcdserverpb::cluster_server::Cluster;
use api::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse, ResponseHeader,
};
use tonic::{Request, Response, Status};

use crate::core::ServerCore;
use crate::server::EtcdServer;
use crate::v3rpc::permission::{identity, require_admin, require_user};

pub struct ClusterService {
    pub server: EtcdServer,
}

impl ClusterService {
    fn header(&self) -> ResponseHeader {
        ResponseHeader {
            revision: 0,
            ..self.server.header()
        }
    }

    /// Membership changes are for admins (etcd's `checkMembershipOperationPermission`).
    async fn require_admin<T>(&self, req: &Request<T>) -> Result<(), Status> {
        let who = identity(&self.server, req).await?;
        Ok(require_admin(self.server.auth_store(), &who)?)
    }

    fn members(&self) -> Vec<Member> {
        self.server
            .membership()
            .list()
            .iter()
            .map(|m| m.to_api())
            .collect()
    }
}

fn to_api(members: Vec<crate::server::membership::Member>) -> Vec<Member> {
    members.iter().map(|m| m.to_api()).collect()
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        req: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        self.require_admin(&req).await?;
        let req = req.into_inner();
        let (added, members) = self
            .server
            .add_member(req.peer_ur_ls, req.is_learner)
            .await?;
        Ok(Response::new(MemberAddResponse {
            header: Some(self.header()),
            // etcd answers with the new member's id, peer URLs and learner flag only.
            member: Some(Member {
                id: added.id,
                peer_ur_ls: added.peer_urls,
                is_learner: added.is_learner,
                ..Default::default()
            }),
            members: to_api(members),
        }))
    }

    async fn member_remove(
        &self,
        req: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        self.require_admin(&req).await?;
        let members = self.server.remove_member(req.into_inner().id).await?;
        Ok(Response::new(MemberRemoveResponse {
            header: Some(self.header()),
            members: to_api(members),
        }))
    }

    async fn member_update(
        &self,
        req: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        self.require_admin(&req).await?;
        let req = req.into_inner();
        let members = self.server.update_member(req.id, req.peer_ur_ls).await?;
        Ok(Response::new(MemberUpdateResponse {
            header: Some(self.header()),
            members: to_api(members),
        }))
    }

    async fn member_list(
        &self,
        req: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        let who = identity(&self.server, &req).await?;
        if req.into_inner().linearizable {
            self.server.read_barrier().await?;
        }
        // Any authenticated user (etcd 3.5.28+; 3.4.23 checks nothing).
        require_user(self.server.auth_store(), &who)?;
        Ok(Response::new(MemberListResponse {
            header: Some(self.header()),
            members: self.members(),
        }))
    }

    async fn member_promote(
        &self,
        req: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        self.require_admin(&req).await?;
        let members = self.server.promote_member(req.into_inner().id).await?;
        Ok(Response::new(MemberPromoteResponse {
            header: Some(self.header()),
            members: to_api(members),
        }))
    }
}
