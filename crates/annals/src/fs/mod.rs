//! The filesystem store: the embedded default.
//!
//! Layout: `{root}/{session}/{segment}.jsonl` (the log), `{segment}.trace.jsonl` (the debug
//! trace), `.{segment}.{uuid}.tmp` while a file is being created or rewritten, and
//! `{segment}.jsonl.dropped-{ms}` where a repair kept the bytes it cut. Directories are created
//! `0700`, files `0600`. Anything in the root or a session directory that does not parse as
//! ours is ignored by listings and never touched.

mod blobs;
mod fault;
mod fstype;
mod handle;
mod mmap;
mod read;

use std::collections::HashMap;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::ops::ControlFlow;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use crate::blob::{Attachment, AttachmentMeta, BlobId, BlobRef, GcReport};
use crate::codec::{self, FileKind, Header, Lineage, FORMAT_VERSION};
use crate::error::CorruptReason;
use crate::scan::{Checker, Delivery, Identity};
use crate::store::{check_entry_size, Prepared};
use crate::{
    Body, Entry, Error, RawEntry, ReadMode, ReplayOptions, Result, ScanReport, SegmentId,
    SegmentInfo, SessionId, Sink, Store, Tip, TornTail,
};
use blobs::{BlobDir, BlobFault};
#[cfg(feature = "fault-injection")]
pub use fault::FaultPoint as InjectionPoint;
pub use fault::IoOp;
#[cfg(feature = "fault-injection")]
pub use fault::{FailNth, Fault, FaultPlan};
use fault::{FaultPoint, Faults};
use handle::Handle;
pub(crate) use read::scan_slice;

/// What an append promises once it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// The line is in the kernel's page cache: it survives a crash of the process, not a power
    /// cut or kernel crash.
    #[default]
    Buffered,
    /// `fdatasync` before the append returns: the line survives a power cut (on a device that
    /// honours flushes).
    Sync,
}

/// Options of [`FsStore::open_with`].
///
/// ```
/// use annals::{Durability, FsOptions, FsStore};
/// # fn main() -> annals::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// let store = FsStore::open_with(
///     dir.path(),
///     FsOptions {
///         durability: Durability::Sync,   // fdatasync before every append returns
///         max_entry_bytes: 16 << 20,      // refuse entries over 16 MiB
///         ..FsOptions::default()
///     },
/// )?;
/// assert_eq!(store.options().durability, Durability::Sync);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsOptions {
    /// What an append promises.
    pub durability: Durability,
    /// How many segment files the store keeps open between appends (least recently used ones
    /// are closed beyond that).
    pub max_open_files: usize,
    /// Largest entry accepted, in bytes of JSON text (default 64 MiB). Entries longer than a
    /// line can hold are kept as blobs; above this they are refused with `EntryTooLarge`.
    pub max_entry_bytes: usize,
    /// Open a root on a network or FUSE file system anyway (NFS, SMB, CephFS, 9p, FUSE, ...).
    /// Off by default: there, concurrent appends can overwrite each other. Safe only if a
    /// single process on a single machine ever writes the store.
    pub allow_unsafe_fs: bool,
}

impl Default for FsOptions {
    fn default() -> Self {
        Self {
            durability: Durability::Buffered,
            max_open_files: 256,
            max_entry_bytes: crate::store::DEFAULT_MAX_ENTRY_BYTES,
            allow_unsafe_fs: false,
        }
    }
}

/// What [`FsStore::repair`] did, or would do with `dry_run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repair {
    /// The segment file.
    pub path: PathBuf,
    /// The log is kept up to this byte (the end of its last good line).
    pub keep_bytes: u64,
    /// Entries kept.
    pub kept_entries: u64,
    /// Bytes cut from the end (torn tail included).
    pub dropped_bytes: u64,
    /// The torn tail, if that is all that was wrong.
    pub torn_tail: Option<TornTail>,
    /// The first problem, if there was damage beyond a torn tail.
    pub first_problem: Option<crate::Problem>,
    /// Where the dropped bytes were saved (`None` for a dry run or when nothing was dropped).
    pub backup: Option<PathBuf>,
}

impl Repair {
    /// True if the segment was healthy and nothing was (or would be) changed.
    #[must_use]
    pub fn is_noop(&self) -> bool {
        self.dropped_bytes == 0
    }
}

type Key = (SessionId, SegmentId, FileKind);

#[derive(Debug, Default)]
struct OpenFiles {
    slots: HashMap<Key, (Arc<Mutex<Handle>>, u64)>,
    tick: u64,
}

/// The filesystem [`Store`]. See the module docs for the layout and docs/DURABILITY.md for what
/// each [`Durability`] survives.
#[derive(Debug)]
pub struct FsStore {
    root: PathBuf,
    options: FsOptions,
    open: Mutex<OpenFiles>,
    faults: Faults,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing here panics while holding these locks; if something did, the state it guards is
    // re-validated against the file under flock before every use anyway.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn create_dir(path: &Path, faults: &Faults) -> Result<bool> {
    match DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => {
            faults.observe(&IoOp::CreateDir { path });
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(Error::io("create directory", path, e)),
    }
}

fn sync_dir(path: &Path, faults: &Faults) -> Result<()> {
    faults
        .check(FaultPoint::DirSync, path)
        .and_then(|()| File::open(path))
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("fsync directory", path, e))?;
    faults.observe(&IoOp::SyncDir { path });
    Ok(())
}

/// A file being written under a temporary name, removed on drop unless published.
struct TempFile {
    path: PathBuf,
    file: File,
    published: bool,
    faults: Faults,
}

