//! Naming sessions and segments on the command line: a full UUID, a unique end of one (the
//! 12 digits tables show) or start, or — on a filesystem store — the path of a session
//! directory or segment file inside the store root.
//!
//! UUID v7 ids start with their creation time, so ids made the same day share their first
//! digits: their ends tell them apart. A path outside the root is refused: a path names a
//! file of the store the command opened, never another store or a loose file.

use std::path::{Component, Path, PathBuf};

use annals::{SegmentId, SessionId};

use crate::fail::{Failure, CANNOT_RUN, PROBLEMS};
use crate::target::Target;

/// Hex digits of an id that tables show: the UUID's last group, random in a v7 id.
pub const SHORT_LEN: usize = 12;

/// Fewest hex digits accepted as part of an id.
const MIN_DIGITS: usize = 4;

/// The short form of an id, as tables print it: its last 12 hex digits.
pub fn short(id: &impl std::fmt::Display) -> String {
    let text = id.to_string();
    text.get(text.len().saturating_sub(SHORT_LEN)..)
        .unwrap_or(&text)
        .to_owned()
}

/// What an argument names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Named {
    Session(SessionId),
    Segment(SessionId, SegmentId),
}

/// The hex digits of an argument that is (part of) an id.
struct Digits(String);

impl Digits {
    fn parse(arg: &str, what: &str) -> Result<Self, Failure> {
        let digits: String = arg
            .chars()
            .filter(|c| *c != '-')
            .map(|c| c.to_ascii_lowercase())
            .collect();
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Failure::usage(
                format!("{arg:?} is not a hex id"),
                &format!(
                    "a {what} id is a UUID such as 0197c1a2-7f44-7579-bcf2-4f7b48e20938; its \
                     last {SHORT_LEN} digits (as `annals ls` shows them), or any unique end or \
                     start of at least {MIN_DIGITS} hex digits, also work"
                ),
            ));
        }
        if digits.len() < MIN_DIGITS {
            return Err(Failure::usage(
                format!("{arg:?} is too short to name a {what}"),
                &format!(
                    "give at least {MIN_DIGITS} hex digits of its end (the {SHORT_LEN} digits \
                     `annals ls` shows are enough) or of its start"
                ),
            ));
        }
        if digits.len() > 32 {
            return Err(Failure::usage(
                format!("{arg:?} is longer than a UUID"),
                &format!(
                    "give the id as `annals ls` prints it (its last {SHORT_LEN} digits) or whole"
                ),
            ));
        }
        Ok(Self(digits))
    }

    fn full(&self) -> Option<annals::Uuid> {
        (self.0.len() == 32)
            .then(|| annals::Uuid::try_parse(&self.0).ok())
            .flatten()
    }

    fn matches(&self, id: &impl std::fmt::Display) -> bool {
        let hex: String = id.to_string().chars().filter(|c| *c != '-').collect();
        hex.starts_with(&self.0) || hex.ends_with(&self.0)
    }
}

fn looks_like_path(arg: &str) -> bool {
    arg.contains('/') || arg.ends_with(".jsonl") || arg == "." || arg == ".."
}

impl Target {
    /// A session from a full id, a unique end or start of one, or its directory's path.
    pub fn session(&self, arg: &str) -> Result<SessionId, Failure> {
        if looks_like_path(arg) {
            return match self.path_in_store(arg)? {
                Named::Session(s) => Ok(s),
                Named::Segment(..) => Err(Failure::usage(
                    format!("{arg} is a segment file, not a session directory"),
                    "give the session's directory or id",
                )),
            };
        }
        let digits = Digits::parse(arg, "session")?;
        if let Some(uuid) = digits.full() {
            return Ok(SessionId::from_uuid(uuid));
        }
        let matches: Vec<SessionId> = self
            .store()
            .list_sessions()
            .map_err(|e| self.err(e))?
            .into_iter()
            .filter(|s| digits.matches(s))
            .collect();
        match matches.as_slice() {
            [one] => Ok(*one),
            [] => Err(self.not_found("session", arg)),
            many => Err(ambiguous(arg, "sessions", many.iter().map(short))),
        }
    }

    /// A segment and its session: from a full id (its session is looked up unless given), a
    /// unique end or start of one, or the path of its file.
    pub fn segment(
        &self,
        arg: &str,
        session: Option<&str>,
    ) -> Result<(SessionId, SegmentId), Failure> {
        if looks_like_path(arg) {
            return match self.path_in_store(arg)? {
                Named::Segment(s, g) => Ok((s, g)),
                Named::Session(_) => Err(Failure::usage(
                    format!("{arg} is a session directory, not a segment file"),
                    "give a segment's file or id",
                )),
            };
        }
        let session = session.map(|s| self.session(s)).transpose()?;
        let digits = Digits::parse(arg, "segment")?;
        if let Some(uuid) = digits.full() {
            let segment = SegmentId::from_uuid(uuid);
            let session = match session {
                Some(s) => s,
                None => self
                    .store()
                    .find_session(segment)
                    .map_err(|e| self.err(e))?
                    .ok_or_else(|| self.not_found("segment", arg))?,
            };
            return Ok((session, segment));
        }
        let matches = self.matching_segments(&digits, session)?;
        match matches.as_slice() {
            [one] => Ok(*one),
            [] => Err(self.not_found("segment", arg)),
            many => Err(ambiguous(
                arg,
                "segments",
                many.iter().map(|(_, g)| short(g)),
            )),
        }
    }

