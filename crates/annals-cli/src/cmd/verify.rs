//! `annals verify`: every line of every segment (and trace) checked, problems listed as
//! `path:line:offset: reason`. Never writes. Its counts are the ones `annals stats` shows:
//! segments and their entries, traces apart, blobs included.

use std::io::{self, BufWriter, Write};
use std::ops::ControlFlow;
use std::time::Instant;

use annals::{ReplayOptions, ScanReport, SegmentId, SessionId};
use clap::Args;
use serde_json::json;

use crate::fail::{check_interrupt, Failure, Outcome, CANNOT_RUN, OK, PROBLEMS};
use crate::ids::Named;
use crate::target::{Location, Target};
use crate::term::{human_bytes, Progress, Style};

/// Segments larger than this are verified entry by entry when a progress line is shown, so
/// that it moves inside one huge file too.
const PROGRESS_INSIDE: u64 = 64 << 20;

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// A session or a segment (an id, a unique end or start of one, or a path inside the
    /// store root); every session when omitted
    pub target: Option<String>,

    /// Print one JSON document (files and summary) instead of text
    #[arg(long)]
    pub json: bool,
}

/// What to check.
enum Scope {
    All,
    Session(SessionId),
    Segment(SessionId, SegmentId),
}

fn scope(target: &Target, arg: &str) -> Result<Scope, Failure> {
    Ok(match target.named(arg)? {
        Named::Session(s) => Scope::Session(s),
        Named::Segment(s, g) => Scope::Segment(s, g),
    })
}

#[derive(Default)]
struct Totals {
    sessions: u64,
    segments: u64,
    entries: u64,
    segment_bytes: u64,
    traces: u64,
    trace_events: u64,
    trace_bytes: u64,
    blobs: u64,
    blob_bytes: u64,
    problems: u64,
    damaged_files: u64,
    torn_tails: u64,
    unchecked: u64,
}

struct Reporter<W: Write> {
    out: W,
    json: bool,
    first: bool,
    style: Style,
    totals: Totals,
    progress: Progress,
}

impl<W: Write> Reporter<W> {
    fn file(
        &mut self,
        session: SessionId,
        segment: SegmentId,
        kind: &str,
        result: Result<ScanReport, Failure>,
        fallback_path: &std::path::Path,
    ) -> io::Result<()> {
        let t = &mut self.totals;
        match &result {
            Ok(r) => {
                if kind == "trace" {
                    t.trace_events += r.entries;
                    t.trace_bytes += r.file_len;
                } else {
                    t.entries += r.entries;
                    t.segment_bytes += r.file_len;
                }
                t.problems += r.problem_count;
                t.damaged_files += u64::from(r.problem_count > 0);
                t.torn_tails += u64::from(r.torn_tail.is_some());
            }
            Err(_) => t.unchecked += 1,
        }
        let path = match &result {
            Ok(ScanReport {
                path: Some(path), ..
            }) => path.display().to_string(),
            _ => fallback_path.display().to_string(),
        };
        if self.json {
            return self.file_json(session, segment, kind, &result, &path);
        }
        let s = self.style;
        let says_something = match &result {
            Ok(r) => r.problem_count > 0 || r.torn_tail.is_some(),
            Err(_) => true,
        };
        if says_something && self.progress.is_enabled() {
            // Stdout may be the same terminal: take the status line away first.
            self.progress.clear();
        }
        match result {
            Ok(report) => {
                for p in &report.problems {
                    writeln!(
                        self.out,
                        "{}:{}:{}: {}",
                        s.bold(&path),
                        p.line,
                        p.offset,
                        s.red(&p.reason.to_string())
                    )?;
                }
                let unlisted = report
                    .problem_count
                    .saturating_sub(report.problems.len() as u64);
                if unlisted > 0 {
                    writeln!(
                        self.out,
                        "{}: {}",
                        s.bold(&path),
                        s.red(&format!("... and {unlisted} more problems"))
                    )?;
                }
                if let Some(t) = report.torn_tail {
                    writeln!(
                        self.out,
                        "{}: {}: torn tail of {} bytes at byte {} (an interrupted append: not \
                         damage; readers skip it and the next append removes it)",
                        s.bold(&path),
                        s.yellow("note"),
                        t.len,
                        t.offset
                    )?;
                }
            }
            Err(failure) => {
                writeln!(
                    self.out,
                    "{}: {}: {}",
                    s.bold(&path),
                    s.red("could not check"),
                    failure.message().unwrap_or_default()
                )?;
            }
        }
        if says_something && self.progress.is_enabled() {
            self.out.flush()?;
        }
        Ok(())
    }

