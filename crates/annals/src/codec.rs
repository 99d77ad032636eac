//! The line codec: frames entries and headers into lines. Bytes in, bytes or a typed outcome
//! out. This module is the small stable part: the encoders and the types they take, for tools
//! that write annals lines themselves (a benchmark's `write(2)` floor, a CLI that prints the
//! stored line of an entry it verified). Checking lines is `codec::decode`'s job, which is not part
//! of the public API.
//!
//! **Invariant:** this module does no I/O. Everything that touches a file lives in `fs/`.
//!
//! A line is `{"crc":"xxxxxxxx",` (18 bytes, fixed) followed by the *covered* bytes and a `\n`.
//! The CRC-32 (IEEE) is computed over the covered bytes exactly as written, so a reader checks a
//! line without parsing JSON. Keys come in one fixed order and every number has one spelling, so
//! one entry has exactly one line:
//!
//! - version 1: `{"crc":"…","seq":N,"e":ENTRY}` or `{"crc":"…","seq":N,"blob":REF}`;
//! - version 2: `{"crc":"…","seq":N,"t":MS[,"u":U][,"more":M],"e":ENTRY}` (or `,"blob":REF}`),
//!   `u` and `more` left out when 0; versions 3 and 4 write the same lines (they differ in where
//!   blobs go);
//! - the header (line 1 of every file): `{"crc":"…","annals":VERSION,…}`.
//!
//! See docs/FORMAT.md.

use serde::{Deserialize, Serialize};

use crate::blob::BlobRef;
use crate::{SegmentId, SessionId};

pub(crate) mod decode;

pub(crate) use decode::check_entry_line;

/// Largest line annals writes or accepts, newline included: `PIPE_BUF` on Linux.
pub const MAX_LINE: usize = 4096;

/// The newest on-disk format version this build reads (it reads every [`Version`]). Which
/// version a file has is fixed when it is created.
pub const FORMAT_VERSION: u32 = 4;

/// Largest sequence number a line may carry: `2^64 − 2`, so that the entry count after it,
/// `seq + 1`, still fits a `u64`. The encoders refuse a larger one
/// ([`EncodeError::SeqOutOfRange`]) and readers report a line that carries one as malformed;
/// sequence numbers never wrap. A writer that reaches it reports the segment full.
pub const MAX_SEQ: u64 = u64::MAX - 1;

/// Most lines one write may hold in format 2 (its first line's `more` is at most one less).
/// A reader holds back the lines of a write until its last line has checked out, so this bounds
/// that memory by `MAX_WRITE_LINES × MAX_LINE` (4 MiB). The store frames a larger batch as
/// consecutive writes of at most this many lines, still handed to the kernel in one `write(2)`:
/// readers see all of it or none, but across a power cut only each write of it is
/// all-or-nothing (docs/DURABILITY.md).
pub const MAX_WRITE_LINES: u64 = 1024;

/// Longest entry JSON kept inline in a line of a file this build creates
/// ([`Version::NEW_FILES`], version 4, with version-2 lines): 3983 bytes, the room a line leaves with a 20-digit
/// sequence number and the longest marks. Longer entries are kept as blobs, so the choice never
/// depends on where in the segment an entry lands. Appends to a version-1 file keep entries of
/// up to 4045 bytes inline; [`Version::max_inline`] gives each version's.
pub const MAX_INLINE: usize = Version::NEW_FILES.max_inline();

const CRC_OPEN: &[u8] = b"{\"crc\":\"";
const CRC_CLOSE: &[u8] = b"\",";
pub(crate) use decode::PREFIX_LEN;
const SEQ_KEY: &[u8] = b"\"seq\":";
const TIME_KEY: &[u8] = b",\"t\":";
const UNSYNCED_KEY: &[u8] = b",\"u\":";
const MORE_KEY: &[u8] = b",\"more\":";
const ENTRY_KEY: &[u8] = b",\"e\":";
const HEADER_KEY: &[u8] = b"\"annals\":";
const BLOB_KEY: &[u8] = b",\"blob\":";
/// Digits of the largest `u64`.
const U64_DIGITS: usize = 20;

/// An on-disk format version. A file's version is fixed when it is created: appends to a
/// version-1 file write version-1 lines, truncate and repair keep the version, a fork takes its
/// source's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Version {
    /// Lines carry `seq` and the entry.
    V1,
    /// Lines also carry the append time `t`, and the write marks `u` (the writer's durable
    /// watermark) and `more` (lines of the same write that follow), which let recovery tell an
    /// interrupted last write from damage using only the bytes.
    V2,
    /// Lines as in version 2; the blobs of its entries go to the session's blob pack
    /// (`blobs/pack`, one append-only file of CRC'd records) instead of a file each.
    V3,
    /// As version 3; the pack records of its blobs may be compressed (zstd), as the store's
    /// [`BlobCompression`](crate::BlobCompression) says. Older builds refuse these files rather
    /// than miss their blobs.
    V4,
}

