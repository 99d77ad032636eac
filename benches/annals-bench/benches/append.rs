//! Buffered appends: one entry, from several threads, and in batches of 64, for annals and
//! its baselines (sync appends are in `sync.rs`). One iteration is one append (or one batch);
//! the log files are rotated outside the timed region so that no file grows without bound.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    reason = "a benchmark, not library code: a broken setup is reported by panicking"
)]

use std::sync::Barrier;
use std::time::{Duration, Instant};

use annals::{FsStore, RawEntry, SegmentId, SessionId, Store};
use annals_bench::entries::{Corpus, Variant};
use annals_bench::logs::{AnnalsLog, FloorLog, Log, NaiveLog, SqliteLog};
use annals_bench::naive::{Floor, NaiveStore};
use annals_bench::realshape::RealCorpus;
use annals_bench::setup::{self, pick};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput};

/// A file is replaced by a fresh one once this many bytes went into it.
const ROTATE_BYTES: u64 = 64 << 20;

/// Drives a [`Log`] through criterion: `iters` appends per sample, rotating before a sample
/// once the current file is big enough.
struct Driver<L> {
    log: L,
    next: u64,
    written: u64,
    bytes_per_append: u64,
}

impl<L: Log> Driver<L> {
    fn new(log: L, bytes_per_append: u64) -> Self {
        Self {
            log,
            next: 0,
            written: 0,
            bytes_per_append,
        }
    }

    fn run(&mut self, iters: u64) -> Duration {
        if self.written > ROTATE_BYTES {
            self.log.rotate();
            self.written = 0;
        }
        let start = Instant::now();
        for _ in 0..iters {
            self.log.append(self.next);
            self.next += 1;
        }
        let elapsed = start.elapsed();
        self.written += iters * self.bytes_per_append;
        elapsed
    }
}

/// Registers one contender: its [`Log`] is made on first use and kept across samples.
fn contender<L: Log>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    id: BenchmarkId,
    bytes_per_append: u64,
    make: impl Fn() -> L,
) {
    let mut driver: Option<Driver<L>> = None;
    group.bench_function(id, |b| {
        let d = driver.get_or_insert_with(|| Driver::new(make(), bytes_per_append));
        b.iter_custom(|iters| d.run(iters));
    });
}

/// Buffered only: sync appends wait for the disk, whose latency drifts too much for
/// one-after-another measurement; `benches/sync.rs` compares them interleaved.
fn append_one(c: &mut Criterion) {
    let sync = false;
    let mut group = c.benchmark_group("append_one_buffered");
    group.throughput(Throughput::Elements(1));
    for variant in Variant::ALL {
        let corpus = Corpus::get(variant);
        let per = corpus.mean_len() as u64 + 40;
        let label = variant.label();
        contender(&mut group, BenchmarkId::new("annals", label), per, || {
            AnnalsLog::new(variant, sync, 1, false)
        });
        contender(
            &mut group,
            BenchmarkId::new("annals_typed", label),
            per,
            || AnnalsLog::new(variant, sync, 1, true),
        );
        contender(
            &mut group,
            BenchmarkId::new("annals_lease", label),
            per,
            || AnnalsLog::leased(variant, sync, 1),
        );
        contender(&mut group, BenchmarkId::new("naive", label), per, || {
            NaiveLog::new(variant, sync, 1)
        });
        contender(&mut group, BenchmarkId::new("floor", label), per, || {
            FloorLog::new(variant, sync, 1)
        });
        contender(&mut group, BenchmarkId::new("sqlite", label), per, || {
            SqliteLog::new(variant, sync, 1)
        });
    }
    group.finish();
}

fn append_batch(c: &mut Criterion) {
    const BATCH: usize = 64;
    let sync = false;
    let mut group = c.benchmark_group("append_batch64_buffered");
    group.throughput(Throughput::Elements(BATCH as u64));
    let variant = Variant::Small;
    let corpus = Corpus::get(variant);
    let per = (corpus.mean_len() as u64 + 40) * BATCH as u64;
    let label = variant.label();
    contender(&mut group, BenchmarkId::new("annals", label), per, || {
        AnnalsLog::new(variant, sync, BATCH, false)
    });
    contender(
        &mut group,
        BenchmarkId::new("annals_lease", label),
        per,
        || AnnalsLog::leased(variant, sync, BATCH),
    );
    contender(&mut group, BenchmarkId::new("naive", label), per, || {
        NaiveLog::new(variant, sync, BATCH)
    });
    contender(&mut group, BenchmarkId::new("floor", label), per, || {
        FloorLog::new(variant, sync, BATCH)
    });
    contender(&mut group, BenchmarkId::new("sqlite", label), per, || {
        SqliteLog::new(variant, sync, BATCH)
    });
    group.finish();
}

