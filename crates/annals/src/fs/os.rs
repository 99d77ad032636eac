//! [`OsFs`]: the real file system, the default medium of the filesystem store. The only code in
//! `fs/` that makes system calls (with `mmap.rs`, which it calls, and `fstype.rs`'s `fstatfs`).

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, SystemTime};

use rustix::fs::{AtFlags, FileType, FlockOperation, Mode, OFlags};
use rustix::io::Errno;

use super::seam::{
    one_component, Access, DirEntry, EntryKind, FileSystem, LockKind, Lookup, MappedChunk, Sealed,
    Stat,
};

/// The operating system's file system, through `openat`-family calls relative to directory
/// handles (rustix). Zero-sized: a store over it holds only its descriptors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OsFs;

/// An open directory of [`OsFs`] (`O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC`).
#[derive(Debug)]
pub struct OsDir(OwnedFd);

/// An open regular file of [`OsFs`].
#[derive(Debug)]
pub struct OsFile(File);

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

fn kind_of(file_type: FileType) -> EntryKind {
    match file_type {
        FileType::RegularFile => EntryKind::File,
        FileType::Directory => EntryKind::Directory,
        FileType::Symlink => EntryKind::Symlink,
        FileType::Fifo => EntryKind::Fifo,
        FileType::Socket => EntryKind::Socket,
        FileType::BlockDevice => EntryKind::BlockDevice,
        FileType::CharacterDevice => EntryKind::CharDevice,
        FileType::Unknown => EntryKind::Unknown,
    }
}

/// What `name` is, for the error paths of the opens (where the open's errno does not say).
fn kind_at(dir: &OsDir, name: &str) -> EntryKind {
    rustix::fs::statat(&dir.0, name, AtFlags::SYMLINK_NOFOLLOW).map_or(EntryKind::Unknown, |st| {
        kind_of(FileType::from_raw_mode(st.st_mode))
    })
}

fn modified(st: &rustix::fs::Stat) -> SystemTime {
    let secs = u64::try_from(st.st_mtime).unwrap_or(0);
    let nanos = u32::try_from(st.st_mtime_nsec).unwrap_or(0);
    SystemTime::UNIX_EPOCH + Duration::new(secs, nanos.min(999_999_999))
}

/// Runs `f` again while it is interrupted by a signal.
fn retry<T>(mut f: impl FnMut() -> rustix::io::Result<T>) -> rustix::io::Result<T> {
    loop {
        match f() {
            Err(Errno::INTR) => {}
            other => return other,
        }
    }
}

impl Sealed for OsFs {}

impl FileSystem for OsFs {
    type Dir = OsDir;
    type File = OsFile;

