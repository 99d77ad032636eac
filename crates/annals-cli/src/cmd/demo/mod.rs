//! `annals demo`: worker processes (this binary, re-executed with a hidden subcommand) write
//! realistic agent sessions into one store at the same time; the parent then reads everything
//! back, checks that no entry was lost, verifies every line and shows how to look at it.
//!
//! `run` (this module) is the parent, `worker` one worker process, `script` what the agents
//! say.

#[macro_use]
pub mod script;
pub mod worker;

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::ops::ControlFlow;
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use annals::{ReplayOptions, SegmentId, SessionId, Store};
use clap::Args;

use crate::fail::{Failure, Outcome, CANNOT_RUN, OK, PROBLEMS};
use crate::ids::short;
use crate::target::{Location, Target};
use crate::term::{human_bytes, shell_word, Style};
use script::{now_ms, raw_entries, system_prompt};
use worker::WorkerReport;
pub use worker::{worker, WorkerArgs};

/// How long the parent waits for its workers before giving up on them, at least; bigger demos
/// get 20 ms more per session.
const WORKER_DEADLINE: Duration = Duration::from_secs(300);

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Worker processes writing at the same time
    #[arg(long, value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=64))]
    pub workers: u32,

    /// Sessions each worker writes
    #[arg(long, value_name = "N", default_value_t = 25,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub sessions_per_worker: u32,
}

// ---------------------------------------------------------------------------------------------
// The parent.

