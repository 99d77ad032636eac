//! The real-shaped workload: agent events whose sizes follow what real agent logs hold.
//!
//! In 12,716 events from public Claude Code, Codex CLI, SWE-agent and OpenHands logs (issue 18),
//! compact JSON sizes are p50 650 B, p90 2.9 KiB, p99 29 KiB, max 178 KiB; 7.4 % of the events
//! are over 4,096 bytes and hold 58 % of the bytes; 0.2 % are over 64 KiB. This module generates
//! events with that distribution, deterministically (fixed seed, no clock), shaped like those
//! logs: an envelope with ids, parent links, a session id and a timestamp; a message with a role
//! and tagged content blocks (text, thinking, tool calls with nested JSON arguments, tool
//! results); command output with newlines and ANSI colour codes, file contents, and non-ASCII
//! prose.
//!
//! **Sizes.** Each event's target size is drawn from a piecewise log-linear inverse CDF through
//! the published quantiles ([`SIZE_KNOTS`]). Draws are stratified: every block of
//! [`BLOCK`] consecutive events takes one quantile from each of `BLOCK` equal strata, in a
//! shuffled order, so any whole block (and so the 2,000-entry session the benchmarks use) follows
//! the distribution closely, not only the corpus as a whole. The event's text is then grown to
//! hit the target size exactly (the envelope's own size is the floor: ~200 bytes).
//!
//! `tests.rs` checks the generated distribution against the published quantiles, so the
//! generator cannot drift.

use std::ops::Range;
use std::sync::OnceLock;

use annals::RawEntry;
use serde::{Deserialize, Serialize};

use crate::entries::Usage;
use crate::rng::Rng;

/// One event of an agent's log: the typed entry real-shaped replays deserialize into.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// What kind of event.
    #[serde(rename = "type")]
    pub kind: Kind,
    /// Event id.
    pub uuid: String,
    /// The event this one follows, if any.
    #[serde(
        rename = "parentUuid",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub parent: Option<String>,
    /// The runtime's session id.
    #[serde(rename = "sessionId")]
    pub session: String,
    /// RFC 3339, milliseconds.
    pub timestamp: String,
    /// Turn number within the session.
    pub turn: u32,
    /// The message.
    pub message: Turn,
    /// Working directory, as coding agents record it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Free-form runtime metadata (nested JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<serde_json::Value>,
}

/// Who produced an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// The person.
    User,
    /// The model.
    Assistant,
    /// A tool's answer.
    Tool,
    /// The runtime itself (compaction summaries, notices).
    System,
}

/// The message an event carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    /// Speaker.
    pub role: Kind,
    /// Model of an assistant message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Content blocks.
    pub content: Vec<Part>,
    /// Token accounting of an assistant message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// One content block, tagged the way model APIs tag them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Part {
    /// Plain text (markdown).
    Text {
        /// The text.
        text: String,
    },
    /// The model's visible reasoning.
    Thinking {
        /// The reasoning.
        thinking: String,
        /// Opaque signature.
        signature: String,
    },
    /// A tool call with free-form JSON arguments.
    ToolUse {
        /// Call id.
        id: String,
        /// Tool name.
        name: String,
        /// Arguments.
        input: serde_json::Value,
    },
    /// A tool's output.
    ToolResult {
        /// The call answered.
        tool_use_id: String,
        /// Output text.
        content: String,
        /// Whether the tool failed.
        is_error: bool,
    },
}

/// The size distribution: `(quantile, compact JSON bytes)` knots of the inverse CDF, log-linear
/// in between. Through the published p50, p90, p99 and max, 4,096 bytes at 1 − 7.4 % and
/// 64 KiB at 1 − 0.2 %; the knots at 0.25, 0.75 and 0.965 set the byte share of the entries over
/// 4 KiB to the published 58 %.
pub const SIZE_KNOTS: [(f64, f64); 10] = [
    (0.0, 200.0),
    (0.25, 430.0),
    (0.5, 650.0),
    (0.75, 1_550.0),
    (0.9, 2_970.0),
    (0.926, 4_096.0),
    (0.965, 7_800.0),
    (0.99, 29_700.0),
    (0.998, 65_536.0),
    (1.0, 182_272.0),
];

