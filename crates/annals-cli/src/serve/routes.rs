//! The URL space: pages (one HTML shell that the script fills), assets, and the JSON API; the
//! guard in front of all of them and the security headers on every answer. Handlers are thin:
//! they parse ids and queries and run the blocking work of [`super::api`] on the blocking
//! pool.
//!
//! Pages: `/`, `/search`, `/s/SESSION` (its newest segment), `/s/SESSION/SEGMENT`,
//! `/s/SESSION/SEGMENT/SEQ` (one entry). API: see `docs/SERVE.md`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use annals::Store;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use tokio::sync::mpsc;

use super::api::{self, segment_id, session_id, ApiError, ApiResult, Log};
use super::assets;
use super::guard::{self, Guard, Seen, Verdict};
use super::live::{Position, Watch};
use super::search::SearchQuery;
use super::stream::{error_line, no_error_line, streamed};

/// What every handler shares.
pub struct App {
    pub store: Arc<dyn Store>,
    /// What paths in reports are shown relative to: the store's root, or a database's
    /// `postgresql://user@host:port/database` (so the page learns no more than the store).
    pub root: PathBuf,
    /// The store, for messages: never a password.
    pub shown: String,
    pub guard: Guard,
}

type Shared = State<Arc<App>>;

pub fn router(app: Arc<App>) -> Router {
    let seg = "/api/sessions/{session}/segments/{segment}";
    Router::new()
        .route("/", get(page))
        .route("/search", get(page))
        .route("/s/{session}", get(session_page))
        .route("/s/{session}/{segment}", get(segment_page))
        .route("/s/{session}/{segment}/{seq}", get(entry_page))
        .route("/assets/{name}", get(asset))
        .route("/api/info", get(info))
        .route("/api/sessions", get(sessions))
        .route("/api/sessions/{session}", get(session))
        .route("/api/sessions/{session}/verify", get(verify))
        .route("/api/sessions/{session}/attachments/{id}", get(attachment))
        .route(&format!("{seg}/entries"), get(entries))
        .route(&format!("{seg}/entries/{{seq}}"), get(entry))
        .route(&format!("{seg}/trace"), get(trace))
        .route(&format!("{seg}/events"), get(events))
        .route("/api/search", get(search))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(Arc::clone(&app), guard))
        .with_state(app)
}

/// Runs a blocking function of the store on the blocking pool.
async fn blocking<T: Send + 'static>(
    app: &Arc<App>,
    f: impl FnOnce(&dyn Store) -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    let app = Arc::clone(app);
    tokio::task::spawn_blocking(move || f(app.store.as_ref()))
        .await
        .unwrap_or_else(|_| Err(ApiError::internal("the request's work failed")))
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> ApiResult<T> {
    q.map(|Query(q)| q)
        .map_err(|e| ApiError::bad_request(e.body_text()))
}

// ---------------------------------------------------------------------------------------------
// The guard and the headers.

async fn guard(State(app): Shared, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let text = |name: HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let seen = Seen {
        host: text(header::HOST),
        origin: text(header::ORIGIN),
        fetch_site: text(HeaderName::from_static("sec-fetch-site")),
        fetch_mode: text(HeaderName::from_static("sec-fetch-mode")),
        fetch_dest: text(HeaderName::from_static("sec-fetch-dest")),
        authorization: text(header::AUTHORIZATION),
        cookie: text(header::COOKIE),
    };
    let uri = request.uri();
    let verdict = app
        .guard
        .check(request.method().as_str(), uri.path(), uri.query(), &seen);
    let mut response = match verdict {
        Verdict::Pass => next.run(request).await,
        Verdict::SetCookie { cookie, location } => {
            let mut r = StatusCode::SEE_OTHER.into_response();
            if let (Ok(c), Ok(l)) = (
                HeaderValue::from_str(&cookie),
                HeaderValue::from_str(&location),
            ) {
                r.headers_mut().insert(header::SET_COOKIE, c);
                r.headers_mut().insert(header::LOCATION, l);
            }
            r
        }
        Verdict::Refuse { status, reason } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
            let mut r = (status, format!("annals serve: {reason}\n")).into_response();
            if status == StatusCode::UNAUTHORIZED {
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"annals\""),
                );
            }
            if status == StatusCode::METHOD_NOT_ALLOWED {
                r.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            }
            r
        }
    };
    let headers = response.headers_mut();
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(guard::CSP),
        );
    }
    for (name, value) in guard::COMMON_HEADERS {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

// ---------------------------------------------------------------------------------------------
// Pages and assets.

fn shell(status: StatusCode) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        assets::INDEX_HTML,
    )
        .into_response()
}

