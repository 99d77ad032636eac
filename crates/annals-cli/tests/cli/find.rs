//! Finding things: `grep`, `tree`, `cat` of a session and of its fork tree, the filters,
//! the output formats and colours; and that none of it writes.

use std::fs;

use annals::{SegmentId, SessionId, Store, StoreExt};
use serde_json::{json, Value};

use crate::{short, snapshot, stderr_of, stdout_of, Fixture};

/// A session with a root segment of 6 entries and a fork at 4 with 2 more; a blob entry.
struct Forked {
    session: SessionId,
    root: SegmentId,
    fork: SegmentId,
}

fn forked(fx: &Fixture) -> Forked {
    let (session, root, fork) = (SessionId::new(), SegmentId::new(), SegmentId::new());
    let entries = vec![
        json!({"role": "system", "text": "be careful"}),
        json!({"role": "user", "text": "find the timeout"}),
        json!({"type": "tool_call", "name": "run", "args": {"cmd": "cargo test"}}),
        json!({"type": "tool_result", "output": format!("{}error: timeout after 2s\n", "ok\n".repeat(3000))}),
        json!({"role": "assistant", "text": "the timeout is too short", "usage": {"input_tokens": 120}}),
        json!({"role": "user", "text": "thanks"}),
    ];
    fx.store.create(session, root, &entries).unwrap();
    fx.store.fork(session, root, 4, fork).unwrap();
    fx.store
        .append_batch(
            session,
            fork,
            &[
                json!({"role": "assistant", "text": "raise the timeout to 10s", "usage": {"input_tokens": 300}}),
                json!({"role": "user", "text": "ok"}),
            ],
        )
        .unwrap();
    fx.store
        .append_trace(session, fork, &json!({"reason": "edit_and_retry", "at": 4}))
        .unwrap();
    Forked {
        session,
        root,
        fork,
    }
}

fn lines(out: &std::process::Output) -> Vec<String> {
    stdout_of(out).lines().map(str::to_owned).collect()
}

