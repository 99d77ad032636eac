//! The line codec: frames entries and headers into lines, and checks lines. Bytes in, bytes or a
//! typed outcome out.
//!
//! **Invariant:** this module does no I/O. Everything that touches a file lives in `fs/`.
//!
//! A line is `{"crc":"xxxxxxxx",` (18 bytes, fixed) followed by the *covered* bytes and a `\n`.
//! The CRC-32 (IEEE) is computed over the covered bytes exactly as written, so a reader checks a
//! line without parsing JSON. Entry lines continue `"seq":N,"e":ENTRY}`; the header line (line 1
//! of every file) continues `"annals":VERSION,...}`. See docs/FORMAT.md.

use serde::{Deserialize, Serialize};

use crate::blob::BlobRef;
use crate::error::CorruptReason;
use crate::{SegmentId, SessionId};

/// Largest line annals writes or accepts, newline included: `PIPE_BUF` on Linux.
pub const MAX_LINE: usize = 4096;

/// The on-disk format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

const CRC_OPEN: &[u8] = b"{\"crc\":\"";
const CRC_CLOSE: &[u8] = b"\",";
/// Length of the fixed prefix `{"crc":"xxxxxxxx",` that precedes the covered bytes.
pub const PREFIX_LEN: usize = 18;
const SEQ_KEY: &[u8] = b"\"seq\":";
const ENTRY_KEY: &[u8] = b",\"e\":";
const HEADER_KEY: &[u8] = b"\"annals\":";
const BLOB_KEY: &[u8] = b",\"blob\":";

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
    /// Format version; always [`FORMAT_VERSION`] when written by this build.
    pub annals: u64,
    /// What the file holds.
    pub kind: FileKind,
    /// The session the file belongs to.
    pub session: SessionId,
    /// The segment the file belongs to.
    pub segment: SegmentId,
    /// Incremented by every rewrite (truncate); 0 for a fresh segment.
    pub generation: u64,
    /// When this segment was created, milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// Set on a segment made by a fork.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fork: Option<Lineage>,
}

/// A decoded line: borrowed from the buffer it was decoded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line<'a> {
    /// The header (first line of a file).
    Header(Header),
    /// An entry with its sequence number and its JSON text.
    Entry {
        /// Sequence number.
        seq: u64,
        /// The entry's JSON text, exactly as appended.
        json: &'a str,
    },
    /// An entry kept as a blob: the line holds a reference to it.
    Blob {
        /// Sequence number.
        seq: u64,
        /// Where the entry is.
        reference: BlobRef,
    },
}

/// An entry line whose CRC and shape check out: its sequence number and where its body is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryLine {
    /// Sequence number.
    pub seq: u64,
    /// Byte range of the body within the line: the entry's JSON text, or for a blob line the
    /// reference object.
    pub body: std::ops::Range<usize>,
    /// True for a blob line (`"blob":{...}` instead of `"e":...`).
    pub is_blob: bool,
}

/// Encodes the entry line for `seq` and `json` (compact JSON, no newline) onto `out`.
/// Returns the line's length. On `Err`, `out` is left as it was.
///
/// # Errors
/// `Err(size)` with the size the line would have if it exceeds [`MAX_LINE`].
pub fn encode_entry(seq: u64, json: &str, out: &mut Vec<u8>) -> Result<usize, usize> {
    let start = begin_entry_line(seq, ENTRY_KEY, out);
    out.extend_from_slice(json.as_bytes());
    out.push(b'}');
    finish_line(out, start)
}

/// Encodes the line of an entry kept as a blob. Returns the line's length. On `Err`, `out` is
/// left as it was.
///
/// # Errors
/// `Err(size)` if the line exceeds [`MAX_LINE`] (not for references annals makes: their head is
/// bounded).
pub fn encode_blob(seq: u64, reference: &BlobRef, out: &mut Vec<u8>) -> Result<usize, usize> {
    let start = begin_entry_line(seq, BLOB_KEY, out);
    if serde_json::to_writer(&mut *out, reference).is_err() {
        out.truncate(start);
        return Err(usize::MAX);
    }
    out.push(b'}');
    finish_line(out, start)
}

/// Longest entry JSON kept inline in its line whatever its sequence number: 4096 minus the
/// line's overhead with a 20-digit sequence number. Longer entries are kept as blobs, so the
/// choice never depends on where in the segment an entry lands.
pub const MAX_INLINE: usize = MAX_LINE - (PREFIX_LEN + SEQ_KEY.len() + 20 + ENTRY_KEY.len() + 2);

