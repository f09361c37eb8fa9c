//! The plugin configuration, decoded from JSON with every problem reported
//! by JSON path. The format is documented in the crate's README.

use std::rc::Rc;

use filter_common::config::{Fields, Problems, check_header_name, decode_json, join, kind};
use filter_common::expr::Expr;
use filter_common::matcher::{Named, StringMatcher};
use filter_common::scope::ScopeMatch;
use filter_common::value::Value;
use filter_proxy::client::ClientIpSource;
use sha2::{Digest, Sha256};

use crate::basic::PasswordHash;
use crate::source::Source;
use jose::jwk::Jwks;
use jose::jwt::Requirements;

/// The header the authenticated identity goes to unless configured.
pub const DEFAULT_IDENTITY_HEADER: &str = "x-auth-identity";
/// Largest token accepted unless configured (Envoy has no cap; 8 KiB is
/// far above any real token and bounds the work an attacker can cause).
pub const DEFAULT_MAX_TOKEN_BYTES: u64 = 8192;

const TOP: &[&str] = &[
    "realm",
    "identity_header",
    "client_ip",
    "problem_details",
    "bypass_cors_preflight",
    "unmatched",
    "consumers",
    "api_key",
    "jwt_providers",
    "ext_authz",
    "rules",
    "token_cache_size",
];

/// The compiled configuration.
#[derive(Debug)]
pub struct Config {
    /// What the operator should know about a valid configuration, logged
    /// at configure time: defaults that differ from Envoy's `jwt_authn`.
    pub notices: Vec<String>,
    pub realm: String,
    pub identity_header: String,
    pub client_ip: ClientIpSource,
    pub problem_details: bool,
    pub bypass_cors_preflight: bool,
    /// Requests no rule matches are denied (403) instead of let through.
    pub deny_unmatched: bool,
    pub consumers: Vec<String>,
    pub basic_users: Vec<BasicUser>,
    pub api_key: ApiKeys,
    pub providers: Vec<Provider>,
    pub ext_authz: Option<ExtAuthz>,
    pub rules: Vec<Rule>,
    pub token_cache_size: usize,
}

#[derive(Debug)]
pub struct BasicUser {
    pub user: String,
    pub hash: PasswordHash,
    pub consumer: usize,
}

#[derive(Debug, Default)]
pub struct ApiKeys {
    pub sources: Vec<Source>,
    /// Remove the key from the request before it goes upstream.
    pub hide: bool,
    /// SHA-256 of each key and its consumer: compared in constant time,
    /// and the keys themselves are not kept.
    pub keys: Vec<([u8; 32], usize)>,
}

#[derive(Debug)]
pub struct Provider {
    pub name: String,
    pub requirements: Requirements,
    pub subject: Option<StringMatcher>,
    pub sources: Vec<Source>,
    pub jwks: JwksSource,
    pub forward: bool,
    pub payload_header: Option<String>,
    pub claims_to_headers: Vec<ClaimHeader>,
    /// The claim naming the identity (`sub` by default).
    pub identity_claim: String,
    /// Claim value → consumer, from consumers' `jwt` entries.
    pub consumers: Vec<(String, usize)>,
    pub max_token_bytes: usize,
    /// The most keys (that fit its `alg`) a token without `kid` is tried
    /// against: each try may cost milliseconds, chosen by the caller.
    pub max_keys_without_kid: usize,
}

#[derive(Debug)]
pub enum JwksSource {
    Local(Rc<Jwks>),
    Remote(RemoteJwks),
}

#[derive(Debug, Clone)]
pub struct RemoteJwks {
    pub cluster: String,
    pub authority: String,
    pub path: String,
    pub timeout_ms: u64,
    pub cache_seconds: u64,
    pub max_bytes: usize,
    /// First and longest pause between failed fetches.
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    /// A token with an unknown `kid` refetches the set at most this often.
    pub min_refetch_seconds: u64,
    /// Fetch when the plugin starts instead of on the first request.
    pub fetch_at_start: bool,
}

