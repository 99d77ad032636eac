//! Threads: one store shared by several threads, replays racing appends and truncates, and
//! writers racing on one segment.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::{json, Value};

use super::check::*;
use crate::{Error, ReplayOptions, SegmentId, SegmentWriter, SessionId, Store, StoreExt};

/// While one thread appends and another truncates, every replay on a third sees a whole
/// segment: strict, clean, sequence numbers 0..n without a gap.
pub fn replays_during_appends_and_truncates_always_see_a_whole_segment(store: &dyn Store) {
    const APPENDS: u64 = 150;
    const TRUNCATES: u64 = 15;
    const READS: u64 = 60;
    let (session, segment) = new_segment(store, 10);
    std::thread::scope(|scope| {
        let appender = scope.spawn(|| {
            for i in 0..APPENDS {
                ok(store.append(session, segment, &entry(i)));
            }
        });
        let truncater = scope.spawn(|| {
            for _ in 0..TRUNCATES {
                let count = ok(store.tip(session, segment)).count;
                ok(store.truncate(session, segment, count / 2));
                std::thread::yield_now();
            }
        });
        let reader = scope.spawn(|| {
            for _ in 0..READS {
                let (delivered, report) =
                    replayed(store, session, segment, &ReplayOptions::strict());
                let n = delivered.len() as u64;
                assert!(report.is_clean(), "{report:?}");
                assert_eq!(report.entries, n);
                let seen: Vec<u64> = delivered.iter().map(|(seq, _)| *seq).collect();
                assert_eq!(seen, (0..n).collect::<Vec<_>>());
            }
        });
        for handle in [appender, truncater, reader] {
            handle
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p));
        }
    });
    let final_tip = ok(store.tip(session, segment));
    assert_eq!(final_tip.generation, TRUNCATES);
    assert_eq!(
        seqs(store, session, segment),
        (0..final_tip.count).collect::<Vec<_>>()
    );
}

/// One `&dyn Store` serves several threads at once: each creates and fills its own segment
/// while all of them append to a shared one and another thread replays it. Every replay sees
/// a clean prefix, and at the end every entry is there exactly once.
pub fn a_borrowed_store_serves_several_threads_at_once(store: &dyn Store) {
    const THREADS: u64 = 4;
    const EACH: u64 = 20;
    const READS: usize = 40;
    let session = SessionId::new();
    let shared = SegmentId::new();
    ok(store.create::<Value>(session, shared, &[]));
    let own = std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut last = 0;
            for _ in 0..READS {
                let seen = seqs(store, session, shared);
                let n = seen.len() as u64;
                assert_eq!(seen, (0..n).collect::<Vec<_>>(), "replay during appends");
                assert!(n >= last, "the segment shrank from {last} to {n}");
                last = n;
            }
        });
        let writers: Vec<_> = (0..THREADS)
            .map(|t| {
                scope.spawn(move || {
                    let own = SegmentId::new();
                    ok(store.create::<Value>(session, own, &[]));
                    for i in 0..EACH {
                        ok(store.append(session, own, &json!({ "t": t, "i": i })));
                        ok(store.append(session, shared, &json!({ "t": t, "i": i })));
                        assert_eq!(ok(store.tip(session, own)).count, i + 1);
                    }
                    (t, own)
                })
            })
            .collect();
        let own: Vec<(u64, SegmentId)> = writers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect();
        reader
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        own
    });
    for (t, segment) in &own {
        let expected: Vec<Value> = (0..EACH).map(|i| json!({ "t": t, "i": i })).collect();
        assert_eq!(values(store, session, *segment), expected);
    }
    let all: BTreeSet<String> = ok(store.read_raw(session, shared))
        .iter()
        .map(|e| e.as_str().to_owned())
        .collect();
    assert_eq!(
        all.len() as u64,
        THREADS * EACH,
        "lost or duplicated entries"
    );
    assert_eq!(seqs(store, session, shared).len() as u64, THREADS * EACH);
    assert_eq!(ok(store.list_segments(session)).len() as u64, THREADS + 1);
}

