//! The line checker shared by every reader: given the lines of a file in order, it checks the
//! header, every CRC and the sequence numbers, decides what to deliver, and builds the
//! [`ScanReport`]. Pure: the readers in `fs/` read files into buffers, [`feed`] splits a buffer
//! into lines for the checker, and [`check_header`] and [`is_torn_tail`] are the one verdict on
//! a header line and on unterminated bytes that every reader (and the writer's tail probe) uses.

use std::ops::ControlFlow;
use std::path::Path;

use crate::blob::BlobRef;
use crate::codec::{self, FileKind, Header, FORMAT_VERSION};
use crate::error::CorruptReason;
use crate::{Error, ReadMode, Result, ScanReport, SegmentId, SessionId, TornTail};

/// Why a scan must stop.
#[derive(Debug)]
pub(crate) enum Stop {
    /// Strict mode met a problem.
    Corrupt {
        line: u64,
        offset: u64,
        reason: CorruptReason,
    },
    /// The header names a format version this build cannot read.
    Version(u64),
}

/// What a checked line hands to the reader.
#[derive(Debug)]
pub(crate) enum Delivery<'a> {
    /// An entry kept in its line.
    Entry { seq: u64, json: &'a str },
    /// An entry kept as a blob; the reader resolves (or checks) it. `line` and `offset` say
    /// where the referring line is, for errors.
    Blob {
        seq: u64,
        reference: BlobRef,
        line: u64,
        offset: u64,
    },
}

enum Body<'a> {
    Inline(&'a str),
    Blob(BlobRef),
}

/// What the file is supposed to be, checked against its header.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Identity {
    pub kind: FileKind,
    pub session: SessionId,
    pub segment: SegmentId,
}

pub(crate) struct Checker {
    mode: ReadMode,
    from_seq: u64,
    deliver: bool,
    identity: Option<Identity>,
    next_seq: u64,
    line_no: u64,
    /// Started in the middle of the file (a seek to a sequence number): no header expected.
    resumed: bool,
    clean: bool,
    header: Option<Header>,
    report: ScanReport,
}

impl Checker {
    /// `deliver = false` is the verify-only path: CRC, shape, UTF-8 and sequence, without
    /// handing entries out.
    pub(crate) fn new(
        mode: ReadMode,
        from_seq: u64,
        deliver: bool,
        identity: Option<Identity>,
    ) -> Self {
        Self {
            mode,
            from_seq,
            deliver,
            identity,
            next_seq: 0,
            line_no: 0,
            resumed: false,
            clean: true,
            header: None,
            report: ScanReport::default(),
        }
    }

    /// A checker that starts at the line of entry `seq`, at byte `offset`, assuming the lines
    /// before it are what their numbering says (they are not read).
    pub(crate) fn resumed(mut self, seq: u64, offset: u64) -> Self {
        self.resumed = true;
        self.next_seq = seq;
        self.line_no = seq + 1;
        self.report.entries = seq;
        self.report.valid_up_to = offset;
        self
    }

    fn problem(&mut self, offset: u64, reason: CorruptReason) -> Result<(), Stop> {
        if self.mode == ReadMode::Strict {
            return Err(Stop::Corrupt {
                line: self.line_no,
                offset,
                reason,
            });
        }
        self.clean = false;
        self.report.problem_count += 1;
        if self.report.problems.len() < ScanReport::MAX_PROBLEMS {
            self.report.problems.push(crate::Problem {
                line: self.line_no,
                offset,
                reason,
            });
        }
        Ok(())
    }

    fn advance_valid(&mut self, end: u64) {
        if self.clean {
            self.report.valid_up_to = end;
        }
    }