/// Runs `iters` appends split over `threads` threads; `append(thread, i)` does one. Only the
/// appends are timed: the threads start together behind a barrier, and the clock stops when
/// the last one is done.
fn threaded(threads: usize, iters: u64, append: &(dyn Fn(usize, u64) + Sync)) -> Duration {
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = &barrier;
                scope.spawn(move || {
                    let share =
                        iters / threads as u64 + u64::from((t as u64) < iters % threads as u64);
                    barrier.wait();
                    for i in 0..share {
                        append(t, i);
                    }
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        for w in workers {
            w.join().expect("append thread");
        }
        start.elapsed()
    })
}

/// Per-thread logs for the threaded benchmarks, rotated together.
struct Threaded<T> {
    make: Box<dyn Fn() -> T>,
    logs: T,
    appended: u64,
}

impl<T> Threaded<T> {
    fn new(make: impl Fn() -> T + 'static) -> Self {
        let logs = make();
        Self {
            make: Box::new(make),
            logs,
            appended: 0,
        }
    }

    fn run(&mut self, threads: usize, iters: u64, f: impl Fn(&T, usize, u64) + Sync) -> Duration
    where
        T: Sync,
    {
        let rotate_after = ROTATE_BYTES / 500;
        if self.appended > rotate_after {
            // Dropping the old logs removes their files (their directories are TempDirs).
            self.logs = (self.make)();
            self.appended = 0;
        }
        let logs = &self.logs;
        let offset = self.appended;
        let elapsed = threaded(threads, iters, &|t, i| f(logs, t, offset + i));
        self.appended += iters;
        elapsed
    }
}

struct AnnalsShared {
    _dir: tempfile::TempDir,
    store: FsStore,
    segments: Vec<(SessionId, SegmentId)>,
}

fn annals_shared(segments: usize) -> AnnalsShared {
    let dir = setup::fresh_dir("annals-mt-");
    let store = FsStore::open(dir.path()).expect("open store");
    let segments = (0..segments)
        .map(|_| {
            let ids = (SessionId::new(), SegmentId::new());
            store
                .create_segment(ids.0, ids.1, &[])
                .expect("create segment");
            ids
        })
        .collect();
    AnnalsShared {
        _dir: dir,
        store,
        segments,
    }
}

struct FloorShared {
    _dir: tempfile::TempDir,
    files: Vec<Floor>,
}

fn floor_shared(files: usize) -> FloorShared {
    let dir = setup::fresh_dir("floor-mt-");
    let files = (0..files)
        .map(|f| Floor::open(&dir.path().join(format!("{f}.jsonl")), false).expect("open floor"))
        .collect();
    FloorShared { _dir: dir, files }
}

struct NaiveShared {
    _dir: tempfile::TempDir,
    store: NaiveStore,
    segments: Vec<(String, String)>,
}

fn naive_shared(segments: usize) -> NaiveShared {
    let dir = setup::fresh_dir("naive-mt-");
    NaiveShared {
        store: NaiveStore::new(dir.path(), false),
        _dir: dir,
        segments: (0..segments)
            .map(|_| (SessionId::new().to_string(), SegmentId::new().to_string()))
            .collect(),
    }
}

fn append_threads(c: &mut Criterion) {
    let corpus = Corpus::get(Variant::Small);
    for (name, separate) in [("separate", true), ("one_segment", false)] {
        let mut group = c.benchmark_group(format!("append_threads_{name}"));
        group.throughput(Throughput::Elements(1));
        for threads in [1usize, 4, 8] {
            let logs = if separate { threads } else { 1 };
            // Appends from thread `t` go to log `t % logs`.
            let mut annals: Option<Threaded<AnnalsShared>> = None;
            group.bench_function(BenchmarkId::new("annals", threads), |b| {
                let state =
                    annals.get_or_insert_with(|| Threaded::new(move || annals_shared(logs)));
                b.iter_custom(|iters| {
                    state.run(threads, iters, |s, t, i| {
                        let (session, segment) = s.segments[t % logs];
                        s.store
                            .append_raw(session, segment, corpus.raw_at(i))
                            .expect("annals append");
                    })
                });
            });
            let mut floor: Option<Threaded<FloorShared>> = None;
            group.bench_function(BenchmarkId::new("floor", threads), |b| {
                let state = floor.get_or_insert_with(|| Threaded::new(move || floor_shared(logs)));
                b.iter_custom(|iters| {
                    state.run(threads, iters, |s, t, i| {
                        s.files[t % logs]
                            .append(corpus.framed_at(i))
                            .expect("floor write");
                    })
                });
            });
            if separate {
                let mut naive: Option<Threaded<NaiveShared>> = None;
                group.bench_function(BenchmarkId::new("naive", threads), |b| {
                    let state =
                        naive.get_or_insert_with(|| Threaded::new(move || naive_shared(logs)));
                    b.iter_custom(|iters| {
                        state.run(threads, iters, |s, t, i| {
                            let (session, segment) = &s.segments[t % logs];
                            s.store
                                .append(session, segment, corpus.line_at(i))
                                .expect("naive append");
                        })
                    });
                });
            }
        }
        group.finish();
    }
}