impl TempFile {
    /// A new temporary file in `dir`, named after what it will become (`stem`).
    fn create(dir: &Path, stem: impl std::fmt::Display, faults: &Faults) -> Result<Self> {
        let path = dir.join(format!(".{stem}.{}.tmp", uuid::Uuid::now_v7().simple()));
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io("create", &path, e))?;
        faults.observe(&IoOp::CreateFile { path: &path });
        Ok(Self {
            path,
            file,
            published: false,
            faults: faults.clone(),
        })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let len = match self.faults.write_check(FaultPoint::TempWrite, &self.path) {
            Ok(fault::WriteLen::All) => bytes.len(),
            Ok(fault::WriteLen::Short(n)) => n.min(bytes.len()),
            Err(e) => return Err(Error::io("write", &self.path, e)),
        };
        let data = bytes.get(..len).unwrap_or_default();
        self.file
            .write_all(data)
            .map_err(|e| Error::io("write", &self.path, e))?;
        self.faults.observe(&IoOp::Append {
            path: &self.path,
            data,
        });
        if len < bytes.len() {
            let short = io::Error::new(io::ErrorKind::WriteZero, "short write");
            return Err(Error::io("write", &self.path, short));
        }
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        self.faults
            .check(FaultPoint::TempSync, &self.path)
            .and_then(|()| self.file.sync_all())
            .map_err(|e| Error::io("fsync", &self.path, e))?;
        self.faults.observe(&IoOp::Sync { path: &self.path });
        Ok(())
    }

    /// Links the file at `dest` unless something is there already (atomic no-clobber), then
    /// drops the temporary name.
    fn publish_new(mut self, dest: &Path) -> Result<bool> {
        let linked = self
            .faults
            .check(FaultPoint::Link, dest)
            .and_then(|()| fs::hard_link(&self.path, dest));
        match linked {
            Ok(()) => {
                self.published = true;
                self.faults.observe(&IoOp::Link {
                    from: &self.path,
                    to: dest,
                });
                if fs::remove_file(&self.path).is_ok() {
                    self.faults.observe(&IoOp::Remove { path: &self.path });
                }
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(Error::io("link", dest, e)),
        }
    }

    /// Renames the file over `dest`. Returns the open file, which is now `dest`.
    fn replace(mut self, dest: &Path) -> Result<File> {
        self.faults
            .check(FaultPoint::Rename, dest)
            .and_then(|()| fs::rename(&self.path, dest))
            .map_err(|e| Error::io("rename over", dest, e))?;
        self.faults.observe(&IoOp::Rename {
            from: &self.path,
            to: dest,
        });
        self.published = true;
        let file = self
            .file
            .try_clone()
            .map_err(|e| Error::io("dup", dest, e))?;
        Ok(file)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.published && fs::remove_file(&self.path).is_ok() {
            self.faults.observe(&IoOp::Remove { path: &self.path });
        }
    }
}

fn encode_header(header: &Header, out: &mut Vec<u8>) -> Result<u64> {
    codec::encode_header(header, out)
        .map(|n| n as u64)
        .map_err(|size| Error::EntryTooLarge {
            size,
            limit: codec::MAX_LINE,
        })
}

