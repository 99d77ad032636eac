//! The filesystem store: the embedded default.
//!
//! Layout: `{root}/{session}/{segment}.jsonl` (the log), `{segment}.trace.jsonl` (the debug
//! trace), `attachments.jsonl` (the session's attachment index), `blobs/pack` (the blob pack
//! of format-3 files), `blobs/ab/abcdef…` (the blob files of formats 1 and 2),
//! `.{segment}.{uuid}.tmp` while a file is being created or rewritten, and
//! `{segment}.jsonl.dropped-{ms}` where a repair kept the bytes it cut, and
//! `{segment}.jsonl.recovered-{ms}` where a writer's recovery kept an interrupted tail it cut. Directories are created
//! `0700`, files `0600`. Anything in the root or a session directory that does not parse as
//! ours is ignored by listings and never touched; anything that is not a regular file (or a
//! directory) where ours should be is [`Error::NotOurs`](crate::Error::NotOurs).
//!
//! Every file-system call goes through the [`FileSystem`] seam (`seam.rs`), relative to
//! directory handles: [`OsFs`] is the real one, `FaultFs` injects faults and `SimFs`
//! simulates power cuts. The rooms, by job:
//!
//! | room | job |
//! |---|---|
//! | `options.rs` | [`FsOptions`], [`Durability`], [`BlobCompression`] |
//! | `tree.rs` | the root handle, file names, resolving a session's directory and files |
//! | `cache.rs` | the bounded cache of open segment handles |
//! | `handle.rs` | one open file as a writer holds it: the lock protocol and the append |
//! | `lease.rs` | writer leases, the holder record, and the bounded wait for a held file |
//! | `snapshot.rs` | how readers (shared lock) and repair (exclusive) open a file |
//! | `read.rs` | reading through the seam: streaming scan, header and tail probes, seek |
//! | `atomic.rs` | crash-atomic creation and rewrite: temp file, fsync, link or rename |
//! | `append.rs` | creating segments and appending (blobs first, then the line) |
//! | `replay.rs` | replay and verify (mapped fast path, streaming fallback) |
//! | `rewrite.rs` | truncate and fork |
//! | `recover.rs` | a writer's recovery of an interrupted end ([`Recovered`]); readers' tip of it |
//! | `repair.rs` | [`Repair`]: cutting a damaged segment back, keeping the cut bytes |
//! | `sessions.rs` | listings, existence, modification times, deleting a session |
//! | `blobs.rs` | a session's blob directory and its lock: the pack and the blob files |
//! | `pack.rs` | the blob pack's records and the index a scan of them builds |
//! | `gc.rs` | attachments, blob reads, garbage collection |
//! | `os.rs`, `mmap.rs`, `fstype.rs` | the real file system (the only system calls) |
//! | `fault.rs`, `sim.rs` | the fault-injecting and the simulated file systems |

mod append;
mod atomic;
mod blobs;
mod cache;
#[cfg(feature = "fault-injection")]
mod fault;
mod fstype;
mod gc;
mod group;
mod handle;
mod lease;
mod mmap;
mod options;
mod os;
mod pack;
mod read;
mod recover;
mod repair;
mod replay;
mod rewrite;
mod seam;
mod sessions;
#[cfg(feature = "fault-injection")]
mod sim;
mod snapshot;
mod tree;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use crate::blob::{Attachment, AttachmentMeta, BlobId, GcReport};
use crate::codec::FileKind;
#[cfg(doc)]
use crate::Error;
use crate::{
    RawEntry, ReplayOptions, Result, ScanReport, SegmentId, SegmentInfo, SessionId, Sink, Store,
    Tip,
};

#[cfg(feature = "fault-injection")]
pub use fault::{
    Call, CountCalls, FailNth, Fault, FaultDir, FaultFile, FaultFs, FaultPlan, FullDisk, Op,
};
pub use options::{BlobCompression, Durability, FsOptions};
pub use os::{OsDir, OsFile, OsFs};
pub use recover::Recovered;
pub use repair::Repair;
pub use seam::{Access, DirEntry, EntryKind, FileSystem, LockKind, Lookup, MappedChunk, Stat};
#[cfg(feature = "fault-injection")]
pub use sim::{Crash, SimDir, SimFile, SimFs};

