//! Simulated power cuts. A workload runs against an `FsStore` on `SimFs`, the simulated file
//! system that keeps, for every file, what is durable (as of its last fdatasync) and what is
//! only in the page cache, and, for every directory, which names are durable (as of its last
//! fsync). Before every call that changes the medium (and once at the end), the workload's
//! fault plan takes the crash images `SimFs::after` gives:
//!
//! - *power cut*: durable names, durable contents (the strict reading of POSIX);
//! - *torn write-back*: durable names, durable contents plus part of what was appended after
//!   the last fsync (pages written back in the meantime, the last one cut mid-line);
//! - *names first*: every name as the page cache had it, contents only as durable (a journal
//!   that commits renames before data);
//! - *process crash*: everything in the page cache (what a `kill -9` leaves).
//!
//! The workload covers every operation that writes: create, appends (entries kept as blobs
//! too), a batch, truncate, a truncate by a second store racing the first store's append (its
//! handle follows the rename), fork, a trace, `sync`, an attachment, gc, repair of a torn tail
//! (in place) and of a damaged line (by rewrite), `delete_session`, and a writer lease (its
//! appends, a batch, a truncate and its `sync`).
//!
//! Each image is opened as a store, in memory: it opens, every segment replays strictly (a torn
//! tail is fine; a line whose blob a crash lost is not) and is a state the segment really had;
//! in `Sync` mode no acknowledged entry is missing, and in `Buffered` mode nothing a returned
//! `sync` covered; a segment whose creation was acknowledged exists; a repair's dropped bytes
//! are in the segment or in its backup, and only in the backup once it returned; a deleted
//! session is whole or gone, and gone once the delete returned; an acknowledged attachment is
//! there; the next append works.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use annals::{
    AttachmentMeta, BlobId, Call, Crash, Durability, Fault, FaultFs, FaultPlan, FsOptions, FsStore,
    SegmentId, SessionId, SimFs, Store, StoreExt,
};
use serde_json::{json, Value};

/// A segment, by session and id.
type Seg = (SessionId, SegmentId);

/// What the workload had acknowledged when an image was taken.
#[derive(Debug, Clone, Default)]
struct Acks {
    /// For each segment, the index of its acknowledged state in its history.
    states: BTreeMap<Seg, usize>,
    /// Segments whose `sync` returned, with the state it covered.
    synced: BTreeMap<Seg, usize>,
    /// Segments whose repair returned.
    repaired: BTreeSet<Seg>,
    /// Sessions whose deletion returned.
    deleted: BTreeSet<SessionId>,
    /// Attachments whose put returned.
    attached: Vec<(SessionId, BlobId, Vec<u8>)>,
}

/// The medium at one moment of the workload, as each kind of crash would leave it.
#[derive(Debug)]
struct Image {
    acks: Acks,
    /// The call about to be made when the image was taken (`None`: the end).
    next: Option<String>,
    media: Vec<(Crash, SimFs)>,
}

/// A fault plan that faults nothing and takes the crash images before every call that changes
/// the medium.
#[derive(Debug)]
struct Recorder {
    sim: SimFs,
    acks: Mutex<Acks>,
    images: Mutex<Vec<Image>>,
}

impl Recorder {
    fn new(sim: SimFs) -> Self {
        Self {
            sim,
            acks: Mutex::default(),
            images: Mutex::default(),
        }
    }

    fn ack(&self, f: impl FnOnce(&mut Acks)) {
        f(&mut self.acks.lock().unwrap());
    }

    fn take(&self, next: Option<String>) {
        let media = Crash::ALL
            .into_iter()
            .map(|crash| (crash, self.sim.after(crash)))
            .collect();
        let acks = self.acks.lock().unwrap().clone();
        self.images
            .lock()
            .unwrap()
            .push(Image { acks, next, media });
    }

    fn images(&self) -> Vec<Image> {
        std::mem::take(&mut *self.images.lock().unwrap())
    }
}

