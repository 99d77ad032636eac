//! `annals gc`: remove blobs that no entry and no attachment refers to any more.

use std::io::{self, Write};

use clap::Args;

use crate::fail::{check_interrupt, Outcome, OK};
use crate::target::{Location, Target};
use crate::term;

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Only this session (an id, or a unique end or start of one); all sessions if not given
    pub session: Option<String>,

    /// Report what would be removed, and remove nothing
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(location: &Location, args: &GcArgs) -> Outcome {
    let target = Target::existing(location)?;
    let sessions = match &args.session {
        Some(arg) => vec![target.session(arg)?],
        None => target.store().list_sessions().map_err(|e| target.err(e))?,
    };
    let mut out = io::stdout().lock();
    let (mut orphans, mut bytes, mut kept) = (0usize, 0u64, 0u64);
    for session in sessions {
        check_interrupt()?;
        let report = target
            .store()
            .gc_blobs(session, args.dry_run)
            .map_err(|e| target.err(e))?;
        if !report.orphans.is_empty() {
            writeln!(
                out,
                "{session}: {} unreferenced blob(s), {} {}",
                report.orphans.len(),
                term::human_bytes(report.orphan_bytes),
                if args.dry_run {
                    "would be removed"
                } else {
                    "removed"
                }
            )?;
        }
        orphans += report.orphans.len();
        bytes += report.orphan_bytes;
        kept += report.kept;
    }
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    writeln!(
        out,
        "gc {verb} {orphans} blob(s), {}; {kept} still referenced",
        term::human_bytes(bytes)
    )?;
    Ok(OK)
}
