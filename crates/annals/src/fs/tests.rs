//! Tests of the store as a whole over its seam: the conformance suite on the simulated medium
//! (so nothing can reach a disk around the seam), the cost of the append path in calls, and
//! verify's fallback when the medium cannot map.

use std::path::PathBuf;
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
fn a_buffered_append_is_one_lock_one_stat_one_write_and_one_unlock() {
    let dir = tempfile::tempdir().unwrap();
    let calls = Arc::new(Calls::default());
    let store = FsStore::open_on(
        FaultFs::new(OsFs, calls.clone()),
        dir.path(),
        FsOptions::default(),
    )
    .unwrap();
    let (session, segment) = (SessionId::new(), SegmentId::new());
    store
        .create::<serde_json::Value>(session, segment, &[])
        .unwrap();
    store
        .append(session, segment, &serde_json::json!(0))
        .unwrap();
    calls.take();
    for n in 1..4 {
        store
            .append(session, segment, &serde_json::json!(n))
            .unwrap();
        assert_eq!(
            calls.take(),
            // The lock is tried, not waited for (a lease may hold the file: `lease.rs`).
            [Op::TryLock, Op::SizeAndLinks, Op::Append, Op::Unlock],
            "append {n}"
        );
    }
    store.sync(session, segment).unwrap();
    assert_eq!(calls.take(), [Op::SyncData]);
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
