//! Pre-built segments: the same `n` entries stored by annals, by the naive JSONL store and by
//! SQLite, built once per process and shared by the read benchmarks.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use annals::{codec, FileKind, FsStore, SegmentId, SessionId, Store, Version};

use crate::entries::{Corpus, Variant, CORPUS_LEN};
use crate::naive::NaiveStore;
use crate::sqlite::{SqlDurability, SqliteStore};

/// One segment of `n` entries in all three stores.
#[derive(Debug)]
pub struct Segment {
    /// Entry size class.
    pub variant: Variant,
    /// Entries.
    pub n: u64,
    /// Root of the annals store.
    pub annals_root: PathBuf,
    /// Session (same id in every store).
    pub session: SessionId,
    /// Segment (same id in every store).
    pub segment: SegmentId,
    /// Size of the annals segment file (header and framing included).
    pub annals_bytes: u64,
    /// The naive store.
    pub naive: NaiveStore,
    /// Size of the naive file.
    pub naive_bytes: u64,
    /// The SQLite database file.
    pub sqlite_path: PathBuf,
    /// Sum of the entries' JSON lengths: what a replay delivers, the same for every store.
    pub payload_bytes: u64,
}

impl Segment {
    /// Builds the segment in a new directory under `parent`. Files are fsynced before it
    /// returns, so that write-back does not run during measurements.
    ///
    /// # Panics
    /// On any I/O or SQLite error.
    #[must_use]
    pub fn build(parent: &Path, variant: Variant, n: u64) -> Segment {
        let corpus = Corpus::get(variant);
        let dir = parent.join(format!("{}-{}", variant.label(), n));
        fs::create_dir_all(&dir).expect("create fixture directory");
        let (session, segment) = (SessionId::new(), SegmentId::new());

        let annals_root = dir.join("annals");
        let store = FsStore::open(&annals_root).expect("open annals fixture store");
        store
            .create_segment(session, segment, &[])
            .expect("create annals fixture segment");
        let mut done = 0u64;
        while done < n {
            let take = (n - done).min(CORPUS_LEN as u64) as usize;
            store
                .append_batch_raw(session, segment, &corpus.raw[..take])
                .expect("fill annals fixture");
            done += take as u64;
        }
        let annals_path = store.segment_path(session, segment);
        sync_file(&annals_path);

        let naive = NaiveStore::new(dir.join("naive"), false);
        let naive_path = naive.path(&session.to_string(), &segment.to_string());
        fs::create_dir_all(naive_path.parent().expect("segment files have a parent"))
            .expect("create naive session directory");
        let mut out = BufWriter::new(File::create(&naive_path).expect("create naive fixture"));
        for i in 0..n {
            out.write_all(corpus.line_at(i))
                .expect("fill naive fixture");
        }
        out.into_inner()
            .expect("flush naive fixture")
            .sync_all()
            .expect("fsync naive fixture");

        let sqlite_path = dir.join("entries.sqlite");
        let mut db =
            SqliteStore::open(&sqlite_path, SqlDurability::Buffered).expect("open sqlite fixture");
        let mut done = 0u64;
        while done < n {
            let take = (n - done).min(CORPUS_LEN as u64);
            db.append_batch(
                session,
                segment,
                done,
                (done..done + take).map(|i| corpus.json_at(i)),
            )
            .expect("fill sqlite fixture");
            done += take;
        }
        db.checkpoint().expect("checkpoint sqlite fixture");
        drop(db);
        sync_file(&sqlite_path);

        Segment {
            variant,
            n,
            annals_bytes: file_len(&annals_path),
            naive_bytes: file_len(&naive_path),
            annals_root,
            session,
            segment,
            naive,
            sqlite_path,
            payload_bytes: corpus.payload_bytes(n),
        }
    }

