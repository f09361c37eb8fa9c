//! What rules look at: the request's headers, its path and query, and host
//! properties read lazily (at most once per request, and only when a rule
//! needs them).

use std::borrow::Cow;
use std::cell::OnceCell;
use std::net::IpAddr;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode, percent_encode};

use crate::client::{ClientIpSource, forwarded_for, parse_ip};
use crate::headers::HeaderMap;

/// What a filter needs from its host besides the header maps. The proxy-wasm
/// glue implements it with host calls; native tests with a table.
pub trait Host {
    /// A property by path segments (`["xds", "route_name"]`).
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;
    /// Wall-clock time in nanoseconds since the Unix epoch.
    fn now_nanos(&self) -> u64;
}

/// A request body's fields as rules read them: a filter that read the body
/// parses it (JSON, in `filter-common`) and hands it to the request.
pub trait BodyFields: std::fmt::Debug {
    /// The field at `pointer` (an RFC 6901 JSON Pointer: `""` is the whole
    /// document, `/a/0` the first item of member `a`) as a rule compares
    /// it: a string as its text, any other value as compact JSON. `None`
    /// when the body is not JSON or has no such field.
    fn field(&self, pointer: &str) -> Option<Cow<'_, [u8]>>;
}

/// A request as the rules see it.
#[derive(Debug)]
pub struct Request<H> {
    pub headers: HeaderMap,
    /// The body's fields, once the filter has read it (`None`: not read).
    body: Option<Box<dyn BodyFields>>,
    host: H,
    route_name: OnceCell<Option<Vec<u8>>>,
    virtual_host: OnceCell<Option<Vec<u8>>>,
    client_address: OnceCell<Option<Vec<u8>>>,
    client_ip_source: ClientIpSource,
    client_ip: OnceCell<Option<IpAddr>>,
    start_nanos: OnceCell<u64>,
}

impl<H: Host> Request<H> {
    pub fn new(headers: HeaderMap, host: H) -> Self {
        Self {
            headers,
            body: None,
            host,
            route_name: OnceCell::new(),
            virtual_host: OnceCell::new(),
            client_address: OnceCell::new(),
            client_ip_source: ClientIpSource::Peer,
            client_ip: OnceCell::new(),
            start_nanos: OnceCell::new(),
        }
    }

    /// Where [`Request::client_ip`] looks (the peer by default).
    pub fn with_client_ip_source(mut self, source: ClientIpSource) -> Self {
        self.client_ip_source = source;
        self
    }

    /// Gives the rules the body the filter read.
    pub fn set_body(&mut self, body: Box<dyn BodyFields>) {
        self.body = Some(body);
    }

