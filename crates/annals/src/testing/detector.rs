//! The concurrent-writer detector and `SegmentWriter`: stale tips are refused, a writer resyncs,
//! forks away from a conflict, and keeps its own tally through appends and truncates.

use serde_json::json;

use super::check::*;
use crate::{Error, Lineage, SegmentWriter, Store, StoreExt};

/// `append_if` with any tip but the current one (fewer, more, other generation) fails with
/// `ConcurrentWriter` naming both tips and writes nothing; so does a `SegmentWriter` whose
/// segment another writer appended to.
pub fn append_if_refuses_a_stale_tip_and_writes_nothing(store: &dyn Store) {
    let (session, segment) = new_segment(store, 2);
    ok(store.truncate(session, segment, 2));
    let mut writer = ok(SegmentWriter::open(store, session, segment));
    assert_eq!(writer.tip(), tip(2, 1));
    // Another writer (a plain append here; another handle or process for real).
    ok(store.append(session, segment, &entry(2)));
    let current = tip(3, 1);
    let before = snapshot(store, session, segment);
    assert_eq!(before.tip, current);

    let err = writer.append(&entry(99));
    assert!(
        matches!(&err, Err(Error::ConcurrentWriter { segment: g, expected, found })
            if *g == segment && *expected == tip(2, 1) && *found == current),
        "SegmentWriter::append after another writer: {err:?}"
    );
    assert_eq!(writer.tip(), tip(2, 1), "a refused append moved the tally");
    for stale in [tip(2, 1), tip(4, 1), tip(3, 0), tip(3, 2), tip(0, 0)] {
        assert_err!(
            store.append_if(session, segment, stale, &[raw(&entry(99))]),
            Error::ConcurrentWriter { segment: g, expected, found }
                if g == segment && expected == stale && found == current
        );
    }
    assert_eq!(snapshot(store, session, segment), before);
    // The current tip is accepted.
    assert_eq!(
        ok(store.append_if(session, segment, current, &[raw(&entry(3))])),
        tip(4, 1)
    );
}

/// Another writer appends one entry and truncates one away: the count is what this writer
/// expects, but the generation is not, so its append is still refused.
pub fn append_then_truncate_back_to_the_same_count_is_still_detected(store: &dyn Store) {
    let (session, segment) = new_segment(store, 3);
    let mut writer = ok(SegmentWriter::open(store, session, segment));
    ok(store.append(session, segment, &json!("intruder")));
    ok(store.truncate(session, segment, 3));
    assert_eq!(ok(store.tip(session, segment)).count, writer.tip().count);
    let before = snapshot(store, session, segment);
    let err = writer.append(&entry(3));
    assert!(
        matches!(&err, Err(Error::ConcurrentWriter { expected, found, .. })
            if *expected == tip(3, 0) && *found == tip(3, 1)),
        "append after append+truncate by another writer: {err:?}"
    );
    assert_eq!(snapshot(store, session, segment), before);
}

/// After a conflict, `resync` takes the segment's current tip as the tally and appending
/// continues after the other writer's entries.
pub fn writer_resync_accepts_the_current_tip_and_continues(store: &dyn Store) {
    let (session, segment) = new_segment(store, 1);
    let mut writer = ok(SegmentWriter::open(store, session, segment));
    ok(store.append(session, segment, &entry(1)));
    assert_err!(writer.append(&entry(100)), Error::ConcurrentWriter { .. });
    assert_eq!(ok(writer.resync()), tip(2, 0));
    assert_eq!(writer.tip(), tip(2, 0));
    assert_eq!(ok(writer.append(&entry(2))), tip(3, 0));
    assert_eq!(values(store, session, segment), entries(0..3));
}

