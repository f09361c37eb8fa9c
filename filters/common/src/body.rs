//! Bodies as JSON documents: what a rule or template reads from a body by
//! JSON Pointer (RFC 6901), and the checks a configured pointer passes.
//!
//! A body is parsed with [`crate::value`], so a member named twice (however
//! it is escaped) makes the body "not JSON": a router and the service
//! behind it must never read two different values for one field (serde_json
//! and most services keep the last, a JSON-Pointer reader over another
//! parser the first).
//!
//! [`BodyPolicy`] is the `body` section the filters share: which requests
//! wait for their body, the most a filter holds, and what a body past it or
//! not JSON gets.
//!
//! A field renders as a rule compares it and a template writes it: a string
//! as its text (unescaped), any other value as compact JSON (`42`, `true`,
//! `null`, `{"a":1}`).

use std::borrow::Cow;

use filter_proxy::request::{BodyFields, Host, Request};

use crate::config::{Fields, Problems, join, one_of, tagged};
use crate::expr::Expr;
use crate::template::{Side, Template};
use crate::value::{self, Value};

const POLICY_FIELDS: &[&str] = &[
    "when",
    "content_types",
    "max_bytes",
    "over_limit",
    "not_json",
];

/// The most body a request may make the filter hold unless configured.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 64 * 1024;
/// The most `body.max_bytes` may say: Envoy holds the body in memory, per
/// request, and past its own buffer limit (`per_connection_buffer_limit_bytes`,
/// 1 MiB by default) answers 413 itself.
pub const MAX_BODY_BYTES: u64 = 16 * 1024 * 1024;

/// When a filter reads a request's body before it lets the headers go (the
/// `body` section of a configuration).
#[derive(Debug)]
pub struct BodyPolicy {
    /// Requests that wait (by default POST, PUT and PATCH).
    pub when: Expr,
    /// Media types (lower case, no parameters) that wait; a `+json` suffix
    /// (`application/vnd.api+json`) counts as `application/json`.
    pub content_types: Vec<String>,
    /// The most the filter holds, in bytes.
    pub max_bytes: u64,
    /// What a body past `max_bytes` gets.
    pub over_limit: OverLimit,
    /// What a body that is not one JSON document gets.
    pub not_json: NotJson,
}

/// What a body past the limit gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverLimit {
    /// A local 413 (`routing_body_too_large`).
    Reject,
    /// Routed without its body: body conditions see no fields.
    Continue,
}

/// What a body that is not JSON gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotJson {
    /// Routed with no body fields (rules test them as absent).
    Continue,
    /// A local 400 (`routing_body_not_json`).
    Reject,
}

/// The rules and default of the global policy or of one scope.
impl Default for BodyPolicy {
    fn default() -> Self {
        let mut problems = Problems::default();
        let when = Expr::decode(&default_body_methods(), "", &mut problems);
        BodyPolicy {
            when,
            content_types: vec!["application/json".to_owned()],
            max_bytes: DEFAULT_MAX_BODY_BYTES,
            over_limit: OverLimit::Reject,
            not_json: NotJson::Continue,
        }
    }
}

/// `{"method": {"one_of": ["POST", "PUT", "PATCH"]}}`: the methods whose
/// requests carry a body to route by.
fn default_body_methods() -> Value {
    let mut matcher = crate::value::Map::new();
    matcher.insert(
        "one_of",
        Value::Array(vec!["POST".into(), "PUT".into(), "PATCH".into()]),
    );
    let mut when = crate::value::Map::new();
    when.insert("method", Value::Object(matcher));
    Value::Object(when)
}

