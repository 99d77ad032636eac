//! `annals append`: lines appended as they arrive, each checked; `--batch` all or nothing;
//! entries of any size up to the store's maximum; nothing created by a refused append.
//! `annals truncate` and `annals fork`.

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use annals::{SegmentId, SessionId, Store};
use predicates::str::contains;
use serde_json::{json, Value};

use crate::follow::wait_bounded;
use crate::{count, entry, read_all, stderr_of, stdout_of, tear, Fixture};

fn ids(key: (SessionId, SegmentId)) -> [String; 2] {
    [key.0.to_string(), key.1.to_string()]
}

#[test]
fn append_writes_every_line_and_says_what_it_wrote() {
    let fx = Fixture::new();
    let key = fx.segment(2);
    let out = fx
        .annals()
        .arg("append")
        .args(ids(key))
        .args(["--print", "seqs"])
        .write_stdin("{\"n\": 2}\n\n[\"x\", {\"y\": null}]\n  \"text\"  \n")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(
        stdout_of(&out),
        "2\n3\n4\n",
        "one sequence number per entry"
    );
    assert!(
        stderr_of(&out).contains("appended 3 entries") && stderr_of(&out).contains("(seq 2..4)"),
        "{}",
        stderr_of(&out)
    );
    let entries = read_all(&fx.store, key);
    assert_eq!(entries.len(), 5);
    assert_eq!(entries[2], json!({"n": 2}));
    assert_eq!(entries[3], json!(["x", {"y": null}]));
    assert_eq!(entries[4], json!("text"));

    let out = fx
        .annals()
        .arg("append")
        .args(ids(key))
        .args(["--print", "tip", "-q"])
        .write_stdin("{\"n\": 5}\n")
        .output()
        .unwrap();
    assert!(out.status.success());
    let tip: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(tip["count"], 6);
    assert_eq!(tip["segment"], key.1.to_string());
    assert!(out.stderr.is_empty(), "--quiet: {}", stderr_of(&out));
}

#[test]
fn append_stops_at_the_first_bad_line_after_appending_every_line_before_it() {
    let fx = Fixture::new();
    let key = fx.segment(2);
    let out = fx
        .annals()
        .arg("append")
        .args(ids(key))
        .write_stdin("{\"ok\": 1}\n{\"ok\": 2}\n{\"missing\": }\n{\"ok\": 3}\n")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr_of(&out);
    assert!(
        err.contains("stopped at stdin line 3: not valid JSON: expected value"),
        "{err}"
    );
    assert!(err.contains("every line before it was appended"), "{err}");
    assert!(err.contains("appended 2 entries"), "{err}");
    let entries = read_all(&fx.store, key);
    assert_eq!(&entries[2..], &[json!({"ok": 1}), json!({"ok": 2})]);
}

#[test]
fn append_batch_refuses_the_whole_input_for_one_bad_line_and_names_each() {
    let fx = Fixture::new();
    let key = fx.segment(2);
    let before = fx.snapshot();
    let out = fx
        .annals()
        .arg("append")
        .args(ids(key))
        .arg("--batch")
        .write_stdin(&b"{\"ok\": 1}\n{\"missing\": }\n{\"ok\": 2}\nnot json\n\xff\n"[..])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr_of(&out);
    assert!(
        err.contains("stdin line 2: not valid JSON: expected value"),
        "{err}"
    );
    assert!(err.contains("stdin line 4: not valid JSON"), "{err}");
    assert!(err.contains("stdin line 5: not UTF-8"), "{err}");
    assert!(err.contains("3 invalid lines"), "{err}");
    assert!(
        !err.contains("line 1:") && !err.contains("line 3:"),
        "{err}"
    );
    assert!(err.contains("nothing was written"), "{err}");
    assert_eq!(fx.snapshot(), before);
}

#[test]
fn append_stores_entries_of_any_size_up_to_the_maximum_as_blobs() {
    let fx = Fixture::new();
    let key = fx.segment(1);
    let big = json!({"output": "line of tool output\n".repeat(20_000)});
    let huge = json!({"file": "x".repeat(3 << 20)});
    let input = format!("{{\"a\":1}}\n{big}\n{huge}\n");
    let out = fx
        .annals()
        .arg("append")
        .args(ids(key))
        .write_stdin(input)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let entries = read_all(&fx.store, key);
    assert_eq!(entries.len(), 4);
    assert_eq!(entries[2], big);
    assert_eq!(entries[3], huge);
    // Kept as blobs, as the library keeps them; the segment file stays small.
    let size = std::fs::metadata(fx.path(key)).unwrap().len();
    assert!(size < 4096, "{size} bytes");
    fx.annals().arg("verify").assert().success();
}

/// The bytes of `key`'s session's blob pack.
fn pack_of(fx: &Fixture, key: (SessionId, SegmentId)) -> Vec<u8> {
    std::fs::read(fx.root().join(key.0.to_string()).join("blobs/pack")).unwrap()
}