fn encode_entries(first: u64, entries: &[Prepared<'_>], out: &mut Vec<u8>) -> Result<()> {
    for (seq, e) in (first..).zip(entries) {
        e.encode(seq, out)?;
    }
    Ok(())
}

/// The session's blob lock (`{session}/blobs/lock`), held shared by appends that write blobs,
/// from the blob to the line that refers to it, and exclusive by garbage collection.
struct BlobLock(File);

impl Drop for BlobLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
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
        Self::open_inner(root.as_ref(), options, Faults::default())
    }

    /// Opens a store whose file operations consult `plan` at every [`FaultPoint`], for tests of
    /// failure handling. Only with the `fault-injection` feature.
    ///
    /// # Errors
    /// As [`FsStore::open_with`].
    #[cfg(feature = "fault-injection")]
    pub fn open_with_faults(
        root: impl AsRef<Path>,
        options: FsOptions,
        plan: Arc<dyn FaultPlan>,
    ) -> Result<Self> {
        Self::open_inner(root.as_ref(), options, Faults::new(plan))
    }

    fn open_inner(root: &Path, options: FsOptions, faults: Faults) -> Result<Self> {
        let root = root.to_path_buf();
        if !root.is_dir() {
            DirBuilder::new()
                .mode(0o700)
                .recursive(true)
                .create(&root)
                .map_err(|e| Error::io("create store root", &root, e))?;
        }
        if !options.allow_unsafe_fs {
            fstype::check(&root)?;
        }
        Ok(Self {
            root,
            options: FsOptions {
                max_open_files: options.max_open_files.max(1),
                ..options
            },
            open: Mutex::new(OpenFiles::default()),
            faults,
        })
    }

    /// The store's root directory.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The options the store was opened with.
    #[must_use]
    pub fn options(&self) -> FsOptions {
        self.options
    }

    fn session_dir(&self, session: SessionId) -> PathBuf {
        self.root.join(session.to_string())
    }

    /// Path of a segment's log file (whether or not it exists).
    #[must_use]
    pub fn segment_path(&self, session: SessionId, segment: SegmentId) -> PathBuf {
        self.file_path(session, segment, FileKind::Segment)
    }

    fn file_path(&self, session: SessionId, segment: SegmentId, kind: FileKind) -> PathBuf {
        let name = match kind {
            FileKind::Segment => format!("{segment}.jsonl"),
            FileKind::Trace => format!("{segment}.trace.jsonl"),
            FileKind::Attachments => "attachments.jsonl".to_string(),
        };
        self.session_dir(session).join(name)
    }

    /// The cached open handle of a file, opening it if needed. `Ok(None)` if it does not exist.
    fn handle(&self, key: Key) -> Result<Option<Arc<Mutex<Handle>>>> {
        {
            let mut open = lock(&self.open);
            open.tick += 1;
            let tick = open.tick;
            if let Some((h, used)) = open.slots.get_mut(&key) {
                *used = tick;
                return Ok(Some(Arc::clone(h)));
            }
        }
        let (session, segment, kind) = key;
        let identity = Identity {
            kind,
            session,
            segment,
        };
        let Some(handle) = Handle::open(
            self.file_path(session, segment, kind),
            identity,
            self.faults.clone(),
        )?
        else {
            return Ok(None);
        };
        let mut open = lock(&self.open);
        if open.slots.len() >= self.options.max_open_files {
            // Close the least recently used file that nobody is using. Poisoned ones stay, so
            // that their error stays sticky.
            let victim = open
                .slots
                .iter()
                .filter(|(_, (h, _))| Arc::strong_count(h) == 1 && lock(h).poisoned.is_none())
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| *k);
            if let Some(victim) = victim {
                open.slots.remove(&victim);
            }
        }
        let tick = open.tick;
        let slot = open
            .slots
            .entry(key)
            .or_insert_with(|| (Arc::new(Mutex::new(handle)), tick));
        Ok(Some(Arc::clone(&slot.0)))
    }

    fn segment_handle(&self, session: SessionId, segment: SegmentId) -> Result<Arc<Mutex<Handle>>> {
        self.handle((session, segment, FileKind::Segment))?
            .ok_or(Error::SegmentNotFound { session, segment })
    }

    fn new_header(
        session: SessionId,
        segment: SegmentId,
        kind: FileKind,
        fork: Option<Lineage>,
    ) -> Header {
        Header {
            annals: u64::from(FORMAT_VERSION),
            kind,
            session,
            segment,
            generation: 0,
            created_ms: crate::now_ms(),
            fork,
        }
    }

    /// Creates a file crash-atomically: header and body go to a temporary file that is fsynced
    /// and then linked into place without clobbering. `Ok(false)` if the file already existed.
    fn create_file(
        &self,
        header: &Header,
        body: &[u8],
        copy: Option<(&File, u64, u64)>,
    ) -> Result<bool> {
        let dir = self.session_dir(header.session);
        if create_dir(&dir, &self.faults)? {
            sync_dir(&self.root, &self.faults)?;
        }
        let mut temp = TempFile::create(&dir, header.segment, &self.faults)?;
        let mut bytes = Vec::with_capacity(codec::MAX_LINE + body.len());
        encode_header(header, &mut bytes)?;
        bytes.extend_from_slice(body);
        temp.write(&bytes)?;
        if let Some((src, from, to)) = copy {
            copy_range(src, from, to, &mut temp)?;
        }
        temp.sync()?;
        let dest = self.file_path(header.session, header.segment, header.kind);
        if !temp.publish_new(&dest)? {
            if !is_regular_file(&dest) {
                let in_the_way = io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "something that is not an annals file is in the way (a directory or a link); move it",
                );
                return Err(Error::io("create", &dest, in_the_way));
            }
            return Ok(false);
        }
        sync_dir(&dir, &self.faults)?;
        Ok(true)
    }

    /// Byte offset just after the `n`-th entry line (the header is line 1), found by counting
    /// newlines; the prefix up to it is checked strictly, so a truncate or fork never copies a
    /// damaged line. O(n). Called under the exclusive lock with `n <= count`.
    fn cut_after(h: &Handle, n: u64) -> Result<u64> {
        let header_end = h.header.as_ref().map_or(0, |(_, end)| *end);
        let cut = if n == h.tail.count {
            h.tail.committed
        } else {
            let mut buf = vec![0u8; 64 * 1024];
            let mut pos = header_end;
            let mut seen = 0u64;
            let mut cut = header_end;
            while seen < n {
                let got = read::read_at_most(&h.file, &mut buf, pos, &h.path)?;
                if got == 0 {
                    break;
                }
                for nl in memchr::memchr_iter(b'\n', buf.get(..got).unwrap_or_default()) {
                    seen += 1;
                    if seen == n {
                        cut = pos + nl as u64 + 1;
                        break;
                    }
                }
                pos += got as u64;
            }
            cut
        };
        let checker = Checker::new(ReadMode::Strict, 0, false, Some(h.identity));
        let reader = read::ReadAt::new(&h.file);
        let (report, _) = read::scan_stream(reader, cut, checker, &mut skip, &h.path)?;
        if report.entries != n {
            return Err(Error::Corrupt {
                path: h.path.clone(),
                line: report.entries + 2,
                offset: cut,
                reason: CorruptReason::Malformed("fewer entry lines than sequence numbers say"),
            });
        }
        Ok(cut)
    }

    fn replay_file(
        &self,
        key: Key,
        options: &ReplayOptions,
        sink: &mut Sink<'_>,
        missing_is_empty: bool,
    ) -> Result<ScanReport> {
        let (session, segment, kind) = key;
        let path = self.file_path(session, segment, kind);
        let Some((file, len)) = with_snapshot(&path, |_, size| Ok(size))? else {
            if missing_is_empty && self.exists(session, segment)? {
                return Ok(ScanReport::default());
            }
            return Err(Error::SegmentNotFound { session, segment });
        };
        let checker = Checker::new(
            options.mode,
            options.from_seq,
            true,
            Some(Identity {
                kind,
                session,
                segment,
            }),
        );
        // From a sequence number on: find its line by binary search instead of reading (and
        // checking) everything before it. The header is still read and checked.
        let (start, checker) = match options.from_seq {
            0 => (0, checker),
            target => {
                let identity = Identity {
                    kind,
                    session,
                    segment,
                };
                let (_, header_end) = read::read_header(&file, &path, identity)?;
                match read::seek_seq(&file, &path, header_end, len, target)? {
                    Some((offset, seq)) if offset > header_end => {
                        (offset, checker.resumed(seq, offset))
                    }
                    _ => (0, checker),
                }
            }
        };
        let session_dir = self.session_dir(session);
        let blobs = BlobDir::new(&session_dir, &self.faults);
        let mut blob_problems = Vec::new();
        let (mut report, _) = read::scan_stream_from(
            read::ReadAt::at(&file, start),
            start,
            len,
            checker,
            &mut |delivery| match delivery {
                Delivery::Entry { seq, json } => sink(Entry {
                    seq,
                    appended_ms: None,
                    body: Body::Inline(json),
                }),
                Delivery::Blob { seq, reference, .. } if options.blob_refs => sink(Entry {
                    seq,
                    appended_ms: None,
                    body: Body::Blob {
                        reference: &reference,
                        json: None,
                    },
                }),
                Delivery::Blob {
                    seq,
                    reference,
                    line,
                    offset,
                } => match resolve(&blobs, &reference)? {
                    Ok(json) => sink(Entry {
                        seq,
                        appended_ms: None,
                        body: Body::Blob {
                            reference: &reference,
                            json: Some(&json),
                        },
                    }),
                    Err(reason) if options.mode == ReadMode::Strict => Err(Error::Corrupt {
                        path: path.clone(),
                        line,
                        offset,
                        reason,
                    }),
                    Err(reason) => {
                        blob_problems.push(crate::Problem {
                            line,
                            offset,
                            reason,
                        });
                        Ok(ControlFlow::Continue(()))
                    }
                },
            },
            &path,
        )?;
        add_problems(&mut report, blob_problems);
        report.path = Some(path);
        Ok(report)
    }

    /// Cuts a damaged segment back to its last good line: removes a torn tail, or drops
    /// everything from the first corrupt line on (by crash-atomic rewrite); a line whose blob is
    /// missing or does not match counts as corrupt, as [`Store::verify`] says. The dropped bytes
    /// are saved next to the segment first. A healthy segment is never touched. With `dry_run`,
    /// only reports what it would do.
    ///
    /// # Errors
    /// [`Error::SegmentNotFound`], [`Error::Corrupt`] if even the header is damaged (nothing can
    /// be kept), I/O errors.
    pub fn repair(&self, session: SessionId, segment: SegmentId, dry_run: bool) -> Result<Repair> {
        let path = self.segment_path(session, segment);
        let handle = self.segment_handle(session, segment)?;
        let mut h = lock(&handle);
        h.check_poison()?;
        // Scan and cut under the exclusive lock, so no appender can be mid-line. A descriptor
        // of its own: the handle's lock path insists on a readable tail, which is what is
        // broken here.
        let Some(exclusive) = open_locked(&path)? else {
            return Err(Error::SegmentNotFound { session, segment });
        };
        let result = self.repair_locked(&mut h, &exclusive, dry_run);
        let _ = exclusive.unlock();
        result
    }

    fn repair_locked(&self, h: &mut Handle, file: &File, dry_run: bool) -> Result<Repair> {
        let path = h.path.clone();
        let size = file
            .metadata()
            .map_err(|e| Error::io("stat", &path, e))?
            .len();
        let checker = Checker::new(ReadMode::Tolerant, 0, false, Some(h.identity));
        let session_dir = self.session_dir(h.identity.session);
        let blobs = BlobDir::new(&session_dir, &self.faults);
        // A line whose blob is missing or damaged is damage at that line, as verify says:
        // repair cuts there too.
        let mut blob_problems = Vec::new();
        let (mut report, header) = read::scan_stream(
            read::ReadAt::new(file),
            size,
            checker,
            &mut |delivery| check_blob(&blobs, delivery, &mut blob_problems),
            &path,
        )?;
        add_problems(&mut report, blob_problems);
        let mut plan = Repair {
            path: path.clone(),
            keep_bytes: report.valid_up_to,
            kept_entries: 0,
            dropped_bytes: size - report.valid_up_to,
            torn_tail: report.torn_tail,
            first_problem: report.problems.first().cloned(),
            backup: None,
        };
        let header = match header {
            Some(hd) if report.valid_up_to > 0 => hd,
            _ => {
                // Nothing can be kept. Say why: the header's own problem (another segment's
                // header, garbage) is what the person has to act on.
                return Err(Error::Corrupt {
                    path,
                    line: 1,
                    offset: 0,
                    reason: plan
                        .first_problem
                        .map_or(CorruptReason::MissingHeader, |p| p.reason),
                });
            }
        };
        if plan.dropped_bytes == 0 {
            plan.kept_entries = report.entries;
            return Ok(plan);
        }
        // Entries kept = entry lines before the first problem.
        let checker = Checker::new(ReadMode::Strict, 0, false, None);
        let (kept, _) = read::scan_stream(
            read::ReadAt::new(file),
            plan.keep_bytes,
            checker,
            &mut skip,
            &path,
        )?;
        plan.kept_entries = kept.entries;
        if dry_run {
            return Ok(plan);
        }
        let backup = path.with_file_name(format!(
            "{}.jsonl.dropped-{}",
            h.identity.segment,
            crate::now_ms()
        ));
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&backup)
            .map_err(|e| Error::io("create backup", &backup, e))?;
        io::copy(
            &mut read::ReadAt::at(file, plan.keep_bytes).take(plan.dropped_bytes),
            &mut out,
        )
        .map_err(|e| Error::io("write backup", &backup, e))?;
        out.sync_all().map_err(|e| Error::io("fsync", &backup, e))?;
        let dir = self.session_dir(h.identity.session);
        sync_dir(&dir, &self.faults)?;
        if plan.first_problem.is_none() {
            // Only a torn tail: it lies after the last newline, so cutting in place is safe
            // for mapped readers (see fs/mmap.rs). Through the descriptor we hold locked, not
            // the path, which is the same file but says so less plainly.
            file.set_len(plan.keep_bytes)
                .map_err(|e| Error::io("cut torn tail of", &path, e))?;
            file.sync_all().map_err(|e| Error::io("fsync", &path, e))?;
        } else {
            let new_header = Header {
                generation: header.generation + 1,
                ..header
            };
            let mut temp = TempFile::create(&dir, h.identity.segment, &self.faults)?;
            let mut bytes = Vec::new();
            encode_header(&new_header, &mut bytes)?;
            temp.write(&bytes)?;
            let old_header_end = first_line_end(file, &path)?;
            copy_range(file, old_header_end, plan.keep_bytes, &mut temp)?;
            temp.sync()?;
            temp.replace(&path)?;
            if let Err(e) = sync_dir(&dir, &self.faults) {
                h.poisoned = Some(e.to_string());
                return Err(e);
            }
        }
        // The handle re-reads the file at its next use.
        h.header = None;
        plan.backup = Some(backup);
        Ok(plan)
    }
}

