//! The filesystem store against damaged, foreign and hostile files on a real file system.
//!
//! Each test writes bytes into the store's files with `std::fs` (as a crash, a disk, another
//! program or a person would) and then goes through the public API only. The recurring promise:
//! readers never change a byte, writers refuse to build on damage they cannot see past, and
//! `FsStore::repair` is the one call that cuts, after saving what it cuts.

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::ops::{ControlFlow, Range};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use annals::codec::{self, Frame, Marks};
use annals::unstable::{check_entry_line, decode_header, PREFIX_LEN};
use annals::{
    check_image, CorruptReason, CutReason, Durability, Error, FileKind, FsOptions, FsStore, Header,
    Problem, RawEntry, RecoveryMode, ReplayOptions, ScanReport, SegmentId, SegmentWriter,
    SessionId, Store, StoreExt, TailKind, Tip, TornTail, FORMAT_VERSION, MAX_LINE,
};
use serde_json::{json, Value};
use tempfile::TempDir;

/// A store in a temporary directory with one segment of `n` entries.
struct Fixture {
    dir: TempDir,
    store: FsStore,
    session: SessionId,
    segment: SegmentId,
    path: PathBuf,
}

fn entry(n: u64) -> Value {
    json!({"n": n, "text": format!("entry number {n}, long enough to flip a byte inside")})
}

fn fixture(n: u64) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path().join("store")).unwrap();
    let (session, segment) = (SessionId::new(), SegmentId::new());
    let initial: Vec<Value> = (0..n).map(entry).collect();
    store.create(session, segment, &initial).unwrap();
    let path = store.segment_path(session, segment);
    Fixture {
        dir,
        store,
        session,
        segment,
        path,
    }
}

impl Fixture {
    fn bytes(&self) -> Vec<u8> {
        fs::read(&self.path).unwrap()
    }

    /// A second, independent handle on the same root (as another process would have).
    fn fresh(&self) -> FsStore {
        FsStore::open(self.store.root()).unwrap()
    }

    /// Another store on the same root whose writers recover in `mode`.
    fn recovering(&self, mode: RecoveryMode) -> FsStore {
        let options = FsOptions {
            recovery: mode,
            ..FsOptions::default()
        };
        FsStore::open_with(self.store.root(), options).unwrap()
    }

    fn session_dir(&self) -> PathBuf {
        self.store.root().join(self.session.to_string())
    }

    fn replay(&self, options: ReplayOptions) -> annals::Result<(ScanReport, Vec<(u64, Value)>)> {
        replay_with(&self.store, self.session, self.segment, options)
    }

    fn strict_error(&self) -> Error {
        match self.replay(ReplayOptions::strict()) {
            Ok((report, _)) => panic!("strict replay should fail, got {report:?}"),
            Err(e) => e,
        }
    }

    fn tolerant(&self) -> (ScanReport, Vec<(u64, Value)>) {
        self.replay(ReplayOptions::tolerant()).unwrap()
    }
}

fn replay_with(
    store: &dyn Store,
    session: SessionId,
    segment: SegmentId,
    options: ReplayOptions,
) -> annals::Result<(ScanReport, Vec<(u64, Value)>)> {
    let mut seen = Vec::new();
    let report = store.replay(session, segment, &options, |meta, v: Value| {
        seen.push((meta.seq, v));
        Ok(())
    })?;
    Ok((report, seen))
}

fn append_bytes(path: &Path, bytes: &[u8]) {
    let mut f = OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(bytes).unwrap();
}

/// Byte ranges of the complete lines of `bytes`, newline included. Index 0 is the header.
fn lines(bytes: &[u8]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'\n' {
            out.push(start..i + 1);
            start = i + 1;
        }
    }
    out
}

/// A version-2 entry line (the version of the files the store makes) that ends its write and
/// claims every entry before it durable, as a `Sync` append's does: damage before it is damage,
/// never an interrupted tail.
fn entry_line(seq: u64, json: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let marks = Marks {
        appended_ms: 1_796_000_000_000,
        unsynced: 0,
        more: 0,
    };
    codec::encode_entry(&Frame::v2(seq, marks), json, &mut out).unwrap();
    out
}

/// A version-1 entry line, as the files of format 1 have them.
fn v1_line(seq: u64, json: &str) -> Vec<u8> {
    let mut out = Vec::new();
    codec::encode_entry(&Frame::v1(seq), json, &mut out).unwrap();
    out
}

/// What a file says, line by line, without append times and write marks: the header line as
/// it is, then each entry line's sequence number and body. A line the store appends again
/// carries its own time and marks; what it holds must be the same.
fn logical(bytes: &[u8]) -> Vec<(Option<u64>, Vec<u8>)> {
    lines(bytes)
        .into_iter()
        .map(|range| {
            let line = &bytes[range.start..range.end - 1];
            match check_entry_line(line) {
                Ok(e) => (Some(e.seq), line[e.body].to_vec()),
                Err(_) => (None, line.to_vec()),
            }
        })
        .collect()
}

/// A line with a correct CRC over arbitrary covered bytes (annals' encoder would refuse them).
fn framed(covered: &[u8]) -> Vec<u8> {
    let mut out = format!("{{\"crc\":\"{:08x}\",", crc32fast::hash(covered)).into_bytes();
    assert_eq!(out.len(), PREFIX_LEN);
    out.extend_from_slice(covered);
    out.push(b'\n');
    out
}

/// What a reader could change about a file: its bytes, its identity, its modification time.
#[derive(Debug, PartialEq, Eq)]
struct FileState {
    bytes: Vec<u8>,
    inode: u64,
    modified: SystemTime,
}

fn file_state(path: &Path) -> FileState {
    let meta = fs::metadata(path).unwrap();
    FileState {
        bytes: fs::read(path).unwrap(),
        inode: meta.ino(),
        modified: meta.modified().unwrap(),
    }
}

fn dir_names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

/// Runs every read-only call, through the fixture's store (which may hold a cached handle) and
/// through a fresh one, and checks after each that neither the file nor its directory changed.
/// Results are not judged here: on damaged files many of these calls rightly fail.
fn assert_readers_leave_file_alone(f: &Fixture) {
    let before = file_state(&f.path);
    let dir_before = dir_names(&f.session_dir());
    let fresh = f.fresh();
    let check = |what: &str| {
        assert_eq!(
            file_state(&f.path),
            before,
            "{what} changed the segment file"
        );
        assert_eq!(
            dir_names(&f.session_dir()),
            dir_before,
            "{what} changed the session directory"
        );
    };
    for store in [&f.store, &fresh] {
        let _ = replay_with(store, f.session, f.segment, ReplayOptions::strict());
        check("strict replay");
        let _ = replay_with(store, f.session, f.segment, ReplayOptions::tolerant());
        check("tolerant replay");
        let _ = replay_with(
            store,
            f.session,
            f.segment,
            ReplayOptions::tolerant().from_seq(2),
        );
        check("replay from a sequence number");
        let _ = store.verify(f.session, f.segment);
        check("verify");
        let _ = store.tip(f.session, f.segment);
        check("tip");
        let _ = store.list_segments(f.session);
        check("list_segments");
        let _ = store.list_sessions();
        check("list_sessions");
        let _ = store.exists(f.session, f.segment);
        check("exists");
        let _ = store.find_session(f.segment);
        check("find_session");
        let _ = store.session_modified(f.session);
        check("session_modified");
    }
    let bytes = fs::read(&f.path).unwrap();
    let _ = check_image(&f.path, &bytes, &ReplayOptions::tolerant(), &mut |_| {
        Ok(ControlFlow::Continue(()))
    });
    check("check_image");
}

/// `check_image` over the file's bytes: must agree with a tolerant replay of the file.
fn image_report(f: &Fixture) -> annals::Result<(ScanReport, Vec<(u64, Value)>)> {
    let bytes = fs::read(&f.path).unwrap();
    let mut seen = Vec::new();
    let report = check_image(&f.path, &bytes, &ReplayOptions::tolerant(), &mut |e| {
        seen.push((e.seq, serde_json::from_str(e.json().unwrap()).unwrap()));
        Ok(ControlFlow::Continue(()))
    })?;
    Ok((report, seen))
}

fn seqs(entries: &[(u64, Value)]) -> Vec<u64> {
    entries.iter().map(|(s, _)| *s).collect()
}

fn assert_corrupt(err: &Error, path: &Path, line: u64, offset: u64) -> CorruptReason {
    match err {
        Error::Corrupt {
            path: p,
            line: l,
            offset: o,
            reason,
        } => {
            assert_eq!(
                (p.as_path(), *l, *o),
                (path, line, offset),
                "wrong position in {err}"
            );
            reason.clone()
        }
        other => panic!("expected Error::Corrupt at line {line}, got {other:?}"),
    }
}

fn crc_mismatch_of(line: &[u8]) -> CorruptReason {
    let body = line.strip_suffix(b"\n").unwrap_or(line);
    let stored = u32::from_str_radix(std::str::from_utf8(&body[8..16]).unwrap(), 16).unwrap();
    CorruptReason::CrcMismatch {
        stored,
        computed: crc32fast::hash(&body[PREFIX_LEN..]),
    }
}

/// Flips one bit in the middle of entry `index` (0-based); returns that line's range.
fn flip_middle_of_entry(f: &Fixture, index: usize) -> Range<usize> {
    let mut bytes = f.bytes();
    let range = lines(&bytes)[index + 1].clone();
    let middle = range.start + range.len() / 2;
    bytes[middle] ^= 0x01;
    fs::write(&f.path, &bytes).unwrap();
    range
}

// ---------------------------------------------------------------------------------------------
// Torn tails

