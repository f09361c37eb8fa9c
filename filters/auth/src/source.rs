//! Where a credential travels: a header (with an optional value prefix such
//! as `Bearer `), a query parameter or a cookie. Used by API keys and JWT
//! providers alike, to find the credential and to hide it from the upstream.

use std::borrow::Cow;

use filter_common::config::{Fields, Problems, check_header_name};
use filter_common::query::QueryOp;
use filter_common::value::Value;
use filter_proxy::request::{Host, Request, form_decode, query_pairs, split_query};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Lines of header `name` starting with `prefix` (compared ignoring
    /// ASCII case; may be empty); the credential is what follows.
    Header {
        name: String,
        prefix: String,
    },
    Query(String),
    Cookie(String),
}

/// What a source holds in a request: borrowed from the request where the
/// credential is there as sent (a header's, a cookie's), decoded where it
/// is not (a query parameter's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup<'a> {
    Absent,
    One(Cow<'a, [u8]>),
    /// More than one candidate (two `Authorization` lines, a repeated query
    /// parameter): refused rather than guessed.
    Many,
}

impl<'a> Lookup<'a> {
    /// At most one of `candidates`, reading no further than the second.
    fn of(mut candidates: impl Iterator<Item = Cow<'a, [u8]>>) -> Self {
        match (candidates.next(), candidates.next()) {
            (None, _) => Lookup::Absent,
            (Some(one), None) => Lookup::One(one),
            (Some(_), Some(_)) => Lookup::Many,
        }
    }
}

impl Source {
    /// `{"header": "authorization", "prefix": "Bearer "}`, `{"query": "k"}`
    /// or `{"cookie": "k"}`.
    pub fn decode(value: &Value, at: &str, problems: &mut Problems) -> Option<Source> {
        let f = Fields::new(
            value,
            at,
            &["header", "prefix", "query", "cookie"],
            problems,
        )?;
        let header = f.string("header", problems);
        let query = f.string("query", problems);
        let cookie = f.string("cookie", problems);
        let prefix = f.string("prefix", problems);
        let given = [header.is_some(), query.is_some(), cookie.is_some()];
        if given.iter().filter(|g| **g).count() != 1 {
            problems.push(at, "give exactly one of `header`, `query`, `cookie`");
            return None;
        }
        if prefix.is_some() && header.is_none() {
            problems.push(&f.at("prefix"), "`prefix` only applies to `header`");
        }
        if let Some(name) = header {
            check_header_name(name, &f.at("header"), problems);
            if name.starts_with(':') {
                problems.push(
                    &f.at("header"),
                    "a credential cannot come from a pseudo-header",
                );
            }
            return Some(Source::Header {
                name: name.to_ascii_lowercase(),
                prefix: prefix.unwrap_or_default().to_owned(),
            });
        }
        if let Some(name) = query.or(cookie) {
            if name.is_empty() {
                problems.push(at, "the name cannot be empty");
            }
            return Some(if query.is_some() {
                Source::Query(name.to_owned())
            } else {
                Source::Cookie(name.to_owned())
            });
        }
        None
    }

    /// A name for logs and the problem answer (`header authorization`).
    pub fn describe(&self) -> String {
        match self {
            Source::Header { name, .. } => format!("header {name}"),
            Source::Query(name) => format!("query parameter {name}"),
            Source::Cookie(name) => format!("cookie {name}"),
        }
    }

    pub fn lookup<'a, H: Host>(&self, request: &'a Request<H>) -> Lookup<'a> {
        match self {
            Source::Header { name, prefix } => Lookup::of(
                request
                    .headers
                    .values(name)
                    .flat_map(split_list)
                    .filter_map(|item| strip_prefix_ignore_case(item, prefix.as_bytes()))
                    .map(|v| Cow::Borrowed(v.trim_ascii())),
            ),
            // Names compare decoded, as the upstream reads them: with
            // `?access_token=<a>&access%5Ftoken=<b>` both are the credential
            // (and the request holds it twice).
            Source::Query(name) => {
                let (_, query) = split_query(request.full_path());
                Lookup::of(
                    query_pairs(query)
                        .filter(|(k, _)| *form_decode(k) == *name.as_bytes())
                        .map(|(_, v)| Cow::Owned(form_decode(v).into_owned())),
                )
            }
            // Every pair of every `cookie` line: `jwt=<a>; jwt=<b>`, or the
            // two in separate lines, is the credential twice.
            Source::Cookie(name) => Lookup::of(
                request
                    .headers
                    .values("cookie")
                    .flat_map(|line| cookie_values(line, name.as_bytes()))
                    .map(Cow::Borrowed),
            ),
        }
    }

    /// Removes the credential so the upstream never sees it.
    pub fn remove<H: Host>(&self, request: &mut Request<H>) {
        match self {
            Source::Header { name, prefix } => {
                let prefix = prefix.as_bytes();
                request.headers.retain(|k, v| {
                    k != name
                        || !split_list(v)
                            .any(|item| strip_prefix_ignore_case(item, prefix).is_some())
                });
            }
            Source::Query(name) => QueryOp::Remove { name: name.clone() }.apply(request),
            Source::Cookie(name) => {
                let lines: Vec<Vec<u8>> = request
                    .headers
                    .values("cookie")
                    .map(|line| without_cookie(line, name.as_bytes()))
                    .filter(|line| !line.is_empty())
                    .collect();
                if request.headers.contains("cookie") {
                    request.headers.replace_all("cookie", lines);
                }
            }
        }
    }
}

