//! The naive JSONL store: what agent runtimes do today. Each append opens the file, checks its
//! last byte for a torn line, writes, and closes; counting reads the whole file; truncating
//! reads, deserializes and rewrites everything. No CRC, no sequence numbers, no locking, no
//! crash atomicity — it is the baseline for speed, not a design to copy.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A directory of `{session}/{segment}.jsonl` files, one JSON entry per line.
#[derive(Debug, Clone)]
pub struct NaiveStore {
    root: PathBuf,
    sync: bool,
}

impl NaiveStore {
    /// A store rooted at `root`; with `sync`, every append ends with `fdatasync` (what it would
    /// take to survive a power cut).
    #[must_use]
    pub fn new(root: impl Into<PathBuf>, sync: bool) -> Self {
        Self {
            root: root.into(),
            sync,
        }
    }

    /// The store's root.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Path of a segment's file.
    #[must_use]
    pub fn path(&self, session: &str, segment: &str) -> PathBuf {
        self.root.join(session).join(format!("{segment}.jsonl"))
    }

    /// Appends complete lines (each ending in `\n`, already concatenated) in one write: create
    /// the session directory if needed, open, stat, read the last byte to detect a torn line
    /// (and start on a fresh line if there is one), write, close.
    ///
    /// # Errors
    /// I/O errors.
    pub fn append(&self, session: &str, segment: &str, lines: &[u8]) -> io::Result<()> {
        let dir = self.root.join(session);
        fs::create_dir_all(&dir)?;
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(dir.join(format!("{segment}.jsonl")))?;
        let len = file.metadata()?.len();
        let mut torn = false;
        if len > 0 {
            file.seek(SeekFrom::End(-1))?;
            let mut last = [0u8; 1];
            file.read_exact(&mut last)?;
            torn = last[0] != b'\n';
        }
        if torn {
            let mut fixed = Vec::with_capacity(lines.len() + 1);
            fixed.push(b'\n');
            fixed.extend_from_slice(lines);
            file.write_all(&fixed)?;
        } else {
            file.write_all(lines)?;
        }
        if self.sync {
            file.sync_data()?;
        }
        Ok(())
    }

    /// Entry count: read the whole file and count its lines.
    ///
    /// # Errors
    /// I/O errors.
    pub fn count(&self, session: &str, segment: &str) -> io::Result<u64> {
        let bytes = fs::read(self.path(session, segment))?;
        Ok(memchr::memchr_iter(b'\n', &bytes).count() as u64)
    }

    /// Streams every entry, deserialized, into `f`. A last line that does not parse is taken
    /// as torn and skipped; any other bad line is an error. Returns the number of entries.
    ///
    /// # Errors
    /// I/O errors; `InvalidData` for a line that does not deserialize.
    pub fn replay<T: DeserializeOwned>(
        &self,
        session: &str,
        segment: &str,
        mut f: impl FnMut(T),
    ) -> io::Result<u64> {
        let text = fs::read_to_string(self.path(session, segment))?;
        let mut lines = text.lines().filter(|l| !l.is_empty()).peekable();
        let mut n = 0;
        while let Some(line) = lines.next() {
            match serde_json::from_str(line) {
                Ok(v) => f(v),
                Err(_) if lines.peek().is_none() && !text.ends_with('\n') => break,
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            }
            n += 1;
        }
        Ok(n)
    }

    /// Keeps the first `keep` entries: read all entries, deserialize them, re-serialize the
    /// prefix and write it over the file.
    ///
    /// # Errors
    /// I/O errors; `InvalidData` for a line that does not deserialize.
    pub fn truncate<T: DeserializeOwned + Serialize>(
        &self,
        session: &str,
        segment: &str,
        keep: usize,
    ) -> io::Result<()> {
        let mut entries: Vec<T> = Vec::new();
        self.replay(session, segment, |e| entries.push(e))?;
        entries.truncate(keep);
        let mut out = Vec::new();
        for e in &entries {
            serde_json::to_writer(&mut out, e).map_err(io::Error::other)?;
            out.push(b'\n');
        }
        fs::write(self.path(session, segment), out)
    }

    /// Session names, newest first (names are time-ordered ids).
    ///
    /// # Errors
    /// I/O errors.
    pub fn list_sessions(&self) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.root)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                if let Some(name) = entry.file_name().to_str() {
                    out.push(name.to_string());
                }
            }
        }
        out.sort_unstable_by(|a, b| b.cmp(a));
        Ok(out)
    }
}

/// The floor: raw `write(2)` of a pre-framed line to an already-open `O_APPEND` file, plus
/// `fdatasync` in sync mode. Nothing annals could do is cheaper.
#[derive(Debug)]
pub struct Floor {
    file: File,
    sync: bool,
}

impl Floor {
    /// Creates (or opens) `path` for appending.
    ///
    /// # Errors
    /// I/O errors.
    pub fn open(path: &Path, sync: bool) -> io::Result<Self> {
        let file = OpenOptions::new().append(true).create(true).open(path)?;
        Ok(Self { file, sync })
    }

    /// One `write(2)` of `bytes` (plus `fdatasync` in sync mode). Safe to call from several
    /// threads: `O_APPEND` makes each write land whole at the end.
    ///
    /// # Errors
    /// I/O errors, or a short write.
    pub fn append(&self, bytes: &[u8]) -> io::Result<()> {
        let n = (&self.file).write(bytes)?;
        if n != bytes.len() {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "short write"));
        }
        if self.sync {
            self.file.sync_data()?;
        }
        Ok(())
    }
}
