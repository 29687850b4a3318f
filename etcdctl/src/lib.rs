//! etcdctl: the etcd v3 command-line client, compatible with etcd 3.4's `etcdctl`
//! (same commands, flags, `ETCDCTL_*` environment variables, output formats and exit codes).
//!
//! Where the reference etcdctl's output is deterministic ours is byte for byte the same; the
//! tests run both against one etcd and compare. Known, deliberate differences:
//! - flag parsing errors and `--help` are clap's words (the exit code, 1, is etcdctl's);
//! - no zap log lines on stderr, no progress bar in `check perf`;
//! - where etcdctl 3.4 panics (`-w fields` of an alarm list without a header, an unknown
//!   compare operator or a `lease(...)` compare in `txn`) we print zeros or an error;
//! - txn words in single quotes are taken whole (etcdctl 3.4 cuts them short, a bug);
//! - `--discovery-srv` is refused (exit 4): the client has no SRV lookup yet;
//! - `snapshot restore` logs its steps with tracing, not zap's JSON lines, and removes what it
//!   made when it fails (etcdctl 3.4 leaves a half-made data dir);
//! - `make-mirror`, `migrate`, `check datascale` are not built.

mod command;
mod error;
mod format;
mod global;
mod printer;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};

use error::ExitCode;
use global::GlobalArgs;

/// The API version etcdctl reports (`version`).
const API_VERSION: &str = "3.4";
/// The etcdctl release whose behaviour this one follows.
const ETCDCTL_VERSION: &str = "3.4.23";

#[derive(Debug, Parser)]
#[command(
    name = "etcdctl",
    about = "A simple command line client for etcd3.",
    disable_version_flag = true
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: command::Command,
}

/// etcdctl refuses a global flag given both on the command line and in its `ETCDCTL_*`
/// variable, rather than silently preferring one.
fn shadowed_environment_variable(matches: &ArgMatches) -> Option<String> {
    let command = Cli::command();
    let shadowed = command.get_arguments().find_map(|arg| {
        let variable = arg.get_env()?;
        let set = std::env::var_os(variable).is_some_and(|v| !v.is_empty());
        let on_command_line = matches!(
            matches.value_source(arg.get_id().as_str()),
            Some(ValueSource::CommandLine)
        );
        (set && on_command_line).then(|| {
            format!(
                "conflicting environment variable {:?} is shadowed by corresponding command-line flag (either unset environment variable or disable flag)",
                variable.to_string_lossy()
            )
        })
    });
    shadowed
}

/// Parses `args` (with the program name first), runs the command and returns the process
/// exit code, having printed any error as `Error: <message>` on stderr.
pub fn run<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let parsed = Cli::command()
        .try_get_matches_from(args)
        .and_then(|matches| Ok((Cli::from_arg_matches(&matches)?, matches)));
    let cli = match parsed {
        Ok((cli, matches)) => {
            if let Some(message) = shadowed_environment_variable(&matches) {
                eprintln!("Error: {message}");
                return ExitCode::Error as i32;
            }
            cli
        }
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                return 0;
            }
            // Flag errors exit 1 in etcdctl (cobra), like every other command failure, and
            // read `Error: ...` like them.
            eprint!(
                "{}",
                e.render().to_string().replacen("error: ", "Error: ", 1)
            );
            return ExitCode::Error as i32;
        }
    };
    if cli.global.debug {
        let _ = tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_env_filter("debug")
            .try_init();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("Error: {e}");
            return ExitCode::Error as i32;
        }
    };
    let result = runtime.block_on(cli.command.run(&cli.global));
    // Background tasks (keep-alives, watch streams) must not delay the exit.
    runtime.shutdown_background();
    match result {
        Ok(()) => 0,
        Err(e) => {
            if !e.message.is_empty() {
                eprintln!("Error: {}", e.message);
            }
            e.code as i32
        }
    }
}
