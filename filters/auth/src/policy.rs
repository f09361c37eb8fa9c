//! Deciding a request: the first rule that applies, its authentication
//! requirement evaluated method by method, then its conditions on the
//! identity and claims. Anything the proxy must fetch first (a key set, the
//! external authorization answer) is asked for with [`Need`]; the glue gets
//! it and evaluates again.

use std::collections::HashMap;
use std::rc::Rc;

use constant_time_eq::constant_time_eq;
use filter_common::value::{Map, Value};
use filter_proxy::headers::is_field_value;
use filter_proxy::reply::LocalReply;
use filter_proxy::request::{Host, Request};
use sha2::{Digest, Sha256};

use crate::basic::{BasicError, parse_authorization};
use crate::config::{Config, JwksSource, Provider, Require, Rule};
use crate::source::{single, split_list};
use jose::jwk::Jwks;
use jose::jwt::{JwtError, Times, Token};
use jose::signature::{InModule, SignatureHost};

/// An authentication method, for counters, logs and challenges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Basic,
    ApiKey,
    Jwt,
    ExtAuthz,
}

impl Method {
    pub const ALL: [Method; 4] = [Method::Basic, Method::ApiKey, Method::Jwt, Method::ExtAuthz];

    pub fn name(self) -> &'static str {
        match self {
            Method::Basic => "basic",
            Method::ApiKey => "api_key",
            Method::Jwt => "jwt",
            Method::ExtAuthz => "ext_authz",
        }
    }
}

/// The key set of a remote provider, as the proxy has it.
#[derive(Debug, Clone)]
pub enum Keys {
    /// Keys, and a generation that changes whenever the set does.
    Ready(Rc<Jwks>, u64),
    /// None yet (or expired): fetch, then evaluate again.
    Fetch,
    /// Fetching failed and no keys are known.
    Failed,
}

/// What the external authorization service answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthzAnswer {
    /// 200: allowed; the response headers.
    Allowed(Vec<(String, Vec<u8>)>),
    /// Any other status: denied, passed on to the client.
    Denied {
        status: u16,
        headers: Vec<(String, Vec<u8>)>,
        body: Vec<u8>,
    },
    /// No answer: reset, timeout, or a call the proxy refused.
    Error,
}

/// What the evaluation needs before it can decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Jwks { provider: usize, refresh: bool },
    ExtAuthz,
}

/// What the proxy provides to an evaluation.
pub trait Env {
    /// Unix seconds.
    fn now(&self) -> u64;
    /// The key set of remote provider `provider`; `unknown_kid` when a token
    /// named a key the current set lacks (a rotation may be under way).
    fn keys(&mut self, provider: usize, unknown_kid: bool) -> Keys;
    /// The external authorization answer for this request, once there is one.
    fn authz(&self) -> Option<&AuthzAnswer>;
    fn caches(&mut self) -> &mut Caches;
    /// The proxy's signature verification; `None` (the default, for an
    /// environment without a proxy): every signature in the module.
    fn signatures(&mut self) -> Option<&mut dyn SignatureHost> {
        None
    }
}

/// Per-VM caches of credentials already verified.
#[derive(Debug, Default)]
pub struct Caches {
    /// A keyed hash of (provider, token) → the token as it passed.
    pub tokens: Bounded<u64, Rc<CachedToken>>,
    /// SHA-256(user ‖ 0 ‖ password) → basic user index (slow hashes only).
    pub basic: Bounded<[u8; 32], usize>,
    /// The token cache's hash key, random per VM (SipHash: an attacker who
    /// does not know it cannot aim tokens at one entry).
    hash_key: std::collections::hash_map::RandomState,
}

impl Caches {
    pub fn new(token_capacity: usize) -> Self {
        Self {
            tokens: Bounded::new(token_capacity),
            basic: Bounded::new(256),
            hash_key: std::collections::hash_map::RandomState::new(),
        }
    }

    /// Where `provider`'s `token` is kept: a SipHash of both, not a
    /// SHA-256 (which was a third of a cached request's work in the
    /// harness); a hit is confirmed by comparing the whole token
    /// ([`CachedToken::is`]).
    fn token_key(&self, provider: usize, token: &[u8]) -> u64 {
        use std::hash::BuildHasher as _;
        self.hash_key.hash_one((provider, token))
    }
}

