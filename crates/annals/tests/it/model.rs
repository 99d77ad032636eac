//! Model-based tests: random sequences of operations run against a store and against a plain
//! model (a `BTreeMap` from segment to its entries, generation, lineage and trace), and after
//! every step everything the `Store` trait can observe must match the model.
//!
//! For `FsStore` two more operations exist: *reopen* (drop the store, open a new one on the
//! same root) and *another handle* (a second `FsStore` on the same root writes; the first must
//! see it, through whatever handles it has cached). For `MemStore`, reopen does nothing and the
//! other handle is the store itself.
//!
//! Cases default to a CI-friendly count; `PROPTEST_CASES` raises it. Failures are not persisted
//! to files: a minimised failure becomes a named test at the end of this file.

use std::collections::BTreeMap;

use annals::testing::support::{raws, tip, TempStore};
use annals::{
    Error, FsOptions, FsStore, Lineage, MemStore, ReplayOptions, Result, SegmentId, SessionId,
    Store, StoreExt, Tip,
};
use proptest::collection::vec;
use proptest::prelude::*;
use serde_json::{json, Value};

/// How many sessions the operations choose from.
const SESSIONS: usize = 3;

// ---------------------------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------------------------

/// Operations refer to segments by an index into the list of every segment the run has named
/// so far (deleted ones included, so operations on them check the not-found paths), taken
/// modulo its length. Counts (`keep`, `at`, `from`) are taken modulo `count + 2`, so that one
/// past the end comes up too.
#[derive(Debug, Clone)]
enum Op {
    /// A new segment in one of the sessions.
    Create {
        session: usize,
        initial: Vec<Value>,
    },
    /// `create_segment` with the id of a known segment, in a chosen session: refused where it
    /// exists, a separate segment where it does not.
    CreateWithKnownId {
        target: usize,
        session: usize,
        initial: Vec<Value>,
    },
    Append {
        target: usize,
        value: Value,
    },
    Batch {
        target: usize,
        values: Vec<Value>,
    },
    /// `append_if` with the model's tip: must succeed.
    AppendIfCurrent {
        target: usize,
        values: Vec<Value>,
    },
    /// `append_if` with a tip that differs from the model's: must fail and change nothing.
    AppendIfStale {
        target: usize,
        which: usize,
        values: Vec<Value>,
    },
    Truncate {
        target: usize,
        keep: u64,
    },
    /// Fork into a fresh id, or into the id of a known segment (same session).
    Fork {
        target: usize,
        at: u64,
        into: Option<usize>,
    },
    Trace {
        target: usize,
        value: Value,
    },
    Read {
        target: usize,
        from: u64,
    },
    Tip {
        target: usize,
    },
    List,
    Delete {
        session: usize,
    },
    /// FsStore: drop the store and open a new one on the same root.
    Reopen,
    /// Another handle on the same store writes.
    Other(OtherOp),
}