/// Opens a file and takes its exclusive lock, following replacements. `Ok(None)` if missing.
fn open_locked(path: &Path) -> Result<Option<File>> {
    loop {
        let opened = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(handle::no_follow())
            .open(path);
        let file = match opened {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("open", path, handle::explain_link(e))),
        };
        file.lock().map_err(|e| Error::io("lock", path, e))?;
        let meta = file.metadata().map_err(|e| Error::io("stat", path, e));
        match meta {
            Ok(m) if m.nlink() > 0 => return Ok(Some(file)),
            Ok(_) => {
                let _ = file.unlock();
            }
            Err(e) => {
                let _ = file.unlock();
                return Err(e);
            }
        }
    }
}

fn first_line_end(file: &File, path: &Path) -> Result<u64> {
    let mut buf = vec![0u8; codec::MAX_LINE];
    let n = read::read_at_most(file, &mut buf, 0, path)?;
    memchr::memchr(b'\n', buf.get(..n).unwrap_or_default())
        .map(|p| p as u64 + 1)
        .ok_or_else(|| Error::Corrupt {
            path: path.to_path_buf(),
            line: 1,
            offset: 0,
            reason: CorruptReason::MissingHeader,
        })
}

/// Copies bytes `from..to` of `src` to the end of `temp` (raw lines, never re-serialized).
fn copy_range(src: &File, from: u64, to: u64, temp: &mut TempFile) -> Result<()> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut pos = from;
    while pos < to {
        let want = usize::try_from(to - pos)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let slot = buf.get_mut(..want).unwrap_or_default();
        let n = read::read_at_most(src, slot, pos, &temp.path)?;
        if n == 0 {
            return Err(Error::io(
                "copy",
                &temp.path,
                io::Error::new(io::ErrorKind::UnexpectedEof, "source shrank while copying"),
            ));
        }
        temp.write(slot.get(..n).unwrap_or_default())?;
        pos += n as u64;
    }
    Ok(())
}

