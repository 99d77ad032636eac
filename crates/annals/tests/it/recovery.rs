//! A writer's recovery of an interrupted end, on real files: a batch cut between its lines, a
//! hole left by pages written back out of order, and what readers, `tip` and the next writer
//! make of each. The crash images of every operation are `powercut.rs`'s; these pin the exact
//! bytes cut.

use std::fs;
use std::path::PathBuf;

use annals::{
    CutReason, Durability, FsOptions, FsStore, RecoveryMode, ReplayOptions, SegmentId, SessionId,
    Store, StoreExt, TailKind, Tip,
};
use serde_json::{json, Value};
use tempfile::TempDir;

fn entry(n: u64) -> Value {
    json!({ "n": n, "text": format!("entry {n} of a recovery test") })
}

struct Log {
    _dir: TempDir,
    root: PathBuf,
    session: SessionId,
    segment: SegmentId,
    path: PathBuf,
}

impl Log {
    /// A segment of `n` entries made by `durability` appends (after an empty creation).
    fn new(durability: Durability, n: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        let (session, segment) = (SessionId::new(), SegmentId::new());
        let store = Self::open_at(&root, durability);
        store.create::<Value>(session, segment, &[]).unwrap();
        for i in 0..n {
            store.append(session, segment, &entry(i)).unwrap();
        }
        let path = store.segment_path(session, segment);
        Self {
            _dir: dir,
            root,
            session,
            segment,
            path,
        }
    }

    fn open_at(root: &std::path::Path, durability: Durability) -> FsStore {
        let options = FsOptions {
            durability,
            ..FsOptions::default()
        };
        FsStore::open_with(root, options).unwrap()
    }

    /// A store as a new process would open it.
    fn store(&self) -> FsStore {
        Self::open_at(&self.root, Durability::Buffered)
    }

    fn bytes(&self) -> Vec<u8> {
        fs::read(&self.path).unwrap()
    }

    fn ns(&self, store: &FsStore) -> Vec<u64> {
        let entries: Vec<Value> = store.read(self.session, self.segment).unwrap();
        entries.iter().map(|e| e["n"].as_u64().unwrap()).collect()
    }
}

fn line_starts(bytes: &[u8]) -> Vec<usize> {
    std::iter::once(0)
        .chain(
            bytes
                .iter()
                .enumerate()
                .filter(|(_, &b)| b == b'\n')
                .map(|(i, _)| i + 1),
        )
        .collect()
}

#[test]
fn a_batch_cut_between_its_lines_is_never_delivered_and_the_next_writer_moves_it_aside() {
    let log = Log::new(Durability::Sync, 3);
    let writer = Log::open_at(&log.root, Durability::Sync);
    let batch = [entry(3), entry(4), entry(5)];
    writer
        .append_batch(log.session, log.segment, &batch)
        .unwrap();
    let whole = log.bytes();
    let starts = line_starts(&whole);
    // The power went after the batch's first two lines reached the disk (lines 5 and 6).
    let kept = starts[6];
    fs::write(&log.path, &whole[..kept]).unwrap();

    let reader = log.store();
    for options in [ReplayOptions::strict(), ReplayOptions::tolerant()] {
        let mut seen = Vec::new();
        let report = reader
            .replay(log.session, log.segment, &options, |meta, _: Value| {
                seen.push(meta.seq);
                Ok(())
            })
            .unwrap();
        assert_eq!(seen, [0, 1, 2], "nothing of the batch is delivered");
        let tail = report.torn_tail.expect("an interrupted tail");
        assert_eq!(tail.kind, TailKind::PartialWrite { lines: 2, of: 3 });
        assert_eq!(tail.offset, starts[4] as u64);
        assert!(report.is_clean(), "{report:?}");
    }
    // Readers count what they deliver, and never cut.
    let before = reader.tip(log.session, log.segment).unwrap();
    assert_eq!(before.count, 3);
    assert_eq!(reader.entry_count(log.session, log.segment).unwrap(), 3);
    assert_eq!(log.bytes(), &whole[..kept]);

    // The next writer cuts the two lines into a recovered file and appends where they began.
    // The tip a worker read before is still the tip: the cut took nothing anyone was shown, so
    // the generation stays and the detector lets the worker carry on.
    let next = log.store();
    let tip = next
        .append_if(
            log.session,
            log.segment,
            before,
            &[annals::RawEntry::from_value(&entry(9)).unwrap()],
        )
        .unwrap();
    assert_eq!(
        tip,
        Tip {
            count: 4,
            generation: 0
        }
    );
    let events = next.take_recovered();
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(event.offset, starts[4] as u64);
    assert_eq!(event.len, (kept - starts[4]) as u64);
    assert_eq!(event.kept_entries, 3);
    assert!(matches!(
        event.why,
        CutReason::Interrupted(t) if t.kind == TailKind::PartialWrite { lines: 2, of: 3 }
    ));
    assert_eq!(fs::read(&event.saved).unwrap(), &whole[starts[4]..kept]);
    assert_eq!(log.ns(&next), [0, 1, 2, 9]);
    assert_eq!(next.tip(log.session, log.segment).unwrap(), tip);
    assert_eq!(log.store().tip(log.session, log.segment).unwrap(), tip);
    assert!(next.verify(log.session, log.segment).unwrap().is_clean());
}

