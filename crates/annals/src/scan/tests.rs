use std::ops::ControlFlow;
use std::path::Path;

use proptest::prelude::*;

use super::*;
use crate::codec::{encode_blob, encode_entry, encode_header, Frame, Marks};
use crate::{Body, ReplayOptions};

/// One line of a built file, as the writer meant it.
#[derive(Debug, Clone)]
struct Built {
    offset: usize,
    end: usize,
    seq: u64,
    /// Index of its write.
    write: usize,
    /// The durable watermark it claims.
    claim: u64,
}

/// Builds files the way a format-2 writer does: writes of one or more lines, each line
/// claiming the writer's durable watermark, which a sync moves to the entry count.
struct Writer {
    version: Version,
    bytes: Vec<u8>,
    lines: Vec<Built>,
    /// Start offset of every write.
    writes: Vec<usize>,
    durable: u64,
    /// End of the bytes known durable (creation, then each sync).
    durable_end: usize,
    count: u64,
}

impl Writer {
    fn new(version: Version) -> Self {
        let mut bytes = Vec::new();
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
            &mut bytes,
        )
        .unwrap();
        let durable_end = bytes.len();
        Self {
            version,
            bytes,
            lines: Vec::new(),
            writes: Vec::new(),
            durable: 0,
            durable_end,
            count: 0,
        }
    }

    /// One write of `entries` (a batch when there are several), unsynced.
    fn write(&mut self, entries: &[&str]) -> &mut Self {
        let write = self.writes.len();
        self.writes.push(self.bytes.len());
        let n = entries.len() as u64;
        for (i, json) in entries.iter().enumerate() {
            let seq = self.count;
            let marks = Marks {
                appended_ms: 1_000 + write as u64,
                unsynced: seq - self.durable,
                more: n - 1 - i as u64,
            };
            let frame = Frame {
                version: self.version,
                seq,
                marks,
            };
            let offset = self.bytes.len();
            if let Some(text) = json.strip_prefix("blob:") {
                encode_blob(&frame, &crate::BlobRef::for_entry(text), &mut self.bytes).unwrap();
            } else {
                encode_entry(&frame, json, &mut self.bytes).unwrap();
            }
            self.lines.push(Built {
                offset,
                end: self.bytes.len(),
                seq,
                write,
                claim: self.durable,
            });
            self.count += 1;
        }
        self
    }

    fn sync(&mut self) -> &mut Self {
        self.durable = self.count;
        self.durable_end = self.bytes.len();
        self
    }

    /// A `Sync` append: the write, then its fsync.
    fn durable_write(&mut self, entries: &[&str]) -> &mut Self {
        self.write(entries).sync()
    }

    fn entries(&mut self, n: u64) -> &mut Self {
        for i in 0..n {
            self.write(&[&format!("{{\"n\":{i}}}")]);
        }
        self
    }

    fn line(&self, seq: u64) -> &Built {
        &self.lines[usize::try_from(seq).unwrap()]
    }
}

#[derive(Debug)]
struct Scan {
    result: crate::Result<ScanReport>,
    seqs: Vec<u64>,
    times: Vec<Option<u64>>,
}

fn scan_with(bytes: &[u8], options: &ReplayOptions) -> Scan {
    let mut seqs = Vec::new();
    let mut times = Vec::new();
    let result = crate::check_image(Path::new("t.jsonl"), bytes, options, &mut |e| {
        seqs.push(e.seq);
        times.push(e.appended_ms);
        Ok(ControlFlow::Continue(()))
    });
    Scan {
        result,
        seqs,
        times,
    }
}

fn strict(bytes: &[u8]) -> Scan {
    scan_with(bytes, &ReplayOptions::strict())
}

fn tolerant(bytes: &[u8]) -> Scan {
    scan_with(bytes, &ReplayOptions::tolerant())
}

/// The verify path over the same bytes: no deliveries but blob lines.
fn verify(bytes: &[u8]) -> ScanReport {
    let committed = memchr::memrchr(b'\n', bytes).map_or(0, |nl| nl + 1);
    let (lines, tail) = bytes.split_at(committed);
    let mut c = Checker::new(ReadMode::Tolerant, 0, false, None);
    let mut skip = |_: Delivery<'_>| Ok(ControlFlow::Continue(()));
    let fed = c.feed(lines, 0, &mut skip);
    assert!(matches!(fed, Ok(ControlFlow::Continue(_))), "{fed:?}");
    let shown = &tail[..tail.len().min(MAX_LINE)];
    c.tail(committed as u64, shown, tail.len() as u64).unwrap();
    let mut report = c.finish(bytes.len() as u64).unwrap().0;
    report.path = Some("t.jsonl".into());
    report
}

fn interrupted(report: &ScanReport) -> TornTail {
    assert!(report.is_clean(), "{report:?}");
    report.torn_tail.expect("an interrupted tail")
}

