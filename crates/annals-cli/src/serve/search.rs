//! The viewer's search: `annals grep`'s search module ([`annals_cli::search`]) with its pattern,
//! filter and time parsing, answered as JSON lines. Nothing here decides what matches; this
//! only reads the query string and shapes the hits for the page.

use std::ops::ControlFlow;
use std::path::Path;

use annals::{SessionId, Store};
use annals_cli::search::{
    self, time, Case, Filter, FilterSpec, Hit, Pattern, Progress, Query, Scope, SearchSink,
};
use serde_json::json;

use super::api::{relative, session_id, ApiError, ApiResult};
use super::guard::query_value;
use super::rows::{cut, visible};
use super::stream::{Head, Reply};

/// Hits per answer unless `limit` says otherwise, and at most.
const DEFAULT_HITS: usize = 200;
const MAX_HITS: usize = 1000;
/// Bytes of an entry shown before and after its first match.
const BEFORE: usize = 80;
const AFTER: usize = 240;
/// The first match is looked for in windows of this many bytes, so that finding it never holds
/// more than one window's matches (a pattern like `.` matches every character).
const WINDOW: usize = 64 << 10;

/// A search as the URL gives it: `q`, `regex=1`, `case=sensitive|insensitive|smart` (smart by
/// default), `session=ID` (repeatable; all sessions when absent), `newest=1` (each session's
/// newest segment only), `traces=1`, `where=FIELD=VALUE` (repeatable), `since`, `until`, `from`,
/// `to`, `limit`, and `sessions=1` for one line per matching session (the session list's text
/// filter) starting after `after=ID`.
#[derive(Debug, Default)]
pub struct SearchQuery {
    pattern: String,
    regex: bool,
    case: Case,
    sessions: Vec<SessionId>,
    newest_only: bool,
    traces: bool,
    fields: Vec<String>,
    since: Option<String>,
    until: Option<String>,
    from: Option<u64>,
    to: Option<u64>,
    limit: usize,
    sessions_only: bool,
    after: Option<SessionId>,
}

impl SearchQuery {
    /// Reads the query string (repeated keys kept, unknown ones refused).
    ///
    /// # Errors
    /// 400 for an unknown parameter, a bad id, number or flag.
    pub fn parse(raw: Option<&str>) -> ApiResult<Self> {
        let mut q = Self {
            limit: DEFAULT_HITS,
            case: Case::Smart,
            ..Self::default()
        };
        let raw = raw.unwrap_or_default();
        for pair in raw.split('&').filter(|p| !p.is_empty()) {
            let key = pair.split('=').next().unwrap_or_default();
            let value = query_value(pair, key).unwrap_or_default();
            let number = |v: &str| {
                v.parse::<u64>()
                    .map_err(|_| ApiError::bad_request(format!("{key}={v:?} is not a number")))
            };
            let flag = |v: &str| match v {
                "1" | "true" | "on" => Ok(true),
                "0" | "false" | "" => Ok(false),
                _ => Err(ApiError::bad_request(format!("{key}={v:?}: use 1 or 0"))),
            };
            match key {
                "q" => q.pattern = value,
                "regex" => q.regex = flag(&value)?,
                "case" => {
                    q.case = match value.as_str() {
                        "sensitive" => Case::Sensitive,
                        "insensitive" => Case::Insensitive,
                        "smart" | "" => Case::Smart,
                        other => {
                            return Err(ApiError::bad_request(format!(
                                "case={other:?}: use sensitive, insensitive or smart"
                            )))
                        }
                    }
                }
                "session" if !value.is_empty() => q.sessions.push(session_id(&value)?),
                "session" => {}
                "newest" => q.newest_only = flag(&value)?,
                "traces" => q.traces = flag(&value)?,
                "where" if !value.is_empty() => q.fields.push(value),
                "where" => {}
                "since" => q.since = Some(value).filter(|v| !v.is_empty()),
                "until" => q.until = Some(value).filter(|v| !v.is_empty()),
                "from" if !value.is_empty() => q.from = Some(number(&value)?),
                "to" if !value.is_empty() => q.to = Some(number(&value)?),
                "from" | "to" => {}
                "limit" => {
                    let n = usize::try_from(number(&value)?).unwrap_or(MAX_HITS);
                    q.limit = n.clamp(1, MAX_HITS);
                }
                "sessions" => q.sessions_only = flag(&value)?,
                "after" if !value.is_empty() => q.after = Some(session_id(&value)?),
                "after" => {}
                other => {
                    return Err(ApiError::bad_request(format!(
                        "unknown search parameter {other:?}"
                    )))
                }
            }
        }
        Ok(q)
    }

    /// The search module's query: the same parsers `annals grep` uses.
    fn compile(&self) -> ApiResult<Query> {
        let filter = Filter::parse(
            &FilterSpec {
                fields: &self.fields,
                since: self.since.as_deref(),
                until: self.until.as_deref(),
                from: self.from,
                to: self.to,
            },
            time::now_ms(),
        )
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let pattern = if self.regex {
            Pattern::regex(&self.pattern, self.case)
                .map_err(|e| ApiError::bad_request(e.to_string()))?
        } else {
            Pattern::fixed(&self.pattern, self.case)
        };
        if pattern.is_any() && filter.is_empty() {
            return Err(ApiError::bad_request(
                "nothing to search for: give q (a word or, with regex=1, a regular expression) or a filter",
            ));
        }
        Ok(Query { pattern, filter })
    }
}

