//! The in-memory store: the semantics of [`FsStore`](crate::FsStore) without files, for tests
//! and for runtimes that do not need persistence. Nothing survives the process.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime};

use crate::blob::{Attachment, AttachmentMeta, BlobId, BlobRef, GcReport};
use crate::codec::Lineage;
use crate::lease::Patience;
use crate::store::{check_entry_size, Prepared, DEFAULT_MAX_ENTRY_BYTES};
use crate::{
    Body, Entry, Error, Lease, LeaseHolder, LeaseOptions, RawEntry, ReplayOptions, Result,
    ScanReport, SegmentId, SegmentInfo, SessionId, Sink, Store, Tip, DEFAULT_LOCK_WAIT,
};

/// An entry as kept: when it was appended, and its body in place or (if too long for a line on
/// disk) as a reference to a blob, exactly as the filesystem store decides, so that raw replays
/// and blob garbage collection behave the same.
#[derive(Debug, Clone)]
struct Stored {
    appended_ms: u64,
    body: Kept,
}

#[derive(Debug, Clone)]
enum Kept {
    Inline(RawEntry),
    Blob(BlobRef),
}

impl Stored {
    fn len(&self) -> u64 {
        match &self.body {
            Kept::Inline(e) => e.len() as u64,
            Kept::Blob(r) => r.len,
        }
    }
}

#[derive(Debug)]
struct Segment {
    entries: Vec<Stored>,
    trace: Vec<Stored>,
    generation: u64,
    created_ms: u64,
    fork: Option<Lineage>,
    modified: SystemTime,
    /// The lease that holds the segment, if one does: its token and holder.
    lease: Option<(u64, LeaseHolder)>,
}