#[derive(Debug)]
pub struct ClaimHeader {
    /// Dotted path into the claims (`realm_access.roles`).
    pub claim: Vec<String>,
    pub header: String,
}

#[derive(Debug)]
pub struct ExtAuthz {
    pub cluster: String,
    pub authority: String,
    pub path_prefix: String,
    pub timeout_ms: u64,
    /// Request headers sent to the authorization service (besides
    /// `:method`, `:path`, `:authority`).
    pub forward_headers: Vec<String>,
    /// Headers of an allowing answer copied onto the upstream request.
    pub upstream_headers: Vec<String>,
    /// Headers of a denying answer passed to the client (`None`: all but
    /// hop-by-hop and length headers).
    pub client_headers: Option<Vec<String>>,
    pub failure_mode_allow: bool,
    pub status_on_error: u16,
    /// The request body sent along (`with_request_body`).
    pub with_request_body: Option<BodySettings>,
}

/// How much of the request body goes to the authorization service, as
/// Envoy's ext_authz `with_request_body`.
#[derive(Debug, Clone, Copy)]
pub struct BodySettings {
    /// The most bytes sent; a longer body gets 413 unless partial messages
    /// are allowed, when its first `max_request_bytes` go.
    pub max_request_bytes: usize,
    pub allow_partial_message: bool,
}

/// The largest `max_request_bytes`: the body is held in the VM's memory.
pub const MAX_BODY_BYTES: u64 = 1 << 20;

/// A method combination a rule requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Require {
    Basic,
    ApiKey,
    ExtAuthz,
    Jwt(usize),
    Any(Vec<Require>),
    All(Vec<Require>),
    AllowMissing(Box<Require>),
    AllowMissingOrFailed(Box<Require>),
}

#[derive(Debug)]
pub struct Rule {
    pub name: String,
    pub scope: Option<ScopeMatch>,
    pub when: Expr,
    pub require: Option<Require>,
    /// Identities the decision applies to (empty: any).
    pub identities: Vec<String>,
    /// Claim conditions: dotted claim path and matcher.
    pub claims: Vec<(Vec<String>, StringMatcher)>,
    /// `deny`: the rule refuses requests meeting its conditions.
    pub deny: bool,
    pub log_only: bool,
}

impl Config {
    /// Decodes and compiles a plugin configuration.
    pub fn parse(bytes: &[u8]) -> Result<Config, Problems> {
        decode_json(bytes, decode)
    }

    /// Remote JWKS providers, by index.
    pub fn remote_providers(&self) -> impl Iterator<Item = (usize, &RemoteJwks)> {
        self.providers
            .iter()
            .enumerate()
            .filter_map(|(i, p)| match &p.jwks {
                JwksSource::Remote(remote) => Some((i, remote)),
                JwksSource::Local(_) => None,
            })
    }
}

