//! The command line: every command, option and help text, in one clap definition (also the
//! source of the shell completions and man pages).

use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};

use crate::cmd;
use crate::term::ColorChoice;

const AFTER_HELP: &str = "\
Store: --store STORE or $ANNALS_STORE (a directory, file://PATH, or postgresql://… with an
optional ?schema=NAME), else --root DIR, else $ANNALS_ROOT, else ./annals-store. Commands other
than `copy` work on filesystem stores for now. Read-only commands never create a root, and
refuse a directory that holds no store.

Ids: a session or segment is named by its full UUID, or any unique end of it (tables show the
last 12 digits) or start (at least 4 hex digits; UUID v7 ids made the same day share their
start, so ends are better), or on a filesystem store by a path: ROOT/SESSION for a session,
ROOT/SESSION/SEGMENT.jsonl for a segment (as `annals verify` prints it). A path names a file of
the store at --root: a path outside the root is refused (exit 2), whatever it holds; to look at
another store, pass its root.

Exit codes:
  0    success; nothing wrong found (a torn tail is not a problem); grep: something matched
  1    problems found (damage), or the session or segment does not exist; grep: no match
  2    bad usage or input, or the command could not run (no store, I/O error)
  130  stopped by Ctrl-C (follow: 0)

Colours: --color auto (the default) uses them on a terminal unless NO_COLOR is set; always and
never override both.

Shell completions: `annals completions bash` (zsh, fish, elvish, powershell); man pages:
`annals man` (or `annals man --dir DIR` for one page per command).";

/// Inspect, search, verify and repair annals stores: append-only JSONL logs of agent sessions.
#[derive(Debug, Parser)]
#[command(name = "annals", version, after_help = AFTER_HELP, max_term_width = 100)]
pub struct Cli {
    /// Store root directory [default: $ANNALS_ROOT if set and not empty, else ./annals-store]
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// Store location: a directory, file://PATH or postgresql://… [default: $ANNALS_STORE,
    /// else the root]
    #[arg(long, global = true, value_name = "STORE", conflicts_with = "root")]
    pub store: Option<String>,

    /// When to use colours
    #[arg(long, global = true, value_enum, value_name = "WHEN", default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List sessions (newest first), or one session's segments as its fork tree.
    ///
    /// Without SESSION: one line per session with its segment count, entries, size and last
    /// write. With SESSION: its segments, each fork indented under the segment it forked
    /// from, with entries, GEN (the rewrite generation: +1 for every truncate or repair),
    /// size, the time of its last entry, and its lineage. Ids are shown by their last 12
    /// digits, which every command accepts. Reads only the first and last lines of each file,
    /// so it stays fast on big stores. Exit code 1 if a damaged segment was seen.
    Ls(cmd::ls::LsArgs),

    /// Print the fork tree of a session: which segment forked from which, at which entry.
    ///
    /// Each segment with its entries (and how many are its own, after its fork point), size,
    /// rewrites, creation time, and why it was forked where the runtime said so (the
    /// `reason`, else `event`, of the first event in the fork's debug trace); the newest
    /// segment is marked.
    Tree(cmd::tree::TreeArgs),

    /// Print the entries of a segment, or of a session's newest segment (--all: all of them).
    ///
    /// On a terminal entries are pretty-printed; when piped, each entry is one compact JSON
    /// object per line (so `| jq` works); --format transcript prints one readable line per
    /// entry. --where, --since/--until and --from/--to select entries. A damaged line stops
    /// the command with the damage's position (exit 1) unless --tolerant is given.
    Cat(cmd::cat::CatArgs),

    /// Print entries as they are appended, like `tail -f`; a session is followed across forks.
    ///
    /// Prints the last --tail entries, then polls for new ones. Given a session, it follows
    /// its newest segment and, when the runtime forks, says so and continues in the new
    /// segment from the fork point. After a rewrite (truncate, repair) it prints again from
    /// the first entry that changed, and says so on stderr. --wait waits for a session or
    /// segment (and the store) that does not exist yet, like `tail -F`. Stops with exit code
    /// 0 on Ctrl-C or when its output is closed.
    Follow(cmd::follow::FollowArgs),

    /// Search entries across the store (blobs re-inflated) for a regex or fixed string.
    ///
    /// Prints SESSION:SEGMENT:SEQ:ENTRY for each matching entry (ids by their last 12
    /// digits), newest session first, segments in fork-tree order. The pattern is matched
    /// against each entry's JSON text as stored; --where, --since/--until and --from/--to
    /// narrow the search. Damaged files are searched around, with a warning. Never writes.
    /// Exit code 0 if something matched, 1 if nothing did, 2 if some file could not be read.
    Grep(cmd::grep::GrepArgs),

    /// Check every line of every segment (CRC, sequence numbers, headers, blobs).
    ///
    /// Checks all sessions, one session, or one segment. Prints each problem as
    /// `path:line:offset: reason`, torn tails as notes, then a summary whose counts are the
    /// ones `annals stats` shows: segments and their entries, traces and their events apart,
    /// blobs. Exit code 0 when clean (torn tails are not problems), 1 when problems were
    /// found, 2 when some file could not be checked. Never writes. A path outside the store
    /// root is refused (exit 2), not checked.
    Verify(cmd::verify::VerifyArgs),

