//! make-mirror: copies a prefix of this cluster into a destination cluster, then follows it
//! (etcdctl's ctlv3 `make_mirror_command.go` and clientv3's `mirror.Syncer`): a paginated
//! range of the prefix at one revision, a put per key, then a watch from the next revision
//! whose events are replayed in transactions, one per source revision. The number of keys
//! mirrored so far is printed every 30 seconds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use api::etcdserverpb::{
    DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest, WatchResponse,
};
use api::mvccpb::event::EventType;
use clap::Args;
use client::{prefix_range_end, txn, Client, WatchOptions};

use crate::error::{CommandError, ExitCode, Result};
use crate::global::{read_line, GlobalArgs};

/// Keys per range of the initial copy (clientv3 mirror's `batchLimit`).
const SYNC_BATCH: i64 = 1000;
/// How often the count of mirrored keys is printed.
const PROGRESS_EVERY: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Args)]
pub struct MakeMirrorArgs {
    /// <destination>
    destination: Vec<String>,
    /// Key-value prefix to mirror
    #[arg(long, default_value = "")]
    prefix: String,
    /// destination prefix to mirror a prefix to a different prefix in the destination cluster
    #[arg(long, default_value = "")]
    dest_prefix: String,
    /// mirror key-values to the root of the destination cluster
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = clap::ArgAction::Set)]
    no_dest_prefix: bool,
    // etcdctl 3.6's flag; 3.4 commits each source revision in one transaction, however large.
    /// Maximum number of operations permitted in a transaction during syncing updates.
    #[arg(long, default_value_t = 128)]
    max_txn_ops: u64,
    /// Verify certificates of TLS enabled secure servers using this CA bundle
    #[arg(long)]
    dest_cacert: Option<String>,
    /// Identify secure client using this TLS certificate file for the destination cluster
    #[arg(long)]
    dest_cert: Option<String>,
    /// Identify secure client using this TLS key file
    #[arg(long)]
    dest_key: Option<String>,
    /// Disable transport security for client connections
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "true", action = clap::ArgAction::Set)]
    dest_insecure_transport: bool,
    /// Destination username[:password] for authentication (prompt if password is not supplied)
    #[arg(long)]
    dest_user: Option<String>,
    /// Destination password for authentication (if this option is used, --user option shouldn't include password)
    #[arg(long)]
    dest_password: Option<String>,
}

impl MakeMirrorArgs {
    pub async fn run(self, global: &GlobalArgs) -> Result<()> {
        let [destination] = self.destination.as_slice() else {
            return Err(CommandError::bad_args(
                "make-mirror takes one destination argument",
            ));
        };
        let dest = self.destination_client(global, destination).await?;
        let source = global.client().await?;
        let total = Arc::new(AtomicU64::new(0));
        let printer = tokio::spawn(print_progress(total.clone()));
        let result = self.mirror(&source, &dest, &total).await;
        printer.abort();
        result
    }

    /// The destination's client: the global dial and keepalive settings with the `--dest-*`
    /// TLS and credentials (no `--insecure-skip-tls-verify`, as etcdctl).
    async fn destination_client(&self, global: &GlobalArgs, destination: &str) -> Result<Client> {
        let password = match (&self.dest_user, &self.dest_password) {
            (Some(user), None) if !user.contains(':') => {
                eprint!("Destination Password: ");
                Some(read_line()?)
            }
            (_, password) => password.clone(),
        };
        let dest_global = GlobalArgs {
            endpoints: vec![destination.to_string()],
            cert: self.dest_cert.clone(),
            key: self.dest_key.clone(),
            cacert: self.dest_cacert.clone(),
            insecure_transport: self.dest_insecure_transport,
            insecure_skip_tls_verify: false,
            user: self.dest_user.clone(),
            password,
            ..global.clone()
        };
        dest_global.client().await
    }

    /// `key` with the source prefix replaced by the destination's.
    fn dest_key(&self, key: &[u8]) -> Vec<u8> {
        let dest_prefix = match (self.no_dest_prefix, self.dest_prefix.is_empty()) {
            (true, _) => "",
            (false, true) => &self.prefix,
            (false, false) => &self.dest_prefix,
        };
        let rest = key.strip_prefix(self.prefix.as_bytes()).unwrap_or(key);
        let mut out = Vec::with_capacity(dest_prefix.len() + rest.len());
        out.extend_from_slice(dest_prefix.as_bytes());
        out.extend_from_slice(rest);
        out
    }

