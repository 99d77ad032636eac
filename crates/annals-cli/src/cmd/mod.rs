//! The commands, one module each, and what several share: the filter flags, and keeping a
//! replay's write errors apart from the store's.

pub mod append;
pub mod attachments;
pub mod cat;
pub mod completions;
pub mod copy;
pub mod demo;
pub mod export;
pub mod follow;
pub mod gc;
pub mod grep;
pub mod import;
pub mod ls;
pub mod repair;
pub mod stats;
pub mod tree;
pub mod verify;

use std::io;

use annals_cli::search::{time, Filter, FilterSpec};
use clap::Args;

use crate::fail::Failure;
use crate::term::Style;

/// `--where`, `--since`, `--until`, `--from`, `--to`: shared by `cat`, `follow` and `grep`.
#[derive(Debug, Args, Default)]
pub struct FilterArgs {
    /// Only entries whose FIELD (a dotted path into the entry, such as usage.input_tokens or
    /// args.0) equals VALUE; FIELD!=VALUE for those where it does not. VALUE matches a string
    /// field's text, or any field as JSON (5, true, null). Repeat to require several
    #[arg(long = "where", value_name = "FIELD=VALUE")]
    pub fields: Vec<String>,

    /// Only entries appended at or after TIME: an age (30s, 10m, 2h, 1d, 1h30m), a UTC date
    /// and time (2026-12-01, 2026-12-01T10:00, with Z or +01:00 for another zone) or
    /// @SECONDS. Entries of format-v1 files have no append time and are left out (the count
    /// is shown)
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,

    /// Only entries appended at or before TIME (same forms as --since)
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,

    /// Start at this sequence number (inclusive)
    #[arg(long, value_name = "N")]
    pub from: Option<u64>,

    /// Stop after this sequence number (inclusive)
    #[arg(long, value_name = "N")]
    pub to: Option<u64>,
}

impl FilterArgs {
    /// The filter, or a usage error (`--from 5 --to 2` is one, not an empty result).
    pub fn compile(&self) -> Result<Filter, Failure> {
        let spec = FilterSpec {
            fields: &self.fields,
            since: self.since.as_deref(),
            until: self.until.as_deref(),
            from: self.from,
            to: self.to,
        };
        Filter::parse(&spec, time::now_ms()).map_err(|e| Failure::usage(e, "see `--help`"))
    }
}

/// Says on stderr how many entries a time filter left out for having no append time.
pub fn note_untimed(untimed: u64) {
    if untimed > 0 {
        let style = Style::stderr();
        say!(
            "{}: note: {untimed} entr{} without an append time (in files of on-disk format \
             version 1) left out by --since/--until",
            style.bold("annals"),
            if untimed == 1 { "y" } else { "ies" }
        );
    }
}

/// Runs a replay whose sink writes to stdout, keeping the write error apart from the store's
/// errors (a closed pipe is a normal end).
pub struct SinkError {
    pub io: Option<io::Error>,
}

impl SinkError {
    pub fn new() -> Self {
        Self { io: None }
    }

    /// Records a write error and asks the replay to stop there.
    pub fn stop(&mut self, e: io::Error) -> std::ops::ControlFlow<()> {
        self.io = Some(e);
        std::ops::ControlFlow::Break(())
    }
}

/// A non-fatal failure: printed, and the command goes on.
pub fn warn(failure: &Failure) {
    if let Some(message) = failure.message() {
        let style = Style::stderr();
        say!("{}: {message}", style.bold("annals"));
    }
}
