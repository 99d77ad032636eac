//! Tests of the store as a whole over its seam: the conformance suite on the simulated medium
//! (so nothing can reach a disk around the seam), the cost of the append path in calls, and
//! verify's fallback when the medium cannot map.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use super::{Call, Fault, FaultFs, FaultPlan, FsOptions, FsStore, Op, OsFs, SimFs};
use crate::{ReplayOptions, SegmentId, SessionId, Store, StoreExt};

/// A root below `/dev/null`, which no file system lets anyone create: a call that went around
/// the seam to the disk would fail there, whoever runs the tests.
const NOWHERE: &str = "/dev/null/annals/store";

fn simulated() -> FsStore<SimFs> {
    let options = FsOptions {
        max_entry_bytes: 1 << 20,
        ..FsOptions::default()
    };
    FsStore::open_on(SimFs::new(), NOWHERE, options).unwrap()
}

/// Every scenario of the conformance suite, on the simulated file system.
mod simulated_medium {
    crate::conformance_tests!(super::simulated());
}

/// Remembers every call, in order.
#[derive(Debug, Default)]
struct Calls(Mutex<Vec<(Op, PathBuf)>>);

impl Calls {
    fn take(&self) -> Vec<Op> {
        std::mem::take(&mut *self.0.lock().unwrap())
            .into_iter()
            .map(|(op, _)| op)
            .collect()
    }
}

impl FaultPlan for Calls {
    fn at(&self, call: &Call<'_>) -> Option<Fault> {
        self.0
            .lock()
            .unwrap()
            .push((call.op, call.path.to_path_buf()));
        None
    }
}

#[test]
fn a_root_on_a_network_file_system_is_refused_unless_allowed() {
    let nfs = SimFs::new().posing_as("nfs");
    match FsStore::open_on(nfs.clone(), NOWHERE, FsOptions::default()) {
        Err(crate::Error::UnsafeFileSystem { path, fs }) => {
            assert_eq!((path.as_path(), fs), (std::path::Path::new(NOWHERE), "nfs"));
        }
        other => panic!("{other:?}"),
    }
    let allowed = FsOptions {
        allow_unsafe_fs: true,
        ..FsOptions::default()
    };
    let store = FsStore::open_on(nfs, NOWHERE, allowed).unwrap();
    assert!(store.list_sessions().unwrap().is_empty());
    // A local one needs no permission.
    FsStore::open_on(SimFs::new(), NOWHERE, FsOptions::default()).unwrap();
}

/// The calls (with the paths they concern) of three appends of `entry(1..4)`, one per call,
/// after a first (`entry(0)`, which opens the file, and for a large entry makes `blobs/` and
/// the pack), and of a `sync` that follows them, on a store of `durability`. Checks that the
/// entries read back.
fn calls_of(
    durability: crate::Durability,
    entry: fn(usize) -> serde_json::Value,
) -> (Vec<Vec<(Op, PathBuf)>>, Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let calls = Arc::new(Calls::default());
    let options = FsOptions {
        durability,
        ..FsOptions::default()
    };
    let store = FsStore::open_on(FaultFs::new(OsFs, calls.clone()), dir.path(), options).unwrap();
    let (session, segment) = (SessionId::new(), SegmentId::new());
    store
        .create::<serde_json::Value>(session, segment, &[])
        .unwrap();
    store.append(session, segment, &entry(0)).unwrap();
    calls.take();
    let appends = (1..4)
        .map(|n| {
            store.append(session, segment, &entry(n)).unwrap();
            std::mem::take(&mut *calls.0.lock().unwrap())
        })
        .collect();
    store.sync(session, segment).unwrap();
    let sync = calls.take();
    let back: Vec<serde_json::Value> = store.read(session, segment).unwrap();
    assert_eq!(back, (0..4).map(entry).collect::<Vec<_>>());
    (appends, sync)
}

fn small(n: usize) -> serde_json::Value {
    serde_json::json!(n)
}

/// Too large for a line: kept as a blob.
fn large(n: usize) -> serde_json::Value {
    serde_json::json!({ "output": format!("{n}").repeat(9_000) })
}

