//! The `Store` trait, the types it speaks, and the typed helpers on top of it.

use std::fmt;
use std::ops::{ControlFlow, Deref};
use std::path::PathBuf;
use std::time::SystemTime;

use serde::de::{DeserializeOwned, IgnoredAny};
use serde::Serialize;

use crate::blob::{Attachment, AttachmentMeta, BlobId, BlobRef, GcReport};
use crate::codec::{self, Lineage};
use crate::error::CorruptReason;
use crate::{Error, Result, SegmentId, SessionId};

/// The JSON text of one entry, compact (one line), as the store keeps it.
///
/// The raw currency of [`Store`]: backends never see the caller's types, so `dyn Store` works
/// with any entry type through [`StoreExt`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RawEntry(Box<str>);

impl RawEntry {
    /// Takes JSON text, checks that it is exactly one JSON value, and removes whitespace outside
    /// strings if it spans several lines.
    ///
    /// # Errors
    /// [`Error::InvalidJson`] if `text` is not one JSON value.
    pub fn from_json(text: &str) -> Result<Self> {
        serde_json::from_str::<IgnoredAny>(text).map_err(Error::InvalidJson)?;
        Ok(Self(match crate::codec::minify(text) {
            Some(compact) => compact.into_boxed_str(),
            None => text.into(),
        }))
    }

    /// Serializes a value as compact JSON.
    ///
    /// # Errors
    /// [`Error::Serialize`] if serde fails (a map with non-string keys, a failing `Serialize`).
    pub fn from_value<T: Serialize + ?Sized>(value: &T) -> Result<Self> {
        serde_json::to_string(value)
            .map(|s| Self(s.into_boxed_str()))
            .map_err(Error::Serialize)
    }

    /// Wraps text read back from a verified line (CRC checked, written by annals).
    pub(crate) fn from_verified(json: &str) -> Self {
        Self(json.into())
    }

    /// The JSON text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Length of the JSON text in bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True for an empty text (never the case for a valid entry).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Deserializes the entry.
    ///
    /// # Errors
    /// serde's error if the JSON does not fit `T`.
    pub fn to_value<T: DeserializeOwned>(&self) -> serde_json::Result<T> {
        serde_json::from_str(&self.0)
    }
}

impl fmt::Debug for RawEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for RawEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a writer knows about the end of a segment: how many entries it has, and which rewrite
/// generation of it this is. Two tips are equal only if no entry was appended, truncated or
/// rewritten in between, which is what the concurrent-writer detector compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, serde::Deserialize)]
pub struct Tip {
    /// Number of entries; also the sequence number the next entry gets.
    pub count: u64,
    /// Rewrite generation: 0 at creation, incremented by every rewrite that drops entries a
    /// reader may have had: a truncate, a repair that cuts a damaged line, a
    /// `RecoveryMode::PointInTime` cut at damage. Cutting only what readers never deliver (a
    /// torn line, an interrupted tail after a crash) keeps it, so a tip read before the cut
    /// still holds after it.
    pub generation: u64,
}

impl fmt::Display for Tip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} entries (generation {})", self.count, self.generation)
    }
}

/// How a replay treats damage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadMode {
    /// Stop at the first problem with [`Error::Corrupt`]. A torn tail is not a problem.
    #[default]
    Strict,
    /// Deliver every entry whose line checks out and report every problem in the
    /// [`ScanReport`].
    Tolerant,
}

/// Options of [`Store::replay_raw`].
///
/// ```
/// use std::ops::ControlFlow;
/// use annals::{MemStore, ReplayOptions, SegmentId, SessionId, Store, StoreExt};
/// # fn main() -> annals::Result<()> {
/// let store = MemStore::new();
/// let (session, segment) = (SessionId::new(), SegmentId::new());
/// store.create(session, segment, &[serde_json::json!({"n": 0}), serde_json::json!({"n": 1})])?;
/// // Read from entry 1 on, reporting damage instead of stopping at it.
/// let options = ReplayOptions::tolerant().from_seq(1);
/// let mut seen = Vec::new();
/// let report = store.replay_raw(session, segment, &options, &mut |entry| {
///     seen.push((entry.seq, entry.json().unwrap_or_default().to_owned()));
///     Ok(ControlFlow::Continue(()))
/// })?;
/// assert_eq!(seen, vec![(1, r#"{"n":1}"#.to_owned())]);
/// assert!(report.is_clean());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReplayOptions {
    /// Strict or tolerant.
    pub mode: ReadMode,
    /// Deliver only entries with a sequence number at or above this one. Backends may start
    /// reading at that entry (the filesystem store finds it by binary search), so lines before it
    /// are not necessarily checked.
    pub from_seq: u64,
    /// Hand out entries kept as blobs as their reference only ([`Body::Blob`] with `json: None`),
    /// without reading the blob: for tools that want to stay fast. A filesystem store still
    /// looks the blob up (in the pack's index, which a replay builds once from the record
    /// headers, or as a file) and checks its length, so that a line whose blob is missing ends
    /// the log (or is damage) as it does for every other reader; its bytes, CRC and hash are
    /// not read. Off by default: replay re-inflates (and checks) every entry. Typed replays
    /// ([`StoreExt::replay`]) ignore it.
    pub blob_refs: bool,
}