impl BodyPolicy {
    /// Decodes a `body` section at `at`.
    pub fn decode(value: &Value, at: &str, problems: &mut Problems) -> Option<BodyPolicy> {
        let f = Fields::new(value, at, POLICY_FIELDS, problems)?;
        let mut policy = BodyPolicy::default();
        if let Some(v) = f.value("when") {
            policy.when = Expr::decode(v, &f.at("when"), problems);
            let mut read = Selection::default();
            policy.when.body_fields(&mut read);
            if !read.is_empty() {
                problems.push(
                    &f.at("when"),
                    "which requests wait for the body cannot depend on the body",
                );
            }
        }
        if f.value("content_types").is_some() {
            let at = f.at("content_types");
            policy.content_types = f
                .strings("content_types", problems)
                .into_iter()
                .map(str::to_ascii_lowercase)
                .collect();
            if policy.content_types.is_empty() {
                problems.push(&at, "an empty list: no request would wait for its body");
            }
            for (i, t) in policy.content_types.iter().enumerate() {
                if t.contains(';') || !t.contains('/') || t.contains(' ') {
                    problems.push(
                        &join(&at, &i),
                        format!(
                            "`{t}`: a media type such as `application/json`, without parameters"
                        ),
                    );
                }
            }
        }
        if let Some(n) = f.integer("max_bytes", 1, MAX_BODY_BYTES, problems) {
            policy.max_bytes = n;
        }
        if let Some(v) = f.string("over_limit", problems) {
            match one_of(v, &["reject", "continue"], &f.at("over_limit"), problems) {
                Some("continue") => policy.over_limit = OverLimit::Continue,
                Some(_) => policy.over_limit = OverLimit::Reject,
                None => {}
            }
        }
        if let Some(v) = f.string("not_json", problems) {
            match one_of(v, &["continue", "reject"], &f.at("not_json"), problems) {
                Some("reject") => policy.not_json = NotJson::Reject,
                Some(_) => policy.not_json = NotJson::Continue,
                None => {}
            }
        }
        Some(policy)
    }

    /// Whether a request with these headers waits for its body: it has one
    /// (`end_of_stream` is false), it meets `when`, and its media type is
    /// listed.
    pub fn waits<H: Host>(&self, request: &Request<H>, end_of_stream: bool) -> bool {
        if end_of_stream || !self.when.matches(request) {
            return false;
        }
        self.is_listed(request.headers.get("content-type").as_deref())
    }

    /// Whether a message with this `content-type` has a listed media type.
    pub fn is_listed(&self, content_type: Option<&[u8]>) -> bool {
        let Some(content_type) = content_type else {
            return false;
        };
        let media = content_type
            .split(|b| *b == b';')
            .next()
            .unwrap_or_default()
            .trim_ascii()
            .to_ascii_lowercase();
        self.content_types.iter().any(|t| {
            media == t.as_bytes()
                || (t == "application/json"
                    && media.starts_with(b"application/")
                    && media.ends_with(b"+json"))
        })
    }
}

/// One edit of a JSON body (`{"set": {"pointer", "value" | "template"}}`,
/// `{"remove": {"pointer"}}`), as RFC 6902's `add` and `remove` read the
/// pointer: `set` needs the parent to exist; in an object it replaces the
/// member in place or appends it, in an array it replaces the item at an
/// index, or appends at the array's length or at `-`. An edit whose place
/// does not exist changes nothing.
#[derive(Debug)]
pub enum BodyEdit {
    Set { pointer: String, value: EditValue },
    Remove { pointer: String },
}

/// What `set` writes: a JSON value, or a template rendered to a string.
#[derive(Debug)]
pub enum EditValue {
    Json(Value),
    Template(Template),
}

impl BodyEdit {
    /// Decodes one edit at `at`; templates render on `side`.
    pub fn decode(
        value: &Value,
        at: &str,
        side: Side,
        problems: &mut Problems,
    ) -> Option<BodyEdit> {
        let (op, inner) = tagged(value, at, &["set", "remove"], problems)?;
        let at = join(at, &op);
        let known: &[&str] = if op == "set" {
            &["pointer", "value", "template"]
        } else {
            &["pointer"]
        };
        let f = Fields::new(inner, &at, known, problems)?;
        let pointer = f.required_string("pointer", problems)?.to_owned();
        if !check_pointer(&pointer, &f.at("pointer"), problems) {
            return None;
        }
        if op == "remove" {
            return Some(BodyEdit::Remove { pointer });
        }
        let value = match (f.value("value"), f.string("template", problems)) {
            (Some(v), None) => EditValue::Json(v.clone()),
            (None, Some(t)) => {
                EditValue::Template(Template::decode(t, &f.at("template"), side, problems)?)
            }
            _ => {
                problems.push(
                    &at,
                    "give exactly one of `value` (JSON) and `template` (a string)",
                );
                return None;
            }
        };
        Some(BodyEdit::Set { pointer, value })
    }

