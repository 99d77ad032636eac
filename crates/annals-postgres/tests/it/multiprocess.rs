//! Several processes, each with its own `PgStore` and pool, on one database: appending to one
//! segment and to separate ones, the concurrent-writer detector across processes, a one-shot
//! race with exactly one winner, and truncates and forks racing appends. Nothing is lost or
//! duplicated, and sequence numbers stay contiguous.
//!
//! The workers are this test binary run again with the ignored test [`worker`] selected and
//! their orders in the environment; each prints what it did, one JSON object per line.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};

use annals::{Error, SegmentId, SegmentWriter, SessionId, Store, StoreExt};
use annals_postgres::{PgOptions, PgStore};
use serde_json::{json, Value};

use crate::support;

const PREFIX: &str = "ANNALS-WORKER ";

/// The report on a line of a worker's output (libtest may print its own words before it).
fn report_in(line: &str) -> Option<&str> {
    line.find(PREFIX).and_then(|i| line.get(i + PREFIX.len()..))
}

/// What a worker process is told to do.
#[derive(serde::Serialize, serde::Deserialize)]
struct Orders {
    url: String,
    schema: String,
    session: SessionId,
    segment: SegmentId,
    mode: String,
    id: u64,
    count: u64,
}

/// Runs as a worker when started by a test below; run directly it has no orders and fails.
#[test]
#[ignore = "a worker process of the multi-process tests, started by them"]
fn worker() {
    let orders: Orders =
        serde_json::from_str(&std::env::var("ANNALS_PG_WORKER").expect("started without orders"))
            .unwrap();
    let store = PgStore::open_with(
        PgOptions::new(orders.url.clone())
            .schema(orders.schema.clone())
            .pool_size(2),
    )
    .unwrap();
    let (session, segment, w) = (orders.session, orders.segment, orders.id);
    let say = |v: Value| {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{PREFIX}{v}").unwrap();
        out.flush().unwrap();
    };
    match orders.mode.as_str() {
        "append" => {
            for i in 0..orders.count {
                let tip = store
                    .append(session, segment, &json!({ "w": w, "i": i }))
                    .unwrap();
                say(json!({ "i": i, "seq": tip.count - 1, "generation": tip.generation }));
            }
        }
        "detector" => {
            let mut writer = SegmentWriter::open(&store, session, segment).unwrap();
            let mut i = 0;
            while i < orders.count {
                let at = writer.tip();
                match writer.append(&json!({ "w": w, "i": i })) {
                    Ok(_) => {
                        say(json!({ "i": i, "seq": at.count }));
                        i += 1;
                    }
                    Err(Error::ConcurrentWriter { .. }) => {
                        writer.resync().unwrap();
                    }
                    Err(e) => panic!("worker {w}: {e}"),
                }
            }
        }
        "race" => {
            let mut writer = SegmentWriter::open(&store, session, segment).unwrap();
            say(json!({ "ready": true }));
            let mut go = String::new();
            std::io::stdin().read_line(&mut go).unwrap();
            let won = match writer.append(&json!({ "w": w })) {
                Ok(_) => true,
                Err(Error::ConcurrentWriter { .. }) => false,
                Err(e) => panic!("worker {w}: {e}"),
            };
            say(json!({ "won": won }));
        }
        "replay_rss" => {
            let mut n = 0u64;
            let report = store
                .replay(
                    session,
                    segment,
                    &annals::ReplayOptions::strict(),
                    |_, _v: Value| {
                        n += 1;
                        Ok(())
                    },
                )
                .unwrap();
            assert_eq!(report.entries, n);
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            let peak_kib: u64 = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap();
            say(json!({ "entries": n, "peak_kib": peak_kib }));
        }
        other => panic!("unknown mode {other}"),
    }
}

fn spawn(server: &annals_postgres::test_server::Server, store: &PgStore, orders: Orders) -> Child {
    let orders = Orders {
        url: server.url(),
        schema: store.schema().to_owned(),
        ..orders
    };
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "multiprocess::worker",
            "--ignored",
            "--nocapture",
        ])
        .args(["--test-threads", "1"])
        .env("ANNALS_PG_WORKER", serde_json::to_string(&orders).unwrap())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

fn orders(session: SessionId, segment: SegmentId, mode: &str, id: u64, count: u64) -> Orders {
    Orders {
        url: String::new(),
        schema: String::new(),
        session,
        segment,
        mode: mode.to_owned(),
        id,
        count,
    }
}

/// Reads a worker's reports until it exits; panics if it failed.
fn reports(child: Child) -> Vec<Value> {
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "a worker failed: {}", out.status);
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(report_in)
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn stored(store: &PgStore, session: SessionId, segment: SegmentId) -> Vec<(u64, u64)> {
    let values: Vec<Value> = store.read(session, segment).unwrap();
    values
        .iter()
        .map(|v| (v["w"].as_u64().unwrap(), v["i"].as_u64().unwrap()))
        .collect()
}

