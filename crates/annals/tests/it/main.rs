//! The integration tests of the `annals` crate, one binary (see docs/ARCHITECTURE.md).

mod blobs;
mod conformance;
mod faults;
mod fs_damage;
mod hostile;
mod memory;
mod model;
mod multiprocess;
mod powercut;
