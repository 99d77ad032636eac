//! The one error type of the crate. Every variant carries what a person needs to act on it:
//! which file, which line, which byte offset, what was expected and what was found.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use crate::{EntryKind, SegmentId, SessionId};

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a line (or a file) is not what annals wrote. Used both in [`Error::Corrupt`] and in the
/// [`Problem`](crate::Problem)s of a tolerant scan.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CorruptReason {
    /// The line does not start with the fixed `{"crc":"xxxxxxxx",` prefix.
    BadPrefix,
    /// The CRC stored in the line does not match the CRC of the bytes that follow it.
    CrcMismatch {
        /// CRC written in the line.
        stored: u32,
        /// CRC computed over the line's covered bytes.
        computed: u32,
    },
    /// The CRC matched but the rest of the line is not a well-formed annals line.
    Malformed(&'static str),
    /// A complete line longer than the 4096-byte limit (annals never writes one).
    TooLong {
        /// Length of the line in bytes, without its newline.
        len: u64,
    },
    /// The sequence number is not the next one: entries are missing or were written by two
    /// writers that did not see each other.
    SeqMismatch {
        /// The sequence number this line should carry.
        expected: u64,
        /// The sequence number it does carry.
        found: u64,
    },
    /// The first line of the file is not a valid header.
    BadHeader(HeaderProblem),
    /// A header line where only entries may stand.
    UnexpectedHeader,
    /// The header names another session or segment than the file's place in the store.
    WrongIdentity {
        /// What the file's path says.
        expected: String,
        /// What the header says.
        found: String,
    },
    /// An unterminated tail that cannot be a torn annals line (too long, or not shaped like one).
    /// A real torn tail is not corruption and is reported as a [`TornTail`](crate::TornTail).
    BadTail {
        /// Length of the unterminated bytes.
        len: u64,
    },
    /// The file is empty or holds no complete header line.
    MissingHeader,
    /// The line refers to a blob that is missing or does not match its reference.
    Blob {
        /// The blob the line names.
        id: crate::BlobId,
        /// What is wrong with it.
        problem: BlobFault,
    },
    /// Format 2: this line does not continue the write whose first lines precede it (its `more`
    /// is not one less than the line before said), so that write lost its last lines.
    BrokenWrite {
        /// Lines of the write that came before this one.
        lines: u64,
        /// Lines the write said it has.
        of: u64,
        /// The `more` this line carries (0 when it has none).
        more: u64,
    },
    /// An interrupted last write that [`RecoveryMode::AbsoluteConsistency`](crate::RecoveryMode)
    /// does not cut (every other mode does): not damage to readers.
    InterruptedWrite(crate::TailKind),
    /// Format 2: the file ends inside a write: its first lines are there, its last are not.
    UnfinishedWrite {
        /// Lines of the write that are there.
        lines: u64,
        /// Lines the write said it has.
        of: u64,
    },
}

impl CorruptReason {
    /// Could a write that a crash or power cut interrupted have left this? True for what
    /// partly persisted pages leave behind (bytes that fail the frame or CRC check, over-long
    /// runs where zeros swallowed newlines, unterminated bytes, a write whose last lines are
    /// missing, a blob that never reached the disk); false for what only a writer or a person
    /// can make (a CRC-valid line of the wrong shape, a sequence number out of order, a line
    /// whose `more` does not continue its write, a header problem). Only the first kind can begin an interrupted tail (docs/FORMAT.md, *Recovery*).
    #[must_use]
    pub fn may_be_interrupted_write(&self) -> bool {
        matches!(
            self,
            Self::BadPrefix
                | Self::CrcMismatch { .. }
                | Self::TooLong { .. }
                | Self::BadTail { .. }
                | Self::Blob { .. }
                | Self::UnfinishedWrite { .. }
        )
    }
}