fn corrupt(scan: &Scan) -> (u64, u64, CorruptReason) {
    match &scan.result {
        Err(Error::Corrupt {
            line,
            offset,
            reason,
            ..
        }) => (*line, *offset, reason.clone()),
        other => panic!("expected damage, got {other:?}"),
    }
}

#[test]
fn clean_file_delivers_every_entry_in_order_with_its_time() {
    let mut w = Writer::new(Version::V2);
    w.entries(3).write(&["1", "2"]);
    let s = strict(&w.bytes);
    let report = s.result.unwrap();
    assert_eq!(s.seqs, vec![0, 1, 2, 3, 4]);
    assert_eq!(
        s.times,
        vec![Some(1000), Some(1001), Some(1002), Some(1003), Some(1003)]
    );
    assert!(report.is_clean() && report.torn_tail.is_none());
    assert_eq!(report.valid_up_to, w.bytes.len() as u64);
    assert_eq!(report.entries, 5);
    assert_eq!(verify(&w.bytes), report);
}

#[test]
fn version_1_entries_have_no_time() {
    let mut w = Writer::new(Version::V1);
    w.entries(2);
    let s = strict(&w.bytes);
    assert_eq!(s.times, vec![None, None]);
    assert!(s.result.unwrap().is_clean());
}

/// The case of issue 17: three entries, then 46 zero bytes and the rest of a line.
fn zeros_then_the_rest_of_a_line(version: Version) -> (Writer, Vec<u8>) {
    let mut w = Writer::new(version);
    w.sync().entries(3);
    let mut bytes = w.bytes.clone();
    bytes.extend_from_slice(&[0u8; 46]);
    bytes.extend_from_slice(b"3b5dac226a6f6acade9e\"}}\n");
    (w, bytes)
}

#[test]
fn zeros_then_the_rest_of_a_line_are_an_interrupted_tail_in_format_2() {
    let (w, bytes) = zeros_then_the_rest_of_a_line(Version::V2);
    let end = w.bytes.len() as u64;
    let s = strict(&bytes);
    let report = s.result.unwrap();
    assert_eq!(s.seqs, vec![0, 1, 2]);
    assert_eq!(
        interrupted(&report),
        TornTail {
            line: 5,
            offset: end,
            len: bytes.len() as u64 - end,
            kind: TailKind::ZeroFilled
        }
    );
    assert_eq!(report.valid_up_to, end);
    assert_eq!(report.entries, 3);
    assert_eq!(tolerant(&bytes).result.unwrap(), report);
    assert_eq!(verify(&bytes), report);
}

#[test]
fn zeros_then_the_rest_of_a_line_stay_damage_in_format_1() {
    let (w, bytes) = zeros_then_the_rest_of_a_line(Version::V1);
    let s = strict(&bytes);
    assert_eq!(
        corrupt(&s),
        (5, w.bytes.len() as u64, CorruptReason::BadPrefix)
    );
    assert_eq!(s.seqs, vec![0, 1, 2]);
}

#[test]
fn garbage_with_or_without_a_newline_is_an_interrupted_tail() {
    for (garbage, kind) in [
        (&b"not a line at all\n"[..], TailKind::Garbage),
        (b"not a line at all", TailKind::Garbage),
        (&[0u8; 100], TailKind::ZeroFilled),
        (&[0u8; 5000], TailKind::ZeroFilled),
    ] {
        let mut w = Writer::new(Version::V2);
        w.entries(2);
        let end = w.bytes.len() as u64;
        let mut bytes = w.bytes.clone();
        bytes.extend_from_slice(garbage);
        let report = strict(&bytes).result.unwrap();
        let tail = interrupted(&report);
        assert_eq!(
            (tail.offset, tail.len, tail.kind),
            (end, garbage.len() as u64, kind),
            "{garbage:?}"
        );
        assert_eq!(verify(&bytes), report);
    }
}

#[test]
fn a_partial_batch_is_cut_whole_and_none_of_it_is_delivered() {
    let mut w = Writer::new(Version::V2);
    w.entries(2).write(&["\"a\"", "\"b\"", "\"c\""]);
    let batch = w.writes[2] as u64;
    // Cut inside the third line, and right after the second.
    for cut in [w.line(4).offset + 10, w.line(4).offset] {
        let bytes = &w.bytes[..cut];
        let s = strict(bytes);
        let report = s.result.unwrap();
        assert_eq!(s.seqs, vec![0, 1], "cut at {cut}");
        assert_eq!(
            interrupted(&report),
            TornTail {
                line: 4,
                offset: batch,
                len: cut as u64 - batch,
                kind: TailKind::PartialWrite { lines: 2, of: 3 }
            }
        );
        assert_eq!(report.entries, 2);
        let t = tolerant(bytes);
        assert_eq!(t.seqs, vec![0, 1]);
        assert_eq!(t.result.unwrap(), report);
        assert_eq!(verify(bytes), report);
    }
    // Whole, it is delivered whole.
    assert_eq!(strict(&w.bytes).seqs, vec![0, 1, 2, 3, 4]);
}

