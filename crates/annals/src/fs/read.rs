//! Reading files through the seam: the streaming reader that feeds the [`Checker`] bounded
//! buffers, and the header and tail probes. Never writes; every verdict on what the bytes mean
//! is `scan.rs`'s.

use std::ops::ControlFlow;
use std::path::Path;

use super::seam::FileSystem;
use crate::codec::{self, Header, MAX_LINE};
use crate::error::CorruptReason;
use crate::scan::{self, feed, stop_to_error, Checker, HeaderFault, Identity, LineSink};
use crate::{Error, Result, ScanReport};

/// An open file as a reader reads it: positioned reads through the seam, so that it never
/// moves (or depends on) a descriptor's shared offset, and its path for errors.
pub(crate) struct Reader<'a, F: FileSystem> {
    pub(crate) fs: &'a F,
    pub(crate) file: &'a F::File,
    pub(crate) path: &'a Path,
}

impl<F: FileSystem> Clone for Reader<'_, F> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<F: FileSystem> Copy for Reader<'_, F> {}

/// Read buffer of the streaming reader: replay memory stays at about this much per scan.
const BUF: usize = 256 * 1024;

/// How many times in a row a read a signal interrupted (`EINTR`) is tried again.
const MAX_INTERRUPTS: u32 = 16;

/// The end of a file as a writer needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TailState {
    /// Bytes up to and including the last newline: the committed log.
    pub committed: u64,
    /// Entries in the committed log.
    pub count: u64,
    /// Unterminated bytes after `committed`.
    pub torn: u64,
    /// The durable watermark the last complete line claims (`seq − u`, format 2): every entry
    /// below it was durable when that line was written. 0 when no line claims anything (the
    /// file has none, or it is format 1), or when the probe did not read that line again.
    pub claim: u64,
}

impl TailState {
    /// Whether the end of a file with write marks (`marks`: format 2 or 3) may hide an
    /// interrupted write before its last line: it does unless that line claims every entry
    /// before it durable (then nothing before it can be one). The one place that decides when
    /// the unsynced end is checked: by a writer taking the file, by a reader's tip.
    pub(crate) fn unvouched(&self, marks: bool) -> bool {
        marks && self.count > 0 && self.claim < self.count - 1
    }
}

