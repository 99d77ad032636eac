//! Searching a store: the entries (blobs re-inflated) of some or all sessions that match a
//! [`Pattern`] and pass a [`Filter`]. Shared by `annals grep` and `annals serve`, so both find
//! the same entries for the same query.
//!
//! Bounded memory whatever the store holds: one entry at a time (an entry kept as a blob is
//! read whole, up to the store's maximum entry size), and a bounded list of problems. Never
//! writes. Damaged files do not stop a search: their good lines are searched (tolerant replay)
//! and the damage is reported in [`SearchStats`].
//!
//! ```no_run
//! use std::ops::ControlFlow;
//! use annals_cli::search::{self, Case, Filter, Pattern, Query, Scope};
//! # fn main() -> annals::Result<()> {
//! let store = annals::FsStore::open("./annals-store")?;
//! let query = Query { pattern: Pattern::fixed("timeout", Case::Smart), filter: Filter::default() };
//! let stats = search::search(&store, &Scope::default(), &query, &mut |hit: search::Hit<'_>| {
//!     println!("{} {} {} {}", hit.session, hit.segment, hit.seq, hit.json);
//!     ControlFlow::Continue(())
//! })?;
//! println!("{} hits in {} entries", stats.hits, stats.entries);
//! # Ok(()) }
//! ```

mod filter;
mod parallel;
mod pattern;
pub mod time;

use std::ops::ControlFlow;
use std::path::PathBuf;

use annals::{Body, Problem, ReadMode, ReplayOptions, SegmentId, SessionId, Store};

pub use filter::{Filter, FilterError, FilterSpec, Verdict};
pub use pattern::{Case, Pattern, PatternError};

use crate::lineage::Tree;

/// What to search.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// These sessions, in this order; empty means every session of the store, newest first.
    pub sessions: Vec<SessionId>,
    /// Only the newest segment of each session (whole, its forked prefix included) instead of
    /// the whole fork tree. The tree is searched with each fork starting at its fork point, so
    /// an entry a fork copied from its parent is found once, in the parent.
    pub newest_only: bool,
    /// Search the segments' debug traces instead of their logs.
    pub traces: bool,
}

/// What to find.
#[derive(Debug, Clone)]
pub struct Query {
    /// Matched against each entry's JSON text.
    pub pattern: Pattern,
    /// Every test of which an entry must also pass.
    pub filter: Filter,
}

/// One matching entry. Borrowed from the replay's buffer for the duration of the call.
#[derive(Debug, Clone, Copy)]
pub struct Hit<'a> {
    /// Its session.
    pub session: SessionId,
    /// Its segment.
    pub segment: SegmentId,
    /// Its sequence number in that segment.
    pub seq: u64,
    /// When it was appended, where the store recorded it (`None` in format-v1 files).
    pub appended_ms: Option<u64>,
    /// The entry's JSON text, exactly as appended.
    pub json: &'a str,
    /// The entry is kept as a blob (it was too long for a line) and was re-inflated.
    pub from_blob: bool,
}

/// Where a search is, handed to [`SearchSink::progress`].
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// The session being searched.
    pub session: SessionId,
    /// The segment being searched.
    pub segment: SegmentId,
    /// The last sequence number read in it (0 at the start of the segment).
    pub seq: u64,
    /// The segment's entry count when listed (0 for a trace, whose count is not known).
    pub count: u64,
    /// Entries read so far, in all.
    pub entries: u64,
    /// Hits so far.
    pub hits: u64,
}