fn decode(value: &Value, problems: &mut Problems) -> Config {
    let mut config = Config {
        notices: Vec::new(),
        realm: "proxy".to_owned(),
        identity_header: DEFAULT_IDENTITY_HEADER.to_owned(),
        client_ip: ClientIpSource::Peer,
        problem_details: false,
        bypass_cors_preflight: true,
        deny_unmatched: false,
        consumers: Vec::new(),
        basic_users: Vec::new(),
        api_key: ApiKeys::default(),
        providers: Vec::new(),
        ext_authz: None,
        rules: Vec::new(),
        token_cache_size: 1024,
    };
    let Some(f) = Fields::new(value, "", TOP, problems) else {
        return config;
    };
    if let Some(realm) = f.string("realm", problems) {
        if realm.contains(['"', '\\']) || realm.chars().any(char::is_control) {
            problems.push(
                &f.at("realm"),
                "a realm cannot contain quotes, backslashes or control characters",
            );
        }
        realm.clone_into(&mut config.realm);
    }
    if let Some(name) = f.string("identity_header", problems) {
        check_header_name(name, &f.at("identity_header"), problems);
        config.identity_header = name.to_ascii_lowercase();
    }
    if let Some(v) = f.value("client_ip") {
        config.client_ip = filter_common::net::client_ip_source(v, &f.at("client_ip"), problems);
    }
    config.problem_details = f.flag("problem_details", problems);
    config.bypass_cors_preflight = f.bool("bypass_cors_preflight", problems).unwrap_or(true);
    match f.string("unmatched", problems) {
        None | Some("allow") => {}
        Some("deny") => config.deny_unmatched = true,
        Some(other) => problems.push(
            &f.at("unmatched"),
            format!("`{other}`: expected `allow` or `deny`"),
        ),
    }
    if let Some(n) = f.integer("token_cache_size", 0, 1 << 20, problems) {
        config.token_cache_size = usize::try_from(n).unwrap_or(usize::MAX);
    }
    config.providers = decode_providers(&f, &mut config.notices, problems);
    (config.api_key.sources, config.api_key.hide) = decode_api_key(&f, problems);
    config.ext_authz = f
        .value("ext_authz")
        .and_then(|v| decode_ext_authz(v, &f.at("ext_authz"), problems));
    decode_consumers(&f, &mut config, problems);
    let rules_at = f.at("rules");
    for (i, rule) in f.list("rules", problems).iter().enumerate() {
        if let Some(rule) = decode_rule(rule, &join(&rules_at, &i), &config, problems) {
            config.rules.push(rule);
        }
    }
    if config.rules.is_empty() && problems.is_empty() {
        problems.push("", "nothing to do: give `rules`");
    }
    check_methods_are_configured(&f, &config, problems);
    config
}

/// `api_key`: where keys are looked for, in order, and whether they are
/// hidden from the upstream.
fn decode_api_key(f: &Fields<'_>, problems: &mut Problems) -> (Vec<Source>, bool) {
    let Some(api) = f.object("api_key", &["sources", "hide"], problems) else {
        return (Vec::new(), false);
    };
    let at = api.at("sources");
    let sources: Vec<Source> = api
        .list("sources", problems)
        .iter()
        .enumerate()
        .filter_map(|(i, s)| Source::decode(s, &join(&at, &i), problems))
        .collect();
    if sources.is_empty() {
        problems.push(
            &at,
            "give at least one source (`header`, `query` or `cookie`)",
        );
    }
    (sources, api.flag("hide", problems))
}

/// How many keys a token without `kid` is tried against, unless the
/// provider says (see [`Provider::max_keys_without_kid`]).
pub const DEFAULT_KEYS_WITHOUT_KID: usize = 3;

