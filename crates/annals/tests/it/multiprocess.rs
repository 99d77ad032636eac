//! Real processes on one store: concurrent appenders, the concurrent-writer detector across
//! processes, and a writer killed with SIGKILL at random moments.
//!
//! The children are this same test binary, re-executed with a filter that selects one
//! `child_*` test and environment variables that give it its role (the sled crash-test trick).
//! A `child_*` test does nothing unless its role variable is set, so in an ordinary run it
//! passes trivially. Works under `cargo test` and `cargo nextest` alike: both run the libtest
//! harness of this binary, which accepts `NAME --exact --nocapture --test-threads 1`.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use annals::testing::support::{seed_from_env_or_clock, Rng};
use annals::{Error, FsStore, ReplayOptions, SegmentId, SegmentWriter, SessionId, Store, StoreExt};
use serde::{Deserialize, Serialize};

const ROLE: &str = "ANNALS_IT_CHILD_ROLE";
pub(crate) const ROOT: &str = "ANNALS_IT_ROOT";
pub(crate) const SESSION: &str = "ANNALS_IT_SESSION";
pub(crate) const SEGMENT: &str = "ANNALS_IT_SEGMENT";
const CHILD: &str = "ANNALS_IT_CHILD";
const COUNT: &str = "ANNALS_IT_COUNT";
const GO: &str = "ANNALS_IT_GO";
pub(crate) const SEED: &str = "ANNALS_IT_SEED";

/// A hang guard for children, not a speed expectation: far beyond any sane run.
pub(crate) const HANG_LIMIT: Duration = Duration::from_secs(600);

/// The entry each concurrent child appends: who wrote it and its own running number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Tagged {
    child: u32,
    i: u64,
}

/// What a child learns from its environment.
pub(crate) struct ChildEnv {
    pub(crate) root: PathBuf,
    pub(crate) session: SessionId,
    pub(crate) segment: SegmentId,
    child: u32,
    count: u64,
    go: Option<PathBuf>,
    pub(crate) seed: u64,
}

impl ChildEnv {
    /// `None` unless this process was started as a child with this role.
    pub(crate) fn get(role: &str) -> Option<Self> {
        if std::env::var(ROLE).ok()? != role {
            return None;
        }
        let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("child needs {k}"));
        let opt = |k: &str| std::env::var(k).ok();
        Some(Self {
            root: PathBuf::from(var(ROOT)),
            session: var(SESSION).parse().unwrap(),
            segment: opt(SEGMENT).map_or_else(SegmentId::new, |s| s.parse().unwrap()),
            child: opt(CHILD).map_or(0, |s| s.parse().unwrap()),
            count: opt(COUNT).map_or(0, |s| s.parse().unwrap()),
            go: opt(GO).map(PathBuf::from),
            seed: opt(SEED).map_or(1, |s| s.parse().unwrap()),
        })
    }

    /// Waits (bounded) until the parent opens the gate, so that all children start together.
    fn wait_for_go(&self) {
        let Some(go) = &self.go else { return };
        for _ in 0..60_000 {
            if go.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        panic!("the parent never opened the gate {}", go.display());
    }
}

/// Starts this test binary running only the test `name`, with `env`.
pub(crate) fn spawn_child(name: &str, env: &[(&str, String)]) -> Child {
    let exe = std::env::current_exe().unwrap();
    Command::new(exe)
        .args([name, "--exact", "--nocapture", "--test-threads", "1"])
        .env(ROLE, role_of(name))
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        // Inherited so that a child's panic shows up in the test's output.
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

fn role_of(name: &str) -> &str {
    name.rsplit("::").next().unwrap()
}

/// Waits for a child that is expected to finish, killing it if it hangs. Returns its stdout.
fn finish(mut child: Child) -> (ExitStatus, String) {
    let started = Instant::now();
    let mut stdout = child.stdout.take().unwrap();
    // Read stdout on a thread so that a chatty child can never block on a full pipe.
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut out).unwrap();
        out
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > HANG_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child hung for {HANG_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    (status, reader.join().unwrap())
}

/// Marks the lines of the child protocol. libtest prints `test NAME ... ` without a newline
/// before the test runs, so a message can share a line with it.
const MARK: &str = "@@ ";

/// Prints one protocol line to stdout and flushes it, so that the parent sees it even if we
/// are killed right after.
pub(crate) fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{MARK}{line}").unwrap();
    out.flush().unwrap();
}

