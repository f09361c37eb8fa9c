//! The proxy-wasm glue: one root context holding the compiled
//! configuration, one HTTP context per stream. Each callback reads the
//! host's map once, runs the logic, and writes back only what changed; a
//! configuration whose writes are the same for every request
//! ([`crate::config::FixedWrites`]) writes them without reading.

use std::rc::Rc;

use filter_proxy::proxy::{
    ProxyHost, add, count, counter, read_buffer, read_map, send_local_reply, set_property,
    write_buffer, write_changes,
};
use filter_proxy::request::Request;
use log::{debug, error, info, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType};

use filter_common::body::{JsonBody, NotJson, OverLimit};
use filter_common::value;
use filter_proxy::headers::{Change, HeaderMap};
use filter_proxy::reply::LocalReply;

use crate::config::Config;

use crate::transform::Decision;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(Root { config: Rc::new(Config::default()), metrics: Metrics::default() })
    });
}}

/// Counter ids (Envoy shows them as `wasmcustom.header_transform.*`).
#[derive(Debug, Clone, Copy, Default)]
struct Metrics {
    rules_applied: Option<u32>,
    errors: Option<u32>,
    cors_preflights: Option<u32>,
    responses_replaced: Option<u32>,
    body_too_large: Option<u32>,
    body_not_json: Option<u32>,
    bodies_edited: Option<u32>,
}

impl Metrics {
    fn define() -> Self {
        Metrics {
            rules_applied: counter("header_transform.rules_applied"),
            errors: counter("header_transform.errors"),
            cors_preflights: counter("header_transform.cors_preflights"),
            responses_replaced: counter("header_transform.responses_replaced"),
            body_too_large: counter("header_transform.body_too_large"),
            body_not_json: counter("header_transform.body_not_json"),
            bodies_edited: counter("header_transform.bodies_edited"),
        }
    }
}

