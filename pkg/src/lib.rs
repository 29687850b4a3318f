//! What etcd's server, client and tools share and etcd keeps in small packages of its own:
//! flag values written as Go writes them ([`flags`], after `go.etcd.io/etcd/pkg/v3/flags`) and
//! key-prefix ranges ([`keys`], clientv3's `GetPrefixRangeEnd`), the one seeded generator ([`rand`]), and
//! byte sizes and tables as etcd's tools print them ([`humanize`], [`table`]).
//! No I/O, no async.

pub mod flags;
pub mod humanize;
pub mod keys;
pub mod rand;
pub mod table;
