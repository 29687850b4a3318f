//! What a learner may serve (etcd's `isRPCSupportedForLearner` interceptor): Maintenance.Status
//! and serializable KV.Range; every other etcd RPC answers `rpc not supported for learner`.
//! A linearizable Range is refused by the read barrier, which a learner cannot pass.

use axum::extract::Request;
use axum::middleware::Next;

use crate::error::ServerError;
use crate::server::EtcdServer;

/// gRPC methods a learner serves.
const LEARNER_METHODS: [&str; 2] = ["/etcdserverpb.Maintenance/Status", "/etcdserverpb.KV/Range"];
/// Packages of etcd's client RPCs (the HTTP endpoints and gRPC health are left alone).
const ETCD_PACKAGES: [&str; 3] = ["/etcdserverpb.", "/v3lockpb.", "/v3electionpb."];

/// Wraps the client routes so that a learner refuses what etcd's learner refuses.
pub(crate) fn guard(server: EtcdServer, router: axum::Router) -> axum::Router {
    router.layer(axum::middleware::from_fn(
        move |req: Request, next: Next| {
            let server = server.clone();
            async move {
                let path = req.uri().path();
                let guarded = ETCD_PACKAGES.iter().any(|p| path.starts_with(p))
                    && !LEARNER_METHODS.contains(&path);
                if guarded && server.is_learner() {
                    return tonic::Status::from(ServerError::NotSupportedForLearner).into_http();
                }
                next.run(req).await
            }
        },
    ))
}
