//! `annals cat`: a segment's entries in order, streamed.

use std::collections::VecDeque;
use std::io::{self, BufWriter, Write};
use std::ops::ControlFlow;
use std::path::PathBuf;

use annals::{
    BlobRef, Body, EntryMeta, ReadMode, ReplayOptions, ScanReport, SegmentId, SessionId, Store,
};
use clap::Args;

use super::{PrintArgs, Printer, SinkError};
use crate::fail::{stdout_error, Failure, Outcome, OK, PROBLEMS};
use crate::target::Target;
use crate::term::Style;

#[derive(Debug, Args)]
pub struct CatArgs {
    /// The segment: full id, unique prefix, or the path of its file
    pub segment: String,

    /// The session holding the segment (found automatically if not given)
    #[arg(long, value_name = "SESSION")]
    pub session: Option<String>,

    /// Start at this sequence number
    #[arg(long, value_name = "N", conflicts_with = "tail")]
    pub from: Option<u64>,

    /// Stop after this sequence number (inclusive)
    #[arg(long, value_name = "N", conflicts_with = "tail")]
    pub to: Option<u64>,

    /// Print only the last N entries
    #[arg(long, value_name = "N")]
    pub tail: Option<u64>,

    /// Skip damaged lines (with a warning on stderr, exit code 1) instead of stopping at the
    /// first one
    #[arg(long)]
    pub tolerant: bool,

    /// Print the segment's debug trace (`SEGMENT.trace.jsonl`) instead of its log
    #[arg(long)]
    pub trace: bool,

    #[command(flatten)]
    pub print: PrintArgs,
}

pub fn run(root: Option<PathBuf>, args: &CatArgs) -> Outcome {
    let target = Target::existing(root)?;
    let (session, segment) = target.segment(&args.segment, args.session.as_deref())?;
    let mode = if args.tolerant {
        ReadMode::Tolerant
    } else {
        ReadMode::Strict
    };
    let mut printer = Printer::new(&args.print);
    let mut out = BufWriter::new(io::stdout().lock());
    let file = File {
        session,
        segment,
        trace: args.trace,
    };
    let report = match args.tail {
        // A trace has no O(1) tip: keep its last N events while scanning.
        Some(n) if args.trace => tail_by_scan(&target, file, mode, n, &mut printer, &mut out)?,
        Some(n) => match target.store.tip(session, segment) {
            Ok(tip) => {
                let from = tip.count.saturating_sub(n);
                stream(&target, file, mode, from, None, &mut printer, &mut out)?
            }
            // The last line is damaged, so the count is unknown: keep the last N entries
            // while scanning (memory bounded by N).
            Err(e) if args.tolerant && e.is_corruption() => {
                tail_by_scan(&target, file, mode, n, &mut printer, &mut out)?
            }
            Err(e) => return Err(target.err(e)),
        },
        None => stream(
            &target,
            file,
            mode,
            args.from.unwrap_or(0),
            args.to,
            &mut printer,
            &mut out,
        )?,
    };
    out.flush()?;
    Ok(report_damage(&report))
}

/// The log or the trace of a segment.
#[derive(Clone, Copy)]
struct File {
    session: SessionId,
    segment: SegmentId,
    trace: bool,
}

impl File {
    fn replay(
        self,
        target: &Target,
        options: &ReplayOptions,
        sink: &mut annals::Sink<'_>,
    ) -> annals::Result<ScanReport> {
        if self.trace {
            target
                .store
                .replay_trace_raw(self.session, self.segment, options, sink)
        } else {
            target
                .store
                .replay_raw(self.session, self.segment, options, sink)
        }
    }
}

fn stream(
    target: &Target,
    file: File,
    mode: ReadMode,
    from: u64,
    to: Option<u64>,
    printer: &mut Printer,
    out: &mut impl Write,
) -> Result<ScanReport, Failure> {
    let options = ReplayOptions {
        mode,
        from_seq: from,
        blob_refs: printer.blob_refs(),
    };
    let mut sink_error = SinkError::new();
    let mut reached_end = false;
    let result = file.replay(target, &options, &mut |entry| {
        if to.is_some_and(|to| entry.seq > to) {
            reached_end = true;
            return Ok(ControlFlow::Break(()));
        }
        Ok(match printer.entry(out, &entry) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => sink_error.stop(e),
        })
    });
    if let Some(e) = sink_error.io {
        return Err(stdout_error(&e));
    }
    match result {
        Ok(_) if reached_end => Ok(ScanReport::default()),
        Ok(report) => Ok(report),
        Err(e) => Err(target.err(e)),
    }
}

/// An entry kept past its replay's callback (for `--tail` without a seekable store).
enum Kept {
    Inline(String),
    Blob(BlobRef, Option<String>),
}

fn tail_by_scan(
    target: &Target,
    file: File,
    mode: ReadMode,
    n: u64,
    printer: &mut Printer,
    out: &mut impl Write,
) -> Result<ScanReport, Failure> {
    let cap = usize::try_from(n).unwrap_or(usize::MAX);
    let mut last: VecDeque<(EntryMeta, Kept)> = VecDeque::with_capacity(cap.min(4096));
    let options = ReplayOptions {
        mode,
        from_seq: 0,
        blob_refs: printer.blob_refs(),
    };
    let report = file
        .replay(target, &options, &mut |entry| {
            if cap > 0 {
                if last.len() == cap {
                    last.pop_front();
                }
                let kept = match entry.body {
                    Body::Inline(json) => Kept::Inline(json.to_owned()),
                    Body::Blob { reference, json } => {
                        Kept::Blob(reference.clone(), json.map(str::to_owned))
                    }
                };
                last.push_back((entry.meta(), kept));
            }
            Ok(ControlFlow::Continue(()))
        })
        .map_err(|e| target.err(e))?;
    for (meta, kept) in &last {
        let body = match kept {
            Kept::Inline(json) => Body::Inline(json),
            Kept::Blob(reference, json) => Body::Blob {
                reference,
                json: json.as_deref(),
            },
        };
        let entry = annals::Entry {
            seq: meta.seq,
            appended_ms: meta.appended_ms,
            body,
        };
        printer.entry(out, &entry)?;
    }
    Ok(report)
}

/// Warns about what a tolerant read skipped; returns the exit code.
pub fn report_damage(report: &ScanReport) -> u8 {
    let style = Style::stderr();
    let path = report
        .path
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    for p in &report.problems {
        say!(
            "{}: {}: skipped damaged line, {path}:{}:{}: {}",
            style.bold("annals"),
            style.yellow("warning"),
            p.line,
            p.offset,
            p.reason
        );
    }
    let unlisted = report
        .problem_count
        .saturating_sub(report.problems.len() as u64);
    if unlisted > 0 {
        say!(
            "{}: {}: and {unlisted} more problems, {path}: run `annals verify` on it",
            style.bold("annals"),
            style.yellow("warning"),
        );
    }
    if let Some(t) = report.torn_tail {
        say!(
            "{}: note: ignored a torn tail ({} bytes at byte {}, an interrupted append), {path}",
            style.bold("annals"),
            t.len,
            t.offset
        );
    }
    if report.problem_count > 0 {
        PROBLEMS
    } else {
        OK
    }
}
