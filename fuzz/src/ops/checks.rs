//! The checks after every step: an undamaged segment reads, replays, verifies and lists exactly
//! as the model; a damaged one returns only the model's entries or a corruption error; traces,
//! attachments and listings agree; no temporary file is left behind.

use std::fs;

use annals::{BlobRef, Error, ReplayOptions, Result, ScanReport, SessionId, Store, MAX_INLINE};

use super::harness::{adjust, same_error, Harness, Seg};

impl Harness {
    pub(super) fn check_attachments(&self, index: usize) {
        let session = self.sessions[index];
        let got = self.fs.list_attachments(session);
        let want = self.model.list_attachments(session);
        let want = match (got, want) {
            (Ok(g), Ok(w)) => {
                let key = |l: &[annals::Attachment]| {
                    l.iter()
                        .map(|a| (a.id, a.len, a.meta.clone()))
                        .collect::<Vec<_>>()
                };
                assert_eq!(key(&g), key(&w), "attachments");
                w
            }
            (Err(g), Err(w)) => {
                assert!(same_error(&g, &w, 0), "attachments: {g} / {w}");
                return;
            }
            (g, w) => panic!("attachments: file store {g:?}, model {w:?}"),
        };
        for a in want {
            match self.fs.get_blob(session, &a.id) {
                Ok(bytes) => assert_eq!(
                    bytes,
                    self.model.get_blob(session, &a.id).expect("model blob")
                ),
                Err(e) => assert!(
                    self.blob_damage[index]
                        && (e.is_corruption() || matches!(e, Error::BlobNotFound { .. })),
                    "attachment {}: {e}",
                    a.id
                ),
            }
        }
    }

    pub(super) fn check_all(&mut self) {
        for i in 0..self.segs.len() {
            self.check(i);
        }
        self.check_listings();
    }

    /// Follows what a writer's recovery cut (format 2: an end no line vouches for, moved to a
    /// `.recovered-` file and the file rewritten; its own tests are tests/it/recovery.rs and the
    /// power-cut suite, which know what was acknowledged and durable; this model does not know
    /// what a Buffered file's lines vouch for). The model is re-based on the file (the entries
    /// the operation appended after the cut included) and the file's generation learned.
    pub(super) fn follow_recoveries(&mut self) {
        let mut events = std::mem::take(&mut *self.recovered.borrow_mut());
        events.extend(self.fs.take_recovered());
        events.extend(self.other.take_recovered());
        for event in events {
            let Some(i) = (0..self.segs.len()).find(|&i| {
                let s = self.segs[i];
                self.fs.segment_path(s.session, s.id) == event.path
            }) else {
                continue;
            };
            let s = self.segs[i];
            let (Ok(file), Ok(_)) = (
                self.fs.read_raw(s.session, s.id),
                self.model.read_raw(s.session, s.id),
            ) else {
                continue;
            };
            self.model
                .truncate(s.session, s.id, 0)
                .expect("model truncate");
            self.model
                .append_batch_raw(s.session, s.id, &file)
                .expect("model re-based");
            if let (Ok(f), Ok(m)) = (
                self.fs.tip(s.session, s.id),
                self.model.tip(s.session, s.id),
            ) {
                self.segs[i].skew = f.generation as i64 - m.generation as i64;
            }
        }
    }

    pub(super) fn check(&mut self, i: usize) {
        self.follow_recoveries();
        if self.segs[i].damaged {
            let s = self.segs[i];
            // Clean again only when nothing is missing: in format 2, damage at an end that no
            // line vouches for reads as an interrupted tail, so verify is clean while the
            // entries there are gone.
            let whole = |r: &annals::ScanReport| {
                r.is_clean()
                    && self
                        .model
                        .tip(s.session, s.id)
                        .is_ok_and(|t| t.count == r.entries)
            };
            if self.fs.verify(s.session, s.id).is_ok_and(|r| whole(&r)) {
                self.segs[i].damaged = false;
            }
        }
        let s = self.segs[i];
        self.check_no_temp_files(s.session);
        self.check_trace(s);
        if s.damaged {
            self.check_damaged(s);
        } else {
            self.check_undamaged(s);
        }
    }

    pub(super) fn check_no_temp_files(&self, session: SessionId) {
        let dir = self.fs.root().join(session.to_string());
        let mut dirs = vec![dir.clone()];
        let shards = fs::read_dir(dir.join("blobs"))
            .into_iter()
            .flatten()
            .flatten();
        dirs.extend(shards.map(|e| e.path()));
        for entry in dirs.iter().filter_map(|d| fs::read_dir(d).ok()).flatten() {
            let name = entry.expect("dir entry").file_name();
            let name = name.to_string_lossy();
            assert!(!name.ends_with(".tmp"), "temporary file {name} left behind");
        }
    }

