//! Sessions searched on several threads, hits handed to the sink in the order one thread
//! would find them. Each session gets a bounded queue; the calling thread drains the queues in
//! session order, so a thread that runs ahead waits once it holds [`AHEAD_BYTES`] of hits.

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use annals::{SegmentId, SessionId, Store};

use super::{search_session, Hit, Progress, Query, Scope, SearchSink, SearchStats};

/// Bytes of hits one session may hold ahead of the sink (besides one entry, however long).
const AHEAD_BYTES: usize = 8 << 20;

/// A hit, owned, to cross threads.
struct OwnedHit {
    session: SessionId,
    segment: SegmentId,
    seq: u64,
    appended_ms: Option<u64>,
    json: String,
    from_blob: bool,
}

enum Message {
    Hit(OwnedHit),
    Progress(Progress),
    Done(SearchStats),
}

/// One session's queue between the thread searching it and the calling thread.
#[derive(Default)]
struct Queue {
    state: Mutex<QueueState>,
    changed: Condvar,
}

#[derive(Default)]
struct QueueState {
    messages: VecDeque<Message>,
    bytes: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Queue {
    /// Waits for room (unless the queue is empty), then queues; false once the search stops.
    fn push(&self, message: Message, stop: &AtomicBool) -> bool {
        let size = match &message {
            Message::Hit(h) => h.json.len(),
            _ => 0,
        };
        let mut state = lock(&self.state);
        while state.bytes > 0 && state.bytes + size > AHEAD_BYTES {
            if stop.load(Ordering::SeqCst) {
                return false;
            }
            state = self
                .changed
                .wait_timeout(state, std::time::Duration::from_millis(50))
                .map_or_else(|e| e.into_inner().0, |(s, _)| s);
        }
        state.bytes += size;
        state.messages.push_back(message);
        self.changed.notify_all();
        !stop.load(Ordering::SeqCst)
    }

    fn pop(&self) -> Message {
        let mut state = lock(&self.state);
        loop {
            if let Some(message) = state.messages.pop_front() {
                if let Message::Hit(h) = &message {
                    state.bytes -= h.json.len();
                }
                self.changed.notify_all();
                return message;
            }
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
}

/// What a searching thread hands its session's sink: hits and progress go into the queue.
struct QueueSink<'q> {
    queue: &'q Queue,
    stop: &'q AtomicBool,
}

impl SearchSink for QueueSink<'_> {
    fn hit(&mut self, hit: Hit<'_>) -> ControlFlow<()> {
        let owned = OwnedHit {
            session: hit.session,
            segment: hit.segment,
            seq: hit.seq,
            appended_ms: hit.appended_ms,
            json: hit.json.to_owned(),
            from_blob: hit.from_blob,
        };
        if self.queue.push(Message::Hit(owned), self.stop) {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(())
        }
    }

    fn progress(&mut self, at: &Progress) -> ControlFlow<()> {
        if self.queue.push(Message::Progress(*at), self.stop) {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(())
        }
    }
}

pub(super) fn search(
    store: &dyn Store,
    sessions: &[SessionId],
    scope: &Scope,
    query: &Query,
    sink: &mut dyn SearchSink,
    threads: usize,
) -> SearchStats {
    let queues: Vec<Queue> = sessions.iter().map(|_| Queue::default()).collect();
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let mut total = SearchStats::default();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let (Some(&session), Some(queue)) = (sessions.get(i), queues.get(i)) else {
                    break;
                };
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let mut stats = SearchStats::default();
                let mut sink = QueueSink { queue, stop: &stop };
                // The calling thread waits for this session's end: it must come even if the
                // search panics (a bug: the panic hook has said so).
                let flow = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    search_session(store, session, scope, query, &mut sink, &mut stats)
                }));
                if !matches!(flow, Ok(ControlFlow::Continue(()))) {
                    stats.stopped = true;
                }
                queue.push(Message::Done(stats), &stop);
            });
        }
        // The calling thread: each session's messages in turn, so hits come out in order.
        let mut stopped = false;
        'sessions: for queue in &queues {
            loop {
                match queue.pop() {
                    Message::Hit(h) => {
                        let hit = Hit {
                            session: h.session,
                            segment: h.segment,
                            seq: h.seq,
                            appended_ms: h.appended_ms,
                            json: &h.json,
                            from_blob: h.from_blob,
                        };
                        if sink.hit(hit).is_break() {
                            stopped = true;
                            break 'sessions;
                        }
                    }
                    Message::Progress(mut at) => {
                        at.entries += total.entries;
                        at.hits += total.hits;
                        if sink.progress(&at).is_break() {
                            stopped = true;
                            break 'sessions;
                        }
                    }
                    Message::Done(stats) => {
                        stopped = stats.stopped;
                        total.absorb(stats);
                        if stopped {
                            break 'sessions;
                        }
                        continue 'sessions;
                    }
                }
            }
        }
        total.stopped = stopped;
        // Threads still searching or waiting for room see this within one wait and end.
        stop.store(true, Ordering::SeqCst);
        for q in &queues {
            q.changed.notify_all();
        }
    });
    total
}
