//! Fault injection: calls through the filesystem store's I/O seam (`FaultFs`), made to fail
//! with EIO or ENOSPC, to write short, or to crash the process before or after them. For each,
//! what the caller saw is a clear error, no acknowledged append is lost, no unacknowledged one
//! appears half-written, the store reopens and replays, and the next append works (on a new
//! store where the old one is poisoned).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use annals::{
    Call, CountCalls, Durability, Error, FailNth, Fault, FaultFs, FaultPlan, FsOptions, FsStore,
    Op, OsFs, SegmentId, SessionId, Store, StoreExt,
};
use serde_json::{json, Value};

fn options(durability: Durability) -> FsOptions {
    FsOptions {
        durability,
        ..FsOptions::default()
    }
}

/// A temporary file of a crash-atomic create or rewrite (`.{stem}.{uuid}.tmp`).
fn is_temp(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "tmp")
}

/// A segment's log (not a temporary file, a trace or a blob).
fn is_log(path: &Path) -> bool {
    let name = path.file_name().unwrap().to_string_lossy();
    name.ends_with(".jsonl") && !name.ends_with(".trace.jsonl") && !name.starts_with('.')
}

/// The `nth` call of kind `op` on a segment's log.
fn on_log(op: Op, nth: u64, fault: Fault) -> FailNth {
    FailNth::new(op, nth, fault).only(is_log)
}

/// The `nth` call of kind `op` on a temporary file.
fn on_temp(op: Op, nth: u64, fault: Fault) -> FailNth {
    FailNth::new(op, nth, fault).only(is_temp)
}

