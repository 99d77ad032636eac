//! Writer leases: a lease appends, syncs, truncates and forks like the store, other writers
//! wait for it or are refused naming it, readers are never held up, and the detector sees
//! everything a lease wrote. A backend without leases must say so with
//! [`Error::Unsupported`] and change nothing.

use std::sync::{mpsc, Arc};
use std::time::Duration;

use super::check::*;
use crate::{
    Error, Lease, LeaseOptions, ReplayOptions, SegmentId, SegmentWriter, SessionId, Store, StoreExt,
};

/// Takes a lease, or checks that the backend refuses leases cleanly (`None`: the scenario has
/// nothing more to check).
#[track_caller]
fn take(
    store: &dyn Store,
    session: SessionId,
    segment: SegmentId,
    options: &LeaseOptions,
) -> Option<Box<dyn Lease>> {
    let before = snapshot(store, session, segment);
    match store.lease(session, segment, options) {
        Ok(lease) => Some(lease),
        Err(Error::Unsupported { .. }) => {
            assert_eq!(
                snapshot(store, session, segment),
                before,
                "a refused lease changed the segment"
            );
            None
        }
        Err(e) => panic!("lease of {session}/{segment}: {e} ({e:?})"),
    }
}

/// A lease appends as the next sequence numbers (one entry or a batch), knows the tip without
/// asking, syncs, truncates and forks; readers read throughout; after it is released a
/// `SegmentWriter` opened before it sees its appends as another writer's, and plain appends
/// continue the sequence.
pub fn a_lease_appends_truncates_and_forks_like_the_store_and_readers_read_throughout(
    store: &dyn Store,
) {
    let (session, segment) = new_segment(store, 2);
    let mut before_lease = ok(SegmentWriter::open(store, session, segment));
    let Some(lease) = take(store, session, segment, &LeaseOptions::default()) else {
        return;
    };
    assert_eq!((lease.session(), lease.segment()), (session, segment));
    assert_eq!(lease.holder().pid, std::process::id());
    assert_eq!(lease.tip(), tip(2, 0));

    assert_eq!(ok(lease.append_raw(&raw(&entry(2)))), tip(3, 0));
    let batch: Vec<_> = (3..6).map(|i| raw(&entry(i))).collect();
    assert_eq!(ok(lease.append_batch_raw(&batch)), tip(6, 0));
    assert_eq!(ok(lease.append_batch_raw(&[])), tip(6, 0));
    assert_eq!(ok(lease.append(&entry(6))), tip(7, 0));
    ok(lease.sync());
    // Readers are not held up, and see what the lease wrote.
    assert_eq!(lease.tip(), ok(store.tip(session, segment)));
    assert_eq!(values(store, session, segment), entries(0..7));
    assert_eq!(seqs(store, session, segment), (0..7).collect::<Vec<_>>());
    assert!(ok(store.verify(session, segment)).is_clean());
    let (_, report) = replayed(store, session, segment, &ReplayOptions::strict());
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(info(store, session, segment).tip, tip(7, 0));

    assert_eq!(ok(lease.truncate(5)), tip(5, 1));
    assert_eq!(ok(lease.append(&entry(5))), tip(6, 1));
    let fork = SegmentId::new();
    assert_eq!(ok(lease.fork(3, fork)), tip(3, 0));
    assert_eq!(values(store, session, fork), entries(0..3));
    // The fork is not leased: anyone appends to it.
    ok(store.append(session, fork, &entry(3)));
    assert_err!(
        lease.truncate(9),
        Error::BeyondEnd { segment: g, requested: 9, count: 6 } if g == segment
    );
    assert_eq!(lease.tip(), tip(6, 1));
    ok(lease.release());

    assert_eq!(values(store, session, segment), entries(0..6));
    assert_err!(
        before_lease.append(&entry(99)),
        Error::ConcurrentWriter { expected, found, .. } if expected == tip(2, 0) && found == tip(6, 1)
    );
    assert_eq!(ok(store.append(session, segment, &entry(6))), tip(7, 1));
    assert_eq!(seqs(store, session, segment), (0..7).collect::<Vec<_>>());
}