fn decode_providers(
    f: &Fields<'_>,
    notices: &mut Vec<String>,
    problems: &mut Problems,
) -> Vec<Provider> {
    const KNOWN: &[&str] = &[
        "name",
        "issuer",
        "audiences",
        "subject",
        "require_expiration",
        "max_lifetime_seconds",
        "clock_skew_seconds",
        "from_headers",
        "from_params",
        "from_cookies",
        "local_jwks",
        "remote_jwks",
        "forward",
        "payload_header",
        "claims_to_headers",
        "identity_claim",
        "max_token_bytes",
        "max_keys_without_kid",
    ];
    let at = f.at("jwt_providers");
    let mut providers: Vec<Provider> = Vec::new();
    for (i, value) in f.list("jwt_providers", problems).iter().enumerate() {
        let at = join(&at, &i);
        let Some(p) = Fields::new(value, &at, KNOWN, problems) else {
            continue;
        };
        let name = p.required_string("name", problems).unwrap_or_default();
        if providers.iter().any(|q| q.name == name) {
            problems.push(&p.at("name"), format!("provider `{name}` is defined twice"));
        }
        let mut requirements = Requirements {
            issuer: p.string("issuer", problems).map(str::to_owned),
            audiences: p
                .strings("audiences", problems)
                .into_iter()
                .map(str::to_owned)
                .collect(),
            ..Requirements::default()
        };
        match p.bool("require_expiration", problems) {
            Some(b) => requirements.require_exp = b,
            None => notices.push(format!(
                "{}: tokens without `exp` are refused (`require_expiration` defaults to true \
                 here, to false in Envoy's jwt_authn; set it to accept them)",
                p.at("require_expiration")
                    .trim_end_matches("/require_expiration")
            )),
        }
        requirements.max_lifetime =
            p.integer("max_lifetime_seconds", 1, u64::from(u32::MAX), problems);
        if let Some(s) = p.integer("clock_skew_seconds", 0, 3600, problems) {
            requirements.clock_skew = s;
        }
        let subject = p.value("subject").and_then(|v| {
            StringMatcher::decode(v, &p.at("subject"), Named::Forbidden, problems).map(|(_, m)| m)
        });
        let mut sources = Vec::new();
        let headers_at = p.at("from_headers");
        for (j, h) in p.list("from_headers", problems).iter().enumerate() {
            let at = join(&headers_at, &j);
            let Some(h) = Fields::new(h, &at, &["name", "value_prefix"], problems) else {
                continue;
            };
            if let Some(name) = h.required_string("name", problems) {
                check_header_name(name, &h.at("name"), problems);
                sources.push(Source::Header {
                    name: name.to_ascii_lowercase(),
                    prefix: h
                        .string("value_prefix", problems)
                        .unwrap_or_default()
                        .to_owned(),
                });
            }
        }
        sources.extend(
            p.strings("from_params", problems)
                .into_iter()
                .map(|s| Source::Query(s.to_owned())),
        );
        sources.extend(
            p.strings("from_cookies", problems)
                .into_iter()
                .map(|s| Source::Cookie(s.to_owned())),
        );
        if sources.is_empty() {
            // jwt_authn's default locations.
            sources.push(Source::Header {
                name: "authorization".to_owned(),
                prefix: "Bearer ".to_owned(),
            });
            sources.push(Source::Query("access_token".to_owned()));
        }
        let jwks = decode_jwks(&p, problems);
        let payload_header = p.string("payload_header", problems).map(|h| {
            check_header_name(h, &p.at("payload_header"), problems);
            h.to_ascii_lowercase()
        });
        let mut claims_to_headers = Vec::new();
        let c_at = p.at("claims_to_headers");
        for (j, c) in p.list("claims_to_headers", problems).iter().enumerate() {
            let at = join(&c_at, &j);
            let Some(c) = Fields::new(c, &at, &["claim", "header"], problems) else {
                continue;
            };
            let (Some(claim), Some(header)) = (
                c.required_string("claim", problems),
                c.required_string("header", problems),
            ) else {
                continue;
            };
            check_header_name(header, &c.at("header"), problems);
            claims_to_headers.push(ClaimHeader {
                claim: claim_path(claim, &c.at("claim"), problems),
                header: header.to_ascii_lowercase(),
            });
        }
        let max_token_bytes = p
            .integer("max_token_bytes", 64, 1 << 20, problems)
            .unwrap_or(DEFAULT_MAX_TOKEN_BYTES);
        providers.push(Provider {
            name: name.to_owned(),
            requirements,
            subject,
            sources,
            jwks: jwks.unwrap_or_else(|| JwksSource::Local(Rc::default())),
            forward: p.flag("forward", problems),
            payload_header,
            claims_to_headers,
            identity_claim: p
                .string("identity_claim", problems)
                .unwrap_or("sub")
                .to_owned(),
            consumers: Vec::new(),
            max_token_bytes: usize::try_from(max_token_bytes).unwrap_or(usize::MAX),
            max_keys_without_kid: p
                .integer("max_keys_without_kid", 1, 64, problems)
                .map_or(DEFAULT_KEYS_WITHOUT_KID, |n| {
                    usize::try_from(n).unwrap_or(DEFAULT_KEYS_WITHOUT_KID)
                }),
        });
    }
    providers
}

