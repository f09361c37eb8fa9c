//! The proxy-wasm glue: one root context holding the compiled
//! configuration, the VM's key sets and caches; one HTTP context per stream.
//! A stream evaluates its request; when a key set or the external
//! authorization answer is needed it pauses, makes the callout, and
//! evaluates again when the answer comes.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use filter_proxy::headers::HeaderMap;
use filter_proxy::proxy::{
    ProxyHost, call_foreign_function, count, counter, read_map, send_local_reply, write_changes,
};
use filter_proxy::request::{Request, split_query};
use log::{debug, error, info, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType};

use crate::answer::{apply, reply, strip_outputs};
use crate::config::{BodySettings, Config, JwksSource, Provider, RemoteJwks};
use crate::ext_authz;
use crate::policy::{AuthzAnswer, Caches, Decision, Env, Keys, Method, Need, Verdict, evaluate};
use crate::remote::{RemoteState, SharedData};
use jose::signature::{self, SignatureHost, Verifier};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(Root { state: None, refreshes: HashMap::new() })
    });
}}

/// Counter ids (Envoy shows them as `wasmcustom.auth.*`).
#[derive(Debug, Default)]
struct Metrics {
    allowed: Option<u32>,
    unauthorized: Option<u32>,
    forbidden: Option<u32>,
    authz_denied: Option<u32>,
    authz_error: Option<u32>,
    log_only: Option<u32>,
    preflight: Option<u32>,
    /// Per method: credentials verified, credentials refused.
    ok: [Option<u32>; 4],
    failed: [Option<u32>; 4],
    jwks_fetches: Option<u32>,
    jwks_failures: Option<u32>,
}

impl Metrics {
    fn define() -> Self {
        Metrics {
            allowed: counter("auth.allowed"),
            unauthorized: counter("auth.unauthorized"),
            forbidden: counter("auth.forbidden"),
            authz_denied: counter("auth.ext_authz.denied"),
            authz_error: counter("auth.ext_authz.error"),
            log_only: counter("auth.log_only"),
            preflight: counter("auth.cors_preflight"),
            ok: Method::ALL.map(|m| counter(&format!("auth.{}.ok", m.name()))),
            failed: Method::ALL.map(|m| counter(&format!("auth.{}.failed", m.name()))),
            jwks_fetches: counter("auth.jwks.fetches"),
            jwks_failures: counter("auth.jwks.fetch_failures"),
        }
    }
}

/// The proxy's `verify_signature`, when its self-test passed at configure,
/// with a counter for each verifier (`auth.jwt.signatures.host` and
/// `.module`: one per signature checked, so a host that stopped offering
/// it shows).
#[derive(Debug)]
struct ProxySignatures {
    offered: bool,
    by_host: Option<u32>,
    by_module: Option<u32>,
}

impl ProxySignatures {
    /// Runs the self-test (only when some provider verifies JWTs) and logs
    /// the choice once.
    fn detect(config: &Config) -> Self {
        let mut signatures = Self {
            offered: true,
            by_host: None,
            by_module: None,
        };
        if config.providers.is_empty() {
            signatures.offered = false;
            return signatures;
        }
        signatures.by_host = counter("auth.jwt.signatures.host");
        signatures.by_module = counter("auth.jwt.signatures.module");
        match signature::self_test(&mut signatures) {
            Ok(()) => info!(
                "auth: JWT signatures RS256/384/512 and ES256/384/512 are verified by the \
                 host's verify_signature; the others in the module"
            ),
            Err(why) => {
                signatures.offered = false;
                info!("auth: every JWT signature is verified in the module: {why}");
            }
        }
        signatures
    }
}

impl SignatureHost for ProxySignatures {
    fn offers_verify_signature(&self) -> bool {
        self.offered
    }

    fn verify_signature(&mut self, arguments: &[u8]) -> Result<Vec<u8>, u32> {
        call_foreign_function("verify_signature", arguments).map_err(|status| status.0)
    }