/// A `Sync` batch's first line claims every entry before it durable, so its file looks vouched
/// for from the last line alone; that it ends inside a write (`more` > 0) is what tells the
/// reader's tip and a listing to stop before it, as replay does.
#[test]
fn a_sync_batch_cut_after_its_first_line_is_counted_by_no_reader() {
    let log = Log::new(Durability::Sync, 3);
    let writer = Log::open_at(&log.root, Durability::Sync);
    // After this one, the writer knows every entry durable: its batch's first line says so.
    writer.append(log.session, log.segment, &entry(3)).unwrap();
    writer
        .append_batch(log.session, log.segment, &[entry(4), entry(5), entry(6)])
        .unwrap();
    let bytes = log.bytes();
    let starts = line_starts(&bytes);
    let first: Value = serde_json::from_slice(&bytes[starts[5]..starts[6] - 1]).unwrap();
    assert_eq!(
        (first["u"].as_u64(), first["more"].as_u64()),
        (None, Some(2))
    );
    // Header and four entries, then the batch's first line only.
    fs::write(&log.path, &bytes[..starts[6]]).unwrap();
    let reader = log.store();
    assert_eq!(reader.tip(log.session, log.segment).unwrap().count, 4);
    let listed = reader.list_segments(log.session).unwrap();
    assert_eq!(listed[0].tip.count, 4);
    assert_eq!(log.ns(&reader), [0, 1, 2, 3]);
}

#[test]
fn repair_moves_a_partial_batch_aside_under_the_same_generation() {
    // As the writer's recovery: the cut lines were never delivered, so the tip readers saw
    // before the repair is the tip after it.
    let log = Log::new(Durability::Sync, 3);
    let batch = [entry(3), entry(4), entry(5)];
    log.store()
        .append_batch(log.session, log.segment, &batch)
        .unwrap();
    let whole = log.bytes();
    let starts = line_starts(&whole);
    fs::write(&log.path, &whole[..starts[6]]).unwrap();
    let store = log.store();
    let before = store.tip(log.session, log.segment).unwrap();
    let plan = store.repair(log.session, log.segment, false).unwrap();
    assert_eq!(plan.first_problem, None);
    assert_eq!(plan.kept_entries, 3);
    let backup = plan.backup.expect("the cut lines are kept");
    assert_eq!(fs::read(backup).unwrap(), &whole[starts[4]..starts[6]]);
    assert_eq!(store.tip(log.session, log.segment).unwrap(), before);
    assert_eq!(log.store().tip(log.session, log.segment).unwrap(), before);
    assert_eq!(before.generation, 0);
    assert_eq!(log.bytes(), &whole[..starts[4]]);
}

#[test]
fn a_hole_before_a_later_unsynced_write_is_cut_from_the_hole_by_the_next_writer() {
    // Entries 0..3 synced, 3..6 buffered; the page write-back lost entry 3's line but kept
    // entries 4 and 5.
    let log = Log::new(Durability::Buffered, 3);
    let writer = log.store();
    writer.sync(log.session, log.segment).unwrap();
    for i in 3..6 {
        writer.append(log.session, log.segment, &entry(i)).unwrap();
    }
    let whole = log.bytes();
    let starts = line_starts(&whole);
    let mut holed = whole.clone();
    holed[starts[4]..starts[5]].fill(0);
    fs::write(&log.path, &holed).unwrap();

    let reader = log.store();
    let report = reader.verify(log.session, log.segment).unwrap();
    let tail = report.torn_tail.expect("an interrupted tail");
    assert_eq!(tail.offset, starts[4] as u64);
    assert_eq!(tail.kind, TailKind::ZeroFilled);
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(log.ns(&reader), [0, 1, 2]);

    let before = reader.tip(log.session, log.segment).unwrap();
    let next = log.store();
    let tip = next.append(log.session, log.segment, &entry(9)).unwrap();
    assert_eq!(tip.count, 4);
    assert_eq!(
        tip.generation, before.generation,
        "the hole held nothing delivered"
    );
    let event = next.take_recovered().pop().expect("a cut");
    assert_eq!(fs::read(&event.saved).unwrap(), &holed[starts[4]..]);
    assert_eq!(log.ns(&next), [0, 1, 2, 9]);
}

