//! Path and host rewrites, shared by rewrite and redirect actions: prefix
//! swaps, regexes with Envoy-style `\1` substitutions, URI templates, and
//! literal values.

use filter_common::config::{Fields, Problems, check_header_name, join, tagged};
use filter_common::path::{TemplateRewrite, UriTemplate};
use filter_common::rewrite::RegexRewrite;
use filter_common::value::Value;

/// How a path (without its query) changes.
#[derive(Debug)]
pub enum PathRewrite {
    /// `{"set": "/fixed"}`.
    Set(Vec<u8>),
    /// `{"prefix": {"from": "/old", "to": "/new"}}`: a leading `from`
    /// becomes `to`.
    Prefix { from: Vec<u8>, to: Vec<u8> },
    /// `{"regex": {"pattern", "substitution"}}`: every match replaced.
    Regex(RegexRewrite),
    /// `{"template": {"match": "/u/{id}/{rest=**}", "to": "/users/{id}/{rest}"}}`.
    Template {
        matcher: UriTemplate,
        to: TemplateRewrite,
    },
}

impl PathRewrite {
    pub fn decode(value: &Value, at: &str, problems: &mut Problems) -> Option<Self> {
        let (kind, inner) = tagged(value, at, &["set", "prefix", "regex", "template"], problems)?;
        let at = &join(at, &kind);
        let starts_with_slash = |s: &str, at: &str, problems: &mut Problems| {
            if !s.starts_with('/') {
                problems.push(at, format!("`{s}`: a path starts with `/`"));
            }
        };
        match kind {
            "set" => {
                let Some(path) = inner.as_str() else {
                    problems.push(at, "expected a path");
                    return None;
                };
                starts_with_slash(path, at, problems);
                Some(Self::Set(path.as_bytes().to_vec()))
            }
            "prefix" => {
                let f = Fields::new(inner, at, &["from", "to"], problems)?;
                let from = f.required_string("from", problems);
                let to = f.required_string("to", problems);
                if let Some(from) = from {
                    starts_with_slash(from, &f.at("from"), problems);
                }
                if let Some(to) = to {
                    starts_with_slash(to, &f.at("to"), problems);
                }
                Some(Self::Prefix {
                    from: from?.as_bytes().to_vec(),
                    to: to?.as_bytes().to_vec(),
                })
            }
            "regex" => RegexRewrite::decode(inner, at, problems).map(Self::Regex),
            _ => {
                let f = Fields::new(inner, at, &["match", "to"], problems)?;
                let matcher = f.required_string("match", problems);
                let to = f.required_string("to", problems);
                let matcher = match UriTemplate::parse(matcher?) {
                    Ok(m) => m,
                    Err(e) => {
                        problems.push(&f.at("match"), e);
                        return None;
                    }
                };
                match TemplateRewrite::parse(to?, &matcher) {
                    Ok(to) => Some(Self::Template { matcher, to }),
                    Err(e) => {
                        problems.push(&f.at("to"), e);
                        None
                    }
                }
            }
        }
    }

    /// The new path, or `None` when this rewrite does not apply to `path`.
    pub fn apply(&self, path: &[u8]) -> Option<Vec<u8>> {
        match self {
            Self::Set(p) => Some(p.clone()),
            Self::Prefix { from, to } => {
                let rest = path.strip_prefix(from.as_slice())?;
                let mut out = to.clone();
                // `/api` → `/` on `/api/x` gives `/x`, not `//x`.
                if out.ends_with(b"/") && rest.starts_with(b"/") {
                    out.pop();
                }
                out.extend_from_slice(rest);
                Some(out)
            }
            Self::Regex(r) => r.replace_all(path),
            Self::Template { matcher, to } => Some(to.render(&matcher.captures(path)?)),
        }
    }
}

/// Where a rewritten host comes from.
#[derive(Debug)]
pub enum HostRewrite {
    /// `{"set": "backend.internal"}`.
    Set(Vec<u8>),
    /// `{"from_header": "x-target-host"}`: the header's value, when present.
    FromHeader(String),
    /// `{"from_path": {"pattern", "substitution"}}`: the substitution
    /// expanded with the path's first match.
    FromPath(RegexRewrite),
}

impl HostRewrite {
    pub fn decode(value: &Value, at: &str, problems: &mut Problems) -> Option<Self> {
        let (kind, inner) = tagged(value, at, &["set", "from_header", "from_path"], problems)?;
        let at = &join(at, &kind);
        match kind {
            "set" => match inner.as_str() {
                Some(host) if is_authority(host.as_bytes()) => {
                    Some(Self::Set(host.as_bytes().to_vec()))
                }
                _ => {
                    problems.push(at, "expected a host such as `api.internal` or `api:8080`");
                    None
                }
            },
            "from_header" => {
                let Some(name) = inner.as_str() else {
                    problems.push(at, "expected a header name");
                    return None;
                };
                check_header_name(name, at, problems);
                Some(Self::FromHeader(name.to_owned()))
            }
            _ => RegexRewrite::decode(inner, at, problems).map(Self::FromPath),
        }
    }

