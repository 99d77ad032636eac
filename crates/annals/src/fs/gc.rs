//! Attachments (blobs a session keeps by themselves, listed in `attachments.jsonl`), reading a
//! blob by id, and garbage collection of the blobs nothing refers to any more.

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use super::blobs::{BlobDir, BlobFault};
use super::seam::{EntryKind, FileSystem};
use super::snapshot::with_snapshot;
use super::tree::file_name;
use super::FsStore;
use crate::blob::{Attachment, AttachmentMeta, BlobId, BlobUsage, GcReport};
use crate::codec::{FileKind, Version};
use crate::error::CorruptReason;
use crate::scan::{Checker, Delivery, Identity};
use crate::{Error, RawEntry, ReadMode, Result, SegmentId, SessionId};

/// The segment id in the header of a session's attachment index.
pub(crate) const ATTACHMENTS: SegmentId = SegmentId::from_uuid(uuid::Uuid::nil());

impl<F: FileSystem> FsStore<F> {
    pub(crate) fn attach(
        &self,
        session: SessionId,
        bytes: &[u8],
        meta: &AttachmentMeta,
    ) -> Result<Attachment> {
        if bytes.len() > self.options.max_entry_bytes {
            return Err(Error::EntryTooLarge {
                size: bytes.len(),
                limit: self.options.max_entry_bytes,
            });
        }
        let dir = self
            .tree
            .session(session)?
            .ok_or(Error::SessionNotFound(session))?;
        let blobs = BlobDir::new(&self.tree, &dir, self.options.max_entry_bytes);
        let _lock = blobs.lock(false)?;
        // Where the index's format keeps its blobs: an index made by an older version keeps
        // them in files of their own, which that version reads.
        let key = (session, ATTACHMENTS, FileKind::Attachments);
        let version = match self.handle(key)? {
            Some(handle) => super::lock(&handle).version(&self.tree)?,
            None => Version::NEW_FILES,
        };
        let id = if version.packs_blobs() {
            let id = BlobId::of(bytes);
            blobs.pack_all(&self.packs, &[(id, bytes)], self.packing(version))?;
            id
        } else {
            blobs.put(bytes)?
        };
        let attachment = Attachment {
            id,
            len: bytes.len() as u64,
            meta: meta.clone(),
            created_ms: crate::now_ms(),
        };
        let index = RawEntry::from_value(&attachment)?;
        self.append_aux(
            (session, ATTACHMENTS, FileKind::Attachments),
            std::slice::from_ref(&index),
        )?;
        Ok(attachment)
    }

    pub(crate) fn attachments(&self, session: SessionId) -> Result<Vec<Attachment>> {
        let dir = self
            .tree
            .session(session)?
            .ok_or(Error::SessionNotFound(session))?;
        let mut out = Vec::new();
        self.each_attachment(session, &dir, &mut |a| {
            out.push(a);
            Ok(())
        })?;
        Ok(out)
    }

    /// Hands every attachment of the session's index to `f`, in order, holding none of them:
    /// what the index holds never decides what is in memory.
    fn each_attachment<T: serde::de::DeserializeOwned>(
        &self,
        session: SessionId,
        dir: &super::tree::Dir<F>,
        f: &mut dyn FnMut(T) -> Result<()>,
    ) -> Result<()> {
        let name = file_name(ATTACHMENTS, FileKind::Attachments);
        let identity = Identity {
            kind: FileKind::Attachments,
            session,
            segment: ATTACHMENTS,
        };
        with_snapshot(&self.tree, dir, &name, |reader, len| {
            let checker = Checker::new(ReadMode::Strict, 0, true, Some(identity));
            reader.scan(0, len, checker, &mut |delivery| {
                if let Delivery::Entry { seq, json, .. } = delivery {
                    f(
                        serde_json::from_str(json).map_err(|source| Error::Deserialize {
                            segment: ATTACHMENTS,
                            seq,
                            source,
                        })?,
                    )?;
                }
                Ok(ControlFlow::Continue(()))
            })
        })?;
        Ok(())
    }

