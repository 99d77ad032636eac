//! `annals follow` running as its own process while the test appends, truncates, interrupts
//! it and closes its output. Every wait is bounded.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use annals::{Store, StoreExt};
use serde_json::Value;

use crate::{entry, Fixture};

const WAIT: Duration = Duration::from_secs(20);

/// Waits for a child to exit, killing it (and failing) after [`WAIT`].
pub fn wait_bounded(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("process did not exit within {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

struct Follower {
    child: Child,
    lines: Receiver<String>,
    errors: Receiver<String>,
}

fn lines_of(pipe: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

impl Follower {
    fn start(fx: &Fixture, args: &[&str]) -> Self {
        let mut child = fx
            .spawnable()
            .arg("follow")
            .args(args)
            .args(["--interval-ms", "20"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = lines_of(child.stdout.take().unwrap());
        let errors = lines_of(child.stderr.take().unwrap());
        Self {
            child,
            lines,
            errors,
        }
    }

    /// The `n` field of the next `count` entries printed, within [`WAIT`].
    fn next_ns(&self, count: usize) -> Vec<u64> {
        (0..count)
            .map(|_| {
                let line = self
                    .lines
                    .recv_timeout(WAIT)
                    .expect("follow printed nothing in time");
                serde_json::from_str::<Value>(&line).unwrap()["n"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    }

    fn next_error(&self) -> String {
        self.errors
            .recv_timeout(WAIT)
            .expect("follow said nothing on stderr in time")
    }

    fn interrupt(mut self) -> ExitStatus {
        let status = std::process::Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        wait_bounded(&mut self.child)
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn follow_prints_the_tail_then_entries_another_process_appends_and_exits_0_on_sigint() {
    let fx = Fixture::new();
    let key = fx.segment(5);
    let f = Follower::start(&fx, &[&key.1.to_string(), "--tail", "2"]);
    assert_eq!(f.next_ns(2), vec![3, 4]);
    fx.store.append(key.0, key.1, &entry(5)).unwrap();
    assert_eq!(f.next_ns(1), vec![5]);
    fx.store
        .append_batch(key.0, key.1, &[entry(6), entry(7), entry(8)])
        .unwrap();
    assert_eq!(f.next_ns(3), vec![6, 7, 8]);
    let status = f.interrupt();
    assert_eq!(
        status.code(),
        Some(0),
        "Ctrl-C is a normal way to stop following"
    );
}

#[test]
fn follow_survives_a_truncation_and_says_so() {
    let fx = Fixture::new();
    let key = fx.segment(6);
    let f = Follower::start(&fx, &[&key.1.to_string(), "--tail", "1"]);
    assert_eq!(f.next_ns(1), vec![5]);
    fx.store.truncate(key.0, key.1, 3).unwrap();
    let note = f.next_error();
    assert!(
        note.contains("was rewritten (generation 0 -> 1, 3 entries)"),
        "{note}"
    );
    assert!(note.contains("continuing from seq 3"), "{note}");
    fx.store
        .append_batch(key.0, key.1, &[entry(30), entry(40)])
        .unwrap();
    assert_eq!(f.next_ns(2), vec![30, 40]);
    assert_eq!(f.interrupt().code(), Some(0));
}

#[test]
fn follow_exits_0_when_its_output_is_closed() {
    let fx = Fixture::new();
    let key = fx.segment(1);
    let mut f = Follower::start(&fx, &[&key.1.to_string()]);
    assert_eq!(f.next_ns(1), vec![0]);
    // Close the reading end: the next write gets EPIPE.
    let (_, empty) = mpsc::channel();
    drop(std::mem::replace(&mut f.lines, empty));
    // The reader thread ends only when it tries to send, so make the follower write until it
    // notices; each append is one more write into a pipe nobody reads.
    let deadline = Instant::now() + WAIT;
    let mut n = 1;
    let status = loop {
        if let Some(status) = f.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "follow did not notice its output closed"
        );
        fx.store.append(key.0, key.1, &entry(n)).unwrap();
        n += 1;
        std::thread::sleep(Duration::from_millis(30));
    };
    assert_eq!(status.code(), Some(0));
    assert!(fx.store.tip(key.0, key.1).unwrap().count >= 2);
}

#[test]
fn follow_reports_a_deleted_segment() {
    let fx = Fixture::new();
    let key = fx.segment(1);
    let mut f = Follower::start(&fx, &[&key.1.to_string()]);
    assert_eq!(f.next_ns(1), vec![0]);
    fx.store.delete_session(key.0).unwrap();
    let note = f.next_error();
    assert!(note.contains("was deleted"), "{note}");
    assert_eq!(wait_bounded(&mut f.child).code(), Some(1));
}

#[test]
fn follow_reprints_from_the_first_entry_a_rewrite_changed() {
    let fx = Fixture::new();
    let key = fx.segment(6);
    let f = Follower::start(&fx, &[&key.1.to_string(), "--tail", "3"]);
    assert_eq!(f.next_ns(3), vec![3, 4, 5]);
    // Cut to 4 and append a different entry 4 (and 5) before the follower looks again:
    // entry 3 is unchanged, 4 and 5 are not what was printed.
    fx.store.truncate(key.0, key.1, 4).unwrap();
    fx.store
        .append_batch(key.0, key.1, &[entry(40), entry(50), entry(60)])
        .unwrap();
    let note = f.next_error();
    assert!(note.contains("entries from seq 4 on changed"), "{note}");
    assert_eq!(f.next_ns(3), vec![40, 50, 60]);
    assert_eq!(f.interrupt().code(), Some(0));
}

#[test]
fn follow_of_a_session_follows_its_forks() {
    let fx = Fixture::new();
    let key = fx.segment(4);
    let f = Follower::start(&fx, &[&key.0.to_string(), "--tail", "2"]);
    assert_eq!(f.next_ns(2), vec![2, 3]);
    let fork = annals::SegmentId::new();
    fx.store.fork(key.0, key.1, 3, fork).unwrap();
    fx.store.append(key.0, fork, &entry(33)).unwrap();
    let note = f.next_error();
    assert!(note.contains("the session forked"), "{note}");
    assert!(note.contains("from seq 3"), "{note}");
    assert_eq!(f.next_ns(1), vec![33]);
    fx.store.append(key.0, fork, &entry(34)).unwrap();
    assert_eq!(f.next_ns(1), vec![34]);
    // The old segment is left alone: its appends are not followed any more.
    fx.store.append(key.0, key.1, &entry(99)).unwrap();
    fx.store.append(key.0, fork, &entry(35)).unwrap();
    assert_eq!(f.next_ns(1), vec![35]);
    assert_eq!(f.interrupt().code(), Some(0));
}

#[test]
fn follow_wait_waits_for_a_store_and_segment_that_do_not_exist_yet() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("later");
    let (session, segment) = (annals::SessionId::new(), annals::SegmentId::new());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_annals"))
        .env_remove("ANNALS_ROOT")
        .env("NO_COLOR", "1")
        .arg("--root")
        .arg(&root)
        .args([
            "follow",
            &segment.to_string(),
            "--wait",
            "--interval-ms",
            "20",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = lines_of(child.stdout.take().unwrap());
    let errors = lines_of(child.stderr.take().unwrap());
    let waiting = errors.recv_timeout(WAIT).unwrap();
    assert!(waiting.contains("waiting for"), "{waiting}");
    assert!(!root.exists(), "waiting creates nothing");
    std::thread::sleep(Duration::from_millis(200));
    let store = annals::FsStore::open(&root).unwrap();
    store
        .create(session, segment, &[entry(0), entry(1)])
        .unwrap();
    let first = match lines.recv_timeout(WAIT) {
        Ok(line) => line,
        Err(e) => {
            let said: Vec<String> = errors.try_iter().collect();
            panic!("nothing printed once it appeared ({e}): {said:?}");
        }
    };
    assert_eq!(serde_json::from_str::<Value>(&first).unwrap()["n"], 0);
    store.append(session, segment, &entry(2)).unwrap();
    let _ = lines.recv_timeout(WAIT).unwrap();
    let third = lines.recv_timeout(WAIT).unwrap();
    assert_eq!(serde_json::from_str::<Value>(&third).unwrap()["n"], 2);
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(wait_bounded(&mut child).code(), Some(0));
    // Without --wait, a segment that does not exist is an error at once.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_annals"))
        .arg("--root")
        .arg(&root)
        .args(["follow", &annals::SegmentId::new().to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}
