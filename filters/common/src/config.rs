//! Plugin configuration: JSON parsed by [`crate::json`], then decoded into typed
//! Rust values by hand, with every problem reported by its JSON Pointer
//! (RFC 6901) path.
//!
//! Why not `#[derive(Deserialize)]`: serde stops at the first error, and its
//! generated visitors (plus a path-tracking wrapper) tripled a filter
//! module's size; filters ship under 150 KB. Decoding a parsed
//! [`Value`] with [`Fields`] reports every problem, rejects unknown
//! members, and costs a few bytes per field.

use std::fmt;

use crate::value::{Map, Value};

/// One problem: where (a JSON Pointer, `""` for the whole document) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

/// Every problem found in a configuration.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Problems(Vec<Problem>);

impl Problems {
    pub fn push(&mut self, path: &str, message: impl Into<String>) {
        self.0.push(Problem {
            path: path.to_owned(),
            message: message.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn list(&self) -> &[Problem] {
        &self.0
    }

    /// `Ok(value)` when nothing was found, else the problems.
    pub fn into_result<T>(self, value: T) -> Result<T, Problems> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

/// All problems on one line, each as `<path>: <message>`, the whole
/// document's path shown as `/`.
impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(f, "{n} problem{}: ", if n == 1 { "" } else { "s" })?;
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            let path = if p.path.is_empty() { "/" } else { &p.path };
            write!(f, "{path}: {}", p.message)?;
        }
        Ok(())
    }
}

/// Appends a member name or an index to a JSON Pointer, escaping `~` and `/`.
/// (`dyn`, not generic: one copy in a module for names and indexes alike.)
pub fn join(at: &str, member: &dyn fmt::Display) -> String {
    let member = member.to_string().replace('~', "~0").replace('/', "~1");
    format!("{at}/{member}")
}

/// Names for a message, each in backticks: `` `a`, `b`, `c` ``. (A loop, not
/// `join`: join's generic copy is 1 KB in a module.)
pub fn quoted_list(names: &[&str]) -> String {
    let mut out = String::new();
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push('`');
        out.push_str(name);
        out.push('`');
    }
    out
}

/// Parses a plugin configuration as JSON. An empty configuration is a
/// problem: a filter configured with nothing is almost always a mistake.
pub fn parse_json(bytes: &[u8]) -> Result<Value, Problems> {
    let mut problems = Problems::default();
    if bytes.iter().all(u8::is_ascii_whitespace) {
        problems.push(
            "",
            "the plugin configuration is empty; expected a JSON object",
        );
        return Err(problems);
    }
    crate::value::parse(bytes).map_err(|e| {
        problems.push("", format!("not valid JSON: {e}"));
        problems
    })
}

/// Parses a plugin configuration ([`parse_json`]) and decodes it with
/// `decode`, which reports every problem it finds: the decoded value, or
/// every problem.
pub fn decode_json<T>(
    bytes: &[u8],
    decode: impl FnOnce(&Value, &mut Problems) -> T,
) -> Result<T, Problems> {
    let value = parse_json(bytes)?;
    let mut problems = Problems::default();
    let decoded = decode(&value, &mut problems);
    problems.into_result(decoded)
}

/// What a JSON value is, for messages.
pub fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The members of a JSON object, read by name with type checks. Reading
/// never fails: a missing or ill-typed member is reported and read as
/// absent, so decoding goes on and finds every problem.
#[derive(Debug)]
pub struct Fields<'a> {
    map: &'a Map,
    at: String,
}

impl<'a> Fields<'a> {
    /// `value` as an object whose members are all in `known`.
    pub fn new(
        value: &'a Value,
        at: &str,
        known: &[&str],
        problems: &mut Problems,
    ) -> Option<Self> {
        let Value::Object(map) = value else {
            problems.push(at, format!("expected an object, found {}", kind(value)));
            return None;
        };
        for key in map.keys() {
            if !known.contains(&key.as_str()) {
                problems.push(
                    &join(at, &key),
                    format!(
                        "unknown field `{key}`; expected one of {}",
                        quoted_list(known)
                    ),
                );
            }
        }
        Some(Self {
            map,
            at: at.to_owned(),
        })
    }

    /// The JSON Pointer of a member.
    pub fn at(&self, key: &str) -> String {
        join(&self.at, &key)
    }