impl<F: FileSystem> Reader<'_, F> {
    /// Scans bytes `start..len` of the file (a line boundary, or 0 for the whole file) with
    /// bounded memory, feeding the checker. Lines longer than the limit are skipped (and
    /// reported) without being buffered.
    pub(crate) fn scan(
        &self,
        start: u64,
        len: u64,
        mut checker: Checker,
        sink: &mut LineSink<'_>,
    ) -> Result<(ScanReport, Option<Header>)> {
        let path = self.path;
        let mut buf = vec![0u8; BUF];
        let mut next = start;
        let mut filled = 0usize;
        let mut base = start;
        let mut remaining = len.saturating_sub(start);
        // An over-long line being skipped: where it started and how long it is so far.
        let mut skipping: Option<(u64, u64)> = None;
        loop {
            let want = usize::try_from(remaining)
                .unwrap_or(usize::MAX)
                .min(BUF - filled);
            let n = if want == 0 {
                0
            } else {
                let slot = buf.get_mut(filled..filled + want).unwrap_or_default();
                let n = self
                    .fs
                    .read_at(self.file, slot, next)
                    .map_err(|e| Error::io("read", path, e))?;
                next += n as u64;
                n
            };
            if n == 0 {
                // End of the snapshot, or the file shrank under us: what we have is all there is.
                remaining = 0;
            }
            filled += n;
            remaining -= n as u64;
            let window = buf.get(..filled).unwrap_or_default();
            let mut start = 0;
            if let Some((at, so_far)) = skipping {
                match memchr::memchr(b'\n', window) {
                    Some(nl) => {
                        checker
                            .oversize(at, so_far + nl as u64)
                            .map_err(|s| stop_to_error(s, path))?;
                        skipping = None;
                        start = nl + 1;
                    }
                    None => {
                        skipping = Some((at, so_far + filled as u64));
                        start = filled;
                    }
                }
            }
            if skipping.is_none() {
                let rest = window.get(start..).unwrap_or_default();
                match feed(rest, base + start as u64, &mut checker, sink, path)? {
                    ControlFlow::Continue(consumed) => start += consumed,
                    ControlFlow::Break(()) => return Ok(checker.stopped(len)),
                }
            }
            let left = filled - start;
            if skipping.is_none() && left >= MAX_LINE {
                skipping = Some((base + start as u64, left as u64));
                start = filled;
            }
            if remaining == 0 {
                let tail = buf.get(start..filled).unwrap_or_default();
                let result = match skipping {
                    Some((at, so_far)) => checker.tail(at, &[], so_far),
                    None => checker.tail(base + start as u64, tail, tail.len() as u64),
                };
                result.map_err(|s| stop_to_error(s, path))?;
                return checker.finish(len).map_err(|s| stop_to_error(s, path));
            }
            buf.copy_within(start..filled, 0);
            base += start as u64;
            filled -= start;
        }
    }

    /// Finds where to start reading for the entries from sequence number `target` on, by binary
    /// search over line boundaries between `start` (the end of the header) and `len`: O(log n)
    /// positioned reads of at most two lines each. Returns a line start whose entry has a sequence
    /// number below `target` (or `start` itself) and that sequence number, with at most about 64
    /// KiB of lines between it and the target. `None` if a probe met a line that does not check
    /// out: the caller then reads from the start, which reports the damage properly.
    pub(crate) fn seek_seq(&self, start: u64, len: u64, target: u64) -> Result<Option<(u64, u64)>> {
        const CLOSE_ENOUGH: u64 = 64 * 1024;
        let window = 2 * MAX_LINE + 1;
        let (mut lo, mut lo_seq, mut hi) = (start, 0u64, len);
        let mut buf = vec![0u8; window];
        while hi.saturating_sub(lo) > CLOSE_ENOUGH {
            let mid = lo + (hi - lo) / 2;
            let n = self.read_at_most(&mut buf, mid)?;
            let bytes = buf.get(..n).unwrap_or_default();
            let Some(nl) = memchr::memchr(b'\n', bytes) else {
                return Ok(None);
            };
            let line_start = mid + nl as u64 + 1;
            if line_start >= hi {
                hi = mid;
                continue;
            }
            let rest = bytes.get(nl + 1..).unwrap_or_default();
            let Some(end) = memchr::memchr(b'\n', rest) else {
                return Ok(None);
            };
            match codec::check_entry_line(rest.get(..end).unwrap_or_default()) {
                Ok(line) if line.seq < target => {
                    lo = line_start;
                    lo_seq = line.seq;
                }
                Ok(_) => hi = line_start,
                Err(_) => return Ok(None),
            }
        }
        Ok(Some((lo, lo_seq)))
    }

    /// End of the last complete line of a file of `size` bytes (0 if it has none), reading
    /// backwards in 64 KiB steps.
    pub(crate) fn committed_end(&self, size: u64) -> Result<u64> {
        const STEP: u64 = 65_536;
        let mut buf = vec![0u8; 65_536];
        let mut end = size;
        // As many steps as the file has: the loop cannot outrun it, whatever its bounds say.
        for _ in 0..size.div_ceil(STEP) {
            let start = end.saturating_sub(STEP);
            let slot = buf
                .get_mut(..usize::try_from(end - start).unwrap_or(0))
                .unwrap_or_default();
            let n = self.read_at_most(slot, start)?;
            if let Some(nl) = memchr::memrchr(b'\n', slot.get(..n).unwrap_or_default()) {
                return Ok(start + nl as u64 + 1);
            }
            end = start;
        }
        Ok(0)
    }

    /// Reads and checks the header (line 1) of an open file.
    pub(crate) fn header(&self, identity: Identity) -> Result<(Header, u64)> {
        let mut buf = vec![0u8; MAX_LINE];
        let n = self.read_at_most(&mut buf, 0)?;
        let bytes = buf.get(..n).unwrap_or_default();
        let corrupt = |reason| Error::Corrupt {
            path: self.path.to_path_buf(),
            line: 1,
            offset: 0,
            reason,
        };
        let nl =
            memchr::memchr(b'\n', bytes).ok_or_else(|| corrupt(CorruptReason::MissingHeader))?;
        match scan::check_header(bytes.get(..nl).unwrap_or_default(), Some(identity)) {
            Ok(header) => Ok((header, nl as u64 + 1)),
            Err(HeaderFault::Version(found)) => {
                Err(stop_to_error(scan::Stop::Version(found), self.path))
            }
            Err(HeaderFault::Corrupt { reason, .. }) => Err(corrupt(reason)),
        }
    }

    /// Reads into `buf` from `offset` until it is full or the file ends; returns how much it
    /// read. The one read loop of the store's readers.
    pub(crate) fn read_at_most(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        let len = buf.len();
        let mut rest = buf;
        while !rest.is_empty() {
            let n = self.read_once(rest, offset + (len - rest.len()) as u64)?;
            if n == 0 {
                break;
            }
            rest = std::mem::take(&mut rest).get_mut(n..).unwrap_or_default();
        }
        Ok(len - rest.len())
    }

    /// One read, tried again when a signal interrupted it, [`MAX_INTERRUPTS`] times at most
    /// (then its error is returned like any other).
    fn read_once(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        for _ in 0..MAX_INTERRUPTS {
            match self.fs.read_at(self.file, buf, offset) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                other => return other.map_err(|e| Error::io("read", self.path, e)),
            }
        }
        self.fs
            .read_at(self.file, buf, offset)
            .map_err(|e| Error::io("read", self.path, e))
    }

    /// Finds the committed end and the entry count of a file of `size` bytes from its last
    /// complete line, reading at most two lines' worth of bytes: O(1) in the file's size.
    /// `known` is a line boundary with its entry count (the header end, or a writer's last state)
    /// that the window may start at.
    pub(crate) fn tail(&self, size: u64, known: (u64, u64)) -> Result<TailState> {
        let (known_end, known_count) = known;
        // The longest torn tail (4095 bytes), the longest line (4096) and the newline before
        // it: exactly this many.
        let window = 2 * MAX_LINE as u64;
        let start = if size.saturating_sub(known_end) <= window {
            known_end
        } else {
            size - window
        };
        let mut buf = vec![0u8; usize::try_from(size - start).unwrap_or(0)];
        let n = self.read_at_most(&mut buf, start)?;
        buf.truncate(n);
        let size = start + n as u64;
        let Some(last_nl) = memchr::memrchr(b'\n', &buf) else {
            return self.tail_only(start == known_end, known, size, &buf);
        };
        let committed = start + last_nl as u64 + 1;
        let torn = size - committed;
        if torn > 0 && !scan::is_torn_tail(buf.get(last_nl + 1..).unwrap_or_default(), torn) {
            return Err(Error::Corrupt {
                path: self.path.to_path_buf(),
                line: self.line_number_at(committed)?,
                offset: committed,
                reason: CorruptReason::BadTail { len: torn },
            });
        }
        if committed == known_end {
            return Ok(TailState {
                committed,
                count: known_count,
                torn,
                claim: 0,
            });
        }
        let line_start = match memchr::memrchr(b'\n', buf.get(..last_nl).unwrap_or_default()) {
            Some(prev) => prev + 1,
            None if start == known_end => 0,
            None => {
                // The last line began before the window: find where, so that the error names its
                // real position and length (error path only, so the backward scan is affordable).
                let line_start = self.committed_end(start)?;
                return Err(Error::Corrupt {
                    path: self.path.to_path_buf(),
                    line: self.line_number_at(line_start)?,
                    offset: line_start,
                    reason: CorruptReason::TooLong {
                        len: committed - 1 - line_start,
                    },
                });
            }
        };
        let line = buf.get(line_start..last_nl).unwrap_or_default();
        let offset = start + line_start as u64;
        let corrupt = |reason| -> Result<TailState> {
            Err(Error::Corrupt {
                path: self.path.to_path_buf(),
                line: self.line_number_at(offset)?,
                offset,
                reason,
            })
        };
        match codec::check_entry_line(line) {
            Ok(e) => match e.marks {
                // The file ends inside a write: its last lines never made it.
                Some(m) if m.more > 0 => corrupt(CorruptReason::UnfinishedWrite {
                    lines: 1,
                    of: m.more + 1,
                }),
                marks => Ok(TailState {
                    committed,
                    count: e.seq.saturating_add(1),
                    torn,
                    claim: marks.map_or(0, |m| m.durable_watermark(e.seq)),
                }),
            },
            Err(CorruptReason::UnexpectedHeader) if offset == 0 => Ok(TailState {
                committed,
                count: 0,
                torn,
                claim: 0,
            }),
            Err(reason) => corrupt(reason),
        }
    }

    fn tail_only(
        &self,
        from_known: bool,
        known: (u64, u64),
        size: u64,
        buf: &[u8],
    ) -> Result<TailState> {
        let (known_end, known_count) = known;
        if from_known && known_end > 0 && scan::is_torn_tail(buf, size - known_end) {
            return Ok(TailState {
                committed: known_end,
                count: known_count,
                torn: size - known_end,
                claim: 0,
            });
        }
        if known_end == 0 {
            return Err(Error::Corrupt {
                path: self.path.to_path_buf(),
                line: 1,
                offset: 0,
                reason: CorruptReason::MissingHeader,
            });
        }
        // A window that started past the known boundary holds no newline: the unterminated bytes
        // begin after the last newline before it, which may lie far back (error path only).
        let committed = if from_known {
            known_end
        } else {
            self.committed_end(size - buf.len() as u64)?
        };
        Err(Error::Corrupt {
            path: self.path.to_path_buf(),
            line: self.line_number_at(committed)?,
            offset: committed,
            reason: CorruptReason::BadTail {
                len: size - committed,
            },
        })
    }

    /// 1-based number of the line starting at `offset` (error paths only: reads the file up to
    /// `offset`).
    pub(crate) fn line_number_at(&self, offset: u64) -> Result<u64> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut pos = 0u64;
        let mut lines = 1u64;
        while pos < offset {
            let want = usize::try_from(offset - pos)
                .unwrap_or(usize::MAX)
                .min(buf.len());
            let slot = buf.get_mut(..want).unwrap_or_default();
            let n = self.read_at_most(slot, pos)?;
            if n == 0 {
                break;
            }
            lines += memchr::memchr_iter(b'\n', slot.get(..n).unwrap_or_default()).count() as u64;
            pos += n as u64;
        }
        Ok(lines)
    }

    /// End of the first line (the header), for copying the lines after it.
    pub(crate) fn first_line_end(&self) -> Result<u64> {
        let mut buf = vec![0u8; MAX_LINE];
        let n = self.read_at_most(&mut buf, 0)?;
        memchr::memchr(b'\n', buf.get(..n).unwrap_or_default())
            .map(|p| p as u64 + 1)
            .ok_or_else(|| Error::Corrupt {
                path: self.path.to_path_buf(),
                line: 1,
                offset: 0,
                reason: CorruptReason::MissingHeader,
            })
    }
}

