//! The plugin configuration, decoded from JSON into compiled rules
//! (regexes and templates parsed, names checked) with every problem
//! reported by JSON path. The format is documented in the crate's README.

use filter_common::body::{BodyEdit, BodyPolicy, Selection};
use filter_common::config::{
    Fields, Problems, check_header_name, check_header_value, decode_json, join, one_of, tagged,
};
use filter_common::expr::Expr;
use filter_common::pattern::Regex;
use filter_common::query::QueryOp;
use filter_common::rewrite::RegexRewrite;
use filter_common::scope::ScopeMatch;
use filter_common::template::{Side, Template};
use filter_common::value::Value;

/// Envoy's `HeaderValueOption.append_action`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AppendAction {
    /// Add a line, whether or not the header exists (Envoy's default).
    #[default]
    AppendIfExistsOrAdd,
    /// Add only when the header is absent.
    AddIfAbsent,
    /// Replace every line, or add.
    OverwriteIfExistsOrAdd,
    /// Replace every line; nothing when absent.
    OverwriteIfExists,
}

/// Which lines of a repeated header `dedupe` keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dedupe {
    RetainFirst,
    RetainLast,
    RetainUnique,
}

/// The compiled configuration (the default one does nothing).
#[derive(Debug, Default)]
pub struct Config {
    pub(crate) default: Policy,
    pub(crate) scopes: Vec<(ScopeMatch, Policy)>,
    /// Call Envoy's `clear_route_cache` after changing request headers.
    pub clear_route_cache: bool,
    /// The `body` section: which requests wait for their body before the
    /// request headers are transformed, the most either body may be, what
    /// a non-JSON body gets; `None` when no rule reads or edits a body.
    pub body: Option<BodyPolicy>,
    /// The request body fields the rules read (`%BODY(...)%`, a `body`
    /// condition; a request body edit reads it whole): requests wait for
    /// their body when there are any, and a body is parsed into these
    /// alone. Response body edits alone do not hold requests.
    pub request_body_fields: Selection,
    /// Whether any rule edits request bodies (the parsed body is then kept
    /// for the edits instead of parsed again).
    pub edits_request_bodies: bool,
    /// The writes of a configuration that does the same to every request
    /// (see [`FixedWrites`]); `None` when the maps must be read, or when
    /// `minimal_writes` asks for only what changes to be written.
    pub fixed: Option<FixedWrites>,
}

/// A configuration that makes the same writes to every request and
/// response (rules without conditions that only `set` literal values and
/// `remove` names, no scopes, CORS or replacement responses) writes them
/// without reading the header maps: a map read is Envoy's most expensive
/// host call (docs/performance.md), and Envoy's native `header_mutation`
/// writes the same way. A `set` of a value the header already has, or a
/// `remove` of an absent header, is then still a write (for request
/// headers Envoy clears its route cache on every write, ABI 0.2.1).
#[derive(Debug, Default)]
pub struct FixedWrites {
    pub request: Vec<filter_proxy::headers::Change>,
    pub response: Vec<filter_proxy::headers::Change>,
    /// Rules applied to each request (every rule: none has a condition).
    pub rules: usize,
}

/// What applies to a request: the global policy or a scope's.
#[derive(Debug, Default)]
pub(crate) struct Policy {
    pub(crate) rules: Vec<Rule>,
    pub(crate) cors: Option<Cors>,
    pub(crate) custom_responses: Vec<CustomResponse>,
}

#[derive(Debug)]
pub(crate) struct Rule {
    pub(crate) when: Expr,
    pub(crate) request_headers: Vec<HeaderOp>,
    pub(crate) response_headers: Vec<HeaderOp>,
    pub(crate) request_trailers: Vec<HeaderOp>,
    pub(crate) response_trailers: Vec<HeaderOp>,
    pub(crate) query: Vec<QueryOp>,
    pub(crate) to_filter_state: Vec<ToFilterState>,
    /// Edits of the request's JSON body (the request waits for it).
    pub(crate) request_body: Vec<BodyEdit>,
    /// Edits of the response's JSON body (the response waits for it).
    pub(crate) response_body: Vec<BodyEdit>,
}

