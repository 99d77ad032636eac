//! The entries every contender stores: agent messages as a runtime would log them, generated
//! deterministically so that every run (and every contender) writes the same bytes.

use std::sync::OnceLock;

use annals::{codec, RawEntry};

use crate::rng::Rng;
use serde::{Deserialize, Serialize};

/// One logged agent message: the typed entry that replays deserialize into.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Message id.
    pub id: String,
    /// The message this one answers, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Who speaks.
    pub role: Role,
    /// Milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// Model that produced an assistant message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Content blocks.
    pub content: Vec<Block>,
    /// Token accounting of an assistant message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Why the model stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<String>,
}

/// Speaker of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The person.
    User,
    /// The model.
    Assistant,
    /// A tool's answer.
    Tool,
}

/// One content block, tagged the way model APIs tag them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Block {
    /// Plain text.
    Text {
        /// The text.
        text: String,
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

/// Token counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens.
    pub input_tokens: u32,
    /// Completion tokens.
    pub output_tokens: u32,
    /// Prompt tokens served from cache.
    pub cache_read_tokens: u32,
}

/// Entry size class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Variant {
    /// About 400 bytes of JSON per entry (between ~250 and ~600): a typical chat turn.
    Small,
    /// 1 to 4 KiB of JSON per entry: long answers and tool outputs, up to what fits in one
    /// annals line.
    Large,
}

impl Variant {
    /// Both variants.
    pub const ALL: [Variant; 2] = [Variant::Small, Variant::Large];

    /// Label used in benchmark ids.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Variant::Small => "400B",
            Variant::Large => "1-4KiB",
        }
    }

    fn text_len(self, rng: &mut Rng) -> usize {
        match self {
            Variant::Small => 60 + rng.below(200),
            Variant::Large => 950 + rng.below(2550),
        }
    }
}

/// How many distinct entries a corpus holds; longer runs cycle through them.
pub const CORPUS_LEN: usize = 4096;

/// The pre-generated entries of one variant, in every form a contender takes them.
#[derive(Debug)]
pub struct Corpus {
    /// The variant.
    pub variant: Variant,
    /// Typed entries.
    pub messages: Vec<Message>,
    /// Their compact JSON, as annals takes it.
    pub raw: Vec<RawEntry>,
    /// JSON plus `\n`: the line a naive JSONL store writes, and what SQLite stores (without
    /// the newline).
    pub lines: Vec<Vec<u8>>,
    /// The complete annals line (CRC, sequence number `i`, entry, newline): what the raw
    /// `write(2)` floor writes, byte for byte what annals writes.
    pub framed: Vec<Vec<u8>>,
}

impl Corpus {
    /// The corpus of a variant, generated on first use.
    #[must_use]
    pub fn get(variant: Variant) -> &'static Corpus {
        static SMALL: OnceLock<Corpus> = OnceLock::new();
        static LARGE: OnceLock<Corpus> = OnceLock::new();
        let cell = match variant {
            Variant::Small => &SMALL,
            Variant::Large => &LARGE,
        };
        cell.get_or_init(|| Corpus::generate(variant))
    }

    fn generate(variant: Variant) -> Corpus {
        let mut rng = Rng(match variant {
            Variant::Small => 0x5EED_0400,
            Variant::Large => 0x5EED_4096,
        });
        let messages: Vec<Message> = (0..CORPUS_LEN)
            .map(|i| message(variant, i, &mut rng))
            .collect();
        let raw: Vec<RawEntry> = messages
            .iter()
            .map(|m| RawEntry::from_value(m).expect("a message serializes"))
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
        let framed = raw
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut line = Vec::new();
                // A line as a store writes it into a new file (format 2: with its append time;
                // one write of its own, so no marks), for the write(2) floor to append.
                let frame = codec::Frame {
                    version: codec::Version::NEW_FILES,
                    seq: i as u64,
                    marks: codec::Marks {
                        appended_ms: 1_750_000_000_000,
                        ..codec::Marks::default()
                    },
                };
                codec::encode_entry(&frame, r.as_str(), &mut line)
                    .expect("generated entries fit in one line");
                line
            })
            .collect();
        Corpus {
            variant,
            messages,
            raw,
            lines,
            framed,
        }
    }

    /// Entry `i` of an endless log cycling through the corpus.
    #[must_use]
    pub fn raw_at(&self, i: u64) -> &RawEntry {
        &self.raw[(i % CORPUS_LEN as u64) as usize]
    }

    /// Naive line `i`.
    #[must_use]
    pub fn line_at(&self, i: u64) -> &[u8] {
        &self.lines[(i % CORPUS_LEN as u64) as usize]
    }

    /// Framed annals line `i`.
    #[must_use]
    pub fn framed_at(&self, i: u64) -> &[u8] {
        &self.framed[(i % CORPUS_LEN as u64) as usize]
    }

    /// JSON text of entry `i` (no newline).
    #[must_use]
    pub fn json_at(&self, i: u64) -> &str {
        self.raw_at(i).as_str()
    }

    /// Mean JSON length of an entry, in bytes.
    #[must_use]
    pub fn mean_len(&self) -> f64 {
        self.raw.iter().map(RawEntry::len).sum::<usize>() as f64 / self.raw.len() as f64
    }

    /// Sum of the JSON lengths of entries `0..n` of the cycling log: the payload a replay
    /// delivers, the same for every contender.
    #[must_use]
    pub fn payload_bytes(&self, n: u64) -> u64 {
        let per_cycle: u64 = self.raw.iter().map(|r| r.len() as u64).sum();
        let full = n / CORPUS_LEN as u64;
        let rest: u64 = (0..n % CORPUS_LEN as u64)
            .map(|i| self.raw_at(i).len() as u64)
            .sum();
        full * per_cycle + rest
    }
}

