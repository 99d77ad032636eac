//! Appends, annals against its peers, interleaved (see `harness.rs` for why not criterion):
//! one entry, batches of 64, 8 threads, all on 400-byte messages; and the real-shaped session
//! (one append per entry, batches of 16), with every buffered contender also appending the same
//! bytes as 400-byte messages, so that the cost per byte of large entries can be read off the same
//! run. Each item runs in both modes: `Buffered` (survives a process crash) and `Durable`
//! (survives a power cut); a peer takes part in a row with its mode of that guarantee. Writes
//! `compare_append.json` next to criterion's results; `benches/report.py` makes the tables.
//!
//! Arguments: criterion-style filters (substrings of `group/parameter`), `--test` or
//! `ANNALS_BENCH_QUICK=1` for a quick run (CI's smoke test). `ANNALS_COMPARE_ONLY=a,b` runs only
//! the named contenders.

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

use annals::RawEntry;
use annals_bench::entries::{Corpus, Variant, CORPUS_LEN};
use annals_bench::realshape::{RealCorpus, SizeStats};
use annals_bench::setup::{self, pick, quick};
use annals_bench_compare::harness::{self, interleave, ItemResult, Lane};
use annals_bench_compare::{contenders, Contender, LogId, Mode, Opener};

/// A contender opened in a scratch directory, reopened fresh every so often so that no file
/// grows without bound during a long run.
struct Slot {
    name: &'static str,
    opener: Opener,
    mode: Mode,
    dir: Option<tempfile::TempDir>,
    store: Option<Box<dyn Contender>>,
    logs: Vec<LogId>,
    seqs: Vec<u64>,
    appended: u64,
}

impl Slot {
    fn open(name: &'static str, opener: Opener, mode: Mode, logs: usize) -> Option<Slot> {
        let mut slot = Slot {
            name,
            opener,
            mode,
            dir: None,
            store: None,
            logs: Vec::new(),
            seqs: Vec::new(),
            appended: 0,
        };
        slot.fresh(logs).then_some(slot)
    }

    /// A new store in a new directory with `logs` empty logs; false if the contender has no
    /// such mode.
    fn fresh(&mut self, logs: usize) -> bool {
        self.store = None;
        self.dir = None;
        let dir = setup::fresh_dir(&format!("cmp-{}-", self.name));
        let Some(store) = (self.opener)(dir.path(), self.mode) else {
            return false;
        };
        self.logs = (0..logs).map(|_| store.new_log()).collect();
        self.seqs = vec![0; logs];
        self.store = Some(store);
        self.dir = Some(dir);
        self.appended = 0;
        true
    }

    fn store(&self) -> &dyn Contender {
        self.store.as_deref().expect("an open slot has a store")
    }

    /// Reopens fresh once `limit` entries went in since the last time (untimed).
    fn rotate_after(&mut self, limit: u64) {
        if self.appended >= limit {
            let logs = self.logs.len();
            self.fresh(logs);
        }
    }

    fn lane<'a>(
        self,
        label: String,
        turn: impl FnMut(&mut Slot) -> (Duration, u64) + 'a,
    ) -> Lane<'a> {
        let store = self.store();
        let (guarantee, config) = (store.guarantee(), store.config());
        let mut slot = self;
        let mut turn = turn;
        Lane {
            name: label,
            guarantee,
            config,
            turn: Box::new(move || turn(&mut slot)),
        }
    }
}

/// Entries appended to one store before it is replaced by a fresh one.
const ROTATE: u64 = 64 * 1024;

fn only() -> Option<Vec<String>> {
    std::env::var("ANNALS_COMPARE_ONLY")
        .ok()
        .filter(|v| !v.is_empty())
        .map(|v| v.split(',').map(str::to_string).collect())
}

/// Every contender that has `mode`, each with `logs` empty logs.
fn slots(mode: Mode, logs: usize) -> Vec<Slot> {
    let only = only();
    contenders()
        .into_iter()
        .filter(|(name, _)| only.as_ref().is_none_or(|o| o.iter().any(|n| n == name)))
        .filter_map(|(name, opener)| Slot::open(name, opener, mode, logs))
        .collect()
}

fn mode_label(mode: Mode) -> &'static str {
    match mode {
        Mode::Buffered => "buffered",
        Mode::Durable => "durable",
    }
}

struct Run {
    filters: Vec<String>,
    items: Vec<ItemResult>,
}

impl Run {
    fn wants(&self, group: &str, parameter: &str) -> bool {
        let id = format!("{group}/{parameter}");
        self.filters.is_empty() || self.filters.iter().any(|f| id.contains(f.as_str()))
    }

