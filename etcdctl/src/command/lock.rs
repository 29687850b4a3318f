//! lock and elect: the client-side recipes of clientv3/concurrency, holding what they acquire
//! until SIGINT/SIGTERM (then releasing it) or until the session's lease is lost.

use api::etcdserverpb::RangeRequest;
use api::mvccpb::KeyValue;
use clap::Args;
use client::concurrency::{Election, Mutex, Session};

use super::exec;
use crate::error::{CommandError, Result};
use crate::global::GlobalArgs;
use crate::printer::{Display, Printer};

/// clientv3's default session TTL, which `elect` uses.
const DEFAULT_SESSION_TTL: i64 = 60;

#[derive(Debug, Args)]
pub struct LockArgs {
    /// <lockname> [exec-command arg1 arg2 ...] (a command with flags goes after `--`)
    args: Vec<String>,
    /// timeout for session
    #[arg(long, default_value_t = 10)]
    ttl: i64,
}

impl LockArgs {
    pub async fn run(self, global: &GlobalArgs) -> Result<()> {
        let Some((name, command)) = self.args.split_first() else {
            return Err(CommandError::bad_args(
                "lock takes a lock name argument and an optional command to execute",
            ));
        };
        let client = global.client().await?;
        let session = Session::new(&client, self.ttl).await?;
        let mutex = tokio::select! {
            mutex = Mutex::lock(&session, name) => mutex?,
            _ = exec::interrupted() => return give_up(session).await,
        };
        if !command.is_empty() {
            let env = [
                (
                    "ETCD_LOCK_KEY".to_string(),
                    String::from_utf8_lossy(mutex.key()).into_owned(),
                ),
                (
                    "ETCD_LOCK_REV".to_string(),
                    mutex.header().revision.to_string(),
                ),
            ];
            let result = exec::run(command, &env).await;
            let unlocked = mutex.unlock(&client).await;
            result?;
            return Ok(unlocked?);
        }
        let response = client
            .range(RangeRequest {
                key: mutex.key().to_vec(),
                ..Default::default()
            })
            .await?;
        if response.kvs.is_empty() {
            return Err(CommandError::error("lock lost on init"));
        }
        global.printer().print(&Display::Get(&response))?;
        tokio::select! {
            _ = exec::interrupted() => Ok(mutex.unlock(&client).await?),
            _ = session.expired() => Err(CommandError::error("session expired")),
        }
    }
}

#[derive(Debug, Args)]
pub struct ElectArgs {
    /// <election-name> [proposal]
    args: Vec<String>,
    /// observation mode
    #[arg(short, long)]
    listen: bool,
}

impl ElectArgs {
    pub async fn run(self, global: &GlobalArgs) -> Result<()> {
        let (name, proposal) = match self.args.as_slice() {
            [name] => (name, None),
            [name, proposal] => (name, Some(proposal)),
            _ => {
                return Err(CommandError::bad_args(
                    "elect takes one election name argument and an optional proposal argument",
                ))
            }
        };
        let printer = global.printer();
        match (proposal, self.listen) {
            (None, false) => Err(CommandError::bad_args(
                "no proposal argument but -l not set",
            )),
            (Some(_), true) => Err(CommandError::bad_args("proposal given but -l is set")),
            (None, true) => observe(global, name, printer).await,
            (Some(proposal), false) => campaign(global, name, proposal, printer).await,
        }
    }
}

/// Interrupted while waiting: leave the queue at once (the key dies with the lease) and
/// report the canceled wait as etcdctl does.
async fn give_up(session: Session) -> Result<()> {
    let _ = session.close().await;
    Err(CommandError::error("context canceled"))
}

fn print_leader(printer: Printer, kv: &KeyValue) -> Result<()> {
    printer.print(&Display::Get(&api::etcdserverpb::RangeResponse {
        kvs: vec![kv.clone()],
        count: 1,
        ..Default::default()
    }))
}

/// Prints the leader's key and proposal each time it changes, until interrupted.
async fn observe(global: &GlobalArgs, name: &str, printer: Printer) -> Result<()> {
    let client = global.client().await?;
    let election = Election::new(name);
    let mut failure = None;
    let observed = election.observe(&client, |kv| match print_leader(printer, kv) {
        Ok(()) => true,
        Err(e) => {
            failure = Some(e);
            false
        }
    });
    tokio::select! {
        result = observed => {
            result?;
            Err(failure.unwrap_or_else(|| CommandError::error("elect: observer lost")))
        }
        _ = exec::interrupted() => Ok(()),
    }
}

/// Campaigns with `proposal`, prints the leader key once elected, and resigns when
/// interrupted.
async fn campaign(global: &GlobalArgs, name: &str, proposal: &str, printer: Printer) -> Result<()> {
    let client = global.client().await?;
    let session = Session::new(&client, DEFAULT_SESSION_TTL).await?;
    let mut election = Election::new(name);
    tokio::select! {
        result = election.campaign(&session, proposal) => result?,
        _ = exec::interrupted() => return give_up(session).await,
    }
    let key = election.key().unwrap_or_default().to_vec();
    let response = client
        .range(RangeRequest {
            key,
            ..Default::default()
        })
        .await?;
    printer.print(&Display::Get(&response))?;
    tokio::select! {
        _ = exec::interrupted() => Ok(election.resign(&client).await?),
        _ = session.expired() => Err(CommandError::error("elect: session expired")),
    }
}
