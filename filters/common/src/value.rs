//! JSON as the filters read it: serde_json parses, and this module's
//! `Deserialize` visitor builds the tree our typed decoders walk.
//!
//! What the visitor adds to serde_json:
//! - a member named twice in one object is an error, however it is spelled
//!   (`"exp"` and `"\u0065xp"` are one name once unescaped): RFC 8259 leaves
//!   duplicates undefined and serde_json keeps the last, while RFC 7515 §5.2
//!   lets a JWT parser refuse them, and two values for `exp` or for a config
//!   key are an attack or a mistake, never intent;
//! - an object keeps its members in document order, so problems are
//!   reported, and objects written back, in the order the user wrote them.
//!
//! serde_json gives the rest: RFC 8259 syntax, errors with line and column,
//! nesting capped at 128 levels (its recursion limit, so a hostile document
//! cannot exhaust the stack), and the compact writer behind `Display`.
//! Numbers are serde_json's: whole numbers are read as `u64`/`i64` and
//! written back as written; other numbers are `f64`, written back in their
//! shortest form (`1.50` becomes `1.5`); a number beyond `f64` is an error.

use std::collections::BTreeSet;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

/// A parsed JSON value.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    #[default]
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Array(Vec<Value>),
    Object(Map),
}

/// A JSON number (serde_json's: `u64`, `i64` or finite `f64`).
pub type Number = serde_json::Number;

/// Why a document is not JSON, and where (serde_json's error: line and
/// column).
pub type Error = serde_json::Error;

/// A JSON object: members in document order, names unique.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Map(Vec<(String, Value)>);

/// Parses one JSON document (surrounding whitespace allowed).
pub fn parse(bytes: &[u8]) -> Result<Value, Error> {
    serde_json::from_slice(bytes)
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
        Value::Number(n.into())
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

    pub fn get_mut(&mut self, name: &str) -> Option<&mut Value> {
        self.0.iter_mut().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// Removes a member; whether it was there.
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.0.len();
        self.0.retain(|(k, _)| k != name);
        self.0.len() != before
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

/// Compact JSON (serde_json's writer), members in order.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = serde_json::to_string(self).map_err(|_| fmt::Error)?;
        f.write_str(&text)
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => serializer.serialize_unit(),
            Value::Bool(b) => serializer.serialize_bool(*b),
            Value::Number(n) => n.serialize(serializer),
            Value::String(s) => serializer.serialize_str(s),
            Value::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Value::Object(map) => {
                let mut out = serializer.serialize_map(Some(map.len()))?;
                for (name, value) in map {
                    out.serialize_entry(name, value)?;
                }
                out.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Value, E> {
        Number::from_f64(n)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number out of range"))
    }

    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut members = Vec::new();
        // Names as unescaped by serde_json, so two spellings of one name
        // collide. A set, not a scan, so a hostile object with thousands
        // of members costs O(n log n).
        let mut seen = BTreeSet::new();
        while let Some(name) = access.next_key::<String>()? {
            if !seen.insert(name.clone()) {
                return Err(de::Error::custom(format_args!("duplicate member `{name}`")));
            }
            members.push((name, access.next_value()?));
        }
        Ok(Value::Object(Map(members)))
    }
}

/// The parts of a document a reader needs: the whole value here, or only
/// some of its members or items (a tree built from JSON Pointers, see
/// `crate::body::Selection`).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Keep {
    /// The whole value (everything below is then kept too).
    pub whole: bool,
    /// Object members kept, in part or whole, by name.
    pub members: Vec<(String, Keep)>,
    /// Array items kept, in part or whole, by index.
    pub items: Vec<(usize, Keep)>,
}

impl Keep {
    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        !self.whole && self.members.is_empty() && self.items.is_empty()
    }

    fn member(&self, name: &str) -> Option<&Keep> {
        self.members.iter().find(|(n, _)| n == name).map(|(_, k)| k)
    }

    fn item(&self, index: usize) -> Option<&Keep> {
        self.items.iter().find(|(i, _)| *i == index).map(|(_, k)| k)
    }
}

/// Parses one JSON document as [`parse`] does (the same syntax errors and
/// the same refusal of a member named twice, anywhere in it), but builds
/// only what `keep` names: a value not kept is validated and dropped as it
/// is read, so a reader of one field of a large body allocates for that
/// field alone. Within a kept object or array, members not kept are left
/// out and items not kept are `null`, so a JSON Pointer that `keep` names
/// resolves in the result as in the whole document.
pub fn parse_kept(bytes: &[u8], keep: &Keep) -> Result<Value, Error> {
    use serde::de::DeserializeSeed;
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = Kept(keep).deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

/// The value at a node of a [`Keep`] tree.
struct Kept<'k>(&'k Keep);

impl<'de> de::DeserializeSeed<'de> for Kept<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        if self.0.whole {
            deserializer.deserialize_any(ValueVisitor)
        } else {
            deserializer.deserialize_any(self)
        }
    }
}

impl<'de> Visitor<'de> for Kept<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    // A scalar where the kept path goes on holds nothing it names.
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Value, E> {
        SkipVisitor.visit_f64(n).map(|Skipped| Value::Null)
    }

    fn visit_str<E>(self, _: &str) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let last = self.0.items.iter().map(|(i, _)| *i).max();
        let mut items = Vec::new();
        loop {
            let i = items.len();
            let kept = last.filter(|last| i <= *last).map(|_| self.0.item(i));
            match kept {
                Some(Some(keep)) => match seq.next_element_seed(Kept(keep))? {
                    Some(item) => items.push(item),
                    None => break,
                },
                Some(None) => match seq.next_element::<Skipped>()? {
                    Some(Skipped) => items.push(Value::Null),
                    None => break,
                },
                None => {
                    while seq.next_element::<Skipped>()?.is_some() {}
                    break;
                }
            }
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut members = Vec::new();
        let mut names = Vec::new();
        while let Some(Name(name)) = access.next_key()? {
            match self.0.member(&name) {
                Some(keep) => members.push((name.to_string(), access.next_value_seed(Kept(keep))?)),
                None => {
                    access.next_value::<Skipped>()?;
                }
            }
            names.push(name);
        }
        refuse_duplicates(names)?;
        Ok(Value::Object(Map(members)))
    }
}