/// The one credential the sources hold, with the index of its source:
/// `Ok(None)` when none holds one, `Err(Twice)` when a source holds several
/// or two sources hold one each. A request carrying a credential twice is
/// refused, never guessed at: whichever copy were checked, the other could
/// reach the upstream unchecked.
pub fn single<'a, H: Host>(
    sources: &[Source],
    request: &'a Request<H>,
) -> Result<Option<Found<'a>>, Twice> {
    let mut found = None;
    for (i, source) in sources.iter().enumerate() {
        match source.lookup(request) {
            Lookup::Absent => {}
            Lookup::One(_) if found.is_some() => return Err(Twice),
            Lookup::One(value) => found = Some((i, value)),
            Lookup::Many => return Err(Twice),
        }
    }
    Ok(found)
}

/// A credential found: its source's index, and the credential.
pub type Found<'a> = (usize, Cow<'a, [u8]>);

/// A credential given more than once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Twice;

/// The items of a header line: Envoy joins repeated lines of some headers
/// (`authorization` among them) with `,`, and no credential contains one.
pub fn split_list(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    // `memchr` looks for the commas a word at a time: a bearer token is
    // hundreds of bytes, scanned on every request.
    let mut rest = Some(line);
    std::iter::from_fn(move || {
        let text = rest?;
        let (item, after) = match memchr::memchr(b',', text) {
            Some(at) => (text.get(..at), text.get(at + 1..)),
            None => (Some(text), None),
        };
        rest = after;
        item
    })
    .map(<[u8]>::trim_ascii)
    .filter(|item| !item.is_empty())
}

fn strip_prefix_ignore_case<'a>(value: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let head = value.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| value.get(prefix.len()..).unwrap_or_default())
}

/// The values of the pairs named `name` in one cookie line.
fn cookie_values<'a>(line: &'a [u8], name: &[u8]) -> impl Iterator<Item = &'a [u8]> {
    line.split(|b| *b == b';').filter_map(move |pair| {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|b| *b == b'=')?;
        (pair.get(..eq)?.trim_ascii() == name)
            .then(|| pair.get(eq + 1..).unwrap_or_default().trim_ascii())
    })
}

/// A cookie line without the pairs named `name`.
fn without_cookie(line: &[u8], name: &[u8]) -> Vec<u8> {
    let kept: Vec<&[u8]> = line
        .split(|b| *b == b';')
        .map(<[u8]>::trim_ascii)
        .filter(|pair| !pair.is_empty())
        .filter(|pair| pair.split(|b| *b == b'=').next().map(<[u8]>::trim_ascii) != Some(name))
        .collect();
    kept.join(&b"; "[..])
}

#[cfg(test)]
mod tests {
    use filter_proxy::headers::HeaderMap;
    use filter_proxy::request::TableHost;

    use super::*;

    fn request(pairs: &[(&str, &str)]) -> Request<TableHost> {
        let entries = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
            .collect();
        Request::new(HeaderMap::new(entries), TableHost::default())
    }

    fn bearer() -> Source {
        Source::Header {
            name: "authorization".into(),
            prefix: "Bearer ".into(),
        }
    }

    #[test]
    fn header_with_prefix() {
        let r = request(&[(":path", "/"), ("authorization", "bearer abc ")]);
        assert_eq!(bearer().lookup(&r), Lookup::One(Cow::Borrowed(b"abc")));
        let r = request(&[(":path", "/"), ("authorization", "Basic abc")]);
        assert_eq!(bearer().lookup(&r), Lookup::Absent);
        let r = request(&[
            (":path", "/"),
            ("authorization", "Bearer a"),
            ("authorization", "Bearer b"),
        ]);
        assert_eq!(bearer().lookup(&r), Lookup::Many);
    }

    #[test]
    fn query_and_cookie() {
        let mut r = request(&[
            (":path", "/p?x=1&access_token=a%2Bb&y=2"),
            ("cookie", "a=1; jwt=tok; b=2"),
        ]);
        let q = Source::Query("access_token".into());
        assert_eq!(q.lookup(&r), Lookup::One(Cow::Borrowed(b"a+b")));
        q.remove(&mut r);
        assert_eq!(r.full_path(), b"/p?x=1&y=2");
        let c = Source::Cookie("jwt".into());
        assert_eq!(c.lookup(&r), Lookup::One(Cow::Borrowed(b"tok")));
        c.remove(&mut r);
        assert_eq!(r.headers.get("cookie"), Some(b"a=1; b=2".to_vec()));
        let mut only = request(&[(":path", "/"), ("cookie", "jwt=tok")]);
        c.remove(&mut only);
        assert!(!only.headers.contains("cookie"));
    }

    #[test]
    fn removing_a_prefixed_header_keeps_other_schemes() {
        let mut r = request(&[
            (":path", "/"),
            ("authorization", "Basic x"),
            ("authorization", "Bearer y"),
        ]);
        bearer().remove(&mut r);
        assert_eq!(r.headers.get("authorization"), Some(b"Basic x".to_vec()));
    }
}
