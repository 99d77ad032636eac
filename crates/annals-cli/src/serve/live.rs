//! Live updates of an open segment, as server-sent events: new entries and trace events as they
//! are appended, a rewrite (truncate, repair) with the first sequence number that changed, a
//! fork or any other change to the session's segments, damage, and the segment's removal.
//!
//! The server watches with the store's O(1) tip and one listing of the session every few
//! ticks; the page only listens. To find the first entry a rewrite changed, the watcher keeps
//! a fingerprint of each entry the page shows (8 bytes each, at most [`MAX_WATCHED`]).

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::ops::ControlFlow;

use annals::{Body, Error, ReplayOptions, SegmentId, SessionId, Store};
use serde_json::{json, Value};

use super::rows::Row;

/// Most entries whose fingerprints are kept per watched page.
pub const MAX_WATCHED: usize = 20_000;
/// Most rows in one event.
const ROWS_PER_EVENT: usize = 200;
/// Bytes of rows in one event, about.
const BYTES_PER_EVENT: usize = 1 << 20;
/// The session's listing is read every this many ticks.
const LISTING_EVERY: u64 = 4;

/// One event for the page.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    pub event: &'static str,
    pub data: Value,
}

/// Where a page is: the first entry it shows, the next it expects, the generation it saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub window_start: u64,
    pub next: u64,
    pub generation: u64,
    pub trace_next: u64,
}

impl Position {
    /// The SSE event id, from which a reconnecting page resumes (`Last-Event-ID`).
    pub fn id(&self) -> String {
        format!(
            "{}.{}.{}.{}",
            self.window_start, self.next, self.generation, self.trace_next
        )
    }

    pub fn parse_id(id: &str) -> Option<Self> {
        let mut parts = id.split('.').map(str::parse::<u64>);
        let p = Self {
            window_start: parts.next()?.ok()?,
            next: parts.next()?.ok()?,
            generation: parts.next()?.ok()?,
            trace_next: parts.next()?.ok()?,
        };
        (parts.next().is_none() && p.window_start <= p.next).then_some(p)
    }
}

/// The watcher of one page.
pub struct Watch {
    session: SessionId,
    segment: SegmentId,
    pub position: Position,
    /// Fingerprints of entries `hashed_from ..` (up to `position.next`).
    hashes: VecDeque<u64>,
    hashed_from: u64,
    started: bool,
    ticks: u64,
    /// The session's segments at the last listing: tip and lineage.
    listing: Option<BTreeMap<SegmentId, Value>>,
    /// The newest segment the page knew of when it connected: any newer one (ids are UUID v7,
    /// ordered by creation) is a fork the page has not seen, even if it came before the first
    /// look.
    known_newest: Option<SegmentId>,
    /// The damage last reported, so that it is said once.
    damage: Option<String>,
    /// The segment is gone: the stream ends.
    pub ended: bool,
}

fn fingerprint(entry: &annals::Entry<'_>) -> u64 {
    let mut h = DefaultHasher::new();
    match entry.body {
        Body::Inline(json) => json.hash(&mut h),
        Body::Blob { reference, .. } => reference.sha256.as_bytes().hash(&mut h),
    }
    h.finish()
}

impl Watch {
    pub fn new(
        session: SessionId,
        segment: SegmentId,
        position: Position,
        known_newest: Option<SegmentId>,
    ) -> Self {
        Self {
            session,
            segment,
            position,
            hashes: VecDeque::new(),
            hashed_from: position.window_start,
            started: false,
            ticks: 0,
            listing: None,
            known_newest,
            damage: None,
            ended: false,
        }
    }

    /// One look at the store; what changed since the last one.
    pub fn poll(&mut self, store: &dyn Store) -> Vec<Update> {
        let mut out = Vec::new();
        if !self.started {
            self.started = true;
            self.start(store, &mut out);
        }
        self.entries(store, &mut out);
        if !self.ended {
            self.trace(store, &mut out);
            if self.ticks.is_multiple_of(LISTING_EVERY) {
                self.listing(store, &mut out);
            }
        }
        self.ticks += 1;
        out
    }

