//! The session's blob pack (formats 3 and 4): `{session}/blobs/pack`, one append-only file
//! that the blobs of the session's format-3 and -4 files go to, each a record
//!
//! ```text
//! {"blob":"<SHA-256, 64 hex digits>","len":<bytes>,"crc":<CRC-32 of the bytes>}\n<bytes>\n
//! {"blob":"<SHA-256>","len":<bytes>,"zstd":<stored>,"crc":<CRC-32 of the stored>}\n<stored>\n
//! ```
//!
//! The second shape (format 4 only, with `FsOptions::blob_compression`) holds the blob
//! compressed with zstd: `stored` bytes, fewer than `len`, which decompress to the blob.
//! Records are appended under the pack's exclusive `flock`, so they never interleave; nothing
//! is ever changed in place. The index (id → where its bytes are) is rebuilt by a scan of the
//! record headers, two small reads each (the header, the closing newline). A scan steps over
//! bytes that are no record (a record torn by a crash, damage) by looking for the next
//! `\n{"blob":"`; a record that runs past the end of the file is still being written (or was
//! torn by a crash: a writer, which holds the lock, cuts it). What a record's header claims is
//! never allocated for beyond the store's largest entry. Reads check the CRC (and that a
//! compressed record decompresses to its length); verify also checks the SHA-256 and that the
//! bytes are text.
//!
//! A store's writers keep the index of each pack they wrote to ([`Packs`]) and read on from
//! where it stopped: an append with blobs reads only the records other writers added since its
//! last one (none, for a session one worker owns).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::handle::Poison;
use super::lock;
use super::read::Reader;
use super::seam::{Access, FileSystem, LockKind};
use super::snapshot::{replaced_too_often, MAX_REOPENS};
use super::tree::{Dir, Tree};
use crate::blob::BlobId;
use crate::error::BlobFault;
use crate::{Error, Result};

/// The pack's name in `blobs/`.
pub(crate) const PACK: &str = "pack";
/// How every record starts.
const MAGIC: &[u8] = b"{\"blob\":\"";
const LEN_KEY: &[u8] = b"\",\"len\":";
const ZSTD_KEY: &[u8] = b",\"zstd\":";
const CRC_KEY: &[u8] = b",\"crc\":";
/// Longest header line, newline included: `{"blob":"` 64 hex `","len":` 20 digits `,"zstd":`
/// 20 digits `,"crc":` 10 digits `}\n` is 147 bytes.
const HEADER_MAX: usize = 160;
/// What precedes every record but the first: the end of the one before, then [`MAGIC`].
const NEEDLE: &[u8] = b"\n{\"blob\":\"";
/// What the search for the next record after damage reads at a time.
const SEARCH_CHUNK: usize = 65_536;
/// How far apart the search's chunks start: a chunk less a needle's length less one.
const SEARCH_STEP: usize = SEARCH_CHUNK - (NEEDLE.len() - 1);

/// Where a record's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Loc {
    /// Where the record starts (its header).
    pub(crate) record: u64,
    /// Where its bytes start.
    pub(crate) at: u64,
    /// The blob's length.
    pub(crate) len: u64,
    /// How many bytes the record holds: `len`, or fewer if they are compressed.
    pub(crate) stored: u64,
    /// Whether they are (zstd).
    pub(crate) zstd: bool,
    /// The CRC-32 of the bytes the record holds, as the header gives it.
    pub(crate) crc: u32,
}

impl Loc {
    /// Where the record ends (after its closing newline).
    pub(crate) fn end(&self) -> u64 {
        self.at + self.stored + 1
    }
}

/// What a writer compresses blobs with: one zstd context for the blobs of an append call.
pub(crate) struct Compressor(zstd::bulk::Compressor<'static>);

impl Compressor {
    /// A context for `level` (within zstd's range), or none if zstd cannot make one (then blobs
    /// are stored as they are).
    pub(crate) fn new(level: i32) -> Option<Self> {
        zstd::bulk::Compressor::new(level).ok().map(Self)
    }

    /// `bytes` compressed, if that makes them shorter: zstd is given room for one byte less
    /// than they have, and fails if it needs more.
    fn shrink(&mut self, bytes: &[u8]) -> Option<Vec<u8>> {
        let mut packed = Vec::with_capacity(bytes.len().saturating_sub(1));
        self.0.compress_to_buffer(bytes, &mut packed).ok()?;
        Some(packed)
    }
}

/// How an append's blobs go into the pack, as the file they are for allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Packing {
    /// One `fdatasync` of the pack after the write (`Sync` mode).
    pub(crate) durable: bool,
    /// The zstd level new records are compressed at, if the store compresses and the file's
    /// version allows it.
    pub(crate) zstd: Option<i32>,
    /// Whether a compressed record serves the file (format 4): a format-3 file's readers
    /// know only records of the bytes themselves.
    pub(crate) compressed_serves: bool,
}

