//! Replay and verify: readers, which take the shared lock only to read a committed length and
//! never write. Verify walks a read-only mapping of the committed bytes where the medium maps
//! files (`OsFs`), and reads them where it does not or the mapping fails.

use std::ops::ControlFlow;

use super::blobs::{BlobDir, BlobFault, Check};
use super::cache::Key;
use super::seam::{FileSystem, MappedChunk};
use super::snapshot::with_snapshot;
use super::tree::file_name;
use super::FsStore;
use crate::blob::BlobRef;
use crate::codec::{self, FileKind};
use crate::error::CorruptReason;
use crate::scan::{self, Checker, Delivery, Identity};
use crate::{
    Body, Entry, Error, ReadMode, ReplayOptions, Result, ScanReport, SegmentId, SessionId, Sink,
};

impl<F: FileSystem> FsStore<F> {
    /// Streams a segment's (or trace's) entries into `sink`. A missing trace of an existing
    /// segment is an empty one.
    pub(crate) fn replay_file(
        &self,
        key: Key,
        options: &ReplayOptions,
        sink: &mut Sink<'_>,
    ) -> Result<ScanReport> {
        let (session, segment, kind) = key;
        let identity = Identity {
            kind,
            session,
            segment,
        };
        let missing = || -> Result<ScanReport> {
            if kind == FileKind::Trace && self.segment_exists(session, segment)? {
                return Ok(ScanReport::default());
            }
            Err(Error::SegmentNotFound { session, segment })
        };
        let Some(dir) = self.tree.session(session)? else {
            return missing();
        };
        let name = file_name(segment, kind);
        let Some((snapshot, len)) = with_snapshot(&self.tree, &dir, &name, |_, size| Ok(size))?
        else {
            return missing();
        };
        let reader = snapshot.reader(&self.tree.fs);
        let path = &snapshot.path;
        let checker = Checker::new(options.mode, options.from_seq, true, Some(identity));
        // From a sequence number on: find its line by binary search instead of reading (and
        // checking) everything before it. The header is still read and checked.
        let (start, checker) = match options.from_seq {
            0 => (0, checker),
            target => {
                let (header, header_end) = reader.header(identity)?;
                match reader.seek_seq(header_end, len, target)? {
                    Some((offset, seq)) if offset > header_end => {
                        (offset, checker.resumed(&header, seq, offset))
                    }
                    _ => (0, checker),
                }
            }
        };
        let blobs = BlobDir::new(&self.tree, &dir, self.options.max_entry_bytes);
        let (mut report, _) = reader.scan(start, len, checker, &mut |delivery| match delivery {
            Delivery::Entry {
                seq,
                appended_ms,
                json,
            } => sink(Entry {
                seq,
                appended_ms,
                body: Body::Inline(json),
            }),
            // Not read, but looked for: a line whose blob is not there is where an interrupted
            // tail begins (or damage) for this reader as for every other.
            Delivery::Blob {
                seq,
                appended_ms,
                reference,
                verdict,
            } if options.blob_refs => match blobs.present(&reference.sha256, reference.len)? {
                Ok(()) => sink(Entry {
                    seq,
                    appended_ms,
                    body: Body::Blob {
                        reference: &reference,
                        json: None,
                    },
                }),
                Err(problem) => {
                    verdict.report(CorruptReason::Blob {
                        id: reference.sha256,
                        problem,
                    });
                    Ok(ControlFlow::Continue(()))
                }
            },
            Delivery::Blob {
                seq,
                appended_ms,
                reference,
                verdict,
                ..
            } => match resolve(&blobs, &reference)? {
                Ok(json) => sink(Entry {
                    seq,
                    appended_ms,
                    body: Body::Blob {
                        reference: &reference,
                        json: Some(&json),
                    },
                }),
                // The checker decides: damage, or part of an interrupted tail.
                Err(reason) => {
                    verdict.report(reason);
                    Ok(ControlFlow::Continue(()))
                }
            },
        })?;
        report.path = Some(path.clone());
        Ok(report)
    }