/// The protocol message in a line of a child's output, if any.
pub(crate) fn message(line: &str) -> Option<&str> {
    line.find(MARK).map(|at| &line[at + MARK.len()..])
}

/// The `KEY=value` fields of the message of `out` that starts with `tag`.
fn report_line(out: &str, tag: &str) -> BTreeMap<String, u64> {
    let line = out
        .lines()
        .filter_map(message)
        .find(|m| m.starts_with(tag))
        .unwrap_or_else(|| panic!("child did not report {tag}; its output:\n{out}"));
    line.split_whitespace()
        .skip(1)
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_owned(), v.parse().unwrap())
        })
        .collect()
}

/// Reads a segment strictly as `Tagged` entries, checking the sequence numbers on the way.
fn read_tagged(store: &FsStore, session: SessionId, segment: SegmentId) -> Vec<Tagged> {
    let mut out = Vec::new();
    let report = store
        .replay(
            session,
            segment,
            &ReplayOptions::strict(),
            |meta, t: Tagged| {
                assert_eq!(
                    meta.seq,
                    out.len() as u64,
                    "sequence numbers run 0, 1, 2, ..."
                );
                out.push(t);
                Ok(())
            },
        )
        .unwrap();
    assert!(
        report.is_clean() && report.torn_tail.is_none(),
        "{report:?}"
    );
    out
}

/// Each child's own numbers, in file order.
fn per_child(entries: &[Tagged], children: u32) -> Vec<Vec<u64>> {
    let mut out = vec![Vec::new(); children as usize];
    for t in entries {
        out[t.child as usize].push(t.i);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Many processes appending to one segment

const APPENDERS: u32 = 4;
const APPENDS_EACH: u64 = 10_000;

#[test]
fn child_appender() {
    let Some(env) = ChildEnv::get("child_appender") else {
        return;
    };
    let store = FsStore::open(&env.root).unwrap();
    env.wait_for_go();
    for i in 0..env.count {
        store
            .append(
                env.session,
                env.segment,
                &Tagged {
                    child: env.child,
                    i,
                },
            )
            .unwrap();
    }
    say(&format!("APPENDED child={} count={}", env.child, env.count));
}

#[test]
fn processes_appending_to_one_segment_share_one_gapless_sequence_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = FsStore::open(&root).unwrap();
    let (session, segment) = (SessionId::new(), SegmentId::new());
    store.create::<Tagged>(session, segment, &[]).unwrap();
    let go = dir.path().join("go");

    let children: Vec<Child> = (0..APPENDERS)
        .map(|c| {
            spawn_child(
                "multiprocess::child_appender",
                &[
                    (ROOT, root.display().to_string()),
                    (SESSION, session.to_string()),
                    (SEGMENT, segment.to_string()),
                    (CHILD, c.to_string()),
                    (COUNT, APPENDS_EACH.to_string()),
                    (GO, go.display().to_string()),
                ],
            )
        })
        .collect();
    fs::write(&go, b"").unwrap();
    for (c, child) in children.into_iter().enumerate() {
        let (status, out) = finish(child);
        assert!(status.success(), "appender {c} failed: {status}\n{out}");
        let fields = report_line(&out, "APPENDED");
        assert_eq!(fields["count"], APPENDS_EACH, "appender {c} did its work");
    }

    let total = u64::from(APPENDERS) * APPENDS_EACH;
    let report = store.verify(session, segment).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.torn_tail, None);
    assert_eq!(report.entries, total);
    assert_eq!(report.valid_up_to, report.file_len);

    let bytes = fs::read(store.segment_path(session, segment)).unwrap();
    assert_eq!(bytes.last(), Some(&b'\n'));
    let line_count = bytes.iter().filter(|b| **b == b'\n').count() as u64;
    assert_eq!(line_count, total + 1, "header plus one line per append");
    assert!(bytes
        .split(|b| *b == b'\n')
        .all(|line| line.len() < annals::MAX_LINE));

    let entries = read_tagged(&store, session, segment);
    assert_eq!(entries.len() as u64, total);
    for (c, own) in per_child(&entries, APPENDERS).iter().enumerate() {
        assert_eq!(
            *own,
            (0..APPENDS_EACH).collect::<Vec<_>>(),
            "appender {c}'s entries, each once, in its order"
        );
    }
    assert_eq!(store.tip(session, segment).unwrap().count, total);
}

