//! What the page shows of one entry: a row with its sequence number, append time, size, where
//! it is kept, and — when the entry has such fields — its role or type, a tool name and a
//! preview of its text. Pure: an [`Entry`] in, one line of JSON out.
//!
//! Entries are hostile content. The preview is cut to [`PREVIEW_BYTES`], and terminal escapes,
//! other control characters and bidirectional overrides are replaced by visible stand-ins, so
//! that a row can neither run long nor disguise itself; the page then only ever puts it in the
//! document as text.

use std::borrow::Cow;
use std::fmt;

use annals::{Body, Entry};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Longest text preview, in bytes of UTF-8.
pub const PREVIEW_BYTES: usize = 2000;
/// Longest role, type or name shown.
const LABEL_BYTES: usize = 80;

/// One transcript row, as the page receives it (one line of the entries stream).
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Row {
    /// `"entry"` or `"trace"`.
    pub kind: &'static str,
    pub seq: u64,
    /// Append time (ms since the epoch); `null` where the store kept none (format version 1).
    pub t: Option<u64>,
    /// Bytes of the entry's JSON text.
    pub len: u64,
    /// The blob that holds the entry, when it was too long for a line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blob: Option<String>,
    #[serde(flatten)]
    pub shape: Shape,
}

/// What a row says the entry is, read from its usual fields.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Shape {
    /// `role` (user, assistant, system, tool…).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// `type`, `kind` or `event` (message, tool_call, tool_result…).
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// A tool's or function's name: `name`, `tool` or `tool_name`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The text: `text`, `content` (a string or a list of parts with text), `message`,
    /// `output`, `result` or `error`; else the call's `args`/`input`/`arguments` as JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The text was longer than the preview.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cut: bool,
    /// The entry has none of those fields: the text is the start of its JSON.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub json_text: bool,
}

impl Row {
    /// The row of a delivered entry. An entry kept as a blob whose text was not read (a replay
    /// with `blob_refs`) gets its shape from the blob's first bytes only when they parse, which
    /// they rarely do: its size and blob still say what it is.
    pub fn of(kind: &'static str, entry: &Entry<'_>) -> Self {
        let (len, blob, json) = match entry.body {
            Body::Inline(json) => (json.len() as u64, None, Some(json)),
            Body::Blob { reference, json } => {
                (reference.len, Some(reference.sha256.to_hex()), json)
            }
        };
        Self {
            kind,
            seq: entry.seq,
            t: entry.appended_ms,
            len,
            blob,
            shape: json.map(Shape::or_json).unwrap_or_default(),
        }
    }

    /// The row as one line of JSON text (no newline).
    pub fn to_line(&self) -> String {
        // A row is plain strings and numbers: serializing it cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }
}

impl Shape {
    /// [`Shape::of`], with the start of the JSON text as the text when no field gave one.
    pub fn or_json(json: &str) -> Self {
        let mut shape = Self::of(json);
        if shape.text.is_none() {
            let (head, cut) = cut(json, PREVIEW_BYTES);
            shape.text = Some(visible(head).into_owned());
            shape.cut = cut;
            shape.json_text = true;
        }
        shape
    }

    /// Reads the usual fields of an entry's JSON text. Anything else (a number, a list, an
    /// object with other fields) gives an empty shape or a text preview of what there is;
    /// memory stays within the preview plus one decoded string of the entry.
    pub fn of(json: &str) -> Self {
        let Ok(top) = serde_json::from_str::<Top<'_>>(json) else {
            return Self::default();
        };
        let mut shape = Self {
            role: top.role.map(|r| label(&r)),
            kind: top.kind.map(|k| label(&k)),
            name: top.name.map(|n| label(&n)),
            ..Self::default()
        };
        let text = top.text.or_else(|| {
            top.args.map(|raw| {
                let mut t = Text::default();
                t.push(raw.get());
                t
            })
        });
        if let Some(t) = text {
            shape.cut = t.cut;
            shape.text = Some(visible(&t.text).into_owned());
        }
        shape
    }
}

/// The top-level fields a row reads.
#[derive(Default)]
struct Top<'a> {
    role: Option<Cow<'a, str>>,
    kind: Option<Cow<'a, str>>,
    name: Option<Cow<'a, str>>,
    text: Option<Text>,
    args: Option<&'a RawValue>,
}

