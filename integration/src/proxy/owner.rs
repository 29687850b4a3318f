//! Which member's process owns a socket, read from `/proc`.

use std::fs;
use std::net::SocketAddr;

/// The member whose process owns the dialing end of a connection from `dialer` to `listen`: its socket's
/// inode from `/proc/net/tcp`, then the pid that holds that socket among `pids` (pid, member).
pub(super) fn owner_of(
    dialer: SocketAddr,
    listen: SocketAddr,
    pids: &[(u32, usize)],
) -> Option<usize> {
    let table = fs::read_to_string("/proc/net/tcp").ok()?;
    let inode = socket_inode(&table, dialer, listen)?;
    let target = format!("socket:[{inode}]");
    pids.iter()
        .find(|&&(pid, _)| holds(pid, &target))
        .map(|&(_, member)| member)
}

/// The inode of the IPv4 socket bound to `local` and connected to `remote`, from `/proc/net/tcp`'s text.
fn socket_inode(table: &str, local: SocketAddr, remote: SocketAddr) -> Option<u64> {
    let (local, remote) = (proc_addr(local)?, proc_addr(remote)?);
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) == Some(&local.as_str()) && fields.get(2) == Some(&remote.as_str()) {
            fields.get(9)?.parse().ok()
        } else {
            None
        }
    })
}

/// An address as `/proc/net/tcp` prints it: the IPv4 address as the hex of its in-memory u32, the port
/// in hex.
fn proc_addr(addr: SocketAddr) -> Option<String> {
    let SocketAddr::V4(v4) = addr else {
        return None;
    };
    Some(format!(
        "{:08X}:{:04X}",
        u32::from_ne_bytes(v4.ip().octets()),
        v4.port()
    ))
}

/// Whether process `pid` has a file descriptor whose link reads `target`.
fn holds(pid: u32, target: &str) -> bool {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten()
        .any(|fd| fs::read_link(fd.path()).is_ok_and(|link| link.as_os_str() == target))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener as StdListener, TcpStream as StdStream};

    #[test]
    fn the_owner_of_a_socket_is_found_through_proc() {
        let listener = StdListener::bind("127.0.0.1:0").unwrap();
        let listen = listener.local_addr().unwrap();
        let stream = StdStream::connect(listen).unwrap();
        let dialer = stream.local_addr().unwrap();
        let me = std::process::id();
        assert_eq!(owner_of(dialer, listen, &[(me, 4)]), Some(4));
        assert_eq!(owner_of(dialer, listen, &[]), None);
        assert_eq!(
            proc_addr("127.0.0.1:20000".parse().unwrap()).unwrap(),
            "0100007F:4E20"
        );
    }
}
