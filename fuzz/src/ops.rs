//! `store_ops`: sequences of operations on an `FsStore` in a temporary directory, with a
//! `MemStore` as the model, plus damage injected into the files behind the store's back.
//!
//! While a segment is undamaged the two stores must agree on everything (entries, tips, errors,
//! listings). Torn tails (a partial line without a newline, or the last line cut short) are
//! not damage: the store must go on exactly like the model, minus the torn entry. Real damage
//! (a flipped byte, garbage that cannot be a torn line) makes the segment *damaged* until a
//! verify finds it clean again (after a truncate, a repair, or an append that removed a
//! garbage tail); meanwhile the file store may refuse with a corruption error, but every entry
//! it does return must be the model's entry at that sequence number.
//!
//! Inputs are decoded with a small hand-written format (see [`decode`] and [`encode`]) rather
//! than `arbitrary`, so that the seed corpus can be written from readable op lists.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

use annals::{
    AttachmentMeta, BlobId, BlobRef, Error, FsOptions, FsStore, MemStore, RawEntry, ReplayOptions,
    Result, ScanReport, SegmentId, SessionId, Store, Tip, MAX_INLINE,
};

use crate::oracle;

/// Operations per input, at most.
pub const MAX_OPS: usize = 64;
/// Entries per batch, at most.
pub const MAX_BATCH: usize = 8;
/// Both stores refuse entries and attachments larger than this (bytes).
pub const MAX_ENTRY: usize = 6000;

/// An entry to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// `{"n":N}`.
    Num(u8),
    /// `{"t":TEXT}`; the bytes are read as lossy UTF-8.
    Text(Vec<u8>),
    /// `{"p":"xxx.."}` with 4000 + (N % 2200) characters: around the largest entry kept in its
    /// line (larger ones go to blobs) and around the harness's entry limit, [`MAX_ENTRY`].
    Pad(u16),
    /// Caller-written JSON text (bytes as lossy UTF-8), through `RawEntry::from_json`.
    Json(Vec<u8>),
}

/// One step of a run. `seg` and `session` pick among the segments and the two sessions known
/// so far (modulo their number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Creates a new segment with initial entries.
    Create { session: u8, entries: Vec<Entry> },
    /// Creates an empty segment under an id already used (exists, or was deleted).
    Recreate { seg: u8 },
    /// Appends one entry.
    Append { seg: u8, entry: Entry },
    /// Appends entries in one write.
    Batch { seg: u8, entries: Vec<Entry> },
    /// The detector: appends if the tip is the model's (`stale == 0`) or a wrong one.
    AppendIf {
        seg: u8,
        stale: u8,
        entries: Vec<Entry>,
    },
    /// Keeps `keep % (count + 2)` entries.
    Truncate { seg: u8, keep: u8 },
    /// Forks at `at % (count + 2)` into a new segment (`into == 0`) or an existing one.
    Fork { seg: u8, at: u8, into: u8 },
    /// Drops the store and opens it again, with 1, 2 or 256 open files.
    Reopen { max_open: u8 },
    /// Appends an event to the segment's trace.
    Trace { seg: u8, entry: Entry },
    /// Deletes a session.
    DeleteSession { session: u8 },
    /// `FsStore::repair`, by the store or by the other writer.
    Repair { seg: u8, dry_run: bool, other: bool },
    /// A second `FsStore` on the same root (another process) appends.
    OtherAppend { seg: u8, entries: Vec<Entry> },
    /// The other writer truncates.
    OtherTruncate { seg: u8, keep: u8 },
    /// Damage: xors one byte of the segment file (never the last newline, which would only make
    /// a torn tail of the last line behind the store's back: see `CutLastLine`).
    FlipByte { seg: u8, pos: u16, xor: u8 },
    /// A crash in the middle of an append: the first bytes of the next line, no newline.
    TornWrite { seg: u8, len: u16 },
    /// A crash that lost the end of the last line: it becomes a torn tail.
    CutLastLine { seg: u8, keep: u16 },
    /// Bytes without a newline at the end of the file (damage unless they can be a torn line).
    Garbage { seg: u8, bytes: Vec<u8> },
    /// Puts an attachment into a session.
    PutAttachment { session: u8, bytes: Vec<u8> },
    /// Collects the session's unreferenced blobs.
    Gc { session: u8, dry_run: bool },
    /// Damage to a blob file of a session: deleted, cut short, or a byte flipped.
    BlobDamage { session: u8, pick: u8, how: u8 },
}

