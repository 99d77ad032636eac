//! Read-only commands on healthy stores: ls, cat, verify, stats, gc, ids, roots, exit codes.

use std::fs;
use std::io::{BufRead, BufReader};
use std::process::Stdio;

use annals::{SegmentId, SessionId, Store, StoreExt};
use predicates::prelude::*;
use predicates::str::contains;
use serde_json::{json, Value};

use crate::{bare, count, entry, read_all, short, stderr_of, stdout_of, Fixture};

#[test]
fn ls_lists_sessions_newest_first_with_their_totals() {
    let fx = Fixture::new();
    let older = fx.segment(3);
    let newer = fx.segment(5);
    fx.store
        .fork(newer.0, newer.1, 2, SegmentId::new())
        .unwrap();
    let out = fx.annals().arg("ls").output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let text = stdout_of(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("SESSION"), "{text}");
    assert!(lines[1].starts_with(&short(newer.0)), "{text}");
    assert!(lines[2].starts_with(&short(older.0)), "{text}");
    assert!(
        text.lines().all(|l| l.chars().count() <= 80),
        "fits 80 columns: {text}"
    );
    let cols: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        &cols[1..3],
        &["2", "7"],
        "2 segments, 5 + 2 entries: {text}"
    );
}

#[test]
fn ls_json_parses_and_matches_the_store() {
    let fx = Fixture::new();
    let a = fx.segment(4);
    let out = fx.annals().args(["ls", "--json"]).output().unwrap();
    assert!(out.status.success());
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc[0]["session"], a.0.to_string());
    assert_eq!(doc[0]["segments"], 1);
    assert_eq!(doc[0]["entries"], 4);
    assert_eq!(doc[0]["bytes"], fs::metadata(fx.path(a)).unwrap().len());

    let empty = Fixture::new();
    let out = empty.annals().args(["ls", "--json"]).output().unwrap();
    assert!(out.status.success());
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc, serde_json::json!([]));
}

#[test]
fn ls_session_shows_segments_with_generation_and_lineage() {
    let fx = Fixture::new();
    let (session, source) = fx.segment(6);
    let fork = SegmentId::new();
    fx.store.fork(session, source, 4, fork).unwrap();
    fx.store.truncate(session, source, 5).unwrap();
    let out = fx
        .annals()
        .args(["ls", &session.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let text = stdout_of(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].contains("GEN") && lines[0].contains("LINEAGE"),
        "{text}"
    );
    // The fork is indented under its source, its lineage said, the newest marked.
    let source_at = lines
        .iter()
        .position(|l| l.starts_with(&short(source)))
        .unwrap();
    let fork_line = lines[source_at + 1];
    assert!(
        fork_line.starts_with(&format!("  {}", short(fork))),
        "{text}"
    );
    assert!(fork_line.contains("forked at 4, newest"), "{text}");
    assert!(
        text.contains("GEN: rewrite generation"),
        "GEN is explained: {text}"
    );
    assert!(text.lines().all(|l| l.chars().count() <= 80), "{text}");
    let source_cols: Vec<String> = lines[source_at]
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        &source_cols[1..3],
        &["5", "1"],
        "5 entries, generation 1: {text}"
    );

    let out = fx
        .annals()
        .args(["ls", &session.to_string(), "--json"])
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let segs = doc["segments"].as_array().unwrap();
    let f = segs
        .iter()
        .find(|s| s["segment"] == fork.to_string())
        .unwrap();
    assert_eq!(f["fork"]["segment"], source.to_string());
    assert_eq!(f["fork"]["at"], 4);
    assert_eq!(f["damage"], Value::Null);
}

