//! `annals append`: JSON lines from stdin, all checked first, then one batch.

use std::io::{self, BufRead, IsTerminal, Write};
use std::path::PathBuf;

use annals::{RawEntry, SegmentId, SessionId, Store};
use clap::Args;

use crate::fail::{Failure, Outcome, CANNOT_RUN, OK};
use crate::target::Target;

/// Bad lines reported one by one before the rest are only counted.
const MAX_REPORTED: usize = 20;

#[derive(Debug, Args)]
pub struct AppendArgs {
    /// The session (full id; a unique prefix of an existing one also works)
    pub session: String,

    /// The segment (full id; a unique prefix of an existing one also works)
    pub segment: String,

    /// Create the segment (and its session) if it does not exist
    #[arg(long)]
    pub create: bool,
}

pub fn run(root: Option<PathBuf>, args: &AppendArgs) -> Outcome {
    let target = if args.create {
        Target::create(root)?
    } else {
        Target::existing(root)?
    };
    let (session, segment) = resolve(&target, args)?;
    let stdin = io::stdin();
    if stdin.is_terminal() {
        say!("reading JSON entries from stdin, one per line; end with Ctrl-D");
    }
    let entries = read_entries(stdin.lock())?;
    let exists = target
        .store
        .exists(session, segment)
        .map_err(|e| target.err(e))?;
    let first_seq = if exists {
        target
            .store
            .tip(session, segment)
            .map_err(|e| target.err(e))?
            .count
    } else {
        0
    };
    check_sizes(&entries, first_seq)?;
    let entries: Vec<RawEntry> = entries.into_iter().map(|(_, e)| e).collect();
    let mut out = io::stdout().lock();
    if !exists {
        if !args.create {
            return Err(target.err(annals::Error::SegmentNotFound { session, segment }));
        }
        match target.store.create_segment(session, segment, &entries) {
            Ok(tip) => {
                writeln!(
                    out,
                    "created segment {segment} in session {session} with {} entries",
                    tip.count
                )?;
                return Ok(OK);
            }
            // Created by someone else in the meantime: append to it like any other.
            Err(annals::Error::SegmentExists { .. }) => {}
            Err(e) => return Err(target.err(e)),
        }
    }
    if entries.is_empty() {
        writeln!(out, "nothing to append (no entries on stdin)")?;
        return Ok(OK);
    }
    let tip = target
        .store
        .append_batch_raw(session, segment, &entries)
        .map_err(|e| target.err(e))?;
    writeln!(
        out,
        "appended {} entries to segment {segment} (seq {}..{}, now {} entries)",
        entries.len(),
        tip.count - entries.len() as u64,
        tip.count - 1,
        tip.count
    )?;
    Ok(OK)
}

fn resolve(target: &Target, args: &AppendArgs) -> Result<(SessionId, SegmentId), Failure> {
    if args.create {
        // A new segment cannot be found by prefix: both ids must be given in full.
        let session = args.session.parse::<SessionId>().map_err(|e| {
            Failure::usage(e, "--create needs full UUIDs (for example from `uuidgen`)")
        })?;
        let segment = args.segment.parse::<SegmentId>().map_err(|e| {
            Failure::usage(e, "--create needs full UUIDs (for example from `uuidgen`)")
        })?;
        return Ok((session, segment));
    }
    target.segment(&args.segment, Some(&args.session))
}

/// Reads every line, keeping the valid ones with their line numbers; any invalid line fails
/// the whole input.
fn read_entries(input: impl BufRead) -> Result<Vec<(u64, RawEntry)>, Failure> {
    let mut entries = Vec::new();
    let mut bad: Vec<String> = Vec::new();
    let mut bad_count = 0usize;
    for (n, line) in (1u64..).zip(input.split(b'\n')) {
        let line = line.map_err(|e| {
            Failure::new(
                CANNOT_RUN,
                format!("could not read input ({e})"),
                "stdin",
                "nothing was written",
            )
        })?;
        let text = match std::str::from_utf8(&line) {
            Ok(t) => t,
            Err(e) => {
                bad_count += 1;
                if bad.len() < MAX_REPORTED {
                    bad.push(format!("stdin line {n}: not UTF-8 ({e})"));
                }
                continue;
            }
        };
        let text = text.trim_end_matches('\r');
        if text.trim().is_empty() {
            continue;
        }
        match RawEntry::from_json(text) {
            Ok(entry) => entries.push((n, entry)),
            Err(annals::Error::InvalidJson(e)) => {
                bad_count += 1;
                if bad.len() < MAX_REPORTED {
                    bad.push(format!("stdin line {n}: not valid JSON: {e}"));
                }
            }
            Err(e) => {
                bad_count += 1;
                if bad.len() < MAX_REPORTED {
                    bad.push(format!("stdin line {n}: {e}"));
                }
            }
        }
    }
    if bad_count == 0 {
        return Ok(entries);
    }
    for line in &bad {
        say!("annals: {line}");
    }
    let more = bad_count - bad.len();
    if more > 0 {
        say!("annals: ... and {more} more invalid lines");
    }
    Err(Failure::new(
        CANNOT_RUN,
        format!(
            "{bad_count} invalid line{} in the input",
            if bad_count == 1 { "" } else { "s" }
        ),
        "stdin",
        "nothing was written; fix the lines above and run again",
    ))
}

/// Every entry must fit its line (4096 bytes with CRC and sequence number); checked here so
/// that the message can name the input line.
fn check_sizes(entries: &[(u64, RawEntry)], first_seq: u64) -> Result<(), Failure> {
    let mut scratch = Vec::with_capacity(annals::MAX_LINE);
    let mut bad = 0usize;
    for ((n, entry), seq) in entries.iter().zip(first_seq..) {
        scratch.clear();
        let frame = annals::codec::Frame::v1(seq);
        if let Err(annals::codec::EncodeError::TooLong { size }) =
            annals::codec::encode_entry(&frame, entry.as_str(), &mut scratch)
        {
            bad += 1;
            if bad <= MAX_REPORTED {
                say!(
                    "annals: stdin line {n}: entry too large: its line would be {size} bytes, \
                     the limit is {}",
                    annals::MAX_LINE
                );
            }
        }
    }
    if bad == 0 {
        return Ok(());
    }
    Err(Failure::new(
        CANNOT_RUN,
        format!(
            "{bad} entr{} too large",
            if bad == 1 { "y is" } else { "ies are" }
        ),
        "stdin",
        "nothing was written; split large entries or store their payload elsewhere",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_lines_are_skipped_and_numbers_follow_the_input() {
        let input = b"{\"a\":1}\n\n  \n[2]\r\n";
        let entries = read_entries(&input[..]).unwrap();
        let lines: Vec<u64> = entries.iter().map(|(n, _)| *n).collect();
        assert_eq!(lines, vec![1, 4]);
        assert_eq!(entries[1].1.as_str(), "[2]");
    }

    #[test]
    fn one_bad_line_fails_the_whole_input() {
        let input = b"{\"a\":1}\n{oops\n";
        let err = read_entries(&input[..]).unwrap_err();
        assert_eq!(err.code(), CANNOT_RUN);
    }
}
