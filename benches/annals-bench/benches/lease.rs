//! Appends through a writer lease against the `write(2)` floor, the default per-append-lock
//! path and the naive store, measured interleaved (issue 13's lease targets).
//!
//! Buffered appends cost a few microseconds, and what else the machine runs moves that by
//! more than the differences measured here; so, as in `sync.rs`, the contenders take turns —
//! a burst of appends each, round after round, in rotating order — over the same stretch of
//! time, and each one's median per append is taken over its bursts. A burst is timed as a
//! whole (one clock read per `BURST` appends, not per append). Not criterion: it writes
//! `append_lease_interleaved.json` next to criterion's results.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    reason = "a benchmark, not library code: a broken setup is reported by panicking"
)]

use std::time::{Duration, Instant};

use annals_bench::entries::Variant;
use annals_bench::logs::{AnnalsLog, Contender, Log, TurnSyncLog};
use annals_bench::setup::{self, pick};

const GROUP: &str = "append_lease_interleaved";

/// Named contenders of one configuration.
type Lanes = Vec<(&'static str, Box<dyn Log>)>;

/// The lease, the per-append-lock path, the floor and the naive store, `batch` entries per
/// append.
fn lanes(variant: Variant, sync: bool, batch: usize) -> Lanes {
    vec![
        (
            "annals_lease",
            Box::new(AnnalsLog::leased(variant, sync, batch)),
        ),
        ("annals", Contender::Annals.open(variant, sync, batch)),
        ("floor", Contender::Floor.open(variant, sync, batch)),
        ("naive", Contender::Naive.open(variant, sync, batch)),
    ]
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

/// Entries a log gets before its file is replaced (untimed), so no file grows without bound.
const ROTATE_EVERY: u64 = 200_000;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    if !filters.is_empty() && !filters.iter().any(|f| GROUP.contains(f.as_str())) {
        return;
    }
    let smoke = args.iter().any(|a| a == "--test");
    let measuring = args.iter().any(|a| a == "--bench") && !smoke;
    setup::init(env!("CARGO_TARGET_TMPDIR"));
    // Per configuration; a smoke run (`-- --test`) only shows that every lane works.
    let budget = if smoke {
        Duration::from_millis(100)
    } else {
        pick(Duration::from_secs(20), Duration::from_secs(4))
    };
    let turn = 20;
    // (parameter, appends per burst, entries per append, contenders).
    let configs: Vec<(String, usize, usize, Lanes)> = vec![
        (
            "buffered/400B".into(),
            64,
            1,
            lanes(Variant::Small, false, 1),
        ),
        (
            "buffered/1-4KiB".into(),
            64,
            1,
            lanes(Variant::Large, false, 1),
        ),
        (
            "buffered_batch64/400B".into(),
            8,
            64,
            lanes(Variant::Small, false, 64),
        ),
        ("sync/400B".into(), 2, 1, lanes(Variant::Small, true, 1)),
        (
            format!("turn{turn}_sync/400B"),
            1,
            turn,
            vec![
                (
                    "annals_lease",
                    Box::new(TurnSyncLog::leased(Variant::Small, turn)),
                ),
                ("annals", Box::new(TurnSyncLog::new(Variant::Small, turn))),
                ("floor", Contender::Floor.open(Variant::Small, true, turn)),
            ],
        ),
    ];
    let mut results = Vec::new();
    for (param, burst, batch, contenders) in configs {
        let (names, mut logs): (Vec<&str>, Vec<Box<dyn Log>>) = contenders.into_iter().unzip();
        let mut per_append: Vec<Vec<f64>> = vec![Vec::new(); logs.len()];
        let mut done = vec![0u64; logs.len()];
        // Warm up: every log open, its first appends made.
        for log in &mut logs {
            for i in 0..burst as u64 {
                log.append(i);
            }
        }
        let start = Instant::now();
        let mut rounds = 0usize;
        while start.elapsed() < budget || rounds < 2 {
            for k in 0..logs.len() {
                let c = (k + rounds) % logs.len();
                if done[c] * batch as u64 >= ROTATE_EVERY {
                    logs[c].rotate();
                    done[c] = 0;
                }
                let first = done[c];
                let t = Instant::now();
                for i in 0..burst as u64 {
                    logs[c].append(first + i);
                }
                per_append[c].push(t.elapsed().as_nanos() as f64 / burst as f64);
                done[c] += burst as u64;
            }
            rounds += 1;
        }
        println!("{GROUP}/{param}: {rounds} rounds of {burst} appends of {batch} per contender");
        let floor = names.iter().position(|n| *n == "floor");
        let mut medians = Vec::new();
        let mut contenders = serde_json::Map::new();
        for (name, lat) in names.iter().zip(&mut per_append) {
            lat.sort_by(f64::total_cmp);
            let (p10, p50, p90) = (
                percentile(lat, 0.1),
                percentile(lat, 0.5),
                percentile(lat, 0.9),
            );
            medians.push(p50);
            contenders.insert(
                (*name).to_string(),
                serde_json::json!({"median_ns": p50, "p10_ns": p10, "p90_ns": p90, "n": lat.len()}),
            );
        }
        for (name, p50) in names.iter().zip(&medians) {
            let ratio = floor.map_or(String::new(), |f| {
                format!("   {:>5.2}× the floor", p50 / medians[f])
            });
            println!("  {name:<13} median {:>9.2} µs{ratio}", p50 / 1e3);
        }
        results.push(serde_json::json!({
            "parameter": param,
            "batch": batch,
            "burst": burst,
            "rounds": rounds,
            "contenders": contenders,
        }));
    }
    if measuring {
        let results = serde_json::Value::Array(results);
        let path = setup::write_results(env!("CARGO_TARGET_TMPDIR"), GROUP, &results);
        println!("wrote {}", path.display());
    }
    setup::cleanup();
}
