//! One demo worker process: the binary re-executed with a hidden subcommand, writing agent
//! sessions as a runtime would, and reporting what it wrote as one JSON line.

use std::io::{self, Write};
use std::time::{Duration, Instant};

use annals::{Error, RawEntry, SegmentId, SegmentWriter, SessionId, Store};
use clap::Args;
use serde::{Deserialize, Serialize};

use super::script::{
    now_ms, raw_entries, system_prompt, Json, Rng, EDITS, FILES, FOLLOW_UPS, PROMPTS,
};
use crate::fail::{Outcome, OK};
use crate::target::{Location, Target};

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
pub struct WorkerReport {
    pub worker: u32,
    /// Sessions it created (the shared session not included).
    pub sessions: Vec<SessionId>,
    /// Segments it created: one per session, plus one per fork.
    pub segments: u64,
    /// Entries it appended (entries copied by a fork not included).
    pub entries: u64,
    /// JSON bytes of those entries.
    pub json_bytes: u64,
    pub trace_events: u64,
    pub edit_forks: u64,
    pub conflict_forks: u64,
    pub seconds: f64,
}

pub fn worker(location: &Location, args: &WorkerArgs) -> Outcome {
    let target = Target::existing(location)?;
    let started = Instant::now();
    let mut w = Worker {
        store: target.store(),
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
    store: &'s dyn Store,
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
            let (name, args, output) = self.rng.tool_use(file);
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
        let text = self.rng.prose(sentences);
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
                "text": self.rng.prose(sentences)});
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
}