/// Events per stratified block of sizes.
pub const BLOCK: usize = 1_000;

/// Events in the corpus: 16 blocks, ~34 MB of JSON.
pub const POOL: usize = 16 * BLOCK;

/// Length of the corpus's first session, the one the benchmarks append and replay (the issue's
/// measurements used one session of 2,000 entries).
pub const SESSION_LEN: usize = 2_000;

/// Shortest and longest session the generator makes.
pub const SESSION_LENS: Range<usize> = 10..2_001;

/// The real-shaped corpus, in every form a contender takes it.
#[derive(Debug)]
pub struct RealCorpus {
    /// Typed events.
    pub events: Vec<Event>,
    /// Their compact JSON, as annals takes it.
    pub raw: Vec<RawEntry>,
    /// JSON plus `\n`: the line a plain JSONL file holds.
    pub lines: Vec<Vec<u8>>,
    /// The sessions, as ranges of `events`; the first is [`SESSION_LEN`] long, the others
    /// between 10 and 2,000 entries.
    pub sessions: Vec<Range<usize>>,
}

impl RealCorpus {
    /// The corpus, generated on first use (about a second in a release build).
    #[must_use]
    pub fn get() -> &'static RealCorpus {
        static CORPUS: OnceLock<RealCorpus> = OnceLock::new();
        CORPUS.get_or_init(|| RealCorpus::generate(POOL, 0x5EED_4EA1))
    }

    /// Generates `n` events from `seed`.
    #[must_use]
    pub fn generate(n: usize, seed: u64) -> RealCorpus {
        let mut rng = Rng(seed);
        let targets = stratified_sizes(n, &mut rng);
        let mut sessions = Vec::new();
        let mut start = 0;
        while start < n {
            let len = if sessions.is_empty() {
                SESSION_LEN
            } else {
                log_uniform(&mut rng, SESSION_LENS.start, SESSION_LENS.end - 1)
            };
            let end = (start + len).min(n);
            sessions.push(start..end);
            start = end;
        }
        let mut events = Vec::with_capacity(n);
        for range in &sessions {
            let mut session = SessionState::new(&mut rng);
            for i in range.clone() {
                events.push(session.event(i, targets[i], &mut rng));
            }
        }
        let raw: Vec<RawEntry> = events
            .iter()
            .map(|e| RawEntry::from_value(e).expect("an event serializes"))
            .collect();
        let lines = raw
            .iter()
            .map(|r| {
                let mut line = Vec::with_capacity(r.len() + 1);
                line.extend_from_slice(r.as_str().as_bytes());
                line.push(b'\n');
                line
            })
            .collect();
        RealCorpus {
            events,
            raw,
            lines,
            sessions,
        }
    }

    /// The benchmarks' session: the first [`SESSION_LEN`] events.
    #[must_use]
    pub fn session(&self) -> &[RawEntry] {
        &self.raw[self.sessions[0].clone()]
    }

    /// Entry `i` of an endless log cycling through the corpus.
    #[must_use]
    pub fn raw_at(&self, i: u64) -> &RawEntry {
        &self.raw[(i % self.raw.len() as u64) as usize]
    }

    /// Sum of the JSON lengths of `entries`.
    #[must_use]
    pub fn bytes_of(entries: &[RawEntry]) -> u64 {
        entries.iter().map(|e| e.len() as u64).sum()
    }
}

/// The size distribution of a set of entries, as issue 18 states the real one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SizeStats {
    /// Entries.
    pub entries: usize,
    /// Bytes of compact JSON in all.
    pub bytes: u64,
    /// Median size.
    pub p50: usize,
    /// 90th percentile.
    pub p90: usize,
    /// 99th percentile.
    pub p99: usize,
    /// Largest.
    pub max: usize,
    /// Entries over 4,096 bytes.
    pub over_4k: usize,
    /// Their share of the bytes.
    pub over_4k_bytes: f64,
    /// Entries over 64 KiB.
    pub over_64k: usize,
}

