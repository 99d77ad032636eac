//! The per-session blob directory, `{session}/blobs/`: the blob pack `blobs/pack` (format 3,
//! `pack.rs`), the blob files of formats 1 and 2, `blobs/ab/abcdef…` where the name is the
//! SHA-256 of the bytes, and `blobs/lock`, the lock between spilling appends and garbage
//! collection. A blob is found by its id wherever it is (pack first): content addressing makes
//! the two places interchangeable for readers. Pack records are appended (fdatasynced in `Sync`
//! mode only); blob files are written crash-atomically (temp file, fsync, rename, directory
//! fsync). Both are checked on every read: a record against its CRC, a file against its name.

use std::cell::OnceCell;
use std::io;
use std::path::{Path, PathBuf};

use super::atomic::TempFile;
use super::pack::{self, Index, Loc, Packing, Packs, PACK};
use super::read::Reader;
use super::seam::{Access, EntryKind, FileSystem, LockKind};
use super::tree::{Dir, Tree};
use crate::blob::BlobId;
use crate::{Error, Result};

pub(crate) use crate::error::BlobFault;

/// The session's blob lock, held shared by appends that write blobs, from the blob to the line
/// that refers to it, and exclusive by garbage collection. Released when dropped (closing the
/// file releases its `flock`).
#[derive(Debug)]
pub(crate) struct BlobLock<F: FileSystem>(
    #[allow(dead_code, reason = "held for its lock")] F::File,
);

pub(crate) struct BlobDir<'t, F: FileSystem> {
    tree: &'t Tree<F>,
    session: &'t Dir<F>,
    /// The largest blob read: nothing larger is ever allocated for, whatever the file says.
    max_len: u64,
    /// `blobs/`, kept open once a reader found it.
    root: OnceCell<Dir<F>>,
    /// The pack, opened and scanned to its end the first time a reader looks in it (`None` if
    /// there is none).
    pack: OnceCell<Option<ReadPack<F>>>,
}

/// The pack as a reader holds it: open read-only, with its path and its index.
struct ReadPack<F: FileSystem> {
    file: F::File,
    path: PathBuf,
    index: Index,
}

impl<F: FileSystem> ReadPack<F> {
    fn reader<'a>(&'a self, fs: &'a F) -> Reader<'a, F> {
        Reader {
            fs,
            file: &self.file,
            path: &self.path,
        }
    }
}

/// Where a blob was found.
enum Found<'p, F: FileSystem> {
    /// A record of the pack.
    Record(Reader<'p, F>, Loc),
    /// A file of its own, with its path and size.
    File(F::File, PathBuf, u64),
}

/// A blob file opened for reading: the file, its path and its size.
type Opened<F> = (<F as FileSystem>::File, PathBuf, u64);

const ROOT: &str = "blobs";
/// What [`BlobDir::check_entry`] reads at a time.
const CHECK_CHUNK: usize = 256 * 1024;
const LOCK: &str = "lock";

fn shard_of(hex: &str) -> &str {
    hex.get(..2).unwrap_or("00")
}

impl<'t, F: FileSystem> BlobDir<'t, F> {
    pub(crate) fn new(tree: &'t Tree<F>, session: &'t Dir<F>, max_len: usize) -> Self {
        Self {
            tree,
            session,
            max_len: max_len as u64,
            root: OnceCell::new(),
            pack: OnceCell::new(),
        }
    }

    /// The pack as a reader sees it: opened read-only and scanned to its end, once.
    fn pack(&self) -> Result<Option<&ReadPack<F>>> {
        if let Some(pack) = self.pack.get() {
            return Ok(pack.as_ref());
        }
        let opened = match self.root()? {
            None => None,
            Some(root) => match self.tree.open_file(root, PACK, Access::Read)? {
                None => None,
                Some(file) => {
                    let mut pack = ReadPack {
                        file,
                        path: root.path_of(PACK),
                        index: Index::default(),
                    };
                    let reader = pack.reader(&self.tree.fs);
                    let (size, _) = self
                        .tree
                        .fs
                        .size_and_links(reader.file)
                        .map_err(|e| Error::io("stat", reader.path, e))?;
                    let mut index = Index::default();
                    index.scan(reader, size, self.max_len)?;
                    pack.index = index;
                    Some(pack)
                }
            },
        };
        Ok(self.pack.get_or_init(|| opened).as_ref())
    }

