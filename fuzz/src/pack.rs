//! `blob_pack`: arbitrary bytes as a session's blob pack (docs/FORMAT.md, formats 3 and 4),
//! under a segment whose lines refer to every blob the bytes name in something shaped like a
//! record header. Whatever the pack holds:
//! - replay, verify and `get_blob` never panic or hang, fail only with corruption errors, and
//!   hand out a blob only with the length its reference gives; once verify finds nothing
//!   wrong, every blob they hand out hashes to its id (replay checks a record's CRC, verify
//!   its hash too: only a forged record can tell the two apart);
//! - strict and tolerant replays agree where the strict one succeeds;
//! - garbage collection loses nothing a reader could read;
//! - a writer appending a new blob to the session (and one the pack holds) succeeds, reads it
//!   back, and loses nothing another segment's readers could read.
//!
//! Memory stays bounded by the store's largest entry (1 MiB here), whatever a header claims
//! (libFuzzer's RSS limit enforces it).

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::Path;

use annals::codec::{self, FileKind, Frame, Header, Marks, Version};
use annals::testing::support::{segment_id, session_id, TempStore};
use annals::{
    BlobId, BlobRef, Body, FsOptions, FsStore, RawEntry, ReplayOptions, SegmentId, SessionId, Store,
};

/// How many blobs the segment refers to, at most.
const MAX_REFS: usize = 16;

/// The store's largest entry: nothing larger is ever read or allocated for.
const MAX_ENTRY: usize = 1 << 20;

const MAGIC: &[u8] = b"{\"blob\":\"";

/// Every `(id, len)` that something shaped like a record header in `data` names, in order,
/// without duplicates: what the segment refers to.
#[must_use]
pub fn named(data: &[u8]) -> Vec<(BlobId, u64)> {
    let mut found = Vec::new();
    for (at, _) in data
        .windows(MAGIC.len())
        .enumerate()
        .filter(|(_, w)| *w == MAGIC)
    {
        let rest = &data[at + MAGIC.len()..];
        let Some(id) = rest
            .get(..64)
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| hex.parse::<BlobId>().ok())
        else {
            continue;
        };
        let Some(rest) = rest.get(64..).and_then(|r| r.strip_prefix(b"\",\"len\":")) else {
            continue;
        };
        let digits = rest
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count()
            .min(19);
        let Some(len) = std::str::from_utf8(&rest[..digits])
            .ok()
            .and_then(|d| d.parse::<u64>().ok())
        else {
            continue;
        };
        if !found.iter().any(|(i, _)| *i == id) {
            found.push((id, len));
        }
        if found.len() == MAX_REFS {
            break;
        }
    }
    found
}

/// A format-4 segment file whose lines refer to `refs`, then one entry kept in its line that
/// claims every entry before it durable: so every blob fault is damage, never an interrupted
/// tail (which replay, checking a record's CRC, and verify, its hash too, could see apart).
fn segment_image(session: SessionId, segment: SegmentId, refs: &[(BlobId, u64)]) -> Vec<u8> {
    let header = Header {
        annals: Version::V4.number(),
        kind: FileKind::Segment,
        session,
        segment,
        generation: 0,
        created_ms: 1_700_000_000_000,
        fork: None,
    };
    let frame = |seq| Frame {
        version: Version::V4,
        seq,
        marks: Marks {
            appended_ms: 1_700_000_000_000,
            unsynced: 0,
            more: 0,
        },
    };
    let mut out = Vec::new();
    codec::encode_header(&header, &mut out).expect("header fits");
    for (seq, (id, len)) in (0u64..).zip(refs) {
        let reference = BlobRef {
            sha256: *id,
            len: *len,
            head: String::new(),
        };
        codec::encode_blob(&frame(seq), &reference, &mut out).expect("line fits");
    }
    codec::encode_entry(&frame(refs.len() as u64), LAST, &mut out).expect("line fits");
    out
}

/// The segment's last entry, kept in its line.
const LAST: &str = "{\"last\":true}";

type Delivered = BTreeMap<u64, String>;

/// What a replay of `segment` hands out, each blob checked against its reference's length (and
/// its id, with `hashed`), or its error, which must be corruption.
fn replay(
    store: &FsStore,
    (session, segment): (SessionId, SegmentId),
    options: &ReplayOptions,
    hashed: bool,
) -> Option<Delivered> {
    let mut got = Delivered::new();
    let result = store.replay_raw(session, segment, options, &mut |entry| {
        let (reference, json) = match entry.body {
            Body::Blob {
                reference,
                json: Some(json),
            } => (reference, json),
            Body::Inline(json) if json == LAST => {
                got.insert(entry.seq, json.to_owned());
                return Ok(ControlFlow::Continue(()));
            }
            other => panic!(
                "entry {} is not what the segment holds: {other:?}",
                entry.seq
            ),
        };
        assert_eq!(json.len() as u64, reference.len, "a blob of another length");
        if hashed {
            assert_eq!(
                BlobId::of(json.as_bytes()),
                reference.sha256,
                "a blob not its id's"
            );
        }
        got.insert(entry.seq, json.to_owned());
        Ok(ControlFlow::Continue(()))
    });
    match result {
        Ok(_) => Some(got),
        Err(e) => {
            assert!(e.is_corruption(), "replay failed with {e}");
            None
        }
    }
}