#[test]
fn a_line_that_does_not_continue_its_write_is_damage() {
    let mut w = Writer::new(Version::V2);
    w.entries(1).write(&["1", "2", "3"]);
    // The batch's second line says it is the last: only a writer can make that, never a crash.
    let second = w.line(2).clone();
    let mut bytes = w.bytes[..second.offset].to_vec();
    encode_entry(
        &Frame::v2(
            2,
            Marks {
                appended_ms: 1001,
                unsynced: 2,
                more: 0,
            },
        ),
        "2",
        &mut bytes,
    )
    .unwrap();
    bytes.extend_from_slice(&w.bytes[second.end..]);
    let s = strict(&bytes);
    assert_eq!(
        corrupt(&s),
        (
            4,
            second.offset as u64,
            CorruptReason::BrokenWrite {
                lines: 1,
                of: 3,
                more: 0
            }
        )
    );
    assert_eq!(s.seqs, vec![0]);
    let t = tolerant(&bytes);
    assert_eq!(
        t.seqs,
        vec![0, 2, 3],
        "the broken write's first line is never handed out"
    );
    assert_eq!(t.result.unwrap().problem_count, 1);
}

#[test]
fn a_hole_with_lines_after_it_is_an_interrupted_tail_when_nothing_after_it_was_durable() {
    // Buffered: three writes in flight since the last sync (group commit looks the same).
    let mut w = Writer::new(Version::V2);
    w.entries(2)
        .sync()
        .write(&["\"x\""])
        .write(&["\"y\"", "\"z\""])
        .write(&["\"w\""]);
    let hole = w.line(2).clone();
    let mut bytes = w.bytes.clone();
    bytes[hole.offset..hole.end].fill(0);
    for s in [strict(&bytes), tolerant(&bytes)] {
        assert_eq!(s.seqs, vec![0, 1], "nothing past the hole is handed out");
        let report = s.result.unwrap();
        assert_eq!(
            interrupted(&report),
            TornTail {
                line: 4,
                offset: hole.offset as u64,
                len: (bytes.len() - hole.offset) as u64,
                kind: TailKind::ZeroFilled
            }
        );
        assert_eq!(report.entries, 2);
    }
    assert_eq!(verify(&bytes).torn_tail.unwrap().offset, hole.offset as u64);
}

#[test]
fn a_bad_line_that_a_later_write_claims_durable_is_never_an_interrupted_tail() {
    // Sync: every append is durable before the next is written.
    let mut w = Writer::new(Version::V2);
    w.durable_write(&["1"])
        .durable_write(&["2"])
        .durable_write(&["3"])
        .durable_write(&["4"]);
    let bad = w.line(1).clone();
    let mut bytes = w.bytes.clone();
    bytes[bad.offset + 30] ^= 0x20;
    let s = strict(&bytes);
    let (line, offset, reason) = corrupt(&s);
    assert_eq!((line, offset), (3, bad.offset as u64));
    assert!(matches!(reason, CorruptReason::CrcMismatch { .. }));
    assert_eq!(s.seqs, vec![0]);
    let t = tolerant(&bytes);
    let report = t.result.unwrap();
    assert_eq!(t.seqs, vec![0, 2, 3], "tolerant hands out what is intact");
    assert_eq!(report.problems[0].offset, bad.offset as u64);
    assert_eq!(
        report.problem_count, 2,
        "the bad line, then the gap it leaves"
    );
    assert_eq!(report.valid_up_to, bad.offset as u64);
    assert_eq!(report.torn_tail, None);
    assert_eq!(verify(&bytes), report);

    // The same hole with only unsynced writes after it is an interrupted tail.
    let mut w = Writer::new(Version::V2);
    w.durable_write(&["1"]).write(&["2"]).write(&["3"]);
    let mut bytes = w.bytes.clone();
    bytes[w.line(1).offset + 30] ^= 0x20;
    assert_eq!(
        strict(&bytes).result.unwrap().torn_tail.unwrap().kind,
        TailKind::Garbage
    );
}

#[test]
fn a_hole_in_a_durable_batch_is_damage_once_a_later_write_says_so() {
    let mut w = Writer::new(Version::V2);
    w.write(&["1", "2", "3"]).sync().write(&["4"]);
    let mut bytes = w.bytes.clone();
    let second = w.line(1).clone();
    bytes[second.offset..second.end - 1].fill(0);
    let s = strict(&bytes);
    assert_eq!(corrupt(&s).1, second.offset as u64);
    assert!(s.seqs.is_empty(), "the batch is not handed out in part");
}

