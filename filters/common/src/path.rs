//! Path matching beyond string tests: Envoy's path-separated prefix and URI
//! templates (`/users/{id}/{rest=**}`) whose captures rewrites reuse.

use crate::value::Value;

use crate::config::{Fields, Problems};
use crate::matcher::{Named, StringMatcher};

/// A path test: a [`StringMatcher`], `{"separated_prefix": "/api"}`
/// (`/api` or `/api/...`, not `/apix`), or `{"template": "/users/{id}"}`.
#[derive(Debug)]
pub enum PathMatcher {
    String(StringMatcher),
    SeparatedPrefix { prefix: Vec<u8>, ignore_case: bool },
    Template(UriTemplate),
}

impl PathMatcher {
    pub fn decode(value: &Value, at: &str, problems: &mut Problems) -> Option<Self> {
        let has = |key| value.get(key).is_some();
        if has("separated_prefix") {
            let f = Fields::new(value, at, &["separated_prefix", "ignore_case"], problems)?;
            let prefix = f.string("separated_prefix", problems)?;
            let ignore_case = f.flag("ignore_case", problems);
            if !prefix.starts_with('/') || (prefix.len() > 1 && prefix.ends_with('/')) {
                problems.push(
                    &f.at("separated_prefix"),
                    format!("`{prefix}`: starts with `/` and does not end with one"),
                );
            }
            let prefix = if ignore_case {
                prefix.to_ascii_lowercase()
            } else {
                prefix.to_owned()
            };
            return Some(Self::SeparatedPrefix {
                prefix: prefix.into_bytes(),
                ignore_case,
            });
        }
        if has("template") {
            let f = Fields::new(value, at, &["template"], problems)?;
            let source = f.string("template", problems)?;
            return match UriTemplate::parse(source) {
                Ok(t) => Some(Self::Template(t)),
                Err(e) => {
                    problems.push(&f.at("template"), e);
                    None
                }
            };
        }
        StringMatcher::decode(value, at, Named::Forbidden, problems).map(|(_, m)| Self::String(m))
    }

    /// Whether `path` (without its query) matches.
    pub fn matches(&self, path: &[u8]) -> bool {
        match self {
            Self::String(m) => m.matches(Some(path)),
            Self::SeparatedPrefix {
                prefix,
                ignore_case,
            } => {
                let head = path.get(..prefix.len());
                let same = head.is_some_and(|h| {
                    if *ignore_case {
                        h.eq_ignore_ascii_case(prefix)
                    } else {
                        h == prefix.as_slice()
                    }
                });
                same && (prefix.as_slice() == b"/"
                    || matches!(path.get(prefix.len()), None | Some(b'/')))
            }
            Self::Template(t) => t.captures(path).is_some(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(Vec<u8>),
    /// `*` or `{name}`: one non-empty segment.
    One(Option<String>),
    /// `**` or `{name=**}`: the rest of the path, possibly empty.
    Rest(Option<String>),
}

/// A URI template as Envoy's `uri_template` matcher writes it: `/` separated
/// literal segments, `*` / `{name}` / `{name=*}` for one segment, and a
/// final `**` / `{name=**}` for the rest of the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UriTemplate {
    segments: Vec<Segment>,
}

impl UriTemplate {
    pub fn parse(source: &str) -> Result<Self, String> {
        let bad = |why: &str| Err(format!("template `{source}`: {why}"));
        let Some(body) = source.strip_prefix('/') else {
            return bad("starts with `/`");
        };
        let parts: Vec<&str> = body.split('/').collect();
        let mut segments = Vec::new();
        let mut names: Vec<&str> = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            let (name, kind) = match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                Some(inner) => {
                    let (name, kind) = inner.split_once('=').unwrap_or((inner, "*"));
                    let valid = name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
                        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                    if !valid {
                        return bad(&format!(
                            "`{name}` is not a variable name (letters, digits, `_`)"
                        ));
                    }
                    if names.contains(&name) {
                        return bad(&format!("`{name}` appears twice"));
                    }
                    names.push(name);
                    (Some(name.to_owned()), kind)
                }
                None => (None, *part),
            };
            let segment = match kind {
                "*" => Segment::One(name),
                "**" if last => Segment::Rest(name),
                "**" => return bad("`**` may only be the last segment"),
                _ if name.is_some() => {
                    return bad("a variable matches `*` or `**` only");
                }
                literal if literal.contains(['{', '}', '*']) => {
                    return bad(&format!("segment `{literal}` mixes text and operators"));
                }
                literal => Segment::Literal(literal.as_bytes().to_vec()),
            };
            segments.push(segment);
        }
        Ok(Self { segments })
    }

