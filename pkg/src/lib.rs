//! What etcd's server, client and tools share and etcd keeps in small packages of its own:
//! flag values written as Go writes them ([`flags`], after `go.etcd.io/etcd/pkg/v3/flags`) and
//! key-prefix ranges ([`keys`], clientv3's `GetPrefixRangeEnd`), and the one seeded generator ([`rand`]).
//! No I/O, no async.

pub mod flags;
pub mod keys;
pub mod rand;
