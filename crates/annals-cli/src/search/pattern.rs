//! What to look for in an entry's JSON text: a fixed string or a regular expression, compiled
//! once.

use std::fmt;
use std::ops::Range;

use memchr::memmem;

/// Whether letter case matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Case {
    /// `a` matches only `a`.
    #[default]
    Sensitive,
    /// `a` matches `a` and `A` (Unicode simple case folding).
    Insensitive,
    /// Insensitive if the pattern has no upper-case letter, else sensitive (ripgrep's `-S`).
    Smart,
}

/// A compiled pattern. Matching is over the entry's JSON text exactly as stored (compact, with
/// JSON's escapes: a quote inside a string reads `\"`, a newline `\n`), so what matches is
/// what `jq -c` prints.
#[derive(Clone)]
pub struct Pattern {
    text: String,
    matcher: Matcher,
}

#[derive(Clone)]
enum Matcher {
    /// Every entry matches (a search by filters only).
    Any,
    /// A case-sensitive fixed string: SIMD substring search.
    Fixed(Box<memmem::Finder<'static>>),
    /// A regular expression (also a case-insensitive fixed string with non-ASCII letters,
    /// escaped).
    Regex(regex::Regex),
    /// A case-insensitive ASCII fixed string: ASCII case folding over bytes, which lets the
    /// regex engine find candidates with its SIMD literal search (Unicode folding of `k` and
    /// `s` to the Kelvin sign and long s is the one thing left out).
    Ascii(regex::bytes::Regex),
}

/// A regular expression that does not compile.
#[derive(Debug)]
pub struct PatternError(regex::Error);

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            regex::Error::Syntax(text) => write!(f, "not a valid regular expression:\n{text}"),
            other => write!(f, "not a usable regular expression: {other}"),
        }
    }
}

impl std::error::Error for PatternError {}

/// Compiled regexes above this size are refused rather than built (a pattern like `x{10000}{10000}`).
const REGEX_SIZE_LIMIT: usize = 64 << 20;

impl Pattern {
    /// A pattern that every entry matches: for searches by filters alone.
    #[must_use]
    pub fn any() -> Self {
        Self {
            text: String::new(),
            matcher: Matcher::Any,
        }
    }

    /// A fixed string (no special characters).
    #[must_use]
    pub fn fixed(text: &str, case: Case) -> Self {
        if text.is_empty() {
            return Self::any();
        }
        let fixed = || Matcher::Fixed(Box::new(memmem::Finder::new(text.as_bytes()).into_owned()));
        // The escaped string can always be compiled: it is a plain literal.
        let matcher = if is_insensitive(text, case) && text.is_ascii() {
            regex::bytes::RegexBuilder::new(&regex::escape(text))
                .case_insensitive(true)
                .unicode(false)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map_or_else(|_| fixed(), Matcher::Ascii)
        } else if is_insensitive(text, case) {
            build(&regex::escape(text), true).map_or_else(|_| fixed(), Matcher::Regex)
        } else {
            fixed()
        };
        Self {
            text: text.to_owned(),
            matcher,
        }
    }

    /// A regular expression in the syntax of the `regex` crate (Perl-like, no look-around
    /// or back-references, linear time in the text).
    ///
    /// # Errors
    /// [`PatternError`] with the parser's explanation.
    pub fn regex(text: &str, case: Case) -> Result<Self, PatternError> {
        let re = build(text, is_insensitive(text, case)).map_err(PatternError)?;
        Ok(Self {
            text: text.to_owned(),
            matcher: Matcher::Regex(re),
        })
    }

    /// The pattern as given.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True for [`Pattern::any`].
    #[must_use]
    pub fn is_any(&self) -> bool {
        matches!(self.matcher, Matcher::Any)
    }