impl<'de: 'a, 'a> Deserialize<'de> for Top<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TopVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for TopVisitor<'a> {
            type Value = Top<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an entry")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Top<'a>, M::Error> {
                let mut top = Top::default();
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    match key.as_ref() {
                        "role" if top.role.is_none() => top.role = map.next_value::<Scalar>()?.0,
                        "type" | "kind" | "event" if top.kind.is_none() => {
                            top.kind = map.next_value::<Scalar>()?.0;
                        }
                        "name" | "tool" | "tool_name" if top.name.is_none() => {
                            top.name = map.next_value::<Scalar>()?.0;
                        }
                        "text" | "content" | "message" | "output" | "result" | "error"
                            if top.text.is_none() =>
                        {
                            top.text = map.next_value::<Option<Text>>()?;
                        }
                        "args" | "input" | "arguments" | "params" if top.args.is_none() => {
                            top.args = Some(map.next_value()?);
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(top)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Top<'a>, E> {
                let mut text = Text::default();
                text.push(v);
                Ok(Top {
                    text: Some(text),
                    ..Top::default()
                })
            }
            fn visit_seq<S: SeqAccess<'de>>(self, seq: S) -> Result<Top<'a>, S::Error> {
                let text = TextVisitor.visit_seq(seq)?;
                Ok(Top {
                    text: Some(text),
                    ..Top::default()
                })
            }
            fn visit_unit<E: de::Error>(self) -> Result<Top<'a>, E> {
                Ok(Top::default())
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Top<'a>, E> {
                Ok(Top::default())
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Top<'a>, E> {
                Ok(Top::default())
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Top<'a>, E> {
                Ok(Top::default())
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Top<'a>, E> {
                Ok(Top::default())
            }
        }
        d.deserialize_any(TopVisitor(std::marker::PhantomData))
    }
}

