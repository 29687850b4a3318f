//! One module per command group; [`Command`] is the clap tree of every etcdctl command.

mod auth;
mod check;
// downgrade
mod downgrade;
mod endpoint;
mod exec;
mod kv;
mod lease;
mod lock;
mod maintenance;
mod member;
// migrate
mod mirror;
mod snapshot;
mod txn;
mod watch;

use clap::Subcommand;

use crate::error::Result;
use crate::global::GlobalArgs;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Gets the key or a range of keys
    Get(kv::GetArgs),
    /// Puts the given key into the store
    Put(kv::PutArgs),
    /// Removes the specified key or range of keys [key, range_end)
    Del(kv::DelArgs),
    /// Txn processes all the requests in one transaction
    Txn(txn::TxnArgs),
    /// Compacts the event history in etcd
    Compaction(kv::CompactionArgs),
    /// Watches events stream on keys or prefixes
    Watch(watch::WatchArgs),
    /// Lease related commands
    #[command(subcommand)]
    Lease(lease::LeaseCommand),
    /// Membership related commands
    #[command(subcommand)]
    Member(member::MemberCommand),
    /// Endpoint related commands
    #[command(subcommand)]
    Endpoint(endpoint::EndpointCommand),
    /// Manages etcd node snapshots
    #[command(subcommand)]
    Snapshot(snapshot::SnapshotCommand),
    /// Alarm related commands
    #[command(subcommand)]
    Alarm(maintenance::AlarmCommand),
    /// Defragments the storage of the etcd members with given endpoints
    Defrag(maintenance::DefragArgs),
    /// Transfers leadership to another etcd cluster member.
    MoveLeader(maintenance::MoveLeaderArgs),
    /// Enable or disable authentication
    #[command(subcommand)]
    Auth(auth::AuthCommand),
    /// User related commands
    #[command(subcommand)]
    User(auth::UserCommand),
    /// Role related commands
    #[command(subcommand)]
    Role(auth::RoleCommand),
    /// Acquires a named lock
    Lock(lock::LockArgs),
    /// Observes and participates in leader election
    Elect(lock::ElectArgs),
    /// commands for checking properties of the etcd cluster
    #[command(subcommand)]
    Check(check::CheckCommand),
    /// Downgrade related commands (etcdctl 3.6)
    #[command(subcommand)]
    Downgrade(downgrade::DowngradeCommand),
    /// Prints the version of etcdctl
    Version,
    // migrate
    /// Makes a mirror at the destination etcd cluster
    MakeMirror(mirror::MakeMirrorArgs),
}

impl Command {
    pub async fn run(self, global: &GlobalArgs) -> Result<()> {
        match self {
            Command::Get(args) => args.run(global).await,
            Command::Put(args) => args.run(global).await,
            Command::Del(args) => args.run(global).await,
            Command::Txn(args) => args.run(global).await,
            Command::Compaction(args) => args.run(global).await,
            Command::Watch(args) => args.run(global).await,
            Command::Lease(command) => command.run(global).await,
            Command::Member(command) => command.run(global).await,
            Command::Endpoint(command) => command.run(global).await,
            Command::Snapshot(command) => command.run(global).await,
            Command::Alarm(command) => command.run(global).await,
            Command::Defrag(args) => args.run(global).await,
            Command::MoveLeader(args) => args.run(global).await,
            Command::Auth(command) => command.run(global).await,
            Command::User(command) => command.run(global).await,
            Command::Role(command) => command.run(global).await,
            Command::Lock(args) => args.run(global).await,
            Command::Elect(args) => args.run(global).await,
            Command::Check(command) => command.run(global).await,
            // migrate
            Command::MakeMirror(args) => args.run(global).await,
            Command::Downgrade(command) => command.run(global).await,
            Command::Version => {
                println!("etcdctl version: {}", crate::ETCDCTL_VERSION);
                println!("API version: {}", crate::API_VERSION);
                Ok(())
            }
        }
    }
}
