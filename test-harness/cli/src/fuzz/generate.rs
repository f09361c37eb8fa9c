//! Random scenario steps, valid as Envoy would deliver them: a method and
//! path, up to a dozen headers (names and values from the dictionary, from
//! headers every proxy sees, or random tokens, all within what Envoy's
//! codecs accept), a text or JSON body in random chunks over HTTP/1.1 or
//! HTTP/2, the backend's answer, the callout upstreams' answers (a reply,
//! a reset or a timeout) and pauses that let ticks and callout timeouts
//! fire. A step is a scenario step as JSON, so what the fuzzer runs is
//! exactly what a reproduction file says.

use rand_chacha::ChaCha8Rng;
use rand_core::RngCore;
use serde_json::{Map, Value, json};

use super::dictionary::Dictionary;

/// Headers every proxy sees, with values a filter may parse.
const COMMON: &[(&str, &[&str])] = &[
    (
        "content-type",
        &[
            "application/json",
            "text/plain",
            "application/grpc",
            "application/x-www-form-urlencoded",
        ],
    ),
    (
        "authorization",
        &[
            "Bearer ",
            "Basic ",
            "Basic dXNlcjpwYXNz",
            "Bearer a.b.c",
            "",
        ],
    ),
    (
        "x-forwarded-for",
        &["10.0.0.1", "10.0.0.1, 192.168.1.2", "::1", "not-an-ip", ""],
    ),
    ("cookie", &["a=b", "session=x; other=y", "=", ""]),
    ("accept", &["*/*", "application/json"]),
    ("user-agent", &["curl/8", ""]),
    ("origin", &["https://example.com", "null"]),
    ("x-request-id", &["abc", ""]),
    ("content-encoding", &["gzip", "identity"]),
];
/// Headers the runners write themselves (framing, the connection) or that
/// change how the client and Envoy speak (`expect: 100-continue`): a drawn
/// one would make the exchange invalid rather than test the filter.
const RESERVED: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "proxy-connection",
    "host",
    "expect",
    "te",
];
const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"];
const STATUSES: &[u16] = &[
    200, 200, 200, 201, 204, 301, 302, 400, 401, 403, 404, 429, 500, 502, 503,
];

/// A character a request target may carry as it is (RFC 3986: unreserved,
/// sub-delims, `:`, `@`, `/`, `?`): Envoy's HTTP/1 parser refuses others
/// before any filter runs, and the fuzzer tests filters.
fn url_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@/?".contains(c)
}

/// Draws steps for one filter chain.
pub(crate) struct Generator<'a> {
    pub(crate) rng: ChaCha8Rng,
    pub(crate) dictionary: &'a Dictionary,
    /// The callout upstreams the chain may call, by name.
    pub(crate) upstreams: Vec<String>,
    /// Steps to start from (a scenario's own, without their expectations):
    /// half of the drawn steps are one of them, changed a little, which
    /// reaches what random requests rarely do (a valid token, a signed
    /// body) and then breaks it.
    pub(crate) seeds: Vec<Value>,
}