impl Rule {
    /// Adds the request body fields the rule reads to `read`: the whole
    /// document when it edits the request body.
    fn body_fields(&self, read: &mut Selection) {
        self.when.body_fields(read);
        [
            &self.request_headers,
            &self.response_headers,
            &self.request_trailers,
            &self.response_trailers,
        ]
        .into_iter()
        .flatten()
        .for_each(|op| op.body_fields(read));
        self.query.iter().for_each(|q| q.body_fields(read));
        if !self.request_body.is_empty() {
            read.add("");
        }
        self.response_body
            .iter()
            .filter_map(BodyEdit::template)
            .for_each(|t| t.body_fields(read));
    }
}

impl HeaderOp {
    fn body_fields(&self, read: &mut Selection) {
        if let HeaderOp::Put { value, .. } | HeaderOp::Append { value, .. } = self {
            value.body_fields(read);
        }
    }
}

#[derive(Debug)]
pub(crate) enum HeaderOp {
    Put {
        name: String,
        value: Template,
        action: AppendAction,
        keep_empty: bool,
    },
    Append {
        name: String,
        value: Template,
        separator: Vec<u8>,
    },
    Remove(Removal),
    Rename {
        from: String,
        to: String,
    },
    Copy {
        from: String,
        to: String,
    },
    Dedupe {
        name: String,
        strategy: Dedupe,
    },
}

#[derive(Debug)]
pub(crate) enum Removal {
    Name(String),
    Prefix(String),
    Regex(Regex),
    HopByHop,
}

#[derive(Debug)]
pub(crate) struct ToFilterState {
    pub(crate) header: String,
    pub(crate) property: String,
    pub(crate) rewrite: Option<RegexRewrite>,
    pub(crate) on_missing: Option<Vec<u8>>,
    pub(crate) remove_header: bool,
}

#[derive(Debug)]
pub(crate) struct Cors {
    pub(crate) any_origin: bool,
    pub(crate) origins: Vec<String>,
    pub(crate) patterns: Vec<(String, String)>,
    pub(crate) allow_methods: String,
    pub(crate) allow_headers: String,
    pub(crate) expose_headers: String,
    pub(crate) allow_credentials: bool,
    pub(crate) max_age: Option<u32>,
}

#[derive(Debug)]
pub(crate) struct CustomResponse {
    pub(crate) on_status: Vec<StatusPattern>,
    pub(crate) status: Option<u16>,
    pub(crate) headers: Vec<(String, Template)>,
    pub(crate) body: Option<Template>,
}

/// `404` or a class such as `4xx`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StatusPattern {
    Exact(u16),
    Class(u16),
}

impl StatusPattern {
    pub(crate) fn matches(self, status: u16) -> bool {
        match self {
            StatusPattern::Exact(s) => s == status,
            StatusPattern::Class(c) => status / 100 == c,
        }
    }
}

impl Config {
    /// Parses and compiles a plugin configuration, reporting every problem.
    pub fn parse(bytes: &[u8]) -> Result<Config, Problems> {
        decode_json(bytes, Self::decode)
    }