pub fn check(data: &[u8]) {
    let options = FsOptions {
        max_entry_bytes: MAX_ENTRY,
        ..FsOptions::default()
    };
    // In memory where the machine allows: thousands of inputs, each with fsyncs.
    let temp = TempStore::on_tmpfs(options);
    let store = temp.store();
    let root = temp.root().to_path_buf();
    let (session, segment) = (session_id(1), segment_id(17));
    let key = (session, segment);
    let blobs = root.join(session.to_string()).join("blobs");
    std::fs::create_dir_all(&blobs).expect("blobs dir");
    std::fs::write(blobs.join("pack"), data).expect("pack");
    let refs = named(data);
    write_segment(store, key, &refs);

    let report = store.verify(session, segment).expect("verify");
    let clean = report.is_clean();
    let strict = replay(store, key, &ReplayOptions::strict(), clean);
    let tolerant = replay(store, key, &ReplayOptions::tolerant(), clean)
        .expect("a tolerant replay of a segment whose lines are whole");
    if let Some(strict) = &strict {
        assert_eq!(strict, &tolerant, "strict and tolerant replays disagree");
    }
    if clean {
        assert!(strict.is_some(), "verify found nothing wrong, replay did");
    }
    for (seq, (id, _)) in (0u64..).zip(&refs) {
        match store.get_blob(session, id) {
            Ok(bytes) => {
                // The record readers find for the id: what replay handed out for it, if it did.
                if let Some(json) = tolerant.get(&seq) {
                    assert_eq!(bytes, json.as_bytes(), "get_blob and replay disagree");
                }
                if clean {
                    assert_eq!(BlobId::of(&bytes), *id, "get_blob: a blob not its id's");
                }
            }
            Err(e) => assert!(
                e.is_corruption() || matches!(e, annals::Error::BlobNotFound { .. }),
                "get_blob failed with {e}"
            ),
        }
    }

    // gc keeps what is referenced: everything readable stays readable.
    let planned = store.gc_blobs(session, true).expect("gc dry run");
    let done = store.gc_blobs(session, false).expect("gc");
    assert_eq!(
        planned.orphans, done.orphans,
        "gc did other than its dry run said"
    );
    let after_gc = replay(store, key, &ReplayOptions::tolerant(), false).expect("tolerant");
    for (seq, json) in &tolerant {
        assert_eq!(after_gc.get(seq), Some(json), "gc lost entry {seq}");
    }

    // A writer appends a new blob whatever the pack holds, and nobody else sees a change.
    let big = format!("{{\"output\":\"{}\"}}", "new blob ".repeat(600));
    let other = segment_id(18);
    let entry = RawEntry::from_json(&big).expect("json");
    store
        .create_segment(session, other, &[entry])
        .expect("a new blob in a pack of any content");
    // And a blob the pack already holds, as readers found it: stored once more or not, it
    // reads back (the writer checks what its index says is there against the file).
    let mut want = vec![big];
    let again = after_gc.values().find_map(|json| {
        let entry = RawEntry::from_json(json).ok()?;
        // A blob as a writer makes it: compact JSON too long for a line.
        (json.len() > annals::MAX_INLINE && entry.as_str() == json).then_some(entry)
    });
    if let Some(entry) = again {
        store
            .append_batch_raw(session, other, std::slice::from_ref(&entry))
            .expect("a blob the pack holds, appended again");
        want.push(entry.as_str().to_owned());
    }
    let fresh = FsStore::open_with(&root, options).expect("store");
    let back = replay(&fresh, (session, other), &ReplayOptions::strict(), true)
        .expect("the new segment reads back");
    assert_eq!(back.into_values().collect::<Vec<_>>(), want);
    let after_append = replay(&fresh, key, &ReplayOptions::tolerant(), false).expect("tolerant");
    // Nothing readable is lost. (More may become readable: a header whose claimed length ran
    // past the end with records after it is stepped over, and what is appended after it can
    // complete it; only bytes made to match a CRC of what will be appended do that.)
    for (seq, json) in &after_gc {
        assert_eq!(
            after_append.get(seq),
            Some(json),
            "an append lost entry {seq}"
        );
    }
}

/// Writes the segment file of `key` referring to `refs`, where the store keeps it.
fn write_segment(
    store: &FsStore,
    (session, segment): (SessionId, SegmentId),
    refs: &[(BlobId, u64)],
) {
    let path = store.segment_path(session, segment);
    write_file(&path, &segment_image(session, segment, refs));
}

fn write_file(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("session dir");
    std::fs::write(path, bytes).expect("segment file");
}
