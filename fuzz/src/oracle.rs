//! An independent reading of the line format (docs/FORMAT.md), written from the specification
//! rather than from `annals::codec`, so that the fuzz targets compare two implementations
//! instead of asking the library whether it agrees with itself.

/// `{"crc":"` — the fixed start of every line.
pub const CRC_OPEN: &[u8] = b"{\"crc\":\"";
/// Length of `{"crc":"xxxxxxxx",`, the part of a line the CRC does not cover.
pub const PREFIX_LEN: usize = 18;
/// Largest line, newline included.
pub const MAX_LINE: usize = 4096;

/// The eight lowercase hex digits a line stores for `crc`.
#[must_use]
pub fn hex8(crc: u32) -> [u8; 8] {
    let mut out = [0u8; 8];
    out.copy_from_slice(format!("{crc:08x}").as_bytes());
    out
}

/// Is `line` (without its newline) framed correctly: within the size limit, the fixed prefix,
/// and a stored CRC in canonical lowercase hex equal to the CRC-32 of every byte after the
/// prefix?
#[must_use]
pub fn frame_ok(line: &[u8]) -> bool {
    line.len() < MAX_LINE
        && line.len() >= PREFIX_LEN
        && line.starts_with(CRC_OPEN)
        && &line[16..18] == b"\","
        && line[8..16] == hex8(crc32fast::hash(&line[PREFIX_LEN..]))
}

/// The covered bytes of a line, if its frame is intact.
#[must_use]
pub fn covered(line: &[u8]) -> Option<&[u8]> {
    frame_ok(line).then(|| &line[PREFIX_LEN..])
}

/// Does the frame hold a header (`"annals":` right after the prefix)?
#[must_use]
pub fn is_header_shaped(line: &[u8]) -> bool {
    covered(line).is_some_and(|c| c.starts_with(b"\"annals\":"))
}

/// What follows the sequence number of an entry line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body<'a> {
    /// `,"e":JSON`: the entry itself.
    Inline(&'a [u8]),
    /// `,"blob":{...}`: a reference to the blob that holds the entry.
    Blob(&'a [u8]),
}

impl<'a> Body<'a> {
    /// The bytes after the key, before the closing `}`.
    #[must_use]
    pub fn bytes(self) -> &'a [u8] {
        match self {
            Body::Inline(b) | Body::Blob(b) => b,
        }
    }
}

/// The largest sequence number a line may carry: 2^64 − 2.
pub const MAX_SEQ: u64 = u64::MAX - 1;

/// What a version-2 line says besides its entry: `t`, `u`, `more`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Marks {
    /// `t`.
    pub t: u64,
    /// `u` (0 when left out).
    pub u: u64,
    /// `more` (0 when left out).
    pub more: u64,
}

/// A JSON unsigned integer at the start of `s` that fits a `u64`: no sign, no leading zero.
fn number(s: &[u8]) -> Option<(u64, &[u8])> {
    let digits = s.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || (digits > 1 && s[0] == b'0') {
        return None;
    }
    let n = std::str::from_utf8(&s[..digits])
        .ok()?
        .parse::<u64>()
        .ok()?;
    Some((n, &s[digits..]))
}

/// `,"KEY":N` at the start of `s`, N not 0 (a 0 is written by leaving the key out).
fn optional<'a>(s: &'a [u8], key: &str) -> Option<(u64, &'a [u8])> {
    let prefix = format!(",\"{key}\":");
    match s.strip_prefix(prefix.as_bytes()) {
        None => Some((0, s)),
        Some(rest) => number(rest).filter(|(n, _)| *n != 0),
    }
}

/// Parses an entry line: `{"crc":"..","seq":N,"e":JSON}` or `{"crc":"..","seq":N,"blob":REF}`,
/// with N a JSON unsigned integer no larger than [`MAX_SEQ`] and the body non-empty. The body is
/// not validated (the format promises only what the CRC protects). Version 1.
#[must_use]
pub fn parse_entry(line: &[u8]) -> Option<(u64, Body<'_>)> {
    parse_entry_as(false, line).map(|(seq, _, body)| (seq, body))
}

/// Parses an entry line of version 2 (`v2`) or 1: in version 2 `,"t":T[,"u":U][,"more":M]`
/// follows the sequence number, with `u` at most `seq` and `more` below 1024.
#[must_use]
pub fn parse_entry_as(v2: bool, line: &[u8]) -> Option<(u64, Option<Marks>, Body<'_>)> {
    let rest = covered(line)?.strip_prefix(b"\"seq\":")?;
    let (seq, mut after) = number(rest)?;
    if seq > MAX_SEQ {
        return None;
    }
    let mut marks = None;
    if v2 {
        let (t, rest) = number(after.strip_prefix(b",\"t\":")?)?;
        let (u, rest) = optional(rest, "u")?;
        let (more, rest) = optional(rest, "more")?;
        if u > seq || more >= 1024 {
            return None;
        }
        marks = Some(Marks { t, u, more });
        after = rest;
    }
    let body = if let Some(json) = after.strip_prefix(b",\"e\":") {
        Body::Inline(json.strip_suffix(b"}")?)
    } else {
        Body::Blob(after.strip_prefix(b",\"blob\":")?.strip_suffix(b"}")?)
    };
    (!body.bytes().is_empty()).then_some((seq, marks, body))
}

/// Does this framed line go on after its sequence number with `,"t":`, as a version-2 line
/// does (whether or not the rest checks out)?
#[must_use]
pub fn looks_v2(line: &[u8]) -> bool {
    covered(line)
        .and_then(|c| c.strip_prefix(b"\"seq\":"))
        .map(|r| &r[r.iter().take_while(|b| b.is_ascii_digit()).count()..])
        .is_some_and(|r| r.starts_with(b",\"t\":"))
}

