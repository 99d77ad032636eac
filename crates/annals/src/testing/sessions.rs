//! Listings and sessions: ordering and what each listed segment says, finding a segment's
//! session, deleting a session, and its modification time.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};

use super::check::*;
use crate::{Lineage, SegmentId, SegmentWriter, SessionId, Store, StoreExt};

/// `list_sessions` and `list_segments` order by id, newest first, whatever the order of
/// creation; each listed segment carries its session, tip, lineage, creation time, a size that
/// grows with appends, and no damage.
pub fn listings_are_newest_first_and_describe_each_segment(store: &dyn Store) {
    let before_ms = now_ms();
    let sessions: Vec<SessionId> = (0..3).map(|_| SessionId::new()).collect();
    let segs: Vec<SegmentId> = (0..3).map(|_| SegmentId::new()).collect();
    // Create out of id order: the listing must follow ids, not creation.
    for &i in &[1, 2, 0] {
        ok(store.create::<Value>(sessions[i], SegmentId::new(), &[]));
    }
    let ours: BTreeSet<SessionId> = sessions.iter().copied().collect();
    let listed: Vec<SessionId> = ok(store.list_sessions())
        .into_iter()
        .filter(|s| ours.contains(s))
        .collect();
    assert_eq!(listed, vec![sessions[2], sessions[1], sessions[0]]);

    let session = SessionId::new();
    for &i in &[1, 2, 0] {
        ok(store.create(session, segs[i], &entries(0..i as u64)));
    }
    let forked = SegmentId::new();
    ok(store.fork(session, segs[2], 1, forked));
    ok(store.truncate(session, segs[1], 0));
    let after_ms = now_ms();
    let infos = ok(store.list_segments(session));
    let ids: Vec<SegmentId> = infos.iter().map(|i| i.segment).collect();
    assert_eq!(ids, vec![forked, segs[2], segs[1], segs[0]]);
    let expected_tips = [tip(1, 0), tip(2, 0), tip(0, 1), tip(0, 0)];
    for (info, expected) in infos.iter().zip(expected_tips) {
        assert_eq!(info.session, session);
        assert_eq!(info.tip, expected, "listed tip of {}", info.segment);
        assert_eq!(info.damage, None);
        assert!(
            (before_ms..=after_ms).contains(&info.created_ms),
            "created_ms {} of {} is not between {before_ms} and {after_ms}",
            info.created_ms,
            info.segment
        );
    }
    assert_eq!(
        infos[0].fork,
        Some(Lineage {
            segment: segs[2],
            at: 1
        })
    );
    assert!(infos[1..].iter().all(|i| i.fork.is_none()));

    let small = info(store, session, segs[0]).bytes;
    ok(store.append(session, segs[0], &entry(0)));
    let grown = info(store, session, segs[0]);
    assert!(
        grown.bytes > small,
        "bytes did not grow: {small} -> {}",
        grown.bytes
    );
    assert_eq!(
        ok(store.list_sessions())[0],
        session,
        "newest session first"
    );
}

/// `find_session` finds the session holding a segment (or none), `exists` is per session; a
/// segment id used in two sessions is found in the newer one, as the listing orders them.
pub fn find_session_and_exists_locate_segments(store: &dyn Store) {
    let (older, a) = new_segment(store, 1);
    let (newer, b) = new_segment(store, 1);
    assert_eq!(ok(store.find_session(a)), Some(older));
    assert_eq!(ok(store.find_session(b)), Some(newer));
    assert_eq!(ok(store.find_session(SegmentId::new())), None);
    assert!(ok(store.exists(older, a)));
    assert!(!ok(store.exists(older, b)));
    assert!(!ok(store.exists(newer, a)));
    assert!(!ok(store.exists(SessionId::new(), a)));

    let forked = SegmentId::new();
    ok(store.fork(older, a, 1, forked));
    assert_eq!(ok(store.find_session(forked)), Some(older));
    assert!(ok(store.exists(older, forked)));

    // The same segment id in a second session: a separate segment, found in the newer one.
    ok(store.create(newer, a, &[json!("same id, other session")]));
    assert_eq!(values(store, older, a), entries(0..1));
    assert_eq!(
        values(store, newer, a),
        vec![json!("same id, other session")]
    );
    assert_eq!(ok(store.find_session(a)), Some(newer));
    ok(store.delete_session(newer));
    assert_eq!(ok(store.find_session(a)), Some(older));
}

/// After `delete_session`, the session and everything in it are gone: listings, lookups,
/// reads, writes and writers all say not found, and a second delete fails. Other sessions are
/// untouched, and the same ids can be created again, fresh.
pub fn deleted_session_is_not_found_anywhere_and_can_be_created_again(store: &dyn Store) {
    let (keep_session, keep) = new_segment(store, 2);
    let keep_before = snapshot(store, keep_session, keep);
    let (session, segment) = new_segment(store, 3);
    ok(store.truncate(session, segment, 2));
    ok(store.append_trace(session, segment, &json!("trace")));
    let forked = SegmentId::new();
    ok(store.fork(session, segment, 1, forked));
    let mut writer = ok(SegmentWriter::open(store, session, segment));

    ok(store.delete_session(session));

    assert!(!ok(store.list_sessions()).contains(&session));
    assert_session_not_found("list_segments", store.list_segments(session), session);
    assert_session_not_found("session_modified", store.session_modified(session), session);
    assert_session_not_found("second delete", store.delete_session(session), session);
    for g in [segment, forked] {
        assert_eq!(ok(store.find_session(g)), None);
        assert_every_segment_operation_is_not_found(store, session, g);
    }
    assert_segment_not_found(
        "SegmentWriter::append",
        writer.append(&entry(9)),
        session,
        segment,
    );
    assert!(!ok(store.list_sessions()).contains(&session));
    assert_eq!(snapshot(store, keep_session, keep), keep_before);

    // Created again: nothing of the old segment (entries, generation, trace) comes back.
    assert_eq!(
        ok(store.create(session, segment, &[json!("again")])),
        tip(1, 0)
    );
    assert_eq!(values(store, session, segment), vec![json!("again")]);
    assert!(ok(store.read_trace::<Value>(session, segment)).is_empty());
    assert_eq!(listed_segments(store, session), vec![segment]);
    assert_eq!(info(store, session, segment).fork, None);
}

/// Reading, listing and verifying leave `session_modified` as it is; an append moves it
/// forward (timestamps may be coarse, so this appends until it shows, within a bound), and it
/// never goes back.
pub fn session_modified_moves_forward_on_append_and_not_on_reads(store: &dyn Store) {
    const MAX_APPENDS: u64 = 1000;
    let (session, segment) = new_segment(store, 1);
    let start = ok(store.session_modified(session));
    // Give a clock-based fake something to show.
    std::thread::sleep(Duration::from_millis(20));
    ok(store.read_raw(session, segment));
    ok(store.tip(session, segment));
    ok(store.verify(session, segment));
    ok(store.list_segments(session));
    ok(store.list_sessions());
    ok(store.find_session(segment));
    assert_eq!(
        ok(store.session_modified(session)),
        start,
        "reads moved session_modified"
    );

    let mut last = start;
    for i in 1..=MAX_APPENDS {
        ok(store.append(session, segment, &entry(i)));
        let now = ok(store.session_modified(session));
        assert!(
            now >= last,
            "session_modified went back: {last:?} -> {now:?}"
        );
        last = now;
        if now > start {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    panic!("session_modified stayed at {start:?} through {MAX_APPENDS} appends");
}