#[derive(Debug, Clone)]
enum OtherOp {
    CreateWithKnownId {
        target: usize,
        session: usize,
        initial: Vec<Value>,
    },
    Batch {
        target: usize,
        values: Vec<Value>,
    },
    Truncate {
        target: usize,
        keep: u64,
    },
    Trace {
        target: usize,
        value: Value,
    },
    Delete {
        session: usize,
    },
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        "[a-z é\"\\\\\n\t🦀]{0,12}".prop_map(Value::from),
        (any::<u8>(), "[a-zü ]{0,6}")
            .prop_map(|(n, s)| json!({ "n": n, "s": s, "nested": [n, { "s": s }, null] })),
        any::<bool>().prop_map(Value::from),
        Just(Value::Null),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let target = 0..64usize;
    let count = 0..64u64;
    let session = 0..SESSIONS;
    prop_oneof![
        3 => (session.clone(), vec(value(), 0..3))
            .prop_map(|(session, initial)| Op::Create { session, initial }),
        1 => (target.clone(), session.clone(), vec(value(), 0..2)).prop_map(
            |(target, session, initial)| Op::CreateWithKnownId { target, session, initial }
        ),
        4 => (target.clone(), value()).prop_map(|(target, value)| Op::Append { target, value }),
        2 => (target.clone(), vec(value(), 0..4))
            .prop_map(|(target, values)| Op::Batch { target, values }),
        2 => (target.clone(), vec(value(), 0..3))
            .prop_map(|(target, values)| Op::AppendIfCurrent { target, values }),
        2 => (target.clone(), 0..4usize, vec(value(), 0..2))
            .prop_map(|(target, which, values)| Op::AppendIfStale { target, which, values }),
        2 => (target.clone(), count.clone())
            .prop_map(|(target, keep)| Op::Truncate { target, keep }),
        2 => (target.clone(), count.clone(), proptest::option::of(target.clone()))
            .prop_map(|(target, at, into)| Op::Fork { target, at, into }),
        2 => (target.clone(), value()).prop_map(|(target, value)| Op::Trace { target, value }),
        1 => (target.clone(), count.clone()).prop_map(|(target, from)| Op::Read { target, from }),
        1 => target.clone().prop_map(|target| Op::Tip { target }),
        1 => Just(Op::List),
        1 => session.clone().prop_map(|session| Op::Delete { session }),
        1 => Just(Op::Reopen),
        2 => (target.clone(), vec(value(), 1..3))
            .prop_map(|(target, values)| Op::Other(OtherOp::Batch { target, values })),
        1 => (target.clone(), count)
            .prop_map(|(target, keep)| Op::Other(OtherOp::Truncate { target, keep })),
        1 => session.clone().prop_map(|session| Op::Other(OtherOp::Delete { session })),
        1 => (target.clone(), session, vec(value(), 0..2)).prop_map(
            |(target, session, initial)| Op::Other(OtherOp::CreateWithKnownId { target, session, initial })
        ),
        1 => (target, value())
            .prop_map(|(target, value)| Op::Other(OtherOp::Trace { target, value })),
    ]
}

// ---------------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Default, PartialEq)]
struct Segment {
    entries: Vec<Value>,
    generation: u64,
    fork: Option<Lineage>,
    trace: Vec<Value>,
}

impl Segment {
    fn tip(&self) -> Tip {
        Tip {
            count: self.entries.len() as u64,
            generation: self.generation,
        }
    }
}

#[derive(Debug, Default)]
struct Model {
    segments: BTreeMap<(SessionId, SegmentId), Segment>,
}

impl Model {
    fn get(&self, key: (SessionId, SegmentId)) -> Option<&Segment> {
        self.segments.get(&key)
    }

    /// Sessions holding at least one segment, newest first.
    fn sessions(&self) -> Vec<SessionId> {
        let mut out: Vec<SessionId> = self.segments.keys().map(|(s, _)| *s).collect();
        out.dedup();
        out.reverse();
        out
    }

    /// A session's segments, newest first.
    fn segments_of(&self, session: SessionId) -> Vec<(SegmentId, &Segment)> {
        self.segments
            .iter()
            .filter(|((s, _), _)| *s == session)
            .map(|((_, g), seg)| (*g, seg))
            .rev()
            .collect()
    }

    /// The newest session holding `segment`.
    fn find(&self, segment: SegmentId) -> Option<SessionId> {
        self.segments
            .keys()
            .filter(|(_, g)| *g == segment)
            .map(|(s, _)| *s)
            .max()
    }

    fn delete(&mut self, session: SessionId) -> bool {
        let before = self.segments.len();
        self.segments.retain(|(s, _), _| *s != session);
        self.segments.len() != before
    }
}

// ---------------------------------------------------------------------------------------------
// The harness
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Backend {
    Mem,
    Fs(FsOptions),
}

/// The store under test.
enum Media {
    Mem(MemStore),
    Fs(TempStore),
}

impl Media {
    fn store(&self) -> &dyn Store {
        match self {
            Self::Mem(store) => store,
            Self::Fs(temp) => temp.store(),
        }
    }
}

