//! A full disk is reported as what it is: every write the store makes, when the medium runs
//! out of room in the middle of it or before it, fails with `ENOSPC` (`io_kind() ==
//! StorageFull`), never "short write"; what was acknowledged before is all there; nothing is
//! half written (no torn tail, no temporary file, no partial backup); and once space is freed
//! the same store writes again. Through `FullDisk` (a fault plan that stores what fits, then
//! answers `ENOSPC`) at many sizes of free room, and on a real small tmpfs where the tests may
//! mount one.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::Path;
use std::sync::Arc;

use annals::testing::support::{entry, TempStore};
use annals::{
    AttachmentMeta, Durability, Error, FsOptions, FsStore, FullDisk, SegmentId, SessionId, Store,
    StoreExt,
};
use serde_json::{json, Value};

use crate::media::Tmpfs;

fn options(durability: Durability) -> FsOptions {
    FsOptions {
        durability,
        ..FsOptions::default()
    }
}

/// An entry too long for a line, kept as a blob.
fn big(n: u64) -> Value {
    json!({ "i": n, "text": "x".repeat(9000) })
}

fn meta() -> AttachmentMeta {
    AttachmentMeta {
        media_type: "text/plain".into(),
        label: None,
        width: None,
        height: None,
    }
}

/// Every segment of the session with its entries, read strictly by a fresh store; every one
/// verifies clean with no torn tail.
fn state(root: &Path, session: SessionId) -> BTreeMap<SegmentId, Vec<Value>> {
    let store = FsStore::open(root).unwrap();
    let mut out = BTreeMap::new();
    for info in store.list_segments(session).unwrap() {
        assert!(info.damage.is_none(), "{info:?}");
        let report = store.verify(session, info.segment).unwrap();
        assert!(
            report.is_clean() && report.torn_tail.is_none(),
            "{}: {report:?}",
            info.segment
        );
        out.insert(info.segment, store.read(session, info.segment).unwrap());
    }
    out
}

/// Names in the session's directory tree that only an unfinished write leaves.
fn leftovers(root: &Path, session: SessionId) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.join(session.to_string())];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else if name.ends_with(".tmp") || name.contains(".dropped-") {
                out.push(name);
            }
        }
    }
    out
}

fn says_disk_full(e: &Error, what: &str) {
    assert_eq!(e.io_kind(), Some(ErrorKind::StorageFull), "{what}: {e:?}");
    let shown = e.to_string();
    assert!(shown.contains("No space left on device"), "{what}: {shown}");
    assert!(!shown.contains("short write"), "{what}: {shown}");
}

type Write = fn(&dyn Store, SessionId, SegmentId) -> annals::Result<()>;

/// Every kind of write the store makes, on a session with one segment of three entries.
const WRITES: [(&str, Write); 10] = [
    ("append", |s, session, segment| {
        s.append(session, segment, &entry(3)).map(|_| ())
    }),
    ("append a batch", |s, session, segment| {
        let batch: Vec<Value> = (3..40).map(entry).collect();
        s.append_batch(session, segment, &batch).map(|_| ())
    }),
    ("append a blob", |s, session, segment| {
        s.append(session, segment, &big(3)).map(|_| ())
    }),
    ("create", |s, session, _| {
        s.create(session, SegmentId::new(), &[entry(0), entry(1)])
            .map(|_| ())
    }),
    ("create with a blob", |s, session, _| {
        s.create(session, SegmentId::new(), &[big(0)]).map(|_| ())
    }),
    ("truncate", |s, session, segment| {
        s.truncate(session, segment, 1).map(|_| ())
    }),
    ("fork", |s, session, segment| {
        s.fork(session, segment, 2, SegmentId::new()).map(|_| ())
    }),
    ("trace", |s, session, segment| {
        s.append_trace(session, segment, &json!({"event": "tool", "ms": 12}))
    }),
    ("attach", |s, session, _| {
        s.put_attachment(session, &[7u8; 5000], &meta()).map(|_| ())
    }),
    ("create in a new session", |s, _, _| {
        s.create(SessionId::new(), SegmentId::new(), &[entry(0)])
            .map(|_| ())
    }),
];

/// Free room at the moment the write starts: none, some bytes of a line, more than a line but
/// less than a blob, and so on.
const ROOMS: [u64; 8] = [0, 1, 40, 90, 300, 1500, 6000, 12_000];

