//! The in-memory store: the semantics of [`FsStore`](crate::FsStore) without files, for tests
//! and for runtimes that do not need persistence. Nothing survives the process.

use std::collections::BTreeMap;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::SystemTime;

use crate::codec::Lineage;
use crate::store::check_size;
use crate::{
    Error, RawEntry, ReplayOptions, Result, ScanReport, SegmentId, SegmentInfo, SessionId, Sink,
    Store, Tip,
};

#[derive(Debug)]
struct Segment {
    entries: Vec<RawEntry>,
    trace: Vec<RawEntry>,
    generation: u64,
    created_ms: u64,
    fork: Option<Lineage>,
    modified: SystemTime,
}

impl Segment {
    fn new(entries: Vec<RawEntry>, fork: Option<Lineage>) -> Self {
        Self {
            entries,
            trace: Vec::new(),
            generation: 0,
            created_ms: crate::now_ms(),
            fork,
            modified: SystemTime::now(),
        }
    }

    fn tip(&self) -> Tip {
        Tip {
            count: self.entries.len() as u64,
            generation: self.generation,
        }
    }
}

#[derive(Debug, Default)]
struct Session {
    segments: BTreeMap<SegmentId, Segment>,
}

/// A [`Store`] in memory. Same semantics as the filesystem store (the conformance suite checks
/// both); damage on disk cannot happen here, so scans are always clean.
#[derive(Debug, Default)]
pub struct MemStore {
    sessions: RwLock<BTreeMap<SessionId, Session>>,
}

impl MemStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> RwLockReadGuard<'_, BTreeMap<SessionId, Session>> {
        // A panic in another thread cannot leave the map half-updated: every mutation below
        // checks first and changes after, so a poisoned lock is still consistent.
        self.sessions.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, BTreeMap<SessionId, Session>> {
        self.sessions.write().unwrap_or_else(|e| e.into_inner())
    }
}

fn segment_mut(
    map: &mut BTreeMap<SessionId, Session>,
    session: SessionId,
    segment: SegmentId,
) -> Result<&mut Segment> {
    map.get_mut(&session)
        .and_then(|s| s.segments.get_mut(&segment))
        .ok_or(Error::SegmentNotFound { session, segment })
}

fn segment_ref(
    map: &BTreeMap<SessionId, Session>,
    session: SessionId,
    segment: SegmentId,
) -> Result<&Segment> {
    map.get(&session)
        .and_then(|s| s.segments.get(&segment))
        .ok_or(Error::SegmentNotFound { session, segment })
}

fn check_sizes(first_seq: u64, entries: &[RawEntry]) -> Result<()> {
    for (seq, e) in (first_seq..).zip(entries) {
        check_size(seq, e.as_str())?;
    }
    Ok(())
}

fn replay_vec(
    entries: &[RawEntry],
    options: &ReplayOptions,
    sink: &mut Sink<'_>,
) -> Result<ScanReport> {
    for (seq, e) in (0u64..).zip(entries) {
        if seq >= options.from_seq {
            sink(seq, e.as_str())?;
        }
    }
    Ok(ScanReport {
        entries: entries.len() as u64,
        ..ScanReport::default()
    })
}

impl Store for MemStore {
    fn create_segment(
        &self,
        session: SessionId,
        segment: SegmentId,
        initial: &[RawEntry],
    ) -> Result<Tip> {
        check_sizes(0, initial)?;
        let mut map = self.write();
        let s = map.entry(session).or_default();
        if s.segments.contains_key(&segment) {
            return Err(Error::SegmentExists { session, segment });
        }
        let seg = Segment::new(initial.to_vec(), None);
        let tip = seg.tip();
        s.segments.insert(segment, seg);
        Ok(tip)
    }

    fn append_batch_raw(
        &self,
        session: SessionId,
        segment: SegmentId,
        entries: &[RawEntry],
    ) -> Result<Tip> {
        let mut map = self.write();
        let seg = segment_mut(&mut map, session, segment)?;
        check_sizes(seg.entries.len() as u64, entries)?;
        seg.entries.extend_from_slice(entries);
        seg.modified = SystemTime::now();
        Ok(seg.tip())
    }

    fn append_if(
        &self,
        session: SessionId,
        segment: SegmentId,
        expected: Tip,
        entries: &[RawEntry],
    ) -> Result<Tip> {
        let mut map = self.write();
        let seg = segment_mut(&mut map, session, segment)?;
        if seg.tip() != expected {
            return Err(Error::ConcurrentWriter {
                segment,
                expected,
                found: seg.tip(),
            });
        }
        check_sizes(seg.entries.len() as u64, entries)?;
        seg.entries.extend_from_slice(entries);
        seg.modified = SystemTime::now();
        Ok(seg.tip())
    }