struct Harness {
    store: Media,
    /// FsStore: a second store on the same root, opened on first use and kept (so that its
    /// cached handles go stale too). Declared after `store`, whose directory outlives it
    /// anyway (removing it does not disturb open files).
    other: Option<FsStore>,
    sessions: Vec<SessionId>,
    known: Vec<(SessionId, SegmentId)>,
    model: Model,
}

#[track_caller]
fn expect_not_found<T: std::fmt::Debug>(result: Result<T>, key: (SessionId, SegmentId)) {
    match result {
        Err(Error::SegmentNotFound { session, segment }) if (session, segment) == key => {}
        other => panic!("expected SegmentNotFound for {key:?}, got {other:?}"),
    }
}

impl Harness {
    fn new(backend: Backend) -> Self {
        let mut sessions: Vec<SessionId> = (0..SESSIONS).map(|_| SessionId::new()).collect();
        sessions.sort();
        let store = match backend {
            Backend::Mem => Media::Mem(MemStore::new()),
            Backend::Fs(options) => Media::Fs(TempStore::with_options(options)),
        };
        Self {
            store,
            other: None,
            sessions,
            known: Vec::new(),
            model: Model::default(),
        }
    }

    fn pick(&self, target: usize) -> Option<(SessionId, SegmentId)> {
        (!self.known.is_empty()).then(|| self.known[target % self.known.len()])
    }

    fn remember(&mut self, key: (SessionId, SegmentId)) {
        if !self.known.contains(&key) {
            self.known.push(key);
        }
    }

    fn other(&mut self) -> &dyn Store {
        match &self.store {
            Media::Mem(store) => store,
            Media::Fs(temp) => self.other.get_or_insert_with(|| temp.open_another()),
        }
    }

