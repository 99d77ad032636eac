//! The peers, each in its best honest configuration: the settings its authors recommend for
//! the guarantee in question, nothing turned off that the guarantee needs, nothing turned
//! down. Every peer stores one entry per record under a 24-byte key (the log's 16-byte id and
//! the big-endian sequence number, where the store has keys) and hands back the entry's JSON
//! text, which the caller deserializes with the same `serde_json` call as for annals.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use annals::{RawEntry, SegmentId, SessionId};
use annals_bench::entries::Message;
use annals_bench::realshape::Event;
use annals_bench::sqlite::{SqlDurability, SqliteStore};
use serde::de::DeserializeOwned;

use crate::{Contender, Guarantee, LogId, Mode, Opener};

/// The peers with their openers.
#[must_use]
pub fn all() -> Vec<(&'static str, Opener)> {
    vec![
        ("sqlite", open_sqlite),
        ("fjall", open_fjall),
        ("redb", open_redb),
        ("okaywal", open_okaywal),
    ]
}

fn open_sqlite(dir: &Path, mode: Mode) -> Option<Box<dyn Contender>> {
    Some(Box::new(Sqlite::open(dir, mode)))
}

fn open_fjall(dir: &Path, mode: Mode) -> Option<Box<dyn Contender>> {
    Some(Box::new(Fjall::open(dir, mode)))
}

fn open_redb(dir: &Path, mode: Mode) -> Option<Box<dyn Contender>> {
    Some(Box::new(Redb::open(dir, mode)))
}

fn open_okaywal(dir: &Path, mode: Mode) -> Option<Box<dyn Contender>> {
    match mode {
        // Every okaywal commit is fsynced: it has no mode that only survives a process crash.
        Mode::Buffered => None,
        Mode::Durable => Some(Box::new(Okaywal::open(dir))),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn key(log: u128, seq: u64) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..16].copy_from_slice(&log.to_be_bytes());
    k[16..].copy_from_slice(&seq.to_be_bytes());
    k
}

fn log_id() -> u128 {
    SegmentId::new().as_uuid().as_u128()
}

fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> T {
    serde_json::from_slice(bytes).expect("a stored entry deserializes")
}

/// SQLite through rusqlite (bundled), WAL mode, one row per entry in
/// `entries(session, segment, seq, body TEXT)` with the primary key on `(session, segment,
/// seq)`, cached prepared statements; `synchronous=NORMAL` (survives a process crash; WAL
/// fsynced at checkpoints only) or `FULL` (WAL fsynced at every commit). One connection, shared
/// by the process's threads behind a mutex: SQLite has one writer at a time anyway, and a
/// connection per thread makes writers wait in SQLite's busy handler, which sleeps (measured
/// with 8 durable threads: 7.0–7.6 ms per append of the group that way, 4.0–4.6 ms with one
/// shared connection, on the same shared disk half an hour apart).
pub struct Sqlite {
    dir: PathBuf,
    mode: Mode,
    conn: Mutex<SqliteStore>,
    logs: RwLock<Vec<(SessionId, SegmentId)>>,
}

impl Sqlite {
    fn open(dir: &Path, mode: Mode) -> Self {
        let durability = match mode {
            Mode::Buffered => SqlDurability::Buffered,
            Mode::Durable => SqlDurability::Sync,
        };
        let conn = SqliteStore::open(&dir.join("entries.sqlite"), durability).expect("open sqlite");
        Self {
            dir: dir.to_path_buf(),
            mode,
            conn: Mutex::new(conn),
            logs: RwLock::default(),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut SqliteStore) -> R) -> R {
        f(&mut lock(&self.conn))
    }

    fn ids(&self, log: LogId) -> (SessionId, SegmentId) {
        self.logs.read().unwrap_or_else(PoisonError::into_inner)[log]
    }

    fn replay<T: DeserializeOwned>(&self, log: LogId, f: &mut dyn FnMut(T)) -> u64 {
        let (session, segment) = self.ids(log);
        self.with(|c| c.replay(session, segment, f).expect("sqlite replay"))
    }
}

impl Contender for Sqlite {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn guarantee(&self) -> Guarantee {
        self.mode.guarantee()
    }