impl Packing {
    pub(crate) fn new(
        version: crate::codec::Version,
        compression: super::BlobCompression,
        durable: bool,
    ) -> Self {
        let compressed_serves = version.compresses_blobs();
        Self {
            durable,
            zstd: compression.zstd_level().filter(|_| compressed_serves),
            compressed_serves,
        }
    }
}

/// Appends the record of blob `id` holding `bytes` to `out`, compressed with `compressor` if
/// that makes it shorter. Returns where in `out` the record's bytes are, as a [`Loc`] relative
/// to `out`'s start.
pub(crate) fn encode(
    id: &BlobId,
    bytes: &[u8],
    compressor: Option<&mut Compressor>,
    out: &mut Vec<u8>,
) -> Loc {
    let record = out.len() as u64;
    let packed = compressor.and_then(|c| c.shrink(bytes));
    let stored = packed.as_deref().unwrap_or(bytes);
    let crc = crc32fast::hash(stored);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(id.to_hex().as_bytes());
    out.extend_from_slice(LEN_KEY);
    out.extend_from_slice(bytes.len().to_string().as_bytes());
    if packed.is_some() {
        out.extend_from_slice(ZSTD_KEY);
        out.extend_from_slice(stored.len().to_string().as_bytes());
    }
    out.extend_from_slice(CRC_KEY);
    out.extend_from_slice(crc.to_string().as_bytes());
    out.extend_from_slice(b"}\n");
    let at = out.len() as u64;
    out.extend_from_slice(stored);
    out.push(b'\n');
    Loc {
        record,
        at,
        len: bytes.len() as u64,
        stored: stored.len() as u64,
        zstd: packed.is_some(),
        crc,
    }
}

/// What a record's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) id: BlobId,
    /// The blob's length.
    pub(crate) len: u64,
    /// How many bytes of it the record holds compressed, if it does: fewer than `len`.
    pub(crate) zstd: Option<u64>,
    pub(crate) crc: u32,
}

/// Parses a header line (without its newline): exactly the shapes [`encode`] writes.
pub(crate) fn parse_header(line: &[u8]) -> Option<Head> {
    let rest = line.strip_prefix(MAGIC)?;
    let hex = std::str::from_utf8(rest.get(..64)?).ok()?;
    let id: BlobId = hex.parse().ok()?;
    let rest = rest.get(64..)?.strip_prefix(LEN_KEY)?;
    let (len, mut rest) = decimal(rest)?;
    let mut zstd = None;
    if let Some(after) = rest.strip_prefix(ZSTD_KEY) {
        let (stored, after) = decimal(after)?;
        // A compressed record is shorter than its blob: nothing else is written so.
        if stored >= len {
            return None;
        }
        zstd = Some(stored);
        rest = after;
    }
    let rest = rest.strip_prefix(CRC_KEY)?;
    let (crc, rest) = decimal(rest)?;
    if rest != b"}" {
        return None;
    }
    Some(Head {
        id,
        len,
        zstd,
        crc: u32::try_from(crc).ok()?,
    })
}

/// A decimal number without leading zeros (but `0`), and what follows it.
fn decimal(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let n = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    let digits = bytes.get(..n)?;
    if n == 0 || (n > 1 && digits.first() == Some(&b'0')) {
        return None;
    }
    let value = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some((value, bytes.get(n..)?))
}

/// What is at a position of the pack.
enum At {
    /// A record, checked as far as its header and closing newline go.
    Record(BlobId, Loc),
    /// The start of a record that runs past the end of the file.
    Unfinished,
    /// Bytes that are no record.
    Bad,
}

/// The records of a pack, by id, as far as a scan has read it.
#[derive(Debug, Default)]
pub(crate) struct Index {
    /// Where the scan stopped: the end of the file, or the start of an unfinished record.
    pub(crate) end: u64,
    /// Whether the scan stopped at an unfinished record.
    pub(crate) unfinished: bool,
    /// The newest record of each id (a blob written again after its record was found damaged
    /// is found by its new record).
    records: HashMap<BlobId, Loc>,
    /// Bytes the scan stepped over that are no record.
    pub(crate) skipped: u64,
    /// Records read, older copies of a blob included.
    pub(crate) seen: u64,
}

impl Index {
    pub(crate) fn get(&self, id: &BlobId) -> Option<Loc> {
        self.records.get(id).copied()
    }

    pub(crate) fn insert(&mut self, id: BlobId, loc: Loc) {
        self.records.insert(id, loc);
    }

    /// The newest record of every blob, in no order.
    pub(crate) fn records(&self) -> impl Iterator<Item = (&BlobId, &Loc)> {
        self.records.iter()
    }

    /// Whether the pack holds nothing but the newest records of blobs, all of them in `keep`.
    pub(crate) fn only(&self, keep: &dyn Fn(&BlobId) -> bool) -> bool {
        self.skipped == 0
            && !self.unfinished
            && self.seen == self.records.len() as u64
            && self.records.keys().all(keep)
    }