async fn page() -> Response {
    shell(StatusCode::OK)
}

/// A page's status says whether what it names exists; the shell is served either way, and the
/// script shows the API's message.
async fn page_for(app: &Arc<App>, session: &str, segment: Option<&str>) -> Response {
    let ids = session_id(session).and_then(|s| Ok((s, segment.map(segment_id).transpose()?)));
    let Ok((session, segment)) = ids else {
        return shell(StatusCode::BAD_REQUEST);
    };
    let exists = blocking(app, move |store| match segment {
        Some(g) => Ok(store.exists(session, g)?),
        None => match store.session_modified(session) {
            Ok(_) => Ok(true),
            Err(annals::Error::SessionNotFound(_)) => Ok(false),
            Err(e) => Err(e.into()),
        },
    })
    .await;
    match exists {
        Ok(true) => shell(StatusCode::OK),
        Ok(false) => shell(StatusCode::NOT_FOUND),
        Err(e) => shell(e.status),
    }
}

async fn session_page(State(app): Shared, Path(session): Path<String>) -> Response {
    page_for(&app, &session, None).await
}

async fn segment_page(
    State(app): Shared,
    Path((session, segment)): Path<(String, String)>,
) -> Response {
    page_for(&app, &session, Some(&segment)).await
}

async fn entry_page(
    State(app): Shared,
    Path((session, segment, seq)): Path<(String, String, String)>,
) -> Response {
    if seq.parse::<u64>().is_err() {
        return shell(StatusCode::BAD_REQUEST);
    }
    page_for(&app, &session, Some(&segment)).await
}

async fn asset(Path(name): Path<String>) -> Response {
    match assets::get(&name) {
        Some((content_type, body)) => (
            [
                (header::CONTENT_TYPE, content_type),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            body,
        )
            .into_response(),
        None => ApiError::not_found(format!("no asset {name:?}")).into_response(),
    }
}

async fn not_found(request: Request) -> Response {
    ApiError::not_found(format!("nothing at {}", request.uri().path())).into_response()
}

// ---------------------------------------------------------------------------------------------
// The API.

async fn info(State(app): Shared) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "store": app.shown,
        "version": env!("CARGO_PKG_VERSION"),
        "token_required": app.guard.token().is_some(),
        "read_only": true,
    }))
}

async fn sessions(
    State(app): Shared,
    q: Result<Query<api::ListQuery>, QueryRejection>,
) -> Response {
    let run = async {
        let q = query(q)?;
        blocking(&app, move |store| api::sessions(store, &q)).await
    };
    run.await.map(Json).into_response()
}

async fn session(State(app): Shared, Path(session): Path<String>) -> Response {
    let run = async {
        let session = session_id(&session)?;
        blocking(&app, move |store| api::session(store, session)).await
    };
    run.await.map(Json).into_response()
}

async fn verify(State(app): Shared, Path(session): Path<String>) -> Response {
    let run = async {
        let session = session_id(&session)?;
        let root = app.root.clone();
        blocking(&app, move |store| api::verify(store, &root, session)).await
    };
    run.await.map(Json).into_response()
}

async fn attachment(State(app): Shared, Path((session, id)): Path<(String, String)>) -> Response {
    let run = async {
        let session = session_id(&session)?;
        blocking(&app, move |store| api::attachment(store, session, &id)).await
    };
    match run.await {
        Ok((bytes, name)) => {
            let disposition = format!("attachment; filename=\"{name}\"");
            let mut r = (StatusCode::OK, Body::from(bytes)).into_response();
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            if let Ok(d) = HeaderValue::from_str(&disposition) {
                h.insert(header::CONTENT_DISPOSITION, d);
            }
            h.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(guard::CSP_SANDBOX),
            );
            r
        }
        Err(e) => e.into_response(),
    }
}