#[test]
fn seq_mismatch_and_header_problems_are_damage_whatever_follows() {
    let mut w = Writer::new(Version::V2);
    w.entries(2);
    let mut bytes = w.bytes.clone();
    // A second writer's line with a repeated sequence number.
    encode_entry(&Frame::v2(1, Marks::default()), "9", &mut bytes).unwrap();
    let s = strict(&bytes);
    assert_eq!(
        corrupt(&s).2,
        CorruptReason::SeqMismatch {
            expected: 2,
            found: 1
        }
    );
    let report = tolerant(&bytes).result.unwrap();
    assert_eq!(report.problem_count, 1);
    assert_eq!(report.torn_tail, None);
}

#[test]
fn a_damaged_header_is_one_problem_not_two() {
    let mut w = Writer::new(Version::V2);
    w.entries(2);
    let mut bytes = w.bytes.clone();
    bytes[25] ^= 0x01;
    let report = tolerant(&bytes).result.unwrap();
    assert_eq!(report.problem_count, 1, "{report:?}");
    assert!(matches!(
        report.problems[0].reason,
        CorruptReason::CrcMismatch { .. }
    ));
    assert_eq!(report.problems[0].line, 1);
    assert_eq!(report.valid_up_to, 0);
    assert_eq!(
        corrupt(&strict(&bytes)),
        report.problems[0].clone().into_parts()
    );
    // An empty file has no header: one problem.
    let report = tolerant(b"").result.unwrap();
    assert_eq!(report.problems.len(), 1);
    assert_eq!(report.problems[0].reason, CorruptReason::MissingHeader);
}

impl crate::Problem {
    fn into_parts(self) -> (u64, u64, CorruptReason) {
        (self.line, self.offset, self.reason)
    }
}

#[test]
fn a_report_keeps_a_thousand_problems_and_counts_the_rest() {
    let mut w = Writer::new(Version::V1);
    w.entries(1);
    let mut bytes = w.bytes.clone();
    for _ in 0..1500 {
        bytes.extend_from_slice(b"garbage\n");
    }
    let report = tolerant(&bytes).result.unwrap();
    assert_eq!(report.problem_count, 1500);
    assert_eq!(report.problems.len(), ScanReport::MAX_PROBLEMS);
    assert_eq!(ScanReport::MAX_PROBLEMS, 1000);
    assert_eq!(report.problems[999].line, 1002);
}

#[test]
fn replay_from_a_seq_skips_earlier_entries_kept_as_blobs() {
    let mut w = Writer::new(Version::V2);
    w.write(&["0"])
        .write(&["blob:\"early\""])
        .write(&["2", "blob:\"batch\"", "4"])
        .write(&["blob:\"late\""]);
    let mut seen = Vec::new();
    let report = crate::check_image(
        Path::new("t"),
        &w.bytes,
        &ReplayOptions::strict().from_seq(3),
        &mut |e| {
            seen.push((e.seq, matches!(e.body, Body::Blob { .. })));
            Ok(ControlFlow::Continue(()))
        },
    )
    .unwrap();
    assert_eq!(seen, vec![(3, true), (4, false), (5, true)]);
    assert_eq!(report.entries, 6);
}

#[test]
fn a_blob_reported_bad_is_damage_at_its_line_or_an_interrupted_tail() {
    let check = |w: &Writer, bad_seq: u64| {
        let mut c = Checker::new(ReadMode::Tolerant, 0, false, None);
        let mut sink = |d: Delivery<'_>| {
            if let Delivery::Blob { seq, verdict, .. } = d {
                if seq == bad_seq {
                    verdict.report(CorruptReason::Blob {
                        id: crate::BlobId::of(b"x"),
                        problem: crate::BlobFault::Missing,
                    });
                }
            }
            Ok(ControlFlow::Continue(()))
        };
        assert!(c.feed(&w.bytes, 0, &mut sink).is_ok());
        c.finish(w.bytes.len() as u64).unwrap().0
    };
    // Buffered, nothing synced after it: the blob never reached the disk.
    let mut w = Writer::new(Version::V2);
    w.entries(1).write(&["blob:\"a\"", "2"]);
    let report = check(&w, 1);
    assert_eq!(
        interrupted(&report),
        TornTail {
            line: 3,
            offset: w.writes[1] as u64,
            len: (w.bytes.len() - w.writes[1]) as u64,
            kind: TailKind::LostBlob
        }
    );
    // Synced and followed by a write that says so: damage at the blob's line.
    w.sync().write(&["3"]);
    let report = check(&w, 1);
    assert_eq!(report.problem_count, 1);
    assert_eq!(report.problems[0].line, 3);
    assert_eq!(report.problems[0].offset, w.line(1).offset as u64);
    assert_eq!(report.valid_up_to, w.writes[1] as u64);
}

