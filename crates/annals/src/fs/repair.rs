//! Repair: cutting a damaged segment back to its last good line, under its exclusive lock,
//! after saving the bytes it drops. A torn tail is cut in place (it lies after the last
//! newline, so mapped readers are safe); anything else by crash-atomic rewrite.

use std::path::PathBuf;

use super::atomic::{encode_header, keep_aside, TempFile};
use super::blobs::{BlobDir, Check};
use super::handle::Handle;
use super::replay::{check_blob, skip};
use super::seam::{Access, FileSystem};
use super::snapshot::{open_locked, Snapshot};
use super::tree::{file_name, Dir};
use super::{lock, FsStore};
use crate::codec::{FileKind, Header};
use crate::error::CorruptReason;
use crate::scan::{Checker, Identity};
use crate::{Error, Problem, ReadMode, Result, SegmentId, SessionId, TornTail};

/// What [`FsStore::repair`] did, or would do with `dry_run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repair {
    /// The segment file.
    pub path: PathBuf,
    /// The log is kept up to this byte (the end of its last good line).
    pub keep_bytes: u64,
    /// Entries kept.
    pub kept_entries: u64,
    /// Bytes cut from the end (torn tail included).
    pub dropped_bytes: u64,
    /// The torn tail, if that is all that was wrong.
    pub torn_tail: Option<TornTail>,
    /// The first problem, if there was damage beyond a torn tail.
    pub first_problem: Option<Problem>,
    /// Where the dropped bytes were saved (`None` for a dry run or when nothing was dropped).
    pub backup: Option<PathBuf>,
}

impl Repair {
    /// True if the segment was healthy and nothing was (or would be) changed.
    #[must_use]
    pub fn is_noop(&self) -> bool {
        self.dropped_bytes == 0
    }
}

impl<F: FileSystem> FsStore<F> {
    pub(crate) fn repair_segment(
        &self,
        session: SessionId,
        segment: SegmentId,
        dry_run: bool,
    ) -> Result<Repair> {
        let key = (session, segment, FileKind::Segment);
        let not_found = || Error::SegmentNotFound { session, segment };
        // A dry run opens nothing for writing (it works on a read-only mount), so it only
        // consults a handle this store already has.
        let handle = if dry_run {
            self.cached(key)
        } else {
            Some(self.segment_handle(session, segment)?)
        };
        let mut h = handle.as_ref().map(|h| lock(h));
        if let Some(h) = &h {
            h.check_poison()?;
            if let Some(held) = &h.lease {
                // This store's own lease holds it: waiting would only hold up the lease.
                return Err(Error::Locked {
                    session,
                    segment,
                    holder: Some(held.holder.clone()),
                    waited: std::time::Duration::ZERO,
                });
            }
        }
        let dir = self.tree.session(session)?.ok_or_else(not_found)?;
        // Scan and cut under the exclusive lock, so no appender can be mid-line. A descriptor
        // of its own: the handle's lock path insists on a readable tail, which is what is
        // broken here.
        let access = if dry_run {
            Access::Read
        } else {
            Access::Append
        };
        let name = file_name(segment, FileKind::Segment);
        let wait = (self.options.lock_wait, session, segment);
        let exclusive = match open_locked(&self.tree, &dir, &name, access, wait) {
            // Held past the wait (a lease of another store or process): say whose.
            Err(Error::Locked {
                holder: None,
                waited,
                ..
            }) => {
                return Err(Error::Locked {
                    session,
                    segment,
                    holder: self.live_holder(session, segment),
                    waited,
                })
            }
            other => other?.ok_or_else(not_found)?,
        };
        let identity = Identity {
            kind: FileKind::Segment,
            session,
            segment,
        };
        let result = self.repair_locked(identity, &dir, &exclusive, h.as_deref_mut(), dry_run);
        let _ = self.tree.fs.unlock(&exclusive.file);
        result
    }

