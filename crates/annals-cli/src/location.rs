//! Where a store is: `--store STORE`, `--root DIR`, `$ANNALS_STORE`, `$ANNALS_ROOT`, in that
//! order, else `./annals-store`. A `postgresql://` (or `postgres://`) URL selects the
//! PostgreSQL backend, a path or a `file://` URL the filesystem store. The one place that reads
//! a location; [`crate::target`] opens it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::fail::Failure;

/// The store root used when no location is given at all.
pub const DEFAULT_ROOT: &str = "./annals-store";

/// The environment variable a demo's workers find their store in (the parent sets it, so a
/// password in the URL never shows in `ps`).
pub const STORE_ENV: &str = "ANNALS_STORE";

/// A store's location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A filesystem store's root directory.
    Fs(PathBuf),
    /// A PostgreSQL URL, and the schema (`schema=` in the URL's query, default `annals`).
    Postgres { url: String, schema: String },
}

impl Location {
    /// Reads a location: `postgresql://…` / `postgres://…` (an optional `schema=NAME` query
    /// parameter names the schema), `file://PATH`, or a path.
    pub fn parse(text: &str) -> Result<Self, Failure> {
        if text.starts_with("postgresql://") || text.starts_with("postgres://") {
            let (url, schema) = take_schema(text);
            return Ok(Self::Postgres {
                url,
                schema: schema.unwrap_or_else(|| "annals".to_owned()),
            });
        }
        if let Some(path) = text.strip_prefix("file://") {
            return Ok(Self::Fs(PathBuf::from(path)));
        }
        if text.contains("://") {
            return Err(Failure::usage(
                format!("unknown kind of store {:?}", annals_postgres::redact(text)),
                "give a directory, a file:// URL or a postgresql:// URL",
            ));
        }
        Ok(Self::Fs(PathBuf::from(text)))
    }

    /// `--store`, else `--root` (clap lets only one of them be given), else `$ANNALS_STORE`,
    /// else `$ANNALS_ROOT` (empty variables count as unset), else [`DEFAULT_ROOT`].
    pub fn resolve(store: Option<&str>, root: Option<PathBuf>) -> Result<Self, Failure> {
        if let Some(store) = store {
            return Self::parse(store);
        }
        if let Some(root) = root {
            return Ok(Self::Fs(root));
        }
        if let Some(store) = std::env::var_os(STORE_ENV).filter(|v| !v.is_empty()) {
            let Some(text) = store.to_str() else {
                // Not UTF-8, so no URL: a directory's path, maybe as file://PATH.
                use std::os::unix::ffi::OsStrExt;
                let bytes = store.as_bytes();
                let path = bytes.strip_prefix(b"file://").unwrap_or(bytes);
                return Ok(Self::Fs(PathBuf::from(std::ffi::OsStr::from_bytes(path))));
            };
            return Self::parse(text);
        }
        let root = std::env::var_os("ANNALS_ROOT")
            .filter(|v| !v.is_empty())
            .map_or_else(|| PathBuf::from(DEFAULT_ROOT), PathBuf::from);
        Ok(Self::Fs(root))
    }

    /// The location for messages: never a password.
    pub fn shown(&self) -> String {
        match self {
            Self::Fs(root) => root.display().to_string(),
            Self::Postgres { url, schema } => {
                format!("{} (schema {schema})", annals_postgres::redact(url))
            }
        }
    }

    /// For messages: `store ./annals-store`.
    pub fn describe(&self) -> String {
        format!("store {}", self.shown())
    }

    /// The filesystem store's root; `None` for a database.
    pub fn fs_root(&self) -> Option<&Path> {
        match self {
            Self::Fs(root) => Some(root),
            Self::Postgres { .. } => None,
        }
    }

    /// The location as `$ANNALS_STORE` holds it (the password too: for a child process's
    /// environment only, never for output).
    pub fn to_env(&self) -> OsString {
        match self {
            Self::Fs(root) => {
                let mut text = OsString::from("file://");
                text.push(root.as_os_str());
                text
            }
            Self::Postgres { url, schema } => {
                let sep = if url.contains('?') { '&' } else { '?' };
                OsString::from(format!("{url}{sep}schema={schema}"))
            }
        }
    }

