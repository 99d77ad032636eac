//! The calls that change a segment: create, append (log and trace), truncate, fork, and
//! deleting a session.

use std::borrow::Cow;

use annals::{BlobRef, Error, RawEntry, Result, SegmentId, SessionId, Tip, MAX_INLINE};
use postgres::types::{ToSql, Type};
use postgres::GenericClient;

use crate::sql::Log;
use crate::{crc_column, signed, unsigned, Access, AtCommit, Fail, PgStore};

/// A batch as the append statement takes it: one array per column.
struct Batch<'e> {
    bodies: Vec<Cow<'e, str>>,
    blob_ids: Vec<Option<Vec<u8>>>,
    lens: Vec<i64>,
    crcs: Vec<i32>,
    count: i64,
    bytes: i64,
    /// Distinct blobs of the batch, one array per column: id, length, CRC, data.
    blob_keys: Vec<Vec<u8>>,
    blob_lens: Vec<i64>,
    blob_crcs: Vec<i32>,
    blob_data: Vec<&'e [u8]>,
}

/// The CRC-32 an entry row carries: of its text, or for an entry kept as a blob of the blob's
/// id, length and head (the row holds only those).
pub(crate) fn entry_crc(body: &str, blob: Option<(&[u8], i64)>) -> u32 {
    let mut h = crc32fast::Hasher::new();
    if let Some((id, len)) = blob {
        h.update(id);
        h.update(&len.to_be_bytes());
    }
    h.update(body.as_bytes());
    h.finalize()
}

impl<'e> Batch<'e> {
    /// Decides inline or blob for each entry exactly as the other backends do (above
    /// [`MAX_INLINE`] bytes: a blob), and computes the checksums.
    fn of(entries: &'e [RawEntry]) -> Self {
        let n = entries.len();
        let mut b = Batch {
            bodies: Vec::with_capacity(n),
            blob_ids: Vec::with_capacity(n),
            lens: Vec::with_capacity(n),
            crcs: Vec::with_capacity(n),
            count: i64::try_from(n).unwrap_or(i64::MAX),
            bytes: 0,
            blob_keys: Vec::new(),
            blob_lens: Vec::new(),
            blob_crcs: Vec::new(),
            blob_data: Vec::new(),
        };
        for e in entries {
            let len = i64::try_from(e.len()).unwrap_or(i64::MAX);
            b.lens.push(len);
            b.bytes = b.bytes.saturating_add(len.saturating_add(1));
            if e.len() > MAX_INLINE {
                let r = BlobRef::for_entry(e.as_str());
                let id = r.sha256.as_bytes().to_vec();
                b.crcs
                    .push(crc_column(entry_crc(&r.head, Some((&id, len)))));
                if !b.blob_keys.contains(&id) {
                    let data = e.as_str().as_bytes();
                    b.blob_keys.push(id.clone());
                    b.blob_lens.push(len);
                    b.blob_crcs.push(crc_column(crc32fast::hash(data)));
                    b.blob_data.push(data);
                }
                b.blob_ids.push(Some(id));
                b.bodies.push(Cow::Owned(r.head));
            } else {
                b.crcs.push(crc_column(entry_crc(e.as_str(), None)));
                b.blob_ids.push(None);
                b.bodies.push(Cow::Borrowed(e.as_str()));
            }
        }
        b
    }

    fn has_blobs(&self) -> bool {
        !self.blob_keys.is_empty()
    }
}

/// Runs the append statement on `client`: `Ok(Some(tip))` if it appended, `Ok(None)` if no row
/// matched (no such segment, or — with `expected` — another tip).
fn append_statement(
    store: &PgStore,
    client: &mut impl GenericClient,
    log: Log,
    session: SessionId,
    segment: SegmentId,
    expected: Option<Tip>,
    batch: &Batch<'_>,
) -> std::result::Result<Option<Tip>, postgres::Error> {
    let (session, segment) = (*session.as_uuid(), *segment.as_uuid());
    let check = expected.is_some();
    let (count, generation) = expected.map_or((0, 0), |t| (signed(t.count), signed(t.generation)));
    let mut params: Vec<(&(dyn ToSql + Sync), Type)> = vec![
        (&session, Type::UUID),
        (&segment, Type::UUID),
        (&check, Type::BOOL),
        (&count, Type::INT8),
        (&generation, Type::INT8),
        (&batch.count, Type::INT8),
        (&batch.bytes, Type::INT8),
        (&batch.bodies, Type::TEXT_ARRAY),
        (&batch.blob_ids, Type::BYTEA_ARRAY),
        (&batch.lens, Type::INT8_ARRAY),
        (&batch.crcs, Type::INT4_ARRAY),
    ];
    if batch.has_blobs() {
        params.extend([
            (&batch.blob_keys as &(dyn ToSql + Sync), Type::BYTEA_ARRAY),
            (&batch.blob_lens, Type::INT8_ARRAY),
            (&batch.blob_crcs, Type::INT4_ARRAY),
            (&batch.blob_data, Type::BYTEA_ARRAY),
        ]);
    }
    let row = client.query_typed_opt(store.sql.append(log, batch.has_blobs()), &params)?;
    row.map(|r| {
        Ok(Tip {
            count: unsigned(r.try_get(0)?),
            generation: unsigned(r.try_get(1)?),
        })
    })
    .transpose()
}

