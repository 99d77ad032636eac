//! `annals follow`: `tail -f` for a segment. Polls the tip (O(1)) and replays from the last
//! seen sequence number when it grows.

use std::io::{self, Write};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use annals::{ReplayOptions, Store};
use clap::Args;

use super::{PrintArgs, Printer, SinkError};
use crate::fail::{stdout_error, Outcome, OK, PROBLEMS};
use crate::target::Target;
use crate::term::Style;

#[derive(Debug, Args)]
pub struct FollowArgs {
    /// The segment: full id, unique prefix, or the path of its file
    pub segment: String,

    /// The session holding the segment (found automatically if not given)
    #[arg(long, value_name = "SESSION")]
    pub session: Option<String>,

    /// Start by printing the last N entries
    #[arg(long, short = 'n', value_name = "N", default_value_t = 10)]
    pub tail: u64,

    /// Start at this sequence number instead
    #[arg(long, value_name = "N")]
    pub from: Option<u64>,

    /// How often to look for new entries, in milliseconds
    #[arg(long, value_name = "MS", default_value_t = 200)]
    pub interval_ms: u64,

    #[command(flatten)]
    pub print: PrintArgs,
}

pub fn run(root: Option<PathBuf>, args: &FollowArgs) -> Outcome {
    let target = Target::existing(root)?;
    let (session, segment) = target.segment(&args.segment, args.session.as_deref())?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        // If a handler cannot be installed, Ctrl-C still ends the process, only less politely.
        let _ = ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst));
    }
    let style = Style::stderr();
    let mut printer = Printer::new(&args.print);
    let mut out = io::stdout().lock();
    let first = target
        .store
        .tip(session, segment)
        .map_err(|e| target.err(e))?;
    let mut next = args
        .from
        .unwrap_or_else(|| first.count.saturating_sub(args.tail));
    let mut generation = first.generation;
    let interval = Duration::from_millis(args.interval_ms.max(10));
    let mut pause = Duration::ZERO;
    loop {
        if sleep_unless_stopped(pause, &stop) {
            return Ok(OK);
        }
        pause = interval;
        let tip = match target.store.tip(session, segment) {
            Ok(tip) => tip,
            Err(annals::Error::SegmentNotFound { .. }) => {
                say!(
                    "{}: segment {segment} was deleted, session {session}: nothing more to follow",
                    style.bold("annals")
                );
                return Ok(PROBLEMS);
            }
            Err(e) => return Err(target.err(e)),
        };
        if tip.generation != generation {
            let resume = if tip.count < next {
                format!(
                    "it now ends before seq {next}; continuing from seq {}",
                    tip.count
                )
            } else {
                format!("continuing from seq {next} (earlier entries may have been rewritten)")
            };
            say!(
                "{}: segment {segment} was rewritten (generation {generation} -> {}, {} entries): {resume}",
                style.bold("annals"),
                tip.generation,
                tip.count,
            );
            next = next.min(tip.count);
            generation = tip.generation;
        }
        if tip.count <= next {
            continue;
        }
        let started = Instant::now();
        let mut sink_error = SinkError::new();
        let result = target.store.replay_raw(
            session,
            segment,
            &ReplayOptions {
                blob_refs: printer.blob_refs(),
                ..ReplayOptions::strict().from_seq(next)
            },
            &mut |entry| {
                if stop.load(Ordering::SeqCst) {
                    return Ok(ControlFlow::Break(()));
                }
                if entry.seq < next {
                    return Ok(ControlFlow::Continue(()));
                }
                if let Err(e) = printer.entry(&mut out, &entry) {
                    return Ok(sink_error.stop(e));
                }
                next = entry.seq + 1;
                Ok(ControlFlow::Continue(()))
            },
        );
        if let Some(e) = sink_error.io {
            return Err(stdout_error(&e));
        }
        match result {
            Ok(_) if stop.load(Ordering::SeqCst) => return Ok(OK),
            Ok(_) => {}
            Err(annals::Error::SegmentNotFound { .. }) => pause = Duration::ZERO,
            Err(e) => return Err(target.err(e)),
        }
        out.flush().map_err(|e| stdout_error(&e))?;
        // Each replay re-checks the segment from its start; on a huge, busy segment wait
        // longer between replays so that following it does not take a whole core.
        pause = pause.max(started.elapsed() * 2);
    }
}

/// Sleeps in short steps so that Ctrl-C is answered quickly. True if a stop was asked for.
fn sleep_unless_stopped(total: Duration, stop: &AtomicBool) -> bool {
    let step = Duration::from_millis(25);
    let deadline = Instant::now() + total;
    loop {
        if stop.load(Ordering::SeqCst) {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        std::thread::sleep(step.min(deadline - now));
    }
}