    fn decode(value: &Value, problems: &mut Problems) -> Config {
        const KNOWN: &[&str] = &[
            "rules",
            "cors",
            "custom_responses",
            "scopes",
            "clear_route_cache",
            "minimal_writes",
            "body",
        ];
        let Some(f) = Fields::new(value, "", KNOWN, problems) else {
            return Config::default();
        };
        let default = Policy::decode(&f, problems);
        let mut scopes = Vec::new();
        let scopes_at = f.at("scopes");
        for (i, scope) in f.list("scopes", problems).iter().enumerate() {
            let at = join(&scopes_at, &i);
            let Some(s) = Fields::new(
                scope,
                &at,
                &["match", "rules", "cors", "custom_responses"],
                problems,
            ) else {
                continue;
            };
            let matcher = match s.value("match") {
                Some(m) => ScopeMatch::decode(m, &s.at("match"), problems),
                None => {
                    problems.push(&at, "missing field `match`");
                    continue;
                }
            };
            scopes.push((matcher, Policy::decode(&s, problems)));
        }
        let minimal_writes = f.flag("minimal_writes", problems);
        let mut config = Config {
            default,
            scopes,
            clear_route_cache: f.flag("clear_route_cache", problems),
            body: None,
            request_body_fields: Selection::default(),
            edits_request_bodies: false,
            fixed: None,
        };
        config.request_body_fields = config.read_body_fields();
        let edits_request_bodies = config.rules().any(|r| !r.request_body.is_empty());
        config.edits_request_bodies = edits_request_bodies;
        let uses_body = !config.request_body_fields.is_empty() || config.edits_response_bodies();
        match (f.value("body"), uses_body) {
            (Some(b), true) => config.body = BodyPolicy::decode(b, &f.at("body"), problems),
            (Some(_), false) => problems.push(
                &f.at("body"),
                "nothing reads or edits a body (a `body` condition, `%BODY(...)%`, \
                 `request_body`, `response_body`): leave `body` out",
            ),
            (None, true) => config.body = Some(BodyPolicy::default()),
            (None, false) => {}
        }
        if !minimal_writes {
            config.fixed = config.fixed_writes();
        }
        config
    }

    /// Every rule, of the global policy and of each scope.
    pub(crate) fn rules(&self) -> impl Iterator<Item = &Rule> {
        std::iter::once(&self.default)
            .chain(self.scopes.iter().map(|(_, p)| p))
            .flat_map(|p| &p.rules)
    }

    /// Whether any rule edits response bodies.
    fn edits_response_bodies(&self) -> bool {
        self.rules().any(|r| !r.response_body.is_empty())
    }

    /// The request body fields any rule or custom response reads.
    fn read_body_fields(&self) -> Selection {
        let mut read = Selection::default();
        for policy in std::iter::once(&self.default).chain(self.scopes.iter().map(|(_, p)| p)) {
            policy.rules.iter().for_each(|r| r.body_fields(&mut read));
            for custom in &policy.custom_responses {
                custom
                    .headers
                    .iter()
                    .for_each(|(_, t)| t.body_fields(&mut read));
                if let Some(body) = &custom.body {
                    body.body_fields(&mut read);
                }
            }
        }
        read
    }

    /// How many rules the configuration holds, over all scopes.
    pub fn rule_count(&self) -> usize {
        self.default.rules.len()
            + self
                .scopes
                .iter()
                .map(|(_, p)| p.rules.len())
                .sum::<usize>()
    }
}

impl Policy {
    /// `rules`, `cors` and `custom_responses` of the top level or a scope.
    fn decode(f: &Fields<'_>, problems: &mut Problems) -> Policy {
        let rules_at = f.at("rules");
        let rules = f
            .list("rules", problems)
            .iter()
            .enumerate()
            .filter_map(|(i, r)| Rule::decode(r, &join(&rules_at, &i), problems))
            .collect();
        let cors = f
            .value("cors")
            .and_then(|c| Cors::decode(c, &f.at("cors"), problems));
        let responses_at = f.at("custom_responses");
        let custom_responses = f
            .list("custom_responses", problems)
            .iter()
            .enumerate()
            .filter_map(|(i, r)| CustomResponse::decode(r, &join(&responses_at, &i), problems))
            .collect();
        Policy {
            rules,
            cors,
            custom_responses,
        }
    }
}