    #[allow(clippy::too_many_arguments)]
    fn item(
        &mut self,
        group: &str,
        parameter: &str,
        unit: &'static str,
        bytes_per_op: u64,
        budget: Duration,
        min_rounds: usize,
        lanes: impl FnOnce() -> Vec<Lane<'static>>,
    ) {
        if !self.wants(group, parameter) {
            return;
        }
        let start = Instant::now();
        let mut lanes = lanes();
        let (contenders, rounds) = interleave(
            &mut lanes,
            pick(budget, Duration::from_millis(100)),
            pick(min_rounds, 1),
        );
        drop(lanes);
        let item = ItemResult {
            group: group.to_string(),
            parameter: parameter.to_string(),
            unit,
            bytes_per_op,
            rounds,
            seconds: start.elapsed().as_secs_f64(),
            contenders,
        };
        harness::print(&item);
        self.items.push(item);
    }
}

fn one_entry(run: &mut Run) {
    let corpus = Corpus::get(Variant::Small);
    for mode in [Mode::Buffered, Mode::Durable] {
        let turn = match mode {
            Mode::Buffered => 64,
            Mode::Durable => 4,
        };
        let budget = match mode {
            Mode::Buffered => Duration::from_secs(10),
            Mode::Durable => Duration::from_secs(20),
        };
        run.item(
            "cmp_append_one",
            &format!("400B/{}", mode_label(mode)),
            "append",
            corpus.mean_len() as u64,
            budget,
            3,
            || {
                slots(mode, 1)
                    .into_iter()
                    .map(|slot| {
                        let label = slot.name.to_string();
                        slot.lane(label, move |s| {
                            s.rotate_after(ROTATE);
                            let (store, log) = (s.store(), s.logs[0]);
                            let mut seq = s.seqs[0];
                            let start = Instant::now();
                            for _ in 0..turn {
                                store.append(log, seq, corpus.raw_at(seq));
                                seq += 1;
                            }
                            let took = start.elapsed();
                            s.seqs[0] = seq;
                            s.appended += turn;
                            (took, turn)
                        })
                    })
                    .collect()
            },
        );
    }
}

fn batch64(run: &mut Run) {
    const BATCH: usize = 64;
    let corpus = Corpus::get(Variant::Small);
    let bytes = (corpus.mean_len() * BATCH as f64) as u64;
    for mode in [Mode::Buffered, Mode::Durable] {
        let turn = match mode {
            Mode::Buffered => 8,
            Mode::Durable => 2,
        };
        let budget = match mode {
            Mode::Buffered => Duration::from_secs(8),
            Mode::Durable => Duration::from_secs(15),
        };
        run.item(
            "cmp_append_batch64",
            &format!("400B/{}", mode_label(mode)),
            "batch",
            bytes,
            budget,
            3,
            || {
                slots(mode, 1)
                    .into_iter()
                    .map(|slot| {
                        let label = slot.name.to_string();
                        slot.lane(label, move |s| {
                            s.rotate_after(ROTATE);
                            let (store, log) = (s.store(), s.logs[0]);
                            let mut seq = s.seqs[0];
                            let start = Instant::now();
                            for _ in 0..turn {
                                let first = (seq as usize) % (CORPUS_LEN / BATCH) * BATCH;
                                store.append_batch(log, seq, &corpus.raw[first..first + BATCH]);
                                seq += BATCH as u64;
                            }
                            let took = start.elapsed();
                            s.seqs[0] = seq;
                            s.appended += turn * BATCH as u64;
                            (took, turn)
                        })
                    })
                    .collect()
            },
        );
    }
}

