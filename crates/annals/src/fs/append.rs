//! Creating segments and appending to them (and to traces and the attachment index). Entries
//! too long for a line go to blobs first, durably, under the session's blob lock; then the
//! lines go in with one `write(2)` under the file's exclusive lock (`handle.rs`).

use super::blobs::{BlobDir, BlobLock};
use super::cache::{Key, Shared};
use super::group::Commit;
use super::handle::Appended;
use super::lease::Writer;
use super::seam::FileSystem;
use super::{lock, Durability, FsStore};
use crate::codec::{FileKind, Frame, Marks, Version, MAX_WRITE_LINES};
use crate::store::{check_entry_size, Prepared};
use crate::{BlobId, Error, RawEntry, Result, SegmentId, SessionId, Tip};

/// What every line of one write records besides its entry. Version-2 lines record the append
/// time, the writer's durable watermark and how many lines of the write follow; version-1 lines
/// only their sequence number.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WriteMeta {
    /// The version of the file the write goes to.
    pub version: Version,
    /// Sequence number of the first line.
    pub first_seq: u64,
    /// When the store made the write, milliseconds since the epoch, the same on every line: one
    /// clock read per write, none for a version-1 file ([`write_time`]).
    pub appended_ms: u64,
    /// What the lines claim durable.
    pub durable: Durable,
}

/// What the lines of a write claim durable (their `u`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durable {
    /// The entries below this count: the writer's durable watermark `D`. Each line records
    /// `u = seq − D`.
    Below(u64),
    /// The lines go into a file that is published only once it is durable (a new segment's
    /// initial entries): none of them can be lost on its own, so each is framed as a write of
    /// its own (`more = 0`) that claims every entry before it (`u = 0`). Damage among them
    /// then loses only the entries from there on, never the whole creation.
    Published,
}

/// The append time a write to a file of `version` records: none (0, not written) for version 1,
/// which keeps no time.
pub(crate) fn write_time(version: Version) -> u64 {
    match version {
        Version::V1 => 0,
        _ => crate::now_ms(),
    }
}

