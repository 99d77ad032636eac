//! An agent loop as a runtime would write it: one session per conversation, an owned
//! `SegmentWriter` in the worker's struct, `Buffered` appends made durable once per turn with
//! `sync`, and a fork when another writer got to the segment first.
//!
//! ```sh
//! cargo run -p annals --example agent_loop -- ./agent-store
//! annals --root ./agent-store tree SESSION
//! ```

use std::sync::Arc;

use annals::{Error, FsStore, SegmentWriter, Store, StoreExt};
use serde::{Deserialize, Serialize};

/// What the runtime keeps per event.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Event {
    User {
        text: String,
    },
    ToolCall {
        name: String,
        args: serde_json::Value,
    },
    ToolResult {
        output: String,
    },
    Assistant {
        text: String,
    },
}

/// A worker: owns its writer, so it can live in a struct and move to another thread.
struct Worker {
    writer: SegmentWriter<Arc<dyn Store>>,
}

impl Worker {
    /// One turn: the user's message, a tool call and its result, the answer. Appends may be
    /// refused because someone else wrote to the segment: then continue in a fork that
    /// starts from what this worker had seen.
    fn turn(&mut self, text: &str) -> annals::Result<()> {
        let events = [
            Event::User { text: text.into() },
            Event::ToolCall {
                name: "read_file".into(),
                args: serde_json::json!({"path": "src/lib.rs"}),
            },
            Event::ToolResult {
                output: "pub fn answer() -> u32 { 42 }\n".into(),
            },
            Event::Assistant {
                text: format!("Done: {text}"),
            },
        ];
        for event in &events {
            match self.writer.append(event) {
                Ok(_) => {}
                Err(Error::ConcurrentWriter { found, .. }) => {
                    let from = self.writer.segment();
                    let at = self.writer.tip().count;
                    let fork = self.writer.fork()?;
                    println!(
                        "another writer moved segment {from} to {found}; forked {fork} at {at}"
                    );
                    self.writer.append(event)?;
                }
                Err(e) => return Err(e),
            }
        }
        // The end of a turn: make it durable with one fdatasync (Buffered appends survive a
        // process crash already; this makes them survive a power cut).
        self.writer.sync()
    }
}

fn main() -> annals::Result<()> {
    let root = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "./agent-store".into());
    let store: Arc<dyn Store> = Arc::new(FsStore::open(&root)?);
    let mut worker = Worker {
        writer: SegmentWriter::new_session(Arc::clone(&store))?,
    };
    let (session, first) = (worker.writer.session(), worker.writer.segment());
    worker.turn("find the flaky test")?;

    // The worker moves to another thread for its next turn; meanwhile another process (here:
    // the main thread) appends to the same segment, so the worker's next append conflicts.
    store.append(
        session,
        first,
        &Event::User {
            text: "(typed in another window)".into(),
        },
    )?;
    let handle = std::thread::spawn(move || -> annals::Result<Worker> {
        worker.turn("and fix it")?;
        Ok(worker)
    });
    let worker = handle
        .join()
        .map_err(|_| Error::sink("the worker thread panicked"))??;

    for info in store.list_segments(session)? {
        let lineage = info
            .fork
            .map(|f| format!(", forked from {} at {}", f.segment, f.at))
            .unwrap_or_default();
        println!(
            "segment {}: {} entries{lineage}",
            info.segment, info.tip.count
        );
    }
    let events: Vec<Event> = store.read(session, worker.writer.segment())?;
    println!(
        "the worker's history has {} events; the last: {:?}",
        events.len(),
        events.last()
    );
    println!("look at it: annals --root {root} tree {session}");
    Ok(())
}
