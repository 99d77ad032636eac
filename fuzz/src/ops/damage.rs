//! Damage injected behind the store's back, as a crash, a power cut or a failing disk would
//! leave it: a flipped byte, a torn write, a cut last line, garbage at the end, a damaged blob
//! (its file, or the session's pack).
//! Each marks the segment damaged unless what it left can be a torn tail.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

use annals::Store;

use super::harness::{options, Harness};
use crate::oracle;

impl Harness {
    /// The segment file's bytes, if it is undamaged, exists, and holds no interrupted tail that
    /// the model dropped and no writer has cut yet (injections that need to know what they
    /// break only run there). Damage before such a tail changes what it is: once the damage is
    /// certain, a tolerant reader hands out the tail's lines that check out, which the model
    /// no longer has.
    pub(super) fn intact_file(&self, i: usize) -> Option<(std::path::PathBuf, Vec<u8>)> {
        let s = self.segs[i];
        if s.damaged {
            return None;
        }
        let path = self.fs.segment_path(s.session, s.id);
        let bytes = fs::read(&path).ok()?;
        let (lines, _) = oracle::split_lines(&bytes);
        let count = usize::try_from(self.model_count(&s)).expect("count");
        if lines.len() > count + 1 {
            return None;
        }
        Some((path, bytes))
    }

    /// After an injection: damaged unless the unterminated end of the file can be a torn line.
    pub(super) fn classify_tail(&mut self, i: usize, path: &Path) {
        let bytes = fs::read(path).expect("segment file");
        let tail_at = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        if !oracle::plausible_torn_tail(&bytes[tail_at..]) || tail_at == 0 {
            self.segs[i].damaged = true;
        }
    }

    /// Damage in a format-2 file that no later line vouches for reads as an interrupted tail
    /// (FORMAT.md, Recovery, rule 3): not damage, and nothing of it delivered. When the store
    /// reads it so, the model forgets the entries from the tail on and the segment counts as
    /// undamaged again, with one check of our own: no intact line from the tail on may claim
    /// the tail's first entry durable.
    fn interrupted_not_damaged(&mut self, i: usize) {
        let s = self.segs[i];
        let Ok(report) = self.fs.verify(s.session, s.id) else {
            return;
        };
        let (Some(tail), true) = (report.torn_tail, report.problems.is_empty()) else {
            return;
        };
        // A fresh store, as the next process: a cached handle knows nothing of damage done
        // behind its back. Its tip checks a blob's presence and length, not its hash, so for
        // a blob damaged in place it counts what replay does not deliver: that stays damage.
        let fresh = self.fs.open_another_with(options(256));
        let (Ok(tip), Ok(delivered)) =
            (fresh.tip(s.session, s.id), fresh.read_raw(s.session, s.id))
        else {
            return;
        };
        if tip.count != delivered.len() as u64 {
            return;
        }
        let count = self.model_count(&s);
        assert!(
            tip.count <= count,
            "{s:?}: tip {tip:?} beyond the model's {count}"
        );
        let bytes = fs::read(self.fs.segment_path(s.session, s.id)).expect("segment file");
        let from = usize::try_from(tail.offset)
            .expect("offset")
            .min(bytes.len());
        for &(_, line) in &oracle::split_lines(&bytes[from..]).0 {
            if let Some((seq, Some(marks), _)) = oracle::parse_entry_as(true, line) {
                assert!(
                    seq - marks.u <= tip.count,
                    "{s:?}: an interrupted tail from entry {}, but entry {seq}'s line claims \
                     {} durable",
                    tip.count,
                    seq - marks.u
                );
            }
        }
        if tip.count < count {
            self.model
                .truncate(s.session, s.id, tip.count)
                .expect("model truncate");
            self.segs[i].skew -= 1;
        }
        self.segs[i].damaged = false;
        // Only a power cut leaves such an end, and no process survives one: drop every cached
        // handle, as a restart would (as `cut_last_line` does).
        self.fs.reopen();
        self.other = self.fs.open_another_with(options(256));
    }

    pub(super) fn flip(&mut self, seg: u8, pos: u16, xor: u8) {
        let Some(i) = self.pick(seg) else { return };
        let Some((path, bytes)) = self.intact_file(i) else {
            return;
        };
        if bytes.len() < 2 {
            return;
        }
        // Whole lines after the entries the model counts are an interrupted tail it already
        // dropped (`interrupted_not_damaged`): a flip there could only make one of them whole
        // again, which no crash does. Flips land before them.
        let count = usize::try_from(self.model_count(&self.segs[i])).expect("count");
        let (lines, _) = oracle::split_lines(&bytes);
        let end = match lines.get(count + 1) {
            Some(&(next, _)) => next,
            None => bytes.len(),
        };
        let bytes = &bytes[..end];
        let mut pos = usize::from(pos) % bytes.len();
        if Some(pos) == bytes.iter().rposition(|&b| b == b'\n') {
            let Some(before) = pos.checked_sub(1) else {
                return;
            };
            pos = before;
        }
        let xor = if xor == 0 { 1 } else { xor };
        let file = OpenOptions::new().write(true).open(&path).expect("open");
        file.write_all_at(&[bytes[pos] ^ xor], pos as u64)
            .expect("flip");
        self.segs[i].damaged = true;
        self.interrupted_not_damaged(i);
        self.check(i);
    }

