//! Our JSON parser against serde_json: random documents (random nesting,
//! strings with escapes and non-ASCII, numbers in every form) must parse to
//! the same tree in both, our compact writing must read back the same in
//! serde_json, and random byte edits of those documents must be accepted or
//! refused by both alike. The two documented differences are allowed and
//! checked: we refuse a member named twice, and we keep numbers too large
//! for `f64` (serde_json refuses them).

use filter_common::json::{self, Value};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

const DOCUMENTS: usize = 10_000;
const EDITS: usize = 20;

struct Gen(ChaCha8Rng);

impl Gen {
    fn below(&mut self, n: u32) -> u32 {
        self.0.next_u32() % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u32) as usize]
    }

    fn space(&mut self) -> &'static str {
        self.pick(&["", "", "", " ", "\n", "\t ", "\r\n  "])
    }

    fn value(&mut self, depth: u32) -> String {
        let kinds = if depth < 4 { 8 } else { 5 };
        match self.below(kinds) {
            0 => self.pick(&["null", "true", "false"]).to_owned(),
            1 | 2 => self.number(),
            3 | 4 => self.string(),
            5 => {
                let items: Vec<String> = (0..self.below(4))
                    .map(|_| format!("{}{}{}", self.space(), self.value(depth + 1), self.space()))
                    .collect();
                format!("[{}]", items.join(","))
            }
            _ => {
                let mut names = Vec::new();
                let members: Vec<String> = (0..self.below(4))
                    .filter_map(|_| {
                        let name = self.string();
                        // Unique names: serde_json keeps the last of two.
                        let decoded: String = serde_json::from_str(&name).unwrap();
                        if names.contains(&decoded) {
                            return None;
                        }
                        names.push(decoded);
                        Some(format!(
                            "{}{name}{}:{}{}",
                            self.space(),
                            self.space(),
                            self.space(),
                            self.value(depth + 1)
                        ))
                    })
                    .collect();
                format!("{{{}}}", members.join(","))
            }
        }
    }

    fn number(&mut self) -> String {
        let mut n = String::new();
        if self.below(3) == 0 {
            n.push('-');
        }
        match self.below(4) {
            0 => n.push('0'),
            1 => n.push_str(&(self.0.next_u64() >> self.below(64)).to_string()),
            _ => n.push_str(&(1 + self.below(999)).to_string()),
        }
        if self.below(3) == 0 {
            n.push('.');
            n.push_str(&self.below(100_000).to_string());
        }
        if self.below(4) == 0 {
            n.push_str(self.pick(&["e", "E", "e+", "e-", "E-"]));
            n.push_str(&self.below(300).to_string());
        }
        n
    }

    fn string(&mut self) -> String {
        let parts: Vec<&str> = (0..self.below(6))
            .map(|_| {
                self.pick(&[
                    "a",
                    "key",
                    " ",
                    "é",
                    "😀",
                    "\\\"",
                    "\\\\",
                    "\\/",
                    "\\n",
                    "\\t",
                    "\\b",
                    "\\f",
                    "\\r",
                    "\\u0041",
                    "\\u00e9",
                    "\\u0000",
                    "\\ud83d\\ude00",
                    "\\u2028",
                    "~",
                ])
            })
            .collect();
        format!("\"{}\"", parts.concat())
    }

    /// One random edit: delete, insert or replace a byte.
    fn edit(&mut self, text: &str) -> Vec<u8> {
        let mut bytes = text.as_bytes().to_vec();
        let at = self.below(bytes.len() as u32 + 1) as usize;
        let byte = *self
            .pick(&[
                "{", "}", "[", "]", ",", ":", "\"", "\\", "u", "0", "9", "-", "+", ".", "e", " ",
                "\n", "\u{1}", "n", "t", "\u{ff}",
            ])
            .as_bytes()
            .last()
            .unwrap();
        match self.below(3) {
            0 if at < bytes.len() => {
                bytes.remove(at);
            }
            1 if at < bytes.len() => bytes[at] = byte,
            _ => bytes.insert(at, byte),
        }
        bytes
    }
}

/// The same tree: same kinds, strings, members and number values.
fn same(ours: &Value, theirs: &serde_json::Value) -> bool {
    use serde_json::Value as J;
    match (ours, theirs) {
        (Value::Null, J::Null) => true,
        (Value::Bool(a), J::Bool(b)) => a == b,
        (Value::String(a), J::String(b)) => a == b,
        (Value::Number(a), J::Number(b)) => {
            let close = match (a.as_f64(), b.as_f64()) {
                (Some(x), Some(y)) => x == y || ((x - y) / y).abs() < 1e-15,
                _ => false,
            };
            // serde_json reads `-0` as the float -0.0; we read it as the
            // whole number 0 too.
            let zero = a.as_i64() == Some(0) && b.as_f64() == Some(0.0);
            a.as_u64() == b.as_u64() && (a.as_i64() == b.as_i64() || zero) && close
        }
        (Value::Array(a), J::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y))
        }
        (Value::Object(a), J::Object(b)) => {
            a.len() == b.len() && a.iter().all(|(k, v)| b.get(k).is_some_and(|w| same(v, w)))
        }
        _ => false,
    }
}

#[test]
fn our_parser_agrees_with_serde_json() {
    let mut g = Gen(ChaCha8Rng::seed_from_u64(0x150a_2026));
    let (mut compared, mut refused_alike) = (0, 0);
    for _ in 0..DOCUMENTS {
        let text = format!("{}{}{}", g.space(), g.value(0), g.space());
        let theirs: serde_json::Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            // Exponents up to 299 overflow f64 past ~1.8e308.
            Err(e) if e.to_string().starts_with("number out of range") => continue,
            Err(e) => panic!("generated bad JSON {text:?}: {e}"),
        };
        let ours = json::parse(text.as_bytes()).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert!(
            same(&ours, &theirs),
            "{text:?}: ours {ours} theirs {theirs}"
        );
        let written = ours.to_string();
        let reread: serde_json::Value = serde_json::from_str(&written).unwrap();
        assert_eq!(reread, theirs, "{text:?} written as {written:?}");
        compared += 1;

        for _ in 0..EDITS {
            let edited = g.edit(&text);
            let shown = String::from_utf8_lossy(&edited);
            match (
                json::parse(&edited),
                serde_json::from_slice::<serde_json::Value>(&edited),
            ) {
                (Ok(o), Ok(t)) => {
                    assert!(same(&o, &t), "{shown:?}: ours {o} theirs {t}");
                    compared += 1;
                }
                (Err(_), Err(_)) => refused_alike += 1,
                (Err(e), Ok(_)) => assert!(
                    e.to_string().starts_with("duplicate member"),
                    "{shown:?}: we refuse ({e}), serde_json accepts"
                ),
                (Ok(_), Err(e)) => assert!(
                    e.to_string().starts_with("number out of range"),
                    "{shown:?}: we accept, serde_json refuses ({e})"
                ),
            }
        }
    }
    // The generator must exercise both sides of the comparison.
    assert!(compared > DOCUMENTS, "compared {compared}");
    assert!(
        refused_alike > DOCUMENTS * EDITS / 4,
        "refused {refused_alike}"
    );
}

#[test]
fn duplicate_members_are_refused_where_serde_json_keeps_the_last() {
    let text = br#"{"exp": 1, "exp": 99999999999}"#;
    assert!(serde_json::from_slice::<serde_json::Value>(text).is_ok());
    let err = json::parse(text).unwrap_err().to_string();
    assert_eq!(err, "duplicate member `exp` at line 1 column 12");
}
