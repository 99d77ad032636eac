//! `annals copy --from STORE --to STORE [SESSION…]`: sessions from any store to any other
//! (filesystem ↔ PostgreSQL), with segments, lineage, traces, attachments, the entries kept as
//! blobs and the rewrite generations; checked entry by entry afterwards.
//!
//! Resumable: what the destination already holds of a segment must be a prefix of the source's
//! (checked, entry by entry), and the copy continues after it, so running it again after an
//! interruption never duplicates anything. Memory stays bounded: entries move in batches.

use std::io::{IsTerminal, Write};
use std::ops::ControlFlow;

use annals::{
    AttachmentMeta, Body, Lineage, ReplayOptions, SegmentId, SegmentInfo, SessionId, Store,
};
use clap::Args;

use super::WriteArgs;
use crate::fail::{store_error, Failure, Outcome, CANNOT_RUN, OK, PROBLEMS};
use crate::target::{Location, Target};

/// Entries per batch appended to the destination, and per window compared.
const BATCH: usize = 256;

#[derive(Debug, Args)]
pub struct CopyArgs {
    /// The store to copy from: a directory, file://PATH, or postgresql://… (?schema=NAME)
    #[arg(long, value_name = "STORE")]
    pub from: String,

    /// The store to copy into (created if it is a directory that does not exist)
    #[arg(long, value_name = "STORE")]
    pub to: String,

    /// Sessions to copy (full ids or unique prefixes); all of them if none is given
    #[arg(value_name = "SESSION")]
    pub sessions: Vec<String>,

    #[command(flatten)]
    pub write: WriteArgs,
}

/// One side of the copy, with what error messages call it.
struct Side {
    store: std::sync::Arc<dyn Store>,
    shown: String,
}

impl Side {
    fn err(&self, e: annals::Error) -> Failure {
        store_error(e, &format!("store {}", self.shown))
    }
}

#[derive(Default)]
struct Totals {
    sessions: u64,
    segments: u64,
    entries: u64,
    copied: u64,
    attachments: u64,
    lineage_dropped: u64,
}

pub fn run(args: &CopyArgs) -> Outcome {
    let from = Location::parse(&args.from)?;
    let to = Location::parse(&args.to)?;
    if from == to {
        return Err(Failure::usage(
            "--from and --to are the same store",
            "copy into another store",
        ));
    }
    let from = Side {
        store: Target::existing(&from)?.into_shared(),
        shown: from.shown(),
    };
    args.write.check(&to)?;
    let to = Side {
        store: Target::writable(&to)?
            .for_writes(&args.write)?
            .into_shared(),
        shown: to.shown(),
    };
    let sessions = sessions(&from, &args.sessions)?;
    let progress = std::io::stderr().is_terminal();
    let mut totals = Totals::default();
    for session in sessions {
        copy_session(&from, &to, session, progress, &mut totals)?;
        totals.sessions += 1;
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "copied {} sessions, {} segments, {} entries ({} new), {} attachments from {} to {}; every entry checked",
        totals.sessions,
        totals.segments,
        totals.entries,
        totals.copied,
        totals.attachments,
        from.shown,
        to.shown
    )?;
    if totals.lineage_dropped > 0 {
        say!(
            "annals: {} forked segments were copied without their lineage: their parent's prefix has changed since the fork",
            totals.lineage_dropped
        );
    }
    Ok(OK)
}

fn sessions(from: &Side, wanted: &[String]) -> Result<Vec<SessionId>, Failure> {
    let all = from.store.list_sessions().map_err(|e| from.err(e))?;
    if wanted.is_empty() {
        // Oldest first: a re-run after an interruption picks up where it stopped.
        return Ok(all.into_iter().rev().collect());
    }
    wanted
        .iter()
        .map(|w| {
            let matches: Vec<SessionId> = all
                .iter()
                .copied()
                .filter(|s| s.to_string().starts_with(w.as_str()))
                .collect();
            match matches.as_slice() {
                [one] => Ok(*one),
                [] => Err(Failure::new(
                    PROBLEMS,
                    format!("session {w} not found"),
                    &from.shown,
                    "run `annals ls` on the source",
                )),
                _ => Err(Failure::usage(
                    format!("session prefix {w} is ambiguous"),
                    "give more characters",
                )),
            }
        })
        .collect()
}

/// Parents before the segments forked from them, then by creation.
fn in_copy_order(mut segments: Vec<SegmentInfo>) -> Vec<SegmentInfo> {
    segments.sort_by_key(|s| (s.created_ms, s.segment));
    let mut ordered: Vec<SegmentInfo> = Vec::with_capacity(segments.len());
    while !segments.is_empty() {
        let ready = segments.iter().position(|s| {
            s.fork.is_none_or(|l| {
                ordered.iter().any(|o| o.segment == l.segment)
                    || !segments.iter().any(|p| p.segment == l.segment)
            })
        });
        // A cycle cannot happen (a fork is younger than its source); take the first anyway.
        ordered.push(segments.remove(ready.unwrap_or(0)));
    }
    ordered
}

