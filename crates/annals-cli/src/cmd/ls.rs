//! `annals ls`: sessions, or one session's segments as its fork tree. Tips only (first and
//! last lines of each file), streamed one session at a time; fits an 80-column terminal.

use std::io::{self, BufWriter, Write};
use std::ops::ControlFlow;
use std::time::SystemTime;

use annals::{ReplayOptions, SegmentId, SegmentInfo, SessionId};
use annals_cli::lineage::{Node, Tree};
use annals_cli::search::time;
use clap::Args;
use serde_json::json;

use super::warn;
use crate::fail::{Outcome, CANNOT_RUN, OK, PROBLEMS};
use crate::ids::short;
use crate::target::{Location, Target};
use crate::term::{epoch_ms, human_bytes, utc, Style};

#[derive(Debug, Args)]
pub struct LsArgs {
    /// List this session's segments instead of all sessions (an id, a unique end or start of
    /// one, or its directory)
    pub session: Option<String>,

    /// Print JSON instead of a table (full ids, times in ms since the epoch)
    #[arg(long)]
    pub json: bool,

    /// List at most this many sessions (the newest)
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,

    /// Show whole ids instead of their last 12 digits
    #[arg(long)]
    pub full_ids: bool,
}

pub fn run(location: &Location, args: &LsArgs) -> Outcome {
    let target = Target::existing(location)?;
    match &args.session {
        Some(s) => match target.named(s)? {
            crate::ids::Named::Session(session) => segments(&target, session, args),
            crate::ids::Named::Segment(session, _) => {
                // Given a segment's id: show the session that holds it.
                say!("{s} is a segment; listing its session {session}");
                segments(&target, session, args)
            }
        },
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

fn id(full: bool, id: &impl std::fmt::Display) -> String {
    if full {
        id.to_string()
    } else {
        short(id)
    }
}

fn sessions(target: &Target, args: &LsArgs) -> Outcome {
    let style = Style::stdout();
    let mut out = BufWriter::new(io::stdout().lock());
    let ids = target.store().list_sessions().map_err(|e| target.err(e))?;
    let limit = args.limit.unwrap_or(usize::MAX);
    let id_width = if args.full_ids { 36 } else { 12 };
    let mut code = OK;
    if args.json {
        out.write_all(b"[")?;
    } else if !ids.is_empty() {
        writeln!(
            out,
            "{}",
            style.bold(&format!(
                "{:<id_width$}  {:>4}  {:>9}  {:>10}  {}",
                "SESSION", "SEGS", "ENTRIES", "SIZE", "LAST WRITE (UTC)"
            ))
        )?;
    }
    let mut first = true;
    for session in ids.into_iter().take(limit) {
        crate::fail::check_interrupt()?;
        let list = match target.store().list_segments(session) {
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
        if sum.damaged > 0 {
            code = code.max(PROBLEMS);
        }
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
                "{:<id_width$}  {:>4}  {:>9}  {:>10}  {}{damage}",
                id(args.full_ids, &session),
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
        say!("no sessions in {}", target.location().root.display());
    } else {
        writeln!(
            out,
            "{}",
            style.dim(if args.full_ids {
                "`annals ls SESSION` lists a session's segments"
            } else {
                "ids are their last 12 digits (every command takes them; --full-ids: whole)"
            })
        )?;
    }
    out.flush()?;
    Ok(code)
}

/// When the segment's last entry was appended, where the store recorded it.
fn last_appended(target: &Target, session: SessionId, info: &SegmentInfo) -> Option<u64> {
    if info.damage.is_some() || info.tip.count == 0 {
        return None;
    }
    let mut last = None;
    let options = ReplayOptions::tolerant()
        .from_seq(info.tip.count - 1)
        .blob_refs();
    target
        .store()
        .replay_raw(session, info.segment, &options, &mut |entry| {
            last = entry.appended_ms;
            Ok(ControlFlow::Continue(()))
        })
        .ok()?;
    last
}

fn lineage(node: &Node, full: bool) -> String {
    let mut notes = Vec::new();
    match node.info.fork {
        Some(f) if node.orphan => notes.push(format!(
            "forked from {} at {} (gone)",
            id(full, &f.segment),
            f.at
        )),
        Some(f) => notes.push(format!("forked at {}", f.at)),
        None => {}
    }
    if node.newest {
        notes.push("newest".to_owned());
    }
    notes.join(", ")
}

fn segments(target: &Target, session: SessionId, args: &LsArgs) -> Outcome {
    let style = Style::stdout();
    let list = target
        .store()
        .list_segments(session)
        .map_err(|e| target.err(e))?;
    let tree = Tree::new(list);
    let mut out = BufWriter::new(io::stdout().lock());
    let path = |g: SegmentId| target.fs().map(|fs| fs.segment_path(session, g));
    if args.json {
        let rows: Vec<_> = tree
            .nodes
            .iter()
            .map(|n| {
                let i = &n.info;
                json!({
                    "segment": i.segment.to_string(),
                    "entries": i.tip.count,
                    "generation": i.tip.generation,
                    "bytes": i.bytes,
                    "modified_ms": epoch_ms(i.modified),
                    "modified": utc(i.modified),
                    "last_appended_ms": last_appended(target, session, i),
                    "created_ms": i.created_ms,
                    "fork": i.fork.map(|f| json!({"segment": f.segment.to_string(), "at": f.at})),
                    "depth": n.depth,
                    "newest": n.newest,
                    "damage": i.damage.as_ref().map(ToString::to_string),
                    "path": path(i.segment),
                })
            })
            .collect();
        let doc = json!({"session": session.to_string(), "segments": rows});
        serde_json::to_writer_pretty(&mut out, &doc).map_err(io::Error::from)?;
        out.write_all(b"\n")?;
        out.flush()?;
        return Ok(OK);
    }
    let id_width = if args.full_ids { 36 } else { 12 };
    writeln!(
        out,
        "{}",
        style.bold(&format!(
            "{:<w$}  {:>7}  {:>3}  {:>9}  {:<17}  {}",
            "SEGMENT",
            "ENTRIES",
            "GEN",
            "SIZE",
            "LAST WRITE (UTC)",
            "LINEAGE",
            w = id_width + 2
        ))
    )?;
    let mut damaged = 0;
    for node in &tree.nodes {
        crate::fail::check_interrupt()?;
        let info = &node.info;
        let indent = "  ".repeat(node.depth.min(4));
        let name = format!("{indent}{}", id(args.full_ids, &info.segment));
        let (entries, generation) = if info.damage.is_some() {
            ("?".to_owned(), "?".to_owned())
        } else {
            (info.tip.count.to_string(), info.tip.generation.to_string())
        };
        let when = last_appended(target, session, info).unwrap_or_else(|| epoch_ms(info.modified));
        let when = time::utc(when);
        let when = format!("{}Z", when.get(..16).unwrap_or(&when));
        let mut notes = lineage(node, args.full_ids);
        if let Some(d) = &info.damage {
            damaged += 1;
            let d = style.red(&format!("DAMAGED: {d}"));
            notes = if notes.is_empty() {
                d
            } else {
                format!("{notes}; {d}")
            };
        }
        let row = format!(
            "{name:<w$}  {entries:>7}  {generation:>3}  {:>9}  {when:<17}  {notes}",
            human_bytes(info.bytes),
            w = id_width + 2
        );
        writeln!(out, "{}", row.trim_end())?;
    }
    writeln!(
        out,
        "{}",
        style.dim(
            "forks are indented under the segment they forked from\nGEN: rewrite generation, +1 \
             per truncate or repair"
        )
    )?;
    out.flush()?;
    Ok(if damaged > 0 { PROBLEMS } else { OK })
}
