//! The contenders as append loops: each keeps one log open and appends entry `i` (or batch
//! `i`) of the corpus, the way the benchmarks drive them. Shared by the criterion benches and
//! the interleaved sync comparison.

use annals::{
    Durability, FsOptions, FsStore, Lease, LeaseOptions, RawEntry, SegmentId, SessionId, Store,
    StoreExt,
};

use crate::entries::{Corpus, Variant, CORPUS_LEN};
use crate::naive::{Floor, NaiveStore};
use crate::setup;
use crate::sqlite::{SqlDurability, SqliteStore};

/// Everything one contender needs to append entry after entry.
pub trait Log {
    /// Appends entry (or batch) number `i`.
    fn append(&mut self, i: u64);
    /// Starts over in a fresh file (untimed).
    fn rotate(&mut self);
}

/// annals: one store, one segment, a new session at each rotation.
pub struct AnnalsLog {
    _dir: tempfile::TempDir,
    store: FsStore,
    session: SessionId,
    segment: SegmentId,
    corpus: &'static Corpus,
    batch: usize,
    typed: bool,
    /// Appends go through this writer lease on the segment, when there is one.
    lease: Option<Box<dyn Lease>>,
}

impl AnnalsLog {
    /// As [`AnnalsLog::new`] (raw entries), appending through a writer lease on the segment
    /// (`Store::lease`), taken again after each rotation: no per-append lock or `statx`.
    #[must_use]
    pub fn leased(variant: Variant, sync: bool, batch: usize) -> Self {
        let mut log = Self::new(variant, sync, batch, false);
        log.lease = Some(log.take_lease());
        log
    }

    fn take_lease(&self) -> Box<dyn Lease> {
        self.store
            .lease(self.session, self.segment, &LeaseOptions::default())
            .expect("lease the segment")
    }

    /// A store in a fresh directory with one empty segment. `batch` entries per append (one
    /// `append_batch_raw` when above 1); `typed` appends [`crate::entries::Message`]s through
    /// `StoreExt::append`, serialization included.
    #[must_use]
    pub fn new(variant: Variant, sync: bool, batch: usize, typed: bool) -> Self {
        let dir = setup::fresh_dir("annals-");
        let store = FsStore::open_with(
            dir.path(),
            FsOptions {
                durability: if sync {
                    Durability::Sync
                } else {
                    Durability::Buffered
                },
                ..FsOptions::default()
            },
        )
        .expect("open store");
        let log = Self {
            _dir: dir,
            store,
            session: SessionId::new(),
            segment: SegmentId::new(),
            corpus: Corpus::get(variant),
            batch,
            typed,
            lease: None,
        };
        log.store
            .create_segment(log.session, log.segment, &[])
            .expect("create segment");
        log
    }
}

impl Log for AnnalsLog {
    fn append(&mut self, i: u64) {
        if let Some(lease) = &self.lease {
            if self.batch == 1 {
                lease.append_raw(self.corpus.raw_at(i))
            } else {
                lease.append_batch_raw(batch_of(self.corpus, i, self.batch))
            }
            .expect("annals lease append");
            return;
        }
        if self.batch == 1 {
            if self.typed {
                let message = &self.corpus.messages[(i % CORPUS_LEN as u64) as usize];
                self.store.append(self.session, self.segment, message)
            } else {
                self.store
                    .append_raw(self.session, self.segment, self.corpus.raw_at(i))
            }
        } else {
            self.store.append_batch_raw(
                self.session,
                self.segment,
                batch_of(self.corpus, i, self.batch),
            )
        }
        .expect("annals append");
    }

    fn rotate(&mut self) {
        let leased = self.lease.take().is_some();
        let old = self.session;
        self.session = SessionId::new();
        self.segment = SegmentId::new();
        self.store
            .create_segment(self.session, self.segment, &[])
            .expect("create segment");
        self.store.delete_session(old).expect("delete old session");
        if leased {
            self.lease = Some(self.take_lease());
        }
    }
}

/// Entries `[k*batch, (k+1)*batch)` of the corpus for batch number `i`.
#[must_use]
pub fn batch_of(corpus: &Corpus, i: u64, batch: usize) -> &[RawEntry] {
    let batches = (CORPUS_LEN / batch) as u64;
    let start = (i % batches) as usize * batch;
    &corpus.raw[start..start + batch]
}

/// Concatenated lines of each batch, pre-built: the floor writes a batch as one buffer.
fn joined_batches(lines: &[Vec<u8>], batch: usize) -> Vec<Vec<u8>> {
    lines.chunks_exact(batch).map(|c| c.concat()).collect()
}

/// The naive JSONL store, a new session directory at each rotation.
pub struct NaiveLog {
    dir: tempfile::TempDir,
    store: NaiveStore,
    session: String,
    segment: String,
    corpus: &'static Corpus,
    batch: usize,
}