    /// Reads the records from [`end`](Self::end) to `size`, the file's size. Records larger than
    /// `max_len` are bytes that are no record: nothing annals writes claims one.
    pub(crate) fn scan<F: FileSystem>(
        &mut self,
        pack: Reader<'_, F>,
        size: u64,
        max_len: u64,
    ) -> Result<()> {
        let mut pos = self.end;
        self.unfinished = false;
        let mut head = [0u8; HEADER_MAX];
        while pos < size {
            let at = record_at(pack, &mut head, pos, size, max_len)?;
            match at {
                At::Record(id, loc) => {
                    self.records.insert(id, loc);
                    self.seen += 1;
                    pos = loc.end();
                }
                At::Unfinished | At::Bad => {
                    // A record that runs past the end with records after it is damage (a
                    // length that changed), not a write still going on.
                    let next = next_record(pack, pos, size)?;
                    if next >= size && matches!(at, At::Unfinished) {
                        self.unfinished = true;
                        break;
                    }
                    self.skipped += next - pos;
                    pos = next;
                }
            }
        }
        self.end = pos;
        Ok(())
    }
}

/// What is at `pos`: the header (read into `head`, one read) and the closing newline.
fn record_at<F: FileSystem>(
    pack: Reader<'_, F>,
    head: &mut [u8; HEADER_MAX],
    pos: u64,
    size: u64,
    max_len: u64,
) -> Result<At> {
    let want = usize::try_from(size - pos)
        .unwrap_or(HEADER_MAX)
        .min(HEADER_MAX);
    let n = pack.read_at_most(head.get_mut(..want).unwrap_or_default(), pos)?;
    let got = head.get(..n).unwrap_or_default();
    let Some(nl) = got.iter().position(|&b| b == b'\n') else {
        // The file ends inside what may be a header still being written.
        let partial =
            n < HEADER_MAX && MAGIC.starts_with(got.get(..n.min(MAGIC.len())).unwrap_or_default());
        return Ok(if partial { At::Unfinished } else { At::Bad });
    };
    let Some(head) = parse_header(got.get(..nl).unwrap_or_default()) else {
        return Ok(At::Bad);
    };
    if head.len > max_len {
        return Ok(At::Bad);
    }
    let loc = Loc {
        record: pos,
        at: pos + nl as u64 + 1,
        len: head.len,
        stored: head.zstd.unwrap_or(head.len),
        zstd: head.zstd.is_some(),
        crc: head.crc,
    };
    if loc.end() > size {
        return Ok(At::Unfinished);
    }
    let mut close = [0u8; 1];
    if pack.read_at_most(&mut close, loc.end() - 1)? != 1 || close != [b'\n'] {
        return Ok(At::Bad);
    }
    Ok(At::Record(head.id, loc))
}

/// Where the first record after `pos` starts (a newline, then [`MAGIC`]): `size` if none does.
/// Reads the file in chunks that start [`SEARCH_STEP`] apart, so that they overlap by a
/// needle's length less one and a needle cut by a chunk's end is found in the next; every
/// record it can return is after `pos`. The chunks are a range's steps: the search ends by
/// construction, whatever a read returns.
fn next_record<F: FileSystem>(pack: Reader<'_, F>, pos: u64, size: u64) -> Result<u64> {
    let mut buf = vec![0u8; SEARCH_CHUNK];
    for at in (pos..size).step_by(SEARCH_STEP) {
        let n = pack.read_at_most(&mut buf, at)?;
        let got = buf.get(..n).unwrap_or_default();
        if let Some(i) = memchr::memmem::find(got, NEEDLE) {
            return Ok(at + i as u64 + 1);
        }
    }
    Ok(size)
}

/// Whether the pack (of `size` bytes) still holds blob `id`, `bytes`, where `loc` says, as a
/// reader would find it there: a header that names this id with these lengths and CRC (a
/// header damaged since the index was read sends readers elsewhere, although the bytes after
/// it are intact), and the blob's bytes, read back. What a writer checks before it takes a blob
/// as stored.
fn holds<F: FileSystem>(
    pack: Reader<'_, F>,
    (id, bytes): (&BlobId, &[u8]),
    loc: &Loc,
    size: u64,
    max_len: u64,
) -> Result<bool> {
    let mut head = [0u8; HEADER_MAX];
    match record_at(pack, &mut head, loc.record, size, max_len)? {
        At::Record(there, found) if there == *id && found == *loc => {}
        _ => return Ok(false),
    }
    Ok(read_record(pack, loc)?.is_ok_and(|there| there == bytes))
}

/// A record's blob, read whole (and decompressed), or the fault that keeps it from being read:
/// bytes that are not the ones the CRC was taken of, or a compressed record that does not
/// decompress to its length. Nothing beyond the record's length is allocated for.
pub(crate) fn read_record<F: FileSystem>(
    pack: Reader<'_, F>,
    loc: &Loc,
) -> Result<std::result::Result<Vec<u8>, BlobFault>> {
    let mut bytes = vec![0u8; usize::try_from(loc.stored).unwrap_or(0)];
    let n = pack.read_at_most(&mut bytes, loc.at)?;
    bytes.truncate(n);
    let computed = crc32fast::hash(&bytes);
    if n as u64 != loc.stored || computed != loc.crc {
        return Ok(Err(BlobFault::Crc {
            stored: loc.crc,
            computed,
        }));
    }
    if !loc.zstd {
        return Ok(Ok(bytes));
    }
    Ok(decompress(&bytes, loc.len).ok_or(BlobFault::Undecodable { expected: loc.len }))
}