impl Segment {
    fn new(entries: Vec<Stored>, fork: Option<Lineage>) -> Self {
        Self {
            entries,
            trace: Vec::new(),
            generation: 0,
            created_ms: crate::now_ms(),
            fork,
            modified: SystemTime::now(),
            lease: None,
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
    blobs: BTreeMap<BlobId, Arc<[u8]>>,
    attachments: Vec<Attachment>,
}

impl Session {
    /// Keeps `entries` as the filesystem store would: blobs for those too long for a line.
    /// Sizes are checked first, so a refused batch changes nothing.
    fn store(&mut self, entries: &[RawEntry], max: usize) -> Result<Vec<Stored>> {
        for e in entries {
            check_entry_size(e, max)?;
        }
        let appended_ms = crate::now_ms();
        Ok(entries
            .iter()
            .map(
                |e| match Prepared::of(e, crate::codec::Version::NEW_FILES) {
                    Prepared::Inline(e) => Stored {
                        appended_ms,
                        body: Kept::Inline(e.clone()),
                    },
                    Prepared::Blob(r) => {
                        self.blobs
                            .entry(r.sha256)
                            .or_insert_with(|| Arc::from(e.as_str().as_bytes()));
                        Stored {
                            appended_ms,
                            body: Kept::Blob(r),
                        }
                    }
                },
            )
            .collect())
    }
}

/// A [`Store`] in memory. Same semantics as the filesystem store (the conformance suite checks
/// both); damage on disk cannot happen here, so scans are always clean.
#[derive(Debug)]
pub struct MemStore {
    // Shared with the leases the store hands out.
    sessions: Arc<RwLock<BTreeMap<SessionId, Session>>>,
    max_entry_bytes: usize,
    lock_wait: Duration,
}

/// Who asks: a writer without a lease, or the lease with this token.
type Writer = Option<u64>;

static NEXT_TOKEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Default for MemStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemStore {
    /// An empty store, with the default maximum entry size (64 MiB).
    #[must_use]
    pub fn new() -> Self {
        Self::with_max_entry_bytes(DEFAULT_MAX_ENTRY_BYTES)
    }

    /// An empty store that refuses entries (and attachments) above `max` bytes.
    #[must_use]
    pub fn with_max_entry_bytes(max: usize) -> Self {
        Self {
            sessions: Arc::new(RwLock::new(BTreeMap::new())),
            max_entry_bytes: max,
            lock_wait: DEFAULT_LOCK_WAIT,
        }
    }

    /// The same store, waiting at most `wait` (instead of [`DEFAULT_LOCK_WAIT`]) for a segment
    /// that a lease holds before a writer without the lease gets [`Error::Locked`].
    #[must_use]
    pub fn with_lock_wait(mut self, wait: Duration) -> Self {
        self.lock_wait = wait;
        self
    }

    /// Another view of the same store, for a lease to own.
    fn share(&self) -> Self {
        Self {
            sessions: Arc::clone(&self.sessions),
            max_entry_bytes: self.max_entry_bytes,
            lock_wait: self.lock_wait,
        }
    }

    /// Runs `f` under the write lock once no lease other than `writer`'s holds any of
    /// `segments` of `session`, waiting at most `wait` for that; then [`Error::Locked`].
    fn writing<T>(
        &self,
        session: SessionId,
        segments: &[SegmentId],
        writer: Writer,
        wait: Duration,
        mut f: impl FnMut(&mut BTreeMap<SessionId, Session>) -> Result<T>,
    ) -> Result<T> {
        let mut patience = Patience::new(wait);
        loop {
            let (segment, holder) = {
                let mut map = self.write();
                let held = map.get(&session).and_then(|s| {
                    s.segments.iter().find_map(|(id, seg)| match &seg.lease {
                        Some((token, holder))
                            if segments.contains(id) && Some(*token) != writer =>
                        {
                            Some((*id, holder.clone()))
                        }
                        _ => None,
                    })
                });
                match held {
                    None => return f(&mut map),
                    Some(held) => held,
                }
            };
            if !patience.pause() {
                return Err(Error::Locked {
                    session,
                    segment,
                    holder: Some(holder),
                    waited: patience.waited(),
                });
            }
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, BTreeMap<SessionId, Session>> {
        // A panic in another thread cannot leave the map half-updated: every mutation below
        // checks first and changes after, so a poisoned lock is still consistent.
        self.sessions.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, BTreeMap<SessionId, Session>> {
        self.sessions.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends `entries` to an existing segment (blobs into its session) and returns the tip.
    fn extend(
        &self,
        map: &mut BTreeMap<SessionId, Session>,
        session: SessionId,
        segment: SegmentId,
        entries: &[RawEntry],
    ) -> Result<Tip> {
        let s = map
            .get_mut(&session)
            .ok_or(Error::SessionNotFound(session))?;
        let stored = s.store(entries, self.max_entry_bytes)?;
        let seg = segment_mut(map, session, segment)?;
        seg.entries.extend(stored);
        seg.modified = SystemTime::now();
        Ok(seg.tip())
    }

    /// Truncate, with `expected` the detector's check, under the same write lock.
    fn rewrite_keeping(
        &self,
        session: SessionId,
        segment: SegmentId,
        keep: u64,
        expected: Option<Tip>,
        writer: Writer,
    ) -> Result<Tip> {
        let wait = self.wait_of(writer);
        self.writing(session, &[segment], writer, wait, |map| {
            Self::rewrite_in(map, session, segment, keep, expected)
        })
    }

    /// How long `writer` waits for a held segment: a lease holds it, and never waits.
    fn wait_of(&self, writer: Writer) -> Duration {
        match writer {
            Some(_) => Duration::ZERO,
            None => self.lock_wait,
        }
    }

    fn rewrite_in(
        map: &mut BTreeMap<SessionId, Session>,
        session: SessionId,
        segment: SegmentId,
        keep: u64,
        expected: Option<Tip>,
    ) -> Result<Tip> {
        let seg = segment_mut(map, session, segment)?;
        if let Some(expected) = expected {
            if seg.tip() != expected {
                return Err(Error::ConcurrentWriter {
                    segment,
                    expected,
                    found: seg.tip(),
                });
            }
        }
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

    /// Fork, as `writer` (the source must not be held by another's lease).
    fn fork_as(
        &self,
        session: SessionId,
        source: SegmentId,
        at: u64,
        into: SegmentId,
        writer: Writer,
    ) -> Result<Tip> {
        let wait = self.wait_of(writer);
        self.writing(session, &[source], writer, wait, |map| {
            Self::fork_in(map, session, source, at, into)
        })
    }

    fn fork_in(
        map: &mut BTreeMap<SessionId, Session>,
        session: SessionId,
        source: SegmentId,
        at: u64,
        into: SegmentId,
    ) -> Result<Tip> {
        let src = segment_ref(map, session, source)?;
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

    /// Appends as `writer` (waiting for a segment held by another's lease).
    fn append_as(
        &self,
        session: SessionId,
        segment: SegmentId,
        entries: &[RawEntry],
        writer: Writer,
    ) -> Result<Tip> {
        let wait = self.wait_of(writer);
        self.writing(session, &[segment], writer, wait, |map| {
            segment_mut(map, session, segment)?;
            self.extend(map, session, segment, entries)
        })
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

/// What a replay needs, taken under the lock so that the sink may call back into the store.
type Snapshot = (Vec<Stored>, BTreeMap<BlobId, Arc<[u8]>>);

fn snapshot(
    map: &BTreeMap<SessionId, Session>,
    entries: &[Stored],
    session: SessionId,
) -> Snapshot {
    let blobs = map
        .get(&session)
        .map(|s| s.blobs.clone())
        .unwrap_or_default();
    (entries.to_vec(), blobs)
}

fn replay_vec(
    (entries, blobs): Snapshot,
    options: &ReplayOptions,
    sink: &mut Sink<'_>,
) -> Result<ScanReport> {
    let mut report = ScanReport::default();
    for (seq, e) in (0u64..).zip(&entries) {
        report.entries = seq + 1;
        if seq < options.from_seq {
            continue;
        }
        let appended_ms = Some(e.appended_ms);
        let body = match &e.body {
            Kept::Inline(e) => Body::Inline(e.as_str()),
            Kept::Blob(r) if options.blob_refs => Body::Blob {
                reference: r,
                json: None,
            },
            Kept::Blob(r) => {
                // Blobs are only removed when nothing refers to them, so this one is there.
                let bytes = blobs.get(&r.sha256).map_or(&[][..], |b| &b[..]);
                Body::Blob {
                    reference: r,
                    json: Some(std::str::from_utf8(bytes).unwrap_or_default()),
                }
            }
        };
        let flow = sink(Entry {
            seq,
            appended_ms,
            body,
        })?;
        if flow.is_break() {
            report.stopped = true;
            return Ok(report);
        }
    }
    Ok(report)
}

impl Store for MemStore {
    fn create_segment(
        &self,
        session: SessionId,
        segment: SegmentId,
        initial: &[RawEntry],
    ) -> Result<Tip> {
        let mut map = self.write();
        if map
            .get(&session)
            .is_some_and(|s| s.segments.contains_key(&segment))
        {
            return Err(Error::SegmentExists { session, segment });
        }
        // Before the session is made: a refused create leaves nothing behind.
        for e in initial {
            check_entry_size(e, self.max_entry_bytes)?;
        }
        let s = map.entry(session).or_default();
        let stored = s.store(initial, self.max_entry_bytes)?;
        let seg = Segment::new(stored, None);
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
        self.append_as(session, segment, entries, None)
    }

    fn append_if(
        &self,
        session: SessionId,
        segment: SegmentId,
        expected: Tip,
        entries: &[RawEntry],
    ) -> Result<Tip> {
        self.writing(session, &[segment], None, self.lock_wait, |map| {
            let seg = segment_mut(map, session, segment)?;
            // Sizes first, as the filesystem store must (it writes blobs before it looks at
            // the tip): a refused entry is refused whatever the tip.
            for e in entries {
                check_entry_size(e, self.max_entry_bytes)?;
            }
            if seg.tip() != expected {
                return Err(Error::ConcurrentWriter {
                    segment,
                    expected,
                    found: seg.tip(),
                });
            }
            self.extend(map, session, segment, entries)
        })
    }

    fn lease(
        &self,
        session: SessionId,
        segment: SegmentId,
        options: &LeaseOptions,
    ) -> Result<Box<dyn Lease>> {
        let token = NEXT_TOKEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let holder = LeaseHolder::this_process();
        self.writing(session, &[segment], None, options.wait, |map| {
            let seg = segment_mut(map, session, segment)?;
            seg.lease = Some((token, holder.clone()));
            Ok(())
        })?;
        Ok(Box::new(MemLease {
            store: self.share(),
            session,
            segment,
            token,
            holder,
        }))
    }

    fn replay_raw(
        &self,
        session: SessionId,
        segment: SegmentId,
        options: &ReplayOptions,
        sink: &mut Sink<'_>,
    ) -> Result<ScanReport> {
        // Snapshot first: the sink may call back into the store.
        let snap = {
            let map = self.read();
            snapshot(&map, &segment_ref(&map, session, segment)?.entries, session)
        };
        replay_vec(snap, options, sink)
    }

    fn tip(&self, session: SessionId, segment: SegmentId) -> Result<Tip> {
        Ok(segment_ref(&self.read(), session, segment)?.tip())
    }

    fn truncate(&self, session: SessionId, segment: SegmentId, keep: u64) -> Result<Tip> {
        self.rewrite_keeping(session, segment, keep, None, None)
    }

    fn truncate_if(
        &self,
        session: SessionId,
        segment: SegmentId,
        expected: Tip,
        keep: u64,
    ) -> Result<Tip> {
        self.rewrite_keeping(session, segment, keep, Some(expected), None)
    }

    fn sync(&self, session: SessionId, segment: SegmentId) -> Result<()> {
        // Nothing is ever more durable than memory here; the segment must exist all the same.
        segment_ref(&self.read(), session, segment).map(|_| ())
    }

    fn fork(&self, session: SessionId, source: SegmentId, at: u64, into: SegmentId) -> Result<Tip> {
        self.fork_as(session, source, at, into, None)
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
                bytes: seg.entries.iter().map(|e| e.len() + 1).sum(),
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
        // Not while a lease holds one of its segments (its holder would go on appending to
        // a session that is gone).
        let segments: Vec<SegmentId> = self
            .read()
            .get(&session)
            .map(|s| s.segments.keys().copied().collect())
            .unwrap_or_default();
        self.writing(session, &segments, None, self.lock_wait, |map| {
            map.remove(&session)
                .map(|_| ())
                .ok_or(Error::SessionNotFound(session))
        })
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
        segment_mut(&mut map, session, segment)?;
        let s = map
            .get_mut(&session)
            .ok_or(Error::SessionNotFound(session))?;
        let stored = s.store(events, self.max_entry_bytes)?;
        let seg = segment_mut(&mut map, session, segment)?;
        seg.trace.extend(stored);
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
        let snap = {
            let map = self.read();
            snapshot(&map, &segment_ref(&map, session, segment)?.trace, session)
        };
        replay_vec(snap, options, sink)
    }

    fn put_attachment(
        &self,
        session: SessionId,
        bytes: &[u8],
        meta: &AttachmentMeta,
    ) -> Result<Attachment> {
        if bytes.len() > self.max_entry_bytes {
            return Err(Error::EntryTooLarge {
                size: bytes.len(),
                limit: self.max_entry_bytes,
            });
        }
        let mut map = self.write();
        let s = map
            .get_mut(&session)
            .ok_or(Error::SessionNotFound(session))?;
        let id = BlobId::of(bytes);
        s.blobs.entry(id).or_insert_with(|| Arc::from(bytes));
        let attachment = Attachment {
            id,
            len: bytes.len() as u64,
            meta: meta.clone(),
            created_ms: crate::now_ms(),
        };
        s.attachments.push(attachment.clone());
        Ok(attachment)
    }

    fn list_attachments(&self, session: SessionId) -> Result<Vec<Attachment>> {
        let map = self.read();
        let s = map.get(&session).ok_or(Error::SessionNotFound(session))?;
        Ok(s.attachments.clone())
    }

    fn get_blob(&self, session: SessionId, id: &BlobId) -> Result<Vec<u8>> {
        self.read()
            .get(&session)
            .and_then(|s| s.blobs.get(id))
            .map(|b| b.to_vec())
            .ok_or(Error::BlobNotFound { session, id: *id })
    }

    fn gc_blobs(&self, session: SessionId, dry_run: bool) -> Result<GcReport> {
        let mut map = self.write();
        let s = map
            .get_mut(&session)
            .ok_or(Error::SessionNotFound(session))?;
        let mut referenced: BTreeSet<BlobId> = s.attachments.iter().map(|a| a.id).collect();
        for seg in s.segments.values() {
            for e in seg.entries.iter().chain(&seg.trace) {
                if let Kept::Blob(r) = &e.body {
                    referenced.insert(r.sha256);
                }
            }
        }
        let mut report = GcReport::default();
        for (id, bytes) in &s.blobs {
            if referenced.contains(id) {
                report.kept += 1;
            } else {
                report.orphans.push(*id);
                report.orphan_bytes += bytes.len() as u64;
            }
        }
        if !dry_run {
            for id in &report.orphans {
                s.blobs.remove(id);
            }
        }
        Ok(report)
    }

    fn max_entry_bytes(&self) -> usize {
        self.max_entry_bytes
    }

    fn is_durable(&self) -> bool {
        false
    }
}

/// [`MemStore`]'s [`Lease`]: a mark on the segment that other writers wait for.
#[derive(Debug)]
struct MemLease {
    store: MemStore,
    session: SessionId,
    segment: SegmentId,
    token: u64,
    holder: LeaseHolder,
}

impl MemLease {
    fn give_back(&self) {
        let mut map = self.store.write();
        if let Ok(seg) = segment_mut(&mut map, self.session, self.segment) {
            if seg.lease.as_ref().is_some_and(|(t, _)| *t == self.token) {
                seg.lease = None;
            }
        }
    }
}

impl Lease for MemLease {
    fn session(&self) -> SessionId {
        self.session
    }

    fn segment(&self) -> SegmentId {
        self.segment
    }

    fn holder(&self) -> &LeaseHolder {
        &self.holder
    }

    fn tip(&self) -> Tip {
        // Nobody else can change or delete the segment while it is held.
        segment_ref(&self.store.read(), self.session, self.segment)
            .map(Segment::tip)
            .unwrap_or_default()
    }

    fn append_batch_raw(&self, entries: &[RawEntry]) -> Result<Tip> {
        self.store
            .append_as(self.session, self.segment, entries, Some(self.token))
    }

    fn sync(&self) -> Result<()> {
        self.store.sync(self.session, self.segment)
    }

    fn truncate(&self, keep: u64) -> Result<Tip> {
        self.store
            .rewrite_keeping(self.session, self.segment, keep, None, Some(self.token))
    }

    fn fork(&self, at: u64, into: SegmentId) -> Result<Tip> {
        self.store
            .fork_as(self.session, self.segment, at, into, Some(self.token))
    }

    fn release(self: Box<Self>) -> Result<()> {
        self.give_back();
        Ok(())
    }
}

impl Drop for MemLease {
    fn drop(&mut self) {
        self.give_back();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `store_ops` fuzz target: `FsStore` refuses an oversized entry before it
    /// compares tips, and the in-memory store must say the same.
    #[test]
    fn append_if_refuses_an_oversized_entry_before_comparing_tips() {
        let store = MemStore::with_max_entry_bytes(10);
        let (session, segment) = (SessionId::new(), SegmentId::new());
        store.create_segment(session, segment, &[]).unwrap();
        let stale = Tip {
            count: 1,
            generation: 0,
        };
        let big = RawEntry::from_json(r#""more than ten bytes""#).unwrap();
        assert!(matches!(
            store.append_if(session, segment, stale, &[big]),
            Err(Error::EntryTooLarge {
                size: 21,
                limit: 10
            })
        ));
    }
}
