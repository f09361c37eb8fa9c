//! Running the rules on a request: the first enabled rule whose match holds
//! (else the default) acts. Forwarding actions edit the request in place;
//! redirects and direct responses become a local reply.

use filter_common::scope::first_match;
use filter_common::template::Vars;
use filter_proxy::headers::HeaderMap;
use filter_proxy::reply::LocalReply;
use filter_proxy::request::{Host, Request, split_query, strip_port};

use crate::config::{Action, Body, Config, Redirect, Respond, Rewrite, Split, Sticky, Upstream};

/// What decided the request's fate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// The rule with this id (an index into [`Config::rule_names`]).
    Rule(usize),
    /// No rule matched; the default action applied.
    Default,
    /// No rule matched and there is no default: the request goes on as is.
    Nothing,
}

/// Why the filter answered itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    Redirect,
    Direct,
    Denied,
}

impl ReplyKind {
    /// The response-code details Envoy logs (`%RESPONSE_CODE_DETAILS%`).
    pub fn details(self) -> &'static str {
        match self {
            Self::Redirect => "routing_redirect",
            Self::Direct => "routing_direct_response",
            Self::Denied => "routing_denied",
        }
    }
}

/// The result of routing one request.
#[derive(Debug)]
pub struct Outcome {
    pub taken: Taken,
    /// A reply to send instead of forwarding.
    pub reply: Option<(ReplyKind, LocalReply)>,
}

/// Where unsticky requests land: a golden-ratio (Weyl) sequence from a
/// random start per VM. Consecutive points fill [0, 1) evenly, so any run of
/// N requests follows the weights within about log(N)/N, where independent
/// random draws would stray by 1/sqrt(N) (a point or more over 10,000).
#[derive(Debug, Clone, Copy)]
pub struct Spreader(u64);

impl Spreader {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next point, scaled to `0..total`.
    pub fn next_below(&mut self, total: u64) -> u64 {
        // 2^64 / golden ratio: the step with the most even coverage.
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        scale(self.0, total)
    }
}

/// `x / 2^64 * total`, without the bias of `x % total`.
fn scale(x: u64, total: u64) -> u64 {
    u64::try_from((u128::from(x) * u128::from(total)) >> 64).unwrap_or(0)
}

/// SplitMix64's finalizer: spreads every input bit over the output.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// FNV-1a, fed piece by piece and mixed at the end: a stable hash of a
/// sticky key, the same in every VM.
struct StableHash(u64);

impl StableHash {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        mix(self.0)
    }
}

impl Config {
    /// Routes `request`, editing its headers in place. The cluster and tag
    /// headers belong to the filter: a client's values are always removed.
    pub fn route<H: Host>(&self, request: &mut Request<H>, spreader: &mut Spreader) -> Outcome {
        request.headers.remove(&self.cluster_header);
        request.headers.remove(&self.tag_header);
        let policy = match first_match(&self.scopes, request) {
            Some(i) => self.scopes.get(i).map_or(&self.global, |(_, p)| p),
            None => &self.global,
        };
        let chosen = match policy.rules.iter().find(|r| r.when.matches(request)) {
            Some(rule) => Some((Taken::Rule(rule.id), &rule.action)),
            None => policy.default.as_ref().map(|a| (Taken::Default, a)),
        };
        let Some((taken, action)) = chosen else {
            return Outcome {
                taken: Taken::Nothing,
                reply: None,
            };
        };
        let reply = match action {
            Action::Forward { upstream, rewrite } => {
                if let Some(upstream) = upstream {
                    self.choose(upstream, request, spreader);
                }
                apply_rewrite(rewrite, request);
                None
            }
            Action::Redirect(r) => Some((ReplyKind::Redirect, redirect(r, request))),
            Action::Respond { reply, denied } => {
                let kind = if *denied {
                    ReplyKind::Denied
                } else {
                    ReplyKind::Direct
                };
                Some((kind, respond(reply, request)))
            }
        };
        Outcome { taken, reply }
    }

    fn choose<H: Host>(
        &self,
        upstream: &Upstream,
        request: &mut Request<H>,
        spreader: &mut Spreader,
    ) {
        match upstream {
            Upstream::Cluster(c) => request.headers.set(&self.cluster_header, c.as_bytes()),
            Upstream::FromBody(map) => {
                let value = request.body_field(&map.pointer);
                let cluster = value
                    .as_deref()
                    .and_then(|v| map.clusters.iter().find(|(k, _)| k.as_slice() == v))
                    .map(|(_, c)| c)
                    .or(map.default.as_ref());
                if let Some(c) = cluster {
                    request.headers.set(&self.cluster_header, c.as_bytes());
                }
            }
            Upstream::Split(split) => {
                let Some(target) = pick(split, request, spreader) else {
                    return;
                };
                if let Some(c) = &target.cluster {
                    request.headers.set(&self.cluster_header, c.as_bytes());
                }
                if let Some(t) = &target.tag {
                    request.headers.set(&self.tag_header, t.as_bytes());
                }
            }
        }
    }
}

/// The target for this request: by the sticky key's hash when the request
/// has one, else the spreader's next point; each with share weight / total.
fn pick<'s, H: Host>(
    split: &'s Split,
    request: &Request<H>,
    spreader: &mut Spreader,
) -> Option<&'s crate::config::Target> {
    let key = split.sticky.as_ref().and_then(|s| sticky_hash(s, request));
    let mut point = match key {
        Some(hash) => scale(hash, split.total),
        None => spreader.next_below(split.total),
    };
    split.targets.iter().find(|t| {
        if point < t.weight {
            true
        } else {
            point -= t.weight;
            false
        }
    })
}

