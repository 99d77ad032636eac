//! `annals append`: JSON lines from stdin into a segment, appended as they arrive (or, with
//! `--batch`, all checked first and written as one batch). Entries too long for a line go to
//! blobs, exactly as the library stores them.

use std::io::{self, BufRead, IsTerminal, Write};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use annals::{RawEntry, SegmentId, SessionId, Tip};
use clap::{Args, ValueEnum};

use super::WriteArgs;
use crate::fail::{Failure, Outcome, CANNOT_RUN, OK};
use crate::lines::{read_line, Read};
use crate::target::{Location, Target};
use crate::term;

/// Bad lines reported one by one before the rest are only counted (`--batch`).
const MAX_REPORTED: usize = 20;

/// Input bytes read ahead of the appends, at most (besides the line being read): the memory
/// bound of streaming mode.
const READ_AHEAD_BYTES: usize = 8 << 20;

/// Entries appended in one write, at most.
const MAX_BATCH_ENTRIES: usize = 1024;

#[derive(Debug, Args)]
pub struct AppendArgs {
    /// The session (full id; a unique end or start of an existing one also works)
    pub session: String,

    /// The segment (full id; a unique end or start of an existing one also works)
    pub segment: String,

    /// Create the segment (and its session) if it does not exist
    #[arg(long)]
    pub create: bool,

    /// Read the whole input first and append it as one batch, all or nothing: a single bad
    /// line means nothing is written. Memory grows with the input
    #[arg(long)]
    pub batch: bool,

    /// Print what was written on stdout: `seqs` prints each entry's sequence number as it is
    /// appended (one per line), `tip` the segment's tip at the end as JSON
    #[arg(long, value_enum, value_name = "WHAT")]
    pub print: Option<PrintWhat>,

    /// No summary line on stderr
    #[arg(long, short = 'q')]
    pub quiet: bool,

    #[command(flatten)]
    pub write: WriteArgs,
}

/// `--print`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PrintWhat {
    /// Each appended entry's sequence number, one per line, as it is appended
    Seqs,
    /// The tip at the end: {"session":…,"segment":…,"count":N,"generation":G}
    Tip,
}

pub fn run(location: &Location, args: &AppendArgs) -> Outcome {
    // Nothing is created before the input is accepted: a refused append leaves no store
    // root behind.
    location.check_writable()?;
    args.write.check(location)?;
    let existing = if args.create {
        Target::existing_if_any(location)?
    } else {
        Some(Target::existing(location)?)
    };
    let existing = existing.map(|t| t.for_writes(&args.write)).transpose()?;
    let (session, segment) = resolve(existing.as_ref(), args)?;
    let stdin = io::stdin();
    if stdin.is_terminal() {
        say!("reading JSON entries from stdin, one per line; end with Ctrl-D");
    }
    let max = existing
        .as_ref()
        .map_or(annals::DEFAULT_MAX_ENTRY_BYTES, |t| {
            t.store().max_entry_bytes()
        });
    let mut writer = Writer {
        location,
        target: existing,
        session,
        segment,
        create: args.create,
        write: args.write,
        print: args.print,
        out: io::stdout(),
        appended: 0,
        first_seq: None,
        tip: None,
        created: false,
    };
    let result = if args.batch {
        read_all(stdin.lock(), max).and_then(|entries| writer.write(&entries))
    } else {
        stream(&mut writer, max)
    };
    // The segment exists (or is created by --create) even when the input held no entry.
    let result = result.and_then(|()| {
        if writer.tip.is_none() {
            writer.write(&[])
        } else {
            Ok(())
        }
    });
    writer.finish(args.quiet)?;
    result.map(|()| OK)
}

fn resolve(target: Option<&Target>, args: &AppendArgs) -> Result<(SessionId, SegmentId), Failure> {
    let full = |what: &str, text: &str| -> Result<annals::Uuid, Failure> {
        annals::Uuid::try_parse(text).ok().ok_or_else(|| {
            Failure::usage(
                format!("{text:?} is not a full {what} id"),
                "--create needs full UUIDs for a segment that does not exist yet (for example \
                 from `uuidgen`)",
            )
        })
    };
    match target {
        Some(t) if !args.create => t.segment(&args.segment, Some(&args.session)),
        Some(t) => {
            // An existing session or segment may be named briefly; a new one needs its id.
            let session = match full("session", &args.session) {
                Ok(id) => SessionId::from_uuid(id),
                Err(e) => t.session(&args.session).map_err(|_| e)?,
            };
            match full("segment", &args.segment) {
                Ok(id) => Ok((session, SegmentId::from_uuid(id))),
                Err(e) => t
                    .segment(&args.segment, Some(&session.to_string()))
                    .map_err(|_| e),
            }
        }
        None => Ok((
            SessionId::from_uuid(full("session", &args.session)?),
            SegmentId::from_uuid(full("segment", &args.segment)?),
        )),
    }
}

