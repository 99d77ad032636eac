//! Creating segments and appending to them (and to traces and the attachment index). Entries
//! too long for a line go to blobs first, durably, under the session's blob lock; then the
//! lines go in with one `write(2)` under the file's exclusive lock (`handle.rs`).

use super::blobs::{BlobDir, BlobLock};
use super::cache::{Key, Shared};
use super::lease::Writer;
use super::seam::FileSystem;
use super::{lock, Durability, FsStore};
use crate::codec::FileKind;
use crate::store::{check_entry_size, Prepared};
use crate::{Error, RawEntry, Result, SegmentId, SessionId, Tip};

/// What one write of lines knows about itself: what every line of it may record (line format
/// v2 records the time, the durable watermark and how many lines of the write follow; v1
/// lines keep only their sequence number).
#[derive(Debug, Clone, Copy)]
pub(crate) struct WriteMeta {
    /// Sequence number of the first line.
    pub first_seq: u64,
    /// When the store appended it, milliseconds since the epoch (the same for every line):
    /// taken only for a file whose format records it ([`write_time`]), so that a v1 append
    /// costs no clock read.
    #[allow(dead_code, reason = "line format v2 writes it; v1 lines keep no time")]
    pub appended_ms: Option<u64>,
    /// Entries below this sequence number were known durable when the write was made.
    #[allow(
        dead_code,
        reason = "line format v2 writes it; v1 lines keep no watermark"
    )]
    pub durable_below: u64,
}

/// The append time a write of a file of format `version` records: none for version 1.
pub(crate) fn write_time(version: u64) -> Option<u64> {
    (version >= 2).then(crate::now_ms)
}

