//! `annals serve` in a real browser: headless Chromium from the distribution, driven through
//! chromedriver, on a store with a demo, a forked session, damage, a 5 MiB entry, a script
//! payload and a live writer. One browser for every check (starting one costs seconds); each
//! check prints a libtest-style line and the run ends with libtest's summary line.
//!
//! Without chromium and chromedriver the run prints one line saying it was skipped, except
//! under `CI=true`, where that is a failure. `ANNALS_SCREENSHOT=PATH` also writes the session
//! page's screenshot there (the README's picture).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    missing_docs,
    reason = "tests report a failure by panicking, at the value or index at fault"
)]

#[path = "../support/mod.rs"]
mod support;

mod checks;
mod webdriver;

use std::io::Write;
use std::net::TcpListener;
use std::panic::AssertUnwindSafe;
use std::process::{Command, ExitCode};
use std::time::Instant;

use annals::{FsStore, SegmentId, SessionId, StoreExt};

use support::server::Server;
use support::stores;
use webdriver::{Browser, NoBrowser};

/// What the checks look at.
pub struct World {
    pub browser: Browser,
    pub server: Server,
    pub store: FsStore,
    pub forked: stores::Forked,
    pub damaged: (SessionId, SegmentId),
    pub big: (SessionId, SegmentId),
    pub hostile: (SessionId, SegmentId),
    pub live: (SessionId, SegmentId),
    /// A session from the demo, with tool calls and results.
    pub demo: SessionId,
    /// Listens where the script payload points: it must never be asked for anything.
    pub canary: TcpListener,
    pub root: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl World {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.base())
    }
}

fn stderr_line(text: &str) {
    // Straight to the terminal, as libtest's own lines are.
    let _ = writeln!(std::io::stderr(), "{text}");
}

fn main() -> ExitCode {
    let started = Instant::now();
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let browser = match Browser::start() {
        Ok(b) => b,
        Err(NoBrowser::Missing(why)) if !ci => {
            stderr_line(&format!(
                "browser tests skipped: {why} (install the chromium and chromium-driver packages; under CI=true they must run)"
            ));
            return ExitCode::SUCCESS;
        }
        Err(NoBrowser::Missing(why) | NoBrowser::Broken(why)) => {
            stderr_line(&format!("browser tests cannot run: {why}"));
            println!("test result: FAILED. 0 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in {:.2}s", started.elapsed().as_secs_f64());
            return ExitCode::FAILURE;
        }
    };
    let world = world(browser);
    let mut passed = 0;
    let mut failed = Vec::new();
    let mut skipped = 0;
    println!("\nrunning {} browser checks", checks::ALL.len());
    for (name, check) in checks::ALL {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            skipped += 1;
            continue;
        }
        let t = Instant::now();
        let outcome =
            std::panic::catch_unwind(AssertUnwindSafe(|| check(&world))).unwrap_or_else(|p| {
                Err(p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "panicked".into()))
            });
        // Whatever a check did, the console must hold no error from the page.
        let outcome = outcome.and_then(|()| checks::no_console_errors(&world));
        match outcome {
            Ok(()) => {
                passed += 1;
                println!(
                    "test browser::{name} ... ok ({:.1}s)",
                    t.elapsed().as_secs_f64()
                );
            }
            Err(why) => {
                println!(
                    "test browser::{name} ... FAILED ({:.1}s)",
                    t.elapsed().as_secs_f64()
                );
                failed.push((name, why));
            }
        }
    }
    drop(world);
    for (name, why) in &failed {
        println!("\n---- browser::{name} ----\n{why}");
    }
    println!(
        "\ntest result: {}. {passed} passed; {} failed; 0 ignored; 0 measured; {skipped} filtered out; finished in {:.2}s\n",
        if failed.is_empty() { "ok" } else { "FAILED" },
        failed.len(),
        started.elapsed().as_secs_f64()
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn world(browser: Browser) -> World {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let demo = Command::new(env!("CARGO_BIN_EXE_annals"))
        .arg("--root")
        .arg(&root)
        .args(["demo", "--workers", "2", "--sessions-per-worker", "3"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(
        demo.status.success(),
        "{}",
        String::from_utf8_lossy(&demo.stderr)
    );
    let store = FsStore::open(&root).unwrap();
    let demo = pick_demo_session(&store);
    let canary = TcpListener::bind("127.0.0.1:0").unwrap();
    canary.set_nonblocking(true).unwrap();
    let canary_addr = canary.local_addr().unwrap().to_string();
    let forked = stores::forked(&store);
    let (ds, dg, _) = stores::damaged(&store);
    let big = stores::big(&store);
    let hostile = stores::hostile(&store, &canary_addr);
    let live = (SessionId::new(), SegmentId::new());
    store
        .create(live.0, live.1, &stores::messages(0..3))
        .unwrap();
    let server = Server::start(&root, &[]);
    World {
        browser,
        server,
        store,
        forked,
        damaged: (ds, dg),
        big,
        hostile,
        live,
        demo,
        canary,
        root,
        _dir: dir,
    }
}

/// The demo session with the most entries in its newest segment that has tool calls.
fn pick_demo_session(store: &FsStore) -> SessionId {
    use annals::Store;
    let mut best = None;
    for s in store.list_sessions().unwrap() {
        let list = store.list_segments(s).unwrap();
        let Some(newest) = list.first() else { continue };
        let entries: Vec<serde_json::Value> = store.read(s, newest.segment).unwrap();
        let tools = entries.iter().any(|e| e["type"] == "tool_call");
        let score = (tools, list.len().min(3), entries.len());
        if best.as_ref().is_none_or(|(b, _)| score > *b) {
            best = Some((score, s));
        }
    }
    best.unwrap().1
}
