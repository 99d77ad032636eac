//! `annals export`: sessions into one self-contained file (segments with their lineage,
//! traces, entries kept as blobs re-inflated, attachments), for a bug report or another store.
//! The format is in docs/EXPORT.md. Reads only; streamed, one entry or attachment in memory.

use std::collections::{HashMap, HashSet};
use std::fs::{self, OpenOptions};
use std::io::{self, BufWriter, IsTerminal, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use annals::{Body, ReplayOptions, SegmentId, SessionId};
use annals_cli::lineage::Tree;
use annals_cli::search::time;
use clap::Args;
use sha2::{Digest, Sha256};

use crate::export_file::{self, AttachmentStart, Fork, Header, SegmentEnd, SegmentStart};
use crate::fail::{check_interrupt, stdout_error, Cause, Failure, Outcome, CANNOT_RUN, OK};
use crate::ids::Named;
use crate::target::{Location, Target};
use crate::term::human_bytes;

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The sessions to export (ids, unique ends or starts of ids, or segments of them)
    #[arg(required = true)]
    pub sessions: Vec<String>,

    /// Write to FILE (refused if it exists, unless --force) [default: stdout, unless it is a
    /// terminal]
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Overwrite FILE if it exists
    #[arg(long)]
    pub force: bool,
}

/// What was written, for the summary.
#[derive(Default)]
struct Counts {
    sessions: u64,
    segments: u64,
    entries: u64,
    events: u64,
    attachments: u64,
}

pub fn run(location: &Location, args: &ExportArgs) -> Outcome {
    let target = Target::existing(location)?;
    let mut sessions = Vec::new();
    for arg in &args.sessions {
        let s = match target.named(arg)? {
            Named::Session(s) | Named::Segment(s, _) => s,
        };
        if !sessions.contains(&s) {
            sessions.push(s);
        }
    }
    match &args.output {
        None => {
            if io::stdout().is_terminal() {
                return Err(Failure::usage(
                    "refusing to write an export file to a terminal",
                    "pass -o FILE, or redirect the output",
                ));
            }
            let out = io::stdout().lock();
            let (counts, out) = export(&target, &sessions, BufWriter::new(out))
                .map_err(|e| e.into_failure(None))?;
            drop(out);
            summary(&counts, None);
        }
        Some(path) => {
            let file = create(path, args.force)?;
            match export(&target, &sessions, BufWriter::new(file)) {
                Ok((counts, out)) => {
                    let file = out
                        .into_inner()
                        .map_err(|e| write_failure(e.error(), path))?;
                    file.sync_all().map_err(|e| write_failure(&e, path))?;
                    summary(&counts, Some(path));
                }
                Err(e) => {
                    // A partial file has no closing line, so import would refuse it anyway;
                    // remove it so that nobody mails it.
                    let _ = fs::remove_file(path);
                    return Err(e.into_failure(Some(path)));
                }
            }
        }
    }
    Ok(OK)
}

fn summary(c: &Counts, path: Option<&Path>) {
    let size = path
        .and_then(|p| fs::metadata(p).ok())
        .map(|m| format!(" ({})", human_bytes(m.len())))
        .unwrap_or_default();
    let to = path.map_or_else(|| "stdout".to_owned(), |p| p.display().to_string());
    say!(
        "exported {} session{}: {} segments, {} entries, {} trace events, {} attachments to \
         {to}{size}",
        c.sessions,
        if c.sessions == 1 { "" } else { "s" },
        c.segments,
        c.entries,
        c.events,
        c.attachments
    );
}

fn create(path: &Path, force: bool) -> Result<fs::File, Failure> {
    let mut options = OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    options.open(path).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            Failure::new(
                CANNOT_RUN,
                "the output file exists",
                path.display(),
                "pass --force to overwrite it, or another -o FILE",
            )
        } else {
            write_failure(&e, path)
        }
    })
}

fn write_failure(e: &io::Error, path: &Path) -> Failure {
    let cause = Cause::of(e, Some(path));
    Failure::new(
        CANNOT_RUN,
        format!("could not write the export file ({})", cause.what),
        path.display(),
        cause.todo.unwrap_or(""),
    )
}

/// Why an export stopped.
enum Stop {
    Store(Failure),
    Write(io::Error),
    Interrupted,
}