/// Writes batches to the segment, creating it (and the store) with the first one if asked.
struct Writer<'l> {
    location: &'l Location,
    target: Option<Target>,
    session: SessionId,
    segment: SegmentId,
    create: bool,
    write: WriteArgs,
    print: Option<PrintWhat>,
    out: io::Stdout,
    appended: u64,
    first_seq: Option<u64>,
    tip: Option<Tip>,
    created: bool,
}

impl Writer<'_> {
    fn target(&mut self) -> Result<&Target, Failure> {
        if self.target.is_none() {
            self.target = Some(Target::writable(self.location)?.for_writes(&self.write)?);
        }
        self.target
            .as_ref()
            .ok_or_else(|| Failure::usage("no store", ""))
    }

    /// Appends `entries` in one write (creating the segment first with `--create`); with
    /// none, only makes sure the segment exists.
    fn write(&mut self, entries: &[RawEntry]) -> Result<(), Failure> {
        let (session, segment, create) = (self.session, self.segment, self.create);
        let target = self.target()?;
        let store = target.store();
        let first_try = if entries.is_empty() {
            store.tip(session, segment)
        } else {
            store.append_batch_raw(session, segment, entries)
        };
        let mut created = false;
        let tip = match first_try {
            Ok(tip) => tip,
            Err(annals::Error::SegmentNotFound { .. }) if create => {
                match store.create_segment(session, segment, entries) {
                    Ok(tip) => {
                        created = true;
                        tip
                    }
                    // Created by someone else in the meantime: append to it like any other.
                    Err(annals::Error::SegmentExists { .. }) if !entries.is_empty() => store
                        .append_batch_raw(session, segment, entries)
                        .map_err(|e| target.err(e))?,
                    Err(annals::Error::SegmentExists { .. }) => {
                        store.tip(session, segment).map_err(|e| target.err(e))?
                    }
                    Err(e) => return Err(target.err(e)),
                }
            }
            Err(e) => return Err(target.err(e)),
        };
        self.created |= created;
        let n = entries.len() as u64;
        let first = tip.count - n;
        self.first_seq.get_or_insert(first);
        self.appended += n;
        self.tip = Some(tip);
        if self.print == Some(PrintWhat::Seqs) && n > 0 {
            let mut out = self.out.lock();
            for seq in first..tip.count {
                writeln!(out, "{seq}")?;
            }
            out.flush()?;
        }
        Ok(())
    }

    /// The summary on stderr, and `--print tip`: also after a failure, so that a script
    /// knows what was written before it.
    fn finish(&mut self, quiet: bool) -> Result<(), Failure> {
        let Some(tip) = self.tip else {
            return Ok(());
        };
        if self.print == Some(PrintWhat::Tip) {
            let doc = serde_json::json!({
                "session": self.session.to_string(),
                "segment": self.segment.to_string(),
                "count": tip.count,
                "generation": tip.generation,
            });
            let mut out = self.out.lock();
            writeln!(out, "{doc}")?;
            out.flush()?;
        }
        if !quiet {
            let range = match self.first_seq {
                Some(first) if self.appended == 1 => format!(" (seq {first})"),
                Some(first) if self.appended > 0 => format!(" (seq {first}..{})", tip.count - 1),
                _ => String::new(),
            };
            let created = if self.created {
                format!(" (created it in session {})", self.session)
            } else {
                String::new()
            };
            say!(
                "appended {} entr{}{} to segment {}{created}{range}, now {} entries",
                self.appended,
                if self.appended == 1 { "y" } else { "ies" },
                if self.write.durable { " durably" } else { "" },
                self.segment,
                tip.count
            );
        }
        Ok(())
    }
}

/// What the reader thread hands over: an entry, a refused line (why), or a read error.
enum Line {
    Entry(RawEntry),
    Bad(String),
    ReadError(String),
}

/// Bytes read ahead and not yet appended, and a way to wait until there is room.
#[derive(Default)]
struct Budget {
    queued: Mutex<usize>,
    room: Condvar,
}

