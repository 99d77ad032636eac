//! Writer leases, the holder record next to a leased segment, and the bounded wait of every
//! writer for a file that another one holds.
//!
//! A lease is the segment's cached handle (`cache.rs`) taken over by one writer: the handle's
//! descriptor takes `LOCK_EX` (the takeover: refresh, the end of the file checked), a holder
//! record `{segment}.jsonl.lease` is written next to the segment, and the lock is turned into
//! `LOCK_SH`, which it keeps until the lease is released. Every other writer wants `LOCK_EX`
//! and cannot have it; readers want `LOCK_SH` and can. The record is itself held `LOCK_EX` by
//! the lease for as long as it lives, so a record whose lock is free is stale (its holder
//! died, and the kernel dropped both locks): nobody ever trusts a record without checking.
//!
//! Because the lease and the store share the handle, they share its poisoning, its durable
//! watermark and its group commit; the handle knows which calls are the lease's (`acting`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::atomic::TempFile;
use super::cache::Shared;
use super::handle::{Handle, Held};
use super::seam::{Access, FileSystem, LockKind};
use super::tree::{file_name, Tree};
use super::{lock, FsStore};
use crate::codec::FileKind;
use crate::lease::Patience;
use crate::{Error, Lease, LeaseHolder, LeaseOptions, RawEntry, Result, SegmentId, SessionId, Tip};

/// Longest holder record read back (a record is one short JSON line).
const MAX_RECORD: usize = 4096;

/// Tells leases apart, so that a handle knows its lease's calls from every other writer's.
static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1);

/// Who writes: a writer without a lease, which waits at most `wait` for a held file, or the
/// lease with this token, which holds it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Writer {
    pub(crate) lease: Option<u64>,
    pub(crate) wait: Duration,
}

/// The name of a segment's holder record.
pub(crate) fn record_name(segment: SegmentId) -> String {
    format!("{}.lease", file_name(segment, FileKind::Segment))
}

impl<F: FileSystem> FsStore<F> {
    /// A writer without a lease, with the store's patience.
    pub(crate) fn writer(&self) -> Writer {
        Writer {
            lease: None,
            wait: self.options.lock_wait,
        }
    }

    /// Runs `f` on the handle as `writer`; while `f` finds the file held by another writer
    /// ([`Error::Locked`], from `Handle::locked`), lets go of the handle, pauses and tries again,
    /// until the writer's patience is spent: then [`Error::Locked`] naming the holder, if a
    /// live lease record names one.
    pub(crate) fn writing<T>(
        &self,
        handle: &Shared<F>,
        writer: Writer,
        mut f: impl FnMut(&mut Handle<F>) -> Result<T>,
    ) -> Result<T> {
        let mut patience = Patience::new(writer.wait);
        loop {
            let result = {
                let mut h = lock(handle);
                h.acting = writer.lease;
                let result = f(&mut h);
                h.acting = None;
                result
            };
            match result {
                Err(Error::Locked {
                    session,
                    segment,
                    holder,
                    ..
                }) => {
                    if !patience.pause() {
                        return Err(Error::Locked {
                            session,
                            segment,
                            holder: holder.or_else(|| self.live_holder(session, segment)),
                            waited: patience.waited(),
                        });
                    }
                }
                other => return other,
            }
        }
    }

    /// The holder a live lease record names, if there is a record and its lock is held.
    pub(crate) fn live_holder(
        &self,
        session: SessionId,
        segment: SegmentId,
    ) -> Option<LeaseHolder> {
        let tree = &self.tree;
        let dir = tree.session(session).ok()??;
        let record = tree
            .open_file(&dir, &record_name(segment), Access::Read)
            .ok()??;
        if tree.fs.try_lock(&record, LockKind::Shared).ok()? {
            // Nobody holds it: its writer is gone.
            let _ = tree.fs.unlock(&record);
            return None;
        }
        let mut buf = vec![0u8; MAX_RECORD];
        let n = tree.fs.read_at(&record, &mut buf, 0).ok()?;
        serde_json::from_slice(buf.get(..n)?.trim_ascii()).ok()
    }