fn decode_jwks(p: &Fields<'_>, problems: &mut Problems) -> Option<JwksSource> {
    match (p.value("local_jwks"), p.value("remote_jwks")) {
        (Some(local), None) => {
            let text = match local {
                Value::String(s) => s.as_bytes().to_vec(),
                other => other.to_string().into_bytes(),
            };
            match Jwks::parse(&text) {
                Ok(jwks) => Some(JwksSource::Local(Rc::new(jwks))),
                Err(e) => {
                    problems.push(&p.at("local_jwks"), e);
                    None
                }
            }
        }
        (None, Some(remote)) => {
            decode_remote(remote, &p.at("remote_jwks"), problems).map(JwksSource::Remote)
        }
        (Some(_), Some(_)) => {
            problems.push(
                &p.at("remote_jwks"),
                "give `local_jwks` or `remote_jwks`, not both",
            );
            None
        }
        (None, None) => {
            let at = p.at("name");
            problems.push(
                at.trim_end_matches("/name"),
                "a provider needs `local_jwks` or `remote_jwks`",
            );
            None
        }
    }
}

fn decode_remote(value: &Value, at: &str, problems: &mut Problems) -> Option<RemoteJwks> {
    const KNOWN: &[&str] = &[
        "cluster",
        "authority",
        "path",
        "timeout_ms",
        "cache_seconds",
        "max_bytes",
        "retry_initial_ms",
        "retry_max_ms",
        "min_refetch_seconds",
        "fetch_at_start",
    ];
    let r = Fields::new(value, at, KNOWN, problems)?;
    let cluster = r.required_string("cluster", problems);
    let path = r.required_string("path", problems);
    if let Some(path) = path
        && !path.starts_with('/')
    {
        problems.push(&r.at("path"), "the path must start with `/`");
    }
    let initial = r
        .integer("retry_initial_ms", 1, 3_600_000, problems)
        .unwrap_or(1000);
    let max = r
        .integer("retry_max_ms", 1, 3_600_000, problems)
        .unwrap_or(60_000);
    if max < initial {
        problems.push(&r.at("retry_max_ms"), "must be at least `retry_initial_ms`");
    }
    let (cluster, path) = (cluster?, path?);
    Some(RemoteJwks {
        cluster: cluster.to_owned(),
        authority: r
            .string("authority", problems)
            .unwrap_or(cluster)
            .to_owned(),
        path: path.to_owned(),
        timeout_ms: r.integer("timeout_ms", 1, 60_000, problems).unwrap_or(5000),
        cache_seconds: r
            .integer("cache_seconds", 1, 30 * 86_400, problems)
            .unwrap_or(600),
        max_bytes: usize::try_from(
            r.integer("max_bytes", 256, 4 << 20, problems)
                .unwrap_or(256 * 1024),
        )
        .unwrap_or(usize::MAX),
        retry_initial_ms: initial,
        retry_max_ms: max,
        min_refetch_seconds: r
            .integer("min_refetch_seconds", 0, 86_400, problems)
            .unwrap_or(30),
        fetch_at_start: r.flag("fetch_at_start", problems),
    })
}

fn decode_ext_authz(value: &Value, at: &str, problems: &mut Problems) -> Option<ExtAuthz> {
    const KNOWN: &[&str] = &[
        "cluster",
        "authority",
        "path_prefix",
        "timeout_ms",
        "forward_headers",
        "upstream_headers",
        "client_headers",
        "failure_mode_allow",
        "status_on_error",
        "with_request_body",
    ];
    let e = Fields::new(value, at, KNOWN, problems)?;
    let cluster = e.required_string("cluster", problems)?;
    let path_prefix = e.string("path_prefix", problems).unwrap_or_default();
    if !path_prefix.is_empty() && !path_prefix.starts_with('/') {
        problems.push(&e.at("path_prefix"), "the prefix must start with `/`");
    }
    let headers = |key: &str, problems: &mut Problems| -> Vec<String> {
        let at = e.at(key);
        e.strings(key, problems)
            .into_iter()
            .enumerate()
            .map(|(i, h)| {
                check_header_name(h, &join(&at, &i), problems);
                h.to_ascii_lowercase()
            })
            .collect()
    };
    let mut forward_headers = headers("forward_headers", problems);
    if forward_headers.is_empty() {
        forward_headers.push("authorization".to_owned());
    }
    Some(ExtAuthz {
        cluster: cluster.to_owned(),
        authority: e
            .string("authority", problems)
            .unwrap_or(cluster)
            .to_owned(),
        path_prefix: path_prefix.to_owned(),
        timeout_ms: e.integer("timeout_ms", 1, 60_000, problems).unwrap_or(200),
        forward_headers,
        upstream_headers: headers("upstream_headers", problems),
        client_headers: e
            .value("client_headers")
            .map(|_| headers("client_headers", problems)),
        failure_mode_allow: e.flag("failure_mode_allow", problems),
        status_on_error: e
            .integer("status_on_error", 200, 599, problems)
            .map_or(403, |n| u16::try_from(n).unwrap_or(403)),
        with_request_body: decode_body_settings(&e, problems),
    })
}

