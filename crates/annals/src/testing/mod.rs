//! The conformance suite: the behaviour every [`Store`] must have, written once and run against
//! every backend (the filesystem store, the memory store, and yours).
//!
//! Each scenario is a public function taking the store under test — `&dyn Store`, or
//! `Arc<dyn Store>` for the ones that spawn threads — and panicking with a message that says
//! what went wrong. Scenarios write only to sessions they create, but the listing scenario
//! expects no newer session to appear while it runs: give each scenario a fresh store (the
//! macro and [`run_all`] do). A scenario runs in well under a second on the in-memory and
//! filesystem stores; a few spawn up to eight threads.
//!
//! # Running it against a third-party backend
//!
//! Add `annals = { version = "…", features = ["testing"] }` to your `[dev-dependencies]`, then
//! in an integration test:
//!
//! ```
//! // tests/conformance.rs of your crate. The expression is evaluated once per test, so each
//! // test gets a fresh store. It may be a store, an `Arc<dyn Store>`, or a `Fixture` that also
//! // keeps alive what the store needs (a temporary directory, a server connection).
//! annals::conformance_tests!(annals::MemStore::new());
//! # fn main() {}
//! ```
//!
//! This expands to one `#[test]` per scenario, named after it, so a failure names the
//! behaviour that broke. A backend that keeps data on disk wraps its temporary directory in
//! the fixture:
//!
//! ```
//! use annals::testing::Fixture;
//!
//! fn fresh() -> Fixture {
//!     let dir = tempfile::tempdir().unwrap();
//!     let store = annals::FsStore::open(dir.path()).unwrap();
//!     // The directory is removed when the fixture is dropped, after the store.
//!     Fixture::new(store).keeping(dir)
//! }
//!
//! annals::conformance_tests!(fresh());
//! # fn main() {}
//! ```
//!
//! Without the macro (a custom harness, or one test that runs everything), [`run_all`] runs
//! every scenario and panics with the list of the ones that failed; [`check_all`] returns that
//! list instead:
//!
//! ```
//! annals::testing::run_all(|| annals::MemStore::new().into());
//! ```
//!
//! The scenarios are also listed in [`SCENARIOS`], to run one at a time.

#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "a test suite reports a failure by panicking, with the index or value at fault"
)]

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::ControlFlow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::{
    AttachmentMeta, BlobId, Body, Error, FsOptions, FsStore, Lineage, RawEntry, ReplayOptions,
    Result, ScanReport, SegmentId, SegmentInfo, SegmentWriter, SessionId, Store, StoreExt, Tip,
    MAX_INLINE, MAX_LINE,
};

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// A store under test, and whatever must outlive it (a temporary directory, say).
pub struct Fixture {
    store: Arc<dyn Store>,
    // Declared after `store`, so dropped after it: the directory must outlive the store's files.
    guard: Option<Box<dyn Any>>,
}

impl fmt::Debug for Fixture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fixture")
            .field("guard", &self.guard.is_some())
            .finish_non_exhaustive()
    }
}

impl Fixture {
    /// Wraps a store.
    pub fn new(store: impl Store + 'static) -> Self {
        Self::from_arc(Arc::new(store))
    }

    /// Wraps a store that is already shared.
    #[must_use]
    pub fn from_arc(store: Arc<dyn Store>) -> Self {
        Self { store, guard: None }
    }

    /// Keeps `guard` alive until the fixture is dropped, and drops it after the store.
    #[must_use]
    pub fn keeping(mut self, guard: impl Any) -> Self {
        self.guard = Some(Box::new(guard));
        self
    }

    /// The store, borrowed.
    #[must_use]
    pub fn store(&self) -> &dyn Store {
        &*self.store
    }

    /// The store, shared (for scenarios that hand it to spawned threads).
    #[must_use]
    pub fn shared(&self) -> Arc<dyn Store> {
        Arc::clone(&self.store)
    }
}

impl<S: Store + 'static> From<S> for Fixture {
    fn from(store: S) -> Self {
        Self::new(store)
    }
}

impl From<Arc<dyn Store>> for Fixture {
    fn from(store: Arc<dyn Store>) -> Self {
        Self::from_arc(store)
    }
}

/// A fresh [`FsStore`] in a new temporary directory (removed when the fixture is dropped). The
/// store's root is a subdirectory that does not exist yet, so opening it also creates it.
///
/// # Panics
/// If the directory cannot be created or the store cannot be opened.
#[must_use]
pub fn temp_fs_store(options: FsOptions) -> Fixture {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let store = FsStore::open_with(dir.path().join("store"), options).expect("open an FsStore");
    Fixture::new(store).keeping(dir)
}

/// One scenario of the suite, by name.
#[derive(Clone, Copy)]
pub struct Scenario {
    /// The scenario's name: the name of its function in this module, read as a specification.
    pub name: &'static str,
    /// Runs it against the fixture's store; panics on failure.
    pub run: fn(&Fixture),
}

impl fmt::Debug for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// A scenario that failed, with its panic message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The scenario's name.
    pub scenario: &'static str,
    /// What it reported.
    pub message: String,
}

