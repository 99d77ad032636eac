//! Large entries (issue 3): appending and replaying a realistic mix — nine small agent events in
//! ten, and one tool output of 8–256 KiB — with annals, which keeps the large entries as
//! content-addressed blobs, against the same mix written as plain long JSONL lines (one
//! `write(2)` per line to an `O_APPEND` file, no checks of any kind).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    reason = "a benchmark, not library code: a broken setup is reported by panicking"
)]

use std::fs::{File, OpenOptions};
use std::hint::black_box;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use annals::{FsStore, RawEntry, ReplayOptions, SegmentId, SessionId, Store};
use annals_bench::entries::{Corpus, Variant};
use annals_bench::setup::{self, pick};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput};

/// The mix: entry `i` is a tool output of 8–256 KiB when `i % 10 == 9`, else a small event.
fn mix(n: u64) -> Vec<RawEntry> {
    let small = Corpus::get(Variant::Small);
    (0..n)
        .map(|i| {
            if i % 10 == 9 {
                let len = 8192 + (i * 7919 % (248 * 1024));
                let line = "test planner::stops_on_empty_tool_result ... ok\n";
                let output: String = line
                    .repeat(usize::try_from(len).unwrap_or(0) / line.len() + 1)
                    .chars()
                    .take(usize::try_from(len).unwrap_or(0))
                    .collect();
                RawEntry::from_value(&serde_json::json!({
                    "type": "tool_result", "call_id": format!("call_{i:016x}"), "ok": true,
                    "output": output,
                }))
                .expect("serialize")
            } else {
                small.raw_at(i).clone()
            }
        })
        .collect()
}

fn entries() -> &'static [RawEntry] {
    static MIX: OnceLock<Vec<RawEntry>> = OnceLock::new();
    MIX.get_or_init(|| mix(pick(500, 50)))
}

fn payload() -> u64 {
    entries().iter().map(|e| e.len() as u64).sum()
}

fn plain_append(path: &PathBuf, entries: &[RawEntry]) {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open");
    let mut line = Vec::new();
    for e in entries {
        line.clear();
        line.extend_from_slice(e.as_str().as_bytes());
        line.push(b'\n');
        file.write_all(&line).expect("write");
    }
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("mix_append");
    setup::slow(&mut group, Duration::from_secs(10));
    group.throughput(Throughput::Bytes(payload()));
    let id = format!("{}_entries", entries().len());
    group.bench_function(BenchmarkId::new("annals", &id), |b| {
        b.iter_batched(
            || {
                let dir = setup::fresh_dir("mix-annals-");
                let store = FsStore::open(dir.path()).expect("open");
                let (session, segment) = (SessionId::new(), SegmentId::new());
                store.create_segment(session, segment, &[]).expect("create");
                (dir, store, session, segment)
            },
            |(dir, store, session, segment)| {
                for e in entries() {
                    store.append_raw(session, segment, e).expect("append");
                }
                (dir, store)
            },
            BatchSize::PerIteration,
        );
    });
    group.bench_function(BenchmarkId::new("plain_jsonl", &id), |b| {
        b.iter_batched(
            || setup::fresh_dir("mix-plain-"),
            |dir| {
                plain_append(&dir.path().join("log.jsonl"), entries());
                dir
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

fn replay(c: &mut Criterion) {
    let dir = setup::fresh_dir("mix-replay-");
    let store = FsStore::open(dir.path().join("store")).expect("open");
    let (session, segment) = (SessionId::new(), SegmentId::new());
    store.create_segment(session, segment, &[]).expect("create");
    for e in entries() {
        store.append_raw(session, segment, e).expect("append");
    }
    let plain = dir.path().join("plain.jsonl");
    plain_append(&plain, entries());

    let mut group = c.benchmark_group("mix_replay");
    setup::slow(&mut group, Duration::from_secs(5));
    group.throughput(Throughput::Bytes(payload()));
    let id = format!("{}_entries", entries().len());
    // Both hand every entry's JSON text to the caller; annals also checks every line's CRC
    // and sequence number and every blob's length and SHA-256.
    group.bench_function(BenchmarkId::new("annals", &id), |b| {
        b.iter(|| {
            let mut bytes = 0usize;
            store
                .replay_raw(session, segment, &ReplayOptions::strict(), &mut |entry| {
                    bytes += entry.json().map_or(0, str::len);
                    Ok(std::ops::ControlFlow::Continue(()))
                })
                .expect("replay");
            black_box(bytes)
        });
    });
    group.bench_function(BenchmarkId::new("plain_jsonl", &id), |b| {
        b.iter(|| {
            let mut reader = BufReader::new(File::open(&plain).expect("open"));
            let (mut bytes, mut line) = (0usize, Vec::new());
            while reader.read_until(b'\n', &mut line).expect("read") > 0 {
                bytes += line.len() - 1;
                line.clear();
            }
            black_box(bytes)
        });
    });
    group.finish();
}

fn main() {
    setup::init(env!("CARGO_TARGET_TMPDIR"));
    let mut c = setup::criterion();
    append(&mut c);
    replay(&mut c);
    c.final_summary();
    setup::cleanup();
}