impl FaultPlan for Recorder {
    fn at(&self, call: &Call<'_>) -> Option<Fault> {
        if call.op.changes_media() {
            self.take(Some(format!("{:?} {}", call.op, call.path.display())));
        }
        None
    }
}

/// Every fifth entry (3, 8, 13, ...) is too long for a line and is kept as a blob.
fn entry(n: u64) -> Value {
    let len = if n % 5 == 3 {
        9000
    } else {
        usize::try_from(n % 7 * 40).unwrap()
    };
    json!({ "n": n, "role": "assistant", "text": "x".repeat(len) })
}

fn entries(ns: impl IntoIterator<Item = u64>) -> Vec<Value> {
    ns.into_iter().map(entry).collect()
}

const ROOT: &str = "/store";

fn file_in(session: SessionId, name: &str) -> String {
    format!("{ROOT}/{session}/{name}")
}

fn log_of((session, segment): Seg) -> String {
    file_in(session, &format!("{segment}.jsonl"))
}

struct Run {
    images: Vec<Image>,
    /// Every state each segment has had, in order.
    history: BTreeMap<Seg, Vec<Vec<Value>>>,
    /// Segments a repair cuts, with the bytes it drops.
    repairs: BTreeMap<Seg, Vec<u8>>,
    /// Segments damaged on purpose before their repair, with their damaged bytes.
    damaged: BTreeMap<Seg, Vec<u8>>,
    /// Sessions the workload deletes.
    deleting: BTreeSet<SessionId>,
}

/// The workload's bookkeeping: each segment's states, and what was acknowledged.
struct Notes<'r> {
    recorder: &'r Recorder,
    history: BTreeMap<Seg, Vec<Vec<Value>>>,
}

impl Notes<'_> {
    /// `seg` is now in state `entries`, acknowledged.
    fn state(&mut self, seg: Seg, entries: &[Value]) {
        let states = self.history.entry(seg).or_default();
        states.push(entries.to_vec());
        let index = states.len() - 1;
        self.recorder.ack(|a| {
            a.states.insert(seg, index);
        });
    }

    fn last(&self, seg: Seg) -> usize {
        self.history[&seg].len() - 1
    }
}