/// While a lease lives, another lease on the segment is refused (after its wait) with
/// `Locked` naming the holder: this process, its host and program, since when. Dropping the
/// lease gives the segment back; a missing segment cannot be leased.
pub fn a_second_lease_is_refused_with_locked_naming_the_holder_until_the_first_is_dropped(
    store: &dyn Store,
) {
    let (session, segment) = new_segment(store, 1);
    let Some(first) = take(store, session, segment, &LeaseOptions::default()) else {
        return;
    };
    let holder = first.holder().clone();
    assert_eq!(holder.pid, std::process::id());
    assert!(
        !holder.program.is_empty() && !holder.host.is_empty(),
        "{holder:?}"
    );
    assert!(holder.since_ms > 0);
    let quick = LeaseOptions::default().wait(Duration::from_millis(30));
    let refused = store.lease(session, segment, &quick);
    match &refused {
        Err(Error::Locked {
            session: s,
            segment: g,
            holder: Some(named),
            waited,
        }) => {
            assert_eq!((*s, *g), (session, segment));
            assert_eq!(named, &holder);
            assert!(
                *waited >= Duration::from_millis(30),
                "gave up early: {waited:?}"
            );
            let message = refused.as_ref().unwrap_err().to_string();
            assert!(
                message.contains(&holder.pid.to_string()) && message.contains(&holder.program),
                "the message names the holder: {message}"
            );
        }
        other => panic!("second lease: expected Locked naming {holder:?}, got {other:?}"),
    }
    // A segment that is not held can be leased meanwhile.
    let other = ok(store.create::<serde_json::Value>(session, SegmentId::new(), &[]));
    assert_eq!(other, tip(0, 0));
    assert_eq!(ok(first.append(&entry(1))), tip(2, 0));
    drop(first);
    let second = take(store, session, segment, &quick).expect("leases are supported");
    assert_eq!(second.tip(), tip(2, 0));
    assert_eq!(ok(second.append(&entry(2))), tip(3, 0));
    drop(second);
    assert_eq!(values(store, session, segment), entries(0..3));
    let missing = SegmentId::new();
    assert_segment_not_found(
        "lease",
        store.lease(session, missing, &quick).map(|_| ()),
        session,
        missing,
    );
}

/// A writer without the lease (a plain append, and `append_if` with the tip it saw) waits while
/// the lease lives and goes on once it is released: its entry comes after everything the lease
/// wrote, and the stale tip is refused.
pub fn a_writer_without_the_lease_waits_for_it_and_its_detector_sees_the_lease(
    store: Arc<dyn Store>,
) {
    let (session, segment) = new_segment(&*store, 1);
    let Some(lease) = take(&*store, session, segment, &LeaseOptions::default()) else {
        return;
    };
    let seen = lease.tip();
    let (ready, started) = mpsc::channel();
    let waiter = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || {
            ready.send(()).unwrap();
            let plain = store.append(session, segment, &serde_json::json!("waiter"));
            let stale = store.append_if(session, segment, seen, &[raw(&entry(99))]);
            (plain, stale)
        })
    };
    started.recv().unwrap();
    // Give the waiter time to find the segment held (it waits for seconds by default).
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(ok(lease.append(&entry(1))), tip(2, 0));
    assert_eq!(ok(lease.append_batch(&entries(2..4))), tip(4, 0));
    ok(lease.release());
    let (plain, stale) = waiter.join().unwrap();
    assert_eq!(
        ok(plain),
        tip(5, 0),
        "the waiter appends after the lease's entries"
    );
    assert!(
        matches!(&stale, Err(Error::ConcurrentWriter { expected, found, .. })
            if *expected == seen && *found == tip(5, 0)),
        "append_if with the tip from before the lease: {stale:?}"
    );
    let mut want = entries(0..4);
    want.push(serde_json::json!("waiter"));
    assert_eq!(values(&*store, session, segment), want);
}

/// Threads share one lease (`Arc<dyn Lease>`): their appends get unique, gapless sequence
/// numbers and each thread's entries stay in its own order.
pub fn threads_sharing_a_lease_get_unique_consecutive_sequence_numbers(store: Arc<dyn Store>) {
    const THREADS: u64 = 4;
    const EACH: u64 = 50;
    let (session, segment) = new_segment(&*store, 0);
    let Some(lease) = take(&*store, session, segment, &LeaseOptions::default()) else {
        return;
    };
    let lease: Arc<dyn Lease> = Arc::from(lease);
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let lease = Arc::clone(&lease);
            std::thread::spawn(move || {
                for i in 0..EACH {
                    let entry = serde_json::json!({ "t": t, "i": i });
                    ok(lease.append_raw(&raw(&entry)));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(lease.tip(), tip(THREADS * EACH, 0));
    ok(lease.sync());
    drop(lease);
    let all = values(&*store, session, segment);
    assert_eq!(
        seqs(&*store, session, segment),
        (0..THREADS * EACH).collect::<Vec<_>>()
    );
    for t in 0..THREADS {
        let mine: Vec<u64> = all
            .iter()
            .filter(|v| v["t"] == t)
            .map(|v| v["i"].as_u64().unwrap())
            .collect();
        assert_eq!(mine, (0..EACH).collect::<Vec<_>>(), "thread {t}'s entries");
    }
}