impl Budget {
    fn take(&self, n: usize) {
        let mut q = self.queued.lock().unwrap_or_else(|e| e.into_inner());
        // One line is always let through, however long, so a single huge entry cannot block.
        while *q > 0 && *q + n > READ_AHEAD_BYTES {
            q = self.room.wait(q).unwrap_or_else(|e| e.into_inner());
        }
        *q += n;
    }

    fn give(&self, n: usize) {
        let mut q = self.queued.lock().unwrap_or_else(|e| e.into_inner());
        *q = q.saturating_sub(n);
        self.room.notify_all();
    }
}

/// Streaming mode: a thread reads and checks lines; each line is appended as soon as it is
/// read, together with whatever other lines are already waiting. The first bad line stops
/// the input there: every line before it is appended, nothing after it is read.
fn stream(writer: &mut Writer<'_>, max: usize) -> Result<(), Failure> {
    let (tx, rx) = mpsc::sync_channel::<Line>(MAX_BATCH_ENTRIES);
    let budget = Arc::new(Budget::default());
    {
        let budget = Arc::clone(&budget);
        std::thread::spawn(move || read_lines(io::stdin().lock(), max, &tx, &budget));
    }
    let mut batch: Vec<RawEntry> = Vec::new();
    let mut batch_bytes = 0usize;
    let flush = |writer: &mut Writer<'_>, batch: &mut Vec<RawEntry>, bytes: &mut usize| {
        let result = if batch.is_empty() {
            Ok(())
        } else {
            writer.write(batch)
        };
        budget.give(*bytes);
        batch.clear();
        *bytes = 0;
        result
    };
    let mut stop: Option<Failure> = None;
    loop {
        let line = match next_line(&rx, batch.is_empty()) {
            Next::Line(line) => line,
            Next::Idle => {
                flush(writer, &mut batch, &mut batch_bytes)?;
                continue;
            }
            Next::End => break,
            Next::Interrupted => {
                stop = Some(Failure::Interrupted);
                break;
            }
        };
        match line {
            Line::Entry(entry) => {
                batch_bytes += entry.len();
                batch.push(entry);
                if batch.len() >= MAX_BATCH_ENTRIES || batch_bytes >= READ_AHEAD_BYTES {
                    flush(writer, &mut batch, &mut batch_bytes)?;
                }
            }
            Line::Bad(why) => {
                stop = Some(Failure::new(
                    CANNOT_RUN,
                    format!("stopped at {why}"),
                    "stdin",
                    "every line before it was appended; nothing after it was read",
                ));
                break;
            }
            Line::ReadError(why) => {
                stop = Some(Failure::new(
                    CANNOT_RUN,
                    format!("could not read input ({why})"),
                    "stdin",
                    "every line before it was appended",
                ));
                break;
            }
        }
    }
    flush(writer, &mut batch, &mut batch_bytes)?;
    match stop {
        Some(failure) => Err(failure),
        None => Ok(()),
    }
}

enum Next {
    Line(Line),
    /// Nothing more is waiting right now: append what was gathered.
    Idle,
    End,
    Interrupted,
}

fn next_line(rx: &Receiver<Line>, batch_empty: bool) -> Next {
    if !batch_empty {
        return match rx.try_recv() {
            Ok(line) => Next::Line(line),
            Err(mpsc::TryRecvError::Empty) => Next::Idle,
            Err(mpsc::TryRecvError::Disconnected) => Next::End,
        };
    }
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => return Next::Line(line),
            Err(RecvTimeoutError::Disconnected) => return Next::End,
            Err(RecvTimeoutError::Timeout) if term::interrupted() => return Next::Interrupted,
            Err(RecvTimeoutError::Timeout) => {}
        }
    }
}

/// The reader thread: one checked line at a time into the channel.
fn read_lines(mut input: impl BufRead, max: usize, tx: &SyncSender<Line>, budget: &Budget) {
    let mut buf = Vec::new();
    for n in 1u64.. {
        buf.clear();
        let line = match read_line(&mut input, &mut buf, line_limit(max)) {
            Ok(None) => return,
            Ok(Some(line)) => line,
            Err(e) => {
                let _ = tx.send(Line::ReadError(e.to_string()));
                return;
            }
        };
        let checked = match line {
            Read::Line { .. } => check(n, &buf, max),
            Read::TooLong(len) => Err(too_large(n, len, max)),
        };
        let msg = match checked {
            Ok(None) => continue,
            Ok(Some(entry)) => {
                budget.take(entry.len());
                Line::Entry(entry)
            }
            Err(why) => Line::Bad(why),
        };
        let bad = matches!(msg, Line::Bad(_));
        if tx.send(msg).is_err() || bad {
            return;
        }
    }
}