struct Root {
    config: Rc<Config>,
    metrics: Metrics,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        filter_proxy::proxy::follow_host_log_level();
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        match Config::parse(&bytes) {
            Ok(config) => {
                info!(
                    "header-transform: configured with {} rules",
                    config.rule_count()
                );
                self.config = Rc::new(config);
                self.metrics = Metrics::define();
                true
            }
            Err(problems) => {
                error!("header-transform: invalid configuration: {problems}");
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream {
            config: Rc::clone(&self.config),
            metrics: self.metrics,
            request: None,
            fixed_applied: false,
            decision: Decision::default(),
            replied: false,
            held: None,
            response_held: None,
            response_buffered: 0,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    config: Rc<Config>,
    metrics: Metrics,
    /// The request as forwarded, for response-side templates.
    request: Option<Request<ProxyHost>>,
    /// The configuration's fixed writes were made to this request (the
    /// maps are then never read).
    fixed_applied: bool,
    decision: Decision,
    /// This filter answered the stream itself; its own reply passes back
    /// through the filter and must be left alone.
    replied: bool,
    /// A request waiting for its body, and how much of it Envoy buffered.
    held: Option<(Request<ProxyHost>, usize)>,
    /// The response headers, held while the body to edit arrives.
    response_held: Option<HeaderMap>,
    /// How much of the held response's body Envoy buffered.
    response_buffered: usize,
}

impl Stream {
    fn reply(&mut self, reply: &LocalReply, details: &str) -> Action {
        self.replied = true;
        if let Err(status) = send_local_reply(reply.status, details, &reply.headers, &reply.body) {
            count(self.metrics.errors);
            warn!("header-transform: the host refused the local reply ({status:?})");
            return Action::Continue;
        }
        Action::Pause
    }

    /// After request-header writes, when configured to.
    fn clear_route_cache(&self) {
        if self.config.clear_route_cache
            && let Err(status) = hostcalls::call_foreign_function("clear_route_cache", None)
        {
            debug!("header-transform: clear_route_cache unavailable ({status:?})");
        }
    }

    fn write(&self, map: MapType, changes: &[filter_proxy::headers::Change]) {
        let refused = write_changes(map, changes);
        if refused > 0 {
            add(self.metrics.errors, refused);
            warn!("header-transform: the host refused {refused} header writes");
        }
    }
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if let Some(fixed) = &self.config.fixed {
            self.write(MapType::HttpRequestHeaders, &fixed.request);
            if !fixed.request.is_empty() {
                self.clear_route_cache();
            }
            add(self.metrics.rules_applied, fixed.rules);
            self.fixed_applied = true;
            return Action::Continue;
        }
        let request = Request::new(read_map(MapType::HttpRequestHeaders), ProxyHost);
        if let Some(policy) = self
            .config
            .body
            .as_ref()
            .filter(|_| !self.config.request_body_fields.is_empty())
            && policy.waits(&request, end_of_stream)
        {
            // Held until the body is read: Envoy passes the pause through
            // only under `allow_on_headers_stop_iteration` (README).
            self.held = Some((request, 0));
            return Action::Pause;
        }
        self.transform_request(request)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some((request, _)) = self.held.take() else {
            return Action::Continue;
        };
        let config = Rc::clone(&self.config);
        let Some(policy) = &config.body else {
            return Action::Continue;
        };
        if u64::try_from(body_size).unwrap_or(u64::MAX) > policy.max_bytes {
            count(self.metrics.body_too_large);
            if policy.over_limit == OverLimit::Reject {
                return self.reply(
                    &plain(413, b"payload too large\n"),
                    "header_transform_body_too_large",
                );
            }
            return self.transform_request(request);
        }
        if !end_of_stream {
            // Envoy buffers the pieces; the next call sees them all.
            self.held = Some((request, body_size));
            return Action::Pause;
        }
        self.transform_with_body(request, body_size)
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        // Trailers end a body that never said end_of_stream.
        if let Some((request, buffered)) = self.held.take() {
            let action = self.transform_with_body(request, buffered);
            if action != Action::Continue {
                return action;
            }
        }
        self.edit_request_trailers()
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.edit_response_headers(end_of_stream)
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(policy) = &self.config.body else {
            return Action::Continue;
        };
        if self.response_held.is_none() {
            return Action::Continue;
        }
        if u64::try_from(body_size).unwrap_or(u64::MAX) > policy.max_bytes {
            // Past the limit a response passes unedited.
            count(self.metrics.body_too_large);
            self.response_held = None;
            return Action::Continue;
        }
        if !end_of_stream {
            self.response_buffered = body_size;
            return Action::Pause;
        }
        self.edit_response_body(body_size)
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        // Trailers end a body that never said end_of_stream.
        let action = self.edit_response_body(self.response_buffered);
        if action != Action::Continue {
            return action;
        }
        self.edit_response_trailers()
    }
}

impl Stream {
    /// Transforms a held request with its whole body (`size` bytes
    /// buffered).
    fn transform_with_body(&mut self, mut request: Request<ProxyHost>, size: usize) -> Action {
        let bytes = read_buffer(BufferType::HttpRequestBody, size);
        let body = JsonBody::parse_fields(&bytes, &self.config.request_body_fields);
        if !body.is_json() {
            count(self.metrics.body_not_json);
            if self
                .config
                .body
                .as_ref()
                .is_some_and(|p| p.not_json == NotJson::Reject)
            {
                return self.reply(
                    &plain(400, b"the body is not JSON\n"),
                    "header_transform_body_not_json",
                );
            }
        }
        // The rules read the body through the request; edits need their
        // own copy of the parsed document.
        let to_edit = body
            .document()
            .filter(|_| self.config.edits_request_bodies)
            .cloned();
        request.set_body(Box::new(body));
        let action = self.transform_request(request);
        if action == Action::Continue
            && let Some(document) = to_edit
            && self.config.edits_request_body(&self.decision)
        {
            self.edit_request_body(document, size);
        }
        action
    }

    /// Applies the request body edits to the held request's parsed body and
    /// writes the result, with its `content-length`, before the headers go.
    fn edit_request_body(&mut self, mut document: value::Value, size: usize) {
        let Some(request) = &self.request else {
            return;
        };
        if !self
            .config
            .edit_request_body(&self.decision, request, &mut document)
        {
            return;
        }
        let edited = document.to_string();
        let had_length = request.headers.get("content-length").is_some();
        self.replace_body(BufferType::HttpRequestBody, size, edited.as_bytes());
        if had_length {
            self.write(
                MapType::HttpRequestHeaders,
                &[Change::Replace(
                    "content-length".into(),
                    edited.len().to_string().into_bytes(),
                )],
            );
        }
    }

    /// Replaces the first `size` bytes of a body (all of it) with `new`.
    fn replace_body(&self, buffer: BufferType, size: usize, new: &[u8]) {
        count(self.metrics.bodies_edited);
        if let Err(status) = write_buffer(buffer, size, new) {
            count(self.metrics.errors);
            warn!("header-transform: the host refused the edited body ({status:?})");
        }
    }

    /// The held response's whole body (`size` bytes buffered): edited by
    /// the matched rules when it is JSON, with its `content-length`.
    fn edit_response_body(&mut self, size: usize) -> Action {
        let Some(held) = self.response_held.take() else {
            return Action::Continue;
        };
        let Some(request) = &self.request else {
            return Action::Continue;
        };
        let bytes = read_buffer(BufferType::HttpResponseBody, size);
        let Ok(mut document) = value::parse(&bytes) else {
            count(self.metrics.body_not_json);
            return Action::Continue;
        };
        if !self
            .config
            .edit_response_body(&self.decision, request, &held, &mut document)
        {
            return Action::Continue;
        }
        let edited = document.to_string();
        self.replace_body(BufferType::HttpResponseBody, size, edited.as_bytes());
        if held.get("content-length").is_some() {
            self.write(
                MapType::HttpResponseHeaders,
                &[Change::Replace(
                    "content-length".into(),
                    edited.len().to_string().into_bytes(),
                )],
            );
        }
        Action::Continue
    }

    /// The request side: CORS preflights, header writes, filter state.
    fn transform_request(&mut self, mut request: Request<ProxyHost>) -> Action {
        let decision = self.config.on_request(&mut request);
        if let Some(reply) = &decision.reply {
            count(self.metrics.cors_preflights);
            return self.reply(reply, "header_transform_cors_preflight");
        }
        self.write(MapType::HttpRequestHeaders, &decision.writes);
        for (property, value) in &decision.filter_state {
            if let Err(status) = set_property(property, value) {
                count(self.metrics.errors);
                warn!("header-transform: cannot set property {property} ({status:?})");
            }
        }
        if !decision.writes.is_empty() {
            self.clear_route_cache();
        }
        add(self.metrics.rules_applied, decision.rules_applied());
        self.request = Some(request);
        self.decision = decision;
        Action::Continue
    }

    fn edit_request_trailers(&mut self) -> Action {
        if let Some(request) = &self.request
            && self.config.uses_trailers()
        {
            let mut trailers = read_map(MapType::HttpRequestTrailers);
            let writes = self
                .config
                .on_request_trailers(&self.decision, request, &mut trailers);
            self.write(MapType::HttpRequestTrailers, &writes);
        }
        Action::Continue
    }

    fn edit_response_headers(&mut self, end_of_stream: bool) -> Action {
        if let Some(fixed) = self.config.fixed.as_ref().filter(|_| self.fixed_applied) {
            self.write(MapType::HttpResponseHeaders, &fixed.response);
            return Action::Continue;
        }
        // No request seen (the proxy answered before this filter ran) or
        // our own reply coming back: nothing to do.
        let Some(request) = self.request.as_ref().filter(|_| !self.replied) else {
            return Action::Continue;
        };
        if !self.config.acts_on_response(&self.decision) {
            return Action::Continue;
        }
        let mut response = read_map(MapType::HttpResponseHeaders);
        let decision = self
            .config
            .on_response(&self.decision, request, &mut response);
        if let Some(reply) = decision.replace {
            count(self.metrics.responses_replaced);
            return self.reply(&reply, "header_transform_custom_response");
        }
        self.write(MapType::HttpResponseHeaders, &decision.writes);
        if !end_of_stream
            && self.config.edits_response_body(&self.decision)
            && self
                .config
                .body
                .as_ref()
                .is_some_and(|p| p.is_listed(response.get("content-type").as_deref()))
        {
            // Held until the body is read and edited (README).
            self.response_held = Some(response);
            return Action::Pause;
        }
        Action::Continue
    }

    fn edit_response_trailers(&mut self) -> Action {
        if let Some(request) = self.request.as_ref().filter(|_| !self.replied)
            && self.config.uses_trailers()
        {
            let mut trailers = read_map(MapType::HttpResponseTrailers);
            let writes = self
                .config
                .on_response_trailers(&self.decision, request, &mut trailers);
            self.write(MapType::HttpResponseTrailers, &writes);
        }
        Action::Continue
    }
}

/// A plain-text reply of the filter's own.
fn plain(status: u16, body: &[u8]) -> LocalReply {
    LocalReply {
        status,
        headers: vec![("content-type".to_owned(), b"text/plain".to_vec())],
        body: body.to_vec(),
    }
}