fn copy_session(
    from: &Side,
    to: &Side,
    session: SessionId,
    progress: bool,
    totals: &mut Totals,
) -> Result<(), Failure> {
    let segments = from.store.list_segments(session).map_err(|e| from.err(e))?;
    for info in in_copy_order(segments) {
        if let Some(damage) = &info.damage {
            return Err(Failure::new(
                PROBLEMS,
                format!(
                    "segment {} is damaged in the source ({damage})",
                    info.segment
                ),
                &from.shown,
                "run `annals verify` on the source, and `annals repair` if need be",
            ));
        }
        copy_segment(from, to, session, &info, progress, totals)?;
        totals.segments += 1;
    }
    copy_attachments(from, to, session, totals)
}

/// The JSON texts of up to `max` entries of a segment (or its trace) from `from_seq` on.
fn texts(
    side: &Side,
    session: SessionId,
    segment: SegmentId,
    trace: bool,
    from_seq: u64,
    max: usize,
) -> Result<Vec<String>, Failure> {
    let mut out = Vec::with_capacity(max);
    let mut sink = |e: annals::Entry<'_>| {
        let text = match e.body {
            Body::Inline(json)
            | Body::Blob {
                json: Some(json), ..
            } => json,
            Body::Blob { json: None, .. } => "",
        };
        out.push(text.to_owned());
        Ok(if out.len() >= max {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        })
    };
    let options = ReplayOptions::strict().from_seq(from_seq);
    let replayed = if trace {
        side.store
            .replay_trace_raw(session, segment, &options, &mut sink)
    } else {
        side.store.replay_raw(session, segment, &options, &mut sink)
    };
    replayed.map_err(|e| side.err(e))?;
    Ok(out)
}

/// The first entry (from 0) where the two logs differ within their first `n`, if any.
fn first_difference(
    a: (&Side, SegmentId),
    b: (&Side, SegmentId),
    session: SessionId,
    trace: bool,
    n: u64,
) -> Result<Option<u64>, Failure> {
    let mut at = 0u64;
    while at < n {
        let want = usize::try_from((n - at).min(BATCH as u64)).unwrap_or(BATCH);
        let left = texts(a.0, session, a.1, trace, at, want)?;
        let right = texts(b.0, session, b.1, trace, at, want)?;
        if let Some(i) = (0..want).find(|&i| left.get(i) != right.get(i)) {
            return Ok(Some(at + i as u64));
        }
        at += want as u64;
    }
    Ok(None)
}

/// How many entries a log has (a trace's count comes from a replay's report).
fn count(side: &Side, session: SessionId, segment: SegmentId, trace: bool) -> Result<u64, Failure> {
    if !trace {
        return side
            .store
            .entry_count(session, segment)
            .map_err(|e| side.err(e));
    }
    let mut n = 0u64;
    side.store
        .replay_trace_raw(
            session,
            segment,
            &ReplayOptions::strict().blob_refs(),
            &mut |_| {
                n += 1;
                Ok(ControlFlow::Continue(()))
            },
        )
        .map_err(|e| side.err(e))?;
    Ok(n)
}

/// Makes the destination's log (or trace) hold exactly the source's: checks that what it holds
/// is a prefix, appends the rest in batches. Returns how many entries it appended.
fn fill(
    from: &Side,
    to: &Side,
    session: SessionId,
    segment: SegmentId,
    trace: bool,
    progress: bool,
) -> Result<(u64, u64), Failure> {
    let total = count(from, session, segment, trace)?;
    let have = count(to, session, segment, trace)?;
    let what = if trace { "trace of segment" } else { "segment" };
    if have > total {
        return Err(Failure::new(
            PROBLEMS,
            format!(
                "the destination's {what} {segment} holds {have} entries, the source's {total}"
            ),
            &to.shown,
            "it is not a copy of this source; copy into another store",
        ));
    }
    if let Some(at) = first_difference((from, segment), (to, segment), session, trace, have)? {
        return Err(Failure::new(
            PROBLEMS,
            format!("the destination's {what} {segment} differs from the source at entry {at}"),
            &to.shown,
            "it is not a copy of this source; copy into another store",
        ));
    }
    let mut done = have;
    while done < total {
        let want = usize::try_from((total - done).min(BATCH as u64)).unwrap_or(BATCH);
        let batch: Vec<annals::RawEntry> = texts(from, session, segment, trace, done, want)?
            .iter()
            .map(|t| annals::RawEntry::from_json(t))
            .collect::<annals::Result<_>>()
            .map_err(|e| from.err(e))?;
        if batch.is_empty() {
            break; // the source shrank meanwhile; the check below says so
        }
        if trace {
            to.store.append_trace_raw(session, segment, &batch)
        } else {
            to.store
                .append_batch_raw(session, segment, &batch)
                .map(|_| ())
        }
        .map_err(|e| to.err(e))?;
        done += batch.len() as u64;
        if progress {
            say_progress(session, segment, trace, done, total);
        }
    }
    Ok((total, total - have))
}