    /// `blobs/`, created if needed (and kept, as [`root`](Self::root) keeps it).
    fn made_root(&self) -> Result<&Dir<F>> {
        if let Some(root) = self.root.get() {
            return Ok(root);
        }
        let root = self.tree.make_dir(self.session, ROOT)?;
        Ok(self.root.get_or_init(|| root))
    }

    /// Appends the blobs `(id, bytes)` to the session's pack through the store's `packs`
    /// ([`Packs::append`]): one `write(2)`, and in `Sync` mode one `fdatasync`. The caller holds
    /// the blob lock.
    pub(crate) fn pack_all(
        &self,
        packs: &Packs,
        blobs: &[(BlobId, &[u8])],
        packing: Packing,
    ) -> Result<()> {
        packs.append(self.tree, self.made_root()?, blobs, self.max_len, packing)
    }

    /// Makes what the session's pack holds durable (one `fdatasync`; nothing if it has none):
    /// before a durability claim covers lines whose blobs a `Buffered` append packed. Sticky
    /// on failure.
    pub(crate) fn sync_pack(&self, packs: &Packs) -> Result<()> {
        let Some(root) = self.root()? else {
            return Ok(());
        };
        let path = root.path_of(PACK);
        packs.check(&path)?;
        let Some(file) = self.tree.open_file(root, PACK, Access::Read)? else {
            return Ok(());
        };
        self.tree
            .fs
            .sync_data(&file)
            .map_err(|e| packs.fail(&path, &e))
    }

    pub(crate) fn path(&self, id: &BlobId) -> PathBuf {
        let hex = id.to_hex();
        self.session.path_of(ROOT).join(shard_of(&hex)).join(hex)
    }

    /// `blobs/`, if the session ever had a blob.
    pub(crate) fn root(&self) -> Result<Option<&Dir<F>>> {
        if let Some(root) = self.root.get() {
            return Ok(Some(root));
        }
        match self.tree.dir(self.session, ROOT)? {
            Some(root) => Ok(Some(self.root.get_or_init(|| root))),
            None => Ok(None),
        }
    }

    /// Stores `bytes` durably as a blob file (formats 1 and 2) unless an intact one is there
    /// already (a copy in the pack does not count: those formats' readers look for the file).
    /// Returns its id.
    pub(crate) fn put(&self, bytes: &[u8]) -> Result<BlobId> {
        let id = BlobId::of(bytes);
        if let Ok((file, path, size)) = self.open(&id, Some(bytes.len() as u64))? {
            if self.read_file(&id, &file, &path, size)?.is_ok() {
                return Ok(id);
            }
        }
        // A damaged or missing copy is replaced: rename over it with the right bytes.
        let hex = id.to_hex();
        let shard = self.tree.make_dir(self.made_root()?, shard_of(&hex))?;
        let mut temp = TempFile::create(self.tree, &shard, id)?;
        temp.write(bytes)?;
        temp.sync()?;
        temp.replace(&hex)?;
        self.tree.sync_dir(&shard)?;
        Ok(id)
    }

    /// Opens blob `id` for reading and checks its size against `len` (if given) and the
    /// store's largest entry before a byte of it is read: the one place that decides what a
    /// blob file may claim. Returns the file, its path and its size.
    fn open(
        &self,
        id: &BlobId,
        len: Option<u64>,
    ) -> Result<std::result::Result<Opened<F>, BlobFault>> {
        let hex = id.to_hex();
        let Some(root) = self.root()? else {
            return Ok(Err(BlobFault::Missing));
        };
        let Some(shard) = self.tree.dir(root, shard_of(&hex))? else {
            return Ok(Err(BlobFault::Missing));
        };
        let Some(file) = self.tree.open_file(&shard, &hex, Access::Read)? else {
            return Ok(Err(BlobFault::Missing));
        };
        let path = shard.path_of(&hex);
        let (size, _) = self
            .tree
            .fs
            .size_and_links(&file)
            .map_err(|e| Error::io("stat", &path, e))?;
        if let Some(expected) = len {
            if size != expected {
                return Ok(Err(BlobFault::Length {
                    expected,
                    found: size,
                }));
            }
        }
        if size > self.max_len {
            return Ok(Err(BlobFault::TooLarge {
                found: size,
                limit: self.max_len,
            }));
        }
        Ok(Ok((file, path, size)))
    }

