//! JSON (RFC 8259): a parser into [`Value`] and a compact writer.
//!
//! Why our own and not serde_json: the filters read JSON at configure time
//! (plugin configurations, JWKS) and in JWT headers and claims, and only ever
//! as a tree. serde_json's generic deserializer, its BTreeMap and its number
//! formatting cost each module about 20 KB; this is a few KB.
//!
//! What differs from serde_json, on purpose:
//! - an object keeps its members in document order, and a member named twice
//!   is an error (RFC 8259 leaves duplicates undefined; RFC 7515 §5.2 lets a
//!   JWT parser refuse them, and two values for `exp` or a config key is
//!   an attack or a mistake, never intent);
//! - a number keeps its text: [`Number::as_u64`] and friends read it on
//!   demand and the writer writes it back as it was, so no float formatting
//!   is linked in; a number too large for `f64` is accepted, and reads as
//!   absent through [`Number::as_f64`].
//!
//! Nesting is limited to 128 levels, as serde_json does, so a hostile
//! document cannot exhaust the stack.

use std::fmt;

/// The deepest nesting of arrays and objects accepted.
const MAX_DEPTH: usize = 128;

/// A parsed JSON value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Value {
    #[default]
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Array(Vec<Value>),
    Object(Map),
}

/// A JSON number, kept as its text (valid RFC 8259 number syntax).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Number(String);

/// A JSON object: members in document order, names unique.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Map(Vec<(String, Value)>);

/// Why a document is not JSON, and where (1-based line and byte column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    message: String,
    line: usize,
    column: usize,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at line {} column {}",
            self.message, self.line, self.column
        )
    }
}

impl std::error::Error for Error {}

/// Parses one JSON document (surrounding whitespace allowed).
pub fn parse(bytes: &[u8]) -> Result<Value, Error> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| Parser::error_at(bytes, e.valid_up_to(), "invalid UTF-8"))?;
    let mut parser = Parser { text, pos: 0 };
    let value = parser.value(0)?;
    parser.skip_whitespace();
    if parser.pos < text.len() {
        return Err(parser.error("trailing characters"));
    }
    Ok(value)
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_number(&self) -> Option<&Number> {
        match self {
            Value::Number(n) => Some(n),
            _ => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        self.as_number()?.as_u64()
    }

    pub fn as_array(&self) -> Option<&Vec<Value>> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&Map> {
        match self {
            Value::Object(map) => Some(map),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// An object's member by name.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.as_object()?.get(name)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}

impl From<u64> for Value {
    fn from(n: u64) -> Self {
        Value::Number(Number(n.to_string()))
    }
}

impl Number {
    /// The value when it is written as a whole number that fits a `u64`.
    pub fn as_u64(&self) -> Option<u64> {
        self.integer_text()?.parse().ok()
    }

    /// The value when it is written as a whole number that fits an `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        self.integer_text()?.parse().ok()
    }

    /// The nearest `f64`, when finite.
    pub fn as_f64(&self) -> Option<f64> {
        self.0.parse::<f64>().ok().filter(|f| f.is_finite())
    }

    fn integer_text(&self) -> Option<&str> {
        let whole = !self.0.contains(['.', 'e', 'E']);
        whole.then_some(self.0.as_str())
    }
}

impl Map {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// Sets a member, replacing any value it had (in its place).
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<Value>) {
        let name = name.into();
        let value = value.into();
        match self.0.iter_mut().find(|(k, _)| *k == name) {
            Some((_, slot)) => *slot = value,
            None => self.0.push((name, value)),
        }
    }

    /// Members in document order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Member<'_>> {
        self.into_iter()
    }

    pub fn keys(&self) -> impl ExactSizeIterator<Item = &String> {
        self.0.iter().map(|(k, _)| k)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

type Member<'a> = (&'a String, &'a Value);

impl<'a> IntoIterator for &'a Map {
    type Item = Member<'a>;
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (String, Value)>,
        fn(&'a (String, Value)) -> Member<'a>,
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

/// Compact JSON, members in order, numbers as written.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => f.write_str(if *b { "true" } else { "false" }),
            Value::Number(n) => f.write_str(&n.0),
            Value::String(s) => write_string(f, s),
            Value::Array(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    item.fmt(f)?;
                }
                f.write_str("]")
            }
            Value::Object(map) => {
                f.write_str("{")?;
                for (i, (name, value)) in map.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write_string(f, name)?;
                    f.write_str(":")?;
                    value.fmt(f)?;
                }
                f.write_str("}")
            }
        }
    }
}

