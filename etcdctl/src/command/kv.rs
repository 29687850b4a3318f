//! get, put, del and compaction.

use std::io::Read as _;

use api::etcdserverpb::range_request::{SortOrder, SortTarget};
use api::etcdserverpb::{CompactionRequest, DeleteRangeRequest, PutRequest, RangeRequest};
use clap::Args;

use crate::error::{CommandError, ExitCode, Result};
use crate::format::{parse_hex_i64, parse_i64};
use crate::global::GlobalArgs;
use crate::printer::Display;

const PREFIX_AND_FROM_KEY: &str =
    "`--prefix` and `--from-key` cannot be set at the same time, choose one";
const TOO_MANY_WITH_PREFIX: &str =
    "too many arguments, only accept one argument when `--prefix` or `--from-key` is set";

/// How a command's `key [range_end]` arguments and `--prefix`/`--from-key` select keys.
pub(crate) struct KeyRange {
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
}

impl KeyRange {
    pub(crate) fn from_args(args: &[String], prefix: bool, from_key: bool) -> Result<KeyRange> {
        if prefix && from_key {
            return Err(CommandError::bad_args(PREFIX_AND_FROM_KEY));
        }
        let mut key = args[0].as_bytes().to_vec();
        let mut range_end = Vec::new();
        if let Some(end) = args.get(1) {
            if prefix || from_key {
                return Err(CommandError::bad_args(TOO_MANY_WITH_PREFIX));
            }
            range_end = end.as_bytes().to_vec();
        }
        if prefix {
            if key.is_empty() {
                key = vec![0];
                range_end = client::FROM_KEY_RANGE_END.to_vec();
            } else {
                range_end = client::prefix_range_end(&key);
            }
        }
        if from_key {
            if key.is_empty() {
                key = vec![0];
            }
            range_end = client::FROM_KEY_RANGE_END.to_vec();
        }
        Ok(KeyRange { key, range_end })
    }
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// <key> [range_end]
    args: Vec<String>,
    /// Linearizable(l) or Serializable(s)
    #[arg(long, default_value = "l")]
    consistency: String,
    /// Order of results; ASCEND or DESCEND (ASCEND by default)
    #[arg(long, default_value = "")]
    order: String,
    /// Sort target; CREATE, KEY, MODIFY, VALUE, or VERSION
    #[arg(long, default_value = "")]
    sort_by: String,
    /// Maximum number of results
    #[arg(long, default_value_t = 0)]
    limit: i64,
    /// Get keys with matching prefix
    #[arg(long)]
    prefix: bool,
    /// Get keys that are greater than or equal to the given key using byte compare
    #[arg(long)]
    from_key: bool,
    /// Specify the kv revision
    #[arg(long, default_value_t = 0)]
    rev: i64,
    /// Get only the keys
    #[arg(long)]
    keys_only: bool,
    /// Only write values when using the "simple" output format
    #[arg(long)]
    print_value_only: bool,
}

impl GetArgs {
    /// The Range request etcdctl sends for these flags.
    pub(crate) fn request(&self) -> Result<RangeRequest> {
        if self.args.is_empty() {
            return Err(CommandError::bad_args(
                "get command needs one argument as key and an optional argument as range_end",
            ));
        }
        let serializable = match self.consistency.as_str() {
            "s" => true,
            "l" => false,
            other => {
                return Err(CommandError::new(
                    ExitCode::BadFeature,
                    format!(
                        "unknown consistency flag {}",
                        crate::format::go_quote(other.as_bytes())
                    ),
                ))
            }
        };
        let range = KeyRange::from_args(&self.args, self.prefix, self.from_key)?;
        let mut sort_order = match self.order.to_uppercase().as_str() {
            "ASCEND" => SortOrder::Ascend,
            "DESCEND" => SortOrder::Descend,
            "" => SortOrder::None,
            _ => {
                return Err(CommandError::new(
                    ExitCode::BadFeature,
                    format!("bad sort order {}", self.order),
                ))
            }
        };
        let sort_target = match self.sort_by.to_uppercase().as_str() {
            "CREATE" => SortTarget::Create,
            "KEY" | "" => SortTarget::Key,
            "MODIFY" => SortTarget::Mod,
            "VALUE" => SortTarget::Value,
            "VERSION" => SortTarget::Version,
            _ => {
                return Err(CommandError::new(
                    ExitCode::BadFeature,
                    format!("bad sort target {}", self.sort_by),
                ))
            }
        };
        // The server already returns keys in ascending order; asking for it makes it sort.
        if sort_target == SortTarget::Key && sort_order == SortOrder::Ascend {
            sort_order = SortOrder::None;
        }
        Ok(RangeRequest {
            key: range.key,
            range_end: range.range_end,
            limit: self.limit,
            revision: self.rev.max(0),
            sort_order: sort_order as i32,
            sort_target: sort_target as i32,
            serializable,
            keys_only: self.keys_only,
            ..Default::default()
        })
    }

