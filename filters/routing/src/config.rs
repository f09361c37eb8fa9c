//! The plugin configuration, decoded from JSON into compiled rules (match
//! expressions, regexes, templates) with every problem reported by JSON
//! path. The format is documented in the crate's README.

use filter_common::body::{BodyPolicy, Selection};
use filter_common::config::{
    Fields, Problems, check_header_name, check_header_value, decode_json, join, quoted_list, tagged,
};
use filter_common::expr::Expr;
use filter_common::query::QueryOp;
use filter_common::scope::ScopeMatch;
use filter_common::template::{Side, Template};
use filter_common::value::Value;
use filter_proxy::client::ClientIpSource;

use crate::rewrite::{HostRewrite, PathRewrite, is_authority};

/// The header a route's `cluster_header` reads unless configured.
pub const DEFAULT_CLUSTER_HEADER: &str = "x-route-cluster";
/// The header split targets' tags are written to unless configured.
pub const DEFAULT_TAG_HEADER: &str = "x-route-tag";

const TOP: &[&str] = &[
    "cluster_header",
    "tag_header",
    "client_ip",
    "rules",
    "default",
    "scopes",
    "clear_route_cache",
    "body",
];
const ACTIONS: &[&str] = &[
    "cluster",
    "split",
    "cluster_from",
    "rewrite",
    "redirect",
    "respond",
    "deny",
];
const RULE: &[&str] = &[
    "name",
    "disabled",
    "match",
    "cluster",
    "split",
    "cluster_from",
    "rewrite",
    "redirect",
    "respond",
    "deny",
];
/// The compiled configuration.
#[derive(Debug)]
pub struct Config {
    pub(crate) cluster_header: String,
    pub(crate) tag_header: String,
    pub(crate) client_ip: ClientIpSource,
    pub(crate) global: Policy,
    pub(crate) scopes: Vec<(ScopeMatch, Policy)>,
    /// Every enabled rule's name, indexed by [`Rule::id`], for counters.
    pub rule_names: Vec<String>,
    /// Call the `clear_route_cache` foreign function after changing request
    /// headers, for hosts that do not clear the route cache on a write
    /// (Envoy does, for this module's ABI 0.2.1).
    pub clear_route_cache: bool,
    /// Which requests wait for their body, and what happens to odd ones;
    /// `None` when no rule reads the body.
    pub body: Option<BodyPolicy>,
    /// The body fields the rules read: a body is parsed into these alone.
    pub body_fields: Selection,
}

#[derive(Debug, Default)]
pub(crate) struct Policy {
    pub(crate) rules: Vec<Rule>,
    pub(crate) default: Option<Action>,
}

#[derive(Debug)]
pub(crate) struct Rule {
    pub(crate) id: usize,
    pub(crate) when: Expr,
    pub(crate) action: Action,
}

#[derive(Debug)]
pub(crate) enum Action {
    /// Let the request go on, to a chosen cluster and/or rewritten.
    Forward {
        upstream: Option<Upstream>,
        rewrite: Rewrite,
    },
    Redirect(Redirect),
    /// A direct response or a denial.
    Respond {
        reply: Respond,
        denied: bool,
    },
}

#[derive(Debug)]
pub(crate) enum Upstream {
    Cluster(String),
    Split(Split),
    /// The cluster a body field's value maps to.
    FromBody(ClusterMap),
}

/// `cluster_from`: a body field's value → a cluster.
#[derive(Debug)]
pub(crate) struct ClusterMap {
    pub(crate) pointer: String,
    pub(crate) clusters: Vec<(Vec<u8>, String)>,
    /// For a value not in the map, or no value; `None`: no cluster is set.
    pub(crate) default: Option<String>,
}

#[derive(Debug)]
pub(crate) struct Split {
    pub(crate) targets: Vec<Target>,
    /// The sum of the weights (> 0).
    pub(crate) total: u64,
    pub(crate) sticky: Option<Sticky>,
}

#[derive(Debug)]
pub(crate) struct Target {
    pub(crate) cluster: Option<String>,
    pub(crate) tag: Option<String>,
    pub(crate) weight: u64,
}

/// What keeps a client on the same target.
#[derive(Debug)]
pub(crate) enum Sticky {
    Header(String),
    Cookie(String),
    ClientIp,
}

#[derive(Debug, Default)]
pub(crate) struct Rewrite {
    pub(crate) path: Option<PathRewrite>,
    pub(crate) query: Vec<QueryOp>,
    pub(crate) host: Option<HostRewrite>,
}

