//! An open segment (or trace) file as a writer holds it: the `O_APPEND` descriptor, the cached
//! tip, and the lock protocol.
//!
//! **Lock protocol.** Every operation that writes a file (append, torn-tail removal, rollback,
//! rewrite, repair) holds `flock(LOCK_EX)` on the file while it checks the tip and writes.
//! Readers hold `LOCK_SH` only while they read the committed length. After taking a lock, a
//! holder checks `st_nlink`: zero means the file was replaced by a rewrite (or deleted) while
//! it waited, so it opens the name again from the root and locks again. Cost of an append:
//! lock, statx, write, unlock (plus fdatasync in `Sync` mode), each one call through the seam.
//!
//! Writers never block in `flock`: they try (`LOCK_NB`), and while the file is taken they let
//! go of the handle, pause and try again until `FsOptions::lock_wait` has passed
//! (`lease.rs`), so that a segment held by a lease costs them a bounded wait and
//! `Error::Locked`. A **lease** takes `LOCK_EX` (this is where it takes the segment over:
//! refresh, torn tail), then turns it into `LOCK_SH` and keeps that until it is released: every
//! other writer's `LOCK_EX` fails, readers' `LOCK_SH` does not. While the handle is leased,
//! only the lease writes through it (`acting`), without any lock call and without a refresh:
//! nobody else can have changed the file.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use super::append::{encode_write, write_time, Durable, WriteMeta};
use super::group::{Commit, OpenFile};
use super::read::{Reader, TailState};
use super::seam::{Access, FileSystem, LockKind};
use super::snapshot::{replaced_too_often, MAX_REOPENS};
use super::tree::Tree;
use crate::codec::{Header, Version};
use crate::scan::Identity;
use crate::store::Prepared;
use crate::{Error, Result, Tip};

/// Why a file's state is unknown: the call that failed, and its error. Sticky.
#[derive(Debug, Clone)]
pub(crate) struct Poison {
    op: &'static str,
    source: Arc<io::Error>,
}

impl Poison {
    pub(crate) fn new(op: &'static str, error: &io::Error) -> Self {
        Self {
            op,
            source: Arc::new(copy_of(error)),
        }
    }

    /// What every later use of the file gets.
    pub(crate) fn error(&self, path: &std::path::Path) -> Error {
        Error::Poisoned {
            path: path.to_path_buf(),
            op: self.op,
            source: Arc::clone(&self.source),
        }
    }
}

/// What [`Handle::append`] did.
#[derive(Debug)]
pub(crate) enum Appended<F: FileSystem> {
    /// Written; the tip after it, and for a `Sync` append the group commit to wait for once
    /// the handle is let go.
    Done(Tip, Option<Commit<F>>),
    /// Nothing written: the file is of this version, whose lines are shorter than those the
    /// entries were prepared for, or whose blobs go elsewhere (the file at the name was made
    /// again meanwhile). Prepare them again for it.
    Reprepare(Version),
}

#[derive(Debug)]
pub(crate) struct Handle<F: FileSystem> {
    pub path: PathBuf,
    pub identity: Identity,
    /// The open file and its group commit (`group.rs`).
    pub file: Arc<OpenFile<F>>,
    /// Header of the currently open file and the offset where entries start; `None` until the
    /// file has been read under the lock.
    pub header: Option<(Header, u64)>,
    pub tail: TailState,
    /// The version of the file, once known (before the lock, for preparing entries; the header
    /// says it again under the lock).
    version: Option<Version>,
    /// `D`, the durable watermark: the entries below it are known durable. A version-2 line
    /// records it as `u = seq − D`. It is what the last complete line claims when the handle
    /// first reads the file, the count after each fdatasync that returned (a `Sync` append,
    /// `sync`), the count a truncate kept (its new file is durable); never above the count.
    pub durable: u64,
    /// Set when an fsync (or a rollback) failed: the file's state is unknown from then on.
    pub poisoned: Option<Poison>,
    /// The lease that holds the file through this handle, if one does: this handle's
    /// descriptor then holds `LOCK_SH` for it.
    pub lease: Option<Held<F>>,
    /// The lease on whose behalf the handle is being used right now (set by the lease around
    /// each of its calls): only it may write while the handle is leased.
    pub acting: Option<u64>,
    /// The end of the file is known to be a complete write (`tail` is exact). False for a
    /// format-2 file whose end the tail probe could not vouch for: its last line claims
    /// unsynced entries before it, or it ends inside a write or in bytes that are not a line.
    /// A writer then settles it (`recover.rs`) before it writes; `tail` is a guess until then.
    pub settled: bool,
    pub(crate) buf: Vec<u8>,
}