    /// Fingerprints what the page shows; a page that saw another generation is redrawn
    /// whole.
    fn start(&mut self, store: &dyn Store, out: &mut Vec<Update>) {
        let from = self
            .position
            .window_start
            .max(self.position.next.saturating_sub(MAX_WATCHED as u64));
        self.hashed_from = from;
        let Ok(tip) = store.tip(self.session, self.segment) else {
            return;
        };
        if tip.generation != self.position.generation {
            let first_changed = self.position.window_start.min(tip.count);
            out.push(rewrite(self.position.generation, tip, first_changed));
            self.position.generation = tip.generation;
            self.position.next = first_changed;
            self.hashed_from = first_changed;
            return;
        }
        let until = self.position.next;
        let _ = self.fingerprints(store, from, until);
        if self.hashed_from + (self.hashes.len() as u64) < until {
            // The page claims more entries than there are (a URL can claim anything): go on
            // from the real end.
            self.position.next = self.hashed_from + self.hashes.len() as u64;
        }
    }

    /// Fingerprints of entries `from..until`, replacing those kept.
    fn fingerprints(&mut self, store: &dyn Store, from: u64, until: u64) -> annals::Result<()> {
        self.hashes.clear();
        self.hashed_from = from;
        if from >= until {
            return Ok(());
        }
        let hashes = &mut self.hashes;
        store.replay_raw(
            self.session,
            self.segment,
            &ReplayOptions::tolerant().from_seq(from).blob_refs(),
            &mut |e| {
                if e.seq < from {
                    return Ok(ControlFlow::Continue(()));
                }
                if e.seq >= until {
                    return Ok(ControlFlow::Break(()));
                }
                hashes.push_back(fingerprint(&e));
                Ok(ControlFlow::Continue(()))
            },
        )?;
        Ok(())
    }

    fn entries(&mut self, store: &dyn Store, out: &mut Vec<Update>) {
        let tip = match store.tip(self.session, self.segment) {
            Ok(tip) => tip,
            Err(Error::SegmentNotFound { .. } | Error::SessionNotFound(_)) => {
                out.push(Update {
                    event: "gone",
                    data: json!({"segment": self.segment.to_string()}),
                });
                self.ended = true;
                return;
            }
            Err(e) => {
                self.report_damage(e.to_string(), out);
                return;
            }
        };
        self.damage = None;
        if tip.generation != self.position.generation {
            let first_changed = self.first_changed(store, tip.count);
            out.push(rewrite(self.position.generation, tip, first_changed));
            self.position.generation = tip.generation;
            self.position.next = first_changed;
            let keep = first_changed.saturating_sub(self.hashed_from);
            self.hashes
                .truncate(usize::try_from(keep).unwrap_or(usize::MAX));
        }
        if tip.count <= self.position.next {
            return;
        }
        let mut rows = Vec::new();
        let mut bytes = 0;
        let from = self.position.next;
        let mut next = from;
        let mut hashes = Vec::new();
        let result = store.replay_raw(
            self.session,
            self.segment,
            &ReplayOptions::tolerant().from_seq(from),
            &mut |e| {
                if e.seq < from {
                    return Ok(ControlFlow::Continue(()));
                }
                if rows.len() == ROWS_PER_EVENT || bytes >= BYTES_PER_EVENT {
                    return Ok(ControlFlow::Break(()));
                }
                let line = Row::of("entry", &e).to_line();
                bytes += line.len();
                rows.push(line);
                hashes.push((e.seq, fingerprint(&e)));
                next = e.seq + 1;
                Ok(ControlFlow::Continue(()))
            },
        );
        if let Err(e) = result {
            self.report_damage(e.to_string(), out);
        }
        for (seq, h) in hashes {
            // A gap (a damaged line) leaves the fingerprints behind; rewrites then compare
            // only up to it.
            if seq == self.hashed_from + self.hashes.len() as u64 {
                self.hashes.push_back(h);
            }
        }
        while self.hashes.len() > MAX_WATCHED {
            self.hashes.pop_front();
            self.hashed_from += 1;
        }
        if rows.is_empty() {
            return;
        }
        self.position.next = next;
        let rows: Vec<Value> = rows
            .iter()
            .filter_map(|r| serde_json::from_str(r).ok())
            .collect();
        out.push(Update {
            event: "entries",
            data: json!({"rows": rows, "tip": {"count": tip.count, "generation": tip.generation}}),
        });
    }

    /// The first entry, among those fingerprinted, that differs from the store now (or the new
    /// end when it is shorter).
    fn first_changed(&self, store: &dyn Store, count: u64) -> u64 {
        let mut first = None;
        let from = self.hashed_from;
        let hashes = &self.hashes;
        let result = store.replay_raw(
            self.session,
            self.segment,
            &ReplayOptions::tolerant().from_seq(from).blob_refs(),
            &mut |e| {
                if e.seq < from {
                    return Ok(ControlFlow::Continue(()));
                }
                let index = usize::try_from(e.seq - from).unwrap_or(usize::MAX);
                match hashes.get(index) {
                    Some(&h) if h == fingerprint(&e) => Ok(ControlFlow::Continue(())),
                    Some(_) => {
                        first = Some(e.seq);
                        Ok(ControlFlow::Break(()))
                    }
                    None => Ok(ControlFlow::Break(())),
                }
            },
        );
        if result.is_err() {
            return from;
        }
        let end_of_known = from + hashes.len() as u64;
        first
            .unwrap_or(end_of_known)
            .min(count)
            .min(self.position.next)
    }

