//! Entry sizes and blobs: the line limit, entries of every size up to the store's maximum, what is
//! refused above it, blob references on raw replay, and blob garbage collection.

use std::ops::ControlFlow;

use serde_json::json;

use super::check::*;
use crate::{
    AttachmentMeta, BlobId, Body, Error, RawEntry, ReplayOptions, SegmentId, SegmentWriter,
    SessionId, Store, MAX_INLINE, MAX_LINE,
};

/// Bytes a line needs besides its entry's JSON, derived from the format:
/// `{"crc":"xxxxxxxx","seq":N,"e":ENTRY}` and a newline.
fn line_overhead(seq: u64) -> usize {
    format!("{{\"crc\":\"{:08x}\",\"seq\":{seq},\"e\":}}\n", 0u32).len()
}

/// The longest entry JSON that fits in a line with sequence number `seq`.
fn max_json_len(seq: u64) -> usize {
    MAX_LINE - line_overhead(seq)
}

/// An entry whose line is exactly 4096 bytes is accepted, by every write path, and reads back
/// unchanged; the limit counts bytes, and the sequence number's digits count too.
pub fn entry_exactly_at_the_line_limit_is_accepted(store: &dyn Store) {
    let (session, segment) = (SessionId::new(), SegmentId::new());
    let at_limit_0 = json_string_of_len(max_json_len(0));
    ok(store.create_segment(session, segment, std::slice::from_ref(&at_limit_0)));
    let at_limit_1 = json_string_of_len(max_json_len(1));
    assert_eq!(
        ok(store.append_raw(session, segment, &at_limit_1)),
        tip(2, 0)
    );
    let small: Vec<RawEntry> = entries(2..10).iter().map(raw).collect();
    ok(store.append_batch_raw(session, segment, &small));
    // Seq 10 has two digits: one byte less room for the entry.
    let at_limit_10 = json_string_of_len(max_json_len(10));
    assert_eq!(max_json_len(10), max_json_len(0) - 1);
    assert_eq!(
        ok(store.append_if(
            session,
            segment,
            tip(10, 0),
            std::slice::from_ref(&at_limit_10)
        )),
        tip(11, 0)
    );
    let back = ok(store.read_raw(session, segment));
    assert_eq!(back.len(), 11);
    assert_eq!(back[0], at_limit_0);
    assert_eq!(back[1], at_limit_1);
    assert_eq!(back[10], at_limit_10);

    ok(store.append_trace_raw(session, segment, std::slice::from_ref(&at_limit_0)));
    assert_eq!(
        trace_json(store, session, segment),
        vec![at_limit_0.as_str().to_owned()]
    );
}

/// Entries of every size, from the smallest JSON to several megabytes, go in through every write
/// path and come back byte for byte: those too long for a line are kept as blobs, which the
/// caller never sees. Multi-byte characters straddle the inline limit and the blob head's cut.
pub fn entries_of_every_size_up_to_the_maximum_round_trip_through_every_write_path(
    store: &dyn Store,
) {
    let max = store.max_entry_bytes();
    let mut sizes = vec![
        1,
        2,
        MAX_INLINE - 1,
        MAX_INLINE,
        MAX_INLINE + 1,
        max_json_len(0),
        max_json_len(0) + 1,
        MAX_LINE * 2,
        300 << 10,
    ];
    sizes.push((2 << 20).min(max));
    sizes.push(max.min(8 << 20));
    sizes.retain(|&n| n <= max);
    let mut wanted: Vec<RawEntry> = sizes
        .iter()
        .map(|&n| {
            if n < 2 {
                ok(RawEntry::from_json("0"))
            } else if n % 2 == 0 {
                json_string_of_len(n)
            } else {
                ascii_string_of_len(n)
            }
        })
        .collect();
    // Non-ASCII right at the boundaries: two-byte characters from the first byte on.
    wanted.push(json_string_of_len(MAX_INLINE + 2));
    wanted.push(json_string_of_len(MAX_INLINE + 3));
    for e in &wanted {
        assert!(e.len() <= max);
    }

    let (session, segment) = (SessionId::new(), SegmentId::new());
    let (first, rest) = wanted.split_at(3);
    ok(store.create_segment(session, segment, first));
    for e in &rest[..2] {
        ok(store.append_raw(session, segment, e));
    }
    ok(store.append_batch_raw(session, segment, &rest[2..5]));
    let mut writer = ok(SegmentWriter::open(store, session, segment));
    ok(writer.append_raw(&rest[5..]));
    assert_eq!(ok(store.entry_count(session, segment)), wanted.len() as u64);
    let back = ok(store.read_raw(session, segment));
    assert_eq!(back.len(), wanted.len());
    for (i, (got, want)) in back.iter().zip(&wanted).enumerate() {
        assert!(
            got == want,
            "entry {i} of {} bytes did not come back equal",
            want.len()
        );
    }
    assert!(ok(store.verify(session, segment)).is_clean());

    // Truncate and fork keep references to blobs as they keep lines.
    let keep = wanted.len() as u64 - 2;
    ok(store.truncate(session, segment, keep));
    let fork = SegmentId::new();
    ok(store.fork(session, segment, keep, fork));
    assert_eq!(
        ok(store.read_raw(session, fork)),
        wanted[..wanted.len() - 2]
    );

    // The trace takes them too.
    ok(store.append_trace_raw(session, segment, &wanted[wanted.len() - 3..]));
    let want: Vec<String> = wanted[wanted.len() - 3..]
        .iter()
        .map(|e| e.as_str().to_owned())
        .collect();
    assert_eq!(trace_json(store, session, segment), want);
}

