//! `annals demo`: worker processes (this binary, re-executed with a hidden subcommand) write
//! realistic agent sessions into one store at the same time; the parent then reads everything
//! back, checks that no entry was lost, verifies every line and shows how to look at it.

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use annals::{Error, FsStore, RawEntry, ReplayOptions, SegmentId, SegmentWriter, SessionId, Store};
use clap::Args;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::fail::{Failure, Outcome, CANNOT_RUN, OK, PROBLEMS};
use crate::target::Target;
use crate::term::{human_bytes, shell_word, Style};

/// A JSON object whose keys keep the order written here (`json!` sorts them), as an agent
/// runtime would write it: `obj!({"type": "user", "text": text})`. Values may be anything
/// `Serialize`, nested `obj!`s included.
macro_rules! obj {
    ({ $($key:literal : $value:expr),* $(,)? }) => {
        ordered(&[$(($key, serde_json::to_string(&$value).unwrap_or_else(|_| "null".into()))),*])
    };
}

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

#[derive(Debug, Args)]
pub struct WorkerArgs {
    #[arg(long)]
    pub worker: u32,
    #[arg(long)]
    pub sessions: u32,
    #[arg(long)]
    pub shared_session: SessionId,
    #[arg(long)]
    pub shared_segment: SegmentId,
    #[arg(long)]
    pub seed: u64,
}

/// What one worker wrote, sent to the parent as one JSON line on stdout.
#[derive(Debug, Default, Serialize, Deserialize)]
struct WorkerReport {
    worker: u32,
    /// Sessions it created (the shared session not included).
    sessions: Vec<SessionId>,
    /// Segments it created: one per session, plus one per fork.
    segments: u64,
    /// Entries it appended (entries copied by a fork not included).
    entries: u64,
    /// JSON bytes of those entries.
    json_bytes: u64,
    trace_events: u64,
    edit_forks: u64,
    conflict_forks: u64,
    seconds: f64,
}

// ---------------------------------------------------------------------------------------------
// The parent.

