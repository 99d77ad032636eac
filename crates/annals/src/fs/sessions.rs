//! The session directory's life: listings (sessions, segments), existence, modification times,
//! the tip of a segment without caching a handle, and deleting a whole session. Listings skip
//! every name that does not parse as ours, and everything that is not a directory (sessions) or
//! a regular file (segments).

use std::io;
use std::time::SystemTime;

use super::seam::{EntryKind, FileSystem};
use super::snapshot::with_snapshot;
use super::tree::{file_name, Dir, Tree};
use super::{lock, FsStore};
use crate::codec::{FileKind, Header, Version};
use crate::scan::Identity;
use crate::{Error, Result, SegmentId, SegmentInfo, SessionId, Tip};

impl<F: FileSystem> FsStore<F> {
    pub(crate) fn segment_tip(&self, session: SessionId, segment: SegmentId) -> Result<Tip> {
        if let Some(handle) = self.cached((session, segment, FileKind::Segment)) {
            let mut h = lock(&handle);
            if h.lease.is_some() {
                // A lease of this store holds the file: nobody else writes it, so its tally is
                // the tip (and a reader must not wait for the lease).
                return Ok(h.tip());
            }
            // A reader: a file no writer has settled yet is answered as replay reads it.
            let tip = h.locked(&self.tree, |h| match (&h.header, h.settled) {
                (Some((header, end)), false) => {
                    let (size, _) = self
                        .tree
                        .fs
                        .size_and_links(&h.file)
                        .map_err(|e| Error::io("stat", &h.path, e))?;
                    self.unsettled_tip(h.reader(&self.tree.fs), (header, *end), size, h.identity)
                }
                _ => Ok(h.tip()),
            });
            match tip {
                // Another process's lease: read the file as readers do, under the shared lock.
                Err(Error::Locked { .. }) => {}
                other => return other,
            }
        }
        self.probe(session, segment).map(|(_, tip, _)| tip)
    }

