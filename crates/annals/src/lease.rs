//! Writer leases: one writer takes a segment for as long as it works on it, so that its appends
//! need no per-append lock and no check of what others did ([`Store::lease`](crate::Store::lease)).

use std::fmt;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::{RawEntry, Result, SegmentId, SessionId, Tip};

/// How long a writer waits, by default, for a segment that another writer holds before it gets
/// [`Error::Locked`](crate::Error::Locked): a lease's [`LeaseOptions::wait`] and the filesystem
/// store's `FsOptions::lock_wait`.
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(5);

/// The first pause of a writer that found its file held; pauses double from there.
const FIRST_PAUSE: Duration = Duration::from_micros(20);
/// The longest pause between two tries: a lease given back is noticed within this.
const LONGEST_PAUSE: Duration = Duration::from_millis(2);
/// A bounded wait: pauses that grow from [`FIRST_PAUSE`] to [`LONGEST_PAUSE`], for at most
/// the time given.
#[derive(Debug)]
pub(crate) struct Patience {
    start: Instant,
    limit: Duration,
    pause: Duration,
}

impl Patience {
    pub(crate) fn new(limit: Duration) -> Self {
        Self {
            start: Instant::now(),
            limit,
            pause: FIRST_PAUSE,
        }
    }

    /// Sleeps before the next try and says `true`, or says `false` (at once) when the time is
    /// up.
    pub(crate) fn pause(&mut self) -> bool {
        let waited = self.start.elapsed();
        let Some(left) = self.limit.checked_sub(waited).filter(|l| !l.is_zero()) else {
            return false;
        };
        std::thread::sleep(self.pause.min(left));
        self.pause = (self.pause * 2).min(LONGEST_PAUSE);
        true
    }

    pub(crate) fn waited(&self) -> Duration {
        self.start.elapsed()
    }
}

/// Options of [`Store::lease`](crate::Store::lease).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseOptions {
    /// How long to wait for the segment while another writer holds it (another lease, or an
    /// operation in progress); then [`Error::Locked`](crate::Error::Locked) naming the holder.
    /// Zero tries once.
    pub wait: Duration,
}

impl Default for LeaseOptions {
    fn default() -> Self {
        Self {
            wait: DEFAULT_LOCK_WAIT,
        }
    }
}

impl LeaseOptions {
    /// Waits at most `wait` for the segment.
    #[must_use]
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }
}

/// Who holds a lease: what a refused writer is told ([`Error::Locked`](crate::Error::Locked)),
/// kept by the filesystem store in a small record next to the segment
/// (`{segment}.jsonl.lease`) while the lease lives.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LeaseHolder {
    /// Process id of the holder.
    pub pid: u32,
    /// Host name of the machine it runs on.
    pub host: String,
    /// Name of its program (the file name of its executable).
    pub program: String,
    /// When it took the lease, milliseconds since the Unix epoch.
    pub since_ms: u64,
}

impl LeaseHolder {
    /// This process, now.
    #[must_use]
    pub fn this_process() -> Self {
        let program = std::env::current_exe()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .or_else(|| std::env::args().next())
            .unwrap_or_default();
        Self {
            pid: std::process::id(),
            host: rustix::system::uname()
                .nodename()
                .to_string_lossy()
                .into_owned(),
            program,
            since_ms: crate::now_ms(),
        }
    }
}

impl fmt::Display for LeaseHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let held = crate::now_ms().saturating_sub(self.since_ms);
        write!(
            f,
            "pid {} ({}) on {}, holding it for {:.1} s (since {} ms after the epoch)",
            self.pid,
            self.program,
            self.host,
            Duration::from_millis(held).as_secs_f64(),
            self.since_ms
        )
    }
}

