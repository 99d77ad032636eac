//! The harness: the file store under test, a second writer on the same root, the model, and
//! every operation run on them, with the rule for comparing their outcomes ([`Harness::both`]).

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::fs;

use annals::testing::support::{segment_id, session_id, TempStore};
use annals::{
    AttachmentMeta, BlobId, BlobRef, Error, FsOptions, FsStore, MemStore, RawEntry, ReplayOptions,
    Result, SegmentId, SessionId, Store, Tip, MAX_INLINE,
};

use super::wire::{raws, Entry, Op, MAX_ENTRY};

#[derive(Debug, Clone, Copy)]
pub(super) struct Seg {
    pub(super) session: SessionId,
    pub(super) id: SegmentId,
    /// Damage was injected and no verify has found the file clean since.
    pub(super) damaged: bool,
    /// The file's generation minus the model's: a torn last line costs the model a truncate
    /// (which bumps its generation) but leaves the file's header alone.
    pub(super) skew: i64,
}

pub(super) struct Harness {
    /// The file store under test, in a directory of its own (on tmpfs where there is one: the
    /// store fsyncs on every create and truncate).
    pub(super) fs: TempStore,
    /// A second store on the same root: another process.
    pub(super) other: FsStore,
    pub(super) model: MemStore,
    pub(super) sessions: [SessionId; 2],
    /// Blob damage was injected into the session: its attachments may be unreadable.
    pub(super) blob_damage: [bool; 2],
    pub(super) segs: Vec<Seg>,
    pub(super) next_id: u64,
    /// What writers' recovery reported cutting, until `follow_recoveries` mirrors it.
    pub(super) recovered: std::cell::RefCell<Vec<annals::Recovered>>,
}

/// The options of every store of a run: `max_open_files` as the operation chose, and the
/// run's entry limit.
pub(super) fn options(max_open_files: usize) -> FsOptions {
    FsOptions {
        max_open_files,
        max_entry_bytes: MAX_ENTRY,
        ..FsOptions::default()
    }
}

pub(super) fn adjust(tip: Tip, skew: i64) -> Tip {
    Tip {
        count: tip.count,
        generation: u64::try_from(tip.generation as i64 + skew).expect("generation below zero"),
    }
}

/// Do two errors say the same thing (the file store's generations shifted by `skew`)?
pub(super) fn same_error(got: &Error, want: &Error, skew: i64) -> bool {
    use Error as E;
    match (got, want) {
        (E::EntryTooLarge { size, limit }, E::EntryTooLarge { size: s, limit: l }) => {
            (size, limit) == (s, l)
        }
        (
            E::BeyondEnd {
                segment,
                requested,
                count,
            },
            E::BeyondEnd {
                segment: s,
                requested: r,
                count: c,
            },
        ) => (segment, requested, count) == (s, r, c),
        (
            E::SegmentExists { session, segment },
            E::SegmentExists {
                session: se,
                segment: sg,
            },
        )
        | (
            E::SegmentNotFound { session, segment },
            E::SegmentNotFound {
                session: se,
                segment: sg,
            },
        ) => (session, segment) == (se, sg),
        (E::SessionNotFound(a), E::SessionNotFound(b)) => a == b,
        (
            E::ConcurrentWriter {
                segment,
                expected,
                found,
            },
            E::ConcurrentWriter {
                segment: s,
                expected: e,
                found: f,
            },
        ) => segment == s && *expected == adjust(*e, skew) && *found == adjust(*f, skew),
        _ => false,
    }
}

impl Harness {
    pub(super) fn new() -> Self {
        let fs = TempStore::on_tmpfs(options(256));
        let other = fs.open_another_with(options(256));
        Self {
            fs,
            other,
            model: MemStore::with_max_entry_bytes(MAX_ENTRY),
            sessions: [1, 2].map(session_id),
            blob_damage: [false; 2],
            segs: Vec::new(),
            recovered: std::cell::RefCell::default(),
            next_id: 16,
        }
    }

