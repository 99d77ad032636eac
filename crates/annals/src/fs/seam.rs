//! The I/O seam: the one trait through which the filesystem store reaches its medium.
//!
//! Every call the store makes to a file system goes through a [`FileSystem`]: the real one
//! ([`OsFs`](super::OsFs)), a wrapper that injects faults ([`FaultFs`](super::FaultFs)), or a
//! simulated one in memory that can lose power ([`SimFs`](super::SimFs)). The store is generic
//! over it (`FsStore<F = OsFs>`), so the real one costs nothing: no `dyn`, no extra call.
//!
//! The seam is **handle based**: the store opens its root once as a directory handle, and
//! every name below it is one component resolved relative to an open directory handle, never a
//! path. Implementations never follow a symbolic link at a name, never open a directory where
//! a file was asked for (or the reverse), and never block opening one (a FIFO): they report
//! [`Lookup::NotOurs`] with what they found instead. So nothing the store opens, creates,
//! links, renames or removes can lie outside its root. Paths exist above the seam only for
//! error messages.

use std::fmt;
use std::io;
use std::path::Path;
use std::time::SystemTime;

/// What stands at a name in a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Directory,
    /// A symbolic link (never followed below the root).
    Symlink,
    /// A named pipe.
    Fifo,
    /// A Unix domain socket.
    Socket,
    /// A block device.
    BlockDevice,
    /// A character device.
    CharDevice,
    /// Something the file system did not say.
    Unknown,
}

impl fmt::Display for EntryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::File => "a regular file",
            Self::Directory => "a directory",
            Self::Symlink => "a symbolic link",
            Self::Fifo => "a FIFO (named pipe)",
            Self::Socket => "a socket",
            Self::BlockDevice => "a block device",
            Self::CharDevice => "a character device",
            Self::Unknown => "something of unknown type",
        })
    }
}

/// What opening a name found.
#[derive(Debug)]
pub enum Lookup<T> {
    /// What was asked for, opened.
    Found(T),
    /// Nothing has that name.
    Missing,
    /// Something else has that name (a link, a FIFO, a directory where a file was asked for,
    /// ...). It was not followed, not opened for good, and is left as it is.
    NotOurs(EntryKind),
}

impl<T> Lookup<T> {
    /// The found thing, transformed.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Lookup<U> {
        match self {
            Self::Found(t) => Lookup::Found(f(t)),
            Self::Missing => Lookup::Missing,
            Self::NotOurs(kind) => Lookup::NotOurs(kind),
        }
    }
}

/// How a file is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read only.
    Read,
    /// Read and write, every write at the end (`O_APPEND`); `set_len` allowed.
    Append,
}

/// Which advisory lock (`flock`): shared among readers, or exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    /// `LOCK_SH`.
    Shared,
    /// `LOCK_EX`.
    Exclusive,
}

/// A name's metadata, not following a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// What it is.
    pub kind: EntryKind,
    /// Size in bytes.
    pub len: u64,
    /// Last modification.
    pub modified: SystemTime,
}

/// One name in a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The name (names that are not UTF-8 are never annals' and are not listed).
    pub name: String,
    /// What it is, not following a link.
    pub kind: EntryKind,
}

/// What [`FileSystem::map_chunks`] hands over at an offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MappedChunk<'a> {
    /// Whole lines, the last one ending with its newline.
    Lines(&'a [u8]),
    /// One line longer than a chunk (far longer than any line annals writes), not handed
    /// over: its pages were searched for its end and dropped again. Its length, without the
    /// newline.
    TooLong(u64),
}

mod sealed {
    pub trait Sealed {}
}
pub(crate) use sealed::Sealed;

