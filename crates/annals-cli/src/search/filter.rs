//! Which entries a command shows besides a pattern: `--where FIELD=VALUE`, `--since`/`--until`,
//! `--from`/`--to`. One parser for the CLI's flags and the web viewer's query parameters.

use std::fmt;

use serde_json::Value;

use super::time::{self, TimeError};

/// The filters as the user typed them.
#[derive(Debug, Clone, Copy, Default)]
pub struct FilterSpec<'a> {
    /// `FIELD=VALUE` or `FIELD!=VALUE`, all of which must hold. FIELD is a dotted path into
    /// the entry (`usage.input_tokens`, `args.0`).
    pub fields: &'a [String],
    /// Entries appended at or after this time (an age like `10m`, or a date and time).
    pub since: Option<&'a str>,
    /// Entries appended at or before this time.
    pub until: Option<&'a str>,
    /// Entries with a sequence number at or above this one.
    pub from: Option<u64>,
    /// Entries with a sequence number at or below this one.
    pub to: Option<u64>,
}

/// Why a filter was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterError {
    /// A `--where` that is not `FIELD=VALUE`.
    Field {
        /// What was given.
        input: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A `--since`/`--until` that is not a time.
    Time {
        /// `"--since"` or `"--until"`.
        flag: &'static str,
        /// Why.
        error: TimeError,
    },
    /// `--from` after `--to`: nothing could ever match.
    SeqRange {
        /// `--from`.
        from: u64,
        /// `--to`.
        to: u64,
    },
    /// `--since` after `--until`.
    TimeRange {
        /// `--since`, ms since the epoch.
        since: u64,
        /// `--until`, ms since the epoch.
        until: u64,
    },
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Field { input, reason } => write!(
                f,
                "--where {input:?}: {reason} (use FIELD=VALUE or FIELD!=VALUE, FIELD a dotted \
                 path such as usage.input_tokens)"
            ),
            Self::Time { flag, error } => write!(f, "{flag}: {error}"),
            Self::SeqRange { from, to } => write!(
                f,
                "--from {from} is after --to {to}: no entry can match (both are inclusive \
                 sequence numbers)"
            ),
            Self::TimeRange { since, until } => write!(
                f,
                "--since ({}) is after --until ({}): no entry can match",
                time::rfc3339(*since),
                time::rfc3339(*until)
            ),
        }
    }
}

impl std::error::Error for FilterError {}

/// One `--where`.
#[derive(Debug, Clone, PartialEq)]
struct FieldTest {
    path: Vec<String>,
    negated: bool,
    /// The value as text, compared with string fields.
    text: String,
    /// The value as JSON, if it is JSON (`5`, `true`, `null`, `[1,2]`), compared with any field.
    json: Option<Value>,
}

/// What a filter says of one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Shown.
    Pass,
    /// Not shown.
    Fail,
    /// Not shown because a time filter is set and the entry has no append time (it is in a
    /// file of on-disk format version 1, which kept none). Counted apart so that a command can
    /// say why.
    NoTime,
}

/// Compiled filters. The default admits everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    fields: Vec<FieldTest>,
    since_ms: Option<u64>,
    until_ms: Option<u64>,
    from_seq: Option<u64>,
    to_seq: Option<u64>,
}

impl Filter {
    /// Parses the filters; `now_ms` anchors ages such as `10m`.
    ///
    /// # Errors
    /// [`FilterError`]: a malformed `--where` or time, or an empty range (`--from 5 --to 2`).
    pub fn parse(spec: &FilterSpec<'_>, now_ms: u64) -> Result<Self, FilterError> {
        let fields = spec
            .fields
            .iter()
            .map(|f| parse_field(f))
            .collect::<Result<Vec<_>, _>>()?;
        let instant = |flag, text: Option<&str>| {
            text.map(|t| time::parse_instant(t, now_ms))
                .transpose()
                .map_err(|error| FilterError::Time { flag, error })
        };
        let since_ms = instant("--since", spec.since)?;
        let until_ms = instant("--until", spec.until)?;
        if let (Some(from), Some(to)) = (spec.from, spec.to) {
            if from > to {
                return Err(FilterError::SeqRange { from, to });
            }
        }
        if let (Some(since), Some(until)) = (since_ms, until_ms) {
            if since > until {
                return Err(FilterError::TimeRange { since, until });
            }
        }
        Ok(Self {
            fields,
            since_ms,
            until_ms,
            from_seq: spec.from,
            to_seq: spec.to,
        })
    }

