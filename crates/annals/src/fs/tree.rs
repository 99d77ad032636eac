//! Where things are: the store's root handle, the names of its files, and the resolution of a
//! session's directory and files below it, one component at a time through the seam. This is
//! where the seam's [`Lookup::NotOurs`] becomes [`Error::NotOurs`] with the path it concerns.

use std::path::{Path, PathBuf};

use super::seam::{Access, DirEntry, EntryKind, FileSystem, Lookup, Stat};
use crate::codec::FileKind;
use crate::scan::Identity;
use crate::{Error, Result, SegmentId, SessionId};

/// An open directory of the store, with its path for messages.
#[derive(Debug)]
pub(crate) struct Dir<F: FileSystem> {
    pub(crate) handle: F::Dir,
    pub(crate) path: PathBuf,
}

impl<F: FileSystem> Dir<F> {
    pub(crate) fn path_of(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

/// The file system and the store's root, opened once.
#[derive(Debug)]
pub(crate) struct Tree<F: FileSystem> {
    pub(crate) fs: F,
    pub(crate) root: Dir<F>,
}

/// The name of a segment's file of `kind` in its session directory.
pub(crate) fn file_name(segment: SegmentId, kind: FileKind) -> String {
    match kind {
        FileKind::Segment => format!("{segment}.jsonl"),
        FileKind::Trace => format!("{segment}.trace.jsonl"),
        FileKind::Attachments => "attachments.jsonl".to_string(),
    }
}

pub(crate) fn not_ours(path: PathBuf, found: EntryKind, expected: EntryKind) -> Error {
    Error::NotOurs {
        path,
        found,
        expected,
    }
}

impl<F: FileSystem> Tree<F> {
    /// Opens (creating) the root and checks its file system type.
    pub(crate) fn open(fs: F, root: &Path, allow_unsafe_fs: bool) -> Result<Self> {
        let handle = fs
            .open_root(root, true)
            .map_err(|e| Error::io("open store root", root, e))?;
        if !allow_unsafe_fs {
            if let Some(name) = fs.unsafe_fs(&handle) {
                return Err(Error::UnsafeFileSystem {
                    path: root.to_path_buf(),
                    fs: name,
                });
            }
        }
        Ok(Self {
            fs,
            root: Dir {
                handle,
                path: root.to_path_buf(),
            },
        })
    }

    pub(crate) fn root_path(&self) -> &Path {
        &self.root.path
    }

    pub(crate) fn session_path(&self, session: SessionId) -> PathBuf {
        self.root.path_of(&session.to_string())
    }

    pub(crate) fn file_path(
        &self,
        session: SessionId,
        segment: SegmentId,
        kind: FileKind,
    ) -> PathBuf {
        self.session_path(session).join(file_name(segment, kind))
    }

    pub(crate) fn identity_path(&self, id: Identity) -> PathBuf {
        self.file_path(id.session, id.segment, id.kind)
    }

    /// The directory `name` in `parent`; `None` if missing.
    pub(crate) fn dir(&self, parent: &Dir<F>, name: &str) -> Result<Option<Dir<F>>> {
        let path = parent.path_of(name);
        match self.fs.open_dir(&parent.handle, name) {
            Ok(Lookup::Found(handle)) => Ok(Some(Dir { handle, path })),
            Ok(Lookup::Missing) => Ok(None),
            Ok(Lookup::NotOurs(found)) => Err(not_ours(path, found, EntryKind::Directory)),
            Err(e) => Err(Error::io("open directory", path, e)),
        }
    }

    /// The directory `name` in `parent`, created (mode `0700`) if missing; a new one's name is
    /// made durable in `parent` before it is used. Opened first: where it exists (every append
    /// with a blob after a session's first) that is the only call.
    pub(crate) fn make_dir(&self, parent: &Dir<F>, name: &str) -> Result<Dir<F>> {
        if let Some(dir) = self.dir(parent, name)? {
            return Ok(dir);
        }
        let created = self
            .fs
            .create_dir(&parent.handle, name)
            .map_err(|e| Error::io("create directory", parent.path_of(name), e))?;
        if created {
            self.sync_dir(parent)?;
        }
        self.dir(parent, name)?.ok_or_else(|| {
            // Removed again between creating and opening it (a concurrent delete).
            let gone = std::io::Error::new(std::io::ErrorKind::NotFound, "removed while in use");
            Error::io("open directory", parent.path_of(name), gone)
        })
    }

    /// The session's directory; `None` if the session does not exist.
    pub(crate) fn session(&self, session: SessionId) -> Result<Option<Dir<F>>> {
        self.dir(&self.root, &session.to_string())
    }

    /// The session's directory, created if needed.
    pub(crate) fn make_session(&self, session: SessionId) -> Result<Dir<F>> {
        self.make_dir(&self.root, &session.to_string())
    }

    /// Opens the regular file `name` in `dir`; `None` if missing.
    pub(crate) fn open_file(
        &self,
        dir: &Dir<F>,
        name: &str,
        access: Access,
    ) -> Result<Option<F::File>> {
        match self.fs.open_file(&dir.handle, name, access) {
            Ok(Lookup::Found(file)) => Ok(Some(file)),
            Ok(Lookup::Missing) => Ok(None),
            Ok(Lookup::NotOurs(found)) => Err(not_ours(dir.path_of(name), found, EntryKind::File)),
            Err(e) => Err(Error::io("open", dir.path_of(name), e)),
        }
    }

    /// Opens a segment's (trace's, index's) file from the root: `None` if it or its session
    /// is missing.
    pub(crate) fn open_identity(&self, id: Identity, access: Access) -> Result<Option<F::File>> {
        let Some(dir) = self.session(id.session)? else {
            return Ok(None);
        };
        self.open_file(&dir, &file_name(id.segment, id.kind), access)
    }

    pub(crate) fn sync_dir(&self, dir: &Dir<F>) -> Result<()> {
        self.fs
            .sync_dir(&dir.handle)
            .map_err(|e| Error::io("fsync directory", &dir.path, e))
    }

    pub(crate) fn stat(&self, dir: &Dir<F>, name: &str) -> Result<Option<Stat>> {
        self.fs
            .stat(&dir.handle, name)
            .map_err(|e| Error::io("stat", dir.path_of(name), e))
    }

    pub(crate) fn list(&self, dir: &Dir<F>) -> Result<Vec<DirEntry>> {
        self.fs
            .list(&dir.handle)
            .map_err(|e| Error::io("list", &dir.path, e))
    }
}