#[test]
fn a_tolerant_scan_hands_out_held_writes_once_the_damage_is_certain() {
    let mut w = Writer::new(Version::V2);
    w.entries(1)
        .sync()
        .write(&["1"])
        .write(&["2", "3"])
        .sync()
        .write(&["4"]);
    let mut bytes = w.bytes.clone();
    bytes[w.line(1).offset + 25] ^= 0x02;
    let t = tolerant(&bytes);
    assert_eq!(t.seqs, vec![0, 2, 3, 4]);
    assert!(!t.result.unwrap().is_clean());
}

#[test]
fn a_torn_line_is_a_torn_tail_in_both_versions() {
    for version in [Version::V1, Version::V2] {
        let mut w = Writer::new(version);
        w.entries(3);
        let full = w.bytes.len();
        w.entries(1);
        let bytes = &w.bytes[..full + 10];
        let s = strict(bytes);
        assert_eq!(s.seqs.len(), 3);
        assert_eq!(
            s.result.unwrap().torn_tail,
            Some(TornTail::torn_line(5, full as u64, 10))
        );
    }
}

#[test]
fn a_header_of_another_version_stops_the_scan() {
    let mut bytes = Vec::new();
    let covered = br#""annals":5,"kind":"segment"}"#;
    bytes.extend_from_slice(format!("{{\"crc\":\"{:08x}\",", crc32fast::hash(covered)).as_bytes());
    bytes.extend_from_slice(covered);
    bytes.push(b'\n');
    assert!(matches!(
        strict(&bytes).result,
        Err(Error::UnsupportedVersion {
            found: 5,
            supported: 4,
            ..
        })
    ));
}

#[test]
fn a_sink_that_stops_ends_the_scan_with_what_was_read() {
    let mut w = Writer::new(Version::V2);
    w.write(&["0", "1", "2"]).write(&["3"]);
    let mut seen = Vec::new();
    let report = crate::check_image(
        Path::new("t"),
        &w.bytes,
        &ReplayOptions::strict(),
        &mut |e| {
            seen.push(e.seq);
            Ok(if e.seq == 1 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            })
        },
    )
    .unwrap();
    assert_eq!(seen, vec![0, 1]);
    assert!(report.stopped);
}

// ---------------------------------------------------------------------------------------------
// The classifier against a model of the crash: which bytes were durable is known, so is what
// the verdict must be.

/// A generated history: writes of 1 to 4 lines, some followed by a sync.
fn history() -> impl Strategy<Value = Vec<(usize, bool)>> {
    prop::collection::vec((1usize..=4, prop::bool::weighted(0.3)), 1..12)
}

/// What a power cut left: the file up to `len` bytes, every 64-byte page after the last sync
/// either written or still zeros, and maybe one flipped byte in a line known durable.
#[derive(Debug, Clone)]
struct Crash {
    len_pick: prop::sample::Index,
    pages: Vec<bool>,
    flip: Option<(prop::sample::Index, u8)>,
}

fn crash() -> impl Strategy<Value = Crash> {
    (
        any::<prop::sample::Index>(),
        prop::collection::vec(prop::bool::weighted(0.7), 64),
        prop::option::weighted(0.3, (any::<prop::sample::Index>(), 1u8..=255)),
    )
        .prop_map(|(len_pick, pages, flip)| Crash {
            len_pick,
            pages,
            flip,
        })
}

const PAGE: usize = 64;

fn build(history: &[(usize, bool)]) -> Writer {
    let mut w = Writer::new(Version::V2);
    for (i, &(n, sync)) in history.iter().enumerate() {
        let entries: Vec<String> = (0..n)
            .map(|k| {
                format!(
                    "{{\"w\":{i},\"k\":{k},\"pad\":\"{}\"}}",
                    "p".repeat((i * 7 + k * 13) % 50)
                )
            })
            .collect();
        let refs: Vec<&str> = entries.iter().map(String::as_str).collect();
        w.write(&refs);
        if sync {
            w.sync();
        }
    }
    w
}

/// The image a crash leaves, and the line that a flip damaged, if any.
fn image(w: &Writer, c: &Crash) -> (Vec<u8>, Option<usize>) {
    let durable = w.durable_end;
    let len = durable + c.len_pick.index(w.bytes.len() - durable + 1);
    let mut bytes = w.bytes[..len].to_vec();
    for (i, b) in bytes.iter_mut().enumerate().skip(durable) {
        if !c.pages.get(i / PAGE).copied().unwrap_or(true) {
            *b = 0;
        }
    }
    let mut flipped = None;
    if let Some((at, x)) = &c.flip {
        // A durable byte of an entry line, never a newline, never made one.
        let header_end = w.lines.first().map_or(durable, |l| l.offset);
        if durable > header_end {
            let i = header_end + at.index(durable - header_end);
            if bytes[i] != b'\n' && bytes[i] ^ x != b'\n' {
                bytes[i] ^= x;
                flipped = w.lines.iter().position(|l| l.offset <= i && i < l.end);
            }
        }
    }
    (bytes, flipped)
}

