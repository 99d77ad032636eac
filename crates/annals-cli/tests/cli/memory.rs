//! The binary's memory never depends on what a file claims: `cat` and `verify` on a 300 MB
//! line, a 300 MB blob file and a valid segment larger than the bound each peak under 64 MiB
//! of resident memory.
//!
//! The peak is the binary's own: a measuring child (this test binary re-executed) runs the
//! `annals` binary as its only child and reports `getrusage(RUSAGE_CHILDREN)`'s `ru_maxrss`,
//! which the kernel keeps for waited-for children whatever the other tests of this process
//! spawn.

use std::io::Write;
use std::process::{Command, Stdio};

use annals::{BlobId, SegmentId, SessionId, StoreExt};
use serde_json::json;

use crate::Fixture;

const MEASURE: &str = "ANNALS_CLI_MEASURE";
/// Separates the binary's arguments in [`MEASURE`].
const SEP: char = '\u{1f}';
const HUGE: u64 = 300 << 20;
const RSS_LIMIT_KIB: i64 = 64 << 10;

#[test]
fn measure_child() {
    let Ok(args) = std::env::var(MEASURE) else {
        return;
    };
    let output = Command::new(env!("CARGO_BIN_EXE_annals"))
        .args(args.split(SEP))
        .env_remove("ANNALS_ROOT")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let usage =
        nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).replace('\n', " | ");
    println!(
        "@@ code={} maxrss_kib={} stderr={stderr}",
        output.status.code().unwrap_or(-1),
        usage.max_rss()
    );
}

/// Runs the binary with `args` under the measuring child: its exit code, peak RSS in KiB, and
/// what it wrote to stderr.
fn measure(args: &[String]) -> (i32, i64, String) {
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "memory::measure_child",
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(MEASURE, args.join(&SEP.to_string()))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "measuring child failed: {stdout}");
    let line = stdout
        .lines()
        .find_map(|l| l.split("@@ ").nth(1))
        .unwrap_or_else(|| panic!("no measurement: {stdout}"));
    let field = |name: &str| -> String {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .unwrap()
            .to_owned()
    };
    let stderr = line.split_once("stderr=").unwrap().1.to_owned();
    (
        field("code=").parse().unwrap(),
        field("maxrss_kib=").parse().unwrap(),
        stderr,
    )
}

fn append_bytes(path: &std::path::Path, bytes: &[u8]) {
    let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(bytes).unwrap();
}