#[test]
fn every_write_on_a_full_disk_fails_with_enospc_keeps_what_was_acknowledged_and_works_once_freed() {
    let mut failed = 0;
    for durability in [Durability::Buffered, Durability::Sync] {
        for (what, write) in WRITES {
            for room in ROOMS {
                let t = TempStore::with_options(options(durability));
                let (session, segment) = (SessionId::new(), SegmentId::new());
                t.create(session, segment, &[entry(0), entry(1), entry(2)])
                    .unwrap();
                let before = state(t.root(), session);
                let disk = Arc::new(FullDisk::new(room));
                let store =
                    FsStore::open_with_faults(t.root(), options(durability), disk.clone()).unwrap();
                let case = format!("{what} with {room} bytes free ({durability:?})");
                match write(&store, session, segment) {
                    Ok(()) => continue, // it fitted
                    Err(e) => says_disk_full(&e, &case),
                }
                failed += 1;
                assert_eq!(
                    state(t.root(), session),
                    before,
                    "{case}: changed the store"
                );
                assert_eq!(leftovers(t.root(), session), [] as [String; 0], "{case}");
                // A new session's directory may stay (as a crash would leave it), empty.
                for other in store.list_sessions().unwrap() {
                    if other != session {
                        assert!(store.list_segments(other).unwrap().is_empty(), "{case}");
                    }
                }

                // Space comes back: the same store writes again, and it all reads back.
                disk.free(1 << 30);
                write(&store, session, segment).unwrap_or_else(|e| panic!("{case}, freed: {e}"));
                let after = state(t.root(), session);
                assert!(after.len() >= before.len(), "{case}");
            }
        }
    }
    // Every kind of write met a full disk at least at 0 bytes free, in both modes.
    assert!(failed >= 2 * WRITES.len(), "{failed}");
}

#[test]
fn a_repair_on_a_full_disk_fails_with_enospc_and_leaves_the_log_and_no_partial_backup() {
    for room in ROOMS {
        let t = TempStore::new();
        let (session, segment) = (SessionId::new(), SegmentId::new());
        t.create(session, segment, &(0..20).map(entry).collect::<Vec<_>>())
            .unwrap();
        // Damage in the middle: repair keeps the bytes it cuts aside, then rewrites.
        let path = t.segment_path(session, segment);
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x20;
        std::fs::write(&path, &bytes).unwrap();

        let disk = Arc::new(FullDisk::new(room));
        let store =
            FsStore::open_with_faults(t.root(), FsOptions::default(), disk.clone()).unwrap();
        let case = format!("repair with {room} bytes free");
        let Err(e) = store.repair(session, segment, false) else {
            continue;
        };
        says_disk_full(&e, &case);
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "{case}");
        assert_eq!(leftovers(t.root(), session), [] as [String; 0], "{case}");
        disk.free(1 << 30);
        let repaired = store.repair(session, segment, false).unwrap();
        assert!(repaired.backup.is_some(), "{case}");
        assert!(store.verify(session, segment).unwrap().is_clean(), "{case}");
    }
}

/// Appends until the disk is full, in every way there is to append; returns what was
/// acknowledged, per segment.
fn fill(
    store: &FsStore,
    session: SessionId,
    segment: SegmentId,
    model: &mut BTreeMap<SegmentId, Vec<Value>>,
) -> Error {
    for i in 0u64.. {
        let values: Vec<Value> = match i % 7 {
            0 => vec![big(i)],
            1 | 4 => (0..5).map(|j| entry(i * 10 + j)).collect(),
            _ => vec![json!({"i": i, "pad": "p".repeat(usize::try_from(i % 13 * 150).unwrap())})],
        };
        match store.append_batch(session, segment, &values) {
            Ok(_) => model.get_mut(&segment).unwrap().extend(values),
            Err(e) => return e,
        }
    }
    unreachable!()
}

#[test]
fn a_real_full_tmpfs_reports_no_space_keeps_every_acknowledged_entry_and_takes_writes_once_freed() {
    for durability in [Durability::Buffered, Durability::Sync] {
        let Some(disk) = Tmpfs::mount("1m", "full_disk::a_real_full_tmpfs") else {
            return;
        };
        let root = disk.path().join("store");
        let ballast = disk.path().join("ballast");
        std::fs::write(&ballast, vec![0u8; 256 << 10]).unwrap();
        let store = FsStore::open_with(&root, options(durability)).unwrap();
        let (session, segment) = (SessionId::new(), SegmentId::new());
        store.create(session, segment, &[entry(0)]).unwrap();
        let mut model = BTreeMap::from([(segment, vec![entry(0)])]);

        let e = fill(&store, session, segment, &mut model);
        says_disk_full(&e, "the append that filled the disk");
        assert!(
            model[&segment].len() > 10,
            "{durability:?}: filled too soon"
        );

        // Every other write on the full disk: it fits (a small one may, in the last page), or
        // it says the disk is full.
        for (what, write) in WRITES {
            match write(&store, session, segment) {
                Ok(()) => model = state(&root, session),
                Err(e) => {
                    says_disk_full(&e, what);
                    assert_eq!(state(&root, session), model, "{what} changed the store");
                }
            }
        }
        assert_eq!(leftovers(&root, session), [] as [String; 0]);
        assert_eq!(model[&segment][0], entry(0));

        // What was acknowledged is there for a new process; free space and write again.
        drop(store);
        let again = FsStore::open_with(&root, options(durability)).unwrap();
        assert_eq!(state(&root, session), model);
        std::fs::remove_file(&ballast).unwrap();
        let tip = again.append(session, segment, &entry(99)).unwrap();
        assert_eq!(tip.count, model[&segment].len() as u64 + 1);
        again.append(session, segment, &big(99)).unwrap();
        assert!(again.verify(session, segment).unwrap().is_clean());
    }
}
