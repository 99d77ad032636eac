//! `annals`: list, read, follow, verify and repair annals stores from a shell.
//!
//! Every command goes through the library's public API (`FsStore`); read-only commands never
//! write to the store, not even to remove a torn tail.

// The workspace denies lossy casts for library code; here they only turn sizes, counts and
// rates into numbers for people.
#![allow(
    clippy::cast_possible_truncation,
    reason = "display numbers, not data read back from a store"
)]

/// One line on stderr; a closed stderr is not worth failing for (unlike `eprintln!`, which
/// panics).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod cmd;
mod fail;
mod serve;
mod target;
mod term;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

const AFTER_HELP: &str = "\
Store root: --root DIR, else $ANNALS_ROOT, else ./annals-store.

Ids: a session or segment may be given as its full UUID, a unique prefix of it (at least 4
characters), or, for a segment, the path of its file (as `annals verify` prints it).

Exit codes:
  0  success; nothing wrong found (a torn tail is not a problem)
  1  problems found (damage), or the session or segment does not exist
  2  bad usage or input, or the command could not run (no store, I/O error)

Colours are used only on a terminal and never when NO_COLOR is set.";

/// Inspect, verify and repair annals stores: append-only JSONL logs of agent sessions.
#[derive(Debug, Parser)]
#[command(name = "annals", version, after_help = AFTER_HELP, max_term_width = 100)]
struct Cli {
    /// Store root directory [default: $ANNALS_ROOT if set and not empty, else ./annals-store]
    #[arg(long, global = true, value_name = "DIR")]
    root: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List sessions (newest first), or the segments of one session.
    ///
    /// Without SESSION: one line per session with its segment count, entries, size and last
    /// modification. With SESSION: its segments with entries, rewrite generation, size,
    /// modification time, lineage ("forked from X at N") and damage. Reads only the first and
    /// last lines of each file, so it stays fast on big stores.
    Ls(cmd::ls::LsArgs),

    /// Print a segment's entries in order.
    ///
    /// On a terminal entries are pretty-printed; when piped, each entry is one compact JSON
    /// object per line (so `| jq` works). A damaged line stops the command with the damage's
    /// position (exit 1) unless --tolerant is given.
    Cat(cmd::cat::CatArgs),

    /// Print a segment's entries as they are appended, like `tail -f`.
    ///
    /// Prints the last --tail entries, then polls for new ones. Survives a truncation
    /// (rewrite) of the segment: it says so on stderr and continues. Stops with exit code 0 on
    /// Ctrl-C or when its output is closed.
    Follow(cmd::follow::FollowArgs),

    /// Check every line of every segment (CRC, sequence numbers, headers).
    ///
    /// Checks all sessions, one session, or one segment. Prints each problem as
    /// `path:line:offset: reason`, torn tails as notes, then a summary. Exit code 0 when
    /// clean (torn tails are not problems), 1 when problems were found, 2 when some file could
    /// not be checked. Never writes.
    Verify(cmd::verify::VerifyArgs),

    /// Cut a damaged segment back to its last good line.
    ///
    /// Shows what will be dropped before doing anything. Asks for confirmation on a terminal;
    /// elsewhere requires --yes (or --dry-run). The dropped bytes are kept in a backup file
    /// next to the segment, whose path is printed. A healthy segment is never touched.
    Repair(cmd::repair::RepairArgs),

    /// Append JSON entries read from stdin, one per line, as one batch.
    ///
    /// Every line is checked first; if any is not valid JSON (or too large), each bad line is
    /// reported with its number and nothing is written. Blank lines are skipped.
    Append(cmd::append::AppendArgs),

    /// Count sessions, segments, entries and bytes; show the largest and damaged segments.
    ///
    /// Damage here is what the first and last lines show; `annals verify` checks every line.
    /// Exit code 1 when a damaged segment was seen.
    Stats(cmd::stats::StatsArgs),