const WORDS: &[&str] = &[
    "the",
    "file",
    "function",
    "returns",
    "error",
    "test",
    "I",
    "will",
    "check",
    "update",
    "config",
    "because",
    "segment",
    "value",
    "should",
    "we",
    "now",
    "parse",
    "line",
    "build",
    "passes",
    "failing",
    "let",
    "me",
    "look",
    "at",
    "module",
    "change",
    "this",
    "struct",
    "field",
    "docs",
    "\"quoted\"",
    "path/to/src/lib.rs",
    "→",
    "ok",
    "cargo",
    "`fn main()`",
];

const TOOLS: &[&str] = &[
    "read_file",
    "grep",
    "bash",
    "edit_file",
    "list_dir",
    "web_fetch",
];

const MODELS: &[&str] = &["model-large-2025", "model-small-2025"];

fn text(rng: &mut Rng, len: usize) -> String {
    let mut s = String::with_capacity(len + 16);
    while s.len() < len {
        if !s.is_empty() {
            s.push(if rng.below(40) == 0 { '\n' } else { ' ' });
        }
        s.push_str(rng.pick(WORDS));
    }
    s
}

fn message(variant: Variant, i: usize, rng: &mut Rng) -> Message {
    let id = format!("msg_{}", rng.hex(24));
    let parent = (i > 0).then(|| format!("msg_{}", rng.hex(24)));
    let created_ms = 1_750_000_000_000 + i as u64 * 1_733;
    let len = variant.text_len(rng);
    // A tool call carries ~150 bytes more than plain text; its text shrinks to match.
    let tool_text = match variant {
        Variant::Small => len / 2,
        Variant::Large => len - 150,
    };
    match i % 4 {
        0 => Message {
            id,
            parent,
            role: Role::User,
            created_ms,
            model: None,
            content: vec![Block::Text {
                text: text(rng, len),
            }],
            usage: None,
            stop_reason: None,
        },
        1 => Message {
            id,
            parent,
            role: Role::Assistant,
            created_ms,
            model: Some(rng.pick(MODELS).to_string()),
            content: vec![
                Block::Text {
                    text: text(rng, tool_text),
                },
                Block::ToolUse {
                    id: format!("call_{}", rng.hex(16)),
                    name: rng.pick(TOOLS).to_string(),
                    input: serde_json::json!({
                        "path": format!("src/{}.rs", rng.pick(WORDS).trim_matches('"')),
                        "pattern": rng.pick(WORDS),
                        "limit": rng.below(500),
                    }),
                },
            ],
            usage: Some(Usage {
                input_tokens: rng.below(90_000) as u32,
                output_tokens: rng.below(4_000) as u32,
                cache_read_tokens: rng.below(80_000) as u32,
            }),
            stop_reason: Some("tool_use".to_string()),
        },
        2 => Message {
            id,
            parent,
            role: Role::Tool,
            created_ms,
            model: None,
            content: vec![Block::ToolResult {
                tool_use_id: format!("call_{}", rng.hex(16)),
                content: text(rng, len),
                is_error: rng.below(10) == 0,
            }],
            usage: None,
            stop_reason: None,
        },
        _ => Message {
            id,
            parent,
            role: Role::Assistant,
            created_ms,
            model: Some(rng.pick(MODELS).to_string()),
            content: vec![Block::Text {
                text: text(rng, len),
            }],
            usage: Some(Usage {
                input_tokens: rng.below(90_000) as u32,
                output_tokens: rng.below(4_000) as u32,
                cache_read_tokens: rng.below(80_000) as u32,
            }),
            stop_reason: Some("end_turn".to_string()),
        },
    }
}