/// The filesystem [`Store`], over the file system `F` (the real one unless a test chooses
/// another). See the module docs for the layout and docs/DURABILITY.md for what each
/// [`Durability`] survives.
#[derive(Debug)]
pub struct FsStore<F: FileSystem = OsFs> {
    // Shared with the leases the store hands out, which must own what they use.
    tree: Arc<tree::Tree<F>>,
    options: FsOptions,
    open: Arc<Mutex<cache::OpenFiles<F>>>,
    /// What writers' recovery cut, until [`FsStore::take_recovered`] takes it.
    recovered: Arc<Mutex<Vec<Recovered>>>,
    /// What the store's writers keep of its sessions' blob packs (`pack.rs`).
    packs: Arc<pack::Packs>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing here panics while holding these locks; if something did, the state it guards is
    // re-validated against the file under flock before every use anyway.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl FsStore {
    /// Opens (creating if needed, mode `0700`) a store rooted at `root`, with default options.
    ///
    /// # Errors
    /// I/O errors creating or reading the root.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(root, FsOptions::default())
    }

    /// Opens a store with explicit options.
    ///
    /// # Errors
    /// I/O errors creating or reading the root; [`Error::UnsafeFileSystem`] if the root is on a
    /// network or FUSE file system and `allow_unsafe_fs` is off.
    pub fn open_with(root: impl AsRef<Path>, options: FsOptions) -> Result<Self> {
        FsStore::open_on(OsFs, root, options)
    }

    /// Opens a store on the real file system whose every call first asks `plan` whether it
    /// fails, for tests of failure handling: `FsStore::open_on(FaultFs::new(OsFs, plan), ..)`.
    /// Only with the `fault-injection` feature.
    ///
    /// # Errors
    /// As [`FsStore::open_with`].
    #[cfg(feature = "fault-injection")]
    pub fn open_with_faults(
        root: impl AsRef<Path>,
        options: FsOptions,
        plan: std::sync::Arc<dyn FaultPlan>,
    ) -> Result<FsStore<FaultFs>> {
        FsStore::open_on(FaultFs::new(OsFs, plan), root, options)
    }
}

impl<F: FileSystem> FsStore<F> {
    /// Opens a store rooted at `root` on the file system `fs` (creating the root if needed):
    /// [`OsFs`] for the real one; under the `fault-injection` feature, a `FaultFs` or a
    /// `SimFs` (or a crash image of one, `SimFs::after`).
    ///
    /// # Errors
    /// As [`FsStore::open_with`].
    pub fn open_on(fs: F, root: impl AsRef<Path>, options: FsOptions) -> Result<Self> {
        let tree = tree::Tree::open(fs, root.as_ref(), options.allow_unsafe_fs)?;
        Ok(Self {
            tree: Arc::new(tree),
            options: FsOptions {
                max_open_files: options.max_open_files.max(1),
                ..options
            },
            open: Arc::new(Mutex::new(cache::OpenFiles::default())),
            recovered: Arc::default(),
            packs: Arc::default(),
        })
    }

    /// Another view of the same store: the same root, options and open handles (what a lease
    /// keeps, so that it owns what it needs).
    pub(crate) fn share(&self) -> Self {
        Self {
            tree: Arc::clone(&self.tree),
            options: self.options,
            open: Arc::clone(&self.open),
            recovered: Arc::clone(&self.recovered),
            packs: Arc::clone(&self.packs),
        }
    }

    /// The store's root directory.
    #[must_use]
    pub fn root(&self) -> &Path {
        self.tree.root_path()
    }

    /// The options the store was opened with.
    #[must_use]
    pub fn options(&self) -> FsOptions {
        self.options
    }

    /// The file system the store runs on.
    #[must_use]
    pub fn file_system(&self) -> &F {
        &self.tree.fs
    }

    /// Path of a segment's log file (whether or not it exists).
    #[must_use]
    pub fn segment_path(&self, session: SessionId, segment: SegmentId) -> PathBuf {
        self.tree.file_path(session, segment, FileKind::Segment)
    }

    /// Cuts a damaged segment back to its last good line: removes a torn tail, or drops
    /// everything from the first corrupt line on (by crash-atomic rewrite); a line whose blob is
    /// missing or does not match counts as corrupt, as [`Store::verify`] says. The dropped bytes
    /// are saved next to the segment first. A healthy segment is never touched. With `dry_run`,
    /// only reports what it would do, opening nothing for writing (it works on a read-only
    /// mount).
    ///
    /// # Errors
    /// [`Error::SegmentNotFound`], [`Error::Corrupt`] if even the header is damaged (nothing can
    /// be kept), [`Error::Poisoned`], [`Error::NotOurs`], I/O errors.
    pub fn repair(&self, session: SessionId, segment: SegmentId, dry_run: bool) -> Result<Repair> {
        self.repair_segment(session, segment, dry_run)
    }
}

/// Each method says which room does the work.
impl<F: FileSystem> Store for FsStore<F> {
    fn create_segment(
        &self,
        session: SessionId,
        segment: SegmentId,
        initial: &[RawEntry],
    ) -> Result<Tip> {
        self.create_segment_file(session, segment, initial) // append.rs
    }