// ---------------------------------------------------------------------------------------------
// The detector across processes

const DETECTORS: u32 = 4;
const DETECTED_APPENDS_EACH: u64 = 2_000;

#[test]
fn child_detector() {
    let Some(env) = ChildEnv::get("child_detector") else {
        return;
    };
    let store = FsStore::open(&env.root).unwrap();
    env.wait_for_go();
    let mut writer = SegmentWriter::open(&store, env.session, env.segment).unwrap();
    let (mut fired, mut attempts, mut i) = (0u64, 0u64, 0u64);
    // Someone always wins a round, so this terminates; the bound only guards against a bug.
    while i < env.count {
        attempts += 1;
        assert!(attempts <= env.count * 10_000, "no progress");
        match writer.append(&Tagged {
            child: env.child,
            i,
        }) {
            Ok(_) => i += 1,
            Err(Error::ConcurrentWriter { .. }) => {
                fired += 1;
                writer.resync().unwrap();
            }
            Err(e) => panic!("append failed: {e}"),
        }
    }
    say(&format!(
        "DETECTOR child={} fired={fired} attempts={attempts}",
        env.child
    ));
}

/// One round of detector children on a fresh segment. Returns the entries and, per child,
/// how often its detector fired.
fn detector_round(root: &Path, go: &Path, session: SessionId) -> (Vec<Tagged>, Vec<u64>) {
    let store = FsStore::open(root).unwrap();
    let segment = SegmentId::new();
    store.create::<Tagged>(session, segment, &[]).unwrap();
    let _ = fs::remove_file(go);
    let children: Vec<Child> = (0..DETECTORS)
        .map(|c| {
            spawn_child(
                "multiprocess::child_detector",
                &[
                    (ROOT, root.display().to_string()),
                    (SESSION, session.to_string()),
                    (SEGMENT, segment.to_string()),
                    (CHILD, c.to_string()),
                    (COUNT, DETECTED_APPENDS_EACH.to_string()),
                    (GO, go.display().to_string()),
                ],
            )
        })
        .collect();
    fs::write(go, b"").unwrap();
    let mut fired = Vec::new();
    for (c, child) in children.into_iter().enumerate() {
        let (status, out) = finish(child);
        assert!(
            status.success(),
            "detector child {c} failed: {status}\n{out}"
        );
        let fields = report_line(&out, "DETECTOR");
        assert_eq!(
            fields["attempts"],
            DETECTED_APPENDS_EACH + fields["fired"],
            "child {c}: every attempt either appended or was refused"
        );
        fired.push(fields["fired"]);
    }
    (read_tagged(&store, session, segment), fired)
}

