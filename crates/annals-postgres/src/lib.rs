//! # annals-postgres
//!
//! A PostgreSQL backend for [annals]: the same [`Store`] trait as the filesystem store, for a
//! fleet of agent workers on many machines sharing one database. It passes the same conformance
//! suite (`annals::testing`).
//!
//! ```no_run
//! use annals::{SegmentId, SessionId, Store, StoreExt};
//! use annals_postgres::{PgOptions, PgStore};
//!
//! # fn main() -> annals::Result<()> {
//! let store = PgStore::open_with(
//!     PgOptions::new("postgresql://agent@db.internal/agents").schema("annals"),
//! )?;
//! let (session, segment) = (SessionId::new(), SegmentId::new());
//! store.create::<serde_json::Value>(session, segment, &[])?;
//! store.append(session, segment, &serde_json::json!({"role": "user", "text": "hi"}))?;
//! # Ok(()) }
//! ```
//!
//! The concurrent-writer detector works as on the filesystem, across machines:
//!
//! ```no_run
//! use annals::{SegmentWriter, SessionId, SegmentId, StoreExt};
//! use annals_postgres::{PgOptions, PgStore};
//!
//! fn main() -> annals::Result<()> {
//!     // URL plus the usual PG* environment; the schema is created and versioned by the store.
//!     let store = PgStore::open_with(PgOptions::new("postgresql://agent@db.internal/agents").schema("annals"))?;
//!     let (session, segment) = (SessionId::new(), SegmentId::new());
//!     store.create::<serde_json::Value>(session, segment, &[])?;
//!     let mut writer = SegmentWriter::open(&store, session, segment)?; // exact across machines
//!     writer.append(&serde_json::json!({"role": "user", "text": "hi"}))?;
//!     Ok(())
//! }
//! ```
//!
//! - **Concurrency is the database's.** An append is one statement — one round trip, one
//!   transaction — that checks and advances the segment's tip (entry count and generation) and
//!   inserts the entries; the primary key `(segment, seq)` makes a duplicate sequence number
//!   impossible. `append_if` and [`SegmentWriter`](annals::SegmentWriter) are exact across
//!   machines. No advisory or table locks on the hot path.
//! - **Entries keep their exact JSON text** (a `text` column, not `jsonb`), with a CRC-32 per
//!   entry that replay and verify check. Entries too long for a line of the filesystem store are
//!   kept as content-addressed blobs exactly as the other backends decide.
//! - **The schema is the backend's**: created in [`PgOptions::schema`] on first open, versioned,
//!   migrated by plain SQL files kept in this crate; a schema newer than this build is refused.
//! - **Sync API.** Calls block on the network. Do not call a `PgStore` from an async runtime's
//!   worker thread: it would stall every task on that thread for a round trip or more. From
//!   async code use `tokio::task::spawn_blocking` (or your runtime's equivalent) around the call,
//!   or a dedicated thread.
//!
//! docs/POSTGRES.md describes the schema, durability per mode, pool sizing and connection
//! poolers.

mod blobs;
mod error;
mod options;
mod pool;
mod read;
mod schema;
mod sql;
#[cfg(feature = "test-server")]
pub mod test_server;
mod write;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use annals::{
    Attachment, AttachmentMeta, BlobId, Durability, GcReport, RawEntry, ReplayOptions, Result,
    ScanReport, SegmentId, SegmentInfo, SessionId, Sink, Store, Tip,
};
use postgres::Client;

pub use options::{redact, PgOptions};
pub use schema::SCHEMA_VERSION;

use error::Failure as F;
use pool::{Health, Manager};

/// A [`Store`] in a PostgreSQL database. `Send + Sync`; clone-free sharing through `Arc`.
///
/// Every call takes a connection from the store's pool for its duration (a replay for its whole
/// length). See the crate docs for the async-runtime caveat.
pub struct PgStore {
    pool: r2d2::Pool<Manager>,
    health: Arc<Health>,
    sql: sql::Sql,
    server: String,
    schema: String,
    durability: Durability,
    max_entry_bytes: usize,
    connect_timeout: Duration,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("server", &self.server)
            .field("schema", &self.schema)
            .field("durability", &self.durability)
            .field("max_entry_bytes", &self.max_entry_bytes)
            .finish_non_exhaustive()
    }
}