    fn open_root(&self, path: &Path, create: bool) -> io::Result<OsDir> {
        if create && !path.is_dir() {
            use std::os::unix::fs::DirBuilderExt;
            // The directories that are not there yet, deepest first.
            let missing: Vec<&Path> = path.ancestors().take_while(|p| !p.exists()).collect();
            std::fs::DirBuilder::new()
                .mode(0o700)
                .recursive(true)
                .create(path)?;
            // Each new name made durable in its parent, outermost first: a store made and
            // written durably keeps its root across a power cut. Only fsyncs, which change
            // nothing outside the root.
            for dir in missing.iter().rev() {
                let parent = match dir.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p,
                    _ => Path::new("."),
                };
                File::open(parent)?.sync_all()?;
            }
        }
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        Ok(OsDir(rustix::fs::open(path, flags, Mode::empty())?))
    }

    fn unsafe_fs(&self, root: &OsDir) -> Option<&'static str> {
        super::fstype::of_root(&root.0)
    }

    fn open_dir(&self, dir: &OsDir, name: &str) -> io::Result<Lookup<OsDir>> {
        let name = one_component(name)?;
        match retry(|| rustix::fs::openat(&dir.0, name, DIR_FLAGS, Mode::empty())) {
            Ok(fd) => Ok(Lookup::Found(OsDir(fd))),
            Err(Errno::NOENT) => Ok(Lookup::Missing),
            // ELOOP: a link (O_NOFOLLOW); ENOTDIR: a file or anything else.
            Err(Errno::LOOP | Errno::NOTDIR) => Ok(Lookup::NotOurs(kind_at(dir, name))),
            Err(e) => Err(e.into()),
        }
    }

    fn create_dir(&self, dir: &OsDir, name: &str) -> io::Result<bool> {
        let name = one_component(name)?;
        match rustix::fs::mkdirat(&dir.0, name, Mode::from_raw_mode(0o700)) {
            Ok(()) => Ok(true),
            Err(Errno::EXIST) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn open_file(&self, dir: &OsDir, name: &str, access: Access) -> io::Result<Lookup<OsFile>> {
        let name = one_component(name)?;
        let mode = match access {
            Access::Read => OFlags::RDONLY,
            Access::Append => OFlags::RDWR | OFlags::APPEND,
        };
        // Non-blocking, so that a FIFO cannot hang the open; cleared below once the file is
        // known to be regular (where it means nothing anyway).
        let flags = mode | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = match retry(|| rustix::fs::openat(&dir.0, name, flags, Mode::empty())) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(Lookup::Missing),
            Err(Errno::LOOP) => return Ok(Lookup::NotOurs(EntryKind::Symlink)),
            Err(Errno::ISDIR) => return Ok(Lookup::NotOurs(EntryKind::Directory)),
            // A socket (or a FIFO opened for writing with no reader).
            Err(Errno::NXIO) => return Ok(Lookup::NotOurs(kind_at(dir, name))),
            Err(e) => return Err(e.into()),
        };
        let kind = kind_of(FileType::from_raw_mode(rustix::fs::fstat(&fd)?.st_mode));
        if kind != EntryKind::File {
            return Ok(Lookup::NotOurs(kind));
        }
        let keep = match access {
            Access::Read => OFlags::empty(),
            Access::Append => OFlags::APPEND,
        };
        rustix::fs::fcntl_setfl(&fd, keep)?;
        Ok(Lookup::Found(OsFile(File::from(fd))))
    }

    fn create_new(&self, dir: &OsDir, name: &str) -> io::Result<OsFile> {
        let name = one_component(name)?;
        let flags = OFlags::RDWR
            | OFlags::APPEND
            | OFlags::CREATE
            | OFlags::EXCL
            | OFlags::NOFOLLOW
            | OFlags::CLOEXEC;
        let fd = retry(|| rustix::fs::openat(&dir.0, name, flags, Mode::from_raw_mode(0o600)))?;
        Ok(OsFile(File::from(fd)))
    }

    fn read_at(&self, file: &OsFile, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        loop {
            match rustix::io::pread(&file.0, &mut *buf, offset) {
                Err(Errno::INTR) => {}
                other => return other.map_err(io::Error::from),
            }
        }
    }

    #[inline]
    fn append(&self, file: &OsFile, bytes: &[u8]) -> io::Result<usize> {
        // EINTR means nothing was written, so trying again is still one write of the line.
        Ok(retry(|| rustix::io::write(&file.0, bytes))?)
    }

    fn set_len(&self, file: &OsFile, len: u64) -> io::Result<()> {
        Ok(retry(|| rustix::fs::ftruncate(&file.0, len))?)
    }

    fn sync_data(&self, file: &OsFile) -> io::Result<()> {
        // Never retried, not even on EINTR: after a failed fsync the kernel may have dropped
        // the dirty pages, and a second one could report success for data that is gone.
        rustix::fs::fdatasync(&file.0).map_err(io::Error::from)
    }

    /// On Linux only size and link count are asked for (`statx`): asking for timestamps too,
    /// as `File::metadata` does, makes ext4 with multigrain timestamps (Linux 6.13+) give the
    /// next write a fine-grained ctime, which dirties the inode through the journal on every
    /// append (measured: 200,008 inode updates for 200,000 appends, against under 100 without
    /// the stat).
    #[inline]
    fn size_and_links(&self, file: &OsFile) -> io::Result<(u64, u64)> {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            use rustix::fs::{statx, StatxFlags};
            match statx(
                &file.0,
                "",
                AtFlags::EMPTY_PATH,
                StatxFlags::SIZE | StatxFlags::NLINK,
            ) {
                Ok(st) => return Ok((st.stx_size, u64::from(st.stx_nlink))),
                // Kernels before 4.11, or a seccomp filter that refuses it.
                Err(e) if e == Errno::NOSYS || e == Errno::PERM => {}
                Err(e) => return Err(e.into()),
            }
        }
        let st = rustix::fs::fstat(&file.0)?;
        Ok((
            u64::try_from(st.st_size).unwrap_or(0),
            #[allow(
                clippy::useless_conversion,
                reason = "st_nlink is narrower on some targets"
            )]
            u64::from(st.st_nlink),
        ))
    }

    #[inline]
    fn lock(&self, file: &OsFile, kind: LockKind) -> io::Result<()> {
        let op = match kind {
            LockKind::Shared => FlockOperation::LockShared,
            LockKind::Exclusive => FlockOperation::LockExclusive,
        };
        Ok(retry(|| rustix::fs::flock(&file.0, op))?)
    }

    fn try_lock(&self, file: &OsFile, kind: LockKind) -> io::Result<bool> {
        let op = match kind {
            LockKind::Shared => FlockOperation::NonBlockingLockShared,
            LockKind::Exclusive => FlockOperation::NonBlockingLockExclusive,
        };
        match retry(|| rustix::fs::flock(&file.0, op)) {
            Ok(()) => Ok(true),
            Err(Errno::WOULDBLOCK) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    #[inline]
    fn unlock(&self, file: &OsFile) -> io::Result<()> {
        Ok(retry(|| {
            rustix::fs::flock(&file.0, FlockOperation::Unlock)
        })?)
    }

    fn sync_dir(&self, dir: &OsDir) -> io::Result<()> {
        rustix::fs::fsync(&dir.0).map_err(io::Error::from)
    }

    fn link(&self, from_dir: &OsDir, from: &str, to_dir: &OsDir, to: &str) -> io::Result<()> {
        let (from, to) = (one_component(from)?, one_component(to)?);
        // No AT_SYMLINK_FOLLOW: a link at `from` would be linked itself, never its target.
        Ok(retry(|| {
            rustix::fs::linkat(&from_dir.0, from, &to_dir.0, to, AtFlags::empty())
        })?)
    }

    fn rename(&self, from_dir: &OsDir, from: &str, to_dir: &OsDir, to: &str) -> io::Result<()> {
        let (from, to) = (one_component(from)?, one_component(to)?);
        Ok(retry(|| {
            rustix::fs::renameat(&from_dir.0, from, &to_dir.0, to)
        })?)
    }

    fn remove_file(&self, dir: &OsDir, name: &str) -> io::Result<()> {
        let name = one_component(name)?;
        Ok(retry(|| {
            rustix::fs::unlinkat(&dir.0, name, AtFlags::empty())
        })?)
    }

    fn remove_dir(&self, dir: &OsDir, name: &str) -> io::Result<()> {
        let name = one_component(name)?;
        Ok(retry(|| {
            rustix::fs::unlinkat(&dir.0, name, AtFlags::REMOVEDIR)
        })?)
    }

    fn list(&self, dir: &OsDir) -> io::Result<Vec<DirEntry>> {
        let mut out = Vec::new();
        for entry in rustix::fs::Dir::read_from(&dir.0)? {
            let entry = entry?;
            let Ok(name) = entry.file_name().to_str() else {
                continue;
            };
            if name == "." || name == ".." {
                continue;
            }
            let kind = match kind_of(entry.file_type()) {
                // Some file systems do not record the type in the directory.
                EntryKind::Unknown => kind_at(dir, name),
                kind => kind,
            };
            out.push(DirEntry {
                name: name.to_string(),
                kind,
            });
        }
        Ok(out)
    }

    fn stat(&self, dir: &OsDir, name: &str) -> io::Result<Option<Stat>> {
        let name = one_component(name)?;
        match rustix::fs::statat(&dir.0, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(Stat {
                kind: kind_of(FileType::from_raw_mode(st.st_mode)),
                len: u64::try_from(st.st_size).unwrap_or(0),
                modified: modified(&st),
            })),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn map_chunks(
        &self,
        file: &OsFile,
        len: u64,
        f: &mut dyn FnMut(u64, MappedChunk<'_>) -> crate::Result<()>,
    ) -> Option<crate::Result<()>> {
        match super::mmap::map_committed(&file.0, len) {
            Ok(Some(map)) => Some(super::mmap::for_each_chunk(&map, f)),
            Ok(None) => Some(Ok(())),
            // No mapping here (a file system without mmap, an address-space limit): the caller
            // streams the same bytes instead.
            Err(_) => None,
        }
    }
}

impl AsFd for OsDir {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl AsFd for OsFile {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.0.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn root() -> (tempfile::TempDir, OsDir) {
        let dir = tempfile::tempdir().unwrap();
        let root = OsFs.open_root(dir.path(), false).unwrap();
        (dir, root)
    }

    #[test]
    fn links_fifos_sockets_and_directories_are_reported_never_followed_or_opened_blocking() {
        let (dir, root) = root();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("f"), b"outside").unwrap();
        symlink(outside.path().join("f"), dir.path().join("link-to-file")).unwrap();
        symlink(outside.path(), dir.path().join("link-to-dir")).unwrap();
        rustix::fs::mkfifoat(&root.0, "fifo", Mode::from_raw_mode(0o600)).unwrap();
        let _socket = std::os::unix::net::UnixListener::bind(dir.path().join("socket")).unwrap();
        std::fs::create_dir(dir.path().join("dir")).unwrap();
        std::fs::write(dir.path().join("file"), b"x").unwrap();

        for access in [Access::Read, Access::Append] {
            for (name, kind) in [
                ("link-to-file", EntryKind::Symlink),
                ("link-to-dir", EntryKind::Symlink),
                ("fifo", EntryKind::Fifo),
                ("socket", EntryKind::Socket),
                ("dir", EntryKind::Directory),
            ] {
                match OsFs.open_file(&root, name, access).unwrap() {
                    Lookup::NotOurs(found) => assert_eq!(found, kind, "{name} {access:?}"),
                    other => panic!("{name} {access:?}: {other:?}"),
                }
            }
            assert!(matches!(
                OsFs.open_file(&root, "missing", access).unwrap(),
                Lookup::Missing
            ));
            assert!(matches!(
                OsFs.open_file(&root, "file", access).unwrap(),
                Lookup::Found(_)
            ));
        }
        for (name, kind) in [
            ("link-to-dir", EntryKind::Symlink),
            ("link-to-file", EntryKind::Symlink),
            ("file", EntryKind::File),
            ("fifo", EntryKind::Fifo),
        ] {
            match OsFs.open_dir(&root, name).unwrap() {
                Lookup::NotOurs(found) => assert_eq!(found, kind, "{name}"),
                other => panic!("{name}: {other:?}"),
            }
        }
        assert!(matches!(
            OsFs.open_dir(&root, "dir").unwrap(),
            Lookup::Found(_)
        ));
        // Nothing outside was touched, and a link is removed as a link.
        OsFs.remove_file(&root, "link-to-file").unwrap();
        assert_eq!(std::fs::read(outside.path().join("f")).unwrap(), b"outside");
        assert!(OsFs.create_new(&root, "link-to-dir").is_err());
    }

    #[test]
    fn names_that_are_not_one_component_are_refused() {
        let (_dir, root) = root();
        for name in ["..", ".", "", "a/b", "../x"] {
            assert!(OsFs.open_dir(&root, name).is_err(), "{name:?}");
            assert!(OsFs.create_new(&root, name).is_err(), "{name:?}");
            assert!(OsFs.remove_file(&root, name).is_err(), "{name:?}");
        }
    }

    #[test]
    fn a_file_round_trips_through_every_call() {
        let (_dir, root) = root();
        let file = OsFs.create_new(&root, "a").unwrap();
        assert_eq!(OsFs.append(&file, b"hello\nwor").unwrap(), 9);
        assert_eq!(OsFs.size_and_links(&file).unwrap(), (9, 1));
        OsFs.set_len(&file, 6).unwrap();
        OsFs.sync_data(&file).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(OsFs.read_at(&file, &mut buf, 1).unwrap(), 5);
        assert_eq!(&buf[..5], b"ello\n");
        OsFs.link(&root, "a", &root, "b").unwrap();
        assert_eq!(OsFs.size_and_links(&file).unwrap().1, 2);
        let clobber = OsFs.link(&root, "a", &root, "b").unwrap_err();
        assert_eq!(clobber.kind(), io::ErrorKind::AlreadyExists);
        OsFs.rename(&root, "b", &root, "c").unwrap();
        assert!(OsFs.create_dir(&root, "d").unwrap());
        assert!(!OsFs.create_dir(&root, "d").unwrap());
        let mut names = OsFs.list(&root).unwrap();
        names.sort_by(|x, y| x.name.cmp(&y.name));
        let listed: Vec<_> = names.iter().map(|e| (e.name.as_str(), e.kind)).collect();
        assert_eq!(
            listed,
            [
                ("a", EntryKind::File),
                ("c", EntryKind::File),
                ("d", EntryKind::Directory)
            ]
        );
        assert_eq!(OsFs.stat(&root, "c").unwrap().unwrap().len, 6);
        assert_eq!(OsFs.stat(&root, "nothing").unwrap(), None);
        OsFs.remove_dir(&root, "d").unwrap();
        OsFs.remove_file(&root, "c").unwrap();
        OsFs.remove_file(&root, "a").unwrap();
        assert_eq!(OsFs.size_and_links(&file).unwrap().1, 0);
        OsFs.sync_dir(&root).unwrap();
    }

    #[test]
    fn locks_exclude_other_descriptors_and_try_lock_does_not_wait() {
        let (_dir, root) = root();
        drop(OsFs.create_new(&root, "f").unwrap());
        let open = || match OsFs.open_file(&root, "f", Access::Read).unwrap() {
            Lookup::Found(f) => f,
            other => panic!("{other:?}"),
        };
        let (a, b) = (open(), open());
        OsFs.lock(&a, LockKind::Shared).unwrap();
        assert!(OsFs.try_lock(&b, LockKind::Shared).unwrap());
        OsFs.unlock(&b).unwrap();
        assert!(!OsFs.try_lock(&b, LockKind::Exclusive).unwrap());
        OsFs.unlock(&a).unwrap();
        assert!(OsFs.try_lock(&b, LockKind::Exclusive).unwrap());
        assert!(!OsFs.try_lock(&a, LockKind::Shared).unwrap());
    }
}