#[derive(Debug)]
pub(crate) struct Redirect {
    pub(crate) scheme: Option<String>,
    pub(crate) host: Option<Vec<u8>>,
    pub(crate) port: Option<u16>,
    pub(crate) path: Option<PathRewrite>,
    pub(crate) strip_query: bool,
    pub(crate) status: u16,
}

#[derive(Debug)]
pub(crate) struct Respond {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, Template)>,
    pub(crate) body: Body,
}

#[derive(Debug)]
pub(crate) enum Body {
    Text(Template),
    /// Serialized once, sent as is.
    Json(Vec<u8>),
}

impl Config {
    /// Decodes and compiles a plugin configuration.
    pub fn parse(bytes: &[u8]) -> Result<Config, Problems> {
        decode_json(bytes, Self::decode)
    }

    fn decode(value: &Value, problems: &mut Problems) -> Config {
        let mut names = Vec::new();
        let mut config = Config {
            cluster_header: DEFAULT_CLUSTER_HEADER.to_owned(),
            tag_header: DEFAULT_TAG_HEADER.to_owned(),
            client_ip: ClientIpSource::Peer,
            global: Policy::default(),
            scopes: Vec::new(),
            rule_names: Vec::new(),
            clear_route_cache: false,
            body: None,
            body_fields: Selection::default(),
        };
        let Some(f) = Fields::new(value, "", TOP, problems) else {
            return config;
        };
        for (key, slot) in [
            ("cluster_header", &mut config.cluster_header),
            ("tag_header", &mut config.tag_header),
        ] {
            if let Some(name) = f.string(key, problems) {
                check_header_name(name, &f.at(key), problems);
                name.clone_into(slot);
            }
        }
        if config.cluster_header == config.tag_header {
            problems.push(
                &f.at("tag_header"),
                "the tag header and the cluster header must differ",
            );
        }
        if let Some(v) = f.value("client_ip") {
            config.client_ip =
                filter_common::net::client_ip_source(v, &f.at("client_ip"), problems);
        }
        config.clear_route_cache = f.flag("clear_route_cache", problems);
        config.global = Policy::decode(&f, "", &mut names, problems);
        let scopes_at = f.at("scopes");
        for (i, scope) in f.list("scopes", problems).iter().enumerate() {
            let at = join(&scopes_at, &i);
            let Some(s) = Fields::new(scope, &at, &["match", "rules", "default"], problems) else {
                continue;
            };
            let Some(m) = s.value("match") else {
                problems.push(&at, "missing field `match`");
                continue;
            };
            let matcher = ScopeMatch::decode(m, &s.at("match"), problems);
            let policy = Policy::decode(&s, &format!("scope-{i}-"), &mut names, problems);
            config.scopes.push((matcher, policy));
        }
        let nothing = config.global.rules.is_empty()
            && config.global.default.is_none()
            && config.scopes.is_empty();
        if nothing && problems.is_empty() {
            problems.push(
                "",
                "nothing to do: give `rules`, a `default` action or `scopes`",
            );
        }
        config.rule_names = names;
        config.body_fields = config.read_body_fields();
        match (f.value("body"), !config.body_fields.is_empty()) {
            (Some(b), true) => config.body = BodyPolicy::decode(b, &f.at("body"), problems),
            (Some(_), false) => problems.push(
                &f.at("body"),
                "no rule reads the body (a `body` condition or `cluster_from`): leave `body` out",
            ),
            (None, true) => config.body = Some(BodyPolicy::default()),
            (None, false) => {}
        }
        config
    }

    /// The body fields any rule or default reads.
    fn read_body_fields(&self) -> Selection {
        let mut read = Selection::default();
        for policy in std::iter::once(&self.global).chain(self.scopes.iter().map(|(_, p)| p)) {
            for rule in &policy.rules {
                rule.when.body_fields(&mut read);
                rule.action.body_fields(&mut read);
            }
            if let Some(default) = &policy.default {
                default.body_fields(&mut read);
            }
        }
        read
    }

    /// The number of enabled rules, scopes included.
    pub fn rule_count(&self) -> usize {
        self.rule_names.len()
    }
}