#[test]
fn torn_tail_is_ignored_by_readers_and_removed_by_next_append() {
    let f = fixture(3);
    // A cached handle whose idea of the file must be refreshed by the crash below.
    f.store.append(f.session, f.segment, &entry(3)).unwrap();
    let committed = f.bytes();
    let unfinished = entry_line(4, &entry(99).to_string());
    let torn = &unfinished[..25];
    append_bytes(&f.path, torn);
    let expected_tail = Some(TornTail::torn_line(
        6,
        committed.len() as u64,
        torn.len() as u64,
    ));

    for options in [ReplayOptions::strict(), ReplayOptions::tolerant()] {
        let (report, entries) = f.replay(options).unwrap();
        assert_eq!(seqs(&entries), vec![0, 1, 2, 3]);
        assert_eq!(report.torn_tail, expected_tail);
        assert!(
            report.is_clean(),
            "a torn tail is not a problem: {report:?}"
        );
        assert_eq!(report.valid_up_to, committed.len() as u64);
        assert_eq!(report.file_len, (committed.len() + torn.len()) as u64);
    }
    let verified = f.store.verify(f.session, f.segment).unwrap();
    assert!(verified.is_clean());
    assert_eq!(verified.torn_tail, expected_tail);
    assert_eq!(verified.entries, 4);
    assert_eq!(image_report(&f).unwrap().0, f.tolerant().0);
    let tip = Tip {
        count: 4,
        generation: 0,
    };
    assert_eq!(f.store.tip(f.session, f.segment).unwrap(), tip);
    assert_eq!(f.fresh().tip(f.session, f.segment).unwrap(), tip);
    assert_readers_leave_file_alone(&f);

    let next = entry(4);
    let tip = f.store.append(f.session, f.segment, &next).unwrap();
    assert_eq!(tip.count, 5);
    let mut expected = committed.clone();
    expected.extend_from_slice(&entry_line(4, &next.to_string()));
    assert_eq!(
        logical(&f.bytes()),
        logical(&expected),
        "the torn bytes are gone and the new line starts where the committed log ended"
    );
    assert!(f.bytes().starts_with(&committed));
    let report = f.store.verify(f.session, f.segment).unwrap();
    assert!(
        report.is_clean() && report.torn_tail.is_none(),
        "{report:?}"
    );
}

#[test]
fn a_fresh_handle_also_removes_a_torn_tail_before_appending() {
    let f = fixture(2);
    let committed = f.bytes();
    append_bytes(&f.path, b"{\"crc\":\"12");
    let other = f.fresh();
    assert_eq!(
        other.append(f.session, f.segment, &entry(2)).unwrap().count,
        3
    );
    let mut expected = committed.clone();
    expected.extend_from_slice(&entry_line(2, &entry(2).to_string()));
    assert_eq!(logical(&f.bytes()), logical(&expected));
    assert!(f.bytes().starts_with(&committed));
}

#[test]
fn a_file_cut_anywhere_inside_its_last_line_reads_as_a_torn_tail() {
    let probe = fixture(3);
    let last = lines(&probe.bytes())[3].clone();
    // Every cut inside the last line: one byte of it up to all but its newline.
    for cut in [
        1,
        7,
        8,
        17,
        18,
        19,
        last.len() / 2,
        last.len() - 2,
        last.len() - 1,
    ] {
        let f = fixture(3);
        let original = f.bytes();
        let keep = last.start + cut;
        OpenOptions::new()
            .write(true)
            .open(&f.path)
            .unwrap()
            .set_len(keep as u64)
            .unwrap();
        let (report, entries) = f.replay(ReplayOptions::strict()).unwrap();
        assert_eq!(seqs(&entries), vec![0, 1], "cut {cut}");
        assert_eq!(
            report.torn_tail,
            Some(TornTail::torn_line(4, last.start as u64, cut as u64)),
            "cut {cut}"
        );
        assert!(f.store.verify(f.session, f.segment).unwrap().is_clean());
        assert_eq!(f.store.tip(f.session, f.segment).unwrap().count, 2);
        assert_readers_leave_file_alone(&f);
        // The entry the cut destroyed was never acknowledged as far as the log is concerned;
        // the next append takes its sequence number.
        f.store.append(f.session, f.segment, &entry(2)).unwrap();
        assert_eq!(
            logical(&f.bytes()),
            logical(&original),
            "cut {cut}: re-appending restores the file"
        );
    }
}

#[test]
fn repair_of_a_torn_tail_cuts_it_in_place_and_keeps_the_bytes_aside() {
    let f = fixture(3);
    let committed = f.bytes();
    let inode = fs::metadata(&f.path).unwrap().ino();
    append_bytes(&f.path, b"{\"crc\":\"0badf00d\",\"seq\":3,\"e\":{\"par");
    let torn_len = f.bytes().len() - committed.len();
    let plan = f.store.repair(f.session, f.segment, false).unwrap();
    assert_eq!(plan.keep_bytes, committed.len() as u64);
    assert_eq!(plan.kept_entries, 3);
    assert_eq!(plan.dropped_bytes, torn_len as u64);
    assert!(plan.first_problem.is_none());
    assert_eq!(
        plan.torn_tail,
        Some(TornTail::torn_line(
            5,
            committed.len() as u64,
            torn_len as u64
        ))
    );
    let backup = plan.backup.expect("dropped bytes are saved");
    assert_eq!(
        fs::read(&backup).unwrap(),
        b"{\"crc\":\"0badf00d\",\"seq\":3,\"e\":{\"par"
    );
    assert_eq!(f.bytes(), committed);
    assert_eq!(fs::metadata(&f.path).unwrap().ino(), inode);
    assert_eq!(f.store.tip(f.session, f.segment).unwrap().count, 3);
}

// ---------------------------------------------------------------------------------------------
// A flipped byte

#[test]
fn a_flipped_byte_fails_strict_replay_with_path_line_offset_and_crc_reason() {
    let f = fixture(5);
    let damaged = flip_middle_of_entry(&f, 2);
    let bytes = f.bytes();
    let err = f.strict_error();
    let reason = assert_corrupt(&err, &f.path, 4, damaged.start as u64);
    assert_eq!(reason, crc_mismatch_of(&bytes[damaged.clone()]));
    let text = err.to_string();
    assert!(
        text.contains(&f.path.display().to_string()) && text.contains("line 4"),
        "{text}"
    );
    assert!(err.is_corruption());
    assert_readers_leave_file_alone(&f);
}

#[test]
fn tolerant_replay_and_verify_skip_a_flipped_line_and_report_it_and_the_gap_it_leaves() {
    let f = fixture(5);
    let damaged = flip_middle_of_entry(&f, 2);
    let bytes = f.bytes();
    let next = lines(&bytes)[4].start as u64;
    let (report, entries) = f.tolerant();
    assert_eq!(seqs(&entries), vec![0, 1, 3, 4]);
    assert_eq!(
        entries[2].1,
        entry(3),
        "entries after the damage are intact"
    );
    assert_eq!(
        report.problems,
        vec![
            Problem {
                line: 4,
                offset: damaged.start as u64,
                reason: crc_mismatch_of(&bytes[damaged.clone()]),
            },
            Problem {
                line: 5,
                offset: next,
                reason: CorruptReason::SeqMismatch {
                    expected: 2,
                    found: 3
                },
            },
        ]
    );
    assert_eq!(report.problem_count, 2);
    assert_eq!(report.valid_up_to, damaged.start as u64);
    assert_eq!(report.entries, 4);
    assert_eq!(report.path.as_deref(), Some(f.path.as_path()));

    let verified = f.store.verify(f.session, f.segment).unwrap();
    assert_eq!(verified, report, "the mapped verify sees what replay sees");
    assert_eq!(image_report(&f).unwrap(), (report, entries));
    assert_readers_leave_file_alone(&f);
}

#[test]
fn a_corrupt_last_line_is_an_interrupted_write_that_only_a_cutting_mode_lets_a_writer_cut() {
    let f = fixture(5);
    let damaged = flip_middle_of_entry(&f, 4);
    let before = file_state(&f.path);
    // Nothing after the line claims it durable: readers see an interrupted last write.
    let (report, entries) = f.replay(ReplayOptions::strict()).unwrap();
    assert_eq!(seqs(&entries), vec![0, 1, 2, 3]);
    assert_eq!(report.torn_tail.map(|t| t.kind), Some(TailKind::Garbage));
    // A writer that may cut nothing but torn lines refuses, names it, and writes nothing.
    let store = f.recovering(RecoveryMode::AbsoluteConsistency);
    let err = store.append(f.session, f.segment, &entry(5)).unwrap_err();
    assert_eq!(
        assert_corrupt(&err, &f.path, 6, damaged.start as u64),
        CorruptReason::InterruptedWrite(TailKind::Garbage)
    );
    assert_eq!(store.tip(f.session, f.segment).unwrap().count, 4);
    assert!(SegmentWriter::open(&store, f.session, f.segment).is_ok());
    assert!(store.append(f.session, f.segment, &entry(5)).is_err());
    assert_eq!(file_state(&f.path), before);
    // The default mode moves the line aside and appends in its place, under the same
    // generation: no reader was ever given the line.
    let store = f.fresh();
    let tip = store.append(f.session, f.segment, &entry(5)).unwrap();
    assert_eq!(
        tip,
        Tip {
            count: 5,
            generation: 0
        }
    );
    let events = store.take_recovered();
    assert_eq!(events.len(), 1);
    assert_eq!(
        fs::read(&events[0].saved).unwrap(),
        &before.bytes[damaged.clone()]
    );
    let read: Vec<Value> = store.read(f.session, f.segment).unwrap();
    assert_eq!(read, [0, 1, 2, 3, 5].map(entry));
}

#[test]
fn repair_dry_run_reports_the_plan_and_changes_nothing() {
    let f = fixture(5);
    let damaged = flip_middle_of_entry(&f, 2);
    let before = file_state(&f.path);
    let dir_before = dir_names(&f.session_dir());
    let plan = f.store.repair(f.session, f.segment, true).unwrap();
    assert_eq!(plan.path, f.path);
    assert_eq!(plan.keep_bytes, damaged.start as u64);
    assert_eq!(plan.kept_entries, 2);
    assert_eq!(
        plan.dropped_bytes,
        (before.bytes.len() - damaged.start) as u64
    );
    assert_eq!(plan.torn_tail, None);
    assert_eq!(
        plan.first_problem,
        Some(Problem {
            line: 4,
            offset: damaged.start as u64,
            reason: crc_mismatch_of(&before.bytes[damaged.clone()]),
        })
    );
    assert_eq!(plan.backup, None);
    assert!(!plan.is_noop());
    assert_eq!(file_state(&f.path), before);
    assert_eq!(dir_names(&f.session_dir()), dir_before);
}