const OPS: u8 = 20;

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes([self.u8()?, self.u8()?]))
    }

    fn bytes(&mut self, max: u8) -> Option<Vec<u8>> {
        let n = usize::from(self.u8()? % max.saturating_add(1).max(1));
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head.to_vec())
    }

    fn entry(&mut self) -> Option<Entry> {
        Some(match self.u8()? % 4 {
            0 => Entry::Num(self.u8()?),
            1 => Entry::Text(self.bytes(48)?),
            2 => Entry::Pad(self.u16()?),
            _ => Entry::Json(self.bytes(64)?),
        })
    }

    fn entries(&mut self) -> Option<Vec<Entry>> {
        let n = self.u8()? as usize % (MAX_BATCH + 1);
        (0..n).map(|_| self.entry()).collect()
    }

    fn op(&mut self) -> Option<Op> {
        Some(match self.u8()? % OPS {
            0 => Op::Create {
                session: self.u8()?,
                entries: self.entries()?,
            },
            1 => Op::Recreate { seg: self.u8()? },
            2 => Op::Append {
                seg: self.u8()?,
                entry: self.entry()?,
            },
            3 => Op::Batch {
                seg: self.u8()?,
                entries: self.entries()?,
            },
            4 => Op::AppendIf {
                seg: self.u8()?,
                stale: self.u8()?,
                entries: self.entries()?,
            },
            5 => Op::Truncate {
                seg: self.u8()?,
                keep: self.u8()?,
            },
            6 => Op::Fork {
                seg: self.u8()?,
                at: self.u8()?,
                into: self.u8()?,
            },
            7 => Op::Reopen {
                max_open: self.u8()?,
            },
            8 => Op::Trace {
                seg: self.u8()?,
                entry: self.entry()?,
            },
            9 => Op::DeleteSession {
                session: self.u8()?,
            },
            10 => {
                let seg = self.u8()?;
                let flags = self.u8()?;
                Op::Repair {
                    seg,
                    dry_run: flags & 1 != 0,
                    other: flags & 2 != 0,
                }
            }
            11 => Op::OtherAppend {
                seg: self.u8()?,
                entries: self.entries()?,
            },
            12 => Op::OtherTruncate {
                seg: self.u8()?,
                keep: self.u8()?,
            },
            13 => Op::FlipByte {
                seg: self.u8()?,
                pos: self.u16()?,
                xor: self.u8()?,
            },
            14 => Op::TornWrite {
                seg: self.u8()?,
                len: self.u16()?,
            },
            15 => Op::CutLastLine {
                seg: self.u8()?,
                keep: self.u16()?,
            },
            16 => Op::Garbage {
                seg: self.u8()?,
                bytes: self.bytes(255)?,
            },
            17 => Op::PutAttachment {
                session: self.u8()?,
                bytes: self.bytes(255)?,
            },
            18 => Op::Gc {
                session: self.u8()?,
                dry_run: self.u8()? & 1 != 0,
            },
            _ => Op::BlobDamage {
                session: self.u8()?,
                pick: self.u8()?,
                how: self.u8()?,
            },
        })
    }
}

/// Reads up to [`MAX_OPS`] operations; an incomplete last one is dropped.
#[must_use]
pub fn decode(data: &[u8]) -> Vec<Op> {
    let mut r = Reader(data);
    std::iter::from_fn(|| r.op()).take(MAX_OPS).collect()
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(u8::try_from(bytes.len()).expect("seed bytes fit a length byte"));
    out.extend_from_slice(bytes);
}

fn put_entry(out: &mut Vec<u8>, e: &Entry) {
    match e {
        Entry::Num(n) => out.extend_from_slice(&[0, *n]),
        Entry::Text(t) => {
            out.push(1);
            put_bytes(out, t);
        }
        Entry::Pad(n) => {
            out.push(2);
            out.extend_from_slice(&n.to_le_bytes());
        }
        Entry::Json(j) => {
            out.push(3);
            put_bytes(out, j);
        }
    }
}

fn put_entries(out: &mut Vec<u8>, es: &[Entry]) {
    assert!(es.len() <= MAX_BATCH);
    out.push(es.len() as u8);
    for e in es {
        put_entry(out, e);
    }
}

/// The bytes that [`decode`] reads back as `ops` (for writing seeds).
#[must_use]
pub fn encode(ops: &[Op]) -> Vec<u8> {
    let mut out = Vec::new();
    for op in ops {
        match op {
            Op::Create { session, entries } => {
                out.extend_from_slice(&[0, *session]);
                put_entries(&mut out, entries);
            }
            Op::Recreate { seg } => out.extend_from_slice(&[1, *seg]),
            Op::Append { seg, entry } => {
                out.extend_from_slice(&[2, *seg]);
                put_entry(&mut out, entry);
            }
            Op::Batch { seg, entries } => {
                out.extend_from_slice(&[3, *seg]);
                put_entries(&mut out, entries);
            }
            Op::AppendIf {
                seg,
                stale,
                entries,
            } => {
                out.extend_from_slice(&[4, *seg, *stale]);
                put_entries(&mut out, entries);
            }
            Op::Truncate { seg, keep } => out.extend_from_slice(&[5, *seg, *keep]),
            Op::Fork { seg, at, into } => out.extend_from_slice(&[6, *seg, *at, *into]),
            Op::Reopen { max_open } => out.extend_from_slice(&[7, *max_open]),
            Op::Trace { seg, entry } => {
                out.extend_from_slice(&[8, *seg]);
                put_entry(&mut out, entry);
            }
            Op::DeleteSession { session } => out.extend_from_slice(&[9, *session]),
            Op::Repair {
                seg,
                dry_run,
                other,
            } => out.extend_from_slice(&[10, *seg, u8::from(*dry_run) | u8::from(*other) << 1]),
            Op::OtherAppend { seg, entries } => {
                out.extend_from_slice(&[11, *seg]);
                put_entries(&mut out, entries);
            }
            Op::OtherTruncate { seg, keep } => out.extend_from_slice(&[12, *seg, *keep]),
            Op::FlipByte { seg, pos, xor } => {
                out.extend_from_slice(&[13, *seg]);
                out.extend_from_slice(&pos.to_le_bytes());
                out.push(*xor);
            }
            Op::TornWrite { seg, len } => {
                out.extend_from_slice(&[14, *seg]);
                out.extend_from_slice(&len.to_le_bytes());
            }
            Op::CutLastLine { seg, keep } => {
                out.extend_from_slice(&[15, *seg]);
                out.extend_from_slice(&keep.to_le_bytes());
            }
            Op::Garbage { seg, bytes } => {
                out.extend_from_slice(&[16, *seg]);
                put_bytes(&mut out, bytes);
            }
            Op::PutAttachment { session, bytes } => {
                out.extend_from_slice(&[17, *session]);
                put_bytes(&mut out, bytes);
            }
            Op::Gc { session, dry_run } => {
                out.extend_from_slice(&[18, *session, u8::from(*dry_run)])
            }
            Op::BlobDamage { session, pick, how } => {
                out.extend_from_slice(&[19, *session, *pick, *how]);
            }
        }
    }
    out
}

