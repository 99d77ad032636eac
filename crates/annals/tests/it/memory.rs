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