#[test]
fn repair_saves_the_dropped_bytes_and_rewrites_to_the_clean_prefix() {
    let f = fixture(5);
    let damaged = flip_middle_of_entry(&f, 2);
    let before = file_state(&f.path);
    let old_lines = lines(&before.bytes);
    let plan = f.store.repair(f.session, f.segment, false).unwrap();
    assert_eq!(plan.kept_entries, 2);
    assert_eq!(plan.keep_bytes, damaged.start as u64);

    let backup = plan.backup.clone().expect("a backup of the dropped bytes");
    assert_eq!(backup.parent(), f.path.parent());
    assert_eq!(fs::read(&backup).unwrap(), &before.bytes[damaged.start..]);
    assert_eq!(
        fs::metadata(&backup).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let after = file_state(&f.path);
    assert_ne!(
        after.inode, before.inode,
        "a corrupt line is cut by rewriting a new file and renaming it into place"
    );
    assert!(
        !dir_names(&f.session_dir())
            .iter()
            .any(|n| n.ends_with(".tmp")),
        "no temporary file is left behind"
    );
    let new_lines = lines(&after.bytes);
    assert_eq!(new_lines.len(), 3, "header and the two good entries");
    for i in 1..3 {
        assert_eq!(
            after.bytes[new_lines[i].clone()],
            before.bytes[old_lines[i].clone()],
            "kept line {i} is byte-identical"
        );
    }
    let report = f.store.verify(f.session, f.segment).unwrap();
    assert!(
        report.is_clean() && report.torn_tail.is_none(),
        "{report:?}"
    );
    let entries: Vec<Value> = f.store.read(f.session, f.segment).unwrap();
    assert_eq!(entries, vec![entry(0), entry(1)]);
    let tip = f.store.tip(f.session, f.segment).unwrap();
    assert_eq!(tip.count, 2);
    assert_eq!(tip.generation, 1, "a rewrite bumps the generation");
    assert_eq!(f.fresh().tip(f.session, f.segment).unwrap(), tip);

    // The backup is not a segment, and the repaired segment takes appends again.
    assert_eq!(f.store.list_segments(f.session).unwrap().len(), 1);
    assert_eq!(
        f.store
            .append(f.session, f.segment, &entry(2))
            .unwrap()
            .count,
        3
    );
    assert!(f
        .store
        .repair(f.session, f.segment, false)
        .unwrap()
        .is_noop());
    assert!(backup.exists(), "nothing removes the backup");
}

#[test]
fn repair_of_a_healthy_segment_does_not_touch_the_file() {
    let f = fixture(5);
    // A handle in the cache, as in a long-running process.
    f.store.append(f.session, f.segment, &entry(5)).unwrap();
    let before = file_state(&f.path);
    let dir_before = dir_names(&f.session_dir());
    for dry_run in [true, false] {
        let plan = f.store.repair(f.session, f.segment, dry_run).unwrap();
        assert!(plan.is_noop(), "{plan:?}");
        assert_eq!(plan.kept_entries, 6);
        assert_eq!(plan.keep_bytes, before.bytes.len() as u64);
        assert_eq!(plan.dropped_bytes, 0);
        assert_eq!(plan.backup, None);
        assert_eq!(plan.first_problem, None);
        assert_eq!(file_state(&f.path), before, "dry_run {dry_run}");
        assert_eq!(dir_names(&f.session_dir()), dir_before);
    }
    assert_eq!(
        f.store.tip(f.session, f.segment).unwrap(),
        Tip {
            count: 6,
            generation: 0
        }
    );
}

// ---------------------------------------------------------------------------------------------
// Files that are empty, short, garbage, or far too long

#[test]
fn an_empty_file_is_reported_as_missing_its_header_and_nothing_writes_to_it() {
    let f = fixture(2);
    fs::write(&f.path, b"").unwrap();
    let err = f.strict_error();
    assert_eq!(
        assert_corrupt(&err, &f.path, 1, 0),
        CorruptReason::MissingHeader
    );
    let (report, entries) = f.tolerant();
    assert!(entries.is_empty());
    assert_eq!(
        report.problems,
        vec![Problem {
            line: 1,
            offset: 0,
            reason: CorruptReason::MissingHeader
        }]
    );
    assert_eq!(f.store.verify(f.session, f.segment).unwrap(), report);
    assert_readers_leave_file_alone(&f);

    let store = f.fresh();
    assert!(store.tip(f.session, f.segment).unwrap_err().is_corruption());
    assert!(store
        .append(f.session, f.segment, &entry(0))
        .unwrap_err()
        .is_corruption());
    assert!(store
        .repair(f.session, f.segment, false)
        .unwrap_err()
        .is_corruption());
    let listed = store.list_segments(f.session).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].damage,
        Some(annals::Damage::Corrupt(Problem {
            line: 1,
            offset: 0,
            reason: CorruptReason::MissingHeader
        })),
        "{listed:?}"
    );
    assert_eq!(f.bytes(), b"");
    assert_eq!(dir_names(&f.session_dir()).len(), 1);
}

#[test]
fn a_file_with_only_a_header_is_an_empty_healthy_segment() {
    let f = fixture(0);
    assert_eq!(lines(&f.bytes()).len(), 1);
    let (report, entries) = f.replay(ReplayOptions::strict()).unwrap();
    assert!(entries.is_empty() && report.is_clean() && report.torn_tail.is_none());
    assert_eq!(f.store.verify(f.session, f.segment).unwrap().entries, 0);
    assert_eq!(f.fresh().tip(f.session, f.segment).unwrap(), Tip::default());
    assert_readers_leave_file_alone(&f);
    assert_eq!(
        f.fresh()
            .append(f.session, f.segment, &entry(0))
            .unwrap()
            .count,
        1
    );
}

#[test]
fn a_header_without_its_newline_is_a_missing_header_not_an_empty_segment() {
    let f = fixture(0);
    let header = f.bytes();
    fs::write(&f.path, &header[..header.len() - 1]).unwrap();
    let err = f.strict_error();
    assert_eq!(
        assert_corrupt(&err, &f.path, 1, 0),
        CorruptReason::MissingHeader
    );
    assert!(f
        .fresh()
        .append(f.session, f.segment, &entry(0))
        .unwrap_err()
        .is_corruption());
    assert_eq!(f.bytes(), &header[..header.len() - 1]);
    assert_readers_leave_file_alone(&f);
}