    /// The new authority, or `None` (no value, or not a valid authority).
    pub fn apply(&self, header: impl Fn(&str) -> Option<Vec<u8>>, path: &[u8]) -> Option<Vec<u8>> {
        let host = match self {
            Self::Set(h) => h.clone(),
            Self::FromHeader(name) => header(name)?,
            Self::FromPath(r) => r.expand_first(path)?,
        };
        is_authority(&host).then_some(host)
    }
}

/// A plausible `host[:port]`: letters, digits, `.-_:[]`, not empty.
pub fn is_authority(value: &[u8]) -> bool {
    !value.is_empty()
        && value
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b".-_:[]".contains(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path_rewrite(json: &str) -> PathRewrite {
        let mut p = Problems::default();
        let r = PathRewrite::decode(
            &filter_common::value::parse(json.as_bytes()).unwrap(),
            "/r",
            &mut p,
        );
        assert!(p.is_empty(), "{p}");
        r.unwrap()
    }

    #[test]
    fn paths_are_rewritten_every_way() {
        let r = path_rewrite(r#"{"prefix": {"from": "/api", "to": "/"}}"#);
        assert_eq!(r.apply(b"/api/x"), Some(b"/x".to_vec()));
        assert_eq!(r.apply(b"/web"), None);
        let r = path_rewrite(r#"{"prefix": {"from": "/v1/", "to": "/v2/"}}"#);
        assert_eq!(r.apply(b"/v1/items"), Some(b"/v2/items".to_vec()));
        let r = path_rewrite(
            r#"{"regex": {"pattern": "/([a-z]+)/(\\d+)", "substitution": "/\\2/\\1"}}"#,
        );
        assert_eq!(r.apply(b"/users/42/x/7"), Some(b"/42/users/7/x".to_vec()));
        assert_eq!(r.apply(b"/1/2"), None);
        let r = path_rewrite(r#"{"regex": {"pattern": "a", "substitution": "b"}}"#);
        assert_eq!(r.apply(b"/aaa"), Some(b"/bbb".to_vec()));
        let r = path_rewrite(
            r#"{"template": {"match": "/u/{id}/{rest=**}", "to": "/users/{id}/{rest}"}}"#,
        );
        assert_eq!(r.apply(b"/u/7/a/b"), Some(b"/users/7/a/b".to_vec()));
        assert_eq!(r.apply(b"/x/7"), None);
        assert_eq!(
            path_rewrite(r#"{"set": "/fixed"}"#).apply(b"/a"),
            Some(b"/fixed".to_vec())
        );
    }

    #[test]
    fn hosts_come_from_literals_headers_or_the_path() {
        let decode = |json: &str| {
            let mut p = Problems::default();
            HostRewrite::decode(
                &filter_common::value::parse(json.as_bytes()).unwrap(),
                "/h",
                &mut p,
            )
            .unwrap()
        };
        let headers = |name: &str| (name == "x-target").then(|| b"t.internal:81".to_vec());
        assert_eq!(
            decode(r#"{"set": "a.internal"}"#).apply(headers, b"/"),
            Some(b"a.internal".to_vec())
        );
        assert_eq!(
            decode(r#"{"from_header": "x-target"}"#).apply(headers, b"/"),
            Some(b"t.internal:81".to_vec())
        );
        assert_eq!(
            decode(r#"{"from_header": "x-none"}"#).apply(headers, b"/"),
            None
        );
        let from_path =
            decode(r#"{"from_path": {"pattern": "^/t/([a-z]+)", "substitution": "\\1.svc"}}"#);
        assert_eq!(
            from_path.apply(headers, b"/t/shop/x"),
            Some(b"shop.svc".to_vec())
        );
        assert_eq!(from_path.apply(headers, b"/x"), None);
    }

    #[test]
    fn bad_rewrites_name_their_member() {
        for (json, at) in [
            (
                r#"{"regex": {"pattern": "(", "substitution": ""}}"#,
                "/r/regex/pattern",
            ),
            (
                r#"{"regex": {"pattern": "a", "substitution": "\\1"}}"#,
                "/r/regex/substitution",
            ),
            (
                r#"{"template": {"match": "/{a}", "to": "/{b}"}}"#,
                "/r/template/to",
            ),
            (
                r#"{"prefix": {"from": "api", "to": "/"}}"#,
                "/r/prefix/from",
            ),
            (r#"{"set": 3}"#, "/r/set"),
            (r#"{"drop": 1}"#, "/r/drop"),
        ] {
            let mut p = Problems::default();
            PathRewrite::decode(
                &filter_common::value::parse(json.as_bytes()).unwrap(),
                "/r",
                &mut p,
            );
            assert_eq!(
                p.list().first().map(|p| p.path.as_str()),
                Some(at),
                "{json}: {p}"
            );
        }
    }
}
