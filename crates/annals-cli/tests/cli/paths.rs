//! Where the store is and what a path names: roots that are files, FIFOs or foreign
//! directories; paths inside and outside the root; and a real full disk and read-only mount
//! where the machine lets the tests make one.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use annals::{SegmentId, SessionId, StoreExt};
use serde_json::json;

use crate::{bare, short, snapshot, stderr_of, stdout_of, Fixture};

#[test]
fn a_root_that_is_a_file_fifo_or_foreign_directory_is_named_for_what_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    fs::write(&file, "x").unwrap();
    let fifo = dir.path().join("fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let foreign = dir.path().join("home");
    fs::create_dir(&foreign).unwrap();
    fs::write(foreign.join("notes.txt"), "mine").unwrap();
    fs::create_dir(foreign.join("src")).unwrap();
    let (s, g) = (SessionId::new().to_string(), SegmentId::new().to_string());
    for (root, says) in [
        (&file, "not a directory (it is a regular file)"),
        (&fifo, "not a directory (it is a FIFO)"),
        (&file.join("below"), "not a directory"),
        (
            &foreign,
            "no annals store in this directory (it holds 2 entries",
        ),
    ] {
        for args in [
            vec!["ls"],
            vec!["verify"],
            vec!["grep", "x"],
            vec!["append", &s, &g, "--create"],
            vec!["demo", "--workers", "1", "--sessions-per-worker", "1"],
        ] {
            let before = snapshot(dir.path());
            let out = bare()
                .arg("--root")
                .arg(root)
                .args(&args)
                .write_stdin("{\"a\":1}\n")
                .timeout(std::time::Duration::from_secs(60))
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(2), "{root:?} {args:?}");
            let err = stderr_of(&out);
            assert!(err.contains(says), "{root:?} {args:?}: {err}");
            assert_eq!(err.lines().count(), 1, "{err}");
            assert_eq!(snapshot(dir.path()), before, "{root:?} {args:?} wrote");
        }
    }
    // An empty directory is an empty store.
    let empty = dir.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let out = bare().arg("--root").arg(&empty).arg("ls").output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("no sessions"));
}

/// A store and, next to it, a second store with a segment of its own.
fn two_stores() -> (Fixture, (SessionId, SegmentId), PathBuf, PathBuf) {
    let fx = Fixture::new();
    let key = fx.segment(3);
    let other_root = fx.root().with_file_name("other-store");
    let other = annals::FsStore::open(&other_root).unwrap();
    let (s, g) = (SessionId::new(), SegmentId::new());
    other.create(s, g, &[json!({"elsewhere": true})]).unwrap();
    let outside = other.segment_path(s, g);
    (fx, key, other_root, outside)
}

#[test]
fn a_path_outside_the_root_is_refused_by_every_command_that_takes_one() {
    let (fx, _, other_root, outside) = two_stores();
    let loose = fx.root().with_file_name("loose.jsonl");
    fs::copy(&outside, &loose).unwrap();
    let before = snapshot(fx.root().parent().unwrap());
    for path in [&outside, &loose, &outside.parent().unwrap().to_path_buf()] {
        let p = path.display().to_string();
        for args in [
            vec!["verify", &p],
            vec!["cat", &p],
            vec!["follow", &p],
            vec!["repair", &p, "--yes"],
            vec!["ls", &p],
            vec!["tree", &p],
            vec!["export", &p],
            vec!["grep", "x", &p],
            vec!["attachments", "list", &p],
        ] {
            let out = fx.annals().args(&args).output().unwrap();
            assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stdout_of(&out));
            let err = stderr_of(&out);
            assert!(err.contains("is outside the store root"), "{args:?}: {err}");
            assert!(err.contains("--root"), "{args:?}: says how: {err}");
        }
    }
    // The hint names the root the path belongs to, which then works.
    let out = fx
        .annals()
        .args(["verify", &outside.display().to_string()])
        .output()
        .unwrap();
    assert!(
        stderr_of(&out).contains(&format!("--root {}", other_root.display())),
        "{}",
        stderr_of(&out)
    );
    bare()
        .arg("--root")
        .arg(&other_root)
        .args(["verify", &outside.display().to_string()])
        .assert()
        .success();
    assert_eq!(snapshot(fx.root().parent().unwrap()), before);
}