impl Policy {
    /// Reads `rules` and `default` from `f`; default rule names start with
    /// `prefix`.
    fn decode(
        f: &Fields<'_>,
        prefix: &str,
        names: &mut Vec<String>,
        problems: &mut Problems,
    ) -> Policy {
        let mut policy = Policy::default();
        let rules_at = f.at("rules");
        for (i, value) in f.list("rules", problems).iter().enumerate() {
            let at = join(&rules_at, &i);
            let Some(r) = Fields::new(value, &at, RULE, problems) else {
                continue;
            };
            let name = match r.string("name", problems) {
                Some(name) => {
                    check_rule_name(name, &r.at("name"), problems);
                    name.to_owned()
                }
                None => format!("{prefix}rule-{i}"),
            };
            if names.contains(&name) {
                problems.push(
                    &r.at("name"),
                    format!("`{name}` names two rules; counters need unique names"),
                );
            }
            let disabled = r.flag("disabled", problems);
            let when = r
                .value("match")
                .map(|m| Expr::decode(m, &r.at("match"), problems))
                .unwrap_or_default();
            let action = Action::decode(&r, &at, problems);
            if disabled {
                continue;
            }
            if let Some(action) = action {
                policy.rules.push(Rule {
                    id: names.len(),
                    when,
                    action,
                });
                names.push(name);
            }
        }
        if let Some(value) = f.value("default") {
            let at = f.at("default");
            if let Some(d) = Fields::new(value, &at, ACTIONS, problems) {
                policy.default = Action::decode(&d, &at, problems);
            }
        }
        policy
    }
}

/// Rule names become counter names: letters, digits, `-`, `_`, `.`.
fn check_rule_name(name: &str, at: &str, problems: &mut Problems) {
    let fine = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !fine {
        problems.push(
            at,
            format!("`{name}`: a rule name is 1 to 64 letters, digits, `-`, `_` or `.`"),
        );
    }
}

impl Action {
    /// The action members of a rule or default object at `at`.
    fn decode(f: &Fields<'_>, at: &str, problems: &mut Problems) -> Option<Action> {
        let present: Vec<&str> = ACTIONS
            .iter()
            .copied()
            .filter(|k| f.value(k).is_some())
            .collect();
        let terminal: Vec<&str> = present
            .iter()
            .copied()
            .filter(|k| ["redirect", "respond", "deny"].contains(k))
            .collect();
        if present.is_empty() {
            problems.push(
                at,
                format!("an action is needed: one of {}", quoted_list(ACTIONS)),
            );
            return None;
        }
        if !terminal.is_empty() && present.len() > 1 {
            problems.push(
                at,
                format!(
                    "`{}` cannot be combined with other actions (found {})",
                    terminal.first().copied().unwrap_or_default(),
                    quoted_list(&present)
                ),
            );
            return None;
        }
        if let Some(v) = f.value("redirect") {
            return Redirect::decode(v, &f.at("redirect"), problems).map(Action::Redirect);
        }
        if let Some(v) = f.value("respond") {
            return Respond::decode(v, &f.at("respond"), 200, "", problems).map(|reply| {
                Action::Respond {
                    reply,
                    denied: false,
                }
            });
        }
        if let Some(v) = f.value("deny") {
            return Respond::decode(v, &f.at("deny"), 403, "access denied\n", problems).map(
                |reply| Action::Respond {
                    reply,
                    denied: true,
                },
            );
        }
        let upstreams: Vec<&str> = ["cluster", "split", "cluster_from"]
            .into_iter()
            .filter(|k| f.value(k).is_some())
            .collect();
        let upstream = match upstreams.as_slice() {
            [] => None,
            ["cluster"] => f
                .string("cluster", problems)
                .and_then(|c| cluster_name(c, &f.at("cluster"), problems))
                .map(Upstream::Cluster),
            ["split"] => f
                .value("split")
                .and_then(|v| Split::decode(v, &f.at("split"), problems))
                .map(Upstream::Split),
            ["cluster_from"] => f
                .value("cluster_from")
                .and_then(|v| ClusterMap::decode(v, &f.at("cluster_from"), problems))
                .map(Upstream::FromBody),
            [.., last] => {
                let init: Vec<String> = upstreams
                    .iter()
                    .take(upstreams.len() - 1)
                    .map(|k| format!("`{k}`"))
                    .collect();
                problems.push(
                    &f.at(last),
                    format!("{} and `{last}` exclude each other", init.join(", ")),
                );
                None
            }
        };
        let rewrite = match f.value("rewrite") {
            Some(v) => Rewrite::decode(v, &f.at("rewrite"), problems)?,
            None => Rewrite::default(),
        };
        Some(Action::Forward { upstream, rewrite })
    }
}