/// Every scenario of the suite, in the order the module lists them.
pub const SCENARIOS: &[Scenario] = crate::__annals_scenarios!(__annals_scenario_table {});

/// Runs every scenario, each against a store fresh from `fresh`, and returns the ones that
/// failed (empty if the store conforms). Each failure's panic is also reported by the panic
/// hook as usual.
pub fn check_all(mut fresh: impl FnMut() -> Fixture) -> Vec<Failure> {
    let mut failures = Vec::new();
    for scenario in SCENARIOS {
        let fixture = fresh();
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| (scenario.run)(&fixture))) {
            failures.push(Failure {
                scenario: scenario.name,
                message: panic_message(payload.as_ref()),
            });
        }
    }
    failures
}

/// Runs every scenario (see [`check_all`]).
///
/// # Panics
/// If any scenario fails, naming every one that did.
pub fn run_all(fresh: impl FnMut() -> Fixture) {
    let failures = check_all(fresh);
    if !failures.is_empty() {
        let list: Vec<String> = failures
            .iter()
            .map(|f| format!("  {}: {}", f.scenario, f.message))
            .collect();
        panic!(
            "{} of {} conformance scenarios failed:\n{}",
            failures.len(),
            SCENARIOS.len(),
            list.join("\n")
        );
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic without a message)".to_owned()
    }
}