    /// Feeds one complete line (`line` excludes its newline) that starts at `offset`. Returns
    /// the entry to deliver, if any.
    pub(crate) fn line<'a>(
        &mut self,
        offset: u64,
        line: &'a [u8],
    ) -> Result<Option<Delivery<'a>>, Stop> {
        self.line_no += 1;
        let end = offset + line.len() as u64 + 1;
        if self.line_no == 1 && !self.resumed {
            match check_header(line, self.identity) {
                Ok(h) => self.header = Some(h),
                Err(HeaderFault::Version(found)) => return Err(Stop::Version(found)),
                Err(HeaderFault::Corrupt { header, reason }) => {
                    self.problem(offset, reason)?;
                    self.header = header.map(|h| *h);
                }
            }
            self.advance_valid(end);
            return Ok(None);
        }
        let decoded = if self.deliver {
            codec::decode_line(line).and_then(|l| match l {
                codec::Line::Entry { seq, json } => Ok((seq, Body::Inline(json))),
                codec::Line::Blob { seq, reference } => Ok((seq, Body::Blob(reference))),
                codec::Line::Header(_) => Err(CorruptReason::UnexpectedHeader),
            })
        } else {
            // The same verdict as the delivering path: a line a strict replay refuses must not
            // pass verify, nor repair, which trusts this check to find what to cut.
            codec::check_entry_line(line).and_then(|e| {
                let body = line.get(e.body).unwrap_or_default();
                if e.is_blob {
                    serde_json::from_slice::<BlobRef>(body)
                        .map(|r| (e.seq, Body::Blob(r)))
                        .map_err(|_| CorruptReason::Malformed("bad blob reference"))
                } else {
                    std::str::from_utf8(body)
                        .map(|_| (e.seq, Body::Inline("")))
                        .map_err(|_| CorruptReason::Malformed("entry is not UTF-8"))
                }
            })
        };
        let (seq, body) = match decoded {
            Ok(v) => v,
            Err(reason) => {
                self.problem(offset, reason)?;
                return Ok(None);
            }
        };
        if seq != self.next_seq {
            let reason = CorruptReason::SeqMismatch {
                expected: self.next_seq,
                found: seq,
            };
            self.problem(offset, reason)?;
        }
        self.next_seq = seq.saturating_add(1);
        self.report.entries += 1;
        self.advance_valid(end);
        let wanted = seq >= self.from_seq;
        Ok(match body {
            Body::Inline(json) if self.deliver && wanted => Some(Delivery::Entry { seq, json }),
            // Verify checks every blob; a replay only those it delivers.
            Body::Blob(reference) if wanted || !self.deliver => Some(Delivery::Blob {
                seq,
                reference,
                line: self.line_no,
                offset,
            }),
            _ => None,
        })
    }

    /// A line too long to buffer (the streaming reader does not keep it): always a problem.
    pub(crate) fn oversize(&mut self, offset: u64, len: u64) -> Result<(), Stop> {
        self.line_no += 1;
        self.problem(offset, CorruptReason::TooLong { len })
    }

    /// The unterminated bytes at the end of the scanned range.
    pub(crate) fn tail(&mut self, offset: u64, tail: &[u8], len: u64) -> Result<(), Stop> {
        if len == 0 {
            return Ok(());
        }
        if is_torn_tail(tail, len) {
            self.report.torn_tail = Some(TornTail { offset, len });
            Ok(())
        } else {
            self.line_no += 1;
            self.problem(offset, CorruptReason::BadTail { len })
        }
    }

    /// The sink asked to stop: the report covers what was read so far.
    pub(crate) fn stopped(mut self, file_len: u64) -> (ScanReport, Option<Header>) {
        self.report.stopped = true;
        self.report.file_len = file_len;
        (self.report, self.header)
    }

    pub(crate) fn finish(mut self, file_len: u64) -> Result<(ScanReport, Option<Header>), Stop> {
        let headerless = self.line_no == 0 || self.header.is_none();
        if !self.resumed && headerless && (self.line_no == 0 || self.report.problem_count == 0) {
            self.line_no = 1;
            self.problem(0, CorruptReason::MissingHeader)?;
        }
        self.report.file_len = file_len;
        Ok((self.report, self.header))
    }
}

/// Why a header line is not the header of the file a reader expects.
#[derive(Debug)]
pub(crate) enum HeaderFault {
    /// A well-formed header of a format version this build cannot read.
    Version(u64),
    /// Not a header, or the header of another file (then `header` is what it says).
    Corrupt {
        header: Option<Box<Header>>,
        reason: CorruptReason,
    },
}

