//! Not a timing benchmark: the workload that `benches/fsyncs.py` runs under `strace` to count
//! the fsync-family system calls of annals' append path on the real-shaped session (issue 18's
//! targets: none at all in `Buffered`; at most 2 `fdatasync`s and 1 directory sync per append
//! call in `Sync`).
//!
//! For each case it creates a store and a segment (not counted), then brackets the appends
//! between two marker system calls — a `stat` of a path that cannot exist, named after the
//! case — that the script finds in the trace: what lies between them is the append path. One
//! more marker before each append call lets the script count per call (the Sync target is a
//! maximum per call, not an average). It prints the number of append calls of each case.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    reason = "a benchmark, not library code: a broken setup is reported by panicking"
)]

use std::time::Instant;

use annals::{Durability, FsOptions, FsStore, SegmentId, SessionId, Store};
use annals_bench::realshape::{RealCorpus, SizeStats};
use annals_bench::setup::{self, pick};

fn mark(what: &str) {
    // The path names the case; it does not exist, so the call fails, as intended.
    let _ = std::fs::metadata(format!("/annals-fsyncs-mark/{what}"));
}

fn main() {
    // Criterion-style filters: only the cases whose name contains one of them.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    setup::init(env!("CARGO_TARGET_TMPDIR"));
    let session = RealCorpus::get().session();
    let session = &session[..pick(session.len(), 100)];
    println!("session: {}", SizeStats::of(session));
    for durability in [Durability::Buffered, Durability::Sync] {
        for batch in [1usize, 16] {
            let case = format!(
                "{}-{}",
                match durability {
                    Durability::Buffered => "buffered",
                    Durability::Sync => "sync",
                },
                if batch == 1 {
                    "one_per_entry"
                } else {
                    "batch16"
                }
            );
            if !filters.is_empty() && !filters.iter().any(|f| case.contains(f.as_str())) {
                continue;
            }
            let dir = setup::fresh_dir("fsyncs-");
            let store = FsStore::open_with(
                dir.path(),
                FsOptions {
                    durability,
                    ..FsOptions::default()
                },
            )
            .expect("open store");
            let (s, g) = (SessionId::new(), SegmentId::new());
            store.create_segment(s, g, &[]).expect("create segment");
            let start = Instant::now();
            mark(&format!("begin-{case}"));
            let mut calls = 0;
            for chunk in session.chunks(batch) {
                mark("call");
                store.append_batch_raw(s, g, chunk).expect("append");
                calls += 1;
            }
            mark(&format!("end-{case}"));
            println!(
                "case {case}: {calls} append calls, {} entries, {:.1} ms",
                session.len(),
                start.elapsed().as_secs_f64() * 1e3
            );
        }
    }
    setup::cleanup();
}
