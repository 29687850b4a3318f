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
        client::Client::connect(&global.endpoints, global.client_options_without_auth()?).await?;
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
                let endpoints = endpoints(global, flag.cluster).await?;
                let (answers, failed) =
                    ask_each(global, endpoints, "get the status", |member| async move {
                        member.status(StatusRequest {}).await
                    })
                    .await?;
                let statuses: Vec<EndpointStatus> = answers
                    .into_iter()
                    .map(|(endpoint, status)| EndpointStatus { endpoint, status })
                    .collect();
                printer.print(&Display::EndpointStatus(&statuses))?;
                // etcdctl exits 1 without a further message here.
                match failed {
                    Some(_) => Err(CommandError::reported(ExitCode::Error)),
                    None => Ok(()),
                }
            }
            EndpointCommand::Hashkv(args) => {
                let endpoints = endpoints(global, args.cluster.cluster).await?;
                let request = HashKvRequest { revision: args.rev };
                let (answers, failed) =
                    ask_each(global, endpoints, "get the hash", |member| async move {
                        member.hash_kv(request).await
                    })
                    .await?;
                let hashes: Vec<EndpointHashKv> = answers
                    .into_iter()
                    .map(|(endpoint, hash)| EndpointHashKv { endpoint, hash })
                    .collect();
                printer.print(&Display::EndpointHashKv(&hashes))?;
                // ...but repeats the last failure here.
                match failed {
                    Some(e) => Err(e.into()),
                    None => Ok(()),
                }
            }
        }
    }
}

/// Asks every endpoint in turn on its own connection. A failure is reported on stderr
/// (`Failed to <what> of endpoint <ep> (<error>)`) and the others are still asked; the last
/// failure is returned with the answers.
async fn ask_each<T, F, Fut>(
    global: &GlobalArgs,
    endpoints: Vec<String>,
    what: &str,
    ask: F,
) -> Result<(Vec<(String, T)>, Option<client::Error>)>
where
    F: Fn(client::Client) -> Fut,
    Fut: std::future::Future<Output = client::Result<T>>,
{
    let client = global.client().await?;
    let mut answers = Vec::new();
    let mut failed = None;
    for endpoint in endpoints {
        let answer = match client.for_endpoint(&endpoint) {
            Ok(member) => ask(member).await,
            Err(e) => Err(e),
        };
        match answer {
            Ok(answer) => answers.push((endpoint, answer)),
            Err(e) => {
                eprintln!("Failed to {what} of endpoint {endpoint} ({e})");
                failed = Some(e);
            }
        }
    }
    Ok((answers, failed))
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
