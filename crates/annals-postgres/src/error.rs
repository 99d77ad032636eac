//! What went wrong talking to PostgreSQL, classified once, and how it becomes an
//! [`annals::Error::Backend`].
//!
//! The client library's errors are classified by what a person does about them: the SQLSTATE of
//! a server error, the I/O error kind of a connection error, the "closed" flag. No message text
//! is matched, and no message shows a password (the client library's messages never contain
//! one, and this crate only ever prints the redacted URL).

use std::fmt;
use std::io;

use annals::BackendErrorKind;

/// What kind of failure, as far as the store is concerned (finer than
/// [`BackendErrorKind`], which is what callers see).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureKind {
    /// Nothing listens at the address (or the host does not resolve, or the socket is missing).
    ConnectionRefused,
    /// The server refused the user or the password.
    AuthenticationFailed,
    /// The database named in the URL does not exist.
    DatabaseMissing,
    /// The connection broke during the call (server crash or restart, connection killed,
    /// network).
    ServerGone,
    /// The server is starting up, shutting down or in recovery.
    ServerUnavailable,
    /// The statement ran longer than `statement_timeout` and was cancelled; nothing of it was
    /// committed.
    StatementTimeout,
    /// A serialization failure or deadlock: the transaction was rolled back and may be retried.
    SerializationFailure,
    /// No connection of the pool became free in time, and none could be made.
    PoolTimeout,
    /// The schema was written by a newer annals.
    SchemaTooNew,
    /// The URL or the options are not usable.
    InvalidOptions,
    /// The TLS handshake failed or the server does not offer TLS that the URL requires.
    Tls,
    /// Any other error the server reported (with its SQLSTATE).
    Server,
    /// Anything else the client library reported.
    Client,
}

/// A classified failure: what happened, in words a person can act on, and whether the server
/// may have committed the call anyway.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub kind: FailureKind,
    /// What happened.
    pub message: String,
    /// The server's SQLSTATE, where it sent one.
    pub sqlstate: Option<String>,
    /// True when the call was sent and the connection broke before its answer: it may have
    /// been committed. The caller can look (e.g. `tip`) before trying again.
    pub outcome_unknown: bool,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(code) = &self.sqlstate {
            write!(f, " (SQLSTATE {code})")?;
        }
        Ok(())
    }
}

impl Failure {
    pub(crate) fn new(kind: FailureKind, message: String) -> Self {
        Self {
            kind,
            message,
            sqlstate: None,
            outcome_unknown: false,
        }
    }

    /// True for failures of the connection itself (the pool should test its other connections).
    pub(crate) fn is_connection_lost(&self) -> bool {
        matches!(
            self.kind,
            FailureKind::ServerGone | FailureKind::ServerUnavailable
        )
    }

    /// True if running the same call again is safe and may succeed: the server rolled it back.
    pub(crate) fn is_retryable(&self) -> bool {
        self.kind == FailureKind::SerializationFailure
    }