    /// The first sequence number that can pass.
    #[must_use]
    pub fn from_seq(&self) -> u64 {
        self.from_seq.unwrap_or(0)
    }

    /// The last sequence number that can pass, if bounded.
    #[must_use]
    pub fn to_seq(&self) -> Option<u64> {
        self.to_seq
    }

    /// True once `seq` is past `--to`: a replay can stop.
    #[must_use]
    pub fn past_end(&self, seq: u64) -> bool {
        self.to_seq.is_some_and(|to| seq > to)
    }

    /// Whether a time bound is set (entries without a time then never pass).
    #[must_use]
    pub fn has_time(&self) -> bool {
        self.since_ms.is_some() || self.until_ms.is_some()
    }

    /// `--since`, ms since the epoch.
    #[must_use]
    pub fn since_ms(&self) -> Option<u64> {
        self.since_ms
    }

    /// Whether `--where` tests are set (each entry's JSON is then parsed).
    #[must_use]
    pub fn has_fields(&self) -> bool {
        !self.fields.is_empty()
    }

    /// True if nothing is filtered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The verdict on one entry, cheapest tests first: sequence number, time, then fields
    /// (which parse the JSON).
    #[must_use]
    pub fn check(&self, seq: u64, appended_ms: Option<u64>, json: &str) -> Verdict {
        if seq < self.from_seq() || self.past_end(seq) {
            return Verdict::Fail;
        }
        match self.check_time(appended_ms) {
            Verdict::Pass => {}
            other => return other,
        }
        if self.check_fields(json) {
            Verdict::Pass
        } else {
            Verdict::Fail
        }
    }

    /// The time part of [`Filter::check`].
    #[must_use]
    pub fn check_time(&self, appended_ms: Option<u64>) -> Verdict {
        if !self.has_time() {
            return Verdict::Pass;
        }
        let Some(t) = appended_ms else {
            return Verdict::NoTime;
        };
        let after = self.since_ms.is_none_or(|s| t >= s);
        let before = self.until_ms.is_none_or(|u| t <= u);
        if after && before {
            Verdict::Pass
        } else {
            Verdict::Fail
        }
    }

    /// The `--where` part of [`Filter::check`]. Text that is not JSON passes no test.
    #[must_use]
    pub fn check_fields(&self, json: &str) -> bool {
        if self.fields.is_empty() {
            return true;
        }
        let Ok(value) = serde_json::from_str::<Value>(json) else {
            return false;
        };
        self.fields.iter().all(|test| test.holds(&value))
    }
}

fn parse_field(input: &str) -> Result<FieldTest, FilterError> {
    let fail = |reason| FilterError::Field {
        input: input.to_owned(),
        reason,
    };
    let (lhs, value) = input.split_once('=').ok_or_else(|| fail("no `=`"))?;
    let (field, negated) = match lhs.strip_suffix('!') {
        Some(field) => (field, true),
        None => (lhs, false),
    };
    if field.is_empty() {
        return Err(fail("no field before `=`"));
    }
    let path: Vec<String> = field.split('.').map(str::to_owned).collect();
    if path.iter().any(String::is_empty) {
        return Err(fail("an empty step in the dotted path"));
    }
    Ok(FieldTest {
        path,
        negated,
        text: value.to_owned(),
        json: serde_json::from_str(value).ok(),
    })
}

impl FieldTest {
    fn holds(&self, entry: &Value) -> bool {
        let found = lookup(entry, &self.path).is_some_and(|v| self.equals(v));
        found != self.negated
    }

    fn equals(&self, field: &Value) -> bool {
        if let Value::String(s) = field {
            if *s == self.text {
                return true;
            }
        }
        self.json.as_ref().is_some_and(|want| same(want, field))
    }
}