    /// The template a `set` renders, if any.
    pub fn template(&self) -> Option<&Template> {
        match self {
            BodyEdit::Set {
                value: EditValue::Template(t),
                ..
            } => Some(t),
            _ => None,
        }
    }

    /// Applies the edit to `document`, rendering a template with `render`;
    /// whether the document changed.
    pub fn apply(&self, document: &mut Value, render: &dyn Fn(&Template) -> Vec<u8>) -> bool {
        let (pointer, new) = match self {
            BodyEdit::Set { pointer, value } => {
                let new = match value {
                    EditValue::Json(v) => v.clone(),
                    EditValue::Template(t) => {
                        Value::String(String::from_utf8_lossy(&render(t)).into_owned())
                    }
                };
                (pointer, Some(new))
            }
            BodyEdit::Remove { pointer } => (pointer, None),
        };
        let Some((parent, last)) = pointer.rsplit_once('/') else {
            return false;
        };
        let Some(parent) = resolve_mut(document, parent) else {
            return false;
        };
        let last = unescape(last);
        match (parent, new) {
            (Value::Object(map), Some(new)) => {
                if map.get(&last) == Some(&new) {
                    return false;
                }
                map.insert(last.into_owned(), new);
                true
            }
            (Value::Object(map), None) => map.remove(&last),
            (Value::Array(items), Some(new)) => {
                if last == "-" {
                    items.push(new);
                    return true;
                }
                match index(&last) {
                    Some(i) if i < items.len() => match items.get_mut(i) {
                        Some(slot) if *slot != new => {
                            *slot = new;
                            true
                        }
                        _ => false,
                    },
                    Some(i) if i == items.len() => {
                        items.push(new);
                        true
                    }
                    _ => false,
                }
            }
            (Value::Array(items), None) => match index(&last) {
                Some(i) if i < items.len() => {
                    items.remove(i);
                    true
                }
                _ => false,
            },
            _ => false,
        }
    }
}

/// [`resolve`], for changing what it names.
fn resolve_mut<'v>(document: &'v mut Value, pointer: &str) -> Option<&'v mut Value> {
    tokens(pointer)?.try_fold(document, |here, token| match here {
        Value::Object(map) => map.get_mut(&token),
        Value::Array(items) => items.get_mut(index(&token)?),
        _ => None,
    })
}

/// The body fields a configuration reads, by JSON Pointer, gathered at
/// configure time so that each body is parsed into those fields alone
/// ([`JsonBody::parse_fields`]).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Selection(value::Keep);

impl Selection {
    /// Adds the field `pointer` names (`""`: the whole document). A pointer
    /// that is not one adds nothing: the configuration refuses it first.
    pub fn add(&mut self, pointer: &str) {
        if let Some(tokens) = tokens(pointer) {
            keep(&mut self.0, &tokens.collect::<Vec<_>>());
        }
    }

    /// Whether no field is read.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'p> FromIterator<&'p str> for Selection {
    fn from_iter<I: IntoIterator<Item = &'p str>>(pointers: I) -> Self {
        let mut read = Selection::default();
        for pointer in pointers {
            read.add(pointer);
        }
        read
    }
}

/// Marks the value `tokens` lead to in `here` as kept whole. A token that
/// could be an array index is kept both as a member name and as an index:
/// which one applies depends on the document.
fn keep(here: &mut value::Keep, tokens: &[Cow<'_, str>]) {
    if here.whole {
        return;
    }
    let Some((token, rest)) = tokens.split_first() else {
        *here = value::Keep {
            whole: true,
            ..value::Keep::default()
        };
        return;
    };
    if let Some(node) = entry(&mut here.members, token.as_ref()) {
        keep(node, rest);
    }
    if let Some(i) = index(token)
        && let Some(node) = entry(&mut here.items, &i)
    {
        keep(node, rest);
    }
}

/// The node for `key` in `list`, added empty when missing.
fn entry<'l, K, O>(list: &'l mut Vec<(O, value::Keep)>, key: &K) -> Option<&'l mut value::Keep>
where
    K: PartialEq + ToOwned<Owned = O> + ?Sized,
    O: std::borrow::Borrow<K>,
{
    if !list.iter().any(|(k, _)| k.borrow() == key) {
        list.push((key.to_owned(), value::Keep::default()));
    }
    list.iter_mut()
        .find(|(k, _)| (*k).borrow() == key)
        .map(|(_, node)| node)
}

