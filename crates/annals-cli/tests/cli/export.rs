//! `annals export` and `annals import`: a session into one file and back, exactly; a damaged,
//! cut-short, edited or conflicting file refused with the place and reason, nothing written.

use std::fs;
use std::path::{Path, PathBuf};

use annals::{AttachmentMeta, FsStore, ReplayOptions, SegmentId, SessionId, Store, StoreExt};
use serde_json::json;

use crate::{bare, short, snapshot, stderr_of, stdout_of, Fixture};

/// Everything a store holds of a session, as comparable values.
fn contents(store: &FsStore, session: SessionId) -> Vec<String> {
    let mut out = Vec::new();
    let mut list = store.list_segments(session).unwrap();
    list.sort_by_key(|i| i.segment);
    for info in list {
        out.push(format!(
            "segment {} fork {:?} count {}",
            info.segment, info.fork, info.tip.count
        ));
        for entry in store.read_raw(session, info.segment).unwrap() {
            out.push(entry.as_str().to_owned());
        }
        store
            .replay_trace_raw(session, info.segment, &ReplayOptions::strict(), &mut |e| {
                out.push(format!("trace {}", e.json().unwrap()));
                Ok(std::ops::ControlFlow::Continue(()))
            })
            .unwrap();
    }
    for a in store.list_attachments(session).unwrap() {
        let bytes = store.get_blob(session, &a.id).unwrap();
        out.push(format!("attachment {} {:?} {}", a.id, a.meta, bytes.len()));
    }
    out
}

/// A session with a fork, a trace, an entry kept as a blob and a 2.5 MiB attachment.
fn rich(fx: &Fixture) -> SessionId {
    let (session, root, fork) = (SessionId::new(), SegmentId::new(), SegmentId::new());
    let entries: Vec<_> = (0..8)
        .map(|i| json!({"n": i, "text": format!("entry {i} é ✓ \"quoted\"\n"), "f": 1.50}))
        .collect();
    fx.store.create(session, root, &entries).unwrap();
    fx.store
        .append(session, root, &json!({"output": "big ".repeat(20_000)}))
        .unwrap();
    fx.store.fork(session, root, 5, fork).unwrap();
    fx.store.append(session, fork, &json!({"n": 50})).unwrap();
    fx.store
        .append_trace(session, fork, &json!({"reason": "edit_and_retry"}))
        .unwrap();
    fx.store
        .append_trace(session, root, &json!({"ev": 1}))
        .unwrap();
    let image: Vec<u8> = (0..(5 << 19)).map(|i: u32| (i % 251) as u8).collect();
    let meta = AttachmentMeta {
        media_type: "image/png".into(),
        label: Some("screen.png".into()),
        width: Some(640),
        height: Some(480),
    };
    fx.store.put_attachment(session, &image, &meta).unwrap();
    session
}

fn export(fx: &Fixture, sessions: &[SessionId], file: &Path) {
    let out = fx
        .annals()
        .arg("export")
        .args(sessions.iter().map(|s| short(*s)))
        .arg("-o")
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
}

fn import(root: &Path, file: &Path) -> std::process::Output {
    bare()
        .arg("--root")
        .arg(root)
        .arg("import")
        .arg(file)
        .output()
        .unwrap()
}

fn scratch() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("session.annals");
    let root = dir.path().join("other");
    (dir, file, root)
}

#[test]
fn a_session_exported_and_imported_elsewhere_is_the_same_session() {
    let fx = Fixture::new();
    let a = rich(&fx);
    let b = fx.segment(3).0;
    let (_dir, file, root) = scratch();
    export(&fx, &[a, b], &file);
    // Every line is JSON with its CRC first; the attachment is in chunks of at most 1 MiB.
    let text = fs::read_to_string(&file).unwrap();
    for line in text.lines() {
        assert!(
            line.starts_with("{\"crc\":\""),
            "{}",
            &line[..40.min(line.len())]
        );
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["k"].is_string());
        assert!(line.len() < (3 << 20), "bounded lines");
    }
    assert!(
        text.lines()
            .filter(|l| l.contains("\"k\":\"chunk\""))
            .count()
            >= 3
    );
    let out = import(&root, &file);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        stdout_of(&out).contains("imported 2 sessions"),
        "{}",
        stdout_of(&out)
    );
    let other = FsStore::open(&root).unwrap();
    assert_eq!(contents(&other, a), contents(&fx.store, a));
    assert_eq!(contents(&other, b), contents(&fx.store, b));
    // The imported store verifies clean, blobs included.
    bare()
        .arg("--root")
        .arg(&root)
        .arg("verify")
        .assert()
        .success();
    // The fork was made as a fork: its lineage is there.
    let forks = other
        .list_segments(a)
        .unwrap()
        .into_iter()
        .filter(|i| i.fork.is_some())
        .count();
    assert_eq!(forks, 1);
    // A second import of the same file conflicts, and writes nothing.
    let before = snapshot(&root);
    let again = import(&root, &file);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        stderr_of(&again).contains("already exists"),
        "{}",
        stderr_of(&again)
    );
    assert_eq!(snapshot(&root), before);
}

