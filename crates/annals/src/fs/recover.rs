//! Recovery where a writer takes a file: the first time a handle writes a format-2 file whose
//! end the tail probe cannot vouch for, it checks the lines from the first entry not known
//! durable to the end, applies [`recovery_plan`](crate::recovery_plan) under
//! [`FsOptions::recovery`](super::FsOptions), and cuts what the plan says, after moving the
//! cut bytes to `{file}.recovered-{ms}`. Readers use the same check to answer `tip` and never
//! cut. Format-1 files keep format-1 rules: only a torn last line is ever cut (by the append,
//! in place).
//!
//! Cost: the check reads the unsynced end of the file (from the durable watermark the last
//! intact line claims, found by `seek_seq`), once per handle; nothing on the common path of
//! an append (a `Sync` append's last line claims everything before it durable, so its file
//! needs no check at all).

use std::path::PathBuf;

use super::atomic::{encode_header, keep_aside, TempFile};
use super::blobs::{BlobDir, Check};
use super::handle::Handle;
use super::read::{Reader, TailState};
use super::replay::check_blob;
use super::seam::FileSystem;
use super::tree::{file_name, Dir};
use super::FsStore;
use crate::codec::decode::check_line_as;
use crate::codec::{Header, Version, MAX_LINE};
use crate::recovery::{plan, CutReason, RecoveryMode, RecoveryPlan};
use crate::scan::{Checker, Identity};
use crate::{Error, ReadMode, Result, ScanReport, TailKind, Tip};

/// What a writer's recovery cut from the end of a file ([`FsStore::take_recovered`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// The file it cut.
    pub path: PathBuf,
    /// Where the cut began: the end of the last complete write it kept.
    pub offset: u64,
    /// Bytes cut (to the end of the file).
    pub len: u64,
    /// Entries the file holds after the cut.
    pub kept_entries: u64,
    /// Why: an interrupted tail, or (in [`RecoveryMode::PointInTime`]) damage.
    pub why: CutReason,
    /// Where the cut bytes are kept, fsynced before the cut: `{file}.recovered-{ms}` next to
    /// the file (with `.1`, `.2`, … if that name is taken: never overwritten).
    pub saved: PathBuf,
}

/// How many [`Recovered`] events a store keeps until they are taken (the oldest go first).
const KEPT_EVENTS: usize = 256;

/// How far back from the end the durable watermark is looked for (lines that do not check
/// out are stepped over); beyond that the check starts at the first entry.
const LOOK_BACK: u64 = 8 << 20;

impl<F: FileSystem> FsStore<F> {
    /// The cuts this store's writers made since the last call, oldest first (at most the last
    /// 256). Each names the file, where the cut began, its length and why; the bytes are in
    /// [`Recovered::saved`]. O(number of events).
    pub fn take_recovered(&self) -> Vec<Recovered> {
        std::mem::take(&mut *super::lock(&self.recovered))
    }

    /// Under the exclusive lock: brings the end of the handle's file to a complete write,
    /// cutting an interrupted tail (or, in `PointInTime`, damage) as the mode says, and sets
    /// the handle's tail. A torn last line is left for the append to cut in place, as in
    /// format 1.
    ///
    /// # Errors
    /// [`Error::Corrupt`] naming the first problem when the mode cuts nothing there; I/O
    /// errors.
    pub(crate) fn settle(&self, h: &mut Handle<F>) -> Result<()> {
        let fs = &self.tree.fs;
        let Some((header, header_end)) = h.header.clone() else {
            return Err(not_found(h.identity));
        };
        if header.version() == Some(Version::V1) {
            // The tail probe has already decided (format-1 rules).
            h.settled = true;
            return Ok(());
        }
        let (size, _) = fs
            .size_and_links(&h.file)
            .map_err(|e| Error::io("stat", &h.path, e))?;
        let dir = self
            .tree
            .session(h.identity.session)?
            .ok_or_else(|| not_found(h.identity))?;
        let mode = self.options.recovery;
        let from_start = mode == RecoveryMode::PointInTime;
        let report = self.check_end(
            h.reader(fs),
            (&header, header_end),
            size,
            h.identity,
            &dir,
            from_start,
        )?;
        match plan(&report, mode) {
            RecoveryPlan::Clean => {
                h.tail = TailState {
                    committed: size,
                    count: report.entries,
                    torn: 0,
                    claim: 0,
                };
            }
            RecoveryPlan::Cut {
                keep,
                len,
                why: CutReason::Interrupted(tail),
            } if tail.kind == TailKind::TornLine => {
                // An unterminated last line holds no entry: the append cuts it in place.
                h.tail = TailState {
                    committed: keep,
                    count: report.entries,
                    torn: len,
                    claim: 0,
                };
            }
            RecoveryPlan::Cut { keep, len, why } => {
                let cut = Cut {
                    header,
                    header_end,
                    keep,
                    len,
                };
                let event = self.cut(h, &dir, cut, why)?;
                let mut events = super::lock(&self.recovered);
                if events.len() == KEPT_EVENTS {
                    events.remove(0);
                }
                events.push(event);
            }
            RecoveryPlan::Refuse(problem) => {
                return Err(Error::Corrupt {
                    path: h.path.clone(),
                    line: problem.line,
                    offset: problem.offset,
                    reason: problem.reason,
                });
            }
        }
        h.durable = h.durable.min(h.tail.count);
        h.settled = true;
        Ok(())
    }