/// A body parsed as JSON, or known not to be JSON.
#[derive(Debug)]
pub struct JsonBody {
    document: Option<Value>,
}

impl JsonBody {
    /// Parses `bytes` (surrounding whitespace allowed; an empty body is not
    /// JSON).
    pub fn parse(bytes: &[u8]) -> Self {
        Self {
            document: value::parse(bytes).ok(),
        }
    }

    /// Parses `bytes` as [`JsonBody::parse`] does (the same verdict on
    /// whether it is JSON, duplicate members anywhere included) but keeps
    /// only the fields `fields` names: what a request's rules read, without
    /// a tree of the rest of a large body. [`JsonBody::document`] is then
    /// those fields' part of the document.
    pub fn parse_fields(bytes: &[u8], fields: &Selection) -> Self {
        Self {
            document: value::parse_kept(bytes, &fields.0).ok(),
        }
    }

    /// Whether the body is a JSON document.
    pub fn is_json(&self) -> bool {
        self.document.is_some()
    }

    /// The document (`None`: not JSON).
    pub fn document(&self) -> Option<&Value> {
        self.document.as_ref()
    }

    /// The value at `pointer`.
    pub fn get(&self, pointer: &str) -> Option<&Value> {
        resolve(self.document.as_ref()?, pointer)
    }
}

impl BodyFields for JsonBody {
    fn field(&self, pointer: &str) -> Option<Cow<'_, [u8]>> {
        Some(render(self.get(pointer)?))
    }
}

/// A field's value as rules compare it and templates write it.
pub fn render(value: &Value) -> Cow<'_, [u8]> {
    match value {
        Value::String(s) => Cow::Borrowed(s.as_bytes()),
        other => Cow::Owned(other.to_string().into_bytes()),
    }
}

/// The value `pointer` names in `document` (RFC 6901): `""` is the document,
/// each `/token` a member (`~1` is `/`, `~0` is `~`) or an array index
/// (decimal, no leading zero).
pub fn resolve<'v>(document: &'v Value, pointer: &str) -> Option<&'v Value> {
    tokens(pointer)?.try_fold(document, |here, token| match here {
        Value::Object(map) => map.get(&token),
        Value::Array(items) => items.get(index(&token)?),
        _ => None,
    })
}

/// The reference tokens of `pointer`, unescaped (none for `""`, the whole
/// document; `None` when it does not start with `/`).
fn tokens(pointer: &str) -> Option<impl Iterator<Item = Cow<'_, str>>> {
    let rest = match pointer {
        "" => None,
        _ => Some(pointer.strip_prefix('/')?),
    };
    Some(rest.into_iter().flat_map(|r| r.split('/')).map(unescape))
}

fn unescape(token: &str) -> Cow<'_, str> {
    if token.contains('~') {
        Cow::Owned(token.replace("~1", "/").replace("~0", "~"))
    } else {
        Cow::Borrowed(token)
    }
}

fn index(token: &str) -> Option<usize> {
    let digits = !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit());
    if !digits || (token.len() > 1 && token.starts_with('0')) {
        return None;
    }
    token.parse().ok()
}

/// What is wrong with a configured pointer, if anything: it starts with `/`
/// (the whole document is no field to route by) and escapes `~` only as
/// `~0` or `~1`.
pub fn pointer_problem(pointer: &str) -> Option<String> {
    let problem = if !pointer.starts_with('/') {
        "a JSON Pointer (RFC 6901) starts with `/`, e.g. `/model`"
    } else if pointer
        .split('~')
        .skip(1)
        .any(|rest| !rest.starts_with(['0', '1']))
    {
        "in a JSON Pointer `~` is written `~0` and `/` inside a name `~1`"
    } else {
        return None;
    };
    Some(format!("`{pointer}`: {problem}"))
}