/// An entry larger than the store's maximum (`Store::max_entry_bytes`) is refused with
/// `EntryTooLarge { size, limit }` by every write path, and nothing is written: no entry, no
/// segment, no session, no trace event. An entry exactly at the maximum is accepted.
pub fn entry_over_the_store_maximum_is_refused_with_nothing_written(store: &dyn Store) {
    let max = store.max_entry_bytes();
    let over = ascii_string_of_len(max + 1);
    let too_large = |e: &Error| matches!(e, Error::EntryTooLarge { size, limit } if *size == max + 1 && *limit == max);

    let (session, segment) = (SessionId::new(), SegmentId::new());
    let created = store.create_segment(session, segment, std::slice::from_ref(&over));
    assert!(
        created.as_ref().is_err_and(too_large),
        "create: {created:?}"
    );
    assert!(!ok(store.exists(session, segment)));
    assert!(!ok(store.list_sessions()).contains(&session));

    ok(store.create_segment(session, segment, &[]));
    let before = snapshot(store, session, segment);
    let attempts = [
        ("append_raw", store.append_raw(session, segment, &over)),
        (
            "append_batch_raw",
            store.append_batch_raw(session, segment, std::slice::from_ref(&over)),
        ),
        (
            "append_if",
            store.append_if(session, segment, before.tip, std::slice::from_ref(&over)),
        ),
    ];
    for (what, result) in attempts {
        assert!(result.as_ref().is_err_and(too_large), "{what}: {result:?}");
    }
    let trace = store.append_trace_raw(session, segment, std::slice::from_ref(&over));
    assert!(trace.as_ref().is_err_and(too_large), "trace: {trace:?}");
    let mut writer = ok(SegmentWriter::open(store, session, segment));
    let writer_tip = writer.tip();
    let result = writer.append_raw(std::slice::from_ref(&over));
    assert!(
        result.as_ref().is_err_and(too_large),
        "SegmentWriter: {result:?}"
    );
    assert_eq!(writer.tip(), writer_tip, "a refused append moved the tally");
    assert_eq!(snapshot(store, session, segment), before);
    assert!(
        ok(store.gc_blobs(session, true)).orphans.is_empty(),
        "a refused entry left a blob"
    );
    drop(over);

    let at_max = ascii_string_of_len(max);
    assert_eq!(ok(store.append_raw(session, segment, &at_max)), tip(1, 0));
    assert_eq!(ok(writer.resync()), tip(1, 0));
    assert_eq!(
        ok(writer.append_raw(std::slice::from_ref(&at_max))),
        tip(2, 0)
    );
    assert!(ok(store.read_raw(session, segment)) == vec![at_max.clone(), at_max]);
}

/// A batch is all or nothing: one entry over the maximum and none of the batch is written —
/// not its small entries, not the blobs of its large ones — through append and create alike.
pub fn batch_with_one_entry_over_the_maximum_writes_nothing(store: &dyn Store) {
    let max = store.max_entry_bytes();
    let (session, segment) = new_segment(store, 8);
    let before = snapshot(store, session, segment);
    let large = ascii_string_of_len((MAX_INLINE + 100).min(max));
    let over = ascii_string_of_len(max + 1);
    let batch = vec![raw(&entry(8)), large.clone(), over];
    assert_err!(
        store.append_batch_raw(session, segment, &batch),
        Error::EntryTooLarge { size, .. } if size == max + 1
    );
    assert_err!(
        store.append_if(session, segment, before.tip, &batch),
        Error::EntryTooLarge { .. }
    );
    assert_eq!(snapshot(store, session, segment), before);
    let other = SegmentId::new();
    assert_err!(
        store.create_segment(session, other, &batch),
        Error::EntryTooLarge { .. }
    );
    assert!(!ok(store.exists(session, other)));
    assert!(
        ok(store.gc_blobs(session, true)).orphans.is_empty(),
        "a refused batch left the blob of its large entry"
    );

    // Without the entry that is too large it goes in.
    assert_eq!(
        ok(store.append_batch_raw(session, segment, &batch[..2])),
        tip(10, 0)
    );
    assert!(ok(store.read_raw(session, segment))[9] == large);
}