impl Entry {
    fn raw(&self) -> RawEntry {
        let value = match self {
            Entry::Num(n) => serde_json::json!({ "n": n }),
            Entry::Text(t) => serde_json::json!({ "t": String::from_utf8_lossy(t) }),
            Entry::Pad(n) => serde_json::json!({ "p": "x".repeat(4000 + usize::from(*n % 2200)) }),
            Entry::Json(j) => {
                let text = String::from_utf8_lossy(j);
                return match RawEntry::from_json(&text) {
                    Ok(raw) => {
                        // What the store keeps must still be one JSON value, on one line.
                        assert!(!raw.as_str().contains('\n'), "{raw:?} spans lines");
                        serde_json::from_str::<serde_json::Value>(raw.as_str())
                            .unwrap_or_else(|e| panic!("minified {text:?} to {raw:?}: {e}"));
                        raw
                    }
                    Err(Error::InvalidJson(_)) => RawEntry::from_json("null").expect("json"),
                    Err(e) => panic!("from_json failed with {e}"),
                };
            }
        };
        RawEntry::from_value(&value).expect("serializable")
    }
}

fn raws(entries: &[Entry]) -> Vec<RawEntry> {
    entries.iter().map(Entry::raw).collect()
}

/// A deterministic UUID text with version 7 bits, so that runs replay identically.
fn uuid_text(n: u64) -> String {
    format!("00000000-0000-7000-8000-{n:012x}")
}

#[derive(Debug, Clone, Copy)]
struct Seg {
    session: SessionId,
    id: SegmentId,
    /// Damage was injected and no verify has found the file clean since.
    damaged: bool,
    /// The file's generation minus the model's: a torn last line costs the model a truncate
    /// (which bumps its generation) but leaves the file's header alone.
    skew: i64,
}

struct Harness {
    root: tempfile::TempDir,
    fs: FsStore,
    /// A second store on the same root: another process.
    other: FsStore,
    model: MemStore,
    sessions: [SessionId; 2],
    /// Blob damage was injected into the session: its attachments may be unreadable.
    blob_damage: [bool; 2],
    segs: Vec<Seg>,
    next_id: u64,
}

fn open_store(root: &Path, max_open_files: usize) -> FsStore {
    let options = FsOptions {
        max_open_files,
        max_entry_bytes: MAX_ENTRY,
        ..FsOptions::default()
    };
    FsStore::open_with(root, options).expect("open the store")
}

fn scratch() -> tempfile::TempDir {
    // Memory-backed when there is one: the store fsyncs on every create and truncate.
    let shm = Path::new("/dev/shm");
    let builder = tempfile::Builder::new()
        .prefix("annals-fuzz-")
        .tempdir_in(shm);
    builder
        .or_else(|_| tempfile::tempdir())
        .expect("temporary directory")
}

fn adjust(tip: Tip, skew: i64) -> Tip {
    Tip {
        count: tip.count,
        generation: u64::try_from(tip.generation as i64 + skew).expect("generation below zero"),
    }
}

/// Do two errors say the same thing (the file store's generations shifted by `skew`)?
fn same_error(got: &Error, want: &Error, skew: i64) -> bool {
    use Error as E;
    match (got, want) {
        (E::EntryTooLarge { size, limit }, E::EntryTooLarge { size: s, limit: l }) => {
            (size, limit) == (s, l)
        }
        (
            E::BeyondEnd {
                segment,
                requested,
                count,
            },
            E::BeyondEnd {
                segment: s,
                requested: r,
                count: c,
            },
        ) => (segment, requested, count) == (s, r, c),
        (
            E::SegmentExists { session, segment },
            E::SegmentExists {
                session: se,
                segment: sg,
            },
        )
        | (
            E::SegmentNotFound { session, segment },
            E::SegmentNotFound {
                session: se,
                segment: sg,
            },
        ) => (session, segment) == (se, sg),
        (E::SessionNotFound(a), E::SessionNotFound(b)) => a == b,
        (
            E::ConcurrentWriter {
                segment,
                expected,
                found,
            },
            E::ConcurrentWriter {
                segment: s,
                expected: e,
                found: f,
            },
        ) => segment == s && *expected == adjust(*e, skew) && *found == adjust(*f, skew),
        _ => false,
    }
}

impl Harness {
    fn new() -> Self {
        let root = scratch();
        let fs = open_store(root.path(), 256);
        let other = open_store(root.path(), 256);
        Self {
            root,
            fs,
            other,
            model: MemStore::with_max_entry_bytes(MAX_ENTRY),
            sessions: [1, 2].map(|n| uuid_text(n).parse().expect("uuid")),
            blob_damage: [false; 2],
            segs: Vec::new(),
            next_id: 16,
        }
    }

    fn new_segment_id(&mut self) -> SegmentId {
        self.next_id += 1;
        uuid_text(self.next_id).parse().expect("uuid")
    }

    fn session_index(&self, session: SessionId) -> usize {
        self.sessions
            .iter()
            .position(|&x| x == session)
            .expect("known session")
    }

    fn pick(&self, seg: u8) -> Option<usize> {
        (!self.segs.is_empty()).then(|| usize::from(seg) % self.segs.len())
    }

    fn model_count(&self, s: &Seg) -> u64 {
        self.model.tip(s.session, s.id).map_or(0, |t| t.count)
    }

