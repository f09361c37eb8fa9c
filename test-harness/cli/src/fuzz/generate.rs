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

/// Draws steps for one filter chain.
pub(crate) struct Generator<'a> {
    pub(crate) rng: ChaCha8Rng,
    pub(crate) dictionary: &'a Dictionary,
    /// The callout upstreams the chain may call, by name.
    pub(crate) upstreams: Vec<String>,
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

    fn header_value(&mut self) -> String {
        let d = self.dictionary;
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
            return path.chars().filter(|c| c.is_ascii_graphic()).collect();
        }
        let mut path = String::new();
        for _ in 0..self.below(4) {
            path.push('/');
            let word = self.word();
            path.push_str(word.replace(['?', '#', ' '], "").trim_start_matches('/'));
        }
        if path.is_empty() {
            path.push('/');
        }
        if self.chance(30) {
            let (key, value) = (self.word(), self.word());
            let query: String = format!("{key}={value}")
                .chars()
                .filter(|c| c.is_ascii_graphic() && *c != '#')
                .collect();
            path.push('?');
            path.push_str(&query);
        }
        path.chars().filter(|c| c.is_ascii_graphic()).collect()
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

    /// One step: a request, the backend's answer, the upstreams' answers.
    pub(crate) fn step(&mut self) -> Value {
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
            let answer = match self.below(6) {
                0 => json!({"failure": "reset"}),
                1 => json!({"failure": "timeout"}),
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
