/// The named tables of an etcd backend (bbolt buckets in etcd).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    Key,
    Meta,
    Lease,
    Auth,
    AuthUsers,
    AuthRoles,
    Members,
    MembersRemoved,
    Cluster,
    Alarm,
}

impl Table {
    /// Every table, in the order hashes and snapshots visit them.
    pub const ALL: [Table; 10] = [
        Table::Key,
        Table::Meta,
        Table::Lease,
        Table::Auth,
        Table::AuthUsers,
        Table::AuthRoles,
        Table::Members,
        Table::MembersRemoved,
        Table::Cluster,
        Table::Alarm,
    ];

    /// etcd's bucket name.
    pub fn name(self) -> &'static str {
        match self {
            Table::Key => "key",
            Table::Meta => "meta",
            Table::Lease => "lease",
            Table::Auth => "auth",
            Table::AuthUsers => "authUsers",
            Table::AuthRoles => "authRoles",
            Table::Members => "members",
            Table::MembersRemoved => "members_removed",
            Table::Cluster => "cluster",
            Table::Alarm => "alarm",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    pub(crate) fn from_index(i: u8) -> Option<Table> {
        Table::ALL.get(i as usize).copied()
    }
}