impl Rule {
    fn decode(value: &Value, at: &str, problems: &mut Problems) -> Option<Rule> {
        const KNOWN: &[&str] = &[
            "name",
            "when",
            "request_headers",
            "response_headers",
            "request_trailers",
            "response_trailers",
            "query",
            "to_filter_state",
            "request_body",
            "response_body",
        ];
        let f = Fields::new(value, at, KNOWN, problems)?;
        let _ = f.string("name", problems);
        let when = match f.value("when") {
            Some(w) => Expr::decode(w, &f.at("when"), problems),
            None => Expr::default(),
        };
        let ops = |key: &str, side: Side, problems: &mut Problems| {
            let list_at = f.at(key);
            f.list(key, problems)
                .iter()
                .enumerate()
                .filter_map(|(i, op)| HeaderOp::decode(op, &join(&list_at, &i), side, problems))
                .collect::<Vec<_>>()
        };
        let request_headers = ops("request_headers", Side::Request, problems);
        let response_headers = ops("response_headers", Side::Response, problems);
        let request_trailers = ops("request_trailers", Side::Request, problems);
        let response_trailers = ops("response_trailers", Side::Response, problems);
        let query = QueryOp::decode_list(&f, "query", problems);
        let state_at = f.at("to_filter_state");
        let to_filter_state = f
            .list("to_filter_state", problems)
            .iter()
            .enumerate()
            .filter_map(|(i, s)| ToFilterState::decode(s, &join(&state_at, &i), problems))
            .collect();
        let edits = |key: &str, side: Side, problems: &mut Problems| {
            let list_at = f.at(key);
            f.list(key, problems)
                .iter()
                .enumerate()
                .filter_map(|(i, e)| BodyEdit::decode(e, &join(&list_at, &i), side, problems))
                .collect::<Vec<_>>()
        };
        let request_body = edits("request_body", Side::Request, problems);
        let response_body = edits("response_body", Side::Response, problems);
        Some(Rule {
            when,
            request_headers,
            response_headers,
            request_trailers,
            response_trailers,
            query,
            to_filter_state,
            request_body,
            response_body,
        })
    }
}

