//! Replay and verify memory is bounded by the reader's buffer (replay) or one mapped chunk
//! (verify), not by the segment: a child process replays and verifies a segment several times
//! larger than the bound and reports its peak resident set (`VmHWM`).

use std::process::Command;

use annals::testing::support::TempStore;
use annals::{FsStore, ReplayOptions, SegmentId, SessionId, Store, StoreExt};
use serde::Deserialize;
use serde_json::json;

const CHILD_ENV: &str = "ANNALS_MEMORY_CHILD";
/// The segment is this large; the replaying process must stay under [`RSS_LIMIT`].
const SEGMENT_BYTES: u64 = 256 << 20;
const RSS_LIMIT_KIB: u64 = 64 << 10;

#[derive(Deserialize)]
struct Message {
    role: String,
    text: String,
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn replay_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut parts = spec.split(',');
    let root = parts.next().unwrap();
    let session: SessionId = parts.next().unwrap().parse().unwrap();
    let segment: SegmentId = parts.next().unwrap().parse().unwrap();
    let store = FsStore::open(root).unwrap();
    let before = peak_rss_kib();
    let (mut count, mut bytes) = (0u64, 0usize);
    let report = store
        .replay(
            session,
            segment,
            &ReplayOptions::strict(),
            |_, m: Message| {
                count += 1;
                bytes += m.text.len() + m.role.len();
                Ok(())
            },
        )
        .unwrap();
    assert!(report.is_clean());
    let after_replay = peak_rss_kib();
    let verified = store.verify(session, segment).unwrap();
    assert_eq!(verified.entries, count);
    // VmHWM is a high-water mark: this is the peak of replay and verify together.
    println!(
        "entries={count} bytes={bytes} rss_before_kib={before} after_replay_kib={after_replay} peak_rss_kib={}",
        peak_rss_kib()
    );
}

#[test]
fn replay_and_verify_of_a_segment_four_times_the_memory_bound_stay_under_it() {
    let store = TempStore::new();
    let (session, segment) = (SessionId::new(), SegmentId::new());
    store
        .create::<serde_json::Value>(session, segment, &[])
        .unwrap();
    let text = "lorem ipsum dolor sit amet ".repeat(14);
    let batch: Vec<_> = (0..1000)
        .map(|i| json!({"role": if i % 2 == 0 { "user" } else { "assistant" }, "text": text}))
        .collect();
    let path = store.segment_path(session, segment);
    while std::fs::metadata(&path).unwrap().len() < SEGMENT_BYTES {
        store.append_batch(session, segment, &batch).unwrap();
    }

    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "memory::replay_child",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(
            CHILD_ENV,
            format!("{},{session},{segment}", store.root().display()),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.split("peak_rss_kib=").nth(1))
        .unwrap_or_else(|| panic!("child printed no measurement:\n{stdout}"));
    let peak: u64 = line.trim().parse().unwrap();
    println!(
        "{}",
        stdout
            .lines()
            .find(|l| l.contains("peak_rss_kib="))
            .unwrap_or_default()
    );
    assert!(
        peak < RSS_LIMIT_KIB,
        "replaying and verifying {} MiB peaked at {} MiB of RSS",
        SEGMENT_BYTES >> 20,
        peak >> 10
    );
}

// ---------------------------------------------------------------------------------------------
// Hostile inputs: what a file claims never decides what a reader holds

const HOSTILE_CHILD_ENV: &str = "ANNALS_HOSTILE_MEMORY_CHILD";
/// Hundreds of megabytes: several times the bound, so that a reader that holds what the file
/// claims cannot pass.
const HUGE: u64 = 300 << 20;