    pub(super) fn check_trace(&self, s: Seg) {
        let collect = |store: &dyn Store| {
            let mut got = Vec::new();
            store
                .replay_trace_raw(s.session, s.id, &ReplayOptions::strict(), &mut |e| {
                    got.push((e.seq, crate::oracle::shown(&e)));
                    Ok(std::ops::ControlFlow::Continue(()))
                })
                .map(|_| got)
        };
        let blob_damage = self.blob_damage[self.session_index(s.session)];
        match (collect(self.fs.store()), collect(&self.model)) {
            // A trace entry kept as a blob may have lost it.
            (Err(g), Ok(_)) if blob_damage && g.is_corruption() => {}
            // Or, at an end no line vouches for (format 2), read as an interrupted tail: the
            // events before it.
            (Ok(g), Ok(w)) if blob_damage && w.starts_with(&g[..]) => {}
            (Ok(g), Ok(w)) => assert_eq!(g, w, "trace"),
            (Err(g), Err(w)) => assert!(same_error(&g, &w, 0), "trace: {g} / {w}"),
            (g, w) => panic!("trace: file store {g:?}, model {w:?}"),
        }
    }

    pub(super) fn replay(
        &self,
        s: Seg,
        options: &ReplayOptions,
    ) -> Result<(ScanReport, Vec<(u64, String)>)> {
        let mut got = Vec::new();
        let report = self.fs.replay_raw(s.session, s.id, options, &mut |e| {
            got.push((e.seq, crate::oracle::shown(&e)));
            Ok(std::ops::ControlFlow::Continue(()))
        })?;
        Ok((report, got))
    }

    pub(super) fn check_undamaged(&self, s: Seg) {
        let want = self.model.read_raw(s.session, s.id);
        let got = self.fs.read_raw(s.session, s.id);
        let want = match (got, want) {
            (Ok(g), Ok(w)) => {
                assert_eq!(g, w, "entries of {s:?}");
                w
            }
            (Err(g), Err(w)) => {
                assert!(same_error(&g, &w, s.skew), "read: {g} / {w}");
                return;
            }
            (g, w) => panic!("read of {s:?}: file store {g:?}, model {w:?}"),
        };
        let tip = self.model.tip(s.session, s.id).expect("model tip");
        assert_eq!(
            self.fs.tip(s.session, s.id).expect("tip"),
            adjust(tip, s.skew)
        );
        assert_eq!(
            self.other.tip(s.session, s.id).expect("tip"),
            adjust(tip, s.skew)
        );
        let verified = self.fs.verify(s.session, s.id).expect("verify");
        assert!(verified.is_clean(), "{verified:?}");
        assert_eq!(verified.entries, tip.count);
        let (report, all) = self.replay(s, &ReplayOptions::tolerant()).expect("replay");
        assert_eq!(
            report, verified,
            "the mapped and the streaming reader disagree"
        );
        let from = tip.count / 2;
        let (_, later) = self
            .replay(s, &ReplayOptions::strict().from_seq(from))
            .expect("replay");
        assert_eq!(later, all[from as usize..]);
        for ((seq, json), (n, w)) in all.iter().zip(want.iter().enumerate()) {
            assert_eq!((*seq, json.as_str()), (n as u64, w.as_str()));
        }
        // Without reading blobs: entries too long for a line come out as their reference.
        let raw: Vec<String> = want
            .iter()
            .map(|w| match w.len() > MAX_INLINE {
                true => crate::oracle::blob_shown(&BlobRef::for_entry(w.as_str())),
                false => w.as_str().to_owned(),
            })
            .collect();
        let blob_damage = self.blob_damage[self.session_index(s.session)];
        for (store, file) in [(self.fs.store() as &dyn Store, true), (&self.model, false)] {
            let mut got = Vec::new();
            let mut ids = Vec::new();
            store
                .replay_raw(
                    s.session,
                    s.id,
                    &ReplayOptions::strict().blob_refs(),
                    &mut |e| {
                        got.push(crate::oracle::shown(&e));
                        ids.push(match e.body {
                            annals::Body::Blob { reference, .. } => Some(reference.sha256),
                            annals::Body::Inline(_) => None,
                        });
                        Ok(std::ops::ControlFlow::Continue(()))
                    },
                )
                .expect("raw replay");
            if file && blob_damage && got.len() > raw.len() {
                // A blob damaged in place at an end no line vouches for: a reading replay
                // takes its line (and what follows) for an interrupted tail; a replay of
                // references finds the blob (a missing one, or one of another length, ends the
                // log for it too) but does not read it. Only from such a line on may it hand
                // out more than the model has.
                assert_eq!(got[..raw.len()], raw[..], "raw blob references of {s:?}");
                let id = ids[raw.len()].expect("only a blob's line can end the log unread");
                match self.fs.get_blob(s.session, &id) {
                    Err(e) if e.is_corruption() && !matches!(e, Error::BlobNotFound { .. }) => {}
                    other => panic!("{s:?}: blob {id} handed out past the log's end: {other:?}"),
                }
            } else {
                assert_eq!(got, raw, "raw blob references of {s:?}");
            }
        }
    }