impl ReplayOptions {
    /// Strict replay of the whole segment.
    #[must_use]
    pub fn strict() -> Self {
        Self::default()
    }

    /// Tolerant replay of the whole segment.
    #[must_use]
    pub fn tolerant() -> Self {
        Self {
            mode: ReadMode::Tolerant,
            ..Self::default()
        }
    }

    /// Deliver entries from sequence number `seq` on.
    #[must_use]
    pub fn from_seq(mut self, seq: u64) -> Self {
        self.from_seq = seq;
        self
    }

    /// Deliver blob references instead of reading blobs (see [`ReplayOptions::blob_refs`]).
    #[must_use]
    pub fn blob_refs(mut self) -> Self {
        self.blob_refs = true;
        self
    }
}

/// The end of a file that a crash or power cut interrupted: the bytes from `offset` to the end
/// of the file are the last write(s), never acknowledged as durable, that did not fully reach
/// the disk. Not damage and never part of the log: readers deliver nothing from it, strict
/// replay does not fail on it, and the next writer removes it (see docs/FORMAT.md, *Recovery*).
/// In format 1 it is always an unterminated last line ([`crate::TailKind::TornLine`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TornTail {
    /// 1-based number of the line where the interrupted bytes start.
    pub line: u64,
    /// Where the interrupted bytes start: the end of the last complete write.
    pub offset: u64,
    /// How many there are (to the end of the file).
    pub len: u64,
    /// What they are.
    pub kind: crate::TailKind,
}

impl TornTail {
    /// An unterminated last line (number `line`) of `len` bytes at `offset`: the torn tail of
    /// every version.
    #[must_use]
    pub fn torn_line(line: u64, offset: u64, len: u64) -> Self {
        Self {
            line,
            offset,
            len,
            kind: crate::TailKind::TornLine,
        }
    }
}

/// One problem found by a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line number (line 1 is the header).
    pub line: u64,
    /// Byte offset where the line starts.
    pub offset: u64,
    /// What is wrong.
    pub reason: CorruptReason,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {} at byte {}: {}",
            self.line, self.offset, self.reason
        )
    }
}

/// What a scan (replay or verify) found. Scanning never changes the file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScanReport {
    /// The file scanned, where the backend has files.
    pub path: Option<PathBuf>,
    /// Entries whose lines checked out.
    pub entries: u64,
    /// The log is valid up to this byte: the end of the last line before the first problem.
    pub valid_up_to: u64,
    /// Bytes in the file when the scan started.
    pub file_len: u64,
    /// The interrupted end of the file, if any (not a problem): an unterminated last line, or in
    /// format 2 also an interrupted last write (a partial batch, zero-filled pages).
    pub torn_tail: Option<TornTail>,
    /// Problems, in file order; at most [`ScanReport::MAX_PROBLEMS`] are kept.
    pub problems: Vec<Problem>,
    /// How many problems there were in all (more than `problems.len()` if some were not kept).
    pub problem_count: u64,
    /// The sink asked to stop ([`ControlFlow::Break`]): the scan ended after the entry it was
    /// given, and what follows it was not read. `entries`, `valid_up_to` and `problems` then
    /// describe only the part that was read.
    pub stopped: bool,
}

impl ScanReport {
    /// Problems kept in [`ScanReport::problems`]; the rest are only counted, so that a scan of a
    /// badly damaged file stays in bounded memory.
    pub const MAX_PROBLEMS: usize = 1000;

    /// True if nothing but (possibly) a torn tail was found.
    #[must_use]
    pub fn is_clean(&self) -> bool {
        self.problem_count == 0
    }
}

/// A segment as listed: identity, size, lineage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    /// The session it belongs to.
    pub session: SessionId,
    /// The segment.
    pub segment: SegmentId,
    /// Its tip (entry count and rewrite generation).
    pub tip: Tip,
    /// Size in bytes, where the backend has files (the JSON text length otherwise).
    pub bytes: u64,
    /// Last modification.
    pub modified: SystemTime,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// Where it was forked from, if it was.
    pub fork: Option<Lineage>,
    /// Set when the segment's header or last line cannot be read; `tip`, `created_ms` and
    /// `fork` are then unknown (zero). A listing never fails because one segment is damaged.
    pub damage: Option<crate::Damage>,
}

/// One entry as a replay hands it out, borrowed from the reader's buffer for the duration of the
/// call: no allocation per entry unless the sink makes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    /// Sequence number: 0, 1, 2, … within the segment.
    pub seq: u64,
    /// When the store appended the entry, milliseconds since the Unix epoch. `None` where the
    /// backend did not record it (files of on-disk format version 1 kept no time).
    pub appended_ms: Option<u64>,
    /// The entry itself.
    pub body: Body<'a>,
}