#[cfg(test)]
#[allow(
    clippy::cast_possible_truncation,
    reason = "test offsets are small; a panic on a 32-bit target is fine in a test"
)]
mod tests {
    use super::{Reader, TailState};
    use crate::codec::{encode_entry, Frame, Marks};
    use crate::fs::seam::{Access, FileSystem, Lookup};
    use crate::fs::OsFs;

    /// A file holding `bytes`, opened through the seam, and a reader of it.
    fn with_file<T>(bytes: &[u8], f: impl FnOnce(Reader<'_, OsFs>) -> T) -> T {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), bytes).unwrap();
        let root = OsFs.open_root(dir.path(), false).unwrap();
        let Ok(Lookup::Found(file)) = OsFs.open_file(&root, "f", Access::Read) else {
            panic!("no file");
        };
        f(Reader {
            fs: &OsFs,
            file: &file,
            path: std::path::Path::new("f"),
        })
    }

    #[test]
    fn a_seek_lands_on_a_line_before_its_target_close_to_it() {
        // Lines of ~100 bytes, several times the 64 KiB the search stops within.
        let mut bytes = Vec::new();
        let mut starts = Vec::new();
        for seq in 0..3000u64 {
            starts.push(bytes.len() as u64);
            let frame = Frame::v2(seq, Marks::default());
            encode_entry(
                &frame,
                &format!("{{\"n\":\"{}\"}}", "x".repeat(60)),
                &mut bytes,
            )
            .unwrap();
        }
        let len = bytes.len() as u64;
        with_file(&bytes, |reader| {
            for target in (1..3000u64).step_by(7) {
                let (at, seq) = reader.seek_seq(0, len, target).unwrap().unwrap();
                // A line start whose entry is below the target (or the start), as documented.
                assert!(seq < target, "target {target}: landed on {seq}");
                assert_eq!(
                    at,
                    if at == 0 { 0 } else { starts[seq as usize] },
                    "target {target}"
                );
                assert!(
                    starts[target as usize] - at <= 64 * 1024 + 8200,
                    "target {target}"
                );
            }
        });
    }

    /// Fails the first `eintr` reads with `EINTR`, and every read after them with `EIO` if
    /// `then_eio`; counts the reads.
    #[derive(Debug, Default)]
    struct Reads {
        eintr: u32,
        then_eio: bool,
        calls: std::sync::atomic::AtomicU32,
    }

    impl crate::fs::FaultPlan for Reads {
        fn at(&self, call: &crate::fs::Call<'_>) -> Option<crate::fs::Fault> {
            if call.op != crate::fs::Op::ReadAt {
                return None;
            }
            let n = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if n < self.eintr {
                Some(crate::fs::Fault::Errno(4)) // EINTR
            } else if self.then_eio {
                Some(crate::fs::Fault::Errno(5)) // EIO
            } else {
                None
            }
        }
    }

    /// Reads all of "hello" from offset 1 of a file through a plan; the outcome and the reads.
    fn read_through(plan: Reads) -> (crate::Result<Vec<u8>>, u32) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"_hello").unwrap();
        let plan = std::sync::Arc::new(plan);
        let fs = crate::fs::FaultFs::new(OsFs, plan.clone());
        let root = fs.open_root(dir.path(), false).unwrap();
        let Ok(Lookup::Found(file)) = fs.open_file(&root, "f", Access::Read) else {
            panic!("no file");
        };
        let reader = Reader {
            fs: &fs,
            file: &file,
            path: std::path::Path::new("f"),
        };
        let mut buf = [0u8; 5];
        let got = reader.read_at_most(&mut buf, 1).map(|n| buf[..n].to_vec());
        (got, plan.calls.load(std::sync::atomic::Ordering::SeqCst))
    }

    #[test]
    fn a_read_a_signal_interrupted_is_tried_again_a_bounded_number_of_times() {
        let (got, calls) = read_through(Reads {
            eintr: 3,
            ..Reads::default()
        });
        assert_eq!(got.unwrap(), b"hello");
        assert_eq!(
            calls, 4,
            "three interrupted reads, then the one that read it all"
        );
        // Interrupted for ever: given up after MAX_INTERRUPTS more tries, with the EINTR.
        let (got, calls) = read_through(Reads {
            eintr: u32::MAX,
            ..Reads::default()
        });
        let err = got.unwrap_err();
        assert_eq!(
            err.io_kind(),
            Some(std::io::ErrorKind::Interrupted),
            "{err}"
        );
        assert_eq!(calls, super::MAX_INTERRUPTS + 1);
        // Any other error is never tried again.
        let (got, calls) = read_through(Reads {
            eintr: 0,
            then_eio: true,
            ..Reads::default()
        });
        assert!(
            matches!(got, Err(crate::Error::Io { ref source, .. }) if source.raw_os_error() == Some(5))
        );
        assert_eq!(calls, 1);
    }

    #[test]
    fn the_tail_of_a_longest_line_after_a_longest_line_and_a_longest_torn_one_is_found() {
        // Two lines of exactly 4096 bytes, then 4095 bytes of a third: the window the probe
        // reads must hold the torn bytes, the last line and the newline before it.
        let line = |seq: u64| {
            let mut out = Vec::new();
            let frame = Frame::v1(seq);
            let mut text = 4096 - 31 - 1;
            loop {
                out.clear();
                encode_entry(&frame, &format!("\"{}\"", "x".repeat(text - 2)), &mut out).unwrap();
                if out.len() <= 4096 {
                    break;
                }
                text -= out.len() - 4096;
            }
            assert_eq!(out.len(), 4096);
            out
        };
        let mut bytes = [line(0), line(1)].concat();
        bytes.extend_from_slice(&line(2)[..4095]);
        let state = with_file(&bytes, |r| r.tail(bytes.len() as u64, (0, 0)).unwrap());
        assert_eq!(
            state,
            TailState {
                committed: 8192,
                count: 2,
                torn: 4095,
                claim: 0
            }
        );
    }

    #[test]
    fn a_header_found_at_the_start_of_the_window_is_an_empty_log_and_anywhere_else_damage() {
        let session = crate::SessionId::new();
        let segment = crate::SegmentId::new();
        let header = crate::testing::support::header_image(1, session, segment);
        let len = header.len() as u64;
        let state = with_file(&header, |r| r.tail(len, (0, 0)).unwrap());
        assert_eq!(
            state,
            TailState {
                committed: len,
                count: 0,
                torn: 0,
                claim: 0
            }
        );
        // The same line again after it is no empty log.
        let twice = [header.clone(), header].concat();
        let err = with_file(&twice, |r| r.tail(twice.len() as u64, (0, 0)).unwrap_err());
        assert!(
            matches!(
                err,
                crate::Error::Corrupt {
                    line: 2,
                    offset,
                    reason: crate::CorruptReason::UnexpectedHeader,
                    ..
                } if offset == len
            ),
            "{err:?}"
        );
    }

    #[test]
    fn the_committed_end_is_after_the_last_newline_or_zero() {
        for (bytes, end) in [
            (&b""[..], 0),
            (b"no newline at all", 0),
            (b"one\n", 4),
            (b"one\ntorn", 4),
        ] {
            let found = with_file(bytes, |r| r.committed_end(bytes.len() as u64).unwrap());
            assert_eq!(found, end, "{bytes:?}");
        }
        // A last newline more than one read step back.
        let mut long = b"line\n".to_vec();
        long.extend(std::iter::repeat_n(b'z', 200_000));
        let found = with_file(&long, |r| r.committed_end(long.len() as u64).unwrap());
        assert_eq!(found, 5);
    }

    fn tail(count: u64, claim: u64) -> TailState {
        TailState {
            committed: 0,
            count,
            torn: 0,
            claim,
        }
    }

    #[test]
    fn an_end_is_vouched_for_only_by_a_last_line_that_claims_every_entry_before_it() {
        // (count, claim, unvouched with marks)
        for (count, claim, unvouched) in [
            (0, 0, false),
            (1, 0, false),
            (2, 0, true),
            (2, 1, false),
            (5, 3, true),
            (5, 4, false),
            (5, 5, false),
        ] {
            assert_eq!(
                tail(count, claim).unvouched(true),
                unvouched,
                "{count} {claim}"
            );
            // Format 1 has no marks: nothing is ever checked for an interrupted write.
            assert!(!tail(count, claim).unvouched(false), "{count} {claim}");
        }
    }
}