    /// One entry: as [`Store::append_batch_raw`], without allocating on the common path.
    fn append_raw(&self, session: SessionId, segment: SegmentId, entry: &RawEntry) -> Result<Tip> {
        self.append_one(session, segment, entry) // append.rs
    }

    fn append_batch_raw(
        &self,
        session: SessionId,
        segment: SegmentId,
        entries: &[RawEntry],
    ) -> Result<Tip> {
        self.append_entries(session, segment, entries, None) // append.rs
    }

    fn append_if(
        &self,
        session: SessionId,
        segment: SegmentId,
        expected: Tip,
        entries: &[RawEntry],
    ) -> Result<Tip> {
        self.append_entries(session, segment, entries, Some(expected)) // append.rs
    }

    fn replay_raw(
        &self,
        session: SessionId,
        segment: SegmentId,
        options: &ReplayOptions,
        sink: &mut Sink<'_>,
    ) -> Result<ScanReport> {
        let key = (session, segment, FileKind::Segment);
        self.replay_file(key, options, sink) // replay.rs
    }

    /// The mapped fast path: CRC, shape and sequence of every line, from a read-only mapping
    /// of the committed part of the file (read instead where the medium cannot map).
    fn verify(&self, session: SessionId, segment: SegmentId) -> Result<ScanReport> {
        self.verify_segment(session, segment) // replay.rs
    }

    fn tip(&self, session: SessionId, segment: SegmentId) -> Result<Tip> {
        self.segment_tip(session, segment) // sessions.rs
    }

    fn lease(
        &self,
        session: SessionId,
        segment: SegmentId,
        options: &crate::LeaseOptions,
    ) -> Result<Box<dyn crate::Lease>> {
        Ok(Box::new(self.take_lease(session, segment, options)?)) // lease.rs
    }

    fn truncate(&self, session: SessionId, segment: SegmentId, keep: u64) -> Result<Tip> {
        self.rewrite_keeping(session, segment, keep, None) // rewrite.rs
    }

    fn truncate_if(
        &self,
        session: SessionId,
        segment: SegmentId,
        expected: Tip,
        keep: u64,
    ) -> Result<Tip> {
        self.rewrite_keeping(session, segment, keep, Some(expected)) // rewrite.rs
    }

    fn sync(&self, session: SessionId, segment: SegmentId) -> Result<()> {
        self.sync_segment(session, segment) // append.rs
    }

    fn fork(&self, session: SessionId, source: SegmentId, at: u64, into: SegmentId) -> Result<Tip> {
        self.fork_segment(session, source, at, into) // rewrite.rs
    }

    fn exists(&self, session: SessionId, segment: SegmentId) -> Result<bool> {
        self.segment_exists(session, segment) // sessions.rs
    }

    fn list_sessions(&self) -> Result<Vec<SessionId>> {
        self.sessions() // sessions.rs
    }

    fn list_segments(&self, session: SessionId) -> Result<Vec<SegmentInfo>> {
        self.segments(session) // sessions.rs
    }

    fn find_session(&self, segment: SegmentId) -> Result<Option<SessionId>> {
        self.session_of(segment) // sessions.rs
    }

    fn delete_session(&self, session: SessionId) -> Result<()> {
        self.remove_session(session) // sessions.rs
    }

    fn session_modified(&self, session: SessionId) -> Result<SystemTime> {
        self.modified(session) // sessions.rs
    }

    fn append_trace_raw(
        &self,
        session: SessionId,
        segment: SegmentId,
        events: &[RawEntry],
    ) -> Result<()> {
        self.append_aux((session, segment, FileKind::Trace), events) // append.rs
    }

    fn replay_trace_raw(
        &self,
        session: SessionId,
        segment: SegmentId,
        options: &ReplayOptions,
        sink: &mut Sink<'_>,
    ) -> Result<ScanReport> {
        let key = (session, segment, FileKind::Trace);
        self.replay_file(key, options, sink) // replay.rs
    }

    fn put_attachment(
        &self,
        session: SessionId,
        bytes: &[u8],
        meta: &AttachmentMeta,
    ) -> Result<Attachment> {
        self.attach(session, bytes, meta) // gc.rs
    }

    fn list_attachments(&self, session: SessionId) -> Result<Vec<Attachment>> {
        self.attachments(session) // gc.rs
    }

    fn get_blob(&self, session: SessionId, id: &BlobId) -> Result<Vec<u8>> {
        self.blob(session, id) // gc.rs
    }

    fn gc_blobs(&self, session: SessionId, dry_run: bool) -> Result<GcReport> {
        self.collect_blobs(session, dry_run) // gc.rs
    }

    fn max_entry_bytes(&self) -> usize {
        self.options.max_entry_bytes
    }

    fn is_durable(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests;
