//! `annals copy` between the filesystem store and PostgreSQL: a round trip fs → pg → fs gives
//! back the same sessions entry for entry (blobs, traces, lineage, generations, attachments),
//! a re-run copies only what is new, and a destination that is not a copy is refused.

use annals::{AttachmentMeta, FsStore, SegmentId, SessionId, Store, StoreExt};
use annals_postgres::test_server::{fresh_schema, server_for_tests};
use serde_json::json;

use crate::{bare, entry, Fixture};

/// Everything observable about a session through the `Store` trait.
fn describe(store: &dyn Store, session: SessionId) -> serde_json::Value {
    let mut segments = Vec::new();
    for info in store.list_segments(session).unwrap() {
        let entries: Vec<String> = store
            .read_raw(session, info.segment)
            .unwrap()
            .iter()
            .map(|e| e.as_str().to_owned())
            .collect();
        let trace: Vec<serde_json::Value> = store.read_trace(session, info.segment).unwrap();
        segments.push(json!({
            "id": info.segment,
            "tip": info.tip,
            "fork": info.fork.map(|l| json!([l.segment, l.at])),
            "entries": entries,
            "trace": trace,
        }));
    }
    let attachments: Vec<serde_json::Value> = store
        .list_attachments(session)
        .unwrap()
        .iter()
        .map(|a| {
            json!([
                a.id,
                a.len,
                a.meta,
                store.get_blob(session, &a.id).unwrap().len()
            ])
        })
        .collect();
    json!({ "segments": segments, "attachments": attachments })
}

fn sample(store: &FsStore) -> Vec<SessionId> {
    let (a, main) = (SessionId::new(), SegmentId::new());
    let mut entries: Vec<serde_json::Value> = (0..40).map(entry).collect();
    // Kept as blobs: longer than a line.
    entries.push(json!({ "tool_output": "x".repeat(10_000) }));
    entries.push(json!({ "file": "é".repeat(3_000) }));
    store.create(a, main, &entries).unwrap();
    store
        .append_trace(a, main, &json!({"event": "start"}))
        .unwrap();
    store.truncate(a, main, 41).unwrap(); // generation 1, a blob entry cut
    store
        .append(a, main, &json!({"after": "truncate"}))
        .unwrap();
    let fork = SegmentId::new();
    store.fork(a, main, 20, fork).unwrap();
    store.append(a, fork, &json!({"fork only": true})).unwrap();
    store
        .put_attachment(
            a,
            &[0u8, 1, 2, 255],
            &AttachmentMeta {
                media_type: "image/png".into(),
                label: Some("tiny.png".into()),
                ..AttachmentMeta::default()
            },
        )
        .unwrap();
    let (b, other) = (SessionId::new(), SegmentId::new());
    store.create::<serde_json::Value>(b, other, &[]).unwrap();
    store.append(b, other, &json!("only")).unwrap();
    vec![a, b]
}

#[test]
fn a_round_trip_through_postgres_gives_back_the_same_sessions_and_a_rerun_copies_only_news() {
    let Some(server) = server_for_tests() else {
        return;
    };
    let source = Fixture::new();
    let sessions = sample(&source.store);
    let pg = format!("{}?schema={}", server.url(), fresh_schema());
    let back = tempfile::tempdir().unwrap();
    let back_root = back.path().join("back");

    let copy = |from: &str, to: &str| {
        bare()
            .args(["copy", "--from", from, "--to", to])
            .assert()
            .success()
            .get_output()
            .stdout
            .clone()
    };
    let src = source.root().display().to_string();
    let out = copy(&src, &pg);
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("copied 2 sessions, 3 segments"), "{out}");
    assert!(!out.contains(server.local().map_or("", |l| l.password())) || server.local().is_none());
    copy(&pg, &back_root.display().to_string());

    let pg_store = annals_postgres::PgStore::open_with({
        let (url, schema) = pg.split_once("?schema=").unwrap();
        annals_postgres::PgOptions::new(url).schema(schema)
    })
    .unwrap();
    let back_store = FsStore::open(&back_root).unwrap();
    for &s in &sessions {
        let original = describe(&source.store, s);
        assert_eq!(describe(&pg_store, s), original, "fs → pg");
        assert_eq!(describe(&back_store, s), original, "pg → fs");
    }

    // More entries in the source: a second copy appends only those, duplicating nothing.
    let segment = source.store.list_segments(sessions[1]).unwrap()[0].segment;
    source
        .store
        .append(sessions[1], segment, &json!("news"))
        .unwrap();
    let out = String::from_utf8(copy(&src, &pg)).unwrap();
    assert!(out.contains("(1 new)"), "{out}");
    assert_eq!(
        describe(&pg_store, sessions[1]),
        describe(&source.store, sessions[1])
    );

    // A destination that is not a copy of the source is refused, and left alone.
    pg_store
        .append(sessions[1], segment, &json!("only in pg"))
        .unwrap();
    source
        .store
        .append(sessions[1], segment, &json!("only in fs"))
        .unwrap();
    let before = describe(&pg_store, sessions[1]);
    bare()
        .args(["copy", "--from", &src, "--to", &pg])
        .assert()
        .code(1)
        .stderr(predicates::str::contains(
            "differs from the source at entry",
        ));
    assert_eq!(describe(&pg_store, sessions[1]), before);
    pg_store.drop_schema().unwrap();
}