    fn config(&self) -> String {
        match self.mode {
            Mode::Buffered => "WAL, synchronous=NORMAL".into(),
            Mode::Durable => "WAL, synchronous=FULL".into(),
        }
    }

    fn new_log(&self) -> LogId {
        let mut logs = self.logs.write().unwrap_or_else(PoisonError::into_inner);
        logs.push((SessionId::new(), SegmentId::new()));
        logs.len() - 1
    }

    fn append(&self, log: LogId, seq: u64, entry: &RawEntry) {
        let (session, segment) = self.ids(log);
        self.with(|c| c.append(session, segment, seq, entry.as_str()))
            .expect("sqlite insert");
    }

    fn append_next(&self, log: LogId, entry: &RawEntry) {
        let (session, segment) = self.ids(log);
        self.with(|c| c.append_next(session, segment, entry.as_str()))
            .expect("sqlite insert");
    }

    fn append_batch(&self, log: LogId, seq: u64, entries: &[RawEntry]) {
        let (session, segment) = self.ids(log);
        self.with(|c| c.append_batch(session, segment, seq, entries.iter().map(RawEntry::as_str)))
            .expect("sqlite transaction");
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
            self.with(|c| c.count(session, segment))
                .expect("sqlite count"),
        )
    }

    fn settle(&self) {
        self.with(|c| c.checkpoint()).expect("sqlite checkpoint");
    }

    fn dir(&self) -> &Path {
        &self.dir
    }
}

/// fjall 3 with default options (LZ4 block compression, background flush and compaction
/// threads), one keyspace, key = log id + sequence number. Every write goes to the journal
/// and is flushed to the OS at once (fjall's default `PersistMode::Buffer`: survives a process
/// crash); durable = `Database::persist(PersistMode::SyncData)` after the write, fjall's
/// `fdatasync` of its journal. A batch is a `WriteBatch`, committed atomically.
pub struct Fjall {
    dir: PathBuf,
    mode: Mode,
    db: fjall::Database,
    entries: fjall::Keyspace,
    logs: RwLock<Vec<(u128, Arc<Mutex<u64>>)>>,
}

impl Fjall {
    fn open(dir: &Path, mode: Mode) -> Self {
        let db = fjall::Database::builder(dir.join("fjall"))
            .open()
            .expect("open fjall");
        let entries = db
            .keyspace("entries", fjall::KeyspaceCreateOptions::default)
            .expect("open fjall keyspace");
        Self {
            dir: dir.to_path_buf(),
            mode,
            db,
            entries,
            logs: RwLock::default(),
        }
    }

    fn log(&self, log: LogId) -> (u128, Arc<Mutex<u64>>) {
        self.logs.read().unwrap_or_else(PoisonError::into_inner)[log].clone()
    }

    fn persist(&self) {
        if self.mode == Mode::Durable {
            self.db
                .persist(fjall::PersistMode::SyncData)
                .expect("fjall persist");
        }
    }

    fn replay<T: DeserializeOwned>(&self, log: LogId, f: &mut dyn FnMut(T)) -> u64 {
        let (id, _) = self.log(log);
        let mut n = 0;
        for item in self.entries.prefix(id.to_be_bytes()) {
            let (_, value) = item.into_inner().expect("fjall read");
            f(from_json(&value));
            n += 1;
        }
        n
    }
}

