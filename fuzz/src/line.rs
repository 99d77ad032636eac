//! `line_decoder`: the pure line codec against the independent oracle.
//!
//! Raw mode: the input is one line; every decoder must agree with the oracle on whether the
//! line is acceptable, and whatever is accepted re-encodes to exactly the input. Structured
//! mode: the same input, read by `arbitrary` as a frame of either version and a JSON text, is
//! encoded, decoded back, and
//! damaged in ways a CRC-32 is guaranteed to notice.

use annals::codec::{self, EncodeError, Frame, Marks, Version};
use annals::unstable::{self, Line};
use annals::{CorruptReason, MAX_LINE};
use arbitrary::Unstructured;

use crate::oracle;

/// Runs both modes on one input.
pub fn check(data: &[u8]) {
    let line = data.strip_suffix(b"\n").unwrap_or(data);
    check_line(line);
    let fixed = oracle::fix_crcs(line);
    if fixed != line {
        check_line(&fixed);
    }
    // Running out of bytes only ends the structured part early.
    let _ = check_structured(&mut Unstructured::new(data));
}

/// Every codec entry point on one line (without its newline), compared with the oracle.
pub fn check_line(line: &[u8]) {
    let frame_ok = oracle::frame_ok(line);
    match unstable::check_crc(line) {
        Ok(covered) => {
            assert!(
                frame_ok,
                "check_crc accepted a line whose CRC does not match"
            );
            assert_eq!(covered, &line[oracle::PREFIX_LEN..]);
        }
        Err(reason) => {
            assert!(!frame_ok, "check_crc refused an intact line: {reason}");
            match reason {
                CorruptReason::TooLong { len } => {
                    assert!(line.len() + 1 > MAX_LINE);
                    assert_eq!(len, line.len() as u64);
                }
                CorruptReason::CrcMismatch { stored, computed } => {
                    assert_ne!(stored, computed);
                    assert_eq!(computed, crc32fast::hash(&line[oracle::PREFIX_LEN..]));
                    assert_eq!(oracle::hex8(stored), line[8..16]);
                }
                CorruptReason::BadPrefix => {}
                other => panic!("check_crc gave {other:?}, which is not a framing reason"),
            }
        }
    }

    let header_shaped = oracle::is_header_shaped(line);
    for version in [Version::V1, Version::V2] {
        check_as(version, line, frame_ok, header_shaped);
    }
    // The probes that want only a sequence number read a line of either version.
    match unstable::check_entry(line) {
        Ok((seq, range)) => {
            let v2 = oracle::entry_version(line).expect("check_entry accepted a non-entry");
            let (want_seq, _, body) = oracle::parse_entry_as(v2, line).expect("entry");
            assert_eq!(seq, want_seq);
            assert_eq!(&line[range], body.bytes());
        }
        Err(CorruptReason::UnexpectedHeader) => assert!(header_shaped),
        Err(reason) => assert!(
            oracle::entry_version(line).is_none(),
            "check_entry refused a well-formed entry line: {reason}"
        ),
    }
    let decoded = unstable::decode_line(line, Version::V1);
    match unstable::decode_header(line) {
        Ok(h) => {
            assert!(header_shaped);
            assert_eq!(decoded, Ok(Line::Header(h)));
        }
        Err(reason) => {
            assert!(
                !matches!(decoded, Ok(Line::Header(_))),
                "decode_line read a header that decode_header refuses: {reason}"
            );
        }
    }

    assert_eq!(
        unstable::is_plausible_torn_tail(line),
        oracle::plausible_torn_tail(line)
    );
}