fn decode_body_settings(e: &Fields<'_>, problems: &mut Problems) -> Option<BodySettings> {
    const KNOWN: &[&str] = &["max_request_bytes", "allow_partial_message"];
    let b = e.object("with_request_body", KNOWN, problems)?;
    if b.value("max_request_bytes").is_none() {
        problems.push(
            &e.at("with_request_body"),
            "missing field `max_request_bytes`",
        );
    }
    let max = b.integer("max_request_bytes", 1, MAX_BODY_BYTES, problems)?;
    Some(BodySettings {
        max_request_bytes: usize::try_from(max).unwrap_or(usize::MAX),
        allow_partial_message: b.flag("allow_partial_message", problems),
    })
}

fn decode_consumers(f: &Fields<'_>, config: &mut Config, problems: &mut Problems) {
    let at = f.at("consumers");
    for (i, value) in f.list("consumers", problems).iter().enumerate() {
        let at = join(&at, &i);
        let Some(c) = Fields::new(value, &at, &["name", "basic", "api_keys", "jwt"], problems)
        else {
            continue;
        };
        let Some(name) = c.required_string("name", problems) else {
            continue;
        };
        if name.is_empty() || name.bytes().any(|b| b.is_ascii_control()) {
            problems.push(
                &c.at("name"),
                "a consumer name must be non-empty printable text",
            );
        }
        if name.contains(':') {
            problems.push(
                &c.at("name"),
                "a consumer name cannot contain `:` (`<provider>:<claim value>` names a token no consumer maps)",
            );
        }
        if config.consumers.iter().any(|n| n == name) {
            problems.push(&c.at("name"), format!("consumer `{name}` is defined twice"));
        }
        let index = config.consumers.len();
        config.consumers.push(name.to_owned());
        if let Some(b) = c.object("basic", &["username", "password_hash"], problems) {
            let user = b.required_string("username", problems);
            let hash = b.required_string("password_hash", problems).and_then(|h| {
                PasswordHash::parse(h)
                    .map_err(|e| problems.push(&b.at("password_hash"), e))
                    .ok()
            });
            if let Some(user) = user {
                if user.as_bytes().contains(&b':') {
                    problems.push(&b.at("username"), "a Basic user name cannot contain `:`");
                }
                if config.basic_users.iter().any(|u| u.user == user) {
                    problems.push(&b.at("username"), format!("user `{user}` is defined twice"));
                }
            }
            if let (Some(user), Some(hash)) = (user, hash) {
                config.basic_users.push(BasicUser {
                    user: user.to_owned(),
                    hash,
                    consumer: index,
                });
            }
        }
        let keys_at = c.at("api_keys");
        for (j, key) in c.strings("api_keys", problems).into_iter().enumerate() {
            if key.len() < 16 {
                problems.push(
                    &join(&keys_at, &j),
                    "an API key must be at least 16 characters",
                );
                continue;
            }
            let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
            if config.api_key.keys.iter().any(|(d, _)| *d == digest) {
                // The key itself is never echoed.
                problems.push(
                    &join(&keys_at, &j),
                    "this API key is already given to a consumer",
                );
            }
            config.api_key.keys.push((digest, index));
        }
        if let Some(j) = c.object("jwt", &["provider", "claim_value"], problems) {
            let provider = j.required_string("provider", problems);
            let value = j.required_string("claim_value", problems);
            if let (Some(provider), Some(value)) = (provider, value) {
                match config.providers.iter_mut().find(|p| p.name == provider) {
                    Some(p) => p.consumers.push((value.to_owned(), index)),
                    None => problems.push(
                        &j.at("provider"),
                        format!("no JWT provider named `{provider}`"),
                    ),
                }
            }
        }
    }
}