    /// True if the segment's log is a regular file in a session directory (a link or anything
    /// else in its place is no segment).
    pub(crate) fn segment_exists(&self, session: SessionId, segment: SegmentId) -> Result<bool> {
        let dir = match self.tree.session(session) {
            Ok(Some(dir)) => dir,
            Ok(None) | Err(Error::NotOurs { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        let name = file_name(segment, FileKind::Segment);
        Ok(self
            .tree
            .stat(&dir, &name)?
            .is_some_and(|s| s.kind == EntryKind::File))
    }

    pub(crate) fn sessions(&self) -> Result<Vec<SessionId>> {
        let mut sessions: Vec<SessionId> = self
            .tree
            .list(&self.tree.root)?
            .into_iter()
            .filter(|e| e.kind == EntryKind::Directory)
            .filter_map(|e| e.name.parse().ok())
            .collect();
        sessions.sort_unstable_by(|a, b| b.cmp(a));
        Ok(sessions)
    }

    pub(crate) fn segments(&self, session: SessionId) -> Result<Vec<SegmentInfo>> {
        let dir = self
            .tree
            .session(session)?
            .ok_or(Error::SessionNotFound(session))?;
        let mut ids: Vec<SegmentId> = self
            .tree
            .list(&dir)?
            .into_iter()
            .filter(|e| e.kind == EntryKind::File)
            .filter_map(|e| e.name.strip_suffix(".jsonl")?.parse().ok())
            .collect();
        ids.sort_unstable_by(|a, b| b.cmp(a));
        let mut out = Vec::with_capacity(ids.len());
        for segment in ids {
            match self.probe_in(&dir, session, segment) {
                Ok((header, tip, (bytes, modified))) => out.push(SegmentInfo {
                    session,
                    segment,
                    tip,
                    bytes,
                    modified,
                    created_ms: header.created_ms,
                    fork: header.fork,
                    damage: None,
                }),
                // Deleted between listing and probing: not there any more.
                Err(Error::SegmentNotFound { .. }) => {}
                Err(e) => {
                    let stat = self
                        .tree
                        .stat(&dir, &file_name(segment, FileKind::Segment))
                        .ok()
                        .flatten();
                    out.push(SegmentInfo {
                        session,
                        segment,
                        tip: Tip::default(),
                        bytes: stat.map_or(0, |s| s.len),
                        modified: stat.map_or(SystemTime::UNIX_EPOCH, |s| s.modified),
                        created_ms: 0,
                        fork: None,
                        damage: Some(crate::Damage::of(&e)),
                    });
                }
            }
        }
        Ok(out)
    }

    pub(crate) fn session_of(&self, segment: SegmentId) -> Result<Option<SessionId>> {
        for session in self.sessions()? {
            if self.segment_exists(session, segment)? {
                return Ok(Some(session));
            }
        }
        Ok(None)
    }

    pub(crate) fn modified(&self, session: SessionId) -> Result<SystemTime> {
        let dir = self
            .tree
            .session(session)?
            .ok_or(Error::SessionNotFound(session))?;
        let own = self.tree.stat(&self.tree.root, &session.to_string())?;
        let mut newest = own.map_or(SystemTime::UNIX_EPOCH, |s| s.modified);
        for entry in self.tree.list(&dir)? {
            if let Ok(Some(stat)) = self.tree.stat(&dir, &entry.name) {
                newest = newest.max(stat.modified);
            }
        }
        Ok(newest)
    }

    /// Deletes the session: its directory is first renamed to a hidden name and that is made
    /// durable, so that a crash leaves the session whole or gone, never half deleted; then the
    /// hidden tree is removed. Links inside are removed as links, never followed.
    pub(crate) fn remove_session(&self, session: SessionId) -> Result<()> {
        let tree = &self.tree;
        let name = session.to_string();
        if tree.session(session)?.is_none() {
            return Err(Error::SessionNotFound(session));
        }
        self.forget_session(session);
        let hidden = format!(".{name}.{}.deleted", uuid::Uuid::now_v7().simple());
        let root = &tree.root;
        tree.fs
            .rename(&root.handle, &name, &root.handle, &hidden)
            .map_err(|e| Error::io("delete", root.path_of(&name), e))?;
        tree.sync_dir(root)?;
        remove_tree(tree, root, &hidden)?;
        tree.sync_dir(root)
    }

    /// Header, tip and (size, modification time) of a segment, read without caching a handle.
    fn probe(
        &self,
        session: SessionId,
        segment: SegmentId,
    ) -> Result<(Header, Tip, (u64, SystemTime))> {
        let dir = self
            .tree
            .session(session)?
            .ok_or(Error::SegmentNotFound { session, segment })?;
        self.probe_in(&dir, session, segment)
    }

    fn probe_in(
        &self,
        dir: &Dir<F>,
        session: SessionId,
        segment: SegmentId,
    ) -> Result<(Header, Tip, (u64, SystemTime))> {
        let identity = Identity {
            kind: FileKind::Segment,
            session,
            segment,
        };
        let name = file_name(segment, FileKind::Segment);
        let probed = with_snapshot(&self.tree, dir, &name, |reader, size| {
            let (header, header_end) = reader.header(identity)?;
            let marks = header.version().is_some_and(Version::has_marks);
            let count = match reader.tail(size, (header_end, 0)) {
                // A last line that does not vouch for the entries before it: they are checked
                // (their writes and blobs), as a writer's recovery and replay check them, so
                // that the tip is what replay delivers (a line whose blob a power cut lost is
                // part of an interrupted tail). The handle decides the same (`handle.rs`).
                Ok(tail) if tail.unvouched(marks) => {
                    self.unsettled_tip(reader, (&header, header_end), size, identity)?
                        .count
                }
                Ok(tail) => tail.count,
                // A format-2 file that ends inside a write, or in bytes that are no line:
                // the entries before an interrupted tail, as replay reads them.
                Err(Error::Corrupt { .. }) if marks => {
                    self.unsettled_tip(reader, (&header, header_end), size, identity)?
                        .count
                }
                Err(e) => return Err(e),
            };
            Ok((header, count, size))
        })?;
        let Some((_, (header, count, size))) = probed else {
            return Err(Error::SegmentNotFound { session, segment });
        };
        let modified = self
            .tree
            .stat(dir, &name)?
            .map_or(SystemTime::UNIX_EPOCH, |s| s.modified);
        let tip = Tip {
            count,
            generation: header.generation,
        };
        Ok((header, tip, (size, modified)))
    }
}

/// Removes the directory `name` in `parent` and everything in it, depth first, through
/// directory handles opened without following links.
fn remove_tree<F: FileSystem>(tree: &Tree<F>, parent: &Dir<F>, name: &str) -> Result<()> {
    if let Some(dir) = tree.dir(parent, name)? {
        for entry in tree.list(&dir)? {
            if entry.kind == EntryKind::Directory {
                remove_tree(tree, &dir, &entry.name)?;
            } else {
                match tree.fs.remove_file(&dir.handle, &entry.name) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io("delete", dir.path_of(&entry.name), e)),
                }
            }
        }
    }
    match tree.fs.remove_dir(&parent.handle, name) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("delete", parent.path_of(name), e)),
    }
}
