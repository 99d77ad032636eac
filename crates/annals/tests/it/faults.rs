//! Fault injection: calls through the filesystem store's I/O seam (`FaultFs`), made to fail
//! with EIO or ENOSPC, to write short, or to crash the process before or after them. For each,
//! what the caller saw is a clear error, no acknowledged append is lost, no unacknowledged one
//! appears half-written, the store reopens and replays, and the next append works (on a new
//! store where the old one is poisoned).

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use annals::testing::support::{entry, TempStore};
use annals::{
    Call, CountCalls, Durability, Error, FailNth, Fault, FaultFs, FaultPlan, FsOptions, FsStore,
    Op, OsFs, SegmentId, SessionId, Store, StoreExt, Tip,
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

/// An entry too long for a line, kept as a blob.
fn big(n: u64) -> Value {
    json!({ "i": n, "text": "x".repeat(9000) })
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

fn errno(fault: Fault) -> i32 {
    match fault {
        Fault::Enospc => 28,
        _ => 5,
    }
}

/// A segment with three acknowledged entries, written without faults.
fn seeded(t: &TempStore) -> (SessionId, SegmentId) {
    let (session, segment) = (SessionId::new(), SegmentId::new());
    t.create(session, segment, &[entry(0), entry(1), entry(2)])
        .unwrap();
    (session, segment)
}

#[test]
fn a_failed_or_short_append_write_is_rolled_back_and_the_next_append_works() {
    for fault in ERRORS {
        let t = TempStore::new();
        let (session, segment) = seeded(&t);
        let store = faulty(t.root(), Durability::Buffered, on_log(Op::Append, 0, fault));
        let err = store.append(session, segment, &entry(3)).unwrap_err();
        io_error_names(&err, "append to", &segment.to_string());

        let report = store.verify(session, segment).unwrap();
        assert!(
            report.is_clean() && report.torn_tail.is_none(),
            "{fault:?}: {report:?}"
        );
        assert_eq!(
            replay_fresh(t.root(), session, segment),
            vec![entry(0), entry(1), entry(2)]
        );

        let tip = store.append(session, segment, &entry(3)).unwrap();
        assert_eq!(
            tip.count, 4,
            "{fault:?}: the same store appends again after a rollback"
        );
        assert_eq!(replay_fresh(t.root(), session, segment).len(), 4);
    }
}

#[test]
fn a_failed_fsync_poisons_the_file_until_the_store_is_reopened() {
    for fault in [Fault::Eio, Fault::Enospc] {
        let t = TempStore::new();
        let (session, segment) = seeded(&t);
        let store = faulty(t.root(), Durability::Sync, on_log(Op::SyncData, 0, fault));
        let err = store.append(session, segment, &entry(3)).unwrap_err();
        io_error_names(&err, "fsync", &segment.to_string());

        // Sticky: never retried, whatever is asked next; the cause keeps its errno.
        for _ in 0..3 {
            let again = store.append(session, segment, &entry(4)).unwrap_err();
            match &again {
                Error::Poisoned { op, source, .. } => {
                    assert_eq!(*op, "fsync");
                    assert_eq!(source.raw_os_error(), Some(errno(fault)), "{again}");
                }
                other => panic!("{fault:?}: {other:?}"),
            }
            assert!(again.to_string().contains("fsync"), "{again}");
        }
        assert!(matches!(
            store.truncate(session, segment, 1).unwrap_err(),
            Error::Poisoned { .. }
        ));

        // The unacknowledged line is whole or absent, never half; acknowledged ones are there.
        let after = replay_fresh(t.root(), session, segment);
        assert_eq!(after[..3], [entry(0), entry(1), entry(2)]);
        assert!(after.len() <= 4);

        let reopened = FsStore::open_with(t.root(), options(Durability::Sync)).unwrap();
        reopened.append(session, segment, &entry(9)).unwrap();
        assert_eq!(
            replay_fresh(t.root(), session, segment).last(),
            Some(&entry(9))
        );
    }
}

#[test]
fn a_failed_rollback_poisons_and_leaves_only_an_ignorable_torn_tail() {
    let t = TempStore::new();
    let (session, segment) = seeded(&t);
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
        t.root(),
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

    let fresh = FsStore::open(t.root()).unwrap();
    let report = fresh.verify(session, segment).unwrap();
    assert!(report.is_clean(), "{report:?}");
    // The short write, and the second write that asked why (short again): 11 bytes each.
    assert_eq!(report.torn_tail.map(|t| t.len), Some(22));
    assert_eq!(fresh.read::<Value>(session, segment).unwrap().len(), 3);
    fresh.append(session, segment, &entry(3)).unwrap();
    assert_eq!(replay_fresh(t.root(), session, segment).len(), 4);
    assert!(fresh.verify(session, segment).unwrap().torn_tail.is_none());
}

#[test]
fn a_torn_tail_that_cannot_be_cut_fails_the_append_and_writes_nothing() {
    let t = TempStore::new();
    let (session, segment) = seeded(&t);
    let path = t.segment_path(session, segment);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(b"{\"crc\":\"0");
    std::fs::write(&path, &bytes).unwrap();

    let store = faulty(
        t.root(),
        Durability::Buffered,
        on_log(Op::SetLen, 0, Fault::Eio),
    );
    let err = store.append(session, segment, &entry(3)).unwrap_err();
    io_error_names(&err, "remove torn tail of", &segment.to_string());
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "nothing written");

    store.append(session, segment, &entry(3)).unwrap();
    assert_eq!(replay_fresh(t.root(), session, segment).len(), 4);
    assert!(store.verify(session, segment).unwrap().torn_tail.is_none());
}

/// A short write to a temporary file that the next write completes is no failure: nobody
/// reads the file before it is published, so its bytes need not be one write (a log's line
/// must be, and is rolled back instead). A full disk's short write is followed by `ENOSPC`,
/// which `full_disk.rs` tests.
fn absorbed(point: Op, fault: Fault) -> bool {
    point == Op::Append && matches!(fault, Fault::ShortWrite(_))
}

#[test]
fn a_create_that_fails_before_the_link_leaves_no_segment_and_no_temp_file() {
    for point in [Op::Append, Op::SyncData, Op::Link] {
        for fault in ERRORS {
            let t = TempStore::new();
            let (session, segment) = (SessionId::new(), SegmentId::new());
            let plan = match point {
                Op::Link => FailNth::new(point, 0, fault),
                _ => on_temp(point, 0, fault),
            };
            let store = faulty(t.root(), Durability::Buffered, plan);
            if absorbed(point, fault) {
                store.create(session, segment, &[entry(0)]).unwrap();
                assert_eq!(replay_fresh(t.root(), session, segment), vec![entry(0)]);
                no_temp_files_left(t.root(), session);
                continue;
            }
            let err = store.create(session, segment, &[entry(0)]).unwrap_err();
            assert!(
                matches!(err, Error::Io { .. }),
                "{point:?}/{fault:?}: {err:?}"
            );
            assert!(
                !store.exists(session, segment).unwrap(),
                "{point:?}/{fault:?}"
            );
            no_temp_files_left(t.root(), session);
            store.create(session, segment, &[entry(0)]).unwrap();
            assert_eq!(replay_fresh(t.root(), session, segment), vec![entry(0)]);
        }
    }
}

#[test]
fn a_truncate_that_fails_before_the_rename_changes_nothing() {
    for point in [Op::Append, Op::SyncData, Op::Rename] {
        for fault in ERRORS {
            let t = TempStore::new();
            let (session, segment) = seeded(&t);
            let path = t.segment_path(session, segment);
            let before = std::fs::read(&path).unwrap();
            let plan = match point {
                Op::Rename => FailNth::new(point, 0, fault),
                _ => on_temp(point, 0, fault),
            };
            let store = faulty(t.root(), Durability::Buffered, plan);
            if absorbed(point, fault) {
                assert_eq!(store.truncate(session, segment, 1).unwrap().count, 1);
                assert_eq!(replay_fresh(t.root(), session, segment), vec![entry(0)]);
                no_temp_files_left(t.root(), session);
                continue;
            }
            let err = store.truncate(session, segment, 1).unwrap_err();
            assert!(
                matches!(err, Error::Io { .. }),
                "{point:?}/{fault:?}: {err:?}"
            );
            assert_eq!(std::fs::read(&path).unwrap(), before, "{point:?}/{fault:?}");
            assert_eq!(store.tip(session, segment).unwrap().generation, 0);
            no_temp_files_left(t.root(), session);
            assert_eq!(store.append(session, segment, &entry(3)).unwrap().count, 4);
        }
    }
}

#[test]
fn a_failed_directory_sync_after_a_rewrite_poisons_the_segment() {
    let t = TempStore::new();
    let (session, segment) = seeded(&t);
    let store = faulty(
        t.root(),
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
    let fresh = FsStore::open(t.root()).unwrap();
    let entries: Vec<Value> = fresh.read(session, segment).unwrap();
    assert_eq!(entries, vec![entry(0)]);
    fresh.append(session, segment, &entry(1)).unwrap();
}

#[test]
fn a_failed_directory_sync_after_a_create_reports_the_error_and_leaves_a_whole_segment() {
    let t = TempStore::new();
    let (session, segment) = (SessionId::new(), SegmentId::new());
    // Fail the second directory sync (the first one is the new session directory's).
    let store = faulty(
        t.root(),
        Durability::Buffered,
        FailNth::new(Op::SyncDir, 1, Fault::Eio),
    );
    let err = store.create(session, segment, &[entry(0)]).unwrap_err();
    io_error_names(&err, "fsync directory", &session.to_string());
    assert_eq!(replay_fresh(t.root(), session, segment), vec![entry(0)]);
    no_temp_files_left(t.root(), session);
}

#[test]
fn a_failed_sync_keeps_its_errno_poisons_the_segment_and_is_never_retried() {
    for fault in [Fault::Eio, Fault::Enospc] {
        let t = TempStore::new();
        let (session, segment) = seeded(&t);
        let plan = Arc::new(on_log(Op::SyncData, 0, fault));
        let store =
            FsStore::open_with_faults(t.root(), FsOptions::default(), plan.clone()).unwrap();
        store.append(session, segment, &entry(3)).unwrap();
        let err = store.sync(session, segment).unwrap_err();
        io_error_names(&err, "fsync", &segment.to_string());
        let Error::Io { source, .. } = &err else {
            unreachable!()
        };
        assert_eq!(source.raw_os_error(), Some(errno(fault)));
        for again in [
            store.sync(session, segment).unwrap_err(),
            store.append(session, segment, &entry(4)).unwrap_err(),
            store
                .fork(session, segment, 1, SegmentId::new())
                .unwrap_err(),
            store.repair(session, segment, false).unwrap_err(),
        ] {
            match &again {
                Error::Poisoned { op, source, .. } => {
                    assert_eq!(*op, "fsync");
                    assert_eq!(source.raw_os_error(), Some(errno(fault)));
                }
                other => panic!("{fault:?}: {other:?}"),
            }
        }
        assert_eq!(plan.hits(), 1, "the failed fsync was tried again");
        // The acknowledged append is in the page cache, whole.
        assert_eq!(replay_fresh(t.root(), session, segment).len(), 4);
    }
}

// ---- every call of repair, delete_session and gc, failing ----------------------------------

/// Runs `operation` once on a fresh fixture with its calls counted, then once for every call
/// it makes that changes the medium, each time on a fresh fixture and with that call failing
/// with EIO and then ENOSPC; `check` judges what is left. Returns how many runs failed a call.
fn fail_each_call<X>(
    setup: impl Fn(&TempStore) -> X,
    operation: impl Fn(&FsStore<FaultFs>, &X) -> annals::Result<()>,
    check: impl Fn(&TempStore, &X, &annals::Result<()>, &str),
) -> usize {
    let counted = TempStore::new();
    let x = setup(&counted);
    let counts = Arc::new(CountCalls::default());
    let store = FsStore::open_on(
        FaultFs::new(OsFs, counts.clone()),
        counted.root(),
        FsOptions::default(),
    )
    .unwrap();
    operation(&store, &x).unwrap();
    let mut runs = 0;
    for op in Op::ALL.into_iter().filter(|op| op.changes_media()) {
        for nth in 0..counts.count(op) {
            for fault in [Fault::Eio, Fault::Enospc] {
                let t = TempStore::new();
                let x = setup(&t);
                let store = faulty(t.root(), Durability::Buffered, FailNth::new(op, nth, fault));
                let outcome = operation(&store, &x);
                drop(store);
                check(
                    &t,
                    &x,
                    &outcome,
                    &format!("{op:?}#{nth} {fault:?}: {outcome:?}"),
                );
                runs += 1;
            }
        }
    }
    assert!(runs > 0);
    runs
}

/// The names in a session directory that start with `prefix`.
fn names_with(t: &TempStore, session: SessionId, prefix: &str) -> Vec<String> {
    std::fs::read_dir(t.root().join(session.to_string()))
        .map(|dir| {
            dir.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// A damaged segment for repair: five entries (one kept as a blob), then either a torn tail
/// (`torn`) or a flipped byte in the fourth entry's line. Returns the bytes a repair drops.
fn damaged(t: &TempStore, torn: bool) -> (SessionId, SegmentId, Vec<u8>) {
    let (session, segment) = (SessionId::new(), SegmentId::new());
    t.create(
        session,
        segment,
        &[entry(0), big(1), entry(2), entry(3), entry(4)],
    )
    .unwrap();
    let path = t.segment_path(session, segment);
    let mut bytes = std::fs::read(&path).unwrap();
    let cut = if torn {
        let at = bytes.len();
        bytes.extend_from_slice(b"{\"crc\":\"0f");
        at
    } else {
        let at = bytes
            .iter()
            .enumerate()
            .filter(|(_, &b)| b == b'\n')
            .nth(3)
            .map(|(i, _)| i + 1)
            .unwrap();
        bytes[at + 30] ^= 0x01;
        at
    };
    std::fs::write(&path, &bytes).unwrap();
    (session, segment, bytes[cut..].to_vec())
}

#[test]
fn a_repair_failing_at_any_call_loses_no_byte_and_a_later_repair_finishes_it() {
    let mut runs = 0;
    for torn in [true, false] {
        let kept = if torn { 5 } else { 3 };
        runs += fail_each_call(
            |t| damaged(t, torn),
            |store, (session, segment, _)| store.repair(*session, *segment, false).map(|_| ()),
            |t, (session, segment, dropped), outcome, context| {
                // The dropped bytes are at the end of the segment or in a backup, whole.
                let log = std::fs::read(t.segment_path(*session, *segment)).unwrap();
                let prefix = format!("{segment}.jsonl.dropped-");
                let saved = names_with(t, *session, &prefix).iter().any(|name| {
                    std::fs::read(t.root().join(session.to_string()).join(name)).unwrap()
                        == *dropped
                });
                assert!(log.ends_with(dropped) || saved, "{context}: bytes lost");
                if outcome.is_ok() {
                    assert!(saved && !log.ends_with(dropped), "{context}");
                }
                no_temp_files_left(t.root(), *session);
                // Whatever happened, a fresh store repairs (or finds repaired) and keeps what
                // came before the damage.
                let fresh = t.open_another();
                fresh.repair(*session, *segment, false).unwrap();
                let report = fresh.verify(*session, *segment).unwrap();
                assert!(report.is_clean() && report.torn_tail.is_none(), "{context}");
                assert_eq!(
                    fresh.entry_count(*session, *segment).unwrap(),
                    kept,
                    "{context}"
                );
            },
        );
    }
    println!("{runs} repairs failed at a call");
}

#[test]
fn a_delete_failing_at_any_call_leaves_the_session_whole_or_gone_and_others_untouched() {
    let runs = fail_each_call(
        |t| {
            let (doomed, kept) = (SessionId::new(), SessionId::new());
            let segment = SegmentId::new();
            for session in [doomed, kept] {
                t.create(session, segment, &[entry(0), big(1)]).unwrap();
                t.append_trace(session, segment, &json!({"event": 1}))
                    .unwrap();
            }
            (doomed, kept, segment)
        },
        |store, (doomed, _, _)| store.delete_session(*doomed),
        |t, (doomed, kept, segment), outcome, context| {
            let fresh = t.open_another();
            let listed = fresh.list_sessions().unwrap();
            assert!(listed.contains(kept), "{context}");
            assert_eq!(
                fresh.read::<Value>(*kept, *segment).unwrap().len(),
                2,
                "{context}"
            );
            if listed.contains(doomed) {
                // Not renamed away: whole.
                assert!(outcome.is_err(), "{context}");
                assert_eq!(
                    fresh.read::<Value>(*doomed, *segment).unwrap().len(),
                    2,
                    "{context}"
                );
                fresh.delete_session(*doomed).unwrap();
            }
            assert!(
                !fresh.list_sessions().unwrap().contains(doomed),
                "{context}"
            );
            assert!(!fresh.exists(*doomed, *segment).unwrap(), "{context}");
        },
    );
    println!("{runs} deletes failed at a call");
}

#[test]
fn a_gc_failing_at_any_call_removes_no_referenced_blob_and_a_later_gc_finishes_it() {
    let runs = fail_each_call(
        |t| {
            let (session, segment) = (SessionId::new(), SegmentId::new());
            t.create(session, segment, &[big(0), big(1), big(2), big(3)])
                .unwrap();
            t.truncate(session, segment, 2).unwrap();
            (session, segment)
        },
        |store, (session, _)| store.gc_blobs(*session, false).map(|_| ()),
        |t, (session, segment), _, context| {
            let fresh = t.open_another();
            let report = fresh.verify(*session, *segment).unwrap();
            assert!(report.is_clean(), "{context}: {report:?}");
            assert_eq!(
                fresh.read::<Value>(*session, *segment).unwrap(),
                [big(0), big(1)]
            );
            fresh.gc_blobs(*session, false).unwrap();
            let after = fresh.gc_blobs(*session, true).unwrap();
            assert_eq!((after.orphans.len(), after.kept), (0, 2), "{context}");
        },
    );
    println!("{runs} garbage collections failed at a call");
}

// ---- races, made to happen exactly: the plan acts when the store reaches its lock ----------

/// A plan that runs an action (another store's operation) when this store is about to take the
/// exclusive lock of a segment's log, once it is armed.
#[derive(Default)]
struct AtLock {
    armed: AtomicBool,
    action: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl std::fmt::Debug for AtLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AtLock").finish_non_exhaustive()
    }
}

impl AtLock {
    fn arm(&self, action: impl FnOnce() + Send + 'static) {
        *self.action.lock().unwrap() = Some(Box::new(action));
        self.armed.store(true, Ordering::SeqCst);
    }
}

impl FaultPlan for AtLock {
    fn at(&self, call: &Call<'_>) -> Option<Fault> {
        // Writers try the lock (`TryLock`); readers and repair wait for it (`Lock`).
        let locking = matches!(call.op, Op::Lock | Op::TryLock);
        if locking && is_log(call.path) && self.armed.swap(false, Ordering::SeqCst) {
            if let Some(action) = self.action.lock().unwrap().take() {
                action();
            }
        }
        None
    }
}

/// A store whose segment handle is open, with a plan that can make a race happen at its lock.
fn racing(
    t: &TempStore,
    session: SessionId,
    segment: SegmentId,
) -> (FsStore<FaultFs>, Arc<AtLock>) {
    let plan = Arc::new(AtLock::default());
    let store = FsStore::open_with_faults(t.root(), FsOptions::default(), plan.clone()).unwrap();
    assert_eq!(store.append(session, segment, &entry(3)).unwrap().count, 4);
    (store, plan)
}

#[test]
fn an_append_waiting_for_the_lock_while_another_store_truncates_lands_in_the_new_file() {
    let t = TempStore::new();
    let (session, segment) = seeded(&t);
    let (store, plan) = racing(&t, session, segment);
    let other = t.open_another();
    plan.arm(move || {
        other.truncate(session, segment, 1).unwrap();
    });
    let tip = store.append(session, segment, &entry(9)).unwrap();
    assert_eq!(
        tip,
        Tip {
            count: 2,
            generation: 1
        }
    );
    assert_eq!(
        replay_fresh(t.root(), session, segment),
        [entry(0), entry(9)]
    );
    let report = t.verify(session, segment).unwrap();
    assert!(
        report.is_clean() && report.torn_tail.is_none(),
        "{report:?}"
    );
}

#[test]
fn a_conditional_append_racing_a_truncate_that_restores_the_count_is_refused() {
    let t = TempStore::new();
    let (session, segment) = seeded(&t);
    let (store, plan) = racing(&t, session, segment);
    let seen = store.tip(session, segment).unwrap();
    let other = t.open_another();
    plan.arm(move || {
        // Same count again, new generation: only the generation tells.
        other.truncate(session, segment, 3).unwrap();
        other.append(session, segment, &entry(7)).unwrap();
    });
    let err = store
        .append_if(
            session,
            segment,
            seen,
            &[annals::RawEntry::from_value(&entry(9)).unwrap()],
        )
        .unwrap_err();
    assert!(matches!(err, Error::ConcurrentWriter { .. }), "{err:?}");
    assert_eq!(
        replay_fresh(t.root(), session, segment),
        [entry(0), entry(1), entry(2), entry(7)]
    );
}

#[test]
fn an_append_waiting_for_the_lock_while_the_session_is_deleted_fails_and_writes_nothing() {
    let t = TempStore::new();
    let (session, segment) = seeded(&t);
    let (store, plan) = racing(&t, session, segment);
    let other = t.open_another();
    plan.arm(move || other.delete_session(session).unwrap());
    let err = store.append(session, segment, &entry(9)).unwrap_err();
    assert!(matches!(err, Error::SegmentNotFound { .. }), "{err:?}");
    let left: Vec<_> = std::fs::read_dir(t.root()).unwrap().collect();
    assert!(left.is_empty(), "the deleted session left {left:?}");
}

// ---- crashes: the test binary re-executes itself as the child that crashes -------------------

const CHILD_ENV: &str = "ANNALS_FAULT_CRASH_CHILD";

/// The crash workload, run by the child (and once in the parent, to count its calls). It says
/// `begin OP` before and `ack OP` after every operation, so the parent knows what was
/// acknowledged and what was in flight when the crash came. Besides appends and a truncate it
/// syncs, spills a blob, collects it, repairs a torn tail and deletes a second session.
fn workload(
    store: &FsStore<FaultFs>,
    session: SessionId,
    segment: SegmentId,
    say: &dyn Fn(String),
) {
    let torn_tail = || {
        // As a crashed writer would leave it.
        let path = store.segment_path(session, segment);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(b"{\"crc\":\"ab");
        std::fs::write(&path, bytes).unwrap();
    };
    let step = |op: &str, f: &dyn Fn()| {
        say(format!("begin {op}"));
        f();
        say(format!("ack {op}"));
    };
    step("create 2", &|| {
        store
            .create(session, segment, &[entry(0), entry(1)])
            .unwrap();
    });
    torn_tail();
    for n in 2..6 {
        step(&format!("append {n}"), &|| {
            store.append(session, segment, &entry(n)).unwrap();
        });
    }
    step("truncate 3", &|| {
        store.truncate(session, segment, 3).unwrap();
    });
    for n in 3..5 {
        step(&format!("append {n}"), &|| {
            store.append(session, segment, &entry(n)).unwrap();
        });
    }
    step("sync 0", &|| store.sync(session, segment).unwrap());
    step("big 5", &|| {
        store.append(session, segment, &big(5)).unwrap();
    });
    step("truncate 5", &|| {
        store.truncate(session, segment, 5).unwrap();
    });
    step("gc 0", &|| {
        store.gc_blobs(session, false).unwrap();
    });
    torn_tail();
    step("repair 0", &|| {
        store.repair(session, segment, false).unwrap();
    });
    step("append 5", &|| {
        store.append(session, segment, &entry(5)).unwrap();
    });
    let other = other_session(session);
    step("other 0", &|| {
        store.create(other, segment, &[big(0), entry(1)]).unwrap();
    });
    step("delete 0", &|| store.delete_session(other).unwrap());
    say("done".into());
}

/// The workload's second session, derived from the first so that the parent knows it.
fn other_session(session: SessionId) -> SessionId {
    let mut bytes = *session.as_uuid().as_bytes();
    bytes[15] ^= 0xff;
    SessionId::from_uuid(uuid::Uuid::from_bytes(bytes))
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
        "big" => model.push(big(n)),
        "truncate" => model.truncate(usize::try_from(n).unwrap()),
        // They change no entry of the segment.
        "sync" | "gc" | "repair" | "other" | "delete" => {}
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

    // The second session: whole or gone while its deletion was in flight, gone once it
    // returned, and never half created.
    let other = other_session(session);
    let acked = |op: &str| stdout.lines().any(|l| l == format!("ack {op}"));
    if acked("delete 0") {
        assert!(
            !store.list_sessions().unwrap().contains(&other),
            "{context}"
        );
    } else if store.exists(other, segment).unwrap() {
        let found: Vec<Value> = store.read(other, segment).unwrap();
        assert_eq!(found, [big(0), entry(1)], "{context}");
        assert!(
            store.verify(other, segment).unwrap().is_clean(),
            "{context}"
        );
    } else {
        assert!(
            !acked("other 0") || in_flight.as_deref() == Some("delete 0"),
            "{context}: the second session vanished"
        );
    }
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

// ---- a delete whose files another remover takes first -----------------------------------------

/// At the `nth` call of `op` (a removal), removes its target first, as a second deleter of
/// the same session would, then lets the call go on to find it gone.
#[derive(Debug)]
struct RemovedFirst {
    op: Op,
    nth: u64,
    seen: std::sync::atomic::AtomicU64,
}

impl annals::FaultPlan for RemovedFirst {
    fn at(&self, call: &annals::Call<'_>) -> Option<Fault> {
        if call.op == self.op && self.seen.fetch_add(1, Ordering::SeqCst) == self.nth {
            let gone = match self.op {
                Op::RemoveDir => std::fs::remove_dir(call.path),
                _ => std::fs::remove_file(call.path),
            };
            gone.unwrap();
        }
        None
    }
}

#[test]
fn a_delete_that_finds_a_file_already_removed_finishes_and_any_other_failure_is_reported() {
    let setup = |t: &TempStore| {
        let (doomed, kept, segment) = (SessionId::new(), SessionId::new(), SegmentId::new());
        for session in [doomed, kept] {
            t.create(session, segment, &[entry(0), big(1)]).unwrap();
            t.append_trace(session, segment, &json!({"event": 1}))
                .unwrap();
        }
        (doomed, kept, segment)
    };
    let hidden_left = |t: &TempStore| -> Vec<String> {
        std::fs::read_dir(t.root())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".deleted"))
            .collect()
    };
    let counted = TempStore::new();
    let (doomed, _, _) = setup(&counted);
    let counts = Arc::new(CountCalls::default());
    FsStore::open_on(
        FaultFs::new(OsFs, counts.clone()),
        counted.root(),
        FsOptions::default(),
    )
    .unwrap()
    .delete_session(doomed)
    .unwrap();
    let mut runs = 0;
    for op in [Op::RemoveFile, Op::RemoveDir] {
        assert!(counts.count(op) > 0, "a delete makes {op:?} calls");
        for nth in 0..counts.count(op) {
            // Taken first by another remover: not an error, and nothing is left behind.
            let t = TempStore::new();
            let (doomed, kept, segment) = setup(&t);
            let plan = Arc::new(RemovedFirst {
                op,
                nth,
                seen: Default::default(),
            });
            let store = FsStore::open_with_faults(t.root(), FsOptions::default(), plan).unwrap();
            store
                .delete_session(doomed)
                .unwrap_or_else(|e| panic!("{op:?}#{nth} removed first: {e}"));
            assert!(!t.open_another().list_sessions().unwrap().contains(&doomed));
            assert_eq!(hidden_left(&t), Vec::<String>::new(), "{op:?}#{nth}");
            assert_eq!(
                t.open_another().read::<Value>(kept, segment).unwrap().len(),
                2
            );

            // Failing with EIO: the delete says so, naming that error, not a later one.
            let t = TempStore::new();
            let (doomed, _, _) = setup(&t);
            let store = faulty(
                t.root(),
                Durability::Buffered,
                FailNth::new(op, nth, Fault::Eio),
            );
            match store.delete_session(doomed) {
                Err(Error::Io { source, .. }) => {
                    assert_eq!(source.raw_os_error(), Some(5), "{op:?}#{nth}: {source}");
                }
                other => panic!("{op:?}#{nth} failing with EIO: {other:?}"),
            }
            runs += 1;
        }
    }
    println!("{runs} removals taken first and failed");
}
