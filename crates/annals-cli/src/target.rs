//! Which store a command works on ([`Location`]), opened once. Commands speak to it as
//! `dyn Store`; what only a filesystem store has (file paths, repair, blob files, stored lines)
//! goes through [`Target::fs`], and [`Location::files_only`] refuses the rest with one message.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use annals::{BackendErrorKind, FsStore, SessionId, Store};
use annals_postgres::{PgOptions, PgStore};

pub use crate::location::Location;

use crate::cmd::WriteArgs;
use crate::fail::{store_error, Cause, Failure, CANNOT_RUN};

impl Location {
    /// Refuses a place where a store cannot be made, without making anything: what a writing
    /// command checks before it has accepted its input. (A database is checked when opened.)
    pub fn check_writable(&self) -> Result<(), Failure> {
        let Some(root) = self.fs_root() else {
            return Ok(());
        };
        match inspect(root)? {
            Root::Missing | Root::Empty | Root::Store => Ok(()),
            Root::Foreign(n) => Err(foreign(root, n)),
        }
    }

    /// Refuses `what` (a command or option that needs files, because `why`) for a store that
    /// is not a filesystem store, before connecting to anything: exit code 2, naming the store.
    pub fn files_only(&self, what: &str, why: &str) -> Result<(), Failure> {
        match self.fs_root() {
            Some(_) => Ok(()),
            None => Err(refuse_files_only(self, what, why)),
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
    // Boxed: a pool and its settings are several times the size of a filesystem store.
    Pg(Box<PgStore>),
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
    /// directory (or a database schema) behind when pointed at the wrong place.
    pub fn existing(location: &Location) -> Result<Self, Failure> {
        let Location::Postgres { url, schema } = location else {
            return Self::existing_if_any(location)?.ok_or_else(|| no_store(location));
        };
        // As existing_if_any, keeping the server's word on what is missing.
        Self::open_pg(location, url, schema, false).map_err(|e| match e {
            annals::Error::Backend {
                kind: BackendErrorKind::MissingDatabase,
                message,
                ..
            } => Failure::new(CANNOT_RUN, "no annals store here", message, NO_PG_STORE),
            e => store_error(e, &location.describe()),
        })
    }

    /// Opens the store if there is one; `None` where none exists yet (no root directory, no
    /// store in the database's schema), so that a writing command can make it once it has
    /// accepted its input, and `follow --wait` can wait for it. Creates nothing.
    pub fn existing_if_any(location: &Location) -> Result<Option<Self>, Failure> {
        match location {
            Location::Fs(root) => match inspect(root)? {
                Root::Missing => Ok(None),
                Root::Foreign(n) => Err(foreign(root, n)),
                Root::Empty | Root::Store => Self::open(location, false).map(Some),
            },
            Location::Postgres { url, schema } => match Self::open_pg(location, url, schema, false)
            {
                Ok(target) => Ok(Some(target)),
                Err(annals::Error::Backend {
                    kind: BackendErrorKind::MissingDatabase,
                    ..
                }) => Ok(None),
                Err(e) => Err(store_error(e, &location.describe())),
            },
        }
    }

    /// Opens a store, creating its root (or its schema) if needed, for commands that write,
    /// once they have accepted their input.
    pub fn writable(location: &Location) -> Result<Self, Failure> {
        location.check_writable()?;
        Self::open(location, true)
    }

    fn open(location: &Location, create: bool) -> Result<Self, Failure> {
        match location {
            Location::Fs(root) => Ok(Self {
                backend: Backend::Fs(
                    FsStore::open(root).map_err(|e| store_error(e, &location.describe()))?,
                ),
                location: location.clone(),
            }),
            Location::Postgres { url, schema } => Self::open_pg(location, url, schema, create)
                .map_err(|e| store_error(e, &location.describe())),
        }
    }

    fn open_pg(location: &Location, url: &str, schema: &str, create: bool) -> annals::Result<Self> {
        let options = PgOptions::new(url).schema(schema).create_schema(create);
        Ok(Self {
            backend: Backend::Pg(Box::new(PgStore::open_with(options)?)),
            location: location.clone(),
        })
    }

    /// The store, as every backend offers it.
    pub fn store(&self) -> &dyn Store {
        match &self.backend {
            Backend::Fs(store) => store,
            Backend::Pg(store) => store.as_ref(),
        }
    }

    /// The same store, opened for a writing command's `--durable` and `--compress` (a
    /// filesystem store: its options; a database is durable either way, and `--compress` was
    /// refused for it by [`WriteArgs::check`]).
    pub fn for_writes(self, write: &WriteArgs) -> Result<Self, Failure> {
        match (&self.backend, &self.location) {
            (Backend::Fs(_), Location::Fs(root)) if *write != WriteArgs::default() => {
                let store = FsStore::open_with(root, write.fs_options())
                    .map_err(|e| store_error(e, &self.location.describe()))?;
                Ok(Self {
                    backend: Backend::Fs(store),
                    location: self.location,
                })
            }
            _ => Ok(self),
        }
    }

    /// The store, owned and shareable across threads (`annals serve`).
    pub fn into_shared(self) -> std::sync::Arc<dyn Store> {
        match self.backend {
            Backend::Fs(store) => std::sync::Arc::new(store),
            Backend::Pg(store) => std::sync::Arc::new(*store),
        }
    }

    /// The filesystem store, for what only files have (paths, repair, blob files); `None` on
    /// other backends.
    pub fn fs(&self) -> Option<&FsStore> {
        match &self.backend {
            Backend::Fs(store) => Some(store),
            Backend::Pg(_) => None,
        }
    }

    /// What the paths in the store's reports (`ScanReport::path`, `Error::Corrupt`'s path)
    /// begin with: the root directory, or the database server's address (no password).
    pub fn paths_root(&self) -> PathBuf {
        match &self.backend {
            Backend::Fs(store) => store.root().to_path_buf(),
            Backend::Pg(store) => PathBuf::from(store.server()),
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

/// The refusal of something only a filesystem store has, for a store at `location` that is
/// not one.
fn refuse_files_only(location: &Location, what: &str, why: &str) -> Failure {
    Failure::new(
        CANNOT_RUN,
        format!("{what} works on filesystem stores only ({why})"),
        location.describe(),
        "`annals copy --from STORE --to DIR` copies sessions into a directory, where it works",
    )
}

/// "No annals store here": no root directory, or no store in the database's schema.
pub fn no_store(location: &Location) -> Failure {
    match location {
        Location::Fs(root) => Failure::new(
            CANNOT_RUN,
            "no annals store here",
            root.display(),
            "pass --root DIR, --store STORE or set ANNALS_STORE (`annals demo --root DIR` makes \
             a store to try)",
        ),
        Location::Postgres { .. } => Failure::new(
            CANNOT_RUN,
            "no annals store here (the database or the schema holds none; nothing was created)",
            location.shown(),
            NO_PG_STORE,
        ),
    }
}

/// What to do about a database that holds no store.
const NO_PG_STORE: &str = "check the URL's database and its ?schema=NAME (default annals); in \
     an existing database, a writing command (`annals demo --store URL`, `annals append \
     --create`, `annals import`) makes the store";

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

/// True if a trace replay's report describes a trace that exists: a file, or events in a
/// database (whose reports name no file; a segment there without trace events has no trace, as
/// a segment without a trace file has none).
pub fn is_trace(report: &annals::ScanReport) -> bool {
    report.path.is_some() || report.entries > 0 || report.file_len > 0
}

pub use annals::BlobUsage;

impl Target {
    /// The session's blobs on disk (entries too long for a line, attachments), where the
    /// backend keeps them as files (`FsStore::blob_usage`: looks only, follows no link).
    pub fn blob_usage(&self, session: SessionId) -> Option<BlobUsage> {
        self.fs()?.blob_usage(session).ok()
    }

    /// Size of a segment's debug trace (`None` if it has none): the file's length, read with one
    /// `lstat`, where the backend has files; else the bytes its events hold, read by a replay.
    pub fn trace_bytes(&self, session: SessionId, segment: annals::SegmentId) -> Option<u64> {
        if self.fs().is_none() {
            let options = annals::ReplayOptions::tolerant().blob_refs();
            let report = self
                .store()
                .replay_trace_raw(session, segment, &options, &mut |_| {
                    Ok(std::ops::ControlFlow::Continue(()))
                })
                .ok()?;
            return is_trace(&report).then_some(report.file_len);
        }
        let path = self.trace_path(session, segment)?;
        fs::symlink_metadata(path)
            .ok()
            .filter(fs::Metadata::is_file)
            .map(|m| m.len())
    }

    /// What reports call a segment's log (`trace`: its debug trace): the file's path, or on a
    /// database the name its errors give the segment's rows
    /// (`postgresql://user@host:port/db/SCHEMA.entries/SESSION/SEGMENT`).
    pub fn log_name(&self, session: SessionId, segment: annals::SegmentId, trace: bool) -> PathBuf {
        match &self.backend {
            Backend::Fs(_) => if trace {
                self.trace_path(session, segment)
            } else {
                self.segment_path(session, segment)
            }
            .unwrap_or_default(),
            Backend::Pg(pg) => {
                let table = if trace { "trace_events" } else { "entries" };
                PathBuf::from(format!(
                    "{}/{}.{table}/{session}/{segment}",
                    pg.server(),
                    pg.schema()
                ))
            }
        }
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