    pub(crate) fn take_lease(
        &self,
        session: SessionId,
        segment: SegmentId,
        options: &LeaseOptions,
    ) -> Result<FsLease<F>> {
        let handle = self.segment_handle(session, segment)?;
        let token = NEXT_TOKEN.fetch_add(1, Ordering::Relaxed);
        let holder = LeaseHolder::this_process();
        let tree = &self.tree;
        let writer = Writer {
            lease: None,
            wait: options.wait,
        };
        self.writing(&handle, writer, |h| {
            h.check_poison()?;
            if let Some(held) = &h.lease {
                return Err(Error::Locked {
                    session,
                    segment,
                    holder: Some(held.holder.clone()),
                    waited: Duration::ZERO,
                });
            }
            // The takeover: the exclusive lock, and the file's end as any first writer sees it.
            h.lock(tree)?;
            let held = (|| {
                let record = self.write_record(session, segment, &holder)?;
                // LOCK_EX becomes LOCK_SH in one step (nobody else holds a lock to conflict).
                let kept = tree
                    .fs
                    .try_lock(&h.file, LockKind::Shared)
                    .map_err(|e| Error::io("lock", &h.path, e))?;
                if !kept {
                    // Where the kernel converts a lock by dropping it first, another writer
                    // can slip in: it has the file now, so this is a busy file like any other.
                    return Err(Error::Locked {
                        session,
                        segment,
                        holder: None,
                        waited: Duration::ZERO,
                    });
                }
                Ok(Held {
                    token,
                    record,
                    holder: holder.clone(),
                })
            })();
            match held {
                Ok(held) => {
                    h.lease = Some(held);
                    Ok(())
                }
                Err(e) => {
                    let _ = tree.fs.unlock(&h.file);
                    Err(e)
                }
            }
        })?;
        Ok(FsLease {
            store: self.share(),
            handle,
            token,
            holder,
            session,
            segment,
            writer: Writer {
                lease: Some(token),
                wait: Duration::ZERO,
            },
        })
    }

    /// Writes the holder record under a temporary name, locks it, and renames it into place
    /// (over a stale one): a waiter never reads half a record. Not fsynced: it only informs,
    /// and its lock, not its bytes, says whether it is live.
    fn write_record(
        &self,
        session: SessionId,
        segment: SegmentId,
        holder: &LeaseHolder,
    ) -> Result<F::File> {
        let tree = &self.tree;
        let dir = tree
            .session(session)?
            .ok_or(Error::SegmentNotFound { session, segment })?;
        let name = record_name(segment);
        let mut temp = TempFile::create(tree, &dir, &name)?;
        let locked = tree
            .fs
            .try_lock(temp.file()?, LockKind::Exclusive)
            .map_err(|e| Error::io("lock", dir.path_of(&name), e))?;
        if !locked {
            let odd = std::io::Error::other("a new file was locked by someone else");
            return Err(Error::io("lock", dir.path_of(&name), odd));
        }
        let mut line = serde_json::to_vec(holder).map_err(Error::Serialize)?;
        line.push(b'\n');
        temp.write(&line)?;
        temp.replace(&name)
    }

    /// Gives the handle back: the record goes, then both locks.
    fn give_back(&self, handle: &Shared<F>, token: u64, segment: SegmentId) -> Result<()> {
        let mut h = lock(handle);
        let Some(held) = h.lease.take_if(|held| held.token == token) else {
            return Ok(());
        };
        let tree = &self.tree;
        let removed = match tree.session(h.identity.session) {
            Ok(Some(dir)) => {
                let name = record_name(segment);
                tree.fs
                    .remove_file(&dir.handle, &name)
                    .map_err(|e| Error::io("remove", dir.path_of(&name), e))
            }
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        let _ = tree.fs.unlock(&held.record);
        drop(held);
        let _ = tree.fs.unlock(&h.file);
        removed
    }
}

impl<F: FileSystem> Handle<F> {
    /// Under a lease, after a failed write: whether the bytes it left in the file hold a
    /// newline, so that a reader may have seen a whole line of it. Assumes they do when the
    /// file's size cannot be read.
    pub(crate) fn failed_write_left_a_line(&self, fs: &F) -> bool {
        let written = fs.size_and_links(&self.file).map_or(u64::MAX, |(size, _)| {
            size.saturating_sub(self.tail.committed)
        });
        let written = usize::try_from(written).unwrap_or(usize::MAX);
        let left = self
            .buf
            .get(..written.min(self.buf.len()))
            .unwrap_or_default();
        memchr::memchr(b'\n', left).is_some()
    }