    fn repair_locked(
        &self,
        identity: Identity,
        dir: &Dir<F>,
        file: &Snapshot<F>,
        h: Option<&mut Handle<F>>,
        dry_run: bool,
    ) -> Result<Repair> {
        let tree = &self.tree;
        let reader = file.reader(&tree.fs);
        let path = file.path.clone();
        let (size, _) = tree
            .fs
            .size_and_links(&file.file)
            .map_err(|e| Error::io("stat", &path, e))?;
        let checker = Checker::new(ReadMode::Tolerant, 0, false, Some(identity));
        let blobs = BlobDir::new(tree, dir, self.options.max_entry_bytes);
        // A line whose blob is missing or damaged is damage at that line, as verify says:
        // repair cuts there too.
        let (report, header) = reader.scan(0, size, checker, &mut |delivery| {
            check_blob(&blobs, Check::Fully, delivery)
        })?;
        let mut plan = Repair {
            path: path.clone(),
            keep_bytes: report.valid_up_to,
            kept_entries: 0,
            dropped_bytes: size - report.valid_up_to,
            torn_tail: report.torn_tail,
            first_problem: report.problems.first().cloned(),
            backup: None,
        };
        let header = match header {
            Some(hd) if report.valid_up_to > 0 => hd,
            _ => {
                // Nothing can be kept. Say why: the header's own problem (another segment's
                // header, garbage) is what the person has to act on.
                return Err(Error::Corrupt {
                    path,
                    line: 1,
                    offset: 0,
                    reason: plan
                        .first_problem
                        .map_or(CorruptReason::MissingHeader, |p| p.reason),
                });
            }
        };
        if plan.dropped_bytes == 0 {
            plan.kept_entries = report.entries;
            return Ok(plan);
        }
        // Entries kept = entry lines before the first problem.
        let checker = Checker::new(ReadMode::Strict, 0, false, None);
        let (kept, _) = reader.scan(0, plan.keep_bytes, checker, &mut skip)?;
        plan.kept_entries = kept.entries;
        if dry_run {
            return Ok(plan);
        }
        let backup = format!("{}.jsonl.dropped-{}", identity.segment, crate::now_ms());
        let backup = keep_aside(tree, dir, &backup, reader, plan.keep_bytes, size)?;
        let mut h = h;
        // A repair that fails after the backup was made but before the log changed leaves the
        // log as it was: the backup, which holds bytes the log still has, goes too. Once the log
        // is cut, the backup stays whatever fails after.
        let mut changed = false;
        let cut = (|| -> Result<()> {
            if plan.first_problem.is_none()
                && plan
                    .torn_tail
                    .is_some_and(|t| t.kind == crate::TailKind::TornLine)
            {
                // Only a torn line: it lies after the last newline, so cutting in place is safe
                // for mapped readers (see fs/mmap.rs). Any other interrupted tail holds newlines
                // and is cut by rewrite, like damage.
                tree.fs
                    .set_len(&file.file, plan.keep_bytes)
                    .map_err(|e| Error::io("cut torn tail of", &path, e))?;
                changed = true;
                if let Err(e) = tree.fs.sync_data(&file.file) {
                    if let Some(h) = h.as_deref_mut() {
                        h.poison("fsync", &e);
                    }
                    return Err(Error::io("fsync", &path, e));
                }
            } else {
                // A new generation only when entries a reader delivered go: an interrupted
                // tail (format 2) was never delivered, so cutting it keeps the tips readers saw.
                let new_header = Header {
                    generation: header.generation + u64::from(plan.first_problem.is_some()),
                    ..header
                };
                let mut temp = TempFile::create(tree, dir, identity.segment)?;
                let mut bytes = Vec::new();
                encode_header(&new_header, &mut bytes)?;
                temp.write(&bytes)?;
                let old_header_end = reader.first_line_end()?;
                temp.copy(reader, old_header_end, plan.keep_bytes)?;
                self.pack_durable(dir)?;
                temp.sync()?;
                temp.replace(&file_name(identity.segment, FileKind::Segment))?;
                changed = true;
                if let Err(e) = tree.sync_dir(dir) {
                    if let (Some(h), Error::Io { source, .. }) = (h.as_deref_mut(), &e) {
                        h.poison("fsync directory", source);
                    }
                    return Err(e);
                }
            }
            Ok(())
        })();
        if let Err(e) = cut {
            if !changed {
                if let Some(name) = backup.file_name().and_then(|n| n.to_str()) {
                    let _ = tree.fs.remove_file(&dir.handle, name);
                }
            }
            return Err(e);
        }
        // The handle re-reads the file at its next use.
        if let Some(h) = h {
            h.header = None;
        }
        plan.backup = Some(backup);
        Ok(plan)
    }
}