#[test]
fn cat_prints_one_compact_object_per_line_when_piped() {
    let fx = Fixture::new();
    let key = fx.segment(3);
    let out = fx
        .annals()
        .args(["cat", &key.1.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let lines: Vec<Value> = stdout_of(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines, read_all(&fx.store, key));
}

#[test]
fn cat_pretty_keeps_key_order_and_seq_prefixes_lines() {
    let fx = Fixture::new();
    let (session, segment) = (SessionId::new(), SegmentId::new());
    let raw = annals::RawEntry::from_json(r#"{"zeta":1,"alpha":{"b":2,"a":[]}}"#).unwrap();
    fx.store.create_segment(session, segment, &[raw]).unwrap();
    let out = fx
        .annals()
        .args(["cat", &segment.to_string(), "--pretty"])
        .output()
        .unwrap();
    assert_eq!(
        stdout_of(&out),
        "{\n  \"zeta\": 1,\n  \"alpha\": {\n    \"b\": 2,\n    \"a\": []\n  }\n}\n"
    );
    let out = fx
        .annals()
        .args(["cat", &segment.to_string(), "--seq"])
        .output()
        .unwrap();
    assert_eq!(
        stdout_of(&out),
        "0\t{\"zeta\":1,\"alpha\":{\"b\":2,\"a\":[]}}\n"
    );
}

#[test]
fn cat_raw_refuses_format_2_lines_instead_of_printing_lines_the_file_does_not_hold() {
    // A format-2 line records its write's marks, which a replayed entry does not carry: a
    // re-framed line could differ from the stored one, so --raw says so and prints nothing.
    let fx = Fixture::new();
    let key = fx.segment(4);
    let out = fx
        .annals()
        .args(["cat", &key.1.to_string(), "--raw"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--raw re-frames format-1 lines only"),
        "{stderr}"
    );
}

#[test]
fn cat_selects_by_sequence_number_and_tail() {
    let fx = Fixture::new();
    let key = fx.segment(10);
    let seqs = |args: &[&str]| -> Vec<u64> {
        let out = fx
            .annals()
            .arg("cat")
            .arg(key.1.to_string())
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
        stdout_of(&out)
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["n"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    };
    assert_eq!(seqs(&["--from", "7"]), vec![7, 8, 9]);
    assert_eq!(seqs(&["--from", "2", "--to", "4"]), vec![2, 3, 4]);
    assert_eq!(seqs(&["--to", "1"]), vec![0, 1]);
    assert_eq!(seqs(&["--tail", "3"]), vec![7, 8, 9]);
    assert_eq!(seqs(&["--tail", "50"]).len(), 10);
    assert!(seqs(&["--tail", "0"]).is_empty());
    assert!(seqs(&["--from", "10"]).is_empty());
}

#[test]
fn segments_are_found_by_full_id_short_end_unique_start_or_file_path() {
    let fx = Fixture::new();
    let key = fx.segment(2);
    let full = key.1.to_string();
    let other = fx.segment(1);
    // The start of a v7 id is a timestamp: ids made together share it, so the shortest
    // unique start is long. Its end is random: the 12 digits tables show always work.
    let shared = full
        .chars()
        .zip(other.1.to_string().chars())
        .take_while(|(a, b)| a == b)
        .count();
    let start = &full[..(shared + 1).max(4)];
    let end = short(key.1);
    let path = fx.path(key).display().to_string();
    let no_hyphens = full.replace('-', "");
    let upper = end.to_uppercase();
    for arg in [
        full.as_str(),
        &end,
        &end[6..],
        &upper,
        &no_hyphens,
        path.as_str(),
    ] {
        let out = fx.annals().args(["cat", arg]).output().unwrap();
        assert!(out.status.success(), "{arg}: {}", stderr_of(&out));
        assert_eq!(stdout_of(&out).lines().count(), 2, "{arg}");
    }
    // A start shared with the session's own id names two things: refused, both named.
    let out = fx.annals().args(["cat", start]).output().unwrap();
    if out.status.success() {
        assert_eq!(stdout_of(&out).lines().count(), 2);
    } else {
        let err = stderr_of(&out);
        assert!(err.contains("matches 2 sessions and segments"), "{err}");
        assert!(err.contains(&format!("segment {}", short(key.1))), "{err}");
    }
    // With --session too.
    fx.annals()
        .args(["cat", &full, "--session", &short(key.0)])
        .assert()
        .success();
}

#[test]
fn an_ambiguous_id_is_refused_with_the_candidates_and_a_non_hex_one_is_not_a_hex_id() {
    let fx = Fixture::new();
    let a = fx.segment(1);
    let b = fx.segment(1);
    let (sa, sb) = (a.1.to_string(), b.1.to_string());
    let common: String = sa
        .chars()
        .zip(sb.chars())
        .take_while(|(x, y)| x == y)
        .map(|(x, _)| x)
        .collect();
    assert!(
        common.len() >= 4,
        "v7 ids made together share a time prefix"
    );
    let out = fx.annals().args(["cat", &common[..4]]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr_of(&out);
    assert!(err.contains("matches 4 sessions and segments"), "{err}");
    assert!(err.contains("end"), "the error says ends work: {err}");
    let out = fx
        .annals()
        .args(["cat", &common[..4], "--session", &short(a.0)])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    for (bad, says) in [
        ("xyz!", "is not a hex id"),
        ("zzzzzzzz", "is not a hex id"),
        ("a1", "is too short"),
        ("0123456789abcdef0123456789abcdef01", "longer than a UUID"),
    ] {
        let out = fx.annals().args(["cat", bad]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let err = stderr_of(&out);
        assert!(err.contains(says), "{bad}: {err}");
        assert!(
            err.contains("12 digits"),
            "{bad}: the short form is named: {err}"
        );
    }
}

#[test]
fn missing_things_exit_1_and_bad_usage_exits_2_with_one_line() {
    let fx = Fixture::new();
    fx.segment(1);
    let missing = SegmentId::new().to_string();
    let out = fx.annals().args(["cat", &missing]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("annals: no session or segment matches"),
        "{err}"
    );

    let out = fx
        .annals()
        .args(["ls", &SessionId::new().to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_of(&out).contains("no session or segment matches"));

    fx.annals().args(["cat", "xyz!"]).assert().code(2);
    for args in [
        &["ls", "--bogus"][..],
        &["frobnicate"],
        &["cat"],
        &["verfy"],
    ] {
        let out = fx.annals().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = stderr_of(&out);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("annals: "), "{err}");
        assert!(err.contains("--help"), "{err}");
    }
    let err = stderr_of(&fx.annals().arg("verfy").output().unwrap());
    assert!(err.contains("'verify'"), "clap's suggestion is kept: {err}");
}

#[test]
fn a_missing_store_is_reported_and_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("nowhere");
    for cmd in [&["ls"][..], &["verify"], &["stats"], &["cat", "0197abcd"]] {
        let out = bare().arg("--root").arg(&root).args(cmd).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{cmd:?}");
        let err = stderr_of(&out);
        assert!(err.contains("no annals store here"), "{err}");
        assert!(err.contains("--root"), "{err}");
    }
    assert!(
        !root.exists(),
        "read-only commands must not create the root"
    );
}

#[test]
fn the_root_comes_from_the_flag_then_the_environment_then_the_default() {
    let fx = Fixture::new();
    let key = fx.segment(1);
    bare()
        .env("ANNALS_ROOT", fx.root())
        .arg("ls")
        .assert()
        .success()
        .stdout(contains(short(key.0)));
    // The flag wins over the environment.
    let elsewhere = tempfile::tempdir().unwrap();
    bare()
        .env("ANNALS_ROOT", elsewhere.path())
        .arg("--root")
        .arg(fx.root())
        .arg("ls")
        .assert()
        .success()
        .stdout(contains(short(key.0)));
    // The default is ./annals-store, relative to the working directory.
    let cwd = tempfile::tempdir().unwrap();
    let out = bare().current_dir(cwd.path()).arg("ls").output().unwrap();
    assert!(
        stderr_of(&out).contains("./annals-store"),
        "{}",
        stderr_of(&out)
    );
    let here = annals::FsStore::open(cwd.path().join("annals-store")).unwrap();
    let s = SessionId::new();
    annals::StoreExt::create(&here, s, SegmentId::new(), &[entry(0)]).unwrap();
    bare()
        .current_dir(cwd.path())
        .arg("ls")
        .assert()
        .success()
        .stdout(contains(short(s)));
}

#[test]
fn foreign_files_in_the_root_and_session_directories_are_ignored() {
    let fx = Fixture::new();
    let key = fx.segment(3);
    let root = fx.root();
    fs::write(root.join("README.txt"), "not ours").unwrap();
    fs::create_dir(root.join("not-a-session")).unwrap();
    fs::write(root.join("not-a-session").join("x.jsonl"), "junk\n").unwrap();
    let session_dir = fx.path(key).parent().unwrap().to_path_buf();
    fs::write(session_dir.join("notes.txt"), "mine").unwrap();
    fs::write(session_dir.join("not-an-id.jsonl"), "junk\n").unwrap();
    let before = fx.snapshot();

    // A header, one row, the legend.
    let out = fx.annals().arg("ls").output().unwrap();
    assert!(out.status.success());
    assert_eq!(stdout_of(&out).lines().count(), 3, "{}", stdout_of(&out));
    let out = fx
        .annals()
        .args(["ls", &key.0.to_string()])
        .output()
        .unwrap();
    assert_eq!(stdout_of(&out).lines().count(), 4, "{}", stdout_of(&out));
    fx.annals()
        .arg("verify")
        .assert()
        .success()
        .stdout(contains("1 segment with 3 entries"));
    fx.annals().arg("stats").assert().success();
    assert_eq!(fx.snapshot(), before);
}

#[test]
fn verify_of_a_healthy_store_is_clean_and_its_json_parses() {
    let fx = Fixture::new();
    let a = fx.segment(5);
    let b = fx.segment(2);
    annals::StoreExt::append_trace(&fx.store, b.0, b.1, &serde_json::json!({"ev": 1})).unwrap();
    let out = fx.annals().arg("verify").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stdout_of(&out));
    let text = stdout_of(&out);
    assert!(
        text.contains("verified 2 sessions: 2 segments with 7 entries"),
        "trace events are counted apart: {text}"
    );
    assert!(text.contains("1 trace with 1 event"), "{text}");
    assert!(text.trim_end().ends_with("clean"), "{text}");

    let out = fx.annals().args(["verify", "--json"]).output().unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["summary"]["clean"], true);
    assert_eq!(doc["summary"]["segments"], 2);
    assert_eq!(doc["summary"]["entries"], 7);
    assert_eq!(doc["summary"]["trace_events"], 1);
    assert_eq!(doc["files"].as_array().unwrap().len(), 3);

    // One session, one segment.
    let out = fx
        .annals()
        .args(["verify", &a.0.to_string(), "--json"])
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["summary"]["entries"], 5);
    let out = fx
        .annals()
        .args(["verify", &b.1.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = stdout_of(&out);
    assert!(
        text.contains("1 segment with 2 entries") && text.contains("1 trace with 1 event"),
        "{text}"
    );
}

#[test]
fn stats_counts_everything_and_lists_the_largest() {
    let fx = Fixture::new();
    fx.segment(2);
    let big = fx.segment(40);
    let out = fx
        .annals()
        .args(["stats", "--json", "--top", "1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["sessions"], 2);
    assert_eq!(doc["segments"], 2);
    assert_eq!(doc["entries"], 42);
    assert_eq!(doc["largest"].as_array().unwrap().len(), 1);
    assert_eq!(doc["largest"][0]["segment"], big.1.to_string());
    assert_eq!(doc["damaged_count"], 0);
    fx.annals()
        .arg("stats")
        .assert()
        .success()
        .stdout(contains("segments     2 (0 forked): 42 entries"));
}

/// Segments (and their entries), traces apart, blobs, bytes: what both commands report.
fn verify_and_stats(fx: &Fixture) -> (Value, Value) {
    let out = fx.annals().args(["verify", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", stdout_of(&out));
    let verify: Value = serde_json::from_slice(&out.stdout).unwrap();
    let out = fx.annals().args(["stats", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    (
        verify["summary"].clone(),
        serde_json::from_slice(&out.stdout).unwrap(),
    )
}

#[test]
fn stats_and_verify_agree_on_counts_and_sizes_with_blobs_and_traces_apart() {
    let fx = Fixture::new();
    let (session, segment, _) = with_blob(&fx);
    fx.segment(7);
    for i in 0..3 {
        annals::StoreExt::append_trace(&fx.store, session, segment, &json!({"event": i})).unwrap();
    }
    let meta = annals::AttachmentMeta {
        media_type: "image/png".into(),
        ..Default::default()
    };
    fx.store
        .put_attachment(session, &[7u8; 10_000], &meta)
        .unwrap();
    let (v, s) = verify_and_stats(&fx);
    for (vk, sk) in [
        ("segments", "segments"),
        ("entries", "entries"),
        ("segment_bytes", "segment_bytes"),
        ("traces", "traces"),
        ("trace_bytes", "trace_bytes"),
        ("blobs", "blobs"),
        ("blob_bytes", "blob_bytes"),
        ("bytes", "bytes"),
    ] {
        assert_eq!(v[vk], s[sk], "{vk}: verify {v} / stats {s}");
    }
    assert_eq!(v["entries"], 10, "3 + 7 entries; trace events apart");
    assert_eq!(v["trace_events"], 3);
    assert_eq!(v["blobs"], 2, "the large entry and the attachment");
    assert!(v["blob_bytes"].as_u64().unwrap() > 10_000 + 30_000, "{v}");
    assert_eq!(s["attachments"], 1);
}

/// A segment holding a small entry, a large one (kept as a blob) and a small one.
fn with_blob(fx: &Fixture) -> (SessionId, SegmentId, serde_json::Value) {
    let (session, segment) = (SessionId::new(), SegmentId::new());
    let large = json!({"role": "tool", "output": "line of tool output\n".repeat(2000)});
    fx.store
        .create(
            session,
            segment,
            &[json!({"n": 0}), large.clone(), json!({"n": 2})],
        )
        .unwrap();
    (session, segment, large)
}

#[test]
fn cat_reinflates_blobs_and_no_blobs_prints_their_references() {
    let fx = Fixture::new();
    let (_, segment, large) = with_blob(&fx);
    let out = fx
        .annals()
        .args(["cat", &segment.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[1], large);

    let out = fx
        .annals()
        .args(["cat", &segment.to_string(), "--no-blobs"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let second: serde_json::Value = serde_json::from_str(text.lines().nth(1).unwrap()).unwrap();
    assert!(
        second["annals_blob"]["sha256"].as_str().unwrap().len() == 64,
        "{second}"
    );
}

#[test]
fn cat_raw_refuses_format_2_blob_lines_too() {
    let fx = Fixture::new();
    let (_, segment, _) = with_blob(&fx);
    let out = fx
        .annals()
        .args(["cat", &segment.to_string(), "--raw"])
        .output()
        .unwrap();
    // Format 2 (what new files get): refused, as for inline lines.
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
}

#[test]
fn gc_reports_then_removes_blobs_a_truncate_orphaned() {
    let fx = Fixture::new();
    let (session, segment, _) = with_blob(&fx);
    fx.annals()
        .arg("gc")
        .assert()
        .success()
        .stdout(contains("removed 0 blob(s)"));
    fx.store.truncate(session, segment, 1).unwrap();
    let before = fx.snapshot();
    fx.annals()
        .args(["gc", "--dry-run"])
        .assert()
        .success()
        .stdout(contains("would remove 1 blob(s)"));
    assert_eq!(fx.snapshot(), before, "a dry run changes nothing");
    fx.annals()
        .args(["gc", &session.to_string()])
        .assert()
        .success()
        .stdout(contains("removed 1 blob(s)"));
    fx.annals().arg("verify").assert().success();
}

#[test]
fn verify_names_a_damaged_blob_and_exits_1() {
    let fx = Fixture::new();
    let (session, _, _) = with_blob(&fx);
    // The pack's one record: flip a byte of the blob's bytes (after its header line).
    let pack = fx
        .root()
        .join(session.to_string())
        .join("blobs")
        .join("pack");
    let mut bytes = fs::read(&pack).unwrap();
    let header_end = bytes.iter().position(|&b| b == b'\n').unwrap();
    bytes[header_end + 100] ^= 1;
    fs::write(&pack, bytes).unwrap();
    fx.annals()
        .arg("verify")
        .assert()
        .code(1)
        .stdout(contains("blob").and(contains("checksum")));
}

#[test]
fn a_closed_stdout_ends_cat_quietly_with_success() {
    let fx = Fixture::new();
    let key = fx.segment(20_000);
    let mut child = fx
        .spawnable()
        .args(["cat", &key.1.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    assert!(first.contains("\"n\":0"));
    drop(reader);
    let status = crate::follow::wait_bounded(&mut child);
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(err.is_empty(), "no message for a closed pipe: {err}");
}

#[test]
fn help_documents_root_default_and_exit_codes() {
    let out = bare().arg("--help").output().unwrap();
    let text = stdout_of(&out);
    assert!(text.contains("./annals-store"), "{text}");
    assert!(text.contains("ANNALS_ROOT"), "{text}");
    assert!(text.contains("Exit codes"), "{text}");
    assert!(text.contains("outside the root is refused"), "{text}");
    assert!(text.contains("last 12 digits"), "{text}");
    for cmd in [
        "ls",
        "tree",
        "cat",
        "follow",
        "grep",
        "verify",
        "repair",
        "append",
        "stats",
        "gc",
        "export",
        "import",
        "attachments",
        "demo",
        "completions",
        "man",
    ] {
        bare().args([cmd, "--help"]).assert().success();
    }
    assert!(!text.contains("__demo-worker"), "the worker is hidden");
}

#[test]
fn demo_writes_a_store_that_verifies_clean() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("demo");
    for run in 0..2 {
        let out = bare()
            .arg("--root")
            .arg(&root)
            .args(["demo", "--workers", "3", "--sessions-per-worker", "4"])
            .output()
            .unwrap();
        let text = stdout_of(&out);
        assert_eq!(
            out.status.code(),
            Some(0),
            "run {run}: {text}{}",
            stderr_of(&out)
        );
        assert!(text.contains("every appended entry is there"), "{text}");
        for shown in [" ls", " tree ", "| jq", " grep ", " follow ", " verify"] {
            assert!(text.contains(shown), "{shown}: {text}");
        }
    }
    let out = bare()
        .arg("--root")
        .arg(&root)
        .arg("verify")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stdout_of(&out));
    let store = annals::FsStore::open(&root).unwrap();
    let sessions = store.list_sessions().unwrap();
    assert_eq!(
        sessions.len(),
        2 * (3 * 4 + 1),
        "two runs of 12 sessions plus a shared one"
    );
    let mut forks = 0;
    for s in sessions {
        for info in store.list_segments(s).unwrap() {
            assert!(info.damage.is_none());
            assert_eq!(count(&store, (s, info.segment)), info.tip.count);
            forks += usize::from(info.fork.is_some());
        }
    }
    assert!(
        forks >= 2 * 3,
        "every worker edits and retries in its first session: {forks} forks"
    );
}
