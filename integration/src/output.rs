//! Normalising CLI output for comparisons between etcdctls or between runs: the parts that depend on
//! when or where a command ran (revisions, durations, sizes, client log lines) are masked.

/// Drops the zap log lines the Go client writes to stderr (retries, snapshot progress).
pub fn without_logs(stderr: &str) -> String {
    stderr
        .lines()
        .filter(|l| !l.starts_with("{\"level\":"))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Revisions, versions and raft terms after their JSON or `fields` keys replaced by `N`: a mutation done
/// twice lands at different revisions.
pub fn masked(text: &str) -> String {
    const KEYS: [&str; 6] = [
        "revision\":",
        "Revision\" : ",
        "\"version\":",
        "Version\" : ",
        "\"raft_term\":",
        "RaftTerm\" : ",
    ];
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    'outer: while !rest.is_empty() {
        for key in KEYS {
            if let Some(after) = rest.strip_prefix(key) {
                out.push_str(key);
                let digits = after
                    .find(|c: char| !c.is_ascii_digit() && c != '-')
                    .unwrap_or(after.len());
                out.push('N');
                rest = &after[digits..];
                continue 'outer;
            }
        }
        let c = rest.chars().next().expect("non-empty");
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Every digit replaced by `#`, keeping widths: for output with indexes, sizes and durations that move.
pub fn digits_masked(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_ascii_digit() { '#' } else { c })
        .collect()
}

/// The lines of `text`, sorted: for commands that ask several members concurrently and print in
/// whatever order the answers come.
pub fn sorted_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines.sort_unstable();
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_are_dropped() {
        let stderr =
            "{\"level\":\"warn\",\"msg\":\"retrying\"}\nError: etcdserver: key not found\n";
        assert_eq!(without_logs(stderr), "Error: etcdserver: key not found\n");
    }

    #[test]
    fn revisions_are_masked_in_json_and_fields() {
        assert_eq!(
            masked(r#"{"header":{"revision":12,"raft_term":3},"kvs":[{"version":2}]}"#),
            r#"{"header":{"revision":N,"raft_term":N},"kvs":[{"version":N}]}"#
        );
        assert_eq!(
            masked("\"Revision\" : 7\n\"ModRevision\" : 6\n\"Key\" : \"k1\"\n"),
            "\"Revision\" : N\n\"ModRevision\" : N\n\"Key\" : \"k1\"\n"
        );
    }

    #[test]
    fn digits_keep_their_width() {
        assert_eq!(digits_masked("took = 1.25ms"), "took = #.##ms");
    }

    #[test]
    fn lines_sort() {
        assert_eq!(sorted_lines("b\na\n"), ["a", "b"]);
    }
}
