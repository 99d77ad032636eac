//! Reads, annals against its peers (criterion: a replay or a count is CPU work on cached pages,
//! which criterion measures well one contender after the other): replay of 100k 400-byte
//! entries and of the real-shaped session into owned structs, and the entry count of an open
//! log at 1k and 100k entries. Building the fixtures also measures what each contender's files
//! take on disk (`compare_disk.json` next to criterion's results).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    reason = "a benchmark, not library code: a broken setup is reported by panicking"
)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use annals::RawEntry;
use annals_bench::entries::{Corpus, Message, Variant};
use annals_bench::realshape::{Event, RealCorpus};
use annals_bench::setup::{self, count_label, pick};
use annals_bench_compare::{contenders, disk, harness, Contender, LogId, Mode, Opener};
use criterion::{BenchmarkId, Criterion, Throughput};

/// One contender holding one log, built once per process.
struct Fixture {
    _dir: tempfile::TempDir,
    store: Box<dyn Contender>,
    log: LogId,
    n: u64,
}

/// What the fixtures' files take: `{fixture: {contender: {...}}}`.
static DISK: Mutex<BTreeMap<String, BTreeMap<String, serde_json::Value>>> =
    Mutex::new(BTreeMap::new());

/// Builds `entries` into a fresh store of every contender (batches of 1,000, in the contender's
/// buffered mode where it has one, then settled) and records the bytes on disk.
fn build(label: &str, entries: &[RawEntry]) -> Vec<(&'static str, Fixture)> {
    let payload = RealCorpus::bytes_of(entries);
    let mut out = Vec::new();
    for &(name, opener, _) in readers() {
        let dir = setup::fresh_dir(&format!("cmp-read-{name}-"));
        let store = open(opener, dir.path()).expect("opened once already");
        let log = store.new_log();
        for (k, chunk) in entries.chunks(1_000).enumerate() {
            store.append_batch(log, (k * 1_000) as u64, chunk);
        }
        store.settle();
        let (apparent, allocated) = disk::usage(store.dir());
        DISK.lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(label.to_string())
            .or_default()
            .insert(
                name.to_string(),
                serde_json::json!({
                    "entries": entries.len(),
                    "payload_bytes": payload,
                    "apparent_bytes": apparent,
                    "allocated_bytes": allocated,
                }),
            );
        out.push((
            name,
            Fixture {
                _dir: dir,
                store,
                log,
                n: entries.len() as u64,
            },
        ));
    }
    out
}

