//! Match expressions: which requests a rule applies to. An object's members
//! must all hold (AND); `all`, `any` and `not` compose expressions.
//!
//! | Member | Test |
//! |---|---|
//! | `host` | a string matcher on `:authority` without its port |
//! | `hosts` | host patterns (`*.example.com`, `api.*`, exact), any may match |
//! | `path` | a path matcher on the path without its query (string matcher, `separated_prefix`, `template`) |
//! | `url` | a string matcher on the whole `:path`, query included |
//! | `method` | a string matcher on `:method` |
//! | `headers`, `query`, `cookies` | lists of named string matchers, all must hold |
//! | `client_ip` | CIDR ranges, any may contain the client IP |
//! | `body` | a list of string matchers, each on the JSON body field its `pointer` names (RFC 6901; see [`crate::body`]), all must hold; a body not read, not JSON or without the field is "absent" |
//! | `all`, `any`, `not` | lists of expressions / one expression |
//!
//! An empty object matches every request.

use crate::value::Value;

use crate::body::Selection;
use crate::config::{Fields, Problems, join};
use crate::matcher::{HostPattern, Named, StringMatcher};
use crate::net::Cidr;
use crate::path::PathMatcher;
use filter_proxy::request::{Host, Request};

const MEMBERS: &[&str] = &[
    "host",
    "hosts",
    "path",
    "url",
    "method",
    "headers",
    "query",
    "cookies",
    "client_ip",
    "body",
    "all",
    "any",
    "not",
];

/// Expressions nest at most this deep (a configuration is not a program).
const MAX_DEPTH: usize = 8;

#[derive(Debug)]
enum Test {
    Host(StringMatcher),
    Hosts(Vec<HostPattern>),
    Path(PathMatcher),
    Url(StringMatcher),
    Method(StringMatcher),
    Header(String, StringMatcher),
    Query(String, StringMatcher),
    Cookie(String, StringMatcher),
    ClientIp(Vec<Cidr>),
    Body(String, StringMatcher),
    All(Vec<Expr>),
    Any(Vec<Expr>),
    Not(Box<Expr>),
}

/// A compiled match expression (the default matches everything).
#[derive(Debug, Default)]
pub struct Expr {
    tests: Vec<Test>,
}

impl Expr {
    pub fn decode(value: &Value, at: &str, problems: &mut Problems) -> Self {
        Self::decode_at_depth(value, at, 0, problems)
    }

