//! `ETCD_*` environment variables, as etcd's `flags.SetFlagsFromEnv`: each sets its flag unless
//! the flag is on the command line.

use std::ffi::OsString;

/// `ETCD_` + the flag's name upper-cased with `-` as `_`, as etcd's `flags.FlagToEnv`.
fn env_name(long: &str) -> String {
    format!("ETCD_{}", long.to_uppercase().replace('-', "_"))
}

/// The flags of `command` that `env` (name → value) sets, as `--flag=value` arguments to put
/// before the command line, where a flag given again overrides them.
pub(super) fn flags_from_env(
    command: &clap::Command,
    env: impl Fn(&str) -> Option<String>,
) -> Vec<OsString> {
    let mut args = Vec::new();
    for arg in command.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if long == "version" || long == "help" {
            continue;
        }
        // etcd ignores a variable set to the empty string.
        if let Some(value) = env(&env_name(long)).filter(|v| !v.is_empty()) {
            args.push(OsString::from(format!("--{long}={value}")));
        }
    }
    args
}
