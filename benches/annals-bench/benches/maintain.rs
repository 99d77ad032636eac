//! Maintenance: truncating a segment to half its entries, and listing the sessions of a big
//! store.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    reason = "a benchmark, not library code: a broken setup is reported by panicking"
)]

use std::hint::black_box;
use std::sync::OnceLock;
use std::time::Duration;

use annals::{FsStore, Store};
use annals_bench::entries::{Message, Variant};
use annals_bench::fixture::{self, Segment};
use annals_bench::naive::NaiveStore;
use annals_bench::setup::{self, count_label, pick};
use criterion::{BatchSize, BenchmarkId, Criterion};

fn truncate_half(c: &mut Criterion) {
    let n = pick(100_000, 5_000);
    let keep = n / 2;
    let variant = Variant::Small;
    let id = format!("{}/{}", variant.label(), count_label(n));
    let mut group = c.benchmark_group("truncate_half");
    setup::slow(&mut group, Duration::from_secs(5));
    // Every iteration gets its own fsynced copy of the fixture (made untimed), so each one
    // truncates a full segment whose pages are clean.
    group.bench_function(BenchmarkId::new("annals", &id), |b| {
        let fx = Segment::shared(variant, n);
        b.iter_batched(
            || {
                let dir = setup::fresh_dir("truncate-annals-");
                let root = dir.path().join("store");
                fixture::copy_synced(
                    &fx.annals_path(),
                    &root
                        .join(fx.session.to_string())
                        .join(format!("{}.jsonl", fx.segment)),
                );
                (dir, FsStore::open(&root).expect("open store"))
            },
            |(dir, store)| {
                let tip = store
                    .truncate(fx.session, fx.segment, keep)
                    .expect("truncate");
                assert_eq!(tip.count, keep);
                (dir, store)
            },
            BatchSize::PerIteration,
        );
    });
    // Issue 13's baseline: a naive rewrite that copies the prefix bytes (found by counting
    // newlines), fsyncs the copy, renames it over the file and fsyncs the directory — what
    // annals does, without checking a single line.
    group.bench_function(BenchmarkId::new("naive_rewrite", &id), |b| {
        let fx = Segment::shared(variant, n);
        b.iter_batched(
            || {
                let dir = setup::fresh_dir("truncate-rewrite-");
                let path = dir.path().join("segment.jsonl");
                fixture::copy_synced(&fx.annals_path(), &path);
                (dir, path)
            },
            |(dir, path)| {
                let bytes = std::fs::read(&path).expect("read");
                // The header line, then `keep` entry lines.
                let end = memchr::memchr_iter(b'\n', &bytes)
                    .nth(keep as usize)
                    .map_or(bytes.len(), |i| i + 1);
                let tmp = dir.path().join("segment.jsonl.tmp");
                let mut file = std::fs::File::create(&tmp).expect("create");
                std::io::Write::write_all(&mut file, &bytes[..end]).expect("write");
                file.sync_all().expect("fsync");
                std::fs::rename(&tmp, &path).expect("rename");
                std::fs::File::open(dir.path())
                    .and_then(|d| d.sync_all())
                    .expect("fsync directory");
                dir
            },
            BatchSize::PerIteration,
        );
    });
    group.bench_function(BenchmarkId::new("naive", &id), |b| {
        let fx = Segment::shared(variant, n);
        let (s, g) = (fx.naive_session(), fx.naive_segment());
        b.iter_batched(
            || {
                let dir = setup::fresh_dir("truncate-naive-");
                let store = NaiveStore::new(dir.path(), false);
                fixture::copy_synced(&fx.naive_path(), &store.path(&s, &g));
                (dir, store)
            },
            |(dir, store)| {
                store
                    .truncate::<Message>(&s, &g, keep as usize)
                    .expect("truncate");
                (dir, store)
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

fn list_sessions(c: &mut Criterion) {
    let sessions = pick(10_000, 200);
    let mut group = c.benchmark_group("list_sessions");
    static STORE: OnceLock<tempfile::TempDir> = OnceLock::new();
    let root = || {
        STORE
            .get_or_init(|| {
                let dir = setup::fresh_dir("sessions-");
                fixture::many_sessions(dir.path(), sessions);
                dir
            })
            .path()
    };
    let id = count_label(sessions as u64);
    // Opening is part of it: a tool that lists sessions starts from nothing.
    group.bench_function(BenchmarkId::new("annals", &id), |b| {
        let root = root();
        b.iter(|| {
            let store = FsStore::open(root).expect("open store");
            let listed = store.list_sessions().expect("list");
            assert_eq!(listed.len(), sessions);
            black_box(listed);
        });
    });
    group.bench_function(BenchmarkId::new("naive", &id), |b| {
        let store = NaiveStore::new(root(), false);
        b.iter(|| {
            let listed = store.list_sessions().expect("list");
            assert_eq!(listed.len(), sessions);
            black_box(listed);
        });
    });
    group.finish();
}

fn main() {
    setup::init(env!("CARGO_TARGET_TMPDIR"));
    let mut c = setup::criterion();
    truncate_half(&mut c);
    list_sessions(&mut c);
    c.final_summary();
    setup::cleanup();
}
