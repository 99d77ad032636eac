//! `kill -9` loops: a writer process in each durability mode is killed at random moments, a
//! thousand times or more, on one store that lives through all of it.
//!
//! The worker (this test binary re-executed, see `multiprocess.rs`) appends numbered entries to
//! one segment and, after each append returned, writes `ACK n` to its stdout (a pipe): `n`
//! entries are acknowledged. The parent kills it a random few milliseconds in (sometimes before
//! it even opened the store), then checks, reading only what is new since the last kill: every
//! acknowledged entry is there, each entry's number is its sequence number (no gap, no
//! duplicate, nothing reordered), nothing once seen is gone, and the end of the file is clean
//! or a torn tail a reader reports and the next writer takes care of. Every hundred kills, and
//! at the end, the whole segment is verified and read again.
//!
//! A process kill keeps the page cache, so `Buffered` promises as much as `Sync` here; what
//! differs is the code the kill lands in (the `fdatasync`s of `Sync`). Power cuts are
//! `powercut.rs`'s.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use annals::testing::support::{seed_from_env_or_clock, Rng};
use annals::{
    Durability, FsOptions, FsStore, ReplayOptions, SegmentId, SessionId, Store, StoreExt,
};
use serde::{Deserialize, Serialize};

use crate::multiprocess::{message, say, spawn_child, ChildEnv, ROOT, SEED, SEGMENT, SESSION};

/// Kills per durability mode (at least this many kills of a running worker).
const KILLS: u32 = 1000;
const MODE: &str = "ANNALS_IT_DURABILITY";
/// Overrides [`KILLS`], for a longer soak by hand.
const KILLS_ENV: &str = "ANNALS_IT_KILLS";
/// How often the whole segment is verified and read again.
const FULL_CHECK_EVERY: u32 = 100;

/// The entry the worker appends: its own sequence number, and sometimes padding that makes it
/// too long for a line (a blob).
#[derive(Debug, Serialize, Deserialize)]
struct Numbered {
    n: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pad: String,
}

#[test]
fn child_acker() {
    let Some(env) = ChildEnv::get("child_acker") else {
        return;
    };
    let durability = match std::env::var(MODE).as_deref() {
        Ok("sync") => Durability::Sync,
        _ => Durability::Buffered,
    };
    let options = FsOptions {
        durability,
        ..FsOptions::default()
    };
    let store = FsStore::open_with(&env.root, options).unwrap();
    let mut rng = Rng::new(env.seed);
    let mut next = store.entry_count(env.session, env.segment).unwrap();
    say(&format!("START {next}"));
    // Bounded: the parent kills us long before the end.
    for _ in 0..1_000_000 {
        let batch: Vec<Numbered> = (0..1 + rng.below(4))
            .map(|i| Numbered {
                n: next + i,
                // One batch in 50 has an entry kept as a blob.
                pad: if i == 0 && rng.below(50) == 0 {
                    "p".repeat(6000)
                } else {
                    String::new()
                },
            })
            .collect();
        let tip = store
            .append_batch(env.session, env.segment, &batch)
            .unwrap();
        next += batch.len() as u64;
        assert_eq!(
            tip.count, next,
            "the only writer's entries are numbered in order"
        );
        say(&format!("ACK {next}"));
    }
}

/// What the parent learned from one worker's run.
struct Run {
    /// Entries the worker saw in the segment when it started (`None` if killed before).
    started_at: Option<u64>,
    /// Entries acknowledged: every append up to this count returned.
    acked: Option<u64>,
}

/// Starts a worker, kills it at a random moment, and collects what it acknowledged. Fails
/// unless the kill is what ended it.
fn run_and_kill(rng: &mut Rng, env: &[(&str, String)]) -> Run {
    let mut child = spawn_child("kills::child_acker", env);
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut started_at = None;
    // One run in twenty is killed while the worker starts: opening the store, taking the
    // segment, recovering the last run's tail.
    if rng.below(20) == 0 {
        std::thread::sleep(Duration::from_micros(rng.below(5000)));
    } else {
        let mut line = String::new();
        while stdout.read_line(&mut line).unwrap() > 0 {
            if let Some(n) = message(&line).and_then(|m| m.strip_prefix("START ")) {
                started_at = Some(n.trim().parse().unwrap());
                break;
            }
            line.clear();
        }
        std::thread::sleep(Duration::from_micros(rng.below(4000)));
    }
    // SIGKILL: wherever the worker is, it stops there. It may have ended already (a failure,
    // reported below), in which case the kill finds nothing to kill.
    let _ = child.kill();
    let status = child.wait().unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let mut acked = None;
    for line in rest.lines() {
        // Anything else is libtest's own chatter.
        if let Some(mut words) = message(line).map(str::split_whitespace) {
            match (words.next(), words.next()) {
                (Some("ACK"), Some(n)) => acked = Some(n.parse().unwrap()),
                (Some("START"), Some(n)) => started_at = Some(n.parse().unwrap()),
                other => panic!("unexpected message {other:?} in {line:?}"),
            }
        }
    }
    assert!(
        status.signal() == Some(9),
        "the worker ended on its own ({status}) instead of being killed; its output:\n{rest}"
    );
    Run { started_at, acked }
}

