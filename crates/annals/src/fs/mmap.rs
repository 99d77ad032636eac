//! The mapped fast path for verification, used by [`OsFs`](super::OsFs) only. The only module
//! with `unsafe`.

#![allow(
    unsafe_code,
    reason = "the one module with `unsafe`: a read-only map of committed bytes, each block with its SAFETY note"
)]

use std::fs::File;
use std::io;

use memmap2::{Advice, Mmap, MmapOptions, UncheckedAdvice};

use crate::Result;

/// Maps the first `len` bytes of `file` read-only.
///
/// `len` must be a committed length: it ends right after a newline and was read under the
/// segment's shared lock (see `FsStore::verify`).
pub(crate) fn map_committed(file: &File, len: u64) -> io::Result<Option<Mmap>> {
    if len == 0 {
        return Ok(None);
    }
    let len = usize::try_from(len).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "file larger than the address space",
        )
    })?;
    // SAFETY: the mapping is sound as long as no byte of it changes or disappears while it is
    // mapped. annals never changes a committed byte in place (lines are only ever appended),
    // and never shrinks a file in place below a newline that was committed: the only in-place
    // `set_len` calls cut (a) a torn tail, which lies after the last newline, and (b) the bytes
    // of a write that failed, which the failing appender cut while it still held the exclusive
    // lock, so they were never visible under the shared lock this length was read with; a
    // lease writes under a shared lock, so readers may see its bytes, and it cuts a failed
    // write in place only when the bytes hold no newline (they lie after the last one: they
    // are never mapped), and by a rewrite otherwise (`lease.rs`). Every
    // other shortening (truncate, repair of a corrupt line) writes a new file and renames it
    // over the old one, which leaves the mapped inode, and so this mapping, intact. Other
    // programs that truncate annals files in place break this promise; docs/DURABILITY.md
    // says so.
    let map = unsafe { MmapOptions::new().len(len).map(file) }?;
    // Only a hint; a failure changes nothing.
    let _ = map.advise(Advice::Sequential);
    Ok(Some(map))
}

/// How much of a mapping is resident at a time while it is walked.
const CHUNK: usize = 8 << 20;

/// Walks `map` in chunks that end at a newline (or the end), handing each to `f` with its offset,
/// and drops each chunk's pages from the process once `f` has returned, so that the resident
/// memory of a scan stays about one chunk whatever the file's size.
pub(crate) fn for_each_chunk(
    map: &Mmap,
    mut f: impl FnMut(u64, &[u8]) -> Result<()>,
) -> Result<()> {
    let bytes: &[u8] = map;
    let mut pos = 0usize;
    while pos < bytes.len() {
        let end = pos.saturating_add(CHUNK).min(bytes.len());
        let window = bytes.get(pos..end).unwrap_or_default();
        let cut = match memchr::memrchr(b'\n', window) {
            Some(nl) => pos + nl + 1,
            // One line longer than a chunk (garbage): take it whole.
            None => memchr::memchr(b'\n', bytes.get(end..).unwrap_or_default())
                .map_or(bytes.len(), |nl| end + nl + 1),
        };
        f(pos as u64, bytes.get(pos..cut).unwrap_or_default())?;
        release(map, pos, cut);
        pos = cut;
    }
    Ok(())
}

/// Drops the pages wholly inside `from..to` from this process.
fn release(map: &Mmap, from: usize, to: usize) {
    const PAGE: usize = 4096;
    let start = from.div_ceil(PAGE) * PAGE;
    let end = to / PAGE * PAGE;
    if end > start {
        // SAFETY: the mapping is read-only and file-backed, and the file's bytes in it never
        // change (see `map_committed`), so after MADV_DONTNEED a later access faults in the very
        // same bytes from the file: no borrow can observe a change. No slice of this range is
        // alive here either: `f` has returned. A failure only means the pages stay resident.
        let _ =
            unsafe { map.unchecked_advise_range(UncheckedAdvice::DontNeed, start, end - start) };
    }
}