/// Threads holding clones of one `Arc<dyn Store>` append to one segment at once: every entry
/// lands exactly once, sequence numbers run 0..n without gap or repeat, each thread's entries
/// keep its order, and the tips the appends returned are all different.
pub fn concurrent_appends_from_many_threads_get_unique_consecutive_sequence_numbers(
    store: Arc<dyn Store>,
) {
    const THREADS: u64 = 8;
    const EACH: u64 = 25;
    let (session, segment) = new_segment(&*store, 0);
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                (0..EACH)
                    .map(|i| ok(store.append(session, segment, &json!({ "t": t, "i": i }))).count)
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let mut counts: Vec<u64> = threads.into_iter().flat_map(join).collect();
    counts.sort_unstable();
    let n = THREADS * EACH;
    assert_eq!(
        counts,
        (1..=n).collect::<Vec<_>>(),
        "two appends returned the same tip"
    );
    assert_eq!(ok(store.tip(session, segment)), tip(n, 0));

    let (delivered, report) = replayed(&*store, session, segment, &ReplayOptions::strict());
    assert_eq!(report.entries, n);
    assert_eq!(
        delivered.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
        (0..n).collect::<Vec<_>>()
    );
    let mut per_thread: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for (_, v) in &delivered {
        per_thread
            .entry(v["t"].as_u64().unwrap())
            .or_default()
            .push(v["i"].as_u64().unwrap());
    }
    assert_eq!(per_thread.len() as u64, THREADS);
    for (t, is) in per_thread {
        assert_eq!(
            is,
            (0..EACH).collect::<Vec<_>>(),
            "entries of thread {t} lost, repeated or reordered"
        );
    }
}

/// Writers on several threads race with `SegmentWriter`s on one segment, resyncing after each
/// conflict: every append that succeeded put its entry exactly at the sequence number its
/// writer expected, so no two writers ever both succeeded on the same tip.
pub fn concurrent_detector_writers_never_both_succeed_on_one_tip(store: Arc<dyn Store>) {
    const WRITERS: u64 = 4;
    const EACH: u64 = 15;
    const MAX_ATTEMPTS: u64 = 100_000;
    let (session, segment) = new_segment(&*store, 0);
    let threads: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let mut writer = ok(SegmentWriter::open(&*store, session, segment));
                let mut landed = Vec::new();
                let mut attempts = 0;
                while (landed.len() as u64) < EACH {
                    attempts += 1;
                    assert!(attempts <= MAX_ATTEMPTS, "writer {w} starved");
                    let at = writer.tip();
                    match writer.append(&json!({ "w": w, "i": landed.len() })) {
                        Ok(new) => {
                            assert_eq!(new, tip(at.count + 1, at.generation));
                            landed.push(at.count);
                        }
                        Err(Error::ConcurrentWriter { expected, .. }) => {
                            assert_eq!(expected, at);
                            ok(writer.resync());
                        }
                        Err(e) => panic!("writer {w}: {e}"),
                    }
                }
                (w, landed)
            })
        })
        .collect();
    let landed: Vec<(u64, Vec<u64>)> = threads.into_iter().map(join).collect();
    let stored = values(&*store, session, segment);
    assert_eq!(stored.len() as u64, WRITERS * EACH);
    for (w, seqs) in landed {
        for (i, seq) in seqs.into_iter().enumerate() {
            assert_eq!(
                stored[usize::try_from(seq).unwrap()],
                json!({ "w": w, "i": i }),
                "writer {w}'s append {i} succeeded expecting seq {seq}, but its entry is not there"
            );
        }
    }
}

/// A `SegmentWriter` over an `Arc<dyn Store>` owns what it needs: it moves into a worker thread,
/// appends there, and still sees another writer's append as a conflict.
pub fn an_owned_writer_moves_to_another_thread_and_keeps_detecting(store: Arc<dyn Store>) {
    let (session, segment) = new_segment(&*store, 1);
    let mut writer = ok(SegmentWriter::open(Arc::clone(&store), session, segment));
    let worker = std::thread::spawn(move || {
        assert_eq!(ok(writer.append(&entry(1))), tip(2, 0));
        writer
    });
    let mut writer = join(worker);
    ok(store.append(session, segment, &entry(2)));
    let worker = std::thread::spawn(move || {
        let conflict = writer.append(&entry(99));
        (writer, conflict)
    });
    let (writer, conflict) = join(worker);
    assert_err!(conflict, Error::ConcurrentWriter { .. });
    assert_eq!(writer.tip(), tip(2, 0));
    assert_eq!(values(&*store, session, segment), entries(0..3));
}