/// The checks of a line read as a line of a file of `version`.
fn check_as(version: Version, line: &[u8], frame_ok: bool, header_shaped: bool) {
    let v2 = version == Version::V2;
    let entry = oracle::parse_entry_as(v2, line);
    match unstable::check_line_as(version, line) {
        Ok(e) => {
            let (want_seq, marks, body) =
                entry.expect("check_line_as accepted a line the oracle refuses");
            assert_eq!(e.seq, want_seq);
            assert_eq!(e.marks.map(oracle_marks), marks);
            assert_eq!(&line[e.body], body.bytes());
            let mut again = oracle::marked_line(e.seq, marks, body);
            again.pop();
            assert_eq!(again, line, "an accepted entry line is not canonical");
        }
        Err(CorruptReason::UnexpectedHeader) => assert!(header_shaped),
        Err(reason) => assert!(
            entry.is_none(),
            "check_line_as refused a well-formed entry line: {reason}"
        ),
    }
    let decoded = unstable::decode_line(line, version);
    match &decoded {
        Ok(Line::Entry { seq, marks, json }) => {
            let want = entry.map(|(s, m, b)| (s, m, b.bytes().to_vec()));
            assert_eq!(
                want,
                Some((*seq, marks.map(oracle_marks), json.as_bytes().to_vec()))
            );
            let mut out = Vec::new();
            let frame = frame(version, *seq, *marks);
            let len = codec::encode_entry(&frame, json, &mut out).expect("it fitted before");
            assert_eq!(len, line.len() + 1);
            assert_eq!(&out[..line.len()], line, "re-encoding changed the line");
            assert_eq!(out[line.len()], b'\n');
        }
        Ok(Line::Blob {
            seq,
            marks,
            reference,
        }) => {
            let Some((want_seq, _, oracle::Body::Blob(body))) = entry else {
                panic!("decode_line read a blob line the oracle does not: {entry:?}");
            };
            assert_eq!(*seq, want_seq);
            let parsed: annals::BlobRef = serde_json::from_slice(body).expect("reference");
            assert_eq!(&parsed, reference);
            check_blob_round_trip(frame(version, *seq, *marks), reference, false);
        }
        Ok(Line::Header(h)) => {
            assert!(header_shaped);
            if h.version().is_some() {
                let mut out = Vec::new();
                codec::encode_header(h, &mut out).expect("a decoded header re-encodes");
                assert_eq!(
                    unstable::decode_header(&out[..out.len() - 1]).as_ref(),
                    Ok(h)
                );
            }
        }
        Err(reason) => {
            assert!(
                oracle::parse_deliverable_as(v2, line).is_none(),
                "decode_line refused a deliverable entry line: {reason}"
            );
            if frame_ok && !header_shaped {
                assert!(matches!(reason, CorruptReason::Malformed(_)), "{reason:?}");
            }
        }
    }
}

fn oracle_marks(m: Marks) -> oracle::Marks {
    oracle::Marks {
        t: m.appended_ms,
        u: m.unsynced,
        more: m.more,
    }
}

fn frame(version: Version, seq: u64, marks: Option<Marks>) -> Frame {
    Frame {
        version,
        seq,
        marks: marks.unwrap_or_default(),
    }
}

/// A blob reference encodes to a line that decodes to the same reference, or is refused as too
/// long with the buffer untouched.
/// `recheck` also runs the line through [`check_line`] (not when called from there).
fn check_blob_round_trip(frame: Frame, reference: &annals::BlobRef, recheck: bool) {
    let mut out = b"kept".to_vec();
    match codec::encode_blob(&frame, reference, &mut out) {
        Ok(len) => {
            assert_eq!(out.len(), 4 + len);
            let line = &out[4..out.len() - 1];
            assert!(oracle::frame_ok(line));
            assert_eq!(
                unstable::decode_line(line, frame.version),
                Ok(Line::Blob {
                    seq: frame.seq,
                    marks: (frame.version == Version::V2).then_some(frame.marks),
                    reference: reference.clone()
                })
            );
            if recheck {
                check_line(line);
            }
        }
        Err(e) => {
            assert!(
                matches!(e, EncodeError::TooLong { size } if size > MAX_LINE),
                "{e:?}"
            );
            assert_eq!(
                out, b"kept",
                "a refused line must leave the buffer as it was"
            );
        }
    }
}