    fn decode_at_depth(value: &Value, at: &str, depth: usize, problems: &mut Problems) -> Self {
        let mut tests = Vec::new();
        if depth > MAX_DEPTH {
            problems.push(at, format!("expressions nest at most {MAX_DEPTH} deep"));
            return Self { tests };
        }
        let Some(f) = Fields::new(value, at, MEMBERS, problems) else {
            return Self { tests };
        };
        let single = |key: &str, problems: &mut Problems| {
            StringMatcher::decode(f.value(key)?, &f.at(key), Named::Forbidden, problems)
                .map(|(_, m)| m)
        };
        if let Some(m) = single("host", problems) {
            tests.push(Test::Host(m));
        }
        if f.value("hosts").is_some() {
            let list_at = f.at("hosts");
            let hosts: Vec<_> = f
                .strings("hosts", problems)
                .into_iter()
                .enumerate()
                .filter_map(|(i, h)| HostPattern::decode(h, &join(&list_at, &i), problems))
                .collect();
            if empty_list(f.value("hosts")) {
                problems.push(&list_at, "an empty list matches nothing");
            }
            tests.push(Test::Hosts(hosts));
        }
        if let Some(v) = f.value("path")
            && let Some(m) = PathMatcher::decode(v, &f.at("path"), problems)
        {
            tests.push(Test::Path(m));
        }
        if let Some(m) = single("url", problems) {
            tests.push(Test::Url(m));
        }
        if let Some(m) = single("method", problems) {
            tests.push(Test::Method(m));
        }
        for (key, lower, make) in [
            (
                "headers",
                true,
                Test::Header as fn(String, StringMatcher) -> Test,
            ),
            ("query", false, Test::Query),
            ("cookies", false, Test::Cookie),
        ] {
            let list_at = f.at(key);
            for (i, m) in f.list(key, problems).iter().enumerate() {
                let here = join(&list_at, &i);
                let Some((name, matcher)) =
                    StringMatcher::decode(m, &here, Named::Required, problems)
                else {
                    continue;
                };
                if lower && name.bytes().any(|b| b.is_ascii_uppercase()) {
                    problems.push(
                        &join(&here, &"name"),
                        format!(
                            "header names are matched lower-case; write `{}`",
                            name.to_ascii_lowercase()
                        ),
                    );
                }
                tests.push(make(name, matcher));
            }
        }
        if f.value("client_ip").is_some() {
            let list_at = f.at("client_ip");
            let mut ranges = Vec::new();
            for (i, text) in f.strings("client_ip", problems).into_iter().enumerate() {
                match Cidr::parse(text) {
                    Ok(c) => ranges.push(c),
                    Err(e) => problems.push(&join(&list_at, &i), e),
                }
            }
            if empty_list(f.value("client_ip")) {
                problems.push(&list_at, "an empty list matches nothing");
            }
            tests.push(Test::ClientIp(ranges));
        }
        let body_at = f.at("body");
        for (i, m) in f.list("body", problems).iter().enumerate() {
            let here = join(&body_at, &i);
            if let Some((pointer, matcher)) = body_matcher(m, &here, problems) {
                tests.push(Test::Body(pointer, matcher));
            }
        }
        if empty_list(f.value("body")) {
            problems.push(&body_at, "an empty list tests nothing; leave `body` out");
        }
        for (key, make) in [
            ("all", Test::All as fn(Vec<Expr>) -> Test),
            ("any", Test::Any),
        ] {
            if f.value(key).is_none() {
                continue;
            }
            let list_at = f.at(key);
            let list = f.list(key, problems);
            if list.is_empty() {
                problems.push(&list_at, format!("`{key}` needs at least one expression"));
            }
            let exprs = list
                .iter()
                .enumerate()
                .map(|(i, e)| Self::decode_at_depth(e, &join(&list_at, &i), depth + 1, problems))
                .collect();
            tests.push(make(exprs));
        }
        if let Some(v) = f.value("not") {
            let inner = Self::decode_at_depth(v, &f.at("not"), depth + 1, problems);
            tests.push(Test::Not(Box::new(inner)));
        }
        Self { tests }
    }

    /// Whether the condition holds for every request (it tests nothing).
    pub fn is_always(&self) -> bool {
        self.tests.is_empty()
    }

    /// Adds the body fields its members read to `read` (a filter waits
    /// for the body when any are read).
    pub fn body_fields(&self, read: &mut Selection) {
        for test in &self.tests {
            match test {
                Test::Body(pointer, _) => read.add(pointer),
                Test::All(list) | Test::Any(list) => {
                    list.iter().for_each(|e| e.body_fields(read));
                }
                Test::Not(e) => e.body_fields(read),
                _ => {}
            }
        }
    }

    /// Whether the request meets every member.
    pub fn matches<H: Host>(&self, request: &Request<H>) -> bool {
        self.tests.iter().all(|t| t.matches(request))
    }
}

/// A `body` matcher: a string matcher whose `pointer` names the field.
fn body_matcher(
    value: &Value,
    at: &str,
    problems: &mut Problems,
) -> Option<(String, StringMatcher)> {
    let Some(map) = value.as_object() else {
        problems.push(at, "a body matcher is an object with a `pointer`");
        return None;
    };
    let pointer = match map.get("pointer") {
        Some(Value::String(p)) => Some(p.clone()),
        Some(_) => {
            problems.push(&join(at, &"pointer"), "a JSON Pointer is a string");
            None
        }
        None => {
            problems.push(
                at,
                "missing field `pointer` (the body field, e.g. `/model`)",
            );
            None
        }
    };
    let mut rest = crate::value::Map::new();
    for (key, v) in map.iter().filter(|(k, _)| *k != "pointer") {
        rest.insert(key.clone(), v.clone());
    }
    let (_, matcher) = StringMatcher::decode(&Value::Object(rest), at, Named::Forbidden, problems)?;
    let pointer = pointer?;
    crate::body::check_pointer(&pointer, &join(at, &"pointer"), problems)
        .then_some((pointer, matcher))
}

