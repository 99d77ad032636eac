//! Which store a command works on: `--root DIR`, else `$ANNALS_ROOT`, else `./annals-store`,
//! opened once. Commands speak to it as `dyn Store`; what only a filesystem store has (file
//! paths, repair, blob files) goes through [`Target::fs`], the one seam another backend
//! (`--store URL`) plugs in beside.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use annals::{FsStore, SessionId, Store};

use crate::fail::{store_error, Cause, Failure, CANNOT_RUN};

/// The store root used when neither `--root` nor `ANNALS_ROOT` is given.
pub const DEFAULT_ROOT: &str = "./annals-store";

/// Where the store is, as the command line and environment say.
#[derive(Debug, Clone)]
pub struct Location {
    /// The filesystem store's root directory.
    pub root: PathBuf,
}

impl Location {
    /// `--root`, else `$ANNALS_ROOT` (an empty one counts as unset), else the default.
    pub fn from_args(root: Option<PathBuf>) -> Self {
        let root = root
            .or_else(|| {
                std::env::var_os("ANNALS_ROOT")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
            })
            .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT));
        Self { root }
    }

    /// For messages: `store ./annals-store`.
    pub fn describe(&self) -> String {
        format!("store {}", self.root.display())
    }

    /// Refuses a place where a store cannot be made, without making anything: what a writing
    /// command checks before it has accepted its input.
    pub fn check_writable(&self) -> Result<(), Failure> {
        match inspect(&self.root)? {
            Root::Missing | Root::Empty | Root::Store => Ok(()),
            Root::Foreign(n) => Err(foreign(&self.root, n)),
        }
    }
}

/// An opened store.
pub struct Target {
    backend: Backend,
    location: Location,
}

/// The backends the tool can open. Each command reaches a backend only as `dyn Store`, or
/// through [`Target::fs`] for what only files have.
enum Backend {
    Fs(FsStore),
}

/// What is at a root path.
enum Root {
    Missing,
    Empty,
    Store,
    /// A directory with this many entries, none of them a session.
    Foreign(u64),
}

impl Target {
    /// Opens an existing store. Never creates anything: read-only commands must not leave a
    /// directory behind when pointed at the wrong place.
    pub fn existing(location: &Location) -> Result<Self, Failure> {
        let root = &location.root;
        match inspect(root)? {
            Root::Missing => Err(Failure::new(
                CANNOT_RUN,
                "no annals store here",
                root.display(),
                "pass --root DIR or set ANNALS_ROOT (`annals demo --root DIR` makes a store to \
                 try)",
            )),
            Root::Foreign(n) => Err(foreign(root, n)),
            Root::Empty | Root::Store => Self::open(location),
        }
    }

    /// Opens a store, creating its root if needed (for commands that write, once they have
    /// accepted their input).
    pub fn writable(location: &Location) -> Result<Self, Failure> {
        location.check_writable()?;
        Self::open(location)
    }

    fn open(location: &Location) -> Result<Self, Failure> {
        let store =
            FsStore::open(&location.root).map_err(|e| store_error(e, &location.describe()))?;
        Ok(Self {
            backend: Backend::Fs(store),
            location: location.clone(),
        })
    }

    /// The store, as every backend offers it.
    pub fn store(&self) -> &dyn Store {
        match &self.backend {
            Backend::Fs(store) => store,
        }
    }

    /// The store, owned and shareable across threads (`annals serve`).
    pub fn into_shared(self) -> std::sync::Arc<dyn Store> {
        match self.backend {
            Backend::Fs(store) => std::sync::Arc::new(store),
        }
    }

    /// The filesystem store, for what only files have (paths, repair, blob files); `None` on
    /// other backends.
    pub fn fs(&self) -> Option<&FsStore> {
        match &self.backend {
            Backend::Fs(store) => Some(store),
        }
    }

    /// Where the store is.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// For messages: `store ./annals-store`.
    pub fn describe(&self) -> String {
        self.location.describe()
    }

