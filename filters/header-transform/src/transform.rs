//! Applying a compiled configuration to a request, its response and their
//! trailers. Pure: the glue reads the host's maps, calls these, and writes
//! back the returned changes.

use filter_common::body::BodyEdit;
use filter_common::scope;
use filter_common::template::{Template, Vars};
use filter_common::value::Value;
use filter_proxy::headers::{Change, HeaderMap};
use filter_proxy::reply::LocalReply;
use filter_proxy::request::{Host, Request};

use crate::config::{
    AppendAction, Config, Cors, Dedupe, FixedWrites, HeaderOp, Policy, Removal, Rule,
};

/// What the request side decided, kept for the response side.
#[derive(Debug, Default)]
pub struct Decision {
    /// `None`: the global policy; `Some(i)`: scope `i`.
    scope: Option<usize>,
    /// Indices of the rules that matched, in order.
    matched: Vec<usize>,
    /// The request's `Origin` when CORS allows it.
    cors_origin: Option<Vec<u8>>,
    /// Writes to the request headers.
    pub writes: Vec<Change>,
    /// Filter state to set: (property, value).
    pub filter_state: Vec<(String, Vec<u8>)>,
    /// A CORS preflight answered locally.
    pub reply: Option<LocalReply>,
}

impl Decision {
    /// How many rules matched the request.
    pub fn rules_applied(&self) -> usize {
        self.matched.len()
    }
}

/// What the response side decided.
#[derive(Debug, Default)]
pub struct ResponseDecision {
    pub writes: Vec<Change>,
    /// A configured replacement for this status.
    pub replace: Option<LocalReply>,
}

/// Headers RFC 9110 §7.6.1 defines as connection-specific, and
/// `proxy-connection` (a common non-standard one).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

impl Config {
    fn policy(&self, scope: Option<usize>) -> &Policy {
        scope
            .and_then(|i| self.scopes.get(i))
            .map_or(&self.default, |(_, p)| p)
    }