/// Opens a file for reading and runs `f` on it under the shared lock (so that no append is in
/// flight), following replacements. `Ok(None)` if the file does not exist.
fn with_snapshot<T>(
    path: &Path,
    mut f: impl FnMut(&File, u64) -> Result<T>,
) -> Result<Option<(File, T)>> {
    loop {
        let opened = OpenOptions::new()
            .read(true)
            .custom_flags(handle::no_follow())
            .open(path);
        let file = match opened {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("open", path, handle::explain_link(e))),
        };
        let meta = file.metadata().map_err(|e| Error::io("stat", path, e))?;
        if !meta.is_file() {
            return Err(Error::io(
                "open",
                path,
                io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"),
            ));
        }
        file.lock_shared().map_err(|e| Error::io("lock", path, e))?;
        let result = file
            .metadata()
            .map_err(|e| Error::io("stat", path, e))
            .and_then(|m| {
                if m.nlink() == 0 {
                    Ok(None)
                } else {
                    f(&file, m.len()).map(Some)
                }
            });
        let _ = file.unlock();
        if let Some(value) = result? {
            return Ok(Some((file, value)));
        }
    }
}

/// Reads the entry a blob line refers to. `Ok(Err(reason))` if the blob is missing, damaged,
/// or not text.
fn resolve(
    blobs: &BlobDir<'_>,
    reference: &BlobRef,
) -> Result<std::result::Result<String, CorruptReason>> {
    let fault = match blobs.read(&reference.sha256, Some(reference.len))? {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(json) => return Ok(Ok(json)),
            Err(_) => "blob is not UTF-8 text".to_string(),
        },
        Err(fault) => fault.to_string(),
    };
    Ok(Err(CorruptReason::Blob {
        id: reference.sha256,
        problem: fault,
    }))
}

/// For a blob line, checks its blob and notes a problem if it is missing or does not match:
/// what verify and repair do with every blob line (replay reads the blob instead).
fn check_blob(
    blobs: &BlobDir<'_>,
    delivery: Delivery<'_>,
    problems: &mut Vec<crate::Problem>,
) -> Result<ControlFlow<()>> {
    if let Delivery::Blob {
        reference,
        line,
        offset,
        ..
    } = delivery
    {
        if let Err(reason) = resolve(blobs, &reference)? {
            problems.push(crate::Problem {
                line,
                offset,
                reason,
            });
        }
    }
    Ok(ControlFlow::Continue(()))
}

/// A line sink that takes nothing: for scans that only check.
#[allow(clippy::unnecessary_wraps, reason = "has the shape of a line sink")]
fn skip(_: Delivery<'_>) -> Result<ControlFlow<()>> {
    Ok(ControlFlow::Continue(()))
}

/// Adds problems found outside the line checker (blobs) to a report, in file order.
fn add_problems(report: &mut ScanReport, problems: Vec<crate::Problem>) {
    if problems.is_empty() {
        return;
    }
    for p in problems {
        report.valid_up_to = report.valid_up_to.min(p.offset);
        report.problem_count += 1;
        if report.problems.len() < ScanReport::MAX_PROBLEMS {
            report.problems.push(p);
        }
    }
    report.problems.sort_by_key(|p| p.offset);
}

fn is_regular_file(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file())
}

impl FsStore {
    /// Header, tail and metadata of a segment read without caching a handle (listings).
    fn probe(&self, session: SessionId, segment: SegmentId) -> Result<(Header, Tip, fs::Metadata)> {
        let path = self.segment_path(session, segment);
        let identity = Identity {
            kind: FileKind::Segment,
            session,
            segment,
        };
        let probed = with_snapshot(&path, |file, size| {
            let (header, header_end) = read::read_header(file, &path, identity)?;
            let tail = read::probe_tail(file, &path, size, (header_end, 0))?;
            let meta = file.metadata().map_err(|e| Error::io("stat", &path, e))?;
            Ok((header, tail, meta))
        })?;
        let Some((_, (header, tail, meta))) = probed else {
            return Err(Error::SegmentNotFound { session, segment });
        };
        let tip = Tip {
            count: tail.count,
            generation: header.generation,
        };
        Ok((header, tip, meta))
    }

    /// Truncate: keeps the first `keep` entries by crash-atomic rewrite, under the segment's
    /// exclusive lock; with `expected`, only if the tip is still that (the detector).
    fn rewrite_keeping(
        &self,
        session: SessionId,
        segment: SegmentId,
        keep: u64,
        expected: Option<Tip>,
    ) -> Result<Tip> {
        let handle = self.segment_handle(session, segment)?;
        let mut h = lock(&handle);
        h.check_poison()?;
        let dir = self.session_dir(session);
        h.locked(|h| {
            let tip = h.tip();
            if let Some(expected) = expected {
                if expected != tip {
                    return Err(Error::ConcurrentWriter {
                        segment,
                        expected,
                        found: tip,
                    });
                }
            }
            if keep > tip.count {
                return Err(Error::BeyondEnd {
                    segment,
                    requested: keep,
                    count: tip.count,
                });
            }
            let cut = Self::cut_after(h, keep)?;
            let Some((header, header_end)) = h.header.clone() else {
                return Err(Error::SegmentNotFound { session, segment });
            };
            let header = Header {
                generation: header.generation + 1,
                ..header
            };
            let mut temp = TempFile::create(&dir, segment, &self.faults)?;
            let mut bytes = Vec::new();
            let new_header_end = encode_header(&header, &mut bytes)?;
            temp.write(&bytes)?;
            copy_range(&h.file, header_end, cut, &mut temp)?;
            temp.sync()?;
            let new_file = temp.replace(&h.path)?;
            let old = std::mem::replace(&mut h.file, new_file);
            let _ = old.unlock();
            drop(old);
            h.header = Some((header, new_header_end));
            h.tail = read::TailState {
                committed: new_header_end + (cut - header_end),
                count: keep,
                torn: 0,
            };
            if let Err(e) = sync_dir(&dir, &self.faults) {
                h.poisoned = Some(e.to_string());
                return Err(e);
            }
            Ok(h.tip())
        })
    }

    fn cached(&self, key: Key) -> Option<Arc<Mutex<Handle>>> {
        lock(&self.open).slots.get(&key).map(|(h, _)| Arc::clone(h))
    }

    fn durable(&self) -> bool {
        self.options.durability == Durability::Sync
    }

