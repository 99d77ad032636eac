//! How a [`PgStore`](crate::PgStore) connects: the URL, the usual `PG*` environment, and the
//! store's own options. The one place that reads a password, and the one that makes sure it is
//! never shown.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use annals::Durability;

use crate::error::{Failure, FailureKind};

/// Options of [`PgStore::open_with`](crate::PgStore::open_with).
///
/// `Debug` never shows the password (nor does any error or log line of this crate).
#[derive(Clone)]
pub struct PgOptions {
    /// `postgresql://user[:password]@host[:port]/database[?param=value&…]`, or libpq's
    /// `key=value` form. Parameters it leaves out come from `PGHOST`, `PGPORT`, `PGUSER`,
    /// `PGPASSWORD`, `PGDATABASE`, `PGSSLMODE`, `PGSSLROOTCERT`, `PGAPPNAME`,
    /// `PGCONNECT_TIMEOUT`, then libpq's defaults (the local socket, the OS user).
    pub url: String,
    /// The schema the store's tables live in, so several stores can share a database. Created
    /// if missing. Lower-case letters, digits and `_`, starting with a letter or `_`, at most 63
    /// bytes. Default `annals`.
    pub schema: String,
    /// Connections in the pool: the number of calls that can run at once (a replay holds one for
    /// its whole length). Default 8.
    pub pool_size: u32,
    /// How long opening a connection may take, and how long a call waits for a free connection
    /// of the pool. Default 10 s.
    pub connect_timeout: Duration,
    /// The server cancels a statement that runs longer (`statement_timeout`); `None` leaves the
    /// server's setting. Default 60 s.
    pub statement_timeout: Option<Duration>,
    /// `Sync`: every call returns after PostgreSQL has made its commit durable
    /// (`synchronous_commit = on`). `Buffered`: appends commit with `synchronous_commit = off`
    /// (a server crash can lose the last few hundred milliseconds of acknowledged appends, never
    /// part of one); creates, truncates, forks, deletes and gc are durable in both modes.
    /// Default `Sync`.
    pub durability: Durability,
    /// TCP keepalives, so a dead server or a dropped route is noticed on idle connections:
    /// `Some(idle)` sends the first probe after `idle` without traffic. Default 60 s.
    pub keepalive: Option<Duration>,
    /// The largest entry or attachment accepted, in bytes. Default 64 MiB, as the filesystem
    /// store.
    pub max_entry_bytes: usize,
    /// `application_name` shown in `pg_stat_activity`. Default `annals`.
    pub application_name: String,
    /// Create the schema when it holds no store yet. `false` opens only an existing store and
    /// refuses a missing one (`Error::Backend { kind: MissingDatabase }`, nothing created): what
    /// a reader uses, so that a mistyped schema name is an error, not a new empty store.
    /// Default `true`.
    pub create_schema: bool,
}

impl fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgOptions")
            .field("url", &redact(&self.url))
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .field("durability", &self.durability)
            .field("keepalive", &self.keepalive)
            .field("max_entry_bytes", &self.max_entry_bytes)
            .field("application_name", &self.application_name)
            .field("create_schema", &self.create_schema)
            .finish()
    }
}

impl PgOptions {
    /// Default options for `url`.
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            schema: "annals".to_owned(),
            pool_size: 8,
            connect_timeout: Duration::from_secs(10),
            statement_timeout: Some(Duration::from_secs(60)),
            durability: Durability::Sync,
            keepalive: Some(Duration::from_secs(60)),
            max_entry_bytes: annals::DEFAULT_MAX_ENTRY_BYTES,
            application_name: "annals".to_owned(),
            create_schema: true,
        }
    }

    /// The same options with another schema.
    #[must_use]
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// The same options with another durability.
    #[must_use]
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// The same options with another pool size.
    #[must_use]
    pub fn pool_size(mut self, size: u32) -> Self {
        self.pool_size = size;
        self
    }

    /// The same options, creating the schema if missing (`true`) or refusing it (`false`).
    #[must_use]
    pub fn create_schema(mut self, create: bool) -> Self {
        self.create_schema = create;
        self
    }
}

