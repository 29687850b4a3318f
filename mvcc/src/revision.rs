//! Revisions and their 17-byte backend key encoding (etcd's `revision.go`).

use std::fmt;

/// Length of an encoded revision: 8-byte main, `_`, 8-byte sub.
pub const REV_BYTES_LEN: usize = 17;
/// Length of an encoded tombstone revision: a revision followed by `t`.
pub const MARKED_REV_BYTES_LEN: usize = REV_BYTES_LEN + 1;
const TOMBSTONE_MARK: u8 = b't';

/// A point in the store's history: `main` is bumped once per write transaction, `sub` orders
/// the changes inside one transaction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision {
    pub main: i64,
    pub sub: i64,
}

impl Revision {
    pub const fn new(main: i64, sub: i64) -> Self {
        Self { main, sub }
    }

    /// The backend key of this revision: big-endian main, `_`, big-endian sub.
    pub fn to_bytes(self) -> [u8; REV_BYTES_LEN] {
        let mut b = [0u8; REV_BYTES_LEN];
        b[..8].copy_from_slice(&self.main.to_be_bytes());
        b[8] = b'_';
        b[9..].copy_from_slice(&self.sub.to_be_bytes());
        b
    }

    /// The backend key of a tombstone at this revision.
    pub fn to_tombstone_bytes(self) -> [u8; MARKED_REV_BYTES_LEN] {
        let mut b = [0u8; MARKED_REV_BYTES_LEN];
        b[..REV_BYTES_LEN].copy_from_slice(&self.to_bytes());
        b[REV_BYTES_LEN] = TOMBSTONE_MARK;
        b
    }

    /// Decodes a backend key (tombstone mark allowed); `None` for anything else.
    pub fn from_bytes(b: &[u8]) -> Option<Revision> {
        if b.len() != REV_BYTES_LEN && !is_tombstone(b) {
            return None;
        }
        if b[8] != b'_' {
            return None;
        }
        let main = i64::from_be_bytes(b[..8].try_into().ok()?);
        let sub = i64::from_be_bytes(b[9..REV_BYTES_LEN].try_into().ok()?);
        Some(Revision { main, sub })
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.main, self.sub)
    }
}

/// Whether a backend key marks a deletion.
pub fn is_tombstone(b: &[u8]) -> bool {
    b.len() == MARKED_REV_BYTES_LEN && b[REV_BYTES_LEN] == TOMBSTONE_MARK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_orders_like_revisions_and_round_trips() {
        let revs = [
            Revision::new(0, 0),
            Revision::new(1, 0),
            Revision::new(1, 1),
            Revision::new(2, 0),
            Revision::new(256, 3),
            Revision::new(i64::MAX, i64::MAX),
        ];
        for pair in revs.windows(2) {
            assert!(pair[0].to_bytes() < pair[1].to_bytes());
        }
        for r in revs {
            assert_eq!(Revision::from_bytes(&r.to_bytes()), Some(r));
            let t = r.to_tombstone_bytes();
            assert!(is_tombstone(&t));
            assert!(!is_tombstone(&r.to_bytes()));
            assert_eq!(Revision::from_bytes(&t), Some(r));
        }
        assert_eq!(
            Revision::new(1, 2).to_bytes(),
            [0, 0, 0, 0, 0, 0, 0, 1, b'_', 0, 0, 0, 0, 0, 0, 0, 2]
        );
        assert_eq!(Revision::from_bytes(b"short"), None);
    }
}
