//! `replay_image`: whole file images through `annals::check_image`, strict and tolerant, with
//! the report predicted line by line from the oracle.

use std::path::Path;

use annals::unstable::{self, Line};
use annals::{
    CorruptReason, Error, Problem, ReplayOptions, ScanReport, TailKind, TornTail, Version,
    FORMAT_VERSION,
};

use crate::oracle;

/// Checks the image as given and, if that changes it, with every line's CRC made to match (so
/// that mutations reach the checks behind the CRC).
pub fn check(data: &[u8]) {
    check_one(data);
    let fixed = oracle::fix_crcs(data);
    if fixed != data {
        check_one(&fixed);
    }
}

type Delivered = Vec<(u64, String)>;

fn run(image: &[u8], options: &ReplayOptions) -> (annals::Result<ScanReport>, Delivered) {
    let mut got = Vec::new();
    let result = annals::check_image(Path::new("image.jsonl"), image, options, &mut |entry| {
        got.push((entry.seq, oracle::shown(&entry)));
        Ok(std::ops::ControlFlow::Continue(()))
    });
    (result, got)
}

/// What a tolerant scan must report and deliver, computed from the oracle: exactly, for a
/// version-1 image (or one whose header is unreadable and whose lines are all of version 1's
/// shape); for version 2, whose verdict the unit tests pin against a model of crashes, the
/// invariants every report keeps and the agreement of strict and tolerant scans.
struct Expected {
    /// The prediction below is exact.
    exact: bool,
    problems: Vec<Problem>,
    delivered: Delivered,
    /// Offset of the line of each delivered entry.
    delivered_at: Vec<u64>,
    valid_up_to: u64,
    torn_tail: Option<TornTail>,
    /// A header of another format version: the scan must stop with this.
    version: Option<u64>,
}

fn push(problems: &mut Vec<Problem>, line: usize, offset: usize, reason: CorruptReason) {
    problems.push(Problem {
        line: line as u64,
        offset: offset as u64,
        reason,
    });
}

fn expect(image: &[u8]) -> Expected {
    let (lines, (tail_at, tail)) = oracle::split_lines(image);
    let mut problems = Vec::new();
    let mut delivered = Vec::new();
    let mut delivered_at = Vec::new();
    let mut version = None;
    let mut next_seq = 0u64;
    let mut exact = true;
    for (i, &(offset, line)) in lines.iter().enumerate() {
        if i == 0 {
            // What a header holds is serde's business; the line target checks that
            // decode_header agrees with the oracle on the frame.
            match unstable::decode_header(line) {
                Ok(h) => match h.version() {
                    None => {
                        version = Some(h.annals);
                        break;
                    }
                    Some(Version::V1) => {}
                    Some(_) => exact = false,
                },
                Err(reason) => push(&mut problems, 1, offset, reason),
            }
            continue;
        }
        if oracle::looks_v2(line) && problems.first().is_some_and(|p: &Problem| p.line == 1) {
            // Behind an unreadable header a line is read as what it looks like.
            exact = false;
        }
        match oracle::parse_deliverable(line) {
            Some((seq, json)) => {
                if seq != next_seq {
                    let reason = CorruptReason::SeqMismatch {
                        expected: next_seq,
                        found: seq,
                    };
                    push(&mut problems, i + 1, offset, reason);
                }
                next_seq = seq.saturating_add(1);
                delivered.push((seq, json));
                delivered_at.push(offset as u64);
            }
            None => {
                // A line shaped like a header is one out of place, readable or not.
                let reason = match unstable::decode_line(line, Version::V1) {
                    _ if oracle::is_header_shaped(line) => CorruptReason::UnexpectedHeader,
                    Err(reason) => reason,
                    Ok(Line::Header(_)) => CorruptReason::UnexpectedHeader,
                    Ok(Line::Entry { .. } | Line::Blob { .. }) => {
                        panic!("the codec delivers a line the oracle refuses")
                    }
                };
                push(&mut problems, i + 1, offset, reason);
            }
        }
    }
    let mut torn_tail = None;
    if !tail.is_empty() {
        if oracle::plausible_torn_tail(tail) {
            torn_tail = Some(TornTail::torn_line(
                lines.len() as u64 + 1,
                tail_at as u64,
                tail.len() as u64,
            ));
        } else {
            let len = tail.len() as u64;
            push(
                &mut problems,
                lines.len() + 1,
                tail_at,
                CorruptReason::BadTail { len },
            );
        }
    }
    if lines.is_empty() && problems.is_empty() {
        push(&mut problems, 1, 0, CorruptReason::MissingHeader);
    }
    Expected {
        exact,
        valid_up_to: problems.first().map_or(tail_at as u64, |p| p.offset),
        problems,
        delivered,
        delivered_at,
        torn_tail,
        version,
    }
}