    fn run(&mut self, ops: &[Op]) {
        self.check();
        for (step, op) in ops.iter().enumerate() {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.apply(op);
                self.check();
            }));
            if let Err(panic) = outcome {
                eprintln!("model test failed at step {step}: {op:?}");
                std::panic::resume_unwind(panic);
            }
        }
    }

    /// Appends through `store` (the main or the other handle) and updates the model.
    fn append_via(
        model: &mut Model,
        store: &dyn Store,
        key: (SessionId, SegmentId),
        values: &[Value],
    ) {
        let result = store.append_batch_raw(key.0, key.1, &raws(values));
        match model.segments.get_mut(&key) {
            Some(seg) => {
                seg.entries.extend_from_slice(values);
                assert_eq!(result.unwrap(), seg.tip(), "tip returned by append");
            }
            None => expect_not_found(result, key),
        }
    }

    fn truncate_via(model: &mut Model, store: &dyn Store, key: (SessionId, SegmentId), keep: u64) {
        let Some(seg) = model.segments.get_mut(&key) else {
            return expect_not_found(store.truncate(key.0, key.1, 0), key);
        };
        let count = seg.entries.len() as u64;
        let keep = keep % (count + 2);
        let result = store.truncate(key.0, key.1, keep);
        if keep > count {
            match result {
                Err(Error::BeyondEnd {
                    segment,
                    requested,
                    count: c,
                }) if segment == key.1 && requested == keep && c == count => {}
                other => panic!("truncate({keep}) of {count}: expected BeyondEnd, got {other:?}"),
            }
        } else {
            seg.entries.truncate(keep as usize);
            seg.generation += 1;
            assert_eq!(result.unwrap(), seg.tip(), "tip returned by truncate");
        }
    }

    /// `create_segment` of a given key: refused where it exists.
    fn create_via(
        model: &mut Model,
        known: &mut Vec<(SessionId, SegmentId)>,
        store: &dyn Store,
        key: (SessionId, SegmentId),
        initial: &[Value],
    ) {
        let result = store.create(key.0, key.1, initial);
        if model.get(key).is_some() {
            match result {
                Err(Error::SegmentExists { session, segment }) if (session, segment) == key => {}
                other => panic!("create over an existing segment: {other:?}"),
            }
        } else {
            assert_eq!(result.unwrap(), tip(initial.len() as u64, 0));
            model.segments.insert(
                key,
                Segment {
                    entries: initial.to_vec(),
                    ..Segment::default()
                },
            );
            if !known.contains(&key) {
                known.push(key);
            }
        }
    }

    fn trace_via(model: &mut Model, store: &dyn Store, key: (SessionId, SegmentId), value: &Value) {
        let result = store.append_trace(key.0, key.1, value);
        match model.segments.get_mut(&key) {
            Some(seg) => {
                result.unwrap();
                seg.trace.push(value.clone());
            }
            None => expect_not_found(result, key),
        }
    }

    fn delete_via(model: &mut Model, store: &dyn Store, session: SessionId) {
        let result = store.delete_session(session);
        if model.delete(session) {
            result.unwrap();
        } else {
            match result {
                Err(Error::SessionNotFound(s)) if s == session => {}
                other => panic!("delete of a missing session: {other:?}"),
            }
        }
    }

    fn apply(&mut self, op: &Op) {
        let store = self.store.store();
        match op {
            Op::Create { session, initial } => {
                let key = (self.sessions[*session], SegmentId::new());
                let t = store.create(key.0, key.1, initial).unwrap();
                assert_eq!(t, tip(initial.len() as u64, 0));
                self.model.segments.insert(
                    key,
                    Segment {
                        entries: initial.clone(),
                        ..Segment::default()
                    },
                );
                self.remember(key);
            }
            Op::CreateWithKnownId {
                target,
                session,
                initial,
            } => {
                let Some((_, segment)) = self.pick(*target) else {
                    return;
                };
                let key = (self.sessions[*session], segment);
                Self::create_via(&mut self.model, &mut self.known, store, key, initial);
            }
            Op::Append { target, value } => {
                let Some(key) = self.pick(*target) else {
                    return;
                };
                Self::append_via(&mut self.model, store, key, std::slice::from_ref(value));
            }
            Op::Batch { target, values } => {
                let Some(key) = self.pick(*target) else {
                    return;
                };
                Self::append_via(&mut self.model, store, key, values);
            }
            Op::AppendIfCurrent { target, values } => {
                let Some(key) = self.pick(*target) else {
                    return;
                };
                let expected = self.model.get(key).map(Segment::tip).unwrap_or_default();
                let result = store.append_if(key.0, key.1, expected, &raws(values));
                match self.model.segments.get_mut(&key) {
                    Some(seg) => {
                        seg.entries.extend_from_slice(values);
                        assert_eq!(result.unwrap(), seg.tip(), "append_if with the model's tip");
                    }
                    None => expect_not_found(result, key),
                }
            }
            Op::AppendIfStale {
                target,
                which,
                values,
            } => {
                let Some(key) = self.pick(*target) else {
                    return;
                };
                let Some(seg) = self.model.get(key) else {
                    return expect_not_found(
                        store.append_if(key.0, key.1, Tip::default(), &raws(values)),
                        key,
                    );
                };
                let current = seg.tip();
                let mut stale = vec![
                    tip(current.count + 1, current.generation),
                    tip(current.count, current.generation + 1),
                ];
                if current.count > 0 {
                    stale.push(tip(current.count - 1, current.generation));
                }
                if current.generation > 0 {
                    stale.push(tip(current.count, current.generation - 1));
                }
                let expected = stale[which % stale.len()];
                match store.append_if(key.0, key.1, expected, &raws(values)) {
                    Err(Error::ConcurrentWriter {
                        segment,
                        expected: e,
                        found,
                    }) if segment == key.1 && e == expected && found == current => {}
                    other => panic!(
                        "append_if({expected}) on a segment at {current}: expected ConcurrentWriter, got {other:?}"
                    ),
                }
            }
            Op::Truncate { target, keep } => {
                let Some(key) = self.pick(*target) else {
                    return;
                };
                Self::truncate_via(&mut self.model, store, key, *keep);
            }
            Op::Fork { target, at, into } => {
                let Some(source) = self.pick(*target) else {
                    return;
                };
                let into_id = match into {
                    Some(i) => self.known[i % self.known.len()].1,
                    None => SegmentId::new(),
                };
                let into_key = (source.0, into_id);
                let Some(src) = self.model.get(source).cloned() else {
                    return expect_not_found(store.fork(source.0, source.1, 0, into_id), source);
                };
                let count = src.entries.len() as u64;
                let at = at % (count + 2);
                let result = store.fork(source.0, source.1, at, into_id);
                if at > count {
                    match result {
                        Err(Error::BeyondEnd {
                            segment,
                            requested,
                            count: c,
                        }) if segment == source.1 && requested == at && c == count => {}
                        other => {
                            panic!("fork at {at} of {count}: expected BeyondEnd, got {other:?}")
                        }
                    }
                } else if self.model.get(into_key).is_some() {
                    match result {
                        Err(Error::SegmentExists { session, segment })
                            if (session, segment) == into_key => {}
                        other => panic!("fork into an existing segment: {other:?}"),
                    }
                } else {
                    assert_eq!(result.unwrap(), tip(at, 0), "tip returned by fork");
                    self.model.segments.insert(
                        into_key,
                        Segment {
                            entries: src.entries[..at as usize].to_vec(),
                            generation: 0,
                            fork: Some(Lineage {
                                segment: source.1,
                                at,
                            }),
                            trace: Vec::new(),
                        },
                    );
                    self.remember(into_key);
                }
            }
            Op::Trace { target, value } => {
                let Some(key) = self.pick(*target) else {
                    return;
                };
                Self::trace_via(&mut self.model, store, key, value);
            }
            Op::Read { target, from } => {
                let Some(key) = self.pick(*target) else {
                    return;
                };
                let mut got = Vec::new();
                let Some(seg) = self.model.get(key) else {
                    return expect_not_found(store.read::<Value>(key.0, key.1), key);
                };
                let count = seg.entries.len() as u64;
                let from = from % (count + 2);
                let report = store
                    .replay(
                        key.0,
                        key.1,
                        &ReplayOptions::strict().from_seq(from),
                        |meta, v: Value| {
                            got.push((meta.seq, v));
                            Ok(())
                        },
                    )
                    .unwrap();
                let expected: Vec<(u64, Value)> = (0u64..)
                    .zip(seg.entries.iter().cloned())
                    .skip(from as usize)
                    .collect();
                assert_eq!(got, expected, "replay from {from}");
                assert_eq!(report.entries, count);
                assert!(report.is_clean(), "{report:?}");
            }
            Op::Tip { target } => {
                let Some(key) = self.pick(*target) else {
                    return;
                };
                match self.model.get(key) {
                    Some(seg) => assert_eq!(store.tip(key.0, key.1).unwrap(), seg.tip()),
                    None => expect_not_found(store.tip(key.0, key.1), key),
                }
            }
            Op::List => {
                // `check` compares the listings after every step.
            }
            Op::Delete { session } => {
                Self::delete_via(&mut self.model, store, self.sessions[*session]);
            }
            Op::Reopen => {
                if let Media::Fs(temp) = &mut self.store {
                    temp.reopen();
                }
            }
            Op::Other(other) => self.apply_other(other),
        }
    }

    fn apply_other(&mut self, op: &OtherOp) {
        let target = match op {
            OtherOp::CreateWithKnownId { target, .. }
            | OtherOp::Batch { target, .. }
            | OtherOp::Truncate { target, .. }
            | OtherOp::Trace { target, .. } => Some(*target),
            OtherOp::Delete { .. } => None,
        };
        let key = match target {
            Some(target) => match self.pick(target) {
                Some(key) => key,
                None => return,
            },
            None => (SessionId::new(), SegmentId::new()),
        };
        let (mut model, mut known) = (
            std::mem::take(&mut self.model),
            std::mem::take(&mut self.known),
        );
        let sessions = self.sessions.clone();
        let other = self.other();
        match op {
            OtherOp::CreateWithKnownId {
                session, initial, ..
            } => {
                let key = (sessions[*session], key.1);
                Self::create_via(&mut model, &mut known, other, key, initial);
            }
            OtherOp::Batch { values, .. } => Self::append_via(&mut model, other, key, values),
            OtherOp::Truncate { keep, .. } => Self::truncate_via(&mut model, other, key, *keep),
            OtherOp::Trace { value, .. } => Self::trace_via(&mut model, other, key, value),
            OtherOp::Delete { session } => Self::delete_via(&mut model, other, sessions[*session]),
        }
        self.model = model;
        self.known = known;
    }

    /// Compares everything the store shows with the model.
    fn check(&self) {
        let store = self.store.store();
        assert_eq!(
            store.list_sessions().unwrap(),
            self.model.sessions(),
            "list_sessions"
        );
        for &session in &self.sessions {
            let expected = self.model.segments_of(session);
            if expected.is_empty() {
                match store.list_segments(session) {
                    Err(Error::SessionNotFound(s)) if s == session => {}
                    other => panic!("list_segments of a session with no segments: {other:?}"),
                }
                continue;
            }
            let listed = store.list_segments(session).unwrap();
            let ids: Vec<SegmentId> = listed.iter().map(|i| i.segment).collect();
            let expected_ids: Vec<SegmentId> = expected.iter().map(|(g, _)| *g).collect();
            assert_eq!(ids, expected_ids, "list_segments({session})");
            for (info, (_, seg)) in listed.iter().zip(&expected) {
                assert_eq!(info.session, session);
                assert_eq!(info.tip, seg.tip(), "listed tip of {}", info.segment);
                assert_eq!(info.fork, seg.fork, "listed lineage of {}", info.segment);
                assert_eq!(info.damage, None);
            }
        }
        for &key in &self.known {
            let (session, segment) = key;
            assert_eq!(
                store.find_session(segment).unwrap(),
                self.model.find(segment),
                "find_session({segment})"
            );
            match self.model.get(key) {
                Some(seg) => {
                    assert!(store.exists(session, segment).unwrap());
                    assert_eq!(store.tip(session, segment).unwrap(), seg.tip(), "tip");
                    assert_eq!(
                        store.read::<Value>(session, segment).unwrap(),
                        seg.entries,
                        "entries of {segment}"
                    );
                    assert_eq!(
                        store.read_trace::<Value>(session, segment).unwrap(),
                        seg.trace,
                        "trace of {segment}"
                    );
                }
                None => {
                    assert!(!store.exists(session, segment).unwrap());
                    expect_not_found(store.tip(session, segment), key);
                    expect_not_found(store.read_raw(session, segment), key);
                }
            }
        }
    }
}

