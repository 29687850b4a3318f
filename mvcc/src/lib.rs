//! Multi-version key-value store: revisions, key index, ranges, txns, compaction and watch.