/// A map with at most `capacity` entries; when full an arbitrary entry
/// makes room (no ordering kept: cheap, and an attacker cannot pin entries).
#[derive(Debug)]
pub struct Bounded<K, V> {
    map: HashMap<K, V>,
    capacity: usize,
}

/// Empty, and keeping nothing (capacity 0).
impl<K, V> Default for Bounded<K, V> {
    fn default() -> Self {
        Self {
            map: HashMap::new(),
            capacity: 0,
        }
    }
}

impl<K: std::hash::Hash + Eq + Copy, V: Clone> Bounded<K, V> {
    pub fn new(capacity: usize) -> Self {
        Self {
            map: HashMap::new(),
            capacity,
        }
    }

    pub fn get(&self, key: &K) -> Option<V> {
        self.map.get(key).cloned()
    }

    pub fn insert(&mut self, key: K, value: V) {
        if self.capacity == 0 {
            return;
        }
        if self.map.len() >= self.capacity
            && !self.map.contains_key(&key)
            && let Some(evict) = self.map.keys().next().copied()
        {
            self.map.remove(&evict);
        }
        self.map.insert(key, value);
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// A token a provider verified (shared with the token cache: a repeated
/// token copies nothing).
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedJwt {
    pub provider: usize,
    pub payload_b64: Rc<str>,
    pub claims: Rc<Map>,
}

/// A token that passed every check but the time ones, as the cache keeps
/// it: a repeat costs a keyed hash, a lookup and a constant-time compare,
/// then the time checks; no base64, JSON or signature work.
#[derive(Debug)]
pub struct CachedToken {
    /// The token itself, compared whole on a hit.
    token: Box<[u8]>,
    /// The key-set generation it was verified with (a new set re-verifies).
    generation: u64,
    times: Times,
    identity: Option<String>,
    jwt: VerifiedJwt,
}

impl CachedToken {
    /// Whether this entry is `provider`'s `token` (constant time in the
    /// token's bytes: a near miss takes as long as a far one).
    fn is(&self, provider: usize, token: &[u8]) -> bool {
        self.jwt.provider == provider && constant_time_eq(&self.token, token)
    }
}

/// What passed authentication brings to the request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Passed {
    pub identity: Option<String>,
    /// Methods whose credentials were verified.
    pub methods: Vec<Method>,
    pub jwts: Vec<VerifiedJwt>,
    /// The API key's source, when a key was verified.
    pub api_key_source: Option<usize>,
    /// Headers of an allowing external authorization answer.
    pub authz_headers: Vec<(String, Vec<u8>)>,
    /// External authorization failed and `failure_mode_allow` let it pass.
    pub authz_failed_open: bool,
}

impl Passed {
    fn merge(&mut self, other: Passed) {
        if self.identity.is_none() {
            self.identity = other.identity;
        }
        self.methods.extend(other.methods);
        self.jwts.extend(other.jwts);
        self.api_key_source = self.api_key_source.or(other.api_key_source);
        self.authz_headers.extend(other.authz_headers);
        self.authz_failed_open |= other.authz_failed_open;
    }
}

/// Why credentials were refused (a 401), in words safe to show a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub method: Method,
    pub reason: String,
    /// RFC 6750 error code for Bearer (`invalid_token`, `invalid_request`).
    pub code: Option<&'static str>,
    /// Answered 403, not 401: a valid token for another audience, as
    /// Envoy's `jwt_authn` answers it.
    pub forbidden: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Authn {
    Passed(Passed),
    /// No credentials for this method (the first one looked for).
    Missing(Method),
    Failed(Failure),
}

#[derive(Debug, Clone, PartialEq)]
enum Failure {
    Refused(Refusal),
    /// The authorization service said no: its answer goes to the client.
    AuthzDenied(LocalReply),
    /// The authorization service could not be asked, failing closed.
    AuthzError,
}

/// The decision on a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Allow(Passed),
    /// 401: no credentials; the first method looked for.
    Missing(Method),
    /// 401: credentials refused.
    Unauthorized(Refusal),
    /// 403 by the rule's conditions (or `unmatched: deny`).
    Forbidden(Passed),
    /// The external authorization service's denial, passed on.
    AuthzDenied(LocalReply),
    /// External authorization failed, failing closed.
    AuthzError,
}

/// A decision and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The rule that applied (`None`: no rule did, or a CORS preflight).
    pub rule: Option<usize>,
    pub decision: Decision,
    pub preflight: bool,
}

