//! alarm list | disarm, defrag, move-leader and snapshot save.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;

use api::etcdserverpb::alarm_request::AlarmAction;
use api::etcdserverpb::{
    AlarmRequest, AlarmResponse, DefragmentRequest, MoveLeaderRequest, StatusRequest,
};
use clap::{Args, Subcommand};

use super::endpoint::endpoints;
use crate::error::{CommandError, ExitCode, Result};
use crate::format::parse_hex_u64;
use crate::global::GlobalArgs;
use crate::printer::Display;

#[derive(Debug, Subcommand)]
pub enum AlarmCommand {
    /// Disarms all alarms
    Disarm(NoArgs),
    /// Lists all alarms
    List(NoArgs),
}

#[derive(Debug, Args)]
pub struct NoArgs {
    args: Vec<String>,
}

impl AlarmCommand {
    pub async fn run(self, global: &GlobalArgs) -> Result<()> {
        let (name, args) = match &self {
            AlarmCommand::Disarm(a) => ("disarm", &a.args),
            AlarmCommand::List(a) => ("list", &a.args),
        };
        if !args.is_empty() {
            return Err(CommandError::bad_args(format!(
                "alarm {name} command accepts no arguments"
            )));
        }
        let client = global.client().await?;
        let list = client
            .alarm(AlarmRequest {
                action: AlarmAction::Get as i32,
                member_id: 0,
                alarm: 0,
            })
            .await?;
        let response = match self {
            AlarmCommand::List(_) => list,
            AlarmCommand::Disarm(_) => {
                // As clientv3 does: deactivate each raised alarm, report what was deactivated.
                let mut disarmed = AlarmResponse::default();
                for alarm in list.alarms {
                    let response = client
                        .alarm(AlarmRequest {
                            action: AlarmAction::Deactivate as i32,
                            member_id: alarm.member_id,
                            alarm: alarm.alarm,
                        })
                        .await?;
                    disarmed.alarms.extend(response.alarms);
                }
                disarmed
            }
        };
        global.printer().print(&Display::Alarm(&response))
    }
}

#[derive(Debug, Args)]
pub struct DefragArgs {
    /// use all endpoints from the cluster member list
    #[arg(long)]
    cluster: bool,
}

impl DefragArgs {
    pub async fn run(self, global: &GlobalArgs) -> Result<()> {
        let client = global.client().await?;
        let mut failures = 0;
        for endpoint in endpoints(global, self.cluster).await? {
            let result = async {
                client
                    .for_endpoint(&endpoint)?
                    .defragment(DefragmentRequest {})
                    .await
            };
            match result.await {
                Ok(_) => println!("Finished defragmenting etcd member[{endpoint}]"),
                Err(e) => {
                    failures += 1;
                    eprintln!("Failed to defragment etcd member[{endpoint}] ({e})");
                }
            }
        }
        if failures > 0 {
            return Err(CommandError::reported(ExitCode::Error));
        }
        Ok(())
    }
}

#[derive(Debug, Args)]
pub struct MoveLeaderArgs {
    /// <transferee-member-id>
    args: Vec<String>,
}

impl MoveLeaderArgs {
    pub async fn run(self, global: &GlobalArgs) -> Result<()> {
        let [target] = self.args.as_slice() else {
            return Err(CommandError::bad_args(
                "move-leader command needs 1 argument",
            ));
        };
        let target = parse_hex_u64(target).map_err(CommandError::bad_args)?;
        let client = global.client().await?;
        // Only the leader can transfer leadership: find the endpoint that is it.
        for endpoint in &global.endpoints {
            let member = client.for_endpoint(endpoint)?;
            let status = member.status(StatusRequest {}).await?;
            let member_id = status.header.as_ref().map_or(0, |h| h.member_id);
            if member_id == status.leader {
                let response = member
                    .move_leader(MoveLeaderRequest { target_id: target })
                    .await?;
                return global.printer().print(&Display::MoveLeader {
                    leader: status.leader,
                    target,
                    response: &response,
                });
            }
        }
        Err(CommandError::bad_args(format!(
            "no leader endpoint given at [{}]",
            client.endpoints().join(" ")
        )))
    }
}

/// `snapshot save <path>` (the command itself is in `snapshot.rs`).
pub(super) async fn snapshot_save(args: NoArgs, global: &GlobalArgs) -> Result<()> {
    let NoArgs { args } = args;
    let [path] = args.as_slice() else {
        return Err(CommandError::bad_args("snapshot save expects one argument"));
    };
    if global.endpoints.len() != 1 {
        return Err(CommandError::new(
            ExitCode::Interrupted,
            format!(
                "snapshot must be requested to one selected node, not multiple [{}]",
                global.endpoints.join(" ")
            ),
        ));
    }
    let client = global.client().await?;
    save_snapshot(&client, path)
        .await
        .map_err(|e| CommandError::new(ExitCode::Interrupted, e.message))?;
    println!("Snapshot saved at {path}");
    Ok(())
}

/// Streams the snapshot into `<path>.part`, syncs it and renames it into place, so that a
/// failed download never leaves a truncated file at `path`.
async fn save_snapshot(client: &client::Client, path: &str) -> Result<()> {
    let partial = format!("{path}.part");
    let _ = std::fs::remove_file(&partial);
    let mut file = std::fs::OpenOptions::new()
        .mode(0o600)
        .write(true)
        .create_new(true)
        .open(&partial)
        .map_err(|e| CommandError::error(format!("could not open {partial} ({e})")))?;
    let mut stream = client.snapshot().await?;
    let result: Result<()> = async {
        while let Some(chunk) = stream.message().await.map_err(client::Error::from)? {
            file.write_all(&chunk.blob)?;
        }
        file.sync_all()?;
        Ok(())
    }
    .await;
    if let Err(e) = result {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    std::fs::rename(&partial, path)
        .map_err(|e| CommandError::error(format!("could not rename {partial} to {path} ({e})")))?;
    Ok(())
}