/// Encodes an arbitrary `(seq, json)`, checks the bytes, decodes them back, and damages them.
///
/// # Errors
/// When the input runs out of bytes.
pub fn check_structured(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let seq = u.arbitrary::<u64>()?.min(oracle::MAX_SEQ);
    let v2: bool = u.arbitrary()?;
    let marks = Marks {
        appended_ms: u.arbitrary()?,
        unsynced: u.int_in_range(0..=seq)?,
        more: u.int_in_range(0..=1023)?,
    };
    let frame = Frame {
        version: if v2 { Version::V2 } else { Version::V1 },
        seq,
        marks,
    };
    let oracle_marks = v2.then_some(oracle_marks(marks));
    let mut json: String = u.arbitrary()?;
    if u.arbitrary::<bool>()? {
        // Long entries, around the line limit.
        let pad = 3850 + usize::from(u.arbitrary::<u8>()?);
        json.push_str(&"x".repeat(pad));
    }
    if u.arbitrary::<bool>()? {
        let bytes: &[u8] = u.arbitrary()?;
        let reference = annals::BlobRef {
            sha256: annals::BlobId::of(bytes),
            len: u.arbitrary()?,
            head: u.arbitrary()?,
        };
        check_blob_round_trip(frame, &reference, true);
        check_blob_round_trip(frame, &annals::BlobRef::for_entry(&json), true);
    }
    let want = oracle::marked_line(seq, oracle_marks, oracle::Body::Inline(json.as_bytes()));
    let mut out = b"kept".to_vec();
    match codec::encode_entry(&frame, &json, &mut out) {
        Err(e) => {
            assert_eq!(e, EncodeError::TooLong { size: want.len() });
            assert!(want.len() > MAX_LINE);
            assert_eq!(
                out, b"kept",
                "a refused entry must leave the buffer as it was"
            );
            return Ok(());
        }
        Ok(len) => {
            assert_eq!(len, want.len());
            assert!(len <= MAX_LINE);
            assert_eq!(&out[..4], b"kept", "encoding must append");
            assert_eq!(&out[4..], &want[..]);
        }
    }
    let line = &want[..want.len() - 1];
    check_line(line);
    let version = frame.version;
    if json.is_empty() {
        assert!(
            unstable::decode_line(line, version).is_err(),
            "an empty entry is not JSON"
        );
    } else {
        assert_eq!(
            unstable::decode_line(line, version),
            Ok(Line::Entry {
                seq,
                marks: v2.then_some(marks),
                json: &json
            })
        );
    }

    // A change confined to four consecutive bytes is a burst of at most 32 bits, which CRC-32
    // always detects in the covered bytes; in the prefix it changes the fixed text or the
    // stored value. Such a line must never be accepted.
    let at = u.choose_index(line.len())?;
    let width = u.int_in_range(1..=4usize)?.min(line.len() - at);
    let mut burst = line.to_vec();
    for b in &mut burst[at..at + width] {
        *b ^= u.arbitrary::<u8>()?;
    }
    if burst[at] == line[at] {
        burst[at] ^= 0x01;
    }
    assert!(
        unstable::check_crc(&burst).is_err(),
        "burst at {at} unnoticed"
    );
    assert!(
        unstable::check_entry(&burst).is_err(),
        "burst at {at} unnoticed"
    );
    assert!(
        unstable::decode_line(&burst, version).is_err(),
        "burst at {at} unnoticed"
    );
    check_line(&burst);

    // Changes anywhere: whatever is accepted must still be a line whose CRC matches.
    let mut scattered = line.to_vec();
    for _ in 0..u.int_in_range(1..=8u8)? {
        let i = u.choose_index(scattered.len())?;
        scattered[i] = u.arbitrary()?;
    }
    check_line(&scattered);
    Ok(())
}
