//! An open segment (or trace) file as a writer holds it: the `O_APPEND` descriptor, the cached
//! tip, and the lock protocol.
//!
//! **Lock protocol.** Every operation that writes a file (append, torn-tail removal, rollback,
//! rewrite, repair) holds `flock(LOCK_EX)` on the file while it checks the tip and writes.
//! Readers hold `LOCK_SH` only while they read the committed length. After taking a lock, a
//! holder checks `st_nlink`: zero means the file was replaced by a rewrite (or deleted) while
//! it waited, so it reopens the path and locks again. Cost of an append: lock, statx, write,
//! unlock (plus fdatasync in `Sync` mode).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::PathBuf;

use crate::codec::{Header, Version};
use crate::fs::fault::{FaultPoint, Faults, IoOp, WriteLen};
use crate::fs::read::{probe_tail, read_header, TailState};
use crate::scan::Identity;
use crate::store::Prepared;
use crate::{Error, Result, Tip};

pub(crate) fn open_append(path: &std::path::Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .mode(0o600)
        .custom_flags(no_follow())
        .open(path)
        .map_err(explain_link)
}

/// Size and link count of an open file: all an append needs to know. On Linux only these two
/// are asked for (`statx`): asking for timestamps too, as `File::metadata` does, makes ext4 with
/// multigrain timestamps (Linux 6.13+) give the next write a fine-grained ctime, which dirties
/// the inode through the journal on every append (measured: 200,008 inode updates for 200,000
/// appends, against under 100 without the stat).
pub(crate) fn size_and_links(file: &File) -> io::Result<(u64, u64)> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use rustix::fs::{statx, AtFlags, StatxFlags};
        match statx(
            file,
            "",
            AtFlags::EMPTY_PATH,
            StatxFlags::SIZE | StatxFlags::NLINK,
        ) {
            Ok(st) => return Ok((st.stx_size, u64::from(st.stx_nlink))),
            // Kernels before 4.11, or a seccomp filter that refuses it.
            Err(e) if e == rustix::io::Errno::NOSYS || e == rustix::io::Errno::PERM => {}
            Err(e) => return Err(e.into()),
        }
    }
    let meta = file.metadata()?;
    Ok((meta.len(), meta.nlink()))
}

/// `O_NOFOLLOW`: the store never follows a symbolic link where a file of its own should be, so
/// a link cannot make it write into (or read from) a file outside its layout.
pub(crate) fn no_follow() -> i32 {
    i32::try_from(rustix::fs::OFlags::NOFOLLOW.bits()).unwrap_or(0)
}

/// Turns the `ELOOP` of `O_NOFOLLOW` into words a person can act on.
pub(crate) fn explain_link(e: io::Error) -> io::Error {
    if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "is a symbolic link; annals does not follow links inside its store",
        )
    } else {
        e
    }
}

#[derive(Debug)]
pub(crate) struct Handle {
    pub path: PathBuf,
    pub identity: Identity,
    pub file: File,
    /// Header of the currently open file and the offset where entries start; `None` until the
    /// file has been read under the lock.
    pub header: Option<(Header, u64)>,
    pub tail: TailState,
    /// Set when an fsync (or a rollback) failed: the file's state is unknown from then on.
    pub poisoned: Option<String>,
    faults: Faults,
    buf: Vec<u8>,
}

impl Handle {
    /// Opens an existing file. `Ok(None)` if it does not exist.
    pub(crate) fn open(path: PathBuf, identity: Identity, faults: Faults) -> Result<Option<Self>> {
        let file = match open_append(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("open", &path, e)),
        };
        Ok(Some(Self {
            path,
            identity,
            file,
            header: None,
            tail: TailState {
                committed: 0,
                count: 0,
                torn: 0,
            },
            poisoned: None,
            faults,
            buf: Vec::new(),
        }))
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

    /// Takes the exclusive lock on the current file at the path and brings the cached state up
    /// to date with it. On `Err` the lock is not held.
    fn lock(&mut self) -> Result<()> {
        loop {
            self.file
                .lock()
                .map_err(|e| Error::io("lock", &self.path, e))?;
            match self.refresh() {
                Ok(true) => return Ok(()),
                Ok(false) => {
                    // Replaced or deleted while we waited: follow the path.
                    let _ = self.file.unlock();
                    self.file = match open_append(&self.path) {
                        Ok(f) => f,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {
                            return Err(self.not_found())
                        }
                        Err(e) => return Err(Error::io("open", &self.path, e)),
                    };
                    self.header = None;
                }
                Err(e) => {
                    let _ = self.file.unlock();
                    return Err(e);
                }
            }
        }
    }