    /// Maps a library error with this store as context.
    pub fn err(&self, e: annals::Error) -> Failure {
        store_error(e, &self.describe())
    }
}

fn foreign(root: &Path, entries: u64) -> Failure {
    Failure::new(
        CANNOT_RUN,
        format!(
            "no annals store in this directory (it holds {entries} entr{} and no session \
             directory)",
            if entries == 1 { "y" } else { "ies" }
        ),
        root.display(),
        "pass --root with the directory of a store (or an empty or new one to make a store)",
    )
}

fn inspect(root: &Path) -> Result<Root, Failure> {
    let unreadable = |e: io::Error| {
        let cause = Cause::of(&e, Some(root));
        Failure::new(
            CANNOT_RUN,
            format!("cannot read the store root ({})", cause.what),
            root.display(),
            cause.todo.unwrap_or("check the --root path"),
        )
    };
    let meta = match fs::metadata(root) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Root::Missing),
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
            return Err(not_a_directory(root, "a path through a file"));
        }
        Err(e) => return Err(unreadable(e)),
    };
    if !meta.is_dir() {
        return Err(not_a_directory(root, kind_of(&meta)));
    }
    let mut entries = 0u64;
    for entry in fs::read_dir(root).map_err(unreadable)? {
        let entry = entry.map_err(unreadable)?;
        entries += 1;
        let is_session = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.parse::<SessionId>().is_ok());
        if is_session {
            return Ok(Root::Store);
        }
    }
    Ok(if entries == 0 {
        Root::Empty
    } else {
        Root::Foreign(entries)
    })
}

fn not_a_directory(root: &Path, found: &str) -> Failure {
    Failure::new(
        CANNOT_RUN,
        format!("the store root is not a directory (it is {found})"),
        root.display(),
        "pass --root with the store's directory",
    )
}

fn kind_of(meta: &fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_file() {
        "a regular file"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "not a directory"
    }
}

/// Blob files of one session, as counted on disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlobUsage {
    pub count: u64,
    pub bytes: u64,
}

impl Target {
    /// The session's blobs on disk (entries too long for a line, attachments), where the
    /// backend keeps them as files: every regular file under `{session}/blobs/` but the lock.
    /// Looks only (`lstat`), follows no link.
    pub fn blob_usage(&self, session: SessionId) -> Option<BlobUsage> {
        let fs = self.fs()?;
        let dir = fs.root().join(session.to_string()).join("blobs");
        let mut usage = BlobUsage::default();
        let mut stack = vec![(dir, 0u8)];
        while let Some((dir, depth)) = stack.pop() {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let Ok(meta) = fs::symlink_metadata(entry.path()) else {
                    continue;
                };
                if meta.is_dir() && depth == 0 {
                    stack.push((entry.path(), depth + 1));
                } else if meta.is_file() && !(depth == 0 && entry.file_name() == "lock") {
                    usage.count += 1;
                    usage.bytes += meta.len();
                }
            }
        }
        Some(usage)
    }

    /// Size of a segment's debug trace file, where the backend has files (`None` if there is
    /// none).
    pub fn trace_bytes(&self, session: SessionId, segment: annals::SegmentId) -> Option<u64> {
        let path = self.trace_path(session, segment)?;
        fs::symlink_metadata(path)
            .ok()
            .filter(fs::Metadata::is_file)
            .map(|m| m.len())
    }

    /// Path of a segment's debug trace file, where the backend has files.
    pub fn trace_path(&self, session: SessionId, segment: annals::SegmentId) -> Option<PathBuf> {
        let path = self.fs()?.segment_path(session, segment);
        Some(path.with_file_name(format!("{segment}.trace.jsonl")))
    }

    /// Path of a segment's log file, where the backend has files.
    pub fn segment_path(&self, session: SessionId, segment: annals::SegmentId) -> Option<PathBuf> {
        Some(self.fs()?.segment_path(session, segment))
    }
}