/// Decides `request`, or says what must be fetched first.
///
/// # Errors
///
/// A [`Need`] the proxy must satisfy before evaluating again.
pub fn evaluate<H: Host, E: Env>(
    config: &Config,
    request: &Request<H>,
    env: &mut E,
) -> Result<Verdict, Need> {
    if config.bypass_cors_preflight && is_preflight(request) {
        return Ok(Verdict {
            rule: None,
            decision: Decision::Allow(Passed::default()),
            preflight: true,
        });
    }
    let Some((index, rule)) = config
        .rules
        .iter()
        .enumerate()
        .find(|(_, rule)| applies(rule, request))
    else {
        let decision = if config.deny_unmatched {
            Decision::Forbidden(Passed::default())
        } else {
            Decision::Allow(Passed::default())
        };
        return Ok(Verdict {
            rule: None,
            decision,
            preflight: false,
        });
    };
    let authn = match &rule.require {
        None => Authn::Passed(Passed::default()),
        Some(require) => authenticate(config, require, request, env)?,
    };
    let decision = match authn {
        Authn::Missing(method) => Decision::Missing(method),
        Authn::Failed(Failure::Refused(refusal)) => Decision::Unauthorized(refusal),
        Authn::Failed(Failure::AuthzDenied(reply)) => Decision::AuthzDenied(reply),
        Authn::Failed(Failure::AuthzError) => Decision::AuthzError,
        Authn::Passed(passed) => {
            if conditions_hold(rule, &passed) == rule.deny {
                Decision::Forbidden(passed)
            } else {
                Decision::Allow(passed)
            }
        }
    };
    Ok(Verdict {
        rule: Some(index),
        decision,
        preflight: false,
    })
}

fn applies<H: Host>(rule: &Rule, request: &Request<H>) -> bool {
    rule.scope.as_ref().is_none_or(|s| s.matches(request)) && rule.when.matches(request)
}

/// A CORS preflight: `OPTIONS` with `Origin` and
/// `Access-Control-Request-Method` (browsers send no credentials on it).
fn is_preflight<H: Host>(request: &Request<H>) -> bool {
    request.method() == b"OPTIONS"
        && request.headers.contains("origin")
        && request.headers.contains("access-control-request-method")
}

fn conditions_hold(rule: &Rule, passed: &Passed) -> bool {
    let identity_ok = rule.identities.is_empty()
        || passed
            .identity
            .as_ref()
            .is_some_and(|id| rule.identities.iter().any(|allowed| allowed == id));
    identity_ok
        && rule.claims.iter().all(|(path, matcher)| {
            let values: Vec<Vec<u8>> = passed
                .jwts
                .iter()
                .filter_map(|jwt| claim(&jwt.claims, path))
                .flat_map(|v| claim_values(path, v))
                .collect();
            if values.is_empty() {
                matcher.matches(None)
            } else {
                values.iter().any(|v| matcher.matches(Some(v)))
            }
        })
}

/// The claim at a dotted path.
pub fn claim<'a>(claims: &'a Map, path: &[String]) -> Option<&'a Value> {
    let (head, rest) = path.split_first()?;
    rest.iter()
        .try_fold(claims.get(head)?, |value, key| value.get(key))
}

/// A claim's values for matching: a list's elements, OAuth `scope`/`scp`
/// strings split at spaces, anything else as one value.
fn claim_values(path: &[String], value: &Value) -> Vec<Vec<u8>> {
    let is_scope = path.last().is_some_and(|k| k == "scope" || k == "scp");
    match value {
        Value::Array(items) => items.iter().map(scalar).collect(),
        Value::String(s) if is_scope => s
            .split(' ')
            .filter(|w| !w.is_empty())
            .map(|w| w.as_bytes().to_vec())
            .collect(),
        other => vec![scalar(other)],
    }
}

/// A claim as header text: strings as they are, lists joined with `,`,
/// objects as JSON.
pub fn claim_text(value: &Value) -> Vec<u8> {
    match value {
        Value::Array(items) => items.iter().map(scalar).collect::<Vec<_>>().join(&b","[..]),
        other => scalar(other),
    }
}

fn scalar(value: &Value) -> Vec<u8> {
    match value {
        Value::String(s) => s.as_bytes().to_vec(),
        other => other.to_string().into_bytes(),
    }
}