    /// What readers answer for the tip of a file whose end a writer has not settled: the
    /// entries before an interrupted tail, as replay delivers them; the first problem if the
    /// end is damaged. Never writes.
    pub(crate) fn unsettled_tip(
        &self,
        reader: Reader<'_, F>,
        header: (&Header, u64),
        size: u64,
        identity: Identity,
    ) -> Result<Tip> {
        let dir = self
            .tree
            .session(identity.session)?
            .ok_or_else(|| not_found(identity))?;
        let report = self.check_end(reader, header, size, identity, &dir, false)?;
        if let Some(problem) = report.problems.first() {
            return Err(Error::Corrupt {
                path: reader.path.to_path_buf(),
                line: problem.line,
                offset: problem.offset,
                reason: problem.reason.clone(),
            });
        }
        Ok(Tip {
            count: report.entries,
            generation: header.0.generation,
        })
    }

    /// Checks the end of a format-2 file tolerantly: its lines from the first entry not known
    /// durable (from the first entry with `from_start`), their writes, and the blobs they
    /// refer to. The report's offsets are the file's.
    fn check_end(
        &self,
        reader: Reader<'_, F>,
        (header, header_end): (&Header, u64),
        size: u64,
        identity: Identity,
        dir: &Dir<F>,
        from_start: bool,
    ) -> Result<ScanReport> {
        let durable = if from_start {
            0
        } else {
            last_claim(reader, header_end, size)?
        };
        let (offset, seq) = if durable == 0 {
            (header_end, 0)
        } else {
            reader
                .seek_seq(header_end, size, durable)?
                .unwrap_or((header_end, 0))
        };
        // The line there says its own sequence number (the seek knows it only past the start).
        let seq = first_seq_at(reader, offset, size)?.unwrap_or(seq);
        let checker =
            Checker::new(ReadMode::Tolerant, 0, false, Some(identity)).resumed(header, seq, offset);
        // Blobs as replay reads them: what a tip counts and a writer keeps is what replay
        // delivers.
        let blobs = BlobDir::new(&self.tree, dir, self.options.max_entry_bytes);
        let (report, _) = reader.scan(offset, size, checker, &mut |delivery| {
            check_blob(&blobs, Check::AsRead, delivery)
        })?;
        Ok(report)
    }

    /// Moves bytes `keep..` of the handle's file to a `.recovered-` file (fsynced), then
    /// replaces the file by a copy of everything before them (fsynced; a rewrite, never an
    /// in-place cut, as the mmap reader needs), keeping the exclusive lock throughout.
    fn cut(&self, h: &mut Handle<F>, dir: &Dir<F>, cut: Cut, why: CutReason) -> Result<Recovered> {
        let tree = &self.tree;
        let fs = &tree.fs;
        let name = file_name(h.identity.segment, h.identity.kind);
        let size = cut.keep + cut.len;
        let aside = format!("{name}.recovered-{}", crate::now_ms());
        let saved = keep_aside(tree, dir, &aside, h.reader(fs), cut.keep, size)?;
        // An interrupted tail holds nothing any reader delivered, so cutting it keeps the
        // generation (as cutting a torn line in place does) and tips read before still hold; a
        // `PointInTime` cut at damage drops entries readers may have had: a new generation.
        let header = Header {
            generation: cut.header.generation + u64::from(matches!(why, CutReason::Damage(_))),
            ..cut.header
        };
        let temp = TempFile::create(tree, dir, h.identity.segment)?;
        let mut temp = temp;
        temp.lock_exclusive()?;
        let mut bytes = Vec::new();
        let new_header_end = encode_header(&header, &mut bytes)?;
        temp.write(&bytes)?;
        temp.copy(h.reader(fs), cut.header_end, cut.keep)?;
        self.pack_durable(dir)?;
        temp.sync()?;
        let new_file = temp.replace(&name)?;
        let old = h.replace_file(new_file);
        let _ = fs.unlock(&old);
        drop(old);
        // The kept bytes end a complete write: the new file's last line says the count (a
        // tolerant report counts entries after damage too, which a PointInTime cut drops).
        let committed = new_header_end + (cut.keep - cut.header_end);
        h.tail = h.reader(fs).tail(committed, (new_header_end, 0))?;
        h.header = Some((header, new_header_end));
        // The new file was fsynced before it got the name.
        h.durable = h.tail.count;
        if let Err(e) = tree.sync_dir(dir) {
            if let Error::Io { source, .. } = &e {
                h.poison("fsync directory", source);
            }
            return Err(e);
        }
        Ok(Recovered {
            path: h.path.clone(),
            offset: cut.keep,
            len: cut.len,
            kept_entries: h.tail.count,
            why,
            saved,
        })
    }
}

