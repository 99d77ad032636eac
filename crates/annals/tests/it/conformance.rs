//! The conformance suite (`annals::testing`) against every backend of this crate, and proof
//! that the suite catches a store that gets the semantics wrong.

use std::time::SystemTime;

use annals::testing::{self, Fixture};
use annals::{
    Attachment, AttachmentMeta, BlobId, Durability, Error, FsOptions, GcReport, MemStore, RawEntry,
    ReplayOptions, Result, ScanReport, SegmentId, SegmentInfo, SessionId, Sink, Store, Tip,
};

/// The default maximum (64 MiB) is exercised by `fs_buffered`; the other runs use a smaller one
/// so that the entries just over it stay cheap to build in debug builds.
const SMALL_MAX: usize = 1 << 20;

mod mem {
    annals::conformance_tests!(annals::MemStore::with_max_entry_bytes(super::SMALL_MAX));
}

mod fs_buffered {
    annals::conformance_tests!(annals::testing::temp_fs_store(annals::FsOptions::default()));
}

mod fs_sync {
    annals::conformance_tests!(annals::testing::temp_fs_store(annals::FsOptions {
        durability: annals::Durability::Sync,
        max_entry_bytes: super::SMALL_MAX,
        ..annals::FsOptions::default()
    }));
}

/// Blobs compressed (format 4's zstd records).
mod fs_zstd {
    annals::conformance_tests!(annals::testing::temp_fs_store(annals::FsOptions {
        blob_compression: annals::BlobCompression::ZSTD,
        max_entry_bytes: super::SMALL_MAX,
        ..annals::FsOptions::default()
    }));
}

/// One open file at a time: every operation on another segment evicts the cached handle, so
/// the suite runs through the reopen paths.
mod fs_one_open_file {
    annals::conformance_tests!(annals::testing::temp_fs_store(annals::FsOptions {
        max_open_files: 1,
        max_entry_bytes: super::SMALL_MAX,
        ..annals::FsOptions::default()
    }));
}

#[test]
fn run_all_passes_for_every_backend_configuration() {
    testing::run_all(|| MemStore::with_max_entry_bytes(SMALL_MAX).into());
    testing::run_all(|| {
        testing::temp_fs_store(FsOptions {
            durability: Durability::Sync,
            max_open_files: 1,
            max_entry_bytes: SMALL_MAX,
            ..FsOptions::default()
        })
    });
}

#[test]
fn scenario_table_lists_every_scenario_once() {
    let names: std::collections::BTreeSet<&str> =
        testing::SCENARIOS.iter().map(|s| s.name).collect();
    assert_eq!(names.len(), testing::SCENARIOS.len());
    assert!(names.len() >= 30, "{names:?}");
}

// ---------------------------------------------------------------------------------------------
// The suite has teeth: each broken store below fails the scenario that pins what it breaks.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flaw {
    /// None: the wrapper only delegates (the control).
    None,
    /// `append_if` compares counts only, so an append-then-truncate goes unnoticed.
    DetectorIgnoresGeneration,
    /// `create_segment` on an existing segment appends the initial entries instead of failing.
    CreateAppendsToExisting,
    /// Sessions listed oldest first.
    SessionsOldestFirst,
    /// Refuses an entry exactly at the store's maximum size.
    LimitOffByOne,
    /// Writes the entries of a batch that fit before refusing the one that does not.
    BatchNotAtomic,
    /// `delete_session` succeeds for a session that does not exist.
    DeleteMissingSucceeds,
    /// Trace events go to the log.
    TraceIntoLog,
    /// `from_seq` is ignored.
    ReplayIgnoresFromSeq,
}

/// A `MemStore` with one deliberate flaw.
struct Flawed {
    inner: MemStore,
    flaw: Flaw,
}

impl Store for Flawed {
    fn create_segment(
        &self,
        session: SessionId,
        segment: SegmentId,
        initial: &[RawEntry],
    ) -> Result<Tip> {
        if self.flaw == Flaw::CreateAppendsToExisting && self.inner.exists(session, segment)? {
            return self.inner.append_batch_raw(session, segment, initial);
        }
        self.inner.create_segment(session, segment, initial)
    }

