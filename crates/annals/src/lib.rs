//! # annals
//!
//! An append-only segment-log storage engine for AI-agent runtimes. A *session* (one
//! conversation) holds *segments* (linear histories; a fork starts a new one); every entry of a
//! segment is one line of JSON appended to the segment's file, with a CRC and a sequence number.
//!
//! - [`Store`]: the sync, object-safe, `Send + Sync` trait; [`StoreExt`] adds typed helpers for
//!   any `Serialize`/`DeserializeOwned` entry type.
//! - [`FsStore`]: the embedded default, one directory per session, one `write(2)` with
//!   `O_APPEND` per append.
//! - [`MemStore`]: the same semantics in memory, for tests.
//! - [`SegmentWriter`]: the concurrent-writer detector, and forking as the reaction to it.
//! - Entries of any size: those too long for one line are kept as content-addressed blobs
//!   ([`BlobRef`]) and re-inflated on replay; attachments share the blob store
//!   ([`Store::put_attachment`], [`Store::gc_blobs`]).
//!
//! Features: `testing` (the conformance suite, `annals::testing`), `fault-injection` (the
//! filesystem store over `FaultFs`, which fails any call through its I/O seam on a plan, or
//! over `SimFs`, a simulated file system that can lose power, for tests of failure handling).
//!
//! ```
//! use annals::{FsStore, SessionId, SegmentId, Store, StoreExt};
//! # fn main() -> annals::Result<()> {
//! # let dir = tempfile::tempdir().unwrap();
//! let store = FsStore::open(dir.path())?;
//! let (session, segment) = (SessionId::new(), SegmentId::new());
//! store.create_empty(session, segment)?;
//! store.append(session, segment, &serde_json::json!({"role": "user", "text": "hi"}))?;
//! let entries: Vec<serde_json::Value> = store.read(session, segment)?;
//! assert_eq!(entries[0]["text"], "hi");
//! # Ok(()) }
//! ```
//!
//! The on-disk format is described in `docs/FORMAT.md`, durability in `docs/DURABILITY.md`.

mod blob;
pub mod codec;
mod error;
mod fs;
mod ids;
mod lease;
mod mem;
mod recovery;
mod scan;
mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use blob::{Attachment, AttachmentMeta, BlobId, BlobRef, BlobUsage, GcReport};
pub use codec::{FileKind, Header, Lineage, Version, FORMAT_VERSION, MAX_INLINE, MAX_LINE};
pub use error::{BackendErrorKind, BlobFault, CorruptReason, Damage, Error, HeaderProblem, Result};
pub use fs::{
    Access, BlobCompression, DirEntry, Durability, EntryKind, FileSystem, FsOptions, FsStore,
    LockKind, Lookup, MappedChunk, OsDir, OsFile, OsFs, Recovered, Repair, Stat,
};
#[cfg(feature = "fault-injection")]
pub use fs::{
    Call, CountCalls, Crash, FailNth, Fault, FaultDir, FaultFile, FaultFs, FaultPlan, FullDisk, Op,
    SimDir, SimFile, SimFs,
};
pub use ids::{SegmentId, SessionId};
pub use lease::{Lease, LeaseHolder, LeaseOptions, DEFAULT_LOCK_WAIT};
pub use mem::MemStore;
pub use recovery::{plan as recovery_plan, CutReason, RecoveryMode, RecoveryPlan, TailKind};
pub use store::{
    Body, Entry, EntryMeta, Problem, RawEntry, ReadMode, ReplayOptions, ScanReport, SegmentInfo,
    SegmentWriter, Sink, SinkResult, Store, StoreExt, Tip, TornTail, DEFAULT_MAX_ENTRY_BYTES,
};
/// The UUID type behind [`SessionId`] and [`SegmentId`] ([`SessionId::from_uuid`],
/// [`SessionId::as_uuid`]), so users need not depend on the `uuid` crate themselves.
pub use uuid::Uuid;

/// Checks an in-memory image of a segment or trace file, exactly as a replay of that file
/// would, and streams its entries into `sink` (entries kept as blobs as their references only,
/// as with [`ReplayOptions::blob_refs`]: there is no blob store here). `name` is only used in
/// error messages. Pure: no I/O. Useful for tools that hold a file's bytes, and for fuzzing the
/// reader.
///
/// # Errors
/// [`Error::Corrupt`] in strict mode, [`Error::UnsupportedVersion`], the sink's error.
pub fn check_image(
    name: &std::path::Path,
    bytes: &[u8],
    options: &ReplayOptions,
    sink: &mut Sink<'_>,
) -> Result<ScanReport> {
    let committed = memchr::memrchr(b'\n', bytes).map_or(0, |nl| nl + 1);
    let (lines, tail) = bytes.split_at(committed);
    let checker = scan::Checker::new(options.mode, options.from_seq, true, None);
    let shown = tail.get(..tail.len().min(MAX_LINE)).unwrap_or_default();
    // There is no blob store here: entries kept as blobs come out as their references.
    let mut deliver = |delivery: scan::Delivery<'_>| match delivery {
        scan::Delivery::Entry {
            seq,
            appended_ms,
            json,
        } => sink(Entry {
            seq,
            appended_ms,
            body: Body::Inline(json),
        }),
        scan::Delivery::Blob {
            seq,
            appended_ms,
            reference,
            ..
        } => sink(Entry {
            seq,
            appended_ms,
            body: Body::Blob {
                reference: &reference,
                json: None,
            },
        }),
    };
    scan::scan_slice(lines, shown, tail.len() as u64, checker, &mut deliver, name).map(
        |(mut report, _)| {
            report.path = Some(name.to_path_buf());
            report
        },
    )
}

/// Not part of the API: the line checks behind the readers, for annals' own fuzz targets and
/// tests. Anything here may change in any release.
#[doc(hidden)]
pub mod unstable {
    pub use crate::codec::decode::{
        check_crc, check_entry, check_entry_line, check_line_as, decode_header, decode_line,
        is_plausible_torn_tail, EntryLine, Line, PREFIX_LEN,
    };
}

/// The README's code compiles (it is part of the doc tests).
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

/// Milliseconds since the Unix epoch, for headers.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
