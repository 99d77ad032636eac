//! Streamed answers. A blocking producer (a replay, a search) first decides the answer's head
//! (a status and a content type, or an error) and then writes its body into [`Reply`], which
//! hands full chunks to the connection through a bounded channel. A slow reader makes the
//! producer wait and a gone reader makes it stop, so memory per answer is the channel's few
//! chunks, whatever the store holds.

use std::io::{self, Write};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::sync::{mpsc, oneshot};

use super::api::ApiError;

/// Bytes gathered before a chunk is handed on.
const CHUNK_BYTES: usize = 32 << 10;
/// Chunks in flight between the producer and the connection.
const CHUNKS_IN_FLIGHT: usize = 8;

/// What an answer starts with.
pub struct Head {
    pub content_type: &'static str,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Head {
    pub fn new(content_type: &'static str) -> Self {
        Self {
            content_type,
            headers: Vec::new(),
        }
    }
}

/// The producer's end of a streamed answer.
pub struct Reply {
    head: Option<oneshot::Sender<Result<Head, ApiError>>>,
    tx: mpsc::Sender<Bytes>,
    buf: Vec<u8>,
    gone: bool,
}

impl Reply {
    /// Sends the head: from now on the status is 200 and what is written is the body.
    pub fn start(&mut self, head: Head) {
        if let Some(tx) = self.head.take() {
            self.gone = tx.send(Ok(head)).is_err();
        }
    }

    /// Whether the reader went away (a producer stops then).
    pub fn is_gone(&self) -> bool {
        self.gone || self.tx.is_closed()
    }

    /// Appends one line (a newline is added). False once the reader is gone.
    pub fn line(&mut self, text: &str) -> bool {
        self.buf.extend_from_slice(text.as_bytes());
        self.buf.push(b'\n');
        if self.buf.len() >= CHUNK_BYTES {
            self.hand_on();
        }
        !self.gone
    }

    fn hand_on(&mut self) {
        if self.buf.is_empty() || self.gone {
            return;
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(CHUNK_BYTES),
        ));
        // Blocks while the reader is slow; fails once it has gone.
        self.gone = self.tx.blocking_send(chunk).is_err();
    }
}

impl Write for Reply {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.gone {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "reader gone"));
        }
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK_BYTES {
            self.hand_on();
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.hand_on();
        Ok(())
    }
}

/// Runs `produce` on a blocking thread and answers with what it starts and writes. An error
/// returned before [`Reply::start`] becomes the answer (a JSON error with its status); one
/// returned after it ends the body early, `on_late_error` having had the chance to write a last
/// line about it.
pub async fn streamed(
    produce: impl FnOnce(&mut Reply) -> Result<(), ApiError> + Send + 'static,
    on_late_error: fn(&mut Reply, &ApiError),
) -> Response {
    let (head_tx, head_rx) = oneshot::channel();
    let (tx, mut rx) = mpsc::channel::<Bytes>(CHUNKS_IN_FLIGHT);
    tokio::task::spawn_blocking(move || {
        let mut reply = Reply {
            head: Some(head_tx),
            tx,
            buf: Vec::with_capacity(CHUNK_BYTES),
            gone: false,
        };
        if let Err(e) = produce(&mut reply) {
            match reply.head.take() {
                Some(head) => {
                    let _ = head.send(Err(e));
                }
                None => on_late_error(&mut reply, &e),
            }
        }
        reply.hand_on();
    });
    let head = match head_rx.await {
        Ok(Ok(head)) => head,
        Ok(Err(e)) => return e.into_response(),
        // The producer ended without a head: a bug, or a panic on its thread.
        Err(_) => return ApiError::internal("the answer could not be produced").into_response(),
    };
    let body = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx).map(|chunk| chunk.map(Ok::<_, io::Error>))
    });
    let mut response = (StatusCode::OK, Body::from_stream(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(head.content_type),
    );
    for (name, value) in head.headers {
        headers.insert(name, value);
    }
    response
}

/// For streams of JSON lines: the error as a last line `{"kind":"error","message":…}`.
pub fn error_line(reply: &mut Reply, e: &ApiError) {
    let line =
        serde_json::json!({"kind": "error", "status": e.status.as_u16(), "message": e.message});
    reply.line(&line.to_string());
}

/// For raw bodies: nothing can be added; the body just ends.
pub fn no_error_line(_: &mut Reply, _: &ApiError) {}
