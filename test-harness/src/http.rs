//! Driving an HTTP stream through a VM with Envoy's filter-chain semantics:
//! a paused direction moves on only when the filter continues it; a body
//! paused from its callback is buffered and redelivered whole; frames that
//! arrive while headers are paused wait; local replies are sent after the
//! callback returns and run through the response callbacks.

use std::mem;
use std::time::Duration;

use crate::abi::{AbiVersion, Action};
use crate::chain::{self, Chain};
use crate::costs::Costs;
use crate::error::{Error, Result};
use crate::headers::HeaderMap;
use crate::host::{Deferred, Phase};
use crate::properties;
use crate::stream_state::{
    Direction, Frame, HttpStreamState, LocalResponse, Message, Out, Part, Progress,
    SharedFilterState, Stage, Stop, http_to_grpc_status,
};
use crate::vm::Vm;

/// One HTTP stream through a [`Vm`] or a [`Chain`] of VMs, fed part by part
/// as a client and an upstream would, and inspected afterwards.
#[derive(Debug)]
pub struct HttpStream<'a> {
    pub(crate) owner: Owner<'a>,
    /// The stream's context id in each VM of the chain.
    pub(crate) ids: Box<[u32]>,
}

#[derive(Debug)]
pub(crate) enum Owner<'a> {
    Vm(&'a mut Vm),
    Chain(&'a mut Chain),
}

impl Owner<'_> {
    fn vms(&mut self) -> &mut [Vm] {
        match self {
            Self::Vm(vm) => std::slice::from_mut(&mut **vm),
            Self::Chain(chain) => chain.vms_mut(),
        }
    }
}

/// What happened to a finished stream.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Exchange {
    /// What the upstream received.
    pub upstream_request: Message,
    /// What the client received.
    pub downstream_response: Message,
    /// The local reply the filter sent, if any.
    pub local_response: Option<LocalResponse>,
    /// Whether the filter reset the stream.
    pub reset: bool,
    /// What the stream's callbacks cost, one entry per filter in chain
    /// order (one for a lone VM): see [`Costs`].
    pub costs: Vec<Costs>,
}