    async fn mirror(&self, source: &Client, dest: &Client, total: &AtomicU64) -> Result<()> {
        // The revision the copy is taken at and the watch continues from (the syncer's `Get`).
        let revision = source
            .range(RangeRequest {
                key: b"foo".to_vec(),
                ..Default::default()
            })
            .await?
            .header
            .map_or(0, |h| h.revision);
        if self.no_dest_prefix && !self.dest_prefix.is_empty() {
            return Err(CommandError::new(
                ExitCode::BadArgs,
                "`--dest-prefix` and `--no-dest-prefix` cannot be set at the same time, choose one",
            ));
        }
        let (mut key, range_end) = if self.prefix.is_empty() {
            (vec![0], vec![0])
        } else {
            (
                self.prefix.as_bytes().to_vec(),
                prefix_range_end(self.prefix.as_bytes()),
            )
        };
        loop {
            let page = source
                .range(RangeRequest {
                    key,
                    range_end: range_end.clone(),
                    limit: SYNC_BATCH,
                    revision,
                    ..Default::default()
                })
                .await?;
            for kv in &page.kvs {
                dest.put_kv(self.dest_key(&kv.key), kv.value.clone())
                    .await?;
                total.fetch_add(1, Ordering::Relaxed);
            }
            match page.kvs.last() {
                Some(last) if page.more => {
                    key = last.key.clone();
                    key.push(0);
                }
                _ => break,
            }
        }

        let (watch_key, watch_end) = if self.prefix.is_empty() {
            (vec![0], vec![0])
        } else {
            (self.prefix.as_bytes().to_vec(), range_end)
        };
        let options = WatchOptions {
            range_end: watch_end,
            start_revision: revision + 1,
            ..WatchOptions::default()
        };
        let mut watch = source.watch(watch_key, options).await?;
        while let Some(response) = watch.message().await {
            self.replay(dest, response?, total).await?;
        }
        Err(CommandError::error("the watch on the source cluster ended"))
    }

    /// Applies one watch response's events to the destination: one transaction per source
    /// revision, split after `--max-txn-ops` operations.
    async fn replay(
        &self,
        dest: &Client,
        response: WatchResponse,
        total: &AtomicU64,
    ) -> Result<()> {
        if response.compact_revision != 0 {
            return Err(CommandError::error(client::messages::COMPACTED));
        }
        let max_ops = usize::try_from(self.max_txn_ops)
            .unwrap_or(usize::MAX)
            .max(1);
        let mut ops: Vec<RequestOp> = Vec::new();
        let mut last_revision = 0;
        for event in response.events {
            let Some(kv) = event.kv else { continue };
            if (last_revision != 0 && kv.mod_revision > last_revision) || ops.len() >= max_ops {
                commit(dest, std::mem::take(&mut ops)).await?;
            }
            last_revision = kv.mod_revision;
            let key = self.dest_key(&kv.key);
            ops.push(if event.r#type == EventType::Delete as i32 {
                txn::delete(DeleteRangeRequest {
                    key,
                    ..Default::default()
                })
            } else {
                txn::put(PutRequest {
                    key,
                    value: kv.value,
                    ..Default::default()
                })
            });
            total.fetch_add(1, Ordering::Relaxed);
        }
        if !ops.is_empty() {
            commit(dest, ops).await?;
        }
        Ok(())
    }
}

async fn commit(dest: &Client, ops: Vec<RequestOp>) -> Result<()> {
    dest.txn(TxnRequest {
        success: ops,
        ..Default::default()
    })
    .await?;
    Ok(())
}

async fn print_progress(total: Arc<AtomicU64>) {
    let mut ticks =
        tokio::time::interval_at(tokio::time::Instant::now() + PROGRESS_EVERY, PROGRESS_EVERY);
    loop {
        ticks.tick().await;
        println!("{}", total.load(Ordering::Relaxed));
    }
}