impl<'a> Entry<'a> {
    /// The entry's JSON text, exactly as appended (compact). `None` only for an entry kept as a
    /// blob in a replay with [`ReplayOptions::blob_refs`].
    #[must_use]
    pub fn json(&self) -> Option<&'a str> {
        match self.body {
            Body::Inline(json) => Some(json),
            Body::Blob { json, .. } => json,
        }
    }

    /// Sequence number and append time.
    #[must_use]
    pub fn meta(&self) -> EntryMeta {
        EntryMeta {
            seq: self.seq,
            appended_ms: self.appended_ms,
        }
    }
}

/// How an entry is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body<'a> {
    /// Kept in its line: the entry's JSON text.
    Inline(&'a str),
    /// Kept as a blob (it was too long for a line). `json` is its text, read back and checked,
    /// unless the replay asked for references only ([`ReplayOptions::blob_refs`]).
    Blob {
        /// Where the entry is kept: hash, length, first bytes.
        reference: &'a BlobRef,
        /// The entry's JSON text, or `None` with [`ReplayOptions::blob_refs`].
        json: Option<&'a str>,
    },
}

/// What typed replays ([`StoreExt::replay`]) hand out next to each value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EntryMeta {
    /// Sequence number.
    pub seq: u64,
    /// Append time, milliseconds since the Unix epoch, where the backend recorded it.
    pub appended_ms: Option<u64>,
}

/// Sink of a replay: called with each entry, in order. `Ok(ControlFlow::Break(()))` stops the
/// replay early (it returns `Ok` with [`ScanReport::stopped`] set); an error stops it with that
/// error (wrap an error of your own with [`Error::sink`]).
pub type Sink<'a> = dyn FnMut(Entry<'_>) -> Result<ControlFlow<()>> + 'a;

/// What a typed replay's closure may return: `Result<()>` (always go on) or
/// `Result<ControlFlow<()>>` (stop early with `Break`).
pub trait SinkResult {
    /// As the flow a replay understands.
    ///
    /// # Errors
    /// The closure's own error.
    fn into_flow(self) -> Result<ControlFlow<()>>;
}

impl SinkResult for Result<()> {
    fn into_flow(self) -> Result<ControlFlow<()>> {
        self.map(|()| ControlFlow::Continue(()))
    }
}

impl SinkResult for Result<ControlFlow<()>> {
    fn into_flow(self) -> Result<ControlFlow<()>> {
        self
    }
}

/// A store of sessions, each holding segments of entries. Sync, object-safe, `Send + Sync`:
/// call it from any thread, as `dyn Store` if you like. Entries are JSON text
/// ([`RawEntry`]); [`StoreExt`] adds typed helpers for any `Serialize`/`DeserializeOwned` type.
///
/// Every segment operation is keyed by `(SessionId, SegmentId)`. Listings are newest first.
/// The behaviour every implementation must have is pinned down by the conformance suite in
/// `annals::testing` (feature `testing`).
///
/// ```
/// use std::sync::Arc;
/// use annals::{FsStore, MemStore, Store, StoreExt};
/// # fn main() -> annals::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// // Pick the backend once; the rest of the runtime only sees `dyn Store`.
/// let store: Arc<dyn Store> = if std::env::var_os("IN_MEMORY").is_some() {
///     Arc::new(MemStore::new())
/// } else {
///     Arc::new(FsStore::open(dir.path())?)
/// };
/// let (session, segment) = store.new_session()?;
/// store.append(session, segment, &serde_json::json!({"role": "user", "text": "hi"}))?;
/// assert_eq!(store.tip(session, segment)?.count, 1);
/// assert_eq!(store.list_sessions()?, vec![session]);
/// # Ok(()) }
/// ```
pub trait Store: Send + Sync {
    /// Creates a segment holding `initial`, crash-atomically: after a crash it either does not
    /// exist or holds all of `initial`. Creates the session if needed.
    ///
    /// # Errors
    /// [`Error::SegmentExists`] (nothing is changed), [`Error::EntryTooLarge`], I/O errors.
    fn create_segment(
        &self,
        session: SessionId,
        segment: SegmentId,
        initial: &[RawEntry],
    ) -> Result<Tip>;

    /// Appends entries as the next sequence numbers, in one write. Returns the new tip.
    /// If any entry is too large, nothing is written. No other writer's entry can land inside
    /// the batch, but a crash during it can leave a prefix of it in the log (each entry whole);
    /// see docs/DURABILITY.md.
    ///
    /// # Errors
    /// [`Error::SegmentNotFound`], [`Error::EntryTooLarge`], [`Error::Corrupt`] if the end of the
    /// segment is damaged, [`Error::Poisoned`] after a failed fsync, I/O errors.
    fn append_batch_raw(
        &self,
        session: SessionId,
        segment: SegmentId,
        entries: &[RawEntry],
    ) -> Result<Tip>;