impl HeaderOp {
    fn decode(value: &Value, at: &str, side: Side, problems: &mut Problems) -> Option<HeaderOp> {
        const OPS: &[&str] = &["set", "add", "append", "remove", "rename", "copy", "dedupe"];
        let (op, inner) = tagged(value, at, OPS, problems)?;
        let at = join(at, &op);
        let known: &[&str] = match op {
            "set" => &["name", "value", "keep_empty_value"],
            "add" => &["name", "value", "append_action", "keep_empty_value"],
            "append" => &["name", "value", "separator"],
            "remove" => &["name", "prefix", "regex", "hop_by_hop"],
            "rename" | "copy" => &["from", "to"],
            _ => &["name", "strategy"],
        };
        let f = Fields::new(inner, &at, known, problems)?;
        let header = |key: &str, problems: &mut Problems| {
            let name = f.required_string(key, problems)?;
            check_header_name(name, &f.at(key), problems);
            Some(name.to_owned())
        };
        match op {
            "set" | "add" => {
                let name = header("name", problems);
                let value = Template::decode_field(&f, "value", side, problems);
                let action = match f.string("append_action", problems) {
                    None if op == "set" => Some(AppendAction::OverwriteIfExistsOrAdd),
                    None => Some(AppendAction::AppendIfExistsOrAdd),
                    Some(a) => match one_of(a, APPEND_ACTIONS, &f.at("append_action"), problems)? {
                        "ADD_IF_ABSENT" => Some(AppendAction::AddIfAbsent),
                        "OVERWRITE_IF_EXISTS_OR_ADD" => Some(AppendAction::OverwriteIfExistsOrAdd),
                        "OVERWRITE_IF_EXISTS" => Some(AppendAction::OverwriteIfExists),
                        _ => Some(AppendAction::AppendIfExistsOrAdd),
                    },
                };
                let keep_empty = f.flag("keep_empty_value", problems);
                Some(HeaderOp::Put {
                    name: name?,
                    value: value?,
                    action: action?,
                    keep_empty,
                })
            }
            "append" => {
                let name = header("name", problems);
                let value = Template::decode_field(&f, "value", side, problems);
                let separator = f.string("separator", problems).unwrap_or(",");
                check_header_value(separator, &f.at("separator"), problems);
                Some(HeaderOp::Append {
                    name: name?,
                    value: value?,
                    separator: separator.as_bytes().to_vec(),
                })
            }
            "remove" => {
                let given = ["name", "prefix", "regex", "hop_by_hop"]
                    .iter()
                    .filter(|k| f.value(k).is_some())
                    .count();
                if given != 1 {
                    problems.push(
                        &at,
                        "`remove` takes exactly one of `name`, `prefix`, `regex`, `hop_by_hop`",
                    );
                    return None;
                }
                if f.value("name").is_some() {
                    return header("name", problems).map(|n| HeaderOp::Remove(Removal::Name(n)));
                }
                if let Some(p) = f.string("prefix", problems) {
                    if p.is_empty() || p.bytes().any(|b| b.is_ascii_uppercase()) {
                        problems.push(&f.at("prefix"), "a prefix must be non-empty and lower-case");
                    }
                    return Some(HeaderOp::Remove(Removal::Prefix(p.to_owned())));
                }
                if let Some(r) = f.string("regex", problems) {
                    return match Regex::new(r) {
                        Ok(re) => Some(HeaderOp::Remove(Removal::Regex(re))),
                        Err(e) => {
                            problems.push(&f.at("regex"), e);
                            None
                        }
                    };
                }
                match f.bool("hop_by_hop", problems) {
                    Some(true) => Some(HeaderOp::Remove(Removal::HopByHop)),
                    Some(false) => {
                        problems.push(
                            &f.at("hop_by_hop"),
                            "write `hop_by_hop: true` or leave the operation out",
                        );
                        None
                    }
                    None => None,
                }
            }
            "rename" | "copy" => {
                let (from, to) = (header("from", problems)?, header("to", problems)?);
                if from == to {
                    problems.push(&f.at("to"), format!("`from` and `to` are both `{from}`"));
                }
                Some(if op == "rename" {
                    HeaderOp::Rename { from, to }
                } else {
                    HeaderOp::Copy { from, to }
                })
            }
            _ => {
                let name = header("name", problems);
                let strategy =
                    f.required_string("strategy", problems).and_then(|s| {
                        match one_of(
                            s,
                            &["RETAIN_FIRST", "RETAIN_LAST", "RETAIN_UNIQUE"],
                            &f.at("strategy"),
                            problems,
                        )? {
                            "RETAIN_FIRST" => Some(Dedupe::RetainFirst),
                            "RETAIN_LAST" => Some(Dedupe::RetainLast),
                            _ => Some(Dedupe::RetainUnique),
                        }
                    });
                Some(HeaderOp::Dedupe {
                    name: name?,
                    strategy: strategy?,
                })
            }
        }
    }
}

const APPEND_ACTIONS: &[&str] = &[
    "APPEND_IF_EXISTS_OR_ADD",
    "ADD_IF_ABSENT",
    "OVERWRITE_IF_EXISTS_OR_ADD",
    "OVERWRITE_IF_EXISTS",
];

impl ToFilterState {
    fn decode(value: &Value, at: &str, problems: &mut Problems) -> Option<ToFilterState> {
        let f = Fields::new(
            value,
            at,
            &[
                "header",
                "property",
                "regex_rewrite",
                "on_missing",
                "remove_header",
            ],
            problems,
        )?;
        let header = f.required_string("header", problems);
        if let Some(h) = header {
            check_header_name(h, &f.at("header"), problems);
        }
        let property = f.required_string("property", problems);
        if property.is_some_and(|p| p.is_empty() || p.contains('\0')) {
            problems.push(&f.at("property"), "a property name must be non-empty text");
        }
        let rewrite = f
            .value("regex_rewrite")
            .and_then(|r| RegexRewrite::decode(r, &f.at("regex_rewrite"), problems));
        Some(ToFilterState {
            header: header?.to_owned(),
            property: property?.to_owned(),
            rewrite,
            on_missing: f
                .string("on_missing", problems)
                .map(|v| v.as_bytes().to_vec()),
            remove_header: f.flag("remove_header", problems),
        })
    }
}