    /// A body field (see [`BodyFields::field`]); `None` also when the body
    /// was not read.
    pub fn body_field(&self, pointer: &str) -> Option<Cow<'_, [u8]>> {
        self.body.as_ref()?.field(pointer)
    }

    /// `:path` as sent, query included.
    pub fn full_path(&self) -> &[u8] {
        self.headers.first(":path").unwrap_or_default()
    }

    /// The path without its query.
    pub fn path(&self) -> &[u8] {
        split_query(self.full_path()).0
    }

    /// The raw (not percent-decoded) value of the first query parameter
    /// `name`; a parameter without `=` has an empty value.
    pub fn query_param(&self, name: &str) -> Option<&[u8]> {
        query_pairs(split_query(self.full_path()).1)
            .find(|(k, _)| *k == name.as_bytes())
            .map(|(_, v)| v)
    }

    /// `:authority` without its port (IPv6-aware), lower-cased by the host.
    pub fn authority_host(&self) -> &[u8] {
        let authority = self.headers.first(":authority").unwrap_or_default();
        strip_port(authority)
    }

    pub fn method(&self) -> &[u8] {
        self.headers.first(":method").unwrap_or_default()
    }

    /// `xds.route_name`.
    pub fn route_name(&self) -> Option<&[u8]> {
        self.route_name
            .get_or_init(|| self.host.property(&["xds", "route_name"]))
            .as_deref()
    }

    /// `xds.virtual_host_name`.
    pub fn virtual_host(&self) -> Option<&[u8]> {
        self.virtual_host
            .get_or_init(|| self.host.property(&["xds", "virtual_host_name"]))
            .as_deref()
    }

    /// `source.address`: the downstream peer as `ip:port`.
    pub fn client_address(&self) -> Option<&[u8]> {
        self.client_address
            .get_or_init(|| self.host.property(&["source", "address"]))
            .as_deref()
    }

    /// The client IP, from the configured source.
    pub fn client_ip(&self) -> Option<IpAddr> {
        *self.client_ip.get_or_init(|| {
            let forwarded = match self.client_ip_source {
                ClientIpSource::Peer => None,
                ClientIpSource::XForwardedFor { trusted_hops } => {
                    forwarded_for(self.headers.values("x-forwarded-for"), trusted_hops)
                }
            };
            forwarded.or_else(|| parse_ip(self.client_address()?))
        })
    }

    /// The value of the first cookie `name` across `cookie` lines.
    pub fn cookie(&self, name: &str) -> Option<&[u8]> {
        self.headers.values("cookie").find_map(|line| {
            line.split(|b| *b == b';').find_map(|pair| {
                let pair = pair.trim_ascii();
                let eq = pair.iter().position(|b| *b == b'=')?;
                let (key, value) = (pair.get(..eq)?, pair.get(eq + 1..)?);
                (key == name.as_bytes()).then_some(value)
            })
        })
    }

    /// A route metadata value: `xds.route_metadata.filter_metadata.<ns>.<key>`.
    pub fn route_metadata(&self, namespace: &str, key: &str) -> Option<Vec<u8>> {
        self.host
            .property(&["xds", "route_metadata", "filter_metadata", namespace, key])
    }

    /// When the filter first asked: nanoseconds since the Unix epoch.
    pub fn start_nanos(&self) -> u64 {
        *self.start_nanos.get_or_init(|| self.host.now_nanos())
    }
}

/// Splits a path at its first `?`.
pub fn split_query(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().position(|b| *b == b'?') {
        Some(i) => (
            path.get(..i).unwrap_or_default(),
            path.get(i + 1..).unwrap_or_default(),
        ),
        None => (path, &[]),
    }
}

/// `name=value` pairs of a query string, raw; empty segments skipped.
pub fn query_pairs(query: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    query
        .split(|b| *b == b'&')
        .filter(|s| !s.is_empty())
        .map(|pair| match pair.iter().position(|b| *b == b'=') {
            Some(i) => (
                pair.get(..i).unwrap_or_default(),
                pair.get(i + 1..).unwrap_or_default(),
            ),
            None => (pair, &[][..]),
        })
}

/// A host without its port: `[::1]:80` → `[::1]`, `a.b:8080` → `a.b`.
pub fn strip_port(authority: &[u8]) -> &[u8] {
    if authority.first() == Some(&b'[') {
        return match authority.iter().position(|b| *b == b']') {
            Some(end) => authority.get(..=end).unwrap_or(authority),
            None => authority,
        };
    }
    // Two or more colons without brackets: a bare IPv6 address, no port.
    if authority.iter().filter(|b| **b == b':').count() > 1 {
        return authority;
    }
    match authority.iter().rposition(|b| *b == b':') {
        Some(i)
            if authority
                .get(i + 1..)
                .is_some_and(|p| p.iter().all(u8::is_ascii_digit)) =>
        {
            authority.get(..i).unwrap_or(authority)
        }
        _ => authority,
    }
}

/// What a query component may carry unescaped: RFC 3986's unreserved
/// characters; everything else is percent-encoded.
const QUERY_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `value` percent-encoded for a query name or value (RFC 3986 unreserved
/// characters kept, upper-case hex).
pub fn encode_query_component(value: &[u8]) -> Vec<u8> {
    percent_encode(value, QUERY_COMPONENT)
        .flat_map(str::bytes)
        .collect()
}

/// A query name or value as servers read it (HTML's form encoding, which
/// frameworks apply to every query string): `+` is a space and `%XX` a
/// byte; a `%` without two hex digits stays as it is. Borrowed when there
/// is nothing to decode.
pub fn form_decode(component: &[u8]) -> Cow<'_, [u8]> {
    if !component.iter().any(|b| matches!(b, b'+' | b'%')) {
        return Cow::Borrowed(component);
    }
    let spaced: Vec<u8> = component
        .iter()
        .map(|b| if *b == b'+' { b' ' } else { *b })
        .collect();
    Cow::Owned(percent_decode(&spaced).collect())
}