    /// Where blob `id` is: its newest record in the pack, or else its own file (opened, with
    /// its size checked as [`open`](Self::open) does). A record whose length is not `len` is
    /// that fault unless a file of the right length is there.
    fn find(
        &self,
        id: &BlobId,
        len: Option<u64>,
    ) -> Result<std::result::Result<Found<'_, F>, BlobFault>> {
        let mut fault = None;
        if let Some(pack) = self.pack()? {
            if let Some(loc) = pack.index.get(id) {
                match len {
                    Some(expected) if loc.len != expected => {
                        fault = Some(BlobFault::Length {
                            expected,
                            found: loc.len,
                        });
                    }
                    _ => return Ok(Ok(Found::Record(pack.reader(&self.tree.fs), loc))),
                }
            }
        }
        Ok(match self.open(id, len)? {
            Ok((file, path, size)) => Ok(Found::File(file, path, size)),
            Err(BlobFault::Missing) => Err(fault.unwrap_or(BlobFault::Missing)),
            Err(other) => Err(other),
        })
    }

    /// Whether blob `id` is there with length `len` (a record in the pack, or its own file),
    /// without reading it: what a replay that hands out references checks.
    pub(crate) fn present(
        &self,
        id: &BlobId,
        len: u64,
    ) -> Result<std::result::Result<(), BlobFault>> {
        Ok(self.find(id, Some(len))?.map(|_| ()))
    }

    /// Reads a blob and checks it: a pack record against its CRC, a file against its name (and
    /// both against `len`, if given). Nothing longer than the reference says, or than the
    /// store's largest entry, is read.
    pub(crate) fn read(
        &self,
        id: &BlobId,
        len: Option<u64>,
    ) -> Result<std::result::Result<Vec<u8>, BlobFault>> {
        match self.find(id, len)? {
            Err(fault) => Ok(Err(fault)),
            Ok(Found::Record(pack, loc)) => pack::read_record(pack, &loc),
            Ok(Found::File(file, path, size)) => self.read_file(id, &file, &path, size),
        }
    }

    /// Reads the blob file `file` of `size` bytes whole and checks it against its name.
    fn read_file(
        &self,
        id: &BlobId,
        file: &F::File,
        path: &Path,
        size: u64,
    ) -> Result<std::result::Result<Vec<u8>, BlobFault>> {
        let mut bytes = vec![0u8; usize::try_from(size).unwrap_or(0)];
        let done = self.reader(file, path).read_at_most(&mut bytes, 0)?;
        bytes.truncate(done);
        let found = BlobId::of(&bytes);
        if found != *id {
            return Ok(Err(BlobFault::Hash { found }));
        }
        Ok(Ok(bytes))
    }

    /// Checks a blob without holding it, in [`CHECK_CHUNK`] pieces (what verify, repair and
    /// recovery hold for a blob is one piece, whatever its size): its length, that it is UTF-8
    /// text (an entry's JSON), and as `check` says, what [`read`](Self::read) checks (a record's
    /// CRC, a file's hash) or that and a record's hash too.
    pub(crate) fn check_entry(
        &self,
        id: &BlobId,
        len: u64,
        check: Check,
    ) -> Result<std::result::Result<(), BlobFault>> {
        match self.find(id, Some(len))? {
            Err(fault) => Ok(Err(fault)),
            Ok(Found::Record(pack, loc)) if loc.zstd => {
                check_compressed(id, pack, &loc, check == Check::Fully)
            }
            Ok(Found::Record(pack, loc)) => {
                let hash = check == Check::Fully;
                check_bytes(id, pack, (loc.at, loc.len), Some(loc.crc), hash)
            }
            Ok(Found::File(file, path, size)) => {
                check_bytes(id, self.reader(&file, &path), (0, size), None, true)
            }
        }
    }

    fn reader<'a>(&'a self, file: &'a F::File, path: &'a Path) -> Reader<'a, F> {
        Reader {
            fs: &self.tree.fs,
            file,
            path,
        }
    }

    /// Every blob, with its size: the pack's records and the blob files (an id may be in
    /// both). Names that are not blob ids, and anything that is not a regular file in a shard
    /// directory, are not ours and skipped.
    pub(crate) fn list(&self) -> Result<Vec<(BlobId, u64)>> {
        let Some(root) = self.root()? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        if let Some(pack) = self.pack()? {
            out.extend(pack.index.records().map(|(id, loc)| (*id, loc.len)));
        }
        for shard in self.tree.list(root)? {
            if shard.kind != EntryKind::Directory {
                continue;
            }
            let Ok(Some(dir)) = self.tree.dir(root, &shard.name) else {
                continue;
            };
            for entry in self.tree.list(&dir)? {
                let Ok(id) = entry.name.parse::<BlobId>() else {
                    continue;
                };
                if entry.kind != EntryKind::File || shard_of(&entry.name) != shard.name {
                    continue;
                }
                if let Some(stat) = self.tree.stat(&dir, &entry.name)? {
                    if stat.kind == EntryKind::File {
                        out.push((id, stat.len));
                    }
                }
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Rewrites the pack with only the newest record of each blob in `keep`, copied byte for
    /// byte (a damaged record stays as it is, never re-checksummed), crash-atomically (temp
    /// file, fsync, rename, directory fsync); nothing if it holds nothing else. For garbage
    /// collection, under the blob lock held exclusive: no writer is packing meanwhile.
    pub(crate) fn compact(&self, packs: &Packs, keep: &dyn Fn(&BlobId) -> bool) -> Result<()> {
        let Some(pack) = self.pack()? else {
            return Ok(());
        };
        if pack.index.only(keep) {
            return Ok(());
        }
        let Some(root) = self.root()? else {
            return Ok(());
        };
        let mut kept: Vec<Loc> = pack
            .index
            .records()
            .filter(|(id, _)| keep(id))
            .map(|(_, loc)| *loc)
            .collect();
        kept.sort_unstable_by_key(|loc| loc.record);
        let mut temp = TempFile::create(self.tree, root, PACK)?;
        for loc in kept {
            temp.copy(pack.reader(&self.tree.fs), loc.record, loc.end())?;
        }
        temp.sync()?;
        temp.replace(PACK)?;
        packs.forget(&root.path_of(PACK));
        self.tree.sync_dir(root)
    }

    /// Removes a blob's file (never anything but a regular file).
    pub(crate) fn remove(&self, id: &BlobId) -> Result<()> {
        let hex = id.to_hex();
        let Some(root) = self.root()? else {
            return Ok(());
        };
        let Some(shard) = self.tree.dir(root, shard_of(&hex))? else {
            return Ok(());
        };
        match self.tree.stat(&shard, &hex)? {
            Some(stat) if stat.kind == EntryKind::File => {}
            _ => return Ok(()),
        }
        match self.tree.fs.remove_file(&shard.handle, &hex) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove blob", shard.path_of(&hex), e)),
        }
    }

    /// Takes the blob lock, creating `blobs/lock` (and `blobs/`) if needed.
    pub(crate) fn lock(&self, exclusive: bool) -> Result<Option<BlobLock<F>>> {
        let root = self.made_root()?;
        let fs = &self.tree.fs;
        let file = loop {
            if let Some(file) = self.tree.open_file(root, LOCK, Access::Append)? {
                break file;
            }
            match fs.create_new(&root.handle, LOCK) {
                Ok(file) => break file,
                // Another process made it first: open theirs.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::io("create", root.path_of(LOCK), e)),
            }
        };
        self.take(file, root, exclusive).map(Some)
    }

    /// Takes the blob lock if `blobs/lock` exists, opening it read-only and creating nothing
    /// (a dry run, which must work on a read-only mount). `None` if there is no lock file:
    /// then no append ever wrote a blob through this lock.
    pub(crate) fn lock_existing(&self, exclusive: bool) -> Result<Option<BlobLock<F>>> {
        let Some(root) = self.root()? else {
            return Ok(None);
        };
        let Some(file) = self.tree.open_file(root, LOCK, Access::Read)? else {
            return Ok(None);
        };
        self.take(file, root, exclusive).map(Some)
    }

    fn take(&self, file: F::File, root: &Dir<F>, exclusive: bool) -> Result<BlobLock<F>> {
        let kind = if exclusive {
            LockKind::Exclusive
        } else {
            LockKind::Shared
        };
        self.tree
            .fs
            .lock(&file, kind)
            .map_err(|e| Error::io("lock", root.path_of(LOCK), e))?;
        Ok(BlobLock(file))
    }
}

/// How much [`BlobDir::check_entry`] checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// What a replay checks: a record's CRC, a file's hash (a writer's recovery and a reader's
    /// tip, which must agree with replay).
    AsRead,
    /// A record's hash as well (verify, repair).
    Fully,
}