impl fmt::Display for CorruptReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadPrefix => {
                f.write_str("line does not start with the {\"crc\":\"xxxxxxxx\", prefix")
            }
            Self::CrcMismatch { stored, computed } => write!(
                f,
                "CRC mismatch: line says {stored:08x}, its bytes hash to {computed:08x}"
            ),
            Self::Malformed(what) => write!(f, "malformed line: {what}"),
            Self::TooLong { len } => write!(
                f,
                "line of {len} bytes exceeds the limit of 4096 bytes with its newline"
            ),
            Self::SeqMismatch { expected, found } => {
                if found < expected {
                    write!(f, "sequence number {found} repeats or goes back (expected {expected}): two writers appended without seeing each other")
                } else if *found == expected + 1 {
                    write!(f, "sequence number {found} skips ahead (expected {expected}): entry {expected} is missing")
                } else {
                    write!(f, "sequence number {found} skips ahead (expected {expected}): entries {expected} to {} are missing", found - 1)
                }
            }
            Self::BadHeader(why) => write!(f, "bad header line: {why}"),
            Self::UnexpectedHeader => f.write_str("a header line after the first line"),
            Self::WrongIdentity { expected, found } => {
                write!(f, "header belongs to {found}, but the file is {expected}")
            }
            Self::BadTail { len } => write!(
                f,
                "{len} unterminated bytes at the end that cannot be a torn annals line"
            ),
            Self::MissingHeader => f.write_str("file has no complete header line"),
            Self::Blob { id, problem } => write!(f, "blob {id}: {problem}"),
            Self::BrokenWrite { lines, of, more } => write!(
                f,
                "a write of {of} lines breaks off after {lines}: this line says {more} more \
                 follow, the write needs {}",
                of.saturating_sub(*lines).saturating_sub(1)
            ),
            Self::InterruptedWrite(kind) => write!(
                f,
                "the last write was interrupted ({kind}); this recovery mode cuts only torn lines"
            ),
            Self::UnfinishedWrite { lines, of } => write!(
                f,
                "the file ends inside a write: {lines} of its {of} lines are there"
            ),
        }
    }
}

/// What is wrong with a header line.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderProblem {
    /// The first line is an entry line, or another line that does not begin with `"annals":`.
    NotAHeader,
    /// `"annals":` is not followed by a version number.
    NoVersion,
    /// The line is not a JSON object (serde's words, and the column where it stopped).
    Syntax {
        /// 1-based column in the line.
        column: u64,
        /// What the JSON parser says.
        message: String,
    },
    /// A field every header has is not there.
    MissingField(&'static str),
    /// A field holds a value of the wrong kind.
    BadField {
        /// The field.
        field: &'static str,
        /// What it must hold.
        expected: &'static str,
        /// What it holds (at most 80 bytes of it).
        found: String,
    },
}

impl fmt::Display for HeaderProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAHeader => f.write_str(
                "the first line is not a header (it does not begin with \"annals\": after the CRC)",
            ),
            Self::NoVersion => f.write_str("\"annals\" is not followed by a version number"),
            Self::Syntax { column, message } => {
                write!(f, "not a JSON object at column {column}: {message}")
            }
            Self::MissingField(field) => write!(f, "field \"{field}\" is missing"),
            Self::BadField {
                field,
                expected,
                found,
            } => write!(f, "field \"{field}\" is {found}, expected {expected}"),
        }
    }
}

/// Why a blob could not be served: what a reader found instead of the entry a line refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BlobFault {
    /// There is no blob of that name.
    Missing,
    /// The blob's length is not the one its reference gives.
    Length {
        /// Length the reference gives.
        expected: u64,
        /// Length of the blob.
        found: u64,
    },
    /// The blob's bytes hash to another name than their own (they changed on disk).
    Hash {
        /// What they hash to.
        found: crate::BlobId,
    },
    /// The blob is not UTF-8 text, so it cannot be an entry's JSON.
    NotText,
    /// The checksum stored with the blob does not match its bytes (a cheaper check than the hash,
    /// which backends and readers that store one make on every read).
    Crc {
        /// Checksum stored with the blob.
        stored: u32,
        /// Checksum of its bytes.
        computed: u32,
    },
    /// The blob's bytes do not start with the head its reference keeps: it is another entry's.
    HeadMismatch,
    /// The blob is larger than the store's largest entry, so no reference annals wrote can name
    /// it: it was not read (a reader's memory never depends on what a file claims).
    TooLarge {
        /// Its size.
        found: u64,
        /// The store's largest entry.
        limit: u64,
    },
    /// A compressed pack record whose checksum holds but whose bytes do not decompress to the
    /// length its header gives (format 4): damage from before the record was checksummed.
    Undecodable {
        /// Length its header gives.
        expected: u64,
    },
}