impl PgStore {
    /// The tip of a segment on `client`, `None` if it does not exist.
    fn tip_on(
        &self,
        client: &mut impl GenericClient,
        session: SessionId,
        segment: SegmentId,
    ) -> std::result::Result<Option<Tip>, postgres::Error> {
        let row = client.query_typed_opt(
            &self.sql.tip,
            &[
                (session.as_uuid(), Type::UUID),
                (segment.as_uuid(), Type::UUID),
            ],
        )?;
        row.map(|r| {
            Ok(Tip {
                count: unsigned(r.try_get(0)?),
                generation: unsigned(r.try_get(1)?),
            })
        })
        .transpose()
    }

    pub(crate) fn read_tip(&self, session: SessionId, segment: SegmentId) -> Result<Tip> {
        self.run(
            "read the tip of",
            &|| self.target(session, segment),
            Access::Read,
            |c| {
                self.tip_on(c, session, segment)?
                    .ok_or(Fail::Store(Error::SegmentNotFound { session, segment }))
            },
        )
    }

    /// Appends to the log, checking the tip first if `expected` is given. Sizes are checked by
    /// the caller.
    pub(crate) fn append_entries(
        &self,
        session: SessionId,
        segment: SegmentId,
        expected: Option<Tip>,
        entries: &[RawEntry],
    ) -> Result<Tip> {
        if entries.is_empty() {
            let found = self.read_tip(session, segment)?;
            return match expected {
                Some(expected) if expected != found => Err(Error::ConcurrentWriter {
                    segment,
                    expected,
                    found,
                }),
                _ => Ok(found),
            };
        }
        let batch = Batch::of(entries);
        let outcome = self.run(
            "append to",
            &|| self.target(session, segment),
            Access::Write,
            |c| {
                append_statement(self, c, Log::Entries, session, segment, expected, &batch)
                    .at_commit()
            },
        )?;
        if let Some(tip) = outcome {
            return Ok(tip);
        }
        // Nothing matched: the segment is missing, or its tip is not the one expected. A fresh
        // statement reads the tip that refused it (another writer may even have brought it back
        // to `expected` meanwhile; the append was refused all the same, and nothing written).
        let found = self.read_tip(session, segment)?;
        match expected {
            Some(expected) => Err(Error::ConcurrentWriter {
                segment,
                expected,
                found,
            }),
            None => Err(Error::SegmentNotFound { session, segment }),
        }
    }

    pub(crate) fn append_trace(
        &self,
        session: SessionId,
        segment: SegmentId,
        events: &[RawEntry],
    ) -> Result<()> {
        if events.is_empty() {
            return self.read_tip(session, segment).map(|_| ());
        }
        let batch = Batch::of(events);
        let appended = self.run(
            "append to the trace of",
            &|| self.target(session, segment),
            Access::Write,
            |c| append_statement(self, c, Log::Trace, session, segment, None, &batch).at_commit(),
        )?;
        appended
            .map(|_| ())
            .ok_or(Error::SegmentNotFound { session, segment })
    }

    pub(crate) fn create(
        &self,
        session: SessionId,
        segment: SegmentId,
        initial: &[RawEntry],
    ) -> Result<Tip> {
        let batch = Batch::of(initial);
        self.run(
            "create",
            &|| self.target(session, segment),
            Access::Write,
            |c| {
                let mut tx = self.structural(c)?;
                tx.query_typed(&self.sql.insert_session, &[(session.as_uuid(), Type::UUID)])?;
                let created = tx.query_typed_opt(
                    &self.sql.insert_segment,
                    &[
                        (session.as_uuid(), Type::UUID),
                        (segment.as_uuid(), Type::UUID),
                        (&None::<uuid::Uuid>, Type::UUID),
                        (&None::<i64>, Type::INT8),
                    ],
                )?;
                if created.is_none() {
                    return Err(Fail::Store(Error::SegmentExists { session, segment }));
                }
                let tip = if initial.is_empty() {
                    Tip::default()
                } else {
                    append_statement(
                        self,
                        &mut tx,
                        Log::Entries,
                        session,
                        segment,
                        Some(Tip::default()),
                        &batch,
                    )?
                    .unwrap_or_default()
                };
                tx.commit().at_commit()?;
                Ok(tip)
            },
        )
    }

