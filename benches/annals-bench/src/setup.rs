//! Run settings (full or quick), the scratch directory, and criterion's configuration.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode};

/// Quick mode: small fixtures and short measurements. On when `ANNALS_BENCH_QUICK=1`, when
/// criterion runs each benchmark once (`-- --test`), and when the binary is run by
/// `cargo test` (no `--bench` argument), so that checking the benches compile and run takes
/// seconds.
#[must_use]
pub fn quick() -> bool {
    static QUICK: OnceLock<bool> = OnceLock::new();
    *QUICK.get_or_init(|| {
        let env = std::env::var("ANNALS_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
        let args: Vec<String> = std::env::args().collect();
        env || args.iter().any(|a| a == "--test") || !args.iter().any(|a| a == "--bench")
    })
}

/// `full` in a full run, `quick` in quick mode.
#[must_use]
pub fn pick<T>(full: T, quick_value: T) -> T {
    if quick() {
        quick_value
    } else {
        full
    }
}

/// Entry counts label: 1000 → "1k", 100000 → "100k", 1000000 → "1M".
#[must_use]
pub fn count_label(n: u64) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else if n >= 1000 && n.is_multiple_of(1000) {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

static SCRATCH: Mutex<Option<tempfile::TempDir>> = Mutex::new(None);
static SCRATCH_PATH: OnceLock<PathBuf> = OnceLock::new();

/// Creates this process's scratch directory under `$ANNALS_BENCH_DIR`, or under `base` (the
/// benches pass cargo's `CARGO_TARGET_TMPDIR`, on the target directory's file system: a real
/// disk, where /tmp may be tmpfs). Every fixture and every log written lives there; call
/// [`cleanup`] at the end.
///
/// # Panics
/// If the directory cannot be created.
pub fn init(base: impl AsRef<Path>) -> &'static Path {
    SCRATCH_PATH.get_or_init(|| {
        let base = std::env::var_os("ANNALS_BENCH_DIR")
            .map_or_else(|| base.as_ref().to_path_buf(), PathBuf::from);
        std::fs::create_dir_all(&base).expect("create the bench base directory");
        let dir = tempfile::Builder::new()
            .prefix("annals-bench-")
            .tempdir_in(&base)
            .expect("create the scratch directory");
        let path = dir.path().to_path_buf();
        *SCRATCH.lock().unwrap_or_else(|e| e.into_inner()) = Some(dir);
        path
    })
}

/// The scratch directory made by [`init`].
///
/// # Panics
/// If [`init`] was not called.
#[must_use]
pub fn scratch() -> &'static Path {
    SCRATCH_PATH.get().expect("setup::init runs first")
}

/// A fresh directory inside the scratch directory.
///
/// # Panics
/// If it cannot be created.
#[must_use]
pub fn fresh_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(scratch())
        .expect("create a directory in the scratch directory")
}

/// Removes the scratch directory (statics are never dropped, so this is explicit).
pub fn cleanup() {
    drop(SCRATCH.lock().unwrap_or_else(|e| e.into_inner()).take());
}

/// Criterion with this suite's defaults, then the command line on top.
#[must_use]
pub fn criterion() -> Criterion {
    Criterion::default()
        .warm_up_time(pick(Duration::from_secs(1), Duration::from_millis(200)))
        .measurement_time(pick(Duration::from_secs(3), Duration::from_millis(500)))
        .sample_size(pick(30, 10))
        .configure_from_args()
}

/// Settings for a group whose iterations take milliseconds to seconds (big fixtures, fsync):
/// ten samples of flat size, so a full run stays within minutes.
pub fn slow(group: &mut BenchmarkGroup<'_, WallTime>, measurement: Duration) {
    group.sample_size(10).sampling_mode(SamplingMode::Flat);
    if !quick() {
        group.measurement_time(measurement);
    }
}

/// Writes a non-criterion benchmark's results as `{group}.json` next to criterion's own
/// results (found the way criterion finds its directory), where report.py reads them. Returns
/// the path.
///
/// # Panics
/// If the directory or the file cannot be written.
pub fn write_results(tmpdir: &str, group: &str, results: &serde_json::Value) -> std::path::PathBuf {
    let target = std::env::var_os("CRITERION_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR")
                .map(|d| std::path::PathBuf::from(d).join("criterion"))
        })
        .unwrap_or_else(|| {
            Path::new(tmpdir)
                .parent()
                .expect("the tmp dir is inside the target dir")
                .join("criterion")
        });
    std::fs::create_dir_all(&target).expect("create criterion directory");
    let path = target.join(format!("{group}.json"));
    let text = serde_json::to_string_pretty(results).expect("serialize results");
    std::fs::write(&path, text).expect("write results");
    path
}
