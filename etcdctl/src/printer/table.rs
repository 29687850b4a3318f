//! `-w table`: the ASCII tables of olekukonko/tablewriter as etcdctl configures it (upper-case
//! centered headers, right-aligned cells), for member and endpoint results only.

use api::etcdserverpb::MemberListResponse;

use super::{Display, EndpointHashKv, EndpointHealth, EndpointStatus};
use crate::format::{go_duration, humanize_bytes};
use pkg::table::Table;

pub(super) fn member_rows(r: &MemberListResponse) -> Vec<Vec<String>> {
    r.members
        .iter()
        .map(|m| {
            vec![
                format!("{:x}", m.id),
                if m.name.is_empty() {
                    "unstarted"
                } else {
                    "started"
                }
                .to_string(),
                m.name.clone(),
                m.peer_ur_ls.join(","),
                m.client_ur_ls.join(","),
                m.is_learner.to_string(),
            ]
        })
        .collect()
}

pub(super) fn status_rows(list: &[EndpointStatus]) -> Vec<Vec<String>> {
    list.iter()
        .map(|ep| {
            let s = &ep.status;
            let member_id = s.header.as_ref().map_or(0, |h| h.member_id);
            vec![
                ep.endpoint.clone(),
                format!("{member_id:x}"),
                s.version.clone(),
                humanize_bytes(s.db_size.max(0) as u64),
                (s.leader == member_id).to_string(),
                s.is_learner.to_string(),
                s.raft_term.to_string(),
                s.raft_index.to_string(),
                s.raft_applied_index.to_string(),
                s.errors.join(", "),
            ]
        })
        .collect()
}

pub(super) fn hash_rows(list: &[EndpointHashKv]) -> Vec<Vec<String>> {
    list.iter()
        .map(|ep| vec![ep.endpoint.clone(), ep.hash.hash.to_string()])
        .collect()
}

fn health_rows(list: &[EndpointHealth]) -> Vec<Vec<String>> {
    list.iter()
        .map(|h| {
            vec![
                h.endpoint.clone(),
                h.healthy.to_string(),
                go_duration(h.took),
                h.error.clone(),
            ]
        })
        .collect()
}

pub(super) fn render(item: &Display) -> Option<String> {
    let (header, rows): (&[&str], _) = match item {
        Display::MemberList(r) => (
            &[
                "ID",
                "Status",
                "Name",
                "Peer Addrs",
                "Client Addrs",
                "Is Learner",
            ],
            member_rows(r),
        ),
        Display::EndpointStatus(list) => (
            &[
                "endpoint",
                "ID",
                "version",
                "db size",
                "is leader",
                "is learner",
                "raft term",
                "raft index",
                "raft applied index",
                "errors",
            ],
            status_rows(list),
        ),
        Display::EndpointHealth(list) => {
            (&["endpoint", "health", "took", "error"], health_rows(list))
        }
        Display::EndpointHashKv(list) => (&["endpoint", "hash"], hash_rows(list)),
        _ => return None,
    };
    Some(Table::new(header, rows).render())
}
