//! The etcd v3 client-facing protos (etcdserverpb, mvccpb, authpb, v3lockpb, v3electionpb).
