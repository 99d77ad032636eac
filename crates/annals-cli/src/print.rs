//! Printing entries for `cat` and `follow`: JSON lines, pretty JSON, a one-line-per-entry
//! transcript, or the stored lines.

use std::io::{self, IsTerminal, Write};

use annals::{Body, Entry, SegmentId, SessionId};
use clap::{Args, ValueEnum};
use serde_json::Value;

use annals_cli::search::time;
use annals_cli::transcript::{label_of, one_line, text_of};

use crate::term::{self, Style};

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One compact JSON object per line, exactly as appended (the default when piped)
    Jsonl,
    /// Indented JSON, key order and number spelling kept (the default on a terminal)
    Pretty,
    /// One readable line per entry: time (UTC), seq, role or type, and its text
    Transcript,
    /// The stored lines of a format-1 file, byte for byte: {"crc":…,"seq":N,"e":…} (refused
    /// for format-2 lines, whose write marks a replayed entry does not carry)
    Raw,
}

/// Output options shared by `cat` and `follow`.
#[derive(Debug, Args)]
pub struct PrintArgs {
    /// How to print entries [default: pretty on a terminal, jsonl when piped]
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<Format>,

    /// Same as --format raw
    #[arg(long, conflicts_with_all = ["format", "pretty", "compact"])]
    pub raw: bool,

    /// Same as --format pretty
    #[arg(long, conflicts_with_all = ["format", "compact"])]
    pub pretty: bool,

    /// Same as --format jsonl
    #[arg(long, conflicts_with = "format")]
    pub compact: bool,

    /// Prefix each entry with its sequence number and a tab (jsonl and pretty)
    #[arg(long)]
    pub seq: bool,

    /// Print entries kept as blobs as their reference ({"annals_blob":{"sha256","len","head"}})
    /// instead of reading the blob: faster, and works when a blob is missing
    #[arg(long)]
    pub no_blobs: bool,
}

impl PrintArgs {
    pub fn format(&self) -> Format {
        if self.raw {
            Format::Raw
        } else if self.pretty {
            Format::Pretty
        } else if self.compact {
            Format::Jsonl
        } else if let Some(f) = self.format {
            f
        } else if io::stdout().is_terminal() {
            Format::Pretty
        } else {
            Format::Jsonl
        }
    }
}

/// Characters of an entry's text a transcript line shows when stdout is not a terminal.
const PIPED_TEXT: usize = 400;

/// Where an entry is, for output that covers several segments.
#[derive(Debug, Clone, Copy)]
pub struct Place {
    pub session: SessionId,
    pub segment: SegmentId,
}

/// Writes entries in one [`Format`].
pub struct Printer {
    format: Format,
    seq: bool,
    blob_refs: bool,
    /// JSON output says which session and segment each entry is in (`cat --all`).
    located: bool,
    style: Style,
    width: Option<usize>,
    /// The UTC day of the last transcript line, to print a date line when it changes.
    day: Option<u64>,
    line: Vec<u8>,
}

impl Printer {
    pub fn new(args: &PrintArgs, located: bool) -> Self {
        let format = args.format();
        Self {
            format,
            seq: args.seq,
            blob_refs: args.no_blobs || format == Format::Raw,
            located,
            style: match format {
                Format::Pretty | Format::Transcript => Style::stdout(),
                Format::Jsonl | Format::Raw => Style::plain(),
            },
            width: term::stdout_width(),
            day: None,
            line: Vec::with_capacity(annals::MAX_LINE),
        }
    }

    /// Whether replays for this printer should hand out blob references.
    pub fn blob_refs(&self) -> bool {
        self.blob_refs
    }

    /// A line that introduces a segment (`cat --all`, `follow` of a session) in the formats
    /// people read; JSON output says it in each entry instead.
    pub fn segment_header(&mut self, out: &mut impl Write, text: &str) -> io::Result<()> {
        match self.format {
            Format::Pretty | Format::Transcript => {
                writeln!(out, "{}", self.style.bold(&format!("── {text} ──")))
            }
            Format::Jsonl | Format::Raw => Ok(()),
        }
    }