    fn replay_raw(
        &self,
        session: SessionId,
        segment: SegmentId,
        options: &ReplayOptions,
        sink: &mut Sink<'_>,
    ) -> Result<ScanReport> {
        // Snapshot first: the sink may call back into the store.
        let entries = segment_ref(&self.read(), session, segment)?.entries.clone();
        replay_vec(&entries, options, sink)
    }

    fn tip(&self, session: SessionId, segment: SegmentId) -> Result<Tip> {
        Ok(segment_ref(&self.read(), session, segment)?.tip())
    }

    fn truncate(&self, session: SessionId, segment: SegmentId, keep: u64) -> Result<Tip> {
        let mut map = self.write();
        let seg = segment_mut(&mut map, session, segment)?;
        let count = seg.entries.len() as u64;
        if keep > count {
            return Err(Error::BeyondEnd {
                segment,
                requested: keep,
                count,
            });
        }
        seg.entries
            .truncate(usize::try_from(keep).unwrap_or(usize::MAX));
        seg.generation += 1;
        seg.modified = SystemTime::now();
        Ok(seg.tip())
    }

    fn fork(&self, session: SessionId, source: SegmentId, at: u64, into: SegmentId) -> Result<Tip> {
        let mut map = self.write();
        let src = segment_ref(&map, session, source)?;
        let count = src.entries.len() as u64;
        if at > count {
            return Err(Error::BeyondEnd {
                segment: source,
                requested: at,
                count,
            });
        }
        let prefix = src
            .entries
            .get(..usize::try_from(at).unwrap_or(usize::MAX))
            .unwrap_or_default()
            .to_vec();
        let s = map.entry(session).or_default();
        if s.segments.contains_key(&into) {
            return Err(Error::SegmentExists {
                session,
                segment: into,
            });
        }
        let seg = Segment::new(
            prefix,
            Some(Lineage {
                segment: source,
                at,
            }),
        );
        let tip = seg.tip();
        s.segments.insert(into, seg);
        Ok(tip)
    }

    fn exists(&self, session: SessionId, segment: SegmentId) -> Result<bool> {
        Ok(segment_ref(&self.read(), session, segment).is_ok())
    }

    fn list_sessions(&self) -> Result<Vec<SessionId>> {
        Ok(self.read().keys().rev().copied().collect())
    }

    fn list_segments(&self, session: SessionId) -> Result<Vec<SegmentInfo>> {
        let map = self.read();
        let s = map.get(&session).ok_or(Error::SessionNotFound(session))?;
        Ok(s.segments
            .iter()
            .rev()
            .map(|(&segment, seg)| SegmentInfo {
                session,
                segment,
                tip: seg.tip(),
                bytes: seg.entries.iter().map(|e| e.len() as u64 + 1).sum(),
                modified: seg.modified,
                created_ms: seg.created_ms,
                fork: seg.fork,
                damage: None,
            })
            .collect())
    }

    fn find_session(&self, segment: SegmentId) -> Result<Option<SessionId>> {
        Ok(self
            .read()
            .iter()
            // Newest session first, as listed: the answer FsStore gives when an id is reused.
            .rev()
            .find(|(_, s)| s.segments.contains_key(&segment))
            .map(|(&id, _)| id))
    }

    fn delete_session(&self, session: SessionId) -> Result<()> {
        self.write()
            .remove(&session)
            .map(|_| ())
            .ok_or(Error::SessionNotFound(session))
    }

    fn session_modified(&self, session: SessionId) -> Result<SystemTime> {
        let map = self.read();
        let s = map.get(&session).ok_or(Error::SessionNotFound(session))?;
        Ok(s.segments
            .values()
            .map(|seg| seg.modified)
            .max()
            .unwrap_or(SystemTime::UNIX_EPOCH))
    }

    fn append_trace_raw(
        &self,
        session: SessionId,
        segment: SegmentId,
        events: &[RawEntry],
    ) -> Result<()> {
        let mut map = self.write();
        let seg = segment_mut(&mut map, session, segment)?;
        check_sizes(seg.trace.len() as u64, events)?;
        seg.trace.extend_from_slice(events);
        // As on disk, where the trace file's mtime counts for the session.
        seg.modified = SystemTime::now();
        Ok(())
    }

    fn replay_trace_raw(
        &self,
        session: SessionId,
        segment: SegmentId,
        options: &ReplayOptions,
        sink: &mut Sink<'_>,
    ) -> Result<ScanReport> {
        let trace = segment_ref(&self.read(), session, segment)?.trace.clone();
        replay_vec(&trace, options, sink)
    }
}