/// A store whose files hold what an attacker (or a broken disk) would put there, with the ids
/// the child needs to find them.
struct HostileStore {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    /// Session with: a segment holding one 300 MB line between good ones, a segment ending in
    /// 300 MB without a newline, and a segment with 1,000,000 bad lines (problems).
    lines: SessionId,
    long_line: SegmentId,
    no_newline: SegmentId,
    many_problems: SegmentId,
    /// Session whose segment refers to a blob whose file is 300 MB (sparse), and the blob.
    blobs: SessionId,
    blob_segment: SegmentId,
    blob: annals::BlobId,
    /// Session whose segment has a 256 MiB trace and whose attachment index is 256 MiB.
    aux: SessionId,
    aux_segment: SegmentId,
    /// Session whose segment holds one valid entry of 60 MiB (a blob, under the 64 MiB
    /// maximum): checking it must not hold it.
    big: SessionId,
    big_segment: SegmentId,
}

/// Appends `count` entry lines (correct CRCs) numbered from `first`, each holding `json(seq)`,
/// framed for a file of `version` (format 2: each as one write that claims everything before
/// it durable), to the file at `path`: how a huge file of valid lines is made in seconds.
fn append_lines(
    path: &std::path::Path,
    version: annals::codec::Version,
    first: u64,
    count: u64,
    json: impl Fn(u64) -> String,
) {
    use std::io::Write;
    let file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    for seq in first..first + count {
        let frame = annals::codec::Frame {
            version,
            seq,
            marks: annals::codec::Marks {
                appended_ms: 1_750_000_000_000,
                ..annals::codec::Marks::default()
            },
        };
        let mut line = Vec::new();
        annals::codec::encode_entry(&frame, &json(seq), &mut line).unwrap();
        out.write_all(&line).unwrap();
    }
    out.flush().unwrap();
}

/// Rewrites a segment the store just created with `entries` as a format-1 file: what these
/// cases append after it is damage in format 1, wherever it lies. (In format 2 the same bytes
/// at the end of a file that claims nothing durable after them are an interrupted tail.)
fn as_format_1(path: &std::path::Path, session: SessionId, segment: SegmentId, entries: &[String]) {
    let bytes = annals::testing::support::format_1_image(session, segment, entries);
    std::fs::write(path, bytes).unwrap();
}

fn write_bytes(path: &std::path::Path, bytes: &[u8]) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(bytes).unwrap();
}

impl HostileStore {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        let store = FsStore::open(&root).unwrap();
        let small = |i: u64| json!({"role": "user", "text": format!("message {i}")});

        let lines = SessionId::new();
        let (long_line, no_newline, many_problems) =
            (SegmentId::new(), SegmentId::new(), SegmentId::new());
        for segment in [long_line, no_newline, many_problems] {
            store
                .create(lines, segment, &[small(0), small(1), small(2)])
                .unwrap();
            let entries: Vec<String> = (0..3).map(|i| small(i).to_string()).collect();
            as_format_1(
                &store.segment_path(lines, segment),
                lines,
                segment,
                &entries,
            );
        }
        let path = store.segment_path(lines, long_line);
        let x = vec![b'x'; 1 << 20];
        for _ in 0..HUGE >> 20 {
            write_bytes(&path, &x);
        }
        write_bytes(&path, b"\n");
        append_lines(&path, annals::codec::Version::V1, 3, 3, |i| {
            small(i).to_string()
        });
        let path = store.segment_path(lines, no_newline);
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let len = file.metadata().unwrap().len();
        file.set_len(len + HUGE).unwrap(); // zeros, sparse: no newline in them
        let path = store.segment_path(lines, many_problems);
        {
            use std::io::Write;
            let file = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap();
            let mut out = std::io::BufWriter::new(file);
            for i in 0..1_000_000u32 {
                writeln!(out, "not an annals line {i}").unwrap();
            }
        }