impl Action {
    /// Adds the body fields the action reads (`cluster_from`, `%BODY(...)%`
    /// in a reply or a query value) to `read`.
    fn body_fields(&self, read: &mut Selection) {
        match self {
            Action::Forward { upstream, rewrite } => {
                if let Some(Upstream::FromBody(map)) = upstream {
                    read.add(&map.pointer);
                }
                rewrite.query.iter().for_each(|q| q.body_fields(read));
            }
            Action::Respond { reply, .. } => {
                reply.headers.iter().for_each(|(_, t)| t.body_fields(read));
                if let Body::Text(t) = &reply.body {
                    t.body_fields(read);
                }
            }
            Action::Redirect(_) => {}
        }
    }
}

impl ClusterMap {
    fn decode(value: &Value, at: &str, problems: &mut Problems) -> Option<ClusterMap> {
        let f = Fields::new(value, at, &["body", "clusters", "default"], problems)?;
        let pointer = f.required_string("body", problems);
        if let Some(p) = pointer {
            filter_common::body::check_pointer(p, &f.at("body"), problems);
        }
        let mut clusters = Vec::new();
        match f.value("clusters") {
            Some(Value::Object(map)) => {
                for (value, cluster) in map {
                    let here = join(&f.at("clusters"), value);
                    match cluster.as_str() {
                        Some(c) => {
                            if let Some(c) = cluster_name(c, &here, problems) {
                                clusters.push((value.as_bytes().to_vec(), c));
                            }
                        }
                        None => problems.push(&here, "a cluster name is a string"),
                    }
                }
                if map.is_empty() {
                    problems.push(&f.at("clusters"), "an empty map: give at least one value");
                }
            }
            Some(_) => problems.push(
                &f.at("clusters"),
                "an object from field value to cluster, e.g. {\"gpt-x\": \"llm-a\"}",
            ),
            None => problems.push(at, "missing field `clusters`"),
        }
        let default = f
            .string("default", problems)
            .and_then(|c| cluster_name(c, &f.at("default"), problems));
        Some(ClusterMap {
            pointer: pointer?.to_owned(),
            clusters,
            default,
        })
    }
}

/// A cluster name becomes a header value: printable, not empty.
fn cluster_name(name: &str, at: &str, problems: &mut Problems) -> Option<String> {
    if name.is_empty() || name.bytes().any(|b| !b.is_ascii_graphic()) {
        problems.push(
            at,
            format!("`{name}`: a cluster name is printable ASCII without spaces"),
        );
        return None;
    }
    Some(name.to_owned())
}

impl Split {
    fn decode(value: &Value, at: &str, problems: &mut Problems) -> Option<Split> {
        let f = Fields::new(value, at, &["targets", "sticky"], problems)?;
        let targets_at = f.at("targets");
        let mut targets = Vec::new();
        let list = f.list("targets", problems);
        if list.is_empty() {
            problems.push(&targets_at, "a split needs at least one target");
        }
        for (i, t) in list.iter().enumerate() {
            let here = join(&targets_at, &i);
            let Some(t) = Fields::new(t, &here, &["cluster", "tag", "weight"], problems) else {
                continue;
            };
            let cluster = t
                .string("cluster", problems)
                .and_then(|c| cluster_name(c, &t.at("cluster"), problems));
            let tag = t.string("tag", problems).map(str::to_owned);
            if let Some(tag) = &tag {
                check_header_value(tag, &t.at("tag"), problems);
            }
            if cluster.is_none() && tag.is_none() && t.value("cluster").is_none() {
                problems.push(&here, "a target needs a `cluster`, a `tag` or both");
            }
            if t.value("weight").is_none() {
                problems.push(&here, "missing field `weight`");
            }
            let weight = t.integer("weight", 0, 1_000_000, problems).unwrap_or(0);
            targets.push(Target {
                cluster,
                tag,
                weight,
            });
        }
        let total: u64 = targets.iter().map(|t| t.weight).sum();
        if total == 0 && !list.is_empty() {
            problems.push(&targets_at, "the weights add up to 0");
        }
        let sticky = match f.value("sticky") {
            None => None,
            Some(v) => {
                let at = f.at("sticky");
                let (kind, inner) = tagged(v, &at, &["header", "cookie", "client_ip"], problems)?;
                let here = join(&at, &kind);
                match (kind, inner) {
                    ("client_ip", Value::Bool(true)) => Some(Sticky::ClientIp),
                    ("client_ip", _) => {
                        problems.push(&here, "write `client_ip: true`");
                        None
                    }
                    (_, Value::String(name)) => {
                        if kind == "header" {
                            check_header_name(name, &here, problems);
                            Some(Sticky::Header(name.clone()))
                        } else if name.is_empty() {
                            problems.push(&here, "a cookie name cannot be empty");
                            None
                        } else {
                            Some(Sticky::Cookie(name.clone()))
                        }
                    }
                    _ => {
                        problems.push(&here, format!("expected a {kind} name"));
                        None
                    }
                }
            }
        };
        Some(Split {
            targets,
            total,
            sticky,
        })
    }
}

