//! `annals tree`: a session's fork tree — which segment forked from which at which entry, why
//! (where the runtime said so), how many entries each holds and owns, the newest marked.

use std::io::{self, BufWriter, Write};
use std::ops::ControlFlow;

use annals::{ReplayOptions, SegmentId, SessionId};
use annals_cli::lineage::Tree;
use annals_cli::search::time;
use clap::Args;
use serde_json::{json, Value};

use crate::fail::{Outcome, OK, PROBLEMS};
use crate::ids::{short, Named};
use crate::target::{Location, Target};
use crate::term::{human_bytes, Style};

#[derive(Debug, Args)]
pub struct TreeArgs {
    /// The session (an id, a unique end or start of one, its directory, or one of its
    /// segments)
    pub session: String,

    /// Print JSON instead of a drawing
    #[arg(long)]
    pub json: bool,

    /// Show whole ids instead of their last 12 digits
    #[arg(long)]
    pub full_ids: bool,
}

pub fn run(location: &Location, args: &TreeArgs) -> Outcome {
    let target = Target::existing(location)?;
    let session = match target.named(&args.session)? {
        Named::Session(s) | Named::Segment(s, _) => s,
    };
    let list = target
        .store()
        .list_segments(session)
        .map_err(|e| target.err(e))?;
    let tree = Tree::new(list);
    let mut out = BufWriter::new(io::stdout().lock());
    let damaged = tree.nodes.iter().any(|n| n.info.damage.is_some());
    let code = if damaged { PROBLEMS } else { OK };
    if args.json {
        let rows: Vec<Value> = tree
            .nodes
            .iter()
            .map(|n| {
                let i = &n.info;
                json!({
                    "segment": i.segment.to_string(),
                    "parent": i.fork.map(|f| f.segment.to_string()),
                    "at": i.fork.map(|f| f.at),
                    "parent_missing": n.orphan,
                    "depth": n.depth,
                    "entries": i.tip.count,
                    "own_entries": i.tip.count.saturating_sub(n.own_from),
                    "generation": i.tip.generation,
                    "bytes": i.bytes,
                    "created_ms": i.created_ms,
                    "newest": n.newest,
                    "why": why(&target, session, i.segment, i.fork.is_some()),
                    "damage": i.damage.as_ref().map(ToString::to_string),
                })
            })
            .collect();
        let doc = json!({"session": session.to_string(), "segments": rows});
        serde_json::to_writer_pretty(&mut out, &doc).map_err(io::Error::from)?;
        writeln!(out)?;
        out.flush()?;
        return Ok(code);
    }
    let style = Style::stdout();
    let total: u64 = tree
        .nodes
        .iter()
        .map(|n| n.info.tip.count - n.own_from.min(n.info.tip.count))
        .sum();
    writeln!(
        out,
        "{}",
        style.bold(&format!(
            "session {session}: {} segment{}, {total} entries of their own",
            tree.nodes.len(),
            if tree.nodes.len() == 1 { "" } else { "s" }
        ))
    )?;
    let show = |g: &SegmentId| {
        if args.full_ids {
            g.to_string()
        } else {
            short(g)
        }
    };
    for (i, node) in tree.nodes.iter().enumerate() {
        crate::fail::check_interrupt()?;
        let prefix = branches(&tree, i);
        let info = &node.info;
        let mut parts = Vec::new();
        match info.fork {
            Some(f) if node.orphan => parts.push(format!(
                "forked from {} at {} (no longer in the session)",
                show(&f.segment),
                f.at
            )),
            Some(f) => parts.push(format!("forked at {}", f.at)),
            None => {}
        }
        if info.damage.is_some() {
            parts.push("entries unknown".to_owned());
        } else if node.own_from > 0 {
            parts.push(format!(
                "{} entries ({} own)",
                info.tip.count,
                info.tip.count.saturating_sub(node.own_from)
            ));
        } else {
            parts.push(format!("{} entries", info.tip.count));
        }
        parts.push(human_bytes(info.bytes));
        if info.tip.generation > 0 {
            parts.push(format!("rewritten {}×", info.tip.generation));
        }
        parts.push(format!("created {}", time::utc(info.created_ms)));
        if let Some(why) = why(&target, session, info.segment, info.fork.is_some()) {
            parts.push(format!("why: {why}"));
        }
        let mut line = format!(
            "{prefix}{}  {}",
            style.bold(&show(&info.segment)),
            parts.join(", ")
        );
        if let Some(d) = &info.damage {
            line.push_str(&format!("  {}", style.red(&format!("DAMAGED: {d}"))));
        }
        if node.newest {
            line.push_str(&format!("  {}", style.green("← newest")));
        }
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(code)
}

/// `│   ├── ` and the like for node `i`: one column per ancestor level.
fn branches(tree: &Tree, i: usize) -> String {
    let Some(node) = tree.nodes.get(i) else {
        return String::new();
    };
    if node.depth == 0 {
        return String::new();
    }
    // Walk up: for each ancestor below the root, whether it was the last of its siblings.
    let mut columns = Vec::new();
    let mut at = node.parent;
    while let Some(p) = at {
        let Some(parent) = tree.nodes.get(p) else {
            break;
        };
        if parent.depth == 0 {
            break;
        }
        columns.push(if parent.last { "    " } else { "│   " });
        at = parent.parent;
    }
    columns.reverse();
    let mut s: String = columns.concat();
    s.push_str(if node.last {
        "└── "
    } else {
        "├── "
    });
    s
}

/// Why a fork was made, where the runtime said so: the `reason` (else `event`) string of the
/// first event in the fork's debug trace. The store itself records no reason.
fn why(target: &Target, session: SessionId, segment: SegmentId, forked: bool) -> Option<String> {
    if !forked {
        return None;
    }
    let mut first: Option<String> = None;
    target
        .store()
        .replay_trace_raw(
            session,
            segment,
            &ReplayOptions::tolerant().blob_refs(),
            &mut |e| {
                first = e.json().map(str::to_owned);
                Ok(ControlFlow::Break(()))
            },
        )
        .ok()?;
    let value: Value = serde_json::from_str(&first?).ok()?;
    ["reason", "event"]
        .iter()
        .find_map(|k| value.get(*k).and_then(Value::as_str))
        .map(str::to_owned)
}
