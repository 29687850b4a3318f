//! auth enable | disable, user ..., role ...: the Auth service.

use api::authpb::permission::Type as PermissionType;
use api::authpb::{Permission, UserAddOptions};
use api::etcdserverpb::*;
use clap::{Args, Subcommand};

use crate::error::{CommandError, Result};
use crate::global::{read_line, GlobalArgs};
use crate::printer::Display;

#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Enables authentication
    Enable(Positional),
    /// Disables authentication
    Disable(Positional),
}

#[derive(Debug, Args)]
pub struct Positional {
    args: Vec<String>,
}

impl AuthCommand {
    pub async fn run(self, global: &GlobalArgs) -> Result<()> {
        match self {
            AuthCommand::Enable(Positional { args }) => {
                if !args.is_empty() {
                    return Err(CommandError::bad_args(
                        "auth enable command does not accept any arguments",
                    ));
                }
                let client = global.client().await?;
                loop {
                    match client.auth_enable(AuthEnableRequest {}).await {
                        Ok(_) => break,
                        // etcdctl gives user root its role on the way, then tries again.
                        Err(e) if e.is_message(client::messages::ROOT_ROLE_MISSING) => {
                            client
                                .role_add(AuthRoleAddRequest {
                                    name: "root".into(),
                                })
                                .await?;
                            client
                                .user_grant_role(AuthUserGrantRoleRequest {
                                    user: "root".into(),
                                    role: "root".into(),
                                })
                                .await?;
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                println!("Authentication Enabled");
                Ok(())
            }
            AuthCommand::Disable(Positional { args }) => {
                if !args.is_empty() {
                    return Err(CommandError::bad_args(
                        "auth disable command does not accept any arguments",
                    ));
                }
                global
                    .client()
                    .await?
                    .auth_disable(AuthDisableRequest {})
                    .await?;
                println!("Authentication Disabled");
                Ok(())
            }
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Adds a new user
    Add(UserAddArgs),
    /// Deletes a user
    Delete(Positional),
    /// Gets detailed information of a user
    Get(UserGetArgs),
    /// Lists all users
    List(Positional),
    /// Changes password of user
    Passwd(PasswordArgs),
    /// Grants a role to a user
    GrantRole(Positional),
    /// Revokes a role from a user
    RevokeRole(Positional),
}

#[derive(Debug, Args)]
pub struct PasswordArgs {
    args: Vec<String>,
    /// Read password from stdin instead of interactive terminal
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "true", action = clap::ArgAction::Set)]
    interactive: bool,
}

#[derive(Debug, Args)]
pub struct UserAddArgs {
    #[command(flatten)]
    password: PasswordArgs,
    /// Supply password from the command line flag
    #[arg(long, default_value = "")]
    new_user_password: String,
    /// Create a user without password (CN based auth only)
    #[arg(long)]
    no_password: bool,
}

#[derive(Debug, Args)]
pub struct UserGetArgs {
    args: Vec<String>,
    /// Show permissions of roles granted to the user
    #[arg(long)]
    detail: bool,
}

/// One argument, or the usage error etcdctl gives.
fn single<'a>(args: &'a [String], usage: &str) -> Result<&'a str> {
    match args {
        [arg] => Ok(arg),
        _ => Err(CommandError::bad_args(usage)),
    }
}

/// A password typed twice (interactive) or one line of stdin.
fn read_password(user: &str, interactive: bool) -> Result<String> {
    if !interactive {
        let line = read_line()?;
        return Ok(line
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string());
    }
    eprint!("Password of {user}: ");
    let first = read_line()?;
    if first.is_empty() {
        return Err(CommandError::bad_args("empty password"));
    }
    eprint!("Type password of {user} again for confirmation: ");
    let second = read_line()?;
    if first != second {
        return Err(CommandError::bad_args("given passwords are different"));
    }
    Ok(first)
}

impl UserCommand {
    pub async fn run(self, global: &GlobalArgs) -> Result<()> {
        let printer = global.printer();
        match self {
            UserCommand::Add(args) => {
                let arg = single(
                    &args.password.args,
                    "user add command requires user name as its argument",
                )?;
                let (name, password) = if args.no_password {
                    (arg.to_string(), String::new())
                } else if !args.new_user_password.is_empty() {
                    (arg.to_string(), args.new_user_password.clone())
                } else if let Some((name, password)) = arg.split_once(':') {
                    if name.is_empty() {
                        return Err(CommandError::bad_args("empty user name is not allowed"));
                    }
                    (name.to_string(), password.to_string())
                } else {
                    (
                        arg.to_string(),
                        read_password(arg, args.password.interactive)?,
                    )
                };
                let client = global.client().await?;
                let response = client
                    .user_add(AuthUserAddRequest {
                        name: name.clone(),
                        password,
                        options: Some(UserAddOptions {
                            no_password: args.no_password,
                        }),
                        hashed_password: String::new(),
                    })
                    .await?;
                printer.print(&Display::UserAdd {
                    user: &name,
                    response: &response,
                })
            }
            UserCommand::Delete(Positional { args }) => {
                let name = single(
                    &args,
                    "user delete command requires user name as its argument",
                )?;
                let client = global.client().await?;
                let response = client
                    .user_delete(AuthUserDeleteRequest { name: name.into() })
                    .await?;
                printer.print(&Display::UserDelete {
                    user: name,
                    response: &response,
                })
            }
            UserCommand::Get(UserGetArgs { args, detail }) => {
                let name = single(&args, "user get command requires user name as its argument")?;
                let client = global.client().await?;
                let response = client
                    .user_get(AuthUserGetRequest { name: name.into() })
                    .await?;
                if !detail {
                    return printer.print(&Display::UserGet {
                        user: name,
                        response: &response,
                    });
                }
                println!("User: {name}");
                for role in &response.roles {
                    println!();
                    let role_response = client
                        .role_get(AuthRoleGetRequest { role: role.clone() })
                        .await?;
                    printer.print(&Display::RoleGet {
                        role,
                        response: &role_response,
                    })?;
                }
                Ok(())
            }
            UserCommand::List(Positional { args }) => {
                if !args.is_empty() {
                    return Err(CommandError::bad_args(
                        "user list command requires no arguments",
                    ));
                }
                let client = global.client().await?;
                let response = client.user_list(AuthUserListRequest {}).await?;
                printer.print(&Display::UserList(&response))
            }
            UserCommand::Passwd(PasswordArgs { args, interactive }) => {
                let name = single(
                    &args,
                    "user passwd command requires user name as its argument",
                )?;
                let password = read_password(name, interactive)?;
                let client = global.client().await?;
                let response = client
                    .user_change_password(AuthUserChangePasswordRequest {
                        name: name.into(),
                        password,
                        hashed_password: String::new(),
                    })
                    .await?;
                printer.print(&Display::UserChangePassword(&response))
            }
            UserCommand::GrantRole(Positional { args }) => {
                let [user, role] = args.as_slice() else {
                    return Err(CommandError::bad_args(
                        "user grant command requires user name and role name as its argument",
                    ));
                };
                let client = global.client().await?;
                let response = client
                    .user_grant_role(AuthUserGrantRoleRequest {
                        user: user.clone(),
                        role: role.clone(),
                    })
                    .await?;
                printer.print(&Display::UserGrantRole {
                    user,
                    role,
                    response: &response,
                })
            }
            UserCommand::RevokeRole(Positional { args }) => {
                let [user, role] = args.as_slice() else {
                    return Err(CommandError::bad_args(
                        "user revoke-role requires user name and role name as its argument",
                    ));
                };
                let client = global.client().await?;
                let response = client
                    .user_revoke_role(AuthUserRevokeRoleRequest {
                        name: user.clone(),
                        role: role.clone(),
                    })
                    .await?;
                printer.print(&Display::UserRevokeRole {
                    user,
                    role,
                    response: &response,
                })
            }
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum RoleCommand {
    /// Adds a new role
    Add(Positional),
    /// Deletes a role
    Delete(Positional),
    /// Gets detailed information of a role
    Get(Positional),
    /// Lists all roles
    List(Positional),
    /// Grants a key to a role
    GrantPermission(PermissionArgs),
    /// Revokes a key from a role
    RevokePermission(PermissionArgs),
}

#[derive(Debug, Args)]
pub struct PermissionArgs {
    args: Vec<String>,
    /// grant a prefix permission
    #[arg(long)]
    prefix: bool,
    /// grant a permission of keys that are greater than or equal to the given key using byte compare
    #[arg(long)]
    from_key: bool,
}

impl PermissionArgs {
    /// The `[key, range_end)` of a permission from `key [end]` and the flags.
    fn range(&self, args: &[String]) -> Result<(Vec<u8>, Vec<u8>)> {
        let key = args[0].as_bytes();
        if key.is_empty() {
            if self.prefix && self.from_key {
                return Err(CommandError::bad_args(
                    "--from-key and --prefix flags are mutually exclusive",
                ));
            }
            // An empty key means the whole key space: ["\0", "\0") is open ended on the server.
            let end = if self.prefix || self.from_key {
                vec![0]
            } else {
                Vec::new()
            };
            return Ok((vec![0], end));
        }
        let end = match (args.get(1), self.prefix, self.from_key) {
            (None, true, true) => {
                return Err(CommandError::bad_args(
                    "--from-key and --prefix flags are mutually exclusive",
                ))
            }
            (None, true, false) => client::prefix_range_end(key),
            (None, false, true) => vec![0],
            (None, false, false) => Vec::new(),
            (Some(_), true, _) => {
                return Err(CommandError::bad_args(
                    "unexpected endkey argument with --prefix flag",
                ))
            }
            (Some(_), _, true) => {
                return Err(CommandError::bad_args(
                    "unexpected endkey argument with --from-key flag",
                ))
            }
            (Some(end), false, false) => end.as_bytes().to_vec(),
        };
        Ok((key.to_vec(), end))
    }
}

fn permission_type(name: &str) -> Result<PermissionType> {
    PermissionType::from_str_name(&name.to_uppercase())
        .ok_or_else(|| CommandError::bad_args(format!("invalid permission type: {name}")))
}

impl RoleCommand {
    pub async fn run(self, global: &GlobalArgs) -> Result<()> {
        let printer = global.printer();
        match self {
            RoleCommand::Add(Positional { args }) => {
                let role = single(&args, "role add command requires role name as its argument")?;
                let client = global.client().await?;
                let response = client
                    .role_add(AuthRoleAddRequest { name: role.into() })
                    .await?;
                printer.print(&Display::RoleAdd {
                    role,
                    response: &response,
                })
            }
            RoleCommand::Delete(Positional { args }) => {
                let role = single(
                    &args,
                    "role delete command requires role name as its argument",
                )?;
                let client = global.client().await?;
                let response = client
                    .role_delete(AuthRoleDeleteRequest { role: role.into() })
                    .await?;
                printer.print(&Display::RoleDelete {
                    role,
                    response: &response,
                })
            }
            RoleCommand::Get(Positional { args }) => {
                let role = single(&args, "role get command requires role name as its argument")?;
                let client = global.client().await?;
                let response = client
                    .role_get(AuthRoleGetRequest { role: role.into() })
                    .await?;
                printer.print(&Display::RoleGet {
                    role,
                    response: &response,
                })
            }
            RoleCommand::List(Positional { args }) => {
                if !args.is_empty() {
                    return Err(CommandError::bad_args(
                        "role list command requires no arguments",
                    ));
                }
                let client = global.client().await?;
                let response = client.role_list(AuthRoleListRequest {}).await?;
                printer.print(&Display::RoleList(&response))
            }
            RoleCommand::GrantPermission(flags) => {
                if flags.args.len() < 3 {
                    return Err(CommandError::bad_args(
                        "role grant command requires role name, permission type, and key [endkey] as its argument",
                    ));
                }
                let role = &flags.args[0];
                let perm_type = permission_type(&flags.args[1])?;
                let (key, range_end) = flags.range(&flags.args[2..])?;
                let client = global.client().await?;
                let response = client
                    .role_grant_permission(AuthRoleGrantPermissionRequest {
                        name: role.clone(),
                        perm: Some(Permission {
                            perm_type: perm_type as i32,
                            key,
                            range_end,
                        }),
                    })
                    .await?;
                printer.print(&Display::RoleGrantPermission {
                    role,
                    response: &response,
                })
            }
            RoleCommand::RevokePermission(flags) => {
                if flags.args.len() < 2 {
                    return Err(CommandError::bad_args(
                        "role revoke-permission command requires role name and key [endkey] as its argument",
                    ));
                }
                let role = &flags.args[0];
                let (key, range_end) = flags.range(&flags.args[1..])?;
                let client = global.client().await?;
                let response = client
                    .role_revoke_permission(AuthRoleRevokePermissionRequest {
                        role: role.clone(),
                        key,
                        range_end: range_end.clone(),
                    })
                    .await?;
                printer.print(&Display::RoleRevokePermission {
                    role,
                    key: flags.args[1].as_bytes(),
                    range_end: &range_end,
                    response: &response,
                })
            }
        }
    }
}