impl Version {
    /// The newest version, [`FORMAT_VERSION`].
    pub const NEWEST: Self = Self::V4;

    /// The version this build gives the files it creates: version 4. Tools that write files the
    /// store would write use it.
    pub const NEW_FILES: Self = Self::V4;

    /// The version with this number, if this build knows it.
    #[must_use]
    pub fn from_number(n: u64) -> Option<Self> {
        match n {
            1 => Some(Self::V1),
            2 => Some(Self::V2),
            3 => Some(Self::V3),
            4 => Some(Self::V4),
            _ => None,
        }
    }

    /// The number the header's `annals` field holds.
    #[must_use]
    pub fn number(self) -> u64 {
        match self {
            Self::V1 => 1,
            Self::V2 => 2,
            Self::V3 => 3,
            Self::V4 => 4,
        }
    }

    /// The shape of this version's lines: versions 3 and 4 write version-2 lines.
    #[must_use]
    pub const fn lines(self) -> Self {
        match self {
            Self::V3 | Self::V4 => Self::V2,
            other => other,
        }
    }

    /// Whether lines carry the write marks (`t`, `u`, `more`): versions 2 to 4.
    #[must_use]
    pub const fn has_marks(self) -> bool {
        !matches!(self, Self::V1)
    }

    /// Whether the blobs of this version's files go to the session's blob pack (versions 3 and
    /// 4) rather than to a file each (`blobs/ab/abcdef…`, versions 1 and 2).
    #[must_use]
    pub const fn packs_blobs(self) -> bool {
        matches!(self, Self::V3 | Self::V4)
    }

    /// Whether this version's blobs may be compressed pack records (version 4): a version-3
    /// file's readers know only records of the bytes themselves.
    #[must_use]
    pub const fn compresses_blobs(self) -> bool {
        matches!(self, Self::V4)
    }

    /// Longest entry JSON kept inline in a line of this version whatever its sequence number
    /// and marks: 4045 bytes in version 1, 3983 in version 2 (20-digit `seq`, `t` and `u`, a
    /// 4-digit `more`). Longer entries are kept as blobs.
    #[must_use]
    pub const fn max_inline(self) -> usize {
        let marks = match self {
            Self::V1 => 0,
            // `more` is below MAX_WRITE_LINES = 1024: at most 4 digits.
            Self::V2 | Self::V3 | Self::V4 => {
                TIME_KEY.len() + U64_DIGITS + UNSYNCED_KEY.len() + U64_DIGITS + MORE_KEY.len() + 4
            }
        };
        MAX_LINE - (PREFIX_LEN + SEQ_KEY.len() + U64_DIGITS + marks + ENTRY_KEY.len() + 2)
    }
}

/// What a version-2 line says besides its entry: when it was appended, and where its write
/// stands. Version-1 lines have none of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Marks {
    /// `t`: append time, milliseconds since the Unix epoch, set by the store; the same for every
    /// line of one write.
    pub appended_ms: u64,
    /// `u`: when this line was written, the entries from `seq − u` on were not known to be
    /// durable. The writer's durable watermark is `seq − u`; a `Sync` append with no other
    /// write in flight writes 0. At most `seq`.
    pub unsynced: u64,
    /// `more`: how many lines of the same `write(2)` follow this one; 0 on a write's last line.
    /// Below [`MAX_WRITE_LINES`].
    pub more: u64,
}

impl Marks {
    /// The writer's durable watermark for a line with sequence number `seq`: it claims that
    /// every entry below this one was durable when the line was written.
    #[must_use]
    pub fn durable_watermark(&self, seq: u64) -> u64 {
        seq.saturating_sub(self.unsynced)
    }
}

/// How one entry line is framed: the file's version, the sequence number and, in version 2, the
/// marks (ignored in version 1, whose lines carry none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Frame {
    /// The version of the file the line goes to.
    pub version: Version,
    /// Sequence number, at most [`MAX_SEQ`].
    pub seq: u64,
    /// Time and write marks (version 2).
    pub marks: Marks,
}

impl Frame {
    /// A version-1 frame.
    #[must_use]
    pub fn v1(seq: u64) -> Self {
        Self {
            version: Version::V1,
            seq,
            marks: Marks::default(),
        }
    }

