//! Fault injection: named points at every write, fsync, rename, link and directory sync of the
//! filesystem store, where a test's [`FaultPlan`] can make the operation fail (`EIO`,
//! `ENOSPC`), write short, or crash the process.
//!
//! Compiled out unless the `fault-injection` feature is on: without it, [`Faults`] is empty and
//! every check is a constant `Ok`. A plan belongs to one store (`FsStore::open_with_faults`),
//! not to the process, so tests using it run in parallel.

// Without the feature only the empty `Faults` is used; the plan types exist for it.
#![cfg_attr(not(feature = "fault-injection"), allow(dead_code))]

use std::io;
use std::path::Path;
#[cfg(feature = "fault-injection")]
use std::sync::Arc;

/// Where a fault can be injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FaultPoint {
    /// The one `write(2)` of an append (segment or trace).
    AppendWrite,
    /// The `fdatasync` of an append in `Sync` mode.
    AppendSync,
    /// After an append's write (and sync) succeeded, before it returns: a crash here loses
    /// the acknowledgement, not the line.
    AppendDone,
    /// Cutting a torn tail before an append.
    TornTailCut,
    /// Cutting the bytes of a failed write.
    Rollback,
    /// Writing a temporary file (create, truncate, fork, trace creation, repair).
    TempWrite,
    /// fsync of a temporary file.
    TempSync,
    /// `link` of a new file into place (create, fork).
    Link,
    /// `rename` of a rewritten file over the old one (truncate, repair).
    Rename,
    /// fsync of a directory after a link, rename or unlink.
    DirSync,
}

impl FaultPoint {
    /// Every point, for tests that go through all of them.
    pub const ALL: [FaultPoint; 10] = [
        Self::AppendWrite,
        Self::AppendSync,
        Self::AppendDone,
        Self::TornTailCut,
        Self::Rollback,
        Self::TempWrite,
        Self::TempSync,
        Self::Link,
        Self::Rename,
        Self::DirSync,
    ];
}

/// What happens at a point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The operation fails with `EIO` and does nothing.
    Eio,
    /// The operation fails with `ENOSPC` and does nothing.
    Enospc,
    /// A write writes only this many bytes and reports it (other operations: `EIO`).
    ShortWrite(usize),
    /// The process aborts before the operation, as a `kill -9` would end it.
    Crash,
}

/// A file-system operation the store completed, reported to [`FaultPlan::observe`] in the
/// order the store performed them. Enough to rebuild what a power cut could leave on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IoOp<'a> {
    /// A directory was created (not yet durable in its parent until that is synced).
    CreateDir {
        /// The new directory.
        path: &'a Path,
    },
    /// A new, empty file was created.
    CreateFile {
        /// The new file.
        path: &'a Path,
    },
    /// Bytes were written at the end of a file.
    Append {
        /// The file.
        path: &'a Path,
        /// The bytes, as written (a short write reports what it wrote).
        data: &'a [u8],
    },
    /// A file was cut to `len` bytes.
    SetLen {
        /// The file.
        path: &'a Path,
        /// Its new length.
        len: u64,
    },
    /// A file's data (and size) were made durable (`fsync`/`fdatasync`).
    Sync {
        /// The file.
        path: &'a Path,
    },
    /// A directory's entries were made durable.
    SyncDir {
        /// The directory.
        path: &'a Path,
    },
    /// `to` became a second name of `from`'s file.
    Link {
        /// Existing name.
        from: &'a Path,
        /// New name.
        to: &'a Path,
    },
    /// `from` was renamed over `to`.
    Rename {
        /// Old name.
        from: &'a Path,
        /// New name, replaced if it existed.
        to: &'a Path,
    },
    /// A name was removed.
    Remove {
        /// The name.
        path: &'a Path,
    },
}

/// Decides, each time the store reaches a point, whether a fault happens there, and hears of
/// every operation that completed.
pub trait FaultPlan: Send + Sync + std::fmt::Debug {
    /// Called at every point the store reaches, with the file (or directory) concerned.
    fn at(&self, point: FaultPoint, path: &Path) -> Option<Fault>;

    /// Called after every file-system operation that changes what a power cut could leave
    /// behind. The default ignores it.
    fn observe(&self, op: &IoOp<'_>) {
        let _ = op;
    }
}

/// A plan that injects `fault` the `nth` time (0-based) `point` is reached, and never again.
#[derive(Debug)]
pub struct FailNth {
    point: FaultPoint,
    nth: u64,
    fault: Fault,
    seen: std::sync::atomic::AtomicU64,
}

impl FailNth {
    /// Injects `fault` at the `nth` arrival at `point`.
    #[must_use]
    pub fn new(point: FaultPoint, nth: u64, fault: Fault) -> Self {
        Self {
            point,
            nth,
            fault,
            seen: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// How many times the point was reached so far.
    #[must_use]
    pub fn hits(&self) -> u64 {
        self.seen.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl FaultPlan for FailNth {
    fn at(&self, point: FaultPoint, _path: &Path) -> Option<Fault> {
        if point != self.point {
            return None;
        }
        let n = self.seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        (n == self.nth).then_some(self.fault)
    }
}

/// The store's plan, if any. Empty (and free) without the `fault-injection` feature.
#[derive(Debug, Clone, Default)]
pub(crate) struct Faults {
    #[cfg(feature = "fault-injection")]
    plan: Option<Arc<dyn FaultPlan>>,
}

/// What a write should do after the check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteLen {
    All,
    Short(usize),
}

impl Faults {
    #[cfg(feature = "fault-injection")]
    pub(crate) fn new(plan: Arc<dyn FaultPlan>) -> Self {
        Self { plan: Some(plan) }
    }

    /// Checks a point that is not a write: `Err` is the injected error.
    #[inline]
    pub(crate) fn check(&self, point: FaultPoint, path: &Path) -> io::Result<()> {
        match self.write_check(point, path)? {
            WriteLen::All => Ok(()),
            WriteLen::Short(_) => Err(io::Error::from_raw_os_error(EIO)),
        }
    }

    /// Checks a write point: it may also be told to write short.
    #[inline]
    #[cfg_attr(
        not(feature = "fault-injection"),
        allow(clippy::unused_self, clippy::unnecessary_wraps)
    )]
    pub(crate) fn write_check(&self, point: FaultPoint, path: &Path) -> io::Result<WriteLen> {
        #[cfg(feature = "fault-injection")]
        if let Some(plan) = &self.plan {
            match plan.at(point, path) {
                None => {}
                Some(Fault::Eio) => return Err(io::Error::from_raw_os_error(EIO)),
                Some(Fault::Enospc) => return Err(io::Error::from_raw_os_error(ENOSPC)),
                Some(Fault::ShortWrite(n)) => return Ok(WriteLen::Short(n)),
                Some(Fault::Crash) => std::process::abort(),
            }
        }
        let _ = (point, path);
        Ok(WriteLen::All)
    }

    /// Reports a completed operation to the plan.
    #[inline]
    #[cfg_attr(not(feature = "fault-injection"), allow(clippy::unused_self))]
    pub(crate) fn observe(&self, op: &IoOp<'_>) {
        #[cfg(feature = "fault-injection")]
        if let Some(plan) = &self.plan {
            plan.observe(op);
        }
        let _ = op;
    }
}

const EIO: i32 = 5;
#[cfg(feature = "fault-injection")]
const ENOSPC: i32 = 28;
