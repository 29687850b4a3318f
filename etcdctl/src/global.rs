//! Global flags (every one also read from `ETCDCTL_<FLAG>`), and the client they describe.

use std::io::BufRead as _;
use std::time::Duration;

use clap::Args;
use client::{Client, ClientOptions, TlsOptions};

use crate::error::{CommandError, ExitCode, Result};
use crate::printer::{Format, Printer};

/// A duration flag, as cobra's `DurationVar` reads it: Go's `time.ParseDuration`. A negative
/// duration, which Go accepts, is refused: a timeout or keepalive here is a `Duration`.
fn duration(text: &str) -> std::result::Result<Duration, pkg::flags::ParseDurationError> {
    pkg::flags::parse_go_duration(text)
}

#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// gRPC endpoints
    #[arg(
        long,
        global = true,
        env = "ETCDCTL_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:2379"
    )]
    pub endpoints: Vec<String>,
    /// dial timeout for client connections
    #[arg(long, global = true, env = "ETCDCTL_DIAL_TIMEOUT", value_parser = duration, default_value = "2s")]
    pub dial_timeout: Duration,
    /// timeout for short running command (excluding dial timeout)
    #[arg(long, global = true, env = "ETCDCTL_COMMAND_TIMEOUT", value_parser = duration, default_value = "5s")]
    pub command_timeout: Duration,
    /// keepalive time for client connections
    #[arg(long, global = true, env = "ETCDCTL_KEEPALIVE_TIME", value_parser = duration, default_value = "2s")]
    pub keepalive_time: Duration,
    /// keepalive timeout for client connections
    #[arg(long, global = true, env = "ETCDCTL_KEEPALIVE_TIMEOUT", value_parser = duration, default_value = "6s")]
    pub keepalive_timeout: Duration,
    /// disable transport security for client connections
    #[arg(long, global = true, env = "ETCDCTL_INSECURE_TRANSPORT", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "true", action = clap::ArgAction::Set)]
    pub insecure_transport: bool,
    /// skip server certificate verification
    #[arg(long, global = true, env = "ETCDCTL_INSECURE_SKIP_TLS_VERIFY", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = clap::ArgAction::Set)]
    pub insecure_skip_tls_verify: bool,
    /// accept insecure SRV records describing cluster endpoints
    #[arg(long, global = true, env = "ETCDCTL_INSECURE_DISCOVERY", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "true", action = clap::ArgAction::Set)]
    pub insecure_discovery: bool,
    /// identify secure client using this TLS certificate file
    #[arg(long, global = true, env = "ETCDCTL_CERT")]
    pub cert: Option<String>,
    /// identify secure client using this TLS key file
    #[arg(long, global = true, env = "ETCDCTL_KEY")]
    pub key: Option<String>,
    /// verify certificates of TLS-enabled secure servers using this CA bundle
    #[arg(long, global = true, env = "ETCDCTL_CACERT")]
    pub cacert: Option<String>,
    /// username[:password] for authentication (prompt if password is not supplied)
    #[arg(long, global = true, env = "ETCDCTL_USER")]
    pub user: Option<String>,
    /// password for authentication (if this option is used, --user option shouldn't include password)
    #[arg(long, global = true, env = "ETCDCTL_PASSWORD")]
    pub password: Option<String>,
    /// domain name to query for SRV records describing cluster endpoints
    #[arg(short = 'd', long, global = true, env = "ETCDCTL_DISCOVERY_SRV")]
    pub discovery_srv: Option<String>,
    /// service name to query when using DNS discovery
    #[arg(long, global = true, env = "ETCDCTL_DISCOVERY_SRV_NAME")]
    pub discovery_srv_name: Option<String>,
    /// set the output format (fields, json, protobuf, simple, table)
    #[arg(
        short = 'w',
        long,
        global = true,
        env = "ETCDCTL_WRITE_OUT",
        value_enum,
        default_value = "simple"
    )]
    pub write_out: Format,
    /// print byte strings as hex encoded strings
    #[arg(long, global = true, env = "ETCDCTL_HEX", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = clap::ArgAction::Set)]
    pub hex: bool,
    /// enable client-side debug logging
    #[arg(long, global = true, env = "ETCDCTL_DEBUG", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = clap::ArgAction::Set)]
    pub debug: bool,
}

