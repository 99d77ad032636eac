//! annals against the embedded stores an agent runtime would pick instead, on the same entries
//! and the same serde work, with the same guarantee side by side.
//!
//! Every contender sits behind [`Contender`]: create an empty log, append one entry or a batch,
//! replay a log into owned structs, count a log, and say what an acknowledged append survives
//! ([`Guarantee`]). The peers ([`peers`]) are SQLite, redb, fjall and okaywal, each in its best
//! honest configuration; the annals contenders are in [`annals_contenders`], where the engine
//! tracks add new ways of appending (a lease, `sync` after a buffered turn, group commit) as
//! they land. The interleaved harness ([`harness`]) runs contenders in turns so that each one
//! sees the same disk; docs/BENCHMARKS.md has the results and every configuration choice.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    reason = "benchmark support, not library code: a broken fixture is reported by panicking, and its sizes and counts are far from any limit"
)]

pub mod annals_contenders;
pub mod disk;
pub mod harness;
pub mod peers;

#[cfg(test)]
mod tests;

use std::path::Path;

use annals::RawEntry;
use annals_bench::entries::Message;
use annals_bench::realshape::Event;

/// What an acknowledged append survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Guarantee {
    /// Lost if the process crashes before a later, stronger commit (redb `Durability::None`:
    /// the commit lives in redb's own memory until then).
    Nothing,
    /// Survives a crash of the process (the bytes are in the kernel's page cache), not a power
    /// cut.
    ProcessCrash,
    /// Survives a power cut (`fdatasync`/`fsync` before the append returns).
    PowerCut,
}

impl Guarantee {
    /// How the tables say it.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Guarantee::Nothing => "lost on process crash",
            Guarantee::ProcessCrash => "survives process crash",
            Guarantee::PowerCut => "survives power cut",
        }
    }

    /// The name in the JSON results.
    #[must_use]
    pub fn key(self) -> &'static str {
        match self {
            Guarantee::Nothing => "nothing",
            Guarantee::ProcessCrash => "process_crash",
            Guarantee::PowerCut => "power_cut",
        }
    }
}

/// The durability a contender is opened with: the weaker or the stronger of its modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// The contender's fastest mode that still survives a process crash (annals `Buffered`).
    Buffered,
    /// The contender's mode that survives a power cut (annals `Sync`).
    Durable,
}

impl Mode {
    /// What a contender run in this mode promises to keep.
    #[must_use]
    pub fn guarantee(self) -> Guarantee {
        match self {
            Mode::Buffered => Guarantee::ProcessCrash,
            Mode::Durable => Guarantee::PowerCut,
        }
    }
}

/// A log's handle inside one contender (an index into the contender's own table).
pub type LogId = usize;

/// One store under comparison. Every method panics on the store's errors: a benchmark that
/// fails must stop, not measure an error path.
pub trait Contender: Send + Sync {
    /// Name in benchmark ids and tables (`annals`, `sqlite`, `redb`, …).
    fn name(&self) -> &'static str;

    /// What an acknowledged append survives in this instance's mode.
    fn guarantee(&self) -> Guarantee;

    /// One line on the configuration, for the docs and the JSON results.
    fn config(&self) -> String;

    /// A new, empty log (an annals segment, a key prefix, a table range…).
    fn new_log(&self) -> LogId;

    /// Appends one entry as sequence number `seq` of `log` (the caller keeps the count, as a
    /// single writer does).
    fn append(&self, log: LogId, seq: u64, entry: &RawEntry);

    /// Appends one entry at whatever the next sequence number of `log` is, atomically against
    /// other threads appending to the same log.
    fn append_next(&self, log: LogId, entry: &RawEntry);

    /// Appends `entries` as one atomic batch starting at sequence number `seq`.
    fn append_batch(&self, log: LogId, seq: u64, entries: &[RawEntry]);

    /// Replays `log` in order into [`Message`]s; returns the count.
    fn replay_messages(&self, log: LogId, f: &mut dyn FnMut(Message)) -> u64;

    /// Replays `log` in order into [`Event`]s; returns the count.
    fn replay_events(&self, log: LogId, f: &mut dyn FnMut(Event)) -> u64;

    /// Number of entries in `log`, through the store's cheapest honest way; `None` where the
    /// store has none short of a full read.
    fn count(&self, log: LogId) -> Option<u64>;

    /// Makes what was written durable and quiet (flushes, checkpoints) before its files are
    /// measured or read: untimed.
    fn settle(&self);

    /// Directory holding everything the contender wrote.
    fn dir(&self) -> &Path;
}

/// Opens a contender in `dir`; `None` if the store has no such mode (okaywal always syncs) or
/// the contender is not built yet (see [`annals_contenders`]).
pub type Opener = fn(dir: &Path, mode: Mode) -> Option<Box<dyn Contender>>;

/// Every contender with both modes, annals first: `(name, opener)`. A peer appears in the
/// tables with the mode whose guarantee matches the row.
#[must_use]
pub fn contenders() -> Vec<(&'static str, Opener)> {
    let mut all = annals_contenders::available();
    all.extend(peers::all());
    all
}
