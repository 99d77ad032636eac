//! Benchmarks of annals side by side with its baselines, on the same pre-generated entries:
//!
//! - the naive JSONL store ([`naive::NaiveStore`]): what agent runtimes do today;
//! - the floor ([`naive::Floor`]): a raw `write(2)` of the same line to an open `O_APPEND` file;
//! - SQLite ([`sqlite::SqliteStore`]): one row per entry, WAL mode, durability matched.
//!
//! The real-shaped workload ([`realshape::RealCorpus`]) follows the entry sizes of real agent
//! logs; every append, replay and comparison benchmark has a variant on it beside the 400-byte
//! one.
//!
//! The benchmarks themselves are in `benches/`; docs/BENCHMARKS.md has the results and how to
//! reproduce them. This library holds what they share: the entries, the baselines, the
//! fixtures and the run settings.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    reason = "benchmark support, not library code: a broken fixture is reported by panicking, and its sizes and counts are far from any limit"
)]

pub mod entries;
pub mod fixture;
pub mod logs;
pub mod naive;
pub mod realshape;
mod rng;
pub mod setup;
pub mod sqlite;

#[cfg(test)]
mod tests;
