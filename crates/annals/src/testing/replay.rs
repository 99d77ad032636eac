//! Replay options and sinks: `from_seq`, a sink's error, stopping early, append times, and clean
//! reports from strict and tolerant replay and verify.

use std::fmt;
use std::ops::ControlFlow;

use serde_json::Value;

use super::append::turns;
use super::check::*;
use crate::{Error, ReplayOptions, Result, SegmentId, Store, StoreExt};

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