    fn blob_lock(&self, session: SessionId, exclusive: bool) -> Result<BlobLock> {
        let session_dir = self.session_dir(session);
        let dir = BlobDir::new(&session_dir, &self.faults).root();
        if create_dir(&dir, &self.faults)? {
            sync_dir(&session_dir, &self.faults)?;
        }
        let path = dir.join("lock");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(0o600)
            .custom_flags(handle::no_follow())
            .open(&path)
            .map_err(|e| Error::io("open", &path, handle::explain_link(e)))?;
        let locked = if exclusive {
            file.lock()
        } else {
            file.lock_shared()
        };
        locked.map_err(|e| Error::io("lock", &path, e))?;
        Ok(BlobLock(file))
    }

    /// Decides how each entry goes into its line, and writes the blobs of those too long for
    /// one, durably, before any line refers to them. Sizes are checked first, so a refused batch
    /// writes nothing. The returned lock must be held until the lines are appended.
    fn prepare<'a>(
        &self,
        session: SessionId,
        entries: &'a [RawEntry],
    ) -> Result<(Vec<Prepared<'a>>, Option<BlobLock>)> {
        for e in entries {
            check_entry_size(e, self.options.max_entry_bytes)?;
        }
        let prepared: Vec<Prepared<'a>> = entries.iter().map(Prepared::of).collect();
        let mut lock = None;
        for (p, e) in prepared.iter().zip(entries) {
            if let Prepared::Blob(_) = p {
                if lock.is_none() {
                    lock = Some(self.blob_lock(session, false)?);
                }
                let session_dir = self.session_dir(session);
                BlobDir::new(&session_dir, &self.faults).put(e.as_str().as_bytes())?;
            }
        }
        Ok((prepared, lock))
    }

    /// Appends to a trace or the attachment index, creating the file on first use.
    fn append_aux(&self, key: Key, events: &[RawEntry]) -> Result<()> {
        let (session, segment, kind) = key;
        let owner_exists = || -> Result<bool> {
            Ok(match kind {
                FileKind::Attachments => self.session_dir(session).is_dir(),
                _ => self.exists(session, segment)?,
            })
        };
        let missing = || match kind {
            FileKind::Attachments => Error::SessionNotFound(session),
            _ => Error::SegmentNotFound { session, segment },
        };
        // A cached handle can outlive its file: another store may have deleted the session,
        // and the segment may have been created again since, without this file. Such a handle
        // finds no file; drop it and start over once, creating the file if its owner is there.
        for _ in 0..2 {
            let handle = match self.handle(key)? {
                Some(h) => h,
                None => {
                    if !owner_exists()? {
                        return Err(missing());
                    }
                    let header = Self::new_header(session, segment, kind, None);
                    // Losing the race to another creator is fine: the file is there either way.
                    self.create_file(&header, &[], None)?;
                    self.handle(key)?.ok_or_else(missing)?
                }
            };
            let (prepared, _blob_lock) = self.prepare(session, events)?;
            let mut h = lock(&handle);
            match h.append(&prepared, None, self.durable()) {
                Err(Error::SegmentNotFound { .. }) => {
                    drop(h);
                    let mut open = lock(&self.open);
                    if open
                        .slots
                        .get(&key)
                        .is_some_and(|(cached, _)| Arc::ptr_eq(cached, &handle))
                    {
                        open.slots.remove(&key);
                    }
                }
                other => return other.map(|_| ()),
            }
        }
        Err(missing())
    }

    /// The blob ids every line of every log, trace and index file of the session refers to.
    fn referenced_blobs(&self, session: SessionId) -> Result<std::collections::BTreeSet<BlobId>> {
        let dir = self.session_dir(session);
        let mut referenced = std::collections::BTreeSet::new();
        let entries = fs::read_dir(&dir).map_err(|e| Error::io("list", &dir, e))?;
        for entry in entries.flatten() {
            let path = entry.path();
            let is_log = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(".jsonl") && !n.starts_with('.'));
            if !is_log || !entry.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            let Some((file, len)) = with_snapshot(&path, |_, size| Ok(size))? else {
                continue;
            };
            let checker = Checker::new(ReadMode::Tolerant, 0, false, None);
            read::scan_stream(
                read::ReadAt::new(&file),
                len,
                checker,
                &mut |delivery| {
                    if let Delivery::Blob { reference, .. } = delivery {
                        referenced.insert(reference.sha256);
                    }
                    Ok(ControlFlow::Continue(()))
                },
                &path,
            )?;
        }
        for attachment in self.list_attachments(session)? {
            referenced.insert(attachment.id);
        }
        Ok(referenced)
    }
}

impl Store for FsStore {
    fn create_segment(
        &self,
        session: SessionId,
        segment: SegmentId,
        initial: &[RawEntry],
    ) -> Result<Tip> {
        if self.exists(session, segment)? {
            // Checked first so that a refused create writes no blobs; the link below is what
            // makes the refusal atomic.
            return Err(Error::SegmentExists { session, segment });
        }
        for e in initial {
            check_entry_size(e, self.options.max_entry_bytes)?;
        }
        let dir = self.session_dir(session);
        let need_blobs = initial
            .iter()
            .any(|e| matches!(Prepared::of(e), Prepared::Blob(_)));
        if need_blobs && create_dir(&dir, &self.faults)? {
            sync_dir(&self.root, &self.faults)?;
        }
        let (prepared, _blob_lock) = self.prepare(session, initial)?;
        let mut body = Vec::new();
        encode_entries(0, &prepared, &mut body)?;
        let header = Self::new_header(session, segment, FileKind::Segment, None);
        if !self.create_file(&header, &body, None)? {
            return Err(Error::SegmentExists { session, segment });
        }
        Ok(Tip {
            count: initial.len() as u64,
            generation: 0,
        })
    }

    /// One entry: as [`Store::append_batch_raw`], without allocating on the common path.
    fn append_raw(&self, session: SessionId, segment: SegmentId, entry: &RawEntry) -> Result<Tip> {
        let handle = self.segment_handle(session, segment)?;
        check_entry_size(entry, self.options.max_entry_bytes)?;
        let (prepared, _blob_lock) = match Prepared::of(entry) {
            inline @ Prepared::Inline(_) => (inline, None),
            Prepared::Blob(_) => {
                let (mut prepared, lock) = self.prepare(session, std::slice::from_ref(entry))?;
                match prepared.pop() {
                    Some(p) => (p, lock),
                    None => return self.tip(session, segment),
                }
            }
        };
        let mut h = lock(&handle);
        h.append(std::slice::from_ref(&prepared), None, self.durable())
    }

