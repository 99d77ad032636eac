//! [`FaultFs`]: a [`FileSystem`] that wraps another and asks a [`FaultPlan`] before every call
//! whether it fails (`EIO`, `ENOSPC`, any errno), writes short, or crashes the process before or
//! after it. The plan belongs to one store (`FsStore::open_with_faults`, or any store opened
//! on a `FaultFs`), not to the process, so tests using it run in parallel.
//!
//! Because it is an implementation of the seam, not hooks in the store, it sees every call
//! the store makes and nothing reaches the medium around it. Only with the `fault-injection`
//! feature.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::seam::{Access, DirEntry, FileSystem, LockKind, Lookup, MappedChunk, Sealed, Stat};
use super::OsFs;

/// A kind of call through the seam: one per [`FileSystem`] method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Op {
    /// [`FileSystem::open_dir`].
    OpenDir,
    /// [`FileSystem::create_dir`].
    CreateDir,
    /// [`FileSystem::open_file`].
    OpenFile,
    /// [`FileSystem::create_new`].
    CreateNew,
    /// [`FileSystem::read_at`].
    ReadAt,
    /// [`FileSystem::append`]: the one `write(2)` of an append, and every write of a new file.
    Append,
    /// [`FileSystem::set_len`]: a torn tail's cut, a failed write's rollback, repair's cut.
    SetLen,
    /// [`FileSystem::sync_data`].
    SyncData,
    /// [`FileSystem::size_and_links`].
    SizeAndLinks,
    /// [`FileSystem::lock`].
    Lock,
    /// [`FileSystem::try_lock`].
    TryLock,
    /// [`FileSystem::unlock`].
    Unlock,
    /// [`FileSystem::sync_dir`].
    SyncDir,
    /// [`FileSystem::link`].
    Link,
    /// [`FileSystem::rename`].
    Rename,
    /// [`FileSystem::remove_file`].
    RemoveFile,
    /// [`FileSystem::remove_dir`].
    RemoveDir,
    /// [`FileSystem::list`].
    List,
    /// [`FileSystem::stat`].
    Stat,
    /// [`FileSystem::map_chunks`] (a fault here makes `verify` read instead of map).
    Map,
}

impl Op {
    /// Every kind of call.
    pub const ALL: [Op; 20] = [
        Self::OpenDir,
        Self::CreateDir,
        Self::OpenFile,
        Self::CreateNew,
        Self::ReadAt,
        Self::Append,
        Self::SetLen,
        Self::SyncData,
        Self::SizeAndLinks,
        Self::Lock,
        Self::TryLock,
        Self::Unlock,
        Self::SyncDir,
        Self::Link,
        Self::Rename,
        Self::RemoveFile,
        Self::RemoveDir,
        Self::List,
        Self::Stat,
        Self::Map,
    ];

    /// True for the calls that change what the medium holds (what a crash can leave).
    #[must_use]
    pub fn changes_media(self) -> bool {
        matches!(
            self,
            Self::CreateDir
                | Self::CreateNew
                | Self::Append
                | Self::SetLen
                | Self::SyncData
                | Self::SyncDir
                | Self::Link
                | Self::Rename
                | Self::RemoveFile
                | Self::RemoveDir
        )
    }
}

/// One call as a plan sees it.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// Which call.
    pub op: Op,
    /// The file or directory it acts on (for [`Op::Link`] and [`Op::Rename`], the new name).
    pub path: &'a Path,
    /// The existing name of a link or rename.
    pub from: Option<&'a Path>,
    /// How an [`Op::OpenFile`] opens the file (a read-only medium refuses [`Access::Append`]).
    pub access: Option<Access>,
    /// How many bytes an [`Op::Append`] asks to write (a full medium stores only what fits).
    pub len: Option<u64>,
}

/// What happens to a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// The call fails with `EIO` and does nothing.
    Eio,
    /// The call fails with `ENOSPC` and does nothing.
    Enospc,
    /// The call fails with this `errno` and does nothing.
    Errno(i32),
    /// An [`Op::Append`] writes only this many bytes and says so (other calls: `EIO`).
    ShortWrite(usize),
    /// The process aborts before the call, as `kill -9` would end it.
    Crash,
    /// The call is made, then the process aborts before the store hears of its result.
    CrashAfter,
}

