//! Writer leases on the filesystem store: what another store on the same root (another open
//! file, as another process has) is told, the holder record and its staleness, what a lease
//! costs in calls, and failures through the I/O seam under a lease. Across real processes and
//! `kill -9`: `multiprocess.rs`; power cuts: `powercut.rs`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use annals::testing::support::{entry, TempStore};
use annals::{
    CountCalls, Durability, Error, FailNth, Fault, FsOptions, FsStore, LeaseHolder, LeaseOptions,
    Op, SegmentId, SessionId, Store, StoreExt, Tip,
};
use serde_json::Value;

const QUICK: Duration = Duration::from_millis(40);

fn quick(durability: Durability) -> FsOptions {
    FsOptions {
        durability,
        lock_wait: QUICK,
        ..FsOptions::default()
    }
}

fn seeded(t: &TempStore, n: u64) -> (SessionId, SegmentId) {
    let (session, segment) = (SessionId::new(), SegmentId::new());
    let initial: Vec<Value> = (0..n).map(entry).collect();
    t.create(session, segment, &initial).unwrap();
    (session, segment)
}

fn record_path(t: &TempStore, session: SessionId, segment: SegmentId) -> PathBuf {
    t.root()
        .join(session.to_string())
        .join(format!("{segment}.jsonl.lease"))
}

fn read_fresh(root: &Path, session: SessionId, segment: SegmentId) -> Vec<Value> {
    FsStore::open(root).unwrap().read(session, segment).unwrap()
}

#[track_caller]
fn assert_locked_by<T: std::fmt::Debug>(result: annals::Result<T>, holder: &LeaseHolder) {
    match result {
        Err(Error::Locked {
            holder: Some(named),
            waited,
            ..
        }) => {
            assert_eq!(&named, holder);
            assert!(waited >= QUICK, "gave up after {waited:?}");
        }
        other => panic!("expected Locked naming {holder:?}, got {other:?}"),
    }
}

#[test]
fn another_store_waits_its_lock_wait_then_is_told_who_holds_the_lease_and_writes_nothing() {
    let t = TempStore::new();
    let (session, segment) = seeded(&t, 2);
    let lease = t
        .store()
        .lease(session, segment, &LeaseOptions::default())
        .unwrap();
    assert!(record_path(&t, session, segment).is_file());
    let other = t.open_another_with(quick(Durability::Buffered));
    let holder = lease.holder().clone();

    assert_locked_by(other.append(session, segment, &entry(9)), &holder);
    assert_locked_by(
        other.append_if(
            session,
            segment,
            Tip {
                count: 2,
                generation: 0,
            },
            &[],
        ),
        &holder,
    );
    assert_locked_by(other.truncate(session, segment, 1), &holder);
    assert_locked_by(other.fork(session, segment, 1, SegmentId::new()), &holder);
    assert_locked_by(other.repair(session, segment, false), &holder);
    assert_locked_by(other.repair(session, segment, true), &holder);
    // This store's own repair is refused at once: waiting would only hold up its lease.
    assert!(matches!(
        t.store().repair(session, segment, false),
        Err(Error::Locked {
            holder: Some(_),
            ..
        })
    ));
    assert_locked_by(
        other.lease(session, segment, &LeaseOptions::default().wait(QUICK)),
        &holder,
    );
    // Readers and the trace (a file of its own) are not held up.
    assert_eq!(other.tip(session, segment).unwrap().count, 2);
    assert_eq!(other.read::<Value>(session, segment).unwrap().len(), 2);
    assert!(other.verify(session, segment).unwrap().is_clean());
    other
        .append_trace(session, segment, &serde_json::json!({"event": "x"}))
        .unwrap();

    lease.append(&entry(2)).unwrap();
    // Another store's tip sees the lease's append (read, not cached).
    assert_eq!(other.tip(session, segment).unwrap().count, 3);
    lease.release().unwrap();
    assert!(!record_path(&t, session, segment).exists());
    assert_eq!(other.append(session, segment, &entry(3)).unwrap().count, 4);
    assert_eq!(
        read_fresh(t.root(), session, segment),
        (0..4).map(entry).collect::<Vec<_>>()
    );
}

#[test]
fn a_truncating_lease_keeps_holding_the_new_file() {
    let t = TempStore::new();
    let (session, segment) = seeded(&t, 4);
    let lease = t
        .store()
        .lease(session, segment, &LeaseOptions::default())
        .unwrap();
    assert_eq!(
        lease.truncate(2).unwrap(),
        Tip {
            count: 2,
            generation: 1
        }
    );
    let other = t.open_another_with(quick(Durability::Buffered));
    assert_locked_by(other.append(session, segment, &entry(9)), lease.holder());
    lease.append(&entry(2)).unwrap();
    drop(lease);
    other.append(session, segment, &entry(3)).unwrap();
    assert_eq!(
        read_fresh(t.root(), session, segment),
        (0..4).map(entry).collect::<Vec<_>>()
    );
}

#[test]
fn a_holder_record_whose_holder_is_gone_is_not_believed() {
    let t = TempStore::new();
    let (session, segment) = seeded(&t, 1);
    // What a holder killed with SIGKILL leaves: the record, and no lock on it.
    let dead = LeaseHolder {
        pid: 999_999,
        host: "elsewhere".into(),
        program: "crashed-worker".into(),
        since_ms: 1,
    };
    let record = record_path(&t, session, segment);
    std::fs::write(&record, serde_json::to_string(&dead).unwrap()).unwrap();

    let other = t.open_another_with(quick(Durability::Buffered));
    assert_eq!(other.append(session, segment, &entry(1)).unwrap().count, 2);
    let lease = other
        .lease(session, segment, &LeaseOptions::default().wait(QUICK))
        .unwrap();
    let now: LeaseHolder =
        serde_json::from_str(std::fs::read_to_string(&record).unwrap().trim()).unwrap();
    assert_eq!(&now, lease.holder());
    assert_eq!(now.pid, std::process::id());
    drop(lease);
}

