//! The connection pool: r2d2 over `r2d2_postgres`, with a check on checkout that costs no round
//! trip on the hot path.
//!
//! r2d2 can test every connection on checkout with a round trip, which would double the cost of
//! an append. Instead, on checkout:
//! - a connection idle for a moment ([`LOOK_AFTER`]) has its socket looked at: a server that
//!   ended the session (`pg_terminate_backend`, shutdown) sent its error and closed, a crashed
//!   one closed, and either shows here, so the dead connection is dropped before use. The look
//!   costs up to a millisecond (the client's timer ticks in milliseconds), so a connection
//!   reused at once — a worker appending in a loop — skips it;
//! - each connection remembers the pool's *epoch* when it was last known good. A call that loses
//!   its connection bumps the epoch, and from then on every older connection is tested with an
//!   empty query before it is handed out; so is a connection idle for long (a middlebox may have
//!   dropped it without a word).
//!
//! So after a server restart or a killed connection only the calls in flight fail, and the store
//! reconnects by itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postgres::Client;
use r2d2::ManageConnection;
use r2d2_postgres::PostgresConnectionManager;

use crate::error::{Failure, FailureKind};

/// A connection idle longer than this is tested with a round trip before use: a server or a
/// middlebox may have dropped it without a word.
const IDLE_CHECK: Duration = Duration::from_secs(30);

/// A connection idle longer than this has its socket looked at before use (no round trip).
pub(crate) const LOOK_AFTER: Duration = Duration::from_millis(250);

#[cfg(feature = "tls")]
pub(crate) type Tls = postgres_openssl::MakeTlsConnector;
#[cfg(not(feature = "tls"))]
pub(crate) type Tls = postgres::NoTls;

/// A pooled connection.
pub(crate) struct Conn {
    pub client: Client,
    epoch: u64,
    idle_since: Instant,
}

/// What the pool shares with the store: the epoch and the last connect error.
#[derive(Default)]
pub(crate) struct Health {
    epoch: AtomicU64,
    last_connect_error: Mutex<Option<Failure>>,
}

impl Health {
    /// Marks every existing connection as suspect.
    pub fn connection_lost(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    fn set_connect_error(&self, f: Failure) {
        if let Ok(mut slot) = self.last_connect_error.lock() {
            *slot = Some(f);
        }
    }

    /// Why the pool could not hand out a connection (the last connect error seen).
    pub fn pool_failure(&self, server: &str, waited: Duration) -> Failure {
        let last = self.last_connect_error.lock().ok().and_then(|s| s.clone());
        match last {
            Some(mut f) => {
                f.message = format!(
                    "{} (no connection to {server} within {waited:?})",
                    f.message
                );
                f
            }
            None => Failure::new(
                FailureKind::PoolTimeout,
                format!("no free connection to {server} within {waited:?}: every connection of the pool is busy (a replay holds one until it ends; raise pool_size)"),
            ),
        }
    }
}

pub(crate) struct Manager {
    inner: PostgresConnectionManager<Tls>,
    health: Arc<Health>,
    server: String,
}

impl Manager {
    pub fn new(config: postgres::Config, tls: Tls, health: Arc<Health>, server: String) -> Self {
        Self {
            inner: PostgresConnectionManager::new(config, tls),
            health,
            server,
        }
    }
}

impl ManageConnection for Manager {
    type Connection = Conn;
    type Error = postgres::Error;

    fn connect(&self) -> Result<Conn, postgres::Error> {
        match self.inner.connect() {
            Ok(client) => {
                if let Ok(mut slot) = self.health.last_connect_error.lock() {
                    *slot = None;
                }
                Ok(Conn {
                    client,
                    epoch: self.health.epoch(),
                    idle_since: Instant::now(),
                })
            }
            Err(e) => {
                self.health
                    .set_connect_error(Failure::classify(&e, &self.server, false));
                Err(e)
            }
        }
    }

    fn is_valid(&self, conn: &mut Conn) -> Result<(), postgres::Error> {
        use postgres::fallible_iterator::FallibleIterator;
        // Takes in whatever the server sent while the connection sat in the pool; an error (the
        // server ended the session) or the end of the stream makes it invalid. A zero timeout
        // lets the client's event loop look at the socket once; a plain non-blocking poll would
        // only see what the client already knew.
        if conn.idle_since.elapsed() >= LOOK_AFTER {
            while conn
                .client
                .notifications()
                .timeout_iter(Duration::ZERO)
                .next()?
                .is_some()
            {}
        }
        if conn.client.is_closed() {
            return self.inner.is_valid(&mut conn.client);
        }
        let epoch = self.health.epoch();
        if conn.epoch == epoch && conn.idle_since.elapsed() < IDLE_CHECK {
            return Ok(());
        }
        self.inner.is_valid(&mut conn.client)?;
        conn.epoch = epoch;
        Ok(())
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.idle_since = Instant::now();
        conn.client.is_closed()
    }
}

/// r2d2 reports connect errors here (instead of the `log` crate); the last one explains a pool
/// timeout.
#[derive(Debug)]
pub(crate) struct Quiet;

impl r2d2::HandleError<postgres::Error> for Quiet {
    fn handle_error(&self, _error: postgres::Error) {}
}

/// The TLS connector: OpenSSL, used when the URL's `sslmode` asks for TLS (`prefer`, the
/// default, uses it when the server offers it). As with libpq, `prefer` and `require` encrypt
/// without checking the certificate; with `verify` (`verify-ca`, `verify-full`, or a root
/// certificate from `sslrootcert` / `PGSSLROOTCERT`) the chain and the host name are checked
/// against the system's roots plus that certificate.
#[cfg(feature = "tls")]
pub(crate) fn tls(root_cert: Option<&std::path::Path>, verify: bool) -> Result<Tls, Failure> {
    use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
    let fail =
        |e: &dyn std::fmt::Display| Failure::new(FailureKind::Tls, format!("setting up TLS: {e}"));
    let mut builder = SslConnector::builder(SslMethod::tls()).map_err(|e| fail(&e))?;
    if let Some(path) = root_cert {
        builder
            .set_ca_file(path)
            .map_err(|e| fail(&format!("root certificate {}: {e}", path.display())))?;
    }
    if !verify {
        builder.set_verify(SslVerifyMode::NONE);
    }
    let mut connector = postgres_openssl::MakeTlsConnector::new(builder.build());
    if !verify {
        connector.set_callback(|config, _| {
            config.set_verify_hostname(false);
            Ok(())
        });
    }
    Ok(connector)
}

#[cfg(not(feature = "tls"))]
pub(crate) fn tls(root_cert: Option<&std::path::Path>, verify: bool) -> Result<Tls, Failure> {
    if root_cert.is_some() || verify {
        return Err(Failure::new(
            FailureKind::Tls,
            "a root certificate is set, but annals-postgres was built without the `tls` feature"
                .to_owned(),
        ));
    }
    Ok(postgres::NoTls)
}