/// What the verdict must be, from the history and the image, written from the rules in
/// docs/FORMAT.md rather than from the checker: `Ok((c, entries))` for an interrupted tail at
/// C (C = the file's end when nothing is wrong), `Err(offset of F)` for damage.
fn model(w: &Writer, bytes: &[u8]) -> Result<(usize, usize), usize> {
    let intact =
        |l: &Built| l.end <= bytes.len() && bytes[l.offset..l.end] == w.bytes[l.offset..l.end];
    let Some(first_bad) = w.lines.iter().position(|l| !intact(l)) else {
        // Every line is whole; whatever follows the last one is a torn line or nothing.
        let end = w
            .lines
            .last()
            .map_or(w.durable_end.min(bytes.len()), |l| l.end);
        return Ok((end, w.lines.len()));
    };
    let f = &w.lines[first_bad];
    let c = w.writes[f.write];
    let s_c = w
        .lines
        .iter()
        .find(|l| l.write == f.write)
        .map_or(0, |l| l.seq);
    // Lines a reader sees as lines: whole, and right after a newline.
    let claimed = w.lines[first_bad..]
        .iter()
        .any(|l| intact(l) && (l.offset == 0 || bytes[l.offset - 1] == b'\n') && l.claim > s_c);
    if claimed {
        Err(f.offset)
    } else {
        Ok((c, usize::try_from(s_c).unwrap()))
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_verdict_after_any_power_cut_is_the_models(h in history(), c in crash()) {
        let w = build(&h);
        let (bytes, _) = image(&w, &c);
        let want = model(&w, &bytes);
        let s = strict(&bytes);
        let t = tolerant(&bytes);
        let v = verify(&bytes);
        match want {
            Ok((end, entries)) => {
                let report = s.result.expect("strict replay never fails on an interrupted tail");
                prop_assert!(report.is_clean());
                prop_assert_eq!(report.valid_up_to, end as u64);
                prop_assert_eq!(report.entries, entries as u64);
                prop_assert_eq!(&s.seqs, &(0..entries as u64).collect::<Vec<_>>());
                if end < bytes.len() {
                    let tail = report.torn_tail.expect("a tail");
                    prop_assert_eq!((tail.offset, tail.len), (end as u64, (bytes.len() - end) as u64));
                } else {
                    prop_assert_eq!(report.torn_tail, None);
                }
                prop_assert_eq!(&t.seqs, &s.seqs);
                prop_assert_eq!(t.result.expect("tolerant"), report.clone());
                prop_assert_eq!(v, report);
            }
            Err(offset) => {
                let (_, at, _) = corrupt(&s);
                prop_assert_eq!(at, offset as u64);
                prop_assert!(s.seqs.iter().all(|&q| (w.line(q).end as u64) <= at));
                let report = t.result.expect("tolerant");
                prop_assert_eq!(report.problems[0].offset, offset as u64);
                prop_assert_eq!(v.problems[0].offset, offset as u64);
            }
        }
    }
}

#[test]
fn a_run_longer_than_any_line_is_a_zero_filled_tail_whatever_its_bytes() {
    // Zeros that swallowed the newlines leave one over-long run; so does any run of 4096 bytes
    // or more, with or without a newline, zero bytes or not (docs/FORMAT.md, `TailKind`).
    for (run, newline) in [(vec![b'x'; 5000], true), (vec![b'x'; 5000], false)] {
        let mut w = Writer::new(Version::V2);
        w.entries(2);
        let end = w.bytes.len() as u64;
        let mut bytes = w.bytes.clone();
        bytes.extend_from_slice(&run);
        if newline {
            bytes.push(b'\n');
        }
        let report = strict(&bytes).result.unwrap();
        let tail = interrupted(&report);
        assert_eq!(
            (tail.line, tail.offset, tail.len, tail.kind),
            (4, end, bytes.len() as u64 - end, TailKind::ZeroFilled),
            "newline: {newline}"
        );
        assert_eq!(verify(&bytes), report);
    }
}

/// The streaming reader's way through lines too long to buffer: it skips each one and tells
/// the checker where it starts and how long it is.
#[test]
fn each_line_too_long_to_buffer_is_a_problem_at_its_own_line() {
    let mut w = Writer::new(Version::V1);
    w.entries(2);
    let first = w.bytes.len();
    w.bytes.extend_from_slice(&[b'x'; 5000]);
    w.bytes.push(b'\n');
    w.entries(1);
    let second = w.bytes.len();
    w.bytes.extend_from_slice(&[b'y'; 6000]);
    w.bytes.push(b'\n');
    w.entries(1);
    let bytes = w.bytes.clone();
    let run = |mode: ReadMode| {
        let mut c = Checker::new(mode, 0, true, None);
        let mut seqs = Vec::new();
        let mut sink = |d: Delivery<'_>| {
            if let Delivery::Entry { seq, .. } = d {
                seqs.push(seq);
            }
            Ok(ControlFlow::Continue(()))
        };
        let pieces = [
            (0, first),
            (first + 5001, second),
            (second + 6001, bytes.len()),
        ];
        let mut result = Ok(());
        for (i, &(from, to)) in pieces.iter().enumerate() {
            let fed = c.feed(&bytes[from..to], from as u64, &mut sink);
            assert!(matches!(fed, Ok(ControlFlow::Continue(n)) if n == to - from));
            if result.is_ok() && i == 0 {
                result = c.oversize(first as u64, 5000);
            } else if result.is_ok() && i == 1 {
                result = c.oversize(second as u64, 6000);
            }
        }
        let verdict = result.and_then(|()| c.finish(bytes.len() as u64).map(|r| r.0));
        (verdict, seqs)
    };

    let (report, seqs) = run(ReadMode::Tolerant);
    let report = report.unwrap();
    assert_eq!(seqs, vec![0, 1, 2, 3]);
    let problems: Vec<_> = report
        .problems
        .iter()
        .map(|p| (p.line, p.offset, p.reason.clone()))
        .collect();
    assert_eq!(
        problems,
        vec![
            (4, first as u64, CorruptReason::TooLong { len: 5000 }),
            (6, second as u64, CorruptReason::TooLong { len: 6000 }),
        ]
    );
    assert_eq!(report.problem_count, 2);
    assert_eq!(report.valid_up_to, first as u64);
    assert_eq!(report.entries, 4);

    let (stopped, seqs) = run(ReadMode::Strict);
    assert_eq!(seqs, vec![0, 1]);
    match stopped {
        Err(Stop::Corrupt {
            line,
            offset,
            reason,
        }) => assert_eq!(
            (line, offset, reason),
            (4, first as u64, CorruptReason::TooLong { len: 5000 })
        ),
        other => panic!("expected damage at the first long line, got {other:?}"),
    }
}

