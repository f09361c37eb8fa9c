//! Envoy's `regex_rewrite`: a regex and a substitution with `\0`..`\9`
//! group references, applied to every non-overlapping match. The routing
//! filter rewrites paths and hosts with it, the header-transform filter
//! header values.

use crate::value::Value;

use crate::config::{Fields, Problems};
use crate::pattern::{Regex, as_text};
use regex_lite::Captures;

/// Replacement text with `\0`..`\9` capture references, as Envoy's
/// `regex_rewrite.substitution` writes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Substitution {
    pieces: Vec<SubPiece>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum SubPiece {
    Text(Vec<u8>),
    Group(usize),
}

impl Substitution {
    /// Parses `source`; references must exist in `regex` (`\\` is a
    /// backslash).
    pub fn parse(source: &str, regex: &Regex) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut text = Vec::new();
        let mut bytes = source.bytes();
        while let Some(b) = bytes.next() {
            if b != b'\\' {
                text.push(b);
                continue;
            }
            match bytes.next() {
                Some(b'\\') => text.push(b'\\'),
                Some(d @ b'0'..=b'9') => {
                    let group = usize::from(d - b'0');
                    if group >= regex.captures_len() {
                        return Err(format!(
                            "`\\{group}`: the regex has {} capture groups",
                            regex.captures_len() - 1
                        ));
                    }
                    if !text.is_empty() {
                        pieces.push(SubPiece::Text(std::mem::take(&mut text)));
                    }
                    pieces.push(SubPiece::Group(group));
                }
                _ => return Err("`\\` is followed by a digit or another `\\`".to_owned()),
            }
        }
        if !text.is_empty() {
            pieces.push(SubPiece::Text(text));
        }
        Ok(Self { pieces })
    }

    fn expand(&self, caps: &Captures<'_>, out: &mut Vec<u8>) {
        for piece in &self.pieces {
            match piece {
                SubPiece::Text(t) => out.extend_from_slice(t),
                SubPiece::Group(g) => {
                    out.extend_from_slice(caps.get(*g).map_or(&b""[..], |m| m.as_str().as_bytes()))
                }
            }
        }
    }
}

/// A regex and its substitution.
#[derive(Debug)]
pub struct RegexRewrite {
    regex: Regex,
    substitution: Substitution,
}

impl RegexRewrite {
    /// Decodes `{"pattern": "...", "substitution": "..."}`.
    pub fn decode(value: &Value, at: &str, problems: &mut Problems) -> Option<Self> {
        let f = Fields::new(value, at, &["pattern", "substitution"], problems)?;
        let pattern = f.required_string("pattern", problems);
        let substitution = f.required_string("substitution", problems);
        let regex = match Regex::new(pattern?) {
            Ok(r) => r,
            Err(e) => {
                problems.push(&f.at("pattern"), e);
                return None;
            }
        };
        match Substitution::parse(substitution?, &regex) {
            Ok(substitution) => Some(Self {
                regex,
                substitution,
            }),
            Err(e) => {
                problems.push(&f.at("substitution"), e);
                None
            }
        }
    }

    /// Every non-overlapping match replaced (Envoy's `regex_rewrite`);
    /// `None` when nothing matches. Input that is not valid UTF-8 is
    /// rewritten as its lossy text (see [`as_text`]).
    pub fn replace_all(&self, input: &[u8]) -> Option<Vec<u8>> {
        let text = as_text(input);
        let bytes = text.as_bytes();
        let mut out = Vec::new();
        let mut last = 0;
        let mut matched = false;
        for caps in self.regex.inner().captures_iter(&text) {
            matched = true;
            let whole = caps.get(0)?;
            out.extend_from_slice(bytes.get(last..whole.start())?);
            self.substitution.expand(&caps, &mut out);
            last = whole.end();
        }
        if !matched {
            return None;
        }
        out.extend_from_slice(bytes.get(last..)?);
        Some(out)
    }

    /// The substitution expanded with the first match's groups only.
    pub fn expand_first(&self, input: &[u8]) -> Option<Vec<u8>> {
        let text = as_text(input);
        let caps = self.regex.inner().captures(&text)?;
        let mut out = Vec::new();
        self.substitution.expand(&caps, &mut out);
        Some(out)
    }
}
