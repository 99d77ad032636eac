//! `annals import`: sessions from an export file into the store. The whole file is checked
//! first (every line's CRC, the structure, every count, every attachment's hash, the closing
//! SHA-256) and nothing is written unless all of it is good and no session in it exists in
//! the store already. A failure while writing removes what this import wrote.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Write};
use std::path::{Path, PathBuf};

use annals::{AttachmentMeta, RawEntry, SegmentId, SessionId};
use clap::Args;

use super::WriteArgs;
use crate::export_file::{Event, Reader, Refusal, SegmentStart};
use crate::fail::{check_interrupt, Cause, Failure, Outcome, CANNOT_RUN, OK};
use crate::target::{Location, Target};
use crate::term::Style;

/// Entries (or trace events) gathered before one append.
const BATCH: usize = 512;
/// Bytes gathered before one append.
const BATCH_BYTES: usize = 4 << 20;

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The export file (made by `annals export`)
    pub file: PathBuf,

    /// Only check the file and say what it holds; write nothing
    #[arg(long)]
    pub dry_run: bool,

    #[command(flatten)]
    pub write: WriteArgs,
}

/// What the file holds, per session.
#[derive(Debug, Default)]
struct Contents {
    sessions: Vec<SessionId>,
    segments: u64,
    entries: u64,
    events: u64,
    attachments: u64,
    /// Forks whose parent no longer held the same first entries when exported: imported as
    /// plain segments.
    unlinked: Vec<(SegmentId, SegmentId, u64)>,
}

pub fn run(location: &Location, args: &ImportArgs) -> Outcome {
    location.check_writable()?;
    args.write.check(location)?;
    let existing = Target::existing_if_any(location)?
        .map(|t| t.for_writes(&args.write))
        .transpose()?;
    let max = existing
        .as_ref()
        .map_or(annals::DEFAULT_MAX_ENTRY_BYTES, |t| {
            t.store().max_entry_bytes()
        });
    let contents = check(&args.file, max)?;
    if let Some(target) = &existing {
        for &session in &contents.sessions {
            match target.store().session_modified(session) {
                Err(annals::Error::SessionNotFound(_)) => {}
                Ok(_) => {
                    return Err(Failure::new(
                        CANNOT_RUN,
                        format!(
                            "session {session} of the file already exists in this store \
                             (imported before?); nothing was imported"
                        ),
                        target.describe(),
                        "import into another store (--root DIR), or remove that session first",
                    ))
                }
                Err(e) => return Err(target.err(e)),
            }
        }
    }
    let style = Style::stderr();
    let what = format!(
        "{} session{} ({}), {} segments, {} entries, {} trace events, {} attachments",
        contents.sessions.len(),
        if contents.sessions.len() == 1 {
            ""
        } else {
            "s"
        },
        contents
            .sessions
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        contents.segments,
        contents.entries,
        contents.events,
        contents.attachments
    );
    if args.dry_run {
        writeln!(
            io::stdout().lock(),
            "{}: the file checks out: {what}; dry run, nothing was written",
            args.file.display()
        )?;
        return Ok(OK);
    }
    let target = match existing {
        Some(t) => t,
        None => Target::writable(location)?.for_writes(&args.write)?,
    };
    let mut import = Import {
        target: &target,
        created: Vec::new(),
        session: None,
        segment: None,
        opened: false,
        batch: Vec::new(),
        batch_bytes: 0,
        trace: false,
        attachment: None,
    };
    if let Err(failure) = import.run(&args.file, max) {
        let mut undone = Vec::new();
        for session in &import.created {
            if let Err(e) = target.store().delete_session(*session) {
                undone.push(format!("session {session} could not be removed: {e}"));
            }
        }
        if !undone.is_empty() {
            say!("{}: {}", style.bold("annals"), undone.join("; "));
        } else if !import.created.is_empty() {
            say!(
                "{}: removed what this import had written ({} session{})",
                style.bold("annals"),
                import.created.len(),
                if import.created.len() == 1 { "" } else { "s" }
            );
        }
        return Err(failure);
    }
    for (segment, parent, at) in &contents.unlinked {
        say!(
            "{}: note: segment {segment} was forked from {parent} at {at}, which no longer held \
             the same entries when exported: it was imported whole, without its lineage",
            style.bold("annals")
        );
    }
    writeln!(
        io::stdout().lock(),
        "imported {what} from {}",
        args.file.display()
    )?;
    say!(
        "{}: note: append times and attachment times are those of this import (the library \
         sets them); the export file keeps the originals",
        style.bold("annals")
    );
    Ok(OK)
}