/// A short string field, or nothing if the field is not a string or a number (a label never
/// fails a row).
struct Scalar<'a>(Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Scalar<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a label")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Scalar<'a>, E> {
                Ok(Scalar(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar<'a>, E> {
                Ok(Scalar(Some(Cow::Owned(cut(v, LABEL_BYTES).0.to_owned()))))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar<'a>, E> {
                Ok(Scalar(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar<'a>, E> {
                Ok(Scalar(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Scalar<'a>, E> {
                Ok(Scalar(None))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Scalar<'a>, E> {
                Ok(Scalar(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Scalar<'a>, E> {
                Ok(Scalar(None))
            }
            fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Scalar<'a>, S::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar(None))
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Scalar<'a>, M::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar(None))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// Text gathered from a field, at most [`PREVIEW_BYTES`]: a string as it is, the texts of a
/// list of parts joined by newlines, the `text` or `content` of an object.
#[derive(Debug, Default)]
struct Text {
    text: String,
    cut: bool,
}

impl Text {
    fn push(&mut self, s: &str) {
        if self.cut {
            return;
        }
        if !self.text.is_empty() {
            if self.text.len() >= PREVIEW_BYTES {
                self.cut = true;
                return;
            }
            self.text.push('\n');
        }
        let room = PREVIEW_BYTES.saturating_sub(self.text.len());
        let (kept, was_cut) = cut(s, room);
        self.text.push_str(kept);
        self.cut = was_cut;
    }

    fn append(&mut self, other: Self) {
        if !other.text.is_empty() {
            self.push(&other.text);
        }
        self.cut |= other.cut;
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TextVisitor)
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("text")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
        let mut t = Text::default();
        t.push(v);
        Ok(t)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Text, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Text, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Text, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Text, E> {
        self.visit_str(if v { "true" } else { "false" })
    }
    fn visit_unit<E: de::Error>(self) -> Result<Text, E> {
        Ok(Text::default())
    }
    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Text, S::Error> {
        let mut all = Text::default();
        while let Some(part) = seq.next_element::<Text>()? {
            all.append(part);
        }
        Ok(all)
    }
    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Text, M::Error> {
        let mut all = Text::default();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if matches!(key.as_ref(), "text" | "content" | "output") {
                all.append(map.next_value::<Text>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(all)
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary, and
/// whether anything was left out.
pub fn cut(s: &str, max: usize) -> (&str, bool) {
    if s.len() <= max {
        return (s, false);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    (s.get(..end).unwrap_or_default(), true)
}

fn label(s: &str) -> String {
    visible(cut(s, LABEL_BYTES).0).into_owned()
}

/// Replaces what would act rather than show: terminal escapes and other control characters
/// (newline and tab kept) by their Unicode "control pictures", and the bidirectional
/// overrides and isolates that could make text read backwards by `⟦U+202E⟧`-style marks.
pub fn visible(s: &str) -> Cow<'_, str> {
    let acts = |c: char| {
        (c.is_control() && c != '\n' && c != '\t')
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}')
    };
    if !s.chars().any(acts) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '\u{0}'..='\u{1f}' if c != '\n' && c != '\t' => {
                out.push(char::from_u32(0x2400 + c as u32).unwrap_or('\u{fffd}'));
            }
            '\u{7f}' => out.push('\u{2421}'),
            c if acts(c) => out.push_str(&format!("\u{27e6}U+{:04X}\u{27e7}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use annals::BlobRef;

    fn shape(json: &str) -> Shape {
        Shape::of(json)
    }

    #[test]
    fn messages_show_role_and_text() {
        let s = shape(r#"{"role":"user","text":"hello","ts":1}"#);
        assert_eq!(s.role.as_deref(), Some("user"));
        assert_eq!(s.text.as_deref(), Some("hello"));
        assert!(!s.cut);
        let s = shape(
            r#"{"type":"assistant","content":[{"type":"text","text":"a"},{"type":"image"},{"text":"b"}]}"#,
        );
        assert_eq!(s.kind.as_deref(), Some("assistant"));
        assert_eq!(s.text.as_deref(), Some("a\nb"));
    }

    #[test]
    fn tool_calls_show_name_and_arguments() {
        let s = shape(r#"{"type":"tool_call","name":"read_file","args":{"path":"src/a.rs"}}"#);
        assert_eq!(s.kind.as_deref(), Some("tool_call"));
        assert_eq!(s.name.as_deref(), Some("read_file"));
        assert_eq!(s.text.as_deref(), Some(r#"{"path":"src/a.rs"}"#));
        let s = shape(r#"{"type":"tool_result","output":"ok","args":{"x":1}}"#);
        assert_eq!(s.text.as_deref(), Some("ok"));
    }

    #[test]
    fn odd_shapes_never_fail_a_row() {
        assert_eq!(shape("42"), Shape::default());
        assert_eq!(shape("null"), Shape::default());
        assert_eq!(shape(r#""just text""#).text.as_deref(), Some("just text"));
        let s = shape(r#"{"role":{"nested":true},"type":7,"name":[1,2],"text":null}"#);
        assert_eq!(s.role, None);
        assert_eq!(s.kind.as_deref(), Some("7"));
        assert_eq!(s.name, None);
        assert_eq!(s.text, None);
        assert_eq!(shape("not json"), Shape::default());
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary() {
        let long = "é".repeat(PREVIEW_BYTES);
        let s = shape(&serde_json::json!({"text": long}).to_string());
        let text = s.text.unwrap();
        assert!(s.cut);
        assert!(text.len() <= PREVIEW_BYTES && text.len() > PREVIEW_BYTES - 2);
        let parts =
            serde_json::json!({"content": [{"text": "x".repeat(PREVIEW_BYTES)}, {"text": "more"}]});
        let s = shape(&parts.to_string());
        assert!(s.cut);
        assert_eq!(s.text.unwrap().len(), PREVIEW_BYTES);
    }

    #[test]
    fn escapes_and_overrides_become_visible() {
        let s = shape(r#"{"text":"\u001b[31mred\u001b[0m\tok\n\u202egnp.exe\u0000"}"#);
        assert_eq!(
            s.text.as_deref(),
            Some("\u{241b}[31mred\u{241b}[0m\tok\n\u{27e6}U+202E\u{27e7}gnp.exe\u{2400}")
        );
        let s = shape("{\"role\":\"us\u{7f}er\"}");
        assert_eq!(s.role.as_deref(), Some("us\u{2421}er"));
    }

    #[test]
    fn html_stays_text_in_the_row() {
        let json = r#"{"role":"user","text":"<script>alert(1)</script>"}"#;
        let row = Row::of(
            "entry",
            &Entry {
                seq: 3,
                appended_ms: Some(5),
                body: Body::Inline(json),
            },
        );
        let line = row.to_line();
        let back: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back["text"], "<script>alert(1)</script>");
        assert_eq!(back["seq"], 3);
        assert_eq!(back["t"], 5);
        assert_eq!(back["len"], json.len());
    }

    #[test]
    fn blob_rows_name_their_blob_and_size() {
        let json =
            serde_json::json!({"type": "tool_result", "output": "y".repeat(10_000)}).to_string();
        let reference = BlobRef::for_entry(&json);
        let row = Row::of(
            "entry",
            &Entry {
                seq: 0,
                appended_ms: None,
                body: Body::Blob {
                    reference: &reference,
                    json: Some(&json),
                },
            },
        );
        assert_eq!(row.len, json.len() as u64);
        assert_eq!(row.blob, Some(reference.sha256.to_hex()));
        assert!(row.shape.cut);
        assert_eq!(row.shape.kind.as_deref(), Some("tool_result"));
        let line = row.to_line();
        assert!(line.contains("\"t\":null"), "{line}");
    }
}