fn ops(calls: &[(Op, PathBuf)]) -> Vec<Op> {
    calls.iter().map(|(op, _)| *op).collect()
}

#[test]
fn a_buffered_append_is_one_lock_one_stat_one_write_and_one_unlock() {
    let (appends, sync) = calls_of(crate::Durability::Buffered, small);
    for calls in appends {
        // The lock is tried, not waited for (a lease may hold the file: `lease.rs`).
        assert_eq!(
            ops(&calls),
            [Op::TryLock, Op::SizeAndLinks, Op::Append, Op::Unlock]
        );
    }
    // The session's directory and `blobs/` are looked up for a blob pack to make durable
    // first: this session has none.
    assert_eq!(sync, [Op::OpenDir, Op::OpenDir, Op::SyncData]);
}

#[test]
fn a_sync_append_is_the_buffered_calls_then_one_fdatasync_after_the_unlock() {
    let (appends, sync) = calls_of(crate::Durability::Sync, small);
    for calls in appends {
        // The fdatasync comes after the unlock: other writers may write meanwhile, and the
        // threads of this process share it (group commit, `group.rs`).
        assert_eq!(
            ops(&calls),
            [
                Op::TryLock,
                Op::SizeAndLinks,
                Op::Append,
                Op::Unlock,
                Op::SyncData
            ]
        );
    }
    // Everything this store wrote is durable already; a sync still makes its own call (it
    // covers whatever is in the file).
    assert_eq!(sync, [Op::OpenDir, Op::OpenDir, Op::SyncData]);
}

#[test]
fn a_buffered_append_of_a_large_entry_makes_no_fsync_at_all() {
    let (appends, sync) = calls_of(crate::Durability::Buffered, large);
    for calls in appends {
        // The session's blob lock (its directory, `blobs/`, opened: it exists, so nothing is
        // created; the lock file), then the pack,
        // opened by its name: its lock, its size (nothing new to read: the store kept its
        // index), the blob's one write (the lock goes with the file when it is closed); then
        // the line's append. No fsync, no directory fsync, no new file, no rename.
        assert_eq!(
            ops(&calls),
            [
                Op::OpenDir,
                Op::OpenDir,
                Op::OpenFile,
                Op::Lock,
                Op::OpenFile,
                Op::Lock,
                Op::SizeAndLinks,
                Op::Append,
                Op::TryLock,
                Op::SizeAndLinks,
                Op::Append,
                Op::Unlock
            ],
            "{calls:?}"
        );
        assert!(calls[7].1.ends_with("blobs/pack"), "{calls:?}");
    }
    // The sync makes the pack durable (found by its name, from the root), then the segment.
    assert_eq!(
        sync,
        [
            Op::OpenDir,
            Op::OpenDir,
            Op::OpenFile,
            Op::SyncData,
            Op::SyncData
        ]
    );
}

#[test]
fn a_sync_append_of_a_large_entry_makes_one_fdatasync_of_the_pack_and_one_of_the_segment() {
    let (appends, _) = calls_of(crate::Durability::Sync, large);
    for calls in appends {
        // As in `Buffered` mode, with the pack's fdatasync before the line is written (the blob
        // durable before anything refers to it), and the segment's after the unlock. No
        // directory fsync.
        assert_eq!(
            ops(&calls),
            [
                Op::OpenDir,
                Op::OpenDir,
                Op::OpenFile,
                Op::Lock,
                Op::OpenFile,
                Op::Lock,
                Op::SizeAndLinks,
                Op::Append,
                Op::SyncData,
                Op::TryLock,
                Op::SizeAndLinks,
                Op::Append,
                Op::Unlock,
                Op::SyncData
            ],
            "{calls:?}"
        );
        assert!(calls[8].1.ends_with("blobs/pack"), "{calls:?}");
        assert!(
            calls[13].1.extension().is_some_and(|e| e == "jsonl"),
            "{calls:?}"
        );
    }
}

