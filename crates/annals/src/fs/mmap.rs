//! The mapped fast path for verification. The only module with `unsafe`.

#![allow(unsafe_code)]

use std::fs::File;
use std::path::Path;

use memmap2::{Advice, Mmap, MmapOptions};

use crate::{Error, Result};

/// Maps the first `len` bytes of `file` read-only.
///
/// `len` must be a committed length: it ends right after a newline and was read under the
/// segment's shared lock (see `FsStore::verify`).
pub(crate) fn map_committed(file: &File, len: u64, path: &Path) -> Result<Option<Mmap>> {
    if len == 0 {
        return Ok(None);
    }
    let len = usize::try_from(len).map_err(|_| {
        Error::io(
            "map",
            path,
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "file larger than the address space",
            ),
        )
    })?;
    // SAFETY: the mapping is sound as long as no byte of it changes or disappears while it is
    // mapped. annals never changes a committed byte in place (lines are only ever appended),
    // and never shrinks a file in place below a newline that was committed: the only in-place
    // `set_len` calls cut (a) a torn tail, which lies after the last newline, and (b) the bytes
    // of a write that failed, which the failing appender cut while it still held the exclusive
    // lock, so they were never visible under the shared lock this length was read with. Every
    // other shortening (truncate, repair of a corrupt line) writes a new file and renames it
    // over the old one, which leaves the mapped inode, and so this mapping, intact. Other
    // programs that truncate annals files in place break this promise; docs/DURABILITY.md
    // says so.
    let map =
        unsafe { MmapOptions::new().len(len).map(file) }.map_err(|e| Error::io("map", path, e))?;
    // Only a hint; a failure changes nothing.
    let _ = map.advise(Advice::Sequential);
    Ok(Some(map))
}
