//! The calls that only read: replay and verify (streamed through a cursor in one snapshot),
//! tips, listings, lookups.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use annals::{
    BlobFault, BlobId, BlobRef, Body, CorruptReason, Entry, Error, Lineage, Problem, ReadMode,
    ReplayOptions, Result, ScanReport, SegmentId, SegmentInfo, SessionId, Sink, Tip,
};
use postgres::types::Type;
use postgres::{IsolationLevel, Row, Transaction};

use crate::sql::Log;
use crate::write::entry_crc;
use crate::{signed, unsigned, Access, Fail, PgStore};

/// Rows fetched from the cursor at a time. Inline entries are at most ~4 KiB, so a page is at
/// most ~1 MiB of entry text; an entry kept as a blob is read on its own when its turn comes.
/// Client memory is therefore bounded by a page plus one entry, whatever the segment's size.
const PAGE: i32 = 256;

/// A blob id from the 32 bytes a row holds.
pub(crate) fn blob_id(bytes: &[u8]) -> Option<BlobId> {
    if bytes.len() != 32 {
        return None;
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    hex.parse().ok()
}

/// What one row turned out to be.
enum Checked {
    /// An entry kept in the row: deliver the row's text.
    Inline,
    /// An entry kept as a blob: its reference, and its text unless only references were asked
    /// for.
    Blob(BlobRef, Option<String>),
    /// Damaged.
    Problem(CorruptReason),
}

/// The running state of one scan.
struct Scan {
    mode: ReadMode,
    path: PathBuf,
    report: ScanReport,
    expected: u64,
    offset: u64,
}

impl Scan {
    /// Records a problem at `seq`: the error in strict mode, a line of the report otherwise.
    fn problem(&mut self, seq: u64, reason: CorruptReason) -> std::result::Result<(), Fail> {
        if self.report.problem_count == 0 {
            self.report.valid_up_to = self.offset;
        }
        if self.mode == ReadMode::Strict {
            return Err(Fail::Store(Error::Corrupt {
                path: self.path.clone(),
                line: seq.saturating_add(2),
                offset: self.offset,
                reason,
            }));
        }
        self.report.problem_count += 1;
        if self.report.problems.len() < ScanReport::MAX_PROBLEMS {
            self.report.problems.push(Problem {
                line: seq.saturating_add(2),
                offset: self.offset,
                reason,
            });
        }
        Ok(())
    }
}

impl PgStore {
    /// What error messages call the rows of a segment's log or trace (there is no file).
    fn rows_path(&self, log: Log, session: SessionId, segment: SegmentId) -> PathBuf {
        let table = match log {
            Log::Entries => "entries",
            Log::Trace => "trace_events",
        };
        PathBuf::from(format!(
            "{}/{}.{table}/{session}/{segment}",
            self.server, self.schema
        ))
    }

    /// Streams a segment's log or trace into `sink`, checking every row (sequence, CRC, and
    /// the blobs of entries kept as blobs: length and CRC always, SHA-256 when `verify`). One
    /// REPEATABLE READ, read-only transaction: the replay sees one committed state of the
    /// segment however long it takes, and writes nothing.
    pub(crate) fn replay(
        &self,
        log: Log,
        session: SessionId,
        segment: SegmentId,
        options: &ReplayOptions,
        verify: bool,
        sink: &mut Sink<'_>,
    ) -> Result<ScanReport> {
        let which = usize::from(log == Log::Trace);
        let mut delivered = false;
        self.run(
            if verify { "verify" } else { "replay" },
            &|| self.target(session, segment),
            Access::Read,
            |c| {
                let mut tx = c
                    .build_transaction()
                    .isolation_level(IsolationLevel::RepeatableRead)
                    .read_only(true)
                    .start()?;
                let head = tx
                    .query_typed_opt(
                        self.sql.replay_head.get(which).map_or("", String::as_str),
                        &[
                            (session.as_uuid(), Type::UUID),
                            (segment.as_uuid(), Type::UUID),
                        ],
                    )?
                    .ok_or(Fail::Store(Error::SegmentNotFound { session, segment }))?;
                let key: i64 = head.try_get(0)?;
                let count = unsigned(head.try_get(1)?);
                let bytes = unsigned(head.try_get(2)?);
                let from = options.from_seq.min(count);
                let from_i = signed(from);
                let portal = tx.bind(
                    self.sql.replay_rows.get(which).map_or("", String::as_str),
                    &[&key, &from_i],
                )?;
                let mut scan = Scan {
                    mode: options.mode,
                    path: self.rows_path(log, session, segment),
                    report: ScanReport {
                        entries: from,
                        file_len: bytes,
                        ..ScanReport::default()
                    },
                    expected: from,
                    offset: 0,
                };
                'pages: loop {
                    let rows = match tx.query_portal(&portal, PAGE) {
                        Ok(rows) => rows,
                        Err(e) if delivered => {
                            return Err(self.fail_now(&e, "replay", self.target(session, segment)))
                        }
                        Err(e) => return Err(e.into()),
                    };
                    if rows.is_empty() {
                        break;
                    }
                    for row in &rows {
                        let seq = unsigned(row.try_get(0)?);
                        let len = unsigned(row.try_get::<_, i64>(2)?);
                        if seq >= count {
                            scan.problem(
                                seq,
                                CorruptReason::Malformed("entry beyond the segment's tip"),
                            )?;
                            continue;
                        }
                        if seq != scan.expected {
                            scan.problem(
                                seq,
                                CorruptReason::SeqMismatch {
                                    expected: scan.expected,
                                    found: seq,
                                },
                            )?;
                        }
                        scan.expected = seq + 1;
                        let checked = match self.check_row(&mut tx, session, row, options, verify) {
                            Ok(c) => c,
                            Err(e) if delivered => {
                                return Err(self.fail_now(
                                    &e,
                                    "replay",
                                    self.target(session, segment),
                                ))
                            }
                            Err(e) => return Err(e.into()),
                        };
                        if let Checked::Problem(reason) = checked {
                            scan.problem(seq, reason)?;
                            scan.offset += len + 1;
                            continue;
                        }
                        scan.report.entries += 1;
                        scan.offset += len + 1;
                        if seq < options.from_seq {
                            continue;
                        }
                        delivered = true;
                        let appended_ms = Some(unsigned(row.try_get(5)?));
                        let body = match &checked {
                            Checked::Blob(reference, json) => Body::Blob {
                                reference,
                                json: json.as_deref(),
                            },
                            _ => Body::Inline(row.try_get(3)?),
                        };
                        let flow = sink(Entry {
                            seq,
                            appended_ms,
                            body,
                        })?;
                        if flow == ControlFlow::Break(()) {
                            scan.report.stopped = true;
                            break 'pages;
                        }
                    }
                }
                if scan.expected < count && !scan.report.stopped {
                    scan.problem(
                        scan.expected,
                        CorruptReason::SeqMismatch {
                            expected: scan.expected,
                            found: count,
                        },
                    )?;
                }
                if log == Log::Trace {
                    scan.report.file_len = scan.offset;
                }
                if scan.report.problem_count == 0 {
                    scan.report.valid_up_to = scan.report.file_len;
                }
                // Read-only: ending it changes nothing either way.
                let _ = tx.commit();
                Ok(scan.report)
            },
        )
    }

    /// Checks one row; for an entry kept as a blob, reads and checks the blob (unless only
    /// references were asked for) in the replay's transaction.
    fn check_row(
        &self,
        tx: &mut Transaction<'_>,
        session: SessionId,
        row: &Row,
        options: &ReplayOptions,
        verify: bool,
    ) -> std::result::Result<Checked, postgres::Error> {
        let stored = u32::from_ne_bytes(row.try_get::<_, i32>(1)?.to_ne_bytes());
        let len: i64 = row.try_get(2)?;
        let body: &str = row.try_get(3)?;
        let blob: Option<&[u8]> = row.try_get(4)?;
        let computed = entry_crc(body, blob.map(|b| (b, len)));
        if computed != stored {
            return Ok(Checked::Problem(CorruptReason::CrcMismatch {
                stored,
                computed,
            }));
        }
        let Some(blob) = blob else {
            if usize::try_from(len).ok() != Some(body.len()) {
                return Ok(Checked::Problem(CorruptReason::Malformed(
                    "the length column disagrees with the entry's text",
                )));
            }
            return Ok(Checked::Inline);
        };
        let Some(id) = blob_id(blob) else {
            return Ok(Checked::Problem(CorruptReason::Malformed(
                "blob id is not 32 bytes",
            )));
        };
        let reference = BlobRef {
            sha256: id,
            len: unsigned(len),
            head: body.to_owned(),
        };
        if options.blob_refs && !verify {
            return Ok(Checked::Blob(reference, None));
        }
        let found = tx.query_typed_opt(
            &self.sql.blob,
            &[(session.as_uuid(), Type::UUID), (&blob, Type::BYTEA)],
        )?;
        let problem =
            |problem: BlobFault| Ok(Checked::Problem(CorruptReason::Blob { id, problem }));
        let Some(found) = found else {
            return problem(BlobFault::Missing);
        };
        let blob_len: i64 = found.try_get(0)?;
        let blob_crc = u32::from_ne_bytes(found.try_get::<_, i32>(1)?.to_ne_bytes());
        let data: Vec<u8> = found.try_get(2)?;
        if blob_len != len || data.len() as u64 != unsigned(len) {
            return problem(BlobFault::Length {
                expected: unsigned(len),
                found: data.len() as u64,
            });
        }
        let data_crc = crc32fast::hash(&data);
        if data_crc != blob_crc {
            return problem(BlobFault::Crc {
                stored: blob_crc,
                computed: data_crc,
            });
        }
        if verify && BlobId::of(&data) != id {
            return problem(BlobFault::Hash {
                found: BlobId::of(&data),
            });
        }
        if !data.starts_with(body.as_bytes()) {
            return problem(BlobFault::HeadMismatch);
        }
        match String::from_utf8(data) {
            Ok(_) if options.blob_refs => Ok(Checked::Blob(reference, None)),
            Ok(text) => Ok(Checked::Blob(reference, Some(text))),
            Err(_) => problem(BlobFault::NotText),
        }
    }

    pub(crate) fn segment_exists(&self, session: SessionId, segment: SegmentId) -> Result<bool> {
        self.run(
            "look up",
            &|| self.target(session, segment),
            Access::Read,
            |c| {
                Ok(c.query_typed_opt(
                    &self.sql.exists,
                    &[
                        (session.as_uuid(), Type::UUID),
                        (segment.as_uuid(), Type::UUID),
                    ],
                )?
                .is_some())
            },
        )
    }

    pub(crate) fn sessions(&self) -> Result<Vec<SessionId>> {
        self.run(
            "list sessions of",
            &|| format!("{} schema {}", self.server, self.schema),
            Access::Read,
            |c| {
                c.query_typed(&self.sql.sessions, &[])?
                    .iter()
                    .map(|r| Ok(SessionId::from_uuid(r.try_get(0)?)))
                    .collect()
            },
        )
    }

    pub(crate) fn segments(&self, session: SessionId) -> Result<Vec<SegmentInfo>> {
        self.run(
            "list segments of",
            &|| self.session_target(session),
            Access::Read,
            |c| {
                let rows = c.query_typed(&self.sql.segments, &[(session.as_uuid(), Type::UUID)])?;
                if rows.is_empty() {
                    return Err(Fail::Store(Error::SessionNotFound(session)));
                }
                let mut out = Vec::with_capacity(rows.len());
                for r in &rows {
                    let Some(id) = r.try_get::<_, Option<uuid::Uuid>>(0)? else {
                        continue; // the session has no segment
                    };
                    let fork_of: Option<uuid::Uuid> = r.try_get(6)?;
                    let fork_at: Option<i64> = r.try_get(7)?;
                    out.push(SegmentInfo {
                        session,
                        segment: SegmentId::from_uuid(id),
                        tip: Tip {
                            count: unsigned(r.try_get(1)?),
                            generation: unsigned(r.try_get(2)?),
                        },
                        bytes: unsigned(r.try_get(3)?),
                        modified: from_us(r.try_get(4)?),
                        created_ms: unsigned(r.try_get(5)?),
                        fork: fork_of.map(|source| Lineage {
                            segment: SegmentId::from_uuid(source),
                            at: fork_at.map_or(0, unsigned),
                        }),
                        damage: None,
                    });
                }
                Ok(out)
            },
        )
    }

    pub(crate) fn session_of(&self, segment: SegmentId) -> Result<Option<SessionId>> {
        self.run(
            "find the session of",
            &|| format!("{} schema {} segment {segment}", self.server, self.schema),
            Access::Read,
            |c| {
                c.query_typed_opt(&self.sql.find_session, &[(segment.as_uuid(), Type::UUID)])?
                    .map(|r| Ok(SessionId::from_uuid(r.try_get(0)?)))
                    .transpose()
            },
        )
    }

    pub(crate) fn modified(&self, session: SessionId) -> Result<SystemTime> {
        self.run(
            "read the modification time of",
            &|| self.session_target(session),
            Access::Read,
            |c| {
                let row = c
                    .query_typed_opt(&self.sql.modified, &[(session.as_uuid(), Type::UUID)])?
                    .ok_or(Fail::Store(Error::SessionNotFound(session)))?;
                Ok(from_us(row.try_get::<_, Option<i64>>(0)?.unwrap_or(0)))
            },
        )
    }
}

/// Microseconds since the epoch (the server's clock) as a `SystemTime`.
fn from_us(us: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_micros(unsigned(us))
}