/// The first append through a store that did not make the file, whose end no line vouches for
/// (buffered appends): lines only, its one lock (the recovery runs under it); with a blob, the
/// writer's recovery first, under a lock of its own, before the pack is touched (so that it
/// sees the end as a power cut may have left it), then the append's.
#[test]
fn a_first_append_settles_the_end_before_it_packs_a_blob_and_only_then() {
    for (entry, locks) in [(small as fn(usize) -> serde_json::Value, 1), (large, 2)] {
        let dir = tempfile::tempdir().unwrap();
        let (session, segment) = (SessionId::new(), SegmentId::new());
        let first = FsStore::open(dir.path()).unwrap();
        first.create(session, segment, &[entry(0)]).unwrap();
        first.append(session, segment, &entry(1)).unwrap();
        first.append(session, segment, &entry(2)).unwrap();
        drop(first);
        let calls = Arc::new(Calls::default());
        let store = FsStore::open_on(
            FaultFs::new(OsFs, calls.clone()),
            dir.path(),
            FsOptions::default(),
        )
        .unwrap();
        // A batch: the general path (one entry that fits its line has a shorter one).
        store
            .append_batch(session, segment, &[entry(3), entry(4)])
            .unwrap();
        let calls = calls.take();
        let tries: Vec<usize> = (0..calls.len())
            .filter(|&i| calls[i] == Op::TryLock)
            .collect();
        assert_eq!(tries.len(), locks, "{calls:?}");
        if let Some(pack) = calls.iter().position(|&op| op == Op::Lock) {
            assert!(tries[0] < pack, "settled before the blob lock: {calls:?}");
        }
        let back: Vec<serde_json::Value> = store.read(session, segment).unwrap();
        assert_eq!(back, (0..5).map(entry).collect::<Vec<_>>());
    }
}

/// Makes every fdatasync of a segment slow (so that appends of other threads pile up behind
/// it), counts them, and fails them once `failing` is set.
#[derive(Debug, Default)]
struct SlowSyncs {
    syncs: AtomicU32,
    failing: AtomicBool,
}

impl FaultPlan for SlowSyncs {
    fn at(&self, call: &Call<'_>) -> Option<Fault> {
        if call.op != Op::SyncData || call.path.extension().is_none_or(|e| e != "jsonl") {
            return None;
        }
        self.syncs.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(std::time::Duration::from_millis(20));
        self.failing.load(Ordering::SeqCst).then_some(Fault::Eio)
    }
}

fn slow_syncs(failing: bool) -> (tempfile::TempDir, Arc<SlowSyncs>, FsStore<FaultFs<OsFs>>) {
    let dir = tempfile::tempdir().unwrap();
    let plan = Arc::new(SlowSyncs::default());
    plan.failing.store(failing, Ordering::SeqCst);
    let options = FsOptions {
        durability: crate::Durability::Sync,
        // One handle kept open: any other is closed for the next, unless it is poisoned.
        max_open_files: 1,
        ..FsOptions::default()
    };
    let store = FsStore::open_on(FaultFs::new(OsFs, plan.clone()), dir.path(), options).unwrap();
    (dir, plan, store)
}

#[test]
fn durable_appends_of_many_threads_to_one_segment_share_their_fdatasyncs() {
    let (_dir, plan, store) = slow_syncs(false);
    let (session, segment) = (SessionId::new(), SegmentId::new());
    store
        .create::<serde_json::Value>(session, segment, &[])
        .unwrap();
    let (threads, each) = (8u64, 6u64);
    let start = std::sync::Barrier::new(8);
    std::thread::scope(|scope| {
        for t in 0..threads {
            let (store, start) = (&store, &start);
            scope.spawn(move || {
                start.wait();
                for i in 0..each {
                    let entry = serde_json::json!({ "thread": t, "i": i });
                    store.append(session, segment, &entry).unwrap();
                }
            });
        }
    });
    let appends = threads * each;
    let syncs = u64::from(plan.syncs.load(Ordering::SeqCst));
    // One thread at a time would make 48 slow fdatasyncs; sharing them, a handful of rounds.
    assert!(
        syncs * 2 <= appends,
        "{syncs} fdatasyncs for {appends} appends"
    );
    let read: Vec<serde_json::Value> = store.read(session, segment).unwrap();
    assert_eq!(read.len() as u64, appends);
    for t in 0..threads {
        let mine: Vec<u64> = read
            .iter()
            .filter(|e| e["thread"] == t)
            .map(|e| e["i"].as_u64().unwrap())
            .collect();
        assert_eq!(mine, (0..each).collect::<Vec<_>>(), "thread {t}'s order");
    }
    // Every line claims durable what the group had synced when it was written; the last
    // append's own sync covered everything before it.
    assert_eq!(store.tip(session, segment).unwrap().count, appends);
}

