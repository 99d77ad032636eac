//! Test support: the pieces every test of a store needs, written once for the conformance
//! suite, the integration tests, the fuzz crate and third-party backends.
//!
//! This is test code, not storage API: helpers panic with a message when something that is not
//! what the test is about goes wrong (a temporary directory that cannot be made, an entry that
//! cannot be serialized). Helpers whose failure a test may be about (replays) return
//! [`Result`].
//!
//! - Entries: [`entry`], [`entries`], [`raw`], [`raws`], and JSON strings of an exact length,
//!   [`json_string_of_len`] (two-byte characters) and [`ascii_string_of_len`].
//! - Fixed ids for runs that must replay identically: [`session_id`], [`segment_id`].
//! - Stores: [`TempStore`], a filesystem store in a temporary directory of its own.
//! - Reading back into a `Vec`: [`replay_values`], [`replay_texts`], [`trace_texts`], [`seqs`].
//! - Randomness: [`Rng`], one seeded generator, and [`seed_from_env_or_clock`].
//! - [`tip`], to write an expected tip in one expression; [`format_1_image`], a file as format 1
//!   wrote it.
//! - [`pack_records`], [`blob_on_disk`], [`damage_blob`], [`remove_blob`]: a blob's bytes where
//!   a person would find them (its record in the session's pack, or its own file), for damage
//!   tests.

use std::ops::{ControlFlow, Deref, Range};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{json, Value};

use super::Fixture;
use crate::{
    Body, Entry, FsOptions, FsStore, RawEntry, ReplayOptions, Result, ScanReport, SegmentId,
    SessionId, Store, StoreExt, Tip,
};

// ---------------------------------------------------------------------------------------------
// Blobs on disk
// ---------------------------------------------------------------------------------------------

/// Where a blob's bytes are: the session's pack (with the range of its record's header line,
/// newline included) or a file of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobOnDisk {
    /// The pack or the blob's file.
    pub path: PathBuf,
    /// In the pack: the record's header line.
    pub header: Option<Range<u64>>,
    /// The blob's bytes in that file.
    pub bytes: Range<u64>,
}

/// The records of `session`'s pack in the store at `root`, in file order, read as docs/FORMAT.md
/// lays them out (by a parser of their own, not the store's), up to the first bytes that are
/// no record; each as its blob's id (hex) and where it is. Empty if there is no pack.
#[must_use]
pub fn pack_records(root: &Path, session: SessionId) -> Vec<(String, BlobOnDisk)> {
    let path = root.join(session.to_string()).join("blobs").join("pack");
    let Ok(pack) = std::fs::read(&path) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut pos = 0usize;
    while let Some(nl) = pack
        .get(pos..)
        .and_then(|r| r.iter().position(|&b| b == b'\n'))
    {
        let Ok(header) = serde_json::from_slice::<Value>(&pack[pos..pos + nl]) else {
            break;
        };
        let (Some(hex), Some(len)) = (header["blob"].as_str(), header["len"].as_u64()) else {
            break;
        };
        // A compressed record (format 4) holds `zstd` bytes.
        let stored = header["zstd"].as_u64().unwrap_or(len);
        let start = pos + nl + 1;
        let end = start + usize::try_from(stored).unwrap_or(usize::MAX);
        if pack.get(end) != Some(&b'\n') {
            break;
        }
        out.push((
            hex.to_string(),
            BlobOnDisk {
                path: path.clone(),
                header: Some(pos as u64..start as u64),
                bytes: start as u64..end as u64,
            },
        ));
        pos = end + 1;
    }
    out
}