    /// The variable names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::One(Some(n)) | Segment::Rest(Some(n)) => Some(n.as_str()),
            _ => None,
        })
    }

    /// The captured value of each variable (in [`UriTemplate::names`]
    /// order) when `path` matches.
    pub fn captures<'p>(&self, path: &'p [u8]) -> Option<Vec<&'p [u8]>> {
        let mut rest = path.strip_prefix(b"/")?;
        let mut out = Vec::new();
        let mut segments = self.segments.iter().peekable();
        while let Some(segment) = segments.next() {
            let last = segments.peek().is_none();
            if let Segment::Rest(name) = segment {
                if name.is_some() {
                    out.push(rest);
                }
                return Some(out);
            }
            let end = rest.iter().position(|b| *b == b'/').unwrap_or(rest.len());
            let (head, tail) = (rest.get(..end)?, rest.get(end..)?);
            match segment {
                Segment::Literal(text) if head == text.as_slice() => {}
                Segment::One(name) if !head.is_empty() => {
                    if name.is_some() {
                        out.push(head);
                    }
                }
                _ => return None,
            }
            if last {
                return tail.is_empty().then_some(out);
            }
            // Another segment follows: the path must go on past a `/`, or
            // end here when that segment is a `**`.
            rest = match tail.strip_prefix(b"/") {
                Some(next) => next,
                None if matches!(segments.peek(), Some(Segment::Rest(_))) => tail,
                None => return None,
            };
        }
        rest.is_empty().then_some(out)
    }
}

/// Text with `{name}` references to a [`UriTemplate`]'s variables, such as
/// `/v2/{id}/{rest}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateRewrite {
    pieces: Vec<RewritePiece>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum RewritePiece {
    Text(Vec<u8>),
    Capture(usize),
}

impl TemplateRewrite {
    /// Parses `source` against the variables of `template`.
    pub fn parse(source: &str, template: &UriTemplate) -> Result<Self, String> {
        let names: Vec<&str> = template.names().collect();
        let mut pieces = Vec::new();
        let mut rest = source;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                pieces.push(RewritePiece::Text(
                    rest.get(..open).unwrap_or_default().into(),
                ));
            }
            let after = rest.get(open + 1..).unwrap_or_default();
            let Some(close) = after.find('}') else {
                return Err(format!("`{source}`: `{{` without `}}`"));
            };
            let name = after.get(..close).unwrap_or_default();
            let index = names
                .iter()
                .position(|n| *n == name)
                .ok_or_else(|| format!("`{source}`: the template has no variable `{name}`"))?;
            pieces.push(RewritePiece::Capture(index));
            rest = after.get(close + 1..).unwrap_or_default();
        }
        if rest.as_bytes().contains(&b'}') {
            return Err(format!("`{source}`: `}}` without `{{`"));
        }
        if !rest.is_empty() {
            pieces.push(RewritePiece::Text(rest.into()));
        }
        Ok(Self { pieces })
    }

    pub fn render(&self, captures: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for piece in &self.pieces {
            match piece {
                RewritePiece::Text(t) => out.extend_from_slice(t),
                RewritePiece::Capture(i) => {
                    out.extend_from_slice(captures.get(*i).copied().unwrap_or_default());
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(json: &str) -> PathMatcher {
        let mut p = Problems::default();
        let m = PathMatcher::decode(&crate::value::parse(json.as_bytes()).unwrap(), "/p", &mut p);
        assert!(p.is_empty(), "{p}");
        m.unwrap()
    }

    #[test]
    fn separated_prefixes_stop_at_segment_boundaries() {
        let m = path(r#"{"separated_prefix": "/api"}"#);
        assert!(m.matches(b"/api"));
        assert!(m.matches(b"/api/v1"));
        assert!(!m.matches(b"/apix"));
        assert!(!m.matches(b"/ap"));
        let m = path(r#"{"separated_prefix": "/API", "ignore_case": true}"#);
        assert!(m.matches(b"/api/x"));
    }

    #[test]
    fn templates_capture_segments_and_the_rest() {
        let t = UriTemplate::parse("/users/{id}/{rest=**}").unwrap();
        assert_eq!(t.captures(b"/users/42/a/b"), Some(vec![&b"42"[..], b"a/b"]));
        assert_eq!(t.captures(b"/users/42/"), Some(vec![&b"42"[..], b""]));
        assert_eq!(t.captures(b"/users/42"), Some(vec![&b"42"[..], b""]));
        assert_eq!(t.captures(b"/users//x"), None);
        assert_eq!(t.captures(b"/user/42/x"), None);
        let t = UriTemplate::parse("/items/*/{name}").unwrap();
        assert_eq!(t.captures(b"/items/a/b"), Some(vec![&b"b"[..]]));
        assert_eq!(t.captures(b"/items/a/b/c"), None);
        assert_eq!(t.captures(b"/items/a"), None);
        let t = UriTemplate::parse("/").unwrap();
        assert_eq!(t.captures(b"/"), Some(vec![]));
        assert_eq!(t.captures(b"/x"), None);
        assert!(path(r#"{"template": "/a/**"}"#).matches(b"/a/b/c"));
    }

    #[test]
    fn bad_templates_are_refused() {
        for bad in [
            "users", "/a/**/b", "/{1x}", "/{a}/{a}", "/{a=b}", "/a*", "/{a",
        ] {
            assert!(UriTemplate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rewrites_use_captures_by_name() {
        let t = UriTemplate::parse("/users/{id}/{rest=**}").unwrap();
        let r = TemplateRewrite::parse("/v2/{rest}/u/{id}", &t).unwrap();
        let caps = t.captures(b"/users/7/x/y").unwrap();
        assert_eq!(r.render(&caps), b"/v2/x/y/u/7");
        assert!(TemplateRewrite::parse("/{nope}", &t).is_err());
        assert!(TemplateRewrite::parse("/{id", &t).is_err());
        assert!(TemplateRewrite::parse("/id}", &t).is_err());
    }
}