impl Vm {
    /// Opens a new HTTP stream. Its context is created, as in Envoy, when the
    /// request headers arrive.
    pub fn http_stream(&mut self) -> HttpStream<'_> {
        let id = self.open_stream(SharedFilterState::default(), false);
        HttpStream {
            owner: Owner::Vm(self),
            ids: Box::new([id]),
        }
    }

    /// Reopens a stream that is still open, by id (several streams can be in
    /// flight on one VM).
    pub fn stream(&mut self, id: u32) -> Option<HttpStream<'_>> {
        let open = self
            .store
            .data()
            .streams
            .get(&id)
            .is_some_and(|s| !s.chained);
        open.then_some(HttpStream {
            owner: Owner::Vm(self),
            ids: Box::new([id]),
        })
    }

    pub(crate) fn open_stream(&mut self, filter_state: SharedFilterState, chained: bool) -> u32 {
        let id = self.new_context_id();
        let now = self.store.data().clock.realtime_ns;
        self.store
            .data_mut()
            .streams
            .insert(id, HttpStreamState::new(now, filter_state, chained, id));
        id
    }

    pub(crate) fn state(&mut self, id: u32) -> Result<&mut HttpStreamState> {
        self.store.data_mut().streams.get_mut(&id).ok_or_else(|| {
            Error::invalid_state(format!("stream {id} is finished or does not exist"))
        })
    }

    pub(crate) fn state_ref(&self, id: u32) -> Option<&HttpStreamState> {
        self.store.data().streams.get(&id)
    }

    /// A frame from the client or the upstream, checked for HTTP order.
    pub(crate) fn feed(&mut self, id: u32, dir: Direction, frame: Frame) -> Result<()> {
        let side = match dir {
            Direction::Request => "request",
            Direction::Response => "response",
        };
        let state = self.state(id)?;
        if dir == Direction::Response && state.answered_locally {
            // The stream was answered; the upstream's response never arrives.
            return Ok(());
        }
        let flow = state.flow_mut(dir);
        match (&frame, flow.input_headers, flow.input_ended) {
            (_, _, true) => return Err(Error::invalid_state(format!("the {side} already ended"))),
            (Frame::Headers(..), true, _) => {
                return Err(Error::invalid_state(format!(
                    "{side} headers were already sent"
                )));
            }
            (Frame::Data(..) | Frame::Trailers(_), false, _) => {
                return Err(Error::invalid_state(format!(
                    "send the {side} headers first"
                )));
            }
            _ => {}
        }
        self.relay(id, dir, frame)
    }

    /// A frame from the previous filter of the chain (or a local reply):
    /// in order by construction.
    pub(crate) fn relay(&mut self, id: u32, dir: Direction, frame: Frame) -> Result<()> {
        let flow = self.state(id)?.flow_mut(dir);
        flow.input_headers = true;
        flow.input_ended = match &frame {
            Frame::Headers(_, eos) | Frame::Data(_, eos) => *eos,
            Frame::Trailers(_) => true,
        };
        self.accept(id, dir, frame)
    }

    /// Delivers a frame, or holds it while iteration is stopped at headers or
    /// trailers (Envoy's StopAllIteration buffers what follows).
    fn accept(&mut self, id: u32, dir: Direction, frame: Frame) -> Result<()> {
        let flow = self.state(id)?.flow_mut(dir);
        if flow.closed {
            return Ok(());
        }
        if matches!(flow.stopped, Some(Stop::Headers | Stop::Trailers)) || !flow.pending.is_empty()
        {
            flow.pending.push_back(frame);
            return Ok(());
        }
        self.deliver(id, dir, frame)
    }

    fn ensure_context(&mut self, id: u32) -> Result<()> {
        if self.state(id)?.created {
            return Ok(());
        }
        self.state(id)?.created = true;
        let root = self.store.data().root_id as i32;
        if let Some(f) = self.callback(|c| &mut c.on_context_create) {
            self.invoke("proxy_on_context_create", id, Phase::Callback, |s| {
                f.call(s, (id as i32, root))
            })?;
        }
        self.flush_deferred()
    }

    fn deliver(&mut self, id: u32, dir: Direction, frame: Frame) -> Result<()> {
        // Envoy creates a filter's context at its request headers; a response
        // reaching a filter that never saw them (a later filter of a chain
        // answered locally) passes it untouched.
        let skip = dir == Direction::Response && !self.state(id)?.created;
        if !skip {
            self.ensure_context(id)?;
        }
        let d = dir.index();
        let ctx = id as i32;
        // Headers held by a plain StopIteration: what follows still arrives,
        // and the headers go on only with it.
        let headers_held = self.state(id)?.flow_mut(dir).stopped == Some(Stop::HeadersOnly);
        let (stop, action) = match frame {
            Frame::Headers(map, eos) => {
                let n = map.len() as i32;
                let flow = self.state(id)?.flow_mut(dir);
                flow.headers = Some(map);
                flow.end_of_stream = eos;
                flow.stage = Stage::Headers;
                let name = pick(dir, "proxy_on_request_headers", "proxy_on_response_headers");
                let raw = if skip {
                    None
                } else if self.abi_version() == AbiVersion::V0_1_0 {
                    match self.callback(|c| &mut c.headers_v0_1[d]) {
                        Some(f) => {
                            Some(self.invoke(name, id, Phase::Callback, |s| f.call(s, (ctx, n)))?)
                        }
                        None => None,
                    }
                } else {
                    match self.callback(|c| &mut c.headers[d]) {
                        Some(f) => Some(self.invoke(name, id, Phase::Callback, |s| {
                            f.call(s, (ctx, n, i32::from(eos)))
                        })?),
                        None => None,
                    }
                };
                let action = raw.map_or(Action::Continue, Action::from_abi);
                let stop = if self.plugin.settings.allow_on_headers_stop_iteration {
                    Stop::HeadersOnly
                } else {
                    Stop::Headers
                };
                (stop, action)
            }
            Frame::Data(chunk, eos) => {
                let flow = self.state(id)?.flow_mut(dir);
                flow.received += chunk.len();
                flow.body.extend_from_slice(&chunk);
                flow.end_of_stream |= eos;
                flow.stage = Stage::Body;
                // Paused bodies are buffered: the callback sees the total size.
                let size = flow.body.len() as i32;
                let action = match self.callback(|c| &mut c.body[d]).filter(|_| !skip) {
                    Some(f) => {
                        let name = pick(dir, "proxy_on_request_body", "proxy_on_response_body");
                        Action::from_abi(self.invoke(name, id, Phase::Callback, |s| {
                            f.call(s, (ctx, size, i32::from(eos)))
                        })?)
                    }
                    None => Action::Continue,
                };
                (Stop::Body, action)
            }
            Frame::Trailers(map) => {
                let n = map.len() as i32;
                let flow = self.state(id)?.flow_mut(dir);
                flow.trailers = Some(map);
                flow.end_of_stream = true;
                flow.stage = Stage::Trailers;
                let action = match self.callback(|c| &mut c.trailers[d]).filter(|_| !skip) {
                    Some(f) => {
                        let name = pick(
                            dir,
                            "proxy_on_request_trailers",
                            "proxy_on_response_trailers",
                        );
                        Action::from_abi(
                            self.invoke(name, id, Phase::Callback, |s| f.call(s, (ctx, n)))?,
                        )
                    }
                    None => Action::Continue,
                };
                (Stop::Trailers, action)
            }
        };
        let stop = if headers_held {
            Stop::HeadersOnly
        } else {
            stop
        };
        let deferred = mem::take(&mut self.store.data_mut().deferred);
        // A local reply stops iteration whatever the callback returned
        // (cpp-host `stopNextIteration`).
        let replied = deferred
            .iter()
            .any(|d| matches!(d, Deferred::LocalResponse { stream, .. } if *stream == id));
        if action == Action::Continue && !replied {
            self.pass(id, dir, stop)?;
        } else {
            self.state(id)?.flow_mut(dir).stopped = Some(stop);
        }
        self.run_deferred(deferred)
    }

    /// Lets what the filter held go on (to the next filter of the chain, or
    /// out), then delivers frames that waited.
    fn pass(&mut self, id: u32, dir: Direction, stop: Stop) -> Result<()> {
        let state = self.state(id)?;
        let flow = state.flow_mut(dir);
        flow.stopped = None;
        let headers = matches!(stop, Stop::Headers | Stop::HeadersOnly);
        // Held headers that the body or trailers followed go on with them.
        let followed = stop == Stop::HeadersOnly && flow.stage != Stage::Headers;
        flow.stage = Stage::Idle;
        // What passes is frozen: the filter cannot write it any more, so it
        // moves to `sent` rather than being copied.
        let mut parts = [None, None, None];
        if headers {
            let end_of_stream = flow.end_of_stream && !followed;
            flow.sent.headers = flow.headers.take();
            flow.sent.complete = end_of_stream;
            parts[0] = Some(Part::Headers { end_of_stream });
        }
        if !headers || followed {
            let len = flow.body.len();
            if flow.sent.body.is_empty() {
                flow.sent.body = mem::take(&mut flow.body);
            } else {
                let body = mem::take(&mut flow.body);
                flow.sent.body.extend_from_slice(&body);
            }
            let trailers = flow.end_of_stream && flow.trailers.is_some();
            if len > 0 || (flow.end_of_stream && !trailers) {
                parts[1] = Some(Part::Data {
                    len,
                    end_of_stream: flow.end_of_stream && !trailers,
                });
            }
            if flow.end_of_stream {
                // Trailers the filter added at the end of the body go too.
                flow.sent.trailers = flow.trailers.take();
                flow.sent.complete = true;
                if trailers {
                    parts[2] = Some(Part::Trailers);
                }
            }
        }
        // Only a chain moves what passed on; a lone VM's `sent` is the end.
        if state.chained {
            state
                .outbox
                .extend(parts.into_iter().flatten().map(|p| Out::Passed(dir, p)));
        }
        self.deliver_pending(id, dir)
    }

    fn deliver_pending(&mut self, id: u32, dir: Direction) -> Result<()> {
        loop {
            let flow = self.state(id)?.flow_mut(dir);
            if flow.closed || matches!(flow.stopped, Some(Stop::Headers | Stop::Trailers)) {
                return Ok(());
            }
            let Some(frame) = flow.pending.pop_front() else {
                return Ok(());
            };
            // Body that waited is delivered as one buffer, as Envoy does.
            let frame = match frame {
                Frame::Data(mut bytes, mut eos) => {
                    while let Some(Frame::Data(more, more_eos)) = flow.pending.front_mut() {
                        bytes.append(more);
                        eos |= *more_eos;
                        flow.pending.pop_front();
                    }
                    Frame::Data(bytes, eos)
                }
                other => other,
            };
            self.deliver(id, dir, frame)?;
        }
    }

    /// What passed this filter, as the frame the next filter receives.
    pub(crate) fn forward(&mut self, id: u32, dir: Direction, part: Part) -> Result<Frame> {
        let flow = self.state(id)?.flow_mut(dir);
        Ok(match part {
            Part::Headers { end_of_stream } => {
                Frame::Headers(flow.sent.headers.clone().unwrap_or_default(), end_of_stream)
            }
            Part::Data { len, end_of_stream } => {
                let from = flow.forwarded_body.min(flow.sent.body.len());
                let to = (from + len).min(flow.sent.body.len());
                flow.forwarded_body = to;
                Frame::Data(flow.sent.body[from..to].to_vec(), end_of_stream)
            }
            Part::Trailers => Frame::Trailers(flow.sent.trailers.clone().unwrap_or_default()),
        })
    }

    pub(crate) fn resume(&mut self, id: u32, dir: Direction) -> Result<()> {
        let Ok(state) = self.state(id) else {
            return Ok(());
        };
        let flow = state.flow_mut(dir);
        match flow.stopped.take() {
            Some(stop) if !flow.closed => self.pass(id, dir, stop),
            _ => Ok(()),
        }
    }

    /// The filter reset the stream (`proxy_close_stream`): this filter stops
    /// at once; the chain resets the others.
    pub(crate) fn reset(&mut self, id: u32) {
        if let Ok(state) = self.state(id) {
            if !state.reset {
                state.outbox.push(Out::Reset);
            }
            reset_state(state);
        }
    }

    /// The filter sent a local reply. Its own request stops at once; where
    /// the reply goes is the chain's decision (see `chain::local_reply`).
    /// The first reply of a stream wins.
    pub(crate) fn local_reply(&mut self, id: u32, response: LocalResponse) {
        let Ok(state) = self.state(id) else {
            return;
        };
        let requested = state.outbox.iter().any(|o| matches!(o, Out::LocalReply(_)));
        if state.answered_locally || state.reset || requested {
            return;
        }
        close(&mut state.request);
        state.outbox.push(Out::LocalReply(response));
    }

    /// Handles what this VM's own (unchained) streams left for their chain
    /// of one: local replies and resets.
    pub(crate) fn pump_own(&mut self) -> Result<()> {
        let waiting: Vec<u32> = self
            .store
            .data()
            .streams
            .iter()
            .filter(|(_, s)| !s.chained && !s.outbox.is_empty())
            .map(|(id, _)| *id)
            .collect();
        for id in waiting {
            chain::pump(std::slice::from_mut(self), &[id])?;
        }
        Ok(())
    }

    /// `proxy_on_log`, as Envoy runs it at the end of a stream.
    pub(crate) fn log_stream(&mut self, id: u32) -> Result<()> {
        if !self.state(id)?.created {
            return Ok(());
        }
        let ctx = id as i32;
        if let Some(f) = self.callback(|c| &mut c.on_log) {
            self.state(id)?.in_log = true;
            let logged = self.invoke("proxy_on_log", id, Phase::Callback, |s| f.call(s, ctx));
            self.state(id)?.in_log = false;
            logged?;
        }
        Ok(())
    }

    /// Destroys the stream's context (`proxy_on_done`, `proxy_on_delete`)
    /// and returns its final state.
    pub(crate) fn end_stream(&mut self, id: u32) -> Result<HttpStreamState> {
        if self.state(id)?.created {
            let ctx = id as i32;
            if let Some(f) = self.callback(|c| &mut c.on_done) {
                self.invoke("proxy_on_done", id, Phase::Callback, |s| f.call(s, ctx))?;
            }
            if let Some(f) = self.callback(|c| &mut c.on_delete) {
                self.invoke("proxy_on_delete", id, Phase::Callback, |s| f.call(s, ctx))?;
            }
            // Nothing a finished stream asks for can happen any more.
            self.store
                .data_mut()
                .deferred
                .retain(|d| !d.targets_stream(id));
            self.flush_deferred()?;
        }
        self.store
            .data_mut()
            .streams
            .remove(&id)
            .ok_or_else(|| Error::invalid_state(format!("stream {id} does not exist")))
    }
}