impl Contender for Fjall {
    fn name(&self) -> &'static str {
        "fjall"
    }

    fn guarantee(&self) -> Guarantee {
        self.mode.guarantee()
    }

    fn config(&self) -> String {
        match self.mode {
            Mode::Buffered => "defaults (journal flushed to the OS per write)".into(),
            Mode::Durable => "defaults + persist(SyncData) per append".into(),
        }
    }

    fn new_log(&self) -> LogId {
        let mut logs = self.logs.write().unwrap_or_else(PoisonError::into_inner);
        logs.push((log_id(), Arc::default()));
        logs.len() - 1
    }

    fn append(&self, log: LogId, seq: u64, entry: &RawEntry) {
        let (id, _) = self.log(log);
        self.entries
            .insert(key(id, seq), entry.as_str().as_bytes())
            .expect("fjall insert");
        self.persist();
    }

    fn append_next(&self, log: LogId, entry: &RawEntry) {
        let (id, next) = self.log(log);
        {
            // The sequence number and the insert under one lock; the sync outside it, so that
            // one journal fsync can cover the writes of several threads.
            let mut next = lock(&next);
            self.entries
                .insert(key(id, *next), entry.as_str().as_bytes())
                .expect("fjall insert");
            *next += 1;
        }
        self.persist();
    }

    fn append_batch(&self, log: LogId, seq: u64, entries: &[RawEntry]) {
        let (id, _) = self.log(log);
        let mut batch = self.db.batch();
        for (i, e) in entries.iter().enumerate() {
            batch.insert(
                &self.entries,
                key(id, seq + i as u64),
                e.as_str().as_bytes(),
            );
        }
        batch.commit().expect("fjall batch");
        self.persist();
    }

    fn replay_messages(&self, log: LogId, f: &mut dyn FnMut(Message)) -> u64 {
        self.replay(log, f)
    }

    fn replay_events(&self, log: LogId, f: &mut dyn FnMut(Event)) -> u64 {
        self.replay(log, f)
    }

    fn count(&self, log: LogId) -> Option<u64> {
        let (id, _) = self.log(log);
        let last = self.entries.prefix(id.to_be_bytes()).next_back();
        Some(last.map_or(0, |g| {
            let k = g.key().expect("fjall read");
            u64::from_be_bytes(k[16..24].try_into().expect("24-byte keys")) + 1
        }))
    }

    fn settle(&self) {
        self.db
            .persist(fjall::PersistMode::SyncAll)
            .expect("fjall persist");
    }

    fn dir(&self) -> &Path {
        &self.dir
    }
}

const REDB_TABLE: redb::TableDefinition<'static, (u128, u64), &'static str> =
    redb::TableDefinition::new("entries");

/// redb 4 with default options, one table keyed by `(log id, seq)` holding the JSON text, one
/// write transaction per append or batch. Durable = `Durability::Immediate` (redb's default:
/// fsync at commit). redb's only weaker mode, `Durability::None`, keeps the commit in redb's
/// own memory until a later durable commit: it does not survive a process crash, so redb's
/// buffered numbers are shown for reference and never count as a same-guarantee peer.
pub struct Redb {
    dir: PathBuf,
    mode: Mode,
    db: redb::Database,
    logs: RwLock<Vec<u128>>,
}

impl Redb {
    fn open(dir: &Path, mode: Mode) -> Self {
        let db = redb::Database::create(dir.join("entries.redb")).expect("open redb");
        let peer = Self {
            dir: dir.to_path_buf(),
            mode,
            db,
            logs: RwLock::default(),
        };
        peer.write(|t| {
            let _ = t;
        });
        peer
    }

    fn id(&self, log: LogId) -> u128 {
        self.logs.read().unwrap_or_else(PoisonError::into_inner)[log]
    }

    fn write(&self, f: impl FnOnce(&mut redb::Table<'_, (u128, u64), &'static str>)) {
        let mut txn = self.db.begin_write().expect("redb begin");
        txn.set_durability(match self.mode {
            Mode::Buffered => redb::Durability::None,
            Mode::Durable => redb::Durability::Immediate,
        })
        .expect("redb durability");
        {
            let mut table = txn.open_table(REDB_TABLE).expect("redb table");
            f(&mut table);
        }
        txn.commit().expect("redb commit");
    }

    fn replay<T: DeserializeOwned>(&self, log: LogId, f: &mut dyn FnMut(T)) -> u64 {
        use redb::ReadableDatabase;
        let id = self.id(log);
        let txn = self.db.begin_read().expect("redb read");
        let table = txn.open_table(REDB_TABLE).expect("redb table");
        let mut n = 0;
        for item in table.range((id, 0)..=(id, u64::MAX)).expect("redb range") {
            let (_, value) = item.expect("redb read");
            f(serde_json::from_str(value.value()).expect("a stored entry deserializes"));
            n += 1;
        }
        n
    }
}

