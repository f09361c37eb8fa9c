//! The proxy-wasm glue: one root context holding the compiled
//! configuration, one HTTP context per stream. A request's headers are
//! read once, routed, and only what changed is written back; then the route
//! cache is cleared so Envoy picks the route again (for the cluster header).

use std::cell::Cell;
use std::hash::{BuildHasher, Hasher};
use std::rc::Rc;

use filter_proxy::proxy::{ProxyHost, count, counter, read_map, send_local_reply, write_changes};
use filter_proxy::request::Request;
use log::{debug, error, info, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType};

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
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(config) = &self.config else {
            return Action::Continue;
        };
        let mut request = Request::new(read_map(MapType::HttpRequestHeaders), ProxyHost)
            .with_client_ip_source(config.client_ip);
        let mut spreader = self.spreader.get();
        let outcome = config.route(&mut request, &mut spreader);
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
