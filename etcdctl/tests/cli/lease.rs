//! lease grant | revoke | timetolive | list | keep-alive, compared with the reference etcdctl,
//! and keep-alive keeping a key alive past its TTL.

use crate::common;

use std::time::Duration;

use common::*;

/// The hex ID in `lease <id> granted with TTL(...)`.
fn grant(cluster: &Cluster, ttl: &str) -> String {
    let out = ok(cluster, &["lease", "grant", ttl]);
    out.split_whitespace().nth(1).expect("lease id").to_string()
}

/// Masks the seconds left on a lease, which tick between two runs.
fn without_remaining(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let line = match line.find("remaining(") {
            Some(at) => format!(
                "{}remaining(…{}",
                &line[..at],
                &line[at..].split_once(')').map_or("", |(_, r)| r)
            ),
            None => line.to_string(),
        };
        let line = match line.find("\"ttl\":") {
            Some(at) => {
                let rest = &line[at + 6..];
                let end = rest
                    .find(|c: char| !c.is_ascii_digit() && c != '-')
                    .unwrap_or(rest.len());
                format!("{}\"ttl\":…{}", &line[..at], &rest[end..])
            }
            None => line,
        };
        // In the fields format "TTL" is what remains ("GrantedTTL" is the fixed one).
        let line = if line.starts_with("\"TTL\" : ") {
            "\"TTL\" : …".to_string()
        } else {
            line
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[test]
fn lease_commands_print_like_the_reference() {
    let cluster = single();
    let id = grant(&cluster, "100");
    // One key: etcd lists a lease's keys in no fixed order.
    ok(&cluster, &["put", "k1", "v", "--lease", &id]);
    for format in ["simple", "json", "fields"] {
        for keys in [false, true] {
            let mut args = vec!["lease", "timetolive", &id, "-w", format];
            if keys {
                args.push("--keys");
            }
            let theirs = run(cluster.cli(reference()).args(&args));
            let ours = run(ctl(&cluster).args(&args));
            assert_eq!(ours.code(), Some(0));
            assert_eq!(
                without_remaining(&ours.stdout),
                without_remaining(&theirs.stdout),
                "{args:?}"
            );
        }
        same(
            &cluster,
            &["lease", "keep-alive", "--once", &id, "-w", format],
        );
        same(&cluster, &["lease", "list", "-w", format]);
        same(
            &cluster,
            &["lease", "keep-alive", "--once", &id, "-w", "protobuf"],
        );
        same(&cluster, &["lease", "timetolive", "1234", "-w", format]);
    }
    for args in [
        &["lease", "grant"][..],
        &["lease", "grant", "x"],
        &["lease", "grant", "100", "-w", "table"],
        &["lease", "revoke"],
        &["lease", "revoke", "zz"],
        &["lease", "timetolive"],
        &["lease", "keep-alive"],
        &["lease", "keep-alive", "--once", "1234"],
    ] {
        same(&cluster, args);
    }
    // Grants print the new lease in each format.
    let out = ok(&cluster, &["lease", "grant", "5"]);
    assert!(
        out.starts_with("lease ") && out.ends_with(" granted with TTL(5s)\n"),
        "{out}"
    );
    let out = ok(&cluster, &["lease", "grant", "60", "-w", "json"]);
    assert!(out.contains(",\"TTL\":60,\"Error\":\"\"}"), "{out}");
    let out = ok(&cluster, &["lease", "grant", "60", "-w", "fields"]);
    assert!(out.ends_with("\"TTL\" : 60\n"), "{out}");
    // Revoking deletes the attached keys; revoking again is an error.
    for format in ["simple", "json", "fields"] {
        let id = grant(&cluster, "100");
        let out = run(ctl(&cluster).args(["lease", "revoke", &id, "-w", format]));
        assert!(out.success(), "{out:?}");
        if format == "simple" {
            assert_eq!(out.stdout, format!("lease {id} revoked\n"));
        }
    }
    ok(&cluster, &["lease", "revoke", &id]);
    assert_eq!(ok(&cluster, &["get", "--prefix", "k"]), "");
    let out = same(&cluster, &["lease", "revoke", &id]);
    assert_eq!(
        out.stderr,
        "Error: failed to revoke lease (etcdserver: requested lease not found)\n"
    );
}

#[test]
fn keep_alive_keeps_a_key_past_its_ttl_and_revoke_removes_it() {
    let cluster = single();
    let kept = grant(&cluster, "2");
    let unkept = grant(&cluster, "2");
    ok(&cluster, &["put", "kept", "v", "--lease", &kept]);
    ok(&cluster, &["put", "unkept", "v", "--lease", &unkept]);
    let mut keeper = ctl(&cluster)
        .args(["lease", "keep-alive", &kept])
        .spawn()
        .unwrap();
    let first = keeper.next_line(LINE_TIMEOUT).unwrap().unwrap();
    assert_eq!(first, format!("lease {kept} keepalived with TTL(2)"));
    // The unkept lease expires; the kept one outlives several TTLs.
    eventually(Duration::from_secs(10), "the unkept key to expire", || {
        ok(&cluster, &["get", "unkept"]).is_empty()
    });
    keeper.wait_for_line(LINE_TIMEOUT, |_| true).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(ok(&cluster, &["get", "kept", "--print-value-only"]), "v\n");
    // Revoking the lease ends the keep-alive and deletes the key.
    ok(&cluster, &["lease", "revoke", &kept]);
    assert_eq!(ok(&cluster, &["get", "kept"]), "");
    keeper
        .wait_for_line(LINE_TIMEOUT, |l| {
            l == format!("lease {kept} expired or revoked.")
        })
        .unwrap();
    let out = keeper.wait(LINE_TIMEOUT).unwrap();
    assert_eq!(out.code(), Some(0));
}
