//! The permission cache (etcd's range_perm_cache.go): per user, the READ and WRITE key ranges
//! of all the user's roles merged into sorted, disjoint intervals, so a check is two binary
//! searches with no allocation.

use std::collections::{BTreeMap, HashMap};

use api::authpb::{self, permission::Type as PermType};

/// Open-ended `range_end` ("\x00"): every key from `key` on.
pub(crate) fn is_open_ended(range_end: &[u8]) -> bool {
    range_end == [0]
}

/// etcd 3.5's `isValidPermissionRange`: a non-empty key, and a range end that is empty (one
/// key), "\x00" (open-ended) or after the key.
pub(crate) fn is_valid_permission_range(key: &[u8], range_end: &[u8]) -> bool {
    !key.is_empty() && (range_end.is_empty() || key < range_end || is_open_ended(range_end))
}

/// Half-open intervals `[start, end)`, `end == None` meaning "to the last key", kept sorted by
/// start, non-overlapping and non-touching (touching ones are merged, so coverage of a range
/// is decided by the one interval holding its start).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct KeyRanges {
    intervals: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl KeyRanges {
    fn from_unsorted(mut intervals: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Self {
        intervals.retain(|(start, end)| end.as_ref().is_none_or(|end| start < end));
        intervals.sort_by(|a, b| a.0.cmp(&b.0));
        let mut merged: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::with_capacity(intervals.len());
        for (start, end) in intervals {
            if let Some(last) = merged.last_mut() {
                let touches = last.1.as_ref().is_none_or(|last_end| start <= *last_end);
                if touches {
                    let extends = match (&last.1, &end) {
                        (None, _) => false,
                        (Some(_), None) => true,
                        (Some(last_end), Some(end)) => end > last_end,
                    };
                    if extends {
                        last.1 = end;
                    }
                    continue;
                }
            }
            merged.push((start, end));
        }
        Self { intervals: merged }
    }

    /// The interval holding `key`, if any.
    fn holding(&self, key: &[u8]) -> Option<&(Vec<u8>, Option<Vec<u8>>)> {
        let after = self
            .intervals
            .partition_point(|(start, _)| start.as_slice() <= key);
        let candidate = self.intervals.get(after.checked_sub(1)?)?;
        candidate
            .1
            .as_deref()
            .is_none_or(|end| key < end)
            .then_some(candidate)
    }

    pub(crate) fn contains_key(&self, key: &[u8]) -> bool {
        self.holding(key).is_some()
    }

    /// Whether `[key, end)` (`end == None`: open-ended) lies inside the union.
    pub(crate) fn covers(&self, key: &[u8], end: Option<&[u8]>) -> bool {
        if end.is_some_and(|end| end <= key) {
            // An empty or inverted range: etcd's interval tree finds nothing to cover it.
            return false;
        }
        let Some((_, held_end)) = self.holding(key) else {
            return false;
        };
        match (held_end.as_deref(), end) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(held_end), Some(end)) => end <= held_end,
        }
    }
}

/// What one user may read and write.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct UserPermissions {
    pub(crate) read: KeyRanges,
    pub(crate) write: KeyRanges,
}

impl UserPermissions {
    /// The union of the permissions of `roles`; roles that do not exist are skipped.
    fn merged<'a>(
        roles: impl Iterator<Item = &'a String>,
        all_roles: &BTreeMap<String, authpb::Role>,
    ) -> Self {
        let mut read = Vec::new();
        let mut write = Vec::new();
        for role in roles.filter_map(|name| all_roles.get(name)) {
            for perm in &role.key_permission {
                let interval = interval_of(&perm.key, &perm.range_end);
                match perm.perm_type() {
                    PermType::Read => read.push(interval),
                    PermType::Write => write.push(interval),
                    PermType::Readwrite => {
                        read.push(interval.clone());
                        write.push(interval);
                    }
                }
            }
        }
        Self {
            read: KeyRanges::from_unsorted(read),
            write: KeyRanges::from_unsorted(write),
        }
    }
}