#[test]
fn paths_inside_the_root_name_sessions_and_segments_also_through_links_and_dots() {
    let (fx, key, _, _) = two_stores();
    let seg = fx.path(key);
    let session_dir = seg.parent().unwrap().to_path_buf();
    let trace = session_dir.join(format!("{}.trace.jsonl", key.1));
    let dotted = fx
        .root()
        .join(".")
        .join(key.0.to_string())
        .join("..")
        .join(key.0.to_string());
    let link = fx.root().with_file_name("link-to-store");
    std::os::unix::fs::symlink(fx.root(), &link).unwrap();
    let through_link = link
        .join(key.0.to_string())
        .join(format!("{}.jsonl", key.1));
    for (path, what) in [
        (&seg, "segment"),
        (&trace, "segment"),
        (&through_link, "segment"),
        (&session_dir, "session"),
        (&dotted, "session"),
    ] {
        let out = fx
            .annals()
            .args(["verify", &path.display().to_string()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{path:?}: {}", stderr_of(&out));
        let text = stdout_of(&out);
        assert!(
            text.contains("1 segment with 3 entries"),
            "{what} {path:?}: {text}"
        );
    }
    // Relative paths, from inside the session directory.
    let out = fx
        .annals()
        .current_dir(&session_dir)
        .args(["cat", &format!("{}.jsonl", key.1)])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(stdout_of(&out).lines().count(), 3);
    // Inside the root but not a store file.
    let blob = fx.root().join(key.0.to_string()).join("blobs").join("ab");
    let out = fx
        .annals()
        .args(["cat", &blob.display().to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr_of(&out).contains("is not a session directory or segment file"),
        "{}",
        stderr_of(&out)
    );
    let out = fx
        .annals()
        .args([
            "cat",
            &session_dir.join("notes.jsonl").display().to_string(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let root_itself = fx.root().display().to_string() + "/";
    let out = fx.annals().args(["verify", &root_itself]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr_of(&out).contains("root itself"),
        "{}",
        stderr_of(&out)
    );
}

/// A tmpfs mounted for one test, unmounted when dropped. `None` where the test may not
/// mount (not root, no privilege in this container).
struct Mount {
    dir: tempfile::TempDir,
}

impl Mount {
    fn tmpfs(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            Some(Self { dir })
        } else {
            eprintln!("note: cannot mount a tmpfs here (needs root); skipping");
            None
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn remount(&self, opts: &str) -> bool {
        Command::new("mount")
            .args(["-o", &format!("remount,{opts}")])
            .arg(self.dir.path())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
fn a_full_disk_is_reported_as_no_space_left_with_the_next_step_and_keeps_what_was_acknowledged() {
    let Some(mount) = Mount::tmpfs("1m") else {
        return;
    };
    let root = mount.path().join("store");
    let (s, g) = (SessionId::new(), SegmentId::new());
    let (ss, gs) = (s.to_string(), g.to_string());
    bare()
        .arg("--root")
        .arg(&root)
        .args(["append", &ss, &gs, "--create"])
        .write_stdin("{\"n\":0}\n{\"n\":1}\n")
        .assert()
        .success();
    // Fill the file system with small entries until an append fails.
    let line = format!("{{\"pad\":\"{}\"}}\n", "x".repeat(3000));
    let input: String = std::iter::repeat_n(line.as_str(), 1000).collect();
    let out = bare()
        .arg("--root")
        .arg(&root)
        .args(["append", &ss, &gs, "--print", "tip"])
        .write_stdin(input)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(err.contains("no space left on device"), "the cause: {err}");
    assert!(err.contains("df -h"), "the next step: {err}");
    assert!(!err.contains("could not append to (short write"), "{err}");
    // What was acknowledged is there, and the store reads and verifies.
    let tip: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let store = annals::FsStore::open(&root).unwrap();
    let count = annals::Store::tip(&store, s, g).unwrap().count;
    assert_eq!(tip["count"].as_u64().unwrap(), count);
    assert!(count >= 2);
    bare()
        .arg("--root")
        .arg(&root)
        .arg("verify")
        .assert()
        .success();
}

#[test]
fn a_read_only_mount_reads_and_refuses_writes_with_the_cause() {
    let Some(mount) = Mount::tmpfs("8m") else {
        return;
    };
    let root = mount.path().join("store");
    let store = annals::FsStore::open(&root).unwrap();
    let (s, g) = (SessionId::new(), SegmentId::new());
    store
        .create(s, g, &[json!({"text": "needle"}), json!({"n": 1})])
        .unwrap();
    drop(store);
    assert!(mount.remount("ro"));
    let before = snapshot(&root);
    let elsewhere = tempfile::tempdir().unwrap();
    let export = elsewhere.path().join("x.annals");
    for args in [
        vec!["ls".to_owned()],
        vec!["cat".to_owned(), short(g)],
        vec!["grep".to_owned(), "needle".to_owned()],
        vec!["verify".to_owned()],
        vec!["tree".to_owned(), short(s)],
        vec![
            "export".to_owned(),
            short(s),
            "-o".to_owned(),
            export.display().to_string(),
        ],
    ] {
        let out = bare()
            .arg("--root")
            .arg(&root)
            .args(&args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?} on a read-only mount: {}",
            stderr_of(&out)
        );
    }
    let out = bare()
        .arg("--root")
        .arg(&root)
        .args(["append", &s.to_string(), &g.to_string()])
        .write_stdin("{\"n\":2}\n")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr_of(&out);
    assert!(err.contains("read-only file system"), "{err}");
    assert!(err.contains("remount"), "{err}");
    assert_eq!(snapshot(&root), before);
    assert!(mount.remount("rw"));
}