/// A value read, checked as [`parse`] checks it, and dropped.
struct Skipped;

impl<'de> Deserialize<'de> for Skipped {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SkipVisitor)
    }
}

struct SkipVisitor;

impl<'de> Visitor<'de> for SkipVisitor {
    type Value = Skipped;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Skipped, E> {
        Ok(Skipped)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Skipped, E> {
        Ok(Skipped)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Skipped, E> {
        Ok(Skipped)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Skipped, E> {
        Ok(Skipped)
    }

    // As `parse`: a number beyond `f64` is an error.
    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Skipped, E> {
        Number::from_f64(n)
            .map(|_| Skipped)
            .ok_or_else(|| E::custom("number out of range"))
    }

    fn visit_str<E>(self, _: &str) -> Result<Skipped, E> {
        Ok(Skipped)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Skipped, A::Error> {
        while seq.next_element::<Skipped>()?.is_some() {}
        Ok(Skipped)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Skipped, A::Error> {
        let mut names = Vec::new();
        while let Some(Name(name)) = access.next_key()? {
            access.next_value::<Skipped>()?;
            names.push(name);
        }
        refuse_duplicates(names)?;
        Ok(Skipped)
    }
}

/// A member name, borrowed from the document unless it had escapes.
struct Name<'de>(std::borrow::Cow<'de, str>);

impl<'de> Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(NameVisitor)
    }
}

struct NameVisitor;

impl<'de> Visitor<'de> for NameVisitor {
    type Value = Name<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Name<'de>, E> {
        Ok(Name(std::borrow::Cow::Borrowed(s)))
    }

    fn visit_str<E>(self, s: &str) -> Result<Name<'de>, E> {
        Ok(Name(std::borrow::Cow::Owned(s.to_owned())))
    }
}

/// An object's names (unescaped) must differ: sorted, so a hostile object
/// of thousands of members costs O(n log n). Checked once the object is
/// read, on names borrowed from the body: the hot path allocates no set.
/// ([`parse`] checks each name as it comes instead, so a configuration's
/// error points at the second name.)
fn refuse_duplicates<E: de::Error>(mut names: Vec<std::borrow::Cow<'_, str>>) -> Result<(), E> {
    names.sort_unstable();
    let twice = names.windows(2).find_map(|pair| match pair {
        [a, b] if a == b => Some(a),
        _ => None,
    });
    match twice {
        Some(name) => Err(E::custom(format_args!("duplicate member `{name}`"))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_named_twice_is_refused_however_it_is_spelled() {
        for doc in [
            r#"{"exp": 1, "exp": 2}"#,
            r#"{"exp": 1, "\u0065xp": 2}"#,
            r#"{"a": {"b": 1, "b": 1}}"#,
            r#"[{"x": null, "x": null}]"#,
        ] {
            let err = parse(doc.as_bytes()).unwrap_err().to_string();
            assert!(err.starts_with("duplicate member `"), "{doc}: {err}");
            assert!(err.contains(" at line 1 column "), "{doc}: {err}");
        }
        let err = parse(br#"{"exp": 1, "\u0065xp": 2}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "duplicate member `exp` at line 1 column 21"
        );
    }

    #[test]
    fn members_keep_document_order() {
        let v = parse(br#"{"z": 1, "a": [true, null, "s"], "m": {"y": -2, "b": 1.5}}"#).unwrap();
        let names: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(names, ["z", "a", "m"]);
        assert_eq!(
            v.to_string(),
            r#"{"z":1,"a":[true,null,"s"],"m":{"y":-2,"b":1.5}}"#
        );
    }

    #[test]
    fn nesting_is_capped() {
        let deep = "[".repeat(129) + &"]".repeat(129);
        let err = parse(deep.as_bytes()).unwrap_err().to_string();
        assert!(err.starts_with("recursion limit exceeded"), "{err}");
        let fine = "[".repeat(127) + &"]".repeat(127);
        assert!(parse(fine.as_bytes()).is_ok());
    }

    #[test]
    fn numbers_read_as_serde_json_reads_them() {
        let v = parse(br#"[0, -7, 18446744073709551615, 1.5e3, 1e400]"#);
        assert!(
            v.unwrap_err()
                .to_string()
                .starts_with("number out of range")
        );
        let v = parse(br#"[0, -7, 18446744073709551615, 1.5e3]"#).unwrap();
        let items = v.as_array().unwrap();
        assert_eq!(items[0].as_u64(), Some(0));
        assert_eq!(items[1].as_number().unwrap().as_i64(), Some(-7));
        assert_eq!(items[2].as_u64(), Some(u64::MAX));
        assert_eq!(items[3].as_number().unwrap().as_f64(), Some(1500.0));
        assert_eq!(v.to_string(), "[0,-7,18446744073709551615,1500.0]");
    }

    #[test]
    fn errors_name_line_and_column() {
        let err = parse(b"{\n  \"a\": 1,\n}").unwrap_err().to_string();
        assert_eq!(err, "trailing comma at line 3 column 1");
        let err = parse(b"{} x").unwrap_err().to_string();
        assert_eq!(err, "trailing characters at line 1 column 4");
    }
}