    fn checked(&mut self, by: Verifier) {
        count(match by {
            Verifier::Host => self.by_host,
            Verifier::Module => self.by_module,
        });
    }
}

fn method_index(m: Method) -> usize {
    Method::ALL.iter().position(|x| *x == m).unwrap_or(0)
}

/// What the root and its streams share in one VM.
struct State {
    config: Config,
    metrics: Metrics,
    remote: Vec<RemoteState>,
    caches: Caches,
    signatures: ProxySignatures,
}

type Shared = Rc<RefCell<State>>;

fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The proxy's shared data, for the key sets' sharing protocol
/// ([`crate::remote`]).
struct ProxyShared;

impl SharedData for ProxyShared {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        hostcalls::get_shared_data(key).unwrap_or((None, None))
    }

    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        hostcalls::set_shared_data(key, Some(value), cas).is_ok()
    }
}

struct Root {
    state: Option<Shared>,
    /// Root-initiated refreshes in flight: call token → provider.
    refreshes: HashMap<u32, usize>,
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let (Some(state), Some(provider)) = (&self.state, self.refreshes.remove(&token)) else {
            return;
        };
        finish_fetch(&mut state.borrow_mut(), provider, body_size);
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        filter_proxy::proxy::follow_host_log_level();
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        match Config::parse(&bytes) {
            Ok(config) => {
                for notice in &config.notices {
                    info!("auth: {notice}");
                }
                info!(
                    "auth: configured with {} rules, {} consumers, {} JWT providers",
                    config.rules.len(),
                    config.consumers.len(),
                    config.providers.len()
                );
                if config
                    .ext_authz
                    .as_ref()
                    .is_some_and(|e| e.with_request_body.is_some())
                {
                    // The filter cannot see the setting; say what it relies on.
                    info!(
                        "auth: ext_authz.with_request_body relies on the plugin's \
                         allow_on_headers_stop_iteration: true (without it a request with a \
                         body waits for its stream timeout)"
                    );
                }
                let has_remote = config.remote_providers().next().is_some();
                let remote = config
                    .providers
                    .iter()
                    .map(|_| RemoteState::default())
                    .collect();
                let caches = Caches::new(config.token_cache_size);
                let signatures = ProxySignatures::detect(&config);
                self.state = Some(Rc::new(RefCell::new(State {
                    config,
                    metrics: Metrics::define(),
                    remote,
                    caches,
                    signatures,
                })));
                if has_remote {
                    self.set_tick_period(Duration::from_secs(1));
                }
                true
            }
            Err(problems) => {
                error!("auth: invalid configuration: {problems}");
                false
            }
        }
    }

    /// Refreshes key sets ahead of expiry; one VM at a time per set (a
    /// lock in shared data), the others read what it stored.
    fn on_tick(&mut self) {
        let Some(shared) = &self.state else {
            return;
        };
        let now = now_ms();
        let mut state = shared.borrow_mut();
        let state = &mut *state;
        let remotes: Vec<(usize, RemoteJwks)> = state
            .config
            .remote_providers()
            .map(|(i, r)| (i, r.clone()))
            .collect();
        for (i, remote) in remotes {
            let Some(rs) = state.remote.get_mut(i) else {
                continue;
            };
            if !rs.start_refresh(&mut ProxyShared, &remote, now) {
                continue;
            }
            match dispatch_fetch(&remote) {
                Ok(token) => {
                    rs.refreshing = true;
                    self.refreshes.insert(token, i);
                    count(state.metrics.jwks_fetches);
                }
                Err(problem) => {
                    let _ = rs.fetched(&remote, Err(problem.clone()), now);
                    count(state.metrics.jwks_failures);
                    warn!(
                        "auth: JWKS refresh from cluster {} failed: {problem}",
                        remote.cluster
                    );
                }
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream {
            state: self.state.clone(),
            request: None,
            waiting: None,
            fetched: Vec::new(),
            authz: None,
            body: Body::NotRead,
            body_seen: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// Asks for a key set. The SDK registers the call with the context running
/// now, so the answer comes back to the root (a timer refresh) or to the
/// stream that needed the keys.
fn dispatch_fetch(remote: &RemoteJwks) -> Result<u32, String> {
    hostcalls::dispatch_http_call(
        &remote.cluster,
        vec![
            (":method", "GET"),
            (":path", &remote.path),
            (":authority", &remote.authority),
            ("accept", "application/json"),
        ],
        None,
        vec![],
        Duration::from_millis(remote.timeout_ms),
    )
    .map_err(|status| format!("the proxy refused the call ({status:?})"))
}

/// Records a finished fetch of provider `provider`'s set: checks the answer,
/// keeps the keys, and shares them with the other VMs.
fn finish_fetch(state: &mut State, provider: usize, body_size: usize) {
    let Some(remote) = state
        .config
        .providers
        .get(provider)
        .and_then(|p| match &p.jwks {
            JwksSource::Remote(r) => Some(r.clone()),
            JwksSource::Local(_) => None,
        })
    else {
        return;
    };
    let headers = read_map(MapType::HttpCallResponseHeaders);
    let status = headers.get(":status");
    let body = if body_size > remote.max_bytes {
        Err(format!(
            "the JWKS is {body_size} bytes, over the {}-byte cap",
            remote.max_bytes
        ))
    } else if status.is_none() {
        Err("no response (connection failed, reset or timed out)".to_owned())
    } else if status.as_deref() != Some(b"200") {
        Err(format!(
            "status {}",
            String::from_utf8_lossy(status.as_deref().unwrap_or_default())
        ))
    } else {
        Ok(
            hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
                .ok()
                .flatten()
                .unwrap_or_default(),
        )
    };
    let Some(rs) = state.remote.get_mut(provider) else {
        return;
    };
    let now = now_ms();
    match rs.finish_fetch(
        &mut ProxyShared,
        &remote,
        body.as_deref().map_err(Clone::clone),
        now,
    ) {
        Ok(keys) => info!(
            "auth: fetched JWKS from cluster {} ({keys} keys)",
            remote.cluster
        ),
        Err(problem) => {
            count(state.metrics.jwks_failures);
            let stale = if rs.held.is_some() {
                "; keeping the previous keys"
            } else {
                ""
            };
            warn!(
                "auth: JWKS fetch from cluster {} failed: {problem}{stale}; retrying in {} ms",
                remote.cluster,
                rs.retry_at_ms.saturating_sub(now)
            );
        }
    }
}

/// A paused stream waits for the answer to call `.0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Waiting(u32, Need);

struct Stream {
    state: Option<Shared>,
    /// The request headers as read (kept until decided).
    request: Option<HeaderMap>,
    waiting: Option<Waiting>,
    /// Providers whose set this request fetched (never twice).
    fetched: Vec<usize>,
    authz: Option<AuthzAnswer>,
    body: Body,
    /// The buffered body's size and whether the request has ended, as the
    /// last callback said (`(0, true)` from headers that end the request).
    body_seen: Option<(usize, bool)>,
}

/// The request body, for an authorization service that wants it.
enum Body {
    NotRead,
    /// Paused at the headers until the body (or enough of it) is buffered.
    Awaited,
    /// What goes to the service, and whether it is only the first part.
    Read(Vec<u8>, bool),
}

/// The proxy as an evaluation's [`Env`].
struct StreamEnv<'a> {
    providers: &'a [Provider],
    remote: &'a mut [RemoteState],
    caches: &'a mut Caches,
    signatures: &'a mut ProxySignatures,
    now_ms: u64,
    fetched: &'a [usize],
    authz: Option<&'a AuthzAnswer>,
}

impl Env for StreamEnv<'_> {
    fn now(&self) -> u64 {
        self.now_ms / 1000
    }

    fn keys(&mut self, provider: usize, unknown_kid: bool) -> Keys {
        let remote = match self.providers.get(provider).map(|p| &p.jwks) {
            Some(JwksSource::Remote(r)) => r,
            _ => return Keys::Failed,
        };
        let Some(rs) = self.remote.get_mut(provider) else {
            return Keys::Failed;
        };
        rs.keys_shared(
            &mut ProxyShared,
            remote,
            self.now_ms,
            unknown_kid,
            self.fetched.contains(&provider),
        )
    }

    fn authz(&self) -> Option<&AuthzAnswer> {
        self.authz
    }

    fn caches(&mut self) -> &mut Caches {
        self.caches
    }

    fn signatures(&mut self) -> Option<&mut dyn SignatureHost> {
        Some(self.signatures)
    }
}

impl Stream {
    /// More of the request arrived before the decision: it is held, and an
    /// authorization service waiting for the body is asked once enough is
    /// buffered.
    fn body_arrived(&mut self, size: usize, ended: bool) -> Action {
        self.body_seen = Some((size, ended));
        let wanted = self
            .state
            .as_ref()
            .and_then(|s| s.borrow().config.ext_authz.as_ref()?.with_request_body);
        match wanted {
            Some(wanted) if matches!(self.body, Body::Awaited) => {
                match self.collect_body(wanted, size, ended) {
                    Some(Ok(())) => self.decide(),
                    Some(Err(action)) => action,
                    None => Action::Pause,
                }
            }
            _ => Action::Pause,
        }
    }

    /// Reads the body for the authorization service once it is buffered as
    /// far as `wanted` says: `None` to keep buffering, `Err` with the action
    /// after a 413 (too long, and partial bodies not allowed).
    fn collect_body(
        &mut self,
        wanted: BodySettings,
        size: usize,
        ended: bool,
    ) -> Option<Result<(), Action>> {
        let max = wanted.max_request_bytes;
        if size > max && !wanted.allow_partial_message {
            // As Envoy's ext_authz with a full buffer: 413 before asking.
            self.request = None;
            info!("auth: request body over {max} bytes for ext_authz: 413");
            if send_local_reply(413, "request_payload_too_large", &[], b"Payload Too Large")
                .is_err()
            {
                let _ = hostcalls::reset_http_request();
            }
            return Some(Err(Action::Pause));
        }
        if !ended && (size < max || !wanted.allow_partial_message) {
            return None;
        }
        let bytes = match size {
            0 => Vec::new(),
            _ => hostcalls::get_buffer(BufferType::HttpRequestBody, 0, size.min(max))
                .ok()
                .flatten()
                .unwrap_or_default(),
        };
        self.body = Body::Read(bytes, !ended || size > max);
        Some(Ok(()))
    }

    /// Evaluates the request and acts: `Continue` to let it go on, `Pause`
    /// while waiting or after a local reply.
    fn decide(&mut self) -> Action {
        let Some(shared) = self.state.clone() else {
            return Action::Continue;
        };
        loop {
            // The map moves into the evaluation and back while waiting,
            // rather than being copied for each evaluation.
            let Some(headers) = self.request.take() else {
                return Action::Continue;
            };
            let mut guard = shared.borrow_mut();
            let state = &mut *guard;
            let mut request =
                Request::new(headers, ProxyHost).with_client_ip_source(state.config.client_ip);
            let mut env = StreamEnv {
                providers: &state.config.providers,
                remote: &mut state.remote,
                caches: &mut state.caches,
                signatures: &mut state.signatures,
                now_ms: now_ms(),
                fetched: &self.fetched,
                authz: self.authz.as_ref(),
            };
            match evaluate(&state.config, &request, &mut env) {
                Ok(verdict) => return act(state, &verdict, &mut request),
                Err(need) => {
                    drop(guard);
                    self.request = Some(request.headers);
                    match self.start(need) {
                        Some(action) => return action,
                        // The call could not be made: evaluate again with that.
                        None => continue,
                    }
                }
            }
        }
    }

    /// Starts what `need` asks for; `None` when it failed at once (the
    /// failure is recorded, so the next evaluation decides).
    fn start(&mut self, need: Need) -> Option<Action> {
        let shared = self.state.clone()?;
        match need {
            Need::Jwks { provider, .. } => {
                self.fetched.push(provider);
                let mut state = shared.borrow_mut();
                let remote = match state.config.providers.get(provider).map(|p| &p.jwks) {
                    Some(JwksSource::Remote(r)) => r.clone(),
                    _ => return None,
                };
                count(state.metrics.jwks_fetches);
                match dispatch_fetch(&remote) {
                    Ok(token) => {
                        self.waiting = Some(Waiting(token, need));
                        Some(Action::Pause)
                    }
                    Err(problem) => {
                        let now = now_ms();
                        count(state.metrics.jwks_failures);
                        if let Some(rs) = state.remote.get_mut(provider) {
                            let _ = rs.fetched(&remote, Err(problem.clone()), now);
                        }
                        warn!(
                            "auth: cannot call cluster {} for the JWKS: {problem}",
                            remote.cluster
                        );
                        None
                    }
                }
            }
            Need::ExtAuthz => {
                let state = shared.borrow();
                let settings = state.config.ext_authz.as_ref()?;
                if let Some(wanted) = settings.with_request_body
                    && !matches!(self.body, Body::Read(..))
                {
                    let seen = self.body_seen;
                    match seen.and_then(|(size, ended)| self.collect_body(wanted, size, ended)) {
                        Some(Ok(())) => {}
                        Some(Err(action)) => return Some(action),
                        // Wait for the body (see `on_http_request_body`).
                        None => {
                            self.body = Body::Awaited;
                            return Some(Action::Pause);
                        }
                    }
                }
                let body = match &self.body {
                    Body::Read(bytes, partial) => Some((bytes.as_slice(), *partial)),
                    _ => None,
                };
                let headers = ext_authz::call_headers(settings, self.request.as_ref()?, body);
                let call: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let body = body.map(|(bytes, _)| bytes);
                let result = self.dispatch_http_call(
                    &settings.cluster,
                    call,
                    body,
                    vec![],
                    Duration::from_millis(settings.timeout_ms),
                );
                match result {
                    Ok(token) => {
                        self.waiting = Some(Waiting(token, need));
                        Some(Action::Pause)
                    }
                    Err(status) => {
                        warn!(
                            "auth: cannot call cluster {} for authorization ({status:?})",
                            settings.cluster
                        );
                        self.authz = Some(AuthzAnswer::Error);
                        None
                    }
                }
            }
        }
    }
}

/// A request as logs show it: method and path without the query (which
/// may carry a credential), formatted only when a line is written.
struct Line<'a>(&'a Request<ProxyHost>);

impl std::fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = split_query(self.0.full_path()).0;
        write!(
            f,
            "{} {}",
            String::from_utf8_lossy(self.0.method()),
            String::from_utf8_lossy(path)
        )
    }
}