/// Deterministic bytes for the garbage tests (xorshift64).
fn garbage(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

#[test]
fn random_garbage_is_reported_never_panics_and_is_never_touched() {
    for (seed, len) in [
        (1, 1),
        (2, 17),
        (3, 100),
        (4, 5000),
        (5, 70_000),
        (6, 300_000),
    ] {
        let f = fixture(1);
        let junk = garbage(seed, len);
        fs::write(&f.path, &junk).unwrap();
        let strict = f.strict_error();
        assert!(strict.is_corruption(), "seed {seed}: {strict}");
        let (report, entries) = f.tolerant();
        assert!(entries.is_empty(), "seed {seed}");
        assert!(!report.is_clean(), "seed {seed}");
        assert_eq!(report.file_len, len as u64);
        assert_eq!(report.valid_up_to, 0);
        assert_eq!(
            f.store.verify(f.session, f.segment).unwrap().problems[0],
            report.problems[0],
            "seed {seed}"
        );
        assert_eq!(image_report(&f).unwrap().0.problems[0], report.problems[0]);
        assert_readers_leave_file_alone(&f);

        let store = f.fresh();
        assert!(store.tip(f.session, f.segment).is_err());
        assert!(store.append(f.session, f.segment, &entry(0)).is_err());
        assert!(store.truncate(f.session, f.segment, 0).is_err());
        assert!(store
            .fork(f.session, f.segment, 0, SegmentId::new())
            .is_err());
        let err = store.repair(f.session, f.segment, false).unwrap_err();
        assert_eq!(
            assert_corrupt(&err, &f.path, 1, 0),
            report.problems[0].reason,
            "seed {seed}: repair names the header's problem"
        );
        assert!(store.list_segments(f.session).unwrap()[0].damage.is_some());
        assert_eq!(f.bytes(), junk, "seed {seed}: garbage left as it was");
        assert_eq!(dir_names(&f.session_dir()).len(), 1, "seed {seed}");
    }
}

#[test]
fn a_huge_unterminated_tail_is_an_interrupted_tail_that_the_next_writer_moves_aside() {
    let f = fixture(3);
    let committed = f.bytes();
    let huge = vec![b'x'; 1 << 20];
    append_bytes(&f.path, &huge);
    // Nothing after it claims it durable: a write that never reached the disk whole, for
    // readers a note and nothing delivered from it.
    let interrupted = Some(TornTail {
        line: 5,
        offset: committed.len() as u64,
        len: huge.len() as u64,
        kind: TailKind::ZeroFilled,
    });
    for options in [ReplayOptions::strict(), ReplayOptions::tolerant()] {
        let (report, entries) = f.replay(options).unwrap();
        assert_eq!(seqs(&entries), vec![0, 1, 2]);
        assert_eq!(report.torn_tail, interrupted);
        assert!(report.is_clean(), "{report:?}");
    }
    assert_eq!(
        f.store.verify(f.session, f.segment).unwrap(),
        f.tolerant().0
    );
    assert_readers_leave_file_alone(&f);

    let store = f.fresh();
    assert_eq!(store.tip(f.session, f.segment).unwrap().count, 3);
    assert_eq!(
        f.bytes().len(),
        committed.len() + huge.len(),
        "tip never cuts"
    );
    let tip = store.append(f.session, f.segment, &entry(3)).unwrap();
    assert_eq!(
        tip,
        Tip {
            count: 4,
            generation: 0
        }
    );
    let events = store.take_recovered();
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    assert_eq!(
        (
            event.path.as_path(),
            event.offset,
            event.len,
            event.kept_entries
        ),
        (
            f.path.as_path(),
            committed.len() as u64,
            huge.len() as u64,
            3
        )
    );
    assert!(matches!(event.why, CutReason::Interrupted(t) if Some(t) == interrupted));
    assert_eq!(event.saved.parent(), f.path.parent());
    assert!(event
        .saved
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with(&format!("{}.jsonl.recovered-", f.segment)));
    assert_eq!(
        fs::read(&event.saved).unwrap(),
        huge,
        "the cut bytes are kept"
    );
    assert!(store.take_recovered().is_empty(), "taken once");
    let mut expected = committed.clone();
    expected.extend_from_slice(&entry_line(3, &entry(3).to_string()));
    assert_eq!(logical(&f.bytes())[1..], logical(&expected)[1..]);
    let read: Vec<Value> = f.store.read(f.session, f.segment).unwrap();
    assert_eq!(read, (0..4).map(entry).collect::<Vec<_>>());
}

/// A complete last line longer than the window a writer's tail probe reads (two lines' worth):
/// in a version-1 file that is damage the writer reports where replay does, by its real start
/// and length, not by where the window began.
#[test]
fn in_a_version_1_file_a_last_line_longer_than_the_tail_window_is_reported_at_its_start() {
    let f = fixture(0);
    let committed = rewrite_as_version_1(&f, 3);
    let mut long = vec![b'y'; 10_000];
    long.push(b'\n');
    append_bytes(&f.path, &long);
    let too_long = CorruptReason::TooLong { len: 10_000 };
    let err = f.strict_error();
    assert_eq!(
        assert_corrupt(&err, &f.path, 5, committed.len() as u64),
        too_long
    );
    let store = f.fresh();
    let err = store.append(f.session, f.segment, &entry(3)).unwrap_err();
    assert_eq!(
        assert_corrupt(&err, &f.path, 5, committed.len() as u64),
        too_long
    );
    assert_eq!(f.bytes().len(), committed.len() + long.len(), "nothing cut");
}

/// A header line where the last entry should be: damage for a writer as for replay, never an
/// empty log to append to from sequence number 0.
#[test]
fn in_a_version_1_file_a_header_as_the_last_line_is_damage_and_blocks_appends() {
    let f = fixture(0);
    let committed = rewrite_as_version_1(&f, 3);
    let header_end = committed.iter().position(|&b| b == b'\n').unwrap() + 1;
    append_bytes(&f.path, &committed[..header_end]);
    let err = f.strict_error();
    assert_eq!(
        assert_corrupt(&err, &f.path, 5, committed.len() as u64),
        CorruptReason::UnexpectedHeader
    );
    let err = f
        .fresh()
        .append(f.session, f.segment, &entry(3))
        .unwrap_err();
    assert_eq!(
        assert_corrupt(&err, &f.path, 5, committed.len() as u64),
        CorruptReason::UnexpectedHeader
    );
    assert_eq!(
        f.bytes().len(),
        committed.len() + header_end,
        "nothing written"
    );
}

#[test]
fn in_a_version_1_file_a_huge_unterminated_tail_is_damage_and_blocks_appends() {
    let f = fixture(0);
    let committed = rewrite_as_version_1(&f, 3);
    let huge = vec![b'x'; 1 << 20];
    append_bytes(&f.path, &huge);
    let bad_tail = CorruptReason::BadTail {
        len: huge.len() as u64,
    };
    let err = f.strict_error();
    assert_eq!(
        assert_corrupt(&err, &f.path, 5, committed.len() as u64),
        bad_tail
    );
    let (report, entries) = f.tolerant();
    assert_eq!(seqs(&entries), vec![0, 1, 2]);
    assert_eq!(report.torn_tail, None);
    assert_eq!(
        report.problems,
        vec![Problem {
            line: 5,
            offset: committed.len() as u64,
            reason: bad_tail.clone()
        }]
    );
    assert_eq!(f.store.verify(f.session, f.segment).unwrap(), report);
    assert_readers_leave_file_alone(&f);

    let store = f.fresh();
    let err = store.tip(f.session, f.segment).unwrap_err();
    assert_eq!(
        assert_corrupt(&err, &f.path, 5, committed.len() as u64),
        bad_tail
    );
    let err = store.append(f.session, f.segment, &entry(3)).unwrap_err();
    assert_eq!(
        assert_corrupt(&err, &f.path, 5, committed.len() as u64),
        bad_tail
    );
    assert_eq!(f.bytes().len(), committed.len() + huge.len());
    assert!(store.take_recovered().is_empty());

    let plan = store.repair(f.session, f.segment, false).unwrap();
    assert_eq!(plan.kept_entries, 3);
    assert_eq!(plan.dropped_bytes, huge.len() as u64);
    assert_eq!(fs::read(plan.backup.unwrap()).unwrap(), huge);
    assert_eq!(
        &f.bytes()[lines(&committed)[1].start..],
        &committed[lines(&committed)[1].start..]
    );
    // A version-1 file keeps getting version-1 lines.
    assert_eq!(
        store.append(f.session, f.segment, &entry(3)).unwrap().count,
        4
    );
    let bytes = f.bytes();
    let last = lines(&bytes).pop().unwrap();
    assert_eq!(
        &bytes[last],
        &v1_line(3, &entry(3).to_string())[..],
        "a version-1 line"
    );
}

#[test]
fn a_huge_line_in_the_middle_is_skipped_with_bounded_memory_and_reported() {
    let f = fixture(3);
    let start = f.bytes().len() as u64;
    let mut huge = vec![b'y'; 1 << 20];
    huge.push(b'\n');
    append_bytes(&f.path, &huge);
    let after = f.bytes().len() as u64;
    append_bytes(&f.path, &entry_line(3, &entry(3).to_string()));
    append_bytes(&f.path, &entry_line(4, &entry(4).to_string()));
    let too_long = CorruptReason::TooLong { len: 1 << 20 };

    let err = f.strict_error();
    assert_eq!(assert_corrupt(&err, &f.path, 5, start), too_long);
    let (report, entries) = f.tolerant();
    assert_eq!(seqs(&entries), vec![0, 1, 2, 3, 4]);
    assert_eq!(
        report.problems,
        vec![Problem {
            line: 5,
            offset: start,
            reason: too_long
        }]
    );
    assert_eq!(report.valid_up_to, start);
    assert_eq!(f.store.verify(f.session, f.segment).unwrap(), report);
    assert_eq!(image_report(&f).unwrap().0, report);
    assert_readers_leave_file_alone(&f);
    // The tip only looks at the last line, which is fine.
    assert_eq!(f.fresh().tip(f.session, f.segment).unwrap().count, 5);

    let plan = f.store.repair(f.session, f.segment, true).unwrap();
    assert_eq!((plan.keep_bytes, plan.kept_entries), (start, 3));
    assert!(after > start);
}

/// Damage after a line long enough to span several read windows is reported where it is in the
/// file, not where it sits in the window that holds it.
#[test]
fn damage_past_the_first_read_window_is_reported_at_its_file_offset() {
    let f = fixture(3);
    let start = f.bytes().len() as u64;
    let mut huge = vec![b'y'; 1 << 20];
    huge.push(b'\n');
    append_bytes(&f.path, &huge);
    append_bytes(&f.path, &entry_line(3, &entry(3).to_string()));
    let damaged = f.bytes().len() as u64;
    let mut bad = entry_line(4, &entry(4).to_string());
    let middle = bad.len() / 2;
    bad[middle] ^= 0x01;
    append_bytes(&f.path, &bad);
    let next = f.bytes().len() as u64;
    append_bytes(&f.path, &entry_line(5, &entry(5).to_string()));
    assert!(
        damaged > 4 * 256 * 1024,
        "the damage lies beyond the fourth window"
    );

    let (report, entries) = f.tolerant();
    assert_eq!(seqs(&entries), vec![0, 1, 2, 3, 5]);
    assert_eq!(
        report.problems,
        vec![
            Problem {
                line: 5,
                offset: start,
                reason: CorruptReason::TooLong { len: 1 << 20 },
            },
            Problem {
                line: 7,
                offset: damaged,
                reason: crc_mismatch_of(&bad),
            },
            Problem {
                line: 8,
                offset: next,
                reason: CorruptReason::SeqMismatch {
                    expected: 4,
                    found: 5
                },
            },
        ]
    );
    assert_eq!(f.store.verify(f.session, f.segment).unwrap(), report);
    assert_eq!(image_report(&f).unwrap().0, report);
}

#[test]
fn a_huge_complete_last_line_blocks_a_writer_that_may_not_cut_it_with_its_real_position() {
    let f = fixture(3);
    let start = f.bytes().len() as u64;
    let mut huge = vec![b'z'; 1 << 20];
    huge.push(b'\n');
    append_bytes(&f.path, &huge);
    let store = f.recovering(RecoveryMode::AbsoluteConsistency);
    // What zeros that swallowed newlines leave: an interrupted write, for readers too.
    assert_eq!(store.tip(f.session, f.segment).unwrap().count, 3);
    let err = store.append(f.session, f.segment, &entry(3)).unwrap_err();
    assert_eq!(
        assert_corrupt(&err, &f.path, 5, start),
        CorruptReason::InterruptedWrite(TailKind::ZeroFilled)
    );
    assert_eq!(f.bytes().len() as u64, start + huge.len() as u64);
    assert_readers_leave_file_alone(&f);
    assert_eq!(
        f.fresh()
            .append(f.session, f.segment, &entry(3))
            .unwrap()
            .count,
        4
    );
    assert_eq!(
        f.bytes().len() as u64,
        start + entry_line(3, &entry(3).to_string()).len() as u64
    );
}

#[test]
fn invalid_utf8_under_a_correct_crc_is_corruption_for_replay_verify_and_repair() {
    let f = fixture(3);
    let start = f.bytes().len() as u64;
    let bad = framed(b"\"seq\":3,\"t\":1796000000000,\"e\":\"caf\xc3\x28 \xff\"}");
    append_bytes(&f.path, &bad);
    append_bytes(&f.path, &entry_line(4, &entry(4).to_string()));
    let next = start + bad.len() as u64;

    let err = f.strict_error();
    assert_eq!(
        assert_corrupt(&err, &f.path, 5, start),
        CorruptReason::Malformed("entry is not UTF-8")
    );
    let (report, entries) = f.tolerant();
    assert_eq!(seqs(&entries), vec![0, 1, 2, 4]);
    assert_eq!(
        report.problems,
        vec![
            Problem {
                line: 5,
                offset: start,
                reason: CorruptReason::Malformed("entry is not UTF-8")
            },
            Problem {
                line: 6,
                offset: next,
                reason: CorruptReason::SeqMismatch {
                    expected: 3,
                    found: 4
                }
            },
        ]
    );
    // A segment that verify calls clean must read back strictly; and repair, which trusts the
    // same check, must not leave an unreadable line in place.
    assert_eq!(f.store.verify(f.session, f.segment).unwrap(), report);
    assert_readers_leave_file_alone(&f);
    let plan = f.store.repair(f.session, f.segment, false).unwrap();
    assert_eq!((plan.keep_bytes, plan.kept_entries), (start, 3));
    assert_eq!(
        f.store.read::<Value>(f.session, f.segment).unwrap().len(),
        3
    );
}

#[test]
fn a_line_over_4096_bytes_with_a_correct_crc_is_too_long_and_leaves_a_gap() {
    let f = fixture(3);
    let start = f.bytes().len() as u64;
    let mut covered = b"\"seq\":3,\"e\":\"".to_vec();
    covered.extend(std::iter::repeat_n(b'a', 5000));
    covered.extend_from_slice(b"\"}");
    let long = framed(&covered);
    assert!(long.len() > MAX_LINE);
    append_bytes(&f.path, &long);
    let next = start + long.len() as u64;
    append_bytes(&f.path, &entry_line(4, &entry(4).to_string()));
    let too_long = CorruptReason::TooLong {
        len: long.len() as u64 - 1,
    };

    let err = f.strict_error();
    assert_eq!(assert_corrupt(&err, &f.path, 5, start), too_long);
    let (report, entries) = f.tolerant();
    assert_eq!(seqs(&entries), vec![0, 1, 2, 4]);
    assert_eq!(
        report.problems,
        vec![
            Problem {
                line: 5,
                offset: start,
                reason: too_long.clone()
            },
            Problem {
                line: 6,
                offset: next,
                reason: CorruptReason::SeqMismatch {
                    expected: 3,
                    found: 4
                }
            },
        ]
    );
    assert_eq!(f.store.verify(f.session, f.segment).unwrap(), report);
    assert_eq!(image_report(&f).unwrap().0, report);
    assert_readers_leave_file_alone(&f);

    // As the last line, it stops a writer that may not cut it.
    let g = fixture(3);
    append_bytes(&g.path, &long);
    let before = g.bytes();
    let err = g
        .recovering(RecoveryMode::AbsoluteConsistency)
        .append(g.session, g.segment, &entry(3))
        .unwrap_err();
    assert_eq!(
        assert_corrupt(&err, &g.path, 5, start),
        CorruptReason::InterruptedWrite(TailKind::ZeroFilled)
    );
    assert_eq!(g.bytes(), before);
}

// ---------------------------------------------------------------------------------------------
// Headers that are not ours to read

/// A segment file of format 1, as an earlier build made it: the header of `f`'s segment with
/// `"annals":1`, then `n` version-1 lines. Returns its bytes.
fn rewrite_as_version_1(f: &Fixture, n: u64) -> Vec<u8> {
    let before = f.bytes();
    let end = before.iter().position(|&b| b == b'\n').unwrap();
    let mut header = decode_header(&before[..end]).unwrap();
    header.annals = 1;
    let mut bytes = Vec::new();
    codec::encode_header(&header, &mut bytes).unwrap();
    for seq in 0..n {
        bytes.extend(v1_line(seq, &entry(seq).to_string()));
    }
    fs::write(&f.path, &bytes).unwrap();
    bytes
}

/// A segment file of format 2, as a writer that emits version-2 lines makes it: the header of
/// `f`'s segment with `"annals":2`, then `n` single-entry writes, the first one durable.
fn rewrite_as_version_2(f: &Fixture, n: u64) -> Vec<u8> {
    let before = f.bytes();
    let end = before.iter().position(|&b| b == b'\n').unwrap();
    let mut header = decode_header(&before[..end]).unwrap();
    header.annals = 2;
    let mut bytes = Vec::new();
    codec::encode_header(&header, &mut bytes).unwrap();
    for seq in 0..n {
        let marks = codec::Marks {
            appended_ms: 1_700_000_000_000 + seq,
            unsynced: seq.saturating_sub(1),
            more: 0,
        };
        let json = entry(seq).to_string();
        codec::encode_entry(&Frame::v2(seq, marks), &json, &mut bytes).unwrap();
    }
    fs::write(&f.path, &bytes).unwrap();
    bytes
}

#[test]
fn a_version_2_segment_from_another_program_is_read_with_its_times_appended_to_and_forked() {
    let f = fixture(0);
    let bytes = rewrite_as_version_2(&f, 3);
    let store = f.fresh();
    let mut times = Vec::new();
    store
        .replay_raw(f.session, f.segment, &ReplayOptions::strict(), &mut |e| {
            times.push((e.seq, e.appended_ms));
            Ok(std::ops::ControlFlow::Continue(()))
        })
        .unwrap();
    assert_eq!(
        times,
        vec![
            (0, Some(1_700_000_000_000)),
            (1, Some(1_700_000_000_001)),
            (2, Some(1_700_000_000_002))
        ]
    );
    assert!(store.verify(f.session, f.segment).unwrap().is_clean());
    assert_eq!(store.tip(f.session, f.segment).unwrap().count, 3);
    // Its last line claims entries before it unsynced: the writer checks them, finds them
    // whole, and appends a version-2 line with its own time.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert_eq!(
        store.append(f.session, f.segment, &entry(3)).unwrap().count,
        4
    );
    assert!(store.take_recovered().is_empty(), "nothing to cut");
    let after = f.bytes();
    assert!(after.starts_with(&bytes));
    let last = &after[bytes.len()..after.len() - 1];
    let line = check_entry_line(last).unwrap();
    assert_eq!(line.seq, 3);
    let marks = line.marks.expect("a version-2 line");
    assert!(marks.appended_ms >= now, "{marks:?}");
    assert_eq!(marks.more, 0);
    // A fork copies the lines, so it keeps their version.
    let fork = SegmentId::new();
    store.fork(f.session, f.segment, 2, fork).unwrap();
    let forked = fs::read(store.segment_path(f.session, fork)).unwrap();
    let end = forked.iter().position(|&b| b == b'\n').unwrap();
    assert_eq!(decode_header(&forked[..end]).unwrap().annals, 2);
    assert_eq!(store.read::<Value>(f.session, fork).unwrap().len(), 2);
}

