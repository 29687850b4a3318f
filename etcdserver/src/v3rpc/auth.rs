//! The Auth gRPC service (etcd's `v3rpc/auth.go` and the auth methods of `v3_server.go`): every
//! request goes through raft, proposed on behalf of the caller's identity, and is checked and
//! applied by `server::apply_auth`. Passwords never enter the log: Authenticate checks the
//! password here and proposes only the user and a token prefix, UserAdd and
//! UserChangePassword propose the bcrypt hash (etcd 3.5).

use std::sync::Arc;

use api::etcdserverpb as pb;
use api::etcdserverpb::auth_server::{Auth, AuthServer};
use tonic::{Request, Response, Status};

use super::identity;
use super::kv::GRPC_OVERHEAD_BYTES;
use crate::core::{Applied, AuthApplied, ServerCore};
use crate::error::ServerError;

pub struct AuthService<C: ServerCore> {
    core: Arc<C>,
}

impl<C: ServerCore> AuthService<C> {
    pub fn new(core: Arc<C>) -> Self {
        Self { core }
    }

    pub fn into_server(self) -> AuthServer<Self> {
        let limit = self
            .core
            .limits()
            .max_request_bytes
            .saturating_add(GRPC_OVERHEAD_BYTES);
        AuthServer::new(self).max_decoding_message_size(limit)
    }

    /// Proposes `req` on behalf of the caller of `request` and returns what applying it
    /// produced.
    async fn propose<T: Send>(
        &self,
        request: Request<T>,
        into_raft_request: impl FnOnce(T) -> pb::InternalRaftRequest + Send,
    ) -> Result<AuthApplied, Status> {
        let info = identity::auth_info(&*self.core, &request).await?;
        let req = into_raft_request(request.into_inner());
        self.propose_as(info, req).await
    }

    async fn propose_as(
        &self,
        info: auth::AuthInfo,
        req: pb::InternalRaftRequest,
    ) -> Result<AuthApplied, Status> {
        match self.core.propose(identity::on_behalf_of(info, req)).await? {
            Applied::Auth(applied) => Ok(applied),
            other => {
                tracing::error!(applied = ?other, "an auth request applied as something else");
                Err(
                    ServerError::Internal("an auth request applied as something else".into())
                        .into(),
                )
            }
        }
    }

    fn header(&self) -> Option<pb::ResponseHeader> {
        Some(self.core.header())
    }

    /// The `hashedPassword` etcd 3.5 proposes: the bcrypt hash at the configured cost, in std
    /// base64; computed off the async threads (tens of milliseconds at cost 10).
    async fn hash_password(&self, password: String) -> Result<String, Status> {
        use base64::Engine as _;
        let store = self.core.auth_store().clone();
        tokio::task::spawn_blocking(move || {
            base64::engine::general_purpose::STANDARD.encode(store.hash_password(&password))
        })
        .await
        .map_err(|e| Status::from(ServerError::Internal(format!("hashing a password: {e}"))))
    }

    /// etcd's `Authenticate`: a linearizable barrier, the password checked here, then the token
    /// assigned through raft; all again if the auth store changed between check and apply.
    async fn authenticate_user(&self, name: String, password: String) -> Result<String, Status> {
        self.core.read_barrier().await?;
        let store = self.core.auth_store().clone();
        let password = Arc::<str>::from(password);
        loop {
            let checked = {
                let (store, user, password) = (store.clone(), name.clone(), password.clone());
                tokio::task::spawn_blocking(move || store.check_password(&user, &password))
                    .await
                    .map_err(|e| {
                        Status::from(ServerError::Internal(format!("checking a password: {e}")))
                    })?
                    .map_err(|e| {
                        if e != auth::AuthError::AuthNotEnabled {
                            tracing::warn!(user = %name, error = %e, "authentication failed");
                        }
                        Status::from(ServerError::Auth(e))
                    })?
            };
            let req = pb::InternalRaftRequest {
                authenticate: Some(pb::InternalAuthenticateRequest {
                    name: name.clone(),
                    password: String::new(),
                    simple_token: store.gen_simple_token_prefix(),
                }),
                ..Default::default()
            };
            let applied = self.propose_as(auth::AuthInfo::default(), req).await?;
            let AuthApplied::Token(token) = applied else {
                return Err(unexpected(applied));
            };
            if checked == store.revision() {
                return Ok(token);
            }
            tracing::info!(user = %name, "revision when password checked became stale; retrying");
        }
    }
}

