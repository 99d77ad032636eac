//! What a store is opened with.

/// What an append promises once it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// The line is in the kernel's page cache: it survives a crash of the process, not a power
    /// cut or kernel crash.
    #[default]
    Buffered,
    /// `fdatasync` before the append returns: the line survives a power cut (on a device that
    /// honours flushes).
    Sync,
}

/// Whether the blobs of a store's new files are compressed (entries longer than a line, kept
/// in the session's blob pack; docs/FORMAT.md, format 4). Off by default: on the real-shaped
/// benchmark it takes 0.58× the bytes on disk but 1.8–2.8× the time of a `Buffered` append
/// (docs/BENCHMARKS.md). Readers read either kind whatever the option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BlobCompression {
    /// Blobs are stored as they are.
    #[default]
    None,
    /// Each blob is compressed with zstd at `level` (1, fastest, to 19; values outside are
    /// taken as the nearest) and stored so when that makes it smaller, as it is otherwise.
    /// Files created before format 4 keep getting uncompressed blobs: their readers know no
    /// other kind.
    Zstd {
        /// The zstd level.
        level: i32,
    },
}

impl BlobCompression {
    /// zstd's own default level, 3.
    pub const ZSTD: Self = Self::Zstd { level: 3 };

    /// The level this option compresses at, if it does, within 1..=19.
    pub(crate) fn zstd_level(self) -> Option<i32> {
        match self {
            Self::None => None,
            Self::Zstd { level } => Some(level.clamp(1, 19)),
        }
    }
}

/// Options of [`FsStore::open_with`](super::FsStore::open_with).
///
/// ```
/// use annals::{Durability, FsOptions, FsStore};
/// # fn main() -> annals::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// let store = FsStore::open_with(
///     dir.path(),
///     FsOptions {
///         durability: Durability::Sync,   // fdatasync before every append returns
///         max_entry_bytes: 16 << 20,      // refuse entries over 16 MiB
///         ..FsOptions::default()
///     },
/// )?;
/// assert_eq!(store.options().durability, Durability::Sync);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsOptions {
    /// What an append promises.
    pub durability: Durability,
    /// How many segment files the store keeps open between appends (least recently used ones
    /// are closed beyond that).
    pub max_open_files: usize,
    /// Largest entry accepted, in bytes of JSON text (default 64 MiB). Entries longer than a
    /// line can hold are kept as blobs; above this they are refused with `EntryTooLarge`.
    pub max_entry_bytes: usize,
    /// Open a root on a network or FUSE file system anyway (NFS, SMB, CephFS, 9p, FUSE, ...).
    /// Off by default: there, concurrent appends can overwrite each other. Safe only if a
    /// single process on a single machine ever writes the store.
    pub allow_unsafe_fs: bool,
    /// How long a writer that does not hold a lease waits for a segment (or trace) that
    /// another writer holds, before it gives up with `Error::Locked` (default 5 s). Appends
    /// of other writers hold a segment for microseconds; a lease holds it until it is released.
    pub lock_wait: std::time::Duration,
    /// What a writer that takes a segment (its first append, truncate or fork through this
    /// store) does with an interrupted or damaged end of a format-2 file: cut an interrupted
    /// tail into a `.recovered-` file (the default), refuse, or cut at any damage
    /// (docs/DURABILITY.md, *Recovery*). Readers never cut, whatever the mode.
    pub recovery: crate::RecoveryMode,
    /// Whether blobs of new files are compressed (default: not).
    pub blob_compression: BlobCompression,
}

impl Default for FsOptions {
    fn default() -> Self {
        Self {
            durability: Durability::Buffered,
            max_open_files: 256,
            max_entry_bytes: crate::store::DEFAULT_MAX_ENTRY_BYTES,
            allow_unsafe_fs: false,
            lock_wait: crate::DEFAULT_LOCK_WAIT,
            recovery: crate::RecoveryMode::TolerateInterruptedTail,
            blob_compression: BlobCompression::None,
        }
    }
}
