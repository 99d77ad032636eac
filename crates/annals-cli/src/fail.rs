//! How a command fails: one line on stderr, `annals: <what>, <where>: <what to do>`, and an
//! exit code. Operating-system errors are named by their cause (no space left, read-only file
//! system, permission denied, …) with the step that fixes them.

use std::fmt;
use std::io;
use std::path::Path;

use annals::Error;

/// Exit code: success, nothing found wrong.
pub const OK: u8 = 0;
/// Exit code: problems found (damage), or the session/segment asked for does not exist, or
/// (`grep`) nothing matched.
pub const PROBLEMS: u8 = 1;
/// Exit code: bad usage or input, or the command could not run (I/O error, no store).
pub const CANNOT_RUN: u8 = 2;
/// Exit code: stopped by Ctrl-C (128 + SIGINT, as shells report it).
pub const INTERRUPTED: u8 = 130;

/// Why a command stopped early.
#[derive(Debug)]
pub enum Failure {
    /// Stdout was closed by its reader (`| head`): stop quietly, successfully.
    Closed,
    /// Ctrl-C: stop quietly with [`INTERRUPTED`].
    Interrupted,
    /// A real failure, reported as one line.
    Fatal { code: u8, message: String },
}

impl Failure {
    /// `annals: <what>, <where>: <what to do>`; `place` may be empty.
    pub fn new(code: u8, what: impl fmt::Display, place: impl fmt::Display, todo: &str) -> Self {
        let place = place.to_string();
        let message = match (place.is_empty(), todo.is_empty()) {
            (true, true) => what.to_string(),
            (true, false) => format!("{what}: {todo}"),
            (false, true) => format!("{what}, {place}"),
            (false, false) => format!("{what}, {place}: {todo}"),
        };
        Self::Fatal { code, message }
    }

    pub fn usage(what: impl fmt::Display, todo: &str) -> Self {
        Self::new(CANNOT_RUN, what, "", todo)
    }

    pub fn code(&self) -> u8 {
        match self {
            Self::Closed => OK,
            Self::Interrupted => INTERRUPTED,
            Self::Fatal { code, .. } => *code,
        }
    }

    /// The line to print, if any.
    pub fn message(&self) -> Option<&str> {
        match self {
            Self::Closed | Self::Interrupted => None,
            Self::Fatal { message, .. } => Some(message),
        }
    }
}

/// A write to stdout failed: a closed pipe is a normal end, anything else is reported.
pub fn stdout_error(e: &io::Error) -> Failure {
    if e.kind() == io::ErrorKind::BrokenPipe {
        Failure::Closed
    } else {
        let cause = Cause::of(e, None);
        Failure::new(
            CANNOT_RUN,
            format!("could not write output ({})", cause.what),
            "stdout",
            cause.todo.unwrap_or("check the disk or pipe it goes to"),
        )
    }
}

/// What an operating-system error means for the person who reads it.
pub struct Cause {
    /// The cause, in words (`no space left on device`).
    pub what: String,
    /// What to do about it, where there is a known step.
    pub todo: Option<&'static str>,
}

impl Cause {
    /// Names the cause of `e`; `path` (the file concerned) is used to look closer at a write
    /// that was cut short: a full file system is the usual reason.
    pub fn of(e: &io::Error, path: Option<&Path>) -> Self {
        use io::ErrorKind as K;
        let known = |what: &str, todo| Self {
            what: what.to_owned(),
            todo: Some(todo),
        };
        match e.kind() {
            K::StorageFull => known("no space left on device", FREE_SPACE),
            K::QuotaExceeded => known(
                "disk quota exceeded",
                "free space within your quota (`quota -s` shows it) or ask for a larger one; \
                 what was acknowledged before is kept",
            ),
            K::ReadOnlyFilesystem => known(
                "read-only file system",
                "remount it read-write or use a store on a writable file system; read-only \
                 commands (ls, cat, grep, verify, …) work as they are",
            ),
            K::PermissionDenied => known(
                "permission denied",
                "check the owner and mode of the file and its directories (`ls -ld`); a store \
                 is made 0700 for the user who created it",
            ),
            K::FileTooLarge => known(
                "file too large for the file system or the process limit",
                "check `ulimit -f` and the file system's maximum file size",
            ),
            K::WriteZero => Self::short_write(e, path),
            _ => Self {
                what: e.to_string(),
                todo: None,
            },
        }
    }

    /// A write that stored fewer bytes than asked: the library does not say why, so look at
    /// the file system.
    fn short_write(e: &io::Error, path: Option<&Path>) -> Self {
        // The library rolls a cut-short append back, so the space it took is free again: a
        // file system with next to nothing free is full for any real write.
        match path.and_then(free_bytes) {
            Some(free) if free < FULL_BELOW => Self {
                what: format!(
                    "no space left on device ({e}; {} free)",
                    crate::term::human_bytes(free)
                ),
                todo: Some(FREE_SPACE),
            },
            Some(free) => Self {
                what: format!(
                    "{e}; the file system has {} free",
                    crate::term::human_bytes(free)
                ),
                todo: Some(
                    "check free space and quotas (`df -h`, `quota -s`); what was acknowledged \
                     before is kept",
                ),
            },
            None => Self {
                what: e.to_string(),
                todo: Some("check free space and quotas (`df -h`, `quota -s`)"),
            },
        }
    }
}

