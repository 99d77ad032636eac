//! Terminal concerns: whether a stream is a terminal, colours (`--color`, `NO_COLOR`), Ctrl-C,
//! the progress line, and the small formatters the commands share (sizes, times, pretty JSON).

use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `--color`: when to use colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ColorChoice {
    /// On a terminal, unless `NO_COLOR` is set and not empty (<https://no-color.org>).
    #[default]
    Auto,
    /// Always, even into a pipe or with `NO_COLOR` set.
    Always,
    /// Never.
    Never,
}

static COLOR: OnceLock<ColorChoice> = OnceLock::new();

/// Sets the choice for the whole run (once, from the command line).
pub fn set_color(choice: ColorChoice) {
    let _ = COLOR.set(choice);
}

fn colour_for(is_terminal: bool) -> bool {
    match COLOR.get().copied().unwrap_or_default() {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => is_terminal && colour_allowed(),
    }
}

/// ANSI styling for one stream.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    on: bool,
}

impl Style {
    /// Styling for stdout.
    pub fn stdout() -> Self {
        let on = colour_for(io::stdout().is_terminal());
        if on {
            STDOUT_STYLED.store(true, Ordering::Relaxed);
        }
        Self { on }
    }

    /// Styling for stderr.
    pub fn stderr() -> Self {
        Self {
            on: colour_for(io::stderr().is_terminal()),
        }
    }

    /// No styling (JSON output, tests).
    pub fn plain() -> Self {
        Self { on: false }
    }

    fn paint(self, code: &str, text: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    pub fn bold(self, text: &str) -> String {
        self.paint("1", text)
    }

    pub fn dim(self, text: &str) -> String {
        self.paint("2", text)
    }

    pub fn red(self, text: &str) -> String {
        self.paint("31", text)
    }

    pub fn green(self, text: &str) -> String {
        self.paint("32", text)
    }

    pub fn yellow(self, text: &str) -> String {
        self.paint("33", text)
    }

    pub fn blue(self, text: &str) -> String {
        self.paint("34", text)
    }

    pub fn magenta(self, text: &str) -> String {
        self.paint("35", text)
    }

    pub fn cyan(self, text: &str) -> String {
        self.paint("36", text)
    }

    /// A match inside a line (`grep`): bold red, as grep and ripgrep show it.
    pub fn hit(self, text: &str) -> String {
        self.paint("1;31", text)
    }

    fn start(self, code: &str) -> &'static str {
        match (self.on, code) {
            (false, _) => "",
            (true, "key") => "\x1b[36m",
            (true, "str") => "\x1b[32m",
            (true, _) => "\x1b[0m",
        }
    }
}

fn colour_allowed() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Set once stdout has been styled: an interrupted run then resets the terminal's colours.
static STDOUT_STYLED: AtomicBool = AtomicBool::new(false);
/// Set while a progress line is on stderr: an interrupted run then erases it.
static PROGRESS_SHOWN: AtomicBool = AtomicBool::new(false);
/// Ctrl-C presses so far.
static INTERRUPTS: AtomicU8 = AtomicU8::new(0);

/// Catches Ctrl-C (and SIGTERM): the first asks the running command to stop at the next
/// safe point ([`interrupted`]); the second ends the process at once. Either way the
/// terminal is left clean: the progress line erased, colours reset.
pub fn catch_interrupts() {
    // Without a handler, Ctrl-C still ends the process, only without the clean-up.
    let _ = ctrlc::set_handler(|| {
        if INTERRUPTS.fetch_add(1, Ordering::SeqCst) >= 1 {
            restore_terminal();
            std::process::exit(i32::from(crate::fail::INTERRUPTED));
        }
    });
}

/// True once Ctrl-C was pressed: long loops check it and stop.
pub fn interrupted() -> bool {
    INTERRUPTS.load(Ordering::SeqCst) > 0
}

/// Erases the progress line and resets colours, where this run put them.
pub fn restore_terminal() {
    if PROGRESS_SHOWN.swap(false, Ordering::SeqCst) {
        let _ = write!(io::stderr(), "\r\x1b[2K");
    }
    if STDOUT_STYLED.load(Ordering::SeqCst) {
        let _ = write!(io::stdout(), "\x1b[0m");
        let _ = io::stdout().flush();
    }
}

/// Width of the terminal on stdout, if it is one.
pub fn stdout_width() -> Option<usize> {
    let out = io::stdout();
    if !out.is_terminal() {
        return None;
    }
    rustix::termios::tcgetwinsize(&out)
        .ok()
        .map(|w| usize::from(w.ws_col))
        .filter(|w| *w >= 20)
}

/// `1.5 KiB`-style size, exact below 1 KiB.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    #[expect(
        clippy::cast_precision_loss,
        reason = "a rounded size for people; one decimal is shown"
    )]
    let mut value = n as f64 / 1024.0;
    let mut unit = UNITS[0];
    for next in UNITS.iter().skip(1) {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = next;
    }
    format!("{value:.1} {unit}")
}

/// Milliseconds since the Unix epoch (0 for times before it).
pub fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// `2025-06-01 12:00:03Z`: UTC, second precision. No time-zone database is consulted, so the
/// output is the same on every machine.
pub fn utc(t: SystemTime) -> String {
    annals_cli::search::time::utc(epoch_ms(t))
}

