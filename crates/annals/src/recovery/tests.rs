use super::*;
use crate::codec::{encode_entry, encode_header, FileKind, Frame, Header, Marks, Version};
use crate::{ReplayOptions, SegmentId, SessionId};

fn file(version: Version, writes: &[(&[&str], bool)]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_header(
        &Header {
            annals: version.number(),
            kind: FileKind::Segment,
            session: SessionId::new(),
            segment: SegmentId::new(),
            generation: 0,
            created_ms: 0,
            fork: None,
        },
        &mut out,
    )
    .unwrap();
    let (mut seq, mut durable) = (0u64, 0u64);
    for (entries, sync) in writes {
        let n = entries.len() as u64;
        for (i, json) in entries.iter().enumerate() {
            let marks = Marks {
                appended_ms: 7,
                unsynced: seq - durable,
                more: n - 1 - i as u64,
            };
            let frame = Frame {
                version,
                seq,
                marks,
            };
            encode_entry(&frame, json, &mut out).unwrap();
            seq += 1;
        }
        if *sync {
            durable = seq;
        }
    }
    out
}

fn report(bytes: &[u8]) -> ScanReport {
    crate::check_image(
        std::path::Path::new("t"),
        bytes,
        &ReplayOptions::tolerant(),
        &mut |_| Ok(std::ops::ControlFlow::Continue(())),
    )
    .unwrap()
}

const ALL: [RecoveryMode; 3] = [
    RecoveryMode::AbsoluteConsistency,
    RecoveryMode::TolerateInterruptedTail,
    RecoveryMode::PointInTime,
];

#[test]
fn the_default_mode_tolerates_interrupted_tails() {
    assert_eq!(
        RecoveryMode::default(),
        RecoveryMode::TolerateInterruptedTail
    );
}

#[test]
fn a_clean_file_is_never_cut() {
    let bytes = file(Version::V2, &[(&["1"], true), (&["2", "3"], false)]);
    for mode in ALL {
        assert_eq!(plan(&report(&bytes), mode), RecoveryPlan::Clean);
    }
}

#[test]
fn a_torn_line_is_cut_in_every_mode() {
    let whole = file(Version::V1, &[(&["1"], false), (&["2"], false)]);
    let bytes = &whole[..whole.len() - 5];
    let r = report(bytes);
    let tail = r.torn_tail.unwrap();
    for mode in ALL {
        assert_eq!(
            plan(&r, mode),
            RecoveryPlan::Cut {
                keep: tail.offset,
                len: tail.len,
                why: CutReason::Interrupted(tail)
            }
        );
    }
}

#[test]
fn a_partial_batch_is_cut_except_in_absolute_consistency() {
    let whole = file(Version::V2, &[(&["1"], true), (&["2", "3", "4"], false)]);
    let bytes = &whole[..whole.len() - 5];
    let r = report(bytes);
    let tail = r.torn_tail.unwrap();
    assert_eq!(tail.kind, TailKind::PartialWrite { lines: 2, of: 3 });
    let cut = RecoveryPlan::Cut {
        keep: tail.offset,
        len: bytes.len() as u64 - tail.offset,
        why: CutReason::Interrupted(tail),
    };
    assert_eq!(plan(&r, RecoveryMode::TolerateInterruptedTail), cut);
    assert_eq!(plan(&r, RecoveryMode::PointInTime), cut);
    assert_eq!(
        plan(&r, RecoveryMode::AbsoluteConsistency),
        RecoveryPlan::Refuse(Problem {
            line: tail.line,
            offset: tail.offset,
            reason: CorruptReason::InterruptedWrite(TailKind::PartialWrite { lines: 2, of: 3 })
        })
    );
}

#[test]
fn damage_is_cut_only_at_a_point_in_time() {
    // Sync appends: the third line claims the second durable.
    let mut bytes = file(
        Version::V2,
        &[(&["1"], true), (&["2"], true), (&["3"], true)],
    );
    let r0 = report(&bytes);
    assert!(r0.is_clean());
    let second = bytes
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b'\n')
        .nth(1)
        .map(|(i, _)| i + 1)
        .unwrap();
    bytes[second + 30] ^= 0x04;
    let r = report(&bytes);
    let first = r.problems[0].clone();
    assert_eq!(first.offset, second as u64);
    assert_eq!(
        plan(&r, RecoveryMode::TolerateInterruptedTail),
        RecoveryPlan::Refuse(first.clone())
    );
    assert_eq!(
        plan(&r, RecoveryMode::AbsoluteConsistency),
        RecoveryPlan::Refuse(first.clone())
    );
    assert_eq!(
        plan(&r, RecoveryMode::PointInTime),
        RecoveryPlan::Cut {
            keep: second as u64,
            len: (bytes.len() - second) as u64,
            why: CutReason::Damage(first)
        }
    );
}

#[test]
fn a_damaged_header_leaves_nothing_to_keep() {
    let mut bytes = file(Version::V2, &[(&["1"], false)]);
    bytes[20] ^= 0x01;
    let r = report(&bytes);
    for mode in ALL {
        assert!(matches!(plan(&r, mode), RecoveryPlan::Refuse(p) if p.line == 1));
    }
}

/// What an error message says about an interrupted tail (a refused recovery, `annals verify`).
#[test]
fn each_tail_kind_says_what_the_bytes_are() {
    for (kind, text) in [
        (TailKind::TornLine, "a torn line"),
        (
            TailKind::PartialWrite { lines: 2, of: 5 },
            "a partial write: 2 of its 5 lines",
        ),
        (TailKind::ZeroFilled, "zero-filled bytes"),
        (TailKind::Garbage, "bytes that are not annals lines"),
        (
            TailKind::LostBlob,
            "a line whose blob never reached the disk",
        ),
    ] {
        assert_eq!(kind.to_string(), text);
    }
}