    fn append_batch_raw(
        &self,
        session: SessionId,
        segment: SegmentId,
        entries: &[RawEntry],
    ) -> Result<Tip> {
        let handle = self.segment_handle(session, segment)?;
        let (prepared, _blob_lock) = self.prepare(session, entries)?;
        let mut h = lock(&handle);
        h.append(&prepared, None, self.durable())
    }

    fn append_if(
        &self,
        session: SessionId,
        segment: SegmentId,
        expected: Tip,
        entries: &[RawEntry],
    ) -> Result<Tip> {
        let handle = self.segment_handle(session, segment)?;
        let (prepared, _blob_lock) = self.prepare(session, entries)?;
        let mut h = lock(&handle);
        h.append(&prepared, Some(expected), self.durable())
    }

    fn replay_raw(
        &self,
        session: SessionId,
        segment: SegmentId,
        options: &ReplayOptions,
        sink: &mut Sink<'_>,
    ) -> Result<ScanReport> {
        self.replay_file((session, segment, FileKind::Segment), options, sink, false)
    }

    /// The mapped fast path: CRC, shape and sequence of every line, from a read-only mapping
    /// of the committed part of the file.
    fn verify(&self, session: SessionId, segment: SegmentId) -> Result<ScanReport> {
        let path = self.segment_path(session, segment);
        let snapshot = with_snapshot(&path, |file, size| {
            Ok((size, read::committed_end(file, &path, size)?))
        })?;
        let Some((file, (size, committed))) = snapshot else {
            return Err(Error::SegmentNotFound { session, segment });
        };
        let map = mmap::map_committed(&file, committed, &path)?;
        let mut tail =
            vec![0u8; usize::try_from((size - committed).min(codec::MAX_LINE as u64)).unwrap_or(0)];
        let n = read::read_at_most(&file, &mut tail, committed, &path)?;
        tail.truncate(n);
        let mut checker = Checker::new(
            ReadMode::Tolerant,
            0,
            false,
            Some(Identity {
                kind: FileKind::Segment,
                session,
                segment,
            }),
        );
        let session_dir = self.session_dir(session);
        let blobs = BlobDir::new(&session_dir, &self.faults);
        let mut blob_problems = Vec::new();
        if let Some(map) = &map {
            mmap::for_each_chunk(map, |base, chunk| {
                let mut check = |d: Delivery<'_>| check_blob(&blobs, d, &mut blob_problems);
                read::feed(chunk, base, &mut checker, &mut check, &path).map(|_| ())
            })?;
        }
        let (mut report, _) =
            read::finish_scan(checker, committed, &tail, size - committed, &path)?;
        add_problems(&mut report, blob_problems);
        report.path = Some(path);
        Ok(report)
    }

    fn tip(&self, session: SessionId, segment: SegmentId) -> Result<Tip> {
        if let Some(handle) = self.cached((session, segment, FileKind::Segment)) {
            let mut h = lock(&handle);
            return h.locked(|h| Ok(h.tip()));
        }
        self.probe(session, segment).map(|(_, tip, _)| tip)
    }

    fn truncate(&self, session: SessionId, segment: SegmentId, keep: u64) -> Result<Tip> {
        self.rewrite_keeping(session, segment, keep, None)
    }

    fn truncate_if(
        &self,
        session: SessionId,
        segment: SegmentId,
        expected: Tip,
        keep: u64,
    ) -> Result<Tip> {
        self.rewrite_keeping(session, segment, keep, Some(expected))
    }

    fn sync(&self, session: SessionId, segment: SegmentId) -> Result<()> {
        let handle = self.segment_handle(session, segment)?;
        let mut h = lock(&handle);
        h.sync()
    }

    fn fork(&self, session: SessionId, source: SegmentId, at: u64, into: SegmentId) -> Result<Tip> {
        let handle = self.segment_handle(session, source)?;
        let mut h = lock(&handle);
        h.locked(|h| {
            let count = h.tip().count;
            if at > count {
                return Err(Error::BeyondEnd {
                    segment: source,
                    requested: at,
                    count,
                });
            }
            let cut = Self::cut_after(h, at)?;
            let header_end = h.header.as_ref().map_or(0, |(_, end)| *end);
            let header = Self::new_header(
                session,
                into,
                FileKind::Segment,
                Some(Lineage {
                    segment: source,
                    at,
                }),
            );
            // The copied lines keep their sequence numbers 0..at, which is what the fork's
            // own sequence must be.
            if !self.create_file(&header, &[], Some((&h.file, header_end, cut)))? {
                return Err(Error::SegmentExists {
                    session,
                    segment: into,
                });
            }
            Ok(Tip {
                count: at,
                generation: 0,
            })
        })
    }

    fn exists(&self, session: SessionId, segment: SegmentId) -> Result<bool> {
        Ok(is_regular_file(&self.segment_path(session, segment)))
    }

    fn list_sessions(&self) -> Result<Vec<SessionId>> {
        let entries = fs::read_dir(&self.root).map_err(|e| Error::io("list", &self.root, e))?;
        let mut sessions: Vec<SessionId> = entries
            .filter_map(|entry| {
                let entry = entry.ok()?;
                let id: SessionId = entry.file_name().to_str()?.parse().ok()?;
                entry.file_type().ok()?.is_dir().then_some(id)
            })
            .collect();
        sessions.sort_unstable_by(|a, b| b.cmp(a));
        Ok(sessions)
    }

