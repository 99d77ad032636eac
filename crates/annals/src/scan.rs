//! The line checker shared by every reader, and the recovery classifier: given the lines of a
//! file in order, it checks the header, every CRC, the sequence numbers and the writes, decides
//! what to deliver, whether damage at the end is an interrupted tail, and builds the
//! [`ScanReport`]. Pure: the readers in `fs/` and [`check_image`](crate::check_image) split
//! files into lines and feed it; [`crate::recovery`] turns its verdict into a writer's plan.
//!
//! The verdict, once (docs/FORMAT.md, *Recovery*, and `recovery.rs` say the same):
//! F is the first damage; C the end of the last complete write before it; S the sequence
//! number of the first entry at C. The bytes from C on are an interrupted tail when F is of a
//! kind an interrupted write leaves, the file is format 2, and no intact line from C on claims
//! a durable watermark above S. A format-1 file has only torn lines as interrupted tails.
//!
//! What is delivered follows from it: the lines of a write are held back until its last line
//! has checked out (so a partial batch is never handed out), a strict scan delivers nothing
//! after F, and a tolerant one holds the complete writes it finds after F until the verdict is
//! damage (then it hands them out) or the file ends (then they are part of the interrupted
//! tail and dropped). Memory: at most [`HOLD`] bytes of held entries.
//!
//! The readers in `fs/` read files into buffers; [`feed`] splits a buffer into lines for the
//! checker, and [`check_header`] and [`is_torn_tail`] are the one verdict on a header line and on
//! unterminated bytes that every reader (and the writer's tail probe) uses.

use std::cell::Cell;
use std::ops::ControlFlow;
use std::path::Path;

use crate::blob::BlobRef;
use crate::codec::decode::{self, EntryLine};
use crate::codec::{FileKind, Header, Version, MAX_LINE, MAX_WRITE_LINES};
use crate::error::CorruptReason;
use crate::{Error, ReadMode, Result, ScanReport, SegmentId, SessionId, TailKind, TornTail};

/// Bytes of entries a tolerant scan holds back after the first damage before it gives up
/// waiting for the verdict and hands them out (salvage wins over an interrupted tail that
/// large); also more than any one write can hold, `MAX_WRITE_LINES × MAX_LINE`.
pub(crate) const HOLD: usize = 2 * 1024 * MAX_LINE;
const _: () = assert!(MAX_WRITE_LINES == 1024);

/// Why a scan must stop.
#[derive(Debug)]
pub(crate) enum Stop {
    /// Strict mode met damage.
    Corrupt {
        line: u64,
        offset: u64,
        reason: CorruptReason,
    },
    /// The header names a format version this build cannot read.
    Version(u64),
}

/// Why [`Checker::feed`] ended early.
#[derive(Debug)]
pub(crate) enum Fed {
    /// The checker stopped the scan.
    Stop(Stop),
    /// The sink failed.
    Sink(Error),
}

/// Where a reader reports that the blob of a delivered blob line is missing or damaged: the
/// checker counts it as damage at that line (an interrupted write, if nothing later claims it
/// durable).
#[derive(Default)]
pub(crate) struct BlobVerdict(Cell<Option<CorruptReason>>);

impl std::fmt::Debug for BlobVerdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BlobVerdict")
    }
}

impl BlobVerdict {
    /// The blob of the line just delivered is bad: `reason` says how.
    pub(crate) fn report(&self, reason: CorruptReason) {
        self.0.set(Some(reason));
    }
}

/// What a checked line hands to the reader.
#[derive(Debug)]
pub(crate) enum Delivery<'a> {
    /// An entry kept in its line.
    Entry {
        seq: u64,
        appended_ms: Option<u64>,
        json: &'a str,
    },
    /// An entry kept as a blob; the reader resolves (or checks) it and reports a bad blob to
    /// `verdict`, which makes it damage at the referring line.
    Blob {
        seq: u64,
        appended_ms: Option<u64>,
        reference: BlobRef,
        verdict: &'a BlobVerdict,
    },
}

/// Receives what the checker delivers, in file order; `Break` ends the scan there.
pub(crate) type LineSink<'a> = dyn FnMut(Delivery<'_>) -> Result<ControlFlow<()>> + 'a;

/// What the file is supposed to be, checked against its header.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Identity {
    pub kind: FileKind,
    pub session: SessionId,
    pub segment: SegmentId,
}