fn record(durability: Durability) -> Run {
    let sim = SimFs::new();
    let recorder = Arc::new(Recorder::new(sim.clone()));
    let options = FsOptions {
        durability,
        ..FsOptions::default()
    };
    let fs = FaultFs::new(sim.clone(), recorder.clone());
    let store = FsStore::open_on(fs.clone(), ROOT, options).unwrap();
    // A second writer on the same medium, as another process would be.
    let other = FsStore::open_on(fs, ROOT, options).unwrap();
    let mut notes = Notes {
        recorder: &recorder,
        history: BTreeMap::new(),
    };
    let session = SessionId::new();
    let [a, b, c, d] = [(); 4].map(|()| (session, SegmentId::new()));

    // Create, appends, a batch, a truncate, appends.
    let mut model = entries([0, 1]);
    store.create(session, a.1, &model).unwrap();
    notes.state(a, &model);
    for n in 2..6 {
        store.append(session, a.1, &entry(n)).unwrap();
        model.push(entry(n));
        notes.state(a, &model);
    }
    let batch = entries([6, 7, 8]);
    store.append_batch(session, a.1, &batch).unwrap();
    model.extend_from_slice(&batch);
    notes.state(a, &model);
    store.truncate(session, a.1, 4).unwrap();
    model.truncate(4);
    notes.state(a, &model);
    for n in 9..11 {
        store.append(session, a.1, &entry(n)).unwrap();
        model.push(entry(n));
        notes.state(a, &model);
    }

    // A fork, its own append, and a trace.
    store.fork(session, a.1, 3, b.1).unwrap();
    let mut forked = model[..3].to_vec();
    notes.state(b, &forked);
    store.append(session, b.1, &entry(20)).unwrap();
    forked.push(entry(20));
    notes.state(b, &forked);
    store
        .append_trace(session, b.1, &json!({"event": "tool_call"}))
        .unwrap();

    // Another writer truncates the segment under this store's open handle; this store's next
    // append follows the rename and lands in the new file.
    other.truncate(session, a.1, 3).unwrap();
    model.truncate(3);
    notes.state(a, &model);
    store.append(session, a.1, &entry(11)).unwrap();
    model.push(entry(11));
    notes.state(a, &model);

    // Everything so far made durable, then one more buffered append.
    store.sync(session, a.1).unwrap();
    let synced = notes.last(a);
    recorder.ack(|acks| {
        acks.synced.insert(a, synced);
    });
    store.append(session, a.1, &entry(12)).unwrap();
    model.push(entry(12));
    notes.state(a, &model);

    // A writer lease: appends and a batch through it, a truncate, its `sync`, one more
    // buffered append, and its release. (In `Sync` mode each lease append is durable when it
    // returns; in `Buffered` mode what its `sync` covered.)
    let f = (session, SegmentId::new());
    let mut leased = entries([60]);
    store.create(session, f.1, &leased).unwrap();
    notes.state(f, &leased);
    let lease = store
        .lease(session, f.1, &annals::LeaseOptions::default())
        .unwrap();
    for n in [61, 62, 63] {
        lease.append(&entry(n)).unwrap();
        leased.push(entry(n));
        notes.state(f, &leased);
    }
    let batch = entries([64, 65]);
    lease.append_batch(&batch).unwrap();
    leased.extend_from_slice(&batch);
    notes.state(f, &leased);
    // Keeps entry 63, a blob's line, so that gc below still finds exactly its three orphans.
    lease.truncate(4).unwrap();
    leased.truncate(4);
    notes.state(f, &leased);
    lease.append(&entry(66)).unwrap();
    leased.push(entry(66));
    notes.state(f, &leased);
    lease.sync().unwrap();
    let synced = notes.last(f);
    recorder.ack(|acks| {
        acks.synced.insert(f, synced);
    });
    lease.append(&entry(67)).unwrap();
    leased.push(entry(67));
    notes.state(f, &leased);
    lease.release().unwrap();

    // A torn tail, as a crashed writer leaves it, repaired in place.
    let torn = b"{\"crc\":\"ab".to_vec();
    store.create(session, c.1, &entries([30, 31, 33])).unwrap();
    notes.state(c, &entries([30, 31, 33]));
    let len = sim.read(log_of(c)).unwrap().len() as u64;
    sim.overwrite(log_of(c), len, &torn).unwrap();
    let repair = store.repair(session, c.1, false).unwrap();
    assert_eq!(repair.dropped_bytes, torn.len() as u64);
    recorder.ack(|acks| {
        acks.repaired.insert(c);
    });

    // A damaged line (entry 43, a blob's line) repaired by rewrite: entries 40..43 are kept.
    store.create(session, d.1, &entries(40..46)).unwrap();
    notes.state(d, &entries(40..46));
    let bytes = sim.read(log_of(d)).unwrap();
    let line_of_43 = bytes
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b'\n')
        .nth(3)
        .map(|(i, _)| i + 1)
        .unwrap();
    sim.overwrite(log_of(d), line_of_43 as u64 + 30, b"X")
        .unwrap();
    let damaged = sim.read(log_of(d)).unwrap();
    let repair = store.repair(session, d.1, false).unwrap();
    assert_eq!(repair.kept_entries, 3);
    notes.state(d, &entries(40..43));
    recorder.ack(|acks| {
        acks.repaired.insert(d);
    });

    // An attachment, then gc: the blobs of entries 3 and 8 (truncated away) and of 43 (cut by
    // the repair) are orphans; those of 33 and the attachment are kept.
    let attached = b"attached bytes".repeat(500);
    let meta = AttachmentMeta {
        media_type: "text/plain".into(),
        label: None,
        width: None,
        height: None,
    };
    let attachment = store.put_attachment(session, &attached, &meta).unwrap();
    recorder.ack(|acks| {
        acks.attached
            .push((session, attachment.id, attached.clone()))
    });
    let gc = store.gc_blobs(session, false).unwrap();
    assert_eq!(gc.orphans.len(), 3, "{gc:?}");

    // A second session, deleted whole.
    let gone = SessionId::new();
    let e = (gone, SegmentId::new());
    store.create(gone, e.1, &entries([50, 53])).unwrap();
    notes.state(e, &entries([50, 53]));
    store.delete_session(gone).unwrap();
    recorder.ack(|acks| {
        acks.deleted.insert(gone);
    });

    // Something after the delete, so that images are taken once it returned.
    store.append(session, b.1, &entry(21)).unwrap();
    forked.push(entry(21));
    notes.state(b, &forked);

    recorder.take(None);
    let history = notes.history;
    Run {
        images: recorder.images(),
        history,
        repairs: BTreeMap::from([(c, torn), (d, damaged[line_of_43..].to_vec())]),
        damaged: BTreeMap::from([(d, damaged)]),
        deleting: BTreeSet::from([gone]),
    }
}