pub fn run(location: &Location, args: &DemoArgs) -> Outcome {
    let target = Target::writable(location)?;
    let style = Style::stdout();
    let mut out = io::stdout().lock();
    let exe = std::env::current_exe().map_err(|e| {
        Failure::new(
            CANNOT_RUN,
            format!("cannot find this program to start workers ({e})"),
            "",
            "run annals from a path that exists",
        )
    })?;
    let shared_session = SessionId::new();
    let shared_segment = SegmentId::new();
    let opening = [
        system_prompt(),
        obj!({"type": "user", "ts": now_ms(), "text": "Several agents share this conversation: \
            each appends its findings about the flaky deploy. If another agent wrote first, \
            fork and continue from what you saw."}),
    ];
    let opening = raw_entries(&opening).map_err(|e| target.err(e))?;
    target
        .store()
        .create_segment(shared_session, shared_segment, &opening)
        .map_err(|e| target.err(e))?;
    writeln!(
        out,
        "{} {} worker processes x {} sessions into {} ...",
        style.bold("annals demo:"),
        args.workers,
        args.sessions_per_worker,
        target.location().root.display()
    )?;
    out.flush()?;
    let seed = now_ms();
    let started = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..args.workers {
        let spawned = Command::new(&exe)
            .arg(crate::cli::DEMO_WORKER)
            .arg("--root")
            .arg(&target.location().root)
            .args(["--worker", &worker.to_string()])
            .args(["--sessions", &args.sessions_per_worker.to_string()])
            .args(["--shared-session", &shared_session.to_string()])
            .args(["--shared-segment", &shared_segment.to_string()])
            .args(["--seed", &(seed ^ (u64::from(worker) << 32)).to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        match spawned {
            Ok(child) => workers.push(Running::new(child)),
            Err(e) => {
                stop_all(&mut workers);
                return Err(Failure::new(
                    CANNOT_RUN,
                    format!("could not start worker {worker} ({e})"),
                    exe.display(),
                    "check that the binary is executable",
                ));
            }
        }
    }
    let sessions = u64::from(args.workers) * u64::from(args.sessions_per_worker);
    let deadline = WORKER_DEADLINE.max(Duration::from_millis(20 * sessions));
    let reports = wait_all(workers, deadline)?;
    let write_secs = started.elapsed().as_secs_f64();
    for r in &reports {
        writeln!(
            out,
            "  worker {}: {} sessions, {} segments, {} entries ({}), {} trace events, \
             forks: {} after an edit, {} after a conflict, {:.2} s",
            r.worker,
            r.sessions.len(),
            r.segments,
            r.entries,
            human_bytes(r.json_bytes),
            r.trace_events,
            r.edit_forks,
            r.conflict_forks,
            r.seconds
        )?;
    }
    let appended: u64 = reports.iter().map(|r| r.entries).sum::<u64>() + opening.len() as u64;
    let mut ours: HashSet<SessionId> = reports
        .iter()
        .flat_map(|r| r.sessions.iter().copied())
        .collect();
    ours.insert(shared_session);
    let check = read_back(target.store(), &ours).map_err(|e| target.err(e))?;
    // Entries too long for a line are kept as blobs: count them too.
    let (mut blob_count, mut blob_bytes) = (0u64, 0u64);
    for session in &ours {
        if let Some(usage) = target.blob_usage(*session) {
            blob_count += usage.count;
            blob_bytes += usage.bytes;
        }
    }
    let edit_forks: u64 = reports.iter().map(|r| r.edit_forks).sum();
    let conflict_forks: u64 = reports.iter().map(|r| r.conflict_forks).sum();
    let trace_events: u64 = reports.iter().map(|r| r.trace_events).sum();
    let json_bytes: u64 = reports.iter().map(|r| r.json_bytes).sum();
    #[expect(clippy::cast_precision_loss, reason = "a rate for people")]
    let (rate, byte_rate) = (
        appended as f64 / write_secs.max(1e-9),
        json_bytes as f64 / write_secs.max(1e-9),
    );
    writeln!(
        out,
        "wrote {} sessions ({} segments, {} forked: {} after an edit, {} after a conflict) in \
         {write_secs:.2} s: {} entries, {} trace events, {} of segment files ({} in {} blobs)",
        ours.len(),
        check.segments,
        edit_forks + conflict_forks,
        edit_forks,
        conflict_forks,
        appended,
        trace_events,
        human_bytes(check.bytes),
        human_bytes(blob_bytes),
        blob_count,
    )?;
    writeln!(
        out,
        "throughput: {rate:.0} entries/s, {}/s of entry JSON, end to end with {} processes \
         appending at once (session creations and forks are fsynced; workers pause 1-4 ms \
         before each append to the shared session)",
        human_bytes(byte_rate as u64),
        args.workers,
    )?;
    let lost_or_extra = check.appended != appended;
    let read_line = format!(
        "read back {} entries (+{} copied into forks) from {} segments: {}",
        check.appended,
        check.entries - check.appended,
        check.segments,
        if lost_or_extra {
            style.red(&format!("MISMATCH: the workers appended {appended}"))
        } else {
            style.green("every appended entry is there, in order")
        }
    );
    writeln!(out, "{read_line}")?;
    let verdict = if check.problems == 0 && check.unreadable == 0 {
        style.green("clean")
    } else {
        style.red(&format!(
            "{} problems, {} unreadable segments",
            check.problems, check.unreadable
        ))
    };
    writeln!(
        out,
        "verified the whole store: {} sessions, {} segments, {} traces, {}: {verdict}",
        check.store_sessions,
        check.store_segments,
        check.store_traces,
        human_bytes(check.store_bytes),
    )?;
    let me = invoked_as();
    let root = shell_word(&target.location().root.display().to_string());
    writeln!(out, "\n{}", style.bold("Look at it:"))?;
    let shared = short(&shared_session);
    let example = short(&check.example_fork.unwrap_or(shared_segment));
    for (command, why) in [
        ("ls".to_owned(), "sessions, newest first"),
        (
            format!("tree {shared}"),
            "the shared session: forks after conflicts",
        ),
        (
            format!("cat {example} --format transcript"),
            "one line per entry",
        ),
        (format!("cat {example} | jq"), "the entries as JSON"),
        (
            "grep -F FAILED -c".to_owned(),
            "search every entry, blobs included",
        ),
        (format!("follow {shared}"), "tail -f, across forks"),
        ("verify".to_owned(), "every line checked"),
        ("stats".to_owned(), ""),
    ] {
        let why = if why.is_empty() {
            String::new()
        } else {
            format!("   # {why}")
        };
        writeln!(out, "  {me} --root {root} {command}{why}")?;
    }
    out.flush()?;
    Ok(
        if lost_or_extra || check.problems > 0 || check.unreadable > 0 {
            PROBLEMS
        } else {
            OK
        },
    )
}

/// How the user ran us, so the printed commands can be pasted as they are.
fn invoked_as() -> String {
    let arg0 = std::env::args().next().unwrap_or_else(|| "annals".into());
    if arg0.contains('/') {
        shell_word(&arg0)
    } else {
        "annals".into()
    }
}

/// A worker process and the threads draining its pipes (so a chatty worker never blocks).
struct Running {
    child: Child,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

impl Running {
    fn new(mut child: Child) -> Self {
        fn drain(pipe: Option<impl Read + Send + 'static>) -> Option<JoinHandle<Vec<u8>>> {
            pipe.map(|mut p| {
                std::thread::spawn(move || {
                    let mut buf = Vec::new();
                    let _ = p.read_to_end(&mut buf);
                    buf
                })
            })
        }
        let stdout = drain(child.stdout.take());
        let stderr = drain(child.stderr.take());
        Self {
            child,
            stdout,
            stderr,
        }
    }
}

fn stop_all(workers: &mut [Running]) {
    for w in workers {
        let _ = w.child.kill();
        let _ = w.child.wait();
    }
}

fn wait_all(mut workers: Vec<Running>, limit: Duration) -> Result<Vec<WorkerReport>, Failure> {
    let deadline = Instant::now() + limit;
    let mut status = vec![None; workers.len()];
    while status.iter().any(Option::is_none) {
        for (w, s) in workers.iter_mut().zip(status.iter_mut()) {
            if s.is_none() {
                *s = w.child.try_wait().ok().flatten();
            }
        }
        if Instant::now() > deadline {
            stop_all(&mut workers);
            return Err(Failure::new(
                CANNOT_RUN,
                "demo workers did not finish in time",
                "",
                "try fewer --sessions-per-worker",
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut reports = Vec::new();
    for (i, (w, s)) in workers.into_iter().zip(status).enumerate() {
        let stdout = w.stdout.and_then(|h| h.join().ok()).unwrap_or_default();
        let stderr = w.stderr.and_then(|h| h.join().ok()).unwrap_or_default();
        let ok = s.is_some_and(|s| s.success());
        let report = serde_json::from_slice::<WorkerReport>(&stdout).ok();
        match (ok, report) {
            (true, Some(r)) => reports.push(r),
            _ => {
                let why = String::from_utf8_lossy(&stderr);
                let why = why.lines().next().unwrap_or("no message").trim().to_owned();
                return Err(Failure::new(
                    CANNOT_RUN,
                    format!("demo worker {i} failed ({why})"),
                    "",
                    "run `annals verify` on the store to see what it left",
                ));
            }
        }
    }
    Ok(reports)
}

#[derive(Default)]
struct ReadBack {
    /// This run's segments, entries read (fork copies included) and appended (excluded).
    segments: u64,
    entries: u64,
    appended: u64,
    bytes: u64,
    example_fork: Option<SegmentId>,
    /// The whole store.
    store_sessions: u64,
    store_segments: u64,
    store_traces: u64,
    store_bytes: u64,
    problems: u64,
    unreadable: u64,
}

/// Replays every segment of the store strictly and verifies every segment and trace; counts
/// what this run's sessions hold.
fn read_back(store: &dyn Store, ours: &HashSet<SessionId>) -> annals::Result<ReadBack> {
    let mut rb = ReadBack::default();
    for session in store.list_sessions()? {
        let mine = ours.contains(&session);
        let list = store.list_segments(session)?;
        rb.store_sessions += 1;
        for info in list {
            rb.store_segments += 1;
            rb.store_bytes += info.bytes;
            let report = store.verify(session, info.segment)?;
            rb.problems += report.problem_count;
            let mut entries = 0u64;
            match store.replay_raw(session, info.segment, &ReplayOptions::strict(), &mut |_| {
                entries += 1;
                Ok(ControlFlow::Continue(()))
            }) {
                Ok(_) => {}
                Err(e) if e.is_corruption() => rb.unreadable += 1,
                Err(e) => return Err(e),
            }
            let trace = store.replay_trace_raw(
                session,
                info.segment,
                &ReplayOptions::tolerant(),
                &mut |_| Ok(ControlFlow::Continue(())),
            )?;
            if trace.path.is_some() {
                rb.store_traces += 1;
                rb.store_bytes += trace.file_len;
                rb.problems += trace.problem_count;
            }
            if mine {
                rb.segments += 1;
                rb.entries += entries;
                rb.bytes += info.bytes;
                let copied = info.fork.map_or(0, |f| f.at);
                rb.appended += entries.saturating_sub(copied);
                if info.fork.is_some() && rb.example_fork.is_none() {
                    rb.example_fork = Some(info.segment);
                }
            }
        }
    }
    Ok(rb)
}

// ---------------------------------------------------------------------------------------------
