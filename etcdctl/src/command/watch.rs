//! watch: print events as they come, optionally running a command per event
//! (`watch key -- cmd args`), or read `watch ...`/`progress` lines from stdin (`-i`).

use api::etcdserverpb::WatchResponse;
use clap::{Args, Parser};
use client::{Client, WatchOptions, WatchStream};

use super::exec;
use crate::error::{CommandError, ExitCode, Result};
use crate::format::go_quote;
use crate::global::GlobalArgs;
use crate::printer::{Display, Printer};

#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    /// [key or prefix] [range_end]
    keys: Vec<String>,
    /// [--] [exec-command arg1 arg2 ...]
    #[arg(last = true)]
    exec: Vec<String>,
    /// Interactive mode
    #[arg(short, long)]
    interactive: bool,
    /// Watch on a prefix if prefix is set
    #[arg(long)]
    prefix: bool,
    /// Revision to start watching
    #[arg(long, default_value_t = 0)]
    rev: i64,
    /// get the previous key-value pair before the event happens
    #[arg(long)]
    prev_kv: bool,
}

/// One line of interactive mode: `watch [options] key [range_end] [-- cmd ...]`.
#[derive(Debug, Parser)]
#[command(no_binary_name = true)]
enum InteractiveLine {
    Watch(WatchArgs),
    Progress,
}

/// `ETCDCTL_WATCH_KEY` and `ETCDCTL_WATCH_RANGE_END`, which stand for the positional arguments.
struct EnvRange {
    key: Option<String>,
    range_end: Option<String>,
}

impl EnvRange {
    fn read() -> Result<EnvRange> {
        let non_empty = |name| std::env::var(name).ok().filter(|v| !v.is_empty());
        let env = EnvRange {
            key: non_empty("ETCDCTL_WATCH_KEY"),
            range_end: non_empty("ETCDCTL_WATCH_RANGE_END"),
        };
        if env.key.is_none() {
            if let Some(range_end) = &env.range_end {
                return Err(CommandError::bad_args(format!(
                    "ETCDCTL_WATCH_KEY is empty but got ETCDCTL_WATCH_RANGE_END={}",
                    go_quote(range_end.as_bytes())
                )));
            }
        }
        Ok(env)
    }
}

impl WatchArgs {
    pub async fn run(self, global: &GlobalArgs) -> Result<()> {
        let env = EnvRange::read()?;
        let client = global.client().await?;
        let printer = global.printer();
        if self.interactive {
            return interactive(&client, printer, &env).await;
        }
        if std::env::args().next_back().as_deref() == Some("--") {
            return Err(CommandError::bad_args(
                "bad number of arguments (found separator --, but no commands)",
            ));
        }
        let (key, options) = self.watch_request(&env)?;
        let stream = client.watch(key, options).await?;
        print_events(stream, printer, &self.exec).await?;
        Err(CommandError::new(
            ExitCode::Interrupted,
            "watch is canceled by the server",
        ))
    }

    /// The key and options to watch, from the arguments or the environment.
    fn watch_request(&self, env: &EnvRange) -> Result<(Vec<u8>, WatchOptions)> {
        let mut keys = self.keys.clone();
        if let Some(key) = &env.key {
            if !keys.is_empty() {
                return Err(CommandError::bad_args(
                    "bad number of arguments (found conflicting environment key)",
                ));
            }
            keys.push(key.clone());
            keys.extend(env.range_end.clone());
        }
        let Some(key) = keys.first() else {
            return Err(CommandError::bad_args("bad number of arguments"));
        };
        let mut range_end = Vec::new();
        if let Some(end) = keys.get(1) {
            if self.prefix {
                return Err(CommandError::bad_args(
                    "`range_end` and `--prefix` are mutually exclusive",
                ));
            }
            range_end = end.as_bytes().to_vec();
        }
        if self.prefix {
            range_end = client::prefix_range_end(key.as_bytes());
        }
        Ok((
            key.as_bytes().to_vec(),
            WatchOptions {
                range_end,
                start_revision: self.rev,
                prev_kv: self.prev_kv,
                ..Default::default()
            },
        ))
    }
}