    /// Appends one entry. See [`Store::append_batch_raw`].
    ///
    /// # Errors
    /// As [`Store::append_batch_raw`].
    fn append_raw(&self, session: SessionId, segment: SegmentId, entry: &RawEntry) -> Result<Tip> {
        self.append_batch_raw(session, segment, std::slice::from_ref(entry))
    }

    /// The concurrent-writer detector: appends only if the segment's tip is still `expected`
    /// (no other handle or process appended, truncated or rewrote it). O(1): it never re-reads
    /// the segment.
    ///
    /// # Errors
    /// [`Error::ConcurrentWriter`] with the tip found (nothing is written), and the errors of
    /// [`Store::append_batch_raw`].
    fn append_if(
        &self,
        session: SessionId,
        segment: SegmentId,
        expected: Tip,
        entries: &[RawEntry],
    ) -> Result<Tip>;

    /// Streams the segment's entries in order into `sink`, checking every line (CRC, sequence).
    /// Memory stays bounded whatever the segment's size. Never writes.
    ///
    /// # Errors
    /// [`Error::Corrupt`] in strict mode, [`Error::SegmentNotFound`], the sink's error.
    fn replay_raw(
        &self,
        session: SessionId,
        segment: SegmentId,
        options: &ReplayOptions,
        sink: &mut Sink<'_>,
    ) -> Result<ScanReport>;

    /// Checks every line of the segment (CRC, sequence, shape, torn tail) without delivering
    /// entries: the verify-only fast path. Never writes.
    ///
    /// # Errors
    /// [`Error::SegmentNotFound`], I/O errors. Damage is reported in the [`ScanReport`].
    fn verify(&self, session: SessionId, segment: SegmentId) -> Result<ScanReport> {
        self.replay_raw(session, segment, &ReplayOptions::tolerant(), &mut |_| {
            Ok(ControlFlow::Continue(()))
        })
    }

    /// Reads all entries in order (strict).
    ///
    /// # Errors
    /// As [`Store::replay_raw`].
    fn read_raw(&self, session: SessionId, segment: SegmentId) -> Result<Vec<RawEntry>> {
        let mut out = Vec::new();
        self.replay_raw(session, segment, &ReplayOptions::strict(), &mut |entry| {
            if let Some(json) = entry.json() {
                out.push(RawEntry::from_verified(json));
            }
            Ok(ControlFlow::Continue(()))
        })?;
        Ok(out)
    }

    /// Makes everything appended to the segment so far durable (on the filesystem store, one
    /// `fdatasync` of the segment file; nothing to do where every append already is). The way
    /// to make a turn of `Buffered` appends durable at its end. A failure is sticky, as for a
    /// `Sync` append: the file is not synced again as if it could succeed.
    ///
    /// # Errors
    /// [`Error::SegmentNotFound`], [`Error::Poisoned`], I/O errors.
    fn sync(&self, session: SessionId, segment: SegmentId) -> Result<()>;

    /// Takes the segment for this writer alone until the returned [`crate::Lease`] is released or
    /// dropped: appends through it need no per-append lock or check, and every other writer,
    /// in any process, waits at most its wait time and then gets [`Error::Locked`] naming this
    /// one. Readers are not held up. Taking it is where a writer takes over the segment: the
    /// end of the file is checked and anything a crashed writer left there handled, as for
    /// any first append. On the filesystem store the lease is an `flock` that dies with its
    /// process (`kill -9` included); see docs/DURABILITY.md.
    ///
    /// # Errors
    /// [`Error::Locked`] if another writer kept the segment for longer than `options.wait`,
    /// [`Error::SegmentNotFound`], [`Error::Corrupt`] if the end of the segment is damaged,
    /// [`Error::Poisoned`], I/O errors.
    fn lease(
        &self,
        session: SessionId,
        segment: SegmentId,
        options: &crate::LeaseOptions,
    ) -> Result<Box<dyn crate::Lease>>;

    /// The segment's tip: entry count and rewrite generation. O(1) amortized: its cost does not
    /// grow with the segment's size.
    ///
    /// # Errors
    /// [`Error::SegmentNotFound`], [`Error::Corrupt`] if the last line is damaged.
    fn tip(&self, session: SessionId, segment: SegmentId) -> Result<Tip>;

    /// Number of entries in the segment. See [`Store::tip`].
    ///
    /// # Errors
    /// As [`Store::tip`].
    fn entry_count(&self, session: SessionId, segment: SegmentId) -> Result<u64> {
        self.tip(session, segment).map(|t| t.count)
    }

