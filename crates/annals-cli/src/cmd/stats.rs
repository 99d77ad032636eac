//! `annals stats`: totals over the store (or one session) from the tips, plus the largest and
//! the damaged segments. Memory stays bounded: only the top N are kept. The counts are the
//! ones `annals verify` reports after reading every line: segments and their entries, traces
//! apart, blobs included.

use annals::{SegmentId, SessionId};
use clap::Args;
use serde_json::json;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, BufWriter, Write};

use super::warn;
use crate::fail::{check_interrupt, Outcome, CANNOT_RUN, OK, PROBLEMS};
use crate::ids::short;
use crate::target::{Location, Target};
use crate::term::{human_bytes, Progress, Style};

/// Damaged segments listed by name; beyond that they are only counted.
const MAX_DAMAGED_LISTED: usize = 100;

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Only this session (an id, or a unique end or start of one)
    pub session: Option<String>,

    /// How many of the largest segments to show
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub top: usize,

    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Default)]
struct Files {
    count: u64,
    bytes: u64,
}

pub fn run(location: &Location, args: &StatsArgs) -> Outcome {
    let target = Target::existing(location)?;
    let sessions = match &args.session {
        Some(s) => vec![target.session(s)?],
        None => target.store().list_sessions().map_err(|e| target.err(e))?,
    };
    let (mut traces, mut blobs, mut attachments) =
        (Files::default(), Files::default(), Files::default());
    let mut code = OK;
    let (mut n_sessions, mut segments, mut entries, mut bytes, mut forks) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut largest: BinaryHeap<Reverse<(u64, u64, SessionId, SegmentId)>> = BinaryHeap::new();
    let mut damaged: Vec<(SessionId, SegmentId, String)> = Vec::new();
    let mut damaged_count = 0u64;
    let mut progress = Progress::new();
    let total = sessions.len();
    for (i, session) in sessions.into_iter().enumerate() {
        check_interrupt()?;
        progress.update(|| format!("reading session {}/{total}", i + 1));
        let list = match target.store().list_segments(session) {
            Ok(list) => list,
            Err(annals::Error::SessionNotFound(_)) if args.session.is_none() => continue,
            Err(e) => {
                progress.clear();
                warn(&target.err(e));
                code = CANNOT_RUN;
                continue;
            }
        };
        n_sessions += 1;
        if let Some(b) = target.blob_usage(session) {
            blobs.count += b.count;
            blobs.bytes += b.bytes;
        }
        if let Ok(list) = target.store().list_attachments(session) {
            attachments.count += list.len() as u64;
            attachments.bytes += list.iter().map(|a| a.len).sum::<u64>();
        }
        for info in list {
            if let Some(len) = target.trace_bytes(session, info.segment) {
                traces.count += 1;
                traces.bytes += len;
            }
            segments += 1;
            entries += info.tip.count;
            bytes += info.bytes;
            forks += u64::from(info.fork.is_some());
            if let Some(d) = info.damage.map(|d| d.to_string()) {
                damaged_count += 1;
                if damaged.len() < MAX_DAMAGED_LISTED {
                    damaged.push((session, info.segment, d));
                }
            }
            largest.push(Reverse((info.bytes, info.tip.count, session, info.segment)));
            if largest.len() > args.top {
                largest.pop();
            }
        }
    }
    progress.clear();
    let mut top: Vec<_> = largest.into_iter().map(|Reverse(t)| t).collect();
    top.sort_unstable_by(|a, b| b.cmp(a));
    let mut out = BufWriter::new(io::stdout().lock());
    if args.json {
        let doc = json!({
            "root": target.location().root,
            "sessions": n_sessions,
            "segments": segments,
            "forked_segments": forks,
            "entries": entries,
            "segment_bytes": bytes,
            "traces": traces.count,
            "trace_bytes": traces.bytes,
            "blobs": blobs.count,
            "blob_bytes": blobs.bytes,
            "attachments": attachments.count,
            "attachment_bytes": attachments.bytes,
            "bytes": bytes + traces.bytes + blobs.bytes,
            "largest": top.iter().map(|(b, n, s, g)| json!({
                "session": s.to_string(), "segment": g.to_string(), "bytes": b, "entries": n,
            })).collect::<Vec<_>>(),
            "damaged_count": damaged_count,
            "damaged": damaged.iter().map(|(s, g, d)| json!({
                "session": s.to_string(), "segment": g.to_string(), "damage": d,
            })).collect::<Vec<_>>(),
        });
        serde_json::to_writer_pretty(&mut out, &doc).map_err(io::Error::from)?;
        writeln!(out)?;
        out.flush()?;
        if code == OK && damaged_count > 0 {
            code = PROBLEMS;
        }
        return Ok(code);
    }
    let style = Style::stdout();
    writeln!(
        out,
        "{}",
        style.bold(&format!("store {}", target.location().root.display()))
    )?;
    writeln!(out, "  sessions     {n_sessions}")?;
    writeln!(
        out,
        "  segments     {segments} ({forks} forked): {entries} entries, {}",
        human_bytes(bytes)
    )?;
    writeln!(
        out,
        "  traces       {}: {}",
        traces.count,
        human_bytes(traces.bytes)
    )?;
    writeln!(
        out,
        "  blobs        {}: {} (entries too long for a line, and attachments)",
        blobs.count,
        human_bytes(blobs.bytes)
    )?;
    writeln!(
        out,
        "  attachments  {}: {}",
        attachments.count,
        human_bytes(attachments.bytes)
    )?;
    let total = bytes + traces.bytes + blobs.bytes;
    writeln!(out, "  on disk      {total} bytes ({})", human_bytes(total))?;
    if !top.is_empty() {
        writeln!(out, "{}", style.bold("largest segments"))?;
        for (b, n, s, g) in &top {
            writeln!(
                out,
                "  {}  {:>10}  {n:>10} entries  session {}",
                short(g),
                human_bytes(*b),
                short(s)
            )?;
        }
    }
    if damaged_count == 0 {
        writeln!(
            out,
            "damaged segments: none seen (headers and last lines only; `annals verify` checks every line)"
        )?;
    } else {
        writeln!(
            out,
            "{}",
            style.red(&format!(
                "damaged segments: {damaged_count} (run `annals verify` for details)"
            ))
        )?;
        for (s, g, d) in &damaged {
            writeln!(out, "  {}  session {}: {d}", short(g), short(s))?;
        }
        if damaged_count > damaged.len() as u64 {
            writeln!(
                out,
                "  ... and {} more",
                damaged_count - damaged.len() as u64
            )?;
        }
    }
    out.flush()?;
    if code == OK && damaged_count > 0 {
        code = PROBLEMS;
    }
    Ok(code)
}