/// Reads `watch ...` and `progress` lines until stdin ends, watching on one shared stream.
async fn interactive(client: &Client, printer: Printer, env: &EnvRange) -> Result<()> {
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || loop {
        let mut line = String::new();
        match std::io::stdin().read_line(&mut line) {
            Ok(0) => {
                let _ = lines_tx.send(Err("EOF".to_string()));
                return;
            }
            Ok(_) => {
                if lines_tx.send(Ok(line)).is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = lines_tx.send(Err(e.to_string()));
                return;
            }
        }
    });
    let watcher = client.watcher();
    while let Some(line) = lines.recv().await {
        let line = line.map_err(|e| {
            CommandError::new(
                ExitCode::InvalidInput,
                format!("Error reading watch request line: {e}"),
            )
        })?;
        let line = line.trim_end_matches('\n');
        let words = super::txn::argify(line).unwrap_or_default();
        if words.is_empty() {
            eprintln!("Invalid command: {line} (watch and progress supported)");
            continue;
        }
        match InteractiveLine::try_parse_from(&words) {
            Ok(InteractiveLine::Watch(args)) => {
                let (key, options) = match args.watch_request(env) {
                    Ok(request) => request,
                    Err(e) => {
                        eprintln!("Invalid command {line} ({})", e.message);
                        continue;
                    }
                };
                let stream = match watcher.watch(key, options).await {
                    Ok(stream) => stream,
                    Err(e) => {
                        eprintln!("Invalid command {line} ({e})");
                        continue;
                    }
                };
                tokio::spawn(async move {
                    if let Err(e) = print_events(stream, printer, &args.exec).await {
                        // A failure in one watch ends the whole interactive session.
                        if !e.message.is_empty() {
                            eprintln!("Error: {}", e.message);
                        }
                        std::process::exit(e.code as i32);
                    }
                });
            }
            Ok(InteractiveLine::Progress) => watcher.request_progress(),
            Err(_) if words[0] == "watch" => {
                eprintln!("Invalid command {line} (command type expected)");
            }
            Err(_) => eprintln!("Invalid command {line} (only support watch)"),
        }
    }
    Ok(())
}

/// A response without events that only reports the revision the watch has seen.
fn is_progress_notify(response: &WatchResponse) -> bool {
    response.events.is_empty()
        && !response.canceled
        && !response.created
        && response.compact_revision == 0
        && response.header.as_ref().is_some_and(|h| h.revision != 0)
}

/// Prints every response of `stream` (running `exec` per event) until the watch ends.
async fn print_events(mut stream: WatchStream, printer: Printer, exec: &[String]) -> Result<()> {
    while let Some(message) = stream.message().await {
        let response = match message {
            Ok(response) => response,
            Err(e) => {
                eprintln!("watch was canceled ({})", canceled_reason(&e));
                return Ok(());
            }
        };
        if is_progress_notify(&response) {
            println!(
                "progress notify: {}",
                response.header.as_ref().map_or(0, |h| h.revision)
            );
        }
        printer.print(&Display::Watch(&response))?;
        if exec.is_empty() {
            continue;
        }
        let revision = response.header.as_ref().map_or(0, |h| h.revision);
        for event in &response.events {
            let kv = event.kv.clone().unwrap_or_default();
            let event_type = crate::printer::event_type_name(event.r#type);
            let env = [
                ("ETCD_WATCH_REVISION".to_string(), revision.to_string()),
                (
                    "ETCD_WATCH_EVENT_TYPE".to_string(),
                    go_quote(event_type.as_bytes()),
                ),
                ("ETCD_WATCH_KEY".to_string(), go_quote(&kv.key)),
                ("ETCD_WATCH_VALUE".to_string(), go_quote(&kv.value)),
            ];
            if let Err(e) = exec::run(exec, &env).await {
                eprintln!("command {} error ({})", exec::quote_argv(exec), e.message);
                return Err(CommandError::reported(ExitCode::Error));
            }
        }
    }
    Ok(())
}

/// What clientv3's `WatchResponse.Err()` says about a canceled watch.
fn canceled_reason(error: &client::Error) -> String {
    match error {
        client::Error::WatchCanceled {
            compact_revision, ..
        } if *compact_revision != 0 => client::messages::COMPACTED.to_string(),
        client::Error::WatchCanceled { reason, .. } if reason.is_empty() => {
            "etcdserver: mvcc: required revision is a future revision".to_string()
        }
        client::Error::WatchCanceled { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}