impl Contender for Redb {
    fn name(&self) -> &'static str {
        "redb"
    }

    fn guarantee(&self) -> Guarantee {
        match self.mode {
            Mode::Buffered => Guarantee::Nothing,
            Mode::Durable => Guarantee::PowerCut,
        }
    }

    fn config(&self) -> String {
        match self.mode {
            Mode::Buffered => "defaults, Durability::None".into(),
            Mode::Durable => "defaults, Durability::Immediate".into(),
        }
    }

    fn new_log(&self) -> LogId {
        let mut logs = self.logs.write().unwrap_or_else(PoisonError::into_inner);
        logs.push(log_id());
        logs.len() - 1
    }

    fn append(&self, log: LogId, seq: u64, entry: &RawEntry) {
        let id = self.id(log);
        self.write(|t| {
            t.insert((id, seq), entry.as_str()).expect("redb insert");
        });
    }

    fn append_next(&self, log: LogId, entry: &RawEntry) {
        use redb::ReadableTable;
        let id = self.id(log);
        // Write transactions are serialized: the last key read inside one is still the last.
        self.write(|t| {
            let next = t
                .range((id, 0)..=(id, u64::MAX))
                .expect("redb range")
                .next_back()
                .map_or(0, |item| item.expect("redb read").0.value().1 + 1);
            t.insert((id, next), entry.as_str()).expect("redb insert");
        });
    }

    fn append_batch(&self, log: LogId, seq: u64, entries: &[RawEntry]) {
        let id = self.id(log);
        self.write(|t| {
            for (i, e) in entries.iter().enumerate() {
                t.insert((id, seq + i as u64), e.as_str())
                    .expect("redb insert");
            }
        });
    }

    fn replay_messages(&self, log: LogId, f: &mut dyn FnMut(Message)) -> u64 {
        self.replay(log, f)
    }

    fn replay_events(&self, log: LogId, f: &mut dyn FnMut(Event)) -> u64 {
        self.replay(log, f)
    }

    fn count(&self, log: LogId) -> Option<u64> {
        use redb::ReadableDatabase;
        let id = self.id(log);
        let txn = self.db.begin_read().expect("redb read");
        let table = txn.open_table(REDB_TABLE).expect("redb table");
        let last = table
            .range((id, 0)..=(id, u64::MAX))
            .expect("redb range")
            .next_back();
        Some(last.map_or(0, |item| item.expect("redb read").0.value().1 + 1))
    }

    fn settle(&self) {
        if self.mode == Mode::Buffered {
            // One durable commit makes the non-durable ones before it durable.
            let mut txn = self.db.begin_write().expect("redb begin");
            txn.set_durability(redb::Durability::Immediate)
                .expect("redb durability");
            txn.commit().expect("redb commit");
        }
    }

    fn dir(&self) -> &Path {
        &self.dir
    }
}

/// okaywal 0.3, one write-ahead log for the whole store with default options (1 MiB
/// preallocated segment files, 16 KiB buffers) except checkpointing, which is off
/// (`checkpoint_after_bytes = u64::MAX`): okaywal hands checkpointed entries to the
/// application to keep elsewhere, and here the log is the only copy. An entry is one okaywal
/// entry with one chunk per record (log id, seq, JSON); `commit` always waits for
/// `fdatasync`, and okaywal lets concurrent committers share one (group commit). Reading is
/// okaywal's recovery (the only public way to read a log back without its positions), so a
/// replay reopens the log.
pub struct Okaywal {
    dir: PathBuf,
    wal: Mutex<Option<okaywal::WriteAheadLog>>,
    logs: RwLock<Vec<(u128, Arc<AtomicU64>)>>,
}

impl Okaywal {
    fn open(dir: &Path) -> Self {
        let peer = Self {
            dir: dir.to_path_buf(),
            wal: Mutex::new(None),
            logs: RwLock::default(),
        };
        let wal = peer.recover(Replayer::<Message> {
            log: 0,
            out: Arc::default(),
        });
        *lock(&peer.wal) = Some(wal);
        peer
    }

    fn config(&self) -> okaywal::Configuration {
        okaywal::Configuration::default_for(self.dir.join("okaywal"))
            .checkpoint_after_bytes(u64::MAX)
    }

    fn recover<M: okaywal::LogManager>(&self, manager: M) -> okaywal::WriteAheadLog {
        self.config().open(manager).expect("open okaywal")
    }

    fn wal(&self) -> okaywal::WriteAheadLog {
        lock(&self.wal)
            .clone()
            .expect("the okaywal log is open (it is closed only by settle)")
    }

