//! The `annals` binary against a real PostgreSQL server (the throwaway cluster of
//! `annals_postgres::test_server`, or `ANNALS_PG_URL`): the demo with its worker processes, every
//! reading and writing command, a copy there and back, the refusal of what only files have, and
//! never a password in what the tool prints.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};

use annals::{SegmentId, SessionId, Store, StoreExt};
use annals_postgres::test_server::{fresh_schema, server_for_tests, Server};
use annals_postgres::{PgOptions, PgStore};
use serde_json::json;

use crate::{bare, short, stderr_of, stdout_of, Fixture};

/// A store in a fresh schema of the test server: its `--store` URL (password and all), and the
/// schema dropped at the end.
struct PgTarget {
    url: String,
    schema: String,
    /// What must never be printed.
    password: Option<String>,
}

impl PgTarget {
    fn new(server: &Server) -> Self {
        let schema = fresh_schema();
        Self {
            url: format!("{}?schema={schema}", server.url()),
            schema,
            password: server.local().map(|l| l.password().to_owned()),
        }
    }

    /// The binary pointed at this store with `--store`.
    fn annals(&self) -> assert_cmd::Command {
        let mut cmd = bare();
        cmd.arg("--store").arg(&self.url);
        cmd
    }

    /// The store through the library, for setting up and for checking what a command wrote.
    /// Opened without creating the schema: a test that expects it to exist fails if it does not.
    fn library(&self) -> annals::Result<PgStore> {
        let (url, _) = self.url.split_once("?schema=").unwrap();
        PgStore::open_with(
            PgOptions::new(url)
                .schema(self.schema.clone())
                .create_schema(false),
        )
    }

    fn store(&self) -> PgStore {
        self.library().expect("the store exists in its schema")
    }

    /// Fails the test if `output` shows the password anywhere.
    fn check_secret(&self, output: &Output) {
        if let Some(password) = &self.password {
            for text in [stdout_of(output), stderr_of(output)] {
                assert!(!text.contains(password.as_str()), "password shown: {text}");
            }
        }
    }

    /// Runs the binary with `args` (and `stdin`), checks that no password is shown, returns
    /// its output.
    fn run(&self, args: &[&str], stdin: &str) -> Output {
        let output = self
            .annals()
            .args(args)
            .write_stdin(stdin)
            .output()
            .unwrap();
        self.check_secret(&output);
        output
    }

    /// The same, requiring exit code `code`.
    fn expect(&self, args: &[&str], stdin: &str, code: i32) -> Output {
        let output = self.run(args, stdin);
        assert_eq!(
            output.status.code(),
            Some(code),
            "annals {args:?}\nstdout: {}\nstderr: {}",
            stdout_of(&output),
            stderr_of(&output)
        );
        output
    }
}

impl Drop for PgTarget {
    fn drop(&mut self) {
        if let Ok(store) = self.library() {
            let _ = store.drop_schema();
        }
    }
}

fn lines(n: u64) -> Vec<String> {
    let mut lines: Vec<String> = (0..n)
        .map(|i| json!({"n": i, "text": format!("entry number {i}")}).to_string())
        .collect();
    // Longer than a line of the filesystem store: kept as a blob in both backends.
    lines.push(json!({"tool_output": "y".repeat(12_000), "n": n}).to_string());
    lines
}

#[test]
fn demo_runs_its_worker_processes_against_postgres_and_verifies_clean() {
    let Some(server) = server_for_tests() else {
        return;
    };
    let pg = PgTarget::new(&server);
    let out = pg.expect(
        &["demo", "--workers", "3", "--sessions-per-worker", "4"],
        "",
        0,
    );
    let text = stdout_of(&out);
    assert!(text.contains("3 worker processes x 4 sessions"), "{text}");
    assert!(
        text.contains("every appended entry is there, in order"),
        "{text}"
    );
    assert!(text.contains(": clean"), "{text}");
    // The commands to paste name the store without its password.
    assert!(
        text.contains("--store 'postgresql://annals@127.0.0.1") || server.local().is_none(),
        "{text}"
    );
    // 12 sessions of the workers and the shared one, each worker's in its own process.
    let store = pg.store();
    assert_eq!(store.list_sessions().unwrap().len(), 13);
    let out = pg.expect(&["verify"], "", 0);
    assert!(
        stdout_of(&out).contains("13 sessions"),
        "{}",
        stdout_of(&out)
    );
    assert!(stdout_of(&out).contains(": clean"), "{}", stdout_of(&out));
    let out = pg.expect(&["ls"], "", 0);
    assert_eq!(
        stdout_of(&out).lines().count(),
        13 + 2,
        "{}",
        stdout_of(&out)
    );
}

