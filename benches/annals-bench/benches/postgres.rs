//! `PgStore` against what users write by hand on PostgreSQL, and against the filesystem store,
//! measured interleaved on a throwaway cluster this binary starts (fsync on, as in production).
//!
//! Contenders take turns — a few operations each, round after round, in rotating order — so that
//! each sees the same machine and the same disk (both are shared and noisy here). Not criterion:
//! it prints one table per workload and writes `postgres_interleaved.json` next to criterion's
//! results.
//!
//! The hand-written contenders are what agent SDKs do: a `messages` table with a `jsonb` body,
//! one `INSERT` per message, the sequence number from `SELECT max(seq) + 1` or a serial id.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    reason = "a benchmark, not library code: a broken setup is reported by panicking"
)]

use std::time::{Duration, Instant};

use annals::{Durability, FsOptions, FsStore, RawEntry, SegmentId, SessionId, Store, StoreExt};
use annals_bench::entries::{Corpus, Variant};
use annals_bench::setup::{self, pick, quick};
use annals_postgres::test_server::TestServer;
use annals_postgres::{PgOptions, PgStore};
use postgres::{Client, NoTls};
use serde_json::Value;

const GROUP: &str = "postgres_interleaved";
/// Operations per contender per turn.
const TURN: usize = 4;

/// One contender of a workload: a name and one operation.
struct Contender<'a> {
    name: &'static str,
    op: Box<dyn FnMut(u64) + 'a>,
}

