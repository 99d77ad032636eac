//! The interleaved harness: contenders take turns, a few operations each, round after round in
//! rotating order, so that every contender is measured over the same stretch of time on the same
//! (shared, noisy) machine and disk. Each turn gives one sample, the time per operation of that
//! turn; a contender's result is the median of its samples, and the tables compare medians of the
//! same run as ratios. Used where criterion's one-contender-after-the-other measurement would
//! compare different disks: every append benchmark (a durable append waits for the disk, whose
//! latency drifts over seconds; a buffered append's files grow and write back meanwhile).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::Guarantee;

/// One contender's turn-taker.
pub struct Lane<'a> {
    /// Contender name (column of the table).
    pub name: String,
    /// What its acknowledged append survives.
    pub guarantee: Guarantee,
    /// Its configuration, for the JSON results.
    pub config: String,
    /// Runs one turn; returns the measured time and the number of operations it covered.
    /// Setup inside a turn (a fresh log, say) is left out of the returned time.
    pub turn: Box<dyn FnMut() -> (Duration, u64) + 'a>,
}

/// One contender's result in one item.
#[derive(Debug, Clone, Serialize)]
pub struct LaneResult {
    /// Contender name.
    pub name: String,
    /// `process_crash`, `power_cut` or `nothing`.
    pub guarantee: &'static str,
    /// Configuration.
    pub config: String,
    /// Median time per operation over the turns.
    pub median_ns: f64,
    /// 10th percentile.
    pub p10_ns: f64,
    /// 90th percentile.
    pub p90_ns: f64,
    /// Turns measured.
    pub samples: usize,
}

/// One item of the comparison (a row of a table).
#[derive(Debug, Clone, Serialize)]
pub struct ItemResult {
    /// Table.
    pub group: String,
    /// Row.
    pub parameter: String,
    /// What one operation is (`append`, `batch`, `session`).
    pub unit: &'static str,
    /// Payload bytes one operation appends (JSON text).
    pub bytes_per_op: u64,
    /// Rounds run.
    pub rounds: usize,
    /// Wall time of the whole item.
    pub seconds: f64,
    /// Every contender.
    pub contenders: Vec<LaneResult>,
}

/// Runs turns until `budget` is spent and at least `min_rounds` rounds are done (one warm-up
/// round first, not counted). Turn order rotates by one contender each round.
pub fn interleave(
    lanes: &mut [Lane<'_>],
    budget: Duration,
    min_rounds: usize,
) -> (Vec<LaneResult>, usize) {
    for lane in lanes.iter_mut() {
        (lane.turn)();
    }
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); lanes.len()];
    let start = Instant::now();
    let mut rounds = 0;
    while rounds < min_rounds || start.elapsed() < budget {
        for k in 0..lanes.len() {
            let c = (k + rounds) % lanes.len();
            let (took, ops) = (lanes[c].turn)();
            samples[c].push(took.as_nanos() as f64 / ops.max(1) as f64);
        }
        rounds += 1;
    }
    let results = lanes
        .iter()
        .zip(&mut samples)
        .map(|(lane, s)| {
            s.sort_by(f64::total_cmp);
            LaneResult {
                name: lane.name.clone(),
                guarantee: lane.guarantee.key(),
                config: lane.config.clone(),
                median_ns: percentile(s, 0.5),
                p10_ns: percentile(s, 0.1),
                p90_ns: percentile(s, 0.9),
                samples: s.len(),
            }
        })
        .collect();
    (results, rounds)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Where results go: next to criterion's (`$CRITERION_HOME`, else `$CARGO_TARGET_DIR/criterion`,
/// else the target directory that holds `tmp_dir`).
#[must_use]
pub fn results_dir(tmp_dir: &str) -> PathBuf {
    std::env::var_os("CRITERION_HOME")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR").map(|d| PathBuf::from(d).join("criterion"))
        })
        .unwrap_or_else(|| {
            std::path::Path::new(tmp_dir)
                .parent()
                .expect("the tmp dir is inside the target dir")
                .join("criterion")
        })
}

/// Prints an item's medians, one line per contender, with its ratio to the first lane.
pub fn print(item: &ItemResult) {
    println!(
        "{}/{} ({} rounds, {:.1} s, {} B per {}):",
        item.group, item.parameter, item.rounds, item.seconds, item.bytes_per_op, item.unit
    );
    let base = item.contenders.first().map_or(f64::NAN, |c| c.median_ns);
    for c in &item.contenders {
        println!(
            "  {:<22} {:>12} (p10 {:>10}, p90 {:>10})  {:>6.2}× the first   {}",
            c.name,
            human(c.median_ns),
            human(c.p10_ns),
            human(c.p90_ns),
            c.median_ns / base,
            c.guarantee
        );
    }
}

/// `1.23 µs`, `4.5 ms`.
#[must_use]
pub fn human(ns: f64) -> String {
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        format!("{:.3} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.3} ms", ns / 1e6)
    } else {
        format!("{:.3} s", ns / 1e9)
    }
}
