//! Sync-mode appends (every append waits for `fdatasync`/`fsync`), measured interleaved.
//!
//! On the virtual disk these benchmarks run on, one flush takes anywhere from ~0.15 ms to
//! ~5 ms depending on what else the host is writing, and that level drifts over seconds.
//! Criterion measures contenders one after another, so each would see a different disk. Here
//! the contenders take turns — a few appends each, round after round, in rotating order —
//! and each one's median latency is taken over the same stretch of time. Not criterion: it
//! writes `append_sync_interleaved.json` next to criterion's results, which report.py reads.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    reason = "a benchmark, not library code: a broken setup is reported by panicking"
)]

use std::time::{Duration, Instant};

use annals_bench::entries::Variant;
use annals_bench::logs::{Contender, CreateLog, Log, NaiveCreateLog, TurnSyncLog};
use annals_bench::setup::{self, pick};

const GROUP: &str = "append_sync_interleaved";

/// Appends per contender per turn.
const TURN: usize = 4;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

/// Named contenders of one configuration.
type Lanes = Vec<(&'static str, Box<dyn Log>)>;

/// The four contenders of the append benchmarks, durable, `batch` entries per append.
fn all(variant: Variant, batch: usize) -> Lanes {
    Contender::ALL
        .iter()
        .map(|c| (c.name(), c.open(variant, true, batch)))
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Criterion-style filters: run only if no filter is given or one matches the group.
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    if !filters.is_empty() && !filters.iter().any(|f| GROUP.contains(f.as_str())) {
        return;
    }
    let measuring = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test");
    setup::init(env!("CARGO_TARGET_TMPDIR"));
    let budget = pick(Duration::from_secs(20), Duration::from_millis(300));
    // (parameter, batch, contenders): one durable append of one entry or a batch by all four;
    // a 20-entry turn made durable by `Store::sync` against one write + fdatasync of the same
    // bytes (issue 13); creating a session with its first entry against a naive durable create.
    let turn = 20;
    let configs: Vec<(String, usize, Lanes)> = vec![
        ("400B".into(), 1, all(Variant::Small, 1)),
        ("1-4KiB".into(), 1, all(Variant::Large, 1)),
        ("batch64/400B".into(), 64, all(Variant::Small, 64)),
        (
            format!("turn{turn}_sync/400B"),
            turn,
            vec![
                ("annals", Box::new(TurnSyncLog::new(Variant::Small, turn))),
                ("floor", Contender::Floor.open(Variant::Small, true, turn)),
            ],
        ),
        (
            "create_session/400B".into(),
            1,
            vec![
                ("annals", Box::new(CreateLog::new(Variant::Small))),
                ("naive", Box::new(NaiveCreateLog::new(Variant::Small))),
            ],
        ),
    ];
    let mut results = Vec::new();
    for (param, batch, contenders) in configs {
        let (names, mut logs): (Vec<&str>, Vec<Box<dyn Log>>) = contenders.into_iter().unzip();
        let mut latencies: Vec<Vec<f64>> = vec![Vec::new(); logs.len()];
        let mut next = 0u64;
        for log in &mut logs {
            for _ in 0..TURN {
                log.append(next);
                next += 1;
            }
        }
        let start = Instant::now();
        let mut rounds = 0usize;
        while start.elapsed() < budget || rounds < 2 {
            for k in 0..logs.len() {
                let c = (k + rounds) % logs.len();
                for _ in 0..TURN {
                    let t = Instant::now();
                    logs[c].append(next);
                    latencies[c].push(t.elapsed().as_nanos() as f64);
                    next += 1;
                }
            }
            rounds += 1;
        }
        println!("{GROUP}/{param}: {rounds} rounds of {TURN} appends per contender");
        let mut contenders = serde_json::Map::new();
        for (name, lat) in names.iter().zip(&mut latencies) {
            lat.sort_by(f64::total_cmp);
            let (p10, p50, p90) = (
                percentile(lat, 0.1),
                percentile(lat, 0.5),
                percentile(lat, 0.9),
            );
            println!(
                "  {:<7} median {:>9.1} µs   p10 {:>9.1} µs   p90 {:>9.1} µs",
                name,
                p50 / 1e3,
                p10 / 1e3,
                p90 / 1e3
            );
            contenders.insert(
                (*name).to_string(),
                serde_json::json!({"median_ns": p50, "p10_ns": p10, "p90_ns": p90, "n": lat.len()}),
            );
        }
        results.push(serde_json::json!({
            "parameter": param,
            "batch": batch,
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