/// The real-shaped session (2,000 entries, 4.2 MB, 7 % of entries over 4 KiB) appended to a
/// fresh segment, one append per entry and in batches of 16, buffered; beside it the same
/// bytes as 400-byte entries (for the cost per byte), the naive store and the floor (one
/// `write(2)` per line to an `O_APPEND` file, no framing: the entries over 4 KiB cannot be
/// annals lines). Durable real-shaped appends are in the comparison bench (interleaved).
fn append_real(c: &mut Criterion) {
    let session = RealCorpus::get().session();
    let session = &session[..pick(session.len(), 100)];
    let bytes = RealCorpus::bytes_of(session);
    let small = Corpus::get(Variant::Small);
    let same_bytes: Vec<RawEntry> = {
        let (mut out, mut have) = (Vec::new(), 0);
        while have < bytes {
            let e = small.raw_at(out.len() as u64).clone();
            have += e.len() as u64;
            out.push(e);
        }
        out
    };
    let mut group = c.benchmark_group("append_real_buffered");
    setup::slow(&mut group, Duration::from_secs(8));
    group.throughput(Throughput::Bytes(bytes));
    for (param, batch) in [("real/one_per_entry", 1usize), ("real/batch16", 16)] {
        for (name, entries) in [
            ("annals", session),
            ("annals_400B_same_bytes", &same_bytes[..]),
        ] {
            group.bench_function(BenchmarkId::new(name, param), |b| {
                b.iter_batched(
                    || {
                        let dir = setup::fresh_dir("real-annals-");
                        let store = FsStore::open(dir.path()).expect("open store");
                        let ids = (SessionId::new(), SegmentId::new());
                        store
                            .create_segment(ids.0, ids.1, &[])
                            .expect("create segment");
                        (dir, store, ids)
                    },
                    |(dir, store, (s, g))| {
                        for chunk in entries.chunks(batch) {
                            store.append_batch_raw(s, g, chunk).expect("append");
                        }
                        (dir, store)
                    },
                    BatchSize::PerIteration,
                );
            });
        }
        let lines: Vec<Vec<u8>> = session
            .iter()
            .map(|e| [e.as_str().as_bytes(), b"\n"].concat())
            .collect();
        let batches: Vec<Vec<u8>> = lines.chunks(batch).map(<[Vec<u8>]>::concat).collect();
        group.bench_function(BenchmarkId::new("naive", param), |b| {
            b.iter_batched(
                || setup::fresh_dir("real-naive-"),
                |dir| {
                    let store = NaiveStore::new(dir.path(), false);
                    for joined in &batches {
                        store.append("s", "g", joined).expect("naive append");
                    }
                    dir
                },
                BatchSize::PerIteration,
            );
        });
        group.bench_function(BenchmarkId::new("floor", param), |b| {
            b.iter_batched(
                || {
                    let dir = setup::fresh_dir("real-floor-");
                    let floor = Floor::open(&dir.path().join("log.jsonl"), false).expect("open");
                    (dir, floor)
                },
                |(dir, floor)| {
                    for joined in &batches {
                        floor.append(joined).expect("floor write");
                    }
                    (dir, floor)
                },
                BatchSize::PerIteration,
            );
        });
    }
    group.finish();
}

fn main() {
    setup::init(env!("CARGO_TARGET_TMPDIR"));
    let mut c = setup::criterion();
    append_one(&mut c);
    append_batch(&mut c);
    append_real(&mut c);
    append_threads(&mut c);
    c.final_summary();
    setup::cleanup();
}
