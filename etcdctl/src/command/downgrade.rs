//! `downgrade validate|enable|cancel` (etcdctl 3.6's `downgrade_command.go`; etcdctl 3.4 and
//! 3.5 have no such command).

use api::etcdserverpb::downgrade_request::DowngradeAction;
use api::etcdserverpb::DowngradeRequest;
use clap::{Args, Subcommand};

use crate::error::{CommandError, Result};
use crate::global::GlobalArgs;
use crate::printer::Display;

#[derive(Debug, Subcommand)]
pub enum DowngradeCommand {
    /// Validate downgrade capability before starting downgrade
    Validate(TargetArgs),
    /// Start a downgrade action to cluster
    Enable(TargetArgs),
    /// Cancel the ongoing downgrade action to cluster
    Cancel(IgnoredArgs),
}

#[derive(Debug, Args)]
pub struct TargetArgs {
    /// <TARGET_VERSION>
    args: Vec<String>,
}

/// etcdctl's `downgrade cancel` takes no argument and ignores any given.
#[derive(Debug, Args)]
pub struct IgnoredArgs {
    #[arg(hide = true)]
    args: Vec<String>,
}

impl TargetArgs {
    /// The one target version, with etcdctl's errors for none, several or an empty one.
    fn target(&self) -> Result<&str> {
        match self.args.as_slice() {
            [] => Err(CommandError::bad_args("TARGET_VERSION not provided")),
            [target] if target.is_empty() => {
                Err(CommandError::bad_args("target version not provided"))
            }
            [target] => Ok(target),
            _ => Err(CommandError::bad_args("too many arguments")),
        }
    }
}

impl DowngradeCommand {
    pub async fn run(self, global: &GlobalArgs) -> Result<()> {
        let (name, action, version) = match &self {
            DowngradeCommand::Validate(args) => {
                ("validate", DowngradeAction::Validate, args.target()?)
            }
            DowngradeCommand::Enable(args) => ("enable", DowngradeAction::Enable, args.target()?),
            DowngradeCommand::Cancel(_) => ("cancel", DowngradeAction::Cancel, ""),
        };
        let client = global.client().await?;
        let response = client
            .downgrade(DowngradeRequest {
                action: action as i32,
                version: version.to_owned(),
            })
            .await?;
        global.printer().print(&Display::Downgrade {
            action: name,
            response: &response,
        })
    }
}