/// What a blob's bytes are checked for as they arrive in pieces: their hash, that they are
/// text, and how many there are.
struct Contents {
    hasher: sha2::Sha256,
    text: Utf8Stream,
    count: u64,
}

impl Contents {
    fn new() -> Self {
        Self {
            hasher: <sha2::Sha256 as sha2::Digest>::new(),
            text: Utf8Stream::default(),
            count: 0,
        }
    }

    fn feed(&mut self, piece: &[u8]) {
        sha2::Digest::update(&mut self.hasher, piece);
        self.text.feed(piece);
        self.count += piece.len() as u64;
    }

    /// The fault of what was fed, against `id` with `hash`.
    fn finish(self, id: &BlobId, hash: bool) -> std::result::Result<(), BlobFault> {
        if hash {
            let found = BlobId::from_digest(sha2::Digest::finalize(self.hasher).into());
            if found != *id {
                return Err(BlobFault::Hash { found });
            }
        }
        if !self.text.finish() {
            return Err(BlobFault::NotText);
        }
        Ok(())
    }
}

/// Reads the bytes `from..from + len` of `blob` in [`CHECK_CHUNK`] pieces, handing each to
/// `each`. Returns how many there were (fewer than `len` if the file ends first).
fn read_pieces<F: FileSystem>(
    blob: Reader<'_, F>,
    (from, len): (u64, u64),
    each: &mut dyn FnMut(&[u8]),
) -> Result<u64> {
    let mut buf = vec![0u8; usize::try_from(len).unwrap_or(CHECK_CHUNK).min(CHECK_CHUNK)];
    let mut at = 0u64;
    while at < len {
        let want = usize::try_from(len - at)
            .unwrap_or(CHECK_CHUNK)
            .min(CHECK_CHUNK);
        let slot = buf.get_mut(..want).unwrap_or_default();
        let n = blob.read_at_most(slot, from + at)?;
        if n == 0 {
            break;
        }
        each(buf.get(..n).unwrap_or_default());
        at += n as u64;
    }
    Ok(at)
}