#[test]
fn a_failed_group_fdatasync_fails_every_waiter_and_is_never_made_again() {
    let (_dir, plan, store) = slow_syncs(true);
    let (session, segment) = (SessionId::new(), SegmentId::new());
    store
        .create::<serde_json::Value>(session, segment, &[])
        .unwrap();
    let threads = 4;
    let start = std::sync::Barrier::new(threads);
    let results: Vec<crate::Result<crate::Tip>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (store, start) = (&store, &start);
                scope.spawn(move || {
                    start.wait();
                    store.append(session, segment, &serde_json::json!({ "thread": t }))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // Nobody is told a line is durable: the one sync failed, and none was made after it.
    for r in &results {
        let e = r
            .as_ref()
            .expect_err("an append acknowledged after a failed fdatasync");
        assert!(
            matches!(e, crate::Error::Io { .. } | crate::Error::Poisoned { .. }),
            "{e:?}"
        );
    }
    assert_eq!(plan.syncs.load(Ordering::SeqCst), 1);
    // Sticky: sync and append fail without another fdatasync.
    assert!(matches!(
        store.sync(session, segment),
        Err(crate::Error::Poisoned { .. })
    ));
    assert!(matches!(
        store.append(session, segment, &serde_json::json!("later")),
        Err(crate::Error::Poisoned { .. })
    ));
    assert_eq!(plan.syncs.load(Ordering::SeqCst), 1);
    // The handle stays (the cache never closes a poisoned one), and with it the error: another
    // segment's appends do not make the store open the failed file afresh and sync it again.
    plan.failing.store(false, Ordering::SeqCst);
    let other = SegmentId::new();
    store
        .create::<serde_json::Value>(session, other, &[])
        .unwrap();
    store
        .append(session, other, &serde_json::json!("elsewhere"))
        .unwrap();
    let syncs = plan.syncs.load(Ordering::SeqCst);
    assert!(matches!(
        store.sync(session, segment),
        Err(crate::Error::Poisoned { .. })
    ));
    assert_eq!(plan.syncs.load(Ordering::SeqCst), syncs);
}

#[test]
fn verify_reads_what_it_cannot_map_and_reports_the_same() {
    #[derive(Debug)]
    struct NoMapping;
    impl FaultPlan for NoMapping {
        fn at(&self, call: &Call<'_>) -> Option<Fault> {
            (call.op == Op::Map).then_some(Fault::Eio)
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let (session, segment) = (SessionId::new(), SegmentId::new());
    let store = FsStore::open(dir.path()).unwrap();
    let entries: Vec<_> = (0..300)
        .map(|n| serde_json::json!({"n": n, "pad": "x".repeat(n % 50)}))
        .collect();
    store.create(session, segment, &entries).unwrap();
    // A flipped byte in the middle and a torn tail at the end.
    let path = store.segment_path(session, segment);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    bytes.extend_from_slice(b"{\"crc\":\"0");
    std::fs::write(&path, &bytes).unwrap();

    let mapped = store.verify(session, segment).unwrap();
    let unmapped = FsStore::open_on(
        FaultFs::new(OsFs, Arc::new(NoMapping)),
        dir.path(),
        FsOptions::default(),
    )
    .unwrap();
    let read = unmapped.verify(session, segment).unwrap();
    assert_eq!(read, mapped);
    assert_eq!(mapped.problem_count, 2, "{mapped:?}");
    assert!(mapped.torn_tail.is_some());
    let tolerant = unmapped
        .replay_raw(session, segment, &ReplayOptions::tolerant(), &mut |_| {
            Ok(std::ops::ControlFlow::Continue(()))
        })
        .unwrap();
    assert_eq!(tolerant.valid_up_to, read.valid_up_to);
}

/// Before every lock of one file, renames a copy of it over its name, as another process that
/// rewrites the segment on every turn would: whoever waited for the lock holds a file no name
/// points to any more (`st_nlink` 0) and must follow the name again.
#[derive(Debug)]
struct ReplacedOnEveryLock {
    path: PathBuf,
    on: AtomicBool,
    locks: AtomicU32,
}

impl FaultPlan for ReplacedOnEveryLock {
    fn at(&self, call: &Call<'_>) -> Option<Fault> {
        // Writers and repair try the lock (`TryLock`); readers wait for it (`Lock`).
        let locking = matches!(call.op, Op::Lock | Op::TryLock);
        if locking && call.path == self.path && self.on.load(Ordering::SeqCst) {
            self.locks.fetch_add(1, Ordering::SeqCst);
            let copy = self.path.with_extension("copy");
            std::fs::copy(&self.path, &copy).unwrap();
            std::fs::rename(&copy, &self.path).unwrap();
        }
        None
    }
}

fn gave_up_on_replacements(result: crate::Result<impl std::fmt::Debug>, path: &std::path::Path) {
    match result {
        Err(crate::Error::Io {
            op: "lock",
            path: p,
            source,
        }) => {
            assert_eq!(p, path);
            assert_eq!(source.kind(), std::io::ErrorKind::ResourceBusy, "{source}");
        }
        other => panic!("expected the lock to give up, got {other:?}"),
    }
}

#[test]
fn a_file_replaced_before_every_lock_is_followed_a_bounded_number_of_times() {
    let dir = tempfile::tempdir().unwrap();
    let (session, segment) = (SessionId::new(), SegmentId::new());
    let plain = FsStore::open(dir.path()).unwrap();
    plain
        .create(session, segment, &[serde_json::json!(0)])
        .unwrap();
    let path = plain.segment_path(session, segment);
    let plan = Arc::new(ReplacedOnEveryLock {
        path: path.clone(),
        on: AtomicBool::new(true),
        locks: AtomicU32::new(0),
    });
    let store = FsStore::open_on(
        FaultFs::new(OsFs, plan.clone()),
        dir.path(),
        FsOptions::default(),
    )
    .unwrap();
    // 32 reopens (docs/ARCHITECTURE.md): 33 files locked in all.
    let tries = super::snapshot::MAX_REOPENS + 1;
    assert_eq!(tries, 33);

    // The writer, a reader and repair each give up after that many files, with an error that
    // names the file; none of them changed it.
    gave_up_on_replacements(store.append(session, segment, &serde_json::json!(1)), &path);
    assert_eq!(plan.locks.swap(0, Ordering::SeqCst), tries);
    gave_up_on_replacements(store.read::<serde_json::Value>(session, segment), &path);
    assert_eq!(plan.locks.swap(0, Ordering::SeqCst), tries);
    gave_up_on_replacements(store.repair(session, segment, true), &path);
    assert_eq!(plan.locks.swap(0, Ordering::SeqCst), tries);
    let before: Vec<serde_json::Value> = plain.read(session, segment).unwrap();
    assert_eq!(before, [serde_json::json!(0)]);

    // Once the file stays put, the same store appends and reads as if nothing happened.
    plan.on.store(false, Ordering::SeqCst);
    store
        .append(session, segment, &serde_json::json!(1))
        .unwrap();
    let after: Vec<serde_json::Value> = store.read(session, segment).unwrap();
    assert_eq!(after, [serde_json::json!(0), serde_json::json!(1)]);
}

/// Replaces the file once, before the first lock only: the ordinary race with one rewrite.
#[test]
fn a_file_replaced_once_while_its_lock_was_awaited_is_followed() {
    let dir = tempfile::tempdir().unwrap();
    let (session, segment) = (SessionId::new(), SegmentId::new());
    let plain = FsStore::open(dir.path()).unwrap();
    plain
        .create(session, segment, &[serde_json::json!(0)])
        .unwrap();
    #[derive(Debug)]
    struct Once(ReplacedOnEveryLock);
    impl FaultPlan for Once {
        fn at(&self, call: &Call<'_>) -> Option<Fault> {
            let fault = self.0.at(call);
            if self.0.locks.load(Ordering::SeqCst) > 0 {
                self.0.on.store(false, Ordering::SeqCst);
            }
            fault
        }
    }
    let plan = Arc::new(Once(ReplacedOnEveryLock {
        path: plain.segment_path(session, segment),
        on: AtomicBool::new(true),
        locks: AtomicU32::new(0),
    }));
    let store = FsStore::open_on(
        FaultFs::new(OsFs, plan.clone()),
        dir.path(),
        FsOptions::default(),
    )
    .unwrap();
    store
        .append(session, segment, &serde_json::json!(1))
        .unwrap();
    assert_eq!(plan.0.locks.load(Ordering::SeqCst), 1);
    let entries: Vec<serde_json::Value> = plain.read(session, segment).unwrap();
    assert_eq!(entries, [serde_json::json!(0), serde_json::json!(1)]);
}

/// Fails the first `fdatasync` of a blob pack with `EIO`, and lets every later one through.
#[derive(Debug, Default)]
struct FailsFirstPackSync(AtomicBool);

impl FaultPlan for FailsFirstPackSync {
    fn at(&self, call: &Call<'_>) -> Option<Fault> {
        let pack = call.op == Op::SyncData && call.path.ends_with("blobs/pack");
        (pack && !self.0.swap(true, Ordering::SeqCst)).then_some(Fault::Eio)
    }
}

#[test]
fn a_failed_fdatasync_of_the_pack_is_never_retried_and_leaves_no_record_behind() {
    for durability in [crate::Durability::Sync, crate::Durability::Buffered] {
        let dir = tempfile::tempdir().unwrap();
        let options = FsOptions {
            durability,
            ..FsOptions::default()
        };
        let plan = Arc::new(FailsFirstPackSync::default());
        let store = FsStore::open_on(FaultFs::new(OsFs, plan), dir.path(), options).unwrap();
        let (session, segment) = (SessionId::new(), SegmentId::new());
        store
            .create::<serde_json::Value>(session, segment, &[])
            .unwrap();
        let pack = dir.path().join(session.to_string()).join("blobs/pack");
        let failed = if durability == crate::Durability::Sync {
            // The append's own fdatasync of the pack fails: nothing is acknowledged, and the
            // record it wrote is cut, so that no later append finds it as if it were durable.
            let err = store.append(session, segment, &large(1)).unwrap_err();
            assert_eq!(std::fs::metadata(&pack).unwrap().len(), 0);
            err
        } else {
            // A `Buffered` append makes none; the sync that must make its blob durable fails.
            store.append(session, segment, &large(1)).unwrap();
            store.sync(session, segment).unwrap_err()
        };
        // Said as what it is: the pack's fdatasync, and its EIO.
        assert!(
            matches!(&failed, crate::Error::Poisoned { path, op: "fdatasync", source }
                if *path == pack && source.raw_os_error() == Some(5)),
            "{durability:?}: {failed:?}"
        );
        // From now on every use of that pack fails the same way, though the disk would let an
        // fdatasync through: it could report success for pages the kernel dropped.
        for _ in 0..2 {
            for outcome in [
                store.append(session, segment, &large(2)).map(|_| ()),
                store.sync(session, segment),
            ] {
                assert!(
                    matches!(outcome, Err(crate::Error::Poisoned { ref path, .. }) if *path == pack),
                    "{durability:?}: {outcome:?}"
                );
            }
        }
    }
}