/// A step of a call that failed: a client-library error to classify, or an answer of the store.
pub(crate) enum Fail {
    Pg {
        err: postgres::Error,
        /// The failing step was a commit (or an autocommitted write): the server may have
        /// committed before the connection broke.
        at_commit: bool,
    },
    Store(annals::Error),
}

impl From<postgres::Error> for Fail {
    fn from(err: postgres::Error) -> Self {
        Self::Pg {
            err,
            at_commit: false,
        }
    }
}

impl From<annals::Error> for Fail {
    fn from(e: annals::Error) -> Self {
        Self::Store(e)
    }
}

/// Marks a client-library result as that of a commit.
pub(crate) trait AtCommit<T> {
    fn at_commit(self) -> std::result::Result<T, Fail>;
}

impl<T> AtCommit<T> for std::result::Result<T, postgres::Error> {
    fn at_commit(self) -> std::result::Result<T, Fail> {
        self.map_err(|err| Fail::Pg {
            err,
            at_commit: true,
        })
    }
}

/// Whether a call may be run again after its connection broke.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Reads nothing but the database: safe to run again on a fresh connection.
    Read,
    /// Changes data: never run again after the server may have seen it.
    Write,
}

/// Attempts of one call: the first, and retries after serialization failures or (for reads) a
/// lost connection.
const ATTEMPTS: u32 = 4;

impl PgStore {
    /// Opens the store at `url` with default options (schema `annals`, pool of 8, `Sync`).
    ///
    /// # Errors
    /// As [`PgStore::open_with`].
    pub fn open(url: &str) -> Result<Self> {
        Self::open_with(PgOptions::new(url))
    }

    /// Connects, creates (unless [`PgOptions::create_schema`] is off) or migrates the schema,
    /// and returns the store. The first connection is
    /// made here, so a bad URL, a wrong password or a missing database fail now, with an error
    /// that says which.
    ///
    /// # Errors
    /// [`annals::Error::Backend`] whose kind says what is wrong: `Connect` (refused, unknown
    /// host, timeout, TLS), `Auth`, `MissingDatabase`, `Schema` (written by a newer
    /// annals-postgres, or the database is not UTF-8), `MissingDatabase` (also: no store in the
    /// schema, with `create_schema` off), `Other` (invalid URL or options).
    pub fn open_with(options: PgOptions) -> Result<Self> {
        let shown = options::redact(&options.url);
        let resolved =
            options::resolve(&options).map_err(|f| f.into_error("open", shown.clone()))?;
        let server = resolved.display.clone();
        let target = format!("{server} (schema {})", options.schema);
        let tls = pool::tls(resolved.root_cert.as_deref(), resolved.verify)
            .map_err(|f| f.into_error("open", target.clone()))?;

        // One connection first, outside the pool: its error says exactly what is wrong, and it
        // brings the schema up to date before any call runs.
        let mut first = resolved.config.connect(tls.clone()).map_err(|e| {
            F::classify(&e, &server, false).into_error("connect to", target.clone())
        })?;
        schema::migrate(&mut first, &options.schema, &server, options.create_schema).map_err(
            |e| match e {
                Fail::Store(e) => e,
                Fail::Pg { err, .. } => {
                    F::classify(&err, &server, false).into_error("migrate", target.clone())
                }
            },
        )?;
        drop(first);

        let health = Arc::new(Health::default());
        let manager = Manager::new(resolved.config, tls, Arc::clone(&health), server.clone());
        let pool = r2d2::Pool::builder()
            .max_size(options.pool_size)
            .min_idle(Some(0))
            // The check is ours (pool.rs): free unless a connection is suspect or idle long.
            .test_on_check_out(true)
            .connection_timeout(options.connect_timeout)
            .error_handler(Box::new(pool::Quiet))
            .build_unchecked(manager);
        Ok(Self {
            pool,
            health,
            sql: sql::Sql::new(&options.schema),
            server,
            schema: options.schema,
            durability: options.durability,
            max_entry_bytes: options.max_entry_bytes,
            connect_timeout: options.connect_timeout,
        })
    }