/// Checks the bytes `from..from + len` of `blob` in pieces: against `crc` if given, against
/// `id` with `hash`, and that they are text.
fn check_bytes<F: FileSystem>(
    id: &BlobId,
    blob: Reader<'_, F>,
    (from, len): (u64, u64),
    crc: Option<u32>,
    hash: bool,
) -> Result<std::result::Result<(), BlobFault>> {
    let mut sum = crc32fast::Hasher::new();
    let mut contents = Contents::new();
    let read = read_pieces(blob, (from, len), &mut |piece| {
        sum.update(piece);
        contents.feed(piece);
    })?;
    if let Some(stored) = crc {
        let computed = sum.finalize();
        if computed != stored || read != len {
            return Ok(Err(BlobFault::Crc { stored, computed }));
        }
    }
    Ok(contents.finish(id, hash))
}

/// Checks a compressed record in pieces, holding one piece of it and zstd's window at a time:
/// its stored bytes against its CRC, then what they decompress to: exactly its length, text,
/// and with `hash` its id.
fn check_compressed<F: FileSystem>(
    id: &BlobId,
    pack: Reader<'_, F>,
    loc: &Loc,
    hash: bool,
) -> Result<std::result::Result<(), BlobFault>> {
    let mut sum = crc32fast::Hasher::new();
    let read = read_pieces(pack, (loc.at, loc.stored), &mut |piece| sum.update(piece))?;
    let computed = sum.finalize();
    if computed != loc.crc || read != loc.stored {
        return Ok(Err(BlobFault::Crc {
            stored: loc.crc,
            computed,
        }));
    }
    let mut source = std::io::BufReader::with_capacity(
        CHECK_CHUNK,
        Section {
            reader: pack,
            at: loc.at,
            end: loc.at + loc.stored,
            failed: None,
        },
    );
    let mut contents = Contents::new();
    let decoded = decode_into(&mut source, loc.len, &mut contents);
    if let Some(e) = source.into_inner().failed {
        return Err(e);
    }
    if decoded.is_err() || contents.count != loc.len {
        return Ok(Err(BlobFault::Undecodable { expected: loc.len }));
    }
    Ok(contents.finish(id, hash))
}

/// Decompresses what `source` holds into `contents`, piece by piece, stopping past `len`.
fn decode_into(source: &mut dyn io::BufRead, len: u64, contents: &mut Contents) -> io::Result<()> {
    let mut decoder = pack::decoder(source)?;
    let mut buf = vec![0u8; CHECK_CHUNK];
    while contents.count <= len {
        let n = io::Read::read(&mut decoder, &mut buf)?;
        if n == 0 {
            break;
        }
        contents.feed(buf.get(..n).unwrap_or_default());
    }
    Ok(())
}