/// A lease's hold on a handle.
#[derive(Debug)]
pub(crate) struct Held<F: FileSystem> {
    /// Tells the lease's own calls from every other writer's.
    pub token: u64,
    /// The holder record, open and locked `LOCK_EX` for as long as the lease lives: a record
    /// whose lock is free is stale.
    pub record: F::File,
    /// What the record says.
    pub holder: crate::LeaseHolder,
}

impl<F: FileSystem> Handle<F> {
    /// Opens an existing file. `Ok(None)` if it (or its session) does not exist.
    pub(crate) fn open(tree: &Tree<F>, identity: Identity) -> Result<Option<Self>> {
        let Some(file) = tree.open_identity(identity, Access::Append)? else {
            return Ok(None);
        };
        let path = tree.identity_path(identity);
        Ok(Some(Self {
            file: OpenFile::new(file, &path),
            path,
            identity,
            header: None,
            tail: TailState {
                committed: 0,
                count: 0,
                torn: 0,
                claim: 0,
            },
            version: None,
            durable: 0,
            poisoned: None,
            lease: None,
            acting: None,
            settled: false,
            buf: Vec::new(),
        }))
    }

    pub(crate) fn reader<'a>(&'a self, fs: &'a F) -> Reader<'a, F> {
        Reader {
            fs,
            file: &self.file,
            path: &self.path,
        }
    }

    pub(crate) fn tip(&self) -> Tip {
        Tip {
            count: self.tail.count,
            generation: self.header.as_ref().map_or(0, |(h, _)| h.generation),
        }
    }

    /// The version of the file, read from its header if this handle has not read it yet (no
    /// lock needed: a header never changes in place, and rewrites keep the version).
    pub(crate) fn version(&mut self, tree: &Tree<F>) -> Result<Version> {
        if let Some(v) = self.header.as_ref().and_then(|(h, _)| h.version()) {
            return Ok(v);
        }
        if let Some(v) = self.version {
            return Ok(v);
        }
        let (header, _) = self.reader(&tree.fs).header(self.identity)?;
        // `header` checks the version: one this build reads.
        let v = header.version().unwrap_or(Version::NEW_FILES);
        self.version = Some(v);
        Ok(v)
    }

    fn not_found(&self) -> Error {
        Error::SegmentNotFound {
            session: self.identity.session,
            segment: self.identity.segment,
        }
    }

    /// What a writer is told while another writer has the file: [`Error::Locked`] without a
    /// holder (the caller waits and tries again, and names the holder if it gives up).
    fn busy(&self) -> Error {
        Error::Locked {
            session: self.identity.session,
            segment: self.identity.segment,
            holder: self.lease.as_ref().map(|held| held.holder.clone()),
            waited: std::time::Duration::ZERO,
        }
    }

    /// Takes the exclusive lock on the current file at the name, if nobody holds a lock on it,
    /// and brings the cached state up to date with it. On `Err` the lock is not held;
    /// [`Error::Locked`] if someone else has the file (never waits: the caller does, without
    /// holding the handle, see `FsStore::writing`). A file replaced (or deleted and made again)
    /// is followed by its name [`MAX_REOPENS`] times in a row; when the last file is replaced
    /// too, the lock fails with `ErrorKind::ResourceBusy` rather than loop forever.
    pub(crate) fn lock(&mut self, tree: &Tree<F>) -> Result<()> {
        for _ in 0..=MAX_REOPENS {
            let free = tree
                .fs
                .try_lock(&self.file, LockKind::Exclusive)
                .map_err(|e| Error::io("lock", &self.path, e))?;
            if !free {
                return Err(self.busy());
            }
            match self.refresh(&tree.fs) {
                Ok(true) => return Ok(()),
                Ok(false) => {
                    // Replaced or deleted while we waited: follow the name, from the root (the
                    // session itself may have been deleted and made again).
                    let _ = tree.fs.unlock(&self.file);
                    let file = tree
                        .open_identity(self.identity, Access::Append)?
                        .ok_or_else(|| self.not_found())?;
                    self.replace_file(file);
                    self.header = None;
                }
                Err(e) => {
                    let _ = tree.fs.unlock(&self.file);
                    return Err(e);
                }
            }
        }
        Err(replaced_too_often(&self.path))
    }

