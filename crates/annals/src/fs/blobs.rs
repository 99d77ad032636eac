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
use super::pack::{self, Index, Loc, Packs, PACK};
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
    /// ([`Packs::append`]): one `write(2)`, and with `durable` one `fdatasync`. The caller holds
    /// the blob lock.
    pub(crate) fn pack_all(
        &self,
        packs: &Packs,
        blobs: &[(BlobId, &[u8])],
        durable: bool,
    ) -> Result<()> {
        packs.append(self.tree, self.made_root()?, blobs, self.max_len, durable)
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
            Ok(Found::Record(pack, loc)) => Ok(pack::read_record(pack, &loc)?.map_err(
                |computed| BlobFault::Crc {
                    stored: loc.crc,
                    computed,
                },
            )),
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

/// Checks the bytes `from..from + len` of `blob` in pieces: against `crc` if given, against
/// `id` with `hash`, and that they are text.
fn check_bytes<F: FileSystem>(
    id: &BlobId,
    blob: Reader<'_, F>,
    (from, len): (u64, u64),
    crc: Option<u32>,
    hash: bool,
) -> Result<std::result::Result<(), BlobFault>> {
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    let mut sum = crc32fast::Hasher::new();
    let mut text = Utf8Stream::default();
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
        let piece = buf.get(..n).unwrap_or_default();
        sha2::Digest::update(&mut hasher, piece);
        sum.update(piece);
        text.feed(piece);
        at += n as u64;
    }
    if let Some(stored) = crc {
        let computed = sum.finalize();
        if computed != stored || at != len {
            return Ok(Err(BlobFault::Crc { stored, computed }));
        }
    }
    if hash {
        let found = BlobId::from_digest(sha2::Digest::finalize(hasher).into());
        if found != *id {
            return Ok(Err(BlobFault::Hash { found }));
        }
    }
    if !text.finish() {
        return Ok(Err(BlobFault::NotText));
    }
    Ok(Ok(()))
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
            .pack_all(&packs, &[(other, text.as_bytes())], false)
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
            .pack_all(&packs, &[(id, text.as_bytes())], false)
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