    pub async fn run(self, global: &GlobalArgs) -> Result<()> {
        let request = self.request()?;
        let mut printer = global.printer();
        if self.print_value_only {
            if !printer.is_simple() {
                return Err(CommandError::bad_args(
                    "print-value-only is only for `--write-out=simple`",
                ));
            }
            printer.value_only = true;
        }
        let client = global.client().await?;
        let response = client.range(request).await?;
        printer.print(&Display::Get(&response))
    }
}

#[derive(Debug, Args)]
pub struct PutArgs {
    /// <key> [value]; the value is read from stdin when omitted
    args: Vec<String>,
    /// lease ID (in hexadecimal) to attach to the key
    #[arg(long, default_value = "0")]
    lease: String,
    /// return the previous key-value pair before modification
    #[arg(long)]
    prev_kv: bool,
    /// updates the key using its current value
    #[arg(long)]
    ignore_value: bool,
    /// updates the key using its current lease
    #[arg(long)]
    ignore_lease: bool,
}

impl PutArgs {
    pub(crate) fn request(&self) -> Result<PutRequest> {
        const USAGE: &str = "put command needs 1 argument and input from stdin or 2 arguments";
        let Some(key) = self.args.first() else {
            return Err(CommandError::bad_args(USAGE));
        };
        if self.ignore_value && self.args.len() > 1 {
            return Err(CommandError::bad_args(
                "put command needs only 1 argument when 'ignore-value' is set",
            ));
        }
        let value = if self.ignore_value {
            Vec::new()
        } else if let Some(value) = self.args.get(1) {
            value.as_bytes().to_vec()
        } else {
            let mut value = Vec::new();
            std::io::stdin().read_to_end(&mut value)?;
            if value.is_empty() {
                return Err(CommandError::bad_args(USAGE));
            }
            value
        };
        let lease = parse_hex_i64(&self.lease).map_err(|e| {
            CommandError::bad_args(format!("bad lease ID ({e}), expecting ID in Hex"))
        })?;
        Ok(PutRequest {
            key: key.as_bytes().to_vec(),
            value,
            lease,
            prev_kv: self.prev_kv,
            ignore_value: self.ignore_value,
            ignore_lease: self.ignore_lease,
        })
    }

    pub async fn run(self, global: &GlobalArgs) -> Result<()> {
        let request = self.request()?;
        let client = global.client().await?;
        let response = client.put(request).await?;
        global.printer().print(&Display::Put(&response))
    }
}

#[derive(Debug, Args)]
pub struct DelArgs {
    /// <key> [range_end]
    args: Vec<String>,
    /// delete keys with matching prefix
    #[arg(long)]
    prefix: bool,
    /// return deleted key-value pairs
    #[arg(long)]
    prev_kv: bool,
    /// delete keys that are greater than or equal to the given key using byte compare
    #[arg(long)]
    from_key: bool,
}

impl DelArgs {
    pub(crate) fn request(&self) -> Result<DeleteRangeRequest> {
        if self.args.is_empty() || self.args.len() > 2 {
            return Err(CommandError::bad_args(
                "del command needs one argument as key and an optional argument as range_end",
            ));
        }
        let range = KeyRange::from_args(&self.args, self.prefix, self.from_key)?;
        Ok(DeleteRangeRequest {
            key: range.key,
            range_end: range.range_end,
            prev_kv: self.prev_kv,
        })
    }

    pub async fn run(self, global: &GlobalArgs) -> Result<()> {
        let request = self.request()?;
        let client = global.client().await?;
        let response = client.delete_range(request).await?;
        global.printer().print(&Display::Delete(&response))
    }
}

#[derive(Debug, Args)]
pub struct CompactionArgs {
    /// <revision>
    args: Vec<String>,
    /// Physical compaction: wait until the compacted entries are removed from the backend
    #[arg(long)]
    physical: bool,
}

impl CompactionArgs {
    pub async fn run(self, global: &GlobalArgs) -> Result<()> {
        let [revision] = self.args.as_slice() else {
            return Err(CommandError::bad_args(
                "compaction command needs 1 argument",
            ));
        };
        let revision = parse_i64(revision).map_err(CommandError::error)?;
        let client = global.client().await?;
        client
            .compact(CompactionRequest {
                revision,
                physical: self.physical,
            })
            .await?;
        println!("compacted revision {revision}");
        Ok(())
    }
}
