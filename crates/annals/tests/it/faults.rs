//! Fault injection: every named point of the filesystem store, made to fail with EIO or ENOSPC,
//! to write short, or to crash the process. For each, what the caller saw is a clear error, no
//! acknowledged append is lost, no unacknowledged one appears half-written, the store reopens and
//! replays, and the next append works (on a new store where the old one is poisoned).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use annals::{
    Durability, Error, FailNth, Fault, FaultPoint, FsOptions, FsStore, SegmentId, SessionId, Store,
    StoreExt,
};
use serde_json::{json, Value};

fn options(durability: Durability) -> FsOptions {
    FsOptions {
        durability,
        ..FsOptions::default()
    }
}

fn faulty(root: &Path, durability: Durability, point: FaultPoint, fault: Fault) -> FsStore {
    let plan = Arc::new(FailNth::new(point, 0, fault));
    FsStore::open_with_faults(root, options(durability), plan).unwrap()
}

fn entry(n: u64) -> Value {
    json!({ "n": n, "text": format!("entry number {n}") })
}

/// Strict replay from a fresh store: returns the entries; panics on any damage.
fn replay_fresh(root: &Path, session: SessionId, segment: SegmentId) -> Vec<Value> {
    let store = FsStore::open(root).unwrap();
    store.read(session, segment).unwrap()
}

fn no_temp_files_left(root: &Path, session: SessionId) {
    let leftovers: Vec<_> = std::fs::read_dir(root.join(session.to_string()))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temp files left behind: {leftovers:?}"
    );
}

fn io_error_names(err: &Error, op: &str, path_part: &str) {
    match err {
        Error::Io {
            op: o,
            path,
            source,
        } => {
            assert_eq!(*o, op, "{err}");
            assert!(path.to_string_lossy().contains(path_part), "{err}");
            let shown = err.to_string();
            assert!(shown.contains(&source.to_string()), "{shown}");
        }
        other => panic!("expected an I/O error from {op}, got {other:?}"),
    }
}

const ERRORS: [Fault; 3] = [Fault::Eio, Fault::Enospc, Fault::ShortWrite(7)];

/// A segment with three acknowledged entries, written without faults.
fn seeded(root: &Path) -> (SessionId, SegmentId) {
    let (session, segment) = (SessionId::new(), SegmentId::new());
    let store = FsStore::open(root).unwrap();
    store
        .create(session, segment, &[entry(0), entry(1), entry(2)])
        .unwrap();
    (session, segment)
}

#[test]
fn a_failed_or_short_append_write_is_rolled_back_and_the_next_append_works() {
    for fault in ERRORS {
        let dir = tempfile::tempdir().unwrap();
        let (session, segment) = seeded(dir.path());
        let store = faulty(
            dir.path(),
            Durability::Buffered,
            FaultPoint::AppendWrite,
            fault,
        );
        let err = store.append(session, segment, &entry(3)).unwrap_err();
        io_error_names(&err, "append to", &segment.to_string());

        let report = store.verify(session, segment).unwrap();
        assert!(
            report.is_clean() && report.torn_tail.is_none(),
            "{fault:?}: {report:?}"
        );
        assert_eq!(
            replay_fresh(dir.path(), session, segment),
            vec![entry(0), entry(1), entry(2)]
        );

        let tip = store.append(session, segment, &entry(3)).unwrap();
        assert_eq!(
            tip.count, 4,
            "{fault:?}: the same store appends again after a rollback"
        );
        assert_eq!(replay_fresh(dir.path(), session, segment).len(), 4);
    }
}

