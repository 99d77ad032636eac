//! Where a store is: `--store URL` or `ANNALS_STORE`. A `postgresql://` (or `postgres://`) URL
//! selects the PostgreSQL backend, a path or a `file://` URL the filesystem store. The one
//! place that opens a store by location, as `Box<dyn Store>`.

use std::path::PathBuf;

use annals::Store;
use annals_postgres::{PgOptions, PgStore};

use crate::fail::{store_error, Failure, CANNOT_RUN};

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

    /// The location for messages: never a password.
    pub fn shown(&self) -> String {
        match self {
            Self::Fs(root) => root.display().to_string(),
            Self::Postgres { url, schema } => {
                format!("{} (schema {schema})", annals_postgres::redact(url))
            }
        }
    }

    /// Opens the store there. A filesystem store's root is created only if `create`.
    pub fn open(&self, create: bool) -> Result<Box<dyn Store>, Failure> {
        match self {
            Self::Fs(root) => {
                if !create && !root.is_dir() {
                    return Err(Failure::new(
                        CANNOT_RUN,
                        "no annals store here",
                        root.display(),
                        "give the root of an existing store",
                    ));
                }
                annals::FsStore::open(root)
                    .map(|s| Box::new(s) as Box<dyn Store>)
                    .map_err(|e| store_error(e, &format!("store {}", root.display())))
            }
            Self::Postgres { url, schema } => {
                PgStore::open_with(PgOptions::new(url.clone()).schema(schema.clone()))
                    .map(|s| Box::new(s) as Box<dyn Store>)
                    .map_err(|e| store_error(e, &format!("store {}", self.shown())))
            }
        }
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

/// The location from `--store`, else `ANNALS_STORE` (if set and not empty).
pub fn from_flag_or_env(flag: Option<&str>) -> Result<Option<Location>, Failure> {
    let env = std::env::var("ANNALS_STORE").ok().filter(|v| !v.is_empty());
    flag.map(str::to_owned)
        .or(env)
        .map(|text| Location::parse(&text))
        .transpose()
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
}