    fn append_batch_raw(
        &self,
        session: SessionId,
        segment: SegmentId,
        entries: &[RawEntry],
    ) -> Result<Tip> {
        self.inner.tip(session, segment)?;
        match self.flaw {
            Flaw::LimitOffByOne => {
                let limit = self.inner.max_entry_bytes();
                if let Some(e) = entries.iter().find(|e| e.len() >= limit) {
                    return Err(Error::EntryTooLarge {
                        size: e.len(),
                        limit,
                    });
                }
            }
            Flaw::BatchNotAtomic => {
                for e in entries {
                    self.inner.append_raw(session, segment, e)?;
                }
                return self.inner.tip(session, segment);
            }
            _ => {}
        }
        self.inner.append_batch_raw(session, segment, entries)
    }

    fn append_if(
        &self,
        session: SessionId,
        segment: SegmentId,
        expected: Tip,
        entries: &[RawEntry],
    ) -> Result<Tip> {
        if self.flaw == Flaw::DetectorIgnoresGeneration {
            let found = self.inner.tip(session, segment)?;
            if found.count != expected.count {
                return Err(Error::ConcurrentWriter {
                    segment,
                    expected,
                    found,
                });
            }
            return self.inner.append_if(session, segment, found, entries);
        }
        self.inner.append_if(session, segment, expected, entries)
    }

    fn replay_raw(
        &self,
        session: SessionId,
        segment: SegmentId,
        options: &ReplayOptions,
        sink: &mut Sink<'_>,
    ) -> Result<ScanReport> {
        let mut options = *options;
        if self.flaw == Flaw::ReplayIgnoresFromSeq {
            options.from_seq = 0;
        }
        self.inner.replay_raw(session, segment, &options, sink)
    }

    fn tip(&self, session: SessionId, segment: SegmentId) -> Result<Tip> {
        self.inner.tip(session, segment)
    }

    fn truncate(&self, session: SessionId, segment: SegmentId, keep: u64) -> Result<Tip> {
        self.inner.truncate(session, segment, keep)
    }

    fn truncate_if(
        &self,
        session: SessionId,
        segment: SegmentId,
        expected: Tip,
        keep: u64,
    ) -> Result<Tip> {
        self.inner.truncate_if(session, segment, expected, keep)
    }

    fn sync(&self, session: SessionId, segment: SegmentId) -> Result<()> {
        self.inner.sync(session, segment)
    }

    fn lease(
        &self,
        session: SessionId,
        segment: SegmentId,
        options: &annals::LeaseOptions,
    ) -> Result<Box<dyn annals::Lease>> {
        self.inner.lease(session, segment, options)
    }

    fn fork(&self, session: SessionId, source: SegmentId, at: u64, into: SegmentId) -> Result<Tip> {
        self.inner.fork(session, source, at, into)
    }

    fn exists(&self, session: SessionId, segment: SegmentId) -> Result<bool> {
        self.inner.exists(session, segment)
    }

    fn list_sessions(&self) -> Result<Vec<SessionId>> {
        let mut sessions = self.inner.list_sessions()?;
        if self.flaw == Flaw::SessionsOldestFirst {
            sessions.reverse();
        }
        Ok(sessions)
    }

    fn list_segments(&self, session: SessionId) -> Result<Vec<SegmentInfo>> {
        self.inner.list_segments(session)
    }

    fn find_session(&self, segment: SegmentId) -> Result<Option<SessionId>> {
        self.inner.find_session(segment)
    }

    fn delete_session(&self, session: SessionId) -> Result<()> {
        match self.inner.delete_session(session) {
            Err(Error::SessionNotFound(_)) if self.flaw == Flaw::DeleteMissingSucceeds => Ok(()),
            other => other,
        }
    }

    fn session_modified(&self, session: SessionId) -> Result<SystemTime> {
        self.inner.session_modified(session)
    }