/// After a conflict, `SegmentWriter::fork` starts a new segment from the writer's own view of
/// the history, records the lineage, and appending continues there; the contested segment
/// keeps the other writer's entry and nothing of this writer's later ones.
pub fn writer_fork_continues_in_a_new_segment_and_leaves_the_old_one_alone(store: &dyn Store) {
    let (session, old) = new_segment(store, 2);
    let mut writer = ok(SegmentWriter::open(store, session, old));
    assert_eq!(ok(writer.append(&entry(2))), tip(3, 0));
    ok(store.append(session, old, &json!("other")));
    assert_err!(writer.append(&entry(3)), Error::ConcurrentWriter { .. });
    let old_before = snapshot(store, session, old);

    let new = ok(writer.fork());
    assert_ne!(new, old);
    assert_eq!(writer.segment(), new);
    assert_eq!(writer.session(), session);
    assert_eq!(writer.tip(), tip(3, 0));
    assert_eq!(values(store, session, new), entries(0..3));
    assert_eq!(
        info(store, session, new).fork,
        Some(Lineage {
            segment: old,
            at: 3
        })
    );

    assert_eq!(ok(writer.append(&entry(3))), tip(4, 0));
    assert_eq!(seqs(store, session, new), vec![0, 1, 2, 3]);
    assert_eq!(values(store, session, new), entries(0..4));
    assert_eq!(snapshot(store, session, old), old_before);
    let mut expected_old = entries(0..3);
    expected_old.push(json!("other"));
    assert_eq!(values(store, session, old), expected_old);
}

/// A `SegmentWriter` opens with the segment's tip, returns the new tip from each append and
/// keeps it as its tally; opening one on a missing segment fails.
pub fn segment_writer_keeps_its_own_tally(store: &dyn Store) {
    let (session, segment) = new_segment(store, 2);
    ok(store.truncate(session, segment, 2));
    let mut writer = ok(SegmentWriter::open(store, session, segment));
    assert_eq!(writer.tip(), tip(2, 1));
    assert_eq!(writer.session(), session);
    assert_eq!(writer.segment(), segment);
    assert_eq!(ok(writer.append(&entry(2))), tip(3, 1));
    assert_eq!(
        ok(writer.append_raw(&[raw(&entry(3)), raw(&entry(4))])),
        tip(5, 1)
    );
    assert_eq!(ok(writer.append_raw(&[])), tip(5, 1));
    assert_eq!(writer.tip(), ok(store.tip(session, segment)));
    assert_eq!(values(store, session, segment), entries(0..5));
    // Two writers on one segment: the second one's append makes the first one stale.
    let mut second = ok(SegmentWriter::open(store, session, segment));
    ok(second.append(&entry(5)));
    assert_err!(writer.append(&entry(6)), Error::ConcurrentWriter { .. });
    ok(second.append(&entry(6)));
    assert_eq!(values(store, session, segment), entries(0..7));
}

/// A writer's own truncate keeps its tally (it is not its own concurrent writer), bumps the
/// generation, and appending continues; a truncate by someone else makes the writer stale, and
/// a writer's truncate is refused (nothing cut) when the segment moved since its last look.
pub fn writer_truncate_keeps_its_tally_and_is_refused_when_stale(store: &dyn Store) {
    let (session, segment) = new_segment(store, 5);
    let mut writer = ok(SegmentWriter::open(store, session, segment));
    assert_eq!(ok(writer.truncate(3)), tip(3, 1));
    assert_eq!(writer.tip(), tip(3, 1));
    assert_eq!(ok(writer.append(&entry(3))), tip(4, 1));
    assert_eq!(values(store, session, segment), entries(0..4));

    ok(store.append(session, segment, &entry(4)));
    let before = snapshot(store, session, segment);
    assert_err!(writer.truncate(1), Error::ConcurrentWriter { .. });
    assert_eq!(
        snapshot(store, session, segment),
        before,
        "a stale truncate cut"
    );
    assert_err!(
        store.truncate_if(session, segment, tip(4, 1), 1),
        Error::ConcurrentWriter { .. }
    );
    assert_eq!(snapshot(store, session, segment), before);
    assert_eq!(
        ok(store.truncate_if(session, segment, tip(5, 1), 2)).count,
        2
    );
    assert_err!(
        store.truncate_if(session, segment, tip(2, 2), 3),
        Error::BeyondEnd { .. }
    );
    assert_eq!(values(store, session, segment), entries(0..2));
}