#[test]
fn grep_finds_entries_once_across_the_fork_tree_blobs_included() {
    let fx = Fixture::new();
    let f = forked(&fx);
    let out = fx.annals().args(["grep", "timeout"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let found: Vec<(String, String, u64)> = lines(&out)
        .iter()
        .map(|l| {
            let mut parts = l.splitn(4, ':');
            let s = parts.next().unwrap().to_owned();
            let g = parts.next().unwrap().to_owned();
            let seq = parts.next().unwrap().parse().unwrap();
            (s, g, seq)
        })
        .collect();
    let s = short(f.session);
    assert_eq!(
        found,
        vec![
            (s.clone(), short(f.root), 1),
            (s.clone(), short(f.root), 3),
            (s.clone(), short(f.root), 4),
            (s, short(f.fork), 4),
        ],
        "the fork's copied entries 0..4 are its parent's: found once"
    );
    // The blob-kept entry is printed whole when piped.
    assert!(lines(&out)[1].contains("error: timeout after 2s"));
    // --newest: the newest segment whole, prefix included.
    let out = fx
        .annals()
        .args(["grep", "timeout", "--newest"])
        .output()
        .unwrap();
    let text = stdout_of(&out);
    let seqs: Vec<&str> = text.lines().map(|l| l.split(':').nth(2).unwrap()).collect();
    assert_eq!(seqs, vec!["1", "3", "4"]);
}

#[test]
fn grep_json_fixed_strings_case_and_counts() {
    let fx = Fixture::new();
    let f = forked(&fx);
    let out = fx
        .annals()
        .args(["grep", "-F", "error: timeout", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let hits: Vec<Value> = lines(&out)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0]["session"], f.session.to_string());
    assert_eq!(hits[0]["segment"], f.root.to_string());
    assert_eq!(hits[0]["seq"], 3);
    assert_eq!(hits[0]["from_blob"], true);
    assert!(hits[0]["entry"]["output"]
        .as_str()
        .unwrap()
        .ends_with("2s\n"));
    // A regex by default; -F makes it literal.
    assert_eq!(
        lines(
            &fx.annals()
                .args(["grep", "t.meout after"])
                .output()
                .unwrap()
        )
        .len(),
        1
    );
    assert!(fx
        .annals()
        .args(["grep", "-F", "t.meout"])
        .output()
        .unwrap()
        .stdout
        .is_empty());
    // Case.
    let upper = fx.annals().args(["grep", "TIMEOUT"]).output().unwrap();
    assert_eq!(upper.status.code(), Some(1), "no match: exit 1");
    assert_eq!(
        lines(
            &fx.annals()
                .args(["grep", "-i", "TIMEOUT"])
                .output()
                .unwrap()
        )
        .len(),
        4
    );
    assert_eq!(
        lines(
            &fx.annals()
                .args(["grep", "-S", "timeout"])
                .output()
                .unwrap()
        )
        .len(),
        4
    );
    // Counts per segment, files with matches, max count, quiet.
    let counts = lines(
        &fx.annals()
            .args(["grep", "timeout", "-c"])
            .output()
            .unwrap(),
    );
    assert_eq!(
        counts,
        vec![
            format!("{}:{}:3", short(f.session), short(f.root)),
            format!("{}:{}:1", short(f.session), short(f.fork)),
        ]
    );
    assert_eq!(
        lines(
            &fx.annals()
                .args(["grep", "timeout", "-l"])
                .output()
                .unwrap()
        )
        .len(),
        2
    );
    assert_eq!(
        lines(
            &fx.annals()
                .args(["grep", "timeout", "-m", "2"])
                .output()
                .unwrap()
        )
        .len(),
        2
    );
    let quiet = fx
        .annals()
        .args(["grep", "timeout", "-q"])
        .output()
        .unwrap();
    assert!(quiet.status.success() && quiet.stdout.is_empty());
    // A bad regex is a usage error that says how to search for it literally.
    let bad = fx.annals().args(["grep", "(unclosed"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr_of(&bad).contains("-F"), "{}", stderr_of(&bad));
}

#[test]
fn grep_narrows_by_session_fields_sequence_and_trace() {
    let fx = Fixture::new();
    let f = forked(&fx);
    let other = fx.segment(3);
    let everywhere = lines(&fx.annals().args(["grep", "entry number"]).output().unwrap());
    assert_eq!(everywhere.len(), 3);
    let only = fx
        .annals()
        .args(["grep", "timeout", &short(f.session)])
        .output()
        .unwrap();
    assert_eq!(lines(&only).len(), 4);
    let none = fx
        .annals()
        .args(["grep", "timeout", &short(other.0)])
        .output()
        .unwrap();
    assert_eq!(none.status.code(), Some(1));
    // A segment is not a session: said, with its session.
    let seg = fx
        .annals()
        .args(["grep", "timeout", &short(f.fork)])
        .output()
        .unwrap();
    assert_eq!(seg.status.code(), Some(2));
    assert!(
        stderr_of(&seg).contains(&short(f.session)),
        "{}",
        stderr_of(&seg)
    );
    // --where on a dotted path, compared by value.
    let rich = lines(
        &fx.annals()
            .args(["grep", "", "--where", "usage.input_tokens=300"])
            .output()
            .unwrap(),
    );
    assert_eq!(rich.len(), 1);
    assert!(rich[0].contains("raise the timeout"));
    let users = lines(
        &fx.annals()
            .args(["grep", "t", "--where", "role=user", "--where", "text!=ok"])
            .output()
            .unwrap(),
    );
    assert_eq!(users.len(), 2, "{users:?}");
    // --from/--to by seq, and an empty range is an error.
    let ranged = lines(
        &fx.annals()
            .args(["grep", "timeout", "--from", "2", "--to", "3"])
            .output()
            .unwrap(),
    );
    assert_eq!(ranged.len(), 1);
    let backwards = fx
        .annals()
        .args(["grep", "timeout", "--from", "5", "--to", "2"])
        .output()
        .unwrap();
    assert_eq!(backwards.status.code(), Some(2));
    assert!(stderr_of(&backwards).contains("--from 5 is after --to 2"));
    // Traces instead of logs.
    let trace = lines(
        &fx.annals()
            .args(["grep", "edit_and_retry", "--trace"])
            .output()
            .unwrap(),
    );
    assert_eq!(trace.len(), 1);
    assert!(trace[0].starts_with(&format!("{}:{}:0:", short(f.session), short(f.fork))));
}

#[test]
fn time_filters_leave_out_entries_without_a_time_and_say_how_many() {
    let fx = Fixture::new();
    fx.segment(4);
    // Whether this build's files record append times (format v2) or not (v1), the answer
    // is consistent: timed entries are filtered by time, untimed ones left out and counted.
    let out = fx
        .annals()
        .args(["grep", "", "--since", "1h"])
        .output()
        .unwrap();
    let err = stderr_of(&out);
    let hits = lines(&out).len();
    if hits == 0 {
        assert_eq!(out.status.code(), Some(1));
        assert!(err.contains("4 entries without an append time"), "{err}");
    } else {
        assert_eq!(hits, 4, "appended a moment ago");
    }
    let old = fx.annals().args(["cat", "--help"]).output().unwrap();
    assert!(
        stdout_of(&old).contains("format-v1"),
        "documented in --help"
    );
    let until = fx
        .annals()
        .args(["grep", "", "--until", "2000-01-01"])
        .output()
        .unwrap();
    assert_eq!(
        until.status.code(),
        Some(1),
        "nothing was appended before 2000"
    );
    let bad = fx
        .annals()
        .args(["grep", "", "--since", "yesterday"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr_of(&bad).contains("10m"),
        "the accepted forms are named: {}",
        stderr_of(&bad)
    );
    let backwards = fx
        .annals()
        .args([
            "cat",
            "--since",
            "5m",
            "--until",
            "10m",
            &fx.segment(1).1.to_string(),
        ])
        .output()
        .unwrap();
    assert_eq!(backwards.status.code(), Some(2));
}

#[test]
fn cat_of_a_session_prints_its_newest_segment_and_all_prints_the_tree_once() {
    let fx = Fixture::new();
    let f = forked(&fx);
    let out = fx
        .annals()
        .args(["cat", &short(f.session)])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let entries: Vec<Value> = lines(&out)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(entries.len(), 6, "the fork: 4 copied + 2 own");
    assert_eq!(entries[5]["text"], "ok");
    let out = fx
        .annals()
        .args(["cat", &short(f.session), "--all"])
        .output()
        .unwrap();
    let located: Vec<Value> = lines(&out)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let keys: Vec<(String, u64)> = located
        .iter()
        .map(|v| {
            (
                v["segment"].as_str().unwrap().to_owned(),
                v["seq"].as_u64().unwrap(),
            )
        })
        .collect();
    let mut expected: Vec<(String, u64)> = (0..6).map(|s| (f.root.to_string(), s)).collect();
    expected.extend([(f.fork.to_string(), 4), (f.fork.to_string(), 5)]);
    assert_eq!(keys, expected);
    assert_eq!(located[0]["session"], f.session.to_string());
    assert_eq!(located[0]["entry"]["role"], "system");
    // --all cannot be --raw.
    let raw = fx
        .annals()
        .args(["cat", &short(f.session), "--all", "--raw"])
        .output()
        .unwrap();
    assert_eq!(raw.status.code(), Some(2));
}

#[test]
fn cat_filters_and_tail_after_filtering() {
    let fx = Fixture::new();
    let f = forked(&fx);
    let g = short(f.root);
    let texts = |args: &[&str]| -> Vec<String> {
        let out = fx.annals().arg("cat").arg(&g).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr_of(&out));
        lines(&out)
            .iter()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["text"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned()
            })
            .collect()
    };
    assert_eq!(
        texts(&["--where", "role=user"]),
        vec!["find the timeout", "thanks"]
    );
    assert_eq!(
        texts(&["--where", "role=user", "--tail", "1"]),
        vec!["thanks"]
    );
    assert_eq!(
        texts(&["--where", "role=user", "--from", "2"]),
        vec!["thanks"]
    );
    let out = fx
        .annals()
        .args(["cat", &g, "--from", "5", "--to", "2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr_of(&out).contains("--from 5 is after --to 2"));
}

#[test]
fn transcripts_are_one_readable_line_per_entry_and_defuse_escapes() {
    let fx = Fixture::new();
    let (session, segment) = (SessionId::new(), SegmentId::new());
    fx.store
        .create(
            session,
            segment,
            &[
                json!({"role": "user", "content": "line one\nline two"}),
                json!({"type": "tool_result", "output": "\u{1b}[31mred\u{1b}[0m"}),
                json!({"type": "tool_result", "output": "x".repeat(10_000)}),
            ],
        )
        .unwrap();
    let out = fx
        .annals()
        .args(["cat", &short(segment), "--format", "transcript"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = stdout_of(&out);
    let rows: Vec<&str> = text.lines().filter(|l| l.contains('#')).collect();
    assert_eq!(rows.len(), 3, "{text}");
    assert!(
        rows[0].contains("#0") && rows[0].contains("user") && rows[0].contains("line one line two")
    );
    assert!(
        !text.contains('\u{1b}'),
        "no escape reaches the terminal: {text:?}"
    );
    assert!(rows[1].contains("\u{fffd}[31mred"));
    assert!(
        rows[2].len() < 1000 && rows[2].contains("more characters"),
        "{}",
        rows[2]
    );
}

#[test]
fn colours_follow_the_flag_and_no_color_and_never_go_into_a_pipe_by_default() {
    let fx = Fixture::new();
    let f = forked(&fx);
    let has_escape = |args: &[&str], no_color: bool| {
        let mut cmd = fx.annals();
        if !no_color {
            cmd.env_remove("NO_COLOR");
        }
        let out = cmd.args(args).output().unwrap();
        out.stdout.contains(&0x1b)
    };
    let s = short(f.session);
    assert!(
        !has_escape(&["grep", "timeout"], false),
        "a pipe gets no colour"
    );
    assert!(
        has_escape(&["--color", "always", "grep", "timeout"], true),
        "always wins over NO_COLOR"
    );
    assert!(has_escape(&["grep", "timeout", "--color", "always"], false));
    assert!(!has_escape(&["--color", "never", "ls", &s], false));
    assert!(has_escape(
        &["--color", "always", "cat", &s, "--format", "transcript"],
        false
    ));
    assert!(
        !has_escape(&["--color", "always", "cat", &s], false),
        "jsonl stays plain JSON"
    );
    let bad = fx
        .annals()
        .args(["--color", "sometimes", "ls"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn tree_shows_lineage_counts_why_and_the_newest() {
    let fx = Fixture::new();
    let f = forked(&fx);
    let second = SegmentId::new();
    fx.store.fork(f.session, f.fork, 5, second).unwrap();
    let out = fx
        .annals()
        .args(["tree", &short(f.session)])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let text = stdout_of(&out);
    let rows: Vec<&str> = text.lines().collect();
    assert!(rows[0].contains("3 segments"), "{text}");
    assert!(
        rows[1].starts_with(&short(f.root)) && rows[1].contains("6 entries"),
        "{text}"
    );
    assert!(
        rows[2].starts_with(&format!("└── {}", short(f.fork))),
        "{text}"
    );
    assert!(rows[2].contains("forked at 4, 6 entries (2 own)"), "{text}");
    assert!(rows[2].contains("why: edit_and_retry"), "{text}");
    assert!(
        rows[3].starts_with(&format!("    └── {}", short(second))),
        "{text}"
    );
    assert!(
        rows[3].contains("newest") && !rows[2].contains("newest"),
        "{text}"
    );
    let out = fx
        .annals()
        .args(["tree", &short(f.session), "--json"])
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let segs = doc["segments"].as_array().unwrap();
    assert_eq!(segs[1]["parent"], f.root.to_string());
    assert_eq!(segs[1]["at"], 4);
    assert_eq!(segs[1]["own_entries"], 2);
    assert_eq!(segs[2]["newest"], true);
    // ls SESSION shows the same lineage.
    let ls = stdout_of(
        &fx.annals()
            .args(["ls", &short(f.session)])
            .output()
            .unwrap(),
    );
    assert!(ls.contains(&format!("    {}", short(second))), "{ls}");
}

#[test]
fn every_read_only_command_leaves_every_byte_inode_and_mtime_alone() {
    let fx = Fixture::new();
    let f = forked(&fx);
    let meta = annals::AttachmentMeta {
        media_type: "text/plain".into(),
        label: Some("notes.txt".into()),
        ..Default::default()
    };
    let put = fx
        .store
        .put_attachment(f.session, b"some notes", &meta)
        .unwrap();
    crate::tear(&fx.path((f.session, f.fork)));
    let out_dir = tempfile::tempdir().unwrap();
    let export = out_dir.path().join("x.annals");
    let got = out_dir.path().join("got.txt");
    let before = fx.snapshot();
    let s = short(f.session);
    let id = put.id.to_string();
    let runs: Vec<Vec<String>> = vec![
        vec!["ls".into()],
        vec!["ls".into(), s.clone()],
        vec!["ls".into(), s.clone(), "--json".into()],
        vec!["tree".into(), s.clone()],
        vec!["tree".into(), s.clone(), "--json".into()],
        vec!["cat".into(), s.clone(), "--all".into()],
        vec![
            "cat".into(),
            s.clone(),
            "--format".into(),
            "transcript".into(),
        ],
        vec![
            "cat".into(),
            s.clone(),
            "--where".into(),
            "role=user".into(),
            "--tail".into(),
            "1".into(),
        ],
        vec!["grep".into(), "timeout".into()],
        vec!["grep".into(), "".into(), "--trace".into(), "--json".into()],
        vec!["grep".into(), "x".into(), "--since".into(), "1h".into()],
        vec!["verify".into()],
        vec![
            "verify".into(),
            fx.path((f.session, f.root)).display().to_string(),
        ],
        vec!["stats".into(), "--json".into()],
        vec![
            "export".into(),
            s.clone(),
            "-o".into(),
            export.display().to_string(),
        ],
        vec!["attachments".into(), "list".into(), s.clone()],
        vec![
            "attachments".into(),
            "get".into(),
            s.clone(),
            id[..8].to_owned(),
            "-o".into(),
            got.display().to_string(),
        ],
        vec!["repair".into(), short(f.fork), "--dry-run".into()],
    ];
    for args in &runs {
        let out = fx.annals().args(args).output().unwrap();
        assert!(
            out.status.code().is_some_and(|c| c <= 1),
            "`annals {}`: {}",
            args.join(" "),
            stderr_of(&out)
        );
        assert_eq!(
            fx.snapshot(),
            before,
            "`annals {}` changed the store",
            args.join(" ")
        );
    }
    assert_eq!(fs::read(&got).unwrap(), b"some notes");
    // Importing it back into the store it came from is refused, and changes nothing.
    for dry in [true, false] {
        let mut cmd = fx.annals();
        cmd.arg("import").arg(&export);
        if dry {
            cmd.arg("--dry-run");
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert!(
            stderr_of(&out).contains("already exists"),
            "{}",
            stderr_of(&out)
        );
        assert_eq!(fx.snapshot(), before);
    }
    // And into an empty store, a dry run checks it and writes nothing.
    let empty = tempfile::tempdir().unwrap();
    let root = empty.path().join("store");
    let out = crate::bare()
        .arg("--root")
        .arg(&root)
        .args(["import", "--dry-run", &export.display().to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        stdout_of(&out).contains("checks out"),
        "{}",
        stdout_of(&out)
    );
    assert!(!root.exists(), "a dry run creates no store");
    assert_eq!(snapshot(empty.path()).len(), 1);
}