#[test]
fn a_fork_whose_parent_changed_since_is_exported_whole_and_imported_without_lineage() {
    let fx = Fixture::new();
    let (session, root_seg) = fx.segment(6);
    let fork = SegmentId::new();
    fx.store.fork(session, root_seg, 4, fork).unwrap();
    fx.store.truncate(session, root_seg, 2).unwrap();
    let (_dir, file, root) = scratch();
    export(&fx, &[session], &file);
    let out = import(&root, &file);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("without its lineage"),
        "{}",
        stderr_of(&out)
    );
    let other = FsStore::open(&root).unwrap();
    assert_eq!(
        other.read_raw(session, fork).unwrap(),
        fx.store.read_raw(session, fork).unwrap()
    );
}

/// Rewrites line `n` (1-based) of the file with `edit`.
fn edit_line(file: &Path, n: usize, edit: impl FnOnce(&str) -> Option<String>) {
    let text = fs::read_to_string(file).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    match edit(&lines[n - 1]) {
        Some(new) => lines[n - 1] = new,
        None => {
            lines.remove(n - 1);
        }
    }
    fs::write(file, lines.join("\n") + "\n").unwrap();
}

/// Re-frames a line's CRC after an edit, as a careful forger would.
fn reframe(line: &str) -> String {
    let body = &line[18..];
    format!("{{\"crc\":\"{:08x}\",{body}", crc32(body.as_bytes()))
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn a_damaged_cut_short_or_edited_file_is_refused_with_where_and_why_and_nothing_is_written() {
    let fx = Fixture::new();
    let session = rich(&fx);
    let (dir, file, root) = scratch();
    export(&fx, &[session], &file);
    let good = fs::read(&file).unwrap();
    let entry_line = String::from_utf8(good.clone())
        .unwrap()
        .lines()
        .position(|l| l.contains("\"k\":\"e\""))
        .unwrap()
        + 1;
    type Damage = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Damage, &str)> = vec![
        (
            "a flipped byte",
            Box::new(move |f: &Path| {
                edit_line(f, entry_line, |l| Some(l.replacen("entry", "entrY", 1)))
            }),
            "CRC mismatch",
        ),
        (
            "a line removed (CRCs all fine)",
            Box::new(move |f: &Path| edit_line(f, entry_line + 1, |_| None)),
            "where entry",
        ),
        (
            "an entry changed and re-framed",
            Box::new(move |f: &Path| {
                edit_line(f, entry_line, |l| {
                    Some(reframe(&l.replacen("entry", "entrY", 1)))
                })
            }),
            "lines were lost, added or changed",
        ),
        (
            "cut short",
            Box::new(|f: &Path| {
                let bytes = fs::read(f).unwrap();
                fs::write(f, &bytes[..bytes.len() / 2]).unwrap();
            }),
            "cut short",
        ),
        (
            "not an export file",
            Box::new(|f: &Path| fs::write(f, "{\"role\":\"user\"}\n").unwrap()),
            "not an annals export file",
        ),
        (
            "empty",
            Box::new(|f: &Path| fs::write(f, "").unwrap()),
            "empty",
        ),
    ];
    for (what, damage, says) in cases {
        fs::write(&file, &good).unwrap();
        damage(&file);
        let out = import(&root, &file);
        assert_eq!(out.status.code(), Some(2), "{what}");
        let err = stderr_of(&out);
        assert!(err.contains(says), "{what}: {err}");
        assert!(err.contains("nothing was imported"), "{what}: {err}");
        assert!(!root.exists(), "{what}: nothing written, not even the root");
    }
    // A directory where the file should be.
    let out = import(&root, dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr_of(&out).contains("not a regular file"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn export_refuses_a_damaged_session_an_existing_file_and_a_wrong_id() {
    let fx = Fixture::new();
    let key = fx.segment(4);
    let (_dir, file, _) = scratch();
    fs::write(&file, "mine").unwrap();
    let out = fx
        .annals()
        .args(["export", &short(key.0), "-o"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr_of(&out).contains("--force"), "{}", stderr_of(&out));
    assert_eq!(fs::read(&file).unwrap(), b"mine");
    crate::flip_byte(&fx.path(key), 3);
    let out = fx
        .annals()
        .args(["export", &short(key.0), "-o"])
        .arg(&file)
        .arg("--force")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_of(&out).contains("damaged"), "{}", stderr_of(&out));
    assert!(!file.exists(), "no partial export file is left behind");
    let out = fx.annals().args(["export", "nothex!"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr_of(&out).contains("not a hex id"));
}