    /// A version-2 frame.
    #[must_use]
    pub fn v2(seq: u64, marks: Marks) -> Self {
        Self {
            version: Version::V2,
            seq,
            marks,
        }
    }
}

/// Why a line could not be encoded. Nothing was written to the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EncodeError {
    /// The line would exceed [`MAX_LINE`].
    TooLong {
        /// Its length, newline included.
        size: usize,
    },
    /// The sequence number is above [`MAX_SEQ`]: the segment is full.
    SeqOutOfRange {
        /// The sequence number asked for.
        seq: u64,
    },
    /// The marks cannot be a writer's: `u` above `seq`, or `more` not below [`MAX_WRITE_LINES`].
    BadMarks,
    /// The blob reference did not serialize.
    BadReference,
}

impl std::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooLong { size } => write!(f, "line of {size} bytes exceeds {MAX_LINE}"),
            Self::SeqOutOfRange { seq } => {
                write!(f, "sequence number {seq} is past the last one, {MAX_SEQ}")
            }
            Self::BadMarks => f.write_str("u above seq, or more not below 1024"),
            Self::BadReference => f.write_str("blob reference does not serialize"),
        }
    }
}

impl std::error::Error for EncodeError {}

impl EncodeError {
    /// As the store reports it: a line too long is an entry too large (only an entry can make
    /// one); a sequence number past [`MAX_SEQ`] is a full segment.
    pub(crate) fn into_error(self) -> crate::Error {
        match self {
            Self::TooLong { size } => crate::Error::EntryTooLarge {
                size,
                limit: MAX_LINE,
            },
            Self::SeqOutOfRange { .. } | Self::BadMarks | Self::BadReference => crate::Error::Io {
                op: "frame a line for",
                path: std::path::PathBuf::new(),
                source: std::io::Error::new(std::io::ErrorKind::FileTooLarge, self),
            },
        }
    }
}

/// What a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    /// A segment log.
    Segment,
    /// A segment's debug event trace.
    Trace,
    /// A session's attachment index (`attachments.jsonl`; its header's segment is the nil id).
    Attachments,
}

/// Where a forked segment came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lineage {
    /// The segment it was forked from (same session).
    pub segment: SegmentId,
    /// How many entries of the source it starts with: the fork point.
    pub at: u64,
}

/// The first line of every file: format version, identity, rewrite generation and lineage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Format version ([`Version::number`]); fixed when the file is created.
    pub annals: u64,
    /// What the file holds.
    pub kind: FileKind,
    /// The session the file belongs to.
    pub session: SessionId,
    /// The segment the file belongs to.
    pub segment: SegmentId,
    /// Incremented by every rewrite (truncate, repair); 0 for a fresh segment.
    pub generation: u64,
    /// When this segment was created, milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// Set on a segment made by a fork.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fork: Option<Lineage>,
}

impl Header {
    /// The header's version, if this build reads it.
    #[must_use]
    pub fn version(&self) -> Option<Version> {
        Version::from_number(self.annals)
    }
}

/// Appends the entry line of `json` (compact JSON text, no newline) framed by `frame` to `out`.
/// Returns the line's length, newline included. O(line); no allocation beyond `out` growing.
///
/// # Errors
/// [`EncodeError`]; `out` is then left as it was.
pub fn encode_entry(frame: &Frame, json: &str, out: &mut Vec<u8>) -> Result<usize, EncodeError> {
    let start = begin_entry_line(frame, ENTRY_KEY, out)?;
    out.extend_from_slice(json.as_bytes());
    out.push(b'}');
    finish_line(out, start)
}

/// Appends the line of an entry kept as a blob. Returns the line's length.
///
/// # Errors
/// [`EncodeError`] (not [`EncodeError::TooLong`] for references annals makes: their head is
/// bounded); `out` is then left as it was.
pub fn encode_blob(
    frame: &Frame,
    reference: &BlobRef,
    out: &mut Vec<u8>,
) -> Result<usize, EncodeError> {
    let start = begin_entry_line(frame, BLOB_KEY, out)?;
    if serde_json::to_writer(&mut *out, reference).is_err() {
        out.truncate(start);
        return Err(EncodeError::BadReference);
    }
    out.push(b'}');
    finish_line(out, start)
}