/// Finds blob `id` of `session` in the store at `root` as docs/FORMAT.md lays it out: the newest
/// record in `blobs/pack` ([`pack_records`]), else the file `blobs/ab/abcdef…`.
#[must_use]
pub fn blob_on_disk(root: &Path, session: SessionId, id: &crate::BlobId) -> Option<BlobOnDisk> {
    let hex = id.to_hex();
    if let Some((_, found)) = pack_records(root, session)
        .into_iter()
        .rev()
        .find(|(h, _)| *h == hex)
    {
        return Some(found);
    }
    let path = root
        .join(session.to_string())
        .join("blobs")
        .join(&hex[..2])
        .join(&hex);
    let len = std::fs::metadata(&path).ok()?.len();
    Some(BlobOnDisk {
        path,
        header: None,
        bytes: 0..len,
    })
}

/// Flips the lowest bit of byte `at` of blob `id`'s bytes on disk.
///
/// # Panics
/// If the blob is not there.
pub fn damage_blob(root: &Path, session: SessionId, id: &crate::BlobId, at: u64) {
    let found = blob_on_disk(root, session, id).expect("the blob is on disk");
    let mut bytes = std::fs::read(&found.path).unwrap();
    let i = usize::try_from(found.bytes.start + at).unwrap();
    bytes[i] ^= 1;
    std::fs::write(&found.path, bytes).unwrap();
}