/// Every entry at most once, and each writer's in the order it appended them.
fn assert_unique_and_ordered(entries: &[(u64, u64)]) {
    let unique: BTreeSet<_> = entries.iter().collect();
    assert_eq!(unique.len(), entries.len(), "duplicated entries");
    let mut last: BTreeMap<u64, u64> = BTreeMap::new();
    for (w, i) in entries {
        if let Some(prev) = last.insert(*w, *i) {
            assert!(prev < *i, "writer {w}: {i} after {prev}");
        }
    }
}

#[test]
fn processes_appending_to_one_segment_get_unique_contiguous_sequence_numbers() {
    let Some(server) = support::server() else {
        return;
    };
    let (store, _guard) = support::open(support::options(&server));
    let (session, segment) = (SessionId::new(), SegmentId::new());
    store.create::<Value>(session, segment, &[]).unwrap();
    const WORKERS: u64 = 4;
    const EACH: u64 = 50;
    let children: Vec<Child> = (0..WORKERS)
        .map(|w| spawn(&server, &store, orders(session, segment, "append", w, EACH)))
        .collect();
    let acks: Vec<Vec<Value>> = children.into_iter().map(reports).collect();
    let stored = stored(&store, session, segment);
    assert_eq!(stored.len() as u64, WORKERS * EACH);
    assert_unique_and_ordered(&stored);
    for (w, acks) in (0..).zip(&acks) {
        assert_eq!(acks.len() as u64, EACH);
        for a in acks {
            let seq = usize::try_from(a["seq"].as_u64().unwrap()).unwrap();
            assert_eq!(stored[seq], (w, a["i"].as_u64().unwrap()), "ack {a}");
        }
    }
    let seqs: Vec<u64> = {
        let mut seqs = Vec::new();
        store
            .replay(
                session,
                segment,
                &annals::ReplayOptions::strict(),
                |m, _: Value| {
                    seqs.push(m.seq);
                    Ok(())
                },
            )
            .unwrap();
        seqs
    };
    assert_eq!(seqs, (0..WORKERS * EACH).collect::<Vec<_>>());
}

#[test]
fn processes_appending_to_their_own_segments_do_not_disturb_each_other() {
    let Some(server) = support::server() else {
        return;
    };
    let (store, _guard) = support::open(support::options(&server));
    let session = SessionId::new();
    let segments: Vec<SegmentId> = (0..4).map(|_| SegmentId::new()).collect();
    for &segment in &segments {
        store.create::<Value>(session, segment, &[]).unwrap();
    }
    let children: Vec<Child> = (0..)
        .zip(&segments)
        .map(|(w, &segment)| spawn(&server, &store, orders(session, segment, "append", w, 60)))
        .collect();
    for child in children {
        reports(child);
    }
    for (w, &segment) in (0..).zip(&segments) {
        let expected: Vec<(u64, u64)> = (0..60).map(|i| (w, i)).collect();
        assert_eq!(stored(&store, session, segment), expected);
        assert!(store.verify(session, segment).unwrap().is_clean());
    }
}

#[test]
fn detector_writers_in_several_processes_never_both_land_on_one_tip() {
    let Some(server) = support::server() else {
        return;
    };
    let (store, _guard) = support::open(support::options(&server));
    let (session, segment) = (SessionId::new(), SegmentId::new());
    store.create::<Value>(session, segment, &[]).unwrap();
    let children: Vec<Child> = (0..4)
        .map(|w| spawn(&server, &store, orders(session, segment, "detector", w, 20)))
        .collect();
    let landed: Vec<Vec<Value>> = children.into_iter().map(reports).collect();
    let stored = stored(&store, session, segment);
    assert_eq!(stored.len(), 80);
    for (w, landed) in (0..).zip(&landed) {
        for l in landed {
            let seq = usize::try_from(l["seq"].as_u64().unwrap()).unwrap();
            assert_eq!(
                stored[seq],
                (w, l["i"].as_u64().unwrap()),
                "writer {w} landed {l} on a tip someone else had"
            );
        }
    }
}

