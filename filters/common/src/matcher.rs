//! String matchers (Envoy's `StringMatcher` plus presence and lists) and
//! host patterns. Regexes compile once, at configure time.

use std::borrow::Cow;

use crate::value::Value;

use crate::config::{Fields, Problems};
use crate::pattern::Regex;

/// The members of a matcher object: exactly one test (`exact`, `prefix`,
/// `suffix`, `contains`, `regex`, `one_of`, `present: true`,
/// `absent: true`), plus `ignore_case` and `invert`; in `headers` and
/// `query` lists, `name` says which header or parameter.
const MATCHER_FIELDS: &[&str] = &[
    "name",
    "exact",
    "prefix",
    "suffix",
    "contains",
    "regex",
    "one_of",
    "present",
    "absent",
    "ignore_case",
    "invert",
];

const TESTS: &str =
    "`exact`, `prefix`, `suffix`, `contains`, `regex`, `one_of`, `present`, `absent`";

#[derive(Debug)]
enum Test {
    Exact(Vec<u8>),
    Prefix(Vec<u8>),
    Suffix(Vec<u8>),
    Contains(Vec<u8>),
    Regex(Regex),
    OneOf(Vec<Vec<u8>>),
    Present,
    Absent,
}

/// A compiled [`MatchSpec`].
#[derive(Debug)]
pub struct StringMatcher {
    test: Test,
    ignore_case: bool,
    invert: bool,
}

/// Whether a matcher object must or may not carry `name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Named {
    Required,
    Forbidden,
}

impl StringMatcher {
    /// Decodes a matcher object, reporting every problem under `at`;
    /// returns the `name` (empty when `named` is `Forbidden`) and the
    /// matcher.
    pub fn decode(
        value: &Value,
        at: &str,
        named: Named,
        problems: &mut Problems,
    ) -> Option<(String, Self)> {
        let f = Fields::new(value, at, MATCHER_FIELDS, problems)?;
        let name = match named {
            Named::Required => f.required_string("name", problems),
            Named::Forbidden => {
                if f.value("name").is_some() {
                    problems.push(
                        &f.at("name"),
                        "`name` is only used in `headers` and `query` matchers",
                    );
                }
                None
            }
        };
        let ignore_case = f.flag("ignore_case", problems);
        let invert = f.flag("invert", problems);
        let fold = |s: &str| {
            if ignore_case {
                s.to_ascii_lowercase().into_bytes()
            } else {
                s.as_bytes().to_vec()
            }
        };
        let mut tests = Vec::new();
        let mut ok = true;
        for (key, make) in [
            ("exact", Test::Exact as fn(Vec<u8>) -> Test),
            ("prefix", Test::Prefix),
            ("suffix", Test::Suffix),
            ("contains", Test::Contains),
        ] {
            if let Some(s) = f.string(key, problems) {
                tests.push(make(fold(s)));
            }
        }
        if let Some(s) = f.string("regex", problems) {
            let pattern = if ignore_case {
                format!("(?i){s}")
            } else {
                s.to_owned()
            };
            match Regex::new(&pattern) {
                Ok(re) => tests.push(Test::Regex(re)),
                Err(e) => {
                    problems.push(&f.at("regex"), e);
                    ok = false;
                }
            }
        }
        if f.value("one_of").is_some() {
            let list = f.strings("one_of", problems);
            if list.is_empty() {
                problems.push(&f.at("one_of"), "an empty list matches nothing");
            }
            tests.push(Test::OneOf(list.into_iter().map(fold).collect()));
        }
        for (key, test) in [("present", Test::Present), ("absent", Test::Absent)] {
            match f.bool(key, problems) {
                Some(true) => tests.push(test),
                Some(false) => problems.push(
                    &f.at(key),
                    format!("write `{key}: true` or leave it out (use `invert` to negate)"),
                ),
                None => {}
            }
        }
        let mut tests = tests.into_iter();
        let test = match (tests.next(), tests.next()) {
            (Some(test), None) => test,
            (None, _) => {
                if ok {
                    problems.push(at, format!("a matcher needs one of {TESTS}"));
                }
                return None;
            }
            (Some(_), Some(_)) => {
                problems.push(at, format!("a matcher takes exactly one of {TESTS}"));
                return None;
            }
        };
        let name = name.unwrap_or_default().to_owned();
        Some((
            name,
            Self {
                test,
                ignore_case,
                invert,
            },
        ))
    }

    /// Whether `value` (`None`: absent) matches. Absent values match only
    /// `absent` (or an inverted test).
    pub fn matches(&self, value: Option<&[u8]>) -> bool {
        self.test(value) != self.invert
    }

    fn test(&self, value: Option<&[u8]>) -> bool {
        let Some(value) = value else {
            return matches!(self.test, Test::Absent);
        };
        let value: Cow<'_, [u8]> = if self.ignore_case && !matches!(self.test, Test::Regex(_)) {
            Cow::Owned(value.to_ascii_lowercase())
        } else {
            Cow::Borrowed(value)
        };
        match &self.test {
            Test::Exact(s) => *value == **s,
            Test::Prefix(s) => value.starts_with(s),
            Test::Suffix(s) => value.ends_with(s),
            Test::Contains(s) => s.is_empty() || value.windows(s.len()).any(|w| w == s.as_slice()),
            Test::Regex(re) => re.is_match(&value),
            Test::OneOf(list) => list.iter().any(|s| *value == **s),
            Test::Present => true,
            Test::Absent => false,
        }
    }
}