#[test]
fn a_failed_fsync_poisons_the_file_until_the_store_is_reopened() {
    for fault in [Fault::Eio, Fault::Enospc] {
        let dir = tempfile::tempdir().unwrap();
        let (session, segment) = seeded(dir.path());
        let store = faulty(dir.path(), Durability::Sync, FaultPoint::AppendSync, fault);
        let err = store.append(session, segment, &entry(3)).unwrap_err();
        io_error_names(&err, "fsync", &segment.to_string());

        // Sticky: never retried, whatever is asked next.
        for _ in 0..3 {
            let again = store.append(session, segment, &entry(4)).unwrap_err();
            assert!(
                matches!(again, Error::Poisoned { .. }),
                "{fault:?}: {again:?}"
            );
            assert!(again.to_string().contains("fsync"), "{again}");
        }
        assert!(matches!(
            store.truncate(session, segment, 1).unwrap_err(),
            Error::Poisoned { .. }
        ));

        // The unacknowledged line is whole or absent, never half; acknowledged ones are there.
        let after = replay_fresh(dir.path(), session, segment);
        assert_eq!(after[..3], [entry(0), entry(1), entry(2)]);
        assert!(after.len() <= 4);

        let reopened = FsStore::open_with(dir.path(), options(Durability::Sync)).unwrap();
        reopened.append(session, segment, &entry(9)).unwrap();
        assert_eq!(
            replay_fresh(dir.path(), session, segment).last(),
            Some(&entry(9))
        );
    }
}

#[test]
fn a_failed_rollback_poisons_and_leaves_only_an_ignorable_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (session, segment) = seeded(dir.path());
    // The write is short, then cutting it fails too.
    #[derive(Debug)]
    struct ShortThenNoRollback;
    impl annals::FaultPlan for ShortThenNoRollback {
        fn at(&self, point: FaultPoint, _: &Path) -> Option<Fault> {
            match point {
                FaultPoint::AppendWrite => Some(Fault::ShortWrite(11)),
                FaultPoint::Rollback => Some(Fault::Eio),
                _ => None,
            }
        }
    }
    let store = FsStore::open_with_faults(
        dir.path(),
        FsOptions::default(),
        Arc::new(ShortThenNoRollback),
    )
    .unwrap();
    let err = store.append(session, segment, &entry(3)).unwrap_err();
    io_error_names(&err, "append to", &segment.to_string());
    assert!(matches!(
        store.append(session, segment, &entry(3)).unwrap_err(),
        Error::Poisoned { .. }
    ));

    let fresh = FsStore::open(dir.path()).unwrap();
    let report = fresh.verify(session, segment).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.torn_tail.map(|t| t.len), Some(11));
    assert_eq!(fresh.read::<Value>(session, segment).unwrap().len(), 3);
    fresh.append(session, segment, &entry(3)).unwrap();
    assert_eq!(replay_fresh(dir.path(), session, segment).len(), 4);
    assert!(fresh.verify(session, segment).unwrap().torn_tail.is_none());
}

#[test]
fn a_torn_tail_that_cannot_be_cut_fails_the_append_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (session, segment) = seeded(dir.path());
    let path = FsStore::open(dir.path())
        .unwrap()
        .segment_path(session, segment);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(b"{\"crc\":\"0");
    std::fs::write(&path, &bytes).unwrap();

    let store = faulty(
        dir.path(),
        Durability::Buffered,
        FaultPoint::TornTailCut,
        Fault::Eio,
    );
    let err = store.append(session, segment, &entry(3)).unwrap_err();
    io_error_names(&err, "remove torn tail of", &segment.to_string());
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "nothing written");

    store.append(session, segment, &entry(3)).unwrap();
    assert_eq!(replay_fresh(dir.path(), session, segment).len(), 4);
    assert!(store.verify(session, segment).unwrap().torn_tail.is_none());
}

#[test]
fn a_create_that_fails_before_the_link_leaves_no_segment_and_no_temp_file() {
    for point in [
        FaultPoint::TempWrite,
        FaultPoint::TempSync,
        FaultPoint::Link,
    ] {
        for fault in ERRORS {
            let dir = tempfile::tempdir().unwrap();
            let (session, segment) = (SessionId::new(), SegmentId::new());
            let store = faulty(dir.path(), Durability::Buffered, point, fault);
            let err = store.create(session, segment, &[entry(0)]).unwrap_err();
            assert!(
                matches!(err, Error::Io { .. }),
                "{point:?}/{fault:?}: {err:?}"
            );
            assert!(
                !store.exists(session, segment).unwrap(),
                "{point:?}/{fault:?}"
            );
            no_temp_files_left(dir.path(), session);
            store.create(session, segment, &[entry(0)]).unwrap();
            assert_eq!(replay_fresh(dir.path(), session, segment), vec![entry(0)]);
        }
    }
}