impl SizeStats {
    /// The distribution of `entries` (at least one).
    ///
    /// # Panics
    /// If `entries` is empty.
    #[must_use]
    pub fn of(entries: &[RawEntry]) -> SizeStats {
        let mut sizes: Vec<usize> = entries.iter().map(RawEntry::len).collect();
        sizes.sort_unstable();
        let n = sizes.len();
        let at = |q: f64| sizes[((n as f64 * q) as usize).min(n - 1)];
        let bytes: u64 = sizes.iter().map(|&s| s as u64).sum();
        let big: u64 = sizes
            .iter()
            .filter(|&&s| s > 4_096)
            .map(|&s| s as u64)
            .sum();
        SizeStats {
            entries: n,
            bytes,
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            max: sizes[n - 1],
            over_4k: sizes.iter().filter(|&&s| s > 4_096).count(),
            over_4k_bytes: big as f64 / bytes as f64,
            over_64k: sizes.iter().filter(|&&s| s > 65_536).count(),
        }
    }
}

impl std::fmt::Display for SizeStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} entries, {:.2} MB; p50 {} B, p90 {} B, p99 {} B, max {} B; {} ({:.1} %) over 4 KiB \
             holding {:.1} % of the bytes; {} over 64 KiB",
            self.entries,
            self.bytes as f64 / 1e6,
            self.p50,
            self.p90,
            self.p99,
            self.max,
            self.over_4k,
            100.0 * self.over_4k as f64 / self.entries as f64,
            100.0 * self.over_4k_bytes,
            self.over_64k
        )
    }
}

/// Target size of the event at quantile `q` (log-linear between [`SIZE_KNOTS`]).
#[must_use]
pub fn size_at(q: f64) -> usize {
    let q = q.clamp(0.0, 1.0);
    for pair in SIZE_KNOTS.windows(2) {
        let ((q0, s0), (q1, s1)) = (pair[0], pair[1]);
        if q <= q1 {
            let t = (q - q0) / (q1 - q0);
            return (s0.ln() + t * (s1.ln() - s0.ln())).exp() as usize;
        }
    }
    SIZE_KNOTS[SIZE_KNOTS.len() - 1].1 as usize
}

/// One size per event: each block of [`BLOCK`] takes one quantile from each stratum, shuffled.
fn stratified_sizes(n: usize, rng: &mut Rng) -> Vec<usize> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let mut block: Vec<usize> = (0..BLOCK)
            .map(|k| size_at((k as f64 + rng.unit()) / BLOCK as f64))
            .collect();
        for i in (1..block.len()).rev() {
            block.swap(i, rng.below(i + 1));
        }
        out.extend(block.into_iter().take(n - out.len()));
    }
    out
}

fn log_uniform(rng: &mut Rng, lo: usize, hi: usize) -> usize {
    let (a, b) = ((lo as f64).ln(), (hi as f64).ln());
    ((a + rng.unit() * (b - a)).exp().round() as usize).clamp(lo, hi)
}

/// What one session's events share: ids, the turn counter, the previous event.
struct SessionState {
    id: String,
    cwd: String,
    model: &'static str,
    turn: u32,
    parent: Option<String>,
    open_call: Option<(String, &'static str)>,
}

/// The shape of an event's one large field.
#[derive(Clone, Copy)]
enum Filler {
    Prose,
    Output,
    Code,
}

impl SessionState {
    fn new(rng: &mut Rng) -> Self {
        Self {
            id: uuid(rng),
            cwd: format!("/home/dev/{}", rng.pick(PROJECTS)),
            model: rng.pick(MODELS),
            turn: 0,
            parent: None,
            open_call: None,
        }
    }

