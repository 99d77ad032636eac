//! Truncate and fork: exactly the prefix asked for, the generation, lineage, and refusals that
//! change nothing.

use serde_json::{json, Value};

use super::check::*;
use crate::{Error, Lineage, ReplayOptions, SegmentId, SegmentWriter, SessionId, Store, StoreExt};

/// Truncate keeps exactly the first `keep` entries (0, some, or all), increments the
/// generation every time, and the next append continues at sequence number `keep`.
pub fn truncate_keeps_the_first_entries_and_bumps_the_generation(store: &dyn Store) {
    let (session, segment) = new_segment(store, 5);
    assert_eq!(ok(store.truncate(session, segment, 3)), tip(3, 1));
    assert_eq!(values(store, session, segment), entries(0..3));
    assert_eq!(ok(store.append(session, segment, &entry(3))), tip(4, 1));
    assert_eq!(seqs(store, session, segment), vec![0, 1, 2, 3]);

    // Keeping everything still rewrites: the generation moves.
    assert_eq!(ok(store.truncate(session, segment, 4)), tip(4, 2));
    assert_eq!(values(store, session, segment), entries(0..4));

    assert_eq!(ok(store.truncate(session, segment, 0)), tip(0, 3));
    assert!(values(store, session, segment).is_empty());
    assert_eq!(ok(store.truncate(session, segment, 0)), tip(0, 4));
    assert_eq!(ok(store.append(session, segment, &entry(9))), tip(1, 4));
    let (delivered, _) = replayed(store, session, segment, &ReplayOptions::strict());
    assert_eq!(delivered, vec![(0, entry(9))]);
    assert_eq!(info(store, session, segment).tip, tip(1, 4));
}

/// Truncating to more entries than there are fails with `BeyondEnd` naming the segment, what
/// was asked and what there is, and changes nothing (not even the generation).
pub fn truncate_beyond_the_end_is_refused_and_changes_nothing(store: &dyn Store) {
    let (session, segment) = new_segment(store, 4);
    ok(store.truncate(session, segment, 3));
    let before = snapshot(store, session, segment);
    for keep in [4, 5, u64::MAX] {
        assert_err!(
            store.truncate(session, segment, keep),
            Error::BeyondEnd { segment: g, requested, count: 3 } if g == segment && requested == keep
        );
        assert_eq!(snapshot(store, session, segment), before);
    }
    // A writer that held the tip from before is not disturbed.
    assert_eq!(
        ok(store.append_if(session, segment, before.tip, &[raw(&entry(3))])),
        tip(4, 1)
    );
}

/// A fork at 0, in the middle or at the end holds exactly that prefix with the same sequence
/// numbers, starts at generation 0, records its lineage (also for a fork of a fork), and then
/// lives apart from its source, which the fork did not touch.
pub fn fork_copies_the_prefix_and_records_lineage(store: &dyn Store) {
    let (session, source) = new_segment(store, 6);
    ok(store.truncate(session, source, 5));
    let source_before = snapshot(store, session, source);
    assert_eq!(source_before.fork, None);
    let mut writer = ok(SegmentWriter::open(store, session, source));

    let mut forks = Vec::new();
    for at in [0, 3, 5] {
        let into = SegmentId::new();
        assert_eq!(ok(store.fork(session, source, at, into)), tip(at, 0));
        assert_eq!(values(store, session, into), entries(0..at));
        assert_eq!(seqs(store, session, into), (0..at).collect::<Vec<_>>());
        assert_eq!(ok(store.tip(session, into)), tip(at, 0));
        assert_eq!(
            info(store, session, into).fork,
            Some(Lineage {
                segment: source,
                at
            })
        );
        assert!(
            ok(store.read_trace::<Value>(session, into)).is_empty(),
            "a fork starts without a trace"
        );
        assert_eq!(snapshot(store, session, source), source_before);
        forks.push((at, into));
    }
    // The source's writer did not notice any of that.
    assert_eq!(ok(writer.append(&entry(5))), tip(6, 1));

    let (at, middle) = forks[1];
    ok(store.append(session, middle, &json!("fork only")));
    assert_eq!(values(store, session, source), entries(0..6));
    let mut expected = entries(0..at);
    expected.push(json!("fork only"));
    assert_eq!(values(store, session, middle), expected);

    let grandchild = SegmentId::new();
    assert_eq!(ok(store.fork(session, middle, 4, grandchild)), tip(4, 0));
    assert_eq!(values(store, session, grandchild), expected);
    assert_eq!(
        info(store, session, grandchild).fork,
        Some(Lineage {
            segment: middle,
            at: 4
        })
    );
    assert_eq!(ok(store.find_session(grandchild)), Some(session));
}

