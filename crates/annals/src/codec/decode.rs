//! Checking and decoding lines: the readers' half of the codec. Not public API (the fuzz
//! targets reach it through the hidden `annals::unstable` module). Pure, and no allocation for
//! an entry line; a header line allocates only to describe what is wrong with it.

use std::ops::Range;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{
    FileKind, Header, Lineage, Marks, Version, BLOB_KEY, CRC_CLOSE, CRC_OPEN, ENTRY_KEY,
    HEADER_KEY, MAX_LINE, MAX_SEQ, MAX_WRITE_LINES, MORE_KEY, SEQ_KEY, TIME_KEY, UNSYNCED_KEY,
};
use crate::blob::BlobRef;
use crate::error::{CorruptReason, HeaderProblem};
use crate::{SegmentId, SessionId};

/// Length of the fixed prefix `{"crc":"xxxxxxxx",` that precedes the covered bytes.
pub const PREFIX_LEN: usize = 18;

/// A decoded line, borrowed from the buffer it was decoded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line<'a> {
    /// The header (first line of a file).
    Header(Header),
    /// An entry kept in its line.
    Entry {
        /// Sequence number.
        seq: u64,
        /// Time and write marks (version 2), `None` in version 1.
        marks: Option<Marks>,
        /// The entry's JSON text, exactly as appended.
        json: &'a str,
    },
    /// An entry kept as a blob: the line holds a reference to it.
    Blob {
        /// Sequence number.
        seq: u64,
        /// Time and write marks (version 2), `None` in version 1.
        marks: Option<Marks>,
        /// Where the entry is.
        reference: BlobRef,
    },
}

/// An entry line whose CRC and shape check out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryLine {
    /// Sequence number.
    pub seq: u64,
    /// Time and write marks (version 2), `None` in version 1.
    pub marks: Option<Marks>,
    /// Byte range of the body within the line: the entry's JSON text, or for a blob line the
    /// reference object.
    pub body: Range<usize>,
    /// True for a blob line (`"blob":{...}` instead of `"e":...`).
    pub is_blob: bool,
}

/// Checks the line's CRC and returns its covered bytes. `line` excludes the newline.
///
/// # Errors
/// [`CorruptReason::TooLong`], [`CorruptReason::BadPrefix`], [`CorruptReason::CrcMismatch`].
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

/// Checks CRC and shape of an entry line of either version (told apart by what follows `seq`)
/// and returns its sequence number and the byte range of its body, without validating UTF-8 or
/// JSON. For probes that need only the sequence number.
///
/// # Errors
/// A [`CorruptReason`] naming what is wrong.
pub fn check_entry(line: &[u8]) -> Result<(u64, Range<usize>), CorruptReason> {
    check_entry_line(line).map(|e| (e.seq, e.body))
}

/// [`check_entry`] with the marks: an entry line of either version.
///
/// # Errors
/// A [`CorruptReason`] naming what is wrong.
pub fn check_entry_line(line: &[u8]) -> Result<EntryLine, CorruptReason> {
    let covered = check_crc(line)?;
    let version = match covered_seq_end(covered) {
        Some(rest) if rest.starts_with(TIME_KEY) => Version::V2,
        _ => Version::V1,
    };
    parse_entry(covered, version)
}

/// Checks CRC and shape of an entry line of a file of `version` (a line of another version's
/// shape is malformed there) and returns its fields, without validating UTF-8 or JSON: the
/// verify path. For a blob line the body range covers the reference object.
///
/// # Errors
/// A [`CorruptReason`] naming what is wrong.
pub fn check_line_as(version: Version, line: &[u8]) -> Result<EntryLine, CorruptReason> {
    parse_entry(check_crc(line)?, version)
}

/// The bytes after `"seq":DIGITS`, if the covered bytes start that way.
fn covered_seq_end(covered: &[u8]) -> Option<&[u8]> {
    let rest = covered.strip_prefix(SEQ_KEY)?;
    let n = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    rest.get(n..)
}

