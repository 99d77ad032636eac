//! Crash-atomic file creation and rewrite. A file is written whole under a temporary name,
//! fsynced, then published by `link` (creation: fails if the name exists, so it never
//! clobbers) or `rename` (replacement), and the directory is fsynced. So a name of ours always
//! holds a complete file, whatever moment a crash chooses.

use std::io;
use std::path::PathBuf;

use super::read::Reader;
use super::seam::{append_all, EntryKind, FileSystem};
use super::tree::{not_ours, Dir, Tree};
use super::FsStore;
use crate::codec::{self, FileKind, Header, Lineage, Version};
use crate::{Error, Result, SegmentId, SessionId};

/// A file being written under a temporary name (`.{stem}.{uuid}.tmp`), removed on drop unless
/// published.
pub(crate) struct TempFile<'t, F: FileSystem> {
    tree: &'t Tree<F>,
    dir: &'t Dir<F>,
    name: String,
    path: PathBuf,
    file: Option<F::File>,
}

impl<'t, F: FileSystem> TempFile<'t, F> {
    /// A new temporary file in `dir`, named after what it will become (`stem`).
    pub(crate) fn create(
        tree: &'t Tree<F>,
        dir: &'t Dir<F>,
        stem: impl std::fmt::Display,
    ) -> Result<Self> {
        let name = format!(".{stem}.{}.tmp", uuid::Uuid::now_v7().simple());
        let path = dir.path_of(&name);
        let file = tree
            .fs
            .create_new(&dir.handle, &name)
            .map_err(|e| Error::io("create", &path, e))?;
        Ok(Self {
            tree,
            dir,
            name,
            path,
            file: Some(file),
        })
    }

    pub(crate) fn file(&self) -> Result<&F::File> {
        self.file.as_ref().ok_or_else(|| {
            let gone = io::Error::new(io::ErrorKind::NotFound, "already published");
            Error::io("write", &self.path, gone)
        })
    }

    /// Appends `bytes` (in as many writes as it takes: nobody reads the file before it is
    /// published). An error (a full disk's `ENOSPC`, ...) means it is never published.
    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<()> {
        append_all(&self.tree.fs, self.file()?, bytes)
            .map_err(|e| Error::io("write", &self.path, e))
    }

    /// Appends bytes `from..to` of `src` (raw lines, never re-serialized).
    pub(crate) fn copy(&mut self, src: Reader<'_, F>, from: u64, to: u64) -> Result<()> {
        let mut buf = vec![0u8; 256 * 1024];
        let mut pos = from;
        while pos < to {
            let want = usize::try_from(to - pos)
                .unwrap_or(usize::MAX)
                .min(buf.len());
            let slot = buf.get_mut(..want).unwrap_or_default();
            let n = src.read_at_most(slot, pos)?;
            if n == 0 {
                let shrank =
                    io::Error::new(io::ErrorKind::UnexpectedEof, "source shrank while copying");
                return Err(Error::io("copy", src.path, shrank));
            }
            self.write(slot.get(..n).unwrap_or_default())?;
            pos += n as u64;
        }
        Ok(())
    }

    /// Takes the exclusive lock on the file before it has its name, so that a writer that
    /// replaces a file it appends to holds the new one's lock the moment others can open it.
    pub(crate) fn lock_exclusive(&self) -> Result<()> {
        self.tree
            .fs
            .lock(self.file()?, super::seam::LockKind::Exclusive)
            .map_err(|e| Error::io("lock", &self.path, e))
    }

    /// Makes the contents durable (before the file gets its name).
    pub(crate) fn sync(&self) -> Result<()> {
        self.tree
            .fs
            .sync_data(self.file()?)
            .map_err(|e| Error::io("fsync", &self.path, e))
    }

    /// Links the file at `dest` unless something is there already (atomic no-clobber), then
    /// drops the temporary name. `Ok(false)` if `dest` exists (a regular file; anything else
    /// there is [`Error::NotOurs`]).
    pub(crate) fn publish_new(mut self, dest: &str) -> Result<bool> {
        let fs = &self.tree.fs;
        let handle = &self.dir.handle;
        match fs.link(handle, &self.name, handle, dest) {
            Ok(()) => {
                self.file = None;
                let _ = fs.remove_file(handle, &self.name);
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                match self.tree.stat(self.dir, dest)? {
                    Some(stat) if stat.kind != EntryKind::File => {
                        Err(not_ours(self.dir.path_of(dest), stat.kind, EntryKind::File))
                    }
                    _ => Ok(false),
                }
            }
            Err(e) => Err(Error::io("link", self.dir.path_of(dest), e)),
        }
    }