#[test]
fn reading_and_writing_commands_work_on_postgres_as_on_a_directory() {
    let Some(server) = server_for_tests() else {
        return;
    };
    let pg = PgTarget::new(&server);
    let (session, segment) = (SessionId::new(), SegmentId::new());
    let (s, g) = (session.to_string(), segment.to_string());

    // A reader finds no store there, says so, and creates nothing.
    let out = pg.expect(&["ls"], "", 2);
    assert!(
        stderr_of(&out).contains("no annals store here"),
        "{}",
        stderr_of(&out)
    );
    assert!(pg.library().is_err(), "ls created the schema");
    pg.expect(&["append", &s, &g], "{}\n", 2);
    assert!(pg.library().is_err(), "a refused append created the schema");

    // append --create makes the store and the segment; entries keep their exact text.
    let input = lines(6);
    let out = pg.expect(
        &["append", "--create", &s, &g, "--print", "tip"],
        &(input.join("\n") + "\n"),
        0,
    );
    assert!(
        stdout_of(&out).contains("\"count\":7"),
        "{}",
        stdout_of(&out)
    );
    let out = pg.expect(&["cat", &short(segment)], "", 0);
    assert_eq!(stdout_of(&out).lines().collect::<Vec<_>>(), input);
    let out = pg.expect(&["cat", &s, "--tail", "2", "--no-blobs"], "", 0);
    assert!(
        stdout_of(&out).contains("\"annals_blob\""),
        "{}",
        stdout_of(&out)
    );
    let out = pg.expect(&["cat", &g, "--format", "transcript"], "", 0);
    assert_eq!(
        stdout_of(&out)
            .lines()
            .filter(|l| !l.starts_with("─"))
            .count(),
        7
    );

    // Through $ANNALS_STORE as through --store.
    let out = bare()
        .env("ANNALS_STORE", &pg.url)
        .args(["grep", "-F", "entry number 3"])
        .output()
        .unwrap();
    pg.check_secret(&out);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let found = stdout_of(&out);
    assert!(found.contains(&format!("{}:3:", short(segment))), "{found}");
    pg.expect(&["grep", "-F", "not in any entry"], "", 1);
    // The blob is searched too.
    pg.expect(&["grep", "yyyyyyyy", "-c"], "", 0);

    let out = pg.expect(&["verify"], "", 0);
    let text = stdout_of(&out);
    assert!(
        text.contains("1 session: 1 segment with 7 entries")
            && text.contains("their blobs")
            && text.contains(": clean"),
        "{text}"
    );
    let out = pg.expect(&["ls"], "", 0);
    assert!(
        stdout_of(&out).contains(&short(session)),
        "{}",
        stdout_of(&out)
    );

    // truncate: shown first, done only when confirmed.
    let store = pg.store();
    let out = pg.expect(&["truncate", &g, "--keep", "5"], "", 2);
    assert!(stderr_of(&out).contains("--yes"), "{}", stderr_of(&out));
    let out = pg.expect(&["truncate", &g, "--keep", "5", "--dry-run"], "", 0);
    assert!(
        stdout_of(&out).contains("entries 5..7 (2)"),
        "{}",
        stdout_of(&out)
    );
    assert_eq!(store.tip(session, segment).unwrap().count, 7);
    pg.expect(&["truncate", &g, "--keep", "9", "--yes"], "", 2);
    let out = pg.expect(
        &["truncate", &short(segment), "--keep", "5", "--yes"],
        "",
        0,
    );
    assert!(
        stdout_of(&out).contains("generation 1"),
        "{}",
        stdout_of(&out)
    );
    // fork: a new segment from the first entries, its id on stdout.
    let out = pg.expect(&["fork", &g, "--at", "3"], "", 0);
    let fork: SegmentId = stdout_of(&out).trim().parse().unwrap();
    pg.expect(&["append", &s, &fork.to_string()], "{\"retry\":true}\n", 0);
    store
        .append_trace(session, fork, &json!({"event": "fork", "reason": "edit"}))
        .unwrap();
    let out = pg.expect(&["ls", &s], "", 0);
    let listing = stdout_of(&out);
    let row = |id: SegmentId| {
        listing
            .lines()
            .find(|l| l.contains(&short(id)))
            .unwrap_or_else(|| panic!("{id} not listed: {listing}"))
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(row(segment), format!("{} 5 1", short(segment)), "{listing}");
    assert_eq!(row(fork), format!("{} 4 0", short(fork)), "{listing}");
    let out = pg.expect(&["tree", &s], "", 0);
    assert!(stdout_of(&out).contains("edit"), "{}", stdout_of(&out));
    let out = pg.expect(&["cat", &g], "", 0);
    assert_eq!(stdout_of(&out).lines().collect::<Vec<_>>(), input[..5]);
    let out = pg.expect(&["cat", &fork.to_string(), "--trace"], "", 0);
    assert!(
        stdout_of(&out).contains("\"reason\":\"edit\""),
        "{}",
        stdout_of(&out)
    );
    let out = pg.expect(&["stats", "--json"], "", 0);
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["segments"], 2, "{stats}");
    assert_eq!(stats["entries"], 9, "{stats}");
    assert_eq!(stats["traces"], 1, "{stats} {}", stderr_of(&out));
    assert_eq!(stats["root"], serde_json::Value::Null, "{stats}");
    let out = pg.expect(&["verify", "--json"], "", 0);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["summary"]["traces"], 1, "{report}");
    assert_eq!(report["summary"]["clean"], true, "{report}");
    pg.expect(&["gc", &s], "", 0);

    // Attachments in and out.
    let dir = tempfile::tempdir().unwrap();
    let picture = dir.path().join("p.png");
    std::fs::write(&picture, [0x89, b'P', b'N', b'G', 0, 255]).unwrap();
    pg.expect(
        &["attachments", "put", &s, picture.to_str().unwrap()],
        "",
        0,
    );
    assert_eq!(store.list_attachments(session).unwrap().len(), 1);

    // Export, then import into another schema: the same entries, lineage and attachment.
    let file = dir.path().join("session.annals");
    pg.expect(&["export", &s, "-o", file.to_str().unwrap()], "", 0);
    let other = PgTarget::new(&server);
    other.expect(&["import", file.to_str().unwrap()], "", 0);
    for id in [segment, fork] {
        let args = ["cat", &id.to_string()];
        assert_eq!(
            stdout_of(&other.expect(&args, "", 0)),
            stdout_of(&pg.expect(&args, "", 0))
        );
    }
    let imported = other.store();
    assert_eq!(
        imported.list_segments(session).unwrap()[1].fork,
        store.list_segments(session).unwrap()[1].fork
    );
    assert_eq!(imported.list_attachments(session).unwrap().len(), 1);
    other.expect(&["verify"], "", 0);
}

