//! The export file: one or more sessions in one self-contained, streamed file (docs/EXPORT.md).
//!
//! Text, one JSON object per line, each line framed like a segment line: the 18-byte prefix
//! `{"crc":"xxxxxxxx",` holds the CRC-32 of the rest of the line, so a reader names the line
//! and byte where a file is damaged. The last line holds the number of lines before it and
//! their SHA-256, so a cut-short file, a lost line or a line moved elsewhere is caught too.
//! Writing and reading hold one line at a time (an entry's largest size, plus a little);
//! attachments travel as base64 chunks of 1 MiB.

use std::io::{self, BufRead, Write};

use annals::{AttachmentMeta, BlobId, SegmentId, SessionId};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::lines::{read_line, Read};

/// The version of the export format this build writes and reads.
pub const VERSION: u32 = 1;

/// Bytes of an attachment per chunk line (before base64).
pub const CHUNK: usize = 1 << 20;

const PREFIX_LEN: usize = 18;

/// Lineage of a forked segment.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Fork {
    pub segment: SegmentId,
    pub at: u64,
}

/// The records, each one line. `k` names the kind.
#[derive(Debug, Serialize, Deserialize)]
pub struct Header {
    pub version: u32,
    pub tool: String,
    pub created_ms: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SessionStart {
    pub session: SessionId,
}

/// A segment: its entries follow from `from` on (the fork point when its parent, earlier in
/// the file, holds the same first entries; 0 otherwise).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SegmentStart {
    pub segment: SegmentId,
    pub created_ms: u64,
    pub generation: u64,
    pub fork: Option<Fork>,
    pub from: u64,
}

