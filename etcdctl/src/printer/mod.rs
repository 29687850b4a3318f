//! Output formats (`-w simple|json|fields|table|protobuf`). Every command hands its result to
//! [`Printer::print`] as a [`Display`]; each format module decides how (or whether) it shows it,
//! mirroring etcdctl's printer_*.go.

mod fields;
pub mod json;
mod protobuf;
mod simple;

pub(crate) use simple::event_type_name;
mod table;

use std::io::Write;
use std::time::Duration;

use api::etcdserverpb::{
    AlarmResponse, AuthRoleAddResponse, AuthRoleDeleteResponse, AuthRoleGetResponse,
    AuthRoleGrantPermissionResponse, AuthRoleListResponse, AuthRoleRevokePermissionResponse,
    AuthUserAddResponse, AuthUserChangePasswordResponse, AuthUserDeleteResponse,
    AuthUserGetResponse, AuthUserGrantRoleResponse, AuthUserListResponse,
    AuthUserRevokeRoleResponse, DeleteRangeResponse, HashKvResponse, LeaseGrantResponse,
    LeaseKeepAliveResponse, LeaseLeasesResponse, LeaseRevokeResponse, LeaseTimeToLiveResponse,
    MemberAddResponse, MemberListResponse, MemberPromoteResponse, MemberRemoveResponse,
    MemberUpdateResponse, MoveLeaderResponse, PutResponse, RangeResponse, StatusResponse,
    TxnResponse, WatchResponse,
};
// downgrade
use api::etcdserverpb::DowngradeResponse;

use crate::error::{CommandError, Result};

/// The result of `endpoint health` for one endpoint.
#[derive(Debug, Clone)]
pub struct EndpointHealth {
    pub endpoint: String,
    pub healthy: bool,
    pub took: Duration,
    pub error: String,
}

/// The result of `endpoint status` for one endpoint.
#[derive(Debug, Clone)]
pub struct EndpointStatus {
    pub endpoint: String,
    pub status: StatusResponse,
}

/// The result of `endpoint hashkv` for one endpoint.
#[derive(Debug, Clone)]
pub struct EndpointHashKv {
    pub endpoint: String,
    pub hash: HashKvResponse,
}

/// Everything a command can print, with the request facts the simple format repeats.
pub enum Display<'a> {
    Get(&'a RangeResponse),
    Put(&'a PutResponse),
    Delete(&'a DeleteRangeResponse),
    Txn(&'a TxnResponse),
    Watch(&'a WatchResponse),
    LeaseGrant(&'a LeaseGrantResponse),
    LeaseRevoke {
        id: i64,
        response: &'a LeaseRevokeResponse,
    },
    KeepAlive(&'a LeaseKeepAliveResponse),
    TimeToLive {
        response: &'a LeaseTimeToLiveResponse,
        keys: bool,
    },
    Leases(&'a LeaseLeasesResponse),
    MemberAdd(&'a MemberAddResponse),
    MemberRemove {
        id: u64,
        response: &'a MemberRemoveResponse,
    },
    MemberUpdate {
        id: u64,
        response: &'a MemberUpdateResponse,
    },
    MemberPromote {
        id: u64,
        response: &'a MemberPromoteResponse,
    },
    MemberList(&'a MemberListResponse),
    EndpointHealth(&'a [EndpointHealth]),
    EndpointStatus(&'a [EndpointStatus]),
    EndpointHashKv(&'a [EndpointHashKv]),
    Alarm(&'a AlarmResponse),
    MoveLeader {
        leader: u64,
        target: u64,
        response: &'a MoveLeaderResponse,
    },
    RoleAdd {
        role: &'a str,
        response: &'a AuthRoleAddResponse,
    },
    RoleGet {
        role: &'a str,
        response: &'a AuthRoleGetResponse,
    },
    RoleList(&'a AuthRoleListResponse),
    RoleDelete {
        role: &'a str,
        response: &'a AuthRoleDeleteResponse,
    },
    RoleGrantPermission {
        role: &'a str,
        response: &'a AuthRoleGrantPermissionResponse,
    },
    RoleRevokePermission {
        role: &'a str,
        key: &'a [u8],
        range_end: &'a [u8],
        response: &'a AuthRoleRevokePermissionResponse,
    },
    UserAdd {
        user: &'a str,
        response: &'a AuthUserAddResponse,
    },
    UserGet {
        user: &'a str,
        response: &'a AuthUserGetResponse,
    },
    UserList(&'a AuthUserListResponse),
    UserChangePassword(&'a AuthUserChangePasswordResponse),
    UserGrantRole {
        user: &'a str,
        role: &'a str,
        response: &'a AuthUserGrantRoleResponse,
    },
    UserRevokeRole {
        user: &'a str,
        role: &'a str,
        response: &'a AuthUserRevokeRoleResponse,
    },
    UserDelete {
        user: &'a str,
        response: &'a AuthUserDeleteResponse,
    },
    // downgrade
    /// `downgrade validate|enable|cancel` (etcdctl 3.6); `action` is the subcommand's name.
    Downgrade {
        action: &'static str,
        response: &'a DowngradeResponse,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Simple,
    Json,
    Fields,
    Table,
    Protobuf,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Simple => "simple",
            Format::Json => "json",
            Format::Fields => "fields",
            Format::Table => "table",
            Format::Protobuf => "protobuf",
        }
    }
}

/// Prints results in one format.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    pub format: Format,
    /// `--hex`: keys and values as `\xNN` (simple format).
    pub hex: bool,
    /// `get --print-value-only` (simple format).
    pub value_only: bool,
}

impl Printer {
    pub fn print(&self, item: &Display) -> Result<()> {
        let mut stdout = std::io::stdout().lock();
        let bytes = match self.format {
            Format::Simple => simple::render(item, self.hex, self.value_only),
            Format::Json => {
                let mut line = json::render(item)?;
                line.push('\n');
                line.into_bytes()
            }
            Format::Fields => fields::render(item)
                .ok_or_else(|| CommandError::unsupported_format(self.format.name()))?
                .into_bytes(),
            Format::Table => table::render(item)
                .ok_or_else(|| CommandError::unsupported_format(self.format.name()))?
                .into_bytes(),
            Format::Protobuf => protobuf::render(item)?,
        };
        if let Display::EndpointHealth(_) = item {
            if self.format == Format::Simple {
                // etcdctl reports health on stderr in the simple format.
                let mut stderr = std::io::stderr().lock();
                stderr.write_all(&bytes)?;
                return Ok(stderr.flush()?);
            }
        }
        stdout.write_all(&bytes)?;
        Ok(stdout.flush()?)
    }

    pub fn is_simple(&self) -> bool {
        self.format == Format::Simple
    }
}