fn run(backend: Backend, ops: &[Op]) {
    Harness::new(backend).run(ops);
}

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

fn config(default_cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases: cases(default_cases),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Every file stays open, so handles cached before another handle's write go stale.
fn fs_cached() -> Backend {
    Backend::Fs(FsOptions::default())
}

/// One open file: almost every operation goes through eviction and reopening.
fn fs_one_open_file() -> Backend {
    Backend::Fs(FsOptions {
        max_open_files: 1,
        ..FsOptions::default()
    })
}

proptest! {
    #![proptest_config(config(96))]

    #[test]
    fn mem_store_matches_the_model(ops in vec(op(), 1..40)) {
        run(Backend::Mem, &ops);
    }
}

proptest! {
    #![proptest_config(config(48))]

    #[test]
    fn fs_store_matches_the_model(ops in vec(op(), 1..40)) {
        run(fs_cached(), &ops);
    }

    #[test]
    fn fs_store_with_one_open_file_matches_the_model(ops in vec(op(), 1..40)) {
        run(fs_one_open_file(), &ops);
    }
}

// ---------------------------------------------------------------------------------------------
// Named sequences: the cases the model is about, pinned so they run on every build.
// ---------------------------------------------------------------------------------------------

fn all_backends() -> [Backend; 3] {
    [Backend::Mem, fs_cached(), fs_one_open_file()]
}

#[test]
fn another_handle_truncating_is_seen_through_a_cached_handle() {
    let ops = [
        Op::Create {
            session: 0,
            initial: vec![json!(0), json!(1), json!(2)],
        },
        Op::Append {
            target: 0,
            value: json!(3),
        },
        Op::Other(OtherOp::Truncate { target: 0, keep: 1 }),
        Op::AppendIfStale {
            target: 0,
            which: 1,
            values: vec![json!("stale")],
        },
        Op::AppendIfCurrent {
            target: 0,
            values: vec![json!("current")],
        },
        Op::Other(OtherOp::Batch {
            target: 0,
            values: vec![json!("other")],
        }),
        Op::Append {
            target: 0,
            value: json!("mine"),
        },
    ];
    for backend in all_backends() {
        run(backend, &ops);
    }
}

#[test]
fn another_handle_deleting_and_the_id_coming_back_is_followed() {
    let ops = [
        Op::Create {
            session: 1,
            initial: vec![json!("a")],
        },
        Op::Trace {
            target: 0,
            value: json!("t"),
        },
        Op::Other(OtherOp::Delete { session: 1 }),
        Op::Append {
            target: 0,
            value: json!("after delete"),
        },
        Op::CreateWithKnownId {
            target: 0,
            session: 1,
            initial: vec![],
        },
        Op::Append {
            target: 0,
            value: json!("fresh"),
        },
        Op::Other(OtherOp::Batch {
            target: 0,
            values: vec![json!("other")],
        }),
        Op::Truncate { target: 0, keep: 1 },
    ];
    for backend in all_backends() {
        run(backend, &ops);
    }
}

#[test]
fn reopening_keeps_entries_generations_lineage_and_traces() {
    let ops = [
        Op::Create {
            session: 2,
            initial: vec![json!(0), json!(1)],
        },
        Op::Truncate { target: 0, keep: 1 },
        Op::Fork {
            target: 0,
            at: 1,
            into: None,
        },
        Op::Trace {
            target: 1,
            value: json!("fork trace"),
        },
        Op::Reopen,
        Op::AppendIfCurrent {
            target: 0,
            values: vec![json!("after reopen")],
        },
        Op::AppendIfStale {
            target: 1,
            which: 0,
            values: vec![json!("stale")],
        },
        Op::Reopen,
        Op::Read { target: 0, from: 1 },
    ];
    for backend in all_backends() {
        run(backend, &ops);
    }
}

#[test]
fn a_segment_id_reused_in_another_session_is_a_separate_segment() {
    let ops = [
        Op::Create {
            session: 0,
            initial: vec![json!("older")],
        },
        Op::Create {
            session: 2,
            initial: vec![json!("newer")],
        },
        // The first segment's id, forked into the newer session: found there from now on.
        Op::Fork {
            target: 1,
            at: 1,
            into: Some(0),
        },
        Op::Append {
            target: 2,
            value: json!("in the newer session"),
        },
        Op::Delete { session: 2 },
        Op::Fork {
            target: 0,
            at: 0,
            into: Some(0),
        },
    ];
    for backend in all_backends() {
        run(backend, &ops);
    }
}

/// Found by this model: `FsStore` kept the trace handle it had cached for a segment that
/// another handle then deleted (with its session) and created again, without a trace. The
/// next trace append followed the stale handle to the missing file and failed with
/// `SegmentNotFound` although the segment existed; it now drops the stale handle and creates
/// the trace afresh.
#[test]
fn a_trace_append_after_another_handle_deleted_and_recreated_the_segment_starts_a_new_trace() {
    let ops = [
        Op::Create {
            session: 0,
            initial: vec![json!("a")],
        },
        Op::Trace {
            target: 0,
            value: json!("old trace"),
        },
        Op::Other(OtherOp::Delete { session: 0 }),
        Op::Other(OtherOp::CreateWithKnownId {
            target: 0,
            session: 0,
            initial: vec![],
        }),
        Op::Trace {
            target: 0,
            value: json!("new trace"),
        },
        Op::Other(OtherOp::Trace {
            target: 0,
            value: json!("other's event"),
        }),
        Op::Trace {
            target: 0,
            value: json!("mine again"),
        },
    ];
    for backend in all_backends() {
        run(backend, &ops);
    }
}