    /// Event `i` of the corpus, `target` bytes of compact JSON (or the envelope's size, if
    /// larger).
    fn event(&mut self, i: usize, target: usize, rng: &mut Rng) -> Event {
        let large = target > 4_096;
        // A call waiting for its result gets it; otherwise pick what comes by size.
        let roll = rng.below(100);
        let kind = match (&self.open_call, large) {
            (Some(_), _) if roll < 70 => Shape::ToolResult,
            (_, true) if roll < 70 => Shape::ToolResult,
            (_, true) if roll < 85 => Shape::WriteFile,
            (_, true) => Shape::LongAnswer,
            (_, false) if roll < 15 => Shape::Prompt,
            (_, false) if roll < 35 => Shape::Answer,
            (_, false) if roll < 70 => Shape::ToolCall,
            (_, false) if roll < 95 => Shape::ToolResult,
            _ => Shape::Notice,
        };
        if matches!(kind, Shape::Prompt) {
            self.turn += 1;
        }
        let lean = target < 300;
        let mut event = Event {
            kind: Kind::User,
            uuid: uuid(rng),
            parent: self.parent.clone(),
            session: self.id.clone(),
            timestamp: timestamp(i),
            turn: self.turn,
            message: Turn {
                role: Kind::User,
                model: None,
                content: Vec::new(),
                usage: None,
            },
            cwd: (!lean).then(|| self.cwd.clone()),
            meta: None,
        };
        let filler = match kind {
            Shape::Prompt => {
                event.message.content.push(Part::Text {
                    text: String::new(),
                });
                Filler::Prose
            }
            Shape::Notice => {
                event.kind = Kind::System;
                event.message.role = Kind::System;
                event.message.content.push(Part::Text {
                    text: String::new(),
                });
                Filler::Prose
            }
            Shape::Answer | Shape::LongAnswer | Shape::ToolCall | Shape::WriteFile => {
                event.kind = Kind::Assistant;
                event.message.role = Kind::Assistant;
                event.message.model = Some(self.model.to_string());
                event.message.usage = (!lean).then(|| Usage {
                    input_tokens: rng.below(150_000) as u32,
                    output_tokens: rng.below(8_000) as u32,
                    cache_read_tokens: rng.below(140_000) as u32,
                });
                if !lean {
                    event.meta = Some(serde_json::json!({
                        "request": {"id": format!("req_{}", rng.hex(20)), "attempt": 1 + rng.below(2)},
                        "latency_ms": 200 + rng.below(9_000),
                        "stop": if matches!(kind, Shape::Answer | Shape::LongAnswer) { "end_turn" } else { "tool_use" },
                    }));
                }
                match kind {
                    Shape::Answer | Shape::LongAnswer => {
                        if target > 1_500
                            && (matches!(kind, Shape::LongAnswer) || rng.below(3) == 0)
                        {
                            let len = (target / 5).min(80 + rng.below(600));
                            event.message.content.push(Part::Thinking {
                                thinking: prose(rng, len),
                                signature: rng.hex(32),
                            });
                        }
                        event.message.content.push(Part::Text {
                            text: String::new(),
                        });
                        Filler::Prose
                    }
                    Shape::ToolCall => {
                        let name = rng.pick(TOOLS);
                        let id = format!("toolu_{}", rng.hex(24));
                        self.open_call = Some((id.clone(), name));
                        let input = match name {
                            "bash" => serde_json::json!({
                                "command": "",
                                "timeout": 120_000,
                                "description": prose(rng, 30),
                            }),
                            _ => serde_json::json!({
                                "path": format!("{}/src/{}.rs", self.cwd, rng.pick(FILES)),
                                "pattern": "",
                                "options": {"regex": rng.below(2) == 0, "context": rng.below(5)},
                            }),
                        };
                        event.message.content.push(Part::ToolUse {
                            id,
                            name: name.to_string(),
                            input,
                        });
                        Filler::Output
                    }
                    _ => {
                        let id = format!("toolu_{}", rng.hex(24));
                        self.open_call = Some((id.clone(), "write_file"));
                        event.message.content.push(Part::ToolUse {
                            id,
                            name: "write_file".to_string(),
                            input: serde_json::json!({
                                "path": format!("{}/src/{}.rs", self.cwd, rng.pick(FILES)),
                                "content": "",
                            }),
                        });
                        Filler::Code
                    }
                }
            }
            Shape::ToolResult => {
                event.kind = Kind::Tool;
                event.message.role = Kind::Tool;
                let (id, name) = self
                    .open_call
                    .take()
                    .unwrap_or_else(|| (format!("toolu_{}", rng.hex(24)), "bash"));
                event.message.content.push(Part::ToolResult {
                    tool_use_id: id,
                    content: String::new(),
                    is_error: rng.below(12) == 0,
                });
                if matches!(name, "read_file" | "write_file") || rng.below(4) == 0 {
                    Filler::Code
                } else {
                    Filler::Output
                }
            }
        };
        // Small events carry less metadata, as in the real logs: shed it until the envelope
        // fits the target.
        let mut envelope = json_len(&event);
        while envelope > target {
            if event.meta.is_some() {
                event.meta = None;
            } else if event.cwd.is_some() {
                event.cwd = None;
            } else if event.message.usage.is_some() {
                event.message.usage = None;
            } else {
                break;
            }
            envelope = json_len(&event);
        }
        let text = grow(rng, filler, target.saturating_sub(envelope));
        fill(&mut event, text);
        self.parent = Some(event.uuid.clone());
        event
    }
}

#[derive(Clone, Copy)]
enum Shape {
    Prompt,
    Answer,
    LongAnswer,
    ToolCall,
    WriteFile,
    ToolResult,
    Notice,
}

fn json_len(event: &Event) -> usize {
    serde_json::to_string(event)
        .expect("an event serializes")
        .len()
}

/// Puts `text` into the event's one empty field (the last block's text, output or argument).
fn fill(event: &mut Event, text: String) {
    match event.message.content.last_mut() {
        Some(Part::Text { text: t }) => *t = text,
        Some(Part::ToolResult { content, .. }) => *content = text,
        Some(Part::ToolUse { input, .. }) => {
            let map = input
                .as_object_mut()
                .expect("generated tool inputs are objects");
            for key in ["command", "pattern", "content"] {
                if let Some(v) = map.get_mut(key) {
                    if v.as_str() == Some("") {
                        *v = serde_json::Value::String(text);
                        return;
                    }
                }
            }
        }
        Some(Part::Thinking { .. }) | None => {}
    }
}

/// Bytes `c` takes inside a JSON string as serde_json writes it.
fn escaped_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

/// Text of the given shape whose JSON-escaped length is exactly `need` bytes.
fn grow(rng: &mut Rng, filler: Filler, need: usize) -> String {
    let mut s = String::with_capacity(need + 64);
    let mut len = 0;
    while len < need {
        let piece = match filler {
            Filler::Prose => prose_piece(rng),
            Filler::Output => output_line(rng),
            Filler::Code => code_line(rng),
        };
        len += piece.chars().map(escaped_len).sum::<usize>();
        s.push_str(&piece);
    }
    while len > need {
        let c = s.pop().expect("len > 0 means s is not empty");
        len -= escaped_len(c);
    }
    while len < need {
        s.push(' ');
        len += 1;
    }
    s
}

fn prose(rng: &mut Rng, need: usize) -> String {
    grow(rng, Filler::Prose, need)
}

fn prose_piece(rng: &mut Rng) -> String {
    let mut s = String::new();
    match rng.below(30) {
        0 => s.push_str("\n\n"),
        1 => s.push_str("\n- "),
        2 => s.push_str("\n```rust\nlet tip = store.tip(session, segment)?;\n```\n"),
        _ => {}
    }
    s.push_str(rng.pick(WORDS));
    s.push(if rng.below(12) == 0 { '.' } else { ' ' });
    if s.ends_with('.') {
        s.push(' ');
    }
    s
}

fn output_line(rng: &mut Rng) -> String {
    let n = rng.below(900);
    match rng.below(9) {
        0 => format!("\u{1b}[1m\u{1b}[32m   Compiling\u{1b}[0m {} v0.{}.{} (/home/dev/{})\n", rng.pick(FILES), n % 9, n % 31, rng.pick(PROJECTS)),
        1 => format!("test {}::tests::{}_{} ... \u{1b}[32mok\u{1b}[0m\n", rng.pick(FILES), rng.pick(FILES), n),
        2 => format!("\u{1b}[31merror[E0{n:03}]\u{1b}[0m: mismatched types\n  --> src/{}.rs:{}:{}\n   |\n{:>3} |     let x: u64 = \"{}\";\n", rng.pick(FILES), n, n % 80, n, rng.pick(WORDS)),
        3 => format!("-rw-r--r--  1 dev dev {:>7} Nov 23 12:{:02} {}.rs\n", n * 37, n % 60, rng.pick(FILES)),
        4 => format!("src/{}.rs:{}:    // {} → {}\n", rng.pick(FILES), n, rng.pick(WORDS), rng.pick(WORDS)),
        5 => format!("{{\"level\":\"info\",\"msg\":\"{} {}\",\"n\":{n}}}\n", rng.pick(WORDS), rng.pick(WORDS)),
        6 => format!("+    let {} = {}({n});\n-    let {} = old_{}();\n", rng.pick(FILES), rng.pick(FILES), rng.pick(FILES), rng.pick(FILES)),
        7 => format!("\t{}\t{n}\t{}\n", rng.pick(FILES), rng.pick(WORDS)),
        _ => format!("warning: unused variable: `{}`\n   = note: `#[warn(unused_variables)]` on by default\n", rng.pick(FILES)),
    }
}

fn code_line(rng: &mut Rng) -> String {
    let n = rng.below(4_000);
    let indent = "    ".repeat(rng.below(4));
    match rng.below(8) {
        0 => format!(
            "{indent}pub fn {}(&self, {}: &str) -> Result<{}, Error> {{\n",
            rng.pick(FILES),
            rng.pick(FILES),
            rng.pick(TYPES)
        ),
        1 => format!(
            "{indent}let {} = {}.get({n}).ok_or_else(|| Error::missing(\"{}\"))?;\n",
            rng.pick(FILES),
            rng.pick(FILES),
            rng.pick(WORDS)
        ),
        2 => format!(
            "{indent}// {} {} {}\n",
            rng.pick(WORDS),
            rng.pick(WORDS),
            rng.pick(WORDS)
        ),
        3 => format!("{indent}}}\n"),
        4 => format!(
            "{indent}assert_eq!({}.len(), {n}, \"{}\\n\");\n",
            rng.pick(FILES),
            rng.pick(WORDS)
        ),
        5 => format!(
            "{indent}const {}: &str = r#\"{{\"k\": \"{}\"}}\"#;\n",
            rng.pick(TYPES).to_uppercase(),
            rng.pick(WORDS)
        ),
        6 => "\n".to_string(),
        _ => format!(
            "{indent}match {} {{ Some(v) => v, None => return Ok(()) }}\n",
            rng.pick(FILES)
        ),
    }
}

fn uuid(rng: &mut Rng) -> String {
    let h = rng.hex(32);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Deterministic: 2026-11-01T09:00:00Z plus 1.733 s per event (the corpus spans ~8 hours).
fn timestamp(i: usize) -> String {
    let ms = i as u64 * 1_733;
    let (h, m, s, milli) = (
        9 + ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1_000 % 60,
        ms % 1_000,
    );
    format!("2026-11-01T{h:02}:{m:02}:{s:02}.{milli:03}Z")
}

const WORDS: &[&str] = &[
    "the",
    "segment",
    "file",
    "returns",
    "an",
    "error",
    "when",
    "we",
    "append",
    "after",
    "a",
    "torn",
    "tail",
    "I'll",
    "check",
    "the",
    "test",
    "first",
    "then",
    "update",
    "config",
    "so",
    "that",
    "it",
    "passes",
    "now",
    "because",
    "replay",
    "should",
    "not",
    "allocate",
    "per",
    "entry",
    "let",
    "me",
    "look",
    "at",
    "`fn main()`",
    "\"quoted\"",
    "path/to/src/lib.rs",
    "naïve",
    "café",
    "über",
    "Größe",
    "→",
    "✅",
    "—",
    "日本語のテキスト",
    "Привет",
    "λ",
    "🙂",
    "données",
    "ok",
    "cargo",
    "build",
    "failing",
    "module",
    "struct",
    "field",
    "docs",
];

const FILES: &[&str] = &[
    "handle",
    "codec",
    "scan",
    "store",
    "blobs",
    "mmap",
    "read",
    "lease",
    "writer",
    "config",
    "parser",
    "server",
    "client",
    "cache",
    "index",
    "planner",
    "tokenizer",
    "session",
];

const TYPES: &[&str] = &["Tip", "Entry", "Segment", "Vec<u8>", "String", "Report"];

const TOOLS: &[&str] = &["bash", "read_file", "grep", "bash", "list_dir"];

const MODELS: &[&str] = &["claude-sonnet-4-5", "gpt-5-codex", "qwen3-coder-480b"];

const PROJECTS: &[&str] = &["annals", "webshop", "ml-pipeline", "infra"];