#[test]
fn what_only_files_have_is_refused_on_postgres_naming_the_command_and_why() {
    let Some(server) = server_for_tests() else {
        return;
    };
    let pg = PgTarget::new(&server);
    let (session, segment) = (SessionId::new(), SegmentId::new());
    let store = PgStore::open_with(PgOptions::new(server.url()).schema(pg.schema.clone())).unwrap();
    store.create(session, segment, &[json!(1)]).unwrap();
    let (s, g) = (session.to_string(), segment.to_string());
    for (args, what) in [
        (
            vec!["repair", g.as_str(), "--yes"],
            "repair works on filesystem stores only",
        ),
        (
            vec!["cat", g.as_str(), "--raw"],
            "cat --raw works on filesystem stores only",
        ),
        (
            vec!["follow", g.as_str(), "--raw"],
            "follow --raw works on filesystem stores only",
        ),
        (
            vec!["append", &s, g.as_str(), "--compress"],
            "--compress works on filesystem stores only",
        ),
    ] {
        let out = pg.expect(&args, "{\"n\": 2}\n", 2);
        let err = stderr_of(&out);
        assert!(err.contains(what), "{err}");
        assert!(err.contains(&pg.schema), "names the store: {err}");
    }
    // A path names a file, and a database has none.
    let out = pg.expect(&["cat", &format!("/tmp/{session}/{segment}.jsonl")], "", 2);
    assert!(
        stderr_of(&out).contains("keeps no files"),
        "{}",
        stderr_of(&out)
    );
    // Nothing was cut or changed.
    assert_eq!(store.tip(session, segment).unwrap().count, 1);
}

