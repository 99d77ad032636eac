//! The JSON answers, as blocking functions over `&dyn Store`: what the handlers in
//! [`super::routes`] run on the blocking pool. Each one reads only what its answer shows (a page
//! of sessions, one segment's range), so its cost does not grow with the store.

use std::ops::ControlFlow;
use std::path::Path;

use annals::{
    BlobId, Error, ReplayOptions, ScanReport, SegmentId, SegmentInfo, SessionId, Store, Tip,
};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use annals_cli::lineage::Tree;
use annals_cli::search::{time, Filter, FilterSpec, Verdict};

use super::rows::Row;
use super::stream::{Head, Reply};
use crate::term::{epoch_ms, write_pretty, Style};

/// A refused or failed request: a status and a message for people.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let status = match &e {
            Error::SessionNotFound(_)
            | Error::SegmentNotFound { .. }
            | Error::BlobNotFound { .. } => StatusCode::NOT_FOUND,
            Error::InvalidId { .. } => StatusCode::BAD_REQUEST,
            // Damage is a fact about the store, not a failure of the server.
            Error::Corrupt { .. } | Error::UnsupportedVersion { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": self.message, "status": self.status.as_u16()});
        (self.status, axum::Json(body)).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// A session id from a URL: a full UUID, parsed by the library (so nothing but hex digits
/// and dashes ever reaches a path).
pub fn session_id(text: &str) -> ApiResult<SessionId> {
    text.parse().map_err(ApiError::from)
}

pub fn segment_id(text: &str) -> ApiResult<SegmentId> {
    text.parse().map_err(ApiError::from)
}

/// Most sessions on one page of the list.
pub const MAX_PAGE: usize = 200;
/// Most rows in one answer of the entries or trace stream.
pub const MAX_ROWS: u64 = 5000;

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    pub offset: usize,
    pub limit: Option<usize>,
    /// Keep sessions whose id contains this (case-insensitive).
    pub id: Option<String>,
}

/// One page of the session list, newest first. Listing the ids costs one directory read; only
/// the sessions on the page are opened.
pub fn sessions(store: &dyn Store, q: &ListQuery) -> ApiResult<Value> {
    let limit = q.limit.unwrap_or(50).clamp(1, MAX_PAGE);
    let needle = q.id.as_deref().map(str::trim).filter(|s| !s.is_empty());
    if let Some(n) = needle {
        if !n.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
            return Err(ApiError::bad_request(format!(
                "{n:?} is not part of a session id (hex digits and dashes); search the text instead"
            )));
        }
    }
    let needle = needle.map(str::to_ascii_lowercase);
    let ids = store.list_sessions()?;
    let matching: Vec<SessionId> = match &needle {
        Some(n) => ids
            .into_iter()
            .filter(|id| id.to_string().contains(n.as_str()))
            .collect(),
        None => ids,
    };
    let total = matching.len();
    let mut rows = Vec::new();
    for &session in matching.iter().skip(q.offset).take(limit) {
        rows.push(session_row(store, session));
    }
    Ok(json!({
        "total": total,
        "offset": q.offset,
        "limit": limit,
        "sessions": rows,
    }))
}

/// A session as the list shows it. One that cannot be read is shown with its error rather
/// than hiding the rest of the page.
pub fn session_row(store: &dyn Store, session: SessionId) -> Value {
    let list = match store.list_segments(session) {
        Ok(list) => list,
        Err(e) => return json!({"session": session.to_string(), "error": e.to_string()}),
    };
    let newest = list.first().map(|i| i.segment.to_string());
    let mut last: Option<(u64, bool)> = None;
    for info in &list {
        let this = match last_entry_ms(store, session, info) {
            Some(t) => (t, true),
            None => (epoch_ms(info.modified), false),
        };
        if last.is_none_or(|l| this.0 > l.0) {
            last = Some(this);
        }
    }
    json!({
        "session": session.to_string(),
        "segments": list.len(),
        "entries": list.iter().map(|i| i.tip.count).sum::<u64>(),
        "bytes": list.iter().map(|i| i.bytes).sum::<u64>(),
        "last_ms": last.map(|l| l.0),
        "last_is_entry_time": last.is_some_and(|l| l.1),
        "created_ms": list.iter().map(|i| i.created_ms).filter(|&c| c > 0).min(),
        "damaged_segments": list.iter().filter(|i| i.damage.is_some()).count(),
        "newest_segment": newest,
    })
}

