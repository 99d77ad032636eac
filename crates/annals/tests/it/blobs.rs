//! Large entries kept as blobs by the filesystem store, with real files: the layout a person
//! finds on disk, damaged and missing blobs, and garbage collection racing with appends.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use annals::testing::support::{
    blob_on_disk, damage_blob, pack_records, remove_blob, BlobOnDisk, TempStore,
};
use annals::{
    BlobId, CorruptReason, Error, ReplayOptions, SegmentId, SessionId, Store, StoreExt, MAX_INLINE,
};
use serde_json::{json, Value};

fn big(n: usize, tag: &str) -> Value {
    json!({ "role": "tool", "tag": tag, "output": "é".repeat(n / 2) })
}

struct Setup {
    store: TempStore,
    session: SessionId,
    segment: SegmentId,
    entries: Vec<Value>,
}

/// A segment of small entries with one large one (seq 1).
fn setup() -> Setup {
    let store = TempStore::new();
    let (session, segment) = (SessionId::new(), SegmentId::new());
    let entries = vec![json!({"n": 0}), big(100_000, "large"), json!({"n": 2})];
    store.create(session, segment, &entries).unwrap();
    Setup {
        store,
        session,
        segment,
        entries,
    }
}

fn blob_id(value: &Value) -> BlobId {
    BlobId::of(serde_json::to_string(value).unwrap().as_bytes())
}

fn on_disk(s: &Setup, id: &BlobId) -> Option<BlobOnDisk> {
    blob_on_disk(s.store.root(), s.session, id)
}

#[test]
fn a_large_entry_is_a_packed_blob_that_sha256sum_checks_and_a_short_greppable_line() {
    let s = setup();
    let id = blob_id(&s.entries[1]);
    let found = on_disk(&s, &id).unwrap();
    let pack: PathBuf = s
        .store
        .root()
        .join(s.session.to_string())
        .join("blobs/pack");
    assert_eq!(
        found.path, pack,
        "a new segment's blobs go to the session's pack"
    );
    // Its record: a header line naming it, then exactly the entry's JSON text, which
    // `sha256sum` of those bytes names.
    let bytes = std::fs::read(&pack).unwrap();
    let header = &bytes[found.header.clone().unwrap().start as usize..found.bytes.start as usize];
    let header: Value = serde_json::from_slice(header).unwrap();
    assert_eq!(header["blob"], id.to_string());
    let text = serde_json::to_string(&s.entries[1]).unwrap();
    assert_eq!(
        &bytes[found.bytes.start as usize..found.bytes.end as usize],
        text.as_bytes()
    );
    assert_eq!(bytes[found.bytes.end as usize], b'\n');
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("blob"), text.as_bytes()).unwrap();
    if let Ok(out) = Command::new("sha256sum")
        .arg(dir.path().join("blob"))
        .output()
    {
        let printed = String::from_utf8_lossy(&out.stdout);
        assert!(printed.starts_with(&id.to_string()), "{printed}");
    }
    let log = std::fs::read_to_string(s.store.segment_path(s.session, s.segment)).unwrap();
    let line = log.lines().nth(2).unwrap();
    assert!(
        line.len() < 1024,
        "the reference line stays short: {} bytes",
        line.len()
    );
    let parsed: Value = serde_json::from_str(line).unwrap();
    assert_eq!(parsed["seq"], 1);
    assert_eq!(parsed["blob"]["sha256"], id.to_string());
    let head = parsed["blob"]["head"].as_str().unwrap();
    let text = serde_json::to_string(&s.entries[1]).unwrap();
    assert!(head.len() >= 100 && text.starts_with(head), "head {head:?}");
    let back: Vec<Value> = s.store.read(s.session, s.segment).unwrap();
    assert_eq!(back, s.entries);
}