/// Takes blob `id` away: removes its file, or zeroes its record's header line (newline kept),
/// which leaves bytes that are no record.
///
/// # Panics
/// If the blob is not there.
pub fn remove_blob(root: &Path, session: SessionId, id: &crate::BlobId) {
    let found = blob_on_disk(root, session, id).expect("the blob is on disk");
    match found.header {
        None => std::fs::remove_file(&found.path).unwrap(),
        Some(header) => {
            let mut bytes = std::fs::read(&found.path).unwrap();
            let range =
                usize::try_from(header.start).unwrap()..usize::try_from(header.end - 1).unwrap();
            bytes[range].fill(0);
            std::fs::write(&found.path, bytes).unwrap();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Entries
// ---------------------------------------------------------------------------------------------

/// The `i`-th test entry: `{"i": i, "text": "entry i"}`. Small, distinct, and easy to recognise in
/// a failure message.
#[must_use]
pub fn entry(i: u64) -> Value {
    json!({ "i": i, "text": format!("entry {i}") })
}

/// [`entry`] for every number of `range`, in order.
#[must_use]
pub fn entries(range: Range<u64>) -> Vec<Value> {
    range.map(entry).collect()
}

/// `value` serialized as a [`RawEntry`].
///
/// # Panics
/// If `value` does not serialize to JSON.
#[track_caller]
pub fn raw(value: &(impl Serialize + ?Sized)) -> RawEntry {
    match RawEntry::from_value(value) {
        Ok(raw) => raw,
        Err(e) => panic!("a test entry does not serialize: {e}"),
    }
}

/// Every value serialized as a [`RawEntry`] (see [`raw`]).
#[track_caller]
pub fn raws<T: Serialize>(values: &[T]) -> Vec<RawEntry> {
    values.iter().map(|v| raw(v)).collect()
}

/// A JSON string whose text (quotes included) is exactly `len` bytes, made of two-byte
/// characters where possible, so that a backend counting characters instead of bytes is caught.
///
/// # Panics
/// If `len < 2` (no JSON string is shorter).
#[track_caller]
pub fn json_string_of_len(len: usize) -> RawEntry {
    assert!(len >= 2, "a JSON string takes at least 2 bytes, not {len}");
    let body = len - 2;
    let mut s = String::with_capacity(len);
    s.push('"');
    for _ in 0..body / 2 {
        s.push('é');
    }
    if body % 2 == 1 {
        s.push('a');
    }
    s.push('"');
    assert_eq!(s.len(), len);
    raw_json(&s)
}

/// A JSON string of ASCII letters whose text (quotes included) is exactly `len` bytes; `""` for
/// a `len` below 2.
#[must_use]
pub fn ascii_string_of_len(len: usize) -> RawEntry {
    let mut s = String::with_capacity(len.max(2));
    s.push('"');
    s.push_str(&"a".repeat(len.saturating_sub(2)));
    s.push('"');
    raw_json(&s)
}

#[track_caller]
fn raw_json(text: &str) -> RawEntry {
    match RawEntry::from_json(text) {
        Ok(raw) => raw,
        Err(e) => panic!("not JSON: {e}"),
    }
}

/// A tip, in one expression: `tip(3, 1)` is three entries at generation 1.
#[must_use]
pub fn tip(count: u64, generation: u64) -> Tip {
    Tip { count, generation }
}

/// The header line of an empty segment file of format `annals` (a number: one this build
/// knows or not), as that format's writer made it, for the cases of files of other versions.
#[must_use]
pub fn header_image(annals: u64, session: SessionId, segment: SegmentId) -> Vec<u8> {
    let header = crate::codec::Header {
        annals,
        kind: crate::codec::FileKind::Segment,
        session,
        segment,
        generation: 0,
        created_ms: 1_750_000_000_000,
        fork: None,
    };
    let mut bytes = Vec::new();
    crate::codec::encode_header(&header, &mut bytes).expect("a header");
    bytes
}

/// The bytes of a format-1 segment file of `segment` in `session` holding `entries` (JSON
/// texts), as a format-1 writer made it: its header (generation 0) and one line per entry. For
/// the cases whose format-1 rules differ from format 2's.
#[must_use]
pub fn format_1_image(session: SessionId, segment: SegmentId, entries: &[String]) -> Vec<u8> {
    use crate::codec::{encode_entry, Frame};
    let mut bytes = header_image(1, session, segment);
    for (seq, json) in (0u64..).zip(entries) {
        encode_entry(&Frame::v1(seq), json, &mut bytes).expect("a format-1 line");
    }
    bytes
}

// ---------------------------------------------------------------------------------------------
// Ids
// ---------------------------------------------------------------------------------------------

/// The session id numbered `n`: the same on every run, and ordered as the numbers are (a
/// higher `n` is a newer session). For seeds, fixtures and inputs that must replay identically.
#[must_use]
pub fn session_id(n: u64) -> SessionId {
    fixed_id(n)
}

/// The segment id numbered `n` (see [`session_id`]).
#[must_use]
pub fn segment_id(n: u64) -> SegmentId {
    fixed_id(n)
}

/// A version-7 UUID holding only `n` (in its last 48 bits).
fn fixed_id<T: std::str::FromStr>(n: u64) -> T {
    match format!("00000000-0000-7000-8000-{:012x}", n & 0xffff_ffff_ffff).parse() {
        Ok(id) => id,
        Err(_) => unreachable!("a well-formed version-7 UUID"),
    }
}

// ---------------------------------------------------------------------------------------------
// Stores
// ---------------------------------------------------------------------------------------------

/// A filesystem store in a temporary directory of its own, removed when this is dropped (after
/// the store). The store's root is a subdirectory that does not exist until the store is
/// opened, so opening also creates it. Derefs to the [`FsStore`].
#[derive(Debug)]
pub struct TempStore {
    store: FsStore,
    // Declared after `store`, so dropped after it.
    dir: tempfile::TempDir,
}

impl TempStore {
    /// A store with the default options.
    ///
    /// # Panics
    /// If the directory cannot be made or the store cannot be opened (as for the others).
    #[must_use]
    pub fn new() -> Self {
        Self::with_options(FsOptions::default())
    }

    /// A store with `options`, in the system's temporary directory.
    #[must_use]
    pub fn with_options(options: FsOptions) -> Self {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        Self::open_in(dir, options)
    }

    /// A store with `options` on a memory-backed file system (`/dev/shm`) when the machine has
    /// one, where `fsync` costs nothing; elsewhere as [`with_options`](Self::with_options). For
    /// runs of thousands of inputs (fuzzing), not for tests of what reaches a disk.
    #[must_use]
    pub fn on_tmpfs(options: FsOptions) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("annals-test-")
            .tempdir_in("/dev/shm")
            .or_else(|_| tempfile::tempdir())
            .expect("create a temporary directory");
        Self::open_in(dir, options)
    }

    fn open_in(dir: tempfile::TempDir, options: FsOptions) -> Self {
        let store = FsStore::open_with(dir.path().join("store"), options).expect("open an FsStore");
        Self { store, dir }
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &FsStore {
        &self.store
    }

    /// The store's root directory.
    #[must_use]
    pub fn root(&self) -> &Path {
        self.store.root()
    }

    /// A second store on the same root with the same options, as another process would open
    /// it: its own handle cache, seeing this one's writes only through the files.
    #[must_use]
    pub fn open_another(&self) -> FsStore {
        self.open_another_with(self.store.options())
    }

    /// A second store on the same root, with `options`.
    #[must_use]
    pub fn open_another_with(&self, options: FsOptions) -> FsStore {
        FsStore::open_with(self.root(), options).expect("open a second FsStore")
    }

    /// Drops the store and opens a new one on the same root with the same options: nothing it
    /// had cached survives, as after a restart.
    pub fn reopen(&mut self) {
        self.reopen_with(self.store.options());
    }

    /// Drops the store and opens a new one on the same root with `options`.
    pub fn reopen_with(&mut self, options: FsOptions) {
        self.store = self.open_another_with(options);
    }

    /// The store as a conformance-suite [`Fixture`] that keeps the directory.
    #[must_use]
    pub fn into_fixture(self) -> Fixture {
        let Self { store, dir } = self;
        Fixture::new(store).keeping(dir)
    }

    /// The temporary directory the root is in (removed on drop).
    #[must_use]
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Default for TempStore {
    fn default() -> Self {
        Self::new()
    }
}

impl Deref for TempStore {
    type Target = FsStore;

    fn deref(&self) -> &FsStore {
        &self.store
    }
}

// ---------------------------------------------------------------------------------------------
// Reading back
// ---------------------------------------------------------------------------------------------

/// Every entry a replay delivers, as `(seq, value)`, and the replay's report.
///
/// # Errors
/// What [`StoreExt::replay`] returns: a strict replay of a damaged segment, a missing segment.
pub fn replay_values(
    store: &dyn Store,
    session: SessionId,
    segment: SegmentId,
    options: &ReplayOptions,
) -> Result<(Vec<(u64, Value)>, ScanReport)> {
    let mut out = Vec::new();
    let report = store.replay(session, segment, options, |meta, v: Value| {
        out.push((meta.seq, v));
        Ok(())
    })?;
    Ok((out, report))
}

/// Every entry a replay delivers, as `(seq, JSON text)`, and the replay's report.
///
/// # Errors
/// What [`Store::replay_raw`] returns.
///
/// # Panics
/// With [`ReplayOptions::blob_refs`], at the first entry kept as a blob (it has no text then).
pub fn replay_texts(
    store: &dyn Store,
    session: SessionId,
    segment: SegmentId,
    options: &ReplayOptions,
) -> Result<(Vec<(u64, String)>, ScanReport)> {
    let mut out = Vec::new();
    let report = store.replay_raw(session, segment, options, &mut |e| {
        out.push((e.seq, text_of(&e)));
        Ok(ControlFlow::Continue(()))
    })?;
    Ok((out, report))
}

/// Every event of a segment's trace, as `(seq, JSON text)`, and the replay's report.
///
/// # Errors
/// What [`Store::replay_trace_raw`] returns.
///
/// # Panics
/// As [`replay_texts`].
pub fn trace_texts(
    store: &dyn Store,
    session: SessionId,
    segment: SegmentId,
    options: &ReplayOptions,
) -> Result<(Vec<(u64, String)>, ScanReport)> {
    let mut out = Vec::new();
    let report = store.replay_trace_raw(session, segment, options, &mut |e| {
        out.push((e.seq, text_of(&e)));
        Ok(ControlFlow::Continue(()))
    })?;
    Ok((out, report))
}

#[track_caller]
fn text_of(e: &Entry<'_>) -> String {
    match e.body {
        Body::Inline(json)
        | Body::Blob {
            json: Some(json), ..
        } => json.to_owned(),
        Body::Blob { json: None, .. } => panic!(
            "entry {} came as a blob reference without its text (blob_refs)",
            e.seq
        ),
    }
}

/// The sequence numbers of delivered `(seq, _)` pairs.
#[must_use]
pub fn seqs<T>(delivered: &[(u64, T)]) -> Vec<u64> {
    delivered.iter().map(|(seq, _)| *seq).collect()
}

// ---------------------------------------------------------------------------------------------
// Randomness
// ---------------------------------------------------------------------------------------------

/// A seeded pseudo-random generator (splitmix64) for tests and workloads: the same seed gives
/// the same numbers on every machine and build, so a failing seed can be replayed. Fast and
/// small; not for anything secret.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator starting from `seed` (any value, 0 included).
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (nearly uniform for the small `n` of tests); 0 when `n` is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// An index into a slice of `len` items (0 when `len` is 0).
    pub fn index(&mut self, len: usize) -> usize {
        let i = self.below(len as u64);
        usize::try_from(i).expect("below a usize")
    }

    /// True `percent` times out of a hundred.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// One of `items`.
    ///
    /// # Panics
    /// If `items` is empty.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        assert!(!items.is_empty(), "pick from nothing");
        &items[self.index(items.len())]
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}

/// The seed of a randomized test: the environment variable `var` when it is set to a number
/// (to replay a failure), otherwise a fresh one from the clock and the process id. Print it
/// with the test's output, naming `var`, so that a failure can be replayed.
#[must_use]
pub fn seed_from_env_or_clock(var: &str) -> u64 {
    if let Some(seed) = std::env::var(var).ok().and_then(|s| s.parse().ok()) {
        return seed;
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    u64::from(nanos) ^ (u64::from(std::process::id()) << 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_of_a_given_length_are_that_many_bytes_of_json() {
        for len in [2, 3, 4, 5, 100, 4097] {
            assert_eq!(json_string_of_len(len).len(), len);
            assert_eq!(ascii_string_of_len(len).len(), len);
        }
        assert_eq!(ascii_string_of_len(0).as_str(), "\"\"");
        assert!(json_string_of_len(6).as_str().contains('é'));
    }

    #[test]
    fn fixed_ids_are_stable_and_ordered_by_their_number() {
        assert_eq!(
            session_id(1).to_string(),
            "00000000-0000-7000-8000-000000000001"
        );
        assert!(segment_id(2) > segment_id(1));
        assert_eq!(session_id(7), session_id(7));
    }

    #[test]
    fn the_generator_is_splitmix64_and_replays_from_its_seed() {
        // The first outputs of splitmix64 seeded with 0, as published with the algorithm.
        let mut rng = Rng::new(0);
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        let (mut a, mut b) = (Rng::new(42), Rng::new(42));
        assert_eq!(a.bytes(13), b.bytes(13));
        assert!((0..1000).all(|_| a.below(7) < 7));
        assert_eq!(a.below(0), 0);
        assert_eq!(*Rng::new(3).pick(&["only"]), "only");
    }

    #[test]
    fn a_temp_store_reopens_on_its_root_and_cleans_up() {
        let mut temp = TempStore::new();
        let dir = temp.dir().to_owned();
        let (session, segment) = (SessionId::new(), SegmentId::new());
        temp.create(session, segment, &entries(0..2)).unwrap();
        assert!(temp.root().starts_with(&dir));
        let other = temp.open_another();
        assert_eq!(
            other.read::<Value>(session, segment).unwrap(),
            entries(0..2)
        );
        temp.reopen();
        let (delivered, report) =
            replay_values(temp.store(), session, segment, &ReplayOptions::strict()).unwrap();
        assert_eq!(seqs(&delivered), vec![0, 1]);
        assert_eq!(report.entries, 2);
        drop(other);
        drop(temp);
        assert!(!dir.exists());
    }
}