/// With `blob_refs`, an entry kept as a blob comes out as its reference only (out of band, as
/// `Body::Blob` without text); `get_blob` returns the entry's bytes for that id, and the head is
/// a prefix of the entry. Without it, the same entry comes out as `Body::Blob` with its text.
/// Small entries come out as they are — also one whose JSON looks like a blob reference.
pub fn raw_replay_hands_out_blob_references_that_get_blob_resolves(store: &dyn Store) {
    let large = json_string_of_len(MAX_INLINE + 1001);
    let small = raw(&entry(1));
    let lookalike = raw(&json!({"blob": {"sha256": BlobId::of(b"x"), "len": 1, "head": ""}}));
    let (session, segment) = (SessionId::new(), SegmentId::new());
    ok(store.create_segment(
        session,
        segment,
        &[small.clone(), large.clone(), lookalike.clone()],
    ));
    for blob_refs in [true, false] {
        let options = ReplayOptions {
            blob_refs,
            ..ReplayOptions::strict()
        };
        let mut got = Vec::new();
        ok(store.replay_raw(session, segment, &options, &mut |e| {
            let body = match e.body {
                Body::Inline(json) => (None, Some(json.to_owned())),
                Body::Blob { reference, json } => {
                    (Some(reference.clone()), json.map(str::to_owned))
                }
            };
            got.push((e.seq, body));
            Ok(ControlFlow::Continue(()))
        }));
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], (0, (None, Some(small.as_str().to_owned()))));
        assert_eq!(got[2], (2, (None, Some(lookalike.as_str().to_owned()))));
        let (seq, (reference, json)) = &got[1];
        assert_eq!(*seq, 1);
        let reference = reference.as_ref().expect("a large entry is kept as a blob");
        assert_eq!(reference.sha256, BlobId::of(large.as_str().as_bytes()));
        assert_eq!(reference.len, large.len() as u64);
        assert!(!reference.head.is_empty() && large.as_str().starts_with(&reference.head));
        let expected_json = (!blob_refs).then(|| large.as_str().to_owned());
        assert_eq!(json, &expected_json, "blob_refs = {blob_refs}");
    }
    let id = BlobId::of(large.as_str().as_bytes());
    assert_eq!(ok(store.get_blob(session, &id)), large.as_str().as_bytes());
    assert_err!(
        store.get_blob(session, &BlobId::of(b"nothing")),
        Error::BlobNotFound { .. }
    );
}

/// Blob garbage collection finds exactly the blobs that no entry line, trace event or
/// attachment refers to (here: after a truncate), reports them in a dry run without removing
/// them, and removes them otherwise; everything still referred to reads back.
pub fn gc_removes_only_blobs_that_nothing_refers_to(store: &dyn Store) {
    let (session, segment) = (SessionId::new(), SegmentId::new());
    let kept = ascii_string_of_len(MAX_INLINE + 10);
    let dropped = ascii_string_of_len(MAX_INLINE + 20);
    let in_trace = ascii_string_of_len(MAX_INLINE + 30);
    ok(store.create_segment(session, segment, &[kept.clone(), dropped.clone()]));
    ok(store.append_trace_raw(session, segment, std::slice::from_ref(&in_trace)));
    let attached = ok(store.put_attachment(session, b"attached", &AttachmentMeta::default()));
    assert!(
        ok(store.gc_blobs(session, false)).orphans.is_empty(),
        "everything is referenced"
    );

    ok(store.truncate(session, segment, 1));
    let dropped_id = BlobId::of(dropped.as_str().as_bytes());
    let dry = ok(store.gc_blobs(session, true));
    assert_eq!(dry.orphans, vec![dropped_id]);
    assert_eq!(dry.orphan_bytes, dropped.len() as u64);
    assert_eq!(
        ok(store.get_blob(session, &dropped_id)),
        dropped.as_str().as_bytes(),
        "dry run removed it"
    );

    let done = ok(store.gc_blobs(session, false));
    assert_eq!(done.orphans, vec![dropped_id]);
    assert_eq!(done.kept, 3);
    assert_err!(
        store.get_blob(session, &dropped_id),
        Error::BlobNotFound { .. }
    );
    assert!(ok(store.read_raw(session, segment)) == vec![kept]);
    assert_eq!(ok(store.get_blob(session, &attached.id)), b"attached");
    assert_eq!(
        trace_json(store, session, segment),
        vec![in_trace.as_str().to_owned()]
    );
    assert!(ok(store.gc_blobs(session, false)).orphans.is_empty());
    assert_err!(
        store.gc_blobs(SessionId::new(), true),
        Error::SessionNotFound(_)
    );
}
