//! Attachments, reading blobs, and blob garbage collection.

use annals::{
    Attachment, AttachmentMeta, BlobFault, BlobId, CorruptReason, Error, GcReport, Result,
    SessionId,
};
use postgres::types::Type;

use crate::read::blob_id;
use crate::{crc_column, unsigned, Access, AtCommit, Fail, PgStore};

impl PgStore {
    pub(crate) fn attach(
        &self,
        session: SessionId,
        bytes: &[u8],
        meta: &AttachmentMeta,
    ) -> Result<Attachment> {
        if bytes.len() > self.max_entry_bytes {
            return Err(Error::EntryTooLarge {
                size: bytes.len(),
                limit: self.max_entry_bytes,
            });
        }
        let id = BlobId::of(bytes);
        let key = id.as_bytes().as_slice();
        let len = i64::try_from(bytes.len()).unwrap_or(i64::MAX);
        let crc = crc_column(crc32fast::hash(bytes));
        let meta_json = serde_json::to_string(meta).map_err(Error::Serialize)?;
        let created = self.run(
            "attach to",
            &|| self.session_target(session),
            Access::Write,
            |c| {
                let mut tx = self.structural(c)?;
                let created = tx.query_typed_opt(
                    &self.sql.attach,
                    &[
                        (session.as_uuid(), Type::UUID),
                        (&key, Type::BYTEA),
                        (&len, Type::INT8),
                        (&crc, Type::INT4),
                        (&bytes, Type::BYTEA),
                        (&meta_json, Type::TEXT),
                    ],
                )?;
                let Some(created) = created else {
                    return Ok(None);
                };
                let ms: i64 = created.try_get(0)?;
                tx.commit().at_commit()?;
                Ok(Some(ms))
            },
        )?;
        let created_ms = created.ok_or(Error::SessionNotFound(session))?;
        Ok(Attachment {
            id,
            len: bytes.len() as u64,
            meta: meta.clone(),
            created_ms: unsigned(created_ms),
        })
    }

    pub(crate) fn attachments(&self, session: SessionId) -> Result<Vec<Attachment>> {
        self.run(
            "list attachments of",
            &|| self.session_target(session),
            Access::Read,
            |c| {
                let rows =
                    c.query_typed(&self.sql.attachments, &[(session.as_uuid(), Type::UUID)])?;
                if rows.is_empty() {
                    return Err(Fail::Store(Error::SessionNotFound(session)));
                }
                let mut out = Vec::with_capacity(rows.len());
                for r in &rows {
                    let Some(blob) = r.try_get::<_, Option<&[u8]>>(0)? else {
                        continue; // no attachment yet
                    };
                    let meta_json: &str = r.try_get(2)?;
                    let damaged = |what: &'static str| {
                        Fail::Store(Error::Corrupt {
                            path: format!("{}/{}.attachments/{session}", self.server, self.schema)
                                .into(),
                            line: out.len() as u64 + 1,
                            offset: 0,
                            reason: CorruptReason::Malformed(what),
                        })
                    };
                    let id = blob_id(blob)
                        .ok_or_else(|| damaged("attachment's blob id is not 32 bytes"))?;
                    let meta: AttachmentMeta = serde_json::from_str(meta_json).map_err(|_| {
                        damaged("attachment's metadata is not the JSON annals wrote")
                    })?;
                    out.push(Attachment {
                        id,
                        len: unsigned(r.try_get(1)?),
                        meta,
                        created_ms: unsigned(r.try_get(3)?),
                    });
                }
                Ok(out)
            },
        )
    }

    pub(crate) fn blob(&self, session: SessionId, id: &BlobId) -> Result<Vec<u8>> {
        let key = id.as_bytes().as_slice();
        self.run(
            "read a blob of",
            &|| self.session_target(session),
            Access::Read,
            |c| {
                let row = c
                    .query_typed_opt(
                        &self.sql.blob,
                        &[(session.as_uuid(), Type::UUID), (&key, Type::BYTEA)],
                    )?
                    .ok_or(Fail::Store(Error::BlobNotFound { session, id: *id }))?;
                let data: Vec<u8> = row.try_get(2)?;
                if BlobId::of(&data) != *id {
                    return Err(Fail::Store(Error::Corrupt {
                        path: format!("{}/{}.blobs/{session}/{id}", self.server, self.schema)
                            .into(),
                        line: 0,
                        offset: 0,
                        reason: CorruptReason::Blob {
                            id: *id,
                            problem: BlobFault::Hash {
                                found: BlobId::of(&data),
                            },
                        },
                    }));
                }
                Ok(data)
            },
        )
    }

    /// Holds the session's row `FOR UPDATE` while it looks and removes (a real run), which waits
    /// for every append storing a blob in that session to commit and keeps new ones waiting: a
    /// blob is never removed between being stored and its entry being committed. A dry run
    /// only reads, in one snapshot, and takes no lock.
    pub(crate) fn gc(&self, session: SessionId, dry_run: bool) -> Result<GcReport> {
        self.run(
            "collect blobs of",
            &|| self.session_target(session),
            if dry_run { Access::Read } else { Access::Write },
            |c| {
                let mut tx = if dry_run {
                    c.build_transaction()
                        .isolation_level(postgres::IsolationLevel::RepeatableRead)
                        .read_only(true)
                        .start()?
                } else {
                    self.structural(c)?
                };
                let locking = if dry_run {
                    &self.sql.exists_session
                } else {
                    &self.sql.lock_session
                };
                tx.query_typed_opt(locking, &[(session.as_uuid(), Type::UUID)])?
                    .ok_or(Fail::Store(Error::SessionNotFound(session)))?;
                let mut report = GcReport::default();
                let mut orphans: Vec<Vec<u8>> = Vec::new();
                for r in tx.query_typed(&self.sql.blob_usage, &[(session.as_uuid(), Type::UUID)])? {
                    let key: Vec<u8> = r.try_get(0)?;
                    let used: bool = r.try_get(2)?;
                    if used {
                        report.kept += 1;
                        continue;
                    }
                    if let Some(id) = blob_id(&key) {
                        report.orphans.push(id);
                    }
                    report.orphan_bytes += unsigned(r.try_get(1)?);
                    orphans.push(key);
                }
                if dry_run {
                    let _ = tx.commit();
                    return Ok(report);
                }
                if !orphans.is_empty() {
                    tx.query_typed(
                        &self.sql.delete_blobs,
                        &[
                            (session.as_uuid(), Type::UUID),
                            (&orphans, Type::BYTEA_ARRAY),
                        ],
                    )?;
                }
                tx.commit().at_commit()?;
                Ok(report)
            },
        )
    }
}
