//! watch: events, formats, the exec form, interactive mode and environment keys, compared with
//! the reference etcdctl. Watches start at a fixed revision, so both see the same history.

use crate::common;

use common::*;

/// Writes the events every watch test expects: 3 puts and a delete under `w/`.
fn write_events(cluster: &Cluster) {
    ok(cluster, &["put", "w/a", "1"]);
    ok(cluster, &["put", "w/b", "2"]);
    ok(cluster, &["put", "w/a", "3"]);
    ok(cluster, &["del", "w/a"]);
}

fn spawn_both(cluster: &Cluster, args: &[&str]) -> (Background, Background) {
    let spawn = |bin| cluster.cli(bin).args(args).spawn().expect("spawn watch");
    (spawn(reference()), spawn(ours()))
}

#[test]
fn events_print_like_the_reference_in_every_format() {
    let cluster = single();
    let rev = (current_revision(&cluster) + 1).to_string();
    write_events(&cluster);
    // History comes in one response: 4 events, 3 of them with a previous value.
    for (format, lines_per_run) in [("simple", 16), ("json", 1), ("fields", 44)] {
        let (mut theirs, mut ours) = spawn_both(
            &cluster,
            &[
                "watch",
                "--prefix",
                "w/",
                "--rev",
                &rev,
                "--prev-kv",
                "-w",
                format,
            ],
        );
        assert_eq!(
            lines(&mut ours, lines_per_run),
            lines(&mut theirs, lines_per_run),
            "{format}"
        );
    }
    // A single key, and a range.
    let (mut theirs, mut ours) = spawn_both(&cluster, &["watch", "w/b", "--rev", &rev]);
    assert_eq!(lines(&mut ours, 3), ["PUT", "w/b", "2"]);
    assert_eq!(theirs.lines_read().len() + lines(&mut theirs, 3).len(), 3);
    let (mut theirs, mut ours) =
        spawn_both(&cluster, &["watch", "w/a", "w/b", "--rev", &rev, "--hex"]);
    assert_eq!(lines(&mut ours, 8), lines(&mut theirs, 8));
}

#[test]
fn live_events_arrive() {
    let cluster = single();
    let mut watch = ctl(&cluster).args(["watch", "live"]).spawn().unwrap();
    // The watch is live once a put made after it started shows up; keep writing until then.
    let mut n = 0;
    loop {
        n += 1;
        ok(&cluster, &["put", "live", &n.to_string()]);
        match watch.next_line(std::time::Duration::from_millis(200)) {
            Ok(Some(line)) => {
                assert_eq!(line, "PUT");
                break;
            }
            _ => assert!(n < 50, "watch never saw a put"),
        }
    }
    let [key, value] = <[String; 2]>::try_from(lines(&mut watch, 2)).unwrap();
    assert_eq!(key, "live");
    ok(&cluster, &["put", "live", "last"]);
    // Skip any values written before the watch saw the first one.
    let _ = value;
    watch
        .wait_for_line(LINE_TIMEOUT, |l| l == "last")
        .expect("the last put");
}

#[test]
fn exec_form_runs_the_command_per_event_with_its_environment() {
    let cluster = single();
    let rev = (current_revision(&cluster) + 1).to_string();
    write_events(&cluster);
    let script =
        r#"echo "$ETCD_WATCH_REVISION|$ETCD_WATCH_EVENT_TYPE|$ETCD_WATCH_KEY|$ETCD_WATCH_VALUE""#;
    let (mut theirs, mut ours) = spawn_both(
        &cluster,
        &[
            "watch", "--prefix", "w/", "--rev", &rev, "--", "sh", "-c", script,
        ],
    );
    // The 4 events are printed (3 lines each), then the command runs for each.
    let ours_lines = lines(&mut ours, 16);
    assert_eq!(ours_lines, lines(&mut theirs, 16));
    let revision = current_revision(&cluster);
    assert_eq!(ours_lines[12], format!("{revision}|\"PUT\"|\"w/a\"|\"1\""));
    assert!(
        ours_lines[15].ends_with("|\"DELETE\"|\"w/a\"|\"\""),
        "{ours_lines:?}"
    );
    // A failing command ends the watch with etcdctl's message.
    let mut failing = ctl(&cluster)
        .args(["watch", "w/b", "--rev", &rev, "--", "false"])
        .spawn()
        .unwrap();
    lines(&mut failing, 3);
    let out = failing.wait(LINE_TIMEOUT).unwrap();
    assert_eq!(out.code(), Some(1));
    assert_eq!(out.stderr, "command [\"false\"] error (exit status 1)\n");
}

