//! How a command fails: one line on stderr, `annals: <what>, <where>: <what to do>`, and an
//! exit code.

use std::fmt;
use std::io;
use std::path::Path;

use annals::Error;

/// Exit code: success, nothing found wrong.
pub const OK: u8 = 0;
/// Exit code: problems found (damage), or the session/segment asked for does not exist.
pub const PROBLEMS: u8 = 1;
/// Exit code: bad usage or input, or the command could not run (I/O error, no store).
pub const CANNOT_RUN: u8 = 2;

/// Why a command stopped early.
#[derive(Debug)]
pub enum Failure {
    /// Stdout was closed by its reader (`| head`): stop quietly, successfully.
    Closed,
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
            Self::Fatal { code, .. } => *code,
        }
    }

    /// The line to print, if any.
    pub fn message(&self) -> Option<&str> {
        match self {
            Self::Closed => None,
            Self::Fatal { message, .. } => Some(message),
        }
    }
}

/// A write to stdout failed: a closed pipe is a normal end, anything else is reported.
pub fn stdout_error(e: &io::Error) -> Failure {
    if e.kind() == io::ErrorKind::BrokenPipe {
        Failure::Closed
    } else {
        Failure::new(
            CANNOT_RUN,
            format!("could not write output ({e})"),
            "stdout",
            "check the disk or pipe it goes to",
        )
    }
}

/// Maps a library error to a failure, naming the store root where the error itself has no
/// path.
pub fn store_error(e: Error, root: &Path) -> Failure {
    let store = format!("store {}", root.display());
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
        Error::Io { op, path, source } => Failure::new(
            CANNOT_RUN,
            format!("could not {op} ({source})"),
            path.display(),
            "check that it exists and that you may access it",
        ),
        Error::Poisoned { path, op, source } => Failure::new(
            CANNOT_RUN,
            format!("an earlier {op} failed ({source}); the file's durable state is unknown"),
            path.display(),
            "run `annals verify` on it",
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
            format!("entry too large: its line would be {size} bytes, the limit is {limit}"),
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