/// What the store connects with, resolved once at open.
pub(crate) struct Resolved {
    pub config: postgres::Config,
    /// `postgresql://user@host:port/database`, no password: for messages.
    pub display: String,
    pub root_cert: Option<PathBuf>,
    /// Whether the server's certificate is verified: `sslmode=verify-ca|verify-full`, or a root
    /// certificate given. libpq's `prefer` and `require` encrypt without verifying.
    pub verify: bool,
}

/// Checks a schema name: it is spliced into SQL text, so only plain identifiers are allowed.
pub(crate) fn check_schema(schema: &str) -> Result<(), Failure> {
    let mut chars = schema.chars();
    let ok = schema.len() <= 63
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Failure::new(
            FailureKind::InvalidOptions,
            format!("schema name {schema:?} is not a plain lower-case identifier (a-z, 0-9, _; at most 63 bytes)"),
        ))
    }
}

/// Reads the URL and the environment into a connection config with the store's settings.
pub(crate) fn resolve(options: &PgOptions) -> Result<Resolved, Failure> {
    check_schema(&options.schema)?;
    if options.pool_size == 0 {
        return Err(Failure::new(
            FailureKind::InvalidOptions,
            "pool_size must be at least 1".to_owned(),
        ));
    }
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let (url, url_root_cert, verify_mode) = strip_unsupported(&options.url);
    let mut config: postgres::Config = url.parse().map_err(|e: postgres::Error| {
        // The parser's message names the parameter, never its value.
        Failure::new(
            FailureKind::InvalidOptions,
            format!("connection URL {}: {e}", redact(&options.url)),
        )
    })?;

    if config.get_hosts().is_empty() {
        match env("PGHOST") {
            Some(hosts) => {
                for h in hosts.split(',') {
                    config.host(h);
                }
            }
            None => {
                config.host("/var/run/postgresql");
            }
        }
    }
    if config.get_ports().is_empty() {
        if let Some(port) = env("PGPORT").and_then(|p| p.parse().ok()) {
            config.port(port);
        }
    }
    if config.get_user().is_none() {
        let user = env("PGUSER")
            .or_else(|| env("USER"))
            .unwrap_or_else(|| "postgres".to_owned());
        config.user(&user);
    }
    if config.get_password().is_none() {
        if let Some(pw) = env("PGPASSWORD") {
            config.password(pw);
        }
    }
    if config.get_dbname().is_none() {
        if let Some(db) = env("PGDATABASE") {
            config.dbname(&db);
        }
    }
    if !options.url.contains("sslmode") {
        if let Some(mode) = env("PGSSLMODE") {
            config.ssl_mode(match mode.as_str() {
                "disable" | "allow" => postgres::config::SslMode::Disable,
                "prefer" => postgres::config::SslMode::Prefer,
                _ => postgres::config::SslMode::Require,
            });
        }
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(options.connect_timeout);
    }
    if config.get_application_name().is_none() {
        config.application_name(&options.application_name);
    }
    if let Some(idle) = options.keepalive {
        config.keepalives(true).keepalives_idle(idle);
    } else {
        config.keepalives(false);
    }

    // Session settings the store's SQL relies on, after whatever the URL asked for.
    let mut startup = config.get_options().unwrap_or_default().to_owned();
    // The append statement relies on READ COMMITTED's re-check of an updated row.
    startup.push_str(" -c default_transaction_isolation=read\\ committed");
    if let Some(t) = options.statement_timeout {
        startup.push_str(&format!(" -c statement_timeout={}", t.as_millis().max(1)));
    }
    if options.durability == Durability::Buffered {
        startup.push_str(" -c synchronous_commit=off");
    }
    config.options(startup.trim());

    let user = config.get_user().unwrap_or_default().to_owned();
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            postgres::config::Host::Tcp(name) => name.clone(),
            postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_default();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().unwrap_or(&user).to_owned();
    let env_verify = !options.url.contains("sslmode")
        && env("PGSSLMODE").is_some_and(|m| m.starts_with("verify"));
    let root_cert = url_root_cert.or_else(|| env("PGSSLROOTCERT").map(PathBuf::from));
    Ok(Resolved {
        display: format!("postgresql://{user}@{host}:{port}/{db}"),
        config,
        verify: verify_mode || env_verify || root_cert.is_some(),
        root_cert,
    })
}