    pub fn value(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn typed<T>(
        &self,
        key: &str,
        what: &str,
        problems: &mut Problems,
        get: impl Fn(&'a Value) -> Option<T>,
    ) -> Option<T> {
        let value = self.value(key)?;
        let got = get(value);
        if got.is_none() {
            problems.push(
                &self.at(key),
                format!("expected {what}, found {}", kind(value)),
            );
        }
        got
    }

    pub fn string(&self, key: &str, problems: &mut Problems) -> Option<&'a str> {
        self.typed(key, "a string", problems, Value::as_str)
    }

    pub fn required_string(&self, key: &str, problems: &mut Problems) -> Option<&'a str> {
        if self.value(key).is_none() {
            problems.push(&self.at, format!("missing field `{key}`"));
            return None;
        }
        self.string(key, problems)
    }

    /// An optional boolean, `false` when absent.
    pub fn flag(&self, key: &str, problems: &mut Problems) -> bool {
        self.bool(key, problems).unwrap_or(false)
    }

    pub fn bool(&self, key: &str, problems: &mut Problems) -> Option<bool> {
        self.typed(key, "true or false", problems, Value::as_bool)
    }

    /// A whole number in `min..=max`.
    pub fn integer(&self, key: &str, min: u64, max: u64, problems: &mut Problems) -> Option<u64> {
        let n = self.typed(key, "a whole number", problems, Value::as_u64)?;
        if !(min..=max).contains(&n) {
            problems.push(
                &self.at(key),
                format!("{n} is out of range ({min} to {max})"),
            );
            return None;
        }
        Some(n)
    }

    /// A list (empty when absent).
    pub fn list(&self, key: &str, problems: &mut Problems) -> &'a [Value] {
        self.typed(key, "a list", problems, |v| v.as_array().map(Vec::as_slice))
            .unwrap_or_default()
    }

    /// A list of strings (empty when absent); bad elements are reported.
    pub fn strings(&self, key: &str, problems: &mut Problems) -> Vec<&'a str> {
        let at = self.at(key);
        let mut out = Vec::new();
        for (i, v) in self.list(key, problems).iter().enumerate() {
            match v.as_str() {
                Some(s) => out.push(s),
                None => problems.push(
                    &join(&at, &i),
                    format!("expected a string, found {}", kind(v)),
                ),
            }
        }
        out
    }

    /// A nested object whose members are all in `known`.
    pub fn object(&self, key: &str, known: &[&str], problems: &mut Problems) -> Option<Fields<'a>> {
        Fields::new(self.value(key)?, &self.at(key), known, problems)
    }
}

/// An externally tagged variant such as `{"set": {...}}`: the one member's
/// name (one of `variants`) and value.
pub fn tagged<'a>(
    value: &'a Value,
    at: &str,
    variants: &[&str],
    problems: &mut Problems,
) -> Option<(&'a str, &'a Value)> {
    let expected = || format!("one of {}", quoted_list(variants));
    match value {
        Value::Object(map) if map.len() == 1 => {
            let (key, inner) = map.iter().next()?;
            if variants.contains(&key.as_str()) {
                Some((key.as_str(), inner))
            } else {
                problems.push(
                    &join(at, &key),
                    format!("unknown operation `{key}`; expected {}", expected()),
                );
                None
            }
        }
        Value::Object(map) => {
            problems.push(
                at,
                format!(
                    "expected an object with exactly one member, {}; found {}",
                    expected(),
                    map.len()
                ),
            );
            None
        }
        other => {
            problems.push(
                at,
                format!(
                    "expected an object such as {{\"{}\": ...}}, found {}",
                    variants.first().copied().unwrap_or_default(),
                    kind(other)
                ),
            );
            None
        }
    }
}

/// A string that must be one of `options`.
pub fn one_of<'o>(
    value: &str,
    options: &[&'o str],
    at: &str,
    problems: &mut Problems,
) -> Option<&'o str> {
    let found = options.iter().find(|o| **o == value).copied();
    if found.is_none() {
        problems.push(
            at,
            format!(
                "unknown value `{value}`; expected one of {}",
                quoted_list(options)
            ),
        );
    }
    found
}

