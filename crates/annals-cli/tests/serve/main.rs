//! `annals serve` over HTTP: every endpoint's statuses, content types, ranges and bad ids; the
//! security rules (Host, Origin, fetch metadata, token, methods, headers); live updates as
//! server-sent events. The real binary on real stores, on a free loopback port.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    missing_docs,
    reason = "tests report a failure by panicking, at the value or index at fault"
)]

#[path = "../support/mod.rs"]
mod support;

mod endpoints;
mod live;
mod postgres;
mod security;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use annals::FsStore;

/// A store in a temporary directory.
pub struct Fixture {
    dir: tempfile::TempDir,
    pub store: FsStore,
}

impl Default for Fixture {
    fn default() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path().join("store")).unwrap();
        Self { dir, store }
    }
}

impl Fixture {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    pub fn serve(&self, extra: &[&str]) -> support::server::Server {
        support::server::Server::start(&self.root(), extra)
    }

    /// Every file under the root with its bytes, to prove the server wrote nothing.
    pub fn snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, out);
                } else {
                    out.insert(path.clone(), std::fs::read(&path).unwrap());
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(&self.root(), &mut out);
        out
    }
}