/// The file-system calls of the filesystem store, one method per call.
///
/// Sealed: it grows with the engine (partial page persistence in the simulator, say), so only
/// annals implements it. Every method is one system call on [`OsFs`](super::OsFs) unless it
/// says otherwise; none retries an fsync.
pub trait FileSystem: Sealed + Send + Sync + fmt::Debug + 'static {
    /// An open directory.
    type Dir: Send + Sync + fmt::Debug;
    /// An open regular file.
    type File: Send + Sync + fmt::Debug;

    /// Opens the store's root, creating it and its parents (mode `0700`) if `create`. The one
    /// path resolved as a path: it is the caller's, and links in it are followed.
    fn open_root(&self, path: &Path, create: bool) -> io::Result<Self::Dir>;

    /// The name of the root's file system if it is one where concurrent `O_APPEND` writes and
    /// `flock` are not guaranteed (a network or FUSE file system); `None` if it is fine or
    /// unknown.
    fn unsafe_fs(&self, root: &Self::Dir) -> Option<&'static str>;

    /// Opens the directory `name` in `dir` (`O_DIRECTORY | O_NOFOLLOW`).
    fn open_dir(&self, dir: &Self::Dir, name: &str) -> io::Result<Lookup<Self::Dir>>;

    /// Creates the directory `name` in `dir`, mode `0700`. `Ok(false)` if the name exists.
    fn create_dir(&self, dir: &Self::Dir, name: &str) -> io::Result<bool>;

    /// Opens the regular file `name` in `dir` without following a link and without blocking
    /// (`O_NOFOLLOW | O_NONBLOCK`, then a regular-file check; two to three calls).
    fn open_file(
        &self,
        dir: &Self::Dir,
        name: &str,
        access: Access,
    ) -> io::Result<Lookup<Self::File>>;

    /// Creates `name` in `dir`, which must not exist (`O_CREAT | O_EXCL`, mode `0600`), open
    /// for [`Access::Append`]. `AlreadyExists` if anything has that name.
    fn create_new(&self, dir: &Self::Dir, name: &str) -> io::Result<Self::File>;

    /// Reads at most `buf.len()` bytes at `offset` (`pread`); fewer only at the end.
    fn read_at(&self, file: &Self::File, buf: &mut [u8], offset: u64) -> io::Result<usize>;

    /// Writes `bytes` at the end with one `write(2)`; returns how many were written.
    fn append(&self, file: &Self::File, bytes: &[u8]) -> io::Result<usize>;

    /// Cuts (or extends) the file to `len` bytes (`ftruncate`).
    fn set_len(&self, file: &Self::File, len: u64) -> io::Result<()>;

    /// Makes the file's data and size durable (`fdatasync`).
    fn sync_data(&self, file: &Self::File) -> io::Result<()>;

    /// Size and link count: all an append needs to know (`statx` asking for those two only).
    fn size_and_links(&self, file: &Self::File) -> io::Result<(u64, u64)>;

    /// Takes a lock on the file, waiting for it.
    fn lock(&self, file: &Self::File, kind: LockKind) -> io::Result<()>;

    /// Takes a lock on the file if nobody holds a conflicting one; `Ok(false)` if somebody does.
    fn try_lock(&self, file: &Self::File, kind: LockKind) -> io::Result<bool>;

    /// Releases the file's lock.
    fn unlock(&self, file: &Self::File) -> io::Result<()>;

    /// Makes the directory's names durable (`fsync` of the directory).
    fn sync_dir(&self, dir: &Self::Dir) -> io::Result<()>;

    /// Gives the file `from` in `from_dir` a second name, `to` in `to_dir` (`linkat`, not
    /// following a link); `AlreadyExists` if `to` exists: the atomic no-clobber publication.
    fn link(
        &self,
        from_dir: &Self::Dir,
        from: &str,
        to_dir: &Self::Dir,
        to: &str,
    ) -> io::Result<()>;

    /// Renames `from` in `from_dir` to `to` in `to_dir`, replacing `to` (`renameat`).
    fn rename(
        &self,
        from_dir: &Self::Dir,
        from: &str,
        to_dir: &Self::Dir,
        to: &str,
    ) -> io::Result<()>;

    /// Removes the name `name` of a non-directory (`unlinkat`; a link is removed, not followed).
    fn remove_file(&self, dir: &Self::Dir, name: &str) -> io::Result<()>;

    /// Removes the empty directory `name` (`unlinkat(AT_REMOVEDIR)`).
    fn remove_dir(&self, dir: &Self::Dir, name: &str) -> io::Result<()>;

    /// Every name in the directory but `.` and `..`, with what it is (`getdents`; a `fstatat`
    /// for each entry whose type the directory does not record).
    fn list(&self, dir: &Self::Dir) -> io::Result<Vec<DirEntry>>;

    /// What `name` is, not following a link (`fstatat(AT_SYMLINK_NOFOLLOW)`); `None` if
    /// nothing has that name.
    fn stat(&self, dir: &Self::Dir, name: &str) -> io::Result<Option<Stat>>;

    /// The fast path of `verify`: hands the first `len` bytes of `file` (a committed length,
    /// read under the shared lock) to `f` from a read-only mapping, in chunks of whole lines,
    /// with each chunk's offset; a line too long for a chunk is handed over as its length
    /// only, so that what is resident never depends on what the file holds. `None` if this
    /// medium does not map files or the mapping failed: the caller then reads them instead.
    fn map_chunks(
        &self,
        file: &Self::File,
        len: u64,
        f: &mut dyn FnMut(u64, MappedChunk<'_>) -> crate::Result<()>,
    ) -> Option<crate::Result<()>> {
        let _ = (file, len, f);
        None
    }
}

/// Appends `bytes` to `file` with one `write(2)`: the append of a log's lines, which must be
/// one write. If the write stores only part of them, a second write of the rest asks the file
/// system why, and its error is the one returned: a full disk answers `ENOSPC`, a quota
/// `EDQUOT`, a file-size limit `EFBIG`, so the caller reports the cause instead of "short
/// write". Whatever the second write does, the caller rolls both back (cuts the file to its
/// length before, under the lock it holds), so bytes of a write cut short never become a line.
/// One call on the common path; the second only after a short write.
pub(crate) fn append_once<F: FileSystem>(fs: &F, file: &F::File, bytes: &[u8]) -> io::Result<()> {
    let first = fs.append(file, bytes)?;
    let Some(rest) = bytes.get(first..).filter(|rest| !rest.is_empty()) else {
        return Ok(());
    };
    let second = fs.append(file, rest)?;
    Err(io::Error::new(
        io::ErrorKind::WriteZero,
        format!(
            "short write: {first} of {} bytes, and a second write of the rest stored {second} \
             of {} without saying why",
            bytes.len(),
            rest.len()
        ),
    ))
}

/// Appends all of `bytes` to `file`, with as many writes as it takes: for files no reader
/// sees yet (a temporary file before it is published, a backup being made), where a line need
/// not be one write. A short write is followed by the rest, so a full disk is reported as the
/// `ENOSPC` the next write returns; a write that stores nothing at all is `WriteZero`.
pub(crate) fn append_all<F: FileSystem>(fs: &F, file: &F::File, bytes: &[u8]) -> io::Result<()> {
    let mut done = 0;
    while let Some(rest) = bytes.get(done..).filter(|rest| !rest.is_empty()) {
        match fs.append(file, rest)? {
            0 => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("a write stored nothing, {done} of {} bytes in", bytes.len()),
                ))
            }
            n => done += n,
        }
    }
    Ok(())
}

/// Refuses a name that is not one component: the seam only ever resolves single names below
/// an open directory, so `..` or a `/` would be a way out of the root.
pub(crate) fn one_component(name: &str) -> io::Result<&str> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a single file name"),
        ));
    }
    Ok(name)
}