#[test]
fn follow_on_postgres_prints_entries_as_another_process_appends_them() {
    let Some(server) = server_for_tests() else {
        return;
    };
    let pg = PgTarget::new(&server);
    let (session, segment) = (SessionId::new(), SegmentId::new());
    let store = PgStore::open_with(PgOptions::new(server.url()).schema(pg.schema.clone())).unwrap();
    store.create(session, segment, &[json!({"n": 0})]).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_annals"))
        .env_remove("ANNALS_ROOT")
        .env("ANNALS_STORE", &pg.url)
        .env("NO_COLOR", "1")
        .args(["follow", &session.to_string(), "--interval-ms", "20"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), r#"{"n":0}"#);
    store.append(session, segment, &json!({"n": 1})).unwrap();
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), r#"{"n":1}"#);
    // A fork by the runtime: followed into the new segment.
    let fork = SegmentId::new();
    store.fork(session, segment, 2, fork).unwrap();
    store
        .append(session, fork, &json!({"n": "forked"}))
        .unwrap();
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), r#"{"n":"forked"}"#);
    drop(reader);
    // Its output closed: it stops by itself at the next entry, with exit code 0.
    store.append(session, fork, &json!({"n": "last"})).unwrap();
    let status = crate::follow::wait_bounded(&mut child);
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    if let Some(password) = &pg.password {
        assert!(!err.contains(password.as_str()), "{err}");
    }
}

#[test]
fn a_copy_from_a_directory_to_postgres_and_back_gives_the_same_bytes() {
    let Some(server) = server_for_tests() else {
        return;
    };
    let fx = Fixture::new();
    let (session, segment) = fx.segment(30);
    fx.store
        .append(session, segment, &json!({"big": "z".repeat(9_000)}))
        .unwrap();
    let fork = SegmentId::new();
    fx.store.fork(session, segment, 12, fork).unwrap();
    fx.store
        .append(session, fork, &json!("é ✓ \u{1F600}"))
        .unwrap();
    let pg = PgTarget::new(&server);
    let back = tempfile::tempdir().unwrap();
    let back_root = back.path().join("back");
    let src = fx.root().display().to_string();
    let dst = back_root.display().to_string();
    pg.expect(&["copy", "--from", &src, "--to", &pg.url], "", 0);
    pg.expect(&["copy", "--from", &pg.url, "--to", &dst], "", 0);
    for id in [segment, fork] {
        let cat = |store: &str| {
            let out = bare()
                .args(["--store", store, "cat", &id.to_string()])
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", stderr_of(&out));
            out.stdout
        };
        let original = cat(&src);
        assert_eq!(cat(&pg.url), original, "fs → pg");
        assert_eq!(cat(&dst), original, "pg → fs");
        // The segment files hold the same entries, line for line (their append times aside).
        let entries = |root: &std::path::Path| -> Vec<String> {
            annals::FsStore::open(root)
                .unwrap()
                .read_raw(session, id)
                .unwrap()
                .iter()
                .map(|e| e.as_str().to_owned())
                .collect()
        };
        assert_eq!(entries(&back_root), entries(&fx.root()));
    }
}