/// Receives a search's hits and, now and then, its progress. Any
/// `FnMut(Hit<'_>) -> ControlFlow<()>` closure is one.
pub trait SearchSink {
    /// One matching entry; `Break` ends the search ([`SearchStats::stopped`]).
    fn hit(&mut self, hit: Hit<'_>) -> ControlFlow<()>;

    /// Called before each file and every [`PROGRESS_EVERY`] entries inside one: for a
    /// progress display, and to stop a long search that finds nothing (Ctrl-C, a deadline).
    fn progress(&mut self, _at: &Progress) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
}

impl<F: FnMut(Hit<'_>) -> ControlFlow<()>> SearchSink for F {
    fn hit(&mut self, hit: Hit<'_>) -> ControlFlow<()> {
        self(hit)
    }
}

/// Entries between two [`SearchSink::progress`] calls inside one file.
pub const PROGRESS_EVERY: u64 = 4096;

/// A damaged file met by a search: its first problem and how many it has.
#[derive(Debug, Clone)]
pub struct Damage {
    /// The session.
    pub session: SessionId,
    /// The segment.
    pub segment: SegmentId,
    /// The file, where the backend has files.
    pub path: Option<PathBuf>,
    /// Its first problem.
    pub first: Problem,
    /// How many problems it has in all.
    pub count: u64,
}

/// A session or segment a search could not read at all.
#[derive(Debug)]
pub struct Unreadable {
    /// The session.
    pub session: SessionId,
    /// The segment, unless the session could not even be listed.
    pub segment: Option<SegmentId>,
    /// Why.
    pub error: annals::Error,
}

/// What a search read and found.
#[derive(Debug, Default)]
pub struct SearchStats {
    /// Sessions searched.
    pub sessions: u64,
    /// Files (segment logs or traces) searched.
    pub files: u64,
    /// Entries read (passing the filter or not).
    pub entries: u64,
    /// Bytes of entry JSON read.
    pub bytes: u64,
    /// Entries that matched and passed the filter.
    pub hits: u64,
    /// Entries left out because a time filter was set and they have no append time.
    pub untimed: u64,
    /// The sink asked to stop.
    pub stopped: bool,
    /// Damaged files, at most [`SearchStats::MAX_LISTED`] of them.
    pub damaged: Vec<Damage>,
    /// How many damaged files in all.
    pub damaged_count: u64,
    /// Sessions and files that could not be read, at most [`SearchStats::MAX_LISTED`].
    pub unreadable: Vec<Unreadable>,
    /// How many in all.
    pub unreadable_count: u64,
}

impl SearchStats {
    /// Problems kept in the lists; beyond that they are only counted.
    pub const MAX_LISTED: usize = 100;

    /// Adds another part of a search's totals (one session searched apart) to these.
    fn absorb(&mut self, other: Self) {
        self.sessions += other.sessions;
        self.files += other.files;
        self.entries += other.entries;
        self.bytes += other.bytes;
        self.hits += other.hits;
        self.untimed += other.untimed;
        self.stopped |= other.stopped;
        self.damaged_count += other.damaged_count;
        let room = Self::MAX_LISTED.saturating_sub(self.damaged.len());
        self.damaged.extend(other.damaged.into_iter().take(room));
        self.unreadable_count += other.unreadable_count;
        let room = Self::MAX_LISTED.saturating_sub(self.unreadable.len());
        self.unreadable
            .extend(other.unreadable.into_iter().take(room));
    }