fn empty_list(value: Option<&Value>) -> bool {
    value.and_then(Value::as_array).is_some_and(Vec::is_empty)
}

impl Test {
    fn matches<H: Host>(&self, request: &Request<H>) -> bool {
        match self {
            Test::Host(m) => m.matches(Some(request.authority_host())),
            Test::Hosts(list) => {
                let host = request.authority_host();
                list.iter().any(|p| p.matches(host))
            }
            Test::Path(m) => m.matches(request.path()),
            Test::Url(m) => m.matches(Some(request.full_path())),
            Test::Method(m) => m.matches(Some(request.method())),
            Test::Header(name, m) => m.matches(request.headers.get(name).as_deref()),
            Test::Query(name, m) => m.matches(request.query_param(name)),
            Test::Cookie(name, m) => m.matches(request.cookie(name)),
            Test::ClientIp(ranges) => request
                .client_ip()
                .is_some_and(|ip| ranges.iter().any(|r| r.contains(ip))),
            Test::Body(pointer, m) => m.matches(request.body_field(pointer).as_deref()),
            Test::All(list) => list.iter().all(|e| e.matches(request)),
            Test::Any(list) => list.iter().any(|e| e.matches(request)),
            Test::Not(e) => !e.matches(request),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use filter_proxy::headers::HeaderMap;
    use filter_proxy::request::TableHost;

    fn expr(json: &str) -> Result<Expr, Problems> {
        let mut p = Problems::default();
        let e = Expr::decode(
            &crate::value::parse(json.as_bytes()).unwrap(),
            "/when",
            &mut p,
        );
        p.into_result(e)
    }

    fn req(path: &str, extra: &[(&str, &str)]) -> Request<TableHost> {
        let mut h = vec![
            (":method".to_owned(), b"GET".to_vec()),
            (":path".to_owned(), path.as_bytes().to_vec()),
            (":authority".to_owned(), b"api.example.com:8443".to_vec()),
            ("x-env".to_owned(), b"prod".to_vec()),
        ];
        h.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec())),
        );
        let host = TableHost::default().with("source.address", "10.1.2.3:4000");
        Request::new(HeaderMap::new(h), host)
    }

    #[test]
    fn members_must_all_hold() {
        let e = expr(
            r#"{"host": {"suffix": ".example.com"}, "path": {"prefix": "/api"},
                "method": {"one_of": ["GET"]},
                "headers": [{"name": "x-env", "exact": "prod"}, {"name": "x-debug", "absent": true}],
                "query": [{"name": "v", "exact": "2"}]}"#,
        )
        .unwrap();
        assert!(e.matches(&req("/api/x?v=2", &[])));
        assert!(!e.matches(&req("/api/x?v=3", &[])));
        assert!(!e.matches(&req("/web?v=2", &[])));
        assert!(!e.matches(&req("/api?v=2", &[("x-debug", "1")])));
        assert!(expr("{}").unwrap().matches(&req("/", &[])));
    }

    #[test]
    fn hosts_urls_cookies_and_client_ips() {
        let r = req("/a?token=1", &[("cookie", "beta=yes")]);
        for (json, want) in [
            (r#"{"hosts": ["*.example.com"]}"#, true),
            (r#"{"hosts": ["web.*", "API.example.com"]}"#, true),
            (r#"{"hosts": ["example.com"]}"#, false),
            (r#"{"url": {"contains": "token="}}"#, true),
            (r#"{"cookies": [{"name": "beta", "exact": "yes"}]}"#, true),
            (
                r#"{"cookies": [{"name": "alpha", "present": true}]}"#,
                false,
            ),
            (r#"{"client_ip": ["10.0.0.0/8"]}"#, true),
            (r#"{"client_ip": ["192.168.0.0/16", "::1"]}"#, false),
        ] {
            assert_eq!(expr(json).unwrap().matches(&r), want, "{json}");
        }
    }

    #[test]
    fn body_fields_match_by_pointer_once_the_body_is_read() {
        let e = expr(
            r#"{"body": [{"pointer": "/model", "one_of": ["gpt-x", "gpt-y"]},
                         {"pointer": "/stream", "exact": "true"},
                         {"pointer": "/user/tier", "absent": true}]}"#,
        )
        .unwrap();
        let read = |e: &Expr| {
            let mut read = Selection::default();
            e.body_fields(&mut read);
            read
        };
        let fields = read(&e);
        let want: Selection = ["/model", "/stream", "/user/tier"].into_iter().collect();
        assert_eq!(fields, want);
        assert!(read(&expr(r#"{"path": {"prefix": "/"}}"#).unwrap()).is_empty());
        let nested: Selection = ["/a"].into_iter().collect();
        assert_eq!(
            read(
                &expr(r#"{"not": {"any": [{"body": [{"pointer": "/a", "present": true}]}]}}"#)
                    .unwrap()
            ),
            nested
        );
        let mut r = req("/v1/chat", &[]);
        assert!(!e.matches(&r), "a body not read has no fields");
        r.set_body(Box::new(crate::body::JsonBody::parse_fields(
            br#"{"model": "gpt-y", "stream": true}"#,
            &fields,
        )));
        assert!(e.matches(&r));
        r.set_body(Box::new(crate::body::JsonBody::parse_fields(
            br#"{"model": "gpt-y", "stream": true, "user": {"tier": "free"}}"#,
            &fields,
        )));
        assert!(!e.matches(&r));
        r.set_body(Box::new(crate::body::JsonBody::parse(b"model=gpt-y")));
        assert!(!e.matches(&r));
        let err = expr(
            r#"{"body": [{"exact": "x"}, {"pointer": "model", "exact": "x"},
                         {"pointer": "/m", "exact": "x", "name": "n"}, {"pointer": 1, "exact": "x"}]}"#,
        )
        .unwrap_err();
        let paths: Vec<_> = err.list().iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/when/body/0",
                "/when/body/1/pointer",
                "/when/body/2/name",
                "/when/body/3/pointer"
            ]
        );
    }

    #[test]
    fn all_any_and_not_compose() {
        let e = expr(
            r#"{"any": [{"path": {"prefix": "/a"}}, {"path": {"prefix": "/b"}}],
                "not": {"method": {"exact": "POST"}}}"#,
        )
        .unwrap();
        assert!(e.matches(&req("/a", &[])));
        assert!(e.matches(&req("/b", &[])));
        assert!(!e.matches(&req("/c", &[])));
        let e =
            expr(r#"{"all": [{"path": {"prefix": "/a"}}, {"not": {"path": {"exact": "/a/x"}}}]}"#)
                .unwrap();
        assert!(e.matches(&req("/a/y", &[])));
        assert!(!e.matches(&req("/a/x", &[])));
    }

    #[test]
    fn problems_are_reported_with_their_paths() {
        let err = expr(
            r#"{"headers": [{"name": "X-A", "present": true}, {"exact": "x"}],
                "client_ip": ["10.0.0.1/8"], "any": [], "not": {"bogus": 1},
                "path": {"template": "/a/**/b"}, "hosts": ["a*b"], "cookies": []}"#,
        )
        .unwrap_err();
        let paths: Vec<_> = err.list().iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/when/hosts/0",
                "/when/path/template",
                "/when/headers/0/name",
                "/when/headers/1",
                "/when/client_ip/0",
                "/when/any",
                "/when/not/bogus",
            ]
        );
        let mut deep = String::from("{}");
        for _ in 0..12 {
            deep = format!(r#"{{"not": {deep}}}"#);
        }
        assert!(
            expr(&deep)
                .unwrap_err()
                .to_string()
                .contains("nest at most")
        );
    }
}