/// Writes compact JSON text indented by two spaces, keeping key order and number spelling
/// exactly as stored (re-serializing through `serde_json::Value` would sort keys and could
/// reformat numbers). The text must be one valid JSON value; whitespace outside strings is
/// dropped.
pub fn write_pretty(out: &mut impl Write, json: &str, style: Style) -> io::Result<()> {
    #[derive(PartialEq)]
    enum Container {
        Object,
        Array,
    }
    let bytes = json.as_bytes();
    let mut stack: Vec<Container> = Vec::new();
    let mut expecting_key = false;
    let mut i = 0;
    let newline = |out: &mut dyn Write, depth: usize| -> io::Result<()> {
        out.write_all(b"\n")?;
        for _ in 0..depth {
            out.write_all(b"  ")?;
        }
        Ok(())
    };
    let next_significant = |from: usize| {
        bytes
            .iter()
            .skip(from)
            .copied()
            .find(|b| !b.is_ascii_whitespace())
    };
    while let Some(&b) = bytes.get(i) {
        match b {
            b'"' => {
                let start = i;
                i += 1;
                let mut escaped = false;
                while let Some(&c) = bytes.get(i) {
                    i += 1;
                    if escaped {
                        escaped = false;
                    } else if c == b'\\' {
                        escaped = true;
                    } else if c == b'"' {
                        break;
                    }
                }
                let colour = if expecting_key { "key" } else { "str" };
                out.write_all(style.start(colour).as_bytes())?;
                out.write_all(bytes.get(start..i).unwrap_or_default())?;
                out.write_all(style.start("end").as_bytes())?;
                continue;
            }
            b'{' | b'[' => {
                let close = if b == b'{' { b'}' } else { b']' };
                if next_significant(i + 1) == Some(close) {
                    out.write_all(&[b, close])?;
                    // Skip to just past the closing bracket.
                    i += 1;
                    while bytes.get(i).is_some_and(|c| *c != close) {
                        i += 1;
                    }
                } else {
                    out.write_all(&[b])?;
                    stack.push(if b == b'{' {
                        Container::Object
                    } else {
                        Container::Array
                    });
                    expecting_key = b == b'{';
                    newline(out, stack.len())?;
                }
            }
            b'}' | b']' => {
                stack.pop();
                newline(out, stack.len())?;
                out.write_all(&[b])?;
                expecting_key = false;
            }
            b',' => {
                out.write_all(b",")?;
                expecting_key = stack.last() == Some(&Container::Object);
                newline(out, stack.len())?;
            }
            b':' => {
                out.write_all(b": ")?;
                expecting_key = false;
            }
            b' ' | b'\n' | b'\r' | b'\t' => {}
            _ => out.write_all(&[b])?,
        }
        i += 1;
    }
    Ok(())
}

/// A one-line status on stderr that rewrites itself (`\r`), shown only when stderr is a
/// terminal, and at most every 100 ms.
pub struct Progress {
    enabled: bool,
    last: Option<std::time::Instant>,
    shown: bool,
}

impl Progress {
    pub fn new() -> Self {
        Self {
            enabled: io::stderr().is_terminal(),
            last: None,
            shown: false,
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    pub fn update(&mut self, text: impl FnOnce() -> String) {
        if !self.enabled {
            return;
        }
        let now = std::time::Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Duration::from_millis(100))
        {
            return;
        }
        self.last = Some(now);
        self.shown = true;
        PROGRESS_SHOWN.store(true, Ordering::SeqCst);
        let mut err = io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{}", text());
        let _ = err.flush();
    }

    pub fn clear(&mut self) {
        if self.shown {
            let mut err = io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
            self.shown = false;
            PROGRESS_SHOWN.store(false, Ordering::SeqCst);
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Quotes a path or word for a POSIX shell if it needs it, so printed commands can be pasted.
pub fn shell_word(s: &str) -> String {
    let safe = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:@%+,".contains(&b));
    if safe {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pretty(json: &str) -> String {
        let mut out = Vec::new();
        write_pretty(&mut out, json, Style::plain()).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn pretty_json_keeps_key_order_and_number_spelling() {
        let text = r#"{"z":1.50,"a":[1,{"k":"v, \"q\" {x}"}],"e":{},"l":[]}"#;
        let out = pretty(text);
        assert_eq!(
            out,
            "{\n  \"z\": 1.50,\n  \"a\": [\n    1,\n    {\n      \"k\": \"v, \\\"q\\\" {x}\"\n    }\n  ],\n  \"e\": {},\n  \"l\": []\n}"
        );
        let reparsed: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            reparsed,
            serde_json::from_str::<serde_json::Value>(text).unwrap()
        );
    }

    #[test]
    fn scalars_print_as_they_are() {
        assert_eq!(pretty("42"), "42");
        assert_eq!(pretty("\"x\""), "\"x\"");
    }

    #[test]
    fn utc_dates_match_known_instants() {
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400 + 3661); // 2000-02-29 01:01:01
        assert_eq!(utc(t), "2000-02-29 01:01:01Z");
        assert_eq!(utc(UNIX_EPOCH), "1970-01-01 00:00:00Z");
    }

    #[test]
    fn sizes_read_naturally() {
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024), "3.0 MiB");
    }

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(shell_word("/tmp/a-b"), "/tmp/a-b");
        assert_eq!(shell_word("my store"), "'my store'");
        assert_eq!(shell_word("it's"), "'it'\\''s'");
    }
}
