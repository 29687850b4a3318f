//! Running the command given after `watch ... --`, `lock <name> ...`, and waiting for the
//! signals that end the long-running commands.

use tokio::signal::unix::{signal, SignalKind};

use crate::error::{CommandError, Result};
use crate::format::go_quote;

/// Runs `argv` with stdout and stderr inherited and `env` added; fails on a non-zero exit.
pub(crate) async fn run(argv: &[String], env: &[(String, String)]) -> Result<()> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| CommandError::bad_args("no command to execute"))?;
    let status = tokio::process::Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .status()
        .await
        .map_err(|e| CommandError::error(format!("exec: {}: {e}", go_quote(program.as_bytes()))))?;
    if status.success() {
        return Ok(());
    }
    Err(CommandError::error(match status.code() {
        Some(code) => format!("exit status {code}"),
        None => "signal: killed".to_string(),
    }))
}

/// Go's `%q` of a `[]string`: `["echo" "hi"]`.
pub(crate) fn quote_argv(argv: &[String]) -> String {
    let quoted: Vec<String> = argv.iter().map(|a| go_quote(a.as_bytes())).collect();
    format!("[{}]", quoted.join(" "))
}

/// Resolves on SIGINT or SIGTERM, the signals after which etcdctl releases what it holds.
pub(crate) async fn interrupted() {
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
}