/// The list of scenarios, handed to `$callback` (a macro exported by this crate) after
/// `$args`. The one place that lists them: the test macro and [`SCENARIOS`] both come from it.
#[doc(hidden)]
#[macro_export]
macro_rules! __annals_scenarios {
    ($callback:ident { $($args:tt)* }) => {
        $crate::$callback! {
            $($args)*
            store: [
                typed_entries_round_trip_with_nested_data_unicode_and_escapes,
                reading_into_a_type_that_does_not_fit_names_the_entry,
                create_segment_starts_with_its_initial_entries,
                create_segment_refuses_to_clobber_and_changes_nothing,
                batch_append_numbers_entries_consecutively_in_order,
                empty_batch_writes_nothing_and_returns_the_tip,
                operations_on_a_missing_segment_fail_with_segment_not_found,
                operations_on_a_missing_session_fail_with_not_found_and_create_nothing,
                entry_exactly_at_the_line_limit_is_accepted,
                entries_of_every_size_up_to_the_maximum_round_trip_through_every_write_path,
                entry_over_the_store_maximum_is_refused_with_nothing_written,
                batch_with_one_entry_over_the_maximum_writes_nothing,
                raw_replay_hands_out_blob_references_that_get_blob_resolves,
                attachments_are_stored_once_listed_in_order_and_read_back_checked,
                gc_removes_only_blobs_that_nothing_refers_to,
                tip_and_entry_count_follow_every_operation,
                truncate_keeps_the_first_entries_and_bumps_the_generation,
                truncate_beyond_the_end_is_refused_and_changes_nothing,
                append_if_refuses_a_stale_tip_and_writes_nothing,
                append_then_truncate_back_to_the_same_count_is_still_detected,
                writer_resync_accepts_the_current_tip_and_continues,
                writer_fork_continues_in_a_new_segment_and_leaves_the_old_one_alone,
                segment_writer_keeps_its_own_tally,
                fork_copies_the_prefix_and_records_lineage,
                fork_beyond_the_end_is_refused_and_creates_nothing,
                fork_into_an_existing_segment_is_refused_and_changes_nothing,
                listings_are_newest_first_and_describe_each_segment,
                find_session_and_exists_locate_segments,
                deleted_session_is_not_found_anywhere_and_can_be_created_again,
                session_modified_moves_forward_on_append_and_not_on_reads,
                trace_is_separate_from_the_log_and_survives_truncate,
                replay_from_seq_delivers_later_entries_and_checks_all,
                replay_stops_with_the_sink_error,
                replay_stops_early_when_the_sink_breaks,
                entries_carry_their_append_time_where_the_backend_records_it,
                sync_changes_nothing_visible_and_needs_the_segment,
                writer_truncate_keeps_its_tally_and_is_refused_when_stale,
                tolerant_replay_and_verify_of_a_clean_segment_are_clean,
                pretty_multi_line_json_is_stored_as_one_line_and_reads_back_equal,
                large_segments_are_cut_and_copied_at_exactly_the_right_entry,
                a_borrowed_store_serves_several_threads_at_once,
                replays_during_appends_and_truncates_always_see_a_whole_segment,
            ],
            shared: [
                concurrent_appends_from_many_threads_get_unique_consecutive_sequence_numbers,
                concurrent_detector_writers_never_both_succeed_on_one_tip,
                an_owned_writer_moves_to_another_thread_and_keeps_detecting,
            ],
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __annals_scenario_table {
    (store: [$($store:ident),* $(,)?], shared: [$($shared:ident),* $(,)?], ) => {
        &[
            $($crate::testing::Scenario {
                name: stringify!($store),
                run: |fixture| $crate::testing::$store(fixture.store()),
            },)*
            $($crate::testing::Scenario {
                name: stringify!($shared),
                run: |fixture| $crate::testing::$shared(fixture.shared()),
            },)*
        ]
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __annals_conformance_tests {
    (fixture: ($fixture:expr), store: [$($store:ident),* $(,)?], shared: [$($shared:ident),* $(,)?], ) => {
        $(
            #[test]
            fn $store() {
                let fixture = $crate::testing::Fixture::from($fixture);
                $crate::testing::$store(fixture.store());
            }
        )*
        $(
            #[test]
            fn $shared() {
                let fixture = $crate::testing::Fixture::from($fixture);
                $crate::testing::$shared(fixture.shared());
            }
        )*
    };
}

/// Expands to one `#[test]` per conformance scenario, each running against a fresh store made
/// by evaluating the expression (a [`Store`], an `Arc<dyn Store>` or a
/// [`Fixture`](crate::testing::Fixture)). Put it in its own module when you run the suite
/// against several configurations, since the test functions are named after the scenarios.
/// Needs the `testing` feature. See [`testing`](crate::testing).
#[macro_export]
macro_rules! conformance_tests {
    ($fixture:expr $(,)?) => {
        $crate::__annals_scenarios! {
            __annals_conformance_tests { fixture: ($fixture), }
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

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

#[track_caller]
fn ok<T>(result: Result<T>) -> T {
    match result {
        Ok(v) => v,
        Err(e) => panic!("unexpected error: {e} ({e:?})"),
    }
}

fn entry(i: u64) -> Value {
    json!({ "i": i, "text": format!("entry {i}") })
}

fn entries(range: std::ops::Range<u64>) -> Vec<Value> {
    range.map(entry).collect()
}

fn raw(value: &Value) -> RawEntry {
    ok(RawEntry::from_value(value))
}

/// A new segment in a new session holding `entry(0..n)`.
fn new_segment(store: &dyn Store, n: u64) -> (SessionId, SegmentId) {
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
fn values(store: &dyn Store, session: SessionId, segment: SegmentId) -> Vec<Value> {
    ok(store.read(session, segment))
}

/// Sequence numbers and entries delivered by a replay, and its report.
#[track_caller]
fn replayed(
    store: &dyn Store,
    session: SessionId,
    segment: SegmentId,
    options: &ReplayOptions,
) -> (Vec<(u64, Value)>, ScanReport) {
    let mut out = Vec::new();
    let report = ok(store.replay(session, segment, options, |meta, v: Value| {
        out.push((meta.seq, v));
        Ok(())
    }));
    (out, report)
}

#[track_caller]
fn seqs(store: &dyn Store, session: SessionId, segment: SegmentId) -> Vec<u64> {
    replayed(store, session, segment, &ReplayOptions::strict())
        .0
        .into_iter()
        .map(|(seq, _)| seq)
        .collect()
}

fn tip(count: u64, generation: u64) -> Tip {
    Tip { count, generation }
}

/// Everything observable about one segment through the `Store` trait, to show an operation
/// changed nothing.
#[derive(Debug, PartialEq)]
struct Snapshot {
    tip: Tip,
    entries: Vec<RawEntry>,
    trace: Vec<Value>,
    fork: Option<Lineage>,
}

#[track_caller]
fn snapshot(store: &dyn Store, session: SessionId, segment: SegmentId) -> Snapshot {
    Snapshot {
        tip: ok(store.tip(session, segment)),
        entries: ok(store.read_raw(session, segment)),
        trace: ok(store.read_trace(session, segment)),
        fork: info(store, session, segment).fork,
    }
}

#[track_caller]
fn info(store: &dyn Store, session: SessionId, segment: SegmentId) -> SegmentInfo {
    ok(store.list_segments(session))
        .into_iter()
        .find(|i| i.segment == segment)
        .unwrap_or_else(|| panic!("segment {segment} is not listed in session {session}"))
}

fn listed_segments(store: &dyn Store, session: SessionId) -> Vec<SegmentId> {
    ok(store.list_segments(session))
        .into_iter()
        .map(|i| i.segment)
        .collect()
}

/// A JSON string whose text (quotes included) is exactly `len` bytes, made of two-byte
/// characters where possible so that a backend counting characters instead of bytes is caught.
fn json_string_of_len(len: usize) -> RawEntry {
    assert!(len >= 2);
    let body = len - 2;
    let mut s = String::with_capacity(len);
    s.push('"');
    for _ in 0..body / 2 {
        s.push('é');
    }
    if body % 2 == 1 {
        s.push('a');
    }
    s.push('"');
    assert_eq!(s.len(), len);
    ok(RawEntry::from_json(&s))
}

/// Bytes a line needs besides its entry's JSON, derived from the format:
/// `{"crc":"xxxxxxxx","seq":N,"e":ENTRY}` and a newline.
fn line_overhead(seq: u64) -> usize {
    format!("{{\"crc\":\"{:08x}\",\"seq\":{seq},\"e\":}}\n", 0u32).len()
}

/// The longest entry JSON that fits in a line with sequence number `seq`.
fn max_json_len(seq: u64) -> usize {
    MAX_LINE - line_overhead(seq)
}

#[track_caller]
fn assert_segment_not_found<T: fmt::Debug>(
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
fn assert_session_not_found<T: fmt::Debug>(what: &str, result: Result<T>, session: SessionId) {
    match result {
        Err(Error::SessionNotFound(s)) if s == session => {}
        other => panic!(
            "{what} on missing session {session}: expected SessionNotFound naming it, got {other:?}"
        ),
    }
}

/// Every operation on one segment fails with `SegmentNotFound` and creates nothing.
#[track_caller]
fn assert_every_segment_operation_is_not_found(
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

fn join<T>(handle: std::thread::JoinHandle<T>) -> T {
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

// ---------------------------------------------------------------------------------------------
// Entries in and out
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Role {
    User,
    Assistant,
    Tool { name: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ToolCall {
    id: String,
    arguments: Value,
    matrix: Vec<Vec<i64>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Turn {
    role: Role,
    text: String,
    tool_calls: Vec<ToolCall>,
    metadata: BTreeMap<String, Value>,
    tokens: Option<u64>,
}

/// Strings that break naive line-oriented or JSON-oblivious storage.
const AWKWARD: &[&str] = &[
    "",
    "quote \" backslash \\ slash / newline \n cr \r tab \t",
    "nul \u{0} bell \u{7} escape \u{1b} delete \u{7f}",
    "ünïcødé ✓ 日本語 עברית العربية 🦀 👩‍👩‍👧",
    "line separator \u{2028} paragraph separator \u{2029} bom \u{feff}",
    "{\"crc\":\"00000000\",\"seq\":0,\"e\":{}}\n{\"annals\":1}",
    "}\n{",
    "\\u0000 is text here, not an escape",
];

fn turns() -> Vec<Turn> {
    let mut out = Vec::new();
    for (i, text) in AWKWARD.iter().enumerate() {
        let i = i as u64;
        let mut metadata = BTreeMap::new();
        metadata.insert("big".to_owned(), json!(u64::MAX));
        metadata.insert("small".to_owned(), json!(i64::MIN));
        metadata.insert("half".to_owned(), json!(-2.5));
        metadata.insert((*text).to_owned(), json!([null, true, false, {}, []]));
        out.push(Turn {
            role: match i % 3 {
                0 => Role::User,
                1 => Role::Assistant,
                _ => Role::Tool {
                    name: (*text).to_owned(),
                },
            },
            text: (*text).to_owned(),
            tool_calls: vec![ToolCall {
                id: format!("call-{i}"),
                arguments: json!({ "q": text, "deep": { "deeper": [[[text]]] } }),
                matrix: vec![vec![], vec![-1, 0, 1], vec![i64::MAX]],
            }],
            metadata,
            tokens: i.is_multiple_of(2).then_some(i * 1000),
        });
    }
    out
}

/// A caller's own struct, with nested data, every awkward string and extreme numbers, goes in
/// through each typed path (create, append, batch) and comes back equal, in order.
pub fn typed_entries_round_trip_with_nested_data_unicode_and_escapes(store: &dyn Store) {
    let turns = turns();
    let (session, segment) = (SessionId::new(), SegmentId::new());
    let (first, rest) = turns.split_at(2);
    let (single, batch) = rest.split_at(1);
    ok(store.create(session, segment, first));
    ok(store.append(session, segment, &single[0]));
    let t = ok(store.append_batch(session, segment, batch));
    assert_eq!(t, tip(turns.len() as u64, 0));

    let back: Vec<Turn> = ok(store.read(session, segment));
    assert_eq!(back, turns, "typed read");

    let raws = ok(store.read_raw(session, segment));
    assert_eq!(raws.len(), turns.len());
    for (raw_back, turn) in raws.iter().zip(&turns) {
        assert_eq!(
            raw_back,
            &ok(RawEntry::from_value(turn)),
            "raw text is kept as serialized"
        );
        assert!(
            !raw_back.as_str().contains('\n'),
            "an entry's text holds a raw newline: {raw_back}"
        );
    }

    let (delivered, report) = replayed(store, session, segment, &ReplayOptions::strict());
    let expected: Vec<(u64, Value)> = (0u64..)
        .zip(&turns)
        .map(|(seq, t)| (seq, serde_json::to_value(t).unwrap()))
        .collect();
    assert_eq!(delivered, expected, "replay delivers (seq, entry) in order");
    assert_eq!(report.entries, turns.len() as u64);
}

/// Reading into a type the stored JSON does not fit fails with `Deserialize`, naming the
/// segment and the sequence number of the entry that does not fit.
pub fn reading_into_a_type_that_does_not_fit_names_the_entry(store: &dyn Store) {
    let (session, segment) = (SessionId::new(), SegmentId::new());
    let good = turns().remove(1);
    ok(store.create(session, segment, std::slice::from_ref(&good)));
    ok(store.append(session, segment, &json!({ "role": 5 })));
    assert_err!(
        store.read::<Turn>(session, segment),
        Error::Deserialize { segment: g, seq: 1, .. } if g == segment
    );
    // The entry is stored all the same; only the caller's type was wrong.
    assert_eq!(values(store, session, segment).len(), 2);
}

/// A segment created with initial entries holds exactly them, numbered from 0, and its
/// session appears; an empty one exists and reads empty.
pub fn create_segment_starts_with_its_initial_entries(store: &dyn Store) {
    let session = SessionId::new();
    let (full, empty) = (SegmentId::new(), SegmentId::new());
    assert_session_not_found(
        "list_segments before create",
        store.list_segments(session),
        session,
    );
    let raws: Vec<RawEntry> = entries(0..3).iter().map(raw).collect();
    assert_eq!(ok(store.create_segment(session, full, &raws)), tip(3, 0));
    assert_eq!(ok(store.create_segment(session, empty, &[])), tip(0, 0));

    assert_eq!(ok(store.read_raw(session, full)), raws);
    assert_eq!(seqs(store, session, full), vec![0, 1, 2]);
    assert_eq!(ok(store.tip(session, full)), tip(3, 0));
    assert!(ok(store.exists(session, empty)));
    assert!(values(store, session, empty).is_empty());
    assert_eq!(ok(store.tip(session, empty)), tip(0, 0));
    assert!(ok(store.list_sessions()).contains(&session));
    let listed: BTreeSet<SegmentId> = listed_segments(store, session).into_iter().collect();
    assert_eq!(listed, BTreeSet::from([full, empty]));
}

/// Creating a segment that exists fails with `SegmentExists` and leaves it exactly as it was:
/// entries, tip, trace and lineage.
pub fn create_segment_refuses_to_clobber_and_changes_nothing(store: &dyn Store) {
    let (session, segment) = new_segment(store, 2);
    ok(store.append(session, segment, &entry(2)));
    ok(store.truncate(session, segment, 3));
    ok(store.append_trace(session, segment, &json!("event")));
    let forked = SegmentId::new();
    ok(store.fork(session, segment, 1, forked));
    for target in [segment, forked] {
        let before = snapshot(store, session, target);
        for initial in [vec![], entries(7..9)] {
            assert_err!(
                store.create(session, target, &initial),
                Error::SegmentExists { session: s, segment: g } if s == session && g == target
            );
            assert_eq!(
                snapshot(store, session, target),
                before,
                "clobbered {target}"
            );
        }
    }
}

/// Appends, single or batched, get the next sequence numbers in the order given, and each
/// returns the new tip.
pub fn batch_append_numbers_entries_consecutively_in_order(store: &dyn Store) {
    let (session, segment) = new_segment(store, 2);
    assert_eq!(
        ok(store.append_batch(session, segment, &entries(2..7))),
        tip(7, 0)
    );
    assert_eq!(ok(store.append(session, segment, &entry(7))), tip(8, 0));
    let raws: Vec<RawEntry> = entries(8..10).iter().map(raw).collect();
    assert_eq!(
        ok(store.append_batch_raw(session, segment, &raws)),
        tip(10, 0)
    );
    assert_eq!(
        ok(store.append_raw(session, segment, &raw(&entry(10)))),
        tip(11, 0)
    );
    let (delivered, _) = replayed(store, session, segment, &ReplayOptions::strict());
    let expected: Vec<(u64, Value)> = (0..11).map(|i| (i, entry(i))).collect();
    assert_eq!(delivered, expected);
}

/// An empty batch writes nothing and returns the current tip, through every append path; the
/// detector still compares tips for it.
pub fn empty_batch_writes_nothing_and_returns_the_tip(store: &dyn Store) {
    let (session, segment) = new_segment(store, 3);
    ok(store.truncate(session, segment, 2));
    let before = snapshot(store, session, segment);
    assert_eq!(before.tip, tip(2, 1));
    assert_eq!(
        ok(store.append_batch_raw(session, segment, &[])),
        before.tip
    );
    assert_eq!(
        ok(store.append_batch::<Value>(session, segment, &[])),
        before.tip
    );
    assert_eq!(
        ok(store.append_if(session, segment, before.tip, &[])),
        before.tip
    );
    assert_err!(
        store.append_if(session, segment, tip(2, 0), &[]),
        Error::ConcurrentWriter { .. }
    );
    ok(store.append_trace_raw(session, segment, &[]));
    assert_eq!(snapshot(store, session, segment), before);
    // Nothing empty was recorded: the next entry still gets the next sequence number.
    assert_eq!(ok(store.append(session, segment, &entry(2))), tip(3, 1));
    assert_eq!(seqs(store, session, segment), vec![0, 1, 2]);
}

/// In an existing session, every operation on a segment that does not exist fails with
/// `SegmentNotFound` naming it, creates nothing, and leaves the other segments alone.
pub fn operations_on_a_missing_segment_fail_with_segment_not_found(store: &dyn Store) {
    let (session, present) = new_segment(store, 2);
    let before = snapshot(store, session, present);
    let missing = SegmentId::new();
    assert_every_segment_operation_is_not_found(store, session, missing);
    assert_eq!(listed_segments(store, session), vec![present]);
    assert_eq!(snapshot(store, session, present), before);
    assert_eq!(ok(store.find_session(missing)), None);
}

/// Every operation on a session that does not exist fails with `SessionNotFound` (session
/// operations) or `SegmentNotFound` (segment operations), and none of them creates it.
pub fn operations_on_a_missing_session_fail_with_not_found_and_create_nothing(store: &dyn Store) {
    let (session, segment) = (SessionId::new(), SegmentId::new());
    assert_every_segment_operation_is_not_found(store, session, segment);
    assert_session_not_found("list_segments", store.list_segments(session), session);
    assert_session_not_found("session_modified", store.session_modified(session), session);
    assert_session_not_found("delete_session", store.delete_session(session), session);
    assert!(
        !ok(store.list_sessions()).contains(&session),
        "a failed operation created session {session}"
    );
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
        trace_texts(store, session, segment),
        vec![at_limit_0.as_str().to_owned()]
    );
}

/// The JSON text of every trace event of a segment, strictly.
fn trace_texts(store: &dyn Store, session: SessionId, segment: SegmentId) -> Vec<String> {
    let mut trace = Vec::new();
    ok(
        store.replay_trace_raw(session, segment, &ReplayOptions::strict(), &mut |entry| {
            trace.push(entry.json().unwrap().to_owned());
            Ok(ControlFlow::Continue(()))
        }),
    );
    trace
}

/// A JSON string entry of exactly `len` bytes of ASCII.
fn ascii_entry_of_len(len: usize) -> RawEntry {
    let mut s = String::with_capacity(len);
    s.push('"');
    s.push_str(&"a".repeat(len.saturating_sub(2)));
    s.push('"');
    ok(RawEntry::from_json(&s))
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
                ascii_entry_of_len(n)
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
    assert_eq!(trace_texts(store, session, segment), want);
}

/// An entry larger than the store's maximum (`Store::max_entry_bytes`) is refused with
/// `EntryTooLarge { size, limit }` by every write path, and nothing is written: no entry, no
/// segment, no session, no trace event. An entry exactly at the maximum is accepted.
pub fn entry_over_the_store_maximum_is_refused_with_nothing_written(store: &dyn Store) {
    let max = store.max_entry_bytes();
    let over = ascii_entry_of_len(max + 1);
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

    let at_max = ascii_entry_of_len(max);
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
    let large = ascii_entry_of_len((MAX_INLINE + 100).min(max));
    let over = ascii_entry_of_len(max + 1);
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

/// Blob garbage collection finds exactly the blobs that no entry line, trace event or
/// attachment refers to (here: after a truncate), reports them in a dry run without removing
/// them, and removes them otherwise; everything still referred to reads back.
pub fn gc_removes_only_blobs_that_nothing_refers_to(store: &dyn Store) {
    let (session, segment) = (SessionId::new(), SegmentId::new());
    let kept = ascii_entry_of_len(MAX_INLINE + 10);
    let dropped = ascii_entry_of_len(MAX_INLINE + 20);
    let in_trace = ascii_entry_of_len(MAX_INLINE + 30);
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
        trace_texts(store, session, segment),
        vec![in_trace.as_str().to_owned()]
    );
    assert!(ok(store.gc_blobs(session, false)).orphans.is_empty());
    assert_err!(
        store.gc_blobs(SessionId::new(), true),
        Error::SessionNotFound(_)
    );
}

/// `tip` and `entry_count` agree with the tip each operation returns, after every kind of
/// operation.
pub fn tip_and_entry_count_follow_every_operation(store: &dyn Store) {
    let (session, segment) = (SessionId::new(), SegmentId::new());
    let check = |expected: Tip, returned: Tip, what: &str| {
        assert_eq!(returned, expected, "tip returned by {what}");
        assert_eq!(
            ok(store.tip(session, segment)),
            expected,
            "tip after {what}"
        );
        assert_eq!(
            ok(store.entry_count(session, segment)),
            expected.count,
            "entry_count after {what}"
        );
        assert_eq!(
            info(store, session, segment).tip,
            expected,
            "listed tip after {what}"
        );
    };
    check(
        tip(0, 0),
        ok(store.create::<Value>(session, segment, &[])),
        "create",
    );
    check(
        tip(1, 0),
        ok(store.append(session, segment, &entry(0))),
        "append",
    );
    check(
        tip(4, 0),
        ok(store.append_batch(session, segment, &entries(1..4))),
        "append_batch",
    );
    check(
        tip(5, 0),
        ok(store.append_if(session, segment, tip(4, 0), &[raw(&entry(4))])),
        "append_if",
    );
    check(
        tip(3, 1),
        ok(store.truncate(session, segment, 3)),
        "truncate",
    );
    check(
        tip(4, 1),
        ok(store.append(session, segment, &entry(3))),
        "append after truncate",
    );
    let forked = SegmentId::new();
    assert_eq!(ok(store.fork(session, segment, 2, forked)), tip(2, 0));
    assert_eq!(ok(store.tip(session, forked)), tip(2, 0));
    assert_eq!(ok(store.entry_count(session, forked)), 2);
    check(tip(4, 1), ok(store.tip(session, segment)), "fork");
    ok(store.append_trace(session, segment, &json!("t")));
    check(tip(4, 1), ok(store.tip(session, segment)), "append_trace");
    ok(store.read_raw(session, segment));
    check(tip(4, 1), ok(store.tip(session, segment)), "read");
}

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

fn now_ms() -> u64 {
    crate::now_ms()
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

/// `from_seq` delivers only the entries at or after it (none past the end), with their own
/// sequence numbers, while the report still counts every entry checked.
pub fn replay_from_seq_delivers_later_entries_and_checks_all(store: &dyn Store) {
    let (session, segment) = new_segment(store, 6);
    for from in [0, 1, 3, 5, 6, 7, u64::MAX] {
        for options in [
            ReplayOptions::strict().from_seq(from),
            ReplayOptions::tolerant().from_seq(from),
        ] {
            let (delivered, report) = replayed(store, session, segment, &options);
            let expected: Vec<(u64, Value)> = (from.min(6)..6).map(|i| (i, entry(i))).collect();
            assert_eq!(delivered, expected, "{options:?}");
            assert_eq!(report.entries, 6, "{options:?}");
            assert!(report.is_clean());
        }
    }
    let mut raw_seqs = Vec::new();
    ok(store.replay_raw(
        session,
        segment,
        &ReplayOptions::strict().from_seq(4),
        &mut |e| {
            raw_seqs.push((e.seq, e.json().unwrap().to_owned()));
            Ok(ControlFlow::Continue(()))
        },
    ));
    let expected: Vec<(u64, String)> = (4..6)
        .map(|i| (i, raw(&entry(i)).as_str().to_owned()))
        .collect();
    assert_eq!(raw_seqs, expected);
}

/// The caller's own error, for [`replay_stops_with_the_sink_error`].
#[derive(Debug, PartialEq, Eq)]
struct Enough(u64);

impl fmt::Display for Enough {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "enough at {}", self.0)
    }
}

impl std::error::Error for Enough {}

/// A sink that returns an error stops the replay there with that very error (the caller's own
/// type, taken back by downcasting); no later entry is delivered, and the store is usable
/// afterwards.
pub fn replay_stops_with_the_sink_error(store: &dyn Store) {
    let (session, segment) = new_segment(store, 5);
    let mut seen = Vec::new();
    let result = store.replay_raw(session, segment, &ReplayOptions::strict(), &mut |e| {
        seen.push(e.seq);
        if e.seq == 2 {
            return Err(Error::sink(Enough(e.seq)));
        }
        Ok(ControlFlow::Continue(()))
    });
    match &result {
        Err(Error::Sink(cause)) => assert_eq!(cause.downcast_ref::<Enough>(), Some(&Enough(2))),
        other => panic!("expected the sink's error, got {other:?}"),
    }
    assert_eq!(seen, vec![0, 1, 2]);

    let mut typed = Vec::new();
    let result = store.replay(
        session,
        segment,
        &ReplayOptions::tolerant().from_seq(3),
        |meta, v: Value| -> Result<()> {
            typed.push(v);
            Err(Error::sink(Enough(meta.seq)))
        },
    );
    match &result {
        Err(Error::Sink(cause)) => assert_eq!(cause.downcast_ref::<Enough>(), Some(&Enough(3))),
        other => panic!("expected the sink's error, got {other:?}"),
    }
    assert_eq!(typed, vec![entry(3)]);

    ok(store.append(session, segment, &entry(5)));
    assert_eq!(ok(store.truncate(session, segment, 6)), tip(6, 1));
    assert_eq!(values(store, session, segment), entries(0..6));
}

/// A sink that answers `ControlFlow::Break` ends the replay after that entry, without an error:
/// the report says it stopped, and nothing later is delivered. Typed replays stop the same way.
/// Stopping early is how a tool reads "the first N" or "up to seq S" of a long segment.
pub fn replay_stops_early_when_the_sink_breaks(store: &dyn Store) {
    let (session, segment) = new_segment(store, 6);
    let mut seen = Vec::new();
    let report = ok(
        store.replay_raw(session, segment, &ReplayOptions::strict(), &mut |e| {
            seen.push(e.seq);
            Ok(if e.seq == 1 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            })
        }),
    );
    assert_eq!(seen, vec![0, 1]);
    assert!(report.stopped, "{report:?}");
    let full = ok(store.verify(session, segment));
    assert!(!full.stopped);
    assert_eq!(full.entries, 6);

    let mut typed = Vec::new();
    let report = ok(store.replay(
        session,
        segment,
        &ReplayOptions::strict().from_seq(2),
        |meta, v: Value| {
            typed.push((meta.seq, v));
            Ok(if meta.seq == 3 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            })
        },
    ));
    assert!(report.stopped);
    assert_eq!(typed, vec![(2, entry(2)), (3, entry(3))]);
    assert_eq!(values(store, session, segment), entries(0..6));
}

/// Every delivered entry carries its append time where the backend records one: within the
/// span of the append call, the same for every entry of one batch, and never going back.
pub fn entries_carry_their_append_time_where_the_backend_records_it(store: &dyn Store) {
    let (session, segment) = new_segment(store, 0);
    let before = now_ms();
    ok(store.append(session, segment, &entry(0)));
    ok(store.append_batch(session, segment, &entries(1..4)));
    let after = now_ms();
    let mut times = Vec::new();
    ok(store.replay(
        session,
        segment,
        &ReplayOptions::strict(),
        |meta, _: Value| {
            times.push(meta.appended_ms);
            Ok(())
        },
    ));
    assert_eq!(times.len(), 4);
    if times.iter().all(Option::is_none) {
        // The backend keeps no times (the filesystem store's format version 1).
        return;
    }
    let times: Vec<u64> = times
        .into_iter()
        .map(|t| t.expect("a backend that records times records them for every entry"))
        .collect();
    for t in &times {
        assert!(
            (before..=after).contains(t),
            "{t} not within {before}..={after}"
        );
    }
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    assert!(
        times[1..].iter().all(|t| *t == times[1]),
        "one batch, one time: {times:?}"
    );
}

/// `sync` of an existing segment succeeds and changes nothing a reader can see; of a missing one
/// it is `SegmentNotFound`. (What it makes durable is the power-cut suite's to show.)
pub fn sync_changes_nothing_visible_and_needs_the_segment(store: &dyn Store) {
    let (session, segment) = new_segment(store, 3);
    let before = snapshot(store, session, segment);
    ok(store.sync(session, segment));
    ok(store.sync(session, segment));
    assert_eq!(snapshot(store, session, segment), before);
    ok(store.append(session, segment, &entry(3)));
    ok(store.sync(session, segment));
    assert_eq!(values(store, session, segment), entries(0..4));
    let missing = SegmentId::new();
    assert_segment_not_found("sync", store.sync(session, missing), session, missing);
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

/// A segment the store wrote itself scans clean, empty or not: strict and tolerant replay and
/// verify count every entry, report no problem and no torn tail, and are valid to the end.
pub fn tolerant_replay_and_verify_of_a_clean_segment_are_clean(store: &dyn Store) {
    let (session, empty) = new_segment(store, 0);
    let full = SegmentId::new();
    ok(store.create(session, full, &entries(0..4)));
    ok(store.append_batch(session, full, &turns()));
    ok(store.truncate(session, full, 7));
    ok(store.append(session, full, &entry(7)));
    for (segment, n) in [(empty, 0u64), (full, 8)] {
        let (strict, strict_report) = replayed(store, session, segment, &ReplayOptions::strict());
        let (tolerant, tolerant_report) =
            replayed(store, session, segment, &ReplayOptions::tolerant());
        assert_eq!(strict, tolerant);
        assert_eq!(strict.len() as u64, n);
        for report in [
            strict_report,
            tolerant_report,
            ok(store.verify(session, segment)),
        ] {
            assert!(report.is_clean(), "{report:?}");
            assert_eq!(report.entries, n, "{report:?}");
            assert!(report.problems.is_empty(), "{report:?}");
            assert_eq!(report.problem_count, 0);
            assert_eq!(report.torn_tail, None, "{report:?}");
            assert_eq!(report.valid_up_to, report.file_len, "{report:?}");
        }
    }
}

/// `RawEntry::from_json` takes pretty-printed JSON over several lines (LF or CRLF) and stores
/// it as one line that reads back as the same value, whitespace inside strings kept; text that
/// is not exactly one JSON value is refused.
pub fn pretty_multi_line_json_is_stored_as_one_line_and_reads_back_equal(store: &dyn Store) {
    let value = json!({
        "role": "assistant",
        "text": "  spaced  out\nand on two lines\t",
        "nested": { "list": [1, 2, { "deep": [] }], "empty": {} },
    });
    let pretty = serde_json::to_string_pretty(&value).unwrap();
    assert!(pretty.contains('\n'));
    let crlf = pretty.replace('\n', "\r\n");
    let (session, segment) = new_segment(store, 0);
    for text in [&pretty, &crlf] {
        let entry = ok(RawEntry::from_json(text));
        assert!(
            !entry.as_str().contains(['\n', '\r']),
            "not one line: {entry}"
        );
        assert_eq!(entry.to_value::<Value>().unwrap(), value);
        ok(store.append_raw(session, segment, &entry));
    }
    ok(store.append(session, segment, &json!("after")));
    let back = ok(store.read_raw(session, segment));
    assert_eq!(back.len(), 3, "a multi-line entry became several");
    assert_eq!(back[0], ok(RawEntry::from_json(&pretty)));
    assert_eq!(
        values(store, session, segment),
        vec![value.clone(), value, json!("after")]
    );

    for bad in [
        "",
        "   ",
        "{\"a\":",
        "{} {}",
        "1 2",
        "[1,]",
        "\"unterminated",
    ] {
        assert_err!(RawEntry::from_json(bad), Error::InvalidJson(_));
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

// ---------------------------------------------------------------------------------------------
// Shared across threads
// ---------------------------------------------------------------------------------------------

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