impl Stop {
    fn into_failure(self, path: Option<&Path>) -> Failure {
        match self {
            Self::Store(f) => f,
            Self::Interrupted => Failure::Interrupted,
            Self::Write(e) => match path {
                Some(p) => write_failure(&e, p),
                None => stdout_error(&e),
            },
        }
    }
}

impl From<io::Error> for Stop {
    fn from(e: io::Error) -> Self {
        Self::Write(e)
    }
}

fn export<W: Write>(target: &Target, sessions: &[SessionId], out: W) -> Result<(Counts, W), Stop> {
    let mut w = export_file::Writer::new(out);
    w.record(
        "annals-export",
        &Header {
            version: export_file::VERSION,
            tool: format!("annals {}", env!("CARGO_PKG_VERSION")),
            created_ms: time::now_ms(),
        },
    )?;
    let mut counts = Counts::default();
    for &session in sessions {
        export_session(target, session, &mut w, &mut counts)?;
        counts.sessions += 1;
    }
    Ok((counts, w.finish()?))
}

fn store_failure(target: &Target, e: annals::Error) -> Stop {
    match e {
        annals::Error::Sink(_) => Stop::Interrupted,
        e if e.is_corruption() => Stop::Store(Failure::new(
            crate::fail::PROBLEMS,
            format!("cannot export a damaged session ({e})"),
            target.describe(),
            "`annals verify` shows the damage and `annals repair` cuts it; to report the damage \
             itself, attach the segment file as it is",
        )),
        e => Stop::Store(target.err(e)),
    }
}

fn export_session<W: Write>(
    target: &Target,
    session: SessionId,
    w: &mut export_file::Writer<W>,
    counts: &mut Counts,
) -> Result<(), Stop> {
    let store = target.store();
    let list = store
        .list_segments(session)
        .map_err(|e| store_failure(target, e))?;
    if let Some(bad) = list.iter().find(|i| i.damage.is_some()) {
        return Err(Stop::Store(Failure::new(
            crate::fail::PROBLEMS,
            format!(
                "cannot export a damaged session (segment {}: {})",
                bad.segment,
                bad.damage
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default()
            ),
            target.describe(),
            "`annals verify` shows the damage and `annals repair` cuts it; to report the damage \
             itself, attach the segment file as it is",
        )));
    }
    w.record("session", &export_file::SessionStart { session })?;
    let tree = Tree::new(list);
    // Where each parent is forked from, to compare its first entries with the fork's.
    let mut points: HashMap<SegmentId, HashSet<u64>> = HashMap::new();
    for node in &tree.nodes {
        if let (Some(f), Some(_)) = (node.info.fork, node.parent) {
            points.entry(f.segment).or_default().insert(f.at);
        }
    }
    let mut parent_prefixes: HashMap<SegmentId, HashMap<u64, [u8; 32]>> = HashMap::new();
    for (parent, at) in &points {
        let hashes = prefix_hashes(target, session, *parent, at)?;
        parent_prefixes.insert(*parent, hashes);
    }
    let mut segments = 0;
    for node in &tree.nodes {
        let info = &node.info;
        let mut from = 0;
        if let (Some(f), Some(_)) = (info.fork, node.parent) {
            let mine = prefix_hashes(target, session, info.segment, &HashSet::from([f.at]))?;
            let theirs = parent_prefixes.get(&f.segment).and_then(|h| h.get(&f.at));
            if theirs.is_some() && mine.get(&f.at) == theirs {
                from = f.at;
            }
        }
        w.record(
            "segment",
            &SegmentStart {
                segment: info.segment,
                created_ms: info.created_ms,
                generation: info.tip.generation,
                fork: info.fork.map(|f| Fork {
                    segment: f.segment,
                    at: f.at,
                }),
                from,
            },
        )?;
        let count = info.tip.count;
        let mut next = from;
        let mut write_error = None;
        let mut stopped = false;
        store
            .replay_raw(
                session,
                info.segment,
                &ReplayOptions::strict().from_seq(from),
                &mut |entry| {
                    // What the listing saw: a snapshot consistent with the lineage above.
                    if entry.seq >= count {
                        return Ok(ControlFlow::Break(()));
                    }
                    if entry.seq % 1024 == 0 && crate::term::interrupted() {
                        stopped = true;
                        return Ok(ControlFlow::Break(()));
                    }
                    let json = entry.json().unwrap_or("null");
                    if let Err(e) = w.entry("e", entry.seq, entry.appended_ms, json) {
                        write_error = Some(e);
                        return Ok(ControlFlow::Break(()));
                    }
                    next = entry.seq + 1;
                    Ok(ControlFlow::Continue(()))
                },
            )
            .map_err(|e| store_failure(target, e))?;
        if let Some(e) = write_error {
            return Err(Stop::Write(e));
        }
        if stopped {
            return Err(Stop::Interrupted);
        }
        counts.entries += next - from;
        w.record(
            "segment-end",
            &SegmentEnd {
                segment: info.segment,
                entries: next,
            },
        )?;
        export_trace(target, session, info.segment, w, counts)?;
        segments += 1;
        counts.segments += 1;
    }
    let attachments = store
        .list_attachments(session)
        .map_err(|e| store_failure(target, e))?;
    for a in &attachments {
        check_interrupt().map_err(|_| Stop::Interrupted)?;
        let bytes = store
            .get_blob(session, &a.id)
            .map_err(|e| store_failure(target, e))?;
        let start = AttachmentStart {
            id: a.id,
            len: bytes.len() as u64,
            meta: a.meta.clone(),
            created_ms: a.created_ms,
            chunks: (bytes.len() as u64).div_ceil(export_file::CHUNK as u64),
        };
        w.attachment(&start, &bytes)?;
        counts.attachments += 1;
    }
    w.record(
        "session-end",
        &export_file::SessionEnd {
            session,
            segments,
            attachments: attachments.len() as u64,
        },
    )?;
    Ok(())
}