    /// Renames the file over `dest`. Returns the open file, which is now `dest`.
    pub(crate) fn replace(mut self, dest: &str) -> Result<F::File> {
        let handle = &self.dir.handle;
        self.tree
            .fs
            .rename(handle, &self.name, handle, dest)
            .map_err(|e| Error::io("rename over", self.dir.path_of(dest), e))?;
        let file = self.file.take();
        file.ok_or_else(|| {
            let gone = io::Error::new(io::ErrorKind::NotFound, "already published");
            Error::io("rename over", self.dir.path_of(dest), gone)
        })
    }
}

impl<F: FileSystem> Drop for TempFile<'_, F> {
    fn drop(&mut self) {
        // Not published: the temporary name goes (a crash before this leaves a `.tmp` file,
        // which nothing reads).
        if self.file.take().is_some() {
            let _ = self.tree.fs.remove_file(&self.dir.handle, &self.name);
        }
    }
}

/// Writes bytes `from..to` of `src` to a new file in `dir` named `name` (or `name.1`,
/// `name.2`, ... if that exists: nothing is ever overwritten), durably: file and name are
/// fsynced before it returns, so whatever is cut from `src` afterwards is kept. A file it
/// could not finish is removed again. Repair's backup of the bytes it drops; the writer's
/// recovery of an interrupted tail (line format v2) moves a tail the same way. Returns the
/// path of the new file.
pub(crate) fn keep_aside<F: FileSystem>(
    tree: &Tree<F>,
    dir: &Dir<F>,
    name: &str,
    src: Reader<'_, F>,
    from: u64,
    to: u64,
) -> Result<PathBuf> {
    let fs = &tree.fs;
    let mut attempt = 0u32;
    let (name, file) = loop {
        let candidate = match attempt {
            0 => name.to_string(),
            n => format!("{name}.{n}"),
        };
        match fs.create_new(&dir.handle, &candidate) {
            Ok(file) => break (candidate, file),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 100 => attempt += 1,
            Err(e) => return Err(Error::io("create backup", dir.path_of(&candidate), e)),
        }
    };
    let path = dir.path_of(&name);
    let written = copy_into(fs, &file, &path, src, from, to)
        .and_then(|()| {
            fs.sync_data(&file)
                .map_err(|e| Error::io("fsync", &path, e))
        })
        .and_then(|()| tree.sync_dir(dir));
    if let Err(e) = written {
        drop(file);
        let _ = fs.remove_file(&dir.handle, &name);
        return Err(e);
    }
    Ok(path)
}

fn copy_into<F: FileSystem>(
    fs: &F,
    file: &F::File,
    path: &std::path::Path,
    src: Reader<'_, F>,
    from: u64,
    to: u64,
) -> Result<()> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut pos = from;
    while pos < to {
        let want = usize::try_from(to - pos)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let slot = buf.get_mut(..want).unwrap_or_default();
        let n = src.read_at_most(slot, pos)?;
        if n == 0 {
            break;
        }
        append_all(fs, file, slot.get(..n).unwrap_or_default())
            .map_err(|e| Error::io("write backup", path, e))?;
        pos += n as u64;
    }
    Ok(())
}

pub(crate) fn encode_header(header: &Header, out: &mut Vec<u8>) -> Result<u64> {
    codec::encode_header(header, out)
        .map(|n| n as u64)
        .map_err(codec::EncodeError::into_error)
}

/// The header of a new file.
pub(crate) fn new_header(
    session: SessionId,
    segment: SegmentId,
    kind: FileKind,
    fork: Option<Lineage>,
) -> Header {
    Header {
        annals: Version::NEW_FILES.number(),
        kind,
        session,
        segment,
        generation: 0,
        created_ms: crate::now_ms(),
        fork,
    }
}

impl<F: FileSystem> FsStore<F> {
    /// Creates a file crash-atomically: header and body (and `copy`, a range of another file,
    /// followed by `after`) go to a temporary file that is fsynced and then linked into place
    /// without clobbering. A new session directory is made durable in the root first.
    /// `Ok(false)` if the file already existed.
    pub(crate) fn create_file(
        &self,
        header: &Header,
        body: &[u8],
        copy: Option<(Reader<'_, F>, u64, u64)>,
        after: &[u8],
    ) -> Result<bool> {
        let tree = &self.tree;
        let dir = tree.make_session(header.session)?;
        let mut temp = TempFile::create(tree, &dir, header.segment)?;
        let mut bytes = Vec::with_capacity(codec::MAX_LINE + body.len());
        encode_header(header, &mut bytes)?;
        bytes.extend_from_slice(body);
        temp.write(&bytes)?;
        if let Some((src, from, to)) = copy {
            temp.copy(src, from, to)?;
        }
        if !after.is_empty() {
            temp.write(after)?;
        }
        self.pack_durable(&dir)?;
        temp.sync()?;
        let name = super::tree::file_name(header.segment, header.kind);
        if !temp.publish_new(&name)? {
            return Ok(false);
        }
        tree.sync_dir(&dir)?;
        Ok(true)
    }
}
