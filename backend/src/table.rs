/// A named table (a bbolt bucket in etcd). Each crate declares the tables it owns as
/// constants (`Table::new("key")`); a [`crate::Backend`] is opened with the list of every
/// table it holds, and that list's order is part of the snapshot stream format and of
/// [`crate::Backend::hash`], so it only ever grows at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Table {
    name: &'static str,
}

impl Table {
    /// `name` is the on-disk name (etcd's bucket name).
    pub const fn new(name: &'static str) -> Self {
        Self { name }
    }

    pub fn name(self) -> &'static str {
        self.name
    }
}