#[test]
fn a_header_of_a_future_format_version_is_unsupported_everywhere_and_left_alone() {
    let f = fixture(0);
    // A future version may change the header's layout; only `annals` is assumed to stay.
    let mut bytes = framed(
        format!(
            "\"annals\":{},\"layout\":{{\"new\":true}},\"segment\":\"{}\"}}",
            FORMAT_VERSION + 1,
            f.segment
        )
        .as_bytes(),
    );
    bytes.extend_from_slice(&entry_line(0, "{\"future\":1}"));
    fs::write(&f.path, &bytes).unwrap();
    let is_unsupported = |r: annals::Result<_>, what: &str| match r {
        Err(Error::UnsupportedVersion {
            path,
            found,
            supported,
        }) => {
            assert_eq!(path, f.path, "{what}");
            assert_eq!(
                (found, supported),
                (u64::from(FORMAT_VERSION) + 1, FORMAT_VERSION)
            );
        }
        Err(other) => panic!("{what}: expected UnsupportedVersion, got {other:?}"),
        Ok(_) => panic!("{what}: expected UnsupportedVersion, got Ok"),
    };
    is_unsupported(
        f.replay(ReplayOptions::strict()).map(|_| ()),
        "strict replay",
    );
    is_unsupported(
        f.replay(ReplayOptions::tolerant()).map(|_| ()),
        "tolerant replay",
    );
    is_unsupported(f.store.verify(f.session, f.segment).map(|_| ()), "verify");
    let store = f.fresh();
    is_unsupported(store.tip(f.session, f.segment).map(|_| ()), "tip");
    is_unsupported(
        store.append(f.session, f.segment, &entry(0)).map(|_| ()),
        "append",
    );
    is_unsupported(
        store.truncate(f.session, f.segment, 0).map(|_| ()),
        "truncate",
    );
    is_unsupported(
        store.repair(f.session, f.segment, false).map(|_| ()),
        "repair",
    );
    let listed = store.list_segments(f.session).unwrap();
    assert!(
        matches!(
            listed[0].damage,
            Some(annals::Damage::UnsupportedVersion { found }) if found != u64::from(FORMAT_VERSION)
        ),
        "{listed:?}"
    );
    assert_readers_leave_file_alone(&f);
    assert_eq!(f.bytes(), bytes);
    assert_eq!(dir_names(&f.session_dir()).len(), 1);
}

#[test]
fn a_header_naming_another_segment_is_a_wrong_identity_and_nothing_writes_through_it() {
    let f = fixture(3);
    let victim = SegmentId::new();
    f.store
        .create::<Value>(f.session, victim, &[entry(0)])
        .unwrap();
    let victim_path = f.store.segment_path(f.session, victim);
    // Someone copied one segment's file over another's.
    fs::copy(&f.path, &victim_path).unwrap();
    let source_before = file_state(&f.path);
    let victim_before = file_state(&victim_path);

    let err = replay_with(&f.store, f.session, victim, ReplayOptions::strict()).unwrap_err();
    match assert_corrupt(&err, &victim_path, 1, 0) {
        CorruptReason::WrongIdentity { expected, found } => {
            assert!(expected.contains(&victim.to_string()), "{expected}");
            assert!(found.contains(&f.segment.to_string()), "{found}");
        }
        other => panic!("expected WrongIdentity, got {other:?}"),
    }
    let (report, _) = replay_with(&f.store, f.session, victim, ReplayOptions::tolerant()).unwrap();
    assert!(matches!(
        report.problems[0].reason,
        CorruptReason::WrongIdentity { .. }
    ));
    assert_eq!(report.valid_up_to, 0);
    assert_eq!(f.store.verify(f.session, victim).unwrap(), report);

    let store = f.fresh();
    let err = store.tip(f.session, victim).unwrap_err();
    assert!(matches!(
        assert_corrupt(&err, &victim_path, 1, 0),
        CorruptReason::WrongIdentity { .. }
    ));
    assert!(store.append(f.session, victim, &entry(9)).is_err());
    assert!(store.truncate(f.session, victim, 0).is_err());
    let err = store.repair(f.session, victim, false).unwrap_err();
    assert!(
        matches!(
            assert_corrupt(&err, &victim_path, 1, 0),
            CorruptReason::WrongIdentity { .. }
        ),
        "repair says why nothing can be kept: {err}"
    );
    let listed = store.list_segments(f.session).unwrap();
    let damaged: Vec<_> = listed.iter().filter(|i| i.damage.is_some()).collect();
    assert_eq!(damaged.len(), 1);
    assert_eq!(damaged[0].segment, victim);
    assert_eq!(file_state(&f.path), source_before);
    assert_eq!(file_state(&victim_path), victim_before);
}