        let blobs = SessionId::new();
        let blob_segment = SegmentId::new();
        let value = json!({"text": "b".repeat(9000)});
        store
            .create(blobs, blob_segment, &[small(0), value.clone()])
            .unwrap();
        // A durable line after the blob's, so that its line is in the log that line vouches
        // for (damage), not at an end that claims nothing (an interrupted tail).
        let durable = annals::FsOptions {
            durability: annals::Durability::Sync,
            ..annals::FsOptions::default()
        };
        // Two: a new handle knows only what the last line claims (entries before it), so its
        // first line vouches for entries before the blob's no further; the second, written
        // after the first's fdatasync, vouches for all.
        let durable = FsStore::open_with(&root, durable).unwrap();
        for i in [2, 3] {
            durable.append(blobs, blob_segment, &small(i)).unwrap();
        }
        let blob = annals::BlobId::of(serde_json::to_string(&value).unwrap().as_bytes());
        // Its record is no record any more, and hundreds of megabytes of zeros follow it: what
        // a reader of the pack holds must not grow with them.
        annals::testing::support::remove_blob(&root, blobs, &blob);
        let pack = root.join(blobs.to_string()).join("blobs").join("pack");
        let file = std::fs::OpenOptions::new().write(true).open(&pack).unwrap();
        let len = file.metadata().unwrap().len();
        file.set_len(len + HUGE).unwrap();
        // And a blob file of its own (format 2's layout) that claims as much, where the pack
        // has none of the same id: a reader refuses it before reading it.
        let hex = blob.to_hex();
        let shard = root.join(blobs.to_string()).join("blobs").join(&hex[..2]);
        std::fs::create_dir_all(&shard).unwrap();
        std::fs::File::create(shard.join(&hex))
            .unwrap()
            .set_len(HUGE)
            .unwrap();

        let aux = SessionId::new();
        let aux_segment = SegmentId::new();
        store.create(aux, aux_segment, &[small(0)]).unwrap();
        store
            .append_trace(aux, aux_segment, &json!({"event": "start"}))
            .unwrap();
        let trace = root
            .join(aux.to_string())
            .join(format!("{aux_segment}.trace.jsonl"));
        let lines_for = |bytes: u64, each: u64| bytes / each;
        append_lines(
            &trace,
            annals::codec::Version::NEW_FILES,
            1,
            lines_for(256 << 20, 130),
            |i| format!(r#"{{"event":"tool","i":{i},"pad":"{}"}}"#, "t".repeat(80)),
        );
        let meta = annals::AttachmentMeta {
            media_type: "image/png".into(),
            label: Some("screenshot.png".into()),
            width: None,
            height: None,
        };
        store.put_attachment(aux, b"attached", &meta).unwrap();
        let index = root.join(aux.to_string()).join("attachments.jsonl");
        append_lines(
            &index,
            annals::codec::Version::NEW_FILES,
            1,
            lines_for(256 << 20, 180),
            |i| {
                let id = annals::BlobId::of(&i.to_le_bytes());
                format!(
                    r#"{{"id":"{id}","len":8,"type":"image/png","label":"screenshot.png","created_ms":{i}}}"#
                )
            },
        );
        let big = SessionId::new();
        let big_segment = SegmentId::new();
        store
            .create(big, big_segment, &[json!({"text": "a".repeat(60 << 20)})])
            .unwrap();
        drop(store);
        Self {
            _dir: dir,
            root,
            lines,
            long_line,
            no_newline,
            many_problems,
            blobs,
            blob_segment,
            blob,
            aux,
            aux_segment,
            big,
            big_segment,
        }
    }

    fn spec(&self) -> String {
        [
            self.root.display().to_string(),
            self.lines.to_string(),
            self.long_line.to_string(),
            self.no_newline.to_string(),
            self.many_problems.to_string(),
            self.blobs.to_string(),
            self.blob_segment.to_string(),
            self.blob.to_hex(),
            self.aux.to_string(),
            self.aux_segment.to_string(),
            self.big.to_string(),
            self.big_segment.to_string(),
        ]
        .join(",")
    }

    fn from_spec(spec: &str) -> (std::path::PathBuf, Vec<String>) {
        let mut parts = spec.split(',').map(str::to_owned);
        let root = std::path::PathBuf::from(parts.next().unwrap());
        (root, parts.collect())
    }
}

