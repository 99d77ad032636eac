//! An open segment (or trace) file as a writer holds it: the `O_APPEND` descriptor, the cached
//! tip, and the lock protocol.
//!
//! **Lock protocol.** Every operation that writes a file (append, torn-tail removal, rollback,
//! rewrite, repair) holds `flock(LOCK_EX)` on the file while it checks the tip and writes.
//! Readers hold `LOCK_SH` only while they read the committed length. After taking a lock, a
//! holder checks `st_nlink`: zero means the file was replaced by a rewrite (or deleted) while
//! it waited, so it opens the name again from the root and locks again. Cost of an append:
//! lock, statx, write, unlock (plus fdatasync in `Sync` mode), each one call through the seam.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use super::append::{encode_write, write_time, WriteMeta};
use super::read::{Reader, TailState};
use super::seam::{Access, FileSystem, LockKind};
use super::snapshot::{replaced_too_often, MAX_REOPENS};
use super::tree::Tree;
use crate::codec::Header;
use crate::scan::Identity;
use crate::store::Prepared;
use crate::{Error, Result, Tip};

/// Why a file's state is unknown: the call that failed, and its error. Sticky.
#[derive(Debug, Clone)]
pub(crate) struct Poison {
    op: &'static str,
    source: Arc<io::Error>,
}

#[derive(Debug)]
pub(crate) struct Handle<F: FileSystem> {
    pub path: PathBuf,
    pub identity: Identity,
    pub file: F::File,
    /// Header of the currently open file and the offset where entries start; `None` until the
    /// file has been read under the lock.
    pub header: Option<(Header, u64)>,
    pub tail: TailState,
    /// Entries this handle knows to be durable (its last fdatasync covered them): the durable
    /// watermark a line records (line format v2).
    pub durable: u64,
    /// Set when an fsync (or a rollback) failed: the file's state is unknown from then on.
    pub poisoned: Option<Poison>,
    buf: Vec<u8>,
}