/// A worker that resumes after a power cut often does its last step again, and gets the same
/// output: the same blob. The line of the blob the cut lost is an interrupted tail for every
/// reader; the worker's append of the same bytes must move it aside first, not make it whole.
#[test]
fn a_line_whose_blob_a_power_cut_lost_stays_cut_when_the_same_blob_is_appended_again() {
    let log = Log::new(Durability::Buffered, 2);
    let writer = log.store();
    writer.sync(log.session, log.segment).unwrap();
    let output = json!({ "n": 7, "output": "the same tool output\n".repeat(400) });
    let pack = log.root.join(log.session.to_string()).join("blobs/pack");
    let packed_before = fs::metadata(&pack).map_or(0, |m| m.len());
    writer.append(log.session, log.segment, &output).unwrap();
    // The power cut: the line reached the disk, the blob's record did not.
    fs::OpenOptions::new()
        .write(true)
        .open(&pack)
        .unwrap()
        .set_len(packed_before)
        .unwrap();
    drop(writer);

    let resumed = log.store();
    let tip = resumed.tip(log.session, log.segment).unwrap();
    assert_eq!(tip.count, 2, "the lost blob's line is an interrupted tail");
    let lost_line = log.bytes()[line_starts(&log.bytes())[3]..].to_vec();
    let after = resumed
        .append_if(
            log.session,
            log.segment,
            tip,
            &[annals::RawEntry::from_value(&output).unwrap()],
        )
        .unwrap();
    assert_eq!(after.count, 3, "appended where the reader's tip said");
    assert_eq!(after.generation, tip.generation);
    let event = resumed.take_recovered().pop().expect("the tail was cut");
    match &event.why {
        CutReason::Interrupted(tail) => assert_eq!(tail.kind, TailKind::LostBlob),
        other => panic!("cut for {other:?}"),
    }
    assert_eq!(fs::read(&event.saved).unwrap(), lost_line);
    let entries: Vec<Value> = log.store().read(log.session, log.segment).unwrap();
    assert_eq!(entries, vec![entry(0), entry(1), output]);
}

#[test]
fn point_in_time_cuts_at_damage_later_lines_vouch_for_under_a_new_generation() {
    // Entries 0..5 synced (each line vouches for those before it), 5 and 6 buffered, so the
    // last line does not vouch for the file and the next writer checks it, from the first
    // entry in `PointInTime`: the flipped byte in entry 2 is damage, and it cuts there.
    let log = Log::new(Durability::Sync, 5);
    let writer = log.store();
    for i in 5..7 {
        writer.append(log.session, log.segment, &entry(i)).unwrap();
    }
    let mut bytes = log.bytes();
    let starts = line_starts(&bytes);
    bytes[starts[3] + 40] ^= 0x01;
    fs::write(&log.path, &bytes).unwrap();
    let damaged = log.store();
    assert!(damaged
        .append(log.session, log.segment, &entry(9))
        .unwrap_err()
        .is_corruption());

    let options = FsOptions {
        recovery: RecoveryMode::PointInTime,
        ..FsOptions::default()
    };
    let next = FsStore::open_with(&log.root, options).unwrap();
    let tip = next.append(log.session, log.segment, &entry(9)).unwrap();
    assert_eq!(
        tip,
        Tip {
            count: 3,
            generation: 1
        },
        "acknowledged entries went: a new generation"
    );
    let event = next.take_recovered().pop().expect("a cut");
    assert!(matches!(event.why, CutReason::Damage(_)), "{:?}", event.why);
    assert_eq!(event.kept_entries, 2);
    assert_eq!(fs::read(&event.saved).unwrap(), &bytes[starts[3]..]);
    assert_eq!(log.ns(&next), [0, 1, 9]);
}