/// Decides, before each call through a [`FaultFs`], whether a fault happens there. It may also
/// act (another store's operation, to make a race happen exactly there) before it answers.
pub trait FaultPlan: Send + Sync + std::fmt::Debug {
    /// Called before every call, with what it is and the file or directory concerned.
    fn at(&self, call: &Call<'_>) -> Option<Fault>;
}

type PathFilter = Box<dyn Fn(&Path) -> bool + Send + Sync>;

/// A plan that injects `fault` at the `nth` (0-based) call of one kind, optionally only among
/// calls on paths a filter accepts, and never again.
pub struct FailNth {
    op: Op,
    nth: u64,
    fault: Fault,
    only: Option<PathFilter>,
    seen: AtomicU64,
}

impl std::fmt::Debug for FailNth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailNth")
            .field("op", &self.op)
            .field("nth", &self.nth)
            .field("fault", &self.fault)
            .field("filtered", &self.only.is_some())
            .field("seen", &self.hits())
            .finish()
    }
}

impl FailNth {
    /// Injects `fault` at the `nth` call of kind `op`.
    #[must_use]
    pub fn new(op: Op, nth: u64, fault: Fault) -> Self {
        Self {
            op,
            nth,
            fault,
            only: None,
            seen: AtomicU64::new(0),
        }
    }

    /// Counts (and faults) only calls on paths `filter` accepts.
    #[must_use]
    pub fn only(mut self, filter: impl Fn(&Path) -> bool + Send + Sync + 'static) -> Self {
        self.only = Some(Box::new(filter));
        self
    }

    /// How many matching calls were made so far.
    #[must_use]
    pub fn hits(&self) -> u64 {
        self.seen.load(Ordering::SeqCst)
    }
}

impl FaultPlan for FailNth {
    fn at(&self, call: &Call<'_>) -> Option<Fault> {
        if call.op != self.op || self.only.as_ref().is_some_and(|only| !only(call.path)) {
            return None;
        }
        let n = self.seen.fetch_add(1, Ordering::SeqCst);
        (n == self.nth).then_some(self.fault)
    }
}

/// A plan that injects nothing and counts the calls of each kind, for tests that go through
/// every arrival at every kind of call.
#[derive(Debug, Default)]
pub struct CountCalls {
    counts: Mutex<HashMap<Op, u64>>,
}

impl CountCalls {
    /// How many calls of kind `op` were made.
    #[must_use]
    pub fn count(&self, op: Op) -> u64 {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&op)
            .copied()
            .unwrap_or(0)
    }
}

impl FaultPlan for CountCalls {
    fn at(&self, call: &Call<'_>) -> Option<Fault> {
        *self
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(call.op)
            .or_default() += 1;
        None
    }
}

/// A plan that behaves like a file system with `room` bytes free: an append stores what fits
/// and says so (a short write), and from then on every call that needs space (an append, a new
/// file or directory, a link) fails with `ENOSPC`, as a full disk does, until [`FullDisk::free`]
/// gives room back. Space given back by cutting or removing files is not counted: the disk
/// stays full until the test frees it.
#[derive(Debug)]
pub struct FullDisk {
    room: Mutex<u64>,
}

impl FullDisk {
    /// A medium with `room` bytes free.
    #[must_use]
    pub fn new(room: u64) -> Self {
        Self {
            room: Mutex::new(room),
        }
    }

    /// Gives `bytes` of room back (someone freed space).
    pub fn free(&self, bytes: u64) {
        *self.room.lock().unwrap_or_else(|e| e.into_inner()) += bytes;
    }