    /// The request side: selects the policy, answers a CORS preflight,
    /// applies every matching rule's request-header, query and filter-state
    /// operations in order. `request.headers` ends up as the host should
    /// have it; `Decision::writes` says how to get there.
    pub fn on_request<H: Host>(&self, request: &mut Request<H>) -> Decision {
        let scope = scope::first_match(&self.scopes, request);
        let policy = self.policy(scope);
        let mut decision = Decision {
            scope,
            ..Decision::default()
        };
        if let Some(cors) = &policy.cors {
            let origin = request.headers.get("origin");
            if let Some(origin) = origin.filter(|o| cors.allows(o)) {
                if is_preflight(request) {
                    decision.reply = Some(cors.preflight(&origin));
                    return decision;
                }
                decision.cors_origin = Some(origin);
            }
        }
        decision.matched = policy
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.when.matches(request))
            .map(|(i, _)| i)
            .collect();
        for &i in &decision.matched {
            let Some(rule) = policy.rules.get(i) else {
                continue;
            };
            if rule.request_headers.is_empty()
                && rule.query.is_empty()
                && rule.to_filter_state.is_empty()
            {
                continue;
            }
            collect_filter_state(rule, request, &mut decision.filter_state);
            for op in &rule.request_headers {
                let value = render_value(op, request, None);
                apply(op, value, &mut request.headers);
            }
            for op in &rule.query {
                op.apply(request);
            }
        }
        decision.writes = request.headers.changes();
        decision
    }

    /// Whether the response side has anything to do for this request: the
    /// glue skips reading the response map otherwise.
    pub fn acts_on_response(&self, decision: &Decision) -> bool {
        let policy = self.policy(decision.scope);
        !policy.custom_responses.is_empty()
            || (policy.cors.is_some() && decision.cors_origin.is_some())
            || self
                .matched(decision)
                .any(|r| !r.response_headers.is_empty() || !r.response_body.is_empty())
    }

    /// Whether a matched rule edits the request body.
    pub fn edits_request_body(&self, decision: &Decision) -> bool {
        self.matched(decision).any(|r| !r.request_body.is_empty())
    }

    /// Whether a matched rule edits the response body.
    pub fn edits_response_body(&self, decision: &Decision) -> bool {
        self.matched(decision).any(|r| !r.response_body.is_empty())
    }

    /// Applies every matched rule's `request_body` edits, in order, to the
    /// request's JSON body; whether it changed.
    pub fn edit_request_body<H: Host>(
        &self,
        decision: &Decision,
        request: &Request<H>,
        document: &mut Value,
    ) -> bool {
        let vars = Vars {
            request,
            response: None,
        };
        self.edit_body(decision, |r| &r.request_body, &vars, document)
    }

    /// Applies every matched rule's `response_body` edits, in order, to the
    /// response's JSON body (templates see the response headers as
    /// received); whether it changed.
    pub fn edit_response_body<H: Host>(
        &self,
        decision: &Decision,
        request: &Request<H>,
        response: &HeaderMap,
        document: &mut Value,
    ) -> bool {
        let vars = Vars {
            request,
            response: Some(response),
        };
        self.edit_body(decision, |r| &r.response_body, &vars, document)
    }

    fn edit_body<H: Host>(
        &self,
        decision: &Decision,
        edits: fn(&Rule) -> &[BodyEdit],
        vars: &Vars<'_, H>,
        document: &mut Value,
    ) -> bool {
        let render = |t: &Template| t.render(vars);
        let mut changed = false;
        for edit in self.matched(decision).flat_map(edits) {
            changed |= edit.apply(document, &render);
        }
        changed
    }

    /// The response side: a configured replacement for the status, else
    /// CORS headers and every matched rule's response-header operations.
    pub fn on_response<H: Host>(
        &self,
        decision: &Decision,
        request: &Request<H>,
        response: &mut HeaderMap,
    ) -> ResponseDecision {
        let policy = self.policy(decision.scope);
        let status = response
            .get(":status")
            .and_then(|s| std::str::from_utf8(&s).ok()?.parse::<u16>().ok())
            .unwrap_or(0);
        if let Some(custom) = policy
            .custom_responses
            .iter()
            .find(|c| c.on_status.iter().any(|p| p.matches(status)))
        {
            let vars = Vars {
                request,
                response: Some(&*response),
            };
            let mut headers: Vec<(String, Vec<u8>)> = custom
                .headers
                .iter()
                .map(|(n, t)| (n.clone(), t.render(&vars)))
                .collect();
            if let (Some(cors), Some(origin)) = (&policy.cors, &decision.cors_origin) {
                let mut map = HeaderMap::new(headers);
                cors.actual_response(origin, &mut map);
                headers = map.into_entries();
            }
            let reply = LocalReply {
                status: custom.status.unwrap_or(status),
                headers,
                body: custom
                    .body
                    .as_ref()
                    .map(|b| b.render(&vars))
                    .unwrap_or_default(),
            };
            return ResponseDecision {
                writes: Vec::new(),
                replace: Some(reply),
            };
        }
        if let (Some(cors), Some(origin)) = (&policy.cors, &decision.cors_origin) {
            cors.actual_response(origin, response);
        }
        for rule in self.matched(decision) {
            for op in &rule.response_headers {
                let value = render_value(op, request, Some(&*response));
                apply(op, value, response);
            }
        }
        ResponseDecision {
            writes: response.changes(),
            replace: None,
        }
    }

    /// Request trailers: every matched rule's `request_trailers` operations.
    pub fn on_request_trailers<H: Host>(
        &self,
        decision: &Decision,
        request: &Request<H>,
        trailers: &mut HeaderMap,
    ) -> Vec<Change> {
        self.edit_trailers(decision, request, trailers, |r| &r.request_trailers)
    }

    /// Response trailers: every matched rule's `response_trailers` operations.
    pub fn on_response_trailers<H: Host>(
        &self,
        decision: &Decision,
        request: &Request<H>,
        trailers: &mut HeaderMap,
    ) -> Vec<Change> {
        self.edit_trailers(decision, request, trailers, |r| &r.response_trailers)
    }

    /// Applies the selected trailer operations of every matched rule.
    /// Templates see the request; response headers are gone by then, so
    /// `%RESP(..)%` and `%RESPONSE_CODE%` render empty in trailers.
    fn edit_trailers<H: Host>(
        &self,
        decision: &Decision,
        request: &Request<H>,
        trailers: &mut HeaderMap,
        ops: fn(&Rule) -> &[HeaderOp],
    ) -> Vec<Change> {
        for rule in self.matched(decision) {
            for op in ops(rule) {
                let value = render_value(op, request, None);
                apply(op, value, trailers);
            }
        }
        trailers.changes()
    }

    fn matched<'a>(&'a self, decision: &'a Decision) -> impl Iterator<Item = &'a Rule> + 'a {
        let policy = self.policy(decision.scope);
        decision.matched.iter().filter_map(|&i| policy.rules.get(i))
    }

    /// Whether any rule touches trailers (the glue skips reading them
    /// otherwise).
    pub fn uses_trailers(&self) -> bool {
        self.rules()
            .any(|r| !r.request_trailers.is_empty() || !r.response_trailers.is_empty())
    }
}