fn contender<'a>(name: &'static str, op: impl FnMut(u64) + 'a) -> Contender<'a> {
    Contender {
        name,
        op: Box::new(op),
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

/// Runs the contenders in turns for `budget` and returns each one's median latency in µs.
fn interleave(workload: &str, budget: Duration, contenders: &mut [Contender<'_>]) -> Vec<f64> {
    let mut lat: Vec<Vec<f64>> = vec![Vec::new(); contenders.len()];
    let mut next = 0u64;
    let start = Instant::now();
    let mut rounds = 0usize;
    while start.elapsed() < budget || rounds < 2 {
        for k in 0..contenders.len() {
            let c = (k + rounds) % contenders.len();
            for _ in 0..TURN {
                let t = Instant::now();
                (contenders[c].op)(next);
                lat[c].push(t.elapsed().as_nanos() as f64 / 1000.0);
                next += 1;
            }
        }
        rounds += 1;
    }
    let medians: Vec<f64> = lat
        .iter_mut()
        .map(|l| {
            l.sort_by(f64::total_cmp);
            percentile(l, 0.5)
        })
        .collect();
    println!("\n{workload} ({rounds} rounds of {TURN}):");
    for (c, m) in contenders.iter().zip(&medians) {
        println!(
            "  {:<34} {:>10.1} µs   {:>6.2}× annals",
            c.name,
            m,
            m / medians[0]
        );
    }
    medians
}

struct Bench {
    server: TestServer,
    results: serde_json::Map<String, Value>,
    budget: Duration,
}

impl Bench {
    fn client(&self) -> Client {
        Client::connect(&self.server.url(), NoTls).expect("connect")
    }

    fn store(&self, schema: &str, pool: u32) -> PgStore {
        PgStore::open_with(
            PgOptions::new(self.server.url())
                .schema(schema)
                .pool_size(pool),
        )
        .expect("open PgStore")
    }

    fn record(&mut self, workload: &str, names: &[&str], medians: &[f64]) {
        let mut m = serde_json::Map::new();
        for (n, v) in names.iter().zip(medians) {
            m.insert((*n).to_owned(), serde_json::json!(v));
        }
        self.results.insert(workload.to_owned(), Value::Object(m));
    }

    fn run(&mut self, workload: &str, contenders: &mut [Contender<'_>]) {
        let medians = interleave(workload, self.budget, contenders);
        let names: Vec<&str> = contenders.iter().map(|c| c.name).collect();
        self.record(workload, &names, &medians);
    }
}

/// The hand-written tables: what SDKs create.
fn hand_tables(c: &mut Client) {
    c.batch_execute(
        "DROP TABLE IF EXISTS messages, bare;
         CREATE TABLE messages (id bigserial PRIMARY KEY, session uuid NOT NULL,
                                seq bigint NOT NULL, body jsonb NOT NULL,
                                created_at timestamptz NOT NULL DEFAULT now(),
                                UNIQUE (session, seq));
         CREATE TABLE bare (id bigserial PRIMARY KEY, session uuid NOT NULL, body jsonb NOT NULL);
         CREATE INDEX ON bare (session, id);",
    )
    .expect("create the hand-written tables");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    if !filters.is_empty() && !filters.iter().any(|f| GROUP.contains(f.as_str())) {
        return;
    }
    let base = setup::init(env!("CARGO_TARGET_TMPDIR"));
    let server = match TestServer::start() {
        Ok(s) => s,
        Err(why) => {
            let first = why.lines().next().unwrap_or_default();
            println!("{GROUP}: skipped, no PostgreSQL server: {first}");
            return;
        }
    };
    let mut bench = Bench {
        server,
        results: serde_json::Map::new(),
        budget: pick(Duration::from_secs(15), Duration::from_millis(300)),
    };
    let corpus = Corpus::get(Variant::Small);
    let raw = |i: u64| corpus.raw_at(i);
    let json = |i: u64| corpus.json_at(i);

    // --- one append ------------------------------------------------------------------------
    {
        let store = bench.store("bench_one", 1);
        let fs = FsStore::open_with(
            base.join("pg-fs-one"),
            FsOptions {
                durability: Durability::Sync,
                ..FsOptions::default()
            },
        )
        .unwrap();
        let (session, segment) = (SessionId::new(), SegmentId::new());
        store.create_segment(session, segment, &[]).unwrap();
        fs.create_segment(session, segment, &[]).unwrap();
        let mut bare = bench.client();
        let mut maxp1 = bench.client();
        hand_tables(&mut bare);
        let insert = bare
            .prepare("INSERT INTO bare (session, body) VALUES ($1, $2::text::jsonb)")
            .unwrap();
        let max = maxp1
            .prepare("SELECT coalesce(max(seq) + 1, 0) FROM messages WHERE session = $1")
            .unwrap();
        let ins = maxp1
            .prepare("INSERT INTO messages (session, seq, body) VALUES ($1, $2, $3::text::jsonb)")
            .unwrap();
        let s = *session.as_uuid();
        let mut writer = annals::SegmentWriter::open(&store, session, segment).unwrap();
        bench.run(
            "append_one_sync",
            &mut [
                contender("annals PgStore append", |i| {
                    store.append_raw(session, segment, raw(i)).unwrap();
                }),
                contender("annals PgStore SegmentWriter", |i| {
                    if writer.append_raw(std::slice::from_ref(raw(i))).is_err() {
                        writer.resync().unwrap();
                    }
                }),
                contender("bare INSERT (serial id, prepared)", |i| {
                    bare.execute(&insert, &[&s, &json(i)]).unwrap();
                }),
                contender("SELECT max(seq)+1, then INSERT", |i| {
                    let next: i64 = maxp1.query_one(&max, &[&s]).unwrap().get(0);
                    maxp1.execute(&ins, &[&s, &next, &json(i)]).unwrap();
                }),
                contender("FsStore append (Sync)", |i| {
                    fs.append_raw(session, segment, raw(i)).unwrap();
                }),
            ],
        );
    }

    // --- a batch of 64 ---------------------------------------------------------------------
    {
        let store = bench.store("bench_batch", 1);
        let (session, segment) = (SessionId::new(), SegmentId::new());
        store.create_segment(session, segment, &[]).unwrap();
        let mut hand = bench.client();
        hand_tables(&mut hand);
        let insert = hand
            .prepare("INSERT INTO bare (session, body) VALUES ($1, $2::text::jsonb)")
            .unwrap();
        let s = *session.as_uuid();
        let batch =
            |i: u64| -> Vec<RawEntry> { (0..64).map(|k| raw(i * 64 + k).clone()).collect() };
        bench.run(
            "append_batch64_sync",
            &mut [
                contender("annals PgStore append_batch (64)", |i| {
                    store.append_batch_raw(session, segment, &batch(i)).unwrap();
                }),
                contender("64 INSERTs in one transaction", |i| {
                    let mut tx = hand.transaction().unwrap();
                    for k in 0..64 {
                        tx.execute(&insert, &[&s, &json(i * 64 + k)]).unwrap();
                    }
                    tx.commit().unwrap();
                }),
            ],
        );
    }

    // --- 8 workers -------------------------------------------------------------------------
    for one_segment in [false, true] {
        let workload = if one_segment {
            "workers8_one_segment"
        } else {
            "workers8_separate_segments"
        };
        let store = bench.store(&format!("bench_{workload}"), 8);
        let session = SessionId::new();
        let segments: Vec<SegmentId> = (0..8).map(|_| SegmentId::new()).collect();
        for s in &segments {
            store.create_segment(session, *s, &[]).unwrap();
        }
        let mut setup_client = bench.client();
        hand_tables(&mut setup_client);
        let url = bench.server.url();
        let per_op = |f: &(dyn Fn(usize, u64) + Sync)| {
            // 8 threads, 16 appends each: the time per append over all of them.
            let t = Instant::now();
            std::thread::scope(|scope| {
                for w in 0..8 {
                    scope.spawn(move || {
                        for i in 0..16u64 {
                            f(w, i);
                        }
                    });
                }
            });
            t.elapsed().as_nanos() as f64 / 1000.0 / 128.0
        };
        let hand_clients: Vec<std::sync::Mutex<Client>> = (0..8)
            .map(|_| std::sync::Mutex::new(Client::connect(&url, NoTls).unwrap()))
            .collect();
        let s = *session.as_uuid();
        let mut lat = [Vec::new(), Vec::new()];
        let start = Instant::now();
        let mut rounds = 0;
        while start.elapsed() < bench.budget || rounds < 2 {
            for k in 0..2 {
                let c = (k + rounds) % 2;
                let v = if c == 0 {
                    per_op(&|w, i| {
                        let seg = if one_segment {
                            segments[0]
                        } else {
                            segments[w]
                        };
                        store.append_raw(session, seg, raw(i)).unwrap();
                    })
                } else {
                    per_op(&|w, i| {
                        let mut c = hand_clients[w].lock().unwrap();
                        c.execute(
                            "INSERT INTO bare (session, body) VALUES ($1, $2::text::jsonb)",
                            &[&s, &json(i)],
                        )
                        .unwrap();
                    })
                };
                lat[c].push(v);
            }
            rounds += 1;
        }
        let medians: Vec<f64> = lat
            .iter_mut()
            .map(|l| {
                l.sort_by(f64::total_cmp);
                percentile(l, 0.5)
            })
            .collect();
        println!("\n{workload} (µs per append, 8 threads × 16, {rounds} rounds):");
        let names = ["annals PgStore (pool 8)", "bare INSERT (8 connections)"];
        for (n, m) in names.iter().zip(&medians) {
            println!("  {n:<34} {m:>10.1} µs   {:>6.2}× annals", m / medians[0]);
        }
        bench.record(workload, &names, &medians);
    }

    // --- replay ----------------------------------------------------------------------------
    {
        let n = pick(100_000u64, 2_000);
        let store = bench.store("bench_replay", 2);
        let (session, segment) = (SessionId::new(), SegmentId::new());
        store.create_segment(session, segment, &[]).unwrap();
        let mut hand = bench.client();
        hand_tables(&mut hand);
        let s = *session.as_uuid();
        for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
            let batch: Vec<RawEntry> = chunk.iter().map(|&i| raw(i).clone()).collect();
            store.append_batch_raw(session, segment, &batch).unwrap();
            let bodies: Vec<&str> = chunk.iter().map(|&i| json(i)).collect();
            let seqs: Vec<i64> = chunk.iter().map(|&i| i as i64).collect();
            hand.execute(
                "INSERT INTO messages (session, seq, body) \
                 SELECT $1, s, b::jsonb FROM unnest($2::int8[], $3::text[]) AS t(s, b)",
                &[&s, &seqs, &bodies],
            )
            .unwrap();
        }
        hand.batch_execute("VACUUM ANALYZE messages").unwrap();
        let budget = bench.budget;
        let mut medians = Vec::new();
        let names = [
            "annals PgStore replay (typed)",
            "SELECT body ORDER BY seq + parse",
        ];
        let mut lat = [Vec::new(), Vec::new()];
        let start = Instant::now();
        let mut rounds = 0;
        while start.elapsed() < budget || rounds < 2 {
            for k in 0..2 {
                let c = (k + rounds) % 2;
                let t = Instant::now();
                let mut count = 0u64;
                if c == 0 {
                    store
                        .replay(
                            session,
                            segment,
                            &annals::ReplayOptions::strict(),
                            |_, _v: Value| {
                                count += 1;
                                Ok(())
                            },
                        )
                        .unwrap();
                } else {
                    for row in hand
                        .query(
                            "SELECT body::text FROM messages WHERE session = $1 ORDER BY seq",
                            &[&s],
                        )
                        .unwrap()
                    {
                        let text: &str = row.get(0);
                        let _v: Value = serde_json::from_str(text).unwrap();
                        count += 1;
                    }
                }
                assert_eq!(count, n);
                lat[c].push(t.elapsed().as_secs_f64() * 1000.0);
            }
            rounds += 1;
        }
        for l in &mut lat {
            l.sort_by(f64::total_cmp);
            medians.push(percentile(l, 0.5));
        }
        let workload = format!("replay_{}", setup::count_label(n));
        println!("\n{workload} (ms per replay, {rounds} rounds):");
        for (nm, m) in names.iter().zip(&medians) {
            println!("  {nm:<34} {m:>10.1} ms   {:>6.2}× annals", m / medians[0]);
        }
        bench.record(&workload, &names, &medians);

        // --- fork and truncate, on the same data ---------------------------------------
        let at = n.min(40_000);
        let mut forks = 0u64;
        let mut hand_forks = 0u64;
        bench.run(
            &format!("fork_{}", setup::count_label(at)),
            &mut [
                contender("annals PgStore fork", |_| {
                    store.fork(session, segment, at, SegmentId::new()).unwrap();
                    forks += 1;
                }),
                contender("INSERT … SELECT of the prefix", |_| {
                    hand.execute(
                        "INSERT INTO messages (session, seq, body) \
                         SELECT gen_random_uuid(), seq, body FROM messages \
                         WHERE session = $1 AND seq < $2",
                        &[&s, &(at as i64)],
                    )
                    .unwrap();
                    hand_forks += 1;
                }),
            ],
        );
        let _ = (forks, hand_forks);
    }

    // --- truncate --------------------------------------------------------------------------
    {
        let store = bench.store("bench_truncate", 1);
        let (session, segment) = (SessionId::new(), SegmentId::new());
        let n = pick(10_000u64, 500);
        let initial: Vec<RawEntry> = (0..n).map(|i| raw(i).clone()).collect();
        store.create_segment(session, segment, &initial).unwrap();
        let tail: Vec<RawEntry> = (0..16).map(|i| raw(i).clone()).collect();
        let mut hand = bench.client();
        hand_tables(&mut hand);
        let s = *session.as_uuid();
        hand.execute(
            "INSERT INTO messages (session, seq, body) \
             SELECT $1, g, '{}'::jsonb FROM generate_series(0, $2::int8 - 1) g",
            &[&s, &(n as i64)],
        )
        .unwrap();
        bench.run(
            &format!("truncate_16_of_{}", setup::count_label(n)),
            &mut [
                contender("annals PgStore truncate", |_| {
                    store.append_batch_raw(session, segment, &tail).unwrap();
                    store.truncate(session, segment, n).unwrap();
                }),
                contender("DELETE WHERE seq >= keep", |_| {
                    hand.execute(
                        "INSERT INTO messages (session, seq, body) \
                         SELECT $1, g, '{}'::jsonb FROM generate_series($2::int8, $2 + 15) g",
                        &[&s, &(n as i64)],
                    )
                    .unwrap();
                    hand.execute(
                        "DELETE FROM messages WHERE session = $1 AND seq >= $2",
                        &[&s, &(n as i64)],
                    )
                    .unwrap();
                }),
            ],
        );
    }

    // --- count -----------------------------------------------------------------------------
    {
        let store = bench.store("bench_count", 2);
        let mut hand = bench.client();
        hand_tables(&mut hand);
        let sizes: Vec<u64> = if quick() {
            vec![1_000, 10_000]
        } else {
            vec![1_000, 100_000, 1_000_000]
        };
        for n in sizes {
            let (session, segment) = (SessionId::new(), SegmentId::new());
            store.create_segment(session, segment, &[]).unwrap();
            let mut done = 0;
            while done < n {
                let k = (n - done).min(5_000);
                let batch: Vec<RawEntry> = (done..done + k).map(|i| raw(i).clone()).collect();
                store.append_batch_raw(session, segment, &batch).unwrap();
                done += k;
            }
            let s = *session.as_uuid();
            hand.execute(
                "INSERT INTO messages (session, seq, body) \
                 SELECT $1, g, '{}'::jsonb FROM generate_series(0, $2::int8 - 1) g",
                &[&s, &(n as i64)],
            )
            .unwrap();
            hand.batch_execute("VACUUM ANALYZE messages").unwrap();
            bench.run(
                &format!("count_{}", setup::count_label(n)),
                &mut [
                    contender("annals PgStore entry_count", |_| {
                        assert_eq!(store.entry_count(session, segment).unwrap(), n);
                    }),
                    contender("SELECT count(*)", |_| {
                        let c: i64 = hand
                            .query_one("SELECT count(*) FROM messages WHERE session = $1", &[&s])
                            .unwrap()
                            .get(0);
                        assert_eq!(c as u64, n);
                    }),
                ],
            );
        }
    }

    if args.iter().any(|a| a == "--bench") || std::env::var_os("CARGO_TARGET_DIR").is_some() {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("../criterion");
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join(format!("{GROUP}.json"));
        let _ = std::fs::write(&path, Value::Object(bench.results).to_string());
        println!("\nwrote {}", path.display());
    }
}
