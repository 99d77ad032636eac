//! The annals contenders. `annals` is the filesystem store with its default options; the
//! others are other ways of appending (issue 13): through a writer lease, and a buffered turn
//! made durable by one `sync`. Each has its opener here; the harness, the tables and the report
//! pick up every contender listed in [`available`].

use std::path::{Path, PathBuf};
use std::sync::RwLock;

use annals::{
    BlobCompression, Durability, FsOptions, FsStore, Lease, LeaseOptions, RawEntry, ReplayOptions,
    SegmentId, SessionId, Store, StoreExt,
};
use annals_bench::entries::Message;
use annals_bench::realshape::Event;
use serde::de::DeserializeOwned;

use crate::{Contender, Guarantee, LogId, Mode, Opener};

/// The annals contenders that exist today, with their openers.
#[must_use]
pub fn available() -> Vec<(&'static str, Opener)> {
    vec![
        ("annals", open_annals),
        ("annals_lease", open_annals_lease),
        ("annals_turn_sync", open_annals_turn_sync),
        ("annals_zstd", open_annals_zstd),
    ]
}

/// `FsStore` with `FsOptions::blob_compression` set to zstd's default level: as `annals`
/// otherwise (entries short enough for a line are never compressed).
fn open_annals_zstd(dir: &Path, mode: Mode) -> Option<Box<dyn Contender>> {
    Some(Box::new(AnnalsStore::open_with(
        dir,
        mode,
        BlobCompression::ZSTD,
    )))
}

/// `FsStore` with default options (`Buffered` or `Sync`): one `append_raw` or
/// `append_batch_raw` per append under the per-append lock, typed replay through
/// `StoreExt::replay`. Several threads appending `Sync` to one segment get group commit
/// here as soon as the write path has it; nothing in the harness changes.
fn open_annals(dir: &Path, mode: Mode) -> Option<Box<dyn Contender>> {
    Some(Box::new(AnnalsStore::open(dir, mode)))
}

/// Appending through a writer lease (issue 13): one `Store::lease` per log, taken in `new_log`
/// and held for the contender's life, so each append is the one `write(2)` (plus `fdatasync`
/// in `Sync`) with no per-append lock or `statx`. Replay goes through the store (readers are
/// not held up by a lease).
fn open_annals_lease(dir: &Path, mode: Mode) -> Option<Box<dyn Contender>> {
    Some(Box::new(AnnalsLease {
        inner: AnnalsStore::open(dir, mode),
        leases: RwLock::default(),
    }))
}

/// Appends through a writer lease per log (opened by `open_annals_lease`).
pub struct AnnalsLease {
    inner: AnnalsStore,
    leases: RwLock<Vec<Box<dyn Lease>>>,
}

impl AnnalsLease {
    fn with<T>(&self, log: LogId, f: impl FnOnce(&dyn Lease) -> T) -> T {
        f(&*self.leases.read().unwrap_or_else(|e| e.into_inner())[log])
    }
}

impl Contender for AnnalsLease {
    fn name(&self) -> &'static str {
        "annals_lease"
    }

    fn guarantee(&self) -> Guarantee {
        self.inner.guarantee()
    }

    fn config(&self) -> String {
        format!("{}, appends through a Store::lease", self.inner.config())
    }

    fn new_log(&self) -> LogId {
        let log = self.inner.new_log();
        let (session, segment) = self.inner.ids(log);
        let lease = self
            .inner
            .store
            .lease(session, segment, &LeaseOptions::default())
            .expect("annals lease");
        let mut leases = self.leases.write().unwrap_or_else(|e| e.into_inner());
        leases.push(lease);
        debug_assert_eq!(leases.len() - 1, log);
        log
    }

    fn append(&self, log: LogId, _seq: u64, entry: &RawEntry) {
        self.append_next(log, entry);
    }

    fn append_next(&self, log: LogId, entry: &RawEntry) {
        self.with(log, |lease| lease.append_raw(entry))
            .expect("annals lease append");
    }

    fn append_batch(&self, log: LogId, _seq: u64, entries: &[RawEntry]) {
        self.with(log, |lease| lease.append_batch_raw(entries))
            .expect("annals lease batch");
    }

    fn replay_messages(&self, log: LogId, f: &mut dyn FnMut(Message)) -> u64 {
        self.inner.replay(log, f)
    }

    fn replay_events(&self, log: LogId, f: &mut dyn FnMut(Event)) -> u64 {
        self.inner.replay(log, f)
    }

    fn count(&self, log: LogId) -> Option<u64> {
        Some(self.with(log, |lease| lease.tip().count))
    }

    fn settle(&self) {}

    fn dir(&self) -> &Path {
        self.inner.dir()
    }
}

/// A worker's turn: its entries appended `Buffered` one by one as they happen, then one
/// `Store::sync(session, segment)` at the end of the turn, which makes the whole turn survive a
/// power cut. Durable only (its buffered mode is `annals`): `append_batch` is a turn of
/// `entries.len()` appends and one sync; `append` is a turn of one entry (append, then sync).
fn open_annals_turn_sync(dir: &Path, mode: Mode) -> Option<Box<dyn Contender>> {
    (mode == Mode::Durable).then(|| {
        Box::new(AnnalsTurnSync(AnnalsStore::open(dir, Mode::Buffered))) as Box<dyn Contender>
    })
}

/// A worker's turn made durable by one `sync` at its end (opened by `open_annals_turn_sync`).
pub struct AnnalsTurnSync(AnnalsStore);