    /// Keeps the first `keep` entries and drops the rest, by rewriting the segment
    /// crash-atomically (after a crash the segment is either the old or the new one). Bumps the
    /// generation, so writers holding the old tip see a [`Error::ConcurrentWriter`].
    ///
    /// # Errors
    /// [`Error::BeyondEnd`] if `keep` exceeds the count, [`Error::Corrupt`] if the kept prefix is
    /// damaged, I/O errors.
    fn truncate(&self, session: SessionId, segment: SegmentId, keep: u64) -> Result<Tip>;

    /// [`Store::truncate`] only if the segment's tip is still `expected`, checked atomically with
    /// the rewrite: the detector for a writer that cuts its own history
    /// ([`SegmentWriter::truncate`]).
    ///
    /// # Errors
    /// [`Error::ConcurrentWriter`] with the tip found (nothing changed), and the errors of
    /// [`Store::truncate`].
    fn truncate_if(
        &self,
        session: SessionId,
        segment: SegmentId,
        expected: Tip,
        keep: u64,
    ) -> Result<Tip>;

    /// Starts segment `into` of the same session from the first `at` entries of `source`
    /// (copied as stored, crash-atomically) and records the lineage. `source` is not touched.
    ///
    /// # Errors
    /// [`Error::BeyondEnd`], [`Error::SegmentExists`] for `into`, [`Error::Corrupt`] if the
    /// copied prefix is damaged, I/O errors.
    fn fork(&self, session: SessionId, source: SegmentId, at: u64, into: SegmentId) -> Result<Tip>;

    /// Does the segment exist?
    ///
    /// # Errors
    /// I/O errors only.
    fn exists(&self, session: SessionId, segment: SegmentId) -> Result<bool>;

    /// All sessions, newest first (by id, which is time-ordered).
    ///
    /// # Errors
    /// I/O errors.
    fn list_sessions(&self) -> Result<Vec<SessionId>>;

    /// The segments of a session, newest first, with their tips and lineage.
    ///
    /// # Errors
    /// [`Error::SessionNotFound`], I/O errors, [`Error::Corrupt`] for an unreadable header.
    fn list_segments(&self, session: SessionId) -> Result<Vec<SegmentInfo>>;

    /// The session that holds `segment`, if any. Should several hold a segment with that id,
    /// the newest session (the first in [`Store::list_sessions`]) is the answer.
    ///
    /// # Errors
    /// I/O errors.
    fn find_session(&self, segment: SegmentId) -> Result<Option<SessionId>>;

    /// Deletes a session with all its segments and traces.
    ///
    /// # Errors
    /// [`Error::SessionNotFound`], I/O errors.
    fn delete_session(&self, session: SessionId) -> Result<()>;

    /// When anything in the session last changed.
    ///
    /// # Errors
    /// [`Error::SessionNotFound`], I/O errors.
    fn session_modified(&self, session: SessionId) -> Result<SystemTime>;

    /// Appends events to the segment's debug trace (created on first use). The trace is
    /// separate from the log: truncating the log leaves it alone.
    ///
    /// # Errors
    /// [`Error::SegmentNotFound`], [`Error::EntryTooLarge`], I/O errors.
    fn append_trace_raw(
        &self,
        session: SessionId,
        segment: SegmentId,
        events: &[RawEntry],
    ) -> Result<()>;

    /// Streams the segment's debug trace into `sink` (an absent trace is empty).
    ///
    /// # Errors
    /// As [`Store::replay_raw`].
    fn replay_trace_raw(
        &self,
        session: SessionId,
        segment: SegmentId,
        options: &ReplayOptions,
        sink: &mut Sink<'_>,
    ) -> Result<ScanReport>;

    /// Stores `bytes` as an attachment of the session (an image, a file) in its blob store and
    /// records `meta` in the session's attachment index. Identical bytes are stored once.
    ///
    /// # Errors
    /// [`Error::SessionNotFound`], [`Error::EntryTooLarge`] above the store's maximum, I/O.
    fn put_attachment(
        &self,
        session: SessionId,
        bytes: &[u8],
        meta: &AttachmentMeta,
    ) -> Result<Attachment>;

    /// The session's attachments, in the order they were put.
    ///
    /// # Errors
    /// [`Error::SessionNotFound`], damage to the index.
    fn list_attachments(&self, session: SessionId) -> Result<Vec<Attachment>>;

    /// The bytes of a blob of the session (an attachment, or an entry kept as a blob), checked
    /// against its id.
    ///
    /// # Errors
    /// [`Error::BlobNotFound`], [`Error::Corrupt`] naming the blob if its bytes do not match.
    fn get_blob(&self, session: SessionId, id: &BlobId) -> Result<Vec<u8>>;

    /// Finds the session's blobs that no entry line and no attachment refers to any more (after
    /// a truncate or a deleted segment) and, unless `dry_run`, removes them. Safe against
    /// appends running at the same time: a blob is never removed between being written and its
    /// line being appended.
    ///
    /// # Errors
    /// [`Error::SessionNotFound`], I/O.
    fn gc_blobs(&self, session: SessionId, dry_run: bool) -> Result<GcReport>;