/// Checks a header name: lower-case token characters (RFC 9110 §5.6.2), as
/// Envoy stores names. Pseudo-headers (`:path`) are refused: they are not
/// header-operation targets.
pub fn check_header_name(name: &str, at: &str, problems: &mut Problems) {
    if name.is_empty() {
        problems.push(at, "a header name cannot be empty");
    } else if name.starts_with(':') {
        problems.push(
            at,
            format!("`{name}` is a pseudo-header; header operations cannot change it"),
        );
    } else if let Some(c) = name.chars().find(|c| !is_token_char(*c)) {
        problems.push(
            at,
            format!(
                "header name `{name}` contains `{c}` (U+{:04X}), which a header name cannot hold",
                u32::from(c)
            ),
        );
    } else if name.bytes().any(|b| b.is_ascii_uppercase()) {
        problems.push(
            at,
            format!(
                "header name `{name}` has upper-case letters; write it lower-case (`{}`), as HTTP/2 and Envoy do",
                name.to_ascii_lowercase()
            ),
        );
    }
}

fn is_token_char(c: char) -> bool {
    u8::try_from(c).is_ok_and(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Checks a literal header value: no CR, LF or NUL (RFC 9110 §5.5).
pub fn check_header_value(value: &str, at: &str, problems: &mut Problems) {
    if value.contains(['\r', '\n', '\0']) {
        problems.push(at, "a header value cannot contain CR, LF or NUL");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str) -> Value {
        crate::value::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn every_problem_is_reported_with_its_pointer() {
        let doc = json(
            r#"{"name": 3, "flag": "yes", "list": [1, "a"], "extra": true, "n": 700, "obj": []}"#,
        );
        let mut p = Problems::default();
        let f = Fields::new(
            &doc,
            "",
            &["name", "flag", "list", "n", "obj", "missing"],
            &mut p,
        )
        .unwrap();
        assert_eq!(f.string("name", &mut p), None);
        assert!(!f.flag("flag", &mut p));
        assert_eq!(f.strings("list", &mut p), vec!["a"]);
        assert_eq!(f.integer("n", 100, 599, &mut p), None);
        assert!(f.object("obj", &[], &mut p).is_none());
        assert_eq!(f.required_string("missing", &mut p), None);
        let paths: Vec<_> = p.list().iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            ["/extra", "/name", "/flag", "/list/0", "/n", "/obj", ""]
        );
        assert!(p.list()[0].message.contains("unknown field `extra`"), "{p}");
        assert!(
            p.to_string()
                .starts_with("7 problems: /extra: unknown field"),
            "{p}"
        );
    }

    #[test]
    fn tagged_values_name_their_variant() {
        let mut p = Problems::default();
        let v = json(r#"{"set": {"a": 1}}"#);
        assert_eq!(
            tagged(&v, "/op", &["set", "add"], &mut p).map(|(k, _)| k),
            Some("set")
        );
        assert!(tagged(&json(r#"{"sett": {}}"#), "/op", &["set"], &mut p).is_none());
        assert!(
            tagged(
                &json(r#"{"set": {}, "add": {}}"#),
                "/op",
                &["set", "add"],
                &mut p
            )
            .is_none()
        );
        assert!(tagged(&json(r#""set""#), "/op", &["set"], &mut p).is_none());
        let paths: Vec<_> = p.list().iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["/op/sett", "/op", "/op"]);
    }

    #[test]
    fn json_problems_and_empty_configurations() {
        let err = parse_json(b"{\"a\": 1,}").unwrap_err();
        assert!(
            err.to_string().starts_with("1 problem: /: not valid JSON"),
            "{err}"
        );
        assert!(parse_json(b"  ").unwrap_err().to_string().contains("empty"));
        assert!(parse_json(b"{}").is_ok());
    }

    #[test]
    fn pointers_escape_slash_and_tilde() {
        assert_eq!(join("/a", &"b/c~d"), "/a/b~1c~0d");
    }

    #[test]
    fn header_names_must_be_lower_case_tokens() {
        let mut p = Problems::default();
        for name in ["ok-name", "x_y.z"] {
            check_header_name(name, "/n", &mut p);
        }
        assert!(p.is_empty(), "{p}");
        for name in ["", ":path", "a b", "X-Up", "é"] {
            check_header_name(name, "/n", &mut p);
        }
        assert_eq!(p.list().len(), 5, "{p}");
        check_header_value("a\r\nb", "/v", &mut p);
        assert_eq!(p.list().len(), 6);
    }
}