impl GlobalArgs {
    pub fn printer(&self) -> Printer {
        Printer {
            format: self.write_out,
            hex: self.hex,
            value_only: false,
        }
    }

    /// `(user, password)` from `--user name[:password]` and `--password`, prompting for a
    /// missing password on stdin as etcdctl does.
    fn credentials(&self) -> Result<Option<(String, String)>> {
        let Some(user) = self.user.as_deref() else {
            return Ok(None);
        };
        if user.is_empty() {
            return Err(CommandError::new(
                ExitCode::BadArgs,
                "empty string is passed to --user option",
            ));
        }
        if let Some(password) = &self.password {
            return Ok(Some((user.to_string(), password.clone())));
        }
        if let Some((name, password)) = user.split_once(':') {
            return Ok(Some((name.to_string(), password.to_string())));
        }
        eprint!("Password: ");
        let password = read_line()?;
        Ok(Some((user.to_string(), password)))
    }

    /// TLS as etcdctl 3.4 sets it up (ctlv3/command/global.go `newClientCfg`): `--cert`, `--key` and
    /// `--cacert` make a TLS configuration (their files are read even for http endpoints), and so does
    /// `--insecure-transport=false` alone; `--insecure-skip-tls-verify` applies only to such a
    /// configuration. `https://` endpoints without one still use TLS, verified against the system's CAs.
    pub fn tls_options(&self) -> Result<TlsOptions> {
        let file = |value: &Option<String>, flag: &str| match value.as_deref() {
            Some("") => Err(CommandError::new(
                ExitCode::BadArgs,
                format!("empty string is passed to --{flag} option"),
            )),
            other => Ok(other.map(Into::into)),
        };
        let tls = TlsOptions {
            cert_file: file(&self.cert, "cert")?,
            key_file: file(&self.key, "key")?,
            ca_file: file(&self.cacert, "cacert")?,
            insecure_skip_verify: false,
        };
        let configured = !tls.is_empty() || !self.insecure_transport;
        Ok(TlsOptions {
            insecure_skip_verify: configured && self.insecure_skip_tls_verify,
            ..tls
        })
    }

    pub fn client_options(&self) -> Result<ClientOptions> {
        if self.discovery_srv.is_some() {
            return Err(CommandError::new(
                ExitCode::BadFeature,
                "DNS SRV discovery (--discovery-srv) is not supported by this etcdctl yet",
            ));
        }
        // TLS flags are checked before the password is asked for, as etcdctl does.
        let options = self.client_options_without_auth()?;
        Ok(ClientOptions {
            credentials: self.credentials()?,
            ..options
        })
    }

    /// Client options without credentials (for requests that need no auth, like MemberList).
    pub fn client_options_without_auth(&self) -> Result<ClientOptions> {
        Ok(ClientOptions {
            dial_timeout: self.dial_timeout,
            request_timeout: self.command_timeout,
            // grpc-go raises client pings below 10s to 10s; do the same.
            keep_alive_interval: self.keepalive_time.max(Duration::from_secs(10)),
            keep_alive_timeout: self.keepalive_timeout,
            credentials: None,
            tls: self.tls_options()?,
            ..ClientOptions::default()
        })
    }

    /// A client for `--endpoints`, authenticated when `--user` is given.
    pub async fn client(&self) -> Result<Client> {
        self.client_for(&self.endpoints).await
    }

    pub async fn client_for(&self, endpoints: &[String]) -> Result<Client> {
        let options = self.client_options()?;
        Client::connect(endpoints, options)
            .await
            .map_err(|e| match e {
                // Unusable TLS files are bad arguments to etcdctl 3.4, not a failed connection.
                client::Error::Tls(_) => CommandError::from(e),
                e => CommandError::new(ExitCode::BadConnection, e.to_string()),
            })
    }
}

/// One line from stdin without its line ending.
pub fn read_line() -> Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}