fn export_trace<W: Write>(
    target: &Target,
    session: SessionId,
    segment: SegmentId,
    w: &mut export_file::Writer<W>,
    counts: &mut Counts,
) -> Result<(), Stop> {
    let mut events = 0u64;
    let mut write_error = None;
    target
        .store()
        .replay_trace_raw(session, segment, &ReplayOptions::strict(), &mut |event| {
            let written = (|| {
                if event.seq == 0 {
                    w.record("trace", &export_file::TraceStart { segment })?;
                }
                w.entry(
                    "te",
                    event.seq,
                    event.appended_ms,
                    event.json().unwrap_or("null"),
                )
            })();
            if let Err(e) = written {
                write_error = Some(e);
                return Ok(ControlFlow::Break(()));
            }
            events += 1;
            Ok(ControlFlow::Continue(()))
        })
        .map_err(|e| store_failure(target, e))?;
    if let Some(e) = write_error {
        return Err(Stop::Write(e));
    }
    if events > 0 {
        w.record("trace-end", &export_file::TraceEnd { segment, events })?;
        counts.events += events;
    }
    Ok(())
}

/// SHA-256 of a segment's first `n` entries for each `n` in `points` (an entry kept as a blob
/// counts by its reference, which names its content: no blob is read).
fn prefix_hashes(
    target: &Target,
    session: SessionId,
    segment: SegmentId,
    points: &HashSet<u64>,
) -> Result<HashMap<u64, [u8; 32]>, Stop> {
    let last = points.iter().copied().max().unwrap_or(0);
    let mut hash = Sha256::new();
    let mut out = HashMap::new();
    if points.contains(&0) {
        out.insert(0, hash.clone().finalize().into());
    }
    target
        .store()
        .replay_raw(
            session,
            segment,
            &ReplayOptions::strict().blob_refs(),
            &mut |entry| {
                if entry.seq >= last {
                    return Ok(ControlFlow::Break(()));
                }
                match entry.body {
                    Body::Inline(json) => {
                        hash.update([0u8]);
                        hash.update((json.len() as u64).to_le_bytes());
                        hash.update(json.as_bytes());
                    }
                    Body::Blob { reference, .. } => {
                        hash.update([1u8]);
                        hash.update(reference.len.to_le_bytes());
                        hash.update(reference.sha256.as_bytes());
                    }
                }
                if points.contains(&(entry.seq + 1)) {
                    out.insert(entry.seq + 1, hash.clone().finalize().into());
                }
                Ok(ControlFlow::Continue(()))
            },
        )
        .map_err(|e| store_failure(target, e))?;
    Ok(out)
}