/// The next step on a full file system.
const FREE_SPACE: &str = "free space on that file system (`df -h` shows it), then run the command \
     again; what was acknowledged before is kept (`annals verify` checks it)";

/// Free space under which a file system counts as full when a write was cut short.
const FULL_BELOW: u64 = 1 << 20;

/// Bytes an unprivileged user may still write on the file system holding `path` (or its
/// nearest existing ancestor).
fn free_bytes(path: &Path) -> Option<u64> {
    let existing = path.ancestors().find(|p| p.exists())?;
    let st = rustix::fs::statvfs(existing).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Maps a library error to a failure, naming the store where the error itself has no path.
pub fn store_error(e: Error, store: &str) -> Failure {
    match e {
        Error::SessionNotFound(s) => Failure::new(
            PROBLEMS,
            format!("session {s} not found"),
            store,
            "run `annals ls` to list the sessions",
        ),
        Error::SegmentNotFound { session, segment } => Failure::new(
            PROBLEMS,
            format!("segment {segment} not found in session {session}"),
            store,
            "run `annals ls SESSION` to list its segments",
        ),
        Error::Corrupt {
            path,
            line,
            offset,
            reason,
        } => Failure::new(
            PROBLEMS,
            format!("damaged log ({reason})"),
            format!("{}:{line}:{offset}", path.display()),
            "`annals verify` lists every problem, `annals cat --tolerant` reads around them, \
             `annals repair SEGMENT` cuts the log back to its last good line",
        ),
        Error::UnsupportedVersion {
            path,
            found,
            supported,
        } => Failure::new(
            CANNOT_RUN,
            format!(
                "format version {found} is not supported (this build reads version {supported})"
            ),
            path.display(),
            "use a newer annals",
        ),
        Error::Io { op, path, source } => {
            let cause = Cause::of(&source, Some(&path));
            Failure::new(
                CANNOT_RUN,
                format!("could not {op} ({})", cause.what),
                path.display(),
                cause
                    .todo
                    .unwrap_or("check that it exists and that you may access it"),
            )
        }
        Error::Poisoned { path, op, source } => Failure::new(
            CANNOT_RUN,
            format!("an earlier {op} failed ({source}); the file's durable state is unknown"),
            path.display(),
            "fix the cause (free space, the device), then run `annals verify` on it; a new \
             `annals` process may write to it again",
        ),
        Error::ConcurrentWriter {
            segment,
            expected,
            found,
        } => Failure::new(
            PROBLEMS,
            format!("another writer changed the segment (expected {expected}, found {found})"),
            format!("segment {segment}"),
            "run the command again",
        ),
        Error::EntryTooLarge { size, limit } => Failure::new(
            CANNOT_RUN,
            format!("entry too large: {size} bytes, the store's limit is {limit}"),
            store,
            "split the entry or store the payload elsewhere",
        ),
        other => Failure::new(CANNOT_RUN, other, store, ""),
    }
}

impl From<io::Error> for Failure {
    /// Only for stdout writes; everything else maps its errors with context.
    fn from(e: io::Error) -> Self {
        stdout_error(&e)
    }
}

/// What a command returns: its exit code (0 or 1), or why it failed.
pub type Outcome = Result<u8, Failure>;

/// Stops a long loop at the next safe point after Ctrl-C.
pub fn check_interrupt() -> Result<(), Failure> {
    if crate::term::interrupted() {
        Err(Failure::Interrupted)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(e: Error) -> String {
        store_error(e, "store /s").message().unwrap().to_owned()
    }

    fn io(kind_errno: i32, op: &'static str) -> Error {
        let source = io::Error::from_raw_os_error(kind_errno);
        let tmp = std::env::temp_dir();
        Error::Io {
            op,
            path: tmp.join("x.jsonl"),
            source,
        }
    }

    #[test]
    fn operating_system_errors_are_named_by_their_cause_with_the_next_step() {
        for (errno, cause, step) in [
            (28, "no space left on device", "free space"),
            (122, "disk quota exceeded", "quota"),
            (30, "read-only file system", "remount"),
            (13, "permission denied", "ls -ld"),
        ] {
            let m = message(io(errno, "append to"));
            assert!(
                m.starts_with(&format!("could not append to ({cause})")),
                "{m}"
            );
            assert!(m.contains(step), "{m}");
        }
    }

    #[test]
    fn a_short_write_says_what_the_file_system_has_free() {
        let short = io::Error::new(io::ErrorKind::WriteZero, "short write: 1208 of 6040 bytes");
        let m = message(Error::Io {
            op: "append to",
            path: std::env::temp_dir().join("x.jsonl"),
            source: short,
        });
        assert!(m.contains("short write: 1208 of 6040 bytes"), "{m}");
        assert!(
            m.contains("free") && (m.contains("df -h")),
            "a short write points at free space: {m}"
        );
    }
}
