//! `annals cat`: a segment's entries in order, streamed; or a session's newest segment, or its
//! whole fork tree.

use std::collections::VecDeque;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::ops::ControlFlow;

use annals::{BlobRef, Body, EntryMeta, ReadMode, ReplayOptions, ScanReport, SegmentId, SessionId};
use annals_cli::lineage::{Node, Tree};
use annals_cli::search::{Filter, Verdict};
use clap::Args;

use super::{note_untimed, FilterArgs, SinkError};
use crate::fail::{stdout_error, Failure, Outcome, OK, PROBLEMS};
use crate::ids::{short, Named};
use crate::print::{Format, Place, PrintArgs, Printer};
use crate::target::{Location, Target};
use crate::term::Style;

#[derive(Debug, Args)]
pub struct CatArgs {
    /// A segment, or a session (its newest segment; --all for all of them): a full id, a
    /// unique end or start of one, or a path inside the store root
    pub target: String,

    /// The session holding the segment (found automatically if not given)
    #[arg(long, value_name = "SESSION")]
    pub session: Option<String>,

    /// Every segment of the session, in fork-tree order, each fork from its fork point (the
    /// entries before it are its parent's); JSON output then names each entry's segment
    #[arg(long, conflicts_with = "tail")]
    pub all: bool,

    /// Print only the last N entries (that pass the filters)
    #[arg(long, value_name = "N", conflicts_with_all = ["from", "to"])]
    pub tail: Option<u64>,

    /// Skip damaged lines (with a warning on stderr, exit code 1) instead of stopping at the
    /// first one
    #[arg(long)]
    pub tolerant: bool,

    /// Print the segment's debug trace (`SEGMENT.trace.jsonl`) instead of its log
    #[arg(long)]
    pub trace: bool,

    #[command(flatten)]
    pub filter: FilterArgs,

    #[command(flatten)]
    pub print: PrintArgs,
}

pub fn run(location: &Location, args: &CatArgs) -> Outcome {
    let filter = args.filter.compile()?;
    if args.all && args.print.format() == Format::Raw {
        return Err(Failure::usage(
            "--raw prints one file's stored lines; it cannot be combined with --all",
            "give one segment",
        ));
    }
    let target = Target::existing(location)?;
    let named = match &args.session {
        Some(session) => {
            let (s, g) = target.segment(&args.target, Some(session))?;
            Named::Segment(s, g)
        }
        None => target.named(&args.target)?,
    };
    let mode = if args.tolerant {
        ReadMode::Tolerant
    } else {
        ReadMode::Strict
    };
    let mut cat = Cat {
        target: &target,
        mode,
        filter,
        trace: args.trace,
        printer: Printer::new(&args.print, args.all),
        out: BufWriter::new(io::stdout().lock()),
        untimed: 0,
    };
    let reports = match named {
        Named::Session(session) if args.all => cat.tree(session)?,
        Named::Segment(session, _) if args.all => cat.tree(session)?,
        Named::Session(session) => {
            let tree = cat.session_tree(session)?;
            let Some(newest) = tree.newest() else {
                say!("session {session} has no segments");
                return Ok(OK);
            };
            if tree.nodes.len() > 1 && io::stderr().is_terminal() {
                say!(
                    "{}: segment {}, the newest of {} in this session (--all for all of them)",
                    Style::stderr().bold("annals"),
                    short(&newest.info.segment),
                    tree.nodes.len()
                );
            }
            vec![cat.one(session, newest.info.segment, args.tail)?]
        }
        Named::Segment(session, segment) => vec![cat.one(session, segment, args.tail)?],
    };
    cat.out.flush()?;
    note_untimed(cat.untimed);
    let mut code = OK;
    for report in &reports {
        code = code.max(report_damage(report));
    }
    Ok(code)
}

struct Cat<'t, W: Write> {
    target: &'t Target,
    mode: ReadMode,
    filter: Filter,
    trace: bool,
    printer: Printer,
    out: W,
    untimed: u64,
}

