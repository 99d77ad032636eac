//! The mapped fast path for verification, used by [`OsFs`](super::OsFs) only. The only module
//! with `unsafe`.

#![allow(
    unsafe_code,
    reason = "the one module with `unsafe`: a read-only map of committed bytes, each block with its SAFETY note"
)]

use std::fs::File;
use std::io;

use memmap2::{Advice, Mmap, MmapOptions, UncheckedAdvice};

use super::seam::MappedChunk;
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
    // lock, so they were never visible under the shared lock this length was read with. Every
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

/// Walks `map` in chunks of whole lines, handing each to `f` with its offset, and drops each
/// chunk's pages from the process once `f` has returned, so that the resident memory of a scan
/// stays about one chunk whatever the file's size. A line longer than a chunk (garbage: annals
/// writes none longer than 4 KiB) is searched for its end a chunk at a time, each chunk's
/// pages dropped behind the search, and handed over as its length only.
pub(crate) fn for_each_chunk(
    map: &Mmap,
    mut f: impl FnMut(u64, MappedChunk<'_>) -> Result<()>,
) -> Result<()> {
    let bytes: &[u8] = map;
    let mut pos = 0usize;
    while pos < bytes.len() {
        let end = pos.saturating_add(CHUNK).min(bytes.len());
        let window = bytes.get(pos..end).unwrap_or_default();
        if let Some(nl) = memchr::memrchr(b'\n', window) {
            let cut = pos + nl + 1;
            f(
                pos as u64,
                MappedChunk::Lines(bytes.get(pos..cut).unwrap_or_default()),
            )?;
            release(map, pos, cut);
            pos = cut;
            continue;
        }
        release(map, pos, end);
        let line_end = end_of_line(map, end);
        f(pos as u64, MappedChunk::TooLong((line_end - pos) as u64))?;
        pos = line_end + 1;
    }
    Ok(())
}

/// The offset of the first newline at or after `from` (the mapping's end if there is none),
/// searched a chunk at a time, each chunk's pages dropped once searched.
fn end_of_line(map: &Mmap, from: usize) -> usize {
    let bytes: &[u8] = map;
    let mut at = from;
    while at < bytes.len() {
        let end = at.saturating_add(CHUNK).min(bytes.len());
        let found = memchr::memchr(b'\n', bytes.get(at..end).unwrap_or_default());
        release(map, at, end);
        if let Some(nl) = found {
            return at + nl;
        }
        at = end;
    }
    bytes.len()
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