    pub(crate) fn blob(&self, session: SessionId, id: &BlobId) -> Result<Vec<u8>> {
        let Some(dir) = self.tree.session(session)? else {
            return Err(Error::BlobNotFound { session, id: *id });
        };
        let blobs = BlobDir::new(&self.tree, &dir, self.options.max_entry_bytes);
        match blobs.read(id, None)? {
            Ok(bytes) => Ok(bytes),
            Err(BlobFault::Missing) => Err(Error::BlobNotFound { session, id: *id }),
            Err(fault) => Err(Error::Corrupt {
                path: blobs.path(id),
                line: 0,
                offset: 0,
                reason: CorruptReason::Blob {
                    id: *id,
                    problem: fault,
                },
            }),
        }
    }

    /// The session's blobs on disk, read from the pack's record headers and the blob files'
    /// sizes: creates and opens nothing for writing, follows no link.
    ///
    /// # Errors
    /// [`Error::SessionNotFound`]; I/O errors; [`Error::NotOurs`] for a link where `blobs/` or
    /// the pack should be.
    pub fn blob_usage(&self, session: SessionId) -> Result<BlobUsage> {
        let dir = self
            .tree
            .session(session)?
            .ok_or(Error::SessionNotFound(session))?;
        let blobs = BlobDir::new(&self.tree, &dir, self.options.max_entry_bytes);
        let listed = blobs.list()?;
        Ok(BlobUsage {
            count: listed.len() as u64,
            bytes: listed.iter().map(|(_, len)| len).sum(),
        })
    }

    /// Removes the blobs nothing in the session refers to, under the blob lock held exclusive
    /// (no append is between writing a blob and appending the line that refers to it). A dry
    /// run creates and opens nothing for writing.
    pub(crate) fn collect_blobs(&self, session: SessionId, dry_run: bool) -> Result<GcReport> {
        let dir = self
            .tree
            .session(session)?
            .ok_or(Error::SessionNotFound(session))?;
        let blobs = BlobDir::new(&self.tree, &dir, self.options.max_entry_bytes);
        if blobs.root()?.is_none() {
            // Never had a blob: nothing to collect, and nothing to create (not even the lock).
            return Ok(GcReport::default());
        }
        let _lock = if dry_run {
            blobs.lock_existing(true)?
        } else {
            blobs.lock(true)?
        };
        // What is there first, then which of it is referred to: the set held is bounded by the
        // blobs that exist, not by the references the session's files claim.
        let mut listed = blobs.list()?;
        // An id both packed and in a file of its own counts once.
        listed.dedup_by_key(|(id, _)| *id);
        let existing: BTreeSet<BlobId> = listed.iter().map(|(id, _)| *id).collect();
        let referenced = self.referenced_blobs(session, &dir, &existing)?;
        if !dry_run {
            blobs.compact(&self.packs, &|id| referenced.contains(id))?;
        }
        let mut report = GcReport::default();
        for (id, len) in listed {
            if referenced.contains(&id) {
                report.kept += 1;
                continue;
            }
            if !dry_run {
                blobs.remove(&id)?;
            }
            report.orphans.push(id);
            report.orphan_bytes += len;
        }
        Ok(report)
    }

    /// Which of the blobs `among` a line of a log, trace or index file of the session, or an
    /// attachment, refers to.
    fn referenced_blobs(
        &self,
        session: SessionId,
        dir: &super::tree::Dir<F>,
        among: &BTreeSet<BlobId>,
    ) -> Result<BTreeSet<BlobId>> {
        let mut referenced = BTreeSet::new();
        for entry in self.tree.list(dir)? {
            let is_log = entry.name.ends_with(".jsonl") && !entry.name.starts_with('.');
            if !is_log || entry.kind != EntryKind::File {
                continue;
            }
            with_snapshot(&self.tree, dir, &entry.name, |reader, len| {
                let checker = Checker::new(ReadMode::Tolerant, 0, false, None);
                reader.scan(0, len, checker, &mut |delivery| {
                    if let Delivery::Blob { reference, .. } = delivery {
                        if among.contains(&reference.sha256) {
                            referenced.insert(reference.sha256);
                        }
                    }
                    Ok(ControlFlow::Continue(()))
                })
            })?;
        }
        /// All gc needs of an attachment.
        #[derive(serde::Deserialize)]
        struct Id {
            id: BlobId,
        }
        self.each_attachment(session, dir, &mut |Id { id }| {
            if among.contains(&id) {
                referenced.insert(id);
            }
            Ok(())
        })?;
        Ok(referenced)
    }
}
