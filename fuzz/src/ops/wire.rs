//! The operations of a run and their byte format: [`decode`] reads any bytes as operations,
//! [`encode`] writes operations as the bytes that decode to them (for the seed corpus).

use annals::{Error, RawEntry};

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
    /// Damage to a blob file or the blob pack of a session: deleted, cut short, or a byte
    /// flipped.
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
    /// The entry as the stores take it.
    pub(super) fn raw(&self) -> RawEntry {
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

pub(super) fn raws(entries: &[Entry]) -> Vec<RawEntry> {
    entries.iter().map(Entry::raw).collect()
}
