//! `--initial-cluster` and `--initial-cluster-state`: the members a new cluster starts with,
//! and etcd's checks of them against this member's advertised peer URLs.

use std::collections::BTreeSet;

use super::urls::{parse_url, UrlError};

/// `--initial-cluster-state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterState {
    /// Bootstrap a new cluster from `--initial-cluster`.
    New,
    /// Join a running cluster (after `member add`).
    Existing,
}

/// The initial cluster: member names in the order given, each with its sorted peer URLs.
pub(super) type InitialCluster = Vec<(String, Vec<String>)>;

/// Why etcd refuses the initial cluster when it sets the member up; the text is etcd's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    #[error("error setting up initial cluster: {0}")]
    Url(#[source] UrlError),
    #[error("initial cluster {cluster} has duplicate url")]
    DuplicateUrl { cluster: String },
    #[error("couldn't find local name {name:?} in the initial cluster configuration")]
    LocalNameMissing { name: String },
    /// `missing` lists `name=url` entries; `why` is etcd's comparison of the two URL lists.
    #[error(
        "--initial-cluster has {missing} but missing from --initial-advertise-peer-urls=\
         {advertised} ({why})"
    )]
    NotAdvertised {
        missing: String,
        advertised: String,
        why: String,
    },
    #[error(
        "--initial-advertise-peer-urls has {extra} but missing from --initial-cluster={cluster}"
    )]
    NotInCluster { extra: String, cluster: String },
}

/// `--initial-cluster`: `name=url,name=url,...`; a name given twice collects both URLs, as
/// etcd's `types.NewURLsMap`.
pub(super) fn parse_initial_cluster(spec: &str) -> Result<InitialCluster, ClusterError> {
    let mut members: InitialCluster = Vec::new();
    for entry in spec.split(',').filter(|e| !e.is_empty()) {
        let (name, url) = entry.split_once('=').unwrap_or((entry, ""));
        let url = parse_url(url.trim()).map_err(ClusterError::Url)?.url;
        match members.iter_mut().find(|(n, _)| n == name) {
            Some((_, urls)) => urls.push(url),
            None => members.push((name.to_owned(), vec![url])),
        }
    }
    for (_, urls) in &mut members {
        urls.sort();
    }
    Ok(members)
}

/// What etcd checks of the initial cluster before it bootstraps a member. `spec` is the
/// `--initial-cluster` text, when given.
pub(super) fn check_initial_cluster(
    name: &str,
    spec: Option<&str>,
    members: &[(String, Vec<String>)],
    advertised: &[String],
) -> Result<(), ClusterError> {
    let spec = spec
        .map(str::to_owned)
        .unwrap_or_else(|| urls_map_string(members));
    let mut seen = BTreeSet::new();
    for url in members.iter().flat_map(|(_, urls)| urls) {
        if !seen.insert(url) {
            return Err(ClusterError::DuplicateUrl { cluster: spec });
        }
    }
    let Some((_, urls)) = members.iter().find(|(n, _)| n == name) else {
        return Err(ClusterError::LocalNameMissing {
            name: name.to_owned(),
        });
    };
    if urls == advertised {
        return Ok(());
    }
    let why = if urls.len() != advertised.len() {
        format!("len({}) != len({})", go_quoted(advertised), go_quoted(urls))
    } else {
        let (a, b) = advertised
            .iter()
            .zip(urls)
            .find(|(a, b)| a != b)
            .expect("equal lengths and unequal lists differ somewhere");
        format!("resolved urls: {a:?} != {b:?}")
    };
    let missing: Vec<String> = urls
        .iter()
        .filter(|u| !advertised.contains(u))
        .map(|u| format!("{name}={u}"))
        .collect();
    if !missing.is_empty() {
        return Err(ClusterError::NotAdvertised {
            missing: missing.join(","),
            advertised: advertised.join(","),
            why,
        });
    }
    let extra: Vec<&str> = advertised
        .iter()
        .filter(|u| !urls.contains(u))
        .map(String::as_str)
        .collect();
    Err(ClusterError::NotInCluster {
        extra: extra.join(","),
        cluster: urls_map_string(&[(name.to_owned(), advertised.to_vec())]),
    })
}

/// Go's `%q` of a string slice: `["a" "b"]`.
fn go_quoted(urls: &[String]) -> String {
    let quoted: Vec<String> = urls.iter().map(|u| format!("{u:?}")).collect();
    format!("[{}]", quoted.join(" "))
}

/// etcd's `URLsMap.String()`: `name=url,...`.
fn urls_map_string(members: &[(String, Vec<String>)]) -> String {
    members
        .iter()
        .flat_map(|(name, urls)| urls.iter().map(move |u| format!("{name}={u}")))
        .collect::<Vec<_>>()
        .join(",")
}