/// When the last entry of a segment was appended: one read of its last line (the store finds
/// it without reading the rest). `None` for an empty, damaged or format-1 segment.
fn last_entry_ms(store: &dyn Store, session: SessionId, info: &SegmentInfo) -> Option<u64> {
    if info.damage.is_some() || info.tip.count == 0 {
        return None;
    }
    let mut t = None;
    let options = ReplayOptions::tolerant()
        .from_seq(info.tip.count - 1)
        .blob_refs();
    store
        .replay_raw(session, info.segment, &options, &mut |entry| {
            t = entry.appended_ms;
            Ok(ControlFlow::Break(()))
        })
        .ok()?;
    t
}

fn segment_json(store: &dyn Store, session: SessionId, info: &SegmentInfo) -> Value {
    json!({
        "segment": info.segment.to_string(),
        "entries": info.tip.count,
        "generation": info.tip.generation,
        "bytes": info.bytes,
        "modified_ms": epoch_ms(info.modified),
        "created_ms": info.created_ms,
        "last_ms": last_entry_ms(store, session, info),
        "fork": info.fork.map(|f| json!({"segment": f.segment.to_string(), "at": f.at})),
        "damage": info.damage.as_ref().map(ToString::to_string),
    })
}

/// A session's segments as its fork tree: in reading order (the CLI's `lineage`: oldest root
/// first, each segment followed by its forks), each with its depth and parent.
pub fn tree_json(list: &[SegmentInfo], one: impl Fn(&SegmentInfo) -> Value) -> Vec<Value> {
    let tree = Tree::new(list.to_vec());
    tree.nodes
        .iter()
        .map(|node| {
            let mut v = one(&node.info);
            if let Some(o) = v.as_object_mut() {
                o.insert("depth".into(), json!(node.depth));
                o.insert(
                    "parent".into(),
                    json!(node
                        .parent
                        .and_then(|p| tree.nodes.get(p))
                        .map(|p| p.info.segment.to_string())),
                );
                o.insert("orphan".into(), json!(node.orphan));
                o.insert("newest".into(), json!(node.newest));
            }
            v
        })
        .collect()
}