/// Every reader call of the library on the hostile store, by name: what the child runs. Each
/// returns what it found (for the parent to check it was refused or reported, not swallowed).
/// `list_attachments` is not among them: it returns every attachment of the index (a `Vec`,
/// as the `Store` API says), so its memory is the number of attachments the index lists.
/// Nor are replay and `get_blob` of the 60 MiB entry: they hand the entry itself over, so they
/// hold it once (at most the largest entry); checking it (verify, repair) must not.
const HOSTILE_CALLS: [(&str, &str); 26] = [
    ("replay long line", "line of 314572800 bytes exceeds"),
    ("replay tolerant long line", "ok: problems=1"),
    ("verify long line", "TooLong { len: 314572800 }"),
    ("tip long line", "count: 6"),
    ("repair dry run long line", "ok: keep=385"),
    ("replay tolerant no newline", "ok: problems=1"),
    ("verify no newline", "ok: problems=1"),
    ("tip no newline", "314572800 unterminated bytes"),
    ("repair dry run no newline", "ok: keep=385"),
    (
        "replay tolerant many problems",
        "problems=1000000 kept=1000",
    ),
    ("verify many problems", "problems=1000000 kept=1000"),
    ("repair dry run many problems", "ok: keep=385"),
    ("list segments", "3 segments"),
    (
        "replay blob",
        "blob has 314572800 bytes, its reference says",
    ),
    ("replay tolerant blob", "ok: problems=1"),
    ("verify blob", "ok: problems=1"),
    ("get blob", "more than the store's largest entry"),
    ("gc dry run blobs", "ok: kept=1"),
    ("repair dry run blob", "ok: keep="),
    ("replay trace", "ok: entries="),
    ("gc dry run aux", "ok: kept=1"),
    ("list segments aux", "ok: 1"),
    ("session modified aux", "ok"),
    ("find session", "ok: None"),
    ("verify big blob", "ok: problems=0 entries=1"),
    ("repair dry run big blob", "ok: keep="),
];

