//! The debug trace beside each segment's log, and attachments in the session's blob store.

use std::ops::ControlFlow;

use serde_json::{json, Value};

use super::check::*;
use crate::{AttachmentMeta, BlobId, Error, ReplayOptions, SegmentId, SessionId, Store, StoreExt};

/// Attachments: bytes with metadata go into the session's blob store, are listed in the order
/// they were put, come back byte for byte by id, and identical bytes are stored once. A missing
/// session and bytes over the maximum are refused.
pub fn attachments_are_stored_once_listed_in_order_and_read_back_checked(store: &dyn Store) {
    let (session, _) = new_segment(store, 1);
    let png: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let meta = AttachmentMeta {
        media_type: "image/png".into(),
        label: Some("screenshot.png".into()),
        width: Some(640),
        height: Some(480),
    };
    let a = ok(store.put_attachment(session, &png, &meta));
    assert_eq!(a.id, BlobId::of(&png));
    assert_eq!(a.len, png.len() as u64);
    assert_eq!(a.meta, meta);
    let text_meta = AttachmentMeta {
        media_type: "text/plain".into(),
        ..AttachmentMeta::default()
    };
    let b = ok(store.put_attachment(session, b"", &text_meta));
    let again = ok(store.put_attachment(session, &png, &meta));
    assert_eq!(again.id, a.id, "identical bytes, identical blob");
    let listed = ok(store.list_attachments(session));
    assert_eq!(listed, vec![a.clone(), b.clone(), again]);
    assert_eq!(ok(store.get_blob(session, &a.id)), png);
    assert_eq!(ok(store.get_blob(session, &b.id)), Vec::<u8>::new());
    assert_eq!(
        ok(store.gc_blobs(session, true)).orphans,
        vec![],
        "attachments are referenced"
    );

    let missing = SessionId::new();
    assert_err!(
        store.put_attachment(missing, b"x", &text_meta),
        Error::SessionNotFound(_)
    );
    assert_err!(store.list_attachments(missing), Error::SessionNotFound(_));
    let max = store.max_entry_bytes();
    if max <= 8 << 20 {
        let too_large = vec![0u8; max + 1];
        assert_err!(
            store.put_attachment(session, &too_large, &text_meta),
            Error::EntryTooLarge { .. }
        );
        assert_eq!(ok(store.list_attachments(session)).len(), 3);
    }
}

/// The debug trace is empty until written, numbered from 0 on its own, separate per segment,
/// not touched by log appends or truncates (nor the log by it), and a fork starts without one.
pub fn trace_is_separate_from_the_log_and_survives_truncate(store: &dyn Store) {
    let (session, segment) = new_segment(store, 3);
    let neighbour = SegmentId::new();
    ok(store.create::<Value>(session, neighbour, &[]));
    assert!(ok(store.read_trace::<Value>(session, segment)).is_empty());
    let mut delivered = 0;
    let report =
        ok(
            store.replay_trace_raw(session, segment, &ReplayOptions::strict(), &mut |_| {
                delivered += 1;
                Ok(ControlFlow::Continue(()))
            }),
        );
    assert_eq!((delivered, report.entries), (0, 0));

    let events: Vec<Value> = (0..4).map(|i| json!({ "event": i })).collect();
    ok(store.append_trace(session, segment, &events[0]));
    ok(store.append_trace(session, segment, &events[1]));
    ok(store.append_trace_raw(session, segment, &[raw(&events[2]), raw(&events[3])]));
    assert_eq!(ok(store.read_trace::<Value>(session, segment)), events);
    assert_eq!(
        ok(store.tip(session, segment)),
        tip(3, 0),
        "trace moved the log"
    );
    assert_eq!(values(store, session, segment), entries(0..3));
    assert!(ok(store.read_trace::<Value>(session, neighbour)).is_empty());

    let mut seqs = Vec::new();
    let report = ok(store.replay_trace_raw(
        session,
        segment,
        &ReplayOptions::tolerant().from_seq(2),
        &mut |e| {
            seqs.push((
                e.seq,
                serde_json::from_str::<Value>(e.json().unwrap()).unwrap(),
            ));
            Ok(ControlFlow::Continue(()))
        },
    ));
    assert_eq!(seqs, vec![(2, events[2].clone()), (3, events[3].clone())]);
    assert!(report.is_clean());
    assert_eq!(report.entries, 4);

    ok(store.append(session, segment, &entry(3)));
    ok(store.truncate(session, segment, 0));
    assert_eq!(ok(store.read_trace::<Value>(session, segment)), events);
    ok(store.append_trace(session, segment, &json!("after truncate")));
    let trace: Vec<Value> = ok(store.read_trace(session, segment));
    assert_eq!(trace.len(), 5);
    assert_eq!(trace[4], json!("after truncate"));
    assert_eq!(ok(store.tip(session, segment)), tip(0, 1));

    let forked = SegmentId::new();
    ok(store.append(session, segment, &entry(0)));
    ok(store.fork(session, segment, 1, forked));
    assert!(ok(store.read_trace::<Value>(session, forked)).is_empty());
}
