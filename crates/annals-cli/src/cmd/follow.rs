//! `annals follow`: `tail -f` for a segment, or for a session (following its forks). Polls
//! the tip (O(1)) and replays from the last printed sequence number when it grows; after a
//! rewrite it prints again from the first entry that changed.

use std::collections::hash_map::DefaultHasher;
use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::io::{self, IsTerminal, Write};
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use annals::{ReplayOptions, SegmentId, SessionId, Tip};
use annals_cli::lineage::Tree;
use annals_cli::search::{time, Filter, Verdict};
use clap::Args;

use super::{note_untimed, FilterArgs, SinkError};
use crate::fail::{stdout_error, Failure, Outcome, OK, PROBLEMS};
use crate::ids::{short, Named};
use crate::print::{Place, PrintArgs, Printer};
use crate::target::{Location, Target};
use crate::term::{self, Style};

/// Printed entries remembered to tell, after a rewrite, which of them changed.
const REMEMBERED: usize = 4096;

#[derive(Debug, Args)]
pub struct FollowArgs {
    /// A segment, or a session (its newest segment, then each fork as it appears): a full
    /// id, a unique end or start of one, or a path inside the store root
    pub target: String,

    /// The session holding the segment (found automatically if not given)
    #[arg(long, value_name = "SESSION")]
    pub session: Option<String>,

    /// Wait for the session or segment (and the store) to appear if it does not exist yet,
    /// like `tail -F`; give its full id
    #[arg(long)]
    pub wait: bool,

    /// Start by printing the last N entries (--from replaces this)
    #[arg(long, short = 'n', value_name = "N", default_value_t = 10)]
    pub tail: u64,

    /// How often to look for new entries, in milliseconds
    #[arg(long, value_name = "MS", default_value_t = 200)]
    pub interval_ms: u64,

    #[command(flatten)]
    pub filter: FilterArgs,

    #[command(flatten)]
    pub print: PrintArgs,
}

pub fn run(location: &Location, args: &FollowArgs) -> Outcome {
    let filter = args.filter.compile()?;
    let interval = Duration::from_millis(args.interval_ms.max(10));
    let Some((target, named)) = resolve(location, args, interval)? else {
        return Ok(OK);
    };
    let (session, segment, follow_forks) = match named {
        Named::Segment(s, g) => (s, g, false),
        Named::Session(s) => {
            let tree = Tree::new(target.store().list_segments(s).map_err(|e| target.err(e))?);
            match tree.newest() {
                Some(n) => (s, n.info.segment, true),
                None => {
                    return Err(Failure::new(
                        PROBLEMS,
                        "the session has no segments",
                        format!("session {s}"),
                        "",
                    ))
                }
            }
        }
    };
    let mut f = Follower {
        target: &target,
        filter,
        printer: Printer::new(&args.print, false),
        out: io::stdout().lock(),
        style: Style::stderr(),
        session,
        segment,
        next: 0,
        generation: 0,
        printed: VecDeque::new(),
        untimed: 0,
    };
    let first = target
        .store()
        .tip(session, segment)
        .map_err(|e| target.err(e))?;
    f.generation = first.generation;
    f.next = args
        .filter
        .from
        .unwrap_or_else(|| first.count.saturating_sub(args.tail));
    if io::stderr().is_terminal() {
        let what = if follow_forks {
            format!(
                "session {} (segment {}, and its forks as they come)",
                short(&session),
                short(&segment)
            )
        } else {
            format!("segment {}", short(&segment))
        };
        say!(
            "{}: following {what}: {} entries; Ctrl-C to stop",
            f.style.bold("annals"),
            first.count
        );
    }
    let code = f.run(follow_forks, interval);
    let _ = f.out.flush();
    note_untimed(f.untimed);
    code
}

