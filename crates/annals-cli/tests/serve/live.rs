//! Live updates as server-sent events: appends, rewrites, forks, trace events, reconnection.

use annals::{SegmentId, SessionId, Store, StoreExt};
use serde_json::json;

use crate::support::http::Events;
use crate::support::stores;
use crate::Fixture;

/// The next event that is not a `segments` one (those come whenever any segment's count
/// changes, at the watcher's pace).
fn next(stream: &mut Events) -> crate::support::http::Event {
    loop {
        let e = stream.next().unwrap();
        if e.event != "segments" {
            return e;
        }
    }
}

fn events(server: &crate::support::server::Server, path: &str) -> Events {
    let e = Events::open(server.addr, path, &[]).unwrap();
    assert_eq!(e.status, 200, "{path}");
    e
}

#[test]
fn appends_rewrites_forks_and_trace_events_arrive_as_they_happen() {
    let fx = Fixture::new();
    let (s, g) = (SessionId::new(), SegmentId::new());
    fx.store.create(s, g, &stores::messages(0..4)).unwrap();
    let server = fx.serve(&[]);
    let mut stream = events(
        &server,
        &format!("/api/sessions/{s}/segments/{g}/events?from=0&next=4&generation=0"),
    );
    assert!(
        stream
            .headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("content-type")
                && v.starts_with("text/event-stream"))
    );

    fx.store
        .append(s, g, &json!({"role": "user", "text": "live one"}))
        .unwrap();
    let e = next(&mut stream);
    assert_eq!(e.event, "entries");
    let rows = e.json()["rows"].as_array().unwrap().clone();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["seq"], 4);
    assert_eq!(rows[0]["text"], "live one");

    fx.store.truncate(s, g, 2).unwrap();
    fx.store
        .append(s, g, &json!({"text": "rewritten"}))
        .unwrap();
    let e = next(&mut stream);
    assert_eq!(e.event, "rewrite");
    assert_eq!(e.json()["first_changed"], 2);
    assert_eq!(e.json()["generation"], 1);
    // A rewrite and an append can be seen in one look or two.
    let e = next(&mut stream);
    assert_eq!(e.event, "entries");
    assert_eq!(e.json()["rows"][0]["seq"], 2);
    assert_eq!(e.json()["rows"][0]["text"], "rewritten");

    fx.store
        .append_trace(s, g, &json!({"event": "model", "ms": 12}))
        .unwrap();
    let e = next(&mut stream);
    assert_eq!(e.event, "trace");
    assert_eq!(e.json()["rows"][0]["type"], "model");

    let fork = SegmentId::new();
    fx.store.fork(s, g, 1, fork).unwrap();
    let e = next(&mut stream);
    assert_eq!(e.event, "fork");
    assert_eq!(e.json()["segment"], fork.to_string());
    assert_eq!(e.json()["from"], g.to_string());
    assert_eq!(e.json()["at"], 1);
    let e = stream.next().unwrap();
    assert_eq!(e.event, "segments", "after a fork, the new listing");
    assert_eq!(e.json()["newest_segment"], fork.to_string());

    fx.store.delete_session(s).unwrap();
    let e = next(&mut stream);
    assert_eq!(e.event, "gone");
    assert!(stream.next().is_err(), "the stream ends");
}

#[test]
fn a_reconnecting_page_resumes_where_it_was() {
    let fx = Fixture::new();
    let (s, g) = (SessionId::new(), SegmentId::new());
    fx.store.create(s, g, &stores::messages(0..2)).unwrap();
    let server = fx.serve(&[]);
    let path = format!("/api/sessions/{s}/segments/{g}/events?from=0&next=2");
    let mut first = events(&server, &path);
    fx.store.append(s, g, &stores::message(2)).unwrap();
    let e = first.next().unwrap();
    assert_eq!(e.json()["rows"][0]["seq"], 2);
    drop(first);
    fx.store.append(s, g, &stores::message(3)).unwrap();
    // The browser sends the last id it saw; the URL still says next=2.
    let mut again = Events::open(server.addr, &path, &[("Last-Event-ID", &e.id)]).unwrap();
    let e = again.next().unwrap();
    let seqs: Vec<u64> = e.json()["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [3]);
}

#[test]
fn a_page_that_saw_another_generation_is_redrawn() {
    let fx = Fixture::new();
    let (s, g) = (SessionId::new(), SegmentId::new());
    fx.store.create(s, g, &stores::messages(0..6)).unwrap();
    fx.store.truncate(s, g, 3).unwrap();
    let server = fx.serve(&[]);
    let mut stream = events(
        &server,
        &format!("/api/sessions/{s}/segments/{g}/events?from=1&next=6&generation=0"),
    );
    let e = stream.next().unwrap();
    assert_eq!(e.event, "rewrite");
    assert_eq!(e.json()["first_changed"], 1);
    let e = stream.next().unwrap();
    assert_eq!(e.event, "entries");
    assert_eq!(e.json()["rows"].as_array().unwrap().len(), 2);
}

#[test]
fn events_of_nothing_are_refused() {
    let fx = Fixture::new();
    let (s, g) = (SessionId::new(), SegmentId::new());
    fx.store.create(s, g, &stores::messages(0..1)).unwrap();
    let server = fx.serve(&[]);
    let missing = server.get(&format!(
        "/api/sessions/{s}/segments/{}/events",
        SegmentId::new()
    ));
    assert_eq!(missing.status, 404);
    let backwards = server.get(&format!(
        "/api/sessions/{s}/segments/{g}/events?from=3&next=1"
    ));
    assert_eq!(backwards.status, 400);
    assert_eq!(fx.store.tip(s, g).unwrap().count, 1);
}

#[test]
fn a_fork_between_loading_and_listening_is_announced() {
    let fx = Fixture::new();
    let (s, g) = (SessionId::new(), SegmentId::new());
    fx.store.create(s, g, &stores::messages(0..3)).unwrap();
    let server = fx.serve(&[]);
    // The page loaded with `g` as the newest segment; the fork lands before it listens.
    let fork = SegmentId::new();
    fx.store.fork(s, g, 2, fork).unwrap();
    let mut stream = events(
        &server,
        &format!("/api/sessions/{s}/segments/{g}/events?from=0&next=3&newest={g}"),
    );
    let e = next(&mut stream);
    assert_eq!(e.event, "fork");
    assert_eq!(e.json()["segment"], fork.to_string());
    let bad = server.get(&format!(
        "/api/sessions/{s}/segments/{g}/events?newest=nope"
    ));
    assert_eq!(bad.status, 400);
}