fn say_progress(session: SessionId, segment: SegmentId, trace: bool, done: u64, total: u64) {
    let short = |s: String| s.chars().take(8).collect::<String>();
    let what = if trace { " trace" } else { "" };
    let mut err = std::io::stderr().lock();
    let _ = write!(
        err,
        "\r{}/{}{what}: {done}/{total} entries",
        short(session.to_string()),
        short(segment.to_string())
    );
    if done == total {
        let _ = writeln!(err);
    }
}

fn copy_segment(
    from: &Side,
    to: &Side,
    session: SessionId,
    info: &SegmentInfo,
    progress: bool,
    totals: &mut Totals,
) -> Result<(), Failure> {
    let segment = info.segment;
    if !to.store.exists(session, segment).map_err(|e| to.err(e))? {
        match info.fork {
            Some(Lineage {
                segment: parent,
                at,
            }) if forkable(from, to, session, parent, segment, at)? => {
                to.store
                    .fork(session, parent, at, segment)
                    .map_err(|e| to.err(e))?;
            }
            lineage => {
                totals.lineage_dropped += u64::from(lineage.is_some());
                to.store
                    .create_segment(session, segment, &[])
                    .map_err(|e| to.err(e))?;
            }
        }
    }
    let (entries, copied) = fill(from, to, session, segment, false, progress)?;
    fill(from, to, session, segment, true, progress)?;

    // The rewrite generation: a truncate that keeps everything moves it by one.
    let source = from.store.tip(session, segment).map_err(|e| from.err(e))?;
    let mut dest = to.store.tip(session, segment).map_err(|e| to.err(e))?;
    while dest.generation < source.generation {
        dest = to
            .store
            .truncate(session, segment, dest.count)
            .map_err(|e| to.err(e))?;
    }

    // Checked entry by entry, log and trace, now that it is all there.
    for trace in [false, true] {
        let n = count(from, session, segment, trace)?;
        if count(to, session, segment, trace)? != n {
            return Err(mismatch(to, segment, None));
        }
        if let Some(at) = first_difference((from, segment), (to, segment), session, trace, n)? {
            return Err(mismatch(to, segment, Some(at)));
        }
    }
    if dest != source {
        return Err(Failure::new(
            PROBLEMS,
            format!(
                "segment {segment} copied, but its tip is {dest} where the source's is {source}"
            ),
            &to.shown,
            "the destination was changed during the copy, or was not empty",
        ));
    }
    totals.entries += entries;
    totals.copied += copied;
    Ok(())
}

/// Whether the destination can fork `segment` from its copy of `parent` at `at`: the parent is
/// there with at least `at` entries, and its first `at` are the forked segment's first `at` in
/// the source (the source's parent may have been truncated and rewritten since the fork).
fn forkable(
    from: &Side,
    to: &Side,
    session: SessionId,
    parent: SegmentId,
    segment: SegmentId,
    at: u64,
) -> Result<bool, Failure> {
    if !to.store.exists(session, parent).map_err(|e| to.err(e))?
        || to
            .store
            .entry_count(session, parent)
            .map_err(|e| to.err(e))?
            < at
        || from
            .store
            .entry_count(session, segment)
            .map_err(|e| from.err(e))?
            < at
    {
        return Ok(false);
    }
    Ok(first_difference((from, segment), (to, parent), session, false, at)?.is_none())
}

fn mismatch(to: &Side, segment: SegmentId, at: Option<u64>) -> Failure {
    let what = match at {
        Some(at) => format!("the copy of segment {segment} differs from the source at entry {at}"),
        None => {
            format!("the copy of segment {segment} does not hold as many entries as the source")
        }
    };
    Failure::new(
        CANNOT_RUN,
        what,
        &to.shown,
        "the destination was changed during the copy",
    )
}

fn copy_attachments(
    from: &Side,
    to: &Side,
    session: SessionId,
    totals: &mut Totals,
) -> Result<(), Failure> {
    let wanted = from
        .store
        .list_attachments(session)
        .map_err(|e| from.err(e))?;
    if wanted.is_empty() {
        return Ok(());
    }
    let have = to.store.list_attachments(session).map_err(|e| to.err(e))?;
    let same = |a: &annals::Attachment, b: &annals::Attachment| a.id == b.id && a.meta == b.meta;
    if have.len() > wanted.len() || have.iter().zip(&wanted).any(|(h, w)| !same(h, w)) {
        return Err(Failure::new(
            PROBLEMS,
            format!(
                "the destination's attachments of session {session} are not those of the source"
            ),
            &to.shown,
            "copy into another store",
        ));
    }
    for a in wanted.iter().skip(have.len()) {
        let bytes = from
            .store
            .get_blob(session, &a.id)
            .map_err(|e| from.err(e))?;
        let meta: &AttachmentMeta = &a.meta;
        to.store
            .put_attachment(session, &bytes, meta)
            .map_err(|e| to.err(e))?;
        totals.attachments += 1;
    }
    Ok(())
}