    fn append_trace_raw(
        &self,
        session: SessionId,
        segment: SegmentId,
        events: &[RawEntry],
    ) -> Result<()> {
        if self.flaw == Flaw::TraceIntoLog {
            return self.append_batch_raw(session, segment, events).map(|_| ());
        }
        self.inner.append_trace_raw(session, segment, events)
    }

    fn replay_trace_raw(
        &self,
        session: SessionId,
        segment: SegmentId,
        options: &ReplayOptions,
        sink: &mut Sink<'_>,
    ) -> Result<ScanReport> {
        self.inner.replay_trace_raw(session, segment, options, sink)
    }

    fn put_attachment(
        &self,
        session: SessionId,
        bytes: &[u8],
        meta: &AttachmentMeta,
    ) -> Result<Attachment> {
        self.inner.put_attachment(session, bytes, meta)
    }

    fn list_attachments(&self, session: SessionId) -> Result<Vec<Attachment>> {
        self.inner.list_attachments(session)
    }

    fn get_blob(&self, session: SessionId, id: &BlobId) -> Result<Vec<u8>> {
        self.inner.get_blob(session, id)
    }

    fn gc_blobs(&self, session: SessionId, dry_run: bool) -> Result<GcReport> {
        self.inner.gc_blobs(session, dry_run)
    }

    fn max_entry_bytes(&self) -> usize {
        self.inner.max_entry_bytes()
    }

    fn is_durable(&self) -> bool {
        self.inner.is_durable()
    }
}

/// Runs the whole suite against a store with `flaw` and returns the failing scenarios.
fn failing_scenarios(flaw: Flaw) -> Vec<&'static str> {
    testing::check_all(|| {
        Fixture::new(Flawed {
            // A small maximum keeps the oversized entries of nine runs of the suite cheap.
            inner: MemStore::with_max_entry_bytes(1 << 20),
            flaw,
        })
    })
    .into_iter()
    .map(|f| f.scenario)
    .collect()
}

fn assert_caught(flaw: Flaw, by: &str) {
    let failing = failing_scenarios(flaw);
    assert!(
        failing.contains(&by),
        "{flaw:?} should fail {by}; failing: {failing:?}"
    );
}

#[test]
fn suite_catches_a_detector_that_ignores_the_generation() {
    assert_caught(
        Flaw::DetectorIgnoresGeneration,
        "append_then_truncate_back_to_the_same_count_is_still_detected",
    );
}

#[test]
fn suite_catches_a_create_that_clobbers() {
    assert_caught(
        Flaw::CreateAppendsToExisting,
        "create_segment_refuses_to_clobber_and_changes_nothing",
    );
}

#[test]
fn suite_catches_sessions_listed_oldest_first() {
    assert_caught(
        Flaw::SessionsOldestFirst,
        "listings_are_newest_first_and_describe_each_segment",
    );
}

#[test]
fn suite_catches_a_line_limit_off_by_one() {
    assert_caught(
        Flaw::LimitOffByOne,
        "entry_over_the_store_maximum_is_refused_with_nothing_written",
    );
}

#[test]
fn suite_catches_a_batch_that_is_not_all_or_nothing() {
    assert_caught(
        Flaw::BatchNotAtomic,
        "batch_with_one_entry_over_the_maximum_writes_nothing",
    );
}

#[test]
fn suite_catches_deleting_a_missing_session_silently() {
    assert_caught(
        Flaw::DeleteMissingSucceeds,
        "deleted_session_is_not_found_anywhere_and_can_be_created_again",
    );
}

#[test]
fn suite_catches_a_trace_written_into_the_log() {
    assert_caught(
        Flaw::TraceIntoLog,
        "trace_is_separate_from_the_log_and_survives_truncate",
    );
}

#[test]
fn suite_catches_a_replay_that_ignores_from_seq() {
    assert_caught(
        Flaw::ReplayIgnoresFromSeq,
        "replay_from_seq_delivers_later_entries_and_checks_all",
    );
}

#[test]
fn the_flawless_wrapper_passes_so_each_flaw_is_what_fails() {
    assert_eq!(failing_scenarios(Flaw::None), Vec::<&str>::new());
}