    /// The largest entry (bytes of JSON text) or attachment this store accepts; larger ones get
    /// [`Error::EntryTooLarge`].
    fn max_entry_bytes(&self) -> usize;

    /// Whether what this store acknowledges survives the process (a filesystem store does; an
    /// in-memory store does not).
    fn is_durable(&self) -> bool;
}

/// Typed helpers over any [`Store`], `dyn Store` included: entries of the caller's own
/// `Serialize`/`DeserializeOwned` types go in and come out without touching JSON text.
pub trait StoreExt: Store {
    /// Serializes and appends one entry.
    ///
    /// # Errors
    /// [`Error::Serialize`] and the errors of [`Store::append_batch_raw`].
    fn append<T: Serialize + ?Sized>(
        &self,
        session: SessionId,
        segment: SegmentId,
        entry: &T,
    ) -> Result<Tip> {
        self.append_raw(session, segment, &RawEntry::from_value(entry)?)
    }

    /// Serializes and appends entries in one write.
    ///
    /// # Errors
    /// [`Error::Serialize`] and the errors of [`Store::append_batch_raw`].
    fn append_batch<T: Serialize>(
        &self,
        session: SessionId,
        segment: SegmentId,
        entries: &[T],
    ) -> Result<Tip> {
        let raw = to_raw(entries)?;
        self.append_batch_raw(session, segment, &raw)
    }

    /// Creates an empty segment (no entry type to name, unlike `create(…, &[])`). See
    /// [`Store::create_segment`].
    ///
    /// # Errors
    /// As [`Store::create_segment`].
    fn create_empty(&self, session: SessionId, segment: SegmentId) -> Result<Tip> {
        self.create_segment(session, segment, &[])
    }

    /// Starts a new session: fresh (time-ordered) ids for it and its first segment, which is
    /// created empty. One call where a runtime starts a conversation.
    ///
    /// # Errors
    /// As [`Store::create_segment`].
    fn new_session(&self) -> Result<(SessionId, SegmentId)> {
        let (session, segment) = (SessionId::new(), SegmentId::new());
        self.create_segment(session, segment, &[])?;
        Ok((session, segment))
    }

    /// Creates a segment from typed entries. See [`Store::create_segment`].
    ///
    /// # Errors
    /// [`Error::Serialize`] and the errors of [`Store::create_segment`].
    fn create<T: Serialize>(
        &self,
        session: SessionId,
        segment: SegmentId,
        initial: &[T],
    ) -> Result<Tip> {
        let raw = to_raw(initial)?;
        self.create_segment(session, segment, &raw)
    }

    /// Reads all entries as `T`, strictly.
    ///
    /// # Errors
    /// [`Error::Deserialize`] naming the entry, and the errors of [`Store::replay_raw`].
    fn read<T: DeserializeOwned>(&self, session: SessionId, segment: SegmentId) -> Result<Vec<T>> {
        let mut out = Vec::new();
        self.replay(session, segment, &ReplayOptions::strict(), |_, entry: T| {
            out.push(entry);
            Ok(())
        })?;
        Ok(out)
    }

    /// Streams entries as `T` into `f`, with their sequence numbers and append times. `f` may
    /// return `Result<()>`, or `Result<ControlFlow<()>>` to stop early. Entries kept as blobs are
    /// always read back (`blob_refs` is ignored: a reference is not a `T`).
    ///
    /// # Errors
    /// [`Error::Deserialize`] naming the entry, and the errors of [`Store::replay_raw`].
    fn replay<T: DeserializeOwned, R: SinkResult>(
        &self,
        session: SessionId,
        segment: SegmentId,
        options: &ReplayOptions,
        mut f: impl FnMut(EntryMeta, T) -> R,
    ) -> Result<ScanReport> {
        let options = ReplayOptions {
            blob_refs: false,
            ..*options
        };
        self.replay_raw(session, segment, &options, &mut |entry| {
            let value = deserialize(segment, &entry)?;
            f(entry.meta(), value).into_flow()
        })
    }

    /// Appends one typed event to the debug trace.
    ///
    /// # Errors
    /// [`Error::Serialize`] and the errors of [`Store::append_trace_raw`].
    fn append_trace<T: Serialize + ?Sized>(
        &self,
        session: SessionId,
        segment: SegmentId,
        event: &T,
    ) -> Result<()> {
        let raw = RawEntry::from_value(event)?;
        self.append_trace_raw(session, segment, std::slice::from_ref(&raw))
    }

    /// Reads the whole debug trace as `T`, strictly.
    ///
    /// # Errors
    /// [`Error::Deserialize`] and the errors of [`Store::replay_trace_raw`].
    fn read_trace<T: DeserializeOwned>(
        &self,
        session: SessionId,
        segment: SegmentId,
    ) -> Result<Vec<T>> {
        let mut out = Vec::new();
        self.replay_trace_raw(session, segment, &ReplayOptions::strict(), &mut |entry| {
            out.push(deserialize(segment, &entry)?);
            Ok(ControlFlow::Continue(()))
        })?;
        Ok(out)
    }
}