#[test]
fn the_detector_fires_in_every_process_that_was_not_alone_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let go = dir.path().join("go");
    let session = SessionId::new();
    // Scheduling could in theory run the children one after another; then nobody is "not
    // alone" and the round proves nothing, so try again (bounded).
    let mut interleaved_rounds = 0;
    for _round in 0..3 {
        let (entries, fired) = detector_round(&root, &go, session);
        assert_eq!(
            entries.len() as u64,
            u64::from(DETECTORS) * DETECTED_APPENDS_EACH
        );
        let positions = {
            let mut p = vec![Vec::new(); DETECTORS as usize];
            for (pos, t) in entries.iter().enumerate() {
                p[t.child as usize].push(pos);
            }
            p
        };
        let own = per_child(&entries, DETECTORS);
        let mut any_not_alone = false;
        for c in 0..DETECTORS as usize {
            assert_eq!(own[c], (0..DETECTED_APPENDS_EACH).collect::<Vec<_>>());
            // Between two of its own consecutive entries another process wrote: its tally was
            // stale when it next tried, so its detector must have fired at least once for
            // every such gap.
            let gaps = positions[c].windows(2).filter(|w| w[1] != w[0] + 1).count() as u64;
            assert!(
                fired[c] >= gaps,
                "child {c}: {gaps} interleavings but the detector fired {} times",
                fired[c]
            );
            let (first, last) = (positions[c][0], *positions[c].last().unwrap());
            let not_alone = entries[first..=last].iter().any(|t| t.child as usize != c);
            if not_alone {
                any_not_alone = true;
                assert!(
                    fired[c] > 0,
                    "child {c} was not alone, yet never detected it"
                );
            }
        }
        eprintln!("detector: fired {fired:?} times per child");
        if any_not_alone {
            interleaved_rounds += 1;
            break;
        }
    }
    assert!(
        interleaved_rounds > 0,
        "the children never ran at the same time; the detector was not exercised"
    );
}

// ---------------------------------------------------------------------------------------------
// kill -9 at random moments

const KILL_ITERATIONS: u64 = 60;
const MAX_SEGMENTS: usize = 6;

/// One operation of the crash child, as it announces it (`OP`) before doing it and
/// acknowledges it (`ACK`) after.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Append {
        segment: SegmentId,
        values: Vec<String>,
    },
    Truncate {
        segment: SegmentId,
        keep: u64,
    },
    Create {
        segment: SegmentId,
        values: Vec<String>,
    },
    Fork {
        source: SegmentId,
        at: u64,
        into: SegmentId,
    },
}

impl Op {
    fn to_line(&self, id: &str) -> String {
        match self {
            Op::Append { segment, values } => {
                format!("OP {id} append {segment} {}", values.join(","))
            }
            Op::Truncate { segment, keep } => format!("OP {id} truncate {segment} {keep}"),
            Op::Create { segment, values } => {
                format!("OP {id} create {segment} {}", values.join(","))
            }
            Op::Fork { source, at, into } => format!("OP {id} fork {source} {at} {into}"),
        }
    }

    fn parse(words: &[&str]) -> Self {
        let values = |w: Option<&&str>| -> Vec<String> {
            w.filter(|s| !s.is_empty())
                .map(|s| s.split(',').map(str::to_owned).collect())
                .unwrap_or_default()
        };
        match words {
            ["append", seg, rest @ ..] => Op::Append {
                segment: seg.parse().unwrap(),
                values: values(rest.first()),
            },
            ["truncate", seg, keep] => Op::Truncate {
                segment: seg.parse().unwrap(),
                keep: keep.parse().unwrap(),
            },
            ["create", seg, rest @ ..] => Op::Create {
                segment: seg.parse().unwrap(),
                values: values(rest.first()),
            },
            ["fork", source, at, into] => Op::Fork {
                source: source.parse().unwrap(),
                at: at.parse().unwrap(),
                into: into.parse().unwrap(),
            },
            other => panic!("unknown op {other:?}"),
        }
    }

