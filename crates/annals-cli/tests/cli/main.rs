//! End-to-end tests of the `annals` binary against real stores made with the library.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    missing_docs,
    reason = "tests report a failure by panicking, at the value or index at fault"
)]

mod attach;
mod copy;
mod damage;
mod export;
mod find;
mod follow;
mod memory;
mod paths;
mod read;
mod write;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use annals::{FsStore, SegmentId, SessionId, Store, StoreExt};
use serde_json::json;

/// A store in a temporary directory, and the binary pointed at it.
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

    /// A new session with one segment of `n` entries `{"n": i, "text": ...}`.
    pub fn segment(&self, n: u64) -> (SessionId, SegmentId) {
        let (session, segment) = (SessionId::new(), SegmentId::new());
        let entries: Vec<_> = (0..n).map(entry).collect();
        self.store.create(session, segment, &entries).unwrap();
        (session, segment)
    }

    pub fn path(&self, (session, segment): (SessionId, SegmentId)) -> PathBuf {
        self.store.segment_path(session, segment)
    }

    /// The binary with `--root` set and no environment that could change its behaviour.
    pub fn annals(&self) -> assert_cmd::Command {
        let mut cmd = bare();
        cmd.arg("--root").arg(self.root());
        cmd
    }

    /// The same, as a `std` command (for processes that must run alongside the test).
    pub fn spawnable(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_annals"));
        cmd.env_remove("ANNALS_ROOT")
            .env("NO_COLOR", "1")
            .arg("--root")
            .arg(self.root());
        cmd
    }

    /// Every file and directory under the root (the root too) with its bytes, inode and
    /// modification time, to prove a command wrote nothing: not a byte, not a new file, not a
    /// rename, not even a touch.
    pub fn snapshot(&self) -> BTreeMap<PathBuf, (Vec<u8>, u64, i64, i64)> {
        snapshot(&self.root())
    }
}

/// See [`Fixture::snapshot`].
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, (Vec<u8>, u64, i64, i64)> {
    use std::os::unix::fs::MetadataExt;
    fn walk(path: &Path, out: &mut BTreeMap<PathBuf, (Vec<u8>, u64, i64, i64)>) {
        let meta = fs::symlink_metadata(path).unwrap();
        let bytes = if meta.is_file() {
            fs::read(path).unwrap()
        } else {
            Vec::new()
        };
        out.insert(
            path.to_path_buf(),
            (bytes, meta.ino(), meta.mtime(), meta.mtime_nsec()),
        );
        if meta.is_dir() {
            for entry in fs::read_dir(path).unwrap() {
                walk(&entry.unwrap().path(), out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, &mut out);
    out
}

/// The binary with no root and a clean environment.
pub fn bare() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::new(env!("CARGO_BIN_EXE_annals"));
    cmd.env_remove("ANNALS_ROOT").env("NO_COLOR", "1");
    cmd
}

pub fn entry(i: u64) -> serde_json::Value {
    json!({"n": i, "text": format!("entry number {i}")})
}

/// Byte offset where line `line` (1-based; line 1 is the header) of `bytes` starts.
pub fn line_start(bytes: &[u8], line: usize) -> usize {
    if line == 1 {
        return 0;
    }
    bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(line - 2)
        .map(|(i, _)| i + 1)
        .unwrap()
}

/// Flips one bit inside the JSON of line `line`, so that its CRC no longer matches.
pub fn flip_byte(path: &Path, line: usize) -> u64 {
    let mut bytes = fs::read(path).unwrap();
    let start = line_start(&bytes, line);
    bytes[start + 30] ^= 0x01;
    fs::write(path, bytes).unwrap();
    start as u64
}

/// Appends the first bytes of a line, as a crash in the middle of an append would leave.
pub fn tear(path: &Path) -> u64 {
    let len = fs::metadata(path).unwrap().len();
    let mut file = fs::OpenOptions::new().append(true).open(path).unwrap();
    std::io::Write::write_all(&mut file, br#"{"crc":"0badf00d","seq":"#).unwrap();
    len
}

/// The short form tables print: the id's last 12 hex digits.
pub fn short(id: impl std::fmt::Display) -> String {
    let id = id.to_string();
    id[id.len() - 12..].to_owned()
}

pub fn stdout_of(output: &std::process::Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

pub fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

/// Entries of a segment as the library reads them.
pub fn read_all(store: &FsStore, key: (SessionId, SegmentId)) -> Vec<serde_json::Value> {
    store.read(key.0, key.1).unwrap()
}

pub fn count(store: &FsStore, key: (SessionId, SegmentId)) -> u64 {
    store.tip(key.0, key.1).unwrap().count
}
