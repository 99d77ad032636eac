//! Reads over pre-built segments of 1k, 100k and 1M entries: replay into typed entries,
//! verify-only, and entry count. The same fixture (one per size and variant, built once per
//! process) serves every group.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    reason = "a benchmark, not library code: a broken setup is reported by panicking"
)]

use std::hint::black_box;
use std::time::Duration;

use annals::{FsStore, ReplayOptions, SegmentId, SessionId, Store, StoreExt};
use annals_bench::entries::{Corpus, Message, Variant};
use annals_bench::fixture::{self, Segment};
use annals_bench::realshape::{Event, RealCorpus};
use annals_bench::setup::{self, count_label, pick};
use annals_bench::sqlite::{SqlDurability, SqliteStore};
use criterion::{BenchmarkId, Criterion, Throughput};
use serde::de::IgnoredAny;

/// Segment sizes, and the variant each is built in.
fn sizes() -> Vec<(Variant, u64)> {
    let (small, medium, large) = pick((1_000, 100_000, 1_000_000), (1_000, 5_000, 20_000));
    vec![
        (Variant::Small, small),
        (Variant::Small, medium),
        (Variant::Small, large),
        (Variant::Large, small),
        (Variant::Large, medium),
    ]
}

fn param(variant: Variant, n: u64) -> String {
    format!("{}/{}", variant.label(), count_label(n))
}

fn replay_typed(c: &mut Criterion) {
    let mut group = c.benchmark_group("replay_typed");
    setup::slow(&mut group, Duration::from_secs(5));
    for (variant, n) in sizes() {
        let id = param(variant, n);
        // Payload bytes: the same for every contender, so bytes/s compare directly.
        group.throughput(Throughput::Bytes(Corpus::get(variant).payload_bytes(n)));
        group.bench_function(BenchmarkId::new("annals", &id), |b| {
            let fx = Segment::shared(variant, n);
            let store = FsStore::open(&fx.annals_root).expect("open store");
            b.iter(|| {
                let mut seen = 0u64;
                store
                    .replay(
                        fx.session,
                        fx.segment,
                        &ReplayOptions::strict(),
                        |_, m: Message| {
                            black_box(m);
                            seen += 1;
                            Ok(())
                        },
                    )
                    .expect("annals replay");
                assert_eq!(seen, fx.n);
            });
        });
        group.bench_function(BenchmarkId::new("naive", &id), |b| {
            let fx = Segment::shared(variant, n);
            let (s, g) = (fx.naive_session(), fx.naive_segment());
            b.iter(|| {
                let seen = fx
                    .naive
                    .replay(&s, &g, |m: Message| {
                        black_box(m);
                    })
                    .expect("naive replay");
                assert_eq!(seen, fx.n);
            });
        });
        group.bench_function(BenchmarkId::new("sqlite", &id), |b| {
            let fx = Segment::shared(variant, n);
            let db = SqliteStore::open(&fx.sqlite_path, SqlDurability::Buffered).expect("open");
            b.iter(|| {
                let seen = db
                    .replay(fx.session, fx.segment, |m: Message| {
                        black_box(m);
                    })
                    .expect("sqlite replay");
                assert_eq!(seen, fx.n);
            });
        });
        // No storage at all: deserializing the same entries from memory. What any replay into
        // these types costs at least.
        group.bench_function(BenchmarkId::new("serde_floor", &id), |b| {
            let corpus = Corpus::get(variant);
            b.iter(|| {
                for i in 0..n {
                    let m: Message = serde_json::from_str(corpus.json_at(i)).expect("deserialize");
                    black_box(m);
                }
            });
        });
    }
    group.finish();
}

fn verify(c: &mut Criterion) {
    let mut group = c.benchmark_group("verify");
    setup::slow(&mut group, Duration::from_secs(3));
    for (variant, n) in sizes() {
        let id = param(variant, n);
        // File bytes of the annals segment: what the 1 GB/s target is about.
        group.throughput(Throughput::Bytes(fixture::annals_len(variant, n)));
        group.bench_function(BenchmarkId::new("annals_verify", &id), |b| {
            let fx = Segment::shared(variant, n);
            let store = FsStore::open(&fx.annals_root).expect("open store");
            b.iter(|| {
                let report = store.verify(fx.session, fx.segment).expect("verify");
                assert_eq!(report.entries, fx.n);
                assert!(report.is_clean());
            });
        });
        // The streaming reader with a sink that drops every entry: what a replay costs before
        // deserialization.
        group.bench_function(BenchmarkId::new("annals_replay_raw", &id), |b| {
            let fx = Segment::shared(variant, n);
            let store = FsStore::open(&fx.annals_root).expect("open store");
            b.iter(|| {
                let report = store
                    .replay_raw(
                        fx.session,
                        fx.segment,
                        &ReplayOptions::strict(),
                        &mut |entry| {
                            black_box(entry);
                            Ok(std::ops::ControlFlow::Continue(()))
                        },
                    )
                    .expect("replay");
                assert_eq!(report.entries, fx.n);
            });
        });
        // `wc -l` on the annals file itself (issue 13: verify ≥ 0.6× wc -l): the process, as a
        // user would run it, so its start (~1 ms) is in; compare at 100k and 1M entries.
        group.bench_function(BenchmarkId::new("wc_l", &id), |b| {
            let fx = Segment::shared(variant, n);
            let path = fx.annals_path();
            b.iter(|| {
                let out = std::process::Command::new("wc")
                    .arg("-l")
                    .arg(&path)
                    .output()
                    .expect("run wc -l");
                assert!(out.status.success());
                black_box(out.stdout);
            });
        });
        // The naive store has no checksum: the nearest thing to verifying it is checking that
        // every line is JSON.
        group.bench_function(BenchmarkId::new("naive_json_check", &id), |b| {
            let fx = Segment::shared(variant, n);
            let (s, g) = (fx.naive_session(), fx.naive_segment());
            b.iter(|| {
                let seen = fx
                    .naive
                    .replay(&s, &g, |v: IgnoredAny| {
                        black_box(v);
                    })
                    .expect("naive check");
                assert_eq!(seen, fx.n);
            });
        });
    }
    group.finish();
}