/// libpq's `sslmode=verify-ca|verify-full` and `sslrootcert=` are not parsed by the client
/// library: both verify modes become `require` with verification on (the third value), and the
/// root certificate is taken out to be handed to the TLS connector.
fn strip_unsupported(url: &str) -> (String, Option<PathBuf>, bool) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), None, false);
    };
    let mut root = None;
    let mut verify = false;
    let mut kept = Vec::new();
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("sslrootcert", v)) => root = Some(PathBuf::from(v)),
            Some(("sslmode", "verify-ca" | "verify-full")) => {
                verify = true;
                kept.push("sslmode=require");
            }
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (url, root, verify)
}

/// The URL with any password replaced by `***`, in both the URL and the `key=value` forms.
#[must_use]
pub fn redact(url: &str) -> String {
    if let Some(rest) = url
        .strip_prefix("postgresql://")
        .map(|r| ("postgresql://", r))
        .or_else(|| url.strip_prefix("postgres://").map(|r| ("postgres://", r)))
    {
        let (scheme, rest) = rest;
        let (authority, tail) = match rest.find(['/', '?']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let authority = match authority.rsplit_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((user, _)) => format!("{user}:***@{host}"),
                None => authority.to_owned(),
            },
            None => authority.to_owned(),
        };
        let tail = redact_pairs(tail, '&');
        return format!("{scheme}{authority}{tail}");
    }
    redact_pairs(url, ' ')
}

/// `password=…` replaced in a list of `key=value` pairs separated by `sep`.
fn redact_pairs(text: &str, sep: char) -> String {
    text.split(sep)
        .map(|pair| {
            let (head, key) = match pair.rfind(['?', '&']) {
                Some(i) => pair.split_at(i + 1),
                None => ("", pair),
            };
            match key.split_once('=') {
                Some((k, _)) if k.trim() == "password" => format!("{head}{k}=***"),
                _ => pair.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(&sep.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_the_password_in_every_form() {
        for (url, want) in [
            (
                "postgresql://u:s3cret@h:5/db?sslmode=require",
                "postgresql://u:***@h:5/db?sslmode=require",
            ),
            ("postgres://u:s3cret@h", "postgres://u:***@h"),
            ("postgresql://u@h/db", "postgresql://u@h/db"),
            (
                "postgresql://h/db?user=u&password=s3cret",
                "postgresql://h/db?user=u&password=***",
            ),
            (
                "host=h user=u password=s3cret dbname=d",
                "host=h user=u password=*** dbname=d",
            ),
            ("postgresql://u:p%40ss:w@rd@h/db", "postgresql://u:***@h/db"),
        ] {
            let got = redact(url);
            assert_eq!(got, want);
            assert!(!got.contains("s3cret"), "{got}");
        }
    }

    #[test]
    fn debug_of_options_never_shows_the_password() {
        let o = PgOptions::new("postgresql://u:s3cret@h/db");
        let shown = format!("{o:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("u:***@h"), "{shown}");
    }

    #[test]
    fn schema_names_are_plain_identifiers() {
        for good in ["annals", "_x", "a1_b2", &"a".repeat(63)] {
            assert!(check_schema(good).is_ok(), "{good}");
        }
        for bad in ["", "1a", "A", "a-b", "a\"b", "a;drop", &"a".repeat(64), "é"] {
            assert!(check_schema(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn verify_modes_and_root_cert_are_taken_out_of_the_url() {
        let (url, root, verify) =
            strip_unsupported("postgresql://h/db?sslmode=verify-full&sslrootcert=/c.pem&x=1");
        assert_eq!(url, "postgresql://h/db?sslmode=require&x=1");
        assert_eq!(root, Some(PathBuf::from("/c.pem")));
        assert!(verify);
        assert!(!strip_unsupported("postgresql://h/db?sslmode=require").2);
    }

    #[test]
    fn the_store_settings_ride_in_the_startup_options() {
        let mut o = PgOptions::new("postgresql://u@127.0.0.1:1/db?options=-c%20work_mem%3D4MB");
        o.durability = Durability::Buffered;
        o.statement_timeout = Some(Duration::from_millis(1500));
        let r = resolve(&o).unwrap();
        let startup = r.config.get_options().unwrap();
        assert!(startup.contains("synchronous_commit=off"), "{startup}");
        assert!(startup.contains("statement_timeout=1500"), "{startup}");
        assert!(startup.contains("work_mem"), "{startup}");
        assert_eq!(r.display, "postgresql://u@127.0.0.1:1/db");
    }
}