/// Acts on a verdict: writes the request's changes and lets it go on, or
/// sends the refusal.
fn act(state: &State, verdict: &Verdict, request: &mut Request<ProxyHost>) -> Action {
    let config = &state.config;
    let metrics = &state.metrics;
    let rule = verdict.rule.and_then(|i| config.rules.get(i));
    let rule_name = rule.map_or("(none)", |r| r.name.as_str());
    match &verdict.decision {
        Decision::Allow(passed) | Decision::Forbidden(passed) => {
            for m in &passed.methods {
                count(metrics.ok.get(method_index(*m)).copied().flatten());
            }
        }
        Decision::Unauthorized(refusal) => {
            count(
                metrics
                    .failed
                    .get(method_index(refusal.method))
                    .copied()
                    .flatten(),
            );
        }
        _ => {}
    }
    if verdict.preflight {
        count(metrics.preflight);
    }
    strip_outputs(config, request);
    let refusal = reply(config, rule, &verdict.decision);
    match (refusal, rule.is_some_and(|r| r.log_only)) {
        (None, _) => {
            count(metrics.allowed);
            if let Decision::Allow(passed) = &verdict.decision {
                apply(config, passed, request);
                debug!(
                    "auth: {} allowed by rule {rule_name} (identity: {})",
                    Line(request),
                    passed.identity.as_deref().unwrap_or("none")
                );
            }
        }
        (Some((answer, details)), true) => {
            count(metrics.log_only);
            count(metrics.allowed);
            info!(
                "auth: log-only rule {rule_name} would answer {} ({details}) to {}",
                answer.status,
                Line(request)
            );
            if let Decision::Forbidden(passed) = &verdict.decision {
                apply(config, passed, request);
            }
        }
        (Some((answer, details)), false) => {
            count(match &verdict.decision {
                Decision::Unauthorized(_) | Decision::Missing(_) => metrics.unauthorized,
                Decision::Forbidden(_) => metrics.forbidden,
                Decision::AuthzDenied(_) => metrics.authz_denied,
                _ => metrics.authz_error,
            });
            let why = match &verdict.decision {
                Decision::Unauthorized(r) => r.reason.clone(),
                Decision::Missing(m) => format!("no {} credentials", m.name()),
                _ => details.clone(),
            };
            info!(
                "auth: {} for {} (rule {rule_name}): {why}",
                answer.status,
                Line(request)
            );
            return match send_local_reply(answer.status, &details, &answer.headers, &answer.body) {
                Ok(()) => Action::Pause,
                Err(status) => {
                    // Failing open here would let the request through
                    // unauthenticated: close the stream instead.
                    error!("auth: the host refused the local reply ({status:?}); resetting");
                    let _ = hostcalls::reset_http_request();
                    Action::Pause
                }
            };
        }
    }
    let changes = request.headers.changes();
    let refused = write_changes(MapType::HttpRequestHeaders, &changes);
    if refused > 0 {
        error!("auth: the host refused {refused} header writes; resetting");
        let _ = hostcalls::reset_http_request();
        return Action::Pause;
    }
    Action::Continue
}