    /// Remove blobs that no entry and no attachment refers to any more.
    ///
    /// Large entries are kept as blobs next to the segments; after a truncate or a repair some
    /// are no longer referenced. Safe while other processes append: a blob is never removed
    /// between being written and the line that refers to it.
    Gc(cmd::gc::GcArgs),

    /// Write a realistic demo store with concurrent worker processes, then verify it.
    ///
    /// Several worker processes write agent sessions at the same time: user and assistant
    /// messages, tool calls and results, trace events; some sessions fork when two workers
    /// collide on one segment, others on a simulated "edit and retry". The parent then replays
    /// and verifies everything and prints the commands to look at it. Safe to run again into
    /// the same root.
    Demo(cmd::demo::DemoArgs),

    /// Serve a read-only web viewer of the store on a local port (the URL is printed).
    ///
    /// Sessions, fork trees, transcripts with their traces and verify's findings, live updates
    /// and search, in any browser. Binds to loopback; beyond it only with --allow-remote, and
    /// then every request needs the token printed in the URL.
    Serve(serve::ServeArgs),

    /// One demo worker process (internal).
    #[command(name = "__demo-worker", hide = true)]
    DemoWorker(cmd::demo::WorkerArgs),
}

fn run(cli: Cli) -> fail::Outcome {
    // Read by hand rather than by clap so that an empty ANNALS_ROOT means "not set" instead of
    // a usage error.
    let root = cli.root.or_else(|| {
        std::env::var_os("ANNALS_ROOT")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    match cli.command {
        Command::Ls(args) => cmd::ls::run(root, &args),
        Command::Cat(args) => cmd::cat::run(root, &args),
        Command::Follow(args) => cmd::follow::run(root, &args),
        Command::Verify(args) => cmd::verify::run(root, &args),
        Command::Repair(args) => cmd::repair::run(root, &args),
        Command::Append(args) => cmd::append::run(root, &args),
        Command::Stats(args) => cmd::stats::run(root, &args),
        Command::Gc(args) => cmd::gc::run(root, &args),
        Command::Demo(args) => cmd::demo::run(root, &args),
        Command::Serve(args) => serve::run(root, &args),
        Command::DemoWorker(args) => cmd::demo::worker(root, &args),
    }
}

fn main() -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        let place = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(ToString::to_string)
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let _ = writeln!(
            std::io::stderr(),
            "annals: internal error ({what}), {place}: this is a bug, please report it"
        );
    }));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    match std::panic::catch_unwind(move || run(cli)) {
        Ok(Ok(code)) => ExitCode::from(code),
        Ok(Err(failure)) => {
            if let Some(message) = failure.message() {
                let style = term::Style::stderr();
                let _ = writeln!(std::io::stderr(), "{}: {message}", style.bold("annals"));
            }
            ExitCode::from(failure.code())
        }
        Err(_) => ExitCode::from(fail::CANNOT_RUN),
    }
}

/// Help and version go out as clap prints them; a usage error becomes one line, with clap's
/// tip (such as a "similar subcommand") kept in it.
fn usage_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return ExitCode::from(if e.use_stderr() {
            fail::CANNOT_RUN
        } else {
            fail::OK
        });
    }
    let text = e.render().to_string();
    let mut what = String::new();
    let mut tips = Vec::new();
    let mut usage = None;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(u) = line.strip_prefix("Usage: ") {
            usage = Some(u.to_owned());
        } else if line.starts_with("tip:") {
            tips.push(line.to_owned());
        } else if line.starts_with("For more information") {
        } else if what.is_empty() {
            what = line.trim_start_matches("error: ").to_owned();
        } else {
            // The details of "the following required arguments were not provided:".
            what = format!("{} {line}", what.trim_end_matches(':').to_owned() + ":");
        }
    }
    if !tips.is_empty() {
        what = format!("{what} ({})", tips.join("; "));
    }
    let place = usage.map(|u| format!(", usage: {u}")).unwrap_or_default();
    let style = term::Style::stderr();
    say!(
        "{}: {what}{place}: see `annals --help` or `annals COMMAND --help`",
        style.bold("annals")
    );
    ExitCode::from(fail::CANNOT_RUN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