    /// A session or a segment, whichever the argument names.
    pub fn named(&self, arg: &str) -> Result<Named, Failure> {
        if looks_like_path(arg) {
            return self.path_in_store(arg);
        }
        let digits = Digits::parse(arg, "session or segment")?;
        if let Some(uuid) = digits.full() {
            let session = SessionId::from_uuid(uuid);
            match self.store().session_modified(session) {
                Ok(_) => return Ok(Named::Session(session)),
                Err(annals::Error::SessionNotFound(_)) => {}
                Err(e) => return Err(self.err(e)),
            }
            let segment = SegmentId::from_uuid(uuid);
            return match self
                .store()
                .find_session(segment)
                .map_err(|e| self.err(e))?
            {
                Some(s) => Ok(Named::Segment(s, segment)),
                None => Err(self.not_found("session or segment", arg)),
            };
        }
        let sessions = self.store().list_sessions().map_err(|e| self.err(e))?;
        let mut found: Vec<Named> = sessions
            .iter()
            .filter(|s| digits.matches(*s))
            .map(|s| Named::Session(*s))
            .collect();
        found.extend(
            self.matching_segments(&digits, None)?
                .into_iter()
                .map(|(s, g)| Named::Segment(s, g)),
        );
        match found.as_slice() {
            [one] => Ok(*one),
            [] => Err(self.not_found("session or segment", arg)),
            many => Err(ambiguous(
                arg,
                "sessions and segments",
                many.iter().map(|n| match n {
                    Named::Session(s) => format!("session {}", short(s)),
                    Named::Segment(_, g) => format!("segment {}", short(g)),
                }),
            )),
        }
    }

    fn matching_segments(
        &self,
        digits: &Digits,
        session: Option<SessionId>,
    ) -> Result<Vec<(SessionId, SegmentId)>, Failure> {
        let sessions = match session {
            Some(s) => vec![s],
            None => self.store().list_sessions().map_err(|e| self.err(e))?,
        };
        let mut matches = Vec::new();
        for s in sessions {
            let segments = match self.store().list_segments(s) {
                Ok(list) => list,
                // Deleted while we looked: it holds nothing now.
                Err(annals::Error::SessionNotFound(_)) if session.is_none() => continue,
                Err(e) => return Err(self.err(e)),
            };
            matches.extend(
                segments
                    .into_iter()
                    .filter(|info| digits.matches(&info.segment))
                    .map(|info| (s, info.segment)),
            );
        }
        Ok(matches)
    }

    fn not_found(&self, what: &str, arg: &str) -> Failure {
        let todo = if what == "session" {
            "run `annals ls` to list the sessions (an id matches by its end or its start)"
        } else {
            "run `annals ls SESSION` to list a session's segments (an id matches by its end or \
             its start)"
        };
        Failure::new(
            PROBLEMS,
            format!("no {what} matches {arg:?}"),
            self.describe(),
            todo,
        )
    }

    /// What a path inside the root names: `ROOT/SESSION` or `ROOT/SESSION/SEGMENT.jsonl`
    /// (`.trace.jsonl` too). A path outside the root is refused, whatever it holds.
    fn path_in_store(&self, arg: &str) -> Result<Named, Failure> {
        let Some(fs) = self.fs() else {
            return Err(Failure::usage(
                format!("{arg} is a path, and this store has no files"),
                "name the session or segment by its id",
            ));
        };
        let root = fs.root();
        let Some(rel) = relative_to(root, Path::new(arg)) else {
            return Err(outside(arg, root));
        };
        let parts: Vec<&str> = rel
            .components()
            .filter_map(|c| match c {
                Component::Normal(p) => p.to_str(),
                _ => None,
            })
            .collect();
        let not_ours = |what: &str| {
            Failure::usage(
                format!("{arg} is not {what} of the store"),
                "a path names a session directory (ROOT/SESSION) or a segment file \
                 (ROOT/SESSION/SEGMENT.jsonl) of the store at --root",
            )
        };
        let session = |name: &str| {
            name.parse::<SessionId>()
                .map_err(|_| not_ours("a session directory"))
        };
        match parts.as_slice() {
            [s] => Ok(Named::Session(session(s)?)),
            [s, file] => {
                let stem = file
                    .strip_suffix(".trace.jsonl")
                    .or_else(|| file.strip_suffix(".jsonl"))
                    .ok_or_else(|| not_ours("a segment file"))?;
                let segment = stem
                    .parse::<SegmentId>()
                    .map_err(|_| not_ours("a segment file"))?;
                Ok(Named::Segment(session(s)?, segment))
            }
            [] => Err(not_ours("a session or segment (it is the root itself)")),
            _ => Err(not_ours("a session directory or segment file")),
        }
    }
}