fn hostile_call(store: &FsStore, ids: &[String], call: &str) -> String {
    let s = |i: usize| ids[i].parse::<SessionId>().unwrap();
    let g = |i: usize| ids[i].parse::<SegmentId>().unwrap();
    let (lines, long_line, no_newline, many) = (s(0), g(1), g(2), g(3));
    let (blobs, blob_segment) = (s(4), g(5));
    let blob: annals::BlobId = ids[6].parse().unwrap();
    let (aux, aux_segment) = (s(7), g(8));
    let (big, big_segment) = (s(9), g(10));
    let mut count = 0u64;
    let mut sink = |_: annals::Entry<'_>| {
        count += 1;
        Ok(std::ops::ControlFlow::Continue(()))
    };
    let strict = ReplayOptions::strict();
    let tolerant = ReplayOptions::tolerant();
    let outcome: annals::Result<String> = match call {
        "replay long line" => store
            .replay_raw(lines, long_line, &strict, &mut sink)
            .map(|r| format!("{r:?}")),
        "replay tolerant long line" => store
            .replay_raw(lines, long_line, &tolerant, &mut sink)
            .map(|r| format!("problems={}", r.problem_count)),
        "verify long line" => store
            .verify(lines, long_line)
            .map(|r| format!("problems={} {:?}", r.problem_count, r.problems.first())),
        "tip long line" => store.tip(lines, long_line).map(|t| format!("{t:?}")),
        "repair dry run long line" => store
            .repair(lines, long_line, true)
            .map(|r| format!("keep={}", r.keep_bytes)),
        "replay tolerant no newline" => store
            .replay_raw(lines, no_newline, &tolerant, &mut sink)
            .map(|r| format!("problems={}", r.problem_count)),
        "verify no newline" => store
            .verify(lines, no_newline)
            .map(|r| format!("problems={}", r.problem_count)),
        "tip no newline" => store.tip(lines, no_newline).map(|t| format!("{t:?}")),
        "repair dry run no newline" => store
            .repair(lines, no_newline, true)
            .map(|r| format!("keep={}", r.keep_bytes)),
        "replay tolerant many problems" => store
            .replay_raw(lines, many, &tolerant, &mut sink)
            .map(|r| format!("problems={} kept={}", r.problem_count, r.problems.len())),
        "verify many problems" => store
            .verify(lines, many)
            .map(|r| format!("problems={} kept={}", r.problem_count, r.problems.len())),
        "repair dry run many problems" => store
            .repair(lines, many, true)
            .map(|r| format!("keep={}", r.keep_bytes)),
        "list segments" => store
            .list_segments(lines)
            .map(|l| format!("{} segments", l.len())),
        "replay blob" => store
            .replay_raw(blobs, blob_segment, &strict, &mut sink)
            .map(|r| format!("{r:?}")),
        "replay tolerant blob" => store
            .replay_raw(blobs, blob_segment, &tolerant, &mut sink)
            .map(|r| format!("problems={}", r.problem_count)),
        "verify blob" => store
            .verify(blobs, blob_segment)
            .map(|r| format!("problems={}", r.problem_count)),
        "get blob" => store
            .get_blob(blobs, &blob)
            .map(|b| format!("{} bytes", b.len())),
        "gc dry run blobs" => store
            .gc_blobs(blobs, true)
            .map(|r| format!("kept={}", r.kept)),
        "repair dry run blob" => store
            .repair(blobs, blob_segment, true)
            .map(|r| format!("keep={}", r.keep_bytes)),
        "replay trace" => store
            .replay_trace_raw(aux, aux_segment, &strict, &mut sink)
            .map(|r| format!("entries={}", r.entries)),
        "gc dry run aux" => store
            .gc_blobs(aux, true)
            .map(|r| format!("kept={}", r.kept)),
        "list segments aux" => store.list_segments(aux).map(|l| format!("{}", l.len())),
        "session modified aux" => store.session_modified(aux).map(|_| "ok".into()),
        "find session" => store
            .find_session(SegmentId::new())
            .map(|s| format!("{s:?}")),
        "verify big blob" => store
            .verify(big, big_segment)
            .map(|r| format!("problems={} entries={}", r.problem_count, r.entries)),
        "repair dry run big blob" => store
            .repair(big, big_segment, true)
            .map(|r| format!("keep={}", r.keep_bytes)),
        other => panic!("no call {other}"),
    };
    match outcome {
        Ok(found) => format!("ok: {found}"),
        Err(e) => format!("error: {e}"),
    }
}

#[test]
fn hostile_memory_child() {
    let Ok(spec) = std::env::var(HOSTILE_CHILD_ENV) else {
        return;
    };
    let (call, spec) = spec.split_once(';').unwrap();
    let (root, ids) = HostileStore::from_spec(spec);
    let store = FsStore::open(root).unwrap();
    let outcome = hostile_call(&store, &ids, call);
    println!(
        "outcome={} peak_rss_kib={}",
        outcome.replace('\n', " "),
        peak_rss_kib()
    );
}

#[test]
fn every_reader_call_stays_under_64_mib_on_files_of_hundreds_of_megabytes() {
    let hostile = HostileStore::new();
    let mut over = Vec::new();
    for (call, expected) in HOSTILE_CALLS {
        let output = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "memory::hostile_memory_child",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(HOSTILE_CHILD_ENV, format!("{call};{}", hostile.spec()))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{call}: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let line = stdout
            .lines()
            .find_map(|l| l.split("outcome=").nth(1))
            .unwrap_or_else(|| panic!("{call}: no measurement:\n{stdout}"));
        let (outcome, peak) = line.rsplit_once(" peak_rss_kib=").unwrap();
        let peak: u64 = peak.trim().parse().unwrap();
        println!("{call}: {} MiB: {outcome}", peak >> 10);
        assert!(outcome.contains(expected), "{call}: {outcome}");
        if peak >= RSS_LIMIT_KIB {
            over.push(format!("{call}: {} MiB", peak >> 10));
        }
    }
    assert!(over.is_empty(), "over 64 MiB: {over:?}");
}