pub(crate) fn reset_state(state: &mut HttpStreamState) {
    state.reset = true;
    close(&mut state.request);
    close(&mut state.response);
}

pub(crate) fn close(flow: &mut crate::stream_state::Flow) {
    flow.closed = true;
    flow.stopped = None;
    flow.stage = Stage::Idle;
    flow.pending.clear();
}

fn pick(dir: Direction, request: &'static str, response: &'static str) -> &'static str {
    match dir {
        Direction::Request => request,
        Direction::Response => response,
    }
}

/// Headers of a local reply: `:status`, the filter's headers, and for a
/// non-empty body `content-length` and (unless given) `content-type: text/plain`.
pub(crate) fn local_reply_headers(response: &LocalResponse, grpc_request: bool) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.add(":status", response.status.to_string());
    for (k, v) in response.headers.iter() {
        headers.add(k, v);
    }
    if grpc_request {
        // Envoy answers a gRPC request in gRPC's trailers-only form: 200,
        // the status and message in headers, no body (`Utility::sendLocalReply`).
        headers.replace(":status", "200");
        headers.replace("content-type", "application/grpc");
        let status = response
            .grpc_status
            .unwrap_or_else(|| http_to_grpc_status(response.status));
        headers.replace("grpc-status", status.to_string());
        if !response.body.is_empty() {
            let message = percent_encoding::percent_encode(&response.body, GRPC_MESSAGE);
            headers.replace("grpc-message", message.to_string());
        }
        return headers;
    }
    if !response.body.is_empty() {
        headers.replace("content-length", response.body.len().to_string());
        if !headers.contains("content-type") {
            headers.add("content-type", "text/plain");
        }
    }
    headers
}

