//! State of one HTTP stream as the host sees it: the request and response
//! flows, what passed the filter, and any local reply.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::headers::HeaderMap;

/// A message as it left the filter: what the upstream received (request) or
/// what the client received (response).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Message {
    /// Headers, once the filter let them through.
    pub headers: Option<HeaderMap>,
    /// Body bytes the filter let through, in order.
    pub body: Vec<u8>,
    /// Trailers, once the filter let them through.
    pub trailers: Option<HeaderMap>,
    /// Whether the whole message (end of stream) went through.
    pub complete: bool,
}

impl Message {
    /// The first value of a header that went through.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.as_ref()?.get(name)
    }

    /// The `:status` of a response, when it is a number.
    pub fn status(&self) -> Option<u32> {
        self.header(":status")?.parse().ok()
    }

    /// The body as text (lossy).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// `Some((declared, actual))` when a complete message's `content-length`
    /// disagrees with its body. Envoy does not fix `content-length` when a
    /// filter changes a body, so the peer would read `declared` bytes.
    pub fn content_length_mismatch(&self) -> Option<(usize, usize)> {
        let declared: usize = self.header("content-length")?.trim().parse().ok()?;
        (self.complete && declared != self.body.len()).then_some((declared, self.body.len()))
    }
}

/// A local reply the filter sent with `proxy_send_local_response`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LocalResponse {
    /// HTTP status code.
    pub status: u32,
    /// Response code details (shown in access logs as `%RESPONSE_CODE_DETAILS%`).
    pub details: String,
    /// Body.
    pub body: Vec<u8>,
    /// Additional headers, names lower-cased.
    pub headers: HeaderMap,
    /// The gRPC status, unless the filter passed -1 (none).
    pub grpc_status: Option<u32>,
}

/// How far a stream got after the last call that fed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// The filter let everything fed so far through.
    Continued,
    /// The filter paused this direction; it moves on only when the filter
    /// continues it (`proxy_continue_stream`).
    Paused,
    /// The filter answered with a local reply; the request never reaches the
    /// upstream (or the upstream's response was replaced).
    Responded,
    /// The filter reset the stream (`proxy_close_stream`).
    Reset,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Direction {
    Request,
    Response,
}

impl Direction {
    /// Index into per-direction arrays: request 0, response 1.
    pub(crate) fn index(self) -> usize {
        match self {
            Self::Request => 0,
            Self::Response => 1,
        }
    }
}

/// Where a flow's filter iteration stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// `StopAllIterationAndWatermark`: what follows waits too.
    Headers,
    /// `StopIteration` (`allow_on_headers_stop_iteration`): the headers wait,
    /// but the body and trailers still reach the filter.
    HeadersOnly,
    Body,
    Trailers,
}

/// Which part of a flow the filter may touch now: the one whose callback is
/// running, or at which the filter paused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stage {
    Idle,
    Headers,
    Body,
    Trailers,
}

#[derive(Clone, Debug)]
pub(crate) enum Frame {
    Headers(HeaderMap, bool),
    Data(Vec<u8>, bool),
    Trailers(HeaderMap),
}

/// What went out of a filter in one direction, in order. Bodies are
/// counted, not copied: the bytes are in `Flow::sent`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Part {
    Headers { end_of_stream: bool },
    Data { len: usize, end_of_stream: bool },
    Trailers,
}

/// What a filter did to its stream that the rest of its chain must see,
/// collected until the chain looks (after every host-side step).
#[derive(Debug)]
pub(crate) enum Out {
    Passed(Direction, Part),
    LocalReply(LocalResponse),
    Reset,
}

/// Envoy's per-stream filter state, shared by every filter of the stream's
/// chain: values set with `proxy_set_property` (stored under `wasm.<path>`
/// in Envoy) and objects set with the `set_envoy_filter_state` foreign
/// function.
#[derive(Debug, Default)]
pub(crate) struct FilterState {
    pub(crate) properties: HashMap<Vec<u8>, Vec<u8>>,
    pub(crate) objects: HashMap<String, Vec<u8>>,
}

/// A stream's filter state as its filters share it. A stream of one VM
/// creates it on first write; a chain's streams share one from the start.
#[derive(Clone, Debug, Default)]
pub(crate) struct SharedFilterState(Option<Arc<Mutex<FilterState>>>);

impl SharedFilterState {
    pub(crate) fn shared() -> Self {
        Self(Some(Arc::default()))
    }

    pub(crate) fn read<R>(&self, f: impl FnOnce(&FilterState) -> R) -> Option<R> {
        self.0.as_deref().map(|state| f(&lock(state)))
    }

    pub(crate) fn write(&mut self) -> MutexGuard<'_, FilterState> {
        lock(self.0.get_or_insert_with(Arc::default))
    }
}

fn lock(state: &Mutex<FilterState>) -> MutexGuard<'_, FilterState> {
    // Only host code holds the lock, never across a guest call, so a
    // poisoned lock still holds consistent data.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One direction of a stream.