/// Encodes a header line onto `out`. Returns the line's length.
///
/// # Errors
/// `Err(size)` if the header line exceeds [`MAX_LINE`] (cannot happen for headers annals makes).
pub fn encode_header(header: &Header, out: &mut Vec<u8>) -> Result<usize, usize> {
    let start = out.len();
    out.extend_from_slice(CRC_OPEN);
    out.extend_from_slice(b"00000000");
    out.extend_from_slice(CRC_CLOSE);
    // The derived serializer emits `{"annals":..` first; drop its `{`, keep the rest.
    let body = match serde_json::to_vec(header) {
        Ok(body) => body,
        Err(_) => {
            out.truncate(start);
            return Err(usize::MAX);
        }
    };
    out.extend_from_slice(body.get(1..).unwrap_or_default());
    finish_line(out, start)
}

/// Writes `{"crc":"00000000","seq":N` and `key` (the CRC is filled in by [`finish_line`]).
/// Returns where the line starts.
fn begin_entry_line(seq: u64, key: &[u8], out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(CRC_OPEN);
    out.extend_from_slice(b"00000000");
    out.extend_from_slice(CRC_CLOSE);
    out.extend_from_slice(SEQ_KEY);
    push_decimal(out, seq);
    out.extend_from_slice(key);
    start
}