    /// Under the lock: `Ok(false)` if the open file is no longer the one at the name.
    fn refresh(&mut self, fs: &F) -> Result<bool> {
        let (size, links) = fs
            .size_and_links(&self.file)
            .map_err(|e| Error::io("stat", &self.path, e))?;
        if links == 0 {
            return Ok(false);
        }
        let (header_end, known, fresh) = match &self.header {
            Some((_, end)) => (*end, (self.tail.committed, self.tail.count), false),
            None => {
                let (header, end) = self.reader(fs).header(self.identity)?;
                self.version = header.version();
                self.header = Some((header, end));
                self.tail = TailState {
                    committed: end,
                    count: 0,
                    torn: 0,
                    claim: 0,
                };
                self.durable = 0;
                self.settled = false;
                (end, (end, 0), true)
            }
        };
        // With a torn tail cached, the size alone cannot tell whether another writer cut it and
        // appended a line of the same length, so the end is re-read. Torn tails only follow
        // crashes: the common path stays one statx.
        if size != self.tail.committed + self.tail.torn || self.tail.torn > 0 {
            let known = if size >= known.0 {
                known
            } else {
                (header_end, 0)
            };
            let v2 = self.version.is_some_and(Version::has_marks);
            match self.reader(fs).tail(size, known) {
                Ok(tail) => {
                    self.tail = tail;
                    // What the last line claims was true when it was written (by this writer
                    // or another); a cut (a truncate elsewhere) may have removed entries this
                    // handle knew.
                    self.durable = self.durable.max(tail.claim).min(tail.count);
                    // A last line that claims every entry before it durable vouches for the
                    // whole file: nothing before it can be an interrupted write. Otherwise the
                    // unsynced lines before it are checked once, when a writer takes the file
                    // (a power cut may have kept later pages and lost earlier ones).
                    if fresh && tail.unvouched(v2) {
                        self.settled = false;
                    } else if fresh || !v2 {
                        self.settled = true;
                    }
                }
                // A format-2 file that ends inside a write or in bytes that are no line: what
                // that is (an interrupted tail or damage) is for the writer's recovery to find.
                Err(Error::Corrupt { .. }) if v2 => self.settled = false,
                Err(e) => return Err(e),
            }
        } else if fresh {
            // Nothing after the header.
            self.settled = true;
        }
        Ok(true)
    }

    /// Runs `f` with the exclusive lock held and the state fresh; or, while the handle is
    /// leased, on behalf of the lease only, with no lock call and no refresh (the lease holds
    /// the file). [`Error::Locked`] for anyone else while the file is taken.
    pub(crate) fn locked<T>(
        &mut self,
        tree: &Tree<F>,
        f: impl FnOnce(&mut Self) -> Result<T>,
    ) -> Result<T> {
        if let Some(held) = &self.lease {
            if self.acting != Some(held.token) {
                return Err(self.busy());
            }
            return f(self);
        }
        self.lock(tree)?;
        let result = f(self);
        let _ = tree.fs.unlock(&self.file);
        result
    }

    /// Fails if the file's state is unknown: a call on this handle failed, or the group
    /// commit's `fdatasync` of its file did (`group.rs`).
    pub(crate) fn check_poison(&self) -> Result<()> {
        match self.poisoned.clone().or_else(|| self.file.failure()) {
            Some(poison) => Err(poison.error(&self.path)),
            None => Ok(()),
        }
    }

    /// Keeps the failure of a group commit's `fdatasync` of `file` as the handle's own, so
    /// that the cache never closes the handle (`cache.rs`) and the error stays sticky.
    pub(crate) fn learn_failure(&mut self, file: &OpenFile<F>) {
        if self.poisoned.is_none() {
            self.poisoned = file.failure();
        }
    }