/// Reads the segment from entry `from` on, checking that each entry's number is its sequence
/// number. Returns the entry count and whether a torn tail ends the file.
fn check_from(store: &FsStore, session: SessionId, segment: SegmentId, from: u64) -> (u64, bool) {
    let mut next = from;
    let options = ReplayOptions {
        from_seq: from,
        ..ReplayOptions::strict()
    };
    let report = store
        .replay(session, segment, &options, |meta, e: Numbered| {
            assert_eq!(meta.seq, next, "sequence numbers are contiguous");
            assert_eq!(e.n, meta.seq, "entry {} sits at seq {}", e.n, meta.seq);
            next += 1;
            Ok(())
        })
        .unwrap();
    assert!(report.is_clean(), "{report:?}");
    (next, report.torn_tail.is_some())
}

/// Kills a worker of `durability` [`KILLS`] times and checks the segment after each kill.
fn kill_loop(durability: &str) {
    let seed = seed_from_env_or_clock(SEED);
    let kills_wanted: u32 = std::env::var(KILLS_ENV).map_or(KILLS, |k| k.parse().unwrap());
    eprintln!("kill loop ({durability}) seed {seed} (set {SEED} to replay it)");
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let (session, segment) = (SessionId::new(), SegmentId::new());
    FsStore::open(&root)
        .unwrap()
        .create::<Numbered>(session, segment, &[])
        .unwrap();
    let env = |rng: &mut Rng| {
        vec![
            (ROOT, root.display().to_string()),
            (SESSION, session.to_string()),
            (SEGMENT, segment.to_string()),
            (MODE, durability.to_owned()),
            (SEED, rng.next_u64().to_string()),
        ]
    };
    let started = Instant::now();
    let (mut kills, mut seen, mut torn, mut unacked, mut before_start) = (0u32, 0u64, 0, 0u64, 0);
    while kills < kills_wanted {
        let env = env(&mut rng);
        let run = run_and_kill(&mut rng, &env);
        kills += 1;
        match run.started_at {
            // The worker saw everything that was there, and nothing more.
            Some(at) => assert_eq!(at, seen, "kill {kills}: the worker started at {at}"),
            None => before_start += 1,
        }
        let store = FsStore::open(&root).unwrap();
        let (count, torn_tail) = check_from(&store, session, segment, seen);
        let acked = run.acked.unwrap_or(seen);
        assert!(
            count >= acked,
            "kill {kills} (seed {seed}): {acked} entries acknowledged, {count} in the segment"
        );
        torn += u32::from(torn_tail);
        unacked += count - acked;
        seen = count;
        if kills % FULL_CHECK_EVERY == 0 || kills == kills_wanted {
            let report = store.verify(session, segment).unwrap();
            assert!(report.is_clean(), "kill {kills}: {report:?}");
            assert_eq!(report.entries, seen, "kill {kills}: {report:?}");
            assert_eq!(check_from(&store, session, segment, 0).0, seen);
        }
    }
    // The next writer takes the segment whatever the last kill left.
    let store = FsStore::open(&root).unwrap();
    let tip = store
        .append(
            session,
            segment,
            &Numbered {
                n: seen,
                pad: String::new(),
            },
        )
        .unwrap();
    assert_eq!(tip.count, seen + 1);
    assert_eq!(check_from(&store, session, segment, 0), (seen + 1, false));
    eprintln!(
        "kill loop ({durability}): {kills} kills ({before_start} before the worker started) in \
         {:.1} s, {seen} entries, {unacked} written but not yet acknowledged at a kill, {torn} \
         torn tails",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn a_sync_writer_killed_a_thousand_times_loses_no_acknowledged_entry() {
    kill_loop("sync");
}

#[test]
fn a_buffered_writer_killed_a_thousand_times_loses_no_acknowledged_entry() {
    kill_loop("buffered");
}
