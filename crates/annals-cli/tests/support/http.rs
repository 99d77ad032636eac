//! A small HTTP/1.1 client over `TcpStream`, enough for the viewer's tests and the WebDriver
//! protocol: any method, any headers (a wrong `Host` included, which real clients refuse to
//! send), bodies by length or chunked, and a streaming reader for server-sent events.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long a test waits for one read before it fails.
pub const READ_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// A header's value (names compare case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("a UTF-8 body")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The body as JSON lines.
    pub fn lines(&self) -> Vec<serde_json::Value> {
        self.text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line ({e}): {l}")))
            .collect()
    }
}

/// One request; `headers` may include `Host` (else the address is sent).
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> io::Result<Response> {
    request_waiting(addr, method, path, headers, body, READ_TIMEOUT)
}

/// [`request`], waiting up to `timeout` for each read (starting a browser on a loaded machine
/// takes longer than any answer of the viewer).
pub fn request_waiting(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    timeout: Duration,
) -> io::Result<Response> {
    let (status, head, mut reader) = send(addr, method, path, headers, body, timeout)?;
    let mut body = Vec::new();
    if method != "HEAD" && status != 204 && status != 304 {
        read_body(&head, &mut reader, &mut body)?;
    }
    Ok(Response {
        status,
        headers: head,
        body,
    })
}

pub fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    request(addr, "GET", path, headers, None).unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

type Head = Vec<(String, String)>;

fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    timeout: Duration,
) -> io::Result<(u16, Head, BufReader<TcpStream>)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(timeout))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (name, value) in headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("Connection: close\r\n\r\n");
    stream.write_all(req.as_bytes())?;
    if let Some(body) = body {
        stream.write_all(body)?;
    }
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad status line {status_line:?}")))?;
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            head.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    Ok((status, head, reader))
}

fn header<'a>(head: &'a Head, name: &str) -> Option<&'a str> {
    head.iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn read_body(head: &Head, reader: &mut BufReader<TcpStream>, out: &mut Vec<u8>) -> io::Result<()> {
    if header(head, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        Chunked::new(reader).read_to_end(out)?;
    } else if let Some(len) = header(head, "content-length").and_then(|v| v.parse::<usize>().ok()) {
        out.resize(len, 0);
        reader.read_exact(out)?;
    } else {
        reader.read_to_end(out)?;
    }
    Ok(())
}

/// Decodes a chunked body as it arrives.
pub struct Chunked<R> {
    inner: R,
    left: usize,
    done: bool,
}

impl<R: BufRead> Chunked<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            left: 0,
            done: false,
        }
    }
}

impl<R: BufRead> Read for Chunked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        if self.left == 0 {
            let mut size = String::new();
            self.inner.read_line(&mut size)?;
            let size = size.trim();
            let size = size.split(';').next().unwrap_or_default();
            self.left = usize::from_str_radix(size, 16)
                .map_err(|_| io::Error::other(format!("bad chunk size {size:?}")))?;
            if self.left == 0 {
                self.done = true;
                return Ok(0);
            }
        }
        let n = self.inner.by_ref().take(self.left as u64).read(buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "chunk cut short",
            ));
        }
        self.left -= n;
        if self.left == 0 {
            let mut crlf = String::new();
            self.inner.read_line(&mut crlf)?;
        }
        Ok(n)
    }
}

/// A server-sent event.
#[derive(Debug, Default, Clone)]
pub struct Event {
    pub event: String,
    pub id: String,
    pub data: String,
}

impl Event {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data).unwrap()
    }
}

/// An open event stream.
pub struct Events {
    pub status: u16,
    pub headers: Head,
    lines: BufReader<Chunked<BufReader<TcpStream>>>,
}

impl Events {
    pub fn open(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> io::Result<Self> {
        let mut all = vec![("Accept", "text/event-stream")];
        all.extend_from_slice(headers);
        let (status, head, reader) = send(addr, "GET", path, &all, None, READ_TIMEOUT)?;
        Ok(Self {
            status,
            headers: head,
            lines: BufReader::new(Chunked::new(reader)),
        })
    }

    /// The next event (keep-alive comments skipped); fails after [`READ_TIMEOUT`].
    pub fn next(&mut self) -> io::Result<Event> {
        let mut event = Event::default();
        loop {
            let mut line = String::new();
            if self.lines.read_line(&mut line)? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "stream ended"));
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if !event.event.is_empty() || !event.data.is_empty() {
                    return Ok(event);
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => event.event = value.to_owned(),
                "id" => event.id = value.to_owned(),
                "data" => {
                    if !event.data.is_empty() {
                        event.data.push('\n');
                    }
                    event.data.push_str(value);
                }
                _ => {}
            }
        }
    }
}