    /// `postgresql://user@host:port/database` (never the password).
    #[must_use]
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The schema the store's tables are in.
    #[must_use]
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Drops the store's schema with everything in it. For tests and for tearing a store down
    /// on purpose; there is no undo.
    ///
    /// # Errors
    /// Connection and server errors.
    pub fn drop_schema(self) -> Result<()> {
        let sql = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.schema);
        self.run("drop schema", &|| self.schema.clone(), Access::Write, |c| {
            c.batch_execute(&sql).at_commit()
        })
    }

    /// What messages name for a segment.
    fn target(&self, session: SessionId, segment: SegmentId) -> String {
        format!(
            "{} schema {} segment {session}/{segment}",
            self.server, self.schema
        )
    }

    fn session_target(&self, session: SessionId) -> String {
        format!("{} schema {} session {session}", self.server, self.schema)
    }

    /// Runs `f` on a pooled connection, classifying what fails and retrying what may be
    /// retried: serialization failures always (the server rolled them back), a lost connection
    /// only for [`Access::Read`].
    pub(crate) fn run<T>(
        &self,
        op: &'static str,
        target: &dyn Fn() -> String,
        access: Access,
        mut f: impl FnMut(&mut Client) -> std::result::Result<T, Fail>,
    ) -> Result<T> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut conn = self.pool.get().map_err(|_| {
                self.health
                    .pool_failure(&self.server, self.connect_timeout)
                    .into_error(op, target())
            })?;
            let failure = match f(&mut conn.client) {
                Ok(v) => return Ok(v),
                Err(Fail::Store(e)) => return Err(e),
                Err(Fail::Pg { err, at_commit }) => {
                    F::classify(&err, &self.server, at_commit && access == Access::Write)
                }
            };
            drop(conn);
            if failure.is_connection_lost() {
                self.health.connection_lost();
            }
            let again = attempt < ATTEMPTS
                && (failure.is_retryable()
                    || (access == Access::Read && failure.is_connection_lost() && attempt < 2));
            if !again {
                return Err(failure.into_error(op, target()));
            }
            std::thread::sleep(Duration::from_millis(5 << attempt));
        }
    }

    /// A client-library error met in the middle of a call that must not be retried (a replay
    /// that already delivered entries), as the store's error.
    pub(crate) fn fail_now(&self, err: &postgres::Error, op: &'static str, target: String) -> Fail {
        let failure = F::classify(err, &self.server, false);
        if failure.is_connection_lost() {
            self.health.connection_lost();
        }
        Fail::Store(failure.into_error(op, target))
    }

    /// Begins a transaction for an operation that must be durable in every mode.
    pub(crate) fn structural<'c>(
        &self,
        client: &'c mut Client,
    ) -> std::result::Result<postgres::Transaction<'c>, Fail> {
        let mut tx = client.transaction()?;
        if self.durability == Durability::Buffered {
            tx.batch_execute("SET LOCAL synchronous_commit = on")?;
        }
        Ok(tx)
    }

    fn check_sizes(&self, entries: &[RawEntry]) -> Result<()> {
        for e in entries {
            if e.len() > self.max_entry_bytes {
                return Err(annals::Error::EntryTooLarge {
                    size: e.len(),
                    limit: self.max_entry_bytes,
                });
            }
        }
        Ok(())
    }
}

impl Store for PgStore {
    fn create_segment(
        &self,
        session: SessionId,
        segment: SegmentId,
        initial: &[RawEntry],
    ) -> Result<Tip> {
        self.check_sizes(initial)?;
        self.create(session, segment, initial)
    }

    fn append_batch_raw(
        &self,
        session: SessionId,
        segment: SegmentId,
        entries: &[RawEntry],
    ) -> Result<Tip> {
        self.check_sizes(entries)?;
        self.append_entries(session, segment, None, entries)
    }

    fn append_if(
        &self,
        session: SessionId,
        segment: SegmentId,
        expected: Tip,
        entries: &[RawEntry],
    ) -> Result<Tip> {
        self.check_sizes(entries)?;
        self.append_entries(session, segment, Some(expected), entries)
    }

    fn replay_raw(
        &self,
        session: SessionId,
        segment: SegmentId,
        options: &ReplayOptions,
        sink: &mut Sink<'_>,
    ) -> Result<ScanReport> {
        self.replay(sql::Log::Entries, session, segment, options, false, sink)
    }