impl fmt::Display for BlobFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => f.write_str("blob file is missing"),
            Self::Length { expected, found } => {
                write!(f, "blob has {found} bytes, its reference says {expected}")
            }
            Self::Hash { found } => write!(f, "blob content hashes to {found}, not to its name"),
            Self::NotText => f.write_str("blob is not UTF-8 text, so it is not an entry's JSON"),
            Self::Crc { stored, computed } => write!(
                f,
                "blob checksum mismatch: stored {stored:08x}, its bytes hash to {computed:08x}"
            ),
            Self::HeadMismatch => {
                f.write_str("blob does not start with the head its reference keeps")
            }
            Self::TooLarge { found, limit } => write!(
                f,
                "blob has {found} bytes, more than the store's largest entry ({limit}): not read"
            ),
            Self::Undecodable { expected } => write!(
                f,
                "compressed blob does not decompress to the {expected} bytes its record gives"
            ),
        }
    }
}

/// Why a listed segment's header or last line could not be read, as
/// [`SegmentInfo::damage`](crate::SegmentInfo::damage) reports it. A listing never fails
/// because one segment is damaged.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Damage {
    /// The header or the last line is not what annals wrote.
    Corrupt(crate::Problem),
    /// The header names a format version this build does not read.
    UnsupportedVersion {
        /// The version found.
        found: u64,
    },
    /// Something other than a regular file stands where the segment's file should.
    NotOurs {
        /// What is there.
        found: EntryKind,
    },
    /// The file could not be read.
    Unreadable {
        /// The kind of the I/O error.
        kind: io::ErrorKind,
        /// The error, as the system worded it.
        message: String,
    },
}

impl Damage {
    /// What a listing reports for a segment whose probe failed with `e`.
    pub(crate) fn of(e: &Error) -> Self {
        match e {
            Error::Corrupt {
                line,
                offset,
                reason,
                ..
            } => Self::Corrupt(crate::Problem {
                line: *line,
                offset: *offset,
                reason: reason.clone(),
            }),
            Error::UnsupportedVersion { found, .. } => Self::UnsupportedVersion { found: *found },
            Error::NotOurs { found, .. } => Self::NotOurs { found: *found },
            Error::Io { source, .. } => Self::Unreadable {
                kind: source.kind(),
                message: e.to_string(),
            },
            other => Self::Unreadable {
                kind: io::ErrorKind::Other,
                message: other.to_string(),
            },
        }
    }
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Corrupt(problem) => problem.fmt(f),
            Self::UnsupportedVersion { found } => {
                write!(f, "format version {found} is not supported by this build")
            }
            Self::NotOurs { found } => write!(f, "{found} stands where the segment file should"),
            Self::Unreadable { message, .. } => f.write_str(message),
        }
    }
}