fn check_every_crash_state(durability: Durability) -> usize {
    let run = record(durability);
    let mut checked = 0;
    for (i, image) in run.images.iter().enumerate() {
        for (crash, medium) in &image.media {
            let context = format!(
                "{crash:?} before call {i} ({})",
                image.next.as_deref().unwrap_or("the end")
            );
            let store = FsStore::open_on(medium.clone(), ROOT, FsOptions::default()).unwrap();
            let state = State {
                run: &run,
                store: &store,
                medium,
                acks: &image.acks,
                durability,
                crash: *crash,
                context: &context,
            };
            state.check();
            checked += 1;
        }
    }
    checked
}

/// One crash image, opened as a store, and what it must hold.
struct State<'a> {
    run: &'a Run,
    store: &'a FsStore<SimFs>,
    medium: &'a SimFs,
    acks: &'a Acks,
    durability: Durability,
    crash: Crash,
    context: &'a str,
}

impl State<'_> {
    fn check(&self) {
        let sessions = self.store.list_sessions().unwrap();
        for (&seg, states) in &self.run.history {
            let session = seg.0;
            if self.acks.deleted.contains(&session) {
                assert!(
                    !sessions.contains(&session) && !self.store.exists(session, seg.1).unwrap(),
                    "{}: deleted session {session} is back",
                    self.context
                );
                continue;
            }
            if self.run.deleting.contains(&session) && !sessions.contains(&session) {
                // Deletion in flight: gone is fine, half gone is not (checked when listed).
                continue;
            }
            if let Some(dropped) = self.run.repairs.get(&seg) {
                // Damaged right after its creation returned, before any later call.
                if self.acks.states.contains_key(&seg) {
                    self.check_repair(seg, dropped);
                }
            }
            self.check_segment(seg, states);
        }
        // An attachment's index line follows the durability mode, as every line does (its blob
        // is durable before the line in both).
        let attachments_kept = self.durability == Durability::Sync || self.crash == Crash::Process;
        for (session, id, bytes) in self.acks.attached.iter().filter(|_| attachments_kept) {
            let listed = self.store.list_attachments(*session).unwrap();
            assert!(
                listed.iter().any(|a| a.id == *id),
                "{}: attachment lost",
                self.context
            );
            assert_eq!(
                &self.store.get_blob(*session, id).unwrap(),
                bytes,
                "{}",
                self.context
            );
        }
    }

    /// A repair's dropped bytes are never lost: they are still at the end of the segment, or
    /// in a backup next to it; once the repair returned, only in the backup.
    fn check_repair(&self, seg: Seg, dropped: &[u8]) {
        let log = self.medium.read(log_of(seg)).unwrap_or_default();
        let still_there = log.ends_with(dropped);
        let prefix = format!("{}.jsonl.dropped-", seg.1);
        let saved = self
            .medium
            .names(format!("{ROOT}/{}", seg.0))
            .unwrap_or_default()
            .iter()
            .filter(|name| name.starts_with(&prefix))
            .any(|name| self.medium.read(file_in(seg.0, name)).unwrap() == dropped);
        assert!(
            still_there || saved,
            "{}: {} lost the bytes its repair dropped",
            self.context,
            seg.1
        );
        if self.acks.repaired.contains(&seg) {
            assert!(
                saved && !still_there,
                "{}: {}: a returned repair is not durable (backup saved: {saved}, cut: {})",
                self.context,
                seg.1,
                !still_there
            );
        }
    }

    fn check_segment(&self, seg: Seg, states: &[Vec<Value>]) {
        let (store, context) = (self.store, self.context);
        let (session, segment) = seg;
        let exists = store.exists(session, segment).unwrap();
        let read = || store.read::<Value>(session, segment);
        if let Some(damaged) = self.run.damaged.get(&seg) {
            if exists && !self.acks.repaired.contains(&seg) {
                if let Err(e) = read() {
                    // Not repaired yet: the damaged file itself, never a mix.
                    assert!(e.is_corruption(), "{context}: {segment}: {e}");
                    let log = self.medium.read(log_of(seg)).unwrap();
                    assert_eq!(&log, damaged, "{context}: {segment} is half repaired");
                    return;
                }
            }
        }
        if let Some(&index) = self.acks.states.get(&seg) {
            // Creation (and fork) fsync the file and its directory before they return.
            assert!(
                exists,
                "{context}: acknowledged segment {segment} is missing"
            );
            let found: Vec<Value> = read().unwrap_or_else(|e| panic!("{context}: {segment}: {e}"));
            assert!(
                states.iter().any(|s| s.starts_with(&found)),
                "{context}: {segment} holds {} entries that are no state it ever had",
                found.len()
            );
            if self.durability == Durability::Sync || self.crash == Crash::Process {
                // Nothing acknowledged may be missing: the segment holds the acknowledged state
                // or the one the operation in flight was making.
                // A batch is one write(2) but not crash-atomic: a prefix of an unacknowledged
                // batch may survive, each line whole (docs/DURABILITY.md).
                let acked_state = &states[index];
                let next = states.get(index + 1);
                let in_flight_prefix = next.is_some_and(|n| {
                    n.starts_with(acked_state)
                        && n.starts_with(&found)
                        && found.starts_with(acked_state)
                });
                assert!(
                    found == *acked_state || next == Some(&found) || in_flight_prefix,
                    "{context}: {segment} lost acknowledged entries: found {} entries, acknowledged {}",
                    found.len(),
                    acked_state.len()
                );
            } else if let Some(&synced) = self.acks.synced.get(&seg) {
                // Buffered: what a returned `sync` covered survives a power cut.
                assert!(
                    found.starts_with(&states[synced]),
                    "{context}: {segment} lost entries its sync covered: found {}, synced {}",
                    found.len(),
                    states[synced].len()
                );
            }
        } else if exists {
            let found: Vec<Value> = read().unwrap_or_else(|e| panic!("{context}: {segment}: {e}"));
            assert_eq!(
                found, states[0],
                "{context}: a half-created segment is visible"
            );
        }
        if exists {
            let report = store.verify(session, segment).unwrap();
            assert!(report.is_clean(), "{context}: {segment}: {report:?}");
            let before = store.entry_count(session, segment).unwrap();
            let tip = store
                .append(session, segment, &json!("after power returns"))
                .unwrap();
            assert_eq!(
                tip.count,
                before + 1,
                "{context}: {report:?} {:?}",
                store.take_recovered()
            );
            assert!(
                store.verify(session, segment).unwrap().is_clean(),
                "{context}"
            );
        }
    }
}

