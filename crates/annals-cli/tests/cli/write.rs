//! `annals append`: everything checked before anything is written.

use annals::{SegmentId, SessionId, Store};
use predicates::str::contains;
use serde_json::{json, Value};

use crate::{count, read_all, stderr_of, stdout_of, tear, Fixture};

#[test]
fn append_writes_every_line_as_one_batch() {
    let fx = Fixture::new();
    let key = fx.segment(2);
    let out = fx
        .annals()
        .args(["append", &key.0.to_string(), &key.1.to_string()])
        .write_stdin("{\"n\": 2}\n\n[\"x\", {\"y\": null}]\n  \"text\"  \n")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        stdout_of(&out).contains("appended 3 entries"),
        "{}",
        stdout_of(&out)
    );
    let entries = read_all(&fx.store, key);
    assert_eq!(entries.len(), 5);
    assert_eq!(entries[2], json!({"n": 2}));
    assert_eq!(entries[3], json!(["x", {"y": null}]));
    assert_eq!(entries[4], json!("text"));
}

#[test]
fn append_refuses_invalid_json_line_by_line_and_writes_nothing() {
    let fx = Fixture::new();
    let key = fx.segment(2);
    let before = fx.snapshot();
    let out = fx
        .annals()
        .args(["append", &key.0.to_string(), &key.1.to_string()])
        .write_stdin("{\"ok\": 1}\n{\"missing\": }\n{\"ok\": 2}\nnot json\n")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr_of(&out);
    assert!(
        err.contains("stdin line 2: not valid JSON: expected value"),
        "{err}"
    );
    assert!(err.contains("stdin line 4: not valid JSON"), "{err}");
    assert!(
        !err.contains("line 1:") && !err.contains("line 3:"),
        "{err}"
    );
    assert!(err.contains("nothing was written"), "{err}");
    assert_eq!(fx.snapshot(), before);
}

#[test]
fn append_refuses_an_entry_too_large_for_a_line_and_writes_nothing() {
    let fx = Fixture::new();
    let key = fx.segment(1);
    let before = fx.snapshot();
    let big = json!({"blob": "x".repeat(5000)}).to_string();
    fx.annals()
        .args(["append", &key.0.to_string(), &key.1.to_string()])
        .write_stdin(format!("{{\"a\":1}}\n{big}\n"))
        .assert()
        .code(2)
        .stderr(contains("stdin line 2: entry too large"));
    assert_eq!(fx.snapshot(), before);
}

#[test]
fn append_needs_create_for_a_new_segment() {
    let fx = Fixture::new();
    fx.segment(1);
    let (session, segment) = (SessionId::new(), SegmentId::new());
    let (s, g) = (session.to_string(), segment.to_string());
    fx.annals()
        .args(["append", &s, &g])
        .write_stdin("{\"a\":1}\n")
        .assert()
        .code(1)
        .stderr(contains("not found"));
    assert!(!fx.store.exists(session, segment).unwrap());
    fx.annals()
        .args(["append", &s, &g, "--create"])
        .write_stdin("{\"a\":1}\n{\"a\":2}\n")
        .assert()
        .success()
        .stdout(contains("created segment"));
    assert_eq!(count(&fx.store, (session, segment)), 2);
    // A second --create appends.
    fx.annals()
        .args(["append", &s, &g, "--create"])
        .write_stdin("{\"a\":3}\n")
        .assert()
        .success();
    let entries: Vec<Value> = read_all(&fx.store, (session, segment));
    assert_eq!(
        entries,
        vec![json!({"a":1}), json!({"a":2}), json!({"a":3})]
    );
}

#[test]
fn append_removes_a_torn_tail_like_any_writer() {
    let fx = Fixture::new();
    let key = fx.segment(2);
    tear(&fx.path(key));
    fx.annals()
        .args(["append", &key.0.to_string(), &key.1.to_string()])
        .write_stdin("{\"n\":2}\n")
        .assert()
        .success();
    let report = fx.store.verify(key.0, key.1).unwrap();
    assert!(report.is_clean());
    assert_eq!(report.torn_tail, None);
    assert_eq!(count(&fx.store, key), 3);
}