    /// Cut a damaged segment back to its last good line.
    ///
    /// Shows what will be dropped before doing anything. Asks for confirmation on a terminal;
    /// elsewhere requires --yes (or --dry-run). The dropped bytes are kept in a backup file
    /// next to the segment, whose path is printed. A healthy segment is never touched.
    Repair(cmd::repair::RepairArgs),

    /// Append JSON entries read from stdin, one per line, as they arrive.
    ///
    /// Each line is checked (one JSON value, UTF-8, within the store's maximum entry size:
    /// entries too long for a line are kept as blobs, as the library does) and appended as
    /// soon as it is read, together with any lines already waiting; memory stays bounded for
    /// any input. The first bad line stops the command (exit 2): every line before it is
    /// appended, none after it is read. --batch instead checks the whole input first and
    /// writes nothing if any line is bad. Blank lines are skipped. --print seqs|tip says what
    /// was written; a summary goes to stderr. A refused append creates nothing, not even the
    /// store root.
    Append(cmd::append::AppendArgs),

    /// Count sessions, segments, entries, traces, blobs and bytes; show the largest segments.
    ///
    /// The counts are the ones `annals verify` reports (segments and their entries, traces
    /// apart, blobs included), read here from the first and last lines of each file; damage
    /// is what those lines show (`annals verify` checks every line). Exit code 1 when a
    /// damaged segment was seen.
    Stats(cmd::stats::StatsArgs),

    /// Remove blobs that no entry and no attachment refers to any more.
    ///
    /// Large entries are kept as blobs next to the segments; after a truncate or a repair some
    /// are no longer referenced. Safe while other processes append: a blob is never removed
    /// between being written and the line that refers to it.
    Gc(cmd::gc::GcArgs),

    /// Write sessions into one self-contained file (segments, lineage, traces, blobs,
    /// attachments).
    ///
    /// The way to attach a session to a bug report or move it to another store: `annals
    /// import FILE` reads it back. Every line of the file carries a CRC and the last one the
    /// SHA-256 of all others (docs/EXPORT.md). Reads only; a damaged session is refused.
    Export(cmd::export::ExportArgs),

    /// Read sessions from an export file into the store, after checking all of it.
    ///
    /// Every line's CRC, the file's structure and counts, every attachment's hash and the
    /// closing SHA-256 are checked before anything is written; a damaged file, or one holding
    /// a session the store already has, is refused with the reason and nothing is written. A
    /// failure while writing removes what the import wrote. Ids and lineage are kept; append
    /// times are those of the import.
    Import(cmd::import::ImportArgs),

    /// List, get and put a session's attachments (images, files).
    Attachments(cmd::attachments::AttachmentsArgs),

    /// Write a realistic demo store with concurrent worker processes, then verify it.
    ///
    /// Several worker processes write agent sessions at the same time: user and assistant
    /// messages, tool calls and results, trace events; some sessions fork when two workers
    /// collide on one segment, others on a simulated "edit and retry". The parent then replays
    /// and verifies everything and prints the commands to look at it. Safe to run again into
    /// the same root.
    Demo(cmd::demo::DemoArgs),

    /// Copy sessions between stores (filesystem ↔ PostgreSQL), checked entry by entry.
    ///
    /// Copies segments with their lineage, traces, attachments, entries kept as blobs and
    /// rewrite generations. What the destination already holds must be a prefix of the source
    /// (checked), and the copy continues after it: after an interruption, run it again; it never
    /// duplicates. Shows progress on a terminal.
    Copy(cmd::copy::CopyArgs),

    /// Serve a read-only web viewer of the store on a local port (the URL is printed).
    ///
    /// Sessions, fork trees, transcripts with their traces and verify's findings, live updates
    /// and search, in any browser. Binds to loopback; beyond it only with --allow-remote, and
    /// then every request needs the token printed in the URL.
    Serve(crate::serve::ServeArgs),

    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    ///
    /// For example `annals completions bash > ~/.local/share/bash-completion/completions/annals`.
    Completions(cmd::completions::CompletionsArgs),

    /// Print the man page (roff), or write one page per command with --dir.
    ///
    /// For example `annals man | man -l -`, or `annals man --dir /usr/local/share/man/man1`.
    Man(cmd::completions::ManArgs),
}

/// A demo worker process: `annals __demo-worker --root DIR …`, started by `annals demo`. Not
/// part of [`Cli`], so that no completion, man page or `--help` offers it.
#[derive(Debug, Parser)]
#[command(name = "annals __demo-worker")]
pub struct DemoWorker {
    #[arg(long, value_name = "DIR")]
    pub root: PathBuf,

    #[command(flatten)]
    pub args: cmd::demo::WorkerArgs,
}

/// The first argument that starts a demo worker.
pub const DEMO_WORKER: &str = "__demo-worker";

/// The command-line definition, for completions and man pages.
pub fn command() -> clap::Command {
    Cli::command()
}
