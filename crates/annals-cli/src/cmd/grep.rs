//! `annals grep`: entries matching a pattern across the store (or some sessions), blobs
//! re-inflated, printed with their session, segment and sequence number. Built on
//! [`annals_cli::search`], which the web viewer shares.

use std::io::{self, BufWriter, IsTerminal, Write};
use std::ops::ControlFlow;

use annals::{SegmentId, SessionId};
use annals_cli::search::{self, time, Case, Hit, Pattern, Progress, Query, Scope, SearchSink};
use clap::Args;

use super::{note_untimed, FilterArgs};
use crate::fail::{Failure, Outcome, CANNOT_RUN, OK, PROBLEMS};
use crate::ids::{short, Named};
use crate::target::{Location, Target};
use crate::term::{self, Style};

/// Entries longer than this are shown around their first match on a terminal (`--full`
/// shows them whole).
const WINDOW_ABOVE: usize = 1000;

#[derive(Debug, Args)]
pub struct GrepArgs {
    /// What to look for in each entry's JSON text (as stored, compact: a quote inside a string
    /// reads \", a newline \n): a regular expression, or a fixed string with -F. An empty
    /// PATTERN matches every entry: a search by --where and times alone
    pub pattern: String,

    /// Only these sessions (ids, unique ends or starts of ids); every session when omitted,
    /// newest first
    pub sessions: Vec<String>,

    /// Treat PATTERN as a fixed string, not a regular expression
    #[arg(long, short = 'F')]
    pub fixed_strings: bool,

    /// Match without regard to letter case
    #[arg(long, short = 'i', conflicts_with = "smart_case")]
    pub ignore_case: bool,

    /// Match without regard to case unless PATTERN has an upper-case letter
    #[arg(long, short = 'S')]
    pub smart_case: bool,

    /// One JSON object per hit: {"session","segment","seq","appended_ms","appended","from_blob","entry"}
    #[arg(long, conflicts_with_all = ["count", "files_with_matches", "quiet"])]
    pub json: bool,

    /// Print how many entries matched in each segment (SESSION:SEGMENT:COUNT) instead
    #[arg(long, short = 'c', conflicts_with_all = ["files_with_matches", "quiet"])]
    pub count: bool,

    /// Print each segment with a match once (SESSION:SEGMENT) instead
    #[arg(long, short = 'l', conflicts_with = "quiet")]
    pub files_with_matches: bool,

    /// Print nothing; exit 0 at the first match, 1 if there is none
    #[arg(long, short = 'q')]
    pub quiet: bool,

    /// Stop after N matching entries
    #[arg(long, short = 'm', value_name = "N")]
    pub max_count: Option<u64>,

    /// Search only the newest segment of each session (whole) instead of the whole fork tree
    /// (where each fork is searched from its fork point, so every entry is found once)
    #[arg(long)]
    pub newest: bool,

    /// Search the segments' debug traces instead of their logs
    #[arg(long)]
    pub trace: bool,

    /// Show long entries whole on a terminal too (they are cut around the first match
    /// otherwise)
    #[arg(long)]
    pub full: bool,

    /// Show whole ids instead of their last 12 digits
    #[arg(long)]
    pub full_ids: bool,

    /// Print what was searched and how long it took on stderr
    #[arg(long)]
    pub stats: bool,

    #[command(flatten)]
    pub filter: FilterArgs,
}