/// Checks one input line: `Ok(None)` for a blank one, the entry, or why it is refused.
fn check(n: u64, line: &[u8], max: usize) -> Result<Option<RawEntry>, String> {
    let text = std::str::from_utf8(line).map_err(|e| format!("stdin line {n}: not UTF-8 ({e})"))?;
    let text = text.trim_end_matches('\r');
    if text.trim().is_empty() {
        return Ok(None);
    }
    let entry = RawEntry::from_json(text).map_err(|e| match e {
        annals::Error::InvalidJson(e) => format!("stdin line {n}: not valid JSON: {e}"),
        e => format!("stdin line {n}: {e}"),
    })?;
    if entry.len() > max {
        return Err(too_large(n, entry.len() as u64, max));
    }
    Ok(Some(entry))
}

/// The longest input line held: an entry's maximum, plus room for whitespace that compaction
/// removes.
fn line_limit(max: usize) -> usize {
    max.saturating_add(max / 8).saturating_add(64 << 10)
}

fn too_large(n: u64, len: u64, max: usize) -> String {
    format!(
        "stdin line {n}: entry too large: {len} bytes of JSON, the store's limit is {max} \
         (entries up to the limit are kept as blobs)"
    )
}

/// `--batch`: every line read and checked, each bad one reported; any bad line fails the
/// whole input.
fn read_all(mut input: impl BufRead, max: usize) -> Result<Vec<RawEntry>, Failure> {
    let mut entries = Vec::new();
    let mut bad: Vec<String> = Vec::new();
    let mut bad_count = 0usize;
    let mut buf = Vec::new();
    for n in 1u64.. {
        buf.clear();
        let line = read_line(&mut input, &mut buf, line_limit(max)).map_err(|e| {
            Failure::new(
                CANNOT_RUN,
                format!("could not read input ({e})"),
                "stdin",
                "nothing was written",
            )
        })?;
        let checked = match line {
            None => break,
            Some(Read::Line { .. }) => check(n, &buf, max),
            Some(Read::TooLong(len)) => Err(too_large(n, len, max)),
        };
        match checked {
            Ok(Some(entry)) => entries.push(entry),
            Ok(None) => {}
            Err(why) => {
                bad_count += 1;
                if bad.len() < MAX_REPORTED {
                    bad.push(why);
                }
            }
        }
    }
    if bad_count == 0 {
        return Ok(entries);
    }
    for line in &bad {
        say!("annals: {line}");
    }
    let more = bad_count - bad.len();
    if more > 0 {
        say!("annals: ... and {more} more invalid lines");
    }
    Err(Failure::new(
        CANNOT_RUN,
        format!(
            "{bad_count} invalid line{} in the input",
            if bad_count == 1 { "" } else { "s" }
        ),
        "stdin",
        "nothing was written; fix the lines above and run again",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_lines_are_skipped_and_bad_ones_named_by_number() {
        let input = b"{\"a\":1}\n\n  \n[2]\r\n";
        let entries = read_all(&input[..], 1 << 20).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].as_str(), "[2]");
        let err = read_all(&b"{\"a\":1}\n{oops\n"[..], 1 << 20).unwrap_err();
        assert_eq!(err.code(), CANNOT_RUN);
        assert_eq!(
            check(7, b"{oops", 100).unwrap_err().get(..12),
            Some("stdin line 7")
        );
    }

    #[test]
    fn an_over_long_line_is_refused_without_being_held() {
        let max = 1000;
        let mut input = vec![b'"'; 10_000];
        input.push(b'\n');
        input.extend_from_slice(b"{\"ok\":1}\n");
        let mut reader = &input[..];
        let mut buf = Vec::new();
        match read_line(&mut reader, &mut buf, max).unwrap() {
            Some(Read::TooLong(len)) => assert_eq!(len, 10_000),
            _ => panic!("expected too long"),
        }
        assert!(buf.capacity() < 80_000, "the line was not kept");
        buf.clear();
        assert!(matches!(
            read_line(&mut reader, &mut buf, max).unwrap(),
            Some(Read::Line { terminated: true })
        ));
        assert_eq!(buf, b"{\"ok\":1}");
        buf.clear();
        assert!(read_line(&mut reader, &mut buf, max).unwrap().is_none());
        // The last line needs no newline.
        let mut reader = &b"[1]"[..];
        assert!(matches!(
            read_line(&mut reader, &mut buf, max).unwrap(),
            Some(Read::Line { terminated: false })
        ));
    }
}