fn authenticate<H: Host, E: Env>(
    config: &Config,
    require: &Require,
    request: &Request<H>,
    env: &mut E,
) -> Result<Authn, Need> {
    Ok(match require {
        Require::Basic => basic(config, request, env),
        Require::ApiKey => api_key(config, request),
        Require::Jwt(p) => match config.providers.get(*p) {
            Some(provider) => jwt(config, *p, provider, request, env)?,
            None => Authn::Missing(Method::Jwt),
        },
        Require::ExtAuthz => ext_authz(config, env)?,
        Require::Any(list) => {
            let mut failure = None;
            let mut missing = None;
            for r in list {
                match authenticate(config, r, request, env)? {
                    Authn::Passed(p) => return Ok(Authn::Passed(p)),
                    Authn::Failed(f) => {
                        failure.get_or_insert(f);
                    }
                    Authn::Missing(m) => {
                        missing.get_or_insert(m);
                    }
                }
            }
            match (failure, missing) {
                (Some(f), _) => Authn::Failed(f),
                (None, m) => Authn::Missing(m.unwrap_or(Method::Jwt)),
            }
        }
        Require::All(list) => {
            let mut passed = Passed::default();
            for r in list {
                match authenticate(config, r, request, env)? {
                    Authn::Passed(p) => passed.merge(p),
                    other => return Ok(other),
                }
            }
            Authn::Passed(passed)
        }
        Require::AllowMissing(r) => match authenticate(config, r, request, env)? {
            Authn::Missing(_) => Authn::Passed(Passed::default()),
            other => other,
        },
        Require::AllowMissingOrFailed(r) => match authenticate(config, r, request, env)? {
            Authn::Passed(p) => Authn::Passed(p),
            Authn::Missing(_) | Authn::Failed(_) => Authn::Passed(Passed::default()),
        },
    })
}

fn refused(method: Method, reason: impl Into<String>, code: Option<&'static str>) -> Authn {
    Authn::Failed(Failure::Refused(Refusal {
        method,
        reason: reason.into(),
        code,
        forbidden: false,
    }))
}

fn identity_of(config: &Config, consumer: usize) -> Option<String> {
    config.consumers.get(consumer).cloned()
}

fn basic<H: Host, E: Env>(config: &Config, request: &Request<H>, env: &mut E) -> Authn {
    let lines: Vec<&[u8]> = request
        .headers
        .values("authorization")
        .flat_map(split_list)
        .collect();
    let basic_lines: Vec<&[u8]> = lines
        .iter()
        .copied()
        .filter(|l| parse_authorization(l) != Err(BasicError::OtherScheme))
        .collect();
    let [line] = basic_lines.as_slice() else {
        return if basic_lines.is_empty() {
            Authn::Missing(Method::Basic)
        } else {
            refused(
                Method::Basic,
                "User authentication failed. More than one Authorization header.",
                None,
            )
        };
    };
    if lines.len() > 1 {
        return refused(
            Method::Basic,
            "User authentication failed. More than one Authorization header.",
            None,
        );
    }
    let Ok((user, password)) = parse_authorization(line) else {
        return refused(
            Method::Basic,
            "User authentication failed. Malformed credentials.",
            None,
        );
    };
    let bad = || {
        refused(
            Method::Basic,
            "User authentication failed. Invalid username/password combination.",
            None,
        )
    };
    let Some((index, entry)) = config
        .basic_users
        .iter()
        .enumerate()
        .find(|(_, u)| u.user == user)
    else {
        // An unknown user costs what a known one does: the password is
        // checked against the costliest configured hash and the answer
        // dropped, so the time does not tell which users exist.
        if let Some(decoy) = basic_decoy(config) {
            let _ = decoy.verify(&password);
        }
        return bad();
    };
    let ok = if entry.hash.is_slow() {
        let mut hasher = Sha256::new();
        hasher.update(user.as_bytes());
        hasher.update([0]);
        hasher.update(&password);
        let key: [u8; 32] = hasher.finalize().into();
        if env.caches().basic.get(&key) == Some(index) {
            true
        } else {
            let ok = entry.hash.verify(&password);
            if ok {
                env.caches().basic.insert(key, index);
            }
            ok
        }
    } else {
        entry.hash.verify(&password)
    };
    if !ok {
        return bad();
    }
    Authn::Passed(Passed {
        identity: identity_of(config, entry.consumer),
        methods: vec![Method::Basic],
        ..Passed::default()
    })
}

/// The configured hash that costs the most to check (see [`basic`]).
pub fn basic_decoy(config: &Config) -> Option<&crate::basic::PasswordHash> {
    config
        .basic_users
        .iter()
        .map(|u| &u.hash)
        .max_by_key(|h| h.cost())
}