#[test]
fn append_compress_keeps_large_entries_as_compressed_records_that_every_reader_reads() {
    let fx = Fixture::new();
    let output = json!({"output": "line of tool output\n".repeat(5_000)});
    let input = format!("{output}\n{{\"n\":1}}\n");
    for (compress, key) in [(false, fx.segment(0)), (true, fx.segment(0))] {
        let mut cmd = fx.annals();
        cmd.arg("append").args(ids(key));
        if compress {
            cmd.arg("--compress");
        }
        let out = cmd.write_stdin(input.clone()).output().unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
        let pack = pack_of(&fx, key);
        let text = output.to_string();
        // docs/FORMAT.md: a compressed record's header names its stored length, `"zstd":S`.
        let zstd = pack.windows(7).any(|w| w == b"\"zstd\":");
        assert_eq!(zstd, compress, "a compressed record iff --compress");
        if compress {
            assert!(pack.len() < text.len() / 4, "{} bytes", pack.len());
        } else {
            assert!(pack.len() > text.len(), "{} bytes", pack.len());
        }
        let cat = fx
            .annals()
            .args(["cat", &key.1.to_string()])
            .output()
            .unwrap();
        assert!(cat.status.success(), "{}", stderr_of(&cat));
        assert_eq!(stdout_of(&cat), format!("{text}\n{{\"n\":1}}\n"));
        assert_eq!(
            read_all(&fx.store, key),
            vec![output.clone(), json!({"n": 1})]
        );
    }
    fx.annals().arg("verify").assert().success();
}

/// Streams three lines, one at a time (each its own write), and returns the `u` of the lines
/// written, and what the command said: docs/FORMAT.md, `u` counts the entries before a line
/// that were not known durable when it was written.
fn unsynced_of_streamed_lines(fx: &Fixture, durable: bool) -> (Vec<u64>, String) {
    let key = fx.segment(0);
    let mut cmd = fx.spawnable();
    cmd.arg("append").args(ids(key)).args(["--print", "seqs"]);
    if durable {
        cmd.arg("--durable");
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    for i in 0..3u64 {
        writeln!(stdin, "{{\"n\": {i}}}").unwrap();
        stdin.flush().unwrap();
        // Its sequence number is printed once it is written (and, with --durable, synced).
        let mut seq = String::new();
        stdout.read_line(&mut seq).unwrap();
        assert_eq!(seq.trim(), i.to_string());
    }
    drop(stdin);
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(wait_bounded(&mut child).success(), "{err}");
    let text = std::fs::read_to_string(fx.path(key)).unwrap();
    let unsynced = text
        .lines()
        .skip(1)
        .map(|line| {
            let line: Value = serde_json::from_str(line).unwrap();
            line["u"].as_u64().unwrap_or(0)
        })
        .collect();
    (unsynced, err)
}

#[test]
fn append_durable_syncs_each_write_before_it_reports_it() {
    let fx = Fixture::new();
    // Buffered: every line after the first knows the entries before it are not synced.
    let (buffered, said) = unsynced_of_streamed_lines(&fx, false);
    assert_eq!(buffered, [0, 1, 2], "{said}");
    assert!(!said.contains("durably"), "{said}");
    // Durable: each write was synced before the next, so each line finds all before it durable.
    let (durable, said) = unsynced_of_streamed_lines(&fx, true);
    assert_eq!(durable, [0, 0, 0]);
    assert!(
        said.contains("appended 3 entries durably to segment"),
        "{said}"
    );
}

#[test]
fn append_refuses_an_entry_over_the_store_maximum_without_holding_it() {
    let fx = Fixture::new();
    let key = fx.segment(1);
    let before = fx.snapshot();
    // 80 MiB in one line, over the 64 MiB maximum.
    let mut input = Vec::with_capacity(80 << 20);
    input.extend_from_slice(b"{\"blob\":\"");
    input.resize(80 << 20, b'x');
    input.extend_from_slice(b"\"}\n");
    let out = fx
        .annals()
        .arg("append")
        .args(ids(key))
        .write_stdin(input)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr_of(&out);
    assert!(err.contains("stdin line 1: entry too large"), "{err}");
    assert!(err.contains("limit is 67108864"), "{err}");
    assert_eq!(fx.snapshot(), before);
}

#[test]
fn append_writes_each_line_as_it_arrives() {
    let fx = Fixture::new();
    let key = fx.segment(0);
    let mut child = fx
        .spawnable()
        .arg("append")
        .args(ids(key))
        .args(["--print", "seqs"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    for i in 0..3u64 {
        writeln!(stdin, "{{\"n\": {i}}}").unwrap();
        stdin.flush().unwrap();
        // The entry is in the log while the input is still open.
        let seq = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("no seq printed");
        assert_eq!(seq, i.to_string());
        assert_eq!(count(&fx.store, key), i + 1);
    }
    drop(stdin);
    assert!(wait_bounded(&mut child).success());
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
        .stderr(contains("created it in session"));
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
    // --create with no input makes an empty segment.
    let empty = SegmentId::new();
    fx.annals()
        .args(["append", &s, &empty.to_string(), "--create"])
        .write_stdin("")
        .assert()
        .success();
    assert_eq!(count(&fx.store, (session, empty)), 0);
}

#[test]
fn a_refused_append_creates_no_store_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("new-store");
    let (s, g) = (SessionId::new().to_string(), SegmentId::new().to_string());
    for (input, args) in [
        ("{oops\n", vec!["--create"]),
        ("{oops\n", vec!["--create", "--batch"]),
        ("{\"a\":1}\n", vec![]),
    ] {
        let out = crate::bare()
            .arg("--root")
            .arg(&root)
            .args(["append", &s, &g])
            .args(&args)
            .write_stdin(input)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr_of(&out));
        assert!(!root.exists(), "{args:?} left a store root behind");
    }
    let out = crate::bare()
        .arg("--root")
        .arg(&root)
        .args(["append", "abcd", &g, "--create"])
        .write_stdin("{\"a\":1}\n")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr_of(&out).contains("not a full session id"),
        "{}",
        stderr_of(&out)
    );
    assert!(!root.exists());
    // Accepted input creates it.
    crate::bare()
        .arg("--root")
        .arg(&root)
        .args(["append", &s, &g, "--create"])
        .write_stdin("{\"a\":1}\n")
        .assert()
        .success();
    assert!(root.is_dir());
}