#[test]
fn a_header_naming_another_session_is_a_wrong_identity() {
    let f = fixture(2);
    let other_session = SessionId::new();
    f.store
        .create::<Value>(other_session, f.segment, &[])
        .unwrap();
    let other_path = f.store.segment_path(other_session, f.segment);
    fs::copy(&f.path, &other_path).unwrap();
    let err = replay_with(&f.store, other_session, f.segment, ReplayOptions::strict()).unwrap_err();
    match assert_corrupt(&err, &other_path, 1, 0) {
        CorruptReason::WrongIdentity { expected, found } => {
            assert!(expected.contains(&other_session.to_string()), "{expected}");
            assert!(found.contains(&f.session.to_string()), "{found}");
        }
        other => panic!("expected WrongIdentity, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Two writers that did not see each other

#[test]
fn a_repeated_sequence_number_is_reported_as_two_blind_writers() {
    let f = fixture(3);
    let dup_at = f.bytes().len() as u64;
    append_bytes(&f.path, &entry_line(2, "{\"writer\":\"b\"}"));
    append_bytes(&f.path, &entry_line(3, "{\"writer\":\"b\"}"));
    let err = f.strict_error();
    let reason = assert_corrupt(&err, &f.path, 5, dup_at);
    assert_eq!(
        reason,
        CorruptReason::SeqMismatch {
            expected: 3,
            found: 2
        }
    );
    assert!(err.to_string().contains("two writers"), "{err}");
    let (report, entries) = f.tolerant();
    assert_eq!(
        seqs(&entries),
        vec![0, 1, 2, 2, 3],
        "tolerant delivers both"
    );
    assert_eq!(report.problem_count, 1);
    assert_eq!(report.valid_up_to, dup_at);
    assert_eq!(f.store.verify(f.session, f.segment).unwrap(), report);
    assert_readers_leave_file_alone(&f);
    assert_eq!(f.fresh().tip(f.session, f.segment).unwrap().count, 4);

    let plan = f.store.repair(f.session, f.segment, false).unwrap();
    assert_eq!((plan.keep_bytes, plan.kept_entries), (dup_at, 3));
    assert_eq!(
        f.store.read::<Value>(f.session, f.segment).unwrap(),
        vec![entry(0), entry(1), entry(2)]
    );
}

#[test]
fn a_skipped_sequence_number_is_reported_as_missing_entries() {
    let f = fixture(3);
    let gap_at = f.bytes().len() as u64;
    append_bytes(&f.path, &entry_line(5, "{\"after\":\"gap\"}"));
    let err = f.strict_error();
    assert_eq!(
        assert_corrupt(&err, &f.path, 5, gap_at),
        CorruptReason::SeqMismatch {
            expected: 3,
            found: 5
        }
    );
    assert!(err.to_string().contains("missing"), "{err}");
    let (report, entries) = f.tolerant();
    assert_eq!(seqs(&entries), vec![0, 1, 2, 5]);
    assert_eq!(report.problem_count, 1);
    assert_eq!(f.store.verify(f.session, f.segment).unwrap(), report);
    assert_readers_leave_file_alone(&f);
}

// ---------------------------------------------------------------------------------------------
// Things in the store that are not ours

#[test]
fn foreign_files_and_folders_are_ignored_never_deleted_and_never_fatal() {
    let f = fixture(2);
    let root = f.store.root().to_path_buf();
    let sdir = f.session_dir();
    let seg = f.segment;
    let foreign_files: Vec<(PathBuf, Vec<u8>)> = vec![
        (root.join("README.txt"), b"not a session".to_vec()),
        (
            root.join(SessionId::new().to_string()),
            b"a file named like a session".to_vec(),
        ),
        (root.join(".DS_Store"), vec![0, 1, 2]),
        (sdir.join("README.txt"), b"notes".to_vec()),
        (sdir.join(format!(".{seg}.jsonl.swp")), b"vim swap".to_vec()),
        (sdir.join(format!("{seg}.jsonl~")), b"emacs backup".to_vec()),
        (sdir.join("4913"), Vec::new()),
        (
            sdir.join(format!(".{seg}.{}.tmp", uuid::Uuid::now_v7().simple())),
            b"{\"crc\":\"00000000\",\"annals\":1".to_vec(),
        ),
        (
            sdir.join(format!("{}.jsonl.tmp", SegmentId::new())),
            b"x".to_vec(),
        ),
        (sdir.join("not-a-uuid.jsonl"), b"{}\n".to_vec()),
        (sdir.join(format!("{seg}.JSONL")), b"case matters".to_vec()),
    ];
    let foreign_dirs = vec![
        root.join("not-a-uuid"),
        sdir.join("not-a-uuid"),
        sdir.join(SegmentId::new().to_string()),
    ];
    for (path, bytes) in &foreign_files {
        fs::write(path, bytes).unwrap();
    }
    for dir in &foreign_dirs {
        fs::create_dir(dir).unwrap();
        fs::write(dir.join("inside.txt"), b"keep me").unwrap();
    }

    let store = f.fresh();
    assert_eq!(store.list_sessions().unwrap(), vec![f.session]);
    let listed = store.list_segments(f.session).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].segment, seg);
    assert!(listed[0].damage.is_none());
    assert_eq!(store.find_session(seg).unwrap(), Some(f.session));
    assert!(store.session_modified(f.session).is_ok());

    // Every kind of write, next to the foreign things.
    store.append(f.session, seg, &entry(2)).unwrap();
    store
        .append_trace(f.session, seg, &json!({"event": 1}))
        .unwrap();
    store.truncate(f.session, seg, 1).unwrap();
    let fork = SegmentId::new();
    store.fork(f.session, seg, 1, fork).unwrap();
    let other = SegmentId::new();
    store
        .create::<Value>(f.session, other, &[entry(0)])
        .unwrap();
    assert!(store.repair(f.session, seg, false).unwrap().is_noop());
    let other_session = SessionId::new();
    store
        .create::<Value>(other_session, SegmentId::new(), &[])
        .unwrap();
    store.delete_session(other_session).unwrap();

    let mut listed: Vec<SegmentId> = store
        .list_segments(f.session)
        .unwrap()
        .into_iter()
        .map(|i| i.segment)
        .collect();
    listed.sort();
    let mut expected = vec![seg, fork, other];
    expected.sort();
    assert_eq!(listed, expected);
    assert_eq!(store.list_sessions().unwrap(), vec![f.session]);
    for (path, bytes) in &foreign_files {
        assert_eq!(
            &fs::read(path).unwrap(),
            bytes,
            "{} was touched",
            path.display()
        );
    }
    for dir in &foreign_dirs {
        assert_eq!(fs::read(dir.join("inside.txt")).unwrap(), b"keep me");
    }
}

#[test]
fn a_symlink_in_place_of_a_segment_is_not_a_segment_and_nothing_writes_through_it() {
    let f = fixture(2);
    let target_state = file_state(&f.path);
    let fake = SegmentId::new();
    let link = f.store.segment_path(f.session, fake);
    std::os::unix::fs::symlink(&f.path, &link).unwrap();

    let store = f.fresh();
    assert!(!store.exists(f.session, fake).unwrap());
    let listed = store.list_segments(f.session).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].segment, f.segment);
    assert_eq!(store.find_session(fake).unwrap(), None);
    // Through the link the file names another segment: an error, never a write.
    assert!(replay_with(&store, f.session, fake, ReplayOptions::strict()).is_err());
    assert!(store.append(f.session, fake, &entry(9)).is_err());
    assert!(store.truncate(f.session, fake, 0).is_err());
    assert!(store.repair(f.session, fake, false).is_err());
    assert!(store.create::<Value>(f.session, fake, &[entry(0)]).is_err());
    assert_eq!(file_state(&f.path), target_state);
    assert!(fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    // The real segment is unaffected.
    assert_eq!(
        store.append(f.session, f.segment, &entry(2)).unwrap().count,
        3
    );
}

#[test]
fn a_directory_in_place_of_a_segment_file_gives_a_clear_error_and_is_left_alone() {
    let f = fixture(2);
    let fake = SegmentId::new();
    let dir = f.store.segment_path(f.session, fake);
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("inside"), b"mine").unwrap();
    let neighbour = file_state(&f.path);

    let store = f.fresh();
    assert!(!store.exists(f.session, fake).unwrap());
    assert_eq!(store.list_segments(f.session).unwrap().len(), 1);
    let name = dir.display().to_string();
    let errors = [
        replay_with(&store, f.session, fake, ReplayOptions::strict()).map(|_| ()),
        store.verify(f.session, fake).map(|_| ()),
        store.tip(f.session, fake).map(|_| ()),
        store.append(f.session, fake, &entry(0)).map(|_| ()),
        store.truncate(f.session, fake, 0).map(|_| ()),
        store.repair(f.session, fake, false).map(|_| ()),
    ];
    for (i, result) in errors.into_iter().enumerate() {
        let err = result.expect_err("a directory is not a segment");
        let text = err.to_string();
        assert!(
            text.contains(&name) || matches!(err, Error::SegmentNotFound { .. }),
            "call {i}: the error should name the path: {text}"
        );
    }
    assert!(store.create::<Value>(f.session, fake, &[]).is_err());
    assert_eq!(fs::read(dir.join("inside")).unwrap(), b"mine");
    assert_eq!(file_state(&f.path), neighbour);
    assert!(
        !dir_names(&f.session_dir())
            .iter()
            .any(|n| n.ends_with(".tmp")),
        "a failed create cleans up its temporary file"
    );
}

// ---------------------------------------------------------------------------------------------
// Permissions, rewrites, durability

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn session_dirs_are_private_and_every_file_is_owner_only() {
    let f = fixture(3);
    assert_eq!(mode(&f.session_dir()), 0o700);
    assert_eq!(mode(&f.path), 0o600);
    f.store
        .append_trace(f.session, f.segment, &json!({"e": 1}))
        .unwrap();
    let trace = f.session_dir().join(format!("{}.trace.jsonl", f.segment));
    assert_eq!(mode(&trace), 0o600);
    f.store.truncate(f.session, f.segment, 1).unwrap();
    assert_eq!(mode(&f.path), 0o600, "a rewritten file keeps the mode");
    let fork = SegmentId::new();
    f.store.fork(f.session, f.segment, 1, fork).unwrap();
    assert_eq!(mode(&f.store.segment_path(f.session, fork)), 0o600);

    let root = f.dir.path().join("fresh-root/nested");
    let store = FsStore::open(&root).unwrap();
    assert_eq!(mode(&root), 0o700);
    let session = SessionId::new();
    store
        .create::<Value>(session, SegmentId::new(), &[])
        .unwrap();
    assert_eq!(mode(&root.join(session.to_string())), 0o700);
}

