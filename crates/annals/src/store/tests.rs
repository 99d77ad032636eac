use serde_json::{json, Value};

use super::*;
use crate::{MemStore, MAX_INLINE};

fn large_entry() -> Value {
    json!({ "output": "x".repeat(MAX_INLINE + 100) })
}

#[test]
fn a_typed_replay_reads_blobs_back_even_when_asked_for_references() {
    // `blob_refs` is for raw replays; a reference is not a `T`, so typed replays ignore it.
    let store = MemStore::new();
    let (session, segment) = (SessionId::new(), SegmentId::new());
    let entries = [json!({ "n": 1 }), large_entry()];
    store.create(session, segment, &entries).unwrap();

    let mut back = Vec::new();
    let report = store
        .replay(
            session,
            segment,
            &ReplayOptions::strict().blob_refs(),
            |meta: EntryMeta, v: Value| {
                back.push((meta.seq, v));
                Ok(())
            },
        )
        .unwrap();
    assert!(report.is_clean());
    assert_eq!(back, vec![(0, entries[0].clone()), (1, entries[1].clone())]);
}

#[test]
fn a_writer_debug_names_its_session_segment_and_tally() {
    let store = MemStore::new();
    let (session, segment) = (SessionId::new(), SegmentId::new());
    store
        .create(session, segment, &[json!(1), json!(2)])
        .unwrap();
    let writer = SegmentWriter::open(&store, session, segment).unwrap();
    let debug = format!("{writer:?}");
    assert!(debug.starts_with("SegmentWriter {"), "{debug}");
    for part in [
        format!("session: {session:?}"),
        format!("segment: {segment:?}"),
        "tip: Tip { count: 2, generation: 0 }".to_owned(),
    ] {
        assert!(debug.contains(&part), "{debug} lacks {part}");
    }
}

#[test]
fn a_writer_syncs_its_own_segment_through_the_store() {
    let store = MemStore::new();
    let (session, segment) = (SessionId::new(), SegmentId::new());
    store.create(session, segment, &[json!(1)]).unwrap();
    let mut writer = SegmentWriter::open(&store, session, segment).unwrap();
    writer.append(&json!(2)).unwrap();
    writer.sync().unwrap();
    assert_eq!(
        writer.tip(),
        Tip {
            count: 2,
            generation: 0
        }
    );

    // It is the store's sync of this segment: a segment gone under the writer is an error.
    store.delete_session(session).unwrap();
    let err = writer.sync().unwrap_err();
    assert!(
        matches!(err, Error::SegmentNotFound { session: s, segment: g } if s == session && g == segment),
        "{err:?}"
    );
}