pub fn run(root: Option<PathBuf>, args: &DemoArgs) -> Outcome {
    let target = Target::create(root)?;
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
        .store
        .create_segment(shared_session, shared_segment, &opening)
        .map_err(|e| target.err(e))?;
    writeln!(
        out,
        "{} {} worker processes x {} sessions into {} ...",
        style.bold("annals demo:"),
        args.workers,
        args.sessions_per_worker,
        target.root.display()
    )?;
    out.flush()?;
    let seed = now_ms();
    let started = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..args.workers {
        let spawned = Command::new(&exe)
            .arg("--root")
            .arg(&target.root)
            .arg("__demo-worker")
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
    let check = read_back(&target.store, &ours).map_err(|e| target.err(e))?;
    // Entries too long for a line are kept as blobs: count them too.
    let (mut blob_count, mut blob_bytes) = (0u64, 0u64);
    for session in &ours {
        let report = target
            .store
            .gc_blobs(*session, true)
            .map_err(|e| target.err(e))?;
        blob_count += report.kept;
        blob_bytes += blob_dir_bytes(&target.root.join(session.to_string()).join("blobs"));
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
    let root = shell_word(&target.root.display().to_string());
    writeln!(out, "\n{}", style.bold("Look at it:"))?;
    writeln!(out, "  {me} ls --root {root}")?;
    writeln!(
        out,
        "  {me} ls {shared_session} --root {root}      # the shared session: forks after conflicts"
    )?;
    let example = check.example_fork.unwrap_or(shared_segment);
    writeln!(out, "  {me} cat {example} --root {root} | jq")?;
    writeln!(out, "  {me} verify --root {root}")?;
    writeln!(out, "  {me} stats --root {root}")?;
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
fn read_back(store: &FsStore, ours: &HashSet<SessionId>) -> annals::Result<ReadBack> {
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
// A worker.

pub fn worker(root: Option<PathBuf>, args: &WorkerArgs) -> Outcome {
    let target = Target::existing(root)?;
    let started = Instant::now();
    let mut w = Worker {
        store: &target.store,
        rng: Rng(args.seed | 1),
        report: WorkerReport {
            worker: args.worker,
            ..WorkerReport::default()
        },
        shared: (args.shared_session, args.shared_segment),
    };
    let result = (|| -> annals::Result<()> {
        for i in 0..args.sessions {
            w.session(i == 0)?;
            // A bounded number of bursts keeps the shared session readable in big demos.
            if i % 3 == 0 && i < 30 {
                w.shared_burst()?;
            }
        }
        w.shared_burst()
    })();
    result.map_err(|e| target.err(e))?;
    w.report.seconds = started.elapsed().as_secs_f64();
    let line = serde_json::to_string(&w.report).map_err(io::Error::from)?;
    let mut out = io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(OK)
}

struct Worker<'s> {
    store: &'s FsStore,
    rng: Rng,
    report: WorkerReport,
    shared: (SessionId, SegmentId),
}

impl Worker<'_> {
    fn count(&mut self, entries: &[Json]) -> annals::Result<Vec<RawEntry>> {
        let raw = raw_entries(entries)?;
        self.report.entries += raw.len() as u64;
        self.report.json_bytes += raw.iter().map(|r| r.len() as u64).sum::<u64>();
        Ok(raw)
    }

    fn append(
        &mut self,
        session: SessionId,
        segment: SegmentId,
        entries: &[Json],
    ) -> annals::Result<u64> {
        let raw = self.count(entries)?;
        Ok(self.store.append_batch_raw(session, segment, &raw)?.count)
    }

    fn trace(
        &mut self,
        session: SessionId,
        segment: SegmentId,
        event: &Json,
    ) -> annals::Result<()> {
        self.report.trace_events += 1;
        let raw = RawEntry::from_json(event.get())?;
        self.store
            .append_trace_raw(session, segment, std::slice::from_ref(&raw))
    }

    /// One conversation: turns of user message, tool calls and results, assistant answer;
    /// sometimes the user edits an earlier message and the agent retries from there (a fork).
    /// With `must_edit`, the user always edits once (so every demo has lineage to show).
    fn session(&mut self, must_edit: bool) -> annals::Result<()> {
        let session = SessionId::new();
        let mut segment = SegmentId::new();
        let opening = [system_prompt()];
        let raw = self.count(&opening)?;
        let mut count = self.store.create_segment(session, segment, &raw)?.count;
        self.report.sessions.push(session);
        self.report.segments += 1;
        let file = self.rng.pick(FILES);
        let mut user_turns: Vec<(u64, String)> = Vec::new();
        let turns = 2 + self.rng.below(4);
        let mut edited = false;
        for turn in 0..turns {
            let text = if turn == 0 {
                self.rng.pick(PROMPTS).replace("{file}", file)
            } else {
                self.rng.pick(FOLLOW_UPS).replace("{file}", file)
            };
            user_turns.push((count, text.clone()));
            self.append(
                session,
                segment,
                &[obj!({"type": "user", "ts": now_ms(), "text": text})],
            )?;
            count = self.agent_turn(session, segment, file)?;
            if !edited && turn >= 1 && (must_edit || self.rng.chance(25)) {
                // The user edits an earlier message: the agent's history from that message on
                // is abandoned, and a new segment continues from just before it.
                edited = true;
                let pick = usize::try_from(self.rng.below(user_turns.len() as u64)).unwrap_or(0);
                let (at, original) = user_turns.get(pick).cloned().unwrap_or((1, String::new()));
                let from = segment;
                segment = SegmentId::new();
                self.store.fork(session, from, at, segment)?;
                self.report.edit_forks += 1;
                self.report.segments += 1;
                self.trace(
                    session,
                    segment,
                    &obj!({"event": "edit_and_retry", "ts": now_ms(),
                    "forked_from": from.to_string(), "at": at}),
                )?;
                let edit = self.rng.pick(EDITS);
                self.append(
                    session,
                    segment,
                    &[obj!({"type": "user", "ts": now_ms(),
                    "text": format!("{original} {edit}"), "edited": true})],
                )?;
                count = self.agent_turn(session, segment, file)?;
            }
        }
        Ok(())
    }

    /// Tool calls with their results, then the assistant's answer. Returns the new count.
    fn agent_turn(
        &mut self,
        session: SessionId,
        segment: SegmentId,
        file: &str,
    ) -> annals::Result<u64> {
        for _ in 0..self.rng.below(4) {
            let call_id = format!("call_{:016x}", self.rng.next());
            let (name, args, output) = self.tool_use(file);
            let call = obj!({"type": "tool_call", "ts": now_ms(), "id": call_id, "name": name, "args": args});
            let result = obj!({"type": "tool_result", "ts": now_ms(), "call_id": call_id,
                "ok": !output.starts_with("error"), "output": output});
            if self.rng.chance(50) {
                self.append(session, segment, &[call, result])?;
            } else {
                self.append(session, segment, &[call])?;
                self.append(session, segment, &[result])?;
            }
            let ms = 5 + self.rng.below(900);
            self.trace(session, segment, &obj!({"event": "tool", "ts": now_ms(), "call_id": call_id, "name": name, "ms": ms}))?;
        }
        let sentences = 1 + self.rng.below(9);
        let text = self.prose(sentences);
        let (input, output) = (800 + self.rng.below(30_000), text.len() / 4);
        let answer = obj!({"type": "assistant", "ts": now_ms(), "model": "demo-large-2",
            "text": text, "usage": obj!({"input_tokens": input, "output_tokens": output})});
        let count = self.append(session, segment, &[answer])?;
        let ms = 300 + self.rng.below(4000);
        self.trace(
            session,
            segment,
            &obj!({"event": "model", "ts": now_ms(), "model": "demo-large-2",
            "input_tokens": input, "output_tokens": output, "ms": ms}),
        )?;
        Ok(count)
    }

    /// A few appends to the segment every worker shares, each after a short "think": when
    /// another worker appended meanwhile, the detector refuses and this worker forks from what
    /// it had seen, as an agent runtime would.
    fn shared_burst(&mut self) -> annals::Result<()> {
        let (session, segment) = self.shared;
        let mut writer = SegmentWriter::open(self.store, session, segment)?;
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(1 + self.rng.below(4)));
            let sentences = 1 + self.rng.below(4);
            let entry = obj!({"type": "assistant", "ts": now_ms(), "agent": format!("worker-{}", self.report.worker),
                "text": self.prose(sentences)});
            let raw = self.count(std::slice::from_ref(&entry))?;
            match writer.append_raw(&raw) {
                Ok(_) => {}
                Err(Error::ConcurrentWriter { found, .. }) => {
                    let from = writer.segment();
                    let at = writer.tip().count;
                    let fork = writer.fork()?;
                    self.report.conflict_forks += 1;
                    self.report.segments += 1;
                    self.trace(session, fork, &obj!({"event": "conflict_fork", "ts": now_ms(),
                        "forked_from": from.to_string(), "at": at, "other_writer_reached": found.count}))?;
                    writer.append_raw(&raw)?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn tool_use(&mut self, file: &str) -> (&'static str, Json, String) {
        // Mostly short outputs, and one in ten a whole file or a long build log (8-256 KiB):
        // too long for a line, so annals keeps it as a blob.
        let budget = if self.rng.chance(10) {
            8192 + self.rng.below(248 << 10)
        } else {
            100 + self.rng.below(2900)
        };
        let budget = usize::try_from(budget).unwrap_or(1000);
        match self.rng.below(3) {
            0 => {
                let start = 1 + self.rng.below(200);
                let first = self.rng.below(CODE.len() as u64);
                let mut text = String::new();
                let mut n = start;
                // Consecutive lines of the snippet pool, so it reads like a file.
                while text.len() < budget {
                    let line = CODE
                        .iter()
                        .cycle()
                        .nth(usize::try_from(first + n - start).unwrap_or(0))
                        .copied()
                        .unwrap_or_default();
                    text.push_str(&format!("{n:>5}  {line}\n"));
                    n += 1;
                }
                (
                    "read_file",
                    obj!({"path": file, "offset": start}),
                    fit(text, budget),
                )
            }
            1 => {
                let cmd = self.rng.pick(COMMANDS).replace("{file}", file);
                let mut text = format!("$ {cmd}\n");
                let mut failed = false;
                while text.len() < budget {
                    let test = self.rng.pick(TESTS);
                    if self.rng.chance(8) {
                        failed = true;
                        text.push_str(&format!("test {test} ... FAILED\n"));
                    } else {
                        text.push_str(&format!("test {test} ... ok\n"));
                    }
                }
                if failed {
                    text.push_str("error: test failed, to rerun pass `--test integration`\n");
                }
                (
                    "run_command",
                    obj!({"cmd": cmd, "timeout_s": 120}),
                    fit(text, budget),
                )
            }
            _ if self.rng.chance(25) && budget < 8192 => {
                let query = self.rng.pick(QUERIES);
                let mut text = String::new();
                while text.len() < budget {
                    text.push_str(&format!(
                        "{}:{}: {}\n",
                        self.rng.pick(FILES),
                        1 + self.rng.below(400),
                        self.rng.pick(CODE)
                    ));
                }
                ("search", obj!({"query": query}), fit(text, budget))
            }
            _ => {
                let lines = 2 + self.rng.below(12);
                let content: Vec<&str> = (0..lines).map(|_| self.rng.pick(CODE)).collect();
                let content = fit(content.join("\n"), budget);
                let written = content.len();
                (
                    "write_file",
                    obj!({"path": file, "content": content}),
                    format!("wrote {written} bytes to {file}"),
                )
            }
        }
    }

    fn prose(&mut self, sentences: u64) -> String {
        let parts: Vec<&str> = (0..sentences).map(|_| self.rng.pick(SENTENCES)).collect();
        parts.join(" ")
    }
}

/// Bytes of the blob files under a session's `blobs/` directory.
fn blob_dir_bytes(dir: &std::path::Path) -> u64 {
    let Ok(shards) = std::fs::read_dir(dir) else {
        return 0;
    };
    shards
        .flatten()
        .filter_map(|shard| std::fs::read_dir(shard.path()).ok())
        .flat_map(|files| files.flatten())
        .filter_map(|f| f.metadata().ok())
        .filter(std::fs::Metadata::is_file)
        .map(|m| m.len())
        .sum()
}

/// Cuts `text` to at most `max` bytes on a character boundary.
fn fit(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

/// JSON text of one entry, keys in the order they were written.
type Json = Box<RawValue>;

fn ordered(fields: &[(&str, String)]) -> Json {
    let mut text = String::from("{");
    for (i, (key, value)) in fields.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(&serde_json::to_string(key).unwrap_or_default());
        text.push(':');
        text.push_str(value);
    }
    text.push('}');
    // Keys are string literals and values come from serde_json: always one JSON object.
    RawValue::from_string(text).unwrap_or_else(|_| Box::<RawValue>::default())
}

fn raw_entries(entries: &[Json]) -> annals::Result<Vec<RawEntry>> {
    entries
        .iter()
        .map(|e| RawEntry::from_json(e.get()))
        .collect()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn system_prompt() -> Json {
    obj!({"type": "system", "ts": now_ms(),
        "text": "You are a careful coding agent working in a large repository. Use the tools to \
                 read before you write, run the tests after every change, and explain what you \
                 did in plain words.",
        "tools": ["read_file", "write_file", "run_command", "search"]})
}

/// splitmix64: small, fast, good enough to vary demo content; no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick(&mut self, items: &[&'static str]) -> &'static str {
        let i = usize::try_from(self.below(items.len() as u64)).unwrap_or(0);
        items.get(i).copied().unwrap_or_default()
    }
}

const FILES: &[&str] = &[
    "src/server/routes.rs",
    "src/db/pool.rs",
    "tests/integration/login.rs",
    "src/agent/planner.py",
    "web/src/components/Chat.tsx",
    "migrations/0042_add_session_index.sql",
    "src/search/ranking.rs",
    "deploy/helm/values.yaml",
];

const PROMPTS: &[&str] = &[
    "The integration test in {file} fails on CI but passes locally. Can you find out why?",
    "Refactor {file} so that the connection pool is created once at startup, not per request.",
    "Add retries with exponential backoff and jitter to the HTTP client used in {file}.",
    "p99 latency of /search went up 40% after yesterday's deploy. Start with {file} and find the cause.",
    "Write a migration that adds an index on sessions(user_id, created_at), and update {file} to use it.",
    "The agent loops forever when a tool returns an empty list. Fix it in {file} and add a test.",
    "Add structured logging (request id, user id, latency) to {file} without changing behaviour.",
    "Summarize what changed in {file} over the last week and flag anything risky.",
];

const FOLLOW_UPS: &[&str] = &[
    "Thanks. Can you also run the full test suite?",
    "That looks wrong: the timeout should be configurable. Please change {file} accordingly.",
    "Good. Now write a short summary I can paste into the pull request.",
    "Does this also handle the case where the database is read-only?",
    "Please double-check {file} for other callers of that function.",
];

const EDITS: &[&str] = &[
    "(Edit: keep the public API unchanged and do not touch the tests.)",
    "(Edit: I meant the staging environment, not production.)",
    "(Edit: use the existing retry helper instead of writing a new one.)",
];

const SENTENCES: &[&str] = &[
    "I read the file and the failing test first.",
    "The pool is created inside the request handler, so every request pays for a new TLS handshake.",
    "Locally the test passes because the fixture database is warm; on CI it starts cold and the 2 s timeout is too short.",
    "I moved the construction into `main` and pass the pool down through the application state.",
    "All 214 tests pass, including the two that were flaky before.",
    "There is one more caller in the admin routes that still builds its own client; I left it alone for now.",
    "The empty-list case fell through to the retry branch, which retried forever without a budget.",
    "I added a test that returns an empty list from the mock tool and asserts that the agent stops after one attempt.",
    "The index is created concurrently so that the migration does not lock the table in production.",
    "Latency went up because the ranking step now loads every candidate's full document instead of its summary.",
    "Reverting that line brings p99 back to 180 ms on the benchmark dataset.",
    "Let me know if you want me to open a pull request with these changes.",
    "I could not reproduce the failure with the seed from the CI log, so I ran the test 200 times in a loop.",
    "One run failed with a connection reset, which points at the server closing idle connections after 30 s.",
];

const CODE: &[&str] = &[
    "let pool = Pool::builder().max_size(16).build(manager)?;",
    "async fn handle(req: Request, state: State<App>) -> Result<Response> {",
    "    let user = state.sessions.lookup(&req.token).await?;",
    "    tracing::info!(request_id = %req.id, latency_ms = elapsed, \"done\");",
    "}",
    "def plan(self, goal: str, tools: list[Tool]) -> list[Step]:",
    "    if not results:",
    "        return self.retry(step, budget=budget - 1)",
    "CREATE INDEX CONCURRENTLY idx_sessions_user_created ON sessions (user_id, created_at);",
    "export function Chat({ messages, onSend }: ChatProps) {",
    "  const [draft, setDraft] = useState(\"\");",
    "    assert_eq!(resp.status(), StatusCode::OK, \"body: {body}\");",
    "timeout: 2s  # TODO: make configurable",
    "#[tokio::test(flavor = \"multi_thread\")]",
];

const COMMANDS: &[&str] = &[
    "cargo test --test integration -- login",
    "pytest -x tests/test_planner.py",
    "git log --oneline -n 20 -- {file}",
    "cargo bench --bench search -- ranking",
];

const TESTS: &[&str] = &[
    "login::rejects_expired_token",
    "login::refreshes_session_cookie",
    "pool::reuses_connections_across_requests",
    "planner::stops_on_empty_tool_result",
    "search::ranks_exact_title_first",
    "migrations::apply_cleanly_on_empty_db",
];

const QUERIES: &[&str] = &["Pool::builder", "fn retry", "timeout", "sessions.lookup"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_cuts_on_character_boundaries() {
        assert_eq!(fit("héllo".into(), 2), "h");
        assert_eq!(fit("abc".into(), 10), "abc");
    }

    #[test]
    fn most_demo_tool_outputs_fit_a_line_and_some_are_large_enough_for_a_blob() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).unwrap();
        let mut w = Worker {
            store: &store,
            rng: Rng(7),
            report: WorkerReport::default(),
            shared: (SessionId::new(), SegmentId::new()),
        };
        let (mut inline, mut large) = (0, 0);
        for _ in 0..400 {
            let (name, args, output) = w.tool_use("src/db/pool.rs");
            let entry = obj!({"type": "tool_result", "ts": now_ms(), "call_id": "call_0123456789abcdef",
                "name": name, "args": args, "ok": true, "output": output});
            let raw = RawEntry::from_json(entry.get()).unwrap();
            if raw.len() <= annals::MAX_INLINE {
                inline += 1;
            } else {
                assert!(raw.len() < 300 << 10, "{} bytes", raw.len());
                large += 1;
            }
        }
        assert!(inline > 300 && large > 10, "{inline} inline, {large} large");
    }
}