impl Config {
    /// The writes every request and response get, when they do not depend
    /// on the request (see [`FixedWrites`]): in the rules' order, each
    /// `set` a replace and each `remove` a remove, as Envoy applies them.
    pub(crate) fn fixed_writes(&self) -> Option<FixedWrites> {
        let policy = &self.default;
        if !self.scopes.is_empty() || policy.cors.is_some() || !policy.custom_responses.is_empty() {
            return None;
        }
        let mut fixed = FixedWrites {
            rules: policy.rules.len(),
            ..FixedWrites::default()
        };
        for rule in &policy.rules {
            let unconditional = rule.when.is_always()
                && rule.query.is_empty()
                && rule.request_body.is_empty()
                && rule.response_body.is_empty()
                && rule.to_filter_state.is_empty()
                && rule.request_trailers.is_empty()
                && rule.response_trailers.is_empty();
            if !unconditional {
                return None;
            }
            for (ops, writes) in [
                (&rule.request_headers, &mut fixed.request),
                (&rule.response_headers, &mut fixed.response),
            ] {
                for op in ops {
                    writes.push(fixed_write(op)?);
                }
            }
        }
        Some(fixed)
    }
}

/// An operation whose write does not depend on the map: a `set` of a
/// literal value (an empty one only when kept, as [`apply`] has it) or the
/// `remove` of a name.
fn fixed_write(op: &HeaderOp) -> Option<Change> {
    match op {
        HeaderOp::Put {
            name,
            value,
            action: AppendAction::OverwriteIfExistsOrAdd,
            keep_empty,
        } => {
            let value = value.literal()?;
            (!value.is_empty() || *keep_empty)
                .then(|| Change::Replace(name.clone(), value.to_vec()))
        }
        HeaderOp::Remove(Removal::Name(name)) => Some(Change::Remove(name.clone())),
        _ => None,
    }
}

/// Renders an operation's value template, if it has one.
fn render_value<H: Host>(
    op: &HeaderOp,
    request: &Request<H>,
    response: Option<&HeaderMap>,
) -> Option<Vec<u8>> {
    let template: &Template = match op {
        HeaderOp::Put { value, .. } | HeaderOp::Append { value, .. } => value,
        _ => return None,
    };
    Some(match template.literal() {
        Some(text) => text.to_vec(),
        None => template.render(&Vars { request, response }),
    })
}

/// Applies one header operation; `value` is its rendered template.
fn apply(op: &HeaderOp, value: Option<Vec<u8>>, headers: &mut HeaderMap) {
    match op {
        HeaderOp::Put {
            name,
            action,
            keep_empty,
            ..
        } => {
            let value = value.unwrap_or_default();
            // Envoy's rule: an empty value changes nothing unless kept.
            if value.is_empty() && !keep_empty {
                return;
            }
            let exists = headers.contains(name);
            match action {
                AppendAction::AppendIfExistsOrAdd => headers.add(name, &value),
                AppendAction::AddIfAbsent if !exists => headers.add(name, &value),
                AppendAction::OverwriteIfExistsOrAdd => headers.set(name, &value),
                AppendAction::OverwriteIfExists if exists => headers.set(name, &value),
                AppendAction::AddIfAbsent | AppendAction::OverwriteIfExists => {}
            }
        }
        HeaderOp::Append {
            name, separator, ..
        } => {
            let value = value.unwrap_or_default();
            if value.is_empty() {
                return;
            }
            match headers.get(name) {
                Some(mut joined) => {
                    if !joined.is_empty() {
                        joined.extend_from_slice(separator);
                    }
                    joined.extend_from_slice(&value);
                    headers.set(name, &joined);
                }
                None => headers.add(name, &value),
            }
        }
        HeaderOp::Remove(removal) => match removal {
            Removal::Name(n) => drop(headers.remove(n)),
            Removal::Prefix(p) => {
                headers.retain(|k, _| k.starts_with(':') || !k.starts_with(p.as_str()))
            }
            Removal::Regex(re) => {
                headers.retain(|k, _| k.starts_with(':') || !re.is_match(k.as_bytes()))
            }
            Removal::HopByHop => {
                let listed: Vec<String> = headers
                    .values("connection")
                    .flat_map(|v| v.split(|b| *b == b','))
                    .map(|t| String::from_utf8_lossy(t.trim_ascii()).to_ascii_lowercase())
                    .filter(|t| !t.is_empty() && !t.starts_with(':'))
                    .collect();
                headers.retain(|k, _| !HOP_BY_HOP.contains(&k) && !listed.iter().any(|l| l == k));
            }
        },
        HeaderOp::Rename { from, to } => {
            if headers.contains(from) {
                let values = headers.remove(from);
                headers.replace_all(to, values);
            }
        }
        HeaderOp::Copy { from, to } => {
            if headers.contains(from) {
                let values: Vec<Vec<u8>> = headers.values(from).map(<[u8]>::to_vec).collect();
                headers.replace_all(to, values);
            }
        }
        HeaderOp::Dedupe { name, strategy } => {
            let values: Vec<Vec<u8>> = headers.values(name).map(<[u8]>::to_vec).collect();
            if values.len() < 2 {
                return;
            }
            let kept = match strategy {
                Dedupe::RetainFirst => values.into_iter().take(1).collect(),
                Dedupe::RetainLast => values.into_iter().last().into_iter().collect(),
                Dedupe::RetainUnique => {
                    let mut unique: Vec<Vec<u8>> = Vec::with_capacity(values.len());
                    for v in values {
                        if !unique.contains(&v) {
                            unique.push(v);
                        }
                    }
                    unique
                }
            };
            headers.replace_all(name, kept);
        }
    }
}

