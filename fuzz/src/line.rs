//! `line_decoder`: the pure line codec against the independent oracle.
//!
//! Raw mode: the input is one line; every decoder must agree with the oracle on whether the
//! line is acceptable, and whatever is accepted re-encodes to exactly the input. Structured
//! mode: the same input, read by `arbitrary` as `(seq, json)`, is encoded, decoded back, and
//! damaged in ways a CRC-32 is guaranteed to notice.

use annals::codec::{self, Line};
use annals::{CorruptReason, FORMAT_VERSION, MAX_LINE};
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
    match codec::check_crc(line) {
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
    let entry = oracle::parse_entry(line);
    match codec::check_entry(line) {
        Ok((seq, range)) => {
            let (want_seq, body) = entry.expect("check_entry accepted a line the oracle refuses");
            assert_eq!(seq, want_seq);
            assert_eq!(&line[range], body.bytes());
            let mut again = oracle::body_line(seq, body);
            again.pop();
            assert_eq!(again, line, "an accepted entry line is not canonical");
        }
        Err(CorruptReason::UnexpectedHeader) => assert!(header_shaped),
        Err(reason) => assert!(
            entry.is_none(),
            "check_entry refused a well-formed entry line: {reason}"
        ),
    }

    let decoded = codec::decode_line(line);
    match &decoded {
        Ok(Line::Entry { seq, json }) => {
            assert_eq!(entry, Some((*seq, oracle::Body::Inline(json.as_bytes()))));
            let mut out = Vec::new();
            let len = codec::encode_entry(*seq, json, &mut out).expect("it fitted before");
            assert_eq!(len, line.len() + 1);
            assert_eq!(&out[..line.len()], line, "re-encoding changed the line");
            assert_eq!(out[line.len()], b'\n');
        }
        Ok(Line::Blob { seq, reference }) => {
            let Some((want_seq, oracle::Body::Blob(body))) = entry else {
                panic!("decode_line read a blob line the oracle does not: {entry:?}");
            };
            assert_eq!(*seq, want_seq);
            let parsed: annals::BlobRef = serde_json::from_slice(body).expect("reference");
            assert_eq!(&parsed, reference);
            check_blob_round_trip(*seq, reference, false);
        }
        Ok(Line::Header(h)) => {
            assert!(header_shaped);
            if h.annals == u64::from(FORMAT_VERSION) {
                let mut out = Vec::new();
                codec::encode_header(h, &mut out).expect("a decoded header re-encodes");
                assert_eq!(codec::decode_header(&out[..out.len() - 1]).as_ref(), Ok(h));
            }
        }
        Err(reason) => {
            assert!(
                oracle::parse_deliverable(line).is_none(),
                "decode_line refused a deliverable entry line: {reason}"
            );
            if frame_ok && !header_shaped {
                assert!(matches!(reason, CorruptReason::Malformed(_)), "{reason:?}");
            }
        }
    }

    match codec::decode_header(line) {
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
        codec::is_plausible_torn_tail(line),
        oracle::plausible_torn_tail(line)
    );
}

/// A blob reference encodes to a line that decodes to the same reference, or is refused as too
/// long with the buffer untouched.
/// `recheck` also runs the line through [`check_line`] (not when called from there).
fn check_blob_round_trip(seq: u64, reference: &annals::BlobRef, recheck: bool) {
    let mut out = b"kept".to_vec();
    match codec::encode_blob(seq, reference, &mut out) {
        Ok(len) => {
            assert_eq!(out.len(), 4 + len);
            let line = &out[4..out.len() - 1];
            assert!(oracle::frame_ok(line));
            assert_eq!(
                codec::decode_line(line),
                Ok(Line::Blob {
                    seq,
                    reference: reference.clone()
                })
            );
            if recheck {
                check_line(line);
            }
        }
        Err(size) => {
            assert!(size > MAX_LINE);
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
    let seq: u64 = u.arbitrary()?;
    let mut json: String = u.arbitrary()?;
    if u.arbitrary::<bool>()? {
        // Long entries, around the line limit.
        let pad = 3900 + usize::from(u.arbitrary::<u8>()?);
        json.push_str(&"x".repeat(pad));
    }
    if u.arbitrary::<bool>()? {
        let bytes: &[u8] = u.arbitrary()?;
        let reference = annals::BlobRef {
            sha256: annals::BlobId::of(bytes),
            len: u.arbitrary()?,
            head: u.arbitrary()?,
        };
        check_blob_round_trip(seq, &reference, true);
        check_blob_round_trip(seq, &annals::BlobRef::for_entry(&json), true);
    }
    let want = oracle::entry_line(seq, json.as_bytes());
    let mut out = b"kept".to_vec();
    match codec::encode_entry(seq, &json, &mut out) {
        Err(size) => {
            assert_eq!(size, want.len());
            assert!(size > MAX_LINE);
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
    if json.is_empty() {
        assert!(
            codec::decode_line(line).is_err(),
            "an empty entry is not JSON"
        );
    } else {
        assert_eq!(
            codec::decode_line(line),
            Ok(Line::Entry { seq, json: &json })
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
    assert!(codec::check_crc(&burst).is_err(), "burst at {at} unnoticed");
    assert!(
        codec::check_entry(&burst).is_err(),
        "burst at {at} unnoticed"
    );
    assert!(
        codec::decode_line(&burst).is_err(),
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
