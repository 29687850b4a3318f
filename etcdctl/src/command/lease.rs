//! lease grant | revoke | timetolive | list | keep-alive.

use api::etcdserverpb::{
    LeaseGrantRequest, LeaseLeasesRequest, LeaseRevokeRequest, LeaseTimeToLiveRequest,
};
use clap::{Args, Subcommand};

use crate::error::{CommandError, ExitCode, Result};
use crate::format::{parse_hex_i64, parse_i64};
use crate::global::GlobalArgs;
use crate::printer::Display;

#[derive(Debug, Subcommand)]
pub enum LeaseCommand {
    /// Creates leases
    Grant(Positional),
    /// Revokes leases
    Revoke(Positional),
    /// Get lease information
    Timetolive(TimeToLiveArgs),
    /// List all active leases
    List(Positional),
    /// Keeps leases alive (renew)
    KeepAlive(KeepAliveArgs),
}

#[derive(Debug, Args)]
pub struct Positional {
    args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct TimeToLiveArgs {
    /// <leaseID>
    args: Vec<String>,
    /// Get keys attached to this lease
    #[arg(long)]
    keys: bool,
}

#[derive(Debug, Args)]
pub struct KeepAliveArgs {
    /// <leaseID>
    args: Vec<String>,
    /// Resets the keep-alive time to its original value and exits immediately
    #[arg(long)]
    once: bool,
}

/// A lease ID argument, in hex.
fn lease_id(arg: &str) -> Result<i64> {
    parse_hex_i64(arg)
        .map_err(|e| CommandError::bad_args(format!("bad lease ID arg ({e}), expecting ID in Hex")))
}

fn bad_connection(error: client::Error) -> CommandError {
    CommandError::new(ExitCode::BadConnection, error.to_string())
}

impl LeaseCommand {
    pub async fn run(self, global: &GlobalArgs) -> Result<()> {
        let printer = global.printer();
        match self {
            LeaseCommand::Grant(Positional { args }) => {
                let [ttl] = args.as_slice() else {
                    return Err(CommandError::bad_args(
                        "lease grant command needs TTL argument",
                    ));
                };
                let ttl =
                    parse_i64(ttl).map_err(|e| CommandError::bad_args(format!("bad TTL ({e})")))?;
                let client = global.client().await?;
                let response = client
                    .lease_grant(LeaseGrantRequest { ttl, id: 0 })
                    .await
                    .map_err(|e| CommandError::error(format!("failed to grant lease ({e})")))?;
                printer.print(&Display::LeaseGrant(&response))
            }
            LeaseCommand::Revoke(Positional { args }) => {
                let [id] = args.as_slice() else {
                    return Err(CommandError::bad_args(
                        "lease revoke command needs 1 argument",
                    ));
                };
                let id = lease_id(id)?;
                let client = global.client().await?;
                let response = client
                    .lease_revoke(LeaseRevokeRequest { id })
                    .await
                    .map_err(|e| CommandError::error(format!("failed to revoke lease ({e})")))?;
                printer.print(&Display::LeaseRevoke {
                    id,
                    response: &response,
                })
            }
            LeaseCommand::Timetolive(TimeToLiveArgs { args, keys }) => {
                let [id] = args.as_slice() else {
                    return Err(CommandError::bad_args(
                        "lease timetolive command needs lease ID as argument",
                    ));
                };
                let id = lease_id(id)?;
                let client = global.client().await?;
                let response = client
                    .lease_time_to_live(LeaseTimeToLiveRequest { id, keys })
                    .await
                    .map_err(bad_connection)?;
                printer.print(&Display::TimeToLive {
                    response: &response,
                    keys,
                })
            }
            LeaseCommand::List(_) => {
                let client = global.client().await?;
                let response = client
                    .lease_leases(LeaseLeasesRequest {})
                    .await
                    .map_err(bad_connection)?;
                printer.print(&Display::Leases(&response))
            }
            LeaseCommand::KeepAlive(KeepAliveArgs { args, once }) => {
                let [id] = args.as_slice() else {
                    return Err(CommandError::bad_args(
                        "lease keep-alive command needs lease ID as argument",
                    ));
                };
                let id = lease_id(id)?;
                let client = global.client().await?;
                if once {
                    let response = client
                        .lease_keep_alive_once(id)
                        .await
                        .map_err(bad_connection)?;
                    if response.ttl <= 0 {
                        return Err(CommandError::new(
                            ExitCode::BadConnection,
                            "etcdserver: requested lease not found",
                        ));
                    }
                    return printer.print(&Display::KeepAlive(&response));
                }
                let mut renewals = client.keep_alive(id);
                while let Some(Ok(response)) = renewals.next().await {
                    printer.print(&Display::KeepAlive(&response))?;
                }
                if printer.is_simple() {
                    println!("lease {id:016x} expired or revoked.");
                }
                Ok(())
            }
        }
    }
}