    fn note_unreadable(
        &mut self,
        session: SessionId,
        segment: Option<SegmentId>,
        error: annals::Error,
    ) {
        self.unreadable_count += 1;
        if self.unreadable.len() < Self::MAX_LISTED {
            self.unreadable.push(Unreadable {
                session,
                segment,
                error,
            });
        }
    }
}

/// Searches `scope` for entries matching `query`, calling `sink` for each hit in store order
/// (sessions as in [`Scope::sessions`], segments in fork-tree order, entries by sequence
/// number). Never writes.
///
/// Cost: one replay per segment from its first own entry (or `--from`), checking every line
/// read (CRC, sequence) and reading every blob in range; `--where` parses the JSON of each entry
/// that matches the pattern. Sessions are searched on up to four threads at once
/// (the machine's cores), the hits handed to `sink` on the calling thread in the same order as
/// a search on one thread; each thread holds at most 8 MiB of hits ahead of the sink (plus one
/// entry).
///
/// # Errors
/// Only when the store's sessions cannot be listed at all. A session or file that cannot be
/// read is reported in [`SearchStats::unreadable`](SearchStats#structfield.unreadable) and the
/// search goes on; a session or segment deleted meanwhile is skipped.
pub fn search(
    store: &dyn Store,
    scope: &Scope,
    query: &Query,
    sink: &mut dyn SearchSink,
) -> annals::Result<SearchStats> {
    let sessions = if scope.sessions.is_empty() {
        store.list_sessions()?
    } else {
        scope.sessions.clone()
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(MAX_THREADS)
        .min(sessions.len());
    if threads > 1 {
        return Ok(parallel::search(
            store, &sessions, scope, query, sink, threads,
        ));
    }
    let mut stats = SearchStats::default();
    for session in sessions {
        if search_session(store, session, scope, query, sink, &mut stats).is_break() {
            stats.stopped = true;
            break;
        }
    }
    Ok(stats)
}

/// Threads searching sessions at once, at most (the machine's cores, if fewer).
const MAX_THREADS: usize = 4;

/// One session's segments, in fork-tree order.
fn search_session(
    store: &dyn Store,
    session: SessionId,
    scope: &Scope,
    query: &Query,
    sink: &mut dyn SearchSink,
    stats: &mut SearchStats,
) -> ControlFlow<()> {
    let list = match store.list_segments(session) {
        Ok(list) => list,
        Err(annals::Error::SessionNotFound(_)) => return ControlFlow::Continue(()),
        Err(e) => {
            stats.note_unreadable(session, None, e);
            return ControlFlow::Continue(());
        }
    };
    stats.sessions += 1;
    let tree = Tree::new(list);
    let plan: Vec<(SegmentId, u64, u64)> = if scope.newest_only {
        tree.newest()
            .map(|n| (n.info.segment, 0, n.info.tip.count))
            .into_iter()
            .collect()
    } else {
        tree.nodes
            .iter()
            .map(|n| (n.info.segment, n.own_from, n.info.tip.count))
            .collect()
    };
    for (segment, own_from, count) in plan {
        // A trace is numbered on its own: the fork point of its segment does not apply.
        let own_from = if scope.traces { 0 } else { own_from };
        let file = File {
            session,
            segment,
            from: own_from.max(query.filter.from_seq()),
            count: if scope.traces { 0 } else { count },
            trace: scope.traces,
        };
        search_file(store, &file, query, sink, stats)?;
    }
    ControlFlow::Continue(())
}

struct File {
    session: SessionId,
    segment: SegmentId,
    from: u64,
    count: u64,
    trace: bool,
}

fn search_file(
    store: &dyn Store,
    file: &File,
    query: &Query,
    sink: &mut dyn SearchSink,
    stats: &mut SearchStats,
) -> ControlFlow<()> {
    let at = |seq, entries, hits| Progress {
        session: file.session,
        segment: file.segment,
        seq,
        count: file.count,
        entries,
        hits,
    };
    sink.progress(&at(file.from, stats.entries, stats.hits))?;
    let options = ReplayOptions {
        mode: ReadMode::Tolerant,
        from_seq: file.from,
        blob_refs: false,
    };
    let filter = &query.filter;
    let mut stopped = false;
    let mut counted = (0u64, 0u64, 0u64, 0u64);
    let mut on_entry = |entry: annals::Entry<'_>| -> annals::Result<ControlFlow<()>> {
        if filter.past_end(entry.seq) {
            return Ok(ControlFlow::Break(()));
        }
        let Some(json) = entry.json() else {
            return Ok(ControlFlow::Continue(()));
        };
        let (entries, bytes, hits, untimed) = &mut counted;
        *entries += 1;
        *bytes += json.len() as u64;
        if *entries % PROGRESS_EVERY == 0 {
            let now = at(entry.seq, stats.entries + *entries, stats.hits + *hits);
            if sink.progress(&now).is_break() {
                stopped = true;
                return Ok(ControlFlow::Break(()));
            }
        }
        if entry.seq < filter.from_seq() {
            return Ok(ControlFlow::Continue(()));
        }
        match filter.check_time(entry.appended_ms) {
            Verdict::Pass => {}
            Verdict::NoTime => {
                *untimed += 1;
                return Ok(ControlFlow::Continue(()));
            }
            Verdict::Fail => return Ok(ControlFlow::Continue(())),
        }
        if !query.pattern.is_match(json) || !filter.check_fields(json) {
            return Ok(ControlFlow::Continue(()));
        }
        *hits += 1;
        let hit = Hit {
            session: file.session,
            segment: file.segment,
            seq: entry.seq,
            appended_ms: entry.appended_ms,
            json,
            from_blob: matches!(entry.body, Body::Blob { .. }),
        };
        if sink.hit(hit).is_break() {
            stopped = true;
            return Ok(ControlFlow::Break(()));
        }
        Ok(ControlFlow::Continue(()))
    };
    let result = if file.trace {
        store.replay_trace_raw(file.session, file.segment, &options, &mut on_entry)
    } else {
        store.replay_raw(file.session, file.segment, &options, &mut on_entry)
    };
    let (entries, bytes, hits, untimed) = counted;
    stats.entries += entries;
    stats.bytes += bytes;
    stats.hits += hits;
    stats.untimed += untimed;
    match result {
        Ok(report) => {
            // An absent trace has no path: nothing was searched.
            if !file.trace || report.path.is_some() {
                stats.files += 1;
            }
            if let Some(first) = report.problems.first() {
                stats.damaged_count += 1;
                if stats.damaged.len() < SearchStats::MAX_LISTED {
                    stats.damaged.push(Damage {
                        session: file.session,
                        segment: file.segment,
                        path: report.path.clone(),
                        first: first.clone(),
                        count: report.problem_count,
                    });
                }
            }
        }
        // Deleted since it was listed: nothing left to search.
        Err(annals::Error::SegmentNotFound { .. } | annals::Error::SessionNotFound(_)) => {}
        Err(e) => stats.note_unreadable(file.session, Some(file.segment), e),
    }
    if stopped {
        ControlFlow::Break(())
    } else {
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests;
