//! What the generator draws names and values from besides plain random
//! text: the strings a module carries in its data segments (the header
//! names and values its code compares against, as AFL's and libFuzzer's
//! dictionaries do) and every key and string of the filters' configuration.

use std::collections::BTreeSet;

use serde_json::Value;
use wasmparser::{DataKind, Operator, Parser, Payload};

/// Strings to build requests from, split into header-name-like tokens and
/// everything else.
#[derive(Debug, Default, Clone)]
pub(crate) struct Dictionary {
    /// Lower-case tokens that may be header names (`x-api-key`).
    pub(crate) names: Vec<String>,
    /// Other strings: values, paths, JSON keys.
    pub(crate) values: Vec<String>,
}

/// At most this many strings of each kind, so that a large module's text
/// does not drown the configuration's.
const CAP: usize = 4000;

impl Dictionary {
    /// Adds the strings `module` carries: the text its code passes as a
    /// pointer and a length (`i32.const ptr; i32.const len`, how Rust and
    /// most languages hand a string literal to a host call; Rust packs its
    /// literals back to back, so they are found only this way), and the
    /// printable runs of 3 to 80 bytes between other bytes in its data
    /// segments (C-style strings).
    pub(crate) fn add_module(&mut self, module: &[u8]) {
        let mut segments: Vec<(u32, &[u8])> = Vec::new();
        // The data section follows the code: pairs first, text after.
        let mut pairs = BTreeSet::new();
        let mut found = BTreeSet::new();
        for payload in Parser::new(0).parse_all(module) {
            match payload {
                Ok(Payload::DataSection(reader)) => {
                    for data in reader.into_iter().flatten() {
                        for run in data
                            .data
                            .split(|b| !(0x20..0x7f).contains(b))
                            .filter(|r| (3..=80).contains(&r.len()))
                        {
                            if let Ok(text) = std::str::from_utf8(run) {
                                found.insert(text.to_owned());
                            }
                        }
                        if let DataKind::Active { offset_expr, .. } = data.kind
                            && let Some(Ok(Operator::I32Const { value })) =
                                offset_expr.get_operators_reader().into_iter().next()
                        {
                            segments.push((value as u32, data.data));
                        }
                    }
                }
                Ok(Payload::CodeSectionEntry(body)) => {
                    let Ok(reader) = body.get_operators_reader() else {
                        continue;
                    };
                    let mut previous = None;
                    for op in reader.into_iter().flatten() {
                        if let Operator::I32Const { value } = op {
                            if let Some(pointer) = previous {
                                pairs.insert((pointer, value));
                            }
                            previous = Some(value);
                        } else {
                            previous = None;
                        }
                    }
                }
                _ => {}
            }
        }
        found.extend(
            pairs
                .into_iter()
                .filter_map(|(pointer, len)| literal(&segments, pointer, len)),
        );
        for text in found {
            self.add(&text);
        }
    }

    /// Adds every key and string of a configuration.
    pub(crate) fn add_json(&mut self, value: &Value) {
        match value {
            Value::String(s) => self.add(s),
            Value::Array(items) => items.iter().for_each(|v| self.add_json(v)),
            Value::Object(map) => {
                for (key, v) in map {
                    self.add(key);
                    self.add_json(v);
                }
            }
            _ => {}
        }
    }

    fn add(&mut self, text: &str) {
        if text.is_empty() || text.len() > 200 {
            return;
        }
        let name = text.len() >= 2
            && text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        let list = if name {
            &mut self.names
        } else {
            &mut self.values
        };
        if list.len() < CAP && !list.iter().any(|t| t == text) {
            list.push(text.to_owned());
        }
    }
}

/// The printable text at `pointer` of `len` bytes in a data segment, if
/// there is one (a string literal's pointer and length).
fn literal(segments: &[(u32, &[u8])], pointer: i32, len: i32) -> Option<String> {
    let (pointer, len) = (u32::try_from(pointer).ok()?, usize::try_from(len).ok()?);
    if !(2..=200).contains(&len) {
        return None;
    }
    segments.iter().find_map(|(start, data)| {
        let from = usize::try_from(pointer.checked_sub(*start)?).ok()?;
        let bytes = data.get(from..from.checked_add(len)?)?;
        bytes
            .iter()
            .all(|b| (0x20..0x7f).contains(b))
            .then(|| String::from_utf8_lossy(bytes).into_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_like_tokens_and_other_strings_are_told_apart() {
        let mut d = Dictionary::default();
        d.add_json(&serde_json::json!({"header": "x-api-key", "path": "/v1/orders", "n": 3}));
        assert_eq!(d.names, ["header", "x-api-key", "path"]);
        // One letter is too short to be worth a header name.
        assert_eq!(d.values, ["n", "/v1/orders"]);
    }

    #[test]
    fn a_modules_data_strings_are_found() {
        let module = wat::parse_str(
            r#"(module (memory 1) (data (i32.const 8) "x-fixture-panic\00ok\00Bearer "))"#,
        )
        .unwrap();
        let mut d = Dictionary::default();
        d.add_module(&module);
        assert!(d.names.contains(&"x-fixture-panic".to_owned()), "{d:?}");
        assert!(d.values.contains(&"Bearer ".to_owned()), "{d:?}");
        assert!(!d.names.contains(&"ok".to_owned()), "too short");
    }

    #[test]
    fn literals_packed_back_to_back_are_found_by_their_pointer_and_length() {
        let module = wat::parse_str(
            r#"(module (memory 1) (data (i32.const 100) "x-onex-two")
                 (func (drop (i32.add (i32.const 100) (i32.const 5)))
                       (drop (i32.add (i32.const 105) (i32.const 5)))))"#,
        )
        .unwrap();
        let mut d = Dictionary::default();
        d.add_module(&module);
        assert!(d.names.contains(&"x-one".to_owned()), "{d:?}");
        assert!(d.names.contains(&"x-two".to_owned()), "{d:?}");
    }
}