/// The hash of the request's sticky key, read in place (`None`: the
/// request has no key). A repeated header hashes as its lines joined by
/// `,`; a client IP as its address bytes.
fn sticky_hash<H: Host>(sticky: &Sticky, request: &Request<H>) -> Option<u64> {
    let mut hash = StableHash::new();
    match sticky {
        Sticky::Header(name) => {
            let mut lines = request.headers.values(name).peekable();
            lines.peek()?;
            for (i, line) in lines.enumerate() {
                if i > 0 {
                    hash.write(b",");
                }
                hash.write(line);
            }
        }
        Sticky::Cookie(name) => hash.write(request.cookie(name)?),
        Sticky::ClientIp => match request.client_ip()? {
            std::net::IpAddr::V4(ip) => hash.write(&ip.octets()),
            std::net::IpAddr::V6(ip) => hash.write(&ip.octets()),
        },
    }
    Some(hash.finish())
}

/// Host first (a host taken from the path reads the path as sent), then
/// path, then query.
fn apply_rewrite<H: Host>(rewrite: &Rewrite, request: &mut Request<H>) {
    if let Some(host) = &rewrite.host {
        let path = request.path().to_vec();
        let headers = &request.headers;
        if let Some(new) = host.apply(|name| headers.get(name), &path) {
            let original = request.headers.get(":authority").unwrap_or_default();
            if new != original {
                let forwarded = match request.headers.get("x-forwarded-host") {
                    Some(mut existing) if !existing.is_empty() => {
                        existing.push(b',');
                        existing.extend_from_slice(&original);
                        existing
                    }
                    _ => original,
                };
                request.headers.set("x-forwarded-host", &forwarded);
                request.headers.set(":authority", &new);
            }
        }
    }
    if let Some(path_rewrite) = &rewrite.path {
        let full = request.full_path().to_vec();
        let (path, query) = split_query(&full);
        if let Some(mut new) = path_rewrite.apply(path) {
            if !query.is_empty() {
                new.push(b'?');
                new.extend_from_slice(query);
            }
            if new != full {
                request.headers.set(":path", &new);
            }
        }
    }
    for op in &rewrite.query {
        op.apply(request);
    }
}

/// The `location` of a redirect: each part from the configuration or the
/// request. The port stays unless `port` is given or the scheme changes,
/// and is left out when it is the scheme's default.
fn redirect<H: Host>(r: &Redirect, request: &Request<H>) -> LocalReply {
    let headers = &request.headers;
    let original_scheme = headers
        .get("x-forwarded-proto")
        .or_else(|| headers.get(":scheme"))
        .map(|s| s.to_ascii_lowercase())
        .unwrap_or_else(|| b"http".to_vec());
    let scheme = r
        .scheme
        .as_ref()
        .map_or_else(|| original_scheme.clone(), |s| s.as_bytes().to_vec());
    let authority = headers.get(":authority").unwrap_or_default();
    let host = strip_port(&authority);
    let original_port = authority.get(host.len() + 1..).filter(|p| !p.is_empty());
    let port: Option<Vec<u8>> = match (r.port, original_port) {
        (Some(p), _) => Some(p.to_string().into_bytes()),
        (None, Some(p)) if scheme == original_scheme => Some(p.to_vec()),
        _ => None,
    };
    let default_port: &[u8] = match scheme.as_slice() {
        b"http" => b"80",
        b"https" => b"443",
        _ => b"",
    };
    let full = request.full_path();
    let (path, query) = split_query(full);
    let new_path = r
        .path
        .as_ref()
        .and_then(|p| p.apply(path))
        .unwrap_or_else(|| path.to_vec());
    let mut location = scheme;
    location.extend_from_slice(b"://");
    location.extend_from_slice(r.host.as_deref().unwrap_or(host));
    if let Some(port) = port.filter(|p| p.as_slice() != default_port) {
        location.push(b':');
        location.extend_from_slice(&port);
    }
    location.extend_from_slice(&new_path);
    if !r.strip_query && !query.is_empty() {
        location.push(b'?');
        location.extend_from_slice(query);
    }
    LocalReply {
        status: r.status,
        headers: vec![("location".to_owned(), location)],
        body: Vec::new(),
    }
}

fn respond<H: Host>(r: &Respond, request: &Request<H>) -> LocalReply {
    let vars = Vars {
        request,
        response: None,
    };
    LocalReply {
        status: r.status,
        headers: r
            .headers
            .iter()
            .map(|(name, value)| (name.clone(), value.render(&vars)))
            .collect(),
        body: match &r.body {
            Body::Text(t) => t.render(&vars),
            Body::Json(bytes) => bytes.clone(),
        },
    }
}

/// The headers as the filter should leave them, for tests and benches that
/// route a plain header list.
pub fn route_headers<H: Host>(
    config: &Config,
    headers: Vec<(String, Vec<u8>)>,
    host: H,
    spreader: &mut Spreader,
) -> (Outcome, HeaderMap) {
    let mut request =
        Request::new(HeaderMap::new(headers), host).with_client_ip_source(config.client_ip);
    let outcome = config.route(&mut request, spreader);
    (outcome, request.headers)
}