    pub(super) fn check_damaged(&self, s: Seg) {
        let want = self
            .model
            .read_raw(s.session, s.id)
            .expect("a damaged segment exists");
        let right = |seq: u64, json: &str| {
            let at = usize::try_from(seq).expect("seq");
            assert!(
                want.get(at).is_some_and(|w| w.as_str() == json),
                "damaged {s:?} returned {json} as entry {seq}, the model has {:?}",
                want.get(at)
            );
        };
        match self.fs.read_raw(s.session, s.id) {
            // Format 2 reads damage at an end that no line vouches for as an interrupted tail:
            // a strict read then delivers the entries before it, never others.
            Ok(got) => assert!(
                want.starts_with(&got),
                "strict read of damaged {s:?}: {got:?}, the model has {want:?}"
            ),
            Err(e) => assert!(e.is_corruption(), "strict read of damaged {s:?}: {e}"),
        }
        let verified = self.fs.verify(s.session, s.id);
        match self.replay(s, &ReplayOptions::tolerant()) {
            Ok((report, got)) => {
                for (seq, json) in got {
                    right(seq, &json);
                }
                assert_eq!(Some(report), verified.ok(), "mapped and streaming disagree");
            }
            Err(e) => assert!(e.is_corruption(), "tolerant read of damaged {s:?}: {e}"),
        }
        for store in [self.fs.store(), &self.other] {
            match store.tip(s.session, s.id) {
                Ok(tip) => {
                    // Format 2 counts what replay delivers: damage at an end no line vouches
                    // for is an interrupted tail, not counted.
                    let model = adjust(self.model.tip(s.session, s.id).expect("model tip"), s.skew);
                    assert!(
                        tip.generation == model.generation && tip.count <= model.count,
                        "tip of damaged {s:?}: {tip:?}, the model {model:?}"
                    );
                }
                Err(e) => assert!(e.is_corruption(), "tip of damaged {s:?}: {e}"),
            }
        }
    }

    pub(super) fn check_listings(&self) {
        for session in self.sessions {
            let got = self.fs.list_segments(session);
            let want = self.model.list_segments(session);
            let (got, want) = match (got, want) {
                (Ok(g), Ok(w)) => (g, w),
                (Err(g), Err(w)) => {
                    assert!(same_error(&g, &w, 0), "listing: {g} / {w}");
                    continue;
                }
                (g, w) => panic!("listing: file store {g:?}, model {w:?}"),
            };
            let ids = |l: &[annals::SegmentInfo]| l.iter().map(|i| i.segment).collect::<Vec<_>>();
            assert_eq!(ids(&got), ids(&want), "listed segments");
            for (g, w) in got.iter().zip(&want) {
                let s = self
                    .segs
                    .iter()
                    .find(|s| s.id == g.segment && s.session == session)
                    .expect("a listed segment is known");
                if s.damaged && g.damage.is_some() {
                    continue;
                }
                assert_eq!(g.damage, None, "{s:?}");
                assert_eq!(g.fork, w.fork, "lineage of {s:?}");
                let model = adjust(w.tip, s.skew);
                if s.damaged {
                    // As `tip`: damage at an end no line vouches for (format 2) is an
                    // interrupted tail, listed as the entries before it.
                    assert!(
                        g.tip.generation == model.generation && g.tip.count <= model.count,
                        "listed tip of damaged {s:?}: {:?}, the model {model:?}",
                        g.tip
                    );
                    continue;
                }
                assert_eq!(g.tip, model, "listed tip of {s:?}");
            }
        }
        for index in 0..2 {
            self.check_attachments(index);
        }
        let got = self.fs.list_sessions().expect("sessions");
        assert_eq!(got, self.model.list_sessions().expect("sessions"));
    }
}