/// A session: its segments (as its fork tree) and attachments.
pub fn session(store: &dyn Store, session: SessionId) -> ApiResult<Value> {
    let list = store.list_segments(session)?;
    let segments = tree_json(&list, |info| segment_json(store, session, info));
    let (attachments, attachments_error) = match store.list_attachments(session) {
        Ok(list) => (list, None),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    let attachments: Vec<Value> = attachments
        .iter()
        .map(|a| {
            json!({
                "id": a.id.to_hex(),
                "len": a.len,
                "type": a.meta.media_type,
                "label": a.meta.label,
                "created_ms": a.created_ms,
            })
        })
        .collect();
    Ok(json!({
        "session": session.to_string(),
        "newest_segment": list.first().map(|i| i.segment.to_string()),
        "segments": segments,
        "attachments": attachments,
        "attachments_error": attachments_error,
    }))
}

fn report_json(report: &ScanReport, root: &Path) -> Value {
    json!({
        "path": report.path.as_deref().map(|p| relative(p, root)),
        "entries": report.entries,
        "file_len": report.file_len,
        "valid_up_to": report.valid_up_to,
        "torn_tail": report.torn_tail.map(|t| json!({"offset": t.offset, "len": t.len})),
        "problem_count": report.problem_count,
        "problems": report.problems.iter().map(|p| json!({
            "line": p.line,
            "offset": p.offset,
            "reason": p.reason.to_string(),
        })).collect::<Vec<_>>(),
    })
}

/// A path as shown to the page: relative to the store's root, so that the page never learns
/// more of the machine than the store.
pub fn relative(path: &Path, root: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Verify's verdict on every segment of a session and its trace: every line checked.
pub fn verify(store: &dyn Store, root: &Path, session: SessionId) -> ApiResult<Value> {
    let list = store.list_segments(session)?;
    let mut out = Vec::new();
    for info in &list {
        let log = match store.verify(session, info.segment) {
            Ok(r) => report_json(&r, root),
            Err(e) => json!({"error": e.to_string()}),
        };
        let trace = match store.replay_trace_raw(
            session,
            info.segment,
            &ReplayOptions::tolerant().blob_refs(),
            &mut |_| Ok(ControlFlow::Continue(())),
        ) {
            Ok(r) => report_json(&r, root),
            Err(e) => json!({"error": e.to_string()}),
        };
        out.push(json!({"segment": info.segment.to_string(), "log": log, "trace": trace}));
    }
    Ok(json!({"session": session.to_string(), "segments": out}))
}

#[derive(Debug, Deserialize)]
pub struct RangeQuery {
    /// First sequence number.
    #[serde(default)]
    pub from: u64,
    /// Last sequence number (inclusive).
    pub to: Option<u64>,
    /// Entries appended at or after this time (`10m`, `2026-12-01T10:00`, as `annals cat`).
    pub since: Option<String>,
    /// Entries appended at or before this time.
    pub until: Option<String>,
    /// Most rows.
    pub limit: Option<u64>,
}

impl RangeQuery {
    /// The most rows, and the filter: the CLI's parser, so `--from 5 --to 2` and a bad time are
    /// refused here as there.
    fn check(&self) -> ApiResult<(u64, Filter)> {
        fn text(t: &Option<String>) -> Option<&str> {
            t.as_deref().filter(|t| !t.trim().is_empty())
        }
        let filter = Filter::parse(
            &FilterSpec {
                fields: &[],
                since: text(&self.since),
                until: text(&self.until),
                from: Some(self.from),
                to: self.to,
            },
            time::now_ms(),
        )
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
        Ok((self.limit.unwrap_or(500).clamp(1, MAX_ROWS), filter))
    }
}

/// Which file of a segment a stream reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Log {
    Entries,
    Trace,
}

/// A range of a segment's entries (or trace events) as rows, one JSON line each, then a last
/// line `{"kind":"end",…}` with the tip, where to go on (`next`) and what the tolerant replay
/// found (problems with line and offset, a torn tail), so that the page shows damage where it
/// is. Entries kept as blobs are read back, for their text preview.
pub fn rows(
    store: &dyn Store,
    root: &Path,
    session: SessionId,
    segment: SegmentId,
    log: Log,
    q: &RangeQuery,
    reply: &mut Reply,
) -> ApiResult<()> {
    let (limit, filter) = q.check()?;
    let tip = match store.tip(session, segment) {
        Ok(tip) => Some(tip),
        // A damaged last line: the tolerant replay still shows everything before it.
        Err(Error::Corrupt { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    reply.start(Head::new("application/x-ndjson"));
    let mut sent = 0u64;
    let mut untimed = 0u64;
    let mut next = None;
    let options = ReplayOptions::tolerant().from_seq(q.from);
    let kind = match log {
        Log::Entries => "entry",
        Log::Trace => "trace",
    };
    let report = {
        let mut sink = |entry: annals::Entry<'_>| {
            if entry.seq < q.from {
                return Ok(ControlFlow::Continue(()));
            }
            if filter.past_end(entry.seq) {
                return Ok(ControlFlow::Break(()));
            }
            match filter.check_time(entry.appended_ms) {
                Verdict::Pass => {}
                Verdict::NoTime => {
                    untimed += 1;
                    return Ok(ControlFlow::Continue(()));
                }
                Verdict::Fail => return Ok(ControlFlow::Continue(())),
            }
            if sent == limit {
                next = Some(entry.seq);
                return Ok(ControlFlow::Break(()));
            }
            sent += 1;
            if reply.line(&Row::of(kind, &entry).to_line()) {
                Ok(ControlFlow::Continue(()))
            } else {
                Ok(ControlFlow::Break(()))
            }
        };
        match log {
            Log::Entries => store.replay_raw(session, segment, &options, &mut sink)?,
            Log::Trace => store.replay_trace_raw(session, segment, &options, &mut sink)?,
        }
    };
    let end = json!({
        "kind": "end",
        "rows": sent,
        "untimed": untimed,
        "next": next,
        "tip": tip.map(tip_json),
        "report": report_json(&report, root),
    });
    reply.line(&end.to_string());
    Ok(())
}

pub fn tip_json(tip: Tip) -> Value {
    json!({"count": tip.count, "generation": tip.generation})
}

#[derive(Debug, Deserialize)]
pub struct EntryQuery {
    /// `json` (as stored, the default) or `pretty` (indented, key order and numbers kept).
    pub format: Option<String>,
}

/// One entry's whole JSON text, streamed: as stored (`application/json`) or indented
/// (`text/plain`). 404 past the end; 422 when its line is damaged.
pub fn entry(
    store: &dyn Store,
    session: SessionId,
    segment: SegmentId,
    seq: u64,
    q: &EntryQuery,
    reply: &mut Reply,
) -> ApiResult<()> {
    let pretty = match q.format.as_deref() {
        None | Some("json") => false,
        Some("pretty") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "format {other:?}: use json or pretty"
            )))
        }
    };
    let mut found = false;
    let mut write_error = None;
    let report = store.replay_raw(
        session,
        segment,
        &ReplayOptions::tolerant().from_seq(seq),
        &mut |e| {
            if e.seq < seq {
                return Ok(ControlFlow::Continue(()));
            }
            if e.seq == seq {
                if let Some(json) = e.json() {
                    found = true;
                    let head = if pretty {
                        "text/plain; charset=utf-8"
                    } else {
                        "application/json"
                    };
                    reply.start(Head::new(head));
                    let written = if pretty {
                        write_pretty(reply, json, Style::plain())
                    } else {
                        std::io::Write::write_all(reply, json.as_bytes())
                    };
                    write_error = written.err();
                }
            }
            Ok(ControlFlow::Break(()))
        },
    )?;
    if found {
        return match write_error {
            Some(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                Err(ApiError::internal(e.to_string()))
            }
            _ => Ok(()),
        };
    }
    let count = store.tip(session, segment).map(|t| t.count).unwrap_or(0);
    if seq >= count && report.problem_count == 0 {
        return Err(ApiError::not_found(format!(
            "segment {segment} has {count} entries: there is no entry {seq}"
        )));
    }
    Err(ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        format!("entry {seq} of segment {segment} is damaged: see the segment's findings"),
    ))
}

