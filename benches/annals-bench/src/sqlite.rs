//! The SQLite baseline: one row per entry, keyed by (session, segment, seq), in WAL mode, with
//! the `synchronous` setting whose promise matches annals' durability.

use std::path::Path;

use annals::{SegmentId, SessionId};
use rusqlite::{params, Connection, OpenFlags};
use serde::de::DeserializeOwned;

/// What a commit promises, matched to annals' [`annals::Durability`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlDurability {
    /// WAL + `synchronous=NORMAL`: a commit is a `write(2)` into the WAL (fsynced only at
    /// checkpoints), so it survives the process crashing but not a power cut — annals
    /// `Buffered`. (`OFF` would also skip the checkpoint's fsyncs, and a power cut could then
    /// corrupt the database, which annals' `Buffered` never allows: `NORMAL` is the equal
    /// promise.)
    Buffered,
    /// WAL + `synchronous=FULL`: the WAL is fsynced at every commit, so a commit survives a
    /// power cut — annals `Sync`.
    Sync,
}

/// A connection to an entries database.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS entries (
    session BLOB NOT NULL,
    segment BLOB NOT NULL,
    seq INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (session, segment, seq)
)";

const INSERT: &str = "INSERT INTO entries (session, segment, seq, body) VALUES (?1, ?2, ?3, ?4)";

fn key_session(s: SessionId) -> [u8; 16] {
    *s.as_uuid().as_bytes()
}

fn key_segment(s: SegmentId) -> [u8; 16] {
    *s.as_uuid().as_bytes()
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn open(path: &Path, durability: SqlDurability) -> rusqlite::Result<Self> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(
            None,
            "synchronous",
            match durability {
                SqlDurability::Buffered => "NORMAL",
                SqlDurability::Sync => "FULL",
            },
        )?;
        // Several connections may write one database (the threaded comparisons): wait for the
        // write lock instead of failing with SQLITE_BUSY.
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        conn.execute(SCHEMA, [])?;
        Ok(Self { conn })
    }

    /// Inserts one entry as its own (autocommit) transaction, through the cached prepared
    /// statement.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn append(
        &self,
        session: SessionId,
        segment: SegmentId,
        seq: u64,
        json: &str,
    ) -> rusqlite::Result<()> {
        let mut stmt = self.conn.prepare_cached(INSERT)?;
        stmt.execute(params![
            key_session(session),
            key_segment(segment),
            seq as i64,
            json
        ])?;
        Ok(())
    }

    /// Inserts one entry at the next sequence number of its segment, found in the same
    /// statement (`INSERT … SELECT max(seq) + 1`): what several writers of one segment must do.
    /// A write statement takes SQLite's write lock before it reads, so two of them never pick
    /// the same number.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn append_next(
        &self,
        session: SessionId,
        segment: SegmentId,
        json: &str,
    ) -> rusqlite::Result<()> {
        let mut stmt = self.conn.prepare_cached(
            "INSERT INTO entries (session, segment, seq, body) \
             SELECT ?1, ?2, coalesce(max(seq) + 1, 0), ?3 FROM entries \
             WHERE session = ?1 AND segment = ?2",
        )?;
        stmt.execute(params![key_session(session), key_segment(segment), json])?;
        Ok(())
    }

    /// Inserts entries `first..` in one transaction.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn append_batch<'a>(
        &mut self,
        session: SessionId,
        segment: SegmentId,
        first: u64,
        jsons: impl IntoIterator<Item = &'a str>,
    ) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(INSERT)?;
            let (s, g) = (key_session(session), key_segment(segment));
            for (seq, json) in (first..).zip(jsons) {
                stmt.execute(params![s, g, seq as i64, json])?;
            }
        }
        tx.commit()
    }

    /// Entry count as a user would ask: `max(seq) + 1`, an O(log n) probe of the primary key.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn count(&self, session: SessionId, segment: SegmentId) -> rusqlite::Result<u64> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT max(seq) FROM entries WHERE session = ?1 AND segment = ?2")?;
        let max: Option<i64> = stmt
            .query_row(params![key_session(session), key_segment(segment)], |row| {
                row.get(0)
            })?;
        Ok(max.map_or(0, |m| m as u64 + 1))
    }

    /// Streams the segment's entries in `seq` order, deserialized, into `f`. Returns the count.
    ///
    /// # Errors
    /// SQLite errors; a body that does not deserialize is reported as a conversion failure.
    pub fn replay<T: DeserializeOwned>(
        &self,
        session: SessionId,
        segment: SegmentId,
        mut f: impl FnMut(T),
    ) -> rusqlite::Result<u64> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT body FROM entries WHERE session = ?1 AND segment = ?2 ORDER BY seq",
        )?;
        let mut rows = stmt.query(params![key_session(session), key_segment(segment)])?;
        let mut n = 0;
        while let Some(row) = rows.next()? {
            let body = row.get_ref(0)?.as_str()?;
            let value = serde_json::from_str(body).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
            })?;
            f(value);
            n += 1;
        }
        Ok(n)
    }

    /// Checkpoints the WAL into the main file (fixtures do this once, so that reads do not
    /// start with a large WAL to consult).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn checkpoint(&self) -> rusqlite::Result<()> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
    }
}