impl AnnalsTurnSync {
    fn sync(&self, log: LogId) {
        let (session, segment) = self.0.ids(log);
        self.0.store.sync(session, segment).expect("annals sync");
    }
}

impl Contender for AnnalsTurnSync {
    fn name(&self) -> &'static str {
        "annals_turn_sync"
    }

    fn guarantee(&self) -> Guarantee {
        Guarantee::PowerCut
    }

    fn config(&self) -> String {
        "FsStore, Durability::Buffered appends, then Store::sync at the end of the turn".into()
    }

    fn new_log(&self) -> LogId {
        self.0.new_log()
    }

    fn append(&self, log: LogId, seq: u64, entry: &RawEntry) {
        self.0.append(log, seq, entry);
        self.sync(log);
    }

    fn append_next(&self, log: LogId, entry: &RawEntry) {
        self.0.append_next(log, entry);
        self.sync(log);
    }

    fn append_batch(&self, log: LogId, seq: u64, entries: &[RawEntry]) {
        for (i, e) in entries.iter().enumerate() {
            self.0.append(log, seq + i as u64, e);
        }
        self.sync(log);
    }

    fn replay_messages(&self, log: LogId, f: &mut dyn FnMut(Message)) -> u64 {
        self.0.replay_messages(log, f)
    }

    fn replay_events(&self, log: LogId, f: &mut dyn FnMut(Event)) -> u64 {
        self.0.replay_events(log, f)
    }

    fn count(&self, log: LogId) -> Option<u64> {
        self.0.count(log)
    }

    fn settle(&self) {}

    fn dir(&self) -> &Path {
        self.0.dir()
    }
}

/// The filesystem store with default options.
pub struct AnnalsStore {
    dir: PathBuf,
    store: FsStore,
    mode: Mode,
    compression: BlobCompression,
    logs: RwLock<Vec<(SessionId, SegmentId)>>,
}

impl AnnalsStore {
    /// Opens a store in `dir`.
    ///
    /// # Panics
    /// If the store cannot be opened.
    #[must_use]
    pub fn open(dir: &Path, mode: Mode) -> Self {
        Self::open_with(dir, mode, BlobCompression::None)
    }

    /// Opens a store in `dir` whose blobs are compressed as `compression` says.
    ///
    /// # Panics
    /// If the store cannot be opened.
    #[must_use]
    pub fn open_with(dir: &Path, mode: Mode, compression: BlobCompression) -> Self {
        let durability = match mode {
            Mode::Buffered => Durability::Buffered,
            Mode::Durable => Durability::Sync,
        };
        let store = FsStore::open_with(
            dir,
            FsOptions {
                durability,
                blob_compression: compression,
                ..FsOptions::default()
            },
        )
        .expect("open annals store");
        Self {
            dir: dir.to_path_buf(),
            store,
            mode,
            compression,
            logs: RwLock::default(),
        }
    }

    fn ids(&self, log: LogId) -> (SessionId, SegmentId) {
        self.logs.read().unwrap_or_else(|e| e.into_inner())[log]
    }

    fn replay<T: DeserializeOwned>(&self, log: LogId, f: &mut dyn FnMut(T)) -> u64 {
        let (session, segment) = self.ids(log);
        let mut n = 0;
        self.store
            .replay(session, segment, &ReplayOptions::strict(), |_, value: T| {
                f(value);
                n += 1;
                Ok(())
            })
            .expect("annals replay");
        n
    }
}

impl Contender for AnnalsStore {
    fn name(&self) -> &'static str {
        match self.compression {
            BlobCompression::None => "annals",
            _ => "annals_zstd",
        }
    }

    fn guarantee(&self) -> Guarantee {
        self.mode.guarantee()
    }

    fn config(&self) -> String {
        let mode = match self.mode {
            Mode::Buffered => "FsStore, Durability::Buffered",
            Mode::Durable => "FsStore, Durability::Sync (fdatasync per append)",
        };
        match self.compression {
            BlobCompression::None => format!("{mode} (default options)"),
            _ => format!("{mode}, blobs compressed (zstd level 3)"),
        }
    }

    fn new_log(&self) -> LogId {
        let ids = (SessionId::new(), SegmentId::new());
        self.store
            .create_segment(ids.0, ids.1, &[])
            .expect("create annals segment");
        let mut logs = self.logs.write().unwrap_or_else(|e| e.into_inner());
        logs.push(ids);
        logs.len() - 1
    }

    fn append(&self, log: LogId, _seq: u64, entry: &RawEntry) {
        self.append_next(log, entry);
    }

    fn append_next(&self, log: LogId, entry: &RawEntry) {
        let (session, segment) = self.ids(log);
        self.store
            .append_raw(session, segment, entry)
            .expect("annals append");
    }

    fn append_batch(&self, log: LogId, _seq: u64, entries: &[RawEntry]) {
        let (session, segment) = self.ids(log);
        self.store
            .append_batch_raw(session, segment, entries)
            .expect("annals batch");
    }

    fn replay_messages(&self, log: LogId, f: &mut dyn FnMut(Message)) -> u64 {
        self.replay(log, f)
    }

    fn replay_events(&self, log: LogId, f: &mut dyn FnMut(Event)) -> u64 {
        self.replay(log, f)
    }

    fn count(&self, log: LogId) -> Option<u64> {
        let (session, segment) = self.ids(log);
        Some(
            self.store
                .entry_count(session, segment)
                .expect("annals count"),
        )
    }

    fn settle(&self) {}

    fn dir(&self) -> &Path {
        &self.dir
    }
}