fn collect_filter_state<H: Host>(
    rule: &Rule,
    request: &mut Request<H>,
    out: &mut Vec<(String, Vec<u8>)>,
) {
    for s in &rule.to_filter_state {
        let value = match request.headers.get(&s.header) {
            Some(v) => match &s.rewrite {
                Some(rewrite) => rewrite.replace_all(&v).unwrap_or(v),
                None => v,
            },
            None => match &s.on_missing {
                Some(v) => v.clone(),
                None => continue,
            },
        };
        out.push((s.property.clone(), value));
        if s.remove_header {
            drop(request.headers.remove(&s.header));
        }
    }
}

fn is_preflight<H: Host>(request: &Request<H>) -> bool {
    request.method() == b"OPTIONS" && request.headers.contains("access-control-request-method")
}

impl Cors {
    pub(crate) fn allows(&self, origin: &[u8]) -> bool {
        if self.any_origin {
            return true;
        }
        let origin = origin.to_ascii_lowercase();
        self.origins.iter().any(|o| o.as_bytes() == origin)
            || self.patterns.iter().any(|(head, tail)| {
                origin.len() > head.len() + tail.len()
                    && origin.starts_with(head.as_bytes())
                    && origin.ends_with(tail.as_bytes())
            })
    }

    /// `*` only when any origin is allowed without credentials; otherwise
    /// the request's origin, echoed.
    fn allow_origin_value(&self, origin: &[u8]) -> Vec<u8> {
        if self.any_origin && !self.allow_credentials {
            b"*".to_vec()
        } else {
            origin.to_vec()
        }
    }

    fn preflight(&self, origin: &[u8]) -> LocalReply {
        let mut headers = vec![(
            "access-control-allow-origin".to_owned(),
            self.allow_origin_value(origin),
        )];
        if !self.allow_methods.is_empty() {
            headers.push((
                "access-control-allow-methods".into(),
                self.allow_methods.as_bytes().to_vec(),
            ));
        }
        if !self.allow_headers.is_empty() {
            headers.push((
                "access-control-allow-headers".into(),
                self.allow_headers.as_bytes().to_vec(),
            ));
        }
        if let Some(age) = self.max_age {
            headers.push((
                "access-control-max-age".into(),
                age.to_string().into_bytes(),
            ));
        }
        if self.allow_credentials {
            headers.push(("access-control-allow-credentials".into(), b"true".to_vec()));
        }
        headers.push(("vary".into(), b"Origin".to_vec()));
        LocalReply {
            status: 204,
            headers,
            body: Vec::new(),
        }
    }

    fn actual_response(&self, origin: &[u8], response: &mut HeaderMap) {
        response.set(
            "access-control-allow-origin",
            &self.allow_origin_value(origin),
        );
        if self.allow_credentials {
            response.set("access-control-allow-credentials", b"true");
        }
        if !self.expose_headers.is_empty() {
            response.set(
                "access-control-expose-headers",
                self.expose_headers.as_bytes(),
            );
        }
        let varies = response
            .values("vary")
            .flat_map(|v| v.split(|b| *b == b','))
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"origin"));
        if !varies {
            match response.get("vary") {
                Some(mut v) if !v.is_empty() => {
                    v.extend_from_slice(b", Origin");
                    response.set("vary", &v);
                }
                _ => response.set("vary", b"Origin"),
            }
        }
    }
}