    /// The shared fixture for `(variant, n)`, built in the scratch directory on first use.
    #[must_use]
    pub fn shared(variant: Variant, n: u64) -> &'static Segment {
        static BUILT: OnceLock<Mutex<HashMap<(Variant, u64), &'static Segment>>> = OnceLock::new();
        let mut built = BUILT
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        built.entry((variant, n)).or_insert_with(|| {
            let dir = crate::setup::scratch().join("fixtures");
            // Leaked on purpose: fixtures live as long as the process; their files go with
            // the scratch directory.
            Box::leak(Box::new(Segment::build(&dir, variant, n)))
        })
    }

    /// Session id as the naive store names it.
    #[must_use]
    pub fn naive_session(&self) -> String {
        self.session.to_string()
    }

    /// Segment id as the naive store names it.
    #[must_use]
    pub fn naive_segment(&self) -> String {
        self.segment.to_string()
    }

    /// Path of the annals segment file.
    #[must_use]
    pub fn annals_path(&self) -> PathBuf {
        self.annals_root
            .join(self.session.to_string())
            .join(format!("{}.jsonl", self.segment))
    }

    /// Path of the naive file.
    #[must_use]
    pub fn naive_path(&self) -> PathBuf {
        self.naive
            .path(&self.naive_session(), &self.naive_segment())
    }
}

/// Size of the annals file of a fixture of `n` entries, computed without building it (so that
/// a filtered run does not build fixtures it skips): the header plus every framed line, each
/// with its 13-digit append time. The write marks a batch's lines also carry (`u`, `more`) are
/// left out, so this is a lower bound within a few percent (the fixture's test says how close).
#[must_use]
pub fn annals_len(variant: Variant, n: u64) -> u64 {
    let corpus = Corpus::get(variant);
    let header = codec::Header {
        annals: Version::NEW_FILES.number(),
        kind: FileKind::Segment,
        session: SessionId::new(),
        segment: SegmentId::new(),
        generation: 0,
        created_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        fork: None,
    };
    let header_len = codec::encode_header(&header, &mut Vec::new()).expect("header fits") as u64;
    // {"crc":"xxxxxxxx","seq":N,"t":T,"e":ENTRY}\n, T of 13 digits (milliseconds since 2001).
    let framing = |seq: u64| 18 + 6 + u64::from(seq.checked_ilog10().unwrap_or(0)) + 1 + 18 + 5 + 2;
    header_len + corpus.payload_bytes(n) + (0..n).map(framing).sum::<u64>()
}

/// Writes a store of `sessions` sessions with one three-entry segment each, directly through
/// the codec (the bytes `create_segment` would write, without its three fsyncs per session,
/// which would make building 10k sessions take minutes).
///
/// # Panics
/// On I/O errors.
pub fn many_sessions(root: &Path, sessions: usize) {
    let corpus = Corpus::get(Variant::Small);
    for _ in 0..sessions {
        let (session, segment) = (SessionId::new(), SegmentId::new());
        let dir = root.join(session.to_string());
        fs::create_dir_all(&dir).expect("create session directory");
        let mut bytes = Vec::new();
        let header = codec::Header {
            annals: Version::NEW_FILES.number(),
            kind: FileKind::Segment,
            session,
            segment,
            generation: 0,
            created_ms: 1_750_000_000_000,
            fork: None,
        };
        codec::encode_header(&header, &mut bytes).expect("header fits");
        for i in 0..3 {
            let frame = codec::Frame {
                version: Version::NEW_FILES,
                seq: i,
                marks: codec::Marks {
                    appended_ms: header.created_ms,
                    ..codec::Marks::default()
                },
            };
            codec::encode_entry(&frame, corpus.json_at(i), &mut bytes).expect("entry fits");
        }
        fs::write(dir.join(format!("{segment}.jsonl")), bytes).expect("write segment");
    }
}

/// Copies a file and fsyncs the copy.
///
/// # Panics
/// On I/O errors.
pub fn copy_synced(from: &Path, to: &Path) {
    fs::create_dir_all(to.parent().expect("a file has a parent")).expect("create directory");
    fs::copy(from, to).expect("copy fixture");
    sync_file(to);
}

/// Fsyncs every file under `dir` (so that write-back does not run during measurements).
///
/// # Panics
/// On I/O errors.
pub fn sync_tree(dir: &Path) {
    for entry in fs::read_dir(dir).expect("read directory") {
        let entry = entry.expect("read directory entry");
        let kind = entry.file_type().expect("file type");
        if kind.is_dir() {
            sync_tree(&entry.path());
        } else if kind.is_file() {
            sync_file(&entry.path());
        }
    }
}

fn sync_file(path: &Path) {
    File::open(path)
        .and_then(|f| f.sync_all())
        .expect("fsync fixture file");
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).expect("stat fixture").len()
}