#[test]
fn a_truncate_that_fails_before_the_rename_changes_nothing() {
    for point in [
        FaultPoint::TempWrite,
        FaultPoint::TempSync,
        FaultPoint::Rename,
    ] {
        for fault in ERRORS {
            let dir = tempfile::tempdir().unwrap();
            let (session, segment) = seeded(dir.path());
            let path = FsStore::open(dir.path())
                .unwrap()
                .segment_path(session, segment);
            let before = std::fs::read(&path).unwrap();
            let store = faulty(dir.path(), Durability::Buffered, point, fault);
            let err = store.truncate(session, segment, 1).unwrap_err();
            assert!(
                matches!(err, Error::Io { .. }),
                "{point:?}/{fault:?}: {err:?}"
            );
            assert_eq!(std::fs::read(&path).unwrap(), before, "{point:?}/{fault:?}");
            assert_eq!(store.tip(session, segment).unwrap().generation, 0);
            no_temp_files_left(dir.path(), session);
            assert_eq!(store.append(session, segment, &entry(3)).unwrap().count, 4);
        }
    }
}

#[test]
fn a_failed_directory_sync_after_a_rewrite_poisons_the_segment() {
    let dir = tempfile::tempdir().unwrap();
    let (session, segment) = seeded(dir.path());
    let store = faulty(
        dir.path(),
        Durability::Buffered,
        FaultPoint::DirSync,
        Fault::Eio,
    );
    let err = store.truncate(session, segment, 1).unwrap_err();
    io_error_names(&err, "fsync directory", &session.to_string());
    assert!(matches!(
        store.append(session, segment, &entry(1)).unwrap_err(),
        Error::Poisoned { .. }
    ));
    // The rename happened; whether it is durable is what is unknown. A new store sees a whole
    // segment either way, and can append.
    let fresh = FsStore::open(dir.path()).unwrap();
    let entries: Vec<Value> = fresh.read(session, segment).unwrap();
    assert_eq!(entries, vec![entry(0)]);
    fresh.append(session, segment, &entry(1)).unwrap();
}

#[test]
fn a_failed_directory_sync_after_a_create_reports_the_error_and_leaves_a_whole_segment() {
    let dir = tempfile::tempdir().unwrap();
    let (session, segment) = (SessionId::new(), SegmentId::new());
    // Fail the second directory sync (the first one is the new session directory's).
    let plan = Arc::new(FailNth::new(FaultPoint::DirSync, 1, Fault::Eio));
    let store = FsStore::open_with_faults(dir.path(), FsOptions::default(), plan).unwrap();
    let err = store.create(session, segment, &[entry(0)]).unwrap_err();
    io_error_names(&err, "fsync directory", &session.to_string());
    assert_eq!(replay_fresh(dir.path(), session, segment), vec![entry(0)]);
    no_temp_files_left(dir.path(), session);
}

// ---- crashes: the test binary re-executes itself as the child that crashes -------------------

const CHILD_ENV: &str = "ANNALS_FAULT_CRASH_CHILD";

/// The child's workload. It prints `begin OP` before and `ack OP` after every operation, so the
/// parent knows what was acknowledged and what was in flight when the crash came.
#[test]
fn crash_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut parts = spec.split(',');
    let root = parts.next().unwrap().to_string();
    let point = point_by_name(parts.next().unwrap());
    let nth: u64 = parts.next().unwrap().parse().unwrap();
    let durability = match parts.next().unwrap() {
        "sync" => Durability::Sync,
        _ => Durability::Buffered,
    };
    let session: SessionId = parts.next().unwrap().parse().unwrap();
    let segment: SegmentId = parts.next().unwrap().parse().unwrap();
    let plan = Arc::new(FailNth::new(point, nth, Fault::Crash));
    let store = FsStore::open_with_faults(&root, options(durability), plan).unwrap();
    let say = |line: String| {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}").unwrap();
        out.flush().unwrap();
    };
    say("begin create 2".into());
    store
        .create(session, segment, &[entry(0), entry(1)])
        .unwrap();
    say("ack create 2".into());
    // A torn tail for the next append to cut, as a crashed writer would leave it.
    let path = store.segment_path(session, segment);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(b"{\"crc\":\"ab");
    std::fs::write(&path, bytes).unwrap();
    for n in 2..6 {
        say(format!("begin append {n}"));
        store.append(session, segment, &entry(n)).unwrap();
        say(format!("ack append {n}"));
    }
    say("begin truncate 3".into());
    store.truncate(session, segment, 3).unwrap();
    say("ack truncate 3".into());
    for n in 3..5 {
        say(format!("begin append {n}"));
        store.append(session, segment, &entry(n)).unwrap();
        say(format!("ack append {n}"));
    }
    say("done".into());
}