/// A JSON string literal: `"` and `\` escaped, control characters as the
/// short escapes or `\u00XX`, everything else (non-ASCII too) as is.
fn write_string(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("\"")?;
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let short = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        f.write_str(s.get(start..i).unwrap_or_default())?;
        if short.is_empty() {
            write!(f, "\\u{:04x}", b)?;
        } else {
            f.write_str(short)?;
        }
        start = i + 1;
    }
    f.write_str(s.get(start..).unwrap_or_default())?;
    f.write_str("\"")
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn error_at(bytes: &[u8], pos: usize, message: impl Into<String>) -> Error {
        let before = bytes.get(..pos).unwrap_or(bytes);
        let line_start = before
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        Error {
            message: message.into(),
            line: before.iter().filter(|b| **b == b'\n').count() + 1,
            column: pos - line_start + 1,
        }
    }

    fn error(&self, message: impl Into<String>) -> Error {
        Self::error_at(self.text.as_bytes(), self.pos, message)
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    /// Consumes `literal` (the rest of `true`, `false` or `null`).
    fn literal(&mut self, literal: &str, value: Value) -> Result<Value, Error> {
        if self
            .text
            .get(self.pos..)
            .is_some_and(|rest| rest.starts_with(literal))
        {
            self.pos += literal.len();
            Ok(value)
        } else {
            Err(self.error("expected value"))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, Error> {
        self.skip_whitespace();
        match self.peek() {
            None => Err(self.error("EOF while parsing a value")),
            Some(b'n') => self.literal("null", Value::Null),
            Some(b't') => self.literal("true", Value::Bool(true)),
            Some(b'f') => self.literal("false", Value::Bool(false)),
            Some(b'"') => self.string().map(Value::String),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b'[') => self.array(depth + 1),
            Some(b'{') => self.object(depth + 1),
            Some(_) => Err(self.error("expected value")),
        }
    }

    fn enter(&self, depth: usize) -> Result<(), Error> {
        if depth > MAX_DEPTH {
            Err(self.error("recursion limit exceeded"))
        } else {
            Ok(())
        }
    }

    /// After an element: `,` (then another element, not `close`) or `close`.
    /// True when the sequence goes on. (Messages are whole static strings:
    /// each `format!` costs a module bytes.)
    fn next_or_close(&mut self, close: u8) -> Result<bool, Error> {
        let object = close == b'}';
        self.skip_whitespace();
        match self.peek() {
            Some(b',') => {
                self.pos += 1;
                self.skip_whitespace();
                if self.peek() == Some(close) {
                    return Err(self.error("trailing comma"));
                }
                Ok(true)
            }
            Some(b) if b == close => {
                self.pos += 1;
                Ok(false)
            }
            None if object => Err(self.error("EOF while parsing an object")),
            None => Err(self.error("EOF while parsing a list")),
            Some(_) if object => Err(self.error("expected `,` or `}`")),
            Some(_) => Err(self.error("expected `,` or `]`")),
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, Error> {
        self.enter(depth)?;
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Value::Array(items));
        }
        loop {
            items.push(self.value(depth)?);
            if !self.next_or_close(b']')? {
                return Ok(Value::Array(items));
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, Error> {
        self.enter(depth)?;
        self.pos += 1;
        let mut members: Vec<(String, Value)> = Vec::new();
        let mut name_positions = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Value::Object(Map(members)));
        }
        loop {
            self.skip_whitespace();
            let name_at = self.pos;
            let name = match self.peek() {
                Some(b'"') => self.string()?,
                None => return Err(self.error("EOF while parsing an object")),
                Some(_) => return Err(self.error("key must be a string")),
            };
            self.skip_whitespace();
            match self.peek() {
                Some(b':') => self.pos += 1,
                None => return Err(self.error("EOF while parsing an object")),
                Some(_) => return Err(self.error("expected `:`")),
            }
            let value = self.value(depth)?;
            members.push((name, value));
            name_positions.push(name_at);
            if !self.next_or_close(b'}')? {
                self.check_unique(&members, &name_positions)?;
                return Ok(Value::Object(Map(members)));
            }
        }
    }

    /// Refuses an object that names a member twice. Sorting the names keeps
    /// this O(n log n) for a hostile object with thousands of members.
    fn check_unique(
        &mut self,
        members: &[(String, Value)],
        positions: &[usize],
    ) -> Result<(), Error> {
        if members.len() < 2 {
            return Ok(());
        }
        let mut names: Vec<(&str, usize)> = members
            .iter()
            .zip(positions)
            .map(|((name, _), at)| (name.as_str(), *at))
            .collect();
        crate::sort::heapsort(&mut names);
        for pair in names.windows(2) {
            if let [(first, _), (second, at)] = pair
                && first == second
            {
                self.pos = *at;
                return Err(self.error(format!("duplicate member `{second}`")));
            }
        }
        Ok(())
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, kept as text.
    fn number(&mut self) -> Result<Value, Error> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.error("invalid number")),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.required_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            self.required_digits()?;
        }
        let text = self.text.get(start..self.pos).unwrap_or_default();
        Ok(Value::Number(Number(text.to_owned())))
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
    }

    fn required_digits(&mut self) -> Result<(), Error> {
        if !matches!(self.peek(), Some(b'0'..=b'9')) {
            return Err(self.error("invalid number"));
        }
        self.digits();
        Ok(())
    }

    /// A string literal (at its opening quote), escapes decoded.
    fn string(&mut self) -> Result<String, Error> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            let run_start = self.pos;
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            // The run ends before an ASCII byte, so it is whole characters.
            out.push_str(self.text.get(run_start..self.pos).unwrap_or_default());
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let c = self.escape()?;
                    out.push(c);
                }
                Some(_) => {
                    return Err(self.error(
                        "control character (\\u0000-\\u001F) found while parsing a string",
                    ));
                }
                None => return Err(self.error("EOF while parsing a string")),
            }
        }
    }

    /// The character an escape (after its `\`) stands for.
    fn escape(&mut self) -> Result<char, Error> {
        let c = match self.peek() {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                self.pos += 1;
                return self.unicode_escape();
            }
            None => return Err(self.error("EOF while parsing a string")),
            Some(_) => return Err(self.error("invalid escape")),
        };
        self.pos += 1;
        Ok(c)
    }

    /// `XXXX` after `\u`, and the low half after a high surrogate.
    fn unicode_escape(&mut self) -> Result<char, Error> {
        let first = self.hex4()?;
        let code = match first {
            0xd800..=0xdbff => {
                if self
                    .text
                    .get(self.pos..)
                    .is_some_and(|r| r.starts_with("\\u"))
                {
                    self.pos += 2;
                } else {
                    return Err(self.error("lone leading surrogate in hex escape"));
                }
                let second = self.hex4()?;
                if !(0xdc00..=0xdfff).contains(&second) {
                    return Err(self.error("lone leading surrogate in hex escape"));
                }
                0x10000 + ((first - 0xd800) << 10) + (second - 0xdc00)
            }
            0xdc00..=0xdfff => return Err(self.error("lone trailing surrogate in hex escape")),
            _ => first,
        };
        char::from_u32(code).ok_or_else(|| self.error("invalid \\u escape"))
    }

    fn hex4(&mut self) -> Result<u32, Error> {
        let mut code = 0;
        for _ in 0..4 {
            let digit = self
                .peek()
                .and_then(|b| char::from(b).to_digit(16))
                .ok_or_else(|| self.error("invalid \\u escape"))?;
            code = code * 16 + digit;
            self.pos += 1;
        }
        Ok(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Value {
        parse(text.as_bytes()).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn err(text: &str) -> String {
        parse(text.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn values_round_trip_compactly_in_document_order() {
        let text = r#" { "z": [1, -0.5e3, true, false, null], "a": {"b": "c\"\\\n\u0001é"} } "#;
        assert_eq!(
            ok(text).to_string(),
            r#"{"z":[1,-0.5e3,true,false,null],"a":{"b":"c\"\\\n\u0001é"}}"#
        );
    }

    #[test]
    fn numbers_read_as_whole_or_float() {
        let n = |t: &str| ok(t).as_number().cloned().unwrap();
        assert_eq!(n("42").as_u64(), Some(42));
        assert_eq!(n("-42").as_u64(), None);
        assert_eq!(n("-42").as_i64(), Some(-42));
        assert_eq!(n("4.0").as_u64(), None);
        assert_eq!(n("1e3").as_u64(), None);
        assert_eq!(n("1.5e3").as_f64(), Some(1500.0));
        assert_eq!(n("18446744073709551616").as_u64(), None);
        assert_eq!(n("1e400").as_f64(), None);
    }

    #[test]
    fn escapes_decode_including_surrogate_pairs() {
        assert_eq!(
            ok(r#""\ud83d\ude00\/\b\f\t""#).as_str(),
            Some("😀/\u{8}\u{c}\t")
        );
    }

    #[test]
    fn bad_documents_name_the_problem_and_where() {
        assert_eq!(err("{\"a\": 1,}"), "trailing comma at line 1 column 9");
        assert_eq!(
            err("{\"a\": 1}\n x"),
            "trailing characters at line 2 column 2"
        );
        assert_eq!(
            err("{\"a\": 1, \"a\": 2}"),
            "duplicate member `a` at line 1 column 10"
        );
        assert_eq!(err("[1 2]"), "expected `,` or `]` at line 1 column 4");
        assert_eq!(err("{1: 2}"), "key must be a string at line 1 column 2");
        assert_eq!(
            err("\"\\ud800\""),
            "lone leading surrogate in hex escape at line 1 column 8"
        );
        assert_eq!(
            err("\"\\udc00\""),
            "lone trailing surrogate in hex escape at line 1 column 8"
        );
        assert_eq!(err("01"), "trailing characters at line 1 column 2");
        assert_eq!(err("-"), "invalid number at line 1 column 2");
        assert_eq!(err("1."), "invalid number at line 1 column 3");
        assert_eq!(
            err("\"a\nb\""),
            "control character (\\u0000-\\u001F) found while parsing a string at line 1 column 3"
        );
        assert_eq!(err("tru"), "expected value at line 1 column 1");
        assert_eq!(err(""), "EOF while parsing a value at line 1 column 1");
        assert_eq!(err("[1,"), "EOF while parsing a value at line 1 column 4");
        assert!(
            parse(b"\"\xff\"")
                .unwrap_err()
                .to_string()
                .starts_with("invalid UTF-8")
        );
    }

    #[test]
    fn nesting_is_limited() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(parse(deep(128).as_bytes()).is_ok());
        assert!(err(&deep(129)).starts_with("recursion limit exceeded"));
        // Far past the limit is refused without exhausting the stack.
        assert!(parse(deep(100_000).as_bytes()).is_err());
    }
}
