//! What a writer may cut from the end of a damaged file, and why: the recovery modes and the
//! pure function that turns a scan's verdict into a plan. The verdict itself (where the first
//! damage is, and whether it can only be an interrupted last write) is the checker's, in
//! `scan.rs`; this module only applies a mode to it. Pure: it never touches a file.
//!
//! The rules (docs/FORMAT.md, *Recovery*, says the same):
//!
//! 1. Find the first damage F: a line that fails its check, unterminated bytes that cannot be a
//!    torn line, a write whose `more` is not satisfied (a line that does not continue it, or
//!    the end of the file), a line whose blob is missing or damaged.
//! 2. Let C be the end of the last complete write before F, and S the sequence number of the
//!    first entry at C.
//! 3. In format 2, the bytes from C to the end are an **interrupted tail** if F is of a kind an
//!    interrupted write leaves ([`CorruptReason::may_be_interrupted_write`]) and no intact line
//!    from C on claims a durable watermark (`seq − u`) above S, that is, claims that the entry
//!    at C was durable. Otherwise they hold **damage**. In format 1 only an unterminated last
//!    line is an interrupted tail.
//! 4. Readers report an interrupted tail as [`ScanReport::torn_tail`] and deliver nothing from
//!    it; damage is a typed problem at F. A writer applies its [`RecoveryMode`] with [`plan`].
//!
//! Never cut silently: a bad line followed by a later complete write that claims it durable.
//! A device that corrupts the last acknowledged write, and whose next line was never written,
//! cannot be told from an interrupted write by the bytes: that write is cut too.

use crate::error::CorruptReason;
use crate::{Problem, ScanReport, TornTail};

/// What the bytes of an interrupted tail are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TailKind {
    /// The unterminated start of a line: a single-line write cut short.
    TornLine,
    /// A write of `of` lines whose first `lines` are whole and whose rest is missing or
    /// damaged (a partial batch: cut whole).
    PartialWrite {
        /// Whole lines of the write.
        lines: u64,
        /// Lines the write has.
        of: u64,
    },
    /// Zero bytes where a write should be (pages that never reached the disk), or a run longer
    /// than any line, which is what zeros that swallowed newlines leave.
    ZeroFilled,
    /// Bytes that are not annals lines where a write should be.
    Garbage,
    /// A line whose blob is missing or damaged (a blob that never reached the disk).
    LostBlob,
}

impl std::fmt::Display for TailKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TornLine => f.write_str("a torn line"),
            Self::PartialWrite { lines, of } => {
                write!(f, "a partial write: {lines} of its {of} lines")
            }
            Self::ZeroFilled => f.write_str("zero-filled bytes"),
            Self::Garbage => f.write_str("bytes that are not annals lines"),
            Self::LostBlob => f.write_str("a line whose blob never reached the disk"),
        }
    }
}

/// How a writer that opens a segment treats damage at its end (after RocksDB's WAL recovery
/// modes and raft-engine's `RecoveryMode`). Readers never cut, whatever the mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum RecoveryMode {
    /// Cut nothing but a torn last line; an interrupted write of any other kind, and any
    /// damage, is an error until a person repairs the segment.
    AbsoluteConsistency,
    /// Cut an interrupted tail (a torn line, a partial batch, zero-filled or garbage pages of
    /// writes never acknowledged as durable); damage is an error.
    #[default]
    TolerateInterruptedTail,
    /// Cut at the first damage wherever it is, keeping the cut bytes: the log becomes the
    /// longest prefix of complete writes that checks out. Loses acknowledged entries when the
    /// damage is in them.
    PointInTime,
}

/// What a writer's recovery does with a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoveryPlan {
    /// Nothing to cut: the log ends where the file ends.
    Clean,
    /// Cut the file back to `keep` bytes. The `len` bytes from there to the end go to the
    /// recovery file (fsynced) before the cut.
    Cut {
        /// Bytes kept: the end of the last complete write the cut keeps.
        keep: u64,
        /// Bytes cut.
        len: u64,
        /// Why.
        why: CutReason,
    },
    /// Nothing may be cut in this mode: appends fail with [`Error::Corrupt`](crate::Error)
    /// naming the problem until a person repairs the segment.
    Refuse(Problem),
}

/// Why a [`RecoveryPlan::Cut`] cuts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CutReason {
    /// An interrupted tail: nothing in it was acknowledged as durable.
    Interrupted(TornTail),
    /// Damage, cut in [`RecoveryMode::PointInTime`]: the first problem.
    Damage(Problem),
}

/// Turns the report of a complete tolerant scan of a file (every line and the tail read, no
/// early stop) into what a writer in `mode` may cut. O(1).
#[must_use]
pub fn plan(report: &ScanReport, mode: RecoveryMode) -> RecoveryPlan {
    let cut_from = |keep: u64, why| RecoveryPlan::Cut {
        keep,
        len: report.file_len.saturating_sub(keep),
        why,
    };
    if let Some(first) = report.problems.first() {
        return match mode {
            RecoveryMode::PointInTime if report.valid_up_to > 0 => {
                cut_from(report.valid_up_to, CutReason::Damage(first.clone()))
            }
            _ => RecoveryPlan::Refuse(first.clone()),
        };
    }
    match report.torn_tail {
        None => RecoveryPlan::Clean,
        Some(tail) => {
            if mode == RecoveryMode::AbsoluteConsistency && tail.kind != TailKind::TornLine {
                return RecoveryPlan::Refuse(Problem {
                    line: tail.line,
                    offset: tail.offset,
                    reason: CorruptReason::InterruptedWrite(tail.kind),
                });
            }
            cut_from(tail.offset, CutReason::Interrupted(tail))
        }
    }
}

#[cfg(test)]
mod tests;
