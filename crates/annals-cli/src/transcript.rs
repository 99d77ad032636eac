//! What a person reads of an entry: who or what it is (its role or type) and its text, found
//! in the shapes agent runtimes write (OpenAI- and Anthropic-style messages, tool calls and
//! results, events). Used by `annals cat --format transcript`; the web viewer may show the same.

use serde_json::Value;

/// Who or what an entry is: its `role`, else `type`, `kind` or `event` (also inside a
/// `message` object, as some runtimes nest them).
pub fn label_of(value: &Value) -> String {
    for key in ["role", "type", "kind", "event"] {
        if let Some(s) = value.get(key).and_then(Value::as_str) {
            return s.to_owned();
        }
    }
    value
        .get("message")
        .filter(|m| m.is_object())
        .map(label_of)
        .unwrap_or_default()
}

/// The readable part of an entry: its text, content, message, output…, or for a tool call
/// its name and arguments.
pub fn text_of(value: &Value) -> Option<String> {
    if let Some(s) = value.as_str() {
        return Some(s.to_owned());
    }
    for key in ["text", "content", "message"] {
        match value.get(key) {
            Some(Value::String(s)) => return Some(s.clone()),
            Some(Value::Array(parts)) => {
                let texts: Vec<String> = parts.iter().filter_map(part_text).collect();
                if !texts.is_empty() {
                    return Some(texts.join(" "));
                }
            }
            Some(v @ Value::Object(_)) => {
                if let Some(t) = text_of(v) {
                    return Some(t);
                }
            }
            _ => {}
        }
    }
    for key in [
        "output",
        "result",
        "error",
        "summary",
        "observation",
        "thought",
    ] {
        if let Some(v) = value.get(key) {
            return Some(match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            });
        }
    }
    let name = value.get("name").and_then(Value::as_str)?;
    let args = ["args", "arguments", "input"]
        .iter()
        .find_map(|k| value.get(*k))
        .map(|a| match a {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .unwrap_or_default();
    Some(format!("{name} {args}").trim_end().to_owned())
}

/// The text of one part of a `content` array (`{"type":"text","text":…}`, a tool use, a
/// tool result).
fn part_text(part: &Value) -> Option<String> {
    match part {
        Value::String(s) => Some(s.clone()),
        Value::Object(_) => text_of(part),
        _ => None,
    }
}

/// One line: whitespace runs become one space; control characters (a tool's ANSI escapes)
/// are shown as `�` so they cannot move the cursor or change colours.
pub fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(4096));
    let mut space = false;
    for c in text.chars() {
        if c.is_whitespace() {
            space = true;
            continue;
        }
        if space && !out.is_empty() {
            out.push(' ');
        }
        space = false;
        out.push(if c.is_control() { '\u{fffd}' } else { c });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn transcripts_find_the_role_and_the_text_in_common_shapes() {
        let cases = [
            (
                json!({"role": "user", "content": "hi there"}),
                "user",
                "hi there",
            ),
            (
                json!({"type": "assistant", "message": {"role": "assistant", "content": [{"type": "text", "text": "Let me look."}, {"type": "tool_use", "name": "read", "input": {"path": "a.rs"}}]}}),
                "assistant",
                "Let me look. read {\"path\":\"a.rs\"}",
            ),
            (
                json!({"type": "tool_call", "name": "run", "args": {"cmd": "ls"}}),
                "tool_call",
                "run {\"cmd\":\"ls\"}",
            ),
            (
                json!({"type": "tool_result", "ok": true, "output": "a\nb"}),
                "tool_result",
                "a\nb",
            ),
            (json!({"event": "model", "ms": 3}), "model", ""),
        ];
        for (value, label, text) in cases {
            assert_eq!(label_of(&value), label, "{value}");
            assert_eq!(text_of(&value).unwrap_or_default(), text, "{value}");
        }
    }

    #[test]
    fn one_line_collapses_whitespace_and_defuses_escapes() {
        assert_eq!(one_line("a\n\n  b\tc "), "a b c");
        assert_eq!(
            one_line("\u{1b}[31mred\u{1b}[0m"),
            "\u{fffd}[31mred\u{fffd}[0m"
        );
    }
}