impl<W: Write> Cat<'_, W> {
    fn session_tree(&self, session: SessionId) -> Result<Tree, Failure> {
        let list = self
            .target
            .store()
            .list_segments(session)
            .map_err(|e| self.target.err(e))?;
        Ok(Tree::new(list))
    }

    /// Every segment of the session, each from its own first entry.
    fn tree(&mut self, session: SessionId) -> Result<Vec<ScanReport>, Failure> {
        let tree = self.session_tree(session)?;
        let mut reports = Vec::new();
        for node in &tree.nodes {
            self.printer
                .segment_header(&mut self.out, &header(node))
                .map_err(|e| stdout_error(&e))?;
            let from = node.own_from.max(self.filter.from_seq());
            reports.push(self.stream(session, node.info.segment, from)?);
        }
        Ok(reports)
    }

    fn one(
        &mut self,
        session: SessionId,
        segment: SegmentId,
        tail: Option<u64>,
    ) -> Result<ScanReport, Failure> {
        let Some(n) = tail else {
            return self.stream(session, segment, self.filter.from_seq());
        };
        // A trace has no O(1) tip, and filters decide which entries count: keep the last N
        // while scanning (memory bounded by N).
        if self.trace || !self.filter.is_empty() {
            return self.tail_by_scan(session, segment, n);
        }
        match self.target.store().tip(session, segment) {
            Ok(tip) => self.stream(session, segment, tip.count.saturating_sub(n)),
            // The last line is damaged, so the count is unknown.
            Err(e) if self.mode == ReadMode::Tolerant && e.is_corruption() => {
                self.tail_by_scan(session, segment, n)
            }
            Err(e) => Err(self.target.err(e)),
        }
    }

    fn options(&self, from: u64) -> ReplayOptions {
        ReplayOptions {
            mode: self.mode,
            from_seq: from,
            blob_refs: self.printer.blob_refs(),
        }
    }

    fn stream(
        &mut self,
        session: SessionId,
        segment: SegmentId,
        from: u64,
    ) -> Result<ScanReport, Failure> {
        let mut sink_error = SinkError::new();
        let place = Place { session, segment };
        let options = self.options(from);
        let (target, trace) = (self.target, self.trace);
        let (filter, printer, out) = (&self.filter, &mut self.printer, &mut self.out);
        let mut untimed = 0;
        let mut interrupted = false;
        let result = {
            let mut sink = |entry: annals::Entry<'_>| {
                if filter.past_end(entry.seq) {
                    return Ok(ControlFlow::Break(()));
                }
                if crate::term::interrupted() {
                    interrupted = true;
                    return Ok(ControlFlow::Break(()));
                }
                match filter.check(entry.seq, entry.appended_ms, entry.json().unwrap_or("")) {
                    Verdict::Pass => {}
                    Verdict::NoTime => {
                        untimed += 1;
                        return Ok(ControlFlow::Continue(()));
                    }
                    Verdict::Fail => return Ok(ControlFlow::Continue(())),
                }
                Ok(match printer.entry(out, place, &entry) {
                    Ok(()) => ControlFlow::Continue(()),
                    Err(e) => sink_error.stop(e),
                })
            };
            replay(target, trace, session, segment, &options, &mut sink)
        };
        self.untimed += untimed;
        if let Some(e) = sink_error.io {
            return Err(stdout_error(&e));
        }
        if interrupted {
            let _ = self.out.flush();
            return Err(Failure::Interrupted);
        }
        match result {
            Ok(report) => Ok(report),
            Err(e) => Err(self.target.err(e)),
        }
    }

    fn tail_by_scan(
        &mut self,
        session: SessionId,
        segment: SegmentId,
        n: u64,
    ) -> Result<ScanReport, Failure> {
        let cap = usize::try_from(n).unwrap_or(usize::MAX);
        let mut last: VecDeque<(EntryMeta, Kept)> = VecDeque::with_capacity(cap.min(4096));
        let filter = &self.filter;
        let mut untimed = 0;
        let options = self.options(filter.from_seq());
        let report = replay(
            self.target,
            self.trace,
            session,
            segment,
            &options,
            &mut |entry| {
                crate::fail::check_interrupt().map_err(|_| annals::Error::sink(Interrupted))?;
                match filter.check(entry.seq, entry.appended_ms, entry.json().unwrap_or("")) {
                    Verdict::Pass => {}
                    Verdict::NoTime => {
                        untimed += 1;
                        return Ok(ControlFlow::Continue(()));
                    }
                    Verdict::Fail => return Ok(ControlFlow::Continue(())),
                }
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
            },
        )
        .map_err(|e| match e {
            annals::Error::Sink(_) => Failure::Interrupted,
            e => self.target.err(e),
        })?;
        self.untimed += untimed;
        let place = Place { session, segment };
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
            self.printer.entry(&mut self.out, place, &entry)?;
        }
        Ok(report)
    }
}

/// The log or the trace of a segment.
fn replay(
    target: &Target,
    trace: bool,
    session: SessionId,
    segment: SegmentId,
    options: &ReplayOptions,
    sink: &mut annals::Sink<'_>,
) -> annals::Result<ScanReport> {
    let store = target.store();
    if trace {
        store.replay_trace_raw(session, segment, options, sink)
    } else {
        store.replay_raw(session, segment, options, sink)
    }
}

#[derive(Debug)]
struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

/// An entry kept past its replay's callback (for `--tail` by scanning).
enum Kept {
    Inline(String),
    Blob(BlobRef, Option<String>),
}

/// `segment 4f7b48e20938 (forked from 7c8a0940d0ab at 4): entries 4..9`
fn header(node: &Node) -> String {
    let info = &node.info;
    let lineage = match info.fork {
        Some(f) if node.orphan => format!(
            " (forked from {} at {}, which is no longer in the session)",
            short(&f.segment),
            f.at
        ),
        Some(f) => format!(" (forked from {} at {})", short(&f.segment), f.at),
        None => String::new(),
    };
    let newest = if node.newest { ", newest" } else { "" };
    format!(
        "segment {}{lineage}: entries {}..{}{newest}",
        info.segment, node.own_from, info.tip.count
    )
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