/// The point of a lease: after the takeover, an append is the one write (no lock, no stat).
#[test]
fn an_append_through_a_lease_is_one_write_and_a_sync_one_fdatasync() {
    for durability in [Durability::Buffered, Durability::Sync] {
        let t = TempStore::new();
        let (session, segment) = seeded(&t, 1);
        let counts = Arc::new(CountCalls::default());
        let store = FsStore::open_with_faults(t.root(), quick(durability), counts.clone()).unwrap();
        let lease = store
            .lease(session, segment, &LeaseOptions::default())
            .unwrap();
        let before = tally(&counts);
        lease.append(&entry(1)).unwrap();
        lease.append_batch(&[entry(2), entry(3)]).unwrap();
        let syncs = if durability == Durability::Sync { 2 } else { 0 };
        let mut want = vec![(Op::Append, 2)];
        if syncs > 0 {
            want.push((Op::SyncData, syncs));
        }
        assert_eq!(since(&counts, &before), want, "{durability:?}");
        let before = tally(&counts);
        lease.sync().unwrap();
        // The session's directory and `blobs/` are looked up for a pack to make durable first
        // (this session has none).
        assert_eq!(
            since(&counts, &before),
            [(Op::OpenDir, 2), (Op::SyncData, 1)]
        );
        assert_eq!(lease.tip().count, 4);
    }
}

fn tally(counts: &CountCalls) -> Vec<u64> {
    Op::ALL.iter().map(|&op| counts.count(op)).collect()
}

/// The calls made since `before`, by kind, in `Op::ALL`'s order.
fn since(counts: &CountCalls, before: &[u64]) -> Vec<(Op, u64)> {
    Op::ALL
        .iter()
        .zip(before)
        .map(|(&op, &was)| (op, counts.count(op) - was))
        .filter(|(_, n)| *n > 0)
        .collect()
}

#[test]
fn a_short_write_of_a_batch_through_a_lease_is_undone_without_cutting_the_file_in_place() {
    let t = TempStore::new();
    let (session, segment) = seeded(&t, 2);
    let first_line = {
        let mut line = Vec::new();
        annals::codec::encode_entry(
            &annals::codec::Frame::v1(2),
            &serde_json::to_string(&entry(2)).unwrap(),
            &mut line,
        )
        .unwrap();
        line.len()
    };
    // The write stops after the first line and a bit of the second: readers could have seen
    // the first line, so it must not be cut in place.
    let plan = FailNth::new(Op::Append, 0, Fault::ShortWrite(first_line + 5)).only(|p: &Path| {
        p.extension().is_some_and(|e| e == "jsonl") && !p.to_string_lossy().contains(".trace.")
    });
    let store =
        FsStore::open_with_faults(t.root(), quick(Durability::Buffered), Arc::new(plan)).unwrap();
    let lease = store
        .lease(session, segment, &LeaseOptions::default())
        .unwrap();
    let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
    let path = store.segment_path(session, segment);
    let before = inode(&path);
    let err = lease.append_batch(&[entry(2), entry(3)]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Io {
                op: "append to",
                ..
            }
        ),
        "{err:?}"
    );
    assert_ne!(
        inode(&path),
        before,
        "rolled back by a rewrite, not in place"
    );
    assert_eq!(lease.tip().count, 2);
    assert_eq!(
        read_fresh(t.root(), session, segment),
        (0..2).map(entry).collect::<Vec<_>>()
    );
    // The lease still holds the (new) file and appends on.
    let other = t.open_another_with(quick(Durability::Buffered));
    assert_locked_by(other.append(session, segment, &entry(9)), lease.holder());
    lease.append_batch(&[entry(2), entry(3)]).unwrap();
    drop(lease);
    let report = other.verify(session, segment).unwrap();
    assert!(
        report.is_clean() && report.torn_tail.is_none(),
        "{report:?}"
    );
    assert_eq!(
        read_fresh(t.root(), session, segment),
        (0..4).map(entry).collect::<Vec<_>>()
    );
}

#[test]
fn a_failed_fsync_under_a_lease_is_sticky_for_the_lease_and_the_store() {
    for (durability, via_sync) in [(Durability::Sync, false), (Durability::Buffered, true)] {
        let t = TempStore::new();
        let (session, segment) = seeded(&t, 1);
        let plan = FailNth::new(Op::SyncData, 0, Fault::Eio)
            .only(|p: &Path| p.extension().is_some_and(|e| e == "jsonl"));
        let store = FsStore::open_with_faults(t.root(), quick(durability), Arc::new(plan)).unwrap();
        let lease = store
            .lease(session, segment, &LeaseOptions::default())
            .unwrap();
        let failed = if via_sync {
            lease.append(&entry(1)).unwrap();
            lease.sync().unwrap_err()
        } else {
            lease.append(&entry(1)).unwrap_err()
        };
        assert!(
            matches!(failed, Error::Io { op: "fsync", .. }),
            "{failed:?}"
        );
        for again in [
            lease.append(&entry(2)).map(|_| ()),
            lease.sync(),
            lease.truncate(1).map(|_| ()),
        ] {
            assert!(
                matches!(again, Err(Error::Poisoned { op: "fsync", .. })),
                "{durability:?}: {again:?}"
            );
        }
        drop(lease);
        assert!(matches!(
            store.append(session, segment, &entry(2)),
            Err(Error::Poisoned { .. })
        ));
        // A new store (the file reopened) writes again.
        FsStore::open(t.root())
            .unwrap()
            .append(session, segment, &entry(9))
            .unwrap();
    }
}