/// Part of a file as a [`std::io::Read`], for the zstd decoder; a failed read is kept, typed.
struct Section<'a, F: FileSystem> {
    reader: Reader<'a, F>,
    at: u64,
    end: u64,
    failed: Option<Error>,
}

impl<F: FileSystem> io::Read for Section<'_, F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = usize::try_from(self.end - self.at).unwrap_or(usize::MAX);
        let slot = buf.get_mut(..left.min(buf.len())).unwrap_or_default();
        match self.reader.read_at_most(slot, self.at) {
            Ok(n) => {
                self.at += n as u64;
                Ok(n)
            }
            Err(e) => {
                self.failed = Some(e);
                Err(io::Error::other("the pack could not be read"))
            }
        }
    }
}

/// UTF-8 validation of bytes that arrive in pieces: a character cut by a piece's end is
/// carried over to the next one.
#[derive(Default)]
struct Utf8Stream {
    /// The start of a character the last piece ended inside (at most 3 bytes).
    carry: Vec<u8>,
    failed: bool,
}

impl Utf8Stream {
    fn feed(&mut self, mut piece: &[u8]) {
        if self.failed {
            return;
        }
        if let Some(&lead) = self.carry.first() {
            // Complete the cut character: its lead byte says how long it is.
            let width = match lead {
                0xF0.. => 4,
                0xE0.. => 3,
                _ => 2,
            };
            let take = (width - self.carry.len()).min(piece.len());
            self.carry
                .extend_from_slice(piece.get(..take).unwrap_or_default());
            piece = piece.get(take..).unwrap_or_default();
            if self.carry.len() < width {
                return; // the piece ended inside it too
            }
            if std::str::from_utf8(&self.carry).is_err() {
                self.failed = true;
                return;
            }
            self.carry.clear();
        }
        match std::str::from_utf8(piece) {
            Ok(_) => {}
            // Cut at the end: keep the start of the character for the next piece.
            Err(e) if e.error_len().is_none() => self
                .carry
                .extend_from_slice(piece.get(e.valid_up_to()..).unwrap_or_default()),
            Err(_) => self.failed = true,
        }
    }