    /// Puts `file` in place of the open file (a rewrite's, or the file at the name), with a
    /// group commit of its own, and hands back the old one (its waiters finish on it). Every
    /// caller has checked the poison first, the group's failure included.
    pub(crate) fn replace_file(&mut self, file: F::File) -> Arc<OpenFile<F>> {
        let new = OpenFile::new(file, &self.path);
        std::mem::replace(&mut self.file, new)
    }

    /// Marks the file's state unknown from now on: `op` failed with `error`.
    pub(crate) fn poison(&mut self, op: &'static str, error: &io::Error) {
        self.poisoned = Some(Poison::new(op, error));
    }

    /// Under the lock, runs `settle` (the writer's recovery) if the end of the file is not
    /// settled: what an append does before it writes anything, its blobs included.
    pub(crate) fn settle_end(
        &mut self,
        tree: &Tree<F>,
        settle: &dyn Fn(&mut Self) -> Result<()>,
    ) -> Result<()> {
        self.check_poison()?;
        self.locked(tree, |h| if h.settled { Ok(()) } else { settle(h) })
    }

    /// Appends `entries`, prepared for a file of `prepared_for`, as one `write(2)`, under the
    /// lock, after `settle` (the writer's recovery) if the end of the file is not settled.
    /// `expected` is the detector's tip. [`Appended::Reprepare`] (nothing written) if the
    /// file at the name is of a version whose lines cannot hold what was prepared.
    pub(crate) fn append(
        &mut self,
        tree: &Tree<F>,
        settle: &dyn Fn(&mut Self) -> Result<()>,
        entries: &[Prepared<'_>],
        prepared_for: Version,
        expected: Option<Tip>,
        sync: bool,
    ) -> Result<Appended<F>> {
        self.check_poison()?;
        let fs = &tree.fs;
        self.locked(tree, |h| {
            if !h.settled {
                settle(h)?;
            }
            let tip = h.tip();
            if let Some(expected) = expected {
                if expected != tip {
                    return Err(Error::ConcurrentWriter {
                        segment: h.identity.segment,
                        expected,
                        found: tip,
                    });
                }
            }
            if entries.is_empty() {
                return Ok(Appended::Done(tip, None));
            }
            // A file's version is fixed when it is made: a version-1 file gets version-1 lines.
            let version = h
                .header
                .as_ref()
                .and_then(|(header, _)| header.version())
                .unwrap_or(prepared_for);
            // Blobs prepared for another place than the file's version keeps them are
            // prepared again too (a version-2 file's readers look for files of their own).
            let moved = version.packs_blobs() != prepared_for.packs_blobs()
                && entries.iter().any(|e| matches!(e, Prepared::Blob(_)));
            if version.max_inline() < prepared_for.max_inline() || moved {
                return Ok(Appended::Reprepare(version));
            }
            // The last entry's sequence number, count + n − 1, must not pass MAX_SEQ = 2^64 − 2.
            if tip.count.checked_add(entries.len() as u64).is_none() {
                return Err(Error::SegmentFull {
                    segment: h.identity.segment,
                    count: tip.count,
                });
            }
            h.buf.clear();
            // What the group commit made durable since (never above the count).
            h.durable = h.durable.max(h.file.synced()).min(tip.count);
            let write = WriteMeta {
                version,
                first_seq: tip.count,
                appended_ms: write_time(version),
                durable: Durable::Below(h.durable),
            };
            encode_write(&write, entries, &mut h.buf)?;
            if h.tail.torn > 0 {
                // A crash left an unterminated line; it was never committed. Remove it so that
                // the new line does not glue onto it. Safe: we hold the exclusive lock.
                fs.set_len(&h.file, h.tail.committed)
                    .map_err(|e| Error::io("remove torn tail of", &h.path, e))?;
                h.tail.torn = 0;
            }
            h.write_all_once(tree)?;
            h.tail.committed += h.buf.len() as u64;
            h.tail.count += entries.len() as u64;
            h.file.wrote(h.tail.count);
            // A `Sync` append waits for the group's fdatasync after letting go of the lock
            // and the handle, so that other threads write meanwhile and share it.
            let commit = sync.then(|| Commit {
                file: Arc::clone(&h.file),
                count: h.tail.count,
            });
            Ok(Appended::Done(h.tip(), commit))
        })
    }

    /// Makes everything written to the file durable: one `fdatasync`, after `first` (see
    /// [`OpenFile::sync_to`]). Sticky: after a failure the handle is poisoned and never synced
    /// again.
    pub(crate) fn sync(&mut self, fs: &F, first: &dyn Fn() -> Result<()>) -> Result<()> {
        self.check_poison()?;
        self.sync_data(fs, first)
    }

    /// Through the file's group (`group.rs`), so that it shares an fdatasync in flight and
    /// never makes one after the group's failed.
    fn sync_data(&mut self, fs: &F, first: &dyn Fn() -> Result<()>) -> Result<()> {
        match self.file.sync_to(fs, self.tail.count, true, first) {
            Ok(covered) => {
                self.durable = self.durable.max(covered).min(self.tail.count);
                Ok(())
            }
            // Never retried: after a failed fsync the kernel may have dropped the dirty
            // pages, and a second fsync could report success for lost data.
            Err(e) => {
                let file = Arc::clone(&self.file);
                self.learn_failure(&file);
                Err(e)
            }
        }
    }

    /// One `write(2)` of the whole buffer. A short or failed write is rolled back (cut to the
    /// committed length, which only removes bytes of this write since we hold the lock), so it
    /// never becomes a committed line; a short one is reported by its cause (`ENOSPC`, ...),
    /// which a second write of the rest learns (`seam::append_once`). Under a lease, whose
    /// writes readers may watch, written bytes holding a newline are cut by a rewrite instead
    /// (`lease.rs`).
    fn write_all_once(&mut self, tree: &Tree<F>) -> Result<()> {
        let fs = &tree.fs;
        let Err(error) = super::seam::append_once(fs, &self.file, &self.buf) else {
            return Ok(());
        };
        let rolled_back = if self.lease.is_some() && self.failed_write_left_a_line(fs) {
            self.rollback_by_rewrite(tree)
        } else {
            fs.set_len(&self.file, self.tail.committed)
        };
        if let Err(rollback) = rolled_back {
            self.poison("rollback of a failed append", &rollback);
        }
        Err(Error::io("append to", &self.path, error))
    }
}

/// A copy of an `io::Error` that keeps what a caller tests: its `errno` if it has one, else its
/// kind and words.
fn copy_of(e: &io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(e.kind(), e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use crate::codec::{encode_entry, Frame};
    use crate::{Error, FsStore, SegmentId, SessionId, Store, StoreExt, Tip};

    /// Found by the `store_ops` fuzz target: a writer that had seen a torn tail trusted its
    /// cached tail as long as the file size was unchanged, so another writer's line of exactly
    /// the torn tail's length went unnoticed: the detector missed it and the next append cut
    /// it off as if it were still the torn tail.
    #[test]
    fn a_torn_tail_replaced_by_another_writers_line_of_the_same_length_is_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (
            FsStore::open(dir.path()).unwrap(),
            FsStore::open(dir.path()).unwrap(),
        );
        let (session, segment) = (SessionId::new(), SegmentId::new());
        a.create::<serde_json::Value>(session, segment, &[])
            .unwrap();
        a.append(session, segment, &serde_json::json!({"n": 1}))
            .unwrap();

        let mut line = Vec::new();
        encode_entry(&Frame::v1(1), r#"{"n":2}"#, &mut line).unwrap();
        let mut crashed = Vec::new();
        encode_entry(&Frame::v1(1), r#"{"torn":true}"#, &mut crashed).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(a.segment_path(session, segment))
            .unwrap()
            .write_all(&crashed[..line.len()])
            .unwrap();
        let seen = a.tip(session, segment).unwrap();
        assert_eq!(
            seen,
            Tip {
                count: 1,
                generation: 0
            }
        );

        b.append(session, segment, &serde_json::json!({"n": 2}))
            .unwrap();
        assert_eq!(a.tip(session, segment).unwrap().count, 2);
        assert!(matches!(
            a.append_if(session, segment, seen, &[]),
            Err(Error::ConcurrentWriter { .. })
        ));
        a.append(session, segment, &serde_json::json!({"n": 3}))
            .unwrap();
        let entries: Vec<serde_json::Value> = a.read(session, segment).unwrap();
        let ns: Vec<_> = entries.iter().map(|e| e["n"].as_u64().unwrap()).collect();
        assert_eq!(ns, [1, 2, 3]);
    }
}