#[test]
fn truncate_keeps_kept_lines_byte_identical_and_bumps_the_generation() {
    let f = fixture(0);
    // Raw JSON the store must not re-serialize: key order, number spelling, escapes.
    let raws: Vec<RawEntry> = (0..10)
        .map(|i| {
            RawEntry::from_json(&format!(
                r#"{{"z":{i},"a":"\u00e9t\u00e9 \"quoted\" ünïcödé","n":1.50e0}}"#
            ))
            .unwrap()
        })
        .collect();
    // Two writes: the truncate keeps the first whole.
    for write in [&raws[..6], &raws[6..]] {
        f.store
            .append_batch_raw(f.session, f.segment, write)
            .unwrap();
    }
    let before = f.bytes();
    let tip = f.store.truncate(f.session, f.segment, 6).unwrap();
    assert_eq!(
        tip,
        Tip {
            count: 6,
            generation: 1
        }
    );
    let after = f.bytes();
    let (old, new) = (lines(&before), lines(&after));
    assert_eq!(new.len(), 7);
    for i in 1..7 {
        assert_eq!(after[new[i].clone()], before[old[i].clone()], "line {i}");
    }
    let old_header = decode_header(&before[old[0].start..old[0].end - 1]).unwrap();
    let new_header = decode_header(&after[new[0].start..new[0].end - 1]).unwrap();
    assert_eq!(new_header.generation, old_header.generation + 1);
    assert_eq!(
        Header {
            generation: old_header.generation,
            ..new_header.clone()
        },
        old_header,
        "only the generation changes"
    );
    assert_eq!(new_header.kind, FileKind::Segment);
    let read = f.store.read_raw(f.session, f.segment).unwrap();
    assert_eq!(read, raws[..6]);
}

#[test]
fn truncate_inside_a_write_frames_its_kept_lines_as_a_write_of_their_own() {
    let f = fixture(0);
    let batch: Vec<Value> = (0..10).map(entry).collect();
    f.store.append_batch(f.session, f.segment, &batch).unwrap();
    let before = f.bytes();
    f.store.truncate(f.session, f.segment, 6).unwrap();
    let after = f.bytes();
    let (old, new) = (lines(&before), lines(&after));
    assert_eq!(new.len(), 7);
    for i in 1..7 {
        let was = check_entry_line(&before[old[i].start..old[i].end - 1]).unwrap();
        let is = check_entry_line(&after[new[i].start..new[i].end - 1]).unwrap();
        let (was_marks, is_marks) = (was.marks.unwrap(), is.marks.unwrap());
        // Same entry, time and watermark; `more` counts only the lines kept.
        assert_eq!(is.seq, was.seq);
        assert_eq!(
            &after[new[i].start..][is.body.clone()],
            &before[old[i].start..][was.body.clone()]
        );
        assert_eq!(is_marks.appended_ms, was_marks.appended_ms);
        assert_eq!(is_marks.unsynced, was_marks.unsynced);
        assert_eq!(was_marks.more, 10 - i as u64);
        assert_eq!(is_marks.more, 6 - i as u64, "line {i}");
    }
    // The kept write is whole: nothing is an interrupted tail, and a new writer appends.
    let report = f.store.verify(f.session, f.segment).unwrap();
    assert!(
        report.is_clean() && report.torn_tail.is_none(),
        "{report:?}"
    );
    assert_eq!(
        f.fresh()
            .append(f.session, f.segment, &entry(6))
            .unwrap()
            .count,
        7
    );
    let read: Vec<Value> = f.store.read(f.session, f.segment).unwrap();
    assert_eq!(read, (0..7).map(entry).collect::<Vec<_>>());
}

#[test]
fn another_handle_appends_into_the_rewritten_file_after_a_truncate() {
    let f = fixture(10);
    let other = f.fresh();
    // `other` holds an open descriptor on the file that the truncate will replace.
    assert_eq!(
        other
            .append(f.session, f.segment, &entry(10))
            .unwrap()
            .count,
        11
    );
    let old_inode = fs::metadata(&f.path).unwrap().ino();

    f.store.truncate(f.session, f.segment, 6).unwrap();
    assert_ne!(fs::metadata(&f.path).unwrap().ino(), old_inode);
    let tip = other.append(f.session, f.segment, &json!("after")).unwrap();
    assert_eq!(
        tip,
        Tip {
            count: 7,
            generation: 1
        }
    );
    let entries: Vec<Value> = FsStore::open(f.store.root())
        .unwrap()
        .read(f.session, f.segment)
        .unwrap();
    let mut expected: Vec<Value> = (0..6).map(entry).collect();
    expected.push(json!("after"));
    assert_eq!(entries, expected);
    let (report, seen) = f.replay(ReplayOptions::strict()).unwrap();
    assert_eq!(seqs(&seen), (0..7).collect::<Vec<_>>());
    assert!(report.is_clean() && report.torn_tail.is_none());
}

#[test]
fn a_segment_writer_opened_before_a_truncate_gets_concurrent_writer() {
    let f = fixture(10);
    let mut writer = SegmentWriter::open(&f.store, f.session, f.segment).unwrap();
    assert_eq!(
        writer.tip(),
        Tip {
            count: 10,
            generation: 0
        }
    );
    f.fresh().truncate(f.session, f.segment, 6).unwrap();
    let before = f.bytes();
    match writer.append(&json!("stale")) {
        Err(Error::ConcurrentWriter {
            segment,
            expected,
            found,
        }) => {
            assert_eq!(segment, f.segment);
            assert_eq!(
                expected,
                Tip {
                    count: 10,
                    generation: 0
                }
            );
            assert_eq!(
                found,
                Tip {
                    count: 6,
                    generation: 1
                }
            );
        }
        other => panic!("expected ConcurrentWriter, got {other:?}"),
    }
    assert_eq!(f.bytes(), before, "a refused append writes nothing");
    writer.resync().unwrap();
    assert_eq!(writer.append(&json!("fresh")).unwrap().count, 7);
}

#[test]
fn regrowing_to_the_same_count_after_a_truncate_is_still_detected_by_the_generation() {
    let f = fixture(10);
    let mut writer = SegmentWriter::open(&f.store, f.session, f.segment).unwrap();
    let other = f.fresh();
    other.truncate(f.session, f.segment, 6).unwrap();
    let regrown: Vec<Value> = (0..4).map(|i| json!({"other": i})).collect();
    let tip = other.append_batch(f.session, f.segment, &regrown).unwrap();
    assert_eq!(
        tip.count,
        writer.tip().count,
        "same count as the writer saw"
    );
    let err = writer.append(&json!("mine")).unwrap_err();
    assert!(
        matches!(err, Error::ConcurrentWriter { found, .. } if found == tip),
        "{err:?}"
    );
}

#[test]
fn sync_durability_appends_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open_with(
        dir.path(),
        FsOptions {
            durability: Durability::Sync,
            max_open_files: 2,
            ..FsOptions::default()
        },
    )
    .unwrap();
    assert_eq!(store.options().durability, Durability::Sync);
    let session = SessionId::new();
    let segments: Vec<SegmentId> = (0..3).map(|_| SegmentId::new()).collect();
    for s in &segments {
        store.create::<Value>(session, *s, &[]).unwrap();
    }
    // More segments than open files, so handles are evicted and reopened along the way.
    for i in 0..20 {
        for s in &segments {
            store.append(session, *s, &entry(i)).unwrap();
        }
    }
    store
        .append_batch(session, segments[0], &[entry(20), entry(21)])
        .unwrap();
    store
        .append_trace(session, segments[0], &json!({"t": 1}))
        .unwrap();
    store.truncate(session, segments[1], 5).unwrap();
    let reopened = FsStore::open(dir.path()).unwrap();
    let first: Vec<Value> = reopened.read(session, segments[0]).unwrap();
    assert_eq!(first, (0..22).map(entry).collect::<Vec<_>>());
    assert_eq!(reopened.entry_count(session, segments[1]).unwrap(), 5);
    assert_eq!(reopened.entry_count(session, segments[2]).unwrap(), 20);
    for s in &segments {
        let report = reopened.verify(session, *s).unwrap();
        assert!(report.is_clean() && report.torn_tail.is_none());
    }
}

// ---------------------------------------------------------------------------------------------
// A store written to the v1 spec by another program

/// Copies `tests/fixtures/v1-store` (made by `make_v1_store.py` from docs/FORMAT.md alone) into
/// a temporary root, so that no test can change the checked-in files.
fn v1_store() -> (TempDir, FsStore) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1-store");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    fs::create_dir(&root).unwrap();
    for session in fs::read_dir(&from).unwrap() {
        let session = session.unwrap();
        let to = root.join(session.file_name());
        fs::create_dir(&to).unwrap();
        for file in fs::read_dir(session.path()).unwrap() {
            let file = file.unwrap();
            fs::copy(file.path(), to.join(file.file_name())).unwrap();
        }
    }
    let store = FsStore::open(&root).unwrap();
    (dir, store)
}

const V1_SESSION: &str = "01a20838-7f44-7579-bcf2-4f7b48e20938";
const V1_MAIN: &str = "01a20838-7f44-7579-bcf2-4f7c8a0940d0";
const V1_FORK: &str = "01a20838-8a01-7c3e-9d11-2b3c4d5e6f70";
const V1_TORN: &str = "01a20838-9b02-7d4f-8e22-3c4d5e6f7081";

#[test]
fn a_store_written_from_the_v1_spec_by_another_program_reads_back() {
    let (_dir, store) = v1_store();
    let session: SessionId = V1_SESSION.parse().unwrap();
    let (main, fork, torn): (SegmentId, SegmentId, SegmentId) = (
        V1_MAIN.parse().unwrap(),
        V1_FORK.parse().unwrap(),
        V1_TORN.parse().unwrap(),
    );
    assert_eq!(store.list_sessions().unwrap(), vec![session]);
    let listed = store.list_segments(session).unwrap();
    assert_eq!(
        listed.iter().map(|i| i.segment).collect::<Vec<_>>(),
        vec![torn, fork, main],
        "newest first"
    );
    assert!(listed.iter().all(|i| i.damage.is_none()), "{listed:?}");
    let main_info = &listed[2];
    assert_eq!(
        main_info.tip,
        Tip {
            count: 4,
            generation: 2
        }
    );
    assert_eq!(main_info.created_ms, 1_795_434_250_053);
    assert_eq!(
        listed[1].fork,
        Some(annals::Lineage {
            segment: main,
            at: 2
        })
    );

    let raw = store.read_raw(session, main).unwrap();
    let texts: Vec<&str> = raw.iter().map(RawEntry::as_str).collect();
    assert_eq!(
        texts,
        vec![
            r#"{"role":"user","text":"hi"}"#,
            r#"{"role":"assistant","text":"café \"quoted\" \n newline","n":1.50}"#,
            r#"[1,2,{"nested":{"deep":[null,true,false]}}]"#,
            r#""just a string""#,
        ],
        "entries come back as the exact text that was written"
    );
    let trace: Vec<Value> = store.read_trace(session, main).unwrap();
    assert_eq!(trace, vec![json!({"event": "tool_call", "ms": 12})]);
    let forked: Vec<Value> = store.read(session, fork).unwrap();
    assert_eq!(forked.len(), 3);
    let (report, entries) = replay_with(&store, session, torn, ReplayOptions::strict()).unwrap();
    assert_eq!(seqs(&entries), vec![0, 1]);
    assert_eq!(report.torn_tail.map(|t| t.len), Some(20));
    for segment in [main, fork, torn] {
        assert!(store.verify(session, segment).unwrap().is_clean());
    }
}