impl Context for Stream {
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let Some(Waiting(expected, need)) = self.waiting else {
            return;
        };
        if expected != token {
            return;
        }
        self.waiting = None;
        let Some(shared) = self.state.clone() else {
            return;
        };
        match need {
            Need::Jwks { provider, .. } => {
                finish_fetch(&mut shared.borrow_mut(), provider, body_size)
            }
            Need::ExtAuthz => self.authz = Some(read_authz_answer(body_size)),
        }
        if self.decide() == Action::Continue {
            let _ = hostcalls::resume_http_request();
        }
    }
}

fn read_authz_answer(body_size: usize) -> AuthzAnswer {
    let headers = read_map(MapType::HttpCallResponseHeaders).into_entries();
    ext_authz::answer(headers, || {
        hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
            .ok()
            .flatten()
            .unwrap_or_default()
    })
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if self.state.is_none() {
            return Action::Continue;
        }
        self.body_seen = end_of_stream.then_some((0, true));
        self.request = Some(read_map(MapType::HttpRequestHeaders));
        self.decide()
    }

    /// The body reaches the filter before it decides only under Envoy's
    /// `allow_on_headers_stop_iteration`; until the decision it is held.
    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.request.is_none() {
            // Decided (or not configured): the body passes.
            return Action::Continue;
        }
        self.body_arrived(body_size, end_of_stream)
    }

    /// Trailers too are held until the decision: a `Continue` from here
    /// would let the held headers go on undecided.
    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        if self.request.is_none() {
            return Action::Continue;
        }
        // The request ends here: an awaited body is what was buffered.
        let size = self.body_seen.map_or(0, |(size, _)| size);
        self.body_arrived(size, true)
    }
}