/// Encodes the lines of one write: the one place a write's lines are framed. A batch of more
/// than [`MAX_WRITE_LINES`] entries becomes consecutive writes of at most that many lines (one
/// `write(2)` still carries them all; across a power cut each is all-or-nothing on its own).
/// The lines of a [`Durable::Published`] file are each a write of their own.
///
/// # Errors
/// What the encoder refuses (an entry too large for its line, a sequence number past
/// `MAX_SEQ`); `out` then holds the lines before the refused one, and must not be written.
pub(crate) fn encode_write(
    meta: &WriteMeta,
    entries: &[Prepared<'_>],
    out: &mut Vec<u8>,
) -> Result<()> {
    let per_write = match meta.durable {
        Durable::Published => 1,
        Durable::Below(_) => usize::try_from(MAX_WRITE_LINES).unwrap_or(usize::MAX),
    };
    let mut seq = meta.first_seq;
    for write in entries.chunks(per_write) {
        let mut more = write.len() as u64;
        for entry in write {
            more -= 1;
            let frame = match meta.version {
                Version::V1 => Frame::v1(seq),
                _ => Frame::v2(
                    seq,
                    Marks {
                        appended_ms: meta.appended_ms,
                        unsynced: match meta.durable {
                            Durable::Below(d) => seq.saturating_sub(d),
                            Durable::Published => 0,
                        },
                        more,
                    },
                ),
            };
            entry.encode(&frame, out)?;
            seq = seq.saturating_add(1);
        }
    }
    Ok(())
}

impl<F: FileSystem> FsStore<F> {
    pub(crate) fn durable(&self) -> bool {
        self.options.durability == Durability::Sync
    }

    /// How blobs for a file of `version` go into the pack: durably in `Sync` mode, compressed
    /// if the store compresses and the version allows it.
    pub(crate) fn packing(&self, version: Version) -> super::pack::Packing {
        super::pack::Packing::new(version, self.options.blob_compression, self.durable())
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
        let version = Version::NEW_FILES;
        let (prepared, _blob_lock) = self.prepare(session, initial, version, true)?;
        let mut body = Vec::new();
        let write = WriteMeta {
            version,
            first_seq: 0,
            appended_ms: write_time(version),
            durable: Durable::Published,
        };
        encode_write(&write, &prepared, &mut body)?;
        let header = super::atomic::new_header(session, segment, FileKind::Segment, None);
        if !self.create_file(&header, &body, None, &[])? {
            return Err(Error::SegmentExists { session, segment });
        }
        Ok(Tip {
            count: initial.len() as u64,
            generation: 0,
        })
    }

    /// One entry. An entry that fits its line goes in under one acquisition of the handle;
    /// one kept as a blob (or an append that finds the file's version changed) takes the
    /// general path.
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
        let version = lock(handle).version(&self.tree)?;
        let prepared = Prepared::of(entry, version);
        if let Prepared::Inline(_) = prepared {
            let one = std::slice::from_ref(&prepared);
            let appended = self.writing(handle, writer, |h| {
                h.append(
                    &self.tree,
                    &|h| self.settle(h),
                    one,
                    version,
                    None,
                    self.durable(),
                )
            })?;
            if let Appended::Done(tip, commit) = appended {
                return self.committed(handle, tip, commit);
            }
        }
        self.append_entries_to(handle, writer, session, std::slice::from_ref(entry), None)
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

    /// Entries through `handle`, as `writer`; `expected` is the detector's tip. Prepares them
    /// for the version of the file the handle has (blobs written first), then appends them.
    /// The version is known before the file's lock is taken (blobs go in before it); if the
    /// file at the name turns out to be of another version under the lock (deleted and made
    /// again meanwhile), they are prepared once more for it.
    pub(crate) fn append_entries_to(
        &self,
        handle: &Shared<F>,
        writer: Writer,
        session: SessionId,
        entries: &[RawEntry],
        expected: Option<Tip>,
    ) -> Result<Tip> {
        let mut version = lock(handle).version(&self.tree)?;
        // The writer's recovery judges an end no line vouches for by its blobs, so it looks
        // before this call packs any: the same bytes packed again would make whole the line of
        // a blob a power cut lost, and bring back the interrupted tail readers were told of.
        // (An append of lines only settles under the one lock of its write.)
        let packs = entries.iter().any(|e| Prepared::spills(e, version));
        if packs && !lock(handle).settled {
            self.writing(handle, writer, |h| {
                h.settle_end(&self.tree, &|h| self.settle(h))
            })?;
        }
        for _ in 0..3 {
            let (prepared, blob_lock) = self.prepare(session, entries, version, false)?;
            let appended = self.writing(handle, writer, |h| {
                h.append(
                    &self.tree,
                    &|h| self.settle(h),
                    &prepared,
                    version,
                    expected,
                    self.durable(),
                )
            })?;
            match appended {
                Appended::Done(tip, commit) => {
                    // The lines that refer to the blobs are in: gc may look again.
                    drop(blob_lock);
                    return self.committed(handle, tip, commit);
                }
                Appended::Reprepare(found) => version = found,
            }
        }
        let path = lock(handle).path.clone();
        let changing = std::io::Error::other(
            "the file was replaced by one of another format version at every try",
        );
        Err(Error::io("append to", path, changing))
    }

    /// The end of an append: for a `Sync` one, the wait for the group commit's `fdatasync`
    /// (`group.rs`), with neither the handle nor the file's lock held; a failure poisons the
    /// handle for good.
    fn committed(&self, handle: &Shared<F>, tip: Tip, commit: Option<Commit<F>>) -> Result<Tip> {
        let Some(commit) = commit else {
            return Ok(tip);
        };
        match commit.wait(&self.tree.fs) {
            Ok(()) => Ok(tip),
            Err(e) => {
                // The failed group's, even if the handle has moved on to another file since.
                lock(handle).learn_failure(&commit.file);
                Err(e)
            }
        }
    }

    pub(crate) fn sync_segment(&self, session: SessionId, segment: SegmentId) -> Result<()> {
        let handle = self.segment_handle(session, segment)?;
        self.sync_handle(&handle)
    }

    /// One `fdatasync` of the handle's file, after one of the session's blob pack (the lines
    /// it makes durable may refer to blobs a `Buffered` append packed: they must be durable
    /// first). No lock: it writes nothing, so it is anyone's to ask for, a lease's or not.
    pub(crate) fn sync_handle(&self, handle: &Shared<F>) -> Result<()> {
        let session = lock(handle).identity.session;
        let dir = self.tree.session(session)?;
        let pack = || dir.as_ref().map_or(Ok(()), |dir| self.pack_durable(dir));
        let mut h = lock(handle);
        h.sync(&self.tree.fs, &pack)
    }

    /// Makes the session's blob pack durable, if it has one: before anything makes lines
    /// durable that may refer to blobs packed without an `fdatasync`.
    pub(crate) fn pack_durable(&self, dir: &super::tree::Dir<F>) -> Result<()> {
        BlobDir::new(&self.tree, dir, self.options.max_entry_bytes).sync_pack(&self.packs)
    }

    /// Decides how each entry goes into a line of a file of `version`, and writes the blobs of
    /// those too long for one, durably, before any line refers to them. Sizes are checked first, so a refused batch
    /// writes nothing. The returned lock must be held until the lines are appended. With
    /// `create_session`, a missing session directory is made (a new segment's).
    pub(crate) fn prepare<'a>(
        &self,
        session: SessionId,
        entries: &'a [RawEntry],
        version: Version,
        create_session: bool,
    ) -> Result<(Vec<Prepared<'a>>, Option<BlobLock<F>>)> {
        for e in entries {
            check_entry_size(e, self.options.max_entry_bytes)?;
        }
        let prepared: Vec<Prepared<'a>> =
            entries.iter().map(|e| Prepared::of(e, version)).collect();
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
        // Each with the id its reference holds (hashed once, when it was prepared).
        let spilled = prepared.iter().zip(entries).filter_map(|(p, e)| match p {
            Prepared::Blob(reference) => Some((reference.sha256, e.as_str().as_bytes())),
            Prepared::Inline(_) => None,
        });
        if version.packs_blobs() {
            // One write (and in `Sync` mode one fdatasync) for all the blobs of the call.
            let all: Vec<(BlobId, &[u8])> = spilled.collect();
            blobs.pack_all(&self.packs, &all, self.packing(version))?;
        } else {
            for (_, bytes) in spilled {
                blobs.put(bytes)?;
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
                    self.create_file(&header, &[], None, &[])?;
                    self.handle(key)?.ok_or_else(missing)?
                }
            };
            match self.append_entries_to(&handle, self.writer(), session, events, None) {
                Err(Error::SegmentNotFound { .. }) => {
                    self.forget(key, &handle);
                }
                other => return other.map(|_| ()),
            }
        }
        Err(missing())
    }
}
