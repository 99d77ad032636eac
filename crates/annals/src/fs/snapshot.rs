//! How a file is opened outside the writer's handle: by readers, under the shared lock just long
//! enough to read a committed length, and by repair, under the exclusive lock. Both follow a
//! replacement (a rewrite renamed a new file over the name while they waited for the lock).

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::read::Reader;
use super::seam::{Access, FileSystem, LockKind};
use super::tree::{Dir, Tree};
use crate::lease::Patience;
use crate::{Error, Result, SegmentId, SessionId};

/// How many times in a row an opener follows the name to a file that replaced the one it locked
/// (the writer's handle, a reader's snapshot, repair). Each time, another process rewrote or
/// re-created the file while this one waited for its lock: a few in a row are a busy segment,
/// this many a loop that would not end.
pub(crate) const MAX_REOPENS: u32 = 32;

/// The error of an opener that gave up after [`MAX_REOPENS`] replacements in a row.
pub(crate) fn replaced_too_often(path: &Path) -> Error {
    Error::io(
        "lock",
        path,
        io::Error::new(
            io::ErrorKind::ResourceBusy,
            format!("replaced {MAX_REOPENS} times in a row while its lock was awaited"),
        ),
    )
}

/// A file opened for reading.
#[derive(Debug)]
pub(crate) struct Snapshot<F: FileSystem> {
    pub(crate) file: F::File,
    pub(crate) path: PathBuf,
}

impl<F: FileSystem> Snapshot<F> {
    pub(crate) fn reader<'a>(&'a self, fs: &'a F) -> Reader<'a, F> {
        Reader {
            fs,
            file: &self.file,
            path: &self.path,
        }
    }
}

/// Opens `name` in `dir` for reading and runs `f` on it under the shared lock (so that no
/// append is in flight) with its size, following replacements. `Ok(None)` if the file does not
/// exist. Never writes, and never creates anything.
pub(crate) fn with_snapshot<F: FileSystem, T>(
    tree: &Tree<F>,
    dir: &Dir<F>,
    name: &str,
    mut f: impl FnMut(Reader<'_, F>, u64) -> Result<T>,
) -> Result<Option<(Snapshot<F>, T)>> {
    let fs = &tree.fs;
    for _ in 0..=MAX_REOPENS {
        let Some(file) = tree.open_file(dir, name, Access::Read)? else {
            return Ok(None);
        };
        let snapshot = Snapshot {
            file,
            path: dir.path_of(name),
        };
        fs.lock(&snapshot.file, LockKind::Shared)
            .map_err(|e| Error::io("lock", &snapshot.path, e))?;
        let result = fs
            .size_and_links(&snapshot.file)
            .map_err(|e| Error::io("stat", &snapshot.path, e))
            .and_then(|(size, links)| {
                if links == 0 {
                    Ok(None)
                } else {
                    f(snapshot.reader(fs), size).map(Some)
                }
            });
        let _ = fs.unlock(&snapshot.file);
        if let Some(value) = result? {
            return Ok(Some((snapshot, value)));
        }
    }
    Err(replaced_too_often(&dir.path_of(name)))
}

/// Opens `name` in `dir` and takes its exclusive lock, following replacements; `Ok(None)` if
/// missing. With [`Access::Read`] (a dry run) nothing is opened for writing: `flock` works on
/// a read-only descriptor, and on a read-only mount. Waits for the lock at most `wait.0` (a
/// lease may hold it), then [`Error::Locked`] for segment `wait.2` of session `wait.1`.
pub(crate) fn open_locked<F: FileSystem>(
    tree: &Tree<F>,
    dir: &Dir<F>,
    name: &str,
    access: Access,
    wait: (Duration, SessionId, SegmentId),
) -> Result<Option<Snapshot<F>>> {
    let mut patience = Patience::new(wait.0);
    let fs = &tree.fs;
    for _ in 0..=MAX_REOPENS {
        let Some(file) = tree.open_file(dir, name, access)? else {
            return Ok(None);
        };
        let snapshot = Snapshot {
            file,
            path: dir.path_of(name),
        };
        // Waiting for a held file is not following a replacement: it does not count.
        while !fs
            .try_lock(&snapshot.file, LockKind::Exclusive)
            .map_err(|e| Error::io("lock", &snapshot.path, e))?
        {
            if !patience.pause() {
                return Err(Error::Locked {
                    session: wait.1,
                    segment: wait.2,
                    holder: None,
                    waited: patience.waited(),
                });
            }
        }
        match fs.size_and_links(&snapshot.file) {
            Ok((_, links)) if links > 0 => return Ok(Some(snapshot)),
            Ok(_) => {
                let _ = fs.unlock(&snapshot.file);
            }
            Err(e) => {
                let _ = fs.unlock(&snapshot.file);
                return Err(Error::io("stat", &snapshot.path, e));
            }
        }
    }
    Err(replaced_too_often(&dir.path_of(name)))
}