    pub(super) fn torn_write(&mut self, seg: u8, len: u16) {
        let Some(i) = self.pick(seg) else { return };
        let Some((path, _)) = self.intact_file(i) else {
            return;
        };
        let s = self.segs[i];
        let line = oracle::entry_line(self.model_count(&s), br#"{"torn":true}"#);
        let k = 1 + usize::from(len) % (line.len() - 1);
        let mut file = OpenOptions::new().append(true).open(&path).expect("open");
        file.write_all(&line[..k]).expect("torn write");
        self.classify_tail(i, &path);
        self.check(i);
    }

    pub(super) fn cut_last_line(&mut self, seg: u8, keep: u16) {
        let Some(i) = self.pick(seg) else { return };
        let Some((path, bytes)) = self.intact_file(i) else {
            return;
        };
        let s = self.segs[i];
        let count = self.model_count(&s);
        if count == 0 {
            return;
        }
        let (lines, _) = oracle::split_lines(&bytes);
        let &(start, line) = lines.last().expect("entry lines");
        let cut = start + usize::from(keep) % (line.len() + 1);
        let file = OpenOptions::new().write(true).open(&path).expect("open");
        file.set_len(cut as u64).expect("cut");
        // Committed bytes only go missing in a power cut, which no process survives: drop
        // every cached handle, as a restart would.
        self.fs.reopen();
        self.other = self.fs.open_another_with(options(256));
        // The last entry was never committed, as far as anyone can tell, and neither was the
        // rest of its batch: a batch is delivered whole or not at all. (The line cut may belong
        // to a batch an earlier cut already left incomplete: then the model has lost it.)
        let keep = committed(&bytes[..cut]);
        if keep < count {
            self.model
                .truncate(s.session, s.id, keep)
                .expect("model truncate");
            self.segs[i].skew -= 1;
        }
        self.check(i);
    }

    pub(super) fn garbage(&mut self, seg: u8, bytes: &[u8]) {
        let Some(i) = self.pick(seg) else { return };
        let s = self.segs[i];
        let path = self.fs.segment_path(s.session, s.id);
        let bytes: Vec<u8> = bytes.iter().copied().filter(|&b| b != b'\n').collect();
        if bytes.is_empty() || !path.is_file() {
            return;
        }
        let mut file = OpenOptions::new().append(true).open(&path).expect("open");
        file.write_all(&bytes).expect("garbage");
        self.classify_tail(i, &path);
        self.check(i);
    }

    pub(super) fn blob_damage(&mut self, session: u8, pick: u8, how: u8) {
        let index = usize::from(session % 2);
        let session = self.sessions[index];
        let mut blobs = Vec::new();
        let root = self.fs.root().join(session.to_string()).join("blobs");
        // The pack (format 3 and later) and the blob files of its shard directories.
        for entry in fs::read_dir(root).into_iter().flatten().flatten() {
            let kind = entry.file_type().expect("file type");
            if kind.is_file() && entry.file_name() == "pack" {
                blobs.push(entry.path());
            }
            if !kind.is_dir() {
                continue;
            }
            for blob in fs::read_dir(entry.path()).into_iter().flatten().flatten() {
                if blob.file_type().is_ok_and(|t| t.is_file()) {
                    blobs.push(blob.path());
                }
            }
        }
        if blobs.is_empty() {
            return;
        }
        blobs.sort();
        let path = &blobs[usize::from(pick) % blobs.len()];
        let len = fs::metadata(path).expect("blob").len();
        match how % 3 {
            // An empty blob (an empty attachment) has no byte to flip or cut.
            _ if len == 0 => fs::remove_file(path).expect("remove blob"),
            0 => fs::remove_file(path).expect("remove blob"),
            1 => OpenOptions::new()
                .write(true)
                .open(path)
                .and_then(|f| f.set_len(len / 2))
                .expect("cut blob"),
            _ => {
                // Anywhere in the file, to the byte in a file of up to 64 KiB: a pack holds
                // many records.
                let pos = (u64::from(pick) << 8 | u64::from(how)) * len / 65_536;
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(path)
                    .expect("open blob");
                let mut byte = [0u8];
                file.read_exact_at(&mut byte, pos).expect("read blob");
                file.write_all_at(&[byte[0] ^ 0x01], pos)
                    .expect("flip blob");
            }
        }
        self.blob_damage[index] = true;
        // Any segment of the session may refer to it; the next verify clears the others.
        let model = &self.model;
        for s in self.segs.iter_mut().filter(|s| s.session == session) {
            s.damaged |= model.tip(s.session, s.id).is_ok();
        }
        for i in 0..self.segs.len() {
            if self.segs[i].session == session {
                self.interrupted_not_damaged(i);
            }
        }
        self.check_all();
    }
}

/// How many entries a reader can deliver from an undamaged image: up to the end of the last
/// whole line that closes its batch (a version-2 line without `more`, or any version-1 line).
/// Lines of a batch whose last line is missing or torn were never committed.
fn committed(bytes: &[u8]) -> u64 {
    let (lines, _) = oracle::split_lines(bytes);
    let mut count = 0;
    for &(_, line) in &lines {
        let entry = oracle::parse_entry_as(true, line)
            .map(|(seq, marks, _)| (seq, marks.map_or(0, |m| m.more)))
            .or_else(|| oracle::parse_entry(line).map(|(seq, _)| (seq, 0)));
        if let Some((seq, 0)) = entry {
            count = seq + 1;
        }
    }
    count
}