/// One entry of a segment, or one event of a trace.
#[derive(Debug, Deserialize)]
pub struct EntryLine<'a> {
    pub seq: u64,
    /// Parsed to check it is a time (or null); an import cannot set append times, the store
    /// sets them.
    #[expect(
        dead_code,
        reason = "checked, not used: the store sets append times itself"
    )]
    pub t: Option<u64>,
    #[serde(borrow)]
    pub e: &'a RawValue,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SegmentEnd {
    pub segment: SegmentId,
    pub entries: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct TraceStart {
    pub segment: SegmentId,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct TraceEnd {
    pub segment: SegmentId,
    pub events: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttachmentStart {
    pub id: BlobId,
    pub len: u64,
    pub meta: AttachmentMeta,
    pub created_ms: u64,
    pub chunks: u64,
}

#[derive(Debug, Deserialize)]
pub struct Chunk<'a> {
    #[serde(borrow)]
    pub data: &'a str,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SessionEnd {
    pub session: SessionId,
    pub segments: u64,
    pub attachments: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct End {
    pub records: u64,
    pub sha256: String,
}

/// Writes records, framing each line and hashing everything written.
pub struct Writer<W: Write> {
    out: W,
    hash: Sha256,
    records: u64,
    line: Vec<u8>,
}

impl<W: Write> Writer<W> {
    pub fn new(out: W) -> Self {
        Self {
            out,
            hash: Sha256::new(),
            records: 0,
            line: Vec::new(),
        }
    }

    /// One record of kind `k` with the fields of `body` (a struct serialized as a JSON object).
    pub fn record(&mut self, k: &str, body: &impl Serialize) -> io::Result<()> {
        let json = serde_json::to_string(body).map_err(io::Error::other)?;
        let fields = json.strip_prefix('{').unwrap_or(&json);
        self.line.clear();
        self.line
            .extend_from_slice(format!("\"k\":{}", serde_json::to_string(k)?).as_bytes());
        if fields != "}" {
            self.line.push(b',');
        }
        self.line.extend_from_slice(fields.as_bytes());
        self.emit()
    }

    /// An entry (`k` = `e`) or trace event (`te`): its JSON text goes in as it is.
    pub fn entry(&mut self, k: &str, seq: u64, t: Option<u64>, json: &str) -> io::Result<()> {
        self.line.clear();
        let t = t.map_or_else(|| "null".to_owned(), |t| t.to_string());
        self.line
            .extend_from_slice(format!("\"k\":\"{k}\",\"seq\":{seq},\"t\":{t},\"e\":").as_bytes());
        self.line.extend_from_slice(json.as_bytes());
        self.line.push(b'}');
        self.emit()
    }

    /// An attachment: its start record, then its bytes in base64 chunks.
    pub fn attachment(&mut self, start: &AttachmentStart, bytes: &[u8]) -> io::Result<()> {
        self.record("attachment", start)?;
        for chunk in bytes.chunks(CHUNK) {
            self.line.clear();
            self.line.extend_from_slice(b"\"k\":\"chunk\",\"data\":\"");
            let encoded = base64::engine::general_purpose::STANDARD.encode(chunk);
            self.line.extend_from_slice(encoded.as_bytes());
            self.line.extend_from_slice(b"\"}");
            self.emit()?;
        }
        Ok(())
    }

    /// `self.line` holds the bytes after the prefix; frame, hash and write them.
    fn emit(&mut self) -> io::Result<()> {
        let crc = crc32fast::hash(&self.line);
        let prefix = format!("{{\"crc\":\"{crc:08x}\",");
        self.hash.update(prefix.as_bytes());
        self.hash.update(&self.line);
        self.hash.update(b"\n");
        self.out.write_all(prefix.as_bytes())?;
        self.out.write_all(&self.line)?;
        self.out.write_all(b"\n")?;
        self.records += 1;
        Ok(())
    }

    /// The closing line, then the output back.
    pub fn finish(mut self) -> io::Result<W> {
        let end = End {
            records: self.records,
            sha256: hex(&self.hash.clone().finalize()),
        };
        self.record("end", &end)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where and why an export file is refused.
#[derive(Debug)]
pub struct Refusal {
    /// 1-based line number (0: the file as a whole).
    pub line: u64,
    /// Byte offset of that line.
    pub offset: u64,
    pub reason: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            f.write_str(&self.reason)
        } else {
            write!(
                f,
                "line {} at byte {}: {}",
                self.line, self.offset, self.reason
            )
        }
    }
}

/// What a reader hands out, checked: each line's CRC and shape, and the file's structure
/// (sessions hold segments and attachments; entries are numbered without gaps from the
/// segment's `from`; counts match; attachments' bytes match their id and length; the
/// closing line's count and hash match).
#[derive(Debug)]
pub enum Event<'a> {
    Session(SessionId),
    Segment(SegmentStart),
    Entry { json: &'a str },
    SegmentEnd { entries: u64 },
    Trace,
    TraceLine { json: &'a str },
    TraceEnd,
    Attachment(AttachmentStart),
    Chunk(Vec<u8>),
    AttachmentEnd,
    SessionEnd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Start,
    Between,
    InSession,
    InSegment,
    AfterSegment,
    InTrace,
    InAttachment,
    Done,
}

/// Where the reader is: for refusals.
#[derive(Debug, Clone, Copy, Default)]
struct Pos {
    line: u64,
    offset: u64,
    next_offset: u64,
}

impl Pos {
    fn refuse(&self, reason: impl Into<String>) -> Refusal {
        Refusal {
            line: self.line,
            offset: self.offset,
            reason: reason.into(),
        }
    }
}

/// Reads and checks an export file, one event at a time.
pub struct Reader<R: BufRead> {
    input: R,
    buf: Vec<u8>,
    hash: Sha256,
    pos: Pos,
    parser: Parser,
}

/// The structure checks: what may come next, and the counts to compare.
struct Parser {
    limit: usize,
    state: State,
    session: Option<SessionId>,
    segments_in_session: u64,
    attachments_in_session: u64,
    segment: Option<SegmentId>,
    next_seq: u64,
    /// The attachment being read: its record, chunks and bytes so far, their hash.
    attachment: Option<(AttachmentStart, u64, u64, Sha256)>,
}

impl<R: BufRead> Reader<R> {
    /// `max_entry` is the largest entry accepted (the target store's maximum).
    pub fn new(input: R, max_entry: usize) -> Self {
        Self {
            input,
            buf: Vec::new(),
            hash: Sha256::new(),
            pos: Pos::default(),
            parser: Parser {
                limit: max_entry.max(CHUNK * 2) + (64 << 10),
                state: State::Start,
                session: None,
                segments_in_session: 0,
                attachments_in_session: 0,
                segment: None,
                next_seq: 0,
                attachment: None,
            },
        }
    }

    /// The next event; `None` after the closing line.
    ///
    /// # Errors
    /// [`Refusal`] at the first problem; I/O errors as refusals of the whole file.
    pub fn next(&mut self) -> Result<Option<Event<'_>>, Refusal> {
        if let Some(event) = self.parser.attachment_done(&self.pos)? {
            return Ok(Some(event));
        }
        if self.parser.state == State::Done {
            self.buf.clear();
            return match read_line(&mut self.input, &mut self.buf, 16) {
                Ok(None) => Ok(None),
                Ok(Some(_)) => Err(Refusal {
                    line: self.pos.line + 1,
                    offset: self.pos.next_offset,
                    reason: "bytes after the closing line".to_owned(),
                }),
                Err(e) => Err(self.pos.refuse(format!("could not read the file: {e}"))),
            };
        }
        let kind = self.read()?;
        if kind == "annals-export" || kind == "end" {
            let text = std::str::from_utf8(&self.buf).map_err(|_| self.pos.refuse("not UTF-8"))?;
            let digest = hex(&self.hash.clone().finalize());
            self.parser.control(&kind, text, &self.pos, &digest)?;
            return self.next();
        }
        let text = std::str::from_utf8(&self.buf).map_err(|_| self.pos.refuse("not UTF-8"))?;
        self.parser.event(&kind, text, &self.pos).map(Some)
    }

    /// Reads the next line into the buffer, checks its CRC, adds it to the running hash
    /// (all but the closing line), and returns its kind.
    fn read(&mut self) -> Result<String, Refusal> {
        self.buf.clear();
        self.pos.offset = self.pos.next_offset;
        let read = read_line(&mut self.input, &mut self.buf, self.parser.limit)
            .map_err(|e| self.pos.refuse(format!("could not read the file: {e}")))?;
        self.pos.line += 1;
        let line_len = match read {
            None => {
                return Err(Refusal {
                    line: 0,
                    offset: self.pos.offset,
                    reason: if self.pos.line == 1 {
                        "the file is empty".to_owned()
                    } else {
                        format!(
                            "the file ends after {} lines without its closing line: it was \
                             cut short",
                            self.pos.line - 1
                        )
                    },
                })
            }
            Some(Read::TooLong(len)) => {
                return Err(self.pos.refuse(format!(
                    "a line of {len} bytes, longer than any record can be"
                )))
            }
            Some(Read::Line { terminated: false }) => {
                return Err(self
                    .pos
                    .refuse("the last line has no newline: the file was cut short"))
            }
            Some(Read::Line { terminated: true }) => self.buf.len() as u64 + 1,
        };
        self.pos.next_offset = self.pos.offset + line_len;
        let body = check_crc(&self.buf).map_err(|why| {
            if self.pos.line == 1 {
                self.pos
                    .refuse(format!("not an annals export file ({why})"))
            } else {
                self.pos.refuse(why)
            }
        })?;
        let kind =
            kind_of(body).ok_or_else(|| self.pos.refuse("no record kind (\"k\") after the CRC"))?;
        if kind != "end" {
            self.hash.update(&self.buf);
            self.hash.update(b"\n");
        }
        Ok(kind)
    }
}

impl Parser {
    fn parse<'l, T: Deserialize<'l>>(pos: &Pos, line: &'l str) -> Result<T, Refusal> {
        serde_json::from_str(line).map_err(|e| pos.refuse(format!("malformed record: {e}")))
    }

    fn expect(&self, pos: &Pos, allowed: &[State], kind: &str) -> Result<(), Refusal> {
        if self.state == State::Start && kind != "annals-export" {
            return Err(pos.refuse(
                "not an annals export file (its first line is not an annals-export header)",
            ));
        }
        if allowed.contains(&self.state) {
            Ok(())
        } else {
            Err(pos.refuse(format!(
                "a {kind:?} record out of place (after {})",
                match self.state {
                    State::Start => "nothing",
                    State::Between => "a session's end",
                    State::InSession => "a session's start or a trace",
                    State::InSegment => "a segment's start or entries",
                    State::AfterSegment => "a segment's end",
                    State::InTrace => "a trace's events",
                    State::InAttachment => "an attachment's chunks",
                    State::Done => "the closing line",
                }
            )))
        }
    }

    /// The end of an attachment once all its chunks are read: its length and hash checked.
    fn attachment_done(&mut self, pos: &Pos) -> Result<Option<Event<'static>>, Refusal> {
        let Some((start, done, len, _)) = &self.attachment else {
            return Ok(None);
        };
        if *done < start.chunks {
            return Ok(None);
        }
        if *len != start.len {
            return Err(pos.refuse(format!(
                "attachment {} holds {len} bytes, its record says {}",
                start.id, start.len
            )));
        }
        let Some((start, _, _, hash)) = self.attachment.take() else {
            return Ok(None);
        };
        if hex(&hash.finalize()) != start.id.to_string() {
            return Err(pos.refuse(format!(
                "attachment {}: its bytes do not hash to its id",
                start.id
            )));
        }
        self.state = State::InSession;
        Ok(Some(Event::AttachmentEnd))
    }

    /// The header and the closing line, which are not events of their own.
    fn control(&mut self, kind: &str, line: &str, pos: &Pos, digest: &str) -> Result<(), Refusal> {
        if kind == "annals-export" {
            self.expect(pos, &[State::Start], kind)?;
            let h: Header = Self::parse(pos, line)?;
            if h.version != VERSION {
                return Err(pos.refuse(format!(
                    "export format version {} (this build reads version {VERSION}): use the \
                     annals that wrote it, or a newer one",
                    h.version
                )));
            }
            self.state = State::Between;
            return Ok(());
        }
        self.expect(pos, &[State::Between], kind)?;
        let end: End = Self::parse(pos, line)?;
        let records = pos.line - 1;
        if end.records != records || end.sha256 != digest {
            return Err(pos.refuse(format!(
                "the closing line says {} lines with SHA-256 {}, the file has {records} hashing \
                 to {digest}: lines were lost, added or changed",
                end.records, end.sha256
            )));
        }
        self.state = State::Done;
        Ok(())
    }

    fn event<'s>(&mut self, kind: &str, line: &'s str, pos: &Pos) -> Result<Event<'s>, Refusal> {
        use State as S;
        match kind {
            "session" => {
                self.expect(pos, &[S::Between], kind)?;
                let s: SessionStart = Self::parse(pos, line)?;
                self.session = Some(s.session);
                self.segments_in_session = 0;
                self.attachments_in_session = 0;
                self.state = S::InSession;
                Ok(Event::Session(s.session))
            }
            "segment" => {
                self.expect(pos, &[S::InSession, S::AfterSegment], kind)?;
                let s: SegmentStart = Self::parse(pos, line)?;
                if s.fork.is_some_and(|f| s.from > f.at) || (s.fork.is_none() && s.from != 0) {
                    return Err(pos.refuse("a segment's entries start after its fork point"));
                }
                self.segment = Some(s.segment);
                self.next_seq = s.from;
                self.segments_in_session += 1;
                self.state = S::InSegment;
                Ok(Event::Segment(s))
            }
            "e" => {
                self.expect(pos, &[S::InSegment], kind)?;
                let e: EntryLine<'s> = Self::parse(pos, line)?;
                if e.seq != self.next_seq {
                    return Err(pos.refuse(format!(
                        "entry {} where entry {} should be: an entry is missing or repeated",
                        e.seq, self.next_seq
                    )));
                }
                self.next_seq += 1;
                Ok(Event::Entry { json: e.e.get() })
            }
            "segment-end" => {
                self.expect(pos, &[S::InSegment], kind)?;
                let end: SegmentEnd = Self::parse(pos, line)?;
                if Some(end.segment) != self.segment || end.entries != self.next_seq {
                    return Err(pos.refuse(format!(
                        "the segment's closing record says {} entries, the file holds entries \
                         up to {}",
                        end.entries, self.next_seq
                    )));
                }
                self.state = S::AfterSegment;
                Ok(Event::SegmentEnd {
                    entries: end.entries,
                })
            }
            "trace" => {
                self.expect(pos, &[S::AfterSegment], kind)?;
                let t: TraceStart = Self::parse(pos, line)?;
                if Some(t.segment) != self.segment {
                    return Err(pos.refuse("a trace of another segment than the one before it"));
                }
                self.next_seq = 0;
                self.state = S::InTrace;
                Ok(Event::Trace)
            }
            "te" => {
                self.expect(pos, &[S::InTrace], kind)?;
                let e: EntryLine<'s> = Self::parse(pos, line)?;
                if e.seq != self.next_seq {
                    return Err(pos.refuse(format!(
                        "trace event {} where event {} should be",
                        e.seq, self.next_seq
                    )));
                }
                self.next_seq += 1;
                Ok(Event::TraceLine { json: e.e.get() })
            }
            "trace-end" => {
                self.expect(pos, &[S::InTrace], kind)?;
                let end: TraceEnd = Self::parse(pos, line)?;
                if Some(end.segment) != self.segment || end.events != self.next_seq {
                    return Err(pos.refuse("the trace's closing record does not match its events"));
                }
                self.state = S::InSession;
                Ok(Event::TraceEnd)
            }
            "attachment" => {
                self.expect(pos, &[S::InSession, S::AfterSegment], kind)?;
                let a: AttachmentStart = Self::parse(pos, line)?;
                let chunks = a.len.div_ceil(CHUNK as u64);
                if a.chunks != chunks {
                    return Err(pos.refuse(format!(
                        "an attachment of {} bytes in {} chunks (it takes {chunks})",
                        a.len, a.chunks
                    )));
                }
                if a.len > self.limit as u64 {
                    return Err(pos.refuse(format!(
                        "an attachment of {} bytes, more than this store takes",
                        a.len
                    )));
                }
                self.attachments_in_session += 1;
                self.attachment = Some((a.clone(), 0, 0, Sha256::new()));
                self.state = S::InAttachment;
                Ok(Event::Attachment(a))
            }
            "chunk" => {
                self.expect(pos, &[S::InAttachment], kind)?;
                let c: Chunk<'_> = Self::parse(pos, line)?;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(c.data)
                    .map_err(|e| pos.refuse(format!("a chunk that is not base64: {e}")))?;
                let Some((start, done, len, hash)) = &mut self.attachment else {
                    return Err(pos.refuse("a chunk outside an attachment"));
                };
                let last = *done + 1 == start.chunks;
                if bytes.len() > CHUNK || (!last && bytes.len() != CHUNK) || bytes.is_empty() {
                    return Err(pos.refuse("a chunk of the wrong size"));
                }
                *done += 1;
                *len += bytes.len() as u64;
                hash.update(&bytes);
                Ok(Event::Chunk(bytes))
            }
            "session-end" => {
                self.expect(pos, &[S::InSession, S::AfterSegment], kind)?;
                let end: SessionEnd = Self::parse(pos, line)?;
                if Some(end.session) != self.session
                    || end.segments != self.segments_in_session
                    || end.attachments != self.attachments_in_session
                {
                    return Err(pos.refuse(format!(
                        "the session's closing record says {} segments and {} attachments, the \
                         file holds {} and {}",
                        end.segments,
                        end.attachments,
                        self.segments_in_session,
                        self.attachments_in_session
                    )));
                }
                self.state = S::Between;
                Ok(Event::SessionEnd)
            }
            other => Err(pos.refuse(format!("unknown record kind {other:?}"))),
        }
    }
}

/// The bytes after the CRC prefix, if the CRC matches.
fn check_crc(line: &[u8]) -> Result<&[u8], String> {
    let prefix = line
        .get(..PREFIX_LEN)
        .ok_or("a line too short to be a record")?;
    let shaped = prefix.starts_with(b"{\"crc\":\"") && prefix.ends_with(b"\",");
    let hex = prefix.get(8..16).and_then(|h| std::str::from_utf8(h).ok());
    let stored = hex
        .filter(|_| shaped)
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .ok_or("a line that does not start with the {\"crc\":\"xxxxxxxx\", prefix")?;
    let body = line.get(PREFIX_LEN..).unwrap_or_default();
    let computed = crc32fast::hash(body);
    if computed != stored {
        return Err(format!(
            "CRC mismatch: the line says {stored:08x}, its bytes hash to {computed:08x}"
        ));
    }
    Ok(body)
}

/// The `k` of a framed line's body: it comes first, `"k":"…"`.
fn kind_of(body: &[u8]) -> Option<String> {
    let rest = body.strip_prefix(b"\"k\":\"")?;
    let end = memchr::memchr(b'"', rest)?;
    std::str::from_utf8(rest.get(..end)?)
        .ok()
        .map(str::to_owned)
}
