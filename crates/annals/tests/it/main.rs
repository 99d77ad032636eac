//! The integration tests of the `annals` crate, one binary (see docs/ARCHITECTURE.md).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    missing_docs,
    reason = "tests report a failure by panicking, at the value or index at fault"
)]

mod blobs;
mod conformance;
mod faults;
mod fs_damage;
mod full_disk;
mod hostile;
mod kills;
mod media;
mod memory;
mod model;
mod multiprocess;
mod powercut;