    /// Prints one delivered entry.
    pub fn entry(
        &mut self,
        out: &mut impl Write,
        place: Place,
        entry: &Entry<'_>,
    ) -> io::Result<()> {
        if self.format == Format::Raw {
            return self.raw(out, entry);
        }
        let blob_ref;
        let json = match entry.body {
            Body::Blob {
                reference,
                json: None,
            } => {
                blob_ref = serde_json::json!({ "annals_blob": reference }).to_string();
                blob_ref.as_str()
            }
            Body::Blob {
                json: Some(json), ..
            }
            | Body::Inline(json) => json,
        };
        match self.format {
            Format::Transcript => self.transcript(out, entry, json),
            _ if self.located => {
                let t = entry.appended_ms;
                write!(
                    out,
                    "{{\"session\":\"{}\",\"segment\":\"{}\",\"seq\":{},\"appended_ms\":{},\"entry\":",
                    place.session,
                    place.segment,
                    entry.seq,
                    t.map_or_else(|| "null".to_owned(), |t| t.to_string()),
                )?;
                match self.format {
                    Format::Pretty => term::write_pretty(out, json, self.style)?,
                    _ => out.write_all(json.as_bytes())?,
                }
                out.write_all(b"}\n")
            }
            _ => self.text(out, entry.seq, json),
        }
    }

    /// An entry's JSON text in the jsonl and pretty formats.
    fn text(&mut self, out: &mut impl Write, seq: u64, json: &str) -> io::Result<()> {
        if self.seq {
            let label = format!("{seq}\t");
            out.write_all(self.style.dim(&label).as_bytes())?;
        }
        if self.format == Format::Pretty {
            term::write_pretty(out, json, self.style)?;
        } else {
            out.write_all(json.as_bytes())?;
        }
        out.write_all(b"\n")
    }

    /// The stored line: re-framing a verified entry gives back its bytes exactly (the CRC
    /// covers exactly these bytes and the sequence number has one spelling).
    fn raw(&mut self, out: &mut impl Write, entry: &Entry<'_>) -> io::Result<()> {
        // A line that recorded its append time (on-disk format 2) holds more than these bytes:
        // re-framing would print a line the file does not hold.
        if entry.appended_ms.is_some() {
            return Err(io::Error::other(
                "--raw re-frames format-1 lines only; this segment's lines record their append \
                 time (format 2): read the file itself, or use --format jsonl",
            ));
        }
        self.line.clear();
        let frame = annals::codec::Frame::v1(entry.seq);
        let framed = match entry.body {
            Body::Blob { reference, .. } => {
                annals::codec::encode_blob(&frame, reference, &mut self.line)
            }
            Body::Inline(json) => annals::codec::encode_entry(&frame, json, &mut self.line),
        };
        framed.map_err(|e| io::Error::other(format!("entry {}: {e}", entry.seq)))?;
        out.write_all(&self.line)
    }

    fn transcript(
        &mut self,
        out: &mut impl Write,
        entry: &Entry<'_>,
        json: &str,
    ) -> io::Result<()> {
        let s = self.style;
        if let Some(t) = entry.appended_ms {
            let day = t / 86_400_000;
            if self.day != Some(day) {
                self.day = Some(day);
                let date = time::utc(t);
                let date = date.get(..10).unwrap_or(&date);
                writeln!(out, "{}", s.dim(&format!("─── {date} (UTC) ───")))?;
            }
        }
        let clock = entry
            .appended_ms
            .map_or_else(|| " ".repeat(12), time::time_of_day);
        let (label, text) = match serde_json::from_str::<Value>(json) {
            Ok(value) => (
                label_of(&value),
                text_of(&value).unwrap_or_else(|| json.to_owned()),
            ),
            Err(_) => (String::new(), json.to_owned()),
        };
        let label = if label.is_empty() {
            "·".to_owned()
        } else {
            label
        };
        let seq = format!("#{}", entry.seq);
        let head_len = clock.len() + 2 + seq.len().max(5) + 2 + label.chars().count().max(10) + 2;
        let mut text = one_line(&text);
        // The terminal's width; into a pipe, a long text is still one readable line.
        let room = self
            .width
            .map_or(PIPED_TEXT, |w| w.saturating_sub(head_len).max(10));
        let chars = text.chars().count();
        if chars > room {
            let more = if self.width.is_some() {
                String::new()
            } else {
                format!(" [{} more characters]", chars - (room - 1))
            };
            text = text.chars().take(room - 1).collect::<String>() + "…" + &more;
        }
        writeln!(
            out,
            "{}  {}  {}  {text}",
            s.dim(&clock),
            s.dim(&format!("{seq:<5}")),
            paint_label(s, &format!("{label:<10}")),
        )
    }
}

fn paint_label(s: Style, label: &str) -> String {
    let l = label.trim().to_ascii_lowercase();
    if l.contains("error") || l.contains("fail") {
        s.red(label)
    } else if l.starts_with("user") || l == "human" {
        s.green(label)
    } else if l.starts_with("assistant") || l == "ai" || l == "model" {
        s.cyan(label)
    } else if l.starts_with("tool") || l.contains("function") {
        s.yellow(label)
    } else if l == "system" || l == "developer" {
        s.magenta(label)
    } else {
        s.bold(label)
    }
}