#[test]
fn cat_and_verify_stay_under_64_mib_on_hundreds_of_megabytes() {
    let fx = Fixture::new();
    let store = &fx.store;
    let small = |i: u64| json!({"n": i, "text": format!("entry {i}")});

    // One line of 300 MB between good ones.
    let long = (SessionId::new(), SegmentId::new());
    store.create(long.0, long.1, &[small(0), small(1)]).unwrap();
    let path = fx.path(long);
    let x = vec![b'x'; 1 << 20];
    for _ in 0..HUGE >> 20 {
        append_bytes(&path, &x);
    }
    append_bytes(&path, b"\n");
    // Then a line that claims everything before it durable (`u` = 0): the long line is damage
    // in the log, not an interrupted tail at its end.
    for seq in 2..5 {
        let frame = annals::codec::Frame {
            version: annals::codec::Version::NEW_FILES,
            seq,
            marks: annals::codec::Marks {
                appended_ms: 1_750_000_000_000,
                ..annals::codec::Marks::default()
            },
        };
        let mut line = Vec::new();
        annals::codec::encode_entry(&frame, &small(seq).to_string(), &mut line).unwrap();
        append_bytes(&path, &line);
    }

    // A line whose blob's file is 300 MB (sparse): more than its reference says, and more
    // than the largest entry.
    let blob = (SessionId::new(), SegmentId::new());
    let value = json!({"text": "b".repeat(9000)});
    store
        .create(blob.0, blob.1, &[small(0), value.clone()])
        .unwrap();
    // A durable line after it, so that the blob's line is in the log that line vouches for
    // (damage), not at an end that claims nothing (an interrupted tail).
    let durable = annals::FsOptions {
        durability: annals::Durability::Sync,
        ..annals::FsOptions::default()
    };
    // Two: a new handle knows only what the last line claims (entries before it), so its first
    // line vouches no further than before the blob's; the second, after the first's
    // fdatasync, vouches for all.
    let durable = annals::FsStore::open_with(fx.root(), durable).unwrap();
    for i in [2, 3] {
        durable.append(blob.0, blob.1, &small(i)).unwrap();
    }
    let id = BlobId::of(serde_json::to_string(&value).unwrap().as_bytes());
    // Its pack record made no record, hundreds of megabytes of zeros after it, and a blob
    // file of its own (format 2's layout) that claims as much.
    let blobs = fx.root().join(blob.0.to_string()).join("blobs");
    let mut packed = std::fs::read(blobs.join("pack")).unwrap();
    let header_end = packed.iter().position(|&b| b == b'\n').unwrap();
    assert!(String::from_utf8_lossy(&packed[..header_end]).contains(&id.to_hex()));
    packed[..header_end].fill(0);
    std::fs::write(blobs.join("pack"), packed).unwrap();
    let pack = std::fs::OpenOptions::new()
        .write(true)
        .open(blobs.join("pack"))
        .unwrap();
    let len = pack.metadata().unwrap().len();
    pack.set_len(len + HUGE).unwrap();
    let hex = id.to_hex();
    std::fs::create_dir_all(blobs.join(&hex[..2])).unwrap();
    std::fs::File::create(blobs.join(&hex[..2]).join(&hex))
        .unwrap()
        .set_len(HUGE)
        .unwrap();

    // A valid segment larger than the bound.
    let big = (SessionId::new(), SegmentId::new());
    store
        .create::<serde_json::Value>(big.0, big.1, &[])
        .unwrap();
    let text = "lorem ipsum dolor sit amet ".repeat(14);
    let batch: Vec<_> = (0..1000).map(|i| json!({"n": i, "text": text})).collect();
    while std::fs::metadata(fx.path(big)).unwrap().len() < 96 << 20 {
        store.append_batch(big.0, big.1, &batch).unwrap();
    }

    let root = fx.root().display().to_string();
    let run = |words: &[&str]| -> Vec<String> {
        ["--root", root.as_str()]
            .iter()
            .chain(words)
            .map(|w| (*w).to_owned())
            .collect()
    };
    let (long_seg, blob_seg, big_seg) = (long.1.to_string(), blob.1.to_string(), big.1.to_string());
    // (arguments, exit code, what stderr must say)
    let cases: Vec<(Vec<String>, i32, &str)> = vec![
        (
            run(&["cat", &long_seg]),
            1,
            "line of 314572800 bytes exceeds",
        ),
        (run(&["cat", "--tolerant", &long_seg]), 1, "314572800"),
        (run(&["verify", &long_seg]), 1, ""),
        (run(&["cat", &blob_seg]), 1, "blob has 314572800 bytes"),
        (
            run(&["cat", "--tolerant", &blob_seg]),
            1,
            "blob has 314572800 bytes",
        ),
        (run(&["verify", &blob_seg]), 1, ""),
        (run(&["cat", &big_seg]), 0, ""),
        (run(&["verify", &big_seg]), 0, ""),
        (run(&["verify"]), 1, ""),
    ];
    let mut over = Vec::new();
    for (args, code, says) in &cases {
        let (found, peak, stderr) = measure(args);
        let shown = args[2..].join(" ");
        println!("annals {shown}: exit {found}, peak {} MiB", peak >> 10);
        assert_eq!(found, *code, "annals {shown}: {stderr}");
        assert!(stderr.contains(says), "annals {shown}: {stderr}");
        if peak >= RSS_LIMIT_KIB {
            over.push(format!("annals {shown}: {} MiB", peak >> 10));
        }
    }
    assert!(over.is_empty(), "over 64 MiB: {over:?}");
}