/// Forking past the end fails with `BeyondEnd` naming the source, creates nothing and leaves
/// the source alone.
pub fn fork_beyond_the_end_is_refused_and_creates_nothing(store: &dyn Store) {
    let (session, source) = new_segment(store, 5);
    let before = snapshot(store, session, source);
    for at in [6, u64::MAX] {
        let into = SegmentId::new();
        assert_err!(
            store.fork(session, source, at, into),
            Error::BeyondEnd { segment: g, requested, count: 5 } if g == source && requested == at
        );
        assert!(!ok(store.exists(session, into)));
        assert_eq!(ok(store.find_session(into)), None);
    }
    assert_eq!(listed_segments(store, session), vec![source]);
    assert_eq!(snapshot(store, session, source), before);
}

/// Forking into a segment that exists (another one, or the source itself) fails with
/// `SegmentExists` naming it, and changes neither segment.
pub fn fork_into_an_existing_segment_is_refused_and_changes_nothing(store: &dyn Store) {
    let (session, source) = new_segment(store, 4);
    let target = SegmentId::new();
    ok(store.create(session, target, &[json!("target")]));
    let source_before = snapshot(store, session, source);
    let target_before = snapshot(store, session, target);
    for (into, at) in [(target, 2), (target, 0), (source, 1), (source, 4)] {
        assert_err!(
            store.fork(session, source, at, into),
            Error::SegmentExists { session: s, segment: g } if s == session && g == into
        );
        assert_eq!(snapshot(store, session, source), source_before);
        assert_eq!(snapshot(store, session, target), target_before);
    }
}

/// A segment of a few hundred kilobytes (past any one read buffer) truncates and forks at
/// exactly the entry asked for, wherever it falls, and replays whole.
pub fn large_segments_are_cut_and_copied_at_exactly_the_right_entry(store: &dyn Store) {
    const N: u64 = 400;
    let big = |i: u64| {
        // Sizes vary so that entry boundaries fall anywhere relative to a buffer.
        let pad = "é\\\"x".repeat(usize::try_from(i % 7).unwrap() * 40 + 100);
        json!({ "i": i, "pad": pad })
    };
    let all: Vec<Value> = (0..N).map(big).collect();
    let (session, segment) = (SessionId::new(), SegmentId::new());
    ok(store.create(session, segment, &all[..150]));
    ok(store.append_batch(session, segment, &all[150..]));
    assert_eq!(values(store, session, segment), all);
    assert!(info(store, session, segment).bytes > 256 * 1024);

    for at in [399u64, 333, 77, 0] {
        let into = SegmentId::new();
        assert_eq!(ok(store.fork(session, segment, at, into)), tip(at, 0));
        let forked = values(store, session, into);
        assert_eq!(forked.len() as u64, at);
        assert!(
            forked == all[..forked.len()],
            "fork at {at} is not the prefix"
        );
    }
    let mut expected = all.clone();
    for (generation, keep) in (1u64..).zip([398u64, 250, 140, 1]) {
        assert_eq!(
            ok(store.truncate(session, segment, keep)),
            tip(keep, generation)
        );
        expected.truncate(usize::try_from(keep).unwrap());
        assert!(
            values(store, session, segment) == expected,
            "truncate to {keep} did not keep exactly the prefix"
        );
        assert_eq!(seqs(store, session, segment), (0..keep).collect::<Vec<_>>());
    }
    assert_eq!(ok(store.append(session, segment, &entry(1))), tip(2, 4));
}