    fn verify(&self, session: SessionId, segment: SegmentId) -> Result<ScanReport> {
        self.replay(
            sql::Log::Entries,
            session,
            segment,
            &ReplayOptions::tolerant(),
            true,
            &mut |_| Ok(std::ops::ControlFlow::Continue(())),
        )
    }

    fn sync(&self, session: SessionId, segment: SegmentId) -> Result<()> {
        self.sync_segment(session, segment)
    }

    /// Not offered yet: a lease would need every other writer's statement to respect it (a
    /// holder column checked by the append, kept alive by an advisory lock of the holder's
    /// connection). Writers of a PostgreSQL store use the per-call methods, whose
    /// transactions already serialize them, and `append_if` to detect one another.
    fn lease(
        &self,
        _session: SessionId,
        _segment: SegmentId,
        _options: &annals::LeaseOptions,
    ) -> Result<Box<dyn annals::Lease>> {
        Err(annals::Error::Unsupported {
            backend: "postgres",
            op: "writer leases",
            why: "use append/append_if (each one transaction); see docs/POSTGRES.md",
        })
    }

    fn truncate_if(
        &self,
        session: SessionId,
        segment: SegmentId,
        expected: Tip,
        keep: u64,
    ) -> Result<Tip> {
        self.truncate_segment(session, segment, Some(expected), keep)
    }

    fn tip(&self, session: SessionId, segment: SegmentId) -> Result<Tip> {
        self.read_tip(session, segment)
    }

    fn truncate(&self, session: SessionId, segment: SegmentId, keep: u64) -> Result<Tip> {
        self.truncate_segment(session, segment, None, keep)
    }

    fn fork(&self, session: SessionId, source: SegmentId, at: u64, into: SegmentId) -> Result<Tip> {
        self.fork_segment(session, source, at, into)
    }

    fn exists(&self, session: SessionId, segment: SegmentId) -> Result<bool> {
        self.segment_exists(session, segment)
    }

    fn list_sessions(&self) -> Result<Vec<SessionId>> {
        self.sessions()
    }

    fn list_segments(&self, session: SessionId) -> Result<Vec<SegmentInfo>> {
        self.segments(session)
    }

    fn find_session(&self, segment: SegmentId) -> Result<Option<SessionId>> {
        self.session_of(segment)
    }

    fn delete_session(&self, session: SessionId) -> Result<()> {
        self.delete(session)
    }

    fn session_modified(&self, session: SessionId) -> Result<SystemTime> {
        self.modified(session)
    }

    fn append_trace_raw(
        &self,
        session: SessionId,
        segment: SegmentId,
        events: &[RawEntry],
    ) -> Result<()> {
        self.check_sizes(events)?;
        self.append_trace(session, segment, events)
    }

    fn replay_trace_raw(
        &self,
        session: SessionId,
        segment: SegmentId,
        options: &ReplayOptions,
        sink: &mut Sink<'_>,
    ) -> Result<ScanReport> {
        self.replay(sql::Log::Trace, session, segment, options, false, sink)
    }

    fn put_attachment(
        &self,
        session: SessionId,
        bytes: &[u8],
        meta: &AttachmentMeta,
    ) -> Result<Attachment> {
        self.attach(session, bytes, meta)
    }

    fn list_attachments(&self, session: SessionId) -> Result<Vec<Attachment>> {
        self.attachments(session)
    }

    fn get_blob(&self, session: SessionId, id: &BlobId) -> Result<Vec<u8>> {
        self.blob(session, id)
    }

    fn gc_blobs(&self, session: SessionId, dry_run: bool) -> Result<GcReport> {
        self.gc(session, dry_run)
    }

    fn max_entry_bytes(&self) -> usize {
        self.max_entry_bytes
    }

    fn is_durable(&self) -> bool {
        true
    }
}

/// A database integer that must not be negative (the schema's CHECKs say so), as `u64`.
pub(crate) fn unsigned(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// A count or sequence number for the database, saturating at `i64::MAX` (no segment gets
/// near it; a request beyond is then refused as beyond the end).
pub(crate) fn signed(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The CRC-32 as PostgreSQL's `integer` holds it (the same 32 bits).
pub(crate) fn crc_column(crc: u32) -> i32 {
    i32::from_ne_bytes(crc.to_ne_bytes())
}
