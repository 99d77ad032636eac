//! Entries in and out: typed and raw round trips, creating segments, appends and batches, the
//! tip, `sync`, and every operation on a segment or session that does not exist.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::check::*;
use crate::{Error, RawEntry, ReplayOptions, SegmentId, SessionId, Store, StoreExt, Tip};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Role {
    User,
    Assistant,
    Tool { name: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct ToolCall {
    id: String,
    arguments: Value,
    matrix: Vec<Vec<i64>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Turn {
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

pub(super) fn turns() -> Vec<Turn> {
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
