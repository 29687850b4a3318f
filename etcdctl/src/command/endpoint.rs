//! endpoint health | status | hashkv, each asked of every endpoint separately
//! (`--cluster`: of every member's client URLs).

use std::time::Instant;

use api::etcdserverpb::{HashKvRequest, MemberListRequest, RangeRequest, StatusRequest};
use clap::{Args, Subcommand};

use crate::error::{CommandError, ExitCode, Result};
use crate::global::GlobalArgs;
use crate::printer::{Display, EndpointHashKv, EndpointHealth, EndpointStatus};

#[derive(Debug, Subcommand)]
pub enum EndpointCommand {
    /// Checks the healthiness of endpoints specified in `--endpoints` flag
    Health(ClusterFlag),
    /// Prints out the status of endpoints specified in `--endpoints` flag
    Status(ClusterFlag),
    /// Prints the KV history hash for each endpoint in --endpoints
    Hashkv(HashKvArgs),
}

#[derive(Debug, Args)]
pub struct ClusterFlag {
    /// use all endpoints from the cluster member list
    #[arg(long)]
    pub cluster: bool,
}

#[derive(Debug, Args)]
pub struct HashKvArgs {
    #[command(flatten)]
    cluster: ClusterFlag,
    /// maximum revision to hash (default: all revisions)
    #[arg(long, default_value_t = 0)]
    rev: i64,
}

/// `--endpoints`, or with `--cluster` the client URLs of every member (asked without auth).
pub(crate) async fn endpoints(global: &GlobalArgs, cluster: bool) -> Result<Vec<String>> {
    if !cluster {
        return Ok(global.endpoints.clone());
    }
    let client =
        client::Client::connect(&global.endpoints, global.client_options_without_auth()).await?;
    let members = client
        .member_list(MemberListRequest {
            linearizable: false,
        })
        .await
        .map_err(|e| {
            CommandError::error(format!(
                "failed to fetch endpoints from etcd cluster member list: {e}"
            ))
        })?;
    Ok(members
        .members
        .into_iter()
        .flat_map(|m| m.client_ur_ls)
        .collect())
}

impl EndpointCommand {
    pub async fn run(self, global: &GlobalArgs) -> Result<()> {
        let printer = global.printer();
        match self {
            EndpointCommand::Health(flag) => {
                let endpoints = endpoints(global, flag.cluster).await?;
                let results =
                    futures::future::join_all(endpoints.iter().map(|ep| health(global, ep))).await;
                printer.print(&Display::EndpointHealth(&results))?;
                if results.iter().any(|h| !h.error.is_empty()) {
                    return Err(CommandError::error("unhealthy cluster"));
                }
                Ok(())
            }
            EndpointCommand::Status(flag) => {
                let client = global.client().await?;
                let mut statuses = Vec::new();
                let mut failed = false;
                for endpoint in endpoints(global, flag.cluster).await? {
                    let result = async {
                        client
                            .for_endpoint(&endpoint)?
                            .status(StatusRequest {})
                            .await
                    };
                    match result.await {
                        Ok(status) => statuses.push(EndpointStatus { endpoint, status }),
                        Err(e) => {
                            failed = true;
                            eprintln!("Failed to get the status of endpoint {endpoint} ({e})");
                        }
                    }
                }
                printer.print(&Display::EndpointStatus(&statuses))?;
                exit_error_if(failed)
            }
            EndpointCommand::Hashkv(args) => {
                let client = global.client().await?;
                let mut hashes = Vec::new();
                let mut failed = false;
                for endpoint in endpoints(global, args.cluster.cluster).await? {
                    let request = HashKvRequest { revision: args.rev };
                    let result = async { client.for_endpoint(&endpoint)?.hash_kv(request).await };
                    match result.await {
                        Ok(hash) => hashes.push(EndpointHashKv { endpoint, hash }),
                        Err(e) => {
                            failed = true;
                            eprintln!("Failed to get the hash of endpoint {endpoint} ({e})");
                        }
                    }
                }
                printer.print(&Display::EndpointHashKv(&hashes))?;
                exit_error_if(failed)
            }
        }
    }
}

/// etcdctl exits 1 without a further message after reporting per-endpoint failures.
fn exit_error_if(failed: bool) -> Result<()> {
    if failed {
        return Err(CommandError::reported(ExitCode::Error));
    }
    Ok(())
}

/// A linearizable read of key "health" on its own connection: healthy if it succeeds or is
/// merely denied by RBAC (the request still went through consensus).
async fn health(global: &GlobalArgs, endpoint: &str) -> EndpointHealth {
    let started = Instant::now();
    let result = async {
        let client = global.client_for(&[endpoint.to_string()]).await?;
        client
            .range(RangeRequest {
                key: b"health".to_vec(),
                ..Default::default()
            })
            .await
            .map_err(CommandError::from)
    }
    .await;
    let took = started.elapsed();
    let error = match result {
        Ok(_) => String::new(),
        Err(e) if e.message == client::messages::PERMISSION_DENIED => String::new(),
        Err(e) => e.message,
    };
    EndpointHealth {
        endpoint: endpoint.to_string(),
        healthy: error.is_empty(),
        took,
        error,
    }
}