/// Held entries are bounded (docs/FORMAT.md: "at most 8 MiB of entries"): past that a tolerant
/// read stops waiting for the verdict on the problem before them and hands them out; what it
/// holds at the end of the file is the interrupted tail and is dropped.
#[test]
fn a_tolerant_read_holds_at_most_8_mib_of_entries_waiting_for_a_verdict() {
    let text = format!("\"{}\"", "a".repeat(3900));
    let mut w = Writer::new(Version::V2);
    w.entries(1).sync().write(&["\"hole\""]);
    let hole = w.line(1).clone();
    // Enough unsynced single-line writes after the hole for the held text to pass 8 MiB once.
    let per_overflow = 8 * 1024 * 1024 / text.len() + 1;
    let after = per_overflow + 100;
    for _ in 0..after {
        w.write(&[text.as_str()]);
    }
    let mut bytes = w.bytes.clone();
    bytes[hole.offset..hole.end - 1].fill(0);
    let t = tolerant(&bytes);
    let handed_out: Vec<u64> = std::iter::once(0)
        .chain(2..2 + per_overflow as u64)
        .collect();
    assert_eq!(t.seqs, handed_out);
    let report = t.result.unwrap();
    assert_eq!(interrupted(&report).offset, hole.offset as u64);
    // Under 8 MiB they are all held, and all dropped with the tail.
    let short = w.line(1 + per_overflow as u64 - 1).end;
    let t = tolerant(&bytes[..short]);
    assert_eq!(t.seqs, vec![0]);
    assert_eq!(interrupted(&t.result.unwrap()).offset, hole.offset as u64);

    // Exactly 8 MiB is still held: 4096 entries of 2048 bytes.
    let exact = format!("\"{}\"", "b".repeat(2046));
    let mut w = Writer::new(Version::V2);
    w.entries(1).sync().write(&["\"hole\""]);
    for _ in 0..4096 {
        w.write(&[exact.as_str()]);
    }
    let mut bytes = w.bytes.clone();
    bytes[hole.offset..hole.end - 1].fill(0);
    assert_eq!(tolerant(&bytes).seqs, vec![0]);
    w.write(&[exact.as_str()]);
    let mut bytes = w.bytes.clone();
    bytes[hole.offset..hole.end - 1].fill(0);
    assert_eq!(tolerant(&bytes).seqs.len(), 1 + 4097);

    // When the line that passes 8 MiB begins a batch, the complete writes before it go out and
    // the batch stays held: never handed out in part, and dropped at the end of the file.
    let mut w = Writer::new(Version::V2);
    w.entries(1).sync().write(&["\"hole\""]);
    for _ in 0..per_overflow - 1 {
        w.write(&[text.as_str()]);
    }
    w.write(&[text.as_str(), text.as_str(), text.as_str()]);
    let mut bytes = w.bytes.clone();
    bytes[hole.offset..hole.end - 1].fill(0);
    let t = tolerant(&bytes);
    let complete: Vec<u64> = std::iter::once(0)
        .chain(2..2 + per_overflow as u64 - 1)
        .collect();
    assert_eq!(t.seqs, complete);
    assert_eq!(interrupted(&t.result.unwrap()).offset, hole.offset as u64);
}