/// What Envoy percent-encodes in `grpc-message`: everything outside
/// `' '..='~'`, and `%` itself.
const GRPC_MESSAGE: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b'%');

/// Whether Envoy treats a request as gRPC (`Grpc::Common::isGrpcRequestHeaders`):
/// its `content-type` is `application/grpc`, or that followed by `+` or `;`.
pub(crate) fn is_grpc_request(headers: &HeaderMap) -> bool {
    headers.get_bytes(b"content-type").is_some_and(|ct| {
        ct.strip_prefix(b"application/grpc")
            .is_some_and(|rest| rest.is_empty() || rest[0] == b'+' || rest[0] == b';')
    })
}

impl HttpStream<'_> {
    /// The stream's context id (in a chain, its context in the first VM).
    pub fn id(&self) -> u32 {
        self.ids[0]
    }

    fn vms(&mut self) -> &mut [Vm] {
        self.owner.vms()
    }

    fn vms_ref(&self) -> &[Vm] {
        match &self.owner {
            Owner::Vm(vm) => std::slice::from_ref(&**vm),
            Owner::Chain(chain) => chain.vms(),
        }
    }

    /// Feeds a frame from the client (into the first filter) or from the
    /// upstream (into the last), then lets everything it set off happen.
    fn send(&mut self, dir: Direction, frame: Frame) -> Result<Progress> {
        let Self { owner, ids } = self;
        let vms = owner.vms();
        let entry = match dir {
            Direction::Request => 0,
            Direction::Response => vms.len() - 1,
        };
        vms[entry].feed(ids[entry], dir, frame)?;
        self.run()?;
        Ok(chain::progress(self.vms_ref(), &self.ids, dir))
    }

    fn run(&mut self) -> Result<()> {
        match &mut self.owner {
            Owner::Vm(vm) => vm.settle().map(drop),
            Owner::Chain(chain) => chain.run(),
        }
    }

    /// The client sends request headers. They must carry `:method`, `:path`
    /// and `:authority`, as every request Envoy hands a filter does
    /// ([`envoy::request_headers`](crate::envoy::request_headers) builds
    /// exactly what Envoy's codec and connection manager deliver).
    ///
    /// # Errors
    ///
    /// When the guest traps or a harness problem occurs, when headers were
    /// already sent, or when a pseudo-header Envoy always delivers is
    /// missing.
    pub fn send_request_headers(
        &mut self,
        headers: impl Into<HeaderMap>,
        end_of_stream: bool,
    ) -> Result<Progress> {
        let headers = headers.into();
        if let Some(missing) = [":method", ":path", ":authority"]
            .into_iter()
            .find(|name| !headers.contains(name))
        {
            return Err(Error::invalid_state(format!(
                "a request without `{missing}`: Envoy never hands a filter one (its codec answers \
                 400 first); build requests with proxy_wasm_harness::envoy::request_headers"
            )));
        }
        self.send(Direction::Request, Frame::Headers(headers, end_of_stream))
    }

    /// The client sends a chunk of request body.
    ///
    /// # Errors
    ///
    /// As [`HttpStream::send_request_headers`].
    pub fn send_request_body(
        &mut self,
        chunk: impl AsRef<[u8]>,
        end_of_stream: bool,
    ) -> Result<Progress> {
        self.send(
            Direction::Request,
            Frame::Data(chunk.as_ref().to_vec(), end_of_stream),
        )
    }

    /// The client sends request trailers (ending the request).
    ///
    /// # Errors
    ///
    /// As [`HttpStream::send_request_headers`].
    pub fn send_request_trailers(&mut self, trailers: impl Into<HeaderMap>) -> Result<Progress> {
        self.send(Direction::Request, Frame::Trailers(trailers.into()))
    }

    /// The upstream sends response headers. Ignored when a filter already
    /// answered locally (the result says [`Progress::Responded`]).
    ///
    /// # Errors
    ///
    /// As [`HttpStream::send_request_headers`].
    pub fn send_response_headers(
        &mut self,
        headers: impl Into<HeaderMap>,
        end_of_stream: bool,
    ) -> Result<Progress> {
        self.send(
            Direction::Response,
            Frame::Headers(headers.into(), end_of_stream),
        )
    }

    /// The upstream sends a chunk of response body.
    ///
    /// # Errors
    ///
    /// As [`HttpStream::send_request_headers`].
    pub fn send_response_body(
        &mut self,
        chunk: impl AsRef<[u8]>,
        end_of_stream: bool,
    ) -> Result<Progress> {
        self.send(
            Direction::Response,
            Frame::Data(chunk.as_ref().to_vec(), end_of_stream),
        )
    }

    /// The upstream sends response trailers (ending the response).
    ///
    /// # Errors
    ///
    /// As [`HttpStream::send_request_headers`].
    pub fn send_response_trailers(&mut self, trailers: impl Into<HeaderMap>) -> Result<Progress> {
        self.send(Direction::Response, Frame::Trailers(trailers.into()))
    }

    /// The stream's state in VM `k` of the chain.
    fn state(&self, k: usize) -> &HttpStreamState {
        // A handle exists only for an open stream (see `Vm::stream`).
        &self.vms_ref()[k].store.data().streams[&self.ids[k]]
    }

    fn last(&self) -> usize {
        self.ids.len() - 1
    }

    /// What the upstream has received so far (what left the last filter).
    pub fn upstream_request(&self) -> &Message {
        &self.state(self.last()).request.sent
    }

    /// What the client has received so far (what left the first filter).
    pub fn downstream_response(&self) -> &Message {
        &self.state(0).response.sent
    }

    /// The local reply a filter sent, if any.
    pub fn local_response(&self) -> Option<&LocalResponse> {
        (0..self.ids.len()).find_map(|k| self.state(k).local_response.as_ref())
    }

    /// Which filter of the chain sent the local reply (0 for a single VM).
    pub fn local_responder(&self) -> Option<usize> {
        (0..self.ids.len()).find(|k| self.state(*k).local_response.is_some())
    }

    /// The request headers as the filters left them: the furthest filter's
    /// view.
    pub fn request_headers(&self) -> Option<&HeaderMap> {
        (0..self.ids.len())
            .rev()
            .find_map(|k| self.state(k).request.headers())
    }

    /// The response headers as the filters left them: the view of the
    /// filter closest to the client.
    pub fn response_headers(&self) -> Option<&HeaderMap> {
        (0..self.ids.len()).find_map(|k| self.state(k).response.headers())
    }

    /// Whether a filter reset the stream.
    pub fn is_reset(&self) -> bool {
        self.state(0).reset
    }

    /// A property (dotted path) as the first filter reads it in this
    /// stream, including filter state any filter set.
    pub fn property(&self, path: &str) -> Option<Vec<u8>> {
        let path = properties::path_from_dotted(path);
        let state = self.state(0);
        // A value a filter set, by its whole path (a filter reading it back
        // through the ABI finds it only under a one-segment path, as in
        // Envoy); then what the filter would read.
        state
            .filter_state
            .read(|s| s.properties.get(&path).cloned())
            .flatten()
            .or_else(|| {
                self.vms_ref()[0]
                    .store
                    .data()
                    .property_for(&path, Some(state))
                    .ok()
            })
    }

    /// An object a filter stored with the `set_envoy_filter_state` foreign
    /// function, by its key (`envoy.tcp_proxy.cluster`, ...).
    pub fn filter_state(&self, key: &str) -> Option<Vec<u8>> {
        self.state(0)
            .filter_state
            .read(|state| state.objects.get(key).cloned())
            .flatten()
    }

    /// The VM (the first one of a chain), for example to inspect its logs.
    /// To move time while the stream is paused use
    /// [`HttpStream::advance_time`], which also carries what moves on to
    /// the rest of a chain.
    pub fn vm(&mut self) -> &mut Vm {
        &mut self.vms()[0]
    }

    /// VM `k` of the stream's chain.
    pub fn chain_vm(&mut self, k: usize) -> Option<&mut Vm> {
        self.vms().get_mut(k)
    }

    /// Advances virtual time for every VM the stream goes through (see
    /// [`Vm::advance_time`]).
    ///
    /// # Errors
    ///
    /// When a callback traps or raises a harness error.
    pub fn advance_time(&mut self, by: Duration) -> Result<()> {
        match &mut self.owner {
            Owner::Vm(vm) => vm.advance_time(by),
            Owner::Chain(chain) => chain.advance_time(by),
        }
    }

    /// What the stream's callbacks have cost so far, summed over the
    /// filters of a chain (each filter's share is in [`Exchange::costs`]).
    pub fn costs(&self) -> Costs {
        let mut total = Costs::default();
        for (vm, id) in self.vms_ref().iter().zip(self.ids.iter()) {
            if let Some(state) = vm.state_ref(*id) {
                total.add(&state.costs);
            }
        }
        total
    }

    /// Ends the stream as Envoy does (`proxy_on_log` for every filter, then
    /// `proxy_on_done` and `proxy_on_delete` for every filter) and returns
    /// what happened.
    ///
    /// # Errors
    ///
    /// When a callback traps or raises a harness error.
    pub fn finish(self) -> Result<Exchange> {
        let Self { mut owner, ids } = self;
        if let Owner::Chain(chain) = &mut owner {
            chain.forget(ids[0]);
        }
        chain::finish(owner.vms(), &ids)
    }
}
