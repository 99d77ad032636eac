//! What the scenarios share: assertions that name what went wrong, views of a segment through
//! the `Store` trait alone, and the entry makers of [`support`](super::support).

use std::fmt;
use std::ops::ControlFlow;

use serde_json::Value;

pub(super) use super::support::{
    ascii_string_of_len, entries, entry, json_string_of_len, raw, tip,
};
use super::support::{replay_values, trace_texts};
use crate::{
    Error, Lineage, RawEntry, ReplayOptions, Result, ScanReport, SegmentId, SegmentInfo,
    SegmentWriter, SessionId, Store, StoreExt, Tip,
};

/// Asserts that `$result` is an `Err` matching the pattern, naming the call when it is not.
macro_rules! assert_err {
    ($result:expr, $pattern:pat $(if $guard:expr)?) => {
        match $result {
            Err($pattern) $(if $guard)? => {}
            other => panic!(
                "`{}` should fail with `{}`, got {:?}",
                stringify!($result),
                stringify!($pattern),
                other
            ),
        }
    };
}
pub(super) use assert_err;

#[track_caller]
pub(super) fn ok<T>(result: Result<T>) -> T {
    match result {
        Ok(v) => v,
        Err(e) => panic!("unexpected error: {e} ({e:?})"),
    }
}

/// A new segment in a new session holding `entry(0..n)`.
pub(super) fn new_segment(store: &dyn Store, n: u64) -> (SessionId, SegmentId) {
    let (session, segment) = (SessionId::new(), SegmentId::new());
    let tip = ok(store.create(session, segment, &entries(0..n)));
    assert_eq!(
        tip,
        Tip {
            count: n,
            generation: 0
        },
        "tip returned by create"
    );
    (session, segment)
}

#[track_caller]
pub(super) fn values(store: &dyn Store, session: SessionId, segment: SegmentId) -> Vec<Value> {
    ok(store.read(session, segment))
}

/// Sequence numbers and entries delivered by a replay, and its report.
#[track_caller]
pub(super) fn replayed(
    store: &dyn Store,
    session: SessionId,
    segment: SegmentId,
    options: &ReplayOptions,
) -> (Vec<(u64, Value)>, ScanReport) {
    ok(replay_values(store, session, segment, options))
}

#[track_caller]
pub(super) fn seqs(store: &dyn Store, session: SessionId, segment: SegmentId) -> Vec<u64> {
    replayed(store, session, segment, &ReplayOptions::strict())
        .0
        .into_iter()
        .map(|(seq, _)| seq)
        .collect()
}

/// Everything observable about one segment through the `Store` trait, to show an operation
/// changed nothing.
#[derive(Debug, PartialEq)]
pub(super) struct Snapshot {
    pub(super) tip: Tip,
    pub(super) entries: Vec<RawEntry>,
    pub(super) trace: Vec<Value>,
    pub(super) fork: Option<Lineage>,
}

#[track_caller]
pub(super) fn snapshot(store: &dyn Store, session: SessionId, segment: SegmentId) -> Snapshot {
    Snapshot {
        tip: ok(store.tip(session, segment)),
        entries: ok(store.read_raw(session, segment)),
        trace: ok(store.read_trace(session, segment)),
        fork: info(store, session, segment).fork,
    }
}

#[track_caller]
pub(super) fn info(store: &dyn Store, session: SessionId, segment: SegmentId) -> SegmentInfo {
    ok(store.list_segments(session))
        .into_iter()
        .find(|i| i.segment == segment)
        .unwrap_or_else(|| panic!("segment {segment} is not listed in session {session}"))
}

pub(super) fn listed_segments(store: &dyn Store, session: SessionId) -> Vec<SegmentId> {
    ok(store.list_segments(session))
        .into_iter()
        .map(|i| i.segment)
        .collect()
}