pub fn run(location: &Location, args: &GrepArgs) -> Outcome {
    let case = if args.ignore_case {
        Case::Insensitive
    } else if args.smart_case {
        Case::Smart
    } else {
        Case::Sensitive
    };
    let pattern = if args.fixed_strings {
        Pattern::fixed(&args.pattern, case)
    } else {
        Pattern::regex(&args.pattern, case).map_err(|e| {
            Failure::usage(
                format!("PATTERN {e}"),
                "fix it, or pass -F to search for it as a fixed string",
            )
        })?
    };
    let query = Query {
        pattern,
        filter: args.filter.compile()?,
    };
    let target = Target::existing(location)?;
    let mut sessions = Vec::new();
    for arg in &args.sessions {
        match target.named(arg)? {
            Named::Session(s) => sessions.push(s),
            Named::Segment(s, g) => {
                return Err(Failure::usage(
                    format!("{arg} is segment {g}, not a session"),
                    &format!(
                        "grep searches sessions: give its session {} (all its segments are \
                         searched), or add --newest",
                        short(&s)
                    ),
                ))
            }
        }
    }
    let scope = Scope {
        sessions,
        newest_only: args.newest,
        traces: args.trace,
    };
    let stdout = io::stdout();
    let terminal = stdout.is_terminal();
    let mut sink = Printer {
        args,
        out: BufWriter::new(stdout.lock()),
        style: if args.json {
            Style::plain()
        } else {
            Style::stdout()
        },
        window: terminal && !args.full,
        pattern: &query.pattern,
        current: None,
        count: 0,
        io_error: None,
        interrupted: false,
        progress: term::Progress::new(),
        hits: 0,
    };
    let started = std::time::Instant::now();
    let stats =
        search::search(target.store(), &scope, &query, &mut sink).map_err(|e| target.err(e))?;
    sink.end_file();
    sink.progress.clear();
    if let Some(e) = sink.io_error.take() {
        return Err(crate::fail::stdout_error(&e));
    }
    sink.out.flush()?;
    if sink.interrupted {
        return Err(Failure::Interrupted);
    }
    let style = Style::stderr();
    if stats.damaged_count > 0 {
        let first = stats.damaged.first().map(|d| {
            let path = d.path.as_ref().map_or_else(
                || format!("segment {}", d.segment),
                |p| p.display().to_string(),
            );
            format!(
                " (first: {path}:{}:{}: {})",
                d.first.line, d.first.offset, d.first.reason
            )
        });
        say!(
            "{}: {}: {} damaged file{} searched around{}; `annals verify` lists every problem",
            style.bold("annals"),
            style.yellow("warning"),
            stats.damaged_count,
            if stats.damaged_count == 1 { "" } else { "s" },
            first.unwrap_or_default()
        );
    }
    for u in &stats.unreadable {
        let what = match u.segment {
            Some(g) => format!("segment {g} of session {}", u.session),
            None => format!("session {}", u.session),
        };
        say!(
            "{}: could not search {what}: {}",
            style.bold("annals"),
            u.error
        );
    }
    note_untimed(stats.untimed);
    if args.stats {
        #[expect(clippy::cast_precision_loss, reason = "a rate for people")]
        let rate = stats.bytes as f64 / started.elapsed().as_secs_f64().max(1e-9);
        say!(
            "searched {} session{}, {} file{}, {} entries ({}) in {:.3} s ({}/s): {} hit{}",
            stats.sessions,
            if stats.sessions == 1 { "" } else { "s" },
            stats.files,
            if stats.files == 1 { "" } else { "s" },
            stats.entries,
            term::human_bytes(stats.bytes),
            started.elapsed().as_secs_f64(),
            term::human_bytes(rate as u64),
            stats.hits,
            if stats.hits == 1 { "" } else { "s" },
        );
    }
    Ok(if stats.unreadable_count > 0 {
        CANNOT_RUN
    } else if stats.hits > 0 {
        OK
    } else {
        PROBLEMS
    })
}

struct Printer<'a, W: Write> {
    args: &'a GrepArgs,
    out: W,
    style: Style,
    window: bool,
    pattern: &'a Pattern,
    /// The segment whose hits are being counted (`--count`, `-l`).
    current: Option<(SessionId, SegmentId)>,
    count: u64,
    io_error: Option<io::Error>,
    interrupted: bool,
    progress: term::Progress,
    hits: u64,
}