fn open(path: &Path) -> Result<BufReader<File>, Failure> {
    let file = File::open(path).map_err(|e| {
        let cause = Cause::of(&e, Some(path));
        Failure::new(
            CANNOT_RUN,
            format!("cannot read the export file ({})", cause.what),
            path.display(),
            cause.todo.unwrap_or("check the path"),
        )
    })?;
    match file.metadata() {
        Ok(m) if m.is_file() => Ok(BufReader::with_capacity(1 << 20, file)),
        _ => Err(Failure::usage(
            format!("{} is not a regular file", path.display()),
            "give an export file made by `annals export`",
        )),
    }
}

fn refused(path: &Path, r: &Refusal) -> Failure {
    let place = if r.line == 0 {
        path.display().to_string()
    } else {
        format!("{}:{}:{}", path.display(), r.line, r.offset)
    };
    Failure::new(
        CANNOT_RUN,
        format!("refusing a damaged or malformed export file: {}", r.reason),
        place,
        "nothing was imported; ask for the file again (`annals export SESSION -o FILE`)",
    )
}

/// The first pass: every check, nothing written.
fn check(path: &Path, max: usize) -> Result<Contents, Failure> {
    let mut reader = Reader::new(open(path)?, max);
    let mut c = Contents::default();
    // Per session: each segment's entry count, to check a fork's parent holds its fork point.
    let mut counts: HashMap<SegmentId, u64> = HashMap::new();
    let mut current: Option<SegmentStart> = None;
    loop {
        check_interrupt()?;
        let event = reader.next().map_err(|r| refused(path, &r))?;
        let Some(event) = event else { break };
        let problem = match event {
            Event::Session(s) => {
                counts.clear();
                if c.sessions.contains(&s) {
                    Some(format!("session {s} appears twice"))
                } else {
                    c.sessions.push(s);
                    None
                }
            }
            Event::Segment(head) => {
                c.segments += 1;
                let problem = if counts.contains_key(&head.segment) {
                    Some(format!(
                        "segment {} appears twice in its session",
                        head.segment
                    ))
                } else {
                    match head.fork {
                        Some(f) if head.from > 0 => match counts.get(&f.segment) {
                            Some(n) if *n >= f.at => None,
                            Some(n) => Some(format!(
                                "segment {} continues {} from entry {}, which holds only {n}",
                                head.segment, f.segment, f.at
                            )),
                            None => Some(format!(
                                "segment {} continues {}, which does not come before it",
                                head.segment, f.segment
                            )),
                        },
                        Some(f) => {
                            c.unlinked.push((head.segment, f.segment, f.at));
                            None
                        }
                        None => None,
                    }
                };
                current = Some(head);
                problem
            }
            Event::Entry { json } => {
                c.entries += 1;
                RawEntry::from_json(json)
                    .err()
                    .map(|e| format!("an entry that is not valid JSON: {e}"))
            }
            Event::SegmentEnd { entries } => {
                if let Some(head) = current.take() {
                    counts.insert(head.segment, entries);
                }
                None
            }
            Event::TraceLine { .. } => {
                c.events += 1;
                None
            }
            Event::Attachment(_) => {
                c.attachments += 1;
                None
            }
            Event::Trace
            | Event::TraceEnd
            | Event::Chunk(_)
            | Event::AttachmentEnd
            | Event::SessionEnd => None,
        };
        if let Some(reason) = problem {
            return Err(refused(
                path,
                &Refusal {
                    line: 0,
                    offset: 0,
                    reason,
                },
            ));
        }
    }
    Ok(c)
}

