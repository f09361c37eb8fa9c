//! The regexes of the filters' configurations (`regex` matchers, header
//! removals, `regex_rewrite`), through the `regex-lite` crate: its syntax and
//! meaning (ASCII Perl classes and case folding, leftmost-first matches) and
//! its Pike VM, so a match takes time linear in the input whatever the
//! pattern.
//!
//! What this adds to the crate:
//! - limits checked at configure time, so no configured pattern makes each
//!   request allocate or run long: [`SIZE_LIMIT`] on the compiled program
//!   (regex-lite's own estimate of its heap, which also bounds the search
//!   cache and the time per input byte) and [`NEST_LIMIT`] on nesting;
//! - matching header bytes: regex-lite matches `&str`, header values are
//!   bytes, so invalid UTF-8 is matched as U+FFFD (std's
//!   `String::from_utf8_lossy`, which borrows when the bytes are valid).

use std::borrow::Cow;
use std::fmt;

/// The largest compiled pattern, in regex-lite's bytes (10 MiB by default).
/// 256 KiB keeps every pattern a route or header rule needs (`\w{1000}` is
/// about 80 KiB) and refuses the ones whose search cache alone would be
/// megabytes per request, such as `(x{1000}){1000}`.
pub const SIZE_LIMIT: usize = 256 * 1024;

/// The deepest nesting of groups and repetitions.
pub const NEST_LIMIT: u32 = 64;

/// A compiled pattern.
#[derive(Clone)]
pub struct Regex(regex_lite::Regex);

impl fmt::Debug for Regex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Regex").field(&self.0.as_str()).finish()
    }
}

impl Regex {
    /// Compiles `pattern` within the limits; the error reads
    /// `invalid regex: <regex-lite's reason>`.
    pub fn new(pattern: &str) -> Result<Self, String> {
        regex_lite::RegexBuilder::new(pattern)
            .size_limit(SIZE_LIMIT)
            .nest_limit(NEST_LIMIT)
            .build()
            .map(Self)
            .map_err(|e| format!("invalid regex: {e}"))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The number of groups, the whole match (group 0) included.
    pub fn captures_len(&self) -> usize {
        self.0.captures_len()
    }

    /// Whether the pattern matches anywhere in `text`.
    pub fn is_match(&self, text: &[u8]) -> bool {
        self.0.is_match(&as_text(text))
    }

    /// The crate's regex, for searches that need its match positions.
    pub fn inner(&self) -> &regex_lite::Regex {
        &self.0
    }
}

/// `bytes` as regex-lite's input: borrowed when valid UTF-8, each invalid
/// sequence replaced by U+FFFD otherwise.
pub fn as_text(bytes: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_utf8_is_matched_as_the_replacement_character() {
        let re = Regex::new("^a\u{fffd}b$").unwrap();
        assert!(re.is_match(b"a\xffb"));
        assert!(!re.is_match(b"axb"));
    }

    #[test]
    fn patterns_past_the_limits_are_refused() {
        for pattern in [
            "(?:(?:(?:){1000}){1000}){1000}",
            "(x{1000}){1000}",
            "\\w{1000}{1000}",
        ] {
            let err = Regex::new(pattern).unwrap_err();
            assert!(err.starts_with("invalid regex: "), "{pattern}: {err}");
        }
        let deep = format!("{}a{}", "(".repeat(100), ")".repeat(100));
        assert!(Regex::new(&deep).is_err());
        assert!(Regex::new(r"\w{1000}").is_ok());
        assert!(Regex::new(r"^/api/v[0-9]+/(users|orders)/[^/]+$").is_ok());
    }
}