fn api_key<H: Host>(config: &Config, request: &Request<H>) -> Authn {
    let (source, key) = match single(&config.api_key.sources, request) {
        Ok(Some(found)) => found,
        Ok(None) => return Authn::Missing(Method::ApiKey),
        Err(_) => {
            return refused(
                Method::ApiKey,
                "Client authentication failed. More than one API key.",
                None,
            );
        }
    };
    let digest: [u8; 32] = Sha256::digest(&key).into();
    // Every key is compared, in constant time, so timing tells nothing.
    let mut consumer = None;
    for (stored, owner) in &config.api_key.keys {
        if constant_time_eq(stored, &digest) {
            consumer = Some(*owner);
        }
    }
    match consumer {
        Some(c) => Authn::Passed(Passed {
            identity: identity_of(config, c),
            methods: vec![Method::ApiKey],
            api_key_source: Some(source),
            ..Passed::default()
        }),
        None => refused(
            Method::ApiKey,
            "Client authentication failed. Invalid API key.",
            None,
        ),
    }
}

fn jwt<H: Host, E: Env>(
    config: &Config,
    index: usize,
    provider: &Provider,
    request: &Request<H>,
    env: &mut E,
) -> Result<Authn, Need> {
    let bad = |e: JwtError| {
        Authn::Failed(Failure::Refused(Refusal {
            method: Method::Jwt,
            forbidden: e == JwtError::AudienceNotAllowed,
            reason: e.to_string(),
            code: Some("invalid_token"),
        }))
    };
    let text = match single(&provider.sources, request) {
        Ok(Some((_, text))) => text,
        Ok(None) => return Ok(Authn::Missing(Method::Jwt)),
        Err(_) => {
            return Ok(refused(
                Method::Jwt,
                "Jwt is given more than once",
                Some("invalid_request"),
            ));
        }
    };
    let cache_key = env.caches().token_key(index, &text);
    if let Some(hit) = env
        .caches()
        .tokens
        .get(&cache_key)
        .filter(|hit| hit.is(index, &text))
    {
        let current = match &provider.jwks {
            JwksSource::Local(_) => Some(0),
            JwksSource::Remote(_) => match env.keys(index, false) {
                Keys::Ready(_, generation) => Some(generation),
                Keys::Fetch | Keys::Failed => None,
            },
        };
        if current == Some(hit.generation) {
            if let Err(e) = provider.requirements.check_time(&hit.times, env.now()) {
                return Ok(bad(e));
            }
            return Ok(Authn::Passed(Passed {
                identity: hit.identity.clone(),
                methods: vec![Method::Jwt],
                jwts: vec![hit.jwt.clone()],
                ..Passed::default()
            }));
        }
    }
    let Ok(text) = std::str::from_utf8(&text) else {
        return Ok(bad(JwtError::BadFormat));
    };
    let token = match Token::parse(text, provider.max_token_bytes) {
        Ok(token) => token,
        Err(e) => return Ok(bad(e)),
    };
    if let Err(e) = provider.requirements.check(&token, env.now()) {
        return Ok(bad(e));
    }
    if let Some(subject) = &provider.subject
        && !subject.matches(token.sub.as_deref().map(str::as_bytes))
    {
        return Ok(bad(JwtError::SubjectNotAllowed));
    }
    let (jwks, generation) = match &provider.jwks {
        JwksSource::Local(jwks) => (Rc::clone(jwks), 0),
        JwksSource::Remote(_) => match env.keys(index, false) {
            Keys::Ready(jwks, generation) => (jwks, generation),
            Keys::Fetch => {
                return Err(Need::Jwks {
                    provider: index,
                    refresh: false,
                });
            }
            Keys::Failed => {
                return Ok(refused(
                    Method::Jwt,
                    "Jwks remote fetch is failed",
                    Some("invalid_token"),
                ));
            }
        },
    };
    let verified_with = match verify(&token, &jwks, provider, env) {
        Ok(()) => generation,
        Err(JwtError::NoMatchingKey) if matches!(provider.jwks, JwksSource::Remote(_)) => {
            // The issuer may have rotated its keys: refetch (the proxy
            // side rate-limits this), else refuse.
            match env.keys(index, true) {
                Keys::Fetch => {
                    return Err(Need::Jwks {
                        provider: index,
                        refresh: true,
                    });
                }
                Keys::Ready(fresh, g) if g != generation => {
                    match verify(&token, &fresh, provider, env) {
                        Ok(()) => g,
                        Err(e) => return Ok(bad(e)),
                    }
                }
                _ => return Ok(bad(JwtError::NoMatchingKey)),
            }
        }
        Err(e) => return Ok(bad(e)),
    };
    let identity_value = token.claims.get(&provider.identity_claim).map(scalar);
    let identity = identity_value.map(|value| {
        provider
            .consumers
            .iter()
            .find(|(claim_value, _)| claim_value.as_bytes() == value.as_slice())
            .and_then(|(_, c)| identity_of(config, *c))
            // Unmapped: in the provider's namespace, so a token can never
            // take a consumer's name (consumer names hold no `:`).
            .unwrap_or_else(|| format!("{}:{}", provider.name, String::from_utf8_lossy(&value)))
    });
    // Fail closed on what would go upstream as a header: a CR, LF or NUL
    // would make Envoy answer 503 after the request was allowed (or split
    // the line); the value itself is never logged.
    if identity
        .as_ref()
        .is_some_and(|i| !is_field_value(i.as_bytes()))
    {
        return Ok(bad(JwtError::ClaimNotHeaderSafe(
            provider.identity_claim.clone(),
        )));
    }
    if let Some(c) = provider
        .claims_to_headers
        .iter()
        .find(|c| claim(&token.claims, &c.claim).is_some_and(|v| !is_field_value(&claim_text(v))))
    {
        return Ok(bad(JwtError::ClaimNotHeaderSafe(c.claim.join("."))));
    }
    let times = token.times();
    let jwt = VerifiedJwt {
        provider: index,
        payload_b64: Rc::from(token.payload_b64),
        claims: Rc::new(token.claims),
    };
    // Only a token that passed everything is kept.
    env.caches().tokens.insert(
        cache_key,
        Rc::new(CachedToken {
            token: text.as_bytes().into(),
            generation: verified_with,
            times,
            identity: identity.clone(),
            jwt: jwt.clone(),
        }),
    );
    Ok(Authn::Passed(Passed {
        identity,
        methods: vec![Method::Jwt],
        jwts: vec![jwt],
        ..Passed::default()
    }))
}