#[test]
fn in_sync_mode_no_crash_state_loses_an_acknowledged_entry() {
    let checked = check_every_crash_state(Durability::Sync);
    println!("power cut, Sync mode: {checked} crash states checked");
    assert!(checked > 400, "only {checked} crash states were checked");
}

#[test]
fn in_buffered_mode_every_crash_state_replays_cleanly_and_keeps_what_sync_covered() {
    let checked = check_every_crash_state(Durability::Buffered);
    println!("power cut, Buffered mode: {checked} crash states checked");
    assert!(checked > 400, "only {checked} crash states were checked");
}

/// What had been acknowledged, and the medium as each kind of crash would leave it then.
type AckedImage = (Vec<Value>, Vec<(Crash, SimFs)>);

/// Before every call that changes the medium, what the threads had been told was durable, then
/// the medium as a power cut of each kind would leave it (in that order: whatever was
/// acknowledged before the image was taken is durable in it).
#[derive(Debug)]
struct GroupRecorder {
    sim: SimFs,
    /// Set once the segment's creation returned.
    armed: std::sync::atomic::AtomicBool,
    acked: Mutex<Vec<Value>>,
    images: Mutex<Vec<AckedImage>>,
}

impl FaultPlan for GroupRecorder {
    fn at(&self, call: &Call<'_>) -> Option<Fault> {
        if call.op.changes_media() && self.armed.load(std::sync::atomic::Ordering::SeqCst) {
            let acked = self.acked.lock().unwrap().clone();
            let media = Crash::ALL
                .into_iter()
                .map(|crash| (crash, self.sim.after(crash)))
                .collect();
            self.images.lock().unwrap().push((acked, media));
        }
        if call.op == annals::Op::SyncData {
            // A slow disk: other threads write (and are imaged) while the sync is in flight.
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        None
    }
}

#[test]
fn a_group_commit_never_tells_a_thread_its_line_is_durable_before_it_is() {
    // Four threads append durably to one segment, sharing fdatasyncs (`group.rs`); in every
    // crash state every entry any thread had been acknowledged is there, in order.
    let sim = SimFs::new();
    let recorder = Arc::new(GroupRecorder {
        sim: sim.clone(),
        armed: Default::default(),
        acked: Mutex::default(),
        images: Mutex::default(),
    });
    let options = FsOptions {
        durability: Durability::Sync,
        ..FsOptions::default()
    };
    let store = FsStore::open_on(FaultFs::new(sim, recorder.clone()), ROOT, options).unwrap();
    let (session, segment) = (SessionId::new(), SegmentId::new());
    store.create::<Value>(session, segment, &[]).unwrap();
    recorder
        .armed
        .store(true, std::sync::atomic::Ordering::SeqCst);
    std::thread::scope(|scope| {
        for t in 0..4u64 {
            let (store, recorder) = (&store, &recorder);
            scope.spawn(move || {
                for i in 0..12u64 {
                    let e = json!({ "thread": t, "i": i });
                    store.append(session, segment, &e).unwrap();
                    recorder.acked.lock().unwrap().push(e);
                }
            });
        }
    });
    let images = std::mem::take(&mut *recorder.images.lock().unwrap());
    assert!(images.len() > 48, "only {} images", images.len());
    let mut checked = 0;
    for (acked, media) in images {
        for (crash, medium) in media {
            let store = FsStore::open_on(medium, ROOT, FsOptions::default()).unwrap();
            let got = store.read::<Value>(session, segment).unwrap();
            for e in &acked {
                assert!(got.contains(e), "{crash:?}: acknowledged {e} is missing");
            }
            for t in 0..4u64 {
                let mine: Vec<u64> = got
                    .iter()
                    .filter(|e| e["thread"] == t)
                    .map(|e| e["i"].as_u64().unwrap())
                    .collect();
                assert_eq!(
                    mine,
                    (0..mine.len() as u64).collect::<Vec<_>>(),
                    "{crash:?}"
                );
            }
            checked += 1;
        }
    }
    println!("group commit: {checked} crash states checked");
}
