//! The stores the viewer is tested on, made with the library: a forked session, damage, a
//! 5 MiB entry, an entry that is a script payload, attachments.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use annals::{AttachmentMeta, FsStore, SegmentId, SessionId, Store, StoreExt};
use serde_json::{json, Value};

pub fn message(i: u64) -> Value {
    let role = if i.is_multiple_of(2) {
        "user"
    } else {
        "assistant"
    };
    json!({"role": role, "text": format!("message number {i}")})
}

pub fn messages(range: std::ops::Range<u64>) -> Vec<Value> {
    range.map(message).collect()
}

/// A session whose root segment (10 entries) was forked at 4 (`b`, then 3 more entries), `b`
/// at 6 (`c`), and the root again at 8 (`d`, the newest).
pub struct Forked {
    pub session: SessionId,
    pub root: SegmentId,
    pub b: SegmentId,
    pub c: SegmentId,
    pub d: SegmentId,
}

pub fn forked(store: &FsStore) -> Forked {
    let session = SessionId::new();
    let [root, b, c, d] = [(); 4].map(|()| SegmentId::new());
    store.create(session, root, &messages(0..10)).unwrap();
    store.fork(session, root, 4, b).unwrap();
    store.append_batch(session, b, &messages(100..103)).unwrap();
    store.fork(session, b, 6, c).unwrap();
    store.fork(session, root, 8, d).unwrap();
    store
        .append_trace(session, d, &json!({"event": "conflict_fork", "at": 8}))
        .unwrap();
    Forked {
        session,
        root,
        b,
        c,
        d,
    }
}

/// Line `line` (1-based; line 1 is the header) of a file, as a byte offset.
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

/// A session of 8 entries whose line 5 (entry 3) has a flipped bit and whose file ends in a
/// torn tail.
pub fn damaged(store: &FsStore) -> (SessionId, SegmentId, PathBuf) {
    let (session, segment) = (SessionId::new(), SegmentId::new());
    store.create(session, segment, &messages(0..8)).unwrap();
    let path = store.segment_path(session, segment);
    flip(&path, 5);
    let mut file = fs::OpenOptions::new().append(true).open(&path).unwrap();
    file.write_all(br#"{"crc":"0badf00d","seq":"#).unwrap();
    (session, segment, path)
}

/// Flips one bit inside the JSON of line `line`.
pub fn flip(path: &Path, line: usize) {
    let mut bytes = fs::read(path).unwrap();
    let start = line_start(&bytes, line);
    bytes[start + 30] ^= 0x01;
    fs::write(path, bytes).unwrap();
}

/// Bytes of the large entry's output.
pub const BIG: usize = 5 << 20;

/// A session whose entry 1 is a 5 MiB tool result (kept as a blob), with an attachment.
pub fn big(store: &FsStore) -> (SessionId, SegmentId) {
    let (session, segment) = (SessionId::new(), SegmentId::new());
    let output: String = "build log line. ".repeat(BIG / 16);
    store
        .create(
            session,
            segment,
            &[
                json!({"type": "tool_call", "name": "run_tests", "args": {"cmd": "cargo test"}}),
                json!({"type": "tool_result", "name": "run_tests", "output": output}),
                json!({"role": "assistant", "text": "the tests pass"}),
            ],
        )
        .unwrap();
    store
        .put_attachment(
            session,
            b"\x89PNG not really",
            &AttachmentMeta {
                media_type: "image/png".into(),
                label: Some("screen shot.png".into()),
                width: None,
                height: None,
            },
        )
        .unwrap();
    (session, segment)
}

/// What a hostile entry tries; `canary` is an address the test listens on, which must never
/// be asked for anything.
pub fn script_payload(canary: &str) -> String {
    format!(
        "<script>window.__pwned = 1; alert('pwned')</script><img src=x onerror=\"window.__pwned = 2\">\
         <img src=\"http://{canary}/fetched\"><a href=\"javascript:alert(3)\">click</a>\u{1b}[31mred"
    )
}

/// A session whose entries are hostile: a script payload as text, as a role and as a tool
/// name, and HTML in a key.
pub fn hostile(store: &FsStore, canary: &str) -> (SessionId, SegmentId) {
    let (session, segment) = (SessionId::new(), SegmentId::new());
    let payload = script_payload(canary);
    store
        .create(
            session,
            segment,
            &[
                json!({"role": "user", "text": payload}),
                json!({"role": "<img src=x onerror=alert(4)>", "text": "role payload"}),
                json!({"type": "tool_call", "name": "<script>alert(5)</script>", "args": {"<b>k</b>": payload}}),
            ],
        )
        .unwrap();
    store
        .append_trace(
            session,
            segment,
            &json!({"event": "<script>alert(6)</script>"}),
        )
        .unwrap();
    (session, segment)
}
