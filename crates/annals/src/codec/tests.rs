use super::*;

fn line_of(seq: u64, json: &str) -> Vec<u8> {
    let mut out = Vec::new();
    encode_entry(seq, json, &mut out).unwrap();
    out
}

fn strip(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\n").unwrap()
}

#[test]
fn entry_line_is_plain_json_with_crc_seq_and_entry() {
    let line = line_of(42, r#"{"role":"user","text":"hi"}"#);
    let text = std::str::from_utf8(&line).unwrap();
    assert!(text.ends_with('\n'));
    assert_eq!(text.matches('\n').count(), 1);
    let v: serde_json::Value = serde_json::from_str(text).unwrap();
    assert_eq!(v["seq"], 42);
    assert_eq!(v["e"]["text"], "hi");
    assert_eq!(v["crc"].as_str().unwrap().len(), 8);
    assert_eq!(
        decode_line(strip(&line)).unwrap(),
        Line::Entry {
            seq: 42,
            json: r#"{"role":"user","text":"hi"}"#
        }
    );
}

#[test]
fn crc_covers_every_byte_after_the_prefix() {
    let line = line_of(7, r#"{"a":[1,2,3]}"#);
    let body = strip(&line);
    for i in PREFIX_LEN..body.len() {
        let mut bad = body.to_vec();
        bad[i] ^= 0x01;
        assert!(decode_line(&bad).is_err(), "flip at {i} went unnoticed");
    }
}

#[test]
fn every_flipped_crc_digit_is_caught() {
    let line = line_of(7, r#"{"a":1}"#);
    let body = strip(&line);
    for i in 0..PREFIX_LEN {
        let mut bad = body.to_vec();
        bad[i] ^= 0x01;
        assert!(decode_line(&bad).is_err(), "flip at {i} went unnoticed");
    }
}

#[test]
fn line_at_exactly_the_limit_is_accepted_and_one_byte_over_is_refused() {
    let overhead = line_of(3, r#""""#).len() - 2;
    let fits = format!("\"{}\"", "x".repeat(MAX_LINE - overhead - 2));
    let mut out = Vec::new();
    assert_eq!(encode_entry(3, &fits, &mut out), Ok(MAX_LINE));
    assert_eq!(out.len(), MAX_LINE);
    assert!(decode_line(strip(&out)).is_ok());

    let over = format!("\"{}\"", "x".repeat(MAX_LINE - overhead - 1));
    let mut out = b"keep".to_vec();
    assert_eq!(encode_entry(3, &over, &mut out), Err(MAX_LINE + 1));
    assert_eq!(out, b"keep", "a refused entry leaves the buffer as it was");
}

#[test]
fn header_round_trips_and_is_distinguished_from_entries() {
    let header = Header {
        annals: u64::from(FORMAT_VERSION),
        kind: FileKind::Segment,
        session: SessionId::new(),
        segment: SegmentId::new(),
        generation: 3,
        created_ms: 1_700_000_000_000,
        fork: Some(Lineage {
            segment: SegmentId::new(),
            at: 12,
        }),
    };
    let mut out = Vec::new();
    encode_header(&header, &mut out).unwrap();
    let text = std::str::from_utf8(&out).unwrap();
    assert!(text.starts_with("{\"crc\":\""));
    assert!(text.contains("\"annals\":1,"), "{text}");
    assert_eq!(
        decode_line(strip(&out)).unwrap(),
        Line::Header(header.clone())
    );
    assert_eq!(decode_header(strip(&out)).unwrap(), header);
    assert_eq!(
        check_entry(strip(&out)).unwrap_err(),
        CorruptReason::UnexpectedHeader
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
        assert!(decode_line(bad).is_err());
    }
}

#[test]
fn torn_tails_must_look_like_the_start_of_a_line() {
    assert!(is_plausible_torn_tail(b"{\"cr"));
    assert!(is_plausible_torn_tail(b"{\"crc\":\"0011aabb\",\"seq\":4"));
    assert!(!is_plausible_torn_tail(b"garbage"));
    assert!(!is_plausible_torn_tail(&[b'{'; MAX_LINE]));
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
    assert!(examples.len() >= 2, "FORMAT.md lost its examples");
    for line in examples {
        assert!(
            decode_line(line.as_bytes()).is_ok(),
            "docs/FORMAT.md example does not decode: {line}\n{:?}",
            decode_line(line.as_bytes())
        );
    }
}