    pub(super) fn new_segment_id(&mut self) -> SegmentId {
        self.next_id += 1;
        segment_id(self.next_id)
    }

    pub(super) fn session_index(&self, session: SessionId) -> usize {
        self.sessions
            .iter()
            .position(|&x| x == session)
            .expect("known session")
    }

    pub(super) fn pick(&self, seg: u8) -> Option<usize> {
        (!self.segs.is_empty()).then(|| usize::from(seg) % self.segs.len())
    }

    pub(super) fn model_count(&self, s: &Seg) -> u64 {
        self.model.tip(s.session, s.id).map_or(0, |t| t.count)
    }

    /// Runs an operation on the file store (`fs`, or the other writer) and on the model. An
    /// undamaged segment must give the same outcome in both. A damaged one may refuse with a
    /// corruption error, and then the model is not asked (nothing happened); any other outcome
    /// must be the model's. Returns the file store's outcome when both ran.
    pub(super) fn both<T: Debug>(
        &self,
        s: Seg,
        other: bool,
        on_fs: impl FnOnce(&FsStore) -> Result<T>,
        on_model: impl FnOnce(&MemStore) -> Result<T>,
        same: impl Fn(&T, &T) -> bool,
    ) -> Option<Result<T>> {
        let got = on_fs(if other { &self.other } else { self.fs.store() });
        if let Err(e) = &got {
            if s.damaged && (e.is_corruption() || self.fewer_entries(s, e)) {
                return None;
            }
        }
        let want = on_model(&self.model);
        // A writer that took a format-2 segment may have recovered its end first (a rewrite):
        // the model learns of it in `follow_recoveries`, before the next checks.
        let mut events = self.recovered.borrow_mut();
        events.extend(self.fs.take_recovered());
        events.extend(self.other.take_recovered());
        let path = self.fs.segment_path(s.session, s.id);
        let recovered_here = events.iter().any(|e| e.path == path);
        drop(events);
        match (&got, &want) {
            // The model is re-based on the file: what it answered no longer counts. The
            // recovery may have cut entries the model holds (damage at an end no line vouches
            // for), so the caller's tip can be stale after it.
            (Ok(_), Ok(_)) if recovered_here => {}
            (Ok(_) | Err(Error::ConcurrentWriter { .. }), _) if recovered_here && s.damaged => {}
            (Ok(g), Ok(w)) => assert!(same(g, w), "file store gave {g:?}, the model {w:?}"),
            (Err(g), Err(w)) => assert!(
                same_error(g, w, s.skew),
                "file store failed with {g:?}, the model with {w:?}"
            ),
            _ => panic!("file store gave {got:?}, the model {want:?} ({s:?})"),
        }
        Some(got)
    }

    /// Did a damaged segment's store refuse because it reads fewer entries than the model
    /// holds (damage at an end no line vouches for reads as an interrupted tail, format 2)?
    /// Nothing happened then, as after a corruption error.
    fn fewer_entries(&self, s: Seg, e: &Error) -> bool {
        let model = self.model_count(&s);
        match e {
            Error::BeyondEnd { count, .. } => *count < model,
            Error::ConcurrentWriter { found, .. } => found.count < model,
            _ => false,
        }
    }

    pub(super) fn tips(s: Seg) -> impl Fn(&Tip, &Tip) -> bool {
        move |got, want| *got == adjust(*want, s.skew)
    }