impl NaiveLog {
    /// A log in a fresh directory; `batch` entries per append, joined into one buffer at each
    /// append (as annals gets them: one entry's JSON each) and written at once.
    #[must_use]
    pub fn new(variant: Variant, sync: bool, batch: usize) -> Self {
        let dir = setup::fresh_dir("naive-");
        let corpus = Corpus::get(variant);
        Self {
            store: NaiveStore::new(dir.path(), sync),
            dir,
            session: SessionId::new().to_string(),
            segment: SegmentId::new().to_string(),
            corpus,
            batch,
        }
    }
}

impl Log for NaiveLog {
    fn append(&mut self, i: u64) {
        if self.batch == 1 {
            self.store
                .append(&self.session, &self.segment, self.corpus.line_at(i))
                .expect("naive append");
            return;
        }
        let entries = batch_of(self.corpus, i, self.batch);
        let mut joined = Vec::with_capacity(entries.iter().map(|e| e.len() + 1).sum());
        for e in entries {
            joined.extend_from_slice(e.as_str().as_bytes());
            joined.push(b'\n');
        }
        self.store
            .append(&self.session, &self.segment, &joined)
            .expect("naive append");
    }

    fn rotate(&mut self) {
        std::fs::remove_dir_all(self.dir.path().join(&self.session)).expect("remove old session");
        self.session = SessionId::new().to_string();
    }
}

/// The floor: one `O_APPEND` file kept open, a new file at each rotation.
pub struct FloorLog {
    dir: tempfile::TempDir,
    file: u64,
    floor: Floor,
    sync: bool,
    corpus: &'static Corpus,
    batches: Option<Vec<Vec<u8>>>,
}

impl FloorLog {
    /// A log in a fresh directory; `batch` entries per append, written as one buffer.
    #[must_use]
    pub fn new(variant: Variant, sync: bool, batch: usize) -> Self {
        let dir = setup::fresh_dir("floor-");
        let corpus = Corpus::get(variant);
        Self {
            floor: Floor::open(&dir.path().join("0.jsonl"), sync).expect("open floor file"),
            dir,
            file: 0,
            sync,
            corpus,
            batches: (batch > 1).then(|| joined_batches(&corpus.framed, batch)),
        }
    }
}

impl Log for FloorLog {
    fn append(&mut self, i: u64) {
        let bytes = match &self.batches {
            Some(b) => &b[(i % b.len() as u64) as usize],
            None => self.corpus.framed_at(i),
        };
        self.floor.append(bytes).expect("floor write");
    }

    fn rotate(&mut self) {
        let old = self.dir.path().join(format!("{}.jsonl", self.file));
        self.file += 1;
        self.floor = Floor::open(
            &self.dir.path().join(format!("{}.jsonl", self.file)),
            self.sync,
        )
        .expect("open floor file");
        std::fs::remove_file(old).expect("remove old floor file");
    }
}

/// SQLite, a new database file at each rotation.
pub struct SqliteLog {
    dir: tempfile::TempDir,
    file: u64,
    db: SqliteStore,
    durability: SqlDurability,
    session: SessionId,
    segment: SegmentId,
    seq: u64,
    corpus: &'static Corpus,
    batch: usize,
}

impl SqliteLog {
    /// A log in a fresh directory; `batch` entries per append, written as one buffer.
    #[must_use]
    pub fn new(variant: Variant, sync: bool, batch: usize) -> Self {
        let dir = setup::fresh_dir("sqlite-");
        let durability = if sync {
            SqlDurability::Sync
        } else {
            SqlDurability::Buffered
        };
        Self {
            db: SqliteStore::open(&dir.path().join("0.sqlite"), durability).expect("open sqlite"),
            dir,
            file: 0,
            durability,
            session: SessionId::new(),
            segment: SegmentId::new(),
            seq: 0,
            corpus: Corpus::get(variant),
            batch,
        }
    }
}

impl Log for SqliteLog {
    fn append(&mut self, i: u64) {
        if self.batch == 1 {
            self.db
                .append(self.session, self.segment, self.seq, self.corpus.json_at(i))
                .expect("sqlite insert");
        } else {
            let entries = batch_of(self.corpus, i, self.batch);
            self.db
                .append_batch(
                    self.session,
                    self.segment,
                    self.seq,
                    entries.iter().map(RawEntry::as_str),
                )
                .expect("sqlite transaction");
        }
        self.seq += self.batch as u64;
    }

    fn rotate(&mut self) {
        let old = self.dir.path().join(format!("{}.sqlite", self.file));
        self.file += 1;
        self.db = SqliteStore::open(
            &self.dir.path().join(format!("{}.sqlite", self.file)),
            self.durability,
        )
        .expect("open sqlite");
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", old.display()));
        }
        self.seq = 0;
    }
}