fn check_one(image: &[u8]) {
    let len = image.len() as u64;
    let want = expect(image);
    let (tolerant, delivered) = run(image, &ReplayOptions::tolerant());
    let (strict, strict_delivered) = run(image, &ReplayOptions::strict());

    if let Some(found) = want.version {
        for result in [&tolerant, &strict] {
            match result {
                Err(Error::UnsupportedVersion {
                    found: f,
                    supported,
                    ..
                }) => {
                    assert_eq!(*f, found);
                    assert_eq!(*supported, FORMAT_VERSION);
                    assert!(Version::from_number(found).is_none());
                }
                other => panic!("a version {found} header must stop the scan, got {other:?}"),
            }
        }
        assert!(delivered.is_empty() && strict_delivered.is_empty());
        return;
    }

    let report = match tolerant {
        Ok(r) => r,
        Err(e) => panic!("a tolerant scan fails only on a foreign version, got {e}"),
    };
    // The invariants a reader of the report relies on, spelled out; the exact comparison with
    // the prediction follows.
    assert_eq!(report.file_len, len);
    assert!(report.valid_up_to <= len);
    assert!(report.valid_up_to == 0 || image[report.valid_up_to as usize - 1] == b'\n');
    assert!(report.problems.len() as u64 <= report.problem_count);
    assert!(report.problems.len() <= ScanReport::MAX_PROBLEMS);
    for p in &report.problems {
        assert!(
            p.offset < len || (len == 0 && p.offset == 0),
            "{p:?} outside the image"
        );
        assert!(
            p.offset == 0 || image[p.offset as usize - 1] == b'\n',
            "{p:?} mid-line"
        );
        assert!(p.line >= 1);
    }
    for w in report.problems.windows(2) {
        assert!(
            w[0].line < w[1].line && w[0].offset < w[1].offset,
            "{w:?} out of order"
        );
    }
    if let Some(t) = report.torn_tail {
        assert!(
            t.len > 0 && t.offset + t.len == len,
            "{t:?} is not the end of the image"
        );
        assert!(t.offset >= report.valid_up_to, "{t:?} before valid_up_to");
        assert!(
            t.offset == 0 || image[t.offset as usize - 1] == b'\n',
            "{t:?} mid-line"
        );
        if t.kind == TailKind::TornLine {
            assert!(!image[t.offset as usize..].contains(&b'\n'));
        }
        if report.is_clean() {
            assert_eq!(
                t.offset, report.valid_up_to,
                "{t:?}: the log ends where its tail begins"
            );
        }
    }

    if !want.exact {
        return check_agreement(image, &report, &delivered, strict, &strict_delivered);
    }

    let kept = want.problems.len().min(ScanReport::MAX_PROBLEMS);
    assert_eq!(report.problems, want.problems[..kept], "problems");
    assert_eq!(report.problem_count, want.problems.len() as u64);
    assert_eq!(report.valid_up_to, want.valid_up_to, "valid_up_to");
    assert_eq!(report.torn_tail, want.torn_tail, "torn tail");
    assert_eq!(report.entries, want.delivered.len() as u64);
    assert_eq!(delivered, want.delivered, "delivered entries");

    match strict {
        Ok(strict_report) => {
            assert!(report.is_clean(), "strict accepted an image with problems");
            assert_eq!(strict_report, report);
            assert_eq!(strict_delivered, delivered);
        }
        Err(Error::Corrupt {
            line,
            offset,
            reason,
            ..
        }) => {
            let first = report
                .problems
                .first()
                .expect("strict failed on a clean image");
            assert_eq!(
                (line, offset, &reason),
                (first.line, first.offset, &first.reason)
            );
            // Strict delivers what precedes the first problem, then stops.
            let before = want.delivered_at.iter().filter(|&&at| at < offset).count();
            assert_eq!(
                strict_delivered,
                want.delivered[..before],
                "strict delivered"
            );
        }
        Err(e) => panic!("strict scan failed with {e}, not corruption"),
    }

    // Starting later delivers a suffix and reports the same.
    if let Some(&(from, _)) = delivered.get(delivered.len() / 2) {
        let (later, later_delivered) = run(image, &ReplayOptions::tolerant().from_seq(from));
        assert_eq!(later.expect("tolerant"), report);
        let suffix: Delivered = delivered
            .iter()
            .filter(|(s, _)| *s >= from)
            .cloned()
            .collect();
        assert_eq!(later_delivered, suffix);
    }
}

/// A version-2 image: the strict and tolerant scans agree, and a scan from a later sequence
/// number delivers a suffix.
fn check_agreement(
    image: &[u8],
    report: &ScanReport,
    delivered: &Delivered,
    strict: annals::Result<ScanReport>,
    strict_delivered: &Delivered,
) {
    match strict {
        Ok(strict_report) => {
            assert!(report.is_clean(), "strict accepted an image with problems");
            assert_eq!(&strict_report, report);
            assert_eq!(strict_delivered, delivered);
        }
        Err(Error::Corrupt {
            line,
            offset,
            reason,
            ..
        }) => {
            let first = report
                .problems
                .first()
                .expect("strict failed on a clean image");
            assert_eq!(
                (line, offset, &reason),
                (first.line, first.offset, &first.reason)
            );
            assert_eq!(offset.max(report.valid_up_to), offset);
            // Strict hands out a prefix of what tolerant does.
            assert!(strict_delivered.len() <= delivered.len());
            assert_eq!(strict_delivered[..], delivered[..strict_delivered.len()]);
        }
        Err(e) => panic!("strict scan failed with {e}, not corruption"),
    }
    if let Some(&(from, _)) = delivered.get(delivered.len() / 2) {
        let (later, later_delivered) = run(image, &ReplayOptions::tolerant().from_seq(from));
        assert_eq!(&later.expect("tolerant"), report);
        let suffix: Delivered = delivered
            .iter()
            .filter(|(s, _)| *s >= from)
            .cloned()
            .collect();
        assert_eq!(later_delivered, suffix);
    }
}