/// Largest zstd window a compressed record may need, as a power of two (8 MiB: what zstd's
/// levels up to 19, the most [`BlobCompression`](super::BlobCompression) uses, take). A frame
/// that asks for more is not one annals wrote, and is not decoded, whoever reads it.
const WINDOW_LOG_MAX: u32 = 23;

/// A zstd decoder of the frames `source` holds that refuses a frame needing a window over
/// 2^[`WINDOW_LOG_MAX`] bytes: the one place that decides what a compressed record may ask of
/// a reader's memory (a read's and a check's alike).
pub(crate) fn decoder<'a>(
    source: &'a mut dyn std::io::BufRead,
) -> std::io::Result<zstd::stream::read::Decoder<'a, &'a mut dyn std::io::BufRead>> {
    let mut decoder = zstd::stream::read::Decoder::with_buffer(source)?;
    decoder.window_log_max(WINDOW_LOG_MAX)?;
    Ok(decoder)
}

/// What `stored` decompresses to, if that is exactly `len` bytes (one more is all that is
/// ever allocated for).
fn decompress(mut stored: &[u8], len: u64) -> Option<Vec<u8>> {
    let capacity = usize::try_from(len).ok()?;
    let mut blob = vec![0u8; capacity.checked_add(1)?];
    let mut decoder = decoder(&mut stored).ok()?;
    let mut filled = 0;
    // Each read fills some of what is left, the byte past `len` included: ends by construction.
    while let Some(rest) = blob.get_mut(filled..).filter(|rest| !rest.is_empty()) {
        match std::io::Read::read(&mut decoder, rest) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(_) => return None,
        }
    }
    (filled == capacity).then(|| {
        blob.truncate(capacity);
        blob
    })
}

/// What a store keeps of its sessions' packs from one call to the next: for its writers, the
/// index of each pack as far as they read it, and the packs whose `fdatasync` failed (for good:
/// every later use of such a pack fails the same way, as a segment's does). The pack itself is
/// opened by its name on every call (never followed through a link, never kept open: a file
/// moved away meanwhile is not written to); a kept index is only a hint, checked against the
/// file: what it says is there is compared byte for byte before a blob is taken as stored, and
/// an unfinished record is cut only where a scan from the start ends.
#[derive(Debug, Default)]
pub(crate) struct Packs {
    indexes: Mutex<HashMap<PathBuf, Arc<Mutex<Index>>>>,
    failed: Mutex<HashMap<PathBuf, Poison>>,
}

/// How many packs' indexes a store keeps; past that it forgets them all, and the next append
/// to each reads its pack again.
const KEPT: usize = 64;

/// Why an append to a pack failed: its `fdatasync` (sticky), or anything else.
enum Failure {
    Sync(std::io::Error),
    Other(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Self::Other(e)
    }
}

impl Packs {
    /// The sticky failure of the pack at `path`, if its `fdatasync` failed before.
    pub(crate) fn check(&self, path: &Path) -> Result<()> {
        match lock(&self.failed).get(path) {
            Some(poison) => Err(poison.error(path)),
            None => Ok(()),
        }
    }

    /// Keeps the failure of the pack's `fdatasync` for good, and returns it.
    pub(crate) fn fail(&self, path: &Path, e: &std::io::Error) -> Error {
        let poison = Poison::new("fdatasync", e);
        let error = poison.error(path);
        lock(&self.failed).insert(path.to_path_buf(), poison);
        error
    }

    /// Forgets what the store knew of the pack at `path` (gc rewrote it).
    pub(crate) fn forget(&self, path: &Path) {
        lock(&self.indexes).remove(path);
    }

    /// The kept index of the pack at `path` (an empty one if none is kept).
    fn index(&self, path: &Path) -> Arc<Mutex<Index>> {
        let mut kept = lock(&self.indexes);
        if let Some(index) = kept.get(path) {
            return Arc::clone(index);
        }
        if kept.len() >= KEPT {
            kept.clear();
        }
        let index = Arc::new(Mutex::new(Index::default()));
        kept.insert(path.to_path_buf(), Arc::clone(&index));
        index
    }