#[test]
fn a_damaged_blob_is_reported_with_segment_line_and_blob_and_never_served() {
    let s = setup();
    let id = blob_id(&s.entries[1]);
    damage_blob(s.store.root(), s.session, &id, 5000);

    let err = s.store.read::<Value>(s.session, s.segment).unwrap_err();
    match &err {
        Error::Corrupt {
            path: p,
            line,
            reason: CorruptReason::Blob { id: bad, problem },
            ..
        } => {
            assert_eq!(p, &s.store.segment_path(s.session, s.segment));
            assert_eq!(*line, 3, "header, entry 0, then the blob line");
            assert_eq!(*bad, id);
            // A pack record is checked against its CRC on every read.
            assert!(
                matches!(problem, annals::BlobFault::Crc { .. }),
                "{problem}"
            );
        }
        other => panic!("expected a blob problem, got {other:?}"),
    }
    assert!(err.to_string().contains(&id.to_string()), "{err}");

    let mut got = Vec::new();
    let report = s
        .store
        .replay(
            s.session,
            s.segment,
            &ReplayOptions::tolerant(),
            |meta, v: Value| {
                got.push((meta.seq, v));
                Ok(())
            },
        )
        .unwrap();
    assert_eq!(
        got,
        vec![(0, s.entries[0].clone()), (2, s.entries[2].clone())]
    );
    assert_eq!(report.problem_count, 1);
    let verify = s.store.verify(s.session, s.segment).unwrap();
    assert_eq!(verify.problem_count, 1, "{verify:?}");
    assert!(matches!(
        verify.problems[0].reason,
        CorruptReason::Blob { .. }
    ));
    assert!(matches!(
        s.store.get_blob(s.session, &id),
        Err(Error::Corrupt { .. })
    ));
    // The raw mode does not read blobs, so it still works, and appending the same entry again
    // repairs the blob instead of trusting the damaged copy.
    let raw = s
        .store
        .replay_raw(
            s.session,
            s.segment,
            &ReplayOptions::strict().blob_refs(),
            &mut |_| Ok(ControlFlow::Continue(())),
        )
        .unwrap();
    assert_eq!(raw.entries, 3);
    s.store.append(s.session, s.segment, &s.entries[1]).unwrap();
    assert_eq!(
        s.store.read::<Value>(s.session, s.segment).unwrap().len(),
        4
    );
}

#[test]
fn a_missing_blob_is_a_clear_error_and_verify_finds_it() {
    let s = setup();
    let id = blob_id(&s.entries[1]);
    remove_blob(s.store.root(), s.session, &id);
    let err = s.store.read::<Value>(s.session, s.segment).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("missing") && text.contains(&id.to_string()),
        "{text}"
    );
    assert!(text.contains("line 3"), "{text}");
    let verify = s.store.verify(s.session, s.segment).unwrap();
    assert!(!verify.is_clean());
    assert!(matches!(
        s.store.get_blob(s.session, &id),
        Err(Error::BlobNotFound { .. })
    ));
}

/// What a replay of references (blobs not read) delivers, or its error.
fn references(s: &Setup, options: ReplayOptions) -> annals::Result<Vec<u64>> {
    let mut seqs = Vec::new();
    s.store
        .replay_raw(s.session, s.segment, &options.blob_refs(), &mut |e| {
            seqs.push(e.seq);
            Ok(ControlFlow::Continue(()))
        })?;
    Ok(seqs)
}

#[test]
fn a_replay_of_references_finds_a_missing_blob_where_a_reading_replay_does() {
    // In the middle, with a later write after it: damage, for both.
    let s = setup();
    let id = blob_id(&s.entries[1]);
    remove_blob(s.store.root(), s.session, &id);
    let err = references(&s, ReplayOptions::strict()).unwrap_err();
    let read = s.store.read::<Value>(s.session, s.segment).unwrap_err();
    assert_eq!(err.to_string(), read.to_string());
    assert!(matches!(
        err,
        Error::Corrupt {
            line: 3,
            reason: CorruptReason::Blob { .. },
            ..
        }
    ));
    assert_eq!(
        references(&s, ReplayOptions::tolerant()).unwrap(),
        vec![0, 2]
    );

    // At the end of what a buffered append wrote, no line vouching for it: the end of the log
    // for both (an interrupted tail), not an entry that only one of them hands out.
    let s = setup();
    let last = big(50_000, "last");
    s.store.append(s.session, s.segment, &last).unwrap();
    remove_blob(s.store.root(), s.session, &blob_id(&last));
    assert_eq!(
        s.store.read::<Value>(s.session, s.segment).unwrap(),
        s.entries
    );
    assert_eq!(
        references(&s, ReplayOptions::strict()).unwrap(),
        vec![0, 1, 2]
    );
    // (The store that wrote it keeps the tip it made; another one looks.)
    let fresh = annals::FsStore::open(s.store.root()).unwrap();
    assert_eq!(fresh.tip(s.session, s.segment).unwrap().count, 3);
}