    fn report_damage(&mut self, message: String, out: &mut Vec<Update>) {
        if self.damage.as_deref() != Some(message.as_str()) {
            out.push(Update {
                event: "damage",
                data: json!({"message": message}),
            });
            self.damage = Some(message);
        }
    }

    fn trace(&mut self, store: &dyn Store, out: &mut Vec<Update>) {
        let from = self.position.trace_next;
        let mut rows = Vec::new();
        let mut next = from;
        let _ = store.replay_trace_raw(
            self.session,
            self.segment,
            &ReplayOptions::tolerant().from_seq(from),
            &mut |e| {
                if e.seq < from {
                    return Ok(ControlFlow::Continue(()));
                }
                if rows.len() == ROWS_PER_EVENT {
                    return Ok(ControlFlow::Break(()));
                }
                rows.push(serde_json::to_value(Row::of("trace", &e)).unwrap_or(Value::Null));
                next = e.seq + 1;
                Ok(ControlFlow::Continue(()))
            },
        );
        if !rows.is_empty() {
            self.position.trace_next = next;
            out.push(Update {
                event: "trace",
                data: json!({"rows": rows}),
            });
        }
    }

    /// Announces new segments (forks) and any change of the session's segments.
    fn listing(&mut self, store: &dyn Store, out: &mut Vec<Update>) {
        let Ok(list) = store.list_segments(self.session) else {
            return;
        };
        let now: BTreeMap<SegmentId, Value> = list
            .iter()
            .map(|i| {
                let summary = json!({
                    "segment": i.segment.to_string(),
                    "entries": i.tip.count,
                    "generation": i.tip.generation,
                    "fork": i.fork.map(|f| json!({"segment": f.segment.to_string(), "at": f.at})),
                    "damage": i.damage.as_ref().map(ToString::to_string),
                });
                (i.segment, summary)
            })
            .collect();
        // At the first look, what the page knew: the segments up to its newest.
        let before = self.listing.take().or_else(|| {
            self.known_newest.map(|known| {
                now.iter()
                    .filter(|(id, _)| **id <= known)
                    .map(|(id, v)| (*id, v.clone()))
                    .collect()
            })
        });
        if let Some(before) = &before {
            if *before == now {
                self.listing = Some(now);
                return;
            }
            // Newest first, as listed.
            for info in &list {
                if !before.contains_key(&info.segment) {
                    out.push(Update {
                        event: "fork",
                        data: json!({
                            "segment": info.segment.to_string(),
                            "from": info.fork.map(|f| f.segment.to_string()),
                            "at": info.fork.map(|f| f.at),
                            "entries": info.tip.count,
                        }),
                    });
                }
            }
            out.push(Update {
                event: "segments",
                data: json!({
                    "newest_segment": list.first().map(|i| i.segment.to_string()),
                    "segments": super::api::tree_json(&list, |i| now.get(&i.segment).cloned().unwrap_or_default()),
                }),
            });
        }
        self.listing = Some(now);
    }
}