/// Every error annals returns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system call failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What annals was doing (`"open"`, `"append to"`, `"fsync"`, ...).
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A log file is damaged. Nothing was changed; `annals verify` shows every problem and
    /// `annals repair` cuts the file back to its last good line.
    #[error("{}: line {line} at byte {offset}: {reason}", path.display())]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// 1-based line number in the file (line 1 is the header).
        line: u64,
        /// Byte offset of the start of that line.
        offset: u64,
        /// What is wrong with it.
        reason: CorruptReason,
    },

    /// The file was written by a format version this build does not read.
    #[error("{}: format version {found} is not supported (this build reads version {supported}); upgrade annals", path.display())]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// Version found in its header.
        found: u64,
        /// The version this build reads and writes.
        supported: u32,
    },

    /// The entry is larger than the store's maximum entry size; nothing was written.
    #[error("entry too large: {size} bytes of JSON, the store's limit is {limit}")]
    EntryTooLarge {
        /// Size of the entry's JSON text in bytes.
        size: usize,
        /// The limit.
        limit: usize,
    },

    /// Another writer changed the segment since this writer last looked; nothing was written.
    /// The usual reaction is [`Store::fork`](crate::Store::fork) at the writer's own count.
    #[error("concurrent writer on segment {segment}: expected {expected}, found {found}")]
    ConcurrentWriter {
        /// The segment.
        segment: SegmentId,
        /// What this writer believed the segment's tip was.
        expected: crate::Tip,
        /// What it is.
        found: crate::Tip,
    },

    /// The session does not exist.
    #[error("session {0} not found")]
    SessionNotFound(SessionId),

    /// The segment does not exist in that session.
    #[error("segment {segment} not found in session {session}")]
    SegmentNotFound {
        /// The session searched.
        session: SessionId,
        /// The missing segment.
        segment: SegmentId,
    },

    /// The session has no blob with that id.
    #[error("blob {id} not found in session {session}")]
    BlobNotFound {
        /// The session.
        session: SessionId,
        /// The blob asked for.
        id: crate::BlobId,
    },

    /// `create_segment` or `fork` would clobber an existing segment.
    #[error("segment {segment} already exists in session {session}")]
    SegmentExists {
        /// The session.
        session: SessionId,
        /// The segment that exists.
        segment: SegmentId,
    },

    /// A truncate or fork point lies past the end of the segment.
    #[error("segment {segment} has {count} entries; cannot keep {requested}")]
    BeyondEnd {
        /// The segment.
        segment: SegmentId,
        /// Number of entries asked for.
        requested: u64,
        /// Number of entries it has.
        count: u64,
    },

    /// The segment holds as many entries as sequence numbers can count: its last entry has
    /// sequence number [`MAX_SEQ`](crate::codec::MAX_SEQ) (`2^64 − 2`). Nothing was written:
    /// sequence numbers never wrap and never repeat. Start a new segment.
    #[error("segment {segment} is full: it holds {count} entries, the most sequence numbers can count; nothing was written (they never wrap): start a new segment")]
    SegmentFull {
        /// The segment.
        segment: SegmentId,
        /// Entries it holds.
        count: u64,
    },

    /// An fsync of this file failed earlier (or the rollback of a failed append did). Its state
    /// on disk is unknown, so every later write to it fails with this error until the store is
    /// reopened. Never retried.
    #[error("{}: an earlier {op} failed ({source}); the file's durable state is unknown, reopen the store and verify it", path.display())]
    Poisoned {
        /// The file.
        path: PathBuf,
        /// What failed: `"fsync"`, `"fsync directory"`, `"rollback of a failed append"`.
        op: &'static str,
        /// The error of that call, as the system reported it (its `kind()` and
        /// `raw_os_error()` say whether it was `EIO`, `ENOSPC`, ...).
        #[source]
        source: Arc<io::Error>,
    },

    /// Another writer holds the segment (a lease, or an operation that took longer than this
    /// writer would wait), and it was not given back within the wait time
    /// (`FsOptions::lock_wait`, [`LeaseOptions::wait`](crate::LeaseOptions::wait)). Nothing
    /// was written. Readers are never refused this way.
    #[error("segment {segment} of session {session} is held by another writer{}; gave up after {waited:?}", match holder { Some(h) => format!(" (a lease: {h})"), None => String::from(" (no lease names a holder: an operation in progress, or a program that ignores annals' leases)") })]
    Locked {
        /// The session.
        session: SessionId,
        /// The segment.
        segment: SegmentId,
        /// Who holds it, if a lease does (its record next to the segment, checked live).
        holder: Option<crate::LeaseHolder>,
        /// How long this writer waited.
        waited: std::time::Duration,
    },

    /// Something that is not the store's is where the store keeps a file or directory of its
    /// own: a symbolic link, a FIFO, a socket, a device, a directory where a file belongs or a
    /// file where a directory belongs. annals does not follow it, open it, write through it or
    /// remove it.
    #[error("{}: {found} is in the way where annals keeps {expected}; annals does not follow links or open special files inside its store, and leaves it as it is: move it away", path.display())]
    NotOurs {
        /// The name.
        path: PathBuf,
        /// What is there.
        found: EntryKind,
        /// What annals keeps there.
        expected: EntryKind,
    },

    /// The caller handed in text that is not one JSON value.
    #[error("invalid JSON entry: {0}")]
    InvalidJson(#[source] serde_json::Error),

    /// The caller's value could not be serialized.
    #[error("could not serialize entry: {0}")]
    Serialize(#[source] serde_json::Error),

    /// A stored entry did not deserialize into the caller's type.
    #[error(
        "entry {seq} of segment {segment} does not deserialize into the requested type: {source}"
    )]
    Deserialize {
        /// The segment.
        segment: SegmentId,
        /// Sequence number of the entry.
        seq: u64,
        /// serde's error.
        #[source]
        source: serde_json::Error,
    },

    /// A session or segment id did not parse.
    #[error("invalid {what} {input:?}: {reason}")]
    InvalidId {
        /// Which kind of id.
        what: &'static str,
        /// The text given (first 80 characters).
        input: String,
        /// Why it is not an id.
        reason: String,
    },

    /// The store root is on a file system where `O_APPEND` and `flock` do not give the
    /// guarantees annals relies on (a network or FUSE file system).
    #[error("{}: store root is on {fs}, where appends from several writers can overwrite each other; use a local directory, or set FsOptions::allow_unsafe_fs if only one process on one machine writes", path.display())]
    UnsafeFileSystem {
        /// The root.
        path: PathBuf,
        /// The file system type found.
        fs: &'static str,
    },

    /// A replay's sink stopped it with an error of its own (made with [`Error::sink`]); the
    /// caller's error is the source, and can be taken back with `downcast_ref`.
    #[error("replay stopped by its sink: {0}")]
    Sink(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),

    /// The backend does not offer this operation (a [`Store::lease`](crate::Store::lease) on a
    /// backend without writer leases, say). Nothing was changed; the per-call operations of
    /// the [`Store`](crate::Store) trait still work.
    #[error("{backend} does not support {op}: {why}")]
    Unsupported {
        /// Which backend (`"postgres"`).
        backend: &'static str,
        /// The operation (`"writer leases"`).
        op: &'static str,
        /// Why, and what to use instead.
        why: &'static str,
    },

    /// A backend other than the filesystem (a database server, say) failed.
    #[error("{backend}: {op}: {kind}: {message}{}", if *.outcome_unknown { " (the server may have committed it: check the segment's tip before retrying)" } else { "" })]
    Backend {
        /// Which backend (`"postgres"`).
        backend: &'static str,
        /// What annals was doing (`"append to segment …"` is too long; `"append"`, `"connect"`).
        op: &'static str,
        /// What kind of failure it is, for a caller deciding whether to retry.
        kind: BackendErrorKind,
        /// The backend's own words, with nothing secret in them (no password).
        message: String,
        /// True when the failure came after the request reached the server, so the change may
        /// or may not have been made (a lost connection during a commit).
        outcome_unknown: bool,
    },
}