/// Test support: a host answering from a table.
#[derive(Debug, Default, Clone)]
pub struct TableHost {
    pub properties: Vec<(String, Vec<u8>)>,
    pub now_nanos: u64,
}

impl TableHost {
    pub fn with(mut self, path: &str, value: &str) -> Self {
        self.properties
            .push((path.to_owned(), value.as_bytes().to_vec()));
        self
    }
}

impl Host for TableHost {
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        let key = path.join(".");
        self.properties
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone())
    }

    fn now_nanos(&self) -> u64 {
        self.now_nanos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(path: &str, authority: &str) -> Request<TableHost> {
        let headers = HeaderMap::new(vec![
            (":method".into(), b"GET".to_vec()),
            (":path".into(), path.as_bytes().to_vec()),
            (":authority".into(), authority.as_bytes().to_vec()),
        ]);
        Request::new(headers, TableHost::default().with("xds.route_name", "r1"))
    }

    #[test]
    fn path_and_query_are_split_and_parameters_read_raw() {
        let r = request("/a/b?x=1&flag&y=%20z&x=2", "h");
        assert_eq!(r.path(), b"/a/b");
        assert_eq!(r.query_param("x"), Some(&b"1"[..]));
        assert_eq!(r.query_param("flag"), Some(&b""[..]));
        assert_eq!(r.query_param("y"), Some(&b"%20z"[..]));
        assert_eq!(r.query_param("none"), None);
        assert_eq!(request("/", "h").query_param("x"), None);
    }

    #[test]
    fn ports_are_stripped_ipv6_aware() {
        assert_eq!(strip_port(b"a.example:8080"), b"a.example");
        assert_eq!(strip_port(b"a.example"), b"a.example");
        assert_eq!(strip_port(b"[::1]:80"), b"[::1]");
        assert_eq!(strip_port(b"[::1]"), b"[::1]");
        assert_eq!(strip_port(b"::1"), b"::1");
        assert_eq!(request("/", "h:1").authority_host(), b"h");
    }

    #[test]
    fn properties_come_from_the_host() {
        let r = request("/", "h");
        assert_eq!(r.route_name(), Some(&b"r1"[..]));
        assert_eq!(r.virtual_host(), None);
    }

    #[test]
    fn cookies_are_found_across_lines() {
        let headers = HeaderMap::new(vec![
            ("cookie".into(), b"a=1; session=xyz".to_vec()),
            ("cookie".into(), b"b=2;c=".to_vec()),
        ]);
        let r = Request::new(headers, TableHost::default());
        assert_eq!(r.cookie("session"), Some(&b"xyz"[..]));
        assert_eq!(r.cookie("b"), Some(&b"2"[..]));
        assert_eq!(r.cookie("c"), Some(&b""[..]));
        assert_eq!(r.cookie("sess"), None);
    }

    #[test]
    fn the_client_ip_comes_from_the_configured_source() {
        let headers = HeaderMap::new(vec![(
            "x-forwarded-for".into(),
            b"9.9.9.9, 8.8.8.8".to_vec(),
        )]);
        let host = TableHost::default().with("source.address", "10.0.0.1:5000");
        let peer = Request::new(headers.clone(), host.clone());
        assert_eq!(peer.client_ip(), "10.0.0.1".parse().ok());
        let xff = |hops| {
            Request::new(headers.clone(), host.clone())
                .with_client_ip_source(ClientIpSource::XForwardedFor { trusted_hops: hops })
                .client_ip()
        };
        assert_eq!(xff(0), "8.8.8.8".parse().ok());
        assert_eq!(xff(1), "9.9.9.9".parse().ok());
        assert_eq!(xff(2), "10.0.0.1".parse().ok());
    }

    #[test]
    fn query_components_are_percent_encoded() {
        assert_eq!(encode_query_component(b"a b&c=d~"), b"a%20b%26c%3Dd~");
    }
}