/// A cut [`FsStore::settle`] makes.
struct Cut {
    header: Header,
    header_end: u64,
    /// Bytes kept, and cut after them.
    keep: u64,
    len: u64,
}

fn not_found(identity: Identity) -> Error {
    Error::SegmentNotFound {
        session: identity.session,
        segment: identity.segment,
    }
}

/// The sequence number of the format-2 line at `offset`, if one that checks out starts there.
fn first_seq_at<F: FileSystem>(
    reader: Reader<'_, F>,
    offset: u64,
    size: u64,
) -> Result<Option<u64>> {
    let mut buf = vec![0u8; MAX_LINE.min(usize::try_from(size - offset).unwrap_or(MAX_LINE))];
    let n = reader.read_at_most(&mut buf, offset)?;
    let bytes = buf.get(..n).unwrap_or_default();
    Ok(memchr::memchr(b'\n', bytes)
        .and_then(|nl| check_line_as(Version::V2, bytes.get(..nl).unwrap_or_default()).ok())
        .map(|e| e.seq))
}

/// The durable watermark the last complete format-2 line that checks out claims (`seq − u`),
/// looking back at most [`LOOK_BACK`] bytes from `size` and stepping over lines that do not
/// check out; 0 if none does. Reads backwards in 64 KiB steps.
fn last_claim<F: FileSystem>(reader: Reader<'_, F>, header_end: u64, size: u64) -> Result<u64> {
    const STEP: usize = 64 * 1024;
    let floor = size.saturating_sub(LOOK_BACK).max(header_end);
    let mut buf = vec![0u8; STEP];
    let mut end = size;
    while end > floor {
        let start = end.saturating_sub(STEP as u64).max(floor);
        let slot = buf
            .get_mut(..usize::try_from(end - start).unwrap_or(0))
            .unwrap_or_default();
        let n = reader.read_at_most(slot, start)?;
        let chunk = slot.get(..n).unwrap_or_default();
        let newlines: Vec<usize> = memchr::memchr_iter(b'\n', chunk).collect();
        // Complete lines: between two newlines of the chunk, or from the header's end.
        let mut bounds = Vec::with_capacity(newlines.len() + 1);
        if start == header_end {
            bounds.push(0);
        }
        bounds.extend(newlines.iter().map(|nl| nl + 1));
        for pair in bounds.windows(2).rev() {
            let &[from, next] = pair else { continue };
            let line = chunk.get(from..next - 1).unwrap_or_default();
            if let Ok(e) = check_line_as(Version::V2, line) {
                return Ok(e.marks.map_or(0, |m| m.durable_watermark(e.seq)));
            }
        }
        end = match newlines.first() {
            // Keep the line the first newline ends for the next, earlier chunk, unless that is
            // all the chunk holds (a line longer than a chunk never checks out).
            Some(&first) if start + (first as u64) + 1 < end => start + first as u64 + 1,
            _ => start,
        };
        if start == floor {
            break;
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{encode_entry, Frame, Marks};

    /// A format-2 line for `seq` that claims entries below `durable` durable.
    fn line(seq: u64, durable: u64, more: u64) -> Vec<u8> {
        let marks = Marks {
            appended_ms: 1,
            unsynced: seq - durable,
            more,
        };
        let mut out = Vec::new();
        encode_entry(&Frame::v2(seq, marks), r#"{"n":1}"#, &mut out).unwrap();
        out
    }

    fn claim_of(bytes: &[u8], header_end: u64) -> u64 {
        let dir = tempfile::tempdir().unwrap();
        let fs = super::super::OsFs;
        let root = fs.open_root(dir.path(), false).unwrap();
        let file = fs.create_new(&root, "f").unwrap();
        assert_eq!(fs.append(&file, bytes).unwrap(), bytes.len());
        let path = dir.path().join("f");
        let reader = Reader {
            fs: &fs,
            file: &file,
            path: &path,
        };
        last_claim(reader, header_end, bytes.len() as u64).unwrap()
    }

    #[test]
    fn the_watermark_comes_from_the_last_line_that_checks_out() {
        let header = b"HEADER\n".to_vec();
        let mut bytes = header.clone();
        bytes.extend(line(0, 0, 0));
        bytes.extend(line(1, 1, 0));
        bytes.extend(line(2, 1, 0));
        assert_eq!(claim_of(&bytes, header.len() as u64), 1);
        // A damaged last line and a torn tail are stepped over.
        bytes.extend(b"{\"crc\":\"00000000\",\"seq\":3}\n");
        bytes.extend(vec![0u8; 100_000]);
        bytes.extend(b"{\"crc\":\"12");
        assert_eq!(claim_of(&bytes, header.len() as u64), 1);
        // A complete line longer than a read step is stepped over too.
        bytes.extend(vec![b'z'; 200_000]);
        bytes.push(b'\n');
        assert_eq!(claim_of(&bytes, header.len() as u64), 1);
        // No line that checks out: nothing is known durable.
        let mut none = header.clone();
        none.extend(vec![b'x'; 10]);
        none.push(b'\n');
        assert_eq!(claim_of(&none, header.len() as u64), 0);
    }
}