    /// Undoes a failed write of the lease's that left complete lines behind, without cutting
    /// the file in place: readers are not kept out by a lease, so one may have mapped those
    /// lines (the SAFETY argument of `mmap.rs` forbids shrinking a file in place below a
    /// newline anyone could have read). The committed prefix is copied to a new file, synced,
    /// locked for the lease and renamed over the segment; a mapped reader keeps the old inode.
    /// Runs only on the failure path. An error here poisons the handle (the caller's job).
    pub(crate) fn rollback_by_rewrite(&mut self, tree: &Tree<F>) -> std::io::Result<()> {
        let as_io = |e: Error| match e {
            Error::Io { source, .. } => source,
            other => std::io::Error::other(other.to_string()),
        };
        let name = file_name(self.identity.segment, self.identity.kind);
        let dir = tree.session(self.identity.session).map_err(as_io)?;
        let dir = dir.ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))?;
        let mut temp = TempFile::create(tree, &dir, &name).map_err(as_io)?;
        temp.copy(self.reader(&tree.fs), 0, self.tail.committed)
            .map_err(as_io)?;
        temp.sync().map_err(as_io)?;
        if !tree
            .fs
            .try_lock(temp.file().map_err(as_io)?, LockKind::Shared)?
        {
            return Err(std::io::Error::other(
                "a new file was locked by someone else",
            ));
        }
        let new_file = temp.replace(&name).map_err(as_io)?;
        let old = self.replace_file(new_file);
        let _ = tree.fs.unlock(&old);
        drop(old);
        tree.sync_dir(&dir).map_err(as_io)
    }
}

/// The filesystem store's [`Lease`]: the segment's handle, held.
#[derive(Debug)]
pub(crate) struct FsLease<F: FileSystem> {
    store: FsStore<F>,
    handle: Shared<F>,
    token: u64,
    holder: LeaseHolder,
    session: SessionId,
    segment: SegmentId,
    writer: Writer,
}

impl<F: FileSystem> Lease for FsLease<F> {
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
        lock(&self.handle).tip()
    }

    fn append_raw(&self, entry: &RawEntry) -> Result<Tip> {
        self.store
            .append_one_to(&self.handle, self.writer, self.session, entry)
    }

    fn append_batch_raw(&self, entries: &[RawEntry]) -> Result<Tip> {
        self.store
            .append_entries_to(&self.handle, self.writer, self.session, entries, None)
    }

    fn sync(&self) -> Result<()> {
        self.store.sync_handle(&self.handle)
    }

    fn truncate(&self, keep: u64) -> Result<Tip> {
        self.store.rewrite_keeping_to(
            &self.handle,
            self.writer,
            self.session,
            self.segment,
            keep,
            None,
        )
    }

    fn fork(&self, at: u64, into: SegmentId) -> Result<Tip> {
        self.store.fork_from(
            &self.handle,
            self.writer,
            self.session,
            self.segment,
            at,
            into,
        )
    }

    fn release(self: Box<Self>) -> Result<()> {
        self.store.give_back(&self.handle, self.token, self.segment)
    }
}

impl<F: FileSystem> Drop for FsLease<F> {
    fn drop(&mut self) {
        // After `release` the handle is no longer held under this token: nothing to do.
        let _ = self.store.give_back(&self.handle, self.token, self.segment);
    }
}