/// Follows a dotted path: object keys, and array indexes for steps that are numbers.
fn lookup<'v>(mut value: &'v Value, path: &[String]) -> Option<&'v Value> {
    for step in path {
        value = match value {
            Value::Object(map) => map.get(step.as_str())?,
            Value::Array(items) => items.get(step.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(value)
}

/// JSON equality where numbers compare by value (`5` equals `5.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            x.as_f64().zip(y.as_f64()).is_some_and(|(x, y)| x == y)
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(fields: &[&str]) -> Filter {
        let fields: Vec<String> = fields.iter().map(|s| (*s).to_owned()).collect();
        Filter::parse(
            &FilterSpec {
                fields: &fields,
                ..FilterSpec::default()
            },
            0,
        )
        .unwrap()
    }

    const ENTRY: &str = r#"{"type":"tool_result","ok":true,"n":5,"usage":{"input_tokens":120},"args":["a","b"],"who":null,"id":"7"}"#;

    #[test]
    fn where_follows_dotted_paths_and_compares_by_value() {
        for (test, expected) in [
            ("type=tool_result", true),
            ("type=user", false),
            ("ok=true", true),
            ("n=5", true),
            ("n=5.0", true),
            ("n=6", false),
            ("usage.input_tokens=120", true),
            ("args.1=b", true),
            ("args.2=b", false),
            ("who=null", true),
            ("id=7", true),
            ("missing=x", false),
            ("type!=user", true),
            ("type!=tool_result", false),
            ("missing!=x", true),
            ("usage={\"input_tokens\":120}", true),
        ] {
            assert_eq!(filter(&[test]).check_fields(ENTRY), expected, "{test}");
        }
        assert!(filter(&["type=tool_result", "n=5"]).check_fields(ENTRY));
        assert!(!filter(&["type=tool_result", "n=4"]).check_fields(ENTRY));
        assert!(!filter(&["type=x"]).check_fields("not json"));
    }

    #[test]
    fn malformed_wheres_are_refused_with_the_reason() {
        for bad in ["type", "=x", "a..b=1", ".a=1"] {
            let fields = vec![bad.to_owned()];
            let e = Filter::parse(
                &FilterSpec {
                    fields: &fields,
                    ..FilterSpec::default()
                },
                0,
            )
            .unwrap_err();
            assert!(matches!(e, FilterError::Field { .. }), "{bad}");
            assert!(e.to_string().contains("FIELD=VALUE"), "{e}");
        }
    }

    #[test]
    fn an_empty_sequence_range_is_an_error_not_silence() {
        let spec = FilterSpec {
            from: Some(5),
            to: Some(2),
            ..FilterSpec::default()
        };
        let e = Filter::parse(&spec, 0).unwrap_err();
        assert_eq!(e, FilterError::SeqRange { from: 5, to: 2 });
        assert!(e.to_string().contains("--from 5 is after --to 2"));
        let ok = Filter::parse(
            &FilterSpec {
                from: Some(2),
                to: Some(2),
                ..FilterSpec::default()
            },
            0,
        )
        .unwrap();
        assert_eq!(ok.check(1, None, "{}"), Verdict::Fail);
        assert_eq!(ok.check(2, None, "{}"), Verdict::Pass);
        assert!(ok.past_end(3));
    }

    #[test]
    fn time_bounds_are_inclusive_and_entries_without_a_time_are_told_apart() {
        let spec = FilterSpec {
            since: Some("10m"),
            until: Some("5m"),
            ..FilterSpec::default()
        };
        let now = 1_000_000_000;
        let f = Filter::parse(&spec, now).unwrap();
        assert_eq!(f.check(0, Some(now - 600_000), "{}"), Verdict::Pass);
        assert_eq!(f.check(0, Some(now - 300_000), "{}"), Verdict::Pass);
        assert_eq!(f.check(0, Some(now - 600_001), "{}"), Verdict::Fail);
        assert_eq!(f.check(0, Some(now), "{}"), Verdict::Fail);
        assert_eq!(f.check(0, None, "{}"), Verdict::NoTime);
        assert_eq!(Filter::default().check(0, None, "{}"), Verdict::Pass);
        let backwards = FilterSpec {
            since: Some("5m"),
            until: Some("10m"),
            ..FilterSpec::default()
        };
        assert!(matches!(
            Filter::parse(&backwards, now),
            Err(FilterError::TimeRange { .. })
        ));
        let bad = FilterSpec {
            until: Some("tomorrow"),
            ..FilterSpec::default()
        };
        let e = Filter::parse(&bad, now).unwrap_err().to_string();
        assert!(e.starts_with("--until: \"tomorrow\" is not a time"), "{e}");
    }
}