impl<S: Store + ?Sized> StoreExt for S {}

/// Deserializes a delivered entry straight from the reader's buffer.
fn deserialize<T: DeserializeOwned>(segment: SegmentId, entry: &Entry<'_>) -> Result<T> {
    let deserialized = match entry.json() {
        Some(json) => serde_json::from_str(json),
        // Only a replay with `blob_refs` delivers an entry without its text, and typed replays
        // never ask for one: a backend that does it anyway gets a clear error, not a wrong value.
        None => Err(serde::de::Error::custom(
            "the backend delivered a blob reference without the entry's text",
        )),
    };
    deserialized.map_err(|source| Error::Deserialize {
        segment,
        seq: entry.seq,
        source,
    })
}

fn to_raw<T: Serialize>(entries: &[T]) -> Result<Vec<RawEntry>> {
    entries.iter().map(RawEntry::from_value).collect()
}

/// A writer on one segment that keeps its own tally and refuses to append when anyone else has
/// changed the segment since: the concurrent-writer detector. Cheap: one [`Store::append_if`] per
/// append, no re-read.
///
/// Generic over how it holds the store — `&FsStore`, `&dyn Store`, `Arc<dyn Store>`,
/// `Box<dyn Store>`, any pointer to a [`Store`] — so an owned writer (over an `Arc`) can live in a
/// worker's struct and move between threads.
///
/// On [`Error::ConcurrentWriter`] the usual reaction is [`SegmentWriter::fork`]: continue in a
/// new segment that starts from this writer's own history.
///
/// ```
/// use std::sync::Arc;
/// use annals::{MemStore, SegmentWriter, Store, StoreExt};
/// # fn main() -> annals::Result<()> {
/// let store: Arc<dyn Store> = Arc::new(MemStore::new());
/// // A worker struct can own its writer and move to another thread.
/// struct Worker { writer: SegmentWriter<Arc<dyn Store>> }
/// let mut worker = Worker { writer: SegmentWriter::new_session(Arc::clone(&store))? };
/// let (session, first) = (worker.writer.session(), worker.writer.segment());
/// let handle = std::thread::spawn(move || -> annals::Result<Worker> {
///     worker.writer.append(&serde_json::json!({"role": "assistant", "text": "done"}))?;
///     Ok(worker)
/// });
/// let mut worker = handle.join().unwrap()?;
/// // Someone else appends: the writer refuses, and forks from what it had seen.
/// store.append(session, first, &serde_json::json!({"role": "user", "text": "meanwhile"}))?;
/// let refused = worker.writer.append(&serde_json::json!({"text": "late"}));
/// assert!(matches!(refused, Err(annals::Error::ConcurrentWriter { .. })));
/// let fork = worker.writer.fork()?;
/// worker.writer.append(&serde_json::json!({"text": "late"}))?;
/// assert_ne!(fork, first);
/// assert_eq!(worker.writer.tip().count, 2);
/// # Ok(()) }
/// ```
pub struct SegmentWriter<S> {
    store: S,
    session: SessionId,
    segment: SegmentId,
    tip: Tip,
}

impl<S> fmt::Debug for SegmentWriter<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SegmentWriter")
            .field("session", &self.session)
            .field("segment", &self.segment)
            .field("tip", &self.tip)
            .finish_non_exhaustive()
    }
}