fn decode_rule(value: &Value, at: &str, config: &Config, problems: &mut Problems) -> Option<Rule> {
    const KNOWN: &[&str] = &[
        "name",
        "scope",
        "match",
        "require",
        "identities",
        "claims",
        "action",
        "log_only",
    ];
    let r = Fields::new(value, at, KNOWN, problems)?;
    let name = r.string("name", problems).map_or_else(
        || format!("rule-{}", at.rsplit('/').next().unwrap_or_default()),
        str::to_owned,
    );
    let scope = r
        .value("scope")
        .map(|v| ScopeMatch::decode(v, &r.at("scope"), problems));
    let when = r
        .value("match")
        .map(|v| Expr::decode(v, &r.at("match"), problems))
        .unwrap_or_default();
    let require = r
        .value("require")
        .and_then(|v| decode_require(v, &r.at("require"), config, 0, problems));
    let identities_at = r.at("identities");
    let identities: Vec<String> = r
        .strings("identities", problems)
        .into_iter()
        .map(str::to_owned)
        .collect();
    for (i, identity) in identities.iter().enumerate() {
        let known = match identity.split_once(':') {
            Some((provider, _)) => config.providers.iter().any(|p| p.name == provider),
            None => config.consumers.iter().any(|c| c == identity),
        };
        if !known {
            problems.push(
                &join(&identities_at, &i),
                format!(
                    "`{identity}` is neither a consumer nor `<provider>:<claim value>` of a provider \
                     (a token whose claim maps to no consumer is named `<provider>:<claim value>`)"
                ),
            );
        }
    }
    if r.value("identities").is_some() && identities.is_empty() {
        problems.push(
            &identities_at,
            "an empty list matches nobody; leave it out to match anyone",
        );
    }
    let claims_at = r.at("claims");
    let claims: Vec<(Vec<String>, StringMatcher)> = r
        .list("claims", problems)
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let at = join(&claims_at, &i);
            let (name, matcher) = StringMatcher::decode(c, &at, Named::Required, problems)?;
            Some((claim_path(&name, &join(&at, &"name"), problems), matcher))
        })
        .collect();
    let deny = match r.string("action", problems) {
        None | Some("allow") => false,
        Some("deny") => true,
        Some(other) => {
            problems.push(
                &r.at("action"),
                format!("`{other}`: expected `allow` or `deny`"),
            );
            false
        }
    };
    let needs_identity = !identities.is_empty() || !claims.is_empty();
    if needs_identity && require.is_none() {
        problems.push(
            at,
            "`identities` and `claims` need `require`: who the caller is must be established first",
        );
    }
    Some(Rule {
        name,
        scope,
        when,
        require,
        identities,
        claims,
        deny,
        log_only: r.flag("log_only", problems),
    })
}

/// Requirements nest at most this deep.
const MAX_DEPTH: usize = 6;