fn ambiguous(arg: &str, what: &str, candidates: impl Iterator<Item = String>) -> Failure {
    let all: Vec<String> = candidates.collect();
    let shown: Vec<&str> = all.iter().take(4).map(String::as_str).collect();
    let more = if all.len() > shown.len() {
        format!(" and {} more", all.len() - shown.len())
    } else {
        String::new()
    };
    Failure::usage(
        format!(
            "{arg:?} matches {} {what} ({}{more})",
            all.len(),
            shown.join(", ")
        ),
        &format!(
            "give more digits of the id's end (the {SHORT_LEN} that `annals ls` shows are \
             enough) or of its start"
        ),
    )
}

fn outside(arg: &str, root: &Path) -> Failure {
    // `…/STORE/SESSION/SEGMENT.jsonl`: say which root the path would belong to.
    let path = Path::new(arg);
    let session_dir = path.parent().filter(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.parse::<SessionId>().is_ok())
    });
    let hint = session_dir
        .and_then(Path::parent)
        .filter(|p| !p.as_os_str().is_empty())
        .map(|p| {
            format!(
                "to look at another store, pass its root (--root {})",
                crate::term::shell_word(&p.display().to_string())
            )
        })
        .unwrap_or_else(|| "to look at another store, pass its root with --root".to_owned());
    Failure::new(
        CANNOT_RUN,
        format!("{arg} is outside the store root"),
        format!("store {}", root.display()),
        &format!("a path names a file of the store at --root; {hint}"),
    )
}

/// `path` relative to `root`, if it lies inside it: compared lexically (both made absolute,
/// `.` and `..` resolved), then through symbolic links (both canonical, for roots reached by a
/// link). Nothing is opened; a path that does not exist is compared as written.
fn relative_to(root: &Path, path: &Path) -> Option<PathBuf> {
    let cwd = std::env::current_dir().ok()?;
    let lexical = |p: &Path| normalize(&cwd.join(p));
    if let Ok(rest) = lexical(path).strip_prefix(lexical(root)) {
        return Some(rest.to_path_buf());
    }
    let root = root.canonicalize().ok()?;
    let path = lexical(path);
    // The longest part of the path that exists, resolved; the rest as written.
    let (base, rest) = path.ancestors().find_map(|a| {
        a.canonicalize()
            .ok()
            .map(|c| (c, path.strip_prefix(a).ok()))
    })?;
    let full = base.join(rest.unwrap_or(Path::new("")));
    full.strip_prefix(&root).ok().map(Path::to_path_buf)
}

fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ids_are_the_last_twelve_digits() {
        let id: SessionId = "0197c1a2-7f44-7579-bcf2-4f7b48e20938".parse().unwrap();
        assert_eq!(short(&id), "4f7b48e20938");
    }

    #[test]
    fn digits_match_an_end_or_a_start_and_hyphens_do_not_count() {
        let id: SegmentId = "0197c1a2-7f44-7579-bcf2-4f7b48e20938".parse().unwrap();
        for part in [
            "e20938",
            "4F7B48E20938",
            "bcf2-4f7b48e20938",
            "0197c1a2",
            "0197c1a27f44",
        ] {
            assert!(
                Digits::parse(part, "segment").unwrap().matches(&id),
                "{part}"
            );
        }
        assert!(!Digits::parse("7579", "segment").unwrap().matches(&id));
        let e = Digits::parse("xyz!", "segment").err().unwrap();
        assert!(e.message().unwrap().contains("is not a hex id"), "{e:?}");
        let e = Digits::parse("ab", "segment").err().unwrap();
        assert!(e.message().unwrap().contains("too short"), "{e:?}");
        assert!(Digits::parse("0197c1a27f447579bcf24f7b48e20938", "segment")
            .unwrap()
            .full()
            .is_some());
    }

    #[test]
    fn paths_are_inside_the_root_lexically_or_through_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        std::fs::create_dir(&root).unwrap();
        let inside = root.join("s").join("g.jsonl");
        assert_eq!(
            relative_to(&root, &inside),
            Some(PathBuf::from("s/g.jsonl"))
        );
        let dotted = root.join("..").join("store").join("s");
        assert_eq!(relative_to(&root, &dotted), Some(PathBuf::from("s")));
        assert_eq!(
            relative_to(&root, &dir.path().join("other/s/g.jsonl")),
            None
        );
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&root, &link).unwrap();
        assert_eq!(
            relative_to(&root, &link.join("s")),
            Some(PathBuf::from("s"))
        );
        assert_eq!(
            relative_to(&link, &root.join("s")),
            Some(PathBuf::from("s"))
        );
    }
}
