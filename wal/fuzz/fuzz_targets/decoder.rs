#![no_main]

use libfuzzer_sys::fuzz_target;

// Any byte string, replayed as the only segment of a WAL: the decoder must return contents or an error, and
// never panic, loop or allocate without bound.
fuzz_target!(|data: &[u8]| {
    if let Ok(contents) = wal::fuzzing::replay_single_segment(data) {
        // Whatever is accepted must be internally consistent: consecutive indexes from 1.
        for (position, entry) in contents.entries.iter().enumerate() {
            assert_eq!(entry.index(), position as u64 + 1);
        }
    }
});
