use super::decode::*;
use super::*;
use crate::error::{CorruptReason, HeaderProblem};
use proptest::prelude::*;

fn line_of(frame: Frame, json: &str) -> Vec<u8> {
    let mut out = Vec::new();
    encode_entry(&frame, json, &mut out).unwrap();
    out
}

fn strip(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\n").unwrap()
}

/// A line with a correct CRC around any covered bytes, as a hostile or buggy writer makes it.
fn framed(covered: &str) -> Vec<u8> {
    format!(
        "{{\"crc\":\"{:08x}\",{covered}",
        crc32fast::hash(covered.as_bytes())
    )
    .into_bytes()
}

fn marks(appended_ms: u64, unsynced: u64, more: u64) -> Marks {
    Marks {
        appended_ms,
        unsynced,
        more,
    }
}

#[test]
fn entry_line_is_plain_json_with_crc_seq_and_entry() {
    let line = line_of(Frame::v1(42), r#"{"role":"user","text":"hi"}"#);
    let text = std::str::from_utf8(&line).unwrap();
    assert!(text.ends_with('\n'));
    assert_eq!(text.matches('\n').count(), 1);
    let v: serde_json::Value = serde_json::from_str(text).unwrap();
    assert_eq!(v["seq"], 42);
    assert_eq!(v["e"]["text"], "hi");
    assert_eq!(v["crc"].as_str().unwrap().len(), 8);
    assert_eq!(
        decode_line(strip(&line), Version::V1).unwrap(),
        Line::Entry {
            seq: 42,
            marks: None,
            json: r#"{"role":"user","text":"hi"}"#
        }
    );
}

#[test]
fn version_2_lines_have_their_keys_in_one_order_and_leave_out_zero_marks() {
    let full = line_of(Frame::v2(7, marks(1_700_000_000_123, 3, 2)), r#"{"a":1}"#);
    assert_eq!(
        std::str::from_utf8(&full[PREFIX_LEN..]).unwrap(),
        "\"seq\":7,\"t\":1700000000123,\"u\":3,\"more\":2,\"e\":{\"a\":1}}\n"
    );
    let last = line_of(Frame::v2(7, marks(5, 0, 0)), r#"{"a":1}"#);
    assert_eq!(
        std::str::from_utf8(&last[PREFIX_LEN..]).unwrap(),
        "\"seq\":7,\"t\":5,\"e\":{\"a\":1}}\n"
    );
    let mut blob = Vec::new();
    let reference = BlobRef::for_entry("\"x\"");
    encode_blob(&Frame::v2(9, marks(5, 9, 0)), &reference, &mut blob).unwrap();
    assert!(std::str::from_utf8(&blob[PREFIX_LEN..])
        .unwrap()
        .starts_with("\"seq\":9,\"t\":5,\"u\":9,\"blob\":{\"sha256\":"));
    assert_eq!(
        decode_line(strip(&blob), Version::V2).unwrap(),
        Line::Blob {
            seq: 9,
            marks: Some(marks(5, 9, 0)),
            reference
        }
    );
}

#[test]
fn a_line_is_read_as_its_files_version_only() {
    let v1 = line_of(Frame::v1(1), "1");
    let v2 = line_of(Frame::v2(1, marks(2, 0, 0)), "1");
    assert!(check_line_as(Version::V1, strip(&v1)).is_ok());
    assert!(check_line_as(Version::V2, strip(&v2)).is_ok());
    assert_eq!(
        check_line_as(Version::V2, strip(&v1)),
        Err(CorruptReason::Malformed(
            "no \"t\" after the sequence number"
        ))
    );
    assert_eq!(
        check_line_as(Version::V1, strip(&v2)),
        Err(CorruptReason::Malformed(
            "no \"e\" or \"blob\" after the sequence number"
        ))
    );
    // The probes that only want a sequence number read either.
    assert_eq!(check_entry(strip(&v1)).unwrap().0, 1);
    assert_eq!(check_entry(strip(&v2)).unwrap().0, 1);
    // A version-1 frame carries no marks, whatever it is given.
    let frame = Frame {
        marks: marks(9, 9, 9),
        ..Frame::v1(1)
    };
    assert_eq!(line_of(frame, "1"), v1);
}

#[test]
fn marks_with_one_spelling_only() {
    for (covered, why) in [
        (
            r#""seq":4,"t":1,"u":0,"e":1}"#,
            "\"u\":0 is written by leaving \"u\" out",
        ),
        (
            r#""seq":4,"t":1,"more":0,"e":1}"#,
            "\"more\":0 is written by leaving \"more\" out",
        ),
        (
            r#""seq":4,"t":1,"u":5,"e":1}"#,
            "\"u\" is larger than the sequence number",
        ),
        (
            r#""seq":4,"t":1,"more":1024,"e":1}"#,
            "\"more\" says a write has more than 1024 lines",
        ),
        (r#""seq":4,"t":01,"e":1}"#, "bad append time \"t\""),
        (
            r#""seq":4,"more":1,"t":1,"e":1}"#,
            "no \"t\" after the sequence number",
        ),
        (
            r#""seq":4,"t":1,"more":1,"u":1,"e":1}"#,
            "no \"e\" or \"blob\" after the marks",
        ),
    ] {
        let line = framed(covered);
        assert_eq!(
            check_line_as(Version::V2, &line),
            Err(CorruptReason::Malformed(why)),
            "{covered}"
        );
    }
    let ok = framed(r#""seq":4,"t":1,"u":4,"more":1023,"e":1}"#);
    assert_eq!(
        check_line_as(Version::V2, &ok).unwrap().marks,
        Some(marks(1, 4, 1023))
    );
}

#[test]
fn the_encoder_refuses_marks_no_writer_makes() {
    let mut out = b"keep".to_vec();
    for frame in [
        Frame::v2(3, marks(0, 4, 0)),
        Frame::v2(3, marks(0, 0, MAX_WRITE_LINES)),
    ] {
        assert_eq!(
            encode_entry(&frame, "1", &mut out),
            Err(EncodeError::BadMarks)
        );
    }
    assert_eq!(out, b"keep");
    assert!(encode_entry(
        &Frame::v2(3, marks(0, 3, MAX_WRITE_LINES - 1)),
        "1",
        &mut out
    )
    .is_ok());
}

#[test]
fn sequence_numbers_stop_one_short_of_the_largest_u64() {
    assert_eq!(MAX_SEQ, 18_446_744_073_709_551_614);
    let mut out = b"keep".to_vec();
    for version in [Version::V1, Version::V2] {
        let frame = Frame {
            version,
            seq: u64::MAX,
            marks: Marks::default(),
        };
        assert_eq!(
            encode_entry(&frame, "1", &mut out),
            Err(EncodeError::SeqOutOfRange { seq: u64::MAX })
        );
        assert_eq!(out, b"keep");
        let last = Frame {
            seq: MAX_SEQ,
            ..frame
        };
        let line = line_of(last, "1");
        assert_eq!(check_line_as(version, strip(&line)).unwrap().seq, MAX_SEQ);
    }
    let past = framed(r#""seq":18446744073709551615,"e":1}"#);
    assert!(matches!(
        check_line_as(Version::V1, &past),
        Err(CorruptReason::Malformed(m)) if m.contains("past the last one")
    ));
}

#[test]
fn crc_covers_every_byte_after_the_prefix() {
    let line = line_of(Frame::v2(7, marks(3, 2, 1)), r#"{"a":[1,2,3]}"#);
    let body = strip(&line);
    for i in PREFIX_LEN..body.len() {
        let mut bad = body.to_vec();
        bad[i] ^= 0x01;
        assert!(
            decode_line(&bad, Version::V2).is_err(),
            "flip at {i} went unnoticed"
        );
    }
}

#[test]
fn every_flipped_crc_digit_is_caught() {
    let line = line_of(Frame::v1(7), r#"{"a":1}"#);
    let body = strip(&line);
    for i in 0..PREFIX_LEN {
        let mut bad = body.to_vec();
        bad[i] ^= 0x01;
        assert!(
            decode_line(&bad, Version::V1).is_err(),
            "flip at {i} went unnoticed"
        );
    }
}

#[test]
fn the_inline_thresholds_are_the_documented_numbers() {
    // docs/FORMAT.md promises these values; they are not derived here on purpose.
    assert_eq!(MAX_INLINE, 3983);
    assert_eq!(Version::NEW_FILES, Version::V4);
    assert_eq!(Version::V1.max_inline(), 4045);
    assert_eq!(Version::V2.max_inline(), 3983);
    assert_eq!(Version::V3.max_inline(), 3983);
    assert_eq!(Version::V4.max_inline(), 3983);
    // The largest entry kept inline fits its line with the longest sequence number and marks.
    for (version, m) in [
        (Version::V1, Marks::default()),
        (Version::V2, marks(u64::MAX, MAX_SEQ, MAX_WRITE_LINES - 1)),
    ] {
        let json = format!("\"{}\"", "x".repeat(version.max_inline() - 2));
        let frame = Frame {
            version,
            seq: MAX_SEQ,
            marks: m,
        };
        assert_eq!(
            encode_entry(&frame, &json, &mut Vec::new()),
            Ok(MAX_LINE),
            "{version:?}"
        );
    }
}

#[test]
fn line_at_exactly_the_limit_is_accepted_and_one_byte_over_is_refused() {
    let overhead = line_of(Frame::v1(3), r#""""#).len() - 2;
    let fits = format!("\"{}\"", "x".repeat(MAX_LINE - overhead - 2));
    let mut out = Vec::new();
    assert_eq!(encode_entry(&Frame::v1(3), &fits, &mut out), Ok(MAX_LINE));
    assert_eq!(out.len(), MAX_LINE);
    assert!(decode_line(strip(&out), Version::V1).is_ok());

    let over = format!("\"{}\"", "x".repeat(MAX_LINE - overhead - 1));
    let mut out = b"keep".to_vec();
    assert_eq!(
        encode_entry(&Frame::v1(3), &over, &mut out),
        Err(EncodeError::TooLong { size: MAX_LINE + 1 })
    );
    assert_eq!(out, b"keep", "a refused entry leaves the buffer as it was");
}

#[test]
fn a_crc_valid_line_of_4097_bytes_is_too_long() {
    // 4096 bytes before the newline: one more than a line may hold, though its CRC matches.
    let covered = format!(
        "\"seq\":3,\"e\":\"{}\"}}",
        "x".repeat(4096 - PREFIX_LEN - 15)
    );
    let line = framed(&covered);
    assert_eq!(line.len(), 4096);
    assert_eq!(check_crc(&line), Err(CorruptReason::TooLong { len: 4096 }));
    assert_eq!(
        decode_line(&line, Version::V1),
        Err(CorruptReason::TooLong { len: 4096 })
    );
    // One byte less is a line.
    let covered = format!(
        "\"seq\":3,\"e\":\"{}\"}}",
        "x".repeat(4095 - PREFIX_LEN - 15)
    );
    assert!(decode_line(&framed(&covered), Version::V1).is_ok());
}

#[test]
fn a_crc_valid_entry_line_without_its_closing_brace_is_malformed() {
    for version in [Version::V1, Version::V2] {
        let covered = match version {
            Version::V1 => r#""seq":3,"e":[1,2]"#,
            _ => r#""seq":3,"t":1,"e":"text""#,
        };
        assert_eq!(
            check_line_as(version, &framed(covered)),
            Err(CorruptReason::Malformed("entry is not closed by '}'"))
        );
        let closed = format!("{covered}}}");
        assert!(check_line_as(version, &framed(&closed)).is_ok());
    }
    assert_eq!(
        check_line_as(Version::V1, &framed(r#""seq":3,"e":}"#)),
        Err(CorruptReason::Malformed("entry is not closed by '}'")),
        "an empty entry is not one"
    );
}

fn header(annals: u64) -> Header {
    Header {
        annals,
        kind: FileKind::Segment,
        session: SessionId::new(),
        segment: SegmentId::new(),
        generation: 3,
        created_ms: 1_700_000_000_000,
        fork: Some(Lineage {
            segment: SegmentId::new(),
            at: 12,
        }),
    }
}

#[test]
fn headers_of_both_versions_round_trip_and_are_distinguished_from_entries() {
    for version in [Version::V1, Version::V2] {
        let header = header(version.number());
        let mut out = Vec::new();
        encode_header(&header, &mut out).unwrap();
        let text = std::str::from_utf8(&out).unwrap();
        assert!(text.starts_with("{\"crc\":\""));
        assert!(
            text.contains(&format!("\"annals\":{},", version.number())),
            "{text}"
        );
        assert_eq!(
            decode_line(strip(&out), version).unwrap(),
            Line::Header(header.clone())
        );
        assert_eq!(decode_header(strip(&out)).unwrap(), header);
        assert_eq!(header.version(), Some(version));
        assert_eq!(
            check_entry(strip(&out)).unwrap_err(),
            CorruptReason::UnexpectedHeader
        );
    }
}

#[test]
fn a_header_of_an_unknown_version_decodes_to_its_number_only() {
    let line = framed(r#""annals":5,"layout":"new"}"#);
    let h = decode_header(&line).unwrap();
    assert_eq!((h.annals, h.version()), (5, None));
}

#[test]
fn header_problems_say_which_field_and_what_it_holds() {
    let session = SessionId::new();
    let segment = SegmentId::new();
    let cases = [
        (r#""seq":0,"e":1}"#.to_string(), HeaderProblem::NotAHeader),
        (r#""annals":"one"}"#.to_string(), HeaderProblem::NoVersion),
        (
            format!(
                r#""annals":1,"session":"{session}","segment":"{segment}","generation":0,"created_ms":0}}"#
            ),
            HeaderProblem::MissingField("kind"),
        ),
        (
            format!(
                r#""annals":2,"kind":"log","session":"{session}","segment":"{segment}","generation":0,"created_ms":0}}"#
            ),
            HeaderProblem::BadField {
                field: "kind",
                expected: "\"segment\", \"trace\" or \"attachments\"",
                found: "\"log\"".into(),
            },
        ),
        (
            format!(
                r#""annals":1,"kind":"segment","session":"{session}","segment":"{segment}","generation":-1,"created_ms":0}}"#
            ),
            HeaderProblem::BadField {
                field: "generation",
                expected: "an unsigned integer",
                found: "-1".into(),
            },
        ),
    ];
    for (covered, problem) in cases {
        assert_eq!(
            decode_header(&framed(&covered)),
            Err(CorruptReason::BadHeader(problem.clone())),
            "{covered}"
        );
    }
    let err = decode_header(&framed(r#""annals":1,"kind":}"#)).unwrap_err();
    assert!(
        matches!(&err, CorruptReason::BadHeader(HeaderProblem::Syntax { column, .. }) if *column > 18),
        "{err:?}"
    );
    let shown = CorruptReason::BadHeader(HeaderProblem::BadField {
        field: "kind",
        expected: "\"segment\", \"trace\" or \"attachments\"",
        found: "\"log\"".into(),
    })
    .to_string();
    assert_eq!(
        shown,
        "bad header line: field \"kind\" is \"log\", expected \"segment\", \"trace\" or \"attachments\""
    );
}

#[test]
fn sequence_numbers_with_leading_zeros_or_overflow_are_malformed() {
    assert_eq!(parse_decimal(b"0,"), Some((0, 1)));
    assert_eq!(parse_decimal(b"18446744073709551615"), Some((u64::MAX, 20)));
    assert_eq!(parse_decimal(b"18446744073709551616"), None);
    assert_eq!(parse_decimal(b"01"), None);
    assert_eq!(parse_decimal(b"x"), None);
}

#[test]
fn short_or_garbage_lines_are_bad_prefixes_not_panics() {
    for bad in [
        &b""[..],
        b"{",
        b"{\"crc\":\"zzzzzzzz\",\"seq\":1,\"e\":1}",
        b"hello world",
    ] {
        assert!(decode_line(bad, Version::V1).is_err());
        assert!(decode_line(bad, Version::V2).is_err());
    }
}

#[test]
fn torn_tails_must_look_like_the_start_of_a_line() {
    assert!(is_plausible_torn_tail(b"{\"cr"));
    assert!(is_plausible_torn_tail(b"{\"crc\":\"0011aabb\",\"seq\":4"));
    assert!(!is_plausible_torn_tail(b"garbage"));
    assert!(!is_plausible_torn_tail(&[b'{'; MAX_LINE]));
    assert!(is_plausible_torn_tail(&[b'{'; MAX_LINE - 1][..1]));
}

#[test]
fn minify_removes_whitespace_outside_strings_only() {
    assert_eq!(minify("{\"a\":1}"), None);
    assert_eq!(
        minify("{\n  \"a b\" : \"x\\\" \\n y\",\n  \"c\": [1, 2]\n}").unwrap(),
        "{\"a b\":\"x\\\" \\n y\",\"c\":[1,2]}"
    );
}

#[test]
fn every_example_line_in_the_format_document_decodes() {
    let doc = include_str!("../../../../docs/FORMAT.md");
    let examples: Vec<&str> = doc
        .lines()
        .filter(|l| l.starts_with("{\"crc\":\""))
        .collect();
    assert!(examples.len() >= 6, "FORMAT.md lost its examples");
    for line in examples {
        let line = line.as_bytes();
        let ok = decode_header(line).is_ok()
            || decode_line(line, Version::V1).is_ok()
            || decode_line(line, Version::V2).is_ok();
        assert!(
            ok,
            "docs/FORMAT.md example does not decode: {}",
            String::from_utf8_lossy(line)
        );
    }
}

fn any_marks() -> impl Strategy<Value = (u64, Marks)> {
    (0..=MAX_SEQ, any::<u64>(), 0..MAX_WRITE_LINES)
        .prop_flat_map(|(seq, t, more)| (0..=seq).prop_map(move |u| (seq, marks(t, u, more))))
}

proptest! {
    #[test]
    fn every_frame_round_trips_through_its_line(
        (seq, m) in any_marks(),
        json in "[ -~]{1,200}",
        v2 in any::<bool>(),
    ) {
        let frame = if v2 { Frame::v2(seq, m) } else { Frame::v1(seq) };
        let mut out = b"kept".to_vec();
        let len = encode_entry(&frame, &json, &mut out).unwrap();
        prop_assert_eq!(&out[..4], b"kept");
        prop_assert_eq!(len, out.len() - 4);
        let line = &out[4..out.len() - 1];
        let marks = v2.then_some(m);
        prop_assert_eq!(
            decode_line(line, frame.version).unwrap(),
            Line::Entry { seq, marks, json: &json }
        );
        let checked = check_line_as(frame.version, line).unwrap();
        prop_assert_eq!(checked.seq, seq);
        prop_assert_eq!(&line[checked.body], json.as_bytes());
        // What the line says is all there is to it: reframing it gives the same bytes.
        let mut again = Vec::new();
        encode_entry(&frame, &json, &mut again).unwrap();
        prop_assert_eq!(&again[..], &out[4..]);
    }

    #[test]
    fn blob_lines_round_trip((seq, m) in any_marks(), text in "[ -~]{0,300}") {
        let reference = BlobRef::for_entry(&text);
        let mut out = Vec::new();
        encode_blob(&Frame::v2(seq, m), &reference, &mut out).unwrap();
        prop_assert_eq!(
            decode_line(strip(&out), Version::V2).unwrap(),
            Line::Blob { seq, marks: Some(m), reference }
        );
    }
}

/// A bad header field is shown as at most its first 80 bytes, cut at a character boundary, so
/// that a huge or hostile value makes a short message that is still text.
#[test]
fn a_bad_header_field_is_shown_cut_to_80_bytes_at_a_character_boundary() {
    let (session, segment) = (SessionId::new(), SegmentId::new());
    let found = |kind: &str| {
        let covered = format!(
            r#""annals":1,"kind":{kind},"session":"{session}","segment":"{segment}","generation":0,"created_ms":0}}"#
        );
        match decode_header(&framed(&covered)) {
            Err(CorruptReason::BadHeader(HeaderProblem::BadField { field, found, .. })) => {
                assert_eq!(field, "kind");
                found
            }
            other => panic!("expected a bad kind, got {other:?}"),
        }
    };
    // ASCII: exactly the first 80 bytes.
    let ascii = format!("\"{}\"", "a".repeat(100));
    assert_eq!(found(&ascii), ascii[..80]);
    // A two-byte character over bytes 79 and 80: the 79 bytes before it.
    let wide = format!("\"{}é{}\"", "a".repeat(78), "b".repeat(20));
    assert_eq!(found(&wide), format!("\"{}", "a".repeat(78)));
    // Short values whole.
    assert_eq!(found("\"log\""), "\"log\"");
}

/// What a refused frame says (the message an error that carries it shows).
#[test]
fn encode_errors_say_what_was_refused() {
    for (error, text) in [
        (
            EncodeError::TooLong { size: 5000 },
            "line of 5000 bytes exceeds 4096",
        ),
        (
            EncodeError::SeqOutOfRange { seq: u64::MAX },
            "sequence number 18446744073709551615 is past the last one, 18446744073709551614",
        ),
        (EncodeError::BadMarks, "u above seq, or more not below 1024"),
        (
            EncodeError::BadReference,
            "blob reference does not serialize",
        ),
    ] {
        assert_eq!(error.to_string(), text);
    }
}
