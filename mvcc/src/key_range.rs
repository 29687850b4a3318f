//! etcd's key/range_end convention, shared by Range, DeleteRange, Compare and Watch.

pub use pkg::keys::prefix_range_end;

/// The keys a request covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyRange {
    /// Exactly one key (`range_end` empty).
    Single(Vec<u8>),
    /// `[start, end)`, or every key `>= start` when `end` is `None` (`range_end == "\0"`).
    Span {
        start: Vec<u8>,
        end: Option<Vec<u8>>,
    },
}

impl KeyRange {
    /// Interprets an etcd `(key, range_end)` pair: empty `range_end` is the single `key`,
    /// `range_end == "\0"` is every key `>= key` (so `("\0", "\0")` is every key), anything
    /// else is `[key, range_end)`.
    pub fn new(key: &[u8], range_end: &[u8]) -> Self {
        match range_end {
            [] => KeyRange::Single(key.to_vec()),
            [0] => KeyRange::Span {
                start: key.to_vec(),
                end: None,
            },
            end => KeyRange::Span {
                start: key.to_vec(),
                end: Some(end.to_vec()),
            },
        }
    }

    /// Every key starting with `prefix` (an empty prefix is every key).
    pub fn prefix(prefix: &[u8]) -> Self {
        let end = prefix_range_end(prefix);
        let start = if prefix.is_empty() {
            vec![0]
        } else {
            prefix.to_vec()
        };
        Self::new(&start, &end)
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        match self {
            KeyRange::Single(k) => k.as_slice() == key,
            KeyRange::Span { start, end } => {
                key >= start.as_slice() && end.as_ref().is_none_or(|e| key < e.as_slice())
            }
        }
    }

    /// True when no key can match (`start >= end`).
    pub fn is_empty(&self) -> bool {
        match self {
            KeyRange::Single(_) => false,
            KeyRange::Span { start, end } => end.as_ref().is_some_and(|e| e <= start),
        }
    }

    /// The first key the range can contain.
    pub fn start(&self) -> &[u8] {
        match self {
            KeyRange::Single(k) => k,
            KeyRange::Span { start, .. } => start,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_range_rules() {
        let single = KeyRange::new(b"a", b"");
        assert!(single.contains(b"a") && !single.contains(b"ab"));
        let span = KeyRange::new(b"a", b"c");
        assert!(span.contains(b"a") && span.contains(b"bzz") && !span.contains(b"c"));
        let from = KeyRange::new(b"b", b"\0");
        assert!(from.contains(b"b") && from.contains(b"\xff\xff") && !from.contains(b"a"));
        let all = KeyRange::new(b"\0", b"\0");
        assert!(all.contains(b"\0") && all.contains(b"zzz"));
        assert!(KeyRange::new(b"b", b"a").is_empty());
        assert!(KeyRange::new(b"b", b"b").is_empty());
        assert!(!span.is_empty());
    }

    #[test]
    fn prefix_end_increments_the_last_byte_below_ff() {
        assert_eq!(prefix_range_end(b"abc"), b"abd");
        assert_eq!(prefix_range_end(b"a\xff"), b"b");
        assert_eq!(prefix_range_end(b"\xff\xff"), b"\0");
        assert_eq!(prefix_range_end(b""), b"\0");
        let p = KeyRange::prefix(b"foo");
        assert!(p.contains(b"foo") && p.contains(b"foo/bar") && !p.contains(b"fop"));
        assert!(KeyRange::prefix(b"").contains(b"anything"));
    }
}