fn rewrite(old_generation: u64, tip: annals::Tip, first_changed: u64) -> Update {
    Update {
        event: "rewrite",
        data: json!({
            "old_generation": old_generation,
            "generation": tip.generation,
            "count": tip.count,
            "first_changed": first_changed,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use annals::{MemStore, StoreExt};

    fn store_with(n: u64) -> (MemStore, SessionId, SegmentId) {
        let store = MemStore::new();
        let (s, g) = (SessionId::new(), SegmentId::new());
        let entries: Vec<Value> = (0..n).map(|i| json!({"n": i})).collect();
        store.create(s, g, &entries).unwrap();
        (store, s, g)
    }

    fn at(next: u64) -> Position {
        Position {
            window_start: 0,
            next,
            generation: 0,
            trace_next: 0,
        }
    }

    fn events(updates: &[Update]) -> Vec<&str> {
        updates.iter().map(|u| u.event).collect()
    }

    #[test]
    fn appends_arrive_as_rows() {
        let (store, s, g) = store_with(3);
        let mut w = Watch::new(s, g, at(3), None);
        assert!(w.poll(&store).is_empty());
        store
            .append(s, g, &json!({"role": "user", "text": "new"}))
            .unwrap();
        store.append(s, g, &json!({"n": 4})).unwrap();
        let u = w.poll(&store);
        assert_eq!(events(&u), ["entries"]);
        let rows = u[0].data["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["seq"], 3);
        assert_eq!(rows[0]["text"], "new");
        assert_eq!(w.position.next, 5);
        assert!(w.poll(&store).is_empty());
    }

    #[test]
    fn a_rewrite_names_the_first_entry_that_changed() {
        let (store, s, g) = store_with(6);
        let mut w = Watch::new(s, g, at(6), None);
        w.poll(&store);
        store.truncate(s, g, 4).unwrap();
        store
            .append_batch(
                s,
                g,
                &[json!({"n": "four again"}), json!({"n": 5}), json!({"n": 6})],
            )
            .unwrap();
        let u = w.poll(&store);
        assert_eq!(events(&u), ["rewrite", "entries"]);
        assert_eq!(u[0].data["first_changed"], 4);
        assert_eq!(u[0].data["generation"], 1);
        let rows = u[1].data["rows"].as_array().unwrap();
        assert_eq!(
            rows.iter()
                .map(|r| r["seq"].as_u64().unwrap())
                .collect::<Vec<_>>(),
            [4, 5, 6]
        );
        // Entry 5 is byte for byte what it was: the first change is still 4.
        assert_eq!(w.position.next, 7);
    }

    #[test]
    fn a_page_of_another_generation_is_redrawn_from_its_start() {
        let (store, s, g) = store_with(4);
        store.truncate(s, g, 2).unwrap();
        let mut w = Watch::new(
            s,
            g,
            Position {
                window_start: 1,
                next: 4,
                generation: 0,
                trace_next: 0,
            },
            None,
        );
        let u = w.poll(&store);
        assert_eq!(events(&u), ["rewrite", "entries"]);
        assert_eq!(u[0].data["first_changed"], 1);
        assert_eq!(u[1].data["rows"][0]["seq"], 1);
    }

    #[test]
    fn forks_and_trace_events_are_announced() {
        let (store, s, g) = store_with(3);
        let mut w = Watch::new(s, g, at(3), None);
        assert!(w.poll(&store).is_empty());
        let fork = SegmentId::new();
        store.fork(s, g, 2, fork).unwrap();
        store
            .append_trace(s, g, &json!({"event": "model", "ms": 5}))
            .unwrap();
        let mut seen = Vec::new();
        for _ in 0..LISTING_EVERY {
            seen.extend(w.poll(&store));
        }
        assert_eq!(events(&seen), ["trace", "fork", "segments"]);
        assert_eq!(seen[0].data["rows"][0]["type"], "model");
        assert_eq!(seen[1].data["segment"], fork.to_string());
        assert_eq!(seen[1].data["from"], g.to_string());
        assert_eq!(seen[1].data["at"], 2);
        assert_eq!(seen[2].data["newest_segment"], fork.to_string());
    }

    #[test]
    fn a_fork_made_before_the_first_look_is_still_announced() {
        let (store, s, g) = store_with(3);
        let fork = SegmentId::new();
        store.fork(s, g, 1, fork).unwrap();
        // The page knew `g` as the newest segment; the fork came before the watcher looked.
        let mut w = Watch::new(s, g, at(3), Some(g));
        let u = w.poll(&store);
        assert_eq!(events(&u), ["fork", "segments"]);
        assert_eq!(u[0].data["segment"], fork.to_string());
        // A page that already knew the fork hears nothing of it.
        let mut w = Watch::new(s, g, at(3), Some(fork));
        assert!(w.poll(&store).is_empty());
    }

    #[test]
    fn a_deleted_segment_ends_the_stream() {
        let (store, s, g) = store_with(1);
        let mut w = Watch::new(s, g, at(1), None);
        w.poll(&store);
        store.delete_session(s).unwrap();
        assert_eq!(events(&w.poll(&store)), ["gone"]);
        assert!(w.ended);
    }

    #[test]
    fn event_ids_round_trip_and_refuse_nonsense() {
        let p = Position {
            window_start: 2,
            next: 9,
            generation: 3,
            trace_next: 4,
        };
        assert_eq!(Position::parse_id(&p.id()), Some(p));
        assert_eq!(Position::parse_id("9.2.0.0"), None);
        assert_eq!(Position::parse_id("1.2.3"), None);
        assert_eq!(Position::parse_id("1.2.3.4.5"), None);
        assert_eq!(Position::parse_id("a.b.c.d"), None);
    }
}