fn decode_require(
    value: &Value,
    at: &str,
    config: &Config,
    depth: usize,
    problems: &mut Problems,
) -> Option<Require> {
    if depth > MAX_DEPTH {
        problems.push(at, format!("requirements nest at most {MAX_DEPTH} deep"));
        return None;
    }
    match value {
        Value::String(s) => match s.as_str() {
            "basic" => Some(Require::Basic),
            "api_key" => Some(Require::ApiKey),
            "ext_authz" => Some(Require::ExtAuthz),
            other => {
                problems.push(
                    at,
                    format!("`{other}`: expected `basic`, `api_key`, `ext_authz` or an object (`jwt`, `any`, `all`, `allow_missing`, `allow_missing_or_failed`)"),
                );
                None
            }
        },
        Value::Object(map) if map.len() == 1 => {
            let (key, inner) = map.iter().next()?;
            let inner_at = join(at, &key);
            match key.as_str() {
                "jwt" => {
                    let Some(name) = inner.as_str() else {
                        problems.push(
                            &inner_at,
                            format!("expected a provider name, found {}", kind(inner)),
                        );
                        return None;
                    };
                    match config.providers.iter().position(|p| p.name == name) {
                        Some(i) => Some(Require::Jwt(i)),
                        None => {
                            problems.push(&inner_at, format!("no JWT provider named `{name}`"));
                            None
                        }
                    }
                }
                "any" | "all" => {
                    let Some(list) = inner.as_array() else {
                        problems.push(&inner_at, format!("expected a list, found {}", kind(inner)));
                        return None;
                    };
                    if list.len() < 2 {
                        problems.push(&inner_at, "list at least two requirements");
                    }
                    let items: Vec<Require> = list
                        .iter()
                        .enumerate()
                        .filter_map(|(i, v)| {
                            decode_require(v, &join(&inner_at, &i), config, depth + 1, problems)
                        })
                        .collect();
                    Some(if key == "any" {
                        Require::Any(items)
                    } else {
                        Require::All(items)
                    })
                }
                "allow_missing" | "allow_missing_or_failed" => {
                    let inner = decode_require(inner, &inner_at, config, depth + 1, problems)?;
                    Some(if key == "allow_missing" {
                        Require::AllowMissing(Box::new(inner))
                    } else {
                        Require::AllowMissingOrFailed(Box::new(inner))
                    })
                }
                other => {
                    problems.push(&inner_at, format!("unknown requirement `{other}`; expected `jwt`, `any`, `all`, `allow_missing` or `allow_missing_or_failed`"));
                    None
                }
            }
        }
        other => {
            problems.push(
                at,
                format!(
                    "expected a method name or an object with one member, found {}",
                    kind(other)
                ),
            );
            None
        }
    }
}

/// A dotted claim path; empty segments are refused.
fn claim_path(text: &str, at: &str, problems: &mut Problems) -> Vec<String> {
    let path: Vec<String> = text.split('.').map(str::to_owned).collect();
    if path.iter().any(String::is_empty) {
        problems.push(at, "a claim path is names separated by single dots");
    }
    path
}

/// Every method a rule requires must be configured (and vice versa, a
/// configured method nobody requires is probably a mistake worth a warning,
/// but not an error).
fn check_methods_are_configured(f: &Fields<'_>, config: &Config, problems: &mut Problems) {
    fn walk(r: &Require, out: &mut Vec<&'static str>) {
        match r {
            Require::Basic => out.push("basic"),
            Require::ApiKey => out.push("api_key"),
            Require::ExtAuthz => out.push("ext_authz"),
            Require::Jwt(_) => {}
            Require::Any(list) | Require::All(list) => list.iter().for_each(|r| walk(r, out)),
            Require::AllowMissing(r) | Require::AllowMissingOrFailed(r) => walk(r, out),
        }
    }
    let rules_at = f.at("rules");
    for (i, rule) in config.rules.iter().enumerate() {
        let mut used = Vec::new();
        if let Some(r) = &rule.require {
            walk(r, &mut used);
        }
        let at = join(&join(&rules_at, &i), &"require");
        for method in used {
            let missing = match method {
                "basic" => config
                    .basic_users
                    .is_empty()
                    .then_some("no consumer has `basic` credentials"),
                "api_key" if config.api_key.sources.is_empty() => {
                    Some("`api_key.sources` is not configured")
                }
                "api_key" => config
                    .api_key
                    .keys
                    .is_empty()
                    .then_some("no consumer has `api_keys`"),
                _ => config
                    .ext_authz
                    .is_none()
                    .then_some("`ext_authz` is not configured"),
            };
            if let Some(why) = missing {
                problems.push(&at, format!("requires `{method}`, but {why}"));
            }
        }
    }
}