fn unexpected(applied: AuthApplied) -> Status {
    tracing::error!(
        ?applied,
        "an auth request applied with the wrong kind of answer"
    );
    ServerError::Internal("an auth request applied with the wrong kind of answer".into()).into()
}

fn names(applied: AuthApplied) -> Result<Vec<String>, Status> {
    match applied {
        AuthApplied::Names(names) => Ok(names),
        other => Err(unexpected(other)),
    }
}

fn done(applied: AuthApplied) -> Result<(), Status> {
    match applied {
        AuthApplied::Done => Ok(()),
        other => Err(unexpected(other)),
    }
}

fn raft_request() -> pb::InternalRaftRequest {
    pb::InternalRaftRequest::default()
}

#[tonic::async_trait]
impl<C: ServerCore> Auth for AuthService<C> {
    async fn auth_enable(
        &self,
        request: Request<pb::AuthEnableRequest>,
    ) -> Result<Response<pb::AuthEnableResponse>, Status> {
        done(
            self.propose(request, |r| pb::InternalRaftRequest {
                auth_enable: Some(r),
                ..raft_request()
            })
            .await?,
        )?;
        Ok(Response::new(pb::AuthEnableResponse {
            header: self.header(),
        }))
    }

    async fn auth_disable(
        &self,
        request: Request<pb::AuthDisableRequest>,
    ) -> Result<Response<pb::AuthDisableResponse>, Status> {
        done(
            self.propose(request, |r| pb::InternalRaftRequest {
                auth_disable: Some(r),
                ..raft_request()
            })
            .await?,
        )?;
        Ok(Response::new(pb::AuthDisableResponse {
            header: self.header(),
        }))
    }