#[derive(Debug)]
pub(crate) struct Flow {
    /// The live header map while the filter holds it; once it passes it
    /// moves, frozen, to `sent` (see [`Flow::headers`]).
    pub(crate) headers: Option<HeaderMap>,
    /// Body bytes buffered at the filter and visible to it.
    pub(crate) body: Vec<u8>,
    pub(crate) trailers: Option<HeaderMap>,
    /// The trailers as the filter sees them after they went on: Envoy keeps
    /// the map, so later writes answer OK and later reads see them, but
    /// they reach nobody.
    pub(crate) late_trailers: Option<HeaderMap>,
    /// End of stream was seen on input.
    pub(crate) end_of_stream: bool,
    pub(crate) stage: Stage,
    pub(crate) stopped: Option<Stop>,
    /// Frames that arrived while iteration was stopped at headers or trailers.
    pub(crate) pending: VecDeque<Frame>,
    pub(crate) sent: Message,
    /// Bytes of `sent.body` the next filter of the chain already received.
    pub(crate) forwarded_body: usize,
    /// No more frames are processed (local reply, reset).
    pub(crate) closed: bool,
    /// Body bytes that reached this filter (Envoy's `bytesReceived` for the
    /// request, as `request.size` reads it).
    pub(crate) received: usize,
    /// Input already received headers / ended (for order checks).
    pub(crate) input_headers: bool,
    pub(crate) input_ended: bool,
}

impl Flow {
    fn new() -> Self {
        Self {
            headers: None,
            body: Vec::new(),
            trailers: None,
            late_trailers: None,
            end_of_stream: false,
            stage: Stage::Idle,
            stopped: None,
            pending: VecDeque::new(),
            sent: Message::default(),
            forwarded_body: 0,
            closed: false,
            received: 0,
            input_headers: false,
            input_ended: false,
        }
    }

    /// The headers, live or already passed on (for properties and the
    /// access-log phase).
    pub(crate) fn headers(&self) -> Option<&HeaderMap> {
        self.headers.as_ref().or(self.sent.headers.as_ref())
    }

    /// The trailers, live or already passed on (as the filter last wrote
    /// them).
    pub(crate) fn trailers(&self) -> Option<&HeaderMap> {
        self.trailers
            .as_ref()
            .or(self.late_trailers.as_ref())
            .or(self.sent.trailers.as_ref())
    }
}

#[derive(Debug)]
pub(crate) struct HttpStreamState {
    /// `proxy_on_context_create` ran (Envoy creates the context lazily, at
    /// the first request headers).
    pub(crate) created: bool,
    /// The stream was answered 503 because its filter's VM failed (Envoy's
    /// `failStream`); the filter runs nothing for it any more.
    pub(crate) failed: bool,
    pub(crate) request: Flow,
    pub(crate) response: Flow,
    pub(crate) local_response: Option<LocalResponse>,
    pub(crate) answered_locally: bool,
    pub(crate) reset: bool,
    /// `proxy_on_log` is running: every map is readable, none writable.
    pub(crate) in_log: bool,
    /// Filter state, shared with the other filters of the chain.
    pub(crate) filter_state: SharedFilterState,
    /// What the chain has yet to see (see [`Out`]).
    pub(crate) outbox: Vec<Out>,
    /// The stream belongs to a [`Chain`](crate::Chain), which moves what
    /// passes this filter on; otherwise the VM handles its outbox itself.
    pub(crate) chained: bool,
    /// Virtual time the stream started, for `request.time`.
    pub(crate) start_time_ns: u64,
    /// `connection.id`: each harness stream stands for one downstream
    /// connection (the scenario runner's client opens one per request).
    pub(crate) connection_id: u32,
    /// The crossings this stream's callbacks made.
    pub(crate) costs: crate::costs::Costs,
}

impl HttpStreamState {
    pub(crate) fn new(
        start_time_ns: u64,
        filter_state: SharedFilterState,
        chained: bool,
        connection_id: u32,
    ) -> Self {
        Self {
            created: false,
            failed: false,
            request: Flow::new(),
            response: Flow::new(),
            local_response: None,
            answered_locally: false,
            reset: false,
            in_log: false,
            filter_state,
            outbox: Vec::new(),
            chained,
            start_time_ns,
            connection_id,
            costs: crate::costs::Costs::default(),
        }
    }

    pub(crate) fn flow(&self, dir: Direction) -> &Flow {
        match dir {
            Direction::Request => &self.request,
            Direction::Response => &self.response,
        }
    }

    pub(crate) fn flow_mut(&mut self, dir: Direction) -> &mut Flow {
        match dir {
            Direction::Request => &mut self.request,
            Direction::Response => &mut self.response,
        }
    }
}

/// Envoy's `Grpc::Utility::httpToGrpcStatus`.
pub(crate) fn http_to_grpc_status(http: u32) -> u32 {
    match http {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502 | 503 | 504 => 14,
        _ => 2,
    }
}
