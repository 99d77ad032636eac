//! Truncate and fork: the operations that copy a prefix of a segment into a new file, under
//! the source's exclusive lock. Truncate renames the copy over the segment (a new inode, so a
//! mapped reader of the old one is unaffected); fork links it under the new segment's name.

use super::atomic::{encode_header, new_header, TempFile};
use super::cache::Shared;
use super::handle::Handle;
use super::lease::Writer;
use super::read::TailState;
use super::replay::skip;
use super::seam::{FileSystem, LockKind};
use super::tree::file_name;
use super::FsStore;
use crate::codec::{FileKind, Header, Lineage};
use crate::error::CorruptReason;
use crate::scan::Checker;
use crate::{Error, ReadMode, Result, SegmentId, SessionId, Tip};

impl<F: FileSystem> FsStore<F> {
    /// Truncate: keeps the first `keep` entries by crash-atomic rewrite, under the segment's
    /// exclusive lock; with `expected`, only if the tip is still that (the detector). The new
    /// file's generation is one more than the old one's.
    pub(crate) fn rewrite_keeping(
        &self,
        session: SessionId,
        segment: SegmentId,
        keep: u64,
        expected: Option<Tip>,
    ) -> Result<Tip> {
        let handle = self.segment_handle(session, segment)?;
        self.rewrite_keeping_to(&handle, self.writer(), session, segment, keep, expected)
    }

    /// Truncate through `handle`, as `writer`.
    pub(crate) fn rewrite_keeping_to(
        &self,
        handle: &Shared<F>,
        writer: Writer,
        session: SessionId,
        segment: SegmentId,
        keep: u64,
        expected: Option<Tip>,
    ) -> Result<Tip> {
        let tree = &self.tree;
        self.writing(handle, writer, |h| {
            h.check_poison()?;
            h.locked(tree, |h| {
                self.rewrite_locked(h, session, segment, keep, expected)
            })
        })
    }

    fn rewrite_locked(
        &self,
        h: &mut Handle<F>,
        session: SessionId,
        segment: SegmentId,
        keep: u64,
        expected: Option<Tip>,
    ) -> Result<Tip> {
        let tree = &self.tree;
        {
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
            let cut = self.cut_after(h, keep)?;
            let Some((header, header_end)) = h.header.clone() else {
                return Err(Error::SegmentNotFound { session, segment });
            };
            let header = Header {
                generation: header.generation + 1,
                ..header
            };
            let dir = tree
                .session(session)?
                .ok_or(Error::SegmentNotFound { session, segment })?;
            let mut temp = TempFile::create(tree, &dir, segment)?;
            let mut bytes = Vec::new();
            let new_header_end = encode_header(&header, &mut bytes)?;
            temp.write(&bytes)?;
            temp.copy(h.reader(&tree.fs), header_end, cut)?;
            temp.sync()?;
            if h.lease.is_some() {
                // A lease goes on holding the segment: the new file is held before it has the
                // name, so no other writer can take it in between.
                let held = tree
                    .fs
                    .try_lock(temp.file()?, LockKind::Shared)
                    .map_err(|e| Error::io("lock", &h.path, e))?;
                if !held {
                    let odd = std::io::Error::other("a new file was locked by someone else");
                    return Err(Error::io("lock", &h.path, odd));
                }
            }
            let new_file = temp.replace(&file_name(segment, FileKind::Segment))?;
            let old = std::mem::replace(&mut h.file, new_file);
            let _ = tree.fs.unlock(&old);
            drop(old);
            h.header = Some((header, new_header_end));
            h.tail = TailState {
                committed: new_header_end + (cut - header_end),
                count: keep,
                torn: 0,
            };
            h.durable = keep;
            if let Err(e) = tree.sync_dir(&dir) {
                if let Error::Io { source, .. } = &e {
                    h.poison("fsync directory", source);
                }
                return Err(e);
            }
            Ok(h.tip())
        }
    }

    pub(crate) fn fork_segment(
        &self,
        session: SessionId,
        source: SegmentId,
        at: u64,
        into: SegmentId,
    ) -> Result<Tip> {
        let handle = self.segment_handle(session, source)?;
        self.fork_from(&handle, self.writer(), session, source, at, into)
    }

    /// Fork of the segment of `handle`, as `writer`.
    pub(crate) fn fork_from(
        &self,
        handle: &Shared<F>,
        writer: Writer,
        session: SessionId,
        source: SegmentId,
        at: u64,
        into: SegmentId,
    ) -> Result<Tip> {
        self.writing(handle, writer, |h| {
            // The source's state is unknown after a failed fsync: nothing is copied from it.
            h.check_poison()?;
            h.locked(&self.tree, |h| {
                self.fork_locked(h, session, source, at, into)
            })
        })
    }

    fn fork_locked(
        &self,
        h: &mut Handle<F>,
        session: SessionId,
        source: SegmentId,
        at: u64,
        into: SegmentId,
    ) -> Result<Tip> {
        {
            let count = h.tip().count;
            if at > count {
                return Err(Error::BeyondEnd {
                    segment: source,
                    requested: at,
                    count,
                });
            }
            let cut = self.cut_after(h, at)?;
            let header_end = h.header.as_ref().map_or(0, |(_, end)| *end);
            let header = Header {
                // A fork takes its source's format version: it copies its lines.
                annals: h.header.as_ref().map_or(0, |(hd, _)| hd.annals),
                ..new_header(
                    session,
                    into,
                    FileKind::Segment,
                    Some(Lineage {
                        segment: source,
                        at,
                    }),
                )
            };
            // The copied lines keep their sequence numbers 0..at, which is what the fork's
            // own sequence must be.
            let copy = Some((h.reader(&self.tree.fs), header_end, cut));
            if !self.create_file(&header, &[], copy)? {
                return Err(Error::SegmentExists {
                    session,
                    segment: into,
                });
            }
            Ok(Tip {
                count: at,
                generation: 0,
            })
        }
    }

    /// Byte offset just after the `n`-th entry line (the header is line 1), found by counting
    /// newlines; the prefix up to it is checked strictly, so a truncate or fork never copies a
    /// damaged line. O(n). Called under the exclusive lock with `n <= count`.
    fn cut_after(&self, h: &Handle<F>, n: u64) -> Result<u64> {
        let reader = h.reader(&self.tree.fs);
        let header_end = h.header.as_ref().map_or(0, |(_, end)| *end);
        let cut = if n == h.tail.count {
            h.tail.committed
        } else {
            let mut buf = vec![0u8; 64 * 1024];
            let mut pos = header_end;
            let mut seen = 0u64;
            let mut cut = header_end;
            while seen < n {
                let got = reader.read_at_most(&mut buf, pos)?;
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
        let (report, _) = reader.scan(0, cut, checker, &mut skip)?;
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
}