/// Parses the covered bytes of an entry line (CRC already checked).
fn parse_entry(covered: &[u8], version: Version) -> Result<EntryLine, CorruptReason> {
    if covered.starts_with(HEADER_KEY) {
        return Err(CorruptReason::UnexpectedHeader);
    }
    let rest = covered
        .strip_prefix(SEQ_KEY)
        .ok_or(CorruptReason::Malformed("no \"seq\" after the CRC"))?;
    let (seq, n) = parse_decimal(rest).ok_or(CorruptReason::Malformed("bad sequence number"))?;
    if seq > MAX_SEQ {
        return Err(CorruptReason::Malformed(
            "sequence number 18446744073709551615 is past the last one (2^64 - 2)",
        ));
    }
    let mut rest = rest.get(n..).unwrap_or_default();
    let marks = if version.has_marks() {
        let (marks, after) = parse_marks(rest, seq)?;
        rest = after;
        Some(marks)
    } else {
        None
    };
    let (after, key_len, is_blob) = if let Some(after) = rest.strip_prefix(ENTRY_KEY) {
        (after, ENTRY_KEY.len(), false)
    } else if let Some(after) = rest.strip_prefix(BLOB_KEY) {
        (after, BLOB_KEY.len(), true)
    } else {
        return Err(CorruptReason::Malformed(if version.has_marks() {
            "no \"e\" or \"blob\" after the marks"
        } else {
            "no \"e\" or \"blob\" after the sequence number"
        }));
    };
    if after.len() < 2 || after.last() != Some(&b'}') {
        return Err(CorruptReason::Malformed("entry is not closed by '}'"));
    }
    // Everything before the body: prefix + the bytes consumed from `covered` + the key.
    let start = PREFIX_LEN + (covered.len() - after.len() - key_len) + key_len;
    let end = PREFIX_LEN + covered.len() - 1;
    Ok(EntryLine {
        seq,
        marks,
        body: start..end,
        is_blob,
    })
}

/// Parses `,"t":T[,"u":U][,"more":M]` of a version-2 line. `u` and `more` have one spelling:
/// absent when 0, so an explicit 0 is malformed.
fn parse_marks(rest: &[u8], seq: u64) -> Result<(Marks, &[u8]), CorruptReason> {
    let after = rest.strip_prefix(TIME_KEY).ok_or(CorruptReason::Malformed(
        "no \"t\" after the sequence number",
    ))?;
    let (appended_ms, n) =
        parse_decimal(after).ok_or(CorruptReason::Malformed("bad append time \"t\""))?;
    let mut rest = after.get(n..).unwrap_or_default();
    let mut marks = Marks {
        appended_ms,
        unsynced: 0,
        more: 0,
    };
    if let Some(after) = rest.strip_prefix(UNSYNCED_KEY) {
        let (u, n) = parse_decimal(after).ok_or(CorruptReason::Malformed("bad \"u\""))?;
        if u == 0 {
            return Err(CorruptReason::Malformed(
                "\"u\":0 is written by leaving \"u\" out",
            ));
        }
        if u > seq {
            return Err(CorruptReason::Malformed(
                "\"u\" is larger than the sequence number",
            ));
        }
        marks.unsynced = u;
        rest = after.get(n..).unwrap_or_default();
    }
    if let Some(after) = rest.strip_prefix(MORE_KEY) {
        let (more, n) = parse_decimal(after).ok_or(CorruptReason::Malformed("bad \"more\""))?;
        if more == 0 {
            return Err(CorruptReason::Malformed(
                "\"more\":0 is written by leaving \"more\" out",
            ));
        }
        if more >= MAX_WRITE_LINES {
            return Err(CorruptReason::Malformed(
                "\"more\" says a write has more than 1024 lines",
            ));
        }
        marks.more = more;
        rest = after.get(n..).unwrap_or_default();
    }
    Ok((marks, rest))
}

/// Decodes one line (without its newline) of a file of `version`: header or entry. Entries are
/// checked for CRC, shape and UTF-8; their JSON is not parsed.
///
/// # Errors
/// A [`CorruptReason`] naming what is wrong.
pub fn decode_line(line: &[u8], version: Version) -> Result<Line<'_>, CorruptReason> {
    let covered = check_crc(line)?;
    if covered.starts_with(HEADER_KEY) {
        return decode_header_checked(line, covered).map(Line::Header);
    }
    let entry = parse_entry(covered, version)?;
    let bytes = line
        .get(entry.body)
        .ok_or(CorruptReason::Malformed("entry range"))?;
    if entry.is_blob {
        let reference = parse_reference(bytes)?;
        return Ok(Line::Blob {
            seq: entry.seq,
            marks: entry.marks,
            reference,
        });
    }
    Ok(Line::Entry {
        seq: entry.seq,
        marks: entry.marks,
        json: utf8(bytes)?,
    })
}

/// The entry's text, if it is UTF-8. Checked once per line, with a SIMD validator.
///
/// # Errors
/// [`CorruptReason::Malformed`] if it is not.
pub fn utf8(bytes: &[u8]) -> Result<&str, CorruptReason> {
    simdutf8::basic::from_utf8(bytes).map_err(|_| CorruptReason::Malformed("entry is not UTF-8"))
}