    /// Appends `blobs` (id and bytes) to the pack in `root` (`blobs/`, the pack created durably
    /// if missing), but those it holds already in a record that serves the file, under its
    /// exclusive `flock`: one `write(2)` for all of them, and with `packing.durable` one
    /// `fdatasync`. A pack replaced between its opening
    /// and its lock (gc rewrote it) is opened again, [`MAX_REOPENS`] times at most. The caller
    /// holds the blob lock.
    pub(crate) fn append<F: FileSystem>(
        &self,
        tree: &Tree<F>,
        root: &Dir<F>,
        blobs: &[(BlobId, &[u8])],
        max_len: u64,
        packing: Packing,
    ) -> Result<()> {
        let path = root.path_of(PACK);
        self.check(&path)?;
        let index = self.index(&path);
        // Threads of this store take turns here, then processes at the flock.
        let mut index = lock(&index);
        for _ in 0..=MAX_REOPENS {
            let file = open_or_create(tree, root, &path)?;
            let fs = &tree.fs;
            fs.lock(&file, LockKind::Exclusive)
                .map_err(|e| Error::io("lock", &path, e))?;
            let pack = Reader {
                fs,
                file: &file,
                path: &path,
            };
            // The lock goes with the file, closed at the end of this turn.
            match append_locked(pack, &mut index, blobs, max_len, packing) {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(Failure::Sync(e)) => {
                    *index = Index::default();
                    return Err(self.fail(&path, &e));
                }
                Err(Failure::Other(e)) => {
                    *index = Index::default();
                    return Err(e);
                }
            }
        }
        Err(replaced_too_often(&path))
    }
}

/// Opens the pack `path` in `root` for appending (no link followed), creating it if missing;
/// a new name is made durable before anything can refer to what it will hold. Another process
/// may create it (and gc remove it) in between, [`MAX_REOPENS`] times at most.
fn open_or_create<F: FileSystem>(tree: &Tree<F>, root: &Dir<F>, path: &Path) -> Result<F::File> {
    for _ in 0..=MAX_REOPENS {
        if let Some(file) = tree.open_file(root, PACK, Access::Append)? {
            return Ok(file);
        }
        match tree.fs.create_new(&root.handle, PACK) {
            Ok(file) => {
                tree.sync_dir(root)?;
                return Ok(file);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io("create", path, e)),
        }
    }
    Err(replaced_too_often(path))
}

/// Under the pack's lock: `Ok(false)` if the file is no longer the one at its name. Reads on
/// from where `index` stopped; a failed write or `fdatasync` is cut back (the records it wrote
/// go), so nothing of it is ever found as if it were there.
fn append_locked<F: FileSystem>(
    pack: Reader<'_, F>,
    index: &mut Index,
    blobs: &[(BlobId, &[u8])],
    max_len: u64,
    packing: Packing,
) -> std::result::Result<bool, Failure> {
    let fs = pack.fs;
    let (size, links) = fs
        .size_and_links(pack.file)
        .map_err(|e| Error::io("stat", pack.path, e))?;
    if links == 0 {
        return Ok(false);
    }
    if size < index.end {
        // Not the file the index was read from (gc rewrote it): read it again.
        *index = Index::default();
    }
    index.scan(pack, size, max_len)?;
    if index.unfinished && index.end > 0 {
        // Only where a scan from the start ends is a record's start known for sure.
        *index = Index::default();
        index.scan(pack, size, max_len)?;
    }
    if index.unfinished {
        fs.set_len(pack.file, index.end)
            .map_err(|e| Error::io("cut an unfinished record of", pack.path, e))?;
        index.unfinished = false;
    }
    let start = index.end;
    let mut out = Vec::new();
    let mut added: Vec<(BlobId, Loc)> = Vec::new();
    let mut compressor = None;
    for (id, bytes) in blobs {
        if added.iter().any(|(a, _)| a == id) {
            continue;
        }
        if let Some(loc) = index.get(id) {
            // The same bytes, there, in a record the file's readers know: stored already (a
            // kept index is only a hint).
            let serves = packing.compressed_serves || !loc.zstd;
            if serves && holds(pack, (id, bytes), &loc, size, max_len)? {
                continue;
            }
        }
        if let Some(level) = packing.zstd {
            if compressor.is_none() {
                compressor = Compressor::new(level);
            }
        }
        let loc = encode(id, bytes, compressor.as_mut(), &mut out);
        added.push((
            *id,
            Loc {
                record: start + loc.record,
                at: start + loc.at,
                ..loc
            },
        ));
    }
    if out.is_empty() {
        return Ok(true);
    }
    if let Err(e) = super::seam::append_all(fs, pack.file, &out) {
        // Leave no part of a record behind (we hold the lock): a full disk loses nothing.
        let _ = fs.set_len(pack.file, start);
        return Err(Error::io("append to", pack.path, e).into());
    }
    if packing.durable {
        if let Err(e) = fs.sync_data(pack.file) {
            // Never found again as if it were durable: its records go.
            let _ = fs.set_len(pack.file, start);
            return Err(Failure::Sync(e));
        }
    }
    index.seen += added.len() as u64;
    for (id, loc) in added {
        index.insert(id, loc);
    }
    index.end = start + out.len() as u64;
    Ok(true)
}

#[cfg(test)]
#[allow(
    clippy::cast_possible_truncation,
    reason = "test offsets are small; a panic on a 32-bit target is fine in a test"
)]
mod tests {
    use super::*;
    use crate::fs::seam::{Access, Lookup};
    use crate::fs::OsFs;
    use std::io::Write;

    fn id(bytes: &[u8]) -> BlobId {
        BlobId::of(bytes)
    }

    fn pack(records: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for r in records {
            encode(&id(r), r, None, &mut out);
        }
        out
    }