impl<W: Write> Printer<'_, W> {
    fn id(&self, id: &impl std::fmt::Display) -> String {
        if self.args.full_ids {
            id.to_string()
        } else {
            short(id)
        }
    }

    /// `SESSION:SEGMENT` in colour.
    fn place(&self, session: SessionId, segment: SegmentId) -> String {
        format!(
            "{}:{}",
            self.style.magenta(&self.id(&session)),
            self.style.blue(&self.id(&segment))
        )
    }

    /// Prints the count of the segment just finished (`--count`).
    fn end_file(&mut self) {
        if let Some((session, segment)) = self.current.take() {
            if self.args.count && self.count > 0 {
                let line = format!("{}:{}", self.place(session, segment), self.count);
                if let Err(e) = writeln!(self.out, "{line}") {
                    self.io_error = Some(e);
                }
            }
        }
        self.count = 0;
    }

    fn print(&mut self, hit: &Hit<'_>) -> io::Result<()> {
        if self.args.json {
            let t = hit.appended_ms;
            return writeln!(
                self.out,
                "{{\"session\":\"{}\",\"segment\":\"{}\",\"seq\":{},\"appended_ms\":{},\"appended\":{},\"from_blob\":{},\"entry\":{}}}",
                hit.session,
                hit.segment,
                hit.seq,
                t.map_or_else(|| "null".to_owned(), |t| t.to_string()),
                t.map_or_else(|| "null".to_owned(), |t| format!("\"{}\"", time::rfc3339(t))),
                hit.from_blob,
                hit.json
            );
        }
        let place = self.place(hit.session, hit.segment);
        let seq = self.style.green(&hit.seq.to_string());
        let text = self.shown(hit.json);
        writeln!(self.out, "{place}:{seq}:{text}")
    }

    /// The entry with its matches highlighted; on a terminal a long one is cut to a window
    /// around its first match.
    fn shown(&self, json: &str) -> String {
        let matches = self.pattern.matches(json);
        let (window, before, after) = if self.window && json.len() > WINDOW_ABOVE {
            let first = matches.first().cloned().unwrap_or(0..0);
            let start = floor_char(json, first.start.saturating_sub(150));
            let end = floor_char(json, (first.end + 350).min(json.len()));
            (start..end, start > 0, end < json.len())
        } else {
            (0..json.len(), false, false)
        };
        let mut out = String::new();
        if before {
            out.push_str(&self.style.dim(&format!("…[{} bytes]…", window.start)));
        }
        let mut at = window.start;
        for m in matches
            .iter()
            .filter(|m| m.start >= window.start && m.end <= window.end)
        {
            out.push_str(json.get(at..m.start).unwrap_or_default());
            out.push_str(&self.style.hit(json.get(m.clone()).unwrap_or_default()));
            at = m.end;
        }
        out.push_str(json.get(at..window.end).unwrap_or_default());
        if after {
            out.push_str(
                &self
                    .style
                    .dim(&format!("…[{} more bytes]", json.len() - window.end)),
            );
        }
        out
    }
}

fn floor_char(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

impl<W: Write> SearchSink for Printer<'_, W> {
    fn hit(&mut self, hit: Hit<'_>) -> ControlFlow<()> {
        self.hits += 1;
        if self.args.quiet {
            return ControlFlow::Break(());
        }
        let here = (hit.session, hit.segment);
        if self.current != Some(here) {
            self.end_file();
            self.current = Some(here);
            if self.args.files_with_matches {
                let line = self.place(hit.session, hit.segment);
                if let Err(e) = writeln!(self.out, "{line}") {
                    self.io_error = Some(e);
                    return ControlFlow::Break(());
                }
            }
        }
        self.count += 1;
        if !self.args.count && !self.args.files_with_matches {
            self.progress.clear();
            if let Err(e) = self.print(&hit) {
                self.io_error = Some(e);
                return ControlFlow::Break(());
            }
        }
        if self.args.max_count.is_some_and(|m| self.hits >= m) {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    fn progress(&mut self, at: &Progress) -> ControlFlow<()> {
        if term::interrupted() {
            self.interrupted = true;
            return ControlFlow::Break(());
        }
        if self.io_error.is_some() {
            return ControlFlow::Break(());
        }
        if self.progress.is_enabled() {
            // The progress line shares the terminal with the hits: show what is already out.
            let _ = self.out.flush();
            self.progress.update(|| {
                format!(
                    "searching session {}: {} entries read, {} hits",
                    short(&at.session),
                    at.entries,
                    at.hits
                )
            });
        }
        ControlFlow::Continue(())
    }
}