/// The blob reference of a blob line's body.
///
/// # Errors
/// [`CorruptReason::Malformed`] if it does not parse.
pub fn parse_reference(bytes: &[u8]) -> Result<BlobRef, CorruptReason> {
    serde_json::from_slice(bytes).map_err(|_| CorruptReason::Malformed("bad blob reference"))
}

/// Decodes a header line (without its newline). A header of a version this build does not know
/// decodes to a [`Header`] with that `annals` and nothing else filled in (nil ids, zeros): only
/// the version is assumed to stay where it is, so that the caller can report
/// [`Error::UnsupportedVersion`](crate::Error) rather than a parse error.
///
/// # Errors
/// The CRC check's reasons, or [`CorruptReason::BadHeader`] saying what is wrong.
pub fn decode_header(line: &[u8]) -> Result<Header, CorruptReason> {
    let covered = check_crc(line)?;
    decode_header_checked(line, covered)
}

/// The fields of a header as they stand in the line, borrowed (no allocation unless one is
/// wrong). Unknown fields (`crc` among them) are ignored.
#[derive(Deserialize)]
struct RawHeader<'a> {
    #[serde(borrow)]
    kind: Option<&'a RawValue>,
    #[serde(borrow)]
    session: Option<&'a RawValue>,
    #[serde(borrow)]
    segment: Option<&'a RawValue>,
    #[serde(borrow)]
    generation: Option<&'a RawValue>,
    #[serde(borrow)]
    created_ms: Option<&'a RawValue>,
    #[serde(borrow, default)]
    fork: Option<&'a RawValue>,
}

fn decode_header_checked(line: &[u8], covered: &[u8]) -> Result<Header, CorruptReason> {
    let bad = |p| CorruptReason::BadHeader(p);
    let after = covered
        .strip_prefix(HEADER_KEY)
        .ok_or(bad(HeaderProblem::NotAHeader))?;
    let (annals, _) = parse_decimal(after).ok_or(bad(HeaderProblem::NoVersion))?;
    if Version::from_number(annals).is_none() {
        return Ok(Header {
            annals,
            kind: FileKind::Segment,
            session: SessionId::from_uuid(uuid::Uuid::nil()),
            segment: SegmentId::from_uuid(uuid::Uuid::nil()),
            generation: 0,
            created_ms: 0,
            fork: None,
        });
    }
    // The whole line is a JSON object, `crc` included.
    let raw: RawHeader<'_> = serde_json::from_slice(line).map_err(|e| {
        bad(HeaderProblem::Syntax {
            column: e.column() as u64,
            message: e.to_string(),
        })
    })?;
    Ok(Header {
        annals,
        kind: field(
            raw.kind,
            "kind",
            "\"segment\", \"trace\" or \"attachments\"",
        )?,
        session: field(raw.session, "session", "a session id (UUID)")?,
        segment: field(raw.segment, "segment", "a segment id (UUID)")?,
        generation: field(raw.generation, "generation", "an unsigned integer")?,
        created_ms: field(raw.created_ms, "created_ms", "milliseconds since the epoch")?,
        fork: match raw.fork {
            None => None,
            Some(raw) => Some(field::<Lineage>(
                Some(raw),
                "fork",
                "{\"segment\": SEGMENT, \"at\": N}",
            )?),
        },
    })
}

fn field<'a, T: Deserialize<'a>>(
    raw: Option<&'a RawValue>,
    name: &'static str,
    expected: &'static str,
) -> Result<T, CorruptReason> {
    let raw = raw.ok_or(CorruptReason::BadHeader(HeaderProblem::MissingField(name)))?;
    serde_json::from_str(raw.get()).map_err(|_| {
        CorruptReason::BadHeader(HeaderProblem::BadField {
            field: name,
            expected,
            found: prefix_of(raw.get(), 80).to_owned(),
        })
    })
}

/// The longest prefix of `text` of at most `max` bytes that ends at a character boundary.
pub(crate) fn prefix_of(text: &str, max: usize) -> &str {
    let end = text.len().min(max);
    // A UTF-8 character is at most 4 bytes, so a boundary is at most 3 bytes back: a bounded
    // search rather than a loop that a wrong step could make endless.
    let cut = (end.saturating_sub(3)..=end)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    text.get(..cut).unwrap_or_default()
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

/// Parses a JSON unsigned integer at the start of `s` (no sign, no leading zeros) that fits a
/// `u64`. Returns the value and the number of bytes it took.
pub(crate) fn parse_decimal(s: &[u8]) -> Option<(u64, usize)> {
    let n = s.iter().take_while(|b| b.is_ascii_digit()).count();
    if n == 0 || n > super::U64_DIGITS || (n > 1 && s.first() == Some(&b'0')) {
        return None;
    }
    let mut v: u64 = 0;
    for &b in s.get(..n)? {
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some((v, n))
}