    pub(super) fn apply(&mut self, op: &Op) {
        match op {
            Op::Create { session, entries } => {
                let session = self.sessions[usize::from(*session % 2)];
                let id = self.new_segment_id();
                let s = Seg {
                    session,
                    id,
                    damaged: false,
                    skew: 0,
                };
                let raw = raws(entries);
                self.both(
                    s,
                    false,
                    |fs| fs.create_segment(session, id, &raw),
                    |m| m.create_segment(session, id, &raw),
                    Self::tips(s),
                );
                self.segs.push(s);
                self.check(self.segs.len() - 1);
            }
            Op::Recreate { seg } => {
                let Some(i) = self.pick(*seg) else { return };
                let s = self.segs[i];
                let fresh = Seg {
                    damaged: false,
                    skew: 0,
                    ..s
                };
                let created = self.both(
                    s,
                    false,
                    |fs| fs.create_segment(s.session, s.id, &[]),
                    |m| m.create_segment(s.session, s.id, &[]),
                    Self::tips(fresh),
                );
                if matches!(created, Some(Ok(_))) {
                    self.segs[i] = fresh;
                }
                self.check(i);
            }
            Op::Append { seg, entry } => self.append(*seg, std::slice::from_ref(entry), false),
            Op::Batch { seg, entries } => self.append(*seg, entries, false),
            Op::OtherAppend { seg, entries } => self.append(*seg, entries, true),
            Op::AppendIf {
                seg,
                stale,
                entries,
            } => {
                let Some(i) = self.pick(*seg) else { return };
                let s = self.segs[i];
                let mut expected = self.model.tip(s.session, s.id).unwrap_or_default();
                match stale % 4 {
                    0 => {}
                    1 => expected.count += 1,
                    2 => expected.count = expected.count.saturating_sub(1),
                    _ => expected.generation += 1,
                }
                let raw = raws(entries);
                self.both(
                    s,
                    false,
                    |fs| fs.append_if(s.session, s.id, adjust(expected, s.skew), &raw),
                    |m| m.append_if(s.session, s.id, expected, &raw),
                    Self::tips(s),
                );
                self.check(i);
            }
            Op::Truncate { seg, keep } => self.truncate(*seg, *keep, false),
            Op::OtherTruncate { seg, keep } => self.truncate(*seg, *keep, true),
            Op::Fork { seg, at, into } => self.fork(*seg, *at, *into),
            Op::Reopen { max_open } => {
                let max = [1, 2, 256][usize::from(*max_open % 3)];
                self.fs.reopen_with(options(max));
                self.other = self.fs.open_another_with(options(256));
                self.check_all();
            }
            Op::Trace { seg, entry } => {
                let Some(i) = self.pick(*seg) else { return };
                let s = self.segs[i];
                let raw = [entry.raw()];
                // The trace is its own file, untouched by damage to the log.
                let clean = Seg {
                    damaged: false,
                    ..s
                };
                self.both(
                    clean,
                    false,
                    |fs| fs.append_trace_raw(s.session, s.id, &raw),
                    |m| m.append_trace_raw(s.session, s.id, &raw),
                    |(), ()| true,
                );
                self.check(i);
            }
            Op::DeleteSession { session } => {
                let index = usize::from(*session % 2);
                let session = self.sessions[index];
                let any = Seg {
                    session,
                    id: segment_id(0),
                    damaged: false,
                    skew: 0,
                };
                let deleted = self.both(
                    any,
                    false,
                    |fs| fs.delete_session(session),
                    |m| m.delete_session(session),
                    |(), ()| true,
                );
                if matches!(deleted, Some(Ok(()))) {
                    self.blob_damage[index] = false;
                    for s in self.segs.iter_mut().filter(|s| s.session == session) {
                        s.damaged = false;
                        s.skew = 0;
                    }
                }
                self.check_all();
            }
            Op::Repair {
                seg,
                dry_run,
                other,
            } => self.repair(*seg, *dry_run, *other),
            Op::FlipByte { seg, pos, xor } => self.flip(*seg, *pos, *xor),
            Op::TornWrite { seg, len } => self.torn_write(*seg, *len),
            Op::CutLastLine { seg, keep } => self.cut_last_line(*seg, *keep),
            Op::Garbage { seg, bytes } => self.garbage(*seg, bytes),
            Op::PutAttachment { session, bytes } => self.put_attachment(*session, bytes),
            Op::Gc { session, dry_run } => self.gc(*session, *dry_run),
            Op::BlobDamage { session, pick, how } => self.blob_damage(*session, *pick, *how),
        }
    }