#[test]
fn this_build_encodes_the_v1_fixture_byte_for_byte() {
    let (_dir, store) = v1_store();
    let session: SessionId = V1_SESSION.parse().unwrap();
    for name in [V1_MAIN, V1_FORK] {
        let segment: SegmentId = name.parse().unwrap();
        let bytes = fs::read(store.segment_path(session, segment)).unwrap();
        let ranges = lines(&bytes);
        let header_line = &bytes[ranges[0].start..ranges[0].end - 1];
        let header = decode_header(header_line).unwrap();
        let mut again = Vec::new();
        codec::encode_header(&header, &mut again).unwrap();
        assert_eq!(again, &bytes[ranges[0].clone()], "header of {name}");
        for (seq, (range, raw)) in ranges[1..]
            .iter()
            .zip(store.read_raw(session, segment).unwrap())
            .enumerate()
        {
            assert_eq!(
                v1_line(seq as u64, raw.as_str()),
                &bytes[range.clone()],
                "line {} of {name}",
                seq + 2
            );
        }
    }
}

#[test]
fn appending_to_the_v1_fixture_continues_its_sequence_and_generation() {
    let (_dir, store) = v1_store();
    let session: SessionId = V1_SESSION.parse().unwrap();
    let main: SegmentId = V1_MAIN.parse().unwrap();
    let torn: SegmentId = V1_TORN.parse().unwrap();
    assert_eq!(
        store.append(session, main, &json!("next")).unwrap(),
        Tip {
            count: 5,
            generation: 2
        }
    );
    assert_eq!(
        store.append(session, torn, &json!({"a": 2})).unwrap().count,
        3
    );
    let report = store.verify(session, torn).unwrap();
    assert!(report.is_clean() && report.torn_tail.is_none());
    assert_eq!(
        store.truncate(session, main, 1).unwrap(),
        Tip {
            count: 1,
            generation: 3
        }
    );
}

#[test]
fn a_symlink_to_a_well_formed_segment_elsewhere_is_refused_not_written_through() {
    let f = fixture(2);
    // A genuine segment with the linked name's identity, outside the store.
    let elsewhere = FsStore::open(f.dir.path().join("elsewhere")).unwrap();
    let fake = SegmentId::new();
    elsewhere
        .create(f.session, fake, &[entry(0), entry(1)])
        .unwrap();
    let target = elsewhere.segment_path(f.session, fake);
    let before = file_state(&target);
    std::os::unix::fs::symlink(&target, f.store.segment_path(f.session, fake)).unwrap();

    let store = f.fresh();
    for err in [
        store
            .append(f.session, fake, &entry(2))
            .map(|_| ())
            .unwrap_err(),
        store.tip(f.session, fake).map(|_| ()).unwrap_err(),
        replay_with(&store, f.session, fake, ReplayOptions::strict())
            .map(|_| ())
            .unwrap_err(),
    ] {
        assert!(err.to_string().contains("symbolic link"), "{err}");
    }
    assert_eq!(
        file_state(&target),
        before,
        "nothing was written through the link"
    );
}

#[test]
fn create_segment_names_a_directory_in_the_way_instead_of_calling_it_a_segment() {
    let f = fixture(0);
    let fake = SegmentId::new();
    fs::create_dir(f.store.segment_path(f.session, fake)).unwrap();
    let err = f.store.create::<Value>(f.session, fake, &[]).unwrap_err();
    assert!(!matches!(err, Error::SegmentExists { .. }), "{err:?}");
    assert!(err.to_string().contains("in the way"), "{err}");
}

#[test]
fn replay_from_a_sequence_number_seeks_to_it_and_numbers_lines_exactly() {
    let f = fixture(0);
    let n = 30_000u64;
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let batch: Vec<Value> = chunk.iter().map(|&i| entry(i)).collect();
        f.store.append_batch(f.session, f.segment, &batch).unwrap();
        // Each batch's lines claim the batches before it durable: damage in them is damage,
        // not an interrupted tail.
        f.store.sync(f.session, f.segment).unwrap();
    }
    let read_from = |store: &FsStore, from: u64, mode: ReplayOptions| {
        let mut got = Vec::new();
        let report = store
            .replay(
                f.session,
                f.segment,
                &mode.from_seq(from),
                |meta, v: Value| {
                    got.push((meta.seq, v));
                    Ok(())
                },
            )
            .map(|r| (r.entries, r.is_clean()));
        (got, report)
    };
    for from in [1, 2, 977, n / 2, n - 1, n, n + 5] {
        let (got, report) = read_from(&f.store, from, ReplayOptions::strict());
        let want: Vec<(u64, Value)> = (from.min(n)..n).map(|i| (i, entry(i))).collect();
        assert_eq!(got, want, "from {from}");
        assert_eq!(report.unwrap(), (n, true), "from {from}");
    }

    // Damage far before the start is not read at all (the reader seeks past it); damage after
    // it is reported with its real line number.
    let bytes = fs::read(&f.path).unwrap();
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(
            bytes
                .iter()
                .enumerate()
                .filter(|(_, &b)| b == b'\n')
                .map(|(i, _)| i + 1),
        )
        .collect();
    let mut damaged = bytes.clone();
    damaged[line_starts[101] + 30] ^= 0x20; // entry 100 (line 102)
    damaged[line_starts[25_001] + 30] ^= 0x20; // entry 25_000 (line 25_002)
    fs::write(&f.path, &damaged).unwrap();
    let fresh = f.fresh();
    let (got, report) = read_from(&fresh, 20_000, ReplayOptions::strict());
    match report {
        Err(Error::Corrupt { line, offset, .. }) => {
            assert_eq!(line, 25_002);
            assert_eq!(offset, line_starts[25_001] as u64);
        }
        other => panic!("expected the damage at entry 25000, got {other:?}"),
    }
    assert_eq!(
        got.len(),
        5_000,
        "entries 20000..25000 came before the damage"
    );
    let (got, report) = read_from(&fresh, 26_000, ReplayOptions::strict());
    assert_eq!(got.len(), 4_000);
    assert!(report.unwrap().1, "nothing damaged is read from 26000 on");
    // From the start, the first damage stops a strict read.
    assert!(matches!(
        read_from(&fresh, 0, ReplayOptions::strict()).1,
        Err(Error::Corrupt { line: 102, .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// The last sequence number

/// Rewrites `f`'s segment as a file of `version` whose only entry line has sequence number
/// `seq` (as if the entries before it had been cut by hand): the writer finds the count from
/// the last line. Returns the bytes.
fn segment_ending_at(f: &Fixture, version: u64, seq: u64) -> Vec<u8> {
    let before = f.bytes();
    let end = before.iter().position(|&b| b == b'\n').unwrap();
    let mut header = decode_header(&before[..end]).unwrap();
    header.annals = version;
    let mut bytes = Vec::new();
    codec::encode_header(&header, &mut bytes).unwrap();
    let json = entry(seq).to_string();
    if seq > codec::MAX_SEQ {
        // No encoder writes it: framed by hand, as a broken or hostile writer would.
        let covered = format!("\"seq\":{seq},\"e\":{json}}}");
        bytes.extend(framed(covered.as_bytes()));
    } else if version == 1 {
        bytes.extend(v1_line(seq, &json));
    } else {
        bytes.extend(entry_line(seq, &json));
    }
    fs::write(&f.path, &bytes).unwrap();
    bytes
}

#[test]
fn the_last_sequence_number_is_written_once_then_the_segment_is_full_in_either_version() {
    for version in [1, 2] {
        let f = fixture(0);
        segment_ending_at(&f, version, codec::MAX_SEQ - 1);
        let store = f.fresh();
        // A batch that would pass the last sequence number writes nothing.
        let before = f.bytes();
        let two = [entry(1), entry(2)];
        match store.append_batch(f.session, f.segment, &two) {
            Err(Error::SegmentFull { segment, count }) => {
                assert_eq!((segment, count), (f.segment, codec::MAX_SEQ));
            }
            other => panic!("version {version}: expected SegmentFull, got {other:?}"),
        }
        assert_eq!(f.bytes(), before);
        // One more entry takes the last sequence number, 2^64 - 2.
        let tip = store.append(f.session, f.segment, &entry(1)).unwrap();
        assert_eq!(tip.count, u64::MAX, "version {version}");
        let after = f.bytes();
        let last = lines(&after).pop().unwrap();
        let line = check_entry_line(&after[last.start..last.end - 1]).unwrap();
        assert_eq!(line.seq, codec::MAX_SEQ);
        assert_eq!(
            line.marks.is_some(),
            version == 2,
            "the file keeps its version"
        );
        // Then nothing more: never a wrap, never a repeat, from this store or a fresh one.
        for store in [store, f.fresh()] {
            let err = store.append(f.session, f.segment, &entry(2)).unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::SegmentFull {
                        count: u64::MAX,
                        ..
                    }
                ),
                "version {version}: {err:?}"
            );
            let text = err.to_string();
            assert!(
                text.contains("full") && text.contains("new segment"),
                "{text}"
            );
            assert_eq!(f.bytes(), after);
        }
    }
}

#[test]
fn a_line_past_the_last_sequence_number_is_refused_as_malformed_and_never_followed() {
    // 18446744073709551615 is no sequence number annals writes: a version-1 file whose last
    // line carries it (with a correct CRC) is damaged, and nothing is appended after it.
    let f = fixture(0);
    let bytes = segment_ending_at(&f, 1, u64::MAX);
    let store = f.fresh();
    for err in [
        store.append(f.session, f.segment, &entry(1)).unwrap_err(),
        store.tip(f.session, f.segment).unwrap_err(),
        f.strict_error(),
    ] {
        match &err {
            Error::Corrupt {
                line: 2, reason, ..
            } => {
                assert!(reason.to_string().contains("past the last one"), "{reason}");
            }
            other => panic!("expected Corrupt at line 2, got {other:?}"),
        }
    }
    assert_eq!(f.bytes(), bytes);
}