/// Encodes the lines of one write. The one place a write's lines are made, so that a line
/// format that records more about each write changes only this.
pub(crate) fn encode_write(
    meta: &WriteMeta,
    entries: &[Prepared<'_>],
    out: &mut Vec<u8>,
) -> Result<()> {
    for (seq, entry) in (meta.first_seq..).zip(entries) {
        entry.encode(seq, out)?;
    }
    Ok(())
}

impl<F: FileSystem> FsStore<F> {
    pub(crate) fn durable(&self) -> bool {
        self.options.durability == Durability::Sync
    }

    pub(crate) fn create_segment_file(
        &self,
        session: SessionId,
        segment: SegmentId,
        initial: &[RawEntry],
    ) -> Result<Tip> {
        if self.segment_exists(session, segment)? {
            // Checked first so that a refused create writes no blobs; the link below is what
            // makes the refusal atomic.
            return Err(Error::SegmentExists { session, segment });
        }
        for e in initial {
            check_entry_size(e, self.options.max_entry_bytes)?;
        }
        let (prepared, _blob_lock) = self.prepare(session, initial, true)?;
        let mut body = Vec::new();
        let write = WriteMeta {
            first_seq: 0,
            appended_ms: write_time(crate::codec::Version::NEW_FILES.number()),
            durable_below: 0,
        };
        encode_write(&write, &prepared, &mut body)?;
        let header = super::atomic::new_header(session, segment, FileKind::Segment, None);
        if !self.create_file(&header, &body, None)? {
            return Err(Error::SegmentExists { session, segment });
        }
        Ok(Tip {
            count: initial.len() as u64,
            generation: 0,
        })
    }

    pub(crate) fn append_one(
        &self,
        session: SessionId,
        segment: SegmentId,
        entry: &RawEntry,
    ) -> Result<Tip> {
        let handle = self.segment_handle(session, segment)?;
        self.append_one_to(&handle, self.writer(), session, entry)
    }

    /// One entry through `handle`, as `writer`: without allocating on the common path.
    pub(crate) fn append_one_to(
        &self,
        handle: &Shared<F>,
        writer: Writer,
        session: SessionId,
        entry: &RawEntry,
    ) -> Result<Tip> {
        check_entry_size(entry, self.options.max_entry_bytes)?;
        let (prepared, _blob_lock) = match Prepared::of(entry) {
            inline @ Prepared::Inline(_) => (inline, None),
            Prepared::Blob(_) => {
                let (mut prepared, lock) =
                    self.prepare(session, std::slice::from_ref(entry), false)?;
                match prepared.pop() {
                    Some(p) => (p, lock),
                    None => return self.writing(handle, writer, |h| Ok(h.tip())),
                }
            }
        };
        let one = std::slice::from_ref(&prepared);
        self.writing(handle, writer, |h| {
            h.append(&self.tree, one, None, self.durable())
        })
    }

    pub(crate) fn append_entries(
        &self,
        session: SessionId,
        segment: SegmentId,
        entries: &[RawEntry],
        expected: Option<Tip>,
    ) -> Result<Tip> {
        let handle = self.segment_handle(session, segment)?;
        self.append_entries_to(&handle, self.writer(), session, entries, expected)
    }

    /// Entries through `handle`, as `writer`; `expected` is the detector's tip.
    pub(crate) fn append_entries_to(
        &self,
        handle: &Shared<F>,
        writer: Writer,
        session: SessionId,
        entries: &[RawEntry],
        expected: Option<Tip>,
    ) -> Result<Tip> {
        let (prepared, _blob_lock) = self.prepare(session, entries, false)?;
        self.writing(handle, writer, |h| {
            h.append(&self.tree, &prepared, expected, self.durable())
        })
    }

    pub(crate) fn sync_segment(&self, session: SessionId, segment: SegmentId) -> Result<()> {
        let handle = self.segment_handle(session, segment)?;
        self.sync_handle(&handle)
    }

    /// One `fdatasync` of the handle's file. No lock: it writes nothing, so it is anyone's to
    /// ask for, a lease's or not.
    pub(crate) fn sync_handle(&self, handle: &Shared<F>) -> Result<()> {
        let mut h = lock(handle);
        h.sync(&self.tree.fs)
    }

    /// Decides how each entry goes into its line, and writes the blobs of those too long for
    /// one, durably, before any line refers to them. Sizes are checked first, so a refused batch
    /// writes nothing. The returned lock must be held until the lines are appended. With
    /// `create_session`, a missing session directory is made (a new segment's).
    pub(crate) fn prepare<'a>(
        &self,
        session: SessionId,
        entries: &'a [RawEntry],
        create_session: bool,
    ) -> Result<(Vec<Prepared<'a>>, Option<BlobLock<F>>)> {
        for e in entries {
            check_entry_size(e, self.options.max_entry_bytes)?;
        }
        let prepared: Vec<Prepared<'a>> = entries.iter().map(Prepared::of).collect();
        if !prepared.iter().any(|p| matches!(p, Prepared::Blob(_))) {
            return Ok((prepared, None));
        }
        let dir = if create_session {
            self.tree.make_session(session)?
        } else {
            self.tree
                .session(session)?
                .ok_or(Error::SessionNotFound(session))?
        };
        let blobs = BlobDir::new(&self.tree, &dir, self.options.max_entry_bytes);
        let lock = blobs.lock(false)?;
        for (p, e) in prepared.iter().zip(entries) {
            if let Prepared::Blob(_) = p {
                blobs.put(e.as_str().as_bytes())?;
            }
        }
        Ok((prepared, lock))
    }

    /// Appends to a trace or the attachment index, creating the file on first use.
    pub(crate) fn append_aux(&self, key: Key, events: &[RawEntry]) -> Result<()> {
        let (session, segment, kind) = key;
        let owner_exists = || -> Result<bool> {
            Ok(match kind {
                FileKind::Attachments => self.tree.session(session)?.is_some(),
                _ => self.segment_exists(session, segment)?,
            })
        };
        let missing = || match kind {
            FileKind::Attachments => Error::SessionNotFound(session),
            _ => Error::SegmentNotFound { session, segment },
        };
        // A cached handle can outlive its file: another store may have deleted the session,
        // and the segment may have been created again since, without this file. Such a handle
        // finds no file; drop it and start over once, creating the file if its owner is there.
        for _ in 0..2 {
            let handle = match self.handle(key)? {
                Some(h) => h,
                None => {
                    if !owner_exists()? {
                        return Err(missing());
                    }
                    let header = super::atomic::new_header(session, segment, kind, None);
                    // Losing the race to another creator is fine: the file is there either way.
                    self.create_file(&header, &[], None)?;
                    self.handle(key)?.ok_or_else(missing)?
                }
            };
            let (prepared, _blob_lock) = self.prepare(session, events, false)?;
            let appended = self.writing(&handle, self.writer(), |h| {
                h.append(&self.tree, &prepared, None, self.durable())
            });
            match appended {
                Err(Error::SegmentNotFound { .. }) => {
                    self.forget(key, &handle);
                }
                other => return other.map(|_| ()),
            }
        }
        Err(missing())
    }
}