    pub(super) fn append(&mut self, seg: u8, entries: &[Entry], other: bool) {
        let Some(i) = self.pick(seg) else { return };
        let s = self.segs[i];
        let raw = raws(entries);
        self.both(
            s,
            other,
            |fs| fs.append_batch_raw(s.session, s.id, &raw),
            |m| m.append_batch_raw(s.session, s.id, &raw),
            Self::tips(s),
        );
        self.check(i);
    }

    pub(super) fn truncate(&mut self, seg: u8, keep: u8, other: bool) {
        let Some(i) = self.pick(seg) else { return };
        let s = self.segs[i];
        let keep = u64::from(keep) % (self.model_count(&s) + 2);
        self.both(
            s,
            other,
            |fs| fs.truncate(s.session, s.id, keep),
            |m| m.truncate(s.session, s.id, keep),
            Self::tips(s),
        );
        self.check(i);
    }

    pub(super) fn fork(&mut self, seg: u8, at: u8, into: u8) {
        let Some(i) = self.pick(seg) else { return };
        let s = self.segs[i];
        let at = u64::from(at) % (self.model_count(&s) + 2);
        let siblings: Vec<usize> = (0..self.segs.len())
            .filter(|&j| self.segs[j].session == s.session)
            .collect();
        let target = if into == 0 {
            let id = self.new_segment_id();
            self.segs.push(Seg {
                id,
                damaged: false,
                skew: 0,
                ..s
            });
            self.segs.len() - 1
        } else {
            siblings[usize::from(into) % siblings.len()]
        };
        let into = self.segs[target].id;
        let fresh = Seg {
            id: into,
            damaged: false,
            skew: 0,
            ..s
        };
        let forked = self.both(
            s,
            false,
            |fs| fs.fork(s.session, s.id, at, into),
            |m| m.fork(s.session, s.id, at, into),
            Self::tips(fresh),
        );
        if matches!(forked, Some(Ok(_))) {
            // A fork copies only lines that check out, but their blobs are the session's:
            // damaged ones stay damaged for the fork too.
            let index = self.session_index(s.session);
            self.segs[target] = Seg {
                damaged: self.blob_damage[index],
                ..fresh
            };
        }
        self.check(i);
        self.check(target);
    }

    pub(super) fn repair(&mut self, seg: u8, dry_run: bool, other: bool) {
        let Some(i) = self.pick(seg) else { return };
        let s = self.segs[i];
        let store = if other { &self.other } else { self.fs.store() };
        let path = store.segment_path(s.session, s.id);
        let before = fs::read(&path).ok();
        let count = self.model.tip(s.session, s.id).map(|t| t.count);
        let plan = match store.repair(s.session, s.id, dry_run) {
            Ok(plan) => plan,
            Err(Error::SegmentNotFound { .. }) => {
                assert!(count.is_err(), "repair lost a segment the model has");
                return;
            }
            Err(e) => {
                assert!(
                    s.damaged && e.is_corruption(),
                    "repair of {s:?} failed: {e}"
                );
                self.check(i);
                return;
            }
        };
        let before = before.expect("repair found a file that was not there");
        let count = count.expect("repair found a segment the model lacks");
        assert_eq!(plan.keep_bytes + plan.dropped_bytes, before.len() as u64);
        assert!(plan.kept_entries <= count);
        if !s.damaged {
            assert_eq!(
                plan.kept_entries, count,
                "repair of a healthy segment drops entries"
            );
            assert_eq!(plan.first_problem, None);
            assert_eq!(plan.dropped_bytes, plan.torn_tail.map_or(0, |t| t.len));
        }
        if dry_run || plan.dropped_bytes == 0 {
            assert_eq!(plan.backup, None);
            let after = fs::read(&path).expect("segment file");
            assert_eq!(
                after, before,
                "a dry run or a no-op repair changed the file"
            );
        } else {
            let backup = plan.backup.as_ref().expect("dropped bytes are saved");
            let saved = fs::read(backup).expect("backup file");
            assert_eq!(saved, before[plan.keep_bytes as usize..], "backup content");
            fs::remove_file(backup).expect("remove backup");
            if plan.kept_entries < count {
                self.model
                    .truncate(s.session, s.id, plan.kept_entries)
                    .expect("model truncate");
                self.segs[i].skew -= 1;
            }
            if plan.first_problem.is_some() {
                // Damage is cut by a rewrite that bumps the generation; an interrupted tail
                // (format 2), which no reader delivered, keeps it.
                self.segs[i].skew += 1;
            }
            let report = store
                .verify(s.session, s.id)
                .expect("verify a repaired segment");
            // Repair cuts at the first damaged line, a line whose blob is damaged included, so
            // no line problem is left. (Blob problems stay allowed here: a blob damaged since
            // may be shared with lines the model still counts.)
            let lines_clean = report
                .problems
                .iter()
                .all(|p| matches!(p.reason, annals::CorruptReason::Blob { .. }));
            assert!(lines_clean && report.torn_tail.is_none(), "{report:?}");
        }
        self.check(i);
    }