/// A writer that holds one segment exclusively until it is released or dropped: another
/// writer, in this process or any other, that wants the segment meanwhile waits at most its
/// wait time and then gets [`Error::Locked`](crate::Error::Locked) with the [`LeaseHolder`].
/// Readers (replay, verify, tip, listings) are never held up by a lease.
///
/// Because nobody else can write the segment, an append through a lease needs no lock and no
/// look at the file first: on the filesystem store it is the one `write(2)` of its lines, plus
/// the `fdatasync` in `Sync` mode (shared with the lease's other threads by group commit). The
/// lease's own [`Lease::tip`] is the tally. Everything else stays as for
/// [`Store::append_batch_raw`](crate::Store::append_batch_raw): one write per batch, contiguous
/// sequence numbers, blobs first, the sticky fsync rule.
///
/// A lease cannot outlive its process: on the filesystem store it is an `flock` that the kernel
/// drops when the process exits or is killed, and the next writer handles whatever the dead one
/// left at the end of the file as after any crash. Methods take `&self`: threads may share a
/// lease (`Arc<dyn Lease>`) and their durable appends then share `fdatasync`s.
///
/// Typed appends are inherent methods on `dyn Lease` ([`append`](#method.append),
/// [`append_batch`](#method.append_batch)).
///
/// When to take one: a worker that owns a session for a while (the usual agent runtime) takes a
/// lease and appends through it. Where several writers share a segment on purpose, use
/// [`SegmentWriter`](crate::SegmentWriter) instead, whose per-append check detects the others.
pub trait Lease: Send + Sync + fmt::Debug {
    /// The session of the leased segment.
    fn session(&self) -> SessionId;

    /// The leased segment.
    fn segment(&self) -> SegmentId;

    /// Who holds the lease (this process), as others are told.
    fn holder(&self) -> &LeaseHolder;

    /// The segment's tip as the lease knows it: exact, since nobody else writes the segment.
    /// No I/O.
    fn tip(&self) -> Tip;

    /// Appends entries as the next sequence numbers, in one write (see
    /// [`Store::append_batch_raw`](crate::Store::append_batch_raw)). Returns the new tip.
    ///
    /// # Errors
    /// [`Error::EntryTooLarge`](crate::Error::EntryTooLarge) (nothing written),
    /// [`Error::Poisoned`](crate::Error::Poisoned) after a failed fsync, I/O errors.
    fn append_batch_raw(&self, entries: &[RawEntry]) -> Result<Tip>;

    /// Appends one entry. See [`Lease::append_batch_raw`].
    ///
    /// # Errors
    /// As [`Lease::append_batch_raw`].
    fn append_raw(&self, entry: &RawEntry) -> Result<Tip> {
        self.append_batch_raw(std::slice::from_ref(entry))
    }

    /// Makes everything appended so far durable (see [`Store::sync`](crate::Store::sync)).
    ///
    /// # Errors
    /// [`Error::Poisoned`](crate::Error::Poisoned), I/O errors.
    fn sync(&self) -> Result<()>;

    /// Keeps the first `keep` entries (see [`Store::truncate`](crate::Store::truncate)); the
    /// lease goes on holding the rewritten segment.
    ///
    /// # Errors
    /// As [`Store::truncate`](crate::Store::truncate).
    fn truncate(&self, keep: u64) -> Result<Tip>;

    /// Starts segment `into` of the same session from the first `at` entries of the leased one
    /// (see [`Store::fork`](crate::Store::fork)). The lease stays on the leased segment; take
    /// another for `into` to write there.
    ///
    /// # Errors
    /// As [`Store::fork`](crate::Store::fork).
    fn fork(&self, at: u64, into: SegmentId) -> Result<Tip>;

    /// Gives the segment back now (dropping the lease does the same, silently).
    ///
    /// # Errors
    /// Removing the holder record failed (the segment is released all the same).
    fn release(self: Box<Self>) -> Result<()>;
}

impl dyn Lease + '_ {
    /// Serializes and appends one entry.
    ///
    /// # Errors
    /// [`Error::Serialize`](crate::Error::Serialize) and the errors of
    /// [`Lease::append_batch_raw`].
    pub fn append<T: Serialize + ?Sized>(&self, entry: &T) -> Result<Tip> {
        self.append_raw(&RawEntry::from_value(entry)?)
    }

    /// Serializes and appends entries in one write.
    ///
    /// # Errors
    /// [`Error::Serialize`](crate::Error::Serialize) and the errors of
    /// [`Lease::append_batch_raw`].
    pub fn append_batch<T: Serialize>(&self, entries: &[T]) -> Result<Tip> {
        let raw = entries
            .iter()
            .map(RawEntry::from_value)
            .collect::<Result<Vec<_>>>()?;
        self.append_batch_raw(&raw)
    }
}
