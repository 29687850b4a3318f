//! The etcd v3 client-facing protos (etcdserverpb, mvccpb, authpb, v3lockpb, v3electionpb),
//! compiled with tonic for both clients and servers.
//!
//! Package, message and field names and numbers are etcd 3.5's, so the bytes on the wire are
//! identical to etcd's. Fields that etcd spells in upper case (`TTL`, `ID`, `peerURLs`) get
//! prost's snake-case names (`ttl`, `id`, `peer_ur_ls`).

pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

pub mod authpb {
    tonic::include_proto!("authpb");
}

pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
}

pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
}