#[test]
fn damage_in_entries_a_later_line_claims_durable_is_never_cut_by_a_writer() {
    // Every Sync append claims the entries before it durable: a flipped byte in entry 2 is
    // damage, reported by readers, and the writer (which reads only unsynced lines) leaves it.
    let log = Log::new(Durability::Sync, 5);
    let mut bytes = log.bytes();
    let starts = line_starts(&bytes);
    bytes[starts[3] + 40] ^= 0x01;
    fs::write(&log.path, &bytes).unwrap();
    let store = log.store();
    let err = store.read::<Value>(log.session, log.segment).unwrap_err();
    assert!(err.is_corruption(), "{err}");
    assert!(err.to_string().contains("line 4"), "{err}");
    store.append(log.session, log.segment, &entry(5)).unwrap();
    assert!(store.take_recovered().is_empty());
    assert!(log.bytes().starts_with(&bytes));
    assert!(store
        .read::<Value>(log.session, log.segment)
        .unwrap_err()
        .is_corruption());
}

#[test]
fn a_sync_append_leaves_nothing_for_the_next_writer_to_check() {
    // Its last line claims every entry before it durable; the next writer appends after it
    // without reading the file (the call counts of that path are pinned in src/fs/tests.rs).
    let log = Log::new(Durability::Sync, 3);
    let bytes = log.bytes();
    let last = *line_starts(&bytes).iter().rev().nth(1).unwrap();
    let line = annals::unstable::check_entry_line(&bytes[last..bytes.len() - 1]).unwrap();
    assert_eq!(line.marks.unwrap().unsynced, 0);
    let store = log.store();
    assert_eq!(
        store
            .append(log.session, log.segment, &entry(3))
            .unwrap()
            .count,
        4
    );
    assert!(store.take_recovered().is_empty());
}

/// What a store that has no handle of the file yet (a listing, another process) reads as the
/// tip: a format-2 file's interrupted end counts as replay reads it; a format-1 file's damaged
/// last line is damage, as it always was, not an end to read around.
#[test]
fn a_fresh_store_reads_the_tip_of_a_damaged_format_1_end_as_damage_and_of_format_2_as_replay_does()
{
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = FsStore::open(&root).unwrap();
    let (session, segment) = (SessionId::new(), SegmentId::new());
    store
        .create(session, segment, &[entry(0), entry(1), entry(2)])
        .unwrap();
    let path = store.segment_path(session, segment);
    drop(store);

    // Format 1: the header and three lines as a format-1 writer made them, then more bytes
    // without a newline than any line may hold: not a torn line, damage.
    let entries: Vec<String> = (0..3).map(|n| entry(n).to_string()).collect();
    let mut bytes = annals::testing::support::format_1_image(session, segment, &entries);
    bytes.extend(std::iter::repeat_n(b'x', 5000));
    fs::write(&path, &bytes).unwrap();
    let fresh = FsStore::open(&root).unwrap();
    match fresh.tip(session, segment) {
        Err(annals::Error::Corrupt { line, .. }) => assert_eq!(line, 5),
        other => panic!("the tip of a format-1 file whose last line is damaged: {other:?}"),
    }

    // Format 2 (what the store writes): the same damage at the end is an interrupted tail,
    // and the tip counts what replay delivers.
    let store = FsStore::open(&root).unwrap();
    let (session, segment) = (SessionId::new(), SegmentId::new());
    store.create::<Value>(session, segment, &[]).unwrap();
    for n in 0..3 {
        store.append(session, segment, &entry(n)).unwrap();
    }
    let path = store.segment_path(session, segment);
    drop(store);
    let mut bytes = fs::read(&path).unwrap();
    let line_start = bytes[..bytes.len() - 1]
        .iter()
        .rposition(|b| *b == b'\n')
        .unwrap()
        + 1;
    let digit = line_start + r#"{"crc":""#.len();
    bytes[digit] = if bytes[digit] == b'0' { b'1' } else { b'0' };
    fs::write(&path, &bytes).unwrap();
    let fresh = FsStore::open(&root).unwrap();
    let tip = fresh.tip(session, segment).unwrap();
    let delivered: Vec<Value> = fresh.read(session, segment).unwrap();
    assert_eq!(delivered.len(), 2);
    assert_eq!(tip.count, 2);
}