/// An attachment's bytes, with what the download needs to name it. Only blobs listed as the
/// session's attachments are served.
pub fn attachment(store: &dyn Store, session: SessionId, id: &str) -> ApiResult<(Vec<u8>, String)> {
    let id: BlobId = id.parse()?;
    let listed = store.list_attachments(session)?;
    let Some(found) = listed.iter().find(|a| a.id == id) else {
        return Err(ApiError::not_found(format!(
            "session {session} has no attachment {id}"
        )));
    };
    let bytes = store.get_blob(session, &id)?;
    Ok((bytes, download_name(found.meta.label.as_deref(), &id)))
}

/// A file name safe in a `Content-Disposition` header: the label's letters, digits, dots,
/// dashes and underscores, else a name made from the blob id.
pub fn download_name(label: Option<&str>, id: &BlobId) -> String {
    let cleaned: String = label
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .take(100)
        .collect();
    let cleaned = cleaned.trim_start_matches('.');
    if cleaned.is_empty() {
        format!("attachment-{}", id.to_hex().get(..12).unwrap_or_default())
    } else {
        cleaned.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use annals::{MemStore, StoreExt};
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn ids_from_urls_are_full_uuids() {
        assert!(session_id("../../etc").is_err());
        assert_eq!(
            session_id("0197").unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        let s = SessionId::new();
        assert_eq!(session_id(&s.to_string()).unwrap(), s);
    }

    #[test]
    fn download_names_are_tame() {
        let id = BlobId::of(b"x");
        assert_eq!(download_name(Some("report.pdf"), &id), "report.pdf");
        assert_eq!(download_name(Some("../../x\"; y.sh"), &id), "xy.sh");
        assert_eq!(
            download_name(Some("\u{202e}"), &id),
            format!("attachment-{}", &id.to_hex()[..12])
        );
        assert_eq!(download_name(None, &id).len(), "attachment-".len() + 12);
    }

    /// Counts the calls that open a session, to show what a page of the list costs.
    struct Counting {
        inner: MemStore,
        listed: AtomicUsize,
    }

    #[test]
    fn a_page_of_the_list_opens_only_its_sessions() {
        let inner = MemStore::new();
        let mut all = Vec::new();
        for i in 0..300 {
            let (s, g) = (SessionId::new(), SegmentId::new());
            inner.create(s, g, &[json!({"n": i})]).unwrap();
            all.push(s);
        }
        let store = Counting {
            inner,
            listed: AtomicUsize::new(0),
        };
        let page = sessions(
            &store,
            &ListQuery {
                offset: 40,
                limit: Some(20),
                id: None,
            },
        )
        .unwrap();
        assert_eq!(page["total"], 300);
        let shown = page["sessions"].as_array().unwrap();
        assert_eq!(shown.len(), 20);
        assert_eq!(store.listed.load(Ordering::SeqCst), 20);
        // Newest first, as the store lists them.
        let newest_first = store.inner.list_sessions().unwrap();
        assert_eq!(shown[0]["session"], newest_first[40].to_string());
        assert_eq!(shown[0]["entries"], 1);

        let wanted = all[7].to_string();
        let tail = &wanted[wanted.len() - 12..];
        let found = sessions(
            &store,
            &ListQuery {
                offset: 0,
                limit: None,
                id: Some(tail.to_uppercase()),
            },
        )
        .unwrap();
        assert_eq!(found["total"], 1);
        assert_eq!(found["sessions"][0]["session"], wanted);
        let bad = sessions(
            &store,
            &ListQuery {
                offset: 0,
                limit: None,
                id: Some("<b>".into()),
            },
        );
        assert_eq!(bad.unwrap_err().status, StatusCode::BAD_REQUEST);
    }

    impl Store for Counting {
        fn list_segments(&self, session: SessionId) -> annals::Result<Vec<SegmentInfo>> {
            self.listed.fetch_add(1, Ordering::SeqCst);
            self.inner.list_segments(session)
        }
        fn create_segment(
            &self,
            s: SessionId,
            g: SegmentId,
            i: &[annals::RawEntry],
        ) -> annals::Result<Tip> {
            self.inner.create_segment(s, g, i)
        }
        fn append_batch_raw(
            &self,
            s: SessionId,
            g: SegmentId,
            e: &[annals::RawEntry],
        ) -> annals::Result<Tip> {
            self.inner.append_batch_raw(s, g, e)
        }
        fn append_if(
            &self,
            s: SessionId,
            g: SegmentId,
            t: Tip,
            e: &[annals::RawEntry],
        ) -> annals::Result<Tip> {
            self.inner.append_if(s, g, t, e)
        }
        fn replay_raw(
            &self,
            s: SessionId,
            g: SegmentId,
            o: &ReplayOptions,
            sink: &mut annals::Sink<'_>,
        ) -> annals::Result<ScanReport> {
            self.inner.replay_raw(s, g, o, sink)
        }
        fn sync(&self, s: SessionId, g: SegmentId) -> annals::Result<()> {
            self.inner.sync(s, g)
        }
        fn lease(
            &self,
            s: SessionId,
            g: SegmentId,
            o: &annals::LeaseOptions,
        ) -> annals::Result<Box<dyn annals::Lease>> {
            self.inner.lease(s, g, o)
        }
        fn tip(&self, s: SessionId, g: SegmentId) -> annals::Result<Tip> {
            self.inner.tip(s, g)
        }
        fn truncate(&self, s: SessionId, g: SegmentId, k: u64) -> annals::Result<Tip> {
            self.inner.truncate(s, g, k)
        }
        fn truncate_if(&self, s: SessionId, g: SegmentId, t: Tip, k: u64) -> annals::Result<Tip> {
            self.inner.truncate_if(s, g, t, k)
        }
        fn fork(
            &self,
            s: SessionId,
            g: SegmentId,
            at: u64,
            into: SegmentId,
        ) -> annals::Result<Tip> {
            self.inner.fork(s, g, at, into)
        }
        fn exists(&self, s: SessionId, g: SegmentId) -> annals::Result<bool> {
            self.inner.exists(s, g)
        }
        fn list_sessions(&self) -> annals::Result<Vec<SessionId>> {
            self.inner.list_sessions()
        }
        fn find_session(&self, g: SegmentId) -> annals::Result<Option<SessionId>> {
            self.inner.find_session(g)
        }
        fn delete_session(&self, s: SessionId) -> annals::Result<()> {
            self.inner.delete_session(s)
        }
        fn session_modified(&self, s: SessionId) -> annals::Result<std::time::SystemTime> {
            self.inner.session_modified(s)
        }
        fn append_trace_raw(
            &self,
            s: SessionId,
            g: SegmentId,
            e: &[annals::RawEntry],
        ) -> annals::Result<()> {
            self.inner.append_trace_raw(s, g, e)
        }
        fn replay_trace_raw(
            &self,
            s: SessionId,
            g: SegmentId,
            o: &ReplayOptions,
            sink: &mut annals::Sink<'_>,
        ) -> annals::Result<ScanReport> {
            self.inner.replay_trace_raw(s, g, o, sink)
        }
        fn put_attachment(
            &self,
            s: SessionId,
            b: &[u8],
            m: &annals::AttachmentMeta,
        ) -> annals::Result<annals::Attachment> {
            self.inner.put_attachment(s, b, m)
        }
        fn list_attachments(&self, s: SessionId) -> annals::Result<Vec<annals::Attachment>> {
            self.inner.list_attachments(s)
        }
        fn get_blob(&self, s: SessionId, id: &BlobId) -> annals::Result<Vec<u8>> {
            self.inner.get_blob(s, id)
        }
        fn gc_blobs(&self, s: SessionId, d: bool) -> annals::Result<annals::GcReport> {
            self.inner.gc_blobs(s, d)
        }
        fn max_entry_bytes(&self) -> usize {
            self.inner.max_entry_bytes()
        }
        fn is_durable(&self) -> bool {
            false
        }
    }
}