/// The kind of a [`Error::Backend`] failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BackendErrorKind {
    /// The server could not be reached (refused, unknown host, connect timeout).
    Connect,
    /// The server refused the credentials.
    Auth,
    /// The database (or schema) named does not exist.
    MissingDatabase,
    /// The connection broke during the call (server crashed, restarted, or ended it).
    ConnectionLost,
    /// A statement took longer than the configured timeout and was cancelled.
    Timeout,
    /// The database refused the transaction because of a concurrent one (serialization
    /// failure, deadlock); nothing was written.
    Conflict,
    /// The database holds a schema this build does not know (newer), or one that is damaged.
    Schema,
    /// Anything else.
    Other,
}

impl fmt::Display for BackendErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Connect => "cannot connect",
            Self::Auth => "authentication failed",
            Self::MissingDatabase => "database does not exist",
            Self::ConnectionLost => "connection lost",
            Self::Timeout => "statement timeout",
            Self::Conflict => "conflict with a concurrent transaction",
            Self::Schema => "unsupported schema",
            Self::Other => "error",
        })
    }
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// Wraps an error of the caller's own for a replay sink to return; the replay stops with
    /// [`Error::Sink`], which holds it.
    pub fn sink(error: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        Self::Sink(error.into())
    }

    /// The kind of the operating-system error behind this one ([`Error::Io`], and the failure
    /// a [`Error::Poisoned`] file keeps), `None` for the others. It names the cause a person
    /// acts on: `StorageFull` (`ENOSPC`: the disk is full; a write cut short by it is reported
    /// so, never as a short write), `QuotaExceeded` (`EDQUOT`), `ReadOnlyFilesystem`
    /// (`EROFS`), `PermissionDenied` (`EACCES`, `EPERM`), `FileTooLarge` (`EFBIG`).
    #[must_use]
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            Self::Io { source, .. } => Some(source.kind()),
            Self::Poisoned { source, .. } => Some(source.kind()),
            _ => None,
        }
    }

    /// True for errors that say the data on disk is damaged or unreadable by this build.
    #[must_use]
    pub fn is_corruption(&self) -> bool {
        matches!(self, Self::Corrupt { .. } | Self::UnsupportedVersion { .. })
    }
}
