use std::ops::ControlFlow;

use annals::{FsStore, MemStore, SegmentId, SessionId, Store, StoreExt};
use serde_json::json;

use super::*;

/// (session, segment, seq, json) of every hit.
fn hits(
    store: &dyn Store,
    scope: &Scope,
    query: &Query,
) -> (Vec<(SessionId, SegmentId, u64, String)>, SearchStats) {
    let mut out = Vec::new();
    let stats = search(store, scope, query, &mut |hit: Hit<'_>| {
        out.push((hit.session, hit.segment, hit.seq, hit.json.to_owned()));
        ControlFlow::Continue(())
    })
    .unwrap();
    (out, stats)
}

fn fixed(text: &str) -> Query {
    Query {
        pattern: Pattern::fixed(text, Case::Sensitive),
        filter: Filter::default(),
    }
}

#[test]
fn finds_matches_across_sessions_newest_session_first_in_sequence_order() {
    let store = MemStore::new();
    let (a, b) = (SessionId::new(), SessionId::new());
    let (sa, sb) = (SegmentId::new(), SegmentId::new());
    store
        .create(
            a,
            sa,
            &[
                json!({"t": "timeout in a"}),
                json!({"t": "ok"}),
                json!({"t": "timeout again"}),
            ],
        )
        .unwrap();
    store
        .create(b, sb, &[json!({"t": "no"}), json!({"t": "timeout in b"})])
        .unwrap();
    let (found, stats) = hits(&store, &Scope::default(), &fixed("timeout"));
    let keys: Vec<(SessionId, u64)> = found.iter().map(|h| (h.0, h.2)).collect();
    assert_eq!(keys, vec![(b, 1), (a, 0), (a, 2)]);
    assert_eq!(found[0].3, r#"{"t":"timeout in b"}"#);
    assert_eq!(
        (stats.sessions, stats.files, stats.entries, stats.hits),
        (2, 2, 5, 3)
    );
    // Only the sessions asked for, in the order asked.
    let scope = Scope {
        sessions: vec![a],
        ..Scope::default()
    };
    assert_eq!(hits(&store, &scope, &fixed("timeout")).0.len(), 2);
}

#[test]
fn a_fork_tree_is_searched_once_per_entry_and_newest_only_reads_the_newest_whole() {
    let store = MemStore::new();
    let session = SessionId::new();
    let (root, fork) = (SegmentId::new(), SegmentId::new());
    let entries: Vec<_> = (0..6).map(|i| json!({"n": i, "t": "needle"})).collect();
    store.create(session, root, &entries).unwrap();
    store.fork(session, root, 4, fork).unwrap();
    store
        .append(session, fork, &json!({"n": 99, "t": "needle"}))
        .unwrap();
    let (found, _) = hits(&store, &Scope::default(), &fixed("needle"));
    let keys: Vec<(SegmentId, u64)> = found.iter().map(|h| (h.1, h.2)).collect();
    let mut expected: Vec<(SegmentId, u64)> = (0..6).map(|s| (root, s)).collect();
    expected.push((fork, 4));
    assert_eq!(
        keys, expected,
        "the fork's copied prefix 0..4 is not found twice"
    );
    let newest = Scope {
        newest_only: true,
        ..Scope::default()
    };
    let keys: Vec<(SegmentId, u64)> = hits(&store, &newest, &fixed("needle"))
        .0
        .iter()
        .map(|h| (h.1, h.2))
        .collect();
    assert_eq!(keys, (0..5).map(|s| (fork, s)).collect::<Vec<_>>());
}

#[test]
fn blobs_are_searched_re_inflated() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path()).unwrap();
    let (session, segment) = (SessionId::new(), SegmentId::new());
    let big = json!({"output": format!("{}NEEDLE at the end", "x".repeat(100_000))});
    store
        .create(session, segment, &[json!({"small": 1}), big.clone()])
        .unwrap();
    let mut from_blob = Vec::new();
    let stats = search(
        &store,
        &Scope::default(),
        &fixed("NEEDLE"),
        &mut |hit: Hit<'_>| {
            from_blob.push((hit.seq, hit.from_blob, hit.json.len()));
            ControlFlow::Continue(())
        },
    )
    .unwrap();
    assert_eq!(from_blob, vec![(1, true, big.to_string().len())]);
    assert_eq!(stats.hits, 1);
}

#[test]
fn filters_narrow_by_sequence_fields_and_time_and_untimed_entries_are_counted() {
    let store = MemStore::new();
    let (session, segment) = (SessionId::new(), SegmentId::new());
    let entries: Vec<_> = (0..10)
        .map(|i| json!({"type": if i % 2 == 0 { "user" } else { "assistant" }, "n": i}))
        .collect();
    store.create(session, segment, &entries).unwrap();
    let fields = vec!["type=user".to_owned()];
    let filter = Filter::parse(
        &FilterSpec {
            fields: &fields,
            from: Some(3),
            to: Some(8),
            ..FilterSpec::default()
        },
        0,
    )
    .unwrap();
    let query = Query {
        pattern: Pattern::any(),
        filter,
    };
    let seqs: Vec<u64> = hits(&store, &Scope::default(), &query)
        .0
        .iter()
        .map(|h| h.2)
        .collect();
    assert_eq!(seqs, vec![4, 6, 8]);

    // MemStore records append times: everything was appended in the last minute.
    let now = time::now_ms();
    let recent = |since: &str| Query {
        pattern: Pattern::any(),
        filter: Filter::parse(
            &FilterSpec {
                since: Some(since),
                ..FilterSpec::default()
            },
            now + 1,
        )
        .unwrap(),
    };
    assert_eq!(hits(&store, &Scope::default(), &recent("1m")).1.hits, 10);
    let until_long_ago = Query {
        pattern: Pattern::any(),
        filter: Filter::parse(
            &FilterSpec {
                until: Some("1h"),
                ..FilterSpec::default()
            },
            now,
        )
        .unwrap(),
    };
    assert_eq!(hits(&store, &Scope::default(), &until_long_ago).1.hits, 0);

    // Format-v1 files keep no time: a time filter leaves their entries out, and says how many.
    let dir = tempfile::tempdir().unwrap();
    let fs = FsStore::open(dir.path()).unwrap();
    fs.create(session, segment, &entries).unwrap();
    let (found, stats) = hits(&fs, &Scope::default(), &recent("1m"));
    if stats.untimed > 0 {
        assert!(found.is_empty());
        assert_eq!(stats.untimed, 10);
    } else {
        // A store that records times (format v2) finds them all.
        assert_eq!(found.len(), 10);
    }
}