/// A permission's interval: one key is `[key, key + "\x00")`, "\x00" is open-ended.
fn interval_of(key: &[u8], range_end: &[u8]) -> (Vec<u8>, Option<Vec<u8>>) {
    let end = if range_end.is_empty() {
        let mut next = Vec::with_capacity(key.len() + 1);
        next.extend_from_slice(key);
        next.push(0);
        Some(next)
    } else if is_open_ended(range_end) {
        None
    } else {
        Some(range_end.to_vec())
    };
    (key.to_vec(), end)
}

/// The cache for every user (etcd's `refreshRangePermCache`).
pub(crate) fn build(
    users: &BTreeMap<String, authpb::User>,
    roles: &BTreeMap<String, authpb::Role>,
) -> HashMap<String, UserPermissions> {
    users
        .iter()
        .map(|(name, user)| {
            (
                name.clone(),
                UserPermissions::merged(user.roles.iter(), roles),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(list: &[(&[u8], &[u8])]) -> KeyRanges {
        KeyRanges::from_unsorted(list.iter().map(|(k, e)| interval_of(k, e)).collect())
    }

    #[test]
    fn single_key_permission_covers_only_that_key() {
        let r = ranges(&[(b"foo", b"")]);
        assert!(r.contains_key(b"foo"));
        assert!(!r.contains_key(b"fo"));
        assert!(!r.contains_key(b"foo\x00"));
        assert!(!r.contains_key(b"fop"));
        assert!(r.covers(b"foo", Some(b"foo\x00")));
        assert!(!r.covers(b"foo", Some(b"fop")));
    }

    #[test]
    fn range_needs_full_coverage_and_touching_intervals_join() {
        let r = ranges(&[(b"a", b"c"), (b"c", b"e"), (b"x", b"z")]);
        assert!(r.covers(b"a", Some(b"e")));
        assert!(r.covers(b"b", Some(b"d")));
        assert!(!r.covers(b"a", Some(b"f")));
        assert!(!r.covers(b"d", Some(b"y")));
        assert!(r.contains_key(b"d"));
        assert!(!r.contains_key(b"e"));
        assert!(!r.covers(b"x", None));
        assert!(!r.covers(b"b", Some(b"b")), "empty range is not covered");
    }

    #[test]
    fn gap_between_intervals_breaks_coverage() {
        let r = ranges(&[(b"a", b"c"), (b"c\x00", b"e")]);
        assert!(!r.covers(b"a", Some(b"e")));
        assert!(r.covers(b"c\x00", Some(b"e")));
    }

    #[test]
    fn open_ended_and_everything() {
        let r = ranges(&[(b"m", b"\x00")]);
        assert!(r.covers(b"m", None));
        assert!(r.covers(b"zzz", Some(b"zzzz")));
        assert!(!r.contains_key(b"l"));
        let all = ranges(&[(b"\x00", b"\x00")]);
        assert!(all.covers(b"\x00", None));
        assert!(all.contains_key(b"anything"));
    }

    #[test]
    fn overlapping_and_nested_intervals_merge() {
        let r = ranges(&[(b"a", b"m"), (b"b", b"c"), (b"k", b"p"), (b"a", b"\x00")]);
        assert_eq!(r.intervals.len(), 1);
        assert!(r.covers(b"a", None));
        let r = ranges(&[(b"k", b"p"), (b"a", b"m")]);
        assert_eq!(r.intervals, vec![(b"a".to_vec(), Some(b"p".to_vec()))]);
    }

    #[test]
    fn validation_matches_etcd_3_5() {
        assert!(!is_valid_permission_range(b"", b""));
        assert!(is_valid_permission_range(b"a", b""));
        assert!(is_valid_permission_range(b"a", b"b"));
        assert!(!is_valid_permission_range(b"b", b"a"));
        assert!(!is_valid_permission_range(b"a", b"a"));
        assert!(is_valid_permission_range(b"a", b"\x00"));
        assert!(is_valid_permission_range(b"\x00", b"\x00"));
    }
}
