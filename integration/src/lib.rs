//! Harness that boots real multi-process clusters for end-to-end tests.