#[test]
fn no_password_appears_when_the_server_refuses_or_is_not_there() {
    let secret = "s3cret-pw-7f2a";
    for args in [
        vec!["ls"],
        vec!["verify"],
        vec![
            "append",
            "--create",
            &SessionId::new().to_string(),
            &SegmentId::new().to_string(),
        ],
        vec!["repair", "abcd", "--yes"],
    ] {
        let out = bare()
            .arg("--store")
            .arg(format!(
                "postgresql://u:{secret}@127.0.0.1:1/db?password={secret}"
            ))
            .args(&args)
            .write_stdin("{}\n")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr_of(&out));
        for text in [stdout_of(&out), stderr_of(&out)] {
            assert!(!text.contains(secret), "{args:?}: {text}");
        }
        assert!(
            stderr_of(&out).contains("postgresql://u:***@127.0.0.1:1"),
            "{}",
            stderr_of(&out)
        );
    }
    // A wrong password for a real server: refused as such, and not shown.
    let Some(server) = server_for_tests() else {
        return;
    };
    let Some(local) = server.local() else { return };
    let url = local.url_for(annals_postgres::test_server::USER, secret, "postgres");
    let out = bare().args(["--store", &url, "ls"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr_of(&out);
    assert!(err.contains("authentication failed"), "{err}");
    assert!(
        !err.contains(secret) && !err.contains(local.password()),
        "{err}"
    );
}

/// `annals demo` into a store whose URL holds a password hands it to its workers in the
/// environment, never as an argument (`ps` shows arguments to every user).
#[test]
fn demo_workers_get_the_store_url_in_their_environment_not_their_arguments() {
    let Some(server) = server_for_tests() else {
        return;
    };
    let Some(local) = server.local() else { return };
    let pg = PgTarget::new(&server);
    let dir = tempfile::tempdir().unwrap();
    // The workers' command lines, read from /proc while they run.
    let mut parent = Command::new(env!("CARGO_BIN_EXE_annals"))
        .env_remove("ANNALS_ROOT")
        .env("NO_COLOR", "1")
        .args([
            "--store",
            &pg.url,
            "demo",
            "--workers",
            "2",
            "--sessions-per-worker",
            "20",
        ])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = parent.id();
    let mut seen = 0;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while parent.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            let ppid = stat
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().nth(1));
            if ppid != Some(&pid.to_string()) {
                continue;
            }
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains("__demo-worker") {
                seen += 1;
                assert!(!cmdline.contains(local.password()), "{cmdline}");
                assert!(!cmdline.contains("postgresql://"), "{cmdline}");
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let status = crate::follow::wait_bounded(&mut parent);
    let mut out = String::new();
    std::io::Read::read_to_string(&mut parent.stdout.take().unwrap(), &mut out).unwrap();
    assert!(status.success(), "{out}");
    assert!(seen > 0, "no worker seen while the demo ran: {out}");
}

#[test]
fn root_and_store_flags_win_over_a_database_in_the_environment() {
    let fx = Fixture::new();
    let (session, _) = fx.segment(2);
    let unreachable = "postgresql://u:pw-x@127.0.0.1:1/db";
    for flags in [
        vec!["--root".to_owned(), fx.root().display().to_string()],
        vec![
            "--store".to_owned(),
            format!("file://{}", fx.root().display()),
        ],
    ] {
        let out = bare()
            .env("ANNALS_STORE", unreachable)
            .args(&flags)
            .arg("ls")
            .output()
            .unwrap();
        assert!(out.status.success(), "{flags:?}: {}", stderr_of(&out));
        assert!(stdout_of(&out).contains(&short(session)));
    }
    // Without a flag the environment's database is used (and is not there).
    let out = bare()
        .env("ANNALS_STORE", unreachable)
        .arg("ls")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr_of(&out).contains("cannot connect"),
        "{}",
        stderr_of(&out)
    );
    assert!(!stderr_of(&out).contains("pw-x"), "{}", stderr_of(&out));
}

#[test]
fn verify_and_cat_name_a_damaged_row_of_a_postgres_store() {
    let Some(server) = server_for_tests() else {
        return;
    };
    let pg = PgTarget::new(&server);
    let (session, segment) = (SessionId::new(), SegmentId::new());
    let store = PgStore::open_with(PgOptions::new(server.url()).schema(pg.schema.clone())).unwrap();
    let entries: Vec<_> = (0..5).map(|i| json!({"i": i})).collect();
    store.create(session, segment, &entries).unwrap();
    // Same length, other text: only the entry's checksum can tell.
    let mut admin = postgres::Client::connect(&server.url(), postgres::NoTls).unwrap();
    admin
        .execute(
            &format!(
                "UPDATE \"{0}\".entries SET body = '{{\"i\":7}}' WHERE seq = 2 AND segment = \
                 (SELECT key FROM \"{0}\".segments WHERE id = $1)",
                pg.schema
            ),
            &[&segment.as_uuid()],
        )
        .unwrap();
    let name = format!("{}.entries/{session}/{segment}", pg.schema);
    let out = pg.expect(&["verify"], "", 1);
    let text = stdout_of(&out);
    assert!(text.contains(&format!("{name}:4:")), "{text}");
    assert!(text.contains("1 problem in 1 file"), "{text}");
    let out = pg.expect(&["cat", &segment.to_string()], "", 1);
    assert!(
        stderr_of(&out).contains(&format!("{name}:4:")),
        "{}",
        stderr_of(&out)
    );
    let out = pg.expect(&["cat", &segment.to_string(), "--tolerant"], "", 1);
    assert_eq!(stdout_of(&out).lines().count(), 4, "{}", stdout_of(&out));
}