/// The one verdict on a header line (without its newline): well-formed, of a version this build
/// reads, and (with `identity`) naming the file it stands in. Every reader and the writer's
/// header probe use it.
pub(crate) fn check_header(line: &[u8], identity: Option<Identity>) -> Result<Header, HeaderFault> {
    let header = codec::decode_header(line).map_err(|reason| HeaderFault::Corrupt {
        header: None,
        reason,
    })?;
    if header.annals != u64::from(FORMAT_VERSION) {
        return Err(HeaderFault::Version(header.annals));
    }
    if let Some(id) = identity {
        if (header.kind, header.session, header.segment) != (id.kind, id.session, id.segment) {
            let reason = CorruptReason::WrongIdentity {
                expected: format!("{:?} {}/{}", id.kind, id.session, id.segment),
                found: format!("{:?} {}/{}", header.kind, header.session, header.segment),
            };
            return Err(HeaderFault::Corrupt {
                header: Some(Box::new(header)),
                reason,
            });
        }
    }
    Ok(header)
}

/// The one verdict on the unterminated bytes at the end of a file: `head` is what a reader
/// holds of them, `len` how many there are. They are a torn tail (an interrupted append,
/// never committed) only if the reader holds them all and they can be the start of an annals
/// line; anything else is damage.
pub(crate) fn is_torn_tail(head: &[u8], len: u64) -> bool {
    len == head.len() as u64 && codec::is_plausible_torn_tail(head)
}

/// Receives what the checker delivers, in file order; `Break` ends the scan there.
pub(crate) type LineSink<'a> = dyn FnMut(Delivery<'_>) -> Result<ControlFlow<()>> + 'a;

/// The error a reader returns for a checker's [`Stop`] in the file at `path`.
pub(crate) fn stop_to_error(stop: Stop, path: &Path) -> Error {
    match stop {
        Stop::Corrupt {
            line,
            offset,
            reason,
        } => Error::Corrupt {
            path: path.to_path_buf(),
            line,
            offset,
            reason,
        },
        Stop::Version(found) => Error::UnsupportedVersion {
            path: path.to_path_buf(),
            found,
            supported: FORMAT_VERSION,
        },
    }
}

/// Feeds the complete lines of `buf` (which starts at file offset `base`) to the checker and
/// the sink. Returns how many bytes were consumed (up to and including the last newline), or
/// `Break` if the sink asked to stop.
pub(crate) fn feed(
    buf: &[u8],
    base: u64,
    checker: &mut Checker,
    sink: &mut LineSink<'_>,
    path: &Path,
) -> Result<ControlFlow<(), usize>> {
    let mut start = 0;
    for nl in memchr::memchr_iter(b'\n', buf) {
        let line = buf.get(start..nl).unwrap_or_default();
        match checker.line(base + start as u64, line) {
            Ok(Some(delivery)) => {
                if sink(delivery)?.is_break() {
                    return Ok(ControlFlow::Break(()));
                }
            }
            Ok(None) => {}
            Err(stop) => return Err(stop_to_error(stop, path)),
        }
        start = nl + 1;
    }
    Ok(ControlFlow::Continue(start))
}

/// Scans an in-memory image of the committed part of a file (the mapped fast path, or a whole
/// image held by the caller), then the unterminated `tail` (its first bytes; `tail_len` in
/// all) that follows it.
pub(crate) fn scan_slice(
    bytes: &[u8],
    tail: &[u8],
    tail_len: u64,
    mut checker: Checker,
    sink: &mut LineSink<'_>,
    path: &Path,
) -> Result<(ScanReport, Option<Header>)> {
    let end = match feed(bytes, 0, &mut checker, sink, path)? {
        ControlFlow::Continue(end) => end,
        ControlFlow::Break(()) => return Ok(checker.stopped(bytes.len() as u64 + tail_len)),
    };
    let leftover = bytes.get(end..).unwrap_or_default();
    let (tail, tail_len) = if leftover.is_empty() {
        (tail, tail_len)
    } else {
        (leftover, leftover.len() as u64 + tail_len)
    };
    finish_scan(checker, end as u64, tail, tail_len, path)
}