/// The second pass: the same checks again (the file could have changed), and the writes.
struct Import<'t> {
    target: &'t Target,
    created: Vec<SessionId>,
    session: Option<SessionId>,
    segment: Option<SegmentStart>,
    /// The segment exists in the store (created or forked).
    opened: bool,
    batch: Vec<RawEntry>,
    batch_bytes: usize,
    trace: bool,
    attachment: Option<(AttachmentMeta, annals::BlobId, Vec<u8>)>,
}

impl Import<'_> {
    fn run(&mut self, path: &Path, max: usize) -> Result<(), Failure> {
        let mut reader = Reader::new(open(path)?, max);
        loop {
            check_interrupt()?;
            let event = reader.next().map_err(|r| refused(path, &r))?;
            let Some(event) = event else { return Ok(()) };
            match event {
                Event::Session(s) => {
                    self.session = Some(s);
                    self.created.push(s);
                }
                Event::Segment(head) => {
                    self.segment = Some(head);
                    self.opened = false;
                    self.trace = false;
                }
                Event::Entry { json } | Event::TraceLine { json } => {
                    let entry = RawEntry::from_json(json).map_err(|e| self.target.err(e))?;
                    self.batch_bytes += entry.len();
                    self.batch.push(entry);
                    if self.batch.len() >= BATCH || self.batch_bytes >= BATCH_BYTES {
                        self.flush()?;
                    }
                }
                Event::SegmentEnd { .. } => {
                    self.flush()?;
                    if !self.opened {
                        self.open_segment(&[])?;
                    }
                }
                Event::Trace => self.trace = true,
                Event::TraceEnd => {
                    self.flush()?;
                    self.trace = false;
                }
                Event::Attachment(start) => {
                    let bytes = Vec::with_capacity(usize::try_from(start.len).unwrap_or(0));
                    self.attachment = Some((start.meta, start.id, bytes));
                }
                Event::Chunk(bytes) => {
                    if let Some((_, _, all)) = &mut self.attachment {
                        all.extend_from_slice(&bytes);
                    }
                }
                Event::AttachmentEnd => {
                    if let (Some((meta, id, bytes)), Some(session)) =
                        (self.attachment.take(), self.session)
                    {
                        let put = self
                            .target
                            .store()
                            .put_attachment(session, &bytes, &meta)
                            .map_err(|e| self.target.err(e))?;
                        if put.id != id {
                            return Err(Failure::new(
                                CANNOT_RUN,
                                format!("the store kept attachment {id} as {}", put.id),
                                self.target.describe(),
                                "this is a bug, please report it",
                            ));
                        }
                    }
                }
                Event::SessionEnd => {
                    self.session = None;
                }
            }
        }
    }

    /// Creates (or forks) the current segment with its first entries.
    fn open_segment(&mut self, first: &[RawEntry]) -> Result<(), Failure> {
        let (Some(session), Some(head)) = (self.session, &self.segment) else {
            return Ok(());
        };
        let store = self.target.store();
        match head.fork {
            Some(f) if head.from > 0 => {
                store
                    .fork(session, f.segment, f.at, head.segment)
                    .map_err(|e| self.target.err(e))?;
                if !first.is_empty() {
                    store
                        .append_batch_raw(session, head.segment, first)
                        .map_err(|e| self.target.err(e))?;
                }
            }
            _ => {
                store
                    .create_segment(session, head.segment, first)
                    .map_err(|e| self.target.err(e))?;
            }
        }
        self.opened = true;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Failure> {
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        let (Some(session), Some(head)) = (self.session, &self.segment) else {
            return Ok(());
        };
        let segment = head.segment;
        if self.trace {
            if !batch.is_empty() {
                self.target
                    .store()
                    .append_trace_raw(session, segment, &batch)
                    .map_err(|e| self.target.err(e))?;
            }
            return Ok(());
        }
        if !self.opened {
            return self.open_segment(&batch);
        }
        if !batch.is_empty() {
            self.target
                .store()
                .append_batch_raw(session, segment, &batch)
                .map_err(|e| self.target.err(e))?;
        }
        Ok(())
    }
}