#[test]
fn environment_keys_and_argument_errors_match_the_reference() {
    let cluster = single();
    let rev = (current_revision(&cluster) + 1).to_string();
    write_events(&cluster);
    let spawn = |bin| {
        cluster
            .cli(bin)
            .args(["watch", "--rev", &rev])
            .env("ETCDCTL_WATCH_KEY", "w/a")
            .env("ETCDCTL_WATCH_RANGE_END", "w/c")
            .spawn()
            .unwrap()
    };
    let (mut their_watch, mut our_watch) = (spawn(reference()), spawn(ours()));
    assert_eq!(lines(&mut our_watch, 11), lines(&mut their_watch, 11));
    for args in [
        &["watch"][..],
        &["watch", "a", "b", "--prefix"],
        &["watch", "a", "--"],
    ] {
        let out = same(&cluster, args);
        assert_eq!(out.code(), Some(128));
    }
    for env in [("ETCDCTL_WATCH_KEY", "k"), ("ETCDCTL_WATCH_RANGE_END", "z")] {
        let run_with = |bin| run(cluster.cli(bin).args(["watch", "a"]).env(env.0, env.1));
        assert_eq!(shown(&run_with(ours())), shown(&run_with(reference())));
    }
}

#[test]
fn a_compacted_start_revision_cancels_the_watch() {
    let cluster = single();
    write_events(&cluster);
    let rev = current_revision(&cluster);
    ok(&cluster, &["compaction", &rev.to_string()]);
    let run_with = |bin| run(cluster.cli(bin).args(["watch", "w/a", "--rev", "2"]));
    let out = run_with(ours());
    assert_eq!(out.code(), Some(5));
    assert_eq!(shown(&out), shown(&run_with(reference())));
}

#[test]
fn interactive_mode_watches_and_requests_progress() {
    let cluster = single();
    let rev = (current_revision(&cluster) + 1).to_string();
    write_events(&cluster);
    // stdin stays open for a few seconds so the watch is not ended by EOF while we read.
    let script = |bin: std::path::PathBuf| {
        format!(
            "(printf 'watch --prefix w/ --rev {rev}\\n'; sleep 1; printf 'progress\\nbogus\\n'; sleep 3) | {} --endpoints={} watch -i",
            bin.display(),
            cluster.endpoints()
        )
    };
    let spawn = |bin| {
        Cli::new("/bin/sh")
            .args(["-c", &script(bin)])
            .spawn()
            .unwrap()
    };
    let (mut theirs, mut ours) = (spawn(reference()), spawn(ours()));
    let ours_lines = lines(&mut ours, 13);
    let theirs_lines = lines(&mut theirs, 13);
    assert_eq!(ours_lines[..12], theirs_lines[..12]);
    let progress = format!("progress notify: {}", current_revision(&cluster));
    assert_eq!(ours_lines[12], progress);
    assert_eq!(theirs_lines[12], progress);
    let out = ours.wait(LINE_TIMEOUT).unwrap();
    assert_eq!(out.code(), Some(3));
    assert_eq!(
        out.stderr,
        "Invalid command bogus (only support watch)\nError: Error reading watch request line: EOF\n"
    );
}
