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

/// Parses an entry line: `{"crc":"..","seq":N,"e":JSON}` or `{"crc":"..","seq":N,"blob":REF}`,
/// with N a JSON unsigned integer that fits a `u64` (no sign, no leading zero) and the body
/// non-empty. The body is not validated (the format promises only what the CRC protects).
#[must_use]
pub fn parse_entry(line: &[u8]) -> Option<(u64, Body<'_>)> {
    let rest = covered(line)?.strip_prefix(b"\"seq\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || (digits > 1 && rest[0] == b'0') {
        return None;
    }
    let seq = std::str::from_utf8(&rest[..digits])
        .ok()?
        .parse::<u64>()
        .ok()?;
    let after = &rest[digits..];
    let body = if let Some(json) = after.strip_prefix(b",\"e\":") {
        Body::Inline(json.strip_suffix(b"}")?)
    } else {
        Body::Blob(after.strip_prefix(b",\"blob\":")?.strip_suffix(b"}")?)
    };
    (!body.bytes().is_empty()).then_some((seq, body))
}

/// An entry line a reader of a bare image delivers, with what it delivers: the JSON of an
/// inline entry (which must be UTF-8), or for a blob line whose reference parses, the
/// reference as [`shown`] writes it (there is no blob store to resolve it from).
#[must_use]
pub fn parse_deliverable(line: &[u8]) -> Option<(u64, String)> {
    match parse_entry(line)? {
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
    let (key, bytes): (&str, _) = match body {
        Body::Inline(b) => ("e", b),
        Body::Blob(b) => ("blob", b),
    };
    let mut covered = format!("\"seq\":{seq},\"{key}\":").into_bytes();
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