    /// True if everything fed was UTF-8, with no character cut at the end.
    fn finish(&self) -> bool {
        !self.failed && self.carry.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_stored_once_by_content_and_checked_on_read() {
        let dir = tempfile::tempdir().unwrap();
        let tree = Tree::open(super::super::OsFs, dir.path(), false).unwrap();
        let blobs = BlobDir::new(&tree, &tree.root, 1 << 20);
        let data = vec![7u8; 100_000];
        let id = blobs.put(&data).unwrap();
        assert_eq!(blobs.put(&data).unwrap(), id, "same bytes, same blob");
        assert_eq!(blobs.list().unwrap(), vec![(id, 100_000)]);
        assert_eq!(blobs.read(&id, Some(100_000)).unwrap().unwrap(), data);
        let path = blobs.path(&id);
        assert!(path.ends_with(format!("{}/{id}", &id.to_hex()[..2])));

        // Damage it: the read refuses it, and the next put of the same bytes repairs it.
        let mut bad = data.clone();
        bad[500] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        assert!(matches!(
            blobs.read(&id, Some(100_000)).unwrap(),
            Err(BlobFault::Hash { .. })
        ));
        assert!(matches!(
            blobs.read(&id, Some(5)).unwrap(),
            Err(BlobFault::Length { expected: 5, .. })
        ));
        let small = BlobDir::new(&tree, &tree.root, 1000);
        assert!(matches!(
            small.read(&id, None).unwrap(),
            Err(BlobFault::TooLarge {
                found: 100_000,
                limit: 1000
            })
        ));
        blobs.put(&data).unwrap();
        assert_eq!(blobs.read(&id, None).unwrap().unwrap(), data);

        blobs.remove(&id).unwrap();
        assert_eq!(blobs.read(&id, None).unwrap(), Err(BlobFault::Missing));
    }

    #[test]
    fn a_blob_is_checked_in_pieces_with_the_verdicts_of_a_whole_read() {
        let dir = tempfile::tempdir().unwrap();
        let tree = Tree::open(super::super::OsFs, dir.path(), false).unwrap();
        let blobs = BlobDir::new(&tree, &tree.root, 4 << 20);
        // Several pieces long, with characters of 2, 3 and 4 bytes cut at every piece end.
        let text = "aé€😀".repeat(CHECK_CHUNK / 3);
        let id = blobs.put(text.as_bytes()).unwrap();
        let len = text.len() as u64;
        assert_eq!(blobs.check_entry(&id, len, Check::Fully).unwrap(), Ok(()));
        assert!(matches!(
            blobs.check_entry(&id, len - 1, Check::Fully).unwrap(),
            Err(BlobFault::Length { .. })
        ));
        let path = blobs.path(&id);
        let mut bytes = text.into_bytes();
        bytes[CHECK_CHUNK + 7] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            blobs.check_entry(&id, len, Check::Fully).unwrap(),
            Err(BlobFault::Hash { .. })
        ));
        // Not text, with the right hash: refused as not text.
        let mut latin1 = vec![b'a'; CHECK_CHUNK * 2];
        latin1[CHECK_CHUNK - 1] = 0xE9;
        let id = blobs.put(&latin1).unwrap();
        let len = latin1.len() as u64;
        assert_eq!(
            blobs.check_entry(&id, len, Check::Fully).unwrap(),
            Err(BlobFault::NotText)
        );
        // Cut inside its last character.
        let cut = &"xé".as_bytes()[..2];
        let id = blobs.put(cut).unwrap();
        assert_eq!(
            blobs.check_entry(&id, 2, Check::Fully).unwrap(),
            Err(BlobFault::NotText)
        );
        assert_eq!(
            blobs
                .check_entry(&BlobId::of(b"none"), 4, Check::Fully)
                .unwrap(),
            Err(BlobFault::Missing)
        );
    }

    #[test]
    fn a_record_is_checked_against_its_crc_as_read_and_against_its_hash_fully() {
        let dir = tempfile::tempdir().unwrap();
        let tree = Tree::open(super::super::OsFs, dir.path(), false).unwrap();
        let blobs = BlobDir::new(&tree, &tree.root, 4 << 20);
        let packs = Packs::default();
        let text = "é".repeat(CHECK_CHUNK);
        let len = text.len() as u64;
        let id = BlobId::of(text.as_bytes());
        // A record whose header names another blob, with the right CRC for its bytes: only
        // the hash can tell, and only a full check makes it.
        let other = BlobId::of(b"another blob");
        blobs
            .pack_all(&packs, &[(other, text.as_bytes())], plain())
            .unwrap();
        let fresh = BlobDir::new(&tree, &tree.root, 4 << 20);
        assert_eq!(
            fresh.check_entry(&other, len, Check::AsRead).unwrap(),
            Ok(())
        );
        assert_eq!(
            fresh.check_entry(&other, len, Check::Fully).unwrap(),
            Err(BlobFault::Hash { found: id })
        );
        // The right record: both pass; its bytes changed: both see the CRC.
        blobs
            .pack_all(&packs, &[(id, text.as_bytes())], plain())
            .unwrap();
        let fresh = BlobDir::new(&tree, &tree.root, 4 << 20);
        for check in [Check::AsRead, Check::Fully] {
            assert_eq!(fresh.check_entry(&id, len, check).unwrap(), Ok(()));
            assert!(matches!(
                fresh.check_entry(&id, len + 1, check).unwrap(),
                Err(BlobFault::Length { .. })
            ));
        }
        let pack = dir.path().join("blobs").join(PACK);
        let mut bytes = std::fs::read(&pack).unwrap();
        let last = bytes.len() - 2;
        bytes[last] = b'x';
        std::fs::write(&pack, &bytes).unwrap();
        let fresh = BlobDir::new(&tree, &tree.root, 4 << 20);
        for check in [Check::AsRead, Check::Fully] {
            assert!(matches!(
                fresh.check_entry(&id, len, check).unwrap(),
                Err(BlobFault::Crc { .. })
            ));
        }
        assert!(matches!(
            fresh.read(&id, Some(len)).unwrap(),
            Err(BlobFault::Crc { .. })
        ));
    }

    fn plain() -> Packing {
        Packing::new(
            crate::codec::Version::V4,
            crate::fs::BlobCompression::None,
            false,
        )
    }

    /// The record of `id` holding `stored` as zstd's frame of a blob of `len` bytes.
    fn compressed_record(id: &BlobId, len: usize, stored: &[u8]) -> Vec<u8> {
        let mut out = format!(
            "{{\"blob\":\"{}\",\"len\":{len},\"zstd\":{},\"crc\":{}}}\n",
            id.to_hex(),
            stored.len(),
            crc32fast::hash(stored)
        )
        .into_bytes();
        out.extend_from_slice(stored);
        out.push(b'\n');
        out
    }

    #[test]
    fn a_compressed_record_is_checked_as_it_is_read_and_fully_in_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let tree = Tree::open(super::super::OsFs, dir.path(), false).unwrap();
        let text = "ça va, ".repeat(3 * CHECK_CHUNK / 8);
        let len = text.len();
        let id = BlobId::of(text.as_bytes());
        let other = BlobId::of(b"another");
        let frame = zstd::bulk::compress(text.as_bytes(), 3).unwrap();
        let binary = vec![0xFFu8; len];
        let not_text = zstd::bulk::compress(&binary, 3).unwrap();
        let binary_id = BlobId::of(&binary);
        // A frame that asks for a window of 2^24 bytes: none annals writes does.
        let mut wide = zstd::stream::Encoder::new(Vec::new(), 3).unwrap();
        wide.window_log(24).unwrap();
        wide.include_contentsize(false).unwrap();
        std::io::Write::write_all(&mut wide, text.as_bytes()).unwrap();
        let wide = wide.finish().unwrap();
        let undecodable = Err(BlobFault::Undecodable {
            expected: len as u64,
        });
        let cases: [(&BlobId, &[u8], usize, _, _); 6] = [
            (&id, &frame, len, Ok(()), Ok(())),
            (
                &other,
                &frame,
                len,
                Ok(()),
                Err(BlobFault::Hash { found: id }),
            ),
            (
                &binary_id,
                &not_text,
                len,
                Err(BlobFault::NotText),
                Err(BlobFault::NotText),
            ),
            (
                &id,
                &frame[..frame.len() - 3],
                len,
                undecodable.clone(),
                undecodable.clone(),
            ),
            (&id, &wide, len, undecodable.clone(), undecodable.clone()),
            (
                &id,
                &frame,
                len - 1,
                Err(BlobFault::Undecodable {
                    expected: len as u64 - 1,
                }),
                Err(BlobFault::Undecodable {
                    expected: len as u64 - 1,
                }),
            ),
        ];
        for (i, (name, stored, claimed, as_read, fully)) in cases.into_iter().enumerate() {
            let root = dir.path().join("blobs");
            std::fs::create_dir_all(&root).unwrap();
            std::fs::write(root.join(PACK), compressed_record(name, claimed, stored)).unwrap();
            let blobs = BlobDir::new(&tree, &tree.root, 4 << 20);
            let claimed = claimed as u64;
            assert_eq!(
                blobs.check_entry(name, claimed, Check::AsRead).unwrap(),
                as_read,
                "case {i}"
            );
            assert_eq!(
                blobs.check_entry(name, claimed, Check::Fully).unwrap(),
                fully,
                "case {i}"
            );
            // A read agrees with the check a replay makes (text aside: a read hands over bytes).
            let read = blobs.read(name, Some(claimed)).unwrap().map(|_| ());
            match as_read {
                Err(BlobFault::NotText) => assert_eq!(read, Ok(()), "case {i}"),
                expected => assert_eq!(read, expected, "case {i}"),
            }
        }
        let root = dir.path().join("blobs");
        std::fs::write(root.join(PACK), compressed_record(&id, len, &frame)).unwrap();
        assert_eq!(
            BlobDir::new(&tree, &tree.root, 4 << 20)
                .read(&id, None)
                .unwrap(),
            Ok(text.clone().into_bytes())
        );
    }

    #[test]
    fn utf8_in_pieces_agrees_with_utf8_whole_at_every_cut() {
        let samples: [&[u8]; 5] = [
            "aé€😀z".as_bytes(),
            b"a\xE2\x82",
            b"\xF0\x9F\x98a",
            b"ok\xC0\xAF",
            b"\xED\xA0\x80",
        ];
        for sample in samples {
            let whole = std::str::from_utf8(sample).is_ok();
            for cut in 0..=sample.len() {
                for second in cut..=sample.len() {
                    let mut stream = Utf8Stream::default();
                    stream.feed(&sample[..cut]);
                    stream.feed(&sample[cut..second]);
                    stream.feed(&sample[second..]);
                    assert_eq!(stream.finish(), whole, "{sample:?} cut at {cut}, {second}");
                }
            }
        }
    }
}