fn faulty(root: &Path, durability: Durability, plan: impl FaultPlan + 'static) -> FsStore<FaultFs> {
    FsStore::open_with_faults(root, options(durability), Arc::new(plan)).unwrap()
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
            on_log(Op::Append, 0, fault),
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
        let store = faulty(dir.path(), Durability::Sync, on_log(Op::SyncData, 0, fault));
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
    impl FaultPlan for ShortThenNoRollback {
        fn at(&self, call: &Call<'_>) -> Option<Fault> {
            match call.op {
                Op::Append => Some(Fault::ShortWrite(11)),
                Op::SetLen => Some(Fault::Eio),
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
        on_log(Op::SetLen, 0, Fault::Eio),
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
    for point in [Op::Append, Op::SyncData, Op::Link] {
        for fault in ERRORS {
            let dir = tempfile::tempdir().unwrap();
            let (session, segment) = (SessionId::new(), SegmentId::new());
            let plan = match point {
                Op::Link => FailNth::new(point, 0, fault),
                _ => on_temp(point, 0, fault),
            };
            let store = faulty(dir.path(), Durability::Buffered, plan);
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
    for point in [Op::Append, Op::SyncData, Op::Rename] {
        for fault in ERRORS {
            let dir = tempfile::tempdir().unwrap();
            let (session, segment) = seeded(dir.path());
            let path = FsStore::open(dir.path())
                .unwrap()
                .segment_path(session, segment);
            let before = std::fs::read(&path).unwrap();
            let plan = match point {
                Op::Rename => FailNth::new(point, 0, fault),
                _ => on_temp(point, 0, fault),
            };
            let store = faulty(dir.path(), Durability::Buffered, plan);
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
        FailNth::new(Op::SyncDir, 0, Fault::Eio),
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
    let store = faulty(
        dir.path(),
        Durability::Buffered,
        FailNth::new(Op::SyncDir, 1, Fault::Eio),
    );
    let err = store.create(session, segment, &[entry(0)]).unwrap_err();
    io_error_names(&err, "fsync directory", &session.to_string());
    assert_eq!(replay_fresh(dir.path(), session, segment), vec![entry(0)]);
    no_temp_files_left(dir.path(), session);
}

// ---- crashes: the test binary re-executes itself as the child that crashes -------------------

const CHILD_ENV: &str = "ANNALS_FAULT_CRASH_CHILD";

/// The crash workload, run by the child (and once in the parent, to count its calls). It says
/// `begin OP` before and `ack OP` after every operation, so the parent knows what was
/// acknowledged and what was in flight when the crash came.
fn workload(
    store: &FsStore<FaultFs>,
    session: SessionId,
    segment: SegmentId,
    say: &dyn Fn(String),
) {
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

fn durability_name(durability: Durability) -> &'static str {
    if durability == Durability::Sync {
        "sync"
    } else {
        "buffered"
    }
}

#[test]
fn crash_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut parts = spec.split(',');
    let root = parts.next().unwrap().to_string();
    let op = op_by_name(parts.next().unwrap());
    let nth: u64 = parts.next().unwrap().parse().unwrap();
    let fault = match parts.next().unwrap() {
        "before" => Fault::Crash,
        _ => Fault::CrashAfter,
    };
    let durability = match parts.next().unwrap() {
        "sync" => Durability::Sync,
        _ => Durability::Buffered,
    };
    let session: SessionId = parts.next().unwrap().parse().unwrap();
    let segment: SegmentId = parts.next().unwrap().parse().unwrap();
    let store = faulty(Path::new(&root), durability, FailNth::new(op, nth, fault));
    let say = |line: String| {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}").unwrap();
        out.flush().unwrap();
    };
    workload(&store, session, segment, &say);
}

fn op_by_name(name: &str) -> Op {
    Op::ALL
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

fn crash_at(op: Op, nth: u64, fault: Fault, durability: Durability) {
    let dir = tempfile::tempdir().unwrap();
    let (session, segment) = (SessionId::new(), SegmentId::new());
    let when = if fault == Fault::Crash {
        "before"
    } else {
        "after"
    };
    let spec = format!(
        "{},{op:?},{nth},{when},{},{session},{segment}",
        dir.path().display(),
        durability_name(durability),
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
    let context = format!("crash {when} {op:?}#{nth} ({durability:?})");
    let finished = stdout.lines().any(|l| l == "done");
    assert!(
        !output.status.success() && !finished,
        "{context}: the child was to crash at that call, but it finished\n{stdout}"
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
                vec![entry(0), entry(1)],
                "{context}"
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
    assert!(report.is_clean(), "{context}: {report:?}");
    let found: Vec<Value> = store.read(session, segment).unwrap();
    assert!(
        found == acked || found == with_in_flight,
        "{context}: found {found:?}\nacked {acked:?}\nin flight {in_flight:?}"
    );
    let tip = store
        .append(session, segment, &json!("after the crash"))
        .unwrap();
    assert_eq!(tip.count, found.len() as u64 + 1);
    let again: Vec<Value> = store.read(session, segment).unwrap();
    assert_eq!(again.last(), Some(&json!("after the crash")));
}

/// How many calls of each kind that changes the medium the workload makes, counted by running
/// it once without faults.
fn census(durability: Durability) -> Vec<(Op, u64)> {
    let dir = tempfile::tempdir().unwrap();
    let counts = Arc::new(CountCalls::default());
    let store = FsStore::open_on(
        FaultFs::new(OsFs, counts.clone()),
        dir.path(),
        options(durability),
    )
    .unwrap();
    workload(&store, SessionId::new(), SegmentId::new(), &|_| {});
    Op::ALL
        .into_iter()
        .filter(|op| op.changes_media())
        .map(|op| (op, counts.count(op)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

#[test]
fn a_crash_before_or_after_any_call_loses_no_acknowledged_entry_and_leaves_a_readable_log() {
    let mut crashes = 0;
    for durability in [Durability::Buffered, Durability::Sync] {
        let calls = census(durability);
        for (op, expected) in [(Op::Append, 8), (Op::SyncDir, 3), (Op::Rename, 1)] {
            assert!(
                calls.iter().any(|&(o, n)| o == op && n >= expected),
                "the workload makes {expected} {op:?} calls or more: {calls:?}"
            );
        }
        for (op, count) in calls {
            for nth in 0..count {
                for fault in [Fault::Crash, Fault::CrashAfter] {
                    crash_at(op, nth, fault, durability);
                    crashes += 1;
                }
            }
        }
    }
    println!("{crashes} crashes, before and after every call that changes the medium");
}