impl Rewrite {
    fn decode(value: &Value, at: &str, problems: &mut Problems) -> Option<Rewrite> {
        let f = Fields::new(value, at, &["path", "query", "host"], problems)?;
        let path = f
            .value("path")
            .and_then(|v| PathRewrite::decode(v, &f.at("path"), problems));
        let query = QueryOp::decode_list(&f, "query", problems);
        let host = f
            .value("host")
            .and_then(|v| HostRewrite::decode(v, &f.at("host"), problems));
        if f.value("path").is_none() && f.value("query").is_none() && f.value("host").is_none() {
            problems.push(at, "a rewrite needs `path`, `query` or `host`");
        }
        Some(Rewrite { path, query, host })
    }
}

impl Redirect {
    fn decode(value: &Value, at: &str, problems: &mut Problems) -> Option<Redirect> {
        let f = Fields::new(
            value,
            at,
            &["scheme", "host", "port", "path", "strip_query", "status"],
            problems,
        )?;
        let scheme = f.string("scheme", problems).and_then(|s| {
            let fine = s.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
            if !fine {
                problems.push(&f.at("scheme"), format!("`{s}` is not a URI scheme"));
            }
            fine.then(|| s.to_ascii_lowercase())
        });
        let host = f.string("host", problems).and_then(|h| {
            let fine = is_authority(h.as_bytes()) && !h.as_bytes().contains(&b':');
            if !fine {
                problems.push(
                    &f.at("host"),
                    format!("`{h}` is not a host name (give a port with `port`)"),
                );
            }
            fine.then(|| h.as_bytes().to_vec())
        });
        let port = f
            .integer("port", 1, 65535, problems)
            .and_then(|p| u16::try_from(p).ok());
        let path = f
            .value("path")
            .and_then(|v| PathRewrite::decode(v, &f.at("path"), problems));
        let strip_query = f.flag("strip_query", problems);
        let status = match f.integer("status", 100, 999, problems) {
            None => 301,
            Some(s @ (301 | 302 | 303 | 307 | 308)) => u16::try_from(s).unwrap_or(301),
            Some(s) => {
                problems.push(
                    &f.at("status"),
                    format!("{s} is not a redirect status (301, 302, 303, 307, 308)"),
                );
                301
            }
        };
        Some(Redirect {
            scheme,
            host,
            port,
            path,
            strip_query,
            status,
        })
    }
}

impl Respond {
    fn decode(
        value: &Value,
        at: &str,
        default_status: u16,
        default_body: &str,
        problems: &mut Problems,
    ) -> Option<Respond> {
        let f = Fields::new(value, at, &["status", "headers", "body", "json"], problems)?;
        let status = f
            .integer("status", 200, 599, problems)
            .and_then(|s| u16::try_from(s).ok())
            .unwrap_or(default_status);
        let mut headers = Template::decode_header_map(&f, "headers", Side::Request, problems);
        let body = match (f.value("body"), f.value("json")) {
            (Some(_), Some(_)) => {
                problems.push(&f.at("json"), "`body` and `json` exclude each other");
                return None;
            }
            (None, Some(json)) => {
                if !headers.iter().any(|(n, _)| n == "content-type") {
                    headers.push((
                        "content-type".to_owned(),
                        Template::parse("application/json", Side::Request).ok()?,
                    ));
                }
                Body::Json(json.to_string().into_bytes())
            }
            (Some(_), None) => Body::Text(Template::decode(
                f.string("body", problems)?,
                &f.at("body"),
                Side::Request,
                problems,
            )?),
            (None, None) => Body::Text(Template::parse(default_body, Side::Request).ok()?),
        };
        Some(Respond {
            status,
            headers,
            body,
        })
    }
}