/// The contenders that can be read here (opened in their buffered mode, else their durable
/// one), and whether each counts: tried once on an empty store. The other annals contenders
/// are other ways of appending to the same store, read as `annals` reads, but for
/// `annals_zstd`, whose blobs are decompressed as they are read.
fn readers() -> &'static [(&'static str, Opener, bool)] {
    static READERS: OnceLock<Vec<(&'static str, Opener, bool)>> = OnceLock::new();
    READERS.get_or_init(|| {
        contenders()
            .into_iter()
            .filter(|(name, _)| !name.starts_with("annals_") || *name == "annals_zstd")
            .filter_map(|(name, opener)| {
                let dir = setup::fresh_dir("cmp-probe-");
                let store = open(opener, dir.path())?;
                let counts = store.count(store.new_log()).is_some();
                Some((name, opener, counts))
            })
            .collect()
    })
}

fn open(opener: Opener, dir: &std::path::Path) -> Option<Box<dyn Contender>> {
    opener(dir, Mode::Buffered).or_else(|| opener(dir, Mode::Durable))
}

fn small(n: u64) -> Vec<RawEntry> {
    let corpus = Corpus::get(Variant::Small);
    (0..n).map(|i| corpus.raw_at(i).clone()).collect()
}

/// Every reader's fixture of one set of entries.
type Fixtures = [(&'static str, Fixture)];

fn fixtures_small(n: u64) -> &'static Fixtures {
    static BUILT: OnceLock<Mutex<BTreeMap<u64, &'static Fixtures>>> = OnceLock::new();
    let mut built = BUILT
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    built.entry(n).or_insert_with(|| {
        Box::leak(build(&format!("400B/{}", count_label(n)), &small(n)).into_boxed_slice())
    })
}

fn fixtures_real() -> &'static [(&'static str, Fixture)] {
    static BUILT: OnceLock<Vec<(&'static str, Fixture)>> = OnceLock::new();
    BUILT.get_or_init(|| build("real/session", RealCorpus::get().session()))
}

fn fixture<'a>(built: &'a [(&'static str, Fixture)], name: &str) -> &'a Fixture {
    &built
        .iter()
        .find(|(f, _)| *f == name)
        .expect("every reader has a fixture")
        .1
}

fn replay(c: &mut Criterion) {
    let mut group = c.benchmark_group("cmp_replay");
    setup::slow(&mut group, Duration::from_secs(5));
    let n = pick(100_000, 5_000);
    let param = format!("400B/{}", count_label(n));
    group.throughput(Throughput::Bytes(
        Corpus::get(Variant::Small).payload_bytes(n),
    ));
    for &(name, _, _) in readers() {
        group.bench_function(BenchmarkId::new(name, &param), |b| {
            let fx = fixture(fixtures_small(n), name);
            b.iter(|| {
                let seen = fx.store.replay_messages(fx.log, &mut |m: Message| {
                    black_box(m);
                });
                assert_eq!(seen, fx.n);
            });
        });
    }
    group.bench_function(BenchmarkId::new("serde_floor", &param), |b| {
        let corpus = Corpus::get(Variant::Small);
        b.iter(|| {
            for i in 0..n {
                let m: Message = serde_json::from_str(corpus.json_at(i)).expect("deserialize");
                black_box(m);
            }
        });
    });

    let session = RealCorpus::get().session();
    let param = format!("real/{}", session.len());
    group.throughput(Throughput::Bytes(RealCorpus::bytes_of(session)));
    for &(name, _, _) in readers() {
        group.bench_function(BenchmarkId::new(name, &param), |b| {
            let fx = fixture(fixtures_real(), name);
            b.iter(|| {
                let seen = fx.store.replay_events(fx.log, &mut |e: Event| {
                    black_box(e);
                });
                assert_eq!(seen, fx.n);
            });
        });
    }
    group.bench_function(BenchmarkId::new("serde_floor", &param), |b| {
        b.iter(|| {
            for e in session {
                let ev: Event = serde_json::from_str(e.as_str()).expect("deserialize");
                black_box(ev);
            }
        });
    });
    group.finish();
}

fn count(c: &mut Criterion) {
    let mut group = c.benchmark_group("cmp_count");
    for n in [1_000, pick(100_000, 5_000)] {
        let param = count_label(n);
        for &(name, _, counts) in readers() {
            if !counts {
                continue;
            }
            group.bench_function(BenchmarkId::new(name, &param), |b| {
                let fx = fixture(fixtures_small(n), name);
                b.iter(|| {
                    assert_eq!(fx.store.count(fx.log), Some(fx.n));
                });
            });
        }
    }
    group.finish();
}

fn main() {
    setup::init(env!("CARGO_TARGET_TMPDIR"));
    let mut c = setup::criterion();
    replay(&mut c);
    count(&mut c);
    c.final_summary();
    let disk = std::mem::take(&mut *DISK.lock().unwrap_or_else(|e| e.into_inner()));
    if !disk.is_empty() && !setup::quick() {
        let dir = harness::results_dir(env!("CARGO_TARGET_TMPDIR"));
        std::fs::create_dir_all(&dir).expect("create the results directory");
        let path = dir.join("compare_disk.json");
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&disk).expect("serialize"),
        )
        .expect("write results");
        println!("wrote {}", path.display());
    }
    for (fixture, by) in &disk {
        for (name, v) in by {
            println!(
                "disk {fixture:<14} {name:<10} {:>8.1} B/entry allocated, {:>8.1} apparent ({} entries)",
                v["allocated_bytes"].as_f64().unwrap_or(0.0) / v["entries"].as_f64().unwrap_or(1.0),
                v["apparent_bytes"].as_f64().unwrap_or(0.0) / v["entries"].as_f64().unwrap_or(1.0),
                v["entries"]
            );
        }
    }
    setup::cleanup();
}
