//! A producer of large entries, as real agent sessions are (tool outputs, whole files, build
//! logs): entries of any size up to the store's maximum go in with the same call as small
//! ones; those too long for one line are kept as content-addressed blobs, stored once however
//! often they repeat, and come back byte for byte.
//!
//! ```sh
//! cargo run -p annals --example large_entries -- ./large-store
//! ```

use annals::{Body, Durability, FsOptions, FsStore, ReplayOptions, Store, StoreExt, MAX_INLINE};
use serde_json::json;

fn main() -> annals::Result<()> {
    let root = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "./large-store".into());
    let store = FsStore::open_with(
        &root,
        FsOptions {
            // Every append fdatasync'ed before it returns, blobs included.
            durability: Durability::Sync,
            ..FsOptions::default()
        },
    )?;
    let (session, segment) = store.new_session()?;
    let build_log: String = (0..20_000)
        .map(|i| format!("test case_{i} ... ok\n"))
        .collect();
    let file = "fn main() {}\n".repeat(50_000);
    let entries = [
        json!({"type": "user", "text": "run the tests"}),
        json!({"type": "tool_result", "name": "run_command", "output": build_log}),
        json!({"type": "tool_result", "name": "read_file", "output": file}),
        // The same output again: its blob is stored once.
        json!({"type": "tool_result", "name": "run_command", "output": build_log}),
        json!({"type": "assistant", "text": "all 20000 tests pass"}),
    ];
    store.append_batch(session, segment, &entries)?;

    let mut blobs = 0;
    store.replay_raw(session, segment, &ReplayOptions::strict(), &mut |entry| {
        let json = entry.json().unwrap_or_default();
        let kept = match entry.body {
            Body::Inline(_) => "in its line".to_owned(),
            Body::Blob { reference, .. } => {
                blobs += 1;
                format!("as blob {}", &reference.sha256.to_hex()[..12])
            }
        };
        println!("entry {}: {} bytes, kept {kept}", entry.seq, json.len());
        Ok(std::ops::ControlFlow::Continue(()))
    })?;
    let back: Vec<serde_json::Value> = store.read(session, segment)?;
    assert_eq!(back, entries, "every entry comes back exactly");
    let report = store.verify(session, segment)?;
    println!(
        "{blobs} entries over {MAX_INLINE} bytes kept as blobs; the segment file is {} bytes; \
         verify: {}",
        report.file_len,
        if report.is_clean() {
            "clean"
        } else {
            "damaged"
        }
    );
    println!(
        "the largest entry this store takes: {} MiB",
        store.max_entry_bytes() >> 20
    );
    Ok(())
}