/// The contenders of the append benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contender {
    /// annals ([`AnnalsLog`], raw entries).
    Annals,
    /// The naive JSONL store.
    Naive,
    /// Raw `write(2)` (+ `fdatasync`).
    Floor,
    /// SQLite at matched durability.
    Sqlite,
}

impl Contender {
    /// All four, annals first.
    pub const ALL: [Contender; 4] = [
        Contender::Annals,
        Contender::Naive,
        Contender::Floor,
        Contender::Sqlite,
    ];

    /// Name used in benchmark ids.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Contender::Annals => "annals",
            Contender::Naive => "naive",
            Contender::Floor => "floor",
            Contender::Sqlite => "sqlite",
        }
    }

    /// A fresh log of this contender.
    #[must_use]
    pub fn open(self, variant: Variant, sync: bool, batch: usize) -> Box<dyn Log> {
        match self {
            Contender::Annals => Box::new(AnnalsLog::new(variant, sync, batch, false)),
            Contender::Naive => Box::new(NaiveLog::new(variant, sync, batch)),
            Contender::Floor => Box::new(FloorLog::new(variant, sync, batch)),
            Contender::Sqlite => Box::new(SqliteLog::new(variant, sync, batch)),
        }
    }
}

/// A worker's turn made durable at its end: `turn` entries appended `Buffered` one by one,
/// then one `Store::sync`. One [`Log::append`] is one turn.
pub struct TurnSyncLog {
    inner: AnnalsLog,
    turn: usize,
}

impl TurnSyncLog {
    /// A buffered store in a fresh directory with one empty segment.
    #[must_use]
    pub fn new(variant: Variant, turn: usize) -> Self {
        Self {
            inner: AnnalsLog::new(variant, false, 1, false),
            turn,
        }
    }
}

impl TurnSyncLog {
    /// The same turn through a writer lease: `turn` lease appends, then `Lease::sync`.
    #[must_use]
    pub fn leased(variant: Variant, turn: usize) -> Self {
        Self {
            inner: AnnalsLog::leased(variant, false, 1),
            turn,
        }
    }
}

impl Log for TurnSyncLog {
    fn append(&mut self, i: u64) {
        let log = &self.inner;
        if let Some(lease) = &log.lease {
            for e in batch_of(log.corpus, i, self.turn) {
                lease.append_raw(e).expect("annals lease append");
            }
            lease.sync().expect("annals lease sync");
            return;
        }
        for e in batch_of(log.corpus, i, self.turn) {
            log.store
                .append_raw(log.session, log.segment, e)
                .expect("annals append");
        }
        log.store
            .sync(log.session, log.segment)
            .expect("annals sync");
    }

    fn rotate(&mut self) {
        self.inner.rotate();
    }
}

/// Creating a session with its first entry: annals `create_segment(session, segment, &[entry])`
/// (crash-atomic: temp file, fsync, link, directory fsyncs). One [`Log::append`] is one new
/// session.
pub struct CreateLog {
    _dir: tempfile::TempDir,
    store: FsStore,
    corpus: &'static Corpus,
}

impl CreateLog {
    /// A store in a fresh directory.
    #[must_use]
    pub fn new(variant: Variant) -> Self {
        let dir = setup::fresh_dir("create-annals-");
        Self {
            store: FsStore::open(dir.path()).expect("open store"),
            _dir: dir,
            corpus: Corpus::get(variant),
        }
    }
}

impl Log for CreateLog {
    fn append(&mut self, i: u64) {
        self.store
            .create_segment(
                SessionId::new(),
                SegmentId::new(),
                std::slice::from_ref(self.corpus.raw_at(i)),
            )
            .expect("create session");
    }

    fn rotate(&mut self) {
        *self = Self::new(self.corpus.variant);
    }
}

/// The naive durable create that issue 13 measures against: `mkdir` the session directory,
/// create the file, write the entry's line, `fdatasync` it, fsync the session directory and
/// the root.
pub struct NaiveCreateLog {
    dir: tempfile::TempDir,
    corpus: &'static Corpus,
}

impl NaiveCreateLog {
    /// A root in a fresh directory.
    #[must_use]
    pub fn new(variant: Variant) -> Self {
        Self {
            dir: setup::fresh_dir("create-naive-"),
            corpus: Corpus::get(variant),
        }
    }
}

impl Log for NaiveCreateLog {
    fn append(&mut self, i: u64) {
        let session = self.dir.path().join(SessionId::new().to_string());
        std::fs::create_dir(&session).expect("mkdir");
        let mut file = std::fs::File::create(session.join(format!("{}.jsonl", SegmentId::new())))
            .expect("create");
        std::io::Write::write_all(&mut file, self.corpus.framed_at(i)).expect("write");
        file.sync_data().expect("fdatasync");
        for dir in [&session, &self.dir.path().to_path_buf()] {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .expect("fsync directory");
        }
    }

    fn rotate(&mut self) {
        *self = Self::new(self.corpus.variant);
    }
}