    fn run(&self, store: &FsStore, session: SessionId) -> annals::Result<()> {
        match self {
            Op::Append { segment, values } => {
                store.append_batch(session, *segment, values).map(|_| ())
            }
            Op::Truncate { segment, keep } => store.truncate(session, *segment, *keep).map(|_| ()),
            Op::Create { segment, values } => store.create(session, *segment, values).map(|_| ()),
            Op::Fork { source, at, into } => store.fork(session, *source, *at, *into).map(|_| ()),
        }
    }

    /// The model's view of the operation.
    fn apply(&self, model: &mut Model) {
        match self {
            Op::Append { segment, values } => {
                model
                    .get_mut(segment)
                    .unwrap()
                    .extend(values.iter().cloned());
            }
            Op::Truncate { segment, keep } => {
                model
                    .get_mut(segment)
                    .unwrap()
                    .truncate(usize::try_from(*keep).unwrap());
            }
            Op::Create { segment, values } => {
                assert!(model.insert(*segment, values.clone()).is_none());
            }
            Op::Fork { source, at, into } => {
                let prefix = model[source][..usize::try_from(*at).unwrap()].to_vec();
                assert!(model.insert(*into, prefix).is_none());
            }
        }
    }
}

/// Every segment of the session with its entries.
type Model = BTreeMap<SegmentId, Vec<String>>;

#[test]
fn child_crasher() {
    let Some(env) = ChildEnv::get("child_crasher") else {
        return;
    };
    let store = FsStore::open(&env.root).unwrap();
    let mut rng = Rng::new(env.seed);
    let mut segments: Vec<SegmentId> = store
        .list_segments(env.session)
        .unwrap()
        .into_iter()
        .map(|i| i.segment)
        .collect();
    say("START");
    // Bounded: normally the parent kills us long before the end.
    for n in 0..env.count {
        let id = format!("{}.{n}", env.child);
        let values = |rng: &mut Rng, most: u64| -> Vec<String> {
            (0..rng.below(most + 1))
                .map(|j| format!("{id}.{j}"))
                .collect()
        };
        let pick = segments[usize::try_from(rng.below(segments.len() as u64)).unwrap()];
        let roll = rng.below(100);
        let op = if roll < 4 && segments.len() < MAX_SEGMENTS {
            Op::Create {
                segment: SegmentId::new(),
                values: values(&mut rng, 2),
            }
        } else if roll < 8 && segments.len() < MAX_SEGMENTS {
            let count = store.entry_count(env.session, pick).unwrap();
            Op::Fork {
                source: pick,
                at: rng.below(count + 1),
                into: SegmentId::new(),
            }
        } else if roll < 14 {
            let count = store.entry_count(env.session, pick).unwrap();
            Op::Truncate {
                segment: pick,
                keep: count - rng.below(count.min(3) + 1),
            }
        } else {
            let mut v = values(&mut rng, 2);
            if v.is_empty() {
                v.push(format!("{id}.0"));
            }
            Op::Append {
                segment: pick,
                values: v,
            }
        };
        say(&op.to_line(&id));
        op.run(&store, env.session).unwrap();
        say(&format!("ACK {id}"));
        match op {
            Op::Create { segment, .. } => segments.push(segment),
            Op::Fork { into, .. } => segments.push(into),
            _ => {}
        }
    }
}

/// The store's actual state: every listed segment, read strictly. Only a torn tail is allowed
/// besides clean lines.
fn actual_state(store: &FsStore, session: SessionId) -> Model {
    let mut out = Model::new();
    for info in store.list_segments(session).unwrap() {
        assert!(info.damage.is_none(), "{info:?}");
        let mut entries = Vec::new();
        let report = store
            .replay(
                session,
                info.segment,
                &ReplayOptions::strict(),
                |_, v: String| {
                    entries.push(v);
                    Ok(())
                },
            )
            .unwrap();
        assert!(report.is_clean(), "{report:?}");
        out.insert(info.segment, entries);
    }
    out
}

