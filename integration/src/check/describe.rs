//! Readable one-line descriptions of operations and watch responses, for violation explanations.

use crate::history::{
    EventKind, History, KeyValue, Nanos, Operation, Outcome, Request, Response, WatchEvent,
};

use super::FINAL_READ_CLIENT;

pub(super) fn time(t: Nanos) -> String {
    if t == Nanos::MAX {
        "never".to_owned()
    } else {
        format!("{:.6}s", t as f64 / 1e9)
    }
}

pub(super) fn kv(kv: Option<&KeyValue>) -> String {
    match kv {
        None => "absent".to_owned(),
        Some(kv) => format!(
            "{}={} (mod_rev {}, create_rev {}, version {}{})",
            kv.key,
            kv.value,
            kv.mod_revision,
            kv.create_revision,
            kv.version,
            if kv.lease != 0 {
                format!(", lease {}", kv.lease)
            } else {
                String::new()
            }
        ),
    }
}

fn request(r: &Request) -> String {
    match r {
        Request::Put { key, value, lease } => {
            if *lease != 0 {
                format!("put {key}={value} with lease {lease}")
            } else {
                format!("put {key}={value}")
            }
        }
        Request::Get { key, serializable } => {
            if *serializable {
                format!("serializable get {key}")
            } else {
                format!("get {key}")
            }
        }
        Request::Delete { key } => format!("delete {key}"),
        Request::CompareAndSwap {
            key,
            expected,
            new_value,
        } => format!(
            "swap {key}: if {} then put {key}={new_value}",
            match expected {
                Some(v) => format!("{key}=={v}"),
                None => format!("{key} absent"),
            }
        ),
        Request::LeaseGrant { ttl } => format!("lease grant ttl {ttl}"),
        Request::LeaseRevoke { id } => format!("lease revoke {id}"),
        Request::LeaseKeepAliveOnce { id } => format!("lease keep-alive {id}"),
    }
}

fn response(r: &Response) -> String {
    match r {
        Response::Put { revision } => format!("ok, rev {revision}"),
        Response::Get { revision, kv: v } => format!("{} at rev {revision}", kv(v.as_ref())),
        Response::Delete { revision, deleted } => format!("deleted {deleted}, rev {revision}"),
        Response::CompareAndSwap {
            revision,
            succeeded,
            current,
        } => {
            if *succeeded {
                format!("succeeded, rev {revision}")
            } else {
                format!("failed, saw {} at rev {revision}", kv(current.as_ref()))
            }
        }
        Response::LeaseGrant { revision, id, ttl } => {
            format!("granted {id} ttl {ttl}, rev {revision}")
        }
        Response::LeaseRevoke { revision } => format!("ok, rev {revision}"),
        Response::LeaseKeepAlive { revision, ttl } => format!("ttl {ttl}, rev {revision}"),
    }
}

pub(super) fn op(history: &History, index: usize) -> String {
    let Some(o) = history.operations.get(index) else {
        return format!("op#{index} (not in the history)");
    };
    operation(index, o)
}

fn operation(index: usize, o: &Operation) -> String {
    let outcome = match &o.outcome {
        Outcome::Ok(r) => response(r),
        Outcome::Failed(why) => format!("failed ({why})"),
        Outcome::Unknown(why) => format!("unknown outcome ({why})"),
    };
    if o.client == FINAL_READ_CLIENT {
        return format!(
            "final read after heal at {}: {} -> {outcome}",
            time(o.invoke),
            request(&o.request)
        );
    }
    format!(
        "op#{index} (client {}, {}..{}): {} -> {outcome}",
        o.client,
        time(o.invoke),
        time(o.complete),
        request(&o.request)
    )
}

pub(super) fn watch_response(history: &History, record: usize, response: usize) -> String {
    let Some(w) = history.watches.get(record) else {
        return format!("watch#{record} (not in the history)");
    };
    let received = w
        .responses
        .get(response)
        .map(|r| format!("{} (header rev {})", time(r.received), r.header_revision))
        .unwrap_or_default();
    format!(
        "watch#{record} (watcher {}, {}, from rev {}) response {response} received {received}",
        w.watcher,
        range(&w.key, &w.range_end),
        w.start_revision,
    )
}

pub(super) fn range(key: &str, range_end: &str) -> String {
    if range_end.is_empty() {
        format!("key {key}")
    } else if range_end == "\0" {
        format!("keys >= {key}")
    } else {
        format!("keys [{key}, {range_end})")
    }
}

pub(super) fn event(e: &WatchEvent) -> String {
    match e.kind {
        EventKind::Put => format!("PUT {}", kv(Some(&e.kv))),
        EventKind::Delete => format!("DELETE {} at rev {}", e.kv.key, e.kv.mod_revision),
    }
}