/// A write whose last line has not been seen yet.
#[derive(Debug, Clone, Copy)]
struct OpenWrite {
    /// Lines seen so far, and lines it has (its first line's `more` + 1).
    lines: u64,
    of: u64,
    /// Largest durable watermark its lines claim.
    claim: u64,
}

/// The first damage F, and what the verdict needs.
#[derive(Debug, Clone)]
struct Damage {
    line: u64,
    offset: u64,
    reason: CorruptReason,
    /// C: where the interrupted tail would begin, its line and S, the first entry there.
    from: u64,
    from_line: u64,
    from_seq: u64,
    /// Entries before C.
    entries: u64,
    kind: TailKind,
    /// Damage for certain: F cannot be an interrupted write, or a line from C on claims the
    /// entry at C durable.
    certain: bool,
}

/// An entry held back until its write is complete, or until the verdict.
#[derive(Debug)]
struct Held {
    seq: u64,
    appended_ms: Option<u64>,
    line: u64,
    offset: u64,
    /// Where its text starts (or would) in `Checker::held_text`.
    text_at: usize,
    body: HeldBody,
}

#[derive(Debug)]
enum HeldBody {
    /// JSON text: `Checker::held_text[text_at..end]`.
    Inline {
        end: usize,
    },
    Blob(BlobRef),
}

/// The body of a line that checked out.
enum Body<'a> {
    Inline(&'a str),
    Blob(BlobRef),
}

pub(crate) struct Checker {
    mode: ReadMode,
    from_seq: u64,
    deliver: bool,
    identity: Option<Identity>,
    version: Option<Version>,
    next_seq: u64,
    line_no: u64,
    /// Started in the middle of the file (a seek to a sequence number): no header expected.
    resumed: bool,
    header: Option<Header>,
    report: ScanReport,
    /// End of the last complete write (C while nothing is damaged), its line count and the
    /// next sequence number there.
    complete_end: u64,
    complete_lines: u64,
    complete_seq: u64,
    /// End of the last complete line.
    line_end: u64,
    write: Option<OpenWrite>,
    damage: Option<Damage>,
    held: Vec<Held>,
    held_text: String,
    /// Held entries that belong to complete writes (the rest are the open write's).
    held_complete: usize,
    blob_verdict: BlobVerdict,
}