impl<F: FileSystem> Handle<F> {
    /// Opens an existing file. `Ok(None)` if it (or its session) does not exist.
    pub(crate) fn open(tree: &Tree<F>, identity: Identity) -> Result<Option<Self>> {
        let Some(file) = tree.open_identity(identity, Access::Append)? else {
            return Ok(None);
        };
        Ok(Some(Self {
            path: tree.identity_path(identity),
            identity,
            file,
            header: None,
            tail: TailState {
                committed: 0,
                count: 0,
                torn: 0,
            },
            durable: 0,
            poisoned: None,
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

    fn not_found(&self) -> Error {
        Error::SegmentNotFound {
            session: self.identity.session,
            segment: self.identity.segment,
        }
    }

    /// Takes the exclusive lock on the current file at the name and brings the cached state
    /// up to date with it. On `Err` the lock is not held. A file replaced (or deleted and made
    /// again) while the lock was awaited is followed by its name [`MAX_REOPENS`] times in a
    /// row; when the last file is replaced too, the lock fails with `ErrorKind::ResourceBusy`
    /// rather than wait forever.
    fn lock(&mut self, tree: &Tree<F>) -> Result<()> {
        for _ in 0..=MAX_REOPENS {
            tree.fs
                .lock(&self.file, LockKind::Exclusive)
                .map_err(|e| Error::io("lock", &self.path, e))?;
            match self.refresh(&tree.fs) {
                Ok(true) => return Ok(()),
                Ok(false) => {
                    // Replaced or deleted while we waited: follow the name, from the root (the
                    // session itself may have been deleted and made again).
                    let _ = tree.fs.unlock(&self.file);
                    self.file = tree
                        .open_identity(self.identity, Access::Append)?
                        .ok_or_else(|| self.not_found())?;
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
        let (header_end, known) = match &self.header {
            Some((_, end)) => (*end, (self.tail.committed, self.tail.count)),
            None => {
                let (header, end) = self.reader(fs).header(self.identity)?;
                self.header = Some((header, end));
                self.tail = TailState {
                    committed: end,
                    count: 0,
                    torn: 0,
                };
                self.durable = 0;
                (end, (end, 0))
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
            self.tail = self.reader(fs).tail(size, known)?;
            self.durable = self.durable.min(self.tail.count);
        }
        Ok(true)
    }

    /// Runs `f` with the exclusive lock held and the state fresh.
    pub(crate) fn locked<T>(
        &mut self,
        tree: &Tree<F>,
        f: impl FnOnce(&mut Self) -> Result<T>,
    ) -> Result<T> {
        self.lock(tree)?;
        let result = f(self);
        let _ = tree.fs.unlock(&self.file);
        result
    }

    pub(crate) fn check_poison(&self) -> Result<()> {
        match &self.poisoned {
            Some(poison) => Err(Error::Poisoned {
                path: self.path.clone(),
                op: poison.op,
                source: Arc::clone(&poison.source),
            }),
            None => Ok(()),
        }
    }

    /// Marks the file's state unknown from now on: `op` failed with `error`.
    pub(crate) fn poison(&mut self, op: &'static str, error: &io::Error) {
        self.poisoned = Some(Poison {
            op,
            source: Arc::new(copy_of(error)),
        });
    }

    /// Appends `entries` as one `write(2)`, under the lock. `expected` is the detector's tip.
    pub(crate) fn append(
        &mut self,
        tree: &Tree<F>,
        entries: &[Prepared<'_>],
        expected: Option<Tip>,
        sync: bool,
    ) -> Result<Tip> {
        self.check_poison()?;
        let fs = &tree.fs;
        self.locked(tree, |h| {
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
                return Ok(tip);
            }
            // This writer frames version-1 lines only; a file of another version gets none.
            if let Some((header, _)) = &h.header {
                if header.version() != Some(crate::codec::Version::NEW_FILES) {
                    return Err(Error::UnsupportedVersion {
                        path: h.path.clone(),
                        found: header.annals,
                        supported: 1,
                    });
                }
            }
            h.buf.clear();
            let version = h.header.as_ref().map_or(0, |(header, _)| header.annals);
            let write = WriteMeta {
                first_seq: tip.count,
                appended_ms: write_time(version),
                durable_below: h.durable,
            };
            encode_write(&write, entries, &mut h.buf)?;
            if h.tail.torn > 0 {
                // A crash left an unterminated line; it was never committed. Remove it so that
                // the new line does not glue onto it. Safe: we hold the exclusive lock.
                fs.set_len(&h.file, h.tail.committed)
                    .map_err(|e| Error::io("remove torn tail of", &h.path, e))?;
                h.tail.torn = 0;
            }
            h.write_all_once(fs)?;
            h.tail.committed += h.buf.len() as u64;
            h.tail.count += entries.len() as u64;
            if sync {
                h.sync_data(fs)?;
            }
            Ok(h.tip())
        })
    }

    /// Makes everything written to the file durable: one `fdatasync`. Sticky: after a failure
    /// the handle is poisoned and never synced again.
    pub(crate) fn sync(&mut self, fs: &F) -> Result<()> {
        self.check_poison()?;
        self.sync_data(fs)
    }

    fn sync_data(&mut self, fs: &F) -> Result<()> {
        // What is in the file now; a concurrent writer's later lines are not covered.
        let covered = self.tail.count;
        match fs.sync_data(&self.file) {
            Ok(()) => {
                self.durable = covered;
                Ok(())
            }
            // Never retried: after a failed fsync the kernel may have dropped the dirty
            // pages, and a second fsync could report success for lost data.
            Err(e) => {
                self.poison("fsync", &e);
                Err(Error::io("fsync", &self.path, e))
            }
        }
    }

    /// One `write(2)` of the whole buffer. A short or failed write is rolled back (cut to the
    /// committed length, which only removes bytes of this write since we hold the lock), so it
    /// never becomes a committed line; a short one is reported by its cause (`ENOSPC`, ...),
    /// which a second write of the rest learns (`seam::append_once`).
    fn write_all_once(&mut self, fs: &F) -> Result<()> {
        let Err(error) = super::seam::append_once(fs, &self.file, &self.buf) else {
            return Ok(());
        };
        if let Err(rollback) = fs.set_len(&self.file, self.tail.committed) {
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