    /// The file `pack` in `dir`, opened through the seam.
    fn open(dir: &std::path::Path) -> <OsFs as FileSystem>::File {
        let root = OsFs.open_root(dir, false).unwrap();
        match OsFs.open_file(&root, PACK, Access::Read).unwrap() {
            Lookup::Found(file) => file,
            other => panic!("no pack: {other:?}"),
        }
    }

    fn reader(file: &<OsFs as FileSystem>::File) -> Reader<'_, OsFs> {
        Reader {
            fs: &OsFs,
            file,
            path: std::path::Path::new("pack"),
        }
    }

    fn index_of(bytes: &[u8], max_len: u64) -> Index {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pack");
        std::fs::File::create(&path)
            .unwrap()
            .write_all(bytes)
            .unwrap();
        let file = open(dir.path());
        let mut index = Index::default();
        index
            .scan(reader(&file), bytes.len() as u64, max_len)
            .unwrap();
        index
    }

    #[test]
    fn a_record_is_a_header_line_then_the_bytes_then_a_newline() {
        let mut out = Vec::new();
        encode(&id(b"abc"), b"abc", None, &mut out);
        let expected = format!(
            "{{\"blob\":\"{}\",\"len\":3,\"crc\":{}}}\nabc\n",
            id(b"abc").to_hex(),
            crc32fast::hash(b"abc")
        );
        assert_eq!(out, expected.as_bytes());
        let nl = out.iter().position(|&b| b == b'\n').unwrap();
        assert_eq!(
            parse_header(&out[..nl]),
            Some(Head {
                id: id(b"abc"),
                len: 3,
                zstd: None,
                crc: crc32fast::hash(b"abc")
            })
        );
        assert!(nl < HEADER_MAX);
    }

    #[test]
    fn headers_of_any_other_shape_are_refused() {
        let hex = id(b"x").to_hex();
        for bad in [
            format!("{{\"blob\":\"{hex}\",\"len\":01,\"crc\":5}}"),
            format!("{{\"blob\":\"{hex}\",\"len\":1,\"crc\":5}} "),
            format!("{{\"blob\":\"{hex}\",\"len\":1,\"crc\":4294967296}}"),
            format!("{{\"blob\":\"{hex}\",\"len\":,\"crc\":5}}"),
            format!("{{\"blob\":\"{}\",\"len\":1,\"crc\":5}}", &hex[1..]),
            format!("{{\"blob\":\"{hex}\",\"crc\":5,\"len\":1}}"),
            format!("{{\"blob\":\"{hex}\",\"len\":1,\"crc\":5"),
        ] {
            assert_eq!(parse_header(bad.as_bytes()), None, "{bad}");
        }
        let good = format!("{{\"blob\":\"{hex}\",\"len\":0,\"crc\":4294967295}}");
        assert_eq!(
            parse_header(good.as_bytes()),
            Some(Head {
                id: id(b"x"),
                len: 0,
                zstd: None,
                crc: u32::MAX
            })
        );
        // A compressed record is shorter than its blob, and says so between length and CRC.
        for bad in [
            format!("{{\"blob\":\"{hex}\",\"len\":5,\"zstd\":5,\"crc\":1}}"),
            format!("{{\"blob\":\"{hex}\",\"len\":5,\"zstd\":9,\"crc\":1}}"),
            format!("{{\"blob\":\"{hex}\",\"len\":5,\"crc\":1,\"zstd\":4}}"),
            format!("{{\"blob\":\"{hex}\",\"len\":5,\"zstd\":04,\"crc\":1}}"),
            format!("{{\"blob\":\"{hex}\",\"zstd\":4,\"len\":5,\"crc\":1}}"),
        ] {
            assert_eq!(parse_header(bad.as_bytes()), None, "{bad}");
        }
        let good = format!("{{\"blob\":\"{hex}\",\"len\":5,\"zstd\":4,\"crc\":1}}");
        assert_eq!(
            parse_header(good.as_bytes()).map(|h| (h.len, h.zstd)),
            Some((5, Some(4)))
        );
    }

    #[test]
    fn a_scan_finds_every_record_and_steps_over_damage() {
        let (a, b, c) = (&b"first"[..], &b"second blob"[..], &b"third"[..]);
        let clean = pack(&[a, b, c]);
        let index = index_of(&clean, 1 << 20);
        assert_eq!(
            (index.end, index.skipped, index.unfinished),
            (clean.len() as u64, 0, false)
        );
        for r in [a, b, c] {
            let loc = index.get(&id(r)).unwrap();
            assert_eq!(&clean[loc.at as usize..][..r.len()], r);
        }
        // Zeros over the second record's header: it is lost, the third is still found.
        let second = index.get(&id(b)).unwrap();
        let mut holed = clean.clone();
        for byte in &mut holed[second.record as usize..second.at as usize] {
            *byte = 0;
        }
        let index = index_of(&holed, 1 << 20);
        assert_eq!(index.get(&id(b)), None);
        assert_eq!(
            index.get(&id(c)).unwrap().at,
            index_of(&clean, 1 << 20).get(&id(c)).unwrap().at
        );
        assert_eq!(index.skipped, second.end() - second.record);
        // A length that does not end at a newline makes the record no record.
        let mut long = clean.clone();
        let at = second.record as usize + 9 + 64 + 8;
        assert_eq!(long[at], b'1');
        long[at] = b'2';
        let index = index_of(&long, 1 << 20);
        assert_eq!(index.get(&id(b)), None);
        assert!(index.get(&id(c)).is_some());
        // A record claiming more than the largest entry is no record either.
        let index = index_of(&clean, 10);
        assert_eq!(index.get(&id(b)), None);
        assert!(index.get(&id(a)).is_some() && index.get(&id(c)).is_some());
    }

    #[test]
    fn a_record_cut_short_is_unfinished_and_the_scan_stops_before_it() {
        let full = pack(&[b"one", b"two two"]);
        let first_end = index_of(&full, 100).get(&id(b"one")).unwrap().end();
        for cut in first_end as usize + 1..full.len() {
            let index = index_of(&full[..cut], 100);
            assert!(index.unfinished, "cut at {cut}");
            assert_eq!(index.end, first_end, "cut at {cut}");
            assert_eq!(index.get(&id(b"two two")), None);
        }
        // A length past the end with a record after it is damage, not a write going on.
        let mut grown = full.clone();
        let second = index_of(&full, 100).get(&id(b"two two")).unwrap();
        let digit = second.record as usize + 9 + 64 + 8;
        assert_eq!(grown[digit], b'7');
        grown.splice(digit..=digit, b"799".iter().copied());
        grown.extend_from_slice(&pack(&[b"three"]));
        let index = index_of(&grown, 100);
        assert!(!index.unfinished);
        assert!(index.get(&id(b"three")).is_some());
        assert_eq!(index.get(&id(b"two two")), None);
        // Bytes that cannot start a header are not a record being written.
        let mut junk = full[..first_end as usize].to_vec();
        junk.extend_from_slice(b"xyz");
        let index = index_of(&junk, 100);
        assert!(!index.unfinished);
        assert_eq!((index.end, index.skipped), (junk.len() as u64, 3));
    }

    #[test]
    fn the_search_for_the_next_record_works_across_chunk_ends() {
        for pad in [
            SEARCH_CHUNK - 12,
            SEARCH_CHUNK - 5,
            SEARCH_CHUNK - 1,
            SEARCH_CHUNK,
            SEARCH_CHUNK + 3,
        ] {
            let mut bytes = vec![b'z'; pad];
            bytes.push(b'\n');
            let tail = pack(&[b"after the junk"]);
            bytes.extend_from_slice(&tail);
            let index = index_of(&bytes, 100);
            let loc = index.get(&id(b"after the junk")).unwrap();
            assert_eq!(loc.record, pad as u64 + 1, "pad {pad}");
            assert_eq!(index.skipped, pad as u64 + 1);
        }
    }

    #[test]
    fn a_record_read_back_is_checked_against_its_crc() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pack");
        let mut bytes = pack(&[b"hello"]);
        std::fs::write(&path, &bytes).unwrap();
        let file = open(dir.path());
        let mut index = Index::default();
        index.scan(reader(&file), bytes.len() as u64, 100).unwrap();
        let loc = index.get(&id(b"hello")).unwrap();
        assert_eq!(
            read_record(reader(&file), &loc).unwrap(),
            Ok(b"hello".to_vec())
        );
        bytes[loc.at as usize] = b'j';
        std::fs::write(&path, &bytes).unwrap();
        let file = open(dir.path());
        assert_eq!(
            read_record(reader(&file), &loc).unwrap(),
            Err(BlobFault::Crc {
                stored: crc32fast::hash(b"hello"),
                computed: crc32fast::hash(b"jello")
            })
        );
    }

    /// Text that compresses well, `n` bytes of it.
    fn wordy(n: usize) -> Vec<u8> {
        "the quick brown fox jumps over the lazy dog; "
            .bytes()
            .cycle()
            .take(n)
            .collect()
    }

    #[test]
    fn a_compressed_record_holds_fewer_bytes_and_reads_back_as_the_blob() {
        let blob = wordy(10_000);
        let mut compressor = Compressor::new(3).unwrap();
        let mut out = Vec::new();
        let loc = encode(&id(&blob), &blob, Some(&mut compressor), &mut out);
        assert!(loc.zstd && loc.stored < 1_000, "{loc:?}");
        assert_eq!((loc.len, out.len() as u64), (10_000, loc.end()));
        let nl = out.iter().position(|&b| b == b'\n').unwrap();
        let head = parse_header(&out[..nl]).unwrap();
        let stored = &out[loc.at as usize..][..loc.stored as usize];
        assert_eq!(
            head,
            Head {
                id: id(&blob),
                len: 10_000,
                zstd: Some(loc.stored),
                crc: crc32fast::hash(stored)
            }
        );
        assert!(out.starts_with(
            format!(
                "{{\"blob\":\"{}\",\"len\":10000,\"zstd\":{},\"crc\":",
                id(&blob).to_hex(),
                loc.stored
            )
            .as_bytes()
        ));
        let index = index_of(&out, 1 << 20);
        assert_eq!(index.get(&id(&blob)), Some(loc));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pack"), &out).unwrap();
        let file = open(dir.path());
        assert_eq!(read_record(reader(&file), &loc).unwrap(), Ok(blob.clone()));
        // A blob that zstd cannot make shorter is stored as it is.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let noise: Vec<u8> = (0..5_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 32) as u8
            })
            .collect();
        let mut out = Vec::new();
        let loc = encode(&id(&noise), &noise, Some(&mut compressor), &mut out);
        assert!(!loc.zstd && loc.stored == 5_000, "{loc:?}");
        assert_eq!(out, pack(&[&noise]));
    }

    #[test]
    fn a_compressed_record_that_does_not_decompress_to_its_length_is_undecodable() {
        let blob = wordy(10_000);
        let mut compressor = Compressor::new(1).unwrap();
        let mut out = Vec::new();
        let loc = encode(&id(&blob), &blob, Some(&mut compressor), &mut out);
        let dir = tempfile::tempdir().unwrap();
        // A header that claims one byte more, or one less, than the frame holds, with a right CRC.
        for claimed in [loc.len + 1, loc.len - 1] {
            let lie = Loc {
                len: claimed,
                ..loc
            };
            std::fs::write(dir.path().join("pack"), &out).unwrap();
            let file = open(dir.path());
            assert_eq!(
                read_record(reader(&file), &lie).unwrap(),
                Err(BlobFault::Undecodable { expected: claimed })
            );
        }
        // Stored bytes that are no zstd frame, under a CRC taken of them.
        let junk = vec![b'j'; loc.stored as usize];
        let mut bad = out.clone();
        bad[loc.at as usize..][..junk.len()].copy_from_slice(&junk);
        std::fs::write(dir.path().join("pack"), &bad).unwrap();
        let file = open(dir.path());
        let relabelled = Loc {
            crc: crc32fast::hash(&junk),
            ..loc
        };
        assert_eq!(
            read_record(reader(&file), &relabelled).unwrap(),
            Err(BlobFault::Undecodable { expected: loc.len })
        );
    }

    #[test]
    fn packing_compresses_only_for_files_whose_readers_know_compressed_records() {
        use crate::codec::Version;
        use crate::fs::BlobCompression;
        let on = BlobCompression::Zstd { level: 40 };
        assert_eq!(
            Packing::new(Version::V4, on, true),
            Packing {
                durable: true,
                zstd: Some(19),
                compressed_serves: true
            }
        );
        assert_eq!(
            Packing::new(Version::V3, on, false),
            Packing {
                durable: false,
                zstd: None,
                compressed_serves: false
            }
        );
        assert_eq!(
            Packing::new(Version::V4, BlobCompression::None, false),
            Packing {
                durable: false,
                zstd: None,
                compressed_serves: true
            }
        );
        assert_eq!(BlobCompression::Zstd { level: -3 }.zstd_level(), Some(1));
        assert_eq!(BlobCompression::ZSTD.zstd_level(), Some(3));
    }

    #[test]
    fn a_format_3_file_gets_a_plain_record_of_a_blob_the_pack_holds_only_compressed() {
        let dir = tempfile::tempdir().unwrap();
        let tree = Tree::open(OsFs, dir.path(), false).unwrap();
        let root = tree.make_dir(&tree.root, "blobs").unwrap();
        let packs = Packs::default();
        let blob = wordy(20_000);
        let all = [(id(&blob), &blob[..])];
        let v4 = Packing::new(
            crate::codec::Version::V4,
            crate::fs::BlobCompression::ZSTD,
            false,
        );
        let v3 = Packing::new(
            crate::codec::Version::V3,
            crate::fs::BlobCompression::ZSTD,
            false,
        );
        let size = || {
            std::fs::metadata(dir.path().join("blobs/pack"))
                .unwrap()
                .len()
        };
        packs.append(&tree, &root, &all, 1 << 20, v4).unwrap();
        let compressed = size();
        assert!(compressed < 2_000, "{compressed}");
        // Stored once for format 4, whatever asks again.
        packs.append(&tree, &root, &all, 1 << 20, v4).unwrap();
        assert_eq!(size(), compressed);
        // A format-3 file needs the bytes themselves: one more record, plain; then that serves
        // both.
        packs.append(&tree, &root, &all, 1 << 20, v3).unwrap();
        let both = size();
        assert!(both > compressed + 20_000, "{both}");
        packs.append(&tree, &root, &all, 1 << 20, v3).unwrap();
        packs.append(&tree, &root, &all, 1 << 20, v4).unwrap();
        assert_eq!(size(), both);
        let index = index_of(
            &std::fs::read(dir.path().join("blobs/pack")).unwrap(),
            1 << 20,
        );
        assert!(!index.get(&id(&blob)).unwrap().zstd);
        assert_eq!(index.seen, 2);
    }
}