fn finish_line(out: &mut Vec<u8>, start: usize) -> Result<usize, usize> {
    let len = out.len() - start + 1;
    if len > MAX_LINE {
        out.truncate(start);
        return Err(len);
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
    let mut digits = [0u8; 20];
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

fn parse_hex(hex: &[u8]) -> Option<u32> {
    let mut v: u32 = 0;
    for &b in hex {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => return None,
        };
        v = (v << 4) | u32::from(d);
    }
    Some(v)
}

/// Parses a JSON unsigned integer at the start of `s` (no sign, no leading zeros).
/// Returns the value and the number of bytes it took.
fn parse_decimal(s: &[u8]) -> Option<(u64, usize)> {
    let n = s.iter().take_while(|b| b.is_ascii_digit()).count();
    if n == 0 || n > 20 || (n > 1 && s.first() == Some(&b'0')) {
        return None;
    }
    let mut v: u64 = 0;
    for &b in s.get(..n)? {
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some((v, n))
}

/// Checks the line's CRC and returns its covered bytes. `line` excludes the newline.
///
/// # Errors
/// A [`CorruptReason`] if the prefix is malformed or the CRC does not match.
pub fn check_crc(line: &[u8]) -> Result<&[u8], CorruptReason> {
    if line.len() + 1 > MAX_LINE {
        return Err(CorruptReason::TooLong {
            len: line.len() as u64,
        });
    }
    let (prefix, covered) = match (line.get(..PREFIX_LEN), line.get(PREFIX_LEN..)) {
        (Some(p), Some(c)) => (p, c),
        _ => return Err(CorruptReason::BadPrefix),
    };
    if !prefix.starts_with(CRC_OPEN) || !prefix.ends_with(CRC_CLOSE) {
        return Err(CorruptReason::BadPrefix);
    }
    let stored = prefix
        .get(CRC_OPEN.len()..CRC_OPEN.len() + 8)
        .and_then(parse_hex)
        .ok_or(CorruptReason::BadPrefix)?;
    let computed = crc32fast::hash(covered);
    if stored != computed {
        return Err(CorruptReason::CrcMismatch { stored, computed });
    }
    Ok(covered)
}

/// Checks CRC and shape of an entry line and returns its sequence number and the byte range of
/// its body, without validating UTF-8 or JSON. This is the verify-only fast path. For a blob
/// line the range covers the reference object.
///
/// # Errors
/// A [`CorruptReason`] naming what is wrong.
pub fn check_entry(line: &[u8]) -> Result<(u64, std::ops::Range<usize>), CorruptReason> {
    check_entry_line(line).map(|e| (e.seq, e.body))
}

/// Checks CRC and shape of an entry line (inline or blob); see [`check_entry`].
///
/// # Errors
/// A [`CorruptReason`] naming what is wrong.
pub fn check_entry_line(line: &[u8]) -> Result<EntryLine, CorruptReason> {
    let covered = check_crc(line)?;
    if covered.starts_with(HEADER_KEY) {
        return Err(CorruptReason::UnexpectedHeader);
    }
    let rest = covered
        .strip_prefix(SEQ_KEY)
        .ok_or(CorruptReason::Malformed("no \"seq\" after the CRC"))?;
    let (seq, n) = parse_decimal(rest).ok_or(CorruptReason::Malformed("bad sequence number"))?;
    let after_seq = rest.get(n..).unwrap_or_default();
    let (after, key_len, is_blob) = if let Some(after) = after_seq.strip_prefix(ENTRY_KEY) {
        (after, ENTRY_KEY.len(), false)
    } else if let Some(after) = after_seq.strip_prefix(BLOB_KEY) {
        (after, BLOB_KEY.len(), true)
    } else {
        return Err(CorruptReason::Malformed(
            "no \"e\" or \"blob\" after the sequence number",
        ));
    };
    if after.len() < 2 || after.last() != Some(&b'}') {
        return Err(CorruptReason::Malformed("entry is not closed by '}'"));
    }
    let start = PREFIX_LEN + SEQ_KEY.len() + n + key_len;
    Ok(EntryLine {
        seq,
        body: start..line.len() - 1,
        is_blob,
    })
}

/// Decodes one line (without its newline): header or entry. Entries are checked for CRC, shape
/// and UTF-8; their JSON is not parsed.
///
/// # Errors
/// A [`CorruptReason`] naming what is wrong.
pub fn decode_line(line: &[u8]) -> Result<Line<'_>, CorruptReason> {
    let covered = check_crc(line)?;
    if covered.starts_with(HEADER_KEY) {
        return decode_header_covered(covered).map(Line::Header);
    }
    let entry = check_entry_line(line)?;
    let bytes = line
        .get(entry.body)
        .ok_or(CorruptReason::Malformed("entry range"))?;
    if entry.is_blob {
        let reference = serde_json::from_slice(bytes)
            .map_err(|_| CorruptReason::Malformed("bad blob reference"))?;
        return Ok(Line::Blob {
            seq: entry.seq,
            reference,
        });
    }
    let json =
        std::str::from_utf8(bytes).map_err(|_| CorruptReason::Malformed("entry is not UTF-8"))?;
    Ok(Line::Entry {
        seq: entry.seq,
        json,
    })
}

/// Decodes a header line (without its newline).
///
/// # Errors
/// [`CorruptReason::BadHeader`] if it is not a header annals can read; the version is checked
/// by the caller so that it can report [`Error::UnsupportedVersion`](crate::Error).
pub fn decode_header(line: &[u8]) -> Result<Header, CorruptReason> {
    let covered = check_crc(line)?;
    if !covered.starts_with(HEADER_KEY) {
        return Err(CorruptReason::BadHeader(
            "first line is not a header".into(),
        ));
    }
    decode_header_covered(covered)
}

fn decode_header_covered(covered: &[u8]) -> Result<Header, CorruptReason> {
    let mut object = Vec::with_capacity(covered.len() + 1);
    object.push(b'{');
    object.extend_from_slice(covered);
    // Read the version alone first, so that a future header layout is reported as a version
    // problem and not as a parse error.
    #[derive(Deserialize)]
    struct Version {
        annals: u64,
    }
    let version: Version = serde_json::from_slice(&object)
        .map_err(|e| CorruptReason::BadHeader(format!("no readable version: {e}")))?;
    if version.annals != u64::from(FORMAT_VERSION) {
        return Ok(Header {
            annals: version.annals,
            kind: FileKind::Segment,
            session: SessionId::from_uuid(uuid::Uuid::nil()),
            segment: SegmentId::from_uuid(uuid::Uuid::nil()),
            generation: 0,
            created_ms: 0,
            fork: None,
        });
    }
    serde_json::from_slice(&object).map_err(|e| CorruptReason::BadHeader(e.to_string()))
}

/// Could these unterminated bytes at the end of a file be the beginning of a line annals was
/// writing when it crashed? (A prefix of some valid line, no longer than a line can be.)
#[must_use]
pub fn is_plausible_torn_tail(tail: &[u8]) -> bool {
    if tail.len() >= MAX_LINE {
        return false;
    }
    let n = tail.len().min(CRC_OPEN.len());
    tail.get(..n) == CRC_OPEN.get(..n)
}

/// Removes JSON whitespace outside strings, so that JSON text fits on one line. Returns `None`
/// if the text has nothing to remove.
#[must_use]
pub fn minify(json: &str) -> Option<String> {
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
