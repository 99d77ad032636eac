//! Which store, which session, which segment: the root from `--root`, `ANNALS_ROOT` or the
//! default, and ids from full UUIDs, unique prefixes or segment file paths.

use std::path::{Path, PathBuf};

use annals::{FsStore, SegmentId, SessionId, Store};

use crate::fail::{store_error, Failure, CANNOT_RUN, PROBLEMS};

/// The store root used when neither `--root` nor `ANNALS_ROOT` is given.
pub const DEFAULT_ROOT: &str = "./annals-store";

/// An opened store and the root it was opened at.
pub struct Target {
    pub store: FsStore,
    pub root: PathBuf,
}

impl Target {
    /// Opens an existing store. Never creates anything: read-only commands and repair must
    /// not leave a directory behind when pointed at the wrong place.
    pub fn existing(root: Option<PathBuf>) -> Result<Self, Failure> {
        let root = root.unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT));
        if !root.is_dir() {
            return Err(Failure::new(
                CANNOT_RUN,
                "no annals store here",
                root.display(),
                "pass --root DIR or set ANNALS_ROOT (`annals demo --root DIR` makes a store to try)",
            ));
        }
        Self::open(root)
    }

    /// Opens a store, creating its root if needed (commands that write).
    pub fn create(root: Option<PathBuf>) -> Result<Self, Failure> {
        Self::open(root.unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT)))
    }

    fn open(root: PathBuf) -> Result<Self, Failure> {
        let store = FsStore::open(&root).map_err(|e| store_error(e, &root))?;
        Ok(Self { store, root })
    }

    /// Maps a library error with this store's root as context.
    pub fn err(&self, e: annals::Error) -> Failure {
        store_error(e, &self.root)
    }

    /// A session from a full id or a unique prefix of one.
    pub fn session(&self, arg: &str) -> Result<SessionId, Failure> {
        if let Ok(id) = arg.parse::<SessionId>() {
            return Ok(id);
        }
        let prefix = id_prefix(arg, "session")?;
        let matches: Vec<SessionId> = self
            .store
            .list_sessions()
            .map_err(|e| self.err(e))?
            .into_iter()
            .filter(|s| s.to_string().starts_with(&prefix))
            .collect();
        self.unique(arg, "session", matches)
    }

    /// A segment and its session: from a full id (the session is found with `find_session`
    /// unless given), a unique prefix, or the path of a segment file.
    pub fn segment(
        &self,
        arg: &str,
        session: Option<&str>,
    ) -> Result<(SessionId, SegmentId), Failure> {
        let (arg, from_path) = split_path(arg);
        let session = match session {
            Some(s) => Some(self.session(s)?),
            None => from_path,
        };
        if let Ok(segment) = arg.parse::<SegmentId>() {
            let session = match session {
                Some(s) => s,
                None => self
                    .store
                    .find_session(segment)
                    .map_err(|e| self.err(e))?
                    .ok_or_else(|| not_found("segment", arg, &self.root))?,
            };
            return Ok((session, segment));
        }
        let prefix = id_prefix(arg, "segment")?;
        let sessions = match session {
            Some(s) => vec![s],
            None => self.store.list_sessions().map_err(|e| self.err(e))?,
        };
        let mut matches = Vec::new();
        for s in sessions {
            let segments = match self.store.list_segments(s) {
                Ok(list) => list,
                // Deleted while we looked: it holds nothing now.
                Err(annals::Error::SessionNotFound(_)) => continue,
                Err(e) => return Err(self.err(e)),
            };
            matches.extend(
                segments
                    .into_iter()
                    .filter(|info| info.segment.to_string().starts_with(&prefix))
                    .map(|info| (s, info.segment)),
            );
        }
        match matches.as_slice() {
            [one] => Ok(*one),
            [] => Err(not_found("segment", arg, &self.root)),
            many => Err(ambiguous(
                arg,
                "segment",
                many.iter().map(|(_, g)| g.to_string()),
            )),
        }
    }

    fn unique(&self, arg: &str, what: &str, matches: Vec<SessionId>) -> Result<SessionId, Failure> {
        match matches.as_slice() {
            [one] => Ok(*one),
            [] => Err(not_found(what, arg, &self.root)),
            many => Err(ambiguous(arg, what, many.iter().map(ToString::to_string))),
        }
    }
}

/// `…/SESSION/SEGMENT.jsonl` (as `verify` prints) → the segment text and the session.
fn split_path(arg: &str) -> (&str, Option<SessionId>) {
    if !arg.contains('/') && !arg.ends_with(".jsonl") {
        return (arg, None);
    }
    let path = Path::new(arg);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or(arg);
    let stem = name
        .strip_suffix(".trace.jsonl")
        .or_else(|| name.strip_suffix(".jsonl"))
        .unwrap_or(name);
    let session = path
        .parent()
        .and_then(Path::file_name)
        .and_then(|n| n.to_str())
        .and_then(|n| n.parse().ok());
    (stem, session)
}

fn id_prefix(arg: &str, what: &str) -> Result<String, Failure> {
    let prefix = arg.to_ascii_lowercase();
    if prefix.len() < 4 || !prefix.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        return Err(Failure::usage(
            format!("{arg:?} is not a {what} id"),
            "give the full UUID or at least its first 4 characters",
        ));
    }
    Ok(prefix)
}

fn not_found(what: &str, arg: &str, root: &Path) -> Failure {
    let todo = if what == "session" {
        "run `annals ls` to list the sessions"
    } else {
        "run `annals ls SESSION` to list a session's segments"
    };
    Failure::new(
        PROBLEMS,
        format!("no {what} matches {arg:?}"),
        format!("store {}", root.display()),
        todo,
    )
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
            "{arg:?} matches {} {what}s ({}{more})",
            all.len(),
            shown.join(", ")
        ),
        "give more characters of the id",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_paths_give_their_ids() {
        let s = SessionId::new();
        let g = SegmentId::new();
        let arg = format!("/x/store/{s}/{g}.jsonl");
        let (text, session) = split_path(&arg);
        assert_eq!(text, g.to_string());
        assert_eq!(session, Some(s));
        assert_eq!(split_path("0197ab"), ("0197ab", None));
    }

    #[test]
    fn prefixes_must_look_like_ids() {
        assert!(id_prefix("01", "segment").is_err());
        assert!(id_prefix("zzzz", "segment").is_err());
        assert_eq!(id_prefix("0197AB", "segment").unwrap(), "0197ab");
    }
}