/// 8 threads appending durably, each to its own session or all to one: the time per append
/// of the whole group (wall time ÷ appends), so lower is more throughput.
fn threads(run: &mut Run) {
    const THREADS: usize = 8;
    let per_thread = pick(8u64, 2);
    let corpus = Corpus::get(Variant::Small);
    for (param, logs) in [("8_sessions", THREADS), ("1_session", 1)] {
        run.item(
            "cmp_threads8_durable",
            &format!("400B/{param}"),
            "append",
            corpus.mean_len() as u64,
            Duration::from_secs(15),
            3,
            || {
                slots(Mode::Durable, logs)
                    .into_iter()
                    .map(|slot| {
                        let label = slot.name.to_string();
                        slot.lane(label, move |s| {
                            s.rotate_after(ROTATE);
                            let barrier = Barrier::new(THREADS + 1);
                            let store = s.store();
                            let (logs, seqs) = (&s.logs, &s.seqs);
                            let took = std::thread::scope(|scope| {
                                let workers: Vec<_> = (0..THREADS)
                                    .map(|t| {
                                        let barrier = &barrier;
                                        scope.spawn(move || {
                                            barrier.wait();
                                            for i in 0..per_thread {
                                                if logs.len() == 1 {
                                                    store.append_next(logs[0], corpus.raw_at(i));
                                                } else {
                                                    let seq = seqs[t] + i;
                                                    store.append(logs[t], seq, corpus.raw_at(seq));
                                                }
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
                            });
                            for seq in &mut s.seqs {
                                *seq += per_thread;
                            }
                            let ops = THREADS as u64 * per_thread;
                            s.appended += ops;
                            (took, ops)
                        })
                    })
                    .collect()
            },
        );
    }
}

/// The real-shaped session, and 400-byte entries of the same total bytes.
fn sessions() -> (&'static [RawEntry], &'static [RawEntry]) {
    static SAME_BYTES: std::sync::OnceLock<Vec<RawEntry>> = std::sync::OnceLock::new();
    let real = RealCorpus::get().session();
    let real = &real[..pick(real.len(), 100)];
    let small = SAME_BYTES.get_or_init(|| {
        let want = RealCorpus::bytes_of(real);
        let corpus = Corpus::get(Variant::Small);
        let mut out = Vec::new();
        let mut have = 0;
        while have < want {
            let e = corpus.raw_at(out.len() as u64).clone();
            have += e.len() as u64;
            out.push(e);
        }
        out
    });
    (real, small)
}

/// One operation = appending a whole session to a fresh log, `batch` entries per append.
fn session_turn(
    entries: &'static [RawEntry],
    batch: usize,
) -> impl FnMut(&mut Slot) -> (Duration, u64) {
    move |s: &mut Slot| {
        s.rotate_after(ROTATE);
        let store = s.store();
        let log = store.new_log();
        let start = Instant::now();
        if batch == 1 {
            for (seq, e) in entries.iter().enumerate() {
                store.append(log, seq as u64, e);
            }
        } else {
            for (k, chunk) in entries.chunks(batch).enumerate() {
                store.append_batch(log, (k * batch) as u64, chunk);
            }
        }
        let took = start.elapsed();
        s.appended += entries.len() as u64;
        (took, 1)
    }
}

fn real_shaped(run: &mut Run) {
    let (real, small) = sessions();
    let bytes = RealCorpus::bytes_of(real);
    println!("real-shaped session: {}", SizeStats::of(real));
    println!("same bytes as 400 B entries: {} entries", small.len());
    for (param, batch) in [("one_per_entry", 1usize), ("batch16", 16)] {
        for mode in [Mode::Buffered, Mode::Durable] {
            let (budget, min_rounds) = match mode {
                Mode::Buffered => (Duration::from_secs(15), 5),
                Mode::Durable => (Duration::from_secs(25), 3),
            };
            run.item(
                "cmp_real_session",
                &format!("{param}/{}", mode_label(mode)),
                "session",
                bytes,
                budget,
                min_rounds,
                || {
                    let mut lanes = Vec::new();
                    for slot in slots(mode, 0) {
                        let label = slot.name.to_string();
                        lanes.push(slot.lane(label, session_turn(real, batch)));
                    }
                    // The same bytes as small entries: for the cost per byte, buffered only (as
                    // durable appends of ~10k small entries it would take minutes per round).
                    if mode == Mode::Buffered {
                        for slot in slots(mode, 0) {
                            let label = format!("{}_400B_same_bytes", slot.name);
                            lanes.push(slot.lane(label, session_turn(small, batch)));
                        }
                    }
                    lanes
                },
            );
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let filters = args
        .iter()
        .filter(|a| !a.starts_with('-'))
        .cloned()
        .collect();
    let measuring = args.iter().any(|a| a == "--bench") && !quick();
    setup::init(env!("CARGO_TARGET_TMPDIR"));
    let mut run = Run {
        filters,
        items: Vec::new(),
    };
    one_entry(&mut run);
    batch64(&mut run);
    threads(&mut run);
    real_shaped(&mut run);
    if measuring && !run.items.is_empty() {
        let dir = harness::results_dir(env!("CARGO_TARGET_TMPDIR"));
        std::fs::create_dir_all(&dir).expect("create the results directory");
        let path = dir.join("compare_append.json");
        // A filtered run keeps the other items of an earlier run.
        let mut all: Vec<serde_json::Value> = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        for item in &run.items {
            let value = serde_json::to_value(item).expect("serialize");
            all.retain(|v| !(v["group"] == value["group"] && v["parameter"] == value["parameter"]));
            all.push(value);
        }
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&all).expect("serialize"),
        )
        .expect("write results");
        println!("wrote {}", path.display());
    }
    setup::cleanup();
}