    /// Under the lock: `Ok(false)` if the open file is no longer the one at the path.
    fn refresh(&mut self) -> Result<bool> {
        let (size, links) =
            size_and_links(&self.file).map_err(|e| Error::io("stat", &self.path, e))?;
        if links == 0 {
            return Ok(false);
        }
        let (header_end, known) = match &self.header {
            Some((_, end)) => (*end, (self.tail.committed, self.tail.count)),
            None => {
                let (header, end) = read_header(&self.file, &self.path, self.identity)?;
                self.header = Some((header, end));
                self.tail = TailState {
                    committed: end,
                    count: 0,
                    torn: 0,
                };
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
            self.tail = probe_tail(&self.file, &self.path, size, known)?;
        }
        Ok(true)
    }

    /// Runs `f` with the exclusive lock held and the state fresh.
    pub(crate) fn locked<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        self.lock()?;
        let result = f(self);
        let _ = self.file.unlock();
        result
    }

    pub(crate) fn check_poison(&self) -> Result<()> {
        match &self.poisoned {
            Some(cause) => Err(Error::Poisoned {
                path: self.path.clone(),
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Appends `entries` as one `write(2)`, under the lock. `expected` is the detector's tip.
    pub(crate) fn append(
        &mut self,
        entries: &[Prepared<'_>],
        expected: Option<Tip>,
        sync: bool,
    ) -> Result<Tip> {
        self.check_poison()?;
        self.locked(|h| {
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
                if header.version() != Some(Version::NEW_FILES) {
                    return Err(Error::UnsupportedVersion {
                        path: h.path.clone(),
                        found: header.annals,
                        supported: 1,
                    });
                }
            }
            h.buf.clear();
            for (seq, entry) in (tip.count..).zip(entries) {
                entry.encode(seq, &mut h.buf)?;
            }
            if h.tail.torn > 0 {
                // A crash left an unterminated line; it was never committed. Remove it so that
                // the new line does not glue onto it. Safe: we hold the exclusive lock.
                h.faults
                    .check(FaultPoint::TornTailCut, &h.path)
                    .and_then(|()| h.file.set_len(h.tail.committed))
                    .map_err(|e| Error::io("remove torn tail of", &h.path, e))?;
                h.faults.observe(&IoOp::SetLen {
                    path: &h.path,
                    len: h.tail.committed,
                });
                h.tail.torn = 0;
            }
            h.write_all_once()?;
            if sync {
                h.sync_data()?;
            }
            h.tail.committed += h.buf.len() as u64;
            h.tail.count += entries.len() as u64;
            h.faults
                .check(FaultPoint::AppendDone, &h.path)
                .map_err(|e| Error::io("append to", &h.path, e))?;
            Ok(h.tip())
        })
    }

    /// Makes everything written to the file durable: one `fdatasync`. Sticky: after a failure
    /// the handle is poisoned and never synced again.
    pub(crate) fn sync(&mut self) -> Result<()> {
        self.check_poison()?;
        self.sync_data()
    }

    fn sync_data(&mut self) -> Result<()> {
        let synced = self
            .faults
            .check(FaultPoint::AppendSync, &self.path)
            .and_then(|()| self.file.sync_data());
        match synced {
            Ok(()) => {
                self.faults.observe(&IoOp::Sync { path: &self.path });
                Ok(())
            }
            Err(e) => {
                // Never retried: after a failed fsync the kernel may have dropped the dirty
                // pages, and a second fsync could report success for lost data.
                self.poisoned = Some(e.to_string());
                Err(Error::io("fsync", &self.path, e))
            }
        }
    }

    /// One `write(2)` of the whole buffer. A short or failed write is rolled back (cut to the
    /// committed length, which only removes bytes of this write since we hold the lock), so it
    /// never becomes a committed line.
    fn write_all_once(&mut self) -> Result<()> {
        let outcome = loop {
            let attempt = match self.faults.write_check(FaultPoint::AppendWrite, &self.path) {
                Ok(WriteLen::All) => self.file.write(&self.buf),
                Ok(WriteLen::Short(n)) => self
                    .file
                    .write(self.buf.get(..n.min(self.buf.len())).unwrap_or_default()),
                Err(e) => Err(e),
            };
            match attempt {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => break other,
            }
        };
        if let Ok(n) = outcome {
            self.faults.observe(&IoOp::Append {
                path: &self.path,
                data: self.buf.get(..n).unwrap_or_default(),
            });
        }
        let error = match outcome {
            Ok(n) if n == self.buf.len() => return Ok(()),
            Ok(n) => io::Error::new(
                io::ErrorKind::WriteZero,
                format!("short write: {n} of {} bytes", self.buf.len()),
            ),
            Err(e) => e,
        };
        let rolled_back = self
            .faults
            .check(FaultPoint::Rollback, &self.path)
            .and_then(|()| self.file.set_len(self.tail.committed));
        if rolled_back.is_ok() {
            self.faults.observe(&IoOp::SetLen {
                path: &self.path,
                len: self.tail.committed,
            });
        }
        if let Err(rollback) = rolled_back {
            self.poisoned = Some(format!(
                "append failed ({error}) and its rollback failed too ({rollback})"
            ));
        }
        Err(Error::io("append to", &self.path, error))
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
