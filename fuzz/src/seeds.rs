//! The seed corpus, generated with the library's own encoder so that the files in
//! `fuzz/corpus/<target>/` are reproducible: `cargo run --example seeds` rewrites them, and
//! `tests/corpus.rs` fails if they drift. Inputs the fuzzer found are kept next to them under
//! names starting with `regress-`; the generator leaves those alone.

use annals::codec::{self, FileKind, Frame, Header, Lineage, Marks, Version};
use annals::testing::support::{segment_id, session_id};
use annals::{BlobCompression, BlobId, FsOptions, FsStore, RawEntry, Store, MAX_LINE};

use crate::ops::{self, Entry, Op};
use crate::oracle;

/// A named seed file.
pub type Seed = (&'static str, Vec<u8>);

fn header(kind: FileKind, generation: u64, fork: Option<Lineage>) -> Vec<u8> {
    header_of(Version::V1, kind, generation, fork)
}

fn header_of(version: Version, kind: FileKind, generation: u64, fork: Option<Lineage>) -> Vec<u8> {
    let header = Header {
        annals: version.number(),
        kind,
        session: session_id(1),
        segment: segment_id(17),
        generation,
        created_ms: 1_700_000_000_000,
        fork,
    };
    let mut out = Vec::new();
    codec::encode_header(&header, &mut out).expect("header fits");
    out
}

fn entry(seq: u64, json: &str) -> Vec<u8> {
    let mut out = Vec::new();
    codec::encode_entry(&Frame::v1(seq), json, &mut out).expect("entry fits");
    out
}

/// A version-2 line: `u` entries not yet durable, `more` lines of its write after it.
fn entry_v2(seq: u64, u: u64, more: u64, json: &str) -> Vec<u8> {
    let marks = Marks {
        appended_ms: 1_700_000_000_000 + seq,
        unsynced: u,
        more,
    };
    let mut out = Vec::new();
    codec::encode_entry(&Frame::v2(seq, marks), json, &mut out).expect("entry fits");
    out
}

/// A version-2 segment: a durable entry, then a batch of three and an append, unsynced.
fn segment_v2() -> Vec<u8> {
    let mut out = header_of(Version::V2, FileKind::Segment, 0, None);
    out.extend(entry_v2(0, 0, 0, r#"{"role":"user","text":"hi"}"#));
    out.extend(entry_v2(1, 0, 2, r#"{"role":"assistant","text":"a"}"#));
    out.extend(entry_v2(2, 1, 1, r#"{"role":"tool","text":"b"}"#));
    out.extend(entry_v2(3, 2, 0, r#"{"role":"assistant","text":"c"}"#));
    out.extend(entry_v2(4, 3, 0, r#"{"role":"user","text":"d"}"#));
    out
}

fn segment(n: u64) -> Vec<u8> {
    let mut out = header(FileKind::Segment, 0, None);
    for seq in 0..n {
        out.extend(entry(
            seq,
            &format!(r#"{{"role":"user","text":"message {seq}"}}"#),
        ));
    }
    out
}

fn blob(seq: u64, json: &str) -> Vec<u8> {
    let mut out = Vec::new();
    codec::encode_blob(&Frame::v1(seq), &annals::BlobRef::for_entry(json), &mut out)
        .expect("blob line fits");
    out
}

fn big_entry() -> String {
    format!(r#"{{"output":"{}"}}"#, "total 48 ".repeat(600))
}

fn strip(mut line: Vec<u8>) -> Vec<u8> {
    assert_eq!(line.pop(), Some(b'\n'));
    line
}

/// Seeds of `line_decoder`: single lines, without their newline.
#[must_use]
pub fn line_decoder() -> Vec<Seed> {
    let entry_line = strip(entry(42, r#"{"role":"user","text":"hi"}"#));
    let mut flipped = entry_line.clone();
    flipped[30] ^= 0x20;
    let overhead = entry(3, r#""""#).len() - 2;
    let at_limit = strip(entry(
        3,
        &format!("\"{}\"", "x".repeat(MAX_LINE - overhead - 2)),
    ));
    let mut version_3 = strip(header(FileKind::Segment, 0, None));
    let v = version_3
        .windows(10)
        .position(|w| w == b"\"annals\":1")
        .expect("version field");
    version_3[v + 9] = b'3';
    vec![
        ("entry", entry_line),
        (
            "entry-v2",
            strip(entry_v2(42, 3, 1, r#"{"role":"user","text":"hi"}"#)),
        ),
        ("entry-v2-last-of-write", strip(entry_v2(42, 0, 0, "[1]"))),
        (
            "entry-v2-explicit-zero",
            oracle::fix_crcs(br#"{"crc":"00000000","seq":4,"t":1,"u":0,"e":1}"#),
        ),
        ("entry-max-seq", strip(entry(oracle::MAX_SEQ, "[1,2,3]"))),
        (
            "entry-past-max-seq",
            oracle::fix_crcs(br#"{"crc":"00000000","seq":18446744073709551615,"e":1}"#),
        ),
        ("entry-at-limit", at_limit),
        ("entry-flipped-byte", flipped),
        (
            "entry-leading-zero-seq",
            oracle::fix_crcs(br#"{"crc":"00000000","seq":07,"e":1}"#),
        ),
        (
            "entry-empty-json",
            oracle::fix_crcs(br#"{"crc":"00000000","seq":1,"e":}"#),
        ),
        (
            "entry-not-utf8",
            oracle::fix_crcs(b"{\"crc\":\"00000000\",\"seq\":1,\"e\":\"\xff\"}"),
        ),
        ("header", strip(header(FileKind::Segment, 0, None))),
        ("header-forked", strip(forked_header())),
        (
            "header-version-2",
            strip(header_of(Version::V2, FileKind::Segment, 0, None)),
        ),
        ("header-version-3", oracle::fix_crcs(&version_3)),
        ("torn-prefix", b"{\"crc\":\"0011".to_vec()),
        ("blob-line", strip(blob(7, &big_entry()))),
        (
            "blob-line-bad-reference",
            oracle::fix_crcs(br#"{"crc":"00000000","seq":1,"blob":{"sha256":"zz","len":1}}"#),
        ),
    ]
}

fn forked_header() -> Vec<u8> {
    let lineage = Lineage {
        segment: segment_id(18),
        at: 2,
    };
    header(FileKind::Segment, 3, Some(lineage))
}

/// Seeds of `replay_image`: whole files.
#[must_use]
pub fn replay_image() -> Vec<Seed> {
    let clean = segment(5);
    let mut torn = clean.clone();
    torn.extend_from_slice(&entry(5, r#"{"torn":1}"#)[..20]);
    let mut flipped = clean.clone();
    let (lines, _) = oracle::split_lines(&clean);
    flipped[lines[3].0 + 30] ^= 0x20;
    let mut gap = segment(2);
    gap.extend(entry(3, "{}"));
    let mut repeat = segment(3);
    repeat.extend(entry(2, r#"{"again":true}"#));
    let mut garbage = segment(2);
    garbage.extend_from_slice(b"not a line at all");
    let mut long_line = segment(1);
    long_line.extend(vec![b'x'; MAX_LINE + 10]);
    long_line.push(b'\n');
    long_line.extend(entry(1, "{}"));
    let mut header_in_middle = segment(1);
    header_in_middle.extend(header(FileKind::Segment, 0, None));
    let mut forked = forked_header();
    forked.extend(entry(0, "{}"));
    forked.extend(entry(1, "{}"));
    let mut trace = header(FileKind::Trace, 0, None);
    trace.extend(entry(0, r#"{"event":"tool_call"}"#));
    let mut version_3 = segment(1);
    let v = version_3
        .windows(10)
        .position(|w| w == b"\"annals\":1")
        .expect("version field");
    version_3[v + 9] = b'3';
    let v2 = segment_v2();
    let (v2_lines, _) = oracle::split_lines(&v2);
    let partial_batch = v2[..v2_lines[3].0 + 7].to_vec();
    let mut zeros = segment_v2();
    zeros.extend_from_slice(&[0u8; 46]);
    zeros.extend_from_slice(b"3b5dac226a6f6acade9e\"}}\n");
    let mut hole = segment_v2();
    hole[v2_lines[2].0..v2_lines[2].0 + 64].fill(0);
    let mut blobs = segment(2);
    blobs.extend(blob(2, &big_entry()));
    blobs.extend(entry(3, "{}"));
    vec![
        ("empty", Vec::new()),
        ("blob-lines", blobs),
        ("header-only", segment(0)),
        ("clean-5", clean),
        ("torn-tail", torn),
        ("flipped-byte", flipped),
        ("seq-gap", gap),
        ("seq-repeat", repeat),
        ("garbage-tail", garbage),
        ("over-long-line", long_line),
        ("header-in-middle", header_in_middle),
        ("forked-generation-3", forked),
        ("trace", trace),
        ("version-3", oracle::fix_crcs(&version_3)),
        ("v2-clean", v2),
        ("v2-partial-batch", partial_batch),
        ("v2-zeros-then-a-line", zeros),
        ("v2-hole-then-lines", hole),
        (
            "torn-header",
            b"{\"crc\":\"12345678\",\"annals\":1,\"kind\"".to_vec(),
        ),
    ]
}

fn n(v: u8) -> Entry {
    Entry::Num(v)
}

/// Seeds of `store_ops`: operation lists, encoded.
#[must_use]
pub fn store_ops() -> Vec<Seed> {
    use Op::*;
    let text = |t: &str| Entry::Text(t.as_bytes().to_vec());
    let seeds: Vec<(&'static str, Vec<Op>)> = vec![
        (
            "append-reopen-read",
            vec![
                Create {
                    session: 0,
                    entries: vec![n(1)],
                },
                Append {
                    seg: 0,
                    entry: text("hello"),
                },
                Batch {
                    seg: 0,
                    entries: vec![n(2), n(3), Entry::Json(b"{ \"a\" : [1, 2] }".to_vec())],
                },
                Trace {
                    seg: 0,
                    entry: text("event"),
                },
                Reopen { max_open: 0 },
                Append {
                    seg: 0,
                    entry: n(4),
                },
            ],
        ),
        (
            "truncate-fork-detector",
            vec![
                Create {
                    session: 1,
                    entries: vec![n(1), n(2), n(3)],
                },
                Truncate { seg: 0, keep: 2 },
                AppendIf {
                    seg: 0,
                    stale: 3,
                    entries: vec![n(9)],
                },
                AppendIf {
                    seg: 0,
                    stale: 0,
                    entries: vec![n(4)],
                },
                Fork {
                    seg: 0,
                    at: 1,
                    into: 0,
                },
                Append {
                    seg: 1,
                    entry: n(5),
                },
                Fork {
                    seg: 1,
                    at: 0,
                    into: 1,
                },
            ],
        ),
        (
            "torn-write-then-append",
            vec![
                Create {
                    session: 0,
                    entries: vec![n(1), n(2)],
                },
                TornWrite { seg: 0, len: 20 },
                Append {
                    seg: 0,
                    entry: n(3),
                },
                TornWrite { seg: 0, len: 7 },
                Reopen { max_open: 1 },
                Repair {
                    seg: 0,
                    dry_run: true,
                    other: false,
                },
                Append {
                    seg: 0,
                    entry: n(4),
                },
            ],
        ),
        (
            "two-writers-torn-tail",
            vec![
                Create {
                    session: 0,
                    entries: vec![],
                },
                Append {
                    seg: 0,
                    entry: n(1),
                },
                TornWrite { seg: 0, len: 38 },
                OtherAppend {
                    seg: 0,
                    entries: vec![n(2)],
                },
                Append {
                    seg: 0,
                    entry: n(3),
                },
            ],
        ),
        (
            "cut-last-line",
            vec![
                Create {
                    session: 0,
                    entries: vec![n(1), n(2), n(3)],
                },
                CutLastLine { seg: 0, keep: 25 },
                Append {
                    seg: 0,
                    entry: n(4),
                },
                CutLastLine { seg: 0, keep: 0 },
            ],
        ),
        (
            "flip-read-repair",
            vec![
                Create {
                    session: 0,
                    entries: vec![n(1), n(2), n(3), n(4)],
                },
                FlipByte {
                    seg: 0,
                    pos: 330,
                    xor: 0x20,
                },
                Append {
                    seg: 0,
                    entry: n(5),
                },
                Truncate { seg: 0, keep: 4 },
                Repair {
                    seg: 0,
                    dry_run: false,
                    other: true,
                },
                Append {
                    seg: 0,
                    entry: n(6),
                },
            ],
        ),
        (
            "garbage-tail-repair",
            vec![
                Create {
                    session: 0,
                    entries: vec![n(1), n(2)],
                },
                Garbage {
                    seg: 0,
                    bytes: b"definitely not a line".to_vec(),
                },
                Append {
                    seg: 0,
                    entry: n(3),
                },
                Repair {
                    seg: 0,
                    dry_run: false,
                    other: false,
                },
                Append {
                    seg: 0,
                    entry: n(3),
                },
            ],
        ),
        (
            "entries-at-the-limit",
            vec![
                Create {
                    session: 0,
                    entries: vec![Entry::Pad(40)],
                },
                Append {
                    seg: 0,
                    entry: Entry::Pad(60),
                },
                Batch {
                    seg: 0,
                    entries: vec![n(1), Entry::Pad(119)],
                },
                Trace {
                    seg: 0,
                    entry: Entry::Pad(59),
                },
            ],
        ),
        (
            "blobs-gc-attachments",
            vec![
                Create {
                    session: 0,
                    entries: vec![Entry::Pad(100)],
                },
                Append {
                    seg: 0,
                    entry: Entry::Pad(30),
                },
                Append {
                    seg: 0,
                    entry: Entry::Pad(2100),
                },
                PutAttachment {
                    session: 0,
                    bytes: b"\x89PNG not really".to_vec(),
                },
                Truncate { seg: 0, keep: 0 },
                Gc {
                    session: 0,
                    dry_run: true,
                },
                Gc {
                    session: 0,
                    dry_run: false,
                },
                Append {
                    seg: 0,
                    entry: Entry::Pad(100),
                },
                Trace {
                    seg: 0,
                    entry: Entry::Pad(500),
                },
            ],
        ),
        (
            "blob-damage",
            vec![
                Create {
                    session: 0,
                    entries: vec![Entry::Pad(100), n(1)],
                },
                Create {
                    session: 0,
                    entries: vec![Entry::Pad(100)],
                },
                BlobDamage {
                    session: 0,
                    pick: 0,
                    how: 2,
                },
                Append {
                    seg: 0,
                    entry: n(2),
                },
                Repair {
                    seg: 1,
                    dry_run: false,
                    other: false,
                },
                Append {
                    seg: 1,
                    entry: Entry::Pad(100),
                },
                BlobDamage {
                    session: 0,
                    pick: 0,
                    how: 0,
                },
                Reopen { max_open: 2 },
                Gc {
                    session: 0,
                    dry_run: false,
                },
            ],
        ),
        (
            "delete-and-recreate",
            vec![
                Create {
                    session: 0,
                    entries: vec![n(1)],
                },
                Create {
                    session: 1,
                    entries: vec![n(2)],
                },
                OtherAppend {
                    seg: 0,
                    entries: vec![n(3)],
                },
                DeleteSession { session: 0 },
                Append {
                    seg: 0,
                    entry: n(4),
                },
                Recreate { seg: 0 },
                OtherTruncate { seg: 1, keep: 0 },
                Append {
                    seg: 0,
                    entry: n(5),
                },
            ],
        ),
    ];
    seeds
        .into_iter()
        .map(|(name, ops)| {
            let bytes = ops::encode(&ops);
            assert_eq!(ops::decode(&bytes), ops, "{name} does not round-trip");
            (name, bytes)
        })
        .collect()
}

/// An entry of `n` lines of tool output: compressible.
fn tool_output(n: usize, tag: &str) -> String {
    format!(
        "{{\"tool\":\"{tag}\",\"output\":\"{}\"}}",
        "line of tool output\\n".repeat(n)
    )
}

/// An entry of `n` hex digits that follow no pattern zstd finds: a plain record even in a
/// compressing store.
fn hex_data(n: usize) -> String {
    let mut hex = String::new();
    let mut next = BlobId::of(b"seed");
    while hex.len() < n {
        hex.push_str(&next.to_string());
        next = BlobId::of(next.to_string().as_bytes());
    }
    format!("{{\"data\":\"{hex}\"}}")
}

/// The pack a store writes for `entries` (each too long for a line), compressed or not.
fn pack_of(entries: &[String], compression: BlobCompression) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = FsOptions {
        blob_compression: compression,
        ..FsOptions::default()
    };
    let store = FsStore::open_with(dir.path(), options).expect("store");
    let raw: Vec<RawEntry> = entries
        .iter()
        .map(|e| RawEntry::from_json(e).expect("json"))
        .collect();
    let session = session_id(1);
    store
        .create_segment(session, segment_id(17), &raw)
        .expect("segment");
    std::fs::read(dir.path().join(session.to_string()).join("blobs/pack")).expect("pack")
}

/// Seeds of `blob_pack`: packs as a store writes them, plain and compressed, and with a blob
/// written again and a record cut short.
#[must_use]
pub fn blob_pack() -> Vec<Seed> {
    let plain = pack_of(
        &[
            tool_output(300, "a"),
            hex_data(9_000),
            tool_output(1_000, "b"),
        ],
        BlobCompression::None,
    );
    let compressed = pack_of(
        &[
            tool_output(300, "a"),
            hex_data(9_000),
            tool_output(1_000, "b"),
        ],
        BlobCompression::ZSTD,
    );
    // The first record again after the others (a blob written again), and a record the file
    // ends inside (a crash during the write).
    let first_end = plain.iter().position(|&b| b == b'\n').expect("header") + 1;
    let first_len = first_end + tool_output(300, "a").len() + 1;
    let mut again = plain.clone();
    again.extend_from_slice(&plain[..first_len]);
    again.extend_from_slice(&compressed[..compressed.len() / 2]);
    vec![
        ("pack-empty", Vec::new()),
        ("pack-plain", plain),
        ("pack-compressed", compressed),
        ("pack-again-and-unfinished", again),
    ]
}

/// Every target's seeds.
#[must_use]
pub fn all() -> Vec<(&'static str, Vec<Seed>)> {
    vec![
        ("line_decoder", line_decoder()),
        ("replay_image", replay_image()),
        ("store_ops", store_ops()),
        ("blob_pack", blob_pack()),
    ]
}