#[test]
fn entries_just_around_the_inline_limit_land_inline_or_as_blobs_and_read_back_equal() {
    let store = TempStore::new();
    let (session, segment) = (SessionId::new(), SegmentId::new());
    store.create::<Value>(session, segment, &[]).unwrap();
    let mut wanted = Vec::new();
    for len in [MAX_INLINE - 1, MAX_INLINE, MAX_INLINE + 1] {
        // A JSON string of exactly `len` bytes.
        let value = Value::String("x".repeat(len - 2));
        assert_eq!(serde_json::to_string(&value).unwrap().len(), len);
        store.append(session, segment, &value).unwrap();
        wanted.push(value);
    }
    let log = std::fs::read_to_string(store.segment_path(session, segment)).unwrap();
    let kinds: Vec<bool> = log
        .lines()
        .skip(1)
        .map(|l| {
            serde_json::from_str::<Value>(l)
                .unwrap()
                .get("blob")
                .is_some()
        })
        .collect();
    assert_eq!(kinds, vec![false, false, true]);
    assert!(log.lines().all(|l| l.len() < 4096));
    assert_eq!(store.read::<Value>(session, segment).unwrap(), wanted);
}

#[test]
fn gc_running_against_concurrent_large_appends_never_removes_a_referenced_blob() {
    let store = Arc::new(TempStore::new());
    let (session, segment) = (SessionId::new(), SegmentId::new());
    store.create::<Value>(session, segment, &[]).unwrap();
    let appender = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || {
            for i in 0..60 {
                store
                    .append(
                        session,
                        segment,
                        &big(MAX_INLINE + 100 + i, &format!("t{i}")),
                    )
                    .unwrap();
            }
        })
    };
    let mut collections = 0;
    while !appender.is_finished() || collections == 0 {
        let report = store.gc_blobs(session, false).unwrap();
        assert!(report.orphans.is_empty(), "{report:?}");
        collections += 1;
    }
    appender.join().unwrap();
    let back: Vec<Value> = store.read(session, segment).unwrap();
    assert_eq!(back.len(), 60);
    assert!(store.verify(session, segment).unwrap().is_clean());
}

#[test]
fn gc_after_a_truncate_removes_the_dropped_entries_blobs_from_disk() {
    let s = setup();
    let id = blob_id(&s.entries[1]);
    s.store.truncate(s.session, s.segment, 1).unwrap();
    assert!(
        on_disk(&s, &id).is_some(),
        "a truncate alone removes no blob"
    );
    let report = s.store.gc_blobs(s.session, true).unwrap();
    assert_eq!(report.orphans, vec![id], "a dry run names it");
    assert!(on_disk(&s, &id).is_some(), "and changes nothing");
    let report = s.store.gc_blobs(s.session, false).unwrap();
    assert_eq!(report.orphans.len(), 1);
    assert_eq!(on_disk(&s, &id), None, "its record is gone from the pack");
    let pack = s
        .store
        .root()
        .join(s.session.to_string())
        .join("blobs/pack");
    assert_eq!(
        std::fs::metadata(pack).unwrap().len(),
        0,
        "nothing else was in it"
    );
    assert_eq!(
        s.store.read::<Value>(s.session, s.segment).unwrap(),
        vec![s.entries[0].clone()]
    );
}

#[test]
fn gc_of_a_session_that_never_had_a_blob_creates_nothing() {
    let store = TempStore::new();
    let (session, segment) = (SessionId::new(), SegmentId::new());
    store.create(session, segment, &[json!({"n": 0})]).unwrap();
    let report = store.gc_blobs(session, false).unwrap();
    assert!(report.orphans.is_empty() && report.kept == 0);
    assert!(!store
        .root()
        .join(session.to_string())
        .join("blobs")
        .exists());
}