/// Where a hit's first match is, as the page shows it: the text around it in pieces, each
/// marked as a match or not, escapes made visible.
fn snippet(pattern: &Pattern, json: &str) -> Vec<(String, bool)> {
    let mut start = 0;
    let mut first = None;
    while start < json.len() && first.is_none() {
        let (window, _) = cut(json.get(start..).unwrap_or_default(), WINDOW);
        if window.is_empty() {
            break;
        }
        first = pattern.matches(window).first().map(|m| start + m.start);
        start += window.len();
    }
    let at = first.unwrap_or(0);
    let mut from = at.saturating_sub(BEFORE);
    while !json.is_char_boundary(from) {
        from -= 1;
    }
    let (shown, _) = cut(json.get(from..).unwrap_or_default(), BEFORE + AFTER);
    let mut parts = Vec::new();
    let mut done = 0;
    if !pattern.is_any() {
        for m in pattern.matches(shown) {
            if m.start > done {
                parts.push((shown.get(done..m.start).unwrap_or_default(), false));
            }
            parts.push((shown.get(m.clone()).unwrap_or_default(), true));
            done = m.end;
        }
    }
    parts.push((shown.get(done..).unwrap_or_default(), false));
    let mut out: Vec<(String, bool)> = parts
        .into_iter()
        .filter(|(t, _)| !t.is_empty())
        .map(|(t, m)| (visible(t).into_owned(), m))
        .collect();
    if from > 0 {
        out.insert(0, ("\u{2026}".into(), false));
    }
    if from + shown.len() < json.len() {
        out.push(("\u{2026}".into(), false));
    }
    out
}

struct Lines<'r> {
    reply: &'r mut Reply,
    pattern: &'r Pattern,
    limit: usize,
    sent: usize,
    /// Sessions mode: where the session's first hit is (segment, seq); its search stops there.
    found: Option<(annals::SegmentId, u64)>,
    sessions_only: bool,
}