    fn file_json(
        &mut self,
        session: SessionId,
        segment: SegmentId,
        kind: &str,
        result: &Result<ScanReport, Failure>,
        path: &str,
    ) -> io::Result<()> {
        let row = match result {
            Ok(r) => json!({
                "session": session.to_string(),
                "segment": segment.to_string(),
                "kind": kind,
                "path": path,
                "entries": r.entries,
                "bytes": r.file_len,
                "valid_up_to": r.valid_up_to,
                "torn_tail": r.torn_tail.map(|t| json!({"offset": t.offset, "len": t.len})),
                "problem_count": r.problem_count,
                "problems": r.problems.iter().map(|p| json!({
                    "line": p.line,
                    "offset": p.offset,
                    "reason": p.reason.to_string(),
                })).collect::<Vec<_>>(),
                "error": null,
            }),
            Err(f) => json!({
                "session": session.to_string(),
                "segment": segment.to_string(),
                "kind": kind,
                "path": path,
                "error": f.message(),
            }),
        };
        let sep = if self.first { "" } else { "," };
        self.first = false;
        write!(self.out, "{sep}\n    {row}")
    }
}

pub fn run(location: &Location, args: &VerifyArgs) -> Outcome {
    let target = Target::existing(location)?;
    let scope = match &args.target {
        None => Scope::All,
        Some(arg) => scope(&target, arg)?,
    };
    let started = Instant::now();
    let mut rep = Reporter {
        out: BufWriter::new(io::stdout().lock()),
        json: args.json,
        first: true,
        style: if args.json {
            Style::plain()
        } else {
            Style::stdout()
        },
        totals: Totals::default(),
        progress: Progress::new(),
    };
    if args.json {
        rep.out.write_all(b"{\n  \"files\": [")?;
    }
    match scope {
        Scope::Segment(session, segment) => {
            rep.totals.sessions = 1;
            check_segment(&target, &mut rep, session, segment)?;
        }
        Scope::Session(session) => {
            check_session(&target, &mut rep, session, (1, 1))?;
        }
        Scope::All => {
            let sessions = target.store().list_sessions().map_err(|e| target.err(e))?;
            let n = sessions.len();
            for (i, session) in sessions.into_iter().enumerate() {
                check_session(&target, &mut rep, session, (i + 1, n))?;
            }
        }
    }
    rep.progress.clear();
    let elapsed = started.elapsed().as_secs_f64();
    let t = &rep.totals;
    let code = if t.unchecked > 0 {
        CANNOT_RUN
    } else if t.problems > 0 {
        PROBLEMS
    } else {
        OK
    };
    if args.json {
        let summary = json!({
            "sessions": t.sessions,
            "segments": t.segments,
            "entries": t.entries,
            "segment_bytes": t.segment_bytes,
            "traces": t.traces,
            "trace_events": t.trace_events,
            "trace_bytes": t.trace_bytes,
            "blobs": t.blobs,
            "blob_bytes": t.blob_bytes,
            "bytes": t.segment_bytes + t.trace_bytes + t.blob_bytes,
            "problems": t.problems,
            "damaged_files": t.damaged_files,
            "torn_tails": t.torn_tails,
            "unchecked_files": t.unchecked,
            "seconds": elapsed,
            "clean": t.problems == 0 && t.unchecked == 0,
        });
        let close = if rep.first { "]" } else { "\n  ]" };
        writeln!(rep.out, "{close},\n  \"summary\": {summary}\n}}")?;
    } else {
        let s = rep.style;
        let verdict = if t.problems == 0 && t.unchecked == 0 {
            s.green("clean")
        } else {
            let mut parts = Vec::new();
            if t.problems > 0 {
                parts.push(format!(
                    "{} problem{} in {} file{}",
                    t.problems,
                    plural(t.problems),
                    t.damaged_files,
                    plural(t.damaged_files)
                ));
            }
            if t.unchecked > 0 {
                parts.push(format!(
                    "{} file{} could not be checked",
                    t.unchecked,
                    plural(t.unchecked)
                ));
            }
            s.red(&parts.join(", "))
        };
        let torn = if t.torn_tails > 0 {
            format!(
                " ({} torn tail{}, not damage)",
                t.torn_tails,
                plural(t.torn_tails)
            )
        } else {
            String::new()
        };
        writeln!(
            rep.out,
            "verified {} session{}: {} segment{} with {} entr{} ({}), {} trace{} with {} event{} \
             ({}), {} blob{} ({}) in {elapsed:.2} s: {verdict}{torn}",
            t.sessions,
            plural(t.sessions),
            t.segments,
            plural(t.segments),
            t.entries,
            if t.entries == 1 { "y" } else { "ies" },
            human_bytes(t.segment_bytes),
            t.traces,
            plural(t.traces),
            t.trace_events,
            plural(t.trace_events),
            human_bytes(t.trace_bytes),
            t.blobs,
            plural(t.blobs),
            human_bytes(t.blob_bytes),
        )?;
    }
    rep.out.flush()?;
    Ok(code)
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn check_session<W: Write>(
    target: &Target,
    rep: &mut Reporter<W>,
    session: SessionId,
    (i, n): (usize, usize),
) -> Result<(), Failure> {
    check_interrupt()?;
    let list = match target.store().list_segments(session) {
        Ok(list) => list,
        Err(annals::Error::SessionNotFound(_)) => return Ok(()),
        Err(e) => {
            let root = target.location().root.join(session.to_string());
            rep.totals.unchecked += 1;
            rep.progress.clear();
            let failure = target.err(e);
            if rep.json {
                let row = json!({"session": session.to_string(), "path": root, "error": failure.message()});
                let sep = if rep.first { "" } else { "," };
                rep.first = false;
                write!(rep.out, "{sep}\n    {row}")?;
            } else {
                writeln!(
                    rep.out,
                    "{}: could not list: {}",
                    root.display(),
                    failure.message().unwrap_or_default()
                )?;
            }
            return Ok(());
        }
    };
    rep.totals.sessions += 1;
    if let Some(blobs) = target.blob_usage(session) {
        rep.totals.blobs += blobs.count;
        rep.totals.blob_bytes += blobs.bytes;
    }
    for info in list {
        let (segments, bytes) = (rep.totals.segments, rep.totals.segment_bytes);
        rep.progress.update(|| {
            format!(
                "verifying session {i}/{n}: {segments} segments, {} checked",
                human_bytes(bytes)
            )
        });
        check_segment(target, rep, session, info.segment)?;
    }
    Ok(())
}

/// `Store::verify` (the fast path), or, for a huge segment while a progress line is shown, a
/// tolerant replay that checks the same (every line, every blob) and moves the line.
fn verify_one(
    target: &Target,
    rep: &mut Reporter<impl Write>,
    session: SessionId,
    segment: SegmentId,
) -> annals::Result<ScanReport> {
    let store = target.store();
    let big = target
        .segment_path(session, segment)
        .and_then(|p| std::fs::symlink_metadata(p).ok())
        .is_some_and(|m| m.len() > PROGRESS_INSIDE);
    if !(big && rep.progress.is_enabled()) {
        return store.verify(session, segment);
    }
    let count = store.tip(session, segment).map(|t| t.count).unwrap_or(0);
    let progress = &mut rep.progress;
    let report = store.replay_raw(session, segment, &ReplayOptions::tolerant(), &mut |entry| {
        if entry.seq % 4096 == 0 {
            if crate::term::interrupted() {
                return Ok(ControlFlow::Break(()));
            }
            progress.update(|| {
                #[expect(clippy::cast_precision_loss, reason = "a percentage for people")]
                let pct = entry.seq as f64 * 100.0 / count.max(1) as f64;
                format!(
                    "verifying segment {segment}: entry {} of {count} ({pct:.0}%)",
                    entry.seq
                )
            });
        }
        Ok(ControlFlow::Continue(()))
    })?;
    Ok(report)
}

fn check_segment<W: Write>(
    target: &Target,
    rep: &mut Reporter<W>,
    session: SessionId,
    segment: SegmentId,
) -> Result<(), Failure> {
    check_interrupt()?;
    let path = target.segment_path(session, segment).unwrap_or_default();
    let result = verify_one(target, rep, session, segment);
    check_interrupt()?;
    if let Err(annals::Error::SegmentNotFound { .. }) = result {
        // Deleted between listing and checking: nothing left to check.
        return Ok(());
    }
    rep.totals.segments += 1;
    rep.file(
        session,
        segment,
        "segment",
        result.map_err(|e| target.err(e)),
        &path,
    )?;
    let trace =
        target
            .store()
            .replay_trace_raw(session, segment, &ReplayOptions::tolerant(), &mut |_| {
                Ok(ControlFlow::Continue(()))
            });
    match trace {
        // No trace file: nothing to report.
        Ok(ScanReport { path: None, .. }) | Err(annals::Error::SegmentNotFound { .. }) => {}
        other => {
            rep.totals.traces += 1;
            let trace_path = target.trace_path(session, segment).unwrap_or_default();
            rep.file(
                session,
                segment,
                "trace",
                other.map_err(|e| target.err(e)),
                &trace_path,
            )?;
        }
    }
    Ok(())
}
