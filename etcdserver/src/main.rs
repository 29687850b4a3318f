//! The `etcd` binary: etcd's flags, environment and config file, then the server.

use std::io::IsTerminal;

use etcdserver::config::{ConfigError, ServerConfig};

fn main() {
    let config = match ServerConfig::from_args(std::env::args_os()) {
        Ok(config) => config,
        // Help, version and flag syntax errors print as clap words them, exiting 0 or 2.
        Err(ConfigError::Usage(e)) => e.exit(),
        Err(e) => {
            eprintln!("etcd: {e}");
            std::process::exit(e.exit_code());
        }
    };
    init_logging(&config);
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    if let Err(e) = etcdserver::run(config) {
        tracing::error!(error = %e, "etcd stopped");
        std::process::exit(1);
    }
}

/// Logs to stderr at `--log-level`; `RUST_LOG`, when set, overrides it (per module levels).
fn init_logging(config: &ServerConfig) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(config.log_level.as_str()));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