#[test]
fn repair_cuts_at_the_first_line_whose_blob_is_missing_and_keeps_what_it_cut() {
    let s = setup();
    s.store
        .append(s.session, s.segment, &json!({"n": 3}))
        .unwrap();
    let id = blob_id(&s.entries[1]);
    remove_blob(s.store.root(), s.session, &id);

    let plan = s.store.repair(s.session, s.segment, true).unwrap();
    assert_eq!(plan.kept_entries, 1, "{plan:?}");
    assert!(matches!(
        plan.first_problem.as_ref().map(|p| &p.reason),
        Some(CorruptReason::Blob { id: bad, .. }) if *bad == id
    ));
    let done = s.store.repair(s.session, s.segment, false).unwrap();
    assert_eq!(done.kept_entries, 1);
    let backup = std::fs::read_to_string(done.backup.unwrap()).unwrap();
    assert_eq!(
        backup.lines().count(),
        3,
        "the blob line and the two after it"
    );
    assert!(s.store.verify(s.session, s.segment).unwrap().is_clean());
    assert_eq!(
        s.store.read::<Value>(s.session, s.segment).unwrap(),
        vec![s.entries[0].clone()]
    );
    // And the segment takes appends again, numbered after what was kept.
    assert_eq!(
        s.store
            .append(s.session, s.segment, &json!({"n": 1}))
            .unwrap()
            .count,
        2
    );
}

/// The ids of the records in `session`'s pack, in file order; the pack holds nothing else.
fn records(store: &TempStore, session: SessionId) -> Vec<String> {
    let records = pack_records(store.root(), session);
    let pack = store.root().join(session.to_string()).join("blobs/pack");
    let end = records.last().map_or(0, |(_, r)| r.bytes.end + 1);
    assert_eq!(
        end,
        std::fs::metadata(pack).unwrap().len(),
        "whole records only"
    );
    records.into_iter().map(|(id, _)| id).collect()
}

#[test]
fn two_stores_appending_to_one_session_store_each_blob_once() {
    // Each store's writers keep the pack open with its index and read on from where they
    // stopped: what the other store added is found there, not written again.
    let a = TempStore::new();
    let b = a.open_another();
    let (session, segment) = (SessionId::new(), SegmentId::new());
    let (x, y) = (big(9_000, "x"), big(9_000, "y"));
    a.create::<Value>(session, segment, &[]).unwrap();
    a.append(session, segment, &x).unwrap();
    b.append(session, segment, &x).unwrap();
    b.append(session, segment, &y).unwrap();
    a.append(session, segment, &y).unwrap();
    a.append(session, segment, &x).unwrap();
    assert_eq!(
        records(&a, session),
        vec![blob_id(&x).to_string(), blob_id(&y).to_string()]
    );
    let back: Vec<Value> = b.read(session, segment).unwrap();
    assert_eq!(back, vec![x.clone(), x.clone(), y.clone(), y, x]);
}

#[test]
fn an_append_after_gc_rewrote_the_pack_goes_to_the_new_pack() {
    // The writer's open pack is replaced by gc's rewrite: its next append follows the name
    // (an append to the old, unlinked file would be lost).
    let s = setup();
    let other = big(9_000, "other");
    s.store.truncate(s.session, s.segment, 1).unwrap();
    assert_eq!(s.store.gc_blobs(s.session, false).unwrap().orphans.len(), 1);
    s.store.append(s.session, s.segment, &other).unwrap();
    assert_eq!(
        records(&s.store, s.session),
        vec![blob_id(&other).to_string()]
    );
    let mut fresh = s.store.open_another();
    let back: Vec<Value> = fresh.read(s.session, s.segment).unwrap();
    assert_eq!(back, vec![s.entries[0].clone(), other.clone()]);
    // And a blob gc kept is still found: appended again, it is not written again.
    fresh = s.store.open_another();
    fresh.append(s.session, s.segment, &other).unwrap();
    assert_eq!(
        records(&s.store, s.session),
        vec![blob_id(&other).to_string()]
    );
}