    /// Bytes still free.
    #[must_use]
    pub fn room(&self) -> u64 {
        *self.room.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl FaultPlan for FullDisk {
    fn at(&self, call: &Call<'_>) -> Option<Fault> {
        let mut room = self.room.lock().unwrap_or_else(|e| e.into_inner());
        match call.op {
            Op::Append => {
                let len = call.len.unwrap_or(0);
                if *room == 0 && len > 0 {
                    return Some(Fault::Enospc);
                }
                let stored = len.min(*room);
                *room -= stored;
                (stored < len).then(|| Fault::ShortWrite(usize::try_from(stored).unwrap_or(0)))
            }
            Op::CreateNew | Op::CreateDir | Op::Link if *room == 0 => Some(Fault::Enospc),
            _ => None,
        }
    }
}

/// A [`FileSystem`] that consults a [`FaultPlan`] before every call to `F`.
#[derive(Debug, Clone)]
pub struct FaultFs<F: FileSystem = OsFs> {
    inner: F,
    plan: Arc<dyn FaultPlan>,
}

impl<F: FileSystem> FaultFs<F> {
    /// `inner`, with `plan` asked before every call.
    pub fn new(inner: F, plan: Arc<dyn FaultPlan>) -> Self {
        Self { inner, plan }
    }

    /// The wrapped file system.
    pub fn inner(&self) -> &F {
        &self.inner
    }
}

/// A directory of a [`FaultFs`]: the wrapped one, and its path for the plan.
#[derive(Debug)]
pub struct FaultDir<D> {
    inner: D,
    path: PathBuf,
}

/// A file of a [`FaultFs`]: the wrapped one, and its path for the plan.
#[derive(Debug)]
pub struct FaultFile<T> {
    inner: T,
    path: PathBuf,
}

/// What the wrapper does after asking the plan.
enum Go {
    Now,
    Short(usize),
    ThenCrash,
}

fn errno(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

const EIO: i32 = 5;
const ENOSPC: i32 = 28;

impl<F: FileSystem> FaultFs<F> {
    fn ask(&self, op: Op, path: &Path, from: Option<&Path>) -> io::Result<Go> {
        self.ask_call(&Call {
            op,
            path,
            from,
            access: None,
            len: None,
        })
    }

    fn ask_call(&self, call: &Call<'_>) -> io::Result<Go> {
        let op = call.op;
        match self.plan.at(call) {
            None => Ok(Go::Now),
            Some(Fault::Eio) => Err(errno(EIO)),
            Some(Fault::Enospc) => Err(errno(ENOSPC)),
            Some(Fault::Errno(code)) => Err(errno(code)),
            Some(Fault::ShortWrite(n)) if op == Op::Append => Ok(Go::Short(n)),
            Some(Fault::ShortWrite(_)) => Err(errno(EIO)),
            Some(Fault::Crash) => std::process::abort(),
            Some(Fault::CrashAfter) => Ok(Go::ThenCrash),
        }
    }

    /// Makes a call that cannot write short.
    fn call<T>(
        &self,
        op: Op,
        path: &Path,
        from: Option<&Path>,
        f: impl FnOnce() -> io::Result<T>,
    ) -> io::Result<T> {
        match self.ask(op, path, from)? {
            Go::Now | Go::Short(_) => f(),
            Go::ThenCrash => {
                let _ = f();
                std::process::abort()
            }
        }
    }
}

impl<F: FileSystem> Sealed for FaultFs<F> {}

impl<F: FileSystem> FileSystem for FaultFs<F> {
    type Dir = FaultDir<F::Dir>;
    type File = FaultFile<F::File>;

    fn open_root(&self, path: &Path, create: bool) -> io::Result<Self::Dir> {
        let inner = self.call(Op::OpenDir, path, None, || {
            self.inner.open_root(path, create)
        })?;
        Ok(FaultDir {
            inner,
            path: path.to_path_buf(),
        })
    }

    fn unsafe_fs(&self, root: &Self::Dir) -> Option<&'static str> {
        self.inner.unsafe_fs(&root.inner)
    }

    fn open_dir(&self, dir: &Self::Dir, name: &str) -> io::Result<Lookup<Self::Dir>> {
        let path = dir.path.join(name);
        let found = self.call(Op::OpenDir, &path, None, || {
            self.inner.open_dir(&dir.inner, name)
        })?;
        Ok(found.map(|inner| FaultDir { inner, path }))
    }

    fn create_dir(&self, dir: &Self::Dir, name: &str) -> io::Result<bool> {
        self.call(Op::CreateDir, &dir.path.join(name), None, || {
            self.inner.create_dir(&dir.inner, name)
        })
    }

    fn open_file(
        &self,
        dir: &Self::Dir,
        name: &str,
        access: Access,
    ) -> io::Result<Lookup<Self::File>> {
        let path = dir.path.join(name);
        let call = Call {
            op: Op::OpenFile,
            path: &path,
            from: None,
            access: Some(access),
            len: None,
        };
        let found = match self.ask_call(&call)? {
            Go::Now | Go::Short(_) => self.inner.open_file(&dir.inner, name, access)?,
            Go::ThenCrash => {
                let _ = self.inner.open_file(&dir.inner, name, access);
                std::process::abort()
            }
        };
        Ok(found.map(|inner| FaultFile { inner, path }))
    }

    fn create_new(&self, dir: &Self::Dir, name: &str) -> io::Result<Self::File> {
        let path = dir.path.join(name);
        let inner = self.call(Op::CreateNew, &path, None, || {
            self.inner.create_new(&dir.inner, name)
        })?;
        Ok(FaultFile { inner, path })
    }

    fn read_at(&self, file: &Self::File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.call(Op::ReadAt, &file.path, None, || {
            self.inner.read_at(&file.inner, buf, offset)
        })
    }

    fn append(&self, file: &Self::File, bytes: &[u8]) -> io::Result<usize> {
        let call = Call {
            op: Op::Append,
            path: &file.path,
            from: None,
            access: None,
            len: Some(bytes.len() as u64),
        };
        match self.ask_call(&call)? {
            Go::Now => self.inner.append(&file.inner, bytes),
            Go::Short(n) => {
                let part = bytes.get(..n.min(bytes.len())).unwrap_or_default();
                self.inner.append(&file.inner, part)
            }
            Go::ThenCrash => {
                let _ = self.inner.append(&file.inner, bytes);
                std::process::abort()
            }
        }
    }

    fn set_len(&self, file: &Self::File, len: u64) -> io::Result<()> {
        self.call(Op::SetLen, &file.path, None, || {
            self.inner.set_len(&file.inner, len)
        })
    }

    fn sync_data(&self, file: &Self::File) -> io::Result<()> {
        self.call(Op::SyncData, &file.path, None, || {
            self.inner.sync_data(&file.inner)
        })
    }

    fn size_and_links(&self, file: &Self::File) -> io::Result<(u64, u64)> {
        self.call(Op::SizeAndLinks, &file.path, None, || {
            self.inner.size_and_links(&file.inner)
        })
    }

    fn lock(&self, file: &Self::File, kind: LockKind) -> io::Result<()> {
        self.call(Op::Lock, &file.path, None, || {
            self.inner.lock(&file.inner, kind)
        })
    }

    fn try_lock(&self, file: &Self::File, kind: LockKind) -> io::Result<bool> {
        self.call(Op::TryLock, &file.path, None, || {
            self.inner.try_lock(&file.inner, kind)
        })
    }

    fn unlock(&self, file: &Self::File) -> io::Result<()> {
        self.call(Op::Unlock, &file.path, None, || {
            self.inner.unlock(&file.inner)
        })
    }

    fn sync_dir(&self, dir: &Self::Dir) -> io::Result<()> {
        self.call(Op::SyncDir, &dir.path, None, || {
            self.inner.sync_dir(&dir.inner)
        })
    }

    fn link(
        &self,
        from_dir: &Self::Dir,
        from: &str,
        to_dir: &Self::Dir,
        to: &str,
    ) -> io::Result<()> {
        let (source, dest) = (from_dir.path.join(from), to_dir.path.join(to));
        self.call(Op::Link, &dest, Some(&source), || {
            self.inner.link(&from_dir.inner, from, &to_dir.inner, to)
        })
    }

    fn rename(
        &self,
        from_dir: &Self::Dir,
        from: &str,
        to_dir: &Self::Dir,
        to: &str,
    ) -> io::Result<()> {
        let (source, dest) = (from_dir.path.join(from), to_dir.path.join(to));
        self.call(Op::Rename, &dest, Some(&source), || {
            self.inner.rename(&from_dir.inner, from, &to_dir.inner, to)
        })
    }

    fn remove_file(&self, dir: &Self::Dir, name: &str) -> io::Result<()> {
        self.call(Op::RemoveFile, &dir.path.join(name), None, || {
            self.inner.remove_file(&dir.inner, name)
        })
    }

    fn remove_dir(&self, dir: &Self::Dir, name: &str) -> io::Result<()> {
        self.call(Op::RemoveDir, &dir.path.join(name), None, || {
            self.inner.remove_dir(&dir.inner, name)
        })
    }

    fn list(&self, dir: &Self::Dir) -> io::Result<Vec<DirEntry>> {
        self.call(Op::List, &dir.path, None, || self.inner.list(&dir.inner))
    }

    fn stat(&self, dir: &Self::Dir, name: &str) -> io::Result<Option<Stat>> {
        self.call(Op::Stat, &dir.path.join(name), None, || {
            self.inner.stat(&dir.inner, name)
        })
    }

    fn map_chunks(
        &self,
        file: &Self::File,
        len: u64,
        f: &mut dyn FnMut(u64, MappedChunk<'_>) -> crate::Result<()>,
    ) -> Option<crate::Result<()>> {
        match self.ask(Op::Map, &file.path, None) {
            Ok(Go::Now | Go::Short(_)) => self.inner.map_chunks(&file.inner, len, f),
            Ok(Go::ThenCrash) => {
                let _ = self.inner.map_chunks(&file.inner, len, f);
                std::process::abort()
            }
            // A mapping that fails is what the fallback is for.
            Err(_) => None,
        }
    }
}