    async fn auth_status(
        &self,
        request: Request<pb::AuthStatusRequest>,
    ) -> Result<Response<pb::AuthStatusResponse>, Status> {
        match self
            .propose(request, |r| pb::InternalRaftRequest {
                auth_status: Some(r),
                ..raft_request()
            })
            .await?
        {
            AuthApplied::Status { enabled, revision } => {
                Ok(Response::new(pb::AuthStatusResponse {
                    header: self.header(),
                    enabled,
                    auth_revision: revision,
                }))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn authenticate(
        &self,
        request: Request<pb::AuthenticateRequest>,
    ) -> Result<Response<pb::AuthenticateResponse>, Status> {
        let r = request.into_inner();
        let token = self.authenticate_user(r.name, r.password).await?;
        Ok(Response::new(pb::AuthenticateResponse {
            header: self.header(),
            token,
        }))
    }

    async fn user_add(
        &self,
        request: Request<pb::AuthUserAddRequest>,
    ) -> Result<Response<pb::AuthUserAddResponse>, Status> {
        let info = identity::auth_info(&*self.core, &request).await?;
        let mut r = request.into_inner();
        if !r.options.as_ref().is_some_and(|o| o.no_password) {
            let password = std::mem::take(&mut r.password);
            r.hashed_password = self.hash_password(password).await?;
        }
        let req = pb::InternalRaftRequest {
            auth_user_add: Some(r),
            ..raft_request()
        };
        done(self.propose_as(info, req).await?)?;
        Ok(Response::new(pb::AuthUserAddResponse {
            header: self.header(),
        }))
    }

    async fn user_get(
        &self,
        request: Request<pb::AuthUserGetRequest>,
    ) -> Result<Response<pb::AuthUserGetResponse>, Status> {
        let roles = names(
            self.propose(request, |r| pb::InternalRaftRequest {
                auth_user_get: Some(r),
                ..raft_request()
            })
            .await?,
        )?;
        Ok(Response::new(pb::AuthUserGetResponse {
            header: self.header(),
            roles,
        }))
    }

    async fn user_list(
        &self,
        request: Request<pb::AuthUserListRequest>,
    ) -> Result<Response<pb::AuthUserListResponse>, Status> {
        let users = names(
            self.propose(request, |r| pb::InternalRaftRequest {
                auth_user_list: Some(r),
                ..raft_request()
            })
            .await?,
        )?;
        Ok(Response::new(pb::AuthUserListResponse {
            header: self.header(),
            users,
        }))
    }

    async fn user_delete(
        &self,
        request: Request<pb::AuthUserDeleteRequest>,
    ) -> Result<Response<pb::AuthUserDeleteResponse>, Status> {
        done(
            self.propose(request, |r| pb::InternalRaftRequest {
                auth_user_delete: Some(r),
                ..raft_request()
            })
            .await?,
        )?;
        Ok(Response::new(pb::AuthUserDeleteResponse {
            header: self.header(),
        }))
    }

    async fn user_change_password(
        &self,
        request: Request<pb::AuthUserChangePasswordRequest>,
    ) -> Result<Response<pb::AuthUserChangePasswordResponse>, Status> {
        let info = identity::auth_info(&*self.core, &request).await?;
        let mut r = request.into_inner();
        let password = std::mem::take(&mut r.password);
        r.hashed_password = self.hash_password(password).await?;
        let req = pb::InternalRaftRequest {
            auth_user_change_password: Some(r),
            ..raft_request()
        };
        done(self.propose_as(info, req).await?)?;
        Ok(Response::new(pb::AuthUserChangePasswordResponse {
            header: self.header(),
        }))
    }

    async fn user_grant_role(
        &self,
        request: Request<pb::AuthUserGrantRoleRequest>,
    ) -> Result<Response<pb::AuthUserGrantRoleResponse>, Status> {
        done(
            self.propose(request, |r| pb::InternalRaftRequest {
                auth_user_grant_role: Some(r),
                ..raft_request()
            })
            .await?,
        )?;
        Ok(Response::new(pb::AuthUserGrantRoleResponse {
            header: self.header(),
        }))
    }

    async fn user_revoke_role(
        &self,
        request: Request<pb::AuthUserRevokeRoleRequest>,
    ) -> Result<Response<pb::AuthUserRevokeRoleResponse>, Status> {
        done(
            self.propose(request, |r| pb::InternalRaftRequest {
                auth_user_revoke_role: Some(r),
                ..raft_request()
            })
            .await?,
        )?;
        Ok(Response::new(pb::AuthUserRevokeRoleResponse {
            header: self.header(),
        }))
    }

    async fn role_add(
        &self,
        request: Request<pb::AuthRoleAddRequest>,
    ) -> Result<Response<pb::AuthRoleAddResponse>, Status> {
        done(
            self.propose(request, |r| pb::InternalRaftRequest {
                auth_role_add: Some(r),
                ..raft_request()
            })
            .await?,
        )?;
        Ok(Response::new(pb::AuthRoleAddResponse {
            header: self.header(),
        }))
    }

    async fn role_get(
        &self,
        request: Request<pb::AuthRoleGetRequest>,
    ) -> Result<Response<pb::AuthRoleGetResponse>, Status> {
        match self
            .propose(request, |r| pb::InternalRaftRequest {
                auth_role_get: Some(r),
                ..raft_request()
            })
            .await?
        {
            AuthApplied::Permissions(perm) => Ok(Response::new(pb::AuthRoleGetResponse {
                header: self.header(),
                perm,
            })),
            other => Err(unexpected(other)),
        }
    }

    async fn role_list(
        &self,
        request: Request<pb::AuthRoleListRequest>,
    ) -> Result<Response<pb::AuthRoleListResponse>, Status> {
        let roles = names(
            self.propose(request, |r| pb::InternalRaftRequest {
                auth_role_list: Some(r),
                ..raft_request()
            })
            .await?,
        )?;
        Ok(Response::new(pb::AuthRoleListResponse {
            header: self.header(),
            roles,
        }))
    }

    async fn role_delete(
        &self,
        request: Request<pb::AuthRoleDeleteRequest>,
    ) -> Result<Response<pb::AuthRoleDeleteResponse>, Status> {
        done(
            self.propose(request, |r| pb::InternalRaftRequest {
                auth_role_delete: Some(r),
                ..raft_request()
            })
            .await?,
        )?;
        Ok(Response::new(pb::AuthRoleDeleteResponse {
            header: self.header(),
        }))
    }

    async fn role_grant_permission(
        &self,
        request: Request<pb::AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<pb::AuthRoleGrantPermissionResponse>, Status> {
        done(
            self.propose(request, |r| pb::InternalRaftRequest {
                auth_role_grant_permission: Some(r),
                ..raft_request()
            })
            .await?,
        )?;
        Ok(Response::new(pb::AuthRoleGrantPermissionResponse {
            header: self.header(),
        }))
    }

    async fn role_revoke_permission(
        &self,
        request: Request<pb::AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<pb::AuthRoleRevokePermissionResponse>, Status> {
        done(
            self.propose(request, |r| pb::InternalRaftRequest {
                auth_role_revoke_permission: Some(r),
                ..raft_request()
            })
            .await?,
        )?;
        Ok(Response::new(pb::AuthRoleRevokePermissionResponse {
            header: self.header(),
        }))
    }
}