impl Generator<'_> {
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.rng.next_u64() % n as u64) as usize
        }
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'s>(&mut self, items: &'s [&'s str]) -> &'s str {
        items[self.below(items.len())]
    }

    fn word(&mut self) -> String {
        let d = self.dictionary;
        match self.below(4) {
            0 if !d.values.is_empty() => d.values[self.below(d.values.len())].clone(),
            1 if !d.names.is_empty() => d.names[self.below(d.names.len())].clone(),
            _ => {
                let len = 1 + self.below(16);
                self.token(len)
            }
        }
    }

    /// Random printable text that Envoy's codecs accept in a header value
    /// (no CR, LF or NUL; other controls are refused by HTTP/1 parsers too).
    fn token(&mut self, len: usize) -> String {
        const ALPHABET: &[u8] =
            b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@/?%# \"<>[]{}|\\^`";
        (0..len)
            .map(|_| ALPHABET[self.below(ALPHABET.len())] as char)
            .collect()
    }

    /// A token shaped like a JWT (RFC 7519): a header and claims of JSON
    /// drawn from the dictionary (issuers, audiences, key ids), an
    /// arbitrary signature; what gets a filter past "is this a JWT?" into
    /// its key lookup, fetch and verification.
    fn jwt(&mut self) -> String {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let alg = self.pick(&["RS256", "ES256", "ES384", "PS256", "EdDSA", "HS256", "none"]);
        let header = json!({"alg": alg, "typ": "JWT", "kid": self.word()});
        let now = 1_767_225_600 + self.below(400_000_000) as u64;
        let mut claims = Map::new();
        // Issuers are URLs: the configuration's, most of the time.
        let urls: Vec<&String> = self
            .dictionary
            .values
            .iter()
            .filter(|v| v.starts_with("https://") || v.starts_with("http://"))
            .collect();
        if !urls.is_empty() && self.chance(70) {
            claims.insert("iss".into(), json!(urls[self.below(urls.len())]));
        }
        for key in ["iss", "aud", "sub", "scope"] {
            if claims.contains_key(key) {
                continue;
            }
            if self.chance(80) {
                claims.insert(key.into(), json!(self.word()));
            }
        }
        if self.chance(70) {
            claims.insert("exp".into(), json!(now));
        }
        let signature: Vec<u8> = (0..self.below(300))
            .map(|_| self.rng.next_u32() as u8)
            .collect();
        format!(
            "{}.{}.{}",
            b64.encode(header.to_string()),
            b64.encode(Value::Object(claims).to_string()),
            b64.encode(signature)
        )
    }

    fn header_value(&mut self) -> String {
        let d = self.dictionary;
        if self.chance(8) {
            let jwt = self.jwt();
            return if self.chance(50) {
                format!("Bearer {jwt}")
            } else {
                jwt
            };
        }
        let value = match self.below(6) {
            0 => String::new(),
            1 => (self.rng.next_u64() % 100_000).to_string(),
            2 => format!("{}{}", self.word(), self.word()),
            // Any dictionary entry verbatim: a configured key, token or name.
            3 | 4 if !d.values.is_empty() || !d.names.is_empty() => {
                let n = self.below(d.values.len() + d.names.len());
                d.values
                    .get(n)
                    .unwrap_or_else(|| &d.names[n - d.values.len()])
                    .clone()
            }
            _ => self.word(),
        };
        // What an HTTP client can send: no control characters, no leading
        // or trailing blanks (codecs strip them).
        value
            .chars()
            .filter(|c| !c.is_control())
            .collect::<String>()
            .trim()
            .to_owned()
    }

    fn header_name(&mut self) -> String {
        let d = self.dictionary;
        if !d.names.is_empty() && self.chance(70) {
            return d.names[self.below(d.names.len())].clone();
        }
        let len = 1 + self.below(8);
        format!("x-{}", self.token(len).to_ascii_lowercase())
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect()
    }

    fn path(&mut self) -> String {
        // Paths the configuration names, as they are or one level deeper,
        // reach the rules that match on them.
        let paths: Vec<&String> = self
            .dictionary
            .values
            .iter()
            .filter(|v| v.starts_with('/') && !v.contains(' '))
            .collect();
        if !paths.is_empty() && self.chance(50) {
            let mut path = paths[self.below(paths.len())].clone();
            if self.chance(30) {
                path.push('/');
                path.push_str(&self.token(3));
            }
            return path.chars().filter(|c| url_char(*c)).collect();
        }
        let mut path = String::new();
        for _ in 0..self.below(4) {
            path.push('/');
            let word = self.word();
            path.push_str(word.replace(['?', '#', ' '], "").trim_start_matches('/'));
            // A percent-encoded byte now and then (`%2F`, `%2e`, `%00`...),
            // well-formed as the parser wants it.
            if self.chance(15) {
                let byte = self.rng.next_u32() as u8;
                path.push_str(&format!("%{byte:02X}"));
            }
        }
        if path.is_empty() {
            path.push('/');
        }
        if self.chance(30) {
            let (key, value) = (self.word(), self.word());
            let query: String = format!("{key}={value}")
                .chars()
                .filter(|c| url_char(*c) && *c != '?')
                .collect();
            path.push('?');
            path.push_str(&query);
        }
        path.chars().filter(|c| url_char(*c) || *c == '%').collect()
    }

    fn body(&mut self) -> String {
        match self.below(4) {
            0 => {
                let mut object = Map::new();
                for _ in 0..self.below(6) {
                    let key = self.word();
                    let value = match self.below(4) {
                        0 => json!(self.rng.next_u64() % 1000),
                        1 => json!(self.chance(50)),
                        2 => {
                            let mut inner = Map::new();
                            inner.insert(self.word(), json!(self.word()));
                            Value::Object(inner)
                        }
                        _ => json!(self.word()),
                    };
                    object.insert(key, value);
                }
                Value::Object(object).to_string()
            }
            1 => {
                let len = self.below(9000);
                self.token(len)
            }
            _ => {
                let n = 1 + self.below(8);
                (0..n).map(|_| self.word()).collect::<Vec<_>>().join(" ")
            }
        }
    }

    fn chunks(&mut self, len: usize) -> Vec<usize> {
        let mut chunks = Vec::new();
        let mut left = len;
        while left > 1 && chunks.len() < 8 && self.chance(50) {
            let size = 1 + self.below(left - 1);
            chunks.push(size);
            left -= size;
        }
        chunks
    }

    fn headers(&mut self, max: usize) -> Map<String, Value> {
        let mut headers = Map::new();
        for _ in 0..self.below(max + 1) {
            if self.chance(35) {
                let (name, values) = COMMON[self.below(COMMON.len())];
                let value = values[self.below(values.len())].to_owned();
                let value = if self.chance(30) {
                    format!("{value}{}", self.header_value())
                } else {
                    value
                };
                headers.insert(name.to_owned(), json!(value.trim()));
            } else {
                let name = self.header_name();
                let value = self.header_value();
                if !name.is_empty() && !name.starts_with(':') && !RESERVED.contains(&name.as_str())
                {
                    headers.insert(name, json!(value));
                }
            }
        }
        headers
    }

    /// One step: a seed changed a little, or a new random one.
    pub(crate) fn step(&mut self) -> Value {
        if !self.seeds.is_empty() && self.chance(50) {
            let n = self.below(self.seeds.len());
            let seed = self.seeds[n].clone();
            return self.mutate(seed);
        }
        self.fresh()
    }

    /// One to three changes to a seed step: a header dropped, added,
    /// replaced or its value cut, a character changed or doubled; a new
    /// path, method, protocol or backend status; the body cut or grown.
    fn mutate(&mut self, mut step: Value) -> Value {
        for _ in 0..1 + self.below(3) {
            let names: Vec<String> = step["request"]["headers"]
                .as_object()
                .map(|h| h.keys().cloned().collect())
                .unwrap_or_default();
            match self.below(9) {
                0 if !names.is_empty() => {
                    let name = &names[self.below(names.len())];
                    if let Some(h) = step["request"]["headers"].as_object_mut() {
                        h.remove(name);
                    }
                }
                1 | 2 if !names.is_empty() => {
                    let name = names[self.below(names.len())].clone();
                    let value = step["request"]["headers"][&name]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                    // Codecs strip a value's outer blanks: send none.
                    step["request"]["headers"][&name] = json!(self.damage(&value).trim());
                }
                3 => {
                    let name = self.header_name();
                    let value = self.header_value();
                    if !name.is_empty() && !RESERVED.contains(&name.as_str()) {
                        step["request"]["headers"][&name] = json!(value);
                    }
                }
                4 => step["request"]["path"] = json!(self.path()),
                5 => step["request"]["method"] = json!(self.pick(METHODS)),
                6 => {
                    let body = step["request"]["body"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                    step["request"]["body"] = json!(self.damage(&body));
                    if let Some(r) = step["request"].as_object_mut() {
                        r.remove("chunks");
                    }
                }
                7 => step["response"]["status"] = json!(STATUSES[self.below(STATUSES.len())]),
                _ => step["request"]["protocol"] = json!(self.pick(&["http1", "http2"])),
            }
        }
        step
    }

    /// `value` with one change: cut short, a character replaced, removed or
    /// doubled, or a dictionary word put in.
    fn damage(&mut self, value: &str) -> String {
        let chars: Vec<char> = value.chars().collect();
        let at = self.below(chars.len() + 1);
        let mut out: Vec<char> = chars.clone();
        match self.below(5) {
            0 => out.truncate(at),
            1 if at < out.len() => out[at] = self.token(1).chars().next().unwrap_or('x'),
            2 if at < out.len() => {
                out.remove(at);
            }
            3 if at < out.len() => out.insert(at, chars[at]),
            _ => {
                let word = self.word();
                out.splice(at..at, word.chars());
            }
        }
        out.into_iter().filter(|c| !c.is_control()).collect()
    }

    /// A new random step: a request, the backend's answer, the upstreams'
    /// answers.
    fn fresh(&mut self) -> Value {
        let method = self.pick(METHODS);
        let mut request =
            json!({"method": method, "path": self.path(), "headers": self.headers(10)});
        if self.chance(40) {
            let body = self.body();
            if !body.is_empty() {
                if self.chance(40) {
                    let chunks = self.chunks(body.len());
                    request["chunks"] = json!(chunks);
                }
                // Most JSON bodies say so, as clients do: filters that
                // read JSON bodies look at the media type first.
                if body.starts_with('{') && self.chance(70) {
                    request["headers"]["content-type"] = json!("application/json");
                }
                request["body"] = json!(body);
            }
        }
        if self.chance(30) {
            request["protocol"] = json!("http2");
        }
        let status = STATUSES[self.below(STATUSES.len())];
        let mut response = json!({"status": status, "headers": self.headers(4)});
        if status != 204 && status != 304 && self.chance(50) {
            response["body"] = json!(self.body());
        }
        let mut step = json!({"request": request, "response": response});
        if self.chance(10) {
            step["wait_ms"] = json!(self.below(2000));
        }
        let mut answers = Map::new();
        for name in self.upstreams.clone() {
            if !self.chance(50) {
                continue;
            }
            let answer = match self.below(7) {
                0 => json!({"failure": "reset"}),
                1 => json!({"failure": "timeout"}),
                // A gRPC service's answer, for a filter that calls one.
                2 => {
                    let status = [0, 0, 2, 5, 7, 14, 16][self.below(7)];
                    json!({"grpc": {"status": status, "message": self.word(), "response": self.body()}})
                }
                _ => {
                    let status = STATUSES[self.below(STATUSES.len())];
                    json!({"status": status, "headers": self.headers(3), "body": self.body()})
                }
            };
            answers.insert(name, answer);
        }
        if !answers.is_empty() {
            step["upstreams"] = Value::Object(answers);
        }
        step
    }
}

#[cfg(test)]
mod tests {
    use rand_core::SeedableRng;

    use super::*;
    use crate::scenario::Step;

    #[test]
    fn steps_are_scenario_steps_and_the_seed_repeats_them() {
        let dictionary = Dictionary {
            names: vec!["x-api-key".into(), "content-length".into()],
            values: vec!["/v1".into(), "{\"a\":1}".into()],
        };
        let draw = |seed| {
            let mut g = Generator {
                rng: ChaCha8Rng::seed_from_u64(seed),
                dictionary: &dictionary,
                upstreams: vec!["jwks".into()],
                seeds: vec![
                    json!({"request": {"method": "POST", "headers": {"authorization": "Bearer a.b.c"}, "body": "{}"}}),
                ],
            };
            (0..200).map(|_| g.step()).collect::<Vec<_>>()
        };
        let steps = draw(7);
        assert_eq!(steps, draw(7));
        assert_ne!(steps, draw(8));
        for step in &steps {
            let parsed: Step = serde_json::from_value(step.clone()).expect("a valid step");
            let headers = &parsed.request.headers;
            assert!(headers.keys().all(|k| !k.is_empty() && !k.starts_with(':')));
            assert!(headers.keys().all(|k| !RESERVED.contains(&k.as_str())));
            assert!(parsed.request.path.starts_with('/'));
        }
        assert!(
            steps
                .iter()
                .any(|s| s["request"]["headers"].get("x-api-key").is_some())
        );
        assert!(
            steps
                .iter()
                .any(|s| s["upstreams"]["jwks"]["failure"] == "timeout")
        );
    }
}
