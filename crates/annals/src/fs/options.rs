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
}

impl Default for FsOptions {
    fn default() -> Self {
        Self {
            durability: Durability::Buffered,
            max_open_files: 256,
            max_entry_bytes: crate::store::DEFAULT_MAX_ENTRY_BYTES,
            allow_unsafe_fs: false,
        }
    }
}
