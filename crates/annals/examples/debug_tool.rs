//! A small debugging tool over any `Store`: every session's segments, checked line by line
//! (tolerant: damage is reported, not fatal), with the last entry of each session's newest
//! segment and when it was appended. What `annals ls` and `annals verify` do, in 60 lines of
//! library calls.
//!
//! ```sh
//! cargo run -p annals --example debug_tool -- ./demo-store
//! ```

use std::ops::ControlFlow;

use annals::{FsStore, ReplayOptions, Store};

fn main() -> annals::Result<()> {
    let root = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "./demo-store".into());
    let store = FsStore::open(&root)?;
    report(&store)
}

/// Works on `dyn Store`: the same code inspects a filesystem store, a `MemStore` or another
/// backend.
fn report(store: &dyn Store) -> annals::Result<()> {
    for session in store.list_sessions()? {
        let segments = store.list_segments(session)?;
        let entries: u64 = segments.iter().map(|s| s.tip.count).sum();
        println!(
            "session {session}: {} segments, {entries} entries",
            segments.len()
        );
        for info in &segments {
            // Every line checked; a damaged line is listed and skipped, not an error.
            let report = store.verify(session, info.segment)?;
            let state = match report.problems.first() {
                None => "clean".to_owned(),
                Some(first) => format!("{} problems, first: {first}", report.problem_count),
            };
            println!(
                "  segment {}: {} entries, {state}",
                info.segment, report.entries
            );
        }
        // The newest segment (listings are newest first) and its last entry: a replay from
        // the last sequence number reads one line, and stops there.
        let Some(newest) = segments.first().filter(|s| s.tip.count > 0) else {
            continue;
        };
        let options = ReplayOptions::tolerant().from_seq(newest.tip.count - 1);
        store.replay_raw(session, newest.segment, &options, &mut |entry| {
            let when = entry.appended_ms.map_or_else(
                || "at an unrecorded time".to_owned(),
                |ms| format!("at {ms} ms"),
            );
            let text = entry.json().unwrap_or("(kept as a blob)");
            let shown: String = text.chars().take(100).collect();
            println!("  last entry, #{} {when}: {shown}", entry.seq);
            Ok(ControlFlow::Break(()))
        })?;
    }
    Ok(())
}