    pub(super) fn put_attachment(&mut self, session: u8, bytes: &[u8]) {
        let index = usize::from(session % 2);
        let session = self.sessions[index];
        let meta = AttachmentMeta {
            media_type: "application/octet-stream".into(),
            label: Some(format!("{} bytes", bytes.len())),
            ..AttachmentMeta::default()
        };
        let any = Seg {
            session,
            id: segment_id(0),
            damaged: false,
            skew: 0,
        };
        self.both(
            any,
            false,
            |fs| fs.put_attachment(session, bytes, &meta),
            |m| m.put_attachment(session, bytes, &meta),
            |g, w| (g.id, g.len, &g.meta) == (w.id, w.len, &w.meta),
        );
        self.check_attachments(index);
    }

    /// Blobs the model's entries and attachments refer to, in undamaged segments.
    pub(super) fn referenced(&self, session: SessionId) -> BTreeSet<BlobId> {
        let mut out: BTreeSet<BlobId> = self
            .model
            .list_attachments(session)
            .map(|l| l.into_iter().map(|a| a.id).collect())
            .unwrap_or_default();
        for s in self
            .segs
            .iter()
            .filter(|s| s.session == session && !s.damaged)
        {
            let mut entries = self.model.read_raw(s.session, s.id).unwrap_or_default();
            let _ = self.model.replay_trace_raw(
                s.session,
                s.id,
                &ReplayOptions::strict(),
                &mut |entry| {
                    let json = entry.json().expect("trace json");
                    entries.push(RawEntry::from_json(json).expect("trace json"));
                    Ok(std::ops::ControlFlow::Continue(()))
                },
            );
            for e in entries.iter().filter(|e| e.len() > MAX_INLINE) {
                out.insert(BlobRef::for_entry(e.as_str()).sha256);
            }
        }
        out
    }

    pub(super) fn gc(&mut self, session: u8, dry_run: bool) {
        let index = usize::from(session % 2);
        let session = self.sessions[index];
        let referenced = self.referenced(session);
        let got = self.fs.gc_blobs(session, dry_run);
        let want = self.model.gc_blobs(session, dry_run);
        match (got, want) {
            (Ok(g), Ok(_)) => {
                for id in &g.orphans {
                    assert!(
                        !referenced.contains(id),
                        "gc took blob {id}, which is referred to"
                    );
                }
            }
            (Err(g), Err(w)) => assert!(same_error(&g, &w, 0), "gc: {g} / {w}"),
            (g, w) => panic!("gc: file store {g:?}, model {w:?}"),
        }
        // What gc left must still read back: every undamaged segment, every attachment.
        self.check_all();
    }
}
