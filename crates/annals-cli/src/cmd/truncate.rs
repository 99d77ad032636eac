//! `annals truncate SEGMENT --keep N`: cut a segment back to its first N entries, on any
//! backend, checked against a concurrent writer; and `annals fork SEGMENT --at N`: start a new
//! segment from the first N entries of another.

use std::io::{self, Write};

use annals::SegmentId;
use clap::Args;

use super::repair::confirmed;
use crate::fail::{Failure, Outcome, CANNOT_RUN, OK, PROBLEMS};
use crate::ids::short;
use crate::target::{Location, Target};
use crate::term::Style;

#[derive(Debug, Args)]
pub struct TruncateArgs {
    /// The segment: a full id, or a unique end or start of one
    pub segment: String,

    /// Keep this many entries (sequence numbers 0..N-1), drop the rest
    #[arg(long, value_name = "N")]
    pub keep: u64,

    /// The session holding the segment (found automatically if not given)
    #[arg(long, value_name = "SESSION")]
    pub session: Option<String>,

    /// Show what would be dropped, change nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Do not ask for confirmation (required when stdin or stderr is not a terminal)
    #[arg(long, short = 'y')]
    pub yes: bool,
}

pub fn truncate(location: &Location, args: &TruncateArgs) -> Outcome {
    let target = Target::existing(location)?;
    let (session, segment) = target.segment(&args.segment, args.session.as_deref())?;
    let store = target.store();
    let tip = store.tip(session, segment).map_err(|e| target.err(e))?;
    let mut out = io::stdout().lock();
    let style = Style::stdout();
    if args.keep > tip.count {
        return Err(Failure::new(
            CANNOT_RUN,
            format!(
                "--keep {} is beyond the end: the segment has {} entries",
                args.keep, tip.count
            ),
            format!("segment {segment}"),
            "give at most its entry count (`annals ls SESSION` shows it)",
        ));
    }
    let dropped = tip.count - args.keep;
    if dropped == 0 {
        writeln!(
            out,
            "segment {}: {} entries, --keep {}: nothing to do",
            short(&segment),
            tip.count,
            args.keep
        )?;
        return Ok(OK);
    }
    writeln!(
        out,
        "{}",
        style.bold(&format!(
            "segment {segment} (session {session}), generation {}",
            tip.generation
        ))
    )?;
    writeln!(out, "  keep:  entries 0..{} ({})", args.keep, args.keep)?;
    writeln!(
        out,
        "  drop:  entries {}..{} ({})",
        args.keep,
        tip.count,
        style.red(&dropped.to_string())
    )?;
    writeln!(
        out,
        "  (rewritten atomically, generation +1; no copy of the dropped entries is kept: \
         `annals export` or `annals fork` first to keep them)"
    )?;
    if args.dry_run {
        writeln!(out, "dry run: nothing was changed")?;
        return Ok(OK);
    }
    out.flush()?;
    let go_ahead = confirmed(
        args.yes,
        &format!("drop the last {dropped} entries of this segment? [y/N] "),
        || {
            Failure::new(
                CANNOT_RUN,
                "refusing to truncate without confirmation",
                format!("segment {segment}"),
                "pass --yes to drop the entries shown above, or --dry-run to only look",
            )
        },
    )?;
    if !go_ahead {
        writeln!(out, "not confirmed: nothing was changed")?;
        return Ok(PROBLEMS);
    }
    // Only the segment shown above is cut: a writer that appended (or cut) meanwhile makes
    // this a ConcurrentWriter refusal (exit 1), nothing changed.
    let new = store
        .truncate_if(session, segment, tip, args.keep)
        .map_err(|e| target.err(e))?;
    writeln!(
        out,
        "{} kept {} entries, dropped {dropped}; generation {}",
        style.green("truncated:"),
        new.count,
        new.generation
    )?;
    Ok(OK)
}

#[derive(Debug, Args)]
pub struct ForkArgs {
    /// The segment to fork from: a full id, or a unique end or start of one
    pub segment: String,

    /// The new segment starts with this many of its entries [default: all of them]
    #[arg(long, value_name = "N")]
    pub at: Option<u64>,

    /// The new segment's id (a full UUID) [default: a new one]
    #[arg(long, value_name = "SEGMENT")]
    pub into: Option<SegmentId>,

    /// The session holding the segment (found automatically if not given)
    #[arg(long, value_name = "SESSION")]
    pub session: Option<String>,
}

pub fn fork(location: &Location, args: &ForkArgs) -> Outcome {
    let target = Target::existing(location)?;
    let (session, source) = target.segment(&args.segment, args.session.as_deref())?;
    let store = target.store();
    let at = match args.at {
        Some(at) => at,
        None => store.tip(session, source).map_err(|e| target.err(e))?.count,
    };
    // The default id is a new one (UUID v7).
    let into = args.into.unwrap_or_default();
    let tip = store
        .fork(session, source, at, into)
        .map_err(|e| target.err(e))?;
    let mut out = io::stdout().lock();
    writeln!(out, "{into}")?;
    out.flush()?;
    say!(
        "{}: forked segment {} at entry {at} into {} ({} entries; the source is unchanged)",
        Style::stderr().bold("annals"),
        short(&source),
        short(&into),
        tip.count
    );
    Ok(OK)
}
