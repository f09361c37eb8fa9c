//! The proxy-wasm glue: one root context holding the compiled
//! configuration, one HTTP context per stream. A request's headers are
//! read once, routed, and only what changed is written back; then the route
//! cache is cleared so Envoy picks the route again (for the cluster header).

use std::cell::Cell;
use std::hash::{BuildHasher, Hasher};
use std::rc::Rc;

use filter_proxy::proxy::{
    ProxyHost, count, counter, read_buffer, read_map, send_local_reply, write_changes,
};
use filter_proxy::request::Request;
use log::{debug, error, info, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType};

use filter_common::body::{JsonBody, NotJson, OverLimit};

use crate::config::Config;
use crate::route::{ReplyKind, Spreader, Taken};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        // WASI `random_get` picks the spreader's start once per VM.
        let seed = std::collections::hash_map::RandomState::new().build_hasher().finish();
        Box::new(Root {
            config: None,
            metrics: Rc::default(),
            spreader: Rc::new(Cell::new(Spreader::new(seed))),
        })
    });
}}

/// Counter ids (Envoy shows them as `wasmcustom.routing.*`).
#[derive(Debug, Default)]
struct Metrics {
    rules: Vec<Option<u32>>,
    default: Option<u32>,
    unmatched: Option<u32>,
    redirects: Option<u32>,
    direct_responses: Option<u32>,
    denied: Option<u32>,
    body_too_large: Option<u32>,
    body_not_json: Option<u32>,
    errors: Option<u32>,
}

impl Metrics {
    fn define(config: &Config) -> Self {
        Metrics {
            rules: config
                .rule_names
                .iter()
                .map(|name| counter(&format!("routing.rule.{name}")))
                .collect(),
            default: counter("routing.default"),
            unmatched: counter("routing.unmatched"),
            redirects: counter("routing.redirects"),
            direct_responses: counter("routing.direct_responses"),
            denied: counter("routing.denied"),
            body_too_large: counter("routing.body_too_large"),
            body_not_json: counter("routing.body_not_json"),
            errors: counter("routing.errors"),
        }
    }
}

struct Root {
    config: Option<Rc<Config>>,
    metrics: Rc<Metrics>,
    spreader: Rc<Cell<Spreader>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        filter_proxy::proxy::follow_host_log_level();
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        match Config::parse(&bytes) {
            Ok(config) => {
                info!("routing: configured with {} rules", config.rule_count());
                self.metrics = Rc::new(Metrics::define(&config));
                self.config = Some(Rc::new(config));
                true
            }
            Err(problems) => {
                error!("routing: invalid configuration: {problems}");
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream {
            config: self.config.clone(),
            metrics: Rc::clone(&self.metrics),
            spreader: Rc::clone(&self.spreader),
            held: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    config: Option<Rc<Config>>,
    metrics: Rc<Metrics>,
    spreader: Rc<Cell<Spreader>>,
    /// A request waiting for its body, and how much of it Envoy buffered.
    held: Option<(Request<ProxyHost>, usize)>,
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(config) = self.config.clone() else {
            return Action::Continue;
        };
        let mut request = Request::new(read_map(MapType::HttpRequestHeaders), ProxyHost)
            .with_client_ip_source(config.client_ip);
        if let Some(policy) = &config.body
            && policy.waits(&request, end_of_stream)
        {
            // Held until the body is read: Envoy passes the pause through
            // only under `allow_on_headers_stop_iteration` (README).
            self.held = Some((request, 0));
            return Action::Pause;
        }
        self.decide(&config, &mut request)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(config) = self.config.clone() else {
            return Action::Continue;
        };
        let Some(policy) = &config.body else {
            return Action::Continue;
        };
        let Some((mut request, _)) = self.held.take() else {
            return Action::Continue;
        };
        if u64::try_from(body_size).unwrap_or(u64::MAX) > policy.max_bytes {
            count(self.metrics.body_too_large);
            if policy.over_limit == OverLimit::Reject {
                return self.reply(413, "routing_body_too_large", b"payload too large\n");
            }
            return self.decide(&config, &mut request);
        }
        if !end_of_stream {
            // Envoy buffers the pieces; the next call sees them all.
            self.held = Some((request, body_size));
            return Action::Pause;
        }
        self.decide_with_body(&config, request, body_size)
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        // Trailers end a body that never said end_of_stream.
        let Some(config) = self.config.clone() else {
            return Action::Continue;
        };
        match self.held.take() {
            Some((request, buffered)) => self.decide_with_body(&config, request, buffered),
            None => Action::Continue,
        }
    }
}

impl Stream {
    /// Routes a held request with its whole body (`size` bytes buffered).
    fn decide_with_body(
        &mut self,
        config: &Config,
        mut request: Request<ProxyHost>,
        size: usize,
    ) -> Action {
        let bytes = read_buffer(BufferType::HttpRequestBody, size);
        let body = JsonBody::parse_fields(&bytes, &config.body_fields);
        if !body.is_json() {
            count(self.metrics.body_not_json);
            if config
                .body
                .as_ref()
                .is_some_and(|p| p.not_json == NotJson::Reject)
            {
                return self.reply(400, "routing_body_not_json", b"the body is not JSON\n");
            }
        }
        request.set_body(Box::new(body));
        self.decide(config, &mut request)
    }

    /// Sends a local reply of the filter's own (not a rule's).
    fn reply(&self, status: u16, details: &str, body: &[u8]) -> Action {
        let headers = [("content-type".to_owned(), b"text/plain".to_vec())];
        match send_local_reply(status, details, &headers, body) {
            Ok(()) => Action::Pause,
            Err(status) => {
                count(self.metrics.errors);
                warn!("routing: the host refused the local reply ({status:?})");
                Action::Continue
            }
        }
    }

    /// Routes `request` and writes back what changed.
    fn decide(&mut self, config: &Config, request: &mut Request<ProxyHost>) -> Action {
        let mut spreader = self.spreader.get();
        let outcome = config.route(request, &mut spreader);
        self.spreader.set(spreader);
        let metrics = &self.metrics;
        count(match outcome.taken {
            Taken::Rule(id) => metrics.rules.get(id).copied().flatten(),
            Taken::Default => metrics.default,
            Taken::Nothing => metrics.unmatched,
        });
        if let Some((kind, reply)) = outcome.reply {
            count(match kind {
                ReplyKind::Redirect => metrics.redirects,
                ReplyKind::Direct => metrics.direct_responses,
                ReplyKind::Denied => metrics.denied,
            });
            match send_local_reply(reply.status, kind.details(), &reply.headers, &reply.body) {
                Ok(()) => return Action::Pause,
                Err(status) => {
                    count(metrics.errors);
                    warn!("routing: the host refused the local reply ({status:?})");
                    return Action::Continue;
                }
            }
        }
        let changes = request.headers.changes();
        if changes.is_empty() {
            return Action::Continue;
        }
        let refused = write_changes(MapType::HttpRequestHeaders, &changes);
        if refused > 0 {
            count(metrics.errors);
            warn!("routing: the host refused {refused} header writes");
        }
        // Envoy already cleared the route cache on the write (ABI 0.2.1).
        if config.clear_route_cache
            && let Err(status) = hostcalls::call_foreign_function("clear_route_cache", None)
        {
            debug!("routing: clear_route_cache unavailable ({status:?})");
        }
        Action::Continue
    }
}