impl Checker {
    /// `deliver = false` is the verify-only path: CRC, shape, UTF-8, sequence and writes,
    /// handing out only blob lines (for their blobs to be checked).
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
            version: None,
            next_seq: 0,
            line_no: 0,
            resumed: false,
            header: None,
            report: ScanReport::default(),
            complete_end: 0,
            complete_lines: 0,
            complete_seq: 0,
            line_end: 0,
            write: None,
            damage: None,
            held: Vec::new(),
            held_text: String::new(),
            held_complete: 0,
            blob_verdict: BlobVerdict::default(),
        }
    }

    /// A checker that starts at the line of entry `seq`, at byte `offset` of a file whose
    /// header is `header`, assuming the lines before it are what their numbering says (they
    /// are not read). Its first line is taken to begin a write.
    pub(crate) fn resumed(mut self, header: &Header, seq: u64, offset: u64) -> Self {
        self.resumed = true;
        self.version = header.version();
        self.next_seq = seq;
        self.line_no = seq.saturating_add(1);
        self.report.entries = seq;
        self.complete_end = offset;
        self.complete_lines = self.line_no;
        self.complete_seq = seq;
        self.line_end = offset;
        self
    }

    fn strict(&self) -> bool {
        self.mode == ReadMode::Strict
    }

    fn record(&mut self, line: u64, offset: u64, reason: CorruptReason) {
        self.report.problem_count += 1;
        if self.report.problems.len() < ScanReport::MAX_PROBLEMS {
            self.report.problems.push(crate::Problem {
                line,
                offset,
                reason,
            });
        }
    }

    /// Damage at `line`/`offset`. The first damage is F: it fixes C and, unless it can be an
    /// interrupted write, is damage for certain. `zeros` says whether its bytes hold zero
    /// bytes (for the tail's kind).
    fn damage_at(
        &mut self,
        line: u64,
        offset: u64,
        reason: CorruptReason,
        zeros: bool,
    ) -> std::result::Result<(), Stop> {
        if self.damage.is_some() {
            if !self.strict() {
                self.record(line, offset, reason);
            }
            return Ok(());
        }
        let interruptible =
            self.version.is_some_and(Version::has_marks) && reason.may_be_interrupted_write();
        let open = self.write.take();
        let kind = match (&reason, open) {
            (CorruptReason::Blob { .. }, _) => TailKind::LostBlob,
            // An open write has its first line from the moment it opens.
            (_, Some(w)) => TailKind::PartialWrite {
                lines: w.lines,
                of: w.of,
            },
            (CorruptReason::TooLong { .. }, _) => TailKind::ZeroFilled,
            (CorruptReason::BadTail { len }, _) if *len >= MAX_LINE as u64 => TailKind::ZeroFilled,
            _ if zeros => TailKind::ZeroFilled,
            _ => TailKind::Garbage,
        };
        let claim = open.map_or(0, |w| w.claim);
        let certain = !interruptible || claim > self.complete_seq;
        // The open write's lines are a partial write: never handed out.
        self.drop_open_write();
        self.damage = Some(Damage {
            line,
            offset,
            reason: reason.clone(),
            from: self.complete_end,
            from_line: self.complete_lines.saturating_add(1),
            from_seq: self.complete_seq,
            entries: self.report.entries,
            kind,
            certain,
        });
        if self.strict() {
            if certain {
                return Err(Stop::Corrupt {
                    line,
                    offset,
                    reason,
                });
            }
        } else {
            self.record(line, offset, reason);
        }
        Ok(())
    }

    /// A line from C on claims entries below `watermark` durable.
    fn claim(&mut self, watermark: u64) -> std::result::Result<bool, Stop> {
        match &mut self.damage {
            None => {
                if let Some(w) = &mut self.write {
                    w.claim = w.claim.max(watermark);
                }
                Ok(false)
            }
            Some(d) if !d.certain && watermark > d.from_seq => {
                d.certain = true;
                if self.mode == ReadMode::Strict {
                    return Err(Stop::Corrupt {
                        line: d.line,
                        offset: d.offset,
                        reason: d.reason.clone(),
                    });
                }
                Ok(true)
            }
            Some(_) => Ok(false),
        }
    }

    fn drop_open_write(&mut self) {
        let keep = self.held_complete;
        if let Some(first_open) = self.held.get(keep) {
            self.held_text.truncate(first_open.text_at);
        }
        self.held.truncate(keep);
    }

    /// Feeds the complete lines of `buf` (which starts at file offset `base`) and hands what
    /// they deliver to `sink`. Returns how many bytes were consumed (up to and including the
    /// last newline), or `Break` if the sink asked to stop.
    pub(crate) fn feed(
        &mut self,
        buf: &[u8],
        base: u64,
        sink: &mut LineSink<'_>,
    ) -> std::result::Result<ControlFlow<(), usize>, Fed> {
        let mut start = 0;
        for nl in memchr::memchr_iter(b'\n', buf) {
            let line = buf.get(start..nl).unwrap_or_default();
            if self.line(base + start as u64, line, sink)?.is_break() {
                return Ok(ControlFlow::Break(()));
            }
            start = nl + 1;
        }
        Ok(ControlFlow::Continue(start))
    }

    /// Feeds one complete line (`line` excludes its newline) that starts at `offset`.
    fn line(
        &mut self,
        offset: u64,
        line: &[u8],
        sink: &mut LineSink<'_>,
    ) -> std::result::Result<ControlFlow<()>, Fed> {
        self.line_no = self.line_no.saturating_add(1);
        let end = offset + line.len() as u64 + 1;
        self.line_end = end;
        if self.line_no == 1 && !self.resumed {
            self.header_line(offset, line, end).map_err(Fed::Stop)?;
            return Ok(ControlFlow::Continue(()));
        }
        if self.strict() && self.damage.is_some() {
            // Past F a strict scan delivers nothing; it only looks for a line that claims the
            // interrupted bytes durable.
            if let Ok(e) = self.check(line) {
                if let Some(m) = e.marks {
                    self.claim(m.durable_watermark(e.seq)).map_err(Fed::Stop)?;
                }
            }
            return Ok(ControlFlow::Continue(()));
        }
        let framed = self.check(line);
        let checked = framed.clone().and_then(|e| {
            let body = line.get(e.body.clone()).unwrap_or_default();
            let body = if e.is_blob {
                Body::Blob(decode::parse_reference(body)?)
            } else {
                Body::Inline(decode::utf8(body)?)
            };
            Ok((e, body))
        });
        match checked {
            Ok((e, body)) => self.entry(offset, end, &e, body, sink),
            Err(reason) => {
                let zeros = memchr::memchr(0, line).is_some();
                self.damage_at(self.line_no, offset, reason, zeros)
                    .map_err(Fed::Stop)?;
                // A line whose frame checks out claims what its marks say, whatever its body:
                // the same lines count as a strict scan's.
                if let Some(m) = framed.ok().and_then(|e| e.marks.map(|m| (e.seq, m))) {
                    let (seq, marks) = m;
                    if self
                        .claim(marks.durable_watermark(seq))
                        .map_err(Fed::Stop)?
                        && self.deliver
                    {
                        return self.release(sink);
                    }
                }
                Ok(ControlFlow::Continue(()))
            }
        }
    }

    fn check(&self, line: &[u8]) -> std::result::Result<EntryLine, CorruptReason> {
        match self.version {
            Some(v) => decode::check_line_as(v, line),
            // The header is damaged: read each line as what it looks like.
            None => decode::check_entry_line(line),
        }
    }

    fn header_line(&mut self, offset: u64, line: &[u8], end: u64) -> std::result::Result<(), Stop> {
        match check_header(line, self.identity) {
            Ok(h) => {
                self.version = h.version();
                self.header = Some(h);
            }
            Err(HeaderFault::Version(found)) => return Err(Stop::Version(found)),
            Err(HeaderFault::Corrupt { header, reason }) => {
                // Another file's header still says how its lines are framed.
                if let Some(h) = header {
                    self.version = h.version();
                    self.header = Some(*h);
                }
                self.damage_at(1, offset, reason, false)?;
            }
        }
        if self.damage.is_none() {
            self.complete_end = end;
            self.complete_lines = 1;
        }
        Ok(())
    }

    /// An intact entry line.
    fn entry(
        &mut self,
        offset: u64,
        end: u64,
        e: &EntryLine,
        body: Body<'_>,
        sink: &mut LineSink<'_>,
    ) -> std::result::Result<ControlFlow<()>, Fed> {
        let line_no = self.line_no;
        let in_sequence = e.seq == self.next_seq;
        if !in_sequence {
            let reason = CorruptReason::SeqMismatch {
                expected: self.next_seq,
                found: e.seq,
            };
            self.damage_at(line_no, offset, reason, false)
                .map_err(Fed::Stop)?;
        }
        // Decoders refuse a seq above MAX_SEQ, so this cannot overflow.
        self.next_seq = e.seq + 1;
        let more = e.marks.map_or(0, |m| m.more);
        if let Some(w) = self.write {
            if more + 1 != w.of - w.lines {
                // One problem per line: a line out of sequence is that, first.
                if in_sequence {
                    let reason = CorruptReason::BrokenWrite {
                        lines: w.lines,
                        of: w.of,
                        more,
                    };
                    self.damage_at(line_no, offset, reason, false)
                        .map_err(Fed::Stop)?;
                }
                // This line begins a write of its own; the broken one is never handed out.
                self.write = None;
                self.drop_open_write();
            }
        }
        if let Some(m) = e.marks {
            // Damage for certain now: what was held waiting for the verdict goes out first.
            if self.claim(m.durable_watermark(e.seq)).map_err(Fed::Stop)?
                && self.deliver
                && self.release(sink)?.is_break()
            {
                return Ok(ControlFlow::Break(()));
            }
        }
        if self.strict() && self.damage.is_some() {
            return Ok(ControlFlow::Continue(()));
        }
        let w = self.write.get_or_insert(OpenWrite {
            lines: 0,
            of: more + 1,
            claim: e.marks.map_or(0, |m| m.durable_watermark(e.seq)),
        });
        w.lines += 1;
        let complete = more == 0;
        let lines = w.lines;
        let appended_ms = e.marks.map(|m| m.appended_ms);
        let wanted = e.seq >= self.from_seq;
        let mut flow = ControlFlow::Continue(());
        if !self.deliver {
            // Verify hands out every blob line at once, for its blob to be checked.
            if let Body::Blob(reference) = body {
                flow = self.deliver_blob(e.seq, appended_ms, reference, line_no, offset, sink)?;
            }
        } else {
            let waiting = self.damage.as_ref().is_some_and(|d| !d.certain);
            // A write of one line goes straight out unless the verdict on damage before it is
            // still open; the lines of a batch are held until its last one has checked out.
            let single = complete && lines == 1;
            let hold = !single || waiting;
            if !hold {
                if wanted {
                    flow = match body {
                        Body::Inline(json) => sink(Delivery::Entry {
                            seq: e.seq,
                            appended_ms,
                            json,
                        })
                        .map_err(Fed::Sink)?,
                        Body::Blob(reference) => {
                            self.deliver_blob(e.seq, appended_ms, reference, line_no, offset, sink)?
                        }
                    };
                }
            } else {
                if wanted {
                    self.hold(e.seq, appended_ms, line_no, offset, body);
                }
                if complete {
                    self.held_complete = self.held.len();
                }
                // Held entries go out when their write is complete, unless the verdict on the
                // damage before them is still open; then when it is damage for certain, or
                // when there are too many of them to keep waiting.
                let overflow = self.held_text.len() > HOLD;
                if (complete && !waiting) || overflow {
                    flow = self.release(sink)?;
                }
            }
        }
        if complete {
            self.write = None;
            self.report.entries += lines;
            if self.damage.is_none() {
                self.complete_end = end;
                self.complete_lines = line_no;
                self.complete_seq = self.next_seq;
            }
        }
        Ok(flow)
    }

    fn hold(&mut self, seq: u64, appended_ms: Option<u64>, line: u64, offset: u64, body: Body<'_>) {
        let text_at = self.held_text.len();
        let body = match body {
            Body::Inline(json) => {
                self.held_text.push_str(json);
                HeldBody::Inline {
                    end: self.held_text.len(),
                }
            }
            Body::Blob(reference) => HeldBody::Blob(reference),
        };
        self.held.push(Held {
            seq,
            appended_ms,
            line,
            offset,
            text_at,
            body,
        });
    }

    /// Hands a blob line to the sink, and counts a bad blob it reports as damage there.
    fn deliver_blob(
        &mut self,
        seq: u64,
        appended_ms: Option<u64>,
        reference: BlobRef,
        line: u64,
        offset: u64,
        sink: &mut LineSink<'_>,
    ) -> std::result::Result<ControlFlow<()>, Fed> {
        let flow = sink(Delivery::Blob {
            seq,
            appended_ms,
            reference,
            verdict: &self.blob_verdict,
        })
        .map_err(Fed::Sink)?;
        if let Some(reason) = self.blob_verdict.0.take() {
            self.damage_at(line, offset, reason, false)
                .map_err(Fed::Stop)?;
        }
        Ok(flow)
    }

    /// Hands out the held entries of complete writes, in order. A bad blob among them is F
    /// when nothing was damaged before: a strict scan then drops the rest, a tolerant one keeps
    /// holding them for the verdict.
    fn release(&mut self, sink: &mut LineSink<'_>) -> std::result::Result<ControlFlow<()>, Fed> {
        let n = self.held_complete;
        let damaged_before = self.damage.is_some();
        let mut done = 0;
        let mut flow = ControlFlow::Continue(());
        while done < n && flow.is_continue() {
            if !damaged_before && self.damage.as_ref().is_some_and(|d| !d.certain) {
                break;
            }
            let Some(h) = self.held.get(done) else { break };
            let (seq, appended_ms, line, offset) = (h.seq, h.appended_ms, h.line, h.offset);
            flow = match &h.body {
                HeldBody::Inline { end } => {
                    let json = self.held_text.get(h.text_at..*end).unwrap_or_default();
                    sink(Delivery::Entry {
                        seq,
                        appended_ms,
                        json,
                    })
                    .map_err(Fed::Sink)?
                }
                HeldBody::Blob(reference) => {
                    let reference = reference.clone();
                    self.deliver_blob(seq, appended_ms, reference, line, offset, sink)?
                }
            };
            done += 1;
        }
        if flow.is_break() || (self.strict() && self.damage.is_some()) {
            self.held.clear();
            self.held_text.clear();
            self.held_complete = 0;
            return Ok(flow);
        }
        let cut = self
            .held
            .get(done)
            .map_or(self.held_text.len(), |h| h.text_at);
        self.held_text.drain(..cut);
        self.held.drain(..done);
        for h in &mut self.held {
            h.text_at -= cut;
            if let HeldBody::Inline { end } = &mut h.body {
                *end -= cut;
            }
        }
        self.held_complete = n - done;
        Ok(flow)
    }

    /// A line too long to buffer (the streaming reader does not keep it): always a problem.
    pub(crate) fn oversize(&mut self, offset: u64, len: u64) -> std::result::Result<(), Stop> {
        self.line_no = self.line_no.saturating_add(1);
        self.line_end = offset + len + 1;
        if self.strict() && self.damage.is_some() {
            return Ok(());
        }
        self.damage_at(self.line_no, offset, CorruptReason::TooLong { len }, true)
    }

    /// The unterminated bytes at the end of the scanned range: `tail` holds the first of them
    /// (all of them if there are fewer than a line can hold), `len` their number.
    pub(crate) fn tail(
        &mut self,
        offset: u64,
        tail: &[u8],
        len: u64,
    ) -> std::result::Result<(), Stop> {
        if len == 0 {
            return Ok(());
        }
        let line = self.line_no.saturating_add(1);
        if is_torn_tail(tail, len) {
            if self.damage.is_none() {
                if let Some(w) = self.write {
                    // The torn line was the next line of an open write.
                    let reason = CorruptReason::UnfinishedWrite {
                        lines: w.lines,
                        of: w.of,
                    };
                    return self.damage_at(line, offset, reason, false);
                }
            }
            self.report.torn_tail = Some(TornTail::torn_line(line, offset, len));
            return Ok(());
        }
        self.line_no = self.line_no.saturating_add(1);
        if self.strict() && self.damage.is_some() {
            return Ok(());
        }
        let zeros = memchr::memchr(0, tail).is_some();
        self.damage_at(line, offset, CorruptReason::BadTail { len }, zeros)
    }

    /// The sink asked to stop: the report covers what was read so far.
    pub(crate) fn stopped(mut self, file_len: u64) -> (ScanReport, Option<Header>) {
        self.report.stopped = true;
        self.report.file_len = file_len;
        self.report.valid_up_to = self.damage.as_ref().map_or(self.complete_end, |d| d.from);
        (self.report, self.header)
    }

    /// The end of the file: an open write is unfinished, and the verdict is made.
    pub(crate) fn finish(
        mut self,
        file_len: u64,
    ) -> std::result::Result<(ScanReport, Option<Header>), Stop> {
        if let (None, Some(w)) = (&self.damage, self.write) {
            let reason = CorruptReason::UnfinishedWrite {
                lines: w.lines,
                of: w.of,
            };
            self.damage_at(self.line_no.saturating_add(1), self.line_end, reason, false)?;
        }
        // No complete line at all (a damaged header line is its own problem, not a second one).
        if !self.resumed && self.header.is_none() && self.damage.is_none() {
            self.line_no = self.line_no.max(1);
            self.damage_at(1, 0, CorruptReason::MissingHeader, false)?;
        }
        self.report.file_len = file_len;
        self.report.valid_up_to = self.complete_end;
        if let Some(d) = self.damage {
            self.report.valid_up_to = d.from;
            if d.certain {
                if self.mode == ReadMode::Strict {
                    return Err(Stop::Corrupt {
                        line: d.line,
                        offset: d.offset,
                        reason: d.reason,
                    });
                }
            } else {
                // An interrupted tail: nothing in it is damage, and nothing of it counts.
                self.report.torn_tail = Some(TornTail {
                    line: d.from_line,
                    offset: d.from,
                    len: file_len.saturating_sub(d.from),
                    kind: d.kind,
                });
                self.report.problems.clear();
                self.report.problem_count = 0;
                self.report.entries = d.entries;
            }
        }
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
    let header = decode::decode_header(line).map_err(|reason| HeaderFault::Corrupt {
        header: None,
        reason,
    })?;
    if header.version().is_none() {
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
/// holds of them, `len` how many there are. They are a torn line (an interrupted append, never
/// committed) only if the reader holds them all and they can be the start of an annals line.
pub(crate) fn is_torn_tail(head: &[u8], len: u64) -> bool {
    len == head.len() as u64 && decode::is_plausible_torn_tail(head)
}

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
            supported: crate::codec::FORMAT_VERSION,
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
    checker.feed(buf, base, sink).map_err(|fed| match fed {
        Fed::Stop(stop) => stop_to_error(stop, path),
        Fed::Sink(e) => e,
    })
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
mod tests;
