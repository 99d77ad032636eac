//! Reading lines of untrusted input in bounded memory: a line longer than the limit is
//! measured and skipped, never held.

use std::io::{self, BufRead};

/// What [`read_line`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// A line, now in the buffer (without its newline). `terminated` is false for a last line
    /// with no newline.
    Line { terminated: bool },
    /// A line longer than the limit: its length; the buffer is empty and the line skipped.
    TooLong(u64),
}

/// Reads one line into `buf` (appending, without its newline), holding at most `limit`
/// bytes of it. `None` at the end of the input.
pub fn read_line(
    input: &mut impl BufRead,
    buf: &mut Vec<u8>,
    limit: usize,
) -> io::Result<Option<Read>> {
    let mut len = 0u64;
    let mut too_long = false;
    let start = buf.len();
    loop {
        let available = match input.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(match (len, too_long) {
                (0, _) => None,
                (_, true) => Some(Read::TooLong(len)),
                (_, false) => Some(Read::Line { terminated: false }),
            });
        }
        let (chunk, done) = match memchr::memchr(b'\n', available) {
            Some(i) => (available.get(..i).unwrap_or_default(), true),
            None => (available, false),
        };
        len += chunk.len() as u64;
        if !too_long {
            if buf.len() - start + chunk.len() > limit {
                too_long = true;
                buf.truncate(start);
                buf.shrink_to(start.max(64 << 10));
            } else {
                buf.extend_from_slice(chunk);
            }
        }
        let used = chunk.len() + usize::from(done);
        input.consume(used);
        if done {
            return Ok(Some(if too_long {
                Read::TooLong(len)
            } else {
                Read::Line { terminated: true }
            }));
        }
    }
}