#[test]
fn a_detector_race_across_processes_has_exactly_one_winner() {
    let Some(server) = support::server() else {
        return;
    };
    let (store, _guard) = support::open(support::options(&server));
    let (session, segment) = (SessionId::new(), SegmentId::new());
    store
        .create(session, segment, &support::entries(0..3))
        .unwrap();
    let mut children: Vec<Child> = (0..6)
        .map(|w| spawn(&server, &store, orders(session, segment, "race", w, 1)))
        .collect();
    // Everyone has opened its writer at the same tip before anyone appends.
    let mut outputs = Vec::new();
    for child in &mut children {
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while report_in(&line).is_none() {
            line.clear();
            assert!(out.read_line(&mut line).unwrap() > 0, "a worker died");
        }
        outputs.push(out);
    }
    for child in &mut children {
        writeln!(child.stdin.as_mut().unwrap(), "go").unwrap();
    }
    let mut winners = Vec::new();
    for (w, (mut child, out)) in (0u64..).zip(children.into_iter().zip(outputs)) {
        // Read to the end: a worker whose output pipe is closed early fails writing to it.
        let line = out
            .lines()
            .map(Result::unwrap)
            .filter_map(|l| report_in(&l).map(str::to_owned))
            .last()
            .unwrap();
        assert!(child.wait().unwrap().success());
        let v: Value = serde_json::from_str(&line).unwrap();
        if v["won"] == json!(true) {
            winners.push(w);
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let values: Vec<Value> = store.read(session, segment).unwrap();
    assert_eq!(values.len(), 4);
    assert_eq!(values[3], json!({ "w": winners[0] }));
}

#[test]
fn truncates_and_forks_racing_appends_from_processes_lose_and_duplicate_nothing() {
    let Some(server) = support::server() else {
        return;
    };
    let (store, _guard) = support::open(support::options(&server));
    let (session, segment) = (SessionId::new(), SegmentId::new());
    store.create::<Value>(session, segment, &[]).unwrap();
    let children: Vec<Child> = (0..3)
        .map(|w| spawn(&server, &store, orders(session, segment, "append", w, 80)))
        .collect();
    let mut forks = Vec::new();
    for round in 0..12 {
        std::thread::sleep(std::time::Duration::from_millis(40));
        let count = store.tip(session, segment).unwrap().count;
        if round % 2 == 0 {
            store.truncate(session, segment, count / 2).unwrap();
        } else {
            let into = SegmentId::new();
            let tip = store.fork(session, segment, count, into).unwrap();
            forks.push((into, tip.count));
        }
    }
    let acks: Vec<Vec<Value>> = children.into_iter().map(reports).collect();
    let final_tip = store.tip(session, segment).unwrap();
    let stored = stored(&store, session, segment);
    assert_eq!(stored.len() as u64, final_tip.count);
    assert_unique_and_ordered(&stored);
    let position: BTreeMap<(u64, u64), usize> =
        stored.iter().enumerate().map(|(p, e)| (*e, p)).collect();
    for (w, acks) in (0u64..).zip(&acks) {
        assert_eq!(acks.len(), 80, "writer {w} did not finish");
        for a in acks {
            let (i, seq, generation) = (
                a["i"].as_u64().unwrap(),
                usize::try_from(a["seq"].as_u64().unwrap()).unwrap(),
                a["generation"].as_u64().unwrap(),
            );
            match position.get(&(w, i)) {
                // An entry never moves: where it is, it is where its append said.
                Some(&p) => assert_eq!(p, seq, "entry ({w}, {i}) moved"),
                // Only a truncate after it can have removed it.
                None => assert!(
                    generation < final_tip.generation,
                    "entry ({w}, {i}) acknowledged at generation {generation} is lost"
                ),
            }
        }
    }
    for (fork, count) in forks {
        let entries = self::stored(&store, session, fork);
        assert_eq!(entries.len() as u64, count);
        assert_unique_and_ordered(&entries);
        assert!(store.verify(session, fork).unwrap().is_clean());
    }
    assert!(store.verify(session, segment).unwrap().is_clean());
}

#[test]
fn a_replay_of_a_segment_far_larger_than_a_page_stays_in_bounded_memory() {
    let Some(server) = support::server() else {
        return;
    };
    let (store, _guard) = support::open(support::options(&server));
    let (session, segment) = (SessionId::new(), SegmentId::new());
    store.create::<Value>(session, segment, &[]).unwrap();
    // 64 MiB of entries of 2 KiB (inline), and a few of 1 MiB (kept as blobs).
    let pad = "p".repeat(2040);
    for b in 0..32u64 {
        let batch: Vec<Value> = (0..1024)
            .map(|i| json!({ "b": b, "i": i, "pad": pad }))
            .collect();
        store.append_batch(session, segment, &batch).unwrap();
        store
            .append(session, segment, &json!({ "big": "q".repeat(1 << 20) }))
            .unwrap();
    }
    let child = spawn(
        &server,
        &store,
        orders(session, segment, "replay_rss", 0, 0),
    );
    let report = reports(child).pop().unwrap();
    assert_eq!(report["entries"], json!(32 * 1025));
    let peak_mib = report["peak_kib"].as_u64().unwrap() / 1024;
    println!("a replay of 96 MiB peaked at {peak_mib} MiB of RSS");
    // The child's whole peak, test binary and runtime included: well under the 96 MiB it read.
    assert!(peak_mib < 48, "a replay of 96 MiB peaked at {peak_mib} MiB");
}