#[test]
fn a_break_stops_the_search_and_progress_can_stop_it_too() {
    let store = MemStore::new();
    for _ in 0..3 {
        let entries: Vec<_> = (0..5).map(|i| json!({"n": i})).collect();
        store
            .create(SessionId::new(), SegmentId::new(), &entries)
            .unwrap();
    }
    let mut seen = 0;
    let stats = search(
        &store,
        &Scope::default(),
        &Query {
            pattern: Pattern::any(),
            filter: Filter::default(),
        },
        &mut |_: Hit<'_>| {
            seen += 1;
            if seen == 7 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    )
    .unwrap();
    assert_eq!(seen, 7);
    assert!(stats.stopped);

    struct Cancel(u32);
    impl SearchSink for Cancel {
        fn hit(&mut self, _: Hit<'_>) -> ControlFlow<()> {
            ControlFlow::Continue(())
        }
        fn progress(&mut self, _: &Progress) -> ControlFlow<()> {
            self.0 += 1;
            if self.0 > 1 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        }
    }
    let stats = search(&store, &Scope::default(), &fixed("nothing"), &mut Cancel(0)).unwrap();
    assert!(stats.stopped);
    assert_eq!(stats.files, 1, "stopped before the second file");
}

#[test]
fn damage_is_reported_and_the_good_lines_are_still_searched() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path()).unwrap();
    let (session, segment) = (SessionId::new(), SegmentId::new());
    let entries: Vec<_> = (0..4)
        .map(|i| json!({"t": format!("needle {i}")}))
        .collect();
    store.create(session, segment, &entries).unwrap();
    let path = store.segment_path(session, segment);
    let mut bytes = std::fs::read(&path).unwrap();
    // Flip a byte inside the third line (entry 1).
    let third = bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(1)
        .unwrap()
        .0
        + 1;
    bytes[third + 40] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let (found, stats) = hits(&store, &Scope::default(), &fixed("needle"));
    let seqs: Vec<u64> = found.iter().map(|h| h.2).collect();
    assert_eq!(seqs, vec![0, 2, 3]);
    assert_eq!(stats.damaged_count, 1);
    assert_eq!(stats.damaged[0].first.line, 3);
}

#[test]
fn traces_are_searched_instead_of_logs_when_asked() {
    let store = MemStore::new();
    let (session, segment) = (SessionId::new(), SegmentId::new());
    store
        .create(session, segment, &[json!({"t": "log"})])
        .unwrap();
    store
        .append_trace(session, segment, &json!({"event": "tool", "ms": 900}))
        .unwrap();
    let scope = Scope {
        traces: true,
        ..Scope::default()
    };
    let (found, _) = hits(&store, &scope, &fixed("tool"));
    assert_eq!(found.len(), 1);
    assert!(hits(&store, &scope, &fixed("log")).0.is_empty());
}

#[test]
fn many_sessions_are_searched_in_parallel_and_hits_come_in_the_order_of_one_thread() {
    let store = MemStore::new();
    for s in 0..40u64 {
        let entries: Vec<_> = (0..50u64)
            .map(|i| json!({"s": s, "i": i, "t": if i % 7 == 0 { "needle" } else { "hay" }}))
            .collect();
        store
            .create(SessionId::new(), SegmentId::new(), &entries)
            .unwrap();
    }
    let (found, stats) = hits(&store, &Scope::default(), &fixed("needle"));
    // Newest session first, entries in order: what a search of one session at a time gives.
    let sessions = store.list_sessions().unwrap();
    let mut expected = Vec::new();
    for s in &sessions {
        for i in (0..50u64).filter(|i| i % 7 == 0) {
            expected.push((*s, i));
        }
    }
    let got: Vec<(SessionId, u64)> = found.iter().map(|h| (h.0, h.2)).collect();
    assert_eq!(got, expected);
    assert_eq!(stats.sessions, 40);
    assert_eq!(stats.entries, 2000);
    assert_eq!(stats.hits, expected.len() as u64);
    // A break from the sink stops every thread, and the count is what the sink saw.
    let mut seen = 0;
    let stats = search(
        &store,
        &Scope::default(),
        &fixed("needle"),
        &mut |_: Hit<'_>| {
            seen += 1;
            if seen == 10 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    )
    .unwrap();
    assert!(stats.stopped);
    assert_eq!(seen, 10);
}