/// A member holding a value template (required).
impl Cors {
    fn decode(value: &Value, at: &str, problems: &mut Problems) -> Option<Cors> {
        const KNOWN: &[&str] = &[
            "allow_origins",
            "allow_origin_patterns",
            "allow_methods",
            "allow_headers",
            "expose_headers",
            "allow_credentials",
            "max_age",
        ];
        let f = Fields::new(value, at, KNOWN, problems)?;
        let origins = f.strings("allow_origins", problems);
        let patterns = f.strings("allow_origin_patterns", problems);
        if origins.is_empty() && patterns.is_empty() {
            problems.push(at, "CORS needs `allow_origins` or `allow_origin_patterns`");
        }
        for (i, p) in patterns.iter().enumerate() {
            if p.matches('*').count() != 1 {
                problems.push(
                    &join(&f.at("allow_origin_patterns"), &i),
                    format!("`{p}`: a pattern has one `*`, such as `https://*.example.com`"),
                );
            }
        }
        let headers = |key: &str, problems: &mut Problems| {
            let list = f.strings(key, problems);
            for (i, h) in list.iter().enumerate() {
                if *h != "*" {
                    check_header_name(&h.to_ascii_lowercase(), &join(&f.at(key), &i), problems);
                }
            }
            list.join(", ")
        };
        let allow_headers = headers("allow_headers", problems);
        let expose_headers = headers("expose_headers", problems);
        let methods = f.strings("allow_methods", problems);
        for (i, m) in methods.iter().enumerate() {
            if m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic() || b == b'*') {
                problems.push(
                    &join(&f.at("allow_methods"), &i),
                    format!("`{m}` is not a method"),
                );
            }
        }
        Some(Cors {
            any_origin: origins.contains(&"*"),
            origins: origins.iter().map(|o| o.to_ascii_lowercase()).collect(),
            patterns: patterns
                .iter()
                .filter_map(|p| p.split_once('*'))
                .map(|(a, b)| (a.to_ascii_lowercase(), b.to_ascii_lowercase()))
                .collect(),
            allow_methods: methods.join(", "),
            allow_headers,
            expose_headers,
            allow_credentials: f.flag("allow_credentials", problems),
            max_age: f
                .integer("max_age", 0, u64::from(u32::MAX), problems)
                .and_then(|n| u32::try_from(n).ok()),
        })
    }
}

impl CustomResponse {
    fn decode(value: &Value, at: &str, problems: &mut Problems) -> Option<CustomResponse> {
        let f = Fields::new(
            value,
            at,
            &["on_status", "status", "headers", "body"],
            problems,
        )?;
        let mut on_status = Vec::new();
        let statuses = f.strings("on_status", problems);
        if statuses.is_empty() {
            problems.push(
                &f.at("on_status"),
                "list the statuses to replace, such as `404` or `5xx`",
            );
        }
        for (i, s) in statuses.iter().enumerate() {
            match parse_status_pattern(s) {
                Some(p) => on_status.push(p),
                None => problems.push(
                    &join(&f.at("on_status"), &i),
                    format!("`{s}` is not a status (`404`) or a class (`1xx` to `5xx`)"),
                ),
            }
        }
        let status = f
            .integer("status", 200, 599, problems)
            .and_then(|s| u16::try_from(s).ok());
        let headers = Template::decode_header_map(&f, "headers", Side::Response, problems);
        let body = f
            .string("body", problems)
            .and_then(|b| Template::decode(b, &f.at("body"), Side::Response, problems));
        Some(CustomResponse {
            on_status,
            status,
            headers,
            body,
        })
    }
}

fn parse_status_pattern(s: &str) -> Option<StatusPattern> {
    match s.as_bytes() {
        [c @ b'1'..=b'5', b'x' | b'X', b'x' | b'X'] => {
            Some(StatusPattern::Class(u16::from(c - b'0')))
        }
        [b'1'..=b'5', b'0'..=b'9', b'0'..=b'9'] => s.parse().ok().map(StatusPattern::Exact),
        _ => None,
    }
}