#[test]
fn a_record_a_crash_left_unfinished_is_cut_by_the_next_writer() {
    let s = setup();
    let pack = s
        .store
        .root()
        .join(s.session.to_string())
        .join("blobs/pack");
    let whole = std::fs::read(&pack).unwrap();
    // What a writer killed inside its write leaves: the start of a record.
    let torn = format!(
        "{{\"blob\":\"{}\",\"len\":9000,\"crc\":1}}\nabc",
        blob_id(&json!("never")).to_hex()
    );
    let mut bytes = whole.clone();
    bytes.extend_from_slice(torn.as_bytes());
    std::fs::write(&pack, &bytes).unwrap();
    // Readers read on as if it were a write going on; nothing refers to it.
    assert!(s.store.verify(s.session, s.segment).unwrap().is_clean());
    let next = big(9_000, "next");
    let mut fresh = s.store.open_another();
    fresh.append(s.session, s.segment, &next).unwrap();
    assert_eq!(
        records(&s.store, s.session),
        vec![
            blob_id(&s.entries[1]).to_string(),
            blob_id(&next).to_string()
        ]
    );
    fresh = s.store.open_another();
    let back: Vec<Value> = fresh.read(s.session, s.segment).unwrap();
    assert_eq!(back.last(), Some(&next));
}

#[test]
fn a_file_of_an_older_format_gets_its_blobs_as_files_even_when_the_pack_has_them() {
    // Its readers (an older build) look for blob files: a copy in the pack would be lost on
    // them.
    let s = setup();
    let old = SegmentId::new();
    let image = annals::testing::support::format_1_image(s.session, old, &[]);
    std::fs::write(s.store.segment_path(s.session, old), image).unwrap();
    let id = blob_id(&s.entries[1]);
    assert!(on_disk(&s, &id).unwrap().header.is_some(), "in the pack");
    s.store.append(s.session, old, &s.entries[1]).unwrap();
    let hex = id.to_hex();
    let file = s
        .store
        .root()
        .join(s.session.to_string())
        .join("blobs")
        .join(&hex[..2])
        .join(&hex);
    assert_eq!(
        std::fs::read(&file).unwrap(),
        serde_json::to_string(&s.entries[1]).unwrap().into_bytes()
    );
    // It reads back, and the pack was left as it was.
    let back: Vec<Value> = s.store.read(s.session, old).unwrap();
    assert_eq!(back, vec![s.entries[1].clone()]);
    assert_eq!(records(&s.store, s.session), vec![id.to_string()]);
}

#[test]
fn gc_rewrites_the_pack_only_when_it_holds_more_than_the_records_it_keeps() {
    use std::os::unix::fs::MetadataExt;
    let s = setup();
    let pack = s
        .store
        .root()
        .join(s.session.to_string())
        .join("blobs/pack");
    let inode = || std::fs::metadata(&pack).unwrap().ino();
    let clean = std::fs::read(&pack).unwrap();
    let id = blob_id(&s.entries[1]).to_string();
    // Nothing but what is kept: left as it is.
    let before = inode();
    let report = s.store.gc_blobs(s.session, false).unwrap();
    assert_eq!((report.kept, report.orphans.len()), (1, 0));
    assert_eq!(
        inode(),
        before,
        "a pack holding only what is kept is not rewritten"
    );
    // Each of these alone is something else: an older copy of a kept record, bytes that are no
    // record between records, a record a crash left unfinished at the end.
    let garbage: [(&str, Vec<u8>); 3] = [
        ("a second copy", [clean.clone(), clean.clone()].concat()),
        (
            "bytes between records",
            [b"\0\0\0\n".to_vec(), clean.clone()].concat(),
        ),
        (
            "an unfinished record",
            [clean.clone(), b"{\"blob\":\"00".to_vec()].concat(),
        ),
    ];
    for (what, bytes) in garbage {
        std::fs::write(&pack, &bytes).unwrap();
        let before = inode();
        let report = s.store.gc_blobs(s.session, true).unwrap();
        assert_eq!(report.orphans.len(), 0, "{what}");
        assert_eq!(
            std::fs::read(&pack).unwrap(),
            bytes,
            "{what}: a dry run changes nothing"
        );
        s.store.gc_blobs(s.session, false).unwrap();
        assert_ne!(inode(), before, "{what}: rewritten");
        assert_eq!(
            std::fs::read(&pack).unwrap(),
            clean,
            "{what}: only the kept record is left"
        );
        assert_eq!(records(&s.store, s.session), vec![id.clone()], "{what}");
        let back: Vec<Value> = s.store.open_another().read(s.session, s.segment).unwrap();
        assert_eq!(back, s.entries, "{what}");
    }
}