impl<S> SegmentWriter<S>
where
    S: Deref,
    S::Target: Store,
{
    /// Starts a new session (fresh ids, its first segment created empty) and returns a writer
    /// on that segment.
    ///
    /// # Errors
    /// As [`Store::create_segment`].
    pub fn new_session(store: S) -> Result<Self> {
        Self::create(store, SessionId::new(), SegmentId::new())
    }

    /// Creates `segment` of `session` (empty; the session is created if needed) and returns a
    /// writer on it.
    ///
    /// # Errors
    /// [`Error::SegmentExists`] and the errors of [`Store::create_segment`].
    pub fn create(store: S, session: SessionId, segment: SegmentId) -> Result<Self> {
        let tip = store.create_segment(session, segment, &[])?;
        Ok(Self {
            store,
            session,
            segment,
            tip,
        })
    }

    /// Opens a writer on an existing segment, taking its current tip as the tally.
    ///
    /// # Errors
    /// As [`Store::tip`].
    pub fn open(store: S, session: SessionId, segment: SegmentId) -> Result<Self> {
        let tip = store.tip(session, segment)?;
        Ok(Self {
            store,
            session,
            segment,
            tip,
        })
    }

    /// The segment this writer appends to.
    #[must_use]
    pub fn segment(&self) -> SegmentId {
        self.segment
    }

    /// The session.
    #[must_use]
    pub fn session(&self) -> SessionId {
        self.session
    }

    /// The writer's tally.
    #[must_use]
    pub fn tip(&self) -> Tip {
        self.tip
    }

    /// The store the writer writes to.
    #[must_use]
    pub fn store(&self) -> &S::Target {
        &self.store
    }

    /// Appends one typed entry if no one else changed the segment.
    ///
    /// # Errors
    /// [`Error::ConcurrentWriter`] (nothing written) and the errors of [`Store::append_if`].
    pub fn append<T: Serialize + ?Sized>(&mut self, entry: &T) -> Result<Tip> {
        let raw = RawEntry::from_value(entry)?;
        self.append_raw(std::slice::from_ref(&raw))
    }

    /// Appends typed entries in one write if no one else changed the segment.
    ///
    /// # Errors
    /// As [`SegmentWriter::append`].
    pub fn append_batch<T: Serialize>(&mut self, entries: &[T]) -> Result<Tip> {
        let raw = to_raw(entries)?;
        self.append_raw(&raw)
    }

    /// Appends raw entries in one write if no one else changed the segment.
    ///
    /// # Errors
    /// As [`SegmentWriter::append`].
    pub fn append_raw(&mut self, entries: &[RawEntry]) -> Result<Tip> {
        self.tip = self
            .store
            .append_if(self.session, self.segment, self.tip, entries)?;
        Ok(self.tip)
    }

    /// Makes everything appended so far durable ([`Store::sync`]).
    ///
    /// # Errors
    /// As [`Store::sync`].
    pub fn sync(&self) -> Result<()> {
        self.store.sync(self.session, self.segment)
    }

    /// Keeps the first `keep` entries ([`Store::truncate`]) and takes the new tip as the tally,
    /// so the writer's own rewrite is not mistaken for another writer's. Refused with
    /// [`Error::ConcurrentWriter`] (nothing changed) if someone else changed the segment since
    /// this writer's last operation: the cut would drop entries it has not seen.
    ///
    /// # Errors
    /// [`Error::ConcurrentWriter`] and the errors of [`Store::truncate`].
    pub fn truncate(&mut self, keep: u64) -> Result<Tip> {
        self.tip = self
            .store
            .truncate_if(self.session, self.segment, self.tip, keep)?;
        Ok(self.tip)
    }

    /// Accepts whatever is on disk now as the tally (after deciding the conflict is harmless).
    ///
    /// # Errors
    /// As [`Store::tip`].
    pub fn resync(&mut self) -> Result<Tip> {
        self.tip = self.store.tip(self.session, self.segment)?;
        Ok(self.tip)
    }

    /// Forks a new segment from the first `tip().count` entries (this writer's own view of the
    /// history) and continues there. The old segment is left as it is.
    ///
    /// # Errors
    /// As [`Store::fork`].
    pub fn fork(&mut self) -> Result<SegmentId> {
        let into = SegmentId::new();
        self.tip = self
            .store
            .fork(self.session, self.segment, self.tip.count, into)?;
        self.segment = into;
        Ok(into)
    }
}

/// Default largest entry, in bytes of JSON text: entries above it get
/// [`Error::EntryTooLarge`].
pub const DEFAULT_MAX_ENTRY_BYTES: usize = 64 << 20;

/// Refuses an entry above the store's maximum.
pub(crate) fn check_entry_size(entry: &RawEntry, max: usize) -> Result<()> {
    if entry.len() > max {
        return Err(Error::EntryTooLarge {
            size: entry.len(),
            limit: max,
        });
    }
    Ok(())
}

/// How an entry goes into its line: as it is, or as a reference to a blob written before.
#[derive(Debug)]
pub(crate) enum Prepared<'a> {
    Inline(&'a RawEntry),
    Blob(BlobRef),
}

impl<'a> Prepared<'a> {
    /// Inline if it fits in a line of a file of `version` whatever its sequence number and
    /// marks, else a blob reference.
    pub(crate) fn of(entry: &'a RawEntry, version: codec::Version) -> Self {
        if Self::spills(entry, version) {
            Self::Blob(BlobRef::for_entry(entry.as_str()))
        } else {
            Self::Inline(entry)
        }
    }

    /// Whether `entry` goes to a blob in a file of `version`: the one place that decides.
    pub(crate) fn spills(entry: &RawEntry, version: codec::Version) -> bool {
        entry.len() > version.max_inline()
    }

    /// Appends the entry's line, framed by `frame`, to `out`.
    pub(crate) fn encode(&self, frame: &codec::Frame, out: &mut Vec<u8>) -> Result<()> {
        match self {
            Self::Inline(e) => codec::encode_entry(frame, e.as_str(), out),
            Self::Blob(r) => codec::encode_blob(frame, r, out),
        }
        .map(|_| ())
        .map_err(codec::EncodeError::into_error)
    }
}

#[cfg(test)]
mod tests;