/// Checks a configured pointer ([`pointer_problem`]), reporting a bad one
/// at `at`; whether it is good.
pub fn check_pointer(pointer: &str, at: &str, problems: &mut Problems) -> bool {
    match pointer_problem(pointer) {
        Some(message) => {
            problems.push(at, message);
            false
        }
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"{"model": "gpt-x", "n": 2, "stream": true, "meta": {"a/b": 1, "m~n": [10, 20]},
        "messages": [{"role": "user"}], "none": null, "": "empty"}"#;

    fn field(body: &JsonBody, pointer: &str) -> Option<String> {
        body.field(pointer)
            .map(|f| String::from_utf8_lossy(&f).into_owned())
    }

    #[test]
    fn pointers_resolve_as_rfc_6901_says() {
        let body = JsonBody::parse(DOC.as_bytes());
        assert!(body.is_json());
        for (pointer, want) in [
            ("/model", Some("gpt-x")),
            ("/n", Some("2")),
            ("/stream", Some("true")),
            ("/none", Some("null")),
            ("/meta/a~1b", Some("1")),
            ("/meta/m~0n/1", Some("20")),
            ("/meta/m~0n", Some("[10,20]")),
            ("/messages/0/role", Some("user")),
            ("/", Some("empty")),
            ("/messages/01", None),
            ("/messages/-", None),
            ("/messages/1", None),
            ("/model/x", None),
            ("/absent", None),
            ("model", None),
        ] {
            assert_eq!(field(&body, pointer).as_deref(), want, "{pointer}");
            let kept = JsonBody::parse_fields(DOC.as_bytes(), &selection(&[pointer]));
            assert_eq!(
                field(&kept, pointer).as_deref(),
                want,
                "{pointer}, kept alone"
            );
        }
    }

    fn selection(pointers: &[&str]) -> Selection {
        pointers.iter().copied().collect()
    }

    /// A small deterministic generator (xorshift) of JSON-ish text: nested
    /// objects and arrays, escapes, numbers past `f64`, members named twice
    /// (sometimes escaped), and now and then a broken byte.
    struct Gen(u64);

    impl Gen {
        fn next(&mut self, below: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % below
        }

        fn name(&mut self) -> &'static str {
            ["a", "b", "0", "1", "\\u0061", "a/b", "m~n", ""][self.next(8) as usize]
        }

        fn value(&mut self, depth: u32, out: &mut String) {
            match self.next(if depth > 3 { 4 } else { 7 }) {
                0 => out
                    .push_str(["null", "true", "-0", "1e400", "12", "2.50"][self.next(6) as usize]),
                1 => out.push_str(
                    ["\"x\"", "\"\\u00e9\\n\"", "\"gpt-x\"", "\"a\\\"b\""][self.next(4) as usize],
                ),
                2 | 3 => out.push_str("\"s\""),
                4 | 5 => {
                    out.push('{');
                    for i in 0..self.next(4) {
                        if i > 0 {
                            out.push(',');
                        }
                        out.push('"');
                        out.push_str(self.name());
                        out.push_str("\":");
                        self.value(depth + 1, out);
                    }
                    out.push('}');
                }
                _ => {
                    out.push('[');
                    for i in 0..self.next(4) {
                        if i > 0 {
                            out.push(',');
                        }
                        self.value(depth + 1, out);
                    }
                    out.push(']');
                }
            }
            if self.next(60) == 0 {
                out.push([',', '}', 'x'][self.next(3) as usize]);
            }
        }
    }

    #[test]
    fn a_body_parsed_for_some_fields_gives_what_the_whole_parse_gives_for_them() {
        let pointers = [
            "", "/a", "/b", "/0", "/1", "/a/a", "/a/0", "/0/a", "/a/b/0", "/a~1b", "/m~0n/1", "/",
            "/1/1/1", "/a/-",
        ];
        let mut rng = Gen(0x9e37_79b9_7f4a_7c15);
        let (mut json, mut not_json) = (0, 0);
        for _ in 0..20_000 {
            let mut text = String::new();
            rng.value(0, &mut text);
            let picked: Vec<&str> = (0..1 + rng.next(3))
                .map(|_| pointers[rng.next(pointers.len() as u64) as usize])
                .collect();
            let whole = JsonBody::parse(text.as_bytes());
            let kept = JsonBody::parse_fields(text.as_bytes(), &selection(&picked));
            assert_eq!(kept.is_json(), whole.is_json(), "{text}");
            if whole.is_json() {
                json += 1;
            } else {
                not_json += 1;
            }
            for p in &picked {
                assert_eq!(field(&kept, p), field(&whole, p), "{p} in {text}");
            }
        }
        assert!(
            json > 5_000 && not_json > 1_000,
            "{json} JSON, {not_json} not"
        );
    }

    #[test]
    fn a_selection_keeps_each_field_once_and_all_of_a_field_kept_whole() {
        assert!(selection(&[]).is_empty());
        assert_eq!(selection(&["/a", "/a/b"]), selection(&["/a"]));
        assert_eq!(selection(&["/a/b", "/a"]), selection(&["/a"]));
        assert_eq!(selection(&["", "/a"]), selection(&[""]));
        assert_eq!(selection(&["/x", "/x"]), selection(&["/x"]));
        assert!(selection(&["no-slash"]).is_empty());
    }

    #[test]
    fn a_body_that_is_not_one_json_document_has_no_fields() {
        for text in [
            "",
            "model=gpt-x",
            r#"{"model": "a"} {"model": "b"}"#,
            r#"{"model": "a", "model": "b"}"#,
            r#"{"model": "a", "\u006dodel": "b"}"#,
            r#"{"model": "a""#,
        ] {
            let body = JsonBody::parse(text.as_bytes());
            assert!(!body.is_json(), "{text}");
            let kept = JsonBody::parse_fields(text.as_bytes(), &selection(&["/model"]));
            assert!(!kept.is_json(), "{text}, kept");
            assert_eq!(field(&body, "/model"), None, "{text}");
        }
        let escaped = JsonBody::parse(br#"{"model": "gpt\u002dx\n"}"#);
        assert_eq!(field(&escaped, "/model").as_deref(), Some("gpt-x\n"));
    }

    fn edits(json: &str) -> Vec<BodyEdit> {
        let list = value::parse(json.as_bytes()).unwrap();
        let mut problems = Problems::default();
        let out = list
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| BodyEdit::decode(e, "/e", Side::Request, &mut problems))
            .collect();
        assert!(problems.is_empty(), "{problems}");
        out
    }

    #[test]
    fn edits_set_and_remove_as_rfc_6902_adds_and_removes() {
        let mut doc =
            value::parse(br#"{"model": "a", "messages": [1, 2], "meta": {"x": 1}}"#).unwrap();
        let list = edits(
            r#"[{"set": {"pointer": "/model", "value": "b"}},
                {"set": {"pointer": "/stream", "value": false}},
                {"set": {"pointer": "/messages/-", "value": {"role": "system"}}},
                {"set": {"pointer": "/messages/0", "value": 0}},
                {"set": {"pointer": "/meta/a~1b", "template": "%REQ(x-user)%"}},
                {"remove": {"pointer": "/meta/x"}},
                {"set": {"pointer": "/missing/x", "value": 1}},
                {"set": {"pointer": "/messages/9", "value": 1}},
                {"remove": {"pointer": "/absent"}}]"#,
        );
        let render = |_: &Template| b"ada".to_vec();
        let changed: Vec<bool> = list.iter().map(|e| e.apply(&mut doc, &render)).collect();
        assert_eq!(
            changed,
            [true, true, true, true, true, true, false, false, false]
        );
        assert_eq!(
            doc.to_string(),
            r#"{"model":"b","messages":[0,2,{"role":"system"}],"meta":{"a/b":"ada"},"stream":false}"#
        );
        let again: Vec<bool> = list[..2]
            .iter()
            .map(|e| e.apply(&mut doc, &render))
            .collect();
        assert_eq!(
            again,
            [false, false],
            "setting what is there changes nothing"
        );
        let mut problems = Problems::default();
        for bad in [
            r#"{"set": {"pointer": "/a"}}"#,
            r#"{"set": {"pointer": "/a", "value": 1, "template": "x"}}"#,
            r#"{"remove": {"pointer": "a"}}"#,
            r#"{"move": {"pointer": "/a"}}"#,
        ] {
            let v = value::parse(bad.as_bytes()).unwrap();
            assert!(
                BodyEdit::decode(&v, "/e", Side::Request, &mut problems).is_none(),
                "{bad}"
            );
        }
        assert_eq!(problems.list().len(), 4);
    }

    #[test]
    fn configured_pointers_are_checked() {
        let mut problems = Problems::default();
        assert!(check_pointer("/a/b~1c/0", "/p", &mut problems));
        assert!(!check_pointer("model", "/q", &mut problems));
        assert!(!check_pointer("/a~2", "/r", &mut problems));
        let paths: Vec<_> = problems.list().iter().map(|p| p.path.clone()).collect();
        assert_eq!(paths, ["/q", "/r"]);
    }
}