/// Ends a scan whose complete lines (up to `end`) were fed: the unterminated tail, then the
/// report.
pub(crate) fn finish_scan(
    mut checker: Checker,
    end: u64,
    tail: &[u8],
    tail_len: u64,
    path: &Path,
) -> Result<(ScanReport, Option<Header>)> {
    checker
        .tail(end, tail, tail_len)
        .map_err(|s| stop_to_error(s, path))?;
    checker
        .finish(end + tail_len)
        .map_err(|s| stop_to_error(s, path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{encode_entry, encode_header};

    fn file(n: u64) -> (Vec<u8>, Identity) {
        let id = Identity {
            kind: FileKind::Segment,
            session: SessionId::new(),
            segment: SegmentId::new(),
        };
        let mut out = Vec::new();
        encode_header(
            &Header {
                annals: 1,
                kind: id.kind,
                session: id.session,
                segment: id.segment,
                generation: 0,
                created_ms: 0,
                fork: None,
            },
            &mut out,
        )
        .unwrap();
        for seq in 0..n {
            encode_entry(seq, &format!("{{\"n\":{seq}}}"), &mut out).unwrap();
        }
        (out, id)
    }

    fn scan(bytes: &[u8], mode: ReadMode, id: Identity) -> Result<(ScanReport, Vec<u64>), Stop> {
        let mut c = Checker::new(mode, 0, true, Some(id));
        let mut seqs = Vec::new();
        let mut start = 0;
        while let Some(nl) = bytes[start..].iter().position(|&b| b == b'\n') {
            if let Some(Delivery::Entry { seq, .. }) =
                c.line(start as u64, &bytes[start..start + nl])?
            {
                seqs.push(seq);
            }
            start += nl + 1;
        }
        c.tail(start as u64, &bytes[start..], (bytes.len() - start) as u64)?;
        Ok((c.finish(bytes.len() as u64)?.0, seqs))
    }

    #[test]
    fn clean_file_delivers_every_entry_in_order() {
        let (bytes, id) = file(5);
        let (report, seqs) = scan(&bytes, ReadMode::Strict, id).unwrap();
        assert_eq!(seqs, vec![0, 1, 2, 3, 4]);
        assert!(report.is_clean());
        assert_eq!(report.valid_up_to, bytes.len() as u64);
    }

    #[test]
    fn torn_tail_is_reported_not_delivered_and_not_a_problem() {
        let (mut bytes, id) = file(3);
        let full = bytes.len();
        encode_entry(3, "{\"n\":3}", &mut bytes).unwrap();
        bytes.truncate(full + 10);
        let (report, seqs) = scan(&bytes, ReadMode::Strict, id).unwrap();
        assert_eq!(seqs.len(), 3);
        assert_eq!(
            report.torn_tail,
            Some(TornTail {
                offset: full as u64,
                len: 10
            })
        );
        assert_eq!(report.valid_up_to, full as u64);
    }

    #[test]
    fn strict_stops_at_a_flipped_byte_with_line_and_offset() {
        let (mut bytes, id) = file(4);
        let third_entry = bytes
            .iter()
            .enumerate()
            .filter(|(_, &b)| b == b'\n')
            .nth(2)
            .map(|(i, _)| i + 1)
            .unwrap();
        bytes[third_entry + 30] ^= 0x20;
        match scan(&bytes, ReadMode::Strict, id) {
            Err(Stop::Corrupt {
                line,
                offset,
                reason,
            }) => {
                assert_eq!(line, 4, "header is line 1, so the third entry is line 4");
                assert_eq!(offset, third_entry as u64);
                assert!(matches!(reason, CorruptReason::CrcMismatch { .. }));
            }
            other => panic!("expected corruption, got {other:?}"),
        }
        let (report, seqs) = scan(&bytes, ReadMode::Tolerant, id).unwrap();
        assert_eq!(seqs, vec![0, 1, 3]);
        assert_eq!(report.valid_up_to, third_entry as u64);
        assert_eq!(
            report.problem_count, 2,
            "the bad CRC, then the gap it leaves"
        );
    }

    #[test]
    fn a_header_of_another_version_stops_the_scan() {
        let (bytes, id) = file(0);
        let text = String::from_utf8(bytes).unwrap();
        let body = text.trim_end().replacen("\"annals\":1", "\"annals\":2", 1);
        let covered = &body.as_bytes()[codec::PREFIX_LEN..];
        let line = format!(
            "{{\"crc\":\"{:08x}\",{}\n",
            crc32fast::hash(covered),
            std::str::from_utf8(covered).unwrap()
        );
        assert!(matches!(
            scan(line.as_bytes(), ReadMode::Tolerant, id),
            Err(Stop::Version(2))
        ));
    }

    #[test]
    fn empty_file_has_no_header() {
        let (_, id) = file(0);
        assert!(matches!(
            scan(b"", ReadMode::Strict, id),
            Err(Stop::Corrupt {
                reason: CorruptReason::MissingHeader,
                ..
            })
        ));
    }
}