fn point_by_name(name: &str) -> FaultPoint {
    FaultPoint::ALL
        .into_iter()
        .find(|p| format!("{p:?}") == name)
        .unwrap()
}

/// Applies one operation of the child's workload to the model.
fn apply(model: &mut Vec<Value>, op: &str) {
    let mut words = op.split(' ');
    let (verb, n) = (
        words.next().unwrap(),
        words.next().unwrap().parse::<u64>().unwrap(),
    );
    match verb {
        "create" => *model = (0..n).map(entry).collect(),
        "append" => model.push(entry(n)),
        "truncate" => model.truncate(usize::try_from(n).unwrap()),
        other => panic!("unknown op {other}"),
    }
}

fn crash_at(point: FaultPoint, nth: u64, durability: Durability) {
    let dir = tempfile::tempdir().unwrap();
    let (session, segment) = (SessionId::new(), SegmentId::new());
    let spec = format!(
        "{},{point:?},{nth},{},{session},{segment}",
        dir.path().display(),
        if durability == Durability::Sync {
            "sync"
        } else {
            "buffered"
        }
    );
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "faults::crash_child",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_ENV, spec)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let finished = stdout.lines().any(|l| l == "done");
    assert_eq!(
        output.status.success(),
        finished,
        "{point:?}#{nth}: the child either crashed at the point or finished\n{stdout}"
    );

    let mut acked: Vec<Value> = Vec::new();
    let mut in_flight: Option<String> = None;
    for line in stdout.lines() {
        if let Some(op) = line.strip_prefix("begin ") {
            in_flight = Some(op.to_string());
        } else if let Some(op) = line.strip_prefix("ack ") {
            apply(&mut acked, op);
            in_flight = None;
        }
    }
    let Some(_) = stdout.lines().find(|l| l.starts_with("ack create")) else {
        // Crashed while creating: the segment is absent or whole, never partial.
        let store = FsStore::open(dir.path()).unwrap();
        if store.exists(session, segment).unwrap() {
            assert_eq!(
                store.read::<Value>(session, segment).unwrap(),
                vec![entry(0), entry(1)]
            );
        }
        return;
    };
    let mut with_in_flight = acked.clone();
    if let Some(op) = &in_flight {
        apply(&mut with_in_flight, op);
    }

    let store = FsStore::open(dir.path()).unwrap();
    let report = store.verify(session, segment).unwrap();
    assert!(report.is_clean(), "{point:?}#{nth}: {report:?}");
    let found: Vec<Value> = store.read(session, segment).unwrap();
    assert!(
        found == acked || found == with_in_flight,
        "{point:?}#{nth}: found {found:?}\nacked {acked:?}\nin flight {in_flight:?}"
    );
    let tip = store
        .append(session, segment, &json!("after the crash"))
        .unwrap();
    assert_eq!(tip.count, found.len() as u64 + 1);
    let again: Vec<Value> = store.read(session, segment).unwrap();
    assert_eq!(again.last(), Some(&json!("after the crash")));
}

#[test]
fn a_crash_at_any_point_loses_no_acknowledged_entry_and_leaves_a_readable_log() {
    // (point, how many times the workload reaches it, durability)
    let cases = [
        (FaultPoint::AppendWrite, 6, Durability::Buffered),
        (FaultPoint::AppendDone, 6, Durability::Buffered),
        (FaultPoint::AppendSync, 6, Durability::Sync),
        (FaultPoint::TornTailCut, 1, Durability::Buffered),
        (FaultPoint::TempWrite, 2, Durability::Buffered),
        (FaultPoint::TempSync, 2, Durability::Buffered),
        (FaultPoint::Link, 1, Durability::Buffered),
        (FaultPoint::Rename, 1, Durability::Buffered),
        (FaultPoint::DirSync, 3, Durability::Buffered),
    ];
    for (point, reached, durability) in cases {
        for nth in 0..reached {
            crash_at(point, nth, durability);
        }
    }
}
