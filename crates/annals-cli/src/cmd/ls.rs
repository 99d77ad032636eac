//! `annals ls`: sessions, or one session's segments. Tips only (first and last lines of each
//! file), streamed one session at a time.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::time::SystemTime;

use annals::{SegmentInfo, SessionId, Store};
use clap::Args;
use serde_json::json;

use crate::fail::{Failure, Outcome, CANNOT_RUN, OK, PROBLEMS};
use crate::target::Target;
use crate::term::{epoch_ms, human_bytes, utc, Style};

#[derive(Debug, Args)]
pub struct LsArgs {
    /// List this session's segments instead of all sessions (full id or unique prefix)
    pub session: Option<String>,

    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,

    /// List at most this many sessions (the newest)
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
}

pub fn run(root: Option<PathBuf>, args: &LsArgs) -> Outcome {
    let target = Target::existing(root)?;
    match &args.session {
        Some(s) => {
            let session = target.session(s)?;
            match segments(&target, session, args.json) {
                // Given a segment's id by mistake: show the session that holds it.
                Err(not_found) if not_found.code() == PROBLEMS => {
                    match s
                        .parse()
                        .ok()
                        .and_then(|g| target.store.find_session(g).ok()?)
                    {
                        Some(holder) => {
                            say!("{s} is a segment; listing its session {holder}");
                            segments(&target, holder, args.json)
                        }
                        None => Err(not_found),
                    }
                }
                other => other,
            }
        }
        None => sessions(&target, args),
    }
}

/// What `ls` shows of one session, summed over its segments.
pub struct SessionSummary {
    pub segments: u64,
    pub entries: u64,
    pub bytes: u64,
    pub modified: SystemTime,
    pub damaged: u64,
}

pub fn summarize(list: &[SegmentInfo]) -> SessionSummary {
    SessionSummary {
        segments: list.len() as u64,
        entries: list.iter().map(|i| i.tip.count).sum(),
        bytes: list.iter().map(|i| i.bytes).sum(),
        modified: list
            .iter()
            .map(|i| i.modified)
            .max()
            .unwrap_or(SystemTime::UNIX_EPOCH),
        damaged: list.iter().filter(|i| i.damage.is_some()).count() as u64,
    }
}

fn sessions(target: &Target, args: &LsArgs) -> Outcome {
    let style = Style::stdout();
    let mut out = BufWriter::new(io::stdout().lock());
    let ids = target.store.list_sessions().map_err(|e| target.err(e))?;
    let limit = args.limit.unwrap_or(usize::MAX);
    let mut code = OK;
    if args.json {
        out.write_all(b"[")?;
    } else if !ids.is_empty() {
        writeln!(
            out,
            "{}",
            style.bold(&format!(
                "{:<36}  {:>5}  {:>10}  {:>10}  {}",
                "SESSION", "SEGS", "ENTRIES", "SIZE", "MODIFIED (UTC)"
            ))
        )?;
    }
    let mut first = true;
    for session in ids.into_iter().take(limit) {
        let list = match target.store.list_segments(session) {
            Ok(list) => list,
            // Deleted while we were listing.
            Err(annals::Error::SessionNotFound(_)) => continue,
            Err(e) => {
                // One unreadable session must not hide the others; the exit code says so.
                out.flush()?;
                warn(&target.err(e));
                code = CANNOT_RUN;
                continue;
            }
        };
        let sum = summarize(&list);
        if args.json {
            let row = json!({
                "session": session.to_string(),
                "segments": sum.segments,
                "entries": sum.entries,
                "bytes": sum.bytes,
                "modified_ms": epoch_ms(sum.modified),
                "modified": utc(sum.modified),
                "damaged_segments": sum.damaged,
            });
            if !first {
                out.write_all(b",")?;
            }
            write!(out, "\n  {row}")?;
        } else {
            let damage = if sum.damaged > 0 {
                format!("  {}", style.red(&format!("{} damaged", sum.damaged)))
            } else {
                String::new()
            };
            writeln!(
                out,
                "{:<36}  {:>5}  {:>10}  {:>10}  {}{damage}",
                session.to_string(),
                sum.segments,
                sum.entries,
                human_bytes(sum.bytes),
                utc(sum.modified),
            )?;
        }
        first = false;
    }
    if args.json {
        out.write_all(if first { b"]\n" } else { b"\n]\n" })?;
    } else if first {
        out.flush()?;
        say!("no sessions in {}", target.root.display());
    }
    out.flush()?;
    Ok(code)
}

fn lineage(info: &SegmentInfo) -> Option<String> {
    info.fork
        .map(|f| format!("forked from {} at {}", f.segment, f.at))
}

fn segments(target: &Target, session: SessionId, json_out: bool) -> Outcome {
    let style = Style::stdout();
    let list = target
        .store
        .list_segments(session)
        .map_err(|e| target.err(e))?;
    let mut out = BufWriter::new(io::stdout().lock());
    if json_out {
        let rows: Vec<_> = list
            .iter()
            .map(|i| {
                json!({
                    "segment": i.segment.to_string(),
                    "entries": i.tip.count,
                    "generation": i.tip.generation,
                    "bytes": i.bytes,
                    "modified_ms": epoch_ms(i.modified),
                    "modified": utc(i.modified),
                    "created_ms": i.created_ms,
                    "fork": i.fork.map(|f| json!({"segment": f.segment.to_string(), "at": f.at})),
                    "damage": i.damage.as_ref().map(ToString::to_string),
                    "path": target.store.segment_path(session, i.segment),
                })
            })
            .collect();
        let doc = json!({"session": session.to_string(), "segments": rows});
        serde_json::to_writer_pretty(&mut out, &doc).map_err(io::Error::from)?;
        out.write_all(b"\n")?;
        out.flush()?;
        return Ok(OK);
    }
    writeln!(
        out,
        "{}",
        style.bold(&format!(
            "{:<36}  {:>10}  {:>4}  {:>10}  {:<20}  {}",
            "SEGMENT", "ENTRIES", "GEN", "SIZE", "MODIFIED (UTC)", "LINEAGE / DAMAGE"
        ))
    )?;
    for info in &list {
        let mut notes = Vec::new();
        if let Some(l) = lineage(info) {
            notes.push(l);
        }
        if let Some(d) = &info.damage {
            notes.push(style.red(&format!("DAMAGED: {d}")));
        }
        let (entries, generation) = if info.damage.is_some() {
            ("?".to_owned(), "?".to_owned())
        } else {
            (info.tip.count.to_string(), info.tip.generation.to_string())
        };
        let row = format!(
            "{:<36}  {:>10}  {:>4}  {:>10}  {:<20}  {}",
            info.segment.to_string(),
            entries,
            generation,
            human_bytes(info.bytes),
            utc(info.modified),
            notes.join("; ")
        );
        writeln!(out, "{}", row.trim_end())?;
    }
    out.flush()?;
    Ok(OK)
}

/// A non-fatal failure: printed, and the command goes on.
pub fn warn(failure: &Failure) {
    if let Some(message) = failure.message() {
        let style = Style::stderr();
        say!("{}: {message}", style.bold("annals"));
    }
}
