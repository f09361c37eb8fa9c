//! Upstreams for `proxy_http_call`: named clusters whose answers the test
//! decides (canned, computed by a closure, reset, or never), with latency on
//! the virtual clock.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::headers::HeaderMap;

/// A response an upstream sends back to a callout.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpResponse {
    /// Response headers, `:status` included.
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub trailers: HeaderMap,
}

impl HttpResponse {
    /// A response with this status, headers and body.
    pub fn new(status: u16, headers: impl Into<HeaderMap>, body: impl Into<Vec<u8>>) -> Self {
        let mut all = HeaderMap::new();
        all.add(":status", status.to_string());
        for (k, v) in headers.into().iter() {
            all.add(k, v);
        }
        Self {
            headers: all,
            body: body.into(),
            trailers: HeaderMap::new(),
        }
    }

    /// What Envoy's async client answers a call that outlived its timeout:
    /// a local `504` with body `upstream request timeout`.
    pub fn upstream_timeout() -> Self {
        Self::new(
            504,
            [("content-length", "24"), ("content-type", "text/plain")],
            "upstream request timeout",
        )
    }

    /// Adds trailers.
    pub fn with_trailers(mut self, trailers: impl Into<HeaderMap>) -> Self {
        self.trailers = trailers.into();
        self
    }
}

/// What an upstream does with one call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallOutcome {
    /// Answer with this response.
    Respond(HttpResponse),
    /// Reset the connection: the plugin's `proxy_on_http_call_response`
    /// gets zero headers and `proxy_get_status` says (11, "reset"), as in Envoy.
    Reset,
    /// Never answer: the call times out after its timeout (Envoy's async
    /// client then answers 504 "upstream request timeout"), or never ends
    /// when the plugin set none.
    NoResponse,
    /// The answer comes later from outside: whoever drives the VM delivers
    /// it with [`Chain::answer_http_call`](crate::Chain::answer_http_call)
    /// and enforces the call's timeout (a dev proxy calling a real server).
    Deferred,
}

type Handler = dyn Fn(&HttpCall) -> CallOutcome + Send + Sync;

/// A named upstream (an Envoy cluster) the plugin may call.
#[derive(Clone)]
pub struct Upstream {
    handler: Arc<Handler>,
    latency: Duration,
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upstream")
            .field("latency", &self.latency)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// Answers every call with the same response.
    pub fn respond(status: u16, headers: impl Into<HeaderMap>, body: impl Into<Vec<u8>>) -> Self {
        let response = HttpResponse::new(status, headers, body);
        Self::handler(move |_| CallOutcome::Respond(response.clone()))
    }

    /// Decides each answer from the call.
    pub fn handler(f: impl Fn(&HttpCall) -> CallOutcome + Send + Sync + 'static) -> Self {
        Self {
            handler: Arc::new(f),
            latency: Duration::ZERO,
        }
    }

    /// Resets every call.
    pub fn reset() -> Self {
        Self::handler(|_| CallOutcome::Reset)
    }

    /// Never answers.
    pub fn unresponsive() -> Self {
        Self::handler(|_| CallOutcome::NoResponse)
    }

    /// Leaves every call for the driver to answer (see
    /// [`CallOutcome::Deferred`]).
    pub fn deferred() -> Self {
        Self::handler(|_| CallOutcome::Deferred)
    }

    /// Answers after `latency` of virtual time (`Vm::advance_time`); with
    /// none, the answer arrives as soon as the calling callback returns.
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    pub(crate) fn answer(&self, call: &HttpCall) -> (CallOutcome, Duration) {
        ((self.handler)(call), self.latency)
    }
}

/// A call the plugin made with `proxy_http_call`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpCall {
    /// The token the plugin got back.
    pub token: u32,
    /// The upstream (cluster) name.
    pub upstream: String,
    /// Request headers, with `content-length` set for a non-empty body as
    /// Envoy does.
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub trailers: HeaderMap,
    /// The plugin's timeout (`None` for 0, no timeout).
    pub timeout: Option<Duration>,
    /// Virtual time of the call.
    pub at: SystemTime,
}

impl HttpCall {
    /// A request header of the call.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }
}

/// What a gRPC upstream sends back: for a unary call, the response message
/// (status 0) or a failure status; for a stream, the events after each
/// message the plugin sends.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GrpcReply {
    /// Initial metadata (streams only; sent once, before the first message).
    pub initial_metadata: Option<HeaderMap>,
    /// Messages, in order.
    pub messages: Vec<Vec<u8>>,
    /// Trailing metadata (streams only).
    pub trailing_metadata: Option<HeaderMap>,
    /// Closes the call or stream with this gRPC status and message.
    pub close: Option<(u32, String)>,
}

impl GrpcReply {
    /// A successful unary answer, or one stream message.
    pub fn message(message: impl Into<Vec<u8>>) -> Self {
        Self {
            messages: vec![message.into()],
            ..Self::default()
        }
    }

    /// A failure (or a stream's end) with this gRPC status.
    pub fn status(code: u32, message: impl Into<String>) -> Self {
        Self {
            close: Some((code, message.into())),
            ..Self::default()
        }
    }

    /// Adds initial metadata.
    pub fn with_initial_metadata(mut self, metadata: impl Into<HeaderMap>) -> Self {
        self.initial_metadata = Some(metadata.into());
        self
    }

    /// Adds trailing metadata.
    pub fn with_trailing_metadata(mut self, metadata: impl Into<HeaderMap>) -> Self {
        self.trailing_metadata = Some(metadata.into());
        self
    }

    /// Also closes with this status.
    pub fn then_close(mut self, code: u32, message: impl Into<String>) -> Self {
        self.close = Some((code, message.into()));
        self
    }
}

/// A gRPC call or stream the plugin opened, and what it sent on it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct GrpcCall {
    pub token: u32,
    pub upstream: String,
    pub service: String,
    pub method: String,
    pub initial_metadata: HeaderMap,
    /// Messages sent: the request of a unary call, or each `proxy_grpc_send`.
    pub messages: Vec<Vec<u8>>,
    /// A stream, not a unary call.
    pub streaming: bool,
    pub timeout: Option<Duration>,
    /// The plugin ended its side (`end_stream`, `proxy_grpc_close`).
    pub closed: bool,
    pub cancelled: bool,
}

type GrpcHandler = dyn Fn(&GrpcCall) -> GrpcReply + Send + Sync;

/// A gRPC cluster the plugin may call. The handler sees the call with every
/// message sent so far; it runs once for a unary call and after each message
/// (and the end) of a stream.
#[derive(Clone)]
pub struct GrpcUpstream {
    handler: Arc<GrpcHandler>,
    latency: Duration,
}

impl fmt::Debug for GrpcUpstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcUpstream")
            .field("latency", &self.latency)
            .finish_non_exhaustive()
    }
}

impl GrpcUpstream {
    /// Answers with the handler's reply.
    pub fn handler(f: impl Fn(&GrpcCall) -> GrpcReply + Send + Sync + 'static) -> Self {
        Self {
            handler: Arc::new(f),
            latency: Duration::ZERO,
        }
    }

    /// Every call gets the same reply.
    pub fn reply(reply: GrpcReply) -> Self {
        Self::handler(move |_| reply.clone())
    }

    /// Replies after `latency` of virtual time.
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    pub(crate) fn answer(&self, call: &GrpcCall) -> (GrpcReply, Duration) {
        ((self.handler)(call), self.latency)
    }
}