/// Verifies `token`'s signature with the environment's signature
/// verification, else the module's.
fn verify<E: Env>(
    token: &Token<'_>,
    jwks: &Jwks,
    provider: &Provider,
    env: &mut E,
) -> Result<(), JwtError> {
    let max = provider.max_keys_without_kid;
    match env.signatures() {
        Some(host) => token.verify(jwks, max, host),
        None => token.verify(jwks, max, &mut InModule),
    }
}

fn ext_authz<E: Env>(config: &Config, env: &mut E) -> Result<Authn, Need> {
    let Some(settings) = &config.ext_authz else {
        return Ok(Authn::Missing(Method::ExtAuthz));
    };
    Ok(match env.authz() {
        None => return Err(Need::ExtAuthz),
        Some(AuthzAnswer::Allowed(headers)) => {
            let upstream = headers
                .iter()
                .filter(|(k, _)| {
                    settings
                        .upstream_headers
                        .iter()
                        .any(|h| h.eq_ignore_ascii_case(k))
                })
                .cloned()
                .collect();
            Authn::Passed(Passed {
                methods: vec![Method::ExtAuthz],
                authz_headers: upstream,
                ..Passed::default()
            })
        }
        Some(AuthzAnswer::Denied {
            status,
            headers,
            body,
        }) => {
            let passed_on = headers
                .iter()
                .filter(|(k, _)| match &settings.client_headers {
                    Some(allowed) => allowed.iter().any(|h| h.eq_ignore_ascii_case(k)),
                    None => {
                        !matches!(
                            k.to_ascii_lowercase().as_str(),
                            "content-length"
                                | "transfer-encoding"
                                | "connection"
                                | "keep-alive"
                                | "date"
                                | "server"
                        ) && !k.starts_with(':')
                    }
                })
                .cloned()
                .collect();
            Authn::Failed(Failure::AuthzDenied(LocalReply {
                status: *status,
                headers: passed_on,
                body: body.clone(),
            }))
        }
        Some(AuthzAnswer::Error) if settings.failure_mode_allow => Authn::Passed(Passed {
            authz_failed_open: true,
            ..Passed::default()
        }),
        Some(AuthzAnswer::Error) => Authn::Failed(Failure::AuthzError),
    })
}
