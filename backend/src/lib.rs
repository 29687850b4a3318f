//! Durable, batched, transactional storage tables on redb.