#[test]
fn a_writer_killed_at_random_moments_loses_no_acknowledged_entry() {
    let seed = seed_from_env_or_clock(SEED);
    eprintln!("kill loop seed {seed} (set {SEED} to replay it)");
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let session = SessionId::new();
    let first = SegmentId::new();
    FsStore::open(&root)
        .unwrap()
        .create::<String>(session, first, &[])
        .unwrap();
    let mut model = Model::from([(first, Vec::new())]);
    let (mut kills, mut acked, mut in_flight, mut in_flight_done) = (0u32, 0u64, 0u32, 0u32);

    for iteration in 0..KILL_ITERATIONS {
        let kill_after = 1 + rng.below(40);
        let mut child = spawn_child(
            "multiprocess::child_crasher",
            &[
                (ROOT, root.display().to_string()),
                (SESSION, session.to_string()),
                (CHILD, iteration.to_string()),
                (COUNT, "5000".to_owned()),
                (SEED, rng.next_u64().to_string()),
            ],
        );
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let (mut started, mut acks, mut killed) = (false, 0, false);
        let mut pending: Option<(String, Op)> = None;
        let mut line = Vec::new();
        loop {
            line.clear();
            if stdout.read_until(b'\n', &mut line).unwrap() == 0 || line.last() != Some(&b'\n') {
                break;
            }
            let text = String::from_utf8(line.clone()).unwrap();
            let Some(msg) = message(&text) else {
                continue; // libtest's own chatter
            };
            let words: Vec<&str> = msg.split_whitespace().collect();
            match words.as_slice() {
                ["START"] => started = true,
                ["OP", id, rest @ ..] => {
                    assert!(pending.is_none(), "one operation at a time");
                    pending = Some(((*id).to_owned(), Op::parse(rest)));
                }
                ["ACK", id] => {
                    let (pending_id, op) = pending.take().expect("ACK without OP");
                    assert_eq!(*id, pending_id);
                    op.apply(&mut model);
                    acks += 1;
                    if !killed && acks >= kill_after {
                        // SIGKILL: wherever the child is, it stops there.
                        child.kill().unwrap();
                        killed = true;
                    }
                }
                other => panic!("unexpected message {other:?}"),
            }
        }
        let status = child.wait().unwrap();
        assert!(started, "iteration {iteration}: the child never ran");
        assert!(
            status.success() || status.signal() == Some(9),
            "iteration {iteration}: child failed: {status}"
        );
        kills += u32::from(killed);
        acked += acks;

        let store = FsStore::open(&root).unwrap();
        let actual = actual_state(&store, session);
        // The operation in flight at the kill happened entirely or not at all.
        match pending {
            None => assert_eq!(actual, model, "iteration {iteration} (seed {seed})"),
            Some((id, op)) => {
                let mut after = model.clone();
                op.apply(&mut after);
                assert!(
                    actual == model || actual == after,
                    "iteration {iteration} (seed {seed}): op {id} {op:?} half done:\n\
                     actual {actual:?}\nbefore {model:?}\nafter {after:?}"
                );
                in_flight += 1;
                in_flight_done += u32::from(actual == after);
                model = actual;
            }
        }
        // And the store takes writes again, in every segment.
        for (segment, entries) in &mut model {
            let value = format!("parent.{iteration}");
            let tip = store.append(session, *segment, &value).unwrap();
            entries.push(value);
            assert_eq!(tip.count, entries.len() as u64);
            let report = store.verify(session, *segment).unwrap();
            assert!(
                report.is_clean() && report.torn_tail.is_none(),
                "{report:?}"
            );
        }
        assert_eq!(actual_state(&store, session), model);
    }
    eprintln!(
        "kill loop: {kills} kills, {acked} acknowledged operations, {in_flight} operations in \
         flight at a kill ({in_flight_done} of them completed), {} segments",
        model.len()
    );
    assert!(kills > 0, "no child was ever killed mid-run");
}