    fn write(&self, log: LogId, first: Option<u64>, entries: &[RawEntry]) {
        let (id, next) = self.logs.read().unwrap_or_else(PoisonError::into_inner)[log].clone();
        let wal = self.wal();
        let mut writer = wal.begin_entry().expect("okaywal begin");
        // Taken while the entry holds the log's file: sequence order is log order.
        let seq = first.unwrap_or_else(|| next.fetch_add(entries.len() as u64, Ordering::Relaxed));
        let mut record = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            record.clear();
            record.extend_from_slice(&key(id, seq + i as u64));
            record.extend_from_slice(e.as_str().as_bytes());
            writer.write_chunk(&record).expect("okaywal write");
        }
        writer.commit().expect("okaywal commit");
    }

    fn replay<T: DeserializeOwned + fmt::Debug + Send + 'static>(
        &self,
        log: LogId,
        f: &mut dyn FnMut(T),
    ) -> u64 {
        let (id, _) = self.logs.read().unwrap_or_else(PoisonError::into_inner)[log].clone();
        // The writer must be closed for okaywal to recover the log; it is reopened after.
        let open = lock(&self.wal).take();
        if let Some(wal) = open {
            wal.shutdown().expect("okaywal shutdown");
        }
        let out = Arc::new(Mutex::new(Vec::new()));
        let wal = self.recover(Replayer::<T> {
            log: id,
            out: Arc::clone(&out),
        });
        let entries = std::mem::take(&mut *lock(&out));
        let n = entries.len() as u64;
        entries.into_iter().for_each(f);
        *lock(&self.wal) = Some(wal);
        n
    }
}

/// okaywal's recovery callback: deserializes each record of one log as it is read.
struct Replayer<T> {
    log: u128,
    out: Arc<Mutex<Vec<T>>>,
}

impl<T> fmt::Debug for Replayer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Replayer").field("log", &self.log).finish()
    }
}

impl<T: DeserializeOwned + Send + 'static> okaywal::LogManager for Replayer<T> {
    fn recover(&mut self, entry: &mut okaywal::Entry<'_>) -> std::io::Result<()> {
        let prefix = self.log.to_be_bytes();
        if let Some(chunks) = entry.read_all_chunks()? {
            let mut out = lock(&self.out);
            for chunk in chunks {
                if chunk.len() >= 24 && chunk[..16] == prefix {
                    out.push(from_json(&chunk[24..]));
                }
            }
        }
        Ok(())
    }

    fn checkpoint_to(
        &mut self,
        _last_checkpointed_id: okaywal::EntryId,
        _checkpointed_entries: &mut okaywal::SegmentReader,
        _wal: &okaywal::WriteAheadLog,
    ) -> std::io::Result<()> {
        Err(std::io::Error::other(
            "checkpointing is off: the log is the only copy of its entries",
        ))
    }
}

impl Contender for Okaywal {
    fn name(&self) -> &'static str {
        "okaywal"
    }

    fn guarantee(&self) -> Guarantee {
        Guarantee::PowerCut
    }

    fn config(&self) -> String {
        "defaults, checkpointing off; commit = fdatasync (shared by concurrent committers)".into()
    }

    fn new_log(&self) -> LogId {
        let mut logs = self.logs.write().unwrap_or_else(PoisonError::into_inner);
        logs.push((log_id(), Arc::default()));
        logs.len() - 1
    }

    fn append(&self, log: LogId, seq: u64, entry: &RawEntry) {
        self.write(log, Some(seq), std::slice::from_ref(entry));
    }

    fn append_next(&self, log: LogId, entry: &RawEntry) {
        self.write(log, None, std::slice::from_ref(entry));
    }

    fn append_batch(&self, log: LogId, seq: u64, entries: &[RawEntry]) {
        self.write(log, Some(seq), entries);
    }

    fn replay_messages(&self, log: LogId, f: &mut dyn FnMut(Message)) -> u64 {
        self.replay(log, f)
    }

    fn replay_events(&self, log: LogId, f: &mut dyn FnMut(Event)) -> u64 {
        self.replay(log, f)
    }

    fn count(&self, _log: LogId) -> Option<u64> {
        // A write-ahead log has no entry count short of reading it all.
        None
    }

    fn settle(&self) {}

    fn dir(&self) -> &Path {
        &self.dir
    }
}