#[track_caller]
pub(super) fn assert_segment_not_found<T: fmt::Debug>(
    what: &str,
    result: Result<T>,
    session: SessionId,
    segment: SegmentId,
) {
    match result {
        Err(Error::SegmentNotFound {
            session: s,
            segment: g,
        }) if s == session && g == segment => {}
        other => panic!(
            "{what} on missing segment {session}/{segment}: expected SegmentNotFound naming it, got {other:?}"
        ),
    }
}

#[track_caller]
pub(super) fn assert_session_not_found<T: fmt::Debug>(
    what: &str,
    result: Result<T>,
    session: SessionId,
) {
    match result {
        Err(Error::SessionNotFound(s)) if s == session => {}
        other => panic!(
            "{what} on missing session {session}: expected SessionNotFound naming it, got {other:?}"
        ),
    }
}

/// Every operation on one segment fails with `SegmentNotFound` and creates nothing.
#[track_caller]
pub(super) fn assert_every_segment_operation_is_not_found(
    store: &dyn Store,
    session: SessionId,
    segment: SegmentId,
) {
    let e = raw(&entry(0));
    let into = SegmentId::new();
    let nf = |what: &str, r: Result<Tip>| assert_segment_not_found(what, r, session, segment);
    nf("append", store.append(session, segment, &entry(0)));
    nf("append_raw", store.append_raw(session, segment, &e));
    nf(
        "append_batch",
        store.append_batch(session, segment, &entries(0..2)),
    );
    nf(
        "empty append_batch_raw",
        store.append_batch_raw(session, segment, &[]),
    );
    nf(
        "append_if",
        store.append_if(session, segment, Tip::default(), std::slice::from_ref(&e)),
    );
    nf(
        "empty append_if",
        store.append_if(session, segment, Tip::default(), &[]),
    );
    nf("tip", store.tip(session, segment));
    nf("truncate", store.truncate(session, segment, 0));
    nf("fork", store.fork(session, segment, 0, into));
    assert_segment_not_found(
        "entry_count",
        store.entry_count(session, segment),
        session,
        segment,
    );
    for options in [ReplayOptions::strict(), ReplayOptions::tolerant()] {
        assert_segment_not_found(
            "replay_raw",
            store.replay_raw(session, segment, &options, &mut |_| {
                Ok(ControlFlow::Continue(()))
            }),
            session,
            segment,
        );
        assert_segment_not_found(
            "replay_trace_raw",
            store.replay_trace_raw(session, segment, &options, &mut |_| {
                Ok(ControlFlow::Continue(()))
            }),
            session,
            segment,
        );
    }
    assert_segment_not_found(
        "read_raw",
        store.read_raw(session, segment),
        session,
        segment,
    );
    assert_segment_not_found(
        "read",
        store.read::<Value>(session, segment),
        session,
        segment,
    );
    assert_segment_not_found("verify", store.verify(session, segment), session, segment);
    assert_segment_not_found(
        "append_trace",
        store.append_trace(session, segment, &entry(0)),
        session,
        segment,
    );
    assert_segment_not_found(
        "append_trace_raw",
        store.append_trace_raw(session, segment, std::slice::from_ref(&e)),
        session,
        segment,
    );
    assert_segment_not_found(
        "read_trace",
        store.read_trace::<Value>(session, segment),
        session,
        segment,
    );
    assert_segment_not_found(
        "SegmentWriter::open",
        SegmentWriter::open(store, session, segment),
        session,
        segment,
    );
    assert!(
        !ok(store.exists(session, segment)),
        "a failed operation created segment {segment}"
    );
    assert!(
        !ok(store.exists(session, into)),
        "a fork of a missing segment created {into}"
    );
}

pub(super) fn join<T>(handle: std::thread::JoinHandle<T>) -> T {
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// The JSON text of every trace event of a segment, strictly.
#[track_caller]
pub(super) fn trace_json(store: &dyn Store, session: SessionId, segment: SegmentId) -> Vec<String> {
    let (events, _) = ok(trace_texts(
        store,
        session,
        segment,
        &ReplayOptions::strict(),
    ));
    events.into_iter().map(|(_, json)| json).collect()
}

pub(super) fn now_ms() -> u64 {
    crate::now_ms()
}