/// The store and what the argument names, waiting for them with `--wait`. `None` if Ctrl-C
/// came first.
fn resolve(
    location: &Location,
    args: &FollowArgs,
    interval: Duration,
) -> Result<Option<(Target, Named)>, Failure> {
    let mut announced = false;
    loop {
        // Looked at before the attempt: a root created between the two would otherwise turn
        // "no store here" into an error that ends the wait.
        let no_root_yet = !location.root.exists();
        let attempt = Target::existing(location).and_then(|target| {
            let named = match &args.session {
                Some(s) => target
                    .segment(&args.target, Some(s))
                    .and_then(|(s, g)| exists(&target, s, g).map(|()| Named::Segment(s, g)))?,
                None => target.named(&args.target)?,
            };
            Ok((target, named))
        });
        match attempt {
            Ok(found) => return Ok(Some(found)),
            // Not there yet (exit code 1), or no store yet: wait if asked to.
            Err(Failure::Fatal { code, .. }) if args.wait && (code == PROBLEMS || no_root_yet) => {
                if !announced {
                    announced = true;
                    say!(
                        "{}: waiting for {} to appear in {} (Ctrl-C to stop)",
                        Style::stderr().bold("annals"),
                        args.target,
                        location.describe()
                    );
                }
                if sleep_unless_stopped(interval) {
                    return Ok(None);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

fn exists(target: &Target, session: SessionId, segment: SegmentId) -> Result<(), Failure> {
    match target.store().exists(session, segment) {
        Ok(true) => Ok(()),
        Ok(false) => Err(target.err(annals::Error::SegmentNotFound { session, segment })),
        Err(e) => Err(target.err(e)),
    }
}

struct Follower<'t, W: Write> {
    target: &'t Target,
    filter: Filter,
    printer: Printer,
    out: W,
    style: Style,
    session: SessionId,
    segment: SegmentId,
    /// The next sequence number to print.
    next: u64,
    generation: u64,
    /// `(seq, fingerprint)` of the last printed entries.
    printed: VecDeque<(u64, u64)>,
    untimed: u64,
}

impl<W: Write> Follower<'_, W> {
    fn run(&mut self, follow_forks: bool, interval: Duration) -> Outcome {
        let mut pause = Duration::ZERO;
        loop {
            if sleep_unless_stopped(pause) {
                return Ok(OK);
            }
            pause = interval;
            if follow_forks {
                self.switch_to_newest()?;
            }
            let tip = match self.target.store().tip(self.session, self.segment) {
                Ok(tip) => tip,
                Err(annals::Error::SegmentNotFound { .. } | annals::Error::SessionNotFound(_)) => {
                    say!(
                        "{}: segment {} was deleted, session {}: nothing more to follow",
                        self.style.bold("annals"),
                        self.segment,
                        self.session
                    );
                    return Ok(PROBLEMS);
                }
                Err(e) => return Err(self.target.err(e)),
            };
            if tip.generation != self.generation {
                self.rewritten(tip)?;
            }
            if tip.count <= self.next || self.filter.past_end(self.next) {
                continue;
            }
            let started = Instant::now();
            if self.print_from(self.next)? {
                return Ok(OK);
            }
            self.out.flush().map_err(|e| stdout_error(&e))?;
            // Each replay re-checks the segment from the start of the range it reads; on a
            // huge, busy segment wait longer between replays so that following it does not
            // take a whole core.
            pause = pause.max(started.elapsed() * 2);
        }
    }

    /// Prints entries from `from` on; true if stopped by Ctrl-C.
    fn print_from(&mut self, from: u64) -> Result<bool, Failure> {
        let mut sink_error = SinkError::new();
        let place = Place {
            session: self.session,
            segment: self.segment,
        };
        let options = ReplayOptions {
            blob_refs: self.printer.blob_refs(),
            ..ReplayOptions::strict().from_seq(from)
        };
        let (filter, printer, out) = (&self.filter, &mut self.printer, &mut self.out);
        let (next, printed, untimed) = (&mut self.next, &mut self.printed, &mut self.untimed);
        let mut stopped = false;
        let result =
            self.target
                .store()
                .replay_raw(self.session, self.segment, &options, &mut |entry| {
                    if term::interrupted() {
                        stopped = true;
                        return Ok(ControlFlow::Break(()));
                    }
                    if entry.seq < *next {
                        return Ok(ControlFlow::Continue(()));
                    }
                    if filter.past_end(entry.seq) {
                        return Ok(ControlFlow::Break(()));
                    }
                    *next = entry.seq + 1;
                    let json = entry.json().unwrap_or("");
                    match filter.check(entry.seq, entry.appended_ms, json) {
                        Verdict::Pass => {}
                        Verdict::NoTime => {
                            *untimed += 1;
                            return Ok(ControlFlow::Continue(()));
                        }
                        Verdict::Fail => return Ok(ControlFlow::Continue(())),
                    }
                    if let Err(e) = printer.entry(out, place, &entry) {
                        return Ok(sink_error.stop(e));
                    }
                    if printed.len() == REMEMBERED {
                        printed.pop_front();
                    }
                    printed.push_back((entry.seq, fingerprint(json)));
                    Ok(ControlFlow::Continue(()))
                });
        if let Some(e) = sink_error.io {
            return Err(stdout_error(&e));
        }
        match result {
            Ok(_) => Ok(stopped),
            // Deleted meanwhile: the next poll says so.
            Err(annals::Error::SegmentNotFound { .. }) => Ok(stopped),
            Err(e) => Err(self.target.err(e)),
        }
    }

    /// After a truncate or repair: find the first printed entry that is no longer what was
    /// printed, and go on from there.
    fn rewritten(&mut self, tip: Tip) -> Result<(), Failure> {
        let changed = self.first_changed()?;
        let old = std::mem::replace(&mut self.generation, tip.generation);
        // Entries past the new end are gone too, printed or not.
        let resume = changed.unwrap_or(self.next).min(self.next).min(tip.count);
        let what = if resume < self.next {
            while self.printed.back().is_some_and(|(s, _)| *s >= resume) {
                self.printed.pop_back();
            }
            self.next = resume;
            format!("entries from seq {resume} on changed; continuing from seq {resume}")
        } else {
            format!(
                "the entries printed so far are unchanged; continuing from seq {}",
                self.next
            )
        };
        say!(
            "{}: segment {} was rewritten (generation {old} -> {}, {} entries): {what}",
            self.style.bold("annals"),
            self.segment,
            tip.generation,
            tip.count,
        );
        Ok(())
    }

    /// The first sequence number whose entry differs from what was printed (or is gone), if
    /// any of the remembered ones did.
    fn first_changed(&self) -> Result<Option<u64>, Failure> {
        let Some(&(oldest, _)) = self.printed.front() else {
            return Ok(None);
        };
        let mut remembered = self.printed.iter().peekable();
        let mut changed = None;
        let result = self.target.store().replay_raw(
            self.session,
            self.segment,
            &ReplayOptions::strict().from_seq(oldest),
            &mut |entry| {
                match remembered.peek() {
                    None => return Ok(ControlFlow::Break(())),
                    // A printed entry is missing from the sequence: it changed.
                    Some((s, _)) if *s < entry.seq => {
                        changed = Some(*s);
                        return Ok(ControlFlow::Break(()));
                    }
                    Some((s, fp)) if *s == entry.seq => {
                        if *fp != fingerprint(entry.json().unwrap_or("")) {
                            changed = Some(entry.seq);
                            return Ok(ControlFlow::Break(()));
                        }
                        remembered.next();
                    }
                    // Not printed (filtered out): not on the screen either.
                    Some(_) => {}
                }
                Ok(ControlFlow::Continue(()))
            },
        );
        match result {
            Ok(_) => {}
            Err(annals::Error::SegmentNotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.target.err(e)),
        }
        if changed.is_none() {
            // Printed entries past the new end are gone.
            changed = remembered.next().map(|(s, _)| *s);
        }
        Ok(changed)
    }

    /// Following a session: when a newer segment appears (a fork), announce it and go on
    /// there, from its fork point (the entries before it are the ones already shown).
    fn switch_to_newest(&mut self) -> Result<(), Failure> {
        let list = match self.target.store().list_segments(self.session) {
            Ok(list) => list,
            Err(annals::Error::SessionNotFound(_)) => return Ok(()),
            Err(e) => return Err(self.target.err(e)),
        };
        let tree = Tree::new(list);
        let Some(newest) = tree.newest() else {
            return Ok(());
        };
        if newest.info.segment == self.segment {
            return Ok(());
        }
        let info = &newest.info;
        let (from, how) = match info.fork {
            Some(f) if f.segment == self.segment => (
                f.at.min(self.next),
                format!("forked from segment {} at {}", short(&f.segment), f.at),
            ),
            Some(f) => (
                f.at,
                format!("forked from segment {} at {}", short(&f.segment), f.at),
            ),
            None => (0, "a new segment".to_owned()),
        };
        say!(
            "{}: the session forked: following segment {} ({how}, created {}), from seq {from}",
            self.style.bold("annals"),
            short(&info.segment),
            time::utc(info.created_ms),
        );
        self.printer
            .segment_header(&mut self.out, &format!("segment {} ({how})", info.segment))
            .map_err(|e| stdout_error(&e))?;
        self.segment = info.segment;
        self.generation = info.tip.generation;
        self.next = from;
        self.printed.clear();
        Ok(())
    }
}

fn fingerprint(json: &str) -> u64 {
    let mut h = DefaultHasher::new();
    json.hash(&mut h);
    h.finish()
}

/// Sleeps in short steps so that Ctrl-C is answered quickly. True if a stop was asked for.
fn sleep_unless_stopped(total: Duration) -> bool {
    let step = Duration::from_millis(25);
    let deadline = Instant::now() + total;
    loop {
        if term::interrupted() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        std::thread::sleep(step.min(deadline - now));
    }
}