    /// Does `text` contain a match? O(len of text).
    #[must_use]
    pub fn is_match(&self, text: &str) -> bool {
        match &self.matcher {
            Matcher::Any => true,
            Matcher::Fixed(finder) => finder.find(text.as_bytes()).is_some(),
            Matcher::Regex(re) => re.is_match(text),
            Matcher::Ascii(re) => re.is_match(text.as_bytes()),
        }
    }

    /// Byte ranges of the non-overlapping matches in `text`, in order (for highlighting).
    /// Empty for [`Pattern::any`].
    #[must_use]
    pub fn matches(&self, text: &str) -> Vec<Range<usize>> {
        match &self.matcher {
            Matcher::Any => Vec::new(),
            Matcher::Fixed(finder) => {
                let len = finder.needle().len();
                finder
                    .find_iter(text.as_bytes())
                    .map(|at| at..at + len)
                    .collect()
            }
            Matcher::Regex(re) => re
                .find_iter(text)
                .map(|m| m.range())
                .filter(|r| !r.is_empty())
                .collect(),
            // An ASCII literal matches whole characters: its ranges are on char boundaries.
            Matcher::Ascii(re) => re
                .find_iter(text.as_bytes())
                .map(|m| m.range())
                .filter(|r| !r.is_empty())
                .collect(),
        }
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.matcher {
            Matcher::Any => "any",
            Matcher::Fixed(_) => "fixed",
            Matcher::Regex(_) => "regex",
            Matcher::Ascii(_) => "fixed, ASCII case folded",
        };
        write!(f, "Pattern::{kind}({:?})", self.text)
    }
}

fn is_insensitive(text: &str, case: Case) -> bool {
    match case {
        Case::Sensitive => false,
        Case::Insensitive => true,
        Case::Smart => !text.chars().any(char::is_uppercase),
    }
}

fn build(text: &str, insensitive: bool) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(text)
        .case_insensitive(insensitive)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_strings_match_literally_and_regexes_as_regexes() {
        let fixed = Pattern::fixed("a.c", Case::Sensitive);
        assert!(fixed.is_match(r#"{"t":"a.c"}"#));
        assert!(!fixed.is_match(r#"{"t":"abc"}"#));
        let re = Pattern::regex("a.c", Case::Sensitive).unwrap();
        assert!(re.is_match(r#"{"t":"abc"}"#));
        assert_eq!(fixed.matches("a.c a.c"), vec![0..3, 4..7]);
    }

    #[test]
    fn case_insensitivity_and_smart_case() {
        assert!(Pattern::fixed("error", Case::Insensitive).is_match("ERROR"));
        assert!(!Pattern::fixed("error", Case::Sensitive).is_match("ERROR"));
        assert!(Pattern::fixed("error", Case::Smart).is_match("Error"));
        assert!(!Pattern::fixed("Error", Case::Smart).is_match("error"));
        assert!(Pattern::fixed("émile", Case::Insensitive).is_match("ÉMILE"));
        let ascii = Pattern::fixed("Pool::Builder", Case::Insensitive);
        assert!(ascii.is_match("let p = pool::builder()"));
        assert_eq!(ascii.matches("é POOL::BUILDER"), vec![3..16]);
        // Special characters of a fixed string stay literal when case is folded.
        let p = Pattern::fixed("(a+", Case::Insensitive);
        assert!(p.is_match("x(A+y"));
        assert!(!p.is_match("aaa"));
    }

    #[test]
    fn a_bad_regex_explains_itself() {
        let e = Pattern::regex("(unclosed", Case::Sensitive)
            .unwrap_err()
            .to_string();
        assert!(e.contains("regular expression"), "{e}");
        assert!(e.contains("unclosed"), "{e}");
        assert!(Pattern::regex("x{1000}{1000}{1000}", Case::Sensitive).is_err());
    }

    #[test]
    fn the_empty_pattern_matches_everything() {
        assert!(Pattern::fixed("", Case::Sensitive).is_any());
        assert!(Pattern::any().is_match("{}"));
        assert!(Pattern::any().matches("{}").is_empty());
    }
}