/// Is this an entry line of either version, and of which (`Some(true)` for version 2)?
#[must_use]
pub fn entry_version(line: &[u8]) -> Option<bool> {
    if parse_entry_as(true, line).is_some() {
        Some(true)
    } else {
        parse_entry_as(false, line).map(|_| false)
    }
}

/// An entry line a reader of a bare image delivers, with what it delivers: the JSON of an
/// inline entry (which must be UTF-8), or for a blob line whose reference parses, the
/// reference as [`shown`] writes it (there is no blob store to resolve it from).
#[must_use]
pub fn parse_deliverable(line: &[u8]) -> Option<(u64, String)> {
    parse_deliverable_as(false, line)
}

/// [`parse_deliverable`] for a file of version 2 (`v2`) or 1.
#[must_use]
pub fn parse_deliverable_as(v2: bool, line: &[u8]) -> Option<(u64, String)> {
    match parse_entry_as(v2, line).map(|(seq, _, body)| (seq, body))? {
        (seq, Body::Inline(json)) => Some((seq, std::str::from_utf8(json).ok()?.to_owned())),
        (seq, Body::Blob(reference)) => {
            let reference: annals::BlobRef = serde_json::from_slice(reference).ok()?;
            Some((seq, blob_shown(&reference)))
        }
    }
}

/// How the harnesses write down a delivered entry: its JSON text, or for an entry delivered as
/// a blob reference only, `blob:` and the reference's JSON (which no JSON text can be mistaken
/// for, since it does not parse as JSON).
#[must_use]
pub fn shown(entry: &annals::Entry<'_>) -> String {
    match entry.body {
        annals::Body::Inline(json)
        | annals::Body::Blob {
            json: Some(json), ..
        } => json.to_owned(),
        annals::Body::Blob {
            reference,
            json: None,
        } => blob_shown(reference),
    }
}

/// `blob:` and the reference's JSON.
#[must_use]
pub fn blob_shown(reference: &annals::BlobRef) -> String {
    format!(
        "blob:{}",
        serde_json::to_string(reference).unwrap_or_default()
    )
}

/// The line for `seq` and `body`, newline included, built by hand.
#[must_use]
pub fn body_line(seq: u64, body: Body<'_>) -> Vec<u8> {
    marked_line(seq, None, body)
}

/// The line for `seq`, the marks of a version-2 line (`None`: version 1) and `body`, newline
/// included, built by hand.
#[must_use]
pub fn marked_line(seq: u64, marks: Option<Marks>, body: Body<'_>) -> Vec<u8> {
    let (key, bytes): (&str, _) = match body {
        Body::Inline(b) => ("e", b),
        Body::Blob(b) => ("blob", b),
    };
    let mut covered = format!("\"seq\":{seq}").into_bytes();
    if let Some(m) = marks {
        covered.extend_from_slice(format!(",\"t\":{}", m.t).as_bytes());
        if m.u > 0 {
            covered.extend_from_slice(format!(",\"u\":{}", m.u).as_bytes());
        }
        if m.more > 0 {
            covered.extend_from_slice(format!(",\"more\":{}", m.more).as_bytes());
        }
    }
    covered.extend_from_slice(format!(",\"{key}\":").as_bytes());
    covered.extend_from_slice(bytes);
    covered.push(b'}');
    let mut line = CRC_OPEN.to_vec();
    line.extend_from_slice(&hex8(crc32fast::hash(&covered)));
    line.extend_from_slice(b"\",");
    line.extend_from_slice(&covered);
    line.push(b'\n');
    line
}

/// The entry line for `seq` and `json`, newline included, built by hand.
#[must_use]
pub fn entry_line(seq: u64, json: &[u8]) -> Vec<u8> {
    body_line(seq, Body::Inline(json))
}

/// Could these unterminated bytes be the start of a line a crash interrupted? Shorter than a
/// line can be, and a prefix of `{"crc":"` as far as they go.
#[must_use]
pub fn plausible_torn_tail(tail: &[u8]) -> bool {
    let n = tail.len().min(CRC_OPEN.len());
    tail.len() < MAX_LINE && tail[..n] == CRC_OPEN[..n]
}

/// Rewrites the stored CRC of every line that has the fixed prefix shape so that it matches the
/// line's bytes. Random mutations almost never keep a CRC valid; this lets the fuzzer reach
/// everything behind the CRC check (sequence numbers, header fields, entry shapes).
#[must_use]
pub fn fix_crcs(bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let mut start = 0;
    while start < out.len() {
        let end = out[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(out.len(), |p| start + p);
        let line = &out[start..end];
        if line.len() >= PREFIX_LEN && line.starts_with(CRC_OPEN) && &line[16..18] == b"\"," {
            let hex = hex8(crc32fast::hash(&line[PREFIX_LEN..]));
            out[start + 8..start + 16].copy_from_slice(&hex);
        }
        start = end + 1;
    }
    out
}

/// A piece of an image and the offset it starts at.
pub type At<'a> = (usize, &'a [u8]);

/// The lines of an image: `(offset, line without newline)` for every complete line, and the
/// unterminated tail with its offset.
#[must_use]
pub fn split_lines(bytes: &[u8]) -> (Vec<At<'_>>, At<'_>) {
    let mut lines = Vec::new();
    let mut start = 0;
    while let Some(p) = bytes[start..].iter().position(|&b| b == b'\n') {
        lines.push((start, &bytes[start..start + p]));
        start += p + 1;
    }
    (lines, (start, &bytes[start..]))
}