    /// Runs an operation on the file store (`fs`, or the other writer) and on the model. An
    /// undamaged segment must give the same outcome in both. A damaged one may refuse with a
    /// corruption error, and then the model is not asked (nothing happened); any other outcome
    /// must be the model's. Returns the file store's outcome when both ran.
    fn both<T: Debug>(
        &self,
        s: Seg,
        other: bool,
        on_fs: impl FnOnce(&FsStore) -> Result<T>,
        on_model: impl FnOnce(&MemStore) -> Result<T>,
        same: impl Fn(&T, &T) -> bool,
    ) -> Option<Result<T>> {
        let got = on_fs(if other { &self.other } else { &self.fs });
        if let Err(e) = &got {
            if s.damaged && e.is_corruption() {
                return None;
            }
        }
        let want = on_model(&self.model);
        match (&got, &want) {
            (Ok(g), Ok(w)) => assert!(same(g, w), "file store gave {g:?}, the model {w:?}"),
            (Err(g), Err(w)) => assert!(
                same_error(g, w, s.skew),
                "file store failed with {g:?}, the model with {w:?}"
            ),
            _ => panic!("file store gave {got:?}, the model {want:?} ({s:?})"),
        }
        Some(got)
    }

    fn tips(s: Seg) -> impl Fn(&Tip, &Tip) -> bool {
        move |got, want| *got == adjust(*want, s.skew)
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Create { session, entries } => {
                let session = self.sessions[usize::from(*session % 2)];
                let id = self.new_segment_id();
                let s = Seg {
                    session,
                    id,
                    damaged: false,
                    skew: 0,
                };
                let raw = raws(entries);
                self.both(
                    s,
                    false,
                    |fs| fs.create_segment(session, id, &raw),
                    |m| m.create_segment(session, id, &raw),
                    Self::tips(s),
                );
                self.segs.push(s);
                self.check(self.segs.len() - 1);
            }
            Op::Recreate { seg } => {
                let Some(i) = self.pick(*seg) else { return };
                let s = self.segs[i];
                let fresh = Seg {
                    damaged: false,
                    skew: 0,
                    ..s
                };
                let created = self.both(
                    s,
                    false,
                    |fs| fs.create_segment(s.session, s.id, &[]),
                    |m| m.create_segment(s.session, s.id, &[]),
                    Self::tips(fresh),
                );
                if matches!(created, Some(Ok(_))) {
                    self.segs[i] = fresh;
                }
                self.check(i);
            }
            Op::Append { seg, entry } => self.append(*seg, std::slice::from_ref(entry), false),
            Op::Batch { seg, entries } => self.append(*seg, entries, false),
            Op::OtherAppend { seg, entries } => self.append(*seg, entries, true),
            Op::AppendIf {
                seg,
                stale,
                entries,
            } => {
                let Some(i) = self.pick(*seg) else { return };
                let s = self.segs[i];
                let mut expected = self.model.tip(s.session, s.id).unwrap_or_default();
                match stale % 4 {
                    0 => {}
                    1 => expected.count += 1,
                    2 => expected.count = expected.count.saturating_sub(1),
                    _ => expected.generation += 1,
                }
                let raw = raws(entries);
                self.both(
                    s,
                    false,
                    |fs| fs.append_if(s.session, s.id, adjust(expected, s.skew), &raw),
                    |m| m.append_if(s.session, s.id, expected, &raw),
                    Self::tips(s),
                );
                self.check(i);
            }
            Op::Truncate { seg, keep } => self.truncate(*seg, *keep, false),
            Op::OtherTruncate { seg, keep } => self.truncate(*seg, *keep, true),
            Op::Fork { seg, at, into } => self.fork(*seg, *at, *into),
            Op::Reopen { max_open } => {
                let max = [1, 2, 256][usize::from(*max_open % 3)];
                self.fs = open_store(self.root.path(), max);
                self.other = open_store(self.root.path(), 256);
                self.check_all();
            }
            Op::Trace { seg, entry } => {
                let Some(i) = self.pick(*seg) else { return };
                let s = self.segs[i];
                let raw = [entry.raw()];
                // The trace is its own file, untouched by damage to the log.
                let clean = Seg {
                    damaged: false,
                    ..s
                };
                self.both(
                    clean,
                    false,
                    |fs| fs.append_trace_raw(s.session, s.id, &raw),
                    |m| m.append_trace_raw(s.session, s.id, &raw),
                    |(), ()| true,
                );
                self.check(i);
            }
            Op::DeleteSession { session } => {
                let index = usize::from(*session % 2);
                let session = self.sessions[index];
                let any = Seg {
                    session,
                    id: uuid_text(0).parse().expect("uuid"),
                    damaged: false,
                    skew: 0,
                };
                let deleted = self.both(
                    any,
                    false,
                    |fs| fs.delete_session(session),
                    |m| m.delete_session(session),
                    |(), ()| true,
                );
                if matches!(deleted, Some(Ok(()))) {
                    self.blob_damage[index] = false;
                    for s in self.segs.iter_mut().filter(|s| s.session == session) {
                        s.damaged = false;
                        s.skew = 0;
                    }
                }
                self.check_all();
            }
            Op::Repair {
                seg,
                dry_run,
                other,
            } => self.repair(*seg, *dry_run, *other),
            Op::FlipByte { seg, pos, xor } => self.flip(*seg, *pos, *xor),
            Op::TornWrite { seg, len } => self.torn_write(*seg, *len),
            Op::CutLastLine { seg, keep } => self.cut_last_line(*seg, *keep),
            Op::Garbage { seg, bytes } => self.garbage(*seg, bytes),
            Op::PutAttachment { session, bytes } => self.put_attachment(*session, bytes),
            Op::Gc { session, dry_run } => self.gc(*session, *dry_run),
            Op::BlobDamage { session, pick, how } => self.blob_damage(*session, *pick, *how),
        }
    }

    fn append(&mut self, seg: u8, entries: &[Entry], other: bool) {
        let Some(i) = self.pick(seg) else { return };
        let s = self.segs[i];
        let raw = raws(entries);
        self.both(
            s,
            other,
            |fs| fs.append_batch_raw(s.session, s.id, &raw),
            |m| m.append_batch_raw(s.session, s.id, &raw),
            Self::tips(s),
        );
        self.check(i);
    }

    fn truncate(&mut self, seg: u8, keep: u8, other: bool) {
        let Some(i) = self.pick(seg) else { return };
        let s = self.segs[i];
        let keep = u64::from(keep) % (self.model_count(&s) + 2);
        self.both(
            s,
            other,
            |fs| fs.truncate(s.session, s.id, keep),
            |m| m.truncate(s.session, s.id, keep),
            Self::tips(s),
        );
        self.check(i);
    }

    fn fork(&mut self, seg: u8, at: u8, into: u8) {
        let Some(i) = self.pick(seg) else { return };
        let s = self.segs[i];
        let at = u64::from(at) % (self.model_count(&s) + 2);
        let siblings: Vec<usize> = (0..self.segs.len())
            .filter(|&j| self.segs[j].session == s.session)
            .collect();
        let target = if into == 0 {
            let id = self.new_segment_id();
            self.segs.push(Seg {
                id,
                damaged: false,
                skew: 0,
                ..s
            });
            self.segs.len() - 1
        } else {
            siblings[usize::from(into) % siblings.len()]
        };
        let into = self.segs[target].id;
        let fresh = Seg {
            id: into,
            damaged: false,
            skew: 0,
            ..s
        };
        let forked = self.both(
            s,
            false,
            |fs| fs.fork(s.session, s.id, at, into),
            |m| m.fork(s.session, s.id, at, into),
            Self::tips(fresh),
        );
        if matches!(forked, Some(Ok(_))) {
            // A fork copies only lines that check out, but their blobs are the session's:
            // damaged ones stay damaged for the fork too.
            let index = self.session_index(s.session);
            self.segs[target] = Seg {
                damaged: self.blob_damage[index],
                ..fresh
            };
        }
        self.check(i);
        self.check(target);
    }

    fn repair(&mut self, seg: u8, dry_run: bool, other: bool) {
        let Some(i) = self.pick(seg) else { return };
        let s = self.segs[i];
        let store = if other { &self.other } else { &self.fs };
        let path = store.segment_path(s.session, s.id);
        let before = fs::read(&path).ok();
        let count = self.model.tip(s.session, s.id).map(|t| t.count);
        let plan = match store.repair(s.session, s.id, dry_run) {
            Ok(plan) => plan,
            Err(Error::SegmentNotFound { .. }) => {
                assert!(count.is_err(), "repair lost a segment the model has");
                return;
            }
            Err(e) => {
                assert!(
                    s.damaged && e.is_corruption(),
                    "repair of {s:?} failed: {e}"
                );
                self.check(i);
                return;
            }
        };
        let before = before.expect("repair found a file that was not there");
        let count = count.expect("repair found a segment the model lacks");
        assert_eq!(plan.keep_bytes + plan.dropped_bytes, before.len() as u64);
        assert!(plan.kept_entries <= count);
        if !s.damaged {
            assert_eq!(
                plan.kept_entries, count,
                "repair of a healthy segment drops entries"
            );
            assert_eq!(plan.first_problem, None);
            assert_eq!(plan.dropped_bytes, plan.torn_tail.map_or(0, |t| t.len));
        }
        if dry_run || plan.dropped_bytes == 0 {
            assert_eq!(plan.backup, None);
            let after = fs::read(&path).expect("segment file");
            assert_eq!(
                after, before,
                "a dry run or a no-op repair changed the file"
            );
        } else {
            let backup = plan.backup.as_ref().expect("dropped bytes are saved");
            let saved = fs::read(backup).expect("backup file");
            assert_eq!(saved, before[plan.keep_bytes as usize..], "backup content");
            fs::remove_file(backup).expect("remove backup");
            if plan.kept_entries < count {
                self.model
                    .truncate(s.session, s.id, plan.kept_entries)
                    .expect("model truncate");
                self.segs[i].skew -= 1;
            }
            if plan.first_problem.is_some() {
                // Damage beyond a torn tail is cut by a rewrite, which bumps the generation.
                self.segs[i].skew += 1;
            }
            let report = store
                .verify(s.session, s.id)
                .expect("verify a repaired segment");
            // Repair cuts at the first damaged line, a line whose blob is damaged included, so
            // no line problem is left. (Blob problems stay allowed here: a blob damaged since
            // may be shared with lines the model still counts.)
            let lines_clean = report
                .problems
                .iter()
                .all(|p| matches!(p.reason, annals::CorruptReason::Blob { .. }));
            assert!(lines_clean && report.torn_tail.is_none(), "{report:?}");
        }
        self.check(i);
    }

    /// The segment file's bytes, if it is undamaged and exists (injections that need to know
    /// what they break only run there).
    fn intact_file(&self, i: usize) -> Option<(std::path::PathBuf, Vec<u8>)> {
        let s = self.segs[i];
        if s.damaged {
            return None;
        }
        let path = self.fs.segment_path(s.session, s.id);
        let bytes = fs::read(&path).ok()?;
        Some((path, bytes))
    }

    /// After an injection: damaged unless the unterminated end of the file can be a torn line.
    fn classify_tail(&mut self, i: usize, path: &Path) {
        let bytes = fs::read(path).expect("segment file");
        let tail_at = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        if !oracle::plausible_torn_tail(&bytes[tail_at..]) || tail_at == 0 {
            self.segs[i].damaged = true;
        }
    }

    fn flip(&mut self, seg: u8, pos: u16, xor: u8) {
        let Some(i) = self.pick(seg) else { return };
        let Some((path, bytes)) = self.intact_file(i) else {
            return;
        };
        if bytes.len() < 2 {
            return;
        }
        let mut pos = usize::from(pos) % bytes.len();
        if Some(pos) == bytes.iter().rposition(|&b| b == b'\n') {
            let Some(before) = pos.checked_sub(1) else {
                return;
            };
            pos = before;
        }
        let xor = if xor == 0 { 1 } else { xor };
        let file = OpenOptions::new().write(true).open(&path).expect("open");
        file.write_all_at(&[bytes[pos] ^ xor], pos as u64)
            .expect("flip");
        self.segs[i].damaged = true;
        self.check(i);
    }

    fn torn_write(&mut self, seg: u8, len: u16) {
        let Some(i) = self.pick(seg) else { return };
        let Some((path, _)) = self.intact_file(i) else {
            return;
        };
        let s = self.segs[i];
        let line = oracle::entry_line(self.model_count(&s), br#"{"torn":true}"#);
        let k = 1 + usize::from(len) % (line.len() - 1);
        let mut file = OpenOptions::new().append(true).open(&path).expect("open");
        file.write_all(&line[..k]).expect("torn write");
        self.classify_tail(i, &path);
        self.check(i);
    }

    fn cut_last_line(&mut self, seg: u8, keep: u16) {
        let Some(i) = self.pick(seg) else { return };
        let Some((path, bytes)) = self.intact_file(i) else {
            return;
        };
        let s = self.segs[i];
        let count = self.model_count(&s);
        if count == 0 {
            return;
        }
        let (lines, _) = oracle::split_lines(&bytes);
        let &(start, line) = lines.last().expect("entry lines");
        let cut = start + usize::from(keep) % (line.len() + 1);
        let file = OpenOptions::new().write(true).open(&path).expect("open");
        file.set_len(cut as u64).expect("cut");
        // Committed bytes only go missing in a power cut, which no process survives: drop
        // every cached handle, as a restart would.
        self.fs = open_store(self.root.path(), self.fs.options().max_open_files);
        self.other = open_store(self.root.path(), 256);
        // The last entry was never committed, as far as anyone can tell.
        self.model
            .truncate(s.session, s.id, count - 1)
            .expect("model truncate");
        self.segs[i].skew -= 1;
        self.check(i);
    }

    fn garbage(&mut self, seg: u8, bytes: &[u8]) {
        let Some(i) = self.pick(seg) else { return };
        let s = self.segs[i];
        let path = self.fs.segment_path(s.session, s.id);
        let bytes: Vec<u8> = bytes.iter().copied().filter(|&b| b != b'\n').collect();
        if bytes.is_empty() || !path.is_file() {
            return;
        }
        let mut file = OpenOptions::new().append(true).open(&path).expect("open");
        file.write_all(&bytes).expect("garbage");
        self.classify_tail(i, &path);
        self.check(i);
    }

    fn put_attachment(&mut self, session: u8, bytes: &[u8]) {
        let index = usize::from(session % 2);
        let session = self.sessions[index];
        let meta = AttachmentMeta {
            media_type: "application/octet-stream".into(),
            label: Some(format!("{} bytes", bytes.len())),
            ..AttachmentMeta::default()
        };
        let any = Seg {
            session,
            id: uuid_text(0).parse().expect("uuid"),
            damaged: false,
            skew: 0,
        };
        self.both(
            any,
            false,
            |fs| fs.put_attachment(session, bytes, &meta),
            |m| m.put_attachment(session, bytes, &meta),
            |g, w| (g.id, g.len, &g.meta) == (w.id, w.len, &w.meta),
        );
        self.check_attachments(index);
    }

    /// Blobs the model's entries and attachments refer to, in undamaged segments.
    fn referenced(&self, session: SessionId) -> BTreeSet<BlobId> {
        let mut out: BTreeSet<BlobId> = self
            .model
            .list_attachments(session)
            .map(|l| l.into_iter().map(|a| a.id).collect())
            .unwrap_or_default();
        for s in self
            .segs
            .iter()
            .filter(|s| s.session == session && !s.damaged)
        {
            let mut entries = self.model.read_raw(s.session, s.id).unwrap_or_default();
            let _ = self.model.replay_trace_raw(
                s.session,
                s.id,
                &ReplayOptions::strict(),
                &mut |entry| {
                    let json = entry.json().expect("trace json");
                    entries.push(RawEntry::from_json(json).expect("trace json"));
                    Ok(std::ops::ControlFlow::Continue(()))
                },
            );
            for e in entries.iter().filter(|e| e.len() > MAX_INLINE) {
                out.insert(BlobRef::for_entry(e.as_str()).sha256);
            }
        }
        out
    }

    fn gc(&mut self, session: u8, dry_run: bool) {
        let index = usize::from(session % 2);
        let session = self.sessions[index];
        let referenced = self.referenced(session);
        let got = self.fs.gc_blobs(session, dry_run);
        let want = self.model.gc_blobs(session, dry_run);
        match (got, want) {
            (Ok(g), Ok(_)) => {
                for id in &g.orphans {
                    assert!(
                        !referenced.contains(id),
                        "gc took blob {id}, which is referred to"
                    );
                }
            }
            (Err(g), Err(w)) => assert!(same_error(&g, &w, 0), "gc: {g} / {w}"),
            (g, w) => panic!("gc: file store {g:?}, model {w:?}"),
        }
        // What gc left must still read back: every undamaged segment, every attachment.
        self.check_all();
    }

    fn blob_damage(&mut self, session: u8, pick: u8, how: u8) {
        let index = usize::from(session % 2);
        let session = self.sessions[index];
        let mut blobs = Vec::new();
        let root = self.root.path().join(session.to_string()).join("blobs");
        for shard in fs::read_dir(root).into_iter().flatten().flatten() {
            for blob in fs::read_dir(shard.path()).into_iter().flatten().flatten() {
                if blob.file_type().is_ok_and(|t| t.is_file()) {
                    blobs.push(blob.path());
                }
            }
        }
        if blobs.is_empty() {
            return;
        }
        blobs.sort();
        let path = &blobs[usize::from(pick) % blobs.len()];
        let len = fs::metadata(path).expect("blob").len();
        match how % 3 {
            // An empty blob (an empty attachment) has no byte to flip or cut.
            _ if len == 0 => fs::remove_file(path).expect("remove blob"),
            0 => fs::remove_file(path).expect("remove blob"),
            1 => OpenOptions::new()
                .write(true)
                .open(path)
                .and_then(|f| f.set_len(len / 2))
                .expect("cut blob"),
            _ => {
                let pos = u64::from(how) % len.max(1);
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(path)
                    .expect("open blob");
                let mut byte = [0u8];
                file.read_exact_at(&mut byte, pos).expect("read blob");
                file.write_all_at(&[byte[0] ^ 0x01], pos)
                    .expect("flip blob");
            }
        }
        self.blob_damage[index] = true;
        // Any segment of the session may refer to it; the next verify clears the others.
        let model = &self.model;
        for s in self.segs.iter_mut().filter(|s| s.session == session) {
            s.damaged |= model.tip(s.session, s.id).is_ok();
        }
        self.check_all();
    }

    fn check_attachments(&self, index: usize) {
        let session = self.sessions[index];
        let got = self.fs.list_attachments(session);
        let want = self.model.list_attachments(session);
        let want = match (got, want) {
            (Ok(g), Ok(w)) => {
                let key = |l: &[annals::Attachment]| {
                    l.iter()
                        .map(|a| (a.id, a.len, a.meta.clone()))
                        .collect::<Vec<_>>()
                };
                assert_eq!(key(&g), key(&w), "attachments");
                w
            }
            (Err(g), Err(w)) => {
                assert!(same_error(&g, &w, 0), "attachments: {g} / {w}");
                return;
            }
            (g, w) => panic!("attachments: file store {g:?}, model {w:?}"),
        };
        for a in want {
            match self.fs.get_blob(session, &a.id) {
                Ok(bytes) => assert_eq!(
                    bytes,
                    self.model.get_blob(session, &a.id).expect("model blob")
                ),
                Err(e) => assert!(
                    self.blob_damage[index]
                        && (e.is_corruption() || matches!(e, Error::BlobNotFound { .. })),
                    "attachment {}: {e}",
                    a.id
                ),
            }
        }
    }

    fn check_all(&mut self) {
        for i in 0..self.segs.len() {
            self.check(i);
        }
        self.check_listings();
    }

    fn check(&mut self, i: usize) {
        if self.segs[i].damaged {
            let s = self.segs[i];
            if self.fs.verify(s.session, s.id).is_ok_and(|r| r.is_clean()) {
                self.segs[i].damaged = false;
            }
        }
        let s = self.segs[i];
        self.check_no_temp_files(s.session);
        self.check_trace(s);
        if s.damaged {
            self.check_damaged(s);
        } else {
            self.check_undamaged(s);
        }
    }

    fn check_no_temp_files(&self, session: SessionId) {
        let dir = self.root.path().join(session.to_string());
        let mut dirs = vec![dir.clone()];
        let shards = fs::read_dir(dir.join("blobs"))
            .into_iter()
            .flatten()
            .flatten();
        dirs.extend(shards.map(|e| e.path()));
        for entry in dirs.iter().filter_map(|d| fs::read_dir(d).ok()).flatten() {
            let name = entry.expect("dir entry").file_name();
            let name = name.to_string_lossy();
            assert!(!name.ends_with(".tmp"), "temporary file {name} left behind");
        }
    }

    fn check_trace(&self, s: Seg) {
        let collect = |store: &dyn Store| {
            let mut got = Vec::new();
            store
                .replay_trace_raw(s.session, s.id, &ReplayOptions::strict(), &mut |e| {
                    got.push((e.seq, crate::oracle::shown(&e)));
                    Ok(std::ops::ControlFlow::Continue(()))
                })
                .map(|_| got)
        };
        let blob_damage = self.blob_damage[self.session_index(s.session)];
        match (collect(&self.fs), collect(&self.model)) {
            // A trace entry kept as a blob may have lost it.
            (Err(g), Ok(_)) if blob_damage && g.is_corruption() => {}
            (Ok(g), Ok(w)) => assert_eq!(g, w, "trace"),
            (Err(g), Err(w)) => assert!(same_error(&g, &w, 0), "trace: {g} / {w}"),
            (g, w) => panic!("trace: file store {g:?}, model {w:?}"),
        }
    }

    fn replay(&self, s: Seg, options: &ReplayOptions) -> Result<(ScanReport, Vec<(u64, String)>)> {
        let mut got = Vec::new();
        let report = self.fs.replay_raw(s.session, s.id, options, &mut |e| {
            got.push((e.seq, crate::oracle::shown(&e)));
            Ok(std::ops::ControlFlow::Continue(()))
        })?;
        Ok((report, got))
    }

    fn check_undamaged(&self, s: Seg) {
        let want = self.model.read_raw(s.session, s.id);
        let got = self.fs.read_raw(s.session, s.id);
        let want = match (got, want) {
            (Ok(g), Ok(w)) => {
                assert_eq!(g, w, "entries of {s:?}");
                w
            }
            (Err(g), Err(w)) => {
                assert!(same_error(&g, &w, s.skew), "read: {g} / {w}");
                return;
            }
            (g, w) => panic!("read of {s:?}: file store {g:?}, model {w:?}"),
        };
        let tip = self.model.tip(s.session, s.id).expect("model tip");
        assert_eq!(
            self.fs.tip(s.session, s.id).expect("tip"),
            adjust(tip, s.skew)
        );
        assert_eq!(
            self.other.tip(s.session, s.id).expect("tip"),
            adjust(tip, s.skew)
        );
        let verified = self.fs.verify(s.session, s.id).expect("verify");
        assert!(verified.is_clean(), "{verified:?}");
        assert_eq!(verified.entries, tip.count);
        let (report, all) = self.replay(s, &ReplayOptions::tolerant()).expect("replay");
        assert_eq!(
            report, verified,
            "the mapped and the streaming reader disagree"
        );
        let from = tip.count / 2;
        let (_, later) = self
            .replay(s, &ReplayOptions::strict().from_seq(from))
            .expect("replay");
        assert_eq!(later, all[from as usize..]);
        for ((seq, json), (n, w)) in all.iter().zip(want.iter().enumerate()) {
            assert_eq!((*seq, json.as_str()), (n as u64, w.as_str()));
        }
        // Without reading blobs: entries too long for a line come out as their reference.
        let raw: Vec<String> = want
            .iter()
            .map(|w| match w.len() > MAX_INLINE {
                true => crate::oracle::blob_shown(&BlobRef::for_entry(w.as_str())),
                false => w.as_str().to_owned(),
            })
            .collect();
        for store in [&self.fs as &dyn Store, &self.model] {
            let mut got = Vec::new();
            store
                .replay_raw(
                    s.session,
                    s.id,
                    &ReplayOptions::strict().blob_refs(),
                    &mut |e| {
                        got.push(crate::oracle::shown(&e));
                        Ok(std::ops::ControlFlow::Continue(()))
                    },
                )
                .expect("raw replay");
            assert_eq!(got, raw, "raw blob references of {s:?}");
        }
    }

    fn check_damaged(&self, s: Seg) {
        let want = self
            .model
            .read_raw(s.session, s.id)
            .expect("a damaged segment exists");
        let right = |seq: u64, json: &str| {
            let at = usize::try_from(seq).expect("seq");
            assert!(
                want.get(at).is_some_and(|w| w.as_str() == json),
                "damaged {s:?} returned {json} as entry {seq}, the model has {:?}",
                want.get(at)
            );
        };
        match self.fs.read_raw(s.session, s.id) {
            Ok(got) => assert_eq!(got, want),
            Err(e) => assert!(e.is_corruption(), "strict read of damaged {s:?}: {e}"),
        }
        let verified = self.fs.verify(s.session, s.id);
        match self.replay(s, &ReplayOptions::tolerant()) {
            Ok((report, got)) => {
                for (seq, json) in got {
                    right(seq, &json);
                }
                assert_eq!(Some(report), verified.ok(), "mapped and streaming disagree");
            }
            Err(e) => assert!(e.is_corruption(), "tolerant read of damaged {s:?}: {e}"),
        }
        for store in [&self.fs, &self.other] {
            match store.tip(s.session, s.id) {
                Ok(tip) => {
                    let model = self.model.tip(s.session, s.id).expect("model tip");
                    assert_eq!(tip, adjust(model, s.skew), "tip of damaged {s:?}");
                }
                Err(e) => assert!(e.is_corruption(), "tip of damaged {s:?}: {e}"),
            }
        }
    }

    fn check_listings(&self) {
        for session in self.sessions {
            let got = self.fs.list_segments(session);
            let want = self.model.list_segments(session);
            let (got, want) = match (got, want) {
                (Ok(g), Ok(w)) => (g, w),
                (Err(g), Err(w)) => {
                    assert!(same_error(&g, &w, 0), "listing: {g} / {w}");
                    continue;
                }
                (g, w) => panic!("listing: file store {g:?}, model {w:?}"),
            };
            let ids = |l: &[annals::SegmentInfo]| l.iter().map(|i| i.segment).collect::<Vec<_>>();
            assert_eq!(ids(&got), ids(&want), "listed segments");
            for (g, w) in got.iter().zip(&want) {
                let s = self
                    .segs
                    .iter()
                    .find(|s| s.id == g.segment && s.session == session)
                    .expect("a listed segment is known");
                if s.damaged && g.damage.is_some() {
                    continue;
                }
                assert_eq!(g.damage, None, "{s:?}");
                assert_eq!(g.tip, adjust(w.tip, s.skew), "listed tip of {s:?}");
                assert_eq!(g.fork, w.fork, "lineage of {s:?}");
            }
        }
        for index in 0..2 {
            self.check_attachments(index);
        }
        let got = self.fs.list_sessions().expect("sessions");
        assert_eq!(got, self.model.list_sessions().expect("sessions"));
    }
}

/// Runs the operations `data` decodes to; panics on any disagreement.
pub fn run(data: &[u8]) {
    let mut h = Harness::new();
    for op in decode(data) {
        h.apply(&op);
        if std::env::var_os("ANNALS_FUZZ_TRACE").is_some() {
            eprintln!("{op:?}");
            for session in h.sessions {
                let root = h.root.path().join(session.to_string()).join("blobs");
                for shard in fs::read_dir(root).into_iter().flatten().flatten() {
                    for blob in fs::read_dir(shard.path()).into_iter().flatten().flatten() {
                        eprintln!("  blob {}", blob.file_name().to_string_lossy());
                    }
                }
            }
            for s in &h.segs {
                let bytes = fs::read(h.fs.segment_path(s.session, s.id)).unwrap_or_default();
                eprintln!("  {s:?}\n{}", String::from_utf8_lossy(&bytes));
            }
        }
    }
    h.check_all();
}
