//! Crash-test child: appends entries to the WAL in `<dir>` forever, printing each index once `save` returned
//! (that is, once it is acknowledged as durable). The crash test kills it with SIGKILL at a random moment.
//!
//! Usage: `wal-crash-writer <dir> <segment-size>`. Entry `i` carries `wal::testing::pattern_payload(i)`, so the reader can check it.

use std::io::Write;

use wal::{HardState, SnapshotMarker, Wal, WalOptions};

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(size)) = (args.next(), args.next()) else {
        eprintln!("usage: wal-crash-writer <dir> <segment-size>");
        std::process::exit(2);
    };
    let options = WalOptions {
        segment_size: size.parse().expect("segment size is a number"),
    };
    let mut wal = if std::path::Path::new(&dir).exists() {
        Wal::open_with_options(&dir, SnapshotMarker::default(), &options)
            .expect("reopen WAL")
            .0
    } else {
        Wal::create_with_options(&dir, b"crash-test", &options).expect("create WAL")
    };
    let mut next = wal.last_index() + 1;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    loop {
        let batch = 1 + next % 7;
        let entries: Vec<_> = (next..next + batch)
            .map(|index| wal::testing::raft_entry(1, index, &wal::testing::pattern_payload(index)))
            .collect();
        let last = next + batch - 1;
        let state = HardState {
            term: 1,
            vote: 1,
            commit: last,
        };
        wal.save(&state, &entries).expect("save");
        writeln!(out, "{last}").expect("stdout");
        out.flush().expect("stdout");
        next = last + 1;
    }
}
