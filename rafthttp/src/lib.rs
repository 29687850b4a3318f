//! Peer transport: long-lived streams between members and snapshot transfer.