    /// CRC, shape and sequence of every line, and every blob: over a mapping of the committed
    /// bytes where the medium offers one, read in bounded chunks where it does not.
    pub(crate) fn verify_segment(
        &self,
        session: SessionId,
        segment: SegmentId,
    ) -> Result<ScanReport> {
        let identity = Identity {
            kind: FileKind::Segment,
            session,
            segment,
        };
        let not_found = || Error::SegmentNotFound { session, segment };
        let dir = self.tree.session(session)?.ok_or_else(not_found)?;
        let name = file_name(segment, FileKind::Segment);
        let snapshot = with_snapshot(&self.tree, &dir, &name, |reader, size| {
            Ok((size, reader.committed_end(size)?))
        })?;
        let (snapshot, (size, committed)) = snapshot.ok_or_else(not_found)?;
        let fs = &self.tree.fs;
        let reader = snapshot.reader(fs);
        let path = &snapshot.path;
        let checker = Checker::new(ReadMode::Tolerant, 0, false, Some(identity));
        let blobs = BlobDir::new(&self.tree, &dir, self.options.max_entry_bytes);
        let mut check = |d: Delivery<'_>| check_blob(&blobs, Check::Fully, d);

        let mut mapped = checker;
        let walked = fs.map_chunks(&snapshot.file, committed, &mut |base, chunk| match chunk {
            MappedChunk::Lines(lines) => {
                scan::feed(lines, base, &mut mapped, &mut check, path).map(|_| ())
            }
            MappedChunk::TooLong(len) => mapped
                .oversize(base, len)
                .map_err(|s| scan::stop_to_error(s, path)),
        });
        let mut report = match walked {
            Some(walked) => {
                walked?;
                let mut tail = vec![
                    0u8;
                    usize::try_from((size - committed).min(codec::MAX_LINE as u64))
                        .unwrap_or(0)
                ];
                let n = reader.read_at_most(&mut tail, committed)?;
                tail.truncate(n);
                scan::finish_scan(mapped, committed, &tail, size - committed, path)?.0
            }
            // No mapping: the same checks over the same bytes, read in bounded chunks.
            None => {
                let checker = Checker::new(ReadMode::Tolerant, 0, false, Some(identity));
                reader.scan(0, size, checker, &mut check)?.0
            }
        };
        report.path = Some(path.clone());
        Ok(report)
    }
}

/// Reads the entry a blob line refers to. `Ok(Err(reason))` if the blob is missing, damaged,
/// or not text.
fn resolve<F: FileSystem>(
    blobs: &BlobDir<'_, F>,
    reference: &BlobRef,
) -> Result<std::result::Result<String, CorruptReason>> {
    let fault = match blobs.read(&reference.sha256, Some(reference.len))? {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(json) => return Ok(Ok(json)),
            Err(_) => BlobFault::NotText,
        },
        Err(fault) => fault,
    };
    Ok(Err(CorruptReason::Blob {
        id: reference.sha256,
        problem: fault,
    }))
}

/// For a blob line, checks its blob as `check` says and tells the checker if it is missing or
/// does not match (the checker decides whether that is damage or part of an interrupted tail):
/// what verify and repair ([`Check::Fully`]) and recovery ([`Check::AsRead`]) do with every
/// blob line (replay reads the blob instead). The blob is checked while it is read, never held.
pub(crate) fn check_blob<F: FileSystem>(
    blobs: &BlobDir<'_, F>,
    check: Check,
    delivery: Delivery<'_>,
) -> Result<ControlFlow<()>> {
    if let Delivery::Blob {
        reference, verdict, ..
    } = delivery
    {
        if let Err(problem) = blobs.check_entry(&reference.sha256, reference.len, check)? {
            verdict.report(CorruptReason::Blob {
                id: reference.sha256,
                problem,
            });
        }
    }
    Ok(ControlFlow::Continue(()))
}

/// A line sink that takes nothing: for scans that only check.
#[allow(clippy::unnecessary_wraps, reason = "has the shape of a line sink")]
pub(crate) fn skip(_: Delivery<'_>) -> Result<ControlFlow<()>> {
    Ok(ControlFlow::Continue(()))
}
