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
use crate::codec::decode::check_line_as;
use std::collections::VecDeque;

use crate::codec::{self, FileKind, Header, Lineage, MAX_WRITE_LINES};
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
            if !h.settled {
                self.settle(h)?;
            }
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
            let kept = self.cut_after(h, keep)?;
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
            temp.copy(h.reader(&tree.fs), header_end, kept.raw_end)?;
            temp.write(&kept.reframed)?;
            self.pack_durable(&dir)?;
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
            let old = h.replace_file(new_file);
            let _ = tree.fs.unlock(&old);
            drop(old);
            h.header = Some((header, new_header_end));
            h.tail = TailState {
                committed: new_header_end
                    + (kept.raw_end - header_end)
                    + kept.reframed.len() as u64,
                count: keep,
                torn: 0,
                claim: 0,
            };
            // The new file was fsynced before it got the name.
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
            if !h.settled {
                self.settle(h)?;
            }
            let count = h.tip().count;
            if at > count {
                return Err(Error::BeyondEnd {
                    segment: source,
                    requested: at,
                    count,
                });
            }
            let kept = self.cut_after(h, at)?;
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
            let copy = Some((h.reader(&self.tree.fs), header_end, kept.raw_end));
            if !self.create_file(&header, &[], copy, &kept.reframed)? {
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

    /// What to copy to keep the first `n` entries: the lines up to `raw_end` as they are, then
    /// `reframed`. When the `n`-th entry is not the last line of its write (a truncate or fork
    /// inside a batch), the kept first lines of that write are framed again as a complete
    /// write of their own (their `more` counts only the kept lines): a file never ends inside
    /// a write it did not lose to a crash. The prefix is checked strictly, so a truncate or
    /// fork never copies a damaged line. O(n), found by counting newlines. Called under the
    /// exclusive lock with `n <= count`.
    fn cut_after(&self, h: &Handle<F>, n: u64) -> Result<Kept> {
        let reader = h.reader(&self.tree.fs);
        let header_end = h.header.as_ref().map_or(0, |(_, end)| *end);
        // The starts of the last lines up to the cut: enough to hold a whole write and the line
        // before it.
        let window = usize::try_from(MAX_WRITE_LINES).unwrap_or(usize::MAX) + 1;
        let mut starts = VecDeque::with_capacity(window);
        let cut = if n == h.tail.count {
            // The whole file, which ends with a complete write.
            h.tail.committed
        } else {
            let mut buf = vec![0u8; 64 * 1024];
            let mut pos = header_end;
            let mut seen = 0u64;
            let mut cut = header_end;
            let mut line_start = header_end;
            while seen < n {
                let got = reader.read_at_most(&mut buf, pos)?;
                if got == 0 {
                    break;
                }
                for nl in memchr::memchr_iter(b'\n', buf.get(..got).unwrap_or_default()) {
                    if starts.len() == window {
                        starts.pop_front();
                    }
                    starts.push_back(line_start);
                    line_start = pos + nl as u64 + 1;
                    seen += 1;
                    if seen == n {
                        cut = line_start;
                        break;
                    }
                }
                pos += got as u64;
            }
            cut
        };
        let from = match starts.front() {
            Some(&first) => self.start_of_last_write(h, first, first == header_end, cut)?,
            None => cut,
        };
        let checker = Checker::new(ReadMode::Strict, 0, false, Some(h.identity));
        let (report, _) = reader.scan(0, from, checker, &mut skip)?;
        let lines = n.saturating_sub(report.entries);
        if report.valid_up_to != from || lines > MAX_WRITE_LINES {
            return Err(Error::Corrupt {
                path: h.path.clone(),
                line: report.entries + 2,
                offset: report.valid_up_to,
                reason: CorruptReason::Malformed("fewer entry lines than sequence numbers say"),
            });
        }
        if from == cut {
            return Ok(Kept {
                raw_end: cut,
                reframed: Vec::new(),
            });
        }
        // The cut divides a write: frame its kept lines (at most MAX_WRITE_LINES lines of at
        // most MAX_LINE bytes) as a write of their own.
        let mut bytes = vec![0u8; usize::try_from(cut - from).unwrap_or(0)];
        let got = reader.read_at_most(&mut bytes, from)?;
        bytes.truncate(got);
        let version = h.header.as_ref().and_then(|(hd, _)| hd.version());
        let mut reframed = Vec::with_capacity(bytes.len());
        let mut offset = from;
        let kept_lines = bytes
            .split(|&b| b == b'\n')
            .take(usize::try_from(lines).unwrap_or(0));
        for (seq, line) in (report.entries..).zip(kept_lines) {
            let more = n - seq - 1;
            let framed = version
                .ok_or(CorruptReason::MissingHeader)
                .and_then(|v| check_line_as(v, line))
                .and_then(|e| {
                    if e.seq != seq {
                        return Err(CorruptReason::SeqMismatch {
                            expected: seq,
                            found: e.seq,
                        });
                    }
                    codec::reframe(line, &e, more, &mut reframed).map_err(|_| {
                        CorruptReason::Malformed("a version-1 line inside a version-2 write")
                    })
                });
            if let Err(reason) = framed {
                return Err(Error::Corrupt {
                    path: h.path.clone(),
                    line: seq + 2,
                    offset,
                    reason,
                });
            }
            offset += line.len() as u64 + 1;
        }
        Ok(Kept {
            raw_end: from,
            reframed,
        })
    }

    /// Where the write that ends at or runs past `cut` begins: after the last line before `cut`
    /// that ends a write (`more` is 0; every version-1 line does), reading from `first`, a line
    /// start at most a write's length of lines before `cut` (`at_start` if it is the first
    /// entry line, which begins a write). `cut` itself if the line before it ends a write.
    fn start_of_last_write(
        &self,
        h: &Handle<F>,
        first: u64,
        at_start: bool,
        cut: u64,
    ) -> Result<u64> {
        let reader = h.reader(&self.tree.fs);
        let mut bytes = vec![0u8; usize::try_from(cut - first).unwrap_or(0)];
        let got = reader.read_at_most(&mut bytes, first)?;
        bytes.truncate(got);
        let mut begins = if at_start { Some(first) } else { None };
        let mut pos = first;
        for line in bytes.split_inclusive(|&b| b == b'\n') {
            pos += line.len() as u64;
            let body = line.strip_suffix(b"\n").unwrap_or(line);
            // A line that does not check out is left to the strict scan to report.
            let more = codec::check_entry_line(body).map_or(0, |e| e.marks.map_or(0, |m| m.more));
            if more == 0 {
                begins = Some(pos);
            }
        }
        // No line ends a write in a window that long: the strict scan reports it.
        Ok(begins.unwrap_or(cut).min(cut))
    }
}

/// The bytes that keep a prefix of a segment: see [`FsStore::cut_after`].
struct Kept {
    /// Lines from the end of the header up to here are copied as they are.
    raw_end: u64,
    /// Then these: the kept first lines of a write the cut divides, framed as a write of their
    /// own.
    reframed: Vec<u8>,
}
