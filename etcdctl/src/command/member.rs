//! member add | remove | update | list | promote.

use api::etcdserverpb::{
    MemberAddRequest, MemberListRequest, MemberPromoteRequest, MemberRemoveRequest,
    MemberUpdateRequest,
};
use clap::{Args, Subcommand};

use crate::error::{CommandError, Result};
use crate::format::{go_quote, parse_hex_u64};
use crate::global::GlobalArgs;
use crate::printer::Display;

#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// Adds a member into the cluster
    Add(MemberArgs),
    /// Removes a member from the cluster
    Remove(MemberArgs),
    /// Updates a member in the cluster
    Update(MemberArgs),
    /// Lists all members in the cluster
    List(MemberArgs),
    /// Promotes a non-voting member in the cluster
    Promote(MemberArgs),
}

#[derive(Debug, Args)]
pub struct MemberArgs {
    args: Vec<String>,
    /// comma separated peer URLs
    #[arg(long, default_value = "")]
    peer_urls: String,
    /// indicates if the new member is raft learner
    #[arg(long)]
    learner: bool,
}

impl MemberArgs {
    fn member_id(&self) -> Result<u64> {
        let [id] = self.args.as_slice() else {
            return Err(CommandError::bad_args("member ID is not provided"));
        };
        parse_hex_u64(id).map_err(|e| {
            CommandError::bad_args(format!("bad member ID arg ({e}), expecting ID in Hex"))
        })
    }

    fn peer_urls(&self) -> Result<Vec<String>> {
        if self.peer_urls.is_empty() {
            return Err(CommandError::bad_args("member peer urls not provided"));
        }
        Ok(self.peer_urls.split(',').map(str::to_string).collect())
    }
}

impl MemberCommand {
    pub async fn run(self, global: &GlobalArgs) -> Result<()> {
        let printer = global.printer();
        match self {
            MemberCommand::Add(args) => {
                let name = match args.args.as_slice() {
                    [] => return Err(CommandError::bad_args("member name not provided")),
                    [name] => name.clone(),
                    many => {
                        let mut message = String::from("too many arguments");
                        for arg in many.iter().filter(|a| a.to_lowercase().starts_with("http")) {
                            message.push_str(&format!(", did you mean --peer-urls={arg}"));
                        }
                        return Err(CommandError::bad_args(message));
                    }
                };
                let peer_urls = args.peer_urls()?;
                let client = global.client().await?;
                let response = client
                    .member_add(MemberAddRequest {
                        peer_ur_ls: peer_urls.clone(),
                        is_learner: args.learner,
                    })
                    .await?;
                printer.print(&Display::MemberAdd(&response))?;
                if printer.is_simple() {
                    print_new_member_environment(&name, &peer_urls, &response);
                }
                Ok(())
            }
            MemberCommand::Remove(args) => {
                let id = args.member_id()?;
                let client = global.client().await?;
                let response = client.member_remove(MemberRemoveRequest { id }).await?;
                printer.print(&Display::MemberRemove {
                    id,
                    response: &response,
                })
            }
            MemberCommand::Update(args) => {
                let id = args.member_id()?;
                let peer_urls = args.peer_urls()?;
                let client = global.client().await?;
                let response = client
                    .member_update(MemberUpdateRequest {
                        id,
                        peer_ur_ls: peer_urls,
                    })
                    .await?;
                printer.print(&Display::MemberUpdate {
                    id,
                    response: &response,
                })
            }
            MemberCommand::List(_) => {
                let client = global.client().await?;
                let response = client
                    .member_list(MemberListRequest {
                        linearizable: false,
                    })
                    .await?;
                printer.print(&Display::MemberList(&response))
            }
            MemberCommand::Promote(args) => {
                let id = args.member_id()?;
                let client = global.client().await?;
                let response = client.member_promote(MemberPromoteRequest { id }).await?;
                printer.print(&Display::MemberPromote {
                    id,
                    response: &response,
                })
            }
        }
    }
}

/// The `ETCD_*` settings the new member must start with, as `member add` prints them.
fn print_new_member_environment(
    name: &str,
    peer_urls: &[String],
    response: &api::etcdserverpb::MemberAddResponse,
) {
    let new_id = response.member.as_ref().map_or(0, |m| m.id);
    let mut cluster = Vec::new();
    for member in &response.members {
        let member_name = if member.id == new_id {
            name
        } else {
            member.name.as_str()
        };
        for url in &member.peer_ur_ls {
            cluster.push(format!("{member_name}={url}"));
        }
    }
    println!();
    println!("ETCD_NAME={}", go_quote(name.as_bytes()));
    println!(
        "ETCD_INITIAL_CLUSTER={}",
        go_quote(cluster.join(",").as_bytes())
    );
    println!(
        "ETCD_INITIAL_ADVERTISE_PEER_URLS={}",
        go_quote(peer_urls.join(",").as_bytes())
    );
    println!("ETCD_INITIAL_CLUSTER_STATE=\"existing\"");
}
