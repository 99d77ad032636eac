//! The commands, one module each, and what `cat` and `follow` share: printing entries.

pub mod append;
pub mod cat;
pub mod copy;
pub mod demo;
pub mod follow;
pub mod gc;
pub mod ls;
pub mod repair;
pub mod stats;
pub mod verify;

use std::io::{self, IsTerminal, Write};

use clap::Args;

use crate::term::{self, Style};

/// How entries are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Indented JSON, key order kept (the default on a terminal).
    Pretty,
    /// One compact JSON object per line (the default when piped).
    Compact,
    /// The stored lines, byte for byte: `{"crc":..,"seq":N,"e":..}`.
    Raw,
}

/// Output options shared by `cat` and `follow`.
#[derive(Debug, Args)]
pub struct PrintArgs {
    /// Print the stored lines exactly as they are in the file (CRC, seq and entry)
    #[arg(long, conflicts_with_all = ["pretty", "compact"])]
    pub raw: bool,

    /// Pretty-print even when stdout is not a terminal
    #[arg(long, conflicts_with = "compact")]
    pub pretty: bool,

    /// One compact JSON object per line even on a terminal
    #[arg(long)]
    pub compact: bool,

    /// Prefix each entry with its sequence number and a tab
    #[arg(long)]
    pub seq: bool,

    /// Print entries kept as blobs as their reference
    /// ({"annals_blob":{"sha256","len","head"}}) instead of reading the blob: faster, and works
    /// when a blob is missing
    #[arg(long)]
    pub no_blobs: bool,
}

impl PrintArgs {
    /// Whether the replay should hand out blob references rather than read blobs.
    pub fn blob_refs(&self) -> bool {
        self.no_blobs || self.raw
    }

    pub fn format(&self) -> Format {
        if self.raw {
            Format::Raw
        } else if self.pretty {
            Format::Pretty
        } else if self.compact || !io::stdout().is_terminal() {
            Format::Compact
        } else {
            Format::Pretty
        }
    }
}

/// Writes entries in one [`Format`].
pub struct Printer {
    format: Format,
    seq: bool,
    blob_refs: bool,
    style: Style,
    line: Vec<u8>,
}

impl Printer {
    pub fn new(args: &PrintArgs) -> Self {
        let format = args.format();
        Self {
            format,
            seq: args.seq,
            blob_refs: args.blob_refs(),
            style: if format == Format::Pretty {
                Style::stdout()
            } else {
                Style::plain()
            },
            line: Vec::with_capacity(annals::MAX_LINE),
        }
    }

    /// Whether replays for this printer should hand out blob references.
    pub fn blob_refs(&self) -> bool {
        self.blob_refs
    }

    /// Prints one delivered entry (a blob reference, with `--no-blobs`, as
    /// `{"annals_blob":{"sha256","len","head"}}`).
    pub fn entry(&mut self, out: &mut impl Write, entry: &annals::Entry<'_>) -> io::Result<()> {
        match (entry.body, self.format) {
            (annals::Body::Blob { reference, .. }, Format::Raw) => {
                self.line.clear();
                annals::codec::encode_blob(
                    &raw_frame(entry.seq, entry.appended_ms),
                    reference,
                    &mut self.line,
                )
                .map_err(|e| io::Error::other(format!("entry {}: {e}", entry.seq)))?;
                out.write_all(&self.line)
            }
            (
                annals::Body::Blob {
                    reference,
                    json: None,
                },
                _,
            ) => {
                let shown = serde_json::json!({ "annals_blob": reference }).to_string();
                self.text(out, entry.seq, entry.appended_ms, &shown)
            }
            (
                annals::Body::Blob {
                    json: Some(json), ..
                }
                | annals::Body::Inline(json),
                _,
            ) => self.text(out, entry.seq, entry.appended_ms, json),
        }
    }

    /// Prints an entry's JSON text (or what stands for it).
    pub fn text(
        &mut self,
        out: &mut impl Write,
        seq: u64,
        appended_ms: Option<u64>,
        json: &str,
    ) -> io::Result<()> {
        if self.seq {
            let label = format!("{seq}\t");
            let label = if self.format == Format::Pretty {
                self.style.dim(&label)
            } else {
                label
            };
            out.write_all(label.as_bytes())?;
        }
        match self.format {
            Format::Compact => {
                out.write_all(json.as_bytes())?;
                out.write_all(b"\n")
            }
            Format::Pretty => {
                term::write_pretty(out, json, self.style)?;
                out.write_all(b"\n")
            }
            Format::Raw => {
                // Re-framing a verified entry gives back its stored line byte for byte: the
                // CRC covers exactly these bytes and the sequence number has one spelling.
                self.line.clear();
                annals::codec::encode_entry(&raw_frame(seq, appended_ms), json, &mut self.line)
                    .map_err(|e| io::Error::other(format!("entry {seq}: {e}")))?;
                out.write_all(&self.line)
            }
        }
    }
}

/// How a stored line is framed: a version-1 line (no time) as it was stored; a version-2 line
/// with its time, as a write of its own that claims everything before it durable. That is the
/// stored line for a `Sync` append and a new segment's entries; a replayed entry does not carry
/// the write marks (`u`, `more`) of a `Buffered` append or a batch, which then differ.
fn raw_frame(seq: u64, appended_ms: Option<u64>) -> annals::codec::Frame {
    match appended_ms {
        Some(appended_ms) => annals::codec::Frame::v2(
            seq,
            annals::codec::Marks {
                appended_ms,
                unsynced: 0,
                more: 0,
            },
        ),
        None => annals::codec::Frame::v1(seq),
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