/// A tool's output: text that compresses as real ones do (lines that repeat with changes).
fn tool_output(lines: usize, tag: &str) -> Value {
    let text: String = (0..lines)
        .map(|i| {
            format!(
                "{tag}: src/module_{}.rs:{i}: warning: unused variable `x{i}`\n",
                i % 7
            )
        })
        .collect();
    json!({ "role": "tool", "tag": tag, "output": text })
}

fn compressing() -> annals::FsOptions {
    annals::FsOptions {
        blob_compression: annals::BlobCompression::ZSTD,
        ..annals::FsOptions::default()
    }
}

#[test]
fn compressed_blobs_take_fewer_bytes_and_read_back_in_every_store_and_check() {
    let store = TempStore::with_options(compressing());
    let (session, segment) = (SessionId::new(), SegmentId::new());
    let entries = vec![
        json!({"n": 0}),
        tool_output(400, "cargo"),
        big(100_000, "é"),
        tool_output(100, "short"),
    ];
    store.create(session, segment, &entries).unwrap();
    let on_disk = |v: &Value| blob_on_disk(store.root(), session, &blob_id(v)).unwrap();
    for v in &entries[1..] {
        let json_len = serde_json::to_string(v).unwrap().len() as u64;
        let found = on_disk(v);
        let stored = found.bytes.end - found.bytes.start;
        assert!(stored * 4 < json_len, "{stored} of {json_len}");
        let header = std::fs::read(&found.path).unwrap();
        let header = &header[found.header.clone().unwrap().start as usize..];
        let line = &header[..header.iter().position(|&b| b == b'\n').unwrap()];
        let header: Value = serde_json::from_slice(line).unwrap();
        assert_eq!(
            (header["len"].as_u64(), header["zstd"].as_u64()),
            (Some(json_len), Some(stored))
        );
    }
    assert_eq!(records(&store, session).len(), 3);
    // Any store reads them, compressing or not; the checks pass; the raw path is exact.
    let plain = store.open_another_with(annals::FsOptions::default());
    for reader in [store.store(), &plain] {
        let back: Vec<Value> = reader.read(session, segment).unwrap();
        assert_eq!(back, entries);
        assert_eq!(reader.verify(session, segment).unwrap().problem_count, 0);
        let blob = reader.get_blob(session, &blob_id(&entries[1])).unwrap();
        assert_eq!(
            blob,
            serde_json::to_string(&entries[1]).unwrap().into_bytes()
        );
    }
    // Stored once: appended again through either store, nothing is added.
    let size = std::fs::metadata(&on_disk(&entries[1]).path).unwrap().len();
    store.append(session, segment, &entries[1]).unwrap();
    plain.append(session, segment, &entries[2]).unwrap();
    assert_eq!(
        std::fs::metadata(&on_disk(&entries[1]).path).unwrap().len(),
        size
    );
    // gc keeps what is referred to, compressed as it was, and drops the rest.
    assert_eq!(store.gc_blobs(session, false).unwrap().orphans.len(), 0);
    store.truncate(session, segment, 2).unwrap();
    let report = plain.gc_blobs(session, false).unwrap();
    assert_eq!(report.orphans.len(), 2, "{report:?}");
    assert_eq!(
        records(&store, session),
        vec![blob_id(&entries[1]).to_string()]
    );
    let back: Vec<Value> = plain.read(session, segment).unwrap();
    assert_eq!(back, entries[..2].to_vec());
    let found = on_disk(&entries[1]);
    let json_len = serde_json::to_string(&entries[1]).unwrap().len() as u64;
    assert!(
        (found.bytes.end - found.bytes.start) * 4 < json_len,
        "kept compressed"
    );
}