impl SearchSink for Lines<'_> {
    fn hit(&mut self, hit: Hit<'_>) -> ControlFlow<()> {
        if self.sessions_only {
            self.found = Some((hit.segment, hit.seq));
            return ControlFlow::Break(());
        }
        let line = json!({
            "kind": "hit",
            "session": hit.session.to_string(),
            "segment": hit.segment.to_string(),
            "seq": hit.seq,
            "t": hit.appended_ms,
            "len": hit.json.len(),
            "from_blob": hit.from_blob,
            "parts": snippet(self.pattern, hit.json),
        });
        self.sent += 1;
        if !self.reply.line(&line.to_string()) || self.sent >= self.limit {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    fn progress(&mut self, _: &Progress) -> ControlFlow<()> {
        // A page that went away stops its search within one progress step.
        if self.reply.is_gone() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}

/// Runs a search, streaming its hits (or matching sessions) and a last line with what was
/// read: `{"kind":"end", hits, entries, sessions, files, untimed, stopped, damaged, unreadable}`.
pub fn run(store: &dyn Store, root: &Path, q: &SearchQuery, reply: &mut Reply) -> ApiResult<()> {
    let query = q.compile()?;
    reply.start(Head::new("application/x-ndjson"));
    let mut lines = Lines {
        reply,
        pattern: &query.pattern,
        limit: q.limit,
        sent: 0,
        found: None,
        sessions_only: q.sessions_only,
    };
    let scope = |sessions| Scope {
        sessions,
        newest_only: q.newest_only,
        traces: q.traces,
    };
    let mut totals = search::SearchStats::default();
    let mut next_after = None;
    if q.sessions_only {
        let all = if q.sessions.is_empty() {
            store.list_sessions().map_err(ApiError::from)?
        } else {
            q.sessions.clone()
        };
        let start = q
            .after
            .and_then(|a| all.iter().position(|s| *s == a).map(|i| i + 1))
            .unwrap_or(0);
        for &session in all.iter().skip(start) {
            if lines.reply.is_gone() {
                break;
            }
            let stats = search::search(store, &scope(vec![session]), &query, &mut lines)
                .map_err(ApiError::from)?;
            add(&mut totals, stats);
            if let Some((segment, seq)) = lines.found.take() {
                lines.sent += 1;
                let line = json!({
                    "kind": "session",
                    "session": session.to_string(),
                    "segment": segment.to_string(),
                    "seq": seq,
                });
                lines.reply.line(&line.to_string());
                if lines.sent >= lines.limit {
                    next_after = Some(session.to_string());
                    break;
                }
            }
        }
        totals.stopped = next_after.is_some();
    } else {
        totals = search::search(store, &scope(q.sessions.clone()), &query, &mut lines)
            .map_err(ApiError::from)?;
    }
    let hits = lines.sent;
    let damaged: Vec<_> = totals
        .damaged
        .iter()
        .map(|d| {
            json!({
                "session": d.session.to_string(),
                "segment": d.segment.to_string(),
                "path": d.path.as_deref().map(|p| relative(p, root)),
                "line": d.first.line,
                "offset": d.first.offset,
                "reason": d.first.reason.to_string(),
                "count": d.count,
            })
        })
        .collect();
    let unreadable: Vec<_> = totals
        .unreadable
        .iter()
        .map(|u| {
            json!({
                "session": u.session.to_string(),
                "segment": u.segment.map(|g| g.to_string()),
                "error": u.error.to_string(),
            })
        })
        .collect();
    let end = json!({
        "kind": "end",
        "hits": hits,
        "sessions_only": q.sessions_only,
        "entries": totals.entries,
        "bytes": totals.bytes,
        "sessions": totals.sessions,
        "files": totals.files,
        "untimed": totals.untimed,
        "stopped": totals.stopped,
        "next_after": next_after,
        "damaged": damaged,
        "damaged_count": totals.damaged_count,
        "unreadable": unreadable,
        "unreadable_count": totals.unreadable_count,
    });
    reply.line(&end.to_string());
    Ok(())
}

/// Sums one session's search into the totals (sessions mode searches one session at a time).
fn add(totals: &mut search::SearchStats, one: search::SearchStats) {
    totals.sessions += one.sessions;
    totals.files += one.files;
    totals.entries += one.entries;
    totals.bytes += one.bytes;
    totals.hits += one.hits;
    totals.untimed += one.untimed;
    totals.damaged_count += one.damaged_count;
    totals.unreadable_count += one.unreadable_count;
    let room = search::SearchStats::MAX_LISTED.saturating_sub(totals.damaged.len());
    totals.damaged.extend(one.damaged.into_iter().take(room));
    let room = search::SearchStats::MAX_LISTED.saturating_sub(totals.unreadable.len());
    totals
        .unreadable
        .extend(one.unreadable.into_iter().take(room));
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    fn text(parts: &[(String, bool)]) -> String {
        parts.iter().map(|(t, _)| t.as_str()).collect()
    }

    #[test]
    fn a_snippet_marks_the_matches_around_the_first() {
        let p = Pattern::fixed("needle", Case::Sensitive);
        let json = format!(
            "{{\"text\":\"{}needle and needle{}\"}}",
            "a".repeat(200),
            "b".repeat(400)
        );
        let parts = snippet(&p, &json);
        assert_eq!(parts.first().unwrap().0, "\u{2026}");
        assert_eq!(parts.last().unwrap().0, "\u{2026}");
        let marked: Vec<&str> = parts
            .iter()
            .filter(|(_, m)| *m)
            .map(|(t, _)| t.as_str())
            .collect();
        assert_eq!(marked, ["needle", "needle"]);
        assert!(text(&parts).len() <= BEFORE + AFTER + 2 * '\u{2026}'.len_utf8());
    }

    #[test]
    fn a_snippet_finds_a_match_far_into_a_huge_entry() {
        let p = Pattern::regex("ne+dle", Case::Sensitive).unwrap();
        let json = format!("\"{}needle\"", "x".repeat(3 * WINDOW + 17));
        let parts = snippet(&p, &json);
        assert!(parts.iter().any(|(t, m)| *m && t == "needle"), "{parts:?}");
    }

    #[test]
    fn snippets_make_escapes_visible_and_cut_on_characters() {
        let p = Pattern::fixed("é", Case::Sensitive);
        let json = format!("\"\u{1b}[1m{}é\"", "ü".repeat(100));
        let parts = snippet(&p, &json);
        assert!(parts.iter().any(|(t, m)| *m && t == "é"));
        let p = Pattern::fixed("x", Case::Sensitive);
        let parts = snippet(&p, "\"\u{1b}x\"");
        assert_eq!(text(&parts), "\"\u{241b}x\"");
    }

    #[test]
    fn queries_parse_like_the_command_line() {
        let q = SearchQuery::parse(Some(
            "q=Time%20out&case=insensitive&where=type%3Dtool&where=name!%3Dx&since=10m&limit=5000",
        ))
        .unwrap();
        assert_eq!(q.pattern, "Time out");
        assert_eq!(q.case, Case::Insensitive);
        assert_eq!(q.fields, ["type=tool", "name!=x"]);
        assert_eq!(q.limit, MAX_HITS);
        assert!(q.compile().is_ok());
        for bad in [
            "q=x&from=5&to=2",
            "q=x&since=yesterday",
            "q=(&regex=1",
            "",
            "q=x&bogus=1",
            "q=x&session=../../etc",
            "q=x&case=upper",
            "q=x&regex=maybe",
        ] {
            let refused = SearchQuery::parse(Some(bad)).and_then(|q| q.compile().map(|_| ()));
            assert_eq!(
                refused.unwrap_err().status,
                StatusCode::BAD_REQUEST,
                "{bad}"
            );
        }
    }
}