#[test]
fn a_bad_line_that_claims_nothing_durable_does_not_end_the_wait_for_the_verdict() {
    // After a hole in unsynced writes, a complete write is held; then a line whose frame and
    // CRC check out but whose entry is not UTF-8, and which claims only what was synced. It is
    // one more problem in what may be an interrupted tail, not a reason to hand out the write.
    let mut w = Writer::new(Version::V2);
    w.entries(1)
        .sync()
        .write(&["\"hole\""])
        .write(&["\"held\""]);
    let hole = w.line(1).clone();
    let mut bytes = w.bytes.clone();
    bytes[hole.offset..hole.end - 1].fill(0);
    let covered = b"\"seq\":3,\"t\":5,\"u\":2,\"e\":\"\xff\"}";
    bytes.extend_from_slice(format!("{{\"crc\":\"{:08x}\",", crc32fast::hash(covered)).as_bytes());
    bytes.extend_from_slice(covered);
    bytes.push(b'\n');
    let t = tolerant(&bytes);
    assert_eq!(t.seqs, vec![0]);
    let report = t.result.unwrap();
    assert_eq!(interrupted(&report).offset, hole.offset as u64);
    assert_eq!(report.entries, 1);

    // The same line claiming the hole durable (u = 1: everything below seq 2) makes it damage:
    // the held write goes out, and the hole, the gap it leaves and the bad line are problems.
    let mut bytes = bytes[..w.bytes.len()].to_vec();
    let covered = b"\"seq\":3,\"t\":5,\"u\":1,\"e\":\"\xff\"}";
    bytes.extend_from_slice(format!("{{\"crc\":\"{:08x}\",", crc32fast::hash(covered)).as_bytes());
    bytes.extend_from_slice(covered);
    bytes.push(b'\n');
    let t = tolerant(&bytes);
    assert_eq!(t.seqs, vec![0, 2]);
    let report = t.result.unwrap();
    assert_eq!(report.torn_tail, None);
    assert_eq!(report.problem_count, 3);
    assert_eq!(report.valid_up_to, hole.offset as u64);
}

#[test]
fn a_partial_batch_after_a_sync_is_an_interrupted_tail() {
    // Everything before the batch was durable, so its lines claim exactly the entries before
    // it (`seq - u` = the batch's first seq): that is no claim on the batch itself.
    let mut w = Writer::new(Version::V2);
    w.entries(2).sync().write(&["\"a\"", "\"b\"", "\"c\""]);
    assert_eq!(w.line(2).claim, 2);
    let batch = w.writes[2] as u64;
    let cut = w.line(4).offset + 10;
    for s in [strict(&w.bytes[..cut]), tolerant(&w.bytes[..cut])] {
        assert_eq!(s.seqs, vec![0, 1]);
        assert_eq!(
            interrupted(&s.result.unwrap()),
            TornTail {
                line: 4,
                offset: batch,
                len: cut as u64 - batch,
                kind: TailKind::PartialWrite { lines: 2, of: 3 }
            }
        );
    }
}

#[test]
fn a_write_left_unfinished_whose_own_lines_claim_it_durable_is_damage_past_the_last_line() {
    // A batch of three whose second line says the first was durable (u = 0): no crash of a
    // writer leaves that, so the file ending after it is damage, named at the missing line.
    let mut w = Writer::new(Version::V2);
    w.entries(1).sync();
    let batch = w.bytes.len() as u64;
    for (seq, more) in [(1, 2), (2, 1)] {
        let marks = Marks {
            appended_ms: 9,
            unsynced: 0,
            more,
        };
        encode_entry(&Frame::v2(seq, marks), "1", &mut w.bytes).unwrap();
    }
    let s = strict(&w.bytes);
    assert_eq!(
        corrupt(&s),
        (
            5,
            w.bytes.len() as u64,
            CorruptReason::UnfinishedWrite { lines: 2, of: 3 }
        )
    );
    assert_eq!(s.seqs, vec![0]);
    let report = tolerant(&w.bytes).result.unwrap();
    assert_eq!(report.torn_tail, None);
    assert_eq!(report.problem_count, 1);
    assert_eq!(report.valid_up_to, batch);
}

#[test]
fn a_file_of_nothing_but_unterminated_bytes_is_one_problem_at_line_1() {
    let bytes = b"not an annals file";
    let len = bytes.len() as u64;
    assert_eq!(
        corrupt(&strict(bytes)),
        (1, 0, CorruptReason::BadTail { len })
    );
    let report = tolerant(bytes).result.unwrap();
    assert_eq!(report.problem_count, 1, "{report:?}");
    assert_eq!(report.valid_up_to, 0);
    assert_eq!(report.torn_tail, None);
    assert_eq!(verify(bytes), report);
}
