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
//! Features: `testing` (the conformance suite, `annals::testing`), `fault-injection` (named failure
//! points in the filesystem store, for tests of failure handling).
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
mod mem;
mod scan;
mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use blob::{Attachment, AttachmentMeta, BlobId, BlobRef, GcReport};
pub use codec::{FileKind, Header, Lineage, FORMAT_VERSION, MAX_INLINE, MAX_LINE};
pub use error::{BackendErrorKind, CorruptReason, Error, Result};
pub use fs::{Durability, FsOptions, FsStore, Repair};
#[cfg(feature = "fault-injection")]
pub use fs::{FailNth, Fault, FaultPlan, InjectionPoint as FaultPoint, IoOp};
pub use ids::{SegmentId, SessionId};
pub use mem::MemStore;
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
        scan::Delivery::Entry { seq, json } => sink(Entry {
            seq,
            appended_ms: None,
            body: Body::Inline(json),
        }),
        scan::Delivery::Blob { seq, reference, .. } => sink(Entry {
            seq,
            appended_ms: None,
            body: Body::Blob {
                reference: &reference,
                json: None,
            },
        }),
    };
    fs::scan_slice(lines, shown, tail.len() as u64, checker, &mut deliver, name).map(
        |(mut report, _)| {
            report.path = Some(name.to_path_buf());
            report
        },
    )
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