    /// Truncates, checking the tip first (under the segment's lock) if `expected` is given.
    pub(crate) fn truncate_segment(
        &self,
        session: SessionId,
        segment: SegmentId,
        expected: Option<Tip>,
        keep: u64,
    ) -> Result<Tip> {
        self.run(
            "truncate",
            &|| self.target(session, segment),
            Access::Write,
            |c| {
                let mut tx = self.structural(c)?;
                let row = tx
                    .query_typed_opt(
                        &self.sql.lock_segment,
                        &[
                            (session.as_uuid(), Type::UUID),
                            (segment.as_uuid(), Type::UUID),
                        ],
                    )?
                    .ok_or(Fail::Store(Error::SegmentNotFound { session, segment }))?;
                let key: i64 = row.try_get(0)?;
                let count = unsigned(row.try_get(1)?);
                let found = Tip {
                    count,
                    generation: unsigned(row.try_get(2)?),
                };
                if let Some(expected) = expected.filter(|e| *e != found) {
                    return Err(Fail::Store(Error::ConcurrentWriter {
                        segment,
                        expected,
                        found,
                    }));
                }
                if keep > count {
                    return Err(Fail::Store(Error::BeyondEnd {
                        segment,
                        requested: keep,
                        count,
                    }));
                }
                let keep_i = signed(keep);
                let row = tx.query_typed_one(
                    &self.sql.truncate,
                    &[(&key, Type::INT8), (&keep_i, Type::INT8)],
                )?;
                let tip = Tip {
                    count: unsigned(row.try_get(0)?),
                    generation: unsigned(row.try_get(1)?),
                };
                tx.commit().at_commit()?;
                Ok(tip)
            },
        )
    }

    pub(crate) fn fork_segment(
        &self,
        session: SessionId,
        source: SegmentId,
        at: u64,
        into: SegmentId,
    ) -> Result<Tip> {
        self.run(
            "fork",
            &|| self.target(session, source),
            Access::Write,
            |c| {
                let mut tx = self.structural(c)?;
                // Held until commit: appends and truncates wait, so the prefix cannot change
                // while it is copied (other forks of the same source need not wait).
                let row = tx
                    .query_typed_opt(
                        &self.sql.share_segment,
                        &[
                            (session.as_uuid(), Type::UUID),
                            (source.as_uuid(), Type::UUID),
                        ],
                    )?
                    .ok_or(Fail::Store(Error::SegmentNotFound {
                        session,
                        segment: source,
                    }))?;
                let source_key: i64 = row.try_get(0)?;
                let count = unsigned(row.try_get(1)?);
                if at > count {
                    return Err(Fail::Store(Error::BeyondEnd {
                        segment: source,
                        requested: at,
                        count,
                    }));
                }
                let at_i = signed(at);
                let created = tx.query_typed_opt(
                    &self.sql.insert_segment,
                    &[
                        (session.as_uuid(), Type::UUID),
                        (into.as_uuid(), Type::UUID),
                        (source.as_uuid(), Type::UUID),
                        (&at_i, Type::INT8),
                    ],
                )?;
                let Some(created) = created else {
                    return Err(Fail::Store(Error::SegmentExists {
                        session,
                        segment: into,
                    }));
                };
                let into_key: i64 = created.try_get(0)?;
                let row = tx.query_typed_one(
                    &self.sql.copy_prefix,
                    &[
                        (&source_key, Type::INT8),
                        (&into_key, Type::INT8),
                        (&at_i, Type::INT8),
                    ],
                )?;
                let tip = Tip {
                    count: unsigned(row.try_get(0)?),
                    generation: unsigned(row.try_get(1)?),
                };
                tx.commit().at_commit()?;
                Ok(tip)
            },
        )
    }

    /// Makes every append so far durable. In `Sync` mode each was durable when it returned, so
    /// this only checks the segment; in `Buffered` mode a write that changes nothing, committed
    /// synchronously, flushes the server's WAL up to it and so every earlier commit.
    pub(crate) fn sync_segment(&self, session: SessionId, segment: SegmentId) -> Result<()> {
        if self.durability == annals::Durability::Sync {
            return self.read_tip(session, segment).map(|_| ());
        }
        self.run(
            "sync",
            &|| self.target(session, segment),
            Access::Write,
            |c| {
                let mut tx = self.structural(c)?;
                tx.query_typed_opt(
                    &self.sql.touch_segment,
                    &[
                        (session.as_uuid(), Type::UUID),
                        (segment.as_uuid(), Type::UUID),
                    ],
                )?
                .ok_or(Fail::Store(Error::SegmentNotFound { session, segment }))?;
                tx.commit().at_commit()
            },
        )
    }

    pub(crate) fn delete(&self, session: SessionId) -> Result<()> {
        self.run(
            "delete",
            &|| self.session_target(session),
            Access::Write,
            |c| {
                let mut tx = self.structural(c)?;
                let gone = tx
                    .query_typed_opt(&self.sql.delete_session, &[(session.as_uuid(), Type::UUID)])?
                    .is_some();
                if !gone {
                    return Err(Fail::Store(Error::SessionNotFound(session)));
                }
                tx.commit().at_commit()
            },
        )
    }
}
