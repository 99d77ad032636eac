//! `annals attachments` (list, get, put) and the generated shell completions and man pages.

use std::fs;

use predicates::str::contains;

use crate::{bare, short, stderr_of, stdout_of, Fixture};

#[test]
fn attachments_put_list_and_get_back_the_same_bytes() {
    let fx = Fixture::new();
    let key = fx.segment(1);
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("screen.png");
    let bytes: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 256) as u8).collect();
    fs::write(&png, &bytes).unwrap();
    let s = short(key.0);
    let out = fx
        .annals()
        .args(["attachments", "put", &s])
        .arg(&png)
        .args(["--width", "640", "--height", "480"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let id = stdout_of(&out)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(id.len(), 64);
    // From stdin, with a type and label given.
    fx.annals()
        .args([
            "attachments",
            "put",
            &s,
            "-",
            "--type",
            "text/plain",
            "--label",
            "notes",
        ])
        .write_stdin("hello")
        .assert()
        .success();
    let list = stdout_of(
        &fx.annals()
            .args(["attachments", "list", &s])
            .output()
            .unwrap(),
    );
    assert!(
        list.contains("image/png") && list.contains("screen.png"),
        "{list}"
    );
    assert!(
        list.contains("text/plain") && list.contains("notes"),
        "{list}"
    );
    assert!(list.lines().all(|l| l.chars().count() <= 100), "{list}");
    let json: serde_json::Value = serde_json::from_slice(
        &fx.annals()
            .args(["attachments", "list", &s, "--json"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(json[0]["width"], 640);
    assert_eq!(json[0]["len"], 300_000);
    // Get by a unique start of the id, to stdout (a pipe) and to a file; by label too.
    let out = fx
        .annals()
        .args(["attachments", "get", &s, &id[..10]])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(out.stdout, bytes);
    let copy = dir.path().join("copy.png");
    fx.annals()
        .args(["attachments", "get", &s, "screen.png", "-o"])
        .arg(&copy)
        .assert()
        .success();
    assert_eq!(fs::read(&copy).unwrap(), bytes);
    // An existing output file is kept unless --force.
    fx.annals()
        .args(["attachments", "get", &s, "notes", "-o"])
        .arg(&copy)
        .assert()
        .code(2)
        .stderr(contains("--force"));
    assert_eq!(fs::read(&copy).unwrap(), bytes);
    fx.annals()
        .args(["attachments", "get", &s, "notes", "--force", "-o"])
        .arg(&copy)
        .assert()
        .success();
    assert_eq!(fs::read(&copy).unwrap(), b"hello");
    // Unknown attachment: exit 1, with where to look.
    fx.annals()
        .args(["attachments", "get", &s, "nothing-like-it"])
        .assert()
        .code(1)
        .stderr(contains("attachments list"));
}

#[test]
fn attachments_put_refuses_what_it_cannot_attach_and_writes_nothing() {
    let fx = Fixture::new();
    let key = fx.segment(1);
    let dir = tempfile::tempdir().unwrap();
    let before = fx.snapshot();
    let s = short(key.0);
    let out = fx
        .annals()
        .args(["attachments", "put", &s])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr_of(&out).contains("not a regular file"),
        "{}",
        stderr_of(&out)
    );
    let out = fx
        .annals()
        .args(["attachments", "put", &s])
        .arg(dir.path().join("missing"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = fx
        .annals()
        .args(["attachments", "put", "deadbeefdead", "-"])
        .write_stdin("x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert_eq!(fx.snapshot(), before);
}

#[test]
fn completions_and_man_pages_come_from_the_command_line_definition() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = bare().args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}");
        let text = stdout_of(&out);
        for word in ["grep", "export", "where", "since"] {
            assert!(text.contains(word), "{shell} completes {word}");
        }
        assert!(
            !text.contains("__demo-worker"),
            "{shell}: the worker is hidden"
        );
    }
    bare().args(["completions", "tcsh"]).assert().code(2);
    let man = stdout_of(&bare().arg("man").output().unwrap());
    assert!(
        man.starts_with(".ie") || man.contains(".TH annals"),
        "{}",
        &man[..200.min(man.len())]
    );
    assert!(
        man.contains("ANNALS_ROOT"),
        "the man page has the long help"
    );
    let dir = tempfile::tempdir().unwrap();
    bare()
        .arg("man")
        .arg("--dir")
        .arg(dir.path())
        .assert()
        .success();
    let grep = fs::read_to_string(dir.path().join("annals-grep.1")).unwrap();
    assert!(
        grep.contains("fixed") && grep.contains("\\-\\-where"),
        "{grep}"
    );
    assert!(dir.path().join("annals.1").exists());
    assert!(!dir.path().join("annals-__demo-worker.1").exists());
}