#[test]
fn append_removes_a_torn_tail_like_any_writer() {
    let fx = Fixture::new();
    let key = fx.segment(2);
    tear(&fx.path(key));
    fx.annals()
        .arg("append")
        .args(ids(key))
        .write_stdin("{\"n\":2}\n")
        .assert()
        .success();
    let report = fx.store.verify(key.0, key.1).unwrap();
    assert!(report.is_clean());
    assert_eq!(report.torn_tail, None);
    assert_eq!(count(&fx.store, key), 3);
}

#[test]
fn ctrl_c_stops_a_streaming_append_with_exit_130_and_keeps_what_it_appended() {
    let fx = Fixture::new();
    let key = fx.segment(0);
    let mut child = fx
        .spawnable()
        .arg("append")
        .args(ids(key))
        .args(["--print", "seqs"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut seqs = BufReader::new(child.stdout.take().unwrap()).lines();
    writeln!(stdin, "{{\"n\": 0}}\n{{\"n\": 1}}").unwrap();
    stdin.flush().unwrap();
    assert_eq!(seqs.next().unwrap().unwrap(), "0");
    assert_eq!(seqs.next().unwrap().unwrap(), "1");
    // The input stays open: only Ctrl-C ends it.
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = wait_bounded(&mut child);
    assert_eq!(status.code(), Some(130));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("appended 2 entries"), "{err}");
    assert_eq!(count(&fx.store, key), 2);
    drop(stdin);
}

#[test]
fn truncate_shows_what_it_drops_and_cuts_only_when_confirmed() {
    let fx = Fixture::new();
    let key = fx.segment(10);
    let [_, g] = ids(key);
    let before = fx.snapshot();
    // Not a terminal and no --yes: refused, nothing changed; --dry-run only looks.
    let out = fx
        .annals()
        .args(["truncate", &g, "--keep", "4"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("--yes"), "{}", stderr_of(&out));
    let out = fx
        .annals()
        .args(["truncate", &g, "--keep", "4", "--dry-run"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        stdout_of(&out).contains("entries 4..10 (6)"),
        "{}",
        stdout_of(&out)
    );
    // Beyond the end: a usage error.
    let out = fx
        .annals()
        .args(["truncate", &g, "--keep", "11", "--yes"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert_eq!(
        fx.snapshot(),
        before,
        "nothing may change before confirmation"
    );
    fx.annals()
        .args(["truncate", &g, "--keep", "4", "--yes"])
        .assert()
        .success();
    assert_eq!(
        read_all(&fx.store, key),
        (0..4).map(entry).collect::<Vec<_>>()
    );
    assert_eq!(fx.store.tip(key.0, key.1).unwrap().generation, 1);
    // Keeping everything is nothing to do.
    fx.annals()
        .args(["truncate", &g, "--keep", "4"])
        .assert()
        .success()
        .stdout(contains("nothing to do"));
}

#[test]
fn fork_starts_a_new_segment_from_the_first_entries_and_prints_its_id() {
    let fx = Fixture::new();
    let key = fx.segment(6);
    let [_, g] = ids(key);
    let out = fx
        .annals()
        .args(["fork", &g, "--at", "2"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let fork: SegmentId = stdout_of(&out).trim().parse().unwrap();
    assert_eq!(
        read_all(&fx.store, (key.0, fork)),
        (0..2).map(entry).collect::<Vec<_>>()
    );
    let info = fx.store.list_segments(key.0).unwrap();
    let lineage = info
        .iter()
        .find(|i| i.segment == fork)
        .unwrap()
        .fork
        .unwrap();
    assert_eq!((lineage.segment, lineage.at), (key.1, 2));
    assert_eq!(count(&fx.store, key), 6, "the source is untouched");
    // --into names it; an existing id is refused.
    let into = SegmentId::new().to_string();
    fx.annals()
        .args(["fork", &g, "--into", &into])
        .assert()
        .success();
    assert_eq!(count(&fx.store, (key.0, into.parse().unwrap())), 6);
    let out = fx
        .annals()
        .args(["fork", &g, "--into", &into])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
}