    /// Classifies a client-library error. `sent` says whether a statement that changes data
    /// had been sent on this connection when it failed.
    pub(crate) fn classify(err: &postgres::Error, server: &str, sent: bool) -> Self {
        use postgres::error::SqlState;
        if let Some(db) = err.as_db_error() {
            let code = db.code();
            let kind = if *code == SqlState::INVALID_PASSWORD
                || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
            {
                FailureKind::AuthenticationFailed
            } else if *code == SqlState::INVALID_CATALOG_NAME {
                FailureKind::DatabaseMissing
            } else if *code == SqlState::QUERY_CANCELED {
                FailureKind::StatementTimeout
            } else if *code == SqlState::T_R_SERIALIZATION_FAILURE
                || *code == SqlState::T_R_DEADLOCK_DETECTED
            {
                FailureKind::SerializationFailure
            } else if *code == SqlState::ADMIN_SHUTDOWN
                || *code == SqlState::CRASH_SHUTDOWN
                || *code == SqlState::IDLE_SESSION_TIMEOUT
            {
                FailureKind::ServerGone
            } else if *code == SqlState::CANNOT_CONNECT_NOW {
                FailureKind::ServerUnavailable
            } else {
                FailureKind::Server
            };
            let what = match kind {
                FailureKind::AuthenticationFailed => format!("authentication failed at {server}"),
                FailureKind::DatabaseMissing => format!("database missing at {server}"),
                FailureKind::StatementTimeout => {
                    format!("statement cancelled by {server} (statement timeout)")
                }
                FailureKind::SerializationFailure => {
                    format!("serialization failure at {server}: the transaction was rolled back")
                }
                FailureKind::ServerGone => format!("server {server} ended the connection"),
                FailureKind::ServerUnavailable => {
                    format!("server {server} is not accepting connections now")
                }
                _ => format!("error from {server}"),
            };
            // A session ended by the server mid-call (admin shutdown, crash) may have committed
            // what was sent; any other server error means the statement failed and was rolled
            // back.
            let outcome_unknown = sent && kind == FailureKind::ServerGone;
            return Self {
                kind,
                message: format!("{what}: {}", db.message()),
                sqlstate: Some(code.code().to_owned()),
                outcome_unknown,
            };
        }
        if err.is_closed() {
            return Self {
                kind: FailureKind::ServerGone,
                message: format!("connection to {server} closed"),
                sqlstate: None,
                outcome_unknown: sent,
            };
        }
        let io = std::error::Error::source(err).and_then(|s| s.downcast_ref::<io::Error>());
        if let Some(io) = io {
            let kind = match io.kind() {
                io::ErrorKind::ConnectionRefused
                | io::ErrorKind::NotFound
                | io::ErrorKind::AddrNotAvailable => FailureKind::ConnectionRefused,
                io::ErrorKind::TimedOut if !sent => FailureKind::ConnectionRefused,
                _ => FailureKind::ServerGone,
            };
            let what = match kind {
                FailureKind::ConnectionRefused => format!("cannot connect to {server}"),
                _ => format!("connection to {server} broke"),
            };
            return Self {
                kind,
                message: format!("{what}: {io}"),
                sqlstate: None,
                outcome_unknown: sent && kind == FailureKind::ServerGone,
            };
        }
        // The rest carries no structure to look at: connect errors without an I/O cause (a
        // host that does not resolve), TLS, client-side authentication (no password given).
        let text = err.to_string();
        let source = std::error::Error::source(err).map(ToString::to_string);
        let message = match source {
            Some(s) if !text.contains(&s) => format!("{text}: {s}"),
            _ => text,
        };
        Self {
            kind: FailureKind::Client,
            message: format!("{server}: {message}"),
            sqlstate: None,
            outcome_unknown: false,
        }
    }

    /// The failure as the error every annals store returns. `op` says what the store was doing
    /// (`"append to"`, `"replay"`, …), `target` which session or segment of which server.
    pub(crate) fn into_error(self, op: &'static str, target: String) -> annals::Error {
        let kind = match self.kind {
            FailureKind::ConnectionRefused | FailureKind::Tls => BackendErrorKind::Connect,
            FailureKind::AuthenticationFailed => BackendErrorKind::Auth,
            FailureKind::DatabaseMissing => BackendErrorKind::MissingDatabase,
            FailureKind::ServerGone | FailureKind::ServerUnavailable => {
                BackendErrorKind::ConnectionLost
            }
            FailureKind::StatementTimeout => BackendErrorKind::Timeout,
            FailureKind::SerializationFailure => BackendErrorKind::Conflict,
            FailureKind::SchemaTooNew => BackendErrorKind::Schema,
            FailureKind::PoolTimeout
            | FailureKind::InvalidOptions
            | FailureKind::Server
            | FailureKind::Client => BackendErrorKind::Other,
        };
        annals::Error::Backend {
            backend: "postgres",
            op,
            kind,
            outcome_unknown: self.outcome_unknown,
            message: format!("{target}: {self}"),
        }
    }
}