    fn list_segments(&self, session: SessionId) -> Result<Vec<SegmentInfo>> {
        let dir = self.session_dir(session);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::SessionNotFound(session))
            }
            Err(e) => return Err(Error::io("list", &dir, e)),
        };
        let mut ids: Vec<SegmentId> = entries
            .filter_map(|entry| {
                let entry = entry.ok()?;
                let name = entry.file_name();
                let stem = name.to_str()?.strip_suffix(".jsonl")?;
                let id: SegmentId = stem.parse().ok()?;
                entry.file_type().ok()?.is_file().then_some(id)
            })
            .collect();
        ids.sort_unstable_by(|a, b| b.cmp(a));
        let mut out = Vec::with_capacity(ids.len());
        for segment in ids {
            match self.probe(session, segment) {
                Ok((header, tip, meta)) => out.push(SegmentInfo {
                    session,
                    segment,
                    tip,
                    bytes: meta.len(),
                    modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    created_ms: header.created_ms,
                    fork: header.fork,
                    damage: None,
                }),
                // Deleted between listing and probing: not there any more.
                Err(Error::SegmentNotFound { .. }) => {}
                Err(e) => {
                    let meta = fs::metadata(self.segment_path(session, segment)).ok();
                    out.push(SegmentInfo {
                        session,
                        segment,
                        tip: Tip::default(),
                        bytes: meta.as_ref().map_or(0, fs::Metadata::len),
                        modified: meta
                            .and_then(|m| m.modified().ok())
                            .unwrap_or(SystemTime::UNIX_EPOCH),
                        created_ms: 0,
                        fork: None,
                        damage: Some(e.to_string()),
                    });
                }
            }
        }
        Ok(out)
    }

    fn find_session(&self, segment: SegmentId) -> Result<Option<SessionId>> {
        for session in self.list_sessions()? {
            if self.exists(session, segment)? {
                return Ok(Some(session));
            }
        }
        Ok(None)
    }

    fn delete_session(&self, session: SessionId) -> Result<()> {
        let dir = self.session_dir(session);
        if !fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
            return Err(Error::SessionNotFound(session));
        }
        lock(&self.open).slots.retain(|(s, _, _), _| *s != session);
        fs::remove_dir_all(&dir).map_err(|e| Error::io("delete", &dir, e))?;
        sync_dir(&self.root, &self.faults)
    }

    fn session_modified(&self, session: SessionId) -> Result<SystemTime> {
        let dir = self.session_dir(session);
        let meta = match fs::metadata(&dir) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::SessionNotFound(session))
            }
            Err(e) => return Err(Error::io("stat", &dir, e)),
        };
        let mut newest = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        let entries = fs::read_dir(&dir).map_err(|e| Error::io("list", &dir, e))?;
        for entry in entries.flatten() {
            if let Ok(t) = entry.metadata().and_then(|m| m.modified()) {
                newest = newest.max(t);
            }
        }
        Ok(newest)
    }

    fn append_trace_raw(
        &self,
        session: SessionId,
        segment: SegmentId,
        events: &[RawEntry],
    ) -> Result<()> {
        self.append_aux((session, segment, FileKind::Trace), events)
    }

    fn replay_trace_raw(
        &self,
        session: SessionId,
        segment: SegmentId,
        options: &ReplayOptions,
        sink: &mut Sink<'_>,
    ) -> Result<ScanReport> {
        self.replay_file((session, segment, FileKind::Trace), options, sink, true)
    }

    fn put_attachment(
        &self,
        session: SessionId,
        bytes: &[u8],
        meta: &AttachmentMeta,
    ) -> Result<Attachment> {
        if bytes.len() > self.options.max_entry_bytes {
            return Err(Error::EntryTooLarge {
                size: bytes.len(),
                limit: self.options.max_entry_bytes,
            });
        }
        let session_dir = self.session_dir(session);
        if !session_dir.is_dir() {
            return Err(Error::SessionNotFound(session));
        }
        let _lock = self.blob_lock(session, false)?;
        let id = BlobDir::new(&session_dir, &self.faults).put(bytes)?;
        let attachment = Attachment {
            id,
            len: bytes.len() as u64,
            meta: meta.clone(),
            created_ms: crate::now_ms(),
        };
        let index = RawEntry::from_value(&attachment)?;
        self.append_aux(
            (session, ATTACHMENTS, FileKind::Attachments),
            std::slice::from_ref(&index),
        )?;
        Ok(attachment)
    }

    fn list_attachments(&self, session: SessionId) -> Result<Vec<Attachment>> {
        if !self.session_dir(session).is_dir() {
            return Err(Error::SessionNotFound(session));
        }
        let mut out = Vec::new();
        let key = (session, ATTACHMENTS, FileKind::Attachments);
        let path = self.file_path(session, ATTACHMENTS, FileKind::Attachments);
        let Some((file, len)) = with_snapshot(&path, |_, size| Ok(size))? else {
            return Ok(out);
        };
        let checker = Checker::new(
            ReadMode::Strict,
            0,
            true,
            Some(Identity {
                kind: key.2,
                session,
                segment: ATTACHMENTS,
            }),
        );
        read::scan_stream(
            read::ReadAt::new(&file),
            len,
            checker,
            &mut |delivery| {
                if let Delivery::Entry { seq, json } = delivery {
                    out.push(
                        serde_json::from_str(json).map_err(|source| Error::Deserialize {
                            segment: ATTACHMENTS,
                            seq,
                            source,
                        })?,
                    );
                }
                Ok(ControlFlow::Continue(()))
            },
            &path,
        )?;
        Ok(out)
    }

    fn get_blob(&self, session: SessionId, id: &BlobId) -> Result<Vec<u8>> {
        let session_dir = self.session_dir(session);
        let blobs = BlobDir::new(&session_dir, &self.faults);
        match blobs.read(id, None)? {
            Ok(bytes) => Ok(bytes),
            Err(BlobFault::Missing) => Err(Error::BlobNotFound { session, id: *id }),
            Err(fault) => Err(Error::Corrupt {
                path: blobs.path(id),
                line: 0,
                offset: 0,
                reason: CorruptReason::Blob {
                    id: *id,
                    problem: fault.to_string(),
                },
            }),
        }
    }

    fn gc_blobs(&self, session: SessionId, dry_run: bool) -> Result<GcReport> {
        let session_dir = self.session_dir(session);
        if !session_dir.is_dir() {
            return Err(Error::SessionNotFound(session));
        }
        if !BlobDir::new(&session_dir, &self.faults).root().is_dir() {
            // Never had a blob: nothing to collect, and nothing to create (not even the lock).
            return Ok(GcReport::default());
        }
        // Exclusive: no append is between writing a blob and appending the line that refers
        // to it while the references are collected and the orphans removed.
        let _lock = self.blob_lock(session, true)?;
        let referenced = self.referenced_blobs(session)?;
        let blobs = BlobDir::new(&session_dir, &self.faults);
        let mut report = GcReport::default();
        for (id, len) in blobs.list()? {
            if referenced.contains(&id) {
                report.kept += 1;
                continue;
            }
            if !dry_run {
                blobs.remove(&id)?;
            }
            report.orphans.push(id);
            report.orphan_bytes += len;
        }
        Ok(report)
    }

    fn max_entry_bytes(&self) -> usize {
        self.options.max_entry_bytes
    }

    fn is_durable(&self) -> bool {
        true
    }
}

/// The segment id in the header of a session's attachment index.
const ATTACHMENTS: SegmentId = SegmentId::from_uuid(uuid::Uuid::nil());
