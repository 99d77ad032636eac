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
pub mod truncate;
pub mod verify;

use std::io;

use annals::{BlobCompression, Durability, FsOptions};
use annals_cli::search::{time, Filter, FilterSpec};
use clap::Args;

use crate::fail::Failure;
use crate::target::Location;
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

/// `--durable`, `--compress`: how the commands that write entries (`append`, `import`, `copy`)
/// store them.
#[derive(Debug, Args, Default, Clone, Copy, PartialEq, Eq)]
pub struct WriteArgs {
    /// Make each write durable before it is reported: on a filesystem store every append is
    /// fdatasynced (the `Sync` mode), so what the command says it wrote survives a power cut,
    /// not only a crash. A PostgreSQL store is durable either way
    #[arg(long)]
    pub durable: bool,

    /// Compress the blobs of entries too long for a line (zstd level 3, in the session's blob
    /// pack): on real-shaped agent sessions 0.58x the bytes on disk, at 1.8-2.8x the time of a
    /// buffered append. Filesystem stores only; every reader reads both kinds
    #[arg(long)]
    pub compress: bool,
}

impl WriteArgs {
    /// Refuses `--compress` for a store without blob packs, before anything is read or written.
    pub fn check(&self, location: &Location) -> Result<(), Failure> {
        if self.compress {
            location.files_only(
                "--compress",
                "blobs are compressed in a session's blob pack",
            )?;
        }
        Ok(())
    }

    /// The filesystem store's options these flags ask for.
    pub fn fs_options(&self) -> FsOptions {
        FsOptions {
            durability: if self.durable {
                Durability::Sync
            } else {
                Durability::Buffered
            },
            blob_compression: if self.compress {
                BlobCompression::ZSTD
            } else {
                BlobCompression::None
            },
            ..FsOptions::default()
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_flags_choose_the_sync_mode_and_zstd_and_nothing_else() {
        let plain = WriteArgs::default().fs_options();
        assert_eq!(plain.durability, Durability::Buffered);
        assert_eq!(plain.blob_compression, BlobCompression::None);
        let both = WriteArgs {
            durable: true,
            compress: true,
        }
        .fs_options();
        assert_eq!(both.durability, Durability::Sync);
        assert_eq!(both.blob_compression, BlobCompression::ZSTD);
        let defaults = FsOptions::default();
        assert_eq!(
            (both.max_entry_bytes, both.lock_wait, both.recovery),
            (
                defaults.max_entry_bytes,
                defaults.lock_wait,
                defaults.recovery
            )
        );
    }
}
