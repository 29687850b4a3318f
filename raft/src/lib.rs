//! The Raft consensus core: a single-owner, I/O-free state machine driven by tick/step/propose.