fn entry_count(c: &mut Criterion) {
    let mut group = c.benchmark_group("entry_count");
    group.throughput(Throughput::Elements(1));
    for (variant, n) in sizes() {
        if variant != Variant::Small {
            continue;
        }
        let id = count_label(n);
        group.bench_function(BenchmarkId::new("annals_uncached", &id), |b| {
            let fx = Segment::shared(variant, n);
            b.iter(|| {
                let store = FsStore::open(&fx.annals_root).expect("open store");
                let count = store.entry_count(fx.session, fx.segment).expect("count");
                assert_eq!(count, fx.n);
            });
        });
        group.bench_function(BenchmarkId::new("annals_cached", &id), |b| {
            let fx = Segment::shared(variant, n);
            let store = FsStore::open(&fx.annals_root).expect("open store");
            // An empty append opens and caches the segment's handle without writing.
            store
                .append_batch_raw(fx.session, fx.segment, &[])
                .expect("warm the handle");
            b.iter(|| {
                let count = store.entry_count(fx.session, fx.segment).expect("count");
                assert_eq!(count, fx.n);
            });
        });
        group.bench_function(BenchmarkId::new("naive", &id), |b| {
            let fx = Segment::shared(variant, n);
            let (s, g) = (fx.naive_session(), fx.naive_segment());
            b.iter(|| {
                let count = fx.naive.count(&s, &g).expect("count");
                assert_eq!(count, fx.n);
            });
        });
        group.bench_function(BenchmarkId::new("sqlite_cached", &id), |b| {
            let fx = Segment::shared(variant, n);
            let db = SqliteStore::open(&fx.sqlite_path, SqlDurability::Buffered).expect("open");
            b.iter(|| {
                let count = db.count(fx.session, fx.segment).expect("count");
                assert_eq!(count, fx.n);
            });
        });
        group.bench_function(BenchmarkId::new("sqlite_uncached", &id), |b| {
            let fx = Segment::shared(variant, n);
            b.iter(|| {
                let db = SqliteStore::open(&fx.sqlite_path, SqlDurability::Buffered).expect("open");
                let count = db.count(fx.session, fx.segment).expect("count");
                assert_eq!(count, fx.n);
            });
        });
    }
    group.finish();
}

/// The real-shaped session (2,000 entries, 7 % of them blobs): annals' replay with every blob
/// re-inflated and checked, against reading the same bytes as one plain JSONL file.
fn replay_real(c: &mut Criterion) {
    let session = RealCorpus::get().session();
    let dir = setup::fresh_dir("replay-real-");
    let store = FsStore::open(dir.path().join("store")).expect("open store");
    let (s, g) = (SessionId::new(), SegmentId::new());
    store.create_segment(s, g, &[]).expect("create segment");
    for chunk in session.chunks(16) {
        store.append_batch_raw(s, g, chunk).expect("append");
    }
    let plain = dir.path().join("plain.jsonl");
    let lines: Vec<u8> = session
        .iter()
        .flat_map(|e| e.as_str().bytes().chain([b'\n']))
        .collect();
    std::fs::write(&plain, lines).expect("write plain file");
    fixture::sync_tree(dir.path());
    let id = format!("real/{}", session.len());
    let mut group = c.benchmark_group("replay_real");
    setup::slow(&mut group, Duration::from_secs(5));
    group.throughput(Throughput::Bytes(RealCorpus::bytes_of(session)));
    // JSON text to the caller, blobs re-inflated (length and hash checked).
    group.bench_function(BenchmarkId::new("annals_raw", &id), |b| {
        b.iter(|| {
            let mut bytes = 0usize;
            let report = store
                .replay_raw(s, g, &ReplayOptions::strict(), &mut |entry| {
                    bytes += entry.json().map_or(0, str::len);
                    Ok(std::ops::ControlFlow::Continue(()))
                })
                .expect("replay");
            assert_eq!(report.entries, session.len() as u64);
            black_box(bytes)
        });
    });
    group.bench_function(BenchmarkId::new("annals_typed", &id), |b| {
        b.iter(|| {
            let mut seen = 0;
            store
                .replay(s, g, &ReplayOptions::strict(), |_, e: Event| {
                    black_box(e);
                    seen += 1;
                    Ok(())
                })
                .expect("replay");
            assert_eq!(seen, session.len());
        });
    });
    // The same bytes as one file: read it whole and split its lines (no checks).
    group.bench_function(BenchmarkId::new("plain_file", &id), |b| {
        b.iter(|| {
            let text = std::fs::read(&plain).expect("read");
            let mut bytes = 0usize;
            for line in text.split(|&c| c == b'\n').filter(|l| !l.is_empty()) {
                bytes += std::str::from_utf8(line).expect("utf-8").len();
            }
            black_box(bytes)
        });
    });
    group.bench_function(BenchmarkId::new("serde_floor", &id), |b| {
        b.iter(|| {
            for e in session {
                let ev: Event = serde_json::from_str(e.as_str()).expect("deserialize");
                black_box(ev);
            }
        });
    });
    group.finish();
}

fn main() {
    setup::init(env!("CARGO_TARGET_TMPDIR"));
    let mut c = setup::criterion();
    replay_typed(&mut c);
    replay_real(&mut c);
    verify(&mut c);
    entry_count(&mut c);
    c.final_summary();
    setup::cleanup();
}