#[test]
fn a_damaged_compressed_blob_is_reported_as_the_plain_ones_are() {
    let store = TempStore::with_options(compressing());
    let (session, segment) = (SessionId::new(), SegmentId::new());
    let entries = vec![
        json!({"n": 0}),
        tool_output(400, "damaged"),
        json!({"n": 2}),
    ];
    store.create(session, segment, &entries).unwrap();
    let id = blob_id(&entries[1]);
    damage_blob(store.root(), session, &id, 100);
    match store.read::<Value>(session, segment).unwrap_err() {
        Error::Corrupt {
            line,
            reason: CorruptReason::Blob { id: bad, problem },
            ..
        } => {
            assert_eq!((line, bad), (3, id));
            assert!(
                matches!(problem, annals::BlobFault::Crc { .. }),
                "{problem}"
            );
        }
        other => panic!("expected a blob problem, got {other:?}"),
    }
    let verify = store.verify(session, segment).unwrap();
    assert_eq!(verify.problem_count, 1, "{verify:?}");
    // Verify checks the stored bytes against their CRC before it decodes them.
    assert!(
        matches!(
            &verify.problems[0].reason,
            CorruptReason::Blob {
                problem: annals::BlobFault::Crc { .. },
                ..
            }
        ),
        "{verify:?}"
    );
    let mut tolerant = Vec::new();
    store
        .replay(
            session,
            segment,
            &ReplayOptions::tolerant(),
            |_, v: Value| {
                tolerant.push(v);
                Ok(())
            },
        )
        .unwrap();
    assert_eq!(tolerant, vec![entries[0].clone(), entries[2].clone()]);
    // Appending it again stores a good copy, which is found from then on.
    store.append(session, segment, &entries[1]).unwrap();
    let back: Vec<Value> = store.open_another().read(session, segment).unwrap();
    assert_eq!(back.len(), 4);
    assert_eq!(back[1], entries[1]);
}

#[test]
fn a_format_3_file_gets_plain_records_from_a_compressing_store() {
    // Its readers (a format-3 build) know no compressed record: they would miss the blob.
    let store = TempStore::with_options(compressing());
    let (session, new, old) = (SessionId::new(), SegmentId::new(), SegmentId::new());
    let value = tool_output(400, "both");
    store
        .create(session, new, std::slice::from_ref(&value))
        .unwrap();
    let image = annals::testing::support::header_image(3, session, old);
    std::fs::write(store.segment_path(session, old), image).unwrap();
    store.append(session, old, &value).unwrap();
    let json_len = serde_json::to_string(&value).unwrap().len() as u64;
    let records = pack_records(store.root(), session);
    let sizes: Vec<u64> = records
        .iter()
        .map(|(_, r)| r.bytes.end - r.bytes.start)
        .collect();
    assert_eq!(sizes.len(), 2, "a compressed record, then a plain one");
    assert!(sizes[0] * 4 < json_len && sizes[1] == json_len, "{sizes:?}");
    for segment in [new, old] {
        let back: Vec<Value> = store.open_another().read(session, segment).unwrap();
        assert_eq!(back, vec![value.clone()]);
    }
    // Format 4 is what this build creates, whatever the option.
    let header = std::fs::read_to_string(store.segment_path(session, new)).unwrap();
    assert!(header.contains("\"annals\":4"), "{header}");
}

/// The store keeps each pack's index between calls; a record whose header was damaged since
/// (its id, or its CRC) sends readers elsewhere although the bytes after it are intact, so an
/// append of the same blob writes it again instead of taking it as stored.
#[test]
fn a_blob_whose_record_header_was_damaged_since_the_store_read_the_pack_is_written_again() {
    // In the id's hex digits, and in the CRC's last digit (another digit: the header parses).
    for from_start in [true, false] {
        let store = TempStore::new();
        let session = SessionId::new();
        let entry = big(10_000, "again");
        let id = blob_id(&entry);
        store
            .create(session, SegmentId::new(), std::slice::from_ref(&entry))
            .unwrap();
        let found = blob_on_disk(store.root(), session, &id).unwrap();
        let header = found.header.clone().unwrap();
        let at = if from_start {
            header.start + 12
        } else {
            header.end - 3
        };
        let mut bytes = std::fs::read(&found.path).unwrap();
        bytes[usize::try_from(at).unwrap()] ^= 1;
        std::fs::write(&found.path, &bytes).unwrap();

        let segment = SegmentId::new();
        store
            .create(session, segment, std::slice::from_ref(&entry))
            .unwrap();
        let fresh = annals::FsStore::open(store.root()).unwrap();
        assert_eq!(
            fresh.read::<Value>(session, segment).unwrap(),
            vec![entry.clone()],
            "damage at {at} of the header"
        );
        assert_eq!(fresh.verify(session, segment).unwrap().problem_count, 0);
        assert_eq!(records(&store, session).len(), 2, "written again");
    }
}