/// A host pattern as in Envoy's virtual-host `domains`: `*.example.com`
/// (suffix), `api.*` (prefix), `*` or exact; compared case-insensitively
/// with the host without its port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Exact(Vec<u8>),
    Suffix(Vec<u8>),
    Prefix(Vec<u8>),
}

impl HostPattern {
    pub fn decode(text: &str, at: &str, problems: &mut Problems) -> Option<Self> {
        let h = text.to_ascii_lowercase();
        let stars = h.matches('*').count();
        if h.is_empty() || stars > 1 || (stars == 1 && !h.starts_with('*') && !h.ends_with('*')) {
            problems.push(
                at,
                format!("`{h}`: write a host as `*.example.com`, `api.*` or exactly"),
            );
            return None;
        }
        Some(if let Some(s) = h.strip_prefix('*') {
            Self::Suffix(s.as_bytes().to_vec())
        } else if let Some(p) = h.strip_suffix('*') {
            Self::Prefix(p.as_bytes().to_vec())
        } else {
            Self::Exact(h.into_bytes())
        })
    }

    pub fn matches(&self, host: &[u8]) -> bool {
        let fold = |a: &[u8], b: &[u8]| a.eq_ignore_ascii_case(b);
        match self {
            Self::Exact(e) => fold(host, e),
            Self::Suffix(s) => host
                .len()
                .checked_sub(s.len())
                .and_then(|i| host.get(i..))
                .is_some_and(|tail| fold(tail, s)),
            Self::Prefix(p) => host.get(..p.len()).is_some_and(|head| fold(head, p)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(json: &str) -> Result<StringMatcher, Problems> {
        let value: Value = crate::value::parse(json.as_bytes()).unwrap();
        let mut p = Problems::default();
        let m = StringMatcher::decode(&value, "/m", Named::Forbidden, &mut p);
        p.into_result(()).map(|()| m.unwrap().1)
    }

    #[test]
    fn every_kind_of_test_matches_as_documented() {
        let cases: &[(&str, Option<&str>, bool)] = &[
            (r#"{"exact": "abc"}"#, Some("abc"), true),
            (r#"{"exact": "abc"}"#, Some("ABC"), false),
            (
                r#"{"exact": "abc", "ignore_case": true}"#,
                Some("ABC"),
                true,
            ),
            (r#"{"prefix": "/api"}"#, Some("/api/x"), true),
            (r#"{"suffix": ".js"}"#, Some("/a.js"), true),
            (r#"{"contains": "mid"}"#, Some("amidb"), true),
            (r#"{"contains": "mid"}"#, Some("none"), false),
            (r#"{"regex": "^v[0-9]+$"}"#, Some("v12"), true),
            (
                r#"{"regex": "^v[0-9]+$", "ignore_case": true}"#,
                Some("V1"),
                true,
            ),
            (r#"{"one_of": ["GET", "HEAD"]}"#, Some("HEAD"), true),
            (r#"{"one_of": ["GET", "HEAD"]}"#, Some("POST"), false),
            (r#"{"present": true}"#, Some(""), true),
            (r#"{"present": true}"#, None, false),
            (r#"{"absent": true}"#, None, true),
            (r#"{"absent": true}"#, Some("x"), false),
            (r#"{"exact": "x", "invert": true}"#, None, true),
            (r#"{"exact": "x", "invert": true}"#, Some("x"), false),
            (r#"{"prefix": "a"}"#, None, false),
        ];
        for (json, value, want) in cases {
            let m = matcher(json).unwrap();
            assert_eq!(
                m.matches(value.map(str::as_bytes)),
                *want,
                "{json} on {value:?}"
            );
        }
    }

    #[test]
    fn non_utf8_values_are_matched_without_failing() {
        let m = matcher(r#"{"regex": "a.b"}"#).unwrap();
        assert!(m.matches(Some(b"a\xffb")));
        assert!(
            matcher(r#"{"prefix": "a"}"#)
                .unwrap()
                .matches(Some(b"a\xff"))
        );
    }

    #[test]
    fn bad_matchers_are_reported_with_their_path() {
        let err = matcher(r#"{"regex": "("}"#).unwrap_err();
        assert_eq!(err.list()[0].path, "/m/regex");
        assert!(!err.list()[0].message.contains('\n'));
        assert_eq!(matcher("{}").unwrap_err().list()[0].path, "/m");
        assert!(
            matcher(r#"{"exact": "a", "prefix": "b"}"#)
                .unwrap_err()
                .to_string()
                .contains("exactly one")
        );
        assert_eq!(
            matcher(r#"{"present": false}"#).unwrap_err().list()[0].path,
            "/m/present"
        );
        assert_eq!(
            matcher(r#"{"name": "x", "present": true}"#)
                .unwrap_err()
                .list()[0]
                .path,
            "/m/name"
        );
    }
}