/// Appends a header line to `out`. Returns the line's length.
///
/// # Errors
/// [`EncodeError::TooLong`] if the header line exceeds [`MAX_LINE`] (cannot happen for headers
/// annals makes).
pub fn encode_header(header: &Header, out: &mut Vec<u8>) -> Result<usize, EncodeError> {
    let start = out.len();
    out.extend_from_slice(CRC_OPEN);
    out.extend_from_slice(b"00000000");
    out.extend_from_slice(CRC_CLOSE);
    // The derived serializer emits `{"annals":..` first; drop its `{`, keep the rest.
    let body = match serde_json::to_vec(header) {
        Ok(body) => body,
        Err(_) => {
            out.truncate(start);
            return Err(EncodeError::BadReference);
        }
    };
    out.extend_from_slice(body.get(1..).unwrap_or_default());
    finish_line(out, start)
}

/// Appends `line`, a version-2 entry line (without its newline) that checked out as `entry`,
/// to `out` with its `more` set to `more` and every other byte as it was: truncate and fork keep
/// the first lines of a write, which must then end a write of their own. Returns the new line's
/// length, newline included.
///
/// # Errors
/// [`EncodeError::BadMarks`] if `entry` has no marks (a version-1 line) or `more` is not below
/// [`MAX_WRITE_LINES`]; `out` is then left as it was.
pub(crate) fn reframe(
    line: &[u8],
    entry: &decode::EntryLine,
    more: u64,
    out: &mut Vec<u8>,
) -> Result<usize, EncodeError> {
    let marks = entry.marks.ok_or(EncodeError::BadMarks)?;
    let frame = Frame::v2(entry.seq, Marks { more, ..marks });
    let key = if entry.is_blob { BLOB_KEY } else { ENTRY_KEY };
    let start = begin_entry_line(&frame, key, out)?;
    out.extend_from_slice(line.get(entry.body.clone()).unwrap_or_default());
    out.push(b'}');
    finish_line(out, start)
}

/// Writes `{"crc":"00000000","seq":N`, the marks of a version-2 frame, and `key` (the CRC is
/// filled in by [`finish_line`]). Returns where the line starts.
fn begin_entry_line(frame: &Frame, key: &[u8], out: &mut Vec<u8>) -> Result<usize, EncodeError> {
    if frame.seq > MAX_SEQ {
        return Err(EncodeError::SeqOutOfRange { seq: frame.seq });
    }
    let marks = frame.marks;
    if frame.version.has_marks() && (marks.unsynced > frame.seq || marks.more >= MAX_WRITE_LINES) {
        return Err(EncodeError::BadMarks);
    }
    let start = out.len();
    out.extend_from_slice(CRC_OPEN);
    out.extend_from_slice(b"00000000");
    out.extend_from_slice(CRC_CLOSE);
    out.extend_from_slice(SEQ_KEY);
    push_decimal(out, frame.seq);
    if frame.version.has_marks() {
        out.extend_from_slice(TIME_KEY);
        push_decimal(out, marks.appended_ms);
        if marks.unsynced > 0 {
            out.extend_from_slice(UNSYNCED_KEY);
            push_decimal(out, marks.unsynced);
        }
        if marks.more > 0 {
            out.extend_from_slice(MORE_KEY);
            push_decimal(out, marks.more);
        }
    }
    out.extend_from_slice(key);
    Ok(start)
}

fn finish_line(out: &mut Vec<u8>, start: usize) -> Result<usize, EncodeError> {
    let len = out.len() - start + 1;
    if len > MAX_LINE {
        out.truncate(start);
        return Err(EncodeError::TooLong { size: len });
    }
    let covered = out.get(start + PREFIX_LEN..).unwrap_or_default();
    let crc = crc32fast::hash(covered);
    if let Some(slot) = out.get_mut(start + CRC_OPEN.len()..start + CRC_OPEN.len() + 8) {
        write_hex(slot, crc);
    }
    out.push(b'\n');
    Ok(len)
}

fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; U64_DIGITS];
    let mut i = digits.len();
    loop {
        i -= 1;
        let digit = (n % 10) as u8;
        if let Some(d) = digits.get_mut(i) {
            *d = b'0' + digit;
        }
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(i..).unwrap_or_default());
}

fn write_hex(slot: &mut [u8], crc: u32) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in slot.iter_mut().enumerate() {
        let shift = 28 - 4 * i;
        *b = HEX
            .get(((crc >> shift) & 0xf) as usize)
            .copied()
            .unwrap_or(b'0');
    }
}

/// Removes JSON whitespace outside strings, so that JSON text fits on one line. Returns `None`
/// if the text has nothing to remove.
#[must_use]
pub(crate) fn minify(json: &str) -> Option<String> {
    if !json
        .bytes()
        .any(|b| matches!(b, b'\n' | b'\r' | b' ' | b'\t'))
    {
        return None;
    }
    let mut out = String::with_capacity(json.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in json.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\n' | '\r' | '\t') {
            out.push(c);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests;