    /// True for a database URL that holds a password (which [`Location::shown`] and
    /// [`Location::as_flag`] leave out).
    pub fn has_password(&self) -> bool {
        match self {
            Self::Fs(_) => false,
            Self::Postgres { url, .. } => annals_postgres::redact(url) != *url,
        }
    }

    /// The words that name this store on a command line, for the commands a program prints
    /// for people to paste: `--root DIR`, or `--store URL` with any password left out (the
    /// reader has it, or `PGPASSWORD`).
    pub fn as_flag(&self) -> String {
        match self {
            Self::Fs(root) => format!(
                "--root {}",
                crate::term::shell_word(&root.display().to_string())
            ),
            Self::Postgres { url, schema } => {
                let url = without_password(url);
                let sep = if url.contains('?') { '&' } else { '?' };
                let url = if schema == "annals" {
                    url
                } else {
                    format!("{url}{sep}schema={schema}")
                };
                format!("--store {}", crate::term::shell_word(&url))
            }
        }
    }
}

/// The URL with the password taken out of its user part and its query (`password=`).
fn without_password(url: &str) -> String {
    let redacted = annals_postgres::redact(url);
    let (base, query) = redacted
        .split_once('?')
        .map_or((redacted.as_str(), None), |(b, q)| (b, Some(q)));
    let base = base.replacen(":***@", "@", 1);
    let kept: Vec<&str> = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter(|pair| pair.split_once('=').is_none_or(|(k, _)| k != "password"))
        .collect();
    if kept.is_empty() {
        base
    } else {
        format!("{base}?{}", kept.join("&"))
    }
}

/// Takes `schema=NAME` out of a URL's query (it is annals's, not libpq's).
fn take_schema(url: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), None);
    };
    let mut schema = None;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.strip_prefix("schema=") {
            Some(s) => {
                schema = Some(s.to_owned());
                false
            }
            None => true,
        })
        .collect();
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (url, schema)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_select_the_backend_and_paths_the_filesystem() {
        assert_eq!(
            Location::parse("postgresql://u:pw@h/db?schema=s1&sslmode=require").unwrap(),
            Location::Postgres {
                url: "postgresql://u:pw@h/db?sslmode=require".into(),
                schema: "s1".into()
            }
        );
        assert_eq!(
            Location::parse("postgres://h/db").unwrap(),
            Location::Postgres {
                url: "postgres://h/db".into(),
                schema: "annals".into()
            }
        );
        assert_eq!(
            Location::parse("file:///var/annals").unwrap(),
            Location::Fs("/var/annals".into())
        );
        assert_eq!(
            Location::parse("./store").unwrap(),
            Location::Fs("./store".into())
        );
        assert!(Location::parse("mysql://h/db").is_err());
        let shown = Location::parse("postgresql://u:pw@h/db").unwrap().shown();
        assert!(!shown.contains("pw"), "{shown}");
    }

    #[test]
    fn a_location_goes_through_the_environment_unchanged() {
        for text in [
            "postgresql://u:pw@h:5/db?sslmode=require&schema=s1",
            "postgresql://h/db",
            "file:///var/annals store",
        ] {
            let location = Location::parse(text).unwrap();
            let back = Location::parse(location.to_env().to_str().unwrap()).unwrap();
            assert_eq!(back, location, "{text}");
        }
    }

    #[test]
    fn a_pasteable_flag_never_holds_the_password() {
        let flag = |text: &str| Location::parse(text).unwrap().as_flag();
        assert_eq!(
            flag("postgresql://u:pw@h/db?password=pw2&sslmode=require&schema=s1"),
            "--store 'postgresql://u@h/db?sslmode=require&schema=s1'"
        );
        assert_eq!(
            flag("postgresql://u:pw@h/db?password=pw2"),
            "--store postgresql://u@h/db"
        );
        assert_eq!(flag("/tmp/a b"), "--root '/tmp/a b'");
    }
}
