//! `annals repair`: show the cut, confirm, cut, keep the dropped bytes in a backup.

use std::io::{self, BufRead, IsTerminal, Write};

use annals::{CorruptReason, Repair};
use clap::Args;

use crate::fail::{Failure, Outcome, CANNOT_RUN, OK, PROBLEMS};
use crate::target::{Location, Target};
use crate::term::{human_bytes, Style};

#[derive(Debug, Args)]
pub struct RepairArgs {
    /// The segment: an id, a unique end or start of one, or the path of its file inside the
    /// store root
    pub segment: String,

    /// The session holding the segment (found automatically if not given)
    #[arg(long, value_name = "SESSION")]
    pub session: Option<String>,

    /// Only show what would be dropped; change nothing
    #[arg(long, conflicts_with = "yes")]
    pub dry_run: bool,

    /// Do not ask for confirmation (required when stdin or stderr is not a terminal)
    #[arg(long, short = 'y')]
    pub yes: bool,
}

pub fn run(location: &Location, args: &RepairArgs) -> Outcome {
    let target = Target::existing(location)?;
    let (session, segment) = target.segment(&args.segment, args.session.as_deref())?;
    // Repair cuts a file: it exists only where the store has files.
    let Some(fs) = target.fs() else {
        return Err(Failure::usage(
            "repair works on a filesystem store (it cuts a segment file)",
            "",
        ));
    };
    let style = Style::stdout();
    let mut out = io::stdout().lock();
    let plan = match fs.repair(session, segment, true) {
        Ok(plan) => plan,
        Err(annals::Error::Corrupt {
            path,
            reason: CorruptReason::MissingHeader,
            ..
        }) => {
            return Err(Failure::new(
                PROBLEMS,
                "cannot repair: the header line is missing or damaged, so nothing can be kept",
                path.display(),
                "look at the file by hand; `annals verify` shows what is wrong",
            ))
        }
        Err(e) => return Err(target.err(e)),
    };
    if plan.is_noop() {
        writeln!(
            out,
            "{}: healthy ({} entries, {}), nothing to do",
            plan.path.display(),
            plan.kept_entries,
            human_bytes(plan.keep_bytes)
        )?;
        return Ok(OK);
    }
    describe(&mut out, &plan, style)?;
    if args.dry_run {
        writeln!(out, "dry run: nothing was changed")?;
        return Ok(OK);
    }
    if !args.yes {
        let interactive = io::stdin().is_terminal() && io::stderr().is_terminal();
        if !interactive {
            return Err(Failure::new(
                CANNOT_RUN,
                "refusing to repair without confirmation",
                plan.path.display(),
                "pass --yes to cut the file as shown above, or --dry-run to only look",
            ));
        }
        out.flush()?;
        if !confirm(&format!(
            "cut {} from the end of this segment? [y/N] ",
            human_bytes(plan.dropped_bytes)
        )) {
            writeln!(out, "not confirmed: nothing was changed")?;
            return Ok(PROBLEMS);
        }
    }
    let done = fs
        .repair(session, segment, false)
        .map_err(|e| target.err(e))?;
    if done.is_noop() {
        writeln!(
            out,
            "{}: healthy now (another process fixed the end meanwhile), nothing was changed",
            done.path.display()
        )?;
        return Ok(OK);
    }
    if (done.keep_bytes, done.dropped_bytes) != (plan.keep_bytes, plan.dropped_bytes) {
        writeln!(
            out,
            "{}",
            style.yellow("the segment changed since the plan above; this is what was done:")
        )?;
        describe(&mut out, &done, style)?;
    }
    writeln!(
        out,
        "{} kept {} entries ({}), dropped {}",
        style.green("repaired:"),
        done.kept_entries,
        human_bytes(done.keep_bytes),
        human_bytes(done.dropped_bytes)
    )?;
    if let Some(backup) = &done.backup {
        writeln!(out, "the dropped bytes are saved in {}", backup.display())?;
    }
    writeln!(out, "check it with: annals verify {segment}")?;
    Ok(OK)
}

fn describe(out: &mut impl Write, plan: &Repair, style: Style) -> io::Result<()> {
    writeln!(out, "{}", style.bold(&plan.path.display().to_string()))?;
    writeln!(
        out,
        "  keep:  {} entries, bytes 0..{} ({})",
        plan.kept_entries,
        plan.keep_bytes,
        human_bytes(plan.keep_bytes)
    )?;
    writeln!(
        out,
        "  drop:  {} bytes from byte {} to the end",
        style.red(&plan.dropped_bytes.to_string()),
        plan.keep_bytes
    )?;
    if let Some(p) = &plan.first_problem {
        writeln!(
            out,
            "  first problem: line {} at byte {}: {}",
            p.line, p.offset, p.reason
        )?;
        writeln!(
            out,
            "  (everything after it is dropped, good lines included; the file is rewritten \
             atomically and its generation goes up)"
        )?;
    }
    if let Some(t) = plan.torn_tail {
        writeln!(
            out,
            "  torn tail: {} bytes at byte {} (an interrupted append)",
            t.len, t.offset
        )?;
    }
    writeln!(
        out,
        "  the dropped bytes are first saved in a backup file next to the segment"
    )
}

/// Asks on stderr, reads a line from stdin.
fn confirm(question: &str) -> bool {
    let mut err = io::stderr().lock();
    let _ = write!(err, "{question}");
    let _ = err.flush();
    let mut answer = String::new();
    if io::stdin().lock().read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes")
}