async fn rows(
    app: Arc<App>,
    ids: (String, String),
    q: Result<Query<api::RangeQuery>, QueryRejection>,
    log: Log,
) -> Response {
    let parsed = (|| Ok::<_, ApiError>((session_id(&ids.0)?, segment_id(&ids.1)?, query(q)?)))();
    let (session, segment, q) = match parsed {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    streamed(
        move |reply| {
            api::rows(
                app.store.as_ref(),
                &app.root,
                session,
                segment,
                log,
                &q,
                reply,
            )
        },
        error_line,
    )
    .await
}

async fn entries(
    State(app): Shared,
    Path(ids): Path<(String, String)>,
    q: Result<Query<api::RangeQuery>, QueryRejection>,
) -> Response {
    rows(app, ids, q, Log::Entries).await
}

async fn trace(
    State(app): Shared,
    Path(ids): Path<(String, String)>,
    q: Result<Query<api::RangeQuery>, QueryRejection>,
) -> Response {
    rows(app, ids, q, Log::Trace).await
}

async fn entry(
    State(app): Shared,
    Path((session, segment, seq)): Path<(String, String, String)>,
    q: Result<Query<api::EntryQuery>, QueryRejection>,
) -> Response {
    let parsed = (|| {
        let seq = seq
            .parse::<u64>()
            .map_err(|_| ApiError::bad_request(format!("{seq:?} is not a sequence number")))?;
        Ok::<_, ApiError>((session_id(&session)?, segment_id(&segment)?, seq, query(q)?))
    })();
    let (session, segment, seq, q) = match parsed {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let mut response = streamed(
        move |reply| api::entry(app.store.as_ref(), session, segment, seq, &q, reply),
        no_error_line,
    )
    .await;
    if response.status() == StatusCode::OK {
        response.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(guard::CSP_SANDBOX),
        );
    }
    response
}

async fn search(State(app): Shared, RawQuery(raw): RawQuery) -> Response {
    let q = match SearchQuery::parse(raw.as_deref()) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    streamed(
        move |reply| super::search::run(app.store.as_ref(), &app.root, &q, reply),
        error_line,
    )
    .await
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    /// The first entry the page shows.
    #[serde(default)]
    from: u64,
    /// The next entry the page expects.
    #[serde(default)]
    next: u64,
    /// The generation the page's entries were read at.
    #[serde(default)]
    generation: u64,
    /// The next trace event the page expects.
    #[serde(default)]
    trace: u64,
    /// The newest segment of the session the page knows: newer ones are announced as forks.
    newest: Option<String>,
}

/// How often a live page's segment is looked at.
const TICK: Duration = Duration::from_millis(250);

async fn events(
    State(app): Shared,
    Path((session, segment)): Path<(String, String)>,
    headers: HeaderMap,
    q: Result<Query<EventsQuery>, QueryRejection>,
) -> Response {
    let parsed = (|| {
        let q = query(q)?;
        let newest = q.newest.as_deref().map(segment_id).transpose()?;
        Ok::<_, ApiError>((session_id(&session)?, segment_id(&segment)?, q, newest))
    })();
    let (session, segment, q, newest) = match parsed {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    if q.from > q.next {
        return ApiError::bad_request("from is after next").into_response();
    }
    let exists = blocking(&app, move |store| Ok(store.exists(session, segment)?)).await;
    match exists {
        Ok(true) => {}
        Ok(false) => {
            return ApiError::not_found(format!("segment {segment} not found in session {session}"))
                .into_response()
        }
        Err(e) => return e.into_response(),
    }
    // A reconnecting page resumes from the last event it received.
    let position = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(Position::parse_id)
        .unwrap_or(Position {
            window_start: q.from,
            next: q.next,
            generation: q.generation,
            trace_next: q.trace,
        });
    let (tx, mut rx) = mpsc::channel::<Event>(4);
    tokio::spawn(async move {
        let mut watch = Watch::new(session, segment, position, newest);
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if tx.is_closed() {
                return;
            }
            let store = Arc::clone(&app.store);
            let Ok((back, updates)) = tokio::task::spawn_blocking(move || {
                let updates = watch.poll(store.as_ref());
                (watch, updates)
            })
            .await
            else {
                return;
            };
            watch = back;
            // Only the last event of a look carries the position after it: a page cut off
            // half-way through the look resumes before it and sees all of it again (the page
            // takes a repeated row or rewrite as it would the first time).
            let last = updates.len().saturating_sub(1);
            for (i, update) in updates.into_iter().enumerate() {
                let mut event = Event::default()
                    .event(update.event)
                    .data(update.data.to_string());
                if i == last {
                    event = event.id(watch.position.id());
                }
                if tx.send(event).await.is_err() {
                    return;
                }
            }
            if watch.ended {
                return;
            }
        }
    });
    let stream = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx)
            .map(|e| e.map(Ok::<_, std::convert::Infallible>))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}
